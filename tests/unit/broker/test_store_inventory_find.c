/* broker/store/inventory_find.c: the find index follows every put (rows added, changed,
 * removed), devices share rows and bases, pages split and join, hostile bodies and damaged
 * index rows never crash, a rollback leaves no stale row ids, and migration 7 indexes what
 * was stored before it. */
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
  snprintf(fx->base, sizeof fx->base, "%s/test_store_inventory_find.XXXXXX", tmp);
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

static int64_t raw_int(const fx_t *fx, const char *sql) {
  sqlite3 *db = raw_open(fx);
  sqlite3_stmt *st = NULL;
  assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
  assert_int_equal(sqlite3_step(st), SQLITE_ROW);
  int64_t v = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  sqlite3_close(db);
  return v;
}

static void put(broker_store_t *s, const char *dev, const char *name, const char *json) {
  store_inv_table_t t;
  memset(&t, 0, sizeof t);
  snprintf(t.name, sizeof t.name, "%s", name);
  if (json != NULL) {
    t.body = (const uint8_t *)json;
    t.len = strlen(json);
    unsigned int n = 0;
    assert_int_equal(EVP_Digest(t.body, t.len, t.sha256, &n, EVP_sha256(), NULL), 1);
  }
  int64_t v = 0;
  assert_int_equal(store_inv_put(s, dev, 1, 1, &t, 1, &v), 0);
}

/* ---- find, collected as text: "dev-1[row,row] dev-2[row]" ------------------------------- */

typedef struct {
  char out[65536];
  size_t len;
  int devices, calls;
} seen_t;

static int seen_cb(void *ctx, const char *device, const char *hostname, size_t n, const int64_t *ids,
                   const char *const *rows, const size_t *lens) {
  seen_t *c = ctx;
  (void)hostname;
  c->calls++;
  assert_true(n > 0);
  for (size_t i = 1; i < n; i++) assert_true(ids[i] > ids[i - 1]);
  /* A device continued from the last page joins its earlier part. */
  char head[96];
  int h = snprintf(head, sizeof head, "%s%s[", c->len ? " " : "", device);
  bool cont = false;
  if (c->len > 0 && c->out[c->len - 1] == ']') {
    size_t dl = strlen(device);
    const char *last = c->out + c->len;
    while (last > c->out && last[-1] != ' ') last--;
    cont = strncmp(last, device, dl) == 0 && last[dl] == '[';
  }
  if (cont) {
    c->len--; /* drop "]" and go on */
    c->out[c->len++] = ',';
  } else {
    memcpy(c->out + c->len, head, (size_t)h);
    c->len += (size_t)h;
    c->devices++;
  }
  for (size_t i = 0; i < n; i++) {
    assert_true(c->len + lens[i] + 4 < sizeof c->out);
    if (i) c->out[c->len++] = ',';
    memcpy(c->out + c->len, rows[i], lens[i]);
    c->len += lens[i];
  }
  c->out[c->len++] = ']';
  c->out[c->len] = '\0';
  return 0;
}

/* conds: "col=value" or "col~value", separated by '&'. Every page of max_rows, joined. */
static int find_all(broker_store_t *s, const char *table, const char *conds, uint32_t max_rows, seen_t *c,
                    int *pages) {
  memset(c, 0, sizeof *c);
  char buf[1024];
  snprintf(buf, sizeof buf, "%s", conds);
  store_inv_cond_t cond[STORE_INV_FIND_CONDS_MAX + 1];
  size_t n = 0;
  for (char *save = NULL, *tok = strtok_r(buf, "&", &save); tok != NULL; tok = strtok_r(NULL, "&", &save)) {
    assert_true(n <= STORE_INV_FIND_CONDS_MAX);
    char *op = strpbrk(tok, "=~");
    assert_non_null(op);
    memset(&cond[n], 0, sizeof cond[n]);
    cond[n].contains = *op == '~';
    *op = '\0';
    snprintf(cond[n].col, sizeof cond[n].col, "%s", tok);
    cond[n].value = op + 1;
    cond[n].len = strlen(op + 1);
    n++;
  }
  store_inv_cursor_t cur = {0, 0};
  int np = 0;
  for (;;) {
    bool more = false;
    int rc = store_inv_find(s, table, cond, n, &cur, max_rows, 1 << 20, seen_cb, c, &more);
    if (rc != 0) return rc;
    np++;
    assert_true(np < 10000);
    if (!more) break;
  }
  if (pages != NULL) *pages = np;
  return 0;
}

static const char *const PKG1 =
    "{\"columns\":[\"name\",\"version\"],\"rows\":[[\"bash\",\"5.2\"],[\"openssl\",\"3.0.11\"],[\"zstd\",\"1.5\"]]}";
static const char *const PKG1B = /* another device, the same bash */
    "{\"columns\":[\"name\",\"version\"],\"rows\":[[\"bash\",\"5.2\"],[\"curl\",\"7.88\"]]}";
static const char *const PKG2 = /* bash upgraded, zstd gone */
    "{\"columns\":[\"name\",\"version\"],\"rows\":[[\"bash\",\"5.3\"],[\"openssl\",\"3.0.11\"]]}";

static void test_find_after_puts(void **state) {
  fx_t *fx = *state;
  seen_t c;
  store_device_t d = {.id = "dev-1", .hostname = "host-one", .enrolled_ms = 1};
  assert_int_equal(store_device_add(fx->s, &d), 0);
  /* Nothing stored yet: nothing found. */
  assert_int_equal(find_all(fx->s, "deb_packages", "name=bash", 100, &c, NULL), 0);
  assert_string_equal(c.out, "");
  put(fx->s, "dev-1", "deb_packages", PKG1);
  put(fx->s, "dev-1", "os_version", "{\"columns\":[\"name\"],\"rows\":[[\"bash\"]]}");
  assert_int_equal(find_all(fx->s, "deb_packages", "name=bash", 100, &c, NULL), 0);
  assert_string_equal(c.out, "dev-1[{\"name\":\"bash\",\"version\":\"5.2\"}]");
  /* Exact means exact; contains finds substrings; every condition must hold in one row. */
  assert_int_equal(find_all(fx->s, "deb_packages", "name=bas", 100, &c, NULL), 0);
  assert_string_equal(c.out, "");
  assert_int_equal(find_all(fx->s, "deb_packages", "name~s", 100, &c, NULL), 0);
  assert_string_equal(c.out, "dev-1[{\"name\":\"bash\",\"version\":\"5.2\"},"
                             "{\"name\":\"openssl\",\"version\":\"3.0.11\"},{\"name\":\"zstd\",\"version\":\"1.5\"}]");
  assert_int_equal(find_all(fx->s, "deb_packages", "name~s&version=1.5", 100, &c, NULL), 0);
  assert_string_equal(c.out, "dev-1[{\"name\":\"zstd\",\"version\":\"1.5\"}]");
  assert_int_equal(find_all(fx->s, "deb_packages", "name=bash&version=1.5", 100, &c, NULL), 0);
  assert_string_equal(c.out, "");
  /* A column the table does not have matches nothing; another table is another index. */
  assert_int_equal(find_all(fx->s, "deb_packages", "arch=amd64", 100, &c, NULL), 0);
  assert_string_equal(c.out, "");
  assert_int_equal(find_all(fx->s, "os_version", "name=bash", 100, &c, NULL), 0);
  assert_string_equal(c.out, "dev-1[{\"name\":\"bash\"}]");
  assert_int_equal(find_all(fx->s, "mounts", "name=bash", 100, &c, NULL), 0);
  assert_string_equal(c.out, "");
}

static void test_changed_table_updates_index(void **state) {
  fx_t *fx = *state;
  seen_t c;
  put(fx->s, "dev-1", "deb_packages", PKG1);
  put(fx->s, "dev-1", "deb_packages", PKG2);
  /* bash 5.2 and zstd: nobody holds them, so the index holds them no more. */
  assert_int_equal(raw_int(fx, "SELECT count(*) FROM inv_rows"), 2);
  assert_int_equal(find_all(fx->s, "deb_packages", "name=bash", 100, &c, NULL), 0);
  assert_string_equal(c.out, "dev-1[{\"name\":\"bash\",\"version\":\"5.3\"}]");
  assert_int_equal(find_all(fx->s, "deb_packages", "version=5.2", 100, &c, NULL), 0);
  assert_string_equal(c.out, "");
  assert_int_equal(find_all(fx->s, "deb_packages", "name=zstd", 100, &c, NULL), 0);
  assert_string_equal(c.out, "");
  assert_int_equal(find_all(fx->s, "deb_packages", "name=openssl", 100, &c, NULL), 0);
  assert_string_equal(c.out, "dev-1[{\"name\":\"openssl\",\"version\":\"3.0.11\"}]");
  /* And back: the old rows are found again (interned anew: the cache forgot their ids). */
  put(fx->s, "dev-1", "deb_packages", PKG1);
  assert_int_equal(find_all(fx->s, "deb_packages", "name=bash", 100, &c, NULL), 0);
  assert_string_equal(c.out, "dev-1[{\"name\":\"bash\",\"version\":\"5.2\"}]");
  assert_int_equal(find_all(fx->s, "deb_packages", "name=zstd", 100, &c, NULL), 0);
  assert_string_equal(c.out, "dev-1[{\"name\":\"zstd\",\"version\":\"1.5\"}]");
  assert_int_equal(raw_int(fx, "SELECT count(*) FROM inv_rows"), 3);
}

static void test_removed_table_removes_postings(void **state) {
  fx_t *fx = *state;
  seen_t c;
  put(fx->s, "dev-1", "deb_packages", PKG1);
  put(fx->s, "dev-2", "deb_packages", PKG1B);
  put(fx->s, "dev-1", "deb_packages", NULL);
  assert_int_equal(find_all(fx->s, "deb_packages", "name=bash", 100, &c, NULL), 0);
  assert_string_equal(c.out, "dev-2[{\"name\":\"bash\",\"version\":\"5.2\"}]");
  assert_int_equal(find_all(fx->s, "deb_packages", "name=openssl", 100, &c, NULL), 0);
  assert_string_equal(c.out, "");
  assert_int_equal(raw_int(fx, "SELECT count(*) FROM inv_cur c JOIN inv_devs d ON d.id = c.dev"
                               " WHERE d.device = 'dev-1'"), 0);
  assert_int_equal(raw_int(fx, "SELECT count(*) FROM inv_plus p JOIN inv_devs d ON d.id = p.dev"
                               " WHERE d.device = 'dev-1'"), 0);
  /* It comes back, and is found again. */
  put(fx->s, "dev-1", "deb_packages", PKG2);
  assert_int_equal(find_all(fx->s, "deb_packages", "name=bash", 100, &c, NULL), 0);
  assert_string_equal(c.out, "dev-1[{\"name\":\"bash\",\"version\":\"5.3\"}] dev-2[{\"name\":\"bash\",\"version\":\"5.2\"}]");
}

static void test_two_devices_share_rows(void **state) {
  fx_t *fx = *state;
  seen_t c;
  put(fx->s, "dev-1", "deb_packages", PKG1);
  put(fx->s, "dev-2", "deb_packages", PKG1B);
  assert_int_equal(find_all(fx->s, "deb_packages", "name=bash", 100, &c, NULL), 0);
  assert_string_equal(c.out, "dev-1[{\"name\":\"bash\",\"version\":\"5.2\"}] dev-2[{\"name\":\"bash\",\"version\":\"5.2\"}]");
  /* bash 5.2 is one row for both. */
  assert_int_equal(raw_int(fx, "SELECT count(*) FROM inv_rows WHERE tbl = 'deb_packages'"), 4);
  assert_int_equal(find_all(fx->s, "deb_packages", "name=curl", 100, &c, NULL), 0);
  assert_string_equal(c.out, "dev-2[{\"name\":\"curl\",\"version\":\"7.88\"}]");
}

/* A table of n packages, all "1.0" but those in the list, which are at "v<dev>". */
static char *fleet_table(int n, int dev, const int *vary, int nvary) {
  size_t cap = (size_t)n * 64 + 128;
  char *s = malloc(cap);
  assert_non_null(s);
  size_t len = (size_t)snprintf(s, cap, "{\"columns\":[\"name\",\"version\"],\"rows\":[");
  for (int i = 0; i < n; i++) {
    bool v = false;
    for (int k = 0; k < nvary; k++) v |= vary[k] == i;
    char ver[16];
    if (v) snprintf(ver, sizeof ver, "v%d", dev);
    else snprintf(ver, sizeof ver, "1.0");
    len += (size_t)snprintf(s + len, cap - len, "%s[\"pkg%03d\",\"%s\"]", i ? "," : "", i, ver);
  }
  snprintf(s + len, cap - len, "]}");
  return s;
}

static void test_devices_share_a_base(void **state) {
  fx_t *fx = *state;
  seen_t c;
  char dev[16];
  for (int d = 0; d < 20; d++) {
    int vary[2] = {d % 40, 39 - d % 40};
    char *t = fleet_table(40, d, vary, 2);
    snprintf(dev, sizeof dev, "dev-%02d", d);
    put(fx->s, dev, "deb_packages", t);
    free(t);
  }
  /* One base; each device differs from it by a few rows, not by all 40. */
  assert_int_equal(raw_int(fx, "SELECT count(*) FROM inv_bases"), 1);
  assert_int_equal(raw_int(fx, "SELECT users FROM inv_bases"), 20);
  assert_true(raw_int(fx, "SELECT count(*) FROM inv_plus") <= 20 * 4);
  /* pkg005 is at 1.0 everywhere but dev-05 (v5) and dev-34... (none: 39-5=34 only for d=34). */
  assert_int_equal(find_all(fx->s, "deb_packages", "name=pkg005&version=v5", 100, &c, NULL), 0);
  assert_string_equal(c.out, "dev-05[{\"name\":\"pkg005\",\"version\":\"v5\"}]");
  assert_int_equal(find_all(fx->s, "deb_packages", "name=pkg005", 100, &c, NULL), 0);
  assert_int_equal(c.devices, 20);
  assert_non_null(strstr(c.out, "dev-05[{\"name\":\"pkg005\",\"version\":\"v5\"}]"));
  assert_non_null(strstr(c.out, "dev-04[{\"name\":\"pkg005\",\"version\":\"1.0\"}]"));
  /* Every device but 5 and 34 has pkg005 at 1.0 (34 varies pkg005 too: 39 - 34). */
  assert_int_equal(find_all(fx->s, "deb_packages", "name=pkg005&version=1.0", 100, &c, NULL), 0);
  assert_int_equal(c.devices, 19);
  assert_null(strstr(c.out, "dev-05"));
  /* A device that changes one package stays on its base. */
  int vary[3] = {5, 34, 7};
  char *t = fleet_table(40, 5, vary, 3);
  put(fx->s, "dev-05", "deb_packages", t);
  free(t);
  assert_int_equal(raw_int(fx, "SELECT count(*) FROM inv_bases"), 1);
  assert_int_equal(find_all(fx->s, "deb_packages", "version=v5", 100, &c, NULL), 0);
  /* Rows come in the order the index first saw them: pkg007 at v5 is the newest. */
  assert_string_equal(c.out, "dev-05[{\"name\":\"pkg005\",\"version\":\"v5\"},"
                             "{\"name\":\"pkg034\",\"version\":\"v5\"},{\"name\":\"pkg007\",\"version\":\"v5\"}]");
  /* A device that differs wholly gets a base of its own; removed, the base goes with it. */
  char *other = malloc(4096);
  size_t len = (size_t)snprintf(other, 4096, "{\"columns\":[\"name\",\"version\"],\"rows\":[");
  for (int i = 0; i < 30; i++) len += (size_t)snprintf(other + len, 4096 - len, "%s[\"lib%02d\",\"2\"]", i ? "," : "", i);
  snprintf(other + len, 4096 - len, "]}");
  put(fx->s, "odd", "deb_packages", other);
  free(other);
  assert_int_equal(raw_int(fx, "SELECT count(*) FROM inv_bases"), 2);
  assert_int_equal(find_all(fx->s, "deb_packages", "name=lib07", 100, &c, NULL), 0);
  assert_string_equal(c.out, "odd[{\"name\":\"lib07\",\"version\":\"2\"}]");
  put(fx->s, "odd", "deb_packages", NULL);
  assert_int_equal(raw_int(fx, "SELECT count(*) FROM inv_bases"), 1);
  assert_int_equal(raw_int(fx, "SELECT count(*) FROM inv_base_rows"), 40);
  assert_int_equal(find_all(fx->s, "deb_packages", "name=lib07", 100, &c, NULL), 0);
  assert_string_equal(c.out, "");
}

static void test_pages_split_and_join(void **state) {
  fx_t *fx = *state;
  seen_t one, paged;
  char dev[16];
  for (int d = 0; d < 30; d++) {
    int vary[1] = {d};
    char *t = fleet_table(20, d, vary, 1);
    snprintf(dev, sizeof dev, "dev-%02d", d);
    put(fx->s, dev, "deb_packages", t);
    free(t);
  }
  int pages = 0;
  assert_int_equal(find_all(fx->s, "deb_packages", "name~pkg01", 100000, &one, &pages), 0);
  assert_int_equal(pages, 1);
  assert_int_equal(one.devices, 30);
  /* 3 rows a page: every device's 10 rows split over pages, joined back the same. */
  assert_int_equal(find_all(fx->s, "deb_packages", "name~pkg01", 3, &paged, &pages), 0);
  assert_int_equal(pages, 100);
  assert_string_equal(paged.out, one.out);
  assert_int_equal(find_all(fx->s, "deb_packages", "name~pkg01", 7, &paged, &pages), 0);
  assert_string_equal(paged.out, one.out);
  /* Pages by bytes: a page always carries at least one row, and stops before the limit. */
  const char *c1 = "pkg";
  store_inv_cond_t cond = {.col = "name", .value = c1, .len = strlen(c1), .contains = true};
  store_inv_cursor_t cur = {0, 0};
  seen_t c;
  memset(&c, 0, sizeof c);
  bool more = false;
  assert_int_equal(store_inv_find(fx->s, "deb_packages", &cond, 1, &cur, 1000, 10, seen_cb, &c, &more), 0);
  assert_true(more);
  assert_int_equal(c.calls, 1);
  assert_string_equal(c.out, "dev-00[{\"name\":\"pkg000\",\"version\":\"v0\"}]");
  memset(&c, 0, sizeof c);
  assert_int_equal(store_inv_find(fx->s, "deb_packages", &cond, 1, &cur, 1000, 200, seen_cb, &c, &more), 0);
  assert_true(more);
  /* 22 for the device, 41 for each new row of 33 bytes: four fit in 200. */
  assert_string_equal(c.out, "dev-00[{\"name\":\"pkg001\",\"version\":\"1.0\"},{\"name\":\"pkg002\",\"version\":\"1.0\"},"
                             "{\"name\":\"pkg003\",\"version\":\"1.0\"},{\"name\":\"pkg004\",\"version\":\"1.0\"}]");
}

static void test_escapes_are_one_text(void **state) {
  fx_t *fx = *state;
  seen_t c;
  /* The same row spelled two ways is one row, found by its decoded value. */
  put(fx->s, "dev-1", "deb_packages", "{\"columns\":[\"name\",\"note\"],\"rows\":[[\"\\u0062ash\",\"a\\\"b\\\\c\\/d\"]]}");
  put(fx->s, "dev-2", "deb_packages", "{ \"rows\" : [ [ \"bash\" , \"a\\\"b\\\\c/d\" ] ] , \"columns\" : [ \"name\" , \"note\" ] }");
  assert_int_equal(raw_int(fx, "SELECT count(*) FROM inv_rows"), 1);
  assert_int_equal(find_all(fx->s, "deb_packages", "name=bash", 100, &c, NULL), 0);
  assert_string_equal(c.out, "dev-1[{\"name\":\"bash\",\"note\":\"a\\\"b\\\\c/d\"}] dev-2[{\"name\":\"bash\",\"note\":\"a\\\"b\\\\c/d\"}]");
  assert_int_equal(find_all(fx->s, "deb_packages", "note=a\"b\\c/d", 100, &c, NULL), 0);
  assert_int_equal(c.devices, 2);
  assert_int_equal(find_all(fx->s, "deb_packages", "note~\"b\\", 100, &c, NULL), 0);
  assert_int_equal(c.devices, 2);
  /* Non-ASCII, as UTF-8 or as \u escapes (a surrogate pair too). */
  put(fx->s, "dev-3", "users", "{\"columns\":[\"name\"],\"rows\":[[\"Jos\\u00e9 \\ud83d\\ude00\"]]}");
  assert_int_equal(find_all(fx->s, "users", "name=Jos\xc3\xa9 \xf0\x9f\x98\x80", 100, &c, NULL), 0);
  assert_string_equal(c.out, "dev-3[{\"name\":\"Jos\xc3\xa9 \xf0\x9f\x98\x80\"}]");
}

static void test_hostile_bodies_index_nothing(void **state) {
  fx_t *fx = *state;
  seen_t c;
  static const char *const bad[] = {
      "not json",
      "{}",
      "{\"columns\":[\"name\"]}",
      "{\"columns\":[\"name\"],\"rows\":[[\"a\",\"b\"]]}",       /* a row too wide */
      "{\"columns\":[\"name\"],\"rows\":[[1]]}",                 /* not a string */
      "{\"columns\":[\"Name\"],\"rows\":[[\"a\"]]}",             /* not a column name */
      "{\"columns\":[\"a\",\"a\"],\"rows\":[[\"x\",\"y\"]]}",   /* a column twice */
      "{\"columns\":[\"name\"],\"rows\":[[\"a\\u0000\"]]}",      /* NUL */
      "{\"columns\":[\"name\"],\"rows\":[[\"\\ud800\"]]}",       /* a lone surrogate */
      "{\"columns\":[\"name\"],\"rows\":[[\"\xff\"]]}",          /* not UTF-8 */
      "{\"columns\":[\"name\"],\"rows\":[[\"a\"]]",              /* cut short */
      "{\"columns\":[\"name\"],\"rows\":[[\"a\"]]} x",           /* trailing bytes */
      "{\"columns\":[\"name\"],\"rows\":[[[[[[\"a\"]]]]]]}",     /* too deep */
  };
  put(fx->s, "dev-1", "deb_packages", PKG1);
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    put(fx->s, "dev-1", "deb_packages", bad[i]);
    assert_int_equal(find_all(fx->s, "deb_packages", "name~a", 100, &c, NULL), 0);
    assert_string_equal(c.out, "");
    put(fx->s, "dev-1", "deb_packages", PKG1);
    assert_int_equal(find_all(fx->s, "deb_packages", "name=bash", 100, &c, NULL), 0);
    assert_string_equal(c.out, "dev-1[{\"name\":\"bash\",\"version\":\"5.2\"}]");
  }
  /* A row past STORE_INV_ROW_MAX is left out; the others are indexed. */
  size_t cap = STORE_INV_ROW_MAX + 256;
  char *big = malloc(cap);
  assert_non_null(big);
  int n = snprintf(big, cap, "{\"columns\":[\"name\"],\"rows\":[[\"small\"],[\"");
  memset(big + n, 'x', STORE_INV_ROW_MAX);
  snprintf(big + n + STORE_INV_ROW_MAX, cap - (size_t)n - STORE_INV_ROW_MAX, "\"]]}");
  put(fx->s, "dev-2", "deb_packages", big);
  free(big);
  assert_int_equal(find_all(fx->s, "deb_packages", "name~x", 100, &c, NULL), 0);
  assert_string_equal(c.out, "");
  assert_int_equal(find_all(fx->s, "deb_packages", "name=small", 100, &c, NULL), 0);
  assert_string_equal(c.out, "dev-2[{\"name\":\"small\"}]");
}

/* The writer's check of a pushed table (store_inv_table_check): what the agent sends passes,
 * every way a body can be malformed is refused, in one pass over the bytes. */
static void test_table_check(void **state) {
  (void)state;
  static const char *const good[] = {
      "{\"columns\":[\"name\",\"version\"],\"rows\":[[\"bash\",\"5.2\"],[\"zstd\",\"1.5\"]]}",
      " { \"columns\" : [ \"name\" ] , \"rows\" : [ ] } \n",               /* no rows, spaces */
      "{\"rows\":[[\"a\"]],\"columns\":[\"name\"]}",                        /* rows first */
      "{\"columns\":[\"name\"],\"rows\":[],\"error\":\"dpkg: timed out\"}", /* a failed collector */
      "{\"columns\":[\"name\"],\"rows\":[[\"caf\\u00e9 \\\"q\\\" \\ud83d\\ude00 \xc3\xa9\"]]}",
      "{\"columns\":[\"name\"],\"rows\":[[\"\"]],\"note\":[\"x\",[\"y\"]]}", /* another member of strings */
  };
  static const char *const bad[] = {
      "", "not json", "[]", "{}", "{\"columns\":[\"name\"]}", "{\"rows\":[]}",
      "{\"columns\":[],\"rows\":[]}",                                   /* no column */
      "{\"columns\":[\"name\"],\"rows\":[[\"a\",\"b\"]]}",             /* a row too wide */
      "{\"columns\":[\"a\",\"b\"],\"rows\":[[\"x\"]]}",                /* too narrow */
      "{\"rows\":[[\"x\"],[\"x\",\"y\"]],\"columns\":[\"a\"]}",        /* rows of two widths */
      "{\"columns\":[\"name\"],\"rows\":[[1]]}",                       /* not a string */
      "{\"columns\":[\"name\"],\"rows\":[[null]]}",
      "{\"columns\":[\"name\"],\"rows\":[\"a\"]}",                     /* a row not an array */
      "{\"columns\":[\"Name\"],\"rows\":[]}",                          /* not a column name */
      "{\"columns\":[\"\"],\"rows\":[]}",
      "{\"columns\":[\"name\"],\"rows\":[[\"a\\u0000\"]]}",            /* NUL */
      "{\"columns\":[\"name\"],\"rows\":[[\"\\ud800\"]]}",             /* a lone surrogate */
      "{\"columns\":[\"name\"],\"rows\":[[\"\xff\"]]}",                /* not UTF-8 */
      "{\"columns\":[\"name\"],\"rows\":[[\"a\\q\"]]}",                /* a bad escape */
      "{\"columns\":[\"name\"],\"rows\":[[\"a\nb\"]]}",                /* a raw control */
      "{\"columns\":[\"name\"],\"rows\":[[\"a\"]]",                    /* cut short */
      "{\"columns\":[\"name\"],\"rows\":[[\"a\"]]} x",                 /* trailing bytes */
      "{\"columns\":[\"name\"],\"rows\":[[\"a\",]]}",                  /* trailing commas */
      "{\"columns\":[\"name\",],\"rows\":[]}",
      "{\"columns\":[\"name\"],\"rows\":[[\"a\"],]}",
      "{\"columns\":[\"name\"],\"rows\":[],}",
      "{\"columns\":[\"name\"],\"rows\":[],\"rows\":[]}",              /* a member twice */
      "{\"columns\":[\"name\"],\"columns\":[\"name\"],\"rows\":[]}",
      "{\"columns\":[\"name\"],\"rows\":[],\"error\":1}",              /* error not a string */
      "{\"columns\":[\"name\"],\"rows\":[],\"x\":{}}",                 /* another member not strings */
      "{\"columns\":[\"name\"],\"rows\":[],\"x\":[[[\"deep\"]]]}",
      "{\"columns\":[\"name\"] \"rows\":[]}",                          /* no comma */
      "{\"columns\" [\"name\"],\"rows\":[]}",                          /* no colon */
  };
  for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
    if (store_inv_table_check(good[i], strlen(good[i])) != 0) fail_msg("refused: %s", good[i]);
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    if (store_inv_table_check(bad[i], strlen(bad[i])) != TT_EINVAL) fail_msg("accepted: %s", bad[i]);
  /* 64 columns pass, 65 do not; a body cut anywhere is refused. */
  char wide[2048];
  for (int ncols = 64; ncols <= 65; ncols++) {
    size_t n = (size_t)snprintf(wide, sizeof wide, "{\"columns\":[");
    for (int k = 0; k < ncols; k++) n += (size_t)snprintf(wide + n, sizeof wide - n, "%s\"c%d\"", k ? "," : "", k);
    snprintf(wide + n, sizeof wide - n, "],\"rows\":[]}");
    assert_int_equal(store_inv_table_check(wide, strlen(wide)), ncols == 64 ? 0 : TT_EINVAL);
  }
  const char *t = good[0];
  for (size_t cut = 0; cut < strlen(t); cut++) assert_int_equal(store_inv_table_check(t, cut), TT_EINVAL);
}

static void test_bad_queries_refused(void **state) {
  fx_t *fx = *state;
  store_inv_cursor_t cur = {0, 0};
  bool more = false;
  seen_t c;
  memset(&c, 0, sizeof c);
  store_inv_cond_t ok = {.col = "name", .value = "bash", .len = 4};
  store_inv_cond_t bad_col = {.col = "Name", .value = "bash", .len = 4};
  store_inv_cond_t nul = {.col = "name", .value = "ba\0sh", .len = 5};
  store_inv_cond_t utf = {.col = "name", .value = "\xff", .len = 1};
  store_inv_cond_t many[STORE_INV_FIND_CONDS_MAX + 1];
  for (size_t i = 0; i < STORE_INV_FIND_CONDS_MAX + 1; i++) many[i] = ok;
  assert_int_equal(store_inv_find(fx->s, "Deb", &ok, 1, &cur, 10, 1000, seen_cb, &c, &more), TT_EINVAL);
  assert_int_equal(store_inv_find(fx->s, "deb_packages", &ok, 0, &cur, 10, 1000, seen_cb, &c, &more), TT_EINVAL);
  assert_int_equal(store_inv_find(fx->s, "deb_packages", &bad_col, 1, &cur, 10, 1000, seen_cb, &c, &more), TT_EINVAL);
  assert_int_equal(store_inv_find(fx->s, "deb_packages", &nul, 1, &cur, 10, 1000, seen_cb, &c, &more), TT_EINVAL);
  assert_int_equal(store_inv_find(fx->s, "deb_packages", &utf, 1, &cur, 10, 1000, seen_cb, &c, &more), TT_EINVAL);
  assert_int_equal(store_inv_find(fx->s, "deb_packages", many, STORE_INV_FIND_CONDS_MAX + 1, &cur, 10, 1000, seen_cb,
                                  &c, &more),
                   TT_EINVAL);
  assert_int_equal(store_inv_find(fx->s, "deb_packages", many, STORE_INV_FIND_CONDS_MAX, &cur, 10, 1000, seen_cb, &c,
                                  &more),
                   0);
  cur.dev = -1;
  assert_int_equal(store_inv_find(fx->s, "deb_packages", &ok, 1, &cur, 10, 1000, seen_cb, &c, &more), TT_EINVAL);
}

static void test_damaged_index_is_an_error(void **state) {
  fx_t *fx = *state;
  seen_t c;
  put(fx->s, "dev-1", "deb_packages", PKG1);
  put(fx->s, "dev-2", "deb_packages", PKG1B);
  sqlite3 *db = raw_open(fx);
  raw_exec(db, "UPDATE inv_cur SET plus = x'80808080808080808080', minus = x'00'"
               " WHERE dev = (SELECT id FROM inv_devs WHERE device = 'dev-1')");
  sqlite3_close(db);
  assert_int_equal(find_all(fx->s, "deb_packages", "name=bash", 100, &c, NULL), TT_EIO);
  /* The device's next put rebuilds what was damaged (its postings found by a scan). */
  put(fx->s, "dev-1", "deb_packages", PKG2);
  assert_int_equal(find_all(fx->s, "deb_packages", "name=bash", 100, &c, NULL), 0);
  assert_string_equal(c.out, "dev-1[{\"name\":\"bash\",\"version\":\"5.3\"}] dev-2[{\"name\":\"bash\",\"version\":\"5.2\"}]");
  assert_int_equal(find_all(fx->s, "deb_packages", "name=zstd", 100, &c, NULL), 0);
  assert_string_equal(c.out, "");
  /* A damaged row's text matches nothing; the others are still found. */
  db = raw_open(fx);
  raw_exec(db, "UPDATE inv_rows SET row = '{\"name\":\"openssl' WHERE row LIKE '%openssl%'");
  sqlite3_close(db);
  assert_int_equal(find_all(fx->s, "deb_packages", "name=openssl", 100, &c, NULL), 0);
  assert_string_equal(c.out, "");
  assert_int_equal(find_all(fx->s, "deb_packages", "name~s", 100, &c, NULL), 0);
  assert_string_equal(c.out, "dev-1[{\"name\":\"bash\",\"version\":\"5.3\"}] dev-2[{\"name\":\"bash\",\"version\":\"5.2\"}]");
}

/* A put undone after it interned rows must not leave their ids in the cache. */
static void test_rollback_forgets_rows(void **state) {
  fx_t *fx = *state;
  seen_t c;
  sqlite3 *db = raw_open(fx);
  raw_exec(db, "CREATE TRIGGER no_cur BEFORE INSERT ON inv_cur BEGIN SELECT RAISE(ABORT, 'no'); END;");
  sqlite3_close(db);
  store_inv_table_t t;
  memset(&t, 0, sizeof t);
  snprintf(t.name, sizeof t.name, "deb_packages");
  t.body = (const uint8_t *)PKG1;
  t.len = strlen(PKG1);
  unsigned int n = 0;
  assert_int_equal(EVP_Digest(t.body, t.len, t.sha256, &n, EVP_sha256(), NULL), 1);
  int64_t v = 0;
  assert_int_not_equal(store_inv_put(fx->s, "dev-1", 1, 1, &t, 1, &v), 0);
  assert_int_equal(raw_int(fx, "SELECT count(*) FROM inv_rows"), 0);
  assert_int_equal(raw_int(fx, "SELECT count(*) FROM inv_tables"), 0);
  db = raw_open(fx);
  raw_exec(db, "DROP TRIGGER no_cur");
  sqlite3_close(db);
  put(fx->s, "dev-2", "deb_packages", PKG1);
  assert_int_equal(raw_int(fx, "SELECT count(*) FROM inv_rows"), 3);
  assert_int_equal(find_all(fx->s, "deb_packages", "name=bash", 100, &c, NULL), 0);
  assert_string_equal(c.out, "dev-2[{\"name\":\"bash\",\"version\":\"5.2\"}]");
}

/* A store of schema 8 (inventory and asset records, no find index) is indexed when it is opened. */
static void test_migration_indexes_stored_tables(void **state) {
  fx_t *fx = *state;
  seen_t c;
  put(fx->s, "dev-1", "deb_packages", PKG1);
  put(fx->s, "dev-1", "deb_packages", PKG2);
  put(fx->s, "dev-2", "deb_packages", PKG1B);
  put(fx->s, "dev-3", "deb_packages", PKG1);
  put(fx->s, "dev-3", "deb_packages", NULL);
  store_close(fx->s);
  fx->s = NULL;
  sqlite3 *db = raw_open(fx);
  raw_exec(db, STORE_UNDO_TO_10 "DROP TABLE inv_rows; DROP TABLE inv_devs; DROP TABLE inv_bases; DROP TABLE inv_base_rows;"
               " DROP TABLE inv_cur; DROP TABLE inv_plus; DROP TABLE inv_find_todo; PRAGMA user_version = 8;");
  sqlite3_close(db);
  char err[512];
  assert_int_equal(store_open(&fx->s, fx->dir, err, sizeof err), 0);
  assert_int_equal(store_schema_version(fx->s), store_schema_latest());
  assert_int_equal(raw_int(fx, "SELECT count(*) FROM inv_find_todo"), 0);
  assert_int_equal(find_all(fx->s, "deb_packages", "name=bash", 100, &c, NULL), 0);
  assert_string_equal(c.out, "dev-1[{\"name\":\"bash\",\"version\":\"5.3\"}] dev-2[{\"name\":\"bash\",\"version\":\"5.2\"}]");
  /* The readers' connection answers the same. */
  broker_store_t *ro = NULL;
  assert_int_equal(store_open_ro(&ro, fx->dir, err, sizeof err), 0);
  assert_int_equal(find_all(ro, "deb_packages", "name=openssl", 100, &c, NULL), 0);
  assert_string_equal(c.out, "dev-1[{\"name\":\"openssl\",\"version\":\"3.0.11\"}]");
  store_close(ro);
}

/* Every row's count is the postings that hold it, and none is held by nobody. */
static void assert_refs_consistent(const fx_t *fx) {
  assert_int_equal(raw_int(fx, "SELECT count(*) FROM inv_rows r WHERE refs <>"
                               " (SELECT count(*) FROM inv_base_rows b WHERE b.row = r.id) +"
                               " (SELECT count(*) FROM inv_plus p WHERE p.row = r.id)"), 0);
  assert_int_equal(raw_int(fx, "SELECT count(*) FROM inv_rows WHERE refs = 0"), 0);
  assert_int_equal(raw_int(fx, "SELECT count(*) FROM inv_devs d WHERE rows <>"
                               " (SELECT coalesce(sum(rows), 0) FROM inv_cur c WHERE c.dev = d.id)"), 0);
}

/* n rows {"name":name,"pad":"<tag><i>"}: distinct rows that all match name=<name>. */
static char *padded_table(const char *name, const char *tag, int n) {
  size_t cap = (size_t)n * 48 + 128;
  char *s = malloc(cap);
  assert_non_null(s);
  size_t len = (size_t)snprintf(s, cap, "{\"columns\":[\"name\",\"pad\"],\"rows\":[");
  for (int i = 0; i < n; i++) len += (size_t)snprintf(s + len, cap - len, "%s[\"%s\",\"%s%d\"]", i ? "," : "", name, tag, i);
  snprintf(s + len, cap - len, "]}");
  return s;
}

/* Rows nobody holds any more leave the index: a table pushed again with other rows, a
 * device's table removed, a base released, all leave no row behind. */
/* A store at schema 9 in the find index's first layout (inv_rows without refs, inv_devs
 * without its budget columns), as main briefly made it: the broker would not open it ("no such
 * column: refs"); step 10 rebuilds the index and every current table is findable again. */
static void test_first_index_layout_is_rebuilt(void **state) {
  fx_t *fx = *state;
  seen_t c;
  put(fx->s, "dev-1", "deb_packages", PKG1);
  put(fx->s, "dev-2", "deb_packages", PKG1B);
  store_close(fx->s);
  fx->s = NULL;
  sqlite3 *db = raw_open(fx);
  raw_exec(db, STORE_UNDO_TO_10 "DROP TABLE inv_rows; DROP TABLE inv_devs;"
               " CREATE TABLE inv_rows(id INTEGER PRIMARY KEY, tbl TEXT NOT NULL, row TEXT NOT NULL, UNIQUE(tbl, row)) STRICT;"
               " CREATE TABLE inv_devs(id INTEGER PRIMARY KEY, device TEXT NOT NULL UNIQUE) STRICT;"
               " INSERT INTO inv_rows(tbl, row) VALUES ('deb_packages', '{\"name\":\"stale\"}');"
               " PRAGMA user_version = 9;");
  sqlite3_close(db);
  char err[512];
  assert_int_equal(store_open(&fx->s, fx->dir, err, sizeof err), 0);
  assert_int_equal(store_schema_version(fx->s), store_schema_latest());
  assert_int_equal(raw_int(fx, "SELECT count(*) FROM inv_find_todo"), 0);
  assert_int_equal(raw_int(fx, "SELECT count(*) FROM inv_rows WHERE row = '{\"name\":\"stale\"}'"), 0);
  assert_int_equal(find_all(fx->s, "deb_packages", "name=bash", 100, &c, NULL), 0);
  assert_string_equal(c.out, "dev-1[{\"name\":\"bash\",\"version\":\"5.2\"}] dev-2[{\"name\":\"bash\",\"version\":\"5.2\"}]");
  put(fx->s, "dev-3", "deb_packages", PKG1);
  assert_int_equal(find_all(fx->s, "deb_packages", "name=openssl", 100, &c, NULL), 0);
  assert_true(strstr(c.out, "dev-3[") != NULL);
}

static void test_rows_nobody_holds_are_deleted(void **state) {
  fx_t *fx = *state;
  seen_t c;
  char *a = padded_table("openssl", "a", 300), *b = padded_table("openssl", "b", 300);
  put(fx->s, "evil", "deb_packages", a);
  put(fx->s, "evil", "deb_packages", b);
  assert_int_equal(raw_int(fx, "SELECT count(*) FROM inv_rows"), 300);
  assert_refs_consistent(fx);
  /* The first rows again: the cache's ids for them are of deleted rows, and must not be used. */
  put(fx->s, "evil", "deb_packages", a);
  assert_int_equal(raw_int(fx, "SELECT count(*) FROM inv_rows"), 300);
  assert_int_equal(find_all(fx->s, "deb_packages", "pad=a7", 100, &c, NULL), 0);
  assert_string_equal(c.out, "evil[{\"name\":\"openssl\",\"pad\":\"a7\"}]");
  assert_refs_consistent(fx);
  /* Shared rows stay while one device holds them. */
  put(fx->s, "good", "deb_packages", PKG1);
  put(fx->s, "other", "deb_packages", PKG1B);
  put(fx->s, "evil", "deb_packages", NULL);
  assert_int_equal(raw_int(fx, "SELECT count(*) FROM inv_rows"), 4);
  assert_refs_consistent(fx);
  put(fx->s, "good", "deb_packages", NULL);
  assert_int_equal(raw_int(fx, "SELECT count(*) FROM inv_rows"), 2);
  assert_int_equal(find_all(fx->s, "deb_packages", "name=bash", 100, &c, NULL), 0);
  assert_string_equal(c.out, "other[{\"name\":\"bash\",\"version\":\"5.2\"}]");
  put(fx->s, "other", "deb_packages", NULL);
  assert_int_equal(raw_int(fx, "SELECT count(*) FROM inv_rows"), 0);
  assert_int_equal(raw_int(fx, "SELECT count(*) FROM inv_bases"), 0);
  assert_int_equal(raw_int(fx, "SELECT coalesce(sum(rows) + sum(bytes), 0) FROM inv_devs"), 0);
  /* A put that deletes rows and is then undone: the rows are back, the cache agrees. */
  put(fx->s, "evil", "deb_packages", a);
  sqlite3 *db = raw_open(fx);
  raw_exec(db, "CREATE TRIGGER no_cur BEFORE INSERT ON inv_cur BEGIN SELECT RAISE(ABORT, 'no'); END;");
  sqlite3_close(db);
  store_inv_table_t t;
  memset(&t, 0, sizeof t);
  snprintf(t.name, sizeof t.name, "deb_packages");
  t.body = (const uint8_t *)b;
  t.len = strlen(b);
  unsigned int n = 0;
  assert_int_equal(EVP_Digest(t.body, t.len, t.sha256, &n, EVP_sha256(), NULL), 1);
  int64_t v = 0;
  assert_int_not_equal(store_inv_put(fx->s, "evil", 1, 1, &t, 1, &v), 0);
  db = raw_open(fx);
  raw_exec(db, "DROP TRIGGER no_cur");
  sqlite3_close(db);
  assert_int_equal(raw_int(fx, "SELECT count(*) FROM inv_rows WHERE row LIKE '%\"a%'"), 300);
  put(fx->s, "evil2", "deb_packages", a);
  put(fx->s, "evil", "deb_packages", b);
  assert_int_equal(raw_int(fx, "SELECT count(*) FROM inv_rows"), 600);
  assert_refs_consistent(fx);
  free(a);
  free(b);
}

/* The damaged-index repair removes the device's plus postings with their counts. */
static void test_repair_drops_counts(void **state) {
  fx_t *fx = *state;
  put(fx->s, "dev-1", "deb_packages", PKG1);
  put(fx->s, "dev-2", "deb_packages", PKG1B);
  sqlite3 *db = raw_open(fx);
  raw_exec(db, "UPDATE inv_cur SET plus = x'80' WHERE dev = (SELECT id FROM inv_devs WHERE device = 'dev-1')");
  sqlite3_close(db);
  put(fx->s, "dev-1", "deb_packages", NULL);
  assert_refs_consistent(fx);
  assert_int_equal(raw_int(fx, "SELECT count(*) FROM inv_rows"), 2);
}

/* A device holds at most STORE_INV_DEVICE_INDEX_ROWS_MAX rows of the index, whatever it pushes
 * and however often: the adversary of the review pushed 65,536+ distinct rows all named
 * openssl, twice, and every find of openssl was refused (TT_ETOOBIG) from then on. */
static void test_device_index_budget(void **state) {
  fx_t *fx = *state;
  seen_t c;
  const int n = (int)STORE_INV_DEVICE_INDEX_ROWS_MAX + 1000;
  put(fx->s, "good", "deb_packages", PKG1);
  char *a = padded_table("openssl", "a", n), *b = padded_table("openssl", "b", n);
  put(fx->s, "evil", "deb_packages", a);
  put(fx->s, "evil", "deb_packages", b);
  assert_int_equal(raw_int(fx, "SELECT count(*) FROM inv_rows WHERE row LIKE '%\"pad\"%'"),
                   STORE_INV_DEVICE_INDEX_ROWS_MAX);
  assert_int_equal(raw_int(fx, "SELECT rows FROM inv_devs WHERE device = 'evil'"), STORE_INV_DEVICE_INDEX_ROWS_MAX);
  /* Another table of the same device: its budget is spent. */
  put(fx->s, "evil", "rpm_packages", PKG1);
  assert_int_equal(raw_int(fx, "SELECT count(*) FROM inv_rows WHERE tbl = 'rpm_packages'"), 0);
  /* The find still answers, the honest device first. */
  store_inv_cond_t cond = {.col = "name", .value = "openssl", .len = 7};
  store_inv_cursor_t cur = {0, 0};
  bool more = false;
  memset(&c, 0, sizeof c);
  assert_int_equal(store_inv_find(fx->s, "deb_packages", &cond, 1, &cur, 1, 1 << 20, seen_cb, &c, &more), 0);
  assert_string_equal(c.out, "good[{\"name\":\"openssl\",\"version\":\"3.0.11\"}]");
  assert_true(more);
  /* Freed budget comes back: the table removed, the other table is indexed. */
  put(fx->s, "evil", "deb_packages", NULL);
  put(fx->s, "evil", "rpm_packages", PKG1B);
  assert_int_equal(raw_int(fx, "SELECT count(*) FROM inv_rows WHERE tbl = 'rpm_packages'"), 2);
  assert_int_equal(raw_int(fx, "SELECT rows FROM inv_devs WHERE device = 'evil'"), 2);
  free(a);
  free(b);
  /* Bytes: wide rows (long column names) stop at STORE_INV_DEVICE_INDEX_BYTES_MAX. */
  size_t cap = 4u * 1024 * 1024;
  char *w = malloc(cap);
  assert_non_null(w);
  size_t len = (size_t)snprintf(w, cap, "{\"columns\":[");
  for (int k = 0; k < 16; k++) len += (size_t)snprintf(w + len, cap - len, "%s\"c%02d_%s\"", k ? "," : "", k,
                                                       "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
  len += (size_t)snprintf(w + len, cap - len, "],\"rows\":[");
  for (int i = 0; i < 30000; i++) {
    len += (size_t)snprintf(w + len, cap - len, "%s[\"%d\"", i ? "," : "", i);
    for (int k = 1; k < 16; k++) len += (size_t)snprintf(w + len, cap - len, ",\"\"");
    len += (size_t)snprintf(w + len, cap - len, "]");
  }
  snprintf(w + len, cap - len, "]}");
  put(fx->s, "wide", "wide_table", w);
  free(w);
  int64_t bytes = raw_int(fx, "SELECT bytes FROM inv_devs WHERE device = 'wide'");
  assert_true(bytes <= (int64_t)STORE_INV_DEVICE_INDEX_BYTES_MAX);
  assert_true(bytes > (int64_t)STORE_INV_DEVICE_INDEX_BYTES_MAX - (int64_t)STORE_INV_ROW_MAX);
  assert_int_equal(raw_int(fx, "SELECT sum(length(CAST(row AS BLOB))) FROM inv_rows WHERE tbl = 'wide_table'"), bytes);
  assert_true(raw_int(fx, "SELECT count(*) FROM inv_rows WHERE tbl = 'wide_table'") < 30000);
  assert_refs_consistent(fx);
}

/* A page that runs out of work ends with the devices it has looked at, maybe none; the pages
 * joined are the find in one page, merged from few lists or scanned device by device. */
static void test_work_budget_pages(void **state) {
  fx_t *fx = *state;
  char dev[16], *t;
  for (int d = 0; d < 60; d++) {
    snprintf(dev, sizeof dev, "dev-%02d", d);
    if (d % 3 == 0) {
      t = padded_table("zlib", dev, 30); /* none matches "lib0" */
    } else {
      size_t cap = 4096, len;
      t = malloc(cap);
      assert_non_null(t);
      len = (size_t)snprintf(t, cap, "{\"columns\":[\"name\",\"version\"],\"rows\":[");
      for (int i = 0; i < 30; i++)
        len += (size_t)snprintf(t + len, cap - len, "%s[\"lib%02d\",\"%d\"]", i ? "," : "", i, i % 5 == 0 ? d : 1);
      snprintf(t + len, cap - len, "]}");
    }
    put(fx->s, dev, "deb_packages", t);
    free(t);
  }
  /* Few lists (a round of them is the least a page does) and many (device by device). */
  static const char *const finds[] = {"name~lib0", "name=lib05", "version~1", "name~lib", "name~zlib"};
  for (size_t f = 0; f < sizeof finds / sizeof finds[0]; f++) {
    seen_t one, paged;
    int pages = 0;
    store_inv_find_set_work(fx->s, 0);
    assert_int_equal(find_all(fx->s, "deb_packages", finds[f], 100000, &one, &pages), 0);
    assert_int_equal(pages, 1);
    assert_true(one.devices > 0);
    store_inv_find_set_work(fx->s, 40);
    assert_int_equal(find_all(fx->s, "deb_packages", finds[f], 100000, &paged, &pages), 0);
    if (f >= 3) assert_true(pages > 10);
    assert_string_equal(paged.out, one.out);
    assert_int_equal(find_all(fx->s, "deb_packages", finds[f], 7, &paged, &pages), 0);
    assert_string_equal(paged.out, one.out);
  }
  /* A page out of work with no device: more, and a cursor past what it looked at. */
  store_inv_find_set_work(fx->s, 1);
  store_inv_cond_t cond = {.col = "name", .value = "lib07", .len = 5};
  store_inv_cursor_t cur = {0, 0};
  seen_t c;
  memset(&c, 0, sizeof c);
  bool more = false;
  int empty = 0;
  for (int i = 0; i < 200; i++) {
    store_inv_cursor_t was = cur;
    assert_int_equal(store_inv_find(fx->s, "deb_packages", &cond, 1, &cur, 100, 1 << 20, seen_cb, &c, &more), 0);
    if (!more) break;
    assert_true(cur.dev > was.dev || (cur.dev == was.dev && cur.row > was.row));
    if (c.calls == 0) empty++;
  }
  assert_false(more);
  assert_int_equal(c.devices, 40);
  store_inv_find_set_work(fx->s, 0);
  (void)empty;
}

static int host_cb(void *ctx, const char *device, const char *hostname, size_t n, const int64_t *ids,
                   const char *const *rows, const size_t *lens) {
  (void)n;
  (void)ids;
  (void)rows;
  (void)lens;
  snprintf(ctx, 128, "%s=%s", device, hostname);
  return 0;
}

static void test_hostname_from_devices(void **state) {
  fx_t *fx = *state;
  store_device_t d = {.id = "dev-1", .hostname = "laptop-7", .enrolled_ms = 1};
  assert_int_equal(store_device_add(fx->s, &d), 0);
  put(fx->s, "dev-1", "deb_packages", PKG1);
  put(fx->s, "dev-9", "deb_packages", PKG1B); /* no device row: no hostname */
  store_inv_cond_t cond = {.col = "name", .value = "bash", .len = 4};
  store_inv_cursor_t cur = {0, 0};
  char got[128] = "";
  bool more = false;
  assert_int_equal(store_inv_find(fx->s, "deb_packages", &cond, 1, &cur, 1, 100000, host_cb, got, &more), 0);
  assert_string_equal(got, "dev-1=laptop-7");
  assert_true(more);
  assert_int_equal(store_inv_find(fx->s, "deb_packages", &cond, 1, &cur, 1, 100000, host_cb, got, &more), 0);
  assert_string_equal(got, "dev-9=");
  assert_false(more);
}

int main(void) {
  tt_log_set_level(TT_LOG_OFF);
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(test_find_after_puts, setup, teardown),
    cmocka_unit_test_setup_teardown(test_changed_table_updates_index, setup, teardown),
    cmocka_unit_test_setup_teardown(test_removed_table_removes_postings, setup, teardown),
    cmocka_unit_test_setup_teardown(test_two_devices_share_rows, setup, teardown),
    cmocka_unit_test_setup_teardown(test_devices_share_a_base, setup, teardown),
    cmocka_unit_test_setup_teardown(test_pages_split_and_join, setup, teardown),
    cmocka_unit_test_setup_teardown(test_escapes_are_one_text, setup, teardown),
    cmocka_unit_test_setup_teardown(test_hostile_bodies_index_nothing, setup, teardown),
    cmocka_unit_test_setup_teardown(test_bad_queries_refused, setup, teardown),
    cmocka_unit_test_setup_teardown(test_damaged_index_is_an_error, setup, teardown),
    cmocka_unit_test_setup_teardown(test_rollback_forgets_rows, setup, teardown),
    cmocka_unit_test_setup_teardown(test_migration_indexes_stored_tables, setup, teardown),
    cmocka_unit_test_setup_teardown(test_first_index_layout_is_rebuilt, setup, teardown),
    cmocka_unit_test_setup_teardown(test_hostname_from_devices, setup, teardown),
    cmocka_unit_test(test_table_check),
    cmocka_unit_test_setup_teardown(test_rows_nobody_holds_are_deleted, setup, teardown),
    cmocka_unit_test_setup_teardown(test_repair_drops_counts, setup, teardown),
    cmocka_unit_test_setup_teardown(test_device_index_budget, setup, teardown),
    cmocka_unit_test_setup_teardown(test_work_budget_pages, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
