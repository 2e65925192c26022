/* What one check result does to its alert, decided without the store (alerts.c gathers the
 * facts and carries the decision out): the dedup, reopen, storm and suppression rules, in one
 * place that unit tests can walk. */
#ifndef BROKER_ALERT_RULES_H
#define BROKER_ALERT_RULES_H

#include <stdbool.h>
#include <stdint.h>
#include "tt/checks.h"

/* Alert states, AlertState's numbers on the wire and in the store. */
typedef enum {
  ALERT_OPEN = 1,       /* failing, with a ticket (its own, or its storm's) */
  ALERT_ACKED = 2,      /* a technician took it (still failing) */
  ALERT_SNOOZED = 3,    /* failing, silenced until snoozed_until_ms */
  ALERT_RESOLVED = 4,   /* recovered */
  ALERT_SUPPRESSED = 5, /* raised in a maintenance window: recorded, no ticket */
} alert_state_t;

/* The broker's [alerts] settings. */
typedef struct {
  int64_t storm_window_ms; /* alerts.storm_window */
  uint32_t storm_devices;  /* alerts.storm_devices */
  int64_t reopen_window_ms; /* alerts.reopen_window */
} alert_rules_t;

typedef enum {
  ALERT_DO_NOTHING = 0,   /* nothing to do (no alert and not failing; pending; unknown) */
  ALERT_DO_TOUCH,         /* still failing: its last report and value are updated */
  ALERT_DO_SUPPRESS,      /* failing while snoozed or in maintenance: counted, no ticket */
  ALERT_DO_OPEN_TICKET,   /* a new failure: the alert opens with a ticket of its own */
  ALERT_DO_REOPEN_TICKET, /* failing again within the reopen window: its ticket opens again */
  ALERT_DO_JOIN_STORM,    /* a new failure while the check fails on many devices: the storm's ticket */
  ALERT_DO_RESOLVE,       /* recovered (or no longer checked): resolved, and its ticket with a comment */
} alert_do_t;

/* The alert as stored for (device, check, dimension). */
typedef struct {
  bool exists;
  alert_state_t state;
  int64_t resolved_ms;     /* when it last recovered (0: never) */
  int64_t ticket;          /* its own ticket, 0: none */
  bool ticket_open;        /* that ticket is open */
  bool ticket_reopenable;  /* that ticket is resolved (not closed): it may open again */
  int64_t snoozed_until_ms;
} alert_prev_t;

typedef struct {
  tt_check_state_t state;   /* the result, after the agent's hysteresis */
  bool in_maintenance;      /* a maintenance window covers the device now */
  uint32_t failing_devices; /* other devices whose alert for this check opened within the storm
                             * window and is not resolved */
  bool storm_open;          /* the check's storm ticket is open */
  int64_t now_ms;
} alert_input_t;

/* The rules (README "Alerts"):
 * - one alert per (device, check, dimension): a failure while it is open only touches it;
 * - pending and unknown change nothing (unknown is never a pass);
 * - ok resolves an alert that is not resolved;
 * - a failure with no open alert: suppressed in a maintenance window; else its ticket opens
 *   again if it recovered within the reopen window and the ticket is only resolved; else it
 *   joins the check's storm when one is open or when, with it, storm_devices devices have
 *   raised the check within the storm window; else it gets a ticket of its own;
 * - snoozed: a failure is counted until the snooze ends (also after a recovery within it),
 *   then handled as a new failure;
 *   suppressed: counted while the window lasts, then handled as a new failure. */
alert_do_t alert_decide(const alert_rules_t *r, const alert_prev_t *p, const alert_input_t *in);
const char *alert_do_name(alert_do_t d);
const char *alert_state_name(alert_state_t s);

#endif
