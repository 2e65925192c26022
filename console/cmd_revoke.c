/* tether revoke device ID | person NAME [--reason TEXT] [--json] (admin): the broker
 * refuses the certificate from now on and closes the live connections it holds. */
#include <stdio.h>
#include "console.h"
#include "tt/msg.h"

static int revoke_check(console_t *c) {
  const char *what = c->cmd == &console_cmd_revoke_device ? "device id" : "person name";
  if (!c->arg[0][0] || !tt_text_valid(tt_text(c->arg[0]), TT_NAME_MAX))
    return console_usage_error("not a %s (up to %u printable bytes)", what, TT_NAME_MAX);
  if (!tt_text_valid(tt_text(c->cfg.revoke_reason), TT_TEXT_MAX))
    return console_usage_error("--reason: only printable text (no control characters)");
  return 0;
}

static int revoke_start(console_t *c) {
  Tether__RevokeRequest q = TETHER__REVOKE_REQUEST__INIT;
  q.kind = c->cmd == &console_cmd_revoke_device ? TETHER__REVOKE_KIND__REVOKE_DEVICE
                                                : TETHER__REVOKE_KIND__REVOKE_PERSON;
  q.name = tt_text(c->arg[0]);
  q.reason = tt_text(c->cfg.revoke_reason);
  Tether__Request r = TETHER__REQUEST__INIT;
  r.body_case = TETHER__REQUEST__BODY_REVOKE;
  r.revoke = &q;
  return console_request(c, &r, TETHER__RESPONSE__BODY_REVOKE);
}

static int revoke_response(console_t *c, const Tether__Response *r) {
  if (!r->revoke) return TT_EPROTO;
  unsigned n = (unsigned)r->revoke->connections_closed;
  /* c->arg[0] was checked printable in revoke_check. */
  if (c->json) {
    printf("{\"revoked\":\"%s\",\"name\":", c->cmd->sub);
    console_json_str(stdout, c->arg[0]);
    printf(",\"connections_closed\":%u}\n", n);
  } else {
    printf("revoked %s %s (%u live connection%s closed)\n", c->cmd->sub, c->arg[0], n, n == 1 ? "" : "s");
  }
  fflush(stdout);
  console_finish(c, 0);
  return 0;
}

const console_cmd_t console_cmd_revoke_device = {
    .name = "revoke",
    .sub = "device",
    .args = "ID [--reason TEXT]",
    .help = "admin: refuse a device's certificate, end its connection",
    .min_pos = 1,
    .device_arg = true,
    .max_pos = 1,
    .switches = CONSOLE_SW_JSON,
    .check = revoke_check,
    .start = revoke_start,
    .on_response = revoke_response,
};

const console_cmd_t console_cmd_revoke_person = {
    .name = "revoke",
    .sub = "person",
    .args = "NAME [--reason TEXT]",
    .help = "admin: refuse a technician's or admin's certificate, end their connections",
    .min_pos = 1,
    .max_pos = 1,
    .switches = CONSOLE_SW_JSON,
    .check = revoke_check,
    .start = revoke_start,
    .on_response = revoke_response,
};
