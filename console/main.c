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
    OPT("speedtest.bytes", "bytes", TT_CONF_SIZE, bytes, 0, (int64_t)TT_THROUGHPUT_BYTES_MAX, "64M",
        "speedtest: bytes to pull (at most 1G)"),
    OPT("ping.count", "count", TT_CONF_INT, count, 1, 10000000, "10", "ping: round trips to time"),
    OPT("token.ttl", "ttl", TT_CONF_DURATION, token_ttl_ms, 1000, 30ll * 86400000, "1h",
        "token new: how long the token stays valid"),
    OPT("token.uses", "uses", TT_CONF_INT, token_uses, 1, 100000, "1",
        "token new: how many devices may enroll with it"),
    OPT("token.note", "note", TT_CONF_STR, token_note, 0, TT_TEXT_MAX, NULL,
        "token new: a note kept with the token (who it is for); ticket resolve, person add: a note"),
    OPT("revoke.reason", "reason", TT_CONF_STR, revoke_reason, 0, TT_TEXT_MAX, NULL,
        "revoke: why, for the audit log; ticket hold: why its records are held; rollout pause, cancel: why"),
    OPT("sshkey.person", "person", TT_CONF_STR, ssh_person, 0, TT_NAME_MAX, NULL,
        "ssh-key add, list: another person's keys (admins)"),
    OPT("person.role", "role", TT_CONF_STR, person_role, 0, 15, NULL, "person add: technician or admin"),
    OPT("audit.since", "since", TT_CONF_STR, audit_since, 0, 63, NULL,
        "audit: entries from this time on; inventory diff: from the version current then: "
        "2026-11-23T18:00:00Z, or back from now: 30m, 2h, 7d"),
    OPT("audit.device", "device", TT_CONF_STR, audit_device, 0, TT_NAME_MAX, NULL,
        "audit: only entries with this device (or person) as actor or target; tickets: only "
        "this device's; ticket new, session open: the device"),
    OPT("audit.from", "from", TT_CONF_INT, audit_from, 0, INT64_MAX, "0",
        "audit follow: start at this sequence number (the last one printed, plus one)"),
    OPT("audit.limit", "limit", TT_CONF_INT, audit_limit, 0, CONSOLE_AUDIT_LIMIT_MAX, "0",
        "audit: print at most this many entries (0 = all)"),
    OPT("ticket.summary", "summary", TT_CONF_STR, summary, 0, TT_TEXT_MAX, NULL,
        "ticket new: what is wrong, one line"),
    OPT("ticket.requester", "requester", TT_CONF_STR, requester, 0, TT_TEXT_MAX, NULL,
        "ticket new: who asked for help"),
    OPT("ticket.priority", "priority", TT_CONF_STR, priority, 0, 15, NULL,
        "ticket new: low|normal|high|urgent (default: normal)"),
    OPT("ticket.external_id", "external-id", TT_CONF_STR, external_id, 0, TT_NAME_MAX, NULL,
        "ticket new: the ticket's id in another system"),
    OPT("tickets.state", "state", TT_CONF_STR, state, 0, 63, "open",
        "tickets: open|resolved|closed|all, or several: open,resolved"),
    OPT("ticket.level", "level", TT_CONF_INT, level, 0, 3, "0",
        "ticket escalate: the support level, 2 or 3; person add: theirs, 1 to 3 (level 3 technicians "
        "write the knowledge base)"),
    OPT("policy.group", "group", TT_CONF_STR, group, 0, TT_ASSET_CELL_MAX, NULL,
        "policy set, unset, show; maintenance add; rollout start (default there: \"*\"): \"*\" (every device) or "
        "a department, location or group value of the asset records"),
    OPT("kb.title", "title", TT_CONF_STR, kb_title, 0, TT_TEXT_MAX, NULL, "kb add, kb edit: the article's title"),
    OPT("inventory.table", "table", TT_CONF_STR, inv_table, 0, 63, NULL,
        "inventory: one table (deb_packages, mounts, ...), all its rows"),
    OPT("inventory.at", "at", TT_CONF_INT, inv_version, 0, INT64_MAX, "0",
        "inventory: as of this version (see inventory history; 0 = the latest)"),
    OPT("inventory.match", "match", TT_CONF_STR, asset_match, 1, 15, "serial",
        "inventory import: the key that matches a row to a device: serial (Serial = the device's "
        "SMBIOS serial), hostname (Name = its hostname), mac (MAC Address = one of its MACs) or "
        "asset_tag (an existing record's Asset Tag)"),
    OPT("inventory.format", "format", TT_CONF_STR, asset_format, 0, 7, NULL,
        "inventory import: csv or json (default: by the file's name); export: csv (default) or json; report: "
        "table (default), csv, json or html"),
    OPT("person.dir", "dir", TT_CONF_STR, person_dir, 0, 511, NULL,
        "person export: write NAME.json and the recordings' files (R-n.cast.zst) into this directory"),
    OPT("release.manifest", "manifest", TT_CONF_STR, manifest, 0, 511, NULL,
        "release add: the release's signed manifest (default: PACKAGE.manifest)"),
    OPT("release.channel", "channel", TT_CONF_STR, channel, 0, TT_NAME_MAX, NULL,
        "release add, rollout start: the release channel (default: stable)"),
    OPT("rollout.canary", "canary", TT_CONF_STR, canary, 1, 7, "5",
        "rollout start: the first wave, percent of the devices (5% or 5; at least one device)"),
    OPT("rollout.wave", "wave", TT_CONF_STR, wave, 1, 7, "25", "rollout start: each later wave, percent of the devices"),
    OPT("rollout.pause_on_failure", "pause-on-failure", TT_CONF_INT, pause_on_failure, 1, TT_ROLLOUT_DEVICES_MAX, "1",
        "rollout start: this many failed devices pause it"),
    OPT("rollout.health", "health", TT_CONF_DURATION, health_ms, TT_ROLLOUT_HEALTH_MIN_S * 1000ll,
        TT_ROLLOUT_HEALTH_MAX_S * 1000ll, "10m",
        "rollout start: how long an upgraded agent has to come back healthy (90s, 10m, 1h)"),
    OPT("report.by", "by", TT_CONF_STR, report_by, 0, 15, NULL,
        "report sla: one row per technician, priority, level, device or department"),
    OPT("session.ticket", "ticket", TT_CONF_STR, ticket, 0, 31, NULL,
        "session open, shell, exec, diag, ping, speedtest, pull, push, cp, ls: the ticket the work is for "
        "(T-3; cp and the other file commands also take TETHER_TICKET)"),
    OPT("session.want", "want", TT_CONF_STR, want, 0, 31, NULL,
        "session open: access to ask for: shell, files, diag (comma-separated)"),
    OPT("session.for", "for", TT_CONF_DURATION, for_ms, 0, 30ll * 86400000, NULL,
        "session open, shell, exec, diag, ping, speedtest, pull, push, cp, ls: how long the session may last (default: "
        "the broker's, 30m; at most 12h); alert snooze: how long (up to 7d); maintenance add: how long the window "
        "lasts (up to 30d)"),
    OPT("replay.speed", "speed", TT_CONF_STR, speed, 1, 31, "1",
        "replay: play this many times faster (0 = no waiting)"),
    OPT("replay.idle_max", "idle-max", TT_CONF_DURATION, idle_max_ms, 0, 86400000, "0",
        "replay: shorten pauses to at most this (0 = play them as recorded)"),
    OPT("recording.index", "index", TT_CONF_INT, index, 0, 1000000, "0",
        "recording export: which of the session's recordings (0 = the first)"),
    {"log_level", "log-level", TT_CONF_ENUM, offsetof(console_cfg_t, log_level), sizeof(int), 0, 0,
     "error", "debug|info|warn|error", "log verbosity (the console prints its own one-line errors)"},
};
#define NOPTS (sizeof(console_opts) / sizeof(console_opts[0]))

/* In --help order. Commands sharing a first word are told apart by their second (sub);
 * one without a sub takes what is left ("audit" besides "audit verify"). */
static const console_cmd_t *const commands[] = {
    &console_cmd_devices,         &console_cmd_device_show,      &console_cmd_ticket_new,
    &console_cmd_tickets,         &console_cmd_ticket_show,      &console_cmd_ticket_assign,
    &console_cmd_ticket_escalate, &console_cmd_ticket_comment,   &console_cmd_ticket_resolve,
    &console_cmd_ticket_close,    &console_cmd_ticket_reopen,    &console_cmd_ticket_link,
    &console_cmd_ticket_unlink,   &console_cmd_kb_search,        &console_cmd_kb_show,
    &console_cmd_kb_add,          &console_cmd_kb_edit,          &console_cmd_session_open,
    &console_cmd_sessions,        &console_cmd_session_end,      &console_cmd_shell,
    &console_cmd_exec,            &console_cmd_replay,           &console_cmd_recording_export,
    &console_cmd_pull,            &console_cmd_push,             &console_cmd_cp,
    &console_cmd_ls,
    &console_cmd_diag_show,       &console_cmd_diag,             &console_cmd_inventory_history, &console_cmd_inventory_diff,
    &console_cmd_inventory_find,
    &console_cmd_inventory_import, &console_cmd_inventory_export,
    &console_cmd_inventory,
    &console_cmd_ping,             &console_cmd_speedtest,        &console_cmd_token_new,
    &console_cmd_revoke_device,   &console_cmd_revoke_person,    &console_cmd_person_add,
    &console_cmd_people,          &console_cmd_audit_follow,     &console_cmd_audit,            &console_cmd_audit_verify,
    &console_cmd_alerts,          &console_cmd_alert_ack,        &console_cmd_alert_snooze,
    &console_cmd_alert_unsnooze,  &console_cmd_checks,           &console_cmd_policy_set,
    &console_cmd_policy_unset,    &console_cmd_policy_show,      &console_cmd_maintenance_add,
    &console_cmd_maintenance,     &console_cmd_ssh_key_add,      &console_cmd_ssh_key_list,
    &console_cmd_ssh_key_remove,  &console_cmd_ssh_config,       &console_cmd_report_sla,
    &console_cmd_report_activity, &console_cmd_status,         &console_cmd_retention_show,
    &console_cmd_retention_set,   &console_cmd_retention_sweep,  &console_cmd_ticket_hold,
    &console_cmd_ticket_release,  &console_cmd_person_export, &console_cmd_person_erase,
    &console_cmd_release_add,     &console_cmd_release_list,     &console_cmd_release_remove,     &console_cmd_rollout_start,
    &console_cmd_rollout_status,  &console_cmd_rollout_pause,    &console_cmd_rollout_resume,
    &console_cmd_rollout_cancel,
};
#define NCMDS (sizeof(commands) / sizeof(commands[0]))

/* Bit i is CONSOLE_SW_*: keep in that order. */
static const char *const switches[] = {"json", "online", "mine", "all", "force", "resume", "recursive", "attach",
                                       "dry-run", "public", "open", "tty", "wait", NULL};
/* One-letter spellings of switches, as cp and scp users type them. */
static const struct {
  const char *letter, *name;
} short_switches[] = {{"-r", "--recursive"}, {"-t", "--tty"}};

static void on_timeout(uv_timer_t *t);

void console_arm_timeout(console_t *c) {
  console_arm_timeout_ms(c, (uint64_t)c->cfg.timeout_ms);
}

void console_arm_timeout_ms(console_t *c, uint64_t ms) {
  c->timeout_ms = ms;
  uv_timer_start(&c->timeout, on_timeout, ms, 0);
}

int console_usage_error(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("tether: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  return 2;
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
  console_tty_restore(); /* a shell's raw terminal would garble the line */
  fputs("tether: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  console_finish(c, 1);
}

static void on_timeout(uv_timer_t *t) {
  console_t *c = t->data;
  console_fail(c, "no answer from the broker at %s within %llu ms", c->cfg.broker,
               (unsigned long long)c->timeout_ms);
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
    int rc = console_begin(c);
    if (rc) console_fail(c, "%s", tt_strerror(rc));
    return 0;
  }
  if (kind == TT_K_RESPONSE && c->welcomed) {
    console_on_response(c, (const Tether__Response *)m);
    return 0;
  }
  if (kind == TT_K_ERROR) {
    const Tether__Error *e = (const Tether__Error *)m;
    char msg[TT_TEXT_MAX * 4 + 1];
    console_text(msg, sizeof(msg), e->message);
    if (!msg[0]) snprintf(msg, sizeof(msg), "%s", tt_strerror(tt_err_from_wire(e->code)));
    /* Refused for who we are (a role not allowed here, a revoked identity): say so as the
     * answer to a refused request would. */
    if (e->code == TETHER__ERROR_CODE__ERR_DENIED || e->code == TETHER__ERROR_CODE__ERR_ROLE)
      console_fail(c, "permission denied: %s", msg);
    else
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

/* "name [sub] args" of one command. */
static void cmd_synopsis(const console_cmd_t *cmd, char *out, size_t cap) {
  snprintf(out, cap, "%s%s%s%s%s", cmd->name, cmd->sub ? " " : "", cmd->sub ? cmd->sub : "",
           cmd->args[0] ? " " : "", cmd->args);
}

static void usage(const tt_cli_t *cli) {
  char syn[160];
  tt_cli_help(cli, console_opts, NOPTS);
  printf("  --json            print JSON instead of a table (JSON lines for audit)\n"
         "  --online          devices: only the ones connected now\n"
         "  --mine            tickets: only the ones assigned to you\n"
         "  --all             sessions: everyone's (admins)\n"
         "  -r, --recursive   pull, push, cp: whole directories; ls: the whole tree\n"
         "  --attach          diag: keep the report on the ticket (D-n, shown by ticket show)\n"
         "  --public          ticket comment: the requester sees it (tether-agent tickets, their prompt)\n"
         "  --wait            ticket comment --public: a question; the ticket waits on the requester until\n"
         "                    they answer (report sla shows that time apart)\n"
         "  --dry-run         inventory import: the match report only, nothing changed\n"
         "  --where F=V       devices: only those whose asset record has F = V (owner, department,\n"
         "                    location, model, manufacturer, category, asset_tag, serial, or a\n"
         "                    custom column's name); repeat it: every one must hold\n"
         "  --check C         kb add, kb edit: a health check the article is the fix for\n"
         "                    (disk_used); repeat it for several; kb edit --check '': none\n"
         "  --force           pull, push, cp: replace files that exist at the target\n"
         "  --resume          pull, push, cp: resume a cut transfer (running the same command\n"
         "                    again always does)\n"
         "  --                exec: the command and its arguments follow\n\ncommands:\n");
  for (size_t i = 0; i < NCMDS; i++) {
    cmd_synopsis(commands[i], syn, sizeof(syn));
    if (strlen(syn) <= 40) printf("  %-40s %s\n", syn, commands[i]->help);
    else printf("  %s\n  %-40s %s\n", syn, "", commands[i]->help);
  }
  printf("\nTickets are T-<n>, sessions S-<n>, recordings R-<n>, articles KB-<n> (T-3 or 3 both work\n"
         "where the kind is clear). shell, exec and the file commands (pull, push, cp, ls) open a session\n"
         "first (or reuse a live one): the person at the device is asked and must agree; so do\n"
         "diag, ping and speedtest (diag access), which only admins may run without --ticket. You hold\n"
         "at most %u channels on one device. admin commands (token, revoke, person, people,\n"
         "audit, release, rollout) need an admin certificate. Technicians assign tickets to themselves\n"
         "only; admins assign them to any person the broker knows (see people). Exit status: 0 done, 1 failed\n"
         "(one line on stderr says why; pull, push, cp: a line for each file that failed, the\n"
         "others done), 2 bad usage; shell and exec: the remote command's status (128+N for\n"
         "signal N; exec: 127 not found, 126 not runnable), 255 when the channel closed without\n"
         "one.\n",
         TT_CHANNELS_PER_PERSON_DEVICE_MAX);
}

/* The command named by the positional words, or NULL after printing why not. */
static const console_cmd_t *find_command(const tt_cli_args_t *a) {
  const char *w0 = a->pos[0], *w1 = a->npos > 1 ? a->pos[1] : NULL;
  const console_cmd_t *plain = NULL;
  bool named = false;
  for (size_t i = 0; i < NCMDS; i++) {
    if (strcmp(commands[i]->name, w0) != 0) continue;
    named = true;
    if (!commands[i]->sub) plain = commands[i];
    else if (w1 && strcmp(commands[i]->sub, w1) == 0) return commands[i];
  }
  if (plain) return plain;
  if (!named) {
    fprintf(stderr, "tether: unknown command '%s' (see --help)\n", w0);
    return NULL;
  }
  char syn[160];
  const char *lead = "tether: usage:";
  for (size_t i = 0; i < NCMDS; i++) {
    if (strcmp(commands[i]->name, w0) != 0) continue;
    cmd_synopsis(commands[i], syn, sizeof(syn));
    fprintf(stderr, "%s tether %s\n", lead, syn);
    lead = "              ";
  }
  return NULL;
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
      /* The same for everyone, not this user's home: the man page is made from --help. */
      .config_shown = envconf && *envconf ? NULL : "~/.config/tether/console.conf",
      .config_required = envconf && *envconf,
      .switches = switches,
  };
  signal(SIGPIPE, SIG_IGN);
  /* Everything after the first `--` is exec's command, however many words and whatever
   * they look like; for other commands those words are positional arguments. */
  int dash = argc;
  for (int i = 1; i < argc; i++)
    if (strcmp(argv[i], "--") == 0) {
      dash = i;
      break;
    }
  /* --where and --check may be given many times (the option table keeps one value per name):
   * taken out of argv here, in order. */
  const struct {
    const char *flag, *needs;
    const char **to;
    int *n;
    int max;
  } repeated[] = {
      {"--where", "field=value", c.where, &c.nwhere, (int)TT_ASSET_WHERE_MAX},
      {"--check", "a check's name", c.checks, &c.nchecks, (int)TT_KB_CHECKS_MAX},
  };
  for (int i = 1; i < dash;) {
    const char *v = NULL;
    int take = 0;
    size_t k = 0;
    for (; k < sizeof(repeated) / sizeof(repeated[0]) && !take; k++) {
      size_t fl = strlen(repeated[k].flag);
      if (strcmp(argv[i], repeated[k].flag) == 0) {
        if (i + 1 >= dash) {
          fprintf(stderr, "tether: %s needs %s\n", repeated[k].flag, repeated[k].needs);
          return 2;
        }
        v = argv[i + 1];
        take = 2;
      } else if (strncmp(argv[i], repeated[k].flag, fl) == 0 && argv[i][fl] == '=') {
        v = argv[i] + fl + 1;
        take = 1;
      }
    }
    if (!take) {
      i++;
      continue;
    }
    k--;
    if (*repeated[k].n >= repeated[k].max) {
      fprintf(stderr, "tether: %s at most %d times\n", repeated[k].flag, repeated[k].max);
      return 2;
    }
    repeated[k].to[(*repeated[k].n)++] = v;
    memmove(argv + i, argv + i + take, (size_t)(argc - i - take) * sizeof(*argv));
    argc -= take;
    dash -= take;
    argv[argc] = NULL;
  }
  for (int i = 1; i < dash; i++)
    for (size_t k = 0; k < sizeof(short_switches) / sizeof(short_switches[0]); k++)
      if (strcmp(argv[i], short_switches[k].letter) == 0) argv[i] = (char *)(uintptr_t)short_switches[k].name;
  if (tt_cli_parse(&cli, console_opts, NOPTS, &c.cfg, dash, argv, &c.args)) return 2;
  if (dash < argc) {
    c.rest = argv + dash + 1;
    c.nrest = argc - dash - 1;
  }
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
  c.cmd = find_command(&c.args);
  if (!c.cmd) return 2;
  if (c.cmd != &console_cmd_exec && c.nrest > 0) {
    for (int i = 0; i < c.nrest; i++) {
      if (c.args.npos >= TT_CLI_POS_MAX) {
        fprintf(stderr, "tether: too many arguments\n");
        return 2;
      }
      c.args.pos[c.args.npos++] = c.rest[i];
    }
    c.nrest = 0;
  }
  /* --for is a session's length everywhere but where a snooze or a window is meant. */
  if (c.cfg.for_ms > (int64_t)TT_SESSION_DURATION_MAX_MS && strcmp(c.cmd->name, "alert") != 0 &&
      strcmp(c.cmd->name, "maintenance") != 0) {
    fprintf(stderr, "tether: --for: a session lasts at most 12h\n");
    return 2;
  }
  int words = c.cmd->sub ? 2 : 1;
  c.arg = c.args.pos + words;
  c.narg = c.args.npos - words;
  if (c.narg < c.cmd->min_pos || c.narg > c.cmd->max_pos) {
    char syn[160];
    cmd_synopsis(c.cmd, syn, sizeof(syn));
    fprintf(stderr, "tether: usage: tether %s\n", syn);
    return 2;
  }
  if (c.nwhere && c.cmd != &console_cmd_devices)
    return console_usage_error("--where does not apply to '%s'", c.cmd->name);
  if (c.nchecks && c.cmd != &console_cmd_kb_add && c.cmd != &console_cmd_kb_edit)
    return console_usage_error("--check does not apply to '%s'", c.cmd->name);
  unsigned stray = c.args.switches & ~c.cmd->switches;
  for (int i = 0; switches[i]; i++)
    if (stray & (1u << i))
      return console_usage_error("--%s does not apply to '%s'", switches[i], c.cmd->name);
  c.json = c.args.switches & CONSOLE_SW_JSON;
  c.online = c.args.switches & CONSOLE_SW_ONLINE;
  c.mine = c.args.switches & CONSOLE_SW_MINE;
  c.all = c.args.switches & CONSOLE_SW_ALL;
  /* DEVICE as typed: arg[0] reads the id in its place once the broker resolved it. */
  if (c.cmd->device_arg && c.narg > 0 && strlen(c.arg[0]) < sizeof(c.device)) {
    memcpy(c.device, c.arg[0], strlen(c.arg[0]) + 1);
    c.args.pos[words] = c.device;
    c.device_to = c.device;
  }
  if (c.cmd->check && c.cmd->check(&c)) return 2;
  if (!c.device_to && c.cfg.audit_device[0]) c.device_to = c.cfg.audit_device;
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
  link_cbs.mux = c.cmd->mux ? *c.cmd->mux : console_mux_cbs;
  tt_tls_limits_t lim = {
      .handshake_ms = (uint64_t)c.cfg.timeout_ms,
      .idle_ms = (uint64_t)c.cfg.timeout_ms, /* until Welcome; then the broker's idle timeout */
      .high_water = TT_SOCKET_QUEUE_CAP,
      .low_water = TT_SOCKET_QUEUE_CAP / 4,
      .write_cap = TT_SOCKET_WRITE_CAP,
  };
  uv_timer_init(c.loop, &c.timeout);
  c.timeout.data = &c;
  console_arm_timeout(&c);
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
  console_tty_restore();
  if (c.exit_code == 0 && c.cmd->after) c.exit_code = c.cmd->after(&c);
  return c.exit_code;
}
