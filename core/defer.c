/* Work put off to the end of the callback that caused it (tt/defer.h). */
#include <stddef.h>
#include "tt/defer.h"

static _Thread_local struct {
  unsigned depth;
  tt_deferred_t *head, *tail;
} q;

void tt_defer_begin(void) { q.depth++; }

void tt_defer_end(void) {
  if (q.depth > 1) {
    q.depth--;
    return;
  }
  /* Still open while the queue runs: what a deferred call queues runs in this same pass. */
  while (q.head) {
    tt_deferred_t *d = q.head;
    q.head = d->next;
    if (!q.head) q.tail = NULL;
    d->next = NULL;
    d->queued = false;
    d->fn(d);
  }
  q.depth = 0;
}

bool tt_defer(tt_deferred_t *d, void (*fn)(tt_deferred_t *d)) {
  if (!q.depth) return false;
  if (d->queued) return true;
  d->fn = fn;
  d->next = NULL;
  d->queued = true;
  if (q.tail) q.tail->next = d;
  else q.head = d;
  q.tail = d;
  return true;
}

void tt_defer_cancel(tt_deferred_t *d) {
  if (!d->queued) return;
  tt_deferred_t *prev = NULL;
  for (tt_deferred_t *i = q.head; i; prev = i, i = i->next) {
    if (i != d) continue;
    if (prev) prev->next = d->next;
    else q.head = d->next;
    if (q.tail == d) q.tail = prev;
    break;
  }
  d->next = NULL;
  d->queued = false;
}
