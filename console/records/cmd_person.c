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

/* ---- tether person erase NAME --reason TEXT [--dry-run] [--json] ----------------------------- */

static int erase_check(console_t *c) {
  int rc = px_check(c);
  if (rc) return rc;
  if (!c->cfg.revoke_reason[0])
    return console_usage_error("--reason is required: why their data is erased (a request's reference)");
  if (!tt_text_valid(tt_text(c->cfg.revoke_reason), TT_TEXT_MAX))
    return console_usage_error("--reason must be one line of printable text, at most %u bytes", TT_TEXT_MAX);
  return 0;
}

static int erase_start(console_t *c) {
  Tether__PersonEraseRequest q = TETHER__PERSON_ERASE_REQUEST__INIT;
  q.name = tt_text(c->arg[0]);
  q.reason = tt_text(c->cfg.revoke_reason);
  q.dry_run = c->args.switches & CONSOLE_SW_DRY_RUN;
  Tether__Request r = TETHER__REQUEST__INIT;
  r.body_case = TETHER__REQUEST__BODY_PERSON_ERASE;
  r.person_erase = &q;
  return console_request(c, &r, TETHER__RESPONSE__BODY_PERSON_ERASE);
}

static int erase_response(console_t *c, const Tether__Response *r) {
  const Tether__PersonEraseResult *v = r->person_erase;
  if (c->json) {
    printf("{\"person\":");
    console_json_str(stdout, c->arg[0]);
    printf(",\"pseudonym\":");
    console_json_bytes(stdout, v->pseudonym);
    printf(",\"dry_run\":%s,\"erasure\":%" PRIu64 ",\"released\":%" PRIu64 ",\"counts\":{", v->dry_run ? "true" : "false",
           v->erasure, v->released);
    for (size_t i = 0; i < v->n_counts; i++) {
      if (i) putchar(',');
      console_json_bytes(stdout, v->counts[i]->kind);
      printf(":{\"erased\":%" PRIu64 ",\"held\":%" PRIu64 "}", v->counts[i]->erased, v->counts[i]->held);
    }
    printf("},\"held_tickets\":[");
    for (size_t i = 0; i < v->n_held_tickets; i++) printf("%s\"T-%" PRIu64 "\"", i ? "," : "", v->held_tickets[i]);
    printf("],\"files_deleted\":%u,\"files_failed\":%u,\"scrubbed\":%s}\n", v->files_deleted, v->files_failed,
           v->scrubbed ? "true" : "false");
  } else {
    if (v->dry_run)
      printf("a dry run: nothing was changed. Erasing %s would rewrite, release or delete:\n", c->arg[0]);
    else
      printf("erased %s: their values are now %.*s (audit entry %" PRIu64 ")\n", c->arg[0], (int)v->pseudonym.len,
             (const char *)v->pseudonym.data, v->erasure);
    printf("  %-12s %8s %8s\n", "RECORDS", v->dry_run ? "WOULD GO" : "ERASED", "HELD");
    for (size_t i = 0; i < v->n_counts; i++)
      printf("  %-12.*s %8" PRIu64 " %8" PRIu64 "\n", (int)(v->counts[i]->kind.len > 12 ? 12 : v->counts[i]->kind.len),
             (const char *)v->counts[i]->kind.data, v->counts[i]->erased, v->counts[i]->held);
    printf("  audit values released: %" PRIu64 "\n", v->released);
    if (v->n_held_tickets) {
      printf("on hold, so left as they are:");
      for (size_t i = 0; i < v->n_held_tickets; i++) printf(" T-%" PRIu64, v->held_tickets[i]);
      printf(" (release the hold and erase again)\n");
    }
    if (!v->dry_run) {
      printf("recording files deleted: %u\n", v->files_deleted);
      if (v->files_failed) printf("recording files that could not be deleted: %u (see the broker's log)\n", v->files_failed);
      if (!v->scrubbed) printf("a reader held the store's write-ahead log: old pages go at its next checkpoint\n");
    }
  }
  fflush(stdout);
  console_finish(c, 0);
  return 0;
}

const console_cmd_t console_cmd_person_erase = {
    .name = "person",
    .sub = "erase",
    .args = "NAME --reason TEXT [--dry-run] [--json]",
    .help = "admin: replace a person's name with a pseudonym everywhere, delete their recordings and diagnostics, "
            "release their audit values (verify stays intact); records under a hold are reported, not erased",
    .min_pos = 1,
    .max_pos = 1,
    .switches = CONSOLE_SW_JSON | CONSOLE_SW_DRY_RUN,
    .check = erase_check,
    .start = erase_start,
    .on_response = erase_response,
};
