/* Delay-based control of bulk data on one hop; see tt/cc.h. */
#include <string.h>
#include "tt/cc.h"

/* Probe nonces carry this tag in their top 16 bits ("tc"); the broker's liveness Pings
 * count up from 1 and never reach it. */
#define CC_TAG (0x7463ull << 48)

void tt_cc_init(tt_cc_t *cc) {
  memset(cc, 0, sizeof(*cc));
  cc->cwnd = TT_CC_START;
}

static uint32_t room(const tt_cc_t *cc) {
  uint64_t used = (uint64_t)cc->inflight + cc->unprobed;
  return used >= cc->cwnd ? 0 : (uint32_t)(cc->cwnd - used);
}

uint32_t tt_cc_room(const tt_cc_t *cc, uint64_t now_ns) {
  (void)now_ns;
  return cc->active ? room(cc) : UINT32_MAX;
}

void tt_cc_sent(tt_cc_t *cc, uint32_t n) {
  uint64_t u = (uint64_t)cc->unprobed + n;
  cc->unprobed = u > UINT32_MAX ? UINT32_MAX : (uint32_t)u;
}

bool tt_cc_want_probe(const tt_cc_t *cc, uint64_t now_ns) {
  (void)now_ns;
  if (!cc->unprobed || cc->count >= TT_CC_PROBES) return false;
  return cc->unprobed >= TT_CC_PROBE_BYTES || (cc->active && room(cc) == 0);
}

uint64_t tt_cc_nonce(const tt_cc_t *cc) { return CC_TAG | cc->next_seq; }

void tt_cc_probe(tt_cc_t *cc, uint64_t now_ns) {
  uint32_t seq = cc->next_seq++;
  if (cc->count < TT_CC_PROBES) {
    tt_cc_probe_t *p = &cc->ring[(cc->head + cc->count) % TT_CC_PROBES];
    p->seq = seq;
    p->bytes = cc->unprobed;
    p->sent_ns = now_ns;
    cc->count++;
    uint64_t f = (uint64_t)cc->inflight + cc->unprobed;
    cc->inflight = f > UINT32_MAX ? UINT32_MAX : (uint32_t)f;
    cc->unprobed = 0;
    cc->probes++;
  }
}

bool tt_cc_is_probe(uint64_t nonce) { return (nonce >> 48) == (CC_TAG >> 48); }

/* The least round trip of the recent slots: the path without our queue. */
static uint64_t base_of(const tt_cc_t *cc) {
  uint64_t b = 0;
  for (uint32_t i = 0; i < TT_CC_BASE_SLOTS; i++)
    if (cc->base_slot[i] && (!b || cc->base_slot[i] < b)) b = cc->base_slot[i];
  return b;
}

static void sample(tt_cc_t *cc, uint64_t rtt, uint64_t now_ns) {
  if (now_ns - cc->slot_start_ns >= TT_CC_BASE_SLOT_NS) {
    cc->slot = (cc->slot + 1) % TT_CC_BASE_SLOTS;
    cc->base_slot[cc->slot] = 0;
    cc->slot_start_ns = now_ns;
  }
  if (!cc->base_slot[cc->slot] || rtt < cc->base_slot[cc->slot]) cc->base_slot[cc->slot] = rtt;
  cc->cur[cc->ncur++ % TT_CC_CUR_SAMPLES] = rtt;
  uint32_t n = cc->ncur < TT_CC_CUR_SAMPLES ? cc->ncur : TT_CC_CUR_SAMPLES;
  uint64_t cur = cc->cur[0];
  for (uint32_t i = 1; i < n; i++)
    if (cc->cur[i] < cur) cur = cc->cur[i];
  uint64_t base = base_of(cc);
  cc->qdelay_ns = cur > base ? cur - base : 0;
  cc->target_ns = base / TT_CC_TARGET_BASE_DIV;
  if (cc->target_ns < TT_CC_TARGET_NS) cc->target_ns = TT_CC_TARGET_NS;
}

/* Move the window by the bytes just acknowledged, in proportion to how far the delay is
 * from the target: off = (target - delay) / target in [-1, 1], the window moving by off/2
 * of the bytes acknowledged (at most 1.5 times or half as large per round trip). */
static void adjust(tt_cc_t *cc, uint32_t acked) {
  int64_t t = (int64_t)cc->target_ns, d = (int64_t)cc->qdelay_ns;
  int64_t off_num = t - d; /* off = off_num / t */
  if (off_num < -t) off_num = -t;
  int64_t delta = (int64_t)acked * off_num / t / 2;
  int64_t w = (int64_t)cc->cwnd + delta;
  if (w < TT_CC_MIN) w = TT_CC_MIN;
  if (w > TT_CC_MAX) w = TT_CC_MAX;
  cc->cwnd = (uint32_t)w;
}

void tt_cc_ack(tt_cc_t *cc, uint64_t nonce, uint64_t now_ns) {
  if (!tt_cc_is_probe(nonce)) return;
  uint32_t seq = (uint32_t)nonce, i;
  for (i = 0; i < cc->count; i++)
    if (cc->ring[(cc->head + i) % TT_CC_PROBES].seq == seq) break;
  if (i == cc->count) return; /* not outstanding: a replay, or a peer making nonces up */
  /* Pongs come in order; one that skips ahead acknowledges the ones before it too. */
  uint64_t acked = 0, sent_ns = 0;
  for (uint32_t k = 0; k <= i; k++) {
    tt_cc_probe_t *p = &cc->ring[cc->head];
    acked += p->bytes;
    sent_ns = p->sent_ns;
    cc->head = (cc->head + 1) % TT_CC_PROBES;
    cc->count--;
  }
  cc->inflight = acked > cc->inflight ? 0 : cc->inflight - (uint32_t)acked;
  cc->acks++;
  cc->active = true;
  sample(cc, now_ns > sent_ns ? now_ns - sent_ns : 0, now_ns);
  adjust(cc, acked > UINT32_MAX ? UINT32_MAX : (uint32_t)acked);
}
