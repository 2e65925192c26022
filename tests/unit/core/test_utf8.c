/* tt_utf8: strict decoding (no overlongs, surrogates, > U+10FFFF), the unsafe set, and a
 * sanitized copy that is valid UTF-8 whatever came in, cut only at whole characters. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "tt/utf8.h"

static void test_decode_strict(void **state) {
  (void)state;
  uint32_t cp;
  assert_int_equal(tt_utf8_decode((const uint8_t *)"\xc3\xa9", 2, &cp), 2);
  assert_int_equal(cp, 0xe9);
  assert_int_equal(tt_utf8_decode((const uint8_t *)"\xf0\x9f\x98\x80", 4, &cp), 4);
  assert_int_equal(cp, 0x1f600);
  assert_int_equal(tt_utf8_decode((const uint8_t *)"\xc0\xaf", 2, &cp), 0);         /* overlong '/' */
  assert_int_equal(tt_utf8_decode((const uint8_t *)"\xed\xa0\x80", 3, &cp), 0);     /* surrogate */
  assert_int_equal(tt_utf8_decode((const uint8_t *)"\xf4\x90\x80\x80", 4, &cp), 0); /* > U+10FFFF */
  assert_int_equal(tt_utf8_decode((const uint8_t *)"\xe2\x80", 2, &cp), 0);         /* truncated */
}

static void test_unsafe(void **state) {
  (void)state;
  assert_true(tt_cp_unsafe(0x1b));
  assert_true(tt_cp_unsafe(0x7f));
  assert_true(tt_cp_unsafe(0x9b));
  assert_true(tt_cp_unsafe(0x202e));
  assert_true(tt_cp_unsafe(0x2028));
  assert_false(tt_cp_unsafe('a'));
  assert_false(tt_cp_unsafe(0xe9));
}

static void test_sanitize(void **state) {
  (void)state;
  char out[32];
  assert_int_equal(tt_utf8_sanitize(out, sizeof(out), "ok \xff x\0y", 8), 12);
  assert_memory_equal(out, "ok \xef\xbf\xbd x\xef\xbf\xbdy", 12);
  /* Full: cut before a character that does not fit whole. */
  char small[6];
  assert_int_equal(tt_utf8_sanitize(small, sizeof(small), "abc\xc3\xa9\xc3\xa9", 7), 5);
  assert_string_equal(small, "abc\xc3\xa9");
  assert_int_equal(tt_utf8_sanitize(small, sizeof(small), "abcd\xc3\xa9", 6), 4);
  assert_string_equal(small, "abcd");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_decode_strict),
      cmocka_unit_test(test_unsafe),
      cmocka_unit_test(test_sanitize),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
