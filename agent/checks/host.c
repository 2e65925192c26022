/* Checks on the machine's and the agent's own state: a restart wanted for too long
 * (reboot_pending, through the diagnostics report's pending_reboot collector), the clock
 * against the broker's (clock_skew, from the link's facts), and the agent's certificate
 * renewal (agent_renewal, from identity/renew.c's state). */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include "checks.h"
#include "inv/linux/linux.h"
#include "inv/linux/scan.h"

void agent_check_reboot_pending(const agent_check_ctx_t *ctx, const tt_check_conf_t *conf, agent_check_run_t *run) {
  tt_checks_format_num(TT_CHECK_V_DURATION, conf->threshold, run->threshold, sizeof(run->threshold));
  size_t ncols = 0;
  while (inv_linux_pending_reboot_cols[ncols]) ncols++;
  inv_table_t t;
  if (inv_table_init(&t, "pending_reboot", inv_linux_pending_reboot_cols, ncols)) {
    agent_check_fail(run, "out of memory");
    return;
  }
  inv_linux_pending_reboot(&ctx->env, &t);
  if (t.error[0]) {
    agent_check_fail(run, "%s", t.error);
    inv_table_free(&t);
    return;
  }
  if (t.nrows == 0) {
    agent_check_sample(run, "", TT_CHECK_OK, NULL, "no restart wanted");
    inv_table_free(&t);
    return;
  }
  /* The oldest reason counts. One with no time (the running kernel's modules are gone) is
   * taken as old already: it is known to need a restart, not since when. */
  int64_t oldest = INT64_MAX;
  size_t which = 0;
  for (size_t i = 0; i < t.nrows; i++) {
    uint64_t s;
    int64_t at = inv_parse_u64(inv_cell(&t, i, 2), &s) && s < (uint64_t)INT64_MAX / 1000 ? (int64_t)s * 1000 : INT64_MIN;
    if (at < oldest) oldest = at, which = i;
  }
  char age[32];
  bool known = oldest != INT64_MIN;
  int64_t wanted = known && ctx->now_ms > oldest ? ctx->now_ms - oldest : 0;
  agent_check_fmt_age(age, sizeof(age), wanted);
  if (known)
    agent_check_sample(run, "", wanted >= conf->threshold ? TT_CHECK_FAILING : TT_CHECK_OK, inv_cell(&t, which, 1),
                       "wanted for %s (%s)", age, inv_cell(&t, which, 0));
  else
    agent_check_sample(run, "", TT_CHECK_FAILING, inv_cell(&t, which, 1), "wanted since an unknown time (%s)",
                       inv_cell(&t, which, 0));
  inv_table_free(&t);
}

/* The same comparison as the diagnostics report's time_skew: this device's clock against the
 * broker's, both taken at one instant, with the estimate's error bar counted in our favour. */
void agent_check_clock_skew(const agent_check_ctx_t *ctx, const tt_check_conf_t *conf, agent_check_run_t *run) {
  tt_checks_format_num(TT_CHECK_V_DURATION, conf->threshold, run->threshold, sizeof(run->threshold));
  if (!ctx->clock_known) {
    agent_check_fail(run, "the broker's clock is not known yet (no Welcome since the agent started)");
    return;
  }
  int64_t skew = ctx->now_ms - ctx->broker_ms;
  int64_t mag = skew < 0 ? -skew : skew, err = ctx->clock_error_ms > 0 ? ctx->clock_error_ms : 0;
  char a[32], e[32];
  agent_check_fmt_age(a, sizeof(a), mag);
  agent_check_fmt_age(e, sizeof(e), err);
  agent_check_sample(run, "", mag - err > conf->threshold ? TT_CHECK_FAILING : TT_CHECK_OK, NULL, "%s%s (+-%s) %s",
                     skew < 0 ? "-" : "+", a, e, skew < 0 ? "behind the broker" : "ahead of the broker");
}

static void fmt_utc(char *out, size_t cap, int64_t ms) {
  time_t t = (time_t)(ms / 1000);
  struct tm tm;
  if (!gmtime_r(&t, &tm) || !strftime(out, cap, "%Y-%m-%dT%H:%M:%SZ", &tm)) snprintf(out, cap, "?");
}

void agent_check_agent_renewal(const agent_check_ctx_t *ctx, const tt_check_conf_t *conf, agent_check_run_t *run) {
  tt_checks_format_num(TT_CHECK_V_DURATION, conf->threshold, run->threshold, sizeof(run->threshold));
  if (!ctx->renew_known) {
    agent_check_na(run, "the agent's certificate names no device: it is not renewed");
    return;
  }
  char when[32], d[32];
  const char *why = ctx->renew_error[0] ? ctx->renew_error : NULL;
  fmt_utc(when, sizeof(when), ctx->not_after_ms);
  if (ctx->now_ms >= ctx->not_after_ms) {
    agent_check_fmt_age(d, sizeof(d), ctx->now_ms - ctx->not_after_ms);
    agent_check_sample(run, "", TT_CHECK_FAILING, why, "the certificate expired %s ago (%s): enroll again", d, when);
  } else if (ctx->now_ms < ctx->renew_due_ms) {
    agent_check_fmt_age(d, sizeof(d), ctx->renew_due_ms - ctx->now_ms);
    agent_check_sample(run, "", TT_CHECK_OK, why, "renews in %s (expires %s)", d, when);
  } else {
    int64_t late = ctx->now_ms - ctx->renew_due_ms;
    agent_check_fmt_age(d, sizeof(d), late);
    agent_check_sample(run, "", late > conf->threshold ? TT_CHECK_FAILING : TT_CHECK_OK, why,
                       "renewal overdue by %s (expires %s)", d, when);
  }
}
