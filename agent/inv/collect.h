/* Collectors: one function per osquery table, for this OS (agent/inv/linux/ today; another
 * OS adds a folder with its own registry). A collector fills its table or says why it could
 * not, and never stops the others. Everything a collector reads goes through env, so the
 * unit tests run every collector against captured files in tests/fixtures/. */
#ifndef AGENT_INV_COLLECT_H
#define AGENT_INV_COLLECT_H

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

typedef struct {
  const char *root;  /* prefix of every path read: "" on the machine, a fixture dir in tests */
  const char *path;  /* PATH for helper programs (NULL: "/usr/bin:/bin:/usr/sbin:/sbin") */
  uint32_t timeout_ms; /* per helper program (0: INV_RUN_TIMEOUT_MS) */
} inv_env_t;

typedef void (*inv_collect_fn)(const inv_env_t *env, inv_table_t *t);

typedef struct {
  const char *name;
  const char *const *cols; /* NULL-terminated */
  inv_collect_fn fn;
} inv_collector_t;

/* This OS's collectors (agent/inv/<os>/registry.c), in report order. */
const inv_collector_t *inv_collectors(size_t *n);
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
