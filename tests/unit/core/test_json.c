/* tt_json: the one escape rule for hand-written JSON strings, with the two options writers
 * use (short escapes, DEL), and code points as \uXXXX or a surrogate pair. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "tt/json.h"

/* The escape of c as a NUL-terminated string ("" when it goes raw). */
static const char *esc(uint8_t c, unsigned flags, char buf[TT_JSON_ESC_MAX + 1]) {
  size_t n = tt_json_escape_byte(buf, c, flags);
  assert_true(n == 0 || n == 2 || n == 6);
  buf[n] = '\0';
  return buf;
}

static void test_required(void **state) {
  (void)state;
  char b[TT_JSON_ESC_MAX + 1];
  assert_string_equal(esc('"', 0, b), "\\\"");
  assert_string_equal(esc('\\', 0, b), "\\\\");
  assert_string_equal(esc(0x00, 0, b), "\\u0000");
  assert_string_equal(esc('\n', 0, b), "\\u000a");
  assert_string_equal(esc(0x1b, 0, b), "\\u001b");
  assert_string_equal(esc(0x1f, 0, b), "\\u001f");
  /* Everything else goes as it is: printable ASCII, DEL, UTF-8's bytes. */
  assert_string_equal(esc(' ', 0, b), "");
  assert_string_equal(esc('/', 0, b), "");
  assert_string_equal(esc(0x7f, 0, b), "");
  assert_string_equal(esc(0xc3, TT_JSON_ESC_SHORT | TT_JSON_ESC_DEL, b), "");
  assert_string_equal(esc(0xff, TT_JSON_ESC_SHORT | TT_JSON_ESC_DEL, b), "");
}

static void test_options(void **state) {
  (void)state;
  char b[TT_JSON_ESC_MAX + 1];
  const char *in = "\b\f\n\r\t", *sh[] = {"\\b", "\\f", "\\n", "\\r", "\\t"};
  const char *lo[] = {"\\u0008", "\\u000c", "\\u000a", "\\u000d", "\\u0009"};
  for (int i = 0; in[i]; i++) {
    assert_string_equal(esc((uint8_t)in[i], TT_JSON_ESC_SHORT, b), sh[i]);
    assert_string_equal(esc((uint8_t)in[i], TT_JSON_ESC_DEL, b), lo[i]);
  }
  assert_string_equal(esc(0x01, TT_JSON_ESC_SHORT, b), "\\u0001"); /* no short form */
  assert_string_equal(esc(0x7f, TT_JSON_ESC_DEL, b), "\\u007f");
  assert_string_equal(esc(0x7f, TT_JSON_ESC_SHORT, b), "");
  assert_string_equal(esc('"', TT_JSON_ESC_SHORT | TT_JSON_ESC_DEL, b), "\\\"");
}

static void test_code_points(void **state) {
  (void)state;
  char b[TT_JSON_ESC_MAX + 1];
  size_t n = tt_json_escape_cp(b, 0x202e); /* right-to-left override */
  b[n] = '\0';
  assert_string_equal(b, "\\u202e");
  n = tt_json_escape_cp(b, 0x9b);
  b[n] = '\0';
  assert_string_equal(b, "\\u009b");
  n = tt_json_escape_cp(b, 0xffff);
  b[n] = '\0';
  assert_string_equal(b, "\\uffff");
  n = tt_json_escape_cp(b, 0x1f600);
  b[n] = '\0';
  assert_string_equal(b, "\\ud83d\\ude00");
  n = tt_json_escape_cp(b, 0x10ffff);
  b[n] = '\0';
  assert_string_equal(b, "\\udbff\\udfff");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_required),
      cmocka_unit_test(test_options),
      cmocka_unit_test(test_code_points),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
