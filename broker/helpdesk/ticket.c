/* Help-desk tickets, the reason for every session: technicians and admins create, list and
 * show them and move them through open -> resolved -> closed (and back). Each change is one
 * store write (the row and its timeline event together) and one audit entry. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "broker.h"
#include "tt/log.h"
#include "tt/msg.h"

#define MOD "ticket"
#define TIX_ID_MAX 24 /* "T-" + 19 digits + NUL, with room */

static bool is_admin(const tt_identity_t *who) { return who->role == TT_ROLE_ADMIN; }

static void tix_name(char *buf, size_t cap, int64_t id) {
  snprintf(buf, cap, "T-%" PRId64, id);
}

static const char *state_name(store_ticket_state_t s) {
  switch (s) {
  case STORE_TICKET_OPEN: return "open";
  case STORE_TICKET_RESOLVED: return "resolved";
  case STORE_TICKET_CLOSED: return "closed";
  }
  return "unknown";
}

static const char *prio_name(store_ticket_priority_t p) {
  static const char *const names[] = {"low", "normal", "high", "urgent"};
  return (unsigned)p < 4 ? names[p] : "unknown";
}

/* The wire counts priorities from 1 with 0 meaning "the default"; the store from 0. */
static int prio_from_wire(Tether__TicketPriority p, store_ticket_priority_t *out) {
  switch (p) {
  case TETHER__TICKET_PRIORITY__TICKET_PRIORITY_UNSET:
  case TETHER__TICKET_PRIORITY__TICKET_NORMAL: *out = STORE_TICKET_NORMAL; return 0;
  case TETHER__TICKET_PRIORITY__TICKET_LOW: *out = STORE_TICKET_LOW; return 0;
  case TETHER__TICKET_PRIORITY__TICKET_HIGH: *out = STORE_TICKET_HIGH; return 0;
  case TETHER__TICKET_PRIORITY__TICKET_URGENT: *out = STORE_TICKET_URGENT; return 0;
  default: return TT_EINVAL;
  }
}

static Tether__TicketPriority prio_to_wire(store_ticket_priority_t p) {
  return (Tether__TicketPriority)((int)p + 1);
}

/* Copy text that may fill a buffer, cut at a UTF-8 character boundary if it does not fit. */
void broker_text_fit(char *dst, size_t cap, const char *src) {
  size_t n = strlen(src);
  if (n >= cap) {
    n = cap - 1;
    while (n > 0 && ((unsigned char)src[n] & 0xc0) == 0x80) n--;
  }
  memcpy(dst, src, n);
  dst[n] = '\0';
}

/* Strings point into t. */
void broker_ticket_to_wire(const store_ticket_t *t, Tether__Ticket *o) {
  tether__ticket__init(o);
  o->id = (uint64_t)t->id;
  o->device = tt_text(t->device);
  o->requester = tt_text(t->requester);
  o->assignee = tt_text(t->assignee);
  o->summary = tt_text(t->summary);
  o->external_id = tt_text(t->external_id);
  o->priority = prio_to_wire(t->priority);
  o->level = (uint32_t)t->level;
  o->state = (Tether__TicketState)t->state; /* same numbers on both sides */
  o->created_ms = (uint64_t)t->created_ms;
  o->updated_ms = (uint64_t)t->updated_ms;
  o->first_response_due_ms = (uint64_t)t->first_response_due_ms;
  o->resolution_due_ms = (uint64_t)t->resolution_due_ms;
  o->first_response_ms = (uint64_t)t->first_response_ms;
  o->resolved_ms = (uint64_t)t->resolved_ms;
  o->created_by = tt_text(t->created_by);
  o->source = tt_text(t->source);
  o->parent = (uint64_t)t->parent;
}

void broker_ticket_sla(broker_t *b, store_ticket_t *t, int64_t now_ms) {
  int64_t first = b->cfg.sla_first_response_ms[t->priority], fix = b->cfg.sla_resolution_ms[t->priority];
  t->first_response_due_ms = first > 0 ? now_ms + first : 0;
  t->resolution_due_ms = fix > 0 ? now_ms + fix : 0;
}

static int send_ticket(broker_conn_t *c, uint32_t id, const store_ticket_t *t) {
  Tether__Ticket o;
  broker_ticket_to_wire(t, &o);
  Tether__Response r = TETHER__RESPONSE__INIT;
  r.id = id;
  r.body_case = TETHER__RESPONSE__BODY_TICKET;
  r.ticket = &o;
  return tt_link_send(c->link, TT_K_RESPONSE, &r.base);
}

static int store_error(broker_conn_t *c, uint32_t id, int rc, const char *op) {
  TT_ERROR(MOD, "store failed", "op=%s err=%s", op, tt_errname(rc));
  return broker_reply_error(c, id, TT_EIO, "the broker could not use its store");
}

static int no_such_ticket(broker_conn_t *c, uint32_t id, uint64_t wire_id) {
  char msg[64];
  snprintf(msg, sizeof(msg), "no such ticket: T-%" PRIu64, wire_id);
  return broker_reply_error(c, id, TT_ENOTFOUND, msg);
}

/* Every answer here ends the same way: a send that fails closes the connection. */
static void answered(broker_conn_t *c, int rc) {
  if (rc) tt_link_close(c->link, rc, "peer not reading");
}

/* ---- new ------------------------------------------------------------------------------ */

/* Optional text: empty is fine; otherwise valid text that fits. */
static int opt_text(char *dst, size_t cap, ProtobufCBinaryData v) {
  dst[0] = '\0';
  return v.len ? tt_text_copy(dst, cap, v) : 0;
}

/* The device is checked and the ticket written, with its audit entry, in one request. */
typedef struct {
  broker_creq_t h;
  store_ticket_t t;
  int64_t now_ms;
} new_req_t;

static int new_run(broker_store_t *s, store_req_t *r) {
  new_req_t *x = (new_req_t *)r;
  store_device_t d;
  int rc = store_device_get(s, x->t.device, &d);
  if (rc) return rc;
  rc = store_ticket_add(s, &x->t, x->h.audit.actor, x->now_ms);
  if (rc) return rc;
  char name[TIX_ID_MAX];
  tix_name(name, sizeof(name), x->t.id);
  store_audit_rec_t *a = &x->h.audit;
  char actor[STORE_NAME_MAX];
  snprintf(actor, sizeof(actor), "%s", a->actor); /* a is rewritten below */
  broker_audit_rec(a, actor, "ticket-new", name, "device", x->t.device, "priority", prio_name(x->t.priority),
                   "assignee", x->t.assignee, "requester", x->t.requester, "external_id", x->t.external_id,
                   "summary", x->t.summary, AUDIT_END);
  return 0;
}

static void new_done(store_req_t *r) {
  new_req_t *x = (new_req_t *)r;
  broker_conn_t *c = broker_creq_conn(x);
  if (!c) goto out;
  if (r->rc == TT_ENOTFOUND) {
    char msg[TT_NAME_MAX + 32];
    snprintf(msg, sizeof(msg), "no such device: %s", x->t.device);
    answered(c, broker_reply_error(c, x->h.id, TT_ENOTFOUND, msg));
  } else if (r->rc) {
    answered(c, store_error(c, x->h.id, r->rc, "ticket_add"));
  } else {
    char name[TIX_ID_MAX];
    tix_name(name, sizeof(name), x->t.id);
    TT_INFO(MOD, "ticket created", "ticket=%s by=%s device=%s priority=%s", name, c->id.name, x->t.device,
            prio_name(x->t.priority));
    answered(c, send_ticket(c, x->h.id, &x->t));
  }
out:
  free(x);
}

static int on_new(broker_conn_t *c, uint32_t id, const Tether__TicketNewRequest *q) {
  broker_t *b = c->b;
  new_req_t *x = broker_creq_new(c, id, sizeof(*x), STORE_LANE_WRITE, new_run, new_done, "ticket_add");
  if (!x) return TT_ENOMEM;
  store_ticket_t *t = &x->t;
  int rc = 0;
  if (tt_text_copy(t->device, sizeof(t->device), q->device) || !t->device[0])
    rc = broker_reply_error(c, id, TT_EINVAL, "no valid device id");
  else if (!q->summary.len)
    rc = broker_reply_error(c, id, TT_EINVAL, "a ticket needs a summary");
  else if (tt_text_copy(t->summary, sizeof(t->summary), q->summary))
    rc = broker_reply_error(c, id, TT_ETEXT, "the summary must be at most 256 bytes of text without control characters");
  else if (opt_text(t->requester, sizeof(t->requester), q->requester))
    rc = broker_reply_error(c, id, TT_ETEXT, "the requester must be at most 64 bytes of text");
  else if (opt_text(t->external_id, sizeof(t->external_id), q->external_id))
    rc = broker_reply_error(c, id, TT_ETEXT, "the external id must be at most 64 bytes of text");
  else if (prio_from_wire(q->priority, &t->priority))
    rc = broker_reply_error(c, id, TT_EINVAL, "unknown priority: use low, normal, high or urgent");
  else
    goto valid;
  free(x);
  return rc;
valid:
  /* A technician's new ticket is theirs to work; an admin's waits in the queue. */
  if (c->id.role == TT_ROLE_TECHNICIAN) snprintf(t->assignee, sizeof(t->assignee), "%s", c->id.name);
  x->now_ms = (int64_t)broker_unix_ms();
  broker_ticket_sla(b, t, x->now_ms);
  t->state = STORE_TICKET_OPEN;
  t->level = STORE_TICKET_LEVEL_MIN;
  x->h.req.audit = &x->h.audit;
  broker_audit_rec(&x->h.audit, c->id.name, "ticket-new", "", AUDIT_END); /* completed by new_run */
  return broker_creq_submit(x);
}

/* ---- list ----------------------------------------------------------------------------- */

typedef struct {
  broker_creq_t h;
  store_ticket_filter_t f;
  char device[TT_NAME_MAX + 1], assignee[TT_NAME_MAX + 1];
  uint32_t n, cap;
  store_ticket_t rows[];  /* cap: one more than a page tells of a next one */
} list_req_t;

static int tix_page_cb(void *ctx, const store_ticket_t *t) {
  list_req_t *x = ctx;
  if (x->n >= x->cap) return 1;
  x->rows[x->n++] = *t;
  return 0;
}

#define STATE_BITS_KNOWN                                                                      \
  (STORE_TICKET_STATE_BIT(STORE_TICKET_OPEN) | STORE_TICKET_STATE_BIT(STORE_TICKET_RESOLVED) | \
   STORE_TICKET_STATE_BIT(STORE_TICKET_CLOSED))

static int list_run(broker_store_t *s, store_req_t *r) {
  list_req_t *x = (list_req_t *)r;
  int rc = store_ticket_list(s, &x->f, tix_page_cb, x);
  return rc < 0 ? rc : 0;
}

static void list_done(store_req_t *r) {
  list_req_t *x = (list_req_t *)r;
  broker_conn_t *c = broker_creq_conn(x);
  Tether__Ticket *tix = NULL;
  Tether__Ticket **ptrs = NULL;
  if (!c) goto out;
  if (r->rc) {
    answered(c, store_error(c, x->h.id, r->rc, "ticket_list"));
    goto out;
  }
  uint32_t limit = x->cap - 1, n = x->n > limit ? limit : x->n;
  tix = calloc(n ? n : 1, sizeof(*tix));
  ptrs = calloc(n ? n : 1, sizeof(*ptrs));
  if (!tix || !ptrs) {
    answered(c, TT_ENOMEM);
    goto out;
  }
  for (uint32_t i = 0; i < n; i++) {
    broker_ticket_to_wire(&x->rows[i], &tix[i]);
    ptrs[i] = &tix[i];
  }
  Tether__TicketList list = TETHER__TICKET_LIST__INIT;
  list.tickets = ptrs;
  list.n_tickets = n;
  list.more = x->n > limit;
  Tether__Response resp = TETHER__RESPONSE__INIT;
  resp.id = x->h.id;
  resp.body_case = TETHER__RESPONSE__BODY_TICKET_LIST;
  resp.ticket_list = &list;
  answered(c, tt_link_send(c->link, TT_K_RESPONSE, &resp.base));
out:
  free(tix);
  free(ptrs);
  free(x);
}

static int on_list(broker_conn_t *c, uint32_t id, const Tether__TicketListRequest *q) {
  char dev[TT_NAME_MAX + 1] = "";
  if (q->device.len && tt_text_copy(dev, sizeof(dev), q->device))
    return broker_reply_error(c, id, TT_EINVAL, "no valid device id");
  if (q->state_mask & ~(uint32_t)STATE_BITS_KNOWN)
    return broker_reply_error(c, id, TT_EINVAL, "unknown ticket state in the filter");
  if (q->after_id > (uint64_t)INT64_MAX) return broker_reply_error(c, id, TT_EINVAL, "paging id out of range");
  uint32_t limit = q->limit == 0 || q->limit > TT_TICKET_PAGE_MAX ? TT_TICKET_PAGE_MAX : q->limit;
  list_req_t *x = broker_creq_new(c, id, sizeof(*x) + (limit + 1) * sizeof(store_ticket_t), STORE_LANE_READ,
                                  list_run, list_done, "ticket_list");
  if (!x) return TT_ENOMEM;
  x->cap = limit + 1;
  snprintf(x->device, sizeof(x->device), "%s", dev);
  snprintf(x->assignee, sizeof(x->assignee), "%s", c->id.name);
  x->f = (store_ticket_filter_t){.state_mask = q->state_mask, .assignee = q->mine ? x->assignee : NULL,
                                 .device = x->device[0] ? x->device : NULL, .limit = x->cap,
                                 .after_id = (int64_t)q->after_id};
  return broker_creq_submit(x);
}

/* ---- show ----------------------------------------------------------------------------- */

/* Alerts one ticket lists (a storm's are counted by its children and timeline). */
#define SHOW_ALERTS_MAX 64u

typedef struct {
  broker_creq_t h;
  uint64_t wire_id;
  store_ticket_t t;
  uint32_t n, total, narticles;
  store_ticket_event_t rows[TT_TICKET_EVENTS_PAGE_MAX];
  store_kb_hit_t articles[TT_KB_LINKS_MAX + TT_KB_HITS_MAX]; /* that solved it; then for its alerts' check */
  uint32_t nlinked;
  int64_t children[TT_TICKET_CHILDREN_MAX]; /* a storm's member tickets */
  size_t nchildren;
  uint32_t children_total;
  int64_t alerts[SHOW_ALERTS_MAX];          /* alerts whose ticket (or storm) this is */
  size_t nalerts;
} show_req_t;

static int kb_linked_cb(void *ctx, const store_kb_hit_t *h) {
  show_req_t *x = ctx;
  if (x->narticles >= TT_KB_LINKS_MAX) return 1;
  x->articles[x->narticles++] = *h;
  return 0;
}

/* An article for the check an alert of this ticket is about (not one linked already). */
static int kb_check_cb(void *ctx, const store_kb_hit_t *h) {
  show_req_t *x = ctx;
  if (x->narticles >= x->nlinked + TT_KB_HITS_MAX) return 1;
  for (uint32_t i = 0; i < x->narticles; i++)
    if (x->articles[i].id == h->id) return 0;
  x->articles[x->narticles++] = *h;
  return 0;
}

static int tev_page_cb(void *ctx, const store_ticket_event_t *e) {
  show_req_t *x = ctx;
  if (x->n >= TT_TICKET_EVENTS_PAGE_MAX) return 1;
  x->rows[x->n++] = *e;
  return 0;
}

static int show_run(broker_store_t *s, store_req_t *r) {
  show_req_t *x = (show_req_t *)r;
  int rc = store_ticket_get(s, (int64_t)x->wire_id, &x->t);
  if (rc) return rc;
  rc = store_ticket_events_tail(s, x->t.id, TT_TICKET_EVENTS_PAGE_MAX, tev_page_cb, x, &x->total);
  if (rc >= 0) rc = store_kb_for_ticket(s, x->t.id, kb_linked_cb, x);
  x->nlinked = x->narticles;
  if (rc >= 0) rc = store_ticket_children(s, x->t.id, x->children, TT_TICKET_CHILDREN_MAX, &x->nchildren,
                                          &x->children_total);
  if (rc >= 0) rc = store_alerts_of_ticket(s, x->t.id, x->alerts, SHOW_ALERTS_MAX, &x->nalerts);
  /* A ticket a health check raised shows the articles written for that check. */
  if (rc >= 0 && x->nalerts) {
    store_alert_t a;
    rc = store_alert_get(s, x->alerts[0], &a);
    if (rc == 0) rc = store_kb_for_check(s, a.check, kb_check_cb, x);
  }
  return rc < 0 ? rc : 0;
}

static void show_done(store_req_t *r) {
  show_req_t *x = (show_req_t *)r;
  broker_conn_t *c = broker_creq_conn(x);
  Tether__TicketEvent *evs = NULL;
  Tether__TicketEvent **ptrs = NULL;
  Tether__KbHit arts[TT_KB_LINKS_MAX + TT_KB_HITS_MAX], *art_ptrs[TT_KB_LINKS_MAX + TT_KB_HITS_MAX];
  ProtobufCBinaryData art_checks[TT_KB_LINKS_MAX + TT_KB_HITS_MAX][TT_KB_CHECKS_MAX];
  if (!c) goto out;
  if (r->rc == TT_ENOTFOUND) {
    answered(c, no_such_ticket(c, x->h.id, x->wire_id));
    goto out;
  }
  if (r->rc) {
    answered(c, store_error(c, x->h.id, r->rc, "ticket_show"));
    goto out;
  }
  evs = calloc(x->n ? x->n : 1, sizeof(*evs));
  ptrs = calloc(x->n ? x->n : 1, sizeof(*ptrs));
  if (!evs || !ptrs) {
    answered(c, TT_ENOMEM);
    goto out;
  }
  for (uint32_t i = 0; i < x->n; i++) {
    store_ticket_event_t *e = &x->rows[i];
    tether__ticket_event__init(&evs[i]);
    evs[i].id = (uint64_t)e->id;
    evs[i].ts_ms = (uint64_t)e->ts_ms;
    evs[i].actor = tt_text(e->actor);
    evs[i].kind = tt_text(e->kind);
    evs[i].text = tt_text(e->text);
    ptrs[i] = &evs[i];
  }
  Tether__Ticket o;
  broker_ticket_to_wire(&x->t, &o);
  Tether__TicketDetail det = TETHER__TICKET_DETAIL__INIT;
  det.ticket = &o;
  det.events = ptrs;
  det.n_events = x->n;
  det.events_total = x->total;
  for (uint32_t i = 0; i < x->narticles; i++) {
    broker_kb_hit_to_wire(&x->articles[i], &arts[i], art_checks[i], i < x->nlinked);
    art_ptrs[i] = &arts[i];
  }
  det.articles = art_ptrs;
  det.n_articles = x->narticles;
  det.children = (uint64_t *)x->children;
  det.n_children = x->nchildren;
  det.children_total = x->children_total;
  det.alerts = (uint64_t *)x->alerts;
  det.n_alerts = x->nalerts;
  Tether__Response resp = TETHER__RESPONSE__INIT;
  resp.id = x->h.id;
  resp.body_case = TETHER__RESPONSE__BODY_TICKET_DETAIL;
  resp.ticket_detail = &det;
  answered(c, tt_link_send(c->link, TT_K_RESPONSE, &resp.base));
out:
  free(evs);
  free(ptrs);
  free(x);
}

static int on_show(broker_conn_t *c, uint32_t id, const Tether__TicketShowRequest *q) {
  /* A ticket id from the wire: 0 or beyond int64 names no ticket. */
  if (q->id == 0 || q->id > (uint64_t)INT64_MAX) return no_such_ticket(c, id, q->id);
  show_req_t *x = broker_creq_new(c, id, sizeof(*x), STORE_LANE_READ, show_run, show_done, "ticket_show");
  if (!x) return TT_ENOMEM;
  x->wire_id = q->id;
  return broker_creq_submit(x);
}

/* ---- update --------------------------------------------------------------------------- */

/* What one update does, worked out before anything is written. */
typedef struct {
  store_ticket_t t;             /* the ticket as it will be */
  const char *kind;             /* timeline event */
  const char *action;           /* audit action, by op */
  char text[STORE_TEXT_MAX];    /* event text */
  char note[STORE_TEXT_MAX];    /* the request's text, validated */
  const char *end_reason;       /* sessions of the ticket end with this (resolve, close) */
  int err;                      /* refused: code and message */
  char msg[192];
} tix_change_t;

static void refuse(tix_change_t *x, int err, const char *fmt, ...) TT_PRINTF(3, 4);
static void refuse(tix_change_t *x, int err, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(x->msg, sizeof(x->msg), fmt, ap);
  va_end(ap);
  x->err = err;
}

/* A technician works tickets assigned to them; admins work any. Returns false (refused)
 * when c may not change t; unassigned_ok lets technicians act on unassigned ones too. */
static bool may_work(const tt_identity_t *c, tix_change_t *x, const char *name, bool unassigned_ok) {
  const store_ticket_t *t = &x->t;
  if (is_admin(c) || strcmp(t->assignee, c->name) == 0) return true;
  if (!t->assignee[0]) {
    if (unassigned_ok) return true;
    refuse(x, TT_EDENIED, "%s is not assigned to you: assign it first", name);
  } else {
    refuse(x, TT_EDENIED, "%s is assigned to %s", name, t->assignee);
  }
  return false;
}

static bool want_state(tix_change_t *x, const char *name, unsigned mask) {
  if (STORE_TICKET_STATE_BIT(x->t.state) & mask) return true;
  refuse(x, TT_EINVAL, "%s is %s", name, state_name(x->t.state));
  return false;
}

#define BIT_OPEN STORE_TICKET_STATE_BIT(STORE_TICKET_OPEN)
#define BIT_RESOLVED STORE_TICKET_STATE_BIT(STORE_TICKET_RESOLVED)
#define BIT_CLOSED STORE_TICKET_STATE_BIT(STORE_TICKET_CLOSED)

/* The assignee must be someone the broker knows (seen at connect, or added by an admin) and
 * not revoked: read in the update's own store request, so a revocation or an add cannot
 * land between the check and the write. Non-zero only for a store failure. */
static int assignable(broker_store_t *s, tix_change_t *x, const char *to) {
  store_person_t p;
  int rc = store_person_get(s, to, &p);
  if (rc == TT_ENOTFOUND) {
    refuse(x, TT_EINVAL, "%s is not a person this broker knows (an admin adds people with `tether person add`)",
           to);
    return 0;
  }
  if (rc) return rc;
  if (p.revoked) refuse(x, TT_EINVAL, "%s was revoked", to);
  return 0;
}

static int op_assign(broker_store_t *s, const tt_identity_t *c, tix_change_t *x, const char *name) {
  if (!tt_name_valid(x->note)) {
    refuse(x, TT_EINVAL, "assign to whom? a person's name (letters, digits, . _ @ -)");
    return 0;
  }
  char to[STORE_NAME_MAX];
  broker_text_fit(to, sizeof(to), x->note); /* tt_name_valid: it fits */
  if (!want_state(x, name, BIT_OPEN)) return 0;
  /* A technician takes a ticket for themselves (unassigned, or theirs already) or escalates
   * it; handing it to a named colleague is an admin's call, so that no ticket lands on
   * someone who did not take it and only an admin could take it back. */
  bool self = strcmp(to, c->name) == 0;
  if (!is_admin(c) && !self) {
    refuse(x, TT_EDENIED, "technicians take tickets for themselves or escalate them; only an admin assigns to a colleague");
    return 0;
  }
  if (!may_work(c, x, name, true)) return 0;
  if (strcmp(x->t.assignee, to) == 0) {
    refuse(x, TT_EINVAL, "%s is already assigned to %s", name, to);
    return 0;
  }
  int rc = assignable(s, x, to);
  if (rc || x->err) return rc;
  char text[STORE_NAME_MAX * 2 + 8];
  snprintf(text, sizeof(text), "%s%s%s%s", to, x->t.assignee[0] ? " (was " : "", x->t.assignee,
           x->t.assignee[0] ? ")" : "");
  broker_text_fit(x->text, sizeof(x->text), text);
  /* Sessions were granted to work this ticket as its assignee: handed on, they end. */
  if (x->t.assignee[0]) x->end_reason = "ticket reassigned";
  memcpy(x->t.assignee, to, sizeof(to));
  x->kind = "assigned";
  return 0;
}

static void op_escalate(const tt_identity_t *c, tix_change_t *x, const char *name, uint32_t level) {
  if (level < STORE_TICKET_LEVEL_MIN || level > STORE_TICKET_LEVEL_MAX) {
    refuse(x, TT_EINVAL, "support levels are 1, 2 and 3");
    return;
  }
  if (!want_state(x, name, BIT_OPEN) || !may_work(c, x, name, false)) return;
  if ((int)level == x->t.level) {
    refuse(x, TT_EINVAL, "%s is already at level %u", name, level);
    return;
  }
  char text[STORE_TEXT_MAX + 32];
  snprintf(text, sizeof(text), "level %d -> %u%s%s", x->t.level, level, x->note[0] ? ": " : "", x->note);
  broker_text_fit(x->text, sizeof(x->text), text);
  x->t.level = (int)level;
  x->kind = "escalated";
}

static void op_comment(const tt_identity_t *c, tix_change_t *x, const char *name, int64_t now, bool public) {
  if (!x->note[0]) {
    refuse(x, TT_EINVAL, "a comment needs text");
    return;
  }
  if (!may_work(c, x, name, true)) return;
  snprintf(x->text, sizeof(x->text), "%s", x->note);
  if (x->t.first_response_ms == 0) x->t.first_response_ms = now;
  /* A public comment is for the requester too: their agent shows it (tether-agent tickets). */
  x->kind = public ? STORE_EVENT_PUBLIC_COMMENT : "comment";
}

static void op_state(const tt_identity_t *c, tix_change_t *x, const char *name, Tether__TicketOp op,
                     int64_t now) {
  unsigned from;
  store_ticket_state_t to;
  switch (op) {
  case TETHER__TICKET_OP__TICKET_RESOLVE:
    from = BIT_OPEN, to = STORE_TICKET_RESOLVED;
    x->kind = "resolved", x->end_reason = "ticket resolved";
    break;
  case TETHER__TICKET_OP__TICKET_CLOSE:
    from = BIT_OPEN | BIT_RESOLVED, to = STORE_TICKET_CLOSED;
    x->kind = "closed", x->end_reason = "ticket closed";
    break;
  default: /* reopen */
    from = BIT_RESOLVED | BIT_CLOSED, to = STORE_TICKET_OPEN;
    x->kind = "reopened";
    break;
  }
  if (!want_state(x, name, from) || !may_work(c, x, name, false)) return;
  x->t.state = to;
  if (to == STORE_TICKET_RESOLVED) x->t.resolved_ms = now;
  if (to == STORE_TICKET_OPEN) x->t.resolved_ms = 0;
  snprintf(x->text, sizeof(x->text), "%s", x->note);
}

/* A knowledge-base article solved the ticket (link), or did not after all (unlink): whoever
 * may comment may link, in any state (a resolved ticket is when the fix is known). The link
 * is written in the update's own request, with the ticket's event and audit entry. */
static int op_link(broker_store_t *s, const tt_identity_t *c, tix_change_t *x, const char *name, uint64_t article,
                   bool link, int64_t now) {
  if (!may_work(c, x, name, true)) return 0;
  char kb[32], title[STORE_KB_TITLE_MAX + 1] = "";
  snprintf(kb, sizeof(kb), "KB-%" PRIu64, article);
  int rc = TT_ENOTFOUND;
  if (article && article <= (uint64_t)INT64_MAX) rc = store_kb_title(s, (int64_t)article, title, sizeof(title));
  if (rc == TT_ENOTFOUND) refuse(x, TT_ENOTFOUND, "no such article: %s", kb);
  if (rc) return x->err ? 0 : rc;
  rc = link ? store_kb_link(s, x->t.id, (int64_t)article, c->name, now) : store_kb_unlink(s, x->t.id, (int64_t)article);
  if (rc == -EEXIST) refuse(x, TT_EINVAL, "%s is already linked to %s", kb, name);
  else if (rc == TT_ENOTFOUND) refuse(x, TT_EINVAL, "%s is not linked to %s", kb, name);
  else if (rc == TT_ETOOBIG) refuse(x, TT_ETOOBIG, "%s links %u articles already: unlink one first", name, TT_KB_LINKS_MAX);
  else if (rc) return rc;
  if (x->err) return 0;
  char text[STORE_TEXT_MAX + 40];
  snprintf(text, sizeof(text), "%s %s", kb, title);
  broker_text_fit(x->text, sizeof(x->text), text);
  x->kind = link ? "kb-linked" : "kb-unlinked";
  return 0;
}

/* A hold keeps the ticket's records past retention (records/retention.c): an admin's, with a
 * reason; the timeline says who held it and why, and when it was released. */
static int op_hold(broker_store_t *s, const tt_identity_t *c, tix_change_t *x, const char *name, bool hold,
                   int64_t now) {
  if (!is_admin(c)) {
    refuse(x, TT_EDENIED, "holding a ticket's records needs the admin role");
    return 0;
  }
  if (hold && !x->note[0]) {
    refuse(x, TT_EINVAL, "say why %s is held (--reason): a legal hold, an investigation", name);
    return 0;
  }
  int rc = hold ? store_hold_set(s, x->t.id, x->note, c->name, now) : store_hold_clear(s, x->t.id);
  if (rc == -EEXIST) refuse(x, TT_EINVAL, "%s is on hold already", name);
  else if (rc == TT_ENOTFOUND) refuse(x, TT_EINVAL, "%s is not on hold", name);
  else if (rc) return rc;
  if (x->err) return 0;
  broker_text_fit(x->text, sizeof(x->text), hold ? x->note : "");
  x->kind = hold ? "held" : "released";
  return 0;
}

/* The ticket is read, the change worked out and written with its audit entry in one store
 * request: two updates of one ticket can never both start from the same old row. */
typedef struct {
  broker_creq_t h;
  tt_identity_t who;
  uint64_t wire_id;
  uint64_t article;
  Tether__TicketOp op;
  uint32_t level;
  bool public;
  bool wait;            /* a public comment that waits on the requester's answer */
  int64_t now_ms;
  tix_change_t x;
} update_req_t;

static int update_run(broker_store_t *s, store_req_t *r) {
  update_req_t *u = (update_req_t *)r;
  tix_change_t *x = &u->x;
  int rc = store_ticket_get(s, (int64_t)u->wire_id, &x->t);
  if (rc) return rc;
  char name[TIX_ID_MAX];
  tix_name(name, sizeof(name), x->t.id);
  char prev_assignee[STORE_NAME_MAX];
  snprintf(prev_assignee, sizeof(prev_assignee), "%s", x->t.assignee);
  switch (u->op) {
  case TETHER__TICKET_OP__TICKET_ASSIGN:
    rc = op_assign(s, &u->who, x, name);
    if (rc) return rc;
    break;
  case TETHER__TICKET_OP__TICKET_ESCALATE: op_escalate(&u->who, x, name, u->level); break;
  case TETHER__TICKET_OP__TICKET_COMMENT: op_comment(&u->who, x, name, u->now_ms, u->public); break;
  case TETHER__TICKET_OP__TICKET_LINK:
  case TETHER__TICKET_OP__TICKET_UNLINK:
    rc = op_link(s, &u->who, x, name, u->article, u->op == TETHER__TICKET_OP__TICKET_LINK, u->now_ms);
    if (rc) return rc;
    break;
  case TETHER__TICKET_OP__TICKET_HOLD:
  case TETHER__TICKET_OP__TICKET_RELEASE:
    rc = op_hold(s, &u->who, x, name, u->op == TETHER__TICKET_OP__TICKET_HOLD, u->now_ms);
    if (rc) return rc;
    break;
  default: op_state(&u->who, x, name, u->op, u->now_ms); break;
  }
  if (x->err) return TT_ESTATE; /* refused: x says why; nothing is written */
  rc = store_ticket_update(s, &x->t, u->who.name, x->kind, x->text, u->now_ms);
  if (rc) return rc;
  /* A question for the requester: from here the ticket waits on them until they answer (or
   * it is resolved); reports count that time apart. */
  if (u->wait) rc = store_ticket_event_add(s, x->t.id, u->now_ms, u->who.name, STORE_EVENT_WAITING, "");
  if (rc) return rc;
  x->t.updated_ms = u->now_ms;
  char level[16];
  snprintf(level, sizeof(level), "%d", x->t.level);
  broker_audit_rec(&u->h.audit, u->who.name, x->action, name, "device", x->t.device, "state",
                   state_name(x->t.state), "assignee", x->t.assignee, "previous_assignee", prev_assignee,
                   "level", level, "public", u->public ? "yes" : "no", "wait", u->wait ? "yes" : "no", "text", x->text,
                   AUDIT_END);
  return 0;
}

static void update_done(store_req_t *r) {
  update_req_t *u = (update_req_t *)r;
  tix_change_t *x = &u->x;
  broker_t *b = u->h.c->b;
  broker_conn_t *c = broker_creq_conn(u);
  char name[TIX_ID_MAX];
  tix_name(name, sizeof(name), x->t.id ? x->t.id : (int64_t)u->wire_id);
  if (r->rc == 0) {
    TT_INFO(MOD, "ticket updated", "ticket=%s by=%s op=%s state=%s assignee=%s", name, u->who.name, x->kind,
            state_name(x->t.state), x->t.assignee);
    /* Resolving, closing or reassigning voids the ticket's grants and ends its channels now. */
    if (x->end_reason) broker_sessions_end_ticket(b, x->t.id, u->who.name, x->end_reason);
    /* What the requester may see reaches their prompt (public comments with their text). */
    bool public = strcmp(x->kind, STORE_EVENT_PUBLIC_COMMENT) == 0;
    if (public || !strcmp(x->kind, "resolved") || !strcmp(x->kind, "reopened") || !strcmp(x->kind, "closed"))
      broker_help_notice(b, &x->t, x->kind, u->who.name, public ? x->text : "");
  } else if (x->err == TT_EDENIED) {
    broker_audit(b, u->who.name, "refuse", name, "request", x->action, "why", x->msg, AUDIT_END);
  }
  if (!c) goto out;
  if (r->rc == 0) answered(c, send_ticket(c, u->h.id, &x->t));
  else if (x->err) answered(c, broker_reply_error(c, u->h.id, x->err, x->msg));
  else if (r->rc == TT_ENOTFOUND) answered(c, no_such_ticket(c, u->h.id, u->wire_id));
  else answered(c, store_error(c, u->h.id, r->rc, "ticket_update"));
out:
  free(u);
}

static int on_update(broker_conn_t *c, uint32_t id, const Tether__TicketUpdateRequest *q) {
  if (q->id == 0 || q->id > (uint64_t)INT64_MAX) return no_such_ticket(c, id, q->id);
  static const char *const actions[] = {
      [TETHER__TICKET_OP__TICKET_ASSIGN] = "ticket-assign",
      [TETHER__TICKET_OP__TICKET_ESCALATE] = "ticket-escalate",
      [TETHER__TICKET_OP__TICKET_COMMENT] = "ticket-comment",
      [TETHER__TICKET_OP__TICKET_RESOLVE] = "ticket-resolve",
      [TETHER__TICKET_OP__TICKET_CLOSE] = "ticket-close",
      [TETHER__TICKET_OP__TICKET_REOPEN] = "ticket-reopen",
      [TETHER__TICKET_OP__TICKET_LINK] = "ticket-link",
      [TETHER__TICKET_OP__TICKET_UNLINK] = "ticket-unlink",
      [TETHER__TICKET_OP__TICKET_HOLD] = "ticket-hold",
      [TETHER__TICKET_OP__TICKET_RELEASE] = "ticket-release",
  };
  if ((unsigned)q->op >= sizeof(actions) / sizeof(actions[0]) || !actions[q->op])
    return broker_reply_error(c, id, TT_EINVAL, "unknown ticket operation");
  if (q->wait && (q->op != TETHER__TICKET_OP__TICKET_COMMENT || !q->public_))
    return broker_reply_error(c, id, TT_EINVAL, "only a public comment waits on the requester");
  update_req_t *u = broker_creq_new(c, id, sizeof(*u), STORE_LANE_WRITE, update_run, update_done, "ticket_update");
  if (!u) return TT_ENOMEM;
  if (opt_text(u->x.note, sizeof(u->x.note), q->text)) {
    free(u);
    return broker_reply_error(c, id, TT_ETEXT, "the text must be at most 256 bytes without control characters");
  }
  u->who = c->id;
  u->wire_id = q->id;
  u->article = q->article;
  u->op = q->op;
  u->level = q->level;
  u->public = q->public_;
  u->wait = q->wait;
  u->now_ms = (int64_t)broker_unix_ms();
  u->x.action = actions[q->op];
  u->h.req.audit = &u->h.audit;
  return broker_creq_submit(u);
}

int broker_ticket_request(broker_conn_t *c, const Tether__Request *q) {
  switch (q->body_case) {
  case TETHER__REQUEST__BODY_TICKET_NEW: return on_new(c, q->id, q->ticket_new);
  case TETHER__REQUEST__BODY_TICKET_LIST: return on_list(c, q->id, q->ticket_list);
  case TETHER__REQUEST__BODY_TICKET_SHOW: return on_show(c, q->id, q->ticket_show);
  case TETHER__REQUEST__BODY_TICKET_UPDATE: return on_update(c, q->id, q->ticket_update);
  default: return broker_reply_error(c, q->id, TT_EKIND, "unknown ticket request");
  }
}

/* ---- for sessions ----------------------------------------------------------------------- */

/* A timeline event, or (responded) the ticket's first response: queued, nobody waits. */
typedef struct {
  store_req_t req;
  bool responded;
  int64_t ticket, ts_ms;
  char actor[STORE_NAME_MAX], kind[STORE_NAME_MAX], text[STORE_TEXT_MAX];
} event_req_t;

static int event_run(broker_store_t *s, store_req_t *r) {
  event_req_t *x = (event_req_t *)r;
  if (x->responded) return store_ticket_responded(s, x->ticket, x->ts_ms);
  return store_ticket_event_add(s, x->ticket, x->ts_ms, x->actor, x->kind, x->text);
}

static event_req_t *event_new(int64_t ticket, const char *actor, const char *kind) {
  event_req_t *x = calloc(1, sizeof(*x));
  if (!x) return NULL;
  x->req.run = event_run;
  x->responded = !kind || !kind[0];
  x->req.what = x->responded ? "ticket_responded" : "ticket_event";
  x->ticket = ticket;
  x->ts_ms = (int64_t)broker_unix_ms();
  broker_text_fit(x->actor, sizeof(x->actor), actor ? actor : "");
  broker_text_fit(x->kind, sizeof(x->kind), kind ? kind : "");
  return x;
}

int broker_ticket_event(broker_t *b, int64_t ticket, const char *actor, const char *kind, const char *fmt,
                        ...) {
  if (!kind || !kind[0]) return TT_EINVAL;
  event_req_t *x = event_new(ticket, actor, kind);
  if (!x) {
    TT_ERROR(MOD, "ticket event not written", "ticket=T-%" PRId64 " kind=%s err=%s", ticket, kind,
             tt_errname(TT_ENOMEM));
    return TT_ENOMEM;
  }
  char buf[STORE_TEXT_MAX + 64];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof(buf), fmt, ap);
  va_end(ap);
  if (n < 0) buf[0] = '\0';
  broker_text_fit(x->text, sizeof(x->text), buf);
  broker_store_later(b, &x->req);
  return 0;
}

void broker_ticket_responded(broker_t *b, int64_t ticket) {
  event_req_t *x = event_new(ticket, "", "");
  if (!x) {
    TT_ERROR(MOD, "first response not recorded", "ticket=T-%" PRId64 " err=%s", ticket, tt_errname(TT_ENOMEM));
    return;
  }
  broker_store_later(b, &x->req);
}
