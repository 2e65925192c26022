/* Certificate renewal over the live link: once two thirds of our certificate's lifetime
 * have passed, send a CSR for a new key; store what comes back (after checking it) and
 * build the TLS context the next connection will use. The live link keeps its session. */
#include <string.h>
#include <openssl/x509.h>
#include "agent.h"
#include "tt/log.h"
#include "tt/msg.h"
#include "tt/pki.h"

/* Check at least this often: the wall clock may jump (suspend, NTP) while timers do not. */
#define RENEW_CHECK_MS (60u * 1000u)
#define RENEW_MIN_WAIT_MS 1000
/* The broker signs on a worker thread; it answers in milliseconds unless it is struggling. */
#define RENEW_TIMEOUT_MS (60u * 1000u)

static void renew_tick(uv_timer_t *t);

/* Never 0: a due renewal that cannot go out yet (no link, or one in flight) must not
 * spin the loop; a Welcome checks at once anyway. */
static void renew_arm(agent_t *a) {
  if (a->stopping) return;
  int64_t wait = a->renew.next_ms - agent_unix_ms();
  if (wait < RENEW_MIN_WAIT_MS) wait = RENEW_MIN_WAIT_MS;
  if (wait > RENEW_CHECK_MS) wait = RENEW_CHECK_MS;
  uv_timer_start(&a->renew.timer, renew_tick, (uint64_t)wait, 0);
}

static void renew_plan(agent_t *a) {
  a->renew.next_ms = agent_renew_due_ms(a->ident.not_before_ms, a->ident.not_after_ms);
}

static void renew_failed(agent_t *a, const char *why) {
  int64_t now = agent_unix_ms();
  snprintf(a->renew.last_error, sizeof(a->renew.last_error), "%.*s", (int)sizeof(a->renew.last_error) - 1, why); /* for the agent_renewal check */
  a->renew.next_ms = agent_renew_retry_ms(now, a->ident.not_after_ms);
  char na[32];
  agent_fmt_time(na, sizeof(na), a->ident.not_after_ms);
  TT_WARN("agent", "certificate renewal failed", "reason=\"%s\" retry_in_s=%lld not_after=%s", why,
          (long long)((a->renew.next_ms - now) / 1000), na);
}

/* The broker's answer is ours only after the same checks as at enrollment; then the files,
 * then a TLS context for the next connect (the old one stays with the live link). */
static int renew_store(agent_t *a, const Tether__RenewResponse *rr, char *err, size_t errlen) {
  X509 *x = NULL;
  agent_ident_t id;
  tt_tls_ctx_t *ctx = NULL;
  int rc = agent_pem_cert(rr->cert_pem.data, rr->cert_pem.len, &x);
  if (rc) {
    snprintf(err, errlen, "the broker sent no usable certificate");
    goto out;
  }
  if ((rc = agent_cert_check(x, a->renew.key, NULL, a->cfg.ca, a->ident.device_id, &id, err, errlen)))
    goto out;
  const agent_file_t files[] = {{.path = a->cfg.key, .key = a->renew.key}, {.path = a->cfg.cert, .cert = x}};
  if ((rc = agent_state_commit(files, 2, err, errlen))) goto out;
  a->ident = id;
  char terr[256];
  tt_tls_ctx_opts_t to = {
      .server = false, .ca_file = a->cfg.ca, .cert_file = a->cfg.cert, .key_file = a->cfg.key, .resume = true};
  if (tt_tls_ctx_new(&ctx, &to, terr, sizeof(terr))) {
    /* The files are right; a restart picks them up. Until then the old context serves
     * (its certificate is still valid for a third of its lifetime). */
    TT_ERROR("agent", "cannot build TLS context with the renewed certificate", "err=\"%s\"", terr);
  } else {
    tt_tls_ctx_free(a->tls_next);
    a->tls_next = ctx;
  }
out:
  X509_free(x);
  return rc;
}

static void renew_reply(void *data, const Tether__Response *r, int err) {
  agent_t *a = data;
  char why[TT_TEXT_MAX * 4 + 1];
  a->renew.in_flight = false;
  if (err == TT_ECLOSED) {
    /* The link went away: try again after the next Welcome, at the same due time. */
  } else if (err) {
    renew_failed(a, tt_strerror(err));
  } else if (r->error) {
    tt_log_quote(why, sizeof(why), r->error->message.data, r->error->message.len);
    renew_failed(a, why);
  } else if (r->body_case != TETHER__RESPONSE__BODY_RENEW || !r->renew) {
    renew_failed(a, "the broker answered something else");
  } else if (renew_store(a, r->renew, why, sizeof(why))) {
    renew_failed(a, why);
  } else {
    char na[32];
    agent_fmt_time(na, sizeof(na), a->ident.not_after_ms);
    TT_INFO("agent", "certificate renewed", "device=%s not_after=%s", a->ident.device_id, na);
    a->renew.last_error[0] = '\0';
    renew_plan(a);
    /* However short-lived the new certificate, never ask again at once. */
    int64_t soonest = agent_unix_ms() + AGENT_RENEW_RETRY_MIN_MS;
    if (a->renew.next_ms < soonest) a->renew.next_ms = soonest;
  }
  EVP_PKEY_free(a->renew.key);
  a->renew.key = NULL;
  renew_arm(a);
}

/* Key generation on the loop thread: one P-256 keygen and a CSR signature take well under
 * a millisecond (~50 us + ~30 us), once every few weeks; a worker thread would cost more
 * in bookkeeping than it saves. */
static void renew_send(agent_t *a) {
  char err[256];
  X509_REQ *csr = NULL;
  unsigned char *der = NULL;
  EVP_PKEY *key = NULL;
  int rc = tt_pki_key_new(&key, err, sizeof(err));
  if (!rc) rc = tt_pki_csr_new(key, a->ident.device_id, &csr, err, sizeof(err));
  int len = rc ? -1 : i2d_X509_REQ(csr, &der);
  if (!rc && len <= 0) {
    snprintf(err, sizeof(err), "cannot encode the CSR");
    rc = TT_ETLS;
  }
  if (rc) {
    renew_failed(a, err);
    goto out;
  }
  Tether__RenewRequest rr = TETHER__RENEW_REQUEST__INIT;
  rr.csr_der.data = der;
  rr.csr_der.len = (size_t)len;
  Tether__Request q = TETHER__REQUEST__INIT;
  q.body_case = TETHER__REQUEST__BODY_RENEW;
  q.renew = &rr;
  if ((rc = agent_reqs_send(&a->reqs, a->link, &q, RENEW_TIMEOUT_MS, renew_reply, a))) {
    renew_failed(a, tt_strerror(rc));
    goto out;
  }
  a->renew.in_flight = true;
  a->renew.key = key;
  key = NULL;
  TT_INFO("agent", "renewing certificate", "device=%s request=%u", a->ident.device_id, q.id);
out:
  OPENSSL_free(der);
  X509_REQ_free(csr);
  EVP_PKEY_free(key);
}

static void renew_check(agent_t *a) {
  if (a->stopping || !a->link || !a->welcomed || a->renew.in_flight) return;
  if (agent_unix_ms() < a->renew.next_ms) return;
  renew_send(a);
}

static void renew_tick(uv_timer_t *t) {
  agent_t *a = t->data;
  renew_check(a);
  renew_arm(a);
}

void agent_renew_init(agent_t *a) {
  uv_timer_init(a->loop, &a->renew.timer);
  a->renew.timer.data = a;
  renew_plan(a);
  if (!a->ident.device_id[0]) return; /* not a device certificate: nothing to renew */
  char due[32], na[32];
  agent_fmt_time(due, sizeof(due), a->renew.next_ms);
  agent_fmt_time(na, sizeof(na), a->ident.not_after_ms);
  if (agent_unix_ms() >= a->ident.not_after_ms)
    TT_ERROR("agent", "certificate expired: enroll again", "device=%s not_after=%s", a->ident.device_id, na);
  else
    TT_INFO("agent", "certificate", "device=%s not_after=%s renew_at=%s", a->ident.device_id, na, due);
  renew_arm(a);
}

void agent_renew_welcomed(agent_t *a) {
  renew_check(a);
  renew_arm(a);
}

void agent_renew_close(agent_t *a) {
  uv_close((uv_handle_t *)&a->renew.timer, NULL);
  EVP_PKEY_free(a->renew.key);
  a->renew.key = NULL;
}
