/* Reachability, for the diagnostics report: names resolved through the machine's own
 * resolver (dns_lookups: the broker's host name and the machine's by default), the link to
 * the broker as the agent sees it (broker_connection), and this machine's clock against the
 * broker's (time_skew). The last two are facts of the running agent (env->live). */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include "linux.h"
#include "scan.h"
#include "tt/err.h"

#define DNS_ERR_MAX 128
/* Addresses listed for one name (a CDN name has a handful; past this the cell is full). */
#define DNS_ADDRS_MAX 32

const char *const inv_linux_dns_lookups_cols[] = {"name", "addresses", "ms", "error", NULL};
const char *const inv_linux_broker_connection_cols[] = {
    "address", "name", "state", "connected_since", "connects", "round_trip_ms", "heartbeat_ms", "last_heard_ms_ago",
    NULL};
const char *const inv_linux_time_skew_cols[] = {"source",        "local_time",     "remote_time",
                                                "skew_ms",       "uncertainty_ms", "measured_at", NULL};

static uint64_t mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void i64s(char *out, size_t cap, int64_t v) { snprintf(out, cap, "%lld", (long long)v); }

/* ---- dns_lookups ------------------------------------------------------------------------- */

int inv_resolve_getaddrinfo(const char *name, char *addrs, size_t cap, char *err, size_t errlen) {
  struct addrinfo hints, *res = NULL;
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM; /* one entry an address, not one a socket type */
  addrs[0] = err[0] = 0;
  int rc = getaddrinfo(name, NULL, &hints, &res);
  if (rc) {
    snprintf(err, errlen, "%s", rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
    return TT_ENOTFOUND;
  }
  size_t o = 0, nseen = 0;
  char seen[DNS_ADDRS_MAX][INET6_ADDRSTRLEN];
  for (struct addrinfo *a = res; a && nseen < DNS_ADDRS_MAX; a = a->ai_next) {
    char s[INET6_ADDRSTRLEN];
    const void *p = a->ai_family == AF_INET ? (const void *)&((struct sockaddr_in *)a->ai_addr)->sin_addr
                    : a->ai_family == AF_INET6 ? (const void *)&((struct sockaddr_in6 *)a->ai_addr)->sin6_addr
                                               : NULL;
    if (!p || !inet_ntop(a->ai_family, p, s, sizeof(s))) continue;
    /* Once each: a resolver may give one address twice (hosts file and DNS). */
    bool dup = false;
    for (size_t k = 0; k < nseen && !dup; k++) dup = !strcmp(seen[k], s);
    if (dup) continue;
    memcpy(seen[nseen++], s, sizeof(s));
    int w = snprintf(addrs + o, cap - o, "%s%s", o ? ", " : "", s);
    if (w < 0 || (size_t)w >= cap - o) {
      addrs[o] = 0;
      break;
    }
    o += (size_t)w;
  }
  freeaddrinfo(res);
  return 0;
}

/* One batch of lookups, shared by the collector and a thread per name: whoever lets go of
 * it last frees it, so a lookup still hanging when the collector gives up finishes into
 * memory that is still there, and no one waits for it. */
typedef struct {
  char name[INV_DNS_NAME_MAX + 1];
  char addrs[INV_CELL_MAX];
  char err[DNS_ERR_MAX];
  uint64_t ms;
  bool done;
} dns_one_t;

typedef struct dns_batch_s dns_batch_t;

typedef struct {
  dns_batch_t *b;
  size_t i;
} dns_arg_t;

struct dns_batch_s {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  size_t refs, pending;
  inv_resolve_fn fn;
  dns_one_t r[INV_DNS_NAMES_MAX];
  dns_arg_t args[INV_DNS_NAMES_MAX];
};

static void batch_unref(dns_batch_t *b) {
  pthread_mutex_lock(&b->mu);
  bool last = --b->refs == 0;
  pthread_mutex_unlock(&b->mu);
  if (!last) return;
  pthread_cond_destroy(&b->cv);
  pthread_mutex_destroy(&b->mu);
  free(b);
}

static void *dns_thread(void *p) {
  dns_arg_t *a = p;
  dns_batch_t *b = a->b;
  dns_one_t *r = &b->r[a->i];
  char addrs[INV_CELL_MAX], err[DNS_ERR_MAX];
  uint64_t t0 = mono_ms();
  /* r->name is set before the thread starts and never changes: read without the lock. */
  int rc = b->fn(r->name, addrs, sizeof(addrs), err, sizeof(err));
  uint64_t ms = mono_ms() - t0;
  pthread_mutex_lock(&b->mu);
  snprintf(r->addrs, sizeof(r->addrs), "%s", rc ? "" : addrs);
  snprintf(r->err, sizeof(r->err), "%s", rc ? (err[0] ? err : tt_strerror(rc)) : "");
  r->ms = ms;
  r->done = true;
  b->pending--;
  pthread_cond_broadcast(&b->cv);
  pthread_mutex_unlock(&b->mu);
  batch_unref(b);
  return NULL;
}

void inv_linux_dns_lookups_with(const inv_env_t *env, inv_table_t *tab, inv_resolve_fn fn) {
  const inv_live_t *live = env->live;
  if (!live) {
    inv_table_fail(tab, "known only to the running agent (diagnostics report)");
    return;
  }
  if (live->ndns == 0) return;
  size_t n = live->ndns < INV_DNS_NAMES_MAX ? live->ndns : INV_DNS_NAMES_MAX;
  uint32_t timeout = live->dns_timeout_ms ? live->dns_timeout_ms : INV_DNS_TIMEOUT_MS;
  dns_batch_t *b = calloc(1, sizeof(*b));
  pthread_condattr_t ca;
  if (!b || pthread_condattr_init(&ca)) {
    free(b);
    inv_table_fail(tab, "out of memory");
    return;
  }
  /* The deadline is on the monotonic clock: a clock set back (the skew this report is
   * about) must not stretch it. */
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_mutex_init(&b->mu, NULL);
  pthread_cond_init(&b->cv, &ca);
  pthread_condattr_destroy(&ca);
  b->fn = fn;
  b->refs = 1;
  pthread_attr_t at;
  pthread_attr_init(&at);
  pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
  for (size_t i = 0; i < n; i++) {
    dns_one_t *r = &b->r[i];
    snprintf(r->name, sizeof(r->name), "%s", live->dns[i]);
    b->args[i] = (dns_arg_t){b, i};
    pthread_t th;
    pthread_mutex_lock(&b->mu);
    b->refs++, b->pending++;
    pthread_mutex_unlock(&b->mu);
    int e = pthread_create(&th, &at, dns_thread, &b->args[i]);
    if (e) {
      pthread_mutex_lock(&b->mu);
      b->refs--, b->pending--;
      r->done = true;
      snprintf(r->err, sizeof(r->err), "cannot start a lookup: %s", strerror(e));
      pthread_mutex_unlock(&b->mu);
    }
  }
  pthread_attr_destroy(&at);
  struct timespec dl;
  clock_gettime(CLOCK_MONOTONIC, &dl);
  dl.tv_sec += timeout / 1000;
  dl.tv_nsec += (long)(timeout % 1000) * 1000000L;
  if (dl.tv_nsec >= 1000000000L) dl.tv_sec++, dl.tv_nsec -= 1000000000L;
  pthread_mutex_lock(&b->mu);
  while (b->pending > 0)
    if (pthread_cond_timedwait(&b->cv, &b->mu, &dl) == ETIMEDOUT) break;
  /* Copied out under the lock: a late lookup may finish while the rows are made. */
  dns_one_t copy[INV_DNS_NAMES_MAX];
  memcpy(copy, b->r, sizeof(copy));
  pthread_mutex_unlock(&b->mu);
  batch_unref(b);
  for (size_t i = 0; i < n; i++) {
    char ms[24], err[DNS_ERR_MAX];
    dns_one_t *r = &copy[i];
    if (r->done) {
      inv_u64_str(ms, sizeof(ms), r->ms);
      snprintf(err, sizeof(err), "%s", r->err);
    } else {
      inv_u64_str(ms, sizeof(ms), timeout);
      snprintf(err, sizeof(err), "no answer within %u ms", (unsigned)timeout);
    }
    const char *row[] = {r->name, r->addrs, ms, err};
    if (inv_table_add(tab, row)) break;
  }
}

void inv_linux_dns_lookups(const inv_env_t *env, inv_table_t *tab) {
  inv_linux_dns_lookups_with(env, tab, inv_resolve_getaddrinfo);
}

/* ---- broker_connection, time_skew -------------------------------------------------------- */

void inv_linux_broker_connection(const inv_env_t *env, inv_table_t *tab) {
  const inv_live_t *l = env->live;
  if (!l) {
    inv_table_fail(tab, "known only to the running agent (diagnostics report)");
    return;
  }
  char since[24] = "", connects[24], rtt[32] = "", hb[24] = "", heard[24] = "";
  if (l->connected && l->connected_at_ms > 0) i64s(since, sizeof(since), l->connected_at_ms / 1000);
  inv_u64_str(connects, sizeof(connects), l->connects);
  if (l->rtt_us >= 0) snprintf(rtt, sizeof(rtt), "%lld.%03lld", (long long)(l->rtt_us / 1000), (long long)(l->rtt_us % 1000));
  if (l->heartbeat_ms) inv_u64_str(hb, sizeof(hb), l->heartbeat_ms);
  if (l->heard_ms_ago >= 0) i64s(heard, sizeof(heard), l->heard_ms_ago);
  const char *row[] = {l->broker, l->broker_name, l->connected ? "connected" : "disconnected", since, connects,
                       rtt,       hb,             heard};
  inv_table_add(tab, row);
  if (l->connected && l->rtt_us < 0 && l->rtt_wait_ms)
    inv_table_fail(tab, "the broker did not answer a ping within %u ms", (unsigned)l->rtt_wait_ms);
  else if (l->connected && l->rtt_us < 0)
    inv_table_fail(tab, "no ping could be sent to the broker");
}

void inv_linux_time_skew(const inv_env_t *env, inv_table_t *tab) {
  const inv_live_t *l = env->live;
  if (!l) {
    inv_table_fail(tab, "known only to the running agent (diagnostics report)");
    return;
  }
  if (!l->clock_known) {
    inv_table_fail(tab, "the broker did not say its time (a broker older than this agent)");
    return;
  }
  char local[24], remote[24], skew[24], unc[24], at[24];
  i64s(local, sizeof(local), l->local_ms);
  i64s(remote, sizeof(remote), l->broker_ms);
  /* Positive: this machine's clock is ahead of the broker's. */
  i64s(skew, sizeof(skew), l->local_ms - l->broker_ms);
  i64s(unc, sizeof(unc), l->clock_error_ms);
  i64s(at, sizeof(at), l->clock_learnt_ms / 1000);
  const char *row[] = {"broker", local, remote, skew, unc, at};
  inv_table_add(tab, row);
}
