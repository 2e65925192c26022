/* The running agent: keeps one outbound mutual-TLS link to the broker, reconnecting with
 * jittered backoff, serves the channels the broker opens, and renews its certificate. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "agent.h"
#include "tt/addr.h"
#include "tt/log.h"
#include "tt/msg.h"
#include "tt/pki.h"
#include "tt/release.h"

static void agent_connect(agent_t *a);

static void retry_cb(uv_timer_t *t) { agent_connect(t->data); }

static void schedule_retry(agent_t *a) {
  if (a->stopping) return;
  uint32_t d = a->retry_after_ms ? tt_backoff_next_after(&a->backoff, a->retry_after_ms)
                                 : tt_backoff_next(&a->backoff);
  a->retry_after_ms = 0;
  TT_INFO("agent", "reconnecting", "in_ms=%u attempt=%u", d, a->backoff.attempt);
  uv_timer_start(&a->retry, retry_cb, d, 0);
}

static void send_hello(agent_t *a) {
  Tether__Hello h = TETHER__HELLO__INIT;
  h.proto_version = TT_PROTO_VERSION;
  h.role = TETHER__ROLE__ROLE_AGENT;
  h.software_version = tt_text(agent_version);
  h.capabilities = TETHER__CAPABILITY__CAP_ZSTD | TETHER__CAPABILITY__CAP_THROUGHPUT |
                   TETHER__CAPABILITY__CAP_ECHO | TETHER__CAPABILITY__CAP_SHELL | TETHER__CAPABILITY__CAP_FILES |
                   TETHER__CAPABILITY__CAP_UPGRADE;
  h.arch = tt_text(tt_release_arch());
  h.hostname = tt_text(a->cfg.hostname);
  h.consent_timeout_ms = (uint32_t)a->cfg.consent_timeout_ms;
  a->hello_hr = uv_hrtime(); /* Hello to Welcome is one round trip: the clock's error bar */
  if (tt_link_send(a->link, TT_K_HELLO, &h.base)) tt_link_close(a->link, TT_EIO, "cannot send hello");
}

static void on_up(tt_link_t *l) {
  agent_t *a = l->data;
  tt_identity_t id;
  X509 *x = tt_link_peer_cert(l);
  if (!x || tt_cert_identity(x, &id) || id.role != TT_ROLE_BROKER) {
    TT_ERROR("agent", "peer is not a Tether broker", "broker=%s", a->cfg.broker);
    tt_link_close(l, TT_EROLE, "not a broker");
    return;
  }
  snprintf(a->broker_name, sizeof(a->broker_name), "%s", id.name);
  send_hello(a);
}

/* Requests the broker sends us; each is answered with a Response of the same id. */
static void broker_request(agent_t *a, const Tether__Request *q) {
  if (q->body_case == TETHER__REQUEST__BODY_CONSENT) {
    agent_consent_request(a, q);
    return;
  }
  if (q->body_case == TETHER__REQUEST__BODY_SESSION_END) {
    agent_session_end_request(a, q);
    return;
  }
  if (q->body_case == TETHER__REQUEST__BODY_POLICY_PUSH) {
    agent_checks_policy_request(a, q);
    return;
  }
  if (q->body_case == TETHER__REQUEST__BODY_UPGRADE_OFFER) {
    agent_upgrade_offer_request(a, q);
    return;
  }
  if (q->body_case == TETHER__REQUEST__BODY_HELP_NOTICE) {
    agent_help_notice_request(a, q);
    return;
  }
  TT_WARN("agent", "unknown request from the broker", "id=%u body=%d", q->id, (int)q->body_case);
  Tether__Response r = TETHER__RESPONSE__INIT;
  Tether__Error e = TETHER__ERROR__INIT;
  e.code = TETHER__ERROR_CODE__ERR_PROTOCOL;
  e.message = tt_text("this agent does not serve that request");
  r.id = q->id;
  r.error = &e;
  if (tt_link_send(a->link, TT_K_RESPONSE, &r.base)) tt_link_close(a->link, TT_EIO, "cannot answer");
}

/* The broker's clock from Welcome: it said its time as it sent Welcome, somewhere within
 * the round trip since our Hello, so half of that trip is the estimate's error. A device
 * clock far off makes certificates look expired or not yet valid: it is logged here and
 * shown in a diagnostics report (time_skew). */
static void welcome_clock(agent_t *a, const Tether__Welcome *w) {
  uint64_t now = uv_hrtime();
  a->welcome_hr = now;
  a->welcome_unix_ms = agent_unix_ms();
  a->heartbeat_ms = w->heartbeat_ms;
  a->clock_known = w->server_time_ms > 0 && w->server_time_ms < (uint64_t)INT64_MAX && a->hello_hr &&
                   now >= a->hello_hr;
  if (!a->clock_known) return;
  uint64_t half_ns = (now - a->hello_hr) / 2;
  a->clock_broker_ms = (int64_t)w->server_time_ms + (int64_t)(half_ns / 1000000u);
  a->clock_error_ms = (int64_t)((half_ns + 999999u) / 1000000u);
  int64_t skew = a->welcome_unix_ms - a->clock_broker_ms;
  if (skew > AGENT_CLOCK_SKEW_WARN_MS + a->clock_error_ms || -skew > AGENT_CLOCK_SKEW_WARN_MS + a->clock_error_ms)
    TT_WARN("agent", "this device's clock differs from the broker's", "skew_ms=%lld error_ms=%lld",
            (long long)skew, (long long)a->clock_error_ms);
}

static int on_control(tt_link_t *l, uint8_t kind, const ProtobufCMessage *m) {
  agent_t *a = l->data;
  if (kind == TT_K_WELCOME && !a->welcomed) {
    const Tether__Welcome *w = (const Tether__Welcome *)m;
    if (w->proto_version != TT_PROTO_VERSION) return TT_EVERSION;
    a->welcomed = true;
    a->connects++;
    tt_backoff_reset(&a->backoff);
    tt_link_set_authed(l);
    /* The broker pings every heartbeat: silence for its idle timeout means it is gone
     * (a dead host sends no FIN), so drop the link and reconnect. */
    if (w->idle_timeout_ms) tt_tls_set_idle(l->tls, w->idle_timeout_ms);
    welcome_clock(a, w);
    TT_INFO("agent", "connected", "broker=%s name=%s heartbeat_ms=%u resumed=%d", a->cfg.broker,
            a->broker_name, w->heartbeat_ms, (int)tt_tls_resumed(l->tls));
    agent_renew_welcomed(a);
    agent_inv_welcomed(a);
    agent_checks_welcomed(a);
    agent_help_welcomed(a);
    agent_upgrade_welcomed(a);
    return 0;
  }
  if (kind == TT_K_RESPONSE && a->welcomed) {
    agent_reqs_dispatch(&a->reqs, (const Tether__Response *)m);
    return 0;
  }
  if (kind == TT_K_REQUEST && a->welcomed) {
    broker_request(a, (const Tether__Request *)m);
    return 0;
  }
  if (kind == TT_K_ERROR) {
    const Tether__Error *e = (const Tether__Error *)m;
    char msg[TT_TEXT_MAX * 4 + 1];
    tt_log_quote(msg, sizeof(msg), e->message.data, e->message.len);
    TT_WARN("agent", "broker refused us", "code=%d msg=\"%s\" retry_after_ms=%u", (int)e->code, msg,
            e->retry_after_ms);
    /* Honoured, but not without bound: a broker asking for hours is a broker gone wrong. */
    a->retry_after_ms = e->retry_after_ms > TT_RETRY_AFTER_MAX_MS ? TT_RETRY_AFTER_MAX_MS : e->retry_after_ms;
    tt_link_close(l, 0, NULL);
    return 0;
  }
  return TT_EKIND;
}

static void on_down(tt_link_t *l, int reason) {
  agent_t *a = l->data;
  TT_INFO("agent", a->welcomed ? "disconnected" : "connection failed", "broker=%s reason=%s (%s)",
          a->cfg.broker, tt_errname(reason), tt_strerror(reason));
  a->link = NULL;
  a->welcomed = false;
  agent_reqs_fail_all(&a->reqs, TT_ECLOSED);
  agent_consent_link_down(a); /* no session outlives the broker's view of it */
  agent_upgrade_link_down(a);
  schedule_retry(a);
}

static void on_rtt(tt_link_t *l, uint64_t rtt_ns) { agent_diag_rtt(l->data, rtt_ns); }

static const tt_link_cbs_t agent_link_cbs = {
    .on_up = on_up, .on_control = on_control, .on_down = on_down, .on_rtt = on_rtt, .mux = {0}};
static tt_link_cbs_t link_cbs;

static void agent_connect(agent_t *a) {
  if (a->stopping) return;
  /* A renewed certificate takes over here, with no link left on the old context. */
  if (a->tls_next) {
    tt_tls_ctx_free(a->tls);
    a->tls = a->tls_next;
    a->tls_next = NULL;
  }
  struct sockaddr_storage sa;
  char host[256];
  int rc = tt_addr_resolve(a->cfg.broker, &sa, host, sizeof(host));
  if (rc) {
    TT_WARN("agent", "cannot resolve broker", "broker=%s err=%s", a->cfg.broker, tt_errname(rc));
    schedule_retry(a);
    return;
  }
  /* Until Welcome, a broker silent for the handshake timeout is given up on; after it, the
   * broker's announced idle timeout applies (it pings every heartbeat). */
  tt_tls_limits_t lim = {
      .handshake_ms = (uint64_t)a->cfg.handshake_timeout_ms,
      .idle_ms = (uint64_t)a->cfg.handshake_timeout_ms,
      .high_water = TT_SOCKET_QUEUE_CAP,
      .low_water = TT_SOCKET_QUEUE_CAP / 4,
      .write_cap = TT_SOCKET_WRITE_CAP,
  };
  const char *sn = a->cfg.server_name[0] ? a->cfg.server_name : host;
  rc = tt_link_connect(&a->link, a->tls, a->loop, (struct sockaddr *)&sa, sn, &lim, &link_cbs, a);
  if (rc) {
    TT_WARN("agent", "cannot connect", "broker=%s err=%s", a->cfg.broker, tt_errname(rc));
    a->link = NULL;
    schedule_retry(a);
  }
}

static void on_signal(uv_signal_t *s, int signum) {
  agent_t *a = s->data;
  if (a->stopping) return;
  TT_INFO("agent", "stopping", "signal=%d", signum);
  a->stopping = true;
  uv_close((uv_handle_t *)&a->retry, NULL);
  uv_close((uv_handle_t *)&a->sigint, NULL);
  uv_close((uv_handle_t *)&a->sigterm, NULL);
  agent_renew_close(a);
  agent_inv_close(a);
  agent_checks_close(a);
  agent_reqs_close(&a->reqs);
  agent_help_close(a);
  agent_upgrade_close(a);
  agent_consent_close(a);
  agent_shell_close(a);
  agent_files_close(a);
  agent_contain_close(a);
  if (a->link) tt_link_close(a->link, TT_ECLOSED, "agent shutting down");
}

/* tls.ca / tls.cert / tls.key default to the files `tether-agent enroll` wrote. Returns an
 * exit status: 0 to go on. */
static int run_files(agent_t *a) {
  agent_cfg_t *c = &a->cfg;
  char err[512];
  bool state = !c->ca[0] || !c->cert[0] || !c->key[0];
  if (state) {
    int rc = agent_state_open(c->state_dir, false, &a->state_lock, err, sizeof(err));
    if (rc == -ENOENT) goto not_enrolled;
    if (rc) {
      fprintf(stderr, "tether-agent: %s\n", err);
      return 1;
    }
    if ((!c->ca[0] && agent_path(c->ca, sizeof(c->ca), c->state_dir, AGENT_CA_FILE)) ||
        (!c->cert[0] && agent_path(c->cert, sizeof(c->cert), c->state_dir, AGENT_CERT_FILE)) ||
        (!c->key[0] && agent_path(c->key, sizeof(c->key), c->state_dir, AGENT_KEY_FILE))) {
      fprintf(stderr, "tether-agent: state_dir is too long\n");
      return 2;
    }
  }
  char name_path[AGENT_PATH_MAX] = "";
  if (state && agent_path(name_path, sizeof(name_path), c->state_dir, AGENT_HOSTNAME_FILE)) name_path[0] = '\0';
  agent_state_recover(c->key, c->cert, c->ca, name_path[0] ? name_path : NULL);
  if (state && (access(c->ca, F_OK) || access(c->cert, F_OK) || access(c->key, F_OK))) goto not_enrolled;
  /* The name given at enrollment, unless configured here. */
  if (name_path[0] && !c->hostname[0]) agent_state_read_name(name_path, c->hostname, sizeof(c->hostname));
  /* tt_pki_load_key refuses a key others may read, as ssh does. */
  X509 *x = NULL;
  EVP_PKEY *k = NULL;
  if (tt_pki_load_key(c->key, &k, err, sizeof(err)) || tt_pki_load_cert(c->cert, &x, err, sizeof(err))) {
    fprintf(stderr, "tether-agent: %s\n", err);
    EVP_PKEY_free(k);
    return 1;
  }
  EVP_PKEY_free(k);
  if (agent_ident_read(x, &a->ident)) {
    TT_WARN("agent", "certificate names no device: renewal is off", "cert=%s", c->cert);
    a->ident.not_after_ms = INT64_MAX;
    a->ident.not_before_ms = INT64_MAX; /* never due */
  }
  X509_free(x);
  return 0;
not_enrolled:
  fprintf(stderr, "tether-agent: not enrolled: run tether-agent enroll first (state dir %s)\n", c->state_dir);
  return 2;
}

int agent_run(agent_t *a) {
  char err[512];
  a->state_lock = -1;
  int rc = run_files(a);
  if (rc) goto out;
  if (!a->cfg.hostname[0] && gethostname(a->cfg.hostname, sizeof(a->cfg.hostname)) != 0)
    snprintf(a->cfg.hostname, sizeof(a->cfg.hostname), "unknown");
  a->cfg.hostname[sizeof(a->cfg.hostname) - 1] = '\0';
  tt_tls_ctx_opts_t to = {
      .server = false, .ca_file = a->cfg.ca, .cert_file = a->cfg.cert, .key_file = a->cfg.key, .resume = true};
  if (tt_tls_ctx_new(&a->tls, &to, err, sizeof(err))) {
    fprintf(stderr, "tether-agent: %s\n", err);
    rc = 1;
    goto out;
  }
  a->loop = uv_default_loop();
  if (agent_files_init(a, err, sizeof(err))) {
    fprintf(stderr, "tether-agent: %s\n", err);
    agent_files_free(a);
    tt_tls_ctx_free(a->tls);
    rc = 2;
    goto out;
  }
  if (agent_contain_init(a, err, sizeof(err))) { /* before anything can start a shell */
    fprintf(stderr, "tether-agent: %s\n", err);
    agent_files_free(a);
    tt_tls_ctx_free(a->tls);
    rc = 1;
    goto out;
  }
  link_cbs = agent_link_cbs;
  link_cbs.mux = agent_mux_cbs;
  tt_backoff_init(&a->backoff, (uint32_t)a->cfg.backoff_base_ms, (uint32_t)a->cfg.backoff_max_ms, 0);
  uv_timer_init(a->loop, &a->retry);
  a->retry.data = a;
  uv_signal_init(a->loop, &a->sigint);
  uv_signal_init(a->loop, &a->sigterm);
  a->sigint.data = a->sigterm.data = a;
  uv_signal_start(&a->sigint, on_signal, SIGINT);
  uv_signal_start(&a->sigterm, on_signal, SIGTERM);
  agent_reqs_init(&a->reqs, a->loop);
  TT_INFO("agent", "starting", "broker=%s hostname=%s version=%s", a->cfg.broker, a->cfg.hostname, agent_version);
  agent_renew_init(a);
  agent_inv_init(a);
  agent_checks_init(a);
  agent_shell_init(a);
  agent_consent_init(a);
  agent_help_init(a);
  agent_upgrade_init(a);
  agent_connect(a);
  uv_run(a->loop, UV_RUN_DEFAULT);
  agent_files_free(a); /* stops the transfer pool */
  agent_inv_free(a);
  agent_checks_free(a);
  agent_help_free(a);
  agent_upgrade_free(a);
  rc = uv_loop_close(a->loop) ? 1 : 0;
  tt_tls_ctx_free(a->tls);
  tt_tls_ctx_free(a->tls_next);
out:
  if (a->state_lock >= 0) close(a->state_lock);
  return rc;
}
