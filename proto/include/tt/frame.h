/* The frame codec: a 10-byte header (body length u32, kind u8, flags u8, channel u32, all
 * big-endian) and a body. Control bodies are protobuf; DATA bodies are raw bytes. The length
 * is checked against the reader's current limit before a byte of the body is buffered. */
#ifndef TT_FRAME_H
#define TT_FRAME_H

#include <stdbool.h>
#include <stdint.h>
#include "tt/buf.h"
#include "tt/err.h"
#include "tt/limits.h"

#define TT_FRAME_HDR 10u

typedef enum {
  TT_K_HELLO = 1,    /* ch 0 */
  TT_K_WELCOME = 2,  /* ch 0 */
  TT_K_ERROR = 3,    /* ch 0: fatal for the connection */
  TT_K_PING = 4,     /* ch 0 */
  TT_K_PONG = 5,     /* ch 0 */
  TT_K_CH_OPEN = 6,  /* ch != 0 */
  TT_K_CH_ACCEPT = 7,
  TT_K_CH_REJECT = 8,
  TT_K_CH_CLOSE = 9,
  TT_K_WINDOW = 10,
  TT_K_REQUEST = 11, /* ch 0 */
  TT_K_RESPONSE = 12,/* ch 0 */
  TT_K_DATA = 32,    /* ch != 0, raw body */
} tt_kind_t;

enum {
  TT_FF_ZSTD = 0x01, /* DATA: body is one zstd frame */
  TT_FF_EOF = 0x02,  /* DATA: last data from this side on this channel */
  TT_FF_CTRL = 0x04, /* DATA: body is one ChannelControl message, in order with the data */
  TT_FF_MASK = 0x07,
};

typedef struct {
  uint32_t len;
  uint8_t kind;
  uint8_t flags;
  uint32_t channel;
  const uint8_t *body; /* valid only inside the callback that received it */
} tt_frame_t;

/* True for kinds that live on channel 0. */
bool tt_kind_is_control(uint8_t kind);
bool tt_kind_known(uint8_t kind);
const char *tt_kind_name(uint8_t kind);

void tt_frame_header_encode(uint8_t hdr[TT_FRAME_HDR], uint8_t kind, uint8_t flags,
                            uint32_t channel, uint32_t len);
/* Validates: known kind (TT_EKIND), channel 0 iff control kind (TT_EKIND), flags only on
 * DATA and within TT_FF_MASK (TT_EPROTO), len <= max_body (TT_ETOOBIG). */
int tt_frame_header_decode(const uint8_t hdr[TT_FRAME_HDR], uint32_t max_body, tt_frame_t *f) TT_WUR;

/* Incremental reader: feed it bytes as they arrive; it calls cb once per whole frame.
 * It never holds more than one frame (header + max_body). */
typedef int (*tt_frame_cb)(void *ctx, const tt_frame_t *f);

typedef struct {
  tt_buf_t buf;
  uint32_t max_body;  /* may be changed between frames, e.g. raised after Hello */
  bool have_hdr;
  tt_frame_t cur;
} tt_frame_reader_t;

void tt_frame_reader_init(tt_frame_reader_t *r, uint32_t max_body);
void tt_frame_reader_free(tt_frame_reader_t *r);
/* Returns 0 when all of p was consumed, a header error, or the first non-zero value the
 * callback returned (feeding stops there; the reader must not be fed again after an error). */
int tt_frame_reader_feed(tt_frame_reader_t *r, const uint8_t *p, size_t n, tt_frame_cb cb, void *ctx) TT_WUR;
/* Release memory while idle. */
void tt_frame_reader_shrink(tt_frame_reader_t *r);

#endif
