/* Requests on channel 0: listings for technicians and admins; tokens, revocation and the
 * audit trail for admins only; renewal for devices; enrollment on enrollment connections.
 * Roles come from the certificate (checked against Hello), never from the request. */
#include <inttypes.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>
#include "broker.h"
#include "tt/log.h"
#include "tt/msg.h"

#define TOKEN_USES_MAX 100000u

int broker_reply_error(broker_conn_t *c, uint32_t id, int code, const char *msg) {
  Tether__Error e = TETHER__ERROR__INIT;
  e.code = tt_err_to_wire(code);
  e.message = tt_text(msg);
  Tether__Response r = TETHER__RESPONSE__INIT;
  r.id = id;
  r.error = &e;
  return tt_link_send(c->link, TT_K_RESPONSE, &r.base);
}

static int send_response(broker_conn_t *c, Tether__Response *r) {
  return tt_link_send(c->link, TT_K_RESPONSE, &r->base);
}

static bool is_person(const broker_conn_t *c) {
  return c->id.role == TT_ROLE_TECHNICIAN || c->id.role == TT_ROLE_ADMIN;
}

/* A device as the store knows it, with what the live connection adds. Strings point into
 * d and, when online, into the live connection. */
static void device_info(broker_t *b, const store_device_t *d, Tether__DeviceInfo *o) {
  tether__device_info__init(o);
  broker_conn_t *live = registry_get(b, d->id);
  o->device_id = tt_text(d->id);
  o->hostname = tt_text(live ? live->hostname : d->hostname);
  o->address = tt_text(live ? live->addr : d->address);
  o->agent_version = tt_text(live ? live->version : d->version);
  o->online = live != NULL;
  o->connected_since_ms = live ? live->connected_unix_ms : 0;
  o->last_seen_ms = live ? broker_unix_ms() : (uint64_t)d->last_seen_ms;
  o->enrolled_ms = (uint64_t)d->enrolled_ms;
  o->cert_not_after_ms = (uint64_t)d->cert_not_after_ms;
  o->revoked = d->revoked;
}

typedef struct {
  broker_t *b;
  store_device_t *rows;
  Tether__DeviceInfo *infos;
  Tether__DeviceInfo **ptrs;
  uint32_t n, cap;
} page_t;

static int page_cb(void *ctx, const store_device_t *d) {
  page_t *p = ctx;
  if (p->n >= p->cap) return 1;
  p->rows[p->n] = *d;
  p->n++;
  return 0;
}

static int on_devices(broker_conn_t *c, uint32_t id, const Tether__DeviceListRequest *q) {
  broker_t *b = c->b;
  uint32_t limit = q->limit == 0 || q->limit > TT_DEVICE_PAGE_MAX ? TT_DEVICE_PAGE_MAX : q->limit;
  page_t p = {.b = b, .cap = limit};
  p.rows = calloc(limit, sizeof(*p.rows));
  p.infos = calloc(limit, sizeof(*p.infos));
  p.ptrs = calloc(limit, sizeof(*p.ptrs));
  uint32_t total = 0;
  int rc = TT_ENOMEM;
  if (!p.rows || !p.infos || !p.ptrs) goto out;
  rc = store_device_list(b->store, q->offset, limit, page_cb, &p, &total);
  if (rc < 0) {
    rc = broker_reply_error(c, id, TT_EIO, "the broker could not read its store");
    goto out;
  }
  for (uint32_t i = 0; i < p.n; i++) {
    device_info(b, &p.rows[i], &p.infos[i]);
    p.ptrs[i] = &p.infos[i];
  }
  Tether__DeviceList list = TETHER__DEVICE_LIST__INIT;
  list.devices = p.ptrs;
  list.n_devices = p.n;
  list.total = total;
  Tether__Response r = TETHER__RESPONSE__INIT;
  r.id = id;
  r.body_case = TETHER__RESPONSE__BODY_DEVICES;
  r.devices = &list;
  rc = send_response(c, &r);
out:
  free(p.rows);
  free(p.infos);
  free(p.ptrs);
  return rc;
}

static int on_device_show(broker_conn_t *c, uint32_t id, const Tether__DeviceShowRequest *q) {
  char dev[TT_NAME_MAX + 1];
  store_device_t d;
  if (tt_text_copy(dev, sizeof(dev), q->device_id) || !dev[0])
    return broker_reply_error(c, id, TT_EINVAL, "no valid device id");
  int rc = store_device_get(c->b->store, dev, &d);
  if (rc == TT_ENOTFOUND) {
    char msg[TT_NAME_MAX + 32];
    snprintf(msg, sizeof(msg), "no such device: %s", dev);
    return broker_reply_error(c, id, TT_ENOTFOUND, msg);
  }
  if (rc) return broker_reply_error(c, id, TT_EIO, "the broker could not read its store");
  Tether__DeviceInfo info;
  device_info(c->b, &d, &info);
  Tether__Response r = TETHER__RESPONSE__INIT;
  r.id = id;
  r.body_case = TETHER__RESPONSE__BODY_DEVICE;
  r.device = &info;
  return send_response(c, &r);
}

static int on_token_new(broker_conn_t *c, uint32_t id, const Tether__TokenNewRequest *q) {
  broker_t *b = c->b;
  char note[TT_TEXT_MAX + 1] = "";
  if (q->note.len && tt_text_copy(note, sizeof(note), q->note))
    return broker_reply_error(c, id, TT_ETEXT, "the note is not valid text");
  uint64_t ttl = q->ttl_ms ? q->ttl_ms : (uint64_t)b->cfg.token_ttl_ms;
  uint32_t uses = q->uses ? q->uses : 1;
  if (ttl > 365ull * 86400000ull || uses > TOKEN_USES_MAX)
    return broker_reply_error(c, id, TT_EINVAL, "ttl over a year or more than 100000 uses");
  uint8_t raw[32], hash[32];
  char token[4 + 64 + 1];
  if (RAND_bytes(raw, sizeof(raw)) != 1) return broker_reply_error(c, id, TT_EIO, "no randomness");
  memcpy(token, "tt1_", 4);
  for (size_t i = 0; i < sizeof(raw); i++) snprintf(token + 4 + 2 * i, 3, "%02x", raw[i]);
  OPENSSL_cleanse(raw, sizeof(raw));
  SHA256((const uint8_t *)token, strlen(token), hash);
  int64_t now = (int64_t)broker_unix_ms(), expires = now + (int64_t)ttl;
  int rc = store_token_add(b->store, hash, expires, uses, note, c->id.name, now);
  if (rc) {
    OPENSSL_cleanse(token, sizeof(token));
    return broker_reply_error(c, id, TT_EIO, "the broker could not store the token");
  }
  char uses_s[16], exp_s[24];
  snprintf(uses_s, sizeof(uses_s), "%u", uses);
  snprintf(exp_s, sizeof(exp_s), "%" PRId64, expires);
  broker_audit(b, c->id.name, "token-new", "", "uses", uses_s, "expires_ms", exp_s, "note", note, AUDIT_END);
  Tether__TokenNewResponse t = TETHER__TOKEN_NEW_RESPONSE__INIT;
  t.token = tt_text(token);
  t.expires_ms = (uint64_t)expires;
  t.uses = uses;
  Tether__Response r = TETHER__RESPONSE__INIT;
  r.id = id;
  r.body_case = TETHER__RESPONSE__BODY_TOKEN_NEW;
  r.token_new = &t;
  rc = send_response(c, &r);
  OPENSSL_cleanse(token, sizeof(token));
  return rc;
}

static int on_revoke(broker_conn_t *c, uint32_t id, const Tether__RevokeRequest *q) {
  broker_t *b = c->b;
  char name[TT_NAME_MAX + 1], reason[TT_TEXT_MAX + 1] = "";
  if (tt_text_copy(name, sizeof(name), q->name) || !tt_name_valid(name))
    return broker_reply_error(c, id, TT_EINVAL, "no valid name to revoke");
  if (q->reason.len && tt_text_copy(reason, sizeof(reason), q->reason))
    return broker_reply_error(c, id, TT_ETEXT, "the reason is not valid text");
  store_revoke_kind_t kind;
  if (q->kind == TETHER__REVOKE_KIND__REVOKE_DEVICE) kind = STORE_REVOKE_DEVICE;
  else if (q->kind == TETHER__REVOKE_KIND__REVOKE_PERSON) kind = STORE_REVOKE_PERSON;
  else return broker_reply_error(c, id, TT_EINVAL, "revoke a device or a person");
  /* A device need not be known yet: a hand-issued certificate that has never connected
   * can be revoked before it is ever used. */
  int rc = store_revoke(b->store, kind, name, c->id.name, reason, (int64_t)broker_unix_ms());
  if (rc == -EEXIST) return broker_reply_error(c, id, TT_EINVAL, "already revoked");
  if (rc) return broker_reply_error(c, id, TT_EIO, "the broker could not record the revocation");
  broker_audit(b, c->id.name, "revoke", name, "kind", kind == STORE_REVOKE_DEVICE ? "device" : "person",
               "reason", reason, AUDIT_END);
  /* End the identity's live connections now, not at their next handshake. */
  uint32_t closed = 0;
  for (broker_conn_t *x = b->conns; x; x = x->next) {
    if (x->link->closing || x->state == BROKER_CONN_ENROLL || strcmp(x->id.name, name) != 0) continue;
    bool match = kind == STORE_REVOKE_DEVICE ? x->id.role == TT_ROLE_AGENT
                                              : (x->id.role == TT_ROLE_TECHNICIAN || x->id.role == TT_ROLE_ADMIN);
    if (!match || x == c) continue;
    tt_link_close(x->link, TT_EDENIED, "this identity has been revoked");
    closed++;
  }
  broker_sessions_end_identity(b, kind == STORE_REVOKE_DEVICE, name, c->id.name, "revoked");
  TT_INFO("broker", "revoked", "by=%s kind=%s name=%s closed=%u", c->id.name,
          kind == STORE_REVOKE_DEVICE ? "device" : "person", name, closed);
  Tether__RevokeResponse rr = TETHER__REVOKE_RESPONSE__INIT;
  rr.connections_closed = closed;
  Tether__Response r = TETHER__RESPONSE__INIT;
  r.id = id;
  r.body_case = TETHER__RESPONSE__BODY_REVOKE;
  r.revoke = &rr;
  rc = send_response(c, &r);
  /* An admin who revokes themselves is done too. */
  if (kind == STORE_REVOKE_PERSON && strcmp(c->id.name, name) == 0)
    tt_link_close(c->link, TT_EDENIED, "this identity has been revoked");
  return rc;
}

typedef struct {
  store_audit_t *rows;
  uint32_t n, cap;
} audit_page_t;

static int audit_cb(void *ctx, const store_audit_t *e) {
  audit_page_t *p = ctx;
  if (p->n >= p->cap) return 1;
  p->rows[p->n++] = *e;
  return 0;
}

static int on_audit_list(broker_conn_t *c, uint32_t id, const Tether__AuditListRequest *q) {
  char dev[TT_NAME_MAX + 1] = "";
  if (q->device.len && tt_text_copy(dev, sizeof(dev), q->device))
    return broker_reply_error(c, id, TT_EINVAL, "no valid device id");
  uint32_t limit = q->limit == 0 || q->limit > TT_AUDIT_PAGE_MAX ? TT_AUDIT_PAGE_MAX : q->limit;
  audit_page_t p = {.cap = limit + 1}; /* one more tells whether there is a next page */
  p.rows = calloc(p.cap, sizeof(*p.rows));
  Tether__AuditEntry *ents = calloc(limit, sizeof(*ents));
  Tether__AuditEntry **ptrs = calloc(limit, sizeof(*ptrs));
  int rc = TT_ENOMEM;
  if (!p.rows || !ents || !ptrs) goto out;
  store_audit_filter_t f = {.since_ms = (int64_t)q->since_ms, .device = dev[0] ? dev : NULL,
                            .limit = p.cap, .after_id = (int64_t)q->after_id};
  rc = store_audit_list(c->b->store, &f, audit_cb, &p);
  if (rc < 0) {
    rc = broker_reply_error(c, id, TT_EIO, "the broker could not read the audit log");
    goto out;
  }
  uint32_t n = p.n > limit ? limit : p.n;
  for (uint32_t i = 0; i < n; i++) {
    store_audit_t *e = &p.rows[i];
    Tether__AuditEntry *o = &ents[i];
    tether__audit_entry__init(o);
    o->id = (uint64_t)e->id;
    o->ts_ms = (uint64_t)e->ts_ms;
    o->actor = tt_text(e->actor);
    o->action = tt_text(e->action);
    o->target = tt_text(e->target);
    o->detail = tt_text(e->detail);
    o->hash.data = e->hash;
    o->hash.len = 32;
    o->prev_hash.data = e->prev_hash;
    o->prev_hash.len = 32;
    ptrs[i] = o;
  }
  Tether__AuditList list = TETHER__AUDIT_LIST__INIT;
  list.entries = ptrs;
  list.n_entries = n;
  list.more = p.n > limit;
  Tether__Response r = TETHER__RESPONSE__INIT;
  r.id = id;
  r.body_case = TETHER__RESPONSE__BODY_AUDIT_LIST;
  r.audit_list = &list;
  rc = send_response(c, &r);
out:
  free(p.rows);
  free(ents);
  free(ptrs);
  return rc;
}

/* Verifying walks the whole chain: on a worker thread with a connection of its own (WAL
 * lets it read while the loop keeps writing), so a long log never stalls the relay. */
typedef struct {
  uv_work_t req;
  broker_conn_t *c;
  uint32_t id;
  char dir[512];
  int rc;
  int64_t count, bad;
} verify_job_t;

static void verify_work(uv_work_t *w) {
  verify_job_t *j = w->data;
  broker_store_t *s;
  char err[256];
  j->rc = store_open(&s, j->dir, err, sizeof(err));
  if (j->rc) return;
  j->rc = store_audit_verify(s, &j->count, &j->bad);
  store_close(s);
}

static void verify_done(uv_work_t *w, int status) {
  verify_job_t *j = w->data;
  broker_conn_t *c = j->c;
  if (!broker_conn_work_done(c) || c->link->closing) goto out;
  if (status || j->rc) {
    (void)!broker_reply_error(c, j->id, TT_EIO, "the broker could not read the audit log");
    goto out;
  }
  char cs[24], bs[24];
  snprintf(cs, sizeof(cs), "%" PRId64, j->count);
  snprintf(bs, sizeof(bs), "%" PRId64, j->bad);
  broker_audit(c->b, c->id.name, "audit-verify", "", "count", cs, "first_bad", bs, AUDIT_END);
  Tether__AuditVerifyResponse v = TETHER__AUDIT_VERIFY_RESPONSE__INIT;
  v.count = (uint64_t)j->count;
  v.first_bad = (uint64_t)j->bad;
  Tether__Response r = TETHER__RESPONSE__INIT;
  r.id = j->id;
  r.body_case = TETHER__RESPONSE__BODY_AUDIT_VERIFY;
  r.audit_verify = &v;
  if (send_response(c, &r)) tt_link_close(c->link, TT_EFULL, "peer not reading");
out:
  free(j);
}

static int on_audit_verify(broker_conn_t *c, uint32_t id) {
  if (c->work) return broker_reply_error(c, id, TT_EBUSY, "a verification is already running");
  verify_job_t *j = calloc(1, sizeof(*j));
  if (!j) return TT_ENOMEM;
  j->c = c;
  j->id = id;
  j->req.data = j;
  snprintf(j->dir, sizeof(j->dir), "%s", c->b->cfg.data_dir);
  int rc = uv_queue_work(c->b->loop, &j->req, verify_work, verify_done);
  if (rc) {
    free(j);
    return broker_reply_error(c, id, TT_EIO, "the broker could not start the verification");
  }
  c->work++;
  return 0;
}

static int deny(broker_conn_t *c, uint32_t id, const char *what, const char *need) {
  char msg[128];
  snprintf(msg, sizeof(msg), "%s needs the %s role", what, need);
  TT_WARN("broker", "request refused", "peer=%s name=%s role=%s request=\"%s\"", c->addr, c->id.name,
          tt_role_name(c->id.role), what);
  broker_audit(c->b, c->id.name, "refuse", "", "role", tt_role_name(c->id.role), "request", what, AUDIT_END);
  int rc = broker_reply_error(c, id, TT_EDENIED, msg);
  if (++c->refusals >= TT_REFUSALS_MAX) {
    broker_audit(c->b, c->id.name, "disconnect", c->id.name, "reason", "too many refused requests", AUDIT_END);
    tt_link_close(c->link, TT_EDENIED, "too many refused requests");
  }
  return rc;
}

int broker_on_request(broker_conn_t *c, const Tether__Request *q) {
  bool admin = c->id.role == TT_ROLE_ADMIN;
  if (c->state == BROKER_CONN_ENROLL) {
    if (q->body_case != TETHER__REQUEST__BODY_ENROLL) return TT_EPROTO;
    return broker_enroll(c, q->id, q->enroll);
  }
  switch (q->body_case) {
  case TETHER__REQUEST__BODY_DEVICES:
    return is_person(c) ? on_devices(c, q->id, q->devices) : deny(c, q->id, "listing devices", "technician or admin");
  case TETHER__REQUEST__BODY_DEVICE_SHOW:
    return is_person(c) ? on_device_show(c, q->id, q->device_show) : deny(c, q->id, "showing a device", "technician or admin");
  case TETHER__REQUEST__BODY_TOKEN_NEW:
    return admin ? on_token_new(c, q->id, q->token_new) : deny(c, q->id, "issuing enrollment tokens", "admin");
  case TETHER__REQUEST__BODY_REVOKE:
    return admin ? on_revoke(c, q->id, q->revoke) : deny(c, q->id, "revoking", "admin");
  case TETHER__REQUEST__BODY_AUDIT_LIST:
    return admin ? on_audit_list(c, q->id, q->audit_list) : deny(c, q->id, "reading the audit log", "admin");
  case TETHER__REQUEST__BODY_AUDIT_VERIFY:
    return admin ? on_audit_verify(c, q->id) : deny(c, q->id, "verifying the audit log", "admin");
  case TETHER__REQUEST__BODY_TICKET_NEW:
  case TETHER__REQUEST__BODY_TICKET_LIST:
  case TETHER__REQUEST__BODY_TICKET_SHOW:
  case TETHER__REQUEST__BODY_TICKET_UPDATE:
    return is_person(c) ? broker_ticket_request(c, q) : deny(c, q->id, "working tickets", "technician or admin");
  case TETHER__REQUEST__BODY_SESSION_OPEN:
  case TETHER__REQUEST__BODY_SESSION_LIST:
  case TETHER__REQUEST__BODY_RECORDING_GET:
    return is_person(c) ? broker_session_request(c, q) : deny(c, q->id, "sessions", "technician or admin");
  case TETHER__REQUEST__BODY_SESSION_END: /* people end their sessions; agents: the employee did */
    return broker_session_request(c, q);
  case TETHER__REQUEST__BODY_CONSENT:
    return broker_reply_error(c, q->id, TT_EPROTO, "consent is asked of devices, not of the broker");
  case TETHER__REQUEST__BODY_RENEW:
    return broker_renew(c, q->id, q->renew);
  case TETHER__REQUEST__BODY_ENROLL:
    return broker_reply_error(c, q->id, TT_EPROTO, "enrollment needs an enrollment connection");
  default:
    return broker_reply_error(c, q->id, TT_EKIND, "unknown request");
  }
}
