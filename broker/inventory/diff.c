/* What changed in a device's inventory between two versions (tether.proto,
 * InventoryDiffRequest), in osquery's differential form: per table, the rows added and the
 * rows removed. Worked out on the store's reader thread one table at a time (two bodies in
 * memory at most), answered as zstd JSON in parts. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>
#include "broker.h"
#include "tt/log.h"
#include "tt/msg.h"

#define MOD "inventory"
#define DIFF_ZSTD_LEVEL 1

typedef struct {
  char name[STORE_INV_NAME_MAX];
  int64_t from, to; /* the versions that wrote it (0: absent) */
} dname_t;

typedef struct {
  broker_creq_t h;
  char device[TT_NAME_MAX + 1];
  char table[STORE_INV_NAME_MAX];
  int64_t from, to, since_ms;
  uint64_t offset;
  dname_t names[2 * STORE_INV_TABLES_MAX];
  size_t n;
  bool filling_to;
  json_t *body;      /* the table being loaded */
  uint8_t *z;
  size_t zlen, size;
  char why[TT_TEXT_MAX];
} diff_req_t;

static int newest_cb(void *ctx, int64_t version, int64_t collected_ms, int64_t received_ms, const char *changed) {
  (void)collected_ms;
  (void)received_ms;
  (void)changed;
  *(int64_t *)ctx = version;
  return 0;
}

/* The newest version below `before` (0: any), or 0 if none. */
static int newest_before(broker_store_t *s, const char *device, int64_t before, int64_t *out) {
  *out = 0;
  return store_inv_history(s, device, before, 1, newest_cb, out);
}

static int name_cb(void *ctx, const char *name, int64_t version, int64_t received_ms, const uint8_t *body,
                   size_t len) {
  diff_req_t *x = ctx;
  (void)received_ms;
  (void)body;
  (void)len;
  if (x->table[0] && strcmp(name, x->table)) return 0;
  dname_t *d = NULL;
  for (size_t i = 0; i < x->n && !d; i++)
    if (strcmp(x->names[i].name, name) == 0) d = &x->names[i];
  if (!d) {
    if (x->n >= sizeof(x->names) / sizeof(x->names[0])) return 0;
    d = &x->names[x->n++];
    memset(d, 0, sizeof(*d));
    snprintf(d->name, sizeof(d->name), "%s", name);
  }
  if (x->filling_to) d->to = version;
  else d->from = version;
  return 0;
}

static int body_cb(void *ctx, const char *name, int64_t version, int64_t received_ms, const uint8_t *body,
                   size_t len) {
  diff_req_t *x = ctx;
  (void)name;
  (void)version;
  (void)received_ms;
  x->body = json_loadb((const char *)body, len, 0, NULL);
  return x->body ? 0 : TT_EIO;
}

static const char *cell(json_t *row, size_t i) {
  const char *v = json_string_value(json_array_get(row, i));
  return v ? v : "";
}

/* Rows compare as table.c orders them: cell by cell, bytewise. */
static int row_cmp(json_t *a, json_t *b) {
  size_t n = json_array_size(a) < json_array_size(b) ? json_array_size(a) : json_array_size(b);
  for (size_t i = 0; i < n; i++) {
    int c = strcmp(cell(a, i), cell(b, i));
    if (c) return c;
  }
  return (json_array_size(a) > n) - (json_array_size(b) > n);
}

static int load(broker_store_t *s, diff_req_t *x, const char *name, int64_t at, json_t **out) {
  *out = NULL;
  if (!at) return 0;
  x->body = NULL;
  int rc = store_inv_table(s, x->device, name, at, body_cb, x);
  *out = x->body;
  x->body = NULL;
  return rc == TT_ENOTFOUND ? 0 : rc;
}

/* {"columns","added","removed"} for one table, or NULL when nothing differs. Rows of a side
 * whose columns changed (an agent upgrade) all count as removed and added. */
static json_t *table_diff(json_t *a, json_t *b) {
  json_t *ca = json_object_get(a, "columns"), *cb = json_object_get(b, "columns");
  json_t *ra = json_object_get(a, "rows"), *rb = json_object_get(b, "rows");
  json_t *added = json_array(), *removed = json_array(), *o = json_object();
  if (!added || !removed || !o) goto fail;
  bool same = a && b && json_equal(ca, cb);
  size_t i = 0, k = 0, na = json_array_size(ra), nb = json_array_size(rb);
  while (i < na || k < nb) {
    int c = !same ? (i < na ? -1 : 1) : i >= na ? 1 : k >= nb ? -1 : row_cmp(json_array_get(ra, i), json_array_get(rb, k));
    if (c < 0) json_array_append(removed, json_array_get(ra, i++));
    else if (c > 0) json_array_append(added, json_array_get(rb, k++));
    else i++, k++;
  }
  if (!json_array_size(added) && !json_array_size(removed)) goto fail;
  json_object_set(o, "columns", cb ? cb : ca);
  if (a && b && !same) json_object_set(o, "removed_columns", ca);
  json_object_set_new(o, "added", added);
  json_object_set_new(o, "removed", removed);
  return o;
fail:
  json_decref(added);
  json_decref(removed);
  json_decref(o);
  return NULL;
}

static int diff_run(broker_store_t *s, store_req_t *r) {
  diff_req_t *x = (diff_req_t *)r;
  int rc = 0;
  int64_t to = 0, from = 0;
  if ((rc = newest_before(s, x->device, x->to ? x->to + 1 : 0, &to))) return rc;
  if (!to) return TT_ENOTFOUND;
  if (x->from) rc = newest_before(s, x->device, x->from + 1, &from);
  else if (x->since_ms) {
    rc = store_inv_version_at(s, x->device, x->since_ms, &from);
    if (rc == TT_ENOTFOUND) rc = 0, from = 0;
  } else rc = newest_before(s, x->device, to, &from);
  if (rc) return rc;
  if (from > to) {
    snprintf(x->why, sizeof(x->why), "version %lld is after version %lld", (long long)from, (long long)to);
    return TT_EINVAL;
  }
  x->from = from;
  x->to = to;
  x->filling_to = false;
  if (from && (rc = store_inv_tables(s, x->device, from, name_cb, x))) return rc;
  x->filling_to = true;
  if ((rc = store_inv_tables(s, x->device, to, name_cb, x))) return rc;
  json_t *doc = json_object(), *tables = json_object();
  if (!doc || !tables) {
    json_decref(doc);
    json_decref(tables);
    return TT_ENOMEM;
  }
  json_object_set_new(doc, "device", json_string(x->device));
  json_object_set_new(doc, "from", json_integer((json_int_t)from));
  json_object_set_new(doc, "to", json_integer((json_int_t)to));
  json_object_set_new(doc, "tables", tables);
  for (size_t i = 0; i < x->n && !rc; i++) {
    dname_t *d = &x->names[i];
    if (d->from == d->to) continue; /* the same row of the store: unchanged */
    json_t *a, *b, *t;
    if ((rc = load(s, x, d->name, d->from ? from : 0, &a))) break;
    if ((rc = load(s, x, d->name, d->to ? to : 0, &b))) {
      json_decref(a);
      break;
    }
    if ((t = table_diff(a, b))) json_object_set_new(tables, d->name, t);
    json_decref(a);
    json_decref(b);
  }
  char *text = rc ? NULL : json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER);
  json_decref(doc);
  if (rc) return rc;
  if (!text) return TT_ENOMEM;
  size_t len = strlen(text);
  if (len > TT_INV_DIFF_MAX) {
    free(text);
    snprintf(x->why, sizeof(x->why), "the difference is larger than %u MiB: ask for one --table",
             TT_INV_DIFF_MAX >> 20);
    return TT_ETOOBIG;
  }
  size_t cap = ZSTD_compressBound(len);
  x->z = malloc(cap);
  if (!x->z) {
    free(text);
    return TT_ENOMEM;
  }
  size_t z = ZSTD_compress(x->z, cap, text, len, DIFF_ZSTD_LEVEL);
  free(text);
  if (ZSTD_isError(z)) return TT_EZSTD;
  x->zlen = z;
  x->size = len;
  return 0;
}

static void diff_done(store_req_t *r) {
  diff_req_t *x = (diff_req_t *)r;
  broker_conn_t *c = broker_creq_conn(x);
  if (!c) goto out;
  if (r->rc == TT_ENOTFOUND) {
    char why[TT_TEXT_MAX];
    snprintf(why, sizeof(why), "no inventory from %s yet%s", x->device, x->to ? " at that version" : "");
    (void)broker_reply_error(c, x->h.id, TT_ENOTFOUND, why);
    goto out;
  }
  if (r->rc) {
    (void)broker_reply_error(c, x->h.id, r->rc == TT_EINVAL || r->rc == TT_ETOOBIG ? r->rc : TT_EIO,
                             x->why[0] ? x->why : "the broker could not compare the versions");
    goto out;
  }
  if (x->offset > x->zlen) {
    (void)broker_reply_error(c, x->h.id, TT_EINVAL, "offset past the answer's end");
    goto out;
  }
  Tether__InventoryTablePart p = TETHER__INVENTORY_TABLE_PART__INIT;
  size_t n = x->zlen - x->offset < TT_INV_PART_MAX ? x->zlen - (size_t)x->offset : TT_INV_PART_MAX;
  p.name = tt_text("(diff)");
  p.version = (uint64_t)x->to;
  p.size = x->size;
  p.offset = x->offset;
  p.total = x->zlen;
  p.zdata.data = x->z + x->offset;
  p.zdata.len = n;
  Tether__Response resp = TETHER__RESPONSE__INIT;
  resp.id = x->h.id;
  resp.body_case = TETHER__RESPONSE__BODY_INVENTORY_DIFF;
  resp.inventory_diff = &p;
  if (tt_link_send(c->link, TT_K_RESPONSE, &resp.base)) tt_link_close(c->link, TT_EIO, "cannot answer");
out:
  free(x->z);
  free(x);
}

int broker_inv_diff(broker_conn_t *c, uint32_t id, const Tether__InventoryDiffRequest *q) {
  char dev[TT_NAME_MAX + 1], table[STORE_INV_NAME_MAX];
  if (tt_text_copy(dev, sizeof(dev), q->device) || !dev[0])
    return broker_reply_error(c, id, TT_EINVAL, "no valid device id");
  if (tt_text_copy(table, sizeof(table), q->table)) return broker_reply_error(c, id, TT_EINVAL, "no valid table name");
  if (q->from >= INT64_MAX || q->to >= INT64_MAX || q->since_ms > INT64_MAX)
    return broker_reply_error(c, id, TT_EINVAL, "a version or time out of range");
  diff_req_t *x = broker_creq_new(c, id, sizeof(*x), STORE_LANE_READ, diff_run, diff_done, "inventory_diff");
  if (!x) return TT_ENOMEM;
  snprintf(x->device, sizeof(x->device), "%s", dev);
  snprintf(x->table, sizeof(x->table), "%s", table);
  x->from = (int64_t)q->from;
  x->to = (int64_t)q->to;
  x->since_ms = (int64_t)q->since_ms;
  x->offset = q->offset;
  char f[24], t[24];
  snprintf(f, sizeof(f), "%llu", (unsigned long long)q->from);
  snprintf(t, sizeof(t), "%llu", (unsigned long long)q->to);
  broker_audit(c->b, c->id.name, "inventory-read", dev, "table", table[0] ? table : "(diff)", "from", f, "to", t,
               AUDIT_END);
  return broker_creq_submit(x);
}
