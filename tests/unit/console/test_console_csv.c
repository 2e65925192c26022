/* console/inv/csv.c: RFC 4180 quoting, quoted line breaks, CRLF/LF/CR and mixed line ends, a
 * UTF-8 BOM (skipped), bytes that are not UTF-8 (refused with the line), a duplicate header,
 * rows wider or narrower than the header, the row limit (refused before the row is taken,
 * on a million rows), oversized cells, stray quotes; formula cells kept as text on reading
 * and neutralised on writing, and the writer's output read back the same. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "inv/csv.h"
#include "tt/err.h"
#include "tt/limits.h"

#define CELLS_MAX 16

typedef struct {
  size_t n;                    /* records, header included */
  uint32_t line[CELLS_MAX];
  char cell[CELLS_MAX][CELLS_MAX][64];
  size_t width[CELLS_MAX];
} got_t;

static int keep(void *ctx, uint32_t line, char **cells, size_t n) {
  got_t *g = ctx;
  if (g->n < CELLS_MAX) {
    g->line[g->n] = line;
    g->width[g->n] = n;
    for (size_t i = 0; i < n && i < CELLS_MAX; i++) snprintf(g->cell[g->n][i], 64, "%s", cells[i]);
  }
  g->n++;
  return 0;
}

static csv_opts_t opts(void) {
  csv_opts_t o;
  memset(&o, 0, sizeof o);
  o.max_records = TT_ASSET_ROWS_MAX;
  o.max_fields = TT_ASSET_COLUMNS_MAX;
  o.max_cell = TT_ASSET_CELL_MAX;
  return o;
}

static int parse(const char *s, got_t *g, csv_opts_t *o) {
  memset(g, 0, sizeof *g);
  return console_csv_parse(s, strlen(s), o, keep, g);
}

static void test_quoting(void **state) {
  (void)state;
  got_t g;
  csv_opts_t o = opts();
  const char *in = "Asset Tag,Name,Notes\n"
                   "LT-1,\"Smith, Jane\",\"she said \"\"hi\"\"\"\n"
                   "LT-2,,\"\"\n";
  assert_int_equal(parse(in, &g, &o), 0);
  assert_int_equal(g.n, 3);
  assert_string_equal(g.cell[1][1], "Smith, Jane");
  assert_string_equal(g.cell[1][2], "she said \"hi\"");
  assert_string_equal(g.cell[2][1], "");
  assert_string_equal(g.cell[2][2], "");
  assert_int_equal(g.width[2], 3);
}

static void test_quoted_newlines_and_line_numbers(void **state) {
  (void)state;
  got_t g;
  csv_opts_t o = opts();
  const char *in = "Asset Tag,Notes\r\n"
                   "LT-1,\"first\r\nsecond\nthird\"\r\n"
                   "LT-2,x\r\n";
  assert_int_equal(parse(in, &g, &o), 0);
  assert_int_equal(g.n, 3);
  assert_string_equal(g.cell[1][1], "first\r\nsecond\nthird");
  assert_int_equal(g.line[1], 2);
  assert_int_equal(g.line[2], 5); /* the quoted field spanned lines 2 to 4 */
}

static void test_line_endings(void **state) {
  (void)state;
  got_t g;
  csv_opts_t o = opts();
  /* LF, CRLF, a lone CR, and no newline at the end: four records, the same cells. */
  const char *in = "A,B\nx,1\r\ny,2\rz,3";
  assert_int_equal(parse(in, &g, &o), 0);
  assert_int_equal(g.n, 4);
  assert_string_equal(g.cell[1][0], "x");
  assert_string_equal(g.cell[2][1], "2");
  assert_string_equal(g.cell[3][0], "z");
  assert_int_equal(g.line[3], 4);
  /* Blank lines are skipped, whatever they end with. */
  assert_int_equal(parse("A,B\r\n\r\n\nx,1\n\n", &g, &o), 0);
  assert_int_equal(g.n, 2);
  assert_int_equal(g.line[1], 4);
}

static void test_bom_is_skipped(void **state) {
  (void)state;
  got_t g;
  csv_opts_t o = opts();
  assert_int_equal(parse("\xEF\xBB\xBF" "Asset Tag,Name\nLT-1,a\n", &g, &o), 0);
  assert_string_equal(g.cell[0][0], "Asset Tag");
  /* A BOM anywhere else is text, and the header name with it is not "Asset Tag". */
  assert_int_equal(parse("Asset Tag,\xEF\xBB\xBFName\nLT-1,a\n", &g, &o), 0);
  assert_string_not_equal(g.cell[0][1], "Name");
}

static void test_not_utf8_is_refused_with_its_line(void **state) {
  (void)state;
  got_t g;
  csv_opts_t o = opts();
  /* Latin-1 "Zürich" on line 3: nothing taken, not even line 2. */
  assert_int_equal(parse("Asset Tag,Location\nLT-1,Bern\nLT-2,Z\xfcrich\n", &g, &o), TT_EINVAL);
  assert_int_equal(g.n, 0);
  assert_string_equal(o.err, "line 3: byte 0xFC is not UTF-8: save the file as UTF-8 (\"CSV UTF-8\" in Excel)");
  /* UTF-16 (as Excel's "Unicode text"): its NULs say it is no text of ours. */
  const char utf16[] = "\xff\xfe" "A\0,\0B\0";
  memset(&g, 0, sizeof g);
  assert_int_equal(console_csv_parse(utf16, sizeof utf16 - 1, &o, keep, &g), TT_EINVAL);
  assert_int_equal(g.n, 0);
  /* Overlong and surrogate encodings are not UTF-8 either. */
  assert_int_equal(parse("A\n\xc0\xaf\n", &g, &o), TT_EINVAL);
  assert_string_equal(o.err, "line 2: byte 0xC0 is not UTF-8: save the file as UTF-8 (\"CSV UTF-8\" in Excel)");
  assert_int_equal(parse("A\n\xed\xa0\x80\n", &g, &o), TT_EINVAL);
  assert_int_equal(parse("A,B\nx,\0\n", &g, &o), 0); /* strlen stops at the NUL: see next */
  memset(&g, 0, sizeof g);
  assert_int_equal(console_csv_parse("A,B\nx,\0y\n", 9, &o, keep, &g), TT_EINVAL);
  assert_string_equal(o.err, "line 2: a NUL byte: this is not a text file");
}

static void test_header_problems(void **state) {
  (void)state;
  got_t g;
  csv_opts_t o = opts();
  assert_int_equal(parse("Asset Tag,Name,asset tag \nLT-1,a,b\n", &g, &o), TT_EINVAL);
  assert_string_equal(o.err, "line 1: the column 'asset tag' is named twice (columns 1 and 3)");
  assert_int_equal(g.n, 0);
  assert_int_equal(parse("Asset Tag,,Name\n", &g, &o), TT_EINVAL);
  assert_string_equal(o.err, "line 1: column 2 of the header has no name");
  assert_int_equal(parse("", &g, &o), TT_EINVAL);
  assert_string_equal(o.err, "the file is empty: no header");
  o.max_fields = 3;
  assert_int_equal(parse("a,b,c,d\n", &g, &o), TT_ETOOBIG);
}

static void test_row_width(void **state) {
  (void)state;
  got_t g;
  csv_opts_t o = opts();
  assert_int_equal(parse("A,B\nx,1\ny,2,extra\n", &g, &o), TT_EINVAL);
  assert_string_equal(o.err, "line 3: 3 fields, the header has 2");
  assert_int_equal(parse("A,B\nx,1\ny\n", &g, &o), TT_EINVAL);
  assert_string_equal(o.err, "line 3: 1 fields, the header has 2");
}

static void test_stray_quotes(void **state) {
  (void)state;
  got_t g;
  csv_opts_t o = opts();
  assert_int_equal(parse("A,B\nx,\"open\n", &g, &o), TT_EINVAL);
  assert_string_equal(o.err, "line 2: a quoted field is not closed");
  assert_int_equal(parse("A,B\nx,\"a\"b\n", &g, &o), TT_EINVAL);
  assert_non_null(strstr(o.err, "line 2: text after a closing quote"));
  assert_int_equal(parse("A,B\nx,5\" screen\n", &g, &o), TT_EINVAL);
  assert_non_null(strstr(o.err, "line 2: a quote inside an unquoted field"));
}

static void test_cell_limit(void **state) {
  (void)state;
  got_t g;
  csv_opts_t o = opts();
  size_t n = TT_ASSET_CELL_MAX + 1;
  char *in = malloc(n + 16);
  assert_non_null(in);
  memcpy(in, "A\n\"", 3);
  memset(in + 3, 'x', n);
  memcpy(in + 3 + n, "\"\n", 3);
  assert_int_equal(parse(in, &g, &o), TT_ETOOBIG);
  assert_string_equal(o.err, "line 2: a field is longer than 2048 bytes");
  in[3 + n - 1] = '"'; /* exactly at the limit: fine */
  in[3 + n] = '\n';
  in[3 + n + 1] = '\0';
  assert_int_equal(parse(in, &g, &o), 0);
  free(in);
}

static int count(void *ctx, uint32_t line, char **cells, size_t n) {
  (void)line;
  (void)cells;
  (void)n;
  (*(size_t *)ctx)++;
  return 0;
}

static void test_a_million_rows_is_refused(void **state) {
  (void)state;
  size_t rows = 1000000, per = 4; /* "a,1\n" */
  char *in = malloc(4 + rows * per);
  assert_non_null(in);
  memcpy(in, "A,B\n", 4);
  for (size_t i = 0; i < rows; i++) memcpy(in + 4 + i * per, "a,1\n", per);
  csv_opts_t o = opts();
  size_t taken = 0;
  assert_int_equal(console_csv_parse(in, 4 + rows * per, &o, count, &taken), TT_ETOOBIG);
  /* The header and exactly the limit reached the caller; the row past it never did. */
  assert_int_equal(taken, TT_ASSET_ROWS_MAX + 1);
  char want[128];
  snprintf(want, sizeof want, "more than %u rows: split the file (line %u is past the limit)", TT_ASSET_ROWS_MAX,
           TT_ASSET_ROWS_MAX + 2);
  assert_string_equal(o.err, want);
  free(in);
}

static void test_formulas(void **state) {
  (void)state;
  got_t g;
  csv_opts_t o = opts();
  /* Read: a formula is text like any other. */
  assert_int_equal(parse("A,B\n=cmd|' /C calc'!A0,@SUM(1)\n", &g, &o), 0);
  assert_string_equal(g.cell[1][0], "=cmd|' /C calc'!A0");
  /* Written: neutralised with a leading quote, quoted where CSV needs it. */
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  assert_non_null(f);
  const char *cells[] = {"=cmd|' /C calc'!A0", "+1", "-2", "@x", "\tx", "\rx", "plain", "a,b", "say \"hi\"", " pad",
                         "line\nbreak", "'quoted"};
  for (size_t i = 0; i < sizeof cells / sizeof cells[0]; i++) {
    if (i) fputc(',', f);
    console_csv_write_cell(f, cells[i]);
  }
  fputc('\n', f);
  fclose(f);
  assert_string_equal(buf, "'=cmd|' /C calc'!A0,'+1,'-2,'@x,'\tx,\"'\rx\",plain,\"a,b\",\"say \"\"hi\"\"\",\" pad\","
                           "\"line\nbreak\",'quoted\n");
  /* ... and read back, the quote taken off again: what was written is what comes back. */
  char *all = malloc(len + 64);
  assert_non_null(all);
  snprintf(all, len + 64, "a,b,c,d,e,f,g,h,i,j,k,l\n%s", buf);
  assert_int_equal(parse(all, &g, &o), 0);
  for (size_t i = 0; i < sizeof cells / sizeof cells[0]; i++) {
    console_csv_unneutralise(g.cell[1][i]);
    assert_string_equal(g.cell[1][i], cells[i]);
  }
  free(all);
  free(buf);
  assert_true(console_csv_formula("=1"));
  assert_false(console_csv_formula("1=1"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_quoting),
    cmocka_unit_test(test_quoted_newlines_and_line_numbers),
    cmocka_unit_test(test_line_endings),
    cmocka_unit_test(test_bom_is_skipped),
    cmocka_unit_test(test_not_utf8_is_refused_with_its_line),
    cmocka_unit_test(test_header_problems),
    cmocka_unit_test(test_row_width),
    cmocka_unit_test(test_stray_quotes),
    cmocka_unit_test(test_cell_limit),
    cmocka_unit_test(test_a_million_rows_is_refused),
    cmocka_unit_test(test_formulas),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
