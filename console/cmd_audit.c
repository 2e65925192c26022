/* tether audit [--since WHEN] [--device ID] [--limit N] [--json] (admin): the broker's
 * hash-chained audit log, as a table or as JSON lines (the export format).
 * tether audit verify (admin): the broker re-checks the chain. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include "console.h"
#include "tt/conf.h"
#include "tt/msg.h"

/* The log has no upper size, so entries are printed page by page as they come rather than
 * collected: memory stays at one page. Every line is whole; a failure later stops with
 * exit 1 and its one line on stderr, so an export that did not finish is never mistaken
 * for one that did. */
typedef struct {
  uint64_t since_ms;
  uint64_t after_id;
  uint64_t printed;
  bool header;
} audit_state_t;

static audit_state_t g_audit;

static int audit_check(console_t *c) {
  if (console_parse_since(c->cfg.audit_since, &g_audit.since_ms))
    return console_usage_error("--since: want a UTC time like 2026-11-23T18:00:00Z, or a duration "
                               "back from now like 30m, 2h, 7d");
  if (!tt_text_valid(tt_text(c->cfg.audit_device), TT_NAME_MAX))
    return console_usage_error("--device: not a device id");
  return 0;
}

static int audit_page(console_t *c) {
  Tether__AuditListRequest q = TETHER__AUDIT_LIST_REQUEST__INIT;
  uint64_t want = CONSOLE_AUDIT_PAGE;
  if (c->cfg.audit_limit > 0 && (uint64_t)c->cfg.audit_limit - g_audit.printed < want)
    want = (uint64_t)c->cfg.audit_limit - g_audit.printed;
  q.since_ms = g_audit.since_ms;
  q.device = tt_text(c->cfg.audit_device);
  q.limit = (uint32_t)want;
  q.after_id = g_audit.after_id;
  Tether__Request r = TETHER__REQUEST__INIT;
  r.body_case = TETHER__REQUEST__BODY_AUDIT_LIST;
  r.audit_list = &q;
  return console_request(c, &r, TETHER__RESPONSE__BODY_AUDIT_LIST);
}

static int audit_start(console_t *c) {
  c->state = &g_audit;
  return audit_page(c);
}

/* A pruned entry an erasure still accounts for: the values it released, for the offline walk. */
static void pruned_json(const Tether__AuditEntry *e) {
  printf("{\"id\":%" PRIu64 ",\"pruned\":true,\"values\":[", e->id);
  for (size_t i = 0; i < e->n_values; i++) {
    printf("%s{\"n\":%u,\"digest\":", i ? "," : "", e->values[i]->n);
    console_json_hex(stdout, e->values[i]->digest);
    fputs(",\"digest2\":", stdout);
    console_json_hex(stdout, e->values[i]->digest2);
    printf(",\"erased\":%" PRIu64 "}", e->values[i]->erased);
  }
  fputs("]}\n", stdout);
}

static void entry_json(const Tether__AuditEntry *e) {
  if (e->pruned) {
    pruned_json(e);
    return;
  }
  char when[40];
  console_iso(when, sizeof(when), e->ts_ms, true);
  printf("{\"id\":%" PRIu64 ",\"ts\":\"%s\",\"actor\":", e->id, when);
  console_json_bytes(stdout, e->actor);
  fputs(",\"action\":", stdout);
  console_json_bytes(stdout, e->action);
  fputs(",\"target\":", stdout);
  console_json_bytes(stdout, e->target);
  fputs(",\"detail\":", stdout);
  if (!console_json_object(stdout, e->detail)) console_json_bytes(stdout, e->detail);
  /* What the hash covers, exactly: the time in ms and the detail as stored, so that an
   * export can be verified offline (tether-certs audit-verify). */
  printf(",\"ts_ms\":%" PRIu64 ",\"detail_text\":", e->ts_ms);
  console_json_bytes(stdout, e->detail);
  fputs(",\"hash\":", stdout);
  console_json_hex(stdout, e->hash);
  fputs(",\"prev_hash\":", stdout);
  console_json_hex(stdout, e->prev_hash);
  /* Format 2: each value's salt (empty once erased) and digest, which the hash covers. */
  printf(",\"format\":%u", e->format ? e->format : 1);
  if (e->format == 2) {
    fputs(",\"values\":[", stdout);
    for (size_t i = 0; i < e->n_values; i++) {
      fputs(i ? ",{\"salt\":" : "{\"salt\":", stdout);
      console_json_hex(stdout, e->values[i]->salt);
      fputs(",\"digest\":", stdout);
      console_json_hex(stdout, e->values[i]->digest);
      printf(",\"erased\":%" PRIu64, e->values[i]->erased);
      if (e->values[i]->digest2.len) { /* released: the new text's digest */
        fputs(",\"digest2\":", stdout);
        console_json_hex(stdout, e->values[i]->digest2);
      }
      fputc('}', stdout);
    }
    fputs("]", stdout);
  }
  fputs("}\n", stdout);
}

#define AUDIT_ROW "%-8s %-20s %-20s %-20s %-24s "

static void entry_row(const Tether__AuditEntry *e) {
  char id[24], when[40], actor[TT_TEXT_MAX + 1], action[TT_TEXT_MAX + 1], target[TT_TEXT_MAX + 1];
  snprintf(id, sizeof(id), "%" PRIu64, e->id);
  console_iso(when, sizeof(when), e->ts_ms, false);
  console_text(actor, sizeof(actor), e->actor);
  console_text(action, sizeof(action), e->action);
  console_text(target, sizeof(target), e->target);
  printf(AUDIT_ROW, id, when, actor[0] ? actor : "-", action[0] ? action : "-", target[0] ? target : "-");
  /* The detail as compact one-line JSON; something else is shown quoted and escaped. */
  if (!e->detail.len) fputc('-', stdout);
  else if (!console_json_object(stdout, e->detail)) console_json_bytes(stdout, e->detail);
  fputc('\n', stdout);
}

static int audit_response(console_t *c, const Tether__Response *r) {
  const Tether__AuditList *l = r->audit_list;
  if (!l) return TT_EPROTO;
  if (!c->json && !g_audit.header) {
    printf(AUDIT_ROW "%s\n", "ID", "TIME (UTC)", "ACTOR", "ACTION", "TARGET", "DETAIL");
    g_audit.header = true;
  }
  uint64_t limit = c->cfg.audit_limit > 0 ? (uint64_t)c->cfg.audit_limit : UINT64_MAX;
  for (size_t i = 0; i < l->n_entries && g_audit.printed < limit; i++) {
    const Tether__AuditEntry *e = l->entries[i];
    /* Ids only grow; an answer that goes back would page forever. */
    if (e->id <= g_audit.after_id) {
      fflush(stdout);
      console_fail(c, "the broker sent audit entry %" PRIu64 " after entry %" PRIu64, e->id,
                   g_audit.after_id);
      return 0;
    }
    g_audit.after_id = e->id;
    if (!c->json && e->pruned) continue; /* nothing to read: only the export carries it */
    if (c->json) entry_json(e);
    else entry_row(e);
    g_audit.printed++;
  }
  fflush(stdout);
  if (l->more && g_audit.printed < limit) {
    if (l->n_entries == 0) { /* would ask for the same page forever */
      console_fail(c, "the broker said more audit entries follow, but sent none");
      return 0;
    }
    return audit_page(c);
  }
  if (!c->json && g_audit.printed == 0) fprintf(stderr, "(no audit entries)\n");
  console_finish(c, 0);
  return 0;
}

const console_cmd_t console_cmd_audit = {
    .name = "audit",
    .args = "[--since WHEN] [--device ID] [--limit N] [--json]",
    .help = "admin: the audit log, oldest first (--json: JSON lines, for export)",
    .min_pos = 0,
    .max_pos = 0,
    .switches = CONSOLE_SW_JSON,
    .check = audit_check,
    .start = audit_start,
    .on_response = audit_response,
};

/* -- audit verify ------------------------------------------------------------------------ */

static int verify_start(console_t *c) {
  Tether__AuditVerifyRequest q = TETHER__AUDIT_VERIFY_REQUEST__INIT;
  Tether__Request r = TETHER__REQUEST__INIT;
  r.body_case = TETHER__REQUEST__BODY_AUDIT_VERIFY;
  r.audit_verify = &q;
  return console_request(c, &r, TETHER__RESPONSE__BODY_AUDIT_VERIFY);
}

static int verify_response(console_t *c, const Tether__Response *r) {
  const Tether__AuditVerifyResponse *v = r->audit_verify;
  if (!v) return TT_EPROTO;
  bool intact = !v->first_bad && !v->n_problems;
  if (c->json) {
    printf("{\"intact\":%s,\"count\":%" PRIu64 ",\"checkpoints\":%u,\"first_bad\":", intact ? "true" : "false",
           v->count, v->checkpoints);
    if (v->first_bad) printf("%" PRIu64, v->first_bad);
    else printf("null");
    fputs(",\"problems\":[", stdout);
    for (size_t i = 0; i < v->n_problems; i++) {
      if (i) fputc(',', stdout);
      console_json_bytes(stdout, v->problems[i]);
    }
    printf("],\"more_problems\":%u,\"pruned\":%" PRIu64 "}\n", v->more_problems, v->pruned);
  } else {
    if (intact)
      printf("audit chain intact: %" PRIu64 " entr%s, %u signed checkpoint%s\n", v->count, v->count == 1 ? "y" : "ies",
             v->checkpoints, v->checkpoints == 1 ? "" : "s");
    else if (v->first_bad)
      printf("audit chain BROKEN at entry %" PRIu64 " (%" PRIu64 " entr%s checked, %u signed checkpoint%s)\n",
             v->first_bad, v->count, v->count == 1 ? "y" : "ies", v->checkpoints, v->checkpoints == 1 ? "" : "s");
    else
      printf("audit chain intact (%" PRIu64 " entr%s), but its checkpoints are not:\n", v->count,
             v->count == 1 ? "y" : "ies");
    for (size_t i = 0; i < v->n_problems; i++) {
      char line[TT_TEXT_MAX + 1];
      console_text(line, sizeof(line), v->problems[i]);
      printf("  - %s\n", line);
    }
    if (v->more_problems) printf("  ... and %u more\n", v->more_problems);
    if (v->pruned) printf("entries 1 to %" PRIu64 " were pruned by retention (a signed cut line says so)\n", v->pruned);
  }
  fflush(stdout);
  console_finish(c, intact ? 0 : 1);
  return 0;
}

const console_cmd_t console_cmd_audit_verify = {
    .name = "audit",
    .sub = "verify",
    .args = "[--json]",
    .help = "admin: check the audit log's hash chain (exit 1 if broken)",
    .min_pos = 0,
    .max_pos = 0,
    .switches = CONSOLE_SW_JSON,
    .start = verify_start,
    .on_response = verify_response,
};
