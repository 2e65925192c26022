/* tether status [--json] (admins): the broker's version, uptime and load, and its SIEM feed:
 * connected or since when not, how many audit entries the collector is behind, the last failure. */
#include <inttypes.h>
#include <stdio.h>
#include "console.h"
#include "report.h"
#include "tt/msg.h"

static int status_start(console_t *c) {
  Tether__StatusRequest q = TETHER__STATUS_REQUEST__INIT;
  Tether__Request r = TETHER__REQUEST__INIT;
  r.body_case = TETHER__REQUEST__BODY_STATUS;
  r.status = &q;
  return console_request(c, &r, TETHER__RESPONSE__BODY_STATUS);
}

static int status_response(console_t *c, const Tether__Response *r) {
  const Tether__Status *s = r->status;
  const Tether__SiemStatus *m = s->siem;
  uint64_t behind = m && m->head > m->acked ? m->head - m->acked : 0;
  if (c->json) {
    printf("{\"version\":");
    console_json_bytes(stdout, s->version);
    printf(",\"started\":");
    console_json_time(stdout, s->started_ms);
    printf(",\"connections\":%" PRIu64 ",\"agents\":%" PRIu64 ",\"store_backlog\":%" PRIu64 ",\"siem\":",
           s->connections, s->agents, s->store_backlog);
    if (!m) {
      printf("null}\n");
    } else {
      printf("{\"target\":");
      console_json_bytes(stdout, m->target);
      printf(",\"format\":");
      console_json_bytes(stdout, m->format);
      printf(",\"up\":%s,\"acked\":%" PRIu64 ",\"head\":%" PRIu64 ",\"behind\":%" PRIu64 ",\"down_since\":",
             m->up ? "true" : "false", m->acked, m->head, behind);
      console_json_time(stdout, m->down_since_ms);
      printf(",\"connects\":%" PRIu64 ",\"sent\":%" PRIu64 ",\"error\":", m->connects, m->sent);
      console_json_bytes(stdout, m->error);
      printf("}}\n");
    }
  } else {
    char ver[64], up[32];
    console_text(ver, sizeof(ver), s->version);
    report_dur(up, sizeof(up), s->now_ms > s->started_ms ? s->now_ms - s->started_ms : 0);
    printf("broker %s, up %s: %" PRIu64 " connections, %" PRIu64 " devices online, %" PRIu64
           " store requests waiting\n", ver, up, s->connections, s->agents, s->store_backlog);
    if (!m) {
      printf("SIEM feed: off (siem.target)\n");
    } else {
      char target[340], err[200];
      console_text(target, sizeof(target), m->target);
      console_text(err, sizeof(err), m->error);
      if (m->up) {
        printf("SIEM feed: connected to %s, %" PRIu64 " entr%s behind\n", target, behind, behind == 1 ? "y" : "ies");
      } else {
        char since[40];
        console_iso(since, sizeof(since), m->down_since_ms, false);
        printf("SIEM feed: NOT CONNECTED to %s since %s, %" PRIu64 " entr%s waiting%s%s\n", target, since, behind,
               behind == 1 ? "y" : "ies", err[0] ? ": " : "", err);
      }
    }
  }
  fflush(stdout);
  console_finish(c, 0);
  return 0;
}

const console_cmd_t console_cmd_status = {
    .name = "status",
    .args = "[--json]",
    .help = "admin: the broker's version, uptime and load, and whether its SIEM feed is connected and how far behind",
    .switches = CONSOLE_SW_JSON,
    .start = status_start,
    .on_response = status_response,
};
