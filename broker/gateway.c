/* The ssh gateway's side of the broker. People register ssh public keys (ssh_key: add,
 * list, remove; admins for anyone). tether-sshd (role gateway) says hello on a link of its
 * own (where it listens, its host key) and is given the keys of people not revoked, and
 * asks again with the version it holds (an unchanged set costs one short answer). For each
 * ssh connection it opens another link and asks to act for the person whose key it verified
 * (act_as): the broker checks the key is theirs and they are not revoked, in one store read,
 * and from then on the link is that person's (their role as stored, so the gateway can do no
 * more than they could), marked via ssh in the audit. Removing the key or revoking the
 * person closes it. A gateway's own link takes nothing else. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "broker.h"
#include "tt/log.h"
#include "tt/msg.h"

#define MOD "gateway"

struct broker_gw_s {
  char listen[TT_NAME_MAX + 1];
  char host_key[TT_SSH_KEY_LINE_MAX + 1];
};

static void answered(broker_conn_t *c, int rc) {
  if (rc) tt_link_close(c->link, rc, "peer not reading");
}

static int send_response(broker_conn_t *c, Tether__Response *r) {
  return tt_link_send(c->link, TT_K_RESPONSE, &r->base);
}

static void key_to_wire(const store_ssh_key_t *k, Tether__SshKey *o, bool with_line) {
  tether__ssh_key__init(o);
  o->fingerprint = tt_text(k->fingerprint);
  o->person = tt_text(k->person);
  o->type = tt_text(k->type);
  o->bits = k->bits;
  o->comment = tt_text(k->comment);
  if (with_line) o->line = tt_text(k->line);
  o->added_ms = (uint64_t)k->added_ms;
  o->added_by = tt_text(k->added_by);
}

/* A list of keys as one answer (lines left out: a list never needs them). */
static int send_keys(broker_conn_t *c, uint32_t id, const store_ssh_key_t *keys, size_t n, uint64_t version,
                     bool with_line) {
  Tether__SshKey *v = calloc(n ? n : 1, sizeof(*v));
  Tether__SshKey **p = calloc(n ? n : 1, sizeof(*p));
  int rc = TT_ENOMEM;
  if (v && p) {
    for (size_t i = 0; i < n; i++) {
      key_to_wire(&keys[i], &v[i], with_line);
      p[i] = &v[i];
    }
    Tether__SshKeyList l = TETHER__SSH_KEY_LIST__INIT;
    l.keys = p;
    l.n_keys = n;
    l.version = version;
    Tether__Response resp = TETHER__RESPONSE__INIT;
    resp.id = id;
    resp.body_case = TETHER__RESPONSE__BODY_SSH_KEYS;
    resp.ssh_keys = &l;
    rc = send_response(c, &resp);
  }
  free(v);
  free(p);
  return rc;
}

/* Keys changed (added, removed, a person revoked): gateways asking with the old version
 * are given the new set. */
void broker_gateway_keys_changed(broker_t *b, bool removed) {
  b->ssh_keys_version++;
  if (removed) b->ssh_keys_removed++; /* an ActAs in flight is refused: log in again */
}

static void close_via_key(broker_t *b, const char *fingerprint) {
  for (broker_conn_t *y = b->conns; y; y = y->next)
    if (y->acting && !y->link->closing && strcmp(y->via_key, fingerprint) == 0)
      tt_link_close(y->link, TT_EDENIED, "the ssh key this session logged in with was removed");
}

/* ---- ssh_key: add, remove (writes with their audit entry), list -------------------------- */

typedef struct {
  broker_creq_t h;
  broker_t *b;
  Tether__SshKeyOp op;
  bool admin;
  char asker[STORE_NAME_MAX];
  char person[STORE_NAME_MAX];     /* add, list: whose */
  bool all;                        /* list: everyone's */
  bool live;                       /* gateway_hello: everyone's not revoked */
  uint64_t version;                /* gateway_hello: the set's version when asked */
  store_ssh_key_t key;             /* add: the key; remove: its fingerprint, then the row */
  size_t n, cap;
  store_ssh_key_t *rows;           /* list */
} key_req_t;

static int add_run(broker_store_t *s, store_req_t *r) {
  key_req_t *x = (key_req_t *)r;
  bool revoked = false;
  int rc = store_is_revoked(s, STORE_REVOKE_PERSON, x->key.person, &revoked);
  if (rc) return rc;
  if (revoked) return TT_EDENIED;
  return store_ssh_key_add(s, &x->key, TT_SSH_KEYS_PER_PERSON);
}

static int remove_run(broker_store_t *s, store_req_t *r) {
  key_req_t *x = (key_req_t *)r;
  char fp[sizeof(x->key.fingerprint)];
  snprintf(fp, sizeof(fp), "%s", x->key.fingerprint);
  int rc = store_ssh_key_get(s, fp, &x->key);
  if (rc) return rc;
  /* Someone else's key is not found, as far as they are concerned. */
  if (!x->admin && strcmp(x->key.person, x->asker) != 0) return TT_ENOTFOUND;
  rc = store_ssh_key_remove(s, fp);
  if (rc) return rc;
  char bits[16];
  snprintf(bits, sizeof(bits), "%u", x->key.bits);
  broker_audit_rec(&x->h.audit, x->asker, "ssh-key-remove", x->key.person, "fingerprint", x->key.fingerprint,
                   "type", x->key.type, "bits", bits, AUDIT_END);
  return 0;
}

static int list_cb(void *ctx, const store_ssh_key_t *k) {
  key_req_t *x = ctx;
  if (x->n >= x->cap) return 1;
  x->rows[x->n++] = *k;
  return 0;
}

static int list_run(broker_store_t *s, store_req_t *r) {
  key_req_t *x = (key_req_t *)r;
  store_ssh_keys_t which = x->live ? STORE_SSH_KEYS_LIVE : x->all ? STORE_SSH_KEYS_ALL : STORE_SSH_KEYS_OF;
  int rc = store_ssh_key_list(s, which, x->person, list_cb, x);
  return rc < 0 ? rc : 0;
}

static void key_done(store_req_t *r) {
  key_req_t *x = (key_req_t *)r;
  broker_conn_t *c = broker_creq_conn(x);
  if (r->rc == 0 && x->op == TETHER__SSH_KEY_OP__SSH_KEY_ADD) {
    TT_INFO(MOD, "ssh key added", "person=%s fingerprint=%s type=%s by=%s", x->key.person, x->key.fingerprint,
            x->key.type, x->asker);
  } else if (r->rc == 0 && x->op == TETHER__SSH_KEY_OP__SSH_KEY_REMOVE) {
    TT_INFO(MOD, "ssh key removed", "person=%s fingerprint=%s by=%s", x->key.person, x->key.fingerprint, x->asker);
  }
  if (r->rc == 0 && x->op != TETHER__SSH_KEY_OP__SSH_KEY_LIST && !x->live) {
    broker_gateway_keys_changed(x->b, x->op == TETHER__SSH_KEY_OP__SSH_KEY_REMOVE);
    if (x->op == TETHER__SSH_KEY_OP__SSH_KEY_REMOVE) close_via_key(x->b, x->key.fingerprint);
  }
  if (!c) goto out;
  char msg[TT_NAME_MAX + TT_SSH_FP_LEN + 96];
  if (r->rc == -EEXIST) {
    answered(c, broker_reply_error(c, x->h.id, TT_EINVAL, "that key is registered already (ssh-key list shows yours)"));
  } else if (r->rc == TT_EDENIED) {
    snprintf(msg, sizeof(msg), "%s was revoked", x->key.person);
    answered(c, broker_reply_error(c, x->h.id, TT_EDENIED, msg));
  } else if (r->rc == TT_EFULL) {
    snprintf(msg, sizeof(msg), "%s holds %u ssh keys already: remove one first", x->key.person, TT_SSH_KEYS_PER_PERSON);
    answered(c, broker_reply_error(c, x->h.id, TT_EFULL, msg));
  } else if (r->rc == TT_ENOTFOUND && x->op == TETHER__SSH_KEY_OP__SSH_KEY_ADD) {
    snprintf(msg, sizeof(msg), "%s is not a person this broker knows", x->key.person);
    answered(c, broker_reply_error(c, x->h.id, TT_ENOTFOUND, msg));
  } else if (r->rc == TT_ENOTFOUND) {
    snprintf(msg, sizeof(msg), "no ssh key %s%s", x->key.fingerprint, x->admin ? "" : " of yours");
    answered(c, broker_reply_error(c, x->h.id, TT_ENOTFOUND, msg));
  } else if (r->rc) {
    TT_ERROR(MOD, "store failed", "op=ssh_key err=%s", tt_errname(r->rc));
    answered(c, broker_reply_error(c, x->h.id, TT_EIO, "the broker could not read or write its store: nothing changed"));
  } else if (x->op == TETHER__SSH_KEY_OP__SSH_KEY_LIST || x->live) {
    size_t n = x->n > TT_SSH_KEYS_LIST_MAX ? TT_SSH_KEYS_LIST_MAX : x->n;
    answered(c, send_keys(c, x->h.id, x->rows, n, x->version, false));
  } else {
    answered(c, send_keys(c, x->h.id, &x->key, 1, 0, true));
  }
out:
  free(x->rows);
  free(x);
}

static key_req_t *key_req(broker_conn_t *c, uint32_t id, store_lane_t lane, store_run_fn run, const char *what) {
  key_req_t *x = broker_creq_new(c, id, sizeof(*x), lane, run, key_done, what);
  if (!x) return NULL;
  x->b = c->b;
  x->admin = c->id.role == TT_ROLE_ADMIN;
  snprintf(x->asker, sizeof(x->asker), "%s", c->id.name);
  return x;
}

static int list_alloc(key_req_t *x) {
  x->cap = TT_SSH_KEYS_LIST_MAX + 1; /* one more tells of more */
  x->rows = calloc(x->cap, sizeof(*x->rows));
  return x->rows ? 0 : TT_ENOMEM;
}

static int on_ssh_key(broker_conn_t *c, uint32_t id, const Tether__SshKeyRequest *q) {
  bool admin = c->id.role == TT_ROLE_ADMIN;
  char person[TT_NAME_MAX + 1];
  snprintf(person, sizeof(person), "%s", c->id.name);
  if (q->person.len && (tt_text_copy(person, sizeof(person), q->person) || !tt_name_valid(person)))
    return broker_reply_error(c, id, TT_EINVAL, "not a person's name");
  if (strcmp(person, c->id.name) != 0 && !admin)
    return broker_reply_error(c, id, TT_EDENIED, "only admins manage another person's ssh keys");
  if (q->all && !admin) return broker_reply_error(c, id, TT_EDENIED, "only admins list everyone's ssh keys");
  key_req_t *x;
  switch (q->op) {
  case TETHER__SSH_KEY_OP__SSH_KEY_ADD: {
    char why[160];
    static tt_sshkey_t k; /* the loop's only: parsed and copied before anything else runs */
    if (tt_sshkey_parse((const char *)q->line.data, q->line.len, &k, why, sizeof(why))) {
      char msg[200];
      snprintf(msg, sizeof(msg), "not a key the gateway takes: %s", why);
      return broker_reply_error(c, id, TT_EINVAL, msg);
    }
    if (!(x = key_req(c, id, STORE_LANE_WRITE, add_run, "ssh_key_add"))) return TT_ENOMEM;
    x->op = q->op;
    store_ssh_key_t *o = &x->key;
    snprintf(o->fingerprint, sizeof(o->fingerprint), "%s", k.fingerprint);
    snprintf(o->person, sizeof(o->person), "%s", person);
    snprintf(o->type, sizeof(o->type), "%s", k.type);
    o->bits = k.bits;
    memcpy(o->line, k.line, sizeof(o->line));
    snprintf(o->comment, sizeof(o->comment), "%s", k.comment);
    o->added_ms = (int64_t)broker_unix_ms();
    snprintf(o->added_by, sizeof(o->added_by), "%s", c->id.name);
    char bits[16];
    snprintf(bits, sizeof(bits), "%u", k.bits);
    x->h.req.audit = &x->h.audit;
    broker_audit_rec(&x->h.audit, c->id.name, "ssh-key-add", person, "fingerprint", k.fingerprint, "type", k.type,
                     "bits", bits, "comment", k.comment, AUDIT_END);
    return broker_creq_submit(x);
  }
  case TETHER__SSH_KEY_OP__SSH_KEY_REMOVE: {
    char fp[TT_SSH_FP_LEN + 1];
    if (q->fingerprint.len != TT_SSH_FP_LEN || tt_text_copy(fp, sizeof(fp), q->fingerprint) ||
        strncmp(fp, "SHA256:", 7) != 0)
      return broker_reply_error(c, id, TT_EINVAL, "a key's fingerprint is SHA256: and 43 characters, as ssh-key list shows");
    if (!(x = key_req(c, id, STORE_LANE_WRITE, remove_run, "ssh_key_remove"))) return TT_ENOMEM;
    x->op = q->op;
    snprintf(x->key.fingerprint, sizeof(x->key.fingerprint), "%s", fp);
    x->h.req.audit = &x->h.audit; /* filled by remove_run, which knows whose it was */
    return broker_creq_submit(x);
  }
  case TETHER__SSH_KEY_OP__SSH_KEY_LIST:
    if (!(x = key_req(c, id, STORE_LANE_READ, list_run, "ssh_key_list"))) return TT_ENOMEM;
    x->op = q->op;
    x->all = q->all;
    snprintf(x->person, sizeof(x->person), "%s", person);
    if (list_alloc(x)) {
      free(x);
      return TT_ENOMEM;
    }
    return broker_creq_submit(x);
  default:
    return broker_reply_error(c, id, TT_EINVAL, "unknown ssh key operation");
  }
}

/* ---- a gateway's own link: hello, and the keys it may let in ------------------------------ */

static int on_gateway_hello(broker_conn_t *c, uint32_t id, const Tether__GatewayHelloRequest *q) {
  char listen[TT_NAME_MAX + 1], why[160];
  static tt_sshkey_t k;
  if (q->listen.len && tt_text_copy(listen, sizeof(listen), q->listen))
    return broker_reply_error(c, id, TT_EINVAL, "the gateway's address is not valid text");
  if (tt_sshkey_parse((const char *)q->host_key.data, q->host_key.len, &k, why, sizeof(why)) ||
      strcmp(k.type, "ssh-ed25519") != 0)
    return broker_reply_error(c, id, TT_EINVAL, "the gateway's host key is not an ssh-ed25519 public key");
  if (!c->gw && !(c->gw = calloc(1, sizeof(*c->gw)))) return TT_ENOMEM;
  snprintf(c->gw->listen, sizeof(c->gw->listen), "%s", q->listen.len ? listen : "");
  memcpy(c->gw->host_key, k.line, sizeof(c->gw->host_key));
  uint64_t version = c->b->ssh_keys_version;
  if (q->known_version == version) return send_keys(c, id, NULL, 0, version, false);
  key_req_t *x = key_req(c, id, STORE_LANE_READ, list_run, "gateway_keys");
  if (!x) return TT_ENOMEM;
  x->live = true;
  x->version = version;
  if (list_alloc(x)) {
    free(x);
    return TT_ENOMEM;
  }
  return broker_creq_submit(x);
}

/* ---- act_as: this link is the person's from now on ---------------------------------------- */

typedef struct {
  broker_creq_t h;
  char person[STORE_NAME_MAX];
  char fp[TT_SSH_FP_LEN + 1];
  char address[TT_NAME_MAX + 1];
  char gateway[STORE_NAME_MAX];
  uint64_t removed; /* b->ssh_keys_removed when asked */
  store_person_t p;
  char why[128];
} act_req_t;

static int act_run(broker_store_t *s, store_req_t *r) {
  act_req_t *x = (act_req_t *)r;
  store_ssh_key_t k;
  int rc = store_ssh_key_get(s, x->fp, &k);
  if (rc == TT_ENOTFOUND || (!rc && strcmp(k.person, x->person) != 0)) {
    snprintf(x->why, sizeof(x->why), "that ssh key is not %s's", x->person);
    return TT_EDENIED;
  }
  if (rc) return rc;
  bool revoked = false;
  if ((rc = store_is_revoked(s, STORE_REVOKE_PERSON, x->person, &revoked))) return rc;
  if (revoked) {
    snprintf(x->why, sizeof(x->why), "%s was revoked", x->person);
    return TT_EDENIED;
  }
  rc = store_person_get(s, x->person, &x->p);
  if (rc == TT_ENOTFOUND) snprintf(x->why, sizeof(x->why), "%s is not a person this broker knows", x->person);
  return rc == TT_ENOTFOUND ? TT_EDENIED : rc;
}

static void act_done(store_req_t *r) {
  act_req_t *x = (act_req_t *)r;
  broker_conn_t *c = broker_creq_conn(x);
  if (!c) goto out;
  broker_t *b = c->b;
  if (r->rc == TT_EDENIED) {
    TT_WARN(MOD, "act-as refused", "gateway=%s person=%s fingerprint=%s address=%s why=\"%s\"", x->gateway, x->person,
            x->fp, x->address, x->why);
    broker_audit(b, x->person, "act-as-refused", x->gateway, "via", "ssh", "key", x->fp, "address", x->address,
                 "reason", x->why, AUDIT_END);
    answered(c, broker_reply_error(c, x->h.id, TT_EDENIED, x->why));
    tt_link_close(c->link, TT_EDENIED, x->why);
    goto out;
  }
  if (r->rc) {
    TT_ERROR(MOD, "store failed", "op=act_as err=%s", tt_errname(r->rc));
    answered(c, broker_reply_error(c, x->h.id, TT_EIO, "the broker could not read its store"));
    tt_link_close(c->link, TT_EIO, "store failed");
    goto out;
  }
  /* Revoked, or a key removed, while the store was read: the close that came with it did
   * not see this link yet. Refused; the client logs in again. */
  if (revoked_has(b, STORE_REVOKE_PERSON, x->person) || revoked_has(b, STORE_REVOKE_PERSON, x->gateway) ||
      b->ssh_keys_removed != x->removed) {
    const char *why = revoked_has(b, STORE_REVOKE_PERSON, x->gateway) ? "the gateway has been revoked"
                      : b->ssh_keys_removed != x->removed ? "ssh keys changed while logging in; log in again"
                                                          : "the person has been revoked";
    broker_audit(b, x->person, "act-as-refused", x->gateway, "via", "ssh", "key", x->fp, "address", x->address,
                 "reason", why, AUDIT_END);
    answered(c, broker_reply_error(c, x->h.id, TT_EDENIED, why));
    tt_link_close(c->link, TT_EDENIED, why);
    goto out;
  }
  /* The link is the person's now: everything from here is checked as for them. */
  c->id.role = x->p.role == STORE_PERSON_ADMIN ? TT_ROLE_ADMIN : TT_ROLE_TECHNICIAN;
  snprintf(c->id.name, sizeof(c->id.name), "%s", x->person);
  snprintf(c->via, sizeof(c->via), "ssh");
  snprintf(c->via_key, sizeof(c->via_key), "%s", x->fp);
  snprintf(c->via_gw, sizeof(c->via_gw), "%s", x->gateway);
  free(c->gw);
  c->gw = NULL;
  TT_INFO(MOD, "acting for a person", "gateway=%s person=%s role=%s fingerprint=%s address=%s", x->gateway, x->person,
          tt_role_name(c->id.role), x->fp, x->address);
  broker_audit(b, x->person, "act-as", x->gateway, "via", "ssh", "key", x->fp, "address", x->address, AUDIT_END);
  broker_person_seen(b, c, true);
  Tether__Person o = TETHER__PERSON__INIT;
  o.name = tt_text(x->person);
  o.role = (Tether__Role)c->id.role;
  o.level = (uint32_t)x->p.level;
  Tether__Response resp = TETHER__RESPONSE__INIT;
  resp.id = x->h.id;
  resp.body_case = TETHER__RESPONSE__BODY_ACTING;
  resp.acting = &o;
  answered(c, send_response(c, &resp));
out:
  free(x);
}

static int on_act_as(broker_conn_t *c, uint32_t id, const Tether__ActAsRequest *q) {
  char person[TT_NAME_MAX + 1], fp[TT_SSH_FP_LEN + 1], address[TT_NAME_MAX + 1] = "";
  if (c->acting) return broker_reply_error(c, id, TT_EINVAL, "this link acts for someone already");
  if (tt_text_copy(person, sizeof(person), q->person) || !tt_name_valid(person))
    return broker_reply_error(c, id, TT_EINVAL, "not a person's name");
  if (q->fingerprint.len != TT_SSH_FP_LEN || tt_text_copy(fp, sizeof(fp), q->fingerprint) || strncmp(fp, "SHA256:", 7))
    return broker_reply_error(c, id, TT_EINVAL, "not an ssh key fingerprint");
  if (q->address.len && tt_text_copy(address, sizeof(address), q->address))
    return broker_reply_error(c, id, TT_EINVAL, "the client's address is not valid text");
  act_req_t *x = broker_creq_new(c, id, sizeof(*x), STORE_LANE_READ, act_run, act_done, "act_as");
  if (!x) return TT_ENOMEM;
  c->acting = true; /* once per link, even when refused (the refusal closes it) */
  snprintf(x->person, sizeof(x->person), "%s", person);
  snprintf(x->fp, sizeof(x->fp), "%s", fp);
  snprintf(x->address, sizeof(x->address), "%s", address);
  snprintf(x->gateway, sizeof(x->gateway), "%s", c->id.name);
  x->removed = c->b->ssh_keys_removed;
  return broker_creq_submit(x);
}

/* ---- ssh_config: the gateways people can reach now ---------------------------------------- */

static int on_ssh_config(broker_conn_t *c, uint32_t id) {
  size_t n = 0;
  for (broker_conn_t *y = c->b->conns; y; y = y->next) n += y->gw != NULL && !y->link->closing;
  Tether__SshGateway *v = calloc(n ? n : 1, sizeof(*v));
  Tether__SshGateway **p = calloc(n ? n : 1, sizeof(*p));
  int rc = TT_ENOMEM;
  if (v && p) {
    size_t i = 0;
    for (broker_conn_t *y = c->b->conns; y && i < n; y = y->next) {
      if (!y->gw || y->link->closing) continue;
      tether__ssh_gateway__init(&v[i]);
      v[i].name = tt_text(y->id.name);
      v[i].listen = tt_text(y->gw->listen);
      v[i].host_key = tt_text(y->gw->host_key);
      p[i] = &v[i];
      i++;
    }
    Tether__SshConfig cfg = TETHER__SSH_CONFIG__INIT;
    cfg.gateways = p;
    cfg.n_gateways = i;
    Tether__Response resp = TETHER__RESPONSE__INIT;
    resp.id = id;
    resp.body_case = TETHER__RESPONSE__BODY_SSH_CONFIG;
    resp.ssh_config = &cfg;
    rc = send_response(c, &resp);
  }
  free(v);
  free(p);
  return rc;
}

void broker_gateway_conn_gone(broker_conn_t *c) {
  free(c->gw);
  c->gw = NULL;
}

int broker_gateway_request(broker_conn_t *c, const Tether__Request *q) {
  bool gateway = c->id.role == TT_ROLE_GATEWAY;
  switch (q->body_case) {
  case TETHER__REQUEST__BODY_GATEWAY_HELLO: return on_gateway_hello(c, q->id, q->gateway_hello);
  case TETHER__REQUEST__BODY_ACT_AS: return on_act_as(c, q->id, q->act_as);
  case TETHER__REQUEST__BODY_SSH_KEY: return gateway ? TT_EKIND : on_ssh_key(c, q->id, q->ssh_key);
  case TETHER__REQUEST__BODY_SSH_CONFIG: return gateway ? TT_EKIND : on_ssh_config(c, q->id);
  default: return broker_reply_error(c, q->id, TT_EKIND, "unknown gateway request");
  }
}
