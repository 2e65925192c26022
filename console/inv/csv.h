/* CSV as admins' spreadsheets write it (RFC 4180), read with a line number for every refusal,
 * and written so that a spreadsheet opening the export runs no formula. */
#ifndef CONSOLE_INV_CSV_H
#define CONSOLE_INV_CSV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* One record: its cells (NUL-terminated, valid during the call) and the line it starts on.
 * The first record is the header. Return 0 to go on, or an error (the parse stops with it). */
typedef int (*csv_record_cb)(void *ctx, uint32_t line, char **cells, size_t n);

typedef struct {
  size_t max_records;   /* data records (after the header) taken; the one past is refused
                           before it reaches cb */
  size_t max_fields;    /* fields a record may have */
  size_t max_cell;      /* bytes of one cell */
  char err[256];        /* why it was refused: "line 7: ..." */
} csv_opts_t;

/* Parse data (len bytes, not NUL-terminated): RFC 4180 quoting ("" in a quoted field, commas
 * and line breaks inside quotes), lines ending in CRLF, LF or CR, mixed; a UTF-8 byte order
 * mark at the start is skipped. Refused with o->err set (TT_EINVAL, or TT_ETOOBIG for a limit):
 * bytes that are not UTF-8 or a NUL (with the line), a quote inside an unquoted field or
 * text after a closing one, a quoted field never closed, a header with an empty or duplicate
 * name (case-insensitive), a record wider or narrower than the header, a cell, a record or
 * a file past the limits. Blank lines are skipped. Returns what cb returned if it stopped. */
int console_csv_parse(const char *data, size_t len, csv_opts_t *o, csv_record_cb cb, void *ctx);

/* Characters that make a spreadsheet read a cell as a formula (OWASP's list). */
bool console_csv_formula(const char *cell);
/* One cell for a CSV file: a cell a spreadsheet would run as a formula gets a leading single
 * quote (OWASP's advice); then quoted if it holds a comma, a quote, a line break or starts
 * or ends with a space. */
void console_csv_write_cell(FILE *f, const char *cell);
/* The inverse of that quote, for a file this console exported: "'=x" -> "=x" (in place). */
void console_csv_unneutralise(char *cell);

#endif
