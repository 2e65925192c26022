/* tether-agent: options and commands. `run` keeps this device reachable through the broker
 * (conn.c); `enroll` trades a one-time token for the device's identity (enroll.c). */
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <openssl/crypto.h>
#include <string.h>
#include "agent.h"
#include "tt/cli.h"
#include "tt/log.h"

#define OPT(n, f, t, field, lo, hi, d, h) \
  {n, f, t, offsetof(agent_cfg_t, field), sizeof(((agent_cfg_t *)0)->field), lo, hi, d, NULL, h}

static const tt_conf_opt_t agent_opts[] = {
    OPT("broker", "broker", TT_CONF_STR, broker, 3, 255, "127.0.0.1:7443", "broker address HOST:PORT"),
    OPT("server_name", "server-name", TT_CONF_STR, server_name, 0, 255, NULL,
        "name or IP the broker's certificate must carry (default: the broker's host)"),
    OPT("state_dir", "state-dir", TT_CONF_STR, state_dir, 1, AGENT_PATH_MAX - 32, AGENT_STATE_DIR_DEFAULT,
        "where enroll stores this device's identity (ca.pem, device.pem, device.key)"),
    OPT("tls.ca", "ca", TT_CONF_STR, ca, 1, AGENT_PATH_MAX - 1, NULL,
        "CA certificate (PEM) the broker must chain to (default: STATE_DIR/ca.pem)"),
    OPT("tls.cert", "cert", TT_CONF_STR, cert, 1, AGENT_PATH_MAX - 1, NULL,
        "this device's certificate (PEM) (default: STATE_DIR/device.pem)"),
    OPT("tls.key", "key", TT_CONF_STR, key, 1, AGENT_PATH_MAX - 1, NULL,
        "this device's private key (PEM) (default: STATE_DIR/device.key)"),
    OPT("hostname", "hostname", TT_CONF_STR, hostname, 0, TT_NAME_MAX, NULL,
        "hostname reported to the broker (default: the one given to enroll, else this machine's)"),
    OPT("backoff.base", "backoff-base", TT_CONF_DURATION, backoff_base_ms, 10, 600000, "500ms",
        "first reconnect delay ceiling"),
    OPT("backoff.max", "backoff-max", TT_CONF_DURATION, backoff_max_ms, 10, 3600000, "30s",
        "reconnect delays never exceed this (plus a broker's retry-after)"),
    OPT("handshake_timeout", "handshake-timeout", TT_CONF_DURATION, handshake_timeout_ms, 100, 120000,
        "10s", "give up a connection attempt after this long"),
    OPT("enroll.token", "token", TT_CONF_STR, token, 0, AGENT_TOKEN_MAX, NULL,
        "enroll: the one-time enrollment token from an admin ('-': read it from standard input)"),
    OPT("enroll.ca_pin", "ca-pin", TT_CONF_STR, ca_pin, 0, 127, NULL,
        "enroll: the broker CA's fingerprint, sha256:<64 hex> (tether-certs prints it)"),
    OPT("enroll.timeout", "timeout", TT_CONF_DURATION, enroll_timeout_ms, 1000, 600000, "15s",
        "enroll: give up when the broker has not answered after this long"),
    OPT("consent.socket", "consent-socket", TT_CONF_STR, consent_socket, 1, 107, AGENT_CONSENT_SOCKET_DEFAULT,
        "the local socket employees answer consent prompts on (tether-agent prompt)"),
    OPT("consent.users", "consent-users", TT_CONF_STR, consent_users, 0, AGENT_USERS_MAX, NULL,
        "users allowed on the consent socket, comma-separated (default: shell.user; root always)"),
    {"consent.policy", "consent-policy", TT_CONF_ENUM, offsetof(agent_cfg_t, consent_policy), sizeof(int), 0, 0,
     "ask", "ask|unattended|deny",
     "with no one to ask: wait for someone (ask), allow (unattended) or refuse at once (deny)"},
    OPT("consent.timeout", "consent-timeout", TT_CONF_DURATION, consent_timeout_ms, 1000, TT_CONSENT_TIMEOUT_MAX_MS,
        "60s", "how long the employee has to answer"),
    OPT("consent.dialog", "consent-dialog", TT_CONF_STR, consent_dialog, 0, AGENT_DIALOG_MAX, NULL,
        "command (/bin/sh -c) run for each request, TETHER_* in its environment; exit 0 = yes"),
    OPT("shell.user", "shell-user", TT_CONF_STR, shell_user, 0, TT_NAME_MAX, NULL,
        "user shells and commands run as (default: the agent's user; required when root)"),
    OPT("shell.path", "shell-path", TT_CONF_STR, shell_path, 1, AGENT_PATH_MAX - 1, "/usr/local/bin:/usr/bin:/bin",
        "PATH for shells and commands"),
    {"shell.containment", "shell-containment", TT_CONF_ENUM, offsetof(agent_cfg_t, containment), sizeof(int), 0, 0,
     "auto", "auto|cgroup|subreaper",
     "how a session's processes are kept together and killed: a cgroup v2 group per session (cgroup), keeper "
     "subreaper processes (subreaper), or cgroup where one can be made (auto)"},
    OPT("files.roots", "files-roots", TT_CONF_STR, files_roots, 0, AGENT_FILES_LIST_TEXT_MAX, NULL,
        "directories technicians may pull from and push to, comma-separated absolute paths (default: "
        "shell.user's home and /tmp; none: no read-write directory)"),
    OPT("files.read_only", "files-read-only", TT_CONF_STR, files_read_only, 0, AGENT_FILES_LIST_TEXT_MAX, NULL,
        "directories technicians may only pull from and list, comma-separated absolute paths"),
    OPT("inventory.interval", "inventory-interval", TT_CONF_DURATION, inventory_interval_ms, 1000,
        7 * 24 * 3600 * 1000LL, "1h",
        "how often the inventory is collected (each time within 10% either way, so a fleet spreads out); "
        "only the tables that changed are sent"),
    OPT("inventory.root", "inventory-root", TT_CONF_STR, inventory_root, 0, AGENT_PATH_MAX - 1, NULL,
        "read the machine's files (/proc, /sys, /etc, the package database) under this directory instead "
        "of / (an agent in a container that sees its host there); helper programs still run here"),
    OPT("inventory.path", "inventory-path", TT_CONF_STR, inventory_path, 1, AGENT_INV_PATH_MAX,
        "/usr/bin:/bin:/usr/sbin:/sbin",
        "PATH the inventory and diagnostics look their helper programs up in (systemctl, journalctl, "
        "rpm); each runs with a timeout and an output cap"),
    OPT("diag.dns_names", "diag-dns-names", TT_CONF_STR, diag_dns_names, 0, AGENT_DNS_NAMES_TEXT_MAX, NULL,
        "host names a diagnostics report resolves, comma-separated, at most 8 (default: the broker's host name "
        "unless it is an address, and this machine's own name)"),
    OPT("upgrade.release_keys", "upgrade-release-keys", TT_CONF_STR, upgrade_release_keys, 0, AGENT_PATH_MAX - 1,
        "/etc/tether/release.pub",
        "release public keys (PEM, from tether-certs release-key): an upgrade is taken only when its manifest "
        "is signed by one of them; without the file every upgrade is refused"),
    OPT("upgrade.install", "upgrade-install", TT_CONF_STR, upgrade_install, 1, AGENT_PATH_MAX - 1,
        "/usr/bin/dpkg -i --force-confdef --force-confold",
        "the command (sh -c) that installs a package, given as its last argument; it restarts the agent "
        "(the package's maintainer scripts do)"),
    OPT("upgrade.launcher", "upgrade-launcher", TT_CONF_STR, upgrade_launcher, 1, 15, "auto",
        "how the upgrade guard starts outside the agent: systemd-run (a unit of its own, so the service's "
        "restart does not stop it), fork, or auto (systemd-run when systemd runs this machine)"),
    {"log_level", "log-level", TT_CONF_ENUM, offsetof(agent_cfg_t, log_level), sizeof(int), 0, 0,
     "info", "debug|info|warn|error", "log verbosity"},
};
#define NOPTS (sizeof(agent_opts) / sizeof(agent_opts[0]))

/* checks.* in the config file (a [checks] section, or dotted keys): the catalogue checks
 * each over the defaults; a broker's policy later goes over these (checks/policy.c). */
static int checks_key(void *ctx, const char *name, const char *value, char *err, size_t errlen) {
  return tt_checks_set(ctx, name, value, err, errlen) ? TT_ECONFIG : 0;
}

/* Switches the commands handle themselves (bits of tt_cli_args_t.switches). */
static const char *const agent_switches[] = {"force", NULL};
#define SW_FORCE 1u

/* `--token -` reads the token from standard input, so that it never shows in the process
 * list. One line; nonzero if there is none or it does not fit. */
static int read_token(char *out, size_t cap) {
  char line[AGENT_TOKEN_MAX + 3];
  if (!fgets(line, sizeof(line), stdin)) return -1;
  size_t n = strcspn(line, "\r\n");
  if (n == 0 || n >= cap || line[n] == '\0') return -1; /* empty, or longer than a token */
  memcpy(out, line, n);
  out[n] = '\0';
  OPENSSL_cleanse(line, sizeof(line));
  return 0;
}

int main(int argc, char **argv) {
  static agent_t a;
  tt_cli_args_t args;
  tt_checks_defaults(&a.checks_local);
  const tt_conf_extra_t checks_extra = {.prefix = "checks.", .fn = checks_key, .ctx = &a.checks_local};
  const tt_cli_t cli = {
      .prog = "tether-agent",
      .usage = "usage: tether-agent [run] [--config FILE] [options]\n"
               "       tether-agent enroll --broker HOST:PORT --token TOKEN --ca-pin sha256:HEX\n"
               "                           [--state-dir DIR] [--hostname NAME] [--force]\n"
               "       tether-agent prompt|sessions|checks|end S-n [--consent-socket PATH]\n"
               "       tether-agent ask TEXT | tickets | comment T-n TEXT\n\n"
               "Tether's agent: keeps this device reachable for help-desk support through the\n"
               "broker, over one outbound mutual-TLS connection.\n\n"
               "commands:\n"
               "  run       connect to the broker and serve (default); renews the device\n"
               "            certificate over the live connection before it expires\n"
               "  enroll    make this device's key, trade a one-time token for its certificate\n"
               "            and store both in the state directory (--force replaces an\n"
               "            existing identity)\n"
               "  prompt    (the employee) show support requests as they come and answer them:\n"
               "            y or n on standard input, one line per answer\n"
               "  sessions  (the employee) list the support sessions live on this device\n"
               "  end S-n   (the employee) end a session at once\n"
               "  ask TEXT  (the employee) ask the help desk for help: opens a ticket with a\n"
               "            diagnostics snapshot of this machine (kept and sent later when\n"
               "            offline)\n"
               "  tickets   (the employee) your help requests: state, technician, last reply\n"
               "  comment T-n TEXT  (the employee) add to one of your tickets\n"
               "  checks    the health checks this agent runs: each result, its state and value\n"
               "  upgrade-guard  (the agent starts it) install a checked upgrade, wait for the new\n"
               "            agent to come back, roll back if it does not\n\n"
               "The config file may set checks too, over their defaults (a policy from the broker\n"
               "goes over both): a [checks] section with lines such as disk_used.threshold = 85%",
      .config_path = "/etc/tether/agent.conf",
      .switches = agent_switches,
      .extra = &checks_extra,
  };
  signal(SIGPIPE, SIG_IGN);
  signal(SIGXFSZ, SIG_IGN); /* a file limit reached is a write that fails (EFBIG), as a full disk is */
  if (tt_cli_parse(&cli, agent_opts, NOPTS, &a.cfg, argc, argv, &args)) return 2;
  /* `tether-agent help` is the usual help (asking the help desk is `ask`). */
  if (args.help || (args.npos == 1 && strcmp(args.pos[0], "help") == 0)) {
    tt_cli_help(&cli, agent_opts, NOPTS);
    printf("  --force           enroll: replace an identity already in the state directory\n");
    return 0;
  }
  if (args.version) {
    printf("tether-agent %s\n", agent_version);
    return 0;
  }
  const char *cmd = args.npos ? args.pos[0] : "run";
  if (strcmp(cmd, "upgrade-guard") == 0 && args.npos == 1) {
    tt_log_set_level((tt_log_level_t)a.cfg.log_level);
    return agent_upgrade_guard(&a.cfg);
  }
  bool enroll = strcmp(cmd, "enroll") == 0;
  bool end = strcmp(cmd, "end") == 0;
  if (end && args.npos != 2) {
    fprintf(stderr, "tether-agent: end needs the session to end (end S-4)\n");
    return 2;
  }
  bool ask = strcmp(cmd, "ask") == 0, comment = strcmp(cmd, "comment") == 0, tickets = strcmp(cmd, "tickets") == 0;
  if (comment && args.npos < 3) {
    fprintf(stderr, "tether-agent: comment needs your ticket and the text (comment T-42 \"happens on Wi-Fi only\")\n");
    return 2;
  }
  bool help_cmd = ask || comment || tickets;
  bool local = end || help_cmd || strcmp(cmd, "prompt") == 0 || strcmp(cmd, "sessions") == 0 ||
               strcmp(cmd, "checks") == 0;
  if ((args.npos > 1 && !end && !ask && !comment) || (!enroll && !local && strcmp(cmd, "run") != 0)) {
    fprintf(stderr, "tether-agent: unknown command '%s' (see --help)\n", args.npos > 1 ? args.pos[1] : cmd);
    return 2;
  }
  if (local) {
    tt_log_set_level(TT_LOG_OFF);
    if (end) return agent_local_end(&a.cfg, args.pos[1]);
    if (strcmp(cmd, "checks") == 0) return agent_local_checks(&a.cfg);
    if (ask) return agent_local_ask(&a.cfg, args.pos + 1, args.npos - 1);
    if (comment) return agent_local_comment(&a.cfg, args.pos[1], args.pos + 2, args.npos - 2);
    if (tickets) return agent_local_tickets(&a.cfg);
    return cmd[0] == 'p' ? agent_local_prompt(&a.cfg) : agent_local_sessions(&a.cfg);
  }
  if (!enroll && (args.switches & SW_FORCE)) {
    fprintf(stderr, "tether-agent: --force only applies to enroll\n");
    return 2;
  }
  if (a.cfg.backoff_base_ms > a.cfg.backoff_max_ms) {
    fprintf(stderr, "tether-agent: backoff.base must not exceed backoff.max\n");
    return 2;
  }
  if (enroll && strcmp(a.cfg.token, "-") == 0 && read_token(a.cfg.token, sizeof(a.cfg.token))) {
    fprintf(stderr, "tether-agent: --token -: no token on standard input (one line, at most %u bytes)\n",
            (unsigned)AGENT_TOKEN_MAX);
    return 2;
  }
  if (enroll) {
    /* One line on stderr says what went wrong; log lines only when asked for debug. */
    tt_log_set_level(a.cfg.log_level == TT_LOG_DEBUG ? TT_LOG_DEBUG : TT_LOG_OFF);
    return agent_enroll(&a.cfg, (args.switches & SW_FORCE) != 0);
  }
  tt_log_set_level((tt_log_level_t)a.cfg.log_level);
  return agent_run(&a);
}
