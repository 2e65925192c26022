/* zstd for channel data: one context per channel and direction, each chunk one whole frame.
 * Chunks that do not shrink go raw; decompression never produces more than the caller's cap. */
#include "tt/zstd.h"

#include <stdlib.h>
#include <string.h>

#include <zstd.h>
#include <zstd_errors.h>

#include "tt/err.h"
#include "tt/limits.h"
#include "tt/log.h"

#define TT_ZSTD_MOD "zstd"
#define TT_ZSTD_LEVEL_MIN 1
#define TT_ZSTD_LEVEL_MAX 19
/* The largest window a peer's frame may ask us to hold: 1 MiB. Our own chunks are at most
 * TT_DATA_CHUNK_MAX and carry their content size, so their window is the chunk itself; only
 * a hostile or foreign frame would want more, and it is refused before anything is allocated. */
#define TT_ZSTD_WINDOW_LOG_MAX 20

/* A handle is either a compressor or a decompressor, never both: a channel direction only
 * ever goes one way. */
struct tt_zstd_s {
  ZSTD_CCtx *cctx;
  ZSTD_DCtx *dctx;
};

/* Turns a zstd result into ours at the border, logging zstd's own words once. */
static int zstd_fail(tt_log_level_t lvl, const char *what, size_t code) {
  tt_log(lvl, TT_ZSTD_MOD, what, "err=\"%s\"", ZSTD_getErrorName(code));
  return TT_EZSTD;
}

int tt_zstd_new_compressor(tt_zstd_t **out, int level) {
  tt_zstd_t *z = NULL;
  size_t r;
  int rc;

  if (out == NULL)
    return TT_EINVAL;
  *out = NULL;
  if (level < TT_ZSTD_LEVEL_MIN || level > TT_ZSTD_LEVEL_MAX)
    return TT_EINVAL;

  z = calloc(1, sizeof(*z));
  if (z == NULL)
    return TT_ENOMEM;
  z->cctx = ZSTD_createCCtx();
  if (z->cctx == NULL) {
    rc = TT_ENOMEM;
    goto out;
  }
  /* TLS already guards integrity, so zstd's checksum would be four bytes of nothing per
   * chunk. The content size is what lets the receiver refuse a bomb from the header. */
  r = ZSTD_CCtx_setParameter(z->cctx, ZSTD_c_compressionLevel, level);
  if (!ZSTD_isError(r))
    r = ZSTD_CCtx_setParameter(z->cctx, ZSTD_c_checksumFlag, 0);
  if (!ZSTD_isError(r))
    r = ZSTD_CCtx_setParameter(z->cctx, ZSTD_c_contentSizeFlag, 1);
  if (ZSTD_isError(r)) {
    rc = zstd_fail(TT_LOG_ERROR, "compressor setup failed", r);
    goto out;
  }
  *out = z;
  z = NULL;
  rc = 0;
out:
  tt_zstd_free(z);
  return rc;
}

int tt_zstd_new_decompressor(tt_zstd_t **out) {
  tt_zstd_t *z = NULL;
  size_t r;
  int rc;

  if (out == NULL)
    return TT_EINVAL;
  *out = NULL;

  z = calloc(1, sizeof(*z));
  if (z == NULL)
    return TT_ENOMEM;
  z->dctx = ZSTD_createDCtx();
  if (z->dctx == NULL) {
    rc = TT_ENOMEM;
    goto out;
  }
  r = ZSTD_DCtx_setParameter(z->dctx, ZSTD_d_windowLogMax, TT_ZSTD_WINDOW_LOG_MAX);
  if (ZSTD_isError(r)) {
    rc = zstd_fail(TT_LOG_ERROR, "decompressor setup failed", r);
    goto out;
  }
  *out = z;
  z = NULL;
  rc = 0;
out:
  tt_zstd_free(z);
  return rc;
}

void tt_zstd_free(tt_zstd_t *z) {
  if (z == NULL)
    return;
  ZSTD_freeCCtx(z->cctx);
  ZSTD_freeDCtx(z->dctx);
  free(z);
}

/* A chunk is sent either as a frame strictly smaller than itself or raw, so the input's
 * own length is always enough room. */
size_t tt_zstd_bound(size_t in_len) {
  return in_len;
}

/* Compresses into at most in_len - 1 bytes: if zstd cannot get below that, it says
 * dstSize_tooSmall and the chunk goes raw. One frame per chunk, so the receiver can decode
 * any chunk alone and a chunk is never split across frames. */
int tt_zstd_compress(tt_zstd_t *z, const void *in, size_t in_len, void *out, size_t out_cap,
                     size_t *out_len, bool *compressed) {
  size_t cap, n;

  if (out_len != NULL)
    *out_len = 0;
  if (compressed != NULL)
    *compressed = false;
  if (z == NULL || z->cctx == NULL || out_len == NULL || compressed == NULL ||
      (in == NULL && in_len > 0) || (out == NULL && out_cap > 0))
    return TT_EINVAL;
  if (in_len == 0)
    return 0;

  cap = out_cap < in_len ? out_cap : in_len - 1;
  if (cap > 0) {
    /* ZSTD_compress2 resets the session itself, so a context left mid-frame by an earlier
     * failure starts clean; the parameters stay. */
    n = ZSTD_compress2(z->cctx, out, cap, in, in_len);
    if (!ZSTD_isError(n)) {
      *out_len = n;
      *compressed = true;
      return 0;
    }
    if (ZSTD_getErrorCode(n) != ZSTD_error_dstSize_tooSmall)
      return zstd_fail(TT_LOG_ERROR, "compress failed", n);
  }
  /* Did not shrink. The caller gave less room than tt_zstd_bound: nothing we can send. */
  if (out_cap < in_len)
    return TT_ETOOBIG;
  memcpy(out, in, in_len);
  *out_len = in_len;
  return 0;
}

static uint32_t read_le32(const unsigned char *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* The input is a peer's bytes. Refused without decoding: anything but one ordinary zstd
 * frame (skippable and legacy frames included), and a frame whose header declares more
 * than out_cap. A frame that does not declare its size is streamed into out and stopped at
 * the first byte past out_cap; its window is capped by ZSTD_d_windowLogMax, so the
 * decoder's own buffer stays small too. */
int tt_zstd_decompress(tt_zstd_t *z, const void *in, size_t in_len, void *out, size_t out_cap,
                       size_t *out_len) {
  unsigned long long fcs;
  unsigned char spill;
  ZSTD_inBuffer ib;
  ZSTD_outBuffer ob, sb;

  if (out_len != NULL)
    *out_len = 0;
  if (z == NULL || z->dctx == NULL || out_len == NULL || (in == NULL && in_len > 0) ||
      (out == NULL && out_cap > 0))
    return TT_EINVAL;

  if (in_len < 4 || read_le32(in) != ZSTD_MAGICNUMBER) {
    tt_log(TT_LOG_WARN, TT_ZSTD_MOD, "not a zstd frame", "len=%zu", in_len);
    return TT_EZSTD;
  }
  fcs = ZSTD_getFrameContentSize(in, in_len);
  if (fcs == ZSTD_CONTENTSIZE_ERROR) {
    tt_log(TT_LOG_WARN, TT_ZSTD_MOD, "bad or truncated frame header", "len=%zu", in_len);
    return TT_EZSTD;
  }
  if (fcs != ZSTD_CONTENTSIZE_UNKNOWN && fcs > out_cap) {
    tt_log(TT_LOG_WARN, TT_ZSTD_MOD, "frame content size exceeds limit", "size=%llu max=%zu",
           fcs, out_cap);
    return TT_ETOOBIG;
  }

  /* A previous chunk may have failed halfway; start this frame from a clean session. */
  ZSTD_DCtx_reset(z->dctx, ZSTD_reset_session_only);
  ib = (ZSTD_inBuffer){in, in_len, 0};
  ob = (ZSTD_outBuffer){out, out_cap, 0};
  /* Once out is full, decoding goes on into one spare byte: if the frame ends there it fit
   * exactly; if the byte is written, it did not. */
  sb = (ZSTD_outBuffer){&spill, 1, 0};
  for (;;) {
    ZSTD_outBuffer *o = ob.pos < ob.size ? &ob : &sb;
    size_t in_pos = ib.pos, out_pos = o->pos;
    size_t r = ZSTD_decompressStream(z->dctx, o, &ib);

    if (ZSTD_isError(r))
      return zstd_fail(TT_LOG_WARN, "decompress failed", r);
    if (sb.pos > 0) {
      tt_log(TT_LOG_WARN, TT_ZSTD_MOD, "decompressed size exceeds limit", "max=%zu", out_cap);
      return TT_ETOOBIG;
    }
    if (r == 0)
      break;
    /* zstd moves whenever it can; standing still means it wants input we do not have:
     * the frame stops short of its end. */
    if (ib.pos == in_pos && o->pos == out_pos) {
      tt_log(TT_LOG_WARN, TT_ZSTD_MOD, "truncated frame", "len=%zu", in_len);
      return TT_EZSTD;
    }
  }
  if (ib.pos != in_len) {
    tt_log(TT_LOG_WARN, TT_ZSTD_MOD, "bytes after the frame", "len=%zu used=%zu", in_len,
           ib.pos);
    return TT_EZSTD;
  }
  *out_len = ob.pos;
  return 0;
}
