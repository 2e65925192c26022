/* Enrollment tokens: stored as sha256 of the token only, used up atomically. */
#include <openssl/crypto.h>

#include "internal.h"

static const store_sql_t k_sql[] = {
  {ST_TOK_INSERT, "INSERT INTO tokens(hash, expires_ms, uses_left, note, created_by, created_ms)"
      " VALUES(?1, ?2, ?3, ?4, ?5, ?6)"},
  {ST_TOK_GET, "SELECT hash, expires_ms, uses_left FROM tokens WHERE hash = ?1"},
  {ST_TOK_DECREMENT, "UPDATE tokens SET uses_left = uses_left - 1 WHERE hash = ?1 AND uses_left > 0"},
};

int store_prepare_tokens(broker_store_t *s) { return store_prepare(s, k_sql, sizeof k_sql / sizeof k_sql[0]); }

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

