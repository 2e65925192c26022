/* tether person export NAME > NAME.json (admins): everything the broker holds about one person
 * (a technician, an admin, or an employee by their local user name), as one JSON document:
 * who they are, then the tickets, ticket events, sessions, recordings, diagnostics reports and
 * audit entries that name them. Written as the pages come, so memory stays at one page. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include "console.h"
#include "tt/msg.h"

static const char *const k_sections[] = {"profile", "tickets", "events", "sessions", "recordings", "diagnostics",
                                         "audit"};
#define NSECTIONS (sizeof k_sections / sizeof k_sections[0])

static struct {
  uint32_t section;
  uint64_t after;
  uint64_t records;
  bool first_in_section;
} g_px;

static int px_check(console_t *c) {
  const char *n = c->arg[0];
  if (!n[0] || strlen(n) > TT_NAME_MAX || strchr(n, '"') || strchr(n, '\\') || !tt_text_valid(tt_text(n), TT_NAME_MAX))
    return console_usage_error("'%s' is not a person's name", n);
  return 0;
}

static int px_page(console_t *c) {
  Tether__PersonExportRequest q = TETHER__PERSON_EXPORT_REQUEST__INIT;
  q.name = tt_text(c->arg[0]);
  q.section = g_px.section;
  q.after = g_px.after;
  Tether__Request r = TETHER__REQUEST__INIT;
  r.body_case = TETHER__REQUEST__BODY_PERSON_EXPORT;
  r.person_export = &q;
  return console_request(c, &r, TETHER__RESPONSE__BODY_PERSON_EXPORT);
}

static int px_start(console_t *c) {
  char when[40];
  console_iso(when, sizeof when, console_now_ms(), false);
  printf("{\"person\":");
  console_json_str(stdout, c->arg[0]);
  printf(",\"exported\":\"%s\",\"broker\":", when);
  console_json_str(stdout, c->cfg.broker);
  printf(",\"%s\":[", k_sections[0]);
  g_px.first_in_section = true;
  return px_page(c);
}

static int px_response(console_t *c, const Tether__Response *r) {
  const Tether__PersonExportPage *p = r->person_export;
  if (p->section != g_px.section || (p->next < g_px.after && !p->done)) {
    console_fail(c, "the broker answered another part of the export than was asked");
    return 0;
  }
  for (size_t i = 0; i < p->n_records; i++) {
    if (!g_px.first_in_section) putchar(',');
    g_px.first_in_section = false;
    if (!console_json_object(stdout, p->records[i])) console_json_bytes(stdout, p->records[i]);
    g_px.records++;
  }
  if (!p->done) {
    if (p->next == g_px.after && p->n_records == 0 && g_px.section != 6) {
      console_fail(c, "the broker's export does not move on");
      return 0;
    }
    g_px.after = p->next;
    return px_page(c);
  }
  putchar(']');
  if (++g_px.section < NSECTIONS) {
    printf(",\"%s\":[", k_sections[g_px.section]);
    g_px.first_in_section = true;
    g_px.after = 0;
    return px_page(c);
  }
  printf("}\n");
  if (fflush(stdout) != 0 || ferror(stdout)) {
    console_fail(c, "could not write the export");
    return 0;
  }
  fprintf(stderr, "%" PRIu64 " records about %s\n", g_px.records, c->arg[0]);
  console_finish(c, 0);
  return 0;
}

const console_cmd_t console_cmd_person_export = {
    .name = "person",
    .sub = "export",
    .args = "NAME > NAME.json",
    .help = "admin: everything held about one person (a technician, an admin, or an employee's user name) as one "
            "JSON document: who they are, tickets, events, sessions, recordings, diagnostics, audit entries",
    .min_pos = 1,
    .max_pos = 1,
    .check = px_check,
    .start = px_start,
    .on_response = px_response,
};
