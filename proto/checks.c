/* The health checks' catalogue (tt/checks.h): one table of checks and their settings, and the
 * one parser every setting goes through, whoever typed it: an admin's policy at the broker, a
 * push to the agent, the agent's own config file. Like core/conf.c, bounds and defaults live
 * in the table and every error names the key and says what is allowed. */
#include "tt/checks.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "tt/conf.h"
#include "tt/utf8.h"

/* A key is "checks." + a check's name + "." + a setting's name: far shorter than this. */
#define CHECK_KEY_MAX 128u
/* How much of a bad value an error quotes back (the value is checked printable first). */
#define CHECK_QUOTE_MAX 64
/* A systemd unit name is at most 255 bytes (UNIT_NAME_MAX). */
#define CHECK_UNIT_MAX 255u

#define MS_SEC INT64_C(1000)
#define MS_MIN (60 * MS_SEC)
#define MS_HOUR (60 * MS_MIN)
#define MS_DAY (24 * MS_HOUR)

/* Periods from a second: tests, and a technician watching a fix take effect, need sub-minute
 * periods, and even one second costs little, since a check never overlaps its own last run
 * (a helper that hangs holds the next run back, it does not pile runs up). At most a day:
 * a check that runs less often than that is not watching anything. */
#define PERIOD_MIN MS_SEC
#define PERIOD_MAX MS_DAY
#define RUNS_MAX 100

/* The settings every check has, with its own defaults. */
#define COMMON(period, raise, clear, prio)                                                                     \
  {"enabled", TT_CHECK_F_ENABLED, TT_CHECK_V_BOOL, 0, 1, "on", "run this check"},                              \
      {"period", TT_CHECK_F_PERIOD, TT_CHECK_V_DURATION, PERIOD_MIN, PERIOD_MAX, period, "how often it runs"}, \
      {"raise_after", TT_CHECK_F_RAISE_AFTER, TT_CHECK_V_COUNT, 1, RUNS_MAX, raise,                            \
       "failing (or unknown) runs in a row before its state changes to failing (or unknown)"},                \
      {"clear_after", TT_CHECK_F_CLEAR_AFTER, TT_CHECK_V_COUNT, 1, RUNS_MAX, clear,                            \
       "passing runs in a row before its state changes back to ok"},                                           \
      {"priority", TT_CHECK_F_PRIORITY, TT_CHECK_V_PRIORITY, TT_CHECK_PRIO_LOW, TT_CHECK_PRIO_URGENT, prio,     \
       "the priority of the ticket its alert opens"}

/* What the disk checks leave out by default: filesystems in memory or read-only images, full
 * by design or gone at the next boot. (Read-only mounts and those without usage, such as
 * network filesystems and /proc, are never judged.) */
#define DISK_IGNORE "tmpfs,devtmpfs,ramfs,squashfs,overlay,iso9660,udf"

static const tt_check_setting_t s_disk_used[] = {
    COMMON("5m", "3", "2", "normal"),
    {"threshold", TT_CHECK_F_THRESHOLD, TT_CHECK_V_PERCENT, 1, 100, "90%",
     "fails when a filesystem is this full (of the space its users can have, as df shows)"},
    {"ignore", TT_CHECK_F_LIST, TT_CHECK_V_GLOBS, 0, TT_CHECK_LIST_MAX, DISK_IGNORE,
     "filesystem types (or, starting with /, mount points) to leave out; shell patterns"},
};
static const tt_check_setting_t s_inodes_used[] = {
    COMMON("5m", "3", "2", "normal"),
    {"threshold", TT_CHECK_F_THRESHOLD, TT_CHECK_V_PERCENT, 1, 100, "90%",
     "fails when this share of a filesystem's inodes is in use"},
    {"ignore", TT_CHECK_F_LIST, TT_CHECK_V_GLOBS, 0, TT_CHECK_LIST_MAX, DISK_IGNORE,
     "filesystem types (or, starting with /, mount points) to leave out; shell patterns"},
};
static const tt_check_setting_t s_memory_pressure[] = {
    COMMON("1m", "3", "3", "normal"),
    {"threshold", TT_CHECK_F_THRESHOLD, TT_CHECK_V_PERCENT, 1, 100, "20%",
     "fails when tasks waited for memory this share of the last minute (PSI some avg60)"},
    {"available", TT_CHECK_F_AVAILABLE, TT_CHECK_V_PERCENT, 1, 99, "5%",
     "where the kernel has no PSI: fails when MemAvailable is under this share of memory"},
};
static const tt_check_setting_t s_swap_used[] = {
    COMMON("5m", "3", "2", "low"),
    {"threshold", TT_CHECK_F_THRESHOLD, TT_CHECK_V_PERCENT, 1, 100, "80%", "fails when this share of swap is in use"},
};
static const tt_check_setting_t s_units_failed[] = {
    COMMON("5m", "2", "1", "normal"),
    {"threshold", TT_CHECK_F_THRESHOLD, TT_CHECK_V_COUNT, 1, 1000, "1", "fails when this many units have failed"},
    {"ignore", TT_CHECK_F_LIST, TT_CHECK_V_GLOBS, 0, TT_CHECK_LIST_MAX, "",
     "failed units not to count (shell patterns of unit names)"},
};
static const tt_check_setting_t s_services_down[] = {
    COMMON("1m", "2", "1", "high"),
    {"services", TT_CHECK_F_LIST, TT_CHECK_V_UNITS, 0, TT_CHECK_LIST_MAX, "",
     "units that must be active (\"cups\" is cups.service); empty: nothing required"},
};
static const tt_check_setting_t s_reboot_pending[] = {
    COMMON("1h", "1", "1", "low"),
    {"threshold", TT_CHECK_F_THRESHOLD, TT_CHECK_V_DURATION, 0, 365 * MS_DAY, "7d",
     "fails when a restart has been wanted for this long (0s: as soon as one is)"},
};
static const tt_check_setting_t s_clock_skew[] = {
    COMMON("5m", "2", "1", "normal"),
    {"threshold", TT_CHECK_F_THRESHOLD, TT_CHECK_V_DURATION, MS_SEC, MS_DAY, "1m",
     "fails when this device's clock is further than this from the broker's"},
};
static const tt_check_setting_t s_cert_expiry[] = {
    COMMON("6h", "1", "1", "high"),
    {"threshold", TT_CHECK_F_THRESHOLD, TT_CHECK_V_DURATION, MS_HOUR, 365 * MS_DAY, "14d",
     "fails when a certificate expires within this"},
    {"paths", TT_CHECK_F_LIST, TT_CHECK_V_PATHS, 0, TT_CHECK_LIST_MAX, "",
     "certificate files (PEM or DER; the first certificate of each) to watch"},
};
static const tt_check_setting_t s_agent_renewal[] = {
    COMMON("15m", "1", "1", "high"),
    {"threshold", TT_CHECK_F_THRESHOLD, TT_CHECK_V_DURATION, 0, 30 * MS_DAY, "1d",
     "fails when the agent's certificate renewal is overdue by this (or it has expired)"},
};
static const tt_check_setting_t s_agent_state_disk[] = {
    COMMON("15m", "2", "1", "high"),
    {"threshold", TT_CHECK_F_THRESHOLD, TT_CHECK_V_PERCENT, 1, 100, "95%",
     "fails when the filesystem of the agent's state directory is this full (or read-only)"},
};

#define DEF(id, n, d, desc) [id] = {#n, d, desc, s_##n, sizeof(s_##n) / sizeof(s_##n[0])}

const tt_check_def_t tt_checks[TT_CHECK_COUNT] = {
    DEF(TT_CHECK_DISK_USED, disk_used, TT_CHECK_DIM_MOUNT, "space used on each filesystem"),
    DEF(TT_CHECK_INODES_USED, inodes_used, TT_CHECK_DIM_MOUNT, "inodes used on each filesystem"),
    DEF(TT_CHECK_MEMORY_PRESSURE, memory_pressure, TT_CHECK_DIM_NONE,
        "time tasks waited for memory (PSI), or memory available where there is no PSI"),
    DEF(TT_CHECK_SWAP_USED, swap_used, TT_CHECK_DIM_NONE, "swap in use"),
    DEF(TT_CHECK_UNITS_FAILED, units_failed, TT_CHECK_DIM_NONE, "systemd units in the failed state"),
    DEF(TT_CHECK_SERVICES_DOWN, services_down, TT_CHECK_DIM_SERVICE, "required services that are not active"),
    DEF(TT_CHECK_REBOOT_PENDING, reboot_pending, TT_CHECK_DIM_NONE,
        "a restart wanted (an update asked for one, or a newer kernel is installed)"),
    DEF(TT_CHECK_CLOCK_SKEW, clock_skew, TT_CHECK_DIM_NONE, "this device's clock against the broker's"),
    DEF(TT_CHECK_CERT_EXPIRY, cert_expiry, TT_CHECK_DIM_PATH, "certificate files close to their expiry"),
    DEF(TT_CHECK_AGENT_RENEWAL, agent_renewal, TT_CHECK_DIM_NONE, "the agent's own certificate renewal"),
    DEF(TT_CHECK_AGENT_STATE_DISK, agent_state_disk, TT_CHECK_DIM_NONE,
        "room for the agent's state (its identity and policy)"),
};

static void seterr(char *err, size_t errlen, const char *fmt, ...) TT_PRINTF(3, 4);
static void seterr(char *err, size_t errlen, const char *fmt, ...) {
  if (!err || !errlen) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
}

/* ---- names ------------------------------------------------------------------------------- */

int tt_check_find(const char *name) {
  for (int i = 0; i < TT_CHECK_COUNT; i++)
    if (!strcmp(tt_checks[i].name, name)) return i;
  return -1;
}

const tt_check_setting_t *tt_check_setting(tt_check_id_t id, const char *name) {
  if ((unsigned)id >= TT_CHECK_COUNT) return NULL;
  for (size_t i = 0; i < tt_checks[id].nsettings; i++)
    if (!strcmp(tt_checks[id].settings[i].name, name)) return &tt_checks[id].settings[i];
  return NULL;
}

const tt_check_setting_t *tt_check_setting_of(tt_check_id_t id, tt_check_field_t field) {
  if ((unsigned)id >= TT_CHECK_COUNT) return NULL;
  for (size_t i = 0; i < tt_checks[id].nsettings; i++)
    if (tt_checks[id].settings[i].field == field) return &tt_checks[id].settings[i];
  return NULL;
}

const char *tt_check_state_name(tt_check_state_t s) {
  switch (s) {
  case TT_CHECK_PENDING: return "pending";
  case TT_CHECK_OK: return "ok";
  case TT_CHECK_FAILING: return "failing";
  case TT_CHECK_UNKNOWN: return "unknown";
  }
  return "?";
}

const char *tt_check_dim_name(tt_check_dim_t d) {
  switch (d) {
  case TT_CHECK_DIM_NONE: return "none";
  case TT_CHECK_DIM_MOUNT: return "mount";
  case TT_CHECK_DIM_SERVICE: return "service";
  case TT_CHECK_DIM_PATH: return "path";
  }
  return "?";
}

static const char *const g_prio[] = {"low", "normal", "high", "urgent"};

const char *tt_check_prio_name(int prio) {
  return prio >= TT_CHECK_PRIO_LOW && prio <= TT_CHECK_PRIO_URGENT ? g_prio[prio - 1] : "?";
}

/* ---- values ------------------------------------------------------------------------------ */

void tt_checks_format_num(tt_check_vtype_t type, int64_t v, char *out, size_t cap) {
  switch (type) {
  case TT_CHECK_V_DURATION:
    if (v == 0) snprintf(out, cap, "0s");
    else if (v % MS_DAY == 0) snprintf(out, cap, "%" PRId64 "d", v / MS_DAY);
    else if (v % MS_HOUR == 0) snprintf(out, cap, "%" PRId64 "h", v / MS_HOUR);
    else if (v % MS_MIN == 0) snprintf(out, cap, "%" PRId64 "m", v / MS_MIN);
    else if (v % MS_SEC == 0) snprintf(out, cap, "%" PRId64 "s", v / MS_SEC);
    else snprintf(out, cap, "%" PRId64 "ms", v);
    return;
  case TT_CHECK_V_PERCENT: snprintf(out, cap, "%" PRId64 "%%", v); return;
  case TT_CHECK_V_BOOL: snprintf(out, cap, "%s", v ? "on" : "off"); return;
  case TT_CHECK_V_PRIORITY: snprintf(out, cap, "%s", tt_check_prio_name((int)v)); return;
  default: snprintf(out, cap, "%" PRId64, v); return;
  }
}

/* Printable UTF-8: no control or format characters, no NUL, at most max bytes. */
static bool text_ok(const uint8_t *s, size_t n, size_t max) {
  if (n > max) return false;
  for (size_t i = 0; i < n;) {
    uint32_t cp;
    size_t k = tt_utf8_decode(s + i, n - i, &cp);
    if (k == 0 || cp == 0 || tt_cp_unsafe(cp)) return false;
    i += k;
  }
  return true;
}

static bool digits_only(const char *s, size_t n) {
  if (n == 0) return false;
  for (size_t i = 0; i < n; i++)
    if (s[i] < '0' || s[i] > '9') return false;
  return true;
}

/* A whole number of at most 18 digits (no sign, no spaces). */
static int parse_count(const char *s, size_t n, int64_t *v) {
  if (!digits_only(s, n) || n > 18) return TT_EINVAL;
  int64_t x = 0;
  for (size_t i = 0; i < n; i++) x = x * 10 + (s[i] - '0');
  *v = x;
  return 0;
}

static bool unit_suffix(const char *s) {
  static const char *const sfx[] = {".service", ".socket", ".target", ".device", ".mount", ".automount",
                                    ".swap",    ".timer",  ".path",   ".slice",  ".scope"};
  size_t n = strlen(s);
  for (size_t i = 0; i < sizeof(sfx) / sizeof(sfx[0]); i++) {
    size_t k = strlen(sfx[i]);
    if (n > k && !strcmp(s + n - k, sfx[i])) return true;
  }
  return false;
}

/* One list item, trimmed, checked for its kind and made canonical into out (cap). An error
 * says why into why. */
static int list_item(tt_check_vtype_t type, const char *s, size_t n, char *out, size_t cap, char *why,
                     size_t whylen) {
  if (n > TT_CHECK_DIM_MAX) {
    snprintf(why, whylen, "an item is longer than %u bytes", (unsigned)TT_CHECK_DIM_MAX);
    return TT_EINVAL;
  }
  if (type == TT_CHECK_V_UNITS) {
    for (size_t i = 0; i < n; i++) {
      char c = s[i];
      /* (a leading '-' would read as an option to systemctl) */
      if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == ':' || c == '_' ||
            c == '.' || c == '@' || (c == '-' && i > 0) || c == '\\')) {
        snprintf(why, whylen, "\"%.*s\" is not a unit name (letters, digits and :_.@-\\ only)",
                 (int)(n < CHECK_QUOTE_MAX ? n : CHECK_QUOTE_MAX), s);
        return TT_EINVAL;
      }
    }
    snprintf(out, cap, "%.*s", (int)n, s);
    /* systemctl takes "cups" for cups.service; results name the unit as systemd does. */
    if (!unit_suffix(out)) snprintf(out + n, cap - n, ".service");
    /* The canonical name is what results name as their dimension, and what parses again:
     * it must fit as the input did (found by fuzz.checks: "x...x" of 200 bytes took
     * ".service" and no longer parsed). */
    if (strlen(out) > TT_CHECK_DIM_MAX) {
      snprintf(why, whylen, "a unit name is longer than %u bytes", (unsigned)TT_CHECK_DIM_MAX);
      return TT_EINVAL;
    }
    return 0;
  }
  if (type == TT_CHECK_V_PATHS) {
    bool bad = s[0] != '/';
    /* No "." or ".." component: a path names one file, the same one to everyone. */
    for (size_t i = 0; i < n && !bad; i++) {
      if (s[i] != '/') continue;
      size_t e = i + 1;
      while (e < n && s[e] != '/') e++;
      size_t len = e - i - 1;
      if ((len == 1 && s[i + 1] == '.') || (len == 2 && s[i + 1] == '.' && s[i + 2] == '.')) bad = true;
    }
    if (bad) {
      snprintf(why, whylen, "\"%.*s\" is not an absolute path without . or .. parts",
               (int)(n < CHECK_QUOTE_MAX ? n : CHECK_QUOTE_MAX), s);
      return TT_EINVAL;
    }
  }
  snprintf(out, cap, "%.*s", (int)n, s);
  return 0;
}

/* A comma list into canon: items trimmed, checked, made canonical, each once. */
static int parse_list(const tt_check_setting_t *st, const char *v, char *canon, size_t cap, char *why,
                      size_t whylen) {
  size_t o = 0, items = 0;
  canon[0] = 0;
  const char *p = v;
  while (*p == ' ' || *p == '\t') p++;
  if (!*p) return 0; /* empty: no items */
  for (;;) {
    const char *e = strchr(p, ',');
    size_t n = e ? (size_t)(e - p) : strlen(p);
    const char *s = p;
    while (n && (*s == ' ' || *s == '\t')) s++, n--;
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t')) n--;
    if (n == 0) {
      snprintf(why, whylen, "an item of the list is empty");
      return TT_EINVAL;
    }
    char item[CHECK_UNIT_MAX + 16];
    int rc = list_item(st->type, s, n, item, sizeof(item), why, whylen);
    if (rc) return rc;
    /* Once each: a second mention adds nothing. */
    bool dup = false;
    for (const char *q = canon; *q && !dup;) {
      const char *c = strchr(q, ',');
      size_t k = c ? (size_t)(c - q) : strlen(q);
      dup = k == strlen(item) && !memcmp(q, item, k);
      q += k + (c ? 1 : 0);
    }
    if (!dup) {
      if (++items > (size_t)st->max) {
        snprintf(why, whylen, "more than %" PRId64 " items", st->max);
        return TT_EINVAL;
      }
      int w = snprintf(canon + o, cap - o, "%s%s", o ? "," : "", item);
      if (w < 0 || (size_t)w >= cap - o || o + (size_t)w > TT_POLICY_VALUE_MAX) {
        snprintf(why, whylen, "the list is longer than %u bytes", (unsigned)TT_POLICY_VALUE_MAX);
        return TT_EINVAL;
      }
      o += (size_t)w;
    }
    if (!e) break;
    p = e + 1;
  }
  return 0;
}

static const char *type_expect(tt_check_vtype_t t) {
  switch (t) {
  case TT_CHECK_V_BOOL: return "on or off";
  case TT_CHECK_V_DURATION: return "a duration (90s, 5m, 4h, 14d)";
  case TT_CHECK_V_COUNT: return "a whole number";
  case TT_CHECK_V_PERCENT: return "a percentage (85%)";
  case TT_CHECK_V_PRIORITY: return "low, normal, high or urgent";
  default: return "a comma-separated list";
  }
}

/* One value of setting st into *num (numbers) and canon. why gets the reason, without the key. */
static int parse_value(const tt_check_setting_t *st, const char *v, int64_t *num, char *canon, size_t cap, char *why,
                       size_t whylen) {
  size_t n = strlen(v);
  int64_t x = 0;
  int rc = TT_EINVAL;
  *num = 0;
  switch (st->type) {
  case TT_CHECK_V_BOOL:
    if (!strcmp(v, "on") || !strcmp(v, "true") || !strcmp(v, "yes")) x = 1, rc = 0;
    else if (!strcmp(v, "off") || !strcmp(v, "false") || !strcmp(v, "no")) x = 0, rc = 0;
    break;
  case TT_CHECK_V_PRIORITY:
    for (int i = 0; i < 4; i++)
      if (!strcmp(v, g_prio[i])) x = i + 1, rc = 0;
    break;
  case TT_CHECK_V_COUNT: rc = parse_count(v, n, &x); break;
  case TT_CHECK_V_PERCENT: rc = parse_count(v, n && v[n - 1] == '%' ? n - 1 : n, &x); break;
  case TT_CHECK_V_DURATION:
    /* A bare number would be milliseconds to core/conf.c: too easy to misread in a policy. */
    if (n && !(v[n - 1] >= '0' && v[n - 1] <= '9')) rc = tt_conf_parse_duration(v, &x);
    break;
  default: return parse_list(st, v, canon, cap, why, whylen);
  }
  if (rc) {
    snprintf(why, whylen, "\"%.*s\" is not %s", CHECK_QUOTE_MAX, v, type_expect(st->type));
    return TT_EINVAL;
  }
  if (x < st->min || x > st->max) {
    char lo[32], hi[32];
    tt_checks_format_num(st->type, st->min, lo, sizeof(lo));
    tt_checks_format_num(st->type, st->max, hi, sizeof(hi));
    snprintf(why, whylen, "%.*s is out of range (%s..%s)", CHECK_QUOTE_MAX, v, lo, hi);
    return TT_EINVAL;
  }
  *num = x;
  tt_checks_format_num(st->type, x, canon, cap);
  return 0;
}

/* ---- settings ---------------------------------------------------------------------------- */

static void known_checks(char *out, size_t cap) {
  size_t o = 0;
  out[0] = 0;
  for (int i = 0; i < TT_CHECK_COUNT && o < cap; i++) {
    int w = snprintf(out + o, cap - o, "%s%s", i ? ", " : "", tt_checks[i].name);
    if (w < 0) break;
    o += (size_t)w;
  }
}

static void known_settings(tt_check_id_t id, char *out, size_t cap) {
  size_t o = 0;
  out[0] = 0;
  for (size_t i = 0; i < tt_checks[id].nsettings && o < cap; i++) {
    int w = snprintf(out + o, cap - o, "%s%s", i ? ", " : "", tt_checks[id].settings[i].name);
    if (w < 0) break;
    o += (size_t)w;
  }
}

/* tt_checks_parse, with the value's number (*num) for store(). */
static int parse_setting(const char *key, const char *value, tt_check_id_t *id, const tt_check_setting_t **s,
                         int64_t *num, char *canon, size_t cap, char *err, size_t errlen) {
  char why[CHECK_QUOTE_MAX + 300], names[512];
  if (!text_ok((const uint8_t *)key, strlen(key), CHECK_KEY_MAX)) {
    seterr(err, errlen, "a setting's key is not printable text of at most %u bytes", (unsigned)CHECK_KEY_MAX);
    return TT_EINVAL;
  }
  const char *dot = strncmp(key, "checks.", 7) ? NULL : strchr(key + 7, '.');
  if (!dot) {
    seterr(err, errlen, "%s: not a check's setting (keys are checks.<check>.<setting>)", key);
    return TT_EINVAL;
  }
  char name[CHECK_KEY_MAX + 1];
  snprintf(name, sizeof(name), "%.*s", (int)(dot - (key + 7)), key + 7);
  int i = tt_check_find(name);
  if (i < 0) {
    known_checks(names, sizeof(names));
    seterr(err, errlen, "%s: no such check (known: %s)", key, names);
    return TT_EINVAL;
  }
  const tt_check_setting_t *st = tt_check_setting((tt_check_id_t)i, dot + 1);
  if (!st) {
    known_settings((tt_check_id_t)i, names, sizeof(names));
    seterr(err, errlen, "%s: no such setting (%s has: %s)", key, name, names);
    return TT_EINVAL;
  }
  if (!text_ok((const uint8_t *)value, strlen(value), TT_POLICY_VALUE_MAX)) {
    seterr(err, errlen, "%s: the value is not printable text of at most %u bytes", key, (unsigned)TT_POLICY_VALUE_MAX);
    return TT_EINVAL;
  }
  if (parse_value(st, value, num, canon, cap, why, sizeof(why))) {
    seterr(err, errlen, "%s: %s", key, why);
    return TT_EINVAL;
  }
  *id = (tt_check_id_t)i;
  *s = st;
  return 0;
}

int tt_checks_parse(const char *key, const char *value, tt_check_id_t *id, const tt_check_setting_t **s, char *canon,
                    size_t cap, char *err, size_t errlen) {
  int64_t num;
  return parse_setting(key, value, id, s, &num, canon, cap, err, errlen);
}

/* Store a checked value into c: num for a number, canon for a list. */
static void store(tt_check_conf_t *c, const tt_check_setting_t *st, int64_t num, const char *canon) {
  switch (st->field) {
  case TT_CHECK_F_ENABLED: c->enabled = num != 0; break;
  case TT_CHECK_F_PERIOD: c->period_ms = num; break;
  case TT_CHECK_F_RAISE_AFTER: c->raise_after = (uint32_t)num; break;
  case TT_CHECK_F_CLEAR_AFTER: c->clear_after = (uint32_t)num; break;
  case TT_CHECK_F_PRIORITY: c->priority = (int)num; break;
  case TT_CHECK_F_THRESHOLD: c->threshold = num; break;
  case TT_CHECK_F_AVAILABLE: c->available = num; break;
  case TT_CHECK_F_LIST: snprintf(c->list, sizeof(c->list), "%s", canon); break;
  }
}

void tt_checks_defaults(tt_checks_conf_t *cfg) {
  memset(cfg, 0, sizeof(*cfg));
  for (int i = 0; i < TT_CHECK_COUNT; i++) {
    for (size_t k = 0; k < tt_checks[i].nsettings; k++) {
      const tt_check_setting_t *st = &tt_checks[i].settings[k];
      char canon[TT_POLICY_VALUE_MAX + 1], why[CHECK_QUOTE_MAX + 300];
      int64_t num;
      /* A default that does not parse is a bug in the table above (the unit test parses each). */
      if (parse_value(st, st->def, &num, canon, sizeof(canon), why, sizeof(why))) abort();
      store(&cfg->c[i], st, num, canon);
    }
  }
}

int tt_checks_set(tt_checks_conf_t *cfg, const char *key, const char *value, char *err, size_t errlen) {
  tt_check_id_t id;
  const tt_check_setting_t *st;
  char canon[TT_POLICY_VALUE_MAX + 1];
  int64_t num;
  int rc = parse_setting(key, value, &id, &st, &num, canon, sizeof(canon), err, errlen);
  if (rc) return rc;
  store(&cfg->c[id], st, num, canon);
  return 0;
}

int tt_checks_apply(tt_checks_conf_t *cfg, const tt_check_kv_t *kv, size_t n, char *err, size_t errlen) {
  if (n > TT_POLICY_SETTINGS_MAX) {
    seterr(err, errlen, "%zu settings: at most %u at once", n, (unsigned)TT_POLICY_SETTINGS_MAX);
    return TT_EINVAL;
  }
  tt_checks_conf_t *next = malloc(sizeof(*next));
  if (!next) return TT_ENOMEM;
  *next = *cfg;
  /* Each (check, setting) once: two values for one key in one policy is a mistake to show,
   * not a choice to make silently. */
  uint32_t seen[TT_CHECK_COUNT] = {0};
  int rc = 0;
  for (size_t i = 0; i < n && !rc; i++) {
    char key[CHECK_KEY_MAX + 1], value[TT_POLICY_VALUE_MAX + 1];
    /* (memchr and memcpy only with bytes: protobuf-c leaves an empty field's data NULL) */
    if (kv[i].key_len == 0 || kv[i].key_len > CHECK_KEY_MAX || memchr(kv[i].key, 0, kv[i].key_len) ||
        !text_ok(kv[i].key, kv[i].key_len, CHECK_KEY_MAX)) {
      seterr(err, errlen, "setting %zu: its key is not printable text of at most %u bytes", i + 1,
             (unsigned)CHECK_KEY_MAX);
      rc = TT_EINVAL;
      break;
    }
    memcpy(key, kv[i].key, kv[i].key_len);
    key[kv[i].key_len] = 0;
    if (kv[i].value_len > TT_POLICY_VALUE_MAX || (kv[i].value_len && memchr(kv[i].value, 0, kv[i].value_len))) {
      seterr(err, errlen, "%s: the value is not printable text of at most %u bytes", key,
             (unsigned)TT_POLICY_VALUE_MAX);
      rc = TT_EINVAL;
      break;
    }
    if (kv[i].value_len) memcpy(value, kv[i].value, kv[i].value_len);
    value[kv[i].value_len] = 0;
    tt_check_id_t id;
    const tt_check_setting_t *st;
    char canon[TT_POLICY_VALUE_MAX + 1];
    int64_t num;
    if ((rc = parse_setting(key, value, &id, &st, &num, canon, sizeof(canon), err, errlen))) break;
    uint32_t bit = 1u << (uint32_t)(st - tt_checks[id].settings);
    if (seen[id] & bit) {
      seterr(err, errlen, "%s: set twice", key);
      rc = TT_EINVAL;
      break;
    }
    seen[id] |= bit;
    store(&next->c[id], st, num, canon);
  }
  if (!rc) *cfg = *next;
  free(next);
  return rc;
}

int tt_checks_apply_pb(tt_checks_conf_t *cfg, Tether__PolicySetting *const *s, size_t n, char *err, size_t errlen) {
  if (n > TT_POLICY_SETTINGS_MAX) {
    seterr(err, errlen, "%zu settings: at most %u at once", n, (unsigned)TT_POLICY_SETTINGS_MAX);
    return TT_EINVAL;
  }
  tt_check_kv_t kv[TT_POLICY_SETTINGS_MAX];
  for (size_t i = 0; i < n; i++) {
    if (!s[i]) {
      seterr(err, errlen, "setting %zu is missing", i + 1);
      return TT_EINVAL;
    }
    kv[i] = (tt_check_kv_t){s[i]->key.data, s[i]->key.len, s[i]->value.data, s[i]->value.len};
  }
  return tt_checks_apply(cfg, kv, n, err, errlen);
}

void tt_checks_format(const tt_checks_conf_t *cfg, tt_check_id_t id, const tt_check_setting_t *s, char *out,
                      size_t cap) {
  const tt_check_conf_t *c = &cfg->c[id];
  int64_t v = 0;
  switch (s->field) {
  case TT_CHECK_F_ENABLED: v = c->enabled; break;
  case TT_CHECK_F_PERIOD: v = c->period_ms; break;
  case TT_CHECK_F_RAISE_AFTER: v = c->raise_after; break;
  case TT_CHECK_F_CLEAR_AFTER: v = c->clear_after; break;
  case TT_CHECK_F_PRIORITY: v = c->priority; break;
  case TT_CHECK_F_THRESHOLD: v = c->threshold; break;
  case TT_CHECK_F_AVAILABLE: v = c->available; break;
  case TT_CHECK_F_LIST: snprintf(out, cap, "%s", c->list); return;
  }
  tt_checks_format_num(s->type, v, out, cap);
}
