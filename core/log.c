/* key=value logging to stderr, one line per event, with untrusted text quoted. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include "tt/hex.h"
#include "tt/log.h"

static tt_log_level_t g_level = TT_LOG_INFO;
static const char *const g_names[] = {"debug", "info", "warn", "error", "off"};

void tt_log_set_level(tt_log_level_t lvl) { g_level = lvl; }
tt_log_level_t tt_log_get_level(void) { return g_level; }

int tt_log_parse_level(const char *s, tt_log_level_t *out) {
  for (int i = 0; i <= TT_LOG_OFF; i++) {
    if (strcmp(s, g_names[i]) == 0) {
      *out = (tt_log_level_t)i;
      return 0;
    }
  }
  return TT_EINVAL;
}

char *tt_log_quote(char *dst, size_t cap, const void *src, size_t len) {
  const unsigned char *s = src;
  size_t o = 0;
  if (cap == 0) return dst;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = s[i];
    if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
      if (o + 1 >= cap) break;
      dst[o++] = (char)c;
    } else {
      if (o + 4 >= cap) break;
      dst[o++] = '\\';
      dst[o++] = 'x';
      tt_hex_byte(dst + o, c);
      o += 2;
    }
  }
  dst[o] = '\0';
  return dst;
}

void tt_log(tt_log_level_t lvl, const char *mod, const char *msg, const char *kvfmt, ...) {
  if (lvl < g_level || lvl >= TT_LOG_OFF) return;
  char line[2048];
  struct timeval tv;
  struct tm tm;
  gettimeofday(&tv, NULL);
  gmtime_r(&tv.tv_sec, &tm);
  int n = snprintf(line, sizeof(line),
                   "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03dZ level=%s mod=%s msg=\"%s\"",
                   tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                   tm.tm_sec, (int)(tv.tv_usec / 1000), g_names[lvl], mod, msg);
  if (n < 0) return;
  size_t o = (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1;
  if (kvfmt && *kvfmt && o + 2 < sizeof(line)) {
    line[o++] = ' ';
    va_list ap;
    va_start(ap, kvfmt);
    int m = vsnprintf(line + o, sizeof(line) - o, kvfmt, ap);
    va_end(ap);
    if (m > 0) o += (size_t)m < sizeof(line) - o ? (size_t)m : sizeof(line) - o - 1;
  }
  line[o++] = '\n';
  fwrite(line, 1, o, stderr);
}
