/* The employee's help requests (store.h): the nonce each one carries, so that a request sent
 * again after a lost answer finds the ticket it opened, and the count per device and hour. */
#include "internal.h"

static const store_sql_t k_sql[] = {
  {ST_HELP_FIND, "SELECT ticket FROM help_requests WHERE device = ?1 AND nonce = ?2"},
  {ST_HELP_RECENT, "SELECT count(*), min(received_ms) FROM help_requests"
                   " WHERE device = ?1 AND received_ms >= ?2"},
  {ST_HELP_INSERT, "INSERT INTO help_requests(device, nonce, user, ticket, asked_ms, received_ms)"
                   " VALUES(?1, ?2, ?3, ?4, ?5, ?6)"},
  {ST_HELP_TICKETS, "SELECT " STORE_TIX_COLS " FROM tickets WHERE device = ?1 AND requester = ?2"
                    " ORDER BY id DESC LIMIT ?3"},
  {ST_HELP_COMMENTS, "SELECT count(*) FROM ticket_events e JOIN tickets t ON t.id = e.ticket"
                     " WHERE t.device = ?1 AND e.kind = '" STORE_EVENT_REQUESTER_COMMENT "' AND e.ts_ms >= ?2"},
  {ST_HELP_LAST_PUBLIC, "SELECT " STORE_TEV_COLS " FROM ticket_events WHERE ticket = ?1"
                        " AND kind IN ('" STORE_EVENT_PUBLIC_COMMENT "', '" STORE_EVENT_REQUESTER_COMMENT "')"
                        " ORDER BY id DESC LIMIT 1"},
};

int store_prepare_help(broker_store_t *s) { return store_prepare(s, k_sql, sizeof k_sql / sizeof k_sql[0]); }

int store_help_comments_recent(broker_store_t *s, const char *device, int64_t since_ms, uint32_t *count) {
  *count = 0;
  sqlite3_stmt *st = s->st[ST_HELP_COMMENTS];
  int rc = SQLITE_OK;
  bind_text(st, 1, device, &rc);
  bind_i64(st, 2, since_ms, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  int ret = 0;
  if (rc == SQLITE_ROW) *count = (uint32_t)sqlite3_column_int64(st, 0);
  else ret = sql_fail(s, "help_comments", rc);
  done(st);
  return ret;
}

static void bind_nonce(sqlite3_stmt *st, int i, const uint8_t *nonce, int *rc) {
  if (*rc == SQLITE_OK) *rc = sqlite3_bind_blob(st, i, nonce, STORE_HELP_NONCE_LEN, SQLITE_STATIC);
}

int store_help_find(broker_store_t *s, const char *device, const uint8_t nonce[STORE_HELP_NONCE_LEN],
                    int64_t *ticket) {
  *ticket = 0;
  sqlite3_stmt *st = s->st[ST_HELP_FIND];
  int rc = SQLITE_OK;
  bind_text(st, 1, device, &rc);
  bind_nonce(st, 2, nonce, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  int ret = 0;
  if (rc == SQLITE_ROW) *ticket = sqlite3_column_int64(st, 0);
  else if (rc == SQLITE_DONE) ret = TT_ENOTFOUND;
  else ret = sql_fail(s, "help_find", rc);
  done(st);
  return ret;
}

int store_help_recent(broker_store_t *s, const char *device, int64_t since_ms, uint32_t *count,
                      int64_t *oldest_ms) {
  *count = 0;
  *oldest_ms = 0;
  sqlite3_stmt *st = s->st[ST_HELP_RECENT];
  int rc = SQLITE_OK;
  bind_text(st, 1, device, &rc);
  bind_i64(st, 2, since_ms, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  int ret = 0;
  if (rc == SQLITE_ROW) {
    *count = (uint32_t)sqlite3_column_int64(st, 0);
    *oldest_ms = sqlite3_column_int64(st, 1); /* NULL (no rows) reads as 0 */
  } else {
    ret = sql_fail(s, "help_recent", rc);
  }
  done(st);
  return ret;
}

int store_help_add(broker_store_t *s, const char *device, const uint8_t nonce[STORE_HELP_NONCE_LEN],
                   const char *user, int64_t ticket, int64_t asked_ms, int64_t received_ms) {
  sqlite3_stmt *st = s->st[ST_HELP_INSERT];
  int rc = SQLITE_OK;
  bind_text(st, 1, device, &rc);
  bind_nonce(st, 2, nonce, &rc);
  bind_text(st, 3, user, &rc);
  bind_i64(st, 4, ticket, &rc);
  bind_i64(st, 5, asked_ms, &rc);
  bind_i64(st, 6, received_ms, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  done(st);
  if (rc == SQLITE_DONE) return 0;
  return rc == SQLITE_CONSTRAINT_UNIQUE ? insert_fail(s, "help_add", rc) : constraint_fail(s, "help_add", rc);
}

static int last_public(broker_store_t *s, int64_t ticket, store_ticket_event_t *e, bool *found) {
  *found = false;
  sqlite3_stmt *st = s->st[ST_HELP_LAST_PUBLIC];
  int rc = SQLITE_OK;
  bind_i64(st, 1, ticket, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  int ret = 0;
  if (rc == SQLITE_ROW) {
    store_event_from_row(st, e);
    *found = true;
  } else if (rc != SQLITE_DONE) {
    ret = sql_fail(s, "help_last_public", rc);
  }
  done(st);
  return ret;
}

int store_help_tickets(broker_store_t *s, const char *device, const char *user, uint32_t limit,
                       store_help_ticket_cb cb, void *ctx) {
  sqlite3_stmt *st = s->st[ST_HELP_TICKETS];
  int rc = SQLITE_OK;
  bind_text(st, 1, device, &rc);
  bind_text(st, 2, user, &rc);
  bind_i64(st, 3, limit == 0 ? -1 : (int64_t)limit, &rc);
  int ret = 0;
  while (rc == SQLITE_OK || rc == SQLITE_ROW) {
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) break;
    store_ticket_t t;
    store_ticket_from_row(st, &t);
    store_ticket_event_t e;
    bool found;
    ret = last_public(s, t.id, &e, &found);
    if (ret == 0) ret = cb(ctx, &t, found ? &e : NULL);
    if (ret != 0) break;
  }
  done(st);
  if (ret == 0 && rc != SQLITE_DONE) ret = sql_fail(s, "help_tickets", rc);
  return ret;
}
