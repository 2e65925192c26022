/* Running collectors and what they share (collect.h): paths under the environment's root,
 * bounded whole-file reads, and helper programs with a timeout and an output cap. */
#include "collect.h"
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

int inv_collect(const inv_env_t *env, const inv_collector_t *c, inv_table_t *t) {
  size_t n = 0;
  while (c->cols[n]) n++;
  int rc = inv_table_init(t, c->name, c->cols, n);
  if (rc) return rc;
  c->fn(env, t);
  return 0;
}

int inv_path(const inv_env_t *env, char *out, size_t cap, const char *fmt, ...) {
  int n = snprintf(out, cap, "%s", env->root ? env->root : "");
  if (n < 0 || (size_t)n >= cap) return TT_ETOOBIG;
  va_list ap;
  va_start(ap, fmt);
  int m = vsnprintf(out + n, cap - (size_t)n, fmt, ap);
  va_end(ap);
  if (m < 0 || (size_t)m >= cap - (size_t)n) return TT_ETOOBIG;
  return 0;
}

/* Open path for reading as the machine under env->root sees it: under a root (a container's
 * tree, a fixture) every symlink resolves inside it (openat2's RESOLVE_IN_ROOT), so a link
 * such as run/reboot-required.pkgs -> /etc/shadow reads the root's own file, not the host's.
 * Only regular files: a FIFO or a device is not an inventory file. -errno on failure. */
static int open_in_root(const inv_env_t *env, const char *path) {
  const int flags = O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK;
  int fd;
  if (!env->root || !env->root[0]) {
    fd = open(path, flags);
  } else {
    int dfd = open(env->root, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) return -errno;
    while (*path == '/') path++;
    struct open_how how = {.flags = (uint64_t)flags, .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS};
    fd = (int)syscall(SYS_openat2, dfd, path, &how, sizeof how);
    int e = errno;
    close(dfd);
    if (fd < 0 && e == ENOSYS) return -ENOSYS; /* Linux < 5.6: refuse rather than follow links out */
    errno = e;
  }
  if (fd < 0) return -errno;
  struct stat sb;
  if (fstat(fd, &sb) || !S_ISREG(sb.st_mode)) {
    close(fd);
    return TT_EINVAL;
  }
  return fd;
}

int inv_read(const inv_env_t *env, const char *path, tt_buf_t *out) {
  tt_buf_init(out, INV_FILE_MAX + 2);
  int rc = 0;
  int fd = open_in_root(env, path);
  if (fd < 0) return fd;
  /* /proc and /sys files say size 0: read until the end, whatever stat says; one byte past
   * the limit tells a file that is too big from one that fits exactly. */
  for (;;) {
    size_t left = INV_FILE_MAX + 1 - out->len;
    if (left == 0) {
      rc = TT_ETOOBIG;
      break;
    }
    size_t want = left < 65536 ? left : 65536;
    if ((rc = tt_buf_reserve(out, want))) break;
    ssize_t r = read(fd, tt_buf_tail(out), want);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      rc = -errno;
      break;
    }
    if (r == 0) break;
    tt_buf_commit(out, (size_t)r);
  }
  close(fd);
  if (!rc) rc = tt_buf_reserve(out, 1);
  if (rc) {
    tt_buf_free(out);
    return rc;
  }
  *tt_buf_tail(out) = 0; /* a NUL after the bytes, not counted */
  return 0;
}

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* argv[0] in env->path, or argv[0] itself when it has a slash. */
static int find_prog(const inv_env_t *env, const char *name, char *out, size_t cap) {
  if (strchr(name, '/')) {
    if ((size_t)snprintf(out, cap, "%s", name) >= cap) return TT_ETOOBIG;
    return access(out, X_OK) == 0 ? 0 : TT_ENOTFOUND;
  }
  const char *p = env->path ? env->path : "/usr/bin:/bin:/usr/sbin:/sbin";
  while (*p) {
    const char *e = strchr(p, ':');
    size_t n = e ? (size_t)(e - p) : strlen(p);
    if (n > 0 && (size_t)snprintf(out, cap, "%.*s/%s", (int)n, p, name) < cap && access(out, X_OK) == 0) return 0;
    p += n + (e ? 1 : 0);
  }
  return TT_ENOTFOUND;
}

int inv_run(const inv_env_t *env, char *const argv[], tt_buf_t *out, int *status, char *err, size_t errlen) {
  char prog[4096];
  int pfd[2] = {-1, -1}, rc = 0;
  pid_t pid = -1;
  *status = -1;
  tt_buf_init(out, INV_RUN_OUT_MAX + 1);
  err[0] = 0;
  if (find_prog(env, argv[0], prog, sizeof(prog))) {
    snprintf(err, errlen, "%s is not installed", argv[0]);
    return TT_ENOTFOUND;
  }
  if (pipe2(pfd, O_CLOEXEC)) return -errno;
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t at;
  posix_spawn_file_actions_init(&fa);
  posix_spawnattr_init(&at);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, pfd[1], 1);
  posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
  /* Its own process group, so a timeout kills whatever it started too. */
  posix_spawnattr_setpgroup(&at, 0);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&at, &none);
  sigset_t dfl;
  sigfillset(&dfl);
  sigdelset(&dfl, SIGKILL);
  sigdelset(&dfl, SIGSTOP);
  posix_spawnattr_setsigdefault(&at, &dfl);
  posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  char *envp[] = {"LC_ALL=C", "SYSTEMD_COLORS=0", "SYSTEMD_PAGER=", NULL};
  int e = posix_spawn(&pid, prog, &fa, &at, argv, envp);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&at);
  close(pfd[1]);
  if (e) {
    close(pfd[0]);
    snprintf(err, errlen, "cannot run %s: %s", argv[0], strerror(e));
    return -e;
  }
  uint64_t deadline = now_ms() + (env->timeout_ms ? env->timeout_ms : INV_RUN_TIMEOUT_MS);
  for (;;) {
    uint64_t now = now_ms();
    if (now >= deadline) {
      rc = TT_ETIMEOUT;
      /* Said the same way wherever it shows (a report's table, a check's unknown result). */
      unsigned t = env->timeout_ms ? env->timeout_ms : INV_RUN_TIMEOUT_MS;
      if (t % 1000 == 0) snprintf(err, errlen, "%s timed out after %us (stopped)", argv[0], t / 1000);
      else snprintf(err, errlen, "%s timed out after %ums (stopped)", argv[0], t);
      break;
    }
    struct pollfd p = {.fd = pfd[0], .events = POLLIN};
    int n = poll(&p, 1, (int)(deadline - now));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      rc = -errno;
      break;
    }
    if (n == 0) continue;
    if (out->len >= INV_RUN_OUT_MAX) {
      rc = TT_ETOOBIG;
      snprintf(err, errlen, "%s printed more than %u bytes: stopped", argv[0], (unsigned)INV_RUN_OUT_MAX);
      break;
    }
    size_t want = INV_RUN_OUT_MAX - out->len < 65536 ? INV_RUN_OUT_MAX - out->len : 65536;
    if ((rc = tt_buf_reserve(out, want))) break;
    ssize_t r = read(pfd[0], tt_buf_tail(out), want);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      rc = -errno;
      break;
    }
    if (r == 0) break;
    tt_buf_commit(out, (size_t)r);
  }
  close(pfd[0]);
  if (rc) kill(-pid, SIGKILL);
  int st = 0;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  if (!rc) {
    *status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
    if ((rc = tt_buf_reserve(out, 1)) == 0) *tt_buf_tail(out) = 0;
  }
  if (rc) {
    tt_buf_free(out);
    if (!err[0]) snprintf(err, errlen, "%s: %s", argv[0], tt_strerror(rc));
  }
  return rc;
}

/* What the pushed inventory leaves out (the diagnostics report keeps it all): tables and
 * columns that change by the minute and would make every interval a new version. */
static const char *const g_volatile[][12] = {
    {"memory_info", "memory_free", "memory_available", "buffers", "cached", "swap_cached", "active", "inactive",
     "swap_free", NULL},
    {"mounts", "blocks_free", "blocks_available", "inodes_free", NULL},
    {"interface_details", "ipackets", "opackets", "ibytes", "obytes", "ierrors", "oerrors", "idrops", "odrops",
     "collisions", "last_change", NULL},
    {"cpu_info", "current_clock_speed", NULL},
    {"battery", "state", "charging", "charged", "current_capacity", "percent_remaining", "amperage", "voltage",
     "minutes_until_empty", "minutes_to_full_charge", "cycle_count", NULL},
    {"listening_ports", "pid", "fd", "socket", NULL},
    {"logged_in_users", "pid", "time", "sid", NULL},
    {"systemd_units", "job_id", "job_type", "job_path", NULL},
};

/* uptime is all live state; logged_in_users is who uses the machine, which a technician sees
 * in diag under a session the employee agreed to, not in an inventory anyone may read. */
bool inv_stable_table(const char *table) { return strcmp(table, "uptime") && strcmp(table, "logged_in_users"); }

bool inv_stable_column(const char *table, const char *col) {
  for (size_t i = 0; i < sizeof(g_volatile) / sizeof(g_volatile[0]); i++) {
    if (strcmp(g_volatile[i][0], table)) continue;
    for (size_t k = 1; g_volatile[i][k]; k++)
      if (strcmp(g_volatile[i][k], col) == 0) return false;
  }
  return true;
}
