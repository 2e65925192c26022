/* Unit tests for proto/cc.c, the delay-based bulk window: off until the peer answers a probe;
 * a simulated hop (a fixed path delay plus a bottleneck that drains at a fixed rate) where
 * the window must hold the queueing delay near the target and still keep the bottleneck
 * busy, on a loopback-like path and on a 50 ms one; recovery when the path gets slower;
 * and nonces a hostile peer makes up. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "tt/cc.h"

/* ---- a simulated hop ------------------------------------------------------------------ */

/* Bulk data enters a bottleneck of `rate` bytes per second; a probe's Pong comes back
 * `path_ns` after the bottleneck has drained every byte before it. The sender writes
 * whenever tt_cc_room allows, in 16 KiB frames. Time advances in 10 us steps. */
typedef struct {
  uint64_t rate, path_ns, now;
  uint64_t queued;     /* bytes in the bottleneck */
  uint64_t drained;    /* bytes through it, ever */
  uint64_t written;    /* bytes the sender wrote, ever */
  struct { uint64_t nonce, after, due; } pong[TT_CC_PROBES * 2];
  unsigned np;
  uint64_t max_qdelay_ns, sum_qdelay_ns, nsamples;
} hop_t;

#define STEP_NS 10000ull

static void hop_run(tt_cc_t *cc, hop_t *h, uint64_t until_ns, uint64_t measure_from_ns) {
  while (h->now < until_ns) {
    /* the sender writes what the window allows */
    for (;;) {
      if (tt_cc_want_probe(cc, h->now)) {
        uint64_t nonce = tt_cc_nonce(cc);
        tt_cc_probe(cc, h->now);
        assert_true(h->np < sizeof(h->pong) / sizeof(h->pong[0]));
        h->pong[h->np].nonce = nonce;
        h->pong[h->np].after = h->written; /* answered once this much has drained */
        h->pong[h->np].due = 0;
        h->np++;
      }
      if (tt_cc_room(cc, h->now) == 0) break;
      /* Before the first answer only credit holds the sender back: a 4 MiB window. */
      if (h->written - h->drained >= TT_CC_MAX / 4) break;
      uint32_t n = 16384;
      h->written += n;
      h->queued += n;
      tt_cc_sent(cc, n);
    }
    /* the bottleneck drains */
    h->now += STEP_NS;
    uint64_t d = h->rate * STEP_NS / 1000000000ull;
    if (d > h->queued) d = h->queued;
    h->queued -= d;
    h->drained += d;
    if (h->now >= measure_from_ns) {
      uint64_t qd = h->queued * 1000000000ull / h->rate;
      if (qd > h->max_qdelay_ns) h->max_qdelay_ns = qd;
      h->sum_qdelay_ns += qd;
      h->nsamples++;
    }
    /* pongs: due path_ns after their bytes drained, delivered in order */
    for (unsigned i = 0; i < h->np; i++)
      if (!h->pong[i].due && h->drained >= h->pong[i].after) h->pong[i].due = h->now + h->path_ns;
    while (h->np && h->pong[0].due && h->pong[0].due <= h->now) {
      tt_cc_ack(cc, h->pong[0].nonce, h->now);
      memmove(&h->pong[0], &h->pong[1], (h->np - 1) * sizeof(h->pong[0]));
      h->np--;
    }
  }
}

/* ---- tests ------------------------------------------------------------------------------ */

static void off_until_answered(void **state) {
  (void)state;
  static tt_cc_t cc;
  tt_cc_init(&cc);
  /* A peer that never answers: the window never applies, however much is written (it
   * must not stall a peer that does not know probes); probes stop at TT_CC_PROBES. */
  uint64_t now = 1000;
  for (int i = 0; i < 100000; i++) {
    assert_int_equal(tt_cc_room(&cc, now), UINT32_MAX);
    tt_cc_sent(&cc, 16384);
    if (tt_cc_want_probe(&cc, now)) tt_cc_probe(&cc, now);
    now += 1000;
  }
  assert_false(cc.active);
  assert_true(cc.count <= TT_CC_PROBES);
}

static void holds_delay_on_loopback(void **state) {
  (void)state;
  /* ~1 GB/s bottleneck (a peer decrypting and relaying), 50 us path. */
  static tt_cc_t cc;
  static hop_t h;
  tt_cc_init(&cc);
  memset(&h, 0, sizeof(h));
  h.rate = 1000000000ull;
  h.path_ns = 50000;
  hop_run(&cc, &h, 2000000000ull, 1000000000ull);
  uint64_t mean = h.sum_qdelay_ns / h.nsamples;
  print_message("loopback: cwnd=%u mean qdelay=%lu us max=%lu us drained=%lu MB\n", cc.cwnd,
                (unsigned long)(mean / 1000), (unsigned long)(h.max_qdelay_ns / 1000),
                (unsigned long)(h.drained / 1000000));
  /* Without control the sender would fill the whole 16 MiB: 16 ms of queue. */
  assert_true(mean <= 2 * TT_CC_TARGET_NS);
  assert_true(h.max_qdelay_ns <= 4 * TT_CC_TARGET_NS);
  /* ...and the bottleneck stays busy: at least 90% of its rate over the two seconds. */
  assert_true(h.drained >= h.rate * 2 * 9 / 10);
}

static void fills_a_long_fat_path(void **state) {
  (void)state;
  /* 200 Mbit/s, 50 ms round trip: the bandwidth-delay product is 1.25 MB. */
  static tt_cc_t cc;
  static hop_t h;
  tt_cc_init(&cc);
  memset(&h, 0, sizeof(h));
  h.rate = 25000000ull;
  h.path_ns = 50000000ull;
  hop_run(&cc, &h, 10000000000ull, 2000000000ull);
  uint64_t mean = h.sum_qdelay_ns / h.nsamples;
  print_message("50 ms path: cwnd=%u mean qdelay=%lu us drained=%lu MB in 10 s\n", cc.cwnd,
                (unsigned long)(mean / 1000), (unsigned long)(h.drained / 1000000));
  /* At least 85% of the link over the 10 s, start included (issue 9 asks 80%). */
  assert_true(h.drained >= h.rate * 10 * 85 / 100);
  assert_true(mean <= 2 * 50000000ull / TT_CC_TARGET_BASE_DIV);
}

static void follows_a_slower_peer(void **state) {
  (void)state;
  /* The peer's rate drops tenfold (it got busy): the window shrinks to match. */
  static tt_cc_t cc;
  static hop_t h;
  tt_cc_init(&cc);
  memset(&h, 0, sizeof(h));
  h.rate = 1000000000ull;
  h.path_ns = 50000;
  hop_run(&cc, &h, 1000000000ull, 2000000000ull);
  uint32_t fast = cc.cwnd;
  h.rate = 100000000ull;
  hop_run(&cc, &h, 2000000000ull, 1500000000ull);
  uint64_t mean = h.sum_qdelay_ns / h.nsamples;
  print_message("slower: cwnd %u -> %u, mean qdelay=%lu us\n", fast, cc.cwnd,
                (unsigned long)(mean / 1000));
  assert_true(cc.cwnd < fast);
  /* No deeper than the target, or than the window's floor takes to drain at the new rate. */
  uint64_t floor_ns = (uint64_t)TT_CC_MIN * 1000000000ull / h.rate;
  assert_true(mean <= 2 * (floor_ns > TT_CC_TARGET_NS ? floor_ns : TT_CC_TARGET_NS));
}

static void made_up_nonces(void **state) {
  (void)state;
  static tt_cc_t cc;
  tt_cc_init(&cc);
  tt_cc_sent(&cc, TT_CC_PROBE_BYTES);
  assert_true(tt_cc_want_probe(&cc, 1000));
  uint64_t n0 = tt_cc_nonce(&cc);
  tt_cc_probe(&cc, 1000);
  tt_cc_sent(&cc, TT_CC_PROBE_BYTES);
  uint64_t n1 = tt_cc_nonce(&cc);
  tt_cc_probe(&cc, 2000);
  assert_int_equal(cc.inflight, 2 * TT_CC_PROBE_BYTES);
  /* Not ours (a liveness Ping's), not outstanding, from the future: ignored. */
  tt_cc_ack(&cc, 7, 5000);
  tt_cc_ack(&cc, n1 + 5, 5000);
  assert_false(cc.active);
  assert_int_equal(cc.count, 2);
  /* The second Pong first: it acknowledges both; the first's then is a replay. */
  tt_cc_ack(&cc, n1, 5000);
  assert_true(cc.active);
  assert_int_equal(cc.count, 0);
  assert_int_equal(cc.inflight, 0);
  uint32_t w = cc.cwnd;
  tt_cc_ack(&cc, n0, 6000);
  assert_int_equal(cc.cwnd, w);
  assert_false(tt_cc_is_probe(7));
  assert_true(tt_cc_is_probe(n0));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(off_until_answered),
      cmocka_unit_test(holds_delay_on_loopback),
      cmocka_unit_test(fills_a_long_fat_path),
      cmocka_unit_test(follows_a_slower_peer),
      cmocka_unit_test(made_up_nonces),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
