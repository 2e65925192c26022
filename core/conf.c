/* Config files and flags from one table per program. Everything a user types goes through
 * one value parser per type, so a flag and a file line are checked the same way, and every
 * error says where the text came from ("path:line: ..." or "--flag: ..."). */
#include "tt/conf.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <string.h>

#include "tt/hex.h"

/* A line longer than this is refused rather than silently split or truncated. */
#define CONF_LINE_MAX 4096
/* How much of an offending value an error message quotes back. */
#define CONF_QUOTE_MAX 64

#define MS_SEC INT64_C(1000)
#define MS_MIN (60 * MS_SEC)
#define MS_HOUR (60 * MS_MIN)
#define MS_DAY (24 * MS_HOUR)

static void seterr(char *err, size_t errlen, const char *fmt, ...) TT_PRINTF(3, 4);

static void seterr(char *err, size_t errlen, const char *fmt, ...) {
  if (err == NULL || errlen == 0) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
}

/* Values come from users and files; quote them back printable so an error line cannot
 * carry control characters into a terminal or a log. */
static const char *quote(char *dst, size_t cap, const char *s) {
  size_t o = 0;
  for (; *s != '\0'; s++) {
    unsigned char c = (unsigned char)*s;
    if (o + 8 >= cap) { /* room for "...", NUL */
      memcpy(dst + o, "...", 3);
      o += 3;
      break;
    }
    if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
      dst[o++] = (char)c;
    } else {
      dst[o++] = '\\';
      dst[o++] = 'x';
      tt_hex_byte(dst + o, c);
      o += 2;
    }
  }
  dst[o] = '\0';
  return dst;
}

/* Decimal digits only: no sign, no spaces, no base prefixes; overflow is an error. */
static int parse_u64(const char **sp, uint64_t *out) {
  const char *s = *sp;
  uint64_t v = 0;
  if (*s < '0' || *s > '9') return TT_EINVAL;
  for (; *s >= '0' && *s <= '9'; s++) {
    unsigned d = (unsigned)(*s - '0');
    if (v > (UINT64_MAX - d) / 10) return TT_EINVAL;
    v = v * 10 + d;
  }
  *sp = s;
  *out = v;
  return 0;
}

static int parse_int(const char *s, int64_t *out) {
  bool neg = false;
  uint64_t v;
  if (*s == '-') {
    neg = true;
    s++;
  }
  if (parse_u64(&s, &v) != 0 || *s != '\0') return TT_EINVAL;
  if (neg) {
    if (v > (uint64_t)INT64_MAX + 1) return TT_EINVAL;
    *out = v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v;
  } else {
    if (v > (uint64_t)INT64_MAX) return TT_EINVAL;
    *out = (int64_t)v;
  }
  return 0;
}

static int scale(uint64_t v, uint64_t mul, int64_t *out) {
  if (v > (uint64_t)INT64_MAX / mul) return TT_EINVAL;
  *out = (int64_t)(v * mul);
  return 0;
}

int tt_conf_parse_duration(const char *s, int64_t *ms) {
  uint64_t v;
  int64_t mul;
  if (s == NULL || parse_u64(&s, &v) != 0) return TT_EINVAL;
  if (strcmp(s, "") == 0 || strcmp(s, "ms") == 0) mul = 1;
  else if (strcmp(s, "s") == 0) mul = MS_SEC;
  else if (strcmp(s, "m") == 0) mul = MS_MIN;
  else if (strcmp(s, "h") == 0) mul = MS_HOUR;
  else if (strcmp(s, "d") == 0) mul = MS_DAY;
  else return TT_EINVAL;
  return scale(v, (uint64_t)mul, ms);
}

static char lower(char c) { return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c; }

int tt_conf_parse_size(const char *s, int64_t *bytes) {
  uint64_t v, mul = 1;
  if (s == NULL || parse_u64(&s, &v) != 0) return TT_EINVAL;
  switch (lower(*s)) {
  case 'k': mul = UINT64_C(1) << 10; s++; break;
  case 'm': mul = UINT64_C(1) << 20; s++; break;
  case 'g': mul = UINT64_C(1) << 30; s++; break;
  case 't': mul = UINT64_C(1) << 40; s++; break;
  default: break;
  }
  if (mul > 1 && lower(*s) == 'i') {
    s++;
    if (lower(*s) != 'b') return TT_EINVAL; /* "Ki" alone is not a unit */
  }
  if (lower(*s) == 'b') s++;
  if (*s != '\0') return TT_EINVAL;
  return scale(v, mul, bytes);
}

/* Bounds in the option's own units, so "out of range [1s, 1h]" reads like the input. */
static void fmt_unit(char *dst, size_t cap, tt_conf_type_t type, int64_t v) {
  if (type == TT_CONF_DURATION && v > 0) {
    if (v % MS_DAY == 0) snprintf(dst, cap, "%" PRId64 "d", v / MS_DAY);
    else if (v % MS_HOUR == 0) snprintf(dst, cap, "%" PRId64 "h", v / MS_HOUR);
    else if (v % MS_MIN == 0) snprintf(dst, cap, "%" PRId64 "m", v / MS_MIN);
    else if (v % MS_SEC == 0) snprintf(dst, cap, "%" PRId64 "s", v / MS_SEC);
    else snprintf(dst, cap, "%" PRId64 "ms", v);
  } else if (type == TT_CONF_SIZE && v > 0) {
    static const char units[] = "TGMk";
    for (int i = 0; i < 4; i++) {
      int64_t m = INT64_C(1) << (10 * (4 - i));
      if (v % m == 0) {
        snprintf(dst, cap, "%" PRId64 "%c", v / m, units[i]);
        return;
      }
    }
    snprintf(dst, cap, "%" PRId64, v);
  } else {
    snprintf(dst, cap, "%" PRId64, v);
  }
}

static bool bounded(const tt_conf_opt_t *o) { return o->min != 0 || o->max != 0; }

static const char *type_expect(tt_conf_type_t t) {
  switch (t) {
  case TT_CONF_INT: return "an integer";
  case TT_CONF_BOOL: return "a boolean (true/false, yes/no, on/off, 1/0)";
  case TT_CONF_STR: return "a string";
  case TT_CONF_DURATION: return "a duration (250ms, 30s, 5m, 2h, 1d; bare number = ms)";
  case TT_CONF_SIZE: return "a size (512, 64k, 16M, 1G; powers of 1024)";
  case TT_CONF_ENUM: return "one of";
  }
  return "a value";
}

static int parse_bool(const char *s, bool *out) {
  static const char *const yes[] = {"true", "yes", "on", "1"};
  static const char *const no[] = {"false", "no", "off", "0"};
  for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
    if (strcmp(s, yes[i]) == 0) { *out = true; return 0; }
    if (strcmp(s, no[i]) == 0) { *out = false; return 0; }
  }
  return TT_EINVAL;
}

static int parse_enum(const char *choices, const char *s, int *out) {
  const char *p = choices != NULL ? choices : "";
  size_t len = strlen(s);
  for (int i = 0;; i++) {
    const char *bar = strchr(p, '|');
    size_t n = bar != NULL ? (size_t)(bar - p) : strlen(p);
    if (n == len && len > 0 && memcmp(p, s, len) == 0) {
      *out = i;
      return 0;
    }
    if (bar == NULL) return TT_EINVAL;
    p = bar + 1;
  }
}

/* Parse `text` per the option's type, check bounds, store. `where` is the error prefix
 * ("path:3: net.port", "--port"). */
static int set_value(const tt_conf_opt_t *o, void *cfg, const char *text, const char *where,
                     char *err, size_t errlen) {
  char *field = (char *)cfg + o->offset;
  char q[CONF_QUOTE_MAX + 8], lo[32], hi[32];
  int64_t v = 0;
  int rc;

  switch (o->type) {
  case TT_CONF_BOOL: {
    bool b;
    if (parse_bool(text, &b) != 0) goto bad;
    memcpy(field, &b, sizeof b);
    return 0;
  }
  case TT_CONF_ENUM: {
    int idx;
    if (parse_enum(o->choices, text, &idx) != 0) {
      seterr(err, errlen, "%s: expected one of %s, got \"%s\"", where,
             o->choices != NULL ? o->choices : "(none)", quote(q, sizeof q, text));
      return TT_ECONFIG;
    }
    memcpy(field, &idx, sizeof idx);
    return 0;
  }
  case TT_CONF_STR: {
    size_t len = strlen(text);
    if (o->size == 0) {
      seterr(err, errlen, "%s: option has no storage (size 0)", where);
      return TT_ECONFIG;
    }
    size_t max = o->size - 1;
    if (o->max > 0 && (uint64_t)o->max < max) max = (size_t)o->max;
    if (len > max) {
      seterr(err, errlen, "%s: too long (%zu bytes, max %zu)", where, len, max);
      return TT_ECONFIG;
    }
    if (o->min > 0 && (uint64_t)len < (uint64_t)o->min) {
      seterr(err, errlen, "%s: too short (%zu bytes, min %" PRId64 ")", where, len, o->min);
      return TT_ECONFIG;
    }
    memcpy(field, text, len + 1);
    return 0;
  }
  case TT_CONF_INT: rc = parse_int(text, &v); break;
  case TT_CONF_DURATION: rc = tt_conf_parse_duration(text, &v); break;
  case TT_CONF_SIZE: rc = tt_conf_parse_size(text, &v); break;
  default:
    seterr(err, errlen, "%s: option has an unknown type %d", where, (int)o->type);
    return TT_ECONFIG;
  }
  if (rc != 0) goto bad;
  if (bounded(o) && (v < o->min || v > o->max)) {
    fmt_unit(lo, sizeof lo, o->type, o->min);
    fmt_unit(hi, sizeof hi, o->type, o->max);
    seterr(err, errlen, "%s: \"%s\" out of range [%s, %s]", where, quote(q, sizeof q, text), lo,
           hi);
    return TT_ECONFIG;
  }
  memcpy(field, &v, sizeof v);
  return 0;

bad:
  seterr(err, errlen, "%s: expected %s, got \"%s\"", where, type_expect(o->type),
         quote(q, sizeof q, text));
  return TT_ECONFIG;
}

static const tt_conf_opt_t *find_name(const tt_conf_opt_t *t, size_t n, const char *section,
                                      const char *key) {
  size_t slen = section != NULL ? strlen(section) : 0;
  for (size_t i = 0; i < n; i++) {
    const char *name = t[i].name;
    if (slen > 0) {
      if (strncmp(name, section, slen) != 0 || name[slen] != '.') continue;
      name += slen + 1;
    }
    if (strcmp(name, key) == 0) return &t[i];
  }
  return NULL;
}

int tt_conf_defaults(const tt_conf_opt_t *t, size_t n, void *cfg, char *err, size_t errlen) {
  char where[160];
  for (size_t i = 0; i < n; i++) {
    const tt_conf_opt_t *o = &t[i];
    char *field = (char *)cfg + o->offset;
    if (o->def == NULL) {
      switch (o->type) {
      case TT_CONF_STR: if (o->size > 0) field[0] = '\0'; break;
      case TT_CONF_BOOL: { bool b = false; memcpy(field, &b, sizeof b); break; }
      case TT_CONF_ENUM: { int z = 0; memcpy(field, &z, sizeof z); break; }
      default: { int64_t z = 0; memcpy(field, &z, sizeof z); break; }
      }
      continue;
    }
    /* A default that fails its own bounds is a bug in the table; say which entry. */
    snprintf(where, sizeof where, "default of %s", o->name);
    int rc = set_value(o, cfg, o->def, where, err, errlen);
    if (rc != 0) return rc;
  }
  return 0;
}

int tt_conf_set(const tt_conf_opt_t *t, size_t n, void *cfg, const char *name, const char *value,
                const char *where, char *err, size_t errlen) {
  char q[CONF_QUOTE_MAX + 8];
  if (name == NULL || value == NULL) {
    seterr(err, errlen, "%s%sno option name or value", where ? where : "", where ? ": " : "");
    return TT_ECONFIG;
  }
  const tt_conf_opt_t *o = find_name(t, n, NULL, name);
  if (o == NULL) {
    seterr(err, errlen, "%s%sunknown option \"%s\"", where ? where : "", where ? ": " : "",
           quote(q, sizeof q, name));
    return TT_ECONFIG;
  }
  return set_value(o, cfg, value, where != NULL ? where : o->name, err, errlen);
}

const tt_conf_opt_t *tt_conf_find_flag(const tt_conf_opt_t *t, size_t n, const char *flag) {
  if (flag == NULL) return NULL;
  for (size_t i = 0; i < n; i++)
    if (t[i].flag != NULL && strcmp(t[i].flag, flag) == 0) return &t[i];
  return NULL;
}

/* ---- file parsing ---- */

static bool is_space(char c) { return c == ' ' || c == '\t'; }

static char *trim(char *s) {
  while (is_space(*s)) s++;
  size_t len = strlen(s);
  while (len > 0 && is_space(s[len - 1])) s[--len] = '\0';
  return s;
}

static bool is_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         c == '_' || c == '-' || c == '.';
}

static bool valid_name(const char *s) {
  if (*s == '\0' || *s == '.') return false;
  for (; *s != '\0'; s++)
    if (!is_name_char(*s)) return false;
  return s[-1] != '.';
}

/* Reads one line into buf (without the newline, CR stripped). 1 = got a line, 0 = EOF,
 * TT_ETOOBIG = longer than CONF_LINE_MAX, TT_EPROTO = NUL byte, TT_EIO = read error. */
static int read_line(FILE *f, char *buf, size_t cap) {
  size_t len = 0;
  int c;
  bool any = false, nul = false;
  while ((c = getc(f)) != EOF) {
    any = true;
    if (c == '\n') break;
    if (c == '\0') nul = true;
    if (len + 1 >= cap) {
      while ((c = getc(f)) != EOF && c != '\n') {
      }
      return TT_ETOOBIG;
    }
    buf[len++] = (char)c;
  }
  if (ferror(f)) return TT_EIO;
  if (!any) return 0;
  if (len > 0 && buf[len - 1] == '\r') len--;
  buf[len] = '\0';
  return nul ? TT_EPROTO : 1;
}

/* Unquote a value that starts with '"' in place. Only \" and \\ are escapes; after the
 * closing quote only blanks and a comment may follow. Returns NULL with *why set. */
static char *unquote(char *s, const char **why) {
  char *out = s, *p = s + 1;
  for (;; p++) {
    if (*p == '\0') {
      *why = "unterminated quote";
      return NULL;
    }
    if (*p == '"') break;
    if (*p == '\\') {
      p++;
      if (*p != '"' && *p != '\\') {
        *why = *p == '\0' ? "unterminated quote" : "unknown escape in quoted value (only \\\" and \\\\)";
        return NULL;
      }
    }
    *out++ = *p;
  }
  *out = '\0';
  for (p++; is_space(*p); p++) {
  }
  if (*p != '\0' && *p != '#') {
    *why = "unexpected text after closing quote";
    return NULL;
  }
  return s;
}

/* An unquoted value ends at a '#' that follows a blank ("8080 # port"), so "a#b" is kept. */
static char *strip_comment(char *v) {
  for (char *p = v; *p != '\0'; p++) {
    if (*p == '#' && (p == v || is_space(p[-1]))) {
      *p = '\0';
      break;
    }
  }
  return trim(v);
}

int tt_conf_load(const tt_conf_opt_t *t, size_t n, void *cfg, const char *path, char *err,
                 size_t errlen) {
  return tt_conf_load_extra(t, n, cfg, path, NULL, err, errlen);
}

/* "section.key" (or "key" at top level) under extra's prefix, whole into full. */
static bool extra_name(const tt_conf_extra_t *extra, const char *section, const char *key, char *full,
                       size_t cap) {
  if (extra == NULL || extra->prefix == NULL || extra->fn == NULL) return false;
  int w = section[0] != '\0' ? snprintf(full, cap, "%s.%s", section, key) : snprintf(full, cap, "%s", key);
  return w > 0 && (size_t)w < cap && strncmp(full, extra->prefix, strlen(extra->prefix)) == 0;
}

int tt_conf_load_extra(const tt_conf_opt_t *t, size_t n, void *cfg, const char *path,
                       const tt_conf_extra_t *extra, char *err, size_t errlen) {
  char line[CONF_LINE_MAX + 1];
  char section[CONF_LINE_MAX + 1] = "";
  char where[CONF_LINE_MAX + 64];
  char q[CONF_QUOTE_MAX + 8];
  unsigned long lineno = 0;
  int rc = 0;

  FILE *f = fopen(path, "r");
  if (f == NULL) {
    seterr(err, errlen, "%s: %s", path, strerror(errno));
    return TT_ECONFIG;
  }
  for (;;) {
    int got = read_line(f, line, sizeof line);
    if (got == 0) break;
    lineno++;
    if (got == TT_ETOOBIG) {
      seterr(err, errlen, "%s:%lu: line longer than %d bytes", path, lineno, CONF_LINE_MAX);
      rc = TT_ECONFIG;
      goto out;
    }
    if (got == TT_EPROTO) {
      seterr(err, errlen, "%s:%lu: NUL byte in line", path, lineno);
      rc = TT_ECONFIG;
      goto out;
    }
    if (got < 0) {
      seterr(err, errlen, "%s:%lu: %s", path, lineno, strerror(errno));
      rc = TT_ECONFIG;
      goto out;
    }
    char *s = trim(line);
    if (*s == '\0' || *s == '#') continue;

    if (*s == '[') {
      char *close = strchr(s, ']');
      char *rest = close != NULL ? trim(close + 1) : NULL;
      if (close == NULL || (*rest != '\0' && *rest != '#')) {
        seterr(err, errlen, "%s:%lu: malformed section header, expected \"[name]\"", path,
               lineno);
        rc = TT_ECONFIG;
        goto out;
      }
      *close = '\0';
      char *name = trim(s + 1);
      if (!valid_name(name)) {
        seterr(err, errlen, "%s:%lu: bad section name \"%s\"", path, lineno,
               quote(q, sizeof q, name));
        rc = TT_ECONFIG;
        goto out;
      }
      memcpy(section, name, strlen(name) + 1); /* repeating a section is fine */
      continue;
    }

    char *eq = strchr(s, '=');
    if (eq == NULL) {
      seterr(err, errlen, "%s:%lu: expected \"key = value\" or \"[section]\"", path, lineno);
      rc = TT_ECONFIG;
      goto out;
    }
    *eq = '\0';
    char *key = trim(s);
    char *val = trim(eq + 1);
    if (!valid_name(key)) {
      seterr(err, errlen, "%s:%lu: %s \"%s\"", path, lineno, *key ? "bad key" : "missing key",
             quote(q, sizeof q, key));
      rc = TT_ECONFIG;
      goto out;
    }
    if (*val == '"') {
      const char *why = NULL;
      if (unquote(val, &why) == NULL) {
        seterr(err, errlen, "%s:%lu: %s", path, lineno, why);
        rc = TT_ECONFIG;
        goto out;
      }
    } else {
      val = strip_comment(val);
    }

    const tt_conf_opt_t *o = find_name(t, n, section, key);
    char full[2 * CONF_LINE_MAX + 2];
    if (o == NULL && extra_name(extra, section, key, full, sizeof full)) {
      char why[512];
      why[0] = '\0';
      if (extra->fn(extra->ctx, full, val, why, sizeof why) != 0) {
        seterr(err, errlen, "%s:%lu: %s", path, lineno, why[0] ? why : full);
        rc = TT_ECONFIG;
        goto out;
      }
      continue;
    }
    if (o == NULL) {
      if (section[0] != '\0')
        seterr(err, errlen, "%s:%lu: unknown key \"%s\" in [%s]", path, lineno,
               quote(q, sizeof q, key), section);
      else
        seterr(err, errlen, "%s:%lu: unknown key \"%s\"", path, lineno, quote(q, sizeof q, key));
      rc = TT_ECONFIG;
      goto out;
    }
    snprintf(where, sizeof where, "%s:%lu: %s", path, lineno, o->name);
    rc = set_value(o, cfg, val, where, err, errlen);
    if (rc != 0) goto out;
  }
out:
  fclose(f);
  return rc;
}

/* ---- help ---- */

static const char *placeholder(const tt_conf_opt_t *o) {
  switch (o->type) {
  case TT_CONF_INT: return "N";
  case TT_CONF_BOOL: return "BOOL";
  case TT_CONF_STR: return "TEXT";
  case TT_CONF_DURATION: return "DURATION";
  case TT_CONF_SIZE: return "SIZE";
  case TT_CONF_ENUM: return o->choices != NULL ? o->choices : "CHOICE";
  }
  return "VALUE";
}

static void print_default(FILE *out, const tt_conf_opt_t *o) {
  if (o->def != NULL) {
    if (o->type == TT_CONF_STR && o->def[0] == '\0') return;
    fprintf(out, " (default: %s)", o->def);
    return;
  }
  switch (o->type) {
  case TT_CONF_STR: return;
  case TT_CONF_BOOL: fputs(" (default: false)", out); return;
  case TT_CONF_ENUM: {
    const char *c = o->choices != NULL ? o->choices : "";
    const char *bar = strchr(c, '|');
    int len = bar != NULL ? (int)(bar - c) : (int)strlen(c);
    fprintf(out, " (default: %.*s)", len, c);
    return;
  }
  default: fputs(" (default: 0)", out); return;
  }
}

void tt_conf_print_help(FILE *out, const tt_conf_opt_t *t, size_t n) {
  int w = 0;
  for (size_t i = 0; i < n; i++) {
    int len = (int)(strlen(t[i].name) + 3 + strlen(placeholder(&t[i])));
    if (t[i].flag != NULL) {
      int flen = (int)(strlen(t[i].flag) + 3 + strlen(placeholder(&t[i])));
      if (t[i].type == TT_CONF_BOOL) flen += 2;
      if (flen > len) len = flen;
    }
    if (len > w) w = len;
  }
  char col[CONF_LINE_MAX];
  for (size_t i = 0; i < n; i++) {
    const tt_conf_opt_t *o = &t[i];
    if (o->flag == NULL) continue;
    /* A bare boolean flag means true (tt_cli); a value may still follow. */
    if (o->type == TT_CONF_BOOL) snprintf(col, sizeof col, "--%s [BOOL]", o->flag);
    else snprintf(col, sizeof col, "--%s %s", o->flag, placeholder(o));
    fprintf(out, "  %-*s  %s", w, col, o->help != NULL ? o->help : "");
    print_default(out, o);
    fputc('\n', out);
  }
  /* Every option can live in the file; flagged ones are listed there by name only. */
  if (n > 0) fputs("\nconfig file keys:\n", out);
  for (size_t i = 0; i < n; i++) {
    const tt_conf_opt_t *o = &t[i];
    snprintf(col, sizeof col, "%s = %s", o->name, placeholder(o));
    if (o->flag != NULL) {
      fprintf(out, "  %-*s  same as --%s\n", w, col, o->flag);
      continue;
    }
    fprintf(out, "  %-*s  %s", w, col, o->help != NULL ? o->help : "");
    print_default(out, o);
    fputc('\n', out);
  }
}
