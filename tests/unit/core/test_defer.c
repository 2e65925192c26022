/* Deferred work: outside a batch nothing is deferred; inside, each item runs once when the
 * outermost batch ends, in order, including what those items queue; a cancelled item never
 * runs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include "tt/defer.h"

typedef struct {
  tt_deferred_t d; /* first: the callback casts back */
  int runs;
  int order;
  tt_deferred_t *also; /* queued from inside this one's run */
} item_t;

static int seq;

static void run(tt_deferred_t *d) {
  item_t *it = (item_t *)d;
  it->runs++;
  it->order = ++seq;
  if (it->also) assert_true(tt_defer(it->also, run));
}

static void test_no_batch(void **state) {
  (void)state;
  item_t a = {0};
  assert_false(tt_defer(&a.d, run));
  assert_int_equal(a.runs, 0);
}

static void test_once_in_order_nested(void **state) {
  (void)state;
  item_t a = {0}, b = {0}, c = {0};
  a.also = &c.d;
  seq = 0;
  tt_defer_begin();
  assert_true(tt_defer(&a.d, run));
  tt_defer_begin(); /* nested: its end runs nothing */
  assert_true(tt_defer(&b.d, run));
  assert_true(tt_defer(&a.d, run)); /* already queued: once */
  tt_defer_end();
  assert_int_equal(a.runs + b.runs, 0);
  tt_defer_end();
  assert_int_equal(a.runs, 1);
  assert_int_equal(b.runs, 1);
  assert_int_equal(c.runs, 1); /* queued while the queue ran: same pass */
  assert_int_equal(a.order, 1);
  assert_int_equal(b.order, 2);
  assert_int_equal(c.order, 3);
  assert_false(tt_defer(&a.d, run)); /* the batch is closed */
}

static void test_cancel(void **state) {
  (void)state;
  item_t a = {0}, b = {0}, c = {0};
  tt_defer_begin();
  assert_true(tt_defer(&a.d, run));
  assert_true(tt_defer(&b.d, run));
  assert_true(tt_defer(&c.d, run));
  tt_defer_cancel(&c.d); /* the tail */
  tt_defer_cancel(&a.d); /* the head */
  tt_defer_cancel(&a.d); /* twice is harmless */
  item_t d = {0};
  assert_true(tt_defer(&d.d, run)); /* the tail pointer still right */
  tt_defer_end();
  assert_int_equal(a.runs, 0);
  assert_int_equal(b.runs, 1);
  assert_int_equal(c.runs, 0);
  assert_int_equal(d.runs, 1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_no_batch),
      cmocka_unit_test(test_once_in_order_nested),
      cmocka_unit_test(test_cancel),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
