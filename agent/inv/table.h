/* One inventory table as a collector fills it: osquery's table and column names, every value
 * a string (as osquery prints them), rows in any order. The same table hashes and prints the
 * same way whatever order its rows came in, so an unchanged machine sends nothing new. */
#ifndef AGENT_INV_TABLE_H
#define AGENT_INV_TABLE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Bytes of one value; a longer one is cut at a whole character (a unit's description, a
 * package's name: all far shorter). */
#define INV_CELL_MAX 1024
/* Rows of one table: deb_packages on a large server has ~5,000; a collector that finds more
 * keeps the first INV_ROWS_MAX and says it stopped short. */
#define INV_ROWS_MAX 20000
/* Columns of one table (osquery's widest here, interface_details, has 20). */
#define INV_COLS_MAX 32
#define INV_ERROR_MAX 256

typedef struct {
  const char *name;         /* osquery's table name, static */
  const char *const *cols;  /* osquery's column names, static */
  size_t ncols;
  size_t nrows, cap;
  char **cells;             /* nrows * ncols, row-major; each valid UTF-8, never NULL */
  char error[INV_ERROR_MAX]; /* why it failed or stopped short; "" if it did not */
  uint32_t pem_open;        /* columns whose last cell left a private key block open */
  const char **own_cols;    /* cols after inv_table_keep, owned */
} inv_table_t;

/* TT_EINVAL if ncols is 0 or over INV_COLS_MAX. */
int inv_table_init(inv_table_t *t, const char *name, const char *const *cols, size_t ncols);
void inv_table_free(inv_table_t *t);
/* Add a row of ncols values (NULL is ""): copied, made valid UTF-8, secrets redacted
 * (redact.h: every table of the inventory and of diagnostics goes through here, so no
 * collector can forget it), cut at INV_CELL_MAX.
 * TT_EFULL past INV_ROWS_MAX (the table says so in error), TT_ENOMEM. */
int inv_table_add(inv_table_t *t, const char *const *vals);
/* Say why the table is missing or short (the first reason is kept, redacted). printf-like. */
void inv_table_fail(inv_table_t *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Sort rows (bytewise, column by column) and drop exact duplicates: the canonical order. */
void inv_table_sort(inv_table_t *t);
/* {"columns":[...],"rows":[[...],...]} (+ "error":"..." when set), rows in canonical
 * order (sorts t). NULL on ENOMEM. */
json_t *inv_table_json(inv_table_t *t);
/* sha256 of the canonical JSON (sorts t): equal tables, equal hashes. */
int inv_table_hash(inv_table_t *t, uint8_t out[32]);
/* Keep only the columns for which keep(table, column) is true (the inventory drops what
 * changes by the minute: free memory, byte counters). TT_ENOMEM leaves t as it was. */
int inv_table_keep(inv_table_t *t, bool (*keep)(const char *table, const char *col));
/* A cell. */
static inline const char *inv_cell(const inv_table_t *t, size_t row, size_t col) {
  return t->cells[row * t->ncols + col];
}

#endif
