/* Frame codec: fixed 10-byte header, length checked against the reader's limit before a
 * byte of body is buffered, one frame held at most. */
#include <string.h>
#include "tt/frame.h"

bool tt_kind_known(uint8_t kind) {
  return (kind >= TT_K_HELLO && kind <= TT_K_RESPONSE) || kind == TT_K_DATA;
}

bool tt_kind_is_control(uint8_t kind) {
  switch (kind) {
  case TT_K_HELLO: case TT_K_WELCOME: case TT_K_ERROR: case TT_K_PING: case TT_K_PONG:
  case TT_K_REQUEST: case TT_K_RESPONSE:
    return true;
  default:
    return false;
  }
}

const char *tt_kind_name(uint8_t kind) {
  switch (kind) {
  case TT_K_HELLO: return "hello";
  case TT_K_WELCOME: return "welcome";
  case TT_K_ERROR: return "error";
  case TT_K_PING: return "ping";
  case TT_K_PONG: return "pong";
  case TT_K_CH_OPEN: return "ch_open";
  case TT_K_CH_ACCEPT: return "ch_accept";
  case TT_K_CH_REJECT: return "ch_reject";
  case TT_K_CH_CLOSE: return "ch_close";
  case TT_K_WINDOW: return "window";
  case TT_K_REQUEST: return "request";
  case TT_K_RESPONSE: return "response";
  case TT_K_DATA: return "data";
  default: return "unknown";
  }
}

void tt_frame_header_encode(uint8_t hdr[TT_FRAME_HDR], uint8_t kind, uint8_t flags,
                            uint32_t channel, uint32_t len) {
  tt_put_u32(hdr, len);
  hdr[4] = kind;
  hdr[5] = flags;
  tt_put_u32(hdr + 6, channel);
}

int tt_frame_header_decode(const uint8_t hdr[TT_FRAME_HDR], uint32_t max_body, tt_frame_t *f) {
  memset(f, 0, sizeof(*f));
  uint32_t len = tt_get_u32(hdr);
  uint8_t kind = hdr[4], flags = hdr[5];
  uint32_t ch = tt_get_u32(hdr + 6);
  if (!tt_kind_known(kind)) return TT_EKIND;
  if (tt_kind_is_control(kind) != (ch == 0)) return TT_EKIND;
  if (flags & ~TT_FF_MASK) return TT_EPROTO;
  if (flags && kind != TT_K_DATA) return TT_EPROTO;
  if (len > max_body) return TT_ETOOBIG;
  f->len = len;
  f->kind = kind;
  f->flags = flags;
  f->channel = ch;
  return 0;
}

void tt_frame_reader_init(tt_frame_reader_t *r, uint32_t max_body) {
  memset(r, 0, sizeof(*r));
  /* The buffer's own bound is the largest frame any limit allows; max_body is the live one. */
  tt_buf_init(&r->buf, TT_FRAME_HDR + TT_FRAME_MAX_BODY);
  r->max_body = max_body;
}

void tt_frame_reader_free(tt_frame_reader_t *r) { tt_buf_free(&r->buf); }

void tt_frame_reader_shrink(tt_frame_reader_t *r) { tt_buf_shrink(&r->buf); }

/* Deliver the frame whose header is r->cur and whose body starts at body. */
static int deliver(tt_frame_reader_t *r, const uint8_t *body, tt_frame_cb cb, void *ctx) {
  tt_frame_t f = r->cur;
  f.body = body;
  r->have_hdr = false;
  return cb(ctx, &f);
}

int tt_frame_reader_feed(tt_frame_reader_t *r, const uint8_t *p, size_t n, tt_frame_cb cb, void *ctx) {
  int rc;
  while (n > 0) {
    if (!r->have_hdr) {
      /* Fast path: a whole header straight from the input. */
      if (r->buf.len == 0 && n >= TT_FRAME_HDR) {
        if ((rc = tt_frame_header_decode(p, r->max_body, &r->cur))) return rc;
        p += TT_FRAME_HDR;
        n -= TT_FRAME_HDR;
      } else {
        size_t take = TT_FRAME_HDR - r->buf.len;
        if (take > n) take = n;
        if ((rc = tt_buf_append(&r->buf, p, take))) return rc;
        p += take;
        n -= take;
        if (r->buf.len < TT_FRAME_HDR) return 0;
        rc = tt_frame_header_decode(tt_buf_head(&r->buf), r->max_body, &r->cur);
        tt_buf_reset(&r->buf);
        if (rc) return rc;
      }
      r->have_hdr = true;
    }
    uint32_t len = r->cur.len;
    if (r->buf.len == 0 && n >= len) {
      /* Fast path: the whole body is in the input, no copy. */
      const uint8_t *body = p;
      p += len;
      n -= len;
      if ((rc = deliver(r, body, cb, ctx))) return rc;
      continue;
    }
    size_t take = len - r->buf.len;
    if (take > n) take = n;
    if ((rc = tt_buf_append(&r->buf, p, take))) return rc;
    p += take;
    n -= take;
    if (r->buf.len < len) return 0;
    rc = deliver(r, tt_buf_head(&r->buf), cb, ctx);
    tt_buf_reset(&r->buf);
    if (rc) return rc;
  }
  return 0;
}
