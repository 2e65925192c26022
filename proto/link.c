/* One peer connection: TLS stream + frame reader + channel mux + writer. */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include "tt/limits.h"
#include "tt/link.h"
#include "tt/log.h"

/* Frames are batched into one TLS write of at most this many bytes. */
#define LINK_BATCH (64u * 1024u)

static int link_frame_cb(void *ctx, const tt_frame_t *f) {
  tt_link_t *l = ctx;
  if (l->closing) return TT_ECLOSED;
  l->frames_in++;
  if (!tt_kind_is_control(f->kind)) {
    if (!l->authed) return TT_EPROTO; /* no channels before Hello is accepted */
    return tt_mux_input(&l->mux, f);
  }
  tt_msg_t msg;
  int rc = tt_msg_unpack(&msg, f->kind, f->body, f->len,
                         l->authed ? TT_MSG_BUDGET : TT_MSG_BUDGET_PREAUTH);
  if (rc) return rc;
  switch (f->kind) {
  case TT_K_PING: {
    if (!l->authed) { rc = TT_EPROTO; break; }
    Tether__Pong pong = TETHER__PONG__INIT;
    pong.nonce = ((Tether__Ping *)msg.m)->nonce;
    rc = tt_mux_control(&l->mux, TT_K_PONG, &pong.base);
    break;
  }
  case TT_K_PONG: {
    if (!l->authed) { rc = TT_EPROTO; break; }
    l->last_pong_ms = uv_now(tt_tls_loop(l->tls));
    uint64_t nonce = ((Tether__Pong *)msg.m)->nonce, now = uv_hrtime();
    if (tt_cc_is_probe(nonce)) {
      tt_cc_ack(&l->cc, nonce, now);
    } else if (l->ping_out && nonce == l->ping_nonce) {
      /* Pongs come in order, after every frame sent before the Ping was read: this one is
       * a round trip through whatever queues there are, as a user's keystroke sees it. */
      l->ping_out = false;
      l->rtt_ns = now > l->ping_sent_ns ? now - l->ping_sent_ns : 1;
      if (l->cbs->on_rtt) l->cbs->on_rtt(l, l->rtt_ns);
    }
    break;
  }
  default:
    rc = l->cbs->on_control ? l->cbs->on_control(l, f->kind, msg.m) : TT_EKIND;
  }
  tt_msg_free(&msg);
  return rc;
}

static void link_on_read(tt_tls_t *s, const uint8_t *data, size_t len) {
  tt_link_t *l = tt_tls_data(s);
  if (l->closing) return;
  int rc = tt_frame_reader_feed(&l->rd, data, len, link_frame_cb, l);
  if (rc) {
    if (!l->closing) {
      TT_WARN("link", "closing peer on bad input", "peer=%s err=%s", tt_tls_peer_addr(s),
              tt_errname(rc));
      tt_link_close(l, rc, tt_strerror(rc));
    }
    return;
  }
  tt_frame_reader_shrink(&l->rd);
  tt_link_flush(l);
}

static void link_on_handshake(tt_tls_t *s) {
  tt_link_t *l = tt_tls_data(s);
  if (l->cbs->on_up) l->cbs->on_up(l);
  if (!l->closing) tt_link_flush(l);
}

static void link_on_drain(tt_tls_t *s) { tt_link_flush(tt_tls_data(s)); }

static void link_on_close(tt_tls_t *s, int reason) {
  tt_link_t *l = tt_tls_data(s);
  l->closing = true;
  tt_defer_cancel(&l->flush_later);
  tt_mux_destroy(&l->mux);
  tt_frame_reader_free(&l->rd);
  int why = l->close_reason ? l->close_reason : reason;
  l->tls = NULL;
  if (l->cbs->on_down) l->cbs->on_down(l, why);
  free(l);
}

static bool link_on_accept(tt_tls_t *s, const struct sockaddr *peer) {
  tt_link_t *l = tt_tls_data(s);
  return !l->cbs->on_accept || l->cbs->on_accept(l, peer);
}

static const tt_tls_cbs_t link_tls_cbs = {
    .on_accept = link_on_accept,
    .on_handshake = link_on_handshake,
    .on_read = link_on_read,
    .on_drain = link_on_drain,
    .on_close = link_on_close,
};

static tt_link_t *link_new(const tt_link_cbs_t *cbs, void *data, bool opener_odd) {
  tt_link_t *l = calloc(1, sizeof(*l));
  if (!l) return NULL;
  l->cbs = cbs;
  l->data = data;
  tt_frame_reader_init(&l->rd, TT_FRAME_MAX_BODY_PREAUTH);
  tt_mux_init(&l->mux, opener_odd, &cbs->mux, l);
  l->mux.budget = TT_MSG_BUDGET_PREAUTH;
  tt_cc_init(&l->cc);
  return l;
}

int tt_link_accept(tt_link_t **out, tt_tls_ctx_t *ctx, uv_stream_t *server,
                   const tt_tls_limits_t *lim, const tt_link_cbs_t *cbs, void *data) {
  *out = NULL;
  tt_link_t *l = link_new(cbs, data, false);
  if (!l) return TT_ENOMEM;
  int rc = tt_tls_accept(ctx, server, lim, &link_tls_cbs, l, &l->tls);
  if (rc) {
    tt_mux_destroy(&l->mux);
    tt_frame_reader_free(&l->rd);
    free(l);
    return rc;
  }
  *out = l;
  return 0;
}

int tt_link_connect(tt_link_t **out, tt_tls_ctx_t *ctx, uv_loop_t *loop, const struct sockaddr *addr,
                    const char *server_name, const tt_tls_limits_t *lim,
                    const tt_link_cbs_t *cbs, void *data) {
  *out = NULL;
  tt_link_t *l = link_new(cbs, data, true);
  if (!l) return TT_ENOMEM;
  int rc = tt_tls_connect(ctx, loop, addr, server_name, lim, &link_tls_cbs, l, &l->tls);
  if (rc) {
    tt_mux_destroy(&l->mux);
    tt_frame_reader_free(&l->rd);
    free(l);
    return rc;
  }
  *out = l;
  return 0;
}

void tt_link_set_authed(tt_link_t *l) {
  l->authed = true;
  l->rd.max_body = TT_FRAME_MAX_BODY;
  l->mux.budget = TT_MSG_BUDGET;
}

/* A probe follows the bulk bytes it covers (control frames go first in the next pull). */
static void link_probe(tt_link_t *l) {
  uint64_t now = uv_hrtime();
  if (!l->authed || !tt_cc_want_probe(&l->cc, now)) return;
  Tether__Ping p = TETHER__PING__INIT;
  p.nonce = tt_cc_nonce(&l->cc);
  if (tt_mux_control(&l->mux, TT_K_PING, &p.base) == 0) tt_cc_probe(&l->cc, now);
}

static void link_flush_now(tt_link_t *l) {
  static _Thread_local tt_buf_t batch = {.max = LINK_BATCH + TT_FRAME_HDR + TT_FRAME_MAX_BODY};
  if (l->closing || l->in_flush || !l->tls || !tt_tls_established(l->tls)) return;
  l->in_flush = true;
  link_probe(l);
  while (!l->closing && tt_mux_has_output(&l->mux)) {
    size_t queued = tt_tls_queued(l->tls);
    if (queued >= TT_SOCKET_QUEUE_CAP) break;
    size_t room = TT_SOCKET_QUEUE_CAP - queued;
    uint32_t bulk_room = tt_cc_room(&l->cc, uv_hrtime());
    l->mux.bulk_room = bulk_room;
    tt_mux_pull(&l->mux, &batch, room < LINK_BATCH ? room : LINK_BATCH);
    if (batch.len == 0) break;
    uint32_t bulk = bulk_room - (uint32_t)l->mux.bulk_room;
    if (bulk) tt_cc_sent(&l->cc, bulk);
    /* The probe that covers these bytes rides in the same write: a write of its own per
     * 64 KiB was a third of a bulk sender's system calls. */
    link_probe(l);
    if (l->mux.ctrl.len) tt_mux_pull(&l->mux, &batch, 0);
    int rc = tt_tls_write(l->tls, tt_buf_head(&batch), batch.len);
    tt_buf_reset(&batch);
    if (rc) {
      l->in_flush = false;
      tt_link_close(l, rc, "write failed");
      return;
    }
  }
  l->in_flush = false;
}

static void link_flush_deferred(tt_deferred_t *d) {
  link_flush_now((tt_link_t *)((char *)d - offsetof(tt_link_t, flush_later)));
}

void tt_link_flush(tt_link_t *l) {
  if (l->closing || l->in_flush || !l->tls) return;
  if (!tt_defer(&l->flush_later, link_flush_deferred)) link_flush_now(l);
}

int tt_link_send(tt_link_t *l, uint8_t kind, const ProtobufCMessage *msg) {
  if (l->closing) return TT_ECLOSED;
  int rc = tt_mux_control(&l->mux, kind, msg);
  if (rc) return rc;
  tt_link_flush(l);
  return 0;
}

int tt_link_ping(tt_link_t *l, uint64_t nonce) {
  Tether__Ping p = TETHER__PING__INIT;
  p.nonce = nonce;
  int rc = tt_link_send(l, TT_K_PING, &p.base);
  if (rc == 0) {
    l->ping_nonce = nonce;
    l->ping_sent_ns = uv_hrtime();
    l->ping_out = true;
  }
  return rc;
}

void tt_link_close(tt_link_t *l, int code, const char *why) { tt_link_refuse(l, code, why, 0); }

void tt_link_refuse(tt_link_t *l, int code, const char *why, uint32_t retry_after_ms) {
  if (l->closing || !l->tls) return;
  /* Whatever is queued (a Welcome refused, a last reply) goes before the Error frame. */
  tt_defer_cancel(&l->flush_later);
  link_flush_now(l);
  l->closing = true;
  l->close_reason = code;
  if (code <= -10000 && tt_tls_established(l->tls)) {
    Tether__Error e = TETHER__ERROR__INIT;
    e.code = tt_err_to_wire(code);
    e.message = tt_text(why ? why : tt_strerror(code));
    e.retry_after_ms = retry_after_ms;
    tt_buf_t b;
    tt_buf_init(&b, TT_FRAME_HDR + TT_FRAME_MAX_BODY_PREAUTH);
    /* Best effort: a peer that is not reading does not get to hear why. */
    if (tt_msg_encode(&b, TT_K_ERROR, 0, &e.base) == 0 && tt_tls_write(l->tls, tt_buf_head(&b), b.len))
      TT_DEBUG("link", "error frame not sent", "peer=%s", tt_tls_peer_addr(l->tls));
    tt_buf_free(&b);
  }
  tt_tls_close(l->tls, code);
}

X509 *tt_link_peer_cert(const tt_link_t *l) { return l->tls ? tt_tls_peer_cert(l->tls) : NULL; }
const char *tt_link_peer_addr(const tt_link_t *l) { return l->tls ? tt_tls_peer_addr(l->tls) : "?"; }
