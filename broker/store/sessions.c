/* Sessions (consented grants) and their shell recordings. */
#include "internal.h"

#define SES_COLS "id, ticket, device, person, access, started_ms, expires_ms, unattended, " \
                 "consent_by, ended_ms, ended_by, end_reason"
#define REC_COLS "id, session, ticket, device, person, path, started_ms, ended_ms, size, " \
                 "sha256, failed, expired_ms, erased"


static const store_sql_t k_sql[] = {
  {ST_SES_INSERT, "INSERT INTO sessions(ticket, device, person, access, started_ms, expires_ms,"
      " unattended, consent_by, ended_ms, ended_by, end_reason)"
      " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"},
  {ST_SES_GRANT, "UPDATE sessions SET expires_ms = ?2, unattended = ?3, consent_by = ?4"
      " WHERE id = ?1 AND ended_ms = 0"},
  {ST_SES_GET, "SELECT " SES_COLS " FROM sessions WHERE id = ?1"},
  {ST_SES_END, "UPDATE sessions SET ended_ms = ?2, ended_by = ?3, end_reason = ?4"
      " WHERE id = ?1 AND ended_ms = 0"},
  {ST_SES_END_ALL, "UPDATE sessions SET ended_ms = ?1, ended_by = 'broker',"
      " end_reason = 'broker restarted' WHERE ended_ms = 0"},
  {ST_REC_INSERT, "INSERT INTO recordings(session, ticket, device, person, started_ms)"
      " VALUES(?1, ?2, ?3, ?4, ?5)"},
  {ST_REC_SET_PATH, "UPDATE recordings SET path = 'recordings/R-' || id || '.cast.zst'"
      " WHERE id = ?1"},
  {ST_REC_FINISH, "UPDATE recordings SET ended_ms = ?2, size = ?3, sha256 = ?4, failed = ?5"
      " WHERE id = ?1 AND ended_ms = 0"},
  {ST_REC_ABANDON, "UPDATE recordings SET ended_ms = ?1, failed = 1 WHERE ended_ms = 0"},
  {ST_REC_GET, "SELECT " REC_COLS " FROM recordings WHERE id = ?1"},
  {ST_REC_LIST, "SELECT " REC_COLS " FROM recordings WHERE session = ?1 ORDER BY id LIMIT ?2"},
};

int store_prepare_sessions(broker_store_t *s) { return store_prepare(s, k_sql, sizeof k_sql / sizeof k_sql[0]); }

/* ---- sessions ---------------------------------------------------------------------------- */

static int session_fields(const store_session_t *x) {
  if (strnlen(x->device, sizeof x->device) == sizeof x->device ||
      strnlen(x->person, sizeof x->person) == sizeof x->person ||
      strnlen(x->consent_by, sizeof x->consent_by) == sizeof x->consent_by ||
      strnlen(x->ended_by, sizeof x->ended_by) == sizeof x->ended_by ||
      strnlen(x->end_reason, sizeof x->end_reason) == sizeof x->end_reason)
    return TT_ETOOBIG;
  return 0;
}

int store_session_add(broker_store_t *s, store_session_t *sess) {
  int ret = session_fields(sess);
  if (ret != 0) return ret;
  sqlite3_stmt *st = s->st[ST_SES_INSERT];
  int rc = SQLITE_OK;
  bind_i64(st, 1, sess->ticket, &rc);
  bind_field(st, 2, sess->device, sizeof sess->device, &rc);
  bind_field(st, 3, sess->person, sizeof sess->person, &rc);
  bind_i64(st, 4, (int64_t)sess->access, &rc);
  bind_i64(st, 5, sess->started_ms, &rc);
  bind_i64(st, 6, sess->expires_ms, &rc);
  bind_i64(st, 7, sess->unattended ? 1 : 0, &rc);
  bind_field(st, 8, sess->consent_by, sizeof sess->consent_by, &rc);
  bind_i64(st, 9, sess->ended_ms, &rc);
  bind_field(st, 10, sess->ended_by, sizeof sess->ended_by, &rc);
  bind_field(st, 11, sess->end_reason, sizeof sess->end_reason, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  done(st);
  if (rc != SQLITE_DONE) return constraint_fail(s, "session_add", rc);
  sess->id = (int64_t)sqlite3_last_insert_rowid(s->db);
  return 0;
}

int store_session_grant(broker_store_t *s, int64_t id, int64_t expires_ms, bool unattended,
                        const char *consent_by) {
  if (consent_by != NULL && strlen(consent_by) >= STORE_NAME_MAX) return TT_ETOOBIG;
  if (expires_ms < 0) return TT_EINVAL;
  sqlite3_stmt *st = s->st[ST_SES_GRANT];
  int rc = SQLITE_OK;
  bind_i64(st, 1, id, &rc);
  bind_i64(st, 2, expires_ms, &rc);
  bind_i64(st, 3, unattended ? 1 : 0, &rc);
  bind_text(st, 4, consent_by, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  done(st);
  if (rc != SQLITE_DONE) return constraint_fail(s, "session_grant", rc);
  return sqlite3_changes(s->db) == 0 ? not_live(s, ST_SES_GET, id, "session_grant") : 0;
}

int store_session_get(broker_store_t *s, int64_t id, store_session_t *out) {
  memset(out, 0, sizeof *out);
  sqlite3_stmt *st = s->st[ST_SES_GET];
  int rc = SQLITE_OK;
  bind_i64(st, 1, id, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  int ret = 0;
  if (rc == SQLITE_ROW) {
    out->id = sqlite3_column_int64(st, 0);
    out->ticket = sqlite3_column_int64(st, 1);
    col_text(st, 2, out->device, sizeof out->device);
    col_text(st, 3, out->person, sizeof out->person);
    out->access = (unsigned)sqlite3_column_int(st, 4);
    out->started_ms = sqlite3_column_int64(st, 5);
    out->expires_ms = sqlite3_column_int64(st, 6);
    out->unattended = sqlite3_column_int(st, 7) != 0;
    col_text(st, 8, out->consent_by, sizeof out->consent_by);
    out->ended_ms = sqlite3_column_int64(st, 9);
    col_text(st, 10, out->ended_by, sizeof out->ended_by);
    col_text(st, 11, out->end_reason, sizeof out->end_reason);
  } else if (rc == SQLITE_DONE) {
    ret = TT_ENOTFOUND;
  } else {
    ret = sql_fail(s, "session_get", rc);
  }
  done(st);
  return ret;
}

int store_session_end(broker_store_t *s, int64_t id, int64_t now_ms, const char *by,
                      const char *reason) {
  if (now_ms <= 0) return TT_EINVAL;
  if ((by != NULL && strlen(by) >= STORE_NAME_MAX) ||
      (reason != NULL && strlen(reason) >= STORE_TEXT_MAX))
    return TT_ETOOBIG;
  sqlite3_stmt *st = s->st[ST_SES_END];
  int rc = SQLITE_OK;
  bind_i64(st, 1, id, &rc);
  bind_i64(st, 2, now_ms, &rc);
  bind_text(st, 3, by, &rc);
  bind_text(st, 4, reason, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  done(st);
  if (rc != SQLITE_DONE) return sql_fail(s, "session_end", rc);
  return sqlite3_changes(s->db) == 0 ? not_live(s, ST_SES_GET, id, "session_end") : 0;
}

/* Both updates in one transaction: a restart either closes out everything the last broker
 * left open or nothing. */
int store_session_end_all(broker_store_t *s, int64_t now_ms, uint32_t *count) {
  *count = 0;
  if (now_ms <= 0) return TT_EINVAL;
  int ret = tx_begin(s);
  if (ret != 0) return ret;
  sqlite3_stmt *st = s->st[ST_SES_END_ALL];
  int rc = SQLITE_OK;
  bind_i64(st, 1, now_ms, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  done(st);
  int sessions = sqlite3_changes(s->db), recordings = 0;
  if (rc == SQLITE_DONE) {
    st = s->st[ST_REC_ABANDON];
    rc = SQLITE_OK;
    bind_i64(st, 1, now_ms, &rc);
    if (rc == SQLITE_OK) rc = sqlite3_step(st);
    done(st);
    recordings = sqlite3_changes(s->db);
  }
  ret = rc == SQLITE_DONE ? tx_commit(s) : sql_fail(s, "session_end_all", rc);
  if (ret != 0) {
    tx_rollback(s);
    return ret;
  }
  if (recordings > 0)
    TT_WARN(MOD, "recordings left unfinished by the last broker marked failed", "count=%d",
            recordings);
  *count = (uint32_t)sessions;
  return 0;
}

/* ---- recordings -------------------------------------------------------------------------- */

static void recording_from_row(sqlite3_stmt *st, store_recording_t *r) {
  memset(r, 0, sizeof *r);
  r->id = sqlite3_column_int64(st, 0);
  r->session = sqlite3_column_int64(st, 1);
  r->ticket = sqlite3_column_int64(st, 2);
  col_text(st, 3, r->device, sizeof r->device);
  col_text(st, 4, r->person, sizeof r->person);
  col_text(st, 5, r->path, sizeof r->path);
  r->started_ms = sqlite3_column_int64(st, 6);
  r->ended_ms = sqlite3_column_int64(st, 7);
  r->size = sqlite3_column_int64(st, 8);
  col_text(st, 9, r->sha256, sizeof r->sha256);
  r->failed = sqlite3_column_int(st, 10) != 0;
  r->expired_ms = sqlite3_column_int64(st, 11);
  r->erased = sqlite3_column_int64(st, 12);
}

/* The path is made from the id SQLite chose, in the same transaction as the row. */
int store_recording_add(broker_store_t *s, store_recording_t *r) {
  if (strnlen(r->device, sizeof r->device) == sizeof r->device ||
      strnlen(r->person, sizeof r->person) == sizeof r->person)
    return TT_ETOOBIG;
  int ret = tx_begin(s);
  if (ret != 0) return ret;
  sqlite3_stmt *st = s->st[ST_REC_INSERT];
  int rc = SQLITE_OK;
  bind_i64(st, 1, r->session, &rc);
  bind_i64(st, 2, r->ticket, &rc);
  bind_field(st, 3, r->device, sizeof r->device, &rc);
  bind_field(st, 4, r->person, sizeof r->person, &rc);
  bind_i64(st, 5, r->started_ms, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  done(st);
  if (rc != SQLITE_DONE) ret = constraint_fail(s, "recording_add", rc);
  int64_t id = ret == 0 ? (int64_t)sqlite3_last_insert_rowid(s->db) : 0;
  if (ret == 0) {
    st = s->st[ST_REC_SET_PATH];
    rc = SQLITE_OK;
    bind_i64(st, 1, id, &rc);
    if (rc == SQLITE_OK) rc = sqlite3_step(st);
    done(st);
    if (rc != SQLITE_DONE) ret = sql_fail(s, "recording_add", rc);
  }
  if (ret == 0) ret = tx_commit(s);
  if (ret != 0) {
    tx_rollback(s);
    return ret;
  }
  r->id = id;
  r->ended_ms = 0;
  r->size = 0;
  r->sha256[0] = '\0';
  r->failed = false;
  snprintf(r->path, sizeof r->path, "recordings/R-%lld.cast.zst", (long long)id);
  return 0;
}

static bool sha256_hex_valid(const char *h) {
  if (strlen(h) != 64) return false;
  for (size_t i = 0; i < 64; i++)
    if (!((h[i] >= '0' && h[i] <= '9') || (h[i] >= 'a' && h[i] <= 'f'))) return false;
  return true;
}

int store_recording_finish(broker_store_t *s, int64_t id, int64_t ended_ms, int64_t size,
                           const char *sha256_hex, bool failed) {
  const char *h = sha256_hex != NULL ? sha256_hex : "";
  if (ended_ms <= 0 || size < 0 || (h[0] != '\0' && !sha256_hex_valid(h))) return TT_EINVAL;
  sqlite3_stmt *st = s->st[ST_REC_FINISH];
  int rc = SQLITE_OK;
  bind_i64(st, 1, id, &rc);
  bind_i64(st, 2, ended_ms, &rc);
  bind_i64(st, 3, size, &rc);
  bind_text(st, 4, h, &rc);
  bind_i64(st, 5, failed ? 1 : 0, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  done(st);
  if (rc != SQLITE_DONE) return constraint_fail(s, "recording_finish", rc);
  return sqlite3_changes(s->db) == 0 ? not_live(s, ST_REC_GET, id, "recording_finish") : 0;
}

int store_recording_get(broker_store_t *s, int64_t id, store_recording_t *out) {
  memset(out, 0, sizeof *out);
  sqlite3_stmt *st = s->st[ST_REC_GET];
  int rc = SQLITE_OK;
  bind_i64(st, 1, id, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  int ret = 0;
  if (rc == SQLITE_ROW) recording_from_row(st, out);
  else if (rc == SQLITE_DONE) ret = TT_ENOTFOUND;
  else ret = sql_fail(s, "recording_get", rc);
  done(st);
  return ret;
}

int store_recording_list(broker_store_t *s, int64_t session, store_recording_t *out, uint32_t cap,
                         uint32_t *n) {
  *n = 0;
  if (cap == 0) return 0;
  sqlite3_stmt *st = s->st[ST_REC_LIST];
  int rc = SQLITE_OK;
  bind_i64(st, 1, session, &rc);
  bind_i64(st, 2, (int64_t)cap, &rc);
  while (rc == SQLITE_OK || rc == SQLITE_ROW) {
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW || *n >= cap) break;
    recording_from_row(st, &out[*n]);
    (*n)++;
  }
  done(st);
  return rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : sql_fail(s, "recording_list", rc);
}
