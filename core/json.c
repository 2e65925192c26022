/* JSON string escapes: one rule for every hand-written JSON string, the options a writer
 * may add named, so that two writers escaping the same text differ only where they say so. */
#include "tt/json.h"

#include "tt/hex.h"

/* \uXXXX of a 16-bit unit. */
static void u4(char *out, uint32_t v) {
  out[0] = '\\';
  out[1] = 'u';
  tt_hex_byte(out + 2, (uint8_t)(v >> 8));
  tt_hex_byte(out + 4, (uint8_t)v);
}

size_t tt_json_escape_byte(char out[TT_JSON_ESC_MAX], uint8_t c, unsigned flags) {
  char s = 0;
  switch (c) {
    case '"': s = '"'; break;
    case '\\': s = '\\'; break;
    case '\b': s = 'b'; break;
    case '\f': s = 'f'; break;
    case '\n': s = 'n'; break;
    case '\r': s = 'r'; break;
    case '\t': s = 't'; break;
    default: break;
  }
  if (s && (c == '"' || c == '\\' || (flags & TT_JSON_ESC_SHORT))) {
    out[0] = '\\';
    out[1] = s;
    return 2;
  }
  if (c < 0x20 || (c == 0x7f && (flags & TT_JSON_ESC_DEL))) {
    u4(out, c);
    return 6;
  }
  return 0;
}

size_t tt_json_escape_cp(char out[TT_JSON_ESC_MAX], uint32_t cp) {
  if (cp < 0x10000) {
    u4(out, cp);
    return 6;
  }
  cp -= 0x10000;
  u4(out, 0xd800u + (cp >> 10));
  u4(out + 6, 0xdc00u + (cp & 0x3ffu));
  return 12;
}
