/* The agent's inventory and diagnostics: the report every collector makes (report.c) and the
 * DIAG channel that sends it (serve.c). */
#ifndef AGENT_INV_H
#define AGENT_INV_H

#include "collect.h"
#include "tt/buf.h"

/* Run every collector, the diagnostics-only ones (inv_diag_collectors, which read
 * env->live) and the inventory's, and write the report into out (its max is the limit):
 * {"device", "hostname", "agent_version", "collected_at" (unix ms), "ms",
 *  "tables": {name: {"columns", "rows", "error"?, "ms"}}} in collector order.
 * TT_ETOOBIG (with why in err) if it does not fit. Runs on a worker thread. */
int inv_report(const inv_env_t *env, const char *device, const char *hostname, tt_buf_t *out, char *err,
               size_t errlen);

#endif
