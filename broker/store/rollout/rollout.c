/* Agent releases and rollouts (store.h, schema 22): the rows. What a rollout does with them
 * is broker/rollout/'s; the package files are DATA_DIR/releases/SHA.pkg, kept by the broker. */
#include "../internal.h"

#define RLS_COLS "sha256, package, version, arch, channel, size, downgrade, key, manifest, added_by, added_ms"
#define RO_COLS                                                                                       \
  "id, version, channel, grp, canary_pct, wave_pct, pause_on, health_s, state, why, wave, waves, " \
  "failures, started_by, started_ms, updated_ms"
#define ROD_COLS "device, wave, state, reason, from_version, done, size, updated_ms"

static const store_sql_t k_sql[] = {
  {ST_RLS_INSERT, "INSERT INTO agent_releases(" RLS_COLS ") VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"},
  {ST_RLS_COUNT, "SELECT count(*) FROM agent_releases"},
  {ST_RLS_LIST, "SELECT " RLS_COLS " FROM agent_releases ORDER BY added_ms DESC, rowid DESC"},
  {ST_RLS_DELETE, "DELETE FROM agent_releases WHERE sha256 = ?1"},
  {ST_RO_INSERT, "INSERT INTO rollouts(version, channel, grp, canary_pct, wave_pct, pause_on, health_s, state,"
                 " why, wave, waves, failures, started_by, started_ms, updated_ms)"
                 " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"},
  {ST_RO_UPDATE, "UPDATE rollouts SET state = ?2, why = ?3, wave = ?4, failures = ?5, updated_ms = ?6 WHERE id = ?1"},
  {ST_RO_GET, "SELECT " RO_COLS " FROM rollouts WHERE id = ?1"},
  {ST_RO_LATEST, "SELECT " RO_COLS " FROM rollouts ORDER BY id DESC LIMIT 1"},
  {ST_RO_ACTIVE, "SELECT " RO_COLS " FROM rollouts WHERE state IN ('running', 'paused') ORDER BY id DESC LIMIT 1"},
  {ST_ROD_INSERT, "INSERT INTO rollout_devices(rollout, " ROD_COLS ") VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"},
  {ST_ROD_UPDATE, "UPDATE rollout_devices SET state = ?3, reason = ?4, from_version = ?5, done = ?6, size = ?7,"
                  " updated_ms = ?8 WHERE rollout = ?1 AND device = ?2"},
  {ST_ROD_LIST, "SELECT " ROD_COLS " FROM rollout_devices WHERE rollout = ?1 ORDER BY wave, device"},
};

int store_prepare_rollout(broker_store_t *s) { return store_prepare(s, k_sql, sizeof k_sql / sizeof k_sql[0]); }

/* ---- releases ------------------------------------------------------------------------------ */

int store_release_add(broker_store_t *s, const store_release_t *r) {
  sqlite3_stmt *st = s->st[ST_RLS_COUNT];
  int rc = sqlite3_step(st);
  int64_t n = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
  done(st);
  if (rc != SQLITE_ROW) return sql_fail(s, "release_count", rc);
  if (n >= TT_RELEASES_MAX) return TT_EFULL;
  st = s->st[ST_RLS_INSERT];
  rc = SQLITE_OK;
  bind_field(st, 1, r->sha256, sizeof r->sha256, &rc);
  bind_field(st, 2, r->package, sizeof r->package, &rc);
  bind_field(st, 3, r->version, sizeof r->version, &rc);
  bind_field(st, 4, r->arch, sizeof r->arch, &rc);
  bind_field(st, 5, r->channel, sizeof r->channel, &rc);
  bind_i64(st, 6, r->size, &rc);
  bind_i64(st, 7, r->downgrade, &rc);
  bind_field(st, 8, r->key, sizeof r->key, &rc);
  bind_field(st, 9, r->manifest, sizeof r->manifest, &rc);
  bind_field(st, 10, r->added_by, sizeof r->added_by, &rc);
  bind_i64(st, 11, r->added_ms, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  if (rc == SQLITE_CONSTRAINT) rc = sqlite3_extended_errcode(s->db);
  done(st);
  return rc == SQLITE_DONE ? 0 : insert_fail(s, "release_add", rc);
}

int store_release_list(broker_store_t *s, store_release_cb cb, void *ctx) {
  store_release_t *r = malloc(sizeof *r);
  if (!r) return TT_ENOMEM;
  sqlite3_stmt *st = s->st[ST_RLS_LIST];
  int rc, ret = 0;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    memset(r, 0, sizeof *r);
    col_text(st, 0, r->sha256, sizeof r->sha256);
    col_text(st, 1, r->package, sizeof r->package);
    col_text(st, 2, r->version, sizeof r->version);
    col_text(st, 3, r->arch, sizeof r->arch);
    col_text(st, 4, r->channel, sizeof r->channel);
    r->size = sqlite3_column_int64(st, 5);
    r->downgrade = sqlite3_column_int64(st, 6) != 0;
    col_text(st, 7, r->key, sizeof r->key);
    col_text(st, 8, r->manifest, sizeof r->manifest);
    col_text(st, 9, r->added_by, sizeof r->added_by);
    r->added_ms = sqlite3_column_int64(st, 10);
    if ((ret = cb(ctx, r)) != 0) break;
  }
  if (ret == 0 && rc != SQLITE_DONE) ret = sql_fail(s, "release_list", rc);
  done(st);
  free(r);
  return ret < 0 ? ret : 0;
}

int store_release_remove(broker_store_t *s, const char *sha256) {
  sqlite3_stmt *st = s->st[ST_RLS_DELETE];
  int rc = SQLITE_OK;
  bind_text(st, 1, sha256, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  done(st);
  return rc == SQLITE_DONE ? 0 : sql_fail(s, "release_remove", rc);
}

/* ---- rollouts ------------------------------------------------------------------------------ */

static int dev_insert(broker_store_t *s, int64_t id, const store_rollout_dev_t *d) {
  sqlite3_stmt *st = s->st[ST_ROD_INSERT];
  int rc = SQLITE_OK;
  bind_i64(st, 1, id, &rc);
  bind_field(st, 2, d->device, sizeof d->device, &rc);
  bind_i64(st, 3, d->wave, &rc);
  bind_field(st, 4, d->state, sizeof d->state, &rc);
  bind_field(st, 5, d->reason, sizeof d->reason, &rc);
  bind_field(st, 6, d->from_version, sizeof d->from_version, &rc);
  bind_i64(st, 7, d->done, &rc);
  bind_i64(st, 8, d->size, &rc);
  bind_i64(st, 9, d->updated_ms, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  done(st);
  return rc == SQLITE_DONE ? 0 : sql_fail(s, "rollout_dev_insert", rc);
}

int store_rollout_add(broker_store_t *s, store_rollout_t *r, const store_rollout_dev_t *d, size_t n) {
  int ret = tx_begin(s);
  if (ret) return ret;
  sqlite3_stmt *st = s->st[ST_RO_INSERT];
  int rc = SQLITE_OK;
  bind_field(st, 1, r->version, sizeof r->version, &rc);
  bind_field(st, 2, r->channel, sizeof r->channel, &rc);
  bind_field(st, 3, r->group, sizeof r->group, &rc);
  bind_i64(st, 4, r->canary_pct, &rc);
  bind_i64(st, 5, r->wave_pct, &rc);
  bind_i64(st, 6, r->pause_on, &rc);
  bind_i64(st, 7, r->health_s, &rc);
  bind_field(st, 8, r->state, sizeof r->state, &rc);
  bind_field(st, 9, r->why, sizeof r->why, &rc);
  bind_i64(st, 10, r->wave, &rc);
  bind_i64(st, 11, r->waves, &rc);
  bind_i64(st, 12, r->failures, &rc);
  bind_field(st, 13, r->started_by, sizeof r->started_by, &rc);
  bind_i64(st, 14, r->started_ms, &rc);
  bind_i64(st, 15, r->updated_ms, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  done(st);
  if (rc != SQLITE_DONE) ret = constraint_fail(s, "rollout_insert", rc);
  else r->id = sqlite3_last_insert_rowid(s->db);
  for (size_t i = 0; ret == 0 && i < n; i++) ret = dev_insert(s, r->id, &d[i]);
  if (ret == 0) ret = tx_commit(s);
  if (ret) tx_rollback(s);
  return ret;
}

int store_rollout_update(broker_store_t *s, const store_rollout_t *r) {
  sqlite3_stmt *st = s->st[ST_RO_UPDATE];
  int rc = SQLITE_OK;
  bind_i64(st, 1, r->id, &rc);
  bind_field(st, 2, r->state, sizeof r->state, &rc);
  bind_field(st, 3, r->why, sizeof r->why, &rc);
  bind_i64(st, 4, r->wave, &rc);
  bind_i64(st, 5, r->failures, &rc);
  bind_i64(st, 6, r->updated_ms, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  done(st);
  return rc == SQLITE_DONE ? 0 : constraint_fail(s, "rollout_update", rc);
}

int store_rollout_dev_update(broker_store_t *s, int64_t rollout, const store_rollout_dev_t *d) {
  sqlite3_stmt *st = s->st[ST_ROD_UPDATE];
  int rc = SQLITE_OK;
  bind_i64(st, 1, rollout, &rc);
  bind_field(st, 2, d->device, sizeof d->device, &rc);
  bind_field(st, 3, d->state, sizeof d->state, &rc);
  bind_field(st, 4, d->reason, sizeof d->reason, &rc);
  bind_field(st, 5, d->from_version, sizeof d->from_version, &rc);
  bind_i64(st, 6, d->done, &rc);
  bind_i64(st, 7, d->size, &rc);
  bind_i64(st, 8, d->updated_ms, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  done(st);
  return rc == SQLITE_DONE ? 0 : sql_fail(s, "rollout_dev_update", rc);
}

int store_rollout_get(broker_store_t *s, int64_t id, bool active, store_rollout_t *out) {
  sqlite3_stmt *st = s->st[active ? ST_RO_ACTIVE : id ? ST_RO_GET : ST_RO_LATEST];
  int rc = SQLITE_OK;
  if (!active && id) bind_i64(st, 1, id, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  int ret = 0;
  memset(out, 0, sizeof *out);
  if (rc == SQLITE_ROW) {
    out->id = sqlite3_column_int64(st, 0);
    col_text(st, 1, out->version, sizeof out->version);
    col_text(st, 2, out->channel, sizeof out->channel);
    col_text(st, 3, out->group, sizeof out->group);
    out->canary_pct = sqlite3_column_int64(st, 4);
    out->wave_pct = sqlite3_column_int64(st, 5);
    out->pause_on = sqlite3_column_int64(st, 6);
    out->health_s = sqlite3_column_int64(st, 7);
    col_text(st, 8, out->state, sizeof out->state);
    col_text(st, 9, out->why, sizeof out->why);
    out->wave = sqlite3_column_int64(st, 10);
    out->waves = sqlite3_column_int64(st, 11);
    out->failures = sqlite3_column_int64(st, 12);
    col_text(st, 13, out->started_by, sizeof out->started_by);
    out->started_ms = sqlite3_column_int64(st, 14);
    out->updated_ms = sqlite3_column_int64(st, 15);
    ret = 1;
  } else if (rc != SQLITE_DONE) {
    ret = sql_fail(s, "rollout_get", rc);
  }
  done(st);
  return ret;
}

int store_rollout_devices(broker_store_t *s, int64_t rollout, store_rollout_dev_cb cb, void *ctx) {
  sqlite3_stmt *st = s->st[ST_ROD_LIST];
  int rc = SQLITE_OK, ret = 0;
  bind_i64(st, 1, rollout, &rc);
  store_rollout_dev_t d;
  while (rc == SQLITE_OK || rc == SQLITE_ROW) {
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) break;
    memset(&d, 0, sizeof d);
    col_text(st, 0, d.device, sizeof d.device);
    d.wave = sqlite3_column_int64(st, 1);
    col_text(st, 2, d.state, sizeof d.state);
    col_text(st, 3, d.reason, sizeof d.reason);
    col_text(st, 4, d.from_version, sizeof d.from_version);
    d.done = sqlite3_column_int64(st, 5);
    d.size = sqlite3_column_int64(st, 6);
    d.updated_ms = sqlite3_column_int64(st, 7);
    if ((ret = cb(ctx, &d)) != 0) break;
  }
  if (ret == 0 && rc != SQLITE_DONE) ret = sql_fail(s, "rollout_devices", rc);
  done(st);
  return ret < 0 ? ret : 0;
}
