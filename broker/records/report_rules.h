/* What a ticket's timeline says for the help desk's reports, decided without the store
 * (report.c reads the tickets and their events and hands them here): first response, time to
 * resolve, reopens, time waiting on the employee, SLA met or breached; then the sums per
 * group, with nearest-rank medians and p90s. Pure, so unit tests walk every rule. */
#ifndef BROKER_REPORT_RULES_H
#define BROKER_REPORT_RULES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
  int64_t created_ms;
  int64_t first_response_due_ms;  /* 0: no first-response target */
  int64_t resolution_due_ms;      /* 0: no resolution target */
  const char *requester;          /* "" when none */
  bool open;                      /* the ticket's state now */
  int64_t updated_ms;             /* when a ticket without events was last changed */
} report_ticket_t;

typedef struct {
  int64_t ts_ms;
  const char *actor;
  const char *kind;               /* store_ticket_event_t.kind */
} report_event_t;

typedef enum {
  REPORT_SLA_NONE = 0,    /* no target */
  REPORT_SLA_MET = 1,
  REPORT_SLA_BREACHED = 2,
  REPORT_SLA_PENDING = 3, /* not yet answered (resolved), and still within the target */
} report_sla_t;

typedef struct {
  int64_t response_ms;     /* created to first response (less waiting, when excluded); -1: none */
  int64_t resolution_ms;   /* created to the last resolution (idem); -1: open now */
  int64_t waiting_ms;      /* waiting on the employee, up to the resolution (or now) */
  uint32_t reopens;
  report_sla_t response_sla, resolution_sla;
} report_facts_t;

/* The rules (README "Reports"):
 * - the first response is the first technician action on the timeline: a public comment, a
 *   session asked for or opened, a channel opened, a diagnostics report attached by anyone but
 *   the requester (their own snapshot is not an answer); a ticket resolved before any of
 *   these was answered by its resolution;
 * - the ticket is resolved at its last resolved or closed event, if no reopen follows it;
 * - it waits on the employee while a session request has no consent answer yet (given,
 *   refused, timed out, nobody there, withdrawn, failed), and from a question to the requester
 *   (a public comment with --wait: "waiting-on-requester") until their next comment; waiting
 *   ends with the resolution;
 * - with exclude_waiting, the waiting before the response (resolution) is taken off its time;
 * - an SLA is met when the time is within due - created, breached when over it (for one not
 *   yet reached: when the time so far, at now_ms, is over it), else pending. */
void report_ticket_facts(const report_ticket_t *t, const report_event_t *ev, size_t n, int64_t now_ms,
                         bool exclude_waiting, report_facts_t *out);
/* The same one event at a time (a storm's timeline may be long): begin, each event in order,
 * end. t must outlive the walk. */
typedef struct {
  const report_ticket_t *t;
  int64_t response, resolved, wait_total, wait_at_response, wait_at_resolved, last;
  uint32_t reopens, consents_pending;
  bool on_requester, open;
} report_walk_t;
void report_walk_begin(report_walk_t *w, const report_ticket_t *t);
void report_walk_event(report_walk_t *w, const report_event_t *e);
void report_walk_end(report_walk_t *w, int64_t now_ms, bool exclude_waiting, report_facts_t *out);

/* Durations of a set: nearest-rank percentiles (the smallest value with at least p% of the set
 * at or below it). v is sorted in place. */
typedef struct {
  uint32_t count;
  int64_t median_ms, p90_ms, mean_ms, max_ms;
} report_durations_t;
void report_durations(int64_t *v, size_t n, report_durations_t *out);

/* The backlog's age buckets: open tickets younger than 1 day, 1-3, 3-7, 7-30, 30 and more. */
#define REPORT_BACKLOG_BUCKETS 5
extern const int64_t report_backlog_edges_ms[REPORT_BACKLOG_BUCKETS];
size_t report_backlog_bucket(int64_t age_ms);

/* One group's sums. */
typedef struct {
  uint32_t tickets, open, resolved, reopened;
  report_durations_t response, resolution, waiting;
  uint32_t response_sla[4], resolution_sla[4]; /* by report_sla_t */
  uint32_t backlog[REPORT_BACKLOG_BUCKETS];
} report_row_t;

/* Sum n tickets' facts into row (backlog apart: the caller counts open tickets of any age).
 * scratch holds n values. */
void report_row_sum(report_row_t *row, const report_facts_t *const *f, size_t n, int64_t *scratch);

/* Keys to small numbers: a table of distinct strings, each with a count, at most `max` of them
 * (past it, report_keys_add says REPORT_KEY_FULL and the caller counts it as "other"). */
#define REPORT_KEY_FULL UINT32_MAX
typedef struct {
  char **names;
  uint64_t *count, *bytes;
  uint32_t n, max, cap;
  uint32_t *slots;     /* open addressing: index + 1, 0 = empty */
  uint32_t nslots;
} report_keys_t;
void report_keys_init(report_keys_t *k, uint32_t max);
void report_keys_free(report_keys_t *k);
/* The key's index (added if new); REPORT_KEY_FULL when the table is full or memory ran out. */
uint32_t report_keys_add(report_keys_t *k, const char *name);
/* Indexes of the keys with the largest counts (ties by name), at most cap, into out; returns
 * how many. */
size_t report_keys_top(const report_keys_t *k, uint32_t *out, size_t cap);

#endif
