/* The checks running in the agent: each on its own timer at its period, each run on the
 * loop's threadpool with the facts it needs taken on the loop thread first (so the loop never
 * waits for a disk, /proc or systemctl), its result fed to the engine back on the loop, and a
 * report queued when a state changed. A check never overlaps its own last run: a helper that
 * hangs holds the next run back until inv_run's timeout makes it unknown. */
#include <stdlib.h>
#include <string.h>
#include "run.h"
#include "tt/log.h"

const agent_check_fn agent_check_samplers[TT_CHECK_COUNT] = {
    [TT_CHECK_DISK_USED] = agent_check_disk_used,
    [TT_CHECK_INODES_USED] = agent_check_inodes_used,
    [TT_CHECK_MEMORY_PRESSURE] = agent_check_memory_pressure,
    [TT_CHECK_SWAP_USED] = agent_check_swap_used,
    [TT_CHECK_UNITS_FAILED] = agent_check_units_failed,
    [TT_CHECK_SERVICES_DOWN] = agent_check_services_down,
    [TT_CHECK_REBOOT_PENDING] = agent_check_reboot_pending,
    [TT_CHECK_CLOCK_SKEW] = agent_check_clock_skew,
    [TT_CHECK_CERT_EXPIRY] = agent_check_cert_expiry,
    [TT_CHECK_AGENT_RENEWAL] = agent_check_agent_renewal,
    [TT_CHECK_AGENT_STATE_DISK] = agent_check_agent_state_disk,
};

/* What the run may look at, on the loop thread: the agent's facts as inv/serve.c takes them
 * for a diagnostics report (the broker's clock carried forward on the monotonic clock). */
static void take_facts(agent_checks_t *cs, agent_check_ctx_t *ctx) {
  agent_t *a = cs->a;
  memset(ctx, 0, sizeof(*ctx));
  /* cfg does not change while the agent runs: the worker reads these strings in place. */
  ctx->env.root = a->cfg.inventory_root;
  ctx->env.path = a->cfg.inventory_path;
  ctx->statvfs_fn = statvfs;
  ctx->now_ms = agent_unix_ms();
  ctx->clock_known = a->clock_known;
  if (a->clock_known) {
    ctx->broker_ms = a->clock_broker_ms + (int64_t)((uv_hrtime() - a->welcome_hr) / 1000000u);
    ctx->clock_error_ms = a->clock_error_ms;
  }
  ctx->renew_known = a->ident.device_id[0] && a->ident.not_after_ms != INT64_MAX;
  if (ctx->renew_known) {
    ctx->not_after_ms = a->ident.not_after_ms;
    ctx->renew_due_ms = agent_renew_due_ms(a->ident.not_before_ms, a->ident.not_after_ms);
    agent_check_text(ctx->renew_error, sizeof(ctx->renew_error), a->renew.last_error);
  }
  snprintf(ctx->state_dir, sizeof(ctx->state_dir), "%s", a->cfg.state_dir);
}

static void work_cb(uv_work_t *w) {
  agent_check_job_t *j = w->data;
  agent_check_samplers[j->id](&j->ctx, &j->conf, &j->run);
}

/* Say in the log what changed: the journal then shows a check's history on the device. */
static void log_changes(agent_checks_t *cs, tt_check_id_t id, int64_t now_ms) {
  for (size_t i = 0; i < cs->eng.n; i++) {
    const agent_check_result_t *r = &cs->eng.r[i];
    if (r->check != id || r->since_ms != now_ms || !r->dirty) continue;
    char dim[TT_CHECK_DIM_MAX * 4 + 1], value[TT_CHECK_TEXT_MAX * 4 + 1], msg[TT_CHECK_TEXT_MAX * 4 + 1];
    tt_log_quote(dim, sizeof(dim), r->dim, strlen(r->dim));
    tt_log_quote(value, sizeof(value), r->value, strlen(r->value));
    tt_log_quote(msg, sizeof(msg), r->message, strlen(r->message));
    TT_INFO("checks", "state changed", "check=%s dimension=\"%s\" state=%s value=\"%s\" threshold=\"%s\" msg=\"%s\"",
            tt_checks[id].name, dim, tt_check_state_name(r->state), value, r->threshold, msg);
  }
}

static void after_cb(uv_work_t *w, int status) {
  agent_check_job_t *j = w->data;
  agent_checks_t *cs = j->cs;
  j->running = false;
  const tt_check_conf_t *c = &cs->conf.c[j->id];
  /* Stopping, cancelled, or turned off while it ran (its results are gone already). */
  if (cs->closing || status || !c->enabled) {
    agent_check_run_free(&j->run);
    return;
  }
  /* The counts in force now: a policy that came during the run applies to its result. */
  unsigned what = agent_checks_engine_apply(&cs->eng, j->id, &j->run, c->raise_after, c->clear_after, j->ctx.now_ms);
  j->ran = true;
  j->na = j->run.na;
  snprintf(j->note, sizeof(j->note), "%s", j->run.na ? j->run.why : "");
  size_t over = cs->eng.over[j->id];
  if (over && !j->warned_over)
    TT_WARN("checks", "more results than the agent keeps: some are not tracked", "check=%s untracked=%zu max=%u",
            tt_checks[j->id].name, over, (unsigned)TT_CHECK_RESULTS_MAX);
  j->warned_over = over != 0;
  agent_check_run_free(&j->run);
  if (what & AGENT_CHECKS_CHANGED) log_changes(cs, j->id, j->ctx.now_ms);
  if (what & AGENT_CHECKS_DROPPED) cs->need_full = true;
  if (what || cs->need_full) checks_report_soon(cs); /* a full report may have waited for this run */
}

static void tick_cb(uv_timer_t *t) {
  agent_check_job_t *j = t->data;
  agent_checks_t *cs = j->cs;
  if (cs->closing || !cs->conf.c[j->id].enabled) return;
  if (j->running) {
    TT_DEBUG("checks", "still running: this turn is skipped", "check=%s", tt_checks[j->id].name);
    return;
  }
  take_facts(cs, &j->ctx);
  j->conf = cs->conf.c[j->id];
  agent_check_run_init(&j->run);
  j->work.data = j;
  int rc = uv_queue_work(cs->a->loop, &j->work, work_cb, after_cb);
  if (rc) {
    TT_WARN("checks", "cannot run a check", "check=%s err=%s", tt_checks[j->id].name, tt_errname(rc));
    return;
  }
  j->running = true;
}

/* The check's timer from now: its first run after delay, then every period. */
static void job_start(agent_check_job_t *j, uint64_t delay) {
  const tt_check_conf_t *c = &j->cs->conf.c[j->id];
  if (!c->enabled) {
    uv_timer_stop(&j->timer);
    return;
  }
  uv_timer_start(&j->timer, tick_cb, delay, (uint64_t)c->period_ms);
}

void checks_reconfigure(agent_checks_t *cs, const tt_checks_conf_t *old) {
  uint64_t delay = CHECKS_FIRST_MS;
  for (int i = 0; i < TT_CHECK_COUNT; i++) {
    agent_check_job_t *j = &cs->job[i];
    const tt_check_conf_t *c = &cs->conf.c[i];
    if (!memcmp(c, &old->c[i], sizeof(*c))) continue;
    if (!c->enabled) {
      if (agent_checks_engine_drop(&cs->eng, (tt_check_id_t)i)) cs->need_full = true;
      j->ran = j->na = false;
      j->note[0] = 0;
      uv_timer_stop(&j->timer);
      continue;
    }
    if (!old->c[i].enabled) j->ran = false;
    job_start(j, delay);
    delay += CHECKS_STAGGER_MS;
  }
  /* The broker learns the version it now runs with the next report, whatever changed. */
  cs->need_full = true;
  checks_report_soon(cs);
}

void agent_checks_init(agent_t *a) {
  agent_checks_t *cs = calloc(1, sizeof(*cs));
  if (!cs || agent_checks_engine_init(&cs->eng, TT_CHECK_RESULTS_MAX)) {
    TT_ERROR("checks", "out of memory: no health checks will run", "bytes=%zu", sizeof(*cs));
    free(cs);
    return;
  }
  a->checks = cs;
  cs->a = a;
  cs->conf = a->checks_local;
  checks_policy_load(cs);
  checks_report_init(cs);
  size_t on = 0;
  for (int i = 0; i < TT_CHECK_COUNT; i++) {
    agent_check_job_t *j = &cs->job[i];
    j->cs = cs;
    j->id = (tt_check_id_t)i;
    uv_timer_init(a->loop, &j->timer);
    j->timer.data = j;
    if (cs->conf.c[i].enabled) job_start(j, CHECKS_FIRST_MS + on++ * CHECKS_STAGGER_MS);
  }
  TT_INFO("checks", "started", "checks=%zu of %d policy_version=%llu", on, TT_CHECK_COUNT,
          (unsigned long long)cs->policy_version);
}

void agent_checks_close(agent_t *a) {
  agent_checks_t *cs = a->checks;
  if (!cs) return;
  cs->closing = true;
  for (int i = 0; i < TT_CHECK_COUNT; i++) {
    /* A run not started yet is cancelled; one running finishes (a helper within its
     * timeout) and its result is dropped. */
    if (cs->job[i].running) uv_cancel((uv_req_t *)&cs->job[i].work);
    uv_close((uv_handle_t *)&cs->job[i].timer, NULL);
  }
  checks_report_close(cs);
}

void agent_checks_free(agent_t *a) {
  agent_checks_t *cs = a->checks;
  if (!cs) return;
  agent_checks_engine_free(&cs->eng);
  free(cs);
  a->checks = NULL;
}
