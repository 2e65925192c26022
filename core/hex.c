/* Hex text: every byte -> digit and digit -> value conversion in the tree goes through the
 * one table and the one parser here, so upper case or a stray sign is refused the same way. */
#include "tt/hex.h"

#include <limits.h>

const char tt_hex_digits[16] = {'0', '1', '2', '3', '4', '5', '6', '7',
                                '8', '9', 'a', 'b', 'c', 'd', 'e', 'f'};

int tt_hex_value(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

size_t tt_hex(char *out, size_t cap, const uint8_t *p, size_t n) {
  /* n > (SIZE_MAX - 1) / 2 cannot fit any cap: refused like a short one, without overflow. */
  if (n > (SIZE_MAX - 1) / 2 || cap < TT_HEX_CAP(n)) {
    if (cap > 0) out[0] = '\0';
    return 0;
  }
  for (size_t i = 0; i < n; i++) tt_hex_byte(out + 2 * i, p[i]);
  out[2 * n] = '\0';
  return 2 * n;
}

size_t tt_hex_sep(char *out, size_t cap, const uint8_t *p, size_t n, char sep) {
  size_t need = n == 0 ? 1 : 3 * n; /* 3n - 1 characters and the NUL */
  if (n > SIZE_MAX / 3 || cap < need) {
    if (cap > 0) out[0] = '\0';
    return 0;
  }
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    if (i > 0) out[o++] = sep;
    tt_hex_byte(out + o, p[i]);
    o += 2;
  }
  out[o] = '\0';
  return o;
}

int tt_unhex(uint8_t *out, size_t cap, const char *s, size_t len) {
  if (len % 2 != 0) return TT_EINVAL;
  if (len / 2 > cap || len / 2 > (size_t)INT_MAX) return TT_ETOOBIG;
  for (size_t i = 0; i < len; i++)
    if (tt_hex_value((unsigned char)s[i]) < 0) return TT_EINVAL;
  for (size_t i = 0; i < len / 2; i++)
    out[i] = (uint8_t)(tt_hex_value((unsigned char)s[2 * i]) << 4 | tt_hex_value((unsigned char)s[2 * i + 1]));
  return (int)(len / 2);
}

int tt_hex_u32(const char *s, size_t n, uint32_t *out) {
  if (n == 0 || n > 8) return TT_EINVAL;
  uint32_t v = 0;
  for (size_t i = 0; i < n; i++) {
    int d = tt_hex_value((unsigned char)s[i]);
    if (d < 0) return TT_EINVAL;
    v = v << 4 | (uint32_t)d;
  }
  *out = v;
  return 0;
}
