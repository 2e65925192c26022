/* A link from the gateway to the broker: mTLS with the gateway's certificate, Hello and
 * Welcome, then requests matched to their answers by id. The control link and every SSH
 * connection's link are one of these. */
#include <stdio.h>
#include <string.h>
#include "sshd.h"
#include "tt/cert.h"
#include "tt/log.h"
#include "tt/msg.h"

static void fail_pending(blink_t *b, const char *why) {
  for (size_t i = 0; i < SSHD_PENDING_MAX; i++) {
    if (!b->pending[i].fn) continue;
    blink_answer_fn fn = b->pending[i].fn;
    void *arg = b->pending[i].arg;
    b->pending[i].fn = NULL;
    fn(b, arg, NULL, why);
  }
}

void blink_error_text(const Tether__Error *e, char *out, size_t cap) {
  if (e->message.len && !tt_text_copy(out, cap, e->message)) return;
  snprintf(out, cap, "%s", tt_strerror(tt_err_from_wire(e->code)));
}

static void on_up(tt_link_t *l) {
  blink_t *b = l->data;
  if (!b) return;
  tt_identity_t id, me;
  X509 *x = tt_link_peer_cert(l);
  if (!x || tt_cert_identity(x, &id) || id.role != TT_ROLE_BROKER) {
    snprintf(b->why, sizeof(b->why), "%s is not a Tether broker", b->d->cfg.broker);
    tt_link_close(l, TT_ECERT, "not a broker");
    return;
  }
  X509 *mine = SSL_CTX_get0_certificate(tt_tls_ctx_ssl(b->d->tls));
  if (!mine || tt_cert_identity(mine, &me)) {
    snprintf(b->why, sizeof(b->why), "the gateway's certificate carries no Tether identity");
    tt_link_close(l, TT_ECERT, "no identity");
    return;
  }
  Tether__Hello h = TETHER__HELLO__INIT;
  h.proto_version = TT_PROTO_VERSION;
  h.role = (Tether__Role)me.role;
  h.software_version = tt_text(TT_VERSION);
  h.hostname = tt_text("tether-sshd");
  if (tt_link_send(l, TT_K_HELLO, &h.base)) tt_link_close(l, TT_EIO, "cannot send hello");
}

static void on_answer(blink_t *b, const Tether__Response *r) {
  for (size_t i = 0; i < SSHD_PENDING_MAX; i++) {
    if (!b->pending[i].fn || b->pending[i].id != r->id) continue;
    blink_answer_fn fn = b->pending[i].fn;
    void *arg = b->pending[i].arg;
    b->pending[i].fn = NULL;
    fn(b, arg, r, NULL);
    return;
  }
  /* An answer for an owner that went away meanwhile: nothing waits for it. */
}

static int on_control(tt_link_t *l, uint8_t kind, const ProtobufCMessage *m) {
  blink_t *b = l->data;
  if (!b) return 0;
  if (kind == TT_K_WELCOME && !b->welcomed) {
    const Tether__Welcome *w = (const Tether__Welcome *)m;
    if (w->proto_version != TT_PROTO_VERSION) {
      snprintf(b->why, sizeof(b->why), "the broker speaks protocol %u, this gateway %u", w->proto_version,
               TT_PROTO_VERSION);
      return TT_EPROTO;
    }
    b->welcomed = true;
    tt_link_set_authed(l);
    if (w->idle_timeout_ms) tt_tls_set_idle(l->tls, w->idle_timeout_ms);
    if (b->cbs->on_ready) b->cbs->on_ready(b);
    return 0;
  }
  if (kind == TT_K_RESPONSE && b->welcomed) {
    on_answer(b, (const Tether__Response *)m);
    return 0;
  }
  if (kind == TT_K_ERROR) {
    blink_error_text((const Tether__Error *)m, b->why, sizeof(b->why));
    return 0; /* the broker closes the link next */
  }
  return TT_EKIND;
}

static void on_down(tt_link_t *l, int reason) {
  blink_t *b = l->data;
  if (!b) return;
  b->link = NULL;
  if (!b->why[0]) {
    if (reason == TT_ECERT) snprintf(b->why, sizeof(b->why), "the broker did not accept the gateway's certificate");
    else if (reason == 0 || reason == UV_EOF) snprintf(b->why, sizeof(b->why), "the broker closed the connection");
    else snprintf(b->why, sizeof(b->why), "cannot talk to the broker at %s: %s", b->d->cfg.broker, tt_strerror(reason));
  }
  fail_pending(b, b->why);
  if (b->cbs->on_down) b->cbs->on_down(b, b->why);
}

/* Channels the broker opens towards us: none are expected. */
static void refuse_open(tt_mux_t *m, tt_chan_t *ch, const Tether__ChannelOpen *msg) {
  (void)msg;
  (void)tt_mux_reject(m, ch, TT_EKIND, "the gateway opens no channels on request");
}

static const tt_link_cbs_t ctl_cbs = {
    .on_up = on_up,
    .on_control = on_control,
    .on_down = on_down,
    .mux = {.on_open = refuse_open},
};
static tt_link_cbs_t chan_cbs; /* the same, with chan.c's channel callbacks */

int blink_open(sshd_t *d, blink_t *b, const blink_cbs_t *cbs, void *data) {
  memset(b, 0, sizeof(*b));
  b->d = d;
  b->cbs = cbs;
  b->data = data;
  const tt_link_cbs_t *lc = &ctl_cbs;
  if (cbs->mux) {
    chan_cbs = ctl_cbs;
    chan_cbs.mux = *cbs->mux;
    if (!chan_cbs.mux.on_open) chan_cbs.mux.on_open = refuse_open;
    lc = &chan_cbs;
  }
  tt_tls_limits_t lim = {
      .handshake_ms = (uint64_t)d->cfg.timeout_ms,
      .idle_ms = (uint64_t)d->cfg.timeout_ms, /* until Welcome; then the broker's idle timeout */
      .high_water = TT_SOCKET_QUEUE_CAP,
      .low_water = TT_SOCKET_QUEUE_CAP / 4,
      .write_cap = TT_SOCKET_WRITE_CAP,
  };
  const char *sn = d->cfg.server_name[0] ? d->cfg.server_name : d->broker_host;
  return tt_link_connect(&b->link, d->tls, d->loop, (const struct sockaddr *)&d->broker_addr, sn, &lim, lc, b);
}

int blink_request(blink_t *b, Tether__Request *r, blink_answer_fn fn, void *arg) {
  if (!b->link || !b->welcomed || b->link->closing) return TT_ECLOSED;
  size_t slot = SSHD_PENDING_MAX;
  for (size_t i = 0; i < SSHD_PENDING_MAX && slot == SSHD_PENDING_MAX; i++)
    if (!b->pending[i].fn) slot = i;
  if (slot == SSHD_PENDING_MAX) return TT_EFULL;
  r->id = ++b->last_id;
  if (r->id == 0) r->id = ++b->last_id;
  int rc = tt_link_send(b->link, TT_K_REQUEST, &r->base);
  if (rc) return rc;
  b->pending[slot].id = r->id;
  b->pending[slot].fn = fn;
  b->pending[slot].arg = arg;
  return 0;
}

void blink_forget(blink_t *b, void *arg) {
  for (size_t i = 0; i < SSHD_PENDING_MAX; i++)
    if (b->pending[i].fn && b->pending[i].arg == arg) b->pending[i].fn = NULL;
}

void blink_close(blink_t *b, const char *why) {
  for (size_t i = 0; i < SSHD_PENDING_MAX; i++) b->pending[i].fn = NULL;
  if (!b->link) return;
  tt_link_t *l = b->link;
  b->link = NULL;
  l->data = NULL; /* on_down and on_control see nothing of b from now on */
  tt_link_close(l, 0, why);
}
