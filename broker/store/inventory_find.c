/* Inventory find: an index of every device's current rows, kept by store_inv_put in the same
 * transaction, and the query over it (every device whose latest table has a matching row).
 *
 * Why this shape. A fleet of 100k devices with 2,000 packages each holds 200M (device, row)
 * pairs but only ~50k distinct rows: most devices run one image. A posting per pair costs
 * ~17 bytes (34 KB a device, more than its compressed inventory) and 2,000 B-tree inserts
 * per device's first push. Here each table's distinct rows are kept once (inv_rows), and a
 * device's table is a shared row set, its base (inv_bases, inverted in inv_base_rows), plus
 * the rows the device has beyond it (inv_plus, inverted) minus the ones it lacks (a blob in
 * inv_cur, checked per candidate). A device that differs from its base by 5% costs ~200
 * postings. A find matches the table's distinct rows, takes the devices of the bases and
 * plus postings that hold them, in device order, and drops those whose minus has the row.
 * A row is counted by the postings that hold it and deleted with the last, and a device's
 * tables take at most STORE_INV_DEVICE_INDEX_ROWS_MAX rows and _BYTES_MAX bytes: what one
 * device adds to the index is bounded however often it pushes fresh rows. */
#include "internal.h"
#include "tt/hex.h"
#include "tt/json.h"
#include "tt/utf8.h"

/* Bases per table. A new one is made when a device fits none (it then becomes the base);
 * a fleet of a few images needs a few; per-device unique tables fill them and the rest go
 * without (all plus), which is the plain posting list. */
#define INV_BASES_MAX 32
/* A table this small gains nothing from a base: its rows go to plus. */
#define INV_BASE_MIN_ROWS 16
/* A base fits a device when their difference is at most a quarter of the device's rows. */
#define INV_BASE_FIT(n) ((n) / 4)
/* Interned rows remembered by content: a fleet's deb_packages are ~50k rows (~10 MB with
 * their text); past three quarters of the slots the cache starts again. */
#define INV_CACHE_SLOTS (1u << 17)
/* Candidate devices read from each base or plus list per round of a find. */
#define INV_FIND_BATCH 256
/* Lists (bases and rows with matching rows) a find merges; past it, it reads every device's
 * plus and minus in device order instead (a round of so many lists costs a seek each, and
 * moves on by as little as one device). 256 lists of INV_FIND_BATCH: 64k candidates. */
#define INV_FIND_LISTS_MAX 256
/* A statement, a device or a row's text, in STORE_INV_FIND_WORK_MAX's units (a posting or an
 * id read is one). */
#define INV_WORK_STEP 8
/* Tables indexed per transaction when the store is opened after migration 7. */
#define INV_BACKFILL_BATCH 128
/* Columns of one table (the agent's widest has 20). */
#define INV_COLS_MAX 64
/* Per device and per row of a page, what the wire adds to their text (tags, lengths). */
#define INV_PAGE_DEV_OVERHEAD 16
#define INV_PAGE_REF_OVERHEAD 4

_Static_assert(STORE_INV_ROW_MAX == 16384, "inv_rows.row CHECK says 2..16384");

static const store_sql_t k_sql[] = {
  {ST_INVF_ROW_GET, "SELECT id FROM inv_rows WHERE tbl = ?1 AND row = ?2"},
  {ST_INVF_ROW_ADD, "INSERT INTO inv_rows(tbl, row) VALUES(?1, ?2)"},
  /* A row's postings (base and plus) are counted; the last one gone takes the row with it. */
  {ST_INVF_REF_ADD, "UPDATE inv_rows SET refs = refs + 1 WHERE id = ?1"},
  {ST_INVF_REF_DROP, "UPDATE inv_rows SET refs = refs - 1 WHERE id = ?1 AND refs > 0"},
  {ST_INVF_ROW_GONE, "DELETE FROM inv_rows WHERE id = ?1 AND refs = 0"},
  {ST_INVF_ROW_TEXT, "SELECT row FROM inv_rows WHERE id = ?1"},
  {ST_INVF_DEV_GET, "SELECT id, rows, bytes FROM inv_devs WHERE device = ?1"},
  {ST_INVF_DEV_ADD, "INSERT INTO inv_devs(device) VALUES(?1)"},
  {ST_INVF_DEV_USE, "UPDATE inv_devs SET rows = max(rows + ?2, 0), bytes = max(bytes + ?3, 0) WHERE id = ?1"},
  {ST_INVF_CUR_GET, "SELECT base, plus, minus, rows, bytes FROM inv_cur WHERE tbl = ?2 AND dev = ?1"},
  {ST_INVF_CUR_PUT, "INSERT OR REPLACE INTO inv_cur(tbl, dev, base, plus, minus, rows, bytes)"
      " VALUES(?2, ?1, ?3, ?4, ?5, ?6, ?7)"},
  {ST_INVF_CUR_DEL, "DELETE FROM inv_cur WHERE tbl = ?2 AND dev = ?1"},
  {ST_INVF_BASES, "SELECT id, users, rows FROM inv_bases WHERE tbl = ?1 ORDER BY id"},
  {ST_INVF_BASE_ADD, "INSERT INTO inv_bases(tbl, users, rows) VALUES(?1, 0, ?2)"},
  {ST_INVF_BASE_USERS, "UPDATE inv_bases SET users = ?2 WHERE id = ?1"},
  {ST_INVF_BASE_DEL, "DELETE FROM inv_bases WHERE id = ?1"},
  {ST_INVF_BROW_ADD, "INSERT INTO inv_base_rows(row, base) VALUES(?1, ?2)"},
  {ST_INVF_BROW_DEL, "DELETE FROM inv_base_rows WHERE row = ?1 AND base = ?2"},
  {ST_INVF_PLUS_ADD, "INSERT INTO inv_plus(row, dev) VALUES(?1, ?2)"},
  {ST_INVF_PLUS_DEL, "DELETE FROM inv_plus WHERE row = ?1 AND dev = ?2"},
  /* Repair only (a damaged inv_cur row no longer says which postings are the device's): a
   * seek per row of the table, which no healthy index ever pays. */
  {ST_INVF_PLUS_OF_DEV, "SELECT row FROM inv_plus WHERE dev = ?1 AND row IN (SELECT id FROM inv_rows WHERE tbl = ?2)"},
  /* The table's distinct rows whose text holds the needle (a condition as it must appear in
   * the canonical text); the conditions themselves are checked on the decoded values. The
   * UNIQUE(tbl, row) index covers it: no table pages are read. */
  {ST_INVF_MATCH, "SELECT id, row FROM inv_rows WHERE tbl = ?1 AND instr(row, ?2) > 0"},
  {ST_INVF_BASE_DEVS, "SELECT dev FROM inv_cur WHERE base = ?1 AND dev >= ?2 ORDER BY dev LIMIT ?3"},
  /* A row's plus postings are one range of the primary key. */
  {ST_INVF_PLUS_DEVS, "SELECT dev FROM inv_plus WHERE row = ?1 AND dev >= ?2 ORDER BY dev LIMIT ?3"},
  /* Every device's table in device order: a find that matches too many rows to merge their
   * lists reads each device's plus and minus instead. */
  {ST_INVF_CUR_SCAN, "SELECT dev, base, plus, minus FROM inv_cur WHERE tbl = ?1 AND dev >= ?2 ORDER BY dev"},
  {ST_INVF_DEV_NAME, "SELECT d.device, coalesce(v.hostname, '') FROM inv_devs d"
      " LEFT JOIN devices v ON v.id = d.device WHERE d.id = ?1"},
  {ST_INVF_TODO, "SELECT device, name FROM inv_find_todo LIMIT ?1"},
  {ST_INVF_TODO_DEL, "DELETE FROM inv_find_todo WHERE device = ?1 AND name = ?2"},
};

int store_prepare_inventory_find(broker_store_t *s) { return store_prepare(s, k_sql, sizeof k_sql / sizeof k_sql[0]); }

/* ---- a growing byte buffer ------------------------------------------------------------ */

typedef struct {
  char *p;
  size_t len, cap;
} sb_t;

static int sb_reserve(sb_t *b, size_t more) {
  if (more <= b->cap - b->len) return 0;
  size_t cap = b->cap ? b->cap : 256;
  while (cap - b->len < more) {
    if (cap > SIZE_MAX / 2) return TT_ENOMEM;
    cap *= 2;
  }
  char *p = realloc(b->p, cap);
  if (p == NULL) return TT_ENOMEM;
  b->p = p;
  b->cap = cap;
  return 0;
}

static int sb_put(sb_t *b, const void *p, size_t n) {
  int rc = sb_reserve(b, n);
  if (rc != 0) return rc;
  if (n > 0) memcpy(b->p + b->len, p, n);
  b->len += n;
  return 0;
}

static int sb_putc(sb_t *b, char c) { return sb_put(b, &c, 1); }

/* ---- JSON strings ------------------------------------------------------------------------
 * Bodies are the agent's bytes and rows are read back from the file: every string is
 * decoded strictly (no raw controls, no bad escapes, no lone surrogates, no NUL, valid
 * UTF-8) and written back one way only, so that the same row is the same text whoever
 * encoded it, and a value's canonical text appears in a row's text exactly where it does. */

static int hex4(const char *p, const char *end, uint32_t *out) {
  return end - p < 4 ? TT_EINVAL : tt_hex_u32(p, 4, out);
}

static int put_utf8(sb_t *b, uint32_t cp) {
  char u[4];
  size_t n;
  if (cp < 0x80) {
    u[0] = (char)cp;
    n = 1;
  } else if (cp < 0x800) {
    u[0] = (char)(0xC0 | (cp >> 6));
    u[1] = (char)(0x80 | (cp & 0x3F));
    n = 2;
  } else if (cp < 0x10000) {
    u[0] = (char)(0xE0 | (cp >> 12));
    u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    u[2] = (char)(0x80 | (cp & 0x3F));
    n = 3;
  } else {
    u[0] = (char)(0xF0 | (cp >> 18));
    u[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    u[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    u[3] = (char)(0x80 | (cp & 0x3F));
    n = 4;
  }
  return sb_put(b, u, n);
}

/* The string at *pp (its opening quote) decoded onto out (NULL: only checked); *pp moves
 * past its closing quote. */
static int js_decode(const char **pp, const char *end, sb_t *out) {
  const char *p = *pp;
  if (p >= end || *p != '"') return TT_EINVAL;
  p++;
  while (p < end) {
    unsigned char c = (unsigned char)*p;
    int rc = 0;
    if (c == '"') {
      *pp = p + 1;
      return 0;
    }
    if (c < 0x20) return TT_EINVAL;
    if (c == '\\') {
      if (end - p < 2) return TT_EINVAL;
      char e = p[1], ch = 0;
      p += 2;
      switch (e) {
        case '"': ch = '"'; break;
        case '\\': ch = '\\'; break;
        case '/': ch = '/'; break;
        case 'b': ch = '\b'; break;
        case 'f': ch = '\f'; break;
        case 'n': ch = '\n'; break;
        case 'r': ch = '\r'; break;
        case 't': ch = '\t'; break;
        case 'u': {
          uint32_t cp = 0, lo = 0;
          if (hex4(p, end, &cp) != 0) return TT_EINVAL;
          p += 4;
          if (cp >= 0xDC00 && cp <= 0xDFFF) return TT_EINVAL;
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (end - p < 6 || p[0] != '\\' || p[1] != 'u' || hex4(p + 2, end, &lo) != 0 || lo < 0xDC00 ||
                lo > 0xDFFF)
              return TT_EINVAL;
            p += 6;
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          }
          if (cp == 0) return TT_EINVAL; /* cells are C strings */
          if (out != NULL && (rc = put_utf8(out, cp)) != 0) return rc;
          continue;
        }
        default: return TT_EINVAL;
      }
      if (out != NULL && (rc = sb_putc(out, ch)) != 0) return rc;
      continue;
    }
    if (c < 0x80) { /* a run of plain ASCII at once: most of a table is */
      const char *q = p + 1;
      while (q < end && (unsigned char)*q >= 0x20 && (unsigned char)*q < 0x80 && *q != '"' && *q != '\\') q++;
      if (out != NULL && (rc = sb_put(out, p, (size_t)(q - p))) != 0) return rc;
      p = q;
      continue;
    }
    uint32_t cp = 0;
    size_t n = tt_utf8_decode((const uint8_t *)p, (size_t)(end - p), &cp);
    if (n == 0) return TT_EINVAL;
    if (out != NULL && (rc = sb_put(out, p, n)) != 0) return rc;
    p += n;
  }
  return TT_EINVAL;
}

/* The one way a string is written: quotes, backslashes and controls escaped, the rest as
 * it is (already valid UTF-8). Byte by byte, so escaping a value and escaping a cell agree on
 * every substring. */
static int js_encode(sb_t *b, const char *s, size_t n, bool quotes) {
  int rc = sb_reserve(b, n + 2);
  if (rc == 0 && quotes) rc = sb_putc(b, '"');
  for (size_t i = 0; i < n && rc == 0; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c >= 0x20 && c != '"' && c != '\\') { /* a run that needs no escape, at once */
      size_t k = i + 1;
      while (k < n && (unsigned char)s[k] >= 0x20 && s[k] != '"' && s[k] != '\\') k++;
      rc = sb_put(b, s + i, k - i);
      i = k - 1;
      continue;
    }
    /* Short forms, and DEL raw: the spelling every stored row already has. */
    char esc[TT_JSON_ESC_MAX];
    size_t en = tt_json_escape_byte(esc, c, TT_JSON_ESC_SHORT);
    rc = en ? sb_put(b, esc, en) : sb_putc(b, (char)c);
  }
  if (rc == 0 && quotes) rc = sb_putc(b, '"');
  return rc;
}

static const char *js_ws(const char *p, const char *end) {
  while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
  return p;
}

/* Step over a string without decoding it (its closing quote, past escapes): a row's strings
 * are checked when the row is first made canonical, and a row seen before is the same bytes. */
static const char *js_pass_string(const char *p, const char *end) {
  for (p++; p < end; p++) {
    if (*p == '"') return p + 1;
    if (*p == '\\') p++;
  }
  return NULL;
}

/* Step over a value made of strings and arrays (all a table holds), at most depth deep. */
static int js_skip(const char **pp, const char *end, int depth) {
  const char *p = js_ws(*pp, end);
  if (p < end && *p == '"') {
    p = js_pass_string(p, end);
    if (p == NULL) return TT_EINVAL;
    *pp = p;
    return 0;
  }
  if (p >= end || *p != '[' || depth <= 0) return TT_EINVAL;
  p = js_ws(p + 1, end);
  if (p < end && *p == ']') {
    *pp = p + 1;
    return 0;
  }
  for (;;) {
    int rc = js_skip(&p, end, depth - 1);
    if (rc != 0) return rc;
    p = js_ws(p, end);
    if (p < end && *p == ',') {
      p++;
      continue;
    }
    if (p < end && *p == ']') {
      *pp = p + 1;
      return 0;
    }
    return TT_EINVAL;
  }
}

static bool col_name_ok(const char *name, size_t len) {
  if (len < 1 || len >= STORE_INV_NAME_MAX) return false;
  for (size_t i = 0; i < len; i++) {
    char c = name[i];
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) return false;
  }
  return true;
}

/* ---- the shape of a pushed table, checked without building it ---------------------------- */

/* The array at p: its elements counted (and each checked by one); *pp past its ']'. */
typedef int (*js_elem_fn)(const char **pp, const char *end, void *ctx);
static int js_array(const char **pp, const char *end, js_elem_fn one, void *ctx, size_t *n) {
  const char *p = js_ws(*pp, end);
  *n = 0;
  if (p >= end || *p != '[') return TT_EINVAL;
  p = js_ws(p + 1, end);
  if (p < end && *p == ']') {
    *pp = p + 1;
    return 0;
  }
  for (;;) {
    int rc = one(&p, end, ctx);
    if (rc != 0) return rc;
    (*n)++;
    p = js_ws(p, end);
    if (p < end && *p == ',') {
      p = js_ws(p + 1, end);
      continue;
    }
    if (p < end && *p == ']') {
      *pp = p + 1;
      return 0;
    }
    return TT_EINVAL;
  }
}

static int js_check(const char **pp, const char *end, int depth);
static int check_one(const char **pp, const char *end, void *ctx) { return js_check(pp, end, *(const int *)ctx); }

/* A value that is a string, or an array of such values at most depth deep, strictly: every
 * string decoded and checked, commas only between elements. */
static int js_check(const char **pp, const char *end, int depth) {
  const char *p = js_ws(*pp, end);
  if (p < end && *p == '"') {
    int rc = js_decode(&p, end, NULL);
    *pp = p;
    return rc;
  }
  if (p >= end || *p != '[' || depth <= 0) return TT_EINVAL;
  int inner = depth - 1;
  size_t n = 0;
  *pp = p;
  return js_array(pp, end, check_one, &inner, &n);
}

static int col_one(const char **pp, const char *end, void *ctx) {
  sb_t *name = ctx;
  name->len = 0;
  int rc = js_decode(pp, end, name);
  return rc != 0 ? rc : col_name_ok(name->p, name->len) ? 0 : TT_EINVAL;
}

static int cell_one(const char **pp, const char *end, void *ctx) {
  (void)ctx;
  return *pp < end && **pp == '"' ? js_decode(pp, end, NULL) : TT_EINVAL;
}

typedef struct {
  size_t width; /* every row's; SIZE_MAX until the first */
} rows_ctx_t;

static int row_one(const char **pp, const char *end, void *ctx) {
  rows_ctx_t *r = ctx;
  size_t k = 0;
  int rc = js_array(pp, end, cell_one, NULL, &k);
  if (rc != 0) return rc;
  if (r->width == SIZE_MAX) r->width = k;
  return k == r->width ? 0 : TT_EINVAL;
}

int store_inv_table_check(const char *body, size_t blen) {
  const char *p = body, *end = body + blen;
  sb_t key = {0};
  size_t ncols = 0, nrows = 0;
  rows_ctx_t rows = {SIZE_MAX};
  bool cols_seen = false, rows_seen = false, error_seen = false;
  int rc = TT_EINVAL;
  p = js_ws(p, end);
  if (p >= end || *p != '{') goto out;
  p = js_ws(p + 1, end);
  for (;;) {
    key.len = 0;
    if (js_decode(&p, end, &key) != 0) goto out;
    p = js_ws(p, end);
    if (p >= end || *p != ':') goto out;
    p = js_ws(p + 1, end);
    if (key.len == 7 && memcmp(key.p, "columns", 7) == 0) {
      if (cols_seen || js_array(&p, end, col_one, &key, &ncols) != 0) goto out;
      cols_seen = true;
    } else if (key.len == 4 && memcmp(key.p, "rows", 4) == 0) {
      if (rows_seen || js_array(&p, end, row_one, &rows, &nrows) != 0) goto out;
      rows_seen = true;
    } else if (key.len == 5 && memcmp(key.p, "error", 5) == 0) {
      if (error_seen || p >= end || *p != '"' || js_decode(&p, end, NULL) != 0) goto out;
      error_seen = true;
    } else if (js_check(&p, end, 2) != 0) {
      goto out;
    }
    p = js_ws(p, end);
    if (p < end && *p == ',') {
      p = js_ws(p + 1, end);
      continue;
    }
    if (p < end && *p == '}') break;
    goto out;
  }
  if (js_ws(p + 1, end) != end || !cols_seen || !rows_seen || ncols == 0 || ncols > INV_COLS_MAX) goto out;
  if (nrows > 0 && rows.width != ncols) goto out;
  rc = 0;
out:
  free(key.p);
  return rc;
}

/* ---- a table's rows as the agent sent them ------------------------------------------------ */

typedef struct {
  const char *cols_raw; /* the columns array as sent: part of every row's cache key */
  size_t cols_len;
  char cols[INV_COLS_MAX][STORE_INV_NAME_MAX];
  size_t ncols;
  const char **row;     /* each row's array as sent, '[' to ']' */
  size_t *len;
  size_t n, cap;
} rowset_t;

static void rowset_free(rowset_t *r) {
  free(r->row);
  free(r->len);
  r->row = NULL;
  r->len = NULL;
  r->n = r->cap = 0;
}

static int rowset_push(rowset_t *r, const char *row, size_t len) {
  if (r->n == r->cap) {
    size_t cap = r->cap ? r->cap * 2 : 256;
    const char **o = realloc(r->row, cap * sizeof *o);
    if (o == NULL) return TT_ENOMEM;
    r->row = o;
    size_t *l = realloc(r->len, cap * sizeof *l);
    if (l == NULL) return TT_ENOMEM;
    r->len = l;
    r->cap = cap;
  }
  r->row[r->n] = row;
  r->len[r->n] = len;
  r->n++;
  return 0;
}

/* {"columns":[...],"rows":[[...],...]} (and "error", or anything else made of strings and
 * arrays, ignored): the columns decoded and checked, each row found (an array of exactly as
 * many strings) but not yet decoded. TT_EINVAL: not that shape. */
static int table_rows(const char *body, size_t blen, rowset_t *out) {
  const char *p = body, *end = body + blen;
  const char *cols_at = NULL, *rows_at = NULL;
  sb_t key = {0};
  int rc = TT_EINVAL;

  out->ncols = 0;
  p = js_ws(p, end);
  if (p >= end || *p != '{') goto out;
  p = js_ws(p + 1, end);
  if (p < end && *p == '}') goto out; /* no columns, no rows */
  for (;;) {
    key.len = 0;
    if (js_decode(&p, end, &key) != 0) goto out;
    p = js_ws(p, end);
    if (p >= end || *p != ':') goto out;
    p = js_ws(p + 1, end);
    if (key.len == 7 && memcmp(key.p, "columns", 7) == 0) cols_at = p;
    else if (key.len == 4 && memcmp(key.p, "rows", 4) == 0) rows_at = p;
    if (js_skip(&p, end, 2) != 0) goto out;
    p = js_ws(p, end);
    if (p < end && *p == ',') {
      p = js_ws(p + 1, end);
      continue;
    }
    if (p < end && *p == '}') break;
    goto out;
  }
  if (js_ws(p + 1, end) != end || cols_at == NULL || rows_at == NULL || *cols_at != '[' || *rows_at != '[') goto out;

  /* Columns: osquery's names, none twice (js_skip has found the brackets). */
  p = js_ws(cols_at + 1, end);
  while (p < end && *p != ']') {
    key.len = 0;
    if (out->ncols >= INV_COLS_MAX || js_decode(&p, end, &key) != 0 || !col_name_ok(key.p, key.len)) goto out;
    char *c = out->cols[out->ncols];
    memcpy(c, key.p, key.len);
    c[key.len] = '\0';
    for (size_t i = 0; i < out->ncols; i++)
      if (strcmp(out->cols[i], c) == 0) goto out;
    out->ncols++;
    p = js_ws(p, end);
    if (p < end && *p == ',') p = js_ws(p + 1, end);
  }
  if (out->ncols == 0 || p >= end) goto out;
  out->cols_raw = cols_at;
  out->cols_len = (size_t)(p + 1 - cols_at);

  /* Rows: arrays of exactly ncols strings. */
  p = js_ws(rows_at + 1, end);
  while (p < end && *p == '[') {
    const char *start = p;
    size_t k = 0;
    p = js_ws(p + 1, end);
    while (p < end && *p == '"') {
      p = js_pass_string(p, end);
      if (p == NULL) goto out;
      k++;
      p = js_ws(p, end);
      if (p < end && *p == ',') p = js_ws(p + 1, end);
    }
    if (k != out->ncols || p >= end || *p != ']') goto out;
    p++;
    if ((rc = rowset_push(out, start, (size_t)(p - start))) != 0) goto out;
    rc = TT_EINVAL;
    p = js_ws(p, end);
    if (p < end && *p == ',') p = js_ws(p + 1, end);
  }
  if (p < end && *p == ']') rc = 0;
out:
  free(key.p);
  if (rc != 0) rowset_free(out);
  return rc;
}

/* A row as the index keeps it: {"col":"value",...}, every string decoded, checked and
 * written back the one way. TT_EINVAL for a string that is not valid. */
static int canonical_row(const rowset_t *rs, size_t i, sb_t *out, sb_t *val) {
  const char *p = rs->row[i], *end = p + rs->len[i];
  out->len = 0;
  int rc = sb_putc(out, '{');
  p = js_ws(p + 1, end);
  for (size_t k = 0; k < rs->ncols && rc == 0; k++) {
    val->len = 0;
    if (js_decode(&p, end, val) != 0) return TT_EINVAL;
    if (k > 0) rc = sb_putc(out, ',');
    if (rc == 0) rc = js_encode(out, rs->cols[k], strlen(rs->cols[k]), true);
    if (rc == 0) rc = sb_putc(out, ':');
    if (rc == 0) rc = js_encode(out, val->p, val->len, true);
    p = js_ws(p, end);
    if (p < end && *p == ',') p = js_ws(p + 1, end);
  }
  if (rc == 0) rc = sb_putc(out, '}');
  return rc;
}

/* ---- interned rows, remembered by the bytes that brought them -------------------------------
 * Keyed by the table's name, its columns array as sent and the row's array as sent: a row
 * another device sent in the same bytes is found without decoding, escaping or a seek
 * (a fleet's puts are mostly such rows). A miss is made canonical and interned by SQL. */

typedef struct {
  uint64_t h;
  int64_t id;   /* 0: a row too long to index */
  size_t clen;  /* the canonical row's bytes (what the device's index budget counts) */
  size_t len;   /* of key */
  char *key;    /* name NUL columns NUL row; NULL: a free slot */
} inv_slot_t;

/* Ids deleted since the cache was last emptied (a row nobody holds any more): a slot that
 * names one is a miss. Past three quarters of it, the cache starts again. */
#define INV_GONE_SLOTS (1u << 13)

struct store_inv_cache_s {
  inv_slot_t slot[INV_CACHE_SLOTS];
  size_t used;
  int64_t gone[INV_GONE_SLOTS]; /* 0: free */
  size_t ngone;
};

typedef struct {
  const char *p[3];
  size_t n[3];
} rkey_t;

/* Eight bytes a step (a byte at a time cost a tenth of a put): a table's hash, not a
 * defence; equal hashes are compared in full. */
static uint64_t hash_bytes(uint64_t h, const void *p, size_t n) {
  const unsigned char *b = p;
  for (; n >= 8; b += 8, n -= 8) {
    uint64_t w;
    memcpy(&w, b, 8);
    h = (h ^ w) * 0x9E3779B97F4A7C15ull;
    h ^= h >> 29;
  }
  uint64_t w = 0;
  memcpy(&w, b, n);
  h = (h ^ w ^ ((uint64_t)n << 56)) * 0x9E3779B97F4A7C15ull;
  return h ^ (h >> 32);
}

void store_inv_find_forget(broker_store_t *s) {
  struct store_inv_cache_s *c = s->inv_cache;
  if (c == NULL) return;
  if (c->ngone > 0) memset(c->gone, 0, sizeof c->gone);
  c->ngone = 0;
  if (c->used == 0) return;
  for (size_t i = 0; i < INV_CACHE_SLOTS; i++) {
    free(c->slot[i].key);
    c->slot[i].key = NULL;
  }
  c->used = 0;
}

static size_t gone_slot(const struct store_inv_cache_s *c, int64_t id) {
  size_t i = (size_t)((uint64_t)id * 0x9E3779B97F4A7C15ull >> 40) & (INV_GONE_SLOTS - 1);
  while (c->gone[i] != 0 && c->gone[i] != id) i = (i + 1) & (INV_GONE_SLOTS - 1);
  return i;
}

static bool gone_has(const struct store_inv_cache_s *c, int64_t id) { return c->ngone > 0 && c->gone[gone_slot(c, id)] == id; }

/* A row was deleted: the cache must not hand its id out again (an undone transaction empties
 * the whole cache, so nothing here outlives a rollback). */
static void gone_put(broker_store_t *s, int64_t id) {
  struct store_inv_cache_s *c = s->inv_cache;
  if (c == NULL || c->used == 0) return;
  if (c->ngone + 1 > INV_GONE_SLOTS / 4 * 3) {
    store_inv_find_forget(s);
    return;
  }
  size_t i = gone_slot(c, id);
  if (c->gone[i] == 0) {
    c->gone[i] = id;
    c->ngone++;
  }
}

void store_inv_find_close(broker_store_t *s) {
  store_inv_find_forget(s);
  free(s->inv_cache);
  s->inv_cache = NULL;
}

static bool key_is(const inv_slot_t *e, const rkey_t *k) {
  size_t off = 0;
  for (int i = 0; i < 3; i++) {
    if (e->len - off < k->n[i] + (i < 2) || memcmp(e->key + off, k->p[i], k->n[i]) != 0) return false;
    off += k->n[i];
    if (i < 2 && e->key[off++] != '\0') return false;
  }
  return off == e->len;
}

static inv_slot_t *cache_find(struct store_inv_cache_s *c, uint64_t h, const rkey_t *k) {
  size_t i = (size_t)h & (INV_CACHE_SLOTS - 1);
  for (;;) {
    inv_slot_t *e = &c->slot[i];
    if (e->key == NULL || (e->h == h && key_is(e, k))) return e;
    i = (i + 1) & (INV_CACHE_SLOTS - 1);
  }
}

/* Remember a row's id; a cache that cannot grow is only slower, never wrong. */
static void cache_put(broker_store_t *s, uint64_t h, const rkey_t *k, int64_t id, size_t clen) {
  struct store_inv_cache_s *c = s->inv_cache;
  if (c == NULL) return;
  if (c->used + 1 > INV_CACHE_SLOTS / 4 * 3) store_inv_find_forget(s);
  inv_slot_t *e = cache_find(c, h, k);
  if (e->key != NULL) { /* a slot whose row was deleted, interned again */
    e->id = id;
    e->clen = clen;
    return;
  }
  size_t len = k->n[0] + 1 + k->n[1] + 1 + k->n[2];
  char *key = malloc(len);
  if (key == NULL) return;
  size_t off = 0;
  for (int i = 0; i < 3; i++) {
    memcpy(key + off, k->p[i], k->n[i]);
    off += k->n[i];
    if (i < 2) key[off++] = '\0';
  }
  e->h = h;
  e->id = id;
  e->clen = clen;
  e->len = len;
  e->key = key;
  c->used++;
}

/* The canonical row's id, added if new. */
static int intern_sql(broker_store_t *s, const char *tbl, const char *row, size_t rlen, int64_t *id) {
  sqlite3_stmt *st = s->st[ST_INVF_ROW_GET];
  int rc = SQLITE_OK;
  bind_text(st, 1, tbl, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_bind_text(st, 2, row, (int)rlen, SQLITE_STATIC);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) *id = sqlite3_column_int64(st, 0);
  done(st);
  if (rc == SQLITE_DONE) {
    st = s->st[ST_INVF_ROW_ADD];
    rc = SQLITE_OK;
    bind_text(st, 1, tbl, &rc);
    if (rc == SQLITE_OK) rc = sqlite3_bind_text(st, 2, row, (int)rlen, SQLITE_STATIC);
    if (rc == SQLITE_OK) rc = sqlite3_step(st);
    done(st);
    if (rc != SQLITE_DONE) return constraint_fail(s, "inv_row_add", rc);
    *id = (int64_t)sqlite3_last_insert_rowid(s->db);
  } else if (rc != SQLITE_ROW) {
    return sql_fail(s, "inv_row_get", rc);
  }
  return *id > 0 ? 0 : TT_EIO;
}

/* ---- sorted id lists and their blobs --------------------------------------------------------- */

typedef struct {
  int64_t *v;
  size_t n;
} ids_t;

static int cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return x < y ? -1 : x > y;
}

static void ids_sort_unique(ids_t *a) {
  if (a->n < 2) return;
  qsort(a->v, a->n, sizeof a->v[0], cmp_i64);
  size_t k = 1;
  for (size_t i = 1; i < a->n; i++)
    if (a->v[i] != a->v[k - 1]) a->v[k++] = a->v[i];
  a->n = k;
}

static bool ids_has(const ids_t *a, int64_t x) {
  size_t lo = 0, hi = a->n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (a->v[mid] < x) lo = mid + 1;
    else if (a->v[mid] > x) hi = mid;
    else return true;
  }
  return false;
}

/* Ascending positive ids as LEB128 deltas: ~2 bytes an id in a table of 50k rows. */
static int ids_encode(const ids_t *a, sb_t *out) {
  out->len = 0;
  int64_t prev = 0;
  for (size_t i = 0; i < a->n; i++) {
    uint64_t d = (uint64_t)(a->v[i] - prev);
    prev = a->v[i];
    unsigned char b[10];
    size_t n = 0;
    do {
      b[n] = (unsigned char)(d & 0x7F);
      d >>= 7;
      if (d) b[n] |= 0x80;
      n++;
    } while (d);
    int rc = sb_put(out, b, n);
    if (rc != 0) return rc;
  }
  return 0;
}

/* A blob read back from the file: strictly ascending positive ids or TT_EIO, never more ids
 * than bytes. */
static int ids_decode(const void *blob, size_t len, ids_t *out) {
  out->v = NULL;
  out->n = 0;
  if (len == 0) return 0;
  out->v = malloc(len * sizeof out->v[0]);
  if (out->v == NULL) return TT_ENOMEM;
  const unsigned char *p = blob, *end = p + len;
  int64_t prev = 0;
  while (p < end) {
    uint64_t d = 0;
    unsigned shift = 0;
    for (;;) {
      if (p >= end || shift > 56) goto bad;
      unsigned char c = *p++;
      d |= (uint64_t)(c & 0x7F) << shift;
      shift += 7;
      if (!(c & 0x80)) break;
    }
    if (d == 0 || d > (uint64_t)(INT64_MAX - prev)) goto bad;
    prev += (int64_t)d;
    out->v[out->n++] = prev;
  }
  return 0;
bad:
  free(out->v);
  out->v = NULL;
  out->n = 0;
  return TT_EIO;
}

/* |a ∩ b| of two ascending lists. */
static size_t ids_common(const ids_t *a, const ids_t *b) {
  size_t i = 0, j = 0, n = 0;
  while (i < a->n && j < b->n) {
    if (a->v[i] < b->v[j]) i++;
    else if (a->v[i] > b->v[j]) j++;
    else {
      n++;
      i++;
      j++;
    }
  }
  return n;
}

/* a − b into out (allocated). */
static int ids_minus(const ids_t *a, const ids_t *b, ids_t *out) {
  out->n = 0;
  out->v = malloc((a->n ? a->n : 1) * sizeof out->v[0]);
  if (out->v == NULL) return TT_ENOMEM;
  size_t j = 0;
  for (size_t i = 0; i < a->n; i++) {
    while (j < b->n && b->v[j] < a->v[i]) j++;
    if (j < b->n && b->v[j] == a->v[i]) continue;
    out->v[out->n++] = a->v[i];
  }
  return 0;
}

static int index_damaged(const char *what, int64_t dev, const char *tbl) {
  char qt[160];
  tt_log_quote(qt, sizeof qt, tbl, strlen(tbl));
  TT_ERROR(MOD, "inventory find index damaged", "dev=%lld table=\"%s\" why=\"%s\"", (long long)dev, qt, what);
  return TT_EIO;
}

/* ---- keeping the index ------------------------------------------------------------------------ */

typedef struct {
  int64_t id, users;
  ids_t rows;
} base_t;

typedef struct {
  base_t *v;
  size_t n;
} bases_t;
#define NO_BASE SIZE_MAX

static void bases_free(bases_t *b) {
  for (size_t i = 0; i < b->n; i++) free(b->v[i].rows.v);
  free(b->v);
  b->v = NULL;
  b->n = 0;
}

static int bases_load(broker_store_t *s, const char *tbl, bases_t *out) {
  out->v = calloc(INV_BASES_MAX, sizeof out->v[0]);
  out->n = 0;
  if (out->v == NULL) return TT_ENOMEM;
  sqlite3_stmt *st = s->st[ST_INVF_BASES];
  int rc = SQLITE_OK, ret = 0;
  bind_text(st, 1, tbl, &rc);
  while (rc == SQLITE_OK || rc == SQLITE_ROW) {
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) break;
    if (out->n >= INV_BASES_MAX) continue; /* more than we make: the surplus is never chosen */
    base_t *b = &out->v[out->n];
    b->id = sqlite3_column_int64(st, 0);
    b->users = sqlite3_column_int64(st, 1);
    ret = ids_decode(sqlite3_column_blob(st, 2), (size_t)sqlite3_column_bytes(st, 2), &b->rows);
    if (ret != 0) break;
    out->n++;
  }
  done(st);
  if (ret == 0 && rc != SQLITE_DONE) ret = sql_fail(s, "inv_bases", rc);
  if (ret == TT_EIO && rc == SQLITE_ROW) ret = index_damaged("base rows", 0, tbl);
  if (ret != 0) bases_free(out);
  return ret;
}

static int step_done(broker_store_t *s, sqlite3_stmt *st, int rc, const char *op) {
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  done(st);
  return rc == SQLITE_DONE ? 0 : constraint_fail(s, op, rc);
}

static int pair_op(broker_store_t *s, store_stmt_t which, int64_t a, int64_t b, const char *op) {
  sqlite3_stmt *st = s->st[which];
  int rc = SQLITE_OK;
  bind_i64(st, 1, a, &rc);
  bind_i64(st, 2, b, &rc);
  return step_done(s, st, rc, op);
}

static int one_op(broker_store_t *s, store_stmt_t which, int64_t a, const char *op) {
  sqlite3_stmt *st = s->st[which];
  int rc = SQLITE_OK;
  bind_i64(st, 1, a, &rc);
  return step_done(s, st, rc, op);
}

/* One more posting holds the row. A row that is not there is a stale id: never written. */
static int ref_add(broker_store_t *s, int64_t row) {
  int ret = one_op(s, ST_INVF_REF_ADD, row, "inv_row_ref");
  if (ret == 0 && sqlite3_changes(s->db) != 1) ret = index_damaged("posting of a row that is gone", 0, "?");
  return ret;
}

/* One posting fewer; the row is deleted with its last (and forgotten by the cache). */
static int ref_drop(broker_store_t *s, int64_t row) {
  int ret = one_op(s, ST_INVF_REF_DROP, row, "inv_row_unref");
  if (ret == 0) ret = one_op(s, ST_INVF_ROW_GONE, row, "inv_row_gone");
  if (ret == 0 && sqlite3_changes(s->db) == 1) gone_put(s, row);
  return ret;
}

/* A posting (base or plus) added or removed, and its row's count with it. */
static int posting_add(broker_store_t *s, store_stmt_t which, int64_t row, int64_t key, const char *op) {
  int ret = pair_op(s, which, row, key, op);
  return ret == 0 ? ref_add(s, row) : ret;
}

static int posting_del(broker_store_t *s, store_stmt_t which, int64_t row, int64_t key, const char *op) {
  int ret = pair_op(s, which, row, key, op);
  if (ret == 0 && sqlite3_changes(s->db) != 1) return 0; /* not there: nothing counted it */
  return ret == 0 ? ref_drop(s, row) : ret;
}

/* The device's number (0 if it has none and add is false) and what its tables take in the
 * index (rows, bytes). */
static int dev_number(broker_store_t *s, const char *device, bool add, int64_t *dev, int64_t use[2]) {
  *dev = 0;
  use[0] = use[1] = 0;
  sqlite3_stmt *st = s->st[ST_INVF_DEV_GET];
  int rc = SQLITE_OK;
  bind_text(st, 1, device, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) {
    *dev = sqlite3_column_int64(st, 0);
    use[0] = sqlite3_column_int64(st, 1);
    use[1] = sqlite3_column_int64(st, 2);
  }
  done(st);
  if (rc == SQLITE_ROW || (rc == SQLITE_DONE && !add)) return 0;
  if (rc != SQLITE_DONE) return sql_fail(s, "inv_dev_get", rc);
  st = s->st[ST_INVF_DEV_ADD];
  rc = SQLITE_OK;
  bind_text(st, 1, device, &rc);
  int ret = step_done(s, st, rc, "inv_dev_add");
  if (ret == 0) *dev = (int64_t)sqlite3_last_insert_rowid(s->db);
  return ret;
}

/* The device's use moves by (rows, bytes). */
static int dev_use(broker_store_t *s, int64_t dev, int64_t rows, int64_t bytes) {
  if (rows == 0 && bytes == 0) return 0;
  sqlite3_stmt *st = s->st[ST_INVF_DEV_USE];
  int rc = SQLITE_OK;
  bind_i64(st, 1, dev, &rc);
  bind_i64(st, 2, rows, &rc);
  bind_i64(st, 3, bytes, &rc);
  return step_done(s, st, rc, "inv_dev_use");
}

typedef struct {
  bool have;
  int64_t base;
  ids_t plus, minus;
  int64_t rows, bytes; /* what the table takes of the device's index budget */
} cur_t;

static void cur_free(cur_t *c) {
  free(c->plus.v);
  free(c->minus.v);
  memset(c, 0, sizeof *c);
}

static int cur_load(broker_store_t *s, int64_t dev, const char *tbl, cur_t *c) {
  memset(c, 0, sizeof *c);
  sqlite3_stmt *st = s->st[ST_INVF_CUR_GET];
  int rc = SQLITE_OK, ret = 0;
  bind_i64(st, 1, dev, &rc);
  bind_text(st, 2, tbl, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) {
    c->have = true;
    c->base = sqlite3_column_int64(st, 0);
    c->rows = sqlite3_column_int64(st, 3);
    c->bytes = sqlite3_column_int64(st, 4);
    ret = ids_decode(sqlite3_column_blob(st, 1), (size_t)sqlite3_column_bytes(st, 1), &c->plus);
    if (ret == 0) ret = ids_decode(sqlite3_column_blob(st, 2), (size_t)sqlite3_column_bytes(st, 2), &c->minus);
    if (ret == TT_EIO) ret = index_damaged("plus or minus", dev, tbl);
  } else if (rc != SQLITE_DONE) {
    ret = sql_fail(s, "inv_cur_get", rc);
  }
  done(st);
  if (ret != 0) { /* the counts stay: a repair gives them back to the device */
    free(c->plus.v);
    free(c->minus.v);
    c->plus = c->minus = (ids_t){0};
  }
  return ret;
}

/* A base one device fewer uses; gone with its postings when nobody does. */
static int base_release(broker_store_t *s, bases_t *bs, int64_t id) {
  for (size_t i = 0; i < bs->n; i++) {
    base_t *b = &bs->v[i];
    if (b->id != id) continue;
    b->users = b->users > 0 ? b->users - 1 : 0;
    if (b->users > 0) return pair_op(s, ST_INVF_BASE_USERS, id, b->users, "inv_base_users");
    for (size_t k = 0; k < b->rows.n; k++) {
      int rc = posting_del(s, ST_INVF_BROW_DEL, b->rows.v[k], id, "inv_base_row_del");
      if (rc != 0) return rc;
    }
    sqlite3_stmt *st = s->st[ST_INVF_BASE_DEL];
    int rc = SQLITE_OK;
    bind_i64(st, 1, id, &rc);
    return step_done(s, st, rc, "inv_base_del");
  }
  return 0; /* not among the table's: nothing counted it */
}

static int base_create(broker_store_t *s, const char *tbl, const ids_t *rows, bases_t *bs, size_t *at) {
  sb_t blob = {0};
  int ret = ids_encode(rows, &blob);
  ids_t copy = {malloc(rows->n * sizeof rows->v[0]), rows->n};
  if (ret == 0 && copy.v == NULL) ret = TT_ENOMEM;
  if (ret == 0) {
    memcpy(copy.v, rows->v, rows->n * sizeof rows->v[0]);
    sqlite3_stmt *st = s->st[ST_INVF_BASE_ADD];
    int rc = SQLITE_OK;
    bind_text(st, 1, tbl, &rc);
    if (rc == SQLITE_OK) rc = sqlite3_bind_blob(st, 2, blob.p, (int)blob.len, SQLITE_STATIC);
    ret = step_done(s, st, rc, "inv_base_add");
  }
  int64_t id = ret == 0 ? (int64_t)sqlite3_last_insert_rowid(s->db) : 0;
  for (size_t k = 0; k < rows->n && ret == 0; k++) ret = posting_add(s, ST_INVF_BROW_ADD, rows->v[k], id, "inv_base_row_add");
  free(blob.p);
  if (ret != 0) {
    free(copy.v);
    return ret;
  }
  bs->v[bs->n] = (base_t){.id = id, .users = 0, .rows = copy};
  *at = bs->n++;
  return 0;
}

/* Which base describes the device's rows: the one it has while it still fits (a device
 * does not move for every package), else the nearest, else a new one made of its rows. */
static int base_pick(broker_store_t *s, const char *tbl, const ids_t *rows, const cur_t *old, bases_t *bs,
                     size_t *pick) {
  size_t n = rows->n;
  size_t best_d = n;
  size_t best = NO_BASE;
  for (size_t i = 0; i < bs->n; i++) {
    size_t d = n + bs->v[i].rows.n - 2 * ids_common(rows, &bs->v[i].rows);
    if (old->have && bs->v[i].id == old->base && d <= INV_BASE_FIT(n)) {
      *pick = i;
      return 0;
    }
    if (d < best_d) {
      best_d = d;
      best = i;
    }
  }
  if (best_d > INV_BASE_FIT(n) && n >= INV_BASE_MIN_ROWS && bs->n < INV_BASES_MAX) {
    size_t at = 0;
    int rc = base_create(s, tbl, rows, bs, &at);
    if (rc != 0) return rc;
    best = at;
  }
  *pick = best;
  return 0;
}

static int cur_write(broker_store_t *s, int64_t dev, const char *tbl, int64_t base, const ids_t *plus,
                     const ids_t *minus, int64_t rows, int64_t bytes) {
  sb_t p = {0}, m = {0};
  int ret = ids_encode(plus, &p);
  if (ret == 0) ret = ids_encode(minus, &m);
  if (ret == 0) {
    sqlite3_stmt *st = s->st[ST_INVF_CUR_PUT];
    int rc = SQLITE_OK;
    bind_i64(st, 1, dev, &rc);
    bind_text(st, 2, tbl, &rc);
    bind_i64(st, 3, base, &rc);
    /* An empty list is a zero-length blob, not NULL (the columns are NOT NULL). */
    if (rc == SQLITE_OK) rc = sqlite3_bind_blob(st, 4, p.p ? p.p : "", (int)p.len, SQLITE_STATIC);
    if (rc == SQLITE_OK) rc = sqlite3_bind_blob(st, 5, m.p ? m.p : "", (int)m.len, SQLITE_STATIC);
    bind_i64(st, 6, rows, &rc);
    bind_i64(st, 7, bytes, &rc);
    ret = step_done(s, st, rc, "inv_cur_put");
  }
  free(p.p);
  free(m.p);
  return ret;
}

static int cur_delete(broker_store_t *s, int64_t dev, const char *tbl) {
  sqlite3_stmt *st = s->st[ST_INVF_CUR_DEL];
  int rc = SQLITE_OK;
  bind_i64(st, 1, dev, &rc);
  bind_text(st, 2, tbl, &rc);
  return step_done(s, st, rc, "inv_cur_del");
}

/* The plus postings move from old to new: only the differences are written. */
static int plus_sync(broker_store_t *s, int64_t dev, const ids_t *old, const ids_t *new) {
  ids_t gone = {0}, added = {0};
  int ret = ids_minus(old, new, &gone);
  if (ret == 0) ret = ids_minus(new, old, &added);
  for (size_t i = 0; i < gone.n && ret == 0; i++) ret = posting_del(s, ST_INVF_PLUS_DEL, gone.v[i], dev, "inv_plus_del");
  for (size_t i = 0; i < added.n && ret == 0; i++) ret = posting_add(s, ST_INVF_PLUS_ADD, added.v[i], dev, "inv_plus_add");
  free(gone.v);
  free(added.v);
  return ret;
}

/* The table's rows as ids, ascending, each interned once, while the device's budget lasts
 * (room[0] rows, room[1] bytes of canonical text; each row as often as the table has it);
 * use gets what they take. */
static int index_rows(broker_store_t *s, const char *device, const char *tbl, const uint8_t *body, size_t len,
                      const int64_t room[2], ids_t *rows, int64_t use[2]) {
  rows->v = NULL;
  rows->n = 0;
  use[0] = use[1] = 0;
  if (body == NULL) return 0;
  rowset_t rs = {0};
  sb_t canon = {0}, val = {0};
  size_t skipped = 0, over = 0;
  int rc = table_rows((const char *)body, len, &rs);
  if (rc == 0 && rs.n > 0 && (rows->v = malloc(rs.n * sizeof rows->v[0])) == NULL) rc = TT_ENOMEM;
  if (rc == 0 && s->inv_cache == NULL) s->inv_cache = calloc(1, sizeof *s->inv_cache);
  size_t tlen = strlen(tbl);
  uint64_t h0 = rc == 0 ? hash_bytes(hash_bytes(0x84222325CBF29CE4ull, tbl, tlen), rs.cols_raw, rs.cols_len) : 0;
  for (size_t i = 0; i < rs.n && rc == 0; i++) {
    rkey_t k = {{tbl, rs.cols_raw, rs.row[i]}, {tlen, rs.cols_len, rs.len[i]}};
    uint64_t h = hash_bytes(h0, rs.row[i], rs.len[i]);
    inv_slot_t *e = s->inv_cache != NULL ? cache_find(s->inv_cache, h, &k) : NULL;
    int64_t id = 0;
    size_t clen = 0;
    bool known = e != NULL && e->key != NULL && (e->id == 0 || !gone_has(s->inv_cache, e->id));
    if (known) {
      id = e->id;
      clen = e->clen;
    } else {
      rc = canonical_row(&rs, i, &canon, &val);
      clen = canon.len;
      if (rc != 0) break;
    }
    if (clen > STORE_INV_ROW_MAX) {
      skipped++;
      if (!known) cache_put(s, h, &k, 0, clen);
      continue;
    }
    /* Checked before the row is interned: the index never holds a row nobody holds. */
    if (use[0] + 1 > room[0] || use[1] + (int64_t)clen > room[1]) {
      over = rs.n - i;
      break;
    }
    if (!known) {
      rc = intern_sql(s, tbl, canon.p, canon.len, &id);
      if (rc == 0) cache_put(s, h, &k, id, clen);
    }
    if (rc == 0) {
      rows->v[rows->n++] = id;
      use[0]++;
      use[1] += (int64_t)clen;
    }
  }
  rowset_free(&rs);
  free(canon.p);
  free(val.p);
  if (rc == TT_EINVAL) {
    char qd[160], qt[160];
    tt_log_quote(qd, sizeof qd, device, strlen(device));
    tt_log_quote(qt, sizeof qt, tbl, strlen(tbl));
    TT_WARN(MOD, "inventory table not indexed for find", "device=\"%s\" table=\"%s\" why=\"not a table's JSON\"", qd,
            qt);
    rows->n = 0; /* indexed as no rows */
    use[0] = use[1] = 0;
    rc = 0;
  } else if (rc == 0 && (skipped > 0 || over > 0)) {
    char qd[160], qt[160];
    tt_log_quote(qd, sizeof qd, device, strlen(device));
    tt_log_quote(qt, sizeof qt, tbl, strlen(tbl));
    if (over > 0)
      TT_WARN(MOD, "inventory rows past the device's find index budget", "device=\"%s\" table=\"%s\" left_out=%zu"
              " max_rows=%u max_bytes=%u", qd, qt, over, (unsigned)STORE_INV_DEVICE_INDEX_ROWS_MAX,
              (unsigned)STORE_INV_DEVICE_INDEX_BYTES_MAX);
    if (skipped > 0)
      TT_DEBUG(MOD, "inventory rows too long to index", "table=\"%s\" rows=%zu max=%u", qt, skipped,
               (unsigned)STORE_INV_ROW_MAX);
  }
  if (rc != 0) {
    free(rows->v);
    rows->v = NULL;
    rows->n = 0;
    return rc;
  }
  ids_sort_unique(rows);
  return 0;
}

/* Repair: the device's plus postings of the table, found by a seek per row of the table (a
 * damaged inv_cur row no longer says which they are), each removed with its count. */
static int plus_drop_all(broker_store_t *s, int64_t dev, const char *tbl) {
  ids_t rows = {0};
  size_t cap = 0;
  sqlite3_stmt *st = s->st[ST_INVF_PLUS_OF_DEV];
  int rc = SQLITE_OK, ret = 0;
  bind_i64(st, 1, dev, &rc);
  bind_text(st, 2, tbl, &rc);
  while (ret == 0 && (rc == SQLITE_OK || rc == SQLITE_ROW)) {
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) break;
    if (rows.n == cap) {
      size_t ncap = cap ? cap * 2 : 256;
      int64_t *v = realloc(rows.v, ncap * sizeof *v);
      if (v == NULL) {
        ret = TT_ENOMEM;
        break;
      }
      rows.v = v;
      cap = ncap;
    }
    rows.v[rows.n++] = sqlite3_column_int64(st, 0);
  }
  done(st);
  if (ret == 0 && rc != SQLITE_DONE) ret = sql_fail(s, "inv_plus_of_dev", rc);
  for (size_t i = 0; i < rows.n && ret == 0; i++) ret = posting_del(s, ST_INVF_PLUS_DEL, rows.v[i], dev, "inv_plus_del");
  free(rows.v);
  return ret;
}

int store_inv_find_index(broker_store_t *s, const char *device, const char *name, const uint8_t *body, size_t len) {
  ids_t rows = {0}, plus = {0}, minus = {0}, none = {0};
  cur_t old = {0};
  bases_t bs = {0};
  int64_t dev = 0, total[2] = {0, 0}, use[2] = {0, 0};
  int ret = dev_number(s, device, false, &dev, total);
  if (ret == 0 && dev != 0) ret = cur_load(s, dev, name, &old);
  if (ret == TT_EIO) { /* logged: start the device's table afresh rather than refuse its inventory */
    ret = plus_drop_all(s, dev, name);
    if (ret == 0) ret = cur_delete(s, dev, name);
    if (ret == 0) ret = dev_use(s, dev, -old.rows, -old.bytes);
    total[0] -= old.rows;
    total[1] -= old.bytes;
    cur_free(&old);
  }
  if (ret != 0) goto out;
  /* What the device's other tables leave of its budget. */
  int64_t room[2] = {(int64_t)STORE_INV_DEVICE_INDEX_ROWS_MAX - (total[0] - old.rows),
                     (int64_t)STORE_INV_DEVICE_INDEX_BYTES_MAX - (total[1] - old.bytes)};
  ret = index_rows(s, device, name, body, len, room, &rows, use);
  if (ret == 0 && dev == 0 && rows.n > 0) ret = dev_number(s, device, true, &dev, total);
  if (ret != 0 || dev == 0) goto out; /* no rows, and never indexed: nothing to undo */
  if (old.have || rows.n > 0) ret = bases_load(s, name, &bs);
  if (ret == 0) ret = dev_use(s, dev, use[0] - old.rows, use[1] - old.bytes);
  if (ret != 0) goto out;
  if (rows.n == 0) {
    if (!old.have) goto out;
    ret = plus_sync(s, dev, &old.plus, &none);
    if (ret == 0 && old.base != 0) ret = base_release(s, &bs, old.base);
    if (ret == 0) ret = cur_delete(s, dev, name);
    goto out;
  }
  size_t pick = NO_BASE;
  ret = base_pick(s, name, &rows, &old, &bs, &pick);
  if (ret != 0) goto out;
  const ids_t *base_rows = pick != NO_BASE ? &bs.v[pick].rows : &none;
  int64_t base_id = pick != NO_BASE ? bs.v[pick].id : 0;
  ret = ids_minus(&rows, base_rows, &plus);
  if (ret == 0) ret = ids_minus(base_rows, &rows, &minus);
  if (ret == 0) ret = plus_sync(s, dev, &old.plus, &plus);
  if (ret == 0 && base_id != (old.have ? old.base : 0)) {
    if (pick != NO_BASE) {
      bs.v[pick].users++;
      ret = pair_op(s, ST_INVF_BASE_USERS, base_id, bs.v[pick].users, "inv_base_users");
    }
    if (ret == 0 && old.have && old.base != 0) ret = base_release(s, &bs, old.base);
  }
  if (ret == 0) ret = cur_write(s, dev, name, base_id, &plus, &minus, use[0], use[1]);
out:
  free(rows.v);
  free(plus.v);
  free(minus.v);
  cur_free(&old);
  bases_free(&bs);
  return ret;
}

/* ---- indexing what was stored before the index ------------------------------------------------ */

typedef struct {
  char device[TT_NAME_MAX + 1];
  char name[STORE_INV_NAME_MAX];
} todo_t;

static int backfill_cb(void *ctx, const char *name, int64_t version, int64_t received_ms, const uint8_t *body,
                       size_t len) {
  (void)version;
  (void)received_ms;
  void **a = ctx;
  return store_inv_find_index(a[0], a[1], name, body, len);
}

int store_inv_find_backfill(broker_store_t *s) {
  size_t total = 0;
  for (;;) {
    todo_t todo[INV_BACKFILL_BATCH];
    size_t n = 0;
    int ret = tx_begin(s);
    if (ret != 0) return ret;
    sqlite3_stmt *st = s->st[ST_INVF_TODO];
    int rc = SQLITE_OK;
    bind_i64(st, 1, INV_BACKFILL_BATCH, &rc);
    while (rc == SQLITE_OK || rc == SQLITE_ROW) {
      rc = sqlite3_step(st);
      if (rc != SQLITE_ROW || n >= INV_BACKFILL_BATCH) break;
      col_text(st, 0, todo[n].device, sizeof todo[n].device);
      col_text(st, 1, todo[n].name, sizeof todo[n].name);
      n++;
    }
    done(st);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) ret = sql_fail(s, "inv_find_todo", rc);
    for (size_t i = 0; i < n && ret == 0; i++) {
      void *a[2] = {s, todo[i].device};
      int r = store_inv_table(s, todo[i].device, todo[i].name, 0, backfill_cb, a);
      /* Gone since, damaged (logged by the read) or not ours to read: nothing to index. */
      if (r != 0 && r != TT_ENOTFOUND && r != TT_EIO && r != TT_EINVAL) ret = r;
      if (ret == 0) {
        st = s->st[ST_INVF_TODO_DEL];
        rc = SQLITE_OK;
        bind_text(st, 1, todo[i].device, &rc);
        bind_text(st, 2, todo[i].name, &rc);
        ret = step_done(s, st, rc, "inv_find_todo_del");
      }
    }
    if (ret == 0) ret = tx_commit(s);
    if (ret != 0) {
      tx_rollback(s);
      return ret;
    }
    total += n;
    if (n < INV_BACKFILL_BATCH) break;
  }
  if (total > 0) TT_INFO(MOD, "inventory indexed for find", "tables=%zu", total);
  return 0;
}

/* ---- the query -----------------------------------------------------------------------------
 * What one page costs, bounded: the matching rows' ids (at most STORE_INV_FIND_MATCH_MAX,
 * 32 bytes each with their state, and the bases holding them), a round of candidate devices
 * (at most INV_FIND_LISTS_MAX lists of INV_FIND_BATCH each), and the text of the rows the
 * page gives (read by id when first given: max_bytes and one row more). Its time: a scan of
 * the table's distinct rows, then rounds until the page is full or has done
 * STORE_INV_FIND_WORK_MAX units of work. */

typedef struct {
  int64_t id;
  size_t off, len; /* its text in the page's, once given */
  bool sent;
} match_t;

typedef struct {
  match_t *v;
  size_t n, cap;
} matches_t;

static void matches_free(matches_t *m) {
  free(m->v);
  memset(m, 0, sizeof *m);
}

static int cmp_match(const void *a, const void *b) {
  const match_t *x = a, *y = b;
  return x->id < y->id ? -1 : x->id > y->id;
}

/* Does the stored row (untrusted text) satisfy every condition? A row that does not parse
 * matches nothing. */
static bool row_matches(const char *row, size_t len, const store_inv_cond_t *cond, size_t ncond, sb_t *key,
                        sb_t *val) {
  const char *p = js_ws(row, row + len), *end = row + len;
  bool hit[STORE_INV_FIND_CONDS_MAX] = {false};
  size_t hits = 0;
  if (p >= end || *p != '{') return false;
  p = js_ws(p + 1, end);
  while (p < end && *p == '"') {
    key->len = val->len = 0;
    if (js_decode(&p, end, key) != 0) return false;
    p = js_ws(p, end);
    if (p >= end || *p != ':') return false;
    p = js_ws(p + 1, end);
    if (js_decode(&p, end, val) != 0) return false;
    for (size_t i = 0; i < ncond; i++) {
      if (hit[i] || strlen(cond[i].col) != key->len || memcmp(cond[i].col, key->p, key->len) != 0) continue;
      bool ok;
      if (!cond[i].contains) {
        ok = val->len == cond[i].len && (cond[i].len == 0 || memcmp(val->p, cond[i].value, cond[i].len) == 0);
      } else {
        ok = cond[i].len == 0;
        for (size_t k = 0; !ok && k + cond[i].len <= val->len; k++)
          ok = memcmp(val->p + k, cond[i].value, cond[i].len) == 0;
      }
      if (!ok) return false;
      hit[i] = true;
      hits++;
    }
    p = js_ws(p, end);
    if (p < end && *p == ',') p = js_ws(p + 1, end);
  }
  return hits == ncond;
}

/* The table's distinct rows matching every condition, ascending by id: their ids only (the
 * text is read again for the rows a page gives). The needle narrows the scan to rows whose
 * text holds the longest condition as it must appear there: an exact condition as
 * "col":"value", a contains condition as the value escaped (escaping is byte by byte, so a
 * cell holding v holds escape(v)). Every row in the index is held by some device (a row is
 * deleted with its last posting), so none counts toward the cap for nothing. */
static int find_rows(broker_store_t *s, const char *table, const store_inv_cond_t *cond, size_t ncond,
                     matches_t *m) {
  sb_t needle = {0}, best = {0}, key = {0}, val = {0};
  int ret = 0;
  for (size_t i = 0; i < ncond && ret == 0; i++) {
    needle.len = 0;
    if (!cond[i].contains) {
      ret = js_encode(&needle, cond[i].col, strlen(cond[i].col), true);
      if (ret == 0) ret = sb_putc(&needle, ':');
    }
    if (ret == 0) ret = js_encode(&needle, cond[i].value, cond[i].len, !cond[i].contains);
    if (ret == 0 && needle.len > best.len) {
      sb_t t = best;
      best = needle;
      needle = t;
    }
  }
  if (ret == 0) ret = sb_putc(&best, '\0');
  sqlite3_stmt *st = s->st[ST_INVF_MATCH];
  int rc = SQLITE_OK;
  if (ret == 0) {
    bind_text(st, 1, table, &rc);
    if (rc == SQLITE_OK) rc = sqlite3_bind_text(st, 2, best.p, (int)best.len - 1, SQLITE_STATIC);
  }
  while (ret == 0 && (rc == SQLITE_OK || rc == SQLITE_ROW)) {
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) break;
    const char *row = (const char *)sqlite3_column_text(st, 1);
    size_t len = (size_t)sqlite3_column_bytes(st, 1);
    if (row == NULL || !row_matches(row, len, cond, ncond, &key, &val)) continue;
    if (m->n >= STORE_INV_FIND_MATCH_MAX) {
      ret = TT_ETOOBIG;
      break;
    }
    if (m->n == m->cap) {
      size_t cap = m->cap ? m->cap * 2 : 64;
      match_t *v = realloc(m->v, cap * sizeof *v);
      if (v == NULL) {
        ret = TT_ENOMEM;
        break;
      }
      m->v = v;
      m->cap = cap;
    }
    m->v[m->n++] = (match_t){.id = sqlite3_column_int64(st, 0)};
  }
  done(st);
  if (ret == 0 && rc != SQLITE_DONE) ret = sql_fail(s, "inv_find_rows", rc);
  free(needle.p);
  free(best.p);
  free(key.p);
  free(val.p);
  if (ret == 0 && m->n > 1) qsort(m->v, m->n, sizeof m->v[0], cmp_match);
  return ret;
}

static match_t *match_get(matches_t *m, int64_t id) {
  size_t lo = 0, hi = m->n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (m->v[mid].id < id) lo = mid + 1;
    else if (m->v[mid].id > id) hi = mid;
    else return &m->v[mid];
  }
  return NULL;
}

/* A base holding matching rows, and which (indexes into the matches). */
typedef struct {
  int64_t id;
  size_t *mi;
  size_t n, cap;
} mbase_t;

typedef struct {
  mbase_t *v;
  size_t n, cap;
} mbases_t;

static void mbases_free(mbases_t *b) {
  for (size_t i = 0; i < b->n; i++) free(b->v[i].mi);
  free(b->v);
  memset(b, 0, sizeof *b);
}

static int mbase_add(mbases_t *b, int64_t id, size_t mi) {
  mbase_t *e = NULL;
  for (size_t i = 0; i < b->n; i++)
    if (b->v[i].id == id) e = &b->v[i];
  if (e == NULL) {
    if (b->n == b->cap) {
      size_t cap = b->cap ? b->cap * 2 : 8;
      mbase_t *v = realloc(b->v, cap * sizeof *v);
      if (v == NULL) return TT_ENOMEM;
      b->v = v;
      b->cap = cap;
    }
    e = &b->v[b->n++];
    memset(e, 0, sizeof *e);
    e->id = id;
  }
  if (e->n == e->cap) {
    size_t cap = e->cap ? e->cap * 2 : 8;
    size_t *v = realloc(e->mi, cap * sizeof *v);
    if (v == NULL) return TT_ENOMEM;
    e->mi = v;
    e->cap = cap;
  }
  e->mi[e->n++] = mi;
  return 0;
}

/* The bases holding matching rows: each base's rows (a blob, at most INV_BASES_MAX of them)
 * against the matches, in memory, rather than a statement per matching row. */
static int find_bases(broker_store_t *s, const char *table, matches_t *m, mbases_t *out, uint64_t *work) {
  bases_t bs = {0};
  int ret = bases_load(s, table, &bs);
  for (size_t i = 0; i < bs.n && ret == 0; i++) {
    *work += INV_WORK_STEP + bs.v[i].rows.n / 8;
    for (size_t k = 0; k < bs.v[i].rows.n && ret == 0; k++) {
      match_t *e = match_get(m, bs.v[i].rows.v[k]);
      if (e != NULL) ret = mbase_add(out, bs.v[i].id, (size_t)(e - m->v));
    }
  }
  bases_free(&bs);
  return ret;
}

static int cand_push(ids_t *cand, size_t *cap, int64_t dev) {
  if (cand->n == *cap) {
    size_t ncap = *cap ? *cap * 2 : 1024;
    int64_t *v = realloc(cand->v, ncap * sizeof *v);
    if (v == NULL) return TT_ENOMEM;
    cand->v = v;
    *cap = ncap;
  }
  cand->v[cand->n++] = dev;
  return 0;
}

/* Up to INV_FIND_BATCH devices at or after from, of one base (key) or of one row's plus
 * postings (one range each), onto cand; *bound drops to the last one read when there may be
 * more; *work counts the statement and the postings. */
static int stream(broker_store_t *s, store_stmt_t which, int64_t key, int64_t from, ids_t *cand, size_t *cap,
                  int64_t *bound, uint64_t *work) {
  sqlite3_stmt *st = s->st[which];
  int rc = SQLITE_OK, ret = 0;
  int64_t got = 0, last = 0;
  bind_i64(st, 1, key, &rc);
  bind_i64(st, 2, from, &rc);
  bind_i64(st, 3, INV_FIND_BATCH, &rc);
  while (ret == 0 && (rc == SQLITE_OK || rc == SQLITE_ROW)) {
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) break;
    last = sqlite3_column_int64(st, 0);
    ret = cand_push(cand, cap, last);
    got++;
  }
  done(st);
  if (ret == 0 && rc != SQLITE_DONE) ret = sql_fail(s, "inv_find_devices", rc);
  if (got >= INV_FIND_BATCH && last < *bound) *bound = last;
  *work += INV_WORK_STEP + (uint64_t)got;
  return ret;
}

static int dev_name(broker_store_t *s, int64_t dev, char device[TT_NAME_MAX + 1], char host[TT_TEXT_MAX + 1]) {
  sqlite3_stmt *st = s->st[ST_INVF_DEV_NAME];
  int rc = SQLITE_OK, ret = 0;
  bind_i64(st, 1, dev, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) {
    col_text(st, 0, device, TT_NAME_MAX + 1);
    col_text(st, 1, host, TT_TEXT_MAX + 1);
  } else if (rc == SQLITE_DONE) {
    ret = index_damaged("device number without a device", dev, "?");
  } else {
    ret = sql_fail(s, "inv_find_device", rc);
  }
  done(st);
  return ret;
}

/* A row's text onto out; *found false if the row is gone since the match (a write between). */
static int row_text(broker_store_t *s, int64_t id, sb_t *out, bool *found) {
  sqlite3_stmt *st = s->st[ST_INVF_ROW_TEXT];
  int rc = SQLITE_OK, ret = 0;
  *found = false;
  bind_i64(st, 1, id, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) {
    const char *t = (const char *)sqlite3_column_text(st, 0);
    size_t n = (size_t)sqlite3_column_bytes(st, 0);
    *found = t != NULL;
    if (t != NULL) ret = sb_put(out, t, n);
  } else if (rc != SQLITE_DONE) {
    ret = sql_fail(s, "inv_find_row_text", rc);
  }
  done(st);
  return ret;
}

typedef struct {
  const char *table;
  matches_t *m;
  mbases_t *mb;
  store_inv_cursor_t *cur;
  uint32_t max_rows;
  size_t max_bytes;
  uint32_t rows;  /* given this page */
  size_t bytes;
  bool full;
  uint64_t work;  /* units: a posting or an id read, INV_WORK_STEP a statement or a device */
  uint64_t work_max;
  store_inv_find_cb cb;
  void *ctx;
  sb_t text;      /* the text of every row given this page, each once */
  /* scratch for one device */
  int64_t *ids;
  const char **texts;
  size_t *lens;
  size_t cap;
} page_t;

/* One candidate (c: its current table): its matching rows after the cursor, given while the
 * page has room. */
static int find_device(broker_store_t *s, page_t *pg, int64_t dev, const cur_t *c) {
  size_t n = 0;
  pg->work += INV_WORK_STEP + (c->plus.n + c->minus.n) / 8;
  /* Base and plus rows never overlap, unless the file is damaged: room for both. */
  if (pg->cap < 2 * pg->m->n) {
    free(pg->ids);
    free(pg->texts);
    free(pg->lens);
    pg->cap = 2 * pg->m->n;
    pg->ids = malloc(pg->cap * sizeof *pg->ids);
    pg->texts = malloc(pg->cap * sizeof *pg->texts);
    pg->lens = malloc(pg->cap * sizeof *pg->lens);
    if (pg->ids == NULL || pg->texts == NULL || pg->lens == NULL) {
      pg->cap = 0;
      return TT_ENOMEM;
    }
  }
  if (c->base != 0) {
    for (size_t i = 0; i < pg->mb->n; i++) {
      if (pg->mb->v[i].id != c->base) continue;
      for (size_t k = 0; k < pg->mb->v[i].n; k++) {
        int64_t id = pg->m->v[pg->mb->v[i].mi[k]].id;
        if (!ids_has(&c->minus, id) && n < pg->cap) pg->ids[n++] = id;
      }
      pg->work += pg->mb->v[i].n;
    }
  }
  for (size_t i = 0; i < c->plus.n && n < pg->cap; i++)
    if (match_get(pg->m, c->plus.v[i]) != NULL) pg->ids[n++] = c->plus.v[i];
  ids_t got = {pg->ids, n};
  ids_sort_unique(&got);
  n = got.n;
  /* Continuing the device the last page stopped in: only the rows after its last. */
  size_t first = 0;
  if (dev == pg->cur->dev)
    while (first < n && pg->ids[first] <= pg->cur->row) first++;
  if (first == n) return 0;

  char device[TT_NAME_MAX + 1], host[TT_TEXT_MAX + 1];
  int ret = dev_name(s, dev, device, host);
  if (ret != 0) return ret;
  size_t bytes = strlen(device) + strlen(host) + INV_PAGE_DEV_OVERHEAD;
  size_t k = 0;
  for (size_t i = first; i < n; i++) {
    match_t *e = match_get(pg->m, pg->ids[i]);
    size_t at = pg->text.len;
    if (!e->sent) { /* its text, read now: a page holds only what it gives */
      bool found = false;
      ret = row_text(s, e->id, &pg->text, &found);
      if (ret != 0) return ret;
      pg->work += INV_WORK_STEP;
      if (!found) continue;
    }
    size_t len = e->sent ? e->len : pg->text.len - at;
    size_t add = INV_PAGE_REF_OVERHEAD + (e->sent ? 0 : len + INV_PAGE_REF_OVERHEAD);
    bool empty = pg->rows == 0 && k == 0; /* a page always carries a row */
    if (!empty && (pg->rows + k >= pg->max_rows || pg->bytes + bytes + add > pg->max_bytes)) {
      pg->text.len = at; /* not this page's */
      pg->full = true;
      break;
    }
    if (!e->sent) {
      e->sent = true;
      e->off = at;
      e->len = len;
    }
    bytes += add;
    pg->ids[k] = pg->ids[i];
    k++;
  }
  if (k == 0) return 0;
  for (size_t i = 0; i < k; i++) { /* the text may have moved while it grew */
    const match_t *e = match_get(pg->m, pg->ids[i]);
    pg->texts[i] = pg->text.p + e->off;
    pg->lens[i] = e->len;
  }
  ret = pg->cb(pg->ctx, device, host, k, pg->ids, pg->texts, pg->lens);
  if (ret != 0) return ret;
  pg->rows += (uint32_t)k;
  pg->bytes += bytes;
  pg->cur->dev = dev;
  pg->cur->row = pg->ids[k - 1];
  return 0;
}

/* Few lists: rounds of a batch of candidates from every list that holds a matching row
 * (each base's devices, each row's plus postings), merged in device order; those up to the
 * lowest last-read of a list that may go on are complete. *upto: every device up to it is
 * done (0: none yet); *end: no device after them. */
static int find_merge(broker_store_t *s, page_t *pg, int64_t from, int64_t *upto, bool *end) {
  ids_t cand = {0};
  size_t cap = 0;
  int ret = 0;
  for (;;) {
    int64_t bound = INT64_MAX;
    cand.n = 0;
    for (size_t i = 0; i < pg->mb->n && ret == 0; i++)
      ret = stream(s, ST_INVF_BASE_DEVS, pg->mb->v[i].id, from, &cand, &cap, &bound, &pg->work);
    for (size_t i = 0; i < pg->m->n && ret == 0; i++)
      ret = stream(s, ST_INVF_PLUS_DEVS, pg->m->v[i].id, from, &cand, &cap, &bound, &pg->work);
    if (ret != 0) break;
    ids_sort_unique(&cand);
    for (size_t i = 0; i < cand.n && ret == 0 && !pg->full; i++) {
      if (cand.v[i] > bound) break;
      cur_t c = {0};
      ret = cur_load(s, cand.v[i], pg->table, &c);
      if (ret == 0 && c.have) ret = find_device(s, pg, cand.v[i], &c);
      cur_free(&c);
    }
    if (ret != 0 || pg->full) break;
    if (bound == INT64_MAX) {
      *end = true;
      break;
    }
    *upto = bound;
    if (pg->work >= pg->work_max) break;
    from = bound + 1;
  }
  free(cand.v);
  return ret;
}

/* Many lists (a find as wide as "every library"): each device's table in device order, its
 * plus and minus checked against the matches, which costs the same per device whatever
 * matches. */
static int find_scan(broker_store_t *s, page_t *pg, int64_t from, int64_t *upto, bool *end) {
  sqlite3_stmt *st = s->st[ST_INVF_CUR_SCAN];
  int rc = SQLITE_OK, ret = 0;
  bool any = false;
  bind_text(st, 1, pg->table, &rc);
  bind_i64(st, 2, from, &rc);
  while (ret == 0 && (rc == SQLITE_OK || rc == SQLITE_ROW)) {
    if (any && pg->work >= pg->work_max) break;
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) break;
    int64_t dev = sqlite3_column_int64(st, 0);
    cur_t c = {.have = true, .base = sqlite3_column_int64(st, 1)};
    ret = ids_decode(sqlite3_column_blob(st, 2), (size_t)sqlite3_column_bytes(st, 2), &c.plus);
    if (ret == 0) ret = ids_decode(sqlite3_column_blob(st, 3), (size_t)sqlite3_column_bytes(st, 3), &c.minus);
    if (ret == TT_EIO) ret = index_damaged("plus or minus", dev, pg->table);
    if (ret == 0) ret = find_device(s, pg, dev, &c);
    cur_free(&c);
    if (ret != 0 || pg->full) break;
    *upto = dev;
    any = true;
  }
  if (ret == 0 && rc == SQLITE_DONE) *end = true;
  else if (ret == 0 && rc != SQLITE_ROW && rc != SQLITE_OK) ret = sql_fail(s, "inv_find_scan", rc);
  done(st);
  return ret;
}

static bool cond_ok(const store_inv_cond_t *c) {
  if (!col_name_ok(c->col, strnlen(c->col, STORE_INV_NAME_MAX))) return false;
  if (c->value == NULL || c->len > STORE_INV_FIND_VALUE_MAX || memchr(c->value, '\0', c->len) != NULL) return false;
  for (size_t i = 0; i < c->len;) {
    uint32_t cp = 0;
    size_t n = tt_utf8_decode((const uint8_t *)c->value + i, c->len - i, &cp);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

void store_inv_find_set_work(broker_store_t *s, uint64_t units) { s->inv_find_work = units; }

int store_inv_find(broker_store_t *s, const char *table, const store_inv_cond_t *cond, size_t ncond,
                   store_inv_cursor_t *cur, uint32_t max_rows, size_t max_bytes, store_inv_find_cb cb, void *ctx,
                   bool *more) {
  *more = false;
  if (table == NULL || !col_name_ok(table, strnlen(table, STORE_INV_NAME_MAX)) || cond == NULL || ncond == 0 ||
      ncond > STORE_INV_FIND_CONDS_MAX || cur == NULL || cur->dev < 0 || cur->row < 0 || max_rows == 0)
    return TT_EINVAL;
  for (size_t i = 0; i < ncond; i++)
    if (!cond_ok(&cond[i])) return TT_EINVAL;

  matches_t m = {0};
  mbases_t mb = {0};
  page_t pg = {.table = table, .m = &m, .mb = &mb, .cur = cur, .max_rows = max_rows, .max_bytes = max_bytes,
               .cb = cb, .ctx = ctx, .work_max = s->inv_find_work ? s->inv_find_work : STORE_INV_FIND_WORK_MAX};
  int ret = find_rows(s, table, cond, ncond, &m);
  if (ret == 0 && m.n > 0) ret = find_bases(s, table, &m, &mb, &pg.work);
  /* A cursor whose row is INT64_MAX ended after every row of its device (a page that ran out
   * of work): the next page starts after it. */
  int64_t from = cur->row == INT64_MAX ? cur->dev + 1 : cur->dev;
  int64_t upto = 0;
  bool end = m.n == 0;
  if (ret == 0 && !end) {
    if (mb.n + m.n <= INV_FIND_LISTS_MAX) ret = find_merge(s, &pg, from, &upto, &end);
    else ret = find_scan(s, &pg, from, &upto, &end);
  }
  if (ret == 0 && !pg.full && !end) {
    /* Out of work: every device up to upto is done; the next page goes on after it. */
    if (upto > cur->dev || (upto == cur->dev && cur->row < INT64_MAX)) {
      cur->dev = upto;
      cur->row = INT64_MAX;
    }
  }
  *more = ret == 0 && (pg.full || !end);
  matches_free(&m);
  mbases_free(&mb);
  free(pg.text.p);
  free(pg.ids);
  free(pg.texts);
  free(pg.lens);
  return ret;
}
