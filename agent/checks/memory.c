/* Memory checks, from the diagnostics report's own collectors (agent/inv/linux/pressure.c):
 * memory_pressure is the share of the last minute some tasks waited for memory (PSI "some
 * avg60"), or where the kernel has no PSI the memory still available; swap_used is swap in use. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include "checks.h"
#include "inv/linux/linux.h"
#include "inv/linux/scan.h"

static long col_of(const inv_table_t *t, const char *name) {
  for (size_t c = 0; c < t->ncols; c++)
    if (!strcmp(t->cols[c], name)) return (long)c;
  return -1;
}

/* Run one collector of linux.h into t. */
static int collect(const agent_check_ctx_t *ctx, const char *name, const char *const *cols,
                   void (*fn)(const inv_env_t *, inv_table_t *), inv_table_t *t) {
  size_t n = 0;
  while (cols[n]) n++;
  int rc = inv_table_init(t, name, cols, n);
  if (rc) return rc;
  fn(&ctx->env, t);
  return 0;
}

/* A PSI average ("8.25") in hundredths of a percent; false if it is not one. */
static bool psi_hundredths(const char *s, uint64_t *out) {
  uint64_t whole = 0, frac = 0;
  int fd = 0;
  if (!*s || *s == '.') return false;
  for (; *s && *s != '.'; s++) {
    if (*s < '0' || *s > '9' || whole > 100000) return false;
    whole = whole * 10 + (uint64_t)(*s - '0');
  }
  if (*s == '.') {
    for (s++; *s; s++) {
      if (*s < '0' || *s > '9') return false;
      if (fd < 2) frac = frac * 10 + (uint64_t)(*s - '0'), fd++;
    }
  }
  while (fd < 2) frac *= 10, fd++;
  *out = whole * 100 + frac;
  return true;
}

/* MemAvailable against checks.memory_pressure.available, where there is no PSI. */
static void by_available(const agent_check_ctx_t *ctx, const tt_check_conf_t *conf, agent_check_run_t *run,
                         const char *no_psi) {
  inv_table_t t;
  snprintf(run->threshold, sizeof(run->threshold), "under %" PRId64 "%% available", conf->available);
  if (collect(ctx, "memory_pressure", inv_linux_memory_pressure_cols, inv_linux_memory_pressure, &t)) {
    agent_check_fail(run, "out of memory");
    return;
  }
  long c = col_of(&t, "memory_available_percent");
  uint64_t pct;
  if (t.nrows == 0 || c < 0 || !inv_parse_u64(inv_cell(&t, 0, (size_t)c), &pct) || pct > 100)
    agent_check_fail(run, "%s; and no MemAvailable: %s", no_psi, t.error[0] ? t.error : "/proc/meminfo lacks it");
  else
    agent_check_sample(run, "", (int64_t)pct < conf->available ? TT_CHECK_FAILING : TT_CHECK_OK,
                       "no pressure stall information: judged by the memory available", "%" PRIu64 "%% available",
                       pct);
  inv_table_free(&t);
}

void agent_check_memory_pressure(const agent_check_ctx_t *ctx, const tt_check_conf_t *conf, agent_check_run_t *run) {
  inv_table_t t;
  if (collect(ctx, "pressure_stall", inv_linux_pressure_stall_cols, inv_linux_pressure_stall, &t)) {
    agent_check_fail(run, "out of memory");
    return;
  }
  long c_res = col_of(&t, "resource"), c_avg = col_of(&t, "some_avg60");
  for (size_t i = 0; i < t.nrows; i++) {
    uint64_t h;
    if (strcmp(inv_cell(&t, i, (size_t)c_res), "memory") || !psi_hundredths(inv_cell(&t, i, (size_t)c_avg), &h))
      continue;
    tt_checks_format_num(TT_CHECK_V_PERCENT, conf->threshold, run->threshold, sizeof(run->threshold));
    agent_check_sample(run, "", h >= (uint64_t)conf->threshold * 100 ? TT_CHECK_FAILING : TT_CHECK_OK, NULL,
                       "%" PRIu64 ".%02" PRIu64 "%% of the last minute waiting for memory", h / 100, h % 100);
    inv_table_free(&t);
    return;
  }
  char why[INV_ERROR_MAX];
  snprintf(why, sizeof(why), "%s", t.error[0] ? t.error : "no memory line in /proc/pressure/memory");
  inv_table_free(&t);
  by_available(ctx, conf, run, why);
}

void agent_check_swap_used(const agent_check_ctx_t *ctx, const tt_check_conf_t *conf, agent_check_run_t *run) {
  inv_table_t t;
  tt_checks_format_num(TT_CHECK_V_PERCENT, conf->threshold, run->threshold, sizeof(run->threshold));
  if (collect(ctx, "memory_pressure", inv_linux_memory_pressure_cols, inv_linux_memory_pressure, &t)) {
    agent_check_fail(run, "out of memory");
    return;
  }
  long c_total = col_of(&t, "swap_total"), c_used = col_of(&t, "swap_used"), c_pct = col_of(&t, "swap_used_percent");
  uint64_t total, used, pct;
  if (t.nrows == 0) {
    agent_check_fail(run, "%s", t.error[0] ? t.error : "nothing in /proc/meminfo");
  } else if (!inv_parse_u64(inv_cell(&t, 0, (size_t)c_total), &total) || total == 0) {
    agent_check_na(run, "this machine has no swap");
  } else if (!inv_parse_u64(inv_cell(&t, 0, (size_t)c_used), &used) ||
             !inv_parse_u64(inv_cell(&t, 0, (size_t)c_pct), &pct)) {
    agent_check_fail(run, "/proc/meminfo has no SwapFree");
  } else {
    char u[32], of[32];
    agent_check_fmt_bytes(u, sizeof(u), used);
    agent_check_fmt_bytes(of, sizeof(of), total);
    agent_check_sample(run, "", (int64_t)pct >= conf->threshold ? TT_CHECK_FAILING : TT_CHECK_OK, NULL,
                       "%" PRIu64 "%% used (%s of %s)", pct, u, of);
  }
  inv_table_free(&t);
}
