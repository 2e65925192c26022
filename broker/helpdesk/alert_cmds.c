/* People's view of alerts and checks: `tether alerts`, `tether alert ack | snooze |
 * unsnooze A-n` (each written with its audit entry and a line on the alert's ticket), and
 * `tether checks` (the results each device last reported, with the policy version it runs). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "alerts.h"
#include "broker.h"
#include "tt/log.h"
#include "tt/msg.h"

#define MOD "alerts"
#define SNOOZE_MIN_MS 60000u
/* Devices in one page of `tether checks`, and the bytes of text its results may carry (a
 * result is ~100 bytes; one with every text field full ~1.1 KB, so a device's 256 results
 * could pass a frame): a page ends at whichever comes first, and one device's results past
 * the budget are left out (logged). */
#define CHECKS_PAGE_DEVICES 8u
#define CHECKS_PAGE_BYTES (192u * 1024u)

static void answered(broker_conn_t *c, int rc) {
  if (rc) tt_link_close(c->link, rc, "peer not reading");
}

static int store_error(broker_conn_t *c, uint32_t id, int rc, const char *op) {
  TT_ERROR(MOD, "store failed", "op=%s err=%s", op, tt_errname(rc));
  return broker_reply_error(c, id, TT_EIO, "the broker could not use its store");
}

/* Strings point into a. */
static void alert_to_wire(const store_alert_t *a, const char *hostname, Tether__Alert *o) {
  tether__alert__init(o);
  o->id = (uint64_t)a->id;
  o->device = tt_text(a->device);
  o->check = tt_text(a->check);
  o->dimension = tt_text(a->dimension);
  o->state = (Tether__AlertState)a->state;
  o->opened_ms = (uint64_t)a->opened_ms;
  o->last_ms = (uint64_t)a->last_ms;
  o->resolved_ms = (uint64_t)a->resolved_ms;
  o->value = tt_text(a->value);
  o->threshold = tt_text(a->threshold);
  o->ticket = (uint64_t)a->ticket;
  o->storm = (uint64_t)a->storm;
  o->acked_by = tt_text(a->acked_by);
  o->snoozed_until_ms = (uint64_t)a->snoozed_until_ms;
  o->raised = a->raised;
  o->suppressed = a->suppressed;
  o->hostname = tt_text(hostname ? hostname : "");
}

/* ---- list ---------------------------------------------------------------------------------- */

typedef struct {
  store_alert_t a;
  char host[STORE_TEXT_MAX];
} alert_row_t;

typedef struct {
  broker_creq_t h;
  store_alert_filter_t f;
  char device[STORE_NAME_MAX], check[STORE_NAME_MAX];
  uint32_t n, cap;
  alert_row_t rows[];
} list_req_t;

static int list_cb(void *ctx, const store_alert_t *a) {
  list_req_t *x = ctx;
  if (x->n >= x->cap) return 1;
  x->rows[x->n++].a = *a;
  return 0;
}

static int list_run(broker_store_t *s, store_req_t *r) {
  list_req_t *x = (list_req_t *)r;
  int rc = store_alert_list(s, &x->f, list_cb, x);
  if (rc < 0) return rc;
  for (uint32_t i = 0; i < x->n; i++) {
    store_device_t d;
    if (store_device_get(s, x->rows[i].a.device, &d) == 0)
      snprintf(x->rows[i].host, sizeof(x->rows[i].host), "%s", d.hostname);
  }
  return 0;
}

static void list_done(store_req_t *r) {
  list_req_t *x = (list_req_t *)r;
  broker_conn_t *c = broker_creq_conn(x);
  Tether__Alert *al = NULL;
  Tether__Alert **ptrs = NULL;
  if (!c) goto out;
  if (r->rc) {
    answered(c, store_error(c, x->h.id, r->rc, "alert_list"));
    goto out;
  }
  uint32_t limit = x->cap - 1, n = x->n > limit ? limit : x->n;
  al = calloc(n ? n : 1, sizeof(*al));
  ptrs = calloc(n ? n : 1, sizeof(*ptrs));
  if (!al || !ptrs) {
    answered(c, TT_ENOMEM);
    goto out;
  }
  for (uint32_t i = 0; i < n; i++) {
    alert_to_wire(&x->rows[i].a, x->rows[i].host, &al[i]);
    ptrs[i] = &al[i];
  }
  Tether__AlertList list = TETHER__ALERT_LIST__INIT;
  list.alerts = ptrs;
  list.n_alerts = n;
  list.more = x->n > limit;
  Tether__Response resp = TETHER__RESPONSE__INIT;
  resp.id = x->h.id;
  resp.body_case = TETHER__RESPONSE__BODY_ALERT_LIST;
  resp.alert_list = &list;
  answered(c, tt_link_send(c->link, TT_K_RESPONSE, &resp.base));
out:
  free(al);
  free(ptrs);
  free(x);
}

static int on_list(broker_conn_t *c, uint32_t id, const Tether__AlertListRequest *q) {
  uint32_t limit = q->limit == 0 || q->limit > TT_ALERT_PAGE_MAX ? TT_ALERT_PAGE_MAX : q->limit;
  list_req_t *x = broker_creq_new(c, id, sizeof(*x) + (limit + 1) * sizeof(alert_row_t), STORE_LANE_READ, list_run,
                                  list_done, "alert_list");
  if (!x) return TT_ENOMEM;
  const char *bad = NULL;
  if (q->device.len && tt_text_copy(x->device, sizeof(x->device), q->device)) bad = "no valid device id";
  else if (q->check.len && (tt_text_copy(x->check, sizeof(x->check), q->check) || tt_check_find(x->check) < 0))
    bad = "no such check";
  else if (q->after_id > (uint64_t)INT64_MAX) bad = "paging id out of range";
  if (bad) {
    free(x);
    return broker_reply_error(c, id, TT_EINVAL, bad);
  }
  x->cap = limit + 1;
  x->f = (store_alert_filter_t){.open_only = q->open,
                                .device = x->device[0] ? x->device : NULL,
                                .check = x->check[0] ? x->check : NULL,
                                .after_id = (int64_t)q->after_id,
                                .limit = x->cap};
  return broker_creq_submit(x);
}

/* ---- ack, snooze, unsnooze ----------------------------------------------------------------- */

typedef struct {
  broker_creq_t h;
  tt_identity_t who;
  uint64_t wire_id;
  Tether__AlertOp op;
  int64_t duration_ms, now_ms;
  char reason[STORE_TEXT_MAX];
  store_alert_t a;
  char host[STORE_TEXT_MAX];
  int err;
  char msg[160];
  alert_ctx_t x; /* unsnooze: the rules run again */
} update_req_t;

static bool ticket_open(broker_store_t *s, int64_t id) {
  store_ticket_t t;
  return id && store_ticket_get(s, id, &t) == 0 && t.state == STORE_TICKET_OPEN;
}

static bool live(const store_alert_t *a) {
  return a->state == ALERT_OPEN || a->state == ALERT_ACKED || a->state == ALERT_SNOOZED || a->state == ALERT_SUPPRESSED;
}

static int update_run(broker_store_t *s, store_req_t *r) {
  update_req_t *u = (update_req_t *)r;
  store_alert_t *a = &u->a;
  int rc = store_alert_get(s, (int64_t)u->wire_id, a);
  if (rc) return rc;
  char name[24], text[STORE_TEXT_MAX], wide[STORE_TEXT_MAX * 2], until[24] = "", assigned[24] = "", tix[24] = "";
  snprintf(name, sizeof(name), "A-%" PRId64, a->id);
  const char *action;
  if (!live(a)) {
    u->err = TT_EINVAL;
    snprintf(u->msg, sizeof(u->msg), "%s is resolved", name);
    return TT_ESTATE;
  }
  int64_t ticket = a->ticket ? a->ticket : a->storm;
  switch (u->op) {
  case TETHER__ALERT_OP__ALERT_ACK:
    action = "alert-ack";
    /* Acked means "failing, with a ticket someone took": one held back (a window, a flood,
     * a snooze after its ticket was resolved) has none to take, and an ack would keep it from
     * ever getting one. */
    if (a->state == ALERT_SUPPRESSED || (a->state == ALERT_SNOOZED && !a->storm && !ticket_open(s, a->ticket))) {
      u->err = TT_EINVAL;
      snprintf(u->msg, sizeof(u->msg), "%s has no open ticket to take (%s): it gets one when it is no longer held",
               name, alert_state_name((alert_state_t)a->state));
      return TT_ESTATE;
    }
    if (a->state == ALERT_ACKED && !strcmp(a->acked_by, u->who.name)) {
      u->err = TT_EINVAL;
      snprintf(u->msg, sizeof(u->msg), "%s is already acknowledged by you", name);
      return TT_ESTATE;
    }
    a->state = ALERT_ACKED;
    a->snoozed_until_ms = 0;
    snprintf(a->acked_by, sizeof(a->acked_by), "%s", u->who.name);
    snprintf(wide, sizeof(wide), "%s acknowledged %s%s%s", u->who.name, name, u->reason[0] ? ": " : "", u->reason);
    broker_text_fit(text, sizeof(text), wide);
    /* A technician who takes the alert takes its own ticket, when no one has. */
    if (a->ticket) {
      store_ticket_t t;
      rc = store_ticket_get(s, a->ticket, &t);
      if (rc == 0 && !t.assignee[0] && t.state == STORE_TICKET_OPEN) {
        snprintf(t.assignee, sizeof(t.assignee), "%s", u->who.name);
        rc = store_ticket_update(s, &t, u->who.name, "assigned", text, u->now_ms);
        ticket = 0; /* the event is written */
        snprintf(assigned, sizeof(assigned), "T-%" PRId64, t.id);
      }
      if (rc) return rc;
    }
    break;
  case TETHER__ALERT_OP__ALERT_SNOOZE:
    action = "alert-snooze";
    a->state = ALERT_SNOOZED;
    a->snoozed_until_ms = u->now_ms + u->duration_ms;
    snprintf(until, sizeof(until), "%" PRId64, a->snoozed_until_ms);
    snprintf(wide, sizeof(wide), "%s snoozed %s for %" PRId64 " min%s%s", u->who.name, name, u->duration_ms / 60000,
             u->reason[0] ? ": " : "", u->reason);
    broker_text_fit(text, sizeof(text), wide);
    break;
  default: /* unsnooze: the snooze ends now, and the latest result goes through the rules */
    action = "alert-unsnooze";
    if (a->state != ALERT_SNOOZED) {
      u->err = TT_EINVAL;
      snprintf(u->msg, sizeof(u->msg), "%s is not snoozed", name);
      return TT_ESTATE;
    }
    a->snoozed_until_ms = 0;
    snprintf(text, sizeof(text), "%s ended the snooze of %s (%u reports while snoozed)", u->who.name, name,
             a->suppressed);
    break;
  }
  rc = store_alert_put(s, a);
  if (rc == 0 && ticket) rc = store_ticket_event_add(s, ticket, u->now_ms, u->who.name, "alert", text);
  if (rc == 0 && u->op == TETHER__ALERT_OP__ALERT_UNSNOOZE) {
    rc = alerts_reapply(s, &u->x, a->device, a->check, a->dimension);
    if (rc == 0) rc = store_alert_get(s, a->id, a);
  }
  if (rc) return rc;
  store_device_t d;
  if (store_device_get(s, a->device, &d) == 0) snprintf(u->host, sizeof(u->host), "%s", d.hostname);
  if (a->ticket || a->storm) snprintf(tix, sizeof(tix), "T-%" PRId64, a->ticket ? a->ticket : a->storm);
  broker_audit_rec(&u->h.audit, u->who.name, action, name, "device", a->device, "check", a->check, "dimension",
                   a->dimension, "ticket", tix, "assigned", assigned, "until_ms", until, "reason", u->reason,
                   AUDIT_END);
  return 0;
}

static void update_done(store_req_t *r) {
  update_req_t *u = (update_req_t *)r;
  broker_conn_t *c = broker_creq_conn(u);
  if (r->rc == 0) {
    TT_INFO(MOD, "alert updated", "alert=A-%" PRId64 " by=%s state=%s", u->a.id, u->who.name,
            alert_state_name((alert_state_t)u->a.state));
    alerts_notes_done(u->x.b, &u->x);
  }
  if (!c) goto out;
  if (r->rc == TT_ENOTFOUND) {
    char msg[64];
    snprintf(msg, sizeof(msg), "no such alert: A-%" PRIu64, u->wire_id);
    answered(c, broker_reply_error(c, u->h.id, TT_ENOTFOUND, msg));
  } else if (u->err) {
    answered(c, broker_reply_error(c, u->h.id, u->err, u->msg));
  } else if (r->rc) {
    answered(c, store_error(c, u->h.id, r->rc, "alert_update"));
  } else {
    Tether__Alert o;
    alert_to_wire(&u->a, u->host, &o);
    Tether__Response resp = TETHER__RESPONSE__INIT;
    resp.id = u->h.id;
    resp.body_case = TETHER__RESPONSE__BODY_ALERT;
    resp.alert = &o;
    answered(c, tt_link_send(c->link, TT_K_RESPONSE, &resp.base));
  }
out:
  free(u);
}

static int on_update(broker_conn_t *c, uint32_t id, const Tether__AlertUpdateRequest *q) {
  if (q->id == 0 || q->id > (uint64_t)INT64_MAX) return broker_reply_error(c, id, TT_ENOTFOUND, "no such alert");
  if (q->op != TETHER__ALERT_OP__ALERT_ACK && q->op != TETHER__ALERT_OP__ALERT_SNOOZE &&
      q->op != TETHER__ALERT_OP__ALERT_UNSNOOZE)
    return broker_reply_error(c, id, TT_EINVAL, "unknown alert operation");
  if (q->op == TETHER__ALERT_OP__ALERT_SNOOZE &&
      (q->duration_ms < SNOOZE_MIN_MS || q->duration_ms > TT_ALERT_SNOOZE_MAX_MS))
    return broker_reply_error(c, id, TT_EINVAL, "snooze for 1 min to 7 days (longer is a policy change)");
  update_req_t *u = broker_creq_new(c, id, sizeof(*u), STORE_LANE_WRITE, update_run, update_done, "alert_update");
  if (!u) return TT_ENOMEM;
  if (q->reason.len && tt_text_copy(u->reason, sizeof(u->reason), q->reason)) {
    free(u);
    return broker_reply_error(c, id, TT_ETEXT, "the reason must be at most 256 bytes of text");
  }
  u->who = c->id;
  u->wire_id = q->id;
  u->op = q->op;
  u->duration_ms = (int64_t)q->duration_ms;
  u->now_ms = (int64_t)broker_unix_ms();
  alerts_ctx_init(c->b, &u->x);
  u->x.sweeping = true; /* an unsnooze looks at the last report again */
  u->h.req.audit = &u->h.audit;
  return broker_creq_submit(u);
}

/* ---- checks -------------------------------------------------------------------------------- */

typedef struct {
  char device[STORE_NAME_MAX], host[STORE_TEXT_MAX];
  int64_t version, reported_ms;
  uint32_t n;
  store_check_result_t *r; /* TT_CHECK_RESULTS_MAX */
} dev_checks_t;

typedef struct {
  broker_creq_t h;
  char device[STORE_NAME_MAX], after[STORE_NAME_MAX];
  size_t bytes;             /* the page's result text so far */
  uint32_t cut;             /* results left out for the budget */
  int64_t current;
  uint32_t ndev;
  bool more;
  dev_checks_t d[CHECKS_PAGE_DEVICES + 1];
} checks_req_t;

static int agents_cb(void *ctx, const char *device, int64_t version, int64_t reported_ms) {
  checks_req_t *x = ctx;
  if (x->ndev >= CHECKS_PAGE_DEVICES + 1) return 1;
  dev_checks_t *d = &x->d[x->ndev++];
  snprintf(d->device, sizeof(d->device), "%s", device);
  d->version = version;
  d->reported_ms = reported_ms;
  return 0;
}

typedef struct {
  checks_req_t *x;
  dev_checks_t *d;
} fill_t;

static int results_cb(void *ctx, const store_check_result_t *r) {
  fill_t *f = ctx;
  size_t sz = strlen(r->check) + strlen(r->dimension) + strlen(r->value) + strlen(r->threshold) + strlen(r->message) + 48;
  if (f->d->n >= TT_CHECK_RESULTS_MAX || f->x->bytes + sz > CHECKS_PAGE_BYTES) {
    f->x->cut++;
    return 0;
  }
  f->x->bytes += sz;
  f->d->r[f->d->n++] = *r;
  return 0;
}

static int checks_run(broker_store_t *s, store_req_t *r) {
  checks_req_t *x = (checks_req_t *)r;
  int rc = store_policy_version(s, &x->current);
  if (rc) return rc;
  if (x->device[0]) {
    dev_checks_t *d = &x->d[0];
    snprintf(d->device, sizeof(d->device), "%s", x->device);
    rc = store_check_agent_get(s, x->device, &d->version, &d->reported_ms);
    if (rc == TT_ENOTFOUND) {
      store_device_t dev;
      rc = store_device_get(s, x->device, &dev); /* a device that never reported: none yet */
      if (rc) return rc;
    } else if (rc) {
      return rc;
    }
    x->ndev = 1;
  } else {
    rc = store_check_agents(s, x->after, CHECKS_PAGE_DEVICES + 1, agents_cb, x);
    if (rc < 0) return rc;
    x->more = x->ndev > CHECKS_PAGE_DEVICES;
    if (x->more) x->ndev = CHECKS_PAGE_DEVICES;
  }
  for (uint32_t i = 0; i < x->ndev; i++) {
    dev_checks_t *d = &x->d[i];
    if (i > 0 && x->bytes > CHECKS_PAGE_BYTES / 2) { /* the next page starts here */
      x->ndev = i;
      x->more = true;
      break;
    }
    d->r = calloc(TT_CHECK_RESULTS_MAX, sizeof(*d->r));
    if (!d->r) return TT_ENOMEM;
    fill_t f = {.x = x, .d = d};
    rc = store_check_results(s, d->device, results_cb, &f);
    if (rc < 0) return rc;
    store_device_t dev;
    if (store_device_get(s, d->device, &dev) == 0) snprintf(d->host, sizeof(d->host), "%s", dev.hostname);
  }
  return 0;
}

static void result_to_wire(const store_check_result_t *r, Tether__CheckResult *o) {
  tether__check_result__init(o);
  o->check = tt_text(r->check);
  o->dimension = tt_text(r->dimension);
  o->state = (Tether__CheckState)r->state;
  o->last = (Tether__CheckState)r->last;
  o->value = tt_text(r->value);
  o->threshold = tt_text(r->threshold);
  o->since_ms = (uint64_t)r->since_ms;
  o->run_ms = (uint64_t)r->run_ms;
  o->streak = r->streak;
  o->message = tt_text(r->message);
}

static void checks_done(store_req_t *r) {
  checks_req_t *x = (checks_req_t *)r;
  broker_conn_t *c = broker_creq_conn(x);
  Tether__DeviceChecks dc[CHECKS_PAGE_DEVICES], *dp[CHECKS_PAGE_DEVICES];
  Tether__CheckResult *res[CHECKS_PAGE_DEVICES] = {NULL};
  Tether__CheckResult **rp[CHECKS_PAGE_DEVICES] = {NULL};
  if (!c) goto out;
  if (r->rc == TT_ENOTFOUND) {
    char msg[TT_NAME_MAX + 32];
    snprintf(msg, sizeof(msg), "no such device: %s", x->device);
    answered(c, broker_reply_error(c, x->h.id, TT_ENOTFOUND, msg));
    goto out;
  }
  if (r->rc) {
    answered(c, store_error(c, x->h.id, r->rc, "checks"));
    goto out;
  }
  if (x->cut) TT_WARN(MOD, "check results left out of a page", "count=%u", x->cut);
  for (uint32_t i = 0; i < x->ndev; i++) {
    dev_checks_t *d = &x->d[i];
    res[i] = calloc(d->n ? d->n : 1, sizeof(**res));
    rp[i] = calloc(d->n ? d->n : 1, sizeof(**rp));
    if (!res[i] || !rp[i]) {
      answered(c, TT_ENOMEM);
      goto out;
    }
    for (uint32_t j = 0; j < d->n; j++) {
      result_to_wire(&d->r[j], &res[i][j]);
      rp[i][j] = &res[i][j];
    }
    tether__device_checks__init(&dc[i]);
    dc[i].device = tt_text(d->device);
    dc[i].hostname = tt_text(d->host);
    dc[i].policy_version = (uint64_t)d->version;
    dc[i].reported_ms = (uint64_t)d->reported_ms;
    dc[i].results = rp[i];
    dc[i].n_results = d->n;
    dp[i] = &dc[i];
  }
  Tether__ChecksList list = TETHER__CHECKS_LIST__INIT;
  list.policy_version = (uint64_t)x->current;
  list.devices = dp;
  list.n_devices = x->ndev;
  if (x->more && x->ndev) list.next = tt_text(x->d[x->ndev - 1].device);
  Tether__Response resp = TETHER__RESPONSE__INIT;
  resp.id = x->h.id;
  resp.body_case = TETHER__RESPONSE__BODY_CHECKS;
  resp.checks = &list;
  answered(c, tt_link_send(c->link, TT_K_RESPONSE, &resp.base));
out:
  for (uint32_t i = 0; i < CHECKS_PAGE_DEVICES + 1; i++) free(x->d[i].r);
  for (uint32_t i = 0; i < CHECKS_PAGE_DEVICES; i++) {
    free(res[i]);
    free(rp[i]);
  }
  free(x);
}

static int on_checks(broker_conn_t *c, uint32_t id, const Tether__ChecksRequest *q) {
  checks_req_t *x = broker_creq_new(c, id, sizeof(*x), STORE_LANE_READ, checks_run, checks_done, "checks");
  if (!x) return TT_ENOMEM;
  if ((q->device.len && tt_text_copy(x->device, sizeof(x->device), q->device)) ||
      (q->after.len && tt_text_copy(x->after, sizeof(x->after), q->after))) {
    free(x);
    return broker_reply_error(c, id, TT_EINVAL, "no valid device id");
  }
  return broker_creq_submit(x);
}

int broker_alert_request(broker_conn_t *c, const Tether__Request *q) {
  switch (q->body_case) {
  case TETHER__REQUEST__BODY_ALERT_LIST: return on_list(c, q->id, q->alert_list);
  case TETHER__REQUEST__BODY_ALERT_UPDATE: return on_update(c, q->id, q->alert_update);
  case TETHER__REQUEST__BODY_CHECKS: return on_checks(c, q->id, q->checks);
  default: return broker_reply_error(c, q->id, TT_EKIND, "unknown alert request");
  }
}
