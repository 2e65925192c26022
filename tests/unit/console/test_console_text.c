/* How the console shows what the broker sends: untrusted bytes never reach a terminal as
 * controls, escapes or bidi overrides, JSON output stays valid, and the ids and times people
 * type are read strictly. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "console.h"
#include "tt/msg.h"

#define LIT(s) bytes((s), sizeof(s) - 1)

static ProtobufCBinaryData bytes(const char *s, size_t n) {
  ProtobufCBinaryData b = {n, (uint8_t *)s};
  return b;
}

/* Everything console_json_bytes writes for b, as a C string. */
static char *json_of(ProtobufCBinaryData b) {
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  assert_non_null(f);
  console_json_bytes(f, b);
  fclose(f);
  return buf;
}

static void test_text_for_terminal(void **state) {
  (void)state;
  char out[256];
  console_text(out, sizeof(out), bytes("printer on floor 3", 18));
  assert_string_equal(out, "printer on floor 3");
  console_text(out, sizeof(out), bytes("caf\xc3\xa9", 5));
  assert_string_equal(out, "caf\xc3\xa9");
  /* A terminal escape (clear screen, retitle the window) arrives as text, not as action. */
  console_text(out, sizeof(out), LIT("\x1b[2J\x1b]0;pwned\x07"));
  assert_null(strchr(out, 0x1b));
  assert_null(strchr(out, 0x07));
  assert_string_equal(out, "\\x1b[2J\\x1b]0;pwned\\x07");
  /* A right-to-left override (U+202E) would reorder what the technician reads. */
  console_text(out, sizeof(out), bytes("abc\xe2\x80\xae" "fed", 9));
  assert_null(strstr(out, "\xe2\x80\xae"));
  /* Newlines, C1 controls, invalid and truncated UTF-8. */
  console_text(out, sizeof(out), bytes("a\nb\xc2\x9b" "c\xff\xe2\x82", 9));
  assert_null(strchr(out, '\n'));
  assert_null(strstr(out, "\xc2\x9b"));
  assert_null(strchr(out, (char)0xff));
  /* Embedded NUL. */
  console_text(out, sizeof(out), bytes("a\0b", 3));
  assert_string_equal(out, "a\\x00b");
  /* Always terminated, never past cap, cut between units (never inside an escape), and
   * marked as cut. */
  char small[8];
  console_text(small, sizeof(small), bytes("\x1b\x1b\x1b\x1b", 4));
  assert_string_equal(small, "\\x1b...");
}

static void test_json_bytes(void **state) {
  (void)state;
  char *j = json_of(bytes("say \"hi\"\\", 9));
  assert_string_equal(j, "\"say \\\"hi\\\"\\\\\"");
  free(j);
  j = json_of(bytes("\x1b[31m\n", 6));
  assert_null(strchr(j, 0x1b));
  assert_null(strchr(j, '\n'));
  assert_non_null(strstr(j, "\\u001b"));
  free(j);
  j = json_of(bytes("x\xff", 2)); /* invalid UTF-8 -> U+FFFD */
  assert_string_equal(j, "\"x\\ufffd\"");
  free(j);
  j = json_of(bytes("\xe2\x80\xae", 3)); /* format character: escaped */
  assert_string_equal(j, "\"\\u202e\"");
  free(j);
}

static void test_parse_id(void **state) {
  (void)state;
  uint64_t id;
  assert_int_equal(console_parse_id("T-3", 'T', false, &id), 0);
  assert_int_equal(id, 3);
  assert_int_equal(console_parse_id("t-3", 'T', false, &id), 0);
  assert_int_equal(console_parse_id("3", 'T', false, &id), 0);
  assert_int_equal(console_parse_id("3", 'T', true, &id), TT_EINVAL);
  assert_int_equal(console_parse_id("9007199254740992", 'S', false, &id), 0); /* 2^53 */
  assert_int_equal(console_parse_id("9007199254740993", 'S', false, &id), TT_EINVAL);
  assert_int_equal(console_parse_id("99999999999999999999999", 'S', false, &id), TT_EINVAL);
  static const char *const bad[] = {"", "T-", "T-0", "0", "T-03", "S-3", "T3", "T-3x", "-3", " 3", "+3", "T--3"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    if (console_parse_id(bad[i], 'T', false, &id) != TT_EINVAL) fail_msg("\"%s\" was taken for a ticket id", bad[i]);
}

static void test_times(void **state) {
  (void)state;
  uint64_t ms;
  assert_int_equal(console_parse_iso("2026-12-03T14:00:00Z", &ms), 0);
  assert_int_equal(ms, 1796306400000ull);
  assert_int_equal(console_parse_iso("2026-12-03", &ms), 0);
  assert_int_equal(ms, 1796256000000ull);
  assert_int_equal(console_parse_iso("2026-02-30T00:00:00Z", &ms), TT_EINVAL);
  assert_int_equal(console_parse_iso("yesterday", &ms), TT_EINVAL);
  char b[32];
  console_iso(b, sizeof(b), 1796306400123ull, true);
  assert_string_equal(b, "2026-12-03T14:00:00.123Z");
  console_duration(b, sizeof(b), 45 * 1000);
  assert_string_equal(b, "45s");
  console_duration(b, sizeof(b), 150 * 60 * 1000);
  assert_string_equal(b, "2h30m");
  console_duration(b, sizeof(b), 3 * 86400 * 1000ull);
  assert_string_equal(b, "3d");
}

/* A cell cut for a table is cut between characters: "é" is two bytes, and a byte count
 * cut one in half (invalid UTF-8 on the terminal). */
static void test_cut_between_characters(void **state) {
  (void)state;
  char s[64];
  strcpy(s, "short");
  console_cut(s, 10);
  assert_string_equal(s, "short");
  strcpy(s, "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"); /* six é: 12 bytes */
  console_cut(s, 6);
  assert_string_equal(s, "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9");
  console_cut(s, 5);
  assert_string_equal(s, "\xc3\xa9\xc3\xa9...");
  strcpy(s, "abcdef");
  console_cut(s, 5);
  assert_string_equal(s, "ab...");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_text_for_terminal),
      cmocka_unit_test(test_cut_between_characters),
      cmocka_unit_test(test_json_bytes),
      cmocka_unit_test(test_parse_id),
      cmocka_unit_test(test_times),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
