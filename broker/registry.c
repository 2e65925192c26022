/* Welcomed agents by device id: a fixed table of bucket chains, so finding a device is
 * O(1) whatever the fleet size (channel opens, listings, revocations all look up by id). */
#include <stdlib.h>
#include <string.h>
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
