/* `tether-agent upgrade-guard`: the part of an upgrade that must outlive the agent it
 * replaces. The running agent starts it (under systemd as a unit of its own, with
 * systemd-run, since the package restarts the agent's service and everything in it) once
 * the package and the one to go back to are checked; it reads STATE/upgrade/pending, runs
 * upgrade.install with the package, and waits until the new agent has written
 * STATE/upgrade/healthy with its version (it does once the broker has welcomed it). If the
 * installer fails or the deadline passes, it runs upgrade.install with the previous package
 * and writes why in STATE/upgrade/outcome, which the agent reports at its next connect.
 * A plain program: one child at a time, a file to watch, a deadline. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <openssl/evp.h>
#include "upgrade.h"
#include "tt/log.h"

#define MOD "upgrade-guard"
/* An installer that runs longer than this is killed (dpkg of one package takes seconds). */
#define INSTALL_TIMEOUT_MS (10 * 60 * 1000)
#define WATCH_MS 250

static void nap(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
  }
}

/* The installer's last line of output, for the reason. */
static void last_line(const char *log, char *out, size_t cap) {
  char buf[4096];
  out[0] = '\0';
  int fd = open(log, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  off_t end = lseek(fd, 0, SEEK_END);
  off_t from = end > (off_t)sizeof buf - 1 ? end - (off_t)sizeof buf + 1 : 0;
  ssize_t n = pread(fd, buf, sizeof buf - 1, from);
  close(fd);
  if (n <= 0) return;
  buf[n] = '\0';
  while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r')) buf[--n] = '\0';
  char *nl = strrchr(buf, '\n');
  snprintf(out, cap, "%.199s", nl ? nl + 1 : buf);
}

/* Run `install PACKAGE` (sh -c, the package as $1): 0, or why not in why. */
static int run_install(const char *install, const char *dir, const char *package, char *why, size_t cap) {
  char log[UPGRADE_PATH_MAX], cmd[AGENT_PATH_MAX * 2];
  snprintf(log, sizeof log, "%s/install.log", dir);
  snprintf(cmd, sizeof cmd, "%s \"$1\"", install);
  TT_INFO(MOD, "installing", "package=%s", package);
  pid_t pid = fork();
  if (pid < 0) {
    snprintf(why, cap, "cannot start the installer: %s", strerror(errno));
    return -1;
  }
  if (pid == 0) {
    setpgid(0, 0);
    int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
    }
    setenv("DEBIAN_FRONTEND", "noninteractive", 1);
    execl("/bin/sh", "sh", "-c", cmd, "tether-upgrade", package, (char *)NULL);
    _exit(127);
  }
  int st = 0;
  for (int waited = 0;; waited += WATCH_MS) {
    pid_t r = waitpid(pid, &st, WNOHANG);
    if (r == pid) break;
    if (r < 0 && errno != EINTR) {
      snprintf(why, cap, "lost the installer: %s", strerror(errno));
      return -1;
    }
    if (waited >= INSTALL_TIMEOUT_MS) {
      kill(-pid, SIGKILL);
      waitpid(pid, &st, 0);
      snprintf(why, cap, "the installer ran for 10 minutes and was stopped");
      return -1;
    }
    nap(WATCH_MS);
  }
  if (WIFEXITED(st) && WEXITSTATUS(st) == 0) return 0;
  char line[200];
  last_line(log, line, sizeof line);
  if (WIFEXITED(st)) snprintf(why, cap, "the installer exited %d%s%s", WEXITSTATUS(st), line[0] ? ": " : "", line);
  else snprintf(why, cap, "the installer was killed by signal %d", WTERMSIG(st));
  return -1;
}

static void outcome(const char *dir, const char *rollout, const char *step, const char *reason) {
  char text[UPGRADE_FILE_MAX];
  snprintf(text, sizeof text, "rollout %s\nstep %s\nreason %.*s\n", rollout, step, TT_TEXT_MAX, reason);
  for (char *p = text; *p; p++)
    if (*p == '\r') *p = ' ';
  if (agent_upgrade_write(dir, UPGRADE_OUTCOME, text))
    TT_ERROR(MOD, "cannot write the outcome", "dir=%s", dir);
  TT_INFO(MOD, "done", "rollout=%s step=%s reason=\"%s\"", rollout, step, reason);
}

/* Keep path's package (and its manifest) as the way back for the next upgrade. */
static void keep_current(const char *dir, const char *pkg, const char *manifest_name) {
  char cur[UPGRADE_PATH_MAX], m[UPGRADE_PATH_MAX], cm[UPGRADE_PATH_MAX];
  snprintf(cur, sizeof cur, "%s/%s", dir, UPGRADE_CURRENT_PKG);
  snprintf(m, sizeof m, "%s/%s", dir, manifest_name);
  snprintf(cm, sizeof cm, "%s/%s", dir, UPGRADE_CURRENT_MANIFEST);
  if (strcmp(pkg, cur) && rename(pkg, cur) == 0) (void)rename(m, cm);
}

/* After an upgrade, either way: only the running version's package and manifest stay
 * (current.*); other packages, manifests and partial downloads would pile up, one agent
 * package per rollout. */
static void clean(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    size_t n = strlen(e->d_name);
    bool pkg = n > 4 && !strcmp(e->d_name + n - 4, ".pkg"), part = n > 5 && !strcmp(e->d_name + n - 5, ".part"),
         manifest = n > 9 && !strcmp(e->d_name + n - 9, ".manifest");
    if ((pkg && strcmp(e->d_name, UPGRADE_CURRENT_PKG)) || part ||
        (manifest && strcmp(e->d_name, UPGRADE_CURRENT_MANIFEST)))
      (void)unlinkat(dirfd(d), e->d_name, 0);
  }
  closedir(d);
}

/* The package is still what its manifest (checked by the agent) says: hashed again right
 * before it is installed. 0, or why not. */
static int check_pkg(const char *dir, const char *pkg, const char *manifest_name, char *why, size_t cap) {
  char path[UPGRADE_PATH_MAX], text[TT_RELEASE_MANIFEST_MAX + 1], err[160];
  tt_release_t m;
  snprintf(path, sizeof path, "%s/%s", dir, manifest_name);
  if (agent_upgrade_read(path, text, sizeof text) || tt_release_parse(text, strlen(text), &m, err, sizeof err)) {
    snprintf(why, cap, "no manifest for %.120s", pkg);
    return -1;
  }
  int fd = open(pkg, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  EVP_MD_CTX *md = EVP_MD_CTX_new();
  uint8_t buf[64 * 1024], digest[32];
  uint64_t total = 0;
  int rc = -1;
  struct stat st;
  /* A regular file of the manifest's size, read no further than that. */
  if (fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (uint64_t)st.st_size == m.size && md &&
      EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1) {
    ssize_t n = 0;
    while (total < m.size) {
      size_t want = m.size - total < sizeof buf ? (size_t)(m.size - total) : sizeof buf;
      n = read(fd, buf, want);
      if (n <= 0) break;
      total += (uint64_t)n;
      EVP_DigestUpdate(md, buf, (size_t)n);
    }
    unsigned dl = 0;
    if (n >= 0 && EVP_DigestFinal_ex(md, digest, &dl) == 1 && total == m.size && !memcmp(digest, m.sha256, 32)) rc = 0;
  }
  if (rc) snprintf(why, cap, "%.120s is not the package its manifest signs (changed since it was checked)", pkg);
  if (fd >= 0) close(fd);
  EVP_MD_CTX_free(md);
  return rc;
}

static bool healthy(const char *dir, const char *to) {
  char path[UPGRADE_PATH_MAX], text[128];
  snprintf(path, sizeof path, "%s/%s", dir, UPGRADE_HEALTHY);
  if (agent_upgrade_read(path, text, sizeof text)) return false;
  text[strcspn(text, "\n")] = '\0';
  return !strcmp(text, to);
}

int agent_upgrade_guard(const agent_cfg_t *cfg) {
  char dir[UPGRADE_DIR_MAX], path[UPGRADE_PATH_MAX], text[UPGRADE_FILE_MAX];
  snprintf(dir, sizeof dir, "%s/%s", cfg->state_dir, UPGRADE_DIR);
  snprintf(path, sizeof path, "%s/%s", dir, UPGRADE_PENDING);
  if (agent_upgrade_read(path, text, sizeof text)) {
    fprintf(stderr, "tether-agent upgrade-guard: no upgrade pending in %s\n", dir);
    return 1;
  }
  char rollout[24] = "0", from[TT_NAME_MAX + 1] = "", to[TT_NAME_MAX + 1] = "", pkg[UPGRADE_PATH_MAX] = "",
       rb[UPGRADE_PATH_MAX] = "", deadline[24] = "0", health[24] = "0";
  agent_upgrade_value(text, "rollout", rollout, sizeof rollout);
  agent_upgrade_value(text, "from", from, sizeof from);
  agent_upgrade_value(text, "to", to, sizeof to);
  agent_upgrade_value(text, "package", pkg, sizeof pkg);
  agent_upgrade_value(text, "rollback", rb, sizeof rb);
  agent_upgrade_value(text, "health_s", health, sizeof health);
  agent_upgrade_value(text, "deadline_ms", deadline, sizeof deadline);
  if (!to[0] || !pkg[0]) {
    fprintf(stderr, "tether-agent upgrade-guard: %s is not a pending upgrade\n", path);
    return 1;
  }
  TT_INFO(MOD, "upgrade", "rollout=%s from=%s to=%s health_s=%s", rollout, from, to, health);
  char why[TT_TEXT_MAX + 1];
  (void)deadline;
  if (check_pkg(dir, pkg, "new.manifest", why, sizeof why)) {
    /* Nothing installed: nothing to roll back. */
    outcome(dir, rollout, "failed", why);
    unlink(path);
    return 0;
  }
  /* The deadline counts from now: the checks and the download took their own time. */
  int64_t until = agent_unix_ms() + strtoll(health, NULL, 10) * 1000;
  if (run_install(cfg->upgrade_install, dir, pkg, why, sizeof why) == 0) {
    while (agent_unix_ms() < until) {
      if (healthy(dir, to)) {
        keep_current(dir, pkg, "new.manifest");
        clean(dir);
        outcome(dir, rollout, "installed", "");
        unlink(path);
        return 0;
      }
      nap(WATCH_MS);
    }
    snprintf(why, sizeof why, "%s did not come back healthy (connected to the broker) within %s s", to, health);
  }
  char reason[TT_TEXT_MAX + 1];
  snprintf(reason, sizeof reason, "%s", why);
  TT_WARN(MOD, "rolling back", "to=%s why=\"%s\"", from, why);
  unlink(path);
  snprintf(path, sizeof path, "%s/%s", dir, UPGRADE_HEALTHY);
  unlink(path);
  char rbwhy[TT_TEXT_MAX], r[TT_TEXT_MAX + 1];
  const char *rbm = strstr(rb, "/" UPGRADE_CURRENT_PKG) ? UPGRADE_CURRENT_MANIFEST : "rollback.manifest";
  if (!rb[0] || check_pkg(dir, rb, rbm, rbwhy, sizeof rbwhy)) {
    snprintf(r, sizeof r, "%.*s; nothing to roll back to: %.*s", TT_TEXT_MAX / 2, reason, TT_TEXT_MAX / 2 - 30,
             rb[0] ? rbwhy : "no package");
    outcome(dir, rollout, "failed", r);
    return 0;
  }
  /* Written before the old agent starts again, so that it finds it at its first connect. */
  snprintf(r, sizeof r, "back on %.64s: %.*s", from, TT_TEXT_MAX - 80, reason);
  outcome(dir, rollout, "rolled-back", r);
  if (run_install(cfg->upgrade_install, dir, rb, why, sizeof why) == 0) {
    keep_current(dir, rb, "rollback.manifest");
    clean(dir);
  } else {
    snprintf(r, sizeof r, "%.*s; the rollback failed too: %.*s", TT_TEXT_MAX / 2, reason, TT_TEXT_MAX / 2 - 30, why);
    outcome(dir, rollout, "failed", r);
  }
  return 0;
}
