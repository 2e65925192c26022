/* Check policy and maintenance windows: tether policy set|unset --group G KEY=VALUE...,
 * tether policy show [--group G | --device D], tether maintenance add (--group G | --device D)
 * --for 2h --reason TEXT, tether maintenance. Settings are checked here with the same
 * catalogue the broker uses, so a typo is caught before anything is sent (the broker checks
 * again and refuses the whole request if one is bad). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "console.h"
#include "tt/checks.h"
#include "tt/msg.h"

#define NAME_SHOWN (TT_NAME_MAX * 4 + 1)
#define VALUE_SHOWN (TT_POLICY_VALUE_MAX * 4 + 1)
#define GROUP_SHOWN (TT_ASSET_CELL_MAX * 4 + 1)

static void shown(char *dst, size_t cap, ProtobufCBinaryData t) {
  console_text(dst, cap, t);
  if (!dst[0]) snprintf(dst, cap, "-");
}

/* ---- set, unset ------------------------------------------------------------------------------ */

static struct {
  bool unset;
  size_t n;
  char key[TT_POLICY_SETTINGS_MAX][129];
  char value[TT_POLICY_SETTINGS_MAX][TT_POLICY_VALUE_MAX + 1];
} g_set;

static int group_check(console_t *c) {
  if (!c->cfg.group[0]) return console_usage_error("--group is required: \"*\" for every device, or a department, location or group");
  if (!tt_text_valid(tt_text(c->cfg.group), TT_ASSET_CELL_MAX))
    return console_usage_error("--group: one line of printable text");
  return 0;
}

static int set_check_common(console_t *c, bool unset) {
  if (group_check(c)) return 2;
  g_set.unset = unset;
  g_set.n = 0;
  for (int i = 0; i < c->narg; i++) {
    const char *a = c->arg[i];
    const char *eq = strchr(a, '=');
    char key[129], canon[TT_POLICY_VALUE_MAX + 1], err[256];
    size_t klen = eq ? (size_t)(eq - a) : strlen(a);
    if (unset ? eq != NULL : eq == NULL) {
      return console_usage_error(unset ? "unset takes keys only: checks.disk_used.threshold"
                                       : "'%s': want checks.<check>.<setting>=VALUE", a);
    }
    if (klen == 0 || klen >= sizeof(key)) return console_usage_error("'%s' is not a setting", a);
    memcpy(key, a, klen);
    key[klen] = '\0';
    tt_check_id_t id;
    const tt_check_setting_t *s = NULL;
    if (unset) {
      /* The key alone: check it with the setting's own default as the value. */
      char name[129];
      snprintf(name, sizeof(name), "%s", key);
      char *chk = strncmp(name, "checks.", 7) == 0 ? name + 7 : NULL, *dot = chk ? strchr(chk, '.') : NULL;
      if (dot) *dot = '\0';
      int cid = chk && dot ? tt_check_find(chk) : -1;
      const tt_check_setting_t *def = cid >= 0 ? tt_check_setting((tt_check_id_t)cid, dot + 1) : NULL;
      if (tt_checks_parse(key, def ? def->def : "", &id, &s, canon, sizeof(canon), err, sizeof(err)))
        return console_usage_error("%s", err);
      canon[0] = '\0';
    } else if (tt_checks_parse(key, eq + 1, &id, &s, canon, sizeof(canon), err, sizeof(err))) {
      return console_usage_error("%s", err);
    }
    for (size_t j = 0; j < g_set.n; j++)
      if (!strcmp(g_set.key[j], key)) return console_usage_error("%s is given twice", key);
    snprintf(g_set.key[g_set.n], sizeof(g_set.key[0]), "%s", key);
    snprintf(g_set.value[g_set.n], sizeof(g_set.value[0]), "%s", canon);
    g_set.n++;
  }
  return 0;
}

static int set_check(console_t *c) { return set_check_common(c, false); }
static int unset_check(console_t *c) { return set_check_common(c, true); }

static int set_start(console_t *c) {
  Tether__PolicySetting s[TT_POLICY_SETTINGS_MAX], *p[TT_POLICY_SETTINGS_MAX];
  for (size_t i = 0; i < g_set.n; i++) {
    tether__policy_setting__init(&s[i]);
    s[i].key = tt_text(g_set.key[i]);
    s[i].value = tt_text(g_set.value[i]);
    p[i] = &s[i];
  }
  Tether__PolicySetRequest q = TETHER__POLICY_SET_REQUEST__INIT;
  q.group = tt_text(c->cfg.group);
  q.settings = p;
  q.n_settings = g_set.n;
  q.unset = g_set.unset;
  Tether__Request r = TETHER__REQUEST__INIT;
  r.body_case = TETHER__REQUEST__BODY_POLICY_SET;
  r.policy_set = &q;
  return console_request(c, &r, TETHER__RESPONSE__BODY_POLICY_VIEW);
}

static void view_json(FILE *o, const Tether__PolicyView *v) {
  fprintf(o, "{\"version\":%" PRIu64 ",\"entries\":[", v->version);
  for (size_t i = 0; i < v->n_entries; i++) {
    if (i) fputc(',', o);
    fputs("{\"group\":", o);
    console_json_bytes(o, v->entries[i]->group);
    fputs(",\"key\":", o);
    console_json_bytes(o, v->entries[i]->key);
    fputs(",\"value\":", o);
    console_json_bytes(o, v->entries[i]->value);
    fputc('}', o);
  }
  fputs("],\"groups\":[", o);
  for (size_t i = 0; i < v->n_groups; i++) {
    if (i) fputc(',', o);
    console_json_bytes(o, v->groups[i]);
  }
  fputs("],\"effective\":{", o);
  for (size_t i = 0; i < v->n_effective; i++) {
    if (i) fputc(',', o);
    console_json_bytes(o, v->effective[i]->key);
    fputc(':', o);
    console_json_bytes(o, v->effective[i]->value);
  }
  fprintf(o, "},\"device_version\":%" PRIu64 ",\"windows\":[", v->device_version);
  for (size_t i = 0; i < v->n_windows; i++) {
    const Tether__Maintenance *m = v->windows[i];
    if (i) fputc(',', o);
    fprintf(o, "{\"id\":\"M-%" PRIu64 "\",\"group\":", m->id);
    console_json_bytes(o, m->group);
    fputs(",\"device\":", o);
    console_json_bytes(o, m->device);
    fprintf(o, ",\"start_ms\":%" PRIu64 ",\"end_ms\":%" PRIu64 ",\"reason\":", m->start_ms, m->end_ms);
    console_json_bytes(o, m->reason);
    fputs(",\"set_by\":", o);
    console_json_bytes(o, m->set_by);
    fputc('}', o);
  }
  fputs("]}\n", o);
}

static void windows_text(const Tether__PolicyView *v) {
  for (size_t i = 0; i < v->n_windows; i++) {
    const Tether__Maintenance *m = v->windows[i];
    char who[GROUP_SHOWN + 8], reason[TT_TEXT_MAX * 4 + 1], from[40], to[40], by[NAME_SHOWN];
    if (m->device.len) console_text(who, sizeof(who), m->device);
    else {
      char g[GROUP_SHOWN];
      console_text(g, sizeof(g), m->group);
      snprintf(who, sizeof(who), "group %s", g);
    }
    console_text(reason, sizeof(reason), m->reason);
    console_text(by, sizeof(by), m->set_by);
    console_iso(from, sizeof(from), m->start_ms, false);
    console_iso(to, sizeof(to), m->end_ms, false);
    printf("M-%-5" PRIu64 " %-24s %s .. %s  by %s: %s\n", m->id, who, from, to, by, reason);
  }
}

static int view_response(console_t *c, const Tether__Response *r) {
  const Tether__PolicyView *v = r->policy_view;
  if (!v) return TT_EPROTO;
  if (c->json) {
    view_json(stdout, v);
  } else if (c->cmd->name[0] == 'm') { /* maintenance: the windows */
    if (!v->n_windows) printf("(no maintenance window now or to come)\n");
    windows_text(v);
  } else {
    char dev[NAME_SHOWN];
    bool device = c->cfg.audit_device[0] != '\0';
    snprintf(dev, sizeof(dev), "%s", c->cfg.audit_device);
    if (c->cmd->sub && !strcmp(c->cmd->sub, "show")) printf("policy version %" PRIu64 "\n", v->version);
    else printf("policy version %" PRIu64 ": pushed to every connected agent\n", v->version);
    if (device) {
      printf("%s is in groups: *", dev);
      for (size_t i = 0; i < v->n_groups; i++) {
        char g[GROUP_SHOWN];
        console_text(g, sizeof(g), v->groups[i]);
        printf(", %s", g);
      }
      printf("; its agent runs version %" PRIu64 "%s\n", v->device_version,
             v->device_version == v->version ? "" : v->device_version ? " (an older one)" : " (not reported yet)");
    }
    if (v->n_entries) printf("%-20s %-44s %s\n", "GROUP", "SETTING", "VALUE");
    for (size_t i = 0; i < v->n_entries; i++) {
      char g[GROUP_SHOWN], k[NAME_SHOWN * 2], val[VALUE_SHOWN];
      shown(g, sizeof(g), v->entries[i]->group);
      shown(k, sizeof(k), v->entries[i]->key);
      console_text(val, sizeof(val), v->entries[i]->value);
      printf("%-20s %-44s %s\n", g, k, val);
    }
    if (!v->n_entries) printf("(no settings: the defaults apply)\n");
    if (device && v->n_effective) {
      printf("\nin force on %s (the defaults for the rest):\n", dev);
      for (size_t i = 0; i < v->n_effective; i++) {
        char k[NAME_SHOWN * 2], val[VALUE_SHOWN];
        shown(k, sizeof(k), v->effective[i]->key);
        console_text(val, sizeof(val), v->effective[i]->value);
        printf("  %-44s %s\n", k, val);
      }
    }
    if (c->cmd->sub && !strcmp(c->cmd->sub, "show") && v->n_windows) {
      printf("\nmaintenance windows:\n");
      windows_text(v);
    }
  }
  fflush(stdout);
  console_finish(c, 0);
  return 0;
}

const console_cmd_t console_cmd_policy_set = {
    .name = "policy",
    .sub = "set",
    .args = "--group G checks.<check>.<setting>=VALUE... [--json]",
    .help = "admin: check settings for a group (\"*\" every device), pushed to agents at once",
    .min_pos = 1,
    .max_pos = TT_POLICY_SETTINGS_MAX,
    .switches = CONSOLE_SW_JSON,
    .check = set_check,
    .start = set_start,
    .on_response = view_response,
};

const console_cmd_t console_cmd_policy_unset = {
    .name = "policy",
    .sub = "unset",
    .args = "--group G checks.<check>.<setting>... [--json]",
    .help = "admin: remove a group's settings (the next group down, or the default, applies)",
    .min_pos = 1,
    .max_pos = TT_POLICY_SETTINGS_MAX,
    .switches = CONSOLE_SW_JSON,
    .check = unset_check,
    .start = set_start,
    .on_response = view_response,
};

/* ---- show -------------------------------------------------------------------------------- */

static int show_check(console_t *c) {
  if (c->cfg.group[0] && c->cfg.audit_device[0]) return console_usage_error("--group or --device, not both");
  return 0;
}

static int show_start(console_t *c) {
  Tether__PolicyShowRequest q = TETHER__POLICY_SHOW_REQUEST__INIT;
  q.group = tt_text(c->cfg.group);
  q.device = tt_text(c->cfg.audit_device);
  Tether__Request r = TETHER__REQUEST__INIT;
  r.body_case = TETHER__REQUEST__BODY_POLICY_SHOW;
  r.policy_show = &q;
  return console_request(c, &r, TETHER__RESPONSE__BODY_POLICY_VIEW);
}

const console_cmd_t console_cmd_policy_show = {
    .name = "policy",
    .sub = "show",
    .args = "[--group G | --device D] [--json]",
    .help = "the check policy: every group's settings, one group's, or what is in force on a device and why",
    .max_pos = 0,
    .switches = CONSOLE_SW_JSON,
    .check = show_check,
    .start = show_start,
    .on_response = view_response,
};

const console_cmd_t console_cmd_maintenance = {
    .name = "maintenance",
    .args = "[--json]",
    .help = "maintenance windows now and to come",
    .max_pos = 0,
    .switches = CONSOLE_SW_JSON,
    .start = show_start,
    .on_response = view_response,
};

/* ---- maintenance add ------------------------------------------------------------------------ */

static int maint_check(console_t *c) {
  if (!c->cfg.group[0] == !c->cfg.audit_device[0])
    return console_usage_error("a window is for --group G (\"*\" for every device) or --device D");
  if (c->cfg.group[0] && group_check(c)) return 2;
  if (c->cfg.for_ms < 1000) return console_usage_error("how long? --for 2h (1s to 30d)");
  if (!c->cfg.revoke_reason[0]) return console_usage_error("say why: --reason \"patching\"");
  if (!tt_text_valid(tt_text(c->cfg.revoke_reason), TT_TEXT_MAX))
    return console_usage_error("--reason: one line of printable text, at most %u bytes", TT_TEXT_MAX);
  return 0;
}

static int maint_start(console_t *c) {
  Tether__MaintenanceRequest q = TETHER__MAINTENANCE_REQUEST__INIT;
  q.group = tt_text(c->cfg.group);
  q.device = tt_text(c->cfg.audit_device);
  uint64_t now = console_now_ms();
  q.start_ms = 0;
  q.end_ms = now + (uint64_t)c->cfg.for_ms;
  q.reason = tt_text(c->cfg.revoke_reason);
  Tether__Request r = TETHER__REQUEST__INIT;
  r.body_case = TETHER__REQUEST__BODY_MAINTENANCE;
  r.maintenance = &q;
  return console_request(c, &r, TETHER__RESPONSE__BODY_MAINTENANCE);
}

static int maint_response(console_t *c, const Tether__Response *r) {
  const Tether__Maintenance *m = r->maintenance;
  if (!m || !m->id) return TT_EPROTO;
  char to[40];
  console_iso(to, sizeof(to), m->end_ms, false);
  if (c->json) {
    printf("{\"id\":\"M-%" PRIu64 "\",\"start_ms\":%" PRIu64 ",\"end_ms\":%" PRIu64 "}\n", m->id, m->start_ms, m->end_ms);
  } else {
    printf("M-%" PRIu64 ": alerts raised until %s are recorded, not ticketed; what still fails then is ticketed "
           "(one storm ticket when many devices fail)\n",
           m->id, to);
  }
  fflush(stdout);
  console_finish(c, 0);
  return 0;
}

const console_cmd_t console_cmd_maintenance_add = {
    .name = "maintenance",
    .sub = "add",
    .args = "(--group G | --device D) --for 2h --reason TEXT [--json]",
    .help = "admin: a maintenance window from now: alerts in it are recorded, not ticketed",
    .max_pos = 0,
    .switches = CONSOLE_SW_JSON,
    .check = maint_check,
    .start = maint_start,
    .on_response = maint_response,
};
