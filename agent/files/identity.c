/* Whose files a technician reaches: shell.user's, as for shells. The transfer pool's threads
 * take shell.user's groups, fsgid and fsuid once, when the pool starts, so that the kernel
 * checks every open, create and rename they make as that user (Linux keeps these per
 * thread). The calls are raw syscalls: glibc's setgroups and setfs* wrappers apply a change
 * to every thread of the process (the agent's loop thread stays root). Nothing in the agent
 * may call glibc's setuid/setgid family while the pool runs: that would reset these
 * threads too (shell.c calls them only in a forked child). */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "files.h"

/* Groups a user may be in: the kernel's NGROUPS_MAX. */
#define IDENT_GROUPS_MAX 65536

#if defined(SYS_setgroups32)
#define SYS_SETGROUPS SYS_setgroups32 /* 32-bit ids where the plain call takes 16-bit ones */
#define SYS_GETGROUPS SYS_getgroups32
#define SYS_SETFSUID SYS_setfsuid32
#define SYS_SETFSGID SYS_setfsgid32
#else
#define SYS_SETGROUPS SYS_setgroups
#define SYS_GETGROUPS SYS_getgroups
#define SYS_SETFSUID SYS_setfsuid
#define SYS_SETFSGID SYS_setfsgid
#endif

int agent_files_ident_load(agent_files_ident_t *id, const char *shell_user, char *err, size_t errlen) {
  struct passwd pw, *res = NULL;
  char buf[4096];
  bool root = geteuid() == 0;
  memset(id, 0, sizeof(*id));
  if (root && (!shell_user || !shell_user[0])) {
    snprintf(err, errlen, "shell.user is not configured on this device (file access runs as that user)");
    return TT_EDENIED;
  }
  int rc = shell_user && shell_user[0] ? getpwnam_r(shell_user, &pw, buf, sizeof(buf), &res)
                                       : getpwuid_r(geteuid(), &pw, buf, sizeof(buf), &res);
  if (rc || !res) {
    snprintf(err, errlen, "shell.user %s does not exist on this device", shell_user ? shell_user : "");
    return TT_EDENIED;
  }
  if (!root && pw.pw_uid != geteuid()) {
    snprintf(err, errlen, "shell.user %s is not the agent's user and the agent does not run as root", shell_user);
    return TT_EDENIED;
  }
  if (strlen(pw.pw_name) >= sizeof(id->name) || strlen(pw.pw_dir) >= sizeof(id->home)) {
    snprintf(err, errlen, "shell.user's entry is too long");
    return TT_EDENIED;
  }
  snprintf(id->name, sizeof(id->name), "%s", pw.pw_name);
  id->uid = pw.pw_uid;
  id->gid = pw.pw_gid;
  struct stat st;
  if (pw.pw_dir[0] == '/' && stat(pw.pw_dir, &st) == 0 && S_ISDIR(st.st_mode))
    snprintf(id->home, sizeof(id->home), "%s", pw.pw_dir);
  /* The agent's own user (not root) keeps what it has: nothing to switch. */
  id->switch_user = root && pw.pw_uid != 0;
  if (!id->switch_user) return 0;
  int n = 64;
  for (;;) {
    gid_t *g = realloc(id->groups, (size_t)n * sizeof(gid_t));
    if (!g) {
      snprintf(err, errlen, "out of memory");
      agent_files_ident_free(id);
      return TT_ENOMEM;
    }
    id->groups = g;
    int want = n;
    if (getgrouplist(id->name, id->gid, id->groups, &want) >= 0) {
      id->ngroups = (size_t)want;
      return 0;
    }
    if (want <= n || want > IDENT_GROUPS_MAX) {
      snprintf(err, errlen, "cannot list the groups of shell.user %s", id->name);
      agent_files_ident_free(id);
      return TT_EDENIED;
    }
    n = want;
  }
}

void agent_files_ident_free(agent_files_ident_t *id) {
  free(id->groups);
  id->groups = NULL;
  id->ngroups = 0;
}

int agent_files_ident_apply(void *arg) {
  const agent_files_ident_t *id = arg;
  if (!id->switch_user) return 0;
  /* Groups and fsgid first: changing fsuid away from 0 drops this thread's file
   * capabilities, not CAP_SETGID, but the order keeps it obvious. */
  if (syscall(SYS_SETGROUPS, id->ngroups, id->groups) != 0) return -errno;
  syscall(SYS_SETFSGID, id->gid);
  syscall(SYS_SETFSUID, id->uid);
  /* Each returns the value before: an invalid id (-1) changes nothing and reads it back. */
  if ((gid_t)syscall(SYS_SETFSGID, (gid_t)-1) != id->gid || (uid_t)syscall(SYS_SETFSUID, (uid_t)-1) != id->uid)
    return TT_EDENIED;
  long n = syscall(SYS_GETGROUPS, 0, NULL);
  if (n < 0 || (size_t)n != id->ngroups) return TT_EDENIED;
  if (n > 0) {
    gid_t *got = malloc((size_t)n * sizeof(gid_t));
    if (!got) return TT_ENOMEM;
    long m = syscall(SYS_GETGROUPS, n, got);
    int rc = 0;
    for (long i = 0; i < m && !rc; i++) {
      bool found = false;
      for (size_t j = 0; j < id->ngroups && !found; j++) found = got[i] == id->groups[j];
      if (!found) rc = TT_EDENIED;
    }
    if (m != n) rc = TT_EDENIED;
    free(got);
    if (rc) return rc;
  }
  return 0;
}
