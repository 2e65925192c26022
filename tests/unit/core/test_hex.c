/* tt_hex: bytes to lower-case digits (refused, never cut, when the room is short), the
 * separated form for MACs, and the strict parsers (whole text, either case, nothing else). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "tt/hex.h"

static void test_hex_digest(void **state) {
  (void)state;
  /* The sha256 of "abc" (FIPS 180-2), as sha256sum prints it. */
  static const uint8_t md[32] = {0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea, 0x41, 0x41, 0x40,
                                 0xde, 0x5d, 0xae, 0x22, 0x23, 0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17,
                                 0x7a, 0x9c, 0xb4, 0x10, 0xff, 0x61, 0xf2, 0x00, 0x15, 0xad};
  char out[TT_HEX_CAP(32)];
  assert_int_equal(tt_hex(out, sizeof(out), md, sizeof(md)), 64);
  assert_string_equal(out, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  static const uint8_t all[] = {0x00, 0x09, 0x0a, 0x7f, 0x80, 0xff};
  char s[TT_HEX_CAP(6)];
  assert_int_equal(tt_hex(s, sizeof(s), all, sizeof(all)), 12);
  assert_string_equal(s, "00090a7f80ff");
  /* Nothing to write is an empty string. */
  char e[1] = {'x'};
  assert_int_equal(tt_hex(e, sizeof(e), md, 0), 0);
  assert_int_equal(e[0], '\0');
}

static void test_hex_short_room_refused(void **state) {
  (void)state;
  static const uint8_t b[4] = {0xde, 0xad, 0xbe, 0xef};
  /* One byte short of the NUL: nothing but an empty string, and the guard past it intact. */
  char out[16];
  memset(out, 'G', sizeof(out));
  assert_int_equal(tt_hex(out, 8, b, 4), 0);
  assert_int_equal(out[0], '\0');
  for (size_t i = 1; i < sizeof(out); i++) assert_int_equal(out[i], 'G');
  assert_int_equal(tt_hex(out, 9, b, 4), 8);
  assert_string_equal(out, "deadbeef");
  assert_int_equal(out[9], 'G');
  /* No room at all: not a byte written. */
  char none = 'G';
  assert_int_equal(tt_hex(&none, 0, b, 4), 0);
  assert_int_equal(none, 'G');
  /* A length whose 2n + 1 wraps is refused, not written over. */
  assert_int_equal(tt_hex(out, sizeof(out), b, SIZE_MAX / 2 + 1), 0);
  assert_int_equal(out[0], '\0');
}

static void test_hex_sep(void **state) {
  (void)state;
  static const uint8_t mac[6] = {0x52, 0x54, 0x00, 0x12, 0x34, 0xab};
  char out[18];
  assert_int_equal(tt_hex_sep(out, sizeof(out), mac, 6, ':'), 17);
  assert_string_equal(out, "52:54:00:12:34:ab");
  assert_int_equal(tt_hex_sep(out, 17, mac, 6, ':'), 0);
  assert_string_equal(out, "");
  assert_int_equal(tt_hex_sep(out, sizeof(out), mac, 1, ':'), 2);
  assert_string_equal(out, "52");
  assert_int_equal(tt_hex_sep(out, 1, mac, 0, ':'), 0);
  assert_string_equal(out, "");
}

static void test_digit_helpers(void **state) {
  (void)state;
  char two[3] = {0, 0, 'G'};
  tt_hex_byte(two, 0xc3);
  assert_memory_equal(two, "c3G", 3);
  assert_int_equal(tt_hex_digit(0), '0');
  assert_int_equal(tt_hex_digit(15), 'f');
  assert_int_equal(tt_hex_digit(0x1a), 'a'); /* only the low four bits count */
  const char *digits = "0123456789abcdefABCDEF";
  for (int i = 0; digits[i]; i++) assert_int_equal(tt_hex_value(digits[i]), i < 16 ? i : i - 6);
  const char *not_digits = "gG/:@`xX -+ \t";
  for (int i = 0; not_digits[i]; i++) assert_int_equal(tt_hex_value(not_digits[i]), -1);
  assert_int_equal(tt_hex_value(0), -1);
  assert_int_equal(tt_hex_value(0x100 + '0'), -1);
  assert_int_equal(tt_hex_value(-1), -1);
  assert_int_equal(tt_hex_value((char)0xb0), -1); /* a high byte, whatever char's sign */
}

static void test_unhex(void **state) {
  (void)state;
  uint8_t out[8];
  assert_int_equal(tt_unhex(out, sizeof(out), "DEadBEef", 8), 4);
  assert_memory_equal(out, "\xde\xad\xbe\xef", 4);
  /* len bounds the read: what follows is not looked at. */
  assert_int_equal(tt_unhex(out, sizeof(out), "00ffZZ", 4), 2);
  assert_memory_equal(out, "\x00\xff", 2);
  assert_int_equal(tt_unhex(out, sizeof(out), "", 0), 0);
}

static void test_unhex_refuses(void **state) {
  (void)state;
  uint8_t out[4];
  memset(out, 0x55, sizeof(out));
  assert_int_equal(tt_unhex(out, sizeof(out), "abc", 3), TT_EINVAL);       /* odd */
  assert_int_equal(tt_unhex(out, sizeof(out), "ab-1", 4), TT_EINVAL);      /* a sign */
  assert_int_equal(tt_unhex(out, sizeof(out), " abc", 4), TT_EINVAL);      /* a space */
  assert_int_equal(tt_unhex(out, sizeof(out), "0x12", 4), TT_EINVAL);      /* a prefix */
  assert_int_equal(tt_unhex(out, sizeof(out), "ab\0c", 4), TT_EINVAL);     /* a NUL */
  assert_int_equal(tt_unhex(out, sizeof(out), "0011223344", 10), TT_ETOOBIG);
  /* A string shorter than len ends at its NUL: refused, and nothing past it read (ASan). */
  assert_int_equal(tt_unhex(out, sizeof(out), "ab", 8), TT_EINVAL);
  /* The good first half of a bad text is not kept. */
  assert_int_equal(tt_unhex(out, sizeof(out), "0011zz", 6), TT_EINVAL);
  for (size_t i = 0; i < sizeof(out); i++) assert_int_equal(out[i], 0x55);
}

static void test_hex_u32(void **state) {
  (void)state;
  uint32_t v = 7;
  assert_int_equal(tt_hex_u32("00E9", 4, &v), 0);
  assert_int_equal(v, 0xe9);
  assert_int_equal(tt_hex_u32("FFFFFFFF", 8, &v), 0);
  assert_int_equal(v, 0xffffffffu);
  assert_int_equal(tt_hex_u32("1", 1, &v), 0);
  assert_int_equal(v, 1);
  v = 7;
  assert_int_equal(tt_hex_u32("123456789", 9, &v), TT_EINVAL); /* over 32 bits */
  assert_int_equal(tt_hex_u32("", 0, &v), TT_EINVAL);
  assert_int_equal(tt_hex_u32("12g4", 4, &v), TT_EINVAL);
  assert_int_equal(tt_hex_u32("+123", 4, &v), TT_EINVAL);
  assert_int_equal(tt_hex_u32("1", 4, &v), TT_EINVAL); /* stops at the NUL */
  assert_int_equal(v, 7); /* untouched when refused */
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_hex_digest),  cmocka_unit_test(test_hex_short_room_refused),
      cmocka_unit_test(test_hex_sep),     cmocka_unit_test(test_digit_helpers),
      cmocka_unit_test(test_unhex),       cmocka_unit_test(test_unhex_refuses),
      cmocka_unit_test(test_hex_u32),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
