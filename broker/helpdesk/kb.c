/* The knowledge base: articles (KB-<id>) that technicians and admins search and show, and
 * that admins and level 3 technicians write, each write with its audit entry in one store
 * request (the writer's level is read in that request too). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "broker.h"
#include "tt/checks.h"
#include "tt/log.h"
#include "tt/msg.h"

#define MOD "kb"
#define KB_ID_MAX 24          /* "KB-" + 19 digits + NUL, with room */
#define KB_WRITER_LEVEL 3     /* technicians at this support level write articles */

static void kb_name(char *buf, size_t cap, uint64_t id) { snprintf(buf, cap, "KB-%" PRIu64, id); }

static void answered(broker_conn_t *c, int rc) {
  if (rc) tt_link_close(c->link, rc, "peer not reading");
}

static int store_error(broker_conn_t *c, uint32_t id, int rc, const char *op) {
  TT_ERROR(MOD, "store failed", "op=%s err=%s", op, tt_errname(rc));
  return broker_reply_error(c, id, TT_EIO, "the broker could not use its store");
}

static int no_such_article(broker_conn_t *c, uint32_t id, uint64_t wire_id) {
  char msg[64];
  snprintf(msg, sizeof(msg), "no such article: KB-%" PRIu64, wire_id);
  return broker_reply_error(c, id, TT_ENOTFOUND, msg);
}

/* ---- to the wire: strings point into the store's structs ---------------------------------- */

void broker_kb_hit_to_wire(const store_kb_hit_t *h, Tether__KbHit *o, ProtobufCBinaryData *checks, bool linked) {
  tether__kb_hit__init(o);
  o->id = (uint64_t)h->id;
  o->title = tt_text(h->title);
  o->snippet = tt_text(h->snippet);
  o->score = h->score;
  o->solved = h->solved;
  for (size_t i = 0; i < h->nchecks; i++) checks[i] = tt_text(h->checks[i]);
  o->checks = checks;
  o->n_checks = h->nchecks;
  o->linked = linked;
}

static void article_to_wire(const store_kb_article_t *a, Tether__KbArticle *o, ProtobufCBinaryData *checks) {
  tether__kb_article__init(o);
  o->id = (uint64_t)a->id;
  o->title = tt_text(a->title);
  o->body.data = (uint8_t *)(uintptr_t)a->body;
  o->body.len = a->body_len;
  for (size_t i = 0; i < a->nchecks; i++) checks[i] = tt_text(a->checks[i]);
  o->checks = checks;
  o->n_checks = a->nchecks;
  o->author = tt_text(a->author);
  o->created_ms = (uint64_t)a->created_ms;
  o->updated_ms = (uint64_t)a->updated_ms;
  o->solved = a->solved;
}

static int send_article(broker_conn_t *c, uint32_t id, const store_kb_article_t *a) {
  ProtobufCBinaryData checks[STORE_KB_CHECKS_MAX];
  Tether__KbArticle o;
  article_to_wire(a, &o, checks);
  Tether__Response r = TETHER__RESPONSE__INIT;
  r.id = id;
  r.body_case = TETHER__RESPONSE__BODY_KB_ARTICLE;
  r.kb_article = &o;
  return tt_link_send(c->link, TT_K_RESPONSE, &r.base);
}

/* ---- add or replace (admins, level 3 technicians) ------------------------------------------ */

typedef struct {
  broker_creq_t h;
  tt_role_t role;
  char who[STORE_NAME_MAX];
  int64_t now_ms;
  uint64_t wire_id;
  store_kb_article_t a;
  int level;                /* refused: the writer's level (0: not a person the broker knows) */
  char body[];              /* a.body points here */
} add_req_t;

static int add_run(broker_store_t *s, store_req_t *r) {
  add_req_t *x = (add_req_t *)r;
  if (x->role != TT_ROLE_ADMIN) {
    store_person_t p;
    int rc = store_person_get(s, x->who, &p);
    if (rc && rc != TT_ENOTFOUND) return rc;
    if (rc == TT_ENOTFOUND || p.revoked || p.level < KB_WRITER_LEVEL) {
      x->level = rc ? 0 : p.level;
      return TT_EDENIED;
    }
  }
  bool update = x->a.id != 0;
  int rc = store_kb_put(s, &x->a, x->who, x->now_ms);
  if (rc) return rc;
  char name[KB_ID_MAX], checks[STORE_KB_CHECKS_MAX * (STORE_KB_CHECK_MAX + 1) + 1] = "", bytes[24];
  kb_name(name, sizeof(name), (uint64_t)x->a.id);
  for (size_t i = 0, o = 0; i < x->a.nchecks; i++) {
    int n = snprintf(checks + o, sizeof(checks) - o, "%s%s", i ? "," : "", x->a.checks[i]);
    if (n > 0) o += (size_t)n;
  }
  snprintf(bytes, sizeof(bytes), "%zu", x->a.body_len);
  broker_audit_rec(&x->h.audit, x->who, update ? "kb-update" : "kb-add", name, "title", x->a.title, "checks", checks,
                   "bytes", bytes, AUDIT_END);
  return 0;
}

static void add_done(store_req_t *r) {
  add_req_t *x = (add_req_t *)r;
  broker_t *b = x->h.c->b;
  broker_conn_t *c = broker_creq_conn(x);
  char name[KB_ID_MAX];
  kb_name(name, sizeof(name), r->rc == 0 ? (uint64_t)x->a.id : x->wire_id);
  if (r->rc == 0) {
    TT_INFO(MOD, x->wire_id ? "article replaced" : "article added", "article=%s by=%s bytes=%zu", name, x->who,
            x->a.body_len);
  } else if (r->rc == TT_EDENIED) {
    char level[16];
    snprintf(level, sizeof(level), "%d", x->level);
    broker_audit(b, x->who, "refuse", x->wire_id ? name : "", "request", x->wire_id ? "kb-update" : "kb-add",
                 "level", level, AUDIT_END);
  }
  if (!c) goto out;
  if (r->rc == 0) {
    answered(c, send_article(c, x->h.id, &x->a));
  } else if (r->rc == TT_EDENIED) {
    char msg[TT_TEXT_MAX];
    if (x->level)
      snprintf(msg, sizeof(msg),
               "writing the knowledge base needs an admin or a level %d technician; you are level %d "
               "(an admin sets it: tether person add %s --role technician --level %d)",
               KB_WRITER_LEVEL, x->level, x->who, KB_WRITER_LEVEL);
    else
      snprintf(msg, sizeof(msg), "writing the knowledge base needs an admin or a level %d technician",
               KB_WRITER_LEVEL);
    answered(c, broker_reply_error(c, x->h.id, TT_EDENIED, msg));
  } else if (r->rc == TT_ENOTFOUND) {
    answered(c, no_such_article(c, x->h.id, x->wire_id));
  } else if (r->rc == TT_EINVAL || r->rc == TT_ETOOBIG) {
    /* The request was checked before it was queued: the store's own checks are the same. */
    answered(c, broker_reply_error(c, x->h.id, r->rc, "the store refused the article"));
  } else {
    answered(c, store_error(c, x->h.id, r->rc, "kb_put"));
  }
out:
  free(x);
}

/* Everything a peer sent is checked here, before the request is allocated (the body's size
 * first); the store checks it again. */
static int on_add(broker_conn_t *c, uint32_t id, const Tether__KbAddRequest *q) {
  if (q->id > (uint64_t)INT64_MAX) return no_such_article(c, id, q->id);
  char title[STORE_KB_TITLE_MAX + 1];
  if (!q->title.len) return broker_reply_error(c, id, TT_EINVAL, "an article needs a title");
  if (tt_text_copy(title, sizeof(title), q->title))
    return broker_reply_error(c, id, TT_ETEXT, "the title must be one line of at most 256 bytes of text");
  if (!q->body.len) return broker_reply_error(c, id, TT_EINVAL, "an article needs a body (Markdown)");
  if (q->body.len > TT_KB_BODY_MAX) {
    char msg[96];
    snprintf(msg, sizeof(msg), "the article is %zu bytes; at most %u KiB", q->body.len, TT_KB_BODY_MAX / 1024);
    return broker_reply_error(c, id, TT_ETOOBIG, msg);
  }
  if (!tt_text_block_valid(q->body, TT_KB_BODY_MAX))
    return broker_reply_error(c, id, TT_ETEXT,
                              "the body must be UTF-8 text: no control characters but tabs and line ends, "
                              "no invisible formatting characters");
  if (q->n_checks > TT_KB_CHECKS_MAX) {
    char msg[64];
    snprintf(msg, sizeof(msg), "an article names at most %u checks", TT_KB_CHECKS_MAX);
    return broker_reply_error(c, id, TT_ETOOBIG, msg);
  }
  char checks[TT_KB_CHECKS_MAX][STORE_KB_CHECK_MAX + 1];
  for (size_t i = 0; i < q->n_checks; i++) {
    if (tt_text_copy(checks[i], sizeof(checks[i]), q->checks[i]) || !store_kb_check_name_ok(checks[i]))
      return broker_reply_error(c, id, TT_EINVAL, "a check's name is 1 to 63 of a-z, 0-9 and _ (disk_used)");
    if (tt_check_find(checks[i]) < 0) {
      char msg[160];
      snprintf(msg, sizeof(msg), "no such health check: %s (tether checks lists them)", checks[i]);
      return broker_reply_error(c, id, TT_EINVAL, msg);
    }
    for (size_t j = 0; j < i; j++)
      if (strcmp(checks[i], checks[j]) == 0) {
        char msg[STORE_KB_CHECK_MAX + 32];
        snprintf(msg, sizeof(msg), "check %s named twice", checks[i]);
        return broker_reply_error(c, id, TT_EINVAL, msg);
      }
  }
  add_req_t *x = broker_creq_new(c, id, sizeof(*x) + q->body.len + 1, STORE_LANE_WRITE, add_run, add_done, "kb_put");
  if (!x) return TT_ENOMEM;
  x->role = c->id.role;
  snprintf(x->who, sizeof(x->who), "%s", c->id.name);
  x->now_ms = (int64_t)broker_unix_ms();
  x->wire_id = q->id;
  x->a.id = (int64_t)q->id;
  memcpy(x->a.title, title, sizeof(title));
  memcpy(x->body, q->body.data, q->body.len);
  x->body[q->body.len] = '\0';
  x->a.body = x->body;
  x->a.body_len = q->body.len;
  memcpy(x->a.checks, checks, q->n_checks * sizeof(checks[0]));
  x->a.nchecks = q->n_checks;
  x->h.req.audit = &x->h.audit;
  broker_audit_rec(&x->h.audit, c->id.name, "kb-add", "", AUDIT_END); /* completed by add_run */
  return broker_creq_submit(x);
}

/* ---- search ---------------------------------------------------------------------------- */

typedef struct {
  broker_creq_t h;
  char query[TT_KB_QUERY_MAX + 1];
  uint32_t limit, n;
  store_kb_hit_t hits[TT_KB_HITS_MAX];
} search_req_t;

static int search_cb(void *ctx, const store_kb_hit_t *h) {
  search_req_t *x = ctx;
  if (x->n >= x->limit) return 1;
  x->hits[x->n++] = *h;
  return 0;
}

static int search_run(broker_store_t *s, store_req_t *r) {
  search_req_t *x = (search_req_t *)r;
  int rc = store_kb_search(s, x->query, x->limit, search_cb, x);
  return rc < 0 ? rc : 0;
}

static void search_done(store_req_t *r) {
  search_req_t *x = (search_req_t *)r;
  broker_conn_t *c = broker_creq_conn(x);
  Tether__KbHit *hits = NULL, **ptrs = NULL;
  ProtobufCBinaryData(*checks)[TT_KB_CHECKS_MAX] = NULL;
  if (!c) goto out;
  if (r->rc == TT_EINVAL) {
    answered(c, broker_reply_error(c, x->h.id, TT_EINVAL, "search for words: letters or digits (symbols alone find nothing)"));
    goto out;
  }
  if (r->rc) {
    answered(c, store_error(c, x->h.id, r->rc, "kb_search"));
    goto out;
  }
  hits = calloc(x->n ? x->n : 1, sizeof(*hits));
  ptrs = calloc(x->n ? x->n : 1, sizeof(*ptrs));
  checks = calloc(x->n ? x->n : 1, sizeof(*checks));
  if (!hits || !ptrs || !checks) {
    answered(c, TT_ENOMEM);
    goto out;
  }
  for (uint32_t i = 0; i < x->n; i++) {
    broker_kb_hit_to_wire(&x->hits[i], &hits[i], checks[i], false);
    ptrs[i] = &hits[i];
  }
  Tether__KbSearchResult res = TETHER__KB_SEARCH_RESULT__INIT;
  res.hits = ptrs;
  res.n_hits = x->n;
  Tether__Response resp = TETHER__RESPONSE__INIT;
  resp.id = x->h.id;
  resp.body_case = TETHER__RESPONSE__BODY_KB_SEARCH;
  resp.kb_search = &res;
  answered(c, tt_link_send(c->link, TT_K_RESPONSE, &resp.base));
out:
  free(hits);
  free(ptrs);
  free(checks);
  free(x);
}

static int on_search(broker_conn_t *c, uint32_t id, const Tether__KbSearchRequest *q) {
  if (q->query.len > TT_KB_QUERY_MAX) {
    char msg[64];
    snprintf(msg, sizeof(msg), "a search is at most %u bytes: a few words", TT_KB_QUERY_MAX);
    return broker_reply_error(c, id, TT_ETOOBIG, msg);
  }
  char query[TT_KB_QUERY_MAX + 1];
  if (tt_text_copy(query, sizeof(query), q->query))
    return broker_reply_error(c, id, TT_ETEXT, "a search is one line of text");
  search_req_t *x = broker_creq_new(c, id, sizeof(*x), STORE_LANE_READ, search_run, search_done, "kb_search");
  if (!x) return TT_ENOMEM;
  memcpy(x->query, query, sizeof(query));
  x->limit = q->limit == 0 || q->limit > TT_KB_HITS_MAX ? TT_KB_HITS_MAX : q->limit;
  return broker_creq_submit(x);
}

/* ---- show -------------------------------------------------------------------------------- */

typedef struct {
  broker_creq_t h;
  uint64_t wire_id;
  store_kb_article_t a;
  char *body;
} show_req_t;

static int show_cb(void *ctx, const store_kb_article_t *a) {
  show_req_t *x = ctx;
  /* The store bounds the body (TT_KB_BODY_MAX); the copy outlives its statement. */
  x->body = malloc(a->body_len + 1);
  if (!x->body) return TT_ENOMEM;
  memcpy(x->body, a->body, a->body_len);
  x->body[a->body_len] = '\0';
  x->a = *a;
  x->a.body = x->body;
  return 0;
}

static int show_run(broker_store_t *s, store_req_t *r) {
  show_req_t *x = (show_req_t *)r;
  return store_kb_get(s, (int64_t)x->wire_id, show_cb, x);
}

static void show_done(store_req_t *r) {
  show_req_t *x = (show_req_t *)r;
  broker_conn_t *c = broker_creq_conn(x);
  if (!c) goto out;
  if (r->rc == TT_ENOTFOUND) answered(c, no_such_article(c, x->h.id, x->wire_id));
  else if (r->rc) answered(c, store_error(c, x->h.id, r->rc, "kb_get"));
  else answered(c, send_article(c, x->h.id, &x->a));
out:
  free(x->body);
  free(x);
}

static int on_show(broker_conn_t *c, uint32_t id, const Tether__KbShowRequest *q) {
  if (q->id == 0 || q->id > (uint64_t)INT64_MAX) return no_such_article(c, id, q->id);
  show_req_t *x = broker_creq_new(c, id, sizeof(*x), STORE_LANE_READ, show_run, show_done, "kb_get");
  if (!x) return TT_ENOMEM;
  x->wire_id = q->id;
  return broker_creq_submit(x);
}

int broker_kb_request(broker_conn_t *c, const Tether__Request *q) {
  switch (q->body_case) {
  case TETHER__REQUEST__BODY_KB_ADD: return on_add(c, q->id, q->kb_add);
  case TETHER__REQUEST__BODY_KB_SEARCH: return on_search(c, q->id, q->kb_search);
  case TETHER__REQUEST__BODY_KB_SHOW: return on_show(c, q->id, q->kb_show);
  default: return broker_reply_error(c, q->id, TT_EKIND, "unknown knowledge base request");
  }
}
