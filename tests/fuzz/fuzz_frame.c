/* libFuzzer driver for the receive path of a link: frame reader, control-message unpacking
 * and the channel mux, fed the way tt_link feeds them, in pieces the input chooses.
 *
 * Input: byte 0 is the mode, byte 1 seeds the split points (low 7 bits) and picks small
 * windows (bit 7: a few KiB, so credit runs out and is re-granted within a short input);
 * the rest is the byte stream from the peer. Mode bits 0-3: largest piece is 2^n bytes
 * (15: the whole stream at once); bit 4: we opened the connection (odd channel ids);
 * bit 5: we open one channel first, so ACCEPT/REJECT have something to answer; bit 6: we
 * close a channel when its EOF arrives; bit 7: we echo data back, so the scheduler has
 * channel frames to pull. Limits follow tt_link: pre-authentication until a Hello
 * unpacks, the full ones after; the first error ends the connection. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "tt/frame.h"
#include "tt/limits.h"
#include "tt/log.h"
#include "tt/msg.h"
#include "tt/mux.h"

/* tt_link's batch: frames are pulled into one write of at most this many bytes. */
#define FZ_BATCH (64u * 1024u)
#define FZ_SMALL_WINDOW 4096u
#define FZ_SMALL_SEED 0x80u

enum {
  FZ_SPLIT_MASK = 0x0f,
  FZ_ODD = 0x10,
  FZ_OPEN_FIRST = 0x20,
  FZ_CLOSE_ON_EOF = 0x40,
  FZ_ECHO = 0x80,
};

typedef struct {
  tt_frame_reader_t rd;
  tt_mux_t mux;
  tt_buf_t out;
  uint8_t mode;
  uint32_t window; /* what we grant on channels we open or accept */
  bool authed;
} fz_link_t;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The application side: accept every open, consume (and maybe echo) every byte. */
static void fz_on_open(tt_mux_t *m, tt_chan_t *ch, const Tether__ChannelOpen *msg) {
  const fz_link_t *l = m->data;
  (void)tt_mux_accept(m, ch, l->window, true, msg->compression & TETHER__CAPABILITY__CAP_ZSTD);
}

static void fz_on_data(tt_mux_t *m, tt_chan_t *ch, const uint8_t *p, size_t n, uint8_t flags) {
  const fz_link_t *l = m->data;
  if ((l->mode & FZ_ECHO) && n > 0) {
    size_t room = tt_mux_sendable(ch);
    (void)tt_mux_send(m, ch, p, n < room ? n : room, flags & TT_FF_ZSTD);
  }
  tt_mux_consumed(m, ch, n);
  if ((l->mode & FZ_CLOSE_ON_EOF) && (flags & TT_FF_EOF))
    (void)tt_mux_close(m, ch, 0, "done");
}

static const tt_mux_cbs_t fz_cbs = {
    .on_open = fz_on_open,
    .on_data = fz_on_data,
};

/* What tt_link_flush does, minus the socket. */
static void fz_drain(fz_link_t *l) {
  while (tt_mux_has_output(&l->mux)) {
    size_t n = tt_mux_pull(&l->mux, &l->out, FZ_BATCH);
    tt_buf_reset(&l->out);
    if (n == 0) break;
  }
  tt_buf_shrink(&l->out);
}

/* link_frame_cb, with Hello standing in for the application's authentication. */
static int fz_frame_cb(void *ctx, const tt_frame_t *f) {
  fz_link_t *l = ctx;
  if (!tt_kind_is_control(f->kind)) {
    if (!l->authed) return TT_EPROTO;
    return tt_mux_input(&l->mux, f);
  }
  tt_msg_t msg;
  int rc = tt_msg_unpack(&msg, f->kind, f->body, f->len,
                         l->authed ? TT_MSG_BUDGET : TT_MSG_BUDGET_PREAUTH);
  if (rc) return rc;
  switch (f->kind) {
  case TT_K_HELLO:
    if (!l->authed) {
      /* tt_link_set_authed: the full limits from the next frame on. */
      l->authed = true;
      l->rd.max_body = TT_FRAME_MAX_BODY;
      l->mux.budget = TT_MSG_BUDGET;
    }
    break;
  case TT_K_PING: {
    if (!l->authed) { rc = TT_EPROTO; break; }
    Tether__Pong pong = TETHER__PONG__INIT;
    pong.nonce = ((Tether__Ping *)msg.m)->nonce;
    rc = tt_mux_control(&l->mux, TT_K_PONG, &pong.base);
    break;
  }
  default:
    break;
  }
  tt_msg_free(&msg);
  return rc;
}

/* Split points from a small xorshift seeded by the input: the same input always splits
 * the same way, and one flipped seed byte reshuffles every piece. */
static size_t fz_next_piece(uint32_t *state, uint8_t mode, size_t left) {
  unsigned lg = mode & FZ_SPLIT_MASK;
  if (lg == FZ_SPLIT_MASK) return left;
  uint32_t x = *state;
  x ^= x << 13;
  x ^= x >> 17;
  x ^= x << 5;
  *state = x;
  size_t n = 1 + (x & ((1u << lg) - 1u));
  return n < left ? n : left;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  tt_log_set_level(TT_LOG_OFF);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2) return 0;
  fz_link_t l;
  memset(&l, 0, sizeof(l));
  l.mode = data[0];
  l.window = (data[1] & FZ_SMALL_SEED) ? FZ_SMALL_WINDOW : TT_WINDOW_DEFAULT;
  uint32_t state = 0x9e3779b9u ^ (data[1] & ~FZ_SMALL_SEED);
  data += 2;
  size -= 2;

  tt_frame_reader_init(&l.rd, TT_FRAME_MAX_BODY_PREAUTH);
  tt_mux_init(&l.mux, (l.mode & FZ_ODD) != 0, &fz_cbs, &l);
  l.mux.budget = TT_MSG_BUDGET_PREAUTH;
  tt_buf_init(&l.out, FZ_BATCH + TT_FRAME_HDR + TT_FRAME_MAX_BODY);

  if (l.mode & FZ_OPEN_FIRST) {
    Tether__ChannelOpen o = TETHER__CHANNEL_OPEN__INIT;
    o.kind = TETHER__CHANNEL_KIND__CHANNEL_ECHO;
    o.priority = (state & 1) ? TETHER__PRIORITY__PRIORITY_BULK : TETHER__PRIORITY__PRIORITY_INTERACTIVE;
    tt_chan_t *ch;
    if (tt_mux_open(&l.mux, &o, l.window, true, &ch)) abort(); /* ours, not the peer's */
  }

  while (size > 0) {
    size_t n = fz_next_piece(&state, l.mode, size);
    int rc = tt_frame_reader_feed(&l.rd, data, n, fz_frame_cb, &l);
    data += n;
    size -= n;
    /* The link closes on the first error and never feeds the reader again. */
    if (rc) break;
    tt_frame_reader_shrink(&l.rd);
    fz_drain(&l);
  }

  tt_mux_destroy(&l.mux);
  tt_frame_reader_free(&l.rd);
  tt_buf_free(&l.out);
  return 0;
}
