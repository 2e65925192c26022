/* broker/store/assets.c and facts.c: facts follow each inventory put; an import matches rows
 * to devices by the chosen key, reports what changed, conflicts and rows with no device, is
 * one transaction (a dry run and a refused file write nothing) and idempotent; a record joins
 * a device that reports its key later; export pages every record then every device with none;
 * --where filters in the store. */
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

#include <jansson.h>
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
  snprintf(fx->base, sizeof fx->base, "%s/test_store_assets.XXXXXX", tmp);
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

static int64_t raw_int(const fx_t *fx, const char *sql) {
  sqlite3 *db = NULL;
  sqlite3_stmt *st = NULL;
  assert_int_equal(sqlite3_open_v2(fx->db, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
  assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
  assert_int_equal(sqlite3_step(st), SQLITE_ROW);
  int64_t v = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  sqlite3_close(db);
  return v;
}

static void raw_exec(const fx_t *fx, const char *sql) {
  sqlite3 *db = NULL;
  assert_int_equal(sqlite3_open_v2(fx->db, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
  assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
  sqlite3_close(db);
}

/* ---- a fleet: devices seen, inventory pushed --------------------------------------------- */

static void device(fx_t *fx, const char *id, const char *hostname) {
  assert_int_equal(store_device_seen(fx->s, id, hostname, "127.0.0.1", "1.0", 1000), 0);
}

static store_inv_table_t tab(const char *name, const char *json) {
  store_inv_table_t t;
  memset(&t, 0, sizeof t);
  snprintf(t.name, sizeof t.name, "%s", name);
  t.body = (const uint8_t *)json;
  t.len = strlen(json);
  unsigned int n = 0;
  assert_int_equal(EVP_Digest(t.body, t.len, t.sha256, &n, EVP_sha256(), NULL), 1);
  return t;
}

/* system_info, os_version, mounts and interface_details as an agent would push them. */
static void push(fx_t *fx, const char *id, const char *serial, const char *mac) {
  char si[512], ifd[256];
  snprintf(si, sizeof si,
           "{\"columns\":[\"hostname\",\"cpu_brand\",\"physical_memory\",\"hardware_serial\"],"
           "\"rows\":[[\"%s\",\"Intel(R) Core(TM) i7\",\"16777216000\",\"%s\"]]}",
           id, serial);
  snprintf(ifd, sizeof ifd,
           "{\"columns\":[\"interface\",\"mac\"],\"rows\":[[\"eth0\",\"%s\"],[\"lo\",\"00:00:00:00:00:00\"]]}", mac);
  store_inv_table_t t[4] = {
      tab("system_info", si),
      tab("os_version", "{\"columns\":[\"name\",\"version\"],\"rows\":[[\"Debian GNU/Linux\",\"12 (bookworm)\"]]}"),
      tab("mounts", "{\"columns\":[\"device\",\"path\",\"type\",\"blocks_size\",\"blocks\"],\"rows\":["
                    "[\"/dev/sda1\",\"/\",\"ext4\",\"4096\",\"1000\"],[\"/dev/sda1\",\"/home\",\"ext4\",\"4096\",\"1000\"],"
                    "[\"/dev/sdb1\",\"/data\",\"xfs\",\"512\",\"10\"],[\"tmpfs\",\"/run\",\"tmpfs\",\"4096\",\"99\"],"
                    "[\"/dev/loop0\",\"/snap/x\",\"squashfs\",\"4096\",\"77\"]]}"),
      tab("interface_details", ifd),
  };
  int64_t v = 0;
  assert_int_equal(store_inv_put(fx->s, id, 1000, 2000, t, 4, &v), 0);
  assert_true(v > 0);
}

/* ---- rows -------------------------------------------------------------------------------- */

typedef struct {
  store_asset_row_t r[8];
  store_asset_kv_t kv[8][4];
  size_t n;
} rows_t;

/* A row with the usual columns; NULL leaves a column out of the file. */
static store_asset_row_t *row(rows_t *rs, const char *tag, const char *name, const char *serial, const char *owner,
                              const char *dept) {
  store_asset_row_t *r = &rs->r[rs->n];
  memset(r, 0, sizeof *r);
  r->line = (uint32_t)rs->n + 2;
  r->f[STORE_AF_TAG] = tag;
  r->f[STORE_AF_NAME] = name;
  r->f[STORE_AF_SERIAL] = serial;
  r->f[STORE_AF_OWNER] = owner;
  r->f[STORE_AF_DEPARTMENT] = dept;
  r->f[STORE_AF_MODEL] = "ThinkPad T14";
  r->custom = rs->kv[rs->n];
  rs->n++;
  return r;
}

static void custom(store_asset_row_t *r, const char *name, const char *value) {
  store_asset_kv_t *kv = (store_asset_kv_t *)r->custom;
  kv[r->ncustom++] = (store_asset_kv_t){name, value};
}

static json_t *import(fx_t *fx, const rows_t *rs, store_match_t m, bool dry, store_asset_counts_t *c) {
  store_asset_import_t opt = {.match = m, .dry_run = dry, .now_ms = 5000, .by = "boss"};
  char *rep = NULL, why[256];
  assert_int_equal(store_asset_import(fx->s, &opt, rs->r, rs->n, c, &rep, why, sizeof why), 0);
  json_t *j = json_loads(rep, 0, NULL);
  free(rep);
  assert_non_null(j);
  return j;
}

static int import_refused(fx_t *fx, const rows_t *rs, store_match_t m, char *why, size_t cap) {
  store_asset_import_t opt = {.match = m, .now_ms = 5000, .by = "boss"};
  store_asset_counts_t c;
  char *rep = NULL;
  int rc = store_asset_import(fx->s, &opt, rs->r, rs->n, &c, &rep, why, cap);
  assert_null(rep);
  return rc;
}

/* ---- export and where, collected -------------------------------------------------------- */

typedef struct {
  char line[64][160]; /* "tag|device" */
  size_t n;
  size_t stop_at;     /* refuse the line at this count (a full page), 0 never */
} lines_t;

static int line_cb(void *ctx, const store_asset_line_t *l) {
  lines_t *x = ctx;
  if (x->stop_at && x->n == x->stop_at) return 1;
  assert_true(x->n < 64);
  snprintf(x->line[x->n++], sizeof x->line[0], "%s|%s", l->f[STORE_AF_TAG] ? l->f[STORE_AF_TAG] : "",
           l->dev ? l->dev->device : "");
  return 0;
}

static void export_all(fx_t *fx, uint32_t limit, lines_t *out) {
  char after[STORE_ASSET_CURSOR_MAX] = "", next[STORE_ASSET_CURSOR_MAX];
  memset(out, 0, sizeof *out);
  for (int pages = 0; pages < 100; pages++) {
    assert_int_equal(store_asset_export(fx->s, after, limit, line_cb, out, next, sizeof next), 0);
    if (!next[0]) return;
    assert_string_not_equal(next, after);
    snprintf(after, sizeof after, "%s", next);
  }
  fail_msg("the export never ended");
}

typedef struct {
  char id[16][STORE_NAME_MAX];
  size_t n;
} ids_t;

static int id_cb(void *ctx, const store_device_t *d) {
  ids_t *x = ctx;
  if (x->n >= 16) return 1;
  snprintf(x->id[x->n++], STORE_NAME_MAX, "%s", d->id);
  return 0;
}

static ids_t where(fx_t *fx, const char *a, const char *b) {
  char s1[128], s2[128];
  store_asset_cond_t c[2];
  size_t n = 0;
  snprintf(s1, sizeof s1, "%s", a);
  assert_int_equal(store_asset_cond_parse(s1, &c[n++]), 0);
  if (b) {
    snprintf(s2, sizeof s2, "%s", b);
    assert_int_equal(store_asset_cond_parse(s2, &c[n++]), 0);
  }
  ids_t ids;
  memset(&ids, 0, sizeof ids);
  assert_int_equal(store_device_page_where(fx->s, "", 0, c, n, id_cb, &ids), 0);
  return ids;
}

/* ---- tests ------------------------------------------------------------------------------- */

static void test_facts_follow_inventory(void **state) {
  fx_t *fx = *state;
  device(fx, "dev-a", "a.example");
  push(fx, "dev-a", "PF-1234", "52:54:00:AA:BB:01");
  store_device_facts_t f;
  assert_int_equal(store_device_facts(fx->s, "dev-a", &f), 0);
  assert_string_equal(f.hostname, "a.example");
  assert_string_equal(f.serial, "PF-1234");
  assert_string_equal(f.os, "Debian GNU/Linux 12 (bookworm)");
  assert_string_equal(f.cpu, "Intel(R) Core(TM) i7");
  assert_int_equal(f.memory, 16777216000);
  /* sda1 once (mounted twice), sdb1; not tmpfs, not the snap's squashfs */
  assert_int_equal(f.disk, 4096 * 1000 + 512 * 10);
  assert_int_equal(raw_int(fx, "SELECT count(*) FROM inv_macs WHERE device = 'dev-a' AND mac = '52:54:00:aa:bb:01'"), 1);
  assert_int_equal(raw_int(fx, "SELECT count(*) FROM inv_macs"), 1); /* lo's zeros are no MAC */
  /* A firmware placeholder is no serial: two machines sharing it match nothing. */
  device(fx, "dev-b", "b.example");
  push(fx, "dev-b", "To Be Filled By O.E.M.", "52:54:00:aa:bb:02");
  assert_int_equal(raw_int(fx, "SELECT count(*) FROM inv_facts WHERE device = 'dev-b' AND serial_key = ''"), 1);
  assert_int_equal(store_device_facts(fx->s, "nope", &f), TT_ENOTFOUND);
}

static void test_backfill_at_open(void **state) {
  fx_t *fx = *state;
  device(fx, "dev-a", "a.example");
  push(fx, "dev-a", "PF-1234", "52:54:00:aa:bb:01");
  /* As a store whose inventory predates the facts: marked to be worked out at the next open. */
  raw_exec(fx, "UPDATE inv_facts SET version = 0, serial = '', serial_key = '', os = ''");
  store_close(fx->s);
  char err[256];
  assert_int_equal(store_open(&fx->s, fx->dir, err, sizeof err), 0);
  store_device_facts_t f;
  assert_int_equal(store_device_facts(fx->s, "dev-a", &f), 0);
  assert_string_equal(f.serial, "PF-1234");
  assert_int_equal(raw_int(fx, "SELECT count(*) FROM inv_facts WHERE version = 0"), 0);
}

/* A schema 7 store with inventory: the migration marks its devices and the open works out
 * their facts, so records join devices that pushed before the asset tables existed. */
static void test_v8_migrates_v7_store(void **state) {
  fx_t *fx = *state;
  device(fx, "dev-a", "a.example");
  push(fx, "dev-a", "PF-1234", "52:54:00:aa:bb:01");
  store_close(fx->s);
  fx->s = NULL;
  raw_exec(fx, STORE_UNDO_TO_10 "DROP TABLE inv_rows; DROP TABLE inv_devs; DROP TABLE inv_bases; DROP TABLE inv_base_rows;"
               " DROP TABLE inv_cur; DROP TABLE inv_plus; DROP TABLE inv_find_todo;"
               " DROP TABLE asset_custom; DROP TABLE asset_records; DROP TABLE inv_macs; DROP TABLE inv_facts;"
               " DROP INDEX devices_hostname_key; PRAGMA user_version = 7;");
  char err[256];
  assert_int_equal(store_open(&fx->s, fx->dir, err, sizeof err), 0);
  assert_int_equal(store_schema_version(fx->s), STORE_SCHEMA_VERSION);
  store_device_facts_t f;
  assert_int_equal(store_device_facts(fx->s, "dev-a", &f), 0);
  assert_string_equal(f.serial, "PF-1234");
  assert_int_equal(raw_int(fx, "SELECT count(*) FROM inv_macs"), 1);
  assert_int_equal(raw_int(fx, "PRAGMA user_version"), STORE_SCHEMA_VERSION);
}

static void test_import_dry_run_then_real_then_again(void **state) {
  fx_t *fx = *state;
  device(fx, "dev-a", "a.example");
  device(fx, "dev-b", "twin.example");
  device(fx, "dev-c", "twin.example"); /* two devices, one hostname */
  device(fx, "dev-d", "d.example");    /* no record */
  rows_t rs = {0};
  store_asset_row_t *r = row(&rs, "LT-001", "A.example", "S1", "sam", "Finance");
  custom(r, "Cost Center", "4410");
  row(&rs, "LT-002", "ghost.example", "S2", "kim", "Finance"); /* no device yet */
  row(&rs, "LT-003", "twin.example", "S3", "lee", "Sales");    /* two devices */
  store_asset_counts_t c;
  json_t *j = import(fx, &rs, STORE_MATCH_HOSTNAME, true, &c);
  assert_int_equal(c.created, 3);
  assert_int_equal(c.matched, 1);
  assert_int_equal(c.unmatched, 1);
  assert_int_equal(c.row_conflicts, 1);
  assert_int_equal(c.devices_without_record, 3); /* b, c (the conflict joins neither) and d */
  json_t *ch = json_array_get(json_object_get(j, "changes"), 0);
  assert_string_equal(json_string_value(json_object_get(ch, "tag")), "LT-001");
  assert_string_equal(json_string_value(json_object_get(ch, "device")), "dev-a");
  assert_string_equal(json_string_value(json_array_get(json_object_get(json_object_get(ch, "fields"), "Cost Center"), 1)),
                      "4410");
  json_t *rc = json_array_get(json_object_get(j, "conflicting_rows"), 0);
  assert_int_equal(json_integer_value(json_object_get(rc, "line")), 4);
  assert_int_equal(json_array_size(json_object_get(rc, "devices")), 2);
  assert_string_equal(json_string_value(json_object_get(json_array_get(json_object_get(j, "unmatched"), 0), "key")),
                      "hostname=ghost.example");
  json_decref(j);
  assert_int_equal(raw_int(fx, "SELECT count(*) FROM asset_records"), 0); /* the dry run wrote nothing */
  assert_int_equal(raw_int(fx, "SELECT count(*) FROM asset_custom"), 0);

  j = import(fx, &rs, STORE_MATCH_HOSTNAME, false, &c);
  json_decref(j);
  assert_int_equal(c.created, 3);
  assert_int_equal(raw_int(fx, "SELECT count(*) FROM asset_records"), 3);
  assert_int_equal(raw_int(fx, "SELECT count(*) FROM asset_custom WHERE name = 'cost center' AND value = '4410'"), 1);

  /* The same file again: nothing changes, and the report says so. */
  j = import(fx, &rs, STORE_MATCH_HOSTNAME, false, &c);
  assert_int_equal(c.created + c.changed, 0);
  assert_int_equal(c.unchanged, 3);
  assert_int_equal(json_array_size(json_object_get(j, "changes")), 0);
  json_decref(j);

  /* One field changed: that field alone; an empty custom cell removes the field. */
  rs.r[0].f[STORE_AF_DEPARTMENT] = "Legal";
  ((store_asset_kv_t *)rs.r[0].custom)[0].value = "";
  j = import(fx, &rs, STORE_MATCH_HOSTNAME, false, &c);
  assert_int_equal(c.changed, 1);
  json_t *fields = json_object_get(json_array_get(json_object_get(j, "changes"), 0), "fields");
  assert_int_equal(json_object_size(fields), 2);
  assert_string_equal(json_string_value(json_array_get(json_object_get(fields, "Department"), 0)), "Finance");
  assert_string_equal(json_string_value(json_array_get(json_object_get(fields, "Department"), 1)), "Legal");
  json_decref(j);
  assert_int_equal(raw_int(fx, "SELECT count(*) FROM asset_custom"), 0);
}

static void test_refused_files_write_nothing(void **state) {
  fx_t *fx = *state;
  char why[256];
  rows_t rs = {0};
  row(&rs, "LT-001", "a", "S1", "sam", "x");
  row(&rs, "lt-001", "b", "S2", "kim", "y"); /* the same tag, another case */
  assert_int_equal(import_refused(fx, &rs, STORE_MATCH_SERIAL, why, sizeof why), TT_EINVAL);
  assert_string_equal(why, "lines 2 and 3: asset tag 'lt-001' given twice");

  memset(&rs, 0, sizeof rs);
  row(&rs, "LT-001", "a", "S1", "sam", "x");
  row(&rs, "LT-002", "a", "S1", "sam", "x")->f[STORE_AF_WARRANTY] = "36 months";
  assert_int_equal(import_refused(fx, &rs, STORE_MATCH_SERIAL, why, sizeof why), TT_EINVAL);
  assert_non_null(strstr(why, "line 3: Warranty Months"));

  memset(&rs, 0, sizeof rs);
  row(&rs, "LT-001", "a", "S1", "\xff\xfe", "x"); /* not UTF-8 (the broker checks too) */
  assert_int_equal(import_refused(fx, &rs, STORE_MATCH_SERIAL, why, sizeof why), TT_EINVAL);
  assert_non_null(strstr(why, "line 2: Checked Out To"));

  memset(&rs, 0, sizeof rs);
  row(&rs, "LT-001", "a", NULL, "sam", "x");
  assert_int_equal(import_refused(fx, &rs, STORE_MATCH_SERIAL, why, sizeof why), TT_EINVAL);
  assert_string_equal(why, "--match serial needs a 'Serial' column");
  assert_int_equal(import_refused(fx, &rs, STORE_MATCH_MAC, why, sizeof why), TT_EINVAL);
  custom(&rs.r[0], "MAC Address", "not-a-mac");
  assert_int_equal(import_refused(fx, &rs, STORE_MATCH_MAC, why, sizeof why), TT_EINVAL);
  assert_non_null(strstr(why, "is not a MAC address"));

  memset(&rs, 0, sizeof rs);
  row(&rs, "", "a", "S1", "sam", "x"); /* fields but no tag */
  assert_int_equal(import_refused(fx, &rs, STORE_MATCH_SERIAL, why, sizeof why), TT_EINVAL);
  assert_string_equal(why, "line 2: no Asset Tag");
  assert_int_equal(raw_int(fx, "SELECT count(*) FROM asset_records"), 0);

  /* A row with nothing in it (an export's line for a device with no record) is skipped. */
  memset(&rs, 0, sizeof rs);
  store_asset_row_t *r = row(&rs, "", "", "", "", "");
  r->f[STORE_AF_MODEL] = "";
  store_asset_counts_t c;
  json_decref(import(fx, &rs, STORE_MATCH_SERIAL, false, &c));
  assert_int_equal(c.skipped, 1);
  assert_int_equal(raw_int(fx, "SELECT count(*) FROM asset_records"), 0);
}

static void test_record_joins_device_that_comes_later(void **state) {
  fx_t *fx = *state;
  rows_t rs = {0};
  row(&rs, "LT-009", "later", "PF-9999", "sam", "Finance");
  store_asset_row_t *r = row(&rs, "LT-010", "m", "", "kim", "Ops");
  custom(r, "MAC Address", "52-54-00-AA-BB-10");
  store_asset_counts_t c;
  json_decref(import(fx, &rs, STORE_MATCH_SERIAL, false, &c));
  assert_int_equal(c.unmatched, 2);
  lines_t l;
  export_all(fx, 10, &l);
  assert_int_equal(l.n, 2);
  assert_string_equal(l.line[0], "LT-009|");
  /* The device enrolls and reports that serial: the record is joined from now on. */
  device(fx, "dev-late", "late.example");
  push(fx, "dev-late", "pf-9999", "52:54:00:aa:bb:10");
  export_all(fx, 10, &l);
  assert_int_equal(l.n, 2);
  assert_string_equal(l.line[0], "LT-009|dev-late");
  assert_string_equal(l.line[1], "LT-010|");
  /* The same by MAC, when imported with that key. */
  rs.n = 1;
  rs.r[0] = rs.r[1];
  json_decref(import(fx, &rs, STORE_MATCH_MAC, false, &c));
  assert_int_equal(c.matched, 1);
  assert_int_equal(c.changed, 1); /* its key changed: serial to mac */
  assert_int_equal(c.device_conflicts, 1); /* LT-009 and LT-010 both find dev-late */
  export_all(fx, 10, &l);
  assert_string_equal(l.line[1], "LT-010|dev-late");
}

static void test_export_pages_records_then_devices(void **state) {
  fx_t *fx = *state;
  for (int i = 0; i < 7; i++) {
    char id[16], host[32];
    snprintf(id, sizeof id, "dev-%d", i);
    snprintf(host, sizeof host, "h%d.example", i);
    device(fx, id, host);
  }
  rows_t rs = {0};
  row(&rs, "T-3", "h3.example", "", "a", "x");
  row(&rs, "T-1", "h1.example", "", "b", "x");
  row(&rs, "T-9", "nowhere", "", "c", "x");
  store_asset_counts_t c;
  json_decref(import(fx, &rs, STORE_MATCH_HOSTNAME, false, &c));
  assert_int_equal(c.devices_without_record, 5);
  for (uint32_t limit = 1; limit <= 9; limit += 2) {
    lines_t l;
    export_all(fx, limit, &l);
    assert_int_equal(l.n, 3 + 5);
    assert_string_equal(l.line[0], "T-1|dev-1");
    assert_string_equal(l.line[1], "T-3|dev-3");
    assert_string_equal(l.line[2], "T-9|");
    assert_string_equal(l.line[3], "|dev-0");
    assert_string_equal(l.line[7], "|dev-6");
  }
  /* A page the caller stops early resumes at the line it refused. */
  lines_t l = {0};
  l.stop_at = 2;
  char next[STORE_ASSET_CURSOR_MAX], again[STORE_ASSET_CURSOR_MAX];
  assert_int_equal(store_asset_export(fx->s, "", 5, line_cb, &l, next, sizeof next), 0);
  assert_string_equal(next, "rT-3");
  l.stop_at = 0;
  assert_int_equal(store_asset_export(fx->s, next, 1, line_cb, &l, again, sizeof again), 0);
  assert_string_equal(l.line[2], "T-9|");
  assert_string_equal(again, "rT-9");
  /* Cursors that are not ours. */
  assert_int_equal(store_asset_export(fx->s, "x1", 5, line_cb, &l, again, sizeof again), TT_EINVAL);
  assert_int_equal(store_asset_export(fx->s, "r\xff", 5, line_cb, &l, again, sizeof again), TT_EINVAL);
  char names[4][STORE_ASSET_COLUMN_MAX + 1];
  size_t n = 9;
  assert_int_equal(store_asset_custom_names(fx->s, names, 4, &n), 0);
  assert_int_equal(n, 0);
}

static void test_where_filters_in_the_store(void **state) {
  fx_t *fx = *state;
  device(fx, "dev-1", "one.example");
  device(fx, "dev-2", "two.example");
  device(fx, "dev-3", "three.example");
  device(fx, "dev-4", "twin.example");
  device(fx, "dev-5", "twin.example");
  rows_t rs = {0};
  store_asset_row_t *r = row(&rs, "A1", "one.example", "", "sam", "Finance");
  custom(r, "Cost Center", "4410");
  row(&rs, "A2", "two.example", "", "sam", "Sales");
  row(&rs, "A3", "three.example", "", "kim", "Finance");
  row(&rs, "A4", "twin.example", "", "sam", "Finance"); /* finds two devices: joins neither */
  row(&rs, "A5", "gone.example", "", "sam", "Finance"); /* no device */
  store_asset_counts_t c;
  json_decref(import(fx, &rs, STORE_MATCH_HOSTNAME, false, &c));
  ids_t ids = where(fx, "owner=sam", "department=finance");
  assert_int_equal(ids.n, 1);
  assert_string_equal(ids.id[0], "dev-1");
  ids = where(fx, "Checked Out To=SAM", NULL);
  assert_int_equal(ids.n, 2);
  assert_string_equal(ids.id[1], "dev-2");
  ids = where(fx, "department=Finance", NULL);
  assert_int_equal(ids.n, 2);
  ids = where(fx, "cost center=4410", NULL);
  assert_int_equal(ids.n, 1);
  assert_string_equal(ids.id[0], "dev-1");
  ids = where(fx, "asset_tag=a3", NULL);
  assert_int_equal(ids.n, 1);
  assert_string_equal(ids.id[0], "dev-3");
  ids = where(fx, "owner=nobody", NULL);
  assert_int_equal(ids.n, 0);
  store_asset_cond_t cond;
  char bad[] = "=x";
  assert_int_equal(store_asset_cond_parse(bad, &cond), TT_EINVAL);
  char noeq[] = "owner";
  assert_int_equal(store_asset_cond_parse(noeq, &cond), TT_EINVAL);
  /* Paging: after a device, with a limit. */
  char s1[] = "owner=sam";
  assert_int_equal(store_asset_cond_parse(s1, &cond), 0);
  memset(&ids, 0, sizeof ids);
  assert_int_equal(store_device_page_where(fx->s, "dev-1", 5, &cond, 1, id_cb, &ids), 0);
  assert_int_equal(ids.n, 1);
  assert_string_equal(ids.id[0], "dev-2");
}

static void test_text_checks(void **state) {
  (void)state;
  assert_true(store_asset_text_ok("Zürich, 2nd floor", 100, false));
  assert_true(store_asset_text_ok("line one\nline two", 100, true));
  assert_false(store_asset_text_ok("line one\nline two", 100, false));
  assert_false(store_asset_text_ok("bell\a", 100, true));
  assert_false(store_asset_text_ok("\xc3\x28", 100, false));
  assert_false(store_asset_text_ok("abcdef", 5, false));
  store_match_t m;
  assert_int_equal(store_match_parse("asset_tag", &m), 0);
  assert_int_equal(m, STORE_MATCH_TAG);
  assert_int_equal(store_match_parse("Serial", &m), TT_EINVAL);
}

int main(void) {
  tt_log_set_level(TT_LOG_OFF);
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(test_facts_follow_inventory, setup, teardown),
    cmocka_unit_test_setup_teardown(test_backfill_at_open, setup, teardown),
    cmocka_unit_test_setup_teardown(test_v8_migrates_v7_store, setup, teardown),
    cmocka_unit_test_setup_teardown(test_import_dry_run_then_real_then_again, setup, teardown),
    cmocka_unit_test_setup_teardown(test_refused_files_write_nothing, setup, teardown),
    cmocka_unit_test_setup_teardown(test_record_joins_device_that_comes_later, setup, teardown),
    cmocka_unit_test_setup_teardown(test_export_pages_records_then_devices, setup, teardown),
    cmocka_unit_test_setup_teardown(test_where_filters_in_the_store, setup, teardown),
    cmocka_unit_test(test_text_checks),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
