/* Shell and exec channels: a login shell on a pty, or one command on pipes, run as
 * shell.user inside a session granted here. Output is read only while the console has
 * credit for it, and console input is acknowledged only once the pty took it, so credit
 * end to end reflects real progress and a stalled console stalls the process, not memory.
 * Each shell or command lives in a box (contain.c) with everything it starts: when it
 * ends, its channel goes, or its session ends, the whole box is killed. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pty.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include "agent.h"
#include "tt/log.h"
#include "tt/msg.h"

#define SHELL_KILL_AFTER_MS 2000u   /* SIGHUP, then SIGKILL after this */
#define SHELL_DRAIN_MS 1000u        /* after the shell exits, what a background job keeps open */
#define SHELL_GROUPS_MAX 256
#define CTRL_OVERHEAD 8u            /* a ChannelControl around stderr bytes: tag + length */

typedef struct proc_s proc_t;
struct proc_s {
  Tether__ChannelKind kind; /* first, as in chan.c's channels: tells ours apart */
  agent_t *a;
  proc_t *next;
  tt_mux_t *m;
  tt_chan_t *ch;            /* NULL once the channel is gone */
  uint64_t session;
  agent_box_t *box;         /* where it and all it starts live */
  pid_t pid;
  int master;               /* shell: the pty */
  bool exited, done, released;
  int code, sig;
  int handles;              /* initialised handles not yet closed */
  uv_pipe_t out, err;       /* shell: out is the pty master; exec: stdout, stderr */
  uv_pipe_t in;             /* exec with input: the command's stdin */
  uv_shutdown_t in_shut;    /* the opener's EOF: closed once what was written is out */
  uv_timer_t timer;         /* kill after hangup; drain after exit */
  bool out_open, err_open, timer_open, in_open, in_closing;
  bool out_reading, err_reading;
  uint8_t rbuf[TT_DATA_CHUNK_MAX];
};

struct agent_shells_s {
  agent_t *a;
  proc_t *list;
  uv_signal_t sigchld;
  bool stopping;
};

typedef struct {
  uid_t uid;
  gid_t gid;
  bool switch_user; /* we are root: drop to uid/gid */
  char name[TT_NAME_MAX + 1];
  char home[AGENT_PATH_MAX];
  char shell[AGENT_PATH_MAX];
  gid_t groups[SHELL_GROUPS_MAX];
  int ngroups;
} run_as_t;

static void maybe_finish(proc_t *p);
static void start_reading(proc_t *p);
static void drain_cb(uv_timer_t *t);

/* ---- who runs it ------------------------------------------------------------------------ */

static int run_as(const agent_cfg_t *cfg, run_as_t *r, char *err, size_t errlen) {
  struct passwd pw, *res = NULL;
  char buf[4096];
  bool root = geteuid() == 0;
  memset(r, 0, sizeof(*r));
  if (!cfg->shell_user[0] && root) {
    snprintf(err, errlen, "shell.user is not configured on this device");
    return TT_EDENIED;
  }
  int rc = cfg->shell_user[0] ? getpwnam_r(cfg->shell_user, &pw, buf, sizeof(buf), &res)
                              : getpwuid_r(geteuid(), &pw, buf, sizeof(buf), &res);
  if (rc || !res) {
    snprintf(err, errlen, "shell.user %s does not exist on this device", cfg->shell_user);
    return TT_EDENIED;
  }
  if (!root && pw.pw_uid != geteuid()) {
    snprintf(err, errlen, "shell.user %s is not the agent's user and the agent does not run as root",
             cfg->shell_user);
    return TT_EDENIED;
  }
  if (strlen(pw.pw_name) >= sizeof(r->name) || strlen(pw.pw_dir) >= sizeof(r->home) ||
      strlen(pw.pw_shell) >= sizeof(r->shell)) {
    snprintf(err, errlen, "shell.user's entry is too long");
    return TT_EDENIED;
  }
  r->uid = pw.pw_uid;
  r->gid = pw.pw_gid;
  r->switch_user = root;
  snprintf(r->name, sizeof(r->name), "%s", pw.pw_name);
  /* A home that does not exist (nobody's /nonexistent) would fail the start: use /. */
  struct stat st;
  bool home_ok = pw.pw_dir[0] && stat(pw.pw_dir, &st) == 0 && S_ISDIR(st.st_mode);
  snprintf(r->home, sizeof(r->home), "%s", home_ok ? pw.pw_dir : "/");
  snprintf(r->shell, sizeof(r->shell), "%s", pw.pw_shell[0] ? pw.pw_shell : "/bin/sh");
  /* Looked up here: the forked child may call nothing but async-signal-safe functions. */
  r->ngroups = SHELL_GROUPS_MAX;
  if (root && getgrouplist(r->name, r->gid, r->groups, &r->ngroups) < 0) r->ngroups = SHELL_GROUPS_MAX;
  if (!root) r->ngroups = 0;
  return 0;
}

/* The clean environment: nothing of the agent's leaks into the user's processes. */
typedef struct {
  char s[9][AGENT_PATH_MAX + 32];
  char *v[10];
} env_t;

static void env_build(env_t *e, const agent_cfg_t *cfg, const run_as_t *r, const char *term,
                      uint64_t session, uint64_t ticket) {
  size_t n = 0;
  snprintf(e->s[n++], sizeof(e->s[0]), "HOME=%s", r->home);
  snprintf(e->s[n++], sizeof(e->s[0]), "USER=%s", r->name);
  snprintf(e->s[n++], sizeof(e->s[0]), "LOGNAME=%s", r->name);
  snprintf(e->s[n++], sizeof(e->s[0]), "SHELL=%s", r->shell);
  snprintf(e->s[n++], sizeof(e->s[0]), "PATH=%s", cfg->shell_path);
  snprintf(e->s[n++], sizeof(e->s[0]), "LANG=C.UTF-8");
  snprintf(e->s[n++], sizeof(e->s[0]), "TETHER_SESSION=S-%llu", (unsigned long long)session);
  snprintf(e->s[n++], sizeof(e->s[0]), "TETHER_TICKET=T-%llu", (unsigned long long)ticket);
  if (term) snprintf(e->s[n++], sizeof(e->s[0]), "TERM=%s", term);
  for (size_t i = 0; i < n; i++) e->v[i] = e->s[i];
  e->v[n] = NULL;
}

/* ---- process bookkeeping ---------------------------------------------------------------- */

static void proc_free(proc_t *p) {
  struct agent_shells_s *sh = p->a->shells;
  for (proc_t **pp = &sh->list; *pp; pp = &(*pp)->next)
    if (*pp == p) {
      *pp = p->next;
      break;
    }
  agent_box_release(p->box);
  free(p);
  if (sh->stopping && !sh->list && !uv_is_closing((uv_handle_t *)&sh->sigchld))
    uv_close((uv_handle_t *)&sh->sigchld, NULL);
}

static void handle_closed_cb(uv_handle_t *h) {
  proc_t *p = h->data;
  if (--p->handles == 0 && p->released) proc_free(p);
}

static void close_handle(proc_t *p, uv_handle_t *h, bool *open) {
  if (!*open) return;
  *open = false;
  uv_close(h, handle_closed_cb);
}

/* Gone from the channel and reaped: close what is left, free once closed. */
static void maybe_release(proc_t *p) {
  if (p->ch || !p->exited || p->released) return;
  p->released = true;
  close_handle(p, (uv_handle_t *)&p->out, &p->out_open);
  close_handle(p, (uv_handle_t *)&p->err, &p->err_open);
  close_handle(p, (uv_handle_t *)&p->in, &p->in_open);
  close_handle(p, (uv_handle_t *)&p->timer, &p->timer_open);
  if (p->handles == 0) proc_free(p);
}

static void kill_cb(uv_timer_t *t) {
  proc_t *p = t->data;
  agent_box_kill(p->box); /* the whole box: the leader may be gone, what it started not */
}

/* The channel is gone (peer closed, session ended, link lost): hang the process up, and
 * kill its box if it does not go (its exit kills the box too). Output from here on is read
 * and dropped. */
static void detach(proc_t *p, int code, const char *why) {
  if (p->ch) {
    if (why) {
      (void)!tt_mux_close(p->m, p->ch, code, why);
      tt_link_flush(tt_link_from_mux(p->m));
    }
    p->ch->data = NULL;
    p->ch = NULL;
  }
  /* A hang-up first, as a closed terminal gives, so that a shell may save its history. */
  if (p->pid > 0 && !p->exited) {
    agent_box_signal(p->box, SIGHUP);
    uv_timer_start(&p->timer, kill_cb, SHELL_KILL_AFTER_MS, 0);
  }
  /* Closing the pty master hangs up the terminal's session as a closed ssh would. */
  if (p->kind == TETHER__CHANNEL_KIND__CHANNEL_SHELL) close_handle(p, (uv_handle_t *)&p->out, &p->out_open);
  else {
    close_handle(p, (uv_handle_t *)&p->in, &p->in_open); /* nothing more comes: EOF */
    start_reading(p); /* drain pipes so a writer is not stuck on a full one */
  }
  maybe_release(p);
}

static void exited(proc_t *p, int code, int sig) {
  p->exited = true;
  p->code = code;
  p->sig = sig;
  agent_box_exited(p->box); /* nothing it started outlives it: background jobs, nohup, setsid */
  uv_timer_stop(&p->timer);
  if (p->kind == TETHER__CHANNEL_KIND__CHANNEL_SHELL && p->out_open)
    uv_timer_start(&p->timer, drain_cb, SHELL_DRAIN_MS, 0);
  TT_INFO("shell", "process exited", "session=S-%llu pid=%d code=%d signal=%d", (unsigned long long)p->session,
          (int)p->pid, code, sig);
  agent_inv_soon(p->a); /* what it did may show in the inventory */
  maybe_finish(p);
  maybe_release(p);
}

static void sigchld_cb(uv_signal_t *s, int signum) {
  struct agent_shells_s *sh = s->data;
  (void)signum;
  /* Only our own pids: libuv reaps the processes it spawned itself (consent's dialog). */
  for (proc_t *p = sh->list, *next; p; p = next) {
    next = p->next;
    if (p->exited || p->pid <= 0) continue;
    int st;
    if (waitpid(p->pid, &st, WNOHANG) != p->pid) continue;
    exited(p, WIFEXITED(st) ? WEXITSTATUS(st) : 0, WIFSIGNALED(st) ? WTERMSIG(st) : 0);
  }
  agent_contain_sweep(sh->a);
}

/* ---- output under credit ---------------------------------------------------------------- */

static bool outputs_done(const proc_t *p) { return !p->out_open && !p->err_open; }

/* The exit status, EOF and close go out in order once everything before them has, and the
 * status needs credit like any data. */
static void maybe_finish(proc_t *p) {
  if (!p->exited || p->done || !p->ch || !outputs_done(p)) return;
  Tether__ChannelControl cc = TETHER__CHANNEL_CONTROL__INIT;
  Tether__ExitStatus ex = TETHER__EXIT_STATUS__INIT;
  ex.code = p->code;
  ex.signal = (uint32_t)p->sig;
  cc.body_case = TETHER__CHANNEL_CONTROL__BODY_EXIT;
  cc.exit = &ex;
  uint8_t buf[64];
  size_t n = tether__channel_control__pack(&cc, buf);
  if (tt_mux_sendable(p->ch) < n) return; /* on_credit calls again */
  p->done = true;
  if (tt_mux_send(p->m, p->ch, buf, n, TT_FF_CTRL) || tt_mux_send(p->m, p->ch, NULL, 0, TT_FF_EOF))
    TT_WARN("shell", "cannot send the exit status", "session=S-%llu", (unsigned long long)p->session);
  char why[48];
  if (p->sig) snprintf(why, sizeof(why), "killed by signal %d", p->sig);
  else snprintf(why, sizeof(why), "exited with status %d", p->code);
  detach(p, 0, why);
}

static uv_pipe_t *stream_of(proc_t *p, bool err) { return err ? &p->err : &p->out; }

static void stream_done(proc_t *p, bool err) {
  if (err) close_handle(p, (uv_handle_t *)&p->err, &p->err_open);
  else close_handle(p, (uv_handle_t *)&p->out, &p->out_open);
  maybe_finish(p);
}

static size_t room_for(proc_t *p, bool err) {
  if (!p->ch) return sizeof(p->rbuf); /* detached: drain and drop */
  size_t room = tt_mux_sendable(p->ch);
  if (err) room = room > CTRL_OVERHEAD ? room - CTRL_OVERHEAD : 0;
  size_t cap = err ? sizeof(p->rbuf) - CTRL_OVERHEAD : sizeof(p->rbuf);
  return room < cap ? room : cap;
}

static void alloc_out_cb(uv_handle_t *h, size_t hint, uv_buf_t *b) {
  (void)hint;
  proc_t *p = h->data;
  *b = uv_buf_init((char *)p->rbuf, (unsigned)room_for(p, false));
}

static void alloc_err_cb(uv_handle_t *h, size_t hint, uv_buf_t *b) {
  (void)hint;
  proc_t *p = h->data;
  *b = uv_buf_init((char *)p->rbuf, (unsigned)room_for(p, true));
}

static void stop_reading(proc_t *p, bool err) {
  bool *reading = err ? &p->err_reading : &p->out_reading;
  if (!*reading) return;
  *reading = false;
  uv_read_stop((uv_stream_t *)stream_of(p, err));
}

static void got_output(proc_t *p, bool err, ssize_t n) {
  if (n == UV_ENOBUFS) { /* no credit: wait for on_credit */
    stop_reading(p, err);
    return;
  }
  if (n < 0) { /* EOF; EIO on a pty whose slave side is all closed */
    stop_reading(p, err);
    stream_done(p, err);
    return;
  }
  if (n == 0 || !p->ch) return;
  int rc;
  if (err) {
    Tether__ChannelControl cc = TETHER__CHANNEL_CONTROL__INIT;
    cc.body_case = TETHER__CHANNEL_CONTROL__BODY_STDERR;
    cc.stderr.data = p->rbuf;
    cc.stderr.len = (size_t)n;
    uint8_t buf[TT_DATA_CHUNK_MAX];
    size_t len = tether__channel_control__pack(&cc, buf);
    rc = tt_mux_send(p->m, p->ch, buf, len, TT_FF_CTRL);
  } else {
    rc = tt_mux_send(p->m, p->ch, p->rbuf, (size_t)n, 0);
  }
  if (rc) {
    TT_WARN("shell", "cannot queue output", "session=S-%llu err=%s", (unsigned long long)p->session, tt_errname(rc));
    detach(p, TT_EIO, "the agent could not send output");
    return;
  }
  if (room_for(p, false) == 0) stop_reading(p, false);
  if (p->err_open && room_for(p, true) == 0) stop_reading(p, true);
  tt_link_flush(tt_link_from_mux(p->m));
}

static void read_out_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  (void)b;
  got_output(s->data, false, n);
}

static void read_err_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  (void)b;
  got_output(s->data, true, n);
}

static void start_reading(proc_t *p) {
  if (p->out_open && !p->out_reading && room_for(p, false) > 0 &&
      uv_read_start((uv_stream_t *)&p->out, alloc_out_cb, read_out_cb) == 0)
    p->out_reading = true;
  if (p->err_open && !p->err_reading && room_for(p, true) > 0 &&
      uv_read_start((uv_stream_t *)&p->err, alloc_err_cb, read_err_cb) == 0)
    p->err_reading = true;
}

/* A shell that exited while a background job holds the pty open: stop waiting. */
static void drain_cb(uv_timer_t *t) {
  proc_t *p = t->data;
  if (!p->out_open) return;
  if (!p->out_reading && p->ch) { /* waiting for credit, not for the job */
    uv_timer_start(&p->timer, drain_cb, SHELL_DRAIN_MS, 0);
    return;
  }
  stop_reading(p, false);
  stream_done(p, false);
}

/* ---- input ----------------------------------------------------------------------------- */

typedef struct {
  uv_write_t req;
  proc_t *p;
  tt_chan_t *ch;
  size_t n;
  uint8_t data[];
} in_t;

static void write_cb(uv_write_t *w, int status) {
  in_t *in = w->data;
  proc_t *p = in->p;
  /* Credit goes back for bytes the pty or the pipe took; a command that stopped reading
   * (EPIPE) drops the rest, as a closed pipe does, rather than stall the channel. */
  bool took = status == 0 || (status == UV_EPIPE && p->kind == TETHER__CHANNEL_KIND__CHANNEL_EXEC);
  if (took && p->ch && p->ch == in->ch) {
    tt_mux_consumed(p->m, p->ch, in->n);
    tt_link_flush(tt_link_from_mux(p->m));
  }
  free(in);
}

static void control(proc_t *p, const uint8_t *b, size_t n) {
  tt_msg_t msg;
  if (tt_msg_unpack_ctrl(&msg, b, n)) {
    TT_WARN("shell", "malformed channel control", "session=S-%llu", (unsigned long long)p->session);
    return;
  }
  const Tether__ChannelControl *cc = (const Tether__ChannelControl *)msg.m;
  if (cc->body_case == TETHER__CHANNEL_CONTROL__BODY_RESIZE && p->kind == TETHER__CHANNEL_KIND__CHANNEL_SHELL &&
      p->out_open) {
    uint32_t c = cc->resize->cols, r = cc->resize->rows;
    if (c >= 1 && c <= TT_TERM_DIM_MAX && r >= 1 && r <= TT_TERM_DIM_MAX) {
      struct winsize ws = {.ws_row = (unsigned short)r, .ws_col = (unsigned short)c};
      (void)!ioctl(p->master, TIOCSWINSZ, &ws); /* the kernel sends SIGWINCH */
    }
  } else if (cc->body_case == TETHER__CHANNEL_CONTROL__BODY_SIGNAL && !p->exited && p->pid > 0) {
    uint32_t s = cc->signal;
    if (s == SIGINT || s == SIGTERM || s == SIGHUP || s == SIGQUIT || s == SIGKILL) agent_box_signal(p->box, (int)s);
  }
  tt_msg_free(&msg);
}

static void in_shut_cb(uv_shutdown_t *req, int status) {
  (void)status;
  proc_t *p = req->data;
  close_handle(p, (uv_handle_t *)&p->in, &p->in_open);
  if (--p->handles == 0 && p->released) proc_free(p);
}

/* The opener's EOF on an exec's input: the command reads to the end of what was written,
 * then sees its end. */
static void input_eof(proc_t *p) {
  if (!p->in_open || p->in_closing) return;
  p->in_closing = true;
  p->in_shut.data = p;
  if (uv_shutdown(&p->in_shut, (uv_stream_t *)&p->in, in_shut_cb) == 0) p->handles++; /* held until its callback */
  else close_handle(p, (uv_handle_t *)&p->in, &p->in_open);
}

void agent_shell_data(tt_mux_t *m, tt_chan_t *ch, const uint8_t *b, size_t n, uint8_t flags) {
  proc_t *p = ch->data;
  uv_pipe_t *to = p->kind == TETHER__CHANNEL_KIND__CHANNEL_SHELL ? (p->out_open ? &p->out : NULL)
                  : p->in_open && !p->in_closing                  ? &p->in
                                                                  : NULL;
  if (flags & TT_FF_CTRL) {
    control(p, b, n);
    tt_mux_consumed(m, ch, n);
  } else if (n && to) {
    in_t *in = malloc(sizeof(*in) + n);
    if (!in) {
      detach(p, TT_ENOMEM, "the agent is out of memory");
      return;
    }
    memcpy(in->data, b, n);
    in->p = p;
    in->ch = ch;
    in->n = n;
    in->req.data = in;
    uv_buf_t buf = uv_buf_init((char *)in->data, (unsigned)n);
    if (uv_write(&in->req, (uv_stream_t *)to, &buf, 1, write_cb)) {
      free(in);
      tt_mux_consumed(m, ch, n);
    }
  } else {
    tt_mux_consumed(m, ch, n); /* exec without input: standard input is /dev/null */
  }
  if ((flags & TT_FF_EOF) && p->kind == TETHER__CHANNEL_KIND__CHANNEL_EXEC) input_eof(p);
  tt_link_flush(tt_link_from_mux(m));
}

void agent_shell_credit(tt_mux_t *m, tt_chan_t *ch) {
  proc_t *p = ch->data;
  start_reading(p);
  maybe_finish(p);
  tt_link_flush(tt_link_from_mux(m));
}

void agent_shell_chan_closed(tt_mux_t *m, tt_chan_t *ch, int code, const char *msg) {
  proc_t *p = ch->data;
  (void)m;
  TT_INFO("shell", "channel closed", "session=S-%llu id=%u code=%s msg=\"%s\"", (unsigned long long)p->session,
          ch->id, code ? tt_errname(code) : "ok", msg);
  detach(p, 0, NULL);
}

bool agent_shell_owns(const tt_chan_t *ch) {
  if (!ch->data) return false;
  Tether__ChannelKind k = *(const Tether__ChannelKind *)ch->data;
  return k == TETHER__CHANNEL_KIND__CHANNEL_SHELL || k == TETHER__CHANNEL_KIND__CHANNEL_EXEC;
}

void agent_shell_end_session(agent_t *a, uint64_t session, const char *why) {
  agent_contain_end_session(a, session); /* everything, at once; then each channel says why */
  if (!a->shells) return;
  for (proc_t *p = a->shells->list, *next; p; p = next) {
    next = p->next;
    if (p->session == session && p->ch) detach(p, TT_EDENIED, why);
  }
}

uint64_t agent_shell_session_of(agent_t *a, pid_t pid) {
  if (!a->shells || pid <= 0) return 0;
  for (const proc_t *p = a->shells->list; p; p = p->next)
    if (p->pid == pid && !p->exited) return p->session;
  return 0;
}

/* ---- starting -------------------------------------------------------------------------- */

/* Shell and exec children are made the same way: our own fork, so that nothing of the
 * agent's but what we hand over reaches the user's process. Between fork and exec the child
 * may call only async-signal-safe functions: everything it needs is looked up before. */

typedef enum { EXEC_STAGE_SETUP = 1, EXEC_STAGE_CONTAIN, EXEC_STAGE_USER, EXEC_STAGE_EXEC } exec_stage_t;

/* How far to close when close_range is missing: looked up in the parent (sysconf is not
 * async-signal-safe). */
static int fd_limit(void) {
  long n = sysconf(_SC_OPEN_MAX);
  return n > 0 && n <= INT_MAX ? (int)n : 65536;
}

/* Child: every descriptor from lo up is closed. */
static void close_from(int lo, int limit) {
#ifdef SYS_close_range
  if (syscall(SYS_close_range, (unsigned)lo, ~0u, 0u) == 0) return;
#endif
  for (int fd = lo; fd < limit; fd++) close(fd);
}

/* Child: default dispositions first (the agent ignores SIGPIPE, and a libuv handler would
 * write into the agent's signal pipe), then the mask the parent blocked for the fork. */
static void child_signals(void) {
  for (int s = 1; s < NSIG; s++) signal(s, SIG_DFL);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
}

/* Child: become shell.user with its groups (getgrouplist in run_as stands in for initgroups,
 * which is not async-signal-safe), and make sure root cannot be taken back. */
static int child_user(const run_as_t *r) {
  if (!r->switch_user) return 0;
  if (setgroups((size_t)r->ngroups, r->groups) || setgid(r->gid) || setuid(r->uid)) return errno ? errno : EPERM;
  if (r->uid != 0 && setuid(0) == 0) return EPERM;
  return 0;
}

static void child_home(const run_as_t *r) {
  if (chdir(r->home)) (void)!chdir("/");
}

/* Parent: fork with every signal blocked, so none is handled by the agent's handlers in
 * the child before child_signals (and a keeper finds them blocked, as it needs them). */
static pid_t fork_child(void) {
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  pid_t pid = fork();
  int e = errno;
  if (pid != 0) pthread_sigmask(SIG_SETMASK, &old, NULL);
  errno = e;
  return pid;
}

static __attribute__((noreturn)) void shell_fail(const char *what) {
  static const char pre[] = "tether-agent: cannot start the shell: ";
  (void)!write(2, pre, sizeof(pre) - 1);
  (void)!write(2, what, strlen(what));
  (void)!write(2, "\r\n", 2);
  _exit(126);
}

/* Child: a session of its own with the pty's slave as its controlling terminal and as 0, 1
 * and 2, as login_tty does (which is not async-signal-safe by contract). A slave that is
 * already 0, 1 or 2 keeps its number and loses close-on-exec there. */
static int child_tty(int slave) {
  if (setsid() < 0 || ioctl(slave, TIOCSCTTY, 0) < 0) return errno;
  for (int i = 0; i < 3; i++)
    if (slave == i ? fcntl(i, F_SETFD, 0) < 0 : dup2(slave, i) < 0) return errno;
  if (slave > 2) close(slave);
  return 0;
}

/* The shell's child: into the box first (in subreaper mode the process that forked stays
 * behind as the keeper), then the pty. */
static __attribute__((noreturn)) void shell_child(const agent_box_t *box, const run_as_t *r, int limit,
                                                   char *const argv[], char *const envp[], int slave) {
  int boxed = agent_box_enter(box, limit);
  if (child_tty(slave)) _exit(126); /* no terminal to say why on */
  child_signals();
  if (boxed) shell_fail("cannot keep it in the session's process group");
  close_from(3, limit);
  if (child_user(r)) shell_fail("cannot switch to shell.user");
  child_home(r);
  execve(r->shell, argv, envp);
  shell_fail("exec failed");
}

/* A command line for the user's shell, NUL-terminated (checked: no NUL inside). */
static char *command_of(const Tether__ChannelOpen *msg) {
  char *c = malloc(msg->command.len + 1);
  if (c) {
    memcpy(c, msg->command.data, msg->command.len);
    c[msg->command.len] = '\0';
  }
  return c;
}

/* A login shell on the pty ("-bash"), or with a command, `$SHELL -c LINE` on it as ssh -t
 * runs one. */
static int start_shell(proc_t *p, const run_as_t *r, const env_t *e, const Tether__ChannelOpen *msg, char *err,
                       size_t errlen) {
  uint32_t cols = msg->cols, rows = msg->rows;
  struct winsize ws = {.ws_row = (unsigned short)(rows ? rows : 24), .ws_col = (unsigned short)(cols ? cols : 80)};
  const char *base = strrchr(r->shell, '/');
  char argv0[AGENT_PATH_MAX + 1];
  snprintf(argv0, sizeof(argv0), "%s%s", msg->command.len ? "" : "-", base ? base + 1 : r->shell);
  char *line = msg->command.len ? command_of(msg) : NULL;
  char dash_c[] = "-c";
  char *argv[] = {argv0, line ? dash_c : NULL, line, NULL};
  if (msg->command.len && !line) {
    snprintf(err, errlen, "the agent is out of memory");
    return TT_ENOMEM;
  }
  int master = -1, slave = -1, limit = fd_limit();
  if (openpty(&master, &slave, NULL, NULL, &ws)) {
    int rc = -errno;
    snprintf(err, errlen, "cannot open a pty: %s", strerror(-rc));
    free(line);
    return rc;
  }
  (void)!fcntl(master, F_SETFD, FD_CLOEXEC);
  (void)!fcntl(slave, F_SETFD, FD_CLOEXEC);
  pid_t pid = fork_child();
  if (pid < 0) {
    int rc = -errno;
    snprintf(err, errlen, "cannot start a shell: %s", strerror(errno));
    close(master);
    close(slave);
    free(line);
    return rc;
  }
  if (pid == 0) shell_child(p->box, r, limit, argv, e->v, slave);
  free(line);
  close(slave);
  agent_box_started(p->box, pid);
  p->pid = pid;
  p->master = master;
  uv_pipe_init(p->a->loop, &p->out, 0);
  p->out.data = p;
  p->handles++;
  p->out_open = true;
  int rc = uv_pipe_open(&p->out, master);
  if (rc) {
    close(master);
    snprintf(err, errlen, "cannot use the pty: %s", uv_strerror(rc));
    return rc;
  }
  return 0;
}

/* Child: tell the parent what failed, through the close-on-exec status pipe, and go. */
static __attribute__((noreturn)) void exec_fail(int status, exec_stage_t stage, int e) {
  int msg[2] = {(int)stage, e ? e : EIO};
  (void)!write(status, msg, sizeof(msg));
  _exit(127);
}

/* The exec's child: a session of its own (signals go to its process group), /dev/null in,
 * the two pipes out, the status pipe on 3 until exec closes it, and nothing else. */
static __attribute__((noreturn)) void exec_child(const agent_box_t *box, const run_as_t *r, int limit,
                                                  char *const argv[], char *const envp[], int fds[4]) {
  int status = fds[3];
  int e = agent_box_enter(box, limit); /* first: in subreaper mode the keeper stays behind here */
  if (e) exec_fail(status, EXEC_STAGE_CONTAIN, e);
  child_signals();
  if (setsid() < 0) exec_fail(status, EXEC_STAGE_SETUP, errno);
  /* Any of these on 0 to 3 (an agent started with 0, 1 or 2 closed) would be overwritten
   * before it is placed: move them up first. Still close-on-exec. */
  for (int i = 0; i < 4; i++) {
    if (fds[i] >= 4) continue;
    int fd = fcntl(fds[i], F_DUPFD_CLOEXEC, 4);
    if (fd < 0) exec_fail(status, EXEC_STAGE_SETUP, errno);
    fds[i] = fd;
    if (i == 3) status = fd;
  }
  for (int i = 0; i < 3; i++) /* dup2 clears close-on-exec on 0, 1 and 2 */
    if (dup2(fds[i], i) < 0) exec_fail(status, EXEC_STAGE_SETUP, errno);
  if (dup3(status, 3, O_CLOEXEC) < 0) exec_fail(status, EXEC_STAGE_SETUP, errno);
  close_from(4, limit);
  e = child_user(r);
  if (e) exec_fail(3, EXEC_STAGE_USER, e);
  child_home(r);
  environ = (char **)envp; /* execvp searches the user's PATH, as it did under uv_spawn */
  execvp(argv[0], argv);
  exec_fail(3, EXEC_STAGE_EXEC, errno);
}

/* Parent: wait for the child to exec or fail. Brief, as uv_spawn's own wait was: the child
 * does nothing slow before exec. 0 once it ran, or the stage and error. */
static int exec_wait(int status, exec_stage_t *stage) {
  int msg[2];
  ssize_t n;
  do n = read(status, msg, sizeof(msg));
  while (n < 0 && errno == EINTR);
  if (n == 0) return 0;
  *stage = EXEC_STAGE_SETUP;
  if (n < 0) return -errno;
  if (n != (ssize_t)sizeof(msg)) return UV_EIO;
  *stage = (exec_stage_t)msg[0];
  return -msg[1];
}

static void close_fd(int fd) {
  if (fd >= 0) close(fd);
}

/* Parent: our end of a pipe, non-blocking, into its handle. */
static int pipe_end(uv_pipe_t *h, int *fd) {
  int flags = fcntl(*fd, F_GETFL);
  if (flags < 0 || fcntl(*fd, F_SETFL, flags | O_NONBLOCK) < 0) return -errno;
  int rc = uv_pipe_open(h, *fd);
  if (rc == 0) *fd = -1; /* the handle owns it now */
  return rc;
}

/* *not_run: the shell's convention when the command itself could not be run (127: not
 * found, 126: found but not runnable), 0 for any other failure. */
static int start_exec(proc_t *p, const run_as_t *r, const env_t *e, const Tether__ChannelOpen *msg, char *err,
                      size_t errlen, int *not_run) {
  err[0] = '\0';
  *not_run = 0;
  /* argv as given, or the user's shell with the command line: sh -c LINE. */
  size_t argc = msg->command.len ? 3 : msg->n_argv;
  char **argv = calloc(argc + 1, sizeof(char *));
  if (!argv) return TT_ENOMEM;
  int rc = 0;
  if (msg->command.len) {
    argv[0] = strdup(r->shell);
    argv[1] = strdup("-c");
    argv[2] = command_of(msg);
    if (!argv[0] || !argv[1] || !argv[2]) rc = TT_ENOMEM;
  }
  for (size_t i = 0; i < msg->n_argv && !msg->command.len && !rc; i++) {
    argv[i] = malloc(msg->argv[i].len + 1);
    if (!argv[i]) rc = TT_ENOMEM;
    else {
      memcpy(argv[i], msg->argv[i].data, msg->argv[i].len);
      argv[i][msg->argv[i].len] = '\0';
    }
  }
  uv_pipe_init(p->a->loop, &p->out, 0);
  uv_pipe_init(p->a->loop, &p->err, 0);
  p->out.data = p->err.data = p;
  p->handles += 2;
  p->out_open = p->err_open = true;
  if (msg->input) {
    uv_pipe_init(p->a->loop, &p->in, 0);
    p->in.data = p;
    p->handles++;
    p->in_open = true;
  }
  /* Ours: the read ends of stdout and stderr, and of the status pipe (and the write end of
   * stdin when the opener sends input). The child's: /dev/null or stdin's read end, the
   * write ends, the status write end. All close-on-exec until the child places its own. */
  int out[2] = {-1, -1}, errp[2] = {-1, -1}, status[2] = {-1, -1}, inp[2] = {-1, -1}, null = -1,
      limit = fd_limit();
  exec_stage_t stage = EXEC_STAGE_SETUP;
  pid_t pid;
  if (rc) goto out;
  if (msg->input ? pipe2(inp, O_CLOEXEC) != 0 : (null = open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0) {
    rc = -errno;
    goto out;
  }
  if (msg->input) null = inp[0], inp[0] = -1; /* the child's stdin, closed here like /dev/null */
  if (pipe2(out, O_CLOEXEC) || pipe2(errp, O_CLOEXEC) || pipe2(status, O_CLOEXEC)) {
    rc = -errno;
    goto out;
  }
  pid = fork_child();
  if (pid < 0) {
    rc = -errno;
    goto out;
  }
  if (pid == 0) {
    int fds[4] = {null, out[1], errp[1], status[1]};
    exec_child(p->box, r, limit, argv, e->v, fds);
  }
  close_fd(null);
  close_fd(out[1]);
  close_fd(errp[1]);
  close_fd(status[1]);
  null = out[1] = errp[1] = status[1] = -1;
  rc = exec_wait(status[0], &stage);
  if (rc) { /* it has _exit-ed already, or is about to */
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) continue;
    goto out;
  }
  agent_box_started(p->box, pid);
  p->pid = pid; /* from here SIGCHLD reaps it, and detach kills it if the rest fails */
  if ((rc = pipe_end(&p->out, &out[0])) || (rc = pipe_end(&p->err, &errp[0])) ||
      (msg->input && (rc = pipe_end(&p->in, &inp[1]))))
    snprintf(err, errlen, "cannot reach the command's input or output: %s", uv_strerror(rc));
out:
  if (rc && !err[0]) {
    if (rc == TT_ENOMEM) snprintf(err, errlen, "the agent is out of memory");
    else if (stage == EXEC_STAGE_USER) snprintf(err, errlen, "cannot switch to shell.user: %s", uv_strerror(rc));
    else if (stage == EXEC_STAGE_CONTAIN)
      snprintf(err, errlen, "cannot keep %s in the session's process group: %s", argv[0], uv_strerror(rc));
    else snprintf(err, errlen, "cannot run %s: %s", argv[0], uv_strerror(rc));
    if (stage == EXEC_STAGE_EXEC) *not_run = rc == UV_ENOENT ? 127 : 126;
  }
  int left[] = {null, out[0], out[1], errp[0], errp[1], status[0], status[1], inp[0], inp[1]};
  for (size_t i = 0; i < sizeof(left) / sizeof(left[0]); i++) close_fd(left[i]);
  for (size_t i = 0; i < argc; i++) free(argv[i]);
  free(argv);
  return rc;
}

/* What the open asks for, checked before anything is started. */
static int check_open(agent_t *a, const Tether__ChannelOpen *msg, char *term, size_t termcap, char *err,
                      size_t errlen) {
  const agent_session_t *s = agent_session_find(a, msg->session);
  if (!s || !(s->access & TETHER__ACCESS__ACCESS_SHELL)) {
    snprintf(err, errlen, "S-%llu is not a live session on this device", (unsigned long long)msg->session);
    return TT_EDENIED;
  }
  if (msg->cols > TT_TERM_DIM_MAX || msg->rows > TT_TERM_DIM_MAX) {
    snprintf(err, errlen, "terminal size out of range");
    return TT_EINVAL;
  }
  snprintf(term, termcap, "xterm-256color");
  if (msg->term.len && (!tt_text_valid(msg->term, TT_TERM_NAME_MAX) || tt_text_copy(term, termcap, msg->term))) {
    snprintf(err, errlen, "TERM is not a valid terminal name");
    return TT_EINVAL;
  }
  if (msg->command.len > TT_EXEC_COMMAND_MAX || (msg->command.len && memchr(msg->command.data, '\0', msg->command.len)) ||
      (msg->command.len && msg->n_argv) ||
      (msg->kind == TETHER__CHANNEL_KIND__CHANNEL_SHELL && msg->n_argv)) {
    snprintf(err, errlen, "a command line is argv or one line of at most %u bytes for the shell, without NUL",
             (unsigned)TT_EXEC_COMMAND_MAX);
    return TT_EINVAL;
  }
  if (msg->kind == TETHER__CHANNEL_KIND__CHANNEL_EXEC && !msg->command.len) {
    if (msg->n_argv == 0 || msg->n_argv > TT_EXEC_ARGV_MAX || msg->argv[0].len == 0) {
      snprintf(err, errlen, "exec needs a command and at most %u arguments", (unsigned)TT_EXEC_ARGV_MAX);
      return TT_EINVAL;
    }
    for (size_t i = 0; i < msg->n_argv; i++)
      if (msg->argv[i].len > TT_EXEC_ARG_MAX || memchr(msg->argv[i].data, '\0', msg->argv[i].len)) {
        snprintf(err, errlen, "exec argument %zu is longer than %u bytes or holds a NUL", i, (unsigned)TT_EXEC_ARG_MAX);
        return TT_EINVAL;
      }
  }
  return 0;
}

static void reject(tt_mux_t *m, tt_chan_t *ch, int code, const char *why) {
  (void)!tt_mux_reject(m, ch, code, why);
  tt_link_flush(tt_link_from_mux(m));
}

/* A command that could not be run ends as a shell would end it: the reason on standard
 * error and status 127 or 126, so that scripts around `tether exec` see what they expect.
 * Falls back to a refusal if the channel cannot carry it. */
static void exec_not_run(tt_mux_t *m, tt_chan_t *ch, int status, const char *why) {
  char line[TT_TEXT_MAX + 16];
  int len = snprintf(line, sizeof(line), "tether-agent: %s\n", why);
  Tether__ChannelControl err = TETHER__CHANNEL_CONTROL__INIT, ex = TETHER__CHANNEL_CONTROL__INIT;
  err.body_case = TETHER__CHANNEL_CONTROL__BODY_STDERR;
  err.stderr.data = (uint8_t *)line;
  err.stderr.len = len > 0 && (size_t)len < sizeof(line) ? (size_t)len : strlen(line);
  Tether__ExitStatus es = TETHER__EXIT_STATUS__INIT;
  es.code = status;
  ex.body_case = TETHER__CHANNEL_CONTROL__BODY_EXIT;
  ex.exit = &es;
  uint8_t b1[TT_TEXT_MAX + 64], b2[32];
  size_t n1 = tether__channel_control__pack(&err, b1), n2 = tether__channel_control__pack(&ex, b2);
  if (tt_mux_accept(m, ch, TT_WINDOW_DEFAULT, true, 0)) {
    reject(m, ch, TT_EIO, why);
    return;
  }
  /* The console's window is far larger than these few bytes. */
  if (tt_mux_sendable(ch) < n1 + n2 || tt_mux_send(m, ch, b1, n1, TT_FF_CTRL) ||
      tt_mux_send(m, ch, b2, n2, TT_FF_CTRL) || tt_mux_send(m, ch, NULL, 0, TT_FF_EOF))
    TT_WARN("shell", "cannot report the failed command", "why=\"%s\"", why);
  (void)!tt_mux_close(m, ch, 0, why);
  tt_link_flush(tt_link_from_mux(m));
}

/* The employee's prompt shows what a technician does: a shell opened, a command run. */
static void notice_started(agent_t *a, const Tether__ChannelOpen *msg, bool shell) {
  const agent_session_t *s = agent_session_find(a, msg->session);
  char what[200] = "opened a shell";
  if (!shell) {
    memcpy(what, "ran: ", 5);
    tt_argv_line(msg->argv, msg->n_argv, what + 5, sizeof(what) - 5);
  }
  agent_consent_notice(a, "ACTIVITY S-%llu\t%s\t%s", (unsigned long long)msg->session,
                       s ? s->technician : "?", what);
}

void agent_shell_open(tt_mux_t *m, tt_chan_t *ch, const Tether__ChannelOpen *msg) {
  agent_t *a = tt_link_from_mux(m)->data;
  char err[TT_TEXT_MAX] = "", term[TT_TERM_NAME_MAX + 1];
  run_as_t r;
  agent_box_t *box = NULL;
  int rc = check_open(a, msg, term, sizeof(term), err, sizeof(err));
  if (!rc) rc = run_as(&a->cfg, &r, err, sizeof(err));
  if (!rc) rc = agent_box_new(a, msg->session, &box, err, sizeof(err));
  if (rc) {
    TT_WARN("shell", "refused", "session=S-%llu why=\"%s\"", (unsigned long long)msg->session, err);
    agent_box_release(box);
    reject(m, ch, rc, err);
    return;
  }
  bool shell = msg->kind == TETHER__CHANNEL_KIND__CHANNEL_SHELL;
  env_t e;
  env_build(&e, &a->cfg, &r, shell ? term : NULL, msg->session, msg->ticket);
  proc_t *p = calloc(1, sizeof(*p));
  if (!p) {
    agent_box_release(box);
    reject(m, ch, TT_ENOMEM, "the agent is out of memory");
    return;
  }
  p->box = box;
  p->kind = msg->kind;
  p->a = a;
  p->m = m;
  p->session = msg->session;
  p->next = a->shells->list;
  a->shells->list = p;
  uv_timer_init(a->loop, &p->timer);
  p->timer.data = p;
  p->handles++;
  p->timer_open = true;
  int not_run = 0;
  rc = shell ? start_shell(p, &r, &e, msg, err, sizeof(err))
             : start_exec(p, &r, &e, msg, err, sizeof(err), &not_run);
  if (!rc) rc = tt_mux_accept(m, ch, TT_WINDOW_DEFAULT, true, 0);
  if (rc) {
    TT_WARN("shell", "cannot start", "session=S-%llu why=\"%s\"", (unsigned long long)msg->session, err);
    if (not_run) exec_not_run(m, ch, not_run, err);
    else reject(m, ch, rc, err[0] ? err : "cannot start");
    if (p->pid <= 0) p->exited = true; /* nothing to wait for */
    detach(p, 0, NULL);
    return;
  }
  p->ch = ch;
  ch->data = p;
  notice_started(a, msg, shell);
  TT_INFO("shell", "started", "session=S-%llu ticket=T-%llu kind=%s user=%s pid=%d", (unsigned long long)p->session,
          (unsigned long long)msg->ticket, shell ? "shell" : "exec", r.name, (int)p->pid);
  start_reading(p);
  tt_link_flush(tt_link_from_mux(m));
}

void agent_shell_init(agent_t *a) {
  a->shells = calloc(1, sizeof(*a->shells));
  if (!a->shells) abort(); /* at start-up */
  a->shells->a = a;
  uv_signal_init(a->loop, &a->shells->sigchld);
  a->shells->sigchld.data = a->shells;
  uv_signal_start(&a->shells->sigchld, sigchld_cb, SIGCHLD);
}

/* The agent stops: every process is hung up; the SIGCHLD watcher goes with the last one. */
void agent_shell_close(agent_t *a) {
  struct agent_shells_s *sh = a->shells;
  if (!sh || sh->stopping) return;
  sh->stopping = true;
  for (proc_t *p = sh->list, *next; p; p = next) {
    next = p->next;
    detach(p, TT_ECLOSED, "the agent is shutting down");
  }
  if (!sh->list) uv_close((uv_handle_t *)&sh->sigchld, NULL);
}
