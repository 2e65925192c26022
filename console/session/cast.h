/* Recordings as the console reads them: a zstd stream of an asciicast v2 file. Pure
 * functions (no I/O, no clock), so the parser and the player's pacing are unit-tested. */
#ifndef CONSOLE_CAST_H
#define CONSOLE_CAST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "tt/err.h"

/* One line of the .cast file at most: an event carries at most one relayed chunk
 * (TT_DATA_CHUNK_MAX bytes), each byte escaped to at most 6 (\u001b). Longer lines are
 * not from our broker. */
#define CAST_LINE_MAX (1024u * 1024u)
/* Decompressed output is handed on in pieces of at most this. */
#define CAST_UNZSTD_OUT (64u * 1024u)

typedef struct {
  uint32_t version, width, height;
  uint64_t timestamp; /* unix seconds, 0 if absent */
} cast_header_t;

typedef struct {
  uint64_t t_us;  /* time since the start */
  char type;      /* 'o' output, 'i' input, 'r' resize, 'm' marker, ... */
  uint8_t *data;  /* the event's text, decoded from JSON (raw UTF-8 bytes) */
  size_t len;
} cast_event_t;

/* The header line: a JSON object with "version": 2 and positive "width"/"height".
 * TT_EPROTO if it is not one. */
int cast_header_parse(const char *line, size_t n, cast_header_t *h) TT_WUR;
/* One event line [time, "type", "text"]; the text is decoded into buf (capacity cap; the
 * decoded text is never longer than the line). TT_EPROTO if malformed. */
int cast_event_parse(const char *line, size_t n, cast_event_t *ev, uint8_t *buf, size_t cap) TT_WUR;

/* How long to wait before an event at t_us when the previous one was at prev_us: pauses
 * longer than idle_max_us (0 = no limit) are shortened to it, then divided by speed.
 * speed 0 means no waiting. Time going backwards waits 0. */
uint64_t cast_delay_us(uint64_t prev_us, uint64_t t_us, double speed, uint64_t idle_max_us);

/* A player fed with the decompressed file in pieces of any size. Calls on_output for each
 * "o" event with the wait before it; other events are skipped. */
typedef int (*cast_output_cb)(void *ctx, const uint8_t *p, size_t n, uint64_t delay_us);

typedef struct {
  double speed;
  uint64_t idle_max_us;
  cast_output_cb on_output;
  void *ctx;
  /* private */
  char *line;
  size_t len, cap;
  uint8_t *text;
  bool have_header;
  cast_header_t header;
  uint64_t prev_us;
  uint64_t lineno;
} cast_player_t;

void cast_player_init(cast_player_t *p, double speed, uint64_t idle_max_us, cast_output_cb cb, void *ctx);
/* TT_EPROTO (bad line), TT_ETOOBIG (line over CAST_LINE_MAX), TT_ENOMEM, or the first
 * non-zero result of on_output. */
int cast_player_feed(cast_player_t *p, const uint8_t *data, size_t n) TT_WUR;
/* The end of the file: a last line without a newline is played; TT_EPROTO if no header. */
int cast_player_end(cast_player_t *p) TT_WUR;
void cast_player_free(cast_player_t *p);
/* The line number the last error was on (1 = the header). */
static inline uint64_t cast_player_line(const cast_player_t *p) { return p->lineno; }

/* Decompress a whole zstd stream (one or more frames), handing the output on in pieces.
 * TT_EZSTD if corrupt, TT_EPROTO if it stops in the middle of a frame (the recording
 * did not finish); otherwise the first non-zero result of out. */
typedef int (*cast_bytes_cb)(void *ctx, const uint8_t *p, size_t n);
int cast_unzstd(const uint8_t *in, size_t n, cast_bytes_cb out, void *ctx) TT_WUR;

#endif
