/* The employee's help requests: `tether-agent ask | tickets | comment`, spoken for by the
 * agent on their machine (the device is who authenticated; the user is the local account
 * the agent saw on its socket). An ask opens a ticket with the diagnostics snapshot the agent
 * took, in one store request with its audit entry; the nonce it carries makes a resend the
 * same request. The requester sees their tickets' public comments and is told of them. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>
#include <openssl/evp.h>
#include "broker.h"
#include "tt/cert.h"
#include "tt/hex.h"
#include "tt/log.h"
#include "tt/msg.h"

#define MOD "help"
#define HOUR_MS (3600 * 1000)

_Static_assert(STORE_HELP_NONCE_LEN == TT_HELP_NONCE_LEN, "one nonce length");

static void answered(broker_conn_t *c, int rc) {
  if (rc) tt_link_close(c->link, rc, "peer not reading");
}

/* A refusal the store request worked out (x->err, x->msg), or a failure of the store. */
typedef struct {
  int err;
  char msg[256];
} refusal_t;

static int reply_refusal(broker_conn_t *c, uint32_t id, int rc, const refusal_t *f, const char *op) {
  if (f->err) return broker_reply_error(c, id, f->err, f->msg);
  if (rc == TT_ENOTFOUND) return broker_reply_error(c, id, TT_ENOTFOUND, "this device is not enrolled");
  TT_ERROR(MOD, "store failed", "op=%s err=%s", op, tt_errname(rc));
  return broker_reply_error(c, id, TT_EIO, "the broker could not use its store");
}

/* A local account name as the agent reports it. */
static int user_copy(char *dst, size_t cap, ProtobufCBinaryData v) {
  if (!v.len || tt_text_copy(dst, cap, v) || !tt_name_valid(dst)) return TT_EINVAL;
  return 0;
}

/* ---- ask ----------------------------------------------------------------------------------- */

typedef struct {
  broker_creq_t h;
  broker_t *b;
  char device[STORE_NAME_MAX], user[STORE_NAME_MAX];
  uint8_t nonce[TT_HELP_NONCE_LEN];
  int64_t asked_ms, now_ms;
  store_ticket_t t;
  uint8_t *z;              /* the snapshot as the agent compressed it */
  size_t zlen;
  uint64_t size;
  char snap_err[TT_TEXT_MAX + 1];
  bool again;
  int64_t diag;
  refusal_t f;
} ask_req_t;

/* The snapshot decompresses to the size the agent said; its sha256 names it in the audit. */
static int snapshot_check(const ask_req_t *x, char sha[65], char *why, size_t whylen) {
  unsigned long long sz = ZSTD_getFrameContentSize(x->z, x->zlen);
  if (sz == ZSTD_CONTENTSIZE_ERROR || sz == ZSTD_CONTENTSIZE_UNKNOWN || sz != x->size) {
    snprintf(why, whylen, "the snapshot is not a zstd frame of the size the agent said");
    return TT_EINVAL;
  }
  uint8_t *raw = malloc((size_t)sz);
  if (!raw) return TT_ENOMEM;
  size_t n = ZSTD_decompress(raw, (size_t)sz, x->z, x->zlen);
  int rc = 0;
  if (ZSTD_isError(n) || n != sz) {
    snprintf(why, whylen, "the snapshot does not decompress");
    rc = TT_EINVAL;
  } else {
    uint8_t h[32];
    unsigned hl = 32;
    if (EVP_Digest(raw, n, h, &hl, EVP_sha256(), NULL) != 1) rc = TT_ENOMEM;
    if (rc == 0) tt_hex(sha, TT_HEX_CAP(32), h, 32);
  }
  free(raw);
  return rc;
}

static int ask_run(broker_store_t *s, store_req_t *r) {
  ask_req_t *x = (ask_req_t *)r;
  int64_t ticket = 0;
  int rc = store_help_find(s, x->device, x->nonce, &ticket);
  if (rc == 0) { /* sent again after a lost answer: the same request, nothing new */
    x->again = true;
    x->t.id = ticket;
    r->audit = NULL;
    return 0;
  }
  if (rc != TT_ENOTFOUND) return rc;
  uint32_t recent;
  int64_t oldest;
  rc = store_help_recent(s, x->device, x->now_ms - HOUR_MS, &recent, &oldest);
  if (rc) return rc;
  if (recent >= TT_HELP_ASKS_PER_HOUR) {
    int64_t wait_min = (oldest + HOUR_MS - x->now_ms + 59999) / 60000;
    x->f.err = TT_EBUSY;
    snprintf(x->f.msg, sizeof(x->f.msg),
             "too many help requests from this machine (%u in the last hour): the next can be sent in %lld "
             "min; for something urgent, call the help desk",
             recent, (long long)(wait_min > 0 ? wait_min : 1));
    return TT_ESTATE;
  }
  store_device_t d;
  rc = store_device_get(s, x->device, &d);
  if (rc) return rc;
  rc = store_ticket_add(s, &x->t, x->user, x->now_ms);
  if (rc) return rc;
  char sha[65] = "", why[128] = "";
  if (x->zlen) {
    rc = snapshot_check(x, sha, why, sizeof(why));
    if (rc == TT_ENOMEM) return rc;
    if (rc) snprintf(x->snap_err, sizeof(x->snap_err), "%s", why);
  }
  if (x->zlen && !x->snap_err[0]) {
    store_diag_t dg = {.ticket = x->t.id, .session = 0, .taken_ms = x->now_ms, .size = (int64_t)x->size};
    snprintf(dg.device, sizeof(dg.device), "%s", x->device);
    snprintf(dg.person, sizeof(dg.person), "%s", x->user);
    memcpy(dg.sha256, sha, sizeof(dg.sha256));
    rc = store_diag_add(s, &dg, x->z, x->zlen);
    if (rc) return rc;
    x->diag = dg.id;
    char text[STORE_TEXT_MAX * 2], fit[STORE_TEXT_MAX];
    snprintf(text, sizeof(text), "diagnostics of %s taken when %s asked, kept as D-%lld (%llu bytes, sha256 %.16s...)",
             x->device, x->user, (long long)dg.id, (unsigned long long)x->size, sha);
    broker_text_fit(fit, sizeof(fit), text);
    rc = store_ticket_event_add(s, x->t.id, x->now_ms, x->user, "diag-attached", fit);
  } else {
    char text[STORE_TEXT_MAX * 2], fit[STORE_TEXT_MAX];
    snprintf(text, sizeof(text), "no diagnostics snapshot: %s", x->snap_err[0] ? x->snap_err : "the agent sent none");
    broker_text_fit(fit, sizeof(fit), text);
    rc = store_ticket_event_add(s, x->t.id, x->now_ms, x->user, "diag-missing", fit);
  }
  if (rc) return rc;
  rc = store_help_add(s, x->device, x->nonce, x->user, x->t.id, x->asked_ms, x->now_ms);
  if (rc) return rc;
  char name[24], diag[24] = "";
  snprintf(name, sizeof(name), "T-%" PRId64, x->t.id);
  if (x->diag) snprintf(diag, sizeof(diag), "D-%" PRId64, x->diag);
  broker_audit_rec(&x->h.audit, x->device, "help-ask", name, "user", x->user, "diag", diag, "sha256", sha,
                   "summary", x->t.summary, AUDIT_END);
  return 0;
}

static void ask_done(store_req_t *r) {
  ask_req_t *x = (ask_req_t *)r;
  broker_conn_t *c = broker_creq_conn(x);
  if (r->rc == 0) {
    TT_INFO(MOD, x->again ? "help request sent again" : "help request opened a ticket",
            "ticket=T-%" PRId64 " device=%s user=%s diag=D-%" PRId64, x->t.id, x->device, x->user, x->diag);
  } else if (x->f.err) {
    TT_WARN(MOD, "help request refused", "device=%s user=%s why=\"%s\"", x->device, x->user, x->f.msg);
    broker_audit(x->b, x->device, "help-refused", "", "user", x->user, "why", x->f.msg,
                 AUDIT_END);
  }
  if (!c) goto out;
  if (r->rc) {
    if (x->f.err && ++c->refusals >= TT_REFUSALS_MAX)
      tt_link_close(c->link, TT_EDENIED, "too many refused requests");
    else answered(c, reply_refusal(c, x->h.id, r->rc, &x->f, "help_ask"));
    goto out;
  }
  Tether__HelpAskResponse a = TETHER__HELP_ASK_RESPONSE__INIT;
  a.ticket = (uint64_t)x->t.id;
  a.again = x->again;
  a.diag = (uint64_t)x->diag;
  Tether__Response resp = TETHER__RESPONSE__INIT;
  resp.id = x->h.id;
  resp.body_case = TETHER__RESPONSE__BODY_HELP_ASK;
  resp.help_ask = &a;
  answered(c, tt_link_send(c->link, TT_K_RESPONSE, &resp.base));
out:
  free(x->z);
  free(x);
}

static int on_ask(broker_conn_t *c, uint32_t id, const Tether__HelpAskRequest *q) {
  ask_req_t *x = broker_creq_new(c, id, sizeof(*x), STORE_LANE_WRITE, ask_run, ask_done, "help_ask");
  if (!x) return TT_ENOMEM;
  const char *bad = NULL;
  int code = TT_EINVAL;
  if (q->nonce.len != TT_HELP_NONCE_LEN) bad = "a help request needs its nonce";
  else if (user_copy(x->user, sizeof(x->user), q->user)) bad = "no valid local user name";
  else if (!q->text.len) bad = "say what is wrong";
  else if (tt_text_copy(x->t.summary, sizeof(x->t.summary), q->text))
    bad = "the request must be at most 256 bytes of text without control characters", code = TT_ETEXT;
  else if (q->snapshot_zdata.len > TT_HELP_SNAPSHOT_MAX) bad = "the snapshot is too big", code = TT_ETOOBIG;
  else if (q->snapshot_zdata.len && (q->snapshot_size == 0 || q->snapshot_size > TT_DIAG_REPORT_MAX))
    bad = "the snapshot's size is out of range", code = TT_ETOOBIG;
  else if (q->snapshot_error.len && tt_text_copy(x->snap_err, sizeof(x->snap_err), q->snapshot_error))
    bad = "the snapshot's error must be text";
  if (bad) {
    free(x);
    return broker_reply_error(c, id, code, bad);
  }
  if (q->snapshot_zdata.len) {
    x->z = malloc(q->snapshot_zdata.len);
    if (!x->z) {
      free(x);
      return TT_ENOMEM;
    }
    memcpy(x->z, q->snapshot_zdata.data, q->snapshot_zdata.len);
    x->zlen = q->snapshot_zdata.len;
    x->size = q->snapshot_size;
  }
  snprintf(x->device, sizeof(x->device), "%s", c->id.name);
  memcpy(x->nonce, q->nonce.data, TT_HELP_NONCE_LEN);
  x->asked_ms = q->asked_ms <= (uint64_t)INT64_MAX ? (int64_t)q->asked_ms : 0;
  x->now_ms = (int64_t)broker_unix_ms();
  store_ticket_t *t = &x->t;
  snprintf(t->device, sizeof(t->device), "%s", x->device);
  snprintf(t->requester, sizeof(t->requester), "%s", x->user);
  snprintf(t->source, sizeof(t->source), "employee");
  t->priority = STORE_TICKET_NORMAL;
  t->state = STORE_TICKET_OPEN;
  t->level = STORE_TICKET_LEVEL_MIN;
  broker_ticket_sla(c->b, t, x->now_ms);
  x->b = c->b;
  x->h.req.audit = &x->h.audit;
  return broker_creq_submit(x);
}

/* ---- tickets ------------------------------------------------------------------------------- */

typedef struct {
  store_ticket_t t;
  store_ticket_event_t e;
  bool has_e;
} mine_t;

typedef struct {
  broker_creq_t h;
  char device[STORE_NAME_MAX], user[STORE_NAME_MAX];
  uint32_t n;
  mine_t rows[TT_HELP_TICKETS_MAX + 1];
} tickets_req_t;

static int tickets_cb(void *ctx, const store_ticket_t *t, const store_ticket_event_t *last) {
  tickets_req_t *x = ctx;
  if (x->n >= TT_HELP_TICKETS_MAX + 1) return 1;
  mine_t *m = &x->rows[x->n++];
  m->t = *t;
  m->has_e = last != NULL;
  if (last) m->e = *last;
  return 0;
}

static int tickets_run(broker_store_t *s, store_req_t *r) {
  tickets_req_t *x = (tickets_req_t *)r;
  int rc = store_help_tickets(s, x->device, x->user, TT_HELP_TICKETS_MAX + 1, tickets_cb, x);
  return rc < 0 ? rc : 0;
}

static void event_to_wire(const store_ticket_event_t *e, Tether__TicketEvent *o) {
  tether__ticket_event__init(o);
  o->id = (uint64_t)e->id;
  o->ts_ms = (uint64_t)e->ts_ms;
  o->actor = tt_text(e->actor);
  o->kind = tt_text(e->kind);
  o->text = tt_text(e->text);
}

static void tickets_done(store_req_t *r) {
  tickets_req_t *x = (tickets_req_t *)r;
  broker_conn_t *c = broker_creq_conn(x);
  if (!c) goto out;
  if (r->rc) {
    refusal_t none = {0};
    answered(c, reply_refusal(c, x->h.id, r->rc, &none, "help_tickets"));
    goto out;
  }
  uint32_t n = x->n > TT_HELP_TICKETS_MAX ? TT_HELP_TICKETS_MAX : x->n;
  Tether__HelpTicket items[TT_HELP_TICKETS_MAX], *ptrs[TT_HELP_TICKETS_MAX];
  Tether__Ticket tix[TT_HELP_TICKETS_MAX];
  Tether__TicketEvent evs[TT_HELP_TICKETS_MAX];
  for (uint32_t i = 0; i < n; i++) {
    tether__help_ticket__init(&items[i]);
    broker_ticket_to_wire(&x->rows[i].t, &tix[i]);
    items[i].ticket = &tix[i];
    if (x->rows[i].has_e) {
      event_to_wire(&x->rows[i].e, &evs[i]);
      items[i].last_public = &evs[i];
    }
    ptrs[i] = &items[i];
  }
  Tether__HelpTickets list = TETHER__HELP_TICKETS__INIT;
  list.tickets = ptrs;
  list.n_tickets = n;
  list.more = x->n > TT_HELP_TICKETS_MAX;
  Tether__Response resp = TETHER__RESPONSE__INIT;
  resp.id = x->h.id;
  resp.body_case = TETHER__RESPONSE__BODY_HELP_TICKETS;
  resp.help_tickets = &list;
  answered(c, tt_link_send(c->link, TT_K_RESPONSE, &resp.base));
out:
  free(x);
}

static int on_tickets(broker_conn_t *c, uint32_t id, const Tether__HelpTicketsRequest *q) {
  tickets_req_t *x = broker_creq_new(c, id, sizeof(*x), STORE_LANE_READ, tickets_run, tickets_done, "help_tickets");
  if (!x) return TT_ENOMEM;
  if (user_copy(x->user, sizeof(x->user), q->user)) {
    free(x);
    return broker_reply_error(c, id, TT_EINVAL, "no valid local user name");
  }
  snprintf(x->device, sizeof(x->device), "%s", c->id.name);
  return broker_creq_submit(x);
}

/* ---- comment ------------------------------------------------------------------------------- */

typedef struct {
  broker_creq_t h;
  char device[STORE_NAME_MAX], user[STORE_NAME_MAX];
  char text[STORE_TEXT_MAX];
  uint64_t wire_id;
  int64_t now_ms;
  store_ticket_t t;
  store_ticket_event_t e;
  bool reopened;
  refusal_t f;
} comment_req_t;

static int comment_run(broker_store_t *s, store_req_t *r) {
  comment_req_t *x = (comment_req_t *)r;
  int rc = store_ticket_get(s, (int64_t)x->wire_id, &x->t);
  /* Someone else's ticket, or another machine's, is answered as if it did not exist. */
  if (rc == TT_ENOTFOUND || (rc == 0 && (strcmp(x->t.device, x->device) || strcmp(x->t.requester, x->user)))) {
    x->f.err = TT_ENOTFOUND;
    snprintf(x->f.msg, sizeof(x->f.msg), "no ticket T-%" PRIu64 " of yours on this machine (see tether-agent tickets)",
             x->wire_id);
    return TT_ESTATE;
  }
  if (rc) return rc;
  uint32_t recent = 0;
  rc = store_help_comments_recent(s, x->device, x->now_ms - HOUR_MS, &recent);
  if (rc) return rc;
  if (recent >= TT_HELP_COMMENTS_PER_HOUR) {
    x->f.err = TT_EBUSY;
    snprintf(x->f.msg, sizeof(x->f.msg),
             "too many comments from this machine (%u in the last hour): try again later, or call the help desk",
             recent);
    return TT_ESTATE;
  }
  if (x->t.state == STORE_TICKET_CLOSED) {
    x->f.err = TT_EINVAL;
    snprintf(x->f.msg, sizeof(x->f.msg), "T-%" PRId64 " is closed: ask again with tether-agent ask", x->t.id);
    return TT_ESTATE;
  }
  if (x->t.state == STORE_TICKET_RESOLVED) { /* the requester says it is not fixed */
    x->t.state = STORE_TICKET_OPEN;
    x->t.resolved_ms = 0;
    rc = store_ticket_update(s, &x->t, x->user, "reopened", "the requester commented", x->now_ms);
    if (rc) return rc;
    x->reopened = true;
  }
  rc = store_ticket_update(s, &x->t, x->user, STORE_EVENT_REQUESTER_COMMENT, x->text, x->now_ms);
  if (rc) return rc;
  x->t.updated_ms = x->now_ms;
  x->e = (store_ticket_event_t){.ticket = x->t.id, .ts_ms = x->now_ms};
  snprintf(x->e.actor, sizeof(x->e.actor), "%s", x->user);
  snprintf(x->e.kind, sizeof(x->e.kind), "%s", STORE_EVENT_REQUESTER_COMMENT);
  snprintf(x->e.text, sizeof(x->e.text), "%s", x->text);
  char name[24];
  snprintf(name, sizeof(name), "T-%" PRId64, x->t.id);
  broker_audit_rec(&x->h.audit, x->device, "help-comment", name, "user", x->user, "reopened",
                   x->reopened ? "yes" : "no", "text", x->text, AUDIT_END);
  return 0;
}

static void comment_done(store_req_t *r) {
  comment_req_t *x = (comment_req_t *)r;
  broker_conn_t *c = broker_creq_conn(x);
  if (r->rc == 0)
    TT_INFO(MOD, "requester commented", "ticket=T-%" PRId64 " device=%s user=%s reopened=%d", x->t.id, x->device,
            x->user, x->reopened);
  if (!c) goto out;
  if (r->rc) {
    if (x->f.err == TT_EBUSY && ++c->refusals >= TT_REFUSALS_MAX)
      tt_link_close(c->link, TT_EDENIED, "too many refused requests");
    else answered(c, reply_refusal(c, x->h.id, r->rc, &x->f, "help_comment"));
    goto out;
  }
  Tether__Ticket t;
  broker_ticket_to_wire(&x->t, &t);
  Tether__TicketEvent e;
  event_to_wire(&x->e, &e);
  Tether__HelpTicket ht = TETHER__HELP_TICKET__INIT;
  ht.ticket = &t;
  ht.last_public = &e;
  Tether__Response resp = TETHER__RESPONSE__INIT;
  resp.id = x->h.id;
  resp.body_case = TETHER__RESPONSE__BODY_HELP_TICKET;
  resp.help_ticket = &ht;
  answered(c, tt_link_send(c->link, TT_K_RESPONSE, &resp.base));
out:
  free(x);
}

static int on_comment(broker_conn_t *c, uint32_t id, const Tether__HelpCommentRequest *q) {
  comment_req_t *x = broker_creq_new(c, id, sizeof(*x), STORE_LANE_WRITE, comment_run, comment_done, "help_comment");
  if (!x) return TT_ENOMEM;
  const char *bad = NULL;
  int code = TT_EINVAL;
  if (user_copy(x->user, sizeof(x->user), q->user)) bad = "no valid local user name";
  else if (q->ticket == 0 || q->ticket > (uint64_t)INT64_MAX) bad = "no valid ticket id";
  else if (!q->text.len) bad = "a comment needs text";
  else if (tt_text_copy(x->text, sizeof(x->text), q->text))
    bad = "the comment must be at most 256 bytes of text without control characters", code = TT_ETEXT;
  if (bad) {
    free(x);
    return broker_reply_error(c, id, code, bad);
  }
  snprintf(x->device, sizeof(x->device), "%s", c->id.name);
  x->wire_id = q->ticket;
  x->now_ms = (int64_t)broker_unix_ms();
  x->h.req.audit = &x->h.audit;
  return broker_creq_submit(x);
}

int broker_help_request(broker_conn_t *c, const Tether__Request *q) {
  if (c->id.role != TT_ROLE_AGENT)
    return broker_reply_error(c, q->id, TT_EDENIED, "help requests come from the employee's own device");
  switch (q->body_case) {
  case TETHER__REQUEST__BODY_HELP_ASK: return on_ask(c, q->id, q->help_ask);
  case TETHER__REQUEST__BODY_HELP_TICKETS: return on_tickets(c, q->id, q->help_tickets);
  case TETHER__REQUEST__BODY_HELP_COMMENT: return on_comment(c, q->id, q->help_comment);
  default: return broker_reply_error(c, q->id, TT_EKIND, "unknown help request");
  }
}

/* ---- notices ------------------------------------------------------------------------------- */

void broker_help_notice(broker_t *b, const store_ticket_t *t, const char *kind, const char *by, const char *text) {
  if (!t->requester[0]) return;
  broker_conn_t *agent = broker_find_agent(b, t->device);
  if (!agent || !agent->link || agent->link->closing) return; /* they see it in tether-agent tickets */
  Tether__HelpNoticeRequest n = TETHER__HELP_NOTICE_REQUEST__INIT;
  n.user = tt_text(t->requester);
  n.ticket = (uint64_t)t->id;
  n.kind = tt_text(kind);
  n.by = tt_text(by);
  n.text = tt_text(text ? text : "");
  Tether__Request q = TETHER__REQUEST__INIT;
  q.id = broker_agent_req_id(b);
  q.body_case = TETHER__REQUEST__BODY_HELP_NOTICE;
  q.help_notice = &n;
  int rc = tt_link_send(agent->link, TT_K_REQUEST, &q.base);
  if (rc) TT_WARN(MOD, "notice not sent to the device", "ticket=T-%" PRId64 " device=%s err=%s", t->id, t->device,
                  tt_errname(rc));
}
