/* Alerts and checks: tether alerts [--open] [--device D] [--json]; tether alert ack|snooze|
 * unsnooze A-n [--for 4h] [--reason TEXT]; tether checks [--device D] [--json]. The broker
 * keeps the alerts and the results its agents report; the console pages and prints them. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "console.h"
#include "tt/msg.h"

/* A broker that keeps claiming more pages cannot make a listing grow without end. */
#define LIST_ROWS_MAX (1u << 20)
#define NAME_SHOWN (TT_NAME_MAX * 4 + 1)
#define TEXT_SHOWN (TT_TEXT_MAX * 4 + 1)

static const char *alert_state(Tether__AlertState s) {
  static const char *const n[] = {"?", "open", "acked", "snoozed", "resolved", "suppressed"};
  return (unsigned)s < sizeof(n) / sizeof(n[0]) ? n[s] : "?";
}

static const char *check_state(Tether__CheckState s) {
  static const char *const n[] = {"pending", "ok", "failing", "unknown"};
  return (unsigned)s < sizeof(n) / sizeof(n[0]) ? n[s] : "?";
}

static void shown(char *dst, size_t cap, ProtobufCBinaryData t) {
  console_text(dst, cap, t);
  if (!dst[0]) snprintf(dst, cap, "-");
}

/* ---- alerts ------------------------------------------------------------------------------- */

typedef struct {
  uint64_t after;
  size_t rows;
  bool first;
} alerts_state_t;

static alerts_state_t g_al;

static int alerts_page(console_t *c) {
  Tether__AlertListRequest q = TETHER__ALERT_LIST_REQUEST__INIT;
  q.open = (c->args.switches & CONSOLE_SW_OPEN) != 0;
  q.device = tt_text(c->cfg.audit_device);
  q.after_id = g_al.after;
  Tether__Request r = TETHER__REQUEST__INIT;
  r.body_case = TETHER__REQUEST__BODY_ALERT_LIST;
  r.alert_list = &q;
  return console_request(c, &r, TETHER__RESPONSE__BODY_ALERT_LIST);
}

static int alerts_start(console_t *c) {
  g_al = (alerts_state_t){.first = true};
  return alerts_page(c);
}

static void alert_json(FILE *o, const Tether__Alert *a) {
  fprintf(o, "{\"id\":\"A-%" PRIu64 "\",\"device\":", a->id);
  console_json_bytes(o, a->device);
  fputs(",\"hostname\":", o);
  console_json_bytes(o, a->hostname);
  fputs(",\"check\":", o);
  console_json_bytes(o, a->check);
  fputs(",\"dimension\":", o);
  console_json_bytes(o, a->dimension);
  fprintf(o, ",\"state\":\"%s\",\"value\":", alert_state(a->state));
  console_json_bytes(o, a->value);
  fputs(",\"threshold\":", o);
  console_json_bytes(o, a->threshold);
  fprintf(o, ",\"opened_ms\":%" PRIu64 ",\"last_ms\":%" PRIu64 ",\"resolved_ms\":%" PRIu64, a->opened_ms, a->last_ms,
          a->resolved_ms);
  fputs(",\"ticket\":", o);
  if (a->ticket) fprintf(o, "\"T-%" PRIu64 "\"", a->ticket);
  else fputs("null", o);
  fputs(",\"storm\":", o);
  if (a->storm) fprintf(o, "\"T-%" PRIu64 "\"", a->storm);
  else fputs("null", o);
  fputs(",\"acked_by\":", o);
  console_json_bytes(o, a->acked_by);
  fprintf(o, ",\"snoozed_until_ms\":%" PRIu64 ",\"raised\":%u,\"suppressed\":%u}", a->snoozed_until_ms,
          (unsigned)a->raised, (unsigned)a->suppressed);
}

static void alert_line(const Tether__Alert *a, uint64_t now) {
  char host[NAME_SHOWN], check[NAME_SHOWN], dim[TEXT_SHOWN], value[TEXT_SHOWN], since[40], ticket[48];
  shown(host, sizeof(host), a->hostname.len ? a->hostname : a->device);
  shown(check, sizeof(check), a->check);
  shown(dim, sizeof(dim), a->dimension);
  console_text(value, sizeof(value), a->value);
  console_ago(since, sizeof(since), a->opened_ms, now);
  if (a->storm) snprintf(ticket, sizeof(ticket), "T-%" PRIu64 " (storm)", a->storm);
  else if (a->ticket) snprintf(ticket, sizeof(ticket), "T-%" PRIu64, a->ticket);
  else snprintf(ticket, sizeof(ticket), "-");
  char state[NAME_SHOWN + 16];
  if (a->state == TETHER__ALERT_STATE__ALERT_SNOOZED) {
    char until[40];
    console_iso(until, sizeof(until), a->snoozed_until_ms, false);
    snprintf(state, sizeof(state), "snoozed to %s", until);
  } else if (a->state == TETHER__ALERT_STATE__ALERT_ACKED && a->acked_by.len) {
    char by[NAME_SHOWN];
    console_text(by, sizeof(by), a->acked_by);
    snprintf(state, sizeof(state), "acked (%s)", by);
  } else {
    snprintf(state, sizeof(state), "%s", alert_state(a->state));
  }
  printf("A-%-6" PRIu64 " %-16s %-16s %-16s %-24s %-10s %-12s %s", a->id, check, host, dim, value, since, state, ticket);
  if (a->suppressed) printf("  (%u suppressed)", (unsigned)a->suppressed);
  putchar('\n');
}

static int alerts_response(console_t *c, const Tether__Response *r) {
  const Tether__AlertList *l = r->alert_list;
  if (!l || l->n_alerts > TT_ALERT_PAGE_MAX) return TT_EPROTO;
  uint64_t now = console_now_ms();
  if (g_al.first && c->json) fputc('[', stdout);
  if (g_al.first && !c->json)
    printf("%-8s %-16s %-16s %-16s %-24s %-10s %-12s %s\n", "ALERT", "CHECK", "DEVICE", "ON", "VALUE", "SINCE",
           "STATE", "TICKET");
  for (size_t i = 0; i < l->n_alerts; i++) {
    const Tether__Alert *a = l->alerts[i];
    if (!a || a->id <= g_al.after) return TT_EPROTO; /* pages go forward */
    if (c->json) {
      if (g_al.rows) fputc(',', stdout);
      alert_json(stdout, a);
    } else {
      alert_line(a, now);
    }
    g_al.after = a->id;
    g_al.rows++;
  }
  g_al.first = false;
  if (l->more && l->n_alerts && g_al.rows < LIST_ROWS_MAX) return alerts_page(c);
  if (c->json) fputs("]\n", stdout);
  else if (!g_al.rows) printf("(no alerts)\n");
  fflush(stdout);
  console_finish(c, 0);
  return 0;
}

const console_cmd_t console_cmd_alerts = {
    .name = "alerts",
    .args = "[--open] [--device D] [--json]",
    .help = "the alerts health checks raised: check, device, since, state, ticket (--open: not resolved)",
    .max_pos = 0,
    .switches = CONSOLE_SW_JSON | CONSOLE_SW_OPEN,
    .start = alerts_start,
    .on_response = alerts_response,
};

/* ---- ack, snooze, unsnooze ---------------------------------------------------------------- */

static struct {
  uint64_t id;
  Tether__AlertOp op;
} g_up;

static int up_check(console_t *c, Tether__AlertOp op) {
  if (console_parse_id(c->arg[0], 'A', false, &g_up.id) || !g_up.id)
    return console_usage_error("'%s' is not an alert (want A-5 or 5)", c->arg[0]);
  if (!tt_text_valid(tt_text(c->cfg.revoke_reason), TT_TEXT_MAX))
    return console_usage_error("--reason: one line of printable text, at most %u bytes", TT_TEXT_MAX);
  if (op == TETHER__ALERT_OP__ALERT_SNOOZE) {
    if (c->cfg.for_ms <= 0) return console_usage_error("snooze for how long? --for 4h (1m to 7d)");
    if (c->cfg.for_ms < 60000 || (uint64_t)c->cfg.for_ms > TT_ALERT_SNOOZE_MAX_MS)
      return console_usage_error("--for: a snooze lasts 1m to 7d (longer is a policy change)");
  } else if (c->cfg.for_ms) {
    return console_usage_error("--for only applies to snooze");
  }
  g_up.op = op;
  return 0;
}

static int ack_check(console_t *c) { return up_check(c, TETHER__ALERT_OP__ALERT_ACK); }
static int snooze_check(console_t *c) { return up_check(c, TETHER__ALERT_OP__ALERT_SNOOZE); }
static int unsnooze_check(console_t *c) { return up_check(c, TETHER__ALERT_OP__ALERT_UNSNOOZE); }

static int up_start(console_t *c) {
  Tether__AlertUpdateRequest q = TETHER__ALERT_UPDATE_REQUEST__INIT;
  q.id = g_up.id;
  q.op = g_up.op;
  q.duration_ms = (uint64_t)c->cfg.for_ms;
  q.reason = tt_text(c->cfg.revoke_reason);
  Tether__Request r = TETHER__REQUEST__INIT;
  r.body_case = TETHER__REQUEST__BODY_ALERT_UPDATE;
  r.alert_update = &q;
  return console_request(c, &r, TETHER__RESPONSE__BODY_ALERT);
}

static int up_response(console_t *c, const Tether__Response *r) {
  const Tether__Alert *a = r->alert;
  if (!a || !a->id) return TT_EPROTO;
  if (c->json) {
    alert_json(stdout, a);
    fputc('\n', stdout);
  } else if (a->state == TETHER__ALERT_STATE__ALERT_SNOOZED) {
    char until[40];
    console_iso(until, sizeof(until), a->snoozed_until_ms, false);
    printf("A-%" PRIu64 " snoozed until %s: no ticket while it lasts; what comes meanwhile is counted\n", a->id, until);
  } else if (a->state == TETHER__ALERT_STATE__ALERT_ACKED) {
    printf("A-%" PRIu64 " acknowledged%s\n", a->id, a->ticket ? " (its ticket is yours if no one had it)" : "");
  } else {
    printf("A-%" PRIu64 " is %s\n", a->id, alert_state(a->state));
  }
  fflush(stdout);
  console_finish(c, 0);
  return 0;
}

static void alert_not_found(console_t *c) { console_fail(c, "no such alert: A-%" PRIu64, g_up.id); }

#define ALERT_CMD(var, word, usage, text, chk)                                                    \
  const console_cmd_t var = {                                                                     \
      .name = "alert",                                                                            \
      .sub = word,                                                                                \
      .args = usage,                                                                              \
      .help = text,                                                                               \
      .min_pos = 1,                                                                               \
      .max_pos = 1,                                                                               \
      .switches = CONSOLE_SW_JSON,                                                                \
      .check = chk,                                                                               \
      .start = up_start,                                                                          \
      .on_response = up_response,                                                                 \
      .on_not_found = alert_not_found,                                                            \
  }

ALERT_CMD(console_cmd_alert_ack, "ack", "A-n [--reason TEXT]",
          "take an alert (its ticket becomes yours when no one has it)", ack_check);
ALERT_CMD(console_cmd_alert_snooze, "snooze", "A-n --for 4h [--reason TEXT]",
          "silence an alert for a while: no ticket meanwhile, each report counted", snooze_check);
ALERT_CMD(console_cmd_alert_unsnooze, "unsnooze", "A-n", "end a snooze now", unsnooze_check);

/* ---- checks -------------------------------------------------------------------------------- */

typedef struct {
  char after[TT_NAME_MAX + 1];
  size_t devices;
  bool first;
} checks_state_t;

static checks_state_t g_ck;

static int checks_page(console_t *c) {
  Tether__ChecksRequest q = TETHER__CHECKS_REQUEST__INIT;
  q.device = tt_text(c->cfg.audit_device);
  q.after = tt_text(g_ck.after);
  Tether__Request r = TETHER__REQUEST__INIT;
  r.body_case = TETHER__REQUEST__BODY_CHECKS;
  r.checks = &q;
  return console_request(c, &r, TETHER__RESPONSE__BODY_CHECKS);
}

static int checks_start(console_t *c) {
  g_ck = (checks_state_t){.first = true};
  return checks_page(c);
}

static void result_json(FILE *o, const Tether__CheckResult *x) {
  fputs("{\"check\":", o);
  console_json_bytes(o, x->check);
  fputs(",\"dimension\":", o);
  console_json_bytes(o, x->dimension);
  fprintf(o, ",\"state\":\"%s\",\"last\":\"%s\",\"value\":", check_state(x->state), check_state(x->last));
  console_json_bytes(o, x->value);
  fputs(",\"threshold\":", o);
  console_json_bytes(o, x->threshold);
  fputs(",\"message\":", o);
  console_json_bytes(o, x->message);
  fprintf(o, ",\"since_ms\":%" PRIu64 ",\"run_ms\":%" PRIu64 ",\"streak\":%u}", x->since_ms, x->run_ms,
          (unsigned)x->streak);
}

static int checks_response(console_t *c, const Tether__Response *r) {
  const Tether__ChecksList *l = r->checks;
  if (!l) return TT_EPROTO;
  uint64_t now = console_now_ms();
  if (g_ck.first && c->json) fputc('[', stdout);
  for (size_t i = 0; i < l->n_devices; i++) {
    const Tether__DeviceChecks *d = l->devices[i];
    if (!d || d->n_results > TT_CHECK_RESULTS_MAX) return TT_EPROTO;
    char dev[NAME_SHOWN], host[NAME_SHOWN], ago[40];
    shown(dev, sizeof(dev), d->device);
    shown(host, sizeof(host), d->hostname);
    if (c->json) {
      if (g_ck.devices) fputc(',', stdout);
      fputs("{\"device\":", stdout);
      console_json_bytes(stdout, d->device);
      fputs(",\"hostname\":", stdout);
      console_json_bytes(stdout, d->hostname);
      fprintf(stdout, ",\"policy_version\":%" PRIu64 ",\"policy_current\":%" PRIu64 ",\"reported_ms\":%" PRIu64
                      ",\"results\":[",
              d->policy_version, l->policy_version, d->reported_ms);
      for (size_t j = 0; j < d->n_results; j++) {
        if (j) fputc(',', stdout);
        result_json(stdout, d->results[j]);
      }
      fputs("]}", stdout);
    } else {
      if (d->reported_ms) console_ago(ago, sizeof(ago), d->reported_ms, now);
      else snprintf(ago, sizeof(ago), "never");
      printf("%s%s (%s): policy v%" PRIu64 "%s, reported %s\n", g_ck.devices ? "\n" : "", dev, host, d->policy_version,
             d->policy_version == l->policy_version ? "" : " (the broker's is newer: being pushed)", ago);
      if (d->n_results) printf("  %-18s %-24s %-8s %-14s %-10s %s\n", "CHECK", "ON", "STATE", "VALUE", "THRESHOLD", "SINCE");
      for (size_t j = 0; j < d->n_results; j++) {
        const Tether__CheckResult *x = d->results[j];
        char check[NAME_SHOWN], dim[TEXT_SHOWN], value[TEXT_SHOWN], thr[TEXT_SHOWN], msg[TEXT_SHOWN], since[40];
        shown(check, sizeof(check), x->check);
        shown(dim, sizeof(dim), x->dimension);
        shown(value, sizeof(value), x->value);
        shown(thr, sizeof(thr), x->threshold);
        console_text(msg, sizeof(msg), x->message);
        if (x->since_ms) console_ago(since, sizeof(since), x->since_ms, now);
        else snprintf(since, sizeof(since), "-");
        printf("  %-18s %-24s %-8s %-14s %-10s %s%s%s\n", check, dim, check_state(x->state), value, thr, since,
               msg[0] ? "  " : "", msg);
      }
      if (!d->n_results) printf("  (no results reported)\n");
    }
    g_ck.devices++;
    console_text(g_ck.after, sizeof(g_ck.after), d->device);
  }
  g_ck.first = false;
  if (l->next.len && l->n_devices && g_ck.devices < LIST_ROWS_MAX) return checks_page(c);
  if (c->json) fputs("]\n", stdout);
  else if (!g_ck.devices) printf("(no device has reported checks yet)\n");
  fflush(stdout);
  console_finish(c, 0);
  return 0;
}

const console_cmd_t console_cmd_checks = {
    .name = "checks",
    .args = "[--device D] [--json]",
    .help = "the health checks in force on each device and their last results, with the policy version it runs",
    .max_pos = 0,
    .switches = CONSOLE_SW_JSON,
    .start = checks_start,
    .on_response = checks_response,
};
