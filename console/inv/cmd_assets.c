/* tether inventory import FILE [--match K] [--dry-run] [--format csv|json] [--json]: the
 * admins' asset records (Snipe-IT's columns), parsed here and sent as rows in parts; the
 * broker checks them again and answers with the match report. tether inventory export
 * [--format csv|json]: the records joined with the devices' facts, a page at a time. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include "console.h"
#include "inv/csv.h"
#include "inv/report.h"
#include "tt/msg.h"
#include "tt/utf8.h"

/* Lines of each list the readable report shows; --json has all the broker sent. */
#define REPORT_SHOWN 50
#define CELL_SHOWN (TT_ASSET_CELL_MAX * 4 + 1)
/* Export pages a broker may send before the console calls it a loop. */
#define EXPORT_PAGES_MAX (TT_ASSET_ROWS_MAX * 4)

typedef struct {
  /* import: the file as a table */
  char *cols[TT_ASSET_COLUMNS_MAX];
  size_t ncols;
  char *arena;          /* every cell, NUL-terminated */
  size_t arena_len, arena_cap;
  size_t *offs;         /* rows * ncols */
  uint32_t *lines;
  size_t nrows, sent;
  uint64_t bytes;       /* cell bytes */
  uint64_t import;      /* the broker's id for it */
  bool csv;
  /* export */
  FILE *out;
  char *buf;
  size_t buflen;
  ProtobufCBinaryData *ecols;
  size_t necols;
  char after[TT_ASSET_HEADER_MAX + 8];
  size_t pages, nout;
  bool json;
} assets_state_t;

static assets_state_t g_as;

static void assets_discard(void) {
  for (size_t i = 0; i < g_as.ncols; i++) free(g_as.cols[i]);
  free(g_as.arena);
  free(g_as.offs);
  free(g_as.lines);
  if (g_as.out) fclose(g_as.out);
  free(g_as.buf);
  for (size_t i = 0; i < g_as.necols; i++) free(g_as.ecols[i].data);
  free(g_as.ecols);
  memset(&g_as, 0, sizeof g_as);
}

/* ---- reading the file ---------------------------------------------------------------------- */

static int read_file(const char *path, char **data, size_t *len) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return console_usage_error("cannot open %s: %s", path, strerror(errno)) ? TT_EINVAL : 0;
  struct stat st;
  if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
    close(fd);
    console_usage_error("%s is not a file", path);
    return TT_EINVAL;
  }
  /* Checked before anything is read or allocated. */
  if ((uint64_t)st.st_size > TT_ASSET_FILE_MAX) {
    close(fd);
    console_usage_error("%s is %lld bytes; an import is at most %u MiB: split the file", path, (long long)st.st_size,
                        TT_ASSET_FILE_MAX >> 20);
    return TT_ETOOBIG;
  }
  size_t n = (size_t)st.st_size, got = 0;
  char *buf = malloc(n + 1);
  if (!buf) {
    close(fd);
    return TT_ENOMEM;
  }
  while (got < n) {
    ssize_t k = read(fd, buf + got, n - got);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) break;
    got += (size_t)k;
  }
  close(fd);
  buf[got] = '\0';
  *data = buf;
  *len = got;
  return 0;
}

typedef struct {
  size_t records, width;
  uint64_t bytes;
  bool fill;
} pass_t;

static int add_cell(const char *s, size_t row, size_t col) {
  size_t n = strlen(s);
  g_as.offs[row * g_as.ncols + col] = g_as.arena_len;
  memcpy(g_as.arena + g_as.arena_len, s, n + 1);
  g_as.arena_len += n + 1;
  return 0;
}

static int table_alloc(size_t rows, size_t width, uint64_t bytes) {
  g_as.arena_cap = (size_t)bytes + rows * width + 1;
  g_as.arena = malloc(g_as.arena_cap);
  g_as.offs = calloc(rows * width + 1, sizeof *g_as.offs);
  g_as.lines = calloc(rows + 1, sizeof *g_as.lines);
  return g_as.arena && g_as.offs && g_as.lines ? 0 : TT_ENOMEM;
}

/* Pass one counts (nothing kept: the row limit is met before any row is stored); pass two
 * fills a table allocated to the size pass one found. */
static int csv_cb(void *ctx, uint32_t line, char **cells, size_t n) {
  pass_t *p = ctx;
  if (p->records++ == 0) {
    p->width = n;
    if (!p->fill) return 0;
    for (size_t i = 0; i < n; i++)
      if (!(g_as.cols[g_as.ncols++] = strdup(cells[i]))) return TT_ENOMEM;
    return 0;
  }
  if (!p->fill) {
    for (size_t i = 0; i < n; i++) p->bytes += strlen(cells[i]);
    return 0;
  }
  size_t r = g_as.nrows++;
  g_as.lines[r] = line;
  for (size_t i = 0; i < n; i++) {
    console_csv_unneutralise(cells[i]); /* what our export prefixed comes back as it was */
    add_cell(cells[i], r, i);
  }
  return 0;
}

static int load_csv(const char *path, const char *data, size_t len) {
  csv_opts_t o = {.max_records = TT_ASSET_ROWS_MAX, .max_fields = TT_ASSET_COLUMNS_MAX, .max_cell = TT_ASSET_CELL_MAX};
  pass_t p = {0};
  int rc = console_csv_parse(data, len, &o, csv_cb, &p);
  if (rc == 0) {
    if ((rc = table_alloc(p.records - 1, p.width, p.bytes))) return rc;
    g_as.bytes = p.bytes;
    pass_t q = {.fill = true};
    rc = console_csv_parse(data, len, &o, csv_cb, &q);
  }
  if (rc && o.err[0]) console_usage_error("%s: %s", path, o.err);
  else if (rc) console_usage_error("%s: %s", path, tt_strerror(rc));
  return rc;
}

/* JSON: an array of objects, each with the same keys (an export's form); strings, whole
 * numbers or null (empty). */
static int load_json(const char *path, const char *data, size_t len) {
  json_error_t e;
  json_t *doc = json_loadb(data, len, JSON_REJECT_DUPLICATES, &e);
  int rc = TT_EINVAL;
  if (!doc) {
    console_usage_error("%s: line %d: %s", path, e.line, e.text);
    return rc;
  }
  if (!json_is_array(doc)) {
    console_usage_error("%s: not a JSON array of objects", path);
    goto out;
  }
  size_t n = json_array_size(doc);
  if (n > TT_ASSET_ROWS_MAX) {
    console_usage_error("%s: more than %u rows: split the file", path, TT_ASSET_ROWS_MAX);
    rc = TT_ETOOBIG;
    goto out;
  }
  size_t i;
  json_t *o, *v;
  const char *k;
  uint64_t bytes = 0;
  char num[32];
  json_array_foreach(doc, i, o) {
    if (!json_is_object(o)) {
      console_usage_error("%s: row %zu is not an object", path, i + 1);
      goto out;
    }
    json_object_foreach(o, k, v) {
      size_t c = 0;
      while (c < g_as.ncols && strcmp(g_as.cols[c], k) != 0) c++;
      if (c == g_as.ncols) {
        if (i > 0 || g_as.ncols >= TT_ASSET_COLUMNS_MAX) {
          console_usage_error("%s: row %zu: '%.64s' is not a key of the first row (or past %u columns)", path, i + 1,
                              k, TT_ASSET_COLUMNS_MAX);
          goto out;
        }
        if (!(g_as.cols[g_as.ncols++] = strdup(k))) {
          rc = TT_ENOMEM;
          goto out;
        }
      }
      if (json_is_string(v)) bytes += json_string_length(v);
      else if (json_is_integer(v)) bytes += (size_t)snprintf(num, sizeof num, "%lld", (long long)json_integer_value(v));
      else if (!json_is_null(v)) {
        console_usage_error("%s: row %zu: '%.64s' is not text", path, i + 1, k);
        goto out;
      }
    }
    if (json_object_size(o) != g_as.ncols) {
      console_usage_error("%s: row %zu does not have every key of the first row", path, i + 1);
      goto out;
    }
  }
  if (g_as.ncols == 0) {
    console_usage_error("%s: no rows", path);
    goto out;
  }
  if ((rc = table_alloc(n, g_as.ncols, bytes))) goto out;
  g_as.bytes = bytes;
  json_array_foreach(doc, i, o) {
    g_as.lines[i] = (uint32_t)i + 1;
    for (size_t c = 0; c < g_as.ncols; c++) {
      v = json_object_get(o, g_as.cols[c]);
      const char *s = "";
      if (json_is_string(v)) {
        s = json_string_value(v);
        if (strlen(s) != json_string_length(v)) {
          console_usage_error("%s: row %zu: '%.64s' holds a NUL", path, i + 1, g_as.cols[c]);
          rc = TT_EINVAL;
          goto out;
        }
      } else if (json_is_integer(v)) {
        snprintf(num, sizeof num, "%lld", (long long)json_integer_value(v));
        s = num;
      }
      add_cell(s, i, c);
    }
  }
  g_as.nrows = n;
  rc = 0;
out:
  json_decref(doc);
  return rc;
}

static bool ends_with(const char *s, const char *tail) {
  size_t a = strlen(s), b = strlen(tail);
  return a >= b && strcasecmp(s + a - b, tail) == 0;
}

static int import_check(console_t *c) {
  const char *fmt = c->cfg.asset_format;
  if (fmt[0] && strcmp(fmt, "csv") != 0 && strcmp(fmt, "json") != 0) return console_usage_error("--format: csv or json");
  const char *m = c->cfg.asset_match;
  if (strcmp(m, "serial") && strcmp(m, "hostname") && strcmp(m, "mac") && strcmp(m, "asset_tag"))
    return console_usage_error("--match: serial, hostname, mac or asset_tag");
  atexit(assets_discard);
  bool json = strcmp(fmt, "json") == 0 || (!fmt[0] && ends_with(c->arg[0], ".json"));
  char *data = NULL;
  size_t len = 0;
  if (read_file(c->arg[0], &data, &len)) return 2;
  int rc = json ? load_json(c->arg[0], data, len) : load_csv(c->arg[0], data, len);
  free(data);
  if (rc) return 2;
  g_as.csv = !json;
  return 0;
}

static int send_part(console_t *c) {
  Tether__AssetImportRequest q = TETHER__ASSET_IMPORT_REQUEST__INIT;
  ProtobufCBinaryData cols[TT_ASSET_COLUMNS_MAX];
  if (g_as.sent == 0 && g_as.import == 0) {
    for (size_t k = 0; k < g_as.ncols; k++) cols[k] = tt_text(g_as.cols[k]);
    q.columns = cols;
    q.n_columns = g_as.ncols;
    q.rows_total = (uint32_t)g_as.nrows;
    q.bytes_total = g_as.bytes;
    q.match = tt_text(c->cfg.asset_match);
    q.dry_run = c->args.switches & CONSOLE_SW_DRY_RUN;
    const char *base = strrchr(c->arg[0], '/');
    q.file = tt_text(base ? base + 1 : c->arg[0]);
  }
  q.import = g_as.import;
  /* Rows up to TT_ASSET_PART_ROWS and TT_ASSET_PART_BYTES of cells (always at least one). */
  size_t first = g_as.sent, n = 0, bytes = 0;
  while (first + n < g_as.nrows && n < TT_ASSET_PART_ROWS) {
    size_t rb = 0;
    for (size_t k = 0; k < g_as.ncols; k++) rb += strlen(g_as.arena + g_as.offs[(first + n) * g_as.ncols + k]);
    if (n > 0 && bytes + rb > TT_ASSET_PART_BYTES) break;
    bytes += rb;
    n++;
  }
  Tether__AssetRow *rows = calloc(n ? n : 1, sizeof *rows);
  Tether__AssetRow **rowp = calloc(n ? n : 1, sizeof *rowp);
  ProtobufCBinaryData *cells = calloc(n * g_as.ncols + 1, sizeof *cells);
  int rc = TT_ENOMEM;
  if (rows && rowp && cells) {
    for (size_t i = 0; i < n; i++) {
      tether__asset_row__init(&rows[i]);
      rows[i].line = g_as.lines[first + i];
      for (size_t k = 0; k < g_as.ncols; k++) cells[i * g_as.ncols + k] = tt_text(g_as.arena + g_as.offs[(first + i) * g_as.ncols + k]);
      rows[i].cells = cells + i * g_as.ncols;
      rows[i].n_cells = g_as.ncols;
      rowp[i] = &rows[i];
    }
    q.rows = rowp;
    q.n_rows = n;
    Tether__Request r = TETHER__REQUEST__INIT;
    r.body_case = TETHER__REQUEST__BODY_ASSET_IMPORT;
    r.asset_import = &q;
    rc = console_request(c, &r, TETHER__RESPONSE__BODY_ASSET_IMPORT);
    g_as.sent += n;
  }
  free(rows);
  free(rowp);
  free(cells);
  return rc;
}

static int import_start(console_t *c) { return send_part(c); }

/* ---- the report ---------------------------------------------------------------------------- */

static const char *jstr(json_t *o, const char *k) {
  const char *s = json_string_value(json_object_get(o, k));
  return s ? s : "";
}

static size_t jnum(json_t *o, const char *k) {
  json_int_t v = json_integer_value(json_object_get(o, k));
  return v > 0 ? (size_t)v : 0;
}

/* Text from the broker for a terminal: escaped as console_text does. */
static void shown(char *dst, size_t cap, const char *s) { console_text(dst, cap, tt_text(s)); }

static void more(json_t *list, size_t total) {
  size_t n = json_array_size(list);
  if (total > n || n > REPORT_SHOWN)
    printf("  ... and %zu more (--json for the report the broker sent)\n", total - (n < REPORT_SHOWN ? n : REPORT_SHOWN));
}

static void print_report(json_t *r) {
  static char a[CELL_SHOWN], b[CELL_SHOWN], t[CELL_SHOWN];
  bool dry = json_is_true(json_object_get(r, "dry_run"));
  size_t i;
  json_t *e;
  printf("%s\n", dry ? "dry run: nothing was changed (run again without --dry-run to import)" : "imported");
  printf("rows: %zu  new: %zu  changed: %zu  unchanged: %zu  skipped (no asset tag, nothing else): %zu\n",
         jnum(r, "rows"), jnum(r, "new"), jnum(r, "changed"), jnum(r, "unchanged"), jnum(r, "skipped"));
  printf("matched to a device by %s: %zu  no device yet: %zu  conflicts: %zu rows, %zu devices\n", jstr(r, "match"),
         jnum(r, "matched"), jnum(r, "no_device"), jnum(r, "row_conflicts"), jnum(r, "device_conflicts"));
  printf("devices with no record: %zu\n", jnum(r, "devices_without_record"));
  json_t *ch = json_object_get(r, "changes");
  if (json_array_size(ch)) printf("\nchanges:\n");
  json_array_foreach(ch, i, e) {
    if (i >= REPORT_SHOWN) break;
    shown(t, sizeof t, jstr(e, "tag"));
    const char *dev = json_string_value(json_object_get(e, "device"));
    shown(a, sizeof a, dev ? dev : "no device");
    printf("  %s (line %zu) -> %s%s\n", t, jnum(e, "line"), a, json_is_true(json_object_get(e, "new")) ? ": new" : "");
    const char *k;
    json_t *pair;
    json_object_foreach(json_object_get(e, "fields"), k, pair) {
      shown(t, sizeof t, k);
      shown(a, sizeof a, json_string_value(json_array_get(pair, 0)) ? json_string_value(json_array_get(pair, 0)) : "");
      shown(b, sizeof b, json_string_value(json_array_get(pair, 1)) ? json_string_value(json_array_get(pair, 1)) : "");
      printf("      %s: \"%s\" -> \"%s\"\n", t, a, b);
    }
  }
  more(ch, jnum(r, "new") + jnum(r, "changed"));
  json_t *um = json_object_get(r, "unmatched");
  if (json_array_size(um)) printf("\nno device yet (kept; joined when a device reports that key):\n");
  json_array_foreach(um, i, e) {
    if (i >= REPORT_SHOWN) break;
    shown(t, sizeof t, jstr(e, "tag"));
    shown(a, sizeof a, jstr(e, "key"));
    printf("  %s (line %zu): %s\n", t, jnum(e, "line"), a);
  }
  more(um, jnum(r, "no_device"));
  json_t *cr = json_object_get(r, "conflicting_rows"), *cd = json_object_get(r, "conflicting_devices");
  if (json_array_size(cr) || json_array_size(cd)) printf("\nconflicts:\n");
  json_array_foreach(cr, i, e) {
    if (i >= REPORT_SHOWN) break;
    shown(t, sizeof t, jstr(e, "tag"));
    printf("  %s (line %zu) matches more than one device, so none:", t, jnum(e, "line"));
    size_t k;
    json_t *d;
    json_array_foreach(json_object_get(e, "devices"), k, d) {
      shown(a, sizeof a, json_string_value(d) ? json_string_value(d) : "");
      printf(" %s", a);
    }
    putchar('\n');
  }
  more(cr, jnum(r, "row_conflicts"));
  json_array_foreach(cd, i, e) {
    if (i >= REPORT_SHOWN) break;
    shown(a, sizeof a, jstr(e, "device"));
    printf("  device %s has more than one record:", a);
    size_t k;
    json_t *d;
    json_array_foreach(json_object_get(e, "tags"), k, d) {
      shown(t, sizeof t, json_string_value(d) ? json_string_value(d) : "");
      printf(" %s", t);
    }
    putchar('\n');
  }
  more(cd, jnum(r, "device_conflicts"));
  json_t *nr = json_object_get(r, "without_record");
  if (json_array_size(nr)) printf("\ndevices with no record:\n");
  json_array_foreach(nr, i, e) {
    if (i >= REPORT_SHOWN) break;
    shown(a, sizeof a, json_string_value(e) ? json_string_value(e) : "");
    printf("  %s\n", a);
  }
  more(nr, jnum(r, "devices_without_record"));
}

static int import_response(console_t *c, const Tether__Response *r) {
  const Tether__AssetImportResponse *a = r->asset_import;
  if (!a) return TT_EPROTO;
  if (!a->complete) {
    if (!a->import || (g_as.import && a->import != g_as.import) || g_as.sent >= g_as.nrows) return TT_EPROTO;
    g_as.import = a->import;
    return send_part(c);
  }
  json_t *rep = json_loadb((const char *)a->report.data, a->report.len, JSON_REJECT_DUPLICATES, NULL);
  if (!json_is_object(rep)) {
    json_decref(rep);
    console_fail(c, "the broker's report is not readable");
    return 0;
  }
  int rc = 0;
  if (c->json) rc = console_report_json(stdout, rep);
  else print_report(rep);
  json_decref(rep);
  fflush(stdout);
  if (!rc) console_finish(c, 0);
  return rc;
}

const console_cmd_t console_cmd_inventory_import = {
    .name = "inventory",
    .sub = "import",
    .args = "FILE [--match serial|hostname|mac|asset_tag] [--dry-run] [--format csv|json] [--json]",
    .help = "admins: push asset records (Snipe-IT's CSV columns, or JSON) and match them to devices",
    .min_pos = 1,
    .max_pos = 1,
    .switches = CONSOLE_SW_JSON | CONSOLE_SW_DRY_RUN,
    .check = import_check,
    .start = import_start,
    .on_response = import_response,
};

/* ---- export -------------------------------------------------------------------------------- */

static int export_check(console_t *c) {
  const char *fmt = c->cfg.asset_format;
  if (fmt[0] && strcmp(fmt, "csv") != 0 && strcmp(fmt, "json") != 0) return console_usage_error("--format: csv or json");
  g_as.json = c->json || strcmp(fmt, "json") == 0;
  return 0;
}

static int export_get(console_t *c) {
  Tether__AssetExportRequest q = TETHER__ASSET_EXPORT_REQUEST__INIT;
  q.after = tt_text(g_as.after);
  Tether__Request r = TETHER__REQUEST__INIT;
  r.body_case = TETHER__REQUEST__BODY_ASSET_EXPORT;
  r.asset_export = &q;
  return console_request(c, &r, TETHER__RESPONSE__BODY_ASSET_EXPORT);
}

static int export_start(console_t *c) {
  atexit(assets_discard);
  /* Collected first and written whole: a failure on a later page leaves no half a file. */
  g_as.out = open_memstream(&g_as.buf, &g_as.buflen);
  if (!g_as.out) return TT_ENOMEM;
  return export_get(c);
}

static bool same(ProtobufCBinaryData a, ProtobufCBinaryData b) {
  return a.len == b.len && (a.len == 0 || memcmp(a.data, b.data, a.len) == 0);
}

/* A cell from the broker as valid UTF-8 text (anything else replaced), for the CSV writer. */
static void csv_cell(FILE *f, ProtobufCBinaryData t) {
  static char tmp[TT_ASSET_CELL_MAX * 3 + 4];
  tt_utf8_sanitize(tmp, sizeof tmp, t.data, t.len > TT_ASSET_CELL_MAX ? TT_ASSET_CELL_MAX : t.len);
  console_csv_write_cell(f, tmp);
}

static int export_response(console_t *c, const Tether__Response *r) {
  const Tether__AssetExportPage *p = r->asset_export;
  if (!p || p->n_columns == 0 || p->n_columns > TT_ASSET_COLUMNS_MAX || p->n_rows > TT_ASSET_PART_ROWS ||
      ++g_as.pages > EXPORT_PAGES_MAX)
    return TT_EPROTO;
  if (g_as.pages == 1) {
    g_as.ecols = calloc(p->n_columns, sizeof *g_as.ecols);
    if (!g_as.ecols) return TT_ENOMEM;
    for (size_t k = 0; k < p->n_columns; k++) {
      ProtobufCBinaryData t = p->columns[k];
      if (t.len > TT_ASSET_HEADER_MAX || !(g_as.ecols[k].data = malloc(t.len + 1))) return TT_EPROTO;
      if (t.len) memcpy(g_as.ecols[k].data, t.data, t.len);
      g_as.ecols[k].len = t.len;
      g_as.necols++;
    }
    if (g_as.json) fputc('[', g_as.out);
    else {
      for (size_t k = 0; k < g_as.necols; k++) {
        if (k) fputc(',', g_as.out);
        csv_cell(g_as.out, g_as.ecols[k]);
      }
      fputs("\r\n", g_as.out);
    }
  } else {
    bool ok = p->n_columns == g_as.necols;
    for (size_t k = 0; ok && k < g_as.necols; k++) ok = same(p->columns[k], g_as.ecols[k]);
    if (!ok) {
      console_fail(c, "the records changed during the export (an import ran): export again");
      return 0;
    }
  }
  for (size_t i = 0; i < p->n_rows; i++) {
    const Tether__AssetRow *row = p->rows[i];
    if (row->n_cells != g_as.necols) return TT_EPROTO;
    if (g_as.json) {
      fputs(g_as.nout++ ? ",\n{" : "\n{", g_as.out);
      for (size_t k = 0; k < g_as.necols; k++) {
        if (k) fputc(',', g_as.out);
        console_json_bytes(g_as.out, g_as.ecols[k]);
        fputc(':', g_as.out);
        console_json_bytes(g_as.out, row->cells[k]);
      }
      fputc('}', g_as.out);
    } else {
      for (size_t k = 0; k < g_as.necols; k++) {
        if (k) fputc(',', g_as.out);
        csv_cell(g_as.out, row->cells[k]);
      }
      fputs("\r\n", g_as.out);
      g_as.nout++;
    }
  }
  if (p->next.len) {
    if (p->next.len >= sizeof g_as.after || (strlen(g_as.after) == p->next.len && memcmp(g_as.after, p->next.data, p->next.len) == 0))
      return TT_EPROTO;
    memcpy(g_as.after, p->next.data, p->next.len);
    g_as.after[p->next.len] = '\0';
    return export_get(c);
  }
  if (g_as.json) fputs(g_as.nout ? "\n]\n" : "]\n", g_as.out);
  if (fflush(g_as.out)) return TT_ENOMEM;
  if (fwrite(g_as.buf, 1, g_as.buflen, stdout) != g_as.buflen || fflush(stdout)) {
    console_fail(c, "cannot write the export: %s", strerror(errno));
    return 0;
  }
  console_finish(c, 0);
  return 0;
}

const console_cmd_t console_cmd_inventory_export = {
    .name = "inventory",
    .sub = "export",
    .args = "[--format csv|json] > FILE",
    .help = "admins: the asset records joined with what each device reports (CSV imports again)",
    .min_pos = 0,
    .max_pos = 0,
    .switches = CONSOLE_SW_JSON,
    .check = export_check,
    .start = export_start,
    .on_response = export_response,
};
