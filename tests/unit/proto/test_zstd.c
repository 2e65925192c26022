/* Unit tests for proto/zstd.c: round trips, raw fallback, and hostile frames (bombs with and
 * without a declared size, oversized windows, truncation, garbage, trailing frames). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <zstd.h>

#include "tt/err.h"
#include "tt/limits.h"
#include "tt/log.h"
#include "tt/zstd.h"

#define CHUNK TT_DATA_CHUNK_MAX
#define BOMB_SIZE (100u * 1024u * 1024u)

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;

static uint64_t rng_next(void) {
  g_rng ^= g_rng << 13;
  g_rng ^= g_rng >> 7;
  g_rng ^= g_rng << 17;
  return g_rng;
}

static void fill_random(unsigned char *p, size_t n) {
  for (size_t i = 0; i < n; i++)
    p[i] = (unsigned char)(rng_next() >> 56);
}

/* Shell-like text: repetitive enough to compress, varied enough to be real work. */
static size_t fill_text(char *p, size_t n, unsigned seed) {
  static const char *const words[] = {"drwxr-xr-x", "root", "4096", "Nov", "23", "etc",
                                      "systemd", "journal", "error:", "ok", "disk", "usr"};
  size_t o = 0;
  unsigned k = seed;
  while (o < n) {
    k = k * 1103515245u + 12345u;
    const char *w = words[(k >> 16) % (sizeof(words) / sizeof(words[0]))];
    size_t wl = strlen(w);
    for (size_t i = 0; i < wl && o < n; i++)
      p[o++] = w[i];
    if (o < n)
      p[o++] = ((k >> 8) & 7) == 0 ? '\n' : ' ';
  }
  return o;
}

/* A skippable frame (magic 0x184D2A5x, 4-byte length, payload): legal zstd, never ours. */
static size_t put_skippable(unsigned char *dst, const void *data, size_t len) {
  static const unsigned char hdr[4] = {0x50, 0x2A, 0x4D, 0x18};
  memcpy(dst, hdr, 4);
  for (int i = 0; i < 4; i++)
    dst[4 + i] = (unsigned char)(len >> (8 * i));
  memcpy(dst + 8, data, len);
  return 8 + len;
}

static long maxrss_kib(void) {
  struct rusage ru;
  assert_int_equal(getrusage(RUSAGE_SELF, &ru), 0);
  return ru.ru_maxrss;
}

/* Compresses `total` zeros by streaming from a small buffer, so the test itself never holds
 * the bomb's payload. pledge: write the content size into the header; otherwise leave it
 * out, with the given window log. Returns the frame's length in dst. */
static size_t make_zero_frame(void *dst, size_t cap, size_t total, int pledge, int window_log) {
  static const unsigned char zeros[64 * 1024];
  ZSTD_CCtx *c = ZSTD_createCCtx();
  ZSTD_outBuffer ob = {dst, cap, 0};
  size_t r, left = total;

  assert_non_null(c);
  assert_false(ZSTD_isError(ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, 1)));
  if (pledge) {
    assert_false(ZSTD_isError(ZSTD_CCtx_setPledgedSrcSize(c, total)));
  } else {
    assert_false(ZSTD_isError(ZSTD_CCtx_setParameter(c, ZSTD_c_contentSizeFlag, 0)));
  }
  if (window_log > 0)
    assert_false(ZSTD_isError(ZSTD_CCtx_setParameter(c, ZSTD_c_windowLog, window_log)));
  while (left > 0) {
    size_t n = left < sizeof(zeros) ? left : sizeof(zeros);
    ZSTD_inBuffer ib = {zeros, n, 0};
    while (ib.pos < ib.size) {
      r = ZSTD_compressStream2(c, &ob, &ib, ZSTD_e_continue);
      assert_false(ZSTD_isError(r));
    }
    left -= n;
  }
  do {
    ZSTD_inBuffer ib = {NULL, 0, 0};
    r = ZSTD_compressStream2(c, &ob, &ib, ZSTD_e_end);
    assert_false(ZSTD_isError(r));
  } while (r != 0);
  ZSTD_freeCCtx(c);
  return ob.pos;
}

/* Compresses in with a fresh tt_zstd compressor at level 3; fails the test if it went raw. */
static size_t compress_ok(const void *in, size_t in_len, void *out, size_t out_cap) {
  tt_zstd_t *c = NULL;
  size_t n = 0;
  bool comp = false;
  assert_int_equal(tt_zstd_new_compressor(&c, 3), 0);
  assert_int_equal(tt_zstd_compress(c, in, in_len, out, out_cap, &n, &comp), 0);
  assert_true(comp);
  tt_zstd_free(c);
  return n;
}

static void test_roundtrip_text(void **state) {
  (void)state;
  char *in = malloc(CHUNK), *back = malloc(CHUNK);
  unsigned char *z = malloc(tt_zstd_bound(CHUNK));
  tt_zstd_t *c = NULL, *d = NULL;
  size_t n = 0, m = 0;
  bool comp = false;

  assert_non_null(in);
  assert_non_null(back);
  assert_non_null(z);
  fill_text(in, CHUNK, 1);
  for (int level = 1; level <= 19; level += 9) {
    assert_int_equal(tt_zstd_new_compressor(&c, level), 0);
    assert_int_equal(tt_zstd_new_decompressor(&d), 0);
    assert_int_equal(tt_zstd_compress(c, in, CHUNK, z, tt_zstd_bound(CHUNK), &n, &comp), 0);
    assert_true(comp);
    assert_true(n < CHUNK / 2);
    assert_int_equal(ZSTD_getFrameContentSize(z, n), CHUNK);
    assert_int_equal(tt_zstd_decompress(d, z, n, back, CHUNK, &m), 0);
    assert_int_equal(m, CHUNK);
    assert_memory_equal(in, back, CHUNK);
    tt_zstd_free(c);
    tt_zstd_free(d);
  }
  free(in);
  free(back);
  free(z);
}

static void test_random_goes_raw(void **state) {
  (void)state;
  unsigned char *in = malloc(CHUNK), *z = malloc(tt_zstd_bound(CHUNK));
  tt_zstd_t *c = NULL;
  size_t n = 0;
  bool comp = true;

  assert_non_null(in);
  assert_non_null(z);
  fill_random(in, CHUNK);
  assert_int_equal(tt_zstd_new_compressor(&c, 19), 0);
  assert_int_equal(tt_zstd_compress(c, in, CHUNK, z, tt_zstd_bound(CHUNK), &n, &comp), 0);
  assert_false(comp);
  assert_int_equal(n, CHUNK);
  assert_memory_equal(in, z, CHUNK);

  /* Tiny inputs cannot beat zstd's frame header either. */
  for (size_t len = 1; len <= 16; len++) {
    comp = true;
    assert_int_equal(tt_zstd_compress(c, "aaaaaaaaaaaaaaaa", len, z, len, &n, &comp), 0);
    assert_false(comp);
    assert_int_equal(n, len);
    assert_memory_equal(z, "aaaaaaaaaaaaaaaa", len);
  }

  /* Less room than tt_zstd_bound and no way to shrink: refused, not overrun. */
  assert_int_equal(tt_zstd_compress(c, in, CHUNK, z, CHUNK - 1, &n, &comp), TT_ETOOBIG);
  assert_int_equal(n, 0);
  assert_false(comp);
  tt_zstd_free(c);
  free(in);
  free(z);
}

static void test_empty(void **state) {
  (void)state;
  tt_zstd_t *c = NULL, *d = NULL;
  unsigned char buf[64], back[16];
  size_t n = 99, m = 99;
  bool comp = true;

  assert_int_equal(tt_zstd_bound(0), 0);
  assert_int_equal(tt_zstd_new_compressor(&c, 1), 0);
  assert_int_equal(tt_zstd_new_decompressor(&d), 0);
  assert_int_equal(tt_zstd_compress(c, NULL, 0, NULL, 0, &n, &comp), 0);
  assert_int_equal(n, 0);
  assert_false(comp);
  comp = true;
  assert_int_equal(tt_zstd_compress(c, buf, 0, buf, sizeof(buf), &n, &comp), 0);
  assert_int_equal(n, 0);
  assert_false(comp);

  /* A peer may send a valid frame of nothing; it decodes to nothing. */
  n = ZSTD_compress(buf, sizeof(buf), "", 0, 1);
  assert_false(ZSTD_isError(n));
  assert_int_equal(tt_zstd_decompress(d, buf, n, back, sizeof(back), &m), 0);
  assert_int_equal(m, 0);
  assert_int_equal(tt_zstd_decompress(d, buf, n, NULL, 0, &m), 0);
  assert_int_equal(m, 0);
  /* But no bytes at all are not a frame. */
  assert_int_equal(tt_zstd_decompress(d, NULL, 0, back, sizeof(back), &m), TT_EZSTD);
  tt_zstd_free(c);
  tt_zstd_free(d);
}

static void test_bomb_known_size(void **state) {
  (void)state;
  size_t cap = 1024 * 1024, n, m = 99;
  unsigned char *frame = malloc(cap), *out = malloc(TT_ZSTD_OUT_MAX);
  tt_zstd_t *d = NULL;
  long rss0;

  assert_non_null(frame);
  assert_non_null(out);
  n = make_zero_frame(frame, cap, BOMB_SIZE, 1, 0);
  assert_true(n < 64 * 1024);
  assert_int_equal(ZSTD_getFrameContentSize(frame, n), BOMB_SIZE);

  memset(out, 0xA5, TT_ZSTD_OUT_MAX);
  rss0 = maxrss_kib();
  assert_int_equal(tt_zstd_new_decompressor(&d), 0);
  assert_int_equal(tt_zstd_decompress(d, frame, n, out, TT_ZSTD_OUT_MAX, &m), TT_ETOOBIG);
  assert_int_equal(m, 0);
  /* Refused from the header: not one byte was inflated, and memory did not grow. */
  for (size_t i = 0; i < TT_ZSTD_OUT_MAX; i++)
    assert_int_equal(out[i], 0xA5);
  assert_true(maxrss_kib() - rss0 < 32 * 1024);
  tt_zstd_free(d);
  free(frame);
  free(out);
}

static void test_bomb_unknown_size(void **state) {
  (void)state;
  size_t cap = 1024 * 1024, n, m = 99;
  unsigned char *frame = malloc(cap), *out = malloc(TT_ZSTD_OUT_MAX);
  tt_zstd_t *d = NULL;
  long rss0;

  assert_non_null(frame);
  assert_non_null(out);
  n = make_zero_frame(frame, cap, BOMB_SIZE, 0, 17);
  assert_true(n < 64 * 1024);
  assert_true(ZSTD_getFrameContentSize(frame, n) == ZSTD_CONTENTSIZE_UNKNOWN);

  rss0 = maxrss_kib();
  assert_int_equal(tt_zstd_new_decompressor(&d), 0);
  assert_int_equal(tt_zstd_decompress(d, frame, n, out, TT_ZSTD_OUT_MAX, &m), TT_ETOOBIG);
  assert_int_equal(m, 0);
  assert_true(maxrss_kib() - rss0 < 32 * 1024);
  /* The same context still works afterwards. */
  n = make_zero_frame(frame, cap, 1000, 0, 17);
  assert_int_equal(tt_zstd_decompress(d, frame, n, out, TT_ZSTD_OUT_MAX, &m), 0);
  assert_int_equal(m, 1000);
  tt_zstd_free(d);
  free(frame);
  free(out);
}

/* Without a declared size, the limit is found while streaming: exactly out_cap fits, one
 * byte more does not. */
static void test_unknown_size_boundary(void **state) {
  (void)state;
  size_t cap = 64 * 1024, n, m;
  unsigned char *frame = malloc(cap), *out = malloc(TT_ZSTD_OUT_MAX);
  tt_zstd_t *d = NULL;

  assert_non_null(frame);
  assert_non_null(out);
  assert_int_equal(tt_zstd_new_decompressor(&d), 0);
  n = make_zero_frame(frame, cap, TT_ZSTD_OUT_MAX, 0, 17);
  assert_true(ZSTD_getFrameContentSize(frame, n) == ZSTD_CONTENTSIZE_UNKNOWN);
  memset(out, 0xA5, TT_ZSTD_OUT_MAX);
  assert_int_equal(tt_zstd_decompress(d, frame, n, out, TT_ZSTD_OUT_MAX, &m), 0);
  assert_int_equal(m, TT_ZSTD_OUT_MAX);
  for (size_t i = 0; i < TT_ZSTD_OUT_MAX; i++)
    assert_int_equal(out[i], 0);
  assert_int_equal(tt_zstd_decompress(d, frame, n, out, TT_ZSTD_OUT_MAX - 1, &m), TT_ETOOBIG);
  assert_int_equal(m, 0);

  n = make_zero_frame(frame, cap, TT_ZSTD_OUT_MAX + 1, 0, 17);
  assert_int_equal(tt_zstd_decompress(d, frame, n, out, TT_ZSTD_OUT_MAX, &m), TT_ETOOBIG);
  /* Known size, same boundary, refused from the header. */
  n = make_zero_frame(frame, cap, TT_ZSTD_OUT_MAX + 1, 1, 0);
  assert_int_equal(tt_zstd_decompress(d, frame, n, out, TT_ZSTD_OUT_MAX, &m), TT_ETOOBIG);
  n = make_zero_frame(frame, cap, TT_ZSTD_OUT_MAX, 1, 0);
  assert_int_equal(tt_zstd_decompress(d, frame, n, out, TT_ZSTD_OUT_MAX, &m), 0);
  assert_int_equal(m, TT_ZSTD_OUT_MAX);
  tt_zstd_free(d);
  free(frame);
  free(out);
}

/* A frame asking for a 16 MiB window is refused before the decoder allocates it. */
static void test_window_too_large(void **state) {
  (void)state;
  size_t cap = 64 * 1024, n, m = 99;
  unsigned char *frame = malloc(cap), *out = malloc(TT_ZSTD_OUT_MAX);
  tt_zstd_t *d = NULL;

  assert_non_null(frame);
  assert_non_null(out);
  n = make_zero_frame(frame, cap, 4 * 1024 * 1024, 0, 24);
  assert_int_equal(tt_zstd_new_decompressor(&d), 0);
  assert_int_equal(tt_zstd_decompress(d, frame, n, out, TT_ZSTD_OUT_MAX, &m), TT_EZSTD);
  assert_int_equal(m, 0);
  tt_zstd_free(d);
  free(frame);
  free(out);
}

static void test_truncated(void **state) {
  (void)state;
  char in[4000], back[4000];
  unsigned char z[4000];
  tt_zstd_t *d = NULL;
  size_t n, m;
  tt_log_level_t lvl = tt_log_get_level();

  fill_text(in, sizeof(in), 7);
  n = compress_ok(in, sizeof(in), z, sizeof(z));
  assert_int_equal(tt_zstd_new_decompressor(&d), 0);
  /* Every proper prefix is refused; the log stays quiet for the sweep. */
  tt_log_set_level(TT_LOG_OFF);
  for (size_t cut = 0; cut < n; cut++) {
    m = 99;
    assert_int_equal(tt_zstd_decompress(d, z, cut, back, sizeof(back), &m), TT_EZSTD);
    assert_int_equal(m, 0);
  }
  tt_log_set_level(lvl);
  assert_int_equal(tt_zstd_decompress(d, z, n / 2, back, sizeof(back), &m), TT_EZSTD);
  assert_int_equal(tt_zstd_decompress(d, z, n, back, sizeof(back), &m), 0);
  assert_int_equal(m, sizeof(in));
  assert_memory_equal(in, back, sizeof(in));

  /* Truncated without a declared size: the streaming path must notice too. */
  unsigned char *f = malloc(64 * 1024);
  assert_non_null(f);
  n = make_zero_frame(f, 64 * 1024, 10000, 0, 17);
  assert_int_equal(tt_zstd_decompress(d, f, n - 1, back, sizeof(back), &m), TT_EZSTD);
  free(f);
  tt_zstd_free(d);
}

static void test_garbage(void **state) {
  (void)state;
  unsigned char g[512], back[1024];
  tt_zstd_t *d = NULL;
  size_t m = 99;
  size_t n;

  assert_int_equal(tt_zstd_new_decompressor(&d), 0);
  fill_random(g, sizeof(g));
  assert_int_equal(tt_zstd_decompress(d, g, sizeof(g), back, sizeof(back), &m), TT_EZSTD);
  assert_int_equal(m, 0);
  assert_int_equal(tt_zstd_decompress(d, "abc", 3, back, sizeof(back), &m), TT_EZSTD);

  /* The right magic followed by noise. */
  tt_log_set_level(TT_LOG_OFF);
  for (int i = 0; i < 200; i++) {
    fill_random(g, sizeof(g));
    g[0] = 0x28, g[1] = 0xB5, g[2] = 0x2F, g[3] = 0xFD;
    int rc = tt_zstd_decompress(d, g, sizeof(g), back, sizeof(back), &m);
    assert_true(rc == TT_EZSTD || rc == TT_ETOOBIG);
  }
  tt_log_set_level(TT_LOG_INFO);

  /* A skippable frame is a valid zstd stream of nothing, but not something we send. */
  n = put_skippable(g, "hidden", 6);
  assert_int_equal(ZSTD_findFrameCompressedSize(g, n), n);
  assert_int_equal(tt_zstd_decompress(d, g, n, back, sizeof(back), &m), TT_EZSTD);
  tt_zstd_free(d);
}

static void test_lying_content_size(void **state) {
  (void)state;
  char in[1000], back[2000];
  unsigned char z[1000];
  tt_zstd_t *d = NULL;
  size_t n, m;
  static const size_t did_size[4] = {0, 1, 2, 4};

  fill_text(in, sizeof(in), 3);
  n = compress_ok(in, sizeof(in), z, sizeof(z));
  /* Header: magic, descriptor, [window], [dict id], content size (2 bytes, minus 256). */
  unsigned desc = z[4];
  assert_int_equal(desc >> 6, 1);
  size_t off = 5 + (((desc >> 5) & 1) ? 0 : 1) + did_size[desc & 3];
  assert_int_equal(z[off] | z[off + 1] << 8, 1000 - 256);
  assert_int_equal(tt_zstd_new_decompressor(&d), 0);

  z[off] = (unsigned char)(999 - 256);
  assert_int_equal(ZSTD_getFrameContentSize(z, n), 999);
  assert_int_equal(tt_zstd_decompress(d, z, n, back, sizeof(back), &m), TT_EZSTD);
  z[off] = (unsigned char)(1001 - 256);
  assert_int_equal(ZSTD_getFrameContentSize(z, n), 1001);
  assert_int_equal(tt_zstd_decompress(d, z, n, back, sizeof(back), &m), TT_EZSTD);
  z[off] = (unsigned char)(1000 - 256);
  assert_int_equal(tt_zstd_decompress(d, z, n, back, sizeof(back), &m), 0);
  assert_int_equal(m, 1000);
  tt_zstd_free(d);
}

static void test_two_frames(void **state) {
  (void)state;
  char in[2000], back[8000];
  unsigned char z[4000];
  tt_zstd_t *d = NULL;
  size_t n, m = 99;

  fill_text(in, sizeof(in), 5);
  n = compress_ok(in, sizeof(in), z, sizeof(z));
  memcpy(z + n, z, n);
  assert_int_equal(tt_zstd_new_decompressor(&d), 0);
  assert_int_equal(tt_zstd_decompress(d, z, 2 * n, back, sizeof(back), &m), TT_EZSTD);
  assert_int_equal(m, 0);
  /* One stray byte after the frame is refused the same way. */
  z[n] = 0;
  assert_int_equal(tt_zstd_decompress(d, z, n + 1, back, sizeof(back), &m), TT_EZSTD);
  /* A trailing skippable frame too. */
  size_t s = put_skippable(z + n, "x", 1);
  assert_int_equal(tt_zstd_decompress(d, z, n + s, back, sizeof(back), &m), TT_EZSTD);
  assert_int_equal(tt_zstd_decompress(d, z, n, back, sizeof(back), &m), 0);
  assert_int_equal(m, sizeof(in));
  tt_zstd_free(d);
}

/* One context per channel direction lives as long as the channel: many chunks, mixed
 * compressible and raw, with failures in between that must not poison the next chunk. */
static void test_reuse(void **state) {
  (void)state;
  char *in = malloc(CHUNK), *back = malloc(CHUNK);
  unsigned char *z = malloc(tt_zstd_bound(CHUNK));
  tt_zstd_t *c = NULL, *d = NULL;
  size_t n, m;
  bool comp;
  int ncomp = 0, nraw = 0;

  assert_non_null(in);
  assert_non_null(back);
  assert_non_null(z);
  assert_int_equal(tt_zstd_new_compressor(&c, 3), 0);
  assert_int_equal(tt_zstd_new_decompressor(&d), 0);
  tt_log_set_level(TT_LOG_OFF);
  for (unsigned i = 0; i < 600; i++) {
    size_t len = 1 + (size_t)(rng_next() % CHUNK);
    if (i % 3 == 2)
      fill_random((unsigned char *)in, len);
    else
      fill_text(in, len, i);
    assert_int_equal(tt_zstd_compress(c, in, len, z, tt_zstd_bound(len), &n, &comp), 0);
    if (!comp) {
      nraw++;
      assert_int_equal(n, len);
      assert_memory_equal(in, z, len);
      continue;
    }
    ncomp++;
    assert_true(n < len);
    if (i % 7 == 0) {
      /* A failed chunk halfway through a frame, then the real one. */
      assert_int_equal(tt_zstd_decompress(d, z, n - 1, back, CHUNK, &m), TT_EZSTD);
      if (len > 1)
        assert_int_equal(tt_zstd_decompress(d, z, n, back, len - 1, &m), TT_ETOOBIG);
    }
    assert_int_equal(tt_zstd_decompress(d, z, n, back, CHUNK, &m), 0);
    assert_int_equal(m, len);
    assert_memory_equal(in, back, len);
  }
  tt_log_set_level(TT_LOG_INFO);
  assert_true(ncomp > 100);
  assert_true(nraw > 100);
  tt_zstd_free(c);
  tt_zstd_free(d);
  free(in);
  free(back);
  free(z);
}

static void test_bad_args(void **state) {
  (void)state;
  tt_zstd_t *c = NULL, *d = NULL, *x = (tt_zstd_t *)&c;
  unsigned char buf[64];
  size_t n = 99;
  bool comp = true;

  assert_int_equal(tt_zstd_new_compressor(&x, 0), TT_EINVAL);
  assert_null(x);
  assert_int_equal(tt_zstd_new_compressor(&c, 20), TT_EINVAL);
  assert_int_equal(tt_zstd_new_compressor(NULL, 3), TT_EINVAL);
  assert_int_equal(tt_zstd_new_decompressor(NULL), TT_EINVAL);
  assert_int_equal(tt_zstd_new_compressor(&c, 3), 0);
  assert_int_equal(tt_zstd_new_decompressor(&d), 0);
  /* A handle only goes the one way it was made for. */
  assert_int_equal(tt_zstd_decompress(c, buf, sizeof(buf), buf, sizeof(buf), &n), TT_EINVAL);
  assert_int_equal(n, 0);
  assert_int_equal(tt_zstd_compress(d, buf, sizeof(buf), buf, sizeof(buf), &n, &comp),
                   TT_EINVAL);
  assert_false(comp);
  assert_int_equal(tt_zstd_compress(c, NULL, 5, buf, sizeof(buf), &n, &comp), TT_EINVAL);
  tt_zstd_free(c);
  tt_zstd_free(d);
  tt_zstd_free(NULL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_roundtrip_text),
      cmocka_unit_test(test_random_goes_raw),
      cmocka_unit_test(test_empty),
      cmocka_unit_test(test_bomb_known_size),
      cmocka_unit_test(test_bomb_unknown_size),
      cmocka_unit_test(test_unknown_size_boundary),
      cmocka_unit_test(test_window_too_large),
      cmocka_unit_test(test_truncated),
      cmocka_unit_test(test_garbage),
      cmocka_unit_test(test_lying_content_size),
      cmocka_unit_test(test_two_frames),
      cmocka_unit_test(test_reuse),
      cmocka_unit_test(test_bad_args),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
