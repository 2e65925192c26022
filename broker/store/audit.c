/* The audit log's persistence: append-only rows of the hash chain, listed and walked. The
 * hash format itself is the audit's (tt/audit.h), not this file's. */
#include "internal.h"
#include "tt/audit.h"

#define AUDIT_COLS "id, ts_ms, actor, action, target, detail, prev_hash, hash"

static const store_sql_t k_sql[] = {
  {ST_AUDIT_TAIL, "SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1"},
  {ST_AUDIT_INSERT, "INSERT INTO audit(" AUDIT_COLS ") VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"},
  {ST_AUDIT_LIST, "SELECT " AUDIT_COLS " FROM audit WHERE id > ?4 AND ts_ms >= ?1"
      " ORDER BY id LIMIT ?2"},
  {ST_AUDIT_LIST_DEVICE, "SELECT " AUDIT_COLS " FROM audit"
      " WHERE id > ?4 AND (actor = ?3 OR target = ?3) AND ts_ms >= ?1"
      " ORDER BY id LIMIT ?2"},
  {ST_CP_INSERT, "INSERT INTO audit_checkpoints(entries, head, ts_ms, line) VALUES(?1, ?2, ?3, ?4)"},
  {ST_CP_LIST, "SELECT line FROM audit_checkpoints ORDER BY id"},
  {ST_AUDIT_WALK, "SELECT " AUDIT_COLS " FROM audit ORDER BY id"},
};

int store_prepare_audit(broker_store_t *s) { return store_prepare(s, k_sql, sizeof k_sql / sizeof k_sql[0]); }

/* At open, and after a rolled-back batch: the chain continues from what is on disk. */
int store_audit_load_tail(broker_store_t *s) {
  sqlite3_stmt *st = s->st[ST_AUDIT_TAIL];
  int rc = sqlite3_step(st);
  int ret = 0;
  if (rc == SQLITE_ROW) {
    const void *h = sqlite3_column_blob(st, 1);
    if (h == NULL || sqlite3_column_bytes(st, 1) != 32) {
      TT_ERROR(MOD, "audit tail has a malformed hash", "id=%lld", (long long)sqlite3_column_int64(st, 0));
      ret = TT_EIO;
    } else {
      s->audit_last_id = sqlite3_column_int64(st, 0);
      memcpy(s->audit_last_hash, h, 32);
    }
  } else if (rc == SQLITE_DONE) {
    s->audit_last_id = 0;
    memset(s->audit_last_hash, 0, sizeof s->audit_last_hash);
  } else {
    ret = sql_fail(s, "audit_tail", rc);
  }
  done(st);
  return ret;
}

/* ---- audit ----------------------------------------------------------------------------- */

/* Fields longer than store_audit_t holds are refused: a listed entry must carry exactly the
 * bytes its hash covers. */
int store_audit_append(broker_store_t *s, int64_t ts_ms, const char *actor, const char *action,
                       const char *target, const char *detail_json, int64_t *id_out) {
  if (id_out != NULL) *id_out = 0;
  const char *f[4] = {actor != NULL ? actor : "", action != NULL ? action : "",
                      target != NULL ? target : "", detail_json != NULL ? detail_json : "{}"};
  const size_t cap[4] = {STORE_NAME_MAX, STORE_NAME_MAX, STORE_NAME_MAX,
                         sizeof(((store_audit_t *)0)->detail)};
  size_t flen[4];
  for (int i = 0; i < 4; i++) {
    flen[i] = strlen(f[i]);
    if (flen[i] >= cap[i]) return TT_ETOOBIG;
  }
  int64_t id = s->audit_last_id + 1;
  uint8_t h[32];
  int ret = tt_audit_hash(s->audit_last_hash, id, ts_ms, f, flen, h);
  if (ret != 0) return ret;
  /* One INSERT is its own transaction. The explicit id makes a second writer's append (or a
   * stale tail) collide instead of silently forking the chain. */
  sqlite3_stmt *st = s->st[ST_AUDIT_INSERT];
  int rc = SQLITE_OK;
  bind_i64(st, 1, id, &rc);
  bind_i64(st, 2, ts_ms, &rc);
  for (int i = 0; i < 4; i++) bind_text(st, 3 + i, f[i], &rc);
  bind_hash(st, 7, s->audit_last_hash, &rc);
  bind_hash(st, 8, h, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  done(st);
  if (rc != SQLITE_DONE) return sql_fail(s, "audit_append", rc);
  s->audit_last_id = id;
  memcpy(s->audit_last_hash, h, 32);
  if (id_out != NULL) *id_out = id;
  return 0;
}

static void audit_from_row(sqlite3_stmt *st, store_audit_t *e) {
  memset(e, 0, sizeof *e);
  e->id = sqlite3_column_int64(st, 0);
  e->ts_ms = sqlite3_column_int64(st, 1);
  col_text(st, 2, e->actor, sizeof e->actor);
  col_text(st, 3, e->action, sizeof e->action);
  col_text(st, 4, e->target, sizeof e->target);
  col_text(st, 5, e->detail, sizeof e->detail);
  const void *p = sqlite3_column_blob(st, 6);
  if (p != NULL && sqlite3_column_bytes(st, 6) == 32) memcpy(e->prev_hash, p, 32);
  p = sqlite3_column_blob(st, 7);
  if (p != NULL && sqlite3_column_bytes(st, 7) == 32) memcpy(e->hash, p, 32);
}

/* As with the device list, the callback must not list the audit again; non-zero stops. */
int store_audit_list(broker_store_t *s, const store_audit_filter_t *f, store_audit_cb cb, void *ctx) {
  bool by_dev = f->device != NULL;
  sqlite3_stmt *st = s->st[by_dev ? ST_AUDIT_LIST_DEVICE : ST_AUDIT_LIST];
  int rc = SQLITE_OK;
  bind_i64(st, 1, f->since_ms == 0 ? INT64_MIN : f->since_ms, &rc);
  bind_i64(st, 2, f->limit == 0 ? -1 : (int64_t)f->limit, &rc);
  if (by_dev) bind_text(st, 3, f->device, &rc);
  bind_i64(st, 4, f->after_id, &rc);
  int ret = 0;
  while (rc == SQLITE_OK || rc == SQLITE_ROW) {
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) break;
    store_audit_t e;
    audit_from_row(st, &e);
    ret = cb(ctx, &e);
    if (ret != 0) break;
  }
  done(st);
  if (ret == 0 && rc != SQLITE_DONE) ret = sql_fail(s, "audit_list", rc);
  return ret;
}

/* Recomputes every hash from the stored fields and the previous entry's hash, and checks
 * the ids run 1, 2, 3 ... A deleted, inserted, reordered or edited row breaks the chain at
 * that row. (Rows cut from the end leave a shorter intact chain; the tail the broker logs
 * or exports is what anchors it.) All rows are counted; the first bad one is reported. */
void store_audit_head(broker_store_t *s, int64_t *id, uint8_t hash[32]) {
  *id = s->audit_last_id;
  memcpy(hash, s->audit_last_hash, 32);
}

int store_audit_walk(broker_store_t *s, tt_audit_walk_t *w) {
  sqlite3_stmt *st = s->st[ST_AUDIT_WALK];
  int rc, ret = 0;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    const char *fld[4];
    size_t flen[4];
    for (int i = 0; i < 4; i++) {
      fld[i] = (const char *)sqlite3_column_text(st, 2 + i);
      flen[i] = (size_t)sqlite3_column_bytes(st, 2 + i);
      if (fld[i] == NULL) fld[i] = "";
    }
    const void *ph = sqlite3_column_blob(st, 6);
    const void *hh = sqlite3_column_blob(st, 7);
    if (ph && sqlite3_column_bytes(st, 6) != 32) ph = NULL;
    if (hh && sqlite3_column_bytes(st, 7) != 32) hh = NULL;
    ret = tt_audit_walk_entry(w, sqlite3_column_int64(st, 0), sqlite3_column_int64(st, 1), fld, flen, ph, hh);
    if (ret != 0) break;
  }
  done(st);
  if (ret == 0 && rc != SQLITE_DONE) ret = sql_fail(s, "audit_walk", rc);
  if (ret == 0) tt_audit_walk_finish(w);
  return ret;
}

int store_audit_verify(broker_store_t *s, int64_t *count, int64_t *first_bad) {
  tt_audit_walk_t w;
  tt_audit_walk_init(&w, NULL, 0);
  int rc = store_audit_walk(s, &w);
  *count = w.count;
  *first_bad = w.first_bad;
  return rc;
}

int store_checkpoint_add(broker_store_t *s, const tt_audit_checkpoint_t *cp, const char *line) {
  sqlite3_stmt *st = s->st[ST_CP_INSERT];
  int rc = SQLITE_OK;
  bind_i64(st, 1, cp->entries, &rc);
  bind_hash(st, 2, cp->head, &rc);
  bind_i64(st, 3, cp->ts_ms, &rc);
  bind_text(st, 4, line, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  done(st);
  return rc == SQLITE_DONE ? 0 : sql_fail(s, "checkpoint_add", rc);
}

int store_checkpoints(broker_store_t *s, store_checkpoint_cb cb, void *ctx) {
  sqlite3_stmt *st = s->st[ST_CP_LIST];
  int rc, ret = 0;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    const char *line = (const char *)sqlite3_column_text(st, 0);
    ret = cb(ctx, line ? line : "");
    if (ret != 0) break;
  }
  done(st);
  if (ret == 0 && rc != SQLITE_DONE) ret = sql_fail(s, "checkpoints", rc);
  return ret;
}

int store_checkpoint_commit(broker_store_t *s, const tt_audit_checkpoint_t *cp, const char *line) {
  int rc = tx_begin(s);
  if (rc) return rc;
  rc = store_checkpoint_add(s, cp, line);
  if (rc == 0) rc = tx_commit(s);
  else tx_rollback(s);
  return rc;
}
