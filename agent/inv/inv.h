/* The agent's inventory and diagnostics: the report every collector makes (report.c) and the
 * DIAG channel that sends it (serve.c). */
#ifndef AGENT_INV_H
#define AGENT_INV_H

#include "collect.h"
#include "tt/buf.h"

/* The agent's version (agent/version.c), which the report carries. */
extern const char agent_version[];

/* Run every collector, the diagnostics-only ones (inv_diag_collectors, which read
 * env->live) and the inventory's, and write the report into out (its max is the limit):
 * {"device", "hostname", "agent_version", "collected_at" (unix ms), "ms",
 *  "tables": {name: {"columns", "rows", "error"?, "ms"}}} in collector order.
 * TT_ETOOBIG (with why in err) if it does not fit. Runs on a worker thread. */
int inv_report(const inv_env_t *env, const char *device, const char *hostname, tt_buf_t *out, char *err,
               size_t errlen);

/* serve.c: the agent's own facts for a report (the link, the clock against the broker's, the
 * names to resolve), taken on the loop thread; rtt_us -1 when the round trip is not known. */
struct agent_s;
void agent_diag_facts(struct agent_s *a, inv_live_t *l, int64_t rtt_us, uint32_t rtt_wait_ms);
#endif
