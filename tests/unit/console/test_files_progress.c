/* The progress block of a transfer on a terminal: sizes, rates and ETAs read as people read
 * them, a line never wider than the terminal (a wrapped line would break the redraw), the
 * end of a long path kept, and a block drawn over the one before. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "files.h"

#define S (1000000000ull)

static void test_bytes_eta(void **state) {
  (void)state;
  char b[32];
  progress_bytes(b, sizeof(b), 0);
  assert_string_equal(b, "0 B");
  progress_bytes(b, sizeof(b), 1023);
  assert_string_equal(b, "1023 B");
  progress_bytes(b, sizeof(b), 1536);
  assert_string_equal(b, "1.5 KiB");
  progress_bytes(b, sizeof(b), 40ull << 20);
  assert_string_equal(b, "40.0 MiB");
  progress_bytes(b, sizeof(b), 3ull << 40);
  assert_string_equal(b, "3.0 TiB");
  progress_bytes(b, sizeof(b), UINT64_MAX);
  assert_string_equal(b, "16384.0 PiB");
  progress_eta(b, sizeof(b), 0);
  assert_string_equal(b, "0:00");
  progress_eta(b, sizeof(b), 61.2);
  assert_string_equal(b, "1:02");
  progress_eta(b, sizeof(b), 3723);
  assert_string_equal(b, "1:02:03");
  progress_eta(b, sizeof(b), -1);
  assert_string_equal(b, "--:--");
  progress_eta(b, sizeof(b), 1e12);
  assert_string_equal(b, "--:--");
}

static void test_fit(void **state) {
  (void)state;
  char out[64];
  progress_fit(out, sizeof(out), "/var/log/syslog", 40);
  assert_string_equal(out, "/var/log/syslog");
  progress_fit(out, sizeof(out), "/var/log/syslog", 10);
  assert_string_equal(out, ".../syslog");
  /* Characters, not bytes: "é" is one. */
  progress_fit(out, sizeof(out), "/d/caf\xc3\xa9\xc3\xa9\xc3\xa9", 7);
  assert_string_equal(out, "...f\xc3\xa9\xc3\xa9\xc3\xa9");
  progress_fit(out, sizeof(out), "abcdef", 2);
  assert_string_equal(out, "ef");
}

/* Characters per line of a rendered block. */
static void check_widths(const char *block, unsigned cols, unsigned lines) {
  unsigned n = 0, seen = 1;
  for (const char *q = block; *q; q++) {
    if (*q == '\n') {
      assert_true(n <= cols - 1);
      n = 0;
      seen++;
      continue;
    }
    if (((unsigned char)*q & 0xc0) != 0x80) n++;
  }
  assert_true(n <= cols - 1);
  assert_int_equal(seen, lines);
}

static void test_render(void **state) {
  (void)state;
  progress_t p;
  char block[PROGRESS_BUF];
  progress_init(&p, 0);
  p.files_total = 12;
  p.files_done = 3;
  p.bytes_total = 400ull << 20;
  p.bytes_done = 120ull << 20;
  p.moved = 100ull << 20;
  progress_tick(&p, 1 * S); /* 100 MiB in a second */
  assert_true(p.rate > 99.0 * (1 << 20) && p.rate < 101.0 * (1 << 20));
  progress_file_t f[6];
  for (int i = 0; i < 6; i++)
    f[i] = (progress_file_t){.name = "/var/log/app/a/very/long/path/to/the/file/that/moves/now/syslog.1",
                             .done = 12ull << 20, .total = 40ull << 20, .resumed = 2ull << 20, .t0_ns = 0};
  unsigned lines = progress_render(&p, f, 2, 2, 1 * S, 120, block, sizeof(block));
  assert_int_equal(lines, 3);
  check_widths(block, 120, 3);
  assert_non_null(strstr(block, "syslog.1"));
  assert_non_null(strstr(block, "12.0 MiB / 40.0 MiB"));
  assert_non_null(strstr(block, " 30%"));
  assert_non_null(strstr(block, "10.0 MiB/s")); /* 10 MiB moved in 1 s: resumed bytes did not */
  assert_non_null(strstr(block, "3/12 files"));
  assert_non_null(strstr(block, "120.0 MiB / 400.0 MiB"));
  assert_non_null(strstr(block, "0:03")); /* 280 MiB at 100 MiB/s */
  assert_non_null(strchr(block, '['));    /* wide enough for a bar */

  /* Narrow: no bar, the path's head goes, nothing wider than the terminal. */
  lines = progress_render(&p, f, 2, 2, 1 * S, 60, block, sizeof(block));
  check_widths(block, 60, lines);
  assert_null(strchr(block, '['));
  assert_non_null(strstr(block, "..."));
  lines = progress_render(&p, f, 1, 1, 1 * S, 10, block, sizeof(block));
  check_widths(block, 20, lines); /* under 20 columns, 20 are assumed */

  /* At most PROGRESS_FILES_SHOWN file lines; the rest counted. */
  lines = progress_render(&p, f, PROGRESS_FILES_SHOWN, 6, 1 * S, 100, block, sizeof(block));
  assert_int_equal(lines, PROGRESS_FILES_SHOWN + 1);
  assert_non_null(strstr(block, "2 more moving"));

  /* Sizes not known yet: no total, no ETA. */
  p.unknown = 1;
  lines = progress_render(&p, f, 0, 0, 1 * S, 100, block, sizeof(block));
  assert_int_equal(lines, 1);
  assert_non_null(strstr(block, "/ ?"));
  assert_non_null(strstr(block, "--:--"));
}

/* The rate follows what moves, smoothed: a stall brings it down over seconds, not at once. */
static void test_rate(void **state) {
  (void)state;
  progress_t p;
  progress_init(&p, 0);
  p.moved = 10 << 20;
  progress_tick(&p, S);
  double r1 = p.rate;
  progress_tick(&p, S + S / 100); /* too soon to measure */
  assert_true(p.rate == r1);
  progress_tick(&p, 2 * S); /* nothing moved for a second */
  assert_true(p.rate < r1 && p.rate > r1 / 2);
  for (int i = 3; i < 30; i++) progress_tick(&p, (uint64_t)i * S);
  assert_true(p.rate < r1 / 100);
}

static void test_draw(void **state) {
  (void)state;
  progress_t p;
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  assert_non_null(f);
  progress_init(&p, 0);
  p.files_total = 1;
  progress_file_t one = {.name = "a", .done = 1, .total = 2};
  progress_draw(&p, f, &one, 1, 1, S, 80);
  assert_int_equal(p.drawn, 2);
  fflush(f);
  assert_null(strstr(buf, "\033[2A")); /* nothing to go back over the first time */
  size_t first = len;
  progress_draw(&p, f, NULL, 0, 0, S, 80); /* one line fewer: up two, and clear below */
  fflush(f);
  assert_int_equal(strncmp(buf + first, "\033[2A", 4), 0);
  assert_non_null(strstr(buf + first, "\033[J"));
  assert_int_equal(p.drawn, 1);
  progress_clear(&p, f);
  fflush(f);
  assert_non_null(strstr(buf + first, "\033[1A\r\033[J"));
  assert_int_equal(p.drawn, 0);
  size_t cleared = len;
  progress_clear(&p, f); /* nothing drawn: nothing written */
  fflush(f);
  assert_int_equal(len, cleared);
  fclose(f);
  free(buf);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_bytes_eta), cmocka_unit_test(test_fit),  cmocka_unit_test(test_render),
      cmocka_unit_test(test_rate),      cmocka_unit_test(test_draw),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
