/* Broker connections: accept, identify (certificate + Hello), answer requests, heartbeat. */
#include <stdlib.h>
#include <time.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <sys/socket.h>
#include <string.h>
#include "broker.h"
#include "tt/log.h"
#include "tt/msg.h"

static void unready_remove(broker_conn_t *c) {
  broker_t *b = c->b;
  if (!c->uprev && b->unready != c) return; /* not on the list */
  if (c->uprev) c->uprev->unext = c->unext;
  else b->unready = c->unext;
  if (c->unext) c->unext->uprev = c->uprev;
  c->uprev = c->unext = NULL;
}

static void conn_unlink(broker_conn_t *c) {
  broker_t *b = c->b;
  unready_remove(c);
  if (c->prev) c->prev->next = c->next;
  else b->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  b->nconns--;
  if (c->state == BROKER_CONN_READY && c->id.role == TT_ROLE_AGENT) b->nagents--;
  broker_gateway_conn_gone(c);
}

static void refused_close_cb(uv_handle_t *h) { free(h); }

/* At the connection limit a newcomer costs us nothing but an accept and a close: no TLS
 * state is made for it. It sees a reset and backs off. */
static void refuse_at_accept(broker_t *b, uv_stream_t *server) {
  uv_tcp_t *t = malloc(sizeof(*t));
  if (!t) return;
  uv_tcp_init(b->loop, t);
  if (uv_accept(server, (uv_stream_t *)t) == 0) {
    struct linger lg = {1, 0}; /* RST, no TIME_WAIT kept on our side */
    uv_os_fd_t fd;
    if (uv_fileno((uv_handle_t *)t, &fd) == 0) setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
  }
  uv_close((uv_handle_t *)t, refused_close_cb);
}

void broker_on_connection(uv_stream_t *server, int status) {
  broker_t *b = server->data;
  if (status < 0) {
    TT_WARN("broker", "accept failed", "err=%s", uv_err_name(status));
    return;
  }
  /* At max_handshakes a connection that has sent nothing makes room for the newcomer (the
   * front door decides once it knows the newcomer's address); with none, or at
   * max_connections, the newcomer is reset before anything is made for it. */
  bool full = (int64_t)b->nconns >= b->cfg.max_connections;
  if (full || broker_frontdoor_full(b)) {
    static uint64_t last_warn;
    uint64_t now = uv_now(b->loop);
    if (now - last_warn >= 1000) {
      TT_WARN("broker", "refusing connections", "reason=%s limit=%lld",
              full ? "max_connections" : "max_handshakes",
              (long long)(full ? b->cfg.max_connections : b->cfg.max_handshakes));
      last_warn = now;
    }
    refuse_at_accept(b, server);
    return;
  }
  broker_conn_t *c = calloc(1, sizeof(*c));
  if (!c) return;
  c->b = b;
  tt_wheel_entry_init(&c->idle);
  int rc = tt_link_accept(&c->link, b->tls, server, &b->limits, &broker_link_cbs, c);
  if (rc) {
    /* TT_EDENIED: the front door refused it (and counts it for its log line). */
    if (rc != TT_EDENIED) TT_WARN("broker", "accept failed", "err=%s", tt_errname(rc));
    broker_frontdoor_conn_gone(c);
    free(c);
    return;
  }
  c->next = b->conns;
  if (b->conns) b->conns->prev = c;
  b->conns = c;
  c->unext = b->unready;
  if (b->unready) b->unready->uprev = c;
  b->unready = c;
  b->nconns++;
  b->accepted_since_trim++;
  c->accepted_ms = uv_now(b->loop);
  snprintf(c->addr, sizeof(c->addr), "%s", tt_link_peer_addr(c->link));
}

static bool conn_on_accept(tt_link_t *l, const struct sockaddr *peer) {
  return broker_frontdoor_admit(l->data, peer);
}

static void conn_on_up(tt_link_t *l) {
  broker_conn_t *c = l->data;
  broker_t *b = c->b;
  if (tt_tls_is_enroll(l->tls)) {
    /* No identity yet: one EnrollRequest under the pre-authentication limits, then out. */
    bool ok = broker_frontdoor_enroll_admit(c);
    broker_frontdoor_handshake_done(c);
    if (!ok) {
      tt_link_close(l, TT_EBUSY, "too many enrollments at once from your address or in all, retry later");
      return;
    }
    c->state = BROKER_CONN_ENROLL;
    return;
  }
  broker_frontdoor_handshake_done(c);
  X509 *x = tt_link_peer_cert(l);
  int rc = x ? tt_cert_identity(x, &c->id) : TT_ECERT;
  if (rc || c->id.role == TT_ROLE_BROKER || c->id.role == TT_ROLE_NONE) {
    /* Refusals are written (and logged) up to the address's share; the rest are counted. */
    if (broker_frontdoor_audit_ok(b, c)) {
      TT_WARN("broker", "refusing peer", "peer=%s reason=\"certificate has no usable role or name\"", c->addr);
      broker_audit(b, "broker", "refuse", "", "reason", "certificate has no usable role or name", "address",
                   c->addr, AUDIT_END);
    }
    tt_link_close(l, TT_EROLE, "certificate carries no client role");
    return;
  }
  /* Revocation is checked at every handshake, resumed or not. */
  store_revoke_kind_t kind = c->id.role == TT_ROLE_AGENT ? STORE_REVOKE_DEVICE : STORE_REVOKE_PERSON;
  if (revoked_has(b, kind, c->id.name)) {
    if (broker_frontdoor_audit_ok(b, c)) {
      TT_WARN("broker", "refusing peer", "peer=%s name=%s reason=revoked", c->addr, c->id.name);
      broker_audit(b, c->id.name, "refuse", c->id.name, "reason", "revoked", "address", c->addr, AUDIT_END);
    }
    tt_link_close(l, TT_EDENIED, "this identity has been revoked");
    return;
  }
  /* The certificate's own expiry ends the connection too, not only the next handshake. */
  struct tm tm;
  if (ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm) == 1) {
    int64_t left = (int64_t)timegm(&tm) * 1000 - (int64_t)broker_unix_ms();
    c->expires_at = uv_now(b->loop) + (uint64_t)(left > 0 ? left : 0);
  }
  c->state = BROKER_CONN_HELLO;
  TT_DEBUG("broker", "tls up", "peer=%s role=%s name=%s resumed=%d", c->addr, tt_role_name(c->id.role),
           c->id.name, (int)tt_tls_resumed(l->tls));
}

broker_conn_t *broker_find_agent(broker_t *b, const char *device_id) { return registry_get(b, device_id); }

static uint32_t random_u32(void) {
  static uint64_t x = 0;
  if (x == 0) x = uv_hrtime() | 1u;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return (uint32_t)(x >> 32);
}

/* Token bucket over agent Hellos: max_hello_rate per second, bursts of one second's worth. */
static bool hello_admit(broker_t *b) {
  if (b->cfg.max_hello_rate <= 0) return true;
  uint64_t now = uv_now(b->loop);
  double rate = (double)b->cfg.max_hello_rate;
  if (b->hello_refill_ms == 0) b->hello_tokens = rate;
  else b->hello_tokens += rate * (double)(now - b->hello_refill_ms) / 1000.0;
  if (b->hello_tokens > rate) b->hello_tokens = rate;
  b->hello_refill_ms = now;
  if (b->hello_tokens < 1.0) return false;
  b->hello_tokens -= 1.0;
  return true;
}

/* What a device reported at connect (hostname, address, version) is recorded then; at
 * disconnect only its last-seen time moves, so a replaced connection going down never
 * writes its stale report over the newer one's. */
typedef struct {
  store_req_t req;
  bool connect;
  int64_t now_ms;
  char id[STORE_NAME_MAX], hostname[STORE_TEXT_MAX], addr[STORE_TEXT_MAX], version[STORE_NAME_MAX];
} seen_req_t;

static int seen_run(broker_store_t *s, store_req_t *r) {
  seen_req_t *x = (seen_req_t *)r;
  if (!x->connect) return store_device_last_seen(s, x->id, x->now_ms);
  return store_device_seen(s, x->id, x->hostname, x->addr, x->version, x->now_ms);
}

static void device_seen_later(broker_t *b, const broker_conn_t *c, bool connect) {
  seen_req_t *x = calloc(1, sizeof(*x));
  if (!x) {
    TT_ERROR("broker", "device not recorded", "device=%s err=%s", c->id.name, tt_errname(TT_ENOMEM));
    return;
  }
  x->req.run = seen_run;
  x->req.what = connect ? "device_seen" : "device_last_seen";
  x->connect = connect;
  x->now_ms = (int64_t)broker_unix_ms();
  snprintf(x->id, sizeof(x->id), "%s", c->id.name);
  snprintf(x->hostname, sizeof(x->hostname), "%s", c->hostname);
  snprintf(x->addr, sizeof(x->addr), "%s", c->addr);
  snprintf(x->version, sizeof(x->version), "%s", c->version);
  broker_store_later(b, &x->req);
}

static int refuse(broker_conn_t *c, int code, const char *why) {
  if (broker_frontdoor_audit_ok(c->b, c)) {
    TT_WARN("broker", "refusing peer", "peer=%s name=%s reason=\"%s\"", c->addr, c->id.name, why);
    broker_audit(c->b, c->id.name, "refuse", c->id.name, "reason", why, "address", c->addr, AUDIT_END);
  }
  tt_link_close(c->link, code, why);
  return 0;
}

static int on_hello(broker_conn_t *c, const Tether__Hello *h) {
  broker_t *b = c->b;
  char why[160];
  if (h->proto_version != TT_PROTO_VERSION) {
    snprintf(why, sizeof(why), "protocol version %u not supported; this broker speaks %u",
             h->proto_version, TT_PROTO_VERSION);
    return refuse(c, TT_EVERSION, why);
  }
  if ((int)h->role != (int)c->id.role) {
    snprintf(why, sizeof(why), "hello says role %s but the certificate says %s",
             tt_role_name((tt_role_t)h->role), tt_role_name(c->id.role));
    return refuse(c, TT_EROLE, why);
  }
  if (tt_text_copy(c->hostname, sizeof(c->hostname), h->hostname) ||
      tt_text_copy(c->version, sizeof(c->version), h->software_version) ||
      tt_text_copy(c->arch, sizeof(c->arch), h->arch))
    return refuse(c, TT_ETEXT, "hostname, version or architecture is not valid text");
  c->caps = h->capabilities;
  /* Told to people who wait for the answer; an agent's own bound is the protocol's. */
  c->consent_timeout_ms = h->consent_timeout_ms <= TT_CONSENT_TIMEOUT_MAX_MS ? h->consent_timeout_ms : 0;

  /* Overloaded moment (a Hello rate over max_hello_rate, or the store thread far behind):
   * tell the device when to come back, spread over a window that grows with how many were
   * turned away in the last second. People are never told. */
  if (c->id.role == TT_ROLE_AGENT &&
      (store_svc_backlog(b->svc) > TT_STORE_QUEUE_MAX / 2 || !hello_admit(b))) {
    uint32_t rate = b->cfg.max_hello_rate > 0 ? (uint32_t)b->cfg.max_hello_rate : 1000u;
    uint32_t spread = 1000u * (1u + b->busy_last_sec / rate);
    uint32_t retry = 1000u + (uint32_t)(random_u32() % spread);
    b->busy_this_sec++;
    tt_link_refuse(c->link, TT_EBUSY, "broker busy, retry later", retry);
    return 0;
  }
  if (c->id.role == TT_ROLE_AGENT) {
    broker_conn_t *old = broker_find_agent(b, c->id.name);
    if (old) {
      TT_INFO("broker", "agent replaced by a newer connection", "device=%s old=%s new=%s",
              c->id.name, old->addr, c->addr);
      /* Two hosts with one identity (a cloned VM) would otherwise replace each other at
       * every backoff step: the loser waits a while. */
      tt_link_refuse(old->link, TT_ECLOSED, "replaced by a newer connection from the same device",
                     TT_REPLACED_RETRY_MS);
    }
    device_seen_later(b, c, true);
    registry_add(b, c);
    b->nagents++;
  }
  broker_person_seen(b, c, true); /* technicians and admins: known from now on */
  Tether__Welcome w = TETHER__WELCOME__INIT;
  w.proto_version = TT_PROTO_VERSION;
  w.broker_version = tt_text(TT_VERSION);
  w.capabilities = TETHER__CAPABILITY__CAP_ZSTD;
  w.heartbeat_ms = (uint32_t)b->cfg.heartbeat_ms;
  w.idle_timeout_ms = (uint32_t)b->cfg.idle_timeout_ms;
  w.identity = tt_text(c->id.name);
  w.server_time_ms = (uint64_t)broker_unix_ms();
  c->state = BROKER_CONN_READY;
  unready_remove(c);
  tt_wheel_entry_init(&c->idle);
  uint64_t idle_due_at = tt_tls_last_read(c->link->tls) + (uint64_t)b->cfg.idle_timeout_ms;
  tt_wheel_add(&b->wheel, &c->idle, c->expires_at && c->expires_at < idle_due_at ? c->expires_at : idle_due_at);
  c->connected_unix_ms = broker_unix_ms();
  tt_link_set_authed(c->link);
  broker_audit(b, c->id.name, "connect", c->id.name, "role", tt_role_name(c->id.role), "address", c->addr,
               "resumed", tt_tls_resumed(c->link->tls) ? "yes" : "no", "hostname", c->hostname, "version",
               c->version, AUDIT_END);
  char qh[TT_TEXT_MAX * 4 + 1], qv[TT_NAME_MAX * 4 + 1];
  TT_INFO("broker", "peer connected", "peer=%s role=%s name=%s hostname=\"%s\" version=\"%s\"", c->addr,
          tt_role_name(c->id.role), c->id.name, tt_log_quote(qh, sizeof(qh), c->hostname, strlen(c->hostname)),
          tt_log_quote(qv, sizeof(qv), c->version, strlen(c->version)));
  int rc = tt_link_send(c->link, TT_K_WELCOME, &w.base);
  if (rc == 0 && c->id.role == TT_ROLE_AGENT) broker_rollout_agent_up(c);
  return rc;
}

static int conn_on_control(tt_link_t *l, uint8_t kind, const ProtobufCMessage *m) {
  broker_conn_t *c = l->data;
  if (c->state == BROKER_CONN_ENROLL) {
    if (kind != TT_K_REQUEST) return TT_EPROTO;
    return broker_on_request(c, (const Tether__Request *)m);
  }
  if (c->state == BROKER_CONN_HELLO) {
    if (kind != TT_K_HELLO) return TT_EPROTO;
    return on_hello(c, (const Tether__Hello *)m);
  }
  if (c->state != BROKER_CONN_READY) return TT_EPROTO;
  switch (kind) {
  case TT_K_REQUEST:
    return broker_on_request(c, (const Tether__Request *)m);
  case TT_K_RESPONSE: /* answers to our requests: consent, session-end notices */
    if (c->id.role != TT_ROLE_AGENT) return TT_EKIND;
    if (broker_upgrade_answer(c, (const Tether__Response *)m)) return 0;
    if (c->policy_req && ((const Tether__Response *)m)->id == c->policy_req) {
      broker_policy_pushed(c, (const Tether__Response *)m);
      return 0;
    }
    return broker_agent_response(c, (const Tether__Response *)m);
  case TT_K_ERROR: {
    const Tether__Error *e = (const Tether__Error *)m;
    char msg[TT_TEXT_MAX * 4 + 1];
    tt_log_quote(msg, sizeof(msg), e->message.data, e->message.len);
    TT_INFO("broker", "peer reported an error", "peer=%s name=%s code=%d msg=\"%s\"", c->addr,
            c->id.name, (int)e->code, msg);
    tt_link_close(l, 0, NULL);
    return 0;
  }
  default:
    return TT_EKIND; /* Hello twice, Welcome from a client, ... */
  }
}

static void conn_on_down(tt_link_t *l, int reason) {
  broker_conn_t *c = l->data;
  broker_t *b = c->b;
  if (c->state == BROKER_CONN_READY) {
    TT_INFO("broker", "peer disconnected", "peer=%s role=%s name=%s reason=%s", c->addr,
            tt_role_name(c->id.role), c->id.name, reason ? tt_errname(reason) : "closed");
    if (c->id.role == TT_ROLE_AGENT) {
      registry_remove(b, c);
      device_seen_later(b, c, false);
    }
    broker_person_seen(b, c, false);
    if (!b->stopping || c->id.role != TT_ROLE_AGENT)
      broker_audit(b, c->id.name, "disconnect", c->id.name, "reason", reason ? tt_errname(reason) : "closed",
                   AUDIT_END);
    /* Its channels were closed before this; its sessions end (an agent's) or stop waiting
     * for it (a console's). */
    broker_sessions_conn_down(c);
  } else {
    TT_INFO("broker", "connection refused or dropped before hello", "peer=%s reason=%s", c->addr,
            reason ? tt_errname(reason) : "closed");
  }
  broker_frontdoor_conn_gone(c);
  broker_inv_conn_gone(c);
  broker_assets_conn_gone(c);
  broker_rollout_conn_down(c);
  if (c->state == BROKER_CONN_READY) tt_wheel_remove(&b->wheel, &c->idle);
  conn_unlink(c);
  c->link = NULL;
  if (c->work) c->gone = true; /* a signing job still points here: it frees c */
  else free(c);
}

bool broker_conn_work_done(broker_conn_t *c) {
  c->work--;
  if (!c->gone) return true;
  if (c->work == 0) free(c);
  return false;
}

void broker_heartbeat_cb(uv_timer_t *t) {
  broker_t *b = t->data;
  b->ping_nonce++;
  for (broker_conn_t *c = b->conns, *next; c; c = next) {
    next = c->next;
    if (c->state != BROKER_CONN_READY || c->link->closing) continue;
    int rc = tt_link_ping(c->link, b->ping_nonce);
    if (rc) tt_link_close(c->link, rc, "peer is not reading");
  }
}

/* A welcomed peer's idle deadline came round: drop it if nothing arrived since, else put
 * it back at its real deadline. */
static void idle_due(void *ctx, tt_wheel_entry_t *e) {
  broker_t *b = ctx;
  broker_conn_t *c = (broker_conn_t *)((char *)e - offsetof(broker_conn_t, idle));
  if (!c->link || c->link->closing) return;
  uint64_t now = uv_now(b->loop);
  if (c->expires_at && now >= c->expires_at) {
    TT_INFO("broker", "certificate expired", "peer=%s name=%s", c->addr, c->id.name);
    broker_audit(b, c->id.name, "refuse", c->id.name, "reason", "certificate expired", AUDIT_END);
    tt_link_close(c->link, TT_ECERT, "your certificate has expired");
    return;
  }
  uint64_t due = tt_tls_last_read(c->link->tls) + (uint64_t)b->cfg.idle_timeout_ms;
  if (now < due) {
    tt_wheel_add(&b->wheel, e, c->expires_at && c->expires_at < due ? c->expires_at : due);
    return;
  }
  TT_INFO("broker", "idle timeout", "peer=%s name=%s ms=%lld", c->addr, c->id.name,
          (long long)b->cfg.idle_timeout_ms);
  tt_link_close(c->link, TT_ETIMEOUT, "nothing received for the idle timeout");
}

void broker_sweep_cb(uv_timer_t *t) {
  broker_t *b = t->data;
  uint64_t now = uv_now(b->loop);
  tt_wheel_advance(&b->wheel, now, idle_due, b);
  if (++b->sweeps % (1000u / BROKER_SWEEP_MS) != 0) return;
  for (broker_conn_t *c = b->unready, *next; c; c = next) {
    next = c->unext;
    if (now - c->accepted_ms >= (uint64_t)b->cfg.handshake_timeout_ms && !c->link->closing) {
      TT_INFO("broker", "no hello in time", "peer=%s ms=%lld", c->addr, (long long)b->cfg.handshake_timeout_ms);
      unready_remove(c);
      tt_link_close(c->link, TT_ETIMEOUT, "no hello in time");
    }
  }
  relay_sweep(b, now);
  broker_inv_sweep(b, now);
  broker_alerts_sweep(b, now);
  broker_assets_sweep(b, now);
  broker_sessions_sweep(b, now);
  broker_frontdoor_sweep(b, now);
  broker_rollout_sweep(b, now);
  if (b->busy_this_sec)
    TT_INFO("broker", "agents told to retry later", "count=%u limit_per_s=%lld", b->busy_this_sec,
            (long long)b->cfg.max_hello_rate);
  b->busy_last_sec = b->busy_this_sec;
  b->busy_this_sec = 0;
  if (b->sweeps % (3600u * (1000u / BROKER_SWEEP_MS)) == 0) broker_audit_log_head(b, "hourly");
#ifdef __GLIBC__
  /* A burst of handshakes leaves the heap holding freed memory that glibc does not give
   * back by itself (~5 KB per connection measured after a fleet reconnect). Once the burst
   * is over, return it: a few ms once, instead of that much of every agent's share. */
  if (b->accepted_since_trim >= 1000 && b->handshaking == 0) {
    malloc_trim(0);
    b->accepted_since_trim = 0;
  }
#endif
}

void broker_close_all(broker_t *b) {
  for (broker_conn_t *c = b->conns; c; c = c->next) tt_link_close(c->link, TT_ECLOSED, "broker shutting down");
}

/* Channels: an agent's download of a release is the broker's own (rollout/serve.c); every
 * other channel is relayed. */
static void chan_open(tt_mux_t *m, tt_chan_t *ch, const Tether__ChannelOpen *msg) {
  if (msg->kind == TETHER__CHANNEL_KIND__CHANNEL_RELEASE) broker_serve_open(m, ch, msg);
  else relay_on_open(m, ch, msg);
}

static void chan_data(tt_mux_t *m, tt_chan_t *ch, const uint8_t *p, size_t n, uint8_t flags) {
  broker_conn_t *c = tt_link_from_mux(m)->data;
  if (broker_serve_owns(c, ch)) broker_serve_data(c, ch, n);
  else relay_on_data(m, ch, p, n, flags);
}

static void chan_credit(tt_mux_t *m, tt_chan_t *ch, uint32_t n) {
  broker_conn_t *c = tt_link_from_mux(m)->data;
  if (broker_serve_owns(c, ch)) broker_serve_credit(c, ch);
  else relay_on_credit(m, ch, n);
}

static void chan_close(tt_mux_t *m, tt_chan_t *ch, int code, const char *msg) {
  broker_conn_t *c = tt_link_from_mux(m)->data;
  if (broker_serve_owns(c, ch)) broker_serve_close(c, ch);
  else relay_on_close(m, ch, code, msg);
}

const tt_link_cbs_t broker_link_cbs = {
    .on_accept = conn_on_accept,
    .on_up = conn_on_up,
    .on_control = conn_on_control,
    .on_down = conn_on_down,
    .mux = {
        .on_open = chan_open,
        .on_accept = relay_on_accept,
        .on_data = chan_data,
        .on_credit = chan_credit,
        .on_close = chan_close,
    },
};
