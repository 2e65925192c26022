/* Inventory pushed by agents (tether.proto, InventoryOffer/Put): an offer's hashes are
 * compared with the store's on the reader thread; the tables that differ come in parts into
 * a per-connection buffer (bounded per offer and across the broker); once all are in, the
 * writer thread decompresses, checks each against its offered sha256 and its shape, and
 * stores them as one version. A malformed or oversized table refuses the whole offer and the
 * device's last good inventory stays. */
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>
#include "broker.h"
#include "tt/log.h"
#include "tt/msg.h"

#define MOD "inventory"

typedef struct {
  char name[TT_INV_TABLE_NAME_MAX + 1];
  uint8_t sha[32];
  bool wanted, removed, done;
  uint64_t size;      /* decompressed, as the agent says */
  tt_buf_t z;         /* compressed parts so far */
} itab_t;

/* An offer being received: allocated at the offer, freed when it ends (a connection that
 * only ever says "unchanged" holds nothing between offers). */
struct broker_inv_s {
  broker_conn_t *c;   /* NULL once orphaned: the connection went while a store request held
                         this; that request's completion frees it */
  struct broker_inv_s *prev, *next; /* every offer open, for the idle sweep */
  uint64_t offer;     /* 0: no offer open */
  int64_t collected_ms;
  uint64_t last_ms;   /* uv_now of its last message */
  itab_t t[TT_INV_TABLES_MAX];
  size_t n, nwant, ndone;
  uint64_t bytes;     /* compressed, buffered for this offer */
  uint64_t json;      /* the wanted tables' declared JSON sizes, summed as their parts start */
  bool busy;          /* a store request reads or writes this offer */
};

static uint64_t g_offers;
static uint64_t g_bytes; /* buffered across the broker */
static struct broker_inv_s *g_open;

static bool name_ok(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n > TT_INV_TABLE_NAME_MAX) return false;
  for (size_t i = 0; i < n; i++)
    if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_')) return false;
  return true;
}

static void inv_reset(struct broker_inv_s *v) {
  for (size_t i = 0; i < v->n; i++) tt_buf_free(&v->t[i].z);
  g_bytes -= v->bytes;
  v->bytes = v->json = 0;
  v->n = v->nwant = v->ndone = 0;
  v->offer = 0;
}

static void inv_free(struct broker_inv_s *v) {
  inv_reset(v);
  if (v->prev) v->prev->next = v->next;
  else g_open = v->next;
  if (v->next) v->next->prev = v->prev;
  free(v);
}

/* The offer ended (answered, refused, or stored): its state goes, unless a store request
 * still holds it (its completion calls this again). */
static void inv_release(broker_conn_t *c) {
  struct broker_inv_s *v = c->inv;
  if (!v || v->busy) return;
  c->inv = NULL;
  inv_free(v);
}

void broker_inv_conn_gone(broker_conn_t *c) {
  struct broker_inv_s *v = c->inv;
  if (!v) return;
  c->inv = NULL;
  if (v->busy) v->c = NULL; /* orphaned: the store request's completion frees it */
  else inv_free(v);
}

void broker_inv_sweep(broker_t *b, uint64_t now) {
  (void)b;
  for (struct broker_inv_s *v = g_open, *next; v; v = next) {
    next = v->next;
    if (v->busy || !v->c || now - v->last_ms < TT_INV_OFFER_IDLE_MS) continue;
    TT_WARN(MOD, "offer dropped", "device=%s why=\"no part for %u s\" buffered=%llu", v->c->id.name,
            TT_INV_OFFER_IDLE_MS / 1000u, (unsigned long long)v->bytes);
    v->c->inv = NULL;
    inv_free(v);
  }
}

/* Versions a connection may store: a burst, then one per TT_INV_VERSION_REFILL_MS, so a device
 * cannot keep the writer thread and the disk busy with changes. */
static bool version_allowed(broker_conn_t *c) {
  uint64_t now = uv_now(c->b->loop);
  if (!c->inv_refill_ms) {
    c->inv_tokens = TT_INV_VERSIONS_BURST;
    c->inv_refill_ms = now;
  }
  while (c->inv_tokens < TT_INV_VERSIONS_BURST && now - c->inv_refill_ms >= TT_INV_VERSION_REFILL_MS) {
    c->inv_tokens++;
    c->inv_refill_ms += TT_INV_VERSION_REFILL_MS;
  }
  if (c->inv_tokens == TT_INV_VERSIONS_BURST) c->inv_refill_ms = now;
  if (!c->inv_tokens) return false;
  c->inv_tokens--;
  return true;
}

/* ---- the offer: which tables differ ------------------------------------------------------ */

typedef struct {
  broker_creq_t h;
  char device[TT_NAME_MAX + 1];
  struct broker_inv_s *v;   /* the offer being compared (owned by the connection) */
  uint8_t stored[TT_INV_TABLES_MAX][32];
  char stored_names[TT_INV_TABLES_MAX][TT_INV_TABLE_NAME_MAX + 1];
  size_t nstored;
  int64_t version;          /* removals alone: the version they made */
  bool removals_only;
  bool digest_only;         /* the offer was a digest: compare it, nothing more */
  uint8_t digest[32];
  bool same;                /* ... and it matched */
  int64_t now_ms;
} offer_req_t;

static int hash_cb(void *ctx, const char *name, const uint8_t sha256[32]) {
  offer_req_t *x = ctx;
  if (x->nstored >= TT_INV_TABLES_MAX) return 0;
  snprintf(x->stored_names[x->nstored], sizeof(x->stored_names[0]), "%s", name);
  memcpy(x->stored[x->nstored], sha256, 32);
  x->nstored++;
  return 0;
}

static int offer_run(broker_store_t *s, store_req_t *r) {
  offer_req_t *x = (offer_req_t *)r;
  int rc = store_inv_hashes(s, x->device, hash_cb, x);
  if (rc) return rc;
  if (x->digest_only) { /* the agent's digest against the same over what is kept, in name order */
    EVP_MD_CTX *d = EVP_MD_CTX_new();
    uint8_t got[32];
    unsigned len = 32;
    if (!d || EVP_DigestInit_ex(d, EVP_sha256(), NULL) != 1) {
      EVP_MD_CTX_free(d);
      return TT_ENOMEM;
    }
    for (size_t k = 0; k < x->nstored; k++) {
      EVP_DigestUpdate(d, x->stored_names[k], strlen(x->stored_names[k]) + 1);
      EVP_DigestUpdate(d, x->stored[k], 32);
    }
    EVP_DigestFinal_ex(d, got, &len);
    EVP_MD_CTX_free(d);
    x->same = x->nstored > 0 && memcmp(got, x->digest, 32) == 0;
    return 0;
  }
  struct broker_inv_s *v = x->v;
  for (size_t i = 0; i < v->n; i++) {
    v->t[i].wanted = true;
    for (size_t k = 0; k < x->nstored; k++)
      if (strcmp(x->stored_names[k], v->t[i].name) == 0 && memcmp(x->stored[k], v->t[i].sha, 32) == 0)
        v->t[i].wanted = false;
    if (v->t[i].wanted) v->nwant++;
  }
  /* Kept but not offered: the device no longer has that table. */
  for (size_t k = 0; k < x->nstored; k++) {
    bool offered = false;
    for (size_t i = 0; i < v->n && !offered; i++) offered = strcmp(x->stored_names[k], v->t[i].name) == 0;
    if (!offered && v->n < TT_INV_TABLES_MAX) {
      itab_t *t = &v->t[v->n++];
      memset(t, 0, sizeof(*t));
      snprintf(t->name, sizeof(t->name), "%s", x->stored_names[k]);
      t->removed = true;
    }
  }
  bool removed = false;
  for (size_t i = 0; i < v->n; i++) removed |= v->t[i].removed;
  if (v->nwant == 0 && removed) {
    /* Nothing to wait for: the removals are the version. The reader lane may not write:
     * a short write here is rare (a table gone from a device), see push_store below. */
    x->removals_only = true;
  }
  return 0;
}

static int store_version(broker_store_t *s, const char *device, struct broker_inv_s *v, int64_t now_ms,
                         int64_t *version, char *why, size_t whylen);

typedef struct {
  broker_creq_t h;
  char device[TT_NAME_MAX + 1];
  struct broker_inv_s *v;
  int64_t now_ms, version;
  int64_t kept;             /* the device's inventory in the store after this version */
  char why[TT_TEXT_MAX];
} put_req_t;

static int put_run(broker_store_t *s, store_req_t *r) {
  put_req_t *x = (put_req_t *)r;
  int rc = store_version(s, x->device, x->v, x->now_ms, &x->version, x->why, sizeof(x->why));
  if (!rc && store_inv_bytes(s, x->device, &x->kept)) x->kept = -1;
  return rc;
}

static void put_done(store_req_t *r);

static int submit_store(broker_conn_t *c, uint32_t id) {
  if (!version_allowed(c)) {
    TT_WARN(MOD, "inventory refused", "device=%s why=\"too many changes\"", c->id.name);
    inv_release(c);
    return broker_reply_error(c, id, TT_EBUSY, "too many inventory changes from this device: try at the next interval");
  }
  put_req_t *x = broker_creq_new(c, id, sizeof(*x), STORE_LANE_WRITE, put_run, put_done, "inventory_put");
  if (!x) return TT_ENOMEM;
  snprintf(x->device, sizeof(x->device), "%s", c->id.name);
  x->v = c->inv;
  x->now_ms = (int64_t)broker_unix_ms();
  unsigned held = c->work;
  int rc = broker_creq_submit(x);
  if (c->work != held) c->inv->busy = true;
  else inv_release(c); /* refused busy: answered already */
  return rc;
}

static void offer_done(store_req_t *r) {
  offer_req_t *x = (offer_req_t *)r;
  broker_conn_t *c = broker_creq_conn(x);
  struct broker_inv_s *v = x->v;
  v->busy = false;
  if (!v->c) { /* orphaned: the connection went while we compared */
    inv_free(v);
    goto out;
  }
  if (!c) goto out; /* closing: broker_inv_conn_gone frees it */
  v->last_ms = uv_now(c->b->loop);
  if (r->rc) {
    (void)broker_reply_error(c, x->h.id, TT_EIO, "the broker could not read the inventory it keeps");
    inv_release(c);
    goto out;
  }
  if (x->removals_only) {
    (void)submit_store(c, x->h.id); /* answered with a Want of no names and the version */
    goto out;
  }
  Tether__InventoryWant w = TETHER__INVENTORY_WANT__INIT;
  w.send_tables = x->digest_only && !x->same;
  ProtobufCBinaryData names[TT_INV_TABLES_MAX];
  for (size_t i = 0; i < v->n; i++)
    if (v->t[i].wanted) names[w.n_names++] = tt_text(v->t[i].name);
  w.names = names;
  w.offer = w.n_names ? v->offer : 0;
  Tether__Response resp = TETHER__RESPONSE__INIT;
  resp.id = x->h.id;
  resp.body_case = TETHER__RESPONSE__BODY_INVENTORY_WANT;
  resp.inventory_want = &w;
  TT_DEBUG(MOD, "offer", "device=%s tables=%zu wanted=%zu", c->id.name, v->n, w.n_names);
  int src = tt_link_send(c->link, TT_K_RESPONSE, &resp.base);
  if (w.n_names == 0) inv_release(c); /* unchanged: the hash check was all */
  if (src) tt_link_close(c->link, TT_EIO, "cannot answer");
out:
  free(x);
}

int broker_inv_offer(broker_conn_t *c, uint32_t id, const Tether__InventoryOfferRequest *q) {
  if (c->id.role != TT_ROLE_AGENT) return broker_reply_error(c, id, TT_EDENIED, "only devices push inventory");
  if (q->n_tables > TT_INV_TABLES_MAX)
    return broker_reply_error(c, id, TT_ETOOBIG, "an inventory has at most 64 tables");
  if (q->digest.len && (q->digest.len != 32 || q->n_tables))
    return broker_reply_error(c, id, TT_EINVAL, "a digest is 32 bytes and comes without tables");
  if (q->collected_ms > INT64_MAX) return broker_reply_error(c, id, TT_EINVAL, "collected_ms out of range");
  if (c->inv && c->inv->busy)
    return broker_reply_error(c, id, TT_EBUSY, "the previous inventory is still being stored");
  if (!c->inv) {
    if (!(c->inv = calloc(1, sizeof(*c->inv)))) return TT_ENOMEM;
    c->inv->c = c;
    c->inv->next = g_open;
    if (g_open) g_open->prev = c->inv;
    g_open = c->inv;
  }
  struct broker_inv_s *v = c->inv;
  inv_reset(v); /* a new offer replaces one not finished */
  v->last_ms = uv_now(c->b->loop);
  for (size_t i = 0; i < q->n_tables; i++) {
    const Tether__InventoryHash *h = q->tables[i];
    itab_t *t = &v->t[v->n];
    memset(t, 0, sizeof(*t));
    if (tt_text_copy(t->name, sizeof(t->name), h->name) || !name_ok(t->name) || h->sha256.len != 32) {
      inv_release(c);
      TT_WARN(MOD, "offer refused", "device=%s why=\"bad table name or hash\"", c->id.name);
      return broker_reply_error(c, id, TT_EINVAL, "a table name is not [a-z0-9_]{1,63} or a hash is not 32 bytes");
    }
    for (size_t k = 0; k < v->n; k++)
      if (strcmp(v->t[k].name, t->name) == 0) {
        inv_release(c);
        return broker_reply_error(c, id, TT_EINVAL, "a table is offered twice");
      }
    memcpy(t->sha, h->sha256.data, 32);
    v->n++;
  }
  v->offer = ++g_offers;
  v->collected_ms = (int64_t)q->collected_ms;
  offer_req_t *x = broker_creq_new(c, id, sizeof(*x), STORE_LANE_READ, offer_run, offer_done, "inventory_offer");
  if (!x) return TT_ENOMEM;
  snprintf(x->device, sizeof(x->device), "%s", c->id.name);
  x->v = v;
  if (q->digest.len) {
    x->digest_only = true;
    memcpy(x->digest, q->digest.data, 32);
  }
  unsigned held = c->work;
  int rc = broker_creq_submit(x);
  if (c->work != held) v->busy = true;
  else inv_release(c);
  return rc;
}

/* ---- the tables ---------------------------------------------------------------------------- */

int broker_inv_put(broker_conn_t *c, uint32_t id, const Tether__InventoryPutRequest *q) {
  struct broker_inv_s *v = c->inv;
  char name[TT_INV_TABLE_NAME_MAX + 1];
  if (c->id.role != TT_ROLE_AGENT) return broker_reply_error(c, id, TT_EDENIED, "only devices push inventory");
  if (!v || !v->offer || v->busy || q->offer != v->offer)
    return broker_reply_error(c, id, TT_ESTATE, "no such inventory offer open");
  if (tt_text_copy(name, sizeof(name), q->name) || !name_ok(name)) {
    inv_release(c);
    return broker_reply_error(c, id, TT_EINVAL, "bad table name");
  }
  v->last_ms = uv_now(c->b->loop);
  itab_t *t = NULL;
  for (size_t i = 0; i < v->n && !t; i++)
    if (v->t[i].wanted && strcmp(v->t[i].name, name) == 0) t = &v->t[i];
  const char *why = NULL;
  int code = TT_EINVAL;
  if (!t) why = "that table was not asked for";
  else if (t->done) why = "that table is complete already";
  else if (q->size == 0 || q->size > TT_INV_TABLE_MAX) why = "a table's JSON is at most 4 MiB", code = TT_ETOOBIG;
  else if (q->total == 0 || q->total > ZSTD_compressBound(q->size) || q->total > TT_INV_OFFER_BYTES_MAX)
    why = "the compressed size does not fit the table's size", code = TT_ETOOBIG;
  else if (q->zdata.len == 0 || q->zdata.len > TT_INV_PART_MAX) why = "a part is 1 byte to 192 KiB", code = TT_ETOOBIG;
  else if (q->offset != t->z.len || q->offset + q->zdata.len > q->total) why = "a part out of order";
  else if (!t->z.len && v->json + q->size > TT_INV_OFFER_JSON_MAX)
    why = "an inventory is at most 16 MiB of JSON", code = TT_ETOOBIG;
  else if (t->z.len && (t->size != q->size || t->z.max != q->total)) why = "a part of another size";
  else if (v->bytes + q->zdata.len > TT_INV_OFFER_BYTES_MAX) why = "an inventory is at most 8 MiB compressed", code = TT_ETOOBIG;
  else if (g_bytes + q->zdata.len > TT_INV_BROKER_BYTES_MAX) why = "the broker is busy with other inventories, try later", code = TT_EBUSY;
  if (why) {
    TT_WARN(MOD, "inventory refused", "device=%s table=%s why=\"%s\"", c->id.name, name, why);
    inv_release(c);
    return broker_reply_error(c, id, code, why);
  }
  if (t->z.len == 0) {
    tt_buf_init(&t->z, (size_t)q->total);
    t->size = q->size;
    v->json += q->size;
  }
  if (tt_buf_append(&t->z, q->zdata.data, q->zdata.len)) {
    inv_release(c);
    return broker_reply_error(c, id, TT_ENOMEM, "out of memory");
  }
  v->bytes += q->zdata.len;
  g_bytes += q->zdata.len;
  if (t->z.len == q->total) {
    t->done = true;
    v->ndone++;
  }
  if (v->ndone < v->nwant) {
    Tether__InventoryPutResponse p = TETHER__INVENTORY_PUT_RESPONSE__INIT;
    Tether__Response resp = TETHER__RESPONSE__INIT;
    resp.id = id;
    resp.body_case = TETHER__RESPONSE__BODY_INVENTORY_PUT;
    resp.inventory_put = &p;
    return tt_link_send(c->link, TT_K_RESPONSE, &resp.base);
  }
  return submit_store(c, id);
}

/* ---- busy (writer thread) ---------------------------------------------------------------- */

static int store_version(broker_store_t *s, const char *device, struct broker_inv_s *v, int64_t now_ms,
                         int64_t *version, char *why, size_t whylen) {
  store_inv_table_t st[TT_INV_TABLES_MAX];
  size_t n = 0;
  int rc = 0;
  memset(st, 0, sizeof(st));
  for (size_t i = 0; i < v->n && !rc; i++) {
    itab_t *t = &v->t[i];
    if (!t->wanted && !t->removed) continue;
    store_inv_table_t *o = &st[n++];
    snprintf(o->name, sizeof(o->name), "%s", t->name);
    if (t->removed) continue; /* body NULL: removed */
    memcpy(o->sha256, t->sha, 32);
    unsigned long long sz = ZSTD_getFrameContentSize(tt_buf_head(&t->z), t->z.len);
    if (sz == ZSTD_CONTENTSIZE_ERROR || sz == ZSTD_CONTENTSIZE_UNKNOWN || sz != t->size || sz > TT_INV_TABLE_MAX) {
      snprintf(why, whylen, "%s: not a zstd frame of the size said", t->name);
      rc = TT_EINVAL;
      break;
    }
    uint8_t *body = malloc((size_t)sz);
    if (!body) {
      rc = TT_ENOMEM;
      break;
    }
    size_t got = ZSTD_decompress(body, (size_t)sz, tt_buf_head(&t->z), t->z.len);
    uint8_t h[32];
    unsigned hl = 32;
    if (ZSTD_isError(got) || got != sz) {
      snprintf(why, whylen, "%s: does not decompress", t->name);
      rc = TT_EINVAL;
    } else if (EVP_Digest(body, got, h, &hl, EVP_sha256(), NULL) != 1 || memcmp(h, t->sha, 32)) {
      snprintf(why, whylen, "%s: its sha256 is not the one offered", t->name);
      rc = TT_EINVAL;
    } else if (store_inv_table_check((const char *)body, got) != 0) {
      snprintf(why, whylen, "%s: not a table (columns and rows of strings)", t->name);
      rc = TT_EINVAL;
    }
    o->body = body;
    o->len = got;
  }
  int64_t kept = 0;
  if (!rc && (rc = store_inv_bytes(s, device, &kept)) == 0 && (uint64_t)kept > TT_INV_DEVICE_STORE_MAX) {
    snprintf(why, whylen, "the device's stored inventory is over its %llu MiB: kept as it was",
             (unsigned long long)(TT_INV_DEVICE_STORE_MAX >> 20));
    rc = TT_EFULL;
  }
  if (!rc) rc = store_inv_put(s, device, v->collected_ms, now_ms, st, n, version);
  for (size_t i = 0; i < n; i++) free((void *)st[i].body);
  return rc;
}

static void put_done(store_req_t *r) {
  put_req_t *x = (put_req_t *)r;
  struct broker_inv_s *v = x->v;
  broker_conn_t *c = broker_creq_conn(x);
  v->busy = false;
  bool removals_only = v->nwant == 0;
  size_t nwant = v->nwant;
  uint64_t bytes = v->bytes;
  if (!v->c) { /* orphaned: the connection went while we stored */
    inv_free(v);
    goto out;
  }
  if (c) inv_release(c);
  else {
    inv_reset(v); /* closing: broker_inv_conn_gone frees it */
    goto out;
  }
  if (r->rc) {
    TT_WARN(MOD, "inventory refused", "device=%s err=%s why=\"%s\"", x->device, tt_errname(r->rc), x->why);
    (void)broker_reply_error(c, x->h.id, r->rc == TT_EINVAL || r->rc == TT_EFULL ? r->rc : TT_EIO,
                             x->why[0] ? x->why : "the broker could not store the inventory");
    goto out;
  }
  TT_INFO(MOD, "inventory stored", "device=%s version=%lld tables=%zu bytes=%llu store_bytes=%lld", x->device,
          (long long)x->version, nwant, (unsigned long long)bytes, (long long)x->kept);
  Tether__Response resp = TETHER__RESPONSE__INIT;
  resp.id = x->h.id;
  Tether__InventoryWant w = TETHER__INVENTORY_WANT__INIT;
  Tether__InventoryPutResponse p = TETHER__INVENTORY_PUT_RESPONSE__INIT;
  if (removals_only) {
    w.version = (uint64_t)x->version;
    resp.body_case = TETHER__RESPONSE__BODY_INVENTORY_WANT;
    resp.inventory_want = &w;
  } else {
    p.complete = true;
    p.version = (uint64_t)x->version;
    resp.body_case = TETHER__RESPONSE__BODY_INVENTORY_PUT;
    resp.inventory_put = &p;
  }
  if (tt_link_send(c->link, TT_K_RESPONSE, &resp.base)) tt_link_close(c->link, TT_EIO, "cannot answer");
out:
  free(x);
}
