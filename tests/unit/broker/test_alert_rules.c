/* Unit tests for broker/helpdesk/alert_rules.c: what one check result does to its alert. One
 * alert per (device, check, dimension) (a failure while open only touches it), pending and
 * unknown never resolve or raise, the reopen window, the storm rule, snoozes and maintenance
 * windows (counted while they last, raised as new after). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include "alert_rules.h"

#define MIN 60000ll
#define HOUR (60 * MIN)

static const alert_rules_t R = {.storm_window_ms = 10 * MIN, .storm_devices = 5, .reopen_window_ms = 24 * HOUR};
static const int64_t NOW = 1000 * HOUR;

static alert_do_t d(const alert_prev_t *p, tt_check_state_t st, uint32_t others, bool storm, bool maint) {
  alert_input_t in = {.state = st, .failing_devices = others, .storm_open = storm, .in_maintenance = maint, .now_ms = NOW};
  return alert_decide(&R, p, &in);
}

static void test_no_alert(void **state) {
  (void)state;
  alert_prev_t none = {0};
  assert_int_equal(d(&none, TT_CHECK_OK, 0, false, false), ALERT_DO_NOTHING);
  assert_int_equal(d(&none, TT_CHECK_PENDING, 0, false, false), ALERT_DO_NOTHING);
  assert_int_equal(d(&none, TT_CHECK_UNKNOWN, 0, false, false), ALERT_DO_NOTHING);
  assert_int_equal(d(&none, TT_CHECK_FAILING, 0, false, false), ALERT_DO_OPEN_TICKET);
}

/* Dedup: repeats of a failure while its alert is open only update it, however many. */
static void test_repeats_touch(void **state) {
  (void)state;
  alert_prev_t open = {.exists = true, .state = ALERT_OPEN, .ticket = 7, .ticket_open = true};
  for (int i = 0; i < 100; i++) assert_int_equal(d(&open, TT_CHECK_FAILING, 40, true, false), ALERT_DO_TOUCH);
  alert_prev_t acked = open;
  acked.state = ALERT_ACKED;
  assert_int_equal(d(&acked, TT_CHECK_FAILING, 0, false, false), ALERT_DO_TOUCH);
  /* unknown is not a pass: the alert stays as it is */
  assert_int_equal(d(&open, TT_CHECK_UNKNOWN, 0, false, false), ALERT_DO_NOTHING);
  assert_int_equal(d(&open, TT_CHECK_PENDING, 0, false, false), ALERT_DO_NOTHING);
  assert_int_equal(d(&open, TT_CHECK_OK, 0, false, false), ALERT_DO_RESOLVE);
  assert_int_equal(d(&acked, TT_CHECK_OK, 0, false, false), ALERT_DO_RESOLVE);
}

static void test_reopen_window(void **state) {
  (void)state;
  alert_prev_t res = {.exists = true, .state = ALERT_RESOLVED, .ticket = 7, .ticket_reopenable = true,
                      .resolved_ms = NOW - 2 * HOUR};
  assert_int_equal(d(&res, TT_CHECK_OK, 0, false, false), ALERT_DO_NOTHING);
  assert_int_equal(d(&res, TT_CHECK_FAILING, 0, false, false), ALERT_DO_REOPEN_TICKET);
  /* even in a storm: the device has a ticket for it already */
  assert_int_equal(d(&res, TT_CHECK_FAILING, 10, true, false), ALERT_DO_REOPEN_TICKET);
  res.resolved_ms = NOW - R.reopen_window_ms; /* the edge is inside */
  assert_int_equal(d(&res, TT_CHECK_FAILING, 0, false, false), ALERT_DO_REOPEN_TICKET);
  res.resolved_ms = NOW - R.reopen_window_ms - 1;
  assert_int_equal(d(&res, TT_CHECK_FAILING, 0, false, false), ALERT_DO_OPEN_TICKET);
  /* a closed ticket is final: a new one */
  res.resolved_ms = NOW - MIN;
  res.ticket_reopenable = false;
  assert_int_equal(d(&res, TT_CHECK_FAILING, 0, false, false), ALERT_DO_OPEN_TICKET);
}

/* The storm rule: the fifth device raising a check within the window starts a storm; while
 * it is open every new failure of that check joins it. */
static void test_storm(void **state) {
  (void)state;
  alert_prev_t none = {0};
  assert_int_equal(d(&none, TT_CHECK_FAILING, 3, false, false), ALERT_DO_OPEN_TICKET);
  assert_int_equal(d(&none, TT_CHECK_FAILING, 4, false, false), ALERT_DO_JOIN_STORM);
  assert_int_equal(d(&none, TT_CHECK_FAILING, 0, true, false), ALERT_DO_JOIN_STORM);
  alert_rules_t off = R;
  off.storm_devices = 0;
  alert_input_t in = {.state = TT_CHECK_FAILING, .failing_devices = 1000, .now_ms = NOW};
  assert_int_equal(alert_decide(&off, &none, &in), ALERT_DO_OPEN_TICKET);
}

static void test_snooze(void **state) {
  (void)state;
  alert_prev_t sn = {.exists = true, .state = ALERT_SNOOZED, .snoozed_until_ms = NOW + HOUR};
  assert_int_equal(d(&sn, TT_CHECK_FAILING, 0, false, false), ALERT_DO_SUPPRESS);
  assert_int_equal(d(&sn, TT_CHECK_OK, 0, false, false), ALERT_DO_RESOLVE);
  /* recovered within the snooze and failing again: still held by it */
  alert_prev_t back = {.exists = true, .state = ALERT_RESOLVED, .snoozed_until_ms = NOW + HOUR, .ticket = 9,
                       .ticket_reopenable = true, .resolved_ms = NOW - MIN};
  assert_int_equal(d(&back, TT_CHECK_FAILING, 0, false, false), ALERT_DO_SUPPRESS);
  back.snoozed_until_ms = NOW;
  assert_int_equal(d(&back, TT_CHECK_FAILING, 0, false, false), ALERT_DO_REOPEN_TICKET);
  /* over, still failing: with its own open ticket it goes on with it; with none, raised */
  sn.snoozed_until_ms = NOW;
  assert_int_equal(d(&sn, TT_CHECK_FAILING, 0, false, false), ALERT_DO_OPEN_TICKET);
  sn.ticket = 9;
  sn.ticket_open = true;
  assert_int_equal(d(&sn, TT_CHECK_FAILING, 0, false, false), ALERT_DO_TOUCH);
  /* over while many devices fail: the storm, not a flood */
  sn.ticket = 0;
  sn.ticket_open = false;
  assert_int_equal(d(&sn, TT_CHECK_FAILING, 20, false, false), ALERT_DO_JOIN_STORM);
}

static void test_maintenance(void **state) {
  (void)state;
  alert_prev_t none = {0};
  assert_int_equal(d(&none, TT_CHECK_FAILING, 0, false, true), ALERT_DO_SUPPRESS);
  assert_int_equal(d(&none, TT_CHECK_FAILING, 50, true, true), ALERT_DO_SUPPRESS);
  alert_prev_t sup = {.exists = true, .state = ALERT_SUPPRESSED};
  assert_int_equal(d(&sup, TT_CHECK_FAILING, 0, false, true), ALERT_DO_SUPPRESS);
  assert_int_equal(d(&sup, TT_CHECK_OK, 0, false, true), ALERT_DO_RESOLVE);
  /* the window ended and it still fails: raised, through the storm rule */
  assert_int_equal(d(&sup, TT_CHECK_FAILING, 0, false, false), ALERT_DO_OPEN_TICKET);
  assert_int_equal(d(&sup, TT_CHECK_FAILING, 49, false, false), ALERT_DO_JOIN_STORM);
  /* an open alert is not suppressed by a window that starts later: it has its ticket */
  alert_prev_t open = {.exists = true, .state = ALERT_OPEN, .ticket = 3, .ticket_open = true};
  assert_int_equal(d(&open, TT_CHECK_FAILING, 0, false, true), ALERT_DO_TOUCH);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_no_alert),   cmocka_unit_test(test_repeats_touch), cmocka_unit_test(test_reopen_window),
      cmocka_unit_test(test_storm),      cmocka_unit_test(test_snooze),        cmocka_unit_test(test_maintenance),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
