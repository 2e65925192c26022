/* Health checks' results, alerts and storms (store.h): the rows; the rules that decide what a
 * result does to its alert live in broker/helpdesk/alert_rules.c. */
#include "internal.h"

#define CHK_COLS "name, dimension, state, last, value, threshold, message, since_ms, run_ms, streak, seen_ms"
#define ALERT_COLS "id, device, name, dimension, state, opened_ms, last_ms, resolved_ms, value, threshold, " \
                   "ticket, storm, acked_by, snoozed_until_ms, raised, suppressed"
#define ALERT_LIVE "state IN (1, 2)" /* open or acked: failing with a ticket */

static const store_sql_t k_sql[] = {
  {ST_CHK_PUT, "INSERT INTO check_results(device, " CHK_COLS ") VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10,"
               " ?11, ?12) ON CONFLICT(device, name, dimension) DO UPDATE SET state = ?4, last = ?5, value = ?6,"
               " threshold = ?7, message = ?8, since_ms = ?9, run_ms = ?10, streak = ?11, seen_ms = ?12"},
  {ST_CHK_LIST, "SELECT " CHK_COLS " FROM check_results WHERE device = ?1 ORDER BY name, dimension"},
  {ST_CHK_STALE, "SELECT " CHK_COLS " FROM check_results WHERE device = ?1 AND seen_ms < ?2 ORDER BY name, dimension"},
  {ST_CHK_PRUNE, "DELETE FROM check_results WHERE device = ?1 AND seen_ms < ?2"},
  {ST_CHK_COUNT, "SELECT count(*) FROM check_results WHERE device = ?1"},
  {ST_CHK_KNOWN, "SELECT 1 FROM check_results WHERE device = ?1 AND name = ?2 AND dimension = ?3"},
  {ST_CHK_AGENT_PUT, "INSERT INTO check_agents(device, policy_version, reported_ms) VALUES(?1, ?2, ?3)"
                     " ON CONFLICT(device) DO UPDATE SET policy_version = ?2, reported_ms = ?3"},
  {ST_CHK_AGENT_GET, "SELECT policy_version, reported_ms FROM check_agents WHERE device = ?1"},
  {ST_CHK_AGENT_PAGE, "SELECT device, policy_version, reported_ms FROM check_agents WHERE device > ?1"
                      " ORDER BY device LIMIT ?2"},
  {ST_ALERT_FIND, "SELECT " ALERT_COLS " FROM alerts WHERE device = ?1 AND name = ?2 AND dimension = ?3"},
  {ST_ALERT_GET, "SELECT " ALERT_COLS " FROM alerts WHERE id = ?1"},
  {ST_ALERT_INSERT, "INSERT INTO alerts(device, name, dimension, state, opened_ms, last_ms, resolved_ms, value,"
                    " threshold, ticket, storm, acked_by, snoozed_until_ms, raised, suppressed)"
                    " VALUES(?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)"},
  {ST_ALERT_UPDATE, "UPDATE alerts SET state = ?5, opened_ms = ?6, last_ms = ?7, resolved_ms = ?8, value = ?9,"
                    " threshold = ?10, ticket = ?11, storm = ?12, acked_by = ?13, snoozed_until_ms = ?14,"
                    " raised = ?15, suppressed = ?16 WHERE id = ?1 AND device = ?2 AND name = ?3 AND dimension = ?4"},
  {ST_ALERT_LIST, "SELECT " ALERT_COLS " FROM alerts WHERE id > ?1 AND (?2 = 0 OR state <> 4)"
                  " AND (?3 IS NULL OR device = ?3) AND (?4 IS NULL OR name = ?4) ORDER BY id LIMIT ?5"},
  {ST_ALERT_FAILING, "SELECT count(DISTINCT device) FROM alerts WHERE name = ?1 AND " ALERT_LIVE
                     " AND opened_ms >= ?2 AND device <> ?3"},
  {ST_ALERT_WINDOW, "SELECT " ALERT_COLS " FROM alerts WHERE name = ?1 AND " ALERT_LIVE " AND opened_ms >= ?2"
                    " AND ticket > 0 AND storm = 0 ORDER BY id"},
  {ST_ALERT_STORM_LIVE, "SELECT count(*) FROM alerts WHERE storm = ?1 AND state <> 4"},
  {ST_TIX_SINCE, "SELECT count(*) FROM tickets WHERE device = ?1 AND source = ?2 AND created_ms >= ?3"},
  {ST_ALERT_DEVICE_COUNT, "SELECT count(*) FROM alerts WHERE device = ?1"},
  {ST_ALERT_OLDEST_RESOLVED, "SELECT id FROM alerts WHERE device = ?1 AND state = 4 ORDER BY resolved_ms, id LIMIT 1"},
  {ST_ALERT_DELETE, "DELETE FROM alerts WHERE id = ?1"},
  {ST_CHK_RATE_GET, "SELECT window_ms, reports FROM check_agents WHERE device = ?1"},
  {ST_CHK_RATE_SET, "INSERT INTO check_agents(device, policy_version, reported_ms, window_ms, reports)"
                    " VALUES(?1, 0, ?2, ?3, ?4) ON CONFLICT(device) DO UPDATE SET window_ms = ?3, reports = ?4"},
  {ST_ALERT_OF_TICKET, "SELECT id FROM alerts WHERE ticket = ?1 OR storm = ?1 ORDER BY id LIMIT ?2"},
  {ST_ALERT_DUE, "SELECT " ALERT_COLS " FROM alerts WHERE id > ?2 AND ((state = 3 AND snoozed_until_ms <= ?1)"
                 " OR state = 5) ORDER BY id LIMIT ?3"},
  {ST_STORM_GET, "SELECT ticket FROM storms WHERE name = ?1"},
  {ST_STORM_SET, "INSERT INTO storms(name, ticket, opened_ms) VALUES(?1, ?2, ?3)"
                 " ON CONFLICT(name) DO UPDATE SET ticket = ?2, opened_ms = ?3"},
  {ST_STORM_DEL, "DELETE FROM storms WHERE name = ?1"},
  {ST_TIX_CHILDREN, "SELECT id FROM tickets WHERE parent = ?1 ORDER BY id LIMIT ?2"},
  {ST_TIX_CHILDREN_COUNT, "SELECT count(*) FROM tickets WHERE parent = ?1"},
  {ST_TIX_SET_PARENT, "UPDATE tickets SET parent = ?2 WHERE id = ?1"},
};

int store_prepare_alerts(broker_store_t *s) { return store_prepare(s, k_sql, sizeof k_sql / sizeof k_sql[0]); }

/* ---- results ----------------------------------------------------------------------------- */

static bool fits(const char *v, size_t cap) { return strnlen(v, cap) < cap; }

int store_check_result_put(broker_store_t *s, const char *device, const store_check_result_t *r) {
  if (!fits(r->check, sizeof r->check) || !fits(r->dimension, sizeof r->dimension) || !fits(r->value, sizeof r->value) ||
      !fits(r->threshold, sizeof r->threshold) || !fits(r->message, sizeof r->message))
    return TT_ETOOBIG;
  sqlite3_stmt *st = s->st[ST_CHK_PUT];
  int rc = SQLITE_OK;
  bind_text(st, 1, device, &rc);
  bind_text(st, 2, r->check, &rc);
  bind_text(st, 3, r->dimension, &rc);
  bind_i64(st, 4, r->state, &rc);
  bind_i64(st, 5, r->last, &rc);
  bind_text(st, 6, r->value, &rc);
  bind_text(st, 7, r->threshold, &rc);
  bind_text(st, 8, r->message, &rc);
  bind_i64(st, 9, r->since_ms, &rc);
  bind_i64(st, 10, r->run_ms, &rc);
  bind_i64(st, 11, r->streak, &rc);
  bind_i64(st, 12, r->seen_ms, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  done(st);
  return rc == SQLITE_DONE ? 0 : constraint_fail(s, "check_result_put", rc);
}

static int results_walk(broker_store_t *s, sqlite3_stmt *st, int rc, store_check_result_cb cb, void *ctx,
                        const char *op) {
  int ret = 0;
  while (rc == SQLITE_OK || rc == SQLITE_ROW) {
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) break;
    store_check_result_t r;
    memset(&r, 0, sizeof r);
    col_text(st, 0, r.check, sizeof r.check);
    col_text(st, 1, r.dimension, sizeof r.dimension);
    r.state = sqlite3_column_int(st, 2);
    r.last = sqlite3_column_int(st, 3);
    col_text(st, 4, r.value, sizeof r.value);
    col_text(st, 5, r.threshold, sizeof r.threshold);
    col_text(st, 6, r.message, sizeof r.message);
    r.since_ms = sqlite3_column_int64(st, 7);
    r.run_ms = sqlite3_column_int64(st, 8);
    r.streak = (uint32_t)sqlite3_column_int64(st, 9);
    r.seen_ms = sqlite3_column_int64(st, 10);
    ret = cb(ctx, &r);
    if (ret != 0) break;
  }
  done(st);
  if (ret == 0 && rc != SQLITE_DONE) ret = sql_fail(s, op, rc);
  return ret;
}

int store_check_results(broker_store_t *s, const char *device, store_check_result_cb cb, void *ctx) {
  sqlite3_stmt *st = s->st[ST_CHK_LIST];
  int rc = SQLITE_OK;
  bind_text(st, 1, device, &rc);
  return results_walk(s, st, rc, cb, ctx, "check_results");
}

int store_check_results_stale(broker_store_t *s, const char *device, int64_t before_ms, store_check_result_cb cb,
                              void *ctx) {
  sqlite3_stmt *st = s->st[ST_CHK_STALE];
  int rc = SQLITE_OK;
  bind_text(st, 1, device, &rc);
  bind_i64(st, 2, before_ms, &rc);
  return results_walk(s, st, rc, cb, ctx, "check_results_stale");
}

int store_check_results_prune(broker_store_t *s, const char *device, int64_t before_ms) {
  sqlite3_stmt *st = s->st[ST_CHK_PRUNE];
  int rc = SQLITE_OK;
  bind_text(st, 1, device, &rc);
  bind_i64(st, 2, before_ms, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  done(st);
  return rc == SQLITE_DONE ? 0 : sql_fail(s, "check_results_prune", rc);
}

static int count_one(broker_store_t *s, sqlite3_stmt *st, int rc, uint32_t *n, const char *op);

int store_check_results_count(broker_store_t *s, const char *device, uint32_t *n) {
  sqlite3_stmt *st = s->st[ST_CHK_COUNT];
  int rc = SQLITE_OK;
  bind_text(st, 1, device, &rc);
  return count_one(s, st, rc, n, "check_results_count");
}

bool store_check_result_known(broker_store_t *s, const char *device, const char *check, const char *dimension) {
  sqlite3_stmt *st = s->st[ST_CHK_KNOWN];
  int rc = SQLITE_OK;
  bind_text(st, 1, device, &rc);
  bind_text(st, 2, check, &rc);
  bind_text(st, 3, dimension, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  done(st);
  return rc == SQLITE_ROW;
}

int store_check_agent_put(broker_store_t *s, const char *device, int64_t policy_version, int64_t now_ms) {
  sqlite3_stmt *st = s->st[ST_CHK_AGENT_PUT];
  int rc = SQLITE_OK;
  bind_text(st, 1, device, &rc);
  bind_i64(st, 2, policy_version, &rc);
  bind_i64(st, 3, now_ms, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  done(st);
  return rc == SQLITE_DONE ? 0 : constraint_fail(s, "check_agent_put", rc);
}

int store_check_agent_get(broker_store_t *s, const char *device, int64_t *policy_version, int64_t *reported_ms) {
  sqlite3_stmt *st = s->st[ST_CHK_AGENT_GET];
  int rc = SQLITE_OK;
  bind_text(st, 1, device, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  int ret = 0;
  if (rc == SQLITE_ROW) {
    *policy_version = sqlite3_column_int64(st, 0);
    *reported_ms = sqlite3_column_int64(st, 1);
  } else if (rc == SQLITE_DONE) {
    ret = TT_ENOTFOUND;
  } else {
    ret = sql_fail(s, "check_agent_get", rc);
  }
  done(st);
  return ret;
}

int store_check_agents(broker_store_t *s, const char *after, uint32_t limit, store_check_agent_cb cb, void *ctx) {
  sqlite3_stmt *st = s->st[ST_CHK_AGENT_PAGE];
  int rc = SQLITE_OK;
  bind_text(st, 1, after ? after : "", &rc);
  bind_i64(st, 2, limit ? (int64_t)limit : -1, &rc);
  int ret = 0;
  while (rc == SQLITE_OK || rc == SQLITE_ROW) {
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) break;
    char dev[STORE_NAME_MAX];
    col_text(st, 0, dev, sizeof dev);
    ret = cb(ctx, dev, sqlite3_column_int64(st, 1), sqlite3_column_int64(st, 2));
    if (ret != 0) break;
  }
  done(st);
  if (ret == 0 && rc != SQLITE_DONE) ret = sql_fail(s, "check_agents", rc);
  return ret;
}

/* ---- alerts ------------------------------------------------------------------------------ */

static void alert_from_row(sqlite3_stmt *st, store_alert_t *a) {
  memset(a, 0, sizeof *a);
  a->id = sqlite3_column_int64(st, 0);
  col_text(st, 1, a->device, sizeof a->device);
  col_text(st, 2, a->check, sizeof a->check);
  col_text(st, 3, a->dimension, sizeof a->dimension);
  a->state = sqlite3_column_int(st, 4);
  a->opened_ms = sqlite3_column_int64(st, 5);
  a->last_ms = sqlite3_column_int64(st, 6);
  a->resolved_ms = sqlite3_column_int64(st, 7);
  col_text(st, 8, a->value, sizeof a->value);
  col_text(st, 9, a->threshold, sizeof a->threshold);
  a->ticket = sqlite3_column_int64(st, 10);
  a->storm = sqlite3_column_int64(st, 11);
  col_text(st, 12, a->acked_by, sizeof a->acked_by);
  a->snoozed_until_ms = sqlite3_column_int64(st, 13);
  a->raised = (uint32_t)sqlite3_column_int64(st, 14);
  a->suppressed = (uint32_t)sqlite3_column_int64(st, 15);
}

static int alert_one(broker_store_t *s, sqlite3_stmt *st, int rc, store_alert_t *out, const char *op) {
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  int ret = 0;
  if (rc == SQLITE_ROW) alert_from_row(st, out);
  else if (rc == SQLITE_DONE) ret = TT_ENOTFOUND;
  else ret = sql_fail(s, op, rc);
  done(st);
  return ret;
}

int store_alert_find(broker_store_t *s, const char *device, const char *check, const char *dimension,
                     store_alert_t *out) {
  sqlite3_stmt *st = s->st[ST_ALERT_FIND];
  int rc = SQLITE_OK;
  bind_text(st, 1, device, &rc);
  bind_text(st, 2, check, &rc);
  bind_text(st, 3, dimension, &rc);
  return alert_one(s, st, rc, out, "alert_find");
}

int store_alert_get(broker_store_t *s, int64_t id, store_alert_t *out) {
  sqlite3_stmt *st = s->st[ST_ALERT_GET];
  int rc = SQLITE_OK;
  bind_i64(st, 1, id, &rc);
  return alert_one(s, st, rc, out, "alert_get");
}

int store_alert_put(broker_store_t *s, store_alert_t *a) {
  if (!fits(a->device, sizeof a->device) || !fits(a->check, sizeof a->check) ||
      !fits(a->dimension, sizeof a->dimension) || !fits(a->value, sizeof a->value) ||
      !fits(a->threshold, sizeof a->threshold) || !fits(a->acked_by, sizeof a->acked_by))
    return TT_ETOOBIG;
  bool insert = a->id == 0;
  sqlite3_stmt *st = s->st[insert ? ST_ALERT_INSERT : ST_ALERT_UPDATE];
  int rc = SQLITE_OK;
  if (!insert) bind_i64(st, 1, a->id, &rc);
  bind_text(st, 2, a->device, &rc);
  bind_text(st, 3, a->check, &rc);
  bind_text(st, 4, a->dimension, &rc);
  bind_i64(st, 5, a->state, &rc);
  bind_i64(st, 6, a->opened_ms, &rc);
  bind_i64(st, 7, a->last_ms, &rc);
  bind_i64(st, 8, a->resolved_ms, &rc);
  bind_text(st, 9, a->value, &rc);
  bind_text(st, 10, a->threshold, &rc);
  bind_i64(st, 11, a->ticket, &rc);
  bind_i64(st, 12, a->storm, &rc);
  bind_text(st, 13, a->acked_by, &rc);
  bind_i64(st, 14, a->snoozed_until_ms, &rc);
  bind_i64(st, 15, a->raised, &rc);
  bind_i64(st, 16, a->suppressed, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  done(st);
  if (rc != SQLITE_DONE) return insert && rc == SQLITE_CONSTRAINT_UNIQUE ? insert_fail(s, "alert_put", rc)
                                                                         : constraint_fail(s, "alert_put", rc);
  if (insert) a->id = (int64_t)sqlite3_last_insert_rowid(s->db);
  else if (sqlite3_changes(s->db) == 0) return TT_ENOTFOUND;
  return 0;
}

static int alerts_walk(broker_store_t *s, sqlite3_stmt *st, int rc, store_alert_cb cb, void *ctx, const char *op) {
  int ret = 0;
  while (rc == SQLITE_OK || rc == SQLITE_ROW) {
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) break;
    store_alert_t a;
    alert_from_row(st, &a);
    ret = cb(ctx, &a);
    if (ret != 0) break;
  }
  done(st);
  if (ret == 0 && rc != SQLITE_DONE) ret = sql_fail(s, op, rc);
  return ret;
}

int store_alert_list(broker_store_t *s, const store_alert_filter_t *f, store_alert_cb cb, void *ctx) {
  sqlite3_stmt *st = s->st[ST_ALERT_LIST];
  int rc = SQLITE_OK;
  bind_i64(st, 1, f->after_id, &rc);
  bind_i64(st, 2, f->open_only ? 1 : 0, &rc);
  bind_opt_text(st, 3, f->device, &rc);
  bind_opt_text(st, 4, f->check, &rc);
  bind_i64(st, 5, f->limit ? (int64_t)f->limit : -1, &rc);
  return alerts_walk(s, st, rc, cb, ctx, "alert_list");
}

static int count_one(broker_store_t *s, sqlite3_stmt *st, int rc, uint32_t *n, const char *op) {
  *n = 0;
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  int ret = 0;
  if (rc == SQLITE_ROW) *n = (uint32_t)sqlite3_column_int64(st, 0);
  else ret = sql_fail(s, op, rc);
  done(st);
  return ret;
}

int store_alert_failing_devices(broker_store_t *s, const char *check, int64_t since_ms, const char *except,
                                uint32_t *n) {
  sqlite3_stmt *st = s->st[ST_ALERT_FAILING];
  int rc = SQLITE_OK;
  bind_text(st, 1, check, &rc);
  bind_i64(st, 2, since_ms, &rc);
  bind_text(st, 3, except ? except : "", &rc);
  return count_one(s, st, rc, n, "alert_failing_devices");
}

int store_alert_window(broker_store_t *s, const char *check, int64_t since_ms, store_alert_cb cb, void *ctx) {
  sqlite3_stmt *st = s->st[ST_ALERT_WINDOW];
  int rc = SQLITE_OK;
  bind_text(st, 1, check, &rc);
  bind_i64(st, 2, since_ms, &rc);
  return alerts_walk(s, st, rc, cb, ctx, "alert_window");
}

int store_tickets_since(broker_store_t *s, const char *device, const char *source, int64_t since_ms, uint32_t *n) {
  sqlite3_stmt *st = s->st[ST_TIX_SINCE];
  int rc = SQLITE_OK;
  bind_text(st, 1, device, &rc);
  bind_text(st, 2, source, &rc);
  bind_i64(st, 3, since_ms, &rc);
  return count_one(s, st, rc, n, "tickets_since");
}

int store_alert_make_room(broker_store_t *s, const char *device, int64_t *dropped) {
  *dropped = 0;
  uint32_t n = 0;
  sqlite3_stmt *st = s->st[ST_ALERT_DEVICE_COUNT];
  int rc = SQLITE_OK;
  bind_text(st, 1, device, &rc);
  int ret = count_one(s, st, rc, &n, "alert_device_count");
  if (ret != 0 || n < TT_ALERTS_PER_DEVICE_MAX) return ret;
  st = s->st[ST_ALERT_OLDEST_RESOLVED];
  rc = SQLITE_OK;
  bind_text(st, 1, device, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  int64_t id = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
  done(st);
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) return sql_fail(s, "alert_oldest_resolved", rc);
  if (!id) return 0;
  st = s->st[ST_ALERT_DELETE];
  rc = SQLITE_OK;
  bind_i64(st, 1, id, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  done(st);
  if (rc != SQLITE_DONE) return sql_fail(s, "alert_delete", rc);
  *dropped = id;
  return 0;
}

int store_check_agent_rate(broker_store_t *s, const char *device, int64_t now_ms, uint32_t limit, bool *over) {
  *over = false;
  sqlite3_stmt *st = s->st[ST_CHK_RATE_GET];
  int rc = SQLITE_OK;
  bind_text(st, 1, device, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  int64_t window = 0, reports = 0;
  if (rc == SQLITE_ROW) {
    window = sqlite3_column_int64(st, 0);
    reports = sqlite3_column_int64(st, 1);
  }
  done(st);
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) return sql_fail(s, "check_rate_get", rc);
  if (now_ms - window >= 60000 || now_ms < window) {
    window = now_ms;
    reports = 0;
  }
  reports++;
  *over = reports > (int64_t)limit;
  st = s->st[ST_CHK_RATE_SET];
  rc = SQLITE_OK;
  bind_text(st, 1, device, &rc);
  bind_i64(st, 2, now_ms, &rc);
  bind_i64(st, 3, window, &rc);
  bind_i64(st, 4, reports, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  done(st);
  return rc == SQLITE_DONE ? 0 : constraint_fail(s, "check_rate_set", rc);
}

int store_alert_storm_live(broker_store_t *s, int64_t storm, uint32_t *n) {
  sqlite3_stmt *st = s->st[ST_ALERT_STORM_LIVE];
  int rc = SQLITE_OK;
  bind_i64(st, 1, storm, &rc);
  return count_one(s, st, rc, n, "alert_storm_live");
}

static int ids_walk(broker_store_t *s, sqlite3_stmt *st, int rc, int64_t *ids, size_t cap, size_t *n,
                    const char *op) {
  *n = 0;
  while (rc == SQLITE_OK || rc == SQLITE_ROW) {
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW && *n < cap) ids[(*n)++] = sqlite3_column_int64(st, 0);
  }
  done(st);
  return rc == SQLITE_DONE ? 0 : sql_fail(s, op, rc);
}

int store_alerts_of_ticket(broker_store_t *s, int64_t ticket, int64_t *ids, size_t cap, size_t *n) {
  sqlite3_stmt *st = s->st[ST_ALERT_OF_TICKET];
  int rc = SQLITE_OK;
  bind_i64(st, 1, ticket, &rc);
  bind_i64(st, 2, (int64_t)cap, &rc);
  return ids_walk(s, st, rc, ids, cap, n, "alerts_of_ticket");
}

int store_alerts_due(broker_store_t *s, int64_t now_ms, int64_t after_id, uint32_t limit, store_alert_cb cb,
                     void *ctx) {
  sqlite3_stmt *st = s->st[ST_ALERT_DUE];
  int rc = SQLITE_OK;
  bind_i64(st, 1, now_ms, &rc);
  bind_i64(st, 2, after_id, &rc);
  bind_i64(st, 3, limit ? (int64_t)limit : -1, &rc);
  return alerts_walk(s, st, rc, cb, ctx, "alerts_due");
}

/* ---- storms and their children ------------------------------------------------------------- */

int store_storm_get(broker_store_t *s, const char *check, int64_t *ticket) {
  sqlite3_stmt *st = s->st[ST_STORM_GET];
  int rc = SQLITE_OK;
  bind_text(st, 1, check, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  int ret = 0;
  if (rc == SQLITE_ROW) *ticket = sqlite3_column_int64(st, 0);
  else if (rc == SQLITE_DONE) ret = TT_ENOTFOUND;
  else ret = sql_fail(s, "storm_get", rc);
  done(st);
  return ret;
}

int store_storm_set(broker_store_t *s, const char *check, int64_t ticket, int64_t now_ms) {
  sqlite3_stmt *st = s->st[ST_STORM_SET];
  int rc = SQLITE_OK;
  bind_text(st, 1, check, &rc);
  bind_i64(st, 2, ticket, &rc);
  bind_i64(st, 3, now_ms, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  done(st);
  return rc == SQLITE_DONE ? 0 : constraint_fail(s, "storm_set", rc);
}

int store_storm_del(broker_store_t *s, const char *check) {
  sqlite3_stmt *st = s->st[ST_STORM_DEL];
  int rc = SQLITE_OK;
  bind_text(st, 1, check, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  done(st);
  return rc == SQLITE_DONE ? 0 : sql_fail(s, "storm_del", rc);
}

int store_ticket_children(broker_store_t *s, int64_t parent, int64_t *ids, size_t cap, size_t *n, uint32_t *total) {
  sqlite3_stmt *st = s->st[ST_TIX_CHILDREN_COUNT];
  int rc = SQLITE_OK;
  bind_i64(st, 1, parent, &rc);
  int ret = count_one(s, st, rc, total, "ticket_children_count");
  if (ret != 0) return ret;
  st = s->st[ST_TIX_CHILDREN];
  rc = SQLITE_OK;
  bind_i64(st, 1, parent, &rc);
  bind_i64(st, 2, (int64_t)cap, &rc);
  return ids_walk(s, st, rc, ids, cap, n, "ticket_children");
}

int store_ticket_set_parent(broker_store_t *s, int64_t ticket, int64_t parent) {
  sqlite3_stmt *st = s->st[ST_TIX_SET_PARENT];
  int rc = SQLITE_OK;
  bind_i64(st, 1, ticket, &rc);
  bind_i64(st, 2, parent, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  done(st);
  if (rc != SQLITE_DONE) return constraint_fail(s, "ticket_set_parent", rc);
  return sqlite3_changes(s->db) ? 0 : TT_ENOTFOUND;
}
