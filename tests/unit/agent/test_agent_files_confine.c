/* The agent's file confinement (agent/files/confine.c) and file-system identity
 * (agent/files/identity.c): a real tree made for each test (a root with files, a subdir, a
 * relative link inside, an absolute link, links out of the root, a FIFO, a device, a socket,
 * a read-only root, one nested in the read-write root), every request accepted or refused
 * with the right error, both through openat2 and through the walk used where it is missing;
 * open_parent never yields a directory outside the root. Then shell.user's identity on a
 * thread: the hook is a no-op for an agent that is not root, and a thread that took nobody's
 * identity cannot read root's 0600 file and creates files nobody owns, while the rest of
 * the process stays root. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/openat2.h>
#include <pthread.h>
#include <pwd.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

/* snprintf into an array that must hold it all. */
#define FMT(buf, ...) assert_true(snprintf(buf, sizeof(buf), __VA_ARGS__) < (int)sizeof(buf))
#include "files.h"

typedef struct {
  char base[64];
  char root[128], ro[128], nest[128], outside[128];
  agent_files_fs_t *fs;
} tree_t;

static void path_of(char *out, size_t cap, const char *dir, const char *name) {
  int n = snprintf(out, cap, "%s/%s", dir, name);
  assert_true(n > 0 && (size_t)n < cap);
}

static void put(const char *dir, const char *name, const char *text, mode_t mode) {
  char p[512];
  path_of(p, sizeof(p), dir, name);
  int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
  assert_int_equal(fchmod(fd, mode), 0);
  close(fd);
}

static void link_at(const char *dir, const char *name, const char *target) {
  char p[512];
  path_of(p, sizeof(p), dir, name);
  assert_int_equal(symlink(target, p), 0);
}

static void dir_at(const char *dir, const char *name) {
  char p[512];
  path_of(p, sizeof(p), dir, name);
  assert_int_equal(mkdir(p, 0755), 0);
}

static void rm_tree(const char *path) {
  char cmd[256];
  FMT(cmd, "rm -rf '%s'", path);
  assert_int_equal(system(cmd), 0);
}

/*  base/root            read-write root (and home)
 *    file.txt "hello"   sub/inner.txt "inner"   sub/deeper/x.txt
 *    rel -> sub/inner.txt      reldir -> sub         sub/up -> ../file.txt
 *    abs -> BASE/root/file.txt absdir -> BASE/root/sub
 *    out -> ../outside/secret.txt  outdir -> ../outside  sub/up2 -> ../../outside/secret.txt
 *    loop -> loop   fifo   null (a device)   sock (a socket)
 *    ronest/ (read-only root) nest.txt      linkro -> ronest
 *  base/ro              read-only root: log.txt
 *  base/outside         secret.txt */
static int tree_setup(void **state) {
  tree_t *t = calloc(1, sizeof(*t));
  assert_non_null(t);
  FMT(t->base, "/tmp/tt-confine-XXXXXX");
  assert_non_null(mkdtemp(t->base));
  path_of(t->root, sizeof(t->root), t->base, "root");
  path_of(t->ro, sizeof(t->ro), t->base, "ro");
  path_of(t->outside, sizeof(t->outside), t->base, "outside");
  path_of(t->nest, sizeof(t->nest), t->root, "ronest");
  dir_at(t->base, "root");
  dir_at(t->base, "ro");
  dir_at(t->base, "outside");
  dir_at(t->root, "sub");
  dir_at(t->root, "ronest");
  char sub[256], deeper[256], abs[256];
  path_of(sub, sizeof(sub), t->root, "sub");
  path_of(deeper, sizeof(deeper), sub, "deeper");
  assert_int_equal(mkdir(deeper, 0755), 0);
  put(t->root, "file.txt", "hello", 0644);
  put(sub, "inner.txt", "inner", 0640);
  put(deeper, "x.txt", "x", 0644);
  put(t->ro, "log.txt", "log", 0644);
  put(t->outside, "secret.txt", "secret", 0644);
  put(t->nest, "nest.txt", "nest", 0644);
  link_at(t->root, "rel", "sub/inner.txt");
  link_at(t->root, "reldir", "sub");
  link_at(sub, "up", "../file.txt");
  link_at(sub, "up2", "../../outside/secret.txt");
  path_of(abs, sizeof(abs), t->root, "file.txt");
  link_at(t->root, "abs", abs);
  link_at(t->root, "absdir", sub);
  link_at(t->root, "out", "../outside/secret.txt");
  link_at(t->root, "outdir", "../outside");
  link_at(t->root, "loop", "loop");
  link_at(t->root, "linkro", "ronest");
  char p[512];
  path_of(p, sizeof(p), t->root, "fifo");
  assert_int_equal(mkfifo(p, 0644), 0);
  path_of(p, sizeof(p), t->root, "null");
  if (mknod(p, S_IFCHR | 0666, makedev(1, 3)) != 0) print_message("no device node (%s): that case is skipped\n", strerror(errno));
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  path_of(sa.sun_path, sizeof(sa.sun_path), t->root, "sock");
  int s = socket(AF_UNIX, SOCK_STREAM, 0);
  assert_true(s >= 0);
  assert_int_equal(bind(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
  close(s);
  t->fs = calloc(1, sizeof(*t->fs));
  assert_non_null(t->fs);
  char ro_list[300], err[256] = "";
  FMT(ro_list, "%s, %s", t->ro, t->nest);
  assert_int_equal(agent_files_fs_init(t->fs, t->root, ro_list, t->root, err, sizeof(err)), 0);
  assert_int_equal(t->fs->nroots, 3);
  *state = t;
  return 0;
}

static int tree_teardown(void **state) {
  tree_t *t = *state;
  rm_tree(t->base);
  free(t->fs);
  free(t);
  return 0;
}

/* ---- reading ----------------------------------------------------------------------------- */

static int read_ok(tree_t *t, const char *path, const char *want) {
  char err[256] = "", buf[64] = "";
  tt_xfer_stat_t st = {0};
  int fd = agent_files_open_read(t->fs, path, &st, err, sizeof(err));
  if (fd < 0) fail_msg("%s refused (walk=%d): %s", path, t->fs->walk, err);
  ssize_t n = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  assert_true(n >= 0);
  assert_string_equal(buf, want);
  assert_int_equal(st.size, strlen(want));
  assert_true(st.mtime_ns > 0);
  return (int)st.mode;
}

static void read_refused(tree_t *t, const char *path, int code, const char *says) {
  char err[256] = "";
  tt_xfer_stat_t st = {0};
  int fd = agent_files_open_read(t->fs, path, &st, err, sizeof(err));
  if (fd >= 0) {
    close(fd);
    fail_msg("%s was opened for reading (walk=%d)", path, t->fs->walk);
  }
  if (fd != code) fail_msg("%s: %s, not %s (walk=%d): %s", path, tt_errname(fd), tt_errname(code), t->fs->walk, err);
  if (!strstr(err, says)) fail_msg("%s: \"%s\" does not say \"%s\"", path, err, says);
}

static void check_reads(tree_t *t) {
  char p[512];
  path_of(p, sizeof(p), t->root, "file.txt");
  assert_int_equal(read_ok(t, p, "hello"), 0644);
  assert_int_equal(read_ok(t, "file.txt", "hello"), 0644); /* relative: from home */
  assert_int_equal(read_ok(t, "./sub//inner.txt", "inner"), 0640);
  read_ok(t, "rel", "inner");            /* a relative link inside */
  read_ok(t, "reldir/inner.txt", "inner");
  read_ok(t, "sub/up", "hello");         /* a link with ".." that stays inside */
  read_ok(t, "reldir/deeper/x.txt", "x");
  path_of(p, sizeof(p), t->ro, "log.txt");
  read_ok(t, p, "log");                  /* a read-only root can be pulled from */
  path_of(p, sizeof(p), t->nest, "nest.txt");
  read_ok(t, p, "nest");

  read_refused(t, "sub/../file.txt", TT_EINVAL, "'..' is not allowed");
  read_refused(t, "..", TT_EINVAL, "'..' is not allowed");
  read_refused(t, "abs", TT_EDENIED, "leads outside");
  read_refused(t, "absdir/inner.txt", TT_EDENIED, "leads outside");
  read_refused(t, "out", TT_EDENIED, "leads outside");
  read_refused(t, "outdir/secret.txt", TT_EDENIED, "leads outside");
  read_refused(t, "sub/up2", TT_EDENIED, "leads outside");
  read_refused(t, "loop", TT_EDENIED, "symbolic links");
  read_refused(t, "fifo", TT_EINVAL, "is a FIFO: only regular files can be pulled");
  read_refused(t, "sock", TT_EINVAL, "is a socket: only regular files can be pulled");
  path_of(p, sizeof(p), t->root, "null");
  if (access(p, F_OK) == 0) read_refused(t, "null", TT_EINVAL, "is a device: only regular files can be pulled");
  read_refused(t, "sub", TT_EINVAL, "is a directory");
  read_refused(t, t->root, TT_EINVAL, "is a directory");
  read_refused(t, "nothing-here", TT_ENOTFOUND, "does not exist");
  read_refused(t, "file.txt/x", TT_EINVAL, "not a directory");
  path_of(p, sizeof(p), t->outside, "secret.txt");
  read_refused(t, p, TT_EDENIED, "is outside the directories this device shares");
  read_refused(t, "/etc/passwd", TT_EDENIED, "is outside the directories this device shares");
  read_refused(t, t->base, TT_EDENIED, "is outside");
  /* Prefixes count whole components: BASE/rootx is not under BASE/root. */
  FMT(p, "%sx/file.txt", t->root);
  read_refused(t, p, TT_EDENIED, "is outside");
}

static void test_reads_openat2(void **state) {
  tree_t *t = *state;
  struct open_how how = {.flags = O_PATH, .resolve = RESOLVE_BENEATH};
  long fd = syscall(SYS_openat2, AT_FDCWD, ".", &how, sizeof(how));
  if (fd < 0 && errno == ENOSYS) print_message("this kernel has no openat2: the walk stands in for it here too\n");
  if (fd >= 0) close((int)fd);
  t->fs->walk = false;
  check_reads(t);
}

static void test_reads_walk(void **state) {
  tree_t *t = *state;
  t->fs->walk = true;
  check_reads(t);
}

/* A path as it may not travel: refused before anything is opened. */
static void test_bad_paths(void **state) {
  tree_t *t = *state;
  char why[128];
  char name[TT_FILE_NAME_MAX + 2];
  memset(name, 'n', sizeof(name) - 1);
  name[sizeof(name) - 1] = '\0'; /* 256 bytes */
  read_refused(t, name, TT_EINVAL, "component longer than 255");
  name[TT_FILE_NAME_MAX] = '\0'; /* 255: a name that may exist, here it does not */
  read_refused(t, name, TT_ENOTFOUND, "does not exist");
  char *longp = malloc(TT_FILE_PATH_MAX + 2);
  assert_non_null(longp);
  for (size_t i = 0; i < TT_FILE_PATH_MAX + 1; i++) longp[i] = i % 100 == 99 ? '/' : 'a';
  longp[TT_FILE_PATH_MAX + 1] = '\0';
  read_refused(t, longp, TT_EINVAL, "longer than 4095 bytes");
  /* Short enough to travel, too long once it starts in the home directory. */
  longp[TT_FILE_PATH_MAX - 1] = '\0';
  read_refused(t, longp, TT_ETOOBIG, "longer than 4095 bytes");
  free(longp);
  read_refused(t, "file\n.txt", TT_EINVAL, "control characters");
  read_refused(t, "a\x01" "b", TT_EINVAL, "control characters");
  read_refused(t, "\x1b[2Jx", TT_EINVAL, "control characters");
  read_refused(t, "caf\xc3", TT_EINVAL, "invalid UTF-8");
  read_refused(t, "", TT_EINVAL, "an empty path");
  assert_false(agent_files_path_ok("a\0b", 3, why, sizeof(why)));
  assert_non_null(strstr(why, "NUL"));
  assert_true(agent_files_path_ok("/home/sam/Café.txt", strlen("/home/sam/Café.txt"), why, sizeof(why)));
}

/* ---- writing: the directory to hold a file --------------------------------------------- */

/* Is dir at or below root? Climbs by "..": never past the file system's top. */
static bool beneath_root(int dir, const char *root) {
  struct stat rs, st;
  assert_int_equal(stat(root, &rs), 0);
  int fd = openat(dir, ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
  for (int i = 0; fd >= 0 && i < 4096; i++) {
    assert_int_equal(fstat(fd, &st), 0);
    if (st.st_dev == rs.st_dev && st.st_ino == rs.st_ino) {
      close(fd);
      return true;
    }
    int up = openat(fd, "..", O_PATH | O_DIRECTORY | O_CLOEXEC);
    struct stat us;
    assert_true(up >= 0);
    assert_int_equal(fstat(up, &us), 0);
    close(fd);
    if (us.st_dev == st.st_dev && us.st_ino == st.st_ino) {
      close(up);
      return false; /* the top, and no root on the way */
    }
    fd = up;
  }
  return false;
}

static void parent_ok(tree_t *t, const char *path, const char *dir_is, const char *want_name) {
  char err[256] = "", name[TT_FILE_NAME_MAX + 1] = "";
  int fd = agent_files_open_parent(t->fs, path, name, sizeof(name), err, sizeof(err));
  if (fd < 0) fail_msg("%s refused (walk=%d): %s", path, t->fs->walk, err);
  assert_string_equal(name, want_name);
  assert_true(beneath_root(fd, t->root));
  struct stat a, b;
  assert_int_equal(fstat(fd, &a), 0);
  assert_int_equal(stat(dir_is, &b), 0);
  assert_true(a.st_ino == b.st_ino && a.st_dev == b.st_dev);
  /* A real directory descriptor: the engine creates, renames and fsyncs in it. */
  int f = openat(fd, ".probe", O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  assert_true(f >= 0);
  assert_int_equal(fsync(fd), 0);
  close(f);
  assert_int_equal(unlinkat(fd, ".probe", 0), 0);
  close(fd);
}

static void parent_refused(tree_t *t, const char *path, int code, const char *says) {
  char err[256] = "", name[TT_FILE_NAME_MAX + 1] = "";
  int fd = agent_files_open_parent(t->fs, path, name, sizeof(name), err, sizeof(err));
  if (fd >= 0) {
    bool inside = beneath_root(fd, t->root);
    close(fd);
    fail_msg("%s: a directory to write in was given (walk=%d, inside the root: %d)", path, t->fs->walk, inside);
  }
  if (fd != code) fail_msg("%s: %s, not %s (walk=%d): %s", path, tt_errname(fd), tt_errname(code), t->fs->walk, err);
  if (!strstr(err, says)) fail_msg("%s: \"%s\" does not say \"%s\"", path, err, says);
}

static void check_parents(tree_t *t) {
  char p[512], sub[256], deeper[256];
  path_of(sub, sizeof(sub), t->root, "sub");
  path_of(deeper, sizeof(deeper), sub, "deeper");
  path_of(p, sizeof(p), t->root, "new.txt");
  parent_ok(t, p, t->root, "new.txt");
  parent_ok(t, "new.txt", t->root, "new.txt");
  parent_ok(t, "sub/new.txt", sub, "new.txt");
  parent_ok(t, "reldir/deeper/new.txt", deeper, "new.txt"); /* through a link inside */
  parent_ok(t, "file.txt", t->root, "file.txt");             /* an existing target: the engine decides */
  parent_ok(t, "abs", t->root, "abs");                       /* replacing a link, never writing through it */

  parent_refused(t, t->root, TT_EINVAL, "is a shared directory itself");
  path_of(p, sizeof(p), t->root, ".");
  parent_refused(t, p, TT_EINVAL, "is a shared directory itself");
  path_of(p, sizeof(p), t->ro, "x.txt");
  parent_refused(t, p, TT_EDENIED, "shares read-only");
  path_of(p, sizeof(p), t->nest, "x.txt");
  parent_refused(t, p, TT_EDENIED, "shares read-only");      /* a read-only root inside the rw one */
  parent_refused(t, "linkro/x.txt", TT_EDENIED, "read-only"); /* ... reached through a link */
  parent_refused(t, "outdir/x.txt", TT_EDENIED, "leads outside");
  parent_refused(t, "absdir/x.txt", TT_EDENIED, "leads outside");
  parent_refused(t, "sub/../x.txt", TT_EINVAL, "'..' is not allowed");
  parent_refused(t, "nothing/x.txt", TT_ENOTFOUND, "does not exist");
  parent_refused(t, "file.txt/x.txt", TT_EINVAL, "is not a directory");
  parent_refused(t, "loop/x.txt", TT_EDENIED, "symbolic links");
  path_of(p, sizeof(p), t->outside, "x.txt");
  parent_refused(t, p, TT_EDENIED, "is outside");
  parent_refused(t, "/x.txt", TT_EDENIED, "is outside");
  parent_refused(t, "a\tb", TT_EINVAL, "control characters");
  /* Nothing was made anywhere by all that. */
  path_of(p, sizeof(p), t->outside, "x.txt");
  assert_int_equal(access(p, F_OK), -1);
}

static void test_parents_openat2(void **state) {
  tree_t *t = *state;
  t->fs->walk = false;
  check_parents(t);
}

static void test_parents_walk(void **state) {
  tree_t *t = *state;
  t->fs->walk = true;
  check_parents(t);
}

/* A root swapped for something else after start (here: a symbolic link to elsewhere) is
 * not followed: the directory found at start, or nothing. */
static void test_root_replaced(void **state) {
  tree_t *t = *state;
  char moved[256], p[512], err[256];
  FMT(moved, "%s.moved", t->root);
  assert_int_equal(rename(t->root, moved), 0);
  assert_int_equal(symlink(t->outside, t->root), 0);
  tt_xfer_stat_t st;
  path_of(p, sizeof(p), t->root, "secret.txt");
  int fd = agent_files_open_read(t->fs, p, &st, err, sizeof(err));
  assert_int_equal(fd, TT_EDENIED);
  assert_non_null(strstr(err, "was replaced since the agent started"));
  assert_int_equal(unlink(t->root), 0);
  assert_int_equal(rename(moved, t->root), 0);
}

/* ---- configuration ------------------------------------------------------------------------ */

static void test_roots_config(void **state) {
  tree_t *t = *state;
  agent_files_fs_t *fs = calloc(1, sizeof(*fs));
  assert_non_null(fs);
  char err[256] = "", list[600], text[600];
  /* Defaults: home and /tmp, read-write. */
  assert_int_equal(agent_files_fs_init(fs, NULL, NULL, t->root, err, sizeof(err)), 0);
  assert_int_equal(fs->nroots, 2);
  assert_string_equal(fs->roots[0].path, t->root);
  assert_true(fs->roots[0].rw && fs->roots[1].rw);
  assert_string_equal(fs->roots[1].path, "/tmp");
  /* "none": no read-write root; relative paths still start at home. */
  assert_int_equal(agent_files_fs_init(fs, "none", t->ro, t->root, err, sizeof(err)), 0);
  assert_int_equal(fs->nroots, 1);
  assert_false(fs->roots[0].rw);
  agent_files_roots_text(fs, text, sizeof(text));
  FMT(list, "read-only: %s", t->ro);
  assert_string_equal(text, list);
  /* A root given through a link is resolved once; both spellings reach it. */
  char alias[256], p[512];
  FMT(alias, "%s/alias", t->base);
  assert_int_equal(symlink(t->root, alias), 0);
  FMT(list, " %s/ ,  /tmp//", alias);
  assert_int_equal(agent_files_fs_init(fs, list, NULL, NULL, err, sizeof(err)), 0);
  assert_int_equal(fs->nroots, 2);
  assert_string_equal(fs->roots[0].path, t->root);
  assert_string_equal(fs->roots[0].alias, alias);
  tt_xfer_stat_t st;
  path_of(p, sizeof(p), alias, "file.txt");
  int fd = agent_files_open_read(fs, p, &st, err, sizeof(err));
  assert_true(fd >= 0);
  close(fd);
  /* No home: relative paths are refused with why. */
  fd = agent_files_open_read(fs, "file.txt", &st, err, sizeof(err));
  assert_int_equal(fd, TT_EINVAL);
  assert_non_null(strstr(err, "relative path"));
  /* In both lists: read-only wins. */
  assert_int_equal(agent_files_fs_init(fs, t->root, t->root, NULL, err, sizeof(err)), 0);
  assert_int_equal(fs->nroots, 1);
  assert_false(fs->roots[0].rw);
  /* Missing and non-directory roots are left out; relative ones stop the start. */
  FMT(list, "%s/nope, %s/file.txt, %s", t->base, t->root, t->ro);
  assert_int_equal(agent_files_fs_init(fs, list, NULL, NULL, err, sizeof(err)), 0);
  assert_int_equal(fs->nroots, 1);
  assert_string_equal(fs->roots[0].path, t->ro);
  assert_int_equal(agent_files_fs_init(fs, "tmp", NULL, NULL, err, sizeof(err)), TT_ECONFIG);
  assert_non_null(strstr(err, "files.roots: tmp is not an absolute path"));
  assert_int_equal(agent_files_fs_init(fs, NULL, "/var/../etc", NULL, err, sizeof(err)), TT_ECONFIG);
  assert_non_null(strstr(err, "files.read_only"));
  /* More than AGENT_FILES_ROOTS_MAX distinct directories. */
  size_t o = 0;
  for (unsigned i = 0; i <= AGENT_FILES_ROOTS_MAX; i++) {
    char d[64];
    FMT(d, "d%u", i);
    dir_at(t->base, d);
    o += (size_t)snprintf(list + o, sizeof(list) - o, "%s%s/%s", i ? "," : "", t->base, d);
    assert_true(o < sizeof(list));
  }
  assert_int_equal(agent_files_fs_init(fs, list, NULL, NULL, err, sizeof(err)), TT_ECONFIG);
  assert_non_null(strstr(err, "more than 16 directories"));
  free(fs);
}

/* ---- identity --------------------------------------------------------------------------- */

/* An agent that is not root serves files as itself: the hook changes nothing. Run in a
 * child that gave root up. */
static void test_identity_not_root(void **state) {
  (void)state;
  struct passwd *nb = getpwnam("nobody");
  if (geteuid() != 0 || !nb) {
    print_message("skipped: needs root and a 'nobody' user to run as someone else\n");
    skip();
  }
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    if (setgroups(0, NULL) || setgid(nb->pw_gid) || setuid(nb->pw_uid)) _exit(10);
    agent_files_ident_t id;
    char err[256];
    if (agent_files_ident_load(&id, "", err, sizeof(err))) _exit(11);
    if (id.switch_user || id.uid != nb->pw_uid) _exit(12);
    if (agent_files_ident_apply(&id) != 0) _exit(13);
    if ((uid_t)syscall(SYS_setfsuid, (uid_t)-1) != nb->pw_uid) _exit(14);
    if (agent_files_ident_load(&id, "nobody", err, sizeof(err))) _exit(15); /* itself, by name */
    if (agent_files_ident_load(&id, "root", err, sizeof(err)) != TT_EDENIED) _exit(16);
    if (!strstr(err, "does not run as root")) _exit(17);
    /* A switch that cannot be had fails the start instead of going on as someone else. */
    agent_files_ident_t bad = {.switch_user = true, .uid = 0, .gid = 0};
    if (agent_files_ident_apply(&bad) == 0) _exit(18);
    _exit(0);
  }
  int st;
  assert_int_equal(waitpid(pid, &st, 0), pid);
  assert_true(WIFEXITED(st));
  assert_int_equal(WEXITSTATUS(st), 0);
}

typedef struct {
  agent_files_ident_t *id;
  agent_files_fs_t *fs;
  const char *dir, *secret;
  int applied, secret_errno, made_uid, made_gid, confined_read, fsuid, has_root_group;
  char err[256];
} thread_case_t;

static void *as_user(void *arg) {
  thread_case_t *c = arg;
  c->applied = agent_files_ident_apply(c->id);
  if (c->applied) return NULL;
  c->fsuid = (int)syscall(SYS_setfsuid, (uid_t)-1);
  gid_t groups[64];
  long n = syscall(SYS_getgroups, 64, groups);
  for (long i = 0; i < n; i++) c->has_root_group |= groups[i] == 0;
  int fd = open(c->secret, O_RDONLY | O_CLOEXEC);
  c->secret_errno = fd < 0 ? errno : 0;
  if (fd >= 0) close(fd);
  /* Through the confined callbacks, as the engine calls them. */
  tt_xfer_stat_t st;
  c->confined_read = agent_files_open_read(c->fs, c->secret, &st, c->err, sizeof(c->err));
  if (c->confined_read >= 0) close(c->confined_read);
  char name[TT_FILE_NAME_MAX + 1], err[256], made[512];
  FMT(made, "%s/made.txt", c->dir);
  int dir = agent_files_open_parent(c->fs, made, name, sizeof(name), err, sizeof(err));
  c->made_uid = c->made_gid = -1;
  if (dir >= 0) {
    int f = openat(dir, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    struct stat s;
    if (f >= 0 && fstat(f, &s) == 0) {
      c->made_uid = (int)s.st_uid;
      c->made_gid = (int)s.st_gid;
    }
    if (f >= 0) close(f);
    close(dir);
  }
  return NULL;
}

static void test_identity_dropped(void **state) {
  (void)state;
  struct passwd *nb = getpwnam("nobody");
  if (geteuid() != 0 || !nb) {
    print_message("skipped: needs root and a 'nobody' user to run as someone else\n");
    skip();
  }
  uid_t nobody = nb->pw_uid;
  gid_t nogroup = nb->pw_gid;
  char dir[] = "/tmp/tt-ident-XXXXXX", secret[64], err[256];
  assert_non_null(mkdtemp(dir));
  assert_int_equal(chmod(dir, 0777), 0); /* nobody may create here */
  put(dir, "secret", "root's", 0600);
  FMT(secret, "%s/secret", dir);
  agent_files_ident_t id;
  assert_int_equal(agent_files_ident_load(&id, "nobody", err, sizeof(err)), 0);
  assert_true(id.switch_user);
  assert_int_equal(id.uid, nobody);
  agent_files_fs_t *fs = calloc(1, sizeof(*fs));
  assert_non_null(fs);
  assert_int_equal(agent_files_fs_init(fs, dir, NULL, NULL, err, sizeof(err)), 0);
  thread_case_t c = {.id = &id, .fs = fs, .dir = dir, .secret = secret};
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, as_user, &c), 0);
  assert_int_equal(pthread_join(th, NULL), 0);
  assert_int_equal(c.applied, 0);
  assert_int_equal(c.fsuid, (int)nobody);
  assert_false(c.has_root_group);
  assert_int_equal(c.secret_errno, EACCES);
  assert_int_equal(c.confined_read, TT_EDENIED);
  assert_non_null(strstr(c.err, "permission denied"));
  assert_int_equal(c.made_uid, (int)nobody);
  assert_int_equal(c.made_gid, (int)nogroup);
  /* The rest of the process is still root. */
  int fd = open(secret, O_RDONLY | O_CLOEXEC);
  assert_true(fd >= 0);
  close(fd);
  assert_int_equal((int)syscall(SYS_setfsuid, (uid_t)-1), 0);
  agent_files_ident_free(&id);
  free(fs);
  rm_tree(dir);
}

/* As root with no shell.user, files are off with why: never served as root by default. */
static void test_identity_root_needs_user(void **state) {
  (void)state;
  if (geteuid() != 0) skip();
  agent_files_ident_t id;
  char err[256];
  assert_int_equal(agent_files_ident_load(&id, "", err, sizeof(err)), TT_EDENIED);
  assert_non_null(strstr(err, "shell.user is not configured"));
  assert_int_equal(agent_files_ident_load(&id, "no-such-user-tt", err, sizeof(err)), TT_EDENIED);
  assert_non_null(strstr(err, "does not exist"));
  /* root named as shell.user: files are root's, nothing to switch. */
  assert_int_equal(agent_files_ident_load(&id, "root", err, sizeof(err)), 0);
  assert_false(id.switch_user);
  agent_files_ident_free(&id);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_reads_openat2, tree_setup, tree_teardown),
      cmocka_unit_test_setup_teardown(test_reads_walk, tree_setup, tree_teardown),
      cmocka_unit_test_setup_teardown(test_bad_paths, tree_setup, tree_teardown),
      cmocka_unit_test_setup_teardown(test_parents_openat2, tree_setup, tree_teardown),
      cmocka_unit_test_setup_teardown(test_parents_walk, tree_setup, tree_teardown),
      cmocka_unit_test_setup_teardown(test_root_replaced, tree_setup, tree_teardown),
      cmocka_unit_test_setup_teardown(test_roots_config, tree_setup, tree_teardown),
      cmocka_unit_test(test_identity_not_root),
      cmocka_unit_test(test_identity_dropped),
      cmocka_unit_test(test_identity_root_needs_user),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
