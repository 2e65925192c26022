/* The broker's store on SQLite: devices, enrollment tokens, revocations, the hash-chained
 * audit log, help-desk tickets, sessions and recordings, in DATA_DIR/broker.db. All SQL of
 * the broker is in this file. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <sqlite3.h>

#include "store.h"
#include "tt/log.h"

#define MOD "store"
/* The broker is the only writer, so a lock is never held for long by anyone else (at most
 * an admin's sqlite3 shell); wait a little, then fail rather than stall the loop. */
#define STORE_BUSY_MS 200
#define STORE_FILE "broker.db"

/* ---- schema ----------------------------------------------------------------------------
 * Migrations in order: step i takes the store from version i to i + 1 and ends by setting
 * user_version to i + 1 (a literal, so no SQL is ever formatted). Each runs in its own
 * transaction; open checks that the bump landed. Never edit a released step: append one. */
static const char *const g_migrations[] = {
  /* 1: the first schema. STRICT keeps column types honest; the audit triggers make our own
   * code unable to rewrite history by accident (verify catches anyone else). */
  "CREATE TABLE devices("
  "  id TEXT PRIMARY KEY NOT NULL,"
  "  hostname TEXT NOT NULL DEFAULT '',"
  "  address TEXT NOT NULL DEFAULT '',"
  "  version TEXT NOT NULL DEFAULT '',"
  "  cert_fp TEXT NOT NULL DEFAULT '',"
  "  enrolled_ms INTEGER NOT NULL,"
  "  last_seen_ms INTEGER NOT NULL DEFAULT 0,"
  "  cert_not_after_ms INTEGER NOT NULL DEFAULT 0,"
  "  revoked INTEGER NOT NULL DEFAULT 0"
  ") STRICT;"
  "CREATE TABLE tokens("
  "  hash BLOB PRIMARY KEY NOT NULL CHECK(length(hash) = 32),"
  "  expires_ms INTEGER NOT NULL,"
  "  uses_left INTEGER NOT NULL CHECK(uses_left >= 0),"
  "  note TEXT NOT NULL DEFAULT '',"
  "  created_by TEXT NOT NULL DEFAULT '',"
  "  created_ms INTEGER NOT NULL"
  ") STRICT;"
  "CREATE TABLE revocations("
  "  kind INTEGER NOT NULL CHECK(kind IN (1, 2)),"
  "  name TEXT NOT NULL,"
  "  \"by\" TEXT NOT NULL DEFAULT '',"
  "  reason TEXT NOT NULL DEFAULT '',"
  "  ts_ms INTEGER NOT NULL,"
  "  PRIMARY KEY(kind, name)"
  ") STRICT;"
  "CREATE TABLE audit("
  "  id INTEGER PRIMARY KEY,"
  "  ts_ms INTEGER NOT NULL,"
  "  actor TEXT NOT NULL,"
  "  action TEXT NOT NULL,"
  "  target TEXT NOT NULL,"
  "  detail TEXT NOT NULL,"
  "  prev_hash BLOB NOT NULL CHECK(length(prev_hash) = 32),"
  "  hash BLOB NOT NULL CHECK(length(hash) = 32)"
  ") STRICT;"
  "CREATE INDEX audit_ts ON audit(ts_ms);"
  "CREATE INDEX audit_actor ON audit(actor);"
  "CREATE INDEX audit_target ON audit(target);"
  "CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit"
  "  BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END;"
  "CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit"
  "  BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END;"
  "PRAGMA user_version = 1;",
  /* 2: help-desk tickets and their timelines. Priority, level and state are checked here
   * so that a bad value is refused whatever wrote it; events are append-only like audit. */
  "CREATE TABLE tickets("
  "  id INTEGER PRIMARY KEY,"
  "  device TEXT NOT NULL,"
  "  requester TEXT NOT NULL DEFAULT '',"
  "  assignee TEXT NOT NULL DEFAULT '',"
  "  summary TEXT NOT NULL,"
  "  external_id TEXT NOT NULL DEFAULT '',"
  "  priority INTEGER NOT NULL CHECK(priority BETWEEN 0 AND 3),"
  "  level INTEGER NOT NULL DEFAULT 1 CHECK(level BETWEEN 1 AND 3),"
  "  state INTEGER NOT NULL CHECK(state IN (1, 2, 3)),"
  "  created_ms INTEGER NOT NULL,"
  "  updated_ms INTEGER NOT NULL,"
  "  first_response_due_ms INTEGER NOT NULL DEFAULT 0,"
  "  resolution_due_ms INTEGER NOT NULL DEFAULT 0,"
  "  first_response_ms INTEGER NOT NULL DEFAULT 0,"
  "  resolved_ms INTEGER NOT NULL DEFAULT 0"
  ") STRICT;"
  "CREATE INDEX tickets_state_assignee ON tickets(state, assignee);"
  "CREATE INDEX tickets_device ON tickets(device);"
  "CREATE TABLE ticket_events("
  "  id INTEGER PRIMARY KEY,"
  "  ticket INTEGER NOT NULL REFERENCES tickets(id),"
  "  ts_ms INTEGER NOT NULL,"
  "  actor TEXT NOT NULL DEFAULT '',"
  "  kind TEXT NOT NULL CHECK(kind <> ''),"
  "  text TEXT NOT NULL DEFAULT ''"
  ") STRICT;"
  "CREATE INDEX ticket_events_ticket ON ticket_events(ticket, id);"
  "CREATE TRIGGER ticket_events_no_update BEFORE UPDATE ON ticket_events"
  "  BEGIN SELECT RAISE(ABORT, 'ticket_events is append-only'); END;"
  "CREATE TRIGGER ticket_events_no_delete BEFORE DELETE ON ticket_events"
  "  BEGIN SELECT RAISE(ABORT, 'ticket_events is append-only'); END;"
  "PRAGMA user_version = 2;",
  /* 3: sessions (consented grants) and their shell recordings; who opened each ticket,
   * taken for older tickets from their "created" event. A session or recording row is
   * written once and then only ended: the end columns move from 0 exactly once. Recording
   * ids name files, so they are never reused (AUTOINCREMENT). */
  "ALTER TABLE tickets ADD COLUMN created_by TEXT NOT NULL DEFAULT '';"
  "UPDATE tickets SET created_by = coalesce((SELECT e.actor FROM ticket_events e"
  "  WHERE e.ticket = tickets.id AND e.kind = 'created' ORDER BY e.id LIMIT 1), '');"
  "CREATE TABLE sessions("
  "  id INTEGER PRIMARY KEY,"
  "  ticket INTEGER NOT NULL REFERENCES tickets(id),"
  "  device TEXT NOT NULL CHECK(device <> ''),"
  "  person TEXT NOT NULL CHECK(person <> ''),"
  "  access INTEGER NOT NULL CHECK(access BETWEEN 1 AND 7),"
  "  started_ms INTEGER NOT NULL,"
  "  expires_ms INTEGER NOT NULL DEFAULT 0 CHECK(expires_ms >= 0),"
  "  unattended INTEGER NOT NULL DEFAULT 0 CHECK(unattended IN (0, 1)),"
  "  consent_by TEXT NOT NULL DEFAULT '',"
  "  ended_ms INTEGER NOT NULL DEFAULT 0 CHECK(ended_ms >= 0),"
  "  ended_by TEXT NOT NULL DEFAULT '',"
  "  end_reason TEXT NOT NULL DEFAULT ''"
  ") STRICT;"
  "CREATE INDEX sessions_live ON sessions(id) WHERE ended_ms = 0;"
  "CREATE INDEX sessions_ticket ON sessions(ticket);"
  "CREATE TABLE recordings("
  "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
  "  session INTEGER NOT NULL REFERENCES sessions(id),"
  "  ticket INTEGER NOT NULL REFERENCES tickets(id),"
  "  device TEXT NOT NULL,"
  "  person TEXT NOT NULL,"
  "  path TEXT NOT NULL DEFAULT '',"
  "  started_ms INTEGER NOT NULL,"
  "  ended_ms INTEGER NOT NULL DEFAULT 0 CHECK(ended_ms >= 0),"
  "  size INTEGER NOT NULL DEFAULT 0 CHECK(size >= 0),"
  "  sha256 TEXT NOT NULL DEFAULT ''"
  "    CHECK(sha256 = '' OR (length(sha256) = 64 AND NOT sha256 GLOB '*[^0-9a-f]*')),"
  "  failed INTEGER NOT NULL DEFAULT 0 CHECK(failed IN (0, 1))"
  ") STRICT;"
  "CREATE INDEX recordings_session ON recordings(session, id);"
  "PRAGMA user_version = 3;",
};
#define STORE_SCHEMA_LATEST ((int)(sizeof g_migrations / sizeof g_migrations[0]))

/* ---- statements, all prepared once at open ---------------------------------------------- */
typedef enum {
  ST_BEGIN,
  ST_COMMIT,
  ST_ROLLBACK,
  ST_DEV_INSERT,
  ST_DEV_SEEN,
  ST_DEV_SET_CERT,
  ST_DEV_GET,
  ST_DEV_LIST,
  ST_DEV_COUNT,
  ST_DEV_SET_REVOKED,
  ST_TOK_INSERT,
  ST_TOK_GET,
  ST_TOK_DECREMENT,
  ST_REV_INSERT,
  ST_REV_GET,
  ST_AUDIT_TAIL,
  ST_AUDIT_INSERT,
  ST_AUDIT_LIST,
  ST_AUDIT_LIST_DEVICE,
  ST_AUDIT_WALK,
  ST_TIX_INSERT,
  ST_TIX_UPDATE,
  ST_TIX_RESPONDED,
  ST_TIX_GET,
  ST_TIX_LIST,
  ST_TIX_LIST_DEVICE,
  ST_TIX_LIST_ASSIGNEE,
  ST_TEV_INSERT,
  ST_TEV_LIST,
  ST_TEV_TAIL,
  ST_TEV_COUNT,
  ST_SES_INSERT,
  ST_SES_GRANT,
  ST_SES_GET,
  ST_SES_END,
  ST_SES_END_ALL,
  ST_REC_INSERT,
  ST_REC_SET_PATH,
  ST_REC_FINISH,
  ST_REC_ABANDON,
  ST_REC_GET,
  ST_REC_LIST,
  ST__COUNT
} store_stmt_t;

#define DEV_COLS "id, hostname, address, version, cert_fp, enrolled_ms, last_seen_ms, " \
                 "cert_not_after_ms, revoked"
#define AUDIT_COLS "id, ts_ms, actor, action, target, detail, prev_hash, hash"
#define TIX_COLS "id, device, requester, assignee, summary, external_id, priority, level, " \
                 "state, created_ms, updated_ms, first_response_due_ms, resolution_due_ms, " \
                 "first_response_ms, resolved_ms, created_by"
/* Every list variant takes the same parameters: ?1 after_id, ?2 limit, ?3 assignee or NULL,
 * ?4 device or NULL, ?5..?7 the states wanted (-1 for a state not wanted). The variants
 * lead with the equality their index serves. */
#define TIX_WHERE "id > ?1 AND state IN (?5, ?6, ?7) AND (?3 IS NULL OR assignee = ?3)" \
                  " AND (?4 IS NULL OR device = ?4) ORDER BY id LIMIT ?2"
#define TEV_COLS "id, ticket, ts_ms, actor, kind, text"
#define SES_COLS "id, ticket, device, person, access, started_ms, expires_ms, unattended, " \
                 "consent_by, ended_ms, ended_by, end_reason"
#define REC_COLS "id, session, ticket, device, person, path, started_ms, ended_ms, size, " \
                 "sha256, failed"

static const char *const g_sql[ST__COUNT] = {
  /* IMMEDIATE: take the write lock up front so a read-then-write never fails half way. */
  [ST_BEGIN] = "BEGIN IMMEDIATE",
  [ST_COMMIT] = "COMMIT",
  [ST_ROLLBACK] = "ROLLBACK",
  [ST_DEV_INSERT] = "INSERT INTO devices(" DEV_COLS ") VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
  [ST_DEV_SEEN] = "INSERT INTO devices(id, hostname, address, version, enrolled_ms, last_seen_ms)"
                  " VALUES(?1, ?2, ?3, ?4, ?5, ?5)"
                  " ON CONFLICT(id) DO UPDATE SET hostname = excluded.hostname,"
                  " address = excluded.address, version = excluded.version,"
                  " last_seen_ms = excluded.last_seen_ms",
  [ST_DEV_SET_CERT] = "UPDATE devices SET cert_fp = ?2, cert_not_after_ms = ?3 WHERE id = ?1",
  [ST_DEV_GET] = "SELECT " DEV_COLS " FROM devices WHERE id = ?1",
  [ST_DEV_LIST] = "SELECT " DEV_COLS " FROM devices ORDER BY id LIMIT ?1 OFFSET ?2",
  [ST_DEV_COUNT] = "SELECT count(*) FROM devices",
  [ST_DEV_SET_REVOKED] = "UPDATE devices SET revoked = 1 WHERE id = ?1",
  [ST_TOK_INSERT] = "INSERT INTO tokens(hash, expires_ms, uses_left, note, created_by, created_ms)"
                    " VALUES(?1, ?2, ?3, ?4, ?5, ?6)",
  [ST_TOK_GET] = "SELECT hash, expires_ms, uses_left FROM tokens WHERE hash = ?1",
  [ST_TOK_DECREMENT] = "UPDATE tokens SET uses_left = uses_left - 1 WHERE hash = ?1 AND uses_left > 0",
  [ST_REV_INSERT] = "INSERT INTO revocations(kind, name, \"by\", reason, ts_ms)"
                    " VALUES(?1, ?2, ?3, ?4, ?5)",
  [ST_REV_GET] = "SELECT 1 FROM revocations WHERE kind = ?1 AND name = ?2",
  [ST_AUDIT_TAIL] = "SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1",
  [ST_AUDIT_INSERT] = "INSERT INTO audit(" AUDIT_COLS ") VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
  [ST_AUDIT_LIST] = "SELECT " AUDIT_COLS " FROM audit WHERE id > ?4 AND ts_ms >= ?1"
                    " ORDER BY id LIMIT ?2",
  [ST_AUDIT_LIST_DEVICE] = "SELECT " AUDIT_COLS " FROM audit"
                           " WHERE id > ?4 AND (actor = ?3 OR target = ?3) AND ts_ms >= ?1"
                           " ORDER BY id LIMIT ?2",
  [ST_AUDIT_WALK] = "SELECT " AUDIT_COLS " FROM audit ORDER BY id",
  [ST_TIX_INSERT] = "INSERT INTO tickets(device, requester, assignee, summary, external_id,"
                    " priority, level, state, created_ms, updated_ms, first_response_due_ms,"
                    " resolution_due_ms, first_response_ms, resolved_ms, created_by)"
                    " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9, ?10, ?11, ?12, ?13, ?14)",
  [ST_TIX_UPDATE] = "UPDATE tickets SET assignee = ?2, priority = ?3, level = ?4, state = ?5,"
                    " summary = ?6, updated_ms = ?7, first_response_due_ms = ?8,"
                    " resolution_due_ms = ?9, first_response_ms = ?10, resolved_ms = ?11"
                    " WHERE id = ?1",
  [ST_TIX_RESPONDED] = "UPDATE tickets SET first_response_ms = ?2 WHERE id = ?1"
                       " AND first_response_ms = 0",
  [ST_TIX_GET] = "SELECT " TIX_COLS " FROM tickets WHERE id = ?1",
  [ST_TIX_LIST] = "SELECT " TIX_COLS " FROM tickets WHERE " TIX_WHERE,
  [ST_TIX_LIST_DEVICE] = "SELECT " TIX_COLS " FROM tickets WHERE device = ?4 AND " TIX_WHERE,
  [ST_TIX_LIST_ASSIGNEE] = "SELECT " TIX_COLS " FROM tickets WHERE assignee = ?3 AND " TIX_WHERE,
  [ST_TEV_INSERT] = "INSERT INTO ticket_events(ticket, ts_ms, actor, kind, text)"
                    " VALUES(?1, ?2, ?3, ?4, ?5)",
  [ST_TEV_LIST] = "SELECT " TEV_COLS " FROM ticket_events WHERE ticket = ?1 ORDER BY id",
  [ST_TEV_TAIL] = "SELECT * FROM (SELECT " TEV_COLS " FROM ticket_events WHERE ticket = ?1"
                  " ORDER BY id DESC LIMIT ?2) ORDER BY id",
  [ST_TEV_COUNT] = "SELECT count(*) FROM ticket_events WHERE ticket = ?1",
  [ST_SES_INSERT] = "INSERT INTO sessions(ticket, device, person, access, started_ms, expires_ms,"
                    " unattended, consent_by, ended_ms, ended_by, end_reason)"
                    " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
  [ST_SES_GRANT] = "UPDATE sessions SET expires_ms = ?2, unattended = ?3, consent_by = ?4"
                   " WHERE id = ?1 AND ended_ms = 0",
  [ST_SES_GET] = "SELECT " SES_COLS " FROM sessions WHERE id = ?1",
  [ST_SES_END] = "UPDATE sessions SET ended_ms = ?2, ended_by = ?3, end_reason = ?4"
                 " WHERE id = ?1 AND ended_ms = 0",
  [ST_SES_END_ALL] = "UPDATE sessions SET ended_ms = ?1, ended_by = 'broker',"
                     " end_reason = 'broker restarted' WHERE ended_ms = 0",
  [ST_REC_INSERT] = "INSERT INTO recordings(session, ticket, device, person, started_ms)"
                    " VALUES(?1, ?2, ?3, ?4, ?5)",
  [ST_REC_SET_PATH] = "UPDATE recordings SET path = 'recordings/R-' || id || '.cast.zst'"
                      " WHERE id = ?1",
  [ST_REC_FINISH] = "UPDATE recordings SET ended_ms = ?2, size = ?3, sha256 = ?4, failed = ?5"
                    " WHERE id = ?1 AND ended_ms = 0",
  [ST_REC_ABANDON] = "UPDATE recordings SET ended_ms = ?1, failed = 1 WHERE ended_ms = 0",
  [ST_REC_GET] = "SELECT " REC_COLS " FROM recordings WHERE id = ?1",
  [ST_REC_LIST] = "SELECT " REC_COLS " FROM recordings WHERE session = ?1 ORDER BY id LIMIT ?2",
};

struct broker_store_s {
  sqlite3 *db;
  sqlite3_stmt *st[ST__COUNT];
  int version;
  EVP_MD_CTX *md;
  /* Tail of the audit chain, loaded at open and advanced after each committed append. */
  int64_t audit_last_id;
  uint8_t audit_last_hash[32];
};

/* ---- helpers ------------------------------------------------------------------------- */

static void set_err(char *err, size_t errlen, const char *fmt, ...) TT_PRINTF(3, 4);
static void set_err(char *err, size_t errlen, const char *fmt, ...) {
  if (err == NULL || errlen == 0) return;
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
  if (n < 0) err[0] = '\0';
}

/* The one place a SQLite failure becomes ours: logged once here with SQLite's own words. */
static int sql_fail(broker_store_t *s, const char *op, int rc) {
  const char *msg = sqlite3_errmsg(s->db);
  char q[256];
  tt_log_quote(q, sizeof q, msg, strlen(msg));
  TT_ERROR(MOD, "sqlite failure", "op=%s rc=%d err=\"%s\"", op, rc, q);
  return TT_EIO;
}

/* An insert that collides with an existing key is the caller's -EEXIST, not a disk error. */
static int insert_fail(broker_store_t *s, const char *op, int rc) {
  if (rc == SQLITE_CONSTRAINT_PRIMARYKEY || rc == SQLITE_CONSTRAINT_UNIQUE) return -EEXIST;
  return sql_fail(s, op, rc);
}

static void done(sqlite3_stmt *st) {
  /* The step's result was already looked at; reset's echo of it carries nothing new. */
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
}

/* Bind helpers that do nothing once one has failed, so a statement's bindings read as a
 * list and are checked once. NULL text binds as "". */
static void bind_text(sqlite3_stmt *st, int i, const char *v, int *rc) {
  if (*rc == SQLITE_OK) *rc = sqlite3_bind_text(st, i, v != NULL ? v : "", -1, SQLITE_TRANSIENT);
}
static void bind_i64(sqlite3_stmt *st, int i, int64_t v, int *rc) {
  if (*rc == SQLITE_OK) *rc = sqlite3_bind_int64(st, i, (sqlite3_int64)v);
}
static void bind_hash(sqlite3_stmt *st, int i, const uint8_t h[32], int *rc) {
  if (*rc == SQLITE_OK) *rc = sqlite3_bind_blob(st, i, h, 32, SQLITE_TRANSIENT);
}

/* Copy a text column into a fixed array, truncating at a UTF-8 character boundary. */
static void col_text(sqlite3_stmt *st, int col, char *dst, size_t cap) {
  const unsigned char *t = sqlite3_column_text(st, col);
  int n = sqlite3_column_bytes(st, col);
  size_t len = (t != NULL && n > 0) ? (size_t)n : 0;
  if (len >= cap) {
    len = cap - 1;
    while (len > 0 && (t[len] & 0xC0) == 0x80) len--;
  }
  if (len > 0) memcpy(dst, t, len);
  dst[len] = '\0';
}

/* Run a statement that returns no rows. */
static int exec_done(broker_store_t *s, store_stmt_t which, const char *op) {
  sqlite3_stmt *st = s->st[which];
  int rc = sqlite3_step(st);
  done(st);
  return rc == SQLITE_DONE ? 0 : sql_fail(s, op, rc);
}

static int tx_begin(broker_store_t *s) { return exec_done(s, ST_BEGIN, "begin"); }
static int tx_commit(broker_store_t *s) { return exec_done(s, ST_COMMIT, "commit"); }
static void tx_rollback(broker_store_t *s) {
  if (sqlite3_get_autocommit(s->db)) return; /* SQLite already rolled back */
  /* A failure is logged there; the next BEGIN then fails loudly rather than nest. */
  if (exec_done(s, ST_ROLLBACK, "rollback") != 0) return;
}

/* ---- open and close ------------------------------------------------------------------ */

/* The data directory holds the store and, beside it, keys: only the broker's user may
 * write it. Created 0700 if missing; one that others can write is refused, not repaired. */
static int prepare_dir(const char *dir, char *err, size_t errlen) {
  if (mkdir(dir, 0700) == 0) {
    /* Exactly 0700 whatever the umask, or the broker could lock itself out. */
    if (chmod(dir, 0700) != 0) {
      int e = errno;
      set_err(err, errlen, "cannot chmod 700 data directory %s: %s", dir, strerror(e));
      return -e;
    }
  } else if (errno != EEXIST) {
    int e = errno;
    set_err(err, errlen, "cannot create data directory %s: %s", dir, strerror(e));
    return -e;
  }
  struct stat st;
  if (stat(dir, &st) != 0) {
    int e = errno;
    set_err(err, errlen, "cannot stat data directory %s: %s", dir, strerror(e));
    return -e;
  }
  if (!S_ISDIR(st.st_mode)) {
    set_err(err, errlen, "data directory %s is not a directory", dir);
    return TT_ECONFIG;
  }
  if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
    set_err(err, errlen, "data directory %s is group- or world-writable (mode %03o); "
            "chmod 700 it", dir, (unsigned)(st.st_mode & 0777));
    return TT_ECONFIG;
  }
  return 0;
}

/* The database file must be 0600 whatever the umask (SQLite gives the -wal and -shm files
 * the database file's mode). Only SQLite ever opens these files: closing any other
 * descriptor of them would drop every POSIX lock SQLite holds on them (fcntl locks are per
 * process and file, not per descriptor), after which an outside reader's close deletes the
 * live WAL and acknowledged writes are gone at the next crash. So the mode is checked and
 * set by path, after SQLite has created the file and before the first write. The data
 * directory is 0700, so nobody else could open the file in between. */
static int secure_file(const char *path, char *err, size_t errlen) {
  struct stat st;
  if (lstat(path, &st) != 0) {
    int e = errno;
    set_err(err, errlen, "cannot stat %s: %s", path, strerror(e));
    return -e;
  }
  if (!S_ISREG(st.st_mode)) {
    set_err(err, errlen, "%s is not a regular file", path);
    return TT_ECONFIG;
  }
  if ((st.st_mode & 0777) == 0600) return 0;
  if (chmod(path, 0600) != 0) {
    int e = errno;
    set_err(err, errlen, "cannot chmod 600 %s: %s", path, strerror(e));
    return -e;
  }
  if ((st.st_mode & 077) != 0)
    TT_WARN(MOD, "store file mode tightened", "path=%s was=%03o", path, (unsigned)(st.st_mode & 0777));
  return 0;
}

/* One-off statements at open (pragmas, version reads), not worth keeping prepared. */
static int open_query_int(sqlite3 *db, const char *sql, int64_t *out) {
  sqlite3_stmt *st = NULL;
  int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
  if (rc != SQLITE_OK) return rc;
  rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) {
    *out = sqlite3_column_int64(st, 0);
    rc = SQLITE_OK;
  } else if (rc == SQLITE_DONE) {
    rc = SQLITE_ERROR;
  }
  sqlite3_finalize(st);
  return rc;
}

static int open_pragmas(sqlite3 *db, char *err, size_t errlen) {
  /* WAL with synchronous=NORMAL: a commit is in the WAL before COMMIT returns, so a broker
   * killed at any moment (the crash test SIGKILLs) loses nothing it reported as done. The
   * WAL is fsynced only at checkpoints, so an OS crash or power loss may roll back the last
   * few commits; the file is never corrupted either way. FULL would fsync every commit for
   * no gain against the failure we expect (process death). */
  sqlite3_stmt *st = NULL;
  int rc = sqlite3_prepare_v2(db, "PRAGMA journal_mode = WAL", -1, &st, NULL);
  if (rc == SQLITE_OK) {
    rc = sqlite3_step(st);
    const unsigned char *mode = rc == SQLITE_ROW ? sqlite3_column_text(st, 0) : NULL;
    rc = (mode != NULL && strcmp((const char *)mode, "wal") == 0) ? SQLITE_OK : SQLITE_ERROR;
    sqlite3_finalize(st);
  }
  if (rc != SQLITE_OK) {
    set_err(err, errlen, "cannot switch the store to WAL mode: %s", sqlite3_errmsg(db));
    return TT_EIO;
  }
  rc = sqlite3_exec(db,
                    "PRAGMA synchronous = NORMAL;"
                    "PRAGMA foreign_keys = ON;"
                    "PRAGMA secure_delete = OFF;",
                    NULL, NULL, NULL);
  if (rc != SQLITE_OK) {
    set_err(err, errlen, "cannot set store pragmas: %s", sqlite3_errmsg(db));
    return TT_EIO;
  }
  return 0;
}

static int open_migrate(broker_store_t *s, char *err, size_t errlen) {
  int64_t v = 0;
  int rc = open_query_int(s->db, "PRAGMA user_version", &v);
  if (rc != SQLITE_OK) {
    set_err(err, errlen, "cannot read the store schema version: %s", sqlite3_errmsg(s->db));
    return TT_EIO;
  }
  if (v > STORE_SCHEMA_LATEST) {
    set_err(err, errlen, "store schema %lld is newer than this broker (%d)", (long long)v,
            STORE_SCHEMA_LATEST);
    return TT_EVERSION;
  }
  if (v < 0) {
    set_err(err, errlen, "store schema version %lld is not valid", (long long)v);
    return TT_EVERSION;
  }
  for (int64_t i = v; i < STORE_SCHEMA_LATEST; i++) {
    int64_t now = 0;
    rc = sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    if (rc == SQLITE_OK) rc = sqlite3_exec(s->db, g_migrations[i], NULL, NULL, NULL);
    if (rc == SQLITE_OK) rc = open_query_int(s->db, "PRAGMA user_version", &now);
    if (rc == SQLITE_OK && now != i + 1) {
      /* A step that forgot its bump is our bug; refuse rather than run it twice later. */
      set_err(err, errlen, "store migration %lld left schema version %lld", (long long)(i + 1),
              (long long)now);
      if (!sqlite3_get_autocommit(s->db)) (void)sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
      return TT_EVERSION;
    }
    if (rc == SQLITE_OK) rc = sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
      set_err(err, errlen, "store migration to schema %lld failed: %s", (long long)(i + 1),
              sqlite3_errmsg(s->db));
      if (!sqlite3_get_autocommit(s->db)) (void)sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
      return TT_EIO;
    }
    TT_INFO(MOD, "store schema migrated", "version=%lld", (long long)(i + 1));
  }
  s->version = STORE_SCHEMA_LATEST;
  return 0;
}

static int open_audit_tail(broker_store_t *s, char *err, size_t errlen) {
  sqlite3_stmt *st = s->st[ST_AUDIT_TAIL];
  int rc = sqlite3_step(st);
  int ret = 0;
  if (rc == SQLITE_ROW) {
    const void *h = sqlite3_column_blob(st, 1);
    if (h == NULL || sqlite3_column_bytes(st, 1) != 32) {
      set_err(err, errlen, "store audit tail has a malformed hash");
      ret = TT_EIO;
    } else {
      s->audit_last_id = sqlite3_column_int64(st, 0);
      memcpy(s->audit_last_hash, h, 32);
    }
  } else if (rc == SQLITE_DONE) {
    s->audit_last_id = 0;
    memset(s->audit_last_hash, 0, sizeof s->audit_last_hash);
  } else {
    set_err(err, errlen, "cannot read the audit tail: %s", sqlite3_errmsg(s->db));
    ret = TT_EIO;
  }
  done(st);
  return ret;
}

int store_open(broker_store_t **out, const char *data_dir, char *err, size_t errlen) {
  *out = NULL;
  if (err != NULL && errlen > 0) err[0] = '\0';
  char path[4096];
  int n = snprintf(path, sizeof path, "%s/%s", data_dir, STORE_FILE);
  if (n < 0 || (size_t)n >= sizeof path) {
    set_err(err, errlen, "data directory path too long");
    return TT_ECONFIG;
  }
  int rc = prepare_dir(data_dir, err, errlen);
  if (rc != 0) return rc;

  broker_store_t *s = calloc(1, sizeof *s);
  if (s == NULL) {
    set_err(err, errlen, "out of memory");
    return TT_ENOMEM;
  }
  s->md = EVP_MD_CTX_new();
  if (s->md == NULL) {
    set_err(err, errlen, "out of memory");
    rc = TT_ENOMEM;
    goto out;
  }
  /* NOMUTEX: the store belongs to the loop thread alone. */
  int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX |
              SQLITE_OPEN_NOFOLLOW | SQLITE_OPEN_EXRESCODE;
  int src = sqlite3_open_v2(path, &s->db, flags, NULL);
  if (src != SQLITE_OK) {
    set_err(err, errlen, "cannot open %s: %s", path,
            s->db != NULL ? sqlite3_errmsg(s->db) : sqlite3_errstr(src));
    rc = TT_EIO;
    goto out;
  }
  rc = secure_file(path, err, errlen);
  if (rc != 0) goto out;
  /* Defensive mode forbids writable_schema and friends; an untrusted schema may not call
   * functions with side effects. Neither is something we do; both narrow what a crafted
   * database file could make us do. */
  if (sqlite3_db_config(s->db, SQLITE_DBCONFIG_DEFENSIVE, 1, (int *)NULL) != SQLITE_OK ||
      sqlite3_db_config(s->db, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, (int *)NULL) != SQLITE_OK ||
      sqlite3_busy_timeout(s->db, STORE_BUSY_MS) != SQLITE_OK) {
    set_err(err, errlen, "cannot configure the store connection: %s", sqlite3_errmsg(s->db));
    rc = TT_EIO;
    goto out;
  }
  /* Check the version before the first write, so a newer store is left untouched. */
  rc = open_migrate(s, err, errlen);
  if (rc != 0) goto out;
  rc = open_pragmas(s->db, err, errlen);
  if (rc != 0) goto out;
  for (int i = 0; i < ST__COUNT; i++) {
    src = sqlite3_prepare_v3(s->db, g_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &s->st[i], NULL);
    if (src != SQLITE_OK) {
      set_err(err, errlen, "cannot prepare store statement %d: %s", i, sqlite3_errmsg(s->db));
      rc = TT_EIO;
      goto out;
    }
  }
  rc = open_audit_tail(s, err, errlen);
  if (rc != 0) goto out;
  *out = s;
  return 0;
out:
  store_close(s);
  return rc;
}

void store_close(broker_store_t *s) {
  if (s == NULL) return;
  for (int i = 0; i < ST__COUNT; i++) sqlite3_finalize(s->st[i]);
  if (s->db != NULL) {
    int rc = sqlite3_close(s->db);
    if (rc != SQLITE_OK)
      TT_ERROR(MOD, "store close failed", "rc=%d err=\"%s\"", rc, sqlite3_errstr(rc));
  }
  EVP_MD_CTX_free(s->md);
  free(s);
}

int store_schema_version(broker_store_t *s) { return s->version; }

/* ---- devices --------------------------------------------------------------------------- */

static void dev_from_row(sqlite3_stmt *st, store_device_t *d) {
  memset(d, 0, sizeof *d);
  col_text(st, 0, d->id, sizeof d->id);
  col_text(st, 1, d->hostname, sizeof d->hostname);
  col_text(st, 2, d->address, sizeof d->address);
  col_text(st, 3, d->version, sizeof d->version);
  col_text(st, 4, d->cert_fp, sizeof d->cert_fp);
  d->enrolled_ms = sqlite3_column_int64(st, 5);
  d->last_seen_ms = sqlite3_column_int64(st, 6);
  d->cert_not_after_ms = sqlite3_column_int64(st, 7);
  d->revoked = sqlite3_column_int64(st, 8) != 0;
}

int store_device_add(broker_store_t *s, const store_device_t *d) {
  sqlite3_stmt *st = s->st[ST_DEV_INSERT];
  int rc = SQLITE_OK;
  bind_text(st, 1, d->id, &rc);
  bind_text(st, 2, d->hostname, &rc);
  bind_text(st, 3, d->address, &rc);
  bind_text(st, 4, d->version, &rc);
  bind_text(st, 5, d->cert_fp, &rc);
  bind_i64(st, 6, d->enrolled_ms, &rc);
  bind_i64(st, 7, d->last_seen_ms, &rc);
  bind_i64(st, 8, d->cert_not_after_ms, &rc);
  bind_i64(st, 9, d->revoked ? 1 : 0, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  done(st);
  return rc == SQLITE_DONE ? 0 : insert_fail(s, "device_add", rc);
}

int store_device_seen(broker_store_t *s, const char *id, const char *hostname, const char *address,
                      const char *version, int64_t now_ms) {
  sqlite3_stmt *st = s->st[ST_DEV_SEEN];
  int rc = SQLITE_OK;
  bind_text(st, 1, id, &rc);
  bind_text(st, 2, hostname, &rc);
  bind_text(st, 3, address, &rc);
  bind_text(st, 4, version, &rc);
  bind_i64(st, 5, now_ms, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  done(st);
  return rc == SQLITE_DONE ? 0 : sql_fail(s, "device_seen", rc);
}

int store_device_set_cert(broker_store_t *s, const char *id, const char *cert_fp,
                          int64_t not_after_ms) {
  sqlite3_stmt *st = s->st[ST_DEV_SET_CERT];
  int rc = SQLITE_OK;
  bind_text(st, 1, id, &rc);
  bind_text(st, 2, cert_fp, &rc);
  bind_i64(st, 3, not_after_ms, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  done(st);
  if (rc != SQLITE_DONE) return sql_fail(s, "device_set_cert", rc);
  return sqlite3_changes(s->db) == 0 ? TT_ENOTFOUND : 0;
}

int store_device_get(broker_store_t *s, const char *id, store_device_t *out) {
  memset(out, 0, sizeof *out);
  sqlite3_stmt *st = s->st[ST_DEV_GET];
  int rc = SQLITE_OK;
  bind_text(st, 1, id, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  int ret = 0;
  if (rc == SQLITE_ROW) dev_from_row(st, out);
  else if (rc == SQLITE_DONE) ret = TT_ENOTFOUND;
  else ret = sql_fail(s, "device_get", rc);
  done(st);
  return ret;
}

static int device_count(broker_store_t *s, int64_t *n) {
  sqlite3_stmt *st = s->st[ST_DEV_COUNT];
  int rc = sqlite3_step(st);
  int ret = 0;
  if (rc == SQLITE_ROW) *n = sqlite3_column_int64(st, 0);
  else ret = sql_fail(s, "device_count", rc);
  done(st);
  return ret;
}

/* The callback must not call back into the store's device listing (the statement is in
 * use); a non-zero return stops the walk and is returned. limit 0 = no limit. */
int store_device_list(broker_store_t *s, uint32_t offset, uint32_t limit, store_device_cb cb,
                      void *ctx, uint32_t *total) {
  if (total != NULL) *total = 0;
  int64_t n = 0;
  int ret = device_count(s, &n);
  if (ret != 0) return ret;
  if (total != NULL) *total = n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
  sqlite3_stmt *st = s->st[ST_DEV_LIST];
  int rc = SQLITE_OK;
  bind_i64(st, 1, limit == 0 ? -1 : (int64_t)limit, &rc);
  bind_i64(st, 2, offset, &rc);
  while (rc == SQLITE_OK || rc == SQLITE_ROW) {
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) break;
    store_device_t d;
    dev_from_row(st, &d);
    ret = cb(ctx, &d);
    if (ret != 0) break;
  }
  done(st);
  if (ret == 0 && rc != SQLITE_DONE) ret = sql_fail(s, "device_list", rc);
  return ret;
}

size_t store_device_count(broker_store_t *s) {
  int64_t n = 0;
  if (device_count(s, &n) != 0) return 0; /* logged */
  return (size_t)n;
}

/* ---- enrollment tokens ---------------------------------------------------------------- */

int store_token_add(broker_store_t *s, const uint8_t hash[32], int64_t expires_ms, uint32_t uses,
                    const char *note, const char *created_by, int64_t now_ms) {
  if (uses == 0) return TT_EINVAL; /* a token nobody can use is a caller's mistake */
  sqlite3_stmt *st = s->st[ST_TOK_INSERT];
  int rc = SQLITE_OK;
  bind_hash(st, 1, hash, &rc);
  bind_i64(st, 2, expires_ms, &rc);
  bind_i64(st, 3, uses, &rc);
  bind_text(st, 4, note, &rc);
  bind_text(st, 5, created_by, &rc);
  bind_i64(st, 6, now_ms, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  done(st);
  return rc == SQLITE_DONE ? 0 : insert_fail(s, "token_add", rc);
}

/* Used-up rows stay, so that "already used" (TT_EDENIED) differs from "unknown". */
int store_token_use(broker_store_t *s, const uint8_t hash[32], int64_t now_ms) {
  int ret = tx_begin(s);
  if (ret != 0) return ret;
  sqlite3_stmt *st = s->st[ST_TOK_GET];
  int rc = SQLITE_OK;
  bind_hash(st, 1, hash, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) {
    /* The index lookup is not constant-time, but what it compares is a hash of the token,
     * not the token; this check keeps the final decision on a constant-time compare. */
    const void *h = sqlite3_column_blob(st, 0);
    if (h == NULL || sqlite3_column_bytes(st, 0) != 32 || CRYPTO_memcmp(h, hash, 32) != 0)
      ret = TT_ENOTFOUND;
    else if (now_ms >= sqlite3_column_int64(st, 1))
      ret = TT_ETIMEOUT;
    else if (sqlite3_column_int64(st, 2) <= 0)
      ret = TT_EDENIED;
  } else if (rc == SQLITE_DONE) {
    ret = TT_ENOTFOUND;
  } else {
    ret = sql_fail(s, "token_get", rc);
  }
  done(st);
  if (ret == 0) {
    st = s->st[ST_TOK_DECREMENT];
    rc = SQLITE_OK;
    bind_hash(st, 1, hash, &rc);
    if (rc == SQLITE_OK) rc = sqlite3_step(st);
    done(st);
    if (rc != SQLITE_DONE) ret = sql_fail(s, "token_use", rc);
    else if (sqlite3_changes(s->db) != 1) ret = TT_EDENIED;
  }
  if (ret == 0) ret = tx_commit(s);
  if (ret != 0) tx_rollback(s);
  return ret;
}

/* ---- revocations ---------------------------------------------------------------------- */

int store_revoke(broker_store_t *s, store_revoke_kind_t kind, const char *name, const char *by,
                 const char *reason, int64_t now_ms) {
  if (kind != STORE_REVOKE_DEVICE && kind != STORE_REVOKE_PERSON) return TT_EINVAL;
  int ret = tx_begin(s);
  if (ret != 0) return ret;
  sqlite3_stmt *st = s->st[ST_REV_INSERT];
  int rc = SQLITE_OK;
  bind_i64(st, 1, (int64_t)kind, &rc);
  bind_text(st, 2, name, &rc);
  bind_text(st, 3, by, &rc);
  bind_text(st, 4, reason, &rc);
  bind_i64(st, 5, now_ms, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  done(st);
  if (rc != SQLITE_DONE) ret = insert_fail(s, "revoke", rc);
  if (ret == 0 && kind == STORE_REVOKE_DEVICE) {
    /* A device not (yet) in the table is still revoked by its row above. */
    st = s->st[ST_DEV_SET_REVOKED];
    rc = SQLITE_OK;
    bind_text(st, 1, name, &rc);
    if (rc == SQLITE_OK) rc = sqlite3_step(st);
    done(st);
    if (rc != SQLITE_DONE) ret = sql_fail(s, "revoke_device", rc);
  }
  if (ret == 0) ret = tx_commit(s);
  if (ret != 0) tx_rollback(s);
  return ret;
}

int store_is_revoked(broker_store_t *s, store_revoke_kind_t kind, const char *name, bool *revoked) {
  *revoked = false;
  sqlite3_stmt *st = s->st[ST_REV_GET];
  int rc = SQLITE_OK;
  bind_i64(st, 1, (int64_t)kind, &rc);
  bind_text(st, 2, name, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  int ret = 0;
  if (rc == SQLITE_ROW) *revoked = true;
  else if (rc != SQLITE_DONE) ret = sql_fail(s, "is_revoked", rc);
  done(st);
  return ret;
}

/* ---- audit ----------------------------------------------------------------------------- */

static void put_be64(uint8_t *p, uint64_t v) {
  for (int i = 7; i >= 0; i--) {
    p[i] = (uint8_t)v;
    v >>= 8;
  }
}

/* sha256(prev(32) || u64be(id) || u64be(ts) || for actor, action, target, detail:
 * u32be(len) || bytes). The length prefixes keep ("ab","c") and ("a","bc") apart. */
static int audit_hash(broker_store_t *s, const uint8_t prev[32], int64_t id, int64_t ts,
                      const char *const field[4], const size_t flen[4], uint8_t out[32]) {
  uint8_t hdr[16];
  put_be64(hdr, (uint64_t)id);
  put_be64(hdr + 8, (uint64_t)ts);
  unsigned int outlen = 0;
  int ok = EVP_DigestInit_ex(s->md, EVP_sha256(), NULL) == 1 &&
           EVP_DigestUpdate(s->md, prev, 32) == 1 &&
           EVP_DigestUpdate(s->md, hdr, sizeof hdr) == 1;
  for (int i = 0; ok && i < 4; i++) {
    uint8_t len[4] = {(uint8_t)(flen[i] >> 24), (uint8_t)(flen[i] >> 16), (uint8_t)(flen[i] >> 8),
                      (uint8_t)flen[i]};
    ok = EVP_DigestUpdate(s->md, len, sizeof len) == 1 &&
         (flen[i] == 0 || EVP_DigestUpdate(s->md, field[i], flen[i]) == 1);
  }
  ok = ok && EVP_DigestFinal_ex(s->md, out, &outlen) == 1 && outlen == 32;
  if (!ok) {
    TT_ERROR(MOD, "sha256 failed", "op=%s", "audit_hash");
    return TT_EIO;
  }
  return 0;
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
  size_t flen[4];
  for (int i = 0; i < 4; i++) {
    flen[i] = strlen(f[i]);
    if (flen[i] >= cap[i]) return TT_ETOOBIG;
  }
  int64_t id = s->audit_last_id + 1;
  uint8_t h[32];
  int ret = audit_hash(s, s->audit_last_hash, id, ts_ms, f, flen, h);
  if (ret != 0) return ret;
  /* One INSERT is its own transaction. The explicit id makes a second writer's append (or a
   * stale tail) collide instead of silently forking the chain. */
  sqlite3_stmt *st = s->st[ST_AUDIT_INSERT];
  int rc = SQLITE_OK;
  bind_i64(st, 1, id, &rc);
  bind_i64(st, 2, ts_ms, &rc);
  for (int i = 0; i < 4; i++) bind_text(st, 3 + i, f[i], &rc);
  bind_hash(st, 7, s->audit_last_hash, &rc);
  bind_hash(st, 8, h, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  done(st);
  if (rc != SQLITE_DONE) return sql_fail(s, "audit_append", rc);
  s->audit_last_id = id;
  memcpy(s->audit_last_hash, h, 32);
  if (id_out != NULL) *id_out = id;
  return 0;
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

int store_audit_verify(broker_store_t *s, int64_t *count, int64_t *first_bad) {
  *count = 0;
  *first_bad = 0;
  uint8_t prev[32] = {0};
  int64_t n = 0;
  int ret = 0;
  sqlite3_stmt *st = s->st[ST_AUDIT_WALK];
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    n++;
    int64_t id = sqlite3_column_int64(st, 0);
    const char *fld[4];
    size_t flen[4];
    for (int i = 0; i < 4; i++) {
      fld[i] = (const char *)sqlite3_column_text(st, 2 + i);
      flen[i] = (size_t)sqlite3_column_bytes(st, 2 + i);
      if (fld[i] == NULL) fld[i] = "";
    }
    const void *ph = sqlite3_column_blob(st, 6);
    const void *hh = sqlite3_column_blob(st, 7);
    bool good = id == n && ph != NULL && sqlite3_column_bytes(st, 6) == 32 &&
                memcmp(ph, prev, 32) == 0 && hh != NULL && sqlite3_column_bytes(st, 7) == 32;
    uint8_t h[32];
    if (good) {
      ret = audit_hash(s, prev, id, sqlite3_column_int64(st, 1), fld, flen, h);
      if (ret != 0) break;
      good = memcmp(h, hh, 32) == 0;
    }
    if (!good && *first_bad == 0) *first_bad = id;
    /* Carry on from what the row claims, so the count covers the whole table. */
    if (hh != NULL && sqlite3_column_bytes(st, 7) == 32) memcpy(prev, hh, 32);
    else memset(prev, 0xff, sizeof prev);
  }
  done(st);
  if (ret == 0 && rc != SQLITE_DONE) ret = sql_fail(s, "audit_verify", rc);
  *count = n;
  return ret;
}

/* ---- tickets ----------------------------------------------------------------------------- */

/* A ticket write the schema refused is the caller's bad value, not a disk error; an event
 * for a ticket that does not exist trips the foreign key. */
static int ticket_fail(broker_store_t *s, const char *op, int rc) {
  if (rc == SQLITE_CONSTRAINT_CHECK || rc == SQLITE_CONSTRAINT_NOTNULL) return TT_EINVAL;
  if (rc == SQLITE_CONSTRAINT_FOREIGNKEY) return TT_ENOTFOUND;
  return sql_fail(s, op, rc);
}

/* A struct's text field may lack its NUL if the caller filled it byte by byte: refuse it
 * (TT_ETOOBIG, checked by ticket_fields) and never read past the array. */
static void bind_field(sqlite3_stmt *st, int i, const char *v, size_t cap, int *rc) {
  if (*rc == SQLITE_OK) *rc = sqlite3_bind_text(st, i, v, (int)strnlen(v, cap), SQLITE_TRANSIENT);
}

static int ticket_fields(const store_ticket_t *t) {
  if (strnlen(t->device, sizeof t->device) == sizeof t->device ||
      strnlen(t->requester, sizeof t->requester) == sizeof t->requester ||
      strnlen(t->assignee, sizeof t->assignee) == sizeof t->assignee ||
      strnlen(t->summary, sizeof t->summary) == sizeof t->summary ||
      strnlen(t->external_id, sizeof t->external_id) == sizeof t->external_id)
    return TT_ETOOBIG;
  return 0;
}

static void bind_opt_text(sqlite3_stmt *st, int i, const char *v, int *rc) {
  if (*rc != SQLITE_OK) return;
  *rc = v != NULL ? sqlite3_bind_text(st, i, v, -1, SQLITE_TRANSIENT) : sqlite3_bind_null(st, i);
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
  return rc == SQLITE_DONE ? 0 : ticket_fail(s, "ticket_event_add", rc);
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
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  done(st);
  if (rc != SQLITE_DONE) ret = ticket_fail(s, "ticket_add", rc);
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
  return 0;
}

static void ticket_from_row(sqlite3_stmt *st, store_ticket_t *t) {
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
}

int store_ticket_get(broker_store_t *s, int64_t id, store_ticket_t *out) {
  memset(out, 0, sizeof *out);
  sqlite3_stmt *st = s->st[ST_TIX_GET];
  int rc = SQLITE_OK;
  bind_i64(st, 1, id, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  int ret = 0;
  if (rc == SQLITE_ROW) ticket_from_row(st, out);
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
  if (rc != SQLITE_DONE) ret = ticket_fail(s, "ticket_update", rc);
  else if (sqlite3_changes(s->db) == 0) ret = TT_ENOTFOUND;
  if (ret == 0) ret = event_insert(s, t->id, now_ms, actor, kind, text);
  if (ret == 0) ret = tx_commit(s);
  if (ret != 0) tx_rollback(s);
  return ret;
}

/* An UPDATE guarded by "still live" changed nothing: say whether the row is missing or
 * had ended. */
static int not_live(broker_store_t *s, store_stmt_t which, int64_t id, const char *op) {
  sqlite3_stmt *st = s->st[which];
  int rc = SQLITE_OK;
  bind_i64(st, 1, id, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  done(st);
  if (rc == SQLITE_ROW) return TT_ESTATE;
  if (rc == SQLITE_DONE) return TT_ENOTFOUND;
  return sql_fail(s, op, rc);
}

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
    ticket_from_row(st, &t);
    ret = cb(ctx, &t);
    if (ret != 0) break;
  }
  done(st);
  if (ret == 0 && rc != SQLITE_DONE) ret = sql_fail(s, "ticket_list", rc);
  return ret;
}

/* Walk an events statement whose parameters are bound (rc says whether binding worked). */
static int events_walk(broker_store_t *s, sqlite3_stmt *st, int rc, store_ticket_event_cb cb,
                       void *ctx) {
  int ret = 0;
  while (rc == SQLITE_OK || rc == SQLITE_ROW) {
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) break;
    store_ticket_event_t e;
    memset(&e, 0, sizeof e);
    e.id = sqlite3_column_int64(st, 0);
    e.ticket = sqlite3_column_int64(st, 1);
    e.ts_ms = sqlite3_column_int64(st, 2);
    col_text(st, 3, e.actor, sizeof e.actor);
    col_text(st, 4, e.kind, sizeof e.kind);
    col_text(st, 5, e.text, sizeof e.text);
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

/* ---- sessions ---------------------------------------------------------------------------- */

static int session_fields(const store_session_t *x) {
  if (strnlen(x->device, sizeof x->device) == sizeof x->device ||
      strnlen(x->person, sizeof x->person) == sizeof x->person ||
      strnlen(x->consent_by, sizeof x->consent_by) == sizeof x->consent_by ||
      strnlen(x->ended_by, sizeof x->ended_by) == sizeof x->ended_by ||
      strnlen(x->end_reason, sizeof x->end_reason) == sizeof x->end_reason)
    return TT_ETOOBIG;
  return 0;
}

int store_session_add(broker_store_t *s, store_session_t *sess) {
  int ret = session_fields(sess);
  if (ret != 0) return ret;
  sqlite3_stmt *st = s->st[ST_SES_INSERT];
  int rc = SQLITE_OK;
  bind_i64(st, 1, sess->ticket, &rc);
  bind_field(st, 2, sess->device, sizeof sess->device, &rc);
  bind_field(st, 3, sess->person, sizeof sess->person, &rc);
  bind_i64(st, 4, (int64_t)sess->access, &rc);
  bind_i64(st, 5, sess->started_ms, &rc);
  bind_i64(st, 6, sess->expires_ms, &rc);
  bind_i64(st, 7, sess->unattended ? 1 : 0, &rc);
  bind_field(st, 8, sess->consent_by, sizeof sess->consent_by, &rc);
  bind_i64(st, 9, sess->ended_ms, &rc);
  bind_field(st, 10, sess->ended_by, sizeof sess->ended_by, &rc);
  bind_field(st, 11, sess->end_reason, sizeof sess->end_reason, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  done(st);
  if (rc != SQLITE_DONE) return ticket_fail(s, "session_add", rc);
  sess->id = (int64_t)sqlite3_last_insert_rowid(s->db);
  return 0;
}

int store_session_grant(broker_store_t *s, int64_t id, int64_t expires_ms, bool unattended,
                        const char *consent_by) {
  if (consent_by != NULL && strlen(consent_by) >= STORE_NAME_MAX) return TT_ETOOBIG;
  if (expires_ms < 0) return TT_EINVAL;
  sqlite3_stmt *st = s->st[ST_SES_GRANT];
  int rc = SQLITE_OK;
  bind_i64(st, 1, id, &rc);
  bind_i64(st, 2, expires_ms, &rc);
  bind_i64(st, 3, unattended ? 1 : 0, &rc);
  bind_text(st, 4, consent_by, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  done(st);
  if (rc != SQLITE_DONE) return ticket_fail(s, "session_grant", rc);
  return sqlite3_changes(s->db) == 0 ? not_live(s, ST_SES_GET, id, "session_grant") : 0;
}

int store_session_get(broker_store_t *s, int64_t id, store_session_t *out) {
  memset(out, 0, sizeof *out);
  sqlite3_stmt *st = s->st[ST_SES_GET];
  int rc = SQLITE_OK;
  bind_i64(st, 1, id, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  int ret = 0;
  if (rc == SQLITE_ROW) {
    out->id = sqlite3_column_int64(st, 0);
    out->ticket = sqlite3_column_int64(st, 1);
    col_text(st, 2, out->device, sizeof out->device);
    col_text(st, 3, out->person, sizeof out->person);
    out->access = (unsigned)sqlite3_column_int(st, 4);
    out->started_ms = sqlite3_column_int64(st, 5);
    out->expires_ms = sqlite3_column_int64(st, 6);
    out->unattended = sqlite3_column_int(st, 7) != 0;
    col_text(st, 8, out->consent_by, sizeof out->consent_by);
    out->ended_ms = sqlite3_column_int64(st, 9);
    col_text(st, 10, out->ended_by, sizeof out->ended_by);
    col_text(st, 11, out->end_reason, sizeof out->end_reason);
  } else if (rc == SQLITE_DONE) {
    ret = TT_ENOTFOUND;
  } else {
    ret = sql_fail(s, "session_get", rc);
  }
  done(st);
  return ret;
}

int store_session_end(broker_store_t *s, int64_t id, int64_t now_ms, const char *by,
                      const char *reason) {
  if (now_ms <= 0) return TT_EINVAL;
  if ((by != NULL && strlen(by) >= STORE_NAME_MAX) ||
      (reason != NULL && strlen(reason) >= STORE_TEXT_MAX))
    return TT_ETOOBIG;
  sqlite3_stmt *st = s->st[ST_SES_END];
  int rc = SQLITE_OK;
  bind_i64(st, 1, id, &rc);
  bind_i64(st, 2, now_ms, &rc);
  bind_text(st, 3, by, &rc);
  bind_text(st, 4, reason, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  done(st);
  if (rc != SQLITE_DONE) return sql_fail(s, "session_end", rc);
  return sqlite3_changes(s->db) == 0 ? not_live(s, ST_SES_GET, id, "session_end") : 0;
}

/* Both updates in one transaction: a restart either closes out everything the last broker
 * left open or nothing. */
int store_session_end_all(broker_store_t *s, int64_t now_ms, uint32_t *count) {
  *count = 0;
  if (now_ms <= 0) return TT_EINVAL;
  int ret = tx_begin(s);
  if (ret != 0) return ret;
  sqlite3_stmt *st = s->st[ST_SES_END_ALL];
  int rc = SQLITE_OK;
  bind_i64(st, 1, now_ms, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  done(st);
  int sessions = sqlite3_changes(s->db), recordings = 0;
  if (rc == SQLITE_DONE) {
    st = s->st[ST_REC_ABANDON];
    rc = SQLITE_OK;
    bind_i64(st, 1, now_ms, &rc);
    if (rc == SQLITE_OK) rc = sqlite3_step(st);
    done(st);
    recordings = sqlite3_changes(s->db);
  }
  ret = rc == SQLITE_DONE ? tx_commit(s) : sql_fail(s, "session_end_all", rc);
  if (ret != 0) {
    tx_rollback(s);
    return ret;
  }
  if (recordings > 0)
    TT_WARN(MOD, "recordings left unfinished by the last broker marked failed", "count=%d",
            recordings);
  *count = (uint32_t)sessions;
  return 0;
}

/* ---- recordings -------------------------------------------------------------------------- */

static void recording_from_row(sqlite3_stmt *st, store_recording_t *r) {
  memset(r, 0, sizeof *r);
  r->id = sqlite3_column_int64(st, 0);
  r->session = sqlite3_column_int64(st, 1);
  r->ticket = sqlite3_column_int64(st, 2);
  col_text(st, 3, r->device, sizeof r->device);
  col_text(st, 4, r->person, sizeof r->person);
  col_text(st, 5, r->path, sizeof r->path);
  r->started_ms = sqlite3_column_int64(st, 6);
  r->ended_ms = sqlite3_column_int64(st, 7);
  r->size = sqlite3_column_int64(st, 8);
  col_text(st, 9, r->sha256, sizeof r->sha256);
  r->failed = sqlite3_column_int(st, 10) != 0;
}

/* The path is made from the id SQLite chose, in the same transaction as the row. */
int store_recording_add(broker_store_t *s, store_recording_t *r) {
  if (strnlen(r->device, sizeof r->device) == sizeof r->device ||
      strnlen(r->person, sizeof r->person) == sizeof r->person)
    return TT_ETOOBIG;
  int ret = tx_begin(s);
  if (ret != 0) return ret;
  sqlite3_stmt *st = s->st[ST_REC_INSERT];
  int rc = SQLITE_OK;
  bind_i64(st, 1, r->session, &rc);
  bind_i64(st, 2, r->ticket, &rc);
  bind_field(st, 3, r->device, sizeof r->device, &rc);
  bind_field(st, 4, r->person, sizeof r->person, &rc);
  bind_i64(st, 5, r->started_ms, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  done(st);
  if (rc != SQLITE_DONE) ret = ticket_fail(s, "recording_add", rc);
  int64_t id = ret == 0 ? (int64_t)sqlite3_last_insert_rowid(s->db) : 0;
  if (ret == 0) {
    st = s->st[ST_REC_SET_PATH];
    rc = SQLITE_OK;
    bind_i64(st, 1, id, &rc);
    if (rc == SQLITE_OK) rc = sqlite3_step(st);
    done(st);
    if (rc != SQLITE_DONE) ret = sql_fail(s, "recording_add", rc);
  }
  if (ret == 0) ret = tx_commit(s);
  if (ret != 0) {
    tx_rollback(s);
    return ret;
  }
  r->id = id;
  r->ended_ms = 0;
  r->size = 0;
  r->sha256[0] = '\0';
  r->failed = false;
  snprintf(r->path, sizeof r->path, "recordings/R-%lld.cast.zst", (long long)id);
  return 0;
}

static bool sha256_hex_valid(const char *h) {
  if (strlen(h) != 64) return false;
  for (size_t i = 0; i < 64; i++)
    if (!((h[i] >= '0' && h[i] <= '9') || (h[i] >= 'a' && h[i] <= 'f'))) return false;
  return true;
}

int store_recording_finish(broker_store_t *s, int64_t id, int64_t ended_ms, int64_t size,
                           const char *sha256_hex, bool failed) {
  const char *h = sha256_hex != NULL ? sha256_hex : "";
  if (ended_ms <= 0 || size < 0 || (h[0] != '\0' && !sha256_hex_valid(h))) return TT_EINVAL;
  sqlite3_stmt *st = s->st[ST_REC_FINISH];
  int rc = SQLITE_OK;
  bind_i64(st, 1, id, &rc);
  bind_i64(st, 2, ended_ms, &rc);
  bind_i64(st, 3, size, &rc);
  bind_text(st, 4, h, &rc);
  bind_i64(st, 5, failed ? 1 : 0, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  done(st);
  if (rc != SQLITE_DONE) return ticket_fail(s, "recording_finish", rc);
  return sqlite3_changes(s->db) == 0 ? not_live(s, ST_REC_GET, id, "recording_finish") : 0;
}

int store_recording_get(broker_store_t *s, int64_t id, store_recording_t *out) {
  memset(out, 0, sizeof *out);
  sqlite3_stmt *st = s->st[ST_REC_GET];
  int rc = SQLITE_OK;
  bind_i64(st, 1, id, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  int ret = 0;
  if (rc == SQLITE_ROW) recording_from_row(st, out);
  else if (rc == SQLITE_DONE) ret = TT_ENOTFOUND;
  else ret = sql_fail(s, "recording_get", rc);
  done(st);
  return ret;
}

int store_recording_list(broker_store_t *s, int64_t session, store_recording_t *out, uint32_t cap,
                         uint32_t *n) {
  *n = 0;
  if (cap == 0) return 0;
  sqlite3_stmt *st = s->st[ST_REC_LIST];
  int rc = SQLITE_OK;
  bind_i64(st, 1, session, &rc);
  bind_i64(st, 2, (int64_t)cap, &rc);
  while (rc == SQLITE_OK || rc == SQLITE_ROW) {
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW || *n >= cap) break;
    recording_from_row(st, &out[*n]);
    (*n)++;
  }
  done(st);
  return rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : sql_fail(s, "recording_list", rc);
}
