/* Printing what the broker sent: every byte from a peer reaches the terminal or a JSON
 * consumer only through these functions, and times go out in one format (ISO-8601 UTC). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "console.h"
#include "tt/utf8.h"
#include "tt/conf.h"
#include "tt/hex.h"
#include "tt/json.h"
#include "tt/msg.h"

/* Nesting allowed in an audit detail object; deeper is shown as a string. */
#define JSON_DEPTH_MAX 16

static void json_escape_cp(FILE *f, uint32_t cp) {
  char esc[TT_JSON_ESC_MAX];
  fwrite(esc, 1, tt_json_escape_cp(esc, cp), f);
}

/* The inside of a JSON string (no quotes) for n untrusted bytes. */
static void json_chars(FILE *f, const uint8_t *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    uint32_t cp;
    size_t len = tt_utf8_decode(s + i, n - i, &cp);
    if (len == 0) {
      fputs("\\ufffd", f);
      i++;
      continue;
    }
    if (cp == '"' || cp == '\\') fprintf(f, "\\%c", (char)cp);
    else if (tt_cp_unsafe(cp)) json_escape_cp(f, cp);
    else fwrite(s + i, 1, len, f);
    i += len;
  }
}

void console_json_str(FILE *f, const char *s) {
  fputc('"', f);
  json_chars(f, (const uint8_t *)s, strlen(s));
  fputc('"', f);
}

void console_json_bytes(FILE *f, ProtobufCBinaryData t) {
  fputc('"', f);
  if (t.len) json_chars(f, t.data, t.len);
  fputc('"', f);
}

/* A small JSON checker that writes what it accepts, compactly, into a memory stream; the
 * caller copies the result out only when the whole text was one valid object. Strings are
 * decoded (escapes included) and re-escaped by json_chars' rules, so nothing unsafe for a
 * terminal survives and the output stays on one line. */
typedef struct {
  const uint8_t *p, *end;
  FILE *out;
  int depth;
} jparse_t;

static void jp_ws(jparse_t *j) {
  while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r')) j->p++;
}

static int jp_hex4(jparse_t *j, uint32_t *v) {
  if (j->end - j->p < 4 || tt_hex_u32((const char *)j->p, 4, v) != 0) return -1;
  j->p += 4;
  return 0;
}

static void jp_put_cp(jparse_t *j, uint32_t cp) {
  uint8_t b[4];
  size_t n;
  if (cp < 0x80) { b[0] = (uint8_t)cp; n = 1; }
  else if (cp < 0x800) { b[0] = (uint8_t)(0xc0 | (cp >> 6)); b[1] = (uint8_t)(0x80 | (cp & 0x3f)); n = 2; }
  else if (cp < 0x10000) {
    b[0] = (uint8_t)(0xe0 | (cp >> 12)); b[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
    b[2] = (uint8_t)(0x80 | (cp & 0x3f)); n = 3;
  } else {
    b[0] = (uint8_t)(0xf0 | (cp >> 18)); b[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3f));
    b[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f)); b[3] = (uint8_t)(0x80 | (cp & 0x3f)); n = 4;
  }
  json_chars(j->out, b, n);
}

static int jp_string(jparse_t *j) {
  if (j->p >= j->end || *j->p != '"') return -1;
  j->p++;
  fputc('"', j->out);
  for (;;) {
    if (j->p >= j->end) return -1;
    uint8_t c = *j->p;
    if (c == '"') {
      j->p++;
      fputc('"', j->out);
      return 0;
    }
    if (c < 0x20) return -1;
    if (c != '\\') {
      uint32_t cp;
      size_t len = tt_utf8_decode(j->p, (size_t)(j->end - j->p), &cp);
      if (len == 0) return -1;
      json_chars(j->out, j->p, len);
      j->p += len;
      continue;
    }
    j->p++;
    if (j->p >= j->end) return -1;
    uint8_t e = *j->p++;
    uint32_t cp;
    switch (e) {
    case '"': cp = '"'; break;
    case '\\': cp = '\\'; break;
    case '/': cp = '/'; break;
    case 'b': cp = '\b'; break;
    case 'f': cp = '\f'; break;
    case 'n': cp = '\n'; break;
    case 'r': cp = '\r'; break;
    case 't': cp = '\t'; break;
    case 'u':
      if (jp_hex4(j, &cp)) return -1;
      if (cp >= 0xdc00 && cp <= 0xdfff) return -1;
      if (cp >= 0xd800 && cp <= 0xdbff) {
        uint32_t lo;
        if (j->end - j->p < 2 || j->p[0] != '\\' || j->p[1] != 'u') return -1;
        j->p += 2;
        if (jp_hex4(j, &lo) || lo < 0xdc00 || lo > 0xdfff) return -1;
        cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
      }
      break;
    default: return -1;
    }
    jp_put_cp(j, cp);
  }
}

static int jp_number(jparse_t *j) {
  const uint8_t *s = j->p;
  if (j->p < j->end && *j->p == '-') j->p++;
  if (j->p >= j->end) return -1;
  if (*j->p == '0') j->p++;
  else if (*j->p >= '1' && *j->p <= '9')
    while (j->p < j->end && *j->p >= '0' && *j->p <= '9') j->p++;
  else return -1;
  if (j->p < j->end && *j->p == '.') {
    j->p++;
    if (j->p >= j->end || *j->p < '0' || *j->p > '9') return -1;
    while (j->p < j->end && *j->p >= '0' && *j->p <= '9') j->p++;
  }
  if (j->p < j->end && (*j->p == 'e' || *j->p == 'E')) {
    j->p++;
    if (j->p < j->end && (*j->p == '+' || *j->p == '-')) j->p++;
    if (j->p >= j->end || *j->p < '0' || *j->p > '9') return -1;
    while (j->p < j->end && *j->p >= '0' && *j->p <= '9') j->p++;
  }
  fwrite(s, 1, (size_t)(j->p - s), j->out);
  return 0;
}

static int jp_word(jparse_t *j, const char *w) {
  size_t n = strlen(w);
  if ((size_t)(j->end - j->p) < n || memcmp(j->p, w, n) != 0) return -1;
  j->p += n;
  fputs(w, j->out);
  return 0;
}

static int jp_value(jparse_t *j);

/* open '{' or '['; members are "key": value for objects. */
static int jp_container(jparse_t *j, bool object) {
  if (++j->depth > JSON_DEPTH_MAX) return -1;
  char close = object ? '}' : ']';
  j->p++;
  fputc(object ? '{' : '[', j->out);
  jp_ws(j);
  if (j->p < j->end && *j->p == close) {
    j->p++;
    fputc(close, j->out);
    j->depth--;
    return 0;
  }
  for (;;) {
    jp_ws(j);
    if (object) {
      if (jp_string(j)) return -1;
      jp_ws(j);
      if (j->p >= j->end || *j->p != ':') return -1;
      j->p++;
      fputc(':', j->out);
    }
    if (jp_value(j)) return -1;
    jp_ws(j);
    if (j->p >= j->end) return -1;
    if (*j->p == ',') {
      j->p++;
      fputc(',', j->out);
      continue;
    }
    if (*j->p != close) return -1;
    j->p++;
    fputc(close, j->out);
    j->depth--;
    return 0;
  }
}

static int jp_value(jparse_t *j) {
  jp_ws(j);
  if (j->p >= j->end) return -1;
  switch (*j->p) {
  case '{': return jp_container(j, true);
  case '[': return jp_container(j, false);
  case '"': return jp_string(j);
  case 't': return jp_word(j, "true");
  case 'f': return jp_word(j, "false");
  case 'n': return jp_word(j, "null");
  default: return jp_number(j);
  }
}

bool console_json_object(FILE *f, ProtobufCBinaryData t) {
  if (!t.len) return false;
  char *text = NULL;
  size_t len = 0;
  FILE *m = open_memstream(&text, &len);
  if (!m) return false;
  jparse_t j = {.p = t.data, .end = t.data + t.len, .out = m};
  jp_ws(&j);
  bool ok = j.p < j.end && *j.p == '{' && jp_value(&j) == 0;
  jp_ws(&j);
  ok = ok && j.p == j.end;
  if (fclose(m) != 0) ok = false;
  if (ok) fwrite(text, 1, len, f);
  free(text);
  return ok;
}

void console_text(char *dst, size_t cap, ProtobufCBinaryData t) {
  if (cap == 0) return;
  size_t o = 0, i = 0;
  size_t cut = 0; /* the last unit boundary with room for "..." and the NUL after it */
  dst[0] = '\0';
  while (i < t.len) {
    uint32_t cp;
    size_t len = tt_utf8_decode(t.data + i, t.len - i, &cp);
    bool raw = len > 0 && !tt_cp_unsafe(cp);
    size_t unit = len ? len : 1;
    size_t need = raw ? len : unit * 4;
    if (o + need + 1 > cap) {
      if (cut + 4 <= cap) memcpy(dst + cut, "...", 4);
      return;
    }
    if (raw) {
      memcpy(dst + o, t.data + i, len);
      o += len;
    } else {
      for (size_t k = 0; k < unit; k++) {
        dst[o] = '\\';
        dst[o + 1] = 'x';
        tt_hex_byte(dst + o + 2, t.data[i + k]);
        o += 4;
      }
    }
    i += unit;
    dst[o] = '\0';
    if (o + 4 <= cap) cut = o;
  }
}

void console_json_hex(FILE *f, ProtobufCBinaryData t) {
  char hex[TT_HEX_CAP(64)];
  fputc('"', f);
  for (size_t i = 0; i < t.len; i += 64) { /* a digest in one piece, anything longer in pieces */
    size_t n = t.len - i < 64 ? t.len - i : 64;
    fwrite(hex, 1, tt_hex(hex, sizeof(hex), t.data + i, n), f);
  }
  fputc('"', f);
}

void console_iso(char *dst, size_t cap, uint64_t unix_ms, bool with_ms) {
  time_t t = (time_t)(unix_ms / 1000u);
  struct tm tm;
  if (cap == 0) return;
  if (!gmtime_r(&t, &tm) || strftime(dst, cap, "%Y-%m-%dT%H:%M:%S", &tm) == 0) {
    snprintf(dst, cap, "?");
    return;
  }
  size_t n = strlen(dst);
  if (with_ms) snprintf(dst + n, cap - n, ".%03uZ", (unsigned)(unix_ms % 1000u));
  else snprintf(dst + n, cap - n, "Z");
}

void console_json_time(FILE *f, uint64_t unix_ms) {
  char when[40];
  if (!unix_ms) {
    fputs("null", f);
    return;
  }
  console_iso(when, sizeof(when), unix_ms, false);
  fprintf(f, "\"%s\"", when);
}

void console_ago(char *dst, size_t cap, uint64_t unix_ms, uint64_t now_ms) {
  uint64_t s = now_ms > unix_ms ? (now_ms - unix_ms) / 1000u : 0;
  if (s < 60) snprintf(dst, cap, "%us ago", (unsigned)s);
  else if (s < 3600) snprintf(dst, cap, "%um ago", (unsigned)(s / 60));
  else if (s < 86400) snprintf(dst, cap, "%uh ago", (unsigned)(s / 3600));
  else snprintf(dst, cap, "%llud ago", (unsigned long long)(s / 86400));
}

uint64_t console_now_ms(void) {
  struct timespec ts;
  if (clock_gettime(CLOCK_REALTIME, &ts) != 0) return 0;
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Exactly n digits at *s, advancing; -1 if not. */
static int digits(const char **s, int n) {
  int v = 0;
  for (int k = 0; k < n; k++) {
    char ch = (*s)[k];
    if (ch < '0' || ch > '9') return -1;
    v = v * 10 + (ch - '0');
  }
  *s += n;
  return v;
}

int console_parse_iso(const char *s, uint64_t *unix_ms) {
  struct tm tm;
  memset(&tm, 0, sizeof(tm));
  int y = digits(&s, 4), mo, d, h = 0, mi = 0, sec = 0, ms = 0;
  if (y < 1970 || *s++ != '-' || (mo = digits(&s, 2)) < 1 || mo > 12 || *s++ != '-' ||
      (d = digits(&s, 2)) < 1 || d > 31)
    return TT_EINVAL;
  if (*s == 'T') {
    s++;
    if ((h = digits(&s, 2)) < 0 || h > 23 || *s++ != ':' || (mi = digits(&s, 2)) < 0 || mi > 59)
      return TT_EINVAL;
    if (*s == ':') {
      s++;
      if ((sec = digits(&s, 2)) < 0 || sec > 59) return TT_EINVAL;
      if (*s == '.') {
        s++;
        int scale = 100, nd = 0;
        while (*s >= '0' && *s <= '9') {
          if (nd++ < 3) ms += (*s - '0') * scale;
          scale /= 10;
          s++;
        }
        if (nd == 0) return TT_EINVAL;
      }
    }
    if (*s++ != 'Z') return TT_EINVAL;
  }
  if (*s != '\0') return TT_EINVAL;
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = sec;
  time_t t = timegm(&tm);
  /* timegm normalises 2026-02-30 into March: refuse dates that do not exist. */
  if (t == (time_t)-1 || tm.tm_mday != d || tm.tm_mon != mo - 1) return TT_EINVAL;
  *unix_ms = (uint64_t)t * 1000u + (uint64_t)ms;
  return 0;
}

/* Ids are SQLite rowids shown to people; 2^53 keeps them exact in JSON readers too. */
#define CONSOLE_ID_MAX (1ull << 53)

int console_parse_id(const char *s, char letter, bool need_prefix, uint64_t *id) {
  *id = 0;
  if ((s[0] == letter || s[0] == letter + ('a' - 'A')) && s[1] == '-') s += 2;
  else if (need_prefix) return TT_EINVAL;
  if (*s < '1' || *s > '9') return TT_EINVAL;
  uint64_t v = 0;
  for (; *s; s++) {
    if (*s < '0' || *s > '9') return TT_EINVAL;
    v = v * 10 + (uint64_t)(*s - '0');
    if (v > CONSOLE_ID_MAX) return TT_EINVAL;
  }
  *id = v;
  return 0;
}

int console_parse_kb(const char *s, uint64_t *id) {
  *id = 0;
  if ((s[0] == 'K' || s[0] == 'k') && (s[1] == 'B' || s[1] == 'b') && s[2] == '-') s += 3;
  /* The digits alone, as console_parse_id reads them ('T' never starts a digit). */
  return s[0] == 'T' || s[0] == 't' ? TT_EINVAL : console_parse_id(s, 'T', false, id);
}

void console_duration(char *dst, size_t cap, uint64_t ms) {
  uint64_t s = ms / 1000u;
  if (s < 60) snprintf(dst, cap, "%llus", (unsigned long long)s);
  else if (s < 3600) snprintf(dst, cap, "%llum", (unsigned long long)(s / 60));
  else if (s < 86400 && (s / 60) % 60)
    snprintf(dst, cap, "%lluh%02llum", (unsigned long long)(s / 3600), (unsigned long long)((s / 60) % 60));
  else if (s < 86400) snprintf(dst, cap, "%lluh", (unsigned long long)(s / 3600));
  else snprintf(dst, cap, "%llud", (unsigned long long)(s / 86400));
}

int console_parse_since(const char *s, uint64_t *since_ms) {
  size_t n = strlen(s);
  *since_ms = 0;
  if (n == 0) return 0;
  if (strchr(s, '-')) return console_parse_iso(s, since_ms);
  int64_t back;
  if (s[n - 1] < 'a' || s[n - 1] > 'z' || tt_conf_parse_duration(s, &back)) return TT_EINVAL;
  uint64_t now = console_now_ms();
  *since_ms = (uint64_t)back < now ? now - (uint64_t)back : 1;
  return 0;
}

void console_cut(char *s, size_t max) {
  size_t chars = 0, i = 0, keep = 0;
  for (; s[i]; i++) {
    if (((unsigned char)s[i] & 0xC0) == 0x80) continue; /* inside a character */
    if (chars == (max >= 3 ? max - 3 : 0)) keep = i;
    chars++;
  }
  if (chars <= max) return;
  if (max < 3) {
    s[0] = 0;
    return;
  }
  memcpy(s + keep, "...", 4);
}
