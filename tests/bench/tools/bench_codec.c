/* In-process codec + mux throughput: a sender mux queues DATA, the scheduler pulls frames,
 * a frame reader decodes them and a receiver mux delivers them and returns credit. No TLS,
 * no sockets: the ceiling our own framing puts on a link. Prints figures, asserts nothing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "tt/frame.h"
#include "tt/msg.h"
#include "tt/mux.h"

typedef struct {
  tt_mux_t *self;
  uint64_t got;
} side_t;

static side_t g_rx;

static void rx_open(tt_mux_t *m, tt_chan_t *ch, const Tether__ChannelOpen *msg) {
  if (tt_mux_accept(m, ch, TT_WINDOW_BULK, true, 0)) abort();
}

static void rx_data(tt_mux_t *m, tt_chan_t *ch, const uint8_t *p, size_t n, uint8_t flags) {
  g_rx.got += n;
  tt_mux_consumed(m, ch, n);
}

static const tt_mux_cbs_t rx_cbs = {.on_open = rx_open, .on_data = rx_data};
static const tt_mux_cbs_t tx_cbs = {0};

static int deliver_cb(void *ctx, const tt_frame_t *f) { return tt_mux_input(ctx, f); }

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Move everything queued on `from` to `to` through a frame reader. */
static void pump(tt_mux_t *from, tt_frame_reader_t *rd, tt_mux_t *to, tt_buf_t *wire) {
  while (tt_mux_has_output(from)) {
    tt_mux_pull(from, wire, 64 * 1024);
    if (tt_frame_reader_feed(rd, tt_buf_head(wire), wire->len, deliver_cb, to)) abort();
    tt_buf_reset(wire);
  }
}

int main(int argc, char **argv) {
  uint64_t total = argc > 1 ? strtoull(argv[1], NULL, 10) << 20 : 4096ull << 20;
  tt_mux_t tx, rx;
  tt_mux_init(&tx, true, &tx_cbs, NULL);
  tt_mux_init(&rx, false, &rx_cbs, NULL);
  tt_frame_reader_t to_rx, to_tx;
  tt_frame_reader_init(&to_rx, TT_FRAME_MAX_BODY);
  tt_frame_reader_init(&to_tx, TT_FRAME_MAX_BODY);
  tt_buf_t wire;
  tt_buf_init(&wire, 1u << 20);

  Tether__ChannelOpen o = TETHER__CHANNEL_OPEN__INIT;
  o.priority = TETHER__PRIORITY__PRIORITY_BULK;
  tt_chan_t *ch;
  if (tt_mux_open(&tx, &o, TT_WINDOW_BULK, true, &ch)) abort();
  pump(&tx, &to_rx, &rx, &wire);
  pump(&rx, &to_tx, &tx, &wire);

  static uint8_t block[64 * 1024];
  for (size_t i = 0; i < sizeof(block); i++) block[i] = (uint8_t)(i * 2654435761u >> 13);
  uint64_t sent = 0;
  double t0 = now_s();
  while (sent < total) {
    uint32_t room = tt_mux_sendable(ch);
    size_t n = room < sizeof(block) ? room : sizeof(block);
    if (n > total - sent) n = (size_t)(total - sent);
    if (n && tt_mux_send(&tx, ch, block, n, 0)) abort();
    sent += n;
    pump(&tx, &to_rx, &rx, &wire);
    pump(&rx, &to_tx, &tx, &wire);
  }
  double secs = now_s() - t0;
  printf("bench_codec: %llu MiB through mux+codec in %.3f s = %.0f MB/s (16 KiB frames, window %u KiB)\n",
         (unsigned long long)(total >> 20), secs, (double)g_rx.got / 1e6 / secs, TT_WINDOW_BULK / 1024);

  /* Small control frames: encode + decode + unpack rate. */
  uint64_t frames = 2000000;
  Tether__Ping ping = TETHER__PING__INIT;
  t0 = now_s();
  for (uint64_t i = 0; i < frames; i++) {
    ping.nonce = i;
    if (tt_msg_encode(&wire, TT_K_PING, 0, &ping.base)) abort();
    tt_frame_t f;
    if (tt_frame_header_decode(tt_buf_head(&wire), TT_FRAME_MAX_BODY, &f)) abort();
    tt_msg_t msg;
    if (tt_msg_unpack(&msg, f.kind, tt_buf_head(&wire) + TT_FRAME_HDR, f.len, TT_MSG_BUDGET)) abort();
    tt_msg_free(&msg);
    tt_buf_reset(&wire);
  }
  secs = now_s() - t0;
  printf("bench_codec: %llu ping frames encoded+decoded+unpacked in %.3f s = %.2f M frames/s\n",
         (unsigned long long)frames, secs, (double)frames / 1e6 / secs);

  tt_mux_destroy(&tx);
  tt_mux_destroy(&rx);
  tt_frame_reader_free(&to_rx);
  tt_frame_reader_free(&to_tx);
  tt_buf_free(&wire);
  return 0;
}
