/* Identities the broker knows at a glance: welcomed agents by device id (a fixed table of
 * bucket chains, so finding a device is O(1) whatever the fleet size), and revoked
 * identities, which every handshake checks without asking the store. */
#include <stdlib.h>
#include <string.h>
#include "tt/log.h"
#include "broker.h"

static uint32_t hash_id(const char *s) {
  uint32_t h = 2166136261u; /* FNV-1a */
  for (; *s; s++) h = (h ^ (uint8_t)*s) * 16777619u;
  return h & (BROKER_REGISTRY_BUCKETS - 1);
}

int registry_init(broker_t *b) {
  b->registry = calloc(BROKER_REGISTRY_BUCKETS, sizeof(*b->registry));
  return b->registry ? 0 : TT_ENOMEM;
}

void registry_free(broker_t *b) {
  free(b->registry);
  b->registry = NULL;
}

void registry_add(broker_t *b, broker_conn_t *c) {
  uint32_t h = hash_id(c->id.name);
  c->hnext = b->registry[h];
  b->registry[h] = c;
}

void registry_remove(broker_t *b, broker_conn_t *c) {
  for (broker_conn_t **pp = &b->registry[hash_id(c->id.name)]; *pp; pp = &(*pp)->hnext) {
    if (*pp == c) {
      *pp = c->hnext;
      c->hnext = NULL;
      return;
    }
  }
}

broker_conn_t *registry_get(broker_t *b, const char *device_id) {
  for (broker_conn_t *c = b->registry[hash_id(device_id)]; c; c = c->hnext)
    if (!c->link->closing && strcmp(c->id.name, device_id) == 0) return c;
  return NULL;
}

/* ---- revoked identities -------------------------------------------------------------
 * Revocations are never undone, so this set only grows: one node per revoked identity,
 * loaded from the store at start and added to when a revocation commits. */
struct broker_revoked_s {
  struct broker_revoked_s *next;
  store_revoke_kind_t kind;
  char name[STORE_NAME_MAX];
};
#define REVOKED_BUCKETS 4096u

static uint32_t revoked_hash(store_revoke_kind_t kind, const char *name) {
  return (hash_id(name) ^ (uint32_t)kind * 0x9e3779b9u) & (REVOKED_BUCKETS - 1);
}

static bool revoked_find(broker_t *b, store_revoke_kind_t kind, const char *name) {
  for (struct broker_revoked_s *r = b->revoked[revoked_hash(kind, name)]; r; r = r->next)
    if (r->kind == kind && strcmp(r->name, name) == 0) return true;
  return false;
}

bool revoked_has(broker_t *b, store_revoke_kind_t kind, const char *name) {
  if (!b->revoked) return false;
  if (revoked_find(b, kind, name)) return true;
  /* An erased person's revocation is kept under a hash of their name (records/erase.c). */
  char key[STORE_ERASE_REVOKED_CAP];
  if (kind != STORE_REVOKE_PERSON) return false;
  store_erase_revocation_key(name, key);
  return revoked_find(b, kind, key);
}

void revoked_add(broker_t *b, store_revoke_kind_t kind, const char *name) {
  if (!b->revoked || revoked_find(b, kind, name)) return;
  struct broker_revoked_s *r = calloc(1, sizeof(*r));
  if (!r) {
    /* The store has it: the next start loads it. Until then, say so loudly. */
    TT_ERROR("broker", "revocation not cached", "name=%s err=%s", name, tt_errname(TT_ENOMEM));
    return;
  }
  r->kind = kind;
  snprintf(r->name, sizeof(r->name), "%s", name);
  uint32_t h = revoked_hash(kind, name);
  r->next = b->revoked[h];
  b->revoked[h] = r;
}

static int revoked_load_cb(void *ctx, store_revoke_kind_t kind, const char *name) {
  broker_t *b = ctx;
  revoked_add(b, kind, name);
  return revoked_find(b, kind, name) ? 0 : TT_ENOMEM;
}

int revoked_load(broker_t *b, broker_store_t *s) {
  b->revoked = calloc(REVOKED_BUCKETS, sizeof(*b->revoked));
  if (!b->revoked) return TT_ENOMEM;
  return store_revocations(s, revoked_load_cb, b);
}

void revoked_free(broker_t *b) {
  if (!b->revoked) return;
  for (uint32_t i = 0; i < REVOKED_BUCKETS; i++) {
    struct broker_revoked_s *r = b->revoked[i];
    while (r) {
      struct broker_revoked_s *n = r->next;
      free(r);
      r = n;
    }
  }
  free(b->revoked);
  b->revoked = NULL;
}
