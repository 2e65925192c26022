/* The knowledge base: articles (KB-<id>), the checks each is the fix for, the tickets each
 * solved, and their full-text index (SQLite FTS5), written together in one transaction. */
#include "internal.h"

/* The index weighs a word in the title this many times one in the body (bm25's weights). */
#define KB_TITLE_WEIGHT "10.0"
#define KB_BODY_WEIGHT "1.0"
/* Words one search may hold: a 256-byte query has at most 128 of one letter and a space;
 * what unicode61 makes of multi-byte letters never makes more words than bytes. */
#define KB_WORDS_MAX STORE_KB_QUERY_MAX
/* The FTS5 expression of a query: each word quoted ("" for a quote inside, which unicode61
 * never leaves in a word), joined by OR. Folding (ẞ -> ss) may lengthen a word, so room for
 * four times the query, and the quotes and ORs of every word. */
#define KB_EXPR_MAX (4u * STORE_KB_QUERY_MAX * 2u + 6u * KB_WORDS_MAX + 1u)

_Static_assert(STORE_KB_TITLE_MAX == 256u, "migration 12's title CHECK says 256 bytes");
_Static_assert(STORE_KB_BODY_MAX == 65536u, "migration 12's body CHECK says 65536 bytes");
_Static_assert(STORE_NAME_MAX == 65u, "migration 12's name CHECKs say 64 bytes");
_Static_assert(STORE_KB_CHECK_MAX == 63u, "migration 12's check name CHECK says 63 bytes");

struct store_kb_s {
  fts5_api *api;
  fts5_tokenizer tok;
  Fts5Tokenizer *inst; /* unicode61 remove_diacritics 2: the index's own split, before porter */
};

#define KB_SOLVED "(SELECT count(*) FROM kb_links l WHERE l.article = a.id)"

static const store_sql_t k_sql[] = {
  {ST_KB_INSERT, "INSERT INTO kb_articles(title, body, author, created_ms, updated_ms, updated_by)"
      " VALUES(?1, ?2, ?3, ?4, ?4, ?3)"},
  {ST_KB_UPDATE, "UPDATE kb_articles SET title = ?2, body = ?3, updated_ms = ?4, updated_by = ?5 WHERE id = ?1"},
  {ST_KB_GET, "SELECT a.id, a.title, a.body, a.author, a.updated_by, a.created_ms, a.updated_ms, " KB_SOLVED
      " FROM kb_articles a WHERE a.id = ?1"},
  {ST_KB_TITLE, "SELECT title FROM kb_articles WHERE id = ?1"},
  /* External content: the index is told what it held (the row as it was) to forget it. */
  {ST_KB_FTS_DEL, "INSERT INTO kb_fts(kb_fts, rowid, title, body)"
      " SELECT 'delete', id, title, body FROM kb_articles WHERE id = ?1"},
  {ST_KB_FTS_ADD, "INSERT INTO kb_fts(rowid, title, body) SELECT id, title, body FROM kb_articles WHERE id = ?1"},
  {ST_KB_CHECKS_DEL, "DELETE FROM kb_checks WHERE article = ?1"},
  {ST_KB_CHECK_ADD, "INSERT INTO kb_checks(article, name) VALUES(?1, ?2)"},
  {ST_KB_CHECKS, "SELECT name FROM kb_checks WHERE article = ?1 ORDER BY name LIMIT ?2"},
  /* More of the words first (tt_kb_matched), then bm25: lower is better. */
  {ST_KB_SEARCH, "SELECT a.id, a.title, snippet(kb_fts, -1, '[', ']', '...', 16),"
      " bm25(kb_fts, " KB_TITLE_WEIGHT ", " KB_BODY_WEIGHT ") AS score, tt_kb_matched(kb_fts) AS matched, "
      KB_SOLVED " FROM kb_fts JOIN kb_articles a ON a.id = kb_fts.rowid"
      " WHERE kb_fts MATCH ?1 ORDER BY matched DESC, score, a.id LIMIT ?2"},
  {ST_KB_LINK, "INSERT INTO kb_links(ticket, article, linked_by, linked_ms) VALUES(?1, ?2, ?3, ?4)"},
  {ST_KB_UNLINK, "DELETE FROM kb_links WHERE ticket = ?1 AND article = ?2"},
  {ST_KB_LINKS_OF_TICKET, "SELECT count(*) FROM kb_links WHERE ticket = ?1"},
  {ST_KB_OF_TICKET, "SELECT a.id, a.title, '', 0.0, 0, " KB_SOLVED " FROM kb_links k"
      " JOIN kb_articles a ON a.id = k.article WHERE k.ticket = ?1 ORDER BY k.linked_ms, k.article LIMIT ?2"},
  {ST_KB_OF_CHECK, "SELECT a.id, a.title, '', 0.0, 0, " KB_SOLVED " AS solved FROM kb_checks c"
      " JOIN kb_articles a ON a.id = c.article WHERE c.name = ?1 ORDER BY solved DESC, a.id LIMIT ?2"},
};

/* ---- FTS5: the ranking function and the query's words ------------------------------------ */

/* tt_kb_matched(kb_fts): how many of the query's phrases (its distinct words) the row holds,
 * so that an article with every word ranks above one with some, whatever bm25 says. */
static void kb_matched(const Fts5ExtensionApi *api, Fts5Context *fts, sqlite3_context *ctx, int nval,
                       sqlite3_value **val) {
  (void)nval;
  (void)val;
  int n = api->xPhraseCount(fts), m = 0;
  for (int i = 0; i < n; i++) {
    Fts5PhraseIter it;
    int col = -1, off = 0;
    int rc = api->xPhraseFirst(fts, i, &it, &col, &off);
    if (rc != SQLITE_OK) {
      sqlite3_result_error_code(ctx, rc);
      return;
    }
    if (col >= 0) m++;
  }
  sqlite3_result_int(ctx, m);
}

static fts5_api *fts5_of(sqlite3 *db) {
  fts5_api *api = NULL;
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(db, "SELECT fts5(?1)", -1, &st, NULL) != SQLITE_OK) return NULL;
  if (sqlite3_bind_pointer(st, 1, (void *)&api, "fts5_api_ptr", NULL) == SQLITE_OK) (void)sqlite3_step(st);
  sqlite3_finalize(st);
  return api;
}

int store_prepare_kb(broker_store_t *s) {
  struct store_kb_s *k = calloc(1, sizeof *k);
  if (k == NULL) return TT_ENOMEM;
  s->kb = k;
  k->api = fts5_of(s->db);
  if (k->api == NULL || k->api->iVersion < 2) {
    TT_ERROR(MOD, "this SQLite has no FTS5", "err=\"%s\"", sqlite3_errmsg(s->db));
    return TT_EIO;
  }
  if (k->api->xCreateFunction(k->api, "tt_kb_matched", NULL, kb_matched, NULL) != SQLITE_OK) {
    TT_ERROR(MOD, "cannot register the knowledge base's ranking", "err=\"%s\"", sqlite3_errmsg(s->db));
    return TT_EIO;
  }
  void *ud = NULL;
  const char *args[] = {"remove_diacritics", "2"};
  if (k->api->xFindTokenizer(k->api, "unicode61", &ud, &k->tok) != SQLITE_OK ||
      k->tok.xCreate(ud, args, 2, &k->inst) != SQLITE_OK) {
    k->inst = NULL;
    TT_ERROR(MOD, "cannot make the knowledge base's tokenizer", "err=\"%s\"", sqlite3_errmsg(s->db));
    return TT_EIO;
  }
  return store_prepare(s, k_sql, sizeof k_sql / sizeof k_sql[0]);
}

void store_kb_close(broker_store_t *s) {
  if (s->kb == NULL) return;
  if (s->kb->inst != NULL) s->kb->tok.xDelete(s->kb->inst);
  free(s->kb);
  s->kb = NULL;
}

typedef struct {
  char expr[KB_EXPR_MAX];
  size_t len;
  size_t words;
  size_t off[KB_WORDS_MAX], wlen[KB_WORDS_MAX]; /* each quoted word's place in expr */
  bool overflow;
} kb_expr_t;

/* One word as the index would hold it (lower case, diacritics gone, before porter, which
 * runs again on the quoted word as on the text): quoted, a quote inside doubled, so that
 * nothing a person types is ever read as FTS5 syntax. A word given twice counts once. */
static int expr_word(void *ctx, int flags, const char *tok, int n, int start, int end) {
  (void)start;
  (void)end;
  kb_expr_t *e = ctx;
  if ((flags & FTS5_TOKEN_COLOCATED) != 0 || n <= 0 || e->overflow) return SQLITE_OK;
  char word[2u * KB_EXPR_MAX / 4u];
  size_t q = 0;
  word[q++] = '"';
  for (int i = 0; i < n && q + 3 < sizeof word; i++) {
    if (tok[i] == '"') word[q++] = '"';
    word[q++] = tok[i];
  }
  if (q + 2 >= sizeof word) {
    e->overflow = true;
    return SQLITE_OK;
  }
  word[q++] = '"';
  for (size_t w = 0; w < e->words; w++)
    if (e->wlen[w] == q && memcmp(e->expr + e->off[w], word, q) == 0) return SQLITE_OK;
  size_t sep = e->words > 0 ? 4 : 0;
  if (e->words >= KB_WORDS_MAX || e->len + sep + q >= sizeof e->expr) {
    e->overflow = true;
    return SQLITE_OK;
  }
  memcpy(e->expr + e->len, " OR ", sep);
  e->len += sep;
  e->off[e->words] = e->len;
  e->wlen[e->words] = q;
  e->words++;
  memcpy(e->expr + e->len, word, q);
  e->len += q;
  e->expr[e->len] = '\0';
  return SQLITE_OK;
}

static int kb_expr(broker_store_t *s, const char *query, kb_expr_t *e) {
  size_t n = strnlen(query, STORE_KB_QUERY_MAX + 1);
  if (n > STORE_KB_QUERY_MAX) return TT_ETOOBIG;
  e->len = 0;
  e->words = 0;
  e->overflow = false;
  e->expr[0] = '\0';
  struct store_kb_s *k = s->kb;
  int rc = k->tok.xTokenize(k->inst, e, FTS5_TOKENIZE_QUERY, query, (int)n, expr_word);
  if (rc != SQLITE_OK) return sql_fail(s, "kb_tokenize", rc);
  if (e->overflow) return TT_ETOOBIG;
  return e->words == 0 ? TT_EINVAL : 0;
}

/* ---- checks on what is written ------------------------------------------------------------ */

bool store_kb_check_name_ok(const char *name) {
  size_t n = name != NULL ? strnlen(name, STORE_KB_CHECK_MAX + 1) : 0;
  if (n == 0 || n > STORE_KB_CHECK_MAX) return false;
  for (size_t i = 0; i < n; i++) {
    char c = name[i];
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) return false;
  }
  return true;
}

/* UTF-8 with no NUL, DEL or C0 control but those a multi-line text holds. */
static bool kb_text_ok(const char *p, size_t len, bool multiline) {
  for (size_t i = 0; i < len;) {
    uint32_t cp;
    size_t k = tt_utf8_decode((const uint8_t *)p + i, len - i, &cp);
    if (k == 0 || cp == 0x7f) return false;
    if (cp < 0x20 && !(multiline && (cp == '\t' || cp == '\n' || cp == '\r'))) return false;
    i += k;
  }
  return true;
}

bool store_kb_body_ok(const char *body, size_t len) {
  return body != NULL && len > 0 && len <= STORE_KB_BODY_MAX && kb_text_ok(body, len, true);
}

static int article_check(const store_kb_article_t *a, const char *by) {
  if (by == NULL || by[0] == '\0') return TT_EINVAL;
  if (strlen(by) >= STORE_NAME_MAX) return TT_ETOOBIG;
  size_t tn = strnlen(a->title, sizeof a->title);
  if (tn == sizeof a->title) return TT_ETOOBIG;
  if (tn == 0 || !kb_text_ok(a->title, tn, false)) return TT_EINVAL;
  if (a->body_len > STORE_KB_BODY_MAX) return TT_ETOOBIG;
  if (!store_kb_body_ok(a->body, a->body_len)) return TT_EINVAL;
  if (a->nchecks > STORE_KB_CHECKS_MAX) return TT_EINVAL;
  for (size_t i = 0; i < a->nchecks; i++) {
    if (!store_kb_check_name_ok(a->checks[i])) return TT_EINVAL;
    for (size_t j = 0; j < i; j++)
      if (strcmp(a->checks[i], a->checks[j]) == 0) return TT_EINVAL;
  }
  return 0;
}

/* ---- articles ------------------------------------------------------------------------------ */

static int run_id(broker_store_t *s, store_stmt_t which, int64_t id, const char *op) {
  sqlite3_stmt *st = s->st[which];
  int rc = SQLITE_OK;
  bind_i64(st, 1, id, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  done(st);
  return rc == SQLITE_DONE ? 0 : constraint_fail(s, op, rc);
}

/* The article's checks, in name order; a store holding more than the limit (an edit by hand)
 * shows the first ones. */
static int checks_of(broker_store_t *s, int64_t id, char (*out)[STORE_KB_CHECK_MAX + 1], size_t *n) {
  sqlite3_stmt *st = s->st[ST_KB_CHECKS];
  int rc = SQLITE_OK;
  *n = 0;
  bind_i64(st, 1, id, &rc);
  bind_i64(st, 2, STORE_KB_CHECKS_MAX, &rc);
  while (rc == SQLITE_OK || rc == SQLITE_ROW) {
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) break;
    col_text(st, 0, out[*n], STORE_KB_CHECK_MAX + 1);
    (*n)++;
  }
  done(st);
  return rc == SQLITE_DONE ? 0 : sql_fail(s, "kb_checks", rc);
}

/* The row's fields but its body; body and its length when asked (valid until st is reset). */
static int article_from_row(broker_store_t *s, sqlite3_stmt *st, store_kb_article_t *a) {
  int64_t id = a->id;
  memset(a, 0, sizeof *a);
  a->id = sqlite3_column_int64(st, 0);
  col_text(st, 1, a->title, sizeof a->title);
  a->body = (const char *)sqlite3_column_text(st, 2);
  int n = sqlite3_column_bytes(st, 2);
  a->body_len = a->body != NULL && n > 0 ? (size_t)n : 0;
  col_text(st, 3, a->author, sizeof a->author);
  col_text(st, 4, a->updated_by, sizeof a->updated_by);
  a->created_ms = sqlite3_column_int64(st, 5);
  a->updated_ms = sqlite3_column_int64(st, 6);
  int64_t solved = sqlite3_column_int64(st, 7);
  a->solved = solved < 0 ? 0 : solved > UINT32_MAX ? UINT32_MAX : (uint32_t)solved;
  /* The schema bounds the body; a file edited past it is damage, not an article. */
  if (a->body == NULL || a->body_len == 0 || a->body_len > STORE_KB_BODY_MAX || a->id != id) {
    TT_ERROR(MOD, "knowledge base article damaged", "id=%lld bytes=%zu", (long long)id, a->body_len);
    return TT_EIO;
  }
  return 0;
}

/* Read KB-id into a (its body valid while ST_KB_GET stays on the row: the caller resets it). */
static int article_read(broker_store_t *s, int64_t id, store_kb_article_t *a) {
  sqlite3_stmt *st = s->st[ST_KB_GET];
  int rc = SQLITE_OK;
  bind_i64(st, 1, id, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  if (rc == SQLITE_DONE) return TT_ENOTFOUND;
  if (rc != SQLITE_ROW) return sql_fail(s, "kb_get", rc);
  a->id = id;
  int ret = article_from_row(s, st, a);
  if (ret == 0) ret = checks_of(s, id, a->checks, &a->nchecks);
  return ret;
}

int store_kb_put(broker_store_t *s, store_kb_article_t *a, const char *by, int64_t now_ms) {
  int ret = article_check(a, by);
  if (ret != 0) return ret;
  if (a->id < 0) return TT_ENOTFOUND;
  ret = tx_begin(s);
  if (ret != 0) return ret;
  int64_t id = a->id;
  sqlite3_stmt *st;
  int rc = SQLITE_OK;
  if (id == 0) {
    st = s->st[ST_KB_INSERT];
    bind_text(st, 1, a->title, &rc);
    if (rc == SQLITE_OK) rc = sqlite3_bind_text(st, 2, a->body, (int)a->body_len, SQLITE_STATIC);
    bind_text(st, 3, by, &rc);
    bind_i64(st, 4, now_ms, &rc);
    if (rc == SQLITE_OK) rc = sqlite3_step(st);
    done(st);
    if (rc != SQLITE_DONE) ret = constraint_fail(s, "kb_add", rc);
    else id = (int64_t)sqlite3_last_insert_rowid(s->db);
  } else {
    /* The index forgets the old text before the row changes: it reads it from the row. */
    ret = run_id(s, ST_KB_FTS_DEL, id, "kb_fts_delete");
    if (ret == 0) {
      st = s->st[ST_KB_UPDATE];
      bind_i64(st, 1, id, &rc);
      bind_text(st, 2, a->title, &rc);
      if (rc == SQLITE_OK) rc = sqlite3_bind_text(st, 3, a->body, (int)a->body_len, SQLITE_STATIC);
      bind_i64(st, 4, now_ms, &rc);
      bind_text(st, 5, by, &rc);
      if (rc == SQLITE_OK) rc = sqlite3_step(st);
      done(st);
      if (rc != SQLITE_DONE) ret = constraint_fail(s, "kb_update", rc);
      else if (sqlite3_changes(s->db) == 0) ret = TT_ENOTFOUND;
    }
    if (ret == 0) ret = run_id(s, ST_KB_CHECKS_DEL, id, "kb_checks_delete");
  }
  if (ret == 0) ret = run_id(s, ST_KB_FTS_ADD, id, "kb_fts_add");
  for (size_t i = 0; ret == 0 && i < a->nchecks; i++) {
    st = s->st[ST_KB_CHECK_ADD];
    rc = SQLITE_OK;
    bind_i64(st, 1, id, &rc);
    bind_text(st, 2, a->checks[i], &rc);
    if (rc == SQLITE_OK) rc = sqlite3_step(st);
    done(st);
    if (rc != SQLITE_DONE) ret = constraint_fail(s, "kb_check_add", rc);
  }
  /* What was stored, as a show would give it (author and dates of an older article). */
  store_kb_article_t got = {.id = 0};
  if (ret == 0) ret = article_read(s, id, &got);
  done(s->st[ST_KB_GET]);
  if (ret == 0) ret = tx_commit(s);
  if (ret != 0) {
    tx_rollback(s);
    return ret;
  }
  a->id = id;
  memcpy(a->author, got.author, sizeof a->author);
  memcpy(a->updated_by, got.updated_by, sizeof a->updated_by);
  a->created_ms = got.created_ms;
  a->updated_ms = got.updated_ms;
  a->solved = got.solved;
  return 0;
}

int store_kb_get(broker_store_t *s, int64_t id, store_kb_article_cb cb, void *ctx) {
  store_kb_article_t a;
  int ret = article_read(s, id, &a);
  if (ret == 0) ret = cb(ctx, &a);
  done(s->st[ST_KB_GET]);
  return ret;
}

int store_kb_title(broker_store_t *s, int64_t id, char *title, size_t cap) {
  title[0] = '\0';
  sqlite3_stmt *st = s->st[ST_KB_TITLE];
  int rc = SQLITE_OK;
  bind_i64(st, 1, id, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  int ret = 0;
  if (rc == SQLITE_ROW) col_text(st, 0, title, cap);
  else if (rc == SQLITE_DONE) ret = TT_ENOTFOUND;
  else ret = sql_fail(s, "kb_title", rc);
  done(st);
  return ret;
}

/* ---- hits: search, a ticket's articles, a check's ----------------------------------------- */

/* snippet() keeps the body's line breaks and tabs: one line for a listing, cut to fit. */
static void snippet_line(char *dst, size_t cap, const unsigned char *src, size_t n) {
  size_t o = 0;
  bool space = false;
  for (size_t i = 0; i < n && o + 1 < cap; i++) {
    unsigned char c = src[i];
    if (c == '\n' || c == '\r' || c == '\t' || c == ' ') {
      space = o > 0;
      continue;
    }
    if (space && o + 2 < cap) dst[o++] = ' ';
    space = false;
    dst[o++] = (char)c;
  }
  /* Never end inside a character. */
  while (o > 0 && ((unsigned char)dst[o - 1] & 0x80) != 0) {
    size_t start = o - 1;
    while (start > 0 && ((unsigned char)dst[start] & 0xC0) == 0x80) start--;
    uint32_t cp;
    if (tt_utf8_decode((const uint8_t *)dst + start, o - start, &cp) == o - start) break;
    o = start;
  }
  dst[o] = '\0';
}

/* Walk a statement of hit rows (id, title, snippet, score, matched, solved) whose parameters
 * are bound, then add each hit's checks, then call cb: the statement is done before cb runs,
 * so cb may use the store. */
static int hits_walk(broker_store_t *s, sqlite3_stmt *st, int rc, uint32_t cap, store_kb_hit_cb cb, void *ctx,
                     const char *op) {
  store_kb_hit_t *h = calloc(cap ? cap : 1, sizeof *h);
  if (h == NULL) {
    done(st);
    return TT_ENOMEM;
  }
  uint32_t n = 0;
  while ((rc == SQLITE_OK || rc == SQLITE_ROW) && n < cap) {
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) break;
    store_kb_hit_t *x = &h[n++];
    x->id = sqlite3_column_int64(st, 0);
    col_text(st, 1, x->title, sizeof x->title);
    const unsigned char *snip = sqlite3_column_text(st, 2);
    int sn = sqlite3_column_bytes(st, 2);
    if (snip != NULL && sn > 0) snippet_line(x->snippet, sizeof x->snippet, snip, (size_t)sn);
    x->score = sqlite3_column_double(st, 3);
    int64_t m = sqlite3_column_int64(st, 4), solved = sqlite3_column_int64(st, 5);
    x->matched = m < 0 ? 0 : m > UINT32_MAX ? UINT32_MAX : (uint32_t)m;
    x->solved = solved < 0 ? 0 : solved > UINT32_MAX ? UINT32_MAX : (uint32_t)solved;
  }
  done(st);
  int ret = 0;
  if (rc != SQLITE_DONE && rc != SQLITE_ROW && rc != SQLITE_OK) ret = sql_fail(s, op, rc);
  for (uint32_t i = 0; ret == 0 && i < n; i++) ret = checks_of(s, h[i].id, h[i].checks, &h[i].nchecks);
  for (uint32_t i = 0; ret == 0 && i < n; i++) ret = cb(ctx, &h[i]);
  free(h);
  return ret;
}

int store_kb_search(broker_store_t *s, const char *query, uint32_t limit, store_kb_hit_cb cb, void *ctx) {
  kb_expr_t *e = malloc(sizeof *e);
  if (e == NULL) return TT_ENOMEM;
  int ret = kb_expr(s, query, e);
  if (ret != 0) {
    free(e);
    return ret;
  }
  uint32_t cap = limit == 0 || limit > STORE_KB_HITS_MAX ? STORE_KB_HITS_MAX : limit;
  sqlite3_stmt *st = s->st[ST_KB_SEARCH];
  int rc = SQLITE_OK;
  bind_text(st, 1, e->expr, &rc);
  bind_i64(st, 2, cap, &rc);
  ret = hits_walk(s, st, rc, cap, cb, ctx, "kb_search");
  free(e);
  return ret;
}

int store_kb_for_ticket(broker_store_t *s, int64_t ticket, store_kb_hit_cb cb, void *ctx) {
  sqlite3_stmt *st = s->st[ST_KB_OF_TICKET];
  int rc = SQLITE_OK;
  bind_i64(st, 1, ticket, &rc);
  bind_i64(st, 2, STORE_KB_LINKS_MAX, &rc);
  return hits_walk(s, st, rc, STORE_KB_LINKS_MAX, cb, ctx, "kb_for_ticket");
}

int store_kb_for_check(broker_store_t *s, const char *check, store_kb_hit_cb cb, void *ctx) {
  if (!store_kb_check_name_ok(check)) return TT_EINVAL;
  sqlite3_stmt *st = s->st[ST_KB_OF_CHECK];
  int rc = SQLITE_OK;
  bind_text(st, 1, check, &rc);
  bind_i64(st, 2, STORE_KB_HITS_MAX, &rc);
  return hits_walk(s, st, rc, STORE_KB_HITS_MAX, cb, ctx, "kb_for_check");
}

/* ---- links -------------------------------------------------------------------------------- */

int store_kb_link(broker_store_t *s, int64_t ticket, int64_t article, const char *by, int64_t now_ms) {
  if (by == NULL || by[0] == '\0') return TT_EINVAL;
  if (strlen(by) >= STORE_NAME_MAX) return TT_ETOOBIG;
  char title[8];
  int ret = store_kb_title(s, article, title, sizeof title);
  if (ret != 0) return ret;
  ret = tx_begin(s);
  if (ret != 0) return ret;
  sqlite3_stmt *st = s->st[ST_KB_LINK];
  int rc = SQLITE_OK;
  bind_i64(st, 1, ticket, &rc);
  bind_i64(st, 2, article, &rc);
  bind_text(st, 3, by, &rc);
  bind_i64(st, 4, now_ms, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  done(st);
  if (rc == SQLITE_CONSTRAINT_PRIMARYKEY) ret = -EEXIST;
  else if (rc != SQLITE_DONE) ret = constraint_fail(s, "kb_link", rc);
  /* Counted with the new link in: past the limit it is undone. */
  if (ret == 0) {
    st = s->st[ST_KB_LINKS_OF_TICKET];
    rc = SQLITE_OK;
    bind_i64(st, 1, ticket, &rc);
    if (rc == SQLITE_OK) rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) ret = sql_fail(s, "kb_links_count", rc);
    else if (sqlite3_column_int64(st, 0) > (int64_t)STORE_KB_LINKS_MAX) ret = TT_ETOOBIG;
    done(st);
  }
  if (ret == 0) ret = tx_commit(s);
  if (ret != 0) tx_rollback(s);
  return ret;
}

int store_kb_unlink(broker_store_t *s, int64_t ticket, int64_t article) {
  sqlite3_stmt *st = s->st[ST_KB_UNLINK];
  int rc = SQLITE_OK;
  bind_i64(st, 1, ticket, &rc);
  bind_i64(st, 2, article, &rc);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  done(st);
  if (rc != SQLITE_DONE) return sql_fail(s, "kb_unlink", rc);
  return sqlite3_changes(s->db) == 0 ? TT_ENOTFOUND : 0;
}
