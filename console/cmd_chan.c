/* Channel commands. speedtest DEVICE: pull --bytes of incompressible data from the device
 * through the broker and report MB/s. ping DEVICE: time --count echo round trips. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "console.h"
#include "tt/log.h"
#include "tt/msg.h"

#define PING_PAYLOAD 64u

typedef struct {
  uint64_t t0_ns, t_first_ns;
  uint64_t received;
  uint64_t expected;
  uint64_t sent_ns;
  uint64_t n, *rtt_ns;
  size_t echo_got;
} chan_state_t;

static chan_state_t g_cs;

static int open_channel(console_t *c, Tether__ChannelKind kind, Tether__Priority prio, uint64_t bytes) {
  Tether__ChannelOpen o = TETHER__CHANNEL_OPEN__INIT;
  o.kind = kind;
  o.device = tt_text(c->arg[0]);
  o.priority = prio;
  o.bytes = bytes;
  tt_chan_t *ch;
  uint32_t window = prio == TETHER__PRIORITY__PRIORITY_BULK ? TT_WINDOW_BULK : TT_WINDOW_DEFAULT;
  int rc = tt_mux_open(&c->link->mux, &o, window, true, &ch);
  if (rc) return rc;
  ch->data = c;
  g_cs.t0_ns = uv_hrtime();
  tt_link_flush(c->link);
  return 0;
}

static int speedtest_start(console_t *c) {
  g_cs.expected = (uint64_t)c->cfg.bytes;
  return open_channel(c, TETHER__CHANNEL_KIND__CHANNEL_THROUGHPUT, TETHER__PRIORITY__PRIORITY_BULK,
                      g_cs.expected);
}

static void ping_send(console_t *c, tt_chan_t *ch) {
  uint8_t buf[PING_PAYLOAD];
  memset(buf, 'p', sizeof(buf));
  g_cs.sent_ns = uv_hrtime();
  g_cs.echo_got = 0;
  if (tt_mux_send(&c->link->mux, ch, buf, sizeof(buf), 0)) {
    console_fail(c, "echo channel has no credit");
    return;
  }
  tt_link_flush(c->link);
}

static int ping_start(console_t *c) {
  g_cs.rtt_ns = calloc((size_t)c->cfg.count, sizeof(uint64_t));
  if (!g_cs.rtt_ns) return TT_ENOMEM;
  return open_channel(c, TETHER__CHANNEL_KIND__CHANNEL_ECHO, TETHER__PRIORITY__PRIORITY_INTERACTIVE, 0);
}

static void on_accept(tt_mux_t *m, tt_chan_t *ch, const Tether__ChannelAccept *msg) {
  console_t *c = ch->data;
  uv_timer_stop(&c->timeout); /* the device answered; transfers may take as long as they take */
  if (c->cmd == &console_cmd_ping) ping_send(c, ch);
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

static void ping_report(console_t *c) {
  uint64_t n = g_cs.n;
  qsort(g_cs.rtt_ns, (size_t)n, sizeof(uint64_t), cmp_u64);
  double p50 = (double)g_cs.rtt_ns[n / 2] / 1e3;
  double p99 = (double)g_cs.rtt_ns[(n * 99) / 100 < n ? (n * 99) / 100 : n - 1] / 1e3;
  double mx = (double)g_cs.rtt_ns[n - 1] / 1e3;
  if (c->json) {
    printf("{\"device\":");
    console_json_str(stdout, c->arg[0]);
    printf(",\"count\":%" PRIu64 ",\"p50_us\":%.1f,\"p99_us\":%.1f,\"max_us\":%.1f}\n", n, p50, p99, mx);
  } else
    printf("%s: %" PRIu64 " round trips of %u bytes: p50 %.1f us, p99 %.1f us, max %.1f us\n",
           c->arg[0], n, PING_PAYLOAD, p50, p99, mx);
}

static void on_data(tt_mux_t *m, tt_chan_t *ch, const uint8_t *p, size_t n, uint8_t flags) {
  console_t *c = ch->data;
  if (!c) return;
  tt_mux_consumed(m, ch, n);
  if (c->cmd == &console_cmd_speedtest) {
    if (g_cs.received == 0) g_cs.t_first_ns = uv_hrtime();
    g_cs.received += n;
    if (!(flags & TT_FF_EOF)) {
      tt_link_flush(c->link);
      return;
    }
    double secs = (double)(uv_hrtime() - g_cs.t0_ns) / 1e9;
    double mbps = secs > 0 ? (double)g_cs.received / 1e6 / secs : 0;
    tt_mux_close(m, ch, 0, "done");
    ch->data = NULL;
    if (g_cs.received != g_cs.expected) {
      console_fail(c, "speedtest: got %" PRIu64 " bytes, expected %" PRIu64, g_cs.received, g_cs.expected);
      return;
    }
    if (c->json) {
      printf("{\"device\":");
      console_json_str(stdout, c->arg[0]);
      printf(",\"bytes\":%" PRIu64 ",\"seconds\":%.3f,\"mb_per_s\":%.1f}\n", g_cs.received, secs, mbps);
    } else
      printf("%s: %" PRIu64 " bytes in %.3f s = %.1f MB/s\n", c->arg[0], g_cs.received, secs, mbps);
    fflush(stdout);
    console_finish(c, 0);
    return;
  }
  /* ping */
  g_cs.echo_got += n;
  if (g_cs.echo_got < PING_PAYLOAD) return;
  g_cs.rtt_ns[g_cs.n++] = uv_hrtime() - g_cs.sent_ns;
  if (g_cs.n < (uint64_t)c->cfg.count) {
    ping_send(c, ch);
    return;
  }
  tt_mux_close(m, ch, 0, "done");
  ch->data = NULL;
  ping_report(c);
  free(g_cs.rtt_ns);
  g_cs.rtt_ns = NULL;
  fflush(stdout);
  console_finish(c, 0);
}

static void on_close(tt_mux_t *m, tt_chan_t *ch, int code, const char *msg) {
  console_t *c = ch->data;
  if (!c) return;
  free(g_cs.rtt_ns);
  g_cs.rtt_ns = NULL;
  console_fail(c, "%s: %s", c->arg[0], msg && *msg ? msg : tt_strerror(code));
}

const tt_mux_cbs_t console_mux_cbs = {
    .on_accept = on_accept,
    .on_data = on_data,
    .on_close = on_close,
};

const console_cmd_t console_cmd_speedtest = {
    .name = "speedtest",
    .args = "DEVICE [--bytes N]",
    .help = "pull N bytes from the device through the broker, report MB/s",
    .min_pos = 1,
    .max_pos = 1,
    .switches = CONSOLE_SW_JSON,
    .start = speedtest_start,
};

const console_cmd_t console_cmd_ping = {
    .name = "ping",
    .args = "DEVICE [--count N]",
    .help = "time echo round trips to the device's agent",
    .min_pos = 1,
    .max_pos = 1,
    .switches = CONSOLE_SW_JSON,
    .start = ping_start,
};
