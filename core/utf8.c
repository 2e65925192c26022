/* UTF-8 for text from peers and from the machine (tt/utf8.h). */
#include "tt/utf8.h"
#include <string.h>

static bool is_format_char(uint32_t cp) {
  return cp == 0xad || (cp >= 0x600 && cp <= 0x605) || cp == 0x61c || cp == 0x6dd || cp == 0x70f ||
         cp == 0x180e || (cp >= 0x200b && cp <= 0x200f) || (cp >= 0x202a && cp <= 0x202e) ||
         (cp >= 0x2028 && cp <= 0x2029) || (cp >= 0x2060 && cp <= 0x2064) ||
         (cp >= 0x2066 && cp <= 0x206f) || cp == 0xfeff || (cp >= 0xfff9 && cp <= 0xfffb) ||
         cp == 0xe0001 || (cp >= 0xe0020 && cp <= 0xe007f);
}

bool tt_cp_unsafe(uint32_t cp) { return cp < 0x20 || (cp >= 0x7f && cp <= 0x9f) || is_format_char(cp); }

size_t tt_utf8_decode(const uint8_t *s, size_t n, uint32_t *cp) {
  uint8_t c = s[0];
  size_t len;
  uint32_t v;
  if (c < 0x80) {
    *cp = c;
    return 1;
  }
  if ((c & 0xe0) == 0xc0) { v = c & 0x1fu; len = 2; }
  else if ((c & 0xf0) == 0xe0) { v = c & 0x0fu; len = 3; }
  else if ((c & 0xf8) == 0xf0) { v = c & 0x07u; len = 4; }
  else return 0;
  if (n < len) return 0;
  for (size_t k = 1; k < len; k++) {
    if ((s[k] & 0xc0) != 0x80) return 0;
    v = (v << 6) | (s[k] & 0x3fu);
  }
  if ((len == 2 && v < 0x80) || (len == 3 && v < 0x800) || (len == 4 && v < 0x10000)) return 0;
  if (v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff)) return 0;
  *cp = v;
  return len;
}

size_t tt_utf8_sanitize(char *dst, size_t cap, const void *src, size_t n) {
  const uint8_t *s = src;
  size_t o = 0, i = 0;
  if (cap == 0) return 0;
  while (i < n) {
    uint32_t cp;
    size_t len = s[i] ? tt_utf8_decode(s + i, n - i, &cp) : 0;
    const void *from = s + i;
    size_t put = len;
    if (len == 0) {
      from = "\xef\xbf\xbd"; /* U+FFFD */
      put = 3;
      len = 1;
    }
    if (o + put >= cap) break;
    memcpy(dst + o, from, put);
    o += put;
    i += len;
  }
  dst[o] = 0;
  return o;
}
