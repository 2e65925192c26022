/* Unit tests for broker/records/report_rules.c: what a ticket's timeline says for the reports.
 * The first response (public comment, session, channel, a diagnostics report not the
 * requester's own; else the resolution), the last resolution after reopens, waiting on the
 * employee (consent pending, a public comment until the requester's reply) with and without
 * it off the SLA clock, SLA met, breached and pending, nearest-rank medians and p90s, the
 * backlog's buckets and the key table's limit. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <cmocka.h>
#include "report_rules.h"

#define MIN 60000ll
#define HOUR (60 * MIN)
#define DAY (24 * HOUR)

static const int64_t T0 = 1000 * DAY;

static report_ticket_t ticket(int64_t response_target, int64_t resolution_target, bool open) {
  report_ticket_t t = {.created_ms = T0, .requester = "sam", .open = open, .updated_ms = T0};
  t.first_response_due_ms = response_target ? T0 + response_target : 0;
  t.resolution_due_ms = resolution_target ? T0 + resolution_target : 0;
  return t;
}

#define EV(at, who, what) {T0 + (at), who, what}

static void test_first_response_kinds(void **state) {
  (void)state;
  report_ticket_t t = ticket(HOUR, DAY, true);
  report_facts_t f;
  /* internal comments, assignment and the requester's own snapshot are not answers */
  report_event_t a[] = {EV(0, "tech", "created"), EV(1 * MIN, "sam", "diag-attached"), EV(2 * MIN, "tech", "comment"),
                        EV(3 * MIN, "boss", "assigned"), EV(25 * MIN, "tech", "public-comment")};
  report_ticket_facts(&t, a, 5, T0 + 2 * HOUR, false, &f);
  assert_int_equal(f.response_ms, 25 * MIN);
  assert_int_equal(f.response_sla, REPORT_SLA_MET);
  assert_int_equal(f.resolution_ms, -1);
  assert_int_equal(f.resolution_sla, REPORT_SLA_PENDING);
  /* a diagnostics report a technician attached is */
  report_event_t b[] = {EV(0, "tech", "created"), EV(70 * MIN, "tech", "diag-attached")};
  report_ticket_facts(&t, b, 2, T0 + 2 * HOUR, false, &f);
  assert_int_equal(f.response_ms, 70 * MIN);
  assert_int_equal(f.response_sla, REPORT_SLA_BREACHED);
  const char *kinds[] = {"session-requested", "session-opened", "channel-opened"};
  for (size_t i = 0; i < 3; i++) {
    report_event_t c[] = {EV(0, "tech", "created"), EV(7 * MIN, "tech", kinds[i])};
    report_ticket_facts(&t, c, 2, T0 + 2 * HOUR, false, &f);
    assert_int_equal(f.response_ms, 7 * MIN);
  }
  /* nothing yet: pending within the target, breached past it */
  report_event_t d[] = {EV(0, "tech", "created")};
  report_ticket_facts(&t, d, 1, T0 + 30 * MIN, false, &f);
  assert_int_equal(f.response_ms, -1);
  assert_int_equal(f.response_sla, REPORT_SLA_PENDING);
  report_ticket_facts(&t, d, 1, T0 + 61 * MIN, false, &f);
  assert_int_equal(f.response_sla, REPORT_SLA_BREACHED);
  /* no target: none */
  report_ticket_t free_t = ticket(0, 0, true);
  report_ticket_facts(&free_t, d, 1, T0 + 30 * DAY, false, &f);
  assert_int_equal(f.response_sla, REPORT_SLA_NONE);
  assert_int_equal(f.resolution_sla, REPORT_SLA_NONE);
}

static void test_resolution_and_reopen(void **state) {
  (void)state;
  report_ticket_t t = ticket(HOUR, DAY, false);
  report_facts_t f;
  /* resolved with no answer before: the resolution answered it */
  report_event_t a[] = {EV(0, "tech", "created"), EV(40 * MIN, "tech", "resolved")};
  report_ticket_facts(&t, a, 2, T0 + 2 * DAY, false, &f);
  assert_int_equal(f.response_ms, 40 * MIN);
  assert_int_equal(f.resolution_ms, 40 * MIN);
  assert_int_equal(f.resolution_sla, REPORT_SLA_MET);
  assert_int_equal(f.reopens, 0);
  /* reopened and resolved again: the last resolution counts, once per reopen */
  report_event_t b[] = {EV(0, "tech", "created"),        EV(10 * MIN, "tech", "public-comment"),
                        EV(1 * HOUR, "tech", "resolved"), EV(3 * HOUR, "sam", "reopened"),
                        EV(30 * HOUR, "tech", "closed")};
  report_ticket_facts(&t, b, 5, T0 + 2 * DAY, false, &f);
  assert_int_equal(f.response_ms, 10 * MIN);
  assert_int_equal(f.resolution_ms, 30 * HOUR);
  assert_int_equal(f.resolution_sla, REPORT_SLA_BREACHED);
  assert_int_equal(f.reopens, 1);
  /* reopened and open now: no resolution, so far past the target */
  report_ticket_t open = ticket(HOUR, DAY, true);
  report_ticket_facts(&open, b, 4, T0 + 2 * DAY, false, &f);
  assert_int_equal(f.resolution_ms, -1);
  assert_int_equal(f.resolution_sla, REPORT_SLA_BREACHED);
  /* the ticket's state wins over a timeline that does not say: closed, no event for it */
  report_ticket_t closed = ticket(HOUR, DAY, false);
  closed.updated_ms = T0 + 5 * HOUR;
  report_event_t c[] = {EV(0, "tech", "created")};
  report_ticket_facts(&closed, c, 1, T0 + 2 * DAY, false, &f);
  assert_int_equal(f.resolution_ms, 5 * HOUR);
}

static void test_waiting(void **state) {
  (void)state;
  report_ticket_t t = ticket(15 * MIN, 2 * HOUR, false);
  report_facts_t f;
  /* consent asked at 5m, given at 45m; a public comment at 1h, the reply at 1h30; resolved 2h10 */
  report_event_t ev[] = {EV(0, "tech", "created"),
                         EV(5 * MIN, "tech", "session-requested"),
                         EV(45 * MIN, "dev1", "consent-given"),
                         EV(50 * MIN, "tech", "session-opened"),
                         EV(60 * MIN, "tech", "public-comment"),
                         EV(60 * MIN, "tech", "waiting-on-requester"),
                         EV(90 * MIN, "sam", "requester-comment"),
                         EV(130 * MIN, "tech", "resolved")};
  report_ticket_facts(&t, ev, 8, T0 + DAY, false, &f);
  assert_int_equal(f.waiting_ms, 70 * MIN);
  assert_int_equal(f.response_ms, 5 * MIN);
  assert_int_equal(f.resolution_ms, 130 * MIN);
  assert_int_equal(f.resolution_sla, REPORT_SLA_BREACHED);
  /* off the clock: the resolution took 60 minutes of the technicians' time */
  report_ticket_facts(&t, ev, 8, T0 + DAY, true, &f);
  assert_int_equal(f.waiting_ms, 70 * MIN);
  assert_int_equal(f.response_ms, 5 * MIN);
  assert_int_equal(f.resolution_ms, 60 * MIN);
  assert_int_equal(f.resolution_sla, REPORT_SLA_MET);
  /* two requests pending at once count once; an answer without a request changes nothing */
  report_ticket_t o = ticket(0, 0, true);
  report_event_t two[] = {EV(0, "tech", "created"), EV(10 * MIN, "dev1", "consent-refused"),
                          EV(20 * MIN, "tech", "session-requested"), EV(25 * MIN, "tech", "session-requested"),
                          EV(30 * MIN, "dev1", "consent-timeout"), EV(40 * MIN, "dev1", "consent-given")};
  report_ticket_facts(&o, two, 6, T0 + HOUR, false, &f);
  assert_int_equal(f.waiting_ms, 20 * MIN);
  /* a wait still going on counts until now */
  report_event_t open_wait[] = {EV(0, "tech", "created"), EV(10 * MIN, "tech", "waiting-on-requester")};
  report_ticket_facts(&o, open_wait, 2, T0 + HOUR, false, &f);
  assert_int_equal(f.waiting_ms, 50 * MIN);
  /* a public comment that asks nothing ("fixed, closing") does not wait on anyone */
  report_event_t told[] = {EV(0, "tech", "created"), EV(10 * MIN, "tech", "public-comment")};
  report_ticket_facts(&o, told, 2, T0 + HOUR, false, &f);
  assert_int_equal(f.waiting_ms, 0);
  /* a clock that stepped back never makes time negative */
  report_event_t back[] = {EV(0, "tech", "created"), EV(10 * MIN, "tech", "waiting-on-requester"),
                           EV(5 * MIN, "sam", "requester-comment")};
  report_ticket_facts(&o, back, 3, T0 + HOUR, false, &f);
  assert_int_equal(f.waiting_ms, 0);
}

static void test_durations(void **state) {
  (void)state;
  report_durations_t d;
  int64_t none[1];
  report_durations(none, 0, &d);
  assert_int_equal(d.count, 0);
  int64_t ten[] = {10, 9, 8, 7, 6, 5, 4, 3, 2, 1};
  report_durations(ten, 10, &d);
  assert_int_equal(d.count, 10);
  assert_int_equal(d.median_ms, 5); /* the 5th of 10 */
  assert_int_equal(d.p90_ms, 9);    /* the 9th of 10 */
  assert_int_equal(d.mean_ms, 5);   /* 5.5, floored */
  assert_int_equal(d.max_ms, 10);
  int64_t one[] = {42};
  report_durations(one, 1, &d);
  assert_int_equal(d.median_ms, 42);
  assert_int_equal(d.p90_ms, 42);
  int64_t three[] = {300, 100, 200};
  report_durations(three, 3, &d);
  assert_int_equal(d.median_ms, 200);
  assert_int_equal(d.p90_ms, 300);
}

static void test_row_sum(void **state) {
  (void)state;
  report_facts_t a = {.response_ms = 10, .resolution_ms = 100, .waiting_ms = 0, .response_sla = REPORT_SLA_MET,
                      .resolution_sla = REPORT_SLA_MET};
  report_facts_t b = {.response_ms = 30, .resolution_ms = -1, .waiting_ms = 7, .reopens = 2,
                      .response_sla = REPORT_SLA_BREACHED, .resolution_sla = REPORT_SLA_PENDING};
  report_facts_t c = {.response_ms = -1, .resolution_ms = -1, .response_sla = REPORT_SLA_NONE,
                      .resolution_sla = REPORT_SLA_NONE};
  const report_facts_t *f[] = {&a, &b, &c};
  int64_t scratch[3];
  report_row_t row = {0};
  report_row_sum(&row, f, 3, scratch);
  assert_int_equal(row.tickets, 3);
  assert_int_equal(row.resolved, 1);
  assert_int_equal(row.open, 2);
  assert_int_equal(row.reopened, 1);
  assert_int_equal(row.response.count, 2);
  assert_int_equal(row.response.median_ms, 10);
  assert_int_equal(row.resolution.count, 1);
  assert_int_equal(row.waiting.count, 1);
  assert_int_equal(row.waiting.median_ms, 7);
  assert_int_equal(row.response_sla[REPORT_SLA_MET], 1);
  assert_int_equal(row.response_sla[REPORT_SLA_BREACHED], 1);
  assert_int_equal(row.resolution_sla[REPORT_SLA_PENDING], 1);
}

static void test_backlog_and_keys(void **state) {
  (void)state;
  assert_int_equal(report_backlog_bucket(0), 0);
  assert_int_equal(report_backlog_bucket(DAY - 1), 0);
  assert_int_equal(report_backlog_bucket(DAY), 1);
  assert_int_equal(report_backlog_bucket(5 * DAY), 2);
  assert_int_equal(report_backlog_bucket(7 * DAY), 3);
  assert_int_equal(report_backlog_bucket(400 * DAY), 4);
  report_keys_t k;
  report_keys_init(&k, 100);
  char name[16];
  for (int i = 0; i < 100; i++) {
    snprintf(name, sizeof(name), "dev%d", i);
    uint32_t at = report_keys_add(&k, name);
    assert_int_equal(at, (uint32_t)i);
    k.count[at] += (uint64_t)(i % 7);
  }
  assert_int_equal(report_keys_add(&k, "dev42"), 42);
  assert_int_equal(report_keys_add(&k, "one-too-many"), REPORT_KEY_FULL);
  uint32_t top[3];
  assert_int_equal(report_keys_top(&k, top, 3), 3);
  /* count 6: dev6, dev13, dev20 ... ties by name */
  assert_string_equal(k.names[top[0]], "dev13");
  assert_string_equal(k.names[top[1]], "dev20");
  assert_string_equal(k.names[top[2]], "dev27");
  report_keys_free(&k);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_first_response_kinds), cmocka_unit_test(test_resolution_and_reopen),
      cmocka_unit_test(test_waiting),              cmocka_unit_test(test_durations),
      cmocka_unit_test(test_row_sum),              cmocka_unit_test(test_backlog_and_keys),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
