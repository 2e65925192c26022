/* The reports' rules over one ticket's timeline, and the sums (report_rules.h). */
#include "report_rules.h"
#include <stdlib.h>
#include <string.h>

#define DAY_MS 86400000ll

const int64_t report_backlog_edges_ms[REPORT_BACKLOG_BUCKETS] = {0, DAY_MS, 3 * DAY_MS, 7 * DAY_MS, 30 * DAY_MS};

size_t report_backlog_bucket(int64_t age_ms) {
  size_t i = REPORT_BACKLOG_BUCKETS - 1;
  while (i > 0 && age_ms < report_backlog_edges_ms[i]) i--;
  return i;
}

static bool is(const char *kind, const char *what) { return strcmp(kind, what) == 0; }

/* A technician's answer to the ticket (the requester's own diagnostics snapshot is not). */
static bool is_response(const report_ticket_t *t, const report_event_t *e) {
  if (is(e->kind, "public-comment") || is(e->kind, "session-requested") || is(e->kind, "session-opened") ||
      is(e->kind, "channel-opened"))
    return true;
  return is(e->kind, "diag-attached") && strcmp(e->actor, t->requester) != 0;
}

/* The end of a wait for the employee's consent: whatever the answer was. */
static bool is_consent_answer(const char *kind) {
  return is(kind, "consent-given") || is(kind, "consent-refused") || is(kind, "consent-timeout") ||
         is(kind, "consent-nobody") || is(kind, "consent-withdrawn") || is(kind, "consent-failed") ||
         is(kind, "unattended");
}

static report_sla_t sla(int64_t target_ms, int64_t took_ms, int64_t so_far_ms) {
  if (target_ms <= 0) return REPORT_SLA_NONE;
  if (took_ms >= 0) return took_ms <= target_ms ? REPORT_SLA_MET : REPORT_SLA_BREACHED;
  return so_far_ms > target_ms ? REPORT_SLA_BREACHED : REPORT_SLA_PENDING;
}

void report_walk_begin(report_walk_t *w, const report_ticket_t *t) {
  memset(w, 0, sizeof(*w));
  w->t = t;
  w->response = w->resolved = -1;
  w->open = true;
  w->last = t->created_ms;
}

void report_walk_event(report_walk_t *w, const report_event_t *e) {
  int64_t ts = e->ts_ms < w->last ? w->last : e->ts_ms; /* a clock step back never counts negative */
  if (w->open && (w->consents_pending > 0 || w->on_requester)) w->wait_total += ts - w->last;
  w->last = ts;
  if (w->response < 0 && is_response(w->t, e)) {
    w->response = ts;
    w->wait_at_response = w->wait_total;
  }
  if (is(e->kind, "session-requested")) {
    w->consents_pending++;
  } else if (is_consent_answer(e->kind)) {
    if (w->consents_pending > 0) w->consents_pending--;
  } else if (is(e->kind, "waiting-on-requester")) {
    w->on_requester = true;
  } else if (is(e->kind, "requester-comment")) {
    w->on_requester = false;
  } else if (is(e->kind, "resolved") || is(e->kind, "closed")) {
    if (w->open) {
      w->resolved = ts;
      w->wait_at_resolved = w->wait_total;
      if (w->response < 0) {
        w->response = ts;
        w->wait_at_response = w->wait_total;
      }
    }
    w->open = false;
    w->consents_pending = 0;
    w->on_requester = false;
  } else if (is(e->kind, "reopened")) {
    if (!w->open) w->reopens++;
    w->open = true;
    w->resolved = -1;
  }
}

void report_walk_end(report_walk_t *w, int64_t now_ms, bool exclude_waiting, report_facts_t *out) {
  const report_ticket_t *t = w->t;
  /* The state now is the ticket's (a timeline is only as complete as its events). */
  if (t->open && !w->open) {
    w->open = true;
    w->resolved = -1;
  } else if (!t->open && w->open) {
    report_event_t e = {t->updated_ms > w->last ? t->updated_ms : w->last, "", "resolved"};
    report_walk_event(w, &e);
  }
  if (w->open && now_ms > w->last && (w->consents_pending > 0 || w->on_requester))
    w->wait_total += now_ms - w->last;

  memset(out, 0, sizeof(*out));
  out->reopens = w->reopens;
  out->waiting_ms = w->wait_total;
  int64_t off_response = exclude_waiting ? w->wait_at_response : 0;
  int64_t off_resolved = exclude_waiting ? w->wait_at_resolved : 0;
  int64_t off_now = exclude_waiting ? w->wait_total : 0;
  int64_t so_far = now_ms > t->created_ms ? now_ms - t->created_ms : 0;
  out->response_ms = -1;
  out->resolution_ms = -1;
  if (w->response >= 0) {
    out->response_ms = w->response - t->created_ms - off_response;
    if (out->response_ms < 0) out->response_ms = 0;
  }
  if (!w->open && w->resolved >= 0) {
    out->resolution_ms = w->resolved - t->created_ms - off_resolved;
    if (out->resolution_ms < 0) out->resolution_ms = 0;
  }
  int64_t response_target = t->first_response_due_ms > 0 ? t->first_response_due_ms - t->created_ms : 0;
  int64_t resolution_target = t->resolution_due_ms > 0 ? t->resolution_due_ms - t->created_ms : 0;
  out->response_sla = sla(response_target, out->response_ms, so_far - off_now);
  out->resolution_sla = sla(resolution_target, out->resolution_ms, so_far - off_now);
}

void report_ticket_facts(const report_ticket_t *t, const report_event_t *ev, size_t n, int64_t now_ms,
                         bool exclude_waiting, report_facts_t *out) {
  report_walk_t w;
  report_walk_begin(&w, t);
  for (size_t i = 0; i < n; i++) report_walk_event(&w, &ev[i]);
  report_walk_end(&w, now_ms, exclude_waiting, out);
}

static int cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return x < y ? -1 : x > y;
}

/* The smallest value with at least pct% of the (sorted) set at or below it. */
static int64_t rank(const int64_t *v, size_t n, unsigned pct) {
  size_t k = (n * pct + 99) / 100;
  return v[k ? k - 1 : 0];
}

void report_durations(int64_t *v, size_t n, report_durations_t *out) {
  memset(out, 0, sizeof(*out));
  if (n == 0) return;
  qsort(v, n, sizeof(*v), cmp_i64);
  long double sum = 0;
  for (size_t i = 0; i < n; i++) sum += (long double)v[i];
  out->count = (uint32_t)n;
  out->median_ms = rank(v, n, 50);
  out->p90_ms = rank(v, n, 90);
  out->mean_ms = (int64_t)(sum / (long double)n);
  out->max_ms = v[n - 1];
}

void report_row_sum(report_row_t *row, const report_facts_t *const *f, size_t n, int64_t *scratch) {
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    row->tickets++;
    if (f[i]->resolution_ms >= 0) row->resolved++;
    else row->open++;
    if (f[i]->reopens) row->reopened++;
    row->response_sla[f[i]->response_sla]++;
    row->resolution_sla[f[i]->resolution_sla]++;
  }
  for (size_t i = 0; i < n; i++)
    if (f[i]->response_ms >= 0) scratch[k++] = f[i]->response_ms;
  report_durations(scratch, k, &row->response);
  k = 0;
  for (size_t i = 0; i < n; i++)
    if (f[i]->resolution_ms >= 0) scratch[k++] = f[i]->resolution_ms;
  report_durations(scratch, k, &row->resolution);
  k = 0;
  for (size_t i = 0; i < n; i++)
    if (f[i]->waiting_ms > 0) scratch[k++] = f[i]->waiting_ms;
  report_durations(scratch, k, &row->waiting);
}

/* ---- keys -------------------------------------------------------------------------------- */

static uint32_t hash(const char *s) {
  uint32_t h = 2166136261u;
  for (; *s; s++) h = (h ^ (uint8_t)*s) * 16777619u;
  return h;
}

void report_keys_init(report_keys_t *k, uint32_t max) {
  memset(k, 0, sizeof(*k));
  k->max = max;
}

void report_keys_free(report_keys_t *k) {
  for (uint32_t i = 0; i < k->n; i++) free(k->names[i]);
  free(k->names);
  free(k->count);
  free(k->bytes);
  free(k->slots);
  memset(k, 0, sizeof(*k));
}

static bool rehash(report_keys_t *k, uint32_t nslots) {
  uint32_t *slots = calloc(nslots, sizeof(*slots));
  if (!slots) return false;
  for (uint32_t i = 0; i < k->n; i++) {
    uint32_t j = hash(k->names[i]) & (nslots - 1);
    while (slots[j]) j = (j + 1) & (nslots - 1);
    slots[j] = i + 1;
  }
  free(k->slots);
  k->slots = slots;
  k->nslots = nslots;
  return true;
}

uint32_t report_keys_add(report_keys_t *k, const char *name) {
  if (k->nslots) {
    for (uint32_t j = hash(name) & (k->nslots - 1); k->slots[j]; j = (j + 1) & (k->nslots - 1))
      if (strcmp(k->names[k->slots[j] - 1], name) == 0) return k->slots[j] - 1;
  }
  if (k->n >= k->max) return REPORT_KEY_FULL;
  if (k->n == k->cap) {
    uint32_t cap = k->cap ? k->cap * 2 : 16;
    char **names = realloc(k->names, cap * sizeof(*names));
    if (!names) return REPORT_KEY_FULL;
    k->names = names;
    uint64_t *count = realloc(k->count, cap * sizeof(*count));
    if (!count) return REPORT_KEY_FULL;
    k->count = count;
    uint64_t *bytes = realloc(k->bytes, cap * sizeof(*bytes));
    if (!bytes) return REPORT_KEY_FULL;
    k->bytes = bytes;
    k->cap = cap;
  }
  if ((k->n + 1) * 2 > k->nslots && !rehash(k, k->nslots ? k->nslots * 2 : 32)) return REPORT_KEY_FULL;
  char *copy = strdup(name);
  if (!copy) return REPORT_KEY_FULL;
  uint32_t i = k->n++;
  k->names[i] = copy;
  k->count[i] = k->bytes[i] = 0;
  uint32_t j = hash(name) & (k->nslots - 1);
  while (k->slots[j]) j = (j + 1) & (k->nslots - 1);
  k->slots[j] = i + 1;
  return i;
}

typedef struct {
  uint64_t count;
  const char *name;
  uint32_t i;
} top_t;

static int cmp_top(const void *a, const void *b) {
  const top_t *x = a, *y = b;
  if (x->count != y->count) return x->count > y->count ? -1 : 1;
  return strcmp(x->name, y->name);
}

size_t report_keys_top(const report_keys_t *k, uint32_t *out, size_t cap) {
  if (k->n == 0 || cap == 0) return 0;
  top_t *all = malloc(k->n * sizeof(*all));
  if (!all) return 0;
  for (uint32_t i = 0; i < k->n; i++) all[i] = (top_t){k->count[i], k->names[i], i};
  qsort(all, k->n, sizeof(*all), cmp_top);
  size_t n = k->n < cap ? k->n : cap;
  for (size_t i = 0; i < n; i++) out[i] = all[i].i;
  free(all);
  return n;
}
