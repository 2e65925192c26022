/* tether report sla | activity: numbers for the help desk's managers, computed from the
 * records themselves (ticket timelines, the audit log), never from counters that can drift.
 *
 * A report runs on the store's reader a chunk at a time (TT_REPORT_CHUNK tickets or
 * TT_REPORT_AUDIT_CHUNK audit entries): each chunk's completion on the loop submits the next,
 * so listings and verifications are served between chunks. What one ticket says is decided by
 * report_rules.c as its events stream past; the request keeps a few numbers per ticket, and the
 * last chunk, still on the reader, sorts and sums them into rows. The loop only turns rows into
 * the answer. */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "broker.h"
#include "report_rules.h"
#include "tt/log.h"
#include "tt/msg.h"

#define MOD "report"
#define DAY_MS 86400000ll
#define OTHER_KEY "(other)"

/* One ticket the report counts: in the range (its facts), or open now (the backlog), or both. */
typedef struct {
  report_facts_t f;
  int64_t created_ms;
  uint32_t group;       /* index in groups, REPORT_KEY_FULL: past the table ("other") */
  uint8_t backlog;      /* bucket + 1 when open now, 0 when not */
  bool in_range;
} entry_t;

/* A ticket of the chunk, as much of it as the report reads. */
typedef struct {
  int64_t id, created_ms, updated_ms, response_due_ms, resolution_due_ms;
  char requester[STORE_NAME_MAX], assignee[STORE_NAME_MAX], device[STORE_NAME_MAX];
  int priority, level, state;
} chunk_ticket_t;

typedef struct {
  broker_creq_t h;
  Tether__ReportKind kind;
  Tether__ReportBy by;
  int64_t since_ms, until_ms, now_ms, bucket_ms;
  bool exclude_waiting;
  int64_t after;            /* the cursor: the last ticket (audit entry) read */
  bool finished;
  int err;                  /* TT_ETOOBIG: too many tickets in the range */
  uint64_t scanned;
  chunk_ticket_t chunk[TT_REPORT_CHUNK];
  uint32_t nchunk;
  /* sla */
  entry_t *entries;
  size_t n, cap;
  report_keys_t groups;
  /* sla and activity: the time axis */
  Tether__ReportBucket buckets[TT_REPORT_BUCKETS_MAX];
  size_t nbuckets;
  /* activity */
  report_keys_t actions, devices, people, checks;
  uint64_t transfers, transfer_bytes;
  /* the result, made by the last chunk */
  report_row_t *rows, total;
  const char **row_keys;
  size_t nrows;
  uint32_t folded;
} report_req_t;

static void req_free(report_req_t *x);
static void req_free_any(void *x) { req_free(x); }

static void req_free(report_req_t *x) {
  free(x->entries);
  report_keys_free(&x->groups);
  report_keys_free(&x->actions);
  report_keys_free(&x->devices);
  report_keys_free(&x->people);
  report_keys_free(&x->checks);
  free(x->rows);
  free(x->row_keys);
  free(x);
}

static size_t bucket_of(const report_req_t *x, int64_t ts) {
  if (ts < x->since_ms) return 0;
  size_t i = (size_t)((ts - x->since_ms) / x->bucket_ms);
  return i < x->nbuckets ? i : x->nbuckets - 1;
}

static const char *prio_word(int p) {
  static const char *const w[] = {"low", "normal", "high", "urgent"};
  return p >= 0 && p < 4 ? w[p] : "?";
}

/* ---- sla: the tickets, a chunk at a time ------------------------------------------------- */

static int chunk_cb(void *ctx, const store_ticket_t *t) {
  report_req_t *x = ctx;
  if (x->nchunk >= TT_REPORT_CHUNK) return 1;
  chunk_ticket_t *c = &x->chunk[x->nchunk++];
  c->id = t->id;
  c->created_ms = t->created_ms;
  c->updated_ms = t->updated_ms;
  c->response_due_ms = t->first_response_due_ms;
  c->resolution_due_ms = t->resolution_due_ms;
  snprintf(c->requester, sizeof(c->requester), "%s", t->requester);
  snprintf(c->assignee, sizeof(c->assignee), "%s", t->assignee);
  snprintf(c->device, sizeof(c->device), "%s", t->device);
  c->priority = (int)t->priority;
  c->level = t->level;
  c->state = (int)t->state;
  return 0;
}

static int event_cb(void *ctx, const store_ticket_event_t *e) {
  report_event_t ev = {e->ts_ms, e->actor, e->kind};
  report_walk_event(ctx, &ev);
  return 0;
}

static int group_of(broker_store_t *s, report_req_t *x, const chunk_ticket_t *t, uint32_t *out) {
  char key[STORE_NAME_MAX + 8];
  switch (x->by) {
  case TETHER__REPORT_BY__REPORT_BY_TECHNICIAN: snprintf(key, sizeof(key), "%s", t->assignee[0] ? t->assignee : "(unassigned)"); break;
  case TETHER__REPORT_BY__REPORT_BY_PRIORITY: snprintf(key, sizeof(key), "%s", prio_word(t->priority)); break;
  case TETHER__REPORT_BY__REPORT_BY_LEVEL: snprintf(key, sizeof(key), "L%d", t->level); break;
  case TETHER__REPORT_BY__REPORT_BY_DEVICE: snprintf(key, sizeof(key), "%s", t->device); break;
  case TETHER__REPORT_BY__REPORT_BY_DEPARTMENT: {
    store_device_groups_t g;
    int rc = store_device_groups(s, t->device, &g);
    if (rc && rc != TT_ENOTFOUND) return rc;
    snprintf(key, sizeof(key), "%.*s", STORE_NAME_MAX - 1, rc == 0 && g.department[0] ? g.department : "(none)");
    break;
  }
  default: key[0] = '\0'; break;
  }
  *out = report_keys_add(&x->groups, key);
  return 0;
}

static int sla_chunk(broker_store_t *s, report_req_t *x) {
  x->nchunk = 0;
  store_ticket_filter_t f = {.limit = TT_REPORT_CHUNK, .after_id = x->after};
  int rc = store_ticket_list(s, &f, chunk_cb, x);
  if (rc < 0) return rc;
  if (x->nchunk < TT_REPORT_CHUNK) x->finished = true;
  for (uint32_t i = 0; i < x->nchunk; i++) {
    const chunk_ticket_t *c = &x->chunk[i];
    x->after = c->id;
    x->scanned++;
    bool in_range = c->created_ms >= x->since_ms && c->created_ms < x->until_ms;
    bool open = c->state == STORE_TICKET_OPEN;
    if (!in_range && !open) continue;
    if (x->n >= TT_REPORT_TICKETS_MAX) {
      x->err = TT_ETOOBIG;
      x->finished = true;
      return 0;
    }
    if (x->n == x->cap) {
      size_t cap = x->cap ? x->cap * 2 : 1024;
      entry_t *e = realloc(x->entries, cap * sizeof(*e));
      if (!e) return TT_ENOMEM;
      x->entries = e;
      x->cap = cap;
    }
    entry_t *e = &x->entries[x->n++];
    memset(e, 0, sizeof(*e));
    e->created_ms = c->created_ms;
    e->in_range = in_range;
    if (open) e->backlog = (uint8_t)(report_backlog_bucket(x->now_ms - c->created_ms) + 1);
    if ((rc = group_of(s, x, c, &e->group))) return rc;
    if (!in_range) continue;
    report_ticket_t t = {c->created_ms, c->response_due_ms, c->resolution_due_ms, c->requester, open, c->updated_ms};
    report_walk_t w;
    report_walk_begin(&w, &t);
    if ((rc = store_ticket_events(s, c->id, event_cb, &w)) < 0) return rc;
    report_walk_end(&w, x->now_ms, x->exclude_waiting, &e->f);
    Tether__ReportBucket *b = &x->buckets[bucket_of(x, c->created_ms)];
    b->created++;
    if (e->f.resolution_ms >= 0) b->resolved++;
    if (e->f.response_sla == REPORT_SLA_BREACHED || e->f.resolution_sla == REPORT_SLA_BREACHED) b->breached++;
  }
  return 0;
}

/* ---- sla: rows, on the reader once every ticket is in ------------------------------------- */

/* The order rows are shown in: priorities urgent first, levels 1 up, the rest busiest first. */
static int row_rank(const report_req_t *x, uint32_t g) {
  if (g == REPORT_KEY_FULL) return 1 << 30;
  const char *k = x->groups.names[g];
  if (x->by == TETHER__REPORT_BY__REPORT_BY_PRIORITY)
    for (int p = 0; p < 4; p++)
      if (strcmp(k, prio_word(p)) == 0) return 3 - p;
  if (x->by == TETHER__REPORT_BY__REPORT_BY_LEVEL) return k[0] == 'L' ? atoi(k + 1) : 99;
  return 0;
}

typedef struct {
  uint32_t g;
  int rank;
  uint64_t tickets;
  const char *name;
} order_t;

static int cmp_order(const void *a, const void *b) {
  const order_t *x = a, *y = b;
  if (x->rank != y->rank) return x->rank < y->rank ? -1 : 1;
  if (x->tickets != y->tickets) return x->tickets > y->tickets ? -1 : 1;
  return strcmp(x->name, y->name);
}

static int make_rows(report_req_t *x) {
  uint32_t ngroups = x->groups.n + 1; /* the last: tickets past the key table */
  uint32_t *row_of = calloc(ngroups, sizeof(*row_of));
  order_t *ord = calloc(ngroups, sizeof(*ord));
  int64_t *scratch = malloc((x->n ? x->n : 1) * sizeof(*scratch));
  const report_facts_t **fp = malloc((x->n ? x->n : 1) * sizeof(*fp));
  size_t *begin = NULL, *pos = NULL;
  int rc = TT_ENOMEM;
  if (!row_of || !ord || !scratch || !fp) goto out;
  for (uint32_t g = 0; g < ngroups; g++)
    ord[g] = (order_t){g, row_rank(x, g < x->groups.n ? g : REPORT_KEY_FULL), 0,
                       g < x->groups.n ? x->groups.names[g] : OTHER_KEY};
  for (size_t i = 0; i < x->n; i++) {
    uint32_t g = x->entries[i].group == REPORT_KEY_FULL ? x->groups.n : x->entries[i].group;
    if (x->entries[i].in_range || x->entries[i].backlog) ord[g].tickets++;
  }
  qsort(ord, ngroups, sizeof(*ord), cmp_order);
  /* Groups with tickets, in order; past TT_REPORT_ROWS_MAX - 1 (and tickets past the key
   * table) the rest make one last row. */
  for (uint32_t g = 0; g < ngroups; g++) row_of[g] = UINT32_MAX;
  size_t nrows = 0, nfold = 0;
  x->row_keys = calloc(TT_REPORT_ROWS_MAX, sizeof(*x->row_keys));
  if (!x->row_keys) goto out;
  for (uint32_t i = 0; i < ngroups; i++) {
    if (ord[i].tickets == 0) continue;
    if (nrows == TT_REPORT_ROWS_MAX - 1 || ord[i].g == x->groups.n) {
      nfold++;
      continue;
    }
    x->row_keys[nrows] = ord[i].name;
    row_of[ord[i].g] = (uint32_t)nrows++;
  }
  if (nfold) {
    for (uint32_t g = 0; g < ngroups; g++)
      if (row_of[g] == UINT32_MAX) row_of[g] = (uint32_t)nrows;
    x->row_keys[nrows++] = OTHER_KEY;
    x->folded = (uint32_t)nfold;
  }
  x->rows = calloc(nrows ? nrows : 1, sizeof(*x->rows));
  begin = calloc(nrows + 1, sizeof(*begin));
  pos = calloc(nrows + 1, sizeof(*pos));
  if (!x->rows || !begin || !pos) goto out;
  x->nrows = nrows;
  /* The facts of each row's tickets in range, next to each other (a counting sort). */
  for (size_t i = 0; i < x->n; i++) {
    const entry_t *e = &x->entries[i];
    uint32_t r = row_of[e->group == REPORT_KEY_FULL ? x->groups.n : e->group];
    if (r == UINT32_MAX) continue;
    if (e->backlog) {
      x->rows[r].backlog[e->backlog - 1]++;
      x->total.backlog[e->backlog - 1]++;
    }
    if (e->in_range) begin[r + 1]++;
  }
  for (size_t r = 0; r < nrows; r++) begin[r + 1] += begin[r];
  memcpy(pos, begin, (nrows + 1) * sizeof(*pos));
  size_t in_range = begin[nrows];
  for (size_t i = 0; i < x->n; i++) {
    const entry_t *e = &x->entries[i];
    uint32_t r = row_of[e->group == REPORT_KEY_FULL ? x->groups.n : e->group];
    if (e->in_range && r != UINT32_MAX) fp[pos[r]++] = &e->f;
  }
  for (size_t r = 0; r < nrows; r++) report_row_sum(&x->rows[r], fp + begin[r], begin[r + 1] - begin[r], scratch);
  uint32_t backlog[REPORT_BACKLOG_BUCKETS];
  memcpy(backlog, x->total.backlog, sizeof(backlog));
  report_row_sum(&x->total, fp, in_range, scratch);
  memcpy(x->total.backlog, backlog, sizeof(backlog));
  rc = 0;
out:
  free(row_of);
  free(ord);
  free(scratch);
  free(fp);
  free(begin);
  free(pos);
  return rc;
}

/* ---- activity: the audit log in the range ------------------------------------------------- */

static void count(report_keys_t *k, const char *name, uint64_t bytes) {
  uint32_t i = report_keys_add(k, name && name[0] ? name : "(none)");
  if (i == REPORT_KEY_FULL) i = report_keys_add(k, OTHER_KEY); /* never full: it was added first */
  if (i == REPORT_KEY_FULL) return;
  k->count[i]++;
  k->bytes[i] += bytes;
}

static const char *field(json_t *o, const char *name) {
  const char *v = json_string_value(json_object_get(o, name));
  return v ? v : "";
}

static int audit_cb(void *ctx, const store_audit_t *e) {
  report_req_t *x = ctx;
  x->after = e->id;
  x->scanned++;
  if (e->ts_ms >= x->until_ms) {
    x->finished = true;
    return 1;
  }
  count(&x->actions, e->action, 0);
  bool opened = !strcmp(e->action, "consent-given") || !strcmp(e->action, "consent-unattended");
  bool refused = !strcmp(e->action, "consent-refused") || !strcmp(e->action, "consent-timeout") ||
                 !strcmp(e->action, "consent-nobody");
  bool moved = !strcmp(e->action, "file-pull") || !strcmp(e->action, "file-push");
  bool alert = !strcmp(e->action, "alert");
  if (!opened && !refused && !moved && !alert) return 0;
  json_t *d = json_loads(e->detail, JSON_REJECT_DUPLICATES, NULL);
  Tether__ReportBucket *b = &x->buckets[bucket_of(x, e->ts_ms)];
  if (opened) {
    b->sessions++;
    count(&x->devices, e->actor, 0); /* the device says yes, or its policy does */
    count(&x->people, field(d, "person"), 0);
  } else if (refused) {
    b->refused++;
  } else if (moved) {
    b->transfers++;
    x->transfers++;
    x->transfer_bytes += strtoull(field(d, "size"), NULL, 10);
  } else {
    const char *what = field(d, "what");
    if (!strcmp(what, "opened") || !strcmp(what, "reopened") || !strcmp(what, "storm"))
      count(&x->checks, field(d, "check"), 0);
  }
  json_decref(d);
  return 0;
}

static int activity_chunk(broker_store_t *s, report_req_t *x) {
  uint64_t before = x->scanned;
  store_audit_filter_t f = {.since_ms = x->since_ms, .limit = TT_REPORT_AUDIT_CHUNK, .after_id = x->after};
  int rc = store_audit_list(s, &f, audit_cb, x);
  if (rc < 0) return rc;
  if (x->scanned - before < TT_REPORT_AUDIT_CHUNK) x->finished = true;
  return 0;
}

/* ---- the request ------------------------------------------------------------------------- */

static int report_run(broker_store_t *s, store_req_t *r) {
  report_req_t *x = (report_req_t *)r;
  int rc = x->kind == TETHER__REPORT_KIND__REPORT_SLA ? sla_chunk(s, x) : activity_chunk(s, x);
  if (rc) return rc;
  if (x->finished && !x->err && x->kind == TETHER__REPORT_KIND__REPORT_SLA) return make_rows(x);
  return 0;
}

static void durations_to_wire(const report_durations_t *d, Tether__Durations *o) {
  tether__durations__init(o);
  o->count = d->count;
  o->median_ms = (uint64_t)d->median_ms;
  o->p90_ms = (uint64_t)d->p90_ms;
  o->mean_ms = (uint64_t)d->mean_ms;
  o->max_ms = (uint64_t)d->max_ms;
}

typedef struct {
  Tether__ReportRow row;
  Tether__Durations d[3];
  uint32_t backlog[REPORT_BACKLOG_BUCKETS];
} wire_row_t;

static void row_to_wire(const report_row_t *r, const char *key, wire_row_t *w) {
  tether__report_row__init(&w->row);
  w->row.key = tt_text(key);
  w->row.tickets = r->tickets;
  w->row.open = r->open;
  w->row.resolved = r->resolved;
  w->row.reopened = r->reopened;
  durations_to_wire(&r->response, &w->d[0]);
  durations_to_wire(&r->resolution, &w->d[1]);
  durations_to_wire(&r->waiting, &w->d[2]);
  w->row.first_response = &w->d[0];
  w->row.resolution = &w->d[1];
  w->row.waiting = &w->d[2];
  w->row.response_met = r->response_sla[REPORT_SLA_MET];
  w->row.response_breached = r->response_sla[REPORT_SLA_BREACHED];
  w->row.response_pending = r->response_sla[REPORT_SLA_PENDING];
  w->row.resolution_met = r->resolution_sla[REPORT_SLA_MET];
  w->row.resolution_breached = r->resolution_sla[REPORT_SLA_BREACHED];
  w->row.resolution_pending = r->resolution_sla[REPORT_SLA_PENDING];
  memcpy(w->backlog, r->backlog, sizeof(w->backlog));
  w->row.backlog = w->backlog;
  w->row.n_backlog = REPORT_BACKLOG_BUCKETS;
}

/* A top list: the names with the largest counts (at most TOP_CAP). */
#define TOP_CAP 256u

static size_t top_to_wire(const report_keys_t *k, size_t cap, Tether__ReportCount *cnt, Tether__ReportCount **ptrs) {
  uint32_t idx[TOP_CAP];
  size_t got = report_keys_top(k, idx, cap < TOP_CAP ? cap : TOP_CAP), n = 0;
  for (size_t j = 0; j < got && k->count[idx[j]] > 0; j++) { /* "(other)", there from the start, may be unused */
    tether__report_count__init(&cnt[n]);
    cnt[n].name = tt_text(k->names[idx[j]]);
    cnt[n].count = k->count[idx[j]];
    cnt[n].bytes = k->bytes[idx[j]];
    ptrs[n] = &cnt[n];
    n++;
  }
  return n;
}

static int send_report(broker_conn_t *c, report_req_t *x) {
  Tether__Report rep = TETHER__REPORT__INIT;
  rep.kind = x->kind;
  rep.since_ms = (uint64_t)x->since_ms;
  rep.until_ms = (uint64_t)x->until_ms;
  rep.generated_ms = (uint64_t)x->now_ms;
  rep.by = x->by;
  rep.waiting_excluded = x->exclude_waiting;
  rep.folded = x->folded;
  rep.bucket_ms = (uint64_t)x->bucket_ms;
  rep.scanned = x->scanned;
  uint64_t edges[REPORT_BACKLOG_BUCKETS];
  for (size_t i = 0; i < REPORT_BACKLOG_BUCKETS; i++) edges[i] = (uint64_t)report_backlog_edges_ms[i];
  Tether__ReportBucket *bp[TT_REPORT_BUCKETS_MAX];
  for (size_t i = 0; i < x->nbuckets; i++) {
    x->buckets[i].start_ms = (uint64_t)(x->since_ms + (int64_t)i * x->bucket_ms);
    bp[i] = &x->buckets[i];
  }
  rep.buckets = bp;
  rep.n_buckets = x->nbuckets;
  wire_row_t *rows = NULL, total;
  Tether__ReportRow **rp = NULL;
  /* Activity's lists: every action, and the top devices, people and checks. */
  enum { LISTS = 4 };
  Tether__ReportCount *cnt = calloc(LISTS * TOP_CAP, sizeof(*cnt));
  Tether__ReportCount **cp = calloc(LISTS * TOP_CAP, sizeof(*cp));
  Tether__ReportCount transfers = TETHER__REPORT_COUNT__INIT;
  int rc = TT_ENOMEM;
  if (!cnt || !cp) goto out;
  if (x->kind == TETHER__REPORT_KIND__REPORT_SLA) {
    rows = calloc(x->nrows ? x->nrows : 1, sizeof(*rows));
    rp = calloc(x->nrows ? x->nrows : 1, sizeof(*rp));
    if (!rows || !rp) goto out;
    for (size_t i = 0; i < x->nrows; i++) {
      row_to_wire(&x->rows[i], x->row_keys[i], &rows[i]);
      rp[i] = &rows[i].row;
    }
    row_to_wire(&x->total, "", &total);
    rep.rows = rp;
    rep.n_rows = x->nrows;
    rep.total = &total.row;
    rep.backlog_edges_ms = edges;
    rep.n_backlog_edges_ms = REPORT_BACKLOG_BUCKETS;
  } else {
    rep.n_actions = top_to_wire(&x->actions, TOP_CAP, cnt, cp);
    rep.actions = cp;
    rep.n_devices = top_to_wire(&x->devices, TT_REPORT_TOP_MAX, cnt + TOP_CAP, cp + TOP_CAP);
    rep.devices = cp + TOP_CAP;
    rep.n_people = top_to_wire(&x->people, TT_REPORT_TOP_MAX, cnt + 2 * TOP_CAP, cp + 2 * TOP_CAP);
    rep.people = cp + 2 * TOP_CAP;
    rep.n_checks = top_to_wire(&x->checks, TT_REPORT_TOP_MAX, cnt + 3 * TOP_CAP, cp + 3 * TOP_CAP);
    rep.checks = cp + 3 * TOP_CAP;
    transfers.name = tt_text("transfers");
    transfers.count = x->transfers;
    transfers.bytes = x->transfer_bytes;
    rep.transfers = &transfers;
  }
  Tether__Response resp = TETHER__RESPONSE__INIT;
  resp.id = x->h.id;
  resp.body_case = TETHER__RESPONSE__BODY_REPORT;
  resp.report = &rep;
  rc = tt_link_send(c->link, TT_K_RESPONSE, &resp.base);
out:
  free(rows);
  free(rp);
  free(cnt);
  free(cp);
  return rc;
}

static void report_done(store_req_t *r) {
  report_req_t *x = (report_req_t *)r;
  broker_conn_t *c = broker_creq_conn(x);
  int rc = 0;
  if (!c) goto out;
  if (r->rc) {
    TT_ERROR(MOD, "store failed", "err=%s", tt_errname(r->rc));
    rc = broker_reply_error(c, x->h.id, TT_EIO, "the broker could not read its store");
  } else if (x->err == TT_ETOOBIG) {
    char msg[160];
    snprintf(msg, sizeof(msg), "the range holds more than %u tickets: ask for a shorter one (--since)",
             TT_REPORT_TICKETS_MAX);
    rc = broker_reply_error(c, x->h.id, TT_ETOOBIG, msg);
  } else if (!x->finished) {
    /* The next chunk: the connection is held again while the store has it. */
    x->h.c = c;
    rc = broker_creq_submit_free(x, req_free_any);
    if (rc == 0) return;
    x = NULL; /* refused and freed, the answer sent */
    goto out_conn;
  } else {
    TT_INFO(MOD, "report", "kind=%s by=%d scanned=%" PRIu64 " rows=%zu peer=%s",
            x->kind == TETHER__REPORT_KIND__REPORT_SLA ? "sla" : "activity", (int)x->by, x->scanned, x->nrows,
            c->addr);
    rc = send_report(c, x);
  }
out_conn:
  if (rc) tt_link_close(c->link, rc, "peer not reading");
out:
  if (x) req_free(x);
}

int broker_report_request(broker_conn_t *c, uint32_t id, const Tether__ReportRequest *q) {
  if (q->kind != TETHER__REPORT_KIND__REPORT_SLA && q->kind != TETHER__REPORT_KIND__REPORT_ACTIVITY)
    return broker_reply_error(c, id, TT_EINVAL, "unknown report: sla or activity");
  if (q->by > TETHER__REPORT_BY__REPORT_BY_DEPARTMENT)
    return broker_reply_error(c, id, TT_EINVAL, "unknown grouping: technician, priority, level, device or department");
  int64_t now = (int64_t)broker_unix_ms();
  int64_t until = q->until_ms ? (int64_t)(q->until_ms > (uint64_t)INT64_MAX ? INT64_MAX : q->until_ms) : now + 1;
  int64_t since = q->since_ms > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)q->since_ms;
  if (since >= until) return broker_reply_error(c, id, TT_EINVAL, "the range ends before it starts");
  if (until - since > TT_REPORT_RANGE_MAX_MS)
    return broker_reply_error(c, id, TT_EINVAL, "the range is longer than ten years");
  report_req_t *x = broker_creq_new(c, id, sizeof(*x), STORE_LANE_READ, report_run, report_done, "report");
  if (!x) return TT_ENOMEM;
  x->kind = q->kind;
  x->by = x->kind == TETHER__REPORT_KIND__REPORT_SLA ? q->by : TETHER__REPORT_BY__REPORT_BY_ALL;
  x->since_ms = since;
  x->until_ms = until;
  x->now_ms = now;
  x->exclude_waiting = c->b->cfg.sla_exclude_waiting;
  /* A day a point, or as many days as keep the axis within TT_REPORT_BUCKETS_MAX points. */
  int64_t days = (until - since + DAY_MS - 1) / DAY_MS;
  int64_t per = (days + TT_REPORT_BUCKETS_MAX - 1) / TT_REPORT_BUCKETS_MAX;
  x->bucket_ms = (per < 1 ? 1 : per) * DAY_MS;
  x->nbuckets = (size_t)((until - since + x->bucket_ms - 1) / x->bucket_ms);
  if (x->nbuckets > TT_REPORT_BUCKETS_MAX) x->nbuckets = TT_REPORT_BUCKETS_MAX;
  if (x->nbuckets == 0) x->nbuckets = 1;
  for (size_t i = 0; i < x->nbuckets; i++) tether__report_bucket__init(&x->buckets[i]);
  report_keys_init(&x->groups, TT_REPORT_KEYS_MAX);
  report_keys_init(&x->actions, TOP_CAP);
  report_keys_init(&x->devices, TT_REPORT_KEYS_MAX);
  report_keys_init(&x->people, TT_REPORT_KEYS_MAX);
  report_keys_init(&x->checks, TT_REPORT_KEYS_MAX);
  /* "(other)" first in each count table, so that a full table still has it. */
  report_keys_t *tables[] = {&x->actions, &x->devices, &x->people, &x->checks};
  for (size_t i = 0; i < 4; i++) (void)report_keys_add(tables[i], OTHER_KEY);
  char since_s[24], until_s[24];
  snprintf(since_s, sizeof(since_s), "%" PRId64, since);
  snprintf(until_s, sizeof(until_s), "%" PRId64, until);
  broker_audit(c->b, c->id.name, "report", x->kind == TETHER__REPORT_KIND__REPORT_SLA ? "sla" : "activity",
               "since_ms", since_s, "until_ms", until_s, AUDIT_END);
  return broker_creq_submit_free(x, req_free_any);
}
