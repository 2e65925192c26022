/* Text scanning the Linux collectors share: lines of a file read whole, trimmed fields,
 * decimal numbers, one-line sysfs values. Static inline because each collector file is built
 * alone into its unit test. Nothing here trusts the text: every walk is bounded by its end. */
#ifndef AGENT_INV_LINUX_SCAN_H
#define AGENT_INV_LINUX_SCAN_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include "../collect.h"

/* A one-line sysfs/procfs value (a DMI string, a sector count): longer is cut. */
#define INV_VALUE_MAX 256

/* The next line of [*cur, end), NUL-terminated in place (the '\n' becomes the NUL); NULL at
 * the end. A NUL byte inside a line simply ends it early for the string functions. */
static inline char *inv_next_line(char **cur, char *end) {
  if (*cur >= end) return NULL;
  char *s = *cur;
  char *nl = memchr(s, '\n', (size_t)(end - s));
  if (nl) {
    *nl = 0;
    *cur = nl + 1;
  } else {
    *cur = end; /* the last line without '\n': inv_read put a NUL after the bytes */
  }
  return s;
}

static inline bool inv_is_space(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

/* s without leading and trailing white space (cut in place). */
static inline char *inv_trim(char *s) {
  while (inv_is_space(*s)) s++;
  size_t n = strlen(s);
  while (n > 0 && inv_is_space(s[n - 1])) s[--n] = 0;
  return s;
}

/* A whole decimal number (digits only, no sign): false if s is anything else or overflows. */
static inline bool inv_parse_u64(const char *s, uint64_t *out) {
  uint64_t v = 0;
  if (!*s) return false;
  for (; *s; s++) {
    if (*s < '0' || *s > '9') return false;
    unsigned d = (unsigned)(*s - '0');
    if (v > (UINT64_MAX - d) / 10) return false;
    v = v * 10 + d;
  }
  *out = v;
  return true;
}

/* The leading digits of s as a number (a version part such as "04" or "3rc1"); 0 if none. */
static inline uint64_t inv_leading_u64(const char *s) {
  uint64_t v = 0;
  for (; *s >= '0' && *s <= '9'; s++) {
    unsigned d = (unsigned)(*s - '0');
    if (v > (UINT64_MAX - d) / 10) return v;
    v = v * 10 + d;
  }
  return v;
}

/* v in decimal into out, cut to cap - 1 digits (written by hand: gcc's format-truncation
 * check cannot see that the callers' small buffers hold the small values they pass). */
static inline void inv_u64_str(char *out, size_t cap, uint64_t v) {
  char tmp[21];
  size_t n = 0;
  if (cap == 0) return;
  do tmp[n++] = (char)('0' + v % 10); while ((v /= 10) != 0);
  size_t i = 0;
  for (; i < n && i + 1 < cap; i++) out[i] = tmp[n - 1 - i];
  out[i] = 0;
}

/* The first line of the file at root + path, trimmed, into out (cut at cap). Negative if it
 * cannot be read: a DMI serial readable only by root, a device with no vendor file. */
static inline int inv_read_value(const inv_env_t *env, const char *path, char *out, size_t cap) {
  tt_buf_t b;
  out[0] = 0;
  int rc = inv_read(env, path, &b);
  if (rc) return rc;
  char *s = (char *)b.data + b.off, *end = s + b.len;
  char *line = inv_next_line(&s, end);
  if (line) snprintf(out, cap, "%s", inv_trim(line));
  tt_buf_free(&b);
  return 0;
}

#endif
