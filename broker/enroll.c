/* Enrollment and renewal: a device's CSR becomes a certificate signed by the broker's CA.
 * The token is checked (hashed, constant-time, single or N use) and the CSR verified before
 * anything is signed; signing is the signer process's (signer/client.c), which holds the CA
 * key so that this one never does. The CSR contributes only its public key: subject, role
 * and lifetime are ours. */
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>
#include "broker.h"
#include "tt/hex.h"
#include "tt/log.h"
#include "tt/msg.h"
#include "tt/pki.h"

/* Token text as typed by an admin: "tt1_" and 64 hex digits; bounded before hashing. */
#define TOKEN_TEXT_MAX 128u

/* A signing out at the signer process; c is held (c->work) until it comes back. */
typedef struct {
  broker_conn_t *c;
  uint32_t id;
  bool renew;
  char device_id[TT_NAME_MAX + 1];
  char hostname[TT_TEXT_MAX + 1];
  char version[TT_NAME_MAX + 1];
} sign_job_t;

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

/* The signer's certificate, checked to be the one asked for before anyone gets it. */
static X509 *signed_cert(const sign_job_t *j, const uint8_t *der, size_t len) {
  const unsigned char *p = der;
  X509 *x = der ? d2i_X509(NULL, &p, (long)len) : NULL;
  tt_identity_t id;
  if (x && p == der + len && tt_cert_identity(x, &id) == 0 && id.role == TT_ROLE_AGENT &&
      strcmp(id.name, j->device_id) == 0)
    return x;
  X509_free(x);
  return NULL;
}

/* The signed certificate is recorded (a new device, or a renewed certificate) with its
 * audit entry in one store request; only then does the device get it. */
typedef struct {
  broker_creq_t h;
  bool renew;
  store_device_t d;
  char pem[];        /* the certificate for the device */
} record_req_t;

static int record_run(broker_store_t *s, store_req_t *r) {
  record_req_t *x = (record_req_t *)r;
  if (x->renew) return store_device_set_cert(s, x->d.id, x->d.cert_fp, x->d.cert_not_after_ms);
  return store_device_add(s, &x->d);
}

static void record_done(store_req_t *r) {
  record_req_t *x = (record_req_t *)r;
  broker_conn_t *c = broker_creq_conn(x);
  if (!c) goto out; /* the device went away; an enrolled one enrolls again */
  broker_t *b = c->b;
  if (r->rc) {
    (void)!broker_reply_error(c, x->h.id, TT_EIO, "the broker could not record the device and its audit entry");
    if (!x->renew) tt_link_close(c->link, 0, NULL);
    goto out;
  }
  Tether__Response resp = TETHER__RESPONSE__INIT;
  resp.id = x->h.id;
  if (x->renew) {
    Tether__RenewResponse rr = TETHER__RENEW_RESPONSE__INIT;
    rr.cert_pem = tt_text(x->pem);
    resp.body_case = TETHER__RESPONSE__BODY_RENEW;
    resp.renew = &rr;
    TT_INFO("enroll", "certificate renewed", "device=%s fingerprint=%s", x->d.id, x->d.cert_fp);
    if (tt_link_send(c->link, TT_K_RESPONSE, &resp.base)) tt_link_close(c->link, TT_EFULL, "peer not reading");
  } else {
    Tether__EnrollResponse er = TETHER__ENROLL_RESPONSE__INIT;
    er.device_id = tt_text(x->d.id);
    er.cert_pem = tt_text(x->pem);
    er.ca_pem = tt_text(b->ca_pem);
    resp.body_case = TETHER__RESPONSE__BODY_ENROLL;
    resp.enroll = &er;
    TT_INFO("enroll", "device enrolled", "device=%s peer=%s fingerprint=%s", x->d.id, c->addr, x->d.cert_fp);
    if (tt_link_send(c->link, TT_K_RESPONSE, &resp.base) == 0) tt_link_close(c->link, 0, NULL);
    else tt_link_close(c->link, TT_EFULL, "peer not reading");
  }
out:
  free(x);
}

static void record_signed(broker_conn_t *c, const sign_job_t *j, X509 *cert) {
  char *pem = cert_pem(cert);
  size_t plen = pem ? strlen(pem) : 0;
  record_req_t *x = pem ? broker_creq_new(c, j->id, sizeof(*x) + plen + 1, STORE_LANE_WRITE, record_run,
                                          record_done, j->renew ? "renew" : "enroll")
                        : NULL;
  if (!x) {
    free(pem);
    (void)!broker_reply_error(c, j->id, TT_EIO, "the broker could not record the device");
    if (!j->renew) tt_link_close(c->link, 0, NULL);
    return;
  }
  x->renew = j->renew;
  memcpy(x->pem, pem, plen + 1);
  free(pem);
  store_device_t *d = &x->d;
  if (tt_cert_fingerprint(cert, d->cert_fp, sizeof(d->cert_fp))) d->cert_fp[0] = '\0';
  d->enrolled_ms = (int64_t)broker_unix_ms();
  d->cert_not_after_ms = not_after_ms(cert);
  snprintf(d->id, sizeof(d->id), "%s", j->device_id);
  snprintf(d->hostname, sizeof(d->hostname), "%s", j->hostname);
  snprintf(d->address, sizeof(d->address), "%s", c->addr);
  snprintf(d->version, sizeof(d->version), "%s", j->version);
  x->h.req.audit = &x->h.audit;
  if (j->renew)
    broker_audit_rec(&x->h.audit, j->device_id, "renew", j->device_id, "fingerprint", d->cert_fp, AUDIT_END);
  else
    broker_audit_rec(&x->h.audit, "broker", "enroll", j->device_id, "address", c->addr, "fingerprint",
                     d->cert_fp, "hostname", j->hostname, AUDIT_END);
  if (broker_creq_submit(x)) tt_link_close(c->link, TT_EFULL, "peer not reading");
}

static void sign_done(void *data, int status, const uint8_t *der, size_t len, const char *why) {
  sign_job_t *j = data;
  broker_conn_t *c = j->c;
  broker_t *b = c->b;
  X509 *cert = NULL;
  if (!broker_conn_work_done(c) || c->link->closing) goto out; /* the device went away */
  c->renewing = false;
  if (status == 0 && !(cert = signed_cert(j, der, len))) {
    status = TT_EIO;
    why = "the signer sent a certificate that is not the one asked for";
  }
  if (status != 0) {
    TT_ERROR("enroll", "signing failed", "device=%s err=%s reason=\"%s\"", j->device_id, tt_errname(status),
             why ? why : "");
    broker_audit(b, j->renew ? j->device_id : "broker", j->renew ? "renew-failed" : "enroll-failed",
                 j->device_id, "reason", why ? why : tt_strerror(status), AUDIT_END);
    /* The CSR's own fault is the peer's to hear; a signer that is down is a retry later;
     * anything else stays here. */
    if (status == TT_EINVAL) (void)!broker_reply_error(c, j->id, TT_EINVAL, why);
    else if (status == TT_EBUSY || status == TT_EIO)
      (void)!broker_reply_error(c, j->id, TT_EBUSY, "the broker cannot sign certificates at the moment; try again");
    else (void)!broker_reply_error(c, j->id, TT_EIO, "the broker could not sign the certificate");
    if (!j->renew) tt_link_close(c->link, 0, NULL);
    goto out;
  }
  record_signed(c, j, cert);
out:
  X509_free(cert);
  free(j);
}

/* Parse and check a CSR (size first, then its key type and signature), so that a bad one
 * is refused with its reason before a token is spent or the signer is asked. NULL if bad,
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

/* The CSR (DER, already checked here) goes to the signer process. */
static int start_signing(broker_conn_t *c, uint32_t id, bool renew, const char *device_id, ProtobufCBinaryData csr) {
  sign_job_t *j = calloc(1, sizeof(*j));
  if (!j) return TT_ENOMEM;
  j->c = c;
  j->id = id;
  j->renew = renew;
  snprintf(j->device_id, sizeof(j->device_id), "%s", device_id);
  snprintf(j->hostname, sizeof(j->hostname), "%s", c->hostname);
  snprintf(j->version, sizeof(j->version), "%s", c->version);
  int rc = broker_signer_sign(c->b, device_id, csr.data, csr.len, sign_done, j);
  if (rc) {
    free(j);
    return rc;
  }
  c->work++;
  return 0;
}


static void new_device_id(char *out, size_t cap) {
  uint8_t r[6];
  char hex[TT_HEX_CAP(sizeof(r))];
  if (RAND_bytes(r, sizeof(r)) != 1) memset(r, 0, sizeof(r));
  tt_hex(hex, sizeof(hex), r, sizeof(r));
  snprintf(out, cap, "dev-%s", hex);
}

static int enroll_refuse(broker_conn_t *c, uint32_t id, int code, const char *why) {
  /* A stranger may try as often as it likes: the audit (and the log) take a bounded share. */
  if (broker_frontdoor_audit_ok(c->b, c)) {
    TT_WARN("enroll", "enrollment refused", "peer=%s reason=\"%s\"", c->addr, why);
    broker_audit(c->b, "broker", "enroll-refused", "", "reason", why, "address", c->addr, AUDIT_END);
  } else {
    TT_DEBUG("enroll", "enrollment refused", "peer=%s reason=\"%s\"", c->addr, why);
  }
  char msg[256];
  snprintf(msg, sizeof(msg), "enrollment refused: %s", why);
  int rc = broker_reply_error(c, id, code, msg);
  tt_link_close(c->link, 0, NULL);
  return rc == TT_ECLOSED ? 0 : rc;
}

/* The token is used up and a fresh device id chosen in one store request, so two
 * enrollments with one single-use token cannot both pass; then the signer is asked. */
typedef struct {
  broker_creq_t h;
  uint8_t hash[32];
  int64_t now_ms;
  char dev[TT_NAME_MAX + 1];
  size_t csr_len;
  uint8_t csr[];     /* the CSR's DER, checked, for the signer */
} token_req_t;

static int token_run(broker_store_t *s, store_req_t *r) {
  token_req_t *x = (token_req_t *)r;
  int rc = store_token_use(s, x->hash, x->now_ms);
  if (rc) return rc;
  store_device_t existing;
  int tries = 0;
  do new_device_id(x->dev, sizeof(x->dev));
  while (store_device_get(s, x->dev, &existing) == 0 && ++tries < 8);
  return 0;
}

static void token_done(store_req_t *r) {
  token_req_t *x = (token_req_t *)r;
  OPENSSL_cleanse(x->hash, sizeof(x->hash));
  broker_conn_t *c = broker_creq_conn(x);
  if (!c) goto out;
  const char *why = NULL;
  int code = TT_EDENIED;
  if (r->rc == TT_ENOTFOUND) why = "unknown token";
  else if (r->rc == TT_ETIMEOUT) why = "token expired";
  else if (r->rc == TT_EDENIED) why = "token already used";
  else if (r->rc) why = "the broker could not check the token", code = TT_EIO;
  if (why) {
    (void)!enroll_refuse(c, x->h.id, code, why);
    goto out;
  }
  ProtobufCBinaryData csr = {.len = x->csr_len, .data = x->csr};
  int rc = start_signing(c, x->h.id, false, x->dev, csr);
  if (rc) {
    /* The signer went away between the check and now: the token use is gone (as when a
     * signing fails), the device is told to try again. */
    TT_ERROR("enroll", "cannot ask the signer", "peer=%s err=%s", c->addr, tt_errname(rc));
    (void)!broker_reply_error(c, x->h.id, TT_EBUSY, "the broker cannot sign certificates at the moment; try again later");
    tt_link_close(c->link, 0, NULL);
  }
out:
  free(x);
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
  X509_REQ_free(csr); /* it was parsed to be checked; the signer parses its own copy */
  if (!why && !broker_signer_ready(b)) {
    /* Before the token: a use is not spent on an enrollment that cannot be signed now. */
    why = "the broker cannot sign certificates at the moment; try again later", code = TT_EBUSY;
  }
  if (why) return enroll_refuse(c, id, code, why);
  token_req_t *x = broker_creq_new(c, id, sizeof(*x) + q->csr_der.len, STORE_LANE_WRITE, token_run, token_done,
                                   "token_use");
  if (!x) return TT_ENOMEM;
  SHA256(q->token.data, q->token.len, x->hash);
  x->now_ms = (int64_t)broker_unix_ms();
  memcpy(x->csr, q->csr_der.data, q->csr_der.len); /* checked above: at most TT_PKI_CSR_MAX */
  x->csr_len = q->csr_der.len;
  return broker_creq_submit(x);
}

int broker_renew(broker_conn_t *c, uint32_t id, const Tether__RenewRequest *q) {
  if (c->id.role != TT_ROLE_AGENT) return broker_reply_error(c, id, TT_EDENIED, "only devices renew");
  /* One signing at a time per connection: a device asking in a loop cannot take the
   * signer from everyone else's enrollments. */
  if (c->renewing) return broker_reply_error(c, id, TT_EBUSY, "a renewal is already in progress");
  /* An expired certificate is not a credential any more, live connection or not. */
  if (c->expires_at && uv_now(c->b->loop) >= c->expires_at)
    return broker_reply_error(c, id, TT_EDENIED, "the certificate has expired: enroll again");
  char why[200];
  X509_REQ *csr = parse_csr(q->csr_der, why, sizeof(why));
  if (!csr) return broker_reply_error(c, id, TT_EINVAL, why);
  X509_REQ_free(csr);
  int rc = start_signing(c, id, true, c->id.name, q->csr_der);
  if (rc == 0) c->renewing = true;
  if (rc == TT_EBUSY || rc == TT_ECLOSED)
    return broker_reply_error(c, id, TT_EBUSY, "the broker cannot sign certificates at the moment; try again later");
  return rc;
}
