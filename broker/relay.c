/* The relay: a console's channel paired with a channel to the agent. Data bodies are copied
 * across with a new header, never decoded; credit travels end to end (the broker grants a
 * side only what the other side granted it), so a relay holds at most one window per
 * direction. Every way a relay ends goes through relay_end(), which detaches both channels
 * before closing them: a close may free a channel at once (a reject of a PENDING one). */
#include <stdlib.h>
#include <string.h>
#include "broker.h"
#include "tt/log.h"
#include "tt/msg.h"

struct relay_s {
  relay_t *prev, *next;  /* broker's list of relays still waiting for the device */
  broker_t *b;
  broker_conn_t *console, *agent;
  tt_chan_t *cch, *ach;  /* NULL once that side is gone */
  uint64_t opened_ms;    /* uv_now when requested */
  bool pending;          /* on the pending list */
  uint32_t down_window;  /* held for the console: data from the device waits in its queue */
  uint32_t up_window;    /* held for the device: data from the console waits in its queue */
  uint64_t bytes_up, bytes_down;
};

static void pending_remove(relay_t *r) {
  if (!r->pending) return;
  broker_t *b = r->b;
  if (r->prev) r->prev->next = r->next;
  else b->pending = r->next;
  if (r->next) r->next->prev = r->prev;
  r->prev = r->next = NULL;
  r->pending = false;
}

/* The window to pass on for a peer: what it asked, within what is left of its budget. */
static uint32_t clamp_window(broker_conn_t *peer, uint32_t asked) {
  uint64_t left = peer->relay_window >= TT_RELAY_WINDOW_BUDGET ? 0 : TT_RELAY_WINDOW_BUDGET - peer->relay_window;
  uint32_t w = asked < left ? asked : (uint32_t)left;
  return w < TT_DATA_CHUNK_MAX ? TT_DATA_CHUNK_MAX : w;
}

/* Close whatever side is still attached with (code, msg) and free r. */
static void relay_end(relay_t *r, int code, const char *msg) {
  tt_chan_t *c = r->cch, *a = r->ach;
  broker_conn_t *console = r->console, *agent = r->agent;
  console->relay_window -= r->down_window;
  agent->relay_window -= r->up_window;
  pending_remove(r);
  r->cch = r->ach = NULL;
  if (c) c->data = NULL;
  if (a) a->data = NULL;
  TT_DEBUG("relay", "relay ended", "up=%llu down=%llu code=%s", (unsigned long long)r->bytes_up,
           (unsigned long long)r->bytes_down, tt_errname(code));
  free(r);
  if (c) {
    tt_mux_close(&console->link->mux, c, code, msg);
    tt_link_flush(console->link);
  }
  if (a) {
    tt_mux_close(&agent->link->mux, a, code, msg);
    tt_link_flush(agent->link);
  }
}

static tt_chan_t *other_side(relay_t *r, tt_chan_t *ch, tt_link_t **link) {
  if (ch == r->cch) {
    *link = r->agent->link;
    return r->ach;
  }
  *link = r->console->link;
  return r->cch;
}

/* Opens this person has waiting, over all of their connections. */
static uint32_t pending_for(const broker_t *b, const char *name) {
  uint32_t n = 0;
  for (const relay_t *r = b->pending; r; r = r->next)
    if (strcmp(r->console->id.name, name) == 0) n++;
  return n;
}

void relay_on_open(tt_mux_t *m, tt_chan_t *ch, const Tether__ChannelOpen *msg) {
  tt_link_t *l = tt_link_from_mux(m);
  broker_conn_t *c = l->data;
  char dev[TT_NAME_MAX + 1], why[TT_NAME_MAX + 64];
  const char *refusal = NULL;
  int code = 0;
  broker_conn_t *a = NULL;
  if (c->id.role != TT_ROLE_TECHNICIAN && c->id.role != TT_ROLE_ADMIN) {
    code = TT_EDENIED, refusal = "only technicians and admins open channels";
  } else if (tt_text_copy(dev, sizeof(dev), msg->device) || !dev[0]) {
    code = TT_EINVAL, refusal = "no valid device id";
  } else if (pending_for(c->b, c->id.name) >= TT_PENDING_OPENS_MAX) {
    code = TT_EBUSY, refusal = "too many channel requests waiting for devices";
  } else if (!(a = broker_find_agent(c->b, dev))) {
    snprintf(why, sizeof(why), "device %s is not connected", dev);
    code = TT_ENOTFOUND, refusal = why;
  }
  relay_t *r = refusal ? NULL : calloc(1, sizeof(*r));
  if (!refusal && !r) code = TT_ENOMEM, refusal = "out of memory";
  if (refusal) {
    if (c->id.role == TT_ROLE_TECHNICIAN || c->id.role == TT_ROLE_ADMIN)
      broker_audit(c->b, c->id.name, "channel-refused", a ? a->id.name : "", "reason", refusal, AUDIT_END);
    tt_mux_reject(m, ch, code, refusal);
    tt_link_flush(l);
    if (++c->refusals >= TT_REFUSALS_MAX) tt_link_close(l, TT_EDENIED, "too many refused requests");
    return;
  }
  Tether__ChannelOpen fwd = *msg;
  fwd.base.unknown_fields = NULL;
  fwd.base.n_unknown_fields = 0;
  fwd.device.len = 0;
  fwd.device.data = NULL;
  fwd.requester = tt_text(c->id.name);
  tt_chan_t *ach;
  /* The device may send the console at most this much before credit returns: it waits in the
   * console's queue here, so it comes out of the console connection's budget. */
  uint32_t down = clamp_window(c, msg->window);
  int rc = tt_mux_open(&a->link->mux, &fwd, down, false, &ach);
  if (rc) {
    free(r);
    tt_mux_reject(m, ch, rc == TT_EFULL ? TT_EBUSY : rc, "device has too many channels open");
    tt_link_flush(l);
    return;
  }
  broker_t *b = c->b;
  r->b = b;
  r->console = c;
  r->agent = a;
  r->cch = ch;
  r->ach = ach;
  r->opened_ms = uv_now(b->loop);
  r->down_window = down;
  c->relay_window += down;
  r->pending = true;
  r->next = b->pending;
  if (b->pending) b->pending->prev = r;
  b->pending = r;
  ch->data = ach->data = r;
  TT_INFO("relay", "channel requested", "requester=%s device=%s kind=%d", c->id.name, dev, (int)msg->kind);
  char kind[16];
  snprintf(kind, sizeof(kind), "%d", (int)msg->kind);
  broker_audit(b, c->id.name, "channel-open", dev, "kind", kind, AUDIT_END);
  tt_link_flush(a->link);
}

void relay_on_accept(tt_mux_t *m, tt_chan_t *ch, const Tether__ChannelAccept *msg) {
  relay_t *r = ch->data;
  tt_link_t *ol;
  if (!r) return;
  tt_chan_t *o = other_side(r, ch, &ol);
  pending_remove(r);
  /* Same for the other way: console data waits in the device's queue here. */
  uint32_t up = clamp_window(r->agent, msg->window);
  r->up_window = up;
  r->agent->relay_window += up;
  if (!o || tt_mux_accept(&ol->mux, o, up, false, msg->compression)) {
    relay_end(r, TT_ECHANNEL, "requester went away");
    return;
  }
  tt_link_flush(ol);
}

void relay_on_data(tt_mux_t *m, tt_chan_t *ch, const uint8_t *p, size_t n, uint8_t flags) {
  relay_t *r = ch->data;
  tt_link_t *ol;
  if (!r) return;
  tt_chan_t *o = other_side(r, ch, &ol);
  if (!o || o->state != TT_CH_OPEN) return;
  /* The window we granted this side is the one the other side granted us: this fits. */
  int rc = tt_mux_send(&ol->mux, o, p, n, flags);
  if (rc) {
    TT_WARN("relay", "relay send failed", "err=%s", tt_errname(rc));
    relay_end(r, rc, "relay failed");
    return;
  }
  if (ch == r->cch) r->bytes_up += n;
  else r->bytes_down += n;
  tt_link_flush(ol);
}

void relay_on_credit(tt_mux_t *m, tt_chan_t *ch, uint32_t n) {
  relay_t *r = ch->data;
  tt_link_t *ol;
  if (!r) return;
  tt_chan_t *o = other_side(r, ch, &ol);
  if (!o || o->state != TT_CH_OPEN) return;
  /* Credit that cannot be passed on would shrink the window for good: end the relay. */
  if (tt_mux_grant(&ol->mux, o, n)) {
    relay_end(r, TT_EFULL, "relay could not pass credit on");
    return;
  }
  tt_link_flush(ol);
}

void relay_on_close(tt_mux_t *m, tt_chan_t *ch, int code, const char *msg) {
  relay_t *r = ch->data;
  if (!r) return;
  /* ch is being freed by the mux: detach it, then end the other side. */
  if (ch == r->cch) r->cch = NULL;
  else r->ach = NULL;
  ch->data = NULL;
  relay_end(r, code, msg);
}

void relay_sweep(broker_t *b, uint64_t now) {
  for (relay_t *r = b->pending, *next; r; r = next) {
    next = r->next;
    if (now - r->opened_ms >= TT_OPEN_TIMEOUT_MS)
      relay_end(r, TT_ETIMEOUT, "the device did not answer in time");
  }
}
