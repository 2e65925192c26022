/* Delay-based control of bulk data on one hop (LEDBAT-like, RFC 6817 in spirit): how many
 * bytes of bulk channels a link may have written to its socket that the peer has not yet
 * read. Keystrokes overtake bulk data in the mux, but not bytes already in the kernel's
 * buffers or in the peer's unread backlog; this keeps that backlog near a small delay
 * target, so an interactive frame never waits long behind it, while the window still grows
 * to fill a long fat link.
 *
 * The clock is the link's own Ping/Pong: after every TT_CC_PROBE_BYTES of bulk data the link
 * sends a Ping with a probe nonce. The peer answers a Ping in order, once it has read every
 * frame before it, so the Pong both acknowledges those bytes and measures the round trip
 * through the queues they made. base = the least round trip seen lately (the empty path);
 * queueing delay = the least of the last few round trips minus base. Each acknowledgement
 * moves the window toward the target: up by at most half the bytes acknowledged (at most
 * 1.5 times per round trip) while the delay is under the target, down by at most half of
 * them (at most halving per round trip) while it is over.
 *
 * Nothing here is needed for correctness (credit windows and the socket caps bound memory);
 * the window applies only once the peer has answered a probe, so a peer that never answers
 * (an old or a test peer) is never held back by it, and nothing needs a timer. Until then
 * the credit windows alone bound the first burst. Pure state, no I/O; times in ns. */
#ifndef TT_CC_H
#define TT_CC_H

#include <stdbool.h>
#include <stdint.h>

/* Bulk bytes between two probes: a Ping of ~12 bytes per 64 KiB costs 0.02%. */
#define TT_CC_PROBE_BYTES (64u * 1024u)
/* Probes awaiting their Pong; bytes past that many are covered by the next probe. */
#define TT_CC_PROBES 256u
/* The queueing delay bulk data may cause on one hop: TT_CC_TARGET_NS, or an eighth of the
 * path's own round trip on a long path (where a millisecond of queue is less than one
 * probe's worth of bytes, too fine to steer by, and nobody feels it beside the 50 ms the
 * path takes anyway). A keystroke crosses two hops (console, broker, agent), so on loopback
 * its wait stays near twice TT_CC_TARGET_NS. */
#define TT_CC_TARGET_NS (500u * 1000u)
#define TT_CC_TARGET_BASE_DIV 8u
/* The window's bounds: the floor keeps a loaded loopback moving (two probes' worth); the
 * ceiling is what the broker may hold for one connection (TT_RELAY_WINDOW_BUDGET), enough
 * for a 50 ms path at 2.5 Gbit/s. */
#define TT_CC_MIN (2u * TT_CC_PROBE_BYTES)
#define TT_CC_START (1024u * 1024u)
#define TT_CC_MAX (16u * 1024u * 1024u)
/* base is the least round trip of the last TT_CC_BASE_SLOTS slots of TT_CC_BASE_SLOT_NS
 * each, so a path that got slower for good is learnt within that long. */
#define TT_CC_BASE_SLOTS 10u
#define TT_CC_BASE_SLOT_NS (1000ull * 1000u * 1000u)
/* Round trips the current delay is the least of (filters one slow answer). */
#define TT_CC_CUR_SAMPLES 4u

typedef struct {
  uint32_t seq;
  uint32_t bytes; /* bulk bytes written before this probe and after the previous one */
  uint64_t sent_ns;
} tt_cc_probe_t;

typedef struct {
  uint32_t cwnd;       /* bulk bytes that may be unacknowledged */
  uint32_t inflight;   /* bytes covered by probes still awaiting their Pong */
  uint32_t unprobed;   /* bytes written since the last probe */
  bool active;         /* the peer answered a probe */
  uint32_t next_seq;
  tt_cc_probe_t ring[TT_CC_PROBES];
  uint32_t head, count;
  uint64_t base_slot[TT_CC_BASE_SLOTS]; /* least round trip per slot; 0 = none */
  uint64_t slot_start_ns;
  uint32_t slot;
  uint64_t cur[TT_CC_CUR_SAMPLES];
  uint32_t ncur;
  uint64_t qdelay_ns;  /* the last estimate */
  uint64_t target_ns;  /* the last target */
  uint64_t probes, acks;
} tt_cc_t;

void tt_cc_init(tt_cc_t *cc);
/* Bulk bytes that may be written now. */
uint32_t tt_cc_room(const tt_cc_t *cc, uint64_t now_ns);
/* n bulk bytes went to the socket. */
void tt_cc_sent(tt_cc_t *cc, uint32_t n);
/* Should a probe go now? When TT_CC_PROBE_BYTES went since the last one, or when the
 * window is used up by bytes no probe covers yet (else nothing would acknowledge them). */
bool tt_cc_want_probe(const tt_cc_t *cc, uint64_t now_ns);
/* The nonce the next probe's Ping carries; queue that Ping, then tt_cc_probe. */
uint64_t tt_cc_nonce(const tt_cc_t *cc);
/* Record the probe just queued at now (the bytes since the previous one are its). */
void tt_cc_probe(tt_cc_t *cc, uint64_t now_ns);
/* Is this Pong's nonce one of ours? (Other Pings carry nonces below 2^48.) */
bool tt_cc_is_probe(uint64_t nonce);
/* A Pong with a probe nonce arrived at now. Unknown or out-of-order nonces are ignored. */
void tt_cc_ack(tt_cc_t *cc, uint64_t nonce, uint64_t now_ns);

#endif
