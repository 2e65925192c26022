/* Inventory tables: the same facts in any order give the same JSON and hash, duplicates go,
 * cells are valid UTF-8 whatever the machine had, and the row limit is kept and said. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "table.h"
#include "tt/err.h"

static const char *const cols[] = {"name", "version"};

static void fill(inv_table_t *t, int reverse) {
  const char *rows[][2] = {{"openssl", "3.0.19-1"}, {"bash", "5.2.15-2"}, {"zstd", "1.5.4"}, {"bash", "5.2.15-2"}};
  assert_int_equal(inv_table_init(t, "deb_packages", cols, 2), 0);
  for (int i = 0; i < 4; i++) {
    int k = reverse ? 3 - i : i;
    const char *v[] = {rows[k][0], rows[k][1]};
    assert_int_equal(inv_table_add(t, v), 0);
  }
}

static void test_canonical_order_and_hash(void **state) {
  (void)state;
  inv_table_t a, b;
  fill(&a, 0);
  fill(&b, 1);
  uint8_t ha[32], hb[32];
  assert_int_equal(inv_table_hash(&a, ha), 0);
  assert_int_equal(inv_table_hash(&b, hb), 0);
  assert_memory_equal(ha, hb, 32);
  assert_int_equal(a.nrows, 3); /* the duplicate bash row went */
  json_t *j = inv_table_json(&a);
  char *s = json_dumps(j, JSON_COMPACT);
  assert_string_equal(s, "{\"columns\":[\"name\",\"version\"],\"rows\":[[\"bash\",\"5.2.15-2\"],"
                         "[\"openssl\",\"3.0.19-1\"],[\"zstd\",\"1.5.4\"]]}");
  free(s);
  json_decref(j);
  /* One changed value, another hash. */
  free(b.cells[1]);
  b.cells[1] = strdup("5.2.15-3");
  assert_int_equal(inv_table_hash(&b, hb), 0);
  assert_memory_not_equal(ha, hb, 32);
  inv_table_free(&a);
  inv_table_free(&b);
}

static void test_cells_are_utf8_and_bounded(void **state) {
  (void)state;
  inv_table_t t;
  assert_int_equal(inv_table_init(&t, "x", cols, 2), 0);
  char big[INV_CELL_MAX * 2];
  memset(big, 'a', sizeof(big) - 1);
  big[sizeof(big) - 1] = 0;
  const char *v[] = {"bad \xff byte", big};
  assert_int_equal(inv_table_add(&t, v), 0);
  const char *nul[] = {NULL, ""};
  assert_int_equal(inv_table_add(&t, nul), 0);
  inv_table_sort(&t);
  assert_string_equal(inv_cell(&t, 0, 0), "");
  assert_string_equal(inv_cell(&t, 1, 0), "bad \xef\xbf\xbd byte");
  assert_int_equal(strlen(inv_cell(&t, 1, 1)), INV_CELL_MAX);
  json_t *j = inv_table_json(&t);
  assert_non_null(j);
  json_decref(j);
  inv_table_free(&t);
  /* Columns: none, or too many, is refused. */
  assert_int_equal(inv_table_init(&t, "x", cols, 0), TT_EINVAL);
  assert_int_equal(inv_table_init(&t, "x", cols, INV_COLS_MAX + 1), TT_EINVAL);
}

static void test_row_limit(void **state) {
  (void)state;
  inv_table_t t;
  assert_int_equal(inv_table_init(&t, "deb_packages", cols, 2), 0);
  char name[32];
  const char *v[] = {name, "1"};
  for (int i = 0; i < INV_ROWS_MAX; i++) {
    snprintf(name, sizeof(name), "p%d", i);
    assert_int_equal(inv_table_add(&t, v), 0);
  }
  assert_int_equal(inv_table_add(&t, v), TT_EFULL);
  assert_int_equal(t.nrows, INV_ROWS_MAX);
  assert_non_null(strstr(t.error, "first 20000"));
  json_t *j = inv_table_json(&t);
  assert_string_equal(json_string_value(json_object_get(j, "error")), t.error);
  json_decref(j);
  inv_table_fail(&t, "a second reason"); /* the first is kept */
  assert_null(strstr(t.error, "second"));
  inv_table_free(&t);
}

static bool keep_version(const char *table, const char *col) {
  (void)table;
  return strcmp(col, "version") != 0;
}

static void test_keep_drops_columns_whole(void **state) {
  (void)state;
  inv_table_t t;
  fill(&t, 0);
  assert_int_equal(inv_table_keep(&t, keep_version), 0);
  assert_int_equal(t.ncols, 1);
  assert_string_equal(t.cols[0], "name");
  json_t *j = inv_table_json(&t);
  char *s = json_dumps(j, JSON_COMPACT);
  /* bash appears once: rows equal once the column is gone are one row. */
  assert_string_equal(s, "{\"columns\":[\"name\"],\"rows\":[[\"bash\"],[\"openssl\"],[\"zstd\"]]}");
  free(s);
  json_decref(j);
  inv_table_free(&t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_canonical_order_and_hash),
      cmocka_unit_test(test_cells_are_utf8_and_bounded),
      cmocka_unit_test(test_row_limit),
      cmocka_unit_test(test_keep_drops_columns_whole),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
