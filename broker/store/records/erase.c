/* A person's erasure (store.h "a person's erasure", README "Data protection officer"): every
 * value that names them (words.c: a whole word, in any case) becomes a pseudonym, in one
 * transaction on the writer. Only someone the broker knows is erased: a revoked technician or
 * admin, or an employee by the user name on a ticket, a consent or a help request; and not when
 * another identity differs from the name only in case. Their diagnostics reports are deleted,
 * their recordings marked for their files to go after the commit, and the audit values that
 * name them released (release.c): the erasure's own entry commits to them and the broker signs
 * that. Records of a ticket on hold are counted, not touched. A revoked person's revocation
 * stays, under a keyed hash of the name, so that the name never comes back in. Inventory is the
 * machine's record, not the person's: it is not searched here (README says so). */
#include <stdlib.h>
#include <strings.h>
#include <openssl/hmac.h>
#include "../internal.h"
#include "tt/audit.h"
#include "tt/hex.h"

#define MOD "store"
_Static_assert(STORE_EC_N <= TT_ERASE_CLASSES_MAX, "the console takes at most TT_ERASE_CLASSES_MAX classes");

/* ---- where a person is named ---------------------------------------------------------------- */

#define HELD "(SELECT ticket FROM ticket_holds)"

/* A table, its columns that may name a person ("col" or "col:max" where a CHECK bounds it),
 * the column that ties a row to a ticket (for holds), and the class it is counted in. */
typedef struct {
  const char *table, *cols, *ticket;
  store_erase_class_t cls;
} target_t;

static const target_t k_targets[] = {
    {"tickets", "requester,assignee,created_by,summary,external_id", "id", STORE_EC_TICKETS},
    {"ticket_events", "actor,text", "ticket", STORE_EC_EVENTS},
    {"sessions", "person,consent_by,ended_by,end_reason", "ticket", STORE_EC_SESSIONS},
    {"recordings", "person", "ticket", STORE_EC_RECORDINGS},
    {"help_requests", "user:64", "ticket", STORE_EC_HELP},
    {"kb_links", "linked_by:64", "ticket", STORE_EC_OTHER},
    {"people", "added_by,note", NULL, STORE_EC_OTHER},
    {"ssh_keys", "added_by,comment", NULL, STORE_EC_OTHER},
    {"tokens", "created_by,note", NULL, STORE_EC_OTHER},
    {"revocations", "\"by\",reason", NULL, STORE_EC_OTHER},
    {"alerts", "acked_by:64", NULL, STORE_EC_OTHER},
    {"policy", "set_by:64", NULL, STORE_EC_OTHER},
    {"maintenance", "set_by:64,reason:256", NULL, STORE_EC_OTHER},
    {"retention", "set_by", NULL, STORE_EC_OTHER},
    {"asset_records", "name:2048,owner:2048,notes:2048,updated_by:64", NULL, STORE_EC_OTHER},
    {"asset_custom", "value:2048", NULL, STORE_EC_OTHER},
};

/* The rows of a person's machine, for recordings and diagnostics: sessions they consented
 * to, and tickets they asked for (a session or report under it is of their machine). */
#define THEIRS(col_session, col_ticket)                                                          \
  "(" col_session " IN (SELECT id FROM sessions WHERE tt_names(consent_by, ?1))"                  \
  " OR " col_ticket " IN (SELECT id FROM tickets WHERE tt_names(requester, ?1)))"

typedef struct {
  char sql[2048];
  size_t len;
  bool bad;
} sqlbuf_t;

static void put(sqlbuf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(sqlbuf_t *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(b->sql + b->len, sizeof b->sql - b->len, fmt, ap);
  va_end(ap);
  if (n < 0 || (size_t)n >= sizeof b->sql - b->len) b->bad = true;
  else b->len += (size_t)n;
}

/* "UPDATE t SET c = tt_rename(c, ?1, ?2[, max]), ... WHERE (tt_names(c, ?1) OR ...) AND held?"
 * or, when count, "SELECT count(*) FROM t WHERE (...) AND held". */
static int target_sql(const target_t *t, bool count, sqlbuf_t *b) {
  char cols[256];
  snprintf(cols, sizeof cols, "%s", t->cols);
  if (count) put(b, "SELECT count(*) FROM %s WHERE (", t->table);
  else put(b, "UPDATE %s SET ", t->table);
  char *save = NULL;
  int i = 0;
  if (!count) {
    for (char *c = strtok_r(cols, ",", &save); c; c = strtok_r(NULL, ",", &save), i++) {
      char *max = strchr(c, ':');
      if (max) *max++ = '\0';
      put(b, "%s%s = tt_rename(%s, ?1, ?2%s%s)", i ? ", " : "", c, c, max ? ", " : "", max ? max : "");
    }
    put(b, " WHERE (");
    snprintf(cols, sizeof cols, "%s", t->cols);
  }
  i = 0;
  for (char *c = strtok_r(cols, ",", &save); c; c = strtok_r(NULL, ",", &save), i++) {
    char *max = strchr(c, ':');
    if (max) *max = '\0';
    put(b, "%stt_names(%s, ?1)", i ? " OR " : "", c);
  }
  put(b, ")");
  if (t->ticket) put(b, " AND %s %s " HELD, t->ticket, count ? "IN" : "NOT IN");
  return b->bad ? TT_ETOOBIG : 0;
}

static int exec_count(broker_store_t *s, const char *sql, const char *name, const char *pseudo, int64_t e,
                      bool select, int64_t *n) {
  sqlite3_stmt *st = NULL;
  int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
  if (rc == SQLITE_OK) rc = sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
  if (rc == SQLITE_OK && sqlite3_bind_parameter_count(st) >= 2) rc = sqlite3_bind_text(st, 2, pseudo, -1, SQLITE_STATIC);
  if (rc == SQLITE_OK && sqlite3_bind_parameter_count(st) >= 3) rc = sqlite3_bind_int64(st, 3, e);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  if (select && rc == SQLITE_ROW) {
    *n += sqlite3_column_int64(st, 0);
    rc = SQLITE_DONE;
  } else if (!select && rc == SQLITE_DONE) {
    *n += sqlite3_changes(s->db);
  }
  if (rc != SQLITE_DONE) TT_ERROR(MOD, "erase statement failed", "err=\"%s\" sql=\"%.80s\"", sqlite3_errmsg(s->db), sql);
  sqlite3_finalize(st);
  return rc == SQLITE_DONE ? 0 : TT_EIO;
}

static int scalar(broker_store_t *s, const char *sql, const char *name, int64_t *n) {
  *n = 0;
  return exec_count(s, sql, name, "", 0, true, n);
}

/* ---- the knowledge base: an article's words are indexed too ------------------------------ */

static int erase_kb(broker_store_t *s, store_erase_t *x) {
  store_ids_t ids = {0};
  sqlite3_stmt *st = NULL;
  int rc = sqlite3_prepare_v2(s->db,
                              "SELECT id FROM kb_articles WHERE tt_names(title, ?1) OR tt_names(body, ?1)"
                              " OR tt_names(author, ?1) OR tt_names(updated_by, ?1) ORDER BY id", -1, &st, NULL);
  int ret = 0;
  if (rc == SQLITE_OK) rc = sqlite3_bind_text(st, 1, x->name, -1, SQLITE_STATIC);
  while (ret == 0 && rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
    ret = store_ids_add(&ids, sqlite3_column_int64(st, 0));
    rc = SQLITE_OK;
  }
  sqlite3_finalize(st);
  if (ret == 0 && rc != SQLITE_DONE) ret = sql_fail(s, "erase_kb", rc);
  /* External content: the index is told the old words to forget, then the new ones. */
  static const char *const k_steps[3] = {
      "INSERT INTO kb_fts(kb_fts, rowid, title, body) SELECT 'delete', id, title, body FROM kb_articles WHERE id = ?3",
      ("UPDATE kb_articles SET title = tt_rename(title, ?1, ?2, 256), body = tt_rename(body, ?1, ?2, 65536),"
       " author = tt_rename(author, ?1, ?2, 64), updated_by = tt_rename(updated_by, ?1, ?2, 64) WHERE id = ?3"),
      "INSERT INTO kb_fts(rowid, title, body) SELECT id, title, body FROM kb_articles WHERE id = ?3",
  };
  for (size_t i = 0; ret == 0 && i < ids.n; i++) {
    int64_t n = 0;
    for (int k = 0; ret == 0 && k < 3; k++) ret = exec_count(s, k_steps[k], x->name, x->pseudonym, ids.ids[i], false, &n);
    x->changed[STORE_EC_OTHER]++;
  }
  /* Deleted words stay in the index's segments until they merge: merge them now. */
  if (ret == 0 && ids.n && sqlite3_exec(s->db, "INSERT INTO kb_fts(kb_fts) VALUES('optimize')", NULL, NULL, NULL))
    ret = sql_fail(s, "erase_kb_optimize", SQLITE_ERROR);
  free(ids.ids);
  return ret;
}

/* ---- the audit ------------------------------------------------------------------------------ */

static bool commitment_key(const tt_audit_pair_t *p) {
  return (p->klen == 8 && memcmp(p->key, "released", 8) == 0) || (p->klen == 6 && memcmp(p->key, "values", 6) == 0);
}

/* One audit entry: its values that name the person released under erasure e, a value that is
 * the name becoming the pseudonym and one that holds it among other words "(erased)"; an entry
 * about something a hold keeps is counted and left. Of an earlier erasure's own entry, what it
 * committed to (released, values) is never touched: the walk reads it. */
static int audit_one(broker_store_t *s, store_erase_t *x, const store_held_t *held, const store_audit_t *a, int64_t e,
                     uint8_t acc[32]) {
  tt_audit_pair_t p[TT_AUDIT_VALUES_MAX];
  size_t np = 0;
  if (!store_audit_split_ok(a, p, &np)) return TT_EIO; /* the walk says so: do not make it worse */
  bool erasure = store_audit_is_erasure(a);
  const char *nv[TT_AUDIT_VALUES_MAX] = {NULL};
  bool any = false, on_hold = false;
  for (size_t i = 0; i < np; i++) {
    on_hold |= store_held_names(held, p[i].val, p[i].vlen);
    if (a->values[i].erased || (erasure && i >= 2 && commitment_key(&p[i])) ||
        !store_erase_names_json(p[i].val, p[i].vlen, x->name))
      continue;
    nv[i] = store_erase_is(p[i].val, p[i].vlen, x->name) ? x->pseudonym : STORE_ERASED_TEXT;
    any = true;
  }
  if (!any) return 0; /* the name only in a key, or in values released before */
  if (on_hold) {
    x->held[STORE_EC_AUDIT]++;
    return 0;
  }
  int ret = store_audit_release(s, a, p, np, nv, e, acc, &x->released);
  if (ret == 0) x->changed[STORE_EC_AUDIT]++;
  return ret;
}

static int erase_audit(broker_store_t *s, store_erase_t *x, const store_held_t *held, int64_t e, uint8_t acc[32]) {
  store_ids_t ids = {0};
  sqlite3_stmt *st = s->st[ST_ERASE_AUDIT_IDS];
  int rc = SQLITE_OK, ret = 0;
  bind_text(st, 1, x->name, &rc);
  while (ret == 0 && (rc == SQLITE_OK || rc == SQLITE_ROW)) {
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) ret = store_ids_add(&ids, sqlite3_column_int64(st, 0));
  }
  done(st);
  if (ret == 0 && rc != SQLITE_DONE) ret = sql_fail(s, "erase_audit_ids", rc);
  store_audit_t *a = malloc(sizeof(*a));
  if (!a && ret == 0) ret = TT_ENOMEM;
  for (size_t i = 0; ret == 0 && i < ids.n; i++) {
    ret = store_audit_one(s, ids.ids[i], a);
    if (ret == 0) ret = audit_one(s, x, held, a, e, acc);
  }
  free(a);
  free(ids.ids);
  return ret;
}

/* ---- the whole erasure ---------------------------------------------------------------------- */

static const store_sql_t k_sql[] = {
    /* Every entry, the pruned ones not yet deleted too (a walk from the cut seeds their values). */
    {ST_ERASE_AUDIT_IDS, "SELECT id FROM audit WHERE tt_names(actor, ?1) OR tt_names(target, ?1)"
                         " OR tt_names_json(detail, ?1) ORDER BY id"},
    {ST_ERASE_FILES, "SELECT id, path FROM recordings WHERE erased > 0 AND (erased = ?1 OR ?1 = 0) AND path <> ''"},
    {ST_ERASE_FILE_GONE, "UPDATE recordings SET path = '' WHERE id = ?1"},
};

int store_prepare_erase_sql(broker_store_t *s) { return store_prepare(s, k_sql, sizeof k_sql / sizeof k_sql[0]); }

int store_erase_revocations(broker_store_t *s, int64_t *n) {
  *n = 0;
  sqlite3_stmt *st = NULL;
  int rc = sqlite3_prepare_v2(s->db, "SELECT count(*) FROM revocations WHERE kind = 2 AND name GLOB 'erased:*'", -1,
                              &st, NULL);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) *n = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  return rc == SQLITE_ROW ? 0 : sql_fail(s, "erase_revocations", rc);
}

static uint8_t g_revocation_key[32];

void store_erase_set_key(const uint8_t key[32]) { memcpy(g_revocation_key, key, 32); }

void store_erase_revocation_key(const char *name, char out[STORE_ERASE_REVOKED_CAP]) {
  uint8_t h[32], m[22 + STORE_NAME_MAX];
  unsigned int hl = 0;
  size_t n = strnlen(name, STORE_NAME_MAX - 1);
  memcpy(m, "tether-revoked-person", 22); /* with its NUL: a domain of its own */
  memcpy(m + 22, name, n);
  if (!HMAC(EVP_sha256(), g_revocation_key, sizeof g_revocation_key, m, 22 + n, h, &hl)) memset(h, 0, sizeof h);
  memcpy(out, "erased:", 7);
  tt_hex(out + 7, STORE_ERASE_REVOKED_CAP - 7, h, 24);
}

/* An object's id (T-3, S-12, KB-4): nobody's name. */
static bool object_id(const char *n) {
  size_t i = 0;
  while (i < 3 && ((n[i] >= 'A' && n[i] <= 'Z') || (n[i] >= 'a' && n[i] <= 'z'))) i++;
  if (i == 0 || n[i] != '-' || !n[i + 1]) return false;
  for (i++; n[i]; i++)
    if (n[i] < '0' || n[i] > '9') return false;
  return true;
}

/* Identity columns: a value that holds the name as a word but is not the name is someone else
 * whose records the rewrite would take too (boss in boss@hq, ann in Ann). */
#define OTHERS(name)                                                                                         \
  "SELECT name FROM people WHERE tt_names(name, " name ") AND name <> " name                                  \
  " UNION ALL SELECT requester FROM tickets WHERE tt_names(requester, " name ") AND requester <> " name       \
  " UNION ALL SELECT assignee FROM tickets WHERE tt_names(assignee, " name ") AND assignee <> " name          \
  " UNION ALL SELECT created_by FROM tickets WHERE tt_names(created_by, " name ") AND created_by <> " name    \
  " UNION ALL SELECT consent_by FROM sessions WHERE tt_names(consent_by, " name ") AND consent_by <> " name   \
  " UNION ALL SELECT person FROM sessions WHERE tt_names(person, " name ") AND person <> " name               \
  " UNION ALL SELECT user FROM help_requests WHERE tt_names(user, " name ") AND user <> " name                \
  " UNION ALL SELECT id FROM devices WHERE tt_names(id, " name ") OR tt_names(hostname, " name ")"            \
  " LIMIT 1"

/* Why the person cannot be erased now, into x->refused; 0 when they can. */
static int refusals(broker_store_t *s, store_erase_t *x) {
  int64_t n = 0;
  static const char *const k_reserved[] = {"broker",   "admin",  "technician", "employee", "agent",  "gateway",
                                           "device",   "person", "erased",     "expired",  "system", STORE_ERASED_TEXT};
  for (size_t i = 0; i < sizeof k_reserved / sizeof k_reserved[0]; i++)
    if (store_erase_is(x->name, strlen(x->name), k_reserved[i]) || strncasecmp(x->name, "erased-", 7) == 0 ||
        object_id(x->name)) {
      snprintf(x->refused, sizeof x->refused, "%.64s is one of the broker's own words or ids, not a person", x->name);
      return TT_EINVAL;
    }
  if (store_erase_names(x->by, strlen(x->by), x->name)) {
    snprintf(x->refused, sizeof x->refused, "an admin cannot erase themselves");
    return TT_EDENIED;
  }
  int rc = scalar(s, "SELECT count(*) FROM devices WHERE tt_names(id, ?1) OR tt_names(hostname, ?1)", x->name, &n);
  if (rc == 0 && n) {
    snprintf(x->refused, sizeof x->refused, "%.64s is a device, or a word of a device's name, not a person", x->name);
    return TT_EINVAL;
  }
  /* Someone the broker knows by that name, exactly. */
  if (rc == 0)
    rc = scalar(s, "SELECT EXISTS(SELECT 1 FROM people WHERE name = ?1) OR EXISTS(SELECT 1 FROM tickets WHERE"
                   " requester = ?1) OR EXISTS(SELECT 1 FROM sessions WHERE consent_by = ?1 OR person = ?1)"
                   " OR EXISTS(SELECT 1 FROM help_requests WHERE user = ?1)", x->name, &n);
  if (rc == 0 && !n) {
    snprintf(x->refused, sizeof x->refused,
             "no person is known as %.64s (a technician, an admin, or an employee's user name on a ticket, a consent"
             " or a help request)", x->name);
    return TT_ENOTFOUND;
  }
  /* The name is found as a word in any case: an identity that holds it and is not it would be
   * rewritten too. */
  char other[STORE_NAME_MAX] = "";
  if (rc == 0) {
    sqlite3_stmt *st = NULL;
    rc = sqlite3_prepare_v2(s->db, OTHERS("?1"), -1, &st, NULL);
    if (rc == SQLITE_OK) rc = sqlite3_bind_text(st, 1, x->name, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW) col_text(st, 0, other, sizeof other);
    sqlite3_finalize(st);
    rc = rc == SQLITE_OK ? 0 : sql_fail(s, "erase_others", rc);
  }
  if (rc == 0 && other[0]) {
    snprintf(x->refused, sizeof x->refused,
             "%.64s is found in another identity, %.64s: erasing it would rewrite their records too", x->name, other);
    return TT_EINVAL;
  }
  if (rc == 0) rc = scalar(s, "SELECT count(*) FROM people p WHERE name = ?1 AND NOT EXISTS"
                              " (SELECT 1 FROM revocations r WHERE r.kind = 2 AND r.name = p.name)", x->name, &n);
  if (rc == 0 && n) {
    snprintf(x->refused, sizeof x->refused,
             "%.64s can still sign in: revoke them first (tether revoke person %.64s --reason ...)", x->name, x->name);
    return TT_EDENIED;
  }
  /* Their sessions, and sessions on their machine: a live one is still being recorded. */
  if (rc == 0) rc = scalar(s, "SELECT coalesce(min(id), 0) FROM sessions WHERE ended_ms = 0 AND"
                              " (tt_names(person, ?1) OR tt_names(consent_by, ?1) OR ticket IN"
                              " (SELECT id FROM tickets WHERE tt_names(requester, ?1)))", x->name, &n);
  if (rc == 0 && n) {
    snprintf(x->refused, sizeof x->refused,
             "%.64s is in a session that is still open: end it first (tether session end S-%lld)", x->name,
             (long long)n);
    return TT_EBUSY;
  }
  return rc;
}

/* The tickets on hold that name the person: what the answer lists. */
static int held_tickets(broker_store_t *s, store_erase_t *x) {
  sqlite3_stmt *st = NULL;
  int rc = sqlite3_prepare_v2(s->db,
                          "SELECT t.id FROM tickets t JOIN ticket_holds h ON h.ticket = t.id WHERE"
                          " tt_names(t.requester, ?1) OR tt_names(t.assignee, ?1) OR tt_names(t.created_by, ?1)"
                          " OR tt_names(t.summary, ?1) OR EXISTS(SELECT 1 FROM ticket_events e WHERE e.ticket = t.id"
                          " AND (tt_names(e.actor, ?1) OR tt_names(e.text, ?1))) OR EXISTS(SELECT 1 FROM sessions v"
                          " WHERE v.ticket = t.id AND (tt_names(v.person, ?1) OR tt_names(v.consent_by, ?1)))"
                          " ORDER BY t.id",
                          -1, &st, NULL);
  if (rc == SQLITE_OK) rc = sqlite3_bind_text(st, 1, x->name, -1, SQLITE_STATIC);
  while (rc == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
    if (x->nheld_tickets < STORE_ERASE_HELD_MAX) x->held_tickets[x->nheld_tickets++] = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  return rc == SQLITE_OK ? 0 : sql_fail(s, "erase_held", rc);
}

int store_person_erase(broker_store_t *s, store_erase_t *x, store_erase_audit_fn audit, void *ctx) {
  memset(x->changed, 0, sizeof x->changed);
  memset(x->held, 0, sizeof x->held);
  x->nheld_tickets = 0;
  x->released = 0;
  x->erasure = 0;
  x->refused[0] = '\0';
  if (!x->name[0] || !x->pseudonym[0]) return TT_EINVAL;
  int ret = tx_begin(s);
  if (ret) return ret;
  store_held_t held = {0};
  int64_t e = s->audit_last_id + 1; /* the erasure's own entry, written last in this transaction */
  uint8_t acc[32] = {0};
  ret = refusals(s, x);
  if (ret == 0) ret = store_audit_gate(s, true);
  if (ret == 0) ret = store_held_load(s, &held);
  if (ret == 0) ret = held_tickets(s, x);
  /* What is deleted or marked goes first: it is found by the names the rewrite changes. */
  if (ret == 0)
    ret = exec_count(s,
                     "DELETE FROM diag_reports WHERE (tt_names(person, ?1) OR " THEIRS("session", "ticket")
                     ") AND ticket NOT IN " HELD,
                     x->name, "", 0, false, &x->changed[STORE_EC_DIAG]);
  if (ret == 0)
    ret = exec_count(s,
                     "SELECT count(*) FROM diag_reports WHERE (tt_names(person, ?1) OR " THEIRS("session", "ticket")
                     ") AND ticket IN " HELD,
                     x->name, "", 0, true, &x->held[STORE_EC_DIAG]);
  int64_t marked = 0;
  if (ret == 0)
    ret = exec_count(s,
                     "UPDATE recordings SET erased = ?3 WHERE erased = 0 AND (tt_names(person, ?1) OR "
                     THEIRS("session", "ticket") ") AND ticket NOT IN " HELD,
                     x->name, "", e, false, &marked);
  x->changed[STORE_EC_RECORDINGS] += marked;
  int64_t people = 0;
  if (ret == 0) ret = exec_count(s, "DELETE FROM people WHERE name = ?1", x->name, "", 0, false, &people);
  x->changed[STORE_EC_OTHER] += people;
  char key[STORE_ERASE_REVOKED_CAP];
  store_erase_revocation_key(x->name, key);
  if (ret == 0)
    ret = exec_count(s, "UPDATE revocations SET name = ?2 WHERE kind = 2 AND name = ?1", x->name, key, 0, false,
                     &x->changed[STORE_EC_OTHER]);
  for (size_t i = 0; ret == 0 && i < sizeof k_targets / sizeof k_targets[0]; i++) {
    const target_t *t = &k_targets[i];
    sqlbuf_t b = {.len = 0};
    ret = target_sql(t, false, &b);
    int64_t n = 0;
    if (ret == 0) ret = exec_count(s, b.sql, x->name, x->pseudonym, 0, false, &n);
    /* a recording row marked above and renamed here is one recording */
    if (t->cls != STORE_EC_RECORDINGS) x->changed[t->cls] += n;
    if (ret == 0 && t->ticket) {
      sqlbuf_t c = {.len = 0};
      ret = target_sql(t, true, &c);
      if (ret == 0) ret = exec_count(s, c.sql, x->name, "", 0, true, &x->held[t->cls]);
    }
  }
  if (ret == 0) ret = erase_kb(s, x);
  if (ret == 0) ret = erase_audit(s, x, &held, e, acc);
  if (ret == 0) ret = store_audit_gate(s, false);
  int64_t total = 0;
  for (int i = 0; i < STORE_EC_N; i++) total += x->changed[i] + x->held[i];
  if (ret == 0 && total == 0) {
    snprintf(x->refused, sizeof x->refused, "no record names %.64s", x->name);
    ret = TT_ENOTFOUND;
  }
  if (ret == 0 && !x->dry_run) { /* the erasure's entry commits to what it released */
    int64_t got = 0;
    ret = audit(ctx, s, x, acc, &got);
    if (ret == 0 && got != e) ret = TT_ESTATE; /* another entry came between: never a valid commitment */
    x->erasure = got;
  }
  store_held_free(&held);
  if (ret == 0 && !x->dry_run) {
    ret = tx_commit(s);
  } else {
    tx_rollback(s); /* a dry run leaves nothing; the audit head is the caller's to restore */
    if (x->dry_run && ret == 0) x->erasure = 0;
  }
  return ret;
}

int store_erase_files(broker_store_t *s, const char *data_dir, int64_t erasure, uint32_t *deleted, uint32_t *failed) {
  *deleted = *failed = 0;
  store_ids_t ids = {0};
  char (*paths)[512] = NULL;
  sqlite3_stmt *st = s->st[ST_ERASE_FILES];
  int rc = SQLITE_OK, ret = 0;
  bind_i64(st, 1, erasure, &rc);
  while (ret == 0 && (rc == SQLITE_OK || rc == SQLITE_ROW)) {
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) break;
    if ((ret = store_ids_add(&ids, sqlite3_column_int64(st, 0))) != 0) break;
    void *g = realloc(paths, ids.n * sizeof(*paths));
    if (!g) {
      ret = TT_ENOMEM;
      break;
    }
    paths = g;
    col_text(st, 1, paths[ids.n - 1], sizeof paths[0]);
  }
  done(st);
  if (ret == 0 && rc != SQLITE_DONE) ret = sql_fail(s, "erase_files", rc);
  bool mine = ret == 0 && ids.n && (ret = tx_begin(s)) == 0; /* only this savepoint is ours to undo */
  for (size_t i = 0; mine && ret == 0 && i < ids.n; i++) {
    if (store_recording_unlink(data_dir, paths[i]) != 0) { /* logged */
      (*failed)++;
      continue;
    }
    st = s->st[ST_ERASE_FILE_GONE];
    rc = SQLITE_OK;
    bind_i64(st, 1, ids.ids[i], &rc);
    if (rc == SQLITE_OK) rc = sqlite3_step(st);
    done(st);
    if (rc != SQLITE_DONE) ret = sql_fail(s, "erase_file_gone", rc);
    else (*deleted)++;
  }
  if (mine && ret == 0) ret = tx_commit(s);
  else if (mine) tx_rollback(s);
  free(ids.ids);
  free(paths);
  return ret;
}

int store_erase_scrub(broker_store_t *s, bool *clean) {
  /* Rows rewritten before today left copies in free space (SQLite reuses, not zeroes, what a
   * row update frees), and the erasure's own old pages sit in the write-ahead log: VACUUM
   * writes the store again from what is live, and the checkpoint truncates the log. A reader
   * still on an old snapshot keeps the log: then `clean` is false, and the next checkpoint
   * takes it. */
  *clean = false;
  int rc = sqlite3_exec(s->db, "VACUUM", NULL, NULL, NULL);
  if (rc != SQLITE_OK) return sql_fail(s, "erase_vacuum", rc);
  int logged = 0, moved = 0;
  rc = sqlite3_wal_checkpoint_v2(s->db, NULL, SQLITE_CHECKPOINT_TRUNCATE, &logged, &moved);
  *clean = rc == SQLITE_OK;
  if (rc != SQLITE_OK && rc != SQLITE_BUSY) return sql_fail(s, "erase_checkpoint", rc);
  return 0;
}

int store_secure_delete(broker_store_t *s, bool on) {
  return sqlite3_exec(s->db, on ? "PRAGMA secure_delete = ON" : "PRAGMA secure_delete = OFF", NULL, NULL, NULL) ==
                 SQLITE_OK
             ? 0
             : TT_EIO;
}
