/* Diagnostics reports kept on tickets (store.h, `tether diag --attach`): the bytes the device
 * sent, compressed by the caller, with their size and sha256. */
#include "internal.h"

static const store_sql_t k_sql[] = {
  {ST_DIAG_INSERT, "INSERT INTO diag_reports(ticket, session, device, person, taken_ms, size, sha256, body)"
                   " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"},
  {ST_DIAG_GET, "SELECT id, ticket, session, device, person, taken_ms, size, sha256, body FROM diag_reports"
                " WHERE id = ?1"},
};

int store_prepare_diag(broker_store_t *s) { return store_prepare(s, k_sql, sizeof k_sql / sizeof k_sql[0]); }

int store_diag_add(broker_store_t *s, store_diag_t *d, const uint8_t *zbody, size_t zlen) {
  if (d->ticket <= 0 || d->session < 0 || d->taken_ms <= 0 || d->size <= 0 || d->size > STORE_DIAG_MAX ||
      !zlen || zlen > ZSTD_compressBound(STORE_DIAG_MAX) || strnlen(d->device, sizeof d->device) == sizeof d->device ||
      strnlen(d->person, sizeof d->person) == sizeof d->person || strnlen(d->sha256, sizeof d->sha256) != 64)
    return TT_EINVAL;
  sqlite3_stmt *st = s->st[ST_DIAG_INSERT];
  int rc = SQLITE_OK;
  bind_i64(st, 1, d->ticket, &rc);
  bind_i64(st, 2, d->session, &rc);
  bind_field(st, 3, d->device, sizeof d->device, &rc);
  bind_field(st, 4, d->person, sizeof d->person, &rc);
  bind_i64(st, 5, d->taken_ms, &rc);
  bind_i64(st, 6, d->size, &rc);
  bind_field(st, 7, d->sha256, sizeof d->sha256, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_bind_blob(st, 8, zbody, (int)zlen, SQLITE_STATIC);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  done(st);
  if (rc != SQLITE_DONE) return constraint_fail(s, "diag_add", rc);
  d->id = (int64_t)sqlite3_last_insert_rowid(s->db);
  return 0;
}

int store_diag_get(broker_store_t *s, int64_t id, store_diag_cb cb, void *ctx) {
  sqlite3_stmt *st = s->st[ST_DIAG_GET];
  int rc = SQLITE_OK;
  bind_i64(st, 1, id, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  if (rc == SQLITE_DONE) {
    done(st);
    return TT_ENOTFOUND;
  }
  if (rc != SQLITE_ROW) {
    done(st);
    return sql_fail(s, "diag_get", rc);
  }
  store_diag_t d;
  memset(&d, 0, sizeof d);
  d.id = sqlite3_column_int64(st, 0);
  d.ticket = sqlite3_column_int64(st, 1);
  d.session = sqlite3_column_int64(st, 2);
  col_text(st, 3, d.device, sizeof d.device);
  col_text(st, 4, d.person, sizeof d.person);
  d.taken_ms = sqlite3_column_int64(st, 5);
  d.size = sqlite3_column_int64(st, 6);
  col_text(st, 7, d.sha256, sizeof d.sha256);
  const uint8_t *z = sqlite3_column_blob(st, 8);
  size_t zlen = (size_t)sqlite3_column_bytes(st, 8);
  int ret = cb(ctx, &d, z, zlen);
  done(st);
  return ret;
}
