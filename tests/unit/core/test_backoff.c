/* tt_backoff: delays stay in [ceil/2, ceil], the cap holds forever, retry-after is honoured. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "tt/backoff.h"

static void test_bounds_per_attempt(void **state) {
  (void)state;
  tt_backoff_t b;
  tt_backoff_init(&b, 100, 30000, 42);
  for (uint32_t attempt = 0; attempt < 12; attempt++) {
    uint64_t ceil = (uint64_t)100 << attempt;
    if (ceil > 30000) ceil = 30000;
    uint32_t lo = UINT32_MAX, hi = 0;
    for (int i = 0; i < 2000; i++) {
      b.attempt = attempt;
      uint32_t d = tt_backoff_next(&b);
      assert_int_equal(b.attempt, attempt + 1);
      assert_true(d >= ceil / 2);
      assert_true(d <= ceil);
      if (d < lo) lo = d;
      if (d > hi) hi = d;
    }
    /* The draws cover the range, not one corner of it. */
    assert_true(lo <= ceil / 2 + ceil / 20);
    assert_true(hi >= ceil - ceil / 20);
  }
}

static void test_sequence_grows_then_caps(void **state) {
  (void)state;
  tt_backoff_t b;
  tt_backoff_init(&b, 500, 60000, 7);
  for (uint32_t i = 0; i < 200; i++) {
    uint32_t d = tt_backoff_next(&b);
    assert_true(d <= 60000);
    if (i >= 7) assert_true(d >= 30000); /* 500 << 7 = 64000 > cap */
  }
  assert_int_equal(b.attempt, 200);
}

static void test_no_overflow_at_large_attempts(void **state) {
  (void)state;
  tt_backoff_t b;
  static const uint32_t attempts[] = {31, 32, 33, 63, 64, 65, 1000, UINT32_MAX - 1, UINT32_MAX};
  tt_backoff_init(&b, UINT32_MAX, UINT32_MAX, 3);
  for (size_t i = 0; i < sizeof attempts / sizeof attempts[0]; i++) {
    b.attempt = attempts[i];
    uint32_t d = tt_backoff_next(&b);
    assert_true(d >= UINT32_MAX / 2);
  }
  assert_int_equal(b.attempt, UINT32_MAX); /* saturates, never wraps to 0 */
  tt_backoff_init(&b, 1000, 120000, 3);
  for (size_t i = 0; i < sizeof attempts / sizeof attempts[0]; i++) {
    b.attempt = attempts[i];
    uint32_t d = tt_backoff_next(&b);
    assert_true(d >= 60000 && d <= 120000);
  }
}

static void test_cap_below_base(void **state) {
  (void)state;
  tt_backoff_t b;
  tt_backoff_init(&b, 5000, 1000, 9);
  for (int i = 0; i < 100; i++) {
    uint32_t d = tt_backoff_next(&b);
    assert_true(d >= 500 && d <= 1000);
  }
  tt_backoff_init(&b, 0, 1000, 9);
  assert_int_equal(tt_backoff_next(&b), 0);
}

static void test_reset(void **state) {
  (void)state;
  tt_backoff_t b;
  tt_backoff_init(&b, 100, 100000, 11);
  for (int i = 0; i < 20; i++) (void)tt_backoff_next(&b);
  assert_int_equal(b.attempt, 20);
  tt_backoff_reset(&b);
  assert_int_equal(b.attempt, 0);
  uint32_t d = tt_backoff_next(&b);
  assert_true(d >= 50 && d <= 100);
  assert_int_equal(b.attempt, 1);
}

static void test_retry_after(void **state) {
  (void)state;
  tt_backoff_t b;
  tt_backoff_init(&b, 100, 30000, 5);
  uint32_t lo = UINT32_MAX, hi = 0;
  for (int i = 0; i < 2000; i++) {
    b.attempt = 0;
    uint32_t d = tt_backoff_next_after(&b, 60000);
    assert_true(d >= 60000 && d <= 75000);
    if (d < lo) lo = d;
    if (d > hi) hi = d;
  }
  assert_true(hi > lo); /* jittered, not a fixed wave */
  /* A retry-after shorter than our own backoff does not shorten it. */
  for (int i = 0; i < 500; i++) {
    b.attempt = 20;
    uint32_t d = tt_backoff_next_after(&b, 10);
    assert_true(d >= 15000 && d <= 30000);
    assert_int_equal(b.attempt, 21);
  }
  /* No overflow near the top of the range. */
  b.attempt = 0;
  assert_true(tt_backoff_next_after(&b, UINT32_MAX) == UINT32_MAX);
  b.attempt = 0;
  assert_true(tt_backoff_next_after(&b, 0) <= 100);
}

static void test_seeds(void **state) {
  (void)state;
  tt_backoff_t a, b, c;
  tt_backoff_init(&a, 1000, 1000000, 1);
  tt_backoff_init(&b, 1000, 1000000, 2);
  tt_backoff_init(&c, 1000, 1000000, 1);
  int differ = 0;
  for (int i = 0; i < 16; i++) {
    a.attempt = b.attempt = c.attempt = 10;
    uint32_t da = tt_backoff_next(&a), db = tt_backoff_next(&b), dc = tt_backoff_next(&c);
    assert_int_equal(da, dc); /* same seed, same sequence */
    if (da != db) differ++;
  }
  assert_true(differ >= 12);
  assert_true(a.rng != 0);

  /* seed 0 draws one from the clock and pid: the state is never 0, and two agents
   * initialised back to back do not march in step. */
  tt_backoff_t x, y;
  tt_backoff_init(&x, 1000, 1000000, 0);
  tt_backoff_init(&y, 1000, 1000000, 0);
  assert_true(x.rng != 0 && y.rng != 0);
  assert_true(x.rng != y.rng);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_bounds_per_attempt),
      cmocka_unit_test(test_sequence_grows_then_caps),
      cmocka_unit_test(test_no_overflow_at_large_attempts),
      cmocka_unit_test(test_cap_below_base),
      cmocka_unit_test(test_reset),
      cmocka_unit_test(test_retry_after),
      cmocka_unit_test(test_seeds),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
