/* tether-broker: options, listener, signals. The work happens in conn.c and relay.c. */
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include "broker.h"
#include "tt/addr.h"
#include "tt/cli.h"
#include "tt/log.h"
#include "tt/pki.h"
#include "signer.h"

/* A default from tt/limits.h as the option table's text. */
#define STR_(x) #x
#define STR(x) STR_(x)

#define OPT(n, f, t, field, lo, hi, d, h) \
  {n, f, t, offsetof(broker_cfg_t, field), sizeof(((broker_cfg_t *)0)->field), lo, hi, d, NULL, h}

static const tt_conf_opt_t broker_opts[] = {
    OPT("listen", "listen", TT_CONF_STR, listen, 3, 127, "127.0.0.1:7443", "address and port to listen on"),
    OPT("data_dir", "data-dir", TT_CONF_STR, data_dir, 1, 511, "/var/lib/tether",
        "directory of the store (broker.db) and session-ticket keys"),
    OPT("tls.ca", "ca", TT_CONF_STR, ca, 1, 511, NULL, "CA certificate (PEM) that signs every peer"),
    OPT("tls.ca_key", "ca-key", TT_CONF_STR, ca_key, 1, 511, NULL,
        "the CA's private key, read only by the signer process that signs device certificates"),
    OPT("tls.cert", "cert", TT_CONF_STR, cert, 1, 511, NULL, "the broker's certificate (PEM)"),
    OPT("tls.key", "key", TT_CONF_STR, key, 1, 511, NULL, "the broker's private key (PEM)"),
    OPT("heartbeat", "heartbeat", TT_CONF_DURATION, heartbeat_ms, 100, 600000, "15s",
        "how often every peer is pinged"),
    OPT("idle_timeout", "idle-timeout", TT_CONF_DURATION, idle_timeout_ms, 300, 3600000, "45s",
        "drop a peer that sent nothing for this long"),
    OPT("handshake_timeout", "handshake-timeout", TT_CONF_DURATION, handshake_timeout_ms, 100, 120000,
        "10s", "drop a connection whose TLS handshake, or whose Hello after it, takes longer"),
    OPT("device_cert_lifetime", "device-cert-lifetime", TT_CONF_DURATION, device_cert_lifetime_ms, 10000,
        3650ll * 86400000, "30d", "lifetime of device certificates (devices renew at two thirds)"),
    OPT("token_ttl", "token-ttl", TT_CONF_DURATION, token_ttl_ms, 1000, 365ll * 86400000, "1h",
        "default lifetime of an enrollment token"),
    OPT("enroll", "enroll", TT_CONF_BOOL, enroll, 0, 0, "true", "accept device enrollment with tokens"),
    OPT("max_connections", "max-connections", TT_CONF_INT, max_connections, 1, 10000000, "200000",
        "connections held at once; more are closed at accept"),
    OPT("max_handshakes", "max-handshakes", TT_CONF_INT, max_handshakes, 1, 1000000, "2000",
        "TLS handshakes in progress at once; then one that sent nothing makes room, or the newcomer is reset"),
    OPT("max_hello_rate", "max-hello-rate", TT_CONF_INT, max_hello_rate, 0, 1000000, "0",
        "agents welcomed per second (0 = no limit); beyond it they are told when to retry"),
    OPT("max_handshakes_per_address", "max-handshakes-per-address", TT_CONF_INT, max_handshakes_per_address, 1,
        1000000, STR(TT_HANDSHAKES_PER_ADDR_DEFAULT),
        "TLS handshakes in progress from one address (IPv4, or IPv6 /64); more from it are reset at accept"),
    OPT("max_enrolling_per_address", "max-enrolling-per-address", TT_CONF_INT, max_enrolling_per_address, 1,
        TT_ENROLLING_MAX, STR(TT_ENROLLING_PER_ADDR_DEFAULT),
        "enrollment connections open from one address; more from it are told to retry"),
    OPT("audit.refusals_per_address", "audit-refusals-per-address", TT_CONF_INT, audit_refusals_per_address, 0,
        1000000, STR(TT_AUDIT_REFUSALS_PER_ADDR_DEFAULT),
        "refusals of one address audited one by one per window; the rest in one refuse-summary entry"),
    OPT("audit.refusals_total", "audit-refusals-total", TT_CONF_INT, audit_refusals_total, 1, 1000000,
        STR(TT_AUDIT_REFUSALS_TOTAL_DEFAULT), "refusal and refuse-summary entries per window from every address"),
    OPT("audit.refusal_window", "audit-refusal-window", TT_CONF_DURATION, audit_refusal_window_ms, 1000, 3600000,
        STR(TT_AUDIT_REFUSAL_WINDOW_DEFAULT_S) "s", "the window of the two limits above"),
    OPT("sla.first_response.low", "sla-first-response-low", TT_CONF_DURATION, sla_first_response_ms[0], 60000,
        365ll * 86400000, "1d", "tickets: first response due after creation, priority low"),
    OPT("sla.first_response.normal", "sla-first-response-normal", TT_CONF_DURATION, sla_first_response_ms[1],
        60000, 365ll * 86400000, "4h", "... priority normal"),
    OPT("sla.first_response.high", "sla-first-response-high", TT_CONF_DURATION, sla_first_response_ms[2], 60000,
        365ll * 86400000, "1h", "... priority high"),
    OPT("sla.first_response.urgent", "sla-first-response-urgent", TT_CONF_DURATION, sla_first_response_ms[3],
        60000, 365ll * 86400000, "15m", "... priority urgent"),
    OPT("sla.resolution.low", "sla-resolution-low", TT_CONF_DURATION, sla_resolution_ms[0], 60000,
        365ll * 86400000, "7d", "tickets: resolution due after creation, priority low"),
    OPT("sla.resolution.normal", "sla-resolution-normal", TT_CONF_DURATION, sla_resolution_ms[1], 60000,
        365ll * 86400000, "3d", "... priority normal"),
    OPT("sla.resolution.high", "sla-resolution-high", TT_CONF_DURATION, sla_resolution_ms[2], 60000,
        365ll * 86400000, "1d", "... priority high"),
    OPT("sla.resolution.urgent", "sla-resolution-urgent", TT_CONF_DURATION, sla_resolution_ms[3], 60000,
        365ll * 86400000, "4h", "... priority urgent"),
    OPT("sla.exclude_waiting", "sla-exclude-waiting", TT_CONF_BOOL, sla_exclude_waiting, 0, 0, "false",
        "reports: time waiting on the employee (for consent, for a reply) does not count against the SLA"),
    OPT("siem.target", "siem-target", TT_CONF_STR, siem_target, 0, 299, NULL,
        "SIEM feed: tls://HOST:PORT of a syslog collector (RFC 5425); every audit entry goes there once, in order"),
    OPT("siem.format", "siem-format", TT_CONF_STR, siem_format, 1, 15, "rfc5424",
        "SIEM feed: rfc5424, cef or jsonl (each message framed as RFC 5425 says)"),
    OPT("siem.ca", "siem-ca", TT_CONF_STR, siem_ca, 0, 511, NULL,
        "SIEM feed: the CA certificate (PEM) the collector's certificate must chain to"),
    OPT("siem.server_name", "siem-server-name", TT_CONF_STR, siem_server_name, 0, 255, NULL,
        "SIEM feed: the name or IP the collector's certificate must carry (default: the target's host)"),
    OPT("retention.sweep_interval", "retention-sweep-interval", TT_CONF_DURATION, retention_sweep_ms, 1000,
        7ll * 86400000, "1h", "how often what retention expired is removed (also: tether retention sweep)"),
    OPT("session.duration", "session-duration", TT_CONF_DURATION, session_duration_ms, 10000,
        (int64_t)TT_SESSION_DURATION_MAX_MS, "30m", "how long a consented session lasts unless asked otherwise"),
    OPT("session.max", "session-max", TT_CONF_DURATION, session_max_ms, 10000,
        (int64_t)TT_SESSION_DURATION_MAX_MS, "4h", "the longest session a technician may ask for"),
    OPT("alerts.storm_devices", "storm-devices", TT_CONF_INT, alert_storm_devices, 2, 1000000, "5",
        "a check failing on this many devices within alerts.storm_window is one storm ticket"),
    OPT("alerts.storm_window", "storm-window", TT_CONF_DURATION, alert_storm_window_ms, 1000, 86400000, "10m",
        "how close together failures must start to count as one storm"),
    OPT("alerts.reopen_window", "reopen-window", TT_CONF_DURATION, alert_reopen_window_ms, 0, 30ll * 86400000, "24h",
        "a check failing again this soon after it recovered reopens the same ticket"),
    OPT("alerts.sweep_interval", "alert-sweep-interval", TT_CONF_DURATION, alert_sweep_ms, 1000, 3600000, "1m",
        "how often snoozes and maintenance windows that ended are looked at"),
    OPT("audit.checkpoint_interval", "checkpoint-interval", TT_CONF_DURATION, checkpoint_interval_ms, 1000,
        86400000, "10m", "how often the audit chain's head is signed (when it grew), besides at start and stop"),
    OPT("audit.checkpoint_file", "checkpoint-file", TT_CONF_STR, checkpoint_file, 0, 511, NULL,
        "where signed audit checkpoints are appended, outside the store (default DATA_DIR/audit.checkpoints)"),
    OPT("store.busy_timeout", "store-busy-timeout", TT_CONF_DURATION, store_busy_timeout_ms, 100, 600000, "30s",
        "how long the store thread waits for a lock another process holds on the database before the "
        "waiting requests fail (privileged actions are then refused, never done unrecorded)"),
    OPT("release.keys", "release-keys", TT_CONF_STR, release_keys, 0, 511, NULL,
        "release public keys (PEM, from tether-certs release-key): `tether release add` refuses a "
        "manifest none of them signed (agents check it whatever the broker does)"),
    {"log_level", "log-level", TT_CONF_ENUM, offsetof(broker_cfg_t, log_level), sizeof(int), 0, 0,
     "info", "debug|info|warn|error", "log verbosity"},
};
#define NOPTS (sizeof(broker_opts) / sizeof(broker_opts[0]))

static char *read_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  char *buf = malloc(65536);
  size_t n = buf ? fread(buf, 1, 65535, f) : 0;
  fclose(f);
  if (!buf) return NULL;
  buf[n] = '\0';
  return buf;
}

uint64_t broker_unix_ms(void) {
  struct timeval tv;
  gettimeofday(&tv, NULL);
  return (uint64_t)tv.tv_sec * 1000u + (uint64_t)tv.tv_usec / 1000u;
}

static void on_signal(uv_signal_t *s, int signum) {
  broker_t *b = s->data;
  if (b->stopping) return;
  TT_INFO("broker", "stopping", "signal=%d connections=%zu", signum, b->nconns);
  b->stopping = true;
  uv_close((uv_handle_t *)&b->listener, NULL);
  uv_close((uv_handle_t *)&b->heartbeat, NULL);
  uv_close((uv_handle_t *)&b->sweep, NULL);
  uv_close((uv_handle_t *)&b->checkpoint_timer, NULL);
  uv_close((uv_handle_t *)&b->retention_timer, NULL);
  uv_close((uv_handle_t *)&b->sigint, NULL);
  uv_close((uv_handle_t *)&b->sigterm, NULL);
  broker_siem_stop(b);
  broker_close_all(b);
  broker_signer_stop(b);
}

static void checkpoint_cb(uv_timer_t *t) { broker_audit_checkpoint(t->data, "periodic", true); }
static void retention_cb(uv_timer_t *t) { broker_retention_tick(t->data); }

static int check_cfg(const broker_cfg_t *c) {
  const char *missing = !c->ca[0] ? "tls.ca (--ca)" : !c->cert[0] ? "tls.cert (--cert)"
                        : !c->key[0] ? "tls.key (--key)" : !c->ca_key[0] ? "tls.ca_key (--ca-key)" : NULL;
  if (missing) {
    fprintf(stderr, "tether-broker: %s is required\n", missing);
    return TT_ECONFIG;
  }
  if (c->idle_timeout_ms <= c->heartbeat_ms) {
    fprintf(stderr, "tether-broker: idle_timeout must be longer than heartbeat\n");
    return TT_ECONFIG;
  }
  return 0;
}

int main(int argc, char **argv) {
  static broker_t b;
  tt_cli_args_t args;
  const tt_cli_t cli = {
      .prog = "tether-broker",
      .usage = "usage: tether-broker [--config FILE] [options]\n\n"
               "Tether's broker: accepts agents and consoles over mutual TLS and relays\n"
               "their channels.",
      .config_path = "/etc/tether/broker.conf",
  };
  /* The signer process is this binary too (signer/process.c): nothing of the broker runs in it. */
  if (argc > 1 && strcmp(argv[1], "--signer") == 0) return broker_signer_main(argc, argv);
  signal(SIGPIPE, SIG_IGN);
  /* Past a file-size limit a write fails with EFBIG (a recording then ends its shell)
   * instead of the signal killing the broker. */
  signal(SIGXFSZ, SIG_IGN);
  if (tt_cli_parse(&cli, broker_opts, NOPTS, &b.cfg, argc, argv, &args)) return 2;
  if (args.help) {
    tt_cli_help(&cli, broker_opts, NOPTS);
    return 0;
  }
  if (args.version) {
    printf("tether-broker %s\n", TT_VERSION);
    return 0;
  }
  if (args.npos) {
    fprintf(stderr, "tether-broker: unexpected argument '%s'\n", args.pos[0]);
    return 2;
  }
  if (check_cfg(&b.cfg)) return 2;
  tt_log_set_level((tt_log_level_t)b.cfg.log_level);

  char err[512];
  b.loop = uv_default_loop();
  /* First of all, while this process holds nothing else: the signer, which alone loads the
   * CA key (and checks that it belongs to the CA). This process never reads it. */
  if (broker_signer_start(&b, err, sizeof(err))) {
    fprintf(stderr, "tether-broker: signer: %s\n", err);
    return 1;
  }
  int orc = store_open(&b.store, b.cfg.data_dir, err, sizeof(err));
  if (orc) {
    fprintf(stderr, "tether-broker: store: %s\n", err);
    /* 3: a store a newer broker left (a downgrade): no restart mends it (the unit's
     * RestartPreventExitStatus), and nothing was written to it. */
    return orc == TT_EVERSION ? 3 : 1;
  }
  store_set_busy_timeout(b.store, (int)b.cfg.store_busy_timeout_ms);
  if (tt_pki_load_cert(b.cfg.ca, &b.ca_cert, err, sizeof(err))) {
    fprintf(stderr, "tether-broker: %s\n", err);
    return 1;
  }
  /* The broker's own key signs audit checkpoints; its certificate travels with them. */
  if (tt_pki_load_cert(b.cfg.cert, &b.cp_cert, err, sizeof(err)) ||
      tt_pki_load_key(b.cfg.key, &b.cp_key, err, sizeof(err))) {
    fprintf(stderr, "tether-broker: %s\n", err);
    return 1;
  }
  if (b.cfg.checkpoint_file[0])
    snprintf(b.checkpoint_file, sizeof(b.checkpoint_file), "%s", b.cfg.checkpoint_file);
  else
    snprintf(b.checkpoint_file, sizeof(b.checkpoint_file), "%s/audit.checkpoints", b.cfg.data_dir);
  b.ca_pem = read_file(b.cfg.ca);
  if (!b.ca_pem || registry_init(&b)) {
    fprintf(stderr, "tether-broker: cannot read %s\n", b.cfg.ca);
    return 1;
  }
  if (broker_frontdoor_init(&b)) {
    fprintf(stderr, "tether-broker: out of memory for the per-address table\n");
    return 1;
  }
  /* What the loop needs from the store at start is read here, before the store thread
   * takes the connection: the revocations every handshake checks, sessions left live by
   * the last run (ended now), the fleet's size for the log. */
  if (revoked_load(&b, b.store)) {
    fprintf(stderr, "tether-broker: cannot read the revocations from the store\n");
    return 1;
  }
  if (broker_sessions_init(&b)) {
    fprintf(stderr, "tether-broker: cannot prepare sessions (the recordings directory under %s)\n", b.cfg.data_dir);
    return 1;
  }
  if (broker_erase_key_init(b.cfg.data_dir, b.store, err, sizeof(err))) {
    fprintf(stderr, "tether-broker: %s\n", err);
    return 1;
  }
  if (broker_rollout_init(&b, b.store, err, sizeof(err))) {
    fprintf(stderr, "tether-broker: %s\n", err);
    return 1;
  }
  /* A store from before audit format 2 has its chain hashed again, once (audit.c). */
  if (broker_audit_rechain(&b, b.store)) {
    fprintf(stderr, "tether-broker: could not re-hash the audit chain (see the log)\n");
    return 1;
  }
  size_t ndevices = store_device_count(b.store);
  char tickets[600];
  snprintf(tickets, sizeof(tickets), "%s/tickets.key", b.cfg.data_dir);
  tt_tls_ctx_opts_t to = {.server = true, .ca_file = b.cfg.ca, .cert_file = b.cfg.cert, .key_file = b.cfg.key,
                          .allow_enroll = b.cfg.enroll, .ticket_key_file = tickets};
  if (tt_tls_ctx_new(&b.tls, &to, err, sizeof(err))) {
    fprintf(stderr, "tether-broker: %s\n", err);
    return 1;
  }
  b.loop = uv_default_loop();
  b.ssh_keys_version = 1; /* a gateway's first hello (0) is given the keys */
  if (store_svc_start(&b.svc, b.loop, b.store, b.cfg.data_dir, err, sizeof(err))) {
    fprintf(stderr, "tether-broker: store: %s\n", err);
    return 1;
  }
  b.store = NULL; /* the store thread's from here */
  if (gethostname(b.hostname, sizeof(b.hostname) - 1) != 0) snprintf(b.hostname, sizeof(b.hostname), "-");
  b.started_ms = broker_unix_ms();
  if (broker_siem_start(&b, err, sizeof(err))) {
    fprintf(stderr, "tether-broker: %s\n", err);
    return 2;
  }
  b.limits = (tt_tls_limits_t){
      .handshake_ms = (uint64_t)b.cfg.handshake_timeout_ms,
      .idle_ms = 0, /* idle peers are found on the broker's one wheel, not by a timer each */
      .high_water = TT_SOCKET_QUEUE_CAP,
      .low_water = TT_SOCKET_QUEUE_CAP / 4,
      .write_cap = TT_SOCKET_WRITE_CAP,
  };

  struct sockaddr_storage sa;
  char host[128];
  int rc = tt_addr_resolve(b.cfg.listen, &sa, host, sizeof(host));
  if (rc) {
    fprintf(stderr, "tether-broker: listen: cannot use '%s': %s\n", b.cfg.listen, tt_strerror(rc));
    return 2;
  }
  uv_tcp_init(b.loop, &b.listener);
  b.listener.data = &b;
  if ((rc = uv_tcp_bind(&b.listener, (struct sockaddr *)&sa, 0)) ||
      (rc = uv_listen((uv_stream_t *)&b.listener, 4096, broker_on_connection))) {
    fprintf(stderr, "tether-broker: cannot listen on %s: %s\n", b.cfg.listen, uv_strerror(rc));
    return 1;
  }
  struct sockaddr_storage bound;
  int blen = sizeof(bound);
  char where[80];
  uv_tcp_getsockname(&b.listener, (struct sockaddr *)&bound, &blen);
  tt_addr_format((struct sockaddr *)&bound, where, sizeof(where));

  uv_timer_init(b.loop, &b.heartbeat);
  b.heartbeat.data = &b;
  uv_timer_start(&b.heartbeat, broker_heartbeat_cb, (uint64_t)b.cfg.heartbeat_ms, (uint64_t)b.cfg.heartbeat_ms);
  uv_timer_init(b.loop, &b.sweep);
  b.sweep.data = &b;
  tt_wheel_init(&b.wheel, BROKER_SWEEP_MS, uv_now(b.loop));
  uv_timer_start(&b.sweep, broker_sweep_cb, BROKER_SWEEP_MS, BROKER_SWEEP_MS);
  uv_signal_init(b.loop, &b.sigint);
  uv_signal_init(b.loop, &b.sigterm);
  b.sigint.data = b.sigterm.data = &b;
  uv_signal_start(&b.sigint, on_signal, SIGINT);
  uv_signal_start(&b.sigterm, on_signal, SIGTERM);

  TT_INFO("broker", "listening", "addr=%s version=%s devices=%zu", where, TT_VERSION, ndevices);
  broker_audit_checkpoint(&b, "start", false); /* the chain as this broker found it */
  broker_audit(&b, "broker", "start", "", "listen", where, "version", TT_VERSION, AUDIT_END);
  broker_audit_log_head(&b, "start");
  uv_timer_init(b.loop, &b.checkpoint_timer);
  b.checkpoint_timer.data = &b;
  uv_timer_start(&b.checkpoint_timer, checkpoint_cb, (uint64_t)b.cfg.checkpoint_interval_ms,
                 (uint64_t)b.cfg.checkpoint_interval_ms);
  uv_timer_init(b.loop, &b.retention_timer);
  b.retention_timer.data = &b;
  uv_timer_start(&b.retention_timer, retention_cb, (uint64_t)b.cfg.retention_sweep_ms,
                 (uint64_t)b.cfg.retention_sweep_ms);
  uv_run(b.loop, UV_RUN_DEFAULT);
  broker_sessions_free(&b); /* may still write session-end entries: before "stop" */
  broker_frontdoor_flush(&b); /* refusals held back for a summary */
  broker_audit(&b, "broker", "stop", "", AUDIT_END);
  broker_audit_checkpoint(&b, "stop", false); /* after every entry of this run */
  store_svc_stop(b.svc);    /* every queued write lands; completions run here */
  broker_audit_log_head(&b, "stop");
  uv_run(b.loop, UV_RUN_DEFAULT); /* the store's loop handle closes */
  rc = uv_loop_close(b.loop);
  broker_siem_free(&b);
  broker_rollout_free(&b);
  tt_tls_ctx_free(b.tls);
  revoked_free(&b);
  X509_free(b.cp_cert);
  EVP_PKEY_free(b.cp_key);
  registry_free(&b);
  broker_frontdoor_free(&b);
  broker_signer_free(&b);
  X509_free(b.ca_cert);
  free(b.ca_pem);
  TT_INFO("broker", "stopped", "loop_close=%s", rc ? uv_err_name(rc) : "ok");
  return rc ? 1 : 0;
}
