/* The signer process (signer.h) seen from the broker: started at the broker's start before
 * anything else is loaded, spoken to over a uv_pipe_t one request at a time (a signing
 * takes well under a millisecond), each answer due within TT_SIGNER_TIMEOUT_MS. A signer
 * that dies, wedges or talks nonsense is killed and started again, at most
 * TT_SIGNER_RESTARTS_MAX times per TT_SIGNER_RESTART_WINDOW_MS; meanwhile signings fail
 * with a clear error and the broker carries on. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include "broker.h"
#include "signer.h"
#include "tt/log.h"

typedef struct sign_job_s {
  struct sign_job_s *next;
  uint32_t id;
  broker_sign_cb cb;
  void *data;
  size_t len;
  uint8_t msg[]; /* the encoded request */
} sign_job_t;

typedef struct {
  uv_write_t req;
  uint8_t data[]; /* a copy: the job may be failed and freed before the write completes */
} sign_write_t;

typedef struct signer_proc_s {
  broker_signer_t *s;
  uv_process_t proc;
  uv_pipe_t pipe;
  int handles;          /* open handles; freed when both closed */
  bool exited, ready;
  size_t rlen;
  uint8_t rbuf[BROKER_SIGNER_HDR + TT_SIGNER_REPLY_MAX];
} signer_proc_t;

struct broker_signer_s {
  broker_t *b;
  signer_proc_t *cur;   /* the live signer; NULL while there is none */
  uv_timer_t deadline;  /* readiness, or the answer in flight, is due */
  uv_timer_t restart;   /* a start put off: it kept dying */
  sign_job_t *head, *tail; /* head is in flight when inflight */
  size_t queued;
  bool inflight, stopping;
  uint32_t next_id;
  uint64_t starts[TT_SIGNER_RESTARTS_MAX]; /* uv_now of the latest starts, a ring */
  unsigned nstarts;
};

static void signer_restart(broker_signer_t *s);
static void deadline_cb(uv_timer_t *t);

static const char *level_name(int lvl) {
  static const char *const names[] = {"debug", "info", "warn", "error", "off"};
  return lvl >= 0 && lvl <= 4 ? names[lvl] : "info";
}

/* ---- jobs ------------------------------------------------------------------------------ */

static sign_job_t *job_pop(broker_signer_t *s) {
  sign_job_t *j = s->head;
  if (!j) return NULL;
  s->head = j->next;
  if (!s->head) s->tail = NULL;
  s->queued--;
  return j;
}

static void job_finish(sign_job_t *j, int status, const uint8_t *der, size_t len, const char *msg) {
  j->cb(j->data, status, der, len, msg);
  free(j);
}

/* The one in flight, if any, ends with status. */
static void fail_inflight(broker_signer_t *s, int status, const char *msg) {
  if (!s->inflight) return;
  s->inflight = false;
  job_finish(job_pop(s), status, NULL, 0, msg);
}

static void fail_all(broker_signer_t *s, int status, const char *msg) {
  s->inflight = false;
  sign_job_t *j;
  while ((j = job_pop(s)) != NULL) job_finish(j, status, NULL, 0, msg);
}

/* ---- the process --------------------------------------------------------------------- */

static void proc_close_cb(uv_handle_t *h) {
  signer_proc_t *p = h->data;
  if (--p->handles == 0) free(p);
}

/* p is no longer the signer: it is killed (if not dead yet), its socket closed, what was
 * in flight fails. The exit callback starts the next one. */
static void proc_lost(signer_proc_t *p, const char *why) {
  broker_signer_t *s = p->s;
  if (s->cur != p) return;
  s->cur = NULL;
  uv_timer_stop(&s->deadline);
  if (why) TT_ERROR("signer", "signer lost", "pid=%d reason=\"%s\"", p->proc.pid, why);
  fail_inflight(s, TT_EIO, "the certificate signer stopped; try again");
  if (!uv_is_closing((uv_handle_t *)&p->pipe)) uv_close((uv_handle_t *)&p->pipe, proc_close_cb);
  if (!p->exited) (void)uv_process_kill(&p->proc, SIGKILL);
}

static void proc_exit_cb(uv_process_t *h, int64_t status, int sig) {
  signer_proc_t *p = h->data;
  broker_signer_t *s = p->s;
  p->exited = true;
  if (sig || status || !s->stopping)
    TT_WARN("signer", "signer exited", "pid=%d status=%lld signal=%d", h->pid, (long long)status, sig);
  proc_lost(p, NULL);
  uv_close((uv_handle_t *)h, proc_close_cb);
  if (!s->stopping) signer_restart(s);
}

static void write_cb(uv_write_t *req, int status) {
  signer_proc_t *p = req->data;
  free(req);
  /* A failed write is a lost signer; cancelled ones belong to a pipe already closing. */
  if (status < 0 && status != UV_ECANCELED) proc_lost(p, "cannot write to the signer");
}

/* The next job goes out once the signer is ready and nothing is in flight. */
static void pump(broker_signer_t *s) {
  signer_proc_t *p = s->cur;
  if (!p || !p->ready || s->inflight || !s->head) return;
  sign_job_t *j = s->head;
  sign_write_t *w = malloc(sizeof(*w) + j->len);
  if (!w) {
    s->inflight = true;
    fail_inflight(s, TT_ENOMEM, "out of memory");
    return;
  }
  memcpy(w->data, j->msg, j->len);
  w->req.data = p;
  uv_buf_t buf = uv_buf_init((char *)w->data, (unsigned)j->len);
  if (uv_write(&w->req, (uv_stream_t *)&p->pipe, &buf, 1, write_cb) != 0) {
    free(w);
    proc_lost(p, "cannot write to the signer");
    return;
  }
  s->inflight = true;
  uv_timer_start(&s->deadline, deadline_cb, TT_SIGNER_TIMEOUT_MS, 0);
}

/* One whole reply from p. False: p broke the protocol and is lost. */
static bool on_reply(signer_proc_t *p, const uint8_t *body, size_t len) {
  broker_signer_t *s = p->s;
  broker_sign_reply_t r;
  char msg[TT_TEXT_MAX * 4 + 1];
  if (broker_sign_reply_decode(body, len, &r)) return false;
  if (r.status) tt_log_quote(msg, sizeof(msg), r.data, r.len);
  if (!p->ready) {
    if (r.id != 0) return false;
    if (r.status) {
      TT_ERROR("signer", "signer cannot start", "pid=%d err=\"%s\"", p->proc.pid, msg);
      return false;
    }
    p->ready = true;
    uv_timer_stop(&s->deadline);
    TT_INFO("signer", "signer started", "pid=%d", p->proc.pid);
    pump(s);
    return true;
  }
  if (!s->inflight || r.id != s->head->id) return false;
  uv_timer_stop(&s->deadline);
  s->inflight = false;
  job_finish(job_pop(s), r.status, r.status ? NULL : r.data, r.status ? 0 : r.len, r.status ? msg : NULL);
  pump(s);
  return true;
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  signer_proc_t *p = h->data;
  (void)suggested;
  *buf = uv_buf_init((char *)p->rbuf + p->rlen, (unsigned)(sizeof(p->rbuf) - p->rlen));
}

static void read_cb(uv_stream_t *st, ssize_t n, const uv_buf_t *buf) {
  signer_proc_t *p = st->data;
  (void)buf;
  if (n == 0) return;
  if (n < 0) {
    proc_lost(p, n == UV_EOF ? "the signer closed its socket" : uv_strerror((int)n));
    return;
  }
  p->rlen += (size_t)n;
  size_t at = 0;
  while (p->s->cur == p && p->rlen - at >= BROKER_SIGNER_HDR) {
    const uint8_t *h = p->rbuf + at;
    size_t len = (size_t)h[0] << 24 | (size_t)h[1] << 16 | (size_t)h[2] << 8 | h[3];
    if (len == 0 || len > TT_SIGNER_REPLY_MAX) {
      proc_lost(p, "a reply over its size limit");
      return;
    }
    if (p->rlen - at < BROKER_SIGNER_HDR + len) break;
    if (!on_reply(p, h + BROKER_SIGNER_HDR, len)) {
      proc_lost(p, "a reply that is not one of ours");
      return;
    }
    at += BROKER_SIGNER_HDR + len;
  }
  if (p->s->cur != p) return;
  memmove(p->rbuf, p->rbuf + at, p->rlen - at);
  p->rlen -= at;
}

static void deadline_cb(uv_timer_t *t) {
  broker_signer_t *s = t->data;
  if (s->cur) proc_lost(s->cur, s->cur->ready ? "no answer in time" : "not ready in time");
}

/* A blocking read of the signer's first message, at the broker's start only (the loop
 * does not run yet): "ready", or why it cannot start. */
static int read_ready(int fd, char *err, size_t errlen) {
  uint8_t buf[BROKER_SIGNER_HDR + TT_SIGNER_REPLY_MAX];
  size_t got = 0, want = BROKER_SIGNER_HDR;
  uint64_t deadline = uv_hrtime() / 1000000u + TT_SIGNER_TIMEOUT_MS;
  while (got < want) {
    uint64_t now = uv_hrtime() / 1000000u;
    struct pollfd pf = {.fd = fd, .events = POLLIN};
    int pr = now >= deadline ? 0 : poll(&pf, 1, (int)(deadline - now));
    if (pr < 0 && errno == EINTR) continue;
    if (pr <= 0) {
      snprintf(err, errlen, "the signer did not say it was ready within %u ms", TT_SIGNER_TIMEOUT_MS);
      return TT_ETIMEOUT;
    }
    ssize_t n = read(fd, buf + got, want - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      snprintf(err, errlen, "the signer exited before it was ready (see its log line above)");
      return TT_EIO;
    }
    got += (size_t)n;
    if (got == BROKER_SIGNER_HDR) {
      size_t len = (size_t)buf[0] << 24 | (size_t)buf[1] << 16 | (size_t)buf[2] << 8 | buf[3];
      if (len == 0 || len > TT_SIGNER_REPLY_MAX) break;
      want += len;
    }
  }
  broker_sign_reply_t r;
  if (got != want || broker_sign_reply_decode(buf + BROKER_SIGNER_HDR, got - BROKER_SIGNER_HDR, &r) || r.id != 0) {
    snprintf(err, errlen, "the signer's first message is not one of ours");
    return TT_EPROTO;
  }
  if (r.status) {
    char msg[TT_TEXT_MAX * 4 + 1];
    tt_log_quote(msg, sizeof(msg), r.data, r.len);
    snprintf(err, errlen, "%s", msg);
    return r.status;
  }
  return 0;
}

/* Fork and exec ourselves in signer mode with one end of a socketpair as its fd 3. With
 * wait_ready (at start) the first message is read here; otherwise on the loop. */
static int spawn(broker_signer_t *s, bool wait_ready, char *err, size_t errlen) {
  broker_t *b = s->b;
  int sv[2] = {-1, -1};
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
    snprintf(err, errlen, "socketpair: %s", strerror(errno));
    return -errno;
  }
  signer_proc_t *p = calloc(1, sizeof(*p));
  if (!p) {
    close(sv[0]);
    close(sv[1]);
    snprintf(err, errlen, "out of memory");
    return TT_ENOMEM;
  }
  p->s = s;
  char fd[16], life[32];
  snprintf(fd, sizeof(fd), "%d", BROKER_SIGNER_FD);
  snprintf(life, sizeof(life), "%lld", (long long)(b->cfg.device_cert_lifetime_ms / 1000));
  char *args[] = {"tether-broker", "--signer", fd, "--ca", b->cfg.ca, "--ca-key", b->cfg.ca_key,
                  "--lifetime", life, "--log-level", (char *)level_name(b->cfg.log_level), NULL};
  uv_stdio_container_t stdio[BROKER_SIGNER_FD + 1] = {
      {.flags = UV_IGNORE},
      {.flags = UV_IGNORE},
      {.flags = UV_INHERIT_FD, .data.fd = STDERR_FILENO}, /* its log lines join ours */
      {.flags = UV_INHERIT_FD, .data.fd = sv[1]},
  };
  uv_process_options_t o = {
      .exit_cb = proc_exit_cb,
      /* The running binary itself, even if an upgrade replaced the file since. */
      .file = "/proc/self/exe",
      .args = args,
      .stdio_count = BROKER_SIGNER_FD + 1,
      .stdio = stdio,
  };
  p->proc.data = p;
  int rc = uv_spawn(b->loop, &p->proc, &o);
  close(sv[1]);
  if (rc) {
    close(sv[0]);
    snprintf(err, errlen, "cannot start the signer: %s", uv_strerror(rc));
    /* A handle that failed to spawn still has to be closed. */
    p->handles = 1;
    p->exited = true;
    uv_close((uv_handle_t *)&p->proc, proc_close_cb);
    return rc;
  }
  p->handles = 2;
  if (wait_ready && (rc = read_ready(sv[0], err, errlen)) != 0) {
    close(sv[0]);
    (void)uv_process_kill(&p->proc, SIGKILL);
    p->handles = 1; /* the pipe was never opened; the exit callback closes the process */
    s->cur = NULL;
    return rc;
  }
  uv_pipe_init(b->loop, &p->pipe, 0);
  p->pipe.data = p;
  if ((rc = uv_pipe_open(&p->pipe, sv[0])) != 0 ||
      (rc = uv_read_start((uv_stream_t *)&p->pipe, alloc_cb, read_cb)) != 0) {
    snprintf(err, errlen, "cannot read from the signer: %s", uv_strerror(rc));
    s->cur = p;
    proc_lost(p, err);
    return rc;
  }
  p->ready = wait_ready;
  s->cur = p;
  s->starts[s->nstarts++ % TT_SIGNER_RESTARTS_MAX] = uv_now(b->loop);
  if (!p->ready) uv_timer_start(&s->deadline, deadline_cb, TT_SIGNER_TIMEOUT_MS, 0);
  return 0;
}

static void restart_cb(uv_timer_t *t) { signer_restart(t->data); }

/* Start the next signer now, or, if the last TT_SIGNER_RESTARTS_MAX starts all fell in the
 * window, when the oldest of them leaves it; until then signings are refused. */
static void signer_restart(broker_signer_t *s) {
  if (s->stopping || s->cur || uv_is_active((uv_handle_t *)&s->restart)) return;
  uint64_t now = uv_now(s->b->loop);
  if (s->nstarts >= TT_SIGNER_RESTARTS_MAX) {
    uint64_t oldest = s->starts[s->nstarts % TT_SIGNER_RESTARTS_MAX];
    if (now - oldest < TT_SIGNER_RESTART_WINDOW_MS) {
      uint64_t wait = TT_SIGNER_RESTART_WINDOW_MS - (now - oldest);
      TT_ERROR("signer", "the signer keeps failing: enrollment and renewal wait", "next_start_in_ms=%llu",
               (unsigned long long)wait);
      fail_all(s, TT_EBUSY, "the broker cannot sign certificates at the moment; try again later");
      uv_timer_start(&s->restart, restart_cb, wait, 0);
      return;
    }
  }
  char err[256];
  if (spawn(s, false, err, sizeof(err)) != 0) {
    TT_ERROR("signer", "cannot start the signer", "err=\"%s\"", err);
    fail_all(s, TT_EBUSY, "the broker cannot sign certificates at the moment; try again later");
    s->starts[s->nstarts++ % TT_SIGNER_RESTARTS_MAX] = now; /* a failed start counts too */
    uv_timer_start(&s->restart, restart_cb, TT_SIGNER_RESTART_WINDOW_MS / TT_SIGNER_RESTARTS_MAX, 0);
  }
}

/* ---- the interface --------------------------------------------------------------------- */

int broker_signer_start(broker_t *b, char *err, size_t errlen) {
  broker_signer_t *s = calloc(1, sizeof(*s));
  if (!s) {
    snprintf(err, errlen, "out of memory");
    return TT_ENOMEM;
  }
  s->b = b;
  s->next_id = 1;
  uv_timer_init(b->loop, &s->deadline);
  uv_timer_init(b->loop, &s->restart);
  s->deadline.data = s->restart.data = s;
  b->signer = s;
  int rc = spawn(s, true, err, errlen);
  if (!rc) TT_INFO("signer", "signer started", "pid=%d", s->cur->proc.pid);
  return rc;
}

bool broker_signer_ready(broker_t *b) {
  broker_signer_t *s = b->signer;
  return s && !s->stopping && s->cur && s->queued < TT_SIGNER_QUEUE_MAX;
}

int broker_signer_sign(broker_t *b, const char *device_id, const uint8_t *csr, size_t len, broker_sign_cb cb,
                       void *data) {
  broker_signer_t *s = b->signer;
  if (!s || s->stopping) return TT_ECLOSED;
  if (!s->cur || s->queued >= TT_SIGNER_QUEUE_MAX) return TT_EBUSY;
  sign_job_t *j = malloc(sizeof(*j) + BROKER_SIGNER_HDR + TT_SIGNER_REQUEST_MAX);
  if (!j) return TT_ENOMEM;
  broker_sign_req_t q = {.id = s->next_id++, .csr = csr, .csr_len = len};
  if (s->next_id == 0) s->next_id = 1; /* 0 is the signer's "ready" */
  int64_t secs = b->cfg.device_cert_lifetime_ms / 1000;
  q.seconds = secs > UINT32_MAX ? UINT32_MAX : (uint32_t)secs;
  snprintf(q.device_id, sizeof(q.device_id), "%s", device_id);
  j->len = broker_sign_req_encode(&q, j->msg, BROKER_SIGNER_HDR + TT_SIGNER_REQUEST_MAX);
  if (j->len == 0) {
    free(j);
    return TT_EINVAL;
  }
  j->next = NULL;
  j->id = q.id;
  j->cb = cb;
  j->data = data;
  if (s->tail) s->tail->next = j;
  else s->head = j;
  s->tail = j;
  s->queued++;
  pump(s);
  return 0;
}

int broker_signer_pid(broker_t *b) {
  broker_signer_t *s = b->signer;
  return s && s->cur ? s->cur->proc.pid : 0;
}

void broker_signer_stop(broker_t *b) {
  broker_signer_t *s = b->signer;
  if (!s || s->stopping) return;
  s->stopping = true;
  fail_all(s, TT_ECLOSED, "the broker is shutting down");
  uv_close((uv_handle_t *)&s->deadline, NULL);
  uv_close((uv_handle_t *)&s->restart, NULL);
  /* The signer reads EOF and exits; its exit callback closes the process handle. */
  signer_proc_t *p = s->cur;
  if (p && !uv_is_closing((uv_handle_t *)&p->pipe)) uv_close((uv_handle_t *)&p->pipe, proc_close_cb);
  s->cur = NULL;
}

void broker_signer_free(broker_t *b) {
  free(b->signer);
  b->signer = NULL;
}
