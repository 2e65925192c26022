/* Bounded byte buffer and {ptr,len} slice: every byte from a peer passes through a tt_buf_t
 * whose maximum was fixed when it was created (the sshbuf habit). */
#ifndef TT_BUF_H
#define TT_BUF_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include "tt/err.h"

typedef struct {
  const uint8_t *ptr;
  size_t len;
} tt_slice_t;

/* Readable bytes are data[off .. off+len). Memory is allocated lazily and may be
 * released with tt_buf_shrink() when the buffer is empty (idle connections hold nothing). */
typedef struct {
  uint8_t *data;
  size_t off;
  size_t len;
  size_t cap;
  size_t max; /* len never exceeds this */
} tt_buf_t;

void tt_buf_init(tt_buf_t *b, size_t max);
void tt_buf_free(tt_buf_t *b);
/* Make room for `extra` more bytes; TT_EFULL if len+extra > max, TT_ENOMEM. */
int tt_buf_reserve(tt_buf_t *b, size_t extra) TT_WUR;
int tt_buf_append(tt_buf_t *b, const void *p, size_t n) TT_WUR;
/* Writable space after the readable bytes (call tt_buf_reserve first), then commit. */
static inline uint8_t *tt_buf_tail(tt_buf_t *b) { return b->data + b->off + b->len; }
void tt_buf_commit(tt_buf_t *b, size_t n);
static inline const uint8_t *tt_buf_head(const tt_buf_t *b) { return b->data + b->off; }
static inline tt_slice_t tt_buf_slice(const tt_buf_t *b) {
  tt_slice_t s = {b->data ? b->data + b->off : NULL, b->len};
  return s;
}
/* Drop n bytes from the front. */
void tt_buf_consume(tt_buf_t *b, size_t n);
void tt_buf_reset(tt_buf_t *b);
/* Free the memory if nothing is buffered; keeps `max`. */
void tt_buf_shrink(tt_buf_t *b);

static inline tt_slice_t tt_slice(const void *p, size_t n) {
  tt_slice_t s = {(const uint8_t *)p, n};
  return s;
}

/* Big-endian integer helpers for the wire. */
static inline void tt_put_u32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}
static inline uint32_t tt_get_u32(const uint8_t *p) {
  return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

#endif
