/* What the inventory collector tests share: running one collector into a table, reading a
 * cell by column name, finding a row, and throwaway roots made of a few files. */
#ifndef TESTS_UNIT_AGENT_INV_FIXTURE_H
#define TESTS_UNIT_AGENT_INV_FIXTURE_H

#include <errno.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "collect.h"
#include "linux.h"
#include "table.h"

#define FIXTURE_A TT_FIXTURES "/linux-a"

/* Run collector fn (with its columns) against env into t; the caller frees t. */
static inline void fx_collect(void (*fn)(const inv_env_t *, inv_table_t *), const char *const *cols,
                              const inv_env_t *env, inv_table_t *t) {
  size_t n = 0;
  while (cols[n]) n++;
  assert_int_equal(inv_table_init(t, "t", cols, n), 0);
  fn(env, t);
}
#define FX_COLLECT(table, env, t) fx_collect(inv_linux_##table, inv_linux_##table##_cols, (env), (t))

static inline size_t fx_col(const inv_table_t *t, const char *name) {
  for (size_t i = 0; i < t->ncols; i++)
    if (strcmp(t->cols[i], name) == 0) return i;
  fail_msg("no column %s", name);
  return 0;
}

static inline const char *fx_val(const inv_table_t *t, size_t row, const char *col) {
  assert_true(row < t->nrows);
  return inv_cell(t, row, fx_col(t, col));
}

/* The first row whose col is value, or -1. */
static inline long fx_find(const inv_table_t *t, const char *col, const char *value) {
  size_t c = fx_col(t, col);
  for (size_t r = 0; r < t->nrows; r++)
    if (strcmp(inv_cell(t, r, c), value) == 0) return (long)r;
  return -1;
}

static inline long fx_count(const inv_table_t *t, const char *col, const char *value) {
  size_t c = fx_col(t, col);
  long n = 0;
  for (size_t r = 0; r < t->nrows; r++) n += strcmp(inv_cell(t, r, c), value) == 0;
  return n;
}

/* A fresh empty directory to build a root in (under $TT_TEST_TMP when set). */
static inline void fx_mkroot(char *out, size_t cap) {
  const char *base = getenv("TT_TEST_TMP");
  snprintf(out, cap, "%s/inv_root_XXXXXX", base ? base : "/tmp");
  assert_non_null(mkdtemp(out));
}

/* Write root/rel (making its directories) with len bytes of data. */
static inline void fx_write(const char *root, const char *rel, const void *data, size_t len) {
  char p[4096];
  snprintf(p, sizeof(p), "%s/%s", root, rel);
  for (char *s = p + strlen(root) + 1; (s = strchr(s, '/')); s++) {
    *s = 0;
    assert_true(mkdir(p, 0755) == 0 || errno == EEXIST);
    *s = '/';
  }
  FILE *f = fopen(p, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(data, 1, len, f), len);
  fclose(f);
}
static inline void fx_puts(const char *root, const char *rel, const char *text) {
  fx_write(root, rel, text, strlen(text));
}

static inline int fx_rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st, (void)flag, (void)ftw;
  return remove(p);
}
static inline void fx_rmroot(const char *root) { nftw(root, fx_rm_one, 16, FTW_DEPTH | FTW_PHYS); }

#endif
