/* broker/store: the file and its directory are private, schema versions are honoured, every
 * table behaves as store.h says, the audit chain catches tampering, and a broker killed in
 * the middle of writing reopens a consistent store. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sqlite3.h>

#include "store.h"
#include "tt/log.h"
#include "store_undo.h"

typedef struct {
  char base[PATH_MAX];  /* mkdtemp'd, removed at teardown */
  char dir[PATH_MAX];   /* base/data: the data directory, not created by the fixture */
  char db[PATH_MAX];    /* dir/broker.db */
} fx_t;

static int rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  return remove(path);
}

static int setup(void **state) {
  fx_t *fx = calloc(1, sizeof *fx);
  if (fx == NULL) return -1;
  const char *tmp = getenv("TT_TEST_TMP");
  if (tmp == NULL || tmp[0] == '\0') tmp = "/tmp";
  snprintf(fx->base, sizeof fx->base, "%s/test_store.XXXXXX", tmp);
  if (mkdtemp(fx->base) == NULL) {
    free(fx);
    return -1;
  }
  int n = snprintf(fx->dir, sizeof fx->dir, "%s/data", fx->base);
  int m = snprintf(fx->db, sizeof fx->db, "%s/data/broker.db", fx->base);
  if (n < 0 || (size_t)n >= sizeof fx->dir || m < 0 || (size_t)m >= sizeof fx->db) {
    rmdir(fx->base);
    free(fx);
    return -1;
  }
  *state = fx;
  return 0;
}

static int teardown(void **state) {
  fx_t *fx = *state;
  nftw(fx->base, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
  free(fx);
  return 0;
}

static broker_store_t *open_ok(const fx_t *fx) {
  broker_store_t *s = NULL;
  char err[512];
  int rc = store_open(&s, fx->dir, err, sizeof err);
  if (rc != 0) fprintf(stderr, "store_open: %s (%s)\n", err, tt_strerror(rc));
  assert_int_equal(rc, 0);
  assert_non_null(s);
  return s;
}

/* A second, plain connection to the same file: what an admin's sqlite3 shell would do. */
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

static void raw_text(sqlite3 *db, const char *sql, char *out, size_t cap) {
  sqlite3_stmt *st = NULL;
  assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
  assert_int_equal(sqlite3_step(st), SQLITE_ROW);
  const unsigned char *t = sqlite3_column_text(st, 0);
  snprintf(out, cap, "%s", t != NULL ? (const char *)t : "");
  sqlite3_finalize(st);
}

static unsigned file_mode(const char *path) {
  struct stat st;
  assert_int_equal(stat(path, &st), 0);
  return (unsigned)(st.st_mode & 07777);
}

/* ---- open, reopen, versions ----------------------------------------------------------- */

static void test_open_creates_private_wal_store(void **state) {
  fx_t *fx = *state;
  broker_store_t *s = open_ok(fx);
  assert_int_equal(store_schema_version(s), STORE_SCHEMA_VERSION);
  assert_int_equal(file_mode(fx->dir), 0700);
  assert_int_equal(file_mode(fx->db), 0600);
  sqlite3 *db = raw_open(fx);
  char mode[16];
  raw_text(db, "PRAGMA journal_mode", mode, sizeof mode);
  assert_string_equal(mode, "wal");
  assert_int_equal(raw_int(db, "PRAGMA user_version"), STORE_SCHEMA_VERSION);
  assert_int_equal(raw_int(db, "SELECT count(*) FROM sqlite_schema WHERE type = 'trigger'"), 8);
  sqlite3_close(db);
  char wal[PATH_MAX + 8];
  snprintf(wal, sizeof wal, "%s-wal", fx->db);
  if (access(wal, F_OK) == 0) assert_int_equal(file_mode(wal), 0600);
  store_close(s);
}

static void test_open_refuses_loose_dir(void **state) {
  fx_t *fx = *state;
  char err[512];
  broker_store_t *s = (broker_store_t *)&err; /* must be cleared on failure */
  assert_int_equal(mkdir(fx->dir, 0700), 0);
  assert_int_equal(chmod(fx->dir, 0770), 0);
  assert_int_equal(store_open(&s, fx->dir, err, sizeof err), TT_ECONFIG);
  assert_null(s);
  assert_non_null(strstr(err, "writable"));
  assert_int_not_equal(access(fx->db, F_OK), 0); /* nothing was created inside */
  assert_int_equal(chmod(fx->dir, 0702), 0);
  assert_int_equal(store_open(&s, fx->dir, err, sizeof err), TT_ECONFIG);
  /* A file where the directory should be. */
  assert_int_equal(rmdir(fx->dir), 0);
  FILE *f = fopen(fx->dir, "w");
  assert_non_null(f);
  fclose(f);
  assert_int_equal(store_open(&s, fx->dir, err, sizeof err), TT_ECONFIG);
  assert_non_null(strstr(err, "not a directory"));
  /* A parent that does not exist. */
  char deep[PATH_MAX + 16];
  snprintf(deep, sizeof deep, "%s/no/such", fx->base);
  assert_int_equal(store_open(&s, deep, err, sizeof err), -ENOENT);
  assert_null(s);
}

static void test_open_tightens_loose_file(void **state) {
  fx_t *fx = *state;
  assert_int_equal(mkdir(fx->dir, 0700), 0);
  FILE *f = fopen(fx->db, "w");
  assert_non_null(f);
  fclose(f);
  assert_int_equal(chmod(fx->db, 0644), 0);
  broker_store_t *s = open_ok(fx); /* an empty file is a new database */
  assert_int_equal(file_mode(fx->db), 0600);
  assert_int_equal(store_schema_version(s), STORE_SCHEMA_VERSION);
  store_close(s);
}

static void test_reopen_keeps_data(void **state) {
  fx_t *fx = *state;
  broker_store_t *s = open_ok(fx);
  store_device_t d = {.id = "dev-1", .hostname = "h1", .enrolled_ms = 5};
  assert_int_equal(store_device_add(s, &d), 0);
  for (int i = 0; i < 3; i++)
    assert_int_equal(store_audit_append(s, 100 + i, "broker", "enroll", "dev-1", "{}", NULL), 0);
  store_close(s);

  s = open_ok(fx);
  assert_int_equal(store_schema_version(s), STORE_SCHEMA_VERSION);
  store_device_t got;
  assert_int_equal(store_device_get(s, "dev-1", &got), 0);
  assert_string_equal(got.hostname, "h1");
  int64_t id = 0, n = 0, bad = -1;
  /* The chain's tail was reloaded: the next entry links to entry 3. */
  assert_int_equal(store_audit_append(s, 200, "alice", "connect", "dev-1", "{}", &id), 0);
  assert_int_equal(id, 4);
  assert_int_equal(store_audit_verify(s, &n, &bad), 0);
  assert_int_equal(n, 4);
  assert_int_equal(bad, 0);
  store_close(s);
}

static void test_refuses_newer_schema(void **state) {
  fx_t *fx = *state;
  store_close(open_ok(fx));
  sqlite3 *db = raw_open(fx);
  raw_exec(db, "PRAGMA user_version = 99");
  sqlite3_close(db);
  broker_store_t *s = NULL;
  char err[512];
  assert_int_equal(store_open(&s, fx->dir, err, sizeof err), TT_EVERSION);
  assert_null(s);
  char want[96];
  snprintf(want, sizeof want, "store schema 99 is newer than this broker (%d)", STORE_SCHEMA_VERSION);
  assert_string_equal(err, want);
  db = raw_open(fx);
  assert_int_equal(raw_int(db, "PRAGMA user_version"), 99); /* left as it was */
  sqlite3_close(db);
}

/* ---- devices --------------------------------------------------------------------------- */

typedef struct {
  char ids[64][STORE_NAME_MAX];
  int n;
  int stop_after; /* 0 = never */
} dev_seen_t;

static int collect_dev(void *ctx, const store_device_t *d) {
  dev_seen_t *c = ctx;
  if (c->n < 64) snprintf(c->ids[c->n], sizeof c->ids[0], "%s", d->id);
  c->n++;
  return (c->stop_after != 0 && c->n == c->stop_after) ? 42 : 0;
}

static void test_devices(void **state) {
  fx_t *fx = *state;
  broker_store_t *s = open_ok(fx);
  store_device_t d = {.id = "dev-a", .hostname = "alpha", .address = "10.0.0.1:5000",
                      .version = "0.1.0", .cert_fp = "sha256:ab", .enrolled_ms = 1000,
                      .last_seen_ms = 0, .cert_not_after_ms = 9000, .revoked = false};
  assert_int_equal(store_device_add(s, &d), 0);
  assert_int_equal(store_device_add(s, &d), -EEXIST);
  store_device_t got;
  assert_int_equal(store_device_get(s, "dev-a", &got), 0);
  assert_string_equal(got.id, "dev-a");
  assert_string_equal(got.hostname, "alpha");
  assert_string_equal(got.address, "10.0.0.1:5000");
  assert_string_equal(got.version, "0.1.0");
  assert_string_equal(got.cert_fp, "sha256:ab");
  assert_int_equal(got.enrolled_ms, 1000);
  assert_int_equal(got.last_seen_ms, 0);
  assert_int_equal(got.cert_not_after_ms, 9000);
  assert_false(got.revoked);
  assert_int_equal(store_device_get(s, "dev-nope", &got), TT_ENOTFOUND);

  /* seen: updates what the agent reports, keeps enrollment and certificate. */
  assert_int_equal(store_device_seen(s, "dev-a", "alpha2", "10.0.0.2:6000", "0.2.0", 2000), 0);
  assert_int_equal(store_device_get(s, "dev-a", &got), 0);
  assert_string_equal(got.hostname, "alpha2");
  assert_string_equal(got.address, "10.0.0.2:6000");
  assert_string_equal(got.version, "0.2.0");
  assert_int_equal(got.last_seen_ms, 2000);
  assert_int_equal(got.enrolled_ms, 1000);
  assert_string_equal(got.cert_fp, "sha256:ab");
  /* seen: an unknown device (a certificate issued by hand) is inserted. */
  assert_int_equal(store_device_seen(s, "dev-z", "zulu", "10.0.0.9:1", "0.1.0", 3000), 0);
  assert_int_equal(store_device_get(s, "dev-z", &got), 0);
  assert_string_equal(got.hostname, "zulu");
  assert_int_equal(got.enrolled_ms, 3000);
  assert_int_equal(got.last_seen_ms, 3000);
  assert_string_equal(got.cert_fp, "");
  assert_false(got.revoked);

  assert_int_equal(store_device_set_cert(s, "dev-a", "sha256:cd", 99000), 0);
  assert_int_equal(store_device_get(s, "dev-a", &got), 0);
  assert_string_equal(got.cert_fp, "sha256:cd");
  assert_int_equal(got.cert_not_after_ms, 99000);
  assert_string_equal(got.hostname, "alpha2");
  assert_int_equal(store_device_set_cert(s, "dev-nope", "sha256:00", 1), TT_ENOTFOUND);

  /* Output copies truncate at a character boundary: "a" and 150 two-byte characters are
   * 301 bytes; a cut that would split a character backs off by one byte. */
  char longname[302];
  longname[0] = 'a';
  for (int i = 0; i < 150; i++) memcpy(longname + 1 + 2 * i, "\xc3\xa9", 2);
  longname[301] = '\0';
  assert_int_equal(store_device_seen(s, "dev-long", longname, "", "", 1), 0);
  assert_int_equal(store_device_get(s, "dev-long", &got), 0);
  size_t cut = STORE_TEXT_MAX - 1, keep = (cut % 2 == 1) ? cut : cut - 1;
  assert_int_equal(strlen(got.hostname), keep);
  assert_memory_equal(got.hostname, longname, keep);

  /* Listing: 3 so far, plus dev-00 .. dev-24 = 28, ordered by id. */
  for (int i = 0; i < 25; i++) {
    store_device_t x = {.enrolled_ms = i};
    snprintf(x.id, sizeof x.id, "dev-%02d", i);
    assert_int_equal(store_device_add(s, &x), 0);
  }
  assert_int_equal(store_device_count(s), 28);
  static dev_seen_t all, page;
  uint32_t total = 0;
  memset(&all, 0, sizeof all);
  assert_int_equal(store_device_list(s, 0, 0, collect_dev, &all, &total), 0);
  assert_int_equal(total, 28);
  assert_int_equal(all.n, 28);
  for (int i = 1; i < all.n; i++) assert_true(strcmp(all.ids[i - 1], all.ids[i]) < 0);
  assert_string_equal(all.ids[0], "dev-00");
  assert_string_equal(all.ids[27], "dev-z");
  int seen = 0;
  for (uint32_t off = 0; off < 40; off += 10) {
    memset(&page, 0, sizeof page);
    total = 0;
    assert_int_equal(store_device_list(s, off, 10, collect_dev, &page, &total), 0);
    assert_int_equal(total, 28);
    int want = off >= 28 ? 0 : (28 - (int)off < 10 ? 28 - (int)off : 10);
    assert_int_equal(page.n, want);
    for (int i = 0; i < page.n; i++) assert_string_equal(page.ids[i], all.ids[off + (uint32_t)i]);
    seen += page.n;
  }
  assert_int_equal(seen, 28);
  /* A callback's non-zero return stops the walk and comes back. */
  memset(&page, 0, sizeof page);
  page.stop_after = 3;
  assert_int_equal(store_device_list(s, 0, 10, collect_dev, &page, NULL), 42);
  assert_int_equal(page.n, 3);
  /* The statement was reset: the next listing starts over. */
  memset(&page, 0, sizeof page);
  assert_int_equal(store_device_list(s, 5, 2, collect_dev, &page, &total), 0);
  assert_int_equal(page.n, 2);
  assert_string_equal(page.ids[0], all.ids[5]);
  store_close(s);
}

/* ---- tokens ------------------------------------------------------------------------------ */

static void fill_hash(uint8_t h[32], uint8_t seed) {
  for (int i = 0; i < 32; i++) h[i] = (uint8_t)(seed * 31 + i);
}

static void test_tokens(void **state) {
  fx_t *fx = *state;
  broker_store_t *s = open_ok(fx);
  const int64_t now = 1700000000000;
  uint8_t h1[32], h2[32], h3[32], h4[32];
  fill_hash(h1, 1);
  fill_hash(h2, 2);
  fill_hash(h3, 3);
  fill_hash(h4, 4);

  assert_int_equal(store_token_add(s, h1, now + 60000, 1, "one shot", "alice", now), 0);
  assert_int_equal(store_token_add(s, h1, now + 60000, 1, "again", "alice", now), -EEXIST);
  assert_int_equal(store_token_use(s, h1, now + 1), 0);
  assert_int_equal(store_token_use(s, h1, now + 2), TT_EDENIED); /* used, not unknown */
  assert_int_equal(store_token_use(s, h1, now + 3), TT_EDENIED);

  /* Expiry: valid until the instant it expires. */
  assert_int_equal(store_token_add(s, h2, now + 10, 5, "", "alice", now), 0);
  assert_int_equal(store_token_use(s, h2, now + 9), 0);
  assert_int_equal(store_token_use(s, h2, now + 10), TT_ETIMEOUT);
  assert_int_equal(store_token_use(s, h2, now + 100000), TT_ETIMEOUT);

  assert_int_equal(store_token_use(s, h3, now), TT_ENOTFOUND);
  /* A hash that differs in its last byte only is another token. */
  uint8_t near[32];
  memcpy(near, h1, 32);
  near[31] ^= 1;
  assert_int_equal(store_token_use(s, near, now), TT_ENOTFOUND);

  assert_int_equal(store_token_add(s, h4, now + 60000, 50, "fleet", "bob", now), 0);
  for (int i = 0; i < 50; i++) assert_int_equal(store_token_use(s, h4, now + i), 0);
  assert_int_equal(store_token_use(s, h4, now + 50), TT_EDENIED);

  assert_int_equal(store_token_add(s, h3, now + 60000, 0, "", "bob", now), TT_EINVAL);
  store_close(s);

  /* Used-up rows are kept, with no uses left. */
  sqlite3 *db = raw_open(fx);
  assert_int_equal(raw_int(db, "SELECT count(*) FROM tokens"), 3);
  assert_int_equal(raw_int(db, "SELECT sum(uses_left) FROM tokens"), 4);
  sqlite3_close(db);
}

/* ---- revocations ------------------------------------------------------------------------ */

static void test_revocations(void **state) {
  fx_t *fx = *state;
  broker_store_t *s = open_ok(fx);
  store_device_t d = {.id = "dev-r", .enrolled_ms = 1};
  assert_int_equal(store_device_add(s, &d), 0);
  bool r = true;
  assert_int_equal(store_is_revoked(s, STORE_REVOKE_DEVICE, "dev-r", &r), 0);
  assert_false(r);

  assert_int_equal(store_revoke(s, STORE_REVOKE_DEVICE, "dev-r", "alice", "lost laptop", 10), 0);
  assert_int_equal(store_revoke(s, STORE_REVOKE_DEVICE, "dev-r", "bob", "again", 11), -EEXIST);
  assert_int_equal(store_is_revoked(s, STORE_REVOKE_DEVICE, "dev-r", &r), 0);
  assert_true(r);
  store_device_t got;
  assert_int_equal(store_device_get(s, "dev-r", &got), 0);
  assert_true(got.revoked);

  /* Kinds are separate namespaces. */
  assert_int_equal(store_is_revoked(s, STORE_REVOKE_PERSON, "dev-r", &r), 0);
  assert_false(r);
  assert_int_equal(store_revoke(s, STORE_REVOKE_PERSON, "mallory", "alice", "left", 12), 0);
  assert_int_equal(store_is_revoked(s, STORE_REVOKE_PERSON, "mallory", &r), 0);
  assert_true(r);
  assert_int_equal(store_is_revoked(s, STORE_REVOKE_DEVICE, "mallory", &r), 0);
  assert_false(r);

  /* A device the store has not met yet can be revoked ahead of time. */
  assert_int_equal(store_revoke(s, STORE_REVOKE_DEVICE, "ghost", "alice", "", 13), 0);
  assert_int_equal(store_is_revoked(s, STORE_REVOKE_DEVICE, "ghost", &r), 0);
  assert_true(r);
  assert_int_equal(store_device_get(s, "ghost", &got), TT_ENOTFOUND);

  assert_int_equal(store_revoke(s, (store_revoke_kind_t)7, "x", "alice", "", 14), TT_EINVAL);
  /* The failed duplicate left no transaction open behind it. */
  assert_int_equal(store_device_seen(s, "dev-q", "q", "", "", 15), 0);
  store_close(s);
}

/* ---- audit -------------------------------------------------------------------------------- */

/* The documented hash, computed independently of store.c. */
static void ref_hash(const uint8_t prev[32], int64_t id, int64_t ts, const char *actor,
                     const char *action, const char *target, const char *detail, uint8_t out[32]) {
  uint8_t buf[2048];
  size_t o = 0;
  memcpy(buf, prev, 32);
  o = 32;
  for (int i = 7; i >= 0; i--) buf[o++] = (uint8_t)((uint64_t)id >> (8 * i));
  for (int i = 7; i >= 0; i--) buf[o++] = (uint8_t)((uint64_t)ts >> (8 * i));
  const char *f[4] = {actor, action, target, detail};
  for (int k = 0; k < 4; k++) {
    size_t n = strlen(f[k]);
    for (int i = 3; i >= 0; i--) buf[o++] = (uint8_t)(n >> (8 * i));
    memcpy(buf + o, f[k], n);
    o += n;
  }
  unsigned int len = 0;
  assert_int_equal(EVP_Digest(buf, o, out, &len, EVP_sha256(), NULL), 1);
  assert_int_equal(len, 32);
}

static size_t be32(uint8_t *p, size_t n) {
  for (int i = 3; i >= 0; i--) *p++ = (uint8_t)(n >> (8 * i));
  return 4;
}

/* Format 2, written out again from tt/audit.h's words, for an entry whose detail is not a flat
 * object of strings (the fixtures' {"i":37}): its values are actor, target and the detail
 * whole (key 0x01). digests: each value's HMAC under its stored salt. */
static void ref_hash2(const store_audit_t *e, uint8_t digests[3][32], uint8_t out[32]) {
  const char *key[3] = {"actor", "target", "\x01"}, *val[3] = {e->actor, e->target, e->detail};
  assert_int_equal(e->format, 2);
  assert_int_equal(e->nvalues, 3);
  uint8_t buf[4096];
  size_t o = 0;
  memcpy(buf, "tether-audit-2", 15); /* with its NUL */
  o = 15;
  memcpy(buf + o, e->prev_hash, 32);
  o += 32;
  for (int i = 7; i >= 0; i--) buf[o++] = (uint8_t)((uint64_t)e->id >> (8 * i));
  for (int i = 7; i >= 0; i--) buf[o++] = (uint8_t)((uint64_t)e->ts_ms >> (8 * i));
  o += be32(buf + o, strlen(e->action));
  memcpy(buf + o, e->action, strlen(e->action));
  o += strlen(e->action);
  o += be32(buf + o, 3);
  for (int k = 0; k < 3; k++) {
    uint8_t msg[1024];
    size_t m = be32(msg, (size_t)k);
    memcpy(msg + m, val[k], strlen(val[k]));
    m += strlen(val[k]);
    unsigned int dlen = 0;
    assert_true(e->values[k].has_salt);
    assert_non_null(HMAC(EVP_sha256(), e->values[k].salt, 16, msg, m, digests[k], &dlen));
    o += be32(buf + o, strlen(key[k]));
    memcpy(buf + o, key[k], strlen(key[k]));
    o += strlen(key[k]);
    memcpy(buf + o, digests[k], 32);
    o += 32;
  }
  unsigned int len = 0;
  assert_int_equal(EVP_Digest(buf, o, out, &len, EVP_sha256(), NULL), 1);
}

/* An entry as a broker before schema 16 wrote it (format 1), straight into the file. */
static void raw_audit_v1(sqlite3 *db, int64_t ts, const char *actor, const char *action, const char *target,
                         const char *detail) {
  uint8_t prev[32] = {0}, h[32];
  int64_t id = 1;
  sqlite3_stmt *st = NULL;
  assert_int_equal(sqlite3_prepare_v2(db, "SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1", -1, &st, NULL),
                   SQLITE_OK);
  if (sqlite3_step(st) == SQLITE_ROW) {
    id = sqlite3_column_int64(st, 0) + 1;
    memcpy(prev, sqlite3_column_blob(st, 1), 32);
  }
  sqlite3_finalize(st);
  ref_hash(prev, id, ts, actor, action, target, detail, h);
  assert_int_equal(sqlite3_prepare_v2(db, "INSERT INTO audit(id, ts_ms, actor, action, target, detail, prev_hash, hash)"
                                          " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)", -1, &st, NULL), SQLITE_OK);
  sqlite3_bind_int64(st, 1, id);
  sqlite3_bind_int64(st, 2, ts);
  sqlite3_bind_text(st, 3, actor, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 4, action, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 5, target, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 6, detail, -1, SQLITE_STATIC);
  sqlite3_bind_blob(st, 7, prev, 32, SQLITE_STATIC);
  sqlite3_bind_blob(st, 8, h, 32, SQLITE_STATIC);
  assert_int_equal(sqlite3_step(st), SQLITE_DONE);
  sqlite3_finalize(st);
}

typedef struct {
  store_audit_t e[128];
  int n;
} audit_seen_t;

static int collect_audit(void *ctx, const store_audit_t *e) {
  audit_seen_t *c = ctx;
  if (c->n < 128) c->e[c->n] = *e;
  c->n++;
  return 0;
}

static void audit_fill(broker_store_t *s, int count) {
  for (int i = 1; i <= count; i++) {
    char target[32], detail[64];
    snprintf(target, sizeof target, "dev-%d", i % 4);
    snprintf(detail, sizeof detail, "{\"i\":%d}", i);
    int64_t id = 0;
    assert_int_equal(store_audit_append(s, 1000 + 10 * i, (i % 2) ? "alice" : "broker", "connect",
                                        target, detail, &id),
                     0);
    assert_int_equal(id, i);
  }
}

static void audit_expect(broker_store_t *s, int64_t count, int64_t first_bad) {
  int64_t n = -1, bad = -1;
  assert_int_equal(store_audit_verify(s, &n, &bad), 0);
  assert_int_equal(n, count);
  assert_int_equal(bad, first_bad);
}

static void test_audit_chain_and_filters(void **state) {
  fx_t *fx = *state;
  broker_store_t *s = open_ok(fx);
  audit_expect(s, 0, 0);
  audit_fill(s, 100);
  audit_expect(s, 100, 0);

  static audit_seen_t c;
  store_audit_filter_t f = {0};
  memset(&c, 0, sizeof c);
  assert_int_equal(store_audit_list(s, &f, collect_audit, &c), 0);
  assert_int_equal(c.n, 100);
  uint8_t zero[32] = {0}, h[32];
  for (int i = 0; i < 100; i++) {
    const store_audit_t *e = &c.e[i];
    assert_int_equal(e->id, i + 1);
    assert_int_equal(e->ts_ms, 1000 + 10 * (i + 1));
    assert_memory_equal(e->prev_hash, i == 0 ? zero : c.e[i - 1].hash, 32);
    uint8_t d[3][32];
    ref_hash2(e, d, h);
    assert_memory_equal(e->hash, h, 32);
    for (int k = 0; k < 3; k++) assert_memory_equal(e->values[k].digest, d[k], 32);
  }
  assert_string_equal(c.e[36].detail, "{\"i\":37}");
  assert_string_equal(c.e[36].actor, "alice");
  assert_string_equal(c.e[36].target, "dev-1");

  /* since: ts >= 1500 is entries 50..100. */
  memset(&c, 0, sizeof c);
  f = (store_audit_filter_t){.since_ms = 1500};
  assert_int_equal(store_audit_list(s, &f, collect_audit, &c), 0);
  assert_int_equal(c.n, 51);
  assert_int_equal(c.e[0].id, 50);
  /* device as target: i % 4 == 1. */
  memset(&c, 0, sizeof c);
  f = (store_audit_filter_t){.device = "dev-1"};
  assert_int_equal(store_audit_list(s, &f, collect_audit, &c), 0);
  assert_int_equal(c.n, 25);
  for (int i = 0; i < c.n; i++) assert_int_equal(c.e[i].id, 4 * i + 1);
  /* device as actor. */
  memset(&c, 0, sizeof c);
  f = (store_audit_filter_t){.device = "broker"};
  assert_int_equal(store_audit_list(s, &f, collect_audit, &c), 0);
  assert_int_equal(c.n, 50);
  /* All three together. */
  memset(&c, 0, sizeof c);
  f = (store_audit_filter_t){.since_ms = 1500, .device = "dev-1", .limit = 5};
  assert_int_equal(store_audit_list(s, &f, collect_audit, &c), 0);
  assert_int_equal(c.n, 5);
  static const int64_t want[] = {53, 57, 61, 65, 69};
  for (int i = 0; i < 5; i++) assert_int_equal(c.e[i].id, want[i]);
  memset(&c, 0, sizeof c);
  f = (store_audit_filter_t){.limit = 7};
  assert_int_equal(store_audit_list(s, &f, collect_audit, &c), 0);
  assert_int_equal(c.n, 7);
  assert_int_equal(c.e[6].id, 7);
  memset(&c, 0, sizeof c);
  f = (store_audit_filter_t){.device = "nobody"};
  assert_int_equal(store_audit_list(s, &f, collect_audit, &c), 0);
  assert_int_equal(c.n, 0);

  /* A field the entry cannot hold is refused, not truncated out of its hash. */
  char big[600];
  memset(big, 'x', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  assert_int_equal(store_audit_append(s, 1, "alice", "x", "", big, NULL), TT_ETOOBIG);
  big[STORE_NAME_MAX] = '\0';
  assert_int_equal(store_audit_append(s, 1, big, "x", "", "{}", NULL), TT_ETOOBIG);
  audit_expect(s, 100, 0);
  store_close(s);
}

static void test_audit_detects_edit(void **state) {
  fx_t *fx = *state;
  broker_store_t *s = open_ok(fx);
  audit_fill(s, 100);
  sqlite3 *db = raw_open(fx);
  raw_exec(db, "UPDATE audit_gate SET open = 1"); /* what an admin with sqlite3 can do */
  raw_exec(db, "UPDATE audit SET detail = '{\"i\":1037}' WHERE id = 37");
  audit_expect(s, 100, 37); /* the value is not what its digest says */
  /* A tamperer who also recomputes the value's digest (its salt is there) and row 37's hash
   * breaks row 38's link instead. */
  static audit_seen_t c;
  memset(&c, 0, sizeof c);
  store_audit_filter_t f = {.limit = 37};
  assert_int_equal(store_audit_list(s, &f, collect_audit, &c), 0);
  const store_audit_t *e = &c.e[36];
  uint8_t h[32], d[3][32];
  ref_hash2(e, d, h);
  sqlite3_stmt *st = NULL;
  assert_int_equal(sqlite3_prepare_v2(db, "UPDATE audit SET hash = ?1 WHERE id = 37", -1, &st, NULL),
                   SQLITE_OK);
  assert_int_equal(sqlite3_bind_blob(st, 1, h, 32, SQLITE_TRANSIENT), SQLITE_OK);
  assert_int_equal(sqlite3_step(st), SQLITE_DONE);
  sqlite3_finalize(st);
  assert_int_equal(sqlite3_prepare_v2(db, "UPDATE audit_values SET digest = ?1 WHERE entry = 37 AND n = 2", -1, &st,
                                      NULL), SQLITE_OK);
  assert_int_equal(sqlite3_bind_blob(st, 1, d[2], 32, SQLITE_TRANSIENT), SQLITE_OK);
  assert_int_equal(sqlite3_step(st), SQLITE_DONE);
  sqlite3_finalize(st);
  audit_expect(s, 100, 37); /* entry 38 no longer links to it: 37 is the edited one */
  sqlite3_close(db);
  store_close(s);
}

static void test_audit_detects_delete(void **state) {
  fx_t *fx = *state;
  broker_store_t *s = open_ok(fx);
  audit_fill(s, 100);
  store_close(s);
  sqlite3 *db = raw_open(fx);
  raw_exec(db, "DROP TRIGGER audit_no_delete");
  raw_exec(db, "DELETE FROM audit WHERE id = 50");
  sqlite3_close(db);
  s = open_ok(fx);
  audit_expect(s, 99, 50); /* entry 50 is missing */
  store_close(s);
}

static void test_audit_triggers_refuse_rewrite(void **state) {
  fx_t *fx = *state;
  broker_store_t *s = open_ok(fx);
  audit_fill(s, 5);
  /* store.h offers no way to rewrite an entry, so try it with plain SQL on a connection
   * that leaves the schema's triggers in place, as the store's own connection does. */
  sqlite3 *db = raw_open(fx);
  char *msg = NULL;
  int rc = sqlite3_exec(db, "UPDATE audit SET detail = '{}' WHERE id = 2", NULL, NULL, &msg);
  assert_int_equal(rc, SQLITE_CONSTRAINT);
  assert_non_null(msg);
  assert_non_null(strstr(msg, "append-only"));
  sqlite3_free(msg);
  msg = NULL;
  rc = sqlite3_exec(db, "DELETE FROM audit WHERE id = 5", NULL, NULL, &msg);
  assert_int_equal(rc, SQLITE_CONSTRAINT);
  sqlite3_free(msg);
  assert_int_equal(raw_int(db, "SELECT count(*) FROM audit"), 5);
  sqlite3_close(db);
  audit_expect(s, 5, 0);
  store_close(s);
}

/* ---- crash consistency ------------------------------------------------------------------- */

#define CRASH_ROUNDS 5

/* The child: enroll devices in a tight loop, each with an audit entry, every tenth revoked
 * (a two-statement transaction). Reports after the first commit, then runs until killed. */
static void crash_child(const fx_t *fx, int fd) {
  broker_store_t *s = NULL;
  char err[512];
  if (store_open(&s, fx->dir, err, sizeof err) != 0) _exit(10);
  size_t start = store_device_count(s);
  for (size_t i = start;; i++) {
    char id[STORE_NAME_MAX];
    snprintf(id, sizeof id, "crash-%06zu", i);
    store_device_t d = {.enrolled_ms = (int64_t)i};
    memcpy(d.id, id, sizeof id);
    if (store_device_add(s, &d) != 0) _exit(11);
    if (store_audit_append(s, (int64_t)i, "broker", "enroll", id, "{}", NULL) != 0) _exit(12);
    if (i % 10 == 0 && store_revoke(s, STORE_REVOKE_DEVICE, id, "broker", "test", 1) != 0)
      _exit(13);
    if (i == start) {
      char b = 'x';
      if (write(fd, &b, 1) != 1) _exit(14);
    }
  }
}

typedef struct {
  broker_store_t *s;
  size_t n;
  size_t lo;        /* devices from this index were written by the last child */
  size_t last;      /* index of the newest device */
  int bad;
} crash_check_t;

static int check_dev(void *ctx, const store_device_t *d) {
  crash_check_t *c = ctx;
  char want[STORE_NAME_MAX];
  snprintf(want, sizeof want, "crash-%06zu", c->n);
  if (strcmp(d->id, want) != 0) c->bad = 1; /* ids are dense: no device lost in between */
  bool r = false;
  if (store_is_revoked(c->s, STORE_REVOKE_DEVICE, d->id, &r) != 0) c->bad = 2;
  if (r != d->revoked) c->bad = 3; /* revocation row and flag commit together */
  if (d->revoked && c->n % 10 != 0) c->bad = 4;
  /* Every tenth is revoked, except maybe the newest if the kill came before its revoke. */
  if (c->n >= c->lo && c->n != c->last && c->n % 10 == 0 && !d->revoked) c->bad = 5;
  c->n++;
  return 0;
}

static void test_crash_consistency(void **state) {
  fx_t *fx = *state;
  store_close(open_ok(fx));
  size_t devs = 0;
  int64_t audits = 0;
  for (int round = 0; round < CRASH_ROUNDS; round++) {
    int p[2];
    assert_int_equal(pipe(p), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
      close(p[0]);
      crash_child(fx, p[1]);
      _exit(1);
    }
    close(p[1]);
    struct pollfd pfd = {.fd = p[0], .events = POLLIN};
    int pr = poll(&pfd, 1, 20000);
    char b = 0;
    ssize_t got = pr == 1 ? read(p[0], &b, 1) : -1;
    if (got == 1) {
      struct timespec ts = {.tv_sec = 0, .tv_nsec = 200 * 1000 * 1000};
      nanosleep(&ts, NULL);
    }
    kill(pid, SIGKILL);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    close(p[0]);
    if (WIFEXITED(status)) fprintf(stderr, "crash child exited %d\n", WEXITSTATUS(status));
    assert_int_equal(got, 1);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);

    broker_store_t *s = open_ok(fx);
    int64_t n = 0, bad = -1;
    assert_int_equal(store_audit_verify(s, &n, &bad), 0);
    assert_int_equal(bad, 0);
    size_t nd = store_device_count(s);
    /* Each device is added, then audited: the kill may fall between the two. */
    assert_true(nd > devs);
    size_t added = nd - devs;
    size_t logged = (size_t)(n - audits);
    assert_true(logged == added || logged + 1 == added);
    if (logged > 0) {
      static audit_seen_t c;
      memset(&c, 0, sizeof c);
      store_audit_filter_t f = {.since_ms = (int64_t)(devs + logged - 1)};
      assert_int_equal(store_audit_list(s, &f, collect_audit, &c), 0);
      assert_int_equal(c.n, 1);
      char want[STORE_NAME_MAX];
      snprintf(want, sizeof want, "crash-%06zu", devs + logged - 1);
      assert_string_equal(c.e[0].target, want);
      assert_int_equal(c.e[0].id, n);
    }
    crash_check_t cc = {.s = s, .lo = devs, .last = nd - 1};
    uint32_t total = 0;
    assert_int_equal(store_device_list(s, 0, 0, check_dev, &cc, &total), 0);
    assert_int_equal(total, nd);
    assert_int_equal(cc.n, nd);
    assert_int_equal(cc.bad, 0);
    devs = nd;
    audits = n;
    store_close(s);
  }
}

/* ---- tickets ------------------------------------------------------------------------------ */

typedef struct {
  store_ticket_t t[32];
  int n;
} tix_seen_t;

static int collect_tix(void *ctx, const store_ticket_t *t) {
  tix_seen_t *c = ctx;
  if (c->n < 32) c->t[c->n] = *t;
  c->n++;
  return 0;
}

typedef struct {
  store_ticket_event_t e[16];
  int n;
} tev_seen_t;

static int collect_tev(void *ctx, const store_ticket_event_t *e) {
  tev_seen_t *c = ctx;
  if (c->n < 16) c->e[c->n] = *e;
  c->n++;
  return 0;
}

static int64_t tix_add(broker_store_t *s, const char *device, const char *assignee,
                       store_ticket_state_t state, int64_t now) {
  store_ticket_t t = {.priority = STORE_TICKET_NORMAL, .state = state};
  snprintf(t.device, sizeof t.device, "%s", device);
  snprintf(t.assignee, sizeof t.assignee, "%s", assignee);
  snprintf(t.summary, sizeof t.summary, "ticket on %s", device);
  assert_int_equal(store_ticket_add(s, &t, "alice", now), 0);
  assert_true(t.id > 0);
  return t.id;
}

typedef struct {
  int n;
  int64_t ids[8];
  char last[8][STORE_TEXT_MAX];
} mine_t;

static int mine_cb(void *ctx, const store_ticket_t *t, const store_ticket_event_t *e) {
  mine_t *m = ctx;
  assert_true(m->n < 8);
  m->ids[m->n] = t->id;
  snprintf(m->last[m->n], sizeof m->last[0], "%s", e ? e->text : "-");
  m->n++;
  return 0;
}

/* An employee's requests: a nonce finds the ticket it opened (a resend is the same request),
 * the last hour's count comes from the store, and the person sees their own tickets with the
 * newest comment meant for them (public or their own), never an internal one. */
static void test_help_requests(void **state) {
  fx_t *fx = *state;
  broker_store_t *s = open_ok(fx);
  uint8_t n1[STORE_HELP_NONCE_LEN], n2[STORE_HELP_NONCE_LEN];
  memset(n1, 1, sizeof n1);
  memset(n2, 2, sizeof n2);
  int64_t found = -1;
  assert_int_equal(store_help_find(s, "dev-1", n1, &found), TT_ENOTFOUND);
  store_ticket_t t = {.device = "dev-1", .requester = "sam", .summary = "vpn drops", .source = "employee"};
  assert_int_equal(store_ticket_add(s, &t, "sam", 1000), 0);
  assert_string_equal(t.source, "employee");
  assert_int_equal(store_help_add(s, "dev-1", n1, "sam", t.id, 900, 1000), 0);
  assert_int_equal(store_help_add(s, "dev-1", n1, "sam", t.id, 900, 1001), -EEXIST); /* one nonce, one request */
  assert_int_equal(store_help_find(s, "dev-1", n1, &found), 0);
  assert_int_equal(found, t.id);
  assert_int_equal(store_help_find(s, "dev-2", n1, &found), TT_ENOTFOUND); /* nonces are per device */
  store_ticket_t u = {.device = "dev-1", .requester = "sam", .summary = "printer", .source = "employee"};
  assert_int_equal(store_ticket_add(s, &u, "sam", 5000), 0);
  assert_int_equal(store_help_add(s, "dev-1", n2, "sam", u.id, 5000, 5000), 0);
  uint32_t count = 0;
  int64_t oldest = 0;
  assert_int_equal(store_help_recent(s, "dev-1", 1000, &count, &oldest), 0);
  assert_int_equal(count, 2);
  assert_int_equal(oldest, 1000);
  assert_int_equal(store_help_recent(s, "dev-1", 1001, &count, &oldest), 0);
  assert_int_equal(count, 1);
  assert_int_equal(store_help_recent(s, "dev-9", 0, &count, &oldest), 0);
  assert_int_equal(count, 0);
  /* Another person's ticket on the same machine, and a technician's ticket. */
  store_ticket_t v = {.device = "dev-1", .requester = "kim", .summary = "kim's", .source = "employee"};
  assert_int_equal(store_ticket_add(s, &v, "kim", 6000), 0);
  tix_add(s, "dev-1", "", STORE_TICKET_OPEN, 7000);
  assert_int_equal(store_ticket_event_add(s, t.id, 1100, "bob", "comment", "internal note"), 0);
  assert_int_equal(store_ticket_event_add(s, t.id, 1200, "bob", STORE_EVENT_PUBLIC_COMMENT, "restart it"), 0);
  assert_int_equal(store_ticket_event_add(s, t.id, 1300, "bob", "comment", "internal again"), 0);
  mine_t m = {0};
  assert_int_equal(store_help_tickets(s, "dev-1", "sam", 0, mine_cb, &m), 0);
  assert_int_equal(m.n, 2);
  assert_int_equal(m.ids[0], u.id); /* newest first */
  assert_string_equal(m.last[0], "-");
  assert_int_equal(m.ids[1], t.id);
  assert_string_equal(m.last[1], "restart it");
  assert_int_equal(store_ticket_event_add(s, t.id, 1400, "sam", STORE_EVENT_REQUESTER_COMMENT, "still"), 0);
  m = (mine_t){0};
  assert_int_equal(store_help_tickets(s, "dev-1", "sam", 1, mine_cb, &m), 0);
  assert_int_equal(m.n, 1); /* the limit */
  m = (mine_t){0};
  assert_int_equal(store_help_tickets(s, "dev-1", "sam", 0, mine_cb, &m), 0);
  assert_string_equal(m.last[1], "still");
  m = (mine_t){0};
  assert_int_equal(store_help_tickets(s, "dev-2", "sam", 0, mine_cb, &m), 0);
  assert_int_equal(m.n, 0);
  /* A source the schema does not know is refused whole. */
  store_ticket_t w = {.device = "dev-1", .summary = "x", .source = "robot"};
  assert_int_equal(store_ticket_add(s, &w, "x", 8000), TT_EINVAL);
  store_close(s);
}

static void test_ticket_migrates_v1_store(void **state) {
  fx_t *fx = *state;
  broker_store_t *s = open_ok(fx);
  store_device_t d = {.id = "dev-1", .hostname = "h1", .enrolled_ms = 5};
  assert_int_equal(store_device_add(s, &d), 0);
  store_close(s);
  /* Take the file back to what schema 1 left behind, with its audit entries. */
  sqlite3 *db = raw_open(fx);
  raw_exec(db, STORE_UNDO_TO_10 "DROP TABLE inv_rows; DROP TABLE inv_devs; DROP TABLE inv_bases; DROP TABLE inv_base_rows; DROP TABLE inv_cur; DROP TABLE inv_plus; DROP TABLE inv_find_todo; DROP TABLE asset_custom; DROP TABLE asset_records; DROP TABLE inv_macs; DROP TABLE inv_facts; DROP INDEX devices_hostname_key; DROP TABLE diag_reports; DROP TABLE inv_tables; DROP TABLE inv_versions;"
               " DROP TABLE people; DROP TABLE audit_checkpoints; DROP TABLE recordings; DROP TABLE sessions;"
               " DROP TABLE ticket_events; DROP TABLE tickets; PRAGMA user_version = 1;");
  for (int i = 0; i < 3; i++) raw_audit_v1(db, 100 + i, "broker", "enroll", "dev-1", "{}");
  assert_int_equal(raw_int(db, "SELECT count(*) FROM sqlite_schema WHERE name LIKE 'ticket%'"), 0);
  sqlite3_close(db);

  s = open_ok(fx);
  assert_int_equal(store_schema_version(s), STORE_SCHEMA_VERSION);
  store_device_t got;
  assert_int_equal(store_device_get(s, "dev-1", &got), 0);
  assert_string_equal(got.hostname, "h1");
  int64_t n = 0, bad = -1;
  assert_int_equal(store_audit_verify(s, &n, &bad), 0);
  assert_int_equal(n, 3);
  assert_int_equal(bad, 0);
  assert_int_equal(tix_add(s, "dev-1", "", STORE_TICKET_OPEN, 1000), 1);
  store_close(s);
  db = raw_open(fx);
  assert_int_equal(raw_int(db, "PRAGMA user_version"), STORE_SCHEMA_VERSION);
  assert_int_equal(raw_int(db, "SELECT count(*) FROM sqlite_schema WHERE type = 'trigger'"), 8);
  assert_int_equal(raw_int(db, "SELECT count(*) FROM sqlite_schema WHERE type = 'index'"
                               " AND name IN ('tickets_state_assignee', 'tickets_device',"
                               " 'ticket_events_ticket')"), 3);
  assert_int_equal(raw_int(db, "SELECT count(*) FROM ticket_events"), 1);
  sqlite3_close(db);
}

static int fake_sign(void *ctx, tt_audit_checkpoint_t *cp, char *line, size_t cap) {
  int *calls = ctx;
  (*calls)++;
  cp->ts_ms = 5000;
  snprintf(line, cap, "rechain %lld\n", (long long)cp->entries);
  return 0;
}

static int fail_sign(void *ctx, tt_audit_checkpoint_t *cp, char *line, size_t cap) {
  (void)ctx, (void)cp, (void)line, (void)cap;
  return TT_EIO;
}

/* A store written before format 2: its chain is hashed again once, from entry 1, with the line
 * that bridges the two in the same transaction; a failure leaves it as it was. */
static void test_audit_rechain(void **state) {
  fx_t *fx = *state;
  broker_store_t *s = open_ok(fx);
  store_close(s);
  sqlite3 *db = raw_open(fx);
  raw_exec(db, STORE_UNDO_22 STORE_UNDO_21 STORE_UNDO_20 STORE_UNDO_19 STORE_UNDO_18 STORE_UNDO_17 STORE_UNDO_16 "PRAGMA user_version = 15;");
  raw_audit_v1(db, 100, "sam", "help-ask", "dev1", "{\"user\":\"sam\",\"text\":\"printer \\\"jams\\\"\"}");
  raw_audit_v1(db, 200, "broker", "start", "", "{}");
  raw_audit_v1(db, 300, "alice", "connect", "alice", "not json");
  sqlite3_close(db);
  s = open_ok(fx);
  int64_t old = 0, n = 0, bad = -1;
  assert_int_equal(store_audit_format1(s, &old), 0);
  assert_int_equal(old, 3);
  audit_expect(s, 3, 0); /* format 1 still verifies */
  tt_audit_checkpoint_t cp = {0};
  char line[256];
  assert_int_equal(store_audit_rechain(s, fail_sign, NULL, &cp, line, sizeof line), TT_EIO);
  assert_int_equal(store_audit_format1(s, &old), 0);
  assert_int_equal(old, 3); /* nothing moved */
  int calls = 0;
  assert_int_equal(store_audit_rechain(s, fake_sign, &calls, &cp, line, sizeof line), 0);
  assert_int_equal(calls, 1);
  assert_int_equal(cp.kind, TT_AUDIT_CP_RECHAIN);
  assert_int_equal(cp.entries, 3);
  assert_int_equal(store_audit_format1(s, &old), 0);
  assert_int_equal(old, 0);
  audit_expect(s, 3, 0);
  /* the chain goes on from the new head */
  assert_int_equal(store_audit_append(s, 400, "bob", "connect", "bob", "{\"role\":\"technician\"}", NULL), 0);
  assert_int_equal(store_audit_verify(s, &n, &bad), 0);
  assert_int_equal(n, 4);
  assert_int_equal(bad, 0);
  static audit_seen_t c;
  memset(&c, 0, sizeof c);
  store_audit_filter_t f = {0};
  assert_int_equal(store_audit_list(s, &f, collect_audit, &c), 0);
  assert_int_equal(c.n, 4);
  assert_memory_equal(c.e[2].hash, cp.head, 32);
  assert_int_equal(c.e[0].format, 2);
  assert_int_equal(c.e[0].nvalues, 4); /* actor, target, user, text */
  assert_int_equal(c.e[2].nvalues, 3); /* "not json": the detail whole */
  store_close(s);
  db = raw_open(fx);
  assert_int_equal(raw_int(db, "SELECT count(*) FROM audit_checkpoints WHERE line = 'rechain 3\n'"), 1);
  assert_int_equal(raw_int(db, "SELECT open FROM audit_gate"), 0);
  /* and the audit is append-only again */
  assert_int_not_equal(sqlite3_exec(db, "UPDATE audit SET actor = 'x' WHERE id = 1", NULL, NULL, NULL), SQLITE_OK);
  assert_int_not_equal(sqlite3_exec(db, "DELETE FROM audit_values", NULL, NULL, NULL), SQLITE_OK);
  sqlite3_close(db);
}

static void test_ticket_add_get_update(void **state) {
  fx_t *fx = *state;
  broker_store_t *s = open_ok(fx);
  store_ticket_t t = {.device = "dev-a", .requester = "emp@corp", .summary = "printer jams",
                      .external_id = "INC0042", .priority = STORE_TICKET_HIGH,
                      .first_response_due_ms = 5000, .resolution_due_ms = 90000};
  assert_int_equal(store_ticket_add(s, &t, "emp@corp", 1000), 0);
  assert_int_equal(t.id, 1);
  assert_int_equal(t.state, STORE_TICKET_OPEN); /* 0 taken as open */
  assert_int_equal(t.level, 1);                 /* 0 taken as level 1 */
  assert_int_equal(t.created_ms, 1000);

  store_ticket_t got;
  assert_int_equal(store_ticket_get(s, 1, &got), 0);
  assert_int_equal(got.id, 1);
  assert_string_equal(got.device, "dev-a");
  assert_string_equal(got.requester, "emp@corp");
  assert_string_equal(got.assignee, "");
  assert_string_equal(got.summary, "printer jams");
  assert_string_equal(got.external_id, "INC0042");
  assert_int_equal(got.priority, STORE_TICKET_HIGH);
  assert_int_equal(got.level, 1);
  assert_int_equal(got.state, STORE_TICKET_OPEN);
  assert_int_equal(got.created_ms, 1000);
  assert_int_equal(got.updated_ms, 1000);
  assert_int_equal(got.first_response_due_ms, 5000);
  assert_int_equal(got.resolution_due_ms, 90000);
  assert_int_equal(got.first_response_ms, 0);
  assert_int_equal(got.resolved_ms, 0);
  assert_int_equal(store_ticket_get(s, 2, &got), TT_ENOTFOUND);

  /* Assign, escalate, comment, resolve: each leaves one event, in order. */
  assert_int_equal(store_ticket_get(s, 1, &got), 0);
  snprintf(got.assignee, sizeof got.assignee, "%s", "bob");
  got.first_response_ms = 2000;
  assert_int_equal(store_ticket_update(s, &got, "lead", "assigned", "to bob", 2000), 0);
  got.level = 2;
  got.priority = STORE_TICKET_URGENT;
  assert_int_equal(store_ticket_update(s, &got, "bob", "escalated", "needs L2", 3000), 0);
  assert_int_equal(store_ticket_event_add(s, 1, 3500, "bob", "comment", "on it"), 0);
  assert_int_equal(store_ticket_event_add(s, 1, 3600, "dev-a", "consent-given", NULL), 0);
  got.state = STORE_TICKET_RESOLVED;
  got.resolved_ms = 4000;
  snprintf(got.summary, sizeof got.summary, "%s", "printer jams (tray 2)");
  assert_int_equal(store_ticket_update(s, &got, "bob", "resolved", "cleared tray", 4000), 0);

  store_ticket_t now;
  assert_int_equal(store_ticket_get(s, 1, &now), 0);
  assert_string_equal(now.assignee, "bob");
  assert_int_equal(now.level, 2);
  assert_int_equal(now.priority, STORE_TICKET_URGENT);
  assert_int_equal(now.state, STORE_TICKET_RESOLVED);
  assert_string_equal(now.summary, "printer jams (tray 2)");
  assert_int_equal(now.first_response_ms, 2000);
  assert_int_equal(now.resolved_ms, 4000);
  assert_int_equal(now.updated_ms, 4000);
  assert_int_equal(now.created_ms, 1000);          /* not mutable */
  assert_string_equal(now.requester, "emp@corp");  /* not mutable */
  assert_string_equal(now.external_id, "INC0042"); /* not mutable */

  tev_seen_t c;
  memset(&c, 0, sizeof c);
  assert_int_equal(store_ticket_events(s, 1, collect_tev, &c), 0);
  assert_int_equal(c.n, 6);
  static const char *const kinds[6] = {"created", "assigned", "escalated", "comment",
                                       "consent-given", "resolved"};
  static const int64_t ts[6] = {1000, 2000, 3000, 3500, 3600, 4000};
  for (int i = 0; i < 6; i++) {
    assert_string_equal(c.e[i].kind, kinds[i]);
    assert_int_equal(c.e[i].ts_ms, ts[i]);
    assert_int_equal(c.e[i].ticket, 1);
    if (i > 0) assert_true(c.e[i].id > c.e[i - 1].id);
  }
  assert_string_equal(c.e[0].actor, "emp@corp");
  assert_string_equal(c.e[0].text, "printer jams");
  assert_string_equal(c.e[1].text, "to bob");
  assert_string_equal(c.e[4].text, "");

  /* Another ticket's timeline is its own. */
  int64_t id2 = tix_add(s, "dev-b", "", STORE_TICKET_OPEN, 5000);
  memset(&c, 0, sizeof c);
  assert_int_equal(store_ticket_events(s, id2, collect_tev, &c), 0);
  assert_int_equal(c.n, 1);
  memset(&c, 0, sizeof c);
  assert_int_equal(store_ticket_events(s, 99, collect_tev, &c), 0);
  assert_int_equal(c.n, 0);

  /* Missing tickets, bad events. */
  store_ticket_t ghost = now;
  ghost.id = 99;
  assert_int_equal(store_ticket_update(s, &ghost, "bob", "comment", "x", 6000), TT_ENOTFOUND);
  assert_int_equal(store_ticket_event_add(s, 99, 6000, "bob", "comment", "x"), TT_ENOTFOUND);
  assert_int_equal(store_ticket_event_add(s, 1, 6000, "bob", "", "x"), TT_EINVAL);
  assert_int_equal(store_ticket_event_add(s, 1, 6000, "bob", NULL, "x"), TT_EINVAL);
  char big[STORE_TEXT_MAX + 1];
  memset(big, 'x', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  assert_int_equal(store_ticket_event_add(s, 1, 6000, "bob", "comment", big), TT_ETOOBIG);
  assert_int_equal(store_ticket_update(s, &now, "bob", "comment", big, 6000), TT_ETOOBIG);
  store_ticket_t unterminated = now;
  memset(unterminated.summary, 'y', sizeof unterminated.summary);
  assert_int_equal(store_ticket_update(s, &unterminated, "bob", "comment", "x", 6000), TT_ETOOBIG);
  store_ticket_t nodev = {.summary = "x"};
  assert_int_equal(store_ticket_add(s, &nodev, "bob", 6000), TT_EINVAL);
  memset(&c, 0, sizeof c);
  assert_int_equal(store_ticket_events(s, 1, collect_tev, &c), 0);
  assert_int_equal(c.n, 6);
  store_close(s);

  /* All of it survives a reopen. */
  s = open_ok(fx);
  assert_int_equal(store_ticket_get(s, 1, &got), 0);
  assert_int_equal(got.state, STORE_TICKET_RESOLVED);
  assert_int_equal(tix_add(s, "dev-c", "", STORE_TICKET_OPEN, 7000), 3);
  store_close(s);
}

static void test_ticket_list_filters(void **state) {
  fx_t *fx = *state;
  broker_store_t *s = open_ok(fx);
  /* id: device, assignee, state */
  tix_add(s, "dev-a", "bob", STORE_TICKET_OPEN, 1);       /* 1 */
  tix_add(s, "dev-b", "", STORE_TICKET_OPEN, 2);          /* 2 */
  tix_add(s, "dev-a", "carol", STORE_TICKET_RESOLVED, 3); /* 3 */
  tix_add(s, "dev-c", "bob", STORE_TICKET_CLOSED, 4);     /* 4 */
  tix_add(s, "dev-a", "bob", STORE_TICKET_RESOLVED, 5);   /* 5 */
  tix_add(s, "dev-b", "bob", STORE_TICKET_OPEN, 6);       /* 6 */
  struct {
    store_ticket_filter_t f;
    int n;
    int64_t ids[6];
  } cases[] = {
    {{0}, 6, {1, 2, 3, 4, 5, 6}},
    {{.state_mask = STORE_TICKET_STATE_BIT(STORE_TICKET_OPEN)}, 3, {1, 2, 6}},
    {{.state_mask = STORE_TICKET_STATE_BIT(STORE_TICKET_RESOLVED) |
                    STORE_TICKET_STATE_BIT(STORE_TICKET_CLOSED)}, 3, {3, 4, 5}},
    {{.assignee = "bob"}, 4, {1, 4, 5, 6}},
    {{.assignee = ""}, 1, {2}},
    {{.assignee = "nobody"}, 0, {0}},
    {{.assignee = "bob", .state_mask = STORE_TICKET_STATE_BIT(STORE_TICKET_OPEN)}, 2, {1, 6}},
    {{.device = "dev-a"}, 3, {1, 3, 5}},
    {{.device = "dev-a", .assignee = "bob"}, 2, {1, 5}},
    {{.device = "dev-a", .state_mask = STORE_TICKET_STATE_BIT(STORE_TICKET_RESOLVED)}, 2, {3, 5}},
    {{.limit = 2}, 2, {1, 2}},
    {{.limit = 2, .after_id = 2}, 2, {3, 4}},
    {{.after_id = 5}, 1, {6}},
    {{.after_id = 6}, 0, {0}},
    {{.assignee = "bob", .after_id = 1, .limit = 2}, 2, {4, 5}},
    {{.device = "dev-b", .after_id = 2, .limit = 5}, 1, {6}},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    tix_seen_t c;
    memset(&c, 0, sizeof c);
    assert_int_equal(store_ticket_list(s, &cases[i].f, collect_tix, &c), 0);
    if (c.n != cases[i].n) fprintf(stderr, "case %zu: %d tickets\n", i, c.n);
    assert_int_equal(c.n, cases[i].n);
    for (int j = 0; j < c.n; j++) assert_int_equal(c.t[j].id, cases[i].ids[j]);
  }
  /* Listed rows are whole. */
  tix_seen_t c;
  memset(&c, 0, sizeof c);
  store_ticket_filter_t f = {.device = "dev-c"};
  assert_int_equal(store_ticket_list(s, &f, collect_tix, &c), 0);
  assert_int_equal(c.n, 1);
  assert_string_equal(c.t[0].assignee, "bob");
  assert_string_equal(c.t[0].summary, "ticket on dev-c");
  assert_int_equal(c.t[0].state, STORE_TICKET_CLOSED);
  assert_int_equal(c.t[0].created_ms, 4);
  store_close(s);
}

static int event_count(broker_store_t *s, int64_t ticket) {
  tev_seen_t c;
  memset(&c, 0, sizeof c);
  assert_int_equal(store_ticket_events(s, ticket, collect_tev, &c), 0);
  return c.n;
}

static void test_ticket_checks_refuse_whole_write(void **state) {
  fx_t *fx = *state;
  broker_store_t *s = open_ok(fx);
  int64_t id = tix_add(s, "dev-a", "bob", STORE_TICKET_OPEN, 1000);
  sqlite3 *db = raw_open(fx);

  /* A bad priority, level or state on add: no ticket, no event. */
  store_ticket_t bad = {.device = "dev-a", .summary = "x", .priority = (store_ticket_priority_t)4};
  assert_int_equal(store_ticket_add(s, &bad, "bob", 2000), TT_EINVAL);
  bad.priority = (store_ticket_priority_t)-1;
  assert_int_equal(store_ticket_add(s, &bad, "bob", 2000), TT_EINVAL);
  bad.priority = STORE_TICKET_LOW;
  bad.state = (store_ticket_state_t)7;
  assert_int_equal(store_ticket_add(s, &bad, "bob", 2000), TT_EINVAL);
  bad.state = STORE_TICKET_OPEN;
  bad.level = 4;
  assert_int_equal(store_ticket_add(s, &bad, "bob", 2000), TT_EINVAL);
  assert_int_equal(bad.id, 0);
  assert_int_equal(raw_int(db, "SELECT count(*) FROM tickets"), 1);
  assert_int_equal(raw_int(db, "SELECT count(*) FROM ticket_events"), 1);

  /* A bad value on update: the ticket is unchanged and the event was not written. */
  store_ticket_t t;
  assert_int_equal(store_ticket_get(s, id, &t), 0);
  t.state = (store_ticket_state_t)0;
  assert_int_equal(store_ticket_update(s, &t, "bob", "resolved", "x", 3000), TT_EINVAL);
  t.state = STORE_TICKET_RESOLVED;
  t.priority = (store_ticket_priority_t)9;
  assert_int_equal(store_ticket_update(s, &t, "bob", "resolved", "x", 3000), TT_EINVAL);
  store_ticket_t got;
  assert_int_equal(store_ticket_get(s, id, &got), 0);
  assert_int_equal(got.state, STORE_TICKET_OPEN);
  assert_int_equal(got.priority, STORE_TICKET_NORMAL);
  assert_int_equal(got.updated_ms, 1000);
  assert_int_equal(event_count(s, id), 1);

  /* The event failing after the ticket row was written takes the ticket write back too. */
  raw_exec(db, "CREATE TRIGGER test_refuse_events BEFORE INSERT ON ticket_events"
               "  BEGIN SELECT RAISE(ABORT, 'refused by test'); END;");
  t.priority = STORE_TICKET_URGENT;
  int rc = store_ticket_update(s, &t, "bob", "resolved", "x", 3000);
  assert_int_not_equal(rc, 0);
  store_ticket_t fresh = {.device = "dev-z", .summary = "y"};
  assert_int_not_equal(store_ticket_add(s, &fresh, "bob", 3000), 0);
  raw_exec(db, "DROP TRIGGER test_refuse_events");
  assert_int_equal(store_ticket_get(s, id, &got), 0);
  assert_int_equal(got.state, STORE_TICKET_OPEN);
  assert_int_equal(got.updated_ms, 1000);
  assert_int_equal(raw_int(db, "SELECT count(*) FROM tickets"), 1);
  assert_int_equal(event_count(s, id), 1);

  /* And the store carries on: the same update now lands whole. */
  assert_int_equal(store_ticket_update(s, &t, "bob", "resolved", "x", 3000), 0);
  assert_int_equal(store_ticket_get(s, id, &got), 0);
  assert_int_equal(got.state, STORE_TICKET_RESOLVED);
  assert_int_equal(event_count(s, id), 2);
  sqlite3_close(db);
  store_close(s);
}

static void test_ticket_events_append_only(void **state) {
  fx_t *fx = *state;
  broker_store_t *s = open_ok(fx);
  int64_t id = tix_add(s, "dev-a", "bob", STORE_TICKET_OPEN, 1000);
  assert_int_equal(store_ticket_event_add(s, id, 1100, "bob", "comment", "hello"), 0);
  sqlite3 *db = raw_open(fx);
  char *msg = NULL;
  int rc = sqlite3_exec(db, "UPDATE ticket_events SET text = 'forged' WHERE id = 2", NULL, NULL, &msg);
  assert_int_equal(rc, SQLITE_CONSTRAINT);
  assert_non_null(msg);
  assert_non_null(strstr(msg, "append-only"));
  sqlite3_free(msg);
  msg = NULL;
  rc = sqlite3_exec(db, "DELETE FROM ticket_events WHERE id = 1", NULL, NULL, &msg);
  assert_int_equal(rc, SQLITE_CONSTRAINT);
  assert_non_null(msg);
  assert_non_null(strstr(msg, "append-only"));
  sqlite3_free(msg);
  /* The schema refuses out-of-range values whoever writes them. */
  msg = NULL;
  rc = sqlite3_exec(db, "UPDATE tickets SET state = 4 WHERE id = 1", NULL, NULL, &msg);
  assert_int_equal(rc, SQLITE_CONSTRAINT);
  sqlite3_free(msg);
  msg = NULL;
  rc = sqlite3_exec(db, "UPDATE tickets SET priority = 'high' WHERE id = 1", NULL, NULL, &msg);
  assert_int_equal(rc, SQLITE_CONSTRAINT); /* STRICT */
  sqlite3_free(msg);
  sqlite3_close(db);
  tev_seen_t c;
  memset(&c, 0, sizeof c);
  assert_int_equal(store_ticket_events(s, id, collect_tev, &c), 0);
  assert_int_equal(c.n, 2);
  assert_string_equal(c.e[1].text, "hello");
  store_close(s);
}

/* ---- schema 3: sessions, recordings, who opened a ticket -------------------------------- */

static void test_v3_migrates_v2_store(void **state) {
  fx_t *fx = *state;
  broker_store_t *s = open_ok(fx);
  store_device_t d = {.id = "dev-1", .hostname = "h1", .enrolled_ms = 5};
  assert_int_equal(store_device_add(s, &d), 0);
  store_ticket_t t = {.device = "dev-1", .summary = "disk full", .priority = STORE_TICKET_HIGH};
  assert_int_equal(store_ticket_add(s, &t, "carol", 1000), 0);
  assert_string_equal(t.created_by, "carol");
  assert_int_equal(store_ticket_event_add(s, t.id, 1100, "bob", "comment", "looking"), 0);
  store_close(s);
  /* Take the file back to what schema 2 left behind. */
  sqlite3 *db = raw_open(fx);
  raw_exec(db, STORE_UNDO_TO_10 "DROP TABLE inv_rows; DROP TABLE inv_devs; DROP TABLE inv_bases; DROP TABLE inv_base_rows; DROP TABLE inv_cur; DROP TABLE inv_plus; DROP TABLE inv_find_todo; DROP TABLE asset_custom; DROP TABLE asset_records; DROP TABLE inv_macs; DROP TABLE inv_facts; DROP INDEX devices_hostname_key; DROP TABLE diag_reports; DROP TABLE inv_tables; DROP TABLE inv_versions;"
               " DROP TABLE people; DROP TABLE audit_checkpoints; DROP TABLE recordings; DROP TABLE sessions;"
               " ALTER TABLE tickets DROP COLUMN created_by; PRAGMA user_version = 2;");
  raw_audit_v1(db, 100, "broker", "enroll", "dev-1", "{}");
  sqlite3_close(db);

  s = open_ok(fx);
  assert_int_equal(store_schema_version(s), STORE_SCHEMA_VERSION);
  store_ticket_t got;
  assert_int_equal(store_ticket_get(s, t.id, &got), 0);
  assert_string_equal(got.summary, "disk full");
  assert_int_equal(got.priority, STORE_TICKET_HIGH);
  assert_string_equal(got.created_by, "carol"); /* from its "created" event */
  int64_t n = 0, bad = -1;
  assert_int_equal(store_audit_verify(s, &n, &bad), 0);
  assert_int_equal(n, 1);
  assert_int_equal(bad, 0);
  assert_int_equal(event_count(s, t.id), 2);
  store_session_t x = {.ticket = t.id, .device = "dev-1", .person = "bob",
                       .access = STORE_ACCESS_SHELL, .started_ms = 2000};
  assert_int_equal(store_session_add(s, &x), 0);
  assert_int_equal(x.id, 1);
  store_close(s);
  db = raw_open(fx);
  assert_int_equal(raw_int(db, "PRAGMA user_version"), STORE_SCHEMA_VERSION);
  assert_int_equal(raw_int(db, "SELECT count(*) FROM sqlite_schema WHERE type = 'index'"
                               " AND name IN ('sessions_live', 'sessions_ticket',"
                               " 'recordings_session')"), 3);
  sqlite3_close(db);
}

static int64_t ses_add(broker_store_t *s, int64_t ticket, const char *device, const char *person,
                       int64_t now) {
  store_session_t x = {.ticket = ticket, .access = STORE_ACCESS_SHELL | STORE_ACCESS_DIAG,
                       .started_ms = now};
  snprintf(x.device, sizeof x.device, "%s", device);
  snprintf(x.person, sizeof x.person, "%s", person);
  assert_int_equal(store_session_add(s, &x), 0);
  assert_true(x.id > 0);
  return x.id;
}

static void test_sessions(void **state) {
  fx_t *fx = *state;
  broker_store_t *s = open_ok(fx);
  int64_t tix = tix_add(s, "dev-a", "bob", STORE_TICKET_OPEN, 1000);

  /* Asked for: live, not yet granted. */
  int64_t id = ses_add(s, tix, "dev-a", "bob", 2000);
  store_session_t got;
  assert_int_equal(store_session_get(s, id, &got), 0);
  assert_int_equal(got.id, id);
  assert_int_equal(got.ticket, tix);
  assert_string_equal(got.device, "dev-a");
  assert_string_equal(got.person, "bob");
  assert_int_equal(got.access, STORE_ACCESS_SHELL | STORE_ACCESS_DIAG);
  assert_int_equal(got.started_ms, 2000);
  assert_int_equal(got.expires_ms, 0);
  assert_false(got.unattended);
  assert_int_equal(got.ended_ms, 0);
  assert_int_equal(store_session_get(s, id + 1, &got), TT_ENOTFOUND);

  /* Granted by someone at the device. */
  assert_int_equal(store_session_grant(s, id, 2000 + 1800000, false, "emma"), 0);
  assert_int_equal(store_session_get(s, id, &got), 0);
  assert_int_equal(got.expires_ms, 2000 + 1800000);
  assert_string_equal(got.consent_by, "emma");
  assert_int_equal(store_session_grant(s, 99, 5, false, "emma"), TT_ENOTFOUND);

  /* Ended once. */
  assert_int_equal(store_session_end(s, id, 3000, "employee:emma", "ended by the employee"), 0);
  assert_int_equal(store_session_end(s, id, 3100, "bob", "again"), TT_ESTATE);
  assert_int_equal(store_session_end(s, 99, 3100, "bob", "x"), TT_ENOTFOUND);
  assert_int_equal(store_session_end(s, id, 0, "bob", "x"), TT_EINVAL);
  assert_int_equal(store_session_grant(s, id, 9999, true, ""), TT_ESTATE);
  assert_int_equal(store_session_get(s, id, &got), 0);
  assert_int_equal(got.ended_ms, 3000);
  assert_string_equal(got.ended_by, "employee:emma");
  assert_string_equal(got.end_reason, "ended by the employee");
  assert_string_equal(got.consent_by, "emma");
  assert_false(got.unattended);

  /* Unattended grants keep the mark. */
  int64_t id2 = ses_add(s, tix, "dev-a", "bob", 4000);
  assert_int_equal(store_session_grant(s, id2, 5000, true, NULL), 0);
  assert_int_equal(store_session_get(s, id2, &got), 0);
  assert_true(got.unattended);
  assert_string_equal(got.consent_by, "");

  /* The schema refuses what no session can be, writing nothing. */
  sqlite3 *db = raw_open(fx);
  int64_t rows = raw_int(db, "SELECT count(*) FROM sessions");
  store_session_t bad = {.ticket = 99, .device = "dev-a", .person = "bob", .access = 1};
  assert_int_equal(store_session_add(s, &bad), TT_ENOTFOUND); /* no such ticket */
  bad.ticket = tix;
  bad.access = 0;
  assert_int_equal(store_session_add(s, &bad), TT_EINVAL);
  bad.access = 8;
  assert_int_equal(store_session_add(s, &bad), TT_EINVAL);
  bad.access = 1;
  bad.person[0] = '\0';
  assert_int_equal(store_session_add(s, &bad), TT_EINVAL);
  snprintf(bad.person, sizeof bad.person, "bob");
  memset(bad.device, 'd', sizeof bad.device); /* no NUL */
  assert_int_equal(store_session_add(s, &bad), TT_ETOOBIG);
  assert_int_equal(raw_int(db, "SELECT count(*) FROM sessions"), rows);
  char big[STORE_TEXT_MAX + 1];
  memset(big, 'x', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  assert_int_equal(store_session_end(s, id2, 6000, "bob", big), TT_ETOOBIG);

  /* A restart ends whatever was live, and only that. */
  int64_t id3 = ses_add(s, tix, "dev-a", "carol", 7000);
  uint32_t count = 99;
  assert_int_equal(store_session_end_all(s, 8000, &count), 0);
  assert_int_equal(count, 2);
  assert_int_equal(store_session_get(s, id2, &got), 0);
  assert_int_equal(got.ended_ms, 8000);
  assert_string_equal(got.ended_by, "broker");
  assert_string_equal(got.end_reason, "broker restarted");
  assert_int_equal(store_session_get(s, id3, &got), 0);
  assert_int_equal(got.ended_ms, 8000);
  assert_int_equal(store_session_get(s, id, &got), 0);
  assert_int_equal(got.ended_ms, 3000); /* untouched */
  assert_int_equal(store_session_end_all(s, 9000, &count), 0);
  assert_int_equal(count, 0);
  sqlite3_close(db);
  store_close(s);

  /* And it all survives a reopen; ids carry on. */
  s = open_ok(fx);
  assert_int_equal(store_session_get(s, id2, &got), 0);
  assert_true(got.unattended);
  assert_int_equal(ses_add(s, tix, "dev-a", "bob", 10000), id3 + 1);
  store_close(s);
}

#define SHA_A "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static void test_recordings(void **state) {
  fx_t *fx = *state;
  broker_store_t *s = open_ok(fx);
  int64_t tix = tix_add(s, "dev-a", "bob", STORE_TICKET_OPEN, 1000);
  int64_t ses = ses_add(s, tix, "dev-a", "bob", 2000);
  int64_t other = ses_add(s, tix, "dev-a", "bob", 2100);

  store_recording_t r = {.session = ses, .ticket = tix, .device = "dev-a", .person = "bob",
                         .started_ms = 3000, .ended_ms = 77, .size = 5};
  assert_int_equal(store_recording_add(s, &r), 0);
  assert_int_equal(r.id, 1);
  assert_string_equal(r.path, "recordings/R-1.cast.zst");
  assert_int_equal(r.ended_ms, 0);
  store_recording_t got;
  assert_int_equal(store_recording_get(s, 1, &got), 0);
  assert_int_equal(got.session, ses);
  assert_int_equal(got.ticket, tix);
  assert_string_equal(got.device, "dev-a");
  assert_string_equal(got.person, "bob");
  assert_string_equal(got.path, "recordings/R-1.cast.zst");
  assert_int_equal(got.started_ms, 3000);
  assert_int_equal(got.ended_ms, 0); /* still being written */
  assert_int_equal(got.size, 0);
  assert_string_equal(got.sha256, "");
  assert_false(got.failed);
  assert_int_equal(store_recording_get(s, 2, &got), TT_ENOTFOUND);

  /* Finished once, with a well-formed digest. */
  assert_int_equal(store_recording_finish(s, 1, 4000, 1234, "0123ABCD", false), TT_EINVAL);
  assert_int_equal(store_recording_finish(s, 1, 4000, 1234,
                                          "0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef",
                                          false), TT_EINVAL);
  assert_int_equal(store_recording_finish(s, 1, 4000, -1, SHA_A, false), TT_EINVAL);
  assert_int_equal(store_recording_finish(s, 1, 0, 1, SHA_A, false), TT_EINVAL);
  assert_int_equal(store_recording_finish(s, 1, 4000, 1234, SHA_A, false), 0);
  assert_int_equal(store_recording_finish(s, 1, 4100, 1, SHA_A, true), TT_ESTATE);
  assert_int_equal(store_recording_finish(s, 9, 4100, 1, SHA_A, true), TT_ENOTFOUND);
  assert_int_equal(store_recording_get(s, 1, &got), 0);
  assert_int_equal(got.ended_ms, 4000);
  assert_int_equal(got.size, 1234);
  assert_string_equal(got.sha256, SHA_A);
  assert_false(got.failed);

  /* A failure may not know the digest. */
  store_recording_t r2 = {.session = ses, .ticket = tix, .device = "dev-a", .person = "bob",
                          .started_ms = 5000};
  assert_int_equal(store_recording_add(s, &r2), 0);
  assert_int_equal(store_recording_finish(s, r2.id, 6000, 99, NULL, true), 0);
  assert_int_equal(store_recording_get(s, r2.id, &got), 0);
  assert_true(got.failed);
  assert_string_equal(got.sha256, "");
  store_recording_t r3 = {.session = other, .ticket = tix, .device = "dev-a", .person = "bob",
                          .started_ms = 5500};
  assert_int_equal(store_recording_add(s, &r3), 0);
  store_recording_t r4 = {.session = ses, .ticket = tix, .device = "dev-a", .person = "bob",
                          .started_ms = 7000};
  assert_int_equal(store_recording_add(s, &r4), 0);

  /* A session's recordings in order, capped. */
  store_recording_t list[4];
  uint32_t n = 99;
  assert_int_equal(store_recording_list(s, ses, list, 4, &n), 0);
  assert_int_equal(n, 3);
  assert_int_equal(list[0].id, 1);
  assert_int_equal(list[1].id, r2.id);
  assert_int_equal(list[2].id, r4.id);
  assert_int_equal(list[0].size, 1234);
  assert_int_equal(store_recording_list(s, ses, list, 2, &n), 0);
  assert_int_equal(n, 2);
  assert_int_equal(list[1].id, r2.id);
  assert_int_equal(store_recording_list(s, other, list, 4, &n), 0);
  assert_int_equal(n, 1);
  assert_int_equal(list[0].id, r3.id);
  assert_int_equal(store_recording_list(s, 99, list, 4, &n), 0);
  assert_int_equal(n, 0);
  assert_int_equal(store_recording_list(s, ses, list, 0, &n), 0);
  assert_int_equal(n, 0);

  /* Rows for sessions or tickets that do not exist are refused. */
  store_recording_t orphan = {.session = 99, .ticket = tix, .device = "dev-a", .person = "bob"};
  assert_int_equal(store_recording_add(s, &orphan), TT_ENOTFOUND);
  orphan.session = ses;
  orphan.ticket = 99;
  assert_int_equal(store_recording_add(s, &orphan), TT_ENOTFOUND);

  /* A restart marks recordings the dead broker left open as failed. */
  uint32_t count = 0;
  assert_int_equal(store_session_end_all(s, 8000, &count), 0);
  assert_int_equal(count, 2);
  assert_int_equal(store_recording_get(s, r4.id, &got), 0);
  assert_int_equal(got.ended_ms, 8000);
  assert_true(got.failed);
  assert_int_equal(store_recording_get(s, 1, &got), 0);
  assert_false(got.failed); /* finished ones untouched */
  assert_int_equal(got.ended_ms, 4000);

  /* Ids name files: never reused, even if the newest row goes. */
  sqlite3 *db = raw_open(fx);
  char sql[64];
  snprintf(sql, sizeof sql, "DELETE FROM recordings WHERE id = %lld", (long long)r4.id);
  raw_exec(db, sql);
  sqlite3_close(db);
  store_recording_t r5 = {.session = ses, .ticket = tix, .device = "dev-a", .person = "bob",
                          .started_ms = 9000};
  assert_int_equal(store_recording_add(s, &r5), 0);
  assert_int_equal(r5.id, r4.id + 1);
  char want[64];
  snprintf(want, sizeof want, "recordings/R-%lld.cast.zst", (long long)r5.id);
  assert_string_equal(r5.path, want);
  store_close(s);
}

static void test_ticket_events_tail(void **state) {
  fx_t *fx = *state;
  broker_store_t *s = open_ok(fx);
  int64_t id = tix_add(s, "dev-a", "bob", STORE_TICKET_OPEN, 1000);
  int64_t other = tix_add(s, "dev-b", "bob", STORE_TICKET_OPEN, 1001);
  for (int i = 0; i < 20; i++) {
    char text[16];
    snprintf(text, sizeof text, "c%d", i);
    assert_int_equal(store_ticket_event_add(s, id, 2000 + i, "bob", "comment", text), 0);
    assert_int_equal(store_ticket_event_add(s, other, 2000 + i, "bob", "comment", "x"), 0);
  }
  tev_seen_t c;
  memset(&c, 0, sizeof c);
  uint32_t total = 0;
  assert_int_equal(store_ticket_events_tail(s, id, 5, collect_tev, &c, &total), 0);
  assert_int_equal(total, 21);
  assert_int_equal(c.n, 5);
  for (int i = 0; i < 5; i++) {
    char want[16];
    snprintf(want, sizeof want, "c%d", 15 + i);
    assert_string_equal(c.e[i].text, want); /* the newest five, oldest first */
    assert_int_equal(c.e[i].ticket, id);
  }
  memset(&c, 0, sizeof c);
  assert_int_equal(store_ticket_events_tail(s, id, 0, collect_tev, &c, &total), 0);
  assert_int_equal(c.n, 21);
  assert_string_equal(c.e[0].kind, "created");
  memset(&c, 0, sizeof c);
  assert_int_equal(store_ticket_events_tail(s, 99, 5, collect_tev, &c, &total), 0);
  assert_int_equal(total, 0);
  assert_int_equal(c.n, 0);

  /* The first response is set once, without an event of its own. */
  assert_int_equal(store_ticket_responded(s, id, 5000), 0);
  assert_int_equal(store_ticket_responded(s, id, 6000), 0);
  store_ticket_t t;
  assert_int_equal(store_ticket_get(s, id, &t), 0);
  assert_int_equal(t.first_response_ms, 5000);
  assert_int_equal(t.updated_ms, 1000);
  assert_int_equal(event_count(s, id), 21);
  assert_int_equal(store_ticket_responded(s, 99, 6000), TT_ENOTFOUND);
  store_close(s);
}

/* ---- schema 4: people ------------------------------------------------------------------- */

typedef struct {
  store_person_t p[16];
  int n;
  int stop_after; /* 0 = never */
} ppl_seen_t;

static int collect_ppl(void *ctx, const store_person_t *p) {
  ppl_seen_t *c = ctx;
  if (c->n < 16) c->p[c->n] = *p;
  c->n++;
  return (c->stop_after != 0 && c->n == c->stop_after) ? 42 : 0;
}

static void test_people(void **state) {
  fx_t *fx = *state;
  broker_store_t *s = open_ok(fx);
  store_person_t got;
  assert_int_equal(store_person_get(s, "alice", &got), TT_ENOTFOUND);

  /* Seen at connect: first and last seen then, nobody added them. */
  assert_int_equal(store_person_seen(s, "alice", STORE_PERSON_TECHNICIAN, 1000), 0);
  assert_int_equal(store_person_get(s, "alice", &got), 0);
  assert_string_equal(got.name, "alice");
  assert_int_equal(got.role, STORE_PERSON_TECHNICIAN);
  assert_int_equal(got.first_seen_ms, 1000);
  assert_int_equal(got.last_seen_ms, 1000);
  assert_string_equal(got.added_by, "");
  assert_int_equal(got.added_ms, 0);
  assert_false(got.revoked);
  /* Seen again with an admin's certificate: the role follows it; a clock that stepped back
   * never moves last seen back. */
  assert_int_equal(store_person_seen(s, "alice", STORE_PERSON_ADMIN, 3000), 0);
  assert_int_equal(store_person_seen(s, "alice", STORE_PERSON_ADMIN, 2000), 0);
  assert_int_equal(store_person_last_seen(s, "alice", 2500), 0);
  assert_int_equal(store_person_get(s, "alice", &got), 0);
  assert_int_equal(got.role, STORE_PERSON_ADMIN);
  assert_int_equal(got.first_seen_ms, 1000);
  assert_int_equal(got.last_seen_ms, 3000);
  assert_int_equal(store_person_last_seen(s, "alice", 3500), 0);
  assert_int_equal(store_person_get(s, "alice", &got), 0);
  assert_int_equal(got.last_seen_ms, 3500);

  /* Added by an admin before they ever connect; a second add of any known name is refused. */
  store_person_t bob = {.name = "bob", .role = STORE_PERSON_TECHNICIAN, .added_by = "alice",
                        .added_ms = 4000, .note = "night shift"};
  assert_int_equal(store_person_add(s, &bob), 0);
  assert_int_equal(store_person_add(s, &bob), -EEXIST);
  store_person_t again = {.name = "alice", .role = STORE_PERSON_TECHNICIAN, .added_by = "alice"};
  assert_int_equal(store_person_add(s, &again), -EEXIST);
  assert_int_equal(store_person_get(s, "bob", &got), 0);
  assert_int_equal(got.first_seen_ms, 0);
  assert_int_equal(got.last_seen_ms, 0);
  assert_string_equal(got.added_by, "alice");
  assert_int_equal(got.added_ms, 4000);
  assert_string_equal(got.note, "night shift");
  /* A disconnect of someone never seen moves nothing; their first connect sets both times
   * and keeps who added them. */
  assert_int_equal(store_person_last_seen(s, "bob", 4500), 0);
  assert_int_equal(store_person_last_seen(s, "nobody", 4500), 0);
  assert_int_equal(store_person_get(s, "bob", &got), 0);
  assert_int_equal(got.last_seen_ms, 0);
  assert_int_equal(store_person_seen(s, "bob", STORE_PERSON_TECHNICIAN, 5000), 0);
  assert_int_equal(store_person_get(s, "bob", &got), 0);
  assert_int_equal(got.first_seen_ms, 5000);
  assert_int_equal(got.last_seen_ms, 5000);
  assert_string_equal(got.added_by, "alice");
  assert_string_equal(got.note, "night shift");

  /* The schema refuses what no person can be, writing nothing. */
  store_person_t bad = {.name = "", .role = STORE_PERSON_TECHNICIAN};
  assert_int_equal(store_person_add(s, &bad), TT_EINVAL);
  snprintf(bad.name, sizeof bad.name, "has space");
  assert_int_equal(store_person_add(s, &bad), TT_EINVAL);
  memset(bad.name, 'x', sizeof bad.name); /* no NUL */
  assert_int_equal(store_person_add(s, &bad), TT_ETOOBIG);
  snprintf(bad.name, sizeof bad.name, "dev-1");
  bad.role = (store_person_role_t)1; /* an agent is not a person */
  assert_int_equal(store_person_add(s, &bad), TT_EINVAL);
  assert_int_equal(store_person_seen(s, "dev-1", (store_person_role_t)4, 10), TT_EINVAL);
  assert_int_equal(store_person_seen(s, "a'b", STORE_PERSON_ADMIN, 10), TT_EINVAL);
  bad.role = STORE_PERSON_ADMIN;
  memset(bad.note, 'n', sizeof bad.note); /* no NUL */
  assert_int_equal(store_person_add(s, &bad), TT_ETOOBIG);
  assert_int_equal(store_person_get(s, "dev-1", &got), TT_ENOTFOUND);
  sqlite3 *db = raw_open(fx); /* whoever writes: a name longer than TT_NAME_MAX, a bad time */
  assert_int_not_equal(sqlite3_exec(db, "INSERT INTO people(name, role) VALUES("
                                        "'x123456789x123456789x123456789x123456789x123456789x123456789x1234', 2)",
                                    NULL, NULL, NULL), SQLITE_OK);
  assert_int_not_equal(sqlite3_exec(db, "INSERT INTO people(name, role, first_seen_ms, last_seen_ms)"
                                        " VALUES('zed', 2, 10, 5)", NULL, NULL, NULL), SQLITE_OK);
  raw_exec(db, "INSERT INTO people(name, role) VALUES("
               "'x123456789x123456789x123456789x123456789x123456789x123456789x123', 2);"
               "DELETE FROM people WHERE name LIKE 'x1234%'");
  sqlite3_close(db);

  /* Revoked people stay, marked; the flag is the revocation's, of a person, not a device. */
  assert_int_equal(store_revoke(s, STORE_REVOKE_DEVICE, "alice", "root", "", 6000), 0);
  assert_int_equal(store_person_get(s, "alice", &got), 0);
  assert_false(got.revoked);
  assert_int_equal(store_revoke(s, STORE_REVOKE_PERSON, "bob", "alice", "left", 6000), 0);
  assert_int_equal(store_person_get(s, "bob", &got), 0);
  assert_true(got.revoked);

  /* Listed by name, paged after a name, with a limit; the callback can stop the walk. */
  assert_int_equal(store_person_seen(s, "carol", STORE_PERSON_TECHNICIAN, 7000), 0);
  ppl_seen_t c;
  memset(&c, 0, sizeof c);
  assert_int_equal(store_person_list(s, "", 0, collect_ppl, &c), 0);
  assert_int_equal(c.n, 3);
  assert_string_equal(c.p[0].name, "alice");
  assert_string_equal(c.p[1].name, "bob");
  assert_true(c.p[1].revoked);
  assert_false(c.p[0].revoked);
  assert_string_equal(c.p[2].name, "carol");
  memset(&c, 0, sizeof c);
  assert_int_equal(store_person_list(s, "alice", 1, collect_ppl, &c), 0);
  assert_int_equal(c.n, 1);
  assert_string_equal(c.p[0].name, "bob");
  memset(&c, 0, sizeof c);
  assert_int_equal(store_person_list(s, "carol", 10, collect_ppl, &c), 0);
  assert_int_equal(c.n, 0);
  memset(&c, 0, sizeof c);
  c.stop_after = 2;
  assert_int_equal(store_person_list(s, NULL, 0, collect_ppl, &c), 42);
  assert_int_equal(c.n, 2);
  /* The statement was reset: the next listing starts afresh. */
  memset(&c, 0, sizeof c);
  assert_int_equal(store_person_list(s, "", 0, collect_ppl, &c), 0);
  assert_int_equal(c.n, 3);
  store_close(s);

  /* What was written is there after a reopen, read-only too. */
  broker_store_t *ro = NULL;
  char err[256];
  assert_int_equal(store_open_ro(&ro, fx->dir, err, sizeof err), 0);
  assert_int_equal(store_person_get(ro, "carol", &got), 0);
  assert_int_equal(got.first_seen_ms, 7000);
  store_close(ro);
}

static void test_v5_migrates_v4_store(void **state) {
  fx_t *fx = *state;
  broker_store_t *s = open_ok(fx);
  /* What a schema-4 broker recorded of its people: connect entries with their role. */
  static const struct {
    int64_t ts;
    const char *actor, *detail;
  } log[] = {
    {100, "tech", "{\"role\":\"technician\",\"address\":\"127.0.0.1:1\"}"},
    {200, "boss", "{\"role\":\"admin\"}"},
    {300, "dev-1", "{\"role\":\"agent\"}"},
    {400, "tech", "{\"role\":\"technician\"}"},
    {500, "promoted", "{\"role\":\"technician\"}"},
    {600, "promoted", "{\"role\":\"admin\"}"},
    {700, "garbled", "not json"},
    {800, "bad name", "{\"role\":\"technician\"}"},
  };
  store_ticket_t t = {.device = "dev-1", .assignee = "tech", .summary = "disk full",
                      .priority = STORE_TICKET_HIGH};
  assert_int_equal(store_ticket_add(s, &t, "tech", 1000), 0);
  store_close(s);
  /* Take the file back to what schema 4 left behind, with its audit entries. */
  sqlite3 *db = raw_open(fx);
  raw_exec(db, STORE_UNDO_TO_10 "DROP TABLE inv_rows; DROP TABLE inv_devs; DROP TABLE inv_bases; DROP TABLE inv_base_rows; DROP TABLE inv_cur; DROP TABLE inv_plus; DROP TABLE inv_find_todo; DROP TABLE asset_custom; DROP TABLE asset_records; DROP TABLE inv_macs; DROP TABLE inv_facts; DROP INDEX devices_hostname_key; DROP TABLE diag_reports; DROP TABLE inv_tables; DROP TABLE inv_versions; DROP TABLE people; PRAGMA user_version = 4;");
  for (size_t i = 0; i < sizeof log / sizeof log[0]; i++)
    raw_audit_v1(db, log[i].ts, log[i].actor, "connect", log[i].actor, log[i].detail);
  raw_audit_v1(db, 900, "ghost", "refuse", "ghost", "{\"role\":\"technician\"}");
  sqlite3_close(db);

  s = open_ok(fx);
  assert_int_equal(store_schema_version(s), STORE_SCHEMA_VERSION);
  ppl_seen_t c;
  memset(&c, 0, sizeof c);
  assert_int_equal(store_person_list(s, "", 0, collect_ppl, &c), 0);
  /* Only people who connected: not the device, the refused, the garbled or the misnamed. */
  assert_int_equal(c.n, 3);
  assert_string_equal(c.p[0].name, "boss");
  assert_int_equal(c.p[0].role, STORE_PERSON_ADMIN);
  assert_int_equal(c.p[0].first_seen_ms, 200);
  assert_int_equal(c.p[0].last_seen_ms, 200);
  assert_string_equal(c.p[1].name, "promoted");
  assert_int_equal(c.p[1].role, STORE_PERSON_ADMIN); /* the newest connect's role */
  assert_int_equal(c.p[1].first_seen_ms, 500);
  assert_int_equal(c.p[1].last_seen_ms, 600);
  assert_string_equal(c.p[2].name, "tech");
  assert_int_equal(c.p[2].role, STORE_PERSON_TECHNICIAN);
  assert_int_equal(c.p[2].first_seen_ms, 100);
  assert_int_equal(c.p[2].last_seen_ms, 400);
  assert_string_equal(c.p[2].added_by, "");
  for (int i = 0; i < 3; i++) assert_false(c.p[i].revoked);
  /* Nothing else moved: the chain holds, the ticket is as it was. */
  int64_t n = 0, bad = -1;
  assert_int_equal(store_audit_verify(s, &n, &bad), 0);
  assert_int_equal(n, 9);
  assert_int_equal(bad, 0);
  store_ticket_t got;
  assert_int_equal(store_ticket_get(s, t.id, &got), 0);
  assert_string_equal(got.assignee, "tech");
  assert_int_equal(store_person_seen(s, "newcomer", STORE_PERSON_TECHNICIAN, 2000), 0);
  store_close(s);
  db = raw_open(fx);
  assert_int_equal(raw_int(db, "PRAGMA user_version"), STORE_SCHEMA_VERSION);
  assert_int_equal(raw_int(db, "SELECT count(*) FROM people"), 4);
  sqlite3_close(db);
}

int main(void) {
  tt_log_set_level(TT_LOG_OFF);
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(test_open_creates_private_wal_store, setup, teardown),
    cmocka_unit_test_setup_teardown(test_open_refuses_loose_dir, setup, teardown),
    cmocka_unit_test_setup_teardown(test_open_tightens_loose_file, setup, teardown),
    cmocka_unit_test_setup_teardown(test_reopen_keeps_data, setup, teardown),
    cmocka_unit_test_setup_teardown(test_refuses_newer_schema, setup, teardown),
    cmocka_unit_test_setup_teardown(test_devices, setup, teardown),
    cmocka_unit_test_setup_teardown(test_tokens, setup, teardown),
    cmocka_unit_test_setup_teardown(test_revocations, setup, teardown),
    cmocka_unit_test_setup_teardown(test_audit_chain_and_filters, setup, teardown),
    cmocka_unit_test_setup_teardown(test_audit_detects_edit, setup, teardown),
    cmocka_unit_test_setup_teardown(test_audit_detects_delete, setup, teardown),
    cmocka_unit_test_setup_teardown(test_audit_triggers_refuse_rewrite, setup, teardown),
    cmocka_unit_test_setup_teardown(test_crash_consistency, setup, teardown),
    cmocka_unit_test_setup_teardown(test_ticket_migrates_v1_store, setup, teardown),
      cmocka_unit_test_setup_teardown(test_audit_rechain, setup, teardown),
    cmocka_unit_test_setup_teardown(test_help_requests, setup, teardown),
    cmocka_unit_test_setup_teardown(test_ticket_add_get_update, setup, teardown),
    cmocka_unit_test_setup_teardown(test_ticket_list_filters, setup, teardown),
    cmocka_unit_test_setup_teardown(test_ticket_checks_refuse_whole_write, setup, teardown),
    cmocka_unit_test_setup_teardown(test_ticket_events_append_only, setup, teardown),
    cmocka_unit_test_setup_teardown(test_v3_migrates_v2_store, setup, teardown),
    cmocka_unit_test_setup_teardown(test_sessions, setup, teardown),
    cmocka_unit_test_setup_teardown(test_recordings, setup, teardown),
    cmocka_unit_test_setup_teardown(test_ticket_events_tail, setup, teardown),
    cmocka_unit_test_setup_teardown(test_people, setup, teardown),
    cmocka_unit_test_setup_teardown(test_v5_migrates_v4_store, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
