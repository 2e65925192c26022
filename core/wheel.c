/* Lazy timing wheel: see tt/wheel.h. */
#include "tt/wheel.h"
#include <string.h>

void tt_wheel_init(tt_wheel_t *w, uint64_t tick_ms, uint64_t now) {
  memset(w, 0, sizeof(*w));
  w->tick_ms = tick_ms ? tick_ms : 1;
  w->cursor = now / w->tick_ms;
}

void tt_wheel_add(tt_wheel_t *w, tt_wheel_entry_t *e, uint64_t due) {
  tt_wheel_remove(w, e);
  uint64_t t = due / w->tick_ms;
  if (t < w->cursor) t = w->cursor; /* already due: the next slot run sees it */
  int s = (int)(t % TT_WHEEL_SLOTS);
  e->due = due;
  e->slot = s;
  e->prev = NULL;
  e->next = w->slots[s];
  if (e->next) e->next->prev = e;
  w->slots[s] = e;
  w->count++;
}

void tt_wheel_remove(tt_wheel_t *w, tt_wheel_entry_t *e) {
  if (e->slot < 0) return;
  if (e->prev) e->prev->next = e->next;
  else w->slots[e->slot] = e->next;
  if (e->next) e->next->prev = e->prev;
  e->prev = e->next = NULL;
  e->slot = -1;
  w->count--;
}

void tt_wheel_advance(tt_wheel_t *w, uint64_t now, tt_wheel_cb cb, void *ctx) {
  /* A slot runs once its whole tick has passed, so every entry of this lap in it is due:
   * an entry fires at most one tick late, never a lap late. */
  uint64_t until = now / w->tick_ms;
  /* After a long stall every slot is due once; no need to go round more than that. */
  if (until > w->cursor + TT_WHEEL_SLOTS) w->cursor = until - TT_WHEEL_SLOTS;
  for (; w->cursor < until; w->cursor++) {
    int s = (int)(w->cursor % TT_WHEEL_SLOTS);
    /* Detach the slot first: cb may re-add entries to this very slot. */
    tt_wheel_entry_t *e = w->slots[s], *due = NULL;
    w->slots[s] = NULL;
    while (e) {
      tt_wheel_entry_t *next = e->next;
      if (e->due <= now) {
        e->next = due;
        due = e;
        e->slot = -1;
        w->count--;
      } else { /* a later lap: keep it */
        e->prev = NULL;
        e->next = w->slots[s];
        if (e->next) e->next->prev = e;
        w->slots[s] = e;
      }
      e = next;
    }
    while (due) {
      tt_wheel_entry_t *next = due->next;
      due->prev = due->next = NULL;
      cb(ctx, due);
      due = next;
    }
  }
}
