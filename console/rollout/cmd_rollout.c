/* tether rollout start VERSION [--channel C] [--group G] [--canary P] [--wave P]
 * [--pause-on-failure N] [--health DURATION] (admins): offer a release to a group's agents in
 * waves, a canary first; the broker moves on while they come back healthy and pauses after
 * N failures. tether rollout status|pause|resume|cancel [ID]: one rollout (the latest when no
 * ID), printed the same way after each. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "console.h"
#include "tt/msg.h"
#include "tt/release.h"

/* States a rollout's counts may name (RolloutDevice.state lists eleven): limits.h has none. */
#define ROLLOUT_STATES_MAX 16u
/* Rollout ids as people type them: "3" or "RO-3". */
#define ROLLOUT_PREFIX "RO-"

static struct {
  Tether__RolloutOp op;
  uint64_t id;
  uint32_t canary, wave;
} g_ro;

/* "5%" or "5": 1..100. */
static int parse_pct(const char *flag, const char *s, uint32_t *pct) {
  size_t n = strlen(s);
  if (n && s[n - 1] == '%') n--;
  uint32_t v = 0;
  bool ok = n >= 1 && n <= 3;
  for (size_t i = 0; ok && i < n; i++) {
    ok = s[i] >= '0' && s[i] <= '9';
    v = v * 10 + (uint32_t)(s[i] - '0');
  }
  if (!ok || v < 1 || v > 100)
    return console_usage_error("--%s '%s': a percentage of the devices, 1 to 100 (5%% or 5)", flag, s);
  *pct = v;
  return 0;
}

/* A version as manifests write it: Debian's characters, a digit first. The broker knows which
 * exist. */
static bool version_ok(const char *v) {
  size_t n = strlen(v);
  if (n == 0 || n > TT_RELEASE_VERSION_MAX || v[0] < '0' || v[0] > '9') return false;
  for (size_t i = 0; i < n; i++)
    if (!strchr("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.+~:-", v[i])) return false;
  return true;
}

static int start_check(console_t *c) {
  g_ro.op = TETHER__ROLLOUT_OP__ROLLOUT_START;
  if (!version_ok(c->arg[0]))
    return console_usage_error("'%s' is not a version (like 0.3.0: see tether release list)", c->arg[0]);
  if (!tt_text_valid(tt_text(c->cfg.channel), TT_NAME_MAX))
    return console_usage_error("--channel: a name of at most %u printable bytes", TT_NAME_MAX);
  if (!c->cfg.group[0]) snprintf(c->cfg.group, sizeof c->cfg.group, "*");
  if (!tt_text_valid(tt_text(c->cfg.group), TT_ASSET_CELL_MAX))
    return console_usage_error("--group: \"*\" for every device, or a department, location or group");
  if (parse_pct("canary", c->cfg.canary, &g_ro.canary) || parse_pct("wave", c->cfg.wave, &g_ro.wave)) return 2;
  for (int i = 1; i < c->narg; i++)
    if (!tt_text_valid(tt_text(c->arg[i]), TT_NAME_MAX))
      return console_usage_error("'%s' is not a device id", c->arg[i]);
  return 0;
}

static int id_check(console_t *c) {
  const char *sub = c->cmd->sub;
  g_ro.op = !strcmp(sub, "pause")    ? TETHER__ROLLOUT_OP__ROLLOUT_PAUSE
            : !strcmp(sub, "resume") ? TETHER__ROLLOUT_OP__ROLLOUT_RESUME
            : !strcmp(sub, "cancel") ? TETHER__ROLLOUT_OP__ROLLOUT_CANCEL
                                     : TETHER__ROLLOUT_OP__ROLLOUT_STATUS;
  if (c->narg > 0) {
    const char *s = c->arg[0];
    size_t p = strlen(ROLLOUT_PREFIX);
    if (strncasecmp(s, ROLLOUT_PREFIX, p) == 0) s += p;
    /* The digits alone, as console_parse_id reads them ('T' never starts a digit). */
    if (s[0] == 'T' || s[0] == 't' || console_parse_id(s, 'T', false, &g_ro.id))
      return console_usage_error("'%s' is not a rollout (3 or RO-3; none: the latest)", c->arg[0]);
  }
  if (!tt_text_valid(tt_text(c->cfg.revoke_reason), TT_TEXT_MAX))
    return console_usage_error("--reason must be one line of printable text, at most %u bytes", TT_TEXT_MAX);
  return 0;
}

static int ro_start(console_t *c) {
  Tether__RolloutRequest q = TETHER__ROLLOUT_REQUEST__INIT;
  q.op = g_ro.op;
  q.id = g_ro.id;
  if (g_ro.op == TETHER__ROLLOUT_OP__ROLLOUT_START) {
    q.version = tt_text(c->arg[0]);
    q.channel = tt_text(c->cfg.channel);
    q.group = tt_text(c->cfg.group);
    q.canary_pct = g_ro.canary;
    q.wave_pct = g_ro.wave;
    q.pause_on_failure = (uint32_t)c->cfg.pause_on_failure;
    q.health_s = (uint32_t)(c->cfg.health_ms / 1000);
  }
  ProtobufCBinaryData devs[TT_ROLLOUT_LISTED_MAX];
  if (g_ro.op == TETHER__ROLLOUT_OP__ROLLOUT_START && c->narg > 1) {
    for (int i = 1; i < c->narg; i++) devs[i - 1] = tt_text(c->arg[i]);
    q.devices = devs;
    q.n_devices = (size_t)c->narg - 1;
  }
  if (g_ro.op == TETHER__ROLLOUT_OP__ROLLOUT_PAUSE || g_ro.op == TETHER__ROLLOUT_OP__ROLLOUT_CANCEL)
    q.reason = tt_text(c->cfg.revoke_reason);
  Tether__Request r = TETHER__REQUEST__INIT;
  r.body_case = TETHER__REQUEST__BODY_ROLLOUT;
  r.rollout = &q;
  return console_request(c, &r, TETHER__RESPONSE__BODY_ROLLOUT);
}

static void ro_not_found(console_t *c) {
  if (g_ro.id) console_fail(c, "no rollout %" PRIu64, g_ro.id);
  else console_fail(c, "no rollout yet (tether rollout start VERSION)");
}

static bool same(ProtobufCBinaryData a, ProtobufCBinaryData b) {
  return a.len == b.len && (a.len == 0 || memcmp(a.data, b.data, a.len) == 0);
}

/* Lists within their limits, every entry there, each state counted once. */
static bool rollout_ok(const Tether__Rollout *v) {
  if (!v || v->n_devices > TT_ROLLOUT_SHOWN_MAX || v->n_counts > ROLLOUT_STATES_MAX ||
      v->total > TT_ROLLOUT_DEVICES_MAX || v->n_devices > v->total)
    return false;
  for (size_t i = 0; i < v->n_devices; i++)
    if (!v->devices[i]) return false;
  for (size_t i = 0; i < v->n_counts; i++) {
    if (!v->counts[i] || v->counts[i]->n > v->total) return false;
    for (size_t k = 0; k < i; k++)
      if (same(v->counts[k]->state, v->counts[i]->state)) return false;
  }
  return true;
}

static void ro_json(FILE *o, const Tether__Rollout *v) {
  fprintf(o, "{\"id\":%" PRIu64 ",\"version\":", v->id);
  console_json_bytes(o, v->version);
  fputs(",\"channel\":", o);
  console_json_bytes(o, v->channel);
  fputs(",\"group\":", o);
  console_json_bytes(o, v->group);
  fprintf(o, ",\"canary_pct\":%u,\"wave_pct\":%u,\"pause_on_failure\":%u,\"health_s\":%u,\"state\":", v->canary_pct,
          v->wave_pct, v->pause_on_failure, v->health_s);
  console_json_bytes(o, v->state);
  fputs(",\"why\":", o);
  console_json_bytes(o, v->why);
  fputs(",\"started_by\":", o);
  console_json_bytes(o, v->started_by);
  fputs(",\"started\":", o);
  console_json_time(o, v->started_ms);
  fprintf(o, ",\"wave\":%u,\"waves\":%u,\"failures\":%u,\"total\":%u,\"counts\":{", v->wave, v->waves, v->failures,
          v->total);
  for (size_t i = 0; i < v->n_counts; i++) {
    if (i) fputc(',', o);
    console_json_bytes(o, v->counts[i]->state);
    fprintf(o, ":%u", v->counts[i]->n);
  }
  fputs("},\"devices\":[", o);
  for (size_t i = 0; i < v->n_devices; i++) {
    const Tether__RolloutDevice *d = v->devices[i];
    fputs(i ? ",{\"device\":" : "{\"device\":", o);
    console_json_bytes(o, d->device);
    fprintf(o, ",\"wave\":%u,\"state\":", d->wave);
    console_json_bytes(o, d->state);
    fputs(",\"reason\":", o);
    console_json_bytes(o, d->reason);
    fputs(",\"from_version\":", o);
    console_json_bytes(o, d->from_version);
    fputs(",\"updated\":", o);
    console_json_time(o, d->updated_ms);
    fprintf(o, ",\"done\":%" PRIu64 ",\"size\":%" PRIu64 "}", d->done, d->size);
  }
  fputs("]}\n", o);
}

static bool is(ProtobufCBinaryData t, const char *s) { return same(t, tt_text(s)); }

/* "rollout 3: 0.3.0 (stable) to group finance - running, wave 1 of 4, 1 failure (pauses at 2)":
 * wave 0 is the canary, and waves counts it. */
static void ro_header(const Tether__Rollout *v) {
  char ver[TT_RELEASE_VERSION_MAX * 4 + 1], chan[TT_NAME_MAX * 4 + 1], group[TT_ASSET_CELL_MAX * 4 + 1],
      state[TT_NAME_MAX * 4 + 1], why[TT_TEXT_MAX * 4 + 1], wave[48], fail[64];
  console_text(ver, sizeof ver, v->version);
  console_text(chan, sizeof chan, v->channel);
  console_text(group, sizeof group, v->group);
  console_text(state, sizeof state, v->state);
  console_text(why, sizeof why, v->why);
  bool live = is(v->state, "running") || is(v->state, "paused");
  wave[0] = '\0';
  if (live && v->wave == 0) snprintf(wave, sizeof wave, ", canary wave");
  else if (live && v->waves > 1) snprintf(wave, sizeof wave, ", wave %u of %u", v->wave, v->waves - 1);
  if (is(v->state, "running"))
    snprintf(fail, sizeof fail, ", %u failure%s (pauses at %u)", v->failures, v->failures == 1 ? "" : "s",
             v->pause_on_failure);
  else snprintf(fail, sizeof fail, ", %u failure%s", v->failures, v->failures == 1 ? "" : "s");
  printf("rollout %" PRIu64 ": %s (%s) to %s%s - %s%s%s%s%s%s\n", v->id, ver, chan[0] ? chan : "stable",
         is(v->group, "*") ? "every device" : "group ", is(v->group, "*") ? "" : group, state[0] ? state : "?",
         why[0] ? " (" : "", why, why[0] ? ")" : "", wave, fail);
}

static void ro_print(const Tether__Rollout *v) {
  char by[TT_NAME_MAX * 4 + 1], when[40], ago[32], health[32];
  uint64_t now = console_now_ms();
  ro_header(v);
  console_text(by, sizeof by, v->started_by);
  console_iso(when, sizeof when, v->started_ms, false);
  console_ago(ago, sizeof ago, v->started_ms, now);
  console_duration(health, sizeof health, (uint64_t)v->health_s * 1000u);
  printf("started by %s at %s (%s); canary %u%%, then waves of %u%%; %s to come back healthy\n", by[0] ? by : "?",
         when, ago, v->canary_pct, v->wave_pct, health);
  printf("%u device%s", v->total, v->total == 1 ? "" : "s");
  for (size_t i = 0; i < v->n_counts; i++) {
    char st[TT_NAME_MAX * 4 + 1];
    console_text(st, sizeof st, v->counts[i]->state);
    printf("%s%s %u", i ? ", " : ": ", st, v->counts[i]->n);
  }
  putchar('\n');
  if (!v->n_devices) return;
  printf("\n%-24s %-6s %-16s %-12s %-9s %s\n", "DEVICE", "WAVE", "STATE", "FROM", "UPDATED", "REASON");
  for (size_t i = 0; i < v->n_devices; i++) {
    const Tether__RolloutDevice *d = v->devices[i];
    char dev[TT_NAME_MAX * 4 + 1], st[TT_NAME_MAX * 4 + 1], st2[TT_NAME_MAX * 4 + 8], from[TT_RELEASE_VERSION_MAX * 4 + 1],
        upd[32], reason[TT_TEXT_MAX * 4 + 1], wave[12];
    console_text(dev, sizeof dev, d->device);
    console_text(st, sizeof st, d->state);
    console_text(from, sizeof from, d->from_version);
    console_text(reason, sizeof reason, d->reason);
    if (d->wave == 0) snprintf(wave, sizeof wave, "canary");
    else snprintf(wave, sizeof wave, "%u", d->wave);
    if (is(d->state, "downloading") && d->size)
      snprintf(st2, sizeof st2, "%.*s %u%%", (int)(sizeof st2 - 16), st,
               (unsigned)((double)(d->done >= d->size ? d->size : d->done) * 100.0 / (double)d->size));
    else snprintf(st2, sizeof st2, "%.*s", (int)(sizeof st2 - 16), st);
    if (d->updated_ms) console_ago(upd, sizeof upd, d->updated_ms, now);
    else snprintf(upd, sizeof upd, "-");
    printf("%-24s %-6s %-16s %-12s ", dev[0] ? dev : "?", wave, st2, from[0] ? from : "-");
    if (reason[0]) printf("%-9s %s\n", upd, reason);
    else printf("%s\n", upd);
  }
  if (v->total > v->n_devices)
    printf("... and %u more, not listed (the counts above cover every device)\n", v->total - (unsigned)v->n_devices);
}

static int ro_response(console_t *c, const Tether__Response *r) {
  const Tether__Rollout *v = r->rollout;
  if (!rollout_ok(v)) {
    console_fail(c, "the broker's rollout is malformed (past %u devices shown, %u states, or a count past the total)",
                 TT_ROLLOUT_SHOWN_MAX, ROLLOUT_STATES_MAX);
    return 0;
  }
  if (c->json) ro_json(stdout, v);
  else ro_print(v);
  fflush(stdout);
  console_finish(c, 0);
  return 0;
}

const console_cmd_t console_cmd_rollout_start = {
    .name = "rollout",
    .sub = "start",
    .args = "VERSION [DEVICE...] [--channel C] [--group G] [--canary 5%] [--wave 25%] [--pause-on-failure N] "
            "[--health 10m] [--json]",
    .help = "admin: offer a release to a group's agents (every device: \"*\"), or to the DEVICEs named, in "
            "waves, a canary first; N failures pause it",
    .min_pos = 1,
    .max_pos = 1 + TT_ROLLOUT_LISTED_MAX,
    .switches = CONSOLE_SW_JSON,
    .check = start_check,
    .start = ro_start,
    .on_response = ro_response,
};

const console_cmd_t console_cmd_rollout_status = {
    .name = "rollout",
    .sub = "status",
    .args = "[ID] [--json]",
    .help = "admin: a rollout (ID: 3 or RO-3; the latest when none): its wave, failures, devices per state, the devices",
    .max_pos = 1,
    .switches = CONSOLE_SW_JSON,
    .check = id_check,
    .start = ro_start,
    .on_response = ro_response,
    .on_not_found = ro_not_found,
};

const console_cmd_t console_cmd_rollout_pause = {
    .name = "rollout",
    .sub = "pause",
    .args = "[ID] [--reason TEXT] [--json]",
    .help = "admin: offer the release to no more devices until resume",
    .max_pos = 1,
    .switches = CONSOLE_SW_JSON,
    .check = id_check,
    .start = ro_start,
    .on_response = ro_response,
    .on_not_found = ro_not_found,
};

const console_cmd_t console_cmd_rollout_resume = {
    .name = "rollout",
    .sub = "resume",
    .args = "[ID] [--json]",
    .help = "admin: go on with a paused rollout",
    .max_pos = 1,
    .switches = CONSOLE_SW_JSON,
    .check = id_check,
    .start = ro_start,
    .on_response = ro_response,
    .on_not_found = ro_not_found,
};

const console_cmd_t console_cmd_rollout_cancel = {
    .name = "rollout",
    .sub = "cancel",
    .args = "[ID] [--reason TEXT] [--json]",
    .help = "admin: end a rollout for good (pause stops it for a while)",
    .max_pos = 1,
    .switches = CONSOLE_SW_JSON,
    .check = id_check,
    .start = ro_start,
    .on_response = ro_response,
    .on_not_found = ro_not_found,
};
