/* tether audit follow [--from SEQ | --since WHEN] [--format jsonl|cef|rfc5424]        (admins)
 * The audit log as a live stream for any pipe: every entry once, in order, with its sequence
 * number and chain hash, in the same bytes as the broker's SIEM feed (tt/auditfmt.h). It reads
 * pages until it has caught up, then asks again every FOLLOW_POLL_MS; a follower that stops
 * resumes with --from the last sequence number it printed, plus one. */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <unistd.h>
#include <stdio.h>
#include <string.h>
#include "console.h"
#include "tt/auditfmt.h"
#include "tt/msg.h"

#define FOLLOW_POLL_MS 250u

static struct {
  uint64_t after_id, since_ms;
  tt_auditfmt_t fmt;
  char host[256];
  uv_timer_t poll;
  bool poll_init;
  console_t *c;
} g_f;

static int follow_check(console_t *c) {
  const char *f = c->cfg.asset_format[0] ? c->cfg.asset_format : "jsonl";
  if (tt_auditfmt_parse(f, &g_f.fmt)) return console_usage_error("--format: jsonl, cef or rfc5424");
  if (c->cfg.audit_from > 0 && c->cfg.audit_since[0]) return console_usage_error("--from or --since, not both");
  if (console_parse_since(c->cfg.audit_since, &g_f.since_ms))
    return console_usage_error("--since: want a UTC time like 2026-11-23T18:00:00Z, or a duration back from now "
                               "like 30m, 2h, 7d");
  g_f.after_id = c->cfg.audit_from > 0 ? (uint64_t)c->cfg.audit_from - 1 : 0;
  /* RFC 5424's HOSTNAME: the broker's host, as the console reaches it. */
  snprintf(g_f.host, sizeof(g_f.host), "%s", c->cfg.broker);
  char *colon = strrchr(g_f.host, ':');
  if (colon) *colon = '\0';
  return 0;
}

static int follow_page(console_t *c) {
  Tether__AuditListRequest q = TETHER__AUDIT_LIST_REQUEST__INIT;
  q.since_ms = g_f.since_ms;
  q.after_id = g_f.after_id;
  q.limit = CONSOLE_AUDIT_PAGE;
  Tether__Request r = TETHER__REQUEST__INIT;
  r.body_case = TETHER__REQUEST__BODY_AUDIT_LIST;
  r.audit_list = &q;
  return console_request(c, &r, TETHER__RESPONSE__BODY_AUDIT_LIST);
}

/* The reader of our output went away (`| head`): nothing to follow for. A pipe's write end
 * says so (POLLERR) before we write into it again, which may be long in a quiet log. */
static bool reader_gone(void) {
  struct pollfd p = {.fd = STDOUT_FILENO, .events = 0};
  return poll(&p, 1, 0) == 1 && (p.revents & (POLLERR | POLLHUP)) != 0;
}

static void poll_cb(uv_timer_t *t) {
  console_t *c = g_f.c;
  (void)t;
  if (c->done || !c->link || c->link->closing) return;
  if (reader_gone()) {
    console_finish(c, 0);
    return;
  }
  int rc = follow_page(c);
  if (rc) console_fail(c, "cannot ask the broker: %s", tt_strerror(rc));
}

static int follow_start(console_t *c) {
  g_f.c = c;
  if (uv_timer_init(c->loop, &g_f.poll) == 0) {
    g_f.poll_init = true;
    uv_unref((uv_handle_t *)&g_f.poll); /* the link keeps the console running, not the poll */
  }
  return follow_page(c);
}

/* Bytes from the broker as a C string (text fields hold no NUL; one would end the field). */
static const char *cstr(char *buf, size_t cap, ProtobufCBinaryData t) {
  size_t n = t.len < cap - 1 ? t.len : cap - 1;
  if (n) memcpy(buf, t.data, n);
  buf[n] = '\0';
  return buf;
}

static int follow_response(console_t *c, const Tether__Response *r) {
  const Tether__AuditList *l = r->audit_list;
  if (!l) return TT_EPROTO;
  static char line[TT_AUDITFMT_MAX];
  for (size_t i = 0; i < l->n_entries; i++) {
    const Tether__AuditEntry *e = l->entries[i];
    if (e->id <= g_f.after_id) {
      console_fail(c, "the broker sent audit entry %" PRIu64 " after entry %" PRIu64, e->id, g_f.after_id);
      return 0;
    }
    if (e->hash.len != 32 || e->prev_hash.len != 32) {
      console_fail(c, "the broker sent audit entry %" PRIu64 " without its chain hash", e->id);
      return 0;
    }
    char actor[TT_NAME_MAX * 2 + 2], action[TT_NAME_MAX * 2 + 2], target[TT_NAME_MAX * 2 + 2], detail[1024];
    tt_audit_view_t v = {.id = (int64_t)e->id,
                         .ts_ms = (int64_t)e->ts_ms,
                         .actor = cstr(actor, sizeof(actor), e->actor),
                         .action = cstr(action, sizeof(action), e->action),
                         .target = cstr(target, sizeof(target), e->target),
                         .detail = cstr(detail, sizeof(detail), e->detail),
                         .hash = e->hash.data,
                         .prev_hash = e->prev_hash.data,
                         .host = g_f.host,
                         .version = TT_VERSION};
    int n = tt_auditfmt_write(g_f.fmt, &v, line, sizeof(line));
    if (n < 0) {
      console_fail(c, "audit entry %" PRIu64 " does not fit a %u-byte message", e->id, TT_AUDITFMT_MAX);
      return 0;
    }
    line[n] = '\n';
    if (fwrite(line, 1, (size_t)n + 1, stdout) != (size_t)n + 1) break;
    g_f.after_id = e->id;
  }
  if (fflush(stdout) != 0 || ferror(stdout)) {
    /* The reader went away (`| head`): done, quietly. */
    console_finish(c, errno == EPIPE ? 0 : 1);
    return 0;
  }
  if (l->more) return follow_page(c);
  if (g_f.poll_init) uv_timer_start(&g_f.poll, poll_cb, FOLLOW_POLL_MS, 0);
  return 0;
}

const console_cmd_t console_cmd_audit_follow = {
    .name = "audit",
    .sub = "follow",
    .args = "[--from SEQ | --since WHEN] [--format jsonl|cef|rfc5424]",
    .help = "admin: the audit log as a live stream, every entry once and in order with its sequence number and "
            "chain hash (the SIEM feed's bytes); resume with --from the next sequence number",
    .check = follow_check,
    .start = follow_start,
    .on_response = follow_response,
};
