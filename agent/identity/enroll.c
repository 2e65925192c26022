/* `tether-agent enroll`: make a key here, reach the broker trusting only the CA pinned by
 * fingerprint, trade a one-time token and a CSR for a device certificate, check what came
 * back, and store CA, certificate and key in the state directory, whole or not at all. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include "agent.h"
#include "tt/addr.h"
#include "tt/hex.h"
#include "tt/log.h"
#include "tt/msg.h"
#include "tt/pki.h"

/* The only request of an enrollment connection. */
#define ENROLL_REQ_ID 1u
/* One line on stderr: room for the broker address and its (escaped) message. */
#define ENROLL_WHY_MAX 1536

typedef enum { ENROLL_CONNECTING, ENROLL_WAITING, ENROLL_DONE } enroll_state_t;

typedef struct {
  const agent_cfg_t *cfg;
  uv_timer_t timer;
  tt_link_t *link;
  enroll_state_t state;
  const char *pin;
  char seen_ca[TT_FINGERPRINT_LEN + 1]; /* the CA the broker showed, for a pin mismatch */
  ProtobufCBinaryData csr;
  const char *hostname;
  char why[ENROLL_WHY_MAX];                        /* set on failure */
  X509 *cert, *ca;                      /* set on success */
  char device_id[TT_NAME_MAX + 1];
} enroll_t;

/* "sha256:" and 64 hex digits, either case, colons between bytes allowed (as openssl
 * prints fingerprints); written back as tt_cert_fingerprint does. */
static int pin_normalize(const char *in, char out[TT_FINGERPRINT_LEN + 1]) {
  if (strncasecmp(in, "sha256:", 7) != 0) return TT_EINVAL;
  size_t n = 7;
  memcpy(out, "sha256:", 7);
  for (const char *p = in + 7; *p; p++) {
    if (*p == ':') continue;
    int v = tt_hex_value((unsigned char)*p);
    if (v < 0 || n >= TT_FINGERPRINT_LEN) return TT_EINVAL;
    out[n++] = tt_hex_digit((unsigned)v);
  }
  out[n] = '\0';
  return n == TT_FINGERPRINT_LEN ? 0 : TT_EINVAL;
}

/* Printable text from the broker for our one line on stderr. */
static void peer_text(char *dst, size_t cap, ProtobufCBinaryData t) {
  if (tt_text_copy(dst, cap, t)) tt_log_quote(dst, cap, t.data, t.len);
  if (!dst[0]) snprintf(dst, cap, "no reason given");
}

/* The TLS layer refuses a broker whose chain lacks the pinned CA before we see the chain.
 * To say which CA it has, this watches the handshake (a passive OpenSSL message callback):
 * once the server's chain has been parsed, remember its CA's fingerprint. */
static void seen_ca_cb(int write_p, int version, int content_type, const void *buf, size_t len, SSL *ssl,
                       void *arg) {
  enroll_t *e = arg;
  STACK_OF(X509) *chain = e->seen_ca[0] ? NULL : SSL_get_peer_cert_chain(ssl);
  for (int i = chain ? sk_X509_num(chain) - 1 : -1; i >= 0; i--) {
    X509 *x = sk_X509_value(chain, i);
    if (X509_check_ca(x) > 0 && tt_cert_fingerprint(x, e->seen_ca, sizeof(e->seen_ca)) == 0) break;
  }
  ERR_clear_error();
}

static void enroll_on_up(tt_link_t *l) {
  enroll_t *e = l->data;
  char fp[TT_FINGERPRINT_LEN + 1];
  tt_identity_t id;
  X509 *ca = tt_tls_pinned_ca(l->tls), *leaf = tt_link_peer_cert(l);
  if (!ca || tt_cert_fingerprint(ca, fp, sizeof(fp)) || strcmp(fp, e->pin) != 0) {
    snprintf(e->why, sizeof(e->why), "the broker at %s is not the one pinned (the pinned CA is not in its chain)",
             e->cfg->broker);
  } else if (!leaf || tt_cert_identity(leaf, &id) || id.role != TT_ROLE_BROKER) {
    snprintf(e->why, sizeof(e->why), "the server at %s has a certificate from the pinned CA, but not a broker's",
             e->cfg->broker);
  }
  if (e->why[0]) {
    tt_link_close(l, TT_EROLE, "not a broker");
    return;
  }
  Tether__EnrollRequest er = TETHER__ENROLL_REQUEST__INIT;
  er.token = tt_text(e->cfg->token);
  er.csr_der = e->csr;
  er.hostname = tt_text(e->hostname);
  er.agent_version = tt_text(agent_version);
  Tether__Request q = TETHER__REQUEST__INIT;
  q.id = ENROLL_REQ_ID;
  q.body_case = TETHER__REQUEST__BODY_ENROLL;
  q.enroll = &er;
  if (tt_link_send(l, TT_K_REQUEST, &q.base)) {
    snprintf(e->why, sizeof(e->why), "cannot send the enrollment request to %s", e->cfg->broker);
    tt_link_close(l, TT_EIO, NULL);
    return;
  }
  e->state = ENROLL_WAITING;
}

static int enroll_answer(enroll_t *e, const Tether__Response *r) {
  char msg[TT_TEXT_MAX * 4 + 1];
  if (r->id != ENROLL_REQ_ID) return TT_EPROTO;
  if (r->error) {
    peer_text(msg, sizeof(msg), r->error->message);
    snprintf(e->why, sizeof(e->why), "%s", msg); /* "enrollment refused: token already used" */
    return 0;
  }
  const Tether__EnrollResponse *er = r->body_case == TETHER__RESPONSE__BODY_ENROLL ? r->enroll : NULL;
  if (!er) {
    snprintf(e->why, sizeof(e->why), "the broker at %s answered, but not with a certificate", e->cfg->broker);
  } else if (tt_text_copy(e->device_id, sizeof(e->device_id), er->device_id) || !tt_name_valid(e->device_id)) {
    snprintf(e->why, sizeof(e->why), "the broker sent an unusable device id");
  } else if (agent_pem_cert(er->cert_pem.data, er->cert_pem.len, &e->cert) ||
             agent_pem_cert(er->ca_pem.data, er->ca_pem.len, &e->ca)) {
    snprintf(e->why, sizeof(e->why), "the broker sent an unreadable certificate");
  }
  return 0;
}

static int enroll_on_control(tt_link_t *l, uint8_t kind, const ProtobufCMessage *m) {
  enroll_t *e = l->data;
  char msg[TT_TEXT_MAX * 4 + 1];
  if (kind == TT_K_RESPONSE && e->state == ENROLL_WAITING) {
    int rc = enroll_answer(e, (const Tether__Response *)m);
    if (rc) return rc;
    e->state = ENROLL_DONE;
    tt_link_close(l, 0, NULL);
    return 0;
  }
  if (kind == TT_K_ERROR) {
    peer_text(msg, sizeof(msg), ((const Tether__Error *)m)->message);
    snprintf(e->why, sizeof(e->why), "the broker at %s refused: %s", e->cfg->broker, msg);
    tt_link_close(l, 0, NULL);
    return 0;
  }
  return TT_EKIND;
}

static void enroll_why_down(enroll_t *e, int reason) {
  const char *b = e->cfg->broker;
  if (reason == TT_ECERT && e->seen_ca[0] && strcmp(e->seen_ca, e->pin) != 0)
    snprintf(e->why, sizeof(e->why), "the broker at %s is not the one pinned (its CA is %s)", b, e->seen_ca);
  else if ((reason == TT_ECERT || reason == TT_ETLS) && e->seen_ca[0])
    snprintf(e->why, sizeof(e->why),
             "the broker at %s has the pinned CA but its certificate was refused (is it for that name? see --server-name)",
             b);
  else if (reason == TT_ECERT)
    snprintf(e->why, sizeof(e->why), "the broker at %s is not the one pinned (no CA in its chain matches)", b);
  else if (reason == TT_ETIMEOUT)
    snprintf(e->why, sizeof(e->why), "no answer from the broker at %s within %llds", b,
             (long long)(e->cfg->enroll_timeout_ms / 1000));
  else if (reason == TT_ETLS && e->state == ENROLL_CONNECTING)
    snprintf(e->why, sizeof(e->why), "TLS handshake with %s failed (does the broker accept enrollment?)", b);
  else if (e->state == ENROLL_WAITING)
    snprintf(e->why, sizeof(e->why), "the broker at %s closed the connection without answering (%s)", b,
             reason ? tt_strerror(reason) : "does it support enrollment?");
  else
    snprintf(e->why, sizeof(e->why), "cannot connect to the broker at %s: %s", b,
             reason ? tt_strerror(reason) : "connection closed");
}

static void enroll_on_down(tt_link_t *l, int reason) {
  enroll_t *e = l->data;
  e->link = NULL;
  if (e->state != ENROLL_DONE && !e->why[0]) enroll_why_down(e, reason);
  uv_close((uv_handle_t *)&e->timer, NULL);
}

static void enroll_timeout_cb(uv_timer_t *t) {
  enroll_t *e = t->data;
  if (!e->link) return;
  enroll_why_down(e, TT_ETIMEOUT);
  tt_link_close(e->link, TT_ETIMEOUT, NULL);
}

static const tt_link_cbs_t enroll_cbs = {
    .on_up = enroll_on_up, .on_control = enroll_on_control, .on_down = enroll_on_down, .mux = {0}};

/* One connection, one request, one answer. Fills e->why on failure. */
static void enroll_exchange(enroll_t *e, tt_tls_ctx_t *tls) {
  uv_loop_t loop;
  struct sockaddr_storage sa;
  char host[256];
  if (uv_loop_init(&loop)) {
    snprintf(e->why, sizeof(e->why), "cannot start the event loop");
    return;
  }
  int rc = tt_addr_resolve(e->cfg->broker, &sa, host, sizeof(host));
  if (rc) {
    snprintf(e->why, sizeof(e->why), "cannot resolve the broker %s: %s", e->cfg->broker, tt_strerror(rc));
    goto out;
  }
  uint64_t ms = (uint64_t)e->cfg->enroll_timeout_ms;
  tt_tls_limits_t lim = {.handshake_ms = ms, .idle_ms = ms, .high_water = TT_SOCKET_QUEUE_CAP,
                         .low_water = TT_SOCKET_QUEUE_CAP / 4, .write_cap = TT_SOCKET_WRITE_CAP};
  const char *sn = e->cfg->server_name[0] ? e->cfg->server_name : host;
  uv_timer_init(&loop, &e->timer);
  e->timer.data = e;
  rc = tt_link_connect(&e->link, tls, &loop, (struct sockaddr *)&sa, sn, &lim, &enroll_cbs, e);
  if (rc) {
    snprintf(e->why, sizeof(e->why), "cannot connect to the broker at %s: %s", e->cfg->broker, tt_strerror(rc));
    uv_close((uv_handle_t *)&e->timer, NULL);
  } else {
    uv_timer_start(&e->timer, enroll_timeout_cb, ms, 0);
  }
  uv_run(&loop, UV_RUN_DEFAULT);
out:
  if (uv_loop_close(&loop)) TT_ERROR("agent", "event loop not empty at exit", NULL);
}

static int say(char *why, size_t cap, int status, const char *fmt, ...) TT_PRINTF(4, 5);
static int say(char *why, size_t cap, int status, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(why, cap, fmt, ap);
  va_end(ap);
  return status;
}

/* Returns an exit status; why is set when it is not 0. */
static int enroll_prepare(const agent_cfg_t *cfg, bool force, char *pin, int *lock_fd, char *why, size_t cap) {
  char path[AGENT_PATH_MAX], err[512];
  if (!cfg->token[0]) return say(why, cap, 2, "enroll needs --token (or enroll.token in the config)");
  if (!cfg->ca_pin[0]) return say(why, cap, 2, "enroll needs --ca-pin sha256:... (or enroll.ca_pin)");
  if (pin_normalize(cfg->ca_pin, pin))
    return say(why, cap, 2, "--ca-pin must be sha256: followed by 64 hex digits");
  if (cfg->hostname[0] && !tt_name_valid(cfg->hostname))
    return say(why, cap, 2, "--hostname may hold only letters, digits and . _ @ -");
  if (agent_path(path, sizeof(path), cfg->state_dir, AGENT_CERT_FILE))
    return say(why, cap, 2, "state_dir is too long");
  if (agent_state_open(cfg->state_dir, true, lock_fd, err, sizeof(err)))
    return say(why, cap, 1, "%s", err);
  if (access(cfg->state_dir, W_OK) != 0)
    return say(why, cap, 1, "cannot write to the state directory %s", cfg->state_dir);
  char ca[AGENT_PATH_MAX], key[AGENT_PATH_MAX], name[AGENT_PATH_MAX];
  if (agent_path(ca, sizeof(ca), cfg->state_dir, AGENT_CA_FILE) ||
      agent_path(key, sizeof(key), cfg->state_dir, AGENT_KEY_FILE) ||
      agent_path(name, sizeof(name), cfg->state_dir, AGENT_HOSTNAME_FILE))
    return say(why, cap, 2, "state_dir is too long");
  agent_state_recover(key, path, ca, name);
  if (!force && access(path, F_OK) == 0)
    return say(why, cap, 1, "%s already holds an identity (%s); --force replaces it", cfg->state_dir,
                    AGENT_CERT_FILE);
  return 0;
}

static int enroll_store(const agent_cfg_t *cfg, enroll_t *e, EVP_PKEY *key, char *why, size_t cap) {
  char fp[TT_FINGERPRINT_LEN + 1], err[512];
  char pk[AGENT_PATH_MAX], pc[AGENT_PATH_MAX], pa[AGENT_PATH_MAX], pn[AGENT_PATH_MAX];
  agent_ident_t id;
  if (tt_cert_fingerprint(e->ca, fp, sizeof(fp)) || strcmp(fp, e->pin) != 0)
    return say(why, cap, 1, "the broker sent a CA (%s) other than the pinned one; refusing it", fp);
  if (agent_cert_check(e->cert, key, e->ca, NULL, e->device_id, &id, err, sizeof(err)))
    return say(why, cap, 1, "the broker's certificate is not usable: %s", err);
  if (agent_path(pk, sizeof(pk), cfg->state_dir, AGENT_KEY_FILE) ||
      agent_path(pc, sizeof(pc), cfg->state_dir, AGENT_CERT_FILE) ||
      agent_path(pa, sizeof(pa), cfg->state_dir, AGENT_CA_FILE) ||
      agent_path(pn, sizeof(pn), cfg->state_dir, AGENT_HOSTNAME_FILE))
    return say(why, cap, 2, "state_dir is too long");
  /* --hostname is remembered: `run` reports it unless configured otherwise. */
  bool named = cfg->hostname[0] != '\0';
  const agent_file_t files[] = {{.path = pk, .key = key},
                                {.path = pc, .cert = e->cert},
                                {.path = pa, .cert = e->ca},
                                {.path = pn, .text = cfg->hostname}};
  if (agent_state_commit(files, named ? 4 : 3, err, sizeof(err)))
    return say(why, cap, 1, "enrolled as %s, but storing the identity failed: %s", e->device_id, err);
  if (!named && unlink(pn) == 0) /* a name from an identity --force replaced */
    TT_DEBUG("agent", "removed the old hostname file", "path=%s", pn);
  return 0;
}

int agent_enroll(const agent_cfg_t *cfg, bool force) {
  char why[ENROLL_WHY_MAX] = "", err[256], pin[TT_FINGERPRINT_LEN + 1], host[TT_NAME_MAX + 1];
  int lock_fd = -1, status;
  EVP_PKEY *key = NULL;
  X509_REQ *csr = NULL;
  unsigned char *der = NULL;
  tt_tls_ctx_t *tls = NULL;
  enroll_t e = {.cfg = cfg, .pin = pin, .hostname = host};

  if ((status = enroll_prepare(cfg, force, pin, &lock_fd, why, sizeof(why)))) goto out;
  snprintf(host, sizeof(host), "%s", cfg->hostname);
  if (!host[0] && gethostname(host, sizeof(host)) != 0) snprintf(host, sizeof(host), "unknown");
  host[sizeof(host) - 1] = '\0';
  status = 1;
  /* The CSR's subject is ignored by the broker, which assigns the device id. */
  int len = -1;
  if (tt_pki_key_new(&key, err, sizeof(err)) || tt_pki_csr_new(key, "enrolling-device", &csr, err, sizeof(err)) ||
      (len = i2d_X509_REQ(csr, &der)) <= 0) {
    snprintf(why, sizeof(why), "cannot make a key and CSR: %s", len == 0 ? "encoding" : err);
    goto out;
  }
  e.csr.data = der;
  e.csr.len = (size_t)len;
  tt_tls_ctx_opts_t to = {.server = false, .ca_pin = pin};
  if (tt_tls_ctx_new(&tls, &to, err, sizeof(err))) {
    snprintf(why, sizeof(why), "%s", err);
    goto out;
  }
  SSL_CTX_set_msg_callback(tt_tls_ctx_ssl(tls), seen_ca_cb);
  SSL_CTX_set_msg_callback_arg(tt_tls_ctx_ssl(tls), &e);
  enroll_exchange(&e, tls);
  if (e.why[0]) {
    snprintf(why, sizeof(why), "%s", e.why);
    goto out;
  }
  if ((status = enroll_store(cfg, &e, key, why, sizeof(why)))) goto out;
  printf("enrolled as %s (broker %s)\n", e.device_id, cfg->broker);
  status = 0;
out:
  if (status) fprintf(stderr, "tether-agent: %s\n", why);
  if (lock_fd >= 0) close(lock_fd);
  tt_tls_ctx_free(tls);
  X509_free(e.cert);
  X509_free(e.ca);
  OPENSSL_free(der);
  X509_REQ_free(csr);
  EVP_PKEY_free(key);
  return status;
}
