/* Requests on channel 0: listings for technicians and admins; tokens, revocation and the
 * audit trail for admins only; renewal for devices; enrollment on enrollment connections.
 * Roles come from the certificate (checked against Hello), never from the request. */
#include <inttypes.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>
#include "broker.h"
#include "tt/hex.h"
#include "tt/utf8.h"
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
  o->consent_timeout_ms = live ? live->consent_timeout_ms : 0;
  o->last_seen_ms = live ? broker_unix_ms() : (uint64_t)d->last_seen_ms;
  o->enrolled_ms = (uint64_t)d->enrolled_ms;
  o->cert_not_after_ms = (uint64_t)d->cert_not_after_ms;
  o->revoked = d->revoked;
}

/* ---- devices: read on the store's reader thread ---------------------------------------- */

typedef struct {
  broker_creq_t h;
  uint32_t offset, limit, total, n;
  bool keyset, more;
  char device[TT_NAME_MAX + 1];  /* device show; the listing: page after this id */
  /* --where: "field=value" copies, split in place by store_asset_cond_parse */
  char where[TT_ASSET_WHERE_MAX][TT_ASSET_HEADER_MAX + 1 + TT_ASSET_CELL_MAX + 1];
  store_asset_cond_t cond[TT_ASSET_WHERE_MAX];
  size_t nwhere;
  store_device_t rows[];         /* limit (+1 to tell of a next page) of them */
} dev_req_t;

static int dev_page_cb(void *ctx, const store_device_t *d) {
  dev_req_t *x = ctx;
  if (x->n >= x->limit) return 1;
  x->rows[x->n++] = *d;
  return 0;
}

static int devices_run(broker_store_t *s, store_req_t *r) {
  dev_req_t *x = (dev_req_t *)r;
  if (!x->keyset) { /* an older console's offset paging */
    int rc = store_device_list(s, x->offset, x->limit, dev_page_cb, x, &x->total);
    return rc < 0 ? rc : 0;
  }
  /* The fleet's size on the first page only: a count is a walk of the whole table. */
  if (!x->device[0] && !x->nwhere) x->total = (uint32_t)store_device_count(s);
  x->limit++; /* one more tells whether another page follows */
  int rc = x->nwhere ? store_device_page_where(s, x->device, x->limit, x->cond, x->nwhere, dev_page_cb, x)
                     : store_device_page(s, x->device, x->limit, dev_page_cb, x);
  x->limit--;
  if (x->n > x->limit) {
    x->n = x->limit;
    x->more = true;
  }
  return rc < 0 ? rc : 0;
}

/* The key of a --where listing (its conditions) at cursor `after` (broker_conn_t.where_next). */
static void where_key(const dev_req_t *x, const char *after, uint8_t out[32]) {
  broker_key_part_t k[1 + 3 * TT_ASSET_WHERE_MAX];
  size_t n = 0;
  for (size_t i = 0; i < x->nwhere; i++) {
    const store_asset_cond_t *w = &x->cond[i];
    const char *custom = w->custom ? w->custom : "";
    k[n++] = (broker_key_part_t){&w->field, sizeof w->field};
    k[n++] = (broker_key_part_t){custom, strlen(custom)};
    k[n++] = (broker_key_part_t){w->value, strlen(w->value)};
  }
  k[n++] = (broker_key_part_t){after, strlen(after)};
  broker_page_key(out, k, n);
}

static void devices_done(store_req_t *r) {
  dev_req_t *x = (dev_req_t *)r;
  broker_conn_t *c = broker_creq_conn(x);
  Tether__DeviceInfo *infos = NULL;
  Tether__DeviceInfo **ptrs = NULL;
  if (!c) goto out;
  int rc = TT_ENOMEM;
  if (r->rc) {
    rc = broker_reply_error(c, x->h.id, TT_EIO, "the broker could not read its store");
    goto reply;
  }
  infos = calloc(x->n ? x->n : 1, sizeof(*infos));
  ptrs = calloc(x->n ? x->n : 1, sizeof(*ptrs));
  if (!infos || !ptrs) goto reply;
  for (uint32_t i = 0; i < x->n; i++) {
    device_info(c->b, &x->rows[i], &infos[i]);
    ptrs[i] = &infos[i];
  }
  Tether__DeviceList list = TETHER__DEVICE_LIST__INIT;
  list.devices = ptrs;
  list.n_devices = x->n;
  list.total = x->total;
  list.more = x->more;
  if (x->nwhere && x->more && x->n) where_key(x, x->rows[x->n - 1].id, c->where_next);
  else if (x->nwhere) memset(c->where_next, 0, sizeof c->where_next);
  Tether__Response resp = TETHER__RESPONSE__INIT;
  resp.id = x->h.id;
  resp.body_case = TETHER__RESPONSE__BODY_DEVICES;
  resp.devices = &list;
  rc = send_response(c, &resp);
reply:
  if (rc) tt_link_close(c->link, rc, "peer not reading");
out:
  free(infos);
  free(ptrs);
  free(x);
}

static int on_devices(broker_conn_t *c, uint32_t id, const Tether__DeviceListRequest *q) {
  uint32_t limit = q->limit == 0 || q->limit > TT_DEVICE_PAGE_MAX ? TT_DEVICE_PAGE_MAX : q->limit;
  char after[TT_NAME_MAX + 1] = "";
  if (q->after.len && tt_text_copy(after, sizeof(after), q->after))
    return broker_reply_error(c, id, TT_EINVAL, "paging: not a device id");
  if (q->n_where > TT_ASSET_WHERE_MAX) return broker_reply_error(c, id, TT_ETOOBIG, "at most 8 --where conditions");
  if (q->n_where && q->offset) return broker_reply_error(c, id, TT_EINVAL, "--where pages by id, not by offset");
  dev_req_t *x = broker_creq_new(c, id, sizeof(*x) + (limit + 1) * sizeof(store_device_t), STORE_LANE_READ,
                                 devices_run, devices_done, "device_list");
  if (!x) return TT_ENOMEM;
  for (size_t i = 0; i < q->n_where; i++) {
    ProtobufCBinaryData w = q->where[i];
    if (w.len >= sizeof x->where[0] || (w.len && memchr(w.data, 0, w.len))) {
      free(x);
      return broker_reply_error(c, id, TT_EINVAL, "--where: field=value, the value at most 2048 bytes");
    }
    memcpy(x->where[i], w.data, w.len);
    x->where[i][w.len] = '\0';
    if (store_asset_cond_parse(x->where[i], &x->cond[i])) {
      free(x);
      return broker_reply_error(c, id, TT_EINVAL, "--where: field=value (owner, department, location, model, "
                                                  "manufacturer, category, asset_tag, serial or a custom field)");
    }
  }
  x->nwhere = q->n_where;
  /* A listing by asset fields reads the admins' records: audited, once per listing (its
   * first page, or a page whose cursor this connection was not given), with the conditions. */
  if (x->nwhere) {
    uint8_t key[32];
    where_key(x, after, key);
    if (!after[0] || memcmp(key, c->where_next, sizeof key)) {
      char conds[TT_ASSET_WHERE_MAX * 64] = "";
      size_t o = 0;
      for (size_t i = 0; i < q->n_where && o < sizeof conds; i++) {
        int w = snprintf(conds + o, sizeof conds - o, "%s%.*s", i ? " " : "", (int)(q->where[i].len < 60 ? q->where[i].len : 60),
                         (const char *)q->where[i].data);
        if (w > 0) o += (size_t)w;
      }
      char clean[sizeof conds + 8];
      tt_utf8_sanitize(clean, sizeof clean, conds, strnlen(conds, sizeof conds));
      broker_audit(c->b, c->id.name, "devices-where", "", "where", clean, AUDIT_END);
    }
  }
  x->offset = q->offset;
  x->limit = limit;
  /* Keyset paging unless an older console pages by offset. */
  x->keyset = q->after.len > 0 || q->offset == 0;
  snprintf(x->device, sizeof(x->device), "%s", after);
  return broker_creq_submit(x);
}

static int device_get_run(broker_store_t *s, store_req_t *r) {
  dev_req_t *x = (dev_req_t *)r;
  if (x->limit == 1) return store_device_get(s, x->device, &x->rows[0]);
  size_t n = 0;
  int rc = store_device_find(s, x->device, x->rows, x->limit, &n);
  x->n = (uint32_t)n;
  return rc;
}

/* "sams-laptop names 2 devices: dev-1 (sams-laptop.a), dev-2 (sams-laptop.b)". */
static void ambiguous(const dev_req_t *x, char *msg, size_t cap) {
  size_t shown = x->n < TT_DEVICE_MATCHES_SHOWN ? x->n : TT_DEVICE_MATCHES_SHOWN;
  int k = snprintf(msg, cap, "%s names %s%u devices:", x->device, x->n > shown ? "more than " : "", (unsigned)shown);
  for (size_t i = 0; i < shown && k > 0 && (size_t)k < cap; i++)
    k += snprintf(msg + k, cap - (size_t)k, "%s %s (%s)", i ? "," : "", x->rows[i].id, x->rows[i].hostname);
  if (k > 0 && (size_t)k < cap) snprintf(msg + k, cap - (size_t)k, "; name one by its id");
}

static void device_show_done(store_req_t *r) {
  dev_req_t *x = (dev_req_t *)r;
  broker_conn_t *c = broker_creq_conn(x);
  if (!c) goto out;
  int rc;
  if (r->rc == TT_ENOTFOUND) {
    char msg[TT_NAME_MAX + 64];
    snprintf(msg, sizeof(msg), x->limit > 1 ? "no device has the id or hostname %s" : "no such device: %s",
             x->device);
    rc = broker_reply_error(c, x->h.id, TT_ENOTFOUND, msg);
  } else if (!r->rc && x->n > 1) {
    char msg[(TT_DEVICE_MATCHES_SHOWN + 1) * (TT_NAME_MAX + TT_TEXT_MAX + 8)];
    ambiguous(x, msg, sizeof(msg));
    rc = broker_reply_error(c, x->h.id, TT_EINVAL, msg);
  } else if (r->rc) {
    rc = broker_reply_error(c, x->h.id, TT_EIO, "the broker could not read its store");
  } else {
    Tether__DeviceInfo info;
    device_info(c->b, &x->rows[0], &info);
    Tether__Response resp = TETHER__RESPONSE__INIT;
    resp.id = x->h.id;
    resp.body_case = TETHER__RESPONSE__BODY_DEVICE;
    resp.device = &info;
    rc = send_response(c, &resp);
  }
  if (rc) tt_link_close(c->link, rc, "peer not reading");
out:
  free(x);
}

static int on_device_show(broker_conn_t *c, uint32_t id, const Tether__DeviceShowRequest *q) {
  char dev[TT_NAME_MAX + 1];
  if (tt_text_copy(dev, sizeof(dev), q->device_id) || !dev[0])
    return broker_reply_error(c, id, TT_EINVAL, "no valid device id");
  /* resolve: one more match than is shown, to say "more than". */
  uint32_t rows = q->resolve ? TT_DEVICE_MATCHES_SHOWN + 1 : 1;
  dev_req_t *x = broker_creq_new(c, id, sizeof(*x) + rows * sizeof(store_device_t), STORE_LANE_READ, device_get_run,
                                 device_show_done, "device_get");
  if (!x) return TT_ENOMEM;
  x->limit = rows;
  snprintf(x->device, sizeof(x->device), "%s", dev);
  return broker_creq_submit(x);
}

/* ---- tokens and revocation: the write and its audit entry commit together ---------------- */

typedef struct {
  broker_creq_t h;
  uint8_t hash[32];
  int64_t now_ms, expires_ms;
  uint32_t uses;
  char note[TT_TEXT_MAX + 1];
  char token[4 + 64 + 1];
} token_new_req_t;

static int token_new_run(broker_store_t *s, store_req_t *r) {
  token_new_req_t *x = (token_new_req_t *)r;
  return store_token_add(s, x->hash, x->expires_ms, x->uses, x->note, x->h.audit.actor, x->now_ms);
}

static void token_new_done(store_req_t *r) {
  token_new_req_t *x = (token_new_req_t *)r;
  broker_conn_t *c = broker_creq_conn(x);
  if (!c) goto out;
  int rc;
  if (r->rc) {
    rc = broker_reply_error(c, x->h.id, TT_EIO, "the broker could not store the token and its audit entry");
  } else {
    Tether__TokenNewResponse t = TETHER__TOKEN_NEW_RESPONSE__INIT;
    t.token = tt_text(x->token);
    t.expires_ms = (uint64_t)x->expires_ms;
    t.uses = x->uses;
    Tether__Response resp = TETHER__RESPONSE__INIT;
    resp.id = x->h.id;
    resp.body_case = TETHER__RESPONSE__BODY_TOKEN_NEW;
    resp.token_new = &t;
    rc = send_response(c, &resp);
  }
  if (rc) tt_link_close(c->link, rc, "peer not reading");
out:
  OPENSSL_cleanse(x->token, sizeof(x->token));
  free(x);
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
  token_new_req_t *x = broker_creq_new(c, id, sizeof(*x), STORE_LANE_WRITE, token_new_run, token_new_done,
                                       "token_add");
  if (!x) return TT_ENOMEM;
  uint8_t raw[32];
  if (RAND_bytes(raw, sizeof(raw)) != 1) {
    free(x);
    return broker_reply_error(c, id, TT_EIO, "no randomness");
  }
  memcpy(x->token, "tt1_", 4);
  tt_hex(x->token + 4, sizeof(x->token) - 4, raw, sizeof(raw));
  OPENSSL_cleanse(raw, sizeof(raw));
  SHA256((const uint8_t *)x->token, strlen(x->token), x->hash);
  x->now_ms = (int64_t)broker_unix_ms();
  x->expires_ms = x->now_ms + (int64_t)ttl;
  x->uses = uses;
  snprintf(x->note, sizeof(x->note), "%s", note);
  char uses_s[16], exp_s[24];
  snprintf(uses_s, sizeof(uses_s), "%u", uses);
  snprintf(exp_s, sizeof(exp_s), "%" PRId64, x->expires_ms);
  x->h.req.audit = &x->h.audit;
  broker_audit_rec(&x->h.audit, c->id.name, "token-new", "", "uses", uses_s, "expires_ms", exp_s, "note", note,
                   AUDIT_END);
  return broker_creq_submit(x);
}

typedef struct {
  broker_creq_t h;
  store_revoke_kind_t kind;
  int64_t now_ms;
  char name[TT_NAME_MAX + 1];
  char reason[TT_TEXT_MAX + 1];
} revoke_req_t;

static int revoke_run(broker_store_t *s, store_req_t *r) {
  revoke_req_t *x = (revoke_req_t *)r;
  return store_revoke(s, x->kind, x->name, x->h.audit.actor, x->reason, x->now_ms);
}

static void revoke_done(store_req_t *r) {
  revoke_req_t *x = (revoke_req_t *)r;
  broker_t *b = x->h.c->b;
  broker_conn_t *c = broker_creq_conn(x);
  const char *kind_s = x->kind == STORE_REVOKE_DEVICE ? "device" : "person";
  if (r->rc == 0 || r->rc == -EEXIST) {
    /* Recorded (now or before): refused at every handshake from here, and its live
     * connections end now, whether or not the admin who asked is still there. */
    revoked_add(b, x->kind, x->name);
  }
  uint32_t closed = 0;
  if (r->rc == 0) {
    for (broker_conn_t *y = b->conns; y; y = y->next) {
      if (y->link->closing || y->state == BROKER_CONN_ENROLL || strcmp(y->id.name, x->name) != 0) continue;
      bool match = x->kind == STORE_REVOKE_DEVICE
                       ? y->id.role == TT_ROLE_AGENT
                       : (y->id.role == TT_ROLE_TECHNICIAN || y->id.role == TT_ROLE_ADMIN || y->id.role == TT_ROLE_GATEWAY);
      if (!match || y == c) continue;
      tt_link_close(y->link, TT_EDENIED, "this identity has been revoked");
      closed++;
    }
    /* A revoked gateway: the people acting through it lose those links too. */
    if (x->kind == STORE_REVOKE_PERSON)
      for (broker_conn_t *y = b->conns; y; y = y->next)
        if (!y->link->closing && y->via[0] && strcmp(y->via_gw, x->name) == 0 && y != c) {
          tt_link_close(y->link, TT_EDENIED, "the ssh gateway it came through has been revoked");
          closed++;
        }
    broker_sessions_end_identity(b, x->kind == STORE_REVOKE_DEVICE, x->name, x->h.audit.actor, "revoked");
    if (x->kind == STORE_REVOKE_PERSON) broker_gateway_keys_changed(b, true); /* their keys let no one in now */
    TT_INFO("broker", "revoked", "by=%s kind=%s name=%s closed=%u", x->h.audit.actor, kind_s, x->name, closed);
  }
  if (!c) goto out;
  int rc;
  if (r->rc == -EEXIST) {
    rc = broker_reply_error(c, x->h.id, TT_EINVAL, "already revoked");
  } else if (r->rc) {
    rc = broker_reply_error(c, x->h.id, TT_EIO, "the broker could not record the revocation and its audit entry: nothing was revoked");
  } else {
    Tether__RevokeResponse rr = TETHER__REVOKE_RESPONSE__INIT;
    rr.connections_closed = closed;
    Tether__Response resp = TETHER__RESPONSE__INIT;
    resp.id = x->h.id;
    resp.body_case = TETHER__RESPONSE__BODY_REVOKE;
    resp.revoke = &rr;
    rc = send_response(c, &resp);
    /* An admin who revokes themselves is done too. */
    if (x->kind == STORE_REVOKE_PERSON && strcmp(c->id.name, x->name) == 0)
      tt_link_close(c->link, TT_EDENIED, "this identity has been revoked");
  }
  if (rc) tt_link_close(c->link, rc, "peer not reading");
out:
  free(x);
}

static int on_revoke(broker_conn_t *c, uint32_t id, const Tether__RevokeRequest *q) {
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
  revoke_req_t *x = broker_creq_new(c, id, sizeof(*x), STORE_LANE_WRITE, revoke_run, revoke_done, "revoke");
  if (!x) return TT_ENOMEM;
  x->kind = kind;
  x->now_ms = (int64_t)broker_unix_ms();
  snprintf(x->name, sizeof(x->name), "%s", name);
  snprintf(x->reason, sizeof(x->reason), "%s", reason);
  x->h.req.audit = &x->h.audit;
  broker_audit_rec(&x->h.audit, c->id.name, "revoke", name, "kind", kind == STORE_REVOKE_DEVICE ? "device" : "person",
                   "reason", reason, AUDIT_END);
  return broker_creq_submit(x);
}

/* ---- the audit trail: listed and verified on the reader thread --------------------------- */

typedef struct {
  broker_creq_t h;
  store_audit_filter_t f;
  char device[TT_NAME_MAX + 1];
  uint32_t n, cap;
  broker_audit_check_t check;  /* verify */
  store_audit_t rows[];        /* cap of them: one more than a page tells of a next one */
} audit_req_t;

static int audit_cb(void *ctx, const store_audit_t *e) {
  audit_req_t *x = ctx;
  if (x->n >= x->cap) return 1;
  x->rows[x->n++] = *e;
  return 0;
}

static int audit_list_run(broker_store_t *s, store_req_t *r) {
  audit_req_t *x = (audit_req_t *)r;
  /* The whole log from its start (an export): first the pruned entries an erasure still
   * accounts for (store.h), then the entries. */
  if (!x->f.device && x->f.since_ms == 0) {
    int rc = store_audit_released_before(s, x->f.after_id, x->cap, audit_cb, x);
    if (rc < 0) return rc;
    if (x->n) x->f.after_id = x->rows[x->n - 1].id;
  }
  int rc = x->n < x->cap ? store_audit_list(s, &x->f, audit_cb, x) : 0;
  return rc < 0 ? rc : 0;
}

static void audit_list_done(store_req_t *r) {
  audit_req_t *x = (audit_req_t *)r;
  broker_conn_t *c = broker_creq_conn(x);
  Tether__AuditEntry *ents = NULL;
  Tether__AuditEntry **ptrs = NULL;
  Tether__AuditValue *vals = NULL, **vptrs = NULL;
  if (!c) goto out;
  int rc = TT_ENOMEM;
  if (r->rc) {
    rc = broker_reply_error(c, x->h.id, TT_EIO, "the broker could not read the audit log");
    goto reply;
  }
  uint32_t limit = x->cap - 1;
  uint32_t n = x->n > limit ? limit : x->n;
  ents = calloc(n ? n : 1, sizeof(*ents));
  ptrs = calloc(n ? n : 1, sizeof(*ptrs));
  vals = calloc((n ? n : 1) * TT_AUDIT_VALUES_MAX, sizeof(*vals));
  vptrs = calloc((n ? n : 1) * TT_AUDIT_VALUES_MAX, sizeof(*vptrs));
  if (!ents || !ptrs || !vals || !vptrs) goto reply;
  for (uint32_t i = 0; i < n; i++) {
    store_audit_t *e = &x->rows[i];
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
    o->format = (uint32_t)e->format;
    o->pruned = e->pruned;
    if (e->pruned) o->hash.len = o->prev_hash.len = 0;
    o->values = vptrs + (size_t)i * TT_AUDIT_VALUES_MAX;
    o->n_values = e->nvalues;
    for (size_t j = 0; j < e->nvalues; j++) {
      Tether__AuditValue *v = &vals[(size_t)i * TT_AUDIT_VALUES_MAX + j];
      tether__audit_value__init(v);
      v->salt.data = e->values[j].salt;
      v->salt.len = e->values[j].has_salt ? TT_AUDIT_SALT_LEN : 0;
      v->digest.data = e->values[j].digest;
      v->digest.len = 32;
      v->erased = (uint64_t)e->values[j].erased;
      v->digest2.data = e->values[j].digest2;
      v->digest2.len = e->values[j].has_digest2 ? 32 : 0;
      v->n = e->pruned ? e->value_n[j] : (uint32_t)j;
      o->values[j] = v;
    }
    ptrs[i] = o;
  }
  Tether__AuditList list = TETHER__AUDIT_LIST__INIT;
  list.entries = ptrs;
  list.n_entries = n;
  list.more = x->n > limit;
  Tether__Response resp = TETHER__RESPONSE__INIT;
  resp.id = x->h.id;
  resp.body_case = TETHER__RESPONSE__BODY_AUDIT_LIST;
  resp.audit_list = &list;
  rc = send_response(c, &resp);
reply:
  if (rc) tt_link_close(c->link, rc, "peer not reading");
out:
  free(ents);
  free(ptrs);
  free(vals);
  free(vptrs);
  free(x);
}

static int on_audit_list(broker_conn_t *c, uint32_t id, const Tether__AuditListRequest *q) {
  char dev[TT_NAME_MAX + 1] = "";
  if (q->device.len && tt_text_copy(dev, sizeof(dev), q->device))
    return broker_reply_error(c, id, TT_EINVAL, "no valid device id");
  uint32_t limit = q->limit == 0 || q->limit > TT_AUDIT_PAGE_MAX ? TT_AUDIT_PAGE_MAX : q->limit;
  audit_req_t *x = broker_creq_new(c, id, sizeof(*x) + (limit + 1) * sizeof(store_audit_t), STORE_LANE_READ,
                                   audit_list_run, audit_list_done, "audit_list");
  if (!x) return TT_ENOMEM;
  x->cap = limit + 1;
  snprintf(x->device, sizeof(x->device), "%s", dev);
  x->f = (store_audit_filter_t){.since_ms = (int64_t)q->since_ms, .device = x->device[0] ? x->device : NULL,
                                .limit = x->cap, .after_id = (int64_t)q->after_id};
  return broker_creq_submit(x);
}

/* Verifying walks the whole chain on the reader thread's own connection (WAL lets it read
 * while the writer keeps writing), so a long log never stalls the relay. */
static int verify_run(broker_store_t *s, store_req_t *r) {
  audit_req_t *x = (audit_req_t *)r;
  return broker_audit_check(s, &x->check);
}

static void verify_done(store_req_t *r) {
  audit_req_t *x = (audit_req_t *)r;
  broker_conn_t *c = broker_creq_conn(x);
  if (!c) goto out;
  c->verifying = false;
  int rc;
  const tt_audit_walk_t *w = &x->check.walk;
  if (r->rc) {
    rc = broker_reply_error(c, x->h.id, TT_EIO, "the broker could not read the audit log");
  } else {
    char cs[24], bs[24], ks[24];
    snprintf(cs, sizeof(cs), "%" PRId64, w->count);
    snprintf(bs, sizeof(bs), "%" PRId64, w->first_bad);
    snprintf(ks, sizeof(ks), "%zu", x->check.anchors.n);
    broker_audit(c->b, c->id.name, "audit-verify", "", "count", cs, "first_bad", bs, "checkpoints", ks,
                 "problems", w->nproblems ? w->problems[0] : "", AUDIT_END);
    ProtobufCBinaryData problems[TT_AUDIT_PROBLEMS_MAX];
    for (unsigned i = 0; i < w->nproblems; i++) problems[i] = tt_text(w->problems[i]);
    Tether__AuditVerifyResponse v = TETHER__AUDIT_VERIFY_RESPONSE__INIT;
    v.count = (uint64_t)w->count;
    v.first_bad = (uint64_t)w->first_bad;
    v.checkpoints = (uint32_t)x->check.anchors.n;
    v.problems = problems;
    v.n_problems = w->nproblems;
    v.more_problems = w->more_problems;
    v.pruned = w->based ? (uint64_t)w->base : 0;
    Tether__Response resp = TETHER__RESPONSE__INIT;
    resp.id = x->h.id;
    resp.body_case = TETHER__RESPONSE__BODY_AUDIT_VERIFY;
    resp.audit_verify = &v;
    rc = send_response(c, &resp);
  }
  if (rc) tt_link_close(c->link, TT_EFULL, "peer not reading");
out:
  tt_audit_anchors_free(&x->check.anchors);
  tt_audit_walk_free(&x->check.walk);
  free(x);
}

static int on_audit_verify(broker_conn_t *c, uint32_t id) {
  if (c->verifying) return broker_reply_error(c, id, TT_EBUSY, "a verification is already running");
  audit_req_t *x = broker_creq_new(c, id, sizeof(*x), STORE_LANE_READ, verify_run, verify_done, "audit_verify");
  if (!x) return TT_ENOMEM;
  x->check.ca = c->b->ca_cert;
  x->check.file = c->b->checkpoint_file;
  unsigned held = c->work;
  int rc = broker_creq_submit(x);
  if (c->work != held) c->verifying = true;
  return rc;
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
  /* A gateway's own link says hello and acts for a person; until it does, nothing else. */
  if (c->id.role == TT_ROLE_GATEWAY) {
    if (q->body_case == TETHER__REQUEST__BODY_GATEWAY_HELLO || q->body_case == TETHER__REQUEST__BODY_ACT_AS)
      return broker_gateway_request(c, q);
    return deny(c, q->id, "a person's request on a gateway's own link", "technician or admin (act as one first)");
  }
  /* A link that acts for a person through the ssh gateway asks only what an ssh login needs:
   * which device, and a session on it. Whoever holds the gateway's key can act for anyone
   * who registered an ssh key; this keeps that from being an admin's every power. */
  if (c->via[0] && q->body_case != TETHER__REQUEST__BODY_DEVICE_SHOW &&
      q->body_case != TETHER__REQUEST__BODY_SESSION_OPEN)
    return deny(c, q->id, "this request through the ssh gateway", "a console of your own");
  switch (q->body_case) {
  case TETHER__REQUEST__BODY_GATEWAY_HELLO:
  case TETHER__REQUEST__BODY_ACT_AS:
    return deny(c, q->id, "the ssh gateway's requests", "gateway");
  case TETHER__REQUEST__BODY_SSH_KEY:
  case TETHER__REQUEST__BODY_SSH_CONFIG:
    return is_person(c) ? broker_gateway_request(c, q) : deny(c, q->id, "ssh keys", "technician or admin");
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
  case TETHER__REQUEST__BODY_PERSON_ADD:
    return admin ? broker_people_request(c, q) : deny(c, q->id, "adding people", "admin");
  case TETHER__REQUEST__BODY_PEOPLE_LIST:
    return admin ? broker_people_request(c, q) : deny(c, q->id, "listing people", "admin");
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
  case TETHER__REQUEST__BODY_INVENTORY_OFFER:
    return broker_inv_offer(c, q->id, q->inventory_offer);
  case TETHER__REQUEST__BODY_INVENTORY_PUT:
    return broker_inv_put(c, q->id, q->inventory_put);
  case TETHER__REQUEST__BODY_INVENTORY_GET:
    return is_person(c) ? broker_inv_get(c, q->id, q->inventory_get) : deny(c, q->id, "reading inventory", "technician or admin");
  case TETHER__REQUEST__BODY_DIAG_GET:
    return is_person(c) ? broker_diag_get(c, q->id, q->diag_get) : deny(c, q->id, "reading diagnostics", "technician or admin");
  case TETHER__REQUEST__BODY_INVENTORY_DIFF:
    return is_person(c) ? broker_inv_diff(c, q->id, q->inventory_diff) : deny(c, q->id, "reading inventory", "technician or admin");
  case TETHER__REQUEST__BODY_INVENTORY_HISTORY:
    return is_person(c) ? broker_inv_history(c, q->id, q->inventory_history)
                        : deny(c, q->id, "reading inventory", "technician or admin");
  case TETHER__REQUEST__BODY_ASSET_IMPORT:
    return admin ? broker_assets_import(c, q->id, q->asset_import) : deny(c, q->id, "importing asset records", "admin");
  case TETHER__REQUEST__BODY_ASSET_EXPORT:
    return admin ? broker_assets_export(c, q->id, q->asset_export) : deny(c, q->id, "exporting asset records", "admin");
  case TETHER__REQUEST__BODY_INVENTORY_FIND:
    return is_person(c) ? broker_inv_find(c, q->id, q->inventory_find)
                        : deny(c, q->id, "finding inventory", "technician or admin");
  case TETHER__REQUEST__BODY_HELP_ASK:
  case TETHER__REQUEST__BODY_HELP_TICKETS:
  case TETHER__REQUEST__BODY_HELP_COMMENT:
    return c->id.role == TT_ROLE_AGENT ? broker_help_request(c, q)
                                       : deny(c, q->id, "help requests (they come from the employee's device)", "agent");
  case TETHER__REQUEST__BODY_KB_ADD: /* and a level 3 technician's: kb.c reads the level */
    return is_person(c) ? broker_kb_request(c, q) : deny(c, q->id, "writing the knowledge base", "admin");
  case TETHER__REQUEST__BODY_KB_SEARCH:
  case TETHER__REQUEST__BODY_KB_SHOW:
    return is_person(c) ? broker_kb_request(c, q) : deny(c, q->id, "reading the knowledge base", "technician or admin");
  case TETHER__REQUEST__BODY_CHECK_REPORT:
    return broker_check_report(c, q->id, q->check_report);
  case TETHER__REQUEST__BODY_ALERT_LIST:
  case TETHER__REQUEST__BODY_ALERT_UPDATE:
  case TETHER__REQUEST__BODY_CHECKS:
    return is_person(c) ? broker_alert_request(c, q) : deny(c, q->id, "alerts and checks", "technician or admin");
  case TETHER__REQUEST__BODY_POLICY_SHOW:
    return is_person(c) ? broker_policy_request(c, q) : deny(c, q->id, "reading policy", "technician or admin");
  case TETHER__REQUEST__BODY_POLICY_SET:
    return admin ? broker_policy_request(c, q) : deny(c, q->id, "setting policy", "admin");
  case TETHER__REQUEST__BODY_MAINTENANCE:
    return admin ? broker_policy_request(c, q) : deny(c, q->id, "maintenance windows", "admin");
  case TETHER__REQUEST__BODY_PERSON_EXPORT:
    return admin ? broker_person_export(c, q->id, q->person_export) : deny(c, q->id, "a person's data", "admin");
  case TETHER__REQUEST__BODY_PERSON_ERASE:
    return admin ? broker_person_erase(c, q->id, q->person_erase) : deny(c, q->id, "erasing a person's data", "admin");
  case TETHER__REQUEST__BODY_RETENTION:
    return is_person(c) ? broker_retention_request(c, q->id, q->retention)
                        : deny(c, q->id, "retention", "technician or admin");
  case TETHER__REQUEST__BODY_STATUS:
    return admin ? broker_status_request(c, q->id) : deny(c, q->id, "the broker's status", "admin");
  case TETHER__REQUEST__BODY_REPORT:
    return admin ? broker_report_request(c, q->id, q->report) : deny(c, q->id, "reports", "admin");
  case TETHER__REQUEST__BODY_RELEASE_ADD:
  case TETHER__REQUEST__BODY_RELEASE_LIST:
  case TETHER__REQUEST__BODY_RELEASE_REMOVE:
    return admin ? broker_release_request(c, q) : deny(c, q->id, "agent releases", "admin");
  case TETHER__REQUEST__BODY_ROLLOUT:
    return admin ? broker_rollout_request(c, q->id, q->rollout) : deny(c, q->id, "rollouts", "admin");
  case TETHER__REQUEST__BODY_UPGRADE_REPORT:
    return broker_upgrade_report(c, q->id, q->upgrade_report);
  case TETHER__REQUEST__BODY_POLICY_PUSH:
  case TETHER__REQUEST__BODY_HELP_NOTICE:
  case TETHER__REQUEST__BODY_UPGRADE_OFFER:
    return broker_reply_error(c, q->id, TT_EPROTO, "the broker sends that request, it does not take it");
  case TETHER__REQUEST__BODY_ENROLL:
    return broker_reply_error(c, q->id, TT_EPROTO, "enrollment needs an enrollment connection");
  default:
    return broker_reply_error(c, q->id, TT_EKIND, "unknown request");
  }
}
