/* tether-agent: keeps one outbound mutual-TLS link to the broker, reconnecting with jittered
 * backoff, and serves the channels the broker opens. */
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "agent.h"
#include "tt/addr.h"
#include "tt/cert.h"
#include "tt/cli.h"
#include "tt/log.h"
#include "tt/msg.h"

#define OPT(n, f, t, field, lo, hi, d, h) \
  {n, f, t, offsetof(agent_cfg_t, field), sizeof(((agent_cfg_t *)0)->field), lo, hi, d, NULL, h}

static const tt_conf_opt_t agent_opts[] = {
    OPT("broker", "broker", TT_CONF_STR, broker, 3, 255, "127.0.0.1:7443", "broker address HOST:PORT"),
    OPT("server_name", "server-name", TT_CONF_STR, server_name, 0, 255, NULL,
        "name or IP the broker's certificate must carry (default: the broker's host)"),
    OPT("tls.ca", "ca", TT_CONF_STR, ca, 1, 511, NULL, "CA certificate (PEM) the broker must chain to"),
    OPT("tls.cert", "cert", TT_CONF_STR, cert, 1, 511, NULL, "this device's certificate (PEM)"),
    OPT("tls.key", "key", TT_CONF_STR, key, 1, 511, NULL, "this device's private key (PEM)"),
    OPT("hostname", "hostname", TT_CONF_STR, hostname, 0, TT_NAME_MAX, NULL,
        "hostname reported to the broker (default: this machine's)"),
    OPT("backoff.base", "backoff-base", TT_CONF_DURATION, backoff_base_ms, 10, 600000, "500ms",
        "first reconnect delay ceiling"),
    OPT("backoff.max", "backoff-max", TT_CONF_DURATION, backoff_max_ms, 10, 3600000, "30s",
        "reconnect delays never exceed this (plus a broker's retry-after)"),
    OPT("handshake_timeout", "handshake-timeout", TT_CONF_DURATION, handshake_timeout_ms, 100, 120000,
        "10s", "give up a connection attempt after this long"),
    {"log_level", "log-level", TT_CONF_ENUM, offsetof(agent_cfg_t, log_level), sizeof(int), 0, 0,
     "info", "debug|info|warn|error", "log verbosity"},
};
#define NOPTS (sizeof(agent_opts) / sizeof(agent_opts[0]))

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
  h.software_version = tt_text(TT_VERSION);
  h.capabilities = TETHER__CAPABILITY__CAP_ZSTD | TETHER__CAPABILITY__CAP_THROUGHPUT |
                   TETHER__CAPABILITY__CAP_ECHO;
  h.hostname = tt_text(a->cfg.hostname);
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
    TT_INFO("agent", "connected", "broker=%s name=%s heartbeat_ms=%u", a->cfg.broker, a->broker_name,
            w->heartbeat_ms);
    return 0;
  }
  if (kind == TT_K_ERROR) {
    const Tether__Error *e = (const Tether__Error *)m;
    char msg[TT_TEXT_MAX * 4 + 1];
    tt_log_quote(msg, sizeof(msg), e->message.data, e->message.len);
    TT_WARN("agent", "broker refused us", "code=%d msg=\"%s\" retry_after_ms=%u", (int)e->code, msg,
            e->retry_after_ms);
    a->retry_after_ms = e->retry_after_ms;
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
  schedule_retry(a);
}

static const tt_link_cbs_t agent_link_cbs = {
    .on_up = on_up, .on_control = on_control, .on_down = on_down, .mux = {0}};
static tt_link_cbs_t link_cbs;

static void agent_connect(agent_t *a) {
  if (a->stopping) return;
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
  if (a->link) tt_link_close(a->link, TT_ECLOSED, "agent shutting down");
}

static int agent_run(agent_t *a) {
  char err[512];
  const char *missing = !a->cfg.ca[0] ? "tls.ca (--ca)" : !a->cfg.cert[0] ? "tls.cert (--cert)"
                        : !a->cfg.key[0] ? "tls.key (--key)" : NULL;
  if (missing) {
    fprintf(stderr, "tether-agent: %s is required\n", missing);
    return 2;
  }
  if (!a->cfg.hostname[0] && gethostname(a->cfg.hostname, sizeof(a->cfg.hostname)) != 0)
    snprintf(a->cfg.hostname, sizeof(a->cfg.hostname), "unknown");
  a->cfg.hostname[sizeof(a->cfg.hostname) - 1] = '\0';
  tt_tls_ctx_opts_t to = {.server = false, .ca_file = a->cfg.ca, .cert_file = a->cfg.cert, .key_file = a->cfg.key};
  if (tt_tls_ctx_new(&a->tls, &to, err, sizeof(err))) {
    fprintf(stderr, "tether-agent: %s\n", err);
    return 1;
  }
  a->loop = uv_default_loop();
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
  TT_INFO("agent", "starting", "broker=%s hostname=%s version=%s", a->cfg.broker, a->cfg.hostname, TT_VERSION);
  agent_connect(a);
  uv_run(a->loop, UV_RUN_DEFAULT);
  int rc = uv_loop_close(a->loop);
  tt_tls_ctx_free(a->tls);
  return rc ? 1 : 0;
}

int main(int argc, char **argv) {
  static agent_t a;
  tt_cli_args_t args;
  const tt_cli_t cli = {
      .prog = "tether-agent",
      .usage = "usage: tether-agent [run] [--config FILE] [options]\n\n"
               "Tether's agent: keeps this device reachable for help-desk support through the\n"
               "broker, over one outbound mutual-TLS connection.\n\n"
               "commands:\n  run       connect to the broker and serve (default)",
      .config_path = "/etc/tether/agent.conf",
  };
  signal(SIGPIPE, SIG_IGN);
  if (tt_cli_parse(&cli, agent_opts, NOPTS, &a.cfg, argc, argv, &args)) return 2;
  if (args.help) {
    tt_cli_help(&cli, agent_opts, NOPTS);
    return 0;
  }
  if (args.version) {
    printf("tether-agent %s\n", TT_VERSION);
    return 0;
  }
  if (args.npos > 1 || (args.npos == 1 && strcmp(args.pos[0], "run") != 0)) {
    fprintf(stderr, "tether-agent: unknown command '%s' (see --help)\n", args.pos[0]);
    return 2;
  }
  if (a.cfg.backoff_base_ms > a.cfg.backoff_max_ms) {
    fprintf(stderr, "tether-agent: backoff.base must not exceed backoff.max\n");
    return 2;
  }
  tt_log_set_level((tt_log_level_t)a.cfg.log_level);
  return agent_run(&a);
}
