/* tether-invbench: a fleet's deb_packages put straight into a broker store (store_inv_put, as
 * the broker's writer does), then what the find index costs in bytes and what a find costs.
 *
 *   tether-invbench load DATA_DIR DEVICES [PACKAGES [VARY_PCT]]
 *       DEVICES devices, each with PACKAGES packages (default 2000) of which VARY_PCT percent
 *       (default 5) are at one of INVTABLE_VARIANTS versions of their own (so the fleet holds about
 *       PACKAGES * (1 + INVTABLE_VARIANTS) distinct rows, as a fleet of one image patched unevenly).
 *       Prints the load time and the store's bytes by table (dbstat) per device.
 *   tether-invbench bytes DATA_DIR
 *       The store's bytes by table (dbstat) per device with an inventory, however it was
 *       loaded (bench_inventory.sh loads it with tether-loadgen's fleet).
 *   tether-invbench find DATA_DIR TABLE COND...
 *       Every page of a find through the store's reader connection, as the broker pages it:
 *       prints the time of the first page, of the slowest (how long one request holds the
 *       store's reader), of all, and the devices and rows found; INVBENCH_PAGES=N stops after
 *       N pages.
 *   tether-invbench scan DATA_DIR TABLE COL VALUE SAMPLE
 *       What a find without the index would cost: SAMPLE devices' latest TABLE decompressed
 *       and parsed, timed, and the time scaled to every device. */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "invtable.h"
#include "store.h"
#include "tt/log.h"

#define PAGE_ROWS TT_INV_FIND_PAGE_ROWS
#define PAGE_BYTES TT_INV_FIND_PAGE_BYTES

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void device_id(int d, char *out, size_t cap) {
  uint64_t s = 0x9E3779B97F4A7C15ull * (uint64_t)(d + 1);
  uint64_t a = invtable_rng(&s), b = invtable_rng(&s);
  snprintf(out, cap, "%08" PRIx64 "-%04" PRIx64 "-%04" PRIx64 "-%04" PRIx64 "-%012" PRIx64, a >> 32, (a >> 16) & 0xffff,
           a & 0xffff, b >> 48, (uint64_t)(b & 0xffffffffffffull));
}

static int sha256(const void *p, size_t n, uint8_t out[32]) {
  unsigned int len = 0;
  return EVP_Digest(p, n, out, &len, EVP_sha256(), NULL) == 1 && len == 32 ? 0 : -1;
}

/* One device's arrival as the broker's writer sees it: the device row and its inventory put,
 * in one request of the store service, group-committed with the others queued. */
typedef struct {
  store_req_t req;
  store_device_t dev;
  store_inv_table_t t;
  char *body;
} put_req_t;

static int put_run(broker_store_t *s, store_req_t *r) {
  put_req_t *x = (put_req_t *)r;
  int rc = store_device_add(s, &x->dev);
  if (rc != 0 && rc != -EEXIST) return rc;
  int64_t v = 0;
  return store_inv_put(s, x->dev.id, 1000, 1000, &x->t, 1, &v);
}

static size_t g_inflight, g_failed;

static void put_done(store_req_t *r) {
  put_req_t *x = (put_req_t *)r;
  if (r->rc != 0 && g_failed++ == 0) fprintf(stderr, "invbench: put failed: %s\n", tt_strerror(r->rc));
  free(x->body);
  free(x);
  g_inflight--;
}

static void keep_cb(uv_timer_t *t) { (void)t; }

/* Puts in flight: enough that the writer always has a batch waiting, few enough that their
 * bodies (~350 KiB each) stay small next to the store. */
#define LOAD_WINDOW 256

static int cmd_bytes(const char *dir);

static int cmd_load(const char *dir, int devices, int packages, int vary_pct) {
  broker_store_t *s = NULL;
  store_svc_t *svc = NULL;
  char err[512];
  uv_loop_t loop;
  if (uv_loop_init(&loop) != 0) return 1;
  if (store_open(&s, dir, err, sizeof err) != 0 || store_svc_start(&svc, &loop, s, dir, err, sizeof err) != 0) {
    fprintf(stderr, "invbench: %s\n", err);
    return 1;
  }
  /* The service's completions do not keep a loop alive (the broker's listener does): a
   * timer does here, so that a wait for them blocks instead of returning at once. */
  uv_timer_t keep;
  uv_timer_init(&loop, &keep);
  uv_timer_start(&keep, keep_cb, 1000, 1000);
  invtable_buf_t b = {0};
  unsigned char *variant = malloc((size_t)packages);
  double t0 = now_s(), last = t0;
  size_t body_bytes = 0;
  for (int d = 0; d < devices; d++) {
    while (g_inflight >= LOAD_WINDOW) uv_run(&loop, UV_RUN_ONCE);
    put_req_t *x = calloc(1, sizeof *x);
    if (x == NULL) return 1;
    device_id(d, x->dev.id, sizeof x->dev.id);
    snprintf(x->dev.hostname, sizeof x->dev.hostname, "host-%06d", d);
    x->dev.enrolled_ms = 1;
    invtable_json(d, packages, vary_pct, &b, variant);
    x->body = malloc(b.len);
    if (x->body == NULL) return 1;
    memcpy(x->body, b.p, b.len);
    snprintf(x->t.name, sizeof x->t.name, "deb_packages");
    x->t.body = (const uint8_t *)x->body;
    x->t.len = b.len;
    body_bytes += b.len;
    if (sha256(x->t.body, x->t.len, x->t.sha256) != 0) return 1;
    x->req.run = put_run;
    x->req.done = put_done;
    x->req.lane = STORE_LANE_WRITE;
    x->req.what = "invbench_put";
    if (store_svc_submit(svc, &x->req) != 0) return 1;
    g_inflight++;
    if (now_s() - last > 10) {
      last = now_s();
      fprintf(stderr, "invbench: %d devices, %.0f s\n", d + 1, last - t0);
    }
  }
  while (g_inflight > 0) uv_run(&loop, UV_RUN_ONCE);
  uint64_t batches = store_svc_batches(svc);
  double t1 = now_s();
  uv_close((uv_handle_t *)&keep, NULL);
  store_svc_stop(svc);
  uv_run(&loop, UV_RUN_DEFAULT);
  (void)uv_loop_close(&loop);
  if (g_failed > 0) {
    fprintf(stderr, "invbench: %zu puts failed\n", g_failed);
    return 1;
  }
  printf("load: %d devices x %d packages (%d%% varied, %d versions each): %.1f s, %.2f ms a device through the"
         " store's writer (device row + store_inv_put, index included; %" PRIu64 " transactions);"
         " JSON %.0f KiB a device\n",
         devices, packages, vary_pct, INVTABLE_VARIANTS, t1 - t0, (t1 - t0) * 1000.0 / devices, batches,
         body_bytes / 1024.0 / devices);
  free(b.p);
  free(variant);
  return cmd_bytes(dir);
}

/* Bytes by table, from SQLite's own page accounting, per device with an inventory. */
static int cmd_bytes(const char *dir) {
  char path[4096];
  snprintf(path, sizeof path, "%s/broker.db", dir);
  sqlite3 *db = NULL;
  if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) return 1;
  sqlite3_stmt *st = NULL;
  int64_t devices = 0;
  if (sqlite3_prepare_v2(db, "SELECT count(DISTINCT device) FROM inv_versions", -1, &st, NULL) == SQLITE_OK &&
      sqlite3_step(st) == SQLITE_ROW)
    devices = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  st = NULL;
  if (devices == 0) {
    fprintf(stderr, "invbench: no device has an inventory in %s\n", path);
    sqlite3_close(db);
    return 1;
  }
  printf("store: %" PRId64 " devices with an inventory\n", devices);
  static const char *const sql =
      "SELECT CASE WHEN name IN ('inv_tables', 'inv_versions', 'inv_versions_device', 'inv_versions_received')"
      "   OR name LIKE 'sqlite_autoindex_inv_tables%' THEN 'inventory (versions, bodies)'"
      " WHEN name LIKE 'inv_%' OR name LIKE 'sqlite_autoindex_inv_%' THEN 'find index: ' || name"
      " ELSE 'other' END AS what, sum(pgsize), sum(pgsize - unused) FROM dbstat GROUP BY what ORDER BY what";
  if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
    printf("bytes: dbstat not available (%s)\n", sqlite3_errmsg(db));
  } else {
    int64_t idx = 0, inv = 0;
    printf("bytes by table (pages; per device; for 100k devices):\n");
    while (sqlite3_step(st) == SQLITE_ROW) {
      const char *what = (const char *)sqlite3_column_text(st, 0);
      int64_t pg = sqlite3_column_int64(st, 1);
      printf("  %-44s %12" PRId64 "  %9.0f B  %8.2f GB\n", what, pg, (double)pg / devices,
             (double)pg / devices * 100000 / 1e9);
      if (strncmp(what, "find index", 10) == 0) idx += pg;
      else if (strncmp(what, "inventory", 9) == 0) inv += pg;
    }
    printf("  %-44s %12" PRId64 "  %9.0f B  %8.2f GB\n", "find index, all", idx, (double)idx / devices,
           (double)idx / devices * 100000 / 1e9);
    printf("  %-44s %12" PRId64 "  %9.0f B  %8.2f GB\n", "inventory itself", inv, (double)inv / devices,
           (double)inv / devices * 100000 / 1e9);
  }
  sqlite3_finalize(st);
  st = NULL;
  if (sqlite3_prepare_v2(db,
                         "SELECT (SELECT count(*) FROM inv_rows), (SELECT count(*) FROM inv_bases),"
                         " (SELECT count(*) FROM inv_base_rows), (SELECT count(*) FROM inv_plus)",
                         -1, &st, NULL) == SQLITE_OK &&
      sqlite3_step(st) == SQLITE_ROW)
    printf("index: %" PRId64 " distinct rows, %" PRId64 " bases (%" PRId64 " base postings), %" PRId64
           " plus postings (%.0f a device)\n",
           (int64_t)sqlite3_column_int64(st, 0), (int64_t)sqlite3_column_int64(st, 1),
           (int64_t)sqlite3_column_int64(st, 2), (int64_t)sqlite3_column_int64(st, 3),
           (double)sqlite3_column_int64(st, 3) / devices);
  sqlite3_finalize(st);
  sqlite3_close(db);
  return 0;
}

typedef struct {
  int64_t devices, rows;
} count_t;

static int count_cb(void *ctx, const char *device, const char *hostname, size_t n, const int64_t *ids,
                    const char *const *rows, const size_t *lens) {
  (void)device;
  (void)hostname;
  (void)ids;
  (void)rows;
  (void)lens;
  count_t *c = ctx;
  c->devices++;
  c->rows += (int64_t)n;
  return 0;
}

static int cmd_find(const char *dir, const char *table, int nc, char **cv) {
  broker_store_t *s = NULL;
  char err[512];
  if (store_open_ro(&s, dir, err, sizeof err) != 0) {
    fprintf(stderr, "invbench: %s\n", err);
    return 1;
  }
  store_inv_cond_t cond[STORE_INV_FIND_CONDS_MAX];
  if (nc < 1 || nc > (int)STORE_INV_FIND_CONDS_MAX) return 2;
  for (int i = 0; i < nc; i++) {
    char *op = strpbrk(cv[i], "=~");
    if (op == NULL) return 2;
    memset(&cond[i], 0, sizeof cond[i]);
    cond[i].contains = *op == '~';
    snprintf(cond[i].col, sizeof cond[i].col, "%.*s", (int)(op - cv[i]), cv[i]);
    cond[i].value = op + 1;
    cond[i].len = strlen(op + 1);
  }
  store_inv_cursor_t cur = {0, 0};
  count_t c = {0, 0};
  int pages = 0;
  /* INVBENCH_PAGES=N stops after N pages (a find that would take hours otherwise). */
  const char *cap_env = getenv("INVBENCH_PAGES");
  int cap = cap_env != NULL ? atoi(cap_env) : 0;
  bool more = false;
  double t0 = now_s(), first = 0, slowest = 0, prev = t0;
  for (;;) {
    more = false;
    int rc = store_inv_find(s, table, cond, (size_t)nc, &cur, PAGE_ROWS, PAGE_BYTES, count_cb, &c, &more);
    if (rc != 0) {
      fprintf(stderr, "invbench: find failed: %s\n", tt_strerror(rc));
      return 1;
    }
    double t = now_s();
    if (t - prev > slowest) slowest = t - prev; /* how long one request holds the reader */
    prev = t;
    if (++pages == 1) first = t - t0;
    if (!more || (cap > 0 && pages >= cap)) break;
  }
  double all = now_s() - t0;
  printf("find %s", table);
  for (int i = 0; i < nc; i++) printf(" %s", cv[i]);
  printf(": %" PRId64 " devices, %" PRId64 " rows, %d pages%s; first page %.1f ms, slowest %.1f ms, all %.1f ms"
         " (%.1f ms a page)\n",
         c.devices, c.rows, pages, more ? " (stopped: INVBENCH_PAGES)" : "", first * 1000, slowest * 1000,
         all * 1000, all * 1000 / pages);
  store_close(s);
  return 0;
}

typedef struct {
  const char *col, *value;
  int64_t hits;
} scan_t;

static int scan_cb(void *ctx, const char *name, int64_t version, int64_t received_ms, const uint8_t *body,
                   size_t len) {
  (void)name;
  (void)version;
  (void)received_ms;
  scan_t *x = ctx;
  json_t *j = json_loadb((const char *)body, len, 0, NULL);
  json_t *cols = json_object_get(j, "columns"), *rows = json_object_get(j, "rows"), *r;
  size_t k = SIZE_MAX, i;
  for (i = 0; i < json_array_size(cols); i++)
    if (json_string_value(json_array_get(cols, i)) != NULL && strcmp(json_string_value(json_array_get(cols, i)), x->col) == 0)
      k = i;
  json_array_foreach(rows, i, r) {
    const char *v = json_string_value(json_array_get(r, k));
    if (v != NULL && strcmp(v, x->value) == 0) x->hits++;
  }
  json_decref(j);
  return 0;
}

static int dev_cb(void *ctx, const store_device_t *d) {
  char (*ids)[STORE_NAME_MAX] = ((void **)ctx)[0];
  size_t *n = ((void **)ctx)[1];
  snprintf(ids[(*n)++], STORE_NAME_MAX, "%s", d->id);
  return 0;
}

static int cmd_scan(const char *dir, const char *table, const char *col, const char *value, int sample) {
  broker_store_t *s = NULL;
  char err[512];
  if (store_open_ro(&s, dir, err, sizeof err) != 0) {
    fprintf(stderr, "invbench: %s\n", err);
    return 1;
  }
  size_t total = store_device_count(s), n = 0;
  char(*ids)[STORE_NAME_MAX] = calloc((size_t)sample, STORE_NAME_MAX);
  void *ctx[2] = {ids, &n};
  if (store_device_page(s, "", (uint32_t)sample, dev_cb, ctx) != 0) return 1;
  scan_t x = {col, value, 0};
  double t0 = now_s();
  size_t missing = 0;
  for (size_t i = 0; i < n; i++)
    if (store_inv_table(s, ids[i], table, 0, scan_cb, &x) != 0) missing++;
  if (missing > 0) fprintf(stderr, "invbench: %zu devices without %s\n", missing, table);
  double t = now_s() - t0;
  printf("without the index: %zu devices' %s decompressed and parsed in %.2f s (%.2f ms a device):"
         " %.0f s for all %zu devices\n",
         n, table, t, t * 1000 / (double)(n ? n : 1), t / (double)(n ? n : 1) * (double)total, total);
  free(ids);
  store_close(s);
  return 0;
}

int main(int argc, char **argv) {
  tt_log_set_level(TT_LOG_WARN);
  if (argc >= 4 && strcmp(argv[1], "load") == 0)
    return cmd_load(argv[2], atoi(argv[3]), argc > 4 ? atoi(argv[4]) : 2000, argc > 5 ? atoi(argv[5]) : 5);
  if (argc == 3 && strcmp(argv[1], "bytes") == 0) return cmd_bytes(argv[2]);
  if (argc >= 5 && strcmp(argv[1], "find") == 0) return cmd_find(argv[2], argv[3], argc - 4, argv + 4);
  if (argc == 7 && strcmp(argv[1], "scan") == 0) return cmd_scan(argv[2], argv[3], argv[4], argv[5], atoi(argv[6]));
  fprintf(stderr, "usage: tether-invbench load DATA_DIR DEVICES [PACKAGES [VARY_PCT]]\n"
                  "       tether-invbench find DATA_DIR TABLE COL=VALUE|COL~SUBSTR...\n"
                  "       tether-invbench scan DATA_DIR TABLE COL VALUE SAMPLE\n");
  return 2;
}
