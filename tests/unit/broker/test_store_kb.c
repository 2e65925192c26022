/* broker/store/kb.c: the knowledge base over the fixture corpus (tests/fixtures/kb/): the
 * right article ranks first for a search, words are folded and stemmed as the index does, a
 * query full of FTS5 syntax is read as words, an edit re-indexes, links count the tickets an
 * article solved, and people carry a support level. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "store.h"

#define CORPUS_MAX 16
#define FILE_MAX (TT_KB_BODY_MAX + 1)

typedef struct {
  char file[64];
  char title[STORE_KB_TITLE_MAX + 1];
  char checks[STORE_KB_CHECKS_MAX][STORE_KB_CHECK_MAX + 1];
  size_t nchecks;
  int64_t id;
} article_t;

typedef struct {
  char base[PATH_MAX];
  char dir[PATH_MAX];
  char db[PATH_MAX];
  broker_store_t *s;
  article_t a[CORPUS_MAX];
  size_t n;
} fx_t;

static int rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st;
  (void)flag;
  (void)ftw;
  return remove(path);
}

/* A fixture file, whole, at most FILE_MAX bytes; NULL when missing or too big. */
static char *slurp(const char *name, size_t *len) {
  char path[PATH_MAX];
  snprintf(path, sizeof path, "%s/kb/%s", TT_FIXTURES, name);
  FILE *f = fopen(path, "rb");
  if (f == NULL) return NULL;
  char *buf = malloc(FILE_MAX + 1);
  size_t n = buf != NULL ? fread(buf, 1, FILE_MAX + 1, f) : 0;
  fclose(f);
  if (buf == NULL || n == 0 || n > FILE_MAX) {
    free(buf);
    return NULL;
  }
  buf[n] = '\0';
  *len = n;
  return buf;
}

/* index.tsv: file, title, checks ("-": none); comments and lines of another shape skipped. */
static void load_index(fx_t *fx) {
  size_t len = 0;
  char *text = slurp("index.tsv", &len);
  assert_non_null(text);
  for (char *line = strtok(text, "\n"); line != NULL; line = strtok(NULL, "\n")) {
    if (line[0] == '#' || fx->n >= CORPUS_MAX) continue;
    char *f1 = strchr(line, '\t');
    char *f2 = f1 != NULL ? strchr(f1 + 1, '\t') : NULL;
    if (f2 == NULL) continue;
    *f1++ = '\0';
    *f2++ = '\0';
    article_t *a = &fx->a[fx->n];
    memset(a, 0, sizeof *a);
    if (strlen(line) >= sizeof a->file || strlen(f1) >= sizeof a->title) continue;
    strcpy(a->file, line);
    strcpy(a->title, f1);
    if (strcmp(f2, "-") != 0) {
      for (char *c = f2; c != NULL && *c && a->nchecks < STORE_KB_CHECKS_MAX;) {
        char *comma = strchr(c, ',');
        size_t k = comma != NULL ? (size_t)(comma - c) : strlen(c);
        if (k > 0 && k <= STORE_KB_CHECK_MAX) {
          memcpy(a->checks[a->nchecks], c, k);
          a->checks[a->nchecks++][k] = '\0';
        }
        c = comma != NULL ? comma + 1 : NULL;
      }
    }
    fx->n++;
  }
  free(text);
  assert_true(fx->n >= 8);
}

static void add_corpus(fx_t *fx) {
  for (size_t i = 0; i < fx->n; i++) {
    article_t *x = &fx->a[i];
    store_kb_article_t a;
    memset(&a, 0, sizeof a);
    snprintf(a.title, sizeof a.title, "%s", x->title);
    size_t len = 0;
    char *body = slurp(x->file, &len);
    assert_non_null(body);
    a.body = body;
    a.body_len = len;
    memcpy(a.checks, x->checks, sizeof a.checks);
    a.nchecks = x->nchecks;
    assert_int_equal(store_kb_put(fx->s, &a, "boss", 1000 + (int64_t)i), 0);
    assert_true(a.id > 0);
    assert_string_equal(a.author, "boss");
    assert_int_equal(a.created_ms, 1000 + (int64_t)i);
    assert_int_equal(a.solved, 0);
    x->id = a.id;
    free(body);
  }
}

static int setup(void **state) {
  fx_t *fx = calloc(1, sizeof *fx);
  if (fx == NULL) return -1;
  const char *tmp = getenv("TT_TEST_TMP");
  if (tmp == NULL || tmp[0] == '\0') tmp = "/tmp";
  snprintf(fx->base, sizeof fx->base, "%s/test_store_kb.XXXXXX", tmp);
  if (mkdtemp(fx->base) == NULL) {
    free(fx);
    return -1;
  }
  int n = snprintf(fx->dir, sizeof fx->dir, "%s/data", fx->base);
  int m = snprintf(fx->db, sizeof fx->db, "%s/data/broker.db", fx->base);
  char err[512];
  if (n < 0 || (size_t)n >= sizeof fx->dir || m < 0 || (size_t)m >= sizeof fx->db ||
      store_open(&fx->s, fx->dir, err, sizeof err) != 0) {
    nftw(fx->base, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    free(fx);
    return -1;
  }
  *state = fx;
  load_index(fx);
  add_corpus(fx);
  return 0;
}

static int teardown(void **state) {
  fx_t *fx = *state;
  store_close(fx->s);
  nftw(fx->base, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
  free(fx);
  return 0;
}

static int64_t id_of(const fx_t *fx, const char *file) {
  for (size_t i = 0; i < fx->n; i++)
    if (strcmp(fx->a[i].file, file) == 0) return fx->a[i].id;
  fail_msg("no fixture %s", file);
  return 0;
}

typedef struct {
  store_kb_hit_t h[STORE_KB_HITS_MAX + 1];
  size_t n;
} hits_t;

static int hits_cb(void *ctx, const store_kb_hit_t *h) {
  hits_t *x = ctx;
  assert_true(x->n <= STORE_KB_HITS_MAX);
  x->h[x->n++] = *h;
  return 0;
}

static int search(fx_t *fx, const char *q, hits_t *out) {
  memset(out, 0, sizeof *out);
  return store_kb_search(fx->s, q, 0, hits_cb, out);
}

static bool has_hit(const hits_t *x, int64_t id) {
  for (size_t i = 0; i < x->n; i++)
    if (x->h[i].id == id) return true;
  return false;
}

/* The FTS index agrees with the articles it indexes. */
static void index_intact(const fx_t *fx) {
  sqlite3 *db = NULL;
  assert_int_equal(sqlite3_open_v2(fx->db, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
  char *err = NULL;
  int rc = sqlite3_exec(db, "INSERT INTO kb_fts(kb_fts, rank) VALUES('integrity-check', 1)", NULL, NULL, &err);
  if (rc != SQLITE_OK) fail_msg("kb_fts integrity-check: %s", err ? err : "?");
  sqlite3_free(err);
  sqlite3_close(db);
}

/* ---- search ------------------------------------------------------------------------------ */

static void test_right_article_first(void **state) {
  fx_t *fx = *state;
  static const struct {
    const char *q, *file;
  } cases[] = {
      {"vpn drops", "vpn-drops.md"},
      {"disk full", "disk-full.md"},
      {"printer offline", "printer-offline.md"},
      {"certificate not yet valid", "clock-skew.md"},
      {"name resolution", "dns.md"},
      {"wifi slow meeting", "wifi-meeting-rooms.md"},
      {"boot takes minutes", "slow-boot.md"},
      {"journal vacuum", "disk-full.md"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    hits_t x;
    assert_int_equal(search(fx, cases[i].q, &x), 0);
    assert_true(x.n > 0);
    if (x.h[0].id != id_of(fx, cases[i].file))
      fail_msg("\"%s\": KB-%lld \"%s\" first, want %s", cases[i].q, (long long)x.h[0].id, x.h[0].title,
               cases[i].file);
  }
}

/* Every word ranks above some: "vpn drops" has the VPN article first, then the DNS one
 * (which says "VPN" and "drop"), then those holding one of the words: the Wi-Fi article
 * (drops) and the disk one (drop). */
static void test_some_words_still_show(void **state) {
  fx_t *fx = *state;
  hits_t x;
  assert_int_equal(search(fx, "vpn drops", &x), 0);
  assert_true(x.n >= 4);
  assert_int_equal(x.h[0].id, id_of(fx, "vpn-drops.md"));
  assert_int_equal(x.h[0].matched, 2);
  assert_int_equal(x.h[1].id, id_of(fx, "dns.md"));
  assert_int_equal(x.h[1].matched, 2);
  assert_true(has_hit(&x, id_of(fx, "wifi-meeting-rooms.md")));
  assert_true(has_hit(&x, id_of(fx, "disk-full.md")));
  for (size_t i = 1; i < x.n; i++) {
    assert_true(x.h[i].matched <= x.h[i - 1].matched);
    assert_true(x.h[i].matched < x.h[i - 1].matched || x.h[i].score >= x.h[i - 1].score);
  }
  assert_int_equal(x.h[x.n - 1].matched, 1);
  assert_string_equal(x.h[0].title, "VPN drops every few minutes");
  /* The context, on one line, with the words marked. */
  assert_non_null(strstr(x.h[0].snippet, "[VPN]"));
  assert_null(strchr(x.h[0].snippet, '\n'));
  /* A word no article holds does not hide those that hold the others. */
  assert_int_equal(search(fx, "vpn zyxwvut", &x), 0);
  assert_true(x.n >= 1);
  assert_int_equal(x.h[0].id, id_of(fx, "vpn-drops.md"));
  assert_int_equal(search(fx, "zyxwvut", &x), 0);
  assert_int_equal(x.n, 0);
}

/* As the index holds words: case folded, diacritics gone, English stems. */
static void test_words_folded_and_stemmed(void **state) {
  fx_t *fx = *state;
  hits_t x;
  assert_int_equal(search(fx, "RESUME upload", &x), 0);
  assert_int_equal(x.h[0].id, id_of(fx, "hr-portal-upload.md"));
  assert_int_equal(search(fx, "résumés", &x), 0);
  assert_int_equal(x.h[0].id, id_of(fx, "hr-portal-upload.md"));
  assert_int_equal(search(fx, "dropping tunnels", &x), 0);
  assert_int_equal(x.h[0].id, id_of(fx, "vpn-drops.md"));
  /* A word twice is one word. */
  assert_int_equal(search(fx, "vpn VPN Vpn", &x), 0);
  assert_int_equal(x.h[0].matched, 1);
}

/* FTS5's syntax in a query is words and separators, never an operator or an SQL error. */
static void test_hostile_query_is_words(void **state) {
  fx_t *fx = *state;
  /* The words are vpn and drops (and "title", which no article holds): the VPN article first. */
  static const char *const hostile[] = {
      "\"vpn\" NEAR(drops) -: *", "vpn\" \"* drops", "title:vpn drops*", "^vpn + {drops} :", "vpn\\\"drops\"\"",
  };
  for (size_t i = 0; i < sizeof hostile / sizeof hostile[0]; i++) {
    hits_t x;
    int rc = search(fx, hostile[i], &x);
    if (rc != 0) fail_msg("\"%s\": %s", hostile[i], tt_strerror(rc));
    assert_true(x.n > 0);
    if (x.h[0].id != id_of(fx, "vpn-drops.md"))
      fail_msg("\"%s\": KB-%lld first", hostile[i], (long long)x.h[0].id);
  }
  /* SQL and FTS5 operators among the words: answered, the VPN article among the hits. */
  static const char *const words[] = {
      "vpn\" OR \"*",
      "NOT vpn AND drops",
      "vpn'); DROP TABLE kb_articles; --",
  };
  for (size_t i = 0; i < sizeof words / sizeof words[0]; i++) {
    hits_t x;
    int rc = search(fx, words[i], &x);
    if (rc != 0) fail_msg("\"%s\": %s", words[i], tt_strerror(rc));
    assert_true(has_hit(&x, id_of(fx, "vpn-drops.md")));
  }
  hits_t x;
  /* Every word counts, whatever surrounds it: answered, never an error. */
  assert_int_equal(search(fx, "\"vpn\" NEAR(drops, 2) -x: * column:body", &x), 0);
  assert_true(has_hit(&x, id_of(fx, "vpn-drops.md")));
  /* "near", "not", "and", "or" are words like any other. */
  assert_int_equal(search(fx, "NEAR", &x), 0);
  assert_int_equal(x.n, 0);
  /* No word at all: refused, not an empty answer. */
  assert_int_equal(search(fx, "", &x), TT_EINVAL);
  assert_int_equal(search(fx, "   ", &x), TT_EINVAL);
  assert_int_equal(search(fx, "\"*\" -: () ^ + {} \"\"", &x), TT_EINVAL);
  assert_int_equal(search(fx, "— … «»", &x), TT_EINVAL);
  char longq[STORE_KB_QUERY_MAX + 2];
  memset(longq, 'a', sizeof longq - 1);
  longq[sizeof longq - 1] = '\0';
  assert_int_equal(search(fx, longq, &x), TT_ETOOBIG);
  longq[STORE_KB_QUERY_MAX] = '\0';
  assert_int_equal(search(fx, longq, &x), 0);
  /* A query of as many one-letter words as fit. */
  for (size_t i = 0; i < STORE_KB_QUERY_MAX; i++) longq[i] = i % 2 ? ' ' : (char)('a' + i % 26);
  longq[STORE_KB_QUERY_MAX] = '\0';
  assert_int_equal(search(fx, longq, &x), 0);
  index_intact(fx);
}

static void test_limit(void **state) {
  fx_t *fx = *state;
  hits_t x;
  memset(&x, 0, sizeof x);
  assert_int_equal(store_kb_search(fx->s, "the a fix", 2, hits_cb, &x), 0);
  assert_int_equal(x.n, 2);
  memset(&x, 0, sizeof x);
  assert_int_equal(store_kb_search(fx->s, "the a fix", 1000, hits_cb, &x), 0);
  assert_true(x.n <= STORE_KB_HITS_MAX);
}

/* ---- articles ---------------------------------------------------------------------------- */

typedef struct {
  store_kb_article_t a;
  char body[FILE_MAX + 1];
} got_t;

static int got_cb(void *ctx, const store_kb_article_t *a) {
  got_t *g = ctx;
  g->a = *a;
  assert_true(a->body_len <= FILE_MAX);
  memcpy(g->body, a->body, a->body_len);
  g->body[a->body_len] = '\0';
  g->a.body = g->body;
  return 0;
}

static void test_edit_reindexes(void **state) {
  fx_t *fx = *state;
  int64_t id = id_of(fx, "printer-offline.md");
  got_t *g = calloc(1, sizeof *g);
  assert_non_null(g);
  assert_int_equal(store_kb_get(fx->s, id, got_cb, g), 0);
  assert_string_equal(g->a.title, "Printer shows offline after a network change");
  assert_non_null(strstr(g->body, "lpadmin -p office"));
  assert_int_equal(g->a.nchecks, 0);

  store_kb_article_t a;
  memset(&a, 0, sizeof a);
  a.id = id;
  snprintf(a.title, sizeof a.title, "Label printer jams");
  const char *body = "The label printer in the warehouse jams on glossy rolls.\n";
  a.body = body;
  a.body_len = strlen(body);
  snprintf(a.checks[0], sizeof a.checks[0], "printer_queue");
  a.nchecks = 1;
  assert_int_equal(store_kb_put(fx->s, &a, "lead", 9000), 0);
  assert_int_equal(a.id, id);
  assert_string_equal(a.author, "boss"); /* the first writer stays the author */
  assert_string_equal(a.updated_by, "lead");
  assert_int_equal(a.updated_ms, 9000);

  hits_t x;
  assert_int_equal(search(fx, "cups lpadmin", &x), 0);
  assert_false(has_hit(&x, id));
  assert_int_equal(search(fx, "glossy jams", &x), 0);
  assert_int_equal(x.h[0].id, id);
  assert_int_equal(x.h[0].nchecks, 1);
  assert_string_equal(x.h[0].checks[0], "printer_queue");

  assert_int_equal(store_kb_get(fx->s, id, got_cb, g), 0);
  assert_string_equal(g->a.title, "Label printer jams");
  assert_string_equal(g->body, body);
  assert_int_equal(g->a.created_ms, a.created_ms);
  /* Replacing an article that does not exist changes nothing. */
  a.id = 999;
  assert_int_equal(store_kb_put(fx->s, &a, "lead", 9001), TT_ENOTFOUND);
  assert_int_equal(store_kb_get(fx->s, 999, got_cb, g), TT_ENOTFOUND);
  char title[8];
  assert_int_equal(store_kb_title(fx->s, 999, title, sizeof title), TT_ENOTFOUND);
  assert_int_equal(store_kb_title(fx->s, id, title, sizeof title), 0);
  assert_string_equal(title, "Label p");
  index_intact(fx);
  free(g);
}

static void test_refused_articles_write_nothing(void **state) {
  fx_t *fx = *state;
  char *big = malloc(STORE_KB_BODY_MAX + 2);
  assert_non_null(big);
  memset(big, 'x', STORE_KB_BODY_MAX + 1);
  big[STORE_KB_BODY_MAX + 1] = '\0';
  store_kb_article_t a;
  memset(&a, 0, sizeof a);
  snprintf(a.title, sizeof a.title, "A title");
  a.body = big;
  a.body_len = STORE_KB_BODY_MAX + 1;
  assert_int_equal(store_kb_put(fx->s, &a, "boss", 1), TT_ETOOBIG);
  a.body_len = STORE_KB_BODY_MAX; /* the limit itself is fine */
  assert_int_equal(store_kb_put(fx->s, &a, "boss", 1), 0);
  int64_t biggest = a.id;
  a.id = 0;
  const char *nul = "one\0two";
  a.body = nul;
  a.body_len = 7;
  assert_int_equal(store_kb_put(fx->s, &a, "boss", 1), TT_EINVAL);
  a.body = "bell \a here";
  a.body_len = strlen(a.body);
  assert_int_equal(store_kb_put(fx->s, &a, "boss", 1), TT_EINVAL);
  a.body = "bad \xc3\x28 utf-8";
  a.body_len = strlen(a.body);
  assert_int_equal(store_kb_put(fx->s, &a, "boss", 1), TT_EINVAL);
  a.body = "";
  a.body_len = 0;
  assert_int_equal(store_kb_put(fx->s, &a, "boss", 1), TT_EINVAL);
  a.body = "tabs\tand\r\nlines are fine\n";
  a.body_len = strlen(a.body);
  a.title[0] = '\0';
  assert_int_equal(store_kb_put(fx->s, &a, "boss", 1), TT_EINVAL);
  snprintf(a.title, sizeof a.title, "two\nlines");
  assert_int_equal(store_kb_put(fx->s, &a, "boss", 1), TT_EINVAL);
  memset(a.title, 'T', sizeof a.title); /* no NUL */
  assert_int_equal(store_kb_put(fx->s, &a, "boss", 1), TT_ETOOBIG);
  snprintf(a.title, sizeof a.title, "Fine");
  assert_int_equal(store_kb_put(fx->s, &a, "", 1), TT_EINVAL);
  snprintf(a.checks[0], sizeof a.checks[0], "Disk-Used");
  a.nchecks = 1;
  assert_int_equal(store_kb_put(fx->s, &a, "boss", 1), TT_EINVAL);
  snprintf(a.checks[0], sizeof a.checks[0], "disk_used");
  snprintf(a.checks[1], sizeof a.checks[1], "disk_used");
  a.nchecks = 2;
  assert_int_equal(store_kb_put(fx->s, &a, "boss", 1), TT_EINVAL);
  a.nchecks = STORE_KB_CHECKS_MAX + 1;
  assert_int_equal(store_kb_put(fx->s, &a, "boss", 1), TT_EINVAL);
  for (size_t i = 0; i < STORE_KB_CHECKS_MAX; i++) snprintf(a.checks[i], sizeof a.checks[i], "check_%zu", i);
  a.nchecks = STORE_KB_CHECKS_MAX;
  assert_int_equal(store_kb_put(fx->s, &a, "boss", 1), 0);
  assert_int_equal(a.id, biggest + 1);
  /* Ids are never reused, and nothing refused took one. */
  hits_t x;
  assert_int_equal(search(fx, "tabs lines", &x), 0);
  assert_int_equal(x.n, 1);
  assert_int_equal(x.h[0].nchecks, STORE_KB_CHECKS_MAX);
  assert_false(store_kb_body_ok("x", 0));
  assert_true(store_kb_check_name_ok("disk_used"));
  assert_false(store_kb_check_name_ok(""));
  assert_false(store_kb_check_name_ok("a b"));
  index_intact(fx);
  free(big);
}

/* ---- links and checks --------------------------------------------------------------------- */

static int64_t new_ticket(fx_t *fx) {
  store_device_t d;
  memset(&d, 0, sizeof d);
  snprintf(d.id, sizeof d.id, "dev1");
  int rc = store_device_add(fx->s, &d);
  assert_true(rc == 0 || rc == -EEXIST);
  store_ticket_t t;
  memset(&t, 0, sizeof t);
  snprintf(t.device, sizeof t.device, "dev1");
  snprintf(t.summary, sizeof t.summary, "it broke");
  assert_int_equal(store_ticket_add(fx->s, &t, "tech", 5), 0);
  return t.id;
}

static uint32_t solved(fx_t *fx, int64_t id) {
  got_t *g = calloc(1, sizeof *g);
  assert_non_null(g);
  assert_int_equal(store_kb_get(fx->s, id, got_cb, g), 0);
  uint32_t n = g->a.solved;
  free(g);
  return n;
}

static void test_links_count(void **state) {
  fx_t *fx = *state;
  int64_t t1 = new_ticket(fx), t2 = new_ticket(fx);
  int64_t vpn = id_of(fx, "vpn-drops.md"), dns = id_of(fx, "dns.md");
  assert_int_equal(store_kb_link(fx->s, t1, vpn, "tech", 10), 0);
  assert_int_equal(store_kb_link(fx->s, t1, vpn, "tech", 11), -EEXIST);
  assert_int_equal(store_kb_link(fx->s, t2, vpn, "tech", 12), 0);
  assert_int_equal(store_kb_link(fx->s, t1, dns, "boss", 13), 0);
  assert_int_equal(store_kb_link(fx->s, t1, 999, "tech", 14), TT_ENOTFOUND);
  assert_int_equal(store_kb_link(fx->s, 999, vpn, "tech", 14), TT_ENOTFOUND);
  assert_int_equal(store_kb_link(fx->s, t1, vpn, "", 14), TT_EINVAL);
  assert_int_equal(solved(fx, vpn), 2);
  assert_int_equal(solved(fx, dns), 1);

  hits_t x;
  memset(&x, 0, sizeof x);
  assert_int_equal(store_kb_for_ticket(fx->s, t1, hits_cb, &x), 0);
  assert_int_equal(x.n, 2);
  assert_int_equal(x.h[0].id, vpn); /* in the order linked */
  assert_int_equal(x.h[0].solved, 2);
  assert_int_equal(x.h[1].id, dns);
  assert_int_equal(search(fx, "vpn drops", &x), 0);
  assert_int_equal(x.h[0].solved, 2);

  assert_int_equal(store_kb_unlink(fx->s, t2, vpn), 0);
  assert_int_equal(store_kb_unlink(fx->s, t2, vpn), TT_ENOTFOUND);
  assert_int_equal(solved(fx, vpn), 1);

  /* A ticket links at most STORE_KB_LINKS_MAX articles: every one is shown with it. */
  int64_t t3 = new_ticket(fx);
  store_kb_article_t a;
  memset(&a, 0, sizeof a);
  a.body = "filler\n";
  a.body_len = 7;
  for (uint32_t i = 0; i < STORE_KB_LINKS_MAX; i++) {
    a.id = 0;
    snprintf(a.title, sizeof a.title, "Filler %u", i);
    assert_int_equal(store_kb_put(fx->s, &a, "boss", 20), 0);
    assert_int_equal(store_kb_link(fx->s, t3, a.id, "tech", 21), 0);
  }
  assert_int_equal(store_kb_link(fx->s, t3, vpn, "tech", 22), TT_ETOOBIG);
  assert_int_equal(solved(fx, vpn), 1);
  memset(&x, 0, sizeof x);
  assert_int_equal(store_kb_for_ticket(fx->s, t3, hits_cb, &x), 0);
  assert_int_equal(x.n, STORE_KB_LINKS_MAX);
}

static void test_articles_for_a_check(void **state) {
  fx_t *fx = *state;
  hits_t x;
  memset(&x, 0, sizeof x);
  assert_int_equal(store_kb_for_check(fx->s, "disk_used", hits_cb, &x), 0);
  assert_int_equal(x.n, 1);
  assert_int_equal(x.h[0].id, id_of(fx, "disk-full.md"));
  assert_int_equal(x.h[0].nchecks, 2);
  assert_string_equal(x.h[0].checks[0], "disk_used");
  assert_string_equal(x.h[0].checks[1], "inodes_used");
  memset(&x, 0, sizeof x);
  assert_int_equal(store_kb_for_check(fx->s, "no_such_check", hits_cb, &x), 0);
  assert_int_equal(x.n, 0);
  assert_int_equal(store_kb_for_check(fx->s, "Disk Used", hits_cb, &x), TT_EINVAL);
  /* The most solved first. */
  store_kb_article_t a;
  memset(&a, 0, sizeof a);
  snprintf(a.title, sizeof a.title, "Disk full again");
  a.body = "Look in /srv too.\n";
  a.body_len = strlen(a.body);
  snprintf(a.checks[0], sizeof a.checks[0], "disk_used");
  a.nchecks = 1;
  assert_int_equal(store_kb_put(fx->s, &a, "boss", 30), 0);
  assert_int_equal(store_kb_link(fx->s, new_ticket(fx), a.id, "tech", 31), 0);
  memset(&x, 0, sizeof x);
  assert_int_equal(store_kb_for_check(fx->s, "disk_used", hits_cb, &x), 0);
  assert_int_equal(x.n, 2);
  assert_int_equal(x.h[0].id, a.id);
  assert_int_equal(x.h[1].id, id_of(fx, "disk-full.md"));
}

/* ---- people's level ------------------------------------------------------------------------ */

static void test_person_level(void **state) {
  fx_t *fx = *state;
  store_person_t p;
  memset(&p, 0, sizeof p);
  snprintf(p.name, sizeof p.name, "sam");
  p.role = STORE_PERSON_TECHNICIAN;
  assert_int_equal(store_person_add(fx->s, &p), 0);
  snprintf(p.name, sizeof p.name, "kim");
  p.level = 3;
  assert_int_equal(store_person_add(fx->s, &p), 0);
  snprintf(p.name, sizeof p.name, "lee");
  p.level = 4;
  assert_int_equal(store_person_add(fx->s, &p), TT_EINVAL);
  store_person_t got;
  assert_int_equal(store_person_get(fx->s, "sam", &got), 0);
  assert_int_equal(got.level, 1);
  assert_int_equal(store_person_get(fx->s, "kim", &got), 0);
  assert_int_equal(got.level, 3);
  assert_int_equal(store_person_get(fx->s, "lee", &got), TT_ENOTFOUND);
  /* Seen at connect: the level an admin gave stays. */
  assert_int_equal(store_person_seen(fx->s, "kim", STORE_PERSON_TECHNICIAN, 50), 0);
  assert_int_equal(store_person_get(fx->s, "kim", &got), 0);
  assert_int_equal(got.level, 3);
  assert_int_equal(store_person_seen(fx->s, "new", STORE_PERSON_TECHNICIAN, 50), 0);
  assert_int_equal(store_person_get(fx->s, "new", &got), 0);
  assert_int_equal(got.level, 1);
  /* An admin marks someone already known (an add of them refused first, as the broker does). */
  snprintf(p.name, sizeof p.name, "new");
  p.level = 2;
  assert_int_equal(store_person_add(fx->s, &p), -EEXIST);
  assert_int_equal(store_person_set_level(fx->s, "new", 3), 0);
  assert_int_equal(store_person_get(fx->s, "new", &got), 0);
  assert_int_equal(got.level, 3);
  assert_int_equal(store_person_set_level(fx->s, "new", 0), TT_EINVAL);
  assert_int_equal(store_person_set_level(fx->s, "new", 4), TT_EINVAL);
  assert_int_equal(store_person_set_level(fx->s, "nobody", 2), TT_ENOTFOUND);
  assert_int_equal(store_person_get(fx->s, "new", &got), 0);
  assert_int_equal(got.level, 3);
}

/* The reader's connection (read-only) searches too: the tokenizer and ranking are made per
 * connection. */
static void test_read_only_connection_searches(void **state) {
  fx_t *fx = *state;
  broker_store_t *ro = NULL;
  char err[256];
  assert_int_equal(store_open_ro(&ro, fx->dir, err, sizeof err), 0);
  hits_t x;
  memset(&x, 0, sizeof x);
  assert_int_equal(store_kb_search(ro, "vpn drops", 0, hits_cb, &x), 0);
  assert_int_equal(x.h[0].id, id_of(fx, "vpn-drops.md"));
  store_close(ro);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_right_article_first, setup, teardown),
      cmocka_unit_test_setup_teardown(test_some_words_still_show, setup, teardown),
      cmocka_unit_test_setup_teardown(test_words_folded_and_stemmed, setup, teardown),
      cmocka_unit_test_setup_teardown(test_hostile_query_is_words, setup, teardown),
      cmocka_unit_test_setup_teardown(test_limit, setup, teardown),
      cmocka_unit_test_setup_teardown(test_edit_reindexes, setup, teardown),
      cmocka_unit_test_setup_teardown(test_refused_articles_write_nothing, setup, teardown),
      cmocka_unit_test_setup_teardown(test_links_count, setup, teardown),
      cmocka_unit_test_setup_teardown(test_articles_for_a_check, setup, teardown),
      cmocka_unit_test_setup_teardown(test_person_level, setup, teardown),
      cmocka_unit_test_setup_teardown(test_read_only_connection_searches, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
