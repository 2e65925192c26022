/* Requests to the broker: one outstanding at a time, each answered by a Response with the
 * same id. Turns a refused request into the console's one-line error, so commands only
 * ever see the answer they asked for. */
#include <stdio.h>
#include <string.h>
#include "console.h"
#include "tt/msg.h"

int console_request(console_t *c, Tether__Request *r, Tether__Response__BodyCase expect) {
  if (!c->link) return TT_ECLOSED;
  r->id = ++c->last_id;
  if (r->id == 0) r->id = ++c->last_id; /* 0 means "none pending" */
  int rc = tt_link_send(c->link, TT_K_REQUEST, &r->base);
  if (rc) return rc;
  c->pending = r->id;
  c->expect = expect;
  console_arm_timeout(c);
  return 0;
}

static void fail_error(console_t *c, const Tether__Error *e) {
  char msg[TT_TEXT_MAX * 4 + 1];
  console_text(msg, sizeof(msg), e->message);
  if (!msg[0]) snprintf(msg, sizeof(msg), "%s", tt_strerror(tt_err_from_wire(e->code)));
  switch (e->code) {
  case TETHER__ERROR_CODE__ERR_DENIED:
    if (c->cmd->denied_plain) {
      console_fail(c, "%s", msg);
      break;
    }
    console_fail(c, "permission denied: %s", msg);
    break;
  case TETHER__ERROR_CODE__ERR_ROLE:
    console_fail(c, "permission denied: %s", msg);
    break;
  case TETHER__ERROR_CODE__ERR_NOT_FOUND:
    if (c->cmd->on_not_found) {
      c->cmd->on_not_found(c);
      if (!c->done) console_finish(c, 1);
      break;
    }
    console_fail(c, "%s", msg);
    break;
  default:
    console_fail(c, "%s", msg);
    break;
  }
}

int console_begin(console_t *c) {
  if (!c->device_to || !c->device_to[0]) return c->cmd->start(c);
  Tether__DeviceShowRequest q = TETHER__DEVICE_SHOW_REQUEST__INIT;
  q.device_id = tt_text(c->device_to);
  q.resolve = true;
  Tether__Request r = TETHER__REQUEST__INIT;
  r.body_case = TETHER__REQUEST__BODY_DEVICE_SHOW;
  r.device_show = &q;
  c->resolving = true;
  return console_request(c, &r, TETHER__RESPONSE__BODY_DEVICE);
}

void console_waiting_line(const console_t *c, const char *device, const char *access, uint64_t ticket, const char *eol) {
  char limit[32] = "";
  if (c->device_consent_ms && c->device_to && strcmp(c->device_to, device) == 0)
    snprintf(limit, sizeof(limit), " (%u s)", (unsigned)((c->device_consent_ms + 999) / 1000));
  fprintf(stderr, "tether: waiting for the person at %s to allow %s access under T-%llu%s...%s",
          console_device_shown(c, device), access, (unsigned long long)ticket, limit, eol);
}

const char *console_device_shown(const console_t *c, const char *device) {
  return c->device_host[0] && c->device_to && strcmp(c->device_to, device) == 0 ? c->device_host : device;
}

static void resolved(console_t *c, const Tether__Response *r) {
  c->resolving = false;
  if (r->error && r->error->code != TETHER__ERROR_CODE__ERR_NOT_FOUND) {
    fail_error(c, r->error);
    return;
  }
  if (!r->error) {
    if (r->body_case != TETHER__RESPONSE__BODY_DEVICE || !r->device ||
        tt_text_copy(c->device_to, TT_NAME_MAX + 1, r->device->device_id) || !c->device_to[0]) {
      console_fail(c, "the broker's answer does not name a device");
      return;
    }
    if (tt_text_copy(c->device_host, sizeof(c->device_host), r->device->hostname)) c->device_host[0] = '\0';
    c->device_consent_ms = r->device->consent_timeout_ms;
  }
  int rc = c->cmd->start(c);
  if (rc) console_fail(c, "%s", tt_strerror(rc));
}

void console_on_response(console_t *c, const Tether__Response *r) {
  if (c->done) return;
  if (!c->pending || r->id != c->pending) {
    console_fail(c, "the broker sent an answer to request %u, which is not pending", (unsigned)r->id);
    return;
  }
  c->pending = 0;
  uv_timer_stop(&c->timeout);
  if (c->resolving) {
    resolved(c, r);
    return;
  }
  if (r->error) {
    fail_error(c, r->error);
    return;
  }
  if (r->body_case != c->expect) {
    console_fail(c, "the broker sent the wrong kind of answer (%d, expected %d)", (int)r->body_case,
                 (int)c->expect);
    return;
  }
  int rc = c->cmd->on_response(c, r);
  if (rc) console_fail(c, "%s", tt_strerror(rc));
}
