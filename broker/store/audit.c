/* The audit log's persistence: append-only rows of the hash chain, listed and walked. The
 * hash format itself is the audit's (tt/audit.h), not this file's. */
#include "internal.h"
#include "tt/audit.h"

#define AUDIT_COLS "id, ts_ms, actor, action, target, detail, prev_hash, hash, format"

static const store_sql_t k_sql[] = {
  {ST_AUDIT_TAIL, "SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1"},
  {ST_AUDIT_INSERT, "INSERT INTO audit(" AUDIT_COLS ") VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 2)"},
  {ST_AUDIT_VALUE_INSERT, "INSERT INTO audit_values(entry, n, salt, digest, erased) VALUES(?1, ?2, ?3, ?4, ?5)"},
  {ST_AUDIT_VALUES, "SELECT n, salt, digest, erased, digest2 FROM audit_values WHERE entry = ?1 ORDER BY n"},
  {ST_AUDIT_FORMAT1, "SELECT count(*) FROM audit WHERE format = 1"},
  {ST_AUDIT_REHASH, "UPDATE audit SET format = 2, prev_hash = ?2, hash = ?3 WHERE id = ?1"},
  {ST_AUDIT_GATE, "UPDATE audit_gate SET open = ?1 WHERE one = 1"},
  {ST_SIEM_GET, "SELECT seq FROM siem_cursor WHERE target = ?1"},
  {ST_SIEM_PUT, "INSERT INTO siem_cursor(target, seq, updated_ms) VALUES(?1, ?2, ?3)"
                " ON CONFLICT(target) DO UPDATE SET seq = max(seq, ?2), updated_ms = ?3"},
  {ST_AUDIT_LIST, "SELECT " AUDIT_COLS " FROM audit WHERE id > ?4 AND ts_ms >= ?1"
      " ORDER BY id LIMIT ?2"},
  {ST_AUDIT_LIST_DEVICE, "SELECT " AUDIT_COLS " FROM audit"
      " WHERE id > ?4 AND (actor = ?3 OR target = ?3) AND ts_ms >= ?1"
      " ORDER BY id LIMIT ?2"},
  {ST_CP_INSERT, "INSERT INTO audit_checkpoints(entries, head, ts_ms, line) VALUES(?1, ?2, ?3, ?4)"},
  {ST_CP_LIST, "SELECT line FROM audit_checkpoints ORDER BY id"},
  {ST_AUDIT_WALK, "SELECT " AUDIT_COLS " FROM audit ORDER BY id"},
  {ST_AUDIT_RELEASED_BEFORE, "SELECT entry, n, digest, erased, digest2 FROM audit_values WHERE entry <= ?1"
                             " AND erased > ?1 ORDER BY entry, n"},
  {ST_AUDIT_RELEASED_LIST, "SELECT entry, n, digest, erased, digest2 FROM audit_values WHERE entry > ?2"
                           " AND entry <= (SELECT coalesce(max(entries), 0) FROM audit_base)"
                           " AND erased > (SELECT coalesce(max(entries), 0) FROM audit_base) ORDER BY entry, n"},
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

static int values_put(broker_store_t *s, int64_t id, const tt_audit_value_t *v, size_t n) {
  sqlite3_stmt *st = s->st[ST_AUDIT_VALUE_INSERT];
  for (size_t i = 0; i < n; i++) {
    int rc = SQLITE_OK;
    bind_i64(st, 1, id, &rc);
    bind_i64(st, 2, (int64_t)i, &rc);
    if (rc == SQLITE_OK)
      rc = v[i].has_salt ? sqlite3_bind_blob(st, 3, v[i].salt, TT_AUDIT_SALT_LEN, SQLITE_TRANSIENT)
                         : sqlite3_bind_null(st, 3);
    bind_hash(st, 4, v[i].digest, &rc);
    bind_i64(st, 5, v[i].erased, &rc);
    if (rc == SQLITE_OK) rc = sqlite3_step(st);
    done(st);
    if (rc != SQLITE_DONE) return sql_fail(s, "audit_values", rc);
  }
  return 0;
}

/* Each value's salt and digest, new; then the entry's hash. */
static int entry_hash2(const uint8_t prev[32], int64_t id, int64_t ts_ms, const char *actor, const char *action,
                       const char *target, const char *detail, tt_audit_value_t *v, size_t *n, uint8_t h[32]) {
  tt_audit_pair_t p[TT_AUDIT_VALUES_MAX];
  *n = tt_audit_split(actor, target, detail, p);
  for (size_t i = 0; i < *n; i++) {
    int rc = tt_audit_value_new((uint32_t)i, p[i].val, p[i].vlen, &v[i]);
    if (rc) return rc;
  }
  return tt_audit_hash2(prev, id, ts_ms, action, strlen(action), p, v, *n, h);
}

/* Fields longer than store_audit_t holds are refused: a listed entry must carry exactly the
 * bytes its hash covers. */
int store_audit_append(broker_store_t *s, int64_t ts_ms, const char *actor, const char *action,
                       const char *target, const char *detail_json, int64_t *id_out) {
  if (id_out != NULL) *id_out = 0;
  const char *f[4] = {actor != NULL ? actor : "", action != NULL ? action : "",
                      target != NULL ? target : "", detail_json != NULL ? detail_json : "{}"};
  const size_t cap[4] = {STORE_NAME_MAX, STORE_NAME_MAX, STORE_NAME_MAX,
                         sizeof(((store_audit_t *)0)->detail)};
  for (int i = 0; i < 4; i++)
    if (strlen(f[i]) >= cap[i]) return TT_ETOOBIG;
  int64_t id = s->audit_last_id + 1;
  uint8_t h[32];
  tt_audit_value_t v[TT_AUDIT_VALUES_MAX];
  size_t nv = 0;
  int ret = entry_hash2(s->audit_last_hash, id, ts_ms, f[0], f[1], f[2], f[3], v, &nv, h);
  if (ret != 0) return ret;
  /* The entry and its values in one savepoint. The explicit id makes a second writer's append
   * (or a stale tail) collide instead of silently forking the chain. */
  ret = tx_begin(s);
  if (ret) return ret;
  sqlite3_stmt *st = s->st[ST_AUDIT_INSERT];
  int rc = SQLITE_OK;
  bind_i64(st, 1, id, &rc);
  bind_i64(st, 2, ts_ms, &rc);
  for (int i = 0; i < 4; i++) bind_text(st, 3 + i, f[i], &rc);
  bind_hash(st, 7, s->audit_last_hash, &rc);
  bind_hash(st, 8, h, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  done(st);
  ret = rc == SQLITE_DONE ? values_put(s, id, v, nv) : sql_fail(s, "audit_append", rc);
  if (ret == 0) ret = tx_commit(s);
  else tx_rollback(s);
  if (ret) return ret;
  s->audit_last_id = id;
  memcpy(s->audit_last_hash, h, 32);
  if (id_out != NULL) *id_out = id;
  return 0;
}

/* An entry's values (format 2), in order; a row missing or out of place leaves nvalues short,
 * which the walk reports as an edit. */
static int values_get(broker_store_t *s, int64_t id, tt_audit_value_t *v, size_t *n) {
  sqlite3_stmt *st = s->st[ST_AUDIT_VALUES];
  int rc = SQLITE_OK;
  *n = 0;
  bind_i64(st, 1, id, &rc);
  while (rc == SQLITE_OK || rc == SQLITE_ROW) {
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) break;
    if (*n >= TT_AUDIT_VALUES_MAX || sqlite3_column_int64(st, 0) != (int64_t)*n) continue;
    tt_audit_value_t *x = &v[*n];
    memset(x, 0, sizeof(*x));
    const void *salt = sqlite3_column_blob(st, 1), *dg = sqlite3_column_blob(st, 2);
    x->has_salt = salt && sqlite3_column_bytes(st, 1) == TT_AUDIT_SALT_LEN;
    if (x->has_salt) memcpy(x->salt, salt, TT_AUDIT_SALT_LEN);
    if (dg && sqlite3_column_bytes(st, 2) == 32) memcpy(x->digest, dg, 32);
    x->erased = sqlite3_column_int64(st, 3);
    const void *d2 = sqlite3_column_blob(st, 4);
    x->has_digest2 = d2 && sqlite3_column_bytes(st, 4) == 32;
    if (x->has_digest2) memcpy(x->digest2, d2, 32);
    (*n)++;
  }
  done(st);
  return rc == SQLITE_DONE ? 0 : sql_fail(s, "audit_values_get", rc);
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
  e->format = (int)sqlite3_column_int64(st, 8);
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
    if (e.format == 2 && (ret = values_get(s, e.id, e.values, &e.nvalues)) != 0) break;
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

/* Values of pruned entries that an erasure after the cut released: its commitment counts them. */
static int walk_released_before(broker_store_t *s, tt_audit_walk_t *w) {
  sqlite3_stmt *st = s->st[ST_AUDIT_RELEASED_BEFORE];
  int rc = SQLITE_OK, ret = 0;
  bind_i64(st, 1, w->base, &rc);
  while (ret == 0 && (rc == SQLITE_OK || rc == SQLITE_ROW)) {
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) break;
    const void *dg = sqlite3_column_blob(st, 2), *d2 = sqlite3_column_blob(st, 4);
    uint8_t d[32] = {0}, e2[32] = {0};
    if (dg && sqlite3_column_bytes(st, 2) == 32) memcpy(d, dg, 32);
    if (d2 && sqlite3_column_bytes(st, 4) == 32) memcpy(e2, d2, 32);
    ret = tt_audit_walk_released(w, sqlite3_column_int64(st, 0), (uint32_t)sqlite3_column_int64(st, 1), d, e2,
                                 sqlite3_column_int64(st, 3));
  }
  done(st);
  if (ret == 0 && rc != SQLITE_DONE) ret = sql_fail(s, "audit_released_before", rc);
  return ret;
}

int store_audit_released_before(broker_store_t *s, int64_t after_id, uint32_t limit, store_audit_cb cb, void *ctx) {
  sqlite3_stmt *st = s->st[ST_AUDIT_RELEASED_LIST];
  int rc = SQLITE_OK, ret = 0;
  uint32_t sent = 0;
  store_audit_t e;
  memset(&e, 0, sizeof e);
  bind_i64(st, 2, after_id, &rc);
  while (ret == 0 && (rc == SQLITE_OK || rc == SQLITE_ROW)) {
    rc = sqlite3_step(st);
    int64_t entry = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    if (e.id && entry != e.id) { /* the entry before is whole */
      ret = cb(ctx, &e);
      if (ret == 0 && limit && ++sent >= limit) break;
      memset(&e, 0, sizeof e);
    }
    if (rc != SQLITE_ROW || ret) break;
    if (e.nvalues >= TT_AUDIT_VALUES_MAX) continue;
    e.id = entry;
    e.pruned = true;
    e.format = 2;
    tt_audit_value_t *v = &e.values[e.nvalues];
    const void *dg = sqlite3_column_blob(st, 2), *d2 = sqlite3_column_blob(st, 4);
    if (dg && sqlite3_column_bytes(st, 2) == 32) memcpy(v->digest, dg, 32);
    v->has_digest2 = d2 && sqlite3_column_bytes(st, 4) == 32;
    if (v->has_digest2) memcpy(v->digest2, d2, 32);
    v->erased = sqlite3_column_int64(st, 3);
    e.value_n[e.nvalues++] = (uint8_t)sqlite3_column_int64(st, 1);
  }
  done(st);
  if (ret == 0 && rc != SQLITE_DONE && rc != SQLITE_ROW) ret = sql_fail(s, "audit_released_list", rc);
  return ret;
}

int store_audit_walk(broker_store_t *s, tt_audit_walk_t *w) {
  sqlite3_stmt *st = s->st[ST_AUDIT_WALK];
  int rc, ret = 0;
  if (w->based && (ret = walk_released_before(s, w)) != 0) return ret;
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
    int64_t id = sqlite3_column_int64(st, 0), ts = sqlite3_column_int64(st, 1);
    if (sqlite3_column_int64(st, 8) != 2) {
      ret = tt_audit_walk_entry(w, id, ts, fld, flen, ph, hh);
    } else {
      tt_audit_pair_t p[TT_AUDIT_VALUES_MAX];
      tt_audit_value_t v[TT_AUDIT_VALUES_MAX];
      size_t np = tt_audit_split(fld[0], fld[2], fld[3], p), nv = 0;
      ret = values_get(s, id, v, &nv);
      if (ret != 0) break;
      if (nv != np) {
        tt_audit_walk_problem(w, id, "entry %lld was edited: it has %zu values and %zu salts and digests", (long long)id,
                              np, nv);
        for (size_t i = nv; i < np; i++) memset(&v[i], 0, sizeof(v[i])); /* the hash will not hold */
      }
      ret = tt_audit_walk_entry2(w, id, ts, fld[1], flen[1], p, v, np, ph, hh);
    }
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
  tt_audit_walk_free(&w);
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

/* ---- the one-time rechain ---------------------------------------------------------------- */

int store_audit_format1(broker_store_t *s, int64_t *count) {
  sqlite3_stmt *st = s->st[ST_AUDIT_FORMAT1];
  int rc = sqlite3_step(st);
  *count = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
  done(st);
  return rc == SQLITE_ROW ? 0 : sql_fail(s, "audit_format1", rc);
}

int store_audit_gate(broker_store_t *s, bool open) {
  sqlite3_stmt *st = s->st[ST_AUDIT_GATE];
  int rc = SQLITE_OK;
  bind_i64(st, 1, open ? 1 : 0, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  done(st);
  return rc == SQLITE_DONE ? 0 : sql_fail(s, "audit_gate", rc);
}

int store_audit_rechain(broker_store_t *s, store_rechain_sign_fn sign, void *ctx, tt_audit_checkpoint_t *cp,
                        char *line, size_t cap) {
  int ret = tx_begin(s);
  if (ret) return ret;
  ret = store_audit_gate(s, true);
  uint8_t prev[32] = {0}, old_head[32] = {0};
  int64_t n = 0;
  sqlite3_stmt *st = s->st[ST_AUDIT_WALK];
  int rc = SQLITE_ROW;
  while (ret == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
    int64_t id = sqlite3_column_int64(st, 0), ts = sqlite3_column_int64(st, 1);
    const char *f[4];
    for (int i = 0; i < 4; i++) {
      f[i] = (const char *)sqlite3_column_text(st, 2 + i);
      if (!f[i]) f[i] = "";
    }
    const void *hh = sqlite3_column_blob(st, 7);
    if (hh && sqlite3_column_bytes(st, 7) == 32) memcpy(old_head, hh, 32);
    uint8_t h[32];
    tt_audit_value_t v[TT_AUDIT_VALUES_MAX];
    size_t nv = 0;
    if (sqlite3_column_int64(st, 8) == 2) { /* written since: keep its salts, link it anew */
      tt_audit_pair_t p[TT_AUDIT_VALUES_MAX];
      size_t np = tt_audit_split(f[0], f[2], f[3], p);
      ret = values_get(s, id, v, &nv);
      if (ret == 0 && nv != np) ret = TT_EIO;
      if (ret == 0) ret = tt_audit_hash2(prev, id, ts, f[1], strlen(f[1]), p, v, np, h);
    } else {
      ret = entry_hash2(prev, id, ts, f[0], f[1], f[2], f[3], v, &nv, h);
      if (ret == 0) ret = values_put(s, id, v, nv);
    }
    if (ret) break;
    sqlite3_stmt *up = s->st[ST_AUDIT_REHASH];
    rc = SQLITE_OK;
    bind_i64(up, 1, id, &rc);
    bind_hash(up, 2, prev, &rc);
    bind_hash(up, 3, h, &rc);
    if (rc == SQLITE_OK) rc = sqlite3_step(up);
    done(up);
    if (rc != SQLITE_DONE) {
      ret = sql_fail(s, "audit_rehash", rc);
      break;
    }
    memcpy(prev, h, 32);
    n = id;
    rc = SQLITE_ROW;
  }
  done(st);
  if (ret == 0 && rc != SQLITE_DONE && rc != SQLITE_ROW) ret = sql_fail(s, "audit_rechain", rc);
  if (ret == 0) ret = store_audit_gate(s, false);
  if (ret == 0) {
    cp->kind = TT_AUDIT_CP_RECHAIN;
    cp->entries = n;
    memcpy(cp->from, old_head, 32);
    memcpy(cp->head, prev, 32);
    ret = sign(ctx, cp, line, cap);
  }
  if (ret == 0) ret = store_checkpoint_add(s, cp, line);
  if (ret == 0) ret = tx_commit(s);
  else tx_rollback(s);
  if (ret == 0) {
    s->audit_last_id = n;
    memcpy(s->audit_last_hash, prev, 32);
  }
  return ret;
}

/* ---- the SIEM forwarder's cursor ------------------------------------------------------------ */

int store_siem_cursor_get(broker_store_t *s, const char *target, int64_t *seq) {
  sqlite3_stmt *st = s->st[ST_SIEM_GET];
  int rc = SQLITE_OK;
  *seq = 0;
  bind_text(st, 1, target, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) *seq = sqlite3_column_int64(st, 0);
  done(st);
  return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : sql_fail(s, "siem_cursor_get", rc);
}

/* Only forward: a late write of an older cursor never takes it back. */
int store_siem_cursor_put(broker_store_t *s, const char *target, int64_t seq, int64_t now_ms) {
  sqlite3_stmt *st = s->st[ST_SIEM_PUT];
  int rc = SQLITE_OK;
  bind_text(st, 1, target, &rc);
  bind_i64(st, 2, seq, &rc);
  bind_i64(st, 3, now_ms, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  done(st);
  return rc == SQLITE_DONE ? 0 : constraint_fail(s, "siem_cursor_put", rc);
}
