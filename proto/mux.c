/* Channel multiplexer: state machine, credit windows and the priority scheduler.
 * No I/O: frames come in through tt_mux_input and leave through tt_mux_pull. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "tt/log.h"
#include "tt/msg.h"
#include "tt/mux.h"

/* A channel's queue holds at most its credit in bodies plus a header per chunk and a close. */
#define OUTQ_MAX (TT_WINDOW_MAX + (TT_WINDOW_MAX / TT_DATA_CHUNK_MAX + 2) * TT_FRAME_HDR + 1024)

void tt_mux_init(tt_mux_t *m, bool opener_odd, const tt_mux_cbs_t *cbs, void *data) {
  memset(m, 0, sizeof(*m));
  m->next_id = opener_odd ? 1 : 2;
  tt_buf_init(&m->ctrl, TT_CTRL_QUEUE_MAX);
  m->budget = TT_MSG_BUDGET;
  m->bulk_room = SIZE_MAX;
  m->cbs = cbs;
  m->data = data;
}

tt_chan_t *tt_mux_find(tt_mux_t *m, uint32_t id) {
  for (tt_chan_t *c = m->chans; c; c = c->next)
    if (c->id == id) return c;
  return NULL;
}

size_t tt_mux_count(const tt_mux_t *m) { return m->count; }

static tt_chan_t *chan_new(tt_mux_t *m, uint32_t id) {
  tt_chan_t *c = calloc(1, sizeof(*c));
  if (!c) return NULL;
  c->id = id;
  tt_buf_init(&c->outq, OUTQ_MAX);
  c->next = m->chans;
  m->chans = c;
  m->count++;
  return c;
}

static void chan_free(tt_mux_t *m, tt_chan_t *c) {
  for (tt_chan_t **pp = &m->chans; *pp; pp = &(*pp)->next) {
    if (*pp == c) {
      *pp = c->next;
      m->count--;
      break;
    }
  }
  tt_buf_free(&c->outq);
  free(c);
}

static void chan_closed(tt_mux_t *m, tt_chan_t *c, int code, const char *msg) {
  tt_chan_state_t was = c->state;
  c->state = TT_CH_FREE; /* a close from inside the callback is a no-op */
  if (was != TT_CH_CLOSING && m->cbs->on_close) m->cbs->on_close(m, c, code, msg ? msg : "");
  chan_free(m, c);
}

void tt_mux_destroy(tt_mux_t *m) {
  while (m->chans) chan_closed(m, m->chans, TT_ECLOSED, "connection closed");
  tt_buf_free(&m->ctrl);
}

static bool peer_id(const tt_mux_t *m, uint32_t id) {
  /* We open ids of next_id's parity; the peer opens the other one. */
  return id != 0 && (id & 1) != (m->next_id & 1);
}

static int queue_ctrl(tt_mux_t *m, uint8_t kind, uint32_t ch, const ProtobufCMessage *msg) {
  return tt_msg_encode(&m->ctrl, kind, ch, msg);
}

int tt_mux_control(tt_mux_t *m, uint8_t kind, const ProtobufCMessage *msg) {
  if (!tt_kind_is_control(kind)) return TT_EKIND;
  return queue_ctrl(m, kind, 0, msg);
}

int tt_mux_open(tt_mux_t *m, Tether__ChannelOpen *msg, uint32_t window, bool auto_credit,
                tt_chan_t **out) {
  *out = NULL;
  if (window == 0 || window > TT_WINDOW_MAX) return TT_EINVAL;
  if (m->count >= TT_CHANNELS_MAX) return TT_EFULL;
  if (m->next_id > 0x7ffffffeu) return TT_ECHANNEL;
  if (msg->priority != TETHER__PRIORITY__PRIORITY_INTERACTIVE &&
      msg->priority != TETHER__PRIORITY__PRIORITY_BULK)
    return TT_EINVAL;
  msg->window = window;
  uint32_t id = m->next_id;
  int rc = queue_ctrl(m, TT_K_CH_OPEN, id, &msg->base);
  if (rc) return rc;
  tt_chan_t *c = chan_new(m, id);
  if (!c) return TT_ENOMEM;
  m->next_id += 2;
  c->state = TT_CH_OPENING;
  c->prio = msg->priority == TETHER__PRIORITY__PRIORITY_BULK ? TT_PRIO_BULK : TT_PRIO_INTERACTIVE;
  c->window = c->recv_left = window;
  c->auto_credit = auto_credit;
  *out = c;
  return 0;
}

int tt_mux_accept(tt_mux_t *m, tt_chan_t *c, uint32_t window, bool auto_credit, uint64_t compression) {
  if (c->state != TT_CH_PENDING) return TT_ESTATE;
  if (window == 0 || window > TT_WINDOW_MAX) return TT_EINVAL;
  Tether__ChannelAccept a = TETHER__CHANNEL_ACCEPT__INIT;
  a.window = window;
  a.compression = compression;
  int rc = queue_ctrl(m, TT_K_CH_ACCEPT, c->id, &a.base);
  if (rc) return rc;
  c->state = TT_CH_OPEN;
  c->window = c->recv_left = window;
  c->auto_credit = auto_credit;
  return 0;
}

static int send_close(tt_mux_t *m, tt_chan_t *c, uint8_t kind, int code, const char *text, tt_buf_t *q) {
  if (kind == TT_K_CH_REJECT) {
    Tether__ChannelReject r = TETHER__CHANNEL_REJECT__INIT;
    r.code = tt_err_to_wire(code);
    r.message = tt_text(text);
    return tt_msg_encode(q, kind, c ? c->id : 0, &r.base);
  }
  Tether__ChannelClose cl = TETHER__CHANNEL_CLOSE__INIT;
  cl.code = tt_err_to_wire(code);
  cl.message = tt_text(text);
  return tt_msg_encode(q, kind, c->id, &cl.base);
}

int tt_mux_reject(tt_mux_t *m, tt_chan_t *c, int code, const char *msg) {
  if (c->state == TT_CH_OPEN || c->state == TT_CH_OPENING) return tt_mux_close(m, c, code, msg);
  if (c->state != TT_CH_PENDING) return TT_ESTATE;
  int rc = send_close(m, c, TT_K_CH_REJECT, code, msg, &m->ctrl);
  c->state = TT_CH_CLOSING; /* no callback */
  chan_free(m, c);
  return rc;
}

int tt_mux_close(tt_mux_t *m, tt_chan_t *c, int code, const char *msg) {
  if (c->state == TT_CH_PENDING) return tt_mux_reject(m, c, code, msg);
  if (c->state != TT_CH_OPEN && c->state != TT_CH_OPENING) return TT_ESTATE;
  /* Behind the channel's queued data, so a close never overtakes what was sent before it. */
  c->tail_from_end = 0;
  int rc = send_close(m, c, TT_K_CH_CLOSE, code, msg, &c->outq);
  if (rc) {
    tt_buf_reset(&c->outq);
    rc = send_close(m, c, TT_K_CH_CLOSE, code, msg, &c->outq);
  }
  c->state = TT_CH_CLOSING;
  return rc;
}

uint32_t tt_mux_sendable(const tt_chan_t *c) {
  return c->state == TT_CH_OPEN && !c->eof_sent ? c->send_credit : 0;
}

/* Add up to the frame's room from p to the plain DATA frame at the tail of c's queue. */
static size_t append_to_tail(tt_chan_t *c, const uint8_t *p, size_t n) {
  if (!c->tail_from_end || c->tail_from_end > c->outq.len) return 0; /* none, or already sent */
  uint8_t *h = c->outq.data + c->outq.off + c->outq.len - c->tail_from_end;
  uint32_t len = tt_get_u32(h);
  if (h[4] != TT_K_DATA || h[5] != 0 || len >= TT_DATA_CHUNK_MAX) return 0;
  size_t take = TT_DATA_CHUNK_MAX - len < n ? TT_DATA_CHUNK_MAX - len : n;
  if (tt_buf_reserve(&c->outq, take)) return 0;
  h = c->outq.data + c->outq.off + c->outq.len - c->tail_from_end; /* reserve may move it */
  memcpy(tt_buf_tail(&c->outq), p, take);
  tt_buf_commit(&c->outq, take);
  tt_put_u32(h, len + (uint32_t)take);
  c->tail_from_end += (uint32_t)take;
  return take;
}

int tt_mux_send(tt_mux_t *m, tt_chan_t *c, const void *p, size_t n, uint8_t flags) {
  (void)m;
  if (c->state != TT_CH_OPEN || c->eof_sent) return TT_ESTATE;
  if (flags & ~TT_FF_MASK) return TT_EINVAL;
  if (n > c->send_credit) return TT_EWINDOW;
  if ((flags & (TT_FF_ZSTD | TT_FF_CTRL)) && n > TT_DATA_CHUNK_MAX) return TT_ETOOBIG;
  if (n == 0 && !(flags & TT_FF_EOF)) return 0;
  /* Room for the worst case first, so that nothing is queued unless all of it is. */
  size_t chunks = n ? (n + TT_DATA_CHUNK_MAX - 1) / TT_DATA_CHUNK_MAX : 1;
  int rc = tt_buf_reserve(&c->outq, n + chunks * TT_FRAME_HDR);
  if (rc) return rc;
  const uint8_t *s = p;
  size_t left = n;
  bool eof_on_tail = false;
  if (!(flags & (TT_FF_ZSTD | TT_FF_CTRL)) && left) {
    size_t done = append_to_tail(c, s, left);
    if (done) {
      s += done;
      left -= done;
      if (!left && (flags & TT_FF_EOF)) {
        /* Everything joined the tail frame: it carries the EOF too. */
        c->outq.data[c->outq.off + c->outq.len - c->tail_from_end + 5] |= TT_FF_EOF;
        eof_on_tail = true;
      }
    }
  }
  if (left || ((flags & TT_FF_EOF) && !eof_on_tail)) {
    do {
      size_t take = left > TT_DATA_CHUNK_MAX ? TT_DATA_CHUNK_MAX : left;
      uint8_t fl = (uint8_t)(flags & (TT_FF_ZSTD | TT_FF_CTRL));
      if (take == left) fl |= (uint8_t)(flags & TT_FF_EOF);
      uint8_t *t = tt_buf_tail(&c->outq);
      tt_frame_header_encode(t, TT_K_DATA, fl, c->id, (uint32_t)take);
      if (take) {
        memcpy(t + TT_FRAME_HDR, s, take);
        s += take;
        left -= take;
      }
      tt_buf_commit(&c->outq, TT_FRAME_HDR + take);
      c->tail_from_end = (uint32_t)(TT_FRAME_HDR + take);
    } while (left);
  }
  c->send_credit -= (uint32_t)n;
  c->bytes_out += n;
  if (flags & TT_FF_EOF) c->eof_sent = true;
  return 0;
}

int tt_mux_grant(tt_mux_t *m, tt_chan_t *c, uint32_t n) {
  if (c->state != TT_CH_OPEN) return TT_ESTATE;
  if (n == 0) return 0;
  if ((uint64_t)c->recv_left + n > TT_WINDOW_MAX) return TT_EWINDOW;
  Tether__WindowAdjust w = TETHER__WINDOW_ADJUST__INIT;
  w.bytes = n;
  int rc = queue_ctrl(m, TT_K_WINDOW, c->id, &w.base);
  if (rc) return rc;
  c->recv_left += n;
  return 0;
}

void tt_mux_consumed(tt_mux_t *m, tt_chan_t *c, size_t n) {
  if (!c->auto_credit || c->state != TT_CH_OPEN) return;
  c->consumed += (uint32_t)n;
  if (c->consumed >= c->window / 2 && c->consumed > 0) {
    if (tt_mux_grant(m, c, c->consumed) == 0) c->consumed = 0;
  }
}

static int valid_window(uint32_t w) { return w > 0 && w <= TT_WINDOW_MAX; }

static int on_peer_open(tt_mux_t *m, uint32_t id, const Tether__ChannelOpen *o) {
  if (!peer_id(m, id) || tt_mux_find(m, id)) return TT_ECHANNEL;
  if (!valid_window(o->window)) return TT_EPROTO;
  if (o->priority != TETHER__PRIORITY__PRIORITY_INTERACTIVE &&
      o->priority != TETHER__PRIORITY__PRIORITY_BULK)
    return TT_EPROTO;
  if (m->count >= TT_CHANNELS_MAX) {
    /* Refused, not queued: the peer may try again when one closes. */
    tt_chan_t tmp = {.id = id};
    return send_close(m, &tmp, TT_K_CH_REJECT, TT_EBUSY, "too many channels", &m->ctrl);
  }
  tt_chan_t *c = chan_new(m, id);
  if (!c) return TT_ENOMEM;
  c->state = TT_CH_PENDING;
  c->send_credit = o->window;
  c->prio = o->priority == TETHER__PRIORITY__PRIORITY_BULK ? TT_PRIO_BULK : TT_PRIO_INTERACTIVE;
  if (m->cbs->on_open) m->cbs->on_open(m, c, o);
  return 0;
}

static int on_peer_close(tt_mux_t *m, tt_chan_t *c, uint8_t kind, Tether__ErrorCode code,
                         ProtobufCBinaryData text) {
  char msg[TT_TEXT_MAX + 1];
  if (tt_text_copy(msg, sizeof(msg), text)) snprintf(msg, sizeof(msg), "(unprintable)");
  if (kind == TT_K_CH_REJECT) {
    if (c->state != TT_CH_OPENING && c->state != TT_CH_CLOSING) return TT_ECHANNEL;
    chan_closed(m, c, tt_err_from_wire(code), msg);
    return 0;
  }
  if (c->state == TT_CH_CLOSING) {
    /* The answer to our close, or the peer's own close crossing ours. If ours has not left
     * yet (it is the last frame in outq and is dropped with it), the peer is waiting for
     * one: answer from the control queue. */
    int rc = c->outq.len ? send_close(m, c, TT_K_CH_CLOSE, 0, "", &m->ctrl) : 0;
    chan_free(m, c);
    return rc;
  }
  if (c->state != TT_CH_OPEN && c->state != TT_CH_PENDING) return TT_ECHANNEL;
  /* Acknowledge, drop what we had queued, and tell the application. */
  tt_buf_reset(&c->outq);
  int rc = send_close(m, c, TT_K_CH_CLOSE, 0, "", &m->ctrl);
  chan_closed(m, c, tt_err_from_wire(code), msg);
  return rc;
}

static int on_data(tt_mux_t *m, tt_chan_t *c, const tt_frame_t *f) {
  if (c->state != TT_CH_OPEN && c->state != TT_CH_CLOSING) return TT_ECHANNEL;
  /* An empty frame that is not an EOF costs us a header for nothing; a larger frame than
   * the chunk size is not one we or any honest peer sends. */
  if ((f->len == 0 && !(f->flags & TT_FF_EOF)) || f->len > TT_DATA_CHUNK_MAX) return TT_EPROTO;
  if (f->len > c->recv_left) return TT_EWINDOW;
  c->recv_left -= f->len;
  if (c->state == TT_CH_CLOSING) return 0; /* in flight when we closed */
  if (c->eof_rcvd) return TT_EPROTO;
  if (f->flags & TT_FF_EOF) c->eof_rcvd = true;
  c->bytes_in += f->len;
  if (m->cbs->on_data) m->cbs->on_data(m, c, f->body, f->len, f->flags);
  return 0;
}

int tt_mux_input(tt_mux_t *m, const tt_frame_t *f) {
  if (tt_kind_is_control(f->kind) || f->channel == 0) return TT_EKIND;
  if (f->kind == TT_K_DATA) {
    tt_chan_t *c = tt_mux_find(m, f->channel);
    return c ? on_data(m, c, f) : TT_ECHANNEL;
  }
  tt_msg_t msg;
  int rc = tt_msg_unpack(&msg, f->kind, f->body, f->len, m->budget);
  if (rc) return rc;
  tt_chan_t *c = f->kind == TT_K_CH_OPEN ? NULL : tt_mux_find(m, f->channel);
  if (f->kind != TT_K_CH_OPEN && !c) {
    tt_msg_free(&msg);
    /* The peer gave up on a channel it opened while our reject of it was on the way: we
     * forgot the id when we rejected, and the peer frees it on our reject. */
    if (f->kind == TT_K_CH_CLOSE && peer_id(m, f->channel)) return 0;
    return TT_ECHANNEL;
  }
  switch (f->kind) {
  case TT_K_CH_OPEN:
    rc = on_peer_open(m, f->channel, (Tether__ChannelOpen *)msg.m);
    break;
  case TT_K_CH_ACCEPT: {
    Tether__ChannelAccept *a = (Tether__ChannelAccept *)msg.m;
    if (c->state == TT_CH_CLOSING) break; /* we gave up on it; our close is on its way */
    if (c->state != TT_CH_OPENING) { rc = TT_ECHANNEL; break; }
    if (!valid_window(a->window)) { rc = TT_EPROTO; break; }
    c->state = TT_CH_OPEN;
    c->send_credit = a->window;
    if (m->cbs->on_accept) m->cbs->on_accept(m, c, a);
    break;
  }
  case TT_K_CH_REJECT: {
    Tether__ChannelReject *r = (Tether__ChannelReject *)msg.m;
    rc = on_peer_close(m, c, f->kind, r->code, r->message);
    break;
  }
  case TT_K_CH_CLOSE: {
    Tether__ChannelClose *cl = (Tether__ChannelClose *)msg.m;
    rc = on_peer_close(m, c, f->kind, cl->code, cl->message);
    break;
  }
  case TT_K_WINDOW: {
    uint32_t n = ((Tether__WindowAdjust *)msg.m)->bytes;
    if (c->state == TT_CH_CLOSING) break;
    if (c->state != TT_CH_OPEN) { rc = TT_ECHANNEL; break; }
    if (n == 0 || (uint64_t)c->send_credit + n > TT_WINDOW_MAX) { rc = TT_EWINDOW; break; }
    c->send_credit += n;
    if (m->cbs->on_credit) m->cbs->on_credit(m, c, n);
    break;
  }
  default:
    rc = TT_EKIND;
  }
  tt_msg_free(&msg);
  return rc;
}

bool tt_mux_has_output(const tt_mux_t *m) {
  if (m->ctrl.len) return true;
  for (const tt_chan_t *c = m->chans; c; c = c->next)
    if (c->outq.len) return true;
  return false;
}

/* The channel of priority p with queued frames whose id comes next after rr[p]. */
static tt_chan_t *next_ready(tt_mux_t *m, int p) {
  tt_chan_t *after = NULL, *first = NULL;
  for (tt_chan_t *c = m->chans; c; c = c->next) {
    if ((int)c->prio != p || c->outq.len == 0) continue;
    if (!first || c->id < first->id) first = c;
    if (c->id > m->rr[p] && (!after || c->id < after->id)) after = c;
  }
  return after ? after : first;
}

/* Move the first whole frame of c's queue to out. */
static int move_frame(tt_mux_t *m, tt_chan_t *c, tt_buf_t *out) {
  const uint8_t *h = tt_buf_head(&c->outq);
  size_t n = TT_FRAME_HDR + tt_get_u32(h);
  uint8_t kind = h[4];
  int rc = tt_buf_append(out, h, n);
  if (rc) return rc;
  /* The queue's memory stays until the channel closes: freeing and re-allocating it for
   * every burst of a bulk transfer costs more than the transfer (page faults). */
  tt_buf_consume(&c->outq, n);
  if (kind == TT_K_CH_CLOSE && c->state == TT_CH_CLOSING) c->eof_sent = true;
  (void)m;
  return 0;
}

size_t tt_mux_pull(tt_mux_t *m, tt_buf_t *out, size_t max) {
  size_t start = out->len;
  /* Whole control frames in order, as many as out takes; no channel frame goes while one
   * is left, or DATA could overtake the CH_ACCEPT or WINDOW queued before it. */
  while (m->ctrl.len) {
    const uint8_t *h = tt_buf_head(&m->ctrl);
    size_t n = TT_FRAME_HDR + tt_get_u32(h);
    if (tt_buf_append(out, h, n)) return out->len - start;
    tt_buf_consume(&m->ctrl, n);
    if (m->ctrl.len == 0) tt_buf_shrink(&m->ctrl);
  }
  for (int p = 0; p < TT_PRIO_COUNT; p++) {
    tt_chan_t *c;
    while (out->len - start < max && (p != TT_PRIO_BULK || m->bulk_room) && (c = next_ready(m, p))) {
      size_t before = out->len;
      if (move_frame(m, c, out)) return out->len - start;
      m->rr[p] = c->id;
      if (p == TT_PRIO_BULK && m->bulk_room != SIZE_MAX) {
        size_t n = out->len - before;
        m->bulk_room = n >= m->bulk_room ? 0 : m->bulk_room - n;
      }
    }
  }
  return out->len - start;
}

/* One ChannelControl on ch: 0, TT_EWINDOW (no credit yet) or an error. */
static int send_ctl(tt_mux_t *m, tt_chan_t *ch, const Tether__ChannelControl *cc) {
  uint8_t buf[64];
  size_t n = tether__channel_control__get_packed_size(cc);
  if (n > sizeof(buf)) return TT_ETOOBIG;
  tether__channel_control__pack(cc, buf);
  if (tt_mux_sendable(ch) < n) return TT_EWINDOW;
  return tt_mux_send(m, ch, buf, n, TT_FF_CTRL);
}

bool tt_mux_term_ctl(tt_mux_t *m, tt_chan_t *ch, bool *resize, uint32_t cols, uint32_t rows, uint32_t *signal) {
  bool sent = false;
  if (ch->state != TT_CH_OPEN || ch->eof_sent) return false;
  if (*resize) {
    Tether__TermSize ts = TETHER__TERM_SIZE__INIT;
    ts.cols = cols;
    ts.rows = rows;
    Tether__ChannelControl cc = TETHER__CHANNEL_CONTROL__INIT;
    cc.body_case = TETHER__CHANNEL_CONTROL__BODY_RESIZE;
    cc.resize = &ts;
    int rc = send_ctl(m, ch, &cc);
    if (rc != TT_EWINDOW) *resize = false;
    sent |= rc == 0;
  }
  if (*signal) {
    Tether__ChannelControl cc = TETHER__CHANNEL_CONTROL__INIT;
    cc.body_case = TETHER__CHANNEL_CONTROL__BODY_SIGNAL;
    cc.signal = *signal;
    int rc = send_ctl(m, ch, &cc);
    if (rc != TT_EWINDOW) *signal = 0;
    sent |= rc == 0;
  }
  return sent;
}
