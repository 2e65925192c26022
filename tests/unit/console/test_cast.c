/* Unit tests for console/session/cast.c: the asciicast v2 header and event parser, the replay's
 * pacing, the player fed in pieces of every size, and the zstd stream around the file
 * (whole, multi-frame, truncated, corrupt). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zstd.h>

#include "cast.h"

/* -- header ----------------------------------------------------------------------------- */

static int header(const char *s, cast_header_t *h) {
  return cast_header_parse(s, strlen(s), h);
}

static void test_header_ok(void **state) {
  (void)state;
  cast_header_t h;
  assert_int_equal(header("{\"version\": 2, \"width\": 80, \"height\": 24, \"timestamp\": 1764770000, "
                          "\"env\": {\"TERM\": \"xterm-256color\", \"SHELL\": \"/bin/bash\"}, "
                          "\"title\": \"S-5 T-3 alice@pc-42\"}",
                          &h),
                   0);
  assert_int_equal(h.version, 2);
  assert_int_equal(h.width, 80);
  assert_int_equal(h.height, 24);
  assert_int_equal(h.timestamp, 1764770000u);
  /* Keys in any order, unknown keys of every type skipped. */
  assert_int_equal(header("{\"x\":[1,{\"a\":null},true,false,-1.5e3],\"height\":50,\"width\":200,"
                          "\"version\":2}",
                          &h),
                   0);
  assert_int_equal(h.width, 200);
  assert_int_equal(h.height, 50);
  assert_int_equal(h.timestamp, 0);
  assert_int_equal(header("  {\"version\":2,\"width\":1,\"height\":1,\"timestamp\":1.5}  ", &h), 0);
}

static void test_header_bad(void **state) {
  (void)state;
  cast_header_t h;
  static const char *const bad[] = {
      "",
      "[]",
      "{}",
      "{\"version\":1,\"width\":80,\"height\":24}",            /* v1 is a different format */
      "{\"version\":2,\"width\":0,\"height\":24}",
      "{\"version\":2,\"width\":80}",
      "{\"version\":2,\"width\":80,\"height\":24",             /* unterminated */
      "{\"version\":2,\"width\":80,\"height\":24} x",          /* trailing junk */
      "{\"version\":2,\"width\":80.5,\"height\":24}",
      "{\"version\":2,\"width\":-80,\"height\":24}",
      "{\"version\":2,\"width\":999999,\"height\":24}",        /* over TT_TERM_DIM_MAX */
      "{\"version\":2,\"width\":80,\"height\":24,\"env\":{\"a\":}}",
      "{\"version\":2 \"width\":80,\"height\":24}",
      "{\"version\":\"2\",\"width\":80,\"height\":24}",
      "{\"version\":2,\"width\":80,\"height\":24,\"t\":\"\x01\"}", /* raw control in a string */
      "{\"version\":2,\"width\":80,\"height\":24,\"deep\":[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]}",
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    if (header(bad[i], &h) != TT_EPROTO) fail_msg("accepted bad header %zu: %s", i, bad[i]);
  }
}

/* -- events ----------------------------------------------------------------------------- */

static int event(const char *s, cast_event_t *ev, uint8_t *buf, size_t cap) {
  return cast_event_parse(s, strlen(s), ev, buf, cap);
}

static void test_event_ok(void **state) {
  (void)state;
  uint8_t buf[256];
  cast_event_t ev;
  assert_int_equal(event("[0.123456, \"o\", \"hello\\r\\n\"]", &ev, buf, sizeof(buf)), 0);
  assert_int_equal(ev.t_us, 123456);
  assert_int_equal(ev.type, 'o');
  assert_int_equal(ev.len, 7);
  assert_memory_equal(ev.data, "hello\r\n", 7);

  /* Escapes: ESC, quote, backslash, slash, BMP and astral code points, raw UTF-8. */
  assert_int_equal(event("[12,\"o\",\"\\u001b[1m\\\"\\\\\\/\\u00e9\\ud83d\\ude00\xc3\xa9\\b\\f\\t\"]", &ev, buf,
                         sizeof(buf)),
                   0);
  assert_int_equal(ev.t_us, 12000000);
  static const uint8_t want[] = {0x1b, '[', '1', 'm', '"', '\\', '/', 0xc3, 0xa9, 0xf0, 0x9f, 0x98, 0x80,
                                 0xc3, 0xa9, '\b', '\f', '\t'};
  assert_int_equal(ev.len, sizeof(want));
  assert_memory_equal(ev.data, want, sizeof(want));

  /* A lone surrogate (some writers emit them) becomes U+FFFD rather than failing. */
  assert_int_equal(event("[1,\"o\",\"a\\ud800b\\udc00\"]", &ev, buf, sizeof(buf)), 0);
  static const uint8_t fffd[] = {'a', 0xef, 0xbf, 0xbd, 'b', 0xef, 0xbf, 0xbd};
  assert_int_equal(ev.len, sizeof(fffd));
  assert_memory_equal(ev.data, fffd, sizeof(fffd));

  /* Resize events and empty text parse too. */
  assert_int_equal(event("[3.5,\"r\",\"100x40\"]", &ev, buf, sizeof(buf)), 0);
  assert_int_equal(ev.type, 'r');
  assert_int_equal(ev.t_us, 3500000);
  assert_int_equal(event("[0,\"o\",\"\"]", &ev, buf, sizeof(buf)), 0);
  assert_int_equal(ev.len, 0);
}

static void test_event_bad(void **state) {
  (void)state;
  uint8_t buf[64];
  cast_event_t ev;
  static const char *const bad[] = {
      "",
      "[]",
      "[1,\"o\"]",
      "[1,\"o\",\"x\",4]",
      "[-1,\"o\",\"x\"]",
      "[1e11,\"o\",\"x\"]",
      "[\"1\",\"o\",\"x\"]",
      "[1,\"oo\",\"x\"]",
      "[1,\"\",\"x\"]",
      "[1,\"o\",\"x]",
      "[1,\"o\",\"\\x\"]",
      "[1,\"o\",\"\\u12\"]",
      "[1,\"o\",\"x\"] junk",
      "[1 \"o\",\"x\"]",
      "[nan,\"o\",\"x\"]",
      "[1,\"o\",\"tab\there\"]",
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    if (event(bad[i], &ev, buf, sizeof(buf)) != TT_EPROTO) fail_msg("accepted bad event %zu: %s", i, bad[i]);
  }
  /* Text longer than the buffer is refused, not cut. */
  assert_int_equal(event("[1,\"o\",\"abcdef\"]", &ev, buf, 5), TT_EPROTO);
  assert_int_equal(event("[1,\"o\",\"abcde\"]", &ev, buf, 5), 0);
}

/* -- pacing ----------------------------------------------------------------------------- */

static void test_delay(void **state) {
  (void)state;
  assert_int_equal(cast_delay_us(0, 1000000, 1.0, 0), 1000000);
  assert_int_equal(cast_delay_us(1000000, 1500000, 2.0, 0), 250000);
  assert_int_equal(cast_delay_us(0, 10000000, 1.0, 2000000), 2000000);   /* idle cap */
  assert_int_equal(cast_delay_us(0, 10000000, 4.0, 2000000), 500000);    /* cap, then speed */
  assert_int_equal(cast_delay_us(0, 1000000, 0.5, 0), 2000000);
  assert_int_equal(cast_delay_us(0, 1000000, 0.0, 0), 0);                /* speed 0: no wait */
  assert_int_equal(cast_delay_us(5000000, 4000000, 1.0, 0), 0);          /* backwards */
  assert_int_equal(cast_delay_us(7, 7, 1.0, 0), 0);
}

/* -- the player ------------------------------------------------------------------------- */

typedef struct {
  char out[4096];
  size_t len;
  uint64_t delays[64];
  size_t n;
  int fail_at; /* return an error on this call (1-based), 0 = never */
} sink_t;

static int collect(void *ctx, const uint8_t *p, size_t n, uint64_t delay_us) {
  sink_t *s = ctx;
  if (s->fail_at && (int)s->n + 1 == s->fail_at) return TT_EIO;
  assert_true(s->len + n <= sizeof(s->out));
  memcpy(s->out + s->len, p, n);
  s->len += n;
  if (s->n < 64) s->delays[s->n] = delay_us;
  s->n++;
  return 0;
}

static const char k_cast[] =
    "{\"version\": 2, \"width\": 80, \"height\": 24, \"timestamp\": 1764770000, \"env\": {\"TERM\": \"xterm\"}}\n"
    "[0.100000, \"o\", \"$ \"]\n"
    "[0.600000, \"o\", \"ls\\r\\n\"]\r\n"
    "\n"
    "[0.700000, \"r\", \"100x40\"]\n"
    "[5.600000, \"o\", \"a  b\\r\\n\"]\n"
    "[5.600001, \"i\", \"x\"]\n"
    "[5.700000, \"o\", \"$ \"]";  /* no newline at the end */

static void play(const char *text, size_t len, size_t piece, double speed, uint64_t idle, sink_t *s, int want_rc) {
  cast_player_t p;
  cast_player_init(&p, speed, idle, collect, s);
  int rc = 0;
  for (size_t off = 0; off < len && !rc; off += piece)
    rc = cast_player_feed(&p, (const uint8_t *)text + off, len - off < piece ? len - off : piece);
  if (!rc) rc = cast_player_end(&p);
  cast_player_free(&p);
  assert_int_equal(rc, want_rc);
}

static void test_player_pieces(void **state) {
  (void)state;
  /* The same output and pacing whatever the pieces the decompressor hands over. */
  static const size_t pieces[] = {1, 2, 3, 7, 64, 100000};
  for (size_t i = 0; i < sizeof(pieces) / sizeof(pieces[0]); i++) {
    sink_t s;
    memset(&s, 0, sizeof(s));
    play(k_cast, strlen(k_cast), pieces[i], 1.0, 2000000, &s, 0);
    assert_int_equal(s.n, 4);
    assert_int_equal(s.len, strlen("$ ls\r\na  b\r\n$ "));
    assert_memory_equal(s.out, "$ ls\r\na  b\r\n$ ", s.len);
    assert_int_equal(s.delays[0], 100000);
    assert_int_equal(s.delays[1], 500000);
    assert_int_equal(s.delays[2], 2000000); /* 5 s idle, capped at 2 s */
    assert_int_equal(s.delays[3], 100000);
  }
  sink_t fast;
  memset(&fast, 0, sizeof(fast));
  play(k_cast, strlen(k_cast), 5, 0.0, 0, &fast, 0);
  for (size_t i = 0; i < fast.n; i++) assert_int_equal(fast.delays[i], 0);
}

static void test_player_bad(void **state) {
  (void)state;
  sink_t s;
  memset(&s, 0, sizeof(s));
  play("", 0, 1, 1.0, 0, &s, TT_EPROTO); /* no header */
  play("\n\n", 2, 1, 1.0, 0, &s, TT_EPROTO);
  static const char no_v2[] = "{\"version\":1,\"width\":80,\"height\":24}\n[0,\"o\",\"x\"]\n";
  play(no_v2, strlen(no_v2), 4, 1.0, 0, &s, TT_EPROTO);
  static const char bad_ev[] = "{\"version\":2,\"width\":80,\"height\":24}\n[0,\"o\",\"x\"]\n[oops]\n";
  cast_player_t p;
  cast_player_init(&p, 1.0, 0, collect, &s);
  assert_int_equal(cast_player_feed(&p, (const uint8_t *)bad_ev, strlen(bad_ev)), TT_EPROTO);
  assert_int_equal(cast_player_line(&p), 3);
  cast_player_free(&p);
  /* The callback's error stops the player and comes back. */
  memset(&s, 0, sizeof(s));
  s.fail_at = 2;
  play(k_cast, strlen(k_cast), 9, 0.0, 0, &s, TT_EIO);
  assert_int_equal(s.n, 1);
}

static void test_player_long_line(void **state) {
  (void)state;
  size_t n = CAST_LINE_MAX + 100;
  char *big = malloc(n);
  assert_non_null(big);
  static const char head[] = "{\"version\":2,\"width\":80,\"height\":24}\n[0,\"o\",\"";
  memcpy(big, head, strlen(head));
  memset(big + strlen(head), 'a', n - strlen(head));
  sink_t s;
  memset(&s, 0, sizeof(s));
  play(big, n, 4096, 1.0, 0, &s, TT_ETOOBIG); /* in pieces: the line buffer's limit */
  play(big, n, n, 1.0, 0, &s, TT_ETOOBIG);    /* whole: the same limit without copying */
  free(big);
}

/* -- zstd ------------------------------------------------------------------------------- */

typedef struct {
  uint8_t *p;
  size_t len, cap, calls;
} buf_t;

static int gather(void *ctx, const uint8_t *p, size_t n) {
  buf_t *b = ctx;
  assert_true(n > 0 && n <= CAST_UNZSTD_OUT);
  if (b->len + n > b->cap) {
    b->cap = (b->len + n) * 2;
    b->p = realloc(b->p, b->cap);
    assert_non_null(b->p);
  }
  memcpy(b->p + b->len, p, n);
  b->len += n;
  b->calls++;
  return 0;
}

/* A stream as the broker writes it: one frame, flushed now and then. */
static size_t stream_compress(const uint8_t *in, size_t n, uint8_t *out, size_t cap, size_t flush_every) {
  ZSTD_CCtx *z = ZSTD_createCCtx();
  assert_non_null(z);
  assert_false(ZSTD_isError(ZSTD_CCtx_setParameter(z, ZSTD_c_compressionLevel, 3)));
  ZSTD_outBuffer ob = {out, cap, 0};
  for (size_t off = 0; off < n; off += flush_every) {
    size_t take = n - off < flush_every ? n - off : flush_every;
    ZSTD_inBuffer ib = {in + off, take, 0};
    size_t r;
    do {
      r = ZSTD_compressStream2(z, &ob, &ib, ZSTD_e_flush);
      assert_false(ZSTD_isError(r));
    } while (r != 0 || ib.pos < ib.size);
  }
  ZSTD_inBuffer none = {NULL, 0, 0};
  size_t r;
  do {
    r = ZSTD_compressStream2(z, &ob, &none, ZSTD_e_end);
    assert_false(ZSTD_isError(r));
  } while (r != 0);
  ZSTD_freeCCtx(z);
  return ob.pos;
}

static void test_unzstd(void **state) {
  (void)state;
  size_t n = 3 * CAST_UNZSTD_OUT + 123;
  uint8_t *text = malloc(n);
  assert_non_null(text);
  for (size_t i = 0; i < n; i++) text[i] = (uint8_t)("[1.0, \"o\", \"abc\"]\n"[i % 18] + (i / 7919) % 3);
  size_t cap = ZSTD_compressBound(n) + 4096;
  uint8_t *z = malloc(cap * 2);
  assert_non_null(z);
  size_t zn = stream_compress(text, n, z, cap, 4096);

  buf_t b = {0};
  assert_int_equal(cast_unzstd(z, zn, gather, &b), 0);
  assert_int_equal(b.len, n);
  assert_memory_equal(b.p, text, n);
  assert_true(b.calls >= 4);

  /* Two frames back to back (a recorder restarted its stream) decode as one file. */
  size_t zn2 = ZSTD_compress(z + zn, cap, "tail\n", 5, 3);
  assert_false(ZSTD_isError(zn2));
  b.len = 0;
  assert_int_equal(cast_unzstd(z, zn + zn2, gather, &b), 0);
  assert_int_equal(b.len, n + 5);
  assert_memory_equal(b.p + n, "tail\n", 5);

  /* Truncated: what was there is handed on, then the stream is said to be unfinished. */
  b.len = 0;
  assert_int_equal(cast_unzstd(z, zn - 5, gather, &b), TT_EPROTO);
  assert_true(b.len <= n);

  /* Corrupt and empty. */
  uint8_t junk[64];
  memset(junk, 0x5a, sizeof(junk));
  assert_int_equal(cast_unzstd(junk, sizeof(junk), gather, &b), TT_EZSTD);
  assert_int_equal(cast_unzstd(junk, 0, gather, &b), TT_EPROTO);

  free(b.p);
  free(z);
  free(text);
}

/* The whole path: compressed .cast -> decompress -> play. */
static int to_player(void *ctx, const uint8_t *p, size_t n) {
  return cast_player_feed(ctx, p, n);
}

static void test_unzstd_play(void **state) {
  (void)state;
  uint8_t z[4096];
  size_t zn = stream_compress((const uint8_t *)k_cast, strlen(k_cast), z, sizeof(z), 50);
  sink_t s;
  memset(&s, 0, sizeof(s));
  cast_player_t p;
  cast_player_init(&p, 0.0, 0, collect, &s);
  assert_int_equal(cast_unzstd(z, zn, to_player, &p), 0);
  assert_int_equal(cast_player_end(&p), 0);
  cast_player_free(&p);
  assert_int_equal(s.len, strlen("$ ls\r\na  b\r\n$ "));
  assert_memory_equal(s.out, "$ ls\r\na  b\r\n$ ", s.len);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_header_ok),     cmocka_unit_test(test_header_bad),
      cmocka_unit_test(test_event_ok),      cmocka_unit_test(test_event_bad),
      cmocka_unit_test(test_delay),         cmocka_unit_test(test_player_pieces),
      cmocka_unit_test(test_player_bad),    cmocka_unit_test(test_player_long_line),
      cmocka_unit_test(test_unzstd),        cmocka_unit_test(test_unzstd_play),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
