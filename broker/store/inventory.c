/* Device inventory: versions of osquery-named tables, each version holding only the tables
 * that changed, bodies zstd-compressed; any table read back as it was at any version. */
#include "internal.h"

/* Migration 6 spells these limits as literals (SQL is never formatted): keep them in step. */
_Static_assert(STORE_INV_TABLE_MAX == 4194304u, "inv_tables.size CHECK says 4194304");
_Static_assert(STORE_INV_NAME_MAX == 64, "inv_tables.name CHECK says 1..63");
_Static_assert(STORE_INV_CHANGED_MAX == 4160, "inv_versions.changed CHECK says 1..4160");
_Static_assert(TT_NAME_MAX == 64, "inv device CHECKs say 1..64 bytes");

/* Level 3, zstd's default. This machine's deb_packages as canonical JSON (127 kB) shrank
 * 6.6x at ~800 MB/s; level 19 reached 7.8x at under 2 MB/s, time the store thread lacks. */
#define INV_ZSTD_LEVEL 3
/* "Latest" as a version bound: every id is at or below it. */
#define INV_LATEST INT64_MAX

/* Columns of a table row as the readers see it; body last, so that the columns before it
 * are read without the body's overflow pages. LEFT JOIN: a row whose version row is missing
 * is still the newest of its name (received time 0), never silently replaced by an older. */
#define INV_ROW "t.name, t.version, coalesce(v.received_ms, 0), t.sha256, t.size, t.body" \
                " FROM inv_tables t LEFT JOIN inv_versions v ON v.id = t.version"

/* Where the device's history starts (retention, schema 20): versions below it are out of
 * history, and a read at one of them finds nothing. */
#define INV_FLOOR "coalesce((SELECT f.version FROM inv_floor f WHERE f.device = ?1), 0)"

static const store_sql_t k_sql[] = {
  {ST_INV_CURRENT, "SELECT sha256 FROM inv_tables WHERE device = ?1 AND name = ?2"
      " ORDER BY version DESC LIMIT 1"},
  /* The next name after ?2 and its newest row: one seek into UNIQUE(device, name, version
   * DESC) per name, so a walk costs the device's names, not its history. */
  {ST_INV_NEXT_HASH, "SELECT name, sha256 FROM inv_tables WHERE device = ?1 AND name > ?2"
      " ORDER BY name, version DESC LIMIT 1"},
  {ST_INV_VERSION_INSERT, "INSERT INTO inv_versions(device, collected_ms, received_ms, changed)"
      " VALUES(?1, ?2, ?3, ?4)"},
  {ST_INV_TABLE_INSERT, "INSERT INTO inv_tables(device, name, version, sha256, size, body)"
      " VALUES(?1, ?2, ?3, ?4, ?5, ?6)"},
  {ST_INV_GET, "SELECT " INV_ROW " WHERE t.device = ?1 AND t.name = ?2 AND t.version <= ?3"
      " AND ?3 >= " INV_FLOOR " ORDER BY t.version DESC LIMIT 1"},
  /* As NEXT_HASH, at a version: rows newer than ?3 are stepped over in the index. */
  {ST_INV_NEXT, "SELECT " INV_ROW " WHERE t.device = ?1 AND t.name > ?2 AND t.version <= ?3"
      " AND ?3 >= " INV_FLOOR " ORDER BY t.name, t.version DESC LIMIT 1"},
  {ST_INV_HISTORY, "SELECT id, collected_ms, received_ms, changed FROM inv_versions"
      " WHERE device = ?1 AND id < ?2 AND id >= " INV_FLOOR " ORDER BY id DESC LIMIT ?3"},
  {ST_INV_AT, "SELECT id FROM inv_versions WHERE device = ?1 AND received_ms <= ?2"
      " AND id >= " INV_FLOOR " ORDER BY received_ms DESC, id DESC LIMIT 1"},
  /* Compressed bodies, plus an estimate of each row's overhead: its text and hash, the
   * device and name again in the index entry, and 24 (a table row) or 40 (a version row,
   * two index entries) bytes of integers and record headers. length() of a blob reads its
   * size from the record header, not its pages. */
  {ST_INV_BYTES, "SELECT (SELECT coalesce(sum(length(body)), 0) + coalesce(sum("
      "    2 * (length(CAST(device AS BLOB)) + length(name)) + coalesce(length(sha256), 0) + 24), 0)"
      "    FROM inv_tables WHERE device = ?1)"
      " + (SELECT coalesce(sum(length(changed) + 3 * length(CAST(device AS BLOB)) + 40), 0)"
      "    FROM inv_versions WHERE device = ?1)"},
  /* Retention's walk of devices, one seek each into inv_versions_device. */
  {ST_INV_PRUNE_DEVICE, "SELECT device FROM inv_versions WHERE device > ?1 ORDER BY device LIMIT 1"},
  {ST_INV_FLOOR_GET, "SELECT version FROM inv_floor WHERE device = ?1"},
  /* The first version received since the cutoff, or the newest: the current one always stays. */
  {ST_INV_FLOOR_NEW, "SELECT coalesce((SELECT min(id) FROM inv_versions WHERE device = ?1 AND received_ms >= ?2),"
      " (SELECT max(id) FROM inv_versions WHERE device = ?1), 0)"},
  {ST_INV_FLOOR_COUNT, "SELECT count(*) FROM inv_versions WHERE device = ?1 AND id >= ?2 AND id < ?3"},
  {ST_INV_FLOOR_SET, "INSERT INTO inv_floor(device, version) VALUES(?1, ?2)"
      " ON CONFLICT(device) DO UPDATE SET version = max(version, ?2)"},
  /* A row below the floor that a newer row of its name at or below the floor replaced: no
   * read from the floor on can reach it. */
  {ST_INV_PRUNE_SUPERSEDED, "DELETE FROM inv_tables WHERE id IN (SELECT t.id FROM inv_tables t"
      " WHERE t.device = ?1 AND t.version < ?2 AND EXISTS (SELECT 1 FROM inv_tables u WHERE u.device = ?1"
      " AND u.name = t.name AND u.version > t.version AND u.version <= ?2) LIMIT ?3)"},
  /* A removal below the floor with nothing older of its name left: the table is as absent
   * without it. */
  {ST_INV_PRUNE_MARKERS, "DELETE FROM inv_tables WHERE id IN (SELECT t.id FROM inv_tables t"
      " WHERE t.device = ?1 AND t.version < ?2 AND t.body IS NULL AND NOT EXISTS (SELECT 1 FROM inv_tables u"
      " WHERE u.device = ?1 AND u.name = t.name AND u.version < t.version) LIMIT ?3)"},
  /* A version below the floor with no row left. One that still holds a current row stays,
   * out of history: that row says when it was received. */
  {ST_INV_PRUNE_VERSIONS, "DELETE FROM inv_versions WHERE id IN (SELECT v.id FROM inv_versions v"
      " WHERE v.device = ?1 AND v.id < ?2 AND NOT EXISTS (SELECT 1 FROM inv_tables t WHERE t.device = ?1"
      " AND t.version = v.id) LIMIT ?3)"},
};

int store_prepare_inventory(broker_store_t *s) {
  int rc = store_prepare(s, k_sql, sizeof k_sql / sizeof k_sql[0]);
  return rc == 0 ? store_prepare_inventory_find(s) : rc;
}

void store_inventory_close(broker_store_t *s) {
  store_inv_find_close(s);
  ZSTD_freeCCtx(s->inv_cctx);
  ZSTD_freeDCtx(s->inv_dctx);
  s->inv_cctx = NULL;
  s->inv_dctx = NULL;
}

/* ---- checks ------------------------------------------------------------------------------ */

static bool inv_device_ok(const char *device) {
  if (device == NULL) return false;
  size_t len = strnlen(device, TT_NAME_MAX + 1);
  return len >= 1 && len <= TT_NAME_MAX;
}

/* osquery's table names: [a-z0-9_]{1,63}; len is the name's length without its NUL. */
static bool inv_name_ok(const char *name, size_t len) {
  if (len < 1 || len >= STORE_INV_NAME_MAX) return false;
  for (size_t i = 0; i < len; i++) {
    char c = name[i];
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) return false;
  }
  return true;
}

static bool inv_name_arg_ok(const char *name) {
  return name != NULL && inv_name_ok(name, strnlen(name, STORE_INV_NAME_MAX));
}

/* A name read back from the file: checked like a caller's before it is used as the next
 * seek's key, so a damaged one can neither overrun the array nor stall the walk. */
static bool inv_col_name(sqlite3_stmt *st, int col, char out[STORE_INV_NAME_MAX]) {
  const unsigned char *t = sqlite3_column_text(st, col);
  int n = sqlite3_column_bytes(st, col);
  if (t == NULL || n < 1 || n >= STORE_INV_NAME_MAX || !inv_name_ok((const char *)t, (size_t)n)) {
    out[0] = '\0';
    return false;
  }
  memcpy(out, t, (size_t)n);
  out[n] = '\0';
  return true;
}

static bool sha256_of(const uint8_t *p, size_t len, uint8_t out[32]) {
  unsigned int n = 0;
  return EVP_Digest(p, len, out, &n, EVP_sha256(), NULL) == 1 && n == 32;
}

/* Stored inventory that does not read back as written: logged once here, TT_EIO. */
static int inv_damaged(const char *device, const char *name, int64_t version, const char *why) {
  char qd[160], qn[160];
  tt_log_quote(qd, sizeof qd, device, strlen(device));
  tt_log_quote(qn, sizeof qn, name, strlen(name));
  TT_ERROR(MOD, "stored inventory damaged", "device=\"%s\" table=\"%s\" version=%lld why=\"%s\"", qd, qn,
           (long long)version, why);
  return TT_EIO;
}

/* ---- bodies ------------------------------------------------------------------------------ */

static int inv_deflate(broker_store_t *s, const uint8_t *body, size_t len, uint8_t **out, size_t *out_len) {
  *out = NULL;
  *out_len = 0;
  if (s->inv_cctx == NULL) {
    s->inv_cctx = ZSTD_createCCtx();
    if (s->inv_cctx == NULL) return TT_ENOMEM;
    /* The sha256 beside the body is checked on every read: zstd's checksum would add
     * nothing. The content size in the header is what lets a read refuse before it
     * allocates. */
    size_t r = ZSTD_CCtx_setParameter(s->inv_cctx, ZSTD_c_compressionLevel, INV_ZSTD_LEVEL);
    if (!ZSTD_isError(r)) r = ZSTD_CCtx_setParameter(s->inv_cctx, ZSTD_c_checksumFlag, 0);
    if (!ZSTD_isError(r)) r = ZSTD_CCtx_setParameter(s->inv_cctx, ZSTD_c_contentSizeFlag, 1);
    if (ZSTD_isError(r)) {
      TT_ERROR(MOD, "inventory compressor setup failed", "err=\"%s\"", ZSTD_getErrorName(r));
      ZSTD_freeCCtx(s->inv_cctx);
      s->inv_cctx = NULL;
      return TT_EZSTD;
    }
  }
  size_t cap = ZSTD_compressBound(len);
  uint8_t *buf = malloc(cap);
  if (buf == NULL) return TT_ENOMEM;
  size_t n = ZSTD_compress2(s->inv_cctx, buf, cap, body, len);
  if (ZSTD_isError(n)) {
    TT_ERROR(MOD, "inventory compress failed", "len=%zu err=\"%s\"", len, ZSTD_getErrorName(n));
    free(buf);
    return TT_EZSTD;
  }
  *out = buf;
  *out_len = n;
  return 0;
}

/* The blob is file contents: one whole frame whose header declares exactly the recorded
 * size (checked against STORE_INV_TABLE_MAX before anything is allocated), decompressing
 * to exactly that many bytes, which hash to the recorded sha256. */
static int inv_inflate(broker_store_t *s, const char *device, const char *name, int64_t version,
                       sqlite3_stmt *st, int col_sha, int col_size, int col_body, uint8_t **out,
                       size_t *out_len) {
  *out = NULL;
  *out_len = 0;
  const void *z = sqlite3_column_blob(st, col_body);
  int zn = sqlite3_column_bytes(st, col_body);
  const void *sha = sqlite3_column_blob(st, col_sha);
  int shan = sqlite3_column_bytes(st, col_sha);
  int64_t size = sqlite3_column_int64(st, col_size);
  if (z == NULL || zn <= 0) return inv_damaged(device, name, version, "empty body");
  if (sha == NULL || shan != 32) return inv_damaged(device, name, version, "bad sha256");
  if (size < 1 || (uint64_t)size > STORE_INV_TABLE_MAX)
    return inv_damaged(device, name, version, "size out of range");
  unsigned long long fcs = ZSTD_getFrameContentSize(z, (size_t)zn);
  if (fcs == ZSTD_CONTENTSIZE_ERROR || fcs == ZSTD_CONTENTSIZE_UNKNOWN || fcs != (unsigned long long)size)
    return inv_damaged(device, name, version, "frame header does not declare the size");
  size_t fsz = ZSTD_findFrameCompressedSize(z, (size_t)zn);
  if (ZSTD_isError(fsz) || fsz != (size_t)zn)
    return inv_damaged(device, name, version, "not one whole frame");
  if (s->inv_dctx == NULL) {
    s->inv_dctx = ZSTD_createDCtx();
    if (s->inv_dctx == NULL) return TT_ENOMEM;
  }
  uint8_t *buf = malloc((size_t)size);
  if (buf == NULL) return TT_ENOMEM;
  /* Into exactly size bytes: a frame that would write more fails here. */
  size_t got = ZSTD_decompressDCtx(s->inv_dctx, buf, (size_t)size, z, (size_t)zn);
  uint8_t h[32];
  int ret = 0;
  if (ZSTD_isError(got) || got != (size_t)size) ret = inv_damaged(device, name, version, "does not decompress");
  else if (!sha256_of(buf, got, h)) ret = TT_ENOMEM; /* OpenSSL could not set up a digest */
  else if (memcmp(h, sha, 32) != 0) ret = inv_damaged(device, name, version, "sha256 does not match");
  if (ret != 0) {
    free(buf);
    return ret;
  }
  *out = buf;
  *out_len = got;
  return 0;
}

/* ---- reads ------------------------------------------------------------------------------- */

typedef struct {
  char name[STORE_INV_NAME_MAX];
  int64_t version;
  int64_t received_ms;
  uint8_t *body;  /* malloc'd; NULL = the row says the table was removed */
  size_t len;
} inv_row_t;

/* The row under st (INV_ROW's columns), its body inflated. st is the caller's to reset. */
static int inv_row(broker_store_t *s, sqlite3_stmt *st, const char *device, inv_row_t *r) {
  memset(r, 0, sizeof *r);
  r->version = sqlite3_column_int64(st, 1);
  r->received_ms = sqlite3_column_int64(st, 2);
  if (!inv_col_name(st, 0, r->name)) return inv_damaged(device, "?", r->version, "bad table name");
  bool no_sha = sqlite3_column_type(st, 3) == SQLITE_NULL;
  bool no_body = sqlite3_column_type(st, 5) == SQLITE_NULL;
  if (no_sha && no_body) return 0; /* removed */
  return inv_inflate(s, device, r->name, r->version, st, 3, 4, 5, &r->body, &r->len);
}

int store_inv_table(broker_store_t *s, const char *device, const char *name, int64_t version,
                    store_inv_body_cb cb, void *ctx) {
  if (!inv_device_ok(device) || !inv_name_arg_ok(name) || version < 0) return TT_EINVAL;
  sqlite3_stmt *st = s->st[ST_INV_GET];
  int rc = SQLITE_OK, ret = 0;
  inv_row_t r;
  memset(&r, 0, sizeof r);
  bind_text(st, 1, device, &rc);
  bind_text(st, 2, name, &rc);
  bind_i64(st, 3, version == 0 ? INV_LATEST : version, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) ret = inv_row(s, st, device, &r);
  else if (rc == SQLITE_DONE) ret = TT_ENOTFOUND;
  else ret = sql_fail(s, "inv_table", rc);
  done(st);
  if (ret == 0 && r.body == NULL) ret = TT_ENOTFOUND;
  if (ret == 0) ret = cb(ctx, r.name, r.version, r.received_ms, r.body, r.len);
  free(r.body);
  return ret;
}

/* The walk of NEXT_HASH and NEXT: names only move forward (the SQL says >, and a name read
 * back is checked), so a walk ends after the device's distinct names however the file
 * looks. Each step's statement is reset before the callback. */
int store_inv_tables(broker_store_t *s, const char *device, int64_t version, store_inv_body_cb cb, void *ctx) {
  if (!inv_device_ok(device) || version < 0) return TT_EINVAL;
  char after[STORE_INV_NAME_MAX] = "";
  for (;;) {
    sqlite3_stmt *st = s->st[ST_INV_NEXT];
    int rc = SQLITE_OK, ret = 0;
    inv_row_t r;
    memset(&r, 0, sizeof r);
    bind_text(st, 1, device, &rc);
    bind_text(st, 2, after, &rc);
    bind_i64(st, 3, version == 0 ? INV_LATEST : version, &rc);
    if (rc == SQLITE_OK) rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) ret = inv_row(s, st, device, &r);
    else if (rc != SQLITE_DONE) ret = sql_fail(s, "inv_tables", rc);
    done(st);
    if (ret == 0 && rc == SQLITE_ROW && strcmp(r.name, after) <= 0)
      ret = inv_damaged(device, r.name, r.version, "names out of order");
    if (ret != 0 || rc == SQLITE_DONE) {
      free(r.body);
      return ret;
    }
    memcpy(after, r.name, sizeof after);
    if (r.body != NULL) ret = cb(ctx, r.name, r.version, r.received_ms, r.body, r.len);
    free(r.body);
    if (ret != 0) return ret;
  }
}

int store_inv_hashes(broker_store_t *s, const char *device, store_inv_hash_cb cb, void *ctx) {
  if (!inv_device_ok(device)) return TT_EINVAL;
  char after[STORE_INV_NAME_MAX] = "";
  for (;;) {
    sqlite3_stmt *st = s->st[ST_INV_NEXT_HASH];
    int rc = SQLITE_OK, ret = 0;
    char name[STORE_INV_NAME_MAX] = "";
    uint8_t sha[32];
    bool present = false;
    bind_text(st, 1, device, &rc);
    bind_text(st, 2, after, &rc);
    if (rc == SQLITE_OK) rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
      const void *h = sqlite3_column_blob(st, 1);
      int hn = sqlite3_column_bytes(st, 1);
      if (!inv_col_name(st, 0, name)) {
        ret = inv_damaged(device, "?", 0, "bad table name");
      } else if (strcmp(name, after) <= 0) {
        ret = inv_damaged(device, name, 0, "names out of order");
      } else if (h != NULL && hn == 32) {
        memcpy(sha, h, 32);
        present = true;
      } else if (sqlite3_column_type(st, 1) != SQLITE_NULL) {
        ret = inv_damaged(device, name, 0, "bad sha256");
      }
    } else if (rc != SQLITE_DONE) {
      ret = sql_fail(s, "inv_hashes", rc);
    }
    done(st);
    if (ret != 0 || rc == SQLITE_DONE) return ret;
    memcpy(after, name, sizeof after);
    if (present) ret = cb(ctx, name, sha);
    if (ret != 0) return ret;
  }
}

int store_inv_history(broker_store_t *s, const char *device, int64_t before, uint32_t limit,
                      store_inv_version_cb cb, void *ctx) {
  if (!inv_device_ok(device) || before < 0) return TT_EINVAL;
  sqlite3_stmt *st = s->st[ST_INV_HISTORY];
  int rc = SQLITE_OK, ret = 0;
  bind_text(st, 1, device, &rc);
  bind_i64(st, 2, before == 0 ? INV_LATEST : before, &rc);
  bind_i64(st, 3, limit == 0 ? -1 : (int64_t)limit, &rc);
  while (rc == SQLITE_OK || rc == SQLITE_ROW) {
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) break;
    const unsigned char *changed = sqlite3_column_text(st, 3);
    ret = cb(ctx, sqlite3_column_int64(st, 0), sqlite3_column_int64(st, 1), sqlite3_column_int64(st, 2),
             changed != NULL ? (const char *)changed : "");
    if (ret != 0) break;
  }
  done(st);
  if (ret == 0 && rc != SQLITE_DONE) ret = sql_fail(s, "inv_history", rc);
  return ret;
}

int store_inv_version_at(broker_store_t *s, const char *device, int64_t at_ms, int64_t *version) {
  *version = 0;
  if (!inv_device_ok(device)) return TT_EINVAL;
  sqlite3_stmt *st = s->st[ST_INV_AT];
  int rc = SQLITE_OK, ret = 0;
  bind_text(st, 1, device, &rc);
  bind_i64(st, 2, at_ms, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) *version = sqlite3_column_int64(st, 0);
  else if (rc == SQLITE_DONE) ret = TT_ENOTFOUND;
  else ret = sql_fail(s, "inv_version_at", rc);
  done(st);
  return ret;
}

int store_inv_bytes(broker_store_t *s, const char *device, int64_t *bytes) {
  *bytes = 0;
  if (!inv_device_ok(device)) return TT_EINVAL;
  sqlite3_stmt *st = s->st[ST_INV_BYTES];
  int rc = SQLITE_OK, ret = 0;
  bind_text(st, 1, device, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) *bytes = sqlite3_column_int64(st, 0);
  else ret = sql_fail(s, "inv_bytes", rc);
  done(st);
  return ret;
}

/* ---- the write --------------------------------------------------------------------------- */

typedef enum { INV_SAME = 0, INV_SET, INV_REMOVE } inv_change_t;
typedef enum { INV_NONE = 0, INV_GONE, INV_PRESENT } inv_state_t;

/* The table's newest row: none, a removal, or present with this hash. */
static int inv_current(broker_store_t *s, const char *device, const char *name, inv_state_t *state,
                       uint8_t sha[32]) {
  *state = INV_NONE;
  sqlite3_stmt *st = s->st[ST_INV_CURRENT];
  int rc = SQLITE_OK, ret = 0;
  bind_text(st, 1, device, &rc);
  bind_text(st, 2, name, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) {
    const void *h = sqlite3_column_blob(st, 0);
    if (h != NULL && sqlite3_column_bytes(st, 0) == 32) {
      memcpy(sha, h, 32);
      *state = INV_PRESENT;
    } else if (sqlite3_column_type(st, 0) == SQLITE_NULL) {
      *state = INV_GONE;
    } else {
      ret = inv_damaged(device, name, 0, "bad sha256");
    }
  } else if (rc != SQLITE_DONE) {
    ret = sql_fail(s, "inv_current", rc);
  }
  done(st);
  return ret;
}

static int count_cb(void *ctx, const char *name, const uint8_t sha256[32]) {
  (void)name;
  (void)sha256;
  (*(size_t *)ctx)++;
  return 0;
}

static int by_name(const void *a, const void *b) {
  const store_inv_table_t *x = *(const store_inv_table_t *const *)a;
  const store_inv_table_t *y = *(const store_inv_table_t *const *)b;
  return strcmp(x->name, y->name);
}

static int inv_insert_version(broker_store_t *s, const char *device, int64_t collected_ms, int64_t now_ms,
                              const char *changed, int64_t *id) {
  sqlite3_stmt *st = s->st[ST_INV_VERSION_INSERT];
  int rc = SQLITE_OK;
  bind_text(st, 1, device, &rc);
  bind_i64(st, 2, collected_ms, &rc);
  bind_i64(st, 3, now_ms, &rc);
  bind_text(st, 4, changed, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  done(st);
  if (rc != SQLITE_DONE) return constraint_fail(s, "inv_version", rc);
  *id = (int64_t)sqlite3_last_insert_rowid(s->db);
  return 0;
}

static int inv_insert_table(broker_store_t *s, const char *device, int64_t version, const store_inv_table_t *t) {
  uint8_t *z = NULL;
  size_t zn = 0;
  if (t->body != NULL) {
    int ret = inv_deflate(s, t->body, t->len, &z, &zn);
    if (ret != 0) return ret;
  }
  sqlite3_stmt *st = s->st[ST_INV_TABLE_INSERT];
  int rc = SQLITE_OK;
  bind_text(st, 1, device, &rc);
  bind_text(st, 2, t->name, &rc);
  bind_i64(st, 3, version, &rc);
  if (rc == SQLITE_OK)
    rc = t->body != NULL ? sqlite3_bind_blob(st, 4, t->sha256, 32, SQLITE_STATIC) : sqlite3_bind_null(st, 4);
  bind_i64(st, 5, t->body != NULL ? (int64_t)t->len : 0, &rc);
  /* STATIC: z outlives the step; done() clears the binding before it is freed. */
  if (rc == SQLITE_OK) rc = z != NULL ? sqlite3_bind_blob(st, 6, z, (int)zn, SQLITE_STATIC) : sqlite3_bind_null(st, 6);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  done(st);
  free(z);
  return rc == SQLITE_DONE ? 0 : constraint_fail(s, "inv_table_insert", rc);
}

/* Everything the caller gave is checked before the transaction, so a refused put has read
 * and written nothing. Changes are found and written in one transaction (a savepoint inside
 * the store thread's batch), so a put is whole or absent. */
int store_inv_put(broker_store_t *s, const char *device, int64_t collected_ms, int64_t now_ms,
                  const store_inv_table_t *t, size_t n, int64_t *version) {
  if (version != NULL) *version = 0;
  if (!inv_device_ok(device) || collected_ms < 0 || now_ms < 0 || n > STORE_INV_TABLES_MAX ||
      (t == NULL && n > 0))
    return TT_EINVAL;
  const store_inv_table_t *ord[STORE_INV_TABLES_MAX];
  for (size_t i = 0; i < n; i++) {
    if (!inv_name_arg_ok(t[i].name)) return TT_EINVAL;
    if (t[i].body != NULL) {
      uint8_t h[32];
      if (t[i].len == 0 || t[i].len > STORE_INV_TABLE_MAX) return TT_EINVAL;
      if (!sha256_of(t[i].body, t[i].len, h)) return TT_ENOMEM;
      if (memcmp(h, t[i].sha256, 32) != 0) return TT_EINVAL;
    }
    ord[i] = &t[i];
  }
  if (n > 1) qsort(ord, n, sizeof ord[0], by_name);
  for (size_t i = 1; i < n; i++)
    if (strcmp(ord[i - 1]->name, ord[i]->name) == 0) return TT_EINVAL;

  int ret = tx_begin(s);
  if (ret != 0) return ret;
  inv_change_t what[STORE_INV_TABLES_MAX];
  size_t added = 0, removed = 0, changes = 0;
  for (size_t i = 0; i < n && ret == 0; i++) {
    inv_state_t state = INV_NONE;
    uint8_t cur[32];
    ret = inv_current(s, device, ord[i]->name, &state, cur);
    if (ret != 0) break;
    if (ord[i]->body == NULL) {
      what[i] = state == INV_PRESENT ? INV_REMOVE : INV_SAME;
      if (what[i] == INV_REMOVE) removed++;
    } else if (state != INV_PRESENT) {
      what[i] = INV_SET;
      added++;
    } else {
      what[i] = memcmp(cur, ord[i]->sha256, 32) != 0 ? INV_SET : INV_SAME;
    }
    if (what[i] != INV_SAME) changes++;
  }
  if (ret == 0 && added > 0) {
    size_t have = 0;
    ret = store_inv_hashes(s, device, count_cb, &have);
    if (ret == 0 && have + added - removed > STORE_INV_TABLES_MAX) ret = TT_EINVAL;
  }
  int64_t id = 0;
  if (ret == 0 && changes > 0) {
    /* Names in order, comma-separated, a removal marked "-": at most every table's name
     * with both, so STORE_INV_CHANGED_MAX holds any list. */
    char changed[STORE_INV_CHANGED_MAX];
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
      if (what[i] == INV_SAME) continue;
      size_t len = strlen(ord[i]->name);
      if (off > 0) changed[off++] = ',';
      if (what[i] == INV_REMOVE) changed[off++] = '-';
      memcpy(changed + off, ord[i]->name, len);
      off += len;
    }
    changed[off] = '\0';
    ret = inv_insert_version(s, device, collected_ms, now_ms, changed, &id);
    for (size_t i = 0; i < n && ret == 0; i++) {
      if (what[i] == INV_SAME) continue;
      store_inv_table_t row = *ord[i];
      if (what[i] == INV_REMOVE) row.body = NULL;
      ret = inv_insert_table(s, device, id, &row);
      /* The find index follows the latest version in the same transaction. */
      if (ret == 0) ret = store_inv_find_index(s, device, row.name, row.body, row.body != NULL ? row.len : 0);
    }
    /* The facts asset records are joined with, in the same transaction as the tables. */
    bool facts = false;
    for (size_t i = 0; i < n; i++) facts |= what[i] != INV_SAME && store_fact_table(ord[i]->name);
    if (ret == 0 && facts) ret = store_facts_refresh(s, device);
  }
  if (ret == 0) ret = tx_commit(s);
  if (ret != 0) {
    tx_rollback(s);
    return ret;
  }
  if (version != NULL) *version = id;
  return 0;
}

/* ---- retention of history ---------------------------------------------------------------- */

/* One int64 from a statement over the device (and ?2, ?3 when given). */
static int inv_one(broker_store_t *s, store_stmt_t which, const char *device, int64_t a, int64_t b, int nargs,
                   int64_t *out, const char *op) {
  sqlite3_stmt *st = s->st[which];
  int rc = SQLITE_OK;
  *out = 0;
  bind_text(st, 1, device, &rc);
  if (nargs > 1) bind_i64(st, 2, a, &rc);
  if (nargs > 2) bind_i64(st, 3, b, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) *out = sqlite3_column_int64(st, 0);
  done(st);
  return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : sql_fail(s, op, rc);
}

/* At most limit rows of the device below floor deleted by `which`; *n how many. */
static int inv_prune(broker_store_t *s, store_stmt_t which, const char *device, int64_t floor, uint32_t limit,
                     uint32_t *n) {
  sqlite3_stmt *st = s->st[which];
  int rc = SQLITE_OK;
  *n = 0;
  bind_text(st, 1, device, &rc);
  bind_i64(st, 2, floor, &rc);
  bind_i64(st, 3, limit, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  done(st);
  if (rc != SQLITE_DONE) return sql_fail(s, "inv_prune", rc);
  *n = (uint32_t)sqlite3_changes(s->db);
  return 0;
}

/* The floor moves first (from then on no read goes below it), then the rows no read from the
 * floor on can reach go, older ones before the removals they make moot. The find index and
 * the facts hold the current inventory only: nothing here touches what they hold. A device
 * counts one unit of the budget, so a fleet with nothing to prune still takes steps. */
int store_retention_inventory(broker_store_t *s, int64_t cutoff_ms, uint32_t budget, store_sweep_cursor_t *cur,
                              uint32_t *versions, bool *more) {
  *versions = 0;
  *more = false;
  int ret = tx_begin(s);
  if (ret) return ret;
  uint32_t work = 0;
  while (ret == 0 && work < budget) {
    char device[TT_NAME_MAX + 1] = "";
    sqlite3_stmt *st = s->st[ST_INV_PRUNE_DEVICE];
    int rc = SQLITE_OK;
    bind_text(st, 1, cur->device, &rc);
    if (rc == SQLITE_OK) rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) col_text(st, 0, device, sizeof device);
    done(st);
    if (rc == SQLITE_DONE) break;
    if (rc != SQLITE_ROW) {
      ret = sql_fail(s, "inv_prune_device", rc);
      break;
    }
    if (!inv_device_ok(device) || strcmp(device, cur->device) <= 0) { /* never walk backwards */
      ret = inv_damaged(device, "?", 0, "devices out of order");
      break;
    }
    work++;
    int64_t old = 0, floor = 0, gone = 0;
    ret = inv_one(s, ST_INV_FLOOR_GET, device, 0, 0, 1, &old, "inv_floor_get");
    if (ret == 0) ret = inv_one(s, ST_INV_FLOOR_NEW, device, cutoff_ms, 0, 2, &floor, "inv_floor_new");
    if (ret == 0 && floor > old) {
      ret = inv_one(s, ST_INV_FLOOR_COUNT, device, old, floor, 3, &gone, "inv_floor_count");
      int64_t unused = 0;
      if (ret == 0) ret = inv_one(s, ST_INV_FLOOR_SET, device, floor, 0, 2, &unused, "inv_floor_set");
      *versions += (uint32_t)gone;
    }
    if (floor < old) floor = old;
    bool whole = true;
    static const store_stmt_t k_prune[] = {ST_INV_PRUNE_SUPERSEDED, ST_INV_PRUNE_MARKERS, ST_INV_PRUNE_VERSIONS};
    for (size_t i = 0; ret == 0 && whole && i < sizeof k_prune / sizeof k_prune[0]; i++) {
      uint32_t left = budget > work ? budget - work : 0, n = 0;
      if (left == 0) whole = false;
      else ret = inv_prune(s, k_prune[i], device, floor, left, &n);
      work += n;
      if (n == left) whole = false; /* perhaps more: this device again at the next step */
    }
    if (ret == 0 && whole) snprintf(cur->device, sizeof cur->device, "%s", device);
  }
  if (ret == 0) ret = tx_commit(s);
  else tx_rollback(s);
  if (ret) *versions = 0;
  *more = ret == 0 && work >= budget;
  return ret;
}
