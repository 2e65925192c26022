/* Containment: every process a support session starts lives where the agent can find all of
 * it and kill all of it, however it detaches (a background job, nohup, setsid, a double
 * fork), so that nothing a technician started outlives the session or answers for the
 * employee on the consent socket.
 *
 * cgroup mode (preferred): each shell or command gets a cgroup v2 group of its own inside
 * its session's group, <the agent's group>/tether-sessions.<agent pid>/S-<n>/p<k>. The child
 * moves itself in between fork and exec (it writes "0" to the group's cgroup.procs, opened
 * by the parent), so nothing it ever starts is outside. When the shell or command ends, the
 * session ends, or the agent stops, the agent writes cgroup.kill, waits for cgroup.events to
 * say "populated 0", and removes the group. The groups sit inside the agent's own group
 * because that is what systemd delegates to a unit with Delegate=yes (no controllers are
 * enabled there, so the agent may stay in its group while groups exist below it).
 *
 * subreaper mode (where no cgroup2 is writable): the forked child stays behind as a small
 * keeper process marked PR_SET_CHILD_SUBREAPER, and forks the shell or command below itself.
 * An orphan anywhere below goes to its nearest living subreaper ancestor, the keeper, never
 * to init: the keeper's descendants are exactly what this shell or command started, with no
 * bookkeeping that a setsid or a double fork could escape. The keeper passes the agent's
 * hang-ups on; when the shell or command exits, or the agent asks (SIGUSR1), or the agent
 * dies (the parent-death signal), it kills every child it has, again as orphans come up to
 * it, until it has none; then it exits as the shell or command did. The agent is a
 * subreaper too: should a keeper itself be killed, what it held comes up to the agent, which
 * kills every child of its own that is neither a keeper nor a consent dialog. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "agent.h"
#include "tt/log.h"

/* After cgroup.kill, cgroup.events is read again after 1, 2, 4 ... ms, at most this apart. */
#define BOX_POLL_MAX_MS 100u
/* Still populated after this long (a process stuck in the kernel): say so, write
 * cgroup.kill again each time this passes, and poll once a second. */
#define BOX_SLOW_MS 5000u
#define BOX_SLOW_POLL_MS 1000u
/* The agent stopping waits this long for a group to empty before it leaves it. */
#define BOX_STOP_WAIT_MS 5000u
/* The keeper looks for new orphans this often while it kills (nanoseconds). */
#define KEEPER_RESCAN_NS (20 * 1000 * 1000L)
/* /proc/PID/stat up to the parent pid: "pid (comm) S ppid" with a 16-byte comm. */
#define STAT_READ_MAX 256u

#define ROOT_PREFIX "tether-sessions."

struct agent_box_s {
  agent_box_t *next;
  struct agent_contain_s *c;
  uint64_t session; /* 0: a leftover tree being cleared, not a shell's */
  pid_t pid;        /* the child we forked (the keeper in subreaper mode); 0 before, or once reaped */
  int procs_fd;     /* cgroup: the group's cgroup.procs, for the child to write; -1 after */
  bool held;        /* shell.c still holds it */
  bool killing;     /* cgroup.kill written, waiting for populated 0 */
  bool done;        /* empty and removed (or given up on) */
  bool timer_open, warned;
  uint64_t kill_at, rekill_at; /* uv_now */
  unsigned delay;
  uv_timer_t timer;
  char dir[AGENT_CGROUP_PATH_MAX];
};

struct agent_contain_s {
  agent_t *a;
  agent_containment_t mode; /* CGROUP or SUBREAPER once set up */
  pid_t me;
  bool stopping;
  agent_box_t *boxes;
  uint32_t next_box;
  char own[AGENT_CGROUP_PATH_MAX];      /* cgroup: the agent's own group, in the file system */
  char root[AGENT_CGROUP_PATH_MAX];     /* cgroup: own/tether-sessions.PID */
  char root_rel[AGENT_CGROUP_PATH_MAX]; /* the same as /proc/PID/cgroup names it */
};

/* ---- small helpers, async-signal-safe -------------------------------------------------- */

/* The parent of pid, from /proc/PID/stat; 0 if it cannot be read. */
static pid_t ppid_of(pid_t pid) {
  char path[40] = "/proc/", buf[STAT_READ_MAX];
  size_t n = agent_procfs_utoa(path + 6, sizeof(path) - 6, (uint64_t)pid);
  if (!n) return 0;
  memcpy(path + 6 + n, "/stat", 6);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  ssize_t r = read(fd, buf, sizeof(buf));
  close(fd);
  return r > 0 ? agent_procfs_stat_ppid(buf, (size_t)r) : 0;
}

/* ---- the keeper (subreaper mode): a forked child, async-signal-safe calls only ----------- */

struct keeper_dirent {
  uint64_t ino;
  int64_t off;
  unsigned short reclen;
  unsigned char type;
  char name[];
};

/* SIGKILL every child the keeper has. Orphans below come up to it as their parents die, so
 * doing this until it has no child left reaches the whole tree. */
static void keeper_kill_children(pid_t me) {
  int dfd = open("/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return;
  _Alignas(8) char buf[4096];
  for (;;) {
    long n = syscall(SYS_getdents64, dfd, buf, sizeof(buf));
    if (n <= 0) break;
    for (long off = 0; off < n;) {
      const struct keeper_dirent *d = (const struct keeper_dirent *)(const void *)(buf + off);
      off += d->reclen;
      pid_t pid = agent_procfs_pid_name(d->name);
      if (pid > 0 && pid != me && ppid_of(pid) == me) kill(pid, SIGKILL);
    }
  }
  close(dfd);
}

/* Exit as the shell or command did, so that the agent reports its status. */
static __attribute__((noreturn)) void keeper_exit(int st) {
  if (WIFSIGNALED(st)) {
    int sig = WTERMSIG(st);
    struct rlimit none = {0, 0};
    (void)setrlimit(RLIMIT_CORE, &none); /* the command's crash is not the keeper's core */
    signal(sig, SIG_DFL);
    kill(getpid(), sig);
    sigset_t one;
    sigemptyset(&one);
    sigaddset(&one, sig);
    sigprocmask(SIG_UNBLOCK, &one, NULL);
    _exit(128 + sig); /* a signal whose default is not to end the process */
  }
  _exit(WIFEXITED(st) ? WEXITSTATUS(st) : 125);
}

static void keeper_close_all(int limit) {
#ifdef SYS_close_range
  if (syscall(SYS_close_range, 0u, ~0u, 0u) == 0) return;
#endif
  for (int fd = 0; fd < limit; fd++) close(fd);
}

static __attribute__((noreturn)) void keeper_run(pid_t g, pid_t agent, int limit) {
  static const int waited[] = {SIGCHLD, SIGUSR1, SIGHUP, SIGINT, SIGTERM, SIGQUIT};
  sigset_t set;
  sigemptyset(&set);
  for (size_t i = 0; i < sizeof(waited) / sizeof(waited[0]); i++) {
    sigaddset(&set, waited[i]);
    signal(waited[i], SIG_DFL); /* never SIG_IGN: an ignored signal is not even queued */
  }
  sigprocmask(SIG_BLOCK, &set, NULL); /* blocked since the fork already: taken by sigwaitinfo */
  keeper_close_all(limit);            /* the pty, pipes, sockets: only the shell holds them */
  setpgid(0, 0);                      /* the agent signals the keeper alone; it passes them on */
  prctl(PR_SET_PDEATHSIG, SIGUSR1);
  pid_t me = getpid();
  bool killing = getppid() != agent; /* the agent died before the line above */
  bool have = false;
  int status = 0;
  for (;;) {
    int st;
    pid_t r;
    while ((r = waitpid(-1, &st, WNOHANG)) > 0)
      if (r == g) {
        status = st;
        have = true;
        killing = true; /* the shell ended: nothing it started stays */
      }
    if (r < 0 && errno == ECHILD) break; /* no child left: the tree is empty */
    if (killing) {
      if (!have) kill(g, SIGKILL); /* even where /proc cannot be read; not after it is reaped */
      keeper_kill_children(me);
    }
    siginfo_t si;
    struct timespec ts = {0, KEEPER_RESCAN_NS};
    int s = killing ? sigtimedwait(&set, &si, &ts) : sigwaitinfo(&set, &si);
    if (s == SIGUSR1) killing = true;
    else if (s > 0 && s != SIGCHLD && !have) kill(-g, s); /* the shell leads its own group */
  }
  keeper_exit(have ? status : 0);
}

/* ---- boxes ----------------------------------------------------------------------------- */

static void contain_maybe_free(struct agent_contain_s *c);

/* Remove a group and the groups below it (a group holds no files of its own to remove). */
static void rm_tree(const char *dir) {
  DIR *d = opendir(dir);
  if (d) {
    struct dirent *e;
    while ((e = readdir(d))) {
      if (e->d_type != DT_DIR || strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
      char sub[AGENT_CGROUP_PATH_MAX];
      if (snprintf(sub, sizeof(sub), "%s/%s", dir, e->d_name) < (int)sizeof(sub)) rm_tree(sub);
    }
    closedir(d);
  }
  if (rmdir(dir) && errno != ENOENT)
    TT_WARN("contain", "cannot remove a cgroup", "dir=%s err=%s", dir, strerror(errno));
}

static int write_word(const char *dir, const char *file, const char *word) {
  char path[AGENT_CGROUP_PATH_MAX + 32];
  snprintf(path, sizeof(path), "%s/%s", dir, file);
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return -errno;
  int rc = write(fd, word, strlen(word)) == (ssize_t)strlen(word) ? 0 : -errno;
  close(fd);
  return rc;
}

/* 1 while the group or one below it holds a process, 0 once none does (or it is gone). */
static int populated(const char *dir) {
  char path[AGENT_CGROUP_PATH_MAX + 32], buf[256];
  snprintf(path, sizeof(path), "%s/cgroup.events", dir);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno == ENOENT ? 0 : 1;
  ssize_t n = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  if (n <= 0) return 1;
  buf[n] = '\0';
  const char *p = strstr(buf, "populated ");
  return p && p[10] == '0' ? 0 : 1;
}

static void box_close_cb(uv_handle_t *h) { free(h->data); }

static void box_maybe_free(agent_box_t *b) {
  if (b->held || !b->done) return;
  struct agent_contain_s *c = b->c;
  for (agent_box_t **pb = &c->boxes; *pb; pb = &(*pb)->next)
    if (*pb == b) {
      *pb = b->next;
      break;
    }
  if (b->procs_fd >= 0) close(b->procs_fd);
  if (b->timer_open) uv_close((uv_handle_t *)&b->timer, box_close_cb);
  else free(b);
  contain_maybe_free(c);
}

static void box_removed(agent_box_t *b) {
  if (b->dir[0]) rm_tree(b->dir);
  if (b->dir[0] && b->session) { /* the session's group goes with its last box (EBUSY while others live) */
    char *slash = strrchr(b->dir, '/');
    if (slash) {
      *slash = '\0';
      (void)!rmdir(b->dir);
    }
  }
  b->done = true;
  box_maybe_free(b);
}

static void box_wait_cb(uv_timer_t *t) {
  agent_box_t *b = t->data;
  struct agent_contain_s *c = b->c;
  if (!populated(b->dir)) {
    box_removed(b);
    return;
  }
  uint64_t now = uv_now(c->a->loop), waited = now - b->kill_at;
  if (c->stopping && waited >= BOX_STOP_WAIT_MS) {
    TT_ERROR("contain", "processes do not die: their group is left behind", "group=%s", b->dir);
    b->done = true;
    box_maybe_free(b);
    return;
  }
  if (waited >= BOX_SLOW_MS && !b->warned) {
    TT_WARN("contain", "processes still alive after cgroup.kill (stuck in the kernel?)", "group=%s", b->dir);
    b->warned = true;
  }
  if (now >= b->rekill_at) {
    (void)!write_word(b->dir, "cgroup.kill", "1");
    b->rekill_at = now + BOX_SLOW_MS;
  }
  b->delay = waited >= BOX_SLOW_MS ? BOX_SLOW_POLL_MS : b->delay * 2 > BOX_POLL_MAX_MS ? BOX_POLL_MAX_MS : b->delay * 2;
  uv_timer_start(&b->timer, box_wait_cb, b->delay, 0);
}

static agent_box_t *box_alloc(struct agent_contain_s *c, uint64_t session) {
  agent_box_t *b = calloc(1, sizeof(*b));
  if (!b) return NULL;
  b->c = c;
  b->session = session;
  b->procs_fd = -1;
  if (c->mode == AGENT_CONTAIN_CGROUP) {
    uv_timer_init(c->a->loop, &b->timer);
    b->timer.data = b;
    b->timer_open = true;
  }
  b->next = c->boxes;
  c->boxes = b;
  return b;
}

int agent_box_new(agent_t *a, uint64_t session, agent_box_t **out, char *err, size_t errlen) {
  struct agent_contain_s *c = a->contain;
  *out = NULL;
  if (!c || c->stopping) {
    snprintf(err, errlen, "the agent is shutting down");
    return TT_ESTATE;
  }
  agent_box_t *b = box_alloc(c, session);
  if (!b) {
    snprintf(err, errlen, "the agent is out of memory");
    return TT_ENOMEM;
  }
  b->held = true;
  *out = b;
  if (c->mode != AGENT_CONTAIN_CGROUP) return 0;
  char sdir[AGENT_CGROUP_PATH_MAX], procs[AGENT_CGROUP_PATH_MAX + 16];
  int rc = 0;
  if (snprintf(sdir, sizeof(sdir), "%s/S-%llu", c->root, (unsigned long long)session) >= (int)sizeof(sdir) ||
      snprintf(b->dir, sizeof(b->dir), "%s/p%u", sdir, ++c->next_box) >= (int)sizeof(b->dir)) {
    rc = TT_ETOOBIG;
    snprintf(err, errlen, "the session's cgroup path is too long");
    b->dir[0] = '\0'; /* a cut path could name some other group: never remove it */
  } else if ((mkdir(sdir, 0755) && errno != EEXIST) || mkdir(b->dir, 0755)) {
    rc = -errno;
    snprintf(err, errlen, "cannot make the session's cgroup: %s", strerror(errno));
    b->dir[0] = '\0'; /* not ours to remove (an empty session group goes with the root) */
  } else {
    snprintf(procs, sizeof(procs), "%s/cgroup.procs", b->dir);
    if ((b->procs_fd = open(procs, O_WRONLY | O_CLOEXEC)) < 0) {
      rc = -errno;
      snprintf(err, errlen, "cannot open the session's cgroup: %s", strerror(errno));
    }
  }
  if (rc) { /* nothing started in it: remove what was made, and let the caller release it */
    TT_ERROR("contain", "no cgroup for a session process", "session=S-%llu err=\"%s\"", (unsigned long long)session,
             err);
    b->killing = true;
    box_removed(b); /* stays allocated while held */
    return rc;
  }
  return 0;
}

int agent_box_enter(const agent_box_t *b, int limit) {
  if (b->c->mode == AGENT_CONTAIN_CGROUP) return write(b->procs_fd, "0", 1) == 1 ? 0 : errno ? errno : EIO;
  if (prctl(PR_SET_CHILD_SUBREAPER, 1)) return errno;
  pid_t g = fork();
  if (g < 0) return errno;
  if (g == 0) return 0;
  keeper_run(g, b->c->me, limit);
}

void agent_box_started(agent_box_t *b, pid_t pid) {
  b->pid = pid;
  if (b->procs_fd >= 0) {
    close(b->procs_fd);
    b->procs_fd = -1;
  }
}

void agent_box_kill(agent_box_t *b) {
  if (b->done) return;
  if (b->c->mode == AGENT_CONTAIN_SUBREAPER) {
    if (b->pid > 0) kill(b->pid, SIGUSR1); /* the keeper kills its tree, then exits */
    return;
  }
  if (b->killing) return;
  b->killing = true;
  int rc = write_word(b->dir, "cgroup.kill", "1");
  if (rc && rc != -ENOENT)
    TT_ERROR("contain", "cannot kill a session's processes", "group=%s err=%s", b->dir, tt_strerror(rc));
  b->kill_at = uv_now(b->c->a->loop);
  b->rekill_at = b->kill_at + BOX_SLOW_MS;
  b->delay = 1;
  uv_timer_start(&b->timer, box_wait_cb, 1, 0); /* SIGKILL is delivered; exits take a moment */
}

void agent_box_signal(agent_box_t *b, int sig) {
  if (sig == SIGKILL) {
    agent_box_kill(b);
    return;
  }
  if (b->pid <= 0) return;
  if (b->c->mode == AGENT_CONTAIN_CGROUP) kill(-b->pid, sig); /* a session leader: its group */
  else kill(b->pid, sig);                                     /* the keeper passes it on */
}

void agent_box_exited(agent_box_t *b) {
  b->pid = 0;
  /* A keeper exits only once its tree is empty; a group may still hold what the shell left. */
  if (b->c->mode == AGENT_CONTAIN_SUBREAPER) b->done = true;
  else agent_box_kill(b);
}

void agent_box_release(agent_box_t *b) {
  if (!b) return;
  b->held = false;
  if (b->c->mode == AGENT_CONTAIN_SUBREAPER) {
    agent_box_kill(b); /* only before a keeper ever ran: released boxes were reaped */
    b->done = true;
  } else {
    agent_box_kill(b);
  }
  box_maybe_free(b);
}

void agent_contain_end_session(agent_t *a, uint64_t session) {
  struct agent_contain_s *c = a->contain;
  if (!c || !session) return;
  if (c->mode == AGENT_CONTAIN_CGROUP) { /* the whole session at once, then each box's wait */
    char sdir[AGENT_CGROUP_PATH_MAX];
    if (snprintf(sdir, sizeof(sdir), "%s/S-%llu", c->root, (unsigned long long)session) < (int)sizeof(sdir))
      (void)!write_word(sdir, "cgroup.kill", "1");
  }
  for (agent_box_t *b = c->boxes; b; b = b->next)
    if (b->session == session) agent_box_kill(b);
}

/* ---- the agent's own children (subreaper mode) ---------------------------------------- */

void agent_contain_sweep(agent_t *a) {
  struct agent_contain_s *c = a->contain;
  /* Without the consent module (the agent's last moments) its dialogs cannot be told from
   * strays, and reaping one that libuv waits for would leave libuv waiting forever. */
  if (!c || c->mode != AGENT_CONTAIN_SUBREAPER || !a->consent) return;
  DIR *d = opendir("/proc");
  if (!d) return;
  struct dirent *e;
  while ((e = readdir(d))) {
    pid_t pid = agent_procfs_pid_name(e->d_name);
    if (pid <= 0 || ppid_of(pid) != c->me || agent_shell_session_of(a, pid) || agent_consent_owns_pid(a, pid))
      continue;
    int st;
    if (waitpid(pid, &st, WNOHANG) == pid) continue; /* one killed before, reaped now */
    TT_WARN("contain", "a session process lost its keeper: killed", "pid=%d", (int)pid);
    kill(pid, SIGKILL);
  }
  closedir(d);
}

/* ---- who is a session's -------------------------------------------------------------- */

bool agent_contain_peer(agent_t *a, pid_t pid, uint64_t *session) {
  struct agent_contain_s *c = a->contain;
  *session = 0;
  if (c && c->mode == AGENT_CONTAIN_CGROUP) {
    char path[64] = "/proc/", text[AGENT_CGROUP_PATH_MAX * 2], cg[AGENT_CGROUP_PATH_MAX];
    size_t n = agent_procfs_utoa(path + 6, sizeof(path) - 6, (uint64_t)pid);
    memcpy(path + 6 + n, "/cgroup", 8);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t r = fd >= 0 ? read(fd, text, sizeof(text) - 1) : -1;
    if (fd >= 0) close(fd);
    if (r > 0) {
      text[r] = '\0';
      if (agent_procfs_cgroup2_path(text, cg, sizeof(cg)) == 0 && agent_procfs_under(cg, c->root_rel, session))
        return true;
    }
  }
  /* Below the agent: a shell, a command or a consent dialog, or (subreaper mode) anything
   * they started, since orphans come up to a keeper or the agent, never to init. */
  pid_t me = getpid(), child = 0;
  for (int depth = 0; pid > 1 && depth < 4096; depth++) {
    if (pid == me) {
      if (child) *session = agent_shell_session_of(a, child);
      return true;
    }
    child = pid;
    pid = ppid_of(pid);
  }
  return false;
}

const char *agent_contain_mode_name(const agent_t *a) {
  if (!a->contain) return "none";
  return a->contain->mode == AGENT_CONTAIN_CGROUP ? "cgroup" : "subreaper";
}

/* ---- set up and tear down --------------------------------------------------------------- */

/* Trees left by agents that died without removing theirs (kill -9, a crash): what runs there
 * is killed and the groups removed. An agent still running keeps its own. */
static void clear_leftovers(struct agent_contain_s *c) {
  DIR *d = opendir(c->own);
  if (!d) return;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (e->d_type != DT_DIR || strncmp(e->d_name, ROOT_PREFIX, strlen(ROOT_PREFIX)) != 0) continue;
    pid_t pid = agent_procfs_pid_name(e->d_name + strlen(ROOT_PREFIX));
    if (pid <= 0 || pid == c->me || kill(pid, 0) == 0 || errno != ESRCH) continue;
    agent_box_t *b = box_alloc(c, 0);
    if (!b) break;
    if (snprintf(b->dir, sizeof(b->dir), "%s/%s", c->own, e->d_name) >= (int)sizeof(b->dir)) {
      b->done = true;
      box_maybe_free(b);
      continue;
    }
    TT_WARN("contain", "processes of an agent that died: killed", "group=%s", b->dir);
    agent_box_kill(b);
  }
  closedir(d);
}

/* Can a child of ours be moved into a group below root? Tried once at start, so that a
 * machine where it cannot falls back at once instead of failing every shell. */
static int probe_move(struct agent_contain_s *c, char *why, size_t whylen) {
  char dir[AGENT_CGROUP_PATH_MAX + 16], procs[AGENT_CGROUP_PATH_MAX + 32];
  snprintf(dir, sizeof(dir), "%s/probe", c->root);
  snprintf(procs, sizeof(procs), "%s/cgroup.procs", dir);
  if (mkdir(dir, 0755)) {
    snprintf(why, whylen, "cannot make a group in %s: %s", c->root, strerror(errno));
    return -errno;
  }
  int fd = open(procs, O_WRONLY | O_CLOEXEC), rc = 0;
  if (fd < 0) {
    rc = -errno;
    snprintf(why, whylen, "cannot open %s: %s", procs, strerror(errno));
    goto out;
  }
  pid_t pid = fork();
  if (pid == 0) _exit(write(fd, "0", 1) == 1 ? 0 : errno & 0x7f);
  close(fd);
  int st = 0;
  while (pid > 0 && waitpid(pid, &st, 0) < 0 && errno == EINTR) continue;
  if (pid < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
    rc = pid < 0 ? -errno : -(WIFEXITED(st) && WEXITSTATUS(st) ? WEXITSTATUS(st) : EIO);
    snprintf(why, whylen, "cannot move a process into %s: %s", dir, strerror(-rc));
  }
out:
  (void)!rmdir(dir);
  return rc;
}

static int cgroup_setup(struct agent_contain_s *c, char *why, size_t whylen) {
  char mnt[AGENT_CGROUP_PATH_MAX] = "", mroot[AGENT_CGROUP_PATH_MAX] = "", path[AGENT_CGROUP_PATH_MAX] = "";
  char *line = NULL;
  size_t cap = 0;
  int rc = TT_ENOTFOUND;
  FILE *f = fopen("/proc/self/mountinfo", "re");
  while (f && rc == TT_ENOTFOUND && getline(&line, &cap, f) > 0)
    rc = agent_procfs_cgroup2_mount(line, mnt, sizeof(mnt), mroot, sizeof(mroot));
  if (f) fclose(f);
  if (rc) {
    snprintf(why, whylen, rc == TT_ENOTFOUND ? "no cgroup2 file system is mounted" : "the cgroup2 mount path is too long");
    goto out;
  }
  rc = TT_ENOTFOUND;
  f = fopen("/proc/self/cgroup", "re");
  while (f && rc == TT_ENOTFOUND && getline(&line, &cap, f) > 0) rc = agent_procfs_cgroup2_path(line, path, sizeof(path));
  if (f) fclose(f);
  if (!rc) rc = agent_procfs_cgroup_dir(mnt, mroot, path, c->own, sizeof(c->own));
  if (rc) {
    snprintf(why, whylen, "the agent's own cgroup2 group is not under %s", mnt);
    goto out;
  }
  size_t pl = strlen(path);
  if (pl && path[pl - 1] == '/') path[pl - 1] = '\0'; /* the root group, "/" */
  if (snprintf(c->root, sizeof(c->root), "%s/" ROOT_PREFIX "%d", c->own, (int)c->me) >= (int)sizeof(c->root) ||
      snprintf(c->root_rel, sizeof(c->root_rel), "%s/" ROOT_PREFIX "%d", path, (int)c->me) >=
          (int)sizeof(c->root_rel)) {
    rc = TT_ETOOBIG;
    snprintf(why, whylen, "the agent's cgroup path is too long");
    goto out;
  }
  if (mkdir(c->root, 0755) && errno != EEXIST) { /* EEXIST: left by a dead agent with our pid */
    rc = -errno;
    snprintf(why, whylen, "cannot make %s: %s", c->root, strerror(errno));
    goto out;
  }
  char probe[AGENT_CGROUP_PATH_MAX + 16];
  snprintf(probe, sizeof(probe), "%s/cgroup.kill", c->root);
  if (access(probe, W_OK)) {
    rc = -errno;
    snprintf(why, whylen, "%s cannot be written (cgroup.kill needs Linux 5.14): %s", probe, strerror(errno));
    (void)!rmdir(c->root);
    goto out;
  }
  (void)!write_word(c->root, "cgroup.kill", "1"); /* anything a dead namesake left */
  rc = probe_move(c, why, whylen);
  if (rc) (void)!rmdir(c->root);
out:
  free(line);
  return rc;
}

int agent_contain_init(agent_t *a, char *err, size_t errlen) {
  struct agent_contain_s *c = calloc(1, sizeof(*c));
  if (!c) {
    snprintf(err, errlen, "out of memory");
    return TT_ENOMEM;
  }
  c->a = a;
  c->me = getpid();
  char why[AGENT_CGROUP_PATH_MAX + 128] = "shell.containment is subreaper";
  if (a->cfg.containment != AGENT_CONTAIN_SUBREAPER) {
    int rc = cgroup_setup(c, why, sizeof(why));
    if (!rc) {
      c->mode = AGENT_CONTAIN_CGROUP;
      a->contain = c;
      TT_INFO("contain", "containment", "mode=cgroup group=%s", c->root);
      clear_leftovers(c);
      return 0;
    }
    if (a->cfg.containment == AGENT_CONTAIN_CGROUP) {
      snprintf(err, errlen, "shell.containment is cgroup, but %s", why);
      free(c);
      return rc;
    }
  }
  if (prctl(PR_SET_CHILD_SUBREAPER, 1)) {
    int rc = -errno;
    snprintf(err, errlen, "cannot become a child subreaper: %s", strerror(errno));
    free(c);
    return rc;
  }
  c->mode = AGENT_CONTAIN_SUBREAPER;
  a->contain = c;
  TT_INFO("contain", "containment", "mode=subreaper why=\"%s\"", why);
  return 0;
}

static void contain_maybe_free(struct agent_contain_s *c) {
  if (!c->stopping || c->boxes) return;
  if (c->mode == AGENT_CONTAIN_CGROUP) rm_tree(c->root);
  c->a->contain = NULL;
  free(c);
}

void agent_contain_close(agent_t *a) {
  struct agent_contain_s *c = a->contain;
  if (!c || c->stopping) return;
  c->stopping = true;
  if (c->mode == AGENT_CONTAIN_CGROUP) (void)!write_word(c->root, "cgroup.kill", "1");
  else agent_contain_sweep(a);
  for (agent_box_t *b = c->boxes, *next; b; b = next) {
    next = b->next;
    agent_box_kill(b);
  }
  contain_maybe_free(c);
}
