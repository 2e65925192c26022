/* Retention of closed tickets (store.h "store_retention_tickets"): a ticket closed longer ago
 * than its class keeps goes with every row that names it, a family (a storm and its members)
 * at once. One step is one transaction of at most a budget of rows, the timeline's gate open
 * inside it only. */
#include "../internal.h"

/* A ticket that could go by itself: closed before the cutoff (?1), not on hold, no alert
 * failing on it (open, acked or snoozed: the alert still writes to it), no live session. The
 * alert terms name "> 0" so that the partial indexes on alerts serve them. */
#define ALONE(t)                                                                                      \
  t ".state = 3 AND " t ".closed_ms < ?1"                                                            \
  " AND NOT EXISTS (SELECT 1 FROM ticket_holds h WHERE h.ticket = " t ".id)"                         \
  " AND NOT EXISTS (SELECT 1 FROM alerts a WHERE a.ticket = " t ".id AND a.ticket > 0"               \
  "  AND a.state IN (1, 2, 3))"                                                                       \
  " AND NOT EXISTS (SELECT 1 FROM alerts a WHERE a.storm = " t ".id AND a.storm > 0"                 \
  "  AND a.state IN (1, 2, 3))"                                                                       \
  " AND NOT EXISTS (SELECT 1 FROM sessions s WHERE s.ticket = " t ".id AND s.ended_ms = 0)"

/* Storms are one level deep (a storm's members are check tickets, never parents): a ticket
 * goes when it could alone, its children all could, and its parent, if it has one, could
 * with all of that parent's children. So no ticket is left naming a parent that is gone, and
 * a hold on a storm keeps its members. */
#define FAMILY_OK                                                                                     \
  " AND NOT EXISTS (SELECT 1 FROM tickets c WHERE c.parent = t.id AND c.parent > 0"                  \
  "  AND NOT (" ALONE("c") "))"                                                                       \
  " AND NOT EXISTS (SELECT 1 FROM tickets p WHERE p.id = t.parent AND t.parent > 0 AND NOT ("        \
  ALONE("p") " AND NOT EXISTS (SELECT 1 FROM tickets c WHERE c.parent = p.id AND c.parent > 0"       \
  "  AND NOT (" ALONE("c") "))))"

/* Files to delete before the rows go: the ticket's and its children's recordings whose file
 * neither retention nor an erasure deleted already. */
#define FILES_MAX 64u

static const store_sql_t k_sql[] = {
  /* The next ticket after the cursor (?2, ?3) in the order they closed. Named: the planner
   * would rather walk every closed ticket by (state, assignee) and sort them. */
  {ST_RTX_NEXT, "SELECT t.id, t.closed_ms FROM tickets t INDEXED BY tickets_closed WHERE t.state = 3 AND t.closed_ms < ?1"
                " AND t.closed_ms >= ?2 AND (t.closed_ms > ?2 OR t.id > ?3) AND " ALONE("t") FAMILY_OK
                " ORDER BY t.closed_ms, t.id LIMIT 1"},
  {ST_RTX_FILES, "SELECT id, path FROM recordings WHERE ticket = ?1 AND path <> '' AND expired_ms = 0 AND erased = 0"
                 " UNION ALL SELECT r.id, r.path FROM tickets c JOIN recordings r ON r.ticket = c.id"
                 " WHERE c.parent = ?1 AND c.parent > 0 AND r.path <> '' AND r.expired_ms = 0 AND r.erased = 0"
                 " LIMIT ?2"},
  {ST_RTX_CHILD, "SELECT id FROM tickets WHERE parent = ?1 AND parent > 0 LIMIT 1"},
  /* What names a ticket, in an order its foreign keys allow (recordings before sessions). */
  {ST_RTX_DEL_EVENTS, "DELETE FROM ticket_events WHERE ticket = ?1"},
  {ST_RTX_DEL_RECORDINGS, "DELETE FROM recordings WHERE ticket = ?1"},
  {ST_RTX_DEL_DIAG, "DELETE FROM diag_reports WHERE ticket = ?1"},
  {ST_RTX_DEL_SESSIONS, "DELETE FROM sessions WHERE ticket = ?1"},
  {ST_RTX_DEL_HELP, "DELETE FROM help_requests WHERE ticket = ?1"},
  {ST_RTX_DEL_KB, "DELETE FROM kb_links WHERE ticket = ?1"},
  /* Alerts are the checks' own records: they stay, with no ticket (as one never opened). */
  {ST_RTX_ALERT_TICKET, "UPDATE alerts SET ticket = 0 WHERE ticket = ?1 AND ticket > 0"},
  {ST_RTX_ALERT_STORM, "UPDATE alerts SET storm = 0 WHERE storm = ?1 AND storm > 0"},
  {ST_RTX_DEL_STORM, "DELETE FROM storms WHERE ticket = ?1"},
  {ST_RTX_DEL_TICKET, "DELETE FROM tickets WHERE id = ?1"},
};

int store_prepare_closed_tickets(broker_store_t *s) { return store_prepare(s, k_sql, sizeof k_sql / sizeof k_sql[0]); }

/* One statement over one id: *n grows by the rows it changed. */
static int by_id(broker_store_t *s, store_stmt_t which, int64_t id, uint32_t *n, const char *op) {
  sqlite3_stmt *st = s->st[which];
  int rc = SQLITE_OK;
  bind_i64(st, 1, id, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  done(st);
  if (rc != SQLITE_DONE) return sql_fail(s, op, rc);
  *n += (uint32_t)sqlite3_changes(s->db);
  return 0;
}

static int delete_one(broker_store_t *s, int64_t id, uint32_t *rows) {
  static const store_stmt_t k_del[] = {ST_RTX_DEL_EVENTS, ST_RTX_DEL_RECORDINGS, ST_RTX_DEL_DIAG,
                                       ST_RTX_DEL_SESSIONS, ST_RTX_DEL_HELP,       ST_RTX_DEL_KB,
                                       ST_RTX_ALERT_TICKET, ST_RTX_ALERT_STORM,    ST_RTX_DEL_STORM,
                                       ST_RTX_DEL_TICKET};
  int ret = 0;
  for (size_t i = 0; ret == 0 && i < sizeof k_del / sizeof k_del[0]; i++)
    ret = by_id(s, k_del[i], id, rows, "retention_ticket_delete");
  return ret;
}

/* The family's recording files, FILES_MAX at a time: each deleted file's row is marked expired
 * (as the recordings class would), so a ticket that cannot go now is no worse off.
 * *state: 0 all gone, 1 a file could not be deleted, 2 the budget ran out first. */
static int delete_files(broker_store_t *s, const char *data_dir, int64_t id, int64_t now_ms, uint32_t budget,
                        uint32_t *rows, int *state) {
  *state = 0;
  for (;;) {
    int64_t ids[FILES_MAX];
    char paths[FILES_MAX][512];
    uint32_t k = 0;
    sqlite3_stmt *st = s->st[ST_RTX_FILES];
    int rc = SQLITE_OK;
    bind_i64(st, 1, id, &rc);
    bind_i64(st, 2, FILES_MAX, &rc);
    while (rc == SQLITE_OK || rc == SQLITE_ROW) {
      rc = sqlite3_step(st);
      if (rc != SQLITE_ROW || k >= FILES_MAX) break;
      ids[k] = sqlite3_column_int64(st, 0);
      col_text(st, 1, paths[k], sizeof paths[k]);
      k++;
    }
    done(st);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) return sql_fail(s, "retention_ticket_files", rc);
    if (k == 0) return 0;
    for (uint32_t i = 0; i < k; i++) {
      if (store_recording_unlink(data_dir, paths[i]) != 0) {
        *state = 1;
        return 0;
      }
      st = s->st[ST_RET_RECORDING_EXPIRE];
      rc = SQLITE_OK;
      bind_i64(st, 1, ids[i], &rc);
      bind_i64(st, 2, now_ms, &rc);
      if (rc == SQLITE_OK) rc = sqlite3_step(st);
      done(st);
      if (rc != SQLITE_DONE) return sql_fail(s, "retention_ticket_file_expire", rc);
      (*rows)++;
    }
    if (*rows >= budget) {
      *state = 2;
      return 0;
    }
  }
}

int store_retention_tickets(broker_store_t *s, const char *data_dir, int64_t cutoff_ms, uint32_t budget,
                            int64_t now_ms, store_sweep_cursor_t *cur, uint32_t *tickets, bool *more) {
  *tickets = 0;
  *more = false;
  int ret = tx_begin(s);
  if (ret) return ret;
  ret = store_audit_gate(s, true); /* the timeline is append-only to everyone else */
  uint32_t rows = 0;
  while (ret == 0 && rows < budget) {
    sqlite3_stmt *st = s->st[ST_RTX_NEXT];
    int rc = SQLITE_OK;
    bind_i64(st, 1, cutoff_ms, &rc);
    bind_i64(st, 2, cur->closed_ms, &rc);
    bind_i64(st, 3, cur->ticket, &rc);
    if (rc == SQLITE_OK) rc = sqlite3_step(st);
    int64_t id = 0, closed = 0;
    if (rc == SQLITE_ROW) {
      id = sqlite3_column_int64(st, 0);
      closed = sqlite3_column_int64(st, 1);
    }
    done(st);
    if (rc == SQLITE_DONE) break;
    if (rc != SQLITE_ROW) {
      ret = sql_fail(s, "retention_tickets", rc);
      break;
    }
    int files = 0;
    ret = delete_files(s, data_dir, id, now_ms, budget, &rows, &files);
    if (ret || files == 2) break; /* the next step starts at this ticket again */
    cur->closed_ms = closed;
    cur->ticket = id;
    if (files == 1) continue; /* the next sweep tries it again */
    /* Its members first, then the ticket: nothing ever names a parent that is gone. */
    int64_t child = 0;
    do {
      st = s->st[ST_RTX_CHILD];
      rc = SQLITE_OK;
      bind_i64(st, 1, id, &rc);
      if (rc == SQLITE_OK) rc = sqlite3_step(st);
      child = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
      done(st);
      if (rc != SQLITE_ROW && rc != SQLITE_DONE) ret = sql_fail(s, "retention_ticket_child", rc);
      if (ret == 0 && child) ret = delete_one(s, child, &rows);
      if (ret == 0 && child) (*tickets)++;
    } while (ret == 0 && child);
    if (ret == 0) ret = delete_one(s, id, &rows);
    if (ret == 0) (*tickets)++;
  }
  if (ret == 0) ret = store_audit_gate(s, false);
  if (ret == 0) ret = tx_commit(s);
  else tx_rollback(s);
  if (ret) *tickets = 0;
  *more = ret == 0 && rows >= budget;
  return ret;
}
