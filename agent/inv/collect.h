/* Collectors: one function per osquery table, for this OS (agent/inv/linux/ today; another
 * OS adds a folder with its own registry). A collector fills its table or says why it could
 * not, and never stops the others. Everything a collector reads goes through env, so the
 * unit tests run every collector against captured files in tests/fixtures/. */
#ifndef AGENT_INV_COLLECT_H
#define AGENT_INV_COLLECT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "table.h"
#include "tt/buf.h"

/* A file a collector reads whole (/proc/mounts on a container host, /var/lib/dpkg/status
 * with 5,000 packages is ~8 MiB): larger is refused, not half-read. */
#define INV_FILE_MAX (32u * 1024 * 1024)
/* What a helper program may print, and how long it may take. */
#define INV_RUN_OUT_MAX (4u * 1024 * 1024)
#define INV_RUN_TIMEOUT_MS 5000u

/* The names dns_lookups resolves (the agent's diag.dns_names), each at most a DNS name's
 * length, and how long all of them together may take: a resolver that does not answer is
 * a finding, not a reason for the report to wait. */
#define INV_DNS_NAMES_MAX 8
#define INV_DNS_NAME_MAX 253
#define INV_DNS_TIMEOUT_MS 3000u
#define INV_ADDR_NAME_MAX 255

/* What only the running agent knows, for the live tables of a diagnostics report
 * (broker_connection, time_skew, dns_lookups): taken on the agent's loop thread when the
 * report is asked for, read by the collectors on the worker thread, never changed between. */
typedef struct {
  char broker[INV_ADDR_NAME_MAX + 1];      /* the broker's address as configured (HOST:PORT) */
  char broker_name[INV_ADDR_NAME_MAX + 1]; /* the name its certificate carries */
  bool connected;                          /* welcomed on a live link */
  int64_t connected_at_ms;                 /* unix ms of this link's Welcome (0: none) */
  uint64_t connects;                       /* Welcomes since the agent started */
  int64_t rtt_us;                          /* a Ping sent for this report: its round trip; -1 none */
  uint32_t rtt_wait_ms;                    /* how long its Pong was waited for */
  int64_t heard_ms_ago;                    /* since the broker last sent anything; -1 unknown */
  uint32_t heartbeat_ms;                   /* the broker pings this often */
  /* The broker's clock, learnt from Welcome.server_time_ms and carried forward on the
   * monotonic clock, so that a device clock set wrong since shows too. */
  bool clock_known;
  int64_t local_ms;                        /* this device's clock (unix ms) when these were taken */
  int64_t broker_ms;                       /* the broker's clock at that moment, estimated */
  int64_t clock_error_ms;                  /* the estimate is good to +-: half the Hello-Welcome trip */
  int64_t clock_learnt_ms;                 /* unix ms (this device's) of that Welcome */
  size_t ndns;
  char dns[INV_DNS_NAMES_MAX][INV_DNS_NAME_MAX + 1];
  uint32_t dns_timeout_ms;                 /* 0: INV_DNS_TIMEOUT_MS */
} inv_live_t;

typedef struct {
  const char *root;  /* prefix of every path read: "" on the machine, a fixture dir in tests */
  const char *path;  /* PATH for helper programs (NULL: "/usr/bin:/bin:/usr/sbin:/sbin") */
  uint32_t timeout_ms; /* per helper program (0: INV_RUN_TIMEOUT_MS) */
  const inv_live_t *live; /* the agent's own facts; NULL outside a diagnostics report */
} inv_env_t;

typedef void (*inv_collect_fn)(const inv_env_t *env, inv_table_t *t);

typedef struct {
  const char *name;
  const char *const *cols; /* NULL-terminated */
  inv_collect_fn fn;
} inv_collector_t;

/* This OS's collectors (agent/inv/<os>/registry.c), in report order: the inventory, which
 * is pushed and which the diagnostics report shows too. */
const inv_collector_t *inv_collectors(size_t *n);
/* The live state only a diagnostics report shows (failing units, journal errors, pressure,
 * reachability, clock, pending reboot): never pushed, so a fleet's inventory does not
 * change with every load spike. */
const inv_collector_t *inv_diag_collectors(size_t *n);
/* The collector for `name`, or NULL. */
const inv_collector_t *inv_collector(const char *name);
/* Run one collector into t (initialised here; the caller frees it). */
int inv_collect(const inv_env_t *env, const inv_collector_t *c, inv_table_t *t);

/* The pushed inventory's view: false for a table that is all live state (uptime) and for
 * columns that change by the minute (free memory, byte counters, pids). Diagnostics show
 * everything. */
bool inv_stable_table(const char *table);
bool inv_stable_column(const char *table, const char *col);

/* root + the absolute path made from fmt; TT_ETOOBIG if it does not fit. */
int inv_path(const inv_env_t *env, char *out, size_t cap, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* Read the file at root + path whole into out (NUL-terminated; out is init'ed here with
 * INV_FILE_MAX + 1, the caller frees it). -errno or a TT_E… code on failure;
 * TT_ETOOBIG past INV_FILE_MAX. */
int inv_read(const inv_env_t *env, const char *path, tt_buf_t *out);
/* Run argv[0] (looked up in env->path) with no stdin, its stdout into out (init'ed here,
 * at most INV_RUN_OUT_MAX: more is TT_ETOOBIG), killed after the timeout (TT_ETIMEOUT).
 * *status gets its exit status. err says what went wrong. */
int inv_run(const inv_env_t *env, char *const argv[], tt_buf_t *out, int *status, char *err, size_t errlen);

#endif
