/* tether report sla [--since 30d] [--by technician|priority|level|device|department]
 *                   [--format table|csv|json|html]
 * tether report activity [--since 7d] [--format ...]                                  (admins)
 * The broker computes; this prints. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include "console.h"
#include "csv.h"
#include "report.h"
#include "tt/msg.h"

#define DAY_MS ((uint64_t)86400000)
#define KEY_SHOWN (TT_NAME_MAX * 4 + 16)
/* A report waits for the broker longer than a listing: a year of a large desk's tickets is
 * read a chunk at a time, between everyone else's reads. */
#define REPORT_WAIT_MIN_MS 300000u

typedef enum { FMT_TABLE, FMT_CSV, FMT_JSON, FMT_HTML } fmt_t;

static struct {
  Tether__ReportKind kind;
  Tether__ReportBy by;
  fmt_t fmt;
  uint64_t since_ms;
} g_rep;

static const struct {
  const char *word;
  Tether__ReportBy by;
} k_by[] = {
    {"technician", TETHER__REPORT_BY__REPORT_BY_TECHNICIAN}, {"priority", TETHER__REPORT_BY__REPORT_BY_PRIORITY},
    {"level", TETHER__REPORT_BY__REPORT_BY_LEVEL},           {"device", TETHER__REPORT_BY__REPORT_BY_DEVICE},
    {"department", TETHER__REPORT_BY__REPORT_BY_DEPARTMENT},
};

const char *report_by_word(Tether__ReportBy by) {
  for (size_t i = 0; i < sizeof k_by / sizeof k_by[0]; i++)
    if (k_by[i].by == by) return k_by[i].word;
  return "";
}

void report_dur(char *dst, size_t cap, uint64_t ms) {
  uint64_t s = ms / 1000u, m = s / 60, h = m / 60, d = h / 24;
  if (s < 60) snprintf(dst, cap, "%" PRIu64 "s", s);
  else if (m < 60) snprintf(dst, cap, "%" PRIu64 "m", m);
  else if (h < 24) snprintf(dst, cap, "%" PRIu64 "h%02" PRIu64 "m", h, m % 60);
  else snprintf(dst, cap, "%" PRIu64 "d%" PRIu64 "h", d, h % 24);
}

void report_backlog_label(char *dst, size_t cap, const Tether__Report *r, size_t i) {
  uint64_t lo = r->backlog_edges_ms[i] / DAY_MS;
  if (i + 1 >= r->n_backlog_edges_ms) snprintf(dst, cap, "%" PRIu64 "d+", lo);
  else if (i == 0) snprintf(dst, cap, "<%" PRIu64 "d", r->backlog_edges_ms[1] / DAY_MS);
  else snprintf(dst, cap, "%" PRIu64 "-%" PRIu64 "d", lo, r->backlog_edges_ms[i + 1] / DAY_MS);
}

void report_key(char *dst, size_t cap, const Tether__ReportRow *row) {
  if (!row->key.len) snprintf(dst, cap, "all");
  else console_text(dst, cap, row->key);
}

static int report_check(console_t *c) {
  const char *kind = c->cmd->sub;
  g_rep.kind = strcmp(kind, "sla") == 0 ? TETHER__REPORT_KIND__REPORT_SLA : TETHER__REPORT_KIND__REPORT_ACTIVITY;
  const char *since = c->cfg.audit_since[0] ? c->cfg.audit_since
                      : g_rep.kind == TETHER__REPORT_KIND__REPORT_SLA ? "30d" : "7d";
  if (console_parse_since(since, &g_rep.since_ms))
    return console_usage_error("--since: want a UTC time like 2026-11-01T00:00:00Z, or a duration back from "
                               "now like 30d, 12h");
  const char *f = c->cfg.asset_format[0] ? c->cfg.asset_format : c->json ? "json" : "table";
  if (!strcmp(f, "table")) g_rep.fmt = FMT_TABLE;
  else if (!strcmp(f, "csv")) g_rep.fmt = FMT_CSV;
  else if (!strcmp(f, "json")) g_rep.fmt = FMT_JSON;
  else if (!strcmp(f, "html")) g_rep.fmt = FMT_HTML;
  else return console_usage_error("--format: table, csv, json or html");
  g_rep.by = TETHER__REPORT_BY__REPORT_BY_ALL;
  if (c->cfg.report_by[0]) {
    if (g_rep.kind != TETHER__REPORT_KIND__REPORT_SLA) return console_usage_error("--by is for report sla");
    size_t i = 0;
    while (i < sizeof k_by / sizeof k_by[0] && strcmp(k_by[i].word, c->cfg.report_by) != 0) i++;
    if (i == sizeof k_by / sizeof k_by[0])
      return console_usage_error("--by: technician, priority, level, device or department");
    g_rep.by = k_by[i].by;
  }
  return 0;
}

static int report_start(console_t *c) {
  Tether__ReportRequest q = TETHER__REPORT_REQUEST__INIT;
  q.kind = g_rep.kind;
  q.since_ms = g_rep.since_ms;
  q.by = g_rep.by;
  Tether__Request r = TETHER__REQUEST__INIT;
  r.body_case = TETHER__REQUEST__BODY_REPORT;
  r.report = &q;
  int rc = console_request(c, &r, TETHER__RESPONSE__BODY_REPORT);
  if (rc == 0 && c->timeout_ms < REPORT_WAIT_MIN_MS) console_arm_timeout_ms(c, REPORT_WAIT_MIN_MS);
  return rc;
}

/* ---- table ------------------------------------------------------------------------------- */

static void range_line(const Tether__Report *r, const char *what) {
  char since[40], until[40];
  console_iso(since, sizeof(since), r->since_ms, false);
  console_iso(until, sizeof(until), r->until_ms, false);
  char span[32];
  report_dur(span, sizeof(span), r->until_ms - r->since_ms);
  printf("%s, %s to %s (%s)", what, since, until, span);
}

static void dur_cell(char *dst, size_t cap, const Tether__Durations *d, bool p90) {
  if (!d || !d->count) snprintf(dst, cap, "-");
  else report_dur(dst, cap, p90 ? d->p90_ms : d->median_ms);
}

static void pct(char *dst, size_t cap, uint32_t part, uint32_t whole) {
  if (!whole) snprintf(dst, cap, "-");
  else snprintf(dst, cap, "%u%%", (unsigned)((part * 100ull + whole / 2) / whole));
}

#define SLA_ROW "%-24s %7s %5s %8s %8s  %8s %8s  %8s %8s  %9s %9s  %8s\n"

static void sla_row(const Tether__ReportRow *row) {
  char key[KEY_SHOWN], t[16], o[16], res[16], reo[16], fm[24], fp[24], rm[24], rp[24], rs[24], ss[24], w[24];
  report_key(key, sizeof(key), row);
  console_cut(key, 24);
  snprintf(t, sizeof(t), "%u", row->tickets);
  snprintf(o, sizeof(o), "%u", row->open);
  snprintf(res, sizeof(res), "%u", row->resolved);
  pct(reo, sizeof(reo), row->reopened, row->resolved);
  dur_cell(fm, sizeof(fm), row->first_response, false);
  dur_cell(fp, sizeof(fp), row->first_response, true);
  dur_cell(rm, sizeof(rm), row->resolution, false);
  dur_cell(rp, sizeof(rp), row->resolution, true);
  pct(rs, sizeof(rs), row->response_met, row->response_met + row->response_breached);
  pct(ss, sizeof(ss), row->resolution_met, row->resolution_met + row->resolution_breached);
  dur_cell(w, sizeof(w), row->waiting, false);
  printf(SLA_ROW, key, t, o, res, reo, fm, fp, rm, rp, rs, ss, w);
}

static void sla_table(const Tether__Report *r) {
  range_line(r, "SLA report: tickets created");
  if (r->by) printf(", by %s", report_by_word(r->by));
  printf("\n\n");
  printf(SLA_ROW, r->by ? report_by_word(r->by) : "", "TICKETS", "OPEN", "RESOLVED", "REOPENED", "RESPONSE", "p90",
         "RESOLVE", "p90", "RESP. MET", "RES. MET", "WAITING");
  /* (a group with only older open tickets is in the backlog line, and in CSV and JSON) */
  for (size_t i = 0; r->by && i < r->n_rows; i++)
    if (r->rows[i]->tickets) sla_row(r->rows[i]);
  if (r->total && (r->total->tickets || !r->by)) sla_row(r->total);
  if (!r->total || !r->total->tickets) printf("(no tickets were created in this range)\n");
  if (r->folded) printf("(%u smaller groups are summed in the row \"(other)\")\n", r->folded);
  if (r->total && r->total->tickets) {
    const Tether__ReportRow *t = r->total;
    printf("\nFirst response: %u met, %u breached, %u pending; resolution: %u met, %u breached, %u pending.\n",
           t->response_met, t->response_breached, t->response_pending, t->resolution_met, t->resolution_breached,
           t->resolution_pending);
  }
  printf("Open now, by age:");
  const Tether__ReportRow *t = r->total;
  for (size_t i = 0; t && i < t->n_backlog && i < r->n_backlog_edges_ms; i++) {
    char label[32];
    report_backlog_label(label, sizeof(label), r, i);
    printf("  %s %u", label, t->backlog[i]);
  }
  printf("\nRESPONSE and RESOLVE are medians from creation; WAITING is the median time the employee was waited on\n"
         "(for consent, for a reply), %s.\n",
         r->waiting_excluded ? "taken off the SLA clock (sla.exclude_waiting)" : "counted against the SLA");
}

static void count_list(const char *title, Tether__ReportCount **v, size_t n, bool bytes) {
  printf("\n%s\n", title);
  if (!n) printf("  (none)\n");
  for (size_t i = 0; i < n; i++) {
    char name[KEY_SHOWN];
    console_text(name, sizeof(name), v[i]->name);
    console_cut(name, 40);
    if (bytes) printf("  %-40s %8" PRIu64 " %14" PRIu64 " bytes\n", name, v[i]->count, v[i]->bytes);
    else printf("  %-40s %8" PRIu64 "\n", name, v[i]->count);
  }
}

static void activity_table(const Tether__Report *r) {
  range_line(r, "Activity");
  uint64_t sessions = 0, refused = 0;
  for (size_t i = 0; i < r->n_buckets; i++) sessions += r->buckets[i]->sessions, refused += r->buckets[i]->refused;
  printf("\n\nSessions opened: %" PRIu64 "   consent refused or unanswered: %" PRIu64 "   files moved: %" PRIu64
         " (%" PRIu64 " bytes)\n",
         sessions, refused, r->transfers ? r->transfers->count : 0, r->transfers ? r->transfers->bytes : 0);
  count_list("Devices with the most sessions", r->devices, r->n_devices, false);
  count_list("Technicians with the most sessions", r->people, r->n_people, false);
  count_list("Checks that raised the most alerts", r->checks, r->n_checks, false);
  count_list("Audit entries by action", r->actions, r->n_actions, false);
}

/* ---- csv --------------------------------------------------------------------------------- */

static void csv_dur(const char *name, const Tether__Durations *d, bool header) {
  static const char *const parts[] = {"count", "median_ms", "p90_ms", "mean_ms", "max_ms"};
  for (size_t i = 0; i < 5; i++) {
    if (header) {
      printf(",%s_%s", name, parts[i]);
      continue;
    }
    uint64_t v[] = {d ? d->count : 0, d ? d->median_ms : 0, d ? d->p90_ms : 0, d ? d->mean_ms : 0, d ? d->max_ms : 0};
    printf(",%" PRIu64, v[i]);
  }
}

static void sla_csv_row(const Tether__Report *r, const Tether__ReportRow *row, const char *key) {
  console_csv_write_cell(stdout, key);
  printf(",%u,%u,%u,%u", row->tickets, row->open, row->resolved, row->reopened);
  csv_dur("", row->first_response, false);
  csv_dur("", row->resolution, false);
  csv_dur("", row->waiting, false);
  printf(",%u,%u,%u,%u,%u,%u", row->response_met, row->response_breached, row->response_pending, row->resolution_met,
         row->resolution_breached, row->resolution_pending);
  for (size_t i = 0; i < r->n_backlog_edges_ms; i++) printf(",%u", i < row->n_backlog ? row->backlog[i] : 0);
  printf("\n");
}

static void sla_csv(const Tether__Report *r) {
  printf("group,tickets,open,resolved,reopened");
  csv_dur("first_response", NULL, true);
  csv_dur("resolution", NULL, true);
  csv_dur("waiting", NULL, true);
  printf(",response_met,response_breached,response_pending,resolution_met,resolution_breached,resolution_pending");
  for (size_t i = 0; i < r->n_backlog_edges_ms; i++) printf(",backlog_from_%" PRIu64 "d", r->backlog_edges_ms[i] / DAY_MS);
  printf("\n");
  for (size_t i = 0; r->by && i < r->n_rows; i++) {
    char key[KEY_SHOWN];
    console_text(key, sizeof(key), r->rows[i]->key);
    sla_csv_row(r, r->rows[i], key);
  }
  if (r->total) sla_csv_row(r, r->total, "(all)");
}

static void activity_csv(const Tether__Report *r) {
  printf("list,name,count,bytes\n");
  struct {
    const char *list;
    Tether__ReportCount **v;
    size_t n;
  } lists[] = {{"device", r->devices, r->n_devices}, {"technician", r->people, r->n_people},
               {"check", r->checks, r->n_checks},    {"action", r->actions, r->n_actions}};
  if (r->transfers) printf("transfers,files,%" PRIu64 ",%" PRIu64 "\n", r->transfers->count, r->transfers->bytes);
  for (size_t l = 0; l < sizeof lists / sizeof lists[0]; l++)
    for (size_t i = 0; i < lists[l].n; i++) {
      char name[KEY_SHOWN];
      console_text(name, sizeof(name), lists[l].v[i]->name);
      printf("%s,", lists[l].list);
      console_csv_write_cell(stdout, name);
      printf(",%" PRIu64 ",%" PRIu64 "\n", lists[l].v[i]->count, lists[l].v[i]->bytes);
    }
}

/* ---- json -------------------------------------------------------------------------------- */

static void json_dur(const char *name, const Tether__Durations *d) {
  printf("\"%s\":{\"count\":%u,\"median_ms\":%" PRIu64 ",\"p90_ms\":%" PRIu64 ",\"mean_ms\":%" PRIu64
         ",\"max_ms\":%" PRIu64 "}",
         name, d ? d->count : 0, d ? d->median_ms : 0, d ? d->p90_ms : 0, d ? d->mean_ms : 0, d ? d->max_ms : 0);
}

static void json_row(const Tether__ReportRow *row) {
  printf("{\"group\":");
  console_json_bytes(stdout, row->key);
  printf(",\"tickets\":%u,\"open\":%u,\"resolved\":%u,\"reopened\":%u,", row->tickets, row->open, row->resolved,
         row->reopened);
  json_dur("first_response", row->first_response);
  putchar(',');
  json_dur("resolution", row->resolution);
  putchar(',');
  json_dur("waiting", row->waiting);
  printf(",\"response_sla\":{\"met\":%u,\"breached\":%u,\"pending\":%u}", row->response_met, row->response_breached,
         row->response_pending);
  printf(",\"resolution_sla\":{\"met\":%u,\"breached\":%u,\"pending\":%u}", row->resolution_met,
         row->resolution_breached, row->resolution_pending);
  printf(",\"backlog\":[");
  for (size_t i = 0; i < row->n_backlog; i++) printf("%s%u", i ? "," : "", row->backlog[i]);
  printf("]}");
}

static void json_counts(const char *name, Tether__ReportCount **v, size_t n) {
  printf(",\"%s\":[", name);
  for (size_t i = 0; i < n; i++) {
    printf("%s{\"name\":", i ? "," : "");
    console_json_bytes(stdout, v[i]->name);
    printf(",\"count\":%" PRIu64 ",\"bytes\":%" PRIu64 "}", v[i]->count, v[i]->bytes);
  }
  printf("]");
}

static void report_json(const Tether__Report *r) {
  bool sla = r->kind == TETHER__REPORT_KIND__REPORT_SLA;
  printf("{\"report\":\"%s\",\"since\":", sla ? "sla" : "activity");
  console_json_time(stdout, r->since_ms);
  printf(",\"until\":");
  console_json_time(stdout, r->until_ms);
  printf(",\"generated\":");
  console_json_time(stdout, r->generated_ms);
  printf(",\"bucket_ms\":%" PRIu64 ",\"buckets\":[", r->bucket_ms);
  for (size_t i = 0; i < r->n_buckets; i++) {
    const Tether__ReportBucket *b = r->buckets[i];
    printf("%s{\"start\":", i ? "," : "");
    console_json_time(stdout, b->start_ms);
    if (sla) printf(",\"created\":%u,\"resolved\":%u,\"breached\":%u}", b->created, b->resolved, b->breached);
    else printf(",\"sessions\":%u,\"refused\":%u,\"transfers\":%u}", b->sessions, b->refused, b->transfers);
  }
  printf("]");
  if (sla) {
    printf(",\"by\":\"%s\",\"waiting_excluded\":%s,\"folded\":%u,\"backlog_edges_ms\":[", report_by_word(r->by),
           r->waiting_excluded ? "true" : "false", r->folded);
    for (size_t i = 0; i < r->n_backlog_edges_ms; i++) printf("%s%" PRIu64, i ? "," : "", r->backlog_edges_ms[i]);
    printf("],\"rows\":[");
    for (size_t i = 0; r->by && i < r->n_rows; i++) {
      if (i) putchar(',');
      json_row(r->rows[i]);
    }
    printf("],\"total\":");
    if (r->total) json_row(r->total);
    else printf("null");
  } else {
    printf(",\"transfers\":{\"count\":%" PRIu64 ",\"bytes\":%" PRIu64 "}", r->transfers ? r->transfers->count : 0,
           r->transfers ? r->transfers->bytes : 0);
    json_counts("devices", r->devices, r->n_devices);
    json_counts("technicians", r->people, r->n_people);
    json_counts("checks", r->checks, r->n_checks);
    json_counts("actions", r->actions, r->n_actions);
  }
  printf(",\"scanned\":%" PRIu64 "}\n", r->scanned);
}

static int report_response(console_t *c, const Tether__Response *resp) {
  const Tether__Report *r = resp->report;
  if (r->until_ms < r->since_ms) {
    console_fail(c, "the broker sent a report whose range ends before it starts");
    return 0;
  }
  switch (g_rep.fmt) {
  case FMT_TABLE: r->kind == TETHER__REPORT_KIND__REPORT_SLA ? sla_table(r) : activity_table(r); break;
  case FMT_CSV: r->kind == TETHER__REPORT_KIND__REPORT_SLA ? sla_csv(r) : activity_csv(r); break;
  case FMT_JSON: report_json(r); break;
  case FMT_HTML: report_html(stdout, r); break;
  }
  if (fflush(stdout) != 0 || ferror(stdout)) {
    console_fail(c, "could not write the report");
    return 0;
  }
  console_finish(c, 0);
  return 0;
}

const console_cmd_t console_cmd_report_sla = {
    .name = "report",
    .sub = "sla",
    .args = "[--since 30d] [--by technician|priority|level|device|department] [--format table|csv|json|html]",
    .help = "admin: first response, resolution, SLA met and breached, waiting on the employee, backlog by age",
    .switches = CONSOLE_SW_JSON,
    .check = report_check,
    .start = report_start,
    .on_response = report_response,
};

const console_cmd_t console_cmd_report_activity = {
    .name = "report",
    .sub = "activity",
    .args = "[--since 7d] [--format table|csv|json|html]",
    .help = "admin: sessions, consent refused, files moved, the busiest devices, technicians and checks",
    .switches = CONSOLE_SW_JSON,
    .check = report_check,
    .start = report_start,
    .on_response = report_response,
};
