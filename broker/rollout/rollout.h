/* Agent releases and rollouts inside the broker (broker.h has the hooks the rest calls):
 * release.c keeps the releases (uploads from admins, the list in memory), serve.c sends a
 * release's bytes to an agent on a CHANNEL_RELEASE, engine.c runs the one rollout that may be
 * active at a time. All of it on the loop; files move on libuv's thread pool, rows on the
 * store's threads. */
#ifndef BROKER_ROLLOUT_H
#define BROKER_ROLLOUT_H

#include "broker.h"
#include "tt/release.h"

typedef enum {
  RO_PENDING = 0,
  RO_OFFERED,
  RO_DOWNLOADING,
  RO_VERIFIED,
  RO_INSTALLING,
  RO_INSTALLED,
  RO_CURRENT,     /* ran the version (or a newer one) already */
  RO_REFUSED,
  RO_FAILED,
  RO_ROLLED_BACK,
  RO_SKIPPED,     /* nothing to offer it: no release for its architecture, an old agent */
  RO__COUNT
} ro_state_t;

typedef struct {
  store_rollout_dev_t d;  /* as stored; d.state is ro_state_name(st) */
  ro_state_t st;
  uint64_t since;         /* uv_now when it entered st */
  char sha[65], rb_sha[65]; /* offered: the release, and the one to roll back to ("" none) */
  uint32_t req;           /* the offer's request id, until answered */
} ro_dev_t;

struct broker_rollout_s {
  store_release_t *rel;   /* every release, newest first */
  size_t nrel;
  tt_release_keys_t keys; /* release.keys: what `release add` checks (n == 0: not checked) */
  char dir[600];          /* DATA_DIR/releases */
  unsigned uploads;       /* in progress, broker-wide */
  uint64_t upload_seq;
  bool active;            /* r is running or paused */
  bool busy;              /* a start, pause, resume or cancel is in the store's queue */
  store_rollout_t r;
  ro_dev_t *dev;          /* sorted by device id */
  size_t ndev;
};

const char *ro_state_name(ro_state_t s);
/* The release of package tether-agent at version for arch: in channel (NULL: any, the
 * newest). NULL if none. */
const store_release_t *ro_release_find(broker_t *b, const char *version, const char *arch, const char *channel);
const store_release_t *ro_release_by_sha(broker_t *b, const char *sha);
/* DATA_DIR/releases/SHA.pkg */
void ro_release_path(broker_t *b, const char *sha, char *out, size_t cap);
/* May the active rollout still offer r (its version, or a device's way back under way)?
 * why says which rollout. */
bool ro_release_in_use(broker_t *b, const store_release_t *r, char *why, size_t cap);
/* Is device offered the release with this sha256 (hex), to download now? */
bool ro_may_fetch(broker_t *b, const char *device, const char *sha);
/* serve.c: stop the release download on c's link, if one runs (the agent keeps its part). */
void ro_serve_stop(broker_conn_t *c, const char *why);
/* release.c: an admin's upload ends with its connection; uploads idle too long go. */
void ro_upload_conn_gone(broker_conn_t *c);
void ro_upload_sweep(broker_t *b, uint64_t now);
/* engine.c: at start, the active rollout from the store. */
int ro_engine_load(broker_t *b, broker_store_t *s, char *err, size_t cap);

#endif
