/* People: the technicians and admins the broker knows, seen at connect or added by an admin.
 * Whether one is revoked is read from revocations, never copied here. */
#include "internal.h"

#define PPL_COLS "p.name, p.role, p.first_seen_ms, p.last_seen_ms, p.added_by, p.added_ms, p.note," \
                 " EXISTS(SELECT 1 FROM revocations r WHERE r.kind = 2 AND r.name = p.name), p.level"

#define SSH_COLS "fingerprint, person, type, bits, line, comment, added_ms, added_by"

static const store_sql_t k_sql[] = {
  {ST_PPL_ADD, "INSERT INTO people(name, role, added_by, added_ms, note, level) VALUES(?1, ?2, ?3, ?4, ?5, ?6)"},
  /* max(): a clock that stepped back never moves last seen back (nor, so, below first seen;
   * the right-hand sides all read the row as it was). */
  {ST_PPL_SEEN, "INSERT INTO people(name, role, first_seen_ms, last_seen_ms) VALUES(?1, ?2, ?3, ?3)"
      " ON CONFLICT(name) DO UPDATE SET role = excluded.role,"
      " first_seen_ms = CASE WHEN first_seen_ms = 0 THEN excluded.first_seen_ms ELSE first_seen_ms END,"
      " last_seen_ms = max(last_seen_ms, excluded.last_seen_ms)"},
  {ST_PPL_LAST_SEEN, "UPDATE people SET last_seen_ms = max(last_seen_ms, ?2)"
      " WHERE name = ?1 AND first_seen_ms > 0"},
  {ST_PPL_GET, "SELECT " PPL_COLS " FROM people p WHERE p.name = ?1"},
  {ST_PPL_LIST, "SELECT " PPL_COLS " FROM people p WHERE p.name > ?1 ORDER BY p.name LIMIT ?2"},
  {ST_PPL_SET_LEVEL, "UPDATE people SET level = ?2 WHERE name = ?1"},
  {ST_SSH_ADD, "INSERT INTO ssh_keys(" SSH_COLS ") VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"},
  {ST_SSH_COUNT, "SELECT count(*) FROM ssh_keys WHERE person = ?1"},
  {ST_SSH_GET, "SELECT " SSH_COLS " FROM ssh_keys WHERE fingerprint = ?1"},
  {ST_SSH_DEL, "DELETE FROM ssh_keys WHERE fingerprint = ?1"},
  {ST_SSH_OF, "SELECT " SSH_COLS " FROM ssh_keys WHERE person = ?1 ORDER BY added_ms, fingerprint"},
  {ST_SSH_ALL, "SELECT " SSH_COLS " FROM ssh_keys ORDER BY person, added_ms, fingerprint"},
  /* What the gateway may let in: keys of people not revoked. */
  {ST_SSH_LIVE, "SELECT " SSH_COLS " FROM ssh_keys k WHERE NOT EXISTS"
      " (SELECT 1 FROM revocations r WHERE r.kind = 2 AND r.name = k.person) ORDER BY person, added_ms"},
};

int store_prepare_people(broker_store_t *s) { return store_prepare(s, k_sql, sizeof k_sql / sizeof k_sql[0]); }

static void person_from_row(sqlite3_stmt *st, store_person_t *p) {
  memset(p, 0, sizeof *p);
  col_text(st, 0, p->name, sizeof p->name);
  p->role = (store_person_role_t)sqlite3_column_int64(st, 1);
  p->first_seen_ms = sqlite3_column_int64(st, 2);
  p->last_seen_ms = sqlite3_column_int64(st, 3);
  col_text(st, 4, p->added_by, sizeof p->added_by);
  p->added_ms = sqlite3_column_int64(st, 5);
  col_text(st, 6, p->note, sizeof p->note);
  p->revoked = sqlite3_column_int64(st, 7) != 0;
  p->level = sqlite3_column_int(st, 8); /* the schema keeps it in 1..3 */
}

/* A name the schema refuses is the caller's bad value; a second row for one name is -EEXIST. */
static int person_fail(broker_store_t *s, const char *op, int rc) {
  if (rc == SQLITE_CONSTRAINT_PRIMARYKEY || rc == SQLITE_CONSTRAINT_UNIQUE) return -EEXIST;
  return constraint_fail(s, op, rc);
}

int store_person_add(broker_store_t *s, const store_person_t *p) {
  /* Fields filled byte by byte may lack their NUL: refuse rather than read past them. */
  if (strnlen(p->name, sizeof p->name) == sizeof p->name ||
      strnlen(p->added_by, sizeof p->added_by) == sizeof p->added_by ||
      strnlen(p->note, sizeof p->note) == sizeof p->note)
    return TT_ETOOBIG;
  sqlite3_stmt *st = s->st[ST_PPL_ADD];
  int rc = SQLITE_OK;
  bind_text(st, 1, p->name, &rc);
  bind_i64(st, 2, (int64_t)p->role, &rc);
  bind_text(st, 3, p->added_by, &rc);
  bind_i64(st, 4, p->added_ms, &rc);
  bind_text(st, 5, p->note, &rc);
  bind_i64(st, 6, p->level == 0 ? 1 : p->level, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  done(st);
  return rc == SQLITE_DONE ? 0 : person_fail(s, "person_add", rc);
}

int store_person_seen(broker_store_t *s, const char *name, store_person_role_t role, int64_t now_ms) {
  sqlite3_stmt *st = s->st[ST_PPL_SEEN];
  int rc = SQLITE_OK;
  bind_text(st, 1, name, &rc);
  bind_i64(st, 2, (int64_t)role, &rc);
  bind_i64(st, 3, now_ms, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  done(st);
  return rc == SQLITE_DONE ? 0 : person_fail(s, "person_seen", rc);
}

int store_person_last_seen(broker_store_t *s, const char *name, int64_t now_ms) {
  sqlite3_stmt *st = s->st[ST_PPL_LAST_SEEN];
  int rc = SQLITE_OK;
  bind_text(st, 1, name, &rc);
  bind_i64(st, 2, now_ms, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  done(st);
  return rc == SQLITE_DONE ? 0 : sql_fail(s, "person_last_seen", rc);
}

int store_person_set_level(broker_store_t *s, const char *name, int level) {
  sqlite3_stmt *st = s->st[ST_PPL_SET_LEVEL];
  int rc = SQLITE_OK;
  bind_text(st, 1, name, &rc);
  bind_i64(st, 2, level, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  done(st);
  if (rc != SQLITE_DONE) return constraint_fail(s, "person_set_level", rc);
  return sqlite3_changes(s->db) == 0 ? TT_ENOTFOUND : 0;
}

int store_person_get(broker_store_t *s, const char *name, store_person_t *out) {
  memset(out, 0, sizeof *out);
  sqlite3_stmt *st = s->st[ST_PPL_GET];
  int rc = SQLITE_OK;
  bind_text(st, 1, name, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  int ret = 0;
  if (rc == SQLITE_ROW) person_from_row(st, out);
  else if (rc == SQLITE_DONE) ret = TT_ENOTFOUND;
  else ret = sql_fail(s, "person_get", rc);
  done(st);
  return ret;
}

int store_person_list(broker_store_t *s, const char *after, uint32_t limit, store_person_cb cb,
                      void *ctx) {
  sqlite3_stmt *st = s->st[ST_PPL_LIST];
  int rc = SQLITE_OK, ret = 0;
  bind_text(st, 1, after, &rc);
  bind_i64(st, 2, limit == 0 ? -1 : (int64_t)limit, &rc);
  while (rc == SQLITE_OK || rc == SQLITE_ROW) {
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) break;
    store_person_t p;
    person_from_row(st, &p);
    ret = cb(ctx, &p);
    if (ret != 0) break;
  }
  done(st);
  if (ret == 0 && rc != SQLITE_DONE) ret = sql_fail(s, "person_list", rc);
  return ret;
}

/* ---- ssh keys (schema 15) ------------------------------------------------------------------ */

static void key_from_row(sqlite3_stmt *st, store_ssh_key_t *k) {
  memset(k, 0, sizeof *k);
  col_text(st, 0, k->fingerprint, sizeof k->fingerprint);
  col_text(st, 1, k->person, sizeof k->person);
  col_text(st, 2, k->type, sizeof k->type);
  k->bits = (unsigned)sqlite3_column_int(st, 3);
  col_text(st, 4, k->line, sizeof k->line);
  col_text(st, 5, k->comment, sizeof k->comment);
  k->added_ms = sqlite3_column_int64(st, 6);
  col_text(st, 7, k->added_by, sizeof k->added_by);
}

int store_ssh_key_get(broker_store_t *s, const char *fingerprint, store_ssh_key_t *out) {
  sqlite3_stmt *st = s->st[ST_SSH_GET];
  int rc = SQLITE_OK;
  bind_text(st, 1, fingerprint, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  int ret = 0;
  if (rc == SQLITE_ROW) key_from_row(st, out);
  else if (rc == SQLITE_DONE) ret = TT_ENOTFOUND;
  else ret = sql_fail(s, "ssh_key_get", rc);
  done(st);
  return ret;
}

int store_ssh_key_add(broker_store_t *s, const store_ssh_key_t *k, uint32_t max_per_person) {
  sqlite3_stmt *st = s->st[ST_SSH_COUNT];
  int rc = SQLITE_OK;
  bind_text(st, 1, k->person, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  int64_t n = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
  done(st);
  if (rc != SQLITE_ROW) return sql_fail(s, "ssh_key_count", rc);
  if (n >= (int64_t)max_per_person) return TT_EFULL;
  st = s->st[ST_SSH_ADD];
  rc = SQLITE_OK;
  bind_text(st, 1, k->fingerprint, &rc);
  bind_text(st, 2, k->person, &rc);
  bind_text(st, 3, k->type, &rc);
  bind_i64(st, 4, (int64_t)k->bits, &rc);
  bind_text(st, 5, k->line, &rc);
  bind_text(st, 6, k->comment, &rc);
  bind_i64(st, 7, k->added_ms, &rc);
  bind_text(st, 8, k->added_by, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  done(st);
  if (rc == SQLITE_CONSTRAINT_FOREIGNKEY) return TT_ENOTFOUND; /* no such person */
  if (rc != SQLITE_DONE) return person_fail(s, "ssh_key_add", rc);
  return 0;
}

int store_ssh_key_remove(broker_store_t *s, const char *fingerprint) {
  sqlite3_stmt *st = s->st[ST_SSH_DEL];
  int rc = SQLITE_OK;
  bind_text(st, 1, fingerprint, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  done(st);
  if (rc != SQLITE_DONE) return sql_fail(s, "ssh_key_remove", rc);
  return sqlite3_changes(s->db) == 0 ? TT_ENOTFOUND : 0;
}

int store_ssh_key_list(broker_store_t *s, store_ssh_keys_t which, const char *person, store_ssh_key_cb cb,
                       void *ctx) {
  sqlite3_stmt *st = s->st[which == STORE_SSH_KEYS_OF ? ST_SSH_OF : which == STORE_SSH_KEYS_ALL ? ST_SSH_ALL : ST_SSH_LIVE];
  int rc = SQLITE_OK, ret = 0;
  if (which == STORE_SSH_KEYS_OF) bind_text(st, 1, person, &rc);
  while (rc == SQLITE_OK || rc == SQLITE_ROW) {
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) break;
    store_ssh_key_t k;
    key_from_row(st, &k);
    ret = cb(ctx, &k);
    if (ret != 0) break;
  }
  done(st);
  if (ret == 0 && rc != SQLITE_DONE) ret = sql_fail(s, "ssh_key_list", rc);
  return ret;
}
