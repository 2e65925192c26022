/* What the checks tell: CheckReportRequest to the broker (every result at each Welcome and
 * every TT_CHECK_FULL_REPORT_MS, else the results whose state changed, batched per loop turn
 * and at most one report per CHECKS_REPORT_GAP_MS), and the CHECKS lines of the local socket
 * that `tether-agent checks` prints. A broker that does not take reports yet answers "unknown
 * request": said once at debug, and nothing more is sent on that link. */
#include <stdlib.h>
#include <string.h>
#include "run.h"
#include "tt/log.h"
#include "tt/msg.h"

static void send_report(agent_checks_t *cs);

static void report_cb(uv_timer_t *t) { send_report(t->data); }

static void full_cb(uv_timer_t *t) {
  agent_checks_t *cs = t->data;
  cs->need_full = true;
  checks_report_soon(cs);
}

void checks_report_init(agent_checks_t *cs) {
  uv_timer_init(cs->a->loop, &cs->report_timer);
  uv_timer_init(cs->a->loop, &cs->full_timer);
  cs->report_timer.data = cs->full_timer.data = cs;
  cs->need_full = true;
}

void checks_report_close(agent_checks_t *cs) {
  uv_close((uv_handle_t *)&cs->report_timer, NULL);
  uv_close((uv_handle_t *)&cs->full_timer, NULL);
}

static bool any_dirty(const agent_checks_t *cs) {
  for (size_t i = 0; i < cs->eng.n; i++)
    if (cs->eng.r[i].dirty) return true;
  return false;
}

/* A full report says what runs here: the broker resolves whatever it does not name ("no longer
 * checked"). So it waits until every enabled check has run once since it (re)started: at a
 * restart the dimensions (mounts, units) are not known before the first runs. */
static bool all_ran(const agent_checks_t *cs) {
  for (size_t i = 0; i < TT_CHECK_COUNT; i++)
    if (cs->conf.c[i].enabled && !cs->job[i].ran) return false;
  return true;
}

void checks_report_soon(agent_checks_t *cs) {
  agent_t *a = cs->a;
  if (cs->closing || !a->link || !a->welcomed || cs->unsupported || cs->in_flight) return; /* (see reply_cb) */
  if (!cs->need_full && !any_dirty(cs)) return;
  if (cs->need_full && !all_ran(cs)) return; /* the last first run calls again */
  /* A zero timer runs after the callbacks of this loop turn: the runs that ended together
   * go in one report. */
  uint64_t now = uv_now(a->loop), at = cs->sent_any ? cs->last_report + CHECKS_REPORT_GAP_MS : now;
  uv_timer_start(&cs->report_timer, report_cb, at > now ? at - now : 0, 0);
}

void agent_checks_welcomed(agent_t *a) {
  agent_checks_t *cs = a->checks;
  if (!cs) return;
  /* A new link: the broker (maybe another one, maybe upgraded) hears everything again. */
  cs->unsupported = false;
  cs->need_full = true;
  uv_timer_start(&cs->full_timer, full_cb, TT_CHECK_FULL_REPORT_MS, TT_CHECK_FULL_REPORT_MS);
  checks_report_soon(cs);
}

static void reply_cb(void *data, const Tether__Response *r, int err) {
  agent_checks_t *cs = data;
  cs->in_flight = false;
  if (cs->closing) return;
  if (err) {
    /* Lost with the link (the next Welcome sends all) or unanswered: all again next time. */
    cs->need_full = true;
    if (err != TT_ECLOSED) TT_WARN("checks", "check report unanswered", "err=%s", tt_errname(err));
  } else if (r->error && r->error->code == TETHER__ERROR_CODE__ERR_PROTOCOL) {
    cs->unsupported = true;
    cs->need_full = true;
    if (!cs->said_unsupported) {
      char msg[TT_TEXT_MAX * 4 + 1];
      tt_log_quote(msg, sizeof(msg), r->error->message.data, r->error->message.len);
      TT_DEBUG("checks", "the broker takes no check reports: none are sent until the next connection",
               "msg=\"%s\"", msg);
    }
    cs->said_unsupported = true;
    return;
  } else if (r->error) {
    char msg[TT_TEXT_MAX * 4 + 1];
    tt_log_quote(msg, sizeof(msg), r->error->message.data, r->error->message.len);
    TT_WARN("checks", "check report refused", "code=%d msg=\"%s\"", (int)r->error->code, msg);
    cs->need_full = true;
  }
  checks_report_soon(cs); /* what changed while this one was out */
}

static void send_report(agent_checks_t *cs) {
  agent_t *a = cs->a;
  if (cs->closing || !a->link || !a->welcomed || cs->unsupported || cs->in_flight) return;
  bool full = cs->need_full;
  if (full && !all_ran(cs)) return;
  size_t n = 0;
  for (size_t i = 0; i < cs->eng.n; i++) n += full || cs->eng.r[i].dirty;
  if (!full && n == 0) return;
  Tether__CheckResult *res = n ? calloc(n, sizeof(*res)) : NULL;
  Tether__CheckResult **ptr = n ? calloc(n, sizeof(*ptr)) : NULL;
  if (n && (!res || !ptr)) {
    free(res);
    free(ptr);
    TT_WARN("checks", "out of memory: the report waits", "results=%zu", n);
    uv_timer_start(&cs->report_timer, report_cb, CHECKS_REPORT_GAP_MS, 0);
    return;
  }
  size_t k = 0;
  for (size_t i = 0; i < cs->eng.n; i++) {
    const agent_check_result_t *r = &cs->eng.r[i];
    if (!full && !r->dirty) continue;
    Tether__CheckResult *o = &res[k];
    tether__check_result__init(o);
    o->check = tt_text(tt_checks[r->check].name);
    o->dimension = tt_text(r->dim);
    o->state = (Tether__CheckState)r->state;
    o->last = (Tether__CheckState)r->last;
    o->value = tt_text(r->value);
    o->threshold = tt_text(r->threshold);
    o->since_ms = r->since_ms > 0 ? (uint64_t)r->since_ms : 0;
    o->run_ms = r->run_ms > 0 ? (uint64_t)r->run_ms : 0;
    o->streak = r->streak;
    o->message = tt_text(r->message);
    ptr[k++] = o;
  }
  Tether__CheckReportRequest rq = TETHER__CHECK_REPORT_REQUEST__INIT;
  rq.policy_version = cs->policy_version;
  rq.full = full;
  rq.n_results = k;
  rq.results = ptr;
  int64_t now = agent_unix_ms();
  rq.sent_ms = now > 0 ? (uint64_t)now : 0;
  Tether__Request q = TETHER__REQUEST__INIT;
  q.body_case = TETHER__REQUEST__BODY_CHECK_REPORT;
  q.check_report = &rq;
  int rc = agent_reqs_send(&a->reqs, a->link, &q, CHECKS_REPORT_TIMEOUT_MS, reply_cb, cs);
  free(res);
  free(ptr);
  if (rc) {
    /* Every request slot taken (renewal, inventory, help): try again after the gap. */
    TT_DEBUG("checks", "check report not sent now", "err=%s", tt_errname(rc));
    uv_timer_start(&cs->report_timer, report_cb, CHECKS_REPORT_GAP_MS, 0);
    return;
  }
  for (size_t i = 0; i < cs->eng.n; i++) cs->eng.r[i].dirty = false; /* (full, or exactly the dirty ones) */
  cs->need_full = false;
  cs->in_flight = true;
  cs->sent_any = true;
  cs->last_report = uv_now(a->loop);
  TT_DEBUG("checks", "check report sent", "id=%u full=%d results=%zu policy_version=%llu", q.id, (int)full, k,
           (unsigned long long)cs->policy_version);
}

/* ---- the local socket's CHECKS ----------------------------------------------------------- */

static int by_dim(const void *x, const void *y) {
  const agent_check_result_t *a = *(const agent_check_result_t *const *)x, *b = *(const agent_check_result_t *const *)y;
  return strcmp(a->dim, b->dim);
}

/* POLICY <version>, then per check in the catalogue's order: OFF <check>; NA <check>\t<why>;
 * WAIT <check> (not run yet); or per result CHECK <check>\t<dimension>\t<state>\t<last>\t
 * <streak>\t<needed>\t<value>\t<threshold>\t<since_ms>\t<message> (needed: the runs in a
 * row that would make last the state); and OVER <check>\t<n> for results not tracked. Text
 * was made TAB-free as it entered the engine. */
void agent_checks_lines(agent_t *a, void (*say)(void *ctx, const char *line), void *ctx) {
  agent_checks_t *cs = a->checks;
  char line[TT_LOCAL_LINE_MAX * 2];
  if (!cs) {
    say(ctx, "ERR the checks are not running (out of memory at start)");
    return;
  }
  snprintf(line, sizeof(line), "POLICY %llu", (unsigned long long)cs->policy_version);
  say(ctx, line);
  const agent_check_result_t *mine[TT_CHECK_RESULTS_MAX];
  for (int i = 0; i < TT_CHECK_COUNT; i++) {
    const char *name = tt_checks[i].name;
    const tt_check_conf_t *c = &cs->conf.c[i];
    const agent_check_job_t *j = &cs->job[i];
    size_t n = 0;
    for (size_t k = 0; k < cs->eng.n && n < TT_CHECK_RESULTS_MAX; k++)
      if (cs->eng.r[k].check == (tt_check_id_t)i) mine[n++] = &cs->eng.r[k];
    if (!c->enabled) snprintf(line, sizeof(line), "OFF %s", name);
    else if (j->na) snprintf(line, sizeof(line), "NA %s\t%s", name, j->note);
    else if (!n) snprintf(line, sizeof(line), "WAIT %s", name);
    if (!c->enabled || j->na || !n) {
      say(ctx, line);
      continue;
    }
    qsort(mine, n, sizeof(mine[0]), by_dim);
    for (size_t k = 0; k < n; k++) {
      const agent_check_result_t *r = mine[k];
      uint32_t needed = r->last == TT_CHECK_OK ? c->clear_after : c->raise_after;
      snprintf(line, sizeof(line), "CHECK %s\t%s\t%s\t%s\t%u\t%u\t%s\t%s\t%lld\t%s", name, r->dim,
               tt_check_state_name(r->state), tt_check_state_name(r->last), r->streak, needed, r->value, r->threshold,
               (long long)r->since_ms, r->message);
      say(ctx, line);
    }
    if (cs->eng.over[i]) {
      snprintf(line, sizeof(line), "OVER %s\t%zu", name, cs->eng.over[i]);
      say(ctx, line);
    }
  }
}
