/* Unit tests for broker/session/record.c: JSON text from terminal bytes (escapes, UTF-8 carried
 * across chunks, invalid bytes as U+FFFD) and the writer end to end (asciicast v2 lines in
 * one zstd stream, size and sha256 as reported, O_EXCL). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>
#include <zstd.h>

#include "record.h"
#include "tt/limits.h"

/* Feed the chunks one after the other; return the JSON text (static, NUL-terminated). */
static const char *json_of(const char *const *chunks, const size_t *lens, size_t n, broker_utf8_carry_t *carry) {
  static char out[4096];
  tt_buf_t b;
  tt_buf_init(&b, sizeof(out) - 1);
  memset(carry, 0, sizeof(*carry));
  for (size_t i = 0; i < n; i++)
    assert_int_equal(broker_json_text(&b, carry, (const uint8_t *)chunks[i], lens[i]), 0);
  memcpy(out, tt_buf_head(&b), b.len);
  out[b.len] = '\0';
  tt_buf_free(&b);
  return out;
}

static const char *json1(const char *s, size_t n) {
  broker_utf8_carry_t c;
  const char *out = json_of(&s, &n, 1, &c);
  assert_int_equal(c.n, 0);
  return out;
}

static void test_escapes(void **state) {
  (void)state;
  const char in[] = "a\"b\\c\n\r\t\b\f\x01\x1b[0m\x7f";
  assert_string_equal(json1(in, sizeof(in) - 1), "a\\\"b\\\\c\\n\\r\\t\\b\\f\\u0001\\u001b[0m\\u007f");
  const char nul[] = {'x', '\0', 'y'};
  assert_string_equal(json1(nul, 3), "x\\u0000y");
}

static void test_valid_utf8_passes(void **state) {
  (void)state;
  const char *s = "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xef\xbf\xbf";
  assert_string_equal(json1(s, strlen(s)), s);
}

static void test_invalid_bytes(void **state) {
  (void)state;
  /* A lone continuation byte, a bad lead, a cut sequence inside a chunk. */
  assert_string_equal(json1("\x80", 1), "\xef\xbf\xbd");
  assert_string_equal(json1("a\xff" "b", 3), "a\xef\xbf\xbd" "b");
  assert_string_equal(json1("\xc3(", 2), "\xef\xbf\xbd(");
  /* Overlong '/' and a surrogate: each byte that cannot start or continue is one U+FFFD. */
  assert_string_equal(json1("\xc0\xaf", 2), "\xef\xbf\xbd\xef\xbf\xbd");
  assert_string_equal(json1("\xed\xa0\x80", 3), "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
  /* Past U+10FFFF. */
  assert_string_equal(json1("\xf4\x90\x80\x80", 4), "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
  /* A valid start cut by a bad byte: one U+FFFD for the start, then the byte itself. */
  assert_string_equal(json1("\xe2\x82" "A", 3), "\xef\xbf\xbd" "A");
}

static void test_carry_across_chunks(void **state) {
  (void)state;
  const char emoji[] = "\xf0\x9f\x98\x80";
  broker_utf8_carry_t c;
  /* Every split of a 4-byte character into two chunks gives the character once. */
  for (size_t cut = 1; cut < 4; cut++) {
    const char *chunks[2] = {emoji, emoji + cut};
    size_t lens[2] = {cut, 4 - cut};
    assert_string_equal(json_of(chunks, lens, 2, &c), emoji);
    assert_int_equal(c.n, 0);
  }
  /* One byte at a time, with text around it. */
  const char *bytes[6] = {"x", "\xf0", "\x9f", "\x98", "\x80", "y"};
  size_t ones[6] = {1, 1, 1, 1, 1, 1};
  assert_string_equal(json_of(bytes, ones, 6, &c), "x\xf0\x9f\x98\x80y");
  /* A chunk that ends inside a character leaves it in the carry, not in the output. */
  const char *part[1] = {"ab\xe2\x82"};
  size_t plen[1] = {4};
  assert_string_equal(json_of(part, plen, 1, &c), "ab");
  assert_int_equal(c.n, 2);
  /* A carried start that the next chunk does not continue: U+FFFD, then the next chunk. */
  const char *bad[2] = {"\xe2\x82", "\"z"};
  size_t blen[2] = {2, 2};
  assert_string_equal(json_of(bad, blen, 2, &c), "\xef\xbf\xbd\\\"z");
  assert_int_equal(c.n, 0);
  /* Empty chunks change nothing. */
  const char *empty[3] = {"\xc3", "", "\xa9"};
  size_t elen[3] = {1, 0, 1};
  assert_string_equal(json_of(empty, elen, 3, &c), "\xc3\xa9");
}

static void test_worst_case_bound(void **state) {
  (void)state;
  /* Every byte a control: the output stays within BROKER_JSON_TEXT_MAX. */
  static uint8_t in[TT_DATA_CHUNK_MAX];
  memset(in, 0x01, sizeof(in));
  tt_buf_t b;
  tt_buf_init(&b, BROKER_JSON_TEXT_MAX(sizeof(in)));
  broker_utf8_carry_t c = {.n = 0};
  assert_int_equal(broker_json_text(&b, &c, in, sizeof(in)), 0);
  assert_int_equal(b.len, 6u * sizeof(in));
  tt_buf_free(&b);
}

/* ---- the writer --------------------------------------------------------------------------- */

typedef struct {
  int fails, done, drains;
  int fail_err;
  broker_rec_result_t res;
} outcome_t;

static void on_drain(void *ctx) { ((outcome_t *)ctx)->drains++; }
static void on_fail(void *ctx, int err) {
  outcome_t *o = ctx;
  o->fails++;
  o->fail_err = err;
}
static void on_done(void *ctx, const broker_rec_result_t *res) {
  outcome_t *o = ctx;
  o->done++;
  o->res = *res;
}
static const broker_rec_cbs_t cbs = {.on_drain = on_drain, .on_fail = on_fail, .on_done = on_done};

static char *read_all(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  assert_non_null(f);
  fseek(f, 0, SEEK_END);
  long len = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *p = malloc((size_t)len + 1);
  assert_non_null(p);
  assert_int_equal(fread(p, 1, (size_t)len, f), (size_t)len);
  fclose(f);
  *n = (size_t)len;
  return p;
}

static char *unzstd(const char *p, size_t n, size_t *outn) {
  size_t cap = 1u << 20, len = 0;
  char *out = malloc(cap + 1);
  assert_non_null(out);
  ZSTD_DCtx *d = ZSTD_createDCtx();
  ZSTD_inBuffer in = {p, n, 0};
  size_t rc = 1;
  while (in.pos < in.size) {
    ZSTD_outBuffer o = {out + len, cap - len, 0};
    rc = ZSTD_decompressStream(d, &o, &in);
    assert_false(ZSTD_isError(rc));
    len += o.pos;
  }
  assert_int_equal(rc, 0); /* the stream was ended properly */
  ZSTD_freeDCtx(d);
  out[len] = '\0';
  *outn = len;
  return out;
}

static void make_dir(char *dir, size_t cap) {
  const char *tmp = getenv("TT_TEST_TMP");
  if (!tmp || !tmp[0]) tmp = "/tmp";
  snprintf(dir, cap, "%s/test_record.XXXXXX", tmp);
  assert_non_null(mkdtemp(dir));
}

static void test_writer_round_trip(void **state) {
  (void)state;
  char dir[512], path[600];
  make_dir(dir, sizeof(dir));
  snprintf(path, sizeof(path), "%s/R-1.cast.zst", dir);
  uv_loop_t loop;
  assert_int_equal(uv_loop_init(&loop), 0);
  outcome_t o = {0};
  broker_rec_t *r;
  broker_rec_header_t h = {.cols = 80, .rows = 24, .unix_s = 1764770000, .term = "xterm-256color",
                           .title = "S-5 T-3 alice@pc-\"7\""};
  assert_int_equal(broker_rec_open(&r, &loop, path, &h, &cbs, &o), 0);
  assert_int_equal(broker_rec_output(r, (const uint8_t *)"hello\r\n", 7), 0);
  assert_int_equal(broker_rec_output(r, (const uint8_t *)"\xe2\x82", 2), 0); /* euro sign, cut */
  uv_run(&loop, UV_RUN_NOWAIT); /* let the open and a write happen in between */
  assert_int_equal(broker_rec_output(r, (const uint8_t *)"\xac!", 2), 0);
  assert_int_equal(broker_rec_resize(r, 100, 40), 0);
  assert_false(broker_rec_backlogged(r));
  broker_rec_tick(r);
  broker_rec_finish(r);
  assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(o.done, 1);
  assert_int_equal(o.fails, 0);
  assert_false(o.res.failed);

  struct stat st;
  assert_int_equal(stat(path, &st), 0);
  assert_int_equal(st.st_mode & 0777, 0600);
  size_t n, tn;
  char *file = read_all(path, &n);
  assert_int_equal((int64_t)n, o.res.size);
  uint8_t md[32];
  char hex[65];
  SHA256((const uint8_t *)file, n, md);
  for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", md[i]);
  assert_string_equal(hex, o.res.sha256);

  char *text = unzstd(file, n, &tn);
  assert_non_null(strstr(text, "{\"version\": 2, \"width\": 80, \"height\": 24, \"timestamp\": 1764770000, "
                               "\"env\": {\"TERM\": \"xterm-256color\"}, \"title\": \"S-5 T-3 alice@pc-\\\"7\\\"\"}\n"));
  assert_non_null(strstr(text, ", \"o\", \"hello\\r\\n\"]\n"));
  assert_non_null(strstr(text, ", \"o\", \"\"]\n"));               /* the cut chunk: nothing yet */
  assert_non_null(strstr(text, ", \"o\", \"\xe2\x82\xac!\"]\n"));  /* the character, whole */
  assert_non_null(strstr(text, ", \"r\", \"100x40\"]\n"));
  /* Five lines, each event "[<s>.<6 digits>, ": times with microseconds. */
  int lines = 0;
  for (char *p = text; *p; p++) lines += *p == '\n';
  assert_int_equal(lines, 5);
  char *ev = strchr(text, '\n') + 1;
  assert_true(ev[0] == '[');
  char *dot = strchr(ev, '.');
  assert_non_null(dot);
  assert_int_equal(strspn(dot + 1, "0123456789"), 6);
  free(text);
  free(file);
  assert_int_equal(uv_loop_close(&loop), 0);
  unlink(path);
  rmdir(dir);
}

static void test_writer_exists_fails(void **state) {
  (void)state;
  char dir[512], path[600];
  make_dir(dir, sizeof(dir));
  snprintf(path, sizeof(path), "%s/R-2.cast.zst", dir);
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fclose(f);
  uv_loop_t loop;
  assert_int_equal(uv_loop_init(&loop), 0);
  outcome_t o = {0};
  broker_rec_t *r;
  broker_rec_header_t h = {.cols = 80, .rows = 24, .unix_s = 1, .term = "dumb", .title = "t"};
  assert_int_equal(broker_rec_open(&r, &loop, path, &h, &cbs, &o), 0);
  assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(o.fails, 1); /* O_EXCL: an existing file is never written over */
  assert_int_equal(o.fail_err, UV_EEXIST);
  assert_int_equal(o.done, 0);
  assert_int_not_equal(broker_rec_output(r, (const uint8_t *)"x", 1), 0);
  broker_rec_finish(r);
  assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(o.done, 1);
  assert_true(o.res.failed);
  struct stat st;
  assert_int_equal(stat(path, &st), 0);
  assert_int_equal(st.st_size, 0);
  assert_int_equal(uv_loop_close(&loop), 0);
  unlink(path);
  rmdir(dir);
}

/* Finishing before the open has even completed still ends in one on_done and no on_fail. */
static void test_writer_finish_at_once(void **state) {
  (void)state;
  char dir[512], path[600];
  make_dir(dir, sizeof(dir));
  snprintf(path, sizeof(path), "%s/R-3.cast.zst", dir);
  uv_loop_t loop;
  assert_int_equal(uv_loop_init(&loop), 0);
  outcome_t o = {0};
  broker_rec_t *r;
  broker_rec_header_t h = {.cols = 1, .rows = 1, .unix_s = 1, .term = "dumb", .title = ""};
  assert_int_equal(broker_rec_open(&r, &loop, path, &h, &cbs, &o), 0);
  broker_rec_finish(r);
  assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(o.done, 1);
  assert_int_equal(o.fails, 0);
  assert_false(o.res.failed);
  size_t n, tn;
  char *file = read_all(path, &n);
  char *text = unzstd(file, n, &tn);
  assert_non_null(strstr(text, "\"width\": 1, \"height\": 1"));
  free(text);
  free(file);
  assert_int_equal(uv_loop_close(&loop), 0);
  unlink(path);
  rmdir(dir);
}

/* Bulk output: many events, flushes on the way; the stream decompresses to all of it. */
static void test_writer_bulk(void **state) {
  (void)state;
  char dir[512], path[600];
  make_dir(dir, sizeof(dir));
  snprintf(path, sizeof(path), "%s/R-4.cast.zst", dir);
  uv_loop_t loop;
  assert_int_equal(uv_loop_init(&loop), 0);
  outcome_t o = {0};
  broker_rec_t *r;
  broker_rec_header_t h = {.cols = 80, .rows = 24, .unix_s = 1, .term = "dumb", .title = "bulk"};
  assert_int_equal(broker_rec_open(&r, &loop, path, &h, &cbs, &o), 0);
  static uint8_t chunk[TT_DATA_CHUNK_MAX];
  for (size_t i = 0; i < sizeof(chunk); i++) chunk[i] = (uint8_t)('a' + i % 26);
  for (int i = 0; i < 40; i++) {
    assert_int_equal(broker_rec_output(r, chunk, sizeof(chunk)), 0);
    if (i % 8 == 0) uv_run(&loop, UV_RUN_NOWAIT);
  }
  broker_rec_finish(r);
  assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(o.done, 1);
  assert_false(o.res.failed);
  size_t n, tn;
  char *file = read_all(path, &n);
  assert_int_equal((int64_t)n, o.res.size);
  char *text = unzstd(file, n, &tn);
  assert_true(tn > 40u * sizeof(chunk));
  int lines = 0;
  for (char *p = text; *p; p++) lines += *p == '\n';
  assert_int_equal(lines, 41);
  free(text);
  free(file);
  assert_int_equal(uv_loop_close(&loop), 0);
  unlink(path);
  rmdir(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_escapes),
      cmocka_unit_test(test_valid_utf8_passes),
      cmocka_unit_test(test_invalid_bytes),
      cmocka_unit_test(test_carry_across_chunks),
      cmocka_unit_test(test_worst_case_bound),
      cmocka_unit_test(test_writer_round_trip),
      cmocka_unit_test(test_writer_exists_fails),
      cmocka_unit_test(test_writer_finish_at_once),
      cmocka_unit_test(test_writer_bulk),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
