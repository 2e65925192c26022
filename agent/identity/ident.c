/* The device's identity as the agent sees it: the id and validity its certificate carries,
 * and the checks a certificate the broker issued must pass before we store it. */
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <openssl/pem.h>
#include <openssl/x509_vfy.h>
#include "agent.h"

int64_t agent_unix_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void agent_fmt_time(char *out, size_t cap, int64_t unix_ms) {
  time_t t = (time_t)(unix_ms / 1000);
  struct tm tm;
  if (!gmtime_r(&t, &tm) || strftime(out, cap, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
    snprintf(out, cap, "%lld", (long long)unix_ms);
}

static int asn1_ms(const ASN1_TIME *t, int64_t *ms) {
  struct tm tm;
  if (!t || ASN1_TIME_to_tm(t, &tm) != 1) return TT_ECERT;
  *ms = (int64_t)timegm(&tm) * 1000;
  return 0;
}

int agent_ident_read(X509 *x, agent_ident_t *out) {
  tt_identity_t id;
  memset(out, 0, sizeof(*out));
  if (tt_cert_identity(x, &id) || id.role != TT_ROLE_AGENT) return TT_ECERT;
  if (asn1_ms(X509_get0_notBefore(x), &out->not_before_ms) ||
      asn1_ms(X509_get0_notAfter(x), &out->not_after_ms)) {
    ERR_clear_error();
    memset(out, 0, sizeof(*out));
    return TT_ECERT;
  }
  snprintf(out->device_id, sizeof(out->device_id), "%s", id.name);
  return 0;
}

int agent_pem_cert(const uint8_t *pem, size_t len, X509 **out) {
  *out = NULL;
  if (len == 0 || len > AGENT_PEM_MAX) return TT_ETOOBIG;
  BIO *b = BIO_new_mem_buf(pem, (int)len);
  if (!b) return TT_ENOMEM;
  *out = PEM_read_bio_X509(b, NULL, NULL, NULL);
  BIO_free(b);
  ERR_clear_error();
  return *out ? 0 : TT_ECERT;
}

static int verify_chain(X509 *cert, X509 *ca, const char *ca_file, char *err, size_t errlen) {
  int rc = TT_ENOMEM;
  X509_STORE *st = X509_STORE_new();
  X509_STORE_CTX *vc = X509_STORE_CTX_new();
  if (!st || !vc) goto out;
  if (ca_file ? X509_STORE_load_locations(st, ca_file, NULL) != 1 : X509_STORE_add_cert(st, ca) != 1) {
    snprintf(err, errlen, "cannot load the CA certificate%s%s", ca_file ? " " : "", ca_file ? ca_file : "");
    rc = TT_ECONFIG;
    goto out;
  }
  if (X509_STORE_CTX_init(vc, st, cert, NULL) != 1) goto out;
  X509_STORE_CTX_set_purpose(vc, X509_PURPOSE_SSL_CLIENT);
  if (X509_verify_cert(vc) != 1) {
    snprintf(err, errlen, "the certificate does not verify against our CA: %s",
             X509_verify_cert_error_string(X509_STORE_CTX_get_error(vc)));
    rc = TT_ECERT;
    goto out;
  }
  rc = 0;
out:
  if (rc == TT_ENOMEM) snprintf(err, errlen, "out of memory checking the certificate");
  X509_STORE_CTX_free(vc);
  X509_STORE_free(st);
  ERR_clear_error();
  return rc;
}

int agent_cert_check(X509 *cert, EVP_PKEY *key, X509 *ca, const char *ca_file, const char *device_id,
                     agent_ident_t *out, char *err, size_t errlen) {
  agent_ident_t id;
  memset(out, 0, sizeof(*out));
  if (EVP_PKEY_eq(X509_get0_pubkey(cert), key) != 1) {
    ERR_clear_error();
    snprintf(err, errlen, "the certificate is not for the key we made");
    return TT_ECERT;
  }
  if (agent_ident_read(cert, &id)) {
    snprintf(err, errlen, "the certificate does not name a device (role agent)");
    return TT_ECERT;
  }
  if (device_id && strcmp(id.device_id, device_id) != 0) {
    snprintf(err, errlen, "the certificate names device %s, not %s", id.device_id, device_id);
    return TT_ECERT;
  }
  int rc = verify_chain(cert, ca, ca_file, err, errlen);
  if (rc) return rc;
  *out = id;
  return 0;
}
