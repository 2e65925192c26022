/* tether retention show [--json]                         how long each class of record is kept
 * tether retention set audit=2y closed_tickets=3y ...    (admins) audited; refused whole if one is bad
 * tether retention sweep                                 (admins) remove what expired now */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "console.h"
#include "report.h"
#include "tt/conf.h"
#include "tt/msg.h"

#define DAY_MS 86400000ll
#define SETTINGS_MAX 8
/* The longest class name (inventory_history) and its NUL, with room to spare. */
#define CLASS_NAME_MAX 24

static struct {
  Tether__RetentionOp op;
  char names[SETTINGS_MAX][CLASS_NAME_MAX];
  uint64_t keep[SETTINGS_MAX];
  size_t n;
} g_ret;

/* 90d, 12h, 2y (365 days), 1w: what people write for how long to keep something. */
static int parse_keep(const char *v, uint64_t *ms) {
  size_t n = strlen(v);
  if (n < 2) return -1;
  char unit = v[n - 1];
  char num[24];
  if (n - 1 >= sizeof num) return -1;
  memcpy(num, v, n - 1);
  num[n - 1] = '\0';
  char *end;
  unsigned long long k = strtoull(num, &end, 10);
  if (*end || !num[0] || num[0] == '-' || k == 0 || k > 100000) return -1;
  int64_t per = unit == 'y' ? 365 * DAY_MS : unit == 'w' ? 7 * DAY_MS : unit == 'd' ? DAY_MS : unit == 'h' ? 3600000 : 0;
  if (!per) return -1;
  *ms = (uint64_t)k * (uint64_t)per;
  return 0;
}

static int ret_check(console_t *c) {
  const char *sub = c->cmd->sub;
  g_ret.op = !strcmp(sub, "set") ? TETHER__RETENTION_OP__RETENTION_SET
             : !strcmp(sub, "sweep") ? TETHER__RETENTION_OP__RETENTION_SWEEP
                                     : TETHER__RETENTION_OP__RETENTION_SHOW;
  for (int i = 0; i < c->narg; i++) {
    const char *eq = strchr(c->arg[i], '=');
    size_t klen = eq ? (size_t)(eq - c->arg[i]) : 0;
    if (!eq || klen == 0 || klen >= sizeof g_ret.names[0])
      return console_usage_error("'%s': want CLASS=DURATION, like recordings=90d", c->arg[i]);
    if (g_ret.n >= SETTINGS_MAX) return console_usage_error("at most %d settings at once", SETTINGS_MAX);
    memcpy(g_ret.names[g_ret.n], c->arg[i], klen);
    g_ret.names[g_ret.n][klen] = '\0';
    if (parse_keep(eq + 1, &g_ret.keep[g_ret.n]))
      return console_usage_error("'%s': a duration is a number and a unit: 12h, 30d, 8w, 2y", eq + 1);
    g_ret.n++;
  }
  return 0;
}

static int ret_start(console_t *c) {
  Tether__RetentionRequest q = TETHER__RETENTION_REQUEST__INIT;
  Tether__RetentionSetting set[SETTINGS_MAX], *ptrs[SETTINGS_MAX];
  for (size_t i = 0; i < g_ret.n; i++) {
    tether__retention_setting__init(&set[i]);
    set[i].name = tt_text(g_ret.names[i]);
    set[i].keep_ms = g_ret.keep[i];
    ptrs[i] = &set[i];
  }
  q.op = g_ret.op;
  q.set = ptrs;
  q.n_set = g_ret.n;
  Tether__Request r = TETHER__REQUEST__INIT;
  r.body_case = TETHER__REQUEST__BODY_RETENTION;
  r.retention = &q;
  int rc = console_request(c, &r, TETHER__RESPONSE__BODY_RETENTION);
  /* A first sweep of a large store takes a while, a step at a time. */
  if (rc == 0 && g_ret.op == TETHER__RETENTION_OP__RETENTION_SWEEP && c->timeout_ms < 600000)
    console_arm_timeout_ms(c, 600000);
  return rc;
}

static void keep_text(char *dst, size_t cap, uint64_t ms) {
  if (ms % (365 * (uint64_t)DAY_MS) == 0) snprintf(dst, cap, "%" PRIu64 "y", ms / (365 * (uint64_t)DAY_MS));
  else if (ms % (uint64_t)DAY_MS == 0) snprintf(dst, cap, "%" PRIu64 "d", ms / (uint64_t)DAY_MS);
  else report_dur(dst, cap, ms);
}

static int ret_response(console_t *c, const Tether__Response *r) {
  const Tether__RetentionView *v = r->retention;
  if (g_ret.op == TETHER__RETENTION_OP__RETENTION_SWEEP) {
    if (c->json)
      printf("{\"recordings\":%" PRIu64 ",\"diagnostics\":%" PRIu64 ",\"closed_tickets\":%" PRIu64
             ",\"inventory_history\":%" PRIu64 ",\"transfer_events\":%" PRIu64 ",\"transfer_values\":%" PRIu64
             ",\"audit\":%" PRIu64 ",\"audit_base\":%" PRIu64 "}\n",
             v->recordings, v->diagnostics, v->closed_tickets, v->inventory_versions, v->transfer_events,
             v->transfer_values, v->audit_removed, v->audit_base);
    else
      printf("removed: %" PRIu64 " recordings, %" PRIu64 " diagnostics reports, %" PRIu64 " closed tickets, %" PRIu64
             " inventory versions, %" PRIu64 " transfer events, %" PRIu64 " transfer paths (released), %" PRIu64
             " audit entries (the audit now starts after entry %" PRIu64 ")\n",
             v->recordings, v->diagnostics, v->closed_tickets, v->inventory_versions, v->transfer_events,
             v->transfer_values, v->audit_removed, v->audit_base);
  } else if (c->json) {
    printf("{\"classes\":[");
    for (size_t i = 0; i < v->n_classes; i++) {
      const Tether__RetentionClass *k = v->classes[i];
      printf("%s{\"name\":", i ? "," : "");
      console_json_bytes(stdout, k->name);
      printf(",\"keep_ms\":%" PRIu64 ",\"default_ms\":%" PRIu64 ",\"why\":", k->keep_ms, k->default_ms);
      console_json_bytes(stdout, k->why);
      printf(",\"set_by\":");
      console_json_bytes(stdout, k->set_by);
      printf(",\"set\":");
      console_json_time(stdout, k->set_ms);
      printf("}");
    }
    printf("],\"holds\":%u}\n", v->holds);
  } else {
    printf("%-17s %-6s %-22s %s\n", "CLASS", "KEEP", "SET BY", "WHY THE DEFAULT");
    for (size_t i = 0; i < v->n_classes; i++) {
      const Tether__RetentionClass *k = v->classes[i];
      char name[40], keep[24], def[24], by[TT_NAME_MAX * 4 + 1], why[400], who[80];
      console_text(name, sizeof name, k->name);
      keep_text(keep, sizeof keep, k->keep_ms);
      keep_text(def, sizeof def, k->default_ms);
      console_text(by, sizeof by, k->set_by);
      console_text(why, sizeof why, k->why);
      if (by[0]) snprintf(who, sizeof who, "%.40s (default %s)", by, def);
      else snprintf(who, sizeof who, "(default)");
      printf("%-17s %-6s %-22s %s\n", name, keep, who, why);
    }
    bool one = v->holds == 1;
    printf("%u ticket%s on hold keep%s %s records past these.\n", v->holds, one ? "" : "s", one ? "s" : "",
           one ? "its" : "their");
  }
  fflush(stdout);
  console_finish(c, 0);
  return 0;
}

const console_cmd_t console_cmd_retention_show = {
    .name = "retention",
    .sub = "show",
    .args = "[--json]",
    .help = "how long each class of record is kept (audit, recordings, diagnostics, closed_tickets,"
            " inventory_history, transfers), and why",
    .switches = CONSOLE_SW_JSON,
    .check = ret_check,
    .start = ret_start,
    .on_response = ret_response,
};

const console_cmd_t console_cmd_retention_set = {
    .name = "retention",
    .sub = "set",
    .args = "CLASS=DURATION... (audit=2y recordings=90d diagnostics=30d closed_tickets=3y inventory_history=1y"
            " transfers=1y)",
    .help = "admin: keep a class of record this long (1 day to 10 years); audited",
    .min_pos = 1,
    .max_pos = SETTINGS_MAX,
    .switches = CONSOLE_SW_JSON,
    .check = ret_check,
    .start = ret_start,
    .on_response = ret_response,
};

const console_cmd_t console_cmd_retention_sweep = {
    .name = "retention",
    .sub = "sweep",
    .args = "[--json]",
    .help = "admin: remove now what retention expired (the broker also does every retention.sweep_interval)",
    .switches = CONSOLE_SW_JSON,
    .check = ret_check,
    .start = ret_start,
    .on_response = ret_response,
};
