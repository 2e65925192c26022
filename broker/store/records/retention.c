/* Retention (store.h "retention"): the classes' settings, tickets on hold, and the sweeps'
 * steps: recordings (file deleted, row marked), diagnostics reports (deleted), the audit
 * (pruned up to a base that a signed cut line records). Each step does at most a budget of
 * rows, so the writer is never held long; the caller runs steps until one finds nothing. */
#include <errno.h>
#include <stdio.h>
#include <unistd.h>
#include "../internal.h"

static const store_sql_t k_sql[] = {
  {ST_RET_GET, "SELECT keep_ms, set_by, set_ms FROM retention WHERE class = ?1"},
  {ST_RET_SET, "INSERT INTO retention(class, keep_ms, set_by, set_ms) VALUES(?1, ?2, ?3, ?4)"
               " ON CONFLICT(class) DO UPDATE SET keep_ms = ?2, set_by = ?3, set_ms = ?4"},
  {ST_HOLD_SET, "INSERT INTO ticket_holds(ticket, reason, held_by, held_ms) VALUES(?1, ?2, ?3, ?4)"},
  {ST_HOLD_CLEAR, "DELETE FROM ticket_holds WHERE ticket = ?1"},
  {ST_HOLD_COUNT, "SELECT count(*) FROM ticket_holds"},
  {ST_HOLD_EARLIEST, "SELECT min(t.created_ms) FROM ticket_holds h JOIN tickets t ON t.id = h.ticket"},
  {ST_RET_RECORDINGS, "SELECT id, path FROM recordings WHERE started_ms < ?1 AND ended_ms > 0 AND expired_ms = 0"
                      " AND ticket NOT IN (SELECT ticket FROM ticket_holds) ORDER BY started_ms LIMIT ?2"},
  {ST_RET_RECORDING_EXPIRE, "UPDATE recordings SET expired_ms = ?2 WHERE id = ?1"},
  {ST_RET_DIAG, "DELETE FROM diag_reports WHERE id IN (SELECT id FROM diag_reports WHERE taken_ms < ?1"
                " AND ticket NOT IN (SELECT ticket FROM ticket_holds) ORDER BY taken_ms LIMIT ?2)"},
  {ST_AUDIT_BASE_GET, "SELECT entries, head FROM audit_base WHERE one = 1"},
  {ST_AUDIT_BASE_SET, "INSERT INTO audit_base(one, entries, head, ts_ms) VALUES(1, ?1, ?2, ?3)"
                      " ON CONFLICT(one) DO UPDATE SET entries = ?1, head = ?2, ts_ms = ?3"},
  {ST_AUDIT_CUT_POINT, "SELECT id, hash FROM audit WHERE ts_ms < ?1 AND id > ?2 ORDER BY id DESC LIMIT 1"},
  {ST_AUDIT_PRUNE, "DELETE FROM audit WHERE id IN (SELECT id FROM audit WHERE id <= ?1 ORDER BY id LIMIT ?2)"},
  /* the values of entries already gone: below the first entry left (or the base); a value
   * released by an erasure that is not pruned stays (its digest, no salt, no text) for the
   * walk to check that erasure's commitment (tt/audit.h) */
  {ST_AUDIT_PRUNE_VALUES, "DELETE FROM audit_values WHERE entry <= (SELECT coalesce(min(id) - 1, ?1) FROM audit"
                          " WHERE id <= ?1) AND (erased = 0 OR erased <= ?1)"},
};

int store_prepare_retention(broker_store_t *s) { return store_prepare(s, k_sql, sizeof k_sql / sizeof k_sql[0]); }

int store_retention_get(broker_store_t *s, const char *cls, int64_t *keep_ms, char *set_by, size_t cap,
                        int64_t *set_ms) {
  sqlite3_stmt *st = s->st[ST_RET_GET];
  int rc = SQLITE_OK;
  bind_text(st, 1, cls, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) {
    *keep_ms = sqlite3_column_int64(st, 0);
    col_text(st, 1, set_by, cap);
    *set_ms = sqlite3_column_int64(st, 2);
  }
  done(st);
  if (rc == SQLITE_ROW) return 0;
  return rc == SQLITE_DONE ? TT_ENOTFOUND : sql_fail(s, "retention_get", rc);
}

int store_retention_set(broker_store_t *s, const char *cls, int64_t keep_ms, const char *by, int64_t now_ms) {
  sqlite3_stmt *st = s->st[ST_RET_SET];
  int rc = SQLITE_OK;
  bind_text(st, 1, cls, &rc);
  bind_i64(st, 2, keep_ms, &rc);
  bind_text(st, 3, by, &rc);
  bind_i64(st, 4, now_ms, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  done(st);
  return rc == SQLITE_DONE ? 0 : constraint_fail(s, "retention_set", rc);
}

int store_hold_set(broker_store_t *s, int64_t ticket, const char *reason, const char *by, int64_t now_ms) {
  sqlite3_stmt *st = s->st[ST_HOLD_SET];
  int rc = SQLITE_OK;
  bind_i64(st, 1, ticket, &rc);
  bind_text(st, 2, reason, &rc);
  bind_text(st, 3, by, &rc);
  bind_i64(st, 4, now_ms, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  done(st);
  if (rc == SQLITE_DONE) return 0;
  if (rc == SQLITE_CONSTRAINT_PRIMARYKEY) return -EEXIST;
  if (rc == SQLITE_CONSTRAINT_FOREIGNKEY) return TT_ENOTFOUND;
  return constraint_fail(s, "hold_set", rc);
}

int store_hold_clear(broker_store_t *s, int64_t ticket) {
  sqlite3_stmt *st = s->st[ST_HOLD_CLEAR];
  int rc = SQLITE_OK;
  bind_i64(st, 1, ticket, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  done(st);
  if (rc != SQLITE_DONE) return sql_fail(s, "hold_clear", rc);
  return sqlite3_changes(s->db) ? 0 : TT_ENOTFOUND;
}

int store_holds_count(broker_store_t *s, uint32_t *n) {
  sqlite3_stmt *st = s->st[ST_HOLD_COUNT];
  int rc = sqlite3_step(st);
  *n = rc == SQLITE_ROW ? (uint32_t)sqlite3_column_int64(st, 0) : 0;
  done(st);
  return rc == SQLITE_ROW ? 0 : sql_fail(s, "holds_count", rc);
}

int store_retention_recordings(broker_store_t *s, const char *data_dir, int64_t cutoff_ms, uint32_t budget,
                               int64_t now_ms, uint32_t *n) {
  *n = 0;
  int64_t ids[256];
  char paths[256][512];
  if (budget > 256) budget = 256;
  sqlite3_stmt *st = s->st[ST_RET_RECORDINGS];
  int rc = SQLITE_OK;
  uint32_t k = 0;
  bind_i64(st, 1, cutoff_ms, &rc);
  bind_i64(st, 2, budget, &rc);
  while (rc == SQLITE_OK || rc == SQLITE_ROW) {
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW || k >= budget) break;
    ids[k] = sqlite3_column_int64(st, 0);
    col_text(st, 1, paths[k], sizeof paths[k]);
    k++;
  }
  done(st);
  if (rc != SQLITE_DONE && rc != SQLITE_ROW) return sql_fail(s, "retention_recordings", rc);
  for (uint32_t i = 0; i < k; i++) {
    if (store_recording_unlink(data_dir, paths[i]) != 0) continue; /* tried again at the next sweep */
    st = s->st[ST_RET_RECORDING_EXPIRE];
    rc = SQLITE_OK;
    bind_i64(st, 1, ids[i], &rc);
    bind_i64(st, 2, now_ms, &rc);
    if (rc == SQLITE_OK) rc = sqlite3_step(st);
    done(st);
    if (rc != SQLITE_DONE) return sql_fail(s, "recording_expire", rc);
    (*n)++;
  }
  return 0;
}

int store_recording_unlink(const char *data_dir, const char *path) {
  /* The path is the store's own, "recordings/R-<id>.cast.zst", and nothing else: a row a
   * writer to the store edited never names another file of the data directory. */
  const char *p = path;
  if (strncmp(p, "recordings/R-", 13) != 0) return 0;
  p += 13;
  if (*p < '1' || *p > '9') return 0;
  while (*p >= '0' && *p <= '9') p++;
  if (strcmp(p, ".cast.zst") != 0 || p - path > 13 + 19) return 0;
  char full[1100];
  int fn = snprintf(full, sizeof full, "%.511s/%.511s", data_dir, path);
  if (fn < 0 || (size_t)fn >= sizeof full) return ENAMETOOLONG;
  if (unlink(full) == 0 || errno == ENOENT) return 0;
  int e = errno;
  TT_WARN(MOD, "recording not deleted", "file=%s err=%s", full, strerror(e));
  return e;
}

int store_retention_diagnostics(broker_store_t *s, int64_t cutoff_ms, uint32_t budget, uint32_t *n) {
  sqlite3_stmt *st = s->st[ST_RET_DIAG];
  int rc = SQLITE_OK;
  bind_i64(st, 1, cutoff_ms, &rc);
  bind_i64(st, 2, budget, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  done(st);
  *n = rc == SQLITE_DONE ? (uint32_t)sqlite3_changes(s->db) : 0;
  return rc == SQLITE_DONE ? 0 : sql_fail(s, "retention_diagnostics", rc);
}

int store_audit_base(broker_store_t *s, int64_t *entries, uint8_t head[32]) {
  sqlite3_stmt *st = s->st[ST_AUDIT_BASE_GET];
  int rc = sqlite3_step(st);
  *entries = 0;
  memset(head, 0, 32);
  if (rc == SQLITE_ROW) {
    *entries = sqlite3_column_int64(st, 0);
    const void *h = sqlite3_column_blob(st, 1);
    if (h && sqlite3_column_bytes(st, 1) == 32) memcpy(head, h, 32);
  }
  done(st);
  return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : sql_fail(s, "audit_base", rc);
}

int store_audit_cut_point(broker_store_t *s, int64_t cutoff_ms, int64_t *entries, uint8_t head[32]) {
  *entries = 0;
  int64_t base = 0;
  uint8_t bh[32];
  int ret = store_audit_base(s, &base, bh);
  if (ret) return ret;
  /* A held ticket keeps the audit from its creation on. */
  sqlite3_stmt *st = s->st[ST_HOLD_EARLIEST];
  int rc = sqlite3_step(st);
  if (rc == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL && sqlite3_column_int64(st, 0) < cutoff_ms)
    cutoff_ms = sqlite3_column_int64(st, 0);
  done(st);
  if (rc != SQLITE_ROW) return sql_fail(s, "hold_earliest", rc);
  st = s->st[ST_AUDIT_CUT_POINT];
  rc = SQLITE_OK;
  bind_i64(st, 1, cutoff_ms, &rc);
  bind_i64(st, 2, base, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) {
    const void *h = sqlite3_column_blob(st, 1);
    if (h && sqlite3_column_bytes(st, 1) == 32) {
      *entries = sqlite3_column_int64(st, 0);
      memcpy(head, h, 32);
    }
  }
  done(st);
  return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : sql_fail(s, "audit_cut_point", rc);
}

int store_audit_prune(broker_store_t *s, int64_t entries, const uint8_t head[32], const tt_audit_checkpoint_t *cut,
                      const char *line, uint32_t budget, uint32_t *removed) {
  *removed = 0;
  int ret = tx_begin(s);
  if (ret) return ret;
  ret = store_audit_gate(s, true);
  if (ret == 0 && entries > 0) { /* a new base: the signed line and the row in one transaction */
    sqlite3_stmt *st = s->st[ST_AUDIT_BASE_SET];
    int rc = SQLITE_OK;
    bind_i64(st, 1, entries, &rc);
    bind_hash(st, 2, head, &rc);
    bind_i64(st, 3, cut->ts_ms, &rc);
    if (rc == SQLITE_OK) rc = sqlite3_step(st);
    done(st);
    ret = rc == SQLITE_DONE ? store_checkpoint_add(s, cut, line) : sql_fail(s, "audit_base_set", rc);
  }
  int64_t base = 0;
  uint8_t bh[32];
  if (ret == 0) ret = store_audit_base(s, &base, bh);
  if (ret == 0 && base > 0) {
    sqlite3_stmt *st = s->st[ST_AUDIT_PRUNE];
    int rc = SQLITE_OK;
    bind_i64(st, 1, base, &rc);
    bind_i64(st, 2, budget, &rc);
    if (rc == SQLITE_OK) rc = sqlite3_step(st);
    done(st);
    if (rc == SQLITE_DONE) *removed = (uint32_t)sqlite3_changes(s->db);
    else ret = sql_fail(s, "audit_prune", rc);
    if (ret == 0 && *removed) {
      st = s->st[ST_AUDIT_PRUNE_VALUES];
      rc = SQLITE_OK;
      bind_i64(st, 1, base, &rc);
      if (rc == SQLITE_OK) rc = sqlite3_step(st);
      done(st);
      if (rc != SQLITE_DONE) ret = sql_fail(s, "audit_prune_values", rc);
    }
  }
  if (ret == 0) ret = store_audit_gate(s, false);
  if (ret == 0) ret = tx_commit(s);
  else tx_rollback(s);
  return ret;
}
