/* Health checks become alerts and alerts become tickets. An agent reports its checks' results
 * (after its own hysteresis); on the store's writer thread each result is kept for `tether
 * checks` and goes through the alert rules (alert_rules.c): one alert per (device, check,
 * dimension), one ticket per alert (or the check's storm ticket), resolved on recovery,
 * reopened when it fails again soon after. A sweep once a minute ends snoozes and maintenance
 * windows, one alert at a time through the same rules (so a window that ends over many failing
 * devices makes one storm ticket, not a flood). */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "alerts.h"
#include "broker.h"
#include "tt/log.h"
#include "tt/msg.h"

#define MOD "alerts"
/* What one report (or sweep) changed, for the log and the audit after the commit. */
#define NOTES_MAX 64u

/* ---- the rules carried out -------------------------------------------------------------- */

void alerts_conf_for(broker_store_t *s, const store_device_groups_t *g, tt_checks_conf_t *conf) {
  tt_checks_defaults(conf);
  const char *order[4] = {"*", g ? g->location : "", g ? g->department : "", g ? g->group : ""};
  for (int i = 0; i < 4; i++) {
    if (!order[i][0]) continue;
    alerts_policy_apply(s, order[i], conf);
  }
}

static void note(alert_ctx_t *x, const char *what, const store_alert_t *a, int64_t ticket) {
  if (x->nnotes >= NOTES_MAX) {
    x->notes_dropped++;
    return;
  }
  alert_note_t *n = &x->notes[x->nnotes++];
  snprintf(n->what, sizeof(n->what), "%s", what);
  n->alert = a->id;
  n->ticket = ticket;
  snprintf(n->device, sizeof(n->device), "%s", a->device);
  snprintf(n->check, sizeof(n->check), "%s", a->check);
  snprintf(n->dimension, sizeof(n->dimension), "%s", a->dimension);
}

/* Text for a ticket's summary or timeline, cut at a character boundary to what it holds. */
TT_PRINTF(3, 4) static void fit(char *dst, size_t cap, const char *fmt, ...) {
  char wide[STORE_TEXT_MAX * 4];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(wide, sizeof(wide), fmt, ap);
  va_end(ap);
  if (n < 0) wide[0] = '\0';
  broker_text_fit(dst, cap, wide);
}

/* "/var 93% (threshold 90%)" or "93%" */
static void describe(char *out, size_t cap, const store_alert_t *a) {
  fit(out, cap, "%s%s%s%s%s%s", a->dimension, a->dimension[0] ? " " : "", a->value[0] ? a->value : "failing",
           a->threshold[0] ? " (threshold " : "", a->threshold, a->threshold[0] ? ")" : "");
}

static int new_ticket(broker_store_t *s, alert_ctx_t *x, const char *source, int prio, const char *summary,
                      const char *device, int64_t *id) {
  store_ticket_t t = {.state = STORE_TICKET_OPEN, .level = STORE_TICKET_LEVEL_MIN};
  snprintf(t.device, sizeof(t.device), "%s", device);
  snprintf(t.summary, sizeof(t.summary), "%s", summary);
  snprintf(t.source, sizeof(t.source), "%s", source);
  /* The catalogue counts priorities from 1 (low) like the wire; the store from 0. */
  t.priority = prio >= TT_CHECK_PRIO_LOW && prio <= TT_CHECK_PRIO_URGENT ? (store_ticket_priority_t)(prio - 1)
                                                                        : STORE_TICKET_NORMAL;
  int64_t first = x->sla_first[t.priority], fix = x->sla_fix[t.priority];
  t.first_response_due_ms = first > 0 ? x->now_ms + first : 0;
  t.resolution_due_ms = fix > 0 ? x->now_ms + fix : 0;
  int rc = store_ticket_add(s, &t, "broker", x->now_ms);
  if (rc == 0) *id = t.id;
  return rc;
}

static int ticket_state(broker_store_t *s, int64_t id, store_ticket_t *t) {
  if (!id) return TT_ENOTFOUND;
  return store_ticket_get(s, id, t);
}

/* Resolve a ticket the broker opened, with why; one already resolved or closed stays. */
static int ticket_resolve(broker_store_t *s, alert_ctx_t *x, int64_t id, const char *why) {
  store_ticket_t t;
  int rc = ticket_state(s, id, &t);
  if (rc == TT_ENOTFOUND) return 0;
  if (rc) return rc;
  if (t.state != STORE_TICKET_OPEN) return store_ticket_event_add(s, id, x->now_ms, "broker", "alert", why);
  t.state = STORE_TICKET_RESOLVED;
  t.resolved_ms = x->now_ms;
  return store_ticket_update(s, &t, "broker", "resolved", why, x->now_ms);
}

/* The check's storm ticket if it is still open (a storm whose ticket a person resolved or
 * closed is over: the next failures are counted afresh). */
static int storm_open(broker_store_t *s, alert_ctx_t *x, const char *check, int64_t *storm) {
  *storm = 0;
  int rc = store_storm_get(s, check, storm);
  if (rc == TT_ENOTFOUND) return 0;
  if (rc) return rc;
  store_ticket_t t;
  rc = ticket_state(s, *storm, &t);
  if (rc && rc != TT_ENOTFOUND) return rc;
  if (rc == 0 && t.state == STORE_TICKET_OPEN) return 0;
  *storm = 0;
  (void)x;
  return store_storm_del(s, check);
}

typedef struct {
  broker_store_t *s;
  alert_ctx_t *x;
  int64_t storm;
  int rc;
} adopt_t;

/* An alert of the storm's window with a ticket of its own: the ticket becomes a child. */
static int adopt_cb(void *ctx, const store_alert_t *a) {
  adopt_t *d = ctx;
  store_alert_t m = *a;
  char text[STORE_TEXT_MAX];
  fit(text, sizeof(text), "part of storm T-%" PRId64, d->storm);
  int rc = store_ticket_set_parent(d->s, m.ticket, d->storm);
  if (rc == 0) rc = store_ticket_event_add(d->s, m.ticket, d->x->now_ms, "broker", "storm", text);
  fit(text, sizeof(text), "%s (%s) joined: T-%" PRId64, m.device, m.dimension[0] ? m.dimension : m.check,
           m.ticket);
  if (rc == 0) rc = store_ticket_event_add(d->s, d->storm, d->x->now_ms, "broker", "storm-member", text);
  m.storm = d->storm;
  if (rc == 0) rc = store_alert_put(d->s, &m);
  d->rc = rc;
  return rc;
}

static int join_storm(broker_store_t *s, alert_ctx_t *x, store_alert_t *a, int64_t storm, const char *host,
                      int prio) {
  char text[STORE_TEXT_MAX], what[STORE_TEXT_MAX];
  describe(what, sizeof(what), a);
  int rc = 0;
  if (!storm) {
    uint32_t others = 0;
    rc = store_alert_failing_devices(s, a->check, x->now_ms - x->rules.storm_window_ms, a->device, &others);
    if (rc) return rc;
    fit(text, sizeof(text), "storm: %s failing on %u devices within %" PRId64 " min", a->check, others + 1,
             x->rules.storm_window_ms / 60000);
    /* The storm's ticket is on the device that tipped it over: every ticket names a device. */
    rc = new_ticket(s, x, "storm", prio < TT_CHECK_PRIO_URGENT ? prio + 1 : prio, text, a->device, &storm);
    if (rc == 0) rc = store_storm_set(s, a->check, storm, x->now_ms);
    adopt_t d = {.s = s, .x = x, .storm = storm};
    if (rc == 0) rc = store_alert_window(s, a->check, x->now_ms - x->rules.storm_window_ms, adopt_cb, &d);
    if (rc == 0) rc = d.rc;
    if (rc) return rc;
    x->storms++;
  }
  fit(text, sizeof(text), "%s (%s): %s", a->device, host, what);
  rc = store_ticket_event_add(s, storm, x->now_ms, "broker", "storm-member", text);
  a->storm = storm;
  a->ticket = 0;
  return rc;
}

/* One result (or, from the sweep, the latest one) through the rules. */
int alerts_apply(broker_store_t *s, alert_ctx_t *x, const char *device, const char *host,
                 const store_check_result_t *r, bool in_maint, const tt_checks_conf_t *conf) {
  store_alert_t a;
  int rc = store_alert_find(s, device, r->check, r->dimension, &a);
  if (rc && rc != TT_ENOTFOUND) return rc;
  alert_prev_t p = {.exists = rc == 0};
  store_ticket_t t;
  if (p.exists) {
    p.state = (alert_state_t)a.state;
    p.resolved_ms = a.resolved_ms;
    p.ticket = a.ticket;
    p.snoozed_until_ms = a.snoozed_until_ms;
    int trc = ticket_state(s, a.ticket, &t);
    if (trc && trc != TT_ENOTFOUND) return trc;
    p.ticket_open = trc == 0 && t.state == STORE_TICKET_OPEN;
    p.ticket_reopenable = trc == 0 && t.state == STORE_TICKET_RESOLVED;
  } else {
    memset(&a, 0, sizeof(a));
    snprintf(a.device, sizeof(a.device), "%s", device);
    snprintf(a.check, sizeof(a.check), "%s", r->check);
    snprintf(a.dimension, sizeof(a.dimension), "%s", r->dimension);
  }
  alert_input_t in = {.state = (tt_check_state_t)r->state, .in_maintenance = in_maint, .now_ms = x->now_ms};
  int64_t storm = 0;
  if (in.state == TT_CHECK_FAILING && (!p.exists || p.state == ALERT_RESOLVED || p.state == ALERT_SNOOZED ||
                                       p.state == ALERT_SUPPRESSED)) {
    rc = store_alert_failing_devices(s, r->check, x->now_ms - x->rules.storm_window_ms, device, &in.failing_devices);
    if (rc == 0) rc = storm_open(s, x, r->check, &storm);
    if (rc) return rc;
    in.storm_open = storm != 0;
  }
  alert_do_t d = alert_decide(&x->rules, &p, &in);
  if (d == ALERT_DO_NOTHING) return 0;
  bool flood = false;
  if (d == ALERT_DO_OPEN_TICKET) { /* one device cannot fill the queue by naming new dimensions */
    uint32_t opened = 0;
    rc = store_tickets_since(s, device, "check", x->now_ms - 3600 * 1000, &opened);
    if (rc) return rc;
    if (opened >= TT_ALERT_TICKETS_PER_DEVICE_HOUR) {
      d = ALERT_DO_SUPPRESS;
      flood = true;
    }
  }
  int tc = tt_check_find(r->check);
  int prio = tc >= 0 ? conf->c[tc].priority : TT_CHECK_PRIO_NORMAL;
  bool fresh = !p.exists || p.state == ALERT_RESOLVED; /* a new failure, not one held by a snooze or window */
  /* The sweep (and an unsnooze) look again at the last report: they are not a report. */
  if (in.state == TT_CHECK_FAILING && !x->sweeping) {
    a.last_ms = x->now_ms;
    snprintf(a.value, sizeof(a.value), "%s", r->value);
    snprintf(a.threshold, sizeof(a.threshold), "%s", r->threshold);
  }
  char text[STORE_TEXT_MAX], what[STORE_TEXT_MAX];
  const char *later = NULL; /* a note written once the alert has its id */
  describe(what, sizeof(what), &a);
  switch (d) {
  case ALERT_DO_TOUCH:
    if (a.state == ALERT_SNOOZED) { /* the snooze is over and it still fails: back to its open ticket */
      fit(text, sizeof(text), "snooze of A-%" PRId64 " ended, still failing: %s (%u reports while snoozed)", a.id,
               what, a.suppressed);
      rc = store_ticket_event_add(s, a.ticket, x->now_ms, "broker", "alert", text);
      a.state = ALERT_OPEN;
      a.snoozed_until_ms = 0;
      if (rc) return rc;
      later = "snooze-ended";
    }
    break;
  case ALERT_DO_SUPPRESS:
    if (!x->sweeping) a.suppressed++; /* reports held back, not sweeps */
    if (a.snoozed_until_ms > x->now_ms) { /* held by a snooze (failing again after a recovery in it) */
      if (a.state != ALERT_SNOOZED) { /* resolved_ms stays: the reopen window counts from it */
        a.state = ALERT_SNOOZED;
        a.opened_ms = x->now_ms;
        a.raised++;
        later = "snoozed";
      }
    } else if (fresh || a.state == ALERT_SNOOZED || (flood && a.state != ALERT_SUPPRESSED)) {
      /* a maintenance window, or a device over its hour's tickets (the sweep tries it again) */
      a.state = ALERT_SUPPRESSED;
      a.snoozed_until_ms = 0;
      a.opened_ms = x->now_ms;
      a.resolved_ms = 0;
      a.raised++;
      later = flood ? "flood" : "suppressed";
    }
    break;
  case ALERT_DO_OPEN_TICKET:
  case ALERT_DO_REOPEN_TICKET:
  case ALERT_DO_JOIN_STORM:
    a.state = ALERT_OPEN;
    a.opened_ms = x->now_ms;
    a.resolved_ms = 0;
    a.snoozed_until_ms = 0;
    a.acked_by[0] = '\0';
    a.raised++;
    if (d == ALERT_DO_REOPEN_TICKET) {
      t.state = STORE_TICKET_OPEN;
      t.resolved_ms = 0;
      fit(text, sizeof(text), "%s failing again on %s: %s", r->check, host, what);
      rc = store_ticket_update(s, &t, "broker", "reopened", text, x->now_ms);
      a.storm = 0;
    } else if (d == ALERT_DO_JOIN_STORM) {
      rc = join_storm(s, x, &a, storm, host, prio);
    } else {
      fit(text, sizeof(text), "%s on %s: %s", r->check, host, what);
      a.storm = 0;
      rc = new_ticket(s, x, "check", prio, text, device, &a.ticket);
    }
    if (rc) return rc;
    break;
  case ALERT_DO_RESOLVE: {
    /* A recovery resolves the ticket of an alert that had one (snoozed ones too: the problem
     * went away); a suppressed alert never had one. */
    bool was_live = a.state == ALERT_OPEN || a.state == ALERT_ACKED || a.state == ALERT_SNOOZED;
    a.state = ALERT_RESOLVED;
    a.resolved_ms = x->now_ms;
    if (a.snoozed_until_ms <= x->now_ms) a.snoozed_until_ms = 0; /* a snooze still running holds on */
    if (r->message[0] && !r->value[0])
      fit(text, sizeof(text), "%s%s%s on %s: %s", r->check, r->dimension[0] ? " " : "", r->dimension, host,
               r->message);
    else
      fit(text, sizeof(text), "%s recovered on %s: %s%s%s", r->check, host, r->dimension,
               r->dimension[0] ? " " : "", r->value[0] ? r->value : "ok");
    if (was_live && a.ticket) rc = ticket_resolve(s, x, a.ticket, text);
    if (rc == 0 && was_live && a.storm) rc = store_ticket_event_add(s, a.storm, x->now_ms, "broker", "storm-member", text);
    if (rc) return rc;
    break;
  }
  default: break;
  }
  /* A sweep that finds it still held changes nothing: no write. */
  if (x->sweeping && d == ALERT_DO_SUPPRESS && !later) return 0;
  if (!a.id) {
    int64_t dropped = 0;
    rc = store_alert_make_room(s, device, &dropped);
    if (rc) return rc;
    if (dropped) x->dropped++;
  }
  rc = store_alert_put(s, &a);
  if (rc) return rc;
  if (later) note(x, later, &a, a.ticket);
  switch (d) {
  case ALERT_DO_OPEN_TICKET: note(x, "opened", &a, a.ticket); break;
  case ALERT_DO_REOPEN_TICKET: note(x, "reopened", &a, a.ticket); break;
  case ALERT_DO_JOIN_STORM: note(x, "storm", &a, a.storm); break;
  case ALERT_DO_RESOLVE:
    note(x, "resolved", &a, a.ticket ? a.ticket : a.storm);
    if (a.storm) { /* the last member of a storm to recover resolves it */
      uint32_t live = 0;
      rc = store_alert_storm_live(s, a.storm, &live);
      if (rc == 0 && live == 0) {
        fit(text, sizeof(text), "every device recovered from %s", a.check);
        rc = ticket_resolve(s, x, a.storm, text);
        if (rc == 0) rc = store_storm_del(s, a.check);
      }
    }
    break;
  default: break;
  }
  return rc;
}

/* ---- reports from agents ------------------------------------------------------------------ */

typedef struct {
  broker_creq_t h;
  alert_ctx_t x;
  char device[STORE_NAME_MAX];
  bool full;
  int64_t policy_version;
  int64_t current_version;  /* the broker's, read in the same request */
  bool refused;             /* over the device's reports a minute */
  size_t n;
  store_check_result_t *res;
} report_req_t;

typedef struct {
  broker_store_t *s;
  report_req_t *q;
  const char *host;
  bool in_maint;
  const tt_checks_conf_t *conf;
  int rc;
} stale_t;

/* A result a full report no longer names (a mount gone, a check turned off): its alert
 * resolves, since nothing will ever say it recovered. */
static int stale_cb(void *ctx, const store_check_result_t *r) {
  stale_t *st = ctx;
  store_check_result_t gone = *r;
  gone.state = TT_CHECK_OK;
  snprintf(gone.message, sizeof(gone.message), "no longer checked on this device");
  gone.value[0] = '\0';
  st->rc = alerts_apply(st->s, &st->q->x, st->q->device, st->host, &gone, st->in_maint, st->conf);
  return st->rc;
}

static int report_run(broker_store_t *s, store_req_t *r) {
  report_req_t *q = (report_req_t *)r;
  alert_ctx_t *x = &q->x;
  bool over = false;
  int rc = store_check_agent_rate(s, q->device, x->now_ms, TT_CHECK_REPORTS_PER_MIN, &over);
  if (rc) return rc;
  if (over) {
    q->refused = true; /* the count stays: this request's other writes are not made */
    return 0;
  }
  rc = store_check_agent_put(s, q->device, q->policy_version, x->now_ms);
  store_device_t dev;
  if (rc == 0) rc = store_device_get(s, q->device, &dev);
  if (rc) return rc;
  store_device_groups_t g;
  bool in_maint = false;
  rc = store_device_groups(s, q->device, &g);
  if (rc == 0) rc = store_maint_active(s, q->device, &g, x->now_ms, &in_maint);
  if (rc) return rc;
  tt_checks_conf_t *conf = malloc(sizeof(*conf));
  if (!conf) return TT_ENOMEM;
  alerts_conf_for(s, &g, conf);
  const char *host = dev.hostname[0] ? dev.hostname : q->device;
  /* A device keeps at most TT_CHECK_RESULTS_MAX results: a report that would pass it (new
   * dimensions without a full report to drop old ones) is refused whole. */
  uint32_t have = 0;
  rc = store_check_results_count(s, q->device, &have);
  if (rc == 0 && !q->full && have + q->n > TT_CHECK_RESULTS_MAX) {
    uint32_t fresh = 0;
    for (size_t i = 0; i < q->n; i++)
      fresh += store_check_result_known(s, q->device, q->res[i].check, q->res[i].dimension) ? 0 : 1;
    if (have + fresh > TT_CHECK_RESULTS_MAX) rc = TT_ETOOBIG;
  }
  for (size_t i = 0; i < q->n && rc == 0; i++) {
    q->res[i].seen_ms = x->now_ms;
    rc = store_check_result_put(s, q->device, &q->res[i]);
    if (rc == 0) rc = alerts_apply(s, x, q->device, host, &q->res[i], in_maint, conf);
  }
  if (rc == 0 && q->full) {
    stale_t st = {.s = s, .q = q, .host = host, .in_maint = in_maint, .conf = conf};
    rc = store_check_results_stale(s, q->device, x->now_ms, stale_cb, &st);
    if (rc == 0) rc = st.rc;
    if (rc == 0) rc = store_check_results_prune(s, q->device, x->now_ms);
  }
  free(conf);
  if (rc == 0) rc = store_policy_version(s, &q->current_version);
  return rc;
}

void alerts_notes_done(broker_t *b, const alert_ctx_t *x) {
  for (size_t i = 0; i < x->nnotes; i++) {
    const alert_note_t *n = &x->notes[i];
    char alert[24], ticket[24];
    snprintf(alert, sizeof(alert), "A-%" PRId64, n->alert);
    ticket[0] = '\0';
    if (n->ticket) snprintf(ticket, sizeof(ticket), "T-%" PRId64, n->ticket);
    TT_INFO(MOD, "alert", "what=%s alert=%s device=%s check=%s dimension=\"%s\" ticket=%s", n->what, alert, n->device,
            n->check, n->dimension, ticket[0] ? ticket : "-");
    broker_audit(b, "broker", "alert", alert, "what", n->what, "device", n->device, "check", n->check, "dimension",
                 n->dimension, "ticket", ticket, AUDIT_END);
  }
  if (x->notes_dropped) {
    char n[24];
    snprintf(n, sizeof(n), "%u", x->notes_dropped);
    TT_WARN(MOD, "alert changes not listed one by one", "count=%u", x->notes_dropped);
    broker_audit(b, "broker", "alert-summary", "", "more_changes", n, AUDIT_END);
  }
  if (x->dropped) TT_INFO(MOD, "old resolved alerts dropped for room", "count=%u", x->dropped);
}

static void report_done(store_req_t *r) {
  report_req_t *q = (report_req_t *)r;
  broker_t *b = q->x.b;
  broker_conn_t *c = broker_creq_conn(q);
  if (r->rc == 0 && q->refused) {
    TT_WARN(MOD, "check report refused: too many this minute", "device=%s per_min=%u", q->device,
            (unsigned)TT_CHECK_REPORTS_PER_MIN);
  } else if (r->rc) {
    TT_WARN(MOD, "check report not kept", "device=%s err=%s", q->device, tt_errname(r->rc));
  } else {
    alerts_notes_done(b, &q->x);
  }
  if (c) {
    Tether__Response resp = TETHER__RESPONSE__INIT;
    Tether__CheckReportResponse ok = TETHER__CHECK_REPORT_RESPONSE__INIT;
    int rc;
    if (r->rc == 0 && q->refused) {
      rc = broker_reply_error(c, q->h.id, TT_EBUSY, "too many check reports this minute: the next full report counts");
    } else if (r->rc == TT_ETOOBIG) {
      char msg[96];
      snprintf(msg, sizeof(msg), "a device keeps at most %u check results: send a full report", (unsigned)TT_CHECK_RESULTS_MAX);
      rc = broker_reply_error(c, q->h.id, TT_ETOOBIG, msg);
    } else if (r->rc) {
      rc = broker_reply_error(c, q->h.id, TT_EIO, "the broker could not keep the report");
    } else {
      resp.id = q->h.id;
      resp.body_case = TETHER__RESPONSE__BODY_CHECK_REPORT;
      resp.check_report = &ok;
      rc = tt_link_send(c->link, TT_K_RESPONSE, &resp.base);
    }
    if (rc) tt_link_close(c->link, rc, "peer not reading");
    /* An agent that runs another policy than the broker's gets the one in force here (once
     * a connection, if it refused it: its refusal is logged and audited then). */
    else if (r->rc == 0 && !q->refused && q->policy_version != q->current_version &&
             c->policy_refused != q->current_version)
      broker_policy_push(c);
  }
  free(q->res);
  free(q);
}

static int result_from_wire(const Tether__CheckResult *w, store_check_result_t *r, char *why, size_t whylen) {
  memset(r, 0, sizeof(*r));
  if (!w || tt_text_copy(r->check, sizeof(r->check), w->check) || tt_check_find(r->check) < 0) {
    snprintf(why, whylen, "a result names no check this broker knows");
    return TT_EINVAL;
  }
  if (tt_text_copy(r->dimension, sizeof(r->dimension), w->dimension) ||
      tt_text_copy(r->value, sizeof(r->value), w->value) || tt_text_copy(r->threshold, sizeof(r->threshold), w->threshold) ||
      tt_text_copy(r->message, sizeof(r->message), w->message)) {
    snprintf(why, whylen, "%s: a text field is not text or longer than %u bytes", r->check, (unsigned)TT_TEXT_MAX);
    return TT_ETEXT;
  }
  if ((unsigned)w->state > TETHER__CHECK_STATE__CHECK_UNKNOWN || (unsigned)w->last > TETHER__CHECK_STATE__CHECK_UNKNOWN) {
    snprintf(why, whylen, "%s: unknown state", r->check);
    return TT_EINVAL;
  }
  r->state = (int)w->state;
  r->last = (int)w->last;
  r->since_ms = w->since_ms <= (uint64_t)INT64_MAX ? (int64_t)w->since_ms : 0;
  r->run_ms = w->run_ms <= (uint64_t)INT64_MAX ? (int64_t)w->run_ms : 0;
  r->streak = w->streak;
  return 0;
}

int broker_check_report(broker_conn_t *c, uint32_t id, const Tether__CheckReportRequest *q) {
  if (c->id.role != TT_ROLE_AGENT) return broker_reply_error(c, id, TT_EDENIED, "check reports come from devices");
  if (q->n_results > TT_CHECK_RESULTS_MAX) {
    char msg[96];
    snprintf(msg, sizeof(msg), "a report carries at most %u results", (unsigned)TT_CHECK_RESULTS_MAX);
    return broker_reply_error(c, id, TT_ETOOBIG, msg);
  }
  uint64_t now = uv_now(c->b->loop);
  if (!c->check_window_ms || now - c->check_window_ms >= 60000u) {
    c->check_window_ms = now;
    c->check_reports = 0;
  }
  /* The device's count is kept in the store (report_run); a connection that goes on past
   * twice that after being told so is not listening: it is cut off. */
  if (++c->check_reports > 2 * TT_CHECK_REPORTS_PER_MIN) {
    TT_WARN(MOD, "check reports flood: disconnected", "device=%s per_min=%u", c->id.name,
            (unsigned)TT_CHECK_REPORTS_PER_MIN);
    tt_link_close(c->link, TT_EBUSY, "too many check reports");
    return 0;
  }
  report_req_t *x = broker_creq_new(c, id, sizeof(*x), STORE_LANE_WRITE, report_run, report_done, "check_report");
  if (!x) return TT_ENOMEM;
  x->res = calloc(q->n_results ? q->n_results : 1, sizeof(*x->res));
  if (!x->res) {
    free(x);
    return TT_ENOMEM;
  }
  char why[160];
  for (size_t i = 0; i < q->n_results; i++) {
    int rc = result_from_wire(q->results[i], &x->res[i], why, sizeof(why));
    if (rc) {
      free(x->res);
      free(x);
      return broker_reply_error(c, id, rc, why);
    }
    /* One result per (check, dimension) in a report. */
    for (size_t j = 0; j < i; j++)
      if (!strcmp(x->res[j].check, x->res[i].check) && !strcmp(x->res[j].dimension, x->res[i].dimension)) {
        free(x->res);
        free(x);
        return broker_reply_error(c, id, TT_EINVAL, "a report names one (check, dimension) twice");
      }
  }
  x->n = q->n_results;
  x->full = q->full;
  x->policy_version = q->policy_version <= (uint64_t)INT64_MAX ? (int64_t)q->policy_version : 0;
  snprintf(x->device, sizeof(x->device), "%s", c->id.name);
  alerts_ctx_init(c->b, &x->x);
  return broker_creq_submit(x);
}

void alerts_ctx_init(broker_t *b, alert_ctx_t *x) {
  x->b = b;
  x->now_ms = (int64_t)broker_unix_ms();
  x->rules.storm_devices = (uint32_t)b->cfg.alert_storm_devices;
  x->rules.storm_window_ms = b->cfg.alert_storm_window_ms;
  x->rules.reopen_window_ms = b->cfg.alert_reopen_window_ms;
  memcpy(x->sla_first, b->cfg.sla_first_response_ms, sizeof(x->sla_first));
  memcpy(x->sla_fix, b->cfg.sla_resolution_ms, sizeof(x->sla_fix));
}

/* ---- the sweep: snoozes and maintenance windows that ended -------------------------------- */

typedef struct {
  store_req_t req;
  alert_ctx_t x;
  int64_t after, next; /* the due alerts' cursor: where this sweep starts, where the next does */
} sweep_req_t;

typedef struct {
  int64_t id;
  char device[STORE_NAME_MAX], check[STORE_NAME_MAX], dim[STORE_DIM_MAX];
} due_t;

#define DUE_MAX 256u /* alerts one sweep looks at; the rest wait for the next minute */

typedef struct {
  due_t d[DUE_MAX];
  size_t n;
} due_list_t;

static int due_cb(void *ctx, const store_alert_t *a) {
  due_list_t *l = ctx;
  if (l->n >= DUE_MAX) return 1;
  due_t *d = &l->d[l->n++];
  d->id = a->id;
  snprintf(d->device, sizeof(d->device), "%s", a->device);
  snprintf(d->check, sizeof(d->check), "%s", a->check);
  snprintf(d->dim, sizeof(d->dim), "%s", a->dimension);
  return 0;
}

typedef struct {
  const due_t *d;
  store_check_result_t r;
  bool found;
} latest_t;

static int latest_cb(void *ctx, const store_check_result_t *r) {
  latest_t *l = ctx;
  if (!strcmp(r->check, l->d->check) && !strcmp(r->dimension, l->d->dim)) {
    l->r = *r;
    l->found = true;
  }
  return 0;
}

int alerts_reapply(broker_store_t *s, alert_ctx_t *x, const char *device, const char *check, const char *dim) {
  store_device_groups_t g;
  bool in_maint = false;
  store_device_t dev;
  int rc = store_device_get(s, device, &dev);
  if (rc == TT_ENOTFOUND) return 0; /* a device removed: nothing will report for it again */
  if (rc == 0) rc = store_device_groups(s, device, &g);
  if (rc == 0) rc = store_maint_active(s, device, &g, x->now_ms, &in_maint);
  if (rc) return rc;
  due_t d;
  snprintf(d.device, sizeof(d.device), "%s", device);
  snprintf(d.check, sizeof(d.check), "%s", check);
  snprintf(d.dim, sizeof(d.dim), "%s", dim);
  latest_t lt = {.d = &d};
  rc = store_check_results(s, device, latest_cb, &lt);
  if (rc) return rc;
  if (!lt.found) { /* no longer checked: resolve */
    memset(&lt.r, 0, sizeof(lt.r));
    snprintf(lt.r.check, sizeof(lt.r.check), "%s", check);
    snprintf(lt.r.dimension, sizeof(lt.r.dimension), "%s", dim);
    snprintf(lt.r.message, sizeof(lt.r.message), "no longer checked on this device");
    lt.r.state = TT_CHECK_OK;
  }
  tt_checks_conf_t *conf = malloc(sizeof(*conf));
  if (!conf) return TT_ENOMEM;
  alerts_conf_for(s, &g, conf);
  rc = alerts_apply(s, x, device, dev.hostname[0] ? dev.hostname : device, &lt.r, in_maint, conf);
  free(conf);
  return rc;
}

static int sweep_run(broker_store_t *s, store_req_t *r) {
  sweep_req_t *q = (sweep_req_t *)r;
  due_list_t *l = calloc(1, sizeof(*l));
  int rc = l ? 0 : TT_ENOMEM;
  if (rc == 0) rc = store_alerts_due(s, q->x.now_ms, q->after, DUE_MAX, due_cb, l);
  if (rc > 0) rc = 0;
  for (size_t i = 0; rc == 0 && i < l->n; i++) rc = alerts_reapply(s, &q->x, l->d[i].device, l->d[i].check, l->d[i].dim);
  /* A full page: the next sweep goes on after it; else it starts again from the first. */
  q->next = rc == 0 && l && l->n == DUE_MAX ? l->d[l->n - 1].id : 0;
  free(l);
  return rc;
}

static void sweep_done(store_req_t *r) {
  sweep_req_t *q = (sweep_req_t *)r;
  if (r->rc) TT_ERROR(MOD, "alert sweep failed", "err=%s", tt_errname(r->rc));
  else alerts_notes_done(q->x.b, &q->x);
  q->x.b->alert_sweeping = false;
  q->x.b->alert_sweep_after = r->rc ? 0 : q->next;
  free(q);
}

void broker_alerts_sweep(broker_t *b, uint64_t now) {
  if (b->alert_sweeping || (b->alert_sweep_ms && now - b->alert_sweep_ms < (uint64_t)b->cfg.alert_sweep_ms)) return;
  b->alert_sweep_ms = now;
  sweep_req_t *q = calloc(1, sizeof(*q));
  if (!q) return;
  q->req.run = sweep_run;
  q->req.done = sweep_done;
  q->req.lane = STORE_LANE_WRITE;
  q->req.what = "alert_sweep";
  alerts_ctx_init(b, &q->x);
  q->x.sweeping = true;
  q->after = b->alert_sweep_after;
  if (store_svc_backlog(b->svc) > TT_STORE_QUEUE_MAX / 2 || store_svc_submit(b->svc, &q->req)) {
    free(q);
    return;
  }
  b->alert_sweeping = true;
}
