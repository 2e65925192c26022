/* Enrollment and renewal: a device's CSR becomes a certificate signed by the broker's CA.
 * The token is checked (hashed, constant-time, single or N use) before anything is signed;
 * signing runs on a worker thread so the relay never waits on it. The CSR contributes only
 * its public key: subject, role and lifetime are ours. */
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>
#include "broker.h"
#include "tt/log.h"
#include "tt/msg.h"
#include "tt/pki.h"

/* Token text as typed by an admin: "tt1_" and 64 hex digits; bounded before hashing. */
#define TOKEN_TEXT_MAX 128u

typedef struct {
  uv_work_t req;
  broker_conn_t *c;
  uint32_t id;
  bool renew;
  char device_id[TT_NAME_MAX + 1];
  char hostname[TT_TEXT_MAX + 1];
  char version[TT_NAME_MAX + 1];
  X509_REQ *csr;
  int64_t seconds;
  /* results */
  X509 *cert;
  int rc;
  char err[256];
} sign_job_t;

static void sign_work(uv_work_t *w) {
  sign_job_t *j = w->data;
  broker_t *b = j->c->b;
  tt_pki_leaf_t leaf = {.role = TT_ROLE_AGENT, .name = j->device_id, .seconds = j->seconds};
  j->rc = tt_pki_sign_csr(b->ca_cert, b->ca_key, j->csr, &leaf, &j->cert, j->err, sizeof(j->err));
}

static char *cert_pem(X509 *x) {
  BIO *m = BIO_new(BIO_s_mem());
  char *out = NULL;
  if (m && PEM_write_bio_X509(m, x) == 1) {
    char *p;
    long n = BIO_get_mem_data(m, &p);
    out = malloc((size_t)n + 1);
    if (out) {
      memcpy(out, p, (size_t)n);
      out[n] = '\0';
    }
  }
  BIO_free(m);
  return out;
}

static int64_t not_after_ms(X509 *x) {
  struct tm tm;
  if (ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm) != 1) return 0;
  return (int64_t)timegm(&tm) * 1000;
}

static void sign_done(uv_work_t *w, int status) {
  sign_job_t *j = w->data;
  broker_conn_t *c = j->c;
  broker_t *b = c->b;
  if (!broker_conn_work_done(c) || c->link->closing) goto out; /* the device went away */
  if (status != 0 || j->rc != 0) {
    TT_ERROR("enroll", "signing failed", "device=%s err=%s", j->device_id, j->err);
    broker_audit(b, j->renew ? j->device_id : "broker", j->renew ? "renew-failed" : "enroll-failed",
                 j->device_id, "reason", j->err, AUDIT_END);
    (void)!broker_reply_error(c, j->id, TT_EIO, "the broker could not sign the certificate");
    if (!j->renew) tt_link_close(c->link, 0, NULL);
    goto out;
  }
  char fp[TT_FINGERPRINT_LEN + 1] = "";
  if (tt_cert_fingerprint(j->cert, fp, sizeof(fp))) fp[0] = '\0';
  char *pem = cert_pem(j->cert);
  int64_t now = (int64_t)broker_unix_ms(), na = not_after_ms(j->cert);
  int rc = pem ? 0 : TT_ENOMEM;
  if (!rc && !j->renew) {
    store_device_t d = {.enrolled_ms = now, .cert_not_after_ms = na};
    snprintf(d.id, sizeof(d.id), "%s", j->device_id);
    snprintf(d.hostname, sizeof(d.hostname), "%s", j->hostname);
    snprintf(d.address, sizeof(d.address), "%s", c->addr);
    snprintf(d.version, sizeof(d.version), "%s", j->version);
    snprintf(d.cert_fp, sizeof(d.cert_fp), "%s", fp);
    rc = store_device_add(b->store, &d);
  } else if (!rc) {
    rc = store_device_set_cert(b->store, j->device_id, fp, na);
  }
  if (rc) {
    (void)!broker_reply_error(c, j->id, TT_EIO, "the broker could not record the device");
    if (!j->renew) tt_link_close(c->link, 0, NULL);
    goto out;
  }
  Tether__Response r = TETHER__RESPONSE__INIT;
  r.id = j->id;
  if (j->renew) {
    Tether__RenewResponse rr = TETHER__RENEW_RESPONSE__INIT;
    rr.cert_pem = tt_text(pem);
    r.body_case = TETHER__RESPONSE__BODY_RENEW;
    r.renew = &rr;
    broker_audit(b, j->device_id, "renew", j->device_id, "fingerprint", fp, AUDIT_END);
    TT_INFO("enroll", "certificate renewed", "device=%s fingerprint=%s", j->device_id, fp);
    if (tt_link_send(c->link, TT_K_RESPONSE, &r.base)) tt_link_close(c->link, TT_EFULL, "peer not reading");
  } else {
    Tether__EnrollResponse er = TETHER__ENROLL_RESPONSE__INIT;
    er.device_id = tt_text(j->device_id);
    er.cert_pem = tt_text(pem);
    er.ca_pem = tt_text(b->ca_pem);
    r.body_case = TETHER__RESPONSE__BODY_ENROLL;
    r.enroll = &er;
    broker_audit(b, "broker", "enroll", j->device_id, "address", c->addr, "fingerprint", fp, "hostname",
                 j->hostname, AUDIT_END);
    TT_INFO("enroll", "device enrolled", "device=%s peer=%s fingerprint=%s", j->device_id, c->addr, fp);
    if (tt_link_send(c->link, TT_K_RESPONSE, &r.base) == 0) tt_link_close(c->link, 0, NULL);
    else tt_link_close(c->link, TT_EFULL, "peer not reading");
  }
  free(pem);
out:
  X509_REQ_free(j->csr);
  X509_free(j->cert);
  free(j);
}

/* Parse and check a CSR (size first, then its key type and signature), so that a bad one
 * is refused with its reason before a token is spent or anything is signed. NULL if bad,
 * with why set to "the certificate request is not valid: <reason>". */
static X509_REQ *parse_csr(ProtobufCBinaryData der, char *why, size_t whylen) {
  char err[160];
  X509_REQ *csr = NULL;
  int rc = tt_pki_csr_from_der(der.data, der.len, &csr, err, sizeof(err));
  if (!rc && (rc = tt_pki_csr_check(csr, err, sizeof(err))) != 0) {
    X509_REQ_free(csr);
    csr = NULL;
  }
  if (rc) snprintf(why, whylen, "the certificate request is not valid: %s", err);
  return csr;
}

/* Takes ownership of csr. */
static int start_signing(broker_conn_t *c, uint32_t id, bool renew, const char *device_id, X509_REQ *csr) {
  broker_t *b = c->b;
  sign_job_t *j = calloc(1, sizeof(*j));
  if (!j) {
    X509_REQ_free(csr);
    return TT_ENOMEM;
  }
  j->csr = csr;
  j->c = c;
  j->id = id;
  j->renew = renew;
  j->seconds = b->cfg.device_cert_lifetime_ms / 1000;
  snprintf(j->device_id, sizeof(j->device_id), "%s", device_id);
  snprintf(j->hostname, sizeof(j->hostname), "%s", c->hostname);
  snprintf(j->version, sizeof(j->version), "%s", c->version);
  j->req.data = j;
  int rc = uv_queue_work(b->loop, &j->req, sign_work, sign_done);
  if (rc) {
    X509_REQ_free(j->csr);
    free(j);
    return rc;
  }
  c->work++;
  return 0;
}

static void new_device_id(char *out, size_t cap) {
  uint8_t r[6];
  if (RAND_bytes(r, sizeof(r)) != 1) memset(r, 0, sizeof(r));
  snprintf(out, cap, "dev-%02x%02x%02x%02x%02x%02x", r[0], r[1], r[2], r[3], r[4], r[5]);
}

int broker_enroll(broker_conn_t *c, uint32_t id, const Tether__EnrollRequest *q) {
  broker_t *b = c->b;
  const char *why = NULL;
  char csr_why[200];
  int code = TT_EDENIED;
  if (c->enroll_used) return TT_EPROTO; /* one request per enrollment connection */
  c->enroll_used = true;
  broker_frontdoor_enroll_busy(c);
  if (q->token.len == 0 || q->token.len > TOKEN_TEXT_MAX || !tt_text_valid(q->token, TOKEN_TEXT_MAX)) {
    why = "no valid token";
  } else if (tt_text_copy(c->hostname, sizeof(c->hostname), q->hostname) ||
             tt_text_copy(c->version, sizeof(c->version), q->agent_version)) {
    why = "hostname or version is not valid text", code = TT_ETEXT;
  }
  X509_REQ *csr = NULL;
  if (!why && !(csr = parse_csr(q->csr_der, csr_why, sizeof(csr_why)))) {
    /* Checked before the token is used, so a bad request does not spend a use. */
    why = csr_why, code = TT_EINVAL;
  }
  if (!why) {
    uint8_t hash[32];
    SHA256(q->token.data, q->token.len, hash);
    int rc = store_token_use(b->store, hash, (int64_t)broker_unix_ms());
    OPENSSL_cleanse(hash, sizeof(hash));
    if (rc == TT_ENOTFOUND) why = "unknown token";
    else if (rc == TT_ETIMEOUT) why = "token expired";
    else if (rc == TT_EDENIED) why = "token already used";
    else if (rc) why = "the broker could not check the token", code = TT_EIO;
  }
  if (why) {
    X509_REQ_free(csr);
    /* A stranger may try as often as it likes: the audit (and the log) take a bounded share. */
    if (broker_frontdoor_audit_ok(b, c)) {
      TT_WARN("enroll", "enrollment refused", "peer=%s reason=\"%s\"", c->addr, why);
      broker_audit(b, "broker", "enroll-refused", "", "reason", why, "address", c->addr, AUDIT_END);
    } else {
      TT_DEBUG("enroll", "enrollment refused", "peer=%s reason=\"%s\"", c->addr, why);
    }
    char msg[256];
    snprintf(msg, sizeof(msg), "enrollment refused: %s", why);
    int rc = broker_reply_error(c, id, code, msg);
    tt_link_close(c->link, 0, NULL);
    return rc == TT_ECLOSED ? 0 : rc;
  }
  char dev[TT_NAME_MAX + 1];
  store_device_t existing;
  int tries = 0;
  do new_device_id(dev, sizeof(dev));
  while (store_device_get(b->store, dev, &existing) == 0 && ++tries < 8);
  return start_signing(c, id, false, dev, csr);
}

int broker_renew(broker_conn_t *c, uint32_t id, const Tether__RenewRequest *q) {
  if (c->id.role != TT_ROLE_AGENT) return broker_reply_error(c, id, TT_EDENIED, "only devices renew");
  /* One signing at a time per connection: a device asking in a loop cannot take the
   * worker threads from everyone else's enrollments. */
  if (c->work) return broker_reply_error(c, id, TT_EBUSY, "a renewal is already in progress");
  /* An expired certificate is not a credential any more, live connection or not. */
  if (c->expires_at && uv_now(c->b->loop) >= c->expires_at)
    return broker_reply_error(c, id, TT_EDENIED, "the certificate has expired: enroll again");
  char why[200];
  X509_REQ *csr = parse_csr(q->csr_der, why, sizeof(why));
  if (!csr) return broker_reply_error(c, id, TT_EINVAL, why);
  return start_signing(c, id, true, c->id.name, csr);
}
