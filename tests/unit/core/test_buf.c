/* tt_buf: the maximum is a hard bound on bytes and memory, reserve/commit and consume keep
 * the readable bytes intact, and shrink gives memory back only when nothing is buffered. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "tt/buf.h"

static void fill(uint8_t *p, size_t n, uint8_t seed) {
  for (size_t i = 0; i < n; i++) p[i] = (uint8_t)(seed + i * 7u);
}

static void test_init_holds_nothing(void **state) {
  (void)state;
  tt_buf_t b;
  tt_buf_init(&b, 100);
  assert_null(b.data);
  assert_int_equal(b.len, 0);
  assert_int_equal(b.cap, 0);
  assert_int_equal(b.max, 100);
  tt_slice_t s = tt_buf_slice(&b);
  assert_null(s.ptr);
  assert_int_equal(s.len, 0);
  tt_buf_free(&b);
  tt_buf_free(&b); /* idempotent */
  assert_int_equal(b.max, 100);
}

static void test_max_enforced_nothing_appended(void **state) {
  (void)state;
  uint8_t src[64];
  fill(src, sizeof src, 1);
  tt_buf_t b;
  tt_buf_init(&b, 40);
  assert_int_equal(tt_buf_append(&b, src, 30), 0);
  /* 30 + 11 > 40: refused whole, not truncated. */
  assert_int_equal(tt_buf_append(&b, src, 11), TT_EFULL);
  assert_int_equal(b.len, 30);
  assert_memory_equal(tt_buf_head(&b), src, 30);
  assert_int_equal(tt_buf_reserve(&b, 11), TT_EFULL);
  assert_int_equal(b.len, 30);
  /* Larger than max by itself, and sizes that would wrap len + extra. */
  tt_buf_t e;
  tt_buf_init(&e, 16);
  assert_int_equal(tt_buf_append(&e, src, 17), TT_EFULL);
  assert_null(e.data); /* refused before anything was allocated */
  assert_int_equal(tt_buf_reserve(&e, SIZE_MAX), TT_EFULL);
  assert_int_equal(tt_buf_reserve(&b, SIZE_MAX - 10), TT_EFULL);
  assert_int_equal(tt_buf_reserve(&b, SIZE_MAX), TT_EFULL);
  assert_int_equal(b.len, 30);
  tt_buf_free(&e);
  tt_buf_free(&b);
}

static void test_max_zero(void **state) {
  (void)state;
  uint8_t x = 1;
  tt_buf_t b;
  tt_buf_init(&b, 0);
  assert_int_equal(tt_buf_append(&b, &x, 1), TT_EFULL);
  assert_int_equal(tt_buf_append(&b, &x, 0), 0);
  assert_int_equal(tt_buf_reserve(&b, 0), 0);
  assert_int_equal(b.len, 0);
  assert_true(b.cap <= b.max);
  tt_buf_free(&b);
}

static void test_append_zero(void **state) {
  (void)state;
  tt_buf_t b;
  tt_buf_init(&b, 8);
  /* Nothing to copy: allowed even with a NULL source, allocates nothing. */
  assert_int_equal(tt_buf_append(&b, NULL, 0), 0);
  assert_null(b.data);
  assert_int_equal(b.len, 0);
  uint8_t src[8];
  fill(src, sizeof src, 3);
  assert_int_equal(tt_buf_append(&b, src, 8), 0);
  /* Full buffer: appending zero bytes still succeeds. */
  assert_int_equal(tt_buf_append(&b, src, 0), 0);
  assert_int_equal(b.len, 8);
  assert_memory_equal(tt_buf_head(&b), src, 8);
  tt_buf_free(&b);
}

static void test_growth_up_to_exactly_max(void **state) {
  (void)state;
  /* Sizes around the 256-byte first allocation and around powers of two. */
  static const size_t maxes[] = {1, 10, 255, 256, 257, 1000, 4096 + 10, 65536, 100003};
  uint8_t chunk[97];
  fill(chunk, sizeof chunk, 9);
  for (size_t k = 0; k < sizeof maxes / sizeof maxes[0]; k++) {
    size_t max = maxes[k];
    tt_buf_t b;
    tt_buf_init(&b, max);
    size_t total = 0;
    while (total < max) {
      size_t n = max - total < sizeof chunk ? max - total : sizeof chunk;
      assert_int_equal(tt_buf_append(&b, chunk, n), 0);
      total += n;
      assert_int_equal(b.len, total);
      /* The maximum bounds memory too, not only the readable bytes. */
      assert_true(b.cap <= max);
    }
    assert_int_equal(b.len, max);
    assert_int_equal(tt_buf_append(&b, chunk, 1), TT_EFULL);
    assert_int_equal(tt_buf_reserve(&b, 1), TT_EFULL);
    assert_int_equal(tt_buf_reserve(&b, 0), 0);
    assert_int_equal(b.len, max);
    for (size_t i = 0; i < max; i++) assert_int_equal(b.data[b.off + i], chunk[i % sizeof chunk]);
    tt_buf_free(&b);
  }
}

static void test_reserve_commit(void **state) {
  (void)state;
  tt_buf_t b;
  tt_buf_init(&b, 1000);
  assert_int_equal(tt_buf_reserve(&b, 100), 0);
  assert_non_null(b.data);
  assert_true(b.cap >= 100);
  assert_true(b.cap <= b.max);
  assert_int_equal(b.len, 0); /* reserve alone adds no readable bytes */
  uint8_t *t = tt_buf_tail(&b);
  fill(t, 60, 5);
  tt_buf_commit(&b, 60);
  assert_int_equal(b.len, 60);
  uint8_t expect[60];
  fill(expect, 60, 5);
  assert_memory_equal(tt_buf_head(&b), expect, 60);
  /* The tail follows the readable bytes. */
  assert_ptr_equal(tt_buf_tail(&b), tt_buf_head(&b) + 60);
  assert_int_equal(tt_buf_reserve(&b, 940), 0);
  assert_int_equal(tt_buf_reserve(&b, 941), TT_EFULL);
  tt_buf_commit(&b, 940);
  assert_int_equal(b.len, 1000);
  assert_memory_equal(tt_buf_head(&b), expect, 60); /* kept across growth */
  tt_slice_t s = tt_buf_slice(&b);
  assert_ptr_equal(s.ptr, tt_buf_head(&b));
  assert_int_equal(s.len, 1000);
  tt_buf_free(&b);
}

static void test_consume_and_slide(void **state) {
  (void)state;
  uint8_t src[200];
  fill(src, sizeof src, 11);
  tt_buf_t b;
  tt_buf_init(&b, 200);
  assert_int_equal(tt_buf_append(&b, src, 200), 0);
  uint8_t *mem = b.data;
  size_t cap = b.cap;
  tt_buf_consume(&b, 150);
  assert_int_equal(b.len, 50);
  assert_memory_equal(tt_buf_head(&b), src + 150, 50);
  /* Room exists only by sliding the 50 live bytes to the front: no new memory. */
  assert_int_equal(tt_buf_append(&b, src, 150), 0);
  assert_ptr_equal(b.data, mem);
  assert_int_equal(b.cap, cap);
  assert_int_equal(b.off, 0);
  assert_int_equal(b.len, 200);
  assert_memory_equal(tt_buf_head(&b), src + 150, 50);
  assert_memory_equal(tt_buf_head(&b) + 50, src, 150);
  /* Consume in pieces, then more than is there. */
  tt_buf_consume(&b, 0);
  assert_int_equal(b.len, 200);
  tt_buf_consume(&b, 1);
  assert_int_equal(b.len, 199);
  assert_memory_equal(tt_buf_head(&b), src + 151, 49);
  tt_buf_consume(&b, 10000);
  assert_int_equal(b.len, 0);
  assert_int_equal(b.off, 0);
  /* Consume on an empty, never-allocated buffer is harmless. */
  tt_buf_t e;
  tt_buf_init(&e, 10);
  tt_buf_consume(&e, 5);
  assert_int_equal(e.len, 0);
  tt_buf_free(&e);
  tt_buf_free(&b);
}

static void test_consume_then_grow_keeps_bytes(void **state) {
  (void)state;
  uint8_t src[300];
  fill(src, sizeof src, 13);
  tt_buf_t b;
  tt_buf_init(&b, 4096);
  assert_int_equal(tt_buf_append(&b, src, 256), 0);
  tt_buf_consume(&b, 100);
  /* 156 live + 300 > 256: must grow, copying only the live bytes. */
  assert_int_equal(tt_buf_append(&b, src, 300), 0);
  assert_int_equal(b.len, 456);
  assert_memory_equal(tt_buf_head(&b), src + 100, 156);
  assert_memory_equal(tt_buf_head(&b) + 156, src, 300);
  tt_buf_free(&b);
}

static void test_shrink_only_when_empty(void **state) {
  (void)state;
  uint8_t src[64];
  fill(src, sizeof src, 17);
  tt_buf_t b;
  tt_buf_init(&b, 500);
  assert_int_equal(tt_buf_append(&b, src, 64), 0);
  uint8_t *mem = b.data;
  tt_buf_shrink(&b); /* still holds bytes: keep them */
  assert_ptr_equal(b.data, mem);
  assert_int_equal(b.len, 64);
  assert_memory_equal(tt_buf_head(&b), src, 64);
  tt_buf_consume(&b, 63);
  tt_buf_shrink(&b);
  assert_non_null(b.data);
  assert_int_equal(b.len, 1);
  assert_int_equal(*tt_buf_head(&b), src[63]);
  tt_buf_consume(&b, 1);
  tt_buf_shrink(&b);
  assert_null(b.data);
  assert_int_equal(b.cap, 0);
  assert_int_equal(b.off, 0);
  assert_int_equal(b.max, 500); /* the bound survives */
  /* Usable again afterwards, still bounded. */
  assert_int_equal(tt_buf_append(&b, src, 64), 0);
  assert_memory_equal(tt_buf_head(&b), src, 64);
  tt_buf_reset(&b);
  assert_int_equal(b.len, 0);
  assert_non_null(b.data); /* reset keeps memory, shrink gives it back */
  tt_buf_shrink(&b);
  assert_null(b.data);
  tt_buf_shrink(&b);
  assert_null(b.data);
  tt_buf_free(&b);
}

static void test_u32_helpers(void **state) {
  (void)state;
  uint8_t p[4];
  tt_put_u32(p, 0x01020304u);
  assert_int_equal(p[0], 1);
  assert_int_equal(p[3], 4);
  assert_int_equal(tt_get_u32(p), 0x01020304u);
  tt_put_u32(p, 0xffffffffu);
  assert_int_equal(tt_get_u32(p), 0xffffffffu);
  tt_slice_t s = tt_slice(p, 4);
  assert_ptr_equal(s.ptr, p);
  assert_int_equal(s.len, 4);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_init_holds_nothing),
      cmocka_unit_test(test_max_enforced_nothing_appended),
      cmocka_unit_test(test_max_zero),
      cmocka_unit_test(test_append_zero),
      cmocka_unit_test(test_growth_up_to_exactly_max),
      cmocka_unit_test(test_reserve_commit),
      cmocka_unit_test(test_consume_and_slide),
      cmocka_unit_test(test_consume_then_grow_keeps_bytes),
      cmocka_unit_test(test_shrink_only_when_empty),
      cmocka_unit_test(test_u32_helpers),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
