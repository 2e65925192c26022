/* The checks' engine (checks.h): a run's samples, and the state of every (check, dimension)
 * with hysteresis, so that a value hovering at a threshold does not flap. Pure: no loop, no
 * clock of its own, no I/O; the unit tests drive it run by run. */
#include <fnmatch.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "checks.h"
#include "tt/utf8.h"

/* ---- runs ------------------------------------------------------------------------------- */

void agent_check_run_init(agent_check_run_t *r) { memset(r, 0, sizeof(*r)); }

void agent_check_run_free(agent_check_run_t *r) {
  free(r->s);
  memset(r, 0, sizeof(*r));
}

void agent_check_text(char *dst, size_t cap, const char *src) {
  size_t o = 0, n = strlen(src);
  if (!cap) return;
  for (size_t i = 0; i < n;) {
    uint32_t cp;
    size_t k = tt_utf8_decode((const uint8_t *)src + i, n - i, &cp);
    const char *put = src + i;
    size_t len = k;
    if (k == 0) { /* not UTF-8: one byte as U+FFFD */
      put = "\xef\xbf\xbd";
      len = 3;
      k = 1;
    } else if (tt_cp_unsafe(cp)) { /* a TAB or newline would break a line of the local protocol */
      put = "?";
      len = 1;
    }
    if (o + len >= cap) break;
    memcpy(dst + o, put, len);
    o += len;
    i += k;
  }
  dst[o] = 0;
}

static void vtext(char *dst, size_t cap, const char *fmt, va_list ap) __attribute__((format(printf, 3, 0)));
static void vtext(char *dst, size_t cap, const char *fmt, va_list ap) {
  char tmp[TT_CHECK_TEXT_MAX * 4];
  vsnprintf(tmp, sizeof(tmp), fmt, ap);
  agent_check_text(dst, cap, tmp);
}

int agent_check_sample(agent_check_run_t *r, const char *dim, tt_check_state_t raw, const char *message,
                       const char *fmt, ...) {
  if (strlen(dim) > TT_CHECK_DIM_MAX) {
    r->over++;
    return TT_ETOOBIG;
  }
  if (r->n == TT_CHECK_RESULTS_MAX) {
    r->over++;
    return TT_EFULL;
  }
  if (r->n == r->cap) {
    size_t cap = r->cap ? r->cap * 2 : 8;
    if (cap > TT_CHECK_RESULTS_MAX) cap = TT_CHECK_RESULTS_MAX;
    agent_check_sample_t *s = realloc(r->s, cap * sizeof(*s));
    if (!s) return TT_ENOMEM;
    r->s = s;
    r->cap = cap;
  }
  agent_check_sample_t *s = &r->s[r->n++];
  agent_check_text(s->dim, sizeof(s->dim), dim);
  s->raw = raw;
  agent_check_text(s->message, sizeof(s->message), message ? message : "");
  va_list ap;
  va_start(ap, fmt);
  vtext(s->value, sizeof(s->value), fmt, ap);
  va_end(ap);
  return 0;
}

void agent_check_fail(agent_check_run_t *r, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vtext(r->why, sizeof(r->why), fmt, ap);
  va_end(ap);
  r->failed = true;
}

void agent_check_na(agent_check_run_t *r, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vtext(r->why, sizeof(r->why), fmt, ap);
  va_end(ap);
  r->na = true;
}

/* ---- the engine -------------------------------------------------------------------------- */

int agent_checks_engine_init(agent_checks_engine_t *e, size_t max) {
  memset(e, 0, sizeof(*e));
  if (max == 0 || max > TT_CHECK_RESULTS_MAX) return TT_EINVAL;
  e->r = calloc(max, sizeof(*e->r));
  if (!e->r) return TT_ENOMEM;
  e->max = max;
  return 0;
}

void agent_checks_engine_free(agent_checks_engine_t *e) {
  free(e->r);
  memset(e, 0, sizeof(*e));
}

agent_check_result_t *agent_checks_engine_find(agent_checks_engine_t *e, tt_check_id_t check, const char *dim) {
  for (size_t i = 0; i < e->n; i++)
    if (e->r[i].check == check && !strcmp(e->r[i].dim, dim)) return &e->r[i];
  return NULL;
}

/* One run's raw result for r: the streak, then the state it earns. */
static unsigned step(agent_check_result_t *r, tt_check_state_t raw, uint32_t raise_after, uint32_t clear_after,
                     int64_t now_ms) {
  if (r->streak && r->last == raw) {
    if (r->streak < UINT32_MAX) r->streak++;
  } else {
    r->last = raw;
    r->streak = 1;
  }
  r->run_ms = now_ms;
  tt_check_state_t next = r->state;
  if (raw == TT_CHECK_OK) {
    if (r->streak >= clear_after) next = TT_CHECK_OK;
  } else if (r->streak >= raise_after) {
    next = raw; /* FAILING, or UNKNOWN: what the check cannot tell is never a pass */
  }
  if (next == r->state) return 0;
  r->state = next;
  r->since_ms = now_ms;
  r->dirty = true;
  return AGENT_CHECKS_CHANGED;
}

/* The result for (check, dim), made PENDING if new; NULL when there is no room. */
static agent_check_result_t *result_for(agent_checks_engine_t *e, tt_check_id_t check, const char *dim,
                                        int64_t now_ms) {
  agent_check_result_t *r = agent_checks_engine_find(e, check, dim);
  if (r) return r;
  if (e->n == e->max) {
    e->over[check]++;
    return NULL;
  }
  r = &e->r[e->n++];
  memset(r, 0, sizeof(*r));
  r->check = check;
  r->state = r->last = TT_CHECK_PENDING;
  r->since_ms = now_ms;
  snprintf(r->dim, sizeof(r->dim), "%s", dim);
  return r;
}

/* Remove the check's results that this apply did not see (all of them with all = true). */
static unsigned sweep(agent_checks_engine_t *e, tt_check_id_t check, bool all) {
  unsigned out = 0;
  size_t w = 0;
  for (size_t i = 0; i < e->n; i++) {
    agent_check_result_t *r = &e->r[i];
    if (r->check == check && (all || !r->seen)) {
      out = AGENT_CHECKS_DROPPED;
      continue;
    }
    if (w != i) e->r[w] = *r;
    w++;
  }
  e->n = w;
  return out;
}

unsigned agent_checks_engine_apply(agent_checks_engine_t *e, tt_check_id_t check, const agent_check_run_t *run,
                                   uint32_t raise_after, uint32_t clear_after, int64_t now_ms) {
  if ((unsigned)check >= TT_CHECK_COUNT) return 0;
  if (raise_after == 0) raise_after = 1;
  if (clear_after == 0) clear_after = 1;
  e->over[check] = run->over;
  if (run->na) return sweep(e, check, true);
  unsigned out = 0;
  for (size_t i = 0; i < e->n; i++) e->r[i].seen = false;
  if (run->failed) {
    bool any = false;
    for (size_t i = 0; i < e->n; i++) {
      agent_check_result_t *r = &e->r[i];
      if (r->check != check) continue;
      any = r->seen = true;
      out |= step(r, TT_CHECK_UNKNOWN, raise_after, clear_after, now_ms);
      r->value[0] = 0;
      snprintf(r->message, sizeof(r->message), "%s", run->why);
      snprintf(r->threshold, sizeof(r->threshold), "%s", run->threshold);
    }
    agent_check_result_t *r = any ? NULL : result_for(e, check, "", now_ms);
    if (r) {
      out |= step(r, TT_CHECK_UNKNOWN, raise_after, clear_after, now_ms);
      snprintf(r->message, sizeof(r->message), "%s", run->why);
      snprintf(r->threshold, sizeof(r->threshold), "%s", run->threshold);
    }
    return out; /* nothing is dropped on a run that could not look */
  }
  /* The results the check has first, then the ones gone are dropped, and only then new ones
   * come in: a mount that replaced another takes the room the old one left. */
  for (int pass = 0; pass < 2; pass++) {
    if (pass == 1) out |= sweep(e, check, false);
    for (size_t k = 0; k < run->n; k++) {
      const agent_check_sample_t *s = &run->s[k];
      agent_check_result_t *r = agent_checks_engine_find(e, check, s->dim);
      if (pass == 1 && !r) r = result_for(e, check, s->dim, now_ms);
      if (!r || r->seen) continue; /* new (pass 0), no room; or named twice: the first counts */
      r->seen = true;
      out |= step(r, s->raw, raise_after, clear_after, now_ms);
      snprintf(r->value, sizeof(r->value), "%s", s->value);
      snprintf(r->message, sizeof(r->message), "%s", s->message);
      snprintf(r->threshold, sizeof(r->threshold), "%s", run->threshold);
    }
  }
  return out;
}

unsigned agent_checks_engine_drop(agent_checks_engine_t *e, tt_check_id_t check) {
  e->over[check] = 0;
  return sweep(e, check, true);
}

/* ---- helpers the samplers share ------------------------------------------------------------ */

bool agent_check_listed(const char *list, const char *s) {
  char item[TT_CHECK_DIM_MAX + 1];
  for (const char *p = list; *p;) {
    const char *c = strchr(p, ',');
    size_t n = c ? (size_t)(c - p) : strlen(p);
    if (n < sizeof(item)) {
      memcpy(item, p, n);
      item[n] = 0;
      if (n && fnmatch(item, s, 0) == 0) return true;
    }
    p += n + (c ? 1 : 0);
  }
  return false;
}

void agent_check_fmt_age(char *out, size_t cap, int64_t ms) {
  static const struct {
    int64_t ms;
    const char *u;
  } units[] = {{86400000, "d"}, {3600000, "h"}, {60000, "m"}, {1000, "s"}};
  if (ms < 0) ms = ms == INT64_MIN ? INT64_MAX : -ms;
  if (ms < 1000) {
    snprintf(out, cap, "%" PRId64 "ms", ms);
    return;
  }
  for (size_t i = 0; i < 4; i++) {
    if (ms < units[i].ms) continue;
    int64_t a = ms / units[i].ms, rest = ms % units[i].ms;
    if (i + 1 < 4 && rest >= units[i + 1].ms)
      snprintf(out, cap, "%" PRId64 "%s %" PRId64 "%s", a, units[i].u, rest / units[i + 1].ms, units[i + 1].u);
    else
      snprintf(out, cap, "%" PRId64 "%s", a, units[i].u);
    return;
  }
}

void agent_check_fmt_bytes(char *out, size_t cap, uint64_t b) {
  static const char *const u[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  if (b < 1024) {
    snprintf(out, cap, "%" PRIu64 " B", b);
    return;
  }
  double v = (double)b / 1024.0;
  size_t i = 0;
  while (v >= 1024.0 && i + 1 < sizeof(u) / sizeof(u[0])) v /= 1024.0, i++;
  snprintf(out, cap, v < 10 ? "%.1f %s" : "%.0f %s", v, u[i]);
}
