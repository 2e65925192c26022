/* Inventory find (tether.proto InventoryFind*): every device whose latest inventory has a row
 * of a table matching conditions, a page per request, read from the store's index on its
 * reader thread. Technicians and admins; audited once per find (its first page, or a page
 * whose cursor this connection was not given). */
#include <inttypes.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include "broker.h"
#include "tt/log.h"
#include "tt/msg.h"
#include "tt/utf8.h"

#define MOD "inventory"
/* Slots of a page's row-id table (each distinct row of a page is sent once): a power of two
 * over twice the most rows a page can hold. */
#define PAGE_SLOTS 8192u
_Static_assert(PAGE_SLOTS >= 2 * TT_INV_FIND_PAGE_ROWS, "a page's rows fit its table half full");
/* What the audit entry keeps of the conditions. */
#define WHERE_AUDIT_MAX 240

typedef struct {
  char device[TT_NAME_MAX + 1];
  char host[TT_TEXT_MAX + 1];
  uint32_t *refs;
  size_t n;
} fdev_t;

typedef struct {
  broker_creq_t h;
  char table[STORE_INV_NAME_MAX];
  store_inv_cond_t cond[TT_INV_FIND_CONDS_MAX];
  char values[TT_INV_FIND_CONDS_MAX][TT_INV_FIND_VALUE_MAX + 1];
  size_t ncond;
  store_inv_cursor_t cur;
  bool more;
  /* the page */
  char **rows;
  size_t *lens;
  size_t nrows;
  int64_t slot_id[PAGE_SLOTS]; /* 0: free */
  uint32_t slot_ix[PAGE_SLOTS];
  fdev_t *devs;
  size_t ndevs, capdevs;
} find_req_t;

static void find_free(find_req_t *x) {
  for (size_t i = 0; i < x->nrows; i++) free(x->rows[i]);
  free(x->rows);
  free(x->lens);
  for (size_t i = 0; i < x->ndevs; i++) free(x->devs[i].refs);
  free(x->devs);
  free(x);
}

/* The page's index of a row, added the first time it is seen. */
static int page_row(find_req_t *x, int64_t id, const char *row, size_t len, uint32_t *ix) {
  size_t i = (size_t)((uint64_t)id * 0x9E3779B97F4A7C15ull >> 40) & (PAGE_SLOTS - 1);
  while (x->slot_id[i] != 0 && x->slot_id[i] != id) i = (i + 1) & (PAGE_SLOTS - 1);
  if (x->slot_id[i] == id) {
    *ix = x->slot_ix[i];
    return 0;
  }
  if (x->nrows >= TT_INV_FIND_PAGE_ROWS) return TT_EFULL; /* the store keeps pages smaller */
  if (x->rows == NULL) {
    x->rows = calloc(TT_INV_FIND_PAGE_ROWS, sizeof *x->rows);
    x->lens = calloc(TT_INV_FIND_PAGE_ROWS, sizeof *x->lens);
    if (x->rows == NULL || x->lens == NULL) return TT_ENOMEM;
  }
  char *copy = malloc(len ? len : 1);
  if (copy == NULL) return TT_ENOMEM;
  memcpy(copy, row, len);
  x->rows[x->nrows] = copy;
  x->lens[x->nrows] = len;
  x->slot_id[i] = id;
  x->slot_ix[i] = (uint32_t)x->nrows;
  *ix = (uint32_t)x->nrows++;
  return 0;
}

static int find_cb(void *ctx, const char *device, const char *hostname, size_t n, const int64_t *ids,
                   const char *const *rows, const size_t *lens) {
  find_req_t *x = ctx;
  if (x->ndevs == x->capdevs) {
    size_t cap = x->capdevs ? x->capdevs * 2 : 64;
    fdev_t *d = realloc(x->devs, cap * sizeof *d);
    if (d == NULL) return TT_ENOMEM;
    x->devs = d;
    x->capdevs = cap;
  }
  fdev_t *d = &x->devs[x->ndevs];
  memset(d, 0, sizeof *d);
  snprintf(d->device, sizeof d->device, "%s", device);
  snprintf(d->host, sizeof d->host, "%s", hostname);
  if ((d->refs = malloc(n * sizeof *d->refs)) == NULL) return TT_ENOMEM;
  x->ndevs++;
  for (size_t i = 0; i < n; i++) {
    int rc = page_row(x, ids[i], rows[i], lens[i], &d->refs[i]);
    if (rc != 0) return rc;
    d->n++;
  }
  return 0;
}

void broker_page_key(uint8_t out[32], const broker_key_part_t *parts, size_t n) {
  EVP_MD_CTX *m = EVP_MD_CTX_new();
  unsigned len = 0;
  bool ok = m && EVP_DigestInit_ex(m, EVP_sha256(), NULL) == 1;
  for (size_t i = 0; ok && i < n; i++) {
    uint64_t l = parts[i].n;
    ok = EVP_DigestUpdate(m, &l, sizeof l) == 1 && (!l || EVP_DigestUpdate(m, parts[i].p, parts[i].n) == 1);
  }
  ok = ok && EVP_DigestFinal_ex(m, out, &len) == 1 && len == 32;
  EVP_MD_CTX_free(m);
  if (!ok) memset(out, 0xff, 32); /* matches no key a page was given: the read is audited */
}

/* The key of this find (table, conditions) at cursor (dev, row). */
static void find_key(const find_req_t *x, int64_t dev, int64_t row, uint8_t out[32]) {
  broker_key_part_t k[3 + 3 * TT_INV_FIND_CONDS_MAX];
  size_t n = 0;
  k[n++] = (broker_key_part_t){x->table, strlen(x->table)};
  for (size_t i = 0; i < x->ncond; i++) {
    k[n++] = (broker_key_part_t){x->cond[i].col, strlen(x->cond[i].col)};
    k[n++] = (broker_key_part_t){x->cond[i].contains ? "~" : "=", 1};
    k[n++] = (broker_key_part_t){x->cond[i].value, x->cond[i].len};
  }
  k[n++] = (broker_key_part_t){&dev, sizeof dev};
  k[n++] = (broker_key_part_t){&row, sizeof row};
  broker_page_key(out, k, n);
}

static int find_run(broker_store_t *s, store_req_t *r) {
  find_req_t *x = (find_req_t *)r;
  return store_inv_find(s, x->table, x->cond, x->ncond, &x->cur, TT_INV_FIND_PAGE_ROWS, TT_INV_FIND_PAGE_BYTES,
                        find_cb, x, &x->more);
}

static void find_done(store_req_t *r) {
  find_req_t *x = (find_req_t *)r;
  broker_conn_t *c = broker_creq_conn(x);
  if (!c) goto out;
  if (r->rc == TT_ETOOBIG) {
    (void)broker_reply_error(c, x->h.id, TT_ETOOBIG,
                             "the conditions match too many distinct rows of the table; narrow them");
    goto out;
  }
  if (r->rc == TT_EINVAL) {
    (void)broker_reply_error(c, x->h.id, TT_EINVAL, "not a valid table, column or value");
    goto out;
  }
  if (r->rc) {
    (void)broker_reply_error(c, x->h.id, TT_EIO, "the broker could not read the inventory index");
    goto out;
  }
  Tether__InventoryFindPage pg = TETHER__INVENTORY_FIND_PAGE__INIT;
  ProtobufCBinaryData *rows = calloc(x->nrows ? x->nrows : 1, sizeof *rows);
  Tether__InventoryFindDevice *ds = calloc(x->ndevs ? x->ndevs : 1, sizeof *ds);
  Tether__InventoryFindDevice **dp = calloc(x->ndevs ? x->ndevs : 1, sizeof *dp);
  if (!rows || !ds || !dp) {
    free(rows);
    free(ds);
    free(dp);
    (void)broker_reply_error(c, x->h.id, TT_ENOMEM, "out of memory");
    goto out;
  }
  for (size_t i = 0; i < x->nrows; i++) rows[i] = (ProtobufCBinaryData){x->lens[i], (uint8_t *)x->rows[i]};
  for (size_t i = 0; i < x->ndevs; i++) {
    tether__inventory_find_device__init(&ds[i]);
    ds[i].device = tt_text(x->devs[i].device);
    ds[i].hostname = tt_text(x->devs[i].host);
    ds[i].n_rows = x->devs[i].n;
    ds[i].rows = x->devs[i].refs;
    dp[i] = &ds[i];
  }
  pg.n_rows = x->nrows;
  pg.rows = rows;
  pg.n_devices = x->ndevs;
  pg.devices = dp;
  pg.more = x->more;
  if (x->more) find_key(x, x->cur.dev, x->cur.row, c->find_next);
  else memset(c->find_next, 0, sizeof c->find_next);
  pg.after_device = (uint64_t)x->cur.dev;
  pg.after_row = (uint64_t)x->cur.row;
  Tether__Response resp = TETHER__RESPONSE__INIT;
  resp.id = x->h.id;
  resp.body_case = TETHER__RESPONSE__BODY_INVENTORY_FIND;
  resp.inventory_find = &pg;
  if (tt_link_send(c->link, TT_K_RESPONSE, &resp.base)) tt_link_close(c->link, TT_EIO, "cannot answer");
  free(rows);
  free(ds);
  free(dp);
out:
  find_free(x);
}

int broker_inv_find(broker_conn_t *c, uint32_t id, const Tether__InventoryFindRequest *q) {
  char table[STORE_INV_NAME_MAX];
  if (tt_text_copy(table, sizeof table, q->table) || !table[0])
    return broker_reply_error(c, id, TT_EINVAL, "no valid table name");
  if (q->n_where < 1 || q->n_where > TT_INV_FIND_CONDS_MAX)
    return broker_reply_error(c, id, TT_EINVAL, "a find takes 1 to 8 conditions");
  if (q->after_device > INT64_MAX || q->after_row > INT64_MAX)
    return broker_reply_error(c, id, TT_EINVAL, "not a valid page cursor");
  find_req_t *x = broker_creq_new(c, id, sizeof(*x), STORE_LANE_READ, find_run, find_done, "inventory_find");
  if (!x) return TT_ENOMEM;
  snprintf(x->table, sizeof x->table, "%s", table);
  char where[WHERE_AUDIT_MAX + 1] = "";
  size_t wl = 0;
  for (size_t i = 0; i < q->n_where; i++) {
    const Tether__InventoryCondition *w = q->where[i];
    store_inv_cond_t *k = &x->cond[i];
    if (!w || tt_text_copy(k->col, sizeof k->col, w->column) || !k->col[0] ||
        tt_text_copy(x->values[i], sizeof x->values[i], w->value)) {
      free(x);
      return broker_reply_error(c, id, TT_EINVAL, "a condition is not a valid column and value");
    }
    k->value = x->values[i];
    k->len = strlen(x->values[i]);
    k->contains = w->contains;
    int n = snprintf(where + wl, sizeof where - wl, "%s%s%s%s", i ? " " : "", k->col, k->contains ? "~" : "=",
                     x->values[i]);
    if (n > 0) wl = wl + (size_t)n < sizeof where ? wl + (size_t)n : sizeof where - 1;
  }
  char where_ok[sizeof where + 8];
  tt_utf8_sanitize(where_ok, sizeof where_ok, where, strlen(where)); /* a cut may split a character */
  x->ncond = q->n_where;
  x->cur.dev = (int64_t)q->after_device;
  x->cur.row = (int64_t)q->after_row;
  /* One entry per find: its first page, or a page whose cursor this connection was not
   * given by the page before (a made-up cursor is a find of its own). */
  uint8_t key[32];
  find_key(x, x->cur.dev, x->cur.row, key);
  if ((q->after_device == 0 && q->after_row == 0) || memcmp(key, c->find_next, sizeof key))
    broker_audit(c->b, c->id.name, "inventory-find", "", "table", table, "where", where_ok, AUDIT_END);
  return broker_creq_submit(x);
}
