/* tt_frame: header round trip, a reader that delivers the same frames however the bytes are
 * split, limits checked on the header before any body byte, and hostile input refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tt/frame.h"

/* Every delivered frame, re-encoded header + body, so a whole run compares as one stream. */
typedef struct {
  tt_buf_t out;
  size_t frames;
  size_t stop_at;  /* return stop_rc from this frame (1-based), 0 = never */
  int stop_rc;
  tt_frame_reader_t *rd;
  uint32_t raise_to; /* after the first frame, raise the reader's limit to this */
} rec_t;

static void rec_init(rec_t *r) {
  memset(r, 0, sizeof(*r));
  tt_buf_init(&r->out, 4u * 1024u * 1024u);
}

static int rec_cb(void *ctx, const tt_frame_t *f) {
  rec_t *r = ctx;
  uint8_t hdr[TT_FRAME_HDR];
  tt_frame_header_encode(hdr, f->kind, f->flags, f->channel, f->len);
  assert_int_equal(tt_buf_append(&r->out, hdr, sizeof hdr), 0);
  if (f->len) {
    assert_non_null(f->body);
    assert_int_equal(tt_buf_append(&r->out, f->body, f->len), 0);
  }
  r->frames++;
  if (r->rd && r->raise_to) r->rd->max_body = r->raise_to;
  if (r->stop_at && r->frames == r->stop_at) return r->stop_rc;
  return 0;
}

static void put_frame(tt_buf_t *b, uint8_t kind, uint8_t flags, uint32_t ch, uint32_t len, uint8_t seed) {
  assert_int_equal(tt_buf_reserve(b, TT_FRAME_HDR + len), 0);
  uint8_t *p = tt_buf_tail(b);
  tt_frame_header_encode(p, kind, flags, ch, len);
  for (uint32_t i = 0; i < len; i++) p[TT_FRAME_HDR + i] = (uint8_t)(seed + i * 31u);
  tt_buf_commit(b, TT_FRAME_HDR + len);
}

/* A mix: empty bodies, control bodies, DATA with flags, a body larger than a socket read. */
static void make_stream(tt_buf_t *s) {
  tt_buf_init(s, 1u << 20);
  put_frame(s, TT_K_HELLO, 0, 0, 37, 1);
  put_frame(s, TT_K_PING, 0, 0, 0, 2);
  put_frame(s, TT_K_CH_OPEN, 0, 1, 12, 3);
  put_frame(s, TT_K_DATA, 0, 1, 1, 4);
  put_frame(s, TT_K_DATA, TT_FF_ZSTD, 1, 5000, 5);
  put_frame(s, TT_K_DATA, 0, 3, 0, 6);
  put_frame(s, TT_K_WINDOW, 0, 0x7fffffffu, 4, 7);
  put_frame(s, TT_K_DATA, TT_FF_EOF | TT_FF_ZSTD, 0xffffffffu, 10, 8);
  put_frame(s, TT_K_RESPONSE, 0, 0, 300, 9);
  put_frame(s, TT_K_CH_CLOSE, 0, 2, 0, 10);
}

static void test_header_round_trip(void **state) {
  (void)state;
  static const struct { uint8_t kind, flags; uint32_t ch, len; } cases[] = {
      {TT_K_HELLO, 0, 0, 0},
      {TT_K_ERROR, 0, 0, 4096},
      {TT_K_RESPONSE, 0, 0, TT_FRAME_MAX_BODY},
      {TT_K_CH_OPEN, 0, 1, 17},
      {TT_K_WINDOW, 0, 0xffffffffu, 3},
      {TT_K_DATA, TT_FF_ZSTD | TT_FF_EOF, 0x12345678u, 65536},
      {TT_K_DATA, TT_FF_EOF, 2, 0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    uint8_t h[TT_FRAME_HDR];
    tt_frame_header_encode(h, cases[i].kind, cases[i].flags, cases[i].ch, cases[i].len);
    assert_int_equal(tt_get_u32(h), cases[i].len); /* big-endian length first */
    tt_frame_t f;
    assert_int_equal(tt_frame_header_decode(h, TT_FRAME_MAX_BODY, &f), 0);
    assert_int_equal(f.kind, cases[i].kind);
    assert_int_equal(f.flags, cases[i].flags);
    assert_int_equal(f.channel, cases[i].ch);
    assert_int_equal(f.len, cases[i].len);
    assert_null(f.body);
  }
  uint8_t h[TT_FRAME_HDR];
  tt_frame_header_encode(h, TT_K_DATA, 1, 0x01020304u, 0x0a0b0c0du);
  static const uint8_t want[TT_FRAME_HDR] = {0x0a, 0x0b, 0x0c, 0x0d, 32, 1, 1, 2, 3, 4};
  assert_memory_equal(h, want, sizeof want);
}

static void test_kind_tables(void **state) {
  (void)state;
  for (unsigned k = 0; k < 256; k++) {
    bool known = (k >= 1 && k <= 12) || k == 32;
    assert_int_equal(tt_kind_known((uint8_t)k), known);
    assert_non_null(tt_kind_name((uint8_t)k));
    if (!known) assert_string_equal(tt_kind_name((uint8_t)k), "unknown");
    if (tt_kind_is_control((uint8_t)k)) assert_true(known);
  }
  assert_true(tt_kind_is_control(TT_K_HELLO));
  assert_true(tt_kind_is_control(TT_K_RESPONSE));
  assert_false(tt_kind_is_control(TT_K_CH_OPEN));
  assert_false(tt_kind_is_control(TT_K_WINDOW));
  assert_false(tt_kind_is_control(TT_K_DATA));
}

static int decode(uint8_t kind, uint8_t flags, uint32_t ch, uint32_t len, uint32_t max) {
  uint8_t h[TT_FRAME_HDR];
  tt_frame_t f;
  tt_frame_header_encode(h, kind, flags, ch, len);
  return tt_frame_header_decode(h, max, &f);
}

static void test_header_rejects(void **state) {
  (void)state;
  const uint32_t M = TT_FRAME_MAX_BODY;
  /* Unknown kinds. */
  static const uint8_t unknown[] = {0, 13, 14, 31, 33, 64, 127, 128, 255};
  for (size_t i = 0; i < sizeof unknown; i++) {
    assert_int_equal(decode(unknown[i], 0, 0, 0, M), TT_EKIND);
    assert_int_equal(decode(unknown[i], 0, 1, 0, M), TT_EKIND);
  }
  /* Control kinds off channel 0, channel kinds on channel 0. */
  for (unsigned k = 1; k <= 12; k++) {
    if (tt_kind_is_control((uint8_t)k)) {
      assert_int_equal(decode((uint8_t)k, 0, 1, 0, M), TT_EKIND);
      assert_int_equal(decode((uint8_t)k, 0, 0xffffffffu, 0, M), TT_EKIND);
      assert_int_equal(decode((uint8_t)k, 0, 0, 0, M), 0);
    } else {
      assert_int_equal(decode((uint8_t)k, 0, 0, 0, M), TT_EKIND);
      assert_int_equal(decode((uint8_t)k, 0, 5, 0, M), 0);
    }
  }
  assert_int_equal(decode(TT_K_DATA, 0, 0, 0, M), TT_EKIND);
  /* Flags only on DATA, only known bits. */
  assert_int_equal(decode(TT_K_PING, TT_FF_ZSTD, 0, 0, M), TT_EPROTO);
  assert_int_equal(decode(TT_K_HELLO, TT_FF_EOF, 0, 0, M), TT_EPROTO);
  assert_int_equal(decode(TT_K_WINDOW, TT_FF_EOF, 1, 0, M), TT_EPROTO);
  assert_int_equal(decode(TT_K_CH_CLOSE, 0x80, 1, 0, M), TT_EPROTO);
  assert_int_equal(decode(TT_K_DATA, TT_FF_CTRL, 1, 3, M), 0);
  for (unsigned bit = 3; bit < 8; bit++)
    assert_int_equal(decode(TT_K_DATA, (uint8_t)(1u << bit), 1, 0, M), TT_EPROTO);
  assert_int_equal(decode(TT_K_DATA, 0xff, 1, 0, M), TT_EPROTO);
  /* Length against the limit given, inclusive. */
  assert_int_equal(decode(TT_K_DATA, 0, 1, M, M), 0);
  assert_int_equal(decode(TT_K_DATA, 0, 1, M + 1, M), TT_ETOOBIG);
  assert_int_equal(decode(TT_K_DATA, 0, 1, 0xffffffffu, M), TT_ETOOBIG);
  assert_int_equal(decode(TT_K_HELLO, 0, 0, TT_FRAME_MAX_BODY_PREAUTH, TT_FRAME_MAX_BODY_PREAUTH), 0);
  assert_int_equal(decode(TT_K_HELLO, 0, 0, TT_FRAME_MAX_BODY_PREAUTH + 1, TT_FRAME_MAX_BODY_PREAUTH),
                   TT_ETOOBIG);
  assert_int_equal(decode(TT_K_PING, 0, 0, 1, 0), TT_ETOOBIG);
  /* Output cleared even on failure. */
  uint8_t h[TT_FRAME_HDR];
  tt_frame_t f;
  memset(&f, 0xa5, sizeof f);
  tt_frame_header_encode(h, 99, 0, 0, 5);
  assert_int_equal(tt_frame_header_decode(h, M, &f), TT_EKIND);
  assert_int_equal(f.len, 0);
  assert_null(f.body);
}

static void test_reader_whole_stream(void **state) {
  (void)state;
  tt_buf_t s;
  make_stream(&s);
  tt_frame_reader_t r;
  tt_frame_reader_init(&r, TT_FRAME_MAX_BODY);
  rec_t rec;
  rec_init(&rec);
  assert_int_equal(tt_frame_reader_feed(&r, tt_buf_head(&s), s.len, rec_cb, &rec), 0);
  assert_int_equal(rec.frames, 10);
  assert_int_equal(rec.out.len, s.len);
  assert_memory_equal(tt_buf_head(&rec.out), tt_buf_head(&s), s.len);
  /* Zero bytes fed: nothing happens. */
  assert_int_equal(tt_frame_reader_feed(&r, NULL, 0, rec_cb, &rec), 0);
  assert_int_equal(rec.frames, 10);
  tt_frame_reader_free(&r);
  tt_buf_free(&rec.out);
  tt_buf_free(&s);
}

static void test_reader_byte_by_byte(void **state) {
  (void)state;
  tt_buf_t s;
  make_stream(&s);
  tt_frame_reader_t r;
  tt_frame_reader_init(&r, TT_FRAME_MAX_BODY);
  rec_t rec;
  rec_init(&rec);
  const uint8_t *p = tt_buf_head(&s);
  for (size_t i = 0; i < s.len; i++) {
    assert_int_equal(tt_frame_reader_feed(&r, p + i, 1, rec_cb, &rec), 0);
    /* Never more than the current frame held. */
    assert_true(r.buf.len <= TT_FRAME_HDR + 5000);
  }
  assert_int_equal(rec.frames, 10);
  assert_int_equal(rec.out.len, s.len);
  assert_memory_equal(tt_buf_head(&rec.out), p, s.len);
  assert_int_equal(r.buf.len, 0);
  assert_false(r.have_hdr);
  tt_frame_reader_shrink(&r);
  assert_null(r.buf.data); /* idle reader holds no memory */
  tt_frame_reader_free(&r);
  tt_buf_free(&rec.out);
  tt_buf_free(&s);
}

static void test_reader_every_split(void **state) {
  (void)state;
  tt_buf_t s;
  make_stream(&s);
  const uint8_t *p = tt_buf_head(&s);
  for (size_t k = 0; k <= s.len; k++) {
    tt_frame_reader_t r;
    tt_frame_reader_init(&r, TT_FRAME_MAX_BODY);
    rec_t rec;
    rec_init(&rec);
    assert_int_equal(tt_frame_reader_feed(&r, p, k, rec_cb, &rec), 0);
    assert_int_equal(tt_frame_reader_feed(&r, p + k, s.len - k, rec_cb, &rec), 0);
    assert_int_equal(rec.frames, 10);
    assert_int_equal(rec.out.len, s.len);
    assert_memory_equal(tt_buf_head(&rec.out), p, s.len);
    assert_int_equal(r.buf.len, 0);
    tt_frame_reader_free(&r);
    tt_buf_free(&rec.out);
  }
  /* Three-way splits over the first frames (header and body boundaries). */
  for (size_t a = 0; a < 80; a++) {
    for (size_t b = a; b < 80; b += 3) {
      tt_frame_reader_t r;
      tt_frame_reader_init(&r, TT_FRAME_MAX_BODY);
      rec_t rec;
      rec_init(&rec);
      assert_int_equal(tt_frame_reader_feed(&r, p, a, rec_cb, &rec), 0);
      assert_int_equal(tt_frame_reader_feed(&r, p + a, b - a, rec_cb, &rec), 0);
      assert_int_equal(tt_frame_reader_feed(&r, p + b, s.len - b, rec_cb, &rec), 0);
      assert_int_equal(rec.out.len, s.len);
      assert_memory_equal(tt_buf_head(&rec.out), p, s.len);
      tt_frame_reader_free(&r);
      tt_buf_free(&rec.out);
    }
  }
  tt_buf_free(&s);
}

static void test_truncated_frame_waits(void **state) {
  (void)state;
  tt_buf_t s;
  tt_buf_init(&s, 1000);
  put_frame(&s, TT_K_HELLO, 0, 0, 100, 1);
  tt_frame_reader_t r;
  tt_frame_reader_init(&r, TT_FRAME_MAX_BODY_PREAUTH);
  rec_t rec;
  rec_init(&rec);
  /* Every proper prefix: no frame, no error. */
  for (size_t k = 0; k < s.len; k++) {
    tt_frame_reader_t r2;
    tt_frame_reader_init(&r2, TT_FRAME_MAX_BODY_PREAUTH);
    assert_int_equal(tt_frame_reader_feed(&r2, tt_buf_head(&s), k, rec_cb, &rec), 0);
    assert_int_equal(rec.frames, 0);
    tt_frame_reader_free(&r2);
  }
  tt_frame_reader_free(&r);
  tt_buf_free(&rec.out);
  tt_buf_free(&s);
}

static void test_oversized_refused_on_header(void **state) {
  (void)state;
  static const uint32_t lens[] = {TT_FRAME_MAX_BODY + 1, 0x7fffffffu, 0xffffffffu};
  for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
    /* Header only, byte by byte: the last header byte brings the refusal. */
    uint8_t h[TT_FRAME_HDR];
    tt_frame_header_encode(h, TT_K_DATA, 0, 1, lens[i]);
    tt_frame_reader_t r;
    tt_frame_reader_init(&r, TT_FRAME_MAX_BODY);
    rec_t rec;
    rec_init(&rec);
    for (size_t k = 0; k + 1 < TT_FRAME_HDR; k++)
      assert_int_equal(tt_frame_reader_feed(&r, h + k, 1, rec_cb, &rec), 0);
    assert_int_equal(tt_frame_reader_feed(&r, h + TT_FRAME_HDR - 1, 1, rec_cb, &rec), TT_ETOOBIG);
    assert_int_equal(rec.frames, 0);
    assert_true(r.buf.cap <= 256); /* nothing sized by the claimed length */
    tt_frame_reader_free(&r);
    /* Whole header in one read. */
    tt_frame_reader_init(&r, TT_FRAME_MAX_BODY);
    assert_int_equal(tt_frame_reader_feed(&r, h, sizeof h, rec_cb, &rec), TT_ETOOBIG);
    assert_null(r.buf.data);
    assert_int_equal(rec.frames, 0);
    tt_frame_reader_free(&r);
    tt_buf_free(&rec.out);
  }
}

static void test_preauth_limit_then_raised(void **state) {
  (void)state;
  const uint32_t big = TT_FRAME_MAX_BODY_PREAUTH + 1;
  tt_buf_t s;
  tt_buf_init(&s, 1u << 20);
  put_frame(&s, TT_K_DATA, 0, 1, big, 1);
  /* Under the pre-auth limit: refused on the header. */
  tt_frame_reader_t r;
  tt_frame_reader_init(&r, TT_FRAME_MAX_BODY_PREAUTH);
  rec_t rec;
  rec_init(&rec);
  assert_int_equal(tt_frame_reader_feed(&r, tt_buf_head(&s), s.len, rec_cb, &rec), TT_ETOOBIG);
  assert_int_equal(rec.frames, 0);
  tt_frame_reader_free(&r);
  /* The exact limit passes before authentication. */
  tt_buf_t ok;
  tt_buf_init(&ok, 1u << 20);
  put_frame(&ok, TT_K_HELLO, 0, 0, TT_FRAME_MAX_BODY_PREAUTH, 2);
  tt_frame_reader_init(&r, TT_FRAME_MAX_BODY_PREAUTH);
  assert_int_equal(tt_frame_reader_feed(&r, tt_buf_head(&ok), ok.len, rec_cb, &rec), 0);
  assert_int_equal(rec.frames, 1);
  /* Raised between frames (as after Hello): the same big frame is now accepted. */
  r.max_body = TT_FRAME_MAX_BODY;
  assert_int_equal(tt_frame_reader_feed(&r, tt_buf_head(&s), s.len, rec_cb, &rec), 0);
  assert_int_equal(rec.frames, 2);
  tt_frame_reader_free(&r);
  tt_buf_free(&rec.out);
  /* Raised from inside the callback of the Hello, with the big frame in the same read. */
  tt_buf_t both;
  tt_buf_init(&both, 1u << 20);
  put_frame(&both, TT_K_HELLO, 0, 0, 50, 3);
  put_frame(&both, TT_K_DATA, 0, 1, big, 4);
  put_frame(&both, TT_K_DATA, 0, 1, TT_FRAME_MAX_BODY, 5);
  for (int split = 0; split < 2; split++) {
    tt_frame_reader_init(&r, TT_FRAME_MAX_BODY_PREAUTH);
    rec_init(&rec);
    rec.rd = &r;
    rec.raise_to = TT_FRAME_MAX_BODY;
    if (split) {
      for (size_t i = 0; i < both.len; i += 997) {
        size_t n = both.len - i < 997 ? both.len - i : 997;
        assert_int_equal(tt_frame_reader_feed(&r, tt_buf_head(&both) + i, n, rec_cb, &rec), 0);
        /* Holds one frame at most, never the stream. */
        assert_true(r.buf.len <= TT_FRAME_HDR + TT_FRAME_MAX_BODY);
        assert_true(r.buf.cap <= TT_FRAME_HDR + TT_FRAME_MAX_BODY);
      }
    } else {
      assert_int_equal(tt_frame_reader_feed(&r, tt_buf_head(&both), both.len, rec_cb, &rec), 0);
    }
    assert_int_equal(rec.frames, 3);
    assert_memory_equal(tt_buf_head(&rec.out), tt_buf_head(&both), both.len);
    tt_frame_reader_free(&r);
    tt_buf_free(&rec.out);
  }
  /* Without the raise, the second frame is refused. */
  tt_frame_reader_init(&r, TT_FRAME_MAX_BODY_PREAUTH);
  rec_init(&rec);
  assert_int_equal(tt_frame_reader_feed(&r, tt_buf_head(&both), both.len, rec_cb, &rec), TT_ETOOBIG);
  assert_int_equal(rec.frames, 1);
  tt_frame_reader_free(&r);
  tt_buf_free(&rec.out);
  tt_buf_free(&both);
  tt_buf_free(&ok);
  tt_buf_free(&s);
}

static int feed_one_header(uint8_t kind, uint8_t flags, uint32_t ch, uint32_t len, bool bytewise) {
  uint8_t h[TT_FRAME_HDR];
  tt_frame_header_encode(h, kind, flags, ch, len);
  tt_frame_reader_t r;
  tt_frame_reader_init(&r, TT_FRAME_MAX_BODY);
  rec_t rec;
  rec_init(&rec);
  int rc = 0;
  if (bytewise) {
    for (size_t k = 0; k < TT_FRAME_HDR && rc == 0; k++) rc = tt_frame_reader_feed(&r, h + k, 1, rec_cb, &rec);
  } else {
    rc = tt_frame_reader_feed(&r, h, sizeof h, rec_cb, &rec);
  }
  if (rc) assert_int_equal(rec.frames, 0);
  tt_frame_reader_free(&r);
  tt_buf_free(&rec.out);
  return rc;
}

static void test_reader_rejects_bad_headers(void **state) {
  (void)state;
  for (int bw = 0; bw < 2; bw++) {
    assert_int_equal(feed_one_header(0, 0, 0, 0, bw), TT_EKIND);
    assert_int_equal(feed_one_header(200, 0, 1, 0, bw), TT_EKIND);
    assert_int_equal(feed_one_header(TT_K_PING, 0, 7, 0, bw), TT_EKIND);
    assert_int_equal(feed_one_header(TT_K_DATA, 0, 0, 0, bw), TT_EKIND);
    assert_int_equal(feed_one_header(TT_K_CH_OPEN, 0, 0, 0, bw), TT_EKIND);
    assert_int_equal(feed_one_header(TT_K_PING, TT_FF_EOF, 0, 0, bw), TT_EPROTO);
    assert_int_equal(feed_one_header(TT_K_DATA, 0x08, 1, 0, bw), TT_EPROTO);
    assert_int_equal(feed_one_header(TT_K_PING, 0, 0, 0, bw), 0);
  }
}

static void test_garbage_http(void **state) {
  (void)state;
  static const char get[] = "GET / HTTP/1.1\r\nHost: example\r\n\r\n";
  for (int bw = 0; bw < 2; bw++) {
    tt_frame_reader_t r;
    tt_frame_reader_init(&r, TT_FRAME_MAX_BODY_PREAUTH);
    rec_t rec;
    rec_init(&rec);
    int rc = 0;
    if (bw) {
      for (size_t i = 0; i < sizeof get - 1 && rc == 0; i++)
        rc = tt_frame_reader_feed(&r, (const uint8_t *)get + i, 1, rec_cb, &rec);
    } else {
      rc = tt_frame_reader_feed(&r, (const uint8_t *)get, sizeof get - 1, rec_cb, &rec);
    }
    assert_true(rc < 0);
    assert_int_equal(rec.frames, 0);
    tt_frame_reader_free(&r);
    tt_buf_free(&rec.out);
  }
}

static uint64_t rng_next(uint64_t *s) {
  /* xorshift64*: deterministic, so a failure reproduces. */
  uint64_t x = *s;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  *s = x;
  return x * 0x2545F4914F6CDD1DULL;
}

static void test_garbage_random(void **state) {
  (void)state;
  enum { LEN = 4096 };
  uint8_t *junk = malloc(LEN);
  assert_non_null(junk);
  int errors = 0;
  for (uint64_t seed = 1; seed <= 2000; seed++) {
    uint64_t st = seed * 0x9E3779B97F4A7C15ULL;
    for (size_t i = 0; i < LEN; i++) junk[i] = (uint8_t)(rng_next(&st) >> 56);
    tt_frame_reader_t r;
    tt_frame_reader_init(&r, seed & 1 ? TT_FRAME_MAX_BODY_PREAUTH : TT_FRAME_MAX_BODY);
    rec_t rec;
    rec_init(&rec);
    int rc = 0;
    size_t off = 0;
    while (off < LEN && rc == 0) {
      size_t n = (size_t)(rng_next(&st) % 300) + 1;
      if (n > LEN - off) n = LEN - off;
      rc = tt_frame_reader_feed(&r, junk + off, n, rec_cb, &rec);
      off += n;
    }
    if (rc) {
      errors++;
      assert_true(rc == TT_EKIND || rc == TT_EPROTO || rc == TT_ETOOBIG);
    }
    assert_true(r.buf.len <= TT_FRAME_HDR + r.max_body);
    tt_frame_reader_free(&r);
    tt_buf_free(&rec.out);
  }
  /* Random bytes almost never form a valid header; every run here is refused. */
  assert_int_equal(errors, 2000);
  free(junk);
}

static void test_callback_stop_propagates(void **state) {
  (void)state;
  tt_buf_t s;
  make_stream(&s);
  for (size_t stop = 1; stop <= 10; stop++) {
    for (int bw = 0; bw < 2; bw++) {
      tt_frame_reader_t r;
      tt_frame_reader_init(&r, TT_FRAME_MAX_BODY);
      rec_t rec;
      rec_init(&rec);
      rec.stop_at = stop;
      rec.stop_rc = (int)(stop % 2 ? 77 : TT_ECLOSED);
      int rc = 0;
      if (bw) {
        for (size_t i = 0; i < s.len && rc == 0; i++) rc = tt_frame_reader_feed(&r, tt_buf_head(&s) + i, 1, rec_cb, &rec);
      } else {
        rc = tt_frame_reader_feed(&r, tt_buf_head(&s), s.len, rec_cb, &rec);
      }
      assert_int_equal(rc, rec.stop_rc);
      assert_int_equal(rec.frames, stop); /* no frame delivered after the stop */
      tt_frame_reader_free(&r);
      tt_buf_free(&rec.out);
    }
  }
  tt_buf_free(&s);
}

static void test_reader_holds_one_frame(void **state) {
  (void)state;
  tt_buf_t s;
  tt_buf_init(&s, 4u * 1024u * 1024u);
  for (int i = 0; i < 8; i++) put_frame(&s, TT_K_DATA, 0, 1, TT_FRAME_MAX_BODY, (uint8_t)i);
  tt_frame_reader_t r;
  tt_frame_reader_init(&r, TT_FRAME_MAX_BODY);
  rec_t rec;
  rec_init(&rec);
  /* Reads that straddle frames: what is buffered is one partial frame, never more. */
  size_t step = TT_FRAME_MAX_BODY / 2 + 3;
  for (size_t i = 0; i < s.len; i += step) {
    size_t n = s.len - i < step ? s.len - i : step;
    assert_int_equal(tt_frame_reader_feed(&r, tt_buf_head(&s) + i, n, rec_cb, &rec), 0);
    assert_true(r.buf.len < TT_FRAME_HDR + TT_FRAME_MAX_BODY);
    assert_true(r.buf.cap <= TT_FRAME_HDR + TT_FRAME_MAX_BODY);
  }
  assert_int_equal(rec.frames, 8);
  assert_memory_equal(tt_buf_head(&rec.out), tt_buf_head(&s), s.len);
  /* Half a frame in: exactly that half is held. */
  rec.frames = 0;
  assert_int_equal(tt_frame_reader_feed(&r, tt_buf_head(&s), TT_FRAME_HDR + 1000, rec_cb, &rec), 0);
  assert_int_equal(r.buf.len, 1000);
  assert_true(r.have_hdr);
  tt_frame_reader_free(&r);
  tt_buf_free(&rec.out);
  tt_buf_free(&s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_header_round_trip),
      cmocka_unit_test(test_kind_tables),
      cmocka_unit_test(test_header_rejects),
      cmocka_unit_test(test_reader_whole_stream),
      cmocka_unit_test(test_reader_byte_by_byte),
      cmocka_unit_test(test_reader_every_split),
      cmocka_unit_test(test_truncated_frame_waits),
      cmocka_unit_test(test_oversized_refused_on_header),
      cmocka_unit_test(test_preauth_limit_then_raised),
      cmocka_unit_test(test_reader_rejects_bad_headers),
      cmocka_unit_test(test_garbage_http),
      cmocka_unit_test(test_garbage_random),
      cmocka_unit_test(test_callback_stop_propagates),
      cmocka_unit_test(test_reader_holds_one_frame),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
