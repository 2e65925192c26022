/* The SIEM feed: every audit entry, once and in order, to a syslog collector over TLS
 * (RFC 5425: each message framed as "LEN SP MSG"), in the format tt/auditfmt.h writes.
 *
 * The store is the buffer. The forwarder reads pages of entries after its cursor on the
 * store's reader, keeps at most TT_SIEM_QUEUE_MAX bytes of messages it wrote and the
 * collector has not acknowledged, and moves the cursor only past messages whose last byte the
 * collector's TCP acknowledged (SIOCOUTQ, tt_tls_wire_acked). The cursor is written to the
 * store (siem_cursor, per target) as it moves. A collector that goes away loses nothing: what
 * it did not acknowledge is read again from the store and sent after the reconnect, which
 * backs off from 1 s to 30 s. Nothing here ever waits: writes are queued to libuv, reads are
 * store requests, and a collector that stops acknowledging for TT_SIEM_STALL_MS is dropped and
 * reconnected. State and the last failure show in `tether status` and the log. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "broker.h"
#include "tt/addr.h"
#include "tt/auditfmt.h"
#include "tt/backoff.h"
#include "tt/log.h"

#define MOD "siem"
#define SIEM_TICK_MS 100u
#define SIEM_PAGE 100u
#define SIEM_RETRY_MIN_MS 1000u
#define SIEM_RETRY_MAX_MS 30000u

typedef struct {
  int64_t seq;
  uint64_t wire_end; /* the stream's ciphertext count once this message was written */
  uint32_t len;      /* its framed length */
} inflight_t;

#define QCAP 4096u /* messages in flight: TT_SIEM_QUEUE_MAX / the smallest message, and more */

struct broker_siem_s {
  broker_t *b;
  tt_tls_ctx_t *ctx;
  tt_tls_t *s;
  struct sockaddr_storage addr;
  char host[256];
  char target[320];
  tt_auditfmt_t fmt;
  uv_timer_t timer; /* the tick while up, the retry while down */
  tt_backoff_t backoff;
  bool up, loaded, reading, persisting, stopping;
  int64_t acked;     /* the last entry the collector's TCP acknowledged */
  int64_t persisted; /* ... as the store has it */
  int64_t read_to;   /* the last entry written to the stream */
  inflight_t q[QCAP];
  size_t qhead, qlen, qbytes;
  uint64_t progress_ms; /* uv_now when an acknowledgement last moved, or the queue was empty */
  uint64_t down_since_ms;
  uint64_t connects, sent;
  char error[160];
};

static void siem_connect(broker_siem_t *m);
static void siem_pump(broker_siem_t *m);

static void set_error(broker_siem_t *m, const char *what, int rc) {
  snprintf(m->error, sizeof(m->error), "%s: %s", what, tt_strerror(rc));
}

/* ---- the cursor ---------------------------------------------------------------------------- */

typedef struct {
  store_req_t req;
  broker_siem_t *m;
  char target[320];
  int64_t seq;
} cursor_req_t;

static int cursor_get_run(broker_store_t *s, store_req_t *r) {
  cursor_req_t *x = (cursor_req_t *)r;
  return store_siem_cursor_get(s, x->target, &x->seq);
}

static void cursor_get_done(store_req_t *r) {
  cursor_req_t *x = (cursor_req_t *)r;
  broker_siem_t *m = x->m;
  if (!m->stopping) {
    if (r->rc) {
      TT_ERROR(MOD, "cursor not read: the feed does not start", "err=%s", tt_errname(r->rc));
      set_error(m, "cursor not read", r->rc);
    } else {
      m->acked = m->persisted = m->read_to = x->seq;
      m->loaded = true;
      TT_INFO(MOD, "feed starts", "target=%s format=%s after=%" PRId64, m->target, tt_auditfmt_name(m->fmt), x->seq);
      siem_connect(m);
    }
  }
  free(x);
}

static int cursor_put_run(broker_store_t *s, store_req_t *r) {
  cursor_req_t *x = (cursor_req_t *)r;
  return store_siem_cursor_put(s, x->target, x->seq, (int64_t)broker_unix_ms());
}

static void persist(broker_siem_t *m);

static void cursor_put_done(store_req_t *r) {
  cursor_req_t *x = (cursor_req_t *)r;
  broker_siem_t *m = x->m;
  m->persisting = false;
  if (r->rc) TT_WARN(MOD, "cursor not written", "seq=%" PRId64 " err=%s", x->seq, tt_errname(r->rc));
  else if (x->seq > m->persisted) m->persisted = x->seq;
  free(x);
  persist(m); /* what was acknowledged meanwhile (also while stopping: the next start begins there) */
}

static void persist(broker_siem_t *m) {
  if (m->persisting || m->acked <= m->persisted) return;
  cursor_req_t *x = calloc(1, sizeof(*x));
  if (!x) return;
  x->req.run = cursor_put_run;
  x->req.done = cursor_put_done;
  x->req.lane = STORE_LANE_WRITE;
  x->req.what = "siem_cursor";
  x->m = m;
  snprintf(x->target, sizeof(x->target), "%s", m->target);
  x->seq = m->acked;
  if (store_svc_submit(m->b->svc, &x->req)) {
    free(x);
    return;
  }
  m->persisting = true;
}

/* ---- acknowledgements ------------------------------------------------------------------------ */

/* Messages whose last byte the collector's TCP acknowledged are delivered: the cursor moves. */
static void take_acks(broker_siem_t *m) {
  uint64_t acked = 0;
  if (!m->s || tt_tls_wire_acked(m->s, &acked) != 0) return;
  bool moved = false;
  while (m->qlen && m->q[m->qhead].wire_end <= acked) {
    inflight_t *f = &m->q[m->qhead];
    m->acked = f->seq;
    m->qbytes -= f->len;
    m->qhead = (m->qhead + 1) % QCAP;
    m->qlen--;
    moved = true;
  }
  uint64_t now = uv_now(m->b->loop);
  if (moved || m->qlen == 0) m->progress_ms = now;
  if (moved) persist(m);
  if (m->qlen && now - m->progress_ms > TT_SIEM_STALL_MS) {
    TT_WARN(MOD, "collector stopped acknowledging: reconnecting", "target=%s waiting=%zu", m->target, m->qlen);
    snprintf(m->error, sizeof(m->error), "the collector acknowledged nothing for %u s", TT_SIEM_STALL_MS / 1000);
    tt_tls_close(m->s, TT_ETIMEOUT);
  }
}

static void tick_cb(uv_timer_t *t) {
  broker_siem_t *m = t->data;
  if (!m->up) return;
  take_acks(m);
  siem_pump(m);
}

/* ---- reading and sending ------------------------------------------------------------------- */

typedef struct {
  store_req_t req;
  broker_siem_t *m;
  store_audit_filter_t f;
  uint32_t n;
  store_audit_t rows[SIEM_PAGE];
} page_req_t;

static int page_cb(void *ctx, const store_audit_t *e) {
  page_req_t *x = ctx;
  if (x->n >= SIEM_PAGE) return 1;
  x->rows[x->n++] = *e;
  return 0;
}

static int page_run(broker_store_t *s, store_req_t *r) {
  page_req_t *x = (page_req_t *)r;
  int rc = store_audit_list(s, &x->f, page_cb, x);
  return rc < 0 ? rc : 0;
}

/* One entry onto the stream; false when the stream will not take it now. */
static bool send_entry(broker_siem_t *m, const store_audit_t *e) {
  static char msg[TT_SIEM_MSG_MAX + 16];
  tt_audit_view_t v = {.id = e->id, .ts_ms = e->ts_ms, .actor = e->actor, .action = e->action,
                       .target = e->target, .detail = e->detail, .hash = e->hash, .prev_hash = e->prev_hash,
                       .host = m->b->hostname, .version = TT_VERSION};
  char body[TT_SIEM_MSG_MAX];
  int n = tt_auditfmt_write(m->fmt, &v, body, sizeof(body));
  if (n < 0) { /* cannot happen with the broker's own entries; never skip one silently */
    TT_ERROR(MOD, "entry does not fit a message: sent cut", "seq=%" PRId64, e->id);
    n = (int)strlen(body); /* the writer ends a cut message too */
  }
  int h = snprintf(msg, 16, "%d ", n);
  memcpy(msg + h, body, (size_t)n);
  size_t len = (size_t)h + (size_t)n;
  if (m->qlen == QCAP || tt_tls_write(m->s, msg, len) != 0) return false;
  inflight_t *f = &m->q[(m->qhead + m->qlen) % QCAP];
  f->seq = e->id;
  f->wire_end = tt_tls_wire_out(m->s);
  f->len = (uint32_t)len;
  m->qlen++;
  m->qbytes += len;
  m->read_to = e->id;
  m->sent++;
  return true;
}

static void page_done(store_req_t *r) {
  page_req_t *x = (page_req_t *)r;
  broker_siem_t *m = x->m;
  m->reading = false;
  bool more = false;
  if (r->rc) {
    TT_WARN(MOD, "audit page not read", "after=%" PRId64 " err=%s", x->f.after_id, tt_errname(r->rc));
  } else if (!m->stopping && m->up && x->f.after_id == m->read_to) {
    uint32_t i = 0;
    for (; i < x->n; i++)
      if (!send_entry(m, &x->rows[i])) break;
    more = i == x->n && x->n == SIEM_PAGE;
  }
  free(x);
  if (more) siem_pump(m);
}

static void siem_pump(broker_siem_t *m) {
  if (!m->up || m->reading || m->stopping || m->qbytes >= TT_SIEM_QUEUE_MAX || m->qlen >= QCAP - SIEM_PAGE) return;
  int64_t head = 0;
  uint8_t h[32];
  store_svc_audit_head(m->b->svc, &head, h);
  if (head <= m->read_to) return;
  page_req_t *x = calloc(1, sizeof(*x));
  if (!x) return;
  x->req.run = page_run;
  x->req.done = page_done;
  x->req.lane = STORE_LANE_READ;
  x->req.what = "siem_page";
  x->m = m;
  x->f = (store_audit_filter_t){.limit = SIEM_PAGE, .after_id = m->read_to};
  if (store_svc_submit(m->b->svc, &x->req)) {
    free(x);
    return;
  }
  m->reading = true;
}

/* ---- the connection -------------------------------------------------------------------------- */

static void retry_cb(uv_timer_t *t) {
  broker_siem_t *m = t->data;
  if (!m->stopping && !m->s) siem_connect(m);
}

static void on_handshake(tt_tls_t *s) {
  broker_siem_t *m = tt_tls_data(s);
  m->up = true;
  m->connects++;
  m->down_since_ms = 0;
  m->error[0] = '\0';
  m->progress_ms = uv_now(m->b->loop);
  tt_backoff_reset(&m->backoff);
  TT_INFO(MOD, "collector connected", "target=%s after=%" PRId64, m->target, m->acked);
  uv_timer_start(&m->timer, tick_cb, SIEM_TICK_MS, SIEM_TICK_MS);
  siem_pump(m);
}

static void on_read(tt_tls_t *s, const uint8_t *data, size_t len) {
  (void)s, (void)data, (void)len; /* RFC 5425 collectors say nothing; whatever comes is ignored */
}

static void on_drain(tt_tls_t *s) { siem_pump(tt_tls_data(s)); }

static void on_close(tt_tls_t *s, int reason) {
  broker_siem_t *m = tt_tls_data(s);
  if (m->up) take_acks(m); /* what was acknowledged before the end still counts */
  bool was_up = m->up;
  m->s = NULL;
  m->up = false;
  /* What the collector did not acknowledge is read again and sent after the reconnect. */
  m->read_to = m->acked;
  m->qhead = m->qlen = m->qbytes = 0;
  uv_timer_stop(&m->timer);
  if (m->stopping) return;
  if (!m->down_since_ms) m->down_since_ms = broker_unix_ms();
  if (reason && !m->error[0]) set_error(m, was_up ? "connection lost" : "cannot connect", reason);
  uint32_t wait = tt_backoff_next(&m->backoff);
  TT_WARN(MOD, "collector unreachable", "target=%s err=%s retry_ms=%u acked=%" PRId64, m->target,
          tt_errname(reason), wait, m->acked);
  uv_timer_start(&m->timer, retry_cb, wait, 0);
}

static const tt_tls_cbs_t k_cbs = {.on_handshake = on_handshake, .on_read = on_read, .on_drain = on_drain,
                                   .on_close = on_close};

static void siem_connect(broker_siem_t *m) {
  tt_tls_limits_t lim = {.handshake_ms = 10000, .idle_ms = 0, .high_water = TT_SIEM_QUEUE_MAX,
                         .low_water = TT_SIEM_QUEUE_MAX / 4, .write_cap = 2 * TT_SIEM_QUEUE_MAX + TT_SIEM_MSG_MAX};
  m->error[0] = '\0';
  int rc = tt_tls_connect(m->ctx, m->b->loop, (const struct sockaddr *)&m->addr,
                          m->b->cfg.siem_server_name[0] ? m->b->cfg.siem_server_name : m->host, &lim, &k_cbs, m,
                          &m->s);
  if (rc) { /* refused at once (no route, no descriptor left): no on_close comes; retry */
    set_error(m, "cannot connect", rc);
    m->s = NULL;
    if (!m->down_since_ms) m->down_since_ms = broker_unix_ms();
    uint32_t wait = tt_backoff_next(&m->backoff);
    TT_WARN(MOD, "collector unreachable", "target=%s err=%s retry_ms=%u acked=%" PRId64, m->target, tt_errname(rc),
            wait, m->acked);
    uv_timer_start(&m->timer, retry_cb, wait, 0);
  }
}

/* ---- the broker's side ----------------------------------------------------------------------- */

int broker_siem_start(broker_t *b, char *err, size_t errlen) {
  const char *t = b->cfg.siem_target;
  if (errlen) err[0] = '\0';
  if (!t[0]) return 0;
  if (strncmp(t, "tls://", 6) != 0) {
    snprintf(err, errlen, "siem.target: want tls://HOST:PORT (RFC 5425 syslog over TLS), not %.80s", t);
    return TT_ECONFIG;
  }
  if (!b->cfg.siem_ca[0]) {
    snprintf(err, errlen, "siem.ca is required: the CA certificate the collector's certificate must chain to");
    return TT_ECONFIG;
  }
  broker_siem_t *m = calloc(1, sizeof(*m));
  if (!m) return TT_ENOMEM;
  m->b = b;
  snprintf(m->target, sizeof(m->target), "%s", t);
  int rc = tt_auditfmt_parse(b->cfg.siem_format, &m->fmt);
  if (rc) {
    snprintf(err, errlen, "siem.format: rfc5424, cef or jsonl, not %.40s", b->cfg.siem_format);
    goto fail;
  }
  rc = tt_addr_resolve(t + 6, &m->addr, m->host, sizeof(m->host));
  if (rc) {
    snprintf(err, errlen, "siem.target: cannot use %.80s: %s", t, tt_strerror(rc));
    goto fail;
  }
  tt_tls_ctx_opts_t o = {.ca_file = b->cfg.siem_ca, .foreign = true};
  rc = tt_tls_ctx_new(&m->ctx, &o, err, errlen);
  if (rc) goto fail;
  tt_backoff_init(&m->backoff, SIEM_RETRY_MIN_MS, SIEM_RETRY_MAX_MS, (uint64_t)broker_unix_ms());
  uv_timer_init(b->loop, &m->timer);
  m->timer.data = m;
  m->down_since_ms = broker_unix_ms();
  cursor_req_t *x = calloc(1, sizeof(*x));
  if (!x) {
    rc = TT_ENOMEM;
    goto fail_timer;
  }
  x->req.run = cursor_get_run;
  x->req.done = cursor_get_done;
  x->req.lane = STORE_LANE_READ;
  x->req.what = "siem_cursor";
  x->m = m;
  snprintf(x->target, sizeof(x->target), "%s", m->target);
  rc = store_svc_submit(b->svc, &x->req);
  if (rc) {
    free(x);
    snprintf(err, errlen, "siem: the store will not take a request: %s", tt_strerror(rc));
    goto fail_timer;
  }
  b->siem = m;
  return 0;
fail_timer:
  if (!err[0]) snprintf(err, errlen, "siem: %s", tt_strerror(rc));
  uv_close((uv_handle_t *)&m->timer, NULL);
  tt_tls_ctx_free(m->ctx);
  m->ctx = NULL;
  m->stopping = true;
  b->siem = m; /* its timer is the loop's until closed; broker_siem_free frees m */
  return rc;
fail:
  tt_tls_ctx_free(m->ctx);
  free(m);
  return rc;
}

void broker_siem_stop(broker_t *b) {
  broker_siem_t *m = b->siem;
  if (!m || m->stopping) return;
  if (m->up) take_acks(m);
  persist(m); /* where the next start begins (its completion comes before the store stops) */
  m->stopping = true;
  if (m->s) tt_tls_close(m->s, 0);
  uv_close((uv_handle_t *)&m->timer, NULL);
}

void broker_siem_free(broker_t *b) {
  broker_siem_t *m = b->siem;
  if (!m) return;
  tt_tls_ctx_free(m->ctx);
  free(m);
  b->siem = NULL;
}

void broker_siem_status(broker_t *b, broker_siem_status_t *out) {
  broker_siem_t *m = b->siem;
  memset(out, 0, sizeof(*out));
  if (!m) return;
  int64_t head = 0;
  uint8_t h[32];
  store_svc_audit_head(b->svc, &head, h);
  snprintf(out->target, sizeof(out->target), "%s", m->target);
  out->format = tt_auditfmt_name(m->fmt);
  out->up = m->up;
  out->acked = m->acked;
  out->head = head;
  out->down_since_ms = m->down_since_ms;
  out->connects = m->connects;
  out->sent = m->sent;
  snprintf(out->error, sizeof(out->error), "%s", m->error);
}
