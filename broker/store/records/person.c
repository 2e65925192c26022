/* A person's records (store.h "a person's records"): the ids of every row that names them, a
 * page at a time, for `person export`. A person is named as a ticket's requester, assignee or
 * opener, an event's actor, a session's technician or the local user who consented on their
 * machine, a diagnostics report's taker, or in the audit; the sessions, recordings and reports
 * of their machine (a session they consented to, or under a ticket they asked for) are theirs
 * too. `person erase` finds the same and more (records/erase.c). */
#include "../internal.h"

/* Sessions on their machine: ones they consented to, or under a ticket they asked for. */
#define MINE "(SELECT id FROM sessions WHERE consent_by = ?1 OR ticket IN " ASKED ")"
#define ASKED "(SELECT id FROM tickets WHERE requester = ?1)"

static const store_sql_t k_sql[] = {
  {ST_PX_TICKETS, "SELECT id FROM tickets WHERE id > ?2 AND (requester = ?1 OR assignee = ?1 OR created_by = ?1)"
                  " ORDER BY id LIMIT ?3"},
  {ST_PX_EVENTS, "SELECT e.id FROM ticket_events e JOIN tickets t ON t.id = e.ticket WHERE e.id > ?2"
                 " AND (e.actor = ?1 OR t.requester = ?1 OR t.assignee = ?1 OR t.created_by = ?1)"
                 " ORDER BY e.id LIMIT ?3"},
  {ST_PX_EVENT_GET, "SELECT " STORE_TEV_COLS " FROM ticket_events WHERE id = ?1"},
  {ST_PX_SESSIONS, "SELECT id FROM sessions WHERE id > ?2 AND (person = ?1 OR consent_by = ?1 OR ticket IN " ASKED ")"
                   " ORDER BY id LIMIT ?3"},
  {ST_PX_RECORDINGS, "SELECT id FROM recordings WHERE id > ?2 AND (person = ?1 OR session IN " MINE ")"
                     " ORDER BY id LIMIT ?3"},
  {ST_PX_DIAG, "SELECT id FROM diag_reports WHERE id > ?2 AND (person = ?1 OR session IN " MINE ")"
               " ORDER BY id LIMIT ?3"},
  /* A value of the detail is a JSON string: the name between quotes (names hold no quote). */
  {ST_PX_AUDIT, "SELECT id FROM audit WHERE id > ?2 AND id <= ?4 AND (actor = ?1 OR target = ?1"
                " OR instr(detail, '\"' || ?1 || '\"') > 0) ORDER BY id LIMIT ?3"},
};

int store_prepare_person_records(broker_store_t *s) { return store_prepare(s, k_sql, sizeof k_sql / sizeof k_sql[0]); }

int store_person_ids(broker_store_t *s, store_px_t which, const char *name, int64_t after, int64_t window,
                     int64_t *ids, uint32_t cap, uint32_t *n, int64_t *scanned_to) {
  static const store_stmt_t k_st[] = {
      [STORE_PX_TICKETS] = ST_PX_TICKETS,   [STORE_PX_EVENTS] = ST_PX_EVENTS, [STORE_PX_SESSIONS] = ST_PX_SESSIONS,
      [STORE_PX_RECORDINGS] = ST_PX_RECORDINGS, [STORE_PX_DIAG] = ST_PX_DIAG,  [STORE_PX_AUDIT] = ST_PX_AUDIT,
  };
  *n = 0;
  if (which < STORE_PX_TICKETS || which > STORE_PX_AUDIT || !name[0]) return TT_EINVAL;
  int64_t upto = window > 0 && after < INT64_MAX - window ? after + window : INT64_MAX;
  if (scanned_to) *scanned_to = upto;
  sqlite3_stmt *st = s->st[k_st[which]];
  int rc = SQLITE_OK;
  bind_text(st, 1, name, &rc);
  bind_i64(st, 2, after, &rc);
  bind_i64(st, 3, cap, &rc);
  if (which == STORE_PX_AUDIT) bind_i64(st, 4, upto, &rc);
  while (rc == SQLITE_OK || rc == SQLITE_ROW) {
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW || *n >= cap) break;
    ids[(*n)++] = sqlite3_column_int64(st, 0);
  }
  done(st);
  if (rc != SQLITE_DONE && rc != SQLITE_ROW) return sql_fail(s, "person_ids", rc);
  /* A full page ends at its last id: the next one starts there, whatever the window. */
  if (scanned_to && *n == cap) *scanned_to = ids[cap - 1];
  return 0;
}

int store_ticket_event_get(broker_store_t *s, int64_t id, store_ticket_event_t *out) {
  sqlite3_stmt *st = s->st[ST_PX_EVENT_GET];
  int rc = SQLITE_OK;
  bind_i64(st, 1, id, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) store_event_from_row(st, out);
  done(st);
  if (rc == SQLITE_ROW) return 0;
  return rc == SQLITE_DONE ? TT_ENOTFOUND : sql_fail(s, "ticket_event_get", rc);
}
