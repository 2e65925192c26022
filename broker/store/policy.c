/* Admins' check policy per group and maintenance windows (store.h). The groups a device is
 * in come from its asset record (assets.c, store_device_groups). */
#include "internal.h"

static const store_sql_t k_sql[] = {
  {ST_POL_SET, "INSERT INTO policy(grp, key, value, set_by, set_ms) VALUES(?1, ?2, ?3, ?4, ?5)"
               " ON CONFLICT(grp, key) DO UPDATE SET value = ?3, set_by = ?4, set_ms = ?5"},
  {ST_POL_UNSET, "DELETE FROM policy WHERE grp = ?1 AND key = ?2"},
  {ST_POL_LIST, "SELECT grp, key, value, set_by, set_ms FROM policy ORDER BY grp, key"},
  {ST_POL_LIST_GROUP, "SELECT grp, key, value, set_by, set_ms FROM policy WHERE grp = ?1 ORDER BY key"},
  {ST_POL_VERSION, "SELECT version FROM policy_version WHERE one = 1"},
  {ST_POL_BUMP, "UPDATE policy_version SET version = version + 1 WHERE one = 1"},
  {ST_MAINT_ADD, "INSERT INTO maintenance(grp, device, start_ms, end_ms, reason, set_by)"
                 " VALUES(?1, ?2, ?3, ?4, ?5, ?6)"},
  {ST_MAINT_LIST, "SELECT id, grp, device, start_ms, end_ms, reason, set_by FROM maintenance WHERE end_ms > ?1"
                  " ORDER BY start_ms, id"},
  {ST_MAINT_ACTIVE_DEVICE, "SELECT 1 FROM maintenance WHERE device = ?1 AND start_ms <= ?2 AND end_ms > ?2 LIMIT 1"},
  {ST_MAINT_ACTIVE_GROUP, "SELECT 1 FROM maintenance WHERE grp IN ('*', ?1, ?2, ?3) AND grp <> ''"
                          " AND start_ms <= ?4 AND end_ms > ?4 LIMIT 1"},
};

int store_prepare_policy(broker_store_t *s) { return store_prepare(s, k_sql, sizeof k_sql / sizeof k_sql[0]); }

int store_policy_set(broker_store_t *s, const char *group, const char *key, const char *value, const char *by,
                     int64_t now_ms) {
  sqlite3_stmt *st = s->st[ST_POL_SET];
  int rc = SQLITE_OK;
  bind_text(st, 1, group, &rc);
  bind_text(st, 2, key, &rc);
  bind_text(st, 3, value, &rc);
  bind_text(st, 4, by, &rc);
  bind_i64(st, 5, now_ms, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  done(st);
  return rc == SQLITE_DONE ? 0 : constraint_fail(s, "policy_set", rc);
}

int store_policy_unset(broker_store_t *s, const char *group, const char *key) {
  sqlite3_stmt *st = s->st[ST_POL_UNSET];
  int rc = SQLITE_OK;
  bind_text(st, 1, group, &rc);
  bind_text(st, 2, key, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  done(st);
  if (rc != SQLITE_DONE) return sql_fail(s, "policy_unset", rc);
  return sqlite3_changes(s->db) ? 0 : TT_ENOTFOUND;
}

int store_policy_version(broker_store_t *s, int64_t *version) {
  sqlite3_stmt *st = s->st[ST_POL_VERSION];
  int rc = sqlite3_step(st);
  int ret = 0;
  if (rc == SQLITE_ROW) *version = sqlite3_column_int64(st, 0);
  else ret = sql_fail(s, "policy_version", rc);
  done(st);
  return ret;
}

int store_policy_bump(broker_store_t *s, int64_t *version) {
  sqlite3_stmt *st = s->st[ST_POL_BUMP];
  int rc = sqlite3_step(st);
  done(st);
  if (rc != SQLITE_DONE) return sql_fail(s, "policy_bump", rc);
  return store_policy_version(s, version);
}

int store_policy_list(broker_store_t *s, const char *group, store_policy_cb cb, void *ctx) {
  sqlite3_stmt *st = s->st[group ? ST_POL_LIST_GROUP : ST_POL_LIST];
  int rc = SQLITE_OK;
  if (group) bind_text(st, 1, group, &rc);
  int ret = 0;
  while (rc == SQLITE_OK || rc == SQLITE_ROW) {
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) break;
    char grp[STORE_GROUP_MAX], key[STORE_POLICY_KEY_MAX + 1], value[STORE_POLICY_VALUE_MAX], by[STORE_NAME_MAX];
    col_text(st, 0, grp, sizeof grp);
    col_text(st, 1, key, sizeof key);
    col_text(st, 2, value, sizeof value);
    col_text(st, 3, by, sizeof by);
    ret = cb(ctx, grp, key, value, by, sqlite3_column_int64(st, 4));
    if (ret != 0) break;
  }
  done(st);
  if (ret == 0 && rc != SQLITE_DONE) ret = sql_fail(s, "policy_list", rc);
  return ret;
}

/* ---- maintenance ------------------------------------------------------------------------- */

int store_maint_add(broker_store_t *s, store_maint_t *m) {
  if (strnlen(m->group, sizeof m->group) == sizeof m->group || strnlen(m->device, sizeof m->device) == sizeof m->device ||
      strnlen(m->reason, sizeof m->reason) == sizeof m->reason || strnlen(m->set_by, sizeof m->set_by) == sizeof m->set_by)
    return TT_ETOOBIG;
  sqlite3_stmt *st = s->st[ST_MAINT_ADD];
  int rc = SQLITE_OK;
  bind_text(st, 1, m->group, &rc);
  bind_text(st, 2, m->device, &rc);
  bind_i64(st, 3, m->start_ms, &rc);
  bind_i64(st, 4, m->end_ms, &rc);
  bind_text(st, 5, m->reason, &rc);
  bind_text(st, 6, m->set_by, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  done(st);
  if (rc != SQLITE_DONE) return constraint_fail(s, "maint_add", rc);
  m->id = (int64_t)sqlite3_last_insert_rowid(s->db);
  return 0;
}

int store_maint_list(broker_store_t *s, int64_t now_ms, store_maint_cb cb, void *ctx) {
  sqlite3_stmt *st = s->st[ST_MAINT_LIST];
  int rc = SQLITE_OK;
  bind_i64(st, 1, now_ms, &rc);
  int ret = 0;
  while (rc == SQLITE_OK || rc == SQLITE_ROW) {
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) break;
    store_maint_t m;
    memset(&m, 0, sizeof m);
    m.id = sqlite3_column_int64(st, 0);
    col_text(st, 1, m.group, sizeof m.group);
    col_text(st, 2, m.device, sizeof m.device);
    m.start_ms = sqlite3_column_int64(st, 3);
    m.end_ms = sqlite3_column_int64(st, 4);
    col_text(st, 5, m.reason, sizeof m.reason);
    col_text(st, 6, m.set_by, sizeof m.set_by);
    ret = cb(ctx, &m);
    if (ret != 0) break;
  }
  done(st);
  if (ret == 0 && rc != SQLITE_DONE) ret = sql_fail(s, "maint_list", rc);
  return ret;
}

static int any_row(broker_store_t *s, sqlite3_stmt *st, int rc, bool *found, const char *op) {
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  int ret = 0;
  if (rc == SQLITE_ROW) *found = true;
  else if (rc != SQLITE_DONE) ret = sql_fail(s, op, rc);
  done(st);
  return ret;
}

int store_maint_active(broker_store_t *s, const char *device, const store_device_groups_t *g, int64_t now_ms,
                       bool *active) {
  *active = false;
  sqlite3_stmt *st = s->st[ST_MAINT_ACTIVE_DEVICE];
  int rc = SQLITE_OK;
  bind_text(st, 1, device, &rc);
  bind_i64(st, 2, now_ms, &rc);
  int ret = any_row(s, st, rc, active, "maint_active_device");
  if (ret != 0 || *active) return ret;
  st = s->st[ST_MAINT_ACTIVE_GROUP];
  rc = SQLITE_OK;
  /* An empty group name never matches: grp <> '' in the query. */
  bind_text(st, 1, g ? g->department : "", &rc);
  bind_text(st, 2, g ? g->location : "", &rc);
  bind_text(st, 3, g ? g->group : "", &rc);
  bind_i64(st, 4, now_ms, &rc);
  return any_row(s, st, rc, active, "maint_active_group");
}
