/* Shell recordings: an asciicast v2 stream, compressed as one zstd stream, written to disk
 * with uv_fs_* (one write in flight), its sha256 computed as the bytes are produced. The
 * writer knows nothing of sessions or the store: its owner does that in on_done. */
#ifndef BROKER_RECORD_H
#define BROKER_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>
#include "tt/buf.h"
#include "tt/err.h"

/* An incomplete UTF-8 sequence at the end of one chunk, kept for the next. */
typedef struct {
  uint8_t b[4];
  uint8_t n;
} broker_utf8_carry_t;

/* Append p[0..n) to out as the inside of a JSON string: valid UTF-8 copied, controls, '"'
 * and '\\' escaped, each invalid byte sequence (maximal subpart) replaced by U+FFFD. A
 * sequence cut at the end of p waits in carry for the next call (carry zeroed at start).
 * TT_EFULL / TT_ENOMEM from out. */
int broker_json_text(tt_buf_t *out, broker_utf8_carry_t *carry, const uint8_t *p, size_t n) TT_WUR;
/* The most broker_json_text can append for n bytes (and a carry). */
#define BROKER_JSON_TEXT_MAX(n) (6u * ((size_t)(n) + 4u))

typedef struct broker_rec_s broker_rec_t;

typedef struct {
  int64_t size;        /* compressed bytes written */
  char sha256[65];     /* hex, of those bytes */
  bool failed;         /* a write failed (or the file could not be made): the file is partial */
  int err;             /* the failure (a libuv code), 0 if none */
} broker_rec_result_t;

typedef struct {
  /* The backlog of compressed bytes fell back under TT_RECORD_BACKLOG_MAX / 2. */
  void (*on_drain)(void *ctx);
  /* Creating or writing the file failed (err: a libuv code); the recording is over and the
   * shell must not go on. Not called after broker_rec_finish(). */
  void (*on_fail)(void *ctx, int err);
  /* Everything written, synced and closed (or failed). The writer is freed after return. */
  void (*on_done)(void *ctx, const broker_rec_result_t *res);
} broker_rec_cbs_t;

typedef struct {
  uint32_t cols, rows;
  int64_t unix_s;      /* "timestamp": when the recording started */
  const char *term;    /* env TERM */
  const char *title;
} broker_rec_header_t;

/* Start a recording into path (created O_EXCL, mode 0600, asynchronously: a failure comes
 * as on_fail). The header is the first line. */
int broker_rec_open(broker_rec_t **out, uv_loop_t *loop, const char *path, const broker_rec_header_t *h,
                    const broker_rec_cbs_t *cbs, void *ctx) TT_WUR;
/* An "o" event: output shown to the console. */
int broker_rec_output(broker_rec_t *r, const uint8_t *p, size_t n) TT_WUR;
/* An "r" event: the console's terminal changed size. */
int broker_rec_resize(broker_rec_t *r, uint32_t cols, uint32_t rows) TT_WUR;
/* More compressed bytes wait for the disk than TT_RECORD_BACKLOG_MAX: hold the shell. */
bool broker_rec_backlogged(const broker_rec_t *r);
/* Once in a while (every sweep): flush what has waited a second, so a crash loses little. */
void broker_rec_tick(broker_rec_t *r);
/* End the stream, write it all, fsync, close; on_done follows. on_drain / on_fail are not
 * called any more. */
void broker_rec_finish(broker_rec_t *r);

#endif
