/* The inventory, pushed (tether.proto, InventoryOffer/Put): every inventory.interval (within
 * 10% either way) the collectors run on a worker thread; each table's canonical JSON is
 * hashed and compressed there. Then, and at every connect, the hashes are offered; the broker
 * names the tables it lacks and they go one part at a time. An unchanged machine sends the
 * offer alone. */
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zstd.h>
#include "agent.h"
#include "collect.h"
#include "tt/log.h"
#include "tt/msg.h"

#define INV_REQ_TIMEOUT_MS (60u * 1000u)
#define INV_ZSTD_LEVEL 3
/* A shell or exec ended (what a technician did may have changed the machine): collect this
 * long after, so that a few commands in a row make one collection, and at most once per
 * INV_SOON_GAP_MS (a collection costs ~25 ms of a worker thread; the broker stores a version
 * only when a table changed). */
#define INV_SOON_MS 2000u
#define INV_SOON_GAP_MS 10000u

typedef struct {
  char name[TT_INV_TABLE_NAME_MAX + 1];
  uint8_t sha[32];
  uint8_t *z;   /* zstd of the canonical JSON */
  size_t zlen, size;
} ptab_t;

typedef struct {
  ptab_t *t;
  size_t n;
  int64_t collected_ms;
  uint64_t wall_us, cpu_us; /* what collecting it cost (the worker thread's CPU) */
  size_t json_bytes;        /* the tables' JSON, before compression */
} pset_t;

struct agent_inv_s {
  agent_t *a;
  uv_timer_t timer;
  uv_work_t work;
  bool working, closing, timer_on;
  bool again;        /* agent_inv_soon while a collection ran: collect again soon after */
  pset_t cur;        /* the latest collection (loop thread) */
  pset_t next;       /* the worker's result */
  uint64_t cur_mono; /* uv_now when cur was collected */
  /* the offer in flight */
  bool offering;
  uint64_t offer;
  size_t *want;      /* indexes into cur.t */
  size_t nwant, iwant, off;
  uint64_t sent;     /* compressed bytes sent for this offer */
  size_t offer_bytes; /* the offer's own size on the wire (before TLS) */
};

static void pset_free(pset_t *p) {
  for (size_t i = 0; i < p->n; i++) free(p->t[i].z);
  free(p->t);
  memset(p, 0, sizeof(*p));
}

static uint64_t clock_us(clockid_t id) {
  struct timespec ts;
  clock_gettime(id, &ts);
  return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void work_cb(uv_work_t *w) {
  struct agent_inv_s *v = w->data;
  inv_env_t env = {.root = v->a->cfg.inventory_root, .path = v->a->cfg.inventory_path}; /* cfg: read-only once running */
  uint64_t t0 = clock_us(CLOCK_MONOTONIC), c0 = clock_us(CLOCK_THREAD_CPUTIME_ID);
  size_t n;
  const inv_collector_t *cs = inv_collectors(&n);
  pset_t *p = &v->next;
  p->t = calloc(n, sizeof(*p->t));
  if (!p->t) return;
  for (size_t i = 0; i < n; i++) {
    inv_table_t t;
    if (!inv_stable_table(cs[i].name) || inv_collect(&env, &cs[i], &t)) continue;
    json_t *j = inv_table_keep(&t, inv_stable_column) ? NULL : inv_table_json(&t);
    char *s = j ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(j);
    inv_table_free(&t);
    if (!s) continue;
    size_t len = strlen(s), cap = ZSTD_compressBound(len);
    ptab_t *pt = &p->t[p->n];
    if (len > TT_INV_TABLE_MAX) {
      TT_WARN("inventory", "table too large: not sent", "table=%s bytes=%zu", cs[i].name, len);
      free(s);
      continue;
    }
    pt->z = malloc(cap);
    if (!pt->z) {
      free(s);
      continue;
    }
    size_t z = ZSTD_compress(pt->z, cap, s, len, INV_ZSTD_LEVEL);
    unsigned hl = 32;
    EVP_Digest(s, len, pt->sha, &hl, EVP_sha256(), NULL);
    free(s);
    if (ZSTD_isError(z)) {
      free(pt->z);
      pt->z = NULL;
      continue;
    }
    pt->zlen = z;
    pt->size = len;
    p->json_bytes += len;
    snprintf(pt->name, sizeof(pt->name), "%s", cs[i].name);
    p->n++;
  }
  p->wall_us = clock_us(CLOCK_MONOTONIC) - t0;
  p->cpu_us = clock_us(CLOCK_THREAD_CPUTIME_ID) - c0;
}

static void offer(struct agent_inv_s *v, bool full);

static uint64_t next_wait(const agent_t *a) {
  uint64_t base = (uint64_t)a->cfg.inventory_interval_ms, spread = base * TT_INV_JITTER_PCT / 100;
  uint32_t r = 0;
  if (RAND_bytes((unsigned char *)&r, sizeof(r)) != 1) r = (uint32_t)uv_hrtime();
  return base - spread + (spread ? (uint64_t)r % (2 * spread + 1) : 0);
}

static void collect(struct agent_inv_s *v);

static void timer_cb(uv_timer_t *t) { collect(t->data); }

static void after_cb(uv_work_t *w, int status) {
  struct agent_inv_s *v = w->data;
  v->working = false;
  if (v->closing || status) {
    pset_free(&v->next);
    return;
  }
  if (v->offering) { /* an offer of the old set is out: the new one waits for the next tick */
    pset_free(&v->next);
  } else {
    pset_free(&v->cur);
    v->cur = v->next;
    memset(&v->next, 0, sizeof(v->next));
    v->cur_mono = uv_now(v->a->loop);
    size_t zbytes = 0;
    for (size_t i = 0; i < v->cur.n; i++) zbytes += v->cur.t[i].zlen;
    TT_INFO("inventory", "collected", "tables=%zu ms=%.1f cpu_ms=%.1f json_bytes=%zu zstd_bytes=%zu", v->cur.n,
            (double)v->cur.wall_us / 1000.0, (double)v->cur.cpu_us / 1000.0, v->cur.json_bytes, zbytes);
  }
  uv_timer_start(&v->timer, timer_cb, v->again ? INV_SOON_GAP_MS : next_wait(v->a), 0);
  v->again = false;
  if (v->a->welcomed) offer(v, false);
}

static void collect(struct agent_inv_s *v) {
  if (v->working || v->closing) return;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  v->next.collected_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
  v->work.data = v;
  if (uv_queue_work(v->a->loop, &v->work, work_cb, after_cb) == 0) v->working = true;
}

static void offer_end(struct agent_inv_s *v) {
  v->offering = false;
  free(v->want);
  v->want = NULL;
  v->nwant = v->iwant = v->off = 0;
}

static void put_next(struct agent_inv_s *v);

static void put_reply(void *data, const Tether__Response *r, int err) {
  struct agent_inv_s *v = data;
  if (err || !r || r->error || r->body_case != TETHER__RESPONSE__BODY_INVENTORY_PUT) {
    char why[TT_TEXT_MAX * 4 + 1] = "";
    if (r && r->error) tt_log_quote(why, sizeof(why), r->error->message.data, r->error->message.len);
    TT_WARN("inventory", "not sent", "err=%s why=\"%s\"", err ? tt_errname(err) : "refused", why);
    offer_end(v);
    return;
  }
  if (!r->inventory_put->complete && v->iwant >= v->nwant) {
    TT_WARN("inventory", "the broker wants more than was asked", "tables=%zu", v->nwant);
    offer_end(v);
    return;
  }
  if (r->inventory_put->complete) {
    TT_INFO("inventory", "sent", "version=%llu tables=%zu bytes=%llu offer_bytes=%zu",
            (unsigned long long)r->inventory_put->version, v->nwant, (unsigned long long)v->sent, v->offer_bytes);
    offer_end(v);
    return;
  }
  put_next(v);
}

static void put_next(struct agent_inv_s *v) {
  agent_t *a = v->a;
  if (!a->link || !a->welcomed) {
    offer_end(v);
    return;
  }
  ptab_t *t = &v->cur.t[v->want[v->iwant]];
  size_t n = t->zlen - v->off < TT_INV_PART_MAX ? t->zlen - v->off : TT_INV_PART_MAX;
  Tether__InventoryPutRequest p = TETHER__INVENTORY_PUT_REQUEST__INIT;
  p.offer = v->offer;
  p.name = tt_text(t->name);
  p.size = t->size;
  p.offset = v->off;
  p.total = t->zlen;
  p.zdata.data = t->z + v->off;
  p.zdata.len = n;
  Tether__Request q = TETHER__REQUEST__INIT;
  q.body_case = TETHER__REQUEST__BODY_INVENTORY_PUT;
  q.inventory_put = &p;
  v->off += n;
  v->sent += n;
  if (v->off == t->zlen) {
    v->iwant++;
    v->off = 0;
  }
  if (agent_reqs_send(&a->reqs, a->link, &q, INV_REQ_TIMEOUT_MS, put_reply, v)) {
    TT_WARN("inventory", "cannot send a table", "table=%s", t->name);
    offer_end(v);
  }
}

static void want_reply(void *data, const Tether__Response *r, int err) {
  struct agent_inv_s *v = data;
  if (err || !r || r->error || r->body_case != TETHER__RESPONSE__BODY_INVENTORY_WANT) {
    char why[TT_TEXT_MAX * 4 + 1] = "";
    if (r && r->error) tt_log_quote(why, sizeof(why), r->error->message.data, r->error->message.len);
    TT_WARN("inventory", "offer refused", "err=%s why=\"%s\"", err ? tt_errname(err) : "refused", why);
    offer_end(v);
    return;
  }
  const Tether__InventoryWant *w = r->inventory_want;
  if (w->send_tables) { /* our digest is not what the broker keeps: every table's hash then */
    offer_end(v);
    offer(v, true);
    return;
  }
  if (w->n_names == 0) {
    TT_INFO("inventory", "unchanged", "tables=%zu version=%llu offer_bytes=%zu", v->cur.n,
            (unsigned long long)w->version, v->offer_bytes);
    offer_end(v);
    return;
  }
  v->want = calloc(w->n_names, sizeof(*v->want));
  if (!v->want) {
    offer_end(v);
    return;
  }
  for (size_t i = 0; i < w->n_names; i++)
    for (size_t k = 0; k < v->cur.n; k++)
      if (strlen(v->cur.t[k].name) == w->names[i].len && memcmp(v->cur.t[k].name, w->names[i].data, w->names[i].len) == 0) {
        v->want[v->nwant++] = k;
        break;
      }
  if (v->nwant != w->n_names) {
    TT_WARN("inventory", "the broker wants a table we did not offer", "wanted=%zu", w->n_names);
    offer_end(v);
    return;
  }
  v->offer = w->offer;
  put_next(v);
}

static int name_order(const void *x, const void *y) {
  return strcmp(((const ptab_t *const *)x)[0]->name, ((const ptab_t *const *)y)[0]->name);
}

/* sha256 over each table's name, a NUL and its sha256, in name order (tether.proto). */
static void set_digest(const pset_t *p, uint8_t out[32]) {
  const ptab_t *by[TT_INV_TABLES_MAX];
  size_t n = p->n < TT_INV_TABLES_MAX ? p->n : TT_INV_TABLES_MAX;
  for (size_t i = 0; i < n; i++) by[i] = &p->t[i];
  qsort(by, n, sizeof(by[0]), name_order);
  EVP_MD_CTX *d = EVP_MD_CTX_new();
  unsigned len = 32;
  memset(out, 0, 32);
  if (!d || EVP_DigestInit_ex(d, EVP_sha256(), NULL) != 1) {
    EVP_MD_CTX_free(d);
    return;
  }
  for (size_t i = 0; i < n; i++) {
    EVP_DigestUpdate(d, by[i]->name, strlen(by[i]->name) + 1);
    EVP_DigestUpdate(d, by[i]->sha, 32);
  }
  EVP_DigestFinal_ex(d, out, &len);
  EVP_MD_CTX_free(d);
}

/* First the digest alone (an unchanged machine sends nothing else), then, if the broker
 * asks, every table's hash. */
static void offer(struct agent_inv_s *v, bool full) {
  agent_t *a = v->a;
  if (v->offering || !v->cur.t || !a->link || !a->welcomed) return;
  uint8_t digest[32];
  if (!full) {
    set_digest(&v->cur, digest);
    Tether__InventoryOfferRequest o = TETHER__INVENTORY_OFFER_REQUEST__INIT;
    o.collected_ms = (uint64_t)v->cur.collected_ms;
    o.digest.data = digest;
    o.digest.len = 32;
    Tether__Request q = TETHER__REQUEST__INIT;
    q.body_case = TETHER__REQUEST__BODY_INVENTORY_OFFER;
    q.inventory_offer = &o;
    v->sent = 0;
    v->offer_bytes = tether__request__get_packed_size(&q);
    if (agent_reqs_send(&a->reqs, a->link, &q, INV_REQ_TIMEOUT_MS, want_reply, v) == 0) v->offering = true;
    else TT_WARN("inventory", "cannot offer", "tables=%zu", v->cur.n);
    return;
  }
  Tether__InventoryHash *h = calloc(v->cur.n ? v->cur.n : 1, sizeof(*h));
  Tether__InventoryHash **hp = calloc(v->cur.n ? v->cur.n : 1, sizeof(*hp));
  if (!h || !hp) {
    free(h);
    free(hp);
    return;
  }
  for (size_t i = 0; i < v->cur.n; i++) {
    tether__inventory_hash__init(&h[i]);
    h[i].name = tt_text(v->cur.t[i].name);
    h[i].sha256.data = v->cur.t[i].sha;
    h[i].sha256.len = 32;
    hp[i] = &h[i];
  }
  Tether__InventoryOfferRequest o = TETHER__INVENTORY_OFFER_REQUEST__INIT;
  o.collected_ms = (uint64_t)v->cur.collected_ms;
  o.n_tables = v->cur.n;
  o.tables = hp;
  Tether__Request q = TETHER__REQUEST__INIT;
  q.body_case = TETHER__REQUEST__BODY_INVENTORY_OFFER;
  q.inventory_offer = &o;
  v->offer_bytes += tether__request__get_packed_size(&q);
  if (agent_reqs_send(&a->reqs, a->link, &q, INV_REQ_TIMEOUT_MS, want_reply, v) == 0) v->offering = true;
  else TT_WARN("inventory", "cannot offer", "tables=%zu", v->cur.n);
  free(h);
  free(hp);
}

void agent_inv_init(agent_t *a) {
  struct agent_inv_s *v = calloc(1, sizeof(*v));
  if (!v) {
    TT_ERROR("inventory", "out of memory", "what=%s", "no inventory will be sent");
    return;
  }
  v->a = a;
  a->inv = v;
  uv_timer_init(a->loop, &v->timer);
  v->timer.data = v;
  v->timer_on = true;
  collect(v); /* at start */
}

void agent_inv_welcomed(agent_t *a) {
  struct agent_inv_s *v = a->inv;
  if (!v) return;
  /* A collection older than the interval is stale: collect first (it offers when done). */
  if (v->cur.t && uv_now(a->loop) - v->cur_mono < (uint64_t)a->cfg.inventory_interval_ms) offer(v, false);
  else collect(v);
}

void agent_inv_soon(agent_t *a) {
  struct agent_inv_s *v = a->inv;
  if (!v || v->closing || !v->timer_on) return;
  if (v->working) {
    v->again = true;
    return;
  }
  uint64_t now = uv_now(a->loop), at = now + INV_SOON_MS;
  if (v->cur.t && v->cur_mono + INV_SOON_GAP_MS > at) at = v->cur_mono + INV_SOON_GAP_MS;
  uint64_t due = uv_timer_get_due_in(&v->timer);
  if (due && now + due <= at) return; /* a collection is due sooner anyway */
  TT_DEBUG("inventory", "collecting soon", "in_ms=%llu", (unsigned long long)(at - now));
  uv_timer_start(&v->timer, timer_cb, at - now, 0);
}

void agent_inv_close(agent_t *a) {
  struct agent_inv_s *v = a->inv;
  if (!v) return;
  v->closing = true;
  if (v->timer_on) uv_close((uv_handle_t *)&v->timer, NULL);
  v->timer_on = false;
}

void agent_inv_free(agent_t *a) {
  struct agent_inv_s *v = a->inv;
  if (!v) return;
  pset_free(&v->cur);
  pset_free(&v->next);
  free(v->want);
  free(v);
  a->inv = NULL;
}
