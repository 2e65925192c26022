/* tt_mux: two multiplexers wired back to back through the frame codec. Channel state machine
 * both ways, id parity, credit windows and their overruns, the channel limit, the priority
 * scheduler, and teardown without leaks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tt/msg.h"
#include "tt/mux.h"

#define WIRE_MAX (64u * 1024u * 1024u)

typedef struct {
  uint32_t id;
  int code;
  char msg[TT_TEXT_MAX + 1];
} close_ev_t;

/* One end: a mux, the reader for bytes from the other end, and what the callbacks saw. */
typedef struct {
  tt_mux_t mux;
  tt_frame_reader_t rd;
  /* behaviour */
  bool accept_on_open;
  uint32_t accept_window;
  bool accept_auto;
  bool consume_on_data;
  /* record */
  int opens;
  tt_chan_t *pending; /* last channel the peer opened, if not accepted at once */
  uint32_t last_open_id;
  uint32_t last_open_window;
  int accepts;
  int closes;
  close_ev_t close_ev[TT_CHANNELS_MAX * 2];
  tt_buf_t rx;
  size_t data_frames;
  uint8_t last_flags;
  int credits;
  uint64_t credit_total;
  int ctrl_frames;
} side_t;

static void cb_open(tt_mux_t *m, tt_chan_t *ch, const Tether__ChannelOpen *msg) {
  side_t *s = m->data;
  s->opens++;
  s->last_open_id = ch->id;
  s->last_open_window = msg->window;
  assert_int_equal(ch->state, TT_CH_PENDING);
  if (s->accept_on_open) {
    assert_int_equal(tt_mux_accept(m, ch, s->accept_window, s->accept_auto, 0), 0);
    assert_int_equal(ch->state, TT_CH_OPEN);
  } else {
    s->pending = ch;
  }
}

static void cb_accept(tt_mux_t *m, tt_chan_t *ch, const Tether__ChannelAccept *msg) {
  side_t *s = m->data;
  s->accepts++;
  assert_int_equal(ch->state, TT_CH_OPEN);
  assert_int_equal(ch->send_credit, msg->window);
}

static void cb_data(tt_mux_t *m, tt_chan_t *ch, const uint8_t *p, size_t n, uint8_t flags) {
  side_t *s = m->data;
  if (n) assert_int_equal(tt_buf_append(&s->rx, p, n), 0);
  s->data_frames++;
  s->last_flags = flags;
  if (s->consume_on_data) tt_mux_consumed(m, ch, n);
}

static void cb_credit(tt_mux_t *m, tt_chan_t *ch, uint32_t n) {
  side_t *s = m->data;
  (void)ch;
  s->credits++;
  s->credit_total += n;
}

static void cb_close(tt_mux_t *m, tt_chan_t *ch, int code, const char *msg) {
  side_t *s = m->data;
  assert_non_null(msg);
  assert_true((size_t)s->closes < sizeof s->close_ev / sizeof s->close_ev[0]);
  close_ev_t *e = &s->close_ev[s->closes++];
  e->id = ch->id;
  e->code = code;
  snprintf(e->msg, sizeof e->msg, "%s", msg);
  if (s->pending == ch) s->pending = NULL;
  /* A close from inside the callback is refused, not a double free. */
  assert_int_not_equal(tt_mux_close(m, ch, TT_ECLOSED, "again"), 0);
}

static const tt_mux_cbs_t cbs = {
    .on_open = cb_open,
    .on_accept = cb_accept,
    .on_data = cb_data,
    .on_credit = cb_credit,
    .on_close = cb_close,
};

static void side_init(side_t *s, bool opener_odd) {
  memset(s, 0, sizeof(*s));
  tt_mux_init(&s->mux, opener_odd, &cbs, s);
  tt_frame_reader_init(&s->rd, TT_FRAME_MAX_BODY);
  tt_buf_init(&s->rx, WIRE_MAX);
  s->accept_on_open = true;
  s->accept_window = TT_WINDOW_DEFAULT;
}

static void side_free(side_t *s) {
  tt_mux_destroy(&s->mux);
  assert_int_equal(tt_mux_count(&s->mux), 0);
  assert_null(s->mux.chans);
  tt_frame_reader_free(&s->rd);
  tt_buf_free(&s->rx);
}

static int to_mux(void *ctx, const tt_frame_t *f) {
  side_t *s = ctx;
  if (tt_kind_is_control(f->kind)) {
    s->ctrl_frames++;
    return 0;
  }
  return tt_mux_input(&s->mux, f);
}

/* Move everything `from` has queued to `to`. */
static int pump(side_t *from, side_t *to) {
  tt_buf_t wire;
  tt_buf_init(&wire, WIRE_MAX);
  tt_mux_pull(&from->mux, &wire, SIZE_MAX);
  int rc = tt_frame_reader_feed(&to->rd, tt_buf_slice(&wire).ptr, wire.len, to_mux, to);
  tt_buf_free(&wire);
  return rc;
}

static void settle(side_t *a, side_t *b) {
  for (int i = 0; i < 100; i++) {
    if (!tt_mux_has_output(&a->mux) && !tt_mux_has_output(&b->mux)) return;
    assert_int_equal(pump(a, b), 0);
    assert_int_equal(pump(b, a), 0);
  }
  fail_msg("muxes never settled");
}

static tt_chan_t *open_ch(side_t *a, side_t *b, Tether__Priority prio, uint32_t window, bool auto_credit) {
  Tether__ChannelOpen o = TETHER__CHANNEL_OPEN__INIT;
  o.kind = TETHER__CHANNEL_KIND__CHANNEL_ECHO;
  o.priority = prio;
  tt_chan_t *ch = NULL;
  assert_int_equal(tt_mux_open(&a->mux, &o, window, auto_credit, &ch), 0);
  assert_non_null(ch);
  settle(a, b);
  assert_int_equal(ch->state, TT_CH_OPEN);
  return ch;
}

static int inject_msg(side_t *s, uint8_t kind, uint32_t ch, const ProtobufCMessage *msg) {
  tt_buf_t b;
  tt_buf_init(&b, TT_FRAME_HDR + TT_FRAME_MAX_BODY);
  assert_int_equal(tt_msg_encode(&b, kind, ch, msg), 0);
  tt_frame_t f;
  assert_int_equal(tt_frame_header_decode(tt_buf_head(&b), TT_FRAME_MAX_BODY, &f), 0);
  f.body = tt_buf_head(&b) + TT_FRAME_HDR;
  int rc = tt_mux_input(&s->mux, &f);
  tt_buf_free(&b);
  return rc;
}

static int inject_open(side_t *s, uint32_t id, uint32_t window) {
  Tether__ChannelOpen o = TETHER__CHANNEL_OPEN__INIT;
  o.window = window;
  return inject_msg(s, TT_K_CH_OPEN, id, &o.base);
}

static int inject_window(side_t *s, uint32_t id, uint32_t n) {
  Tether__WindowAdjust w = TETHER__WINDOW_ADJUST__INIT;
  w.bytes = n;
  return inject_msg(s, TT_K_WINDOW, id, &w.base);
}

static int inject_data(side_t *s, uint32_t id, uint8_t flags, uint32_t len) {
  uint8_t *body = calloc(1, len ? len : 1);
  assert_non_null(body);
  tt_frame_t f = {.len = len, .kind = TT_K_DATA, .flags = flags, .channel = id, .body = body};
  int rc = tt_mux_input(&s->mux, &f);
  free(body);
  return rc;
}

typedef struct {
  uint8_t kind, flags;
  uint32_t ch, len;
  const uint8_t *body;
} fr_t;

/* Split a pulled buffer into frames; it must hold whole frames only. */
static size_t parse(const tt_buf_t *b, fr_t *out, size_t max) {
  size_t n = 0, off = 0;
  while (off < b->len) {
    assert_true(b->len - off >= TT_FRAME_HDR);
    tt_frame_t f;
    assert_int_equal(tt_frame_header_decode(tt_buf_head(b) + off, TT_FRAME_MAX_BODY, &f), 0);
    assert_true(b->len - off - TT_FRAME_HDR >= f.len);
    assert_true(n < max);
    out[n].kind = f.kind;
    out[n].flags = f.flags;
    out[n].ch = f.channel;
    out[n].len = f.len;
    out[n].body = tt_buf_head(b) + off + TT_FRAME_HDR;
    n++;
    off += TT_FRAME_HDR + f.len;
  }
  return n;
}

static uint8_t *pattern(size_t n, uint8_t seed) {
  uint8_t *p = malloc(n ? n : 1);
  assert_non_null(p);
  for (size_t i = 0; i < n; i++) p[i] = (uint8_t)(seed + i * 13u);
  return p;
}

/* ---- state machine ---- */

static void lifecycle(side_t *op, side_t *ac, uint32_t want_id) {
  int closes_op = op->closes, closes_ac = ac->closes;
  Tether__ChannelOpen o = TETHER__CHANNEL_OPEN__INIT;
  o.kind = TETHER__CHANNEL_KIND__CHANNEL_ECHO;
  o.priority = TETHER__PRIORITY__PRIORITY_INTERACTIVE;
  tt_chan_t *ch = NULL;
  assert_int_equal(tt_mux_open(&op->mux, &o, 5000, false, &ch), 0);
  assert_int_equal(o.window, 5000);
  assert_int_equal(ch->id, want_id);
  assert_int_equal(ch->state, TT_CH_OPENING);
  assert_int_equal(ch->recv_left, 5000);
  assert_int_equal(tt_mux_sendable(ch), 0);
  assert_int_equal(tt_mux_send(&op->mux, ch, "x", 1, 0), TT_ESTATE); /* not open yet */
  assert_true(tt_mux_has_output(&op->mux));
  assert_ptr_equal(tt_mux_find(&op->mux, want_id), ch);

  ac->accept_window = 7000;
  settle(op, ac);
  assert_int_equal(ac->last_open_id, want_id);
  assert_int_equal(ac->last_open_window, 5000);
  tt_chan_t *peer = tt_mux_find(&ac->mux, want_id);
  assert_non_null(peer);
  assert_int_equal(peer->state, TT_CH_OPEN);
  assert_int_equal(peer->send_credit, 5000);
  assert_int_equal(ch->state, TT_CH_OPEN);
  assert_int_equal(ch->send_credit, 7000);
  assert_int_equal(tt_mux_sendable(ch), 7000);

  /* Data both ways. */
  size_t rx_ac = ac->rx.len, rx_op = op->rx.len;
  assert_int_equal(tt_mux_send(&op->mux, ch, "hello", 5, 0), 0);
  assert_int_equal(tt_mux_send(&ac->mux, peer, "world!", 6, 0), 0);
  settle(op, ac);
  assert_int_equal(ac->rx.len - rx_ac, 5);
  assert_memory_equal(tt_buf_head(&ac->rx) + rx_ac, "hello", 5);
  assert_int_equal(op->rx.len - rx_op, 6);
  assert_memory_equal(tt_buf_head(&op->rx) + rx_op, "world!", 6);
  assert_int_equal(ch->bytes_out, 5);
  assert_int_equal(peer->bytes_in, 5);
  assert_int_equal(ch->send_credit, 6995);
  assert_int_equal(peer->recv_left, 6995);

  /* EOF from the opener: the other direction stays usable. */
  assert_int_equal(tt_mux_send(&op->mux, ch, "!", 1, TT_FF_EOF), 0);
  assert_int_equal(tt_mux_sendable(ch), 0);
  assert_int_equal(tt_mux_send(&op->mux, ch, "?", 1, 0), TT_ESTATE);
  settle(op, ac);
  assert_true(ac->last_flags & TT_FF_EOF);
  assert_true(peer->eof_rcvd);
  assert_int_equal(tt_mux_send(&ac->mux, peer, "more", 4, 0), 0);
  settle(op, ac);
  assert_memory_equal(tt_buf_head(&op->rx) + op->rx.len - 4, "more", 4);

  /* Close from the opener: the accepter hears the code and text; no callback for the
   * side that closed. */
  assert_int_equal(tt_mux_close(&op->mux, ch, TT_EDENIED, "bye now"), 0);
  assert_int_equal(ch->state, TT_CH_CLOSING);
  assert_int_equal(tt_mux_close(&op->mux, ch, 0, ""), TT_ESTATE);
  assert_int_equal(tt_mux_send(&op->mux, ch, "x", 1, 0), TT_ESTATE);
  settle(op, ac);
  assert_null(tt_mux_find(&op->mux, want_id));
  assert_null(tt_mux_find(&ac->mux, want_id));
  assert_int_equal(op->closes, closes_op);
  assert_int_equal(ac->closes, closes_ac + 1);
  assert_int_equal(ac->close_ev[closes_ac].id, want_id);
  assert_int_equal(ac->close_ev[closes_ac].code, TT_EDENIED);
  assert_string_equal(ac->close_ev[closes_ac].msg, "bye now");
}

static void lifecycle_close_by_accepter(side_t *op, side_t *ac) {
  int closes_op = op->closes, closes_ac = ac->closes;
  tt_chan_t *ch = open_ch(op, ac, TETHER__PRIORITY__PRIORITY_BULK, 1000, false);
  uint32_t id = ch->id;
  tt_chan_t *peer = tt_mux_find(&ac->mux, id);
  assert_non_null(peer);
  assert_int_equal(peer->prio, TT_PRIO_BULK);
  assert_int_equal(ch->prio, TT_PRIO_BULK);
  assert_int_equal(tt_mux_close(&ac->mux, peer, 0, "done"), 0);
  settle(op, ac);
  assert_int_equal(ac->closes, closes_ac);
  assert_int_equal(op->closes, closes_op + 1);
  assert_int_equal(op->close_ev[closes_op].id, id);
  assert_int_equal(op->close_ev[closes_op].code, 0);
  assert_string_equal(op->close_ev[closes_op].msg, "done");
  assert_int_equal(tt_mux_count(&op->mux), 0);
  assert_int_equal(tt_mux_count(&ac->mux), 0);
}

static void test_lifecycle_both_ways(void **state) {
  (void)state;
  side_t a, b;
  side_init(&a, true);
  side_init(&b, false);
  lifecycle(&a, &b, 1);
  lifecycle(&b, &a, 2);
  lifecycle(&a, &b, 3);
  lifecycle(&b, &a, 4);
  lifecycle_close_by_accepter(&a, &b);
  lifecycle_close_by_accepter(&b, &a);
  assert_int_equal(tt_mux_count(&a.mux), 0);
  assert_int_equal(tt_mux_count(&b.mux), 0);
  assert_false(tt_mux_has_output(&a.mux));
  assert_false(tt_mux_has_output(&b.mux));
  side_free(&a);
  side_free(&b);
  assert_int_equal(a.closes, 3);
  assert_int_equal(b.closes, 3);
}

static void test_open_args(void **state) {
  (void)state;
  side_t a;
  side_init(&a, true);
  Tether__ChannelOpen o = TETHER__CHANNEL_OPEN__INIT;
  tt_chan_t *ch = (tt_chan_t *)&o; /* cleared on entry */
  assert_int_equal(tt_mux_open(&a.mux, &o, 0, false, &ch), TT_EINVAL);
  assert_null(ch);
  assert_int_equal(tt_mux_open(&a.mux, &o, TT_WINDOW_MAX + 1, false, &ch), TT_EINVAL);
  o.priority = (Tether__Priority)7;
  assert_int_equal(tt_mux_open(&a.mux, &o, 100, false, &ch), TT_EINVAL);
  assert_int_equal(tt_mux_count(&a.mux), 0);
  assert_false(tt_mux_has_output(&a.mux));
  o.priority = TETHER__PRIORITY__PRIORITY_INTERACTIVE;
  assert_int_equal(tt_mux_open(&a.mux, &o, TT_WINDOW_MAX, false, &ch), 0);
  assert_int_equal(ch->id, 1); /* failed opens did not use up ids */
  assert_int_equal(tt_mux_control(&a.mux, TT_K_DATA, &o.base), TT_EKIND);
  assert_int_equal(tt_mux_control(&a.mux, TT_K_CH_OPEN, &o.base), TT_EKIND);
  side_free(&a);
  assert_int_equal(a.closes, 1);
}

static void test_id_parity(void **state) {
  (void)state;
  side_t a, b;
  side_init(&a, true);  /* opens odd ids, the peer even ones */
  side_init(&b, false); /* opens even ids, the peer odd ones */
  assert_int_equal(inject_open(&a, 1, 100), TT_ECHANNEL);
  assert_int_equal(inject_open(&a, 7, 100), TT_ECHANNEL);
  assert_int_equal(inject_open(&a, 0xffffffffu, 100), TT_ECHANNEL);
  assert_int_equal(inject_open(&b, 2, 100), TT_ECHANNEL);
  assert_int_equal(inject_open(&b, 0x7ffffffeu, 100), TT_ECHANNEL);
  assert_int_equal(a.opens + b.opens, 0);
  assert_int_equal(tt_mux_count(&a.mux) + tt_mux_count(&b.mux), 0);
  /* The right parity is accepted, once. */
  assert_int_equal(inject_open(&a, 2, 100), 0);
  assert_int_equal(a.opens, 1);
  assert_int_equal(inject_open(&a, 2, 100), TT_ECHANNEL);
  assert_int_equal(inject_open(&b, 1, 100), 0);
  assert_int_equal(inject_open(&b, 1, 100), TT_ECHANNEL);
  /* Bad windows and priorities in an open. */
  assert_int_equal(inject_open(&a, 4, 0), TT_EPROTO);
  assert_int_equal(inject_open(&a, 6, TT_WINDOW_MAX + 1), TT_EPROTO);
  Tether__ChannelOpen o = TETHER__CHANNEL_OPEN__INIT;
  o.window = 100;
  o.priority = (Tether__Priority)9;
  assert_int_equal(inject_msg(&a, TT_K_CH_OPEN, 8, &o.base), TT_EPROTO);
  assert_int_equal(tt_mux_count(&a.mux), 1);
  /* Ids we open ourselves keep their parity. */
  tt_chan_t *c1 = NULL, *c2 = NULL;
  o.priority = TETHER__PRIORITY__PRIORITY_BULK;
  assert_int_equal(tt_mux_open(&a.mux, &o, 100, false, &c1), 0);
  assert_int_equal(tt_mux_open(&a.mux, &o, 100, false, &c2), 0);
  assert_int_equal(c1->id, 1);
  assert_int_equal(c2->id, 3);
  assert_int_equal(tt_mux_open(&b.mux, &o, 100, false, &c1), 0);
  assert_int_equal(c1->id, 2);
  /* Control kinds and channel 0 do not belong to the mux. */
  tt_frame_t f = {.kind = TT_K_PING, .channel = 0};
  assert_int_equal(tt_mux_input(&a.mux, &f), TT_EKIND);
  f.kind = TT_K_DATA;
  assert_int_equal(tt_mux_input(&a.mux, &f), TT_EKIND);
  side_free(&a);
  side_free(&b);
}

static void test_bad_states(void **state) {
  (void)state;
  side_t a, b;
  side_init(&a, true);
  side_init(&b, false);
  b.accept_on_open = false;
  Tether__ChannelAccept acc = TETHER__CHANNEL_ACCEPT__INIT;
  acc.window = 100;
  /* Answers for channels that do not exist. */
  assert_int_equal(inject_msg(&a, TT_K_CH_ACCEPT, 1, &acc.base), TT_ECHANNEL);
  Tether__ChannelReject rej = TETHER__CHANNEL_REJECT__INIT;
  assert_int_equal(inject_msg(&a, TT_K_CH_REJECT, 1, &rej.base), TT_ECHANNEL);
  assert_int_equal(inject_window(&a, 1, 10), TT_ECHANNEL);
  /* Malformed channel-control body. */
  tt_frame_t bad = {.len = 2, .kind = TT_K_CH_OPEN, .channel = 2, .body = (const uint8_t *)"\x1a\x05"};
  assert_int_equal(tt_mux_input(&a.mux, &bad), TT_EPROTO);

  Tether__ChannelOpen o = TETHER__CHANNEL_OPEN__INIT;
  tt_chan_t *ch;
  assert_int_equal(tt_mux_open(&a.mux, &o, 100, false, &ch), 0);
  assert_int_equal(pump(&a, &b), 0);
  assert_non_null(b.pending);
  tt_chan_t *pend = b.pending;
  /* Nothing but an answer is valid on a channel still opening / pending. */
  assert_int_equal(inject_data(&b, 1, 0, 1), TT_ECHANNEL);   /* peer sent data before we accepted */
  assert_int_equal(inject_data(&a, 1, 0, 1), TT_ECHANNEL);   /* data before the accept */
  assert_int_equal(inject_window(&a, 1, 10), TT_ECHANNEL);
  assert_int_equal(tt_mux_send(&b.mux, pend, "x", 1, 0), TT_ESTATE);
  assert_int_equal(tt_mux_grant(&b.mux, pend, 10), TT_ESTATE);
  acc.window = 0;
  assert_int_equal(inject_msg(&a, TT_K_CH_ACCEPT, 1, &acc.base), TT_EPROTO);
  acc.window = 100;
  assert_int_equal(tt_mux_accept(&b.mux, pend, 0, false, 0), TT_EINVAL);
  assert_int_equal(tt_mux_accept(&b.mux, pend, TT_WINDOW_MAX + 1, false, 0), TT_EINVAL);
  assert_int_equal(tt_mux_accept(&b.mux, pend, 100, false, 0), 0);
  assert_int_equal(tt_mux_accept(&b.mux, pend, 100, false, 0), TT_ESTATE);
  settle(&a, &b);
  assert_int_equal(ch->state, TT_CH_OPEN);
  /* A second accept, or a reject, for an open channel. */
  assert_int_equal(inject_msg(&a, TT_K_CH_ACCEPT, 1, &acc.base), TT_ECHANNEL);
  assert_int_equal(inject_msg(&a, TT_K_CH_REJECT, 1, &rej.base), TT_ECHANNEL);
  /* The peer's open of an id we opened. */
  assert_int_equal(inject_open(&b, 1, 100), TT_ECHANNEL);
  side_free(&a);
  side_free(&b);
}

static void test_reject(void **state) {
  (void)state;
  side_t a, b;
  side_init(&a, true);
  side_init(&b, false);
  b.accept_on_open = false;
  Tether__ChannelOpen o = TETHER__CHANNEL_OPEN__INIT;
  tt_chan_t *ch;
  assert_int_equal(tt_mux_open(&a.mux, &o, 100, false, &ch), 0);
  settle(&a, &b);
  assert_non_null(b.pending);
  assert_int_equal(b.pending->state, TT_CH_PENDING);
  assert_int_equal(ch->state, TT_CH_OPENING);
  assert_int_equal(tt_mux_reject(&b.mux, b.pending, TT_EDENIED, "not allowed here"), 0);
  b.pending = NULL;
  assert_int_equal(tt_mux_count(&b.mux), 0); /* freed at once */
  settle(&a, &b);
  assert_int_equal(a.closes, 1);
  assert_int_equal(a.close_ev[0].id, 1);
  assert_int_equal(a.close_ev[0].code, TT_EDENIED);
  assert_string_equal(a.close_ev[0].msg, "not allowed here");
  assert_int_equal(tt_mux_count(&a.mux), 0);
  assert_int_equal(b.closes, 0);

  /* Unprintable text from the peer is not passed on as is. */
  assert_int_equal(tt_mux_open(&a.mux, &o, 100, false, &ch), 0);
  settle(&a, &b);
  assert_int_equal(tt_mux_reject(&b.mux, b.pending, TT_EBUSY, "evil\x1b[2J"), 0);
  settle(&a, &b);
  assert_int_equal(a.closes, 2);
  assert_int_equal(a.close_ev[1].id, 3);
  assert_int_equal(a.close_ev[1].code, TT_EBUSY);
  assert_null(strchr(a.close_ev[1].msg, '\x1b'));

  /* Reject of an open channel is a close. */
  b.accept_on_open = true;
  ch = open_ch(&a, &b, TETHER__PRIORITY__PRIORITY_INTERACTIVE, 100, false);
  tt_chan_t *peer = tt_mux_find(&b.mux, ch->id);
  assert_int_equal(tt_mux_reject(&b.mux, peer, TT_ETIMEOUT, "idle"), 0);
  settle(&a, &b);
  assert_int_equal(a.closes, 3);
  assert_int_equal(a.close_ev[2].code, TT_ETIMEOUT);
  assert_string_equal(a.close_ev[2].msg, "idle");
  assert_int_equal(tt_mux_count(&a.mux) + tt_mux_count(&b.mux), 0);
  side_free(&a);
  side_free(&b);
}

/* ---- credit ---- */

static void test_send_limited_by_window(void **state) {
  (void)state;
  side_t a, b;
  side_init(&a, true);
  side_init(&b, false);
  b.accept_window = 1000;
  tt_chan_t *ch = open_ch(&a, &b, TETHER__PRIORITY__PRIORITY_INTERACTIVE, 2000, false);
  assert_int_equal(ch->send_credit, 1000);
  uint8_t *p = pattern(100000, 1);
  assert_int_equal(tt_mux_send(&a.mux, ch, p, 1001, 0), TT_EWINDOW);
  assert_int_equal(ch->outq.len, 0); /* nothing queued */
  assert_int_equal(ch->send_credit, 1000);
  assert_int_equal(tt_mux_send(&a.mux, ch, p, 600, 0), 0);
  assert_int_equal(tt_mux_sendable(ch), 400);
  size_t q = ch->outq.len;
  assert_int_equal(tt_mux_send(&a.mux, ch, p, 401, TT_FF_EOF), TT_EWINDOW);
  assert_int_equal(ch->outq.len, q);
  assert_false(ch->eof_sent);
  assert_int_equal(tt_mux_send(&a.mux, ch, p + 600, 400, 0), 0);
  assert_int_equal(tt_mux_sendable(ch), 0);
  assert_int_equal(tt_mux_send(&a.mux, ch, p, 1, 0), TT_EWINDOW);
  assert_int_equal(tt_mux_send(&a.mux, ch, p, 1, 0x40), TT_EINVAL);
  settle(&a, &b);
  assert_int_equal(b.rx.len, 1000);
  assert_memory_equal(tt_buf_head(&b.rx), p, 1000);
  /* Without auto credit nothing comes back by itself. */
  assert_int_equal(a.credits, 0);
  assert_int_equal(tt_mux_sendable(ch), 0);
  tt_chan_t *peer = tt_mux_find(&b.mux, ch->id);
  tt_mux_consumed(&b.mux, peer, 1000);
  assert_false(tt_mux_has_output(&b.mux));
  /* Explicit grant (the broker's relay path). */
  assert_int_equal(tt_mux_grant(&b.mux, peer, 0), 0);
  assert_int_equal(tt_mux_grant(&b.mux, peer, 99000), 0);
  assert_int_equal(peer->recv_left, 99000);
  settle(&a, &b);
  assert_int_equal(a.credits, 1);
  assert_int_equal(a.credit_total, 99000);
  assert_int_equal(tt_mux_sendable(ch), 99000);

  /* Large sends are cut into chunks of at most TT_DATA_CHUNK_MAX; EOF on the last only. */
  assert_int_equal(tt_mux_send(&a.mux, ch, p, 99000, TT_FF_EOF), 0);
  tt_buf_t out;
  tt_buf_init(&out, WIRE_MAX);
  tt_mux_pull(&a.mux, &out, SIZE_MAX);
  fr_t fr[16];
  size_t n = parse(&out, fr, 16);
  assert_int_equal(n, (99000 + TT_DATA_CHUNK_MAX - 1) / TT_DATA_CHUNK_MAX);
  size_t total = 0;
  for (size_t i = 0; i < n; i++) {
    assert_int_equal(fr[i].kind, TT_K_DATA);
    assert_int_equal(fr[i].ch, ch->id);
    assert_true(fr[i].len <= TT_DATA_CHUNK_MAX);
    assert_memory_equal(fr[i].body, p + total, fr[i].len);
    total += fr[i].len;
    assert_int_equal(fr[i].flags, i + 1 == n ? TT_FF_EOF : 0);
  }
  assert_int_equal(total, 99000);
  assert_int_equal(tt_frame_reader_feed(&b.rd, tt_buf_slice(&out).ptr, out.len, to_mux, &b), 0);
  assert_int_equal(b.rx.len, 100000);
  assert_memory_equal(tt_buf_head(&b.rx) + 1000, p, 99000);
  tt_buf_free(&out);
  free(p);
  side_free(&a);
  side_free(&b);
}

static void test_auto_credit(void **state) {
  (void)state;
  side_t a, b;
  side_init(&a, true);
  side_init(&b, false);
  b.accept_window = 1000;
  b.accept_auto = true;
  b.consume_on_data = true;
  tt_chan_t *ch = open_ch(&a, &b, TETHER__PRIORITY__PRIORITY_BULK, 1000, false);
  tt_chan_t *peer = tt_mux_find(&b.mux, ch->id);
  uint8_t *p = pattern(5000, 3);
  assert_int_equal(tt_mux_send(&a.mux, ch, p, 499, 0), 0);
  settle(&a, &b);
  /* Less than half the window consumed: no WINDOW yet. */
  assert_int_equal(a.credits, 0);
  assert_int_equal(ch->send_credit, 501);
  assert_int_equal(peer->recv_left, 501);
  assert_int_equal(peer->consumed, 499);
  assert_int_equal(tt_mux_send(&a.mux, ch, p + 499, 1, 0), 0);
  assert_int_equal(ch->send_credit, 500);
  settle(&a, &b);
  /* Half consumed: the 500 bytes come back, the sender is at the full window again. */
  assert_int_equal(a.credits, 1);
  assert_int_equal(a.credit_total, 500);
  assert_int_equal(ch->send_credit, 1000);
  assert_int_equal(peer->recv_left, 1000);
  assert_int_equal(peer->consumed, 0);
  /* A long transfer never stalls and never overruns: send what is sendable, repeatedly. */
  size_t sent = 500;
  for (int round = 0; round < 100 && sent < 5000; round++) {
    size_t n = tt_mux_sendable(ch);
    if (n > 5000 - sent) n = 5000 - sent;
    assert_true(n > 0);
    assert_int_equal(tt_mux_send(&a.mux, ch, p + sent, n, 0), 0);
    sent += n;
    settle(&a, &b);
  }
  assert_int_equal(sent, 5000);
  assert_int_equal(b.rx.len, 5000);
  assert_memory_equal(tt_buf_head(&b.rx), p, 5000);
  assert_true(peer->recv_left <= 1000);
  free(p);
  side_free(&a);
  side_free(&b);
}

static void test_peer_overruns_window(void **state) {
  (void)state;
  side_t a, b;
  side_init(&a, true);
  side_init(&b, false);
  b.accept_window = 100;
  tt_chan_t *ch = open_ch(&a, &b, TETHER__PRIORITY__PRIORITY_INTERACTIVE, 100, false);
  assert_int_equal(inject_data(&b, ch->id, 0, 101), TT_EWINDOW);
  assert_int_equal(b.data_frames, 0);
  assert_int_equal(inject_data(&b, ch->id, 0, 60), 0);
  assert_int_equal(inject_data(&b, ch->id, 0, 41), TT_EWINDOW);
  assert_int_equal(inject_data(&b, ch->id, 0, 40), 0); /* exactly the window */
  assert_int_equal(inject_data(&b, ch->id, 0, 1), TT_EWINDOW);
  assert_int_equal(b.data_frames, 2);
  /* The other direction too, through the frame reader. */
  tt_chan_t *peer = tt_mux_find(&b.mux, ch->id);
  assert_int_equal(tt_mux_send(&b.mux, peer, "0123456789", 10, 0), 0);
  peer->send_credit += 1000; /* a peer that ignores our window */
  uint8_t *p = pattern(1000, 9);
  assert_int_equal(tt_mux_send(&b.mux, peer, p, 1000, 0), 0);
  assert_int_equal(pump(&b, &a), TT_EWINDOW);
  free(p);
  side_free(&a);
  side_free(&b);
}

/* DATA that no honest peer sends is a protocol error, whatever the window: an empty frame
 * that is not an EOF (a header for nothing, which a relay would pass on for free), and a
 * frame larger than the chunk size. */
static void test_data_frame_rules(void **state) {
  (void)state;
  side_t a, b;
  side_init(&a, true);
  side_init(&b, false);
  b.accept_window = TT_WINDOW_MAX;
  tt_chan_t *ch = open_ch(&a, &b, TETHER__PRIORITY__PRIORITY_BULK, TT_WINDOW_MAX, false);
  assert_int_equal(inject_data(&b, ch->id, 0, 0), TT_EPROTO);
  assert_int_equal(inject_data(&b, ch->id, 0, TT_DATA_CHUNK_MAX + 1), TT_EPROTO);
  assert_int_equal(inject_data(&b, ch->id, 0, TT_DATA_CHUNK_MAX), 0);
  assert_int_equal(inject_data(&b, ch->id, TT_FF_EOF, 0), 0); /* a bare EOF is fine */
  assert_int_equal(b.data_frames, 2);
  side_free(&a);
  side_free(&b);
}

/* Small sends toward a peer that is not reading join the plain DATA frame waiting at the
 * tail: a queue of keystrokes costs a header per chunk, not per keystroke. The bytes and
 * their order are what was sent; EOF and zstd chunks keep frames of their own. */
static void test_small_sends_coalesce(void **state) {
  (void)state;
  side_t a, b;
  side_init(&a, true);
  side_init(&b, false);
  b.accept_window = TT_WINDOW_DEFAULT;
  tt_chan_t *ch = open_ch(&a, &b, TETHER__PRIORITY__PRIORITY_INTERACTIVE, TT_WINDOW_DEFAULT, true);
  for (int i = 0; i < 1000; i++) {
    char k = (char)('a' + i % 26);
    assert_int_equal(tt_mux_send(&a.mux, ch, &k, 1, 0), 0);
  }
  /* 1000 bytes in one frame: one header, not a thousand. */
  assert_int_equal(ch->outq.len, TT_FRAME_HDR + 1000);
  uint8_t big[TT_DATA_CHUNK_MAX];
  memset(big, 'z', sizeof(big));
  assert_int_equal(tt_mux_send(&a.mux, ch, big, sizeof(big), 0), 0);
  /* The tail frame filled up to the chunk size, the rest started a new frame. */
  assert_int_equal(ch->outq.len, 2 * TT_FRAME_HDR + 1000 + sizeof(big));
  /* The big send topped the first frame up to the chunk size and put its last 1000 bytes
   * in a second frame, which has room: "!" and its EOF join that one. */
  assert_int_equal(tt_mux_send(&a.mux, ch, "!", 1, TT_FF_EOF), 0);
  assert_int_equal(ch->outq.len, 2 * TT_FRAME_HDR + 1001 + sizeof(big));
  assert_int_equal(pump(&a, &b), 0);
  assert_int_equal(b.rx.len, 1001 + sizeof(big));
  const uint8_t *r = tt_buf_head(&b.rx);
  for (int i = 0; i < 1000; i++) assert_int_equal(r[i], 'a' + i % 26);
  assert_int_equal(r[1000], 'z');
  assert_int_equal(r[1000 + sizeof(big)], '!');
  assert_int_equal(b.last_flags & TT_FF_EOF, TT_FF_EOF);
  /* A small send with EOF joins a tail frame that has room, which then carries the EOF. */
  tt_chan_t *ch2 = open_ch(&a, &b, TETHER__PRIORITY__PRIORITY_INTERACTIVE, TT_WINDOW_DEFAULT, true);
  assert_int_equal(tt_mux_send(&a.mux, ch2, "ab", 2, 0), 0);
  assert_int_equal(tt_mux_send(&a.mux, ch2, "c", 1, TT_FF_EOF), 0);
  assert_int_equal(ch2->outq.len, TT_FRAME_HDR + 3);
  assert_int_equal(ch2->outq.data[ch2->outq.off + 5], TT_FF_EOF);
  side_free(&a);
  side_free(&b);
}

static void test_window_max(void **state) {
  (void)state;
  side_t a, b;
  side_init(&a, true);
  side_init(&b, false);
  b.accept_window = TT_WINDOW_MAX - 10;
  tt_chan_t *ch = open_ch(&a, &b, TETHER__PRIORITY__PRIORITY_BULK, TT_WINDOW_MAX, false);
  assert_int_equal(ch->send_credit, TT_WINDOW_MAX - 10);
  assert_int_equal(inject_window(&a, ch->id, 11), TT_EWINDOW);
  assert_int_equal(ch->send_credit, TT_WINDOW_MAX - 10);
  assert_int_equal(inject_window(&a, ch->id, 0xffffffffu), TT_EWINDOW);
  assert_int_equal(inject_window(&a, ch->id, 0), TT_EWINDOW);
  assert_int_equal(a.credits, 0);
  assert_int_equal(inject_window(&a, ch->id, 10), 0);
  assert_int_equal(ch->send_credit, TT_WINDOW_MAX);
  assert_int_equal(a.credits, 1);
  assert_int_equal(inject_window(&a, ch->id, 1), TT_EWINDOW);
  /* Our own grants respect the same ceiling. */
  assert_int_equal(ch->recv_left, TT_WINDOW_MAX);
  assert_int_equal(tt_mux_grant(&a.mux, ch, 1), TT_EWINDOW);
  assert_false(tt_mux_has_output(&a.mux));
  tt_chan_t *peer = tt_mux_find(&b.mux, ch->id);
  assert_int_equal(tt_mux_grant(&b.mux, peer, 11), TT_EWINDOW);
  assert_int_equal(tt_mux_grant(&b.mux, peer, 0xffffffffu), TT_EWINDOW);
  assert_int_equal(peer->recv_left, TT_WINDOW_MAX - 10);
  assert_int_equal(tt_mux_grant(&b.mux, peer, 10), 0);
  assert_int_equal(peer->recv_left, TT_WINDOW_MAX);
  side_free(&a);
  side_free(&b);
}

static void test_data_unknown_channel_and_after_eof(void **state) {
  (void)state;
  side_t a, b;
  side_init(&a, true);
  side_init(&b, false);
  assert_int_equal(inject_data(&b, 1, 0, 1), TT_ECHANNEL);
  assert_int_equal(inject_data(&b, 99, 0, 0), TT_ECHANNEL);
  tt_chan_t *ch = open_ch(&a, &b, TETHER__PRIORITY__PRIORITY_INTERACTIVE, 1000, false);
  assert_int_equal(inject_data(&b, ch->id + 2, 0, 1), TT_ECHANNEL);
  assert_int_equal(inject_data(&b, ch->id + 1, 0, 1), TT_ECHANNEL);
  assert_int_equal(tt_mux_send(&a.mux, ch, "end", 3, TT_FF_EOF), 0);
  assert_true(ch->eof_sent);
  settle(&a, &b);
  tt_chan_t *peer = tt_mux_find(&b.mux, ch->id);
  assert_true(peer->eof_rcvd);
  assert_int_equal(b.last_flags, TT_FF_EOF);
  size_t frames = b.data_frames;
  assert_int_equal(inject_data(&b, ch->id, 0, 1), TT_EPROTO);
  assert_int_equal(inject_data(&b, ch->id, TT_FF_EOF, 0), TT_EPROTO);
  assert_int_equal(b.data_frames, frames); /* nothing delivered after EOF */
  /* An EOF-only empty frame is fine. */
  assert_int_equal(tt_mux_send(&b.mux, peer, NULL, 0, TT_FF_EOF), 0);
  settle(&a, &b);
  assert_true(ch->eof_rcvd);
  assert_int_equal(a.data_frames, 1);
  side_free(&a);
  side_free(&b);
}

/* ---- the channel limit ---- */

static void test_channel_limit(void **state) {
  (void)state;
  side_t a, b;
  side_init(&a, true);
  side_init(&b, false);
  b.accept_window = 1000;
  tt_chan_t *chans[TT_CHANNELS_MAX];
  for (uint32_t i = 0; i + 1 < TT_CHANNELS_MAX; i++)
    chans[i] = open_ch(&a, &b, TETHER__PRIORITY__PRIORITY_BULK, 1000, false);
  assert_int_equal(tt_mux_count(&a.mux), TT_CHANNELS_MAX - 1);
  assert_int_equal(tt_mux_count(&b.mux), TT_CHANNELS_MAX - 1);
  /* Both sides open the 64th at the same time: each is the 65th for the other. */
  Tether__ChannelOpen o = TETHER__CHANNEL_OPEN__INIT;
  tt_chan_t *ca = NULL, *cb = NULL;
  assert_int_equal(tt_mux_open(&a.mux, &o, 1000, false, &ca), 0);
  assert_int_equal(tt_mux_open(&b.mux, &o, 1000, false, &cb), 0);
  uint32_t ida = ca->id, idb = cb->id;
  assert_int_equal(tt_mux_count(&a.mux), TT_CHANNELS_MAX);
  /* Local opens past the limit: TT_EFULL, nothing queued, no id used. */
  size_t ctrl_len = a.mux.ctrl.len;
  tt_chan_t *cx = (tt_chan_t *)&o;
  assert_int_equal(tt_mux_open(&a.mux, &o, 1000, false, &cx), TT_EFULL);
  assert_null(cx);
  assert_int_equal(a.mux.ctrl.len, ctrl_len);
  assert_int_equal(tt_mux_count(&a.mux), TT_CHANNELS_MAX);
  /* The peer's 65th open is refused with a reject, not a connection error. */
  settle(&a, &b);
  assert_int_equal(a.closes, 1);
  assert_int_equal(a.close_ev[0].id, ida);
  assert_int_equal(a.close_ev[0].code, TT_EBUSY);
  assert_int_equal(b.closes, 1);
  assert_int_equal(b.close_ev[0].id, idb);
  assert_int_equal(b.close_ev[0].code, TT_EBUSY);
  assert_int_equal(tt_mux_count(&a.mux), TT_CHANNELS_MAX - 1);
  assert_int_equal(tt_mux_count(&b.mux), TT_CHANNELS_MAX - 1);

  /* Fill up to 64 and inject a 65th open: the answer is a CH_REJECT on that id. */
  tt_chan_t *last = open_ch(&a, &b, TETHER__PRIORITY__PRIORITY_BULK, 1000, false);
  assert_int_equal(tt_mux_count(&b.mux), TT_CHANNELS_MAX);
  uint32_t extra = last->id + 2;
  int opens = b.opens;
  assert_int_equal(inject_open(&b, extra, 1000), 0);
  assert_int_equal(b.opens, opens);
  assert_int_equal(tt_mux_count(&b.mux), TT_CHANNELS_MAX);
  assert_null(tt_mux_find(&b.mux, extra));
  tt_buf_t out;
  tt_buf_init(&out, WIRE_MAX);
  tt_mux_pull(&b.mux, &out, SIZE_MAX);
  fr_t fr[4];
  assert_int_equal(parse(&out, fr, 4), 1);
  assert_int_equal(fr[0].kind, TT_K_CH_REJECT);
  assert_int_equal(fr[0].ch, extra);
  tt_msg_t msg;
  assert_int_equal(tt_msg_unpack(&msg, fr[0].kind, fr[0].body, fr[0].len, TT_MSG_BUDGET), 0);
  assert_int_equal(((Tether__ChannelReject *)msg.m)->code, TETHER__ERROR_CODE__ERR_BUSY);
  tt_msg_free(&msg);
  tt_buf_free(&out);

  /* Once one closes, there is room again. */
  assert_int_equal(tt_mux_close(&a.mux, chans[0], 0, ""), 0);
  settle(&a, &b);
  assert_int_equal(tt_mux_count(&a.mux), TT_CHANNELS_MAX - 1);
  open_ch(&a, &b, TETHER__PRIORITY__PRIORITY_BULK, 1000, false);
  side_free(&a);
  side_free(&b);
  assert_int_equal(a.closes, 1 + TT_CHANNELS_MAX);
}

/* ---- the scheduler ---- */

static void test_priority(void **state) {
  (void)state;
  side_t a, b;
  side_init(&a, true);
  side_init(&b, false);
  tt_chan_t *bulk = open_ch(&a, &b, TETHER__PRIORITY__PRIORITY_BULK, 1000, false);
  tt_chan_t *inter = open_ch(&a, &b, TETHER__PRIORITY__PRIORITY_INTERACTIVE, 1000, false);
  assert_int_equal(bulk->prio, TT_PRIO_BULK);
  assert_int_equal(inter->prio, TT_PRIO_INTERACTIVE);
  size_t big = 200u * 1024u;
  uint8_t *p = pattern(big, 5);
  assert_int_equal(tt_mux_send(&a.mux, bulk, p, big, 0), 0);
  tt_buf_t out;
  tt_buf_init(&out, WIRE_MAX);
  fr_t fr[64];
  /* A small pull takes one bulk frame. */
  assert_true(tt_mux_pull(&a.mux, &out, 1) > 0);
  assert_int_equal(parse(&out, fr, 64), 1);
  assert_int_equal(fr[0].ch, bulk->id);
  tt_buf_reset(&out);
  /* Then a keystroke and a ping arrive. */
  Tether__Ping ping = TETHER__PING__INIT;
  ping.nonce = 77;
  assert_int_equal(tt_mux_control(&a.mux, TT_K_PING, &ping.base), 0);
  assert_int_equal(tt_mux_send(&a.mux, inter, "k", 1, 0), 0);
  assert_true(tt_mux_pull(&a.mux, &out, 1) > 0);
  assert_int_equal(parse(&out, fr, 64), 1);
  assert_int_equal(fr[0].kind, TT_K_PING); /* control first */
  tt_buf_reset(&out);
  assert_true(tt_mux_pull(&a.mux, &out, 1) > 0);
  assert_int_equal(parse(&out, fr, 64), 1);
  assert_int_equal(fr[0].ch, inter->id); /* then the keystroke, ahead of the bulk queue */
  assert_int_equal(fr[0].len, 1);
  tt_buf_reset(&out);
  assert_true(tt_mux_pull(&a.mux, &out, 1) > 0);
  assert_int_equal(parse(&out, fr, 64), 1);
  assert_int_equal(fr[0].ch, bulk->id);
  tt_buf_reset(&out);
  /* A big pull: control, then interactive, then bulk, whatever the queueing order. */
  assert_int_equal(tt_mux_send(&a.mux, inter, "ab", 2, 0), 0);
  assert_int_equal(tt_mux_control(&a.mux, TT_K_PING, &ping.base), 0);
  assert_int_equal(tt_mux_grant(&a.mux, inter, 5), 0);
  tt_mux_pull(&a.mux, &out, SIZE_MAX);
  size_t n = parse(&out, fr, 64);
  assert_true(n > 4);
  assert_int_equal(fr[0].kind, TT_K_PING);
  assert_int_equal(fr[1].kind, TT_K_WINDOW);
  assert_int_equal(fr[2].ch, inter->id);
  assert_int_equal(fr[2].kind, TT_K_DATA);
  for (size_t i = 3; i < n; i++) assert_int_equal(fr[i].ch, bulk->id);
  assert_false(tt_mux_has_output(&a.mux));
  tt_buf_free(&out);
  free(p);
  side_free(&a);
  side_free(&b);
}

static void test_round_robin(void **state) {
  (void)state;
  side_t a, b;
  side_init(&a, true);
  side_init(&b, false);
  tt_chan_t *c1 = open_ch(&a, &b, TETHER__PRIORITY__PRIORITY_BULK, 1000, false);
  tt_chan_t *c2 = open_ch(&a, &b, TETHER__PRIORITY__PRIORITY_BULK, 1000, false);
  tt_chan_t *c3 = open_ch(&a, &b, TETHER__PRIORITY__PRIORITY_BULK, 1000, false);
  uint8_t *p = pattern(4 * TT_DATA_CHUNK_MAX, 1);
  assert_int_equal(tt_mux_send(&a.mux, c1, p, 4 * TT_DATA_CHUNK_MAX, 0), 0);
  assert_int_equal(tt_mux_send(&a.mux, c2, p, 4 * TT_DATA_CHUNK_MAX, 0), 0);
  tt_buf_t out;
  tt_buf_init(&out, WIRE_MAX);
  uint32_t seq[16];
  size_t n = 0;
  while (tt_mux_has_output(&a.mux)) {
    assert_true(n < 16);
    assert_true(tt_mux_pull(&a.mux, &out, 1) > 0);
    fr_t fr[2];
    assert_int_equal(parse(&out, fr, 2), 1);
    seq[n++] = fr[0].ch;
    tt_buf_reset(&out);
    /* A third channel joins half way and takes its turn. */
    if (n == 3) assert_int_equal(tt_mux_send(&a.mux, c3, p, 2 * TT_DATA_CHUNK_MAX, 0), 0);
  }
  assert_int_equal(n, 10);
  /* While several channels have data, no channel is served twice in a row. */
  for (size_t i = 1; i < 8; i++) assert_int_not_equal(seq[i], seq[i - 1]);
  size_t count[3] = {0, 0, 0};
  for (size_t i = 0; i < n; i++) count[(seq[i] - 1) / 2]++;
  assert_int_equal(count[0], 4);
  assert_int_equal(count[1], 4);
  assert_int_equal(count[2], 2);
  /* A bigger pull interleaves as well. */
  assert_int_equal(tt_mux_send(&a.mux, c1, p, 2 * TT_DATA_CHUNK_MAX, 0), 0);
  assert_int_equal(tt_mux_send(&a.mux, c2, p, 2 * TT_DATA_CHUNK_MAX, 0), 0);
  tt_mux_pull(&a.mux, &out, SIZE_MAX);
  fr_t fr[8];
  assert_int_equal(parse(&out, fr, 8), 4);
  assert_int_not_equal(fr[0].ch, fr[1].ch);
  assert_int_not_equal(fr[1].ch, fr[2].ch);
  assert_int_not_equal(fr[2].ch, fr[3].ch);
  tt_buf_free(&out);
  free(p);
  side_free(&a);
  side_free(&b);
}

static void test_close_after_data(void **state) {
  (void)state;
  side_t a, b;
  side_init(&a, true);
  side_init(&b, false);
  tt_chan_t *ch = open_ch(&a, &b, TETHER__PRIORITY__PRIORITY_BULK, 1000, false);
  tt_chan_t *other = open_ch(&a, &b, TETHER__PRIORITY__PRIORITY_INTERACTIVE, 1000, false);
  uint32_t id = ch->id;
  size_t len = 2 * TT_DATA_CHUNK_MAX + 100;
  uint8_t *p = pattern(len, 2);
  assert_int_equal(tt_mux_send(&a.mux, ch, p, len, 0), 0);
  assert_int_equal(tt_mux_close(&a.mux, ch, TT_ECLOSED, "finished"), 0);
  assert_int_equal(tt_mux_send(&a.mux, other, "i", 1, 0), 0);
  tt_buf_t out;
  tt_buf_init(&out, WIRE_MAX);
  tt_mux_pull(&a.mux, &out, SIZE_MAX);
  fr_t fr[8];
  size_t n = parse(&out, fr, 8);
  assert_int_equal(n, 5);
  /* The interactive frame may go first; on the closed channel, data then the close. */
  size_t seen = 0;
  for (size_t i = 0; i < n; i++) {
    if (fr[i].ch != id) continue;
    if (seen < 3) assert_int_equal(fr[i].kind, TT_K_DATA);
    else assert_int_equal(fr[i].kind, TT_K_CH_CLOSE);
    seen++;
  }
  assert_int_equal(seen, 4);
  assert_int_equal(tt_frame_reader_feed(&b.rd, tt_buf_slice(&out).ptr, out.len, to_mux, &b), 0);
  assert_int_equal(b.rx.len, len + 1);
  assert_int_equal(b.closes, 1);
  assert_int_equal(b.close_ev[0].code, TT_ECLOSED);
  assert_string_equal(b.close_ev[0].msg, "finished");
  settle(&a, &b);
  assert_null(tt_mux_find(&a.mux, id));
  assert_int_equal(tt_mux_count(&a.mux), 1);
  tt_buf_free(&out);
  free(p);
  side_free(&a);
  side_free(&b);
}

static void test_simultaneous_close(void **state) {
  (void)state;
  /* Both ends close before either close is on the wire; whichever order the bytes then
   * travel in, both ends end up with nothing and without an error. */
  for (int order = 0; order < 3; order++) {
    side_t a, b;
    side_init(&a, true);
    side_init(&b, false);
    tt_chan_t *ch = open_ch(&a, &b, TETHER__PRIORITY__PRIORITY_BULK, 1000, false);
    tt_chan_t *peer = tt_mux_find(&b.mux, ch->id);
    assert_int_equal(tt_mux_send(&a.mux, ch, "abc", 3, 0), 0);
    assert_int_equal(tt_mux_close(&a.mux, ch, 0, "a"), 0);
    assert_int_equal(tt_mux_close(&b.mux, peer, 0, "b"), 0);
    if (order == 0) {
      assert_int_equal(pump(&a, &b), 0);
      assert_int_equal(pump(&b, &a), 0);
    } else if (order == 1) {
      assert_int_equal(pump(&b, &a), 0);
      assert_int_equal(pump(&a, &b), 0);
    } else {
      tt_buf_t wa, wb;
      tt_buf_init(&wa, WIRE_MAX);
      tt_buf_init(&wb, WIRE_MAX);
      tt_mux_pull(&a.mux, &wa, SIZE_MAX);
      tt_mux_pull(&b.mux, &wb, SIZE_MAX);
      assert_int_equal(tt_frame_reader_feed(&b.rd, tt_buf_slice(&wa).ptr, wa.len, to_mux, &b), 0);
      assert_int_equal(tt_frame_reader_feed(&a.rd, tt_buf_slice(&wb).ptr, wb.len, to_mux, &a), 0);
      tt_buf_free(&wa);
      tt_buf_free(&wb);
    }
    settle(&a, &b);
    assert_int_equal(tt_mux_count(&a.mux), 0);
    assert_int_equal(tt_mux_count(&b.mux), 0);
    assert_int_equal(a.closes + b.closes, 0); /* both closes were local */
    side_free(&a);
    side_free(&b);
  }
}

static void test_cancel_crosses_reject(void **state) {
  (void)state;
  /* The opener gives up on a channel while the peer is rejecting it: the close and the
   * reject cross on the wire. Neither is an error; both ends end up with nothing. */
  side_t a, b;
  side_init(&a, true);
  side_init(&b, false);
  b.accept_on_open = false;
  Tether__ChannelOpen o = TETHER__CHANNEL_OPEN__INIT;
  tt_chan_t *ch;
  assert_int_equal(tt_mux_open(&a.mux, &o, 100, false, &ch), 0);
  assert_int_equal(pump(&a, &b), 0);
  assert_non_null(b.pending);
  assert_int_equal(tt_mux_close(&a.mux, ch, TT_ECLOSED, "cancel"), 0);
  assert_int_equal(tt_mux_reject(&b.mux, b.pending, TT_EDENIED, "no"), 0);
  b.pending = NULL;
  assert_int_equal(pump(&a, &b), 0);
  assert_int_equal(pump(&b, &a), 0);
  settle(&a, &b);
  assert_int_equal(tt_mux_count(&a.mux), 0);
  assert_int_equal(tt_mux_count(&b.mux), 0);
  assert_int_equal(a.closes + b.closes, 0);
  /* A close for a channel of our own parity that we never had is still an error. */
  Tether__ChannelClose cl = TETHER__CHANNEL_CLOSE__INIT;
  assert_int_equal(inject_msg(&a, TT_K_CH_CLOSE, 11, &cl.base), TT_ECHANNEL);
  assert_int_equal(inject_msg(&b, TT_K_CH_CLOSE, 12, &cl.base), TT_ECHANNEL);
  side_free(&a);
  side_free(&b);
}

static void test_control_not_overtaken(void **state) {
  (void)state;
  /* The accepter answers, queues a large reply and sends data at once, and its writer can
   * take only a little per pull: the data must still follow the CH_ACCEPT. */
  side_t a, b;
  side_init(&a, true);
  side_init(&b, false);
  b.accept_on_open = false;
  Tether__ChannelOpen o = TETHER__CHANNEL_OPEN__INIT;
  tt_chan_t *ch;
  assert_int_equal(tt_mux_open(&a.mux, &o, 1000, false, &ch), 0);
  assert_int_equal(pump(&a, &b), 0);
  tt_chan_t *peer = b.pending;
  assert_non_null(peer);
  assert_int_equal(tt_mux_accept(&b.mux, peer, 1000, false, 0), 0);
  char text[700];
  memset(text, 'r', sizeof text - 1);
  text[sizeof text - 1] = '\0';
  Tether__Error e = TETHER__ERROR__INIT;
  e.message = tt_text(text);
  for (int i = 0; i < 2; i++) assert_int_equal(tt_mux_control(&b.mux, TT_K_ERROR, &e.base), 0);
  assert_int_equal(tt_mux_send(&b.mux, peer, "data", 4, 0), 0);
  tt_buf_t out;
  tt_buf_init(&out, 1000); /* room for one reply at a time */
  bool data_seen = false;
  int ctrl_seen = 0;
  for (int i = 0; i < 10 && tt_mux_has_output(&b.mux); i++) {
    tt_mux_pull(&b.mux, &out, SIZE_MAX);
    fr_t fr[8];
    size_t n = parse(&out, fr, 8);
    for (size_t k = 0; k < n; k++) {
      if (fr[k].kind == TT_K_DATA) {
        assert_int_equal(ctrl_seen, 3); /* accept and both replies went before it */
        data_seen = true;
      } else {
        assert_false(data_seen);
        ctrl_seen++;
      }
    }
    assert_int_equal(tt_frame_reader_feed(&a.rd, tt_buf_slice(&out).ptr, out.len, to_mux, &a), 0);
    tt_buf_reset(&out);
  }
  assert_false(tt_mux_has_output(&b.mux));
  assert_true(data_seen);
  assert_int_equal(a.ctrl_frames, 2);
  assert_int_equal(ch->state, TT_CH_OPEN);
  assert_int_equal(a.rx.len, 4);
  tt_buf_free(&out);
  side_free(&a);
  side_free(&b);
}

/* ---- teardown and the control queue ---- */

static void test_destroy(void **state) {
  (void)state;
  side_t a, b;
  side_init(&a, true);
  side_init(&b, false);
  a.accept_on_open = false;
  /* a holds: one open channel with queued data, one still opening, one pending from b,
   * one it closed itself. */
  tt_chan_t *open1 = open_ch(&a, &b, TETHER__PRIORITY__PRIORITY_BULK, 1000, false);
  tt_chan_t *closing = open_ch(&a, &b, TETHER__PRIORITY__PRIORITY_BULK, 1000, false);
  uint8_t *p = pattern(50000, 4);
  assert_int_equal(tt_mux_send(&a.mux, open1, p, 50000, 0), 0);
  free(p);
  assert_int_equal(tt_mux_close(&a.mux, closing, 0, ""), 0);
  Tether__ChannelOpen o = TETHER__CHANNEL_OPEN__INIT;
  tt_chan_t *opening, *bopen;
  assert_int_equal(tt_mux_open(&a.mux, &o, 1000, false, &opening), 0);
  assert_int_equal(tt_mux_open(&b.mux, &o, 1000, false, &bopen), 0);
  assert_int_equal(pump(&b, &a), 0);
  assert_non_null(a.pending);
  Tether__Ping ping = TETHER__PING__INIT;
  assert_int_equal(tt_mux_control(&a.mux, TT_K_PING, &ping.base), 0);
  uint32_t want[3] = {open1->id, opening->id, a.pending->id};
  assert_int_equal(tt_mux_count(&a.mux), 4);
  tt_mux_destroy(&a.mux);
  /* Every channel the application still owned hears TT_ECLOSED; the one it closed does not. */
  assert_int_equal(a.closes, 3);
  for (int i = 0; i < 3; i++) {
    bool found = false;
    for (int k = 0; k < 3; k++)
      if (a.close_ev[k].id == want[i]) found = true;
    assert_true(found);
    assert_int_equal(a.close_ev[i].code, TT_ECLOSED);
  }
  assert_int_equal(tt_mux_count(&a.mux), 0);
  assert_false(tt_mux_has_output(&a.mux));
  assert_null(a.mux.ctrl.data);
  tt_mux_destroy(&a.mux); /* twice is harmless */
  assert_int_equal(a.closes, 3);
  /* b: two open (one half-closed by a's close, not yet delivered) and one opening. */
  assert_int_equal(tt_mux_count(&b.mux), 3);
  tt_mux_destroy(&b.mux);
  assert_int_equal(b.closes, 3);
  for (int i = 0; i < 3; i++) assert_int_equal(b.close_ev[i].code, TT_ECLOSED);
  side_free(&a);
  side_free(&b);
}

static void test_control_queue_cap(void **state) {
  (void)state;
  side_t a, b;
  side_init(&a, true);
  side_init(&b, false);
  tt_chan_t *ch = open_ch(&a, &b, TETHER__PRIORITY__PRIORITY_INTERACTIVE, 1000, false);
  char text[200];
  memset(text, 'p', sizeof text - 1);
  text[sizeof text - 1] = '\0';
  Tether__Error e = TETHER__ERROR__INIT;
  e.message = tt_text(text);
  size_t queued = 0;
  int rc;
  while ((rc = tt_mux_control(&a.mux, TT_K_ERROR, &e.base)) == 0) {
    queued++;
    assert_true(a.mux.ctrl.len <= TT_CTRL_QUEUE_MAX);
    assert_true(queued < TT_CTRL_QUEUE_MAX);
  }
  assert_int_equal(rc, TT_EFULL);
  size_t frame = TT_FRAME_HDR + protobuf_c_message_get_packed_size(&e.base);
  assert_int_equal(a.mux.ctrl.len, queued * frame); /* nothing partial */
  assert_true(a.mux.ctrl.len + frame > TT_CTRL_QUEUE_MAX);
  assert_true(queued >= TT_CTRL_QUEUE_MAX / frame);
  /* Smaller frames may still fit in what is left; none goes past the cap. Fill with
   * ever smaller ones down to an empty Ping (a bare header), so that nothing fits. */
  size_t len = a.mux.ctrl.len;
  Tether__Ping ping = TETHER__PING__INIT;
  ping.nonce = UINT64_MAX;
  size_t pings = 0;
  for (int pass = 0; pass < 2; pass++) {
    while ((rc = tt_mux_control(&a.mux, TT_K_PING, &ping.base)) == 0) {
      pings++;
      assert_true(a.mux.ctrl.len <= TT_CTRL_QUEUE_MAX);
    }
    assert_int_equal(rc, TT_EFULL);
    assert_true(a.mux.ctrl.len + TT_FRAME_HDR + protobuf_c_message_get_packed_size(&ping.base) >
                TT_CTRL_QUEUE_MAX);
    ping.nonce = 0;
  }
  assert_true(a.mux.ctrl.len >= len);
  assert_true(a.mux.ctrl.len > TT_CTRL_QUEUE_MAX - TT_FRAME_HDR);
  /* Everything that needs the control queue fails cleanly while it is full. */
  len = a.mux.ctrl.len;
  uint32_t left = ch->recv_left;
  assert_int_equal(tt_mux_grant(&a.mux, ch, 100), TT_EFULL);
  assert_int_equal(ch->recv_left, left);
  Tether__ChannelOpen o = TETHER__CHANNEL_OPEN__INIT;
  tt_chan_t *nc;
  assert_int_equal(tt_mux_open(&a.mux, &o, 1000, false, &nc), TT_EFULL);
  assert_null(nc);
  assert_int_equal(tt_mux_count(&a.mux), 1);
  assert_int_equal(tt_mux_close(&a.mux, ch, 0, ""), 0); /* a close rides the channel queue */
  assert_int_equal(a.mux.ctrl.len, len);
  /* Draining makes room again, and the peer gets every frame. */
  settle(&a, &b);
  assert_int_equal(b.ctrl_frames, queued + pings);
  assert_null(a.mux.ctrl.data);
  assert_int_equal(tt_mux_count(&a.mux), 0);
  assert_int_equal(tt_mux_control(&a.mux, TT_K_PING, &ping.base), 0);
  side_free(&a);
  side_free(&b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_lifecycle_both_ways),
      cmocka_unit_test(test_open_args),
      cmocka_unit_test(test_id_parity),
      cmocka_unit_test(test_bad_states),
      cmocka_unit_test(test_reject),
      cmocka_unit_test(test_send_limited_by_window),
      cmocka_unit_test(test_auto_credit),
      cmocka_unit_test(test_peer_overruns_window),
      cmocka_unit_test(test_data_frame_rules),
      cmocka_unit_test(test_small_sends_coalesce),
      cmocka_unit_test(test_window_max),
      cmocka_unit_test(test_data_unknown_channel_and_after_eof),
      cmocka_unit_test(test_channel_limit),
      cmocka_unit_test(test_priority),
      cmocka_unit_test(test_round_robin),
      cmocka_unit_test(test_close_after_data),
      cmocka_unit_test(test_simultaneous_close),
      cmocka_unit_test(test_cancel_crosses_reject),
      cmocka_unit_test(test_control_not_overtaken),
      cmocka_unit_test(test_destroy),
      cmocka_unit_test(test_control_queue_cap),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
