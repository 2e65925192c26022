/* CHANNEL_FILES on the agent: served only inside a session granted here with file access.
 * The transfer engine (tt/xfer.h) moves GET and PUT through the roots (confine.c) on the
 * transfer pool, whose threads run as shell.user (identity.c); LIST and MKDIR (list.c) run
 * on the same pool, one at a time per channel and answered in the order they came. The
 * employee's prompt is told of each file as it starts and of each failure, as of shells.
 * A channel ends with its session, with the link, or when the agent stops. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "agent.h"
#include "files.h"
#include "tt/hex.h"
#include "tt/log.h"
#include "tt/msg.h"

/* Transfer pool threads: one reads or writes while the other hashes and compresses; more
 * would not make one device's disk faster, and each holds a file-system identity. */
#define FILES_POOL_THREADS 2u

typedef struct fchan_s fchan_t;
typedef struct req_s req_t;

/* A LIST or MKDIR, from its arrival to its last answer. */
struct req_s {
  req_t *next;    /* its channel's queue, in arrival order */
  req_t *jnext;   /* files->jobs, while on the pool */
  fchan_t *fc;    /* NULL once the channel is gone (the job still holds it) */
  struct agent_files_s *files;
  Tether__FileMsgType type;
  uint32_t id;
  bool recursive;
  bool self;      /* LIST: the path itself (a stat) */
  uint32_t mode;
  bool running;   /* on the pool */
  bool done;      /* ran (or never needed to): rc, err and list say how */
  bool slot;      /* holds one of TT_FILE_LISTINGS_MAX */
  bool waited;    /* said once that it waits for one */
  int rc;
  agent_files_list_t *list;
  size_t sent;    /* entries already sent */
  char path[TT_FILE_PATH_MAX + 1];
  char to[TT_FILE_PATH_MAX + 1]; /* RENAME */
  char err[TT_TEXT_MAX];
};

struct fchan_s {
  Tether__ChannelKind kind; /* first, as in chan.c's channels: tells ours apart */
  struct agent_files_s *files;
  fchan_t *next;
  tt_mux_t *m;
  tt_chan_t *ch;
  tt_xfer_t *x;
  uint64_t session, ticket;
  char technician[TT_NAME_MAX + 1];
  req_t *reqs, *reqs_tail;
  unsigned nreqs;
  unsigned depth; /* our entry points on the stack: freed when the last returns */
  bool ended, pumping, repump;
};

struct agent_files_s {
  agent_t *a;
  agent_files_fs_t fs;
  agent_files_ident_t ident;
  tt_xfer_fs_t xfs;
  bool pool;                 /* the pool runs, as shell.user */
  char off[TT_TEXT_MAX - 64]; /* why file channels are refused when it does not */
  fchan_t *chans;
  req_t *jobs;
  unsigned listings;         /* LIST answers held (TT_FILE_LISTINGS_MAX) */
  bool rekick;               /* a listing slot came free: kick_cb pumps the channels */
  bool closing;
  uv_timer_t kick;
  agent_files_batch_t batch; /* one FILE_ENTRIES message being packed */
};

static void fchan_end(fchan_t *fc, int code, const char *why, bool gone);

/* ---- words for people ------------------------------------------------------------------ */

static void human_size(uint64_t n, char *out, size_t cap) {
  static const char *const unit[] = {"kB", "MB", "GB", "TB", "PB"};
  if (n < 1000) {
    snprintf(out, cap, "%" PRIu64 " byte%s", n, n == 1 ? "" : "s");
    return;
  }
  double v = (double)n;
  size_t i = 0;
  for (v /= 1000; v >= 999.95 && i + 1 < sizeof(unit) / sizeof(unit[0]); v /= 1000) i++;
  snprintf(out, cap, "%.1f %s", v, unit[i]);
}

/* Cut a message back to whole UTF-8 characters (snprintf may have cut one in two), so that
 * it is valid text for the console. */
static void fit_text(char *s) {
  size_t n = strlen(s), i = n;
  while (i > 0 && ((uint8_t)s[i - 1] & 0xc0) == 0x80) i--;
  if (i == 0) return;
  uint8_t lead = (uint8_t)s[i - 1];
  size_t need = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc0 ? 2 : 1;
  if (n - (i - 1) < need) s[i - 1] = '\0';
}

/* "alice is pulling /var/log/syslog (1.2 MB) (S-4)" on the employee's prompt. */
static void notice(fchan_t *fc, const char *what, const char *path, const char *extra) {
  char shown[128];
  agent_consent_notice(fc->files->a, "ACTIVITY S-%llu\t%s\t%s %s%s", (unsigned long long)fc->session,
                       fc->technician, what, agent_files_shown(path, shown, sizeof(shown)), extra);
}

/* ---- LIST and MKDIR ---------------------------------------------------------------------- */

static void kick_soon(struct agent_files_s *f);
static void fc_pump(fchan_t *fc);

static void req_free(req_t *r) {
  if (r->slot) {
    r->files->listings--;
    r->slot = false;
  }
  agent_files_list_free(r->list);
  free(r);
}

static void job_work(void *arg) {
  req_t *r = arg;
  const agent_files_fs_t *fs = &r->files->fs;
  switch (r->type) {
  case TETHER__FILE_MSG_TYPE__FILE_LIST:
    r->rc = agent_files_list(fs, r->path, r->recursive, r->self, &r->list, r->err, sizeof(r->err));
    break;
  case TETHER__FILE_MSG_TYPE__FILE_REMOVE:
  case TETHER__FILE_MSG_TYPE__FILE_RMDIR:
    r->rc = agent_files_remove(fs, r->path, r->type == TETHER__FILE_MSG_TYPE__FILE_RMDIR, r->err, sizeof(r->err));
    break;
  case TETHER__FILE_MSG_TYPE__FILE_RENAME: r->rc = agent_files_rename(fs, r->path, r->to, r->err, sizeof(r->err)); break;
  default: r->rc = agent_files_mkdir(fs, r->path, r->mode, r->err, sizeof(r->err)); break;
  }
  fit_text(r->err);
}

/* An ended channel goes once none of our entry points is on the stack (one may be in the
 * middle of answering a request), with its requests; one on the pool comes back to none. */
static void fc_release(fchan_t *fc) {
  if (!fc->ended || fc->depth > 0) return;
  struct agent_files_s *f = fc->files;
  for (req_t *r = fc->reqs, *next; r; r = next) {
    next = r->next;
    if (r->running) {
      r->fc = NULL;
      continue;
    }
    if (r->slot) f->rekick = true;
    req_free(r);
  }
  free(fc);
  kick_soon(f);
}

static void job_done(void *arg) {
  req_t *r = arg;
  struct agent_files_s *f = r->files;
  for (req_t **pp = &f->jobs; *pp; pp = &(*pp)->jnext)
    if (*pp == r) {
      *pp = r->jnext;
      break;
    }
  r->running = false;
  r->done = true;
  fchan_t *fc = r->fc;
  if (!fc) { /* its channel went meanwhile */
    if (r->slot) f->rekick = true;
    req_free(r);
    kick_soon(f);
    return;
  }
  fc->depth++;
  fc_pump(fc);
  fc->depth--;
  bool live = !fc->ended;
  tt_link_t *l = live ? tt_link_from_mux(fc->m) : NULL;
  fc_release(fc);
  kick_soon(f);
  if (l) tt_link_flush(l);
}

/* Put r on the pool; 0, or why not. */
static int job_start(req_t *r) {
  struct agent_files_s *f = r->files;
  int rc = tt_xfer_pool_submit(job_work, job_done, r);
  if (rc) return rc;
  r->running = true;
  r->jnext = f->jobs;
  f->jobs = r;
  if (r->type == TETHER__FILE_MSG_TYPE__FILE_LIST) {
    r->slot = true;
    f->listings++;
  }
  return 0;
}

/* Send r's answer, or as much of it as the channel takes now: true once it is all sent
 * (or cannot be), false to go on at the next credit. */
static bool answer(fchan_t *fc, req_t *r) {
  Tether__FileCtl m = TETHER__FILE_CTL__INIT;
  m.id = r->id;
  int rc;
  if (r->rc) {
    m.type = TETHER__FILE_MSG_TYPE__FILE_ERROR;
    m.code = (int32_t)tt_err_to_wire(r->rc);
    m.path = tt_text(r->path);
    m.message = tt_text(r->err);
    rc = tt_xfer_ctl(fc->x, &m);
  } else if (r->type != TETHER__FILE_MSG_TYPE__FILE_LIST) {
    m.type = TETHER__FILE_MSG_TYPE__FILE_OK;
    m.path = tt_text(r->path);
    rc = tt_xfer_ctl(fc->x, &m);
  } else {
    do {
      size_t pos = r->sent;
      Tether__FileCtl b = TETHER__FILE_CTL__INIT;
      b.type = TETHER__FILE_MSG_TYPE__FILE_ENTRIES;
      b.id = r->id;
      agent_files_list_batch(r->list, &pos, &b, &fc->files->batch);
      rc = tt_xfer_ctl(fc->x, &b);
      if (rc) break;
      r->sent = pos;
      if (b.last) break;
    } while (!fc->ended);
  }
  if (rc == TT_EFULL) return false;
  if (rc) {
    TT_WARN("files", "cannot answer a request", "session=S-%llu id=%u err=%s", (unsigned long long)fc->session, r->id,
            tt_errname(rc));
    return true;
  }
  if (r->rc) {
    char q[256];
    char wq[TT_TEXT_MAX * 4 + 1];
    TT_INFO("files", r->type == TETHER__FILE_MSG_TYPE__FILE_LIST ? "list refused" : "change refused",
            "session=S-%llu technician=%s path=\"%s\" err=%s why=\"%s\"", (unsigned long long)fc->session,
            fc->technician, tt_log_quote(q, sizeof(q), r->path, strlen(r->path)), tt_errname(r->rc),
            tt_log_quote(wq, sizeof(wq), r->err, strlen(r->err)));
  } else if (r->type == TETHER__FILE_MSG_TYPE__FILE_LIST) {
    if (!r->self) notice(fc, "listed", r->path, r->recursive ? " and everything in it" : "");
  } else if (r->type == TETHER__FILE_MSG_TYPE__FILE_REMOVE) {
    notice(fc, "removed", r->path, "");
  } else if (r->type == TETHER__FILE_MSG_TYPE__FILE_RMDIR) {
    notice(fc, "removed the directory", r->path, "");
  } else if (r->type == TETHER__FILE_MSG_TYPE__FILE_RENAME) {
    char to[TT_FILE_PATH_MAX + 8];
    snprintf(to, sizeof(to), " to %s", r->to);
    notice(fc, "renamed", r->path, to);
  } else {
    notice(fc, "made the directory", r->path, "");
  }
  return true;
}

/* Move the head of the queue on: start its job, or send its answer, then the next. */
static void fc_pump(fchan_t *fc) {
  struct agent_files_s *f = fc->files;
  if (fc->pumping) {
    fc->repump = true;
    return;
  }
  fc->pumping = true;
  fc->depth++;
  do {
    fc->repump = false;
    while (!fc->ended && fc->reqs) {
      req_t *r = fc->reqs;
      if (r->running) break;
      if (!r->done) {
        if (r->type == TETHER__FILE_MSG_TYPE__FILE_LIST && f->listings >= TT_FILE_LISTINGS_MAX) {
          if (!r->waited)
            TT_INFO("files", "a listing waits for others to be sent", "session=S-%llu id=%u held=%u",
                    (unsigned long long)fc->session, r->id, f->listings);
          r->waited = true;
          break; /* kick_cb starts it when one is let go */
        }
        int rc = job_start(r);
        if (!rc) break;
        r->rc = rc;
        r->done = true;
        snprintf(r->err, sizeof(r->err), "the agent cannot run it now: %s", tt_strerror(rc));
        continue;
      }
      if (!answer(fc, r)) break; /* the rest at the next credit */
      fc->reqs = r->next;
      if (!fc->reqs) fc->reqs_tail = NULL;
      fc->nreqs--;
      bool slot = r->slot;
      req_free(r);
      if (slot) f->rekick = true;
    }
  } while (fc->repump && !fc->ended);
  fc->pumping = false;
  fc->depth--;
}

/* A listing slot came free: channels waiting for one go on, from the loop's next turn
 * (never from inside the mux or the engine, which may be tearing a link down). */
static void kick_cb(uv_timer_t *t) {
  struct agent_files_s *f = t->data;
  while (f->rekick) {
    f->rekick = false;
    for (fchan_t *fc = f->chans, *next; fc; fc = next) {
      next = fc->next;
      fc->depth++;
      fc_pump(fc);
      fc->depth--;
      if (!fc->ended) tt_link_flush(tt_link_from_mux(fc->m));
      fc_release(fc);
    }
  }
}

static void kick_soon(struct agent_files_s *f) {
  if (f->rekick && !f->closing) uv_timer_start(&f->kick, kick_cb, 0, 0);
}

static void enqueue(fchan_t *fc, const Tether__FileCtl *m) {
  if (fc->nreqs >= TT_FILE_OPS_MAX) {
    Tether__FileCtl e = TETHER__FILE_CTL__INIT;
    char why[96];
    snprintf(why, sizeof(why), "more than %u LIST and MKDIR requests are waiting", TT_FILE_OPS_MAX);
    e.type = TETHER__FILE_MSG_TYPE__FILE_ERROR;
    e.id = m->id;
    e.code = (int32_t)tt_err_to_wire(TT_EBUSY);
    e.message = tt_text(why);
    if (tt_xfer_ctl(fc->x, &e)) TT_WARN("files", "cannot refuse a request", "id=%u", m->id);
    return;
  }
  req_t *r = calloc(1, sizeof(*r));
  if (!r) {
    TT_WARN("files", "out of memory: a request is dropped", "id=%u", m->id);
    return;
  }
  r->files = fc->files;
  r->fc = fc;
  r->type = m->type;
  r->id = m->id;
  r->recursive = m->recursive;
  r->self = m->self;
  r->mode = m->stat ? m->stat->mode : 0;
  char why[96];
  bool rename = m->type == TETHER__FILE_MSG_TYPE__FILE_RENAME;
  if (!agent_files_path_ok(m->path.data, m->path.len, why, sizeof(why)) ||
      (rename && !agent_files_path_ok(m->to.data, m->to.len, why, sizeof(why)))) {
    r->rc = TT_EINVAL;
    r->done = true;
    snprintf(r->err, sizeof(r->err), "refused: %s", why);
  } else {
    memcpy(r->path, m->path.data, m->path.len);
    r->path[m->path.len] = '\0';
    if (rename) {
      memcpy(r->to, m->to.data, m->to.len);
      r->to[m->to.len] = '\0';
    }
  }
  if (fc->reqs_tail) fc->reqs_tail->next = r;
  else fc->reqs = r;
  fc->reqs_tail = r;
  fc->nreqs++;
}

/* ---- the engine's callbacks ------------------------------------------------------------- */

static void x_on_ctl(tt_xfer_t *x, const Tether__FileCtl *m) {
  fchan_t *fc = tt_xfer_data(x);
  if (fc->ended) return;
  if (m->type == TETHER__FILE_MSG_TYPE__FILE_LIST || m->type == TETHER__FILE_MSG_TYPE__FILE_MKDIR ||
      m->type == TETHER__FILE_MSG_TYPE__FILE_REMOVE || m->type == TETHER__FILE_MSG_TYPE__FILE_RMDIR ||
      m->type == TETHER__FILE_MSG_TYPE__FILE_RENAME) {
    enqueue(fc, m); /* started by fc_pump once the engine returns */
    return;
  }
  if (m->type == TETHER__FILE_MSG_TYPE__FILE_ERROR) return; /* about an op we do not hold: nothing to do */
  Tether__FileCtl e = TETHER__FILE_CTL__INIT;
  e.type = TETHER__FILE_MSG_TYPE__FILE_ERROR;
  e.id = m->id;
  e.code = (int32_t)tt_err_to_wire(TT_EPROTO);
  e.message = tt_text("the agent does not take that message");
  if (tt_xfer_ctl(x, &e)) TT_WARN("files", "cannot refuse a message", "id=%u type=%d", m->id, (int)m->type);
}

static void x_on_begin(tt_xfer_t *x, uint32_t id, const char *path, bool sending, uint64_t size, uint64_t resumed) {
  fchan_t *fc = tt_xfer_data(x);
  char sz[32], extra[96], rs[32];
  (void)id;
  human_size(size, sz, sizeof(sz));
  if (resumed) {
    human_size(resumed, rs, sizeof(rs));
    snprintf(extra, sizeof(extra), " (%s, resuming after %s)", sz, rs);
  } else {
    snprintf(extra, sizeof(extra), " (%s)", sz);
  }
  /* sending: the technician pulls it from here. */
  notice(fc, sending ? "is pulling" : "is pushing", path, extra);
}

static void x_on_done(tt_xfer_t *x, const tt_xfer_result_t *r) {
  fchan_t *fc = tt_xfer_data(x);
  char q[256], hex[TT_HEX_CAP(32)] = "";
  const char *dir = r->sent ? "pull" : "push", *path = r->path ? r->path : "?";
  tt_log_quote(q, sizeof(q), path, strlen(path));
  if (r->code) {
    char wq[TT_TEXT_MAX * 4 + 1];
    tt_log_quote(wq, sizeof(wq), r->msg ? r->msg : "", r->msg ? strlen(r->msg) : 0);
    TT_WARN("files", "file transfer failed", "session=S-%llu ticket=T-%llu technician=%s dir=%s path=\"%s\" err=%s why=\"%s\"",
            (unsigned long long)fc->session, (unsigned long long)fc->ticket, fc->technician, dir, q,
            tt_errname(r->code), wq);
    char why[TT_TEXT_MAX + 2];
    snprintf(why, sizeof(why), ": %s", r->msg && r->msg[0] ? r->msg : tt_strerror(r->code));
    fit_text(why);
    notice(fc, r->sent ? "could not pull" : "could not push", path, why);
    return;
  }
  tt_hex(hex, sizeof(hex), r->sha256, sizeof(r->sha256));
  TT_INFO("files", "file moved",
          "session=S-%llu ticket=T-%llu technician=%s dir=%s path=\"%s\" size=%" PRIu64 " sha256=%s resumed=%" PRIu64
          " wire=%" PRIu64 " seconds=%.3f",
          (unsigned long long)fc->session, (unsigned long long)fc->ticket, fc->technician, dir, q, r->size, hex,
          r->resumed, r->wire, r->seconds);
}

/* The engine gave up on the channel (the peer broke the protocol, or ended it). It may come
 * from the engine's own work on the loop, outside our entry points: release here then. */
static void x_on_fail(tt_xfer_t *x, int code, const char *msg) {
  fchan_t *fc = tt_xfer_data(x);
  if (fc->ended) return;
  struct agent_files_s *f = fc->files;
  fchan_end(fc, code, msg, false);
  fc_release(fc);
  kick_soon(f);
}

static const tt_xfer_cbs_t xfer_cbs = {
    .on_ctl = x_on_ctl,
    .on_begin = x_on_begin,
    .on_progress = NULL,
    .on_done = x_on_done,
    .on_fail = x_on_fail,
};

/* ---- the channel ------------------------------------------------------------------------- */

/* Close the channel's side here (gone: the mux has closed it already) and end its ops with
 * why; fc_release frees it and its requests. */
static void fchan_end(fchan_t *fc, int code, const char *why, bool gone) {
  if (fc->ended) return;
  fc->ended = true;
  struct agent_files_s *f = fc->files;
  for (fchan_t **pp = &f->chans; *pp; pp = &(*pp)->next)
    if (*pp == fc) {
      *pp = fc->next;
      break;
    }
  fc->depth++;
  tt_xfer_on_close(fc->x, code, why); /* its files end with why (x_on_done says so) */
  if (!gone) {
    (void)!tt_mux_close(fc->m, fc->ch, code, why);
    tt_link_flush(tt_link_from_mux(fc->m));
  }
  fc->ch->data = NULL;
  tt_xfer_free(fc->x);
  fc->x = NULL;
  char q[TT_TEXT_MAX * 4 + 1];
  tt_log_quote(q, sizeof(q), why ? why : "", why ? strlen(why) : 0);
  TT_INFO("files", "channel closed", "session=S-%llu id=%u code=%s why=\"%s\"", (unsigned long long)fc->session,
          fc->ch->id, code ? tt_errname(code) : "ok", q);
  fc->depth--;
}

bool agent_files_owns(const tt_chan_t *ch) {
  return ch->data && *(const Tether__ChannelKind *)ch->data == TETHER__CHANNEL_KIND__CHANNEL_FILES;
}

static void reject(tt_mux_t *m, tt_chan_t *ch, int code, const char *why) {
  TT_WARN("files", "channel refused", "id=%u why=\"%s\"", ch->id, why);
  (void)!tt_mux_reject(m, ch, code, why);
  tt_link_flush(tt_link_from_mux(m));
}

void agent_files_open(tt_mux_t *m, tt_chan_t *ch, const Tether__ChannelOpen *msg) {
  agent_t *a = tt_link_from_mux(m)->data;
  struct agent_files_s *f = a->files;
  char why[TT_TEXT_MAX];
  const agent_session_t *s = agent_session_find(a, msg->session);
  if (!s || !(s->access & TETHER__ACCESS__ACCESS_FILES)) {
    snprintf(why, sizeof(why), "S-%llu is not a live session with file access on this device",
             (unsigned long long)msg->session);
    reject(m, ch, TT_EDENIED, why);
    return;
  }
  if (!f || !f->pool) {
    snprintf(why, sizeof(why), "file access is off on this device: %s", f ? f->off : "not started");
    fit_text(why);
    reject(m, ch, TT_EDENIED, why);
    return;
  }
  fchan_t *fc = calloc(1, sizeof(*fc));
  if (!fc) {
    reject(m, ch, TT_ENOMEM, "the agent is out of memory");
    return;
  }
  /* Chunks carry their own zstd: no channel compression. */
  if (tt_mux_accept(m, ch, TT_WINDOW_BULK, true, 0)) {
    free(fc);
    reject(m, ch, TT_EIO, "cannot accept");
    return;
  }
  int rc = tt_xfer_new(&fc->x, tt_link_from_mux(m), ch, true, &f->xfs, &xfer_cbs, fc);
  if (rc) {
    free(fc);
    TT_WARN("files", "cannot serve a file channel", "id=%u err=%s", ch->id, tt_errname(rc));
    (void)!tt_mux_close(m, ch, rc, "the agent cannot serve files now");
    tt_link_flush(tt_link_from_mux(m));
    return;
  }
  fc->kind = TETHER__CHANNEL_KIND__CHANNEL_FILES;
  fc->files = f;
  fc->m = m;
  fc->ch = ch;
  fc->session = msg->session;
  fc->ticket = msg->ticket;
  snprintf(fc->technician, sizeof(fc->technician), "%s", s->technician);
  fc->next = f->chans;
  f->chans = fc;
  ch->data = fc;
  TT_INFO("files", "channel opened", "id=%u session=S-%llu ticket=T-%llu technician=%s user=%s", ch->id,
          (unsigned long long)fc->session, (unsigned long long)fc->ticket, fc->technician, f->ident.name);
  tt_link_flush(tt_link_from_mux(m));
}

void agent_files_data(tt_mux_t *m, tt_chan_t *ch, const uint8_t *p, size_t n, uint8_t flags) {
  fchan_t *fc = ch->data;
  fc->depth++;
  tt_xfer_on_data(fc->x, p, n, flags);
  if (!fc->ended) fc_pump(fc);
  fc->depth--;
  bool live = !fc->ended;
  struct agent_files_s *f = fc->files;
  fc_release(fc);
  kick_soon(f);
  if (live) tt_link_flush(tt_link_from_mux(m));
}

void agent_files_credit(tt_mux_t *m, tt_chan_t *ch) {
  fchan_t *fc = ch->data;
  fc->depth++;
  tt_xfer_on_credit(fc->x);
  if (!fc->ended) fc_pump(fc); /* answers that waited for room */
  fc->depth--;
  bool live = !fc->ended;
  struct agent_files_s *f = fc->files;
  fc_release(fc);
  kick_soon(f);
  if (live) tt_link_flush(tt_link_from_mux(m));
}

void agent_files_chan_closed(tt_mux_t *m, tt_chan_t *ch, int code, const char *msg) {
  fchan_t *fc = ch->data;
  struct agent_files_s *f = fc->files;
  (void)m;
  fchan_end(fc, code, msg && msg[0] ? msg : tt_strerror(code ? code : TT_ECLOSED), true);
  fc_release(fc);
  kick_soon(f);
}

void agent_files_end_session(agent_t *a, uint64_t session, const char *why) {
  struct agent_files_s *f = a->files;
  if (!f) return;
  for (fchan_t *fc = f->chans, *next; fc; fc = next) {
    next = fc->next;
    if (fc->session != session) continue;
    fchan_end(fc, TT_EDENIED, why, false);
    fc_release(fc);
  }
  kick_soon(f);
}

/* ---- start and stop ----------------------------------------------------------------------- */

int agent_files_init(agent_t *a, char *err, size_t errlen) {
  struct agent_files_s *f = calloc(1, sizeof(*f));
  if (!f) {
    snprintf(err, errlen, "out of memory");
    return TT_ENOMEM;
  }
  f->a = a;
  a->files = f;
  uv_timer_init(a->loop, &f->kick);
  f->kick.data = f;
  int ident = agent_files_ident_load(&f->ident, a->cfg.shell_user, f->off, sizeof(f->off));
  /* The roots are read even when files are off, so a mistake in them shows at start. */
  int rc = agent_files_fs_init(&f->fs, a->cfg.files_roots, a->cfg.files_read_only, ident ? NULL : f->ident.home, err,
                               errlen);
  if (rc) return rc;
  f->xfs.open_read = agent_files_open_read;
  f->xfs.open_parent = agent_files_open_parent;
  f->xfs.fs = &f->fs;
  if (ident) {
    TT_WARN("files", "file access is off", "why=\"%s\"", f->off);
    return 0;
  }
  rc = tt_xfer_pool_start(a->loop, FILES_POOL_THREADS, agent_files_ident_apply, &f->ident);
  if (rc) {
    snprintf(f->off, sizeof(f->off), "file access could not start as shell.user %s (%s)", f->ident.name,
             tt_strerror(rc));
    TT_WARN("files", "file access is off", "why=\"%s\"", f->off);
    return 0;
  }
  f->pool = true;
  char roots[512];
  agent_files_roots_text(&f->fs, roots, sizeof(roots));
  TT_INFO("files", "file access", "user=%s switched=%s roots=\"%s\"", f->ident.name,
          f->ident.switch_user ? "yes" : "no", roots);
  return 0;
}

void agent_files_close(agent_t *a) {
  struct agent_files_s *f = a->files;
  if (!f || f->closing) return;
  f->closing = true;
  uv_close((uv_handle_t *)&f->kick, NULL);
  for (fchan_t *fc = f->chans, *next; fc; fc = next) {
    next = fc->next;
    fchan_end(fc, TT_ECLOSED, "the agent is shutting down", false);
    fc_release(fc);
  }
}

void agent_files_free(agent_t *a) {
  struct agent_files_s *f = a->files;
  if (!f) return;
  agent_files_close(a);
  /* Jobs finish before the threads are joined; answers that never came back to the loop
   * belong to channels gone with it. Then the loop closes the pool's and our handles. */
  if (f->pool) tt_xfer_pool_stop();
  uv_run(a->loop, UV_RUN_DEFAULT);
  for (req_t *r = f->jobs, *next; r; r = next) {
    next = r->jnext;
    req_free(r);
  }
  agent_files_ident_free(&f->ident);
  free(f);
  a->files = NULL;
}
