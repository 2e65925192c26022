/* Help-desk tickets and their append-only timelines. */
#include "internal.h"

#define TIX_COLS STORE_TIX_COLS
#define TIX_WHERE "id > ?1 AND state IN (?5, ?6, ?7) AND (?3 IS NULL OR assignee = ?3)" \
                  " AND (?4 IS NULL OR device = ?4) ORDER BY id LIMIT ?2"
#define TEV_COLS STORE_TEV_COLS

static const store_sql_t k_sql[] = {
  {ST_TIX_INSERT, "INSERT INTO tickets(device, requester, assignee, summary, external_id,"
      " priority, level, state, created_ms, updated_ms, first_response_due_ms,"
      " resolution_due_ms, first_response_ms, resolved_ms, created_by, source, parent, closed_ms)"
      " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,"
      " CASE WHEN ?8 = 3 THEN ?9 ELSE 0 END)"},
  /* closed_ms: when it was last closed (retention's closed_tickets counts from it); a comment
   * on a closed ticket leaves it, a reopen clears it. */
  {ST_TIX_UPDATE, "UPDATE tickets SET assignee = ?2, priority = ?3, level = ?4, state = ?5,"
      " summary = ?6, updated_ms = ?7, first_response_due_ms = ?8,"
      " resolution_due_ms = ?9, first_response_ms = ?10, resolved_ms = ?11,"
      " closed_ms = CASE WHEN ?5 <> 3 THEN 0 WHEN state = 3 THEN closed_ms ELSE ?7 END"
      " WHERE id = ?1"},
  {ST_TIX_RESPONDED, "UPDATE tickets SET first_response_ms = ?2 WHERE id = ?1"
      " AND first_response_ms = 0"},
  {ST_TIX_GET, "SELECT " TIX_COLS " FROM tickets WHERE id = ?1"},
  {ST_TIX_LIST, "SELECT " TIX_COLS " FROM tickets WHERE " TIX_WHERE},
  {ST_TIX_LIST_DEVICE, "SELECT " TIX_COLS " FROM tickets WHERE device = ?4 AND " TIX_WHERE},
  {ST_TIX_LIST_ASSIGNEE, "SELECT " TIX_COLS " FROM tickets WHERE assignee = ?3 AND " TIX_WHERE},
  {ST_TEV_INSERT, "INSERT INTO ticket_events(ticket, ts_ms, actor, kind, text)"
      " VALUES(?1, ?2, ?3, ?4, ?5)"},
  {ST_TEV_LIST, "SELECT " TEV_COLS " FROM ticket_events WHERE ticket = ?1 ORDER BY id"},
  {ST_TEV_TAIL, "SELECT * FROM (SELECT " TEV_COLS " FROM ticket_events WHERE ticket = ?1"
      " ORDER BY id DESC LIMIT ?2) ORDER BY id"},
  {ST_TEV_COUNT, "SELECT count(*) FROM ticket_events WHERE ticket = ?1"},
};

int store_prepare_tickets(broker_store_t *s) { return store_prepare(s, k_sql, sizeof k_sql / sizeof k_sql[0]); }

/* ---- tickets ----------------------------------------------------------------------------- */



static int ticket_fields(const store_ticket_t *t) {
  if (strnlen(t->device, sizeof t->device) == sizeof t->device ||
      strnlen(t->requester, sizeof t->requester) == sizeof t->requester ||
      strnlen(t->assignee, sizeof t->assignee) == sizeof t->assignee ||
      strnlen(t->summary, sizeof t->summary) == sizeof t->summary ||
      strnlen(t->external_id, sizeof t->external_id) == sizeof t->external_id ||
      strnlen(t->source, sizeof t->source) == sizeof t->source)
    return TT_ETOOBIG;
  return 0;
}


/* Event fields longer than store_ticket_event_t holds are refused, so that what is listed
 * is what was written. */
static int event_check(const char *actor, const char *kind, const char *text) {
  if (kind == NULL || kind[0] == '\0') return TT_EINVAL;
  if ((actor != NULL && strlen(actor) >= STORE_NAME_MAX) || strlen(kind) >= STORE_NAME_MAX ||
      (text != NULL && strlen(text) >= STORE_TEXT_MAX))
    return TT_ETOOBIG;
  return 0;
}

static int event_insert(broker_store_t *s, int64_t ticket, int64_t ts_ms, const char *actor,
                        const char *kind, const char *text) {
  sqlite3_stmt *st = s->st[ST_TEV_INSERT];
  int rc = SQLITE_OK;
  bind_i64(st, 1, ticket, &rc);
  bind_i64(st, 2, ts_ms, &rc);
  bind_text(st, 3, actor, &rc);
  bind_text(st, 4, kind, &rc);
  bind_text(st, 5, text, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  done(st);
  return rc == SQLITE_DONE ? 0 : constraint_fail(s, "ticket_event_add", rc);
}

int store_ticket_add(broker_store_t *s, store_ticket_t *t, const char *actor, int64_t now_ms) {
  int ret = ticket_fields(t);
  if (ret != 0) return ret;
  if (actor != NULL && strlen(actor) >= STORE_NAME_MAX) return TT_ETOOBIG;
  if (t->device[0] == '\0') return TT_EINVAL;
  store_ticket_state_t state = t->state == 0 ? STORE_TICKET_OPEN : t->state;
  int level = t->level == 0 ? STORE_TICKET_LEVEL_MIN : t->level;
  ret = tx_begin(s);
  if (ret != 0) return ret;
  sqlite3_stmt *st = s->st[ST_TIX_INSERT];
  int rc = SQLITE_OK;
  bind_field(st, 1, t->device, sizeof t->device, &rc);
  bind_field(st, 2, t->requester, sizeof t->requester, &rc);
  bind_field(st, 3, t->assignee, sizeof t->assignee, &rc);
  bind_field(st, 4, t->summary, sizeof t->summary, &rc);
  bind_field(st, 5, t->external_id, sizeof t->external_id, &rc);
  bind_i64(st, 6, (int64_t)t->priority, &rc);
  bind_i64(st, 7, level, &rc);
  bind_i64(st, 8, (int64_t)state, &rc);
  bind_i64(st, 9, now_ms, &rc);
  bind_i64(st, 10, t->first_response_due_ms, &rc);
  bind_i64(st, 11, t->resolution_due_ms, &rc);
  bind_i64(st, 12, t->first_response_ms, &rc);
  bind_i64(st, 13, t->resolved_ms, &rc);
  bind_text(st, 14, actor, &rc);
  bind_text(st, 15, t->source[0] ? t->source : "technician", &rc);
  bind_i64(st, 16, t->parent, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  done(st);
  if (rc != SQLITE_DONE) ret = constraint_fail(s, "ticket_add", rc);
  int64_t id = ret == 0 ? (int64_t)sqlite3_last_insert_rowid(s->db) : 0;
  if (ret == 0) ret = event_insert(s, id, now_ms, actor, "created", t->summary);
  if (ret == 0) ret = tx_commit(s);
  if (ret != 0) {
    tx_rollback(s);
    return ret;
  }
  t->id = id;
  t->state = state;
  t->level = level;
  t->created_ms = now_ms;
  t->updated_ms = now_ms;
  snprintf(t->created_by, sizeof t->created_by, "%s", actor != NULL ? actor : "");
  if (!t->source[0]) snprintf(t->source, sizeof t->source, "technician");
  return 0;
}

void store_ticket_from_row(sqlite3_stmt *st, store_ticket_t *t) {
  memset(t, 0, sizeof *t);
  t->id = sqlite3_column_int64(st, 0);
  col_text(st, 1, t->device, sizeof t->device);
  col_text(st, 2, t->requester, sizeof t->requester);
  col_text(st, 3, t->assignee, sizeof t->assignee);
  col_text(st, 4, t->summary, sizeof t->summary);
  col_text(st, 5, t->external_id, sizeof t->external_id);
  /* The schema's CHECKs keep these in range. */
  t->priority = (store_ticket_priority_t)sqlite3_column_int(st, 6);
  t->level = sqlite3_column_int(st, 7);
  t->state = (store_ticket_state_t)sqlite3_column_int(st, 8);
  t->created_ms = sqlite3_column_int64(st, 9);
  t->updated_ms = sqlite3_column_int64(st, 10);
  t->first_response_due_ms = sqlite3_column_int64(st, 11);
  t->resolution_due_ms = sqlite3_column_int64(st, 12);
  t->first_response_ms = sqlite3_column_int64(st, 13);
  t->resolved_ms = sqlite3_column_int64(st, 14);
  col_text(st, 15, t->created_by, sizeof t->created_by);
  col_text(st, 16, t->source, sizeof t->source);
  t->parent = sqlite3_column_int64(st, 17);
}

int store_ticket_get(broker_store_t *s, int64_t id, store_ticket_t *out) {
  memset(out, 0, sizeof *out);
  sqlite3_stmt *st = s->st[ST_TIX_GET];
  int rc = SQLITE_OK;
  bind_i64(st, 1, id, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  int ret = 0;
  if (rc == SQLITE_ROW) store_ticket_from_row(st, out);
  else if (rc == SQLITE_DONE) ret = TT_ENOTFOUND;
  else ret = sql_fail(s, "ticket_get", rc);
  done(st);
  return ret;
}

int store_ticket_update(broker_store_t *s, const store_ticket_t *t, const char *actor,
                        const char *kind, const char *text, int64_t now_ms) {
  int ret = ticket_fields(t);
  if (ret == 0) ret = event_check(actor, kind, text);
  if (ret != 0) return ret;
  ret = tx_begin(s);
  if (ret != 0) return ret;
  sqlite3_stmt *st = s->st[ST_TIX_UPDATE];
  int rc = SQLITE_OK;
  bind_i64(st, 1, t->id, &rc);
  bind_field(st, 2, t->assignee, sizeof t->assignee, &rc);
  bind_i64(st, 3, (int64_t)t->priority, &rc);
  bind_i64(st, 4, t->level, &rc);
  bind_i64(st, 5, (int64_t)t->state, &rc);
  bind_field(st, 6, t->summary, sizeof t->summary, &rc);
  bind_i64(st, 7, now_ms, &rc);
  bind_i64(st, 8, t->first_response_due_ms, &rc);
  bind_i64(st, 9, t->resolution_due_ms, &rc);
  bind_i64(st, 10, t->first_response_ms, &rc);
  bind_i64(st, 11, t->resolved_ms, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  done(st);
  if (rc != SQLITE_DONE) ret = constraint_fail(s, "ticket_update", rc);
  else if (sqlite3_changes(s->db) == 0) ret = TT_ENOTFOUND;
  if (ret == 0) ret = event_insert(s, t->id, now_ms, actor, kind, text);
  if (ret == 0) ret = tx_commit(s);
  if (ret != 0) tx_rollback(s);
  return ret;
}

/* An UPDATE guarded by "still live" changed nothing: say whether the row is missing or
 * had ended. */

int store_ticket_responded(broker_store_t *s, int64_t id, int64_t now_ms) {
  if (now_ms <= 0) return TT_EINVAL;
  sqlite3_stmt *st = s->st[ST_TIX_RESPONDED];
  int rc = SQLITE_OK;
  bind_i64(st, 1, id, &rc);
  bind_i64(st, 2, now_ms, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  done(st);
  if (rc != SQLITE_DONE) return sql_fail(s, "ticket_responded", rc);
  if (sqlite3_changes(s->db) > 0) return 0;
  int ret = not_live(s, ST_TIX_GET, id, "ticket_responded");
  return ret == TT_ESTATE ? 0 : ret; /* there, and answered before */
}

/* One INSERT is its own transaction. */
int store_ticket_event_add(broker_store_t *s, int64_t ticket, int64_t ts_ms, const char *actor,
                           const char *kind, const char *text) {
  int ret = event_check(actor, kind, text);
  if (ret != 0) return ret;
  return event_insert(s, ticket, ts_ms, actor, kind, text);
}

int store_ticket_list(broker_store_t *s, const store_ticket_filter_t *f, store_ticket_cb cb,
                      void *ctx) {
  store_stmt_t which = f->device != NULL     ? ST_TIX_LIST_DEVICE
                       : f->assignee != NULL ? ST_TIX_LIST_ASSIGNEE
                                             : ST_TIX_LIST;
  sqlite3_stmt *st = s->st[which];
  int rc = SQLITE_OK;
  bind_i64(st, 1, f->after_id, &rc);
  bind_i64(st, 2, f->limit == 0 ? -1 : (int64_t)f->limit, &rc);
  bind_opt_text(st, 3, f->assignee, &rc);
  bind_opt_text(st, 4, f->device, &rc);
  static const store_ticket_state_t states[3] = {STORE_TICKET_OPEN, STORE_TICKET_RESOLVED,
                                                 STORE_TICKET_CLOSED};
  for (int i = 0; i < 3; i++) {
    bool want = f->state_mask == 0 || (f->state_mask & STORE_TICKET_STATE_BIT(states[i])) != 0;
    bind_i64(st, 5 + i, want ? (int64_t)states[i] : -1, &rc);
  }
  int ret = 0;
  while (rc == SQLITE_OK || rc == SQLITE_ROW) {
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) break;
    store_ticket_t t;
    store_ticket_from_row(st, &t);
    ret = cb(ctx, &t);
    if (ret != 0) break;
  }
  done(st);
  if (ret == 0 && rc != SQLITE_DONE) ret = sql_fail(s, "ticket_list", rc);
  return ret;
}

void store_event_from_row(sqlite3_stmt *st, store_ticket_event_t *e) {
  memset(e, 0, sizeof *e);
  e->id = sqlite3_column_int64(st, 0);
  e->ticket = sqlite3_column_int64(st, 1);
  e->ts_ms = sqlite3_column_int64(st, 2);
  col_text(st, 3, e->actor, sizeof e->actor);
  col_text(st, 4, e->kind, sizeof e->kind);
  col_text(st, 5, e->text, sizeof e->text);
}

/* Walk an events statement whose parameters are bound (rc says whether binding worked). */
static int events_walk(broker_store_t *s, sqlite3_stmt *st, int rc, store_ticket_event_cb cb,
                       void *ctx) {
  int ret = 0;
  while (rc == SQLITE_OK || rc == SQLITE_ROW) {
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) break;
    store_ticket_event_t e;
    store_event_from_row(st, &e);
    ret = cb(ctx, &e);
    if (ret != 0) break;
  }
  done(st);
  if (ret == 0 && rc != SQLITE_DONE) ret = sql_fail(s, "ticket_events", rc);
  return ret;
}

int store_ticket_events(broker_store_t *s, int64_t ticket, store_ticket_event_cb cb, void *ctx) {
  sqlite3_stmt *st = s->st[ST_TEV_LIST];
  int rc = SQLITE_OK;
  bind_i64(st, 1, ticket, &rc);
  return events_walk(s, st, rc, cb, ctx);
}

/* A ticket's timeline grows with every session and channel; showing it reads only the tail
 * the answer can carry. */
int store_ticket_events_tail(broker_store_t *s, int64_t ticket, uint32_t limit,
                             store_ticket_event_cb cb, void *ctx, uint32_t *total) {
  *total = 0;
  sqlite3_stmt *st = s->st[ST_TEV_COUNT];
  int rc = SQLITE_OK;
  bind_i64(st, 1, ticket, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) *total = (uint32_t)sqlite3_column_int64(st, 0);
  done(st);
  if (rc != SQLITE_ROW) return sql_fail(s, "ticket_events_count", rc);
  st = s->st[ST_TEV_TAIL];
  rc = SQLITE_OK;
  bind_i64(st, 1, ticket, &rc);
  bind_i64(st, 2, limit == 0 ? -1 : (int64_t)limit, &rc);
  return events_walk(s, st, rc, cb, ctx);
}

