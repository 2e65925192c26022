/* Help-desk tickets, the reason for every session: technicians and admins create, list and
 * show them and move them through open -> resolved -> closed (and back). Each change is one
 * store write (the row and its timeline event together) and one audit entry. */
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

static bool is_admin(const broker_conn_t *c) { return c->id.role == TT_ROLE_ADMIN; }

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
static void text_fit(char *dst, size_t cap, const char *src) {
  size_t n = strlen(src);
  if (n >= cap) {
    n = cap - 1;
    while (n > 0 && ((unsigned char)src[n] & 0xc0) == 0x80) n--;
  }
  memcpy(dst, src, n);
  dst[n] = '\0';
}

/* Strings point into t. */
static void ticket_to_wire(const store_ticket_t *t, Tether__Ticket *o) {
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
}

static int send_ticket(broker_conn_t *c, uint32_t id, const store_ticket_t *t) {
  Tether__Ticket o;
  ticket_to_wire(t, &o);
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

/* A ticket id from the wire: 0 or beyond int64 names no ticket. */
static int load_ticket(broker_conn_t *c, uint32_t id, uint64_t wire_id, store_ticket_t *t,
                       bool *answered) {
  *answered = true;
  char name[TIX_ID_MAX];
  snprintf(name, sizeof(name), "T-%" PRIu64, wire_id);
  char msg[64];
  snprintf(msg, sizeof(msg), "no such ticket: %s", name);
  if (wire_id == 0 || wire_id > (uint64_t)INT64_MAX) return broker_reply_error(c, id, TT_ENOTFOUND, msg);
  int rc = store_ticket_get(c->b->store, (int64_t)wire_id, t);
  if (rc == TT_ENOTFOUND) return broker_reply_error(c, id, TT_ENOTFOUND, msg);
  if (rc) return store_error(c, id, rc, "ticket_get");
  *answered = false;
  return 0;
}

/* ---- new ------------------------------------------------------------------------------ */

/* Optional text: empty is fine; otherwise valid text that fits. */
static int opt_text(char *dst, size_t cap, ProtobufCBinaryData v) {
  dst[0] = '\0';
  return v.len ? tt_text_copy(dst, cap, v) : 0;
}

static int on_new(broker_conn_t *c, uint32_t id, const Tether__TicketNewRequest *q) {
  broker_t *b = c->b;
  store_ticket_t t;
  memset(&t, 0, sizeof(t));
  if (tt_text_copy(t.device, sizeof(t.device), q->device) || !t.device[0])
    return broker_reply_error(c, id, TT_EINVAL, "no valid device id");
  store_device_t d;
  int rc = store_device_get(b->store, t.device, &d);
  if (rc == TT_ENOTFOUND) {
    char msg[TT_NAME_MAX + 32];
    snprintf(msg, sizeof(msg), "no such device: %s", t.device);
    return broker_reply_error(c, id, TT_ENOTFOUND, msg);
  }
  if (rc) return store_error(c, id, rc, "device_get");
  if (!q->summary.len) return broker_reply_error(c, id, TT_EINVAL, "a ticket needs a summary");
  if (tt_text_copy(t.summary, sizeof(t.summary), q->summary))
    return broker_reply_error(c, id, TT_ETEXT,
                              "the summary must be at most 256 bytes of text without control characters");
  if (opt_text(t.requester, sizeof(t.requester), q->requester))
    return broker_reply_error(c, id, TT_ETEXT, "the requester must be at most 64 bytes of text");
  if (opt_text(t.external_id, sizeof(t.external_id), q->external_id))
    return broker_reply_error(c, id, TT_ETEXT, "the external id must be at most 64 bytes of text");
  if (prio_from_wire(q->priority, &t.priority))
    return broker_reply_error(c, id, TT_EINVAL, "unknown priority: use low, normal, high or urgent");
  /* A technician's new ticket is theirs to work; an admin's waits in the queue. */
  if (c->id.role == TT_ROLE_TECHNICIAN) snprintf(t.assignee, sizeof(t.assignee), "%s", c->id.name);
  int64_t now = (int64_t)broker_unix_ms();
  int64_t first = b->cfg.sla_first_response_ms[t.priority], fix = b->cfg.sla_resolution_ms[t.priority];
  t.first_response_due_ms = first > 0 ? now + first : 0;
  t.resolution_due_ms = fix > 0 ? now + fix : 0;
  t.state = STORE_TICKET_OPEN;
  t.level = STORE_TICKET_LEVEL_MIN;
  rc = store_ticket_add(b->store, &t, c->id.name, now);
  if (rc) return store_error(c, id, rc, "ticket_add");
  char name[TIX_ID_MAX];
  tix_name(name, sizeof(name), t.id);
  broker_audit(b, c->id.name, "ticket-new", name, "device", t.device, "priority", prio_name(t.priority),
               "assignee", t.assignee, "requester", t.requester, "external_id", t.external_id,
               "summary", t.summary, AUDIT_END);
  TT_INFO(MOD, "ticket created", "ticket=%s by=%s device=%s priority=%s", name, c->id.name, t.device,
          prio_name(t.priority));
  return send_ticket(c, id, &t);
}

/* ---- list ----------------------------------------------------------------------------- */

typedef struct {
  store_ticket_t *rows;
  uint32_t n, cap;
} tix_page_t;

static int tix_page_cb(void *ctx, const store_ticket_t *t) {
  tix_page_t *p = ctx;
  if (p->n >= p->cap) return 1;
  p->rows[p->n++] = *t;
  return 0;
}

#define STATE_BITS_KNOWN                                                                      \
  (STORE_TICKET_STATE_BIT(STORE_TICKET_OPEN) | STORE_TICKET_STATE_BIT(STORE_TICKET_RESOLVED) | \
   STORE_TICKET_STATE_BIT(STORE_TICKET_CLOSED))

static int on_list(broker_conn_t *c, uint32_t id, const Tether__TicketListRequest *q) {
  char dev[TT_NAME_MAX + 1] = "";
  if (q->device.len && tt_text_copy(dev, sizeof(dev), q->device))
    return broker_reply_error(c, id, TT_EINVAL, "no valid device id");
  if (q->state_mask & ~(uint32_t)STATE_BITS_KNOWN)
    return broker_reply_error(c, id, TT_EINVAL, "unknown ticket state in the filter");
  if (q->after_id > (uint64_t)INT64_MAX) return broker_reply_error(c, id, TT_EINVAL, "paging id out of range");
  uint32_t limit = q->limit == 0 || q->limit > TT_TICKET_PAGE_MAX ? TT_TICKET_PAGE_MAX : q->limit;
  tix_page_t p = {.cap = limit + 1}; /* one more tells whether there is a next page */
  p.rows = calloc(p.cap, sizeof(*p.rows));
  Tether__Ticket *tix = calloc(limit, sizeof(*tix));
  Tether__Ticket **ptrs = calloc(limit, sizeof(*ptrs));
  int rc = TT_ENOMEM;
  if (!p.rows || !tix || !ptrs) goto out;
  store_ticket_filter_t f = {.state_mask = q->state_mask, .assignee = q->mine ? c->id.name : NULL,
                             .device = dev[0] ? dev : NULL, .limit = p.cap,
                             .after_id = (int64_t)q->after_id};
  rc = store_ticket_list(c->b->store, &f, tix_page_cb, &p);
  if (rc < 0) {
    rc = store_error(c, id, rc, "ticket_list");
    goto out;
  }
  uint32_t n = p.n > limit ? limit : p.n;
  for (uint32_t i = 0; i < n; i++) {
    ticket_to_wire(&p.rows[i], &tix[i]);
    ptrs[i] = &tix[i];
  }
  Tether__TicketList list = TETHER__TICKET_LIST__INIT;
  list.tickets = ptrs;
  list.n_tickets = n;
  list.more = p.n > limit;
  Tether__Response r = TETHER__RESPONSE__INIT;
  r.id = id;
  r.body_case = TETHER__RESPONSE__BODY_TICKET_LIST;
  r.ticket_list = &list;
  rc = tt_link_send(c->link, TT_K_RESPONSE, &r.base);
out:
  free(p.rows);
  free(tix);
  free(ptrs);
  return rc;
}

/* ---- show ----------------------------------------------------------------------------- */

typedef struct {
  store_ticket_event_t *rows;
  uint32_t n, cap;
} tev_page_t;

static int tev_page_cb(void *ctx, const store_ticket_event_t *e) {
  tev_page_t *p = ctx;
  if (p->n >= p->cap) return 1;
  p->rows[p->n++] = *e;
  return 0;
}

static int on_show(broker_conn_t *c, uint32_t id, const Tether__TicketShowRequest *q) {
  store_ticket_t t;
  bool answered;
  int rc = load_ticket(c, id, q->id, &t, &answered);
  if (answered) return rc;
  tev_page_t p = {.cap = TT_TICKET_EVENTS_PAGE_MAX};
  p.rows = calloc(p.cap, sizeof(*p.rows));
  Tether__TicketEvent *evs = calloc(p.cap, sizeof(*evs));
  Tether__TicketEvent **ptrs = calloc(p.cap, sizeof(*ptrs));
  rc = TT_ENOMEM;
  if (!p.rows || !evs || !ptrs) goto out;
  uint32_t total = 0;
  rc = store_ticket_events_tail(c->b->store, t.id, p.cap, tev_page_cb, &p, &total);
  if (rc < 0) {
    rc = store_error(c, id, rc, "ticket_events");
    goto out;
  }
  for (uint32_t i = 0; i < p.n; i++) {
    store_ticket_event_t *e = &p.rows[i];
    tether__ticket_event__init(&evs[i]);
    evs[i].id = (uint64_t)e->id;
    evs[i].ts_ms = (uint64_t)e->ts_ms;
    evs[i].actor = tt_text(e->actor);
    evs[i].kind = tt_text(e->kind);
    evs[i].text = tt_text(e->text);
    ptrs[i] = &evs[i];
  }
  Tether__Ticket o;
  ticket_to_wire(&t, &o);
  Tether__TicketDetail det = TETHER__TICKET_DETAIL__INIT;
  det.ticket = &o;
  det.events = ptrs;
  det.n_events = p.n;
  det.events_total = total;
  Tether__Response r = TETHER__RESPONSE__INIT;
  r.id = id;
  r.body_case = TETHER__RESPONSE__BODY_TICKET_DETAIL;
  r.ticket_detail = &det;
  rc = tt_link_send(c->link, TT_K_RESPONSE, &r.base);
out:
  free(p.rows);
  free(evs);
  free(ptrs);
  return rc;
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
  char msg[160];
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
static bool may_work(const broker_conn_t *c, tix_change_t *x, const char *name, bool unassigned_ok) {
  const store_ticket_t *t = &x->t;
  if (is_admin(c) || strcmp(t->assignee, c->id.name) == 0) return true;
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

static void op_assign(const broker_conn_t *c, tix_change_t *x, const char *name) {
  if (!tt_name_valid(x->note)) {
    refuse(x, TT_EINVAL, "assign to whom? a person's name (letters, digits, . _ @ -)");
    return;
  }
  char to[STORE_NAME_MAX];
  text_fit(to, sizeof(to), x->note); /* tt_name_valid: it fits */
  if (!want_state(x, name, BIT_OPEN)) return;
  /* A technician takes an unassigned ticket, or hands on one of their own. */
  bool self = strcmp(to, c->id.name) == 0;
  if (!may_work(c, x, name, self)) return;
  if (strcmp(x->t.assignee, to) == 0) {
    refuse(x, TT_EINVAL, "%s is already assigned to %s", name, to);
    return;
  }
  char text[STORE_NAME_MAX * 2 + 8];
  snprintf(text, sizeof(text), "%s%s%s%s", to, x->t.assignee[0] ? " (was " : "", x->t.assignee,
           x->t.assignee[0] ? ")" : "");
  text_fit(x->text, sizeof(x->text), text);
  /* Sessions were granted to work this ticket as its assignee: handed on, they end. */
  if (x->t.assignee[0]) x->end_reason = "ticket reassigned";
  memcpy(x->t.assignee, to, sizeof(to));
  x->kind = "assigned";
}

static void op_escalate(const broker_conn_t *c, tix_change_t *x, const char *name, uint32_t level) {
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
  text_fit(x->text, sizeof(x->text), text);
  x->t.level = (int)level;
  x->kind = "escalated";
}

static void op_comment(const broker_conn_t *c, tix_change_t *x, const char *name, int64_t now) {
  if (!x->note[0]) {
    refuse(x, TT_EINVAL, "a comment needs text");
    return;
  }
  if (!may_work(c, x, name, true)) return;
  snprintf(x->text, sizeof(x->text), "%s", x->note);
  if (x->t.first_response_ms == 0) x->t.first_response_ms = now;
  x->kind = "comment";
}

static void op_state(const broker_conn_t *c, tix_change_t *x, const char *name, Tether__TicketOp op,
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

static int on_update(broker_conn_t *c, uint32_t id, const Tether__TicketUpdateRequest *q) {
  broker_t *b = c->b;
  tix_change_t x;
  memset(&x, 0, sizeof(x));
  bool answered;
  int rc = load_ticket(c, id, q->id, &x.t, &answered);
  if (answered) return rc;
  char name[TIX_ID_MAX];
  tix_name(name, sizeof(name), x.t.id);
  if (opt_text(x.note, sizeof(x.note), q->text))
    return broker_reply_error(c, id, TT_ETEXT, "the text must be at most 256 bytes without control characters");
  static const char *const actions[] = {
      [TETHER__TICKET_OP__TICKET_ASSIGN] = "ticket-assign",
      [TETHER__TICKET_OP__TICKET_ESCALATE] = "ticket-escalate",
      [TETHER__TICKET_OP__TICKET_COMMENT] = "ticket-comment",
      [TETHER__TICKET_OP__TICKET_RESOLVE] = "ticket-resolve",
      [TETHER__TICKET_OP__TICKET_CLOSE] = "ticket-close",
      [TETHER__TICKET_OP__TICKET_REOPEN] = "ticket-reopen",
  };
  if ((unsigned)q->op >= sizeof(actions) / sizeof(actions[0]) || !actions[q->op])
    return broker_reply_error(c, id, TT_EINVAL, "unknown ticket operation");
  x.action = actions[q->op];
  int64_t now = (int64_t)broker_unix_ms();
  char prev_assignee[STORE_NAME_MAX];
  snprintf(prev_assignee, sizeof(prev_assignee), "%s", x.t.assignee);
  switch (q->op) {
  case TETHER__TICKET_OP__TICKET_ASSIGN: op_assign(c, &x, name); break;
  case TETHER__TICKET_OP__TICKET_ESCALATE: op_escalate(c, &x, name, q->level); break;
  case TETHER__TICKET_OP__TICKET_COMMENT: op_comment(c, &x, name, now); break;
  case TETHER__TICKET_OP__TICKET_RESOLVE:
  case TETHER__TICKET_OP__TICKET_CLOSE:
  case TETHER__TICKET_OP__TICKET_REOPEN: op_state(c, &x, name, q->op, now); break;
  default: return broker_reply_error(c, id, TT_EINVAL, "unknown ticket operation");
  }
  if (x.err) {
    if (x.err == TT_EDENIED)
      broker_audit(b, c->id.name, "refuse", name, "request", x.action, "why", x.msg, AUDIT_END);
    return broker_reply_error(c, id, x.err, x.msg);
  }
  rc = store_ticket_update(b->store, &x.t, c->id.name, x.kind, x.text, now);
  if (rc == TT_ENOTFOUND) {
    char msg[64];
    snprintf(msg, sizeof(msg), "no such ticket: %s", name);
    return broker_reply_error(c, id, TT_ENOTFOUND, msg);
  }
  if (rc) return store_error(c, id, rc, "ticket_update");
  x.t.updated_ms = now;
  char level[16];
  snprintf(level, sizeof(level), "%d", x.t.level);
  broker_audit(b, c->id.name, x.action, name, "device", x.t.device, "state", state_name(x.t.state),
               "assignee", x.t.assignee, "previous_assignee", prev_assignee, "level", level,
               "text", x.text, AUDIT_END);
  TT_INFO(MOD, "ticket updated", "ticket=%s by=%s op=%s state=%s assignee=%s", name, c->id.name, x.kind,
          state_name(x.t.state), x.t.assignee);
  /* Resolving, closing or reassigning voids the ticket's grants and ends its channels now. */
  if (x.end_reason) broker_sessions_end_ticket(b, x.t.id, c->id.name, x.end_reason);
  return send_ticket(c, id, &x.t);
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

int broker_ticket_event(broker_t *b, int64_t ticket, const char *actor, const char *kind, const char *fmt,
                        ...) {
  char buf[STORE_TEXT_MAX + 64], text[STORE_TEXT_MAX];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof(buf), fmt, ap);
  va_end(ap);
  if (n < 0) buf[0] = '\0';
  text_fit(text, sizeof(text), buf);
  char act[STORE_NAME_MAX];
  text_fit(act, sizeof(act), actor ? actor : "");
  int rc = store_ticket_event_add(b->store, ticket, (int64_t)broker_unix_ms(), act, kind, text);
  if (rc) TT_ERROR(MOD, "ticket event not written", "ticket=T-%" PRId64 " kind=%s err=%s", ticket,
                   kind ? kind : "", tt_errname(rc));
  return rc;
}

void broker_ticket_responded(broker_t *b, int64_t ticket) {
  int rc = store_ticket_responded(b->store, ticket, (int64_t)broker_unix_ms());
  if (rc) TT_ERROR(MOD, "first response not recorded", "ticket=T-%" PRId64 " err=%s", ticket,
                   tt_errname(rc));
}
