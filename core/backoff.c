/* Jittered exponential backoff ("equal jitter": half the ceiling fixed, half random), so a
 * fleet that loses the broker at once comes back spread over the window, not in one wave. */
#include "tt/backoff.h"

#include <time.h>
#include <unistd.h>

/* splitmix64: turns any seed, including small or clock-correlated ones, into a well-mixed
 * xorshift state, so agents started in the same second still diverge at once. */
static uint64_t mix64(uint64_t x) {
  x += UINT64_C(0x9e3779b97f4a7c15);
  x = (x ^ (x >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
  x = (x ^ (x >> 27)) * UINT64_C(0x94d049bb133111eb);
  return x ^ (x >> 31);
}

static uint64_t rng_next(tt_backoff_t *b) {
  uint64_t x = b->rng;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  b->rng = x;
  return x * UINT64_C(0x2545f4914f6cdd1d);
}

/* Uniform in [lo, hi]; span is at most 2^32 so the multiply-shift cannot overflow. */
static uint32_t uniform(tt_backoff_t *b, uint32_t lo, uint32_t hi) {
  uint64_t span = (uint64_t)hi - lo + 1;
  return lo + (uint32_t)(((rng_next(b) >> 32) * span) >> 32);
}

void tt_backoff_init(tt_backoff_t *b, uint32_t base_ms, uint32_t cap_ms, uint64_t seed) {
  b->base_ms = base_ms;
  b->cap_ms = cap_ms;
  b->attempt = 0;
  if (seed == 0) {
    struct timespec ts = {0, 0};
    clock_gettime(CLOCK_REALTIME, &ts);
    seed = ((uint64_t)ts.tv_sec * UINT64_C(1000000000) + (uint64_t)ts.tv_nsec) ^
           ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)b;
  }
  b->rng = mix64(seed);
  if (b->rng == 0) b->rng = UINT64_C(0x9e3779b97f4a7c15); /* xorshift is stuck at 0 */
}

static uint32_t ceiling(const tt_backoff_t *b) {
  /* base << attempt, saturating: past 31 shifts any non-zero base exceeds a uint32 cap. */
  if (b->base_ms == 0) return 0;
  if (b->attempt >= 32) return b->cap_ms;
  uint64_t c = (uint64_t)b->base_ms << b->attempt;
  return c < b->cap_ms ? (uint32_t)c : b->cap_ms;
}

uint32_t tt_backoff_next(tt_backoff_t *b) {
  uint32_t c = ceiling(b);
  if (b->attempt < UINT32_MAX) b->attempt++;
  return uniform(b, c / 2, c);
}

/* The broker knows its load better than we do, so its retry-after may exceed our cap; the
 * jitter still spreads the agents it told to wait the same time. */
uint32_t tt_backoff_next_after(tt_backoff_t *b, uint32_t retry_after_ms) {
  uint32_t normal = tt_backoff_next(b);
  uint64_t d = (uint64_t)retry_after_ms + uniform(b, 0, retry_after_ms / 4);
  if (d > UINT32_MAX) d = UINT32_MAX;
  return d > normal ? (uint32_t)d : normal;
}

void tt_backoff_reset(tt_backoff_t *b) { b->attempt = 0; }
