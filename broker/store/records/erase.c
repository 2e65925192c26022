/* A person's erasure (store.h "a person's erasure", README "Data protection officer"): every
 * value that names them becomes a pseudonym, in one transaction on the writer. A name is
 * found as a whole word in any case ("Nadia.K asked" and "for nadia.k." name nadia.k,
 * "nadia.kim" does not): a technician, an admin, or an employee's local user name. Their
 * diagnostics reports are deleted, their recordings marked for their files to go after the
 * commit, the audit values that name them released (tt/audit.h: rewritten, salts destroyed,
 * committed to by the erasure's own entry). Records of a ticket on hold are counted, not
 * touched. A revoked person's revocation stays, keyed by a hash of the name, so that the name
 * can never come back in. Inventory is the machine's record, not the person's: it is not
 * searched here (README says so). */
#include <ctype.h>
#include <stdlib.h>
#include <strings.h>
#include <openssl/sha.h>
#include "../internal.h"
#include "tt/audit.h"
#include "tt/hex.h"

#define MOD "store"

/* ---- finding a name as a word ------------------------------------------------------------- */

/* What continues a name: letters, digits, . _ - and any byte of a multibyte character. */
static bool name_char(unsigned char c) { return c >= 0x80 || isalnum(c) || c == '.' || c == '_' || c == '-'; }

/* The name at t[at] is a word: nothing of a name before it, and after it at most the . _ - that
 * end a sentence ("for nadia.k."), not one that goes on ("nadia.k.smith"). */
static bool word_at(const char *t, size_t len, size_t at, size_t nlen) {
  if (at > 0 && name_char((unsigned char)t[at - 1])) return false;
  size_t i = at + nlen;
  while (i < len && (t[i] == '.' || t[i] == '_' || t[i] == '-')) i++;
  return i >= len || !name_char((unsigned char)t[i]);
}

static const char *find_word(const char *t, size_t len, const char *name, size_t nlen) {
  for (size_t at = 0; nlen && at + nlen <= len; at++)
    if (strncasecmp(t + at, name, nlen) == 0 && word_at(t, len, at, nlen)) return t + at;
  return NULL;
}

bool store_erase_names(const char *t, size_t len, const char *name) {
  return find_word(t, len, name, strlen(name)) != NULL;
}

/* t with each word `name` replaced by pseudo, at most max bytes (0 = no bound; cut at a
 * character boundary). Allocated; NULL when out of memory. */
char *store_erase_rewrite(const char *t, size_t len, const char *name, const char *pseudo, size_t max, size_t *outlen) {
  size_t nlen = strlen(name), plen = strlen(pseudo), n = 0;
  for (const char *p = t, *end = t + len; (p = find_word(p, (size_t)(end - p), name, nlen)); p += nlen) n++;
  /* find_word from p judges the byte before p as absent: p follows a match, which ends with a
   * name's last byte or the start of the text, so a word there is a word in t too only if the
   * byte before it is not a name's: checked again against t below. */
  char *out = malloc(len + n * (plen > nlen ? plen - nlen : 0) + 1);
  if (!out) return NULL;
  size_t o = 0;
  for (size_t i = 0; i < len;) {
    if (i + nlen <= len && strncasecmp(t + i, name, nlen) == 0 && word_at(t, len, i, nlen)) {
      memcpy(out + o, pseudo, plen);
      o += plen;
      i += nlen;
    } else {
      out[o++] = t[i++];
    }
  }
  if (max && o > max) {
    o = max;
    while (o > 0 && ((unsigned char)out[o] & 0xc0) == 0x80) o--;
  }
  out[o] = '\0';
  if (outlen) *outlen = o;
  return out;
}

static void fn_has(sqlite3_context *cx, int argc, sqlite3_value **av) {
  (void)argc;
  const char *t = (const char *)sqlite3_value_text(av[0]), *name = (const char *)sqlite3_value_text(av[1]);
  sqlite3_result_int(cx, t && name && name[0] && store_erase_names(t, (size_t)sqlite3_value_bytes(av[0]), name));
}

static void fn_rewrite(sqlite3_context *cx, int argc, sqlite3_value **av) {
  const char *t = (const char *)sqlite3_value_text(av[0]), *name = (const char *)sqlite3_value_text(av[1]),
             *pseudo = (const char *)sqlite3_value_text(av[2]);
  if (!t || !name || !name[0] || !pseudo) {
    sqlite3_result_value(cx, av[0]);
    return;
  }
  size_t max = argc > 3 ? (size_t)sqlite3_value_int64(av[3]) : 0, n = 0;
  char *out = store_erase_rewrite(t, (size_t)sqlite3_value_bytes(av[0]), name, pseudo, max, &n);
  if (!out) {
    sqlite3_result_error_nomem(cx);
    return;
  }
  sqlite3_result_text(cx, out, (int)n, free);
}

int store_prepare_erase(broker_store_t *s) {
  int f = SQLITE_UTF8 | SQLITE_DETERMINISTIC | SQLITE_DIRECTONLY;
  if (sqlite3_create_function_v2(s->db, "tt_names", 2, f, NULL, fn_has, NULL, NULL, NULL) != SQLITE_OK ||
      sqlite3_create_function_v2(s->db, "tt_rename", 3, f, NULL, fn_rewrite, NULL, NULL, NULL) != SQLITE_OK ||
      sqlite3_create_function_v2(s->db, "tt_rename", 4, f, NULL, fn_rewrite, NULL, NULL, NULL) != SQLITE_OK) {
    TT_ERROR(MOD, "cannot add the erase functions", "err=\"%s\"", sqlite3_errmsg(s->db));
    return TT_EIO;
  }
  return 0;
}

/* ---- where a person is named ---------------------------------------------------------------- */

#define HELD "(SELECT ticket FROM ticket_holds)"

/* A table, its columns that may name a person ("col" or "col:max" where a CHECK bounds it),
 * the column that ties a row to a ticket (for holds), and the class it is counted in. */
typedef struct {
  const char *table, *cols, *ticket;
  store_erase_class_t cls;
} target_t;

static const target_t k_targets[] = {
    {"tickets", "requester,assignee,created_by,summary", "id", STORE_EC_TICKETS},
    {"ticket_events", "actor,text", "ticket", STORE_EC_EVENTS},
    {"sessions", "person,consent_by,ended_by,end_reason", "ticket", STORE_EC_SESSIONS},
    {"recordings", "person", "ticket", STORE_EC_RECORDINGS},
    {"help_requests", "user:64", "ticket", STORE_EC_HELP},
    {"kb_links", "linked_by:64", "ticket", STORE_EC_OTHER},
    {"people", "added_by,note", NULL, STORE_EC_OTHER},
    {"ssh_keys", "added_by,comment", NULL, STORE_EC_OTHER},
    {"tokens", "created_by,note", NULL, STORE_EC_OTHER},
    {"revocations", "\"by\",reason", NULL, STORE_EC_OTHER},
    {"kb_articles", "author:64,updated_by:64", NULL, STORE_EC_OTHER},
    {"alerts", "acked_by:64", NULL, STORE_EC_OTHER},
    {"policy", "set_by:64", NULL, STORE_EC_OTHER},
    {"maintenance", "set_by:64,reason:256", NULL, STORE_EC_OTHER},
    {"retention", "set_by", NULL, STORE_EC_OTHER},
    {"ticket_holds", "held_by,reason:256", NULL, STORE_EC_OTHER},
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

/* ---- the audit ------------------------------------------------------------------------------ */

typedef struct {
  int64_t *ids;
  size_t n, cap;
} idlist_t;

static int ids_add(idlist_t *l, int64_t id) {
  if (l->n == l->cap) {
    size_t cap = l->cap ? 2 * l->cap : 256;
    int64_t *g = realloc(l->ids, cap * sizeof(*g));
    if (!g) return TT_ENOMEM;
    l->ids = g;
    l->cap = cap;
  }
  l->ids[l->n++] = id;
  return 0;
}

static bool held_value(const idlist_t *held, const char *v, size_t len) {
  if (len < 3 || len > 22 || v[0] != 'T' || v[1] != '-') return false;
  char num[24];
  memcpy(num, v + 2, len - 2);
  num[len - 2] = '\0';
  char *end = NULL;
  long long id = strtoll(num, &end, 10);
  if (!end || *end) return false;
  for (size_t i = 0; i < held->n; i++)
    if (held->ids[i] == id) return true;
  return false;
}

/* Entry a, split into p: each value i with nv[i] (nl[i] bytes) becomes that text, and those
 * that still have their salt are released under erasure e (acc steps, *released counts). The
 * row is rewritten as the broker wrote it, so it splits into the same keys again. */
static int audit_rewrite(broker_store_t *s, const store_audit_t *a, const tt_audit_pair_t *p, size_t np,
                         char *const nv[], const size_t nl[], int64_t e, uint8_t acc[32], int64_t *released) {
  char actor[STORE_NAME_MAX], target[STORE_NAME_MAX], detail[sizeof a->detail];
#define VAL(i) (int)(nv[i] ? nl[i] : p[i].vlen), (nv[i] ? nv[i] : p[i].val)
  snprintf(actor, sizeof actor, "%.*s", VAL(0));
  snprintf(target, sizeof target, "%.*s", VAL(1));
  size_t o = 0;
  bool whole = np == 3 && p[2].klen == 1 && p[2].key[0] == TT_AUDIT_WHOLE_DETAIL[0];
  int w;
  if (whole) {
    w = snprintf(detail, sizeof detail, "%.*s", VAL(2));
    o = w > 0 ? (size_t)w : 0;
  } else {
    detail[o++] = '{';
    for (size_t i = 2; i < np && o < sizeof detail; i++) {
      w = snprintf(detail + o, sizeof detail - o, "%s\"%.*s\":\"%.*s\"", i > 2 ? "," : "", (int)p[i].klen, p[i].key,
                   VAL(i));
      o += w > 0 ? (size_t)w : sizeof detail;
    }
    if (o + 1 < sizeof detail) detail[o++] = '}', detail[o] = '\0';
    else o = sizeof detail;
  }
  /* A pseudonym longer than the name may not fit what a row holds: the entry would not split
   * again into the values its hash covers. */
  if (o >= sizeof detail || strlen(actor) != (size_t)(nv[0] ? nl[0] : p[0].vlen) ||
      strlen(target) != (size_t)(nv[1] ? nl[1] : p[1].vlen))
    return TT_ETOOBIG;
#undef VAL
  int ret = 0;
  for (size_t i = 0; ret == 0 && i < np; i++) {
    if (!nv[i] || !a->values[i].has_salt) continue; /* released before: its text is free */
    ret = tt_audit_release_step(acc, a->id, (uint32_t)i, a->values[i].digest);
    if (ret == 0) {
      sqlite3_stmt *st = s->st[ST_ERASE_RELEASE];
      int rc = SQLITE_OK;
      bind_i64(st, 1, a->id, &rc);
      bind_i64(st, 2, (int64_t)i, &rc);
      bind_i64(st, 3, e, &rc);
      if (rc == SQLITE_OK) rc = sqlite3_step(st);
      done(st);
      if (rc != SQLITE_DONE) ret = sql_fail(s, "erase_release", rc);
      (*released)++;
    }
  }
  if (ret == 0) {
    sqlite3_stmt *st = s->st[ST_ERASE_AUDIT_TEXT];
    int rc = SQLITE_OK;
    bind_i64(st, 1, a->id, &rc);
    bind_text(st, 2, actor, &rc);
    bind_text(st, 3, target, &rc);
    bind_text(st, 4, detail, &rc);
    if (rc == SQLITE_OK) rc = sqlite3_step(st);
    done(st);
    if (rc != SQLITE_DONE) ret = sql_fail(s, "erase_audit_text", rc);
  }
  return ret;
}

static bool split_ok(const store_audit_t *a, tt_audit_pair_t *p, size_t *np) {
  *np = tt_audit_split(a->actor, a->target, a->detail, p);
  return a->format == 2 && *np == a->nvalues;
}

/* One audit entry: its values that name the person rewritten and released under erasure e
 * (or, under a hold, counted). */
static int audit_one(broker_store_t *s, store_erase_t *x, const idlist_t *held, const store_audit_t *a, int64_t e,
                     uint8_t acc[32]) {
  tt_audit_pair_t p[TT_AUDIT_VALUES_MAX];
  size_t np = 0;
  if (!split_ok(a, p, &np)) return TT_EIO; /* the walk would say so: do not make it worse */
  bool names[TT_AUDIT_VALUES_MAX] = {false}, any = false, on_hold = false;
  for (size_t i = 0; i < np; i++) {
    on_hold |= held_value(held, p[i].val, p[i].vlen);
    names[i] = find_word(p[i].val, p[i].vlen, x->name, strlen(x->name)) != NULL;
    any |= names[i];
  }
  if (!any) return 0; /* the name only inside a key, or split across an escape */
  if (on_hold) { /* an entry about a ticket on hold is its evidence */
    x->held[STORE_EC_AUDIT]++;
    return 0;
  }
  char *nv[TT_AUDIT_VALUES_MAX] = {NULL};
  size_t nl[TT_AUDIT_VALUES_MAX] = {0};
  int ret = 0;
  for (size_t i = 0; ret == 0 && i < np; i++) {
    if (!names[i]) continue;
    nv[i] = store_erase_rewrite(p[i].val, p[i].vlen, x->name, x->pseudonym, 0, &nl[i]);
    if (!nv[i]) ret = TT_ENOMEM;
  }
  if (ret == 0) ret = audit_rewrite(s, a, p, np, nv, nl, e, acc, &x->released);
  if (ret == 0) x->changed[STORE_EC_AUDIT]++;
  for (size_t i = 0; i < np; i++) free(nv[i]);
  return ret;
}

static int audit_cb(void *ctx, const store_audit_t *e) {
  store_audit_t *out = ctx;
  *out = *e;
  return 1;
}

static int erase_audit(broker_store_t *s, store_erase_t *x, const idlist_t *held, int64_t e, uint8_t acc[32]) {
  idlist_t ids = {0};
  sqlite3_stmt *st = s->st[ST_ERASE_AUDIT_IDS];
  int rc = SQLITE_OK, ret = 0;
  bind_text(st, 1, x->name, &rc);
  while (ret == 0 && (rc == SQLITE_OK || rc == SQLITE_ROW)) {
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) ret = ids_add(&ids, sqlite3_column_int64(st, 0));
  }
  done(st);
  if (ret == 0 && rc != SQLITE_DONE) ret = sql_fail(s, "erase_audit_ids", rc);
  store_audit_t *a = malloc(sizeof(*a));
  if (!a && ret == 0) ret = TT_ENOMEM;
  for (size_t i = 0; ret == 0 && i < ids.n; i++) {
    store_audit_filter_t f = {.after_id = ids.ids[i] - 1, .limit = 1};
    int lr = store_audit_list(s, &f, audit_cb, a);
    if (lr != 1) ret = lr ? lr : TT_EIO;
    else ret = audit_one(s, x, held, a, e, acc);
  }
  free(a);
  free(ids.ids);
  return ret;
}

/* ---- transfers' records, released by retention ---------------------------------------------- */

#define FILE_EVENTS "('file-pulled', 'file-pushed', 'file-push-failed', 'file-refused')"
#define FILE_ACTIONS "('file-pull', 'file-push', 'file-push-failed', 'file-refused')"
#define EXPIRED "(expired)"

static bool key_is(const tt_audit_pair_t *p, const char *k) { return p->klen == strlen(k) && memcmp(p->key, k, p->klen) == 0; }

int store_retention_transfers(broker_store_t *s, int64_t cutoff_ms, uint32_t budget, int64_t *after,
                              store_release_audit_fn audit, void *ctx, uint32_t *events, int64_t *released,
                              bool *more) {
  *events = 0;
  *released = 0;
  *more = false;
  int ret = tx_begin(s);
  if (ret) return ret;
  idlist_t held = {0}, ids = {0};
  int64_t e = s->audit_last_id + 1, n = 0;
  uint8_t acc[32] = {0};
  ret = store_audit_gate(s, true);
  sqlite3_stmt *st = NULL;
  int rc = ret ? SQLITE_OK : sqlite3_prepare_v2(s->db,
      "DELETE FROM ticket_events WHERE id IN (SELECT id FROM ticket_events WHERE kind IN " FILE_EVENTS
      " AND ts_ms < ?1 AND ticket NOT IN " HELD " ORDER BY id LIMIT ?2)", -1, &st, NULL);
  if (ret == 0 && rc == SQLITE_OK) rc = sqlite3_bind_int64(st, 1, cutoff_ms);
  if (ret == 0 && rc == SQLITE_OK) rc = sqlite3_bind_int64(st, 2, budget);
  if (ret == 0 && rc == SQLITE_OK) rc = sqlite3_step(st);
  if (ret == 0 && rc == SQLITE_DONE) *events = (uint32_t)sqlite3_changes(s->db);
  else if (ret == 0) ret = sql_fail(s, "retention_transfer_events", rc);
  sqlite3_finalize(st);
  st = NULL;
  if (ret == 0) {
    sqlite3_stmt *h = NULL;
    rc = sqlite3_prepare_v2(s->db, "SELECT ticket FROM ticket_holds", -1, &h, NULL);
    while (ret == 0 && rc == SQLITE_OK && sqlite3_step(h) == SQLITE_ROW) ret = ids_add(&held, sqlite3_column_int64(h, 0));
    sqlite3_finalize(h);
    if (rc != SQLITE_OK) ret = sql_fail(s, "retention_transfer_holds", rc);
  }
  if (ret == 0) {
    rc = sqlite3_prepare_v2(s->db,
        "SELECT id FROM audit WHERE id > max(?1, (SELECT coalesce(max(entries), 0) FROM audit_base))"
        " AND ts_ms < ?2 AND action IN " FILE_ACTIONS " ORDER BY id LIMIT ?3", -1, &st, NULL);
    if (rc == SQLITE_OK) rc = sqlite3_bind_int64(st, 1, *after);
    if (rc == SQLITE_OK) rc = sqlite3_bind_int64(st, 2, cutoff_ms);
    if (rc == SQLITE_OK) rc = sqlite3_bind_int64(st, 3, budget);
    while (ret == 0 && rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
      ret = ids_add(&ids, sqlite3_column_int64(st, 0));
      rc = SQLITE_OK;
    }
    if (ret == 0 && rc != SQLITE_DONE && rc != SQLITE_OK) ret = sql_fail(s, "retention_transfer_audit", rc);
    sqlite3_finalize(st);
  }
  store_audit_t *a = ret == 0 ? malloc(sizeof(*a)) : NULL;
  if (ret == 0 && !a) ret = TT_ENOMEM;
  for (size_t i = 0; ret == 0 && i < ids.n; i++) {
    store_audit_filter_t f = {.after_id = ids.ids[i] - 1, .limit = 1};
    int lr = store_audit_list(s, &f, audit_cb, a);
    if (lr != 1) {
      ret = lr ? lr : TT_EIO;
      break;
    }
    *after = a->id;
    tt_audit_pair_t p[TT_AUDIT_VALUES_MAX];
    size_t np = 0;
    if (!split_ok(a, p, &np)) continue; /* the walk says so; retention leaves it */
    char *nv[TT_AUDIT_VALUES_MAX] = {NULL};
    size_t nl[TT_AUDIT_VALUES_MAX] = {0};
    bool on_hold = false, any = false;
    for (size_t k = 0; k < np; k++) {
      on_hold |= held_value(&held, p[k].val, p[k].vlen);
      if (k >= 2 && (key_is(&p[k], "path") || key_is(&p[k], "message")) &&
          !(p[k].vlen == strlen(EXPIRED) && memcmp(p[k].val, EXPIRED, p[k].vlen) == 0)) {
        nv[k] = (char *)EXPIRED;
        nl[k] = strlen(EXPIRED);
        any = true;
      }
    }
    if (any && !on_hold) ret = audit_rewrite(s, a, p, np, nv, nl, e, acc, &n);
  }
  free(a);
  *more = *events >= budget || ids.n >= budget;
  if (ret == 0) ret = store_audit_gate(s, false);
  if (ret == 0 && n > 0) {
    char values[TT_HEX_CAP(32)];
    tt_hex(values, sizeof values, acc, 32);
    int64_t got = 0;
    ret = audit(ctx, s, n, values, &got);
    if (ret == 0 && got != e) ret = TT_ESTATE;
  }
  *released = n;
  free(held.ids);
  free(ids.ids);
  if (ret == 0) ret = tx_commit(s);
  else tx_rollback(s);
  return ret;
}

/* ---- the whole erasure ---------------------------------------------------------------------- */

static const store_sql_t k_sql[] = {
    {ST_ERASE_AUDIT_IDS, "SELECT id FROM audit WHERE id > (SELECT coalesce(max(entries), 0) FROM audit_base)"
                         " AND (tt_names(actor, ?1) OR tt_names(target, ?1) OR tt_names(detail, ?1)) ORDER BY id"},
    {ST_ERASE_RELEASE, "UPDATE audit_values SET salt = NULL, erased = ?3 WHERE entry = ?1 AND n = ?2"},
    {ST_ERASE_AUDIT_TEXT, "UPDATE audit SET actor = ?2, target = ?3, detail = ?4 WHERE id = ?1"},
    {ST_ERASE_FILES, "SELECT id, path FROM recordings WHERE erased = ?1 AND path <> ''"},
    {ST_ERASE_FILE_GONE, "UPDATE recordings SET path = '' WHERE id = ?1"},
};

int store_prepare_erase_sql(broker_store_t *s) { return store_prepare(s, k_sql, sizeof k_sql / sizeof k_sql[0]); }

void store_erase_revocation_key(const char *name, char out[STORE_ERASE_REVOKED_CAP]) {
  uint8_t h[32], m[22 + STORE_NAME_MAX];
  size_t n = strnlen(name, STORE_NAME_MAX - 1);
  memcpy(m, "tether-revoked-person", 22); /* with its NUL: a domain of its own */
  memcpy(m + 22, name, n);
  SHA256(m, 22 + n, h);
  memcpy(out, "erased:", 7);
  tt_hex(out + 7, STORE_ERASE_REVOKED_CAP - 7, h, 24);
}

/* Why the person cannot be erased now, into x->refused; 0 when they can. */
static int refusals(broker_store_t *s, store_erase_t *x) {
  int64_t n = 0;
  int rc = scalar(s, "SELECT count(*) FROM devices WHERE id = ?1", x->name, &n);
  if (rc == 0 && n) {
    snprintf(x->refused, sizeof x->refused, "%.64s is a device, not a person", x->name);
    return TT_EINVAL;
  }
  if (rc == 0) rc = scalar(s, "SELECT count(*) FROM people p WHERE name = ?1 AND NOT EXISTS"
                              " (SELECT 1 FROM revocations r WHERE r.kind = 2 AND r.name = p.name)", x->name, &n);
  if (rc == 0 && n) {
    snprintf(x->refused, sizeof x->refused,
             "%.64s can still sign in: revoke them first (tether revoke person %.64s --reason ...)", x->name, x->name);
    return TT_EDENIED;
  }
  if (rc == 0) rc = scalar(s, "SELECT coalesce(min(id), 0) FROM sessions WHERE ended_ms = 0 AND"
                              " (tt_names(person, ?1) OR tt_names(consent_by, ?1))", x->name, &n);
  if (rc == 0 && n) {
    snprintf(x->refused, sizeof x->refused, "%.64s is in a session that is still open (S-%lld): end it first", x->name,
             (long long)n);
    return TT_EBUSY;
  }
  return rc;
}

static int held_tickets(broker_store_t *s, store_erase_t *x, idlist_t *held) {
  sqlite3_stmt *st = NULL;
  int rc = sqlite3_prepare_v2(s->db, "SELECT ticket FROM ticket_holds ORDER BY ticket", -1, &st, NULL), ret = 0;
  while (ret == 0 && rc == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW) ret = ids_add(held, sqlite3_column_int64(st, 0));
  sqlite3_finalize(st);
  if (rc != SQLITE_OK) return sql_fail(s, "erase_holds", rc);
  /* Which of them name the person: what the answer lists. */
  st = NULL;
  rc = sqlite3_prepare_v2(s->db,
                          "SELECT t.id FROM tickets t JOIN ticket_holds h ON h.ticket = t.id WHERE"
                          " tt_names(t.requester, ?1) OR tt_names(t.assignee, ?1) OR tt_names(t.created_by, ?1)"
                          " OR tt_names(t.summary, ?1) OR EXISTS(SELECT 1 FROM ticket_events e WHERE e.ticket = t.id"
                          " AND (tt_names(e.actor, ?1) OR tt_names(e.text, ?1))) OR EXISTS(SELECT 1 FROM sessions v"
                          " WHERE v.ticket = t.id AND (tt_names(v.person, ?1) OR tt_names(v.consent_by, ?1)))"
                          " ORDER BY t.id",
                          -1, &st, NULL);
  if (rc == SQLITE_OK) rc = sqlite3_bind_text(st, 1, x->name, -1, SQLITE_STATIC);
  while (ret == 0 && rc == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
    if (x->nheld_tickets < STORE_ERASE_HELD_MAX) x->held_tickets[x->nheld_tickets++] = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  return rc == SQLITE_OK ? ret : sql_fail(s, "erase_held", rc);
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
  idlist_t held = {0};
  int64_t e = s->audit_last_id + 1; /* the erasure's own entry, written last in this transaction */
  uint8_t acc[32] = {0};
  ret = refusals(s, x);
  if (ret == 0) ret = store_audit_gate(s, true);
  if (ret == 0) ret = held_tickets(s, x, &held);
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
  if (ret == 0) ret = erase_audit(s, x, &held, e, acc);
  if (ret == 0) ret = store_audit_gate(s, false);
  int64_t total = 0;
  for (int i = 0; i < STORE_EC_N; i++) total += x->changed[i] + x->held[i];
  if (ret == 0 && total == 0) {
    snprintf(x->refused, sizeof x->refused, "no record names %.64s", x->name);
    ret = TT_ENOTFOUND;
  }
  if (ret == 0 && !x->dry_run) { /* the erasure's entry commits to what it released */
    char values[TT_HEX_CAP(32)];
    tt_hex(values, sizeof values, acc, 32);
    int64_t got = 0;
    ret = audit(ctx, s, x, values, &got);
    if (ret == 0 && got != e) ret = TT_ESTATE; /* another entry came between: never a valid commitment */
    x->erasure = got;
  }
  free(held.ids);
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
  idlist_t ids = {0};
  char (*paths)[512] = NULL;
  sqlite3_stmt *st = s->st[ST_ERASE_FILES];
  int rc = SQLITE_OK, ret = 0;
  bind_i64(st, 1, erasure, &rc);
  while (ret == 0 && (rc == SQLITE_OK || rc == SQLITE_ROW)) {
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) break;
    if ((ret = ids_add(&ids, sqlite3_column_int64(st, 0))) != 0) break;
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
  if (ret == 0) ret = tx_begin(s);
  for (size_t i = 0; ret == 0 && i < ids.n; i++) {
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
  if (ret == 0) ret = tx_commit(s);
  else if (s->tx_depth) tx_rollback(s);
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
