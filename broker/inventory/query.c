/* Inventory read by people (tether.proto, InventoryGet/History): the index of a device's
 * tables, a table in compressed parts, the versions. Read on the store's reader thread;
 * each read (not each part) is audited. Technicians and admins, no ticket: inventory is the
 * machine's facts, not the person's session. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>
#include "broker.h"
#include "tt/log.h"
#include "tt/msg.h"

#define MOD "inventory"
/* Fast: the wire is short-lived; the store keeps its own compression. */
#define QUERY_ZSTD_LEVEL 1

typedef struct {
  char name[STORE_INV_NAME_MAX];
  int64_t version, received_ms;
  uint64_t size;
  uint32_t rows;
  char error[TT_TEXT_MAX + 1];
} qent_t;

typedef struct {
  broker_creq_t h;
  char device[TT_NAME_MAX + 1];
  char table[STORE_INV_NAME_MAX];
  int64_t version;         /* asked (0 latest) */
  uint64_t offset;
  /* index */
  qent_t ent[STORE_INV_TABLES_MAX];
  size_t n;
  int64_t newest, collected_ms, received_ms;
  /* table */
  int64_t tversion, treceived;
  uint64_t size;
  uint8_t *z;
  size_t zlen;
} get_req_t;

static int index_cb(void *ctx, const char *name, int64_t version, int64_t received_ms, const uint8_t *body,
                    size_t len) {
  get_req_t *x = ctx;
  if (x->n >= STORE_INV_TABLES_MAX) return 0;
  qent_t *e = &x->ent[x->n++];
  snprintf(e->name, sizeof(e->name), "%s", name);
  e->version = version;
  e->received_ms = received_ms;
  e->size = len;
  json_t *j = json_loadb((const char *)body, len, 0, NULL);
  e->rows = (uint32_t)json_array_size(json_object_get(j, "rows"));
  const char *err = json_string_value(json_object_get(j, "error"));
  if (err) snprintf(e->error, sizeof(e->error), "%s", err);
  json_decref(j);
  return 0;
}

static int version_cb(void *ctx, int64_t version, int64_t collected_ms, int64_t received_ms, const char *changed) {
  get_req_t *x = ctx;
  (void)changed;
  if (!x->newest) {
    x->newest = version;
    x->collected_ms = collected_ms;
    x->received_ms = received_ms;
  }
  return 0;
}

static int table_cb(void *ctx, const char *name, int64_t version, int64_t received_ms, const uint8_t *body,
                    size_t len) {
  get_req_t *x = ctx;
  (void)name;
  x->tversion = version;
  x->treceived = received_ms;
  x->size = len;
  size_t cap = ZSTD_compressBound(len);
  if (!(x->z = malloc(cap))) return TT_ENOMEM;
  size_t z = ZSTD_compress(x->z, cap, body, len, QUERY_ZSTD_LEVEL);
  if (ZSTD_isError(z)) return TT_EZSTD;
  x->zlen = z;
  return 0;
}

static int get_run(broker_store_t *s, store_req_t *r) {
  get_req_t *x = (get_req_t *)r;
  if (x->table[0]) return store_inv_table(s, x->device, x->table, x->version, table_cb, x);
  /* The version asked or the newest, then every table current at it. */
  int rc = store_inv_history(s, x->device, x->version ? x->version + 1 : 0, 1, version_cb, x);
  if (rc) return rc;
  if (!x->newest) return TT_ENOTFOUND;
  return store_inv_tables(s, x->device, x->newest, index_cb, x);
}

static void get_done(store_req_t *r) {
  get_req_t *x = (get_req_t *)r;
  broker_conn_t *c = broker_creq_conn(x);
  if (!c) goto out;
  if (r->rc == TT_ENOTFOUND) {
    char why[TT_TEXT_MAX];
    if (x->table[0]) snprintf(why, sizeof(why), "%s has no table %s%s", x->device, x->table, x->version ? " at that version" : "");
    else snprintf(why, sizeof(why), "no inventory from %s yet%s", x->device, x->version ? " at that version" : "");
    (void)broker_reply_error(c, x->h.id, TT_ENOTFOUND, why);
    goto out;
  }
  if (r->rc) {
    (void)broker_reply_error(c, x->h.id, TT_EIO, "the broker could not read the inventory");
    goto out;
  }
  Tether__Response resp = TETHER__RESPONSE__INIT;
  resp.id = x->h.id;
  Tether__InventoryIndex ix = TETHER__INVENTORY_INDEX__INIT;
  Tether__InventoryIndexEntry ents[STORE_INV_TABLES_MAX], *ep[STORE_INV_TABLES_MAX];
  Tether__InventoryTablePart tp = TETHER__INVENTORY_TABLE_PART__INIT;
  if (x->table[0]) {
    if (x->offset > x->zlen) {
      (void)broker_reply_error(c, x->h.id, TT_EINVAL, "offset past the table's end");
      goto out;
    }
    size_t n = x->zlen - x->offset < TT_INV_PART_MAX ? x->zlen - (size_t)x->offset : TT_INV_PART_MAX;
    tp.name = tt_text(x->table);
    tp.version = (uint64_t)x->tversion;
    tp.received_ms = (uint64_t)x->treceived;
    tp.size = x->size;
    tp.offset = x->offset;
    tp.total = x->zlen;
    tp.zdata.data = x->z + x->offset;
    tp.zdata.len = n;
    resp.body_case = TETHER__RESPONSE__BODY_INVENTORY_TABLE;
    resp.inventory_table = &tp;
  } else {
    ix.device = tt_text(x->device);
    ix.version = (uint64_t)x->newest;
    ix.collected_ms = (uint64_t)x->collected_ms;
    ix.received_ms = (uint64_t)x->received_ms;
    for (size_t i = 0; i < x->n; i++) {
      tether__inventory_index_entry__init(&ents[i]);
      ents[i].name = tt_text(x->ent[i].name);
      ents[i].version = (uint64_t)x->ent[i].version;
      ents[i].received_ms = (uint64_t)x->ent[i].received_ms;
      ents[i].size = x->ent[i].size;
      ents[i].rows = x->ent[i].rows;
      if (x->ent[i].error[0]) ents[i].error = tt_text(x->ent[i].error);
      ep[i] = &ents[i];
    }
    ix.n_tables = x->n;
    ix.tables = ep;
    resp.body_case = TETHER__RESPONSE__BODY_INVENTORY_INDEX;
    resp.inventory_index = &ix;
  }
  if (tt_link_send(c->link, TT_K_RESPONSE, &resp.base)) tt_link_close(c->link, TT_EIO, "cannot answer");
out:
  free(x->z);
  free(x);
}

int broker_inv_get(broker_conn_t *c, uint32_t id, const Tether__InventoryGetRequest *q) {
  char dev[TT_NAME_MAX + 1], table[STORE_INV_NAME_MAX];
  if (tt_text_copy(dev, sizeof(dev), q->device) || !dev[0])
    return broker_reply_error(c, id, TT_EINVAL, "no valid device id");
  if (tt_text_copy(table, sizeof(table), q->table))
    return broker_reply_error(c, id, TT_EINVAL, "no valid table name");
  if (q->version >= INT64_MAX) return broker_reply_error(c, id, TT_EINVAL, "no such version");
  get_req_t *x = broker_creq_new(c, id, sizeof(*x), STORE_LANE_READ, get_run, get_done, "inventory_get");
  if (!x) return TT_ENOMEM;
  snprintf(x->device, sizeof(x->device), "%s", dev);
  snprintf(x->table, sizeof(x->table), "%s", table);
  x->version = (int64_t)q->version;
  x->offset = q->offset;
  /* Every request, parts too: a read that starts past offset 0 is still a read. */
  char v[24];
  snprintf(v, sizeof(v), "%llu", (unsigned long long)q->version);
  broker_audit(c->b, c->id.name, "inventory-read", dev, "table", table[0] ? table : "(index)", "version",
               q->version ? v : "latest", AUDIT_END);
  return broker_creq_submit(x);
}

/* ---- history ---------------------------------------------------------------------------------- */

typedef struct {
  int64_t version, collected_ms, received_ms;
  char changed[STORE_INV_TABLES_MAX * (STORE_INV_NAME_MAX + 1)];
} hver_t;

typedef struct {
  broker_creq_t h;
  char device[TT_NAME_MAX + 1];
  int64_t before;
  uint32_t limit;
  hver_t *v;
  size_t n;
} hist_req_t;

static int hist_cb(void *ctx, int64_t version, int64_t collected_ms, int64_t received_ms, const char *changed) {
  hist_req_t *x = ctx;
  if (x->n >= x->limit + 1u) return 0;
  hver_t *h = &x->v[x->n++];
  h->version = version;
  h->collected_ms = collected_ms;
  h->received_ms = received_ms;
  snprintf(h->changed, sizeof(h->changed), "%s", changed);
  return 0;
}

static int hist_run(broker_store_t *s, store_req_t *r) {
  hist_req_t *x = (hist_req_t *)r;
  return store_inv_history(s, x->device, x->before, x->limit + 1, hist_cb, x); /* one more: is there more? */
}

static void hist_done(store_req_t *r) {
  hist_req_t *x = (hist_req_t *)r;
  broker_conn_t *c = broker_creq_conn(x);
  if (!c) goto out;
  if (r->rc) {
    (void)broker_reply_error(c, x->h.id, TT_EIO, "the broker could not read the inventory's history");
    goto out;
  }
  size_t n = x->n > x->limit ? x->limit : x->n;
  Tether__InventoryVersion *vs = calloc(n ? n : 1, sizeof(*vs));
  Tether__InventoryVersion **vp = calloc(n ? n : 1, sizeof(*vp));
  if (!vs || !vp) {
    free(vs);
    free(vp);
    (void)broker_reply_error(c, x->h.id, TT_ENOMEM, "out of memory");
    goto out;
  }
  for (size_t i = 0; i < n; i++) {
    tether__inventory_version__init(&vs[i]);
    vs[i].version = (uint64_t)x->v[i].version;
    vs[i].collected_ms = (uint64_t)x->v[i].collected_ms;
    vs[i].received_ms = (uint64_t)x->v[i].received_ms;
    vs[i].changed = tt_text(x->v[i].changed);
    vp[i] = &vs[i];
  }
  Tether__InventoryHistory h = TETHER__INVENTORY_HISTORY__INIT;
  h.n_versions = n;
  h.versions = vp;
  h.more = x->n > x->limit;
  Tether__Response resp = TETHER__RESPONSE__INIT;
  resp.id = x->h.id;
  resp.body_case = TETHER__RESPONSE__BODY_INVENTORY_HISTORY;
  resp.inventory_history = &h;
  if (tt_link_send(c->link, TT_K_RESPONSE, &resp.base)) tt_link_close(c->link, TT_EIO, "cannot answer");
  free(vs);
  free(vp);
out:
  free(x->v);
  free(x);
}

int broker_inv_history(broker_conn_t *c, uint32_t id, const Tether__InventoryHistoryRequest *q) {
  char dev[TT_NAME_MAX + 1];
  if (tt_text_copy(dev, sizeof(dev), q->device) || !dev[0])
    return broker_reply_error(c, id, TT_EINVAL, "no valid device id");
  uint32_t limit = q->limit && q->limit < TT_INV_HISTORY_PAGE_MAX ? q->limit : TT_INV_HISTORY_PAGE_MAX;
  hist_req_t *x = broker_creq_new(c, id, sizeof(*x), STORE_LANE_READ, hist_run, hist_done, "inventory_history");
  if (!x) return TT_ENOMEM;
  if (!(x->v = calloc(limit + 1u, sizeof(*x->v)))) {
    free(x);
    return TT_ENOMEM;
  }
  snprintf(x->device, sizeof(x->device), "%s", dev);
  x->before = q->before > INT64_MAX ? INT64_MAX : (int64_t)q->before;
  x->limit = limit;
  broker_audit(c->b, c->id.name, "inventory-read", dev, "table", "(history)", AUDIT_END);
  return broker_creq_submit(x);
}

/* ---- diagnostics reports kept on tickets (D-n) ---------------------------------------------- */

typedef struct {
  broker_creq_t h;
  int64_t id;
  uint64_t offset;
  store_diag_t row;
  uint8_t *z;
  size_t zlen;
} dget_req_t;

static int dget_cb(void *ctx, const store_diag_t *d, const uint8_t *zbody, size_t zlen) {
  dget_req_t *x = ctx;
  x->row = *d;
  if (!(x->z = malloc(zlen ? zlen : 1))) return TT_ENOMEM;
  memcpy(x->z, zbody, zlen);
  x->zlen = zlen;
  return 0;
}

static int dget_run(broker_store_t *s, store_req_t *r) {
  dget_req_t *x = (dget_req_t *)r;
  return store_diag_get(s, x->id, dget_cb, x);
}

static void dget_done(store_req_t *r) {
  dget_req_t *x = (dget_req_t *)r;
  broker_conn_t *c = broker_creq_conn(x);
  if (!c) goto out;
  if (r->rc == TT_ENOTFOUND) {
    char why[64];
    snprintf(why, sizeof(why), "no diagnostics report D-%lld", (long long)x->id);
    (void)broker_reply_error(c, x->h.id, TT_ENOTFOUND, why);
    goto out;
  }
  if (r->rc || x->offset > x->zlen) {
    (void)broker_reply_error(c, x->h.id, r->rc ? TT_EIO : TT_EINVAL,
                             r->rc ? "the broker could not read the report" : "offset past the report's end");
    goto out;
  }
  Tether__DiagReportPart p = TETHER__DIAG_REPORT_PART__INIT;
  size_t n = x->zlen - x->offset < TT_INV_PART_MAX ? x->zlen - (size_t)x->offset : TT_INV_PART_MAX;
  p.id = (uint64_t)x->row.id;
  p.ticket = (uint64_t)x->row.ticket;
  p.session = (uint64_t)x->row.session;
  p.device = tt_text(x->row.device);
  p.person = tt_text(x->row.person);
  p.taken_ms = (uint64_t)x->row.taken_ms;
  p.size = (uint64_t)x->row.size;
  p.sha256 = tt_text(x->row.sha256);
  p.offset = x->offset;
  p.total = x->zlen;
  p.zdata.data = x->z + x->offset;
  p.zdata.len = n;
  Tether__Response resp = TETHER__RESPONSE__INIT;
  resp.id = x->h.id;
  resp.body_case = TETHER__RESPONSE__BODY_DIAG_REPORT;
  resp.diag_report = &p;
  if (tt_link_send(c->link, TT_K_RESPONSE, &resp.base)) tt_link_close(c->link, TT_EIO, "cannot answer");
out:
  free(x->z);
  free(x);
}

int broker_diag_get(broker_conn_t *c, uint32_t id, const Tether__DiagGetRequest *q) {
  if (q->id == 0 || q->id > INT64_MAX) return broker_reply_error(c, id, TT_EINVAL, "no valid report id");
  dget_req_t *x = broker_creq_new(c, id, sizeof(*x), STORE_LANE_READ, dget_run, dget_done, "diag_get");
  if (!x) return TT_ENOMEM;
  x->id = (int64_t)q->id;
  x->offset = q->offset;
  char d[32];
  snprintf(d, sizeof(d), "D-%llu", (unsigned long long)q->id);
  broker_audit(c->b, c->id.name, "diag-read", d, AUDIT_END);
  return broker_creq_submit(x);
}
