/* Bounded byte buffer: grows on demand up to its maximum, never past it. */
#include <stdlib.h>
#include "tt/buf.h"

void tt_buf_init(tt_buf_t *b, size_t max) {
  memset(b, 0, sizeof(*b));
  b->max = max;
}

void tt_buf_free(tt_buf_t *b) {
  free(b->data);
  b->data = NULL;
  b->off = b->len = b->cap = 0;
}

int tt_buf_reserve(tt_buf_t *b, size_t extra) {
  if (extra > b->max || b->len > b->max - extra) return TT_EFULL;
  size_t need = b->len + extra;
  if (b->off + need <= b->cap) return 0;
  /* Slide the readable bytes to the front instead of growing when at least as much has
   * been consumed as is left to move (each byte then moves at most once per consumption,
   * so a queue fed at the back and drained at the front stays linear), or when the
   * buffer may not grow any more. */
  if (need <= b->cap && (b->off >= b->len || b->cap >= b->max)) {
    memmove(b->data, b->data + b->off, b->len);
    b->off = 0;
    return 0;
  }
  size_t ncap = b->cap ? b->cap * 2 : 256;
  if (ncap > b->max) ncap = b->max;
  if (ncap < need) ncap = need;
  uint8_t *n = malloc(ncap);
  if (!n) return TT_ENOMEM;
  if (b->len) memcpy(n, b->data + b->off, b->len);
  free(b->data);
  b->data = n;
  b->off = 0;
  b->cap = ncap;
  return 0;
}

int tt_buf_append(tt_buf_t *b, const void *p, size_t n) {
  if (n == 0) return 0;
  int rc = tt_buf_reserve(b, n);
  if (rc) return rc;
  memcpy(tt_buf_tail(b), p, n);
  b->len += n;
  return 0;
}

void tt_buf_commit(tt_buf_t *b, size_t n) { b->len += n; }

void tt_buf_consume(tt_buf_t *b, size_t n) {
  if (n >= b->len) {
    b->off = b->len = 0;
    return;
  }
  b->off += n;
  b->len -= n;
}

void tt_buf_reset(tt_buf_t *b) { b->off = b->len = 0; }

void tt_buf_shrink(tt_buf_t *b) {
  if (b->len == 0) tt_buf_free(b);
}
