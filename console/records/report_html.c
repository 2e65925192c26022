/* The report as one HTML page for a manager's browser: inline CSS and SVG charts, no script,
 * no font or image from anywhere (a Content-Security-Policy says so), so it opens the same
 * from a mail attachment, a file share or an air-gapped laptop. Every name in it came from
 * the broker and is escaped; every bar carries its value in a <title> (shown on hover). */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include "console.h"
#include "report.h"

#define NAME_SHOWN (TT_NAME_MAX * 4 + 16)
#define W 760      /* chart width, px */
#define LEFT 190   /* room for labels of horizontal bars */
#define BAR 14     /* a horizontal bar's thickness */

static const char *const k_colors[] = {"#3566c8", "#2e9e6a", "#d2453b", "#e0a526"};
/* Met, breached, pending: green, red, amber. */
static const char *const k_sla_colors[] = {"#2e9e6a", "#d2453b", "#e0a526"};

static void esc(FILE *f, const char *s) {
  for (; *s; s++) {
    switch (*s) {
    case '&': fputs("&amp;", f); break;
    case '<': fputs("&lt;", f); break;
    case '>': fputs("&gt;", f); break;
    case '"': fputs("&quot;", f); break;
    case '\'': fputs("&#39;", f); break;
    default: fputc(*s, f);
    }
  }
}

static void name_of(char *dst, size_t cap, ProtobufCBinaryData t) {
  console_text(dst, cap, t);
  console_cut(dst, 40);
}

typedef enum { VAL_COUNT, VAL_DURATION } val_t;

static void value(char *dst, size_t cap, uint64_t v, val_t kind) {
  if (kind == VAL_DURATION) report_dur(dst, cap, v);
  else snprintf(dst, cap, "%" PRIu64, v);
}

static void legend(FILE *f, const char *const *names, const char *const *colors, size_t k) {
  fputs("<p class=\"legend\">", f);
  for (size_t s = 0; s < k; s++) {
    fprintf(f, "<span><i style=\"background:%s\"></i>", colors[s]);
    esc(f, names[s]);
    fputs("</span>", f);
  }
  fputs("</p>\n", f);
}

static void chart_open(FILE *f, const char *id, const char *title, int h) {
  fprintf(f, "<figure><svg class=\"chart\" id=\"%s\" role=\"img\" viewBox=\"0 0 %d %d\" width=\"%d\" height=\"%d\">"
             "<title>",
          id, W, h, W, h);
  esc(f, title);
  fputs("</title>\n", f);
}

/* Grouped horizontal bars: one group per label, k series. */
static void hbars(FILE *f, const char *id, const char *title, const char *const *labels, size_t n,
                  const uint64_t *const *v, const char *const *names, const char *const *colors, size_t k,
                  val_t kind) {
  uint64_t max = 1;
  for (size_t s = 0; s < k; s++)
    for (size_t i = 0; i < n; i++)
      if (v[s][i] > max) max = v[s][i];
  int group = (int)k * BAR + 10, h = (int)n * group + 10;
  if (n == 0) h = 40;
  chart_open(f, id, title, h);
  if (n == 0) fputs("<text x=\"10\" y=\"25\" class=\"empty\">no data in this range</text>\n", f);
  for (size_t i = 0; i < n; i++) {
    int y = 5 + (int)i * group;
    fprintf(f, "<text x=\"%d\" y=\"%d\" class=\"label\" text-anchor=\"end\">", LEFT - 8, y + (int)k * BAR / 2 + 4);
    esc(f, labels[i]);
    fputs("</text>\n", f);
    for (size_t s = 0; s < k; s++) {
      double wpx = (double)v[s][i] / (double)max * (W - LEFT - 90);
      char val[32];
      value(val, sizeof(val), v[s][i], kind);
      fprintf(f, "<rect class=\"bar s%zu\" x=\"%d\" y=\"%d\" width=\"%.1f\" height=\"%d\" fill=\"%s\"><title>", s, LEFT,
              y + (int)s * BAR, wpx, BAR - 2, colors[s]);
      esc(f, labels[i]);
      fputs(", ", f);
      esc(f, names[s]);
      fprintf(f, ": %s</title></rect><text x=\"%.1f\" y=\"%d\" class=\"val\">%s</text>\n", val, LEFT + wpx + 4,
              y + (int)s * BAR + BAR - 3, val);
    }
  }
  fputs("</svg>", f);
  legend(f, names, colors, k);
  fputs("</figure>\n", f);
}

/* Vertical bars over time: one slot per bucket, k series side by side. */
static void vbars(FILE *f, const char *id, const char *title, const Tether__Report *r, const uint64_t *const *v,
                  const char *const *names, size_t k) {
  size_t n = r->n_buckets < TT_REPORT_BUCKETS_MAX ? r->n_buckets : TT_REPORT_BUCKETS_MAX; /* the arrays hold that many */
  uint64_t max = 1;
  for (size_t s = 0; s < k; s++)
    for (size_t i = 0; i < n; i++)
      if (v[s][i] > max) max = v[s][i];
  const int h = 220, top = 10, base = 190, left = 40;
  chart_open(f, id, title, h);
  fprintf(f, "<line class=\"axis\" x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\"/>\n", left, base, W - 5, base);
  fprintf(f, "<text x=\"%d\" y=\"%d\" class=\"label\" text-anchor=\"end\">%" PRIu64 "</text>\n", left - 4, top + 8, max);
  fprintf(f, "<text x=\"%d\" y=\"%d\" class=\"label\" text-anchor=\"end\">0</text>\n", left - 4, base);
  double slot = n ? (double)(W - 5 - left) / (double)n : 1, bw = slot * 0.8 / (double)k;
  for (size_t i = 0; i < n; i++) {
    char day[40];
    console_iso(day, sizeof(day), r->buckets[i]->start_ms, false);
    day[10] = '\0';
    for (size_t s = 0; s < k; s++) {
      double hp = (double)v[s][i] / (double)max * (base - top);
      fprintf(f, "<rect class=\"bar s%zu\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\">"
                 "<title>%s, ",
              s, left + slot * (double)i + slot * 0.1 + bw * (double)s, base - hp, bw, hp, k_colors[s], day);
      esc(f, names[s]);
      fprintf(f, ": %" PRIu64 "</title></rect>\n", v[s][i]);
    }
    size_t every = n > 12 ? (n + 5) / 6 : 1;
    if (i % every == 0 && left + slot * (double)i < W - 75) /* a label that fits */
      fprintf(f, "<text x=\"%.1f\" y=\"%d\" class=\"label\">%s</text>\n", left + slot * (double)i, base + 16, day);
  }
  fputs("</svg>", f);
  legend(f, names, k_colors, k);
  fputs("</figure>\n", f);
}

static void head(FILE *f, const char *title) {
  fputs("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\n"
        "<meta name=\"viewport\" content=\"width=device-width\">\n<title>",
        f);
  esc(f, title);
  fputs("</title>\n<style>\n"
        "body{font:14px/1.4 system-ui,sans-serif;color:#1d2330;margin:2em auto;max-width:800px;padding:0 1em}\n"
        "h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.15em;margin-top:2em}\n"
        ".range{color:#566}.cards{display:flex;flex-wrap:wrap;gap:12px;margin:1.5em 0}\n"
        ".card{border:1px solid #d8dde6;border-radius:6px;padding:10px 14px;min-width:120px}\n"
        ".card b{display:block;font-size:1.5em}\n"
        "figure{margin:0}svg.chart{max-width:100%;height:auto}svg .label,svg .val{font-size:11px;fill:#445}\n"
        "svg .axis{stroke:#99a}svg .empty{fill:#889;font-style:italic}\n"
        ".legend span{margin-right:1.2em;font-size:12px}.legend i{display:inline-block;width:10px;height:10px;"
        "margin-right:4px;vertical-align:middle}\n"
        "table{border-collapse:collapse;width:100%;font-size:12px}th,td{padding:3px 6px;border-bottom:1px solid "
        "#e3e6ec;text-align:right}th:first-child,td:first-child{text-align:left}tr.total td{font-weight:bold}\n"
        "footer{margin-top:2em;color:#667;font-size:12px}\n"
        "</style></head><body>\n",
        f);
}

static void range(FILE *f, const Tether__Report *r, const char *what) {
  char since[40], until[40], gen[40];
  console_iso(since, sizeof(since), r->since_ms, false);
  console_iso(until, sizeof(until), r->until_ms, false);
  console_iso(gen, sizeof(gen), r->generated_ms, false);
  fprintf(f, "<p class=\"range\">%s %s to %s", what, since, until);
  if (r->by) fprintf(f, ", by %s", report_by_word(r->by));
  fprintf(f, ". Made %s from the broker's records.</p>\n", gen);
}

static void card(FILE *f, const char *big, const char *what) {
  fputs("<div class=\"card\"><b>", f);
  esc(f, big);
  fputs("</b>", f);
  esc(f, what);
  fputs("</div>\n", f);
}

static void pct(char *dst, size_t cap, uint32_t part, uint32_t whole) {
  if (!whole) snprintf(dst, cap, "-");
  else snprintf(dst, cap, "%u%%", (unsigned)((part * 100ull + whole / 2) / whole));
}

static void td_dur(FILE *f, const Tether__Durations *d, bool p90) {
  char v[32] = "-";
  if (d && d->count) report_dur(v, sizeof(v), p90 ? d->p90_ms : d->median_ms);
  fprintf(f, "<td>%s</td>", v);
}

static void sla_tr(FILE *f, const Tether__ReportRow *row, bool total) {
  char key[NAME_SHOWN], a[16], b[16];
  report_key(key, sizeof(key), row);
  fprintf(f, "<tr%s><td>", total ? " class=\"total\"" : "");
  esc(f, key);
  fprintf(f, "</td><td>%u</td><td>%u</td><td>%u</td><td>%u</td>", row->tickets, row->open, row->resolved,
          row->reopened);
  td_dur(f, row->first_response, false);
  td_dur(f, row->first_response, true);
  td_dur(f, row->resolution, false);
  td_dur(f, row->resolution, true);
  pct(a, sizeof(a), row->response_met, row->response_met + row->response_breached);
  pct(b, sizeof(b), row->resolution_met, row->resolution_met + row->resolution_breached);
  fprintf(f, "<td>%s</td><td>%s</td>", a, b);
  td_dur(f, row->waiting, false);
  fputs("</tr>\n", f);
}

static void sla_page(FILE *f, const Tether__Report *r) {
  head(f, "Tether SLA report");
  fputs("<h1>SLA report</h1>\n", f);
  range(f, r, "Tickets created");
  const Tether__ReportRow *t = r->total;
  Tether__ReportRow empty = TETHER__REPORT_ROW__INIT;
  if (!t) t = &empty;
  char big[32];
  fputs("<section class=\"cards\">\n", f);
  snprintf(big, sizeof(big), "%u", t->tickets);
  card(f, big, "tickets");
  big[0] = '-', big[1] = '\0';
  if (t->first_response && t->first_response->count) report_dur(big, sizeof(big), t->first_response->median_ms);
  card(f, big, "median first response");
  pct(big, sizeof(big), t->response_met, t->response_met + t->response_breached);
  card(f, big, "first responses in SLA");
  pct(big, sizeof(big), t->resolution_met, t->resolution_met + t->resolution_breached);
  card(f, big, "resolutions in SLA");
  uint32_t open = 0;
  for (size_t i = 0; i < t->n_backlog; i++) open += t->backlog[i];
  snprintf(big, sizeof(big), "%u", open);
  card(f, big, "open now");
  fputs("</section>\n", f);

  /* Over time. */
  uint64_t created[TT_REPORT_BUCKETS_MAX], resolved[TT_REPORT_BUCKETS_MAX], breached[TT_REPORT_BUCKETS_MAX];
  for (size_t i = 0; i < r->n_buckets && i < TT_REPORT_BUCKETS_MAX; i++) {
    created[i] = r->buckets[i]->created;
    resolved[i] = r->buckets[i]->resolved;
    breached[i] = r->buckets[i]->breached;
  }
  fputs("<h2>Tickets over time</h2>\n", f);
  const uint64_t *tv[] = {created, resolved, breached};
  const char *tn[] = {"created", "of them resolved", "of them breaching an SLA"};
  vbars(f, "timeline", "Tickets created, resolved and breaching, over time", r, tv, tn, 3);

  /* By group (or the one row). */
  size_t n = r->by ? r->n_rows : 1;
  const Tether__ReportRow *const *rows = r->by ? (const Tether__ReportRow *const *)r->rows : &t;
  if (n > TT_REPORT_ROWS_MAX) n = TT_REPORT_ROWS_MAX;
  static char names[TT_REPORT_ROWS_MAX][NAME_SHOWN];
  static const char *labels[TT_REPORT_ROWS_MAX];
  static uint64_t med[TT_REPORT_ROWS_MAX], p90[TT_REPORT_ROWS_MAX], met[TT_REPORT_ROWS_MAX],
      brc[TT_REPORT_ROWS_MAX], pend[TT_REPORT_ROWS_MAX], rmed[TT_REPORT_ROWS_MAX], rp90[TT_REPORT_ROWS_MAX];
  if (t->tickets == 0) n = 0;
  for (size_t i = 0; i < n; i++) {
    const Tether__ReportRow *row = rows[i];
    if (r->by) name_of(names[i], sizeof(names[i]), row->key);
    else snprintf(names[i], sizeof(names[i]), "all tickets");
    labels[i] = names[i];
    med[i] = row->first_response ? row->first_response->median_ms : 0;
    p90[i] = row->first_response ? row->first_response->p90_ms : 0;
    rmed[i] = row->resolution ? row->resolution->median_ms : 0;
    rp90[i] = row->resolution ? row->resolution->p90_ms : 0;
    met[i] = (uint64_t)row->response_met + row->resolution_met;
    brc[i] = (uint64_t)row->response_breached + row->resolution_breached;
    pend[i] = (uint64_t)row->response_pending + row->resolution_pending;
  }
  fputs("<h2>First response</h2>\n", f);
  const uint64_t *rv[] = {med, p90};
  const char *rn[] = {"median", "90th percentile"};
  hbars(f, "response", "Time to first response", labels, n, rv, rn, k_colors, 2, VAL_DURATION);
  fputs("<h2>Resolution</h2>\n", f);
  const uint64_t *sv[] = {rmed, rp90};
  hbars(f, "resolution", "Time to resolve", labels, n, sv, rn, k_colors, 2, VAL_DURATION);
  fputs("<h2>SLA targets met and breached</h2>\n", f);
  const uint64_t *mv[] = {met, brc, pend};
  const char *mn[] = {"met", "breached", "pending"};
  hbars(f, "sla", "SLA targets (first response and resolution) met, breached and pending", labels, n, mv, mn,
        k_sla_colors, 3, VAL_COUNT);

  fputs("<h2>Open tickets by age</h2>\n", f);
  static char blabels[8][32];
  const char *bl[8];
  uint64_t bv[8];
  size_t nb = t->n_backlog < 8 ? t->n_backlog : 8;
  for (size_t i = 0; i < nb && i < r->n_backlog_edges_ms; i++) {
    report_backlog_label(blabels[i], sizeof(blabels[i]), r, i);
    bl[i] = blabels[i];
    bv[i] = t->backlog[i];
  }
  const uint64_t *bvv[] = {bv};
  const char *bn[] = {"open tickets"};
  hbars(f, "backlog", "Open tickets now, by age", bl, nb < r->n_backlog_edges_ms ? nb : r->n_backlog_edges_ms, bvv, bn,
        k_colors, 1, VAL_COUNT);

  fputs("<h2>Table</h2>\n<table><thead><tr><th>", f);
  esc(f, r->by ? report_by_word(r->by) : "");
  fputs("</th><th>tickets</th><th>open</th><th>resolved</th><th>reopened</th><th>response</th><th>p90</th>"
        "<th>resolve</th><th>p90</th><th>resp. in SLA</th><th>res. in SLA</th><th>waiting</th></tr></thead><tbody>\n",
        f);
  for (size_t i = 0; r->by && i < r->n_rows; i++) sla_tr(f, r->rows[i], false);
  sla_tr(f, t, true);
  fputs("</tbody></table>\n", f);
  if (r->folded) fprintf(f, "<p>%u smaller groups are summed in the row “(other)”.</p>\n", r->folded);
  fprintf(f,
          "<footer>Times are from each ticket's creation. The first response is the first public comment, session or "
          "diagnostics report by a technician. Waiting is the time the employee was waited on (for consent, for a "
          "reply): %s. Medians and 90th percentiles are nearest-rank.</footer>\n</body></html>\n",
          r->waiting_excluded ? "it is taken off the SLA clock" : "it counts against the SLA");
}

static void counts_chart(FILE *f, const char *id, const char *title, Tether__ReportCount **v, size_t n) {
  static char names[TT_REPORT_TOP_MAX][NAME_SHOWN];
  const char *labels[TT_REPORT_TOP_MAX];
  uint64_t c[TT_REPORT_TOP_MAX];
  if (n > TT_REPORT_TOP_MAX) n = TT_REPORT_TOP_MAX;
  for (size_t i = 0; i < n; i++) {
    name_of(names[i], sizeof(names[i]), v[i]->name);
    labels[i] = names[i];
    c[i] = v[i]->count;
  }
  const uint64_t *cv[] = {c};
  const char *cn[] = {"count"};
  hbars(f, id, title, labels, n, cv, cn, k_colors, 1, VAL_COUNT);
}

static void activity_page(FILE *f, const Tether__Report *r) {
  head(f, "Tether activity report");
  fputs("<h1>Activity</h1>\n", f);
  range(f, r, "The audit log from");
  uint64_t s[TT_REPORT_BUCKETS_MAX], x[TT_REPORT_BUCKETS_MAX], m[TT_REPORT_BUCKETS_MAX], ts = 0, tx = 0;
  for (size_t i = 0; i < r->n_buckets && i < TT_REPORT_BUCKETS_MAX; i++) {
    s[i] = r->buckets[i]->sessions, x[i] = r->buckets[i]->refused, m[i] = r->buckets[i]->transfers;
    ts += s[i], tx += x[i];
  }
  char big[32];
  fputs("<section class=\"cards\">\n", f);
  snprintf(big, sizeof(big), "%" PRIu64, ts);
  card(f, big, "sessions opened");
  snprintf(big, sizeof(big), "%" PRIu64, tx);
  card(f, big, "consent refused or unanswered");
  snprintf(big, sizeof(big), "%" PRIu64, r->transfers ? r->transfers->count : 0);
  card(f, big, "files moved");
  snprintf(big, sizeof(big), "%.1f MB", r->transfers ? (double)r->transfers->bytes / 1e6 : 0.0);
  card(f, big, "moved");
  fputs("</section>\n<h2>Over time</h2>\n", f);
  const uint64_t *tv[] = {s, x, m};
  const char *tn[] = {"sessions opened", "consent refused or unanswered", "files moved"};
  vbars(f, "timeline", "Sessions, refusals and transfers over time", r, tv, tn, 3);
  fputs("<h2>Devices with the most sessions</h2>\n", f);
  counts_chart(f, "devices", "Sessions by device", r->devices, r->n_devices);
  fputs("<h2>Technicians with the most sessions</h2>\n", f);
  counts_chart(f, "technicians", "Sessions by technician", r->people, r->n_people);
  fputs("<h2>Checks that raised the most alerts</h2>\n", f);
  counts_chart(f, "checks", "Alerts raised by check", r->checks, r->n_checks);
  fputs("<h2>Audit entries by action</h2>\n<table><thead><tr><th>action</th><th>entries</th></tr></thead><tbody>\n",
        f);
  for (size_t i = 0; i < r->n_actions; i++) {
    char name[NAME_SHOWN];
    name_of(name, sizeof(name), r->actions[i]->name);
    fputs("<tr><td>", f);
    esc(f, name);
    fprintf(f, "</td><td>%" PRIu64 "</td></tr>\n", r->actions[i]->count);
  }
  fputs("</tbody></table>\n<footer>Counted from the broker's hash-chained audit log.</footer>\n</body></html>\n", f);
}

void report_html(FILE *f, const Tether__Report *r) {
  if (r->kind == TETHER__REPORT_KIND__REPORT_SLA) sla_page(f, r);
  else activity_page(f, r);
}
