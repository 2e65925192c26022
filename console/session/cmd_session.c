/* Sessions: a consented grant for one technician on one device under one ticket.
 * tether session open asks for one (the person at the device is asked), tether sessions
 * lists the live ones, tether session end stops one. shell and exec ask the same way. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include "console.h"
#include "tt/msg.h"

#define NAME_SHOWN (TT_NAME_MAX * 4 + 1)
#define TEXT_SHOWN (TT_TEXT_MAX * 4 + 1)
/* The broker gives the device TT_CONSENT_DEADLINE_MS to answer; the console waits a little
 * longer so that the broker's own answer (timeout) is what the user sees. */
#define SESSION_ANSWER_MS (TT_CONSENT_DEADLINE_MS + 5000u)

int console_session_request(console_t *c, const char *device, uint64_t ticket, uint32_t access,
                            uint64_t duration_ms) {
  Tether__SessionOpenRequest q = TETHER__SESSION_OPEN_REQUEST__INIT;
  q.device = tt_text(device);
  q.ticket = ticket;
  q.access = access;
  q.duration_ms = duration_ms;
  Tether__Request r = TETHER__REQUEST__INIT;
  r.body_case = TETHER__REQUEST__BODY_SESSION_OPEN;
  r.session_open = &q;
  int rc = console_request(c, &r, TETHER__RESPONSE__BODY_SESSION);
  if (rc) return rc;
  console_arm_timeout_ms(c, SESSION_ANSWER_MS);
  return 0;
}

static void shown(char *dst, size_t cap, ProtobufCBinaryData t) {
  console_text(dst, cap, t);
  if (!dst[0]) snprintf(dst, cap, "-");
}

/* Times are unix ms (0 = not yet), as for tickets. */
static void session_json(FILE *o, const Tether__Session *s) {
  char acc[32];
  tt_access_words(s->access, acc, sizeof(acc));
  fprintf(o, "{\"id\":\"S-%" PRIu64 "\",\"ticket\":\"T-%" PRIu64 "\",\"device\":", s->id, s->ticket);
  console_json_bytes(o, s->device);
  fputs(",\"person\":", o);
  console_json_bytes(o, s->person);
  fprintf(o, ",\"access\":\"%s\",\"started_ms\":%" PRIu64 ",\"expires_ms\":%" PRIu64 ",\"unattended\":%s",
          acc, s->started_ms, s->expires_ms, s->unattended ? "true" : "false");
  fputs(",\"consent_by\":", o);
  console_json_bytes(o, s->consent_by);
  fprintf(o, ",\"reused\":%s,\"channels\":%u,\"summary\":", s->reused ? "true" : "false", (unsigned)s->channels);
  console_json_bytes(o, s->summary);
  fprintf(o, ",\"ended_ms\":%" PRIu64 ",\"ended_by\":", s->ended_ms);
  console_json_bytes(o, s->ended_by);
  fputs(",\"end_reason\":", o);
  console_json_bytes(o, s->end_reason);
  fputc('}', o);
}

/* -- session open ----------------------------------------------------------------------- */

static struct {
  uint64_t ticket;
  uint32_t access;
} g_open;

static int open_check(console_t *c) {
  const char *d = c->cfg.audit_device;
  if (!d[0]) return console_usage_error("--device is required");
  if (!tt_text_valid(tt_text(d), TT_NAME_MAX))
    return console_usage_error("--device: not a device id (up to %u printable bytes)", TT_NAME_MAX);
  if (!c->cfg.ticket[0]) return console_usage_error("--ticket is required: the ticket the work is for");
  if (console_parse_id(c->cfg.ticket, 'T', false, &g_open.ticket))
    return console_usage_error("--ticket: '%s' is not a ticket (want T-3 or 3)", c->cfg.ticket);
  if (!c->cfg.want[0]) return console_usage_error("--want is required: shell, files, diag (comma-separated)");
  if (tt_access_parse(c->cfg.want, &g_open.access))
    return console_usage_error("--want: want shell, files or diag (comma-separated)");
  return 0;
}

static int open_start(console_t *c) {
  return console_session_request(c, c->cfg.audit_device, g_open.ticket, g_open.access, (uint64_t)c->cfg.for_ms);
}

static int open_response(console_t *c, const Tether__Response *r) {
  const Tether__Session *s = r->session;
  if (!s || !s->id) return TT_EPROTO;
  if (c->json) {
    session_json(stdout, s);
    fputc('\n', stdout);
  } else {
    char when[40], by[NAME_SHOWN + 16];
    console_iso(when, sizeof(when), s->expires_ms, false);
    if (s->unattended) snprintf(by, sizeof(by), "unattended");
    else {
      char who[NAME_SHOWN];
      shown(who, sizeof(who), s->consent_by);
      snprintf(by, sizeof(by), "by %s", who);
    }
    printf("%sS-%" PRIu64 " granted %s until %s\n", s->reused ? "reusing " : "", s->id, by, when);
  }
  fflush(stdout);
  console_finish(c, 0);
  return 0;
}

const console_cmd_t console_cmd_session_open = {
    .name = "session",
    .sub = "open",
    .args = "--device D --ticket T --want shell[,files,diag] [--for 30m] [--json]",
    .help = "ask the person at the device for access (or reuse a live grant)",
    .switches = CONSOLE_SW_JSON,
    .check = open_check,
    .start = open_start,
    .on_response = open_response,
    .denied_plain = true,
};

/* -- sessions --------------------------------------------------------------------------- */

static int list_start(console_t *c) {
  Tether__SessionListRequest q = TETHER__SESSION_LIST_REQUEST__INIT;
  q.all = c->all;
  Tether__Request r = TETHER__REQUEST__INIT;
  r.body_case = TETHER__REQUEST__BODY_SESSION_LIST;
  r.session_list = &q;
  return console_request(c, &r, TETHER__RESPONSE__BODY_SESSION_LIST);
}

static void session_row(const Tether__Session *s, uint64_t now) {
  char id[24], tk[24], dev[NAME_SHOWN], who[NAME_SHOWN], acc[32], left[32], by[NAME_SHOWN], sum[TEXT_SHOWN];
  snprintf(id, sizeof(id), "S-%" PRIu64, s->id);
  snprintf(tk, sizeof(tk), "T-%" PRIu64, s->ticket);
  shown(dev, sizeof(dev), s->device);
  shown(who, sizeof(who), s->person);
  tt_access_words(s->access, acc, sizeof(acc));
  if (!s->expires_ms) snprintf(left, sizeof(left), "asking");
  else if (s->expires_ms <= now) snprintf(left, sizeof(left), "expired");
  else console_duration(left, sizeof(left), s->expires_ms - now);
  if (s->unattended) snprintf(by, sizeof(by), "unattended");
  else shown(by, sizeof(by), s->consent_by);
  shown(sum, sizeof(sum), s->summary);
  printf("%-7s %-7s %-20s %-16s %-16s %-8s %-16s %-3u %s\n", id, tk, dev, who, acc, left, by, (unsigned)s->channels,
         sum);
}

static int list_response(console_t *c, const Tether__Response *r) {
  const Tether__SessionList *l = r->session_list;
  if (!l || l->n_sessions > TT_SESSION_LIST_MAX) return TT_EPROTO;
  if (c->json) {
    fputc('[', stdout);
    for (size_t i = 0; i < l->n_sessions; i++) {
      if (i) fputc(',', stdout);
      session_json(stdout, l->sessions[i]);
    }
    fputs("]\n", stdout);
  } else if (l->n_sessions == 0) {
    fprintf(stderr, "(no live sessions)\n");
  } else {
    uint64_t now = console_now_ms();
    printf("%-7s %-7s %-20s %-16s %-16s %-8s %-16s %-3s %s\n", "ID", "TICKET", "DEVICE", "PERSON", "ACCESS", "LEFT",
           "CONSENT", "CH", "SUMMARY");
    for (size_t i = 0; i < l->n_sessions; i++) session_row(l->sessions[i], now);
  }
  if (l->more)
    fprintf(stderr, "tether: more live sessions than the %zu listed (the broker lists at most %u)\n",
            l->n_sessions, TT_SESSION_LIST_MAX);
  fflush(stdout);
  console_finish(c, 0);
  return 0;
}

const console_cmd_t console_cmd_sessions = {
    .name = "sessions",
    .args = "[--all] [--json]",
    .help = "your live sessions (--all: everyone's, for admins)",
    .switches = CONSOLE_SW_JSON | CONSOLE_SW_ALL,
    .start = list_start,
    .on_response = list_response,
};

/* -- session end ------------------------------------------------------------------------ */

static uint64_t g_end_id;

static int end_check(console_t *c) {
  if (console_parse_id(c->arg[0], 'S', false, &g_end_id))
    return console_usage_error("'%s' is not a session (want S-5 or 5)", c->arg[0]);
  return 0;
}

static int end_start(console_t *c) {
  Tether__SessionEndRequest q = TETHER__SESSION_END_REQUEST__INIT;
  q.id = g_end_id;
  Tether__Request r = TETHER__REQUEST__INIT;
  r.body_case = TETHER__REQUEST__BODY_SESSION_END;
  r.session_end = &q;
  return console_request(c, &r, TETHER__RESPONSE__BODY_SESSION_END);
}

static int end_response(console_t *c, const Tether__Response *r) {
  (void)r;
  printf("S-%" PRIu64 " ended\n", g_end_id);
  fflush(stdout);
  console_finish(c, 0);
  return 0;
}

static void end_not_found(console_t *c) {
  console_fail(c, "no such live session: S-%" PRIu64, g_end_id);
}

const console_cmd_t console_cmd_session_end = {
    .name = "session",
    .sub = "end",
    .args = "S",
    .help = "end a session now (its shells close at once)",
    .min_pos = 1,
    .max_pos = 1,
    .check = end_check,
    .start = end_start,
    .on_response = end_response,
    .on_not_found = end_not_found,
};
