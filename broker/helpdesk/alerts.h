/* Shared by the helpdesk files that carry alerts out (alerts.c, alert_cmds.c, policy.c): the
 * context one store request works in, and the rules applied to one result. */
#ifndef BROKER_ALERTS_H
#define BROKER_ALERTS_H

#include "alert_rules.h"
#include "broker.h"
#include "tt/checks.h"

/* What one request changed, for the log and the audit once it committed. */
typedef struct {
  char what[16];
  int64_t alert, ticket;
  char device[STORE_NAME_MAX], check[STORE_NAME_MAX], dimension[STORE_DIM_MAX];
} alert_note_t;

typedef struct {
  broker_t *b;              /* read on the loop only */
  int64_t now_ms;
  alert_rules_t rules;
  int64_t sla_first[4], sla_fix[4];
  uint32_t storms;          /* storms this request opened */
  bool sweeping;            /* the sweep or an unsnooze: the last report looked at again */
  uint32_t dropped;         /* old resolved alerts removed for room */
  size_t nnotes;
  uint32_t notes_dropped;
  alert_note_t notes[64];
} alert_ctx_t;

/* On the loop, before submitting: the broker's settings and the time. */
void alerts_ctx_init(broker_t *b, alert_ctx_t *x);
/* Writer thread: one result (state after the agent's hysteresis) through the rules. */
int alerts_apply(broker_store_t *s, alert_ctx_t *x, const char *device, const char *host,
                 const store_check_result_t *r, bool in_maint, const tt_checks_conf_t *conf);
/* The settings in force for a device of these groups: the catalogue's defaults, then the
 * policy of "*", its location, its department and its group, each over the one before. */
void alerts_conf_for(broker_store_t *s, const store_device_groups_t *g, tt_checks_conf_t *conf);
/* Writer thread: an alert's latest result through the rules again (a snooze or a window
 * ended): as the device's last report left it, or resolved if it is no longer checked. */
int alerts_reapply(broker_store_t *s, alert_ctx_t *x, const char *device, const char *check, const char *dim);
/* policy.c: one group's settings applied over conf (a setting that no longer parses is
 * logged and skipped). */
void alerts_policy_apply(broker_store_t *s, const char *group, tt_checks_conf_t *conf);
/* Loop: log and audit what a request changed. */
void alerts_notes_done(broker_t *b, const alert_ctx_t *x);

#endif
