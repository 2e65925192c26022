/* The alert rules (alert_rules.h): pure, so unit tests walk every case. */
#include "alert_rules.h"

static bool live(alert_state_t s) {
  return s == ALERT_OPEN || s == ALERT_ACKED || s == ALERT_SNOOZED || s == ALERT_SUPPRESSED;
}

/* A failure with no alert that holds it (none, resolved, a snooze or window that ended). */
static alert_do_t raise(const alert_rules_t *r, const alert_prev_t *p, const alert_input_t *in) {
  if (in->in_maintenance) return ALERT_DO_SUPPRESS;
  if (p->exists && p->ticket && p->ticket_reopenable && p->resolved_ms > 0 &&
      in->now_ms - p->resolved_ms <= r->reopen_window_ms)
    return ALERT_DO_REOPEN_TICKET;
  if (in->storm_open || (r->storm_devices > 0 && in->failing_devices + 1 >= r->storm_devices))
    return ALERT_DO_JOIN_STORM;
  return ALERT_DO_OPEN_TICKET;
}

alert_do_t alert_decide(const alert_rules_t *r, const alert_prev_t *p, const alert_input_t *in) {
  switch (in->state) {
  case TT_CHECK_OK: return p->exists && live(p->state) ? ALERT_DO_RESOLVE : ALERT_DO_NOTHING;
  case TT_CHECK_FAILING: break;
  default: return ALERT_DO_NOTHING; /* pending: no verdict yet; unknown: not a pass, not a failure */
  }
  /* A snooze holds the (device, check, dimension), through a recovery and a new failure. */
  if (p->exists && p->snoozed_until_ms > in->now_ms && p->state != ALERT_OPEN && p->state != ALERT_ACKED)
    return ALERT_DO_SUPPRESS;
  if (!p->exists || p->state == ALERT_RESOLVED) return raise(r, p, in);
  switch (p->state) {
  case ALERT_OPEN:
  case ALERT_ACKED: return ALERT_DO_TOUCH;
  case ALERT_SNOOZED:
    if (in->now_ms < p->snoozed_until_ms) return ALERT_DO_SUPPRESS;
    /* The snooze is over and it still fails: an alert with a ticket of its own that is still
     * open goes on with it; otherwise it is raised as new. */
    return p->ticket && p->ticket_open ? ALERT_DO_TOUCH : raise(r, p, in);
  case ALERT_SUPPRESSED: return in->in_maintenance ? ALERT_DO_SUPPRESS : raise(r, p, in);
  default: return ALERT_DO_NOTHING;
  }
}

const char *alert_do_name(alert_do_t d) {
  static const char *const n[] = {"nothing", "touch", "suppress", "open-ticket", "reopen-ticket", "join-storm",
                                  "resolve"};
  return (unsigned)d < sizeof n / sizeof n[0] ? n[d] : "?";
}

const char *alert_state_name(alert_state_t s) {
  static const char *const n[] = {"?", "open", "acked", "snoozed", "resolved", "suppressed"};
  return (unsigned)s < sizeof n / sizeof n[0] ? n[s] : "?";
}
