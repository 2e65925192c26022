/* A lazy timing wheel: one timer serves every connection's deadline. An entry sits in the
 * slot of its due time; activity does not move it. When its slot comes round, its owner
 * looks at the real deadline and either acts or puts it back further on, so a busy entry
 * costs one look per timeout period and an idle one exactly one. */
#ifndef TT_WHEEL_H
#define TT_WHEEL_H

#include <stddef.h>
#include <stdint.h>

#define TT_WHEEL_SLOTS 256u

typedef struct tt_wheel_entry_s {
  struct tt_wheel_entry_s *prev, *next;
  uint64_t due;  /* ms, same clock as the wheel's now */
  int slot;      /* -1 when not on the wheel */
} tt_wheel_entry_t;

typedef struct {
  tt_wheel_entry_t *slots[TT_WHEEL_SLOTS];
  uint64_t tick_ms;  /* width of a slot */
  uint64_t cursor;   /* index of the next slot to run, in ticks since 0 */
  size_t count;
} tt_wheel_t;

void tt_wheel_init(tt_wheel_t *w, uint64_t tick_ms, uint64_t now);
static inline void tt_wheel_entry_init(tt_wheel_entry_t *e) { e->prev = e->next = NULL; e->slot = -1; }
/* Put e on the wheel to come due at `due` (in the past: at the next advance). */
void tt_wheel_add(tt_wheel_t *w, tt_wheel_entry_t *e, uint64_t due);
/* Take e off the wheel; harmless if it is not on it. */
void tt_wheel_remove(tt_wheel_t *w, tt_wheel_entry_t *e);
/* Run every slot whose tick has fully passed: entries whose due time has come are taken off
 * and passed to cb (at most one tick late), which may re-add them; entries of a later lap
 * stay. */
typedef void (*tt_wheel_cb)(void *ctx, tt_wheel_entry_t *e);
void tt_wheel_advance(tt_wheel_t *w, uint64_t now, tt_wheel_cb cb, void *ctx);

#endif
