/* Health checks on the agent, the parts with no event loop: what one run of a check found
 * (a run: samples per dimension), the engine that turns runs into states with hysteresis, and
 * the samplers, one per check, that look at the machine through the inventory's root. */
#ifndef AGENT_CHECKS_H
#define AGENT_CHECKS_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/statvfs.h>
#include "inv/collect.h"
#include "tt/checks.h"

/* ---- a run: what one check saw --------------------------------------------------------- */

typedef struct {
  char dim[TT_CHECK_DIM_MAX + 1];
  tt_check_state_t raw; /* OK, FAILING or UNKNOWN */
  char value[TT_CHECK_TEXT_MAX + 1];
  char message[TT_CHECK_TEXT_MAX + 1];
} agent_check_sample_t;

typedef struct {
  agent_check_sample_t *s;
  size_t n, cap;
  bool na;     /* the check does not apply here (no systemd, no swap, nothing listed): no results */
  bool failed; /* it could not look at all: each of the check's results is unknown */
  char why[TT_CHECK_TEXT_MAX + 1];       /* for na and failed */
  char threshold[TT_CHECK_TEXT_MAX + 1]; /* what the results are held against, as shown */
  size_t over; /* samples not kept: past TT_CHECK_RESULTS_MAX, or a dimension too long */
} agent_check_run_t;

void agent_check_run_init(agent_check_run_t *r);
void agent_check_run_free(agent_check_run_t *r);
/* One result of the run; value printf-like, message may be NULL. Text is cut at
 * TT_CHECK_TEXT_MAX, control characters become '?'. A dimension longer than TT_CHECK_DIM_MAX
 * is not kept (counted in over, TT_ETOOBIG), nor one past TT_CHECK_RESULTS_MAX (TT_EFULL). */
int agent_check_sample(agent_check_run_t *r, const char *dim, tt_check_state_t raw, const char *message,
                       const char *fmt, ...) TT_PRINTF(5, 6);
void agent_check_fail(agent_check_run_t *r, const char *fmt, ...) TT_PRINTF(2, 3);
void agent_check_na(agent_check_run_t *r, const char *fmt, ...) TT_PRINTF(2, 3);
/* src with control and format characters as '?' and bad UTF-8 as U+FFFD, cut at a whole
 * character to fit cap: text fit for a report, a log line and the local socket's TABs. */
void agent_check_text(char *dst, size_t cap, const char *src);

/* ---- the engine: states with hysteresis ------------------------------------------------ */

/* One (check, dimension). */
typedef struct {
  tt_check_id_t check;
  tt_check_state_t state; /* after hysteresis: what alerts follow (PENDING until the first verdict) */
  tt_check_state_t last;  /* the last run's own result */
  uint32_t streak;        /* runs in a row with that result */
  int64_t since_ms;       /* state held since (unix ms) */
  int64_t run_ms;         /* the last run */
  bool dirty;             /* its state changed since a report carried it */
  bool seen;              /* (within one apply) */
  char dim[TT_CHECK_DIM_MAX + 1];
  char value[TT_CHECK_TEXT_MAX + 1];
  char threshold[TT_CHECK_TEXT_MAX + 1];
  char message[TT_CHECK_TEXT_MAX + 1];
} agent_check_result_t;

typedef struct {
  agent_check_result_t *r; /* n in use of max, in the order they first appeared */
  size_t n, max;
  size_t over[TT_CHECK_COUNT]; /* the last run's results that found no room */
} agent_checks_engine_t;

/* What an apply did, as bits. */
#define AGENT_CHECKS_CHANGED 1u /* a result's state changed (it is dirty) */
#define AGENT_CHECKS_DROPPED 2u /* a result went away: only a full report says so */

/* Room for max results (at most TT_CHECK_RESULTS_MAX). */
int agent_checks_engine_init(agent_checks_engine_t *e, size_t max) TT_WUR;
void agent_checks_engine_free(agent_checks_engine_t *e);
/* One run of a check at now_ms, with its raise_after and clear_after:
 * - each sample's raw result extends its result's streak (or starts a new one); the state
 *   turns FAILING after raise_after FAILING runs in a row, UNKNOWN after raise_after UNKNOWN
 *   runs in a row, OK after clear_after OK runs in a row; a new result is PENDING until then.
 *   UNKNOWN is never a pass: it breaks an OK streak and never clears FAILING.
 * - a failed run is an UNKNOWN run of every result the check has (of dimension "" if none);
 * - a result the run did not mention is dropped (a mount unmounted, a unit no longer
 *   required), as is every result of a check that does not apply (na);
 * - a dimension named twice in one run counts once (the first);
 * - a new result when all max are in use is not tracked: counted in over[check].
 * Returns AGENT_CHECKS_CHANGED and AGENT_CHECKS_DROPPED bits. */
unsigned agent_checks_engine_apply(agent_checks_engine_t *e, tt_check_id_t check, const agent_check_run_t *run,
                                   uint32_t raise_after, uint32_t clear_after, int64_t now_ms);
/* Forget every result of a check (it was turned off). AGENT_CHECKS_DROPPED if there were any. */
unsigned agent_checks_engine_drop(agent_checks_engine_t *e, tt_check_id_t check);
/* The result of (check, dim), or NULL. */
agent_check_result_t *agent_checks_engine_find(agent_checks_engine_t *e, tt_check_id_t check, const char *dim);

/* ---- the samplers ---------------------------------------------------------------------- */

/* statvfs, or a stand-in (unit tests: statvfs cannot be faked from a fixture directory). */
typedef int (*agent_statvfs_fn)(const char *path, struct statvfs *out);

/* What a sampler may look at, taken on the loop thread before the run and never changed
 * while it runs. */
typedef struct {
  inv_env_t env;             /* the machine: inventory.root, inventory.path, a helper's timeout */
  agent_statvfs_fn statvfs_fn;
  int64_t now_ms;            /* this device's clock (unix ms) when the facts were taken */
  /* The broker's clock (inv/serve.c takes the same facts for time_skew). */
  bool clock_known;
  int64_t broker_ms, clock_error_ms;
  /* The agent's certificate and its renewal (identity/renew.c). */
  bool renew_known;          /* a device certificate: renewal applies */
  int64_t not_after_ms, renew_due_ms;
  char renew_error[TT_CHECK_TEXT_MAX + 1]; /* the last attempt's failure; "" since a success */
  char state_dir[PATH_MAX];
} agent_check_ctx_t;

typedef void (*agent_check_fn)(const agent_check_ctx_t *ctx, const tt_check_conf_t *conf, agent_check_run_t *run);

/* disk.c */
void agent_check_disk_used(const agent_check_ctx_t *ctx, const tt_check_conf_t *conf, agent_check_run_t *run);
void agent_check_inodes_used(const agent_check_ctx_t *ctx, const tt_check_conf_t *conf, agent_check_run_t *run);
void agent_check_agent_state_disk(const agent_check_ctx_t *ctx, const tt_check_conf_t *conf, agent_check_run_t *run);
/* memory.c */
void agent_check_memory_pressure(const agent_check_ctx_t *ctx, const tt_check_conf_t *conf, agent_check_run_t *run);
void agent_check_swap_used(const agent_check_ctx_t *ctx, const tt_check_conf_t *conf, agent_check_run_t *run);
/* units.c */
void agent_check_units_failed(const agent_check_ctx_t *ctx, const tt_check_conf_t *conf, agent_check_run_t *run);
void agent_check_services_down(const agent_check_ctx_t *ctx, const tt_check_conf_t *conf, agent_check_run_t *run);
/* host.c */
void agent_check_reboot_pending(const agent_check_ctx_t *ctx, const tt_check_conf_t *conf, agent_check_run_t *run);
void agent_check_clock_skew(const agent_check_ctx_t *ctx, const tt_check_conf_t *conf, agent_check_run_t *run);
void agent_check_agent_renewal(const agent_check_ctx_t *ctx, const tt_check_conf_t *conf, agent_check_run_t *run);
/* cert.c */
void agent_check_cert_expiry(const agent_check_ctx_t *ctx, const tt_check_conf_t *conf, agent_check_run_t *run);

/* Each check's sampler, indexed by tt_check_id_t (run.c). */
extern const agent_check_fn agent_check_samplers[TT_CHECK_COUNT];

/* Shared by the samplers (engine.c): does s match one of the comma list's shell patterns? */
bool agent_check_listed(const char *list, const char *s);
/* A length of time for people: "3d 4h", "5m 2s", "800ms"; at most two units. */
void agent_check_fmt_age(char *out, size_t cap, int64_t ms);
/* Bytes for people: "1.2 GiB", "512 KiB", "17 B". */
void agent_check_fmt_bytes(char *out, size_t cap, uint64_t bytes);

#endif
