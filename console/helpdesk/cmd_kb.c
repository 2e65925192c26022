/* The knowledge base: tether kb search WORDS..., kb show KB-n, and (admins, level 3
 * technicians) kb add --title T [--check C]... FILE.md and kb edit KB-n. The file is read and
 * checked here before anything is sent; the broker checks it again. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "console.h"
#include "tt/msg.h"

#define NAME_SHOWN (TT_NAME_MAX * 4 + 1)
#define TEXT_SHOWN (TT_TEXT_MAX * 4 + 1)
/* A snippet as the broker cuts it (320 bytes) with room, shown escaped. */
#define SNIPPET_SHOWN (512 * 4 + 1)

static struct {
  uint64_t id;          /* show, edit */
  char *body;           /* add, edit: the file's text */
  size_t body_len;
  bool have_body;
  bool fetched;         /* edit: the article as it was has come; the write is next */
  char query[TT_KB_QUERY_MAX + 1];
  ProtobufCBinaryData checks[TT_KB_CHECKS_MAX];
  size_t nchecks;
  bool checks_given;    /* edit: --check given (--check '' for none) */
} g_kb;

static void kb_discard(void) {
  free(g_kb.body);
  g_kb.body = NULL;
}

static int parse_kb_arg(const char *s, uint64_t *id) {
  if (console_parse_kb(s, id)) return console_usage_error("'%s' is not an article (want KB-3 or 3)", s);
  return 0;
}

/* ---- the file ---------------------------------------------------------------------------- */

/* The first line that is not text an article may hold, 1-based (0: none). */
static size_t bad_line(const char *p, size_t n) {
  size_t line = 1;
  for (size_t i = 0; i < n;) {
    const char *nl = memchr(p + i, '\n', n - i);
    size_t end = nl ? (size_t)(nl - p) + 1 : n;
    ProtobufCBinaryData l = {end - i, (uint8_t *)(uintptr_t)(p + i)};
    if (!tt_text_block_valid(l, TT_KB_BODY_MAX)) return line;
    i = end;
    line++;
  }
  return 0;
}

/* PATH ("-": standard input) whole, at most TT_KB_BODY_MAX bytes: a file's size is checked
 * before it is read, a pipe is read one byte past the limit to tell. */
static int read_body(const char *path) {
  bool in = strcmp(path, "-") == 0;
  const char *shown = in ? "standard input" : path;
  int fd = in ? STDIN_FILENO : open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) return console_usage_error("cannot open %s: %s", path, strerror(errno));
  int rc = 0;
  struct stat st;
  if (fstat(fd, &st) != 0) {
    rc = console_usage_error("cannot read %s: %s", shown, strerror(errno));
    goto out;
  }
  if (S_ISDIR(st.st_mode)) {
    rc = console_usage_error("%s is a directory, not an article", shown);
    goto out;
  }
  if (S_ISREG(st.st_mode) && (uint64_t)st.st_size > TT_KB_BODY_MAX) {
    rc = console_usage_error("%s is %lld bytes; an article is at most %u KiB", shown, (long long)st.st_size,
                             TT_KB_BODY_MAX / 1024);
    goto out;
  }
  g_kb.body = malloc(TT_KB_BODY_MAX + 2);
  if (!g_kb.body) {
    rc = console_usage_error("out of memory");
    goto out;
  }
  size_t got = 0;
  while (got <= TT_KB_BODY_MAX) {
    ssize_t k = read(fd, g_kb.body + got, TT_KB_BODY_MAX + 1 - got);
    if (k < 0 && errno == EINTR) continue;
    if (k < 0) {
      rc = console_usage_error("cannot read %s: %s", shown, strerror(errno));
      goto out;
    }
    if (k == 0) break;
    got += (size_t)k;
  }
  if (got > TT_KB_BODY_MAX) {
    rc = console_usage_error("%s holds more than %u KiB; an article is at most that", shown, TT_KB_BODY_MAX / 1024);
    goto out;
  }
  /* A byte-order mark is an editor's habit, not text. */
  size_t skip = got >= 3 && memcmp(g_kb.body, "\xef\xbb\xbf", 3) == 0 ? 3 : 0;
  memmove(g_kb.body, g_kb.body + skip, got - skip);
  got -= skip;
  g_kb.body[got] = '\0';
  if (got == 0) {
    rc = console_usage_error("%s is empty", shown);
    goto out;
  }
  size_t bad = bad_line(g_kb.body, got);
  if (bad) {
    rc = console_usage_error("%s line %zu: not UTF-8 text, or a control or invisible formatting character "
                             "(an article holds text, tabs and line ends)", shown, bad);
    goto out;
  }
  g_kb.body_len = got;
  g_kb.have_body = true;
out:
  if (!in) close(fd);
  return rc;
}

/* --title and --check as the broker takes them. */
static int check_title(const console_t *c, bool required) {
  if (required && !c->cfg.kb_title[0]) return console_usage_error("--title is required: the article's title");
  if (!tt_text_valid(tt_text(c->cfg.kb_title), TT_TEXT_MAX))
    return console_usage_error("--title: one line of printable text, at most %u bytes", TT_TEXT_MAX);
  return 0;
}

static bool check_name_ok(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n > 63) return false;
  for (size_t i = 0; i < n; i++)
    if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_')) return false;
  return true;
}

static int check_checks(const console_t *c, bool none_ok) {
  g_kb.nchecks = 0;
  g_kb.checks_given = c->nchecks > 0;
  if (none_ok && c->nchecks == 1 && !c->checks[0][0]) return 0; /* --check '': none */
  for (int i = 0; i < c->nchecks; i++) {
    if (!check_name_ok(c->checks[i]))
      return console_usage_error("--check '%s': a check's name is 1 to 63 of a-z, 0-9 and _ (disk_used)",
                                 c->checks[i]);
    for (int j = 0; j < i; j++)
      if (strcmp(c->checks[i], c->checks[j]) == 0) return console_usage_error("--check %s given twice", c->checks[i]);
    g_kb.checks[g_kb.nchecks++] = tt_text(c->checks[i]);
  }
  return 0;
}

/* ---- printing ---------------------------------------------------------------------------- */

static void json_checks(FILE *o, ProtobufCBinaryData *checks, size_t n) {
  fputc('[', o);
  for (size_t i = 0; i < n; i++) {
    if (i) fputc(',', o);
    console_json_bytes(o, checks[i]);
  }
  fputc(']', o);
}

static void text_checks(char *dst, size_t cap, ProtobufCBinaryData *checks, size_t n) {
  size_t o = 0;
  dst[0] = '\0';
  for (size_t i = 0; i < n && o + 1 < cap; i++) {
    char one[NAME_SHOWN];
    console_text(one, sizeof(one), checks[i]);
    int k = snprintf(dst + o, cap - o, "%s%s", i ? ", " : "", one);
    if (k < 0) break;
    o += (size_t)k < cap - o ? (size_t)k : cap - o - 1;
  }
  if (!dst[0]) snprintf(dst, cap, "-");
}

static bool article_ok(const Tether__KbArticle *a) {
  return a && a->id && a->n_checks <= TT_KB_CHECKS_MAX && a->body.len <= TT_KB_BODY_MAX;
}

static void article_json(FILE *o, const Tether__KbArticle *a) {
  fprintf(o, "{\"id\":\"KB-%" PRIu64 "\",\"title\":", a->id);
  console_json_bytes(o, a->title);
  fputs(",\"checks\":", o);
  json_checks(o, a->checks, a->n_checks);
  fputs(",\"author\":", o);
  console_json_bytes(o, a->author);
  fprintf(o, ",\"created_ms\":%" PRIu64 ",\"updated_ms\":%" PRIu64 ",\"solved\":%u,\"body\":", a->created_ms,
          a->updated_ms, (unsigned)a->solved);
  console_json_bytes(o, a->body);
  fputc('}', o);
}

/* The Markdown as it was written: lines and tabs kept; anything a terminal would act on
 * (escapes, a lone CR that rewrites the line) shown as \xNN. */
static void print_body(ProtobufCBinaryData b) {
  char *shown = malloc(b.len * 4 + 1);
  if (!shown) return;
  const char *p = (const char *)b.data;
  size_t i = 0;
  while (i < b.len) {
    size_t k = i;
    while (k < b.len && p[k] != '\n' && p[k] != '\t' && !(p[k] == '\r' && k + 1 < b.len && p[k + 1] == '\n')) k++;
    ProtobufCBinaryData seg = {k - i, (uint8_t *)(uintptr_t)(p + i)};
    console_text(shown, b.len * 4 + 1, seg);
    fputs(shown, stdout);
    if (k < b.len && p[k] == '\r') k++; /* CRLF: the LF follows */
    if (k < b.len) fputc(p[k++], stdout);
    i = k;
  }
  if (!b.len || b.data[b.len - 1] != '\n') fputc('\n', stdout);
  free(shown);
}

static void article_text(const Tether__KbArticle *a) {
  char text[TEXT_SHOWN], when[40], checks[TT_KB_CHECKS_MAX * (NAME_SHOWN + 2)];
  printf("article: KB-%" PRIu64 "\n", a->id);
  console_text(text, sizeof(text), a->title);
  printf("title: %s\n", text);
  text_checks(checks, sizeof(checks), a->checks, a->n_checks);
  printf("checks: %s\n", checks);
  console_text(text, sizeof(text), a->author);
  printf("author: %s\n", text[0] ? text : "-");
  console_iso(when, sizeof(when), a->created_ms, false);
  printf("created: %s\n", when);
  console_iso(when, sizeof(when), a->updated_ms, false);
  printf("updated: %s\n", when);
  printf("solved: %u ticket%s\n\n", (unsigned)a->solved, a->solved == 1 ? "" : "s");
  print_body(a->body);
}

/* ---- kb add, kb edit ---------------------------------------------------------------------- */

static int add_check(console_t *c) {
  atexit(kb_discard);
  if (check_title(c, true) || check_checks(c, false)) return 2;
  return read_body(c->arg[0]) ? 2 : 0;
}

/* title, body and checks as views: the request is packed before they go. */
static int send_put(console_t *c, uint64_t id, ProtobufCBinaryData title, ProtobufCBinaryData body,
                    ProtobufCBinaryData *checks, size_t nchecks) {
  Tether__KbAddRequest q = TETHER__KB_ADD_REQUEST__INIT;
  q.id = id;
  q.title = title;
  q.body = body;
  q.checks = checks;
  q.n_checks = nchecks;
  Tether__Request r = TETHER__REQUEST__INIT;
  r.body_case = TETHER__REQUEST__BODY_KB_ADD;
  r.kb_add = &q;
  g_kb.fetched = true;
  return console_request(c, &r, TETHER__RESPONSE__BODY_KB_ARTICLE);
}

static ProtobufCBinaryData body_view(void) {
  ProtobufCBinaryData b = {g_kb.body_len, (uint8_t *)g_kb.body};
  return b;
}

static int add_start(console_t *c) {
  return send_put(c, 0, tt_text(c->cfg.kb_title), body_view(), g_kb.checks, g_kb.nchecks);
}

static int put_response(console_t *c, const Tether__Response *r) {
  const Tether__KbArticle *a = r->kb_article;
  if (!article_ok(a)) return TT_EPROTO;
  if (c->json) {
    article_json(stdout, a);
    fputc('\n', stdout);
  } else if (c->cmd == &console_cmd_kb_edit) {
    printf("KB-%" PRIu64 " updated\n", a->id);
  } else {
    printf("KB-%" PRIu64 "\n", a->id);
  }
  fflush(stdout);
  console_finish(c, 0);
  return 0;
}

const console_cmd_t console_cmd_kb_add = {
    .name = "kb",
    .sub = "add",
    .args = "--title T [--check C]... FILE.md|- [--json]",
    .help = "admins, level 3 technicians: add an article (Markdown, at most 64 KiB); prints its id (KB-3)",
    .min_pos = 1,
    .max_pos = 1,
    .switches = CONSOLE_SW_JSON,
    .check = add_check,
    .start = add_start,
    .on_response = put_response,
};

static void kb_not_found(console_t *c) { console_fail(c, "no such article: KB-%" PRIu64, g_kb.id); }

static int edit_check(console_t *c) {
  atexit(kb_discard);
  if (parse_kb_arg(c->arg[0], &g_kb.id) || check_title(c, false) || check_checks(c, true)) return 2;
  if (c->narg > 1 && read_body(c->arg[1])) return 2;
  if (!c->cfg.kb_title[0] && !g_kb.checks_given && !g_kb.have_body)
    return console_usage_error("kb edit: nothing to change (give --title, --check or a file)");
  return 0;
}

static int show_request(console_t *c) {
  Tether__KbShowRequest q = TETHER__KB_SHOW_REQUEST__INIT;
  q.id = g_kb.id;
  Tether__Request r = TETHER__REQUEST__INIT;
  r.body_case = TETHER__REQUEST__BODY_KB_SHOW;
  r.kb_show = &q;
  return console_request(c, &r, TETHER__RESPONSE__BODY_KB_ARTICLE);
}

/* What is not given stays as it is: the article is read first, then written whole. */
static int edit_start(console_t *c) {
  if (c->cfg.kb_title[0] && g_kb.have_body && g_kb.checks_given)
    return send_put(c, g_kb.id, tt_text(c->cfg.kb_title), body_view(), g_kb.checks, g_kb.nchecks);
  return show_request(c);
}

static int edit_response(console_t *c, const Tether__Response *r) {
  if (g_kb.fetched) return put_response(c, r);
  const Tether__KbArticle *a = r->kb_article;
  if (!article_ok(a) || a->id != g_kb.id) return TT_EPROTO;
  return send_put(c, g_kb.id, c->cfg.kb_title[0] ? tt_text(c->cfg.kb_title) : a->title,
                  g_kb.have_body ? body_view() : a->body, g_kb.checks_given ? g_kb.checks : a->checks,
                  g_kb.checks_given ? g_kb.nchecks : a->n_checks);
}

const console_cmd_t console_cmd_kb_edit = {
    .name = "kb",
    .sub = "edit",
    .args = "KB [--title T] [--check C]... [FILE.md|-] [--json]",
    .help = "admins, level 3 technicians: change an article's title, checks or text (what is not given stays)",
    .min_pos = 1,
    .max_pos = 2,
    .switches = CONSOLE_SW_JSON,
    .check = edit_check,
    .start = edit_start,
    .on_response = edit_response,
    .on_not_found = kb_not_found,
};

/* ---- kb search ---------------------------------------------------------------------------- */

static int search_check(console_t *c) {
  size_t o = 0;
  for (int i = 0; i < c->narg; i++) {
    size_t n = strlen(c->arg[i]);
    if (o + (i ? 1 : 0) + n > TT_KB_QUERY_MAX)
      return console_usage_error("a search is at most %u bytes: a few words", TT_KB_QUERY_MAX);
    if (i) g_kb.query[o++] = ' ';
    memcpy(g_kb.query + o, c->arg[i], n);
    o += n;
  }
  g_kb.query[o] = '\0';
  if (!tt_text_valid(tt_text(g_kb.query), TT_KB_QUERY_MAX))
    return console_usage_error("a search is printable text (no control characters)");
  return 0;
}

static int search_start(console_t *c) {
  Tether__KbSearchRequest q = TETHER__KB_SEARCH_REQUEST__INIT;
  q.query = tt_text(g_kb.query);
  q.limit = TT_KB_HITS_MAX;
  Tether__Request r = TETHER__REQUEST__INIT;
  r.body_case = TETHER__REQUEST__BODY_KB_SEARCH;
  r.kb_search = &q;
  return console_request(c, &r, TETHER__RESPONSE__BODY_KB_SEARCH);
}

static void hit_json(FILE *o, size_t rank, const Tether__KbHit *h) {
  fprintf(o, "{\"rank\":%zu,\"id\":\"KB-%" PRIu64 "\",\"title\":", rank, h->id);
  console_json_bytes(o, h->title);
  fprintf(o, ",\"solved\":%u,\"checks\":", (unsigned)h->solved);
  json_checks(o, h->checks, h->n_checks);
  if (isfinite(h->score)) fprintf(o, ",\"score\":%.6g", h->score);
  else fputs(",\"score\":null", o);
  fputs(",\"snippet\":", o);
  console_json_bytes(o, h->snippet);
  fputc('}', o);
}

static int search_response(console_t *c, const Tether__Response *r) {
  const Tether__KbSearchResult *res = r->kb_search;
  if (!res || res->n_hits > TT_KB_HITS_MAX) return TT_EPROTO;
  for (size_t i = 0; i < res->n_hits; i++)
    if (!res->hits[i]->id || res->hits[i]->n_checks > TT_KB_CHECKS_MAX) return TT_EPROTO;
  if (c->json) {
    fputc('[', stdout);
    for (size_t i = 0; i < res->n_hits; i++) {
      if (i) fputc(',', stdout);
      hit_json(stdout, i + 1, res->hits[i]);
    }
    fputs("]\n", stdout);
  } else if (!res->n_hits) {
    fprintf(stderr, "(no articles match)\n");
  } else {
    char title[TEXT_SHOWN], snip[SNIPPET_SHOWN], id[32];
    printf("%-4s %-8s %-6s %s\n", "RANK", "ID", "SOLVED", "TITLE");
    for (size_t i = 0; i < res->n_hits; i++) {
      const Tether__KbHit *h = res->hits[i];
      snprintf(id, sizeof(id), "KB-%" PRIu64, h->id);
      console_text(title, sizeof(title), h->title);
      console_text(snip, sizeof(snip), h->snippet);
      printf("%-4zu %-8s %-6u %s\n", i + 1, id, (unsigned)h->solved, title);
      if (snip[0]) printf("     %s\n", snip);
    }
  }
  fflush(stdout);
  console_finish(c, 0);
  return 0;
}

const console_cmd_t console_cmd_kb_search = {
    .name = "kb",
    .sub = "search",
    .args = "WORDS... [--json]",
    .help = "search the knowledge base: articles with more of the words first, then the best matches",
    .min_pos = 1,
    .max_pos = TT_CLI_POS_MAX,
    .switches = CONSOLE_SW_JSON,
    .check = search_check,
    .start = search_start,
    .on_response = search_response,
};

/* ---- kb show ------------------------------------------------------------------------------ */

static int show_check(console_t *c) { return parse_kb_arg(c->arg[0], &g_kb.id) ? 2 : 0; }

static int show_response(console_t *c, const Tether__Response *r) {
  const Tether__KbArticle *a = r->kb_article;
  if (!article_ok(a) || a->id != g_kb.id) return TT_EPROTO;
  if (c->json) {
    article_json(stdout, a);
    fputc('\n', stdout);
  } else {
    article_text(a);
  }
  fflush(stdout);
  console_finish(c, 0);
  return 0;
}

const console_cmd_t console_cmd_kb_show = {
    .name = "kb",
    .sub = "show",
    .args = "KB [--json]",
    .help = "one article: title, checks, author, dates, tickets it solved, and its Markdown",
    .min_pos = 1,
    .max_pos = 1,
    .switches = CONSOLE_SW_JSON,
    .check = show_check,
    .start = show_request,
    .on_response = show_response,
    .on_not_found = kb_not_found,
};
