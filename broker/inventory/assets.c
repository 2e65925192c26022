/* Admins' asset records over the wire (tether.proto, AssetImport/AssetExport): an import's
 * rows come in parts into a per-connection buffer, bounded by what its first part declared
 * (checked against the limits before anything is allocated) and broker-wide; every cell is
 * checked again here, since the console that parsed the file is not trusted; the last part
 * runs the import on the writer thread in one transaction. Exports are read a page at a time
 * on the reader thread. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include "broker.h"
#include "tt/log.h"
#include "tt/msg.h"

#define MOD "assets"

/* The facts an export adds after the records' columns; an import skips them (they are what
 * the devices say, not the admins'), so an export imports again with no change. */
static const char *const k_facts[] = {"Device",   "Hostname", "OS",        "Discovered Serial", "CPU",
                                      "Memory",   "Disk",     "Last Seen", "Agent Version"};
#define NFACTS (sizeof k_facts / sizeof k_facts[0])
#define COL_IGNORED (-2)
#define COL_CUSTOM (-1)
/* An import's report as sent: lists are cut until it fits one answer (the counts stay whole). */
#define REPORT_MAX (160u * 1024u)
/* An export page's cell bytes: well under a frame, at least one line. */
#define PAGE_BYTES (128u * 1024u)

struct broker_assets_s {
  broker_conn_t *c;             /* NULL once orphaned: the store request frees it */
  struct broker_assets_s *prev, *next;
  uint64_t id;
  uint64_t last_ms;
  bool busy;
  store_match_t match;
  bool dry_run;
  char file[TT_TEXT_MAX + 1];
  size_t ncols;
  char cols[TT_ASSET_COLUMNS_MAX][TT_ASSET_HEADER_MAX + 1];
  int field[TT_ASSET_COLUMNS_MAX];  /* store_asset_field_t, COL_CUSTOM or COL_IGNORED */
  uint32_t rows_total, rows_in;
  uint64_t bytes_total, bytes_in;
  size_t held;                  /* what it counts against g_held */
  char *arena;                  /* every cell, NUL-terminated, in order */
  size_t arena_len, arena_cap;
  uint32_t *lines;              /* rows_total */
  size_t *offs;                 /* rows_total * ncols: cell starts in arena */
};

static uint64_t g_imports;
static size_t g_held;
static struct broker_assets_s *g_open;

static void imp_free(struct broker_assets_s *v) {
  if (v->prev) v->prev->next = v->next;
  else if (g_open == v) g_open = v->next;
  if (v->next) v->next->prev = v->prev;
  g_held -= v->held;
  free(v->arena);
  free(v->lines);
  free(v->offs);
  free(v);
}

static void imp_release(broker_conn_t *c) {
  struct broker_assets_s *v = c->assets;
  if (!v || v->busy) return;
  c->assets = NULL;
  imp_free(v);
}

void broker_assets_conn_gone(broker_conn_t *c) {
  struct broker_assets_s *v = c->assets;
  if (!v) return;
  c->assets = NULL;
  if (v->busy) v->c = NULL;
  else imp_free(v);
}

void broker_assets_sweep(broker_t *b, uint64_t now) {
  (void)b;
  for (struct broker_assets_s *v = g_open, *next; v; v = next) {
    next = v->next;
    if (v->busy || !v->c || now - v->last_ms < TT_ASSET_IMPORT_IDLE_MS) continue;
    TT_WARN(MOD, "import dropped", "by=%s why=\"no part for %u s\" rows=%u/%u", v->c->id.name,
            TT_ASSET_IMPORT_IDLE_MS / 1000u, v->rows_in, v->rows_total);
    v->c->assets = NULL;
    imp_free(v);
  }
}

/* A cell as the store will take it: no NUL inside, UTF-8, within its size. */
static bool cell_ok(ProtobufCBinaryData t, size_t cap) {
  if (t.len > cap || (t.len && memchr(t.data, 0, t.len))) return false;
  char tmp[TT_ASSET_CELL_MAX + 1];
  if (t.len) memcpy(tmp, t.data, t.len);
  tmp[t.len] = '\0';
  return store_asset_text_ok(tmp, cap, true);
}

static int col_field(const char *name) {
  for (int f = 0; f < STORE_AF__COUNT; f++)
    if (strcasecmp(name, store_asset_columns[f]) == 0) return f;
  for (size_t i = 0; i < NFACTS; i++)
    if (strcasecmp(name, k_facts[i]) == 0) return COL_IGNORED;
  return COL_CUSTOM;
}

/* ---- the run: rows into the store's form, on the writer thread ----------------------------- */

typedef struct {
  broker_creq_t h;
  struct broker_assets_s *v;
  int64_t now_ms;
  store_asset_counts_t counts;
  char *report;
  char why[TT_TEXT_MAX];
} import_req_t;

static int import_run(broker_store_t *s, store_req_t *r) {
  import_req_t *x = (import_req_t *)r;
  struct broker_assets_s *v = x->v;
  size_t n = v->rows_total, ncustom = 0;
  for (size_t k = 0; k < v->ncols; k++) ncustom += v->field[k] == COL_CUSTOM;
  store_asset_row_t *rows = calloc(n ? n : 1, sizeof *rows);
  store_asset_kv_t *kv = calloc(n * ncustom > 0 ? n * ncustom : 1, sizeof *kv);
  int ret = rows && kv ? 0 : TT_ENOMEM;
  for (size_t i = 0; i < n && ret == 0; i++) {
    store_asset_row_t *row = &rows[i];
    row->line = v->lines[i];
    row->custom = kv + i * ncustom;
    for (size_t k = 0; k < v->ncols; k++) {
      const char *cell = v->arena + v->offs[i * v->ncols + k];
      if (v->field[k] >= 0) row->f[v->field[k]] = cell;
      else if (v->field[k] == COL_CUSTOM) kv[i * ncustom + row->ncustom++] = (store_asset_kv_t){v->cols[k], cell};
    }
  }
  store_asset_import_t opt = {.match = v->match, .dry_run = v->dry_run, .now_ms = x->now_ms, .by = x->h.audit.actor};
  if (ret == 0) ret = store_asset_import(s, &opt, rows, n, &x->counts, &x->report, x->why, sizeof x->why);
  free(rows);
  free(kv);
  if (ret == 0) {
    store_asset_counts_t *c = &x->counts;
    char rows_s[24], new_s[24], ch_s[24], un_s[24], m_s[24], nd_s[24], cf_s[24];
    snprintf(rows_s, sizeof rows_s, "%zu", c->rows);
    snprintf(new_s, sizeof new_s, "%zu", c->created);
    snprintf(ch_s, sizeof ch_s, "%zu", c->changed);
    snprintf(un_s, sizeof un_s, "%zu", c->unchanged);
    snprintf(m_s, sizeof m_s, "%zu", c->matched);
    snprintf(nd_s, sizeof nd_s, "%zu", c->unmatched);
    snprintf(cf_s, sizeof cf_s, "%zu", c->row_conflicts + c->device_conflicts);
    char actor[STORE_NAME_MAX];
    snprintf(actor, sizeof actor, "%s", x->h.audit.actor);
    broker_audit_rec(&x->h.audit, actor, "asset-import", "", "file", v->file, "match", store_match_name(v->match),
                     "dry_run", v->dry_run ? "yes" : "no", "rows", rows_s, "new", new_s, "changed", ch_s, "unchanged",
                     un_s, "matched", m_s, "no_device", nd_s, "conflicts", cf_s, AUDIT_END);
  }
  return ret;
}

/* The report cut to fit one answer: the longest list halved until it does. */
static char *report_fit(char *report) {
  if (!report || strlen(report) <= REPORT_MAX) return report;
  json_t *j = json_loads(report, 0, NULL);
  free(report);
  if (!j) return NULL;
  static const char *const lists[] = {"changes", "unmatched", "conflicting_rows", "conflicting_devices",
                                      "without_record"};
  char *out = NULL;
  for (int round = 0; round < 64; round++) {
    out = json_dumps(j, JSON_COMPACT);
    if (!out || strlen(out) <= REPORT_MAX) break;
    free(out);
    out = NULL;
    json_t *longest = NULL;
    for (size_t i = 0; i < sizeof lists / sizeof lists[0]; i++) {
      json_t *l = json_object_get(j, lists[i]);
      if (!longest || json_array_size(l) > json_array_size(longest)) longest = l;
    }
    size_t keep = json_array_size(longest) / 2;
    while (json_array_size(longest) > keep) json_array_remove(longest, json_array_size(longest) - 1);
    json_object_set_new(j, "cut", json_true());
  }
  json_decref(j);
  return out;
}

static void import_done(store_req_t *r) {
  import_req_t *x = (import_req_t *)r;
  struct broker_assets_s *v = x->v;
  broker_t *b = x->h.c->b; /* read before the hold is released: the connection may go with it */
  broker_conn_t *c = broker_creq_conn(x);
  bool dry = v->dry_run;
  char file[sizeof v->file];
  snprintf(file, sizeof file, "%s", v->file);
  v->busy = false;
  if (!v->c) imp_free(v);
  else if (c) imp_release(c);
  else {
    v->c->assets = NULL; /* closing: nothing more comes for it */
    imp_free(v);
  }
  if (r->rc) {
    TT_WARN(MOD, "import refused", "by=%s err=%s why=\"%s\"", x->h.audit.actor, tt_errname(r->rc), x->why);
    broker_audit(b, x->h.audit.actor, "asset-import-refused", "", "file", file, "why",
                 x->why[0] ? x->why : tt_errname(r->rc), AUDIT_END);
  } else
    TT_INFO(MOD, "import", "by=%s rows=%zu new=%zu changed=%zu dry_run=%d", x->h.audit.actor, x->counts.rows,
            x->counts.created, x->counts.changed, (int)dry);
  if (!c) goto out;
  int rc;
  if (r->rc == TT_EINVAL) {
    rc = broker_reply_error(c, x->h.id, TT_EINVAL, x->why[0] ? x->why : "the file is not valid");
  } else if (r->rc) {
    rc = broker_reply_error(c, x->h.id, TT_EIO, "the broker could not import: nothing was changed");
  } else {
    x->report = report_fit(x->report);
    Tether__AssetImportResponse a = TETHER__ASSET_IMPORT_RESPONSE__INIT;
    a.complete = true;
    a.report = tt_text(x->report ? x->report : "{}");
    Tether__Response resp = TETHER__RESPONSE__INIT;
    resp.id = x->h.id;
    resp.body_case = TETHER__RESPONSE__BODY_ASSET_IMPORT;
    resp.asset_import = &a;
    rc = tt_link_send(c->link, TT_K_RESPONSE, &resp.base);
  }
  if (rc) tt_link_close(c->link, rc, "peer not reading");
out:
  free(x->report);
  free(x);
}

/* ---- parts --------------------------------------------------------------------------------- */

static int refuse(broker_conn_t *c, uint32_t id, int code, const char *why) {
  TT_WARN(MOD, "import refused", "by=%s why=\"%s\"", c->id.name, why);
  broker_audit(c->b, c->id.name, "asset-import-refused", "", "file", c->assets ? c->assets->file : "", "why", why,
               AUDIT_END);
  imp_release(c);
  return broker_reply_error(c, id, code, why);
}

/* The first part: what the import is and how big, checked before anything is allocated. */
/* A first part refused: answered, and in the audit with the file's name. */
static int open_refused(broker_conn_t *c, uint32_t id, const Tether__AssetImportRequest *q, int code,
                        const char *why) {
  char file[TT_TEXT_MAX + 1] = "";
  if (tt_text_copy(file, sizeof file, q->file)) file[0] = 0;
  TT_WARN(MOD, "import refused", "by=%s why=\"%s\"", c->id.name, why);
  broker_audit(c->b, c->id.name, "asset-import-refused", "", "file", file, "why", why, AUDIT_END);
  return broker_reply_error(c, id, code, why);
}

static int import_open(broker_conn_t *c, uint32_t id, const Tether__AssetImportRequest *q) {
  char m[16];
  store_match_t match;
  if (tt_text_copy(m, sizeof m, q->match) || store_match_parse(m, &match))
    return open_refused(c, id, q, TT_EINVAL, "match: serial, hostname, mac or asset_tag");
  if (q->n_columns == 0 || q->n_columns > TT_ASSET_COLUMNS_MAX)
    return open_refused(c, id, q, TT_ETOOBIG, "a file has 1 to 96 columns");
  if (q->rows_total > TT_ASSET_ROWS_MAX)
    return open_refused(c, id, q, TT_ETOOBIG, "an import is at most 200000 rows: split the file");
  if (q->bytes_total > TT_ASSET_IMPORT_BYTES_MAX)
    return open_refused(c, id, q, TT_ETOOBIG, "an import is at most 64 MiB of cells: split the file");
  uint64_t need = q->bytes_total + (uint64_t)q->rows_total * q->n_columns +
                  (uint64_t)q->rows_total * q->n_columns * sizeof(size_t) + (uint64_t)q->rows_total * sizeof(uint32_t);
  if (g_held + need > TT_ASSET_BROKER_BYTES_MAX)
    return open_refused(c, id, q, TT_EBUSY, "the broker is busy with other imports, try again shortly");
  struct broker_assets_s *v = calloc(1, sizeof *v);
  if (!v) return TT_ENOMEM;
  v->c = c;
  v->match = match;
  v->dry_run = q->dry_run;
  if (q->file.len && tt_text_copy(v->file, sizeof v->file, q->file)) snprintf(v->file, sizeof v->file, "?");
  v->ncols = q->n_columns;
  const char *bad = NULL;
  bool has_tag = false;
  for (size_t k = 0; k < v->ncols && !bad; k++) {
    ProtobufCBinaryData t = q->columns[k];
    if (t.len == 0 || t.len > TT_ASSET_HEADER_MAX || memchr(t.data, 0, t.len)) {
      bad = "a column name is 1 to 128 bytes";
      break;
    }
    memcpy(v->cols[k], t.data, t.len);
    v->cols[k][t.len] = '\0';
    if (!store_asset_text_ok(v->cols[k], TT_ASSET_HEADER_MAX, false)) bad = "a column name is not UTF-8 text";
    for (size_t j = 0; j < k && !bad; j++)
      if (strcasecmp(v->cols[j], v->cols[k]) == 0) bad = "a column is named twice";
    v->field[k] = col_field(v->cols[k]);
    has_tag |= v->field[k] == STORE_AF_TAG;
  }
  if (!bad && !has_tag) bad = "the file has no 'Asset Tag' column";
  if (bad) {
    free(v);
    return open_refused(c, id, q, TT_EINVAL, bad);
  }
  v->rows_total = q->rows_total;
  v->bytes_total = q->bytes_total;
  v->arena_cap = (size_t)q->bytes_total + (size_t)q->rows_total * v->ncols + 1;
  v->arena = malloc(v->arena_cap);
  v->lines = calloc(v->rows_total ? v->rows_total : 1, sizeof *v->lines);
  v->offs = calloc(v->rows_total ? (size_t)v->rows_total * v->ncols : 1, sizeof *v->offs);
  v->held = (size_t)need;
  g_held += v->held;
  v->id = ++g_imports;
  v->last_ms = uv_now(c->b->loop);
  v->next = g_open;
  if (g_open) g_open->prev = v;
  g_open = v;
  c->assets = v;
  if (!v->arena || !v->lines || !v->offs) {
    imp_release(c);
    return open_refused(c, id, q, TT_ENOMEM, "out of memory");
  }
  return 0;
}

static int submit_import(broker_conn_t *c, uint32_t id) {
  struct broker_assets_s *v = c->assets;
  import_req_t *x = broker_creq_new(c, id, sizeof(*x), STORE_LANE_WRITE, import_run, import_done, "asset_import");
  if (!x) return TT_ENOMEM;
  x->v = v;
  x->now_ms = (int64_t)broker_unix_ms();
  x->h.req.audit = &x->h.audit;
  snprintf(x->h.audit.actor, sizeof x->h.audit.actor, "%s", c->id.name);
  unsigned held = c->work;
  int rc = broker_creq_submit(x);
  if (c->work != held) v->busy = true;
  else imp_release(c); /* refused busy: answered already */
  return rc;
}

int broker_assets_import(broker_conn_t *c, uint32_t id, const Tether__AssetImportRequest *q) {
  if (q->import == 0) {
    if (c->assets && c->assets->busy) return broker_reply_error(c, id, TT_EBUSY, "an import is already running");
    if (c->assets) imp_release(c); /* a new import replaces one not finished */
    int rc = import_open(c, id, q);
    if (rc || !c->assets) return rc;
  } else if (!c->assets || c->assets->busy || c->assets->id != q->import) {
    return broker_reply_error(c, id, TT_ESTATE, "no such import open");
  }
  struct broker_assets_s *v = c->assets;
  v->last_ms = uv_now(c->b->loop);
  if (q->n_rows > TT_ASSET_PART_ROWS) return refuse(c, id, TT_ETOOBIG, "a part is at most 500 rows");
  if (v->rows_in + q->n_rows > v->rows_total) return refuse(c, id, TT_ETOOBIG, "more rows than the import declared");
  for (size_t i = 0; i < q->n_rows; i++) {
    const Tether__AssetRow *row = q->rows[i];
    if (row->n_cells != v->ncols) return refuse(c, id, TT_EINVAL, "a row does not have the header's width");
    size_t r = v->rows_in;
    v->lines[r] = row->line;
    for (size_t k = 0; k < v->ncols; k++) {
      ProtobufCBinaryData t = row->cells[k];
      if (v->bytes_in + t.len > v->bytes_total) return refuse(c, id, TT_ETOOBIG, "more bytes than the import declared");
      if (!cell_ok(t, TT_ASSET_CELL_MAX)) {
        char why[96];
        snprintf(why, sizeof why, "line %u: a cell is not UTF-8 text of at most 2048 bytes", row->line);
        return refuse(c, id, TT_EINVAL, why);
      }
      v->offs[r * v->ncols + k] = v->arena_len;
      if (t.len) memcpy(v->arena + v->arena_len, t.data, t.len);
      v->arena_len += t.len;
      v->arena[v->arena_len++] = '\0';
      v->bytes_in += t.len;
    }
    v->rows_in++;
  }
  if (v->rows_in < v->rows_total) {
    Tether__AssetImportResponse a = TETHER__ASSET_IMPORT_RESPONSE__INIT;
    a.import = v->id;
    Tether__Response resp = TETHER__RESPONSE__INIT;
    resp.id = id;
    resp.body_case = TETHER__RESPONSE__BODY_ASSET_IMPORT;
    resp.asset_import = &a;
    return tt_link_send(c->link, TT_K_RESPONSE, &resp.base);
  }
  return submit_import(c, id);
}

/* ---- export --------------------------------------------------------------------------------- */

typedef struct {
  broker_creq_t h;
  char after[STORE_ASSET_CURSOR_MAX];
  char next[STORE_ASSET_CURSOR_MAX];
  char (*names)[STORE_ASSET_COLUMN_MAX + 1];
  size_t nnames;
  /* the page: every cell NUL-terminated in arena, ncols per line */
  char *arena;
  size_t len, cap;
  size_t *offs;
  size_t nlines, cap_lines;
  bool toomany;
} export_req_t;

static size_t ncols_of(const export_req_t *x) { return STORE_AF__COUNT + x->nnames + NFACTS; }

static int put_cell(export_req_t *x, const char *s) {
  size_t n = strlen(s);
  if (x->len + n + 1 > x->cap) {
    size_t cap = x->cap ? x->cap * 2 : 64 * 1024;
    while (cap < x->len + n + 1) cap *= 2;
    char *a = realloc(x->arena, cap);
    if (!a) return TT_ENOMEM;
    x->arena = a;
    x->cap = cap;
  }
  memcpy(x->arena + x->len, s, n + 1);
  x->len += n + 1;
  return 0;
}

static void iso(char *dst, size_t cap, int64_t ms) {
  if (ms <= 0) {
    dst[0] = '\0';
    return;
  }
  time_t t = (time_t)(ms / 1000);
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(dst, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* What the wire adds to a cell's bytes (a field tag and a length), over the NUL the arena
 * keeps. A page stops before the line that would take it past PAGE_BYTES as sent; a line
 * alone may be larger, and the largest there can be still fits a frame with the header. */
#define WIRE_CELL 3u
_Static_assert(TT_ASSET_COLUMNS_MAX * (TT_ASSET_CELL_MAX + 1 + WIRE_CELL) +
                       TT_ASSET_COLUMNS_MAX * (TT_ASSET_HEADER_MAX + WIRE_CELL) + STORE_ASSET_CURSOR_MAX + 1024 <=
                   TT_FRAME_MAX_BODY,
               "an export page of one line of the widest record fits a frame");

static int line_cb(void *ctx, const store_asset_line_t *l) {
  export_req_t *x = ctx;
  size_t nc = ncols_of(x), before = x->len;
  if (x->nlines == x->cap_lines) {
    size_t cap = x->cap_lines ? x->cap_lines * 2 : 64;
    size_t *o = realloc(x->offs, cap * nc * sizeof *o);
    if (!o) return TT_ENOMEM;
    x->offs = o;
    x->cap_lines = cap;
  }
  size_t *o = x->offs + x->nlines * nc, k = 0;
  int rc = 0;
  for (int f = 0; f < STORE_AF__COUNT && !rc; f++) {
    o[k++] = x->len;
    rc = put_cell(x, l->f[f] ? l->f[f] : "");
  }
  for (size_t i = 0; i < x->nnames && !rc; i++) {
    const char *v = "";
    for (size_t j = 0; j < l->ncustom; j++)
      if (strcasecmp(l->custom[j].name, x->names[i]) == 0) v = l->custom[j].value;
    o[k++] = x->len;
    rc = put_cell(x, v);
  }
  const store_device_facts_t *d = l->dev;
  char mem[24] = "", disk[24] = "", seen[32] = "";
  if (d && d->memory > 0) snprintf(mem, sizeof mem, "%lld", (long long)d->memory);
  if (d && d->disk > 0) snprintf(disk, sizeof disk, "%lld", (long long)d->disk);
  if (d) iso(seen, sizeof seen, d->last_seen_ms);
  const char *facts[NFACTS] = {d ? d->device : "", d ? d->hostname : "", d ? d->os : "", d ? d->serial : "",
                               d ? d->cpu : "", mem, disk, seen, d ? d->agent_version : ""};
  for (size_t i = 0; i < NFACTS && !rc; i++) {
    o[k++] = x->len;
    rc = put_cell(x, facts[i]);
  }
  if (rc) return rc;
  if (x->nlines > 0 && x->len + WIRE_CELL * nc * (x->nlines + 1) > PAGE_BYTES) {
    x->len = before; /* not taken: the next page starts with it */
    return 1;
  }
  x->nlines++;
  return 0;
}

static int export_run(broker_store_t *s, store_req_t *r) {
  export_req_t *x = (export_req_t *)r;
  size_t cap = TT_ASSET_COLUMNS_MAX - STORE_AF__COUNT - NFACTS;
  x->names = calloc(cap, sizeof *x->names);
  if (!x->names) return TT_ENOMEM;
  int rc = store_asset_custom_names(s, x->names, cap, &x->nnames);
  if (rc == TT_ETOOBIG) {
    x->toomany = true;
    return 0;
  }
  if (rc) return rc;
  rc = store_asset_export(s, x->after, TT_ASSET_PART_ROWS, line_cb, x, x->next, sizeof x->next);
  return rc < 0 ? rc : 0;
}

static void export_done(store_req_t *r) {
  export_req_t *x = (export_req_t *)r;
  broker_conn_t *c = broker_creq_conn(x);
  ProtobufCBinaryData *cols = NULL, *cells = NULL;
  Tether__AssetRow *rows = NULL, **rowp = NULL;
  if (!c) goto out;
  int rc = TT_ENOMEM;
  if (r->rc == TT_EINVAL) {
    rc = broker_reply_error(c, x->h.id, TT_EINVAL, "not an export cursor");
    goto reply;
  }
  if (x->toomany || r->rc) {
    rc = broker_reply_error(c, x->h.id, x->toomany ? TT_ETOOBIG : TT_EIO,
                            x->toomany ? "the records have more custom fields than an export holds (75)"
                                       : "the broker could not read its store");
    goto reply;
  }
  size_t nc = ncols_of(x);
  cols = calloc(nc, sizeof *cols);
  cells = calloc(x->nlines * nc + 1, sizeof *cells);
  rows = calloc(x->nlines + 1, sizeof *rows);
  rowp = calloc(x->nlines + 1, sizeof *rowp);
  if (!cols || !cells || !rows || !rowp) goto reply;
  for (size_t k = 0; k < nc; k++)
    cols[k] = tt_text(k < STORE_AF__COUNT ? store_asset_columns[k]
                      : k < STORE_AF__COUNT + x->nnames ? x->names[k - STORE_AF__COUNT]
                                                       : k_facts[k - STORE_AF__COUNT - x->nnames]);
  for (size_t i = 0; i < x->nlines; i++) {
    tether__asset_row__init(&rows[i]);
    for (size_t k = 0; k < nc; k++) cells[i * nc + k] = tt_text(x->arena + x->offs[i * nc + k]);
    rows[i].cells = cells + i * nc;
    rows[i].n_cells = nc;
    rowp[i] = &rows[i];
  }
  Tether__AssetExportPage p = TETHER__ASSET_EXPORT_PAGE__INIT;
  p.columns = cols;
  p.n_columns = nc;
  p.rows = rowp;
  p.n_rows = x->nlines;
  p.next = tt_text(x->next);
  if (x->next[0]) broker_page_key(c->export_next, &(broker_key_part_t){x->next, strlen(x->next)}, 1);
  else memset(c->export_next, 0, sizeof c->export_next);
  Tether__Response resp = TETHER__RESPONSE__INIT;
  resp.id = x->h.id;
  resp.body_case = TETHER__RESPONSE__BODY_ASSET_EXPORT;
  resp.asset_export = &p;
  rc = tt_link_send(c->link, TT_K_RESPONSE, &resp.base);
reply:
  if (rc) tt_link_close(c->link, rc, "peer not reading");
out:
  free(cols);
  free(cells);
  free(rows);
  free(rowp);
  free(x->names);
  free(x->arena);
  free(x->offs);
  free(x);
}

int broker_assets_export(broker_conn_t *c, uint32_t id, const Tether__AssetExportRequest *q) {
  char after[STORE_ASSET_CURSOR_MAX] = "";
  if (q->after.len && tt_text_copy(after, sizeof after, q->after))
    return broker_reply_error(c, id, TT_EINVAL, "not an export cursor");
  export_req_t *x = broker_creq_new(c, id, sizeof(*x), STORE_LANE_READ, export_run, export_done, "asset_export");
  if (!x) return TT_ENOMEM;
  snprintf(x->after, sizeof x->after, "%s", after);
  /* Audited once, as it starts: the pages that follow are the same read. A cursor this
   * connection was not given by the page before is an export of its own. */
  uint8_t key[32];
  broker_page_key(key, &(broker_key_part_t){after, strlen(after)}, 1);
  if (!after[0] || memcmp(key, c->export_next, sizeof key))
    broker_audit(c->b, c->id.name, "asset-export", "", "from", after[0] ? "a cursor of another read" : "the start",
                 AUDIT_END);
  return broker_creq_submit(x);
}
