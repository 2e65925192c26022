/* People: the technicians and admins the broker knows. Each is recorded when they connect
 * (the name and role their certificate carries), or added by an admin ahead of that; a
 * ticket can only be given to someone known and not revoked (ticket.c checks it in the
 * update's own store request). Admins add and list them here, with a support level (1..3;
 * level 3 technicians write the knowledge base). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "broker.h"
#include "tt/log.h"
#include "tt/msg.h"

#define MOD "people"

static bool person_role(tt_role_t r) { return r == TT_ROLE_TECHNICIAN || r == TT_ROLE_ADMIN; }

/* ---- seen at connect and disconnect: writes nobody waits for ------------------------------ */

typedef struct {
  store_req_t req;
  bool connect;
  store_person_role_t role;
  int64_t now_ms;
  char name[STORE_NAME_MAX];
} seen_req_t;

static int seen_run(broker_store_t *s, store_req_t *r) {
  seen_req_t *x = (seen_req_t *)r;
  if (!x->connect) return store_person_last_seen(s, x->name, x->now_ms);
  return store_person_seen(s, x->name, x->role, x->now_ms);
}

void broker_person_seen(broker_t *b, const broker_conn_t *c, bool connect) {
  if (!person_role(c->id.role)) return;
  seen_req_t *x = calloc(1, sizeof(*x));
  if (!x) {
    TT_ERROR(MOD, "person not recorded", "name=%s err=%s", c->id.name, tt_errname(TT_ENOMEM));
    return;
  }
  x->req.run = seen_run;
  x->req.what = connect ? "person_seen" : "person_last_seen";
  x->connect = connect;
  x->role = c->id.role == TT_ROLE_ADMIN ? STORE_PERSON_ADMIN : STORE_PERSON_TECHNICIAN;
  x->now_ms = (int64_t)broker_unix_ms();
  snprintf(x->name, sizeof(x->name), "%s", c->id.name);
  broker_store_later(b, &x->req);
}

/* ---- to the wire ---------------------------------------------------------------------------- */

/* Strings point into p. */
static void person_to_wire(const store_person_t *p, Tether__Person *o) {
  tether__person__init(o);
  o->name = tt_text(p->name);
  o->role = p->role == STORE_PERSON_ADMIN ? TETHER__ROLE__ROLE_ADMIN : TETHER__ROLE__ROLE_TECHNICIAN;
  o->first_seen_ms = (uint64_t)p->first_seen_ms;
  o->last_seen_ms = (uint64_t)p->last_seen_ms;
  o->added_by = tt_text(p->added_by);
  o->added_ms = (uint64_t)p->added_ms;
  o->note = tt_text(p->note);
  o->revoked = p->revoked;
  o->level = (uint32_t)p->level;
}

static void answered(broker_conn_t *c, int rc) {
  if (rc) tt_link_close(c->link, rc, "peer not reading");
}

/* ---- person add (admins) ------------------------------------------------------------------ */

typedef struct {
  broker_creq_t h;
  store_person_t p;
  bool level_given;  /* the request named a level: a known person gets it */
  bool level_set;    /* they were known: only their level changed */
} add_req_t;

/* Revoked is checked in the same request as the insert, so a revocation cannot slip in
 * between; a revoked name is refused rather than listed as a new person. Someone known
 * already (most technicians: seen at their first connect) gets the level the request gives,
 * when it gives one for the role they have; the answer is them as stored. */
static int add_run(broker_store_t *s, store_req_t *r) {
  add_req_t *x = (add_req_t *)r;
  bool revoked = false;
  int rc = store_is_revoked(s, STORE_REVOKE_PERSON, x->p.name, &revoked);
  if (rc) return rc;
  if (revoked) return TT_EDENIED;
  rc = store_person_add(s, &x->p);
  if (rc != -EEXIST || !x->level_given) return rc;
  store_person_t was;
  rc = store_person_get(s, x->p.name, &was);
  if (rc) return rc;
  if (was.role != x->p.role) return -EEXIST;
  rc = store_person_set_level(s, x->p.name, x->p.level);
  if (rc == 0) rc = store_person_get(s, was.name, &x->p); /* not x->p.name: x->p is cleared first */
  if (rc) return rc;
  x->level_set = true;
  char level[16], before[16];
  snprintf(level, sizeof(level), "%d", x->p.level);
  snprintf(before, sizeof(before), "%d", was.level);
  char actor[STORE_NAME_MAX];
  snprintf(actor, sizeof(actor), "%s", x->h.audit.actor); /* the entry is rewritten below */
  broker_audit_rec(&x->h.audit, actor, "person-level", x->p.name, "level", level, "was", before, AUDIT_END);
  return 0;
}

static void add_done(store_req_t *r) {
  add_req_t *x = (add_req_t *)r;
  broker_conn_t *c = broker_creq_conn(x);
  if (r->rc == 0 && x->level_set)
    TT_INFO(MOD, "person's level set", "name=%s level=%d by=%s", x->p.name, x->p.level, x->h.audit.actor);
  else if (r->rc == 0)
    TT_INFO(MOD, "person added", "name=%s role=%s level=%d by=%s", x->p.name,
            x->p.role == STORE_PERSON_ADMIN ? "admin" : "technician", x->p.level, x->p.added_by);
  if (!c) goto out;
  char msg[TT_NAME_MAX + 64];
  if (r->rc == -EEXIST) {
    snprintf(msg, sizeof(msg), "%s is already a person this broker knows", x->p.name);
    answered(c, broker_reply_error(c, x->h.id, TT_EINVAL, msg));
  } else if (r->rc == TT_EDENIED) {
    snprintf(msg, sizeof(msg), "%s was revoked", x->p.name);
    answered(c, broker_reply_error(c, x->h.id, TT_EINVAL, msg));
  } else if (r->rc) {
    TT_ERROR(MOD, "store failed", "op=person_add err=%s", tt_errname(r->rc));
    answered(c, broker_reply_error(c, x->h.id, TT_EIO,
                                   "the broker could not store the person and its audit entry: nobody was added"));
  } else {
    Tether__Person o;
    person_to_wire(&x->p, &o);
    Tether__Response resp = TETHER__RESPONSE__INIT;
    resp.id = x->h.id;
    resp.body_case = TETHER__RESPONSE__BODY_PERSON;
    resp.person = &o;
    answered(c, tt_link_send(c->link, TT_K_RESPONSE, &resp.base));
  }
out:
  free(x);
}

static int on_add(broker_conn_t *c, uint32_t id, const Tether__PersonAddRequest *q) {
  char name[TT_NAME_MAX + 1], note[TT_TEXT_MAX + 1] = "";
  if (tt_text_copy(name, sizeof(name), q->name) || !tt_name_valid(name))
    return broker_reply_error(c, id, TT_EINVAL,
                              "not a person's name: 1 to 64 letters, digits, . _ @ - (their certificate's name)");
  if (q->role != TETHER__ROLE__ROLE_TECHNICIAN && q->role != TETHER__ROLE__ROLE_ADMIN)
    return broker_reply_error(c, id, TT_EINVAL, "a person is a technician or an admin");
  if (q->note.len && tt_text_copy(note, sizeof(note), q->note))
    return broker_reply_error(c, id, TT_ETEXT, "the note must be at most 256 bytes of text without control characters");
  if (q->level > STORE_TICKET_LEVEL_MAX) return broker_reply_error(c, id, TT_EINVAL, "support levels are 1, 2 and 3");
  add_req_t *x = broker_creq_new(c, id, sizeof(*x), STORE_LANE_WRITE, add_run, add_done, "person_add");
  if (!x) return TT_ENOMEM;
  store_person_t *p = &x->p;
  snprintf(p->name, sizeof(p->name), "%s", name);
  p->role = q->role == TETHER__ROLE__ROLE_ADMIN ? STORE_PERSON_ADMIN : STORE_PERSON_TECHNICIAN;
  snprintf(p->added_by, sizeof(p->added_by), "%s", c->id.name);
  p->added_ms = (int64_t)broker_unix_ms();
  snprintf(p->note, sizeof(p->note), "%s", note);
  p->level = q->level ? (int)q->level : STORE_TICKET_LEVEL_MIN;
  x->level_given = q->level != 0;
  char level[4];
  snprintf(level, sizeof(level), "%d", p->level);
  x->h.req.audit = &x->h.audit;
  broker_audit_rec(&x->h.audit, c->id.name, "person-add", name, "role",
                   p->role == STORE_PERSON_ADMIN ? "admin" : "technician", "level", level, "note", note, AUDIT_END);
  return broker_creq_submit(x);
}

/* ---- people (admins): read on the reader thread ----------------------------------------- */

typedef struct {
  broker_creq_t h;
  char after[TT_NAME_MAX + 1];
  uint32_t n, cap;
  store_person_t rows[];  /* cap: one more than a page tells of a next one */
} list_req_t;

static int list_cb(void *ctx, const store_person_t *p) {
  list_req_t *x = ctx;
  if (x->n >= x->cap) return 1;
  x->rows[x->n++] = *p;
  return 0;
}

static int list_run(broker_store_t *s, store_req_t *r) {
  list_req_t *x = (list_req_t *)r;
  int rc = store_person_list(s, x->after, x->cap, list_cb, x);
  return rc < 0 ? rc : 0;
}

static void list_done(store_req_t *r) {
  list_req_t *x = (list_req_t *)r;
  broker_conn_t *c = broker_creq_conn(x);
  Tether__Person *ppl = NULL;
  Tether__Person **ptrs = NULL;
  if (!c) goto out;
  if (r->rc) {
    TT_ERROR(MOD, "store failed", "op=person_list err=%s", tt_errname(r->rc));
    answered(c, broker_reply_error(c, x->h.id, TT_EIO, "the broker could not read its store"));
    goto out;
  }
  uint32_t limit = x->cap - 1, n = x->n > limit ? limit : x->n;
  ppl = calloc(n ? n : 1, sizeof(*ppl));
  ptrs = calloc(n ? n : 1, sizeof(*ptrs));
  if (!ppl || !ptrs) {
    answered(c, TT_ENOMEM);
    goto out;
  }
  for (uint32_t i = 0; i < n; i++) {
    person_to_wire(&x->rows[i], &ppl[i]);
    ptrs[i] = &ppl[i];
  }
  Tether__PeopleList list = TETHER__PEOPLE_LIST__INIT;
  list.people = ptrs;
  list.n_people = n;
  list.more = x->n > limit;
  Tether__Response resp = TETHER__RESPONSE__INIT;
  resp.id = x->h.id;
  resp.body_case = TETHER__RESPONSE__BODY_PEOPLE_LIST;
  resp.people_list = &list;
  answered(c, tt_link_send(c->link, TT_K_RESPONSE, &resp.base));
out:
  free(ppl);
  free(ptrs);
  free(x);
}

static int on_list(broker_conn_t *c, uint32_t id, const Tether__PeopleListRequest *q) {
  char after[TT_NAME_MAX + 1] = "";
  if (q->after.len && tt_text_copy(after, sizeof(after), q->after))
    return broker_reply_error(c, id, TT_EINVAL, "paging name is not valid text");
  uint32_t limit = q->limit == 0 || q->limit > TT_PEOPLE_PAGE_MAX ? TT_PEOPLE_PAGE_MAX : q->limit;
  list_req_t *x = broker_creq_new(c, id, sizeof(*x) + (limit + 1) * sizeof(store_person_t), STORE_LANE_READ,
                                  list_run, list_done, "person_list");
  if (!x) return TT_ENOMEM;
  x->cap = limit + 1;
  snprintf(x->after, sizeof(x->after), "%s", after);
  return broker_creq_submit(x);
}

int broker_people_request(broker_conn_t *c, const Tether__Request *q) {
  switch (q->body_case) {
  case TETHER__REQUEST__BODY_PERSON_ADD: return on_add(c, q->id, q->person_add);
  case TETHER__REQUEST__BODY_PEOPLE_LIST: return on_list(c, q->id, q->people_list);
  default: return broker_reply_error(c, q->id, TT_EKIND, "unknown people request");
  }
}
