/* CSV reading and writing for asset records (csv.h): the one place an admin's file is taken
 * apart, so every hostile shape of one is refused here with its line number. */
#include "inv/csv.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "tt/err.h"
#include "tt/utf8.h"

#define ERR(o, ...) (snprintf((o)->err, sizeof (o)->err, __VA_ARGS__), TT_EINVAL)
#define ERR_BIG(o, ...) (snprintf((o)->err, sizeof (o)->err, __VA_ARGS__), TT_ETOOBIG)

/* The whole file first: UTF-8 and no NUL, so a refusal names the line before any record is
 * taken (a file with a bad byte on its last line imports nothing). */
static int check_text(const uint8_t *p, size_t n, csv_opts_t *o) {
  uint32_t line = 1;
  for (size_t i = 0; i < n;) {
    if (p[i] == '\n' || (p[i] == '\r' && (i + 1 >= n || p[i + 1] != '\n'))) line++;
    if (p[i] == 0) return ERR(o, "line %u: a NUL byte: this is not a text file", line);
    if (p[i] < 0x80) {
      i++;
      continue;
    }
    uint32_t cp;
    size_t k = tt_utf8_decode(p + i, n - i, &cp);
    if (k == 0)
      return ERR(o, "line %u: byte 0x%02X is not UTF-8: save the file as UTF-8 (\"CSV UTF-8\" in Excel)", line, p[i]);
    i += k;
  }
  return 0;
}

typedef struct {
  char *buf;          /* cells of the record being read, each NUL-terminated */
  size_t len, cap;
  size_t *off;        /* cell i starts at buf + off[i] */
  char **cells;
  size_t n;
} rec_t;

static int cell_end(rec_t *r, csv_opts_t *o, uint32_t line, size_t start) {
  if (r->len - start > o->max_cell) return ERR_BIG(o, "line %u: a field is longer than %zu bytes", line, o->max_cell);
  r->buf[r->len++] = '\0';
  return 0;
}

static int cell_start(rec_t *r, csv_opts_t *o, uint32_t line) {
  if (r->n >= o->max_fields + 1) return ERR_BIG(o, "line %u: more than %zu fields", line, o->max_fields);
  r->off[r->n++] = r->len;
  return 0;
}

static int put(rec_t *r, csv_opts_t *o, uint32_t line, size_t start, char c) {
  /* A cell stops growing at its limit (+1 to tell it was over), so one huge field costs
   * max_cell bytes, not the file's size. */
  if (r->len - start > o->max_cell) return ERR_BIG(o, "line %u: a field is longer than %zu bytes", line, o->max_cell);
  r->buf[r->len++] = c;
  return 0;
}

/* Header names compared as people read them: trimmed, case-insensitive. */
static void trim(char *s) {
  size_t n = strlen(s), a = 0;
  while (a < n && (s[a] == ' ' || s[a] == '\t')) a++;
  while (n > a && (s[n - 1] == ' ' || s[n - 1] == '\t')) n--;
  memmove(s, s + a, n - a);
  s[n - a] = '\0';
}

static int header_check(char **cells, size_t n, csv_opts_t *o) {
  for (size_t i = 0; i < n; i++) {
    trim(cells[i]);
    if (!cells[i][0]) return ERR(o, "line 1: column %zu of the header has no name", i + 1);
    for (size_t k = 0; k < i; k++)
      if (strcasecmp(cells[k], cells[i]) == 0)
        return ERR(o, "line 1: the column '%.64s' is named twice (columns %zu and %zu)", cells[i], k + 1, i + 1);
  }
  return 0;
}

int console_csv_parse(const char *data, size_t len, csv_opts_t *o, csv_record_cb cb, void *ctx) {
  o->err[0] = '\0';
  const uint8_t *p = (const uint8_t *)data;
  size_t i = 0;
  if (len >= 3 && p[0] == 0xEF && p[1] == 0xBB && p[2] == 0xBF) i = 3; /* Excel's "CSV UTF-8" */
  int rc = check_text(p + i, len - i, o);
  if (rc) return rc;
  rec_t r = {0};
  /* Every cell of a record at its limit, plus a NUL each: the most one record can take. */
  r.cap = (o->max_fields + 1) * (o->max_cell + 2) + 1;
  r.buf = malloc(r.cap);
  r.off = calloc(o->max_fields + 2, sizeof *r.off);
  r.cells = calloc(o->max_fields + 2, sizeof *r.cells);
  if (!r.buf || !r.off || !r.cells) {
    rc = TT_ENOMEM;
    goto out;
  }
  uint32_t line = 1, start_line = 1;
  size_t width = 0, records = 0;
  while (i < len && rc == 0) {
    /* One record. */
    r.len = r.n = 0;
    start_line = line;
    bool blank = true;
    for (;;) {
      if ((rc = cell_start(&r, o, line))) break;
      size_t cstart = r.len;
      if (i < len && p[i] == '"') {
        blank = false;
        uint32_t qline = line;
        i++;
        for (;;) {
          if (i >= len) {
            rc = ERR(o, "line %u: a quoted field is not closed", qline);
            break;
          }
          char c = (char)p[i++];
          if (c == '"') {
            if (i < len && p[i] == '"') {
              i++;
              rc = put(&r, o, line, cstart, '"');
            } else {
              break;
            }
          } else {
            if (c == '\n' || (c == '\r' && (i >= len || p[i] != '\n'))) line++;
            rc = put(&r, o, line, cstart, c);
          }
          if (rc) break;
        }
        if (rc) break;
        if (i < len && p[i] != ',' && p[i] != '\r' && p[i] != '\n') {
          rc = ERR(o, "line %u: text after a closing quote (a quote inside a field is written \"\")", line);
          break;
        }
      } else {
        while (i < len && p[i] != ',' && p[i] != '\r' && p[i] != '\n') {
          if (p[i] == '"') {
            rc = ERR(o, "line %u: a quote inside an unquoted field (quote the field, and write the quote \"\")", line);
            break;
          }
          blank = false;
          if ((rc = put(&r, o, line, cstart, (char)p[i++]))) break;
        }
        if (rc) break;
      }
      if ((rc = cell_end(&r, o, line, cstart))) break;
      if (i < len && p[i] == ',') {
        blank = false;
        i++;
        continue;
      }
      /* end of record: CRLF, LF, CR, or the end of the file */
      if (i < len && p[i] == '\r') {
        i++;
        if (i < len && p[i] == '\n') i++;
      } else if (i < len && p[i] == '\n') {
        i++;
      }
      line++;
      break;
    }
    if (rc) break;
    if (blank) continue;
    for (size_t k = 0; k < r.n; k++) r.cells[k] = r.buf + r.off[k];
    if (records == 0 && width == 0) {
      if (r.n > o->max_fields) {
        rc = ERR_BIG(o, "line 1: the header has more than %zu columns", o->max_fields);
        break;
      }
      if ((rc = header_check(r.cells, r.n, o))) break;
      width = r.n;
    } else {
      if (r.n != width) {
        rc = ERR(o, "line %u: %zu fields, the header has %zu", start_line, r.n, width);
        break;
      }
      if (records >= o->max_records) {
        rc = ERR_BIG(o, "more than %zu rows: split the file (line %u is past the limit)", o->max_records, start_line);
        break;
      }
      records++;
    }
    rc = cb(ctx, start_line, r.cells, r.n);
  }
  if (rc == 0 && width == 0) rc = ERR(o, "the file is empty: no header");
out:
  free(r.buf);
  free(r.off);
  free(r.cells);
  return rc;
}

bool console_csv_formula(const char *cell) {
  return cell[0] == '=' || cell[0] == '+' || cell[0] == '-' || cell[0] == '@' || cell[0] == '\t' || cell[0] == '\r';
}

void console_csv_write_cell(FILE *f, const char *cell) {
  bool formula = console_csv_formula(cell);
  size_t n = strlen(cell);
  bool quote = formula && cell[0] == '\r';
  for (size_t i = 0; i < n && !quote; i++) quote = cell[i] == ',' || cell[i] == '"' || cell[i] == '\r' || cell[i] == '\n';
  if (n && (cell[0] == ' ' || cell[n - 1] == ' ')) quote = true;
  if (quote) fputc('"', f);
  if (formula) fputc('\'', f);
  for (size_t i = 0; i < n; i++) {
    if (cell[i] == '"') fputc('"', f);
    fputc(cell[i], f);
  }
  if (quote) fputc('"', f);
}

void console_csv_unneutralise(char *cell) {
  if (cell[0] == '\'' && console_csv_formula(cell + 1)) memmove(cell, cell + 1, strlen(cell));
}
