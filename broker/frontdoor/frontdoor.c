/* The front door: what each source address holds of what every newcomer shares (TLS
 * handshakes in progress, enrollment connections) and how many of its refusals are written
 * to the audit, so that one address can neither lock everyone else out nor grow the store
 * without bound. An address is an IPv4 /32 or an IPv6 /64.
 *
 * The table is one array made at start and never grown: an entry for every connection
 * that may count here (max_handshakes + TT_ENROLLING_MAX) plus TT_FRONTDOOR_IDLE_ADDRS for
 * addresses remembered only for their refusal counts. Entries nobody counts on sit on an
 * LRU list; a new address takes the least recently used one (its unwritten count moves to
 * the broker-wide summary). Lookups hash with SipHash under a key drawn at start, so a
 * peer cannot aim its addresses at one bucket. */
#include <arpa/inet.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>
#include "broker.h"
#include "tt/log.h"

struct broker_fd_addr_s {
  broker_addr_key_t key;
  bool used;                       /* holds an address (else free, at the LRU's head) */
  bool in_lru, dirty;
  broker_fd_addr_t *hnext;         /* hash bucket chain */
  broker_fd_addr_t *lprev, *lnext; /* LRU of entries no connection counts on */
  broker_fd_addr_t *bprev, *bnext; /* by_silent[silent] list */
  broker_fd_addr_t *dprev, *dnext; /* refusals held back, a summary due */
  broker_conn_t *silent_head, *silent_tail; /* connections that have sent nothing, oldest first */
  uint32_t handshaking, silent, enrolling, enroll_idle;
  uint64_t win_start;              /* uv_now of the window's first refusal */
  uint32_t audited, suppressed;    /* in this window */
};

struct broker_frontdoor_s {
  broker_fd_addr_t *slots;
  size_t nslots;
  broker_fd_addr_t **hash;
  size_t hmask;
  uint64_t k0, k1; /* SipHash key */
  broker_fd_addr_t *lru_head, *lru_tail;
  /* Addresses by how many connections they hold that have sent nothing: the one to drop
   * from is at by_silent[max_silent] in O(1). Counts never pass max_handshakes_per_address. */
  broker_fd_addr_t **by_silent, **by_silent_tail;
  uint32_t nbuckets, max_silent;
  broker_fd_addr_t *dirty;
  broker_conn_t *enroll_head, *enroll_tail;
  /* The whole broker's share of refusal entries in this window. */
  uint64_t g_win_start;
  uint32_t g_audited;
  uint64_t g_forgotten; /* refusals not written and no longer in any address's summary */
  /* For the once-a-second log line instead of one per refused connection. */
  uint32_t refused_addr, refused_full, dropped, enroll_refused, enroll_dropped;
};

/* ---- keys and the hash --------------------------------------------------------------- */

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                            \
  do {                                                                                      \
    v0 += v1; v1 = ROTL(v1, 13); v1 ^= v0; v0 = ROTL(v0, 32);                               \
    v2 += v3; v3 = ROTL(v3, 16); v3 ^= v2;                                                  \
    v0 += v3; v3 = ROTL(v3, 21); v3 ^= v0;                                                  \
    v2 += v1; v1 = ROTL(v1, 17); v1 ^= v2; v2 = ROTL(v2, 32);                               \
  } while (0)

/* SipHash-1-3 of the key's two words. */
static uint64_t key_hash(const broker_frontdoor_t *fd, const broker_addr_key_t *k) {
  uint64_t v0 = fd->k0 ^ 0x736f6d6570736575ull, v1 = fd->k1 ^ 0x646f72616e646f6dull;
  uint64_t v2 = fd->k0 ^ 0x6c7967656e657261ull, v3 = fd->k1 ^ 0x7465646279746573ull;
  uint64_t m[2] = {k->prefix, (uint64_t)k->v6 | (uint64_t)9 << 56};
  for (int i = 0; i < 2; i++) {
    v3 ^= m[i];
    SIPROUND;
    v0 ^= m[i];
  }
  v2 ^= 0xff;
  SIPROUND;
  SIPROUND;
  SIPROUND;
  return v0 ^ v1 ^ v2 ^ v3;
}

/* ---- the table ----------------------------------------------------------------------- */

static void lru_remove(broker_frontdoor_t *fd, broker_fd_addr_t *e) {
  if (!e->in_lru) return;
  if (e->lprev) e->lprev->lnext = e->lnext;
  else fd->lru_head = e->lnext;
  if (e->lnext) e->lnext->lprev = e->lprev;
  else fd->lru_tail = e->lprev;
  e->lprev = e->lnext = NULL;
  e->in_lru = false;
}

static void lru_append(broker_frontdoor_t *fd, broker_fd_addr_t *e) {
  e->lnext = NULL;
  e->lprev = fd->lru_tail;
  if (fd->lru_tail) fd->lru_tail->lnext = e;
  else fd->lru_head = e;
  fd->lru_tail = e;
  e->in_lru = true;
}

static void dirty_add(broker_frontdoor_t *fd, broker_fd_addr_t *e) {
  if (e->dirty) return;
  e->dprev = NULL;
  e->dnext = fd->dirty;
  if (fd->dirty) fd->dirty->dprev = e;
  fd->dirty = e;
  e->dirty = true;
}

static void dirty_remove(broker_frontdoor_t *fd, broker_fd_addr_t *e) {
  if (!e->dirty) return;
  if (e->dprev) e->dprev->dnext = e->dnext;
  else fd->dirty = e->dnext;
  if (e->dnext) e->dnext->dprev = e->dprev;
  e->dprev = e->dnext = NULL;
  e->dirty = false;
}

/* A connection counts on e (a handshake or an enrollment): it may not be forgotten. */
static void entry_update(broker_frontdoor_t *fd, broker_fd_addr_t *e) {
  bool pinned = e->handshaking || e->enrolling;
  if (pinned) lru_remove(fd, e);
  else if (!e->in_lru) lru_append(fd, e);
}

static broker_fd_addr_t *entry_find(broker_frontdoor_t *fd, const broker_addr_key_t *k) {
  for (broker_fd_addr_t *e = fd->hash[key_hash(fd, k) & fd->hmask]; e; e = e->hnext)
    if (broker_addr_key_eq(&e->key, k)) return e;
  return NULL;
}

static void entry_forget(broker_frontdoor_t *fd, broker_fd_addr_t *e) {
  if (e->dirty) fd->g_forgotten += e->suppressed;
  dirty_remove(fd, e);
  broker_fd_addr_t **pp = &fd->hash[key_hash(fd, &e->key) & fd->hmask];
  while (*pp != e) pp = &(*pp)->hnext;
  *pp = e->hnext;
  e->hnext = NULL;
  e->used = false;
}

/* e for k, made if new (from the least recently used entry nobody counts on); NULL only
 * if every entry is counted on, which the table's size rules out. */
static broker_fd_addr_t *entry_get(broker_frontdoor_t *fd, const broker_addr_key_t *k) {
  broker_fd_addr_t *e = entry_find(fd, k);
  if (e) {
    if (e->in_lru) { /* seen now: to the LRU's tail */
      lru_remove(fd, e);
      lru_append(fd, e);
    }
    return e;
  }
  e = fd->lru_head;
  if (!e) return NULL;
  lru_remove(fd, e);
  if (e->used) entry_forget(fd, e);
  memset(e, 0, sizeof(*e));
  e->key = *k;
  e->used = true;
  size_t h = key_hash(fd, k) & fd->hmask;
  e->hnext = fd->hash[h];
  fd->hash[h] = e;
  lru_append(fd, e);
  return e;
}

int broker_frontdoor_init(broker_t *b) {
  broker_frontdoor_t *fd = calloc(1, sizeof(*fd));
  if (!fd) return TT_ENOMEM;
  fd->nslots = (size_t)b->cfg.max_handshakes + TT_ENROLLING_MAX + TT_FRONTDOOR_IDLE_ADDRS;
  size_t nb = 1;
  while (nb < fd->nslots) nb <<= 1;
  fd->hmask = nb - 1;
  /* An address's silent count never passes its share of handshakes, nor the total. */
  int64_t most = b->cfg.max_handshakes_per_address < b->cfg.max_handshakes ? b->cfg.max_handshakes_per_address
                                                                           : b->cfg.max_handshakes;
  fd->nbuckets = (uint32_t)most + 1;
  fd->slots = calloc(fd->nslots, sizeof(*fd->slots));
  fd->hash = calloc(nb, sizeof(*fd->hash));
  fd->by_silent = calloc(fd->nbuckets, sizeof(*fd->by_silent));
  fd->by_silent_tail = calloc(fd->nbuckets, sizeof(*fd->by_silent_tail));
  uint64_t k[2];
  if (!fd->slots || !fd->hash || !fd->by_silent || !fd->by_silent_tail ||
      RAND_bytes((unsigned char *)k, sizeof(k)) != 1) {
    free(fd->slots);
    free(fd->hash);
    free(fd->by_silent);
    free(fd->by_silent_tail);
    free(fd);
    return TT_ENOMEM;
  }
  fd->k0 = k[0];
  fd->k1 = k[1];
  for (size_t i = 0; i < fd->nslots; i++) lru_append(fd, &fd->slots[i]);
  b->frontdoor = fd;
  return 0;
}

void broker_frontdoor_free(broker_t *b) {
  broker_frontdoor_t *fd = b->frontdoor;
  if (!fd) return;
  free(fd->slots);
  free(fd->hash);
  free(fd->by_silent);
  free(fd->by_silent_tail);
  free(fd);
  b->frontdoor = NULL;
}

/* ---- connections that have sent nothing ------------------------------------------------ */

static void bucket_move(broker_frontdoor_t *fd, broker_fd_addr_t *e, uint32_t from, uint32_t to) {
  if (from) {
    if (e->bprev) e->bprev->bnext = e->bnext;
    else fd->by_silent[from] = e->bnext;
    if (e->bnext) e->bnext->bprev = e->bprev;
    else fd->by_silent_tail[from] = e->bprev;
    e->bprev = e->bnext = NULL;
  }
  if (to) {
    /* Appended: among equals, the address that got there first is dropped from first. */
    e->bprev = fd->by_silent_tail[to];
    if (e->bprev) e->bprev->bnext = e;
    else fd->by_silent[to] = e;
    fd->by_silent_tail[to] = e;
    if (to > fd->max_silent) fd->max_silent = to;
  }
}

static void silent_add(broker_frontdoor_t *fd, broker_conn_t *c) {
  broker_fd_addr_t *e = c->fd_addr;
  c->snext = NULL;
  c->sprev = e->silent_tail;
  if (e->silent_tail) e->silent_tail->snext = c;
  else e->silent_head = c;
  e->silent_tail = c;
  bucket_move(fd, e, e->silent, e->silent + 1);
  e->silent++;
  c->fd_silent = true;
}

static void silent_remove(broker_frontdoor_t *fd, broker_conn_t *c) {
  if (!c->fd_silent) return;
  broker_fd_addr_t *e = c->fd_addr;
  if (c->sprev) c->sprev->snext = c->snext;
  else e->silent_head = c->snext;
  if (c->snext) c->snext->sprev = c->sprev;
  else e->silent_tail = c->sprev;
  c->sprev = c->snext = NULL;
  bucket_move(fd, e, e->silent, e->silent - 1);
  e->silent--;
  c->fd_silent = false;
}

/* The oldest connection that has sent nothing, of the address holding the most. Whether a
 * connection has sent anything is looked at here, not on every read: those that have are
 * taken off the lists on the way (each once), and the next address is tried. */
static broker_conn_t *silent_victim(broker_frontdoor_t *fd) {
  for (;;) {
    while (fd->max_silent && !fd->by_silent[fd->max_silent]) fd->max_silent--;
    if (!fd->max_silent) return NULL;
    broker_fd_addr_t *e = fd->by_silent[fd->max_silent];
    broker_conn_t *c = e->silent_head;
    if (c->link && c->link->tls && !c->link->closing && !tt_tls_heard(c->link->tls)) return c;
    silent_remove(fd, c);
  }
}

/* c stops counting against its address when it counts for nothing there any more. */
static void conn_unpin(broker_frontdoor_t *fd, broker_conn_t *c) {
  if (!c->fd_addr) return;
  entry_update(fd, c->fd_addr);
  if (!c->fd_handshake && !c->fd_enrolling) c->fd_addr = NULL;
}

static void release_handshake(broker_t *b, broker_conn_t *c) {
  broker_frontdoor_t *fd = b->frontdoor;
  silent_remove(fd, c);
  if (c->fd_handshake) {
    c->fd_addr->handshaking--;
    b->handshaking--;
    c->fd_handshake = false;
  }
  conn_unpin(fd, c);
}

static void release_enroll(broker_t *b, broker_conn_t *c) {
  broker_frontdoor_t *fd = b->frontdoor;
  if (!c->fd_enrolling) return;
  if (c->eprev) c->eprev->enext = c->enext;
  else fd->enroll_head = c->enext;
  if (c->enext) c->enext->eprev = c->eprev;
  else fd->enroll_tail = c->eprev;
  c->eprev = c->enext = NULL;
  if (c->fd_enroll_idle) c->fd_addr->enroll_idle--;
  c->fd_addr->enrolling--;
  b->enrolling--;
  c->fd_enrolling = c->fd_enroll_idle = false;
  conn_unpin(fd, c);
}

bool broker_frontdoor_full(broker_t *b) {
  return (int64_t)b->handshaking >= b->cfg.max_handshakes && !silent_victim(b->frontdoor);
}

bool broker_frontdoor_admit(broker_conn_t *c, const struct sockaddr *peer) {
  broker_t *b = c->b;
  broker_frontdoor_t *fd = b->frontdoor;
  broker_addr_key_of(peer, &c->akey);
  broker_fd_addr_t *e = entry_get(fd, &c->akey);
  if (!e) {
    fd->refused_full++;
    return false;
  }
  if ((int64_t)e->handshaking >= b->cfg.max_handshakes_per_address) {
    fd->refused_addr++;
    return false;
  }
  if ((int64_t)b->handshaking >= b->cfg.max_handshakes) {
    broker_conn_t *v = silent_victim(fd);
    if (!v) {
      fd->refused_full++;
      return false;
    }
    TT_DEBUG("frontdoor", "dropping a connection that sent nothing", "peer=%s", v->addr);
    release_handshake(b, v);
    tt_link_close(v->link, TT_EBUSY, NULL);
    fd->dropped++;
  }
  c->fd_addr = e;
  c->fd_handshake = true;
  e->handshaking++;
  b->handshaking++;
  entry_update(fd, e);
  silent_add(fd, c);
  return true;
}

void broker_frontdoor_handshake_done(broker_conn_t *c) { release_handshake(c->b, c); }

/* The oldest idle enrollment connection of the address holding the most idle ones. */
static broker_conn_t *enroll_victim(broker_frontdoor_t *fd) {
  broker_conn_t *best = NULL;
  for (broker_conn_t *c = fd->enroll_head; c; c = c->enext) {
    if (!c->fd_enroll_idle || !c->link || c->link->closing) continue;
    if (!best || c->fd_addr->enroll_idle > best->fd_addr->enroll_idle) best = c;
  }
  return best;
}

bool broker_frontdoor_enroll_admit(broker_conn_t *c) {
  broker_t *b = c->b;
  broker_frontdoor_t *fd = b->frontdoor;
  broker_fd_addr_t *e = c->fd_addr;
  if (!e || !c->fd_handshake) return false; /* admitted without a handshake: not ours */
  if ((int64_t)e->enrolling >= b->cfg.max_enrolling_per_address) {
    fd->enroll_refused++;
    return false;
  }
  if (b->enrolling >= TT_ENROLLING_MAX) {
    broker_conn_t *v = enroll_victim(fd);
    if (!v) {
      fd->enroll_refused++;
      return false;
    }
    TT_DEBUG("frontdoor", "dropping an idle enrollment connection", "peer=%s", v->addr);
    release_enroll(b, v);
    tt_link_close(v->link, TT_EBUSY, "an idle enrollment connection dropped for a newcomer");
    fd->enroll_dropped++;
  }
  c->fd_enrolling = c->fd_enroll_idle = true;
  e->enrolling++;
  e->enroll_idle++;
  b->enrolling++;
  c->enext = NULL;
  c->eprev = fd->enroll_tail;
  if (fd->enroll_tail) fd->enroll_tail->enext = c;
  else fd->enroll_head = c;
  fd->enroll_tail = c;
  entry_update(fd, e);
  return true;
}

void broker_frontdoor_enroll_busy(broker_conn_t *c) {
  if (!c->fd_enroll_idle) return;
  c->fd_addr->enroll_idle--;
  c->fd_enroll_idle = false;
}

void broker_frontdoor_conn_gone(broker_conn_t *c) {
  release_handshake(c->b, c);
  release_enroll(c->b, c);
}

/* ---- refusals in the audit ------------------------------------------------------------- */

static void window_text(const broker_t *b, char *out, size_t cap) {
  snprintf(out, cap, "%llds", (long long)(b->cfg.audit_refusal_window_ms / 1000));
}

/* The address's window is over: its summary, if it held anything back. A summary counts
 * against the broker's share too; past it, the count goes to the broker-wide summary. */
static void window_close(broker_t *b, broker_fd_addr_t *e) {
  broker_frontdoor_t *fd = b->frontdoor;
  if (e->suppressed) {
    if ((int64_t)fd->g_audited < b->cfg.audit_refusals_total) {
      char addr[INET6_ADDRSTRLEN + 4], n[24], w[24];
      broker_addr_key_text(&e->key, addr, sizeof(addr));
      snprintf(n, sizeof(n), "%u", e->suppressed);
      window_text(b, w, sizeof(w));
      TT_WARN("frontdoor", "refusals not audited one by one", "address=%s suppressed=%u window=%s", addr,
              e->suppressed, w);
      broker_audit(b, "broker", "refuse-summary", "", "address", addr, "suppressed", n, "window", w, AUDIT_END);
      fd->g_audited++;
    } else {
      fd->g_forgotten += e->suppressed;
    }
  }
  e->audited = e->suppressed = 0;
  dirty_remove(fd, e);
}

/* The broker-wide window: what no address's summary could carry gets one entry. */
static void global_roll(broker_t *b, uint64_t now, bool force) {
  broker_frontdoor_t *fd = b->frontdoor;
  if (!force && now - fd->g_win_start < (uint64_t)b->cfg.audit_refusal_window_ms) return;
  if (fd->g_forgotten) {
    char n[24], w[24];
    snprintf(n, sizeof(n), "%llu", (unsigned long long)fd->g_forgotten);
    window_text(b, w, sizeof(w));
    TT_WARN("frontdoor", "refusals not audited one by one", "address=* suppressed=%llu window=%s",
            (unsigned long long)fd->g_forgotten, w);
    broker_audit(b, "broker", "refuse-summary", "", "address", "*", "suppressed", n, "window", w, AUDIT_END);
  }
  fd->g_forgotten = 0;
  fd->g_audited = 0;
  fd->g_win_start = now;
}

bool broker_frontdoor_audit_ok(broker_t *b, const broker_conn_t *c) {
  broker_frontdoor_t *fd = b->frontdoor;
  uint64_t now = uv_now(b->loop);
  global_roll(b, now, false);
  broker_fd_addr_t *e = entry_get(fd, &c->akey);
  if (!e) {
    fd->g_forgotten++;
    return false;
  }
  if (e->audited == 0 && e->suppressed == 0) e->win_start = now;
  else if (now - e->win_start >= (uint64_t)b->cfg.audit_refusal_window_ms) {
    window_close(b, e);
    e->win_start = now;
  }
  if ((int64_t)e->audited < b->cfg.audit_refusals_per_address &&
      (int64_t)fd->g_audited < b->cfg.audit_refusals_total) {
    e->audited++;
    fd->g_audited++;
    return true;
  }
  e->suppressed++;
  dirty_add(fd, e);
  return false;
}

void broker_frontdoor_sweep(broker_t *b, uint64_t now) {
  broker_frontdoor_t *fd = b->frontdoor;
  global_roll(b, now, false);
  for (broker_fd_addr_t *e = fd->dirty, *next; e; e = next) {
    next = e->dnext;
    if (now - e->win_start >= (uint64_t)b->cfg.audit_refusal_window_ms) window_close(b, e);
  }
  if (fd->refused_addr)
    TT_WARN("frontdoor", "connections refused", "reason=per_address count=%u limit=%lld", fd->refused_addr,
            (long long)b->cfg.max_handshakes_per_address);
  if (fd->refused_full)
    TT_WARN("frontdoor", "connections refused", "reason=max_handshakes count=%u limit=%lld", fd->refused_full,
            (long long)b->cfg.max_handshakes);
  if (fd->dropped)
    TT_INFO("frontdoor", "connections that sent nothing dropped for newcomers", "count=%u", fd->dropped);
  if (fd->enroll_refused)
    TT_WARN("frontdoor", "enrollment connections refused", "count=%u per_address=%lld total=%u",
            fd->enroll_refused, (long long)b->cfg.max_enrolling_per_address, TT_ENROLLING_MAX);
  if (fd->enroll_dropped)
    TT_INFO("frontdoor", "idle enrollment connections dropped for newcomers", "count=%u", fd->enroll_dropped);
  fd->refused_addr = fd->refused_full = fd->dropped = fd->enroll_refused = fd->enroll_dropped = 0;
}

void broker_frontdoor_flush(broker_t *b) {
  broker_frontdoor_t *fd = b->frontdoor;
  if (!fd) return;
  while (fd->dirty) window_close(b, fd->dirty);
  global_roll(b, uv_now(b->loop), true);
}
