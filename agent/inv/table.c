/* Inventory tables (table.h): rows of UTF-8 strings, put in one canonical order so that the
 * same facts always give the same bytes and the same hash. */
#include "table.h"
#include <openssl/evp.h>
#include "redact.h"
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "tt/err.h"
#include "tt/utf8.h"

int inv_table_init(inv_table_t *t, const char *name, const char *const *cols, size_t ncols) {
  memset(t, 0, sizeof(*t));
  if (ncols == 0 || ncols > INV_COLS_MAX) return TT_EINVAL;
  t->name = name;
  t->cols = cols;
  t->ncols = ncols;
  return 0;
}

void inv_table_free(inv_table_t *t) {
  for (size_t i = 0; i < t->nrows * t->ncols; i++) free(t->cells[i]);
  free(t->cells);
  free(t->own_cols);
  t->own_cols = NULL;
  t->cells = NULL;
  t->nrows = t->cap = 0;
}

int inv_table_keep(inv_table_t *t, bool (*keep)(const char *table, const char *col)) {
  bool k[INV_COLS_MAX];
  size_t nk = 0;
  for (size_t c = 0; c < t->ncols; c++) nk += (k[c] = keep(t->name, t->cols[c]));
  if (nk == t->ncols) return 0;
  const char **cols = malloc((nk ? nk : 1) * sizeof(*cols));
  if (!cols) return TT_ENOMEM;
  for (size_t c = 0, o = 0; c < t->ncols; c++)
    if (k[c]) cols[o++] = t->cols[c];
  size_t o = 0;
  for (size_t r = 0; r < t->nrows; r++)
    for (size_t c = 0; c < t->ncols; c++) {
      char *v = t->cells[r * t->ncols + c];
      if (k[c]) t->cells[o++] = v;
      else free(v);
    }
  free(t->own_cols);
  t->own_cols = cols;
  t->cols = cols;
  t->ncols = nk;
  return 0;
}

void inv_table_fail(inv_table_t *t, const char *fmt, ...) {
  if (t->error[0]) return;
  char raw[INV_ERROR_MAX];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(raw, sizeof(raw), fmt, ap);
  va_end(ap);
  if (n < 0) n = 0;
  if ((size_t)n >= sizeof(raw)) n = (int)sizeof(raw) - 1;
  /* A reason may quote what a helper printed: it leaves the device like a cell. */
  char clean[INV_ERROR_MAX], red[INV_ERROR_MAX * INV_REDACT_GROWTH];
  size_t len = tt_utf8_sanitize(clean, sizeof(clean), raw, (size_t)n);
  len = inv_redact(red, sizeof(red), clean, len, NULL);
  tt_utf8_sanitize(t->error, sizeof(t->error), red, len);
}

_Static_assert(INV_COLS_MAX <= 32, "a column's open private key block is a bit of pem_open");

int inv_table_add(inv_table_t *t, const char *const *vals) {
  if (t->nrows >= INV_ROWS_MAX) {
    inv_table_fail(t, "more than %u rows: the first %u are kept", (unsigned)INV_ROWS_MAX, (unsigned)INV_ROWS_MAX);
    return TT_EFULL;
  }
  if (t->nrows == t->cap) {
    size_t cap = t->cap ? t->cap * 2 : 16;
    if (cap > INV_ROWS_MAX) cap = INV_ROWS_MAX;
    char **c = realloc(t->cells, cap * t->ncols * sizeof(*c));
    if (!c) return TT_ENOMEM;
    t->cells = c;
    t->cap = cap;
  }
  char **row = t->cells + t->nrows * t->ncols;
  char clean[INV_CELL_MAX + INV_REDACT_LOOKAHEAD + 1];
  char red[(INV_CELL_MAX + INV_REDACT_LOOKAHEAD) * INV_REDACT_GROWTH], tmp[INV_CELL_MAX + 1];
  for (size_t i = 0; i < t->ncols; i++) {
    const char *v = vals[i] ? vals[i] : "";
    size_t n = strnlen(v, sizeof(clean) + 4);
    /* Redact what the cell keeps and a little past it, then cut: a token that straddles the
     * cut is whole when it is recognised (cut first, and its first 29 characters went out).
     * The look-ahead bounds redaction's work. A cell after the BEGIN of a private key block
     * that a program logged a line at a time is replaced whole, until the END. */
    size_t len = tt_utf8_sanitize(clean, sizeof(clean), v, n);
    bool was_open = t->pem_open >> i & 1u;
    bool open = inv_redact_pem_open(clean, len, was_open);
    t->pem_open = open ? t->pem_open | 1u << i : t->pem_open & ~(1u << i);
    if (was_open) len = (size_t)snprintf(red, sizeof(red), "%s", INV_REDACT_MARK);
    else len = inv_redact(red, sizeof(red), clean, len, NULL);
    len = tt_utf8_sanitize(tmp, sizeof(tmp), red, len);
    row[i] = malloc(len + 1);
    if (!row[i]) {
      while (i--) free(row[i]);
      return TT_ENOMEM;
    }
    memcpy(row[i], tmp, len + 1);
  }
  t->nrows++;
  return 0;
}

/* qsort has no context argument: the width of the rows being sorted, per thread. */
static _Thread_local size_t t_sort_ncols;

static int row_cmp(const void *a, const void *b) {
  char *const *ra = *(char *const *const *)a, *const *rb = *(char *const *const *)b;
  for (size_t i = 0; i < t_sort_ncols; i++) {
    int c = strcmp(ra[i], rb[i]);
    if (c) return c;
  }
  return 0;
}

void inv_table_sort(inv_table_t *t) {
  if (t->nrows < 2) return;
  char ***rows = malloc(t->nrows * sizeof(*rows));
  char **cells = malloc(t->nrows * t->ncols * sizeof(*cells));
  if (!rows || !cells) {
    free(rows);
    free(cells);
    return; /* unsorted: hashes may differ, nothing is lost */
  }
  for (size_t r = 0; r < t->nrows; r++) rows[r] = t->cells + r * t->ncols;
  t_sort_ncols = t->ncols;
  qsort(rows, t->nrows, sizeof(*rows), row_cmp);
  size_t out = 0;
  for (size_t r = 0; r < t->nrows; r++) {
    char **last = out ? cells + (out - 1) * t->ncols : NULL;
    if (last && row_cmp(&rows[r], &last) == 0) {
      for (size_t c = 0; c < t->ncols; c++) free(rows[r][c]);
      continue;
    }
    memcpy(cells + out * t->ncols, rows[r], t->ncols * sizeof(*cells));
    out++;
  }
  free(t->cells);
  free(rows);
  t->cells = cells;
  t->nrows = t->cap = out;
}

json_t *inv_table_json(inv_table_t *t) {
  inv_table_sort(t);
  json_t *o = json_object(), *cols = json_array(), *rows = json_array();
  if (!o || !cols || !rows) goto fail;
  for (size_t c = 0; c < t->ncols; c++)
    if (json_array_append_new(cols, json_string(t->cols[c]))) goto fail;
  for (size_t r = 0; r < t->nrows; r++) {
    json_t *row = json_array();
    if (!row || json_array_append_new(rows, row)) goto fail;
    for (size_t c = 0; c < t->ncols; c++) {
      const char *v = inv_cell(t, r, c);
      if (json_array_append_new(row, json_stringn_nocheck(v, strlen(v)))) goto fail; /* valid by inv_table_add */
    }
  }
  if (json_object_set_new(o, "columns", cols)) { cols = NULL; goto fail; }
  cols = NULL;
  if (json_object_set_new(o, "rows", rows)) { rows = NULL; goto fail; }
  rows = NULL;
  if (t->error[0] && json_object_set_new(o, "error", json_string(t->error))) goto fail;
  return o;
fail:
  json_decref(cols);
  json_decref(rows);
  json_decref(o);
  return NULL;
}

int inv_table_hash(inv_table_t *t, uint8_t out[32]) {
  json_t *j = inv_table_json(t);
  char *s = j ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
  json_decref(j);
  if (!s) return TT_ENOMEM;
  unsigned len = 32;
  int ok = EVP_Digest(s, strlen(s), out, &len, EVP_sha256(), NULL);
  free(s);
  return ok == 1 ? 0 : TT_ENOMEM;
}
