/* The timing wheel: entries fire once their due time has passed, never before, whatever the
 * lap; removal and re-adding from the callback work; a long stall fires everything due. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include "tt/wheel.h"

typedef struct {
  tt_wheel_entry_t e;
  int fired;
  uint64_t fired_at;
  uint64_t readd;   /* if set, re-add this far in the future once */
} item_t;

typedef struct {
  tt_wheel_t *w;
  uint64_t now;
} ctx_t;

static void cb(void *c, tt_wheel_entry_t *e) {
  ctx_t *x = c;
  item_t *it = (item_t *)e;
  it->fired++;
  it->fired_at = x->now;
  if (it->readd) {
    uint64_t d = it->readd;
    it->readd = 0;
    tt_wheel_add(x->w, e, x->now + d);
  }
}

static void run_until(tt_wheel_t *w, ctx_t *c, uint64_t from, uint64_t to, uint64_t step) {
  for (uint64_t t = from; t <= to; t += step) {
    c->now = t;
    tt_wheel_advance(w, t, cb, c);
  }
}

static void test_fires_on_time(void **state) {
  (void)state;
  tt_wheel_t w;
  tt_wheel_init(&w, 100, 1000);
  ctx_t c = {&w, 1000};
  item_t a = {0}, b = {0}, far = {0};
  tt_wheel_entry_init(&a.e);
  tt_wheel_entry_init(&b.e);
  tt_wheel_entry_init(&far.e);
  tt_wheel_add(&w, &a.e, 1550);
  tt_wheel_add(&w, &b.e, 1000 + 100 * 300); /* more than one lap away */
  tt_wheel_add(&w, &far.e, 1000 + 100 * 600);
  assert_int_equal(w.count, 3);
  run_until(&w, &c, 1000, 1500, 10);
  assert_int_equal(a.fired, 0);
  run_until(&w, &c, 1510, 1600, 10);
  assert_int_equal(a.fired, 1);
  assert_true(a.fired_at >= 1550 && a.fired_at <= 1600); /* at most one tick late */
  run_until(&w, &c, 1610, 1000 + 100 * 300 - 10, 10);
  assert_int_equal(b.fired, 0); /* its slot came round once before: not due then */
  run_until(&w, &c, 1000 + 100 * 300, 1000 + 100 * 301, 10);
  assert_int_equal(b.fired, 1);
  assert_int_equal(far.fired, 0);
  assert_int_equal(w.count, 1);
  tt_wheel_remove(&w, &far.e);
  tt_wheel_remove(&w, &far.e); /* twice is harmless */
  assert_int_equal(w.count, 0);
  run_until(&w, &c, 1000 + 100 * 301, 1000 + 100 * 700, 100);
  assert_int_equal(far.fired, 0);
}

static void test_readd_from_callback_and_past_due(void **state) {
  (void)state;
  tt_wheel_t w;
  tt_wheel_init(&w, 1000, 0);
  ctx_t c = {&w, 0};
  item_t a = {0};
  tt_wheel_entry_init(&a.e);
  a.readd = 5000;
  tt_wheel_add(&w, &a.e, 0); /* already due */
  run_until(&w, &c, 0, 1000, 1000);
  assert_int_equal(a.fired, 1);
  assert_int_equal(w.count, 1); /* re-added */
  run_until(&w, &c, 2000, 5000, 1000);
  assert_int_equal(a.fired, 1);
  run_until(&w, &c, 6000, 7000, 1000);
  assert_int_equal(a.fired, 2);
  assert_int_equal(w.count, 0);
}

static void test_long_stall_fires_everything_due(void **state) {
  (void)state;
  tt_wheel_t w;
  tt_wheel_init(&w, 10, 0);
  ctx_t c = {&w, 0};
  item_t it[50];
  for (int i = 0; i < 50; i++) {
    it[i] = (item_t){0};
    tt_wheel_entry_init(&it[i].e);
    tt_wheel_add(&w, &it[i].e, (uint64_t)(i * 97));
  }
  c.now = 1000000; /* far past every due time, many laps */
  tt_wheel_advance(&w, c.now, cb, &c);
  for (int i = 0; i < 50; i++) assert_int_equal(it[i].fired, 1);
  assert_int_equal(w.count, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_fires_on_time),
      cmocka_unit_test(test_readd_from_callback_and_past_due),
      cmocka_unit_test(test_long_stall_fires_everything_due),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
