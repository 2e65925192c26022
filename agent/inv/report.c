/* The diagnostics report (inv.h): every collector in order, the live ones first, each timed,
 * one JSON document. Every cell was redacted as it entered its table (table.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "inv.h"
#include "tt/err.h"

static uint64_t mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

typedef struct {
  tt_buf_t *out;
  int rc;
} dump_t;

static int dump_cb(const char *buf, size_t size, void *data) {
  dump_t *d = data;
  if (!d->rc) d->rc = tt_buf_append(d->out, buf, size);
  return d->rc ? -1 : 0;
}

int inv_report(const inv_env_t *env, const char *device, const char *hostname, tt_buf_t *out, char *err,
               size_t errlen) {
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  uint64_t t0 = mono_ms();
  json_t *doc = json_object(), *tables = json_object();
  int rc = TT_ENOMEM;
  err[0] = 0;
  if (!doc || !tables) goto out;
  /* The live state first (what a call is about), then the inventory's tables. */
  for (int list = 0; list < 2; list++) {
    size_t n;
    const inv_collector_t *cs = list == 0 ? inv_diag_collectors(&n) : inv_collectors(&n);
    for (size_t i = 0; i < n; i++) {
      inv_table_t t;
      uint64_t t1 = mono_ms();
      if (inv_collect(env, &cs[i], &t)) goto out;
      json_t *j = inv_table_json(&t);
      inv_table_free(&t);
      if (!j || json_object_set_new(j, "ms", json_integer((json_int_t)(mono_ms() - t1))) ||
          json_object_set_new(tables, cs[i].name, j))
        goto out;
    }
  }
  if (json_object_set_new(doc, "device", json_string(device)) ||
      json_object_set_new(doc, "hostname", json_string(hostname)) ||
      json_object_set_new(doc, "agent_version", json_string(agent_version)) ||
      json_object_set_new(doc, "collected_at",
                          json_integer((json_int_t)now.tv_sec * 1000 + now.tv_nsec / 1000000)) ||
      json_object_set_new(doc, "ms", json_integer((json_int_t)(mono_ms() - t0))))
    goto out;
  rc = json_object_set_new(doc, "tables", tables) ? TT_ENOMEM : 0;
  tables = NULL;
  if (rc) goto out;
  dump_t dd = {out, 0};
  if (json_dump_callback(doc, dump_cb, &dd, JSON_COMPACT)) {
    rc = dd.rc == TT_EFULL ? TT_ETOOBIG : TT_ENOMEM;
    if (rc == TT_ETOOBIG) snprintf(err, errlen, "the report is larger than %zu bytes: not sent", out->max);
    tt_buf_reset(out);
  }
out:
  if (rc == TT_ENOMEM && !err[0]) snprintf(err, errlen, "the agent ran out of memory making the report");
  json_decref(tables);
  json_decref(doc);
  return rc;
}
