/* The relay: a console's channel paired with a channel to the agent. Data bodies are copied
 * across with a new header, never decoded; credit travels end to end (the broker grants a
 * side only what the other side granted it), so a relay holds at most one window per
 * direction. */
#include <stdlib.h>
#include <string.h>
#include "broker.h"
#include "tt/log.h"
#include "tt/msg.h"

typedef struct {
  broker_conn_t *console, *agent;
  tt_chan_t *cch, *ach; /* NULL once that side is gone */
  uint64_t bytes_up, bytes_down;
} relay_t;

static tt_chan_t *other_side(relay_t *r, tt_chan_t *ch, tt_link_t **link) {
  if (ch == r->cch) {
    *link = r->agent ? r->agent->link : NULL;
    return r->ach;
  }
  *link = r->console ? r->console->link : NULL;
  return r->cch;
}

static void relay_forget(relay_t *r, tt_chan_t *ch) {
  if (ch == r->cch) r->cch = NULL;
  if (ch == r->ach) r->ach = NULL;
  ch->data = NULL;
  if (!r->cch && !r->ach) {
    TT_DEBUG("relay", "relay ended", "up=%llu down=%llu", (unsigned long long)r->bytes_up,
             (unsigned long long)r->bytes_down);
    free(r);
  }
}

void relay_on_open(tt_mux_t *m, tt_chan_t *ch, const Tether__ChannelOpen *msg) {
  tt_link_t *l = tt_link_from_mux(m);
  broker_conn_t *c = l->data;
  char dev[TT_NAME_MAX + 1];
  int rc;
  if (c->id.role != TT_ROLE_TECHNICIAN && c->id.role != TT_ROLE_ADMIN) {
    rc = tt_mux_reject(m, ch, TT_EDENIED, "only technicians and admins open channels");
    goto flush;
  }
  if (tt_text_copy(dev, sizeof(dev), msg->device) || !dev[0]) {
    rc = tt_mux_reject(m, ch, TT_EINVAL, "no valid device id");
    goto flush;
  }
  broker_conn_t *a = broker_find_agent(c->b, dev);
  if (!a) {
    char why[TT_NAME_MAX + 64];
    snprintf(why, sizeof(why), "device %s is not connected", dev);
    rc = tt_mux_reject(m, ch, TT_ENOTFOUND, why);
    goto flush;
  }
  relay_t *r = calloc(1, sizeof(*r));
  if (!r) {
    rc = tt_mux_reject(m, ch, TT_ENOMEM, "out of memory");
    goto flush;
  }
  Tether__ChannelOpen fwd = *msg;
  fwd.base.unknown_fields = NULL;
  fwd.base.n_unknown_fields = 0;
  fwd.device.len = 0;
  fwd.device.data = NULL;
  fwd.requester = tt_text(c->id.name);
  tt_chan_t *ach;
  rc = tt_mux_open(&a->link->mux, &fwd, msg->window, false, &ach);
  if (rc) {
    free(r);
    rc = tt_mux_reject(m, ch, rc == TT_EFULL ? TT_EBUSY : rc, "device has too many channels open");
    goto flush;
  }
  r->console = c;
  r->agent = a;
  r->cch = ch;
  r->ach = ach;
  ch->data = ach->data = r;
  TT_INFO("relay", "channel requested", "requester=%s device=%s kind=%d", c->id.name, dev, (int)msg->kind);
  tt_link_flush(a->link);
  return;
flush:
  (void)rc;
  tt_link_flush(l);
}

void relay_on_accept(tt_mux_t *m, tt_chan_t *ch, const Tether__ChannelAccept *msg) {
  relay_t *r = ch->data;
  tt_link_t *ol;
  if (!r) return;
  tt_chan_t *o = other_side(r, ch, &ol);
  if (!o || !ol) return;
  if (tt_mux_accept(&ol->mux, o, msg->window, false, msg->compression)) {
    tt_mux_close(m, ch, TT_ECHANNEL, "requester went away");
    tt_link_flush(tt_link_from_mux(m));
    return;
  }
  tt_link_flush(ol);
}

void relay_on_data(tt_mux_t *m, tt_chan_t *ch, const uint8_t *p, size_t n, uint8_t flags) {
  relay_t *r = ch->data;
  tt_link_t *ol;
  if (!r) return;
  tt_chan_t *o = other_side(r, ch, &ol);
  if (!o || !ol || o->state != TT_CH_OPEN) return;
  /* The window we granted this side is the one the other side granted us: this fits. */
  int rc = tt_mux_send(&ol->mux, o, p, n, flags);
  if (rc) {
    TT_WARN("relay", "relay send failed", "err=%s", tt_errname(rc));
    tt_mux_close(m, ch, rc, "relay failed");
    tt_mux_close(&ol->mux, o, rc, "relay failed");
    relay_forget(r, ch);
    relay_forget(r, o);
    tt_link_flush(tt_link_from_mux(m));
    tt_link_flush(ol);
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
  if (!o || !ol || o->state != TT_CH_OPEN) return;
  if (tt_mux_grant(&ol->mux, o, n) == 0) tt_link_flush(ol);
}

void relay_on_close(tt_mux_t *m, tt_chan_t *ch, int code, const char *msg) {
  relay_t *r = ch->data;
  tt_link_t *ol;
  if (!r) return;
  tt_chan_t *o = other_side(r, ch, &ol);
  if (o && ol) {
    tt_mux_close(&ol->mux, o, code, msg);
    tt_link_flush(ol);
    relay_forget(r, o);
  }
  relay_forget(r, ch);
}
