/* tether token new [--ttl 1h] [--uses 1] [--note TEXT] [--json] (admin): a one-time token
 * to enroll devices with. The token alone goes to stdout, so `$(tether token new)` works;
 * what it is good for goes to stderr. */
#include <stdio.h>
#include "console.h"
#include "tt/msg.h"

static int token_check(console_t *c) {
  if (!tt_text_valid(tt_text(c->cfg.token_note), TT_TEXT_MAX))
    return console_usage_error("--note: only printable text (no control characters)");
  return 0;
}

static int token_start(console_t *c) {
  Tether__TokenNewRequest q = TETHER__TOKEN_NEW_REQUEST__INIT;
  q.ttl_ms = (uint64_t)c->cfg.token_ttl_ms;
  q.uses = (uint32_t)c->cfg.token_uses;
  q.note = tt_text(c->cfg.token_note);
  Tether__Request r = TETHER__REQUEST__INIT;
  r.body_case = TETHER__REQUEST__BODY_TOKEN_NEW;
  r.token_new = &q;
  return console_request(c, &r, TETHER__RESPONSE__BODY_TOKEN_NEW);
}

static int token_response(console_t *c, const Tether__Response *r) {
  const Tether__TokenNewResponse *t = r->token_new;
  char token[TT_TEXT_MAX + 1], when[40];
  /* A token that is not plain text would be garbled by whoever pastes it: refuse it. */
  if (!t || tt_text_copy(token, sizeof(token), t->token) || !token[0]) {
    console_fail(c, "the broker sent no usable token");
    return 0;
  }
  console_iso(when, sizeof(when), t->expires_ms, false);
  if (c->json) {
    printf("{\"token\":");
    console_json_str(stdout, token);
    printf(",\"expires\":");
    console_json_time(stdout, t->expires_ms);
    printf(",\"uses\":%u}\n", (unsigned)t->uses);
  } else {
    printf("%s\n", token);
    fflush(stdout);
    fprintf(stderr, "expires %s, %u use%s\n", t->expires_ms ? when : "never", (unsigned)t->uses,
            t->uses == 1 ? "" : "s");
  }
  fflush(stdout);
  console_finish(c, 0);
  return 0;
}

const console_cmd_t console_cmd_token_new = {
    .name = "token",
    .sub = "new",
    .args = "[--ttl 1h] [--uses 1] [--note TEXT] [--json]",
    .help = "admin: a one-time token for `tether-agent enroll` (printed alone on stdout)",
    .min_pos = 0,
    .max_pos = 0,
    .switches = CONSOLE_SW_JSON,
    .check = token_check,
    .start = token_start,
    .on_response = token_response,
};
