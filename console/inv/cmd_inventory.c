/* tether inventory DEVICE [--table T] [--at V] [--json]: the device's tables as its agent
 * last pushed them (or as of a version): an index of tables, one table's rows, or with --json
 * every table. tether inventory history DEVICE: the versions and what each changed. Tables
 * come as zstd parts (tether.proto, InventoryTablePart); each is checked and shown through
 * the console's text helpers. */
#include <inttypes.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>
#include "console.h"
#include "inv/report.h"
#include "tt/msg.h"

#define CELL_SHOWN 40 /* characters of one cell in the readable table */

typedef struct {
  /* the tables to fetch: the one asked, or (--json without --table) every one in the index */
  char (*names)[64];
  size_t n, i;
  uint64_t version;     /* the index's version, so every table is as of the same one */
  uint64_t offset;
  tt_buf_t z;           /* the table being fetched, compressed */
  uint64_t size;
  json_t *doc;          /* --json: {"device","version","tables":{}} */
  /* history paging */
  uint64_t before;
} inv_state_t;

static inv_state_t g_is;

static int check(console_t *c) {
  if (!c->arg[0][0] || !tt_text_valid(tt_text(c->arg[0]), TT_NAME_MAX))
    return console_usage_error("'%s' is not a device id", c->arg[0]);
  return 0;
}

static int get(console_t *c, const char *table, uint64_t offset) {
  Tether__InventoryGetRequest g = TETHER__INVENTORY_GET_REQUEST__INIT;
  g.device = tt_text(c->arg[0]);
  g.table = tt_text(table ? table : "");
  g.version = g_is.version ? g_is.version : (uint64_t)c->cfg.inv_version;
  g.offset = offset;
  Tether__Request q = TETHER__REQUEST__INIT;
  q.body_case = TETHER__REQUEST__BODY_INVENTORY_GET;
  q.inventory_get = &g;
  return console_request(c, &q, table ? TETHER__RESPONSE__BODY_INVENTORY_TABLE : TETHER__RESPONSE__BODY_INVENTORY_INDEX);
}

static int start(console_t *c) {
  if (c->cfg.inv_table[0] && !c->json) { /* one table: straight to it */
    g_is.names = calloc(1, sizeof(*g_is.names));
    if (!g_is.names) return TT_ENOMEM;
    snprintf(g_is.names[0], sizeof(g_is.names[0]), "%s", c->cfg.inv_table);
    g_is.n = 1;
    return get(c, g_is.names[0], 0);
  }
  return get(c, NULL, 0);
}

static void print_index(console_t *c, const Tether__InventoryIndex *ix) {
  char when[40], ago[32], dev[128], name[128], err[512];
  uint64_t now = console_now_ms();
  console_text(dev, sizeof(dev), ix->device);
  console_iso(when, sizeof(when), ix->received_ms, false);
  console_ago(ago, sizeof(ago), ix->received_ms, now);
  printf("%s: inventory version %" PRIu64 ", received %s (%s)\n\n", dev, ix->version, when, ago);
  printf("%-22s %7s %9s %8s  %s\n", "TABLE", "ROWS", "BYTES", "VERSION", "CHANGED");
  for (size_t i = 0; i < ix->n_tables; i++) {
    const Tether__InventoryIndexEntry *e = ix->tables[i];
    console_text(name, sizeof(name), e->name);
    console_ago(ago, sizeof(ago), e->received_ms, now);
    printf("%-22s %7u %9" PRIu64 " %8" PRIu64 "  %s", name, e->rows, e->size, e->version, ago);
    if (e->error.len) {
      console_text(err, sizeof(err), e->error);
      printf("  (%s)", err);
    }
    putchar('\n');
  }
  (void)c;
}

/* The readable table: every column, cells cut to CELL_SHOWN characters. */
static void print_table(const char *name, json_t *t) {
  json_t *cols = json_object_get(t, "columns"), *rows = json_object_get(t, "rows"), *r, *v;
  size_t nc = json_array_size(cols), i, k;
  size_t *w = calloc(nc ? nc : 1, sizeof(*w));
  char cell[CELL_SHOWN * 4 + 8];
  if (!w) return;
  json_array_foreach(cols, k, v) {
    const char *s = json_string_value(v);
    ProtobufCBinaryData b = {strlen(s), (uint8_t *)s};
    console_text(cell, sizeof(cell), b);
    w[k] = strlen(cell) < CELL_SHOWN ? strlen(cell) : CELL_SHOWN;
  }
  json_array_foreach(rows, i, r) json_array_foreach(r, k, v) {
    const char *s = json_string_value(v);
    ProtobufCBinaryData b = {strlen(s), (uint8_t *)s};
    console_text(cell, sizeof(cell), b);
    size_t l = strlen(cell) < CELL_SHOWN ? strlen(cell) : CELL_SHOWN;
    if (l > w[k]) w[k] = l;
  }
  json_array_foreach(cols, k, v) {
    const char *s = json_string_value(v);
    ProtobufCBinaryData b = {strlen(s), (uint8_t *)s};
    console_text(cell, sizeof(cell), b);
    console_cut(cell, CELL_SHOWN);
    printf("%-*s%s", (int)w[k], cell, k + 1 < nc ? "  " : "\n");
  }
  json_array_foreach(rows, i, r) json_array_foreach(r, k, v) {
    const char *s = json_string_value(v);
    ProtobufCBinaryData b = {strlen(s), (uint8_t *)s};
    console_text(cell, sizeof(cell), b);
    console_cut(cell, CELL_SHOWN);
    printf("%-*s%s", (int)w[k], cell, k + 1 < nc ? "  " : "\n");
  }
  const char *e = json_string_value(json_object_get(t, "error"));
  if (e) {
    ProtobufCBinaryData b = {strlen(e), (uint8_t *)e};
    char why[512];
    console_text(why, sizeof(why), b);
    printf("(%s: %s)\n", name, why);
  }
  printf("%zu rows\n", json_array_size(rows));
  free(w);
}

static void done(console_t *c, int code) {
  free(g_is.names);
  tt_buf_free(&g_is.z);
  json_decref(g_is.doc);
  memset(&g_is, 0, sizeof(g_is));
  if (code == 0) console_finish(c, 0);
}

static int index_response(console_t *c, const Tether__Response *r) {
  const Tether__InventoryIndex *ix = r->inventory_index;
  if (!ix) return TT_EPROTO;
  if (!c->json) {
    print_index(c, ix);
    fflush(stdout);
    done(c, 0);
    return 0;
  }
  /* --json: every table (or the one asked), all as of this version. */
  g_is.version = ix->version;
  g_is.names = calloc(ix->n_tables ? ix->n_tables : 1, sizeof(*g_is.names));
  g_is.doc = json_object();
  if (!g_is.names || !g_is.doc) return TT_ENOMEM;
  for (size_t i = 0; i < ix->n_tables; i++) {
    char name[64];
    if (tt_text_copy(name, sizeof(name), ix->tables[i]->name)) return TT_EPROTO;
    if (c->cfg.inv_table[0] && strcmp(name, c->cfg.inv_table)) continue;
    snprintf(g_is.names[g_is.n++], sizeof(g_is.names[0]), "%s", name);
  }
  char dev[TT_NAME_MAX + 1];
  if (tt_text_copy(dev, sizeof(dev), ix->device)) return TT_EPROTO;
  json_object_set_new(g_is.doc, "device", json_string(dev));
  json_object_set_new(g_is.doc, "version", json_integer((json_int_t)ix->version));
  json_object_set_new(g_is.doc, "collected_at", json_integer((json_int_t)ix->collected_ms));
  json_object_set_new(g_is.doc, "received_at", json_integer((json_int_t)ix->received_ms));
  json_object_set_new(g_is.doc, "tables", json_object());
  if (g_is.n == 0) {
    if (c->cfg.inv_table[0]) {
      console_fail(c, "%s has no table %s", c->arg[0], c->cfg.inv_table);
      done(c, 1);
      return 0;
    }
    console_report_json(stdout, g_is.doc);
    done(c, 0);
    return 0;
  }
  return get(c, g_is.names[0], 0);
}

static int table_response(console_t *c, const Tether__Response *r) {
  const Tether__InventoryTablePart *p = r->inventory_table;
  if (!p || p->offset != g_is.z.len || p->total == 0 || p->total > ZSTD_compressBound(TT_INV_TABLE_MAX) ||
      p->size == 0 || p->size > TT_INV_TABLE_MAX || (g_is.z.len && g_is.z.max != p->total) ||
      p->zdata.len > p->total - p->offset)
    return TT_EPROTO;
  if (g_is.z.len == 0) {
    tt_buf_init(&g_is.z, (size_t)p->total);
    g_is.size = p->size;
  }
  if (tt_buf_append(&g_is.z, p->zdata.data, p->zdata.len)) return TT_ENOMEM;
  const char *name = g_is.names[g_is.i];
  /* Later parts as of the version that wrote the table, so a change meanwhile cannot mix. */
  if (g_is.z.len < p->total) {
    if (!g_is.version) g_is.version = p->version;
    return get(c, name, g_is.z.len);
  }
  char *body = malloc((size_t)g_is.size);
  if (!body) return TT_ENOMEM;
  size_t got = ZSTD_decompress(body, (size_t)g_is.size, tt_buf_head(&g_is.z), g_is.z.len);
  json_t *t = ZSTD_isError(got) || got != g_is.size ? NULL : json_loadb(body, got, JSON_REJECT_DUPLICATES, NULL);
  free(body);
  tt_buf_free(&g_is.z);
  if (!console_table_ok(t)) {
    json_decref(t);
    console_fail(c, "%s: table %s is not readable", c->arg[0], name);
    done(c, 1);
    return 0;
  }
  if (!c->json) {
    print_table(name, t);
    json_decref(t);
    fflush(stdout);
    done(c, 0);
    return 0;
  }
  json_object_set_new(t, "version", json_integer((json_int_t)p->version));
  json_object_set_new(json_object_get(g_is.doc, "tables"), name, t);
  if (++g_is.i < g_is.n) return get(c, g_is.names[g_is.i], 0);
  int rc = console_report_json(stdout, g_is.doc);
  fflush(stdout);
  done(c, rc);
  return rc;
}

static int response(console_t *c, const Tether__Response *r) {
  return r->body_case == TETHER__RESPONSE__BODY_INVENTORY_INDEX ? index_response(c, r) : table_response(c, r);
}

static void not_found(console_t *c) {
  if (g_is.n) console_fail(c, "%s has no table %s%s", c->arg[0], g_is.names[g_is.i], c->cfg.inv_version ? " at that version" : "");
  else console_fail(c, "no inventory from %s yet%s", c->arg[0], c->cfg.inv_version ? " at that version" : "");
  done(c, 1);
}

const console_cmd_t console_cmd_inventory = {
    .name = "inventory",
    .args = "DEVICE [--table T] [--at V] [--json]",
    .help = "the device's inventory as its agent last sent it: its tables, one table's rows, or all as JSON",
    .min_pos = 1,
    .device_arg = true,
    .max_pos = 1,
    .switches = CONSOLE_SW_JSON,
    .check = check,
    .start = start,
    .on_response = response,
    .on_not_found = not_found,
};

/* ---- history ------------------------------------------------------------------------------- */

static int history_get(console_t *c) {
  Tether__InventoryHistoryRequest h = TETHER__INVENTORY_HISTORY_REQUEST__INIT;
  h.device = tt_text(c->arg[0]);
  h.before = g_is.before;
  h.limit = TT_INV_HISTORY_PAGE_MAX;
  Tether__Request q = TETHER__REQUEST__INIT;
  q.body_case = TETHER__REQUEST__BODY_INVENTORY_HISTORY;
  q.inventory_history = &h;
  return console_request(c, &q, TETHER__RESPONSE__BODY_INVENTORY_HISTORY);
}

static int history_start(console_t *c) {
  if (!c->json) printf("%-8s %-20s %s\n", "VERSION", "RECEIVED", "CHANGED");
  return history_get(c);
}

static int history_response(console_t *c, const Tether__Response *r) {
  const Tether__InventoryHistory *h = r->inventory_history;
  if (!h) return TT_EPROTO;
  for (size_t i = 0; i < h->n_versions; i++) {
    const Tether__InventoryVersion *v = h->versions[i];
    char when[40], changed[4096];
    console_iso(when, sizeof(when), v->received_ms, false);
    if (c->json) {
      printf("{\"version\":%" PRIu64 ",\"collected_at\":", v->version);
      console_json_time(stdout, v->collected_ms);
      printf(",\"received_at\":");
      console_json_time(stdout, v->received_ms);
      printf(",\"changed\":");
      console_json_bytes(stdout, v->changed);
      printf("}\n");
    } else {
      console_text(changed, sizeof(changed), v->changed);
      printf("%-8" PRIu64 " %-20s %s\n", v->version, when, changed);
    }
    if (g_is.before && v->version >= g_is.before) return TT_EPROTO; /* newest first, or a loop */
    g_is.before = v->version;
  }
  if (h->more && h->n_versions) return history_get(c);
  fflush(stdout);
  done(c, 0);
  return 0;
}

const console_cmd_t console_cmd_inventory_history = {
    .name = "inventory",
    .sub = "history",
    .args = "DEVICE [--json]",
    .help = "the versions of the device's inventory, newest first, and the tables each changed",
    .min_pos = 1,
    .device_arg = true,
    .max_pos = 1,
    .switches = CONSOLE_SW_JSON,
    .check = check,
    .start = history_start,
    .on_response = history_response,
};

/* ---- diff ---------------------------------------------------------------------------------- */

typedef struct {
  uint64_t from, to, since_ms;
  tt_buf_t z;
  uint64_t size;
} diff_state_t;

static diff_state_t g_ds;

static int diff_check(console_t *c) {
  int rc = check(c);
  if (rc) return rc;
  if (c->narg == 2) return console_usage_error("give two versions (V1 V2), or --since, or neither");
  if (c->narg == 3) {
    char *end;
    g_ds.from = strtoull(c->arg[1], &end, 10);
    if (*end || !g_ds.from) return console_usage_error("'%s' is not a version (see inventory history)", c->arg[1]);
    g_ds.to = strtoull(c->arg[2], &end, 10);
    if (*end || !g_ds.to) return console_usage_error("'%s' is not a version (see inventory history)", c->arg[2]);
    if (c->cfg.audit_since[0]) return console_usage_error("--since or two versions, not both");
  }
  if (console_parse_since(c->cfg.audit_since, &g_ds.since_ms))
    return console_usage_error("--since: want a UTC time like 2026-11-23T18:00:00Z, or a duration "
                               "back from now like 30m, 2h, 7d");
  return 0;
}

static int diff_get(console_t *c, uint64_t offset) {
  Tether__InventoryDiffRequest d = TETHER__INVENTORY_DIFF_REQUEST__INIT;
  d.device = tt_text(c->arg[0]);
  d.from = g_ds.from;
  d.to = g_ds.to;
  d.since_ms = g_ds.since_ms;
  d.table = tt_text(c->cfg.inv_table);
  d.offset = offset;
  Tether__Request q = TETHER__REQUEST__INIT;
  q.body_case = TETHER__REQUEST__BODY_INVENTORY_DIFF;
  q.inventory_diff = &d;
  return console_request(c, &q, TETHER__RESPONSE__BODY_INVENTORY_DIFF);
}

static int diff_start(console_t *c) { return diff_get(c, 0); }

/* A diff's rows for a person: a header of the columns any shown row fills, then each row
 * with its sign, the cells cut to CELL_SHOWN and aligned under the header. */
#define DIFF_COLS_MAX 64
typedef struct {
  json_t *cols;
  json_t *rows[2]; /* removed, added (either may be NULL) */
} diff_block_t;

static void diff_cell(json_t *row, size_t k, char *out, size_t cap) {
  const char *s = json_string_value(json_array_get(row, k));
  out[0] = 0;
  if (!s || !s[0]) return;
  ProtobufCBinaryData b = {strlen(s), (uint8_t *)s};
  console_text(out, cap, b);
  console_cut(out, CELL_SHOWN);
}

static void col_name(json_t *cols, size_t k, char *out, size_t cap) {
  const char *s = json_string_value(json_array_get(cols, k));
  ProtobufCBinaryData b = {s ? strlen(s) : 0, (uint8_t *)(s ? s : "")};
  console_text(out, cap, b);
}

static void print_block(const diff_block_t *d) {
  static const char sign[2] = {'-', '+'};
  size_t nc = json_array_size(d->cols), w[DIFF_COLS_MAX] = {0}, i, k, n;
  char cell[CELL_SHOWN * 4 + 8];
  json_t *row;
  if (nc > DIFF_COLS_MAX) nc = DIFF_COLS_MAX;
  for (int side = 0; side < 2; side++)
    json_array_foreach(d->rows[side], i, row) for (k = 0; k < nc; k++) {
      diff_cell(row, k, cell, sizeof(cell));
      if (strlen(cell) > w[k]) w[k] = strlen(cell);
    }
  size_t last = 0;
  for (k = 0; k < nc; k++) {
    if (!w[k]) continue; /* empty in every row shown: left out */
    col_name(d->cols, k, cell, sizeof(cell));
    if (strlen(cell) > w[k]) w[k] = strlen(cell);
    last = k + 1;
  }
  if (!last) return;
  printf("   ");
  for (k = 0, i = 0; k < last; k++) {
    if (!w[k]) continue;
    col_name(d->cols, k, cell, sizeof(cell));
    printf("%s%-*s", i++ ? "  " : " ", k + 1 < last ? (int)w[k] : 0, cell);
  }
  printf("\n");
  for (int side = 0; side < 2; side++)
    json_array_foreach(d->rows[side], i, row) {
      printf("  %c", sign[side]);
      for (k = 0, n = 0; k < last; k++) {
        if (!w[k]) continue;
        diff_cell(row, k, cell, sizeof(cell));
        printf("%s%-*s", n++ ? "  " : " ", k + 1 < last ? (int)w[k] : 0, cell);
      }
      printf("\n");
    }
}

static void print_diff(console_t *c, json_t *doc) {
  json_t *tables = json_object_get(doc, "tables"), *t;
  const char *name;
  printf("%s: inventory version %" JSON_INTEGER_FORMAT " -> %" JSON_INTEGER_FORMAT "\n", c->arg[0],
         json_integer_value(json_object_get(doc, "from")), json_integer_value(json_object_get(doc, "to")));
  if (json_object_size(tables) == 0) printf("no change\n");
  json_object_foreach(tables, name, t) {
    char n[128];
    ProtobufCBinaryData b = {strlen(name), (uint8_t *)name};
    console_text(n, sizeof(n), b);
    printf("%s: %zu added, %zu removed\n", n, json_array_size(json_object_get(t, "added")),
           json_array_size(json_object_get(t, "removed")));
    json_t *old = json_object_get(t, "removed_columns");
    if (old) { /* the columns changed: each side under its own header */
      diff_block_t r = {old, {json_object_get(t, "removed"), NULL}};
      diff_block_t a = {json_object_get(t, "columns"), {NULL, json_object_get(t, "added")}};
      print_block(&r);
      print_block(&a);
    } else {
      diff_block_t d = {json_object_get(t, "columns"), {json_object_get(t, "removed"), json_object_get(t, "added")}};
      print_block(&d);
    }
  }
}

static int diff_response(console_t *c, const Tether__Response *r) {
  const Tether__InventoryTablePart *p = r->inventory_diff;
  if (!p || p->offset != g_ds.z.len || p->total == 0 || p->total > ZSTD_compressBound(TT_INV_DIFF_MAX) ||
      p->size == 0 || p->size > TT_INV_DIFF_MAX || (g_ds.z.len && g_ds.z.max != p->total) ||
      p->zdata.len > p->total - p->offset)
    return TT_EPROTO;
  if (g_ds.z.len == 0) {
    tt_buf_init(&g_ds.z, (size_t)p->total);
    g_ds.size = p->size;
  }
  if (tt_buf_append(&g_ds.z, p->zdata.data, p->zdata.len)) return TT_ENOMEM;
  if (g_ds.z.len < p->total) return diff_get(c, g_ds.z.len);
  char *body = malloc((size_t)g_ds.size);
  if (!body) return TT_ENOMEM;
  size_t got = ZSTD_decompress(body, (size_t)g_ds.size, tt_buf_head(&g_ds.z), g_ds.z.len);
  json_t *doc = ZSTD_isError(got) || got != g_ds.size ? NULL : json_loadb(body, got, JSON_REJECT_DUPLICATES, NULL);
  free(body);
  tt_buf_free(&g_ds.z);
  if (!json_is_object(doc) || !json_is_object(json_object_get(doc, "tables"))) {
    json_decref(doc);
    console_fail(c, "%s: the broker's answer is not readable", c->arg[0]);
    return 0;
  }
  int rc = 0;
  if (c->json) rc = console_report_json(stdout, doc);
  else print_diff(c, doc);
  json_decref(doc);
  fflush(stdout);
  if (!rc) console_finish(c, 0);
  return rc;
}

const console_cmd_t console_cmd_inventory_diff = {
    .name = "inventory",
    .sub = "diff",
    .args = "DEVICE [V1 V2 | --since 7d] [--table T] [--json]",
    .help = "rows added (+) and removed (-) between two versions (default: the last change)",
    .min_pos = 1,
    .device_arg = true,
    .max_pos = 3,
    .switches = CONSOLE_SW_JSON,
    .check = diff_check,
    .start = diff_start,
    .on_response = diff_response,
};
