/* Reachability (agent/inv/linux/reach.c): names resolved each on a thread within one
 * deadline (a resolver that hangs is reported, not waited for; one that fails says why;
 * localhost through the real resolver), and the agent's facts about its broker and its clock
 * as rows; without those facts (outside a report) each table says so. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "inv_fixture.h"
#include "tt/err.h"

static atomic_int g_slow_running;

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* A resolver with canned answers, one of which takes 1.5 s. */
static int fake_resolve(const char *name, char *addrs, size_t cap, char *err, size_t errlen) {
  if (!strcmp(name, "fast.example")) {
    snprintf(addrs, cap, "192.0.2.1, 2001:db8::1");
    return 0;
  }
  if (!strcmp(name, "slow.example")) {
    atomic_fetch_add(&g_slow_running, 1);
    usleep(1500 * 1000);
    snprintf(addrs, cap, "192.0.2.9");
    atomic_fetch_sub(&g_slow_running, 1);
    return 0;
  }
  snprintf(err, errlen, "Name or service not known");
  return TT_ENOTFOUND;
}

static void add_name(inv_live_t *l, const char *n) { snprintf(l->dns[l->ndns++], INV_DNS_NAME_MAX + 1, "%s", n); }

static void run_dns(const inv_env_t *env, inv_table_t *t) {
  assert_int_equal(inv_table_init(t, "dns_lookups", inv_linux_dns_lookups_cols, 4), 0);
  inv_linux_dns_lookups_with(env, t, fake_resolve);
}

static void test_dns_within_a_deadline(void **state) {
  (void)state;
  inv_live_t live;
  memset(&live, 0, sizeof(live));
  add_name(&live, "fast.example");
  add_name(&live, "slow.example");
  add_name(&live, "nope.example");
  live.dns_timeout_ms = 300;
  inv_env_t env = {.root = FIXTURE_A, .live = &live};
  inv_table_t t;
  uint64_t t0 = now_ms();
  run_dns(&env, &t);
  uint64_t took = now_ms() - t0;
  /* The slow one is not waited for: the deadline, not its 1.5 s. */
  assert_true(took >= 250 && took < 1200);
  assert_string_equal(t.error, "");
  assert_int_equal(t.nrows, 3);
  long r = fx_find(&t, "name", "fast.example");
  assert_string_equal(fx_val(&t, (size_t)r, "addresses"), "192.0.2.1, 2001:db8::1");
  assert_string_equal(fx_val(&t, (size_t)r, "error"), "");
  assert_true(atoi(fx_val(&t, (size_t)r, "ms")) < 300);
  r = fx_find(&t, "name", "slow.example");
  assert_string_equal(fx_val(&t, (size_t)r, "addresses"), "");
  assert_string_equal(fx_val(&t, (size_t)r, "error"), "no answer within 300 ms");
  assert_string_equal(fx_val(&t, (size_t)r, "ms"), "300");
  r = fx_find(&t, "name", "nope.example");
  assert_string_equal(fx_val(&t, (size_t)r, "error"), "Name or service not known");
  inv_table_free(&t);
  /* The hanging lookup finishes on its own later, into memory still there (ASan watches). */
  while (atomic_load(&g_slow_running)) usleep(20 * 1000);
  usleep(50 * 1000);

  /* No names: no rows. No facts (outside a report): said. */
  live.ndns = 0;
  run_dns(&env, &t);
  assert_int_equal(t.nrows, 0);
  assert_string_equal(t.error, "");
  inv_table_free(&t);
  inv_env_t bare = {.root = FIXTURE_A};
  run_dns(&bare, &t);
  assert_non_null(strstr(t.error, "known only to the running agent"));
  inv_table_free(&t);
}

static void test_dns_real_resolver(void **state) {
  (void)state;
  char addrs[256], err[128];
  /* localhost is in every hosts file: no network needed. */
  assert_int_equal(inv_resolve_getaddrinfo("localhost", addrs, sizeof(addrs), err, sizeof(err)), 0);
  assert_true(strstr(addrs, "127.0.0.1") || strstr(addrs, "::1"));
  /* Each address once. */
  const char *first = strstr(addrs, "127.0.0.1");
  if (first) assert_null(strstr(first + 1, "127.0.0.1"));
  assert_int_equal(inv_resolve_getaddrinfo("bad..name", addrs, sizeof(addrs), err, sizeof(err)), TT_ENOTFOUND);
  assert_true(err[0] != 0);
  /* Through the collector, with its default resolver. */
  inv_live_t live;
  memset(&live, 0, sizeof(live));
  add_name(&live, "localhost");
  inv_env_t env = {.root = FIXTURE_A, .live = &live};
  inv_table_t t;
  FX_COLLECT(dns_lookups, &env, &t);
  assert_int_equal(t.nrows, 1);
  assert_string_equal(fx_val(&t, 0, "error"), "");
  inv_table_free(&t);
}

static void test_broker_and_clock(void **state) {
  (void)state;
  inv_live_t live;
  memset(&live, 0, sizeof(live));
  snprintf(live.broker, sizeof(live.broker), "broker.example:7443");
  snprintf(live.broker_name, sizeof(live.broker_name), "broker-1");
  live.connected = true;
  live.connected_at_ms = 1709294400123;
  live.connects = 3;
  live.rtt_us = 1234;
  live.rtt_wait_ms = 2;
  live.heard_ms_ago = 850;
  live.heartbeat_ms = 15000;
  live.clock_known = true;
  live.local_ms = 1709298000500;
  live.broker_ms = 1709298000000;
  live.clock_error_ms = 3;
  live.clock_learnt_ms = 1709294400123;
  inv_env_t env = {.root = FIXTURE_A, .live = &live};
  inv_table_t t;
  FX_COLLECT(broker_connection, &env, &t);
  assert_string_equal(t.error, "");
  assert_int_equal(t.nrows, 1);
  assert_string_equal(fx_val(&t, 0, "address"), "broker.example:7443");
  assert_string_equal(fx_val(&t, 0, "name"), "broker-1");
  assert_string_equal(fx_val(&t, 0, "state"), "connected");
  assert_string_equal(fx_val(&t, 0, "connected_since"), "1709294400");
  assert_string_equal(fx_val(&t, 0, "connects"), "3");
  assert_string_equal(fx_val(&t, 0, "round_trip_ms"), "1.234");
  assert_string_equal(fx_val(&t, 0, "heartbeat_ms"), "15000");
  assert_string_equal(fx_val(&t, 0, "last_heard_ms_ago"), "850");
  inv_table_free(&t);
  FX_COLLECT(time_skew, &env, &t);
  assert_string_equal(t.error, "");
  assert_string_equal(fx_val(&t, 0, "source"), "broker");
  assert_string_equal(fx_val(&t, 0, "skew_ms"), "500"); /* this machine is half a second ahead */
  assert_string_equal(fx_val(&t, 0, "uncertainty_ms"), "3");
  assert_string_equal(fx_val(&t, 0, "remote_time"), "1709298000000");
  assert_string_equal(fx_val(&t, 0, "measured_at"), "1709294400");
  inv_table_free(&t);
  /* Behind, and no answer to the ping; an older broker says no time. */
  live.local_ms = live.broker_ms - 120000;
  live.rtt_us = -1;
  live.rtt_wait_ms = 2000;
  FX_COLLECT(time_skew, &env, &t);
  assert_string_equal(fx_val(&t, 0, "skew_ms"), "-120000");
  inv_table_free(&t);
  FX_COLLECT(broker_connection, &env, &t);
  assert_string_equal(fx_val(&t, 0, "round_trip_ms"), "");
  assert_string_equal(t.error, "the broker did not answer a ping within 2000 ms");
  inv_table_free(&t);
  live.clock_known = false;
  FX_COLLECT(time_skew, &env, &t);
  assert_int_equal(t.nrows, 0);
  assert_non_null(strstr(t.error, "did not say its time"));
  inv_table_free(&t);
  inv_env_t bare = {.root = FIXTURE_A};
  FX_COLLECT(broker_connection, &bare, &t);
  assert_non_null(strstr(t.error, "known only to the running agent"));
  inv_table_free(&t);
  FX_COLLECT(time_skew, &bare, &t);
  assert_non_null(strstr(t.error, "known only to the running agent"));
  inv_table_free(&t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_dns_within_a_deadline),
      cmocka_unit_test(test_dns_real_resolver),
      cmocka_unit_test(test_broker_and_clock),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
