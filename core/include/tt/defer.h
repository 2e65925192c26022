/* Work put off to the end of the callback that caused it.
 *
 * One socket read can carry many frames, and each frame may queue output on a link (a
 * relayed DATA, a WINDOW, a PONG). Writing each at once costs a system call and a TCP
 * segment apiece; instead the read callback opens a batch, a link asked to flush inside it
 * is queued once, and the flushes run when the batch closes, still inside the callback, so
 * nothing waits for another turn of the loop. Outside a batch tt_defer() says no and the
 * caller does the work at once. Per thread; batches nest. */
#ifndef TT_DEFER_H
#define TT_DEFER_H

#include <stdbool.h>

typedef struct tt_deferred_s tt_deferred_t;
struct tt_deferred_s {
  tt_deferred_t *next;
  void (*fn)(tt_deferred_t *d);
  bool queued;
};

void tt_defer_begin(void);
/* Closing the outermost batch runs what was queued, in order, including what those queue. */
void tt_defer_end(void);
/* Queue d (once) to run fn at the end of the batch; false when no batch is open. */
bool tt_defer(tt_deferred_t *d, void (*fn)(tt_deferred_t *d));
/* Take d off the queue, e.g. before the object holding it is freed. */
void tt_defer_cancel(tt_deferred_t *d);

#endif
