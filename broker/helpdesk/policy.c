/* Check policy per device group, pushed to agents: `tether policy set|unset|show` and
 * `tether maintenance`. A group is "*" (every device) or a value of an asset record's
 * Department, Location or custom "group" field; a device runs the settings of "*", then its
 * location, department and group, each over the one before (a later one wins a key). Every
 * setting is checked with the checks' catalogue (proto/checks.c) before any is written: one
 * bad key or value refuses the whole request. Each change bumps one policy version, and the
 * settings in force go to every connected agent; an agent whose report names another version
 * gets them again. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "alerts.h"
#include "broker.h"
#include "tt/log.h"
#include "tt/msg.h"

#define MOD "policy"
/* Devices one push request works out (each: its groups, then up to four lists). */
#define PUSH_BATCH 64u
/* A maintenance window lasts at most this long: longer is a policy change (checks off). */
#define MAINT_MAX_MS (30ll * 86400 * 1000)
#define AGENT_POLICY_TIMEOUT_MS 30000u

static void answered(broker_conn_t *c, int rc) {
  if (rc) tt_link_close(c->link, rc, "peer not reading");
}

static int store_error(broker_conn_t *c, uint32_t id, int rc, const char *op) {
  TT_ERROR(MOD, "store failed", "op=%s err=%s", op, tt_errname(rc));
  return broker_reply_error(c, id, TT_EIO, "the broker could not use its store");
}

/* A group name: "*" or a field value as an asset record holds it. */
static bool group_ok(const char *g) {
  return g[0] && strlen(g) < STORE_GROUP_MAX && store_asset_text_ok(g, STORE_GROUP_MAX - 1, false);
}

/* ---- the settings in force ----------------------------------------------------------------- */

typedef struct {
  char key[STORE_POLICY_KEY_MAX + 1];
  char value[STORE_POLICY_VALUE_MAX];
  char group[STORE_GROUP_MAX];
} kv_t;

typedef struct {
  kv_t kv[TT_POLICY_SETTINGS_MAX];
  size_t n;
  uint32_t dropped;
  const char *group;
} merged_t;

static int merge_cb(void *ctx, const char *group, const char *key, const char *value, const char *by, int64_t ms) {
  merged_t *m = ctx;
  (void)by;
  (void)ms;
  size_t i = 0;
  while (i < m->n && strcmp(m->kv[i].key, key)) i++;
  if (i == m->n) {
    if (m->n >= TT_POLICY_SETTINGS_MAX) {
      m->dropped++;
      return 0;
    }
    m->n++;
  }
  snprintf(m->kv[i].key, sizeof(m->kv[i].key), "%s", key);
  snprintf(m->kv[i].value, sizeof(m->kv[i].value), "%s", value);
  snprintf(m->kv[i].group, sizeof(m->kv[i].group), "%s", group);
  return 0;
}

static int merged_for(broker_store_t *s, const store_device_groups_t *g, merged_t *m) {
  m->n = 0;
  const char *order[4] = {"*", g->location, g->department, g->group};
  for (int i = 0; i < 4; i++) {
    if (!order[i][0]) continue;
    int rc = store_policy_list(s, order[i], merge_cb, m);
    if (rc) return rc;
  }
  return 0;
}

typedef struct {
  tt_checks_conf_t *conf;
} apply_t;

static int apply_cb(void *ctx, const char *group, const char *key, const char *value, const char *by, int64_t ms) {
  apply_t *a = ctx;
  char err[256];
  (void)by;
  (void)ms;
  if (tt_checks_set(a->conf, key, value, err, sizeof(err)))
    TT_WARN(MOD, "a stored setting no longer applies: skipped", "group=\"%s\" why=\"%s\"", group, err);
  return 0;
}

void alerts_policy_apply(broker_store_t *s, const char *group, tt_checks_conf_t *conf) {
  apply_t a = {.conf = conf};
  if (store_policy_list(s, group, apply_cb, &a))
    TT_WARN(MOD, "policy not read: the defaults apply", "group=\"%s\"", group);
}

/* ---- pushes to agents ---------------------------------------------------------------------- */

typedef struct {
  char device[STORE_NAME_MAX];
  merged_t *m;
  int rc;
} push_dev_t;

typedef struct {
  store_req_t req;
  broker_t *b;
  int64_t version;
  size_t n;
  push_dev_t d[PUSH_BATCH];
  /* the devices still to do after this batch (a push to all) */
  char (*rest)[STORE_NAME_MAX];
  size_t nrest;
} push_req_t;

static int push_run(broker_store_t *s, store_req_t *r) {
  push_req_t *p = (push_req_t *)r;
  int rc = store_policy_version(s, &p->version);
  if (rc) return rc;
  for (size_t i = 0; i < p->n; i++) {
    push_dev_t *d = &p->d[i];
    d->m = calloc(1, sizeof(*d->m));
    if (!d->m) return TT_ENOMEM;
    store_device_groups_t g;
    d->rc = store_device_groups(s, d->device, &g);
    if (d->rc == 0) d->rc = merged_for(s, &g, d->m);
  }
  return 0;
}

static void push_send(broker_t *b, push_dev_t *d, int64_t version) {
  broker_conn_t *c = broker_find_agent(b, d->device);
  if (!c || !c->link || c->link->closing) return;
  if (d->rc) {
    TT_WARN(MOD, "policy not worked out for a device", "device=%s err=%s", d->device, tt_errname(d->rc));
    return;
  }
  Tether__PolicySetting set[TT_POLICY_SETTINGS_MAX], *ptrs[TT_POLICY_SETTINGS_MAX];
  for (size_t i = 0; i < d->m->n; i++) {
    tether__policy_setting__init(&set[i]);
    set[i].key = tt_text(d->m->kv[i].key);
    set[i].value = tt_text(d->m->kv[i].value);
    ptrs[i] = &set[i];
  }
  Tether__PolicyPushRequest pp = TETHER__POLICY_PUSH_REQUEST__INIT;
  pp.version = (uint64_t)version;
  pp.settings = ptrs;
  pp.n_settings = d->m->n;
  Tether__Request q = TETHER__REQUEST__INIT;
  q.id = broker_agent_req_id(b);
  q.body_case = TETHER__REQUEST__BODY_POLICY_PUSH;
  q.policy_push = &pp;
  int rc = tt_link_send(c->link, TT_K_REQUEST, &q.base);
  if (rc) {
    TT_WARN(MOD, "policy not sent", "device=%s err=%s", d->device, tt_errname(rc));
    return;
  }
  c->policy_req = q.id;
  c->policy_pushing = version;
  TT_INFO(MOD, "policy pushed", "device=%s version=%" PRId64 " settings=%zu", d->device, version, d->m->n);
}

static int push_submit(broker_t *b, char (*devs)[STORE_NAME_MAX], size_t n);

static void push_done(store_req_t *r) {
  push_req_t *p = (push_req_t *)r;
  if (r->rc) TT_ERROR(MOD, "policy push failed", "devices=%zu err=%s", p->n, tt_errname(r->rc));
  else
    for (size_t i = 0; i < p->n; i++) push_send(p->b, &p->d[i], p->version);
  for (size_t i = 0; i < p->n; i++) free(p->d[i].m);
  if (p->nrest) {
    if (push_submit(p->b, p->rest, p->nrest)) free(p->rest); /* logged there; the rest get it at their next report */
  } else {
    free(p->rest);
  }
  free(p);
}

/* Work out and send the policy for devs (owned by this call when it returns 0; a batch at a
 * time, each after the one before). */
static int push_submit(broker_t *b, char (*devs)[STORE_NAME_MAX], size_t n) {
  push_req_t *p = calloc(1, sizeof(*p));
  if (!p) return TT_ENOMEM;
  p->req.run = push_run;
  p->req.done = push_done;
  p->req.lane = STORE_LANE_READ;
  p->req.what = "policy_push";
  p->b = b;
  p->n = n < PUSH_BATCH ? n : PUSH_BATCH;
  for (size_t i = 0; i < p->n; i++) snprintf(p->d[i].device, sizeof(p->d[i].device), "%s", devs[i]);
  if (n > p->n) {
    p->rest = devs;
    memmove(devs, devs + p->n, (n - p->n) * sizeof(*devs));
    p->nrest = n - p->n;
  } else {
    p->rest = devs;
  }
  int rc = store_svc_submit(b->svc, &p->req);
  if (rc) {
    TT_WARN(MOD, "policy push not queued: agents get it at their next report", "devices=%zu err=%s", n,
            tt_errname(rc));
    free(p);
  }
  return rc;
}

void broker_policy_push(broker_conn_t *agent) {
  char (*one)[STORE_NAME_MAX] = malloc(sizeof(*one));
  if (!one) return;
  snprintf(one[0], sizeof(one[0]), "%s", agent->id.name);
  if (push_submit(agent->b, one, 1)) free(one);
}

static void push_all(broker_t *b) {
  size_t cap = b->nagents ? b->nagents : 1, n = 0;
  char (*devs)[STORE_NAME_MAX] = malloc(cap * sizeof(*devs));
  if (!devs) return;
  for (size_t i = 0; i < BROKER_REGISTRY_BUCKETS && n < cap; i++)
    for (broker_conn_t *c = b->registry[i]; c && n < cap; c = c->hnext)
      if (c->link && !c->link->closing) snprintf(devs[n++], sizeof(devs[0]), "%s", c->id.name);
  if (n == 0 || push_submit(b, devs, n)) free(devs);
}

void broker_policy_pushed(broker_conn_t *agent, const Tether__Response *r) {
  agent->policy_req = 0;
  if (r->error) {
    agent->policy_refused = agent->policy_pushing;
    char msg[TT_TEXT_MAX + 1] = "";
    if (tt_text_copy(msg, sizeof(msg), r->error->message)) snprintf(msg, sizeof(msg), "?");
    TT_WARN(MOD, "an agent refused the policy: it keeps the one it ran", "device=%s why=\"%s\"", agent->id.name, msg);
    broker_audit(agent->b, agent->id.name, "policy-refused", agent->id.name, "why", msg, AUDIT_END);
    return;
  }
  if (r->body_case == TETHER__RESPONSE__BODY_POLICY_PUSH && r->policy_push)
    TT_INFO(MOD, "policy applied", "device=%s version=%llu", agent->id.name,
            (unsigned long long)r->policy_push->version);
}

/* ---- set, unset ------------------------------------------------------------------------------ */

typedef struct {
  char key[STORE_POLICY_KEY_MAX + 1];
  char value[STORE_POLICY_VALUE_MAX];
} setting_t;

typedef struct {
  broker_creq_t h;
  tt_identity_t who;
  char group[STORE_GROUP_MAX];
  bool unset;
  size_t n;
  setting_t set[TT_POLICY_SETTINGS_MAX];
  int64_t now_ms, version;
  int err;
  char msg[256];
  merged_t *view;
} set_req_t;

static int view_cb(void *ctx, const char *group, const char *key, const char *value, const char *by, int64_t ms);

static int set_run(broker_store_t *s, store_req_t *r) {
  set_req_t *x = (set_req_t *)r;
  int rc = 0;
  for (size_t i = 0; i < x->n && rc == 0; i++) {
    if (x->unset) {
      rc = store_policy_unset(s, x->group, x->set[i].key);
      if (rc == TT_ENOTFOUND) {
        x->err = TT_ENOTFOUND;
        char wide[STORE_POLICY_KEY_MAX + STORE_GROUP_MAX + 64];
        snprintf(wide, sizeof(wide), "%s is not set for group %s: nothing changed", x->set[i].key, x->group);
        broker_text_fit(x->msg, sizeof(x->msg), wide);
        return TT_ESTATE;
      }
    } else {
      rc = store_policy_set(s, x->group, x->set[i].key, x->set[i].value, x->who.name, x->now_ms);
    }
  }
  if (rc == 0) rc = store_policy_bump(s, &x->version);
  if (rc) return rc;
  /* One entry a setting, written with the change: each key and value stands in the audit
   * whole (one entry for all would cut the later ones). */
  char version[24], n[48];
  snprintf(version, sizeof(version), "%" PRId64, x->version);
  for (size_t i = 0; i < x->n; i++) {
    store_audit_rec_t a;
    snprintf(n, sizeof(n), "%zu/%zu", i + 1, x->n);
    broker_audit_rec(&a, x->who.name, x->unset ? "policy-unset" : "policy-set", x->group, "key", x->set[i].key,
                     "value", x->unset ? "" : x->set[i].value, "version", version, "setting", n, AUDIT_END);
    rc = store_audit_append(s, a.ts_ms, a.actor, a.action, a.target, a.detail, NULL);
    if (rc) return rc;
  }
  x->view = calloc(1, sizeof(*x->view));
  if (!x->view) return TT_ENOMEM;
  return store_policy_list(s, x->group, view_cb, x->view);
}

typedef struct {
  kv_t kv;
  char by[STORE_NAME_MAX];
  int64_t ms;
} entry_t;

/* The view a set or show answers with: the group's entries (by, when). */
static int view_cb(void *ctx, const char *group, const char *key, const char *value, const char *by, int64_t ms) {
  merged_t *m = ctx;
  if (m->n >= TT_POLICY_SETTINGS_MAX) {
    m->dropped++;
    return 0;
  }
  kv_t *k = &m->kv[m->n++];
  snprintf(k->key, sizeof(k->key), "%s", key);
  snprintf(k->value, sizeof(k->value), "%s", value);
  /* group and who set it, in one field: "group\tby\tms" is not needed on the wire as such */
  snprintf(k->group, sizeof(k->group), "%s", group);
  (void)by;
  (void)ms;
  return 0;
}

static int send_view(broker_conn_t *c, uint32_t id, int64_t version, const merged_t *entries, const merged_t *effective,
                     const store_device_groups_t *g, int64_t device_version, const store_maint_t *w, size_t nw) {
  Tether__PolicyEntry ent[TT_POLICY_SETTINGS_MAX], *ep[TT_POLICY_SETTINGS_MAX];
  Tether__PolicySetting eff[TT_POLICY_SETTINGS_MAX], *fp[TT_POLICY_SETTINGS_MAX];
  size_t ne = entries ? entries->n : 0, nf = effective ? effective->n : 0;
  for (size_t i = 0; i < ne; i++) {
    tether__policy_entry__init(&ent[i]);
    ent[i].group = tt_text(entries->kv[i].group);
    ent[i].key = tt_text(entries->kv[i].key);
    ent[i].value = tt_text(entries->kv[i].value);
    ep[i] = &ent[i];
  }
  for (size_t i = 0; i < nf; i++) {
    tether__policy_setting__init(&eff[i]);
    eff[i].key = tt_text(effective->kv[i].key);
    eff[i].value = tt_text(effective->kv[i].value);
    fp[i] = &eff[i];
  }
  ProtobufCBinaryData groups[3];
  size_t ng = 0;
  if (g) {
    const char *gs[3] = {g->location, g->department, g->group};
    for (int i = 0; i < 3; i++)
      if (gs[i][0]) groups[ng++] = tt_text(gs[i]);
  }
  Tether__Maintenance mw[16], *mp[16];
  size_t nm = nw < 16 ? nw : 16;
  for (size_t i = 0; i < nm; i++) {
    tether__maintenance__init(&mw[i]);
    mw[i].id = (uint64_t)w[i].id;
    mw[i].group = tt_text(w[i].group);
    mw[i].device = tt_text(w[i].device);
    mw[i].start_ms = (uint64_t)w[i].start_ms;
    mw[i].end_ms = (uint64_t)w[i].end_ms;
    mw[i].reason = tt_text(w[i].reason);
    mw[i].set_by = tt_text(w[i].set_by);
    mp[i] = &mw[i];
  }
  Tether__PolicyView v = TETHER__POLICY_VIEW__INIT;
  v.version = (uint64_t)version;
  v.entries = ep;
  v.n_entries = ne;
  v.effective = fp;
  v.n_effective = nf;
  v.groups = groups;
  v.n_groups = ng;
  v.device_version = (uint64_t)device_version;
  v.windows = mp;
  v.n_windows = nm;
  Tether__Response resp = TETHER__RESPONSE__INIT;
  resp.id = id;
  resp.body_case = TETHER__RESPONSE__BODY_POLICY_VIEW;
  resp.policy_view = &v;
  return tt_link_send(c->link, TT_K_RESPONSE, &resp.base);
}

static void set_done(store_req_t *r) {
  set_req_t *x = (set_req_t *)r;
  broker_t *b = x->h.c ? x->h.c->b : NULL;
  broker_conn_t *c = broker_creq_conn(x);
  if (r->rc == 0) {
    TT_INFO(MOD, x->unset ? "policy unset" : "policy set", "group=\"%s\" by=%s settings=%zu version=%" PRId64, x->group,
            x->who.name, x->n, x->version);
    if (b) push_all(b);
  }
  if (c) {
    if (x->err) answered(c, broker_reply_error(c, x->h.id, x->err, x->msg));
    else if (r->rc) answered(c, store_error(c, x->h.id, r->rc, "policy_set"));
    else answered(c, send_view(c, x->h.id, x->version, x->view, NULL, NULL, 0, NULL, 0));
  }
  free(x->view);
  free(x);
}

/* "checks.disk_used.threshold" names a setting of the catalogue (for unset: no value). */
static int key_check(const char *key, char *err, size_t errlen) {
  char canon[TT_POLICY_VALUE_MAX + 1];
  tt_check_id_t id;
  const tt_check_setting_t *s = NULL;
  /* Parse with the setting's own default: only the key is in question. */
  char name[STORE_POLICY_KEY_MAX + 1];
  snprintf(name, sizeof(name), "%s", key);
  char *dot1 = strncmp(name, "checks.", 7) == 0 ? name + 7 : NULL;
  char *dot2 = dot1 ? strchr(dot1, '.') : NULL;
  if (!dot2) {
    snprintf(err, errlen, "%s: a setting is checks.<check>.<setting>", key);
    return TT_EINVAL;
  }
  *dot2 = '\0';
  int cid = tt_check_find(dot1);
  const tt_check_setting_t *def = cid >= 0 ? tt_check_setting((tt_check_id_t)cid, dot2 + 1) : NULL;
  return tt_checks_parse(key, def ? def->def : "", &id, &s, canon, sizeof(canon), err, errlen);
}

static int on_set(broker_conn_t *c, uint32_t id, const Tether__PolicySetRequest *q) {
  if (q->n_settings == 0 || q->n_settings > TT_POLICY_SETTINGS_MAX) {
    char msg[96];
    snprintf(msg, sizeof(msg), "give 1 to %u settings", (unsigned)TT_POLICY_SETTINGS_MAX);
    return broker_reply_error(c, id, TT_EINVAL, msg);
  }
  set_req_t *x = broker_creq_new(c, id, sizeof(*x), STORE_LANE_WRITE, set_run, set_done, "policy_set");
  if (!x) return TT_ENOMEM;
  char err[256] = "";
  int code = 0;
  if (tt_text_copy(x->group, sizeof(x->group), q->group) || !group_ok(x->group)) {
    snprintf(err, sizeof(err), "a group is \"*\" or a department, location or group value of the asset records");
    code = TT_EINVAL;
  }
  for (size_t i = 0; !code && i < q->n_settings; i++) {
    const Tether__PolicySetting *w = q->settings[i];
    setting_t *s = &x->set[i];
    if (!w || tt_text_copy(s->key, sizeof(s->key), w->key) || tt_text_copy(s->value, sizeof(s->value), w->value)) {
      snprintf(err, sizeof(err), "setting %zu is not text of the right length", i + 1);
      code = TT_ETEXT;
      break;
    }
    tt_check_id_t cid;
    const tt_check_setting_t *set = NULL;
    /* The canonical form is written apart from the value it is parsed from (a list's
     * parser starts its output empty), then kept. */
    char canon[TT_POLICY_VALUE_MAX + 1];
    int rc = q->unset ? key_check(s->key, err, sizeof(err))
                      : tt_checks_parse(s->key, s->value, &cid, &set, canon, sizeof(canon), err, sizeof(err));
    if (rc) {
      code = TT_EINVAL;
      break;
    }
    if (!q->unset) snprintf(s->value, sizeof(s->value), "%s", canon);
    for (size_t j = 0; j < i; j++)
      if (!strcmp(x->set[j].key, s->key)) {
        snprintf(err, sizeof(err), "%s is given twice", s->key);
        code = TT_EINVAL;
      }
  }
  if (code) {
    free(x);
    char msg[300];
    snprintf(msg, sizeof(msg), "%s: nothing was changed", err);
    return broker_reply_error(c, id, code, msg);
  }
  x->who = c->id;
  x->unset = q->unset;
  x->n = q->n_settings;
  x->now_ms = (int64_t)broker_unix_ms();
  return broker_creq_submit(x); /* its audit entries are written by set_run, one a setting */
}

/* ---- show ------------------------------------------------------------------------------------ */

#define SHOW_WINDOWS 16u

typedef struct {
  broker_creq_t h;
  char group[STORE_GROUP_MAX], device[STORE_NAME_MAX];
  int64_t version, device_version;
  store_device_groups_t g;
  merged_t *entries, *effective;
  store_maint_t w[SHOW_WINDOWS];
  size_t nw;
} show_req_t;

static int windows_cb(void *ctx, const store_maint_t *m) {
  show_req_t *x = ctx;
  if (x->nw >= SHOW_WINDOWS) return 1;
  x->w[x->nw++] = *m;
  return 0;
}

static int show_run(broker_store_t *s, store_req_t *r) {
  show_req_t *x = (show_req_t *)r;
  int rc = store_policy_version(s, &x->version);
  if (rc) return rc;
  x->entries = calloc(1, sizeof(*x->entries));
  if (!x->entries) return TT_ENOMEM;
  if (x->device[0]) {
    store_device_t d;
    rc = store_device_get(s, x->device, &d);
    int64_t reported;
    if (rc == 0) rc = store_device_groups(s, x->device, &x->g);
    if (rc == 0 && store_check_agent_get(s, x->device, &x->device_version, &reported)) x->device_version = 0;
    x->effective = rc == 0 ? calloc(1, sizeof(*x->effective)) : NULL;
    if (rc == 0 && !x->effective) rc = TT_ENOMEM;
    if (rc == 0) rc = merged_for(s, &x->g, x->effective);
    const char *order[4] = {"*", x->g.location, x->g.department, x->g.group};
    for (int i = 0; rc == 0 && i < 4; i++)
      if (order[i][0]) rc = store_policy_list(s, order[i], view_cb, x->entries);
  } else {
    rc = store_policy_list(s, x->group[0] ? x->group : NULL, view_cb, x->entries);
  }
  if (rc == 0) rc = store_maint_list(s, (int64_t)broker_unix_ms(), windows_cb, x);
  return rc < 0 ? rc : 0;
}

static void show_done(store_req_t *r) {
  show_req_t *x = (show_req_t *)r;
  broker_conn_t *c = broker_creq_conn(x);
  if (c) {
    if (r->rc == TT_ENOTFOUND) {
      char msg[TT_NAME_MAX + 32];
      snprintf(msg, sizeof(msg), "no such device: %s", x->device);
      answered(c, broker_reply_error(c, x->h.id, TT_ENOTFOUND, msg));
    } else if (r->rc) {
      answered(c, store_error(c, x->h.id, r->rc, "policy_show"));
    } else {
      answered(c, send_view(c, x->h.id, x->version, x->entries, x->effective, x->device[0] ? &x->g : NULL,
                            x->device_version, x->w, x->nw));
    }
  }
  free(x->entries);
  free(x->effective);
  free(x);
}

static int on_show(broker_conn_t *c, uint32_t id, const Tether__PolicyShowRequest *q) {
  show_req_t *x = broker_creq_new(c, id, sizeof(*x), STORE_LANE_READ, show_run, show_done, "policy_show");
  if (!x) return TT_ENOMEM;
  if ((q->group.len && tt_text_copy(x->group, sizeof(x->group), q->group)) ||
      (q->device.len && tt_text_copy(x->device, sizeof(x->device), q->device))) {
    free(x);
    return broker_reply_error(c, id, TT_EINVAL, "no valid group or device");
  }
  return broker_creq_submit(x);
}

/* ---- maintenance --------------------------------------------------------------------------- */

typedef struct {
  broker_creq_t h;
  store_maint_t m;
} maint_req_t;

static int maint_run(broker_store_t *s, store_req_t *r) {
  maint_req_t *x = (maint_req_t *)r;
  if (x->m.device[0]) {
    store_device_t d;
    int rc = store_device_get(s, x->m.device, &d);
    if (rc) return rc;
  }
  int rc = store_maint_add(s, &x->m);
  if (rc) return rc;
  char name[24], start[24], end[24];
  snprintf(name, sizeof(name), "M-%" PRId64, x->m.id);
  snprintf(start, sizeof(start), "%" PRId64, x->m.start_ms);
  snprintf(end, sizeof(end), "%" PRId64, x->m.end_ms);
  broker_audit_rec(&x->h.audit, x->m.set_by, "maintenance", name, "group", x->m.group, "device", x->m.device,
                   "start_ms", start, "end_ms", end, "reason", x->m.reason, AUDIT_END);
  return 0;
}

static void maint_done(store_req_t *r) {
  maint_req_t *x = (maint_req_t *)r;
  broker_conn_t *c = broker_creq_conn(x);
  if (!c) goto out;
  if (r->rc == TT_ENOTFOUND) {
    char msg[TT_NAME_MAX + 32];
    snprintf(msg, sizeof(msg), "no such device: %s", x->m.device);
    answered(c, broker_reply_error(c, x->h.id, TT_ENOTFOUND, msg));
  } else if (r->rc) {
    answered(c, store_error(c, x->h.id, r->rc, "maintenance"));
  } else {
    TT_INFO(MOD, "maintenance window", "id=M-%" PRId64 " group=\"%s\" device=%s by=%s", x->m.id, x->m.group,
            x->m.device, x->m.set_by);
    Tether__Maintenance o = TETHER__MAINTENANCE__INIT;
    o.id = (uint64_t)x->m.id;
    o.group = tt_text(x->m.group);
    o.device = tt_text(x->m.device);
    o.start_ms = (uint64_t)x->m.start_ms;
    o.end_ms = (uint64_t)x->m.end_ms;
    o.reason = tt_text(x->m.reason);
    o.set_by = tt_text(x->m.set_by);
    Tether__Response resp = TETHER__RESPONSE__INIT;
    resp.id = x->h.id;
    resp.body_case = TETHER__RESPONSE__BODY_MAINTENANCE;
    resp.maintenance = &o;
    answered(c, tt_link_send(c->link, TT_K_RESPONSE, &resp.base));
  }
out:
  free(x);
}

static int on_maintenance(broker_conn_t *c, uint32_t id, const Tether__MaintenanceRequest *q) {
  maint_req_t *x = broker_creq_new(c, id, sizeof(*x), STORE_LANE_WRITE, maint_run, maint_done, "maintenance");
  if (!x) return TT_ENOMEM;
  store_maint_t *m = &x->m;
  int64_t now = (int64_t)broker_unix_ms();
  const char *bad = NULL;
  if ((q->group.len && (tt_text_copy(m->group, sizeof(m->group), q->group) || !group_ok(m->group))) ||
      (q->device.len && tt_text_copy(m->device, sizeof(m->device), q->device)) || (!m->group[0]) == (!m->device[0]))
    bad = "a maintenance window is for one group (\"*\" for all) or one device";
  else if (!q->reason.len || tt_text_copy(m->reason, sizeof(m->reason), q->reason))
    bad = "say why (--reason), at most 256 bytes of text";
  else if (q->start_ms > (uint64_t)INT64_MAX || q->end_ms > (uint64_t)INT64_MAX)
    bad = "times out of range";
  if (!bad) {
    m->start_ms = q->start_ms ? (int64_t)q->start_ms : now;
    m->end_ms = (int64_t)q->end_ms;
    if (m->end_ms <= m->start_ms || m->end_ms <= now) bad = "the window must end after it starts and in the future";
    else if (m->end_ms - m->start_ms > MAINT_MAX_MS) bad = "a window lasts at most 30 days (longer: turn the check off by policy)";
  }
  if (bad) {
    free(x);
    return broker_reply_error(c, id, TT_EINVAL, bad);
  }
  snprintf(m->set_by, sizeof(m->set_by), "%s", c->id.name);
  x->h.req.audit = &x->h.audit;
  return broker_creq_submit(x);
}

int broker_policy_request(broker_conn_t *c, const Tether__Request *q) {
  switch (q->body_case) {
  case TETHER__REQUEST__BODY_POLICY_SET: return on_set(c, q->id, q->policy_set);
  case TETHER__REQUEST__BODY_POLICY_SHOW: return on_show(c, q->id, q->policy_show);
  case TETHER__REQUEST__BODY_MAINTENANCE: return on_maintenance(c, q->id, q->maintenance);
  default: return broker_reply_error(c, q->id, TT_EKIND, "unknown policy request");
  }
}
