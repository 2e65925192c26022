/* The store's private half: the connection, its prepared statements and the helpers every
 * domain file (devices, tokens, audit, tickets, sessions, people, inventory, diag, kb)
 * shares. Nothing outside broker/store/ includes this. */
#ifndef BROKER_STORE_INTERNAL_H
#define BROKER_STORE_INTERNAL_H

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <sqlite3.h>
#include <zstd.h>

#include "store.h"
#include "tt/log.h"
#include "tt/utf8.h"

#define MOD "store"

/* Every prepared statement of the store; each domain file prepares its own at open. */
typedef enum {
  ST_BEGIN,
  ST_COMMIT,
  ST_ROLLBACK,
  ST_SAVEPOINT,
  ST_RELEASE,
  ST_ROLLBACK_TO,
  ST_DEV_INSERT,
  ST_DEV_SEEN,
  ST_DEV_SET_CERT,
  ST_DEV_GET,
  ST_DEV_LIST,
  ST_DEV_COUNT,
  ST_DEV_BY_HOST,
  ST_DEV_PAGE,
  ST_DEV_SET_REVOKED,
  ST_TOK_INSERT,
  ST_TOK_GET,
  ST_TOK_DECREMENT,
  ST_REV_INSERT,
  ST_REV_GET,
  ST_REV_ALL,
  ST_DEV_LAST_SEEN,
  ST_AUDIT_TAIL,
  ST_AUDIT_INSERT,
  ST_AUDIT_LIST,
  ST_AUDIT_LIST_DEVICE,
  ST_AUDIT_WALK,
  ST_AUDIT_RELEASED_BEFORE,
  ST_AUDIT_RELEASED_LIST,
  ST_ERASE_AUDIT_IDS,
  ST_RELEASE_VALUE,
  ST_RELEASE_TEXT,
  ST_ERASE_FILES,
  ST_ERASE_FILE_GONE,
  ST_AUDIT_VALUE_INSERT,
  ST_AUDIT_VALUES,
  ST_AUDIT_FORMAT1,
  ST_AUDIT_REHASH,
  ST_AUDIT_GATE,
  ST_SIEM_GET,
  ST_SIEM_PUT,
  ST_RET_GET,
  ST_RET_SET,
  ST_HOLD_SET,
  ST_HOLD_CLEAR,
  ST_HOLD_COUNT,
  ST_HOLD_EARLIEST,
  ST_RET_RECORDINGS,
  ST_RET_RECORDING_EXPIRE,
  ST_RET_DIAG,
  ST_AUDIT_BASE_GET,
  ST_AUDIT_BASE_SET,
  ST_AUDIT_CUT_POINT,
  ST_AUDIT_PRUNE,
  ST_AUDIT_PRUNE_VALUES,
  ST_RTX_NEXT,
  ST_RTX_FILES,
  ST_RTX_CHILD,
  ST_RTX_DEL_EVENTS,
  ST_RTX_DEL_RECORDINGS,
  ST_RTX_DEL_DIAG,
  ST_RTX_DEL_SESSIONS,
  ST_RTX_DEL_HELP,
  ST_RTX_DEL_KB,
  ST_RTX_ALERT_TICKET,
  ST_RTX_ALERT_STORM,
  ST_RTX_DEL_STORM,
  ST_RTX_DEL_TICKET,
  ST_PX_TICKETS,
  ST_PX_EVENTS,
  ST_PX_EVENT_GET,
  ST_PX_SESSIONS,
  ST_PX_RECORDINGS,
  ST_PX_DIAG,
  ST_PX_AUDIT,
  ST_CP_INSERT,
  ST_CP_LIST,
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
  ST_PPL_ADD,
  ST_PPL_SEEN,
  ST_PPL_LAST_SEEN,
  ST_PPL_GET,
  ST_PPL_LIST,
  ST_PPL_SET_LEVEL,
  ST_SSH_ADD,
  ST_SSH_COUNT,
  ST_SSH_GET,
  ST_SSH_DEL,
  ST_SSH_OF,
  ST_SSH_ALL,
  ST_SSH_LIVE,
  ST_INV_CURRENT,
  ST_INV_NEXT_HASH,
  ST_INV_VERSION_INSERT,
  ST_INV_TABLE_INSERT,
  ST_INV_GET,
  ST_INV_NEXT,
  ST_INV_HISTORY,
  ST_INV_AT,
  ST_INV_BYTES,
  ST_INV_PRUNE_DEVICE,
  ST_INV_FLOOR_GET,
  ST_INV_FLOOR_NEW,
  ST_INV_FLOOR_COUNT,
  ST_INV_FLOOR_SET,
  ST_INV_PRUNE_SUPERSEDED,
  ST_INV_PRUNE_MARKERS,
  ST_INV_PRUNE_VERSIONS,
  ST_DIAG_INSERT,
  ST_DIAG_GET,
  ST_HELP_FIND,
  ST_HELP_RECENT,
  ST_HELP_INSERT,
  ST_HELP_TICKETS,
  ST_HELP_LAST_PUBLIC,
  ST_HELP_COMMENTS,
  ST_CHK_PUT,
  ST_CHK_LIST,
  ST_CHK_STALE,
  ST_CHK_PRUNE,
  ST_CHK_COUNT,
  ST_CHK_KNOWN,
  ST_CHK_AGENT_PUT,
  ST_CHK_AGENT_GET,
  ST_CHK_AGENT_PAGE,
  ST_ALERT_FIND,
  ST_ALERT_GET,
  ST_ALERT_INSERT,
  ST_ALERT_UPDATE,
  ST_ALERT_LIST,
  ST_ALERT_FAILING,
  ST_ALERT_WINDOW,
  ST_ALERT_STORM_LIVE,
  ST_TIX_SINCE,
  ST_ALERT_DEVICE_COUNT,
  ST_ALERT_OLDEST_RESOLVED,
  ST_ALERT_DELETE,
  ST_CHK_RATE_GET,
  ST_CHK_RATE_SET,
  ST_ALERT_OF_TICKET,
  ST_ALERT_DUE,
  ST_STORM_GET,
  ST_STORM_SET,
  ST_STORM_DEL,
  ST_TIX_CHILDREN,
  ST_TIX_CHILDREN_COUNT,
  ST_TIX_SET_PARENT,
  ST_POL_SET,
  ST_POL_UNSET,
  ST_POL_LIST,
  ST_POL_LIST_GROUP,
  ST_POL_VERSION,
  ST_POL_BUMP,
  ST_MAINT_ADD,
  ST_MAINT_LIST,
  ST_MAINT_ACTIVE_DEVICE,
  ST_MAINT_ACTIVE_GROUP,
  ST_ASSET_GET,
  ST_ASSET_UPSERT,
  ST_ASSET_CUSTOM_GET,
  ST_ASSET_CUSTOM_SET,
  ST_ASSET_CUSTOM_DEL,
  ST_ASSET_CUSTOM_NAMES,
  ST_ASSET_PAGE,
  ST_ASSET_BY_SERIAL,
  ST_ASSET_BY_HOST,
  ST_ASSET_BY_MAC,
  ST_ASSET_OF_DEVICE,
  ST_FACTS_GET,
  ST_FACTS_PUT,
  ST_FACTS_DROP,
  ST_FACTS_STALE,
  ST_FACTS_LATEST,
  ST_MACS_DEL,
  ST_MACS_ADD,
  ST_INVF_ROW_GET,
  ST_INVF_ROW_ADD,
  ST_INVF_DEV_GET,
  ST_INVF_DEV_ADD,
  ST_INVF_CUR_GET,
  ST_INVF_CUR_PUT,
  ST_INVF_CUR_DEL,
  ST_INVF_BASES,
  ST_INVF_BASE_ADD,
  ST_INVF_BASE_USERS,
  ST_INVF_BASE_DEL,
  ST_INVF_BROW_ADD,
  ST_INVF_BROW_DEL,
  ST_INVF_PLUS_ADD,
  ST_INVF_PLUS_DEL,
  ST_INVF_PLUS_OF_DEV,
  ST_INVF_REF_ADD,
  ST_INVF_REF_DROP,
  ST_INVF_ROW_GONE,
  ST_INVF_ROW_TEXT,
  ST_INVF_DEV_USE,
  ST_INVF_CUR_SCAN,
  ST_INVF_MATCH,
  ST_INVF_BASE_DEVS,
  ST_INVF_PLUS_DEVS,
  ST_INVF_DEV_NAME,
  ST_INVF_TODO,
  ST_INVF_TODO_DEL,
  ST_KB_INSERT,
  ST_KB_UPDATE,
  ST_KB_GET,
  ST_KB_TITLE,
  ST_KB_FTS_ADD,
  ST_KB_FTS_DEL,
  ST_KB_CHECKS_DEL,
  ST_KB_CHECK_ADD,
  ST_KB_CHECKS,
  ST_KB_SEARCH,
  ST_KB_LINK,
  ST_KB_UNLINK,
  ST_KB_LINKS_OF_TICKET,
  ST_KB_OF_TICKET,
  ST_KB_OF_CHECK,
  ST_RLS_INSERT,
  ST_RLS_COUNT,
  ST_RLS_LIST,
  ST_RLS_DELETE,
  ST_RO_INSERT,
  ST_RO_UPDATE,
  ST_RO_GET,
  ST_RO_LATEST,
  ST_RO_ACTIVE,
  ST_ROD_INSERT,
  ST_ROD_UPDATE,
  ST_ROD_LIST,
  ST__COUNT
} store_stmt_t;

struct broker_store_s {
  sqlite3 *db;
  sqlite3_stmt *st[ST__COUNT];
  unsigned tx_depth;           /* nesting of tx_begin */
  uint32_t tx_outer;           /* bit i: level i began the transaction itself */
  int version;
  /* Tail of the audit chain, loaded at open and advanced after each committed append. */
  int64_t audit_last_id;
  uint8_t audit_last_hash[32];
  /* Inventory bodies' zstd contexts, made at first use and kept (a context per call would
   * allocate zstd's tables for every table of every put). */
  ZSTD_CCtx *inv_cctx;
  ZSTD_DCtx *inv_dctx;
  /* Rows the find index has interned, by content (inventory_find.c): most of a put's rows
   * are rows other devices sent before, found here without a seek. Emptied on rollback. */
  struct store_inv_cache_s *inv_cache;
  uint64_t inv_find_work; /* a find page's work budget; 0: STORE_INV_FIND_WORK_MAX */
  /* The knowledge base's hold on FTS5 (kb.c): the tokenizer that splits a search into the
   * words the index holds, made at open and freed at close. */
  struct store_kb_s *kb;
};


typedef struct {
  store_stmt_t id;
  const char *sql;
} store_sql_t;

/* Prepare a domain's statements (at open; SQL errors are ours and fail the open). */
int store_prepare(broker_store_t *s, const store_sql_t *tab, size_t n);
int store_prepare_devices(broker_store_t *s);
int store_prepare_tokens(broker_store_t *s);
int store_prepare_audit(broker_store_t *s);
int store_prepare_tickets(broker_store_t *s);
int store_prepare_sessions(broker_store_t *s);
int store_prepare_people(broker_store_t *s);
int store_prepare_inventory(broker_store_t *s);
int store_prepare_diag(broker_store_t *s);
int store_prepare_retention(broker_store_t *s);
int store_prepare_person_records(broker_store_t *s);
int store_prepare_erase(broker_store_t *s);
int store_prepare_erase_sql(broker_store_t *s);
int store_prepare_release(broker_store_t *s);

/* ---- releasing audit values (records/release.c) ---- */
typedef struct {
  int64_t *ids;
  size_t n, cap;
} store_ids_t;
int store_ids_add(store_ids_t *l, int64_t id);
/* What holds keep, sorted: tickets on hold, and their sessions, recordings, reports. */
typedef struct {
  store_ids_t of[4]; /* T, S, R, D */
} store_held_t;
int store_held_load(broker_store_t *s, store_held_t *h);
void store_held_free(store_held_t *h);
/* v is "T-n", "S-n", "R-n" or "D-n" of something a hold keeps. */
bool store_held_names(const store_held_t *h, const char *v, size_t len);
bool store_audit_is_erasure(const store_audit_t *a);
/* a's values, split (TT_AUDIT_VALUES_MAX of p); false unless a format 2 entry whole. */
bool store_audit_split_ok(const store_audit_t *a, tt_audit_pair_t *p, size_t *np);
/* Each value i of a with nv[i] becomes that text (empty when the row would not hold it),
 * bound by a new salt and digest2 and released under erasure e: acc steps, *released counts.
 * Values released before are left. The audit gate must be open. */
int store_audit_release(broker_store_t *s, const store_audit_t *a, const tt_audit_pair_t *p, size_t np,
                        const char *const nv[], int64_t e, uint8_t acc[32], int64_t *released);
int store_audit_copy_cb(void *ctx, const store_audit_t *e);
int store_prepare_closed_tickets(broker_store_t *s);
/* Delete a recording's file, DATA_DIR/path (a path of the store's own: relative, no ".."):
 * 0 when it is gone (or was), else the errno, logged. */
int store_recording_unlink(const char *data_dir, const char *path);
/* Open (or close) the audit tables to the store's own rechain, prune and erase writes. */
int store_audit_gate(broker_store_t *s, bool open);
int store_prepare_help(broker_store_t *s);
int store_prepare_alerts(broker_store_t *s);
int store_prepare_policy(broker_store_t *s);
/* A ticket's and an event's columns, in the order the *_from_row readers take them. */
#define STORE_TIX_COLS "id, device, requester, assignee, summary, external_id, priority, level, " \
                       "state, created_ms, updated_ms, first_response_due_ms, resolution_due_ms, " \
                       "first_response_ms, resolved_ms, created_by, source, parent"
#define STORE_TEV_COLS "id, ticket, ts_ms, actor, kind, text"
void store_ticket_from_row(sqlite3_stmt *st, store_ticket_t *t);
void store_event_from_row(sqlite3_stmt *st, store_ticket_event_t *e);
int store_prepare_assets(broker_store_t *s);
int store_prepare_facts(broker_store_t *s);
/* kb.c: statements, the FTS5 ranking function and the query tokenizer (at open); freed at
 * close, before the connection. */
int store_prepare_kb(broker_store_t *s);
int store_prepare_rollout(broker_store_t *s);
void store_kb_close(broker_store_t *s);
/* facts.c: whether a table is one the facts come from; keys as matched (trimmed, ASCII lower
 * case; a serial firmware fills in for everyone is none; a MAC as aa:bb:cc:dd:ee:ff, false
 * for anything else or all zeros). */
bool store_fact_table(const char *name);
void store_key_norm(const char *in, char *out, size_t cap);
void store_serial_key(const char *serial, char *out, size_t cap);
bool store_mac_norm(const char *in, char out[18]);
/* devices.c: a row of DEV_COLS into d. */
void store_dev_from_row(sqlite3_stmt *st, store_device_t *d);
#define STORE_DEV_COLS "id, hostname, address, version, cert_fp, enrolled_ms, last_seen_ms, " \
                       "cert_not_after_ms, revoked"
/* Free what the inventory keeps between calls (at close). */
void store_inventory_close(broker_store_t *s);
int store_prepare_inventory_find(broker_store_t *s);
/* The find index (inventory_find.c), kept by store_inv_put inside its transaction: the
 * device's table `name` is now body (NULL: removed). A body that is not a table's canonical
 * JSON indexes as no rows. */
int store_inv_find_index(broker_store_t *s, const char *device, const char *name, const uint8_t *body,
                         size_t len);
/* At open (the writer): index the tables listed by migration 9, a batch per transaction. */
int store_inv_find_backfill(broker_store_t *s);
/* Forget interned rows (a rollback may have undone them); free the cache (at close). */
void store_inv_find_forget(broker_store_t *s);
void store_inv_find_close(broker_store_t *s);
/* Load the audit chain's tail (at open, and after a batch that appended was rolled back). */
int store_audit_load_tail(broker_store_t *s);

/* Transactions nest: the outermost tx_begin is BEGIN IMMEDIATE (the write lock taken up
 * front, so a read-then-write never fails half way), inner ones are savepoints. So a
 * domain call that needs a transaction of its own runs as well alone (tests, tools) as
 * inside the store thread's group commit. tx_rollback undoes the innermost level only. */
int tx_begin(broker_store_t *s);
int tx_commit(broker_store_t *s);
void tx_rollback(broker_store_t *s);

/* ---- helpers ---------------------------------------------------------------------------- */


/* The one place a SQLite failure becomes ours: logged once here with SQLite's own words. */
static inline int sql_fail(broker_store_t *s, const char *op, int rc) {
  const char *msg = sqlite3_errmsg(s->db);
  char q[256];
  tt_log_quote(q, sizeof q, msg, strlen(msg));
  TT_ERROR(MOD, "sqlite failure", "op=%s rc=%d err=\"%s\"", op, rc, q);
  return TT_EIO;
}

/* An insert that collides with an existing key is the caller's -EEXIST, not a disk error. */
static inline int insert_fail(broker_store_t *s, const char *op, int rc) {
  if (rc == SQLITE_CONSTRAINT_PRIMARYKEY || rc == SQLITE_CONSTRAINT_UNIQUE) return -EEXIST;
  return sql_fail(s, op, rc);
}

static inline void done(sqlite3_stmt *st) {
  /* The step's result was already looked at; reset's echo of it carries nothing new. */
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
}

/* Bind helpers that do nothing once one has failed, so a statement's bindings read as a
 * list and are checked once. NULL text binds as "". */
static inline void bind_text(sqlite3_stmt *st, int i, const char *v, int *rc) {
  if (*rc == SQLITE_OK) *rc = sqlite3_bind_text(st, i, v != NULL ? v : "", -1, SQLITE_TRANSIENT);
}
static inline void bind_i64(sqlite3_stmt *st, int i, int64_t v, int *rc) {
  if (*rc == SQLITE_OK) *rc = sqlite3_bind_int64(st, i, (sqlite3_int64)v);
}
static inline void bind_hash(sqlite3_stmt *st, int i, const uint8_t h[32], int *rc) {
  if (*rc == SQLITE_OK) *rc = sqlite3_bind_blob(st, i, h, 32, SQLITE_TRANSIENT);
}

/* Copy a text column into a fixed array, truncating at a UTF-8 character boundary. */
static inline void col_text(sqlite3_stmt *st, int col, char *dst, size_t cap) {
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
static inline int exec_done(broker_store_t *s, store_stmt_t which, const char *op) {
  sqlite3_stmt *st = s->st[which];
  int rc = sqlite3_step(st);
  done(st);
  return rc == SQLITE_DONE ? 0 : sql_fail(s, op, rc);
}



/* A ticket write the schema refused is the caller's bad value, not a disk error; an event
 * for a ticket that does not exist trips the foreign key. */
static inline int constraint_fail(broker_store_t *s, const char *op, int rc) {
  if (rc == SQLITE_CONSTRAINT_CHECK || rc == SQLITE_CONSTRAINT_NOTNULL) return TT_EINVAL;
  if (rc == SQLITE_CONSTRAINT_FOREIGNKEY) return TT_ENOTFOUND;
  return sql_fail(s, op, rc);
}

/* A struct's text field may lack its NUL if the caller filled it byte by byte: refuse it
 * (TT_ETOOBIG, checked by ticket_fields) and never read past the array. */
static inline void bind_field(sqlite3_stmt *st, int i, const char *v, size_t cap, int *rc) {
  if (*rc == SQLITE_OK) *rc = sqlite3_bind_text(st, i, v, (int)strnlen(v, cap), SQLITE_TRANSIENT);
}

static inline void bind_opt_text(sqlite3_stmt *st, int i, const char *v, int *rc) {
  if (*rc != SQLITE_OK) return;
  *rc = v != NULL ? sqlite3_bind_text(st, i, v, -1, SQLITE_TRANSIENT) : sqlite3_bind_null(st, i);
}

static inline int not_live(broker_store_t *s, store_stmt_t which, int64_t id, const char *op) {
  sqlite3_stmt *st = s->st[which];
  int rc = SQLITE_OK;
  bind_i64(st, 1, id, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  done(st);
  if (rc == SQLITE_ROW) return TT_ESTATE;
  if (rc == SQLITE_DONE) return TT_ENOTFOUND;
  return sql_fail(s, op, rc);
}

#endif
