/* tether: the technician's and admin's console. Connects to the broker with the person's
 * certificate, runs one command, prints, exits. */
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "console.h"
#include "tt/addr.h"
#include "tt/cert.h"
#include "tt/log.h"
#include "tt/msg.h"

#define OPT(n, f, t, field, lo, hi, d, h) \
  {n, f, t, offsetof(console_cfg_t, field), sizeof(((console_cfg_t *)0)->field), lo, hi, d, NULL, h}

static const tt_conf_opt_t console_opts[] = {
    OPT("broker", "broker", TT_CONF_STR, broker, 3, 255, "127.0.0.1:7443", "broker address HOST:PORT"),
    OPT("server_name", "server-name", TT_CONF_STR, server_name, 0, 255, NULL,
        "name or IP the broker's certificate must carry (default: the broker's host)"),
    OPT("tls.ca", "ca", TT_CONF_STR, ca, 1, 511, NULL, "CA certificate (PEM) the broker must chain to"),
    OPT("tls.cert", "cert", TT_CONF_STR, cert, 1, 511, NULL, "your certificate (PEM)"),
    OPT("tls.key", "key", TT_CONF_STR, key, 1, 511, NULL, "your private key (PEM)"),
    OPT("timeout", "timeout", TT_CONF_DURATION, timeout_ms, 100, 86400000, "10s",
        "give up when the broker does not answer within this"),
    OPT("speedtest.bytes", "bytes", TT_CONF_SIZE, bytes, 0, 64ll << 30, "64M", "speedtest: bytes to pull"),
    OPT("ping.count", "count", TT_CONF_INT, count, 1, 10000000, "10", "ping: round trips to time"),
    {"log_level", "log-level", TT_CONF_ENUM, offsetof(console_cfg_t, log_level), sizeof(int), 0, 0,
     "error", "debug|info|warn|error", "log verbosity (the console prints its own one-line errors)"},
};
#define NOPTS (sizeof(console_opts) / sizeof(console_opts[0]))

static const console_cmd_t *const commands[] = {&console_cmd_devices, &console_cmd_speedtest,
                                                &console_cmd_ping};
#define NCMDS (sizeof(commands) / sizeof(commands[0]))

static const char *const switches[] = {"json", NULL};

void console_json_str(FILE *f, const char *s) {
  fputc('"', f);
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (*p == '"' || *p == '\\') fprintf(f, "\\%c", *p);
    else if (*p < 0x20 || *p == 0x7f) fprintf(f, "\\u%04x", *p);
    else fputc(*p, f);
  }
  fputc('"', f);
}

void console_finish(console_t *c, int exit_code) {
  if (c->done) return;
  c->done = true;
  c->exit_code = exit_code;
  uv_timer_stop(&c->timeout);
  if (c->link) tt_link_close(c->link, 0, NULL);
}

void console_fail(console_t *c, const char *fmt, ...) {
  if (c->done) return;
  va_list ap;
  va_start(ap, fmt);
  fputs("tether: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  console_finish(c, 1);
}

static void on_timeout(uv_timer_t *t) {
  console_t *c = t->data;
  console_fail(c, "no answer from the broker at %s within %lld ms", c->cfg.broker, (long long)c->cfg.timeout_ms);
}

static void on_up(tt_link_t *l) {
  console_t *c = l->data;
  tt_identity_t id, me;
  X509 *x = tt_link_peer_cert(l);
  if (!x || tt_cert_identity(x, &id) || id.role != TT_ROLE_BROKER) {
    console_fail(c, "%s is not a Tether broker", c->cfg.broker);
    return;
  }
  SSL_CTX *ctx = tt_tls_ctx_ssl(c->tls);
  X509 *mine = SSL_CTX_get0_certificate(ctx);
  if (!mine || tt_cert_identity(mine, &me)) {
    console_fail(c, "your certificate %s carries no Tether identity", c->cfg.cert);
    return;
  }
  Tether__Hello h = TETHER__HELLO__INIT;
  h.proto_version = TT_PROTO_VERSION;
  h.role = (Tether__Role)me.role;
  h.software_version = tt_text(TT_VERSION);
  h.capabilities = TETHER__CAPABILITY__CAP_ZSTD;
  h.hostname = tt_text("console");
  if (tt_link_send(l, TT_K_HELLO, &h.base)) console_fail(c, "cannot send hello");
}

static int on_control(tt_link_t *l, uint8_t kind, const ProtobufCMessage *m) {
  console_t *c = l->data;
  if (kind == TT_K_WELCOME && !c->welcomed) {
    const Tether__Welcome *w = (const Tether__Welcome *)m;
    if (w->proto_version != TT_PROTO_VERSION) {
      console_fail(c, "the broker speaks protocol %u, this console %u", w->proto_version, TT_PROTO_VERSION);
      return 0;
    }
    c->welcomed = true;
    tt_link_set_authed(l);
    /* The broker pings every heartbeat: silence this long means it is gone. */
    if (w->idle_timeout_ms) tt_tls_set_idle(l->tls, w->idle_timeout_ms);
    int rc = c->cmd->start(c);
    if (rc) console_fail(c, "%s", tt_strerror(rc));
    return 0;
  }
  if (kind == TT_K_RESPONSE && c->welcomed && c->cmd->on_response) {
    int rc = c->cmd->on_response(c, (const Tether__Response *)m);
    if (rc) console_fail(c, "%s", tt_strerror(rc));
    return 0;
  }
  if (kind == TT_K_ERROR) {
    const Tether__Error *e = (const Tether__Error *)m;
    char msg[TT_TEXT_MAX + 1];
    if (tt_text_copy(msg, sizeof(msg), e->message)) snprintf(msg, sizeof(msg), "(unprintable)");
    console_fail(c, "the broker closed the connection: %s", msg);
    return 0;
  }
  return TT_EKIND;
}

static void on_down(tt_link_t *l, int reason) {
  console_t *c = l->data;
  c->link = NULL;
  if (!c->done) {
    if (reason == TT_ECERT)
      console_fail(c, "TLS refused at %s: certificate not accepted (%s)", c->cfg.broker, tt_strerror(reason));
    else if (reason == 0 || reason == UV_EOF)
      console_fail(c, "the broker at %s closed the connection", c->cfg.broker);
    else if (reason == TT_ETIMEOUT)
      console_fail(c, "the broker at %s stopped answering", c->cfg.broker);
    else
      console_fail(c, "cannot talk to the broker at %s: %s", c->cfg.broker, tt_strerror(reason));
  }
  uv_close((uv_handle_t *)&c->timeout, NULL);
}

static tt_link_cbs_t link_cbs = {.on_up = on_up, .on_control = on_control, .on_down = on_down};

static void usage(const tt_cli_t *cli) {
  tt_cli_help(cli, console_opts, NOPTS);
  printf("\ncommands:\n");
  for (size_t i = 0; i < NCMDS; i++)
    printf("  %-10s %-16s %s\n", commands[i]->name, commands[i]->args, commands[i]->help);
}

int main(int argc, char **argv) {
  static console_t c;
  char defconf[512] = "";
  const char *home = getenv("HOME");
  if (home) snprintf(defconf, sizeof(defconf), "%s/.config/tether/console.conf", home);
  const char *envconf = getenv("TETHER_CONFIG");
  const tt_cli_t cli = {
      .prog = "tether",
      .usage = "usage: tether [--config FILE] [options] COMMAND [ARGS]\n\n"
               "Tether's console, for technicians and admins. The config file defaults to\n"
               "$TETHER_CONFIG, else ~/.config/tether/console.conf.",
      .config_path = envconf && *envconf ? envconf : defconf,
      .config_required = envconf && *envconf,
      .switches = switches,
  };
  signal(SIGPIPE, SIG_IGN);
  if (tt_cli_parse(&cli, console_opts, NOPTS, &c.cfg, argc, argv, &c.args)) return 2;
  if (c.args.help) {
    usage(&cli);
    return 0;
  }
  if (c.args.version) {
    printf("tether %s\n", TT_VERSION);
    return 0;
  }
  if (c.args.npos == 0) {
    fprintf(stderr, "tether: no command given (see --help)\n");
    return 2;
  }
  for (size_t i = 0; i < NCMDS; i++)
    if (strcmp(commands[i]->name, c.args.pos[0]) == 0) c.cmd = commands[i];
  if (!c.cmd) {
    fprintf(stderr, "tether: unknown command '%s' (see --help)\n", c.args.pos[0]);
    return 2;
  }
  int nargs = c.args.npos - 1;
  if (nargs < c.cmd->min_pos || nargs > c.cmd->max_pos) {
    fprintf(stderr, "tether: usage: tether %s %s\n", c.cmd->name, c.cmd->args);
    return 2;
  }
  c.json = c.args.switches & 1u;
  tt_log_set_level((tt_log_level_t)c.cfg.log_level);
  const char *missing = !c.cfg.ca[0] ? "tls.ca (--ca)" : !c.cfg.cert[0] ? "tls.cert (--cert)"
                        : !c.cfg.key[0] ? "tls.key (--key)" : NULL;
  if (missing) {
    fprintf(stderr, "tether: %s is required (set it in %s or pass the flag)\n", missing,
            cli.config_path);
    return 2;
  }

  char err[512];
  tt_tls_ctx_opts_t to = {.server = false, .ca_file = c.cfg.ca, .cert_file = c.cfg.cert, .key_file = c.cfg.key};
  if (tt_tls_ctx_new(&c.tls, &to, err, sizeof(err))) {
    fprintf(stderr, "tether: %s\n", err);
    return 1;
  }
  struct sockaddr_storage sa;
  char host[256];
  int rc = tt_addr_resolve(c.cfg.broker, &sa, host, sizeof(host));
  if (rc) {
    fprintf(stderr, "tether: cannot resolve broker '%s': %s\n", c.cfg.broker, tt_strerror(rc));
    tt_tls_ctx_free(c.tls);
    return 2;
  }
  c.loop = uv_default_loop();
  link_cbs.mux = console_mux_cbs;
  tt_tls_limits_t lim = {
      .handshake_ms = (uint64_t)c.cfg.timeout_ms,
      .idle_ms = (uint64_t)c.cfg.timeout_ms, /* until Welcome; then the broker's idle timeout */
      .high_water = TT_SOCKET_QUEUE_CAP,
      .low_water = TT_SOCKET_QUEUE_CAP / 4,
      .write_cap = TT_SOCKET_WRITE_CAP,
  };
  uv_timer_init(c.loop, &c.timeout);
  c.timeout.data = &c;
  uv_timer_start(&c.timeout, on_timeout, (uint64_t)c.cfg.timeout_ms, 0);
  const char *sn = c.cfg.server_name[0] ? c.cfg.server_name : host;
  rc = tt_link_connect(&c.link, c.tls, c.loop, (struct sockaddr *)&sa, sn, &lim, &link_cbs, &c);
  if (rc) {
    fprintf(stderr, "tether: cannot connect to %s: %s\n", c.cfg.broker, tt_strerror(rc));
    uv_close((uv_handle_t *)&c.timeout, NULL);
    c.exit_code = 1;
  }
  uv_run(c.loop, UV_RUN_DEFAULT);
  (void)uv_loop_close(c.loop);
  tt_tls_ctx_free(c.tls);
  return c.exit_code;
}
