/* The recording writer: asciicast v2 lines -> one zstd stream -> uv_fs writes, one in
 * flight, with the sha256 of the compressed bytes kept as they are produced. A recording is
 * flushed every ~64 KiB of events or every second, so a crash loses little of it. */
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>
#include "record.h"
#include "tt/hex.h"
#include "tt/json.h"
#include "tt/limits.h"
#include "tt/log.h"

#define REC_FLUSH_BYTES (64u * 1024u) /* event bytes between flushes */
#define REC_FLUSH_MS 1000u            /* or this long after the first unflushed event */
#define REC_ZSTD_LEVEL 3
/* The console's credit stops at TT_RECORD_BACKLOG_MAX, but the device may still hold a
 * window's worth: the queue itself may grow past the mark up to this. */
#define REC_QUEUE_MAX (16u * TT_RECORD_BACKLOG_MAX)
#define REC_LINE_MAX (BROKER_JSON_TEXT_MAX(TT_DATA_CHUNK_MAX) + 64u)

typedef enum { REC_OPENING = 0, REC_OPEN, REC_SYNCING, REC_CLOSING } rec_state_t;

struct broker_rec_s {
  uv_loop_t *loop;
  broker_rec_cbs_t cbs;
  void *ctx;
  uv_fs_t req;           /* the one request in flight (busy) */
  bool busy;
  rec_state_t state;
  uv_file fd;            /* -1 until opened */
  ZSTD_CCtx *z;
  EVP_MD_CTX *sha;
  tt_buf_t line;         /* one event as JSON text */
  tt_buf_t queue;        /* compressed, not yet handed to a write */
  tt_buf_t inflight;     /* the bytes of the write in flight */
  uv_buf_t wbuf;
  broker_utf8_carry_t carry;
  uint64_t start_ns;     /* uv_hrtime at start: event times count from it */
  uint64_t unflushed;    /* event bytes fed since the last flush */
  uint64_t first_unflushed_ms;
  int64_t size;          /* compressed bytes produced */
  int64_t written;       /* of them, on the disk */
  bool finishing, failed, held;
  bool told;             /* on_fail was called (or the owner learnt it from a return value) */
  int err;
};

/* ---- JSON text from terminal bytes --------------------------------------------------- */

typedef enum { U8_OK, U8_SHORT, U8_BAD } u8_result_t;

/* Decode one character from s[0..len): *used bytes. U8_BAD: s[0..*used) is the maximal
 * invalid subpart (one U+FFFD). U8_SHORT: s is a valid start cut short. */
static u8_result_t u8_decode(const uint8_t *s, size_t len, size_t *used) {
  uint8_t c = s[0];
  size_t need;
  uint8_t lo = 0x80, hi = 0xbf;
  if (c < 0x80) {
    *used = 1;
    return U8_OK;
  }
  if (c >= 0xc2 && c <= 0xdf) need = 1;
  else if (c >= 0xe0 && c <= 0xef) need = 2;
  else if (c >= 0xf0 && c <= 0xf4) need = 3;
  else {
    *used = 1;
    return U8_BAD;
  }
  if (c == 0xe0) lo = 0xa0;          /* overlong */
  else if (c == 0xed) hi = 0x9f;     /* surrogates */
  else if (c == 0xf0) lo = 0x90;     /* overlong */
  else if (c == 0xf4) hi = 0x8f;     /* past U+10FFFF */
  for (size_t k = 1; k <= need; k++) {
    if (k >= len) return U8_SHORT;
    uint8_t x = s[k];
    if (x < lo || x > hi) {
      *used = k;
      return U8_BAD;
    }
    lo = 0x80, hi = 0xbf;
  }
  *used = need + 1;
  return U8_OK;
}

/* Short escapes where JSON has them; other controls, and DEL, as \u00XX: none reaches a player raw. */
static int put_char(tt_buf_t *out, const uint8_t *s, size_t n) {
  char esc[TT_JSON_ESC_MAX];
  size_t en = n == 1 ? tt_json_escape_byte(esc, s[0], TT_JSON_ESC_SHORT | TT_JSON_ESC_DEL) : 0;
  return en ? tt_buf_append(out, esc, en) : tt_buf_append(out, s, n);
}

static int put_replacement(tt_buf_t *out) { return tt_buf_append(out, "\xef\xbf\xbd", 3); }

/* Finish a carried sequence with the first bytes of p; *taken = bytes of p used. */
static int carry_finish(tt_buf_t *out, broker_utf8_carry_t *carry, const uint8_t *p, size_t n, size_t *taken) {
  uint8_t tmp[8];
  size_t k = n < 3 ? n : 3, used = 0;
  memcpy(tmp, carry->b, carry->n);
  memcpy(tmp + carry->n, p, k);
  u8_result_t res = u8_decode(tmp, carry->n + k, &used);
  if (res == U8_SHORT) { /* still not whole: p was that short */
    memcpy(carry->b + carry->n, p, n);
    carry->n = (uint8_t)(carry->n + n);
    *taken = n;
    return 0;
  }
  int rc;
  if (res == U8_OK) {
    rc = put_char(out, tmp, used);
    *taken = used - carry->n;
  } else { /* the carried bytes were a valid start: they are the invalid subpart */
    rc = put_replacement(out);
    *taken = used > carry->n ? used - carry->n : 0;
  }
  carry->n = 0;
  return rc;
}

int broker_json_text(tt_buf_t *out, broker_utf8_carry_t *carry, const uint8_t *p, size_t n) {
  size_t i = 0;
  int rc = 0;
  if (carry->n && n) rc = carry_finish(out, carry, p, n, &i);
  while (!rc && i < n) {
    size_t used = 0;
    u8_result_t res = u8_decode(p + i, n - i, &used);
    if (res == U8_SHORT) {
      carry->n = (uint8_t)(n - i);
      memcpy(carry->b, p + i, n - i);
      break;
    }
    rc = res == U8_OK ? put_char(out, p + i, used) : put_replacement(out);
    i += used;
  }
  return rc;
}

/* ---- the compressed stream and the file ------------------------------------------------ */

static size_t backlog(const broker_rec_t *r) { return r->queue.len + r->inflight.len; }

bool broker_rec_backlogged(const broker_rec_t *r) { return backlog(r) > TT_RECORD_BACKLOG_MAX; }

static void pump(broker_rec_t *r);

/* notify: call on_fail now. Only from callbacks of our own (a file system answer, the
 * tick): never from inside a call the owner made, which may be in the middle of its work. */
static void fail(broker_rec_t *r, int err, bool notify) {
  if (!r->failed) {
    r->failed = true;
    r->err = err;
    tt_buf_reset(&r->queue);
  }
  if (notify && !r->told && !r->finishing && r->cbs.on_fail) {
    r->told = true;
    r->cbs.on_fail(r->ctx, r->err);
  }
}

/* Compress what the line holds (mode: continue, flush or end) onto the queue. */
static int compress(broker_rec_t *r, ZSTD_EndDirective mode) {
  ZSTD_inBuffer in = {tt_buf_head(&r->line), r->line.len, 0};
  for (;;) {
    size_t room = ZSTD_CStreamOutSize();
    int rc = tt_buf_reserve(&r->queue, room);
    if (rc) return rc;
    ZSTD_outBuffer out = {tt_buf_tail(&r->queue), room, 0};
    size_t left = ZSTD_compressStream2(r->z, &out, &in, mode);
    if (ZSTD_isError(left)) {
      TT_ERROR("record", "compression failed", "err=%s", ZSTD_getErrorName(left));
      return TT_EZSTD;
    }
    if (out.pos) {
      EVP_DigestUpdate(r->sha, out.dst, out.pos);
      tt_buf_commit(&r->queue, out.pos);
      r->size += (int64_t)out.pos;
    }
    bool done = mode == ZSTD_e_continue ? in.pos == in.size : left == 0;
    if (done) break;
  }
  tt_buf_reset(&r->line);
  return 0;
}

static int flush(broker_rec_t *r, ZSTD_EndDirective mode) {
  int rc = compress(r, mode);
  r->unflushed = 0;
  return rc;
}

/* One event line is in r->line: feed it, flushing every REC_FLUSH_BYTES. */
static int feed_line(broker_rec_t *r) {
  if (r->failed) {
    tt_buf_reset(&r->line);
    return 0; /* the owner was told already */
  }
  if (r->unflushed == 0) r->first_unflushed_ms = uv_now(r->loop);
  r->unflushed += r->line.len;
  int rc = compress(r, r->unflushed >= REC_FLUSH_BYTES ? ZSTD_e_flush : ZSTD_e_continue);
  if (!rc && r->unflushed >= REC_FLUSH_BYTES) r->unflushed = 0;
  if (rc) {
    tt_buf_reset(&r->line);
    fail(r, rc, false);
    r->told = true; /* the return value tells the owner */
    return rc;
  }
  if (broker_rec_backlogged(r)) r->held = true;
  pump(r);
  return 0;
}

static int event_start(broker_rec_t *r, const char *code) {
  uint64_t us = (uv_hrtime() - r->start_ns) / 1000u;
  char head[64];
  int k = snprintf(head, sizeof(head), "[%" PRIu64 ".%06" PRIu64 ", \"%s\", \"", us / 1000000u, us % 1000000u, code);
  return tt_buf_append(&r->line, head, (size_t)k);
}

int broker_rec_output(broker_rec_t *r, const uint8_t *p, size_t n) {
  if (r->finishing) return TT_ESTATE;
  if (r->failed) return r->err ? r->err : TT_EIO;
  int rc = event_start(r, "o");
  if (!rc) rc = broker_json_text(&r->line, &r->carry, p, n);
  if (!rc) rc = tt_buf_append(&r->line, "\"]\n", 3);
  if (rc) {
    tt_buf_reset(&r->line);
    return rc;
  }
  return feed_line(r);
}

int broker_rec_resize(broker_rec_t *r, uint32_t cols, uint32_t rows) {
  if (r->finishing) return TT_ESTATE;
  if (r->failed) return r->err ? r->err : TT_EIO;
  char size[32];
  int k = snprintf(size, sizeof(size), "%ux%u\"]\n", cols, rows);
  int rc = event_start(r, "r");
  if (!rc) rc = tt_buf_append(&r->line, size, (size_t)k);
  if (rc) {
    tt_buf_reset(&r->line);
    return rc;
  }
  return feed_line(r);
}

static void done(broker_rec_t *r) {
  /* A failed recording's size is what its partial file holds. */
  broker_rec_result_t res = {.size = r->failed ? r->written : r->size, .failed = r->failed, .err = r->err};
  uint8_t md[EVP_MAX_MD_SIZE];
  unsigned mdlen = 0;
  EVP_DigestFinal_ex(r->sha, md, &mdlen);
  tt_hex(res.sha256, sizeof(res.sha256), md, mdlen < 32 ? mdlen : 32);
  if (r->cbs.on_done) r->cbs.on_done(r->ctx, &res);
  ZSTD_freeCCtx(r->z);
  EVP_MD_CTX_free(r->sha);
  tt_buf_free(&r->line);
  tt_buf_free(&r->queue);
  tt_buf_free(&r->inflight);
  free(r);
}

static void fs_cb(uv_fs_t *req);

/* Start the next step if none is in flight: write what is queued; once finishing and all
 * is written, fsync; then close; then done. */
static void pump(broker_rec_t *r) {
  if (r->busy) return;
  int rc = 0;
  if (r->fd < 0) { /* never opened (the open failed) */
    if (r->finishing) done(r);
    return;
  }
  if (!r->failed && r->inflight.len == 0 && r->queue.len > 0) {
    tt_buf_t t = r->inflight; /* swap: the queue goes to the disk, the empty buffer takes new bytes */
    r->inflight = r->queue;
    r->queue = t;
  }
  if (!r->failed && r->inflight.len > 0) {
    r->wbuf = uv_buf_init((char *)tt_buf_head(&r->inflight), (unsigned)r->inflight.len);
    rc = uv_fs_write(r->loop, &r->req, r->fd, &r->wbuf, 1, -1, fs_cb);
  } else if (!r->finishing) {
    return;
  } else if (!r->failed && r->state == REC_OPEN) {
    r->state = REC_SYNCING;
    rc = uv_fs_fsync(r->loop, &r->req, r->fd, fs_cb);
  } else {
    r->state = REC_CLOSING;
    rc = uv_fs_close(r->loop, &r->req, r->fd, fs_cb);
  }
  if (rc == 0) {
    r->busy = true;
    return;
  }
  /* A request that could not even start: nothing more can be written (told at the tick). */
  fail(r, rc, false);
  if (r->state != REC_CLOSING) {
    r->state = REC_CLOSING;
    if (uv_fs_close(r->loop, &r->req, r->fd, fs_cb) == 0) {
      r->busy = true;
      return;
    }
  }
  r->fd = -1;
  if (r->finishing) done(r);
}

static void fs_cb(uv_fs_t *req) {
  broker_rec_t *r = req->data;
  ssize_t res = req->result;
  uv_fs_type type = req->fs_type;
  uv_fs_req_cleanup(req);
  r->busy = false;
  switch (type) {
  case UV_FS_OPEN:
    if (res < 0) {
      TT_WARN("record", "recording not created", "err=%s", uv_strerror((int)res));
      bool finishing = r->finishing;
      fail(r, (int)res, true); /* the owner may finish (and so free) r in on_fail */
      if (finishing) done(r);
      return;
    }
    r->fd = (uv_file)res;
    r->state = REC_OPEN;
    break;
  case UV_FS_WRITE:
    if (res < 0) {
      TT_WARN("record", "recording write failed", "err=%s", uv_strerror((int)res));
      tt_buf_reset(&r->inflight);
      fail(r, (int)res, true);
      break;
    }
    r->written += (int64_t)res;
    tt_buf_consume(&r->inflight, (size_t)res); /* a short write goes on from where it stopped */
    if (r->inflight.len == 0) tt_buf_shrink(&r->inflight);
    if (r->held && backlog(r) <= TT_RECORD_BACKLOG_MAX / 2) {
      r->held = false;
      if (!r->finishing && !r->failed && r->cbs.on_drain) r->cbs.on_drain(r->ctx);
    }
    break;
  case UV_FS_FSYNC:
    if (res < 0) {
      TT_WARN("record", "recording fsync failed", "err=%s", uv_strerror((int)res));
      fail(r, (int)res, true);
    }
    break;
  case UV_FS_CLOSE:
    r->fd = -1;
    done(r);
    return;
  default:
    break;
  }
  pump(r);
}

int broker_rec_open(broker_rec_t **out, uv_loop_t *loop, const char *path, const broker_rec_header_t *h,
                    const broker_rec_cbs_t *cbs, void *ctx) {
  *out = NULL;
  broker_rec_t *r = calloc(1, sizeof(*r));
  if (!r) return TT_ENOMEM;
  r->loop = loop;
  r->cbs = *cbs;
  r->ctx = ctx;
  r->fd = -1;
  r->req.data = r;
  r->start_ns = uv_hrtime();
  tt_buf_init(&r->line, REC_LINE_MAX);
  tt_buf_init(&r->queue, REC_QUEUE_MAX);
  tt_buf_init(&r->inflight, REC_QUEUE_MAX);
  r->z = ZSTD_createCCtx();
  r->sha = EVP_MD_CTX_new();
  int rc = TT_ENOMEM;
  if (!r->z || !r->sha) goto fail;
  rc = TT_EZSTD;
  if (ZSTD_isError(ZSTD_CCtx_setParameter(r->z, ZSTD_c_compressionLevel, REC_ZSTD_LEVEL))) goto fail;
  rc = TT_EIO;
  if (EVP_DigestInit_ex(r->sha, EVP_sha256(), NULL) != 1) goto fail;

  /* The header line. TERM and the title are validated text; escaped all the same. */
  char head[160];
  broker_utf8_carry_t c0 = {.n = 0};
  int k = snprintf(head, sizeof(head), "{\"version\": 2, \"width\": %u, \"height\": %u, \"timestamp\": %" PRId64
                   ", \"env\": {\"TERM\": \"", h->cols, h->rows, h->unix_s);
  rc = tt_buf_append(&r->line, head, (size_t)k);
  if (!rc) rc = broker_json_text(&r->line, &c0, (const uint8_t *)h->term, strlen(h->term));
  if (!rc) rc = tt_buf_append(&r->line, "\"}, \"title\": \"", 14);
  c0.n = 0;
  if (!rc) rc = broker_json_text(&r->line, &c0, (const uint8_t *)h->title, strlen(h->title));
  if (!rc) rc = tt_buf_append(&r->line, "\"}\n", 3);
  if (!rc) rc = compress(r, ZSTD_e_flush);
  if (rc) goto fail;

  rc = uv_fs_open(loop, &r->req, path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600, fs_cb);
  if (rc) goto fail;
  r->busy = true;
  *out = r;
  return 0;
fail:
  ZSTD_freeCCtx(r->z);
  EVP_MD_CTX_free(r->sha);
  tt_buf_free(&r->line);
  tt_buf_free(&r->queue);
  tt_buf_free(&r->inflight);
  free(r);
  return rc;
}

void broker_rec_tick(broker_rec_t *r) {
  if (r->finishing) return;
  if (r->failed) {
    fail(r, r->err, true);
    return;
  }
  if (r->unflushed == 0 || uv_now(r->loop) - r->first_unflushed_ms < REC_FLUSH_MS) return;
  int rc = flush(r, ZSTD_e_flush);
  if (rc) {
    fail(r, rc, true);
    return;
  }
  if (broker_rec_backlogged(r)) r->held = true; /* so that on_drain comes when it clears */
  pump(r);
}

void broker_rec_finish(broker_rec_t *r) {
  if (r->finishing) return;
  if (!r->failed) {
    int rc = 0;
    if (r->carry.n) { /* output ended inside a character */
      r->carry.n = 0;
      rc = event_start(r, "o");
      if (!rc) rc = put_replacement(&r->line);
      if (!rc) rc = tt_buf_append(&r->line, "\"]\n", 3);
      if (rc) tt_buf_reset(&r->line);
    }
    if (!rc) rc = flush(r, ZSTD_e_end);
    if (rc) fail(r, rc, false); /* the owner is done with it: on_done says failed */
  }
  r->finishing = true;
  pump(r);
}
