/* tether diag show D-7 [--json]: a diagnostics report kept on a ticket (diag --attach), as
 * the device sent it, shown like a live one (inv/report.c). */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>
#include "console.h"
#include "inv/report.h"
#include "tt/msg.h"

typedef struct {
  uint64_t id;
  tt_buf_t z;
  uint64_t size;
} show_state_t;

static show_state_t g_ss;

static int check(console_t *c) {
  if (console_parse_id(c->arg[0], 'D', false, &g_ss.id))
    return console_usage_error("'%s' is not a diagnostics report (want D-7 or 7)", c->arg[0]);
  return 0;
}

static int get(console_t *c, uint64_t offset) {
  Tether__DiagGetRequest g = TETHER__DIAG_GET_REQUEST__INIT;
  g.id = g_ss.id;
  g.offset = offset;
  Tether__Request q = TETHER__REQUEST__INIT;
  q.body_case = TETHER__REQUEST__BODY_DIAG_GET;
  q.diag_get = &g;
  return console_request(c, &q, TETHER__RESPONSE__BODY_DIAG_REPORT);
}

static int start(console_t *c) { return get(c, 0); }

static int response(console_t *c, const Tether__Response *r) {
  const Tether__DiagReportPart *p = r->diag_report;
  if (!p || p->offset != g_ss.z.len || p->total == 0 || p->total > ZSTD_compressBound(TT_DIAG_REPORT_MAX) ||
      p->size == 0 || p->size > TT_DIAG_REPORT_MAX || (g_ss.z.len && g_ss.z.max != p->total) ||
      p->zdata.len > p->total - p->offset)
    return TT_EPROTO;
  if (g_ss.z.len == 0) {
    tt_buf_init(&g_ss.z, (size_t)p->total);
    g_ss.size = p->size;
  }
  if (tt_buf_append(&g_ss.z, p->zdata.data, p->zdata.len)) return TT_ENOMEM;
  if (g_ss.z.len < p->total) return get(c, g_ss.z.len);
  char *body = malloc((size_t)g_ss.size);
  if (!body) return TT_ENOMEM;
  size_t got = ZSTD_decompress(body, (size_t)g_ss.size, tt_buf_head(&g_ss.z), g_ss.z.len);
  tt_buf_free(&g_ss.z);
  char err[256] = "the report does not decompress";
  json_t *doc = ZSTD_isError(got) || got != g_ss.size ? NULL : console_report_parse(body, got, err, sizeof(err));
  free(body);
  if (!doc) {
    console_fail(c, "D-%" PRIu64 ": %s", g_ss.id, err);
    return 0;
  }
  int rc = 0;
  if (c->json) rc = console_report_json(stdout, doc);
  else {
    char who[TT_NAME_MAX * 4 + 1], when[40], sha[80];
    console_text(who, sizeof(who), p->person);
    console_text(sha, sizeof(sha), p->sha256);
    console_iso(when, sizeof(when), p->taken_ms, false);
    printf("D-%" PRIu64 ": kept on T-%" PRIu64 " by %s at %s (S-%" PRIu64 ", %" PRIu64 " bytes, sha256 %s)\n\n", p->id,
           p->ticket, who, when, p->session, p->size, sha);
    console_report_print(stdout, doc);
  }
  json_decref(doc);
  fflush(stdout);
  if (!rc) console_finish(c, 0);
  return rc;
}

const console_cmd_t console_cmd_diag_show = {
    .name = "diag",
    .sub = "show",
    .args = "D-N [--json]",
    .help = "a diagnostics report kept on a ticket (diag --attach)",
    .min_pos = 1,
    .max_pos = 1,
    .switches = CONSOLE_SW_JSON,
    .check = check,
    .start = start,
    .on_response = response,
};
