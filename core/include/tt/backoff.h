/* Jittered exponential backoff for reconnects: so that a fleet coming back at once spreads
 * itself out instead of knocking the broker over. */
#ifndef TT_BACKOFF_H
#define TT_BACKOFF_H

#include <stdint.h>

typedef struct {
  uint32_t base_ms;  /* first ceiling */
  uint32_t cap_ms;   /* ceiling never exceeds this */
  uint32_t attempt;  /* failures since last success */
  uint64_t rng;      /* xorshift state, never 0 */
} tt_backoff_t;

/* seed 0 picks one from the clock and pid. */
void tt_backoff_init(tt_backoff_t *b, uint32_t base_ms, uint32_t cap_ms, uint64_t seed);
/* Next delay: uniformly in [ceil/2, ceil], ceil = min(cap, base * 2^attempt); then attempt++. */
uint32_t tt_backoff_next(tt_backoff_t *b);
/* Honour a server's retry-after: the next delay is at least ms (plus up to 25% jitter). */
uint32_t tt_backoff_next_after(tt_backoff_t *b, uint32_t retry_after_ms);
void tt_backoff_reset(tt_backoff_t *b);

#endif
