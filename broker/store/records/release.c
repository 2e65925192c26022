/* Releasing audit values (tt/audit.h): an erasure or a retention step rewrites values of
 * format 2 entries, destroys the salts their digests were made with, binds each new text with a
 * new salt and digest2, and accumulates what it released for its own entry to commit to (the
 * broker signs that commitment). Used by a person's erasure (erase.c) and by the retention of
 * transfers' records (below). What a ticket on hold covers (the ticket, its sessions,
 * recordings and diagnostics reports, named T-n, S-n, R-n, D-n in the audit) is left. */
#include <stdlib.h>
#include "../internal.h"
#include "tt/audit.h"
#include "tt/hex.h"

#define MOD "store"

static const store_sql_t k_sql[] = {
    {ST_RELEASE_VALUE, "UPDATE audit_values SET salt = ?4, digest2 = ?5, erased = ?3 WHERE entry = ?1 AND n = ?2"},
    {ST_RELEASE_TEXT, "UPDATE audit SET actor = ?2, target = ?3, detail = ?4 WHERE id = ?1"},
};

int store_prepare_release(broker_store_t *s) { return store_prepare(s, k_sql, sizeof k_sql / sizeof k_sql[0]); }

/* ---- what a hold keeps ---------------------------------------------------------------------- */

static int add_id(store_ids_t *l, int64_t id) {
  if (l->n == l->cap) {
    size_t cap = l->cap ? 2 * l->cap : 64;
    int64_t *g = realloc(l->ids, cap * sizeof(*g));
    if (!g) return TT_ENOMEM;
    l->ids = g;
    l->cap = cap;
  }
  l->ids[l->n++] = id;
  return 0;
}

int store_ids_add(store_ids_t *l, int64_t id) { return add_id(l, id); }

static int ids_of(broker_store_t *s, const char *sql, store_ids_t *l) {
  sqlite3_stmt *st = NULL;
  int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL), ret = 0;
  while (ret == 0 && rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
    ret = add_id(l, sqlite3_column_int64(st, 0));
    rc = SQLITE_OK;
  }
  sqlite3_finalize(st);
  if (ret == 0 && rc != SQLITE_DONE) ret = sql_fail(s, "held_ids", rc);
  return ret;
}

int store_held_load(broker_store_t *s, store_held_t *h) {
  memset(h, 0, sizeof(*h));
  static const char *const k_q[4] = {
      "SELECT ticket FROM ticket_holds ORDER BY ticket",
      "SELECT id FROM sessions WHERE ticket IN (SELECT ticket FROM ticket_holds) ORDER BY id",
      "SELECT id FROM recordings WHERE ticket IN (SELECT ticket FROM ticket_holds) ORDER BY id",
      "SELECT id FROM diag_reports WHERE ticket IN (SELECT ticket FROM ticket_holds) ORDER BY id",
  };
  int rc = 0;
  for (int i = 0; rc == 0 && i < 4; i++) rc = ids_of(s, k_q[i], &h->of[i]);
  return rc;
}

void store_held_free(store_held_t *h) {
  for (int i = 0; i < 4; i++) free(h->of[i].ids);
  memset(h, 0, sizeof(*h));
}

bool store_held_names(const store_held_t *h, const char *v, size_t len) {
  static const char k_prefix[4] = {'T', 'S', 'R', 'D'};
  if (len < 3 || len > 22 || v[1] != '-') return false;
  int which = -1;
  for (int i = 0; i < 4; i++)
    if (v[0] == k_prefix[i]) which = i;
  if (which < 0) return false;
  int64_t id = 0;
  for (size_t i = 2; i < len; i++) {
    if (v[i] < '0' || v[i] > '9' || id > (INT64_MAX - 9) / 10) return false;
    id = id * 10 + (v[i] - '0');
  }
  const store_ids_t *l = &h->of[which];
  size_t lo = 0, hi = l->n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (l->ids[mid] < id) lo = mid + 1;
    else hi = mid;
  }
  return lo < l->n && l->ids[lo] == id;
}

/* ---- one entry -------------------------------------------------------------------------------- */

bool store_audit_is_erasure(const store_audit_t *a) {
  return strcmp(a->action, TT_AUDIT_ERASE_ACTION) == 0 || strcmp(a->action, TT_AUDIT_RELEASE_ACTION) == 0;
}

bool store_audit_split_ok(const store_audit_t *a, tt_audit_pair_t *p, size_t *np) {
  *np = tt_audit_split(a->actor, a->target, a->detail, p);
  return a->format == 2 && *np == a->nvalues;
}

/* The row for entry a with each value i that has nv[i] replaced by it, as the broker wrote it
 * (so that it splits into the same keys again); TT_ETOOBIG if it does not fit a row. */
static int rebuild(const store_audit_t *a, const tt_audit_pair_t *p, size_t np, const char *const nv[],
                   char actor[STORE_NAME_MAX], char target[STORE_NAME_MAX], char detail[sizeof a->detail]) {
#define VLEN(i) (nv[i] ? strlen(nv[i]) : p[i].vlen)
#define VAL(i) (int)VLEN(i), (nv[i] ? nv[i] : p[i].val)
  int w = snprintf(actor, STORE_NAME_MAX, "%.*s", VAL(0));
  if (w < 0 || (size_t)w != VLEN(0) || (size_t)w >= STORE_NAME_MAX) return TT_ETOOBIG;
  w = snprintf(target, STORE_NAME_MAX, "%.*s", VAL(1));
  if (w < 0 || (size_t)w != VLEN(1) || (size_t)w >= STORE_NAME_MAX) return TT_ETOOBIG;
  size_t o = 0, cap = sizeof a->detail;
  if (np == 3 && p[2].klen == 1 && p[2].key[0] == TT_AUDIT_WHOLE_DETAIL[0]) {
    w = snprintf(detail, cap, "%.*s", VAL(2));
    return w < 0 || (size_t)w >= cap ? TT_ETOOBIG : 0;
  }
  detail[o++] = '{';
  for (size_t i = 2; i < np; i++) {
    w = snprintf(detail + o, cap - o, "%s\"%.*s\":\"%.*s\"", i > 2 ? "," : "", (int)p[i].klen, p[i].key, VAL(i));
    if (w < 0 || (size_t)w >= cap - o) return TT_ETOOBIG;
    o += (size_t)w;
  }
  if (o + 2 > cap) return TT_ETOOBIG;
  detail[o++] = '}';
  detail[o] = '\0';
  return 0;
#undef VAL
#undef VLEN
}

int store_audit_release(broker_store_t *s, const store_audit_t *a, const tt_audit_pair_t *p, size_t np,
                        const char *const nv[], int64_t e, uint8_t acc[32], int64_t *released) {
  char actor[STORE_NAME_MAX], target[STORE_NAME_MAX], detail[sizeof a->detail];
  const char *empty[TT_AUDIT_VALUES_MAX];
  int ret = rebuild(a, p, np, nv, actor, target, detail);
  if (ret == TT_ETOOBIG) { /* longer than what it replaced and no room: the detail's released values empty */
    for (size_t i = 0; i < np; i++) empty[i] = nv[i] && i >= 2 ? "" : nv[i];
    nv = empty;
    ret = rebuild(a, p, np, nv, actor, target, detail);
  }
  if (ret) return ret;
  tt_audit_pair_t q[TT_AUDIT_VALUES_MAX]; /* the texts the new digests bind: as written */
  if (tt_audit_split(actor, target, detail, q) != np) return TT_ETOOBIG;
  for (size_t i = 0; ret == 0 && i < np; i++) {
    if (!nv[i] || a->values[i].erased) continue; /* released before: left as it was released */
    tt_audit_value_t v2;
    ret = tt_audit_value_new((uint32_t)i, q[i].val, q[i].vlen, &v2);
    if (ret == 0) ret = tt_audit_release_step(acc, a->id, (uint32_t)i, a->values[i].digest, v2.digest);
    if (ret) break;
    sqlite3_stmt *st = s->st[ST_RELEASE_VALUE];
    int rc = SQLITE_OK;
    bind_i64(st, 1, a->id, &rc);
    bind_i64(st, 2, (int64_t)i, &rc);
    bind_i64(st, 3, e, &rc);
    if (rc == SQLITE_OK) rc = sqlite3_bind_blob(st, 4, v2.salt, TT_AUDIT_SALT_LEN, SQLITE_TRANSIENT);
    bind_hash(st, 5, v2.digest, &rc);
    if (rc == SQLITE_OK) rc = sqlite3_step(st);
    done(st);
    if (rc != SQLITE_DONE) ret = sql_fail(s, "release_value", rc);
    else (*released)++;
  }
  if (ret == 0) {
    sqlite3_stmt *st = s->st[ST_RELEASE_TEXT];
    int rc = SQLITE_OK;
    bind_i64(st, 1, a->id, &rc);
    bind_text(st, 2, actor, &rc);
    bind_text(st, 3, target, &rc);
    bind_text(st, 4, detail, &rc);
    if (rc == SQLITE_OK) rc = sqlite3_step(st);
    done(st);
    if (rc != SQLITE_DONE) ret = sql_fail(s, "release_text", rc);
  }
  return ret;
}

int store_audit_one(broker_store_t *s, int64_t id, store_audit_t *a) {
  store_audit_filter_t f = {.after_id = id - 1, .limit = 1};
  int rc = store_audit_list(s, &f, store_audit_copy_cb, a);
  if (rc == 1 && a->id == id) return 0;
  return rc == 0 || rc == 1 ? TT_ENOTFOUND : rc;
}

int store_audit_copy_cb(void *ctx, const store_audit_t *e) {
  *(store_audit_t *)ctx = *e;
  return 1;
}

/* ---- transfers' records, released by retention ------------------------------------------------- */

#define HELD "(SELECT ticket FROM ticket_holds)"
#define FILE_EVENTS "('file-pulled', 'file-pushed', 'file-push-failed', 'file-refused')"
#define FILE_ACTIONS "('file-pull', 'file-push', 'file-push-failed', 'file-refused')"
#define EXPIRED "(expired)"

static bool key_is(const tt_audit_pair_t *p, const char *k) {
  return p->klen == strlen(k) && memcmp(p->key, k, p->klen) == 0;
}

static int delete_events(broker_store_t *s, int64_t cutoff_ms, uint32_t budget, uint32_t *events) {
  sqlite3_stmt *st = NULL;
  int rc = sqlite3_prepare_v2(s->db,
                              "DELETE FROM ticket_events WHERE id IN (SELECT id FROM ticket_events WHERE kind IN "
                              FILE_EVENTS " AND ts_ms < ?1 AND ticket NOT IN " HELD " ORDER BY id LIMIT ?2)",
                              -1, &st, NULL);
  if (rc == SQLITE_OK) rc = sqlite3_bind_int64(st, 1, cutoff_ms);
  if (rc == SQLITE_OK) rc = sqlite3_bind_int64(st, 2, budget);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  if (rc == SQLITE_DONE) *events = (uint32_t)sqlite3_changes(s->db);
  sqlite3_finalize(st);
  return rc == SQLITE_DONE ? 0 : sql_fail(s, "retention_transfer_events", rc);
}

static int transfer_ids(broker_store_t *s, int64_t after, int64_t cutoff_ms, uint32_t budget, store_ids_t *ids) {
  sqlite3_stmt *st = NULL;
  int rc = sqlite3_prepare_v2(s->db,
                              "SELECT id FROM audit WHERE id > max(?1, (SELECT coalesce(max(entries), 0) FROM"
                              " audit_base)) AND ts_ms < ?2 AND action IN " FILE_ACTIONS " ORDER BY id LIMIT ?3",
                              -1, &st, NULL);
  int ret = 0;
  if (rc == SQLITE_OK) rc = sqlite3_bind_int64(st, 1, after);
  if (rc == SQLITE_OK) rc = sqlite3_bind_int64(st, 2, cutoff_ms);
  if (rc == SQLITE_OK) rc = sqlite3_bind_int64(st, 3, budget);
  while (ret == 0 && rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
    ret = add_id(ids, sqlite3_column_int64(st, 0));
    rc = SQLITE_OK;
  }
  sqlite3_finalize(st);
  return ret ? ret : rc == SQLITE_DONE ? 0 : sql_fail(s, "retention_transfer_audit", rc);
}

int store_retention_transfers(broker_store_t *s, int64_t cutoff_ms, uint32_t budget, int64_t *after,
                              store_release_audit_fn audit, void *ctx, uint32_t *events, int64_t *released,
                              bool *more) {
  *events = 0;
  *released = 0;
  *more = false;
  int ret = tx_begin(s);
  if (ret) return ret;
  store_held_t held = {0};
  store_ids_t ids = {0};
  int64_t e = s->audit_last_id + 1, n = 0; /* the release's own entry, written last */
  uint8_t acc[32] = {0};
  store_audit_t *a = malloc(sizeof(*a));
  ret = a ? store_held_load(s, &held) : TT_ENOMEM;
  if (ret == 0) ret = store_audit_gate(s, true);
  if (ret == 0) ret = delete_events(s, cutoff_ms, budget, events);
  if (ret == 0) ret = transfer_ids(s, *after, cutoff_ms, budget, &ids);
  for (size_t i = 0; ret == 0 && i < ids.n; i++) {
    if ((ret = store_audit_one(s, ids.ids[i], a)) != 0) break;
    *after = a->id;
    tt_audit_pair_t p[TT_AUDIT_VALUES_MAX];
    size_t np = 0;
    if (!store_audit_split_ok(a, p, &np)) continue; /* the walk says so; retention leaves it */
    const char *nv[TT_AUDIT_VALUES_MAX] = {NULL};
    bool on_hold = false, any = false;
    for (size_t k = 0; k < np; k++) {
      on_hold |= store_held_names(&held, p[k].val, p[k].vlen);
      if (k >= 2 && (key_is(&p[k], "path") || key_is(&p[k], "message")) && !a->values[k].erased) {
        nv[k] = EXPIRED;
        any = true;
      }
    }
    if (any && !on_hold) ret = store_audit_release(s, a, p, np, nv, e, acc, &n);
  }
  *more = *events >= budget || ids.n >= budget;
  if (ret == 0) ret = store_audit_gate(s, false);
  if (ret == 0 && n > 0) {
    int64_t got = 0;
    ret = audit(ctx, s, n, acc, &got);
    if (ret == 0 && got != e) ret = TT_ESTATE; /* another entry came between: never a valid commitment */
  }
  *released = n;
  free(a);
  store_held_free(&held);
  free(ids.ids);
  if (ret == 0) ret = tx_commit(s);
  else tx_rollback(s);
  return ret;
}
