/* broker/store/inventory.c: a put stores only what changed as a new version, reads give any
 * table as it was at any version, history pages newest first, limits refuse the whole put,
 * damaged rows read as errors, and a fleet's worth of tables goes in and comes back. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <sqlite3.h>

#include "store.h"
#include "tt/log.h"
#include "store_undo.h"

typedef struct {
  char base[PATH_MAX];
  char dir[PATH_MAX];
  char db[PATH_MAX];
  broker_store_t *s;
} fx_t;

static int rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st;
  (void)flag;
  (void)ftw;
  return remove(path);
}

static int setup(void **state) {
  fx_t *fx = calloc(1, sizeof *fx);
  if (fx == NULL) return -1;
  const char *tmp = getenv("TT_TEST_TMP");
  if (tmp == NULL || tmp[0] == '\0') tmp = "/tmp";
  snprintf(fx->base, sizeof fx->base, "%s/test_store_inventory.XXXXXX", tmp);
  if (mkdtemp(fx->base) == NULL) {
    free(fx);
    return -1;
  }
  int n = snprintf(fx->dir, sizeof fx->dir, "%s/data", fx->base);
  int m = snprintf(fx->db, sizeof fx->db, "%s/data/broker.db", fx->base);
  char err[512];
  if (n < 0 || (size_t)n >= sizeof fx->dir || m < 0 || (size_t)m >= sizeof fx->db ||
      store_open(&fx->s, fx->dir, err, sizeof err) != 0) {
    nftw(fx->base, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    free(fx);
    return -1;
  }
  *state = fx;
  return 0;
}

static int teardown(void **state) {
  fx_t *fx = *state;
  store_close(fx->s);
  nftw(fx->base, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
  free(fx);
  return 0;
}

/* A second, plain connection: what an admin's sqlite3 shell would do. */
static sqlite3 *raw_open(const fx_t *fx) {
  sqlite3 *db = NULL;
  assert_int_equal(sqlite3_open_v2(fx->db, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
  assert_int_equal(sqlite3_busy_timeout(db, 2000), SQLITE_OK);
  return db;
}

static void raw_exec(sqlite3 *db, const char *sql) {
  char *msg = NULL;
  int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
  if (rc != SQLITE_OK) fprintf(stderr, "%s: %s\n", sql, msg != NULL ? msg : "?");
  sqlite3_free(msg);
  assert_int_equal(rc, SQLITE_OK);
}

static int64_t raw_int(sqlite3 *db, const char *sql) {
  sqlite3_stmt *st = NULL;
  assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
  assert_int_equal(sqlite3_step(st), SQLITE_ROW);
  int64_t v = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  return v;
}

static int64_t rows(const fx_t *fx, const char *table) {
  char sql[128];
  snprintf(sql, sizeof sql, "SELECT count(*) FROM %s", table);
  sqlite3 *db = raw_open(fx);
  int64_t n = raw_int(db, sql);
  sqlite3_close(db);
  return n;
}

static void sha256(const void *p, size_t len, uint8_t out[32]) {
  unsigned int n = 0;
  assert_int_equal(EVP_Digest(p, len, out, &n, EVP_sha256(), NULL), 1);
  assert_int_equal(n, 32);
}

/* A table as the agent sends it: its canonical JSON and that JSON's hash. */
static store_inv_table_t tab(const char *name, const char *json) {
  store_inv_table_t t;
  memset(&t, 0, sizeof t);
  snprintf(t.name, sizeof t.name, "%s", name);
  t.body = (const uint8_t *)json;
  t.len = strlen(json);
  sha256(t.body, t.len, t.sha256);
  return t;
}

static store_inv_table_t gone(const char *name) {
  store_inv_table_t t;
  memset(&t, 0, sizeof t);
  snprintf(t.name, sizeof t.name, "%s", name);
  return t;
}

/* ---- collecting callbacks --------------------------------------------------------------- */

#define SEEN_MAX 80

typedef struct {
  int n;
  char name[SEEN_MAX][STORE_INV_NAME_MAX];
  int64_t version[SEEN_MAX];
  int64_t received[SEEN_MAX];
  char body[SEEN_MAX][256]; /* short bodies only; len says how long it really was */
  size_t len[SEEN_MAX];
  uint8_t sha[SEEN_MAX][32];
  int stop_after; /* 0 = never */
} seen_t;

static int body_cb(void *ctx, const char *name, int64_t version, int64_t received_ms,
                   const uint8_t *body, size_t len) {
  seen_t *c = ctx;
  assert_true(c->n < SEEN_MAX);
  snprintf(c->name[c->n], sizeof c->name[0], "%s", name);
  c->version[c->n] = version;
  c->received[c->n] = received_ms;
  c->len[c->n] = len;
  size_t k = len < sizeof c->body[0] - 1 ? len : sizeof c->body[0] - 1;
  memcpy(c->body[c->n], body, k);
  c->body[c->n][k] = '\0';
  c->n++;
  return (c->stop_after != 0 && c->n == c->stop_after) ? 42 : 0;
}

static int hash_cb(void *ctx, const char *name, const uint8_t sha[32]) {
  seen_t *c = ctx;
  assert_true(c->n < SEEN_MAX);
  snprintf(c->name[c->n], sizeof c->name[0], "%s", name);
  memcpy(c->sha[c->n], sha, 32);
  c->n++;
  return (c->stop_after != 0 && c->n == c->stop_after) ? 43 : 0;
}

typedef struct {
  int n;
  int64_t id[SEEN_MAX];
  int64_t collected[SEEN_MAX];
  int64_t received[SEEN_MAX];
  char changed[SEEN_MAX][STORE_INV_CHANGED_MAX];
} hist_t;

static int hist_cb(void *ctx, int64_t version, int64_t collected_ms, int64_t received_ms, const char *changed) {
  hist_t *h = ctx;
  assert_true(h->n < SEEN_MAX);
  h->id[h->n] = version;
  h->collected[h->n] = collected_ms;
  h->received[h->n] = received_ms;
  snprintf(h->changed[h->n], sizeof h->changed[0], "%s", changed);
  h->n++;
  return 0;
}

static seen_t *seen_new(void) {
  seen_t *c = calloc(1, sizeof *c);
  assert_non_null(c);
  return c;
}

static hist_t *hist_new(void) {
  hist_t *h = calloc(1, sizeof *h);
  assert_non_null(h);
  return h;
}

/* The body of one table at a version, as a string ("" and TT_ENOTFOUND if none). */
static int body_at(broker_store_t *s, const char *dev, const char *name, int64_t version, char *out,
                   size_t cap, int64_t *from) {
  seen_t *c = seen_new();
  int rc = store_inv_table(s, dev, name, version, body_cb, c);
  out[0] = '\0';
  if (rc == 0) {
    assert_int_equal(c->n, 1);
    assert_string_equal(c->name[0], name);
    snprintf(out, cap, "%s", c->body[0]);
    if (from != NULL) *from = c->version[0];
  } else {
    assert_int_equal(c->n, 0); /* a failed call never calls back */
  }
  free(c);
  return rc;
}

static const char *const OS1 = "{\"columns\":[\"name\",\"version\"],\"rows\":[[\"Debian\",\"12\"]]}";
static const char *const PKG1 = "{\"columns\":[\"name\",\"version\"],\"rows\":[[\"bash\",\"5.2\"],[\"zstd\",\"1.5\"]]}";
static const char *const MNT1 = "{\"columns\":[\"path\",\"type\"],\"rows\":[[\"/\",\"ext4\"]]}";
static const char *const MNT2 = "{\"columns\":[\"path\",\"type\"],\"rows\":[[\"/\",\"ext4\"],[\"/home\",\"xfs\"]]}";

/* ---- versions --------------------------------------------------------------------------- */

static void test_put_stores_changes_only(void **state) {
  fx_t *fx = *state;
  broker_store_t *s = fx->s;
  /* First put: every table is new, given in any order. */
  store_inv_table_t t[3] = {tab("os_version", OS1), tab("deb_packages", PKG1), tab("mounts", MNT1)};
  int64_t v1 = -1;
  assert_int_equal(store_inv_put(s, "dev-1", 900, 1000, t, 3, &v1), 0);
  assert_true(v1 > 0);
  assert_int_equal(rows(fx, "inv_tables"), 3);
  assert_int_equal(rows(fx, "inv_versions"), 1);

  seen_t *c = seen_new();
  assert_int_equal(store_inv_tables(s, "dev-1", 0, body_cb, c), 0);
  assert_int_equal(c->n, 3);
  assert_string_equal(c->name[0], "deb_packages");
  assert_string_equal(c->body[0], PKG1);
  assert_int_equal(c->len[0], strlen(PKG1));
  assert_string_equal(c->name[1], "mounts");
  assert_string_equal(c->body[1], MNT1);
  assert_string_equal(c->name[2], "os_version");
  assert_string_equal(c->body[2], OS1);
  for (int i = 0; i < 3; i++) {
    assert_int_equal(c->version[i], v1);
    assert_int_equal(c->received[i], 1000);
  }
  memset(c, 0, sizeof *c);
  assert_int_equal(store_inv_hashes(s, "dev-1", hash_cb, c), 0);
  assert_int_equal(c->n, 3);
  assert_string_equal(c->name[0], "deb_packages");
  assert_memory_equal(c->sha[0], t[1].sha256, 32);
  assert_string_equal(c->name[2], "os_version");
  assert_memory_equal(c->sha[2], t[0].sha256, 32);

  /* The same again: nothing differs, nothing is written. */
  int64_t v = -1;
  assert_int_equal(store_inv_put(s, "dev-1", 1900, 2000, t, 3, &v), 0);
  assert_int_equal(v, 0);
  assert_int_equal(rows(fx, "inv_tables"), 3);
  assert_int_equal(rows(fx, "inv_versions"), 1);
  /* Nothing at all is no change either. */
  assert_int_equal(store_inv_put(s, "dev-1", 1900, 2000, NULL, 0, &v), 0);
  assert_int_equal(v, 0);

  /* One table changed among unchanged ones: the version lists only it. */
  t[2] = tab("mounts", MNT2);
  int64_t v2 = 0;
  assert_int_equal(store_inv_put(s, "dev-1", 2900, 3000, t, 3, &v2), 0);
  assert_true(v2 > v1);
  assert_int_equal(rows(fx, "inv_tables"), 4);
  hist_t *h = hist_new();
  assert_int_equal(store_inv_history(s, "dev-1", 0, 0, hist_cb, h), 0);
  assert_int_equal(h->n, 2);
  assert_int_equal(h->id[0], v2);
  assert_string_equal(h->changed[0], "mounts");
  assert_int_equal(h->collected[0], 2900);
  assert_int_equal(h->received[0], 3000);
  assert_int_equal(h->id[1], v1);
  assert_string_equal(h->changed[1], "deb_packages,mounts,os_version");
  assert_int_equal(h->collected[1], 900);

  /* Latest: mounts from v2, the rest still from v1. Old versions give old bodies. */
  char b[256];
  int64_t from = 0;
  assert_int_equal(body_at(s, "dev-1", "mounts", 0, b, sizeof b, &from), 0);
  assert_string_equal(b, MNT2);
  assert_int_equal(from, v2);
  assert_int_equal(body_at(s, "dev-1", "mounts", v1, b, sizeof b, &from), 0);
  assert_string_equal(b, MNT1);
  assert_int_equal(from, v1);
  assert_int_equal(body_at(s, "dev-1", "mounts", v2, b, sizeof b, &from), 0);
  assert_string_equal(b, MNT2);
  assert_int_equal(body_at(s, "dev-1", "os_version", v2, b, sizeof b, &from), 0);
  assert_string_equal(b, OS1);
  assert_int_equal(from, v1);
  memset(c, 0, sizeof *c);
  assert_int_equal(store_inv_tables(s, "dev-1", v1, body_cb, c), 0);
  assert_int_equal(c->n, 3);
  assert_string_equal(c->body[1], MNT1);
  memset(c, 0, sizeof *c);
  assert_int_equal(store_inv_tables(s, "dev-1", 0, body_cb, c), 0);
  assert_int_equal(c->n, 3);
  assert_string_equal(c->body[1], MNT2);
  assert_int_equal(c->version[1], v2);
  assert_int_equal(c->received[1], 3000);
  assert_int_equal(c->version[0], v1);

  /* A table never had, or a device with no inventory: not found. */
  assert_int_equal(body_at(s, "dev-1", "users", 0, b, sizeof b, NULL), TT_ENOTFOUND);
  assert_int_equal(body_at(s, "dev-2", "mounts", 0, b, sizeof b, NULL), TT_ENOTFOUND);
  memset(c, 0, sizeof *c);
  assert_int_equal(store_inv_tables(s, "dev-2", 0, body_cb, c), 0);
  assert_int_equal(c->n, 0);
  assert_int_equal(store_inv_hashes(s, "dev-2", hash_cb, c), 0);
  assert_int_equal(c->n, 0);

  /* A callback's non-zero return stops the walk and is returned. */
  memset(c, 0, sizeof *c);
  c->stop_after = 2;
  assert_int_equal(store_inv_tables(s, "dev-1", 0, body_cb, c), 42);
  assert_int_equal(c->n, 2);
  memset(c, 0, sizeof *c);
  c->stop_after = 1;
  assert_int_equal(store_inv_hashes(s, "dev-1", hash_cb, c), 43);
  assert_int_equal(c->n, 1);
  free(c);
  free(h);
}

static void test_removal(void **state) {
  fx_t *fx = *state;
  broker_store_t *s = fx->s;
  store_inv_table_t t[3] = {tab("os_version", OS1), tab("deb_packages", PKG1), tab("mounts", MNT1)};
  int64_t v1 = 0, v2 = 0, v3 = 0, v = -1;
  assert_int_equal(store_inv_put(s, "dev-1", 1, 100, t, 3, &v1), 0);

  /* The agent no longer reports os_version; deb_packages comes unchanged beside it. */
  store_inv_table_t r[2] = {gone("os_version"), tab("deb_packages", PKG1)};
  assert_int_equal(store_inv_put(s, "dev-1", 2, 200, r, 2, &v2), 0);
  assert_true(v2 > v1);
  char b[256];
  assert_int_equal(body_at(s, "dev-1", "os_version", 0, b, sizeof b, NULL), TT_ENOTFOUND);
  assert_int_equal(body_at(s, "dev-1", "os_version", v1, b, sizeof b, NULL), 0);
  assert_string_equal(b, OS1);
  seen_t *c = seen_new();
  assert_int_equal(store_inv_tables(s, "dev-1", 0, body_cb, c), 0);
  assert_int_equal(c->n, 2);
  assert_string_equal(c->name[0], "deb_packages");
  assert_string_equal(c->name[1], "mounts");
  memset(c, 0, sizeof *c);
  assert_int_equal(store_inv_tables(s, "dev-1", v1, body_cb, c), 0);
  assert_int_equal(c->n, 3);
  memset(c, 0, sizeof *c);
  assert_int_equal(store_inv_hashes(s, "dev-1", hash_cb, c), 0);
  assert_int_equal(c->n, 2);
  assert_string_equal(c->name[1], "mounts");

  /* Removing what is gone, or was never there, is no change. */
  store_inv_table_t again[2] = {gone("os_version"), gone("users")};
  assert_int_equal(store_inv_put(s, "dev-1", 3, 300, again, 2, &v), 0);
  assert_int_equal(v, 0);

  /* Back again, even with the body it had before: a change. */
  store_inv_table_t back[2] = {tab("os_version", OS1), gone("mounts")};
  assert_int_equal(store_inv_put(s, "dev-1", 4, 400, back, 2, &v3), 0);
  assert_true(v3 > v2);
  assert_int_equal(body_at(s, "dev-1", "os_version", 0, b, sizeof b, NULL), 0);
  assert_string_equal(b, OS1);
  assert_int_equal(body_at(s, "dev-1", "mounts", 0, b, sizeof b, NULL), TT_ENOTFOUND);
  hist_t *h = hist_new();
  assert_int_equal(store_inv_history(s, "dev-1", 0, 0, hist_cb, h), 0);
  assert_int_equal(h->n, 3);
  assert_string_equal(h->changed[0], "-mounts,os_version");
  assert_string_equal(h->changed[1], "-os_version");
  free(h);
  free(c);
}

static void test_history_paging_and_time(void **state) {
  fx_t *fx = *state;
  broker_store_t *s = fx->s;
  int64_t ids[6];
  char json[64];
  /* Another device's versions in between: ids are global, history is per device. */
  for (int i = 0; i < 6; i++) {
    snprintf(json, sizeof json, "{\"rows\":[[\"%d\"]]}", i);
    store_inv_table_t t = tab("uptime", json);
    assert_int_equal(store_inv_put(s, "dev-1", 10 * i, 1000 * (i + 1), &t, 1, &ids[i]), 0);
    int64_t other = 0;
    assert_int_equal(store_inv_put(s, "dev-2", 10 * i, 1000 * (i + 1) + 1, &t, 1, &other), 0);
    assert_true(other > ids[i]);
  }
  hist_t *h = hist_new();
  assert_int_equal(store_inv_history(s, "dev-1", 0, 2, hist_cb, h), 0);
  assert_int_equal(h->n, 2);
  assert_int_equal(h->id[0], ids[5]);
  assert_int_equal(h->id[1], ids[4]);
  assert_int_equal(h->received[0], 6000);
  int64_t before = h->id[1];
  memset(h, 0, sizeof *h);
  assert_int_equal(store_inv_history(s, "dev-1", before, 2, hist_cb, h), 0);
  assert_int_equal(h->n, 2);
  assert_int_equal(h->id[0], ids[3]);
  assert_int_equal(h->id[1], ids[2]);
  before = h->id[1];
  memset(h, 0, sizeof *h);
  assert_int_equal(store_inv_history(s, "dev-1", before, 10, hist_cb, h), 0);
  assert_int_equal(h->n, 2);
  assert_int_equal(h->id[0], ids[1]);
  assert_int_equal(h->id[1], ids[0]);
  assert_string_equal(h->changed[1], "uptime");
  memset(h, 0, sizeof *h);
  assert_int_equal(store_inv_history(s, "dev-1", ids[0], 0, hist_cb, h), 0);
  assert_int_equal(h->n, 0);
  assert_int_equal(store_inv_history(s, "nobody", 0, 0, hist_cb, h), 0);
  assert_int_equal(h->n, 0);

  /* The version current at a time: the newest received at or before it. */
  int64_t v = -1;
  assert_int_equal(store_inv_version_at(s, "dev-1", 999, &v), TT_ENOTFOUND);
  assert_int_equal(v, 0);
  assert_int_equal(store_inv_version_at(s, "dev-1", 1000, &v), 0);
  assert_int_equal(v, ids[0]);
  assert_int_equal(store_inv_version_at(s, "dev-1", 3500, &v), 0);
  assert_int_equal(v, ids[2]);
  assert_int_equal(store_inv_version_at(s, "dev-1", INT64_MAX, &v), 0);
  assert_int_equal(v, ids[5]);
  assert_int_equal(store_inv_version_at(s, "dev-3", INT64_MAX, &v), TT_ENOTFOUND);
  /* And what the device looked like then; another device's id is a point in arrival order. */
  char b[256];
  assert_int_equal(store_inv_version_at(s, "dev-1", 3500, &v), 0);
  assert_int_equal(body_at(s, "dev-1", "uptime", v, b, sizeof b, NULL), 0);
  assert_string_equal(b, "{\"rows\":[[\"2\"]]}");
  assert_int_equal(body_at(s, "dev-2", "uptime", v, b, sizeof b, NULL), 0);
  assert_string_equal(b, "{\"rows\":[[\"1\"]]}");
  /* Before the device's first version: nothing yet. */
  assert_int_equal(body_at(s, "dev-2", "uptime", ids[0], b, sizeof b, NULL), TT_ENOTFOUND);

  /* Bytes: something for a device with inventory, growing with each version; 0 without. */
  int64_t b1 = -1, b2 = -1;
  assert_int_equal(store_inv_bytes(s, "dev-1", &b1), 0);
  assert_true(b1 > 6 * 32);
  assert_int_equal(store_inv_bytes(s, "nobody", &b2), 0);
  assert_int_equal(b2, 0);
  store_inv_table_t t = tab("uptime", "{\"rows\":[[\"later\"]]}");
  assert_int_equal(store_inv_put(s, "dev-1", 70, 7000, &t, 1, &v), 0);
  assert_int_equal(store_inv_bytes(s, "dev-1", &b2), 0);
  assert_true(b2 > b1);
  free(h);
}

/* ---- limits ------------------------------------------------------------------------------- */

static void expect_refused(fx_t *fx, const char *dev, const store_inv_table_t *t, size_t n, int want) {
  int64_t before_t = rows(fx, "inv_tables"), before_v = rows(fx, "inv_versions");
  int64_t v = -1;
  assert_int_equal(store_inv_put(fx->s, dev, 1, 1, t, n, &v), want);
  assert_int_equal(v, 0);
  assert_int_equal(rows(fx, "inv_tables"), before_t);
  assert_int_equal(rows(fx, "inv_versions"), before_v);
}

static void test_limits_refuse_whole_put(void **state) {
  fx_t *fx = *state;
  broker_store_t *s = fx->s;
  store_inv_table_t ok = tab("os_version", OS1);
  int64_t v = 0;
  assert_int_equal(store_inv_put(s, "dev-1", 1, 1, &ok, 1, &v), 0);

  /* Names: empty, upper case, punctuation, 64 characters, no NUL in the array. */
  static const char *const bad[] = {"", "Mounts", "deb-packages", "a b", "os_version;", "é"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    store_inv_table_t t[2] = {tab("mounts", MNT1), tab(bad[i], "{}")};
    expect_refused(fx, "dev-1", t, 2, TT_EINVAL);
  }
  store_inv_table_t t[2] = {tab("mounts", MNT1), tab("x", "{}")};
  memset(t[1].name, 'a', sizeof t[1].name); /* 64 bytes, no NUL */
  expect_refused(fx, "dev-1", t, 2, TT_EINVAL);
  memset(t[1].name, 'a', sizeof t[1].name - 1); /* 63 + NUL: the longest there is */
  t[1].name[sizeof t[1].name - 1] = '\0';
  assert_int_equal(store_inv_put(s, "dev-9", 1, 1, t, 2, &v), 0);
  assert_true(v > 0);

  /* The same name twice, a hash that is not the body's, an empty body. */
  store_inv_table_t dup[2] = {tab("mounts", MNT1), tab("mounts", MNT2)};
  expect_refused(fx, "dev-1", dup, 2, TT_EINVAL);
  store_inv_table_t lie = tab("mounts", MNT1);
  lie.sha256[0] ^= 1;
  expect_refused(fx, "dev-1", &lie, 1, TT_EINVAL);
  store_inv_table_t empty = tab("mounts", "");
  expect_refused(fx, "dev-1", &empty, 1, TT_EINVAL);

  /* Device ids: empty, NULL, one byte past TT_NAME_MAX. Times before 1970. */
  expect_refused(fx, "", &ok, 1, TT_EINVAL);
  expect_refused(fx, NULL, &ok, 1, TT_EINVAL);
  char longdev[TT_NAME_MAX + 2];
  memset(longdev, 'd', TT_NAME_MAX + 1);
  longdev[TT_NAME_MAX + 1] = '\0';
  expect_refused(fx, longdev, &ok, 1, TT_EINVAL);
  longdev[TT_NAME_MAX] = '\0';
  assert_int_equal(store_inv_put(s, longdev, 1, 1, &ok, 1, &v), 0);
  store_inv_table_t m2 = tab("mounts", MNT2);
  assert_int_equal(store_inv_put(s, "dev-1", -1, 1, &m2, 1, &v), TT_EINVAL);
  assert_int_equal(store_inv_put(s, "dev-1", 1, -1, &m2, 1, &v), TT_EINVAL);

  /* Too many tables in one put, and too many for one device over several. */
  store_inv_table_t *many = calloc(STORE_INV_TABLES_MAX + 1, sizeof *many);
  assert_non_null(many);
  for (int i = 0; i <= STORE_INV_TABLES_MAX; i++) {
    char name[16];
    snprintf(name, sizeof name, "t%02d", i);
    many[i] = tab(name, "{\"rows\":[]}");
  }
  expect_refused(fx, "dev-2", many, STORE_INV_TABLES_MAX + 1, TT_EINVAL);
  assert_int_equal(store_inv_put(s, "dev-2", 1, 1, many, STORE_INV_TABLES_MAX, &v), 0);
  assert_true(v > 0);
  expect_refused(fx, "dev-2", &many[STORE_INV_TABLES_MAX], 1, TT_EINVAL);
  /* One out, one in: still STORE_INV_TABLES_MAX. */
  store_inv_table_t swap[2] = {gone("t00"), many[STORE_INV_TABLES_MAX]};
  assert_int_equal(store_inv_put(s, "dev-2", 2, 2, swap, 2, &v), 0);
  assert_true(v > 0);
  seen_t *c = seen_new();
  assert_int_equal(store_inv_hashes(s, "dev-2", hash_cb, c), 0);
  assert_int_equal(c->n, STORE_INV_TABLES_MAX);
  assert_string_equal(c->name[0], "t01");
  assert_string_equal(c->name[STORE_INV_TABLES_MAX - 1], "t64");
  free(c);
  free(many);

  /* A body one byte over STORE_INV_TABLE_MAX is refused; one at it is kept and read back. */
  uint8_t *big = malloc(STORE_INV_TABLE_MAX + 1);
  assert_non_null(big);
  for (size_t i = 0; i <= STORE_INV_TABLE_MAX; i++) big[i] = (uint8_t)"[\"abcdefgh\"],"[i % 13];
  store_inv_table_t huge = {.name = "deb_packages", .body = big, .len = STORE_INV_TABLE_MAX + 1};
  sha256(big, huge.len, huge.sha256);
  expect_refused(fx, "dev-3", &huge, 1, TT_EINVAL);
  huge.len = STORE_INV_TABLE_MAX;
  sha256(big, huge.len, huge.sha256);
  assert_int_equal(store_inv_put(s, "dev-3", 1, 1, &huge, 1, &v), 0);
  assert_true(v > 0);
  c = seen_new();
  assert_int_equal(store_inv_table(s, "dev-3", "deb_packages", 0, body_cb, c), 0);
  assert_int_equal(c->n, 1);
  assert_int_equal(c->len[0], STORE_INV_TABLE_MAX);
  free(c);
  int64_t bytes = 0;
  assert_int_equal(store_inv_bytes(s, "dev-3", &bytes), 0);
  assert_true(bytes > 0 && bytes < STORE_INV_TABLE_MAX / 10); /* it was compressed */
  free(big);

  /* Reads refuse bad arguments the same way. */
  assert_int_equal(store_inv_table(s, "dev-1", "Mounts", 0, body_cb, NULL), TT_EINVAL);
  assert_int_equal(store_inv_table(s, "dev-1", "mounts", -1, body_cb, NULL), TT_EINVAL);
  assert_int_equal(store_inv_table(s, "", "mounts", 0, body_cb, NULL), TT_EINVAL);
  assert_int_equal(store_inv_tables(s, "dev-1", -5, body_cb, NULL), TT_EINVAL);
  assert_int_equal(store_inv_history(s, "dev-1", -1, 0, hist_cb, NULL), TT_EINVAL);
}

/* ---- damage ------------------------------------------------------------------------------ */

static void expect_damaged(fx_t *fx, const char *sql) {
  sqlite3 *db = raw_open(fx);
  /* What a disk error, a bad restore or a hand edit could leave, past the schema's checks. */
  raw_exec(db, "PRAGMA ignore_check_constraints = ON");
  raw_exec(db, sql);
  sqlite3_close(db);
  seen_t *c = seen_new();
  assert_int_equal(store_inv_table(fx->s, "dev-1", "mounts", 0, body_cb, c), TT_EIO);
  assert_int_equal(store_inv_tables(fx->s, "dev-1", 0, body_cb, c), TT_EIO);
  assert_int_equal(c->n, 1); /* deb_packages, before mounts in name order */
  free(c);
}

static void test_damaged_rows_are_errors(void **state) {
  fx_t *fx = *state;
  broker_store_t *s = fx->s;
  store_inv_table_t t[3] = {tab("os_version", OS1), tab("deb_packages", PKG1), tab("mounts", MNT2)};
  int64_t v = 0;
  assert_int_equal(store_inv_put(s, "dev-1", 1, 1, t, 3, &v), 0);
  static const char *const edits[] = {
    /* Truncated, garbage, emptied, bytes appended, a flipped byte in the data. */
    "UPDATE inv_tables SET body = substr(body, 1, length(body) - 3) WHERE name = 'mounts'",
    "UPDATE inv_tables SET body = X'0102030405060708' WHERE name = 'mounts'",
    "UPDATE inv_tables SET body = X'' WHERE name = 'mounts'",
    "UPDATE inv_tables SET body = CAST(body || X'00' AS BLOB) WHERE name = 'mounts'",
    ("UPDATE inv_tables SET body = CAST(substr(body, 1, 12) || X'FF' || substr(body, 14) AS BLOB)"
     " WHERE name = 'mounts'"),
    /* Another table's body (a frame that decodes, to bytes of the wrong hash). */
    ("UPDATE inv_tables SET body = (SELECT body FROM inv_tables WHERE name = 'os_version'),"
     " size = (SELECT size FROM inv_tables WHERE name = 'os_version') WHERE name = 'mounts'"),
    /* Sizes that do not match the frame, or past any limit (no huge allocation follows). */
    "UPDATE inv_tables SET size = size + 1 WHERE name = 'mounts'",
    "UPDATE inv_tables SET size = 1099511627776 WHERE name = 'mounts'",
    "UPDATE inv_tables SET size = -1 WHERE name = 'mounts'",
    /* A hash of the wrong length, a hash without its body. */
    "UPDATE inv_tables SET sha256 = X'0102' WHERE name = 'mounts'",
    "UPDATE inv_tables SET body = NULL WHERE name = 'mounts'",
  };
  sqlite3 *db = raw_open(fx);
  raw_exec(db, "CREATE TABLE keep AS SELECT * FROM inv_tables WHERE name = 'mounts'");
  sqlite3_close(db);
  for (size_t i = 0; i < sizeof edits / sizeof edits[0]; i++) {
    expect_damaged(fx, edits[i]);
    db = raw_open(fx);
    raw_exec(db, "DELETE FROM inv_tables WHERE name = 'mounts';"
                 " INSERT INTO inv_tables SELECT * FROM keep;");
    sqlite3_close(db);
    char b[256];
    assert_int_equal(body_at(s, "dev-1", "mounts", 0, b, sizeof b, NULL), 0);
    assert_string_equal(b, MNT2);
  }

  /* A name the checks would refuse: the walk and the hash list stop with an error. */
  db = raw_open(fx);
  raw_exec(db, "PRAGMA ignore_check_constraints = ON;"
               " UPDATE inv_tables SET name = 'os_version' || char(0) || 'x' WHERE name = 'os_version'");
  sqlite3_close(db);
  seen_t *c = seen_new();
  assert_int_equal(store_inv_hashes(s, "dev-1", hash_cb, c), TT_EIO);
  assert_int_equal(c->n, 2);
  memset(c, 0, sizeof *c);
  assert_int_equal(store_inv_tables(s, "dev-1", 0, body_cb, c), TT_EIO);
  assert_int_equal(c->n, 2);
  free(c);
  /* The put reads the current hashes too: it fails before writing when it must count. */
  store_inv_table_t more = tab("users", "{\"rows\":[]}");
  int64_t before = rows(fx, "inv_tables");
  assert_int_equal(store_inv_put(s, "dev-1", 2, 2, &more, 1, &v), TT_EIO);
  assert_int_equal(v, 0);
  assert_int_equal(rows(fx, "inv_tables"), before);
}

/* ---- a fleet ------------------------------------------------------------------------------ */

#define FLEET_DEVICES 1000
#define FLEET_TABLES 20

static void fleet_json(char *out, size_t cap, int dev, int table) {
  snprintf(out, cap, "{\"columns\":[\"name\",\"version\"],\"rows\":[[\"pkg-%d-%d\",\"1.%d\"],"
           "[\"lib%d\",\"2.%d.%d\"]]}", dev, table, table, table, dev % 7, table);
}

static const char *const k_fleet_names[FLEET_TABLES] = {
  "block_devices", "cpu_info", "deb_packages", "disk_encryption", "etc_hosts", "groups",
  "interface_addresses", "interface_details", "kernel_info", "listening_ports", "logged_in_users",
  "memory_info", "mounts", "os_version", "processes", "routes", "system_info", "systemd_units",
  "uptime", "users",
};

typedef struct {
  int dev;
  int n;
  bool bad;
} fleet_check_t;

static int fleet_cb(void *ctx, const char *name, int64_t version, int64_t received_ms,
                    const uint8_t *body, size_t len) {
  fleet_check_t *f = ctx;
  char want[256];
  if (f->n >= FLEET_TABLES || strcmp(name, k_fleet_names[f->n]) != 0) {
    f->bad = true;
    return 1;
  }
  fleet_json(want, sizeof want, f->dev, f->n);
  if (len != strlen(want) || memcmp(body, want, len) != 0 || version <= 0 || received_ms != 5000 + f->dev)
    f->bad = true;
  f->n++;
  return 0;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_fleet_put_and_read_back(void **state) {
  fx_t *fx = *state;
  broker_store_t *s = fx->s;
  /* k_fleet_names is in name order, as the reads return it. */
  for (int i = 1; i < FLEET_TABLES; i++) assert_true(strcmp(k_fleet_names[i - 1], k_fleet_names[i]) < 0);
  static char bodies[FLEET_TABLES][256];
  store_inv_table_t t[FLEET_TABLES];
  double t0 = now_s();
  for (int d = 0; d < FLEET_DEVICES; d++) {
    char dev[32];
    snprintf(dev, sizeof dev, "dev-%04d", d);
    for (int i = 0; i < FLEET_TABLES; i++) {
      fleet_json(bodies[i], sizeof bodies[i], d, i);
      t[i] = tab(k_fleet_names[i], bodies[i]);
    }
    int64_t v = 0;
    assert_int_equal(store_inv_put(s, dev, 4000 + d, 5000 + d, t, FLEET_TABLES, &v), 0);
    assert_true(v > 0);
  }
  double t1 = now_s();
  for (int d = 0; d < FLEET_DEVICES; d++) {
    char dev[32];
    snprintf(dev, sizeof dev, "dev-%04d", d);
    fleet_check_t f = {.dev = d};
    assert_int_equal(store_inv_tables(s, dev, 0, fleet_cb, &f), 0);
    assert_false(f.bad);
    assert_int_equal(f.n, FLEET_TABLES);
  }
  double t2 = now_s();
  assert_int_equal(rows(fx, "inv_tables"), FLEET_DEVICES * FLEET_TABLES);
  assert_int_equal(rows(fx, "inv_versions"), FLEET_DEVICES);
  /* A second round where one table per device changed: one row each. */
  for (int d = 0; d < FLEET_DEVICES; d += 10) {
    char dev[32], json[64];
    snprintf(dev, sizeof dev, "dev-%04d", d);
    snprintf(json, sizeof json, "{\"rows\":[[\"%d\"]]}", d);
    store_inv_table_t u = tab("uptime", json);
    int64_t v = 0;
    assert_int_equal(store_inv_put(s, dev, 9000, 9000, &u, 1, &v), 0);
    assert_true(v > 0);
  }
  assert_int_equal(rows(fx, "inv_tables"), FLEET_DEVICES * FLEET_TABLES + FLEET_DEVICES / 10);
  print_message("fleet: %d devices x %d tables put in %.2f s, read back in %.2f s\n", FLEET_DEVICES,
                FLEET_TABLES, t1 - t0, t2 - t1);
}

/* ---- schema --------------------------------------------------------------------------------- */

static void test_v6_migrates_v5_store(void **state) {
  fx_t *fx = *state;
  store_device_t d = {.id = "dev-1", .hostname = "h1", .enrolled_ms = 5};
  assert_int_equal(store_device_add(fx->s, &d), 0);
  store_close(fx->s);
  fx->s = NULL;
  /* Take the file back to what schema 5 left behind (its audit is test_store.c's to check). */
  sqlite3 *db = raw_open(fx);
  raw_exec(db, STORE_UNDO_TO_10 "DROP TABLE inv_rows; DROP TABLE inv_devs; DROP TABLE inv_bases; DROP TABLE inv_base_rows; DROP TABLE inv_cur; DROP TABLE inv_plus; DROP TABLE inv_find_todo; DROP TABLE asset_custom; DROP TABLE asset_records; DROP TABLE inv_macs; DROP TABLE inv_facts; DROP INDEX devices_hostname_key; DROP TABLE diag_reports; DROP TABLE inv_tables; DROP TABLE inv_versions; PRAGMA user_version = 5;");
  sqlite3_close(db);

  char err[512];
  assert_int_equal(store_open(&fx->s, fx->dir, err, sizeof err), 0);
  assert_int_equal(store_schema_version(fx->s), STORE_SCHEMA_VERSION);
  store_device_t got;
  assert_int_equal(store_device_get(fx->s, "dev-1", &got), 0);
  assert_string_equal(got.hostname, "h1");
  store_inv_table_t t = tab("os_version", OS1);
  int64_t v = 0;
  assert_int_equal(store_inv_put(fx->s, "dev-1", 1, 1, &t, 1, &v), 0);
  assert_true(v > 0);
  db = raw_open(fx);
  assert_int_equal(raw_int(db, "PRAGMA user_version"), STORE_SCHEMA_VERSION);
  assert_int_equal(raw_int(db, "SELECT count(*) FROM sqlite_schema WHERE type = 'index'"
                               " AND tbl_name IN ('inv_tables', 'inv_versions')"), 4); /* 20: by version */
  sqlite3_close(db);

  /* The readers' connection serves the same reads. */
  broker_store_t *ro = NULL;
  assert_int_equal(store_open_ro(&ro, fx->dir, err, sizeof err), 0);
  char b[256];
  assert_int_equal(body_at(ro, "dev-1", "os_version", 0, b, sizeof b, NULL), 0);
  assert_string_equal(b, OS1);
  store_close(ro);
}

int main(void) {
  tt_log_set_level(TT_LOG_OFF);
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(test_put_stores_changes_only, setup, teardown),
    cmocka_unit_test_setup_teardown(test_removal, setup, teardown),
    cmocka_unit_test_setup_teardown(test_history_paging_and_time, setup, teardown),
    cmocka_unit_test_setup_teardown(test_limits_refuse_whole_put, setup, teardown),
    cmocka_unit_test_setup_teardown(test_damaged_rows_are_errors, setup, teardown),
    cmocka_unit_test_setup_teardown(test_fleet_put_and_read_back, setup, teardown),
    cmocka_unit_test_setup_teardown(test_v6_migrates_v5_store, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
