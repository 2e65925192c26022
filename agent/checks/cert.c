/* cert_expiry: certificate files an admin names (checks.cert_expiry.paths), each read whole
 * through the inventory's root (bounded, regular files only), its first certificate's
 * notAfter held against the threshold. A file that cannot be read or is no certificate is
 * unknown: the check cannot tell, which is not the same as fine. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include "checks.h"
#include "tt/err.h"

/* A certificate file is a few KiB (a chain a few more): one far larger is not one. */
#define CERT_FILE_MAX (1024u * 1024u)

/* The first certificate in PEM, else the whole as DER; NULL if neither. */
static X509 *parse_cert(const uint8_t *p, size_t n) {
  if (n > CERT_FILE_MAX) return NULL;
  X509 *x = NULL;
  BIO *b = BIO_new_mem_buf(p, (int)n);
  if (b) {
    x = PEM_read_bio_X509(b, NULL, NULL, NULL);
    BIO_free(b);
  }
  if (!x) {
    const unsigned char *q = p;
    x = d2i_X509(NULL, &q, (long)n);
  }
  ERR_clear_error(); /* this worker thread's queue: nothing of it belongs to the next run */
  return x;
}

static void one(const agent_check_ctx_t *ctx, const tt_check_conf_t *conf, agent_check_run_t *run, const char *path) {
  tt_buf_t b;
  int rc = inv_read(&ctx->env, path, &b);
  if (rc) {
    agent_check_sample(run, path, TT_CHECK_UNKNOWN, NULL, "cannot read it: %s",
                       rc == TT_EINVAL ? "not a regular file" : tt_strerror(rc));
    return;
  }
  X509 *x = parse_cert(b.data + b.off, b.len);
  tt_buf_free(&b);
  struct tm tm;
  const ASN1_TIME *na = x ? X509_get0_notAfter(x) : NULL;
  if (!na || ASN1_TIME_to_tm(na, &tm) != 1) {
    agent_check_sample(run, path, TT_CHECK_UNKNOWN, NULL, "%s", x ? "its expiry cannot be read" : "not a certificate (PEM or DER)");
    X509_free(x);
    return;
  }
  char subject[TT_CHECK_TEXT_MAX] = "";
  X509_NAME_oneline(X509_get_subject_name(x), subject, sizeof(subject));
  X509_free(x);
  int64_t not_after = (int64_t)timegm(&tm) * 1000, left = not_after - ctx->now_ms;
  char when[32], d[32];
  if (!strftime(when, sizeof(when), "%Y-%m-%d", &tm)) snprintf(when, sizeof(when), "?");
  agent_check_fmt_age(d, sizeof(d), left);
  tt_check_state_t st = left < conf->threshold ? TT_CHECK_FAILING : TT_CHECK_OK;
  if (left <= 0) agent_check_sample(run, path, st, subject, "expired %s ago (%s)", d, when);
  else agent_check_sample(run, path, st, subject, "expires in %s (%s)", d, when);
}

void agent_check_cert_expiry(const agent_check_ctx_t *ctx, const tt_check_conf_t *conf, agent_check_run_t *run) {
  tt_checks_format_num(TT_CHECK_V_DURATION, conf->threshold, run->threshold, sizeof(run->threshold));
  if (!conf->list[0]) {
    agent_check_na(run, "no certificate file to watch (checks.cert_expiry.paths)");
    return;
  }
  char list[TT_POLICY_VALUE_MAX + 1];
  snprintf(list, sizeof(list), "%s", conf->list);
  char *save = NULL;
  for (char *p = strtok_r(list, ",", &save); p; p = strtok_r(NULL, ",", &save)) one(ctx, conf, run, p);
}
