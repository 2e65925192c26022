/* Devices and identities: the device registry (enrolled, seen, certificates) and the
 * revocations of devices and people. */
#include "internal.h"

#define DEV_COLS STORE_DEV_COLS

static const store_sql_t k_sql[] = {
  {ST_DEV_INSERT, "INSERT INTO devices(" DEV_COLS ") VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"},
  {ST_DEV_SEEN, "INSERT INTO devices(id, hostname, address, version, enrolled_ms, last_seen_ms)"
      " VALUES(?1, ?2, ?3, ?4, ?5, ?5)"
      " ON CONFLICT(id) DO UPDATE SET hostname = excluded.hostname,"
      " address = excluded.address, version = excluded.version,"
      " last_seen_ms = excluded.last_seen_ms"},
  {ST_DEV_SET_CERT, "UPDATE devices SET cert_fp = ?2, cert_not_after_ms = ?3 WHERE id = ?1"},
  {ST_DEV_GET, "SELECT " DEV_COLS " FROM devices WHERE id = ?1"},
  {ST_DEV_LIST, "SELECT " DEV_COLS " FROM devices ORDER BY id LIMIT ?1 OFFSET ?2"},
  {ST_DEV_COUNT, "SELECT count(*) FROM devices"},
  /* By hostname: the whole name, or its first label ("sams-laptop" for sams-laptop.corp),
   * either case; whole-name matches first. Revoked devices name nothing. */
  {ST_DEV_BY_HOST, "SELECT " DEV_COLS ", lower(hostname) = lower(?1) AS whole FROM devices"
      " WHERE revoked = 0 AND ?1 <> '' AND (lower(hostname) = lower(?1)"
      "  OR lower(substr(hostname, 1, length(?1) + 1)) = lower(?1) || '.')"
      " ORDER BY whole DESC, id LIMIT ?2"},
  {ST_DEV_PAGE, "SELECT " DEV_COLS " FROM devices WHERE id > ?1 ORDER BY id LIMIT ?2"},
  {ST_DEV_SET_REVOKED, "UPDATE devices SET revoked = 1 WHERE id = ?1"},
  {ST_REV_INSERT, "INSERT INTO revocations(kind, name, \"by\", reason, ts_ms)"
      " VALUES(?1, ?2, ?3, ?4, ?5)"},
  {ST_REV_GET, "SELECT 1 FROM revocations WHERE kind = ?1 AND name IN (?2, ?3)"},
  {ST_REV_ALL, "SELECT kind, name FROM revocations"},
  {ST_DEV_LAST_SEEN, "UPDATE devices SET last_seen_ms = ?2 WHERE id = ?1"},
};

int store_prepare_devices(broker_store_t *s) { return store_prepare(s, k_sql, sizeof k_sql / sizeof k_sql[0]); }

/* ---- devices --------------------------------------------------------------------------- */

void store_dev_from_row(sqlite3_stmt *st, store_device_t *d) {
  memset(d, 0, sizeof *d);
  col_text(st, 0, d->id, sizeof d->id);
  col_text(st, 1, d->hostname, sizeof d->hostname);
  col_text(st, 2, d->address, sizeof d->address);
  col_text(st, 3, d->version, sizeof d->version);
  col_text(st, 4, d->cert_fp, sizeof d->cert_fp);
  d->enrolled_ms = sqlite3_column_int64(st, 5);
  d->last_seen_ms = sqlite3_column_int64(st, 6);
  d->cert_not_after_ms = sqlite3_column_int64(st, 7);
  d->revoked = sqlite3_column_int64(st, 8) != 0;
}

int store_device_add(broker_store_t *s, const store_device_t *d) {
  sqlite3_stmt *st = s->st[ST_DEV_INSERT];
  int rc = SQLITE_OK;
  bind_text(st, 1, d->id, &rc);
  bind_text(st, 2, d->hostname, &rc);
  bind_text(st, 3, d->address, &rc);
  bind_text(st, 4, d->version, &rc);
  bind_text(st, 5, d->cert_fp, &rc);
  bind_i64(st, 6, d->enrolled_ms, &rc);
  bind_i64(st, 7, d->last_seen_ms, &rc);
  bind_i64(st, 8, d->cert_not_after_ms, &rc);
  bind_i64(st, 9, d->revoked ? 1 : 0, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  done(st);
  return rc == SQLITE_DONE ? 0 : insert_fail(s, "device_add", rc);
}

int store_device_seen(broker_store_t *s, const char *id, const char *hostname, const char *address,
                      const char *version, int64_t now_ms) {
  sqlite3_stmt *st = s->st[ST_DEV_SEEN];
  int rc = SQLITE_OK;
  bind_text(st, 1, id, &rc);
  bind_text(st, 2, hostname, &rc);
  bind_text(st, 3, address, &rc);
  bind_text(st, 4, version, &rc);
  bind_i64(st, 5, now_ms, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  done(st);
  return rc == SQLITE_DONE ? 0 : sql_fail(s, "device_seen", rc);
}

int store_device_set_cert(broker_store_t *s, const char *id, const char *cert_fp,
                          int64_t not_after_ms) {
  sqlite3_stmt *st = s->st[ST_DEV_SET_CERT];
  int rc = SQLITE_OK;
  bind_text(st, 1, id, &rc);
  bind_text(st, 2, cert_fp, &rc);
  bind_i64(st, 3, not_after_ms, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  done(st);
  if (rc != SQLITE_DONE) return sql_fail(s, "device_set_cert", rc);
  return sqlite3_changes(s->db) == 0 ? TT_ENOTFOUND : 0;
}

int store_device_get(broker_store_t *s, const char *id, store_device_t *out) {
  memset(out, 0, sizeof *out);
  sqlite3_stmt *st = s->st[ST_DEV_GET];
  int rc = SQLITE_OK;
  bind_text(st, 1, id, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  int ret = 0;
  if (rc == SQLITE_ROW) store_dev_from_row(st, out);
  else if (rc == SQLITE_DONE) ret = TT_ENOTFOUND;
  else ret = sql_fail(s, "device_get", rc);
  done(st);
  return ret;
}

int store_device_find(broker_store_t *s, const char *name, store_device_t *out, size_t max, size_t *n) {
  *n = 0;
  if (max == 0) return TT_EINVAL;
  int ret = store_device_get(s, name, &out[0]);
  if (ret != TT_ENOTFOUND) {
    if (ret == 0) *n = 1;
    return ret;
  }
  sqlite3_stmt *st = s->st[ST_DEV_BY_HOST];
  int rc = SQLITE_OK;
  bind_text(st, 1, name, &rc);
  bind_i64(st, 2, (int64_t)max, &rc);
  bool whole = false;
  while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
    bool w = sqlite3_column_int(st, 9) != 0;
    if (*n == 0) whole = w;
    else if (whole && !w) break; /* the whole name matched: its short-name matches do not count */
    memset(&out[*n], 0, sizeof(out[*n]));
    store_dev_from_row(st, &out[*n]);
    (*n)++;
    rc = SQLITE_OK;
  }
  ret = rc == SQLITE_DONE || rc == SQLITE_OK ? 0 : sql_fail(s, "device_find", rc);
  done(st);
  if (!ret && *n == 0) ret = TT_ENOTFOUND;
  return ret;
}

static int device_count(broker_store_t *s, int64_t *n) {
  sqlite3_stmt *st = s->st[ST_DEV_COUNT];
  int rc = sqlite3_step(st);
  int ret = 0;
  if (rc == SQLITE_ROW) *n = sqlite3_column_int64(st, 0);
  else ret = sql_fail(s, "device_count", rc);
  done(st);
  return ret;
}

/* The callback must not call back into the store's device listing (the statement is in
 * use); a non-zero return stops the walk and is returned. limit 0 = no limit. */
int store_device_list(broker_store_t *s, uint32_t offset, uint32_t limit, store_device_cb cb,
                      void *ctx, uint32_t *total) {
  if (total != NULL) *total = 0;
  int64_t n = 0;
  int ret = device_count(s, &n);
  if (ret != 0) return ret;
  if (total != NULL) *total = n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
  sqlite3_stmt *st = s->st[ST_DEV_LIST];
  int rc = SQLITE_OK;
  bind_i64(st, 1, limit == 0 ? -1 : (int64_t)limit, &rc);
  bind_i64(st, 2, offset, &rc);
  while (rc == SQLITE_OK || rc == SQLITE_ROW) {
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) break;
    store_device_t d;
    store_dev_from_row(st, &d);
    ret = cb(ctx, &d);
    if (ret != 0) break;
  }
  done(st);
  if (ret == 0 && rc != SQLITE_DONE) ret = sql_fail(s, "device_list", rc);
  return ret;
}

int store_device_page(broker_store_t *s, const char *after, uint32_t limit, store_device_cb cb, void *ctx) {
  sqlite3_stmt *st = s->st[ST_DEV_PAGE];
  int rc = SQLITE_OK, ret = 0;
  bind_text(st, 1, after, &rc);
  bind_i64(st, 2, limit == 0 ? -1 : (int64_t)limit, &rc);
  while (rc == SQLITE_OK || rc == SQLITE_ROW) {
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) break;
    store_device_t d;
    store_dev_from_row(st, &d);
    ret = cb(ctx, &d);
    if (ret != 0) break;
  }
  done(st);
  if (ret == 0 && rc != SQLITE_DONE) ret = sql_fail(s, "device_page", rc);
  return ret;
}

size_t store_device_count(broker_store_t *s) {
  int64_t n = 0;
  if (device_count(s, &n) != 0) return 0; /* logged */
  return (size_t)n;
}

/* ---- revocations ---------------------------------------------------------------------- */

int store_revoke(broker_store_t *s, store_revoke_kind_t kind, const char *name, const char *by,
                 const char *reason, int64_t now_ms) {
  if (kind != STORE_REVOKE_DEVICE && kind != STORE_REVOKE_PERSON) return TT_EINVAL;
  int ret = tx_begin(s);
  if (ret != 0) return ret;
  sqlite3_stmt *st = s->st[ST_REV_INSERT];
  int rc = SQLITE_OK;
  bind_i64(st, 1, (int64_t)kind, &rc);
  bind_text(st, 2, name, &rc);
  bind_text(st, 3, by, &rc);
  bind_text(st, 4, reason, &rc);
  bind_i64(st, 5, now_ms, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  done(st);
  if (rc != SQLITE_DONE) ret = insert_fail(s, "revoke", rc);
  if (ret == 0 && kind == STORE_REVOKE_DEVICE) {
    /* A device not (yet) in the table is still revoked by its row above. */
    st = s->st[ST_DEV_SET_REVOKED];
    rc = SQLITE_OK;
    bind_text(st, 1, name, &rc);
    if (rc == SQLITE_OK) rc = sqlite3_step(st);
    done(st);
    if (rc != SQLITE_DONE) ret = sql_fail(s, "revoke_device", rc);
  }
  if (ret == 0) ret = tx_commit(s);
  if (ret != 0) tx_rollback(s);
  return ret;
}

int store_is_revoked(broker_store_t *s, store_revoke_kind_t kind, const char *name, bool *revoked) {
  *revoked = false;
  sqlite3_stmt *st = s->st[ST_REV_GET];
  int rc = SQLITE_OK;
  /* An erased person's revocation is kept under a hash of their name (records/erase.c). */
  char key[STORE_ERASE_REVOKED_CAP];
  store_erase_revocation_key(name, key);
  bind_i64(st, 1, (int64_t)kind, &rc);
  bind_text(st, 2, name, &rc);
  bind_text(st, 3, kind == STORE_REVOKE_PERSON ? key : name, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  int ret = 0;
  if (rc == SQLITE_ROW) *revoked = true;
  else if (rc != SQLITE_DONE) ret = sql_fail(s, "is_revoked", rc);
  done(st);
  return ret;
}


int store_revocations(broker_store_t *s, store_revocation_cb cb, void *ctx) {
  sqlite3_stmt *st = s->st[ST_REV_ALL];
  int rc, ret = 0;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    char name[STORE_NAME_MAX];
    col_text(st, 1, name, sizeof name);
    ret = cb(ctx, (store_revoke_kind_t)sqlite3_column_int64(st, 0), name);
    if (ret != 0) break;
  }
  done(st);
  if (ret == 0 && rc != SQLITE_DONE) ret = sql_fail(s, "revocations", rc);
  return ret;
}

int store_device_last_seen(broker_store_t *s, const char *id, int64_t now_ms) {
  sqlite3_stmt *st = s->st[ST_DEV_LAST_SEEN];
  int rc = SQLITE_OK;
  bind_text(st, 1, id, &rc);
  bind_i64(st, 2, now_ms, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  done(st);
  return rc == SQLITE_DONE ? 0 : sql_fail(s, "device_last_seen", rc);
}
