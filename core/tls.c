/* A TLS 1.3 stream over a libuv TCP handle (see tt/tls.h). OpenSSL never touches the
 * socket: ciphertext goes through two memory BIOs that we move to and from libuv. */
#include "tt/tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/ioctl.h>
#include <linux/sockios.h>
#include <sys/stat.h>
#include <unistd.h>
#include <openssl/buffer.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "tt/defer.h"
#include "tt/hex.h"
#include "tt/limits.h"
#include "tt/log.h"

/* One read from the socket; shared by every stream of the thread (see tls_alloc_cb). */
#define TLS_TRIM_EVERY_MS 1000u
#define TLS_READ_BUF (256u * 1024u)
/* One TLS record of plaintext at most. */
#define TLS_PLAIN_BUF (16u * 1024u)
/* tt_tls_write hands OpenSSL one record's worth at a time and sends the ciphertext
 * whenever this much has piled up, so a big write never doubles in memory. */
#define TLS_WRITE_CHUNK (16u * 1024u)
#define TLS_FLUSH_AT (64u * 1024u)
/* A memory BIO keeps the largest buffer it ever grew to; an empty one holding more than
 * this is replaced, so that an idle stream does not sit on a 16 KiB record's worth. */
#define TLS_BIO_KEEP 256u
/* uv_shutdown waits for queued writes; a peer that reads nothing must not hold the close
 * open forever. After this long the handles are closed and the queue dropped. */
#define TLS_LINGER_MS 3000u

static const unsigned char tls_alpn_wire[] = "\x08" TT_ALPN;
static const unsigned char tls_alpn_enroll_wire[] = "\x0f" TT_ALPN_ENROLL;
_Static_assert(sizeof(TT_ALPN) - 1 == 0x08, "ALPN length prefix");
_Static_assert(sizeof(TT_ALPN_ENROLL) - 1 == 0x0f, "ALPN length prefix");

/* "sha256:" and 64 hex digits: the CA pin, as tt_cert_fingerprint writes it. */
#define TLS_SHA256_LEN 32u
#define TLS_FP_PREFIX "sha256:"
#define TLS_FP_LEN (sizeof(TLS_FP_PREFIX) - 1 + 2 * TLS_SHA256_LEN)
/* How many foreign fingerprints the "pinned CA not in the chain" warning lists. */
#define TLS_PIN_LOG_MAX 4u
/* A ticket lets a client skip the certificate exchange for this long; then it proves its
 * certificate again. */
#define TLS_SESSION_SECONDS (24L * 3600L)
/* The ticket key file: a 16-byte key name, an AES-256-CBC key and an HMAC-SHA256 key. */
#define TLS_TICKET_NAME_LEN 16u
#define TLS_TICKET_AES_LEN 32u
#define TLS_TICKET_HMAC_LEN 32u
#define TLS_TICKET_FILE_LEN (TLS_TICKET_NAME_LEN + TLS_TICKET_AES_LEN + TLS_TICKET_HMAC_LEN)
#define TLS_SID_CTX "tether"

/* Streams keep their context alive: OpenSSL calls our session and ticket callbacks with
 * the SSL_CTX, and those read this struct. Freed when the owner and every stream let go. */
struct tt_tls_ctx_s {
  SSL_CTX *ssl;
  atomic_uint refs;
  bool server;
  bool allow_enroll;   /* server: tether-enroll/1 without a client certificate */
  bool pinned;         /* client: ca_pin instead of ca_file; offers tether-enroll/1 only */
  bool resume;         /* client: offer the newest ticket */
  bool foreign;        /* client: a server that is not ours (TLS 1.2 too, no ALPN) */
  unsigned char pin[TLS_SHA256_LEN];
  unsigned char tk[TLS_TICKET_FILE_LEN]; /* server: name | AES key | HMAC key */
  uv_mutex_t lock;     /* guards session: new tickets and connects may be on other loops */
  SSL_SESSION *session;
};

typedef enum { STREAM_CONNECTING, STREAM_HANDSHAKE, STREAM_OPEN } tls_state_t;

struct tt_tls_s {
  uv_tcp_t tcp;
  uv_timer_t timer; /* handshake deadline, then idle deadline, deferred drain, close linger */
  SSL *ssl;
  BIO *rbio; /* socket -> OpenSSL */
  BIO *wbio; /* OpenSSL -> socket */
  tt_tls_ctx_t *ctx; /* one reference, dropped when the stream is freed */
  X509 *pinned_ca;   /* client with ca_pin: the anchor found in the server's chain */
  tt_tls_cbs_t cbs;
  tt_tls_limits_t lim;
  void *data;
  size_t queued;  /* ciphertext handed to uv_write and not yet completed */
  uint64_t wire_out; /* ciphertext handed to uv_write, in all */
  uint64_t wire_acked_final; /* what the peer had acknowledged when the stream began to close */
  bool acked_final;
  uint64_t trim_at;      /* no BIO trim before this (uv_now ms) */
  uint64_t mark;  /* before STREAM_OPEN: when we started; after: last byte received */
  int reason;     /* for on_close */
  tls_state_t state;
  unsigned char open_handles;
  bool closing;         /* tt_tls_close ran; no more SSL calls except close_notify */
  bool handles_closing; /* uv_close issued; nothing may touch the handles */
  bool silent;          /* creation failed: free without on_close */
  bool paused;          /* user asked tt_tls_read_stop */
  bool reading;         /* uv_read_start in effect */
  bool drain_due;       /* deliver what OpenSSL holds on the next timer tick */
  bool above_high;      /* reached high_water, waiting to fall to low_water */
  bool failed;          /* fatal TLS error: no close_notify */
  bool enroll_offer;    /* server with allow_enroll: the ClientHello offered tether-enroll/1 */
  bool enroll;          /* tether-enroll/1 was agreed */
  bool heard;           /* a byte has come from the peer */
  char peer[INET6_ADDRSTRLEN + 8];
};

/* A write request carries its own copy of the ciphertext. */
typedef struct {
  uv_write_t req;
  size_t len;
  uint8_t bytes[];
} tls_wreq_t;

static void tls_pump(tt_tls_t *s);
static void tls_timer_cb(uv_timer_t *t);

/* ---- context --------------------------------------------------------------------- */

static void ctx_err(char *err, size_t errlen, const char *what) {
  if (!err || errlen == 0) return;
  unsigned long e = ERR_peek_last_error();
  const char *why = e ? ERR_reason_error_string(e) : NULL;
  snprintf(err, errlen, "%s: %s", what, why ? why : "failed");
}

static int ctx_fail(int rc, char *err, size_t errlen, const char *fmt, ...) TT_PRINTF(4, 5);
static int ctx_fail(int rc, char *err, size_t errlen, const char *fmt, ...) {
  if (err && errlen) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
  }
  return rc;
}

static tt_tls_ctx_t *ctx_of(const SSL *ssl) {
  return SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
}

/* Whether a wire-format ALPN list (length-prefixed names) offers want (same format). */
static bool alpn_offers(const unsigned char *in, size_t inlen, const unsigned char *want) {
  size_t i = 0;
  while (i < inlen) {
    size_t n = in[i];
    if (n == 0 || n > inlen - i - 1) return false;
    if (n == want[0] && memcmp(in + i + 1, want + 1, n) == 0) return true;
    i += 1 + n;
  }
  return false;
}

/* The server speaks tether/1, or tether-enroll/1 to a client that offered it where
 * enrollment is allowed (it was then not asked for a certificate, so it must not get
 * tether/1). Anything else is refused with a fatal alert. */
static int tls_alpn_select_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                              const unsigned char *in, unsigned int inlen, void *arg) {
  const tt_tls_t *s = SSL_get_app_data(ssl);
  const unsigned char *want = s && s->enroll_offer ? tls_alpn_enroll_wire : tls_alpn_wire;
  if (!alpn_offers(in, inlen, want)) return SSL_TLSEXT_ERR_ALERT_FATAL;
  *out = want + 1;
  *outlen = want[0];
  return SSL_TLSEXT_ERR_OK;
}

/* Server with allow_enroll: runs before the certificate request is decided. A client that
 * offers tether-enroll/1 is not asked for a certificate, gets no ticket and cannot resume
 * (tls_ticket_key_cb); every other client gets mutual TLS as usual. Runs again after a
 * HelloRetryRequest, so both branches set everything. */
static int tls_client_hello_cb(SSL *ssl, int *al, void *arg) {
  tt_tls_ctx_t *c = arg;
  tt_tls_t *s = SSL_get_app_data(ssl);
  const unsigned char *ext = NULL;
  size_t len = 0;
  bool enroll = false;
  if (!s) {
    *al = SSL_AD_INTERNAL_ERROR;
    return SSL_CLIENT_HELLO_ERROR;
  }
  if (SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_application_layer_protocol_negotiation, &ext,
                                &len) == 1 && len >= 2 && ((size_t)ext[0] << 8 | ext[1]) == len - 2)
    enroll = alpn_offers(ext + 2, len - 2, tls_alpn_enroll_wire);
  s->enroll_offer = enroll;
  if (enroll) {
    SSL_set_verify(ssl, SSL_VERIFY_NONE, NULL);
  } else {
    SSL_set_verify(ssl, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
  }
  if (SSL_set_num_tickets(ssl, enroll ? 0 : SSL_CTX_get_num_tickets(c->ssl)) != 1) {
    *al = SSL_AD_INTERNAL_ERROR;
    return SSL_CLIENT_HELLO_ERROR;
  }
  return SSL_CLIENT_HELLO_SUCCESS;
}

static void fp_format(const unsigned char md[TLS_SHA256_LEN], char out[TLS_FP_LEN + 1]) {
  const size_t pre = sizeof(TLS_FP_PREFIX) - 1;
  memcpy(out, TLS_FP_PREFIX, pre);
  tt_hex(out + pre, TLS_FP_LEN + 1 - pre, md, TLS_SHA256_LEN);
}

static int pin_parse(const char *pin, unsigned char out[TLS_SHA256_LEN]) {
  const size_t pre = sizeof(TLS_FP_PREFIX) - 1;
  if (strlen(pin) != TLS_FP_LEN || strncmp(pin, TLS_FP_PREFIX, pre) != 0) return -1;
  return tt_unhex(out, TLS_SHA256_LEN, pin + pre, TLS_FP_LEN - pre) == TLS_SHA256_LEN ? 0 : -1;
}

/* Client with ca_pin, in place of OpenSSL's chain check: the trust anchor is whichever
 * certificate the server sent whose DER sha256 is the pin, and nothing else. The chain is
 * then verified as usual in the handshake's own store context (with the server_name
 * check), so the verify result and chain OpenSSL keeps are the real ones. */
static int tls_pin_verify_cb(X509_STORE_CTX *xs, void *arg) {
  tt_tls_ctx_t *c = arg;
  SSL *ssl = X509_STORE_CTX_get_ex_data(xs, SSL_get_ex_data_X509_STORE_CTX_idx());
  tt_tls_t *s = ssl ? SSL_get_app_data(ssl) : NULL;
  X509 *leaf = X509_STORE_CTX_get0_cert(xs), *ca = NULL;
  STACK_OF(X509) *sent = X509_STORE_CTX_get0_untrusted(xs);
  char seen[TLS_PIN_LOG_MAX * (TLS_FP_LEN + 1) + 8] = "", fp[TLS_FP_LEN + 1];
  size_t used = 0;
  unsigned nseen = 0;
  int n = sent ? sk_X509_num(sent) : 0;
  if (!s) {
    X509_STORE_CTX_set_error(xs, X509_V_ERR_UNSPECIFIED);
    return 0;
  }
  for (int i = -1; i < n && !ca; i++) {
    X509 *x = i < 0 ? leaf : sk_X509_value(sent, i);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (!x || (i >= 0 && x == leaf)) continue;
    if (X509_digest(x, EVP_sha256(), md, &mdlen) != 1 || mdlen != TLS_SHA256_LEN) continue;
    if (CRYPTO_memcmp(md, c->pin, TLS_SHA256_LEN) == 0) {
      ca = x;
    } else if (nseen++ < TLS_PIN_LOG_MAX) {
      fp_format(md, fp);
      int w = snprintf(seen + used, sizeof(seen) - used, "%s%s", used ? "," : "", fp);
      if (w > 0 && (size_t)w < sizeof(seen) - used) used += (size_t)w;
    }
  }
  if (!ca) {
    fp_format(c->pin, fp);
    TT_WARN("tls", "the broker's chain did not contain the pinned CA",
            "peer=%s pin=%s certs=%d seen=%s", s->peer, fp, n, used ? seen : "none");
    X509_STORE_CTX_set_error(xs, X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY);
    return 0;
  }
  STACK_OF(X509) *anchors = sk_X509_new_null();
  if (!anchors || sk_X509_push(anchors, ca) <= 0) {
    sk_X509_free(anchors);
    X509_STORE_CTX_set_error(xs, X509_V_ERR_OUT_OF_MEM);
    return 0;
  }
  /* Replaces the (empty) store: the pinned certificate is the only anchor. */
  X509_STORE_CTX_set0_trusted_stack(xs, anchors);
  int ok = X509_verify_cert(xs);
  X509_STORE_CTX_set0_trusted_stack(xs, NULL);
  sk_X509_free(anchors); /* the stack only; ca belongs to the peer chain */
  if (ok != 1) return 0;
  if (X509_up_ref(ca) != 1) {
    X509_STORE_CTX_set_error(xs, X509_V_ERR_OUT_OF_MEM);
    return 0;
  }
  X509_free(s->pinned_ca);
  s->pinned_ca = ca;
  return 1;
}

/* Stateless tickets under the key from ticket_key_file, so that they survive a restart.
 * Enrolling clients never resume: they start from nothing, every time. */
static int tls_ticket_key_cb(SSL *ssl, unsigned char name[16], unsigned char iv[EVP_MAX_IV_LENGTH],
                             EVP_CIPHER_CTX *cctx, EVP_MAC_CTX *hctx, int enc) {
  static char digest[] = "SHA256";
  tt_tls_ctx_t *c = ctx_of(ssl);
  const tt_tls_t *s = SSL_get_app_data(ssl);
  if (!c) return -1;
  unsigned char *aes = c->tk + TLS_TICKET_NAME_LEN;
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, aes + TLS_TICKET_AES_LEN,
                                        TLS_TICKET_HMAC_LEN),
      OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
      OSSL_PARAM_construct_end(),
  };
  if (enc) {
    if (s && s->enroll_offer) return 0;
    memcpy(name, c->tk, TLS_TICKET_NAME_LEN);
    if (RAND_bytes(iv, EVP_CIPHER_get_iv_length(EVP_aes_256_cbc())) != 1 ||
        EVP_EncryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, aes, iv) != 1 ||
        EVP_MAC_CTX_set_params(hctx, params) != 1)
      return -1;
    return 1;
  }
  if ((s && s->enroll_offer) || CRYPTO_memcmp(name, c->tk, TLS_TICKET_NAME_LEN) != 0)
    return 0; /* full handshake */
  if (EVP_MAC_CTX_set_params(hctx, params) != 1 ||
      EVP_DecryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, aes, iv) != 1)
    return -1;
  /* 2: good, and send a fresh ticket (tls_ticket_dec_cb has the last word). A TLS 1.3
   * client uses a ticket once, and OpenSSL sends none after a resumed handshake unless
   * asked to renew. */
  return 2;
}

/* A resumed handshake exchanges no certificates, so the one the session remembers must
 * still be within its validity: an expired one costs a full handshake (and is refused
 * there), never a quiet resumption. */
static bool session_cert_current(SSL_SESSION *sess) {
  X509 *peer = SSL_SESSION_get0_peer(sess);
  return peer && X509_cmp_current_time(X509_get0_notAfter(peer)) > 0;
}

static SSL_TICKET_RETURN tls_ticket_dec_cb(SSL *ssl, SSL_SESSION *sess,
                                           const unsigned char *keyname, size_t keyname_len,
                                           SSL_TICKET_STATUS status, void *arg) {
  switch (status) {
  case SSL_TICKET_SUCCESS:
  case SSL_TICKET_SUCCESS_RENEW:
    return session_cert_current(sess) ? SSL_TICKET_RETURN_USE_RENEW
                                      : SSL_TICKET_RETURN_IGNORE_RENEW;
  case SSL_TICKET_NONE:
    return SSL_TICKET_RETURN_IGNORE;
  default:
    return SSL_TICKET_RETURN_IGNORE_RENEW;
  }
}

/* A brand-new key file: O_EXCL, so two brokers starting at once do not overwrite each
 * other (the loser reads the winner's). 0600 from the first moment. */
static int ticket_keys_create(tt_tls_ctx_t *c, const char *path, char *err, size_t errlen) {
  if (RAND_bytes(c->tk, (int)sizeof(c->tk)) != 1)
    return ctx_fail(TT_ETLS, err, errlen, "%s: no random bytes for ticket keys", path);
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) {
    int e = errno;
    if (e == EEXIST) return -EEXIST;
    return ctx_fail(TT_ECONFIG, err, errlen, "%s: %s", path, strerror(e));
  }
  size_t off = 0;
  int e = 0;
  while (off < sizeof(c->tk)) {
    ssize_t w = write(fd, c->tk + off, sizeof(c->tk) - off);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      e = w < 0 ? errno : EIO;
      break;
    }
    off += (size_t)w;
  }
  if (e == 0 && fsync(fd) != 0) e = errno;
  if (close(fd) != 0 && e == 0) e = errno;
  if (e != 0) {
    unlink(path); /* ours: O_EXCL made it */
    return ctx_fail(TT_ECONFIG, err, errlen, "%s: writing ticket keys: %s", path, strerror(e));
  }
  TT_INFO("tls", "made new session ticket keys", "file=%s", path);
  return 0;
}

/* Ticket keys are as good as every client's certificate (a forged ticket resumes as
 * anyone), so the file must be private, like a key file. */
static int ticket_keys_load(tt_tls_ctx_t *c, const char *path, char *err, size_t errlen) {
  unsigned char buf[TLS_TICKET_FILE_LEN + 1];
  struct stat st;
  size_t got = 0;
  int rc = 0;
  int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0 && errno == ENOENT) {
    rc = ticket_keys_create(c, path, err, errlen);
    if (rc != -EEXIST) return rc;
    fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  }
  if (fd < 0) return ctx_fail(TT_ECONFIG, err, errlen, "%s: %s", path, strerror(errno));
  if (fstat(fd, &st) != 0) {
    rc = ctx_fail(TT_ECONFIG, err, errlen, "%s: %s", path, strerror(errno));
    goto out;
  }
  if (!S_ISREG(st.st_mode)) {
    rc = ctx_fail(TT_ECONFIG, err, errlen, "%s: not a regular file", path);
    goto out;
  }
  if (st.st_mode & 077) {
    rc = ctx_fail(TT_EDENIED, err, errlen,
                  "%s: ticket keys are accessible by group or others (chmod 600 it)", path);
    goto out;
  }
  while (got < sizeof(buf)) {
    ssize_t r = read(fd, buf + got, sizeof(buf) - got);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      rc = ctx_fail(TT_ECONFIG, err, errlen, "%s: %s", path, strerror(errno));
      goto out;
    }
    if (r == 0) break;
    got += (size_t)r;
  }
  unsigned char any = 0;
  for (size_t i = 0; i < got; i++) any |= buf[i];
  if (got != TLS_TICKET_FILE_LEN || any == 0) {
    rc = ctx_fail(TT_ECONFIG, err, errlen,
                  "%s: not a ticket key file (%s%zu bytes, want %u random bytes); remove it "
                  "to make new keys", path, got > TLS_TICKET_FILE_LEN ? "at least " : "",
                  got, TLS_TICKET_FILE_LEN);
    goto out;
  }
  memcpy(c->tk, buf, sizeof(c->tk));
out:
  OPENSSL_cleanse(buf, sizeof(buf));
  close(fd);
  return rc;
}

/* Client with resume: keep the newest ticket for the next connect. We take the reference
 * OpenSSL hands us (return 1). */
static int tls_new_session_cb(SSL *ssl, SSL_SESSION *sess) {
  tt_tls_ctx_t *c = ctx_of(ssl);
  if (!c) return 0;
  uv_mutex_lock(&c->lock);
  SSL_SESSION *old = c->session;
  c->session = sess;
  uv_mutex_unlock(&c->lock);
  SSL_SESSION_free(old);
  return 1;
}

static void ctx_unref(tt_tls_ctx_t *c) {
  if (!c || atomic_fetch_sub(&c->refs, 1) != 1) return;
  SSL_SESSION_free(c->session);
  SSL_CTX_free(c->ssl);
  uv_mutex_destroy(&c->lock);
  OPENSSL_cleanse(c->tk, sizeof(c->tk));
  free(c);
}

/* The options that make sense together, or a reason why not. */
static const char *opts_check(const tt_tls_ctx_opts_t *o) {
  if (o->server) {
    if (!o->ca_file || !o->cert_file || !o->key_file)
      return "tls: a server needs ca_file, cert_file and key_file";
    if (o->ca_pin || o->resume) return "tls: ca_pin and resume are client options";
  } else {
    if (o->allow_enroll || o->ticket_key_file)
      return "tls: allow_enroll and ticket_key_file are server options";
    if ((o->ca_file == NULL) == (o->ca_pin == NULL))
      return "tls: a client needs either ca_file or ca_pin";
  }
  if ((o->cert_file == NULL) != (o->key_file == NULL))
    return "tls: cert_file and key_file go together";
  return NULL;
}

int tt_tls_ctx_new(tt_tls_ctx_t **out, const tt_tls_ctx_opts_t *o, char *err, size_t errlen) {
  tt_tls_ctx_t *c = NULL;
  SSL_CTX *ssl = NULL;
  const char *bad;
  int rc = TT_ETLS;
  if (err && errlen) err[0] = '\0';
  if (out) *out = NULL;
  if (!out || !o) return ctx_fail(TT_EINVAL, err, errlen, "tls: no options");
  if ((bad = opts_check(o)) != NULL) return ctx_fail(TT_EINVAL, err, errlen, "%s", bad);
  c = calloc(1, sizeof(*c));
  if (!c) return ctx_fail(TT_ENOMEM, err, errlen, "tls: out of memory");
  if (uv_mutex_init(&c->lock) != 0) {
    free(c);
    return ctx_fail(TT_ENOMEM, err, errlen, "tls: cannot make a mutex");
  }
  atomic_init(&c->refs, 1u);
  c->server = o->server;
  c->allow_enroll = o->server && o->allow_enroll;
  c->pinned = !o->server && o->ca_pin;
  c->resume = !o->server && o->resume && !c->pinned; /* enrollment never resumes */
  c->foreign = !o->server && !c->pinned && o->foreign;
  if (c->pinned && pin_parse(o->ca_pin, c->pin) != 0) {
    rc = ctx_fail(TT_EINVAL, err, errlen, "tls: ca_pin \"%.80s\" is not sha256: and 64 hex digits",
                  o->ca_pin);
    goto out;
  }
  ERR_clear_error();
  ssl = SSL_CTX_new(o->server ? TLS_server_method() : TLS_client_method());
  if (!ssl) {
    ctx_err(err, errlen, "SSL_CTX_new");
    rc = TT_ENOMEM;
    goto out;
  }
  c->ssl = ssl;
  SSL_CTX_set_app_data(ssl, c);
  /* A foreign server (a syslog collector) may speak TLS 1.2: then only ECDHE with AEAD, and
   * no renegotiation (a collector could start one in the middle of our writes). */
  if (c->foreign) SSL_CTX_set_options(ssl, SSL_OP_NO_RENEGOTIATION);
  if (SSL_CTX_set_min_proto_version(ssl, c->foreign ? TLS1_2_VERSION : TLS1_3_VERSION) != 1 ||
      SSL_CTX_set_max_proto_version(ssl, TLS1_3_VERSION) != 1 ||
      (c->foreign && SSL_CTX_set_cipher_list(ssl, "ECDHE+AESGCM:ECDHE+CHACHA20") != 1)) {
    ctx_err(err, errlen, "TLS 1.3");
    goto out;
  }
  /* The CA file is the only trust anchor: no default paths. With a pin there is none
   * until the server shows its chain (tls_pin_verify_cb). */
  if (o->ca_file && SSL_CTX_load_verify_locations(ssl, o->ca_file, NULL) != 1) {
    ctx_err(err, errlen, o->ca_file);
    rc = TT_ECONFIG;
    goto out;
  }
  if (o->cert_file) {
    if (SSL_CTX_use_certificate_chain_file(ssl, o->cert_file) != 1) {
      ctx_err(err, errlen, o->cert_file);
      rc = TT_ECONFIG;
      goto out;
    }
    if (SSL_CTX_use_PrivateKey_file(ssl, o->key_file, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ssl) != 1) {
      ctx_err(err, errlen, o->key_file);
      rc = TT_ECONFIG;
      goto out;
    }
  }
  SSL_CTX_set_verify(ssl, o->server ? SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT
                                    : SSL_VERIFY_PEER, NULL);
  if (c->pinned) SSL_CTX_set_cert_verify_callback(ssl, tls_pin_verify_cb, c);
  /* NO_AUTO_CHAIN: send the chain as cert_file has it, not rebuilt from the trust store;
   * the peer pins the same CA, and every stream then holds ~3.5 KiB less. */
  SSL_CTX_set_mode(ssl, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                            SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_NO_AUTO_CHAIN);
  /* Resumption is stateless (tickets under ticket_key_file) and opt-in: no server-side
   * cache for 100k agents. A resumed session keeps the peer certificate, and the broker
   * checks revocation by identity after every handshake, resumed or not. */
  if (o->server) {
    SSL_CTX_set_session_cache_mode(ssl, SSL_SESS_CACHE_OFF);
    if (SSL_CTX_set_session_id_context(ssl, (const unsigned char *)TLS_SID_CTX,
                                       sizeof(TLS_SID_CTX) - 1) != 1) {
      ctx_err(err, errlen, "session id context");
      goto out;
    }
    if (o->ticket_key_file) {
      if ((rc = ticket_keys_load(c, o->ticket_key_file, err, errlen)) != 0) goto out;
      rc = TT_ETLS;
      (void)SSL_CTX_set_timeout(ssl, TLS_SESSION_SECONDS); /* returns the old timeout */
      if (SSL_CTX_set_tlsext_ticket_key_evp_cb(ssl, tls_ticket_key_cb) != 1 ||
          SSL_CTX_set_session_ticket_cb(ssl, NULL, tls_ticket_dec_cb, NULL) != 1) {
        ctx_err(err, errlen, "ticket key callback");
        goto out;
      }
    }
    if (SSL_CTX_set_num_tickets(ssl, o->ticket_key_file ? 1 : 0) != 1) {
      ctx_err(err, errlen, "tickets");
      goto out;
    }
    if (c->allow_enroll) SSL_CTX_set_client_hello_cb(ssl, tls_client_hello_cb, c);
    SSL_CTX_set_alpn_select_cb(ssl, tls_alpn_select_cb, NULL);
  } else {
    if (c->resume) {
      SSL_CTX_set_session_cache_mode(ssl, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
      SSL_CTX_sess_set_new_cb(ssl, tls_new_session_cb);
    } else {
      SSL_CTX_set_session_cache_mode(ssl, SSL_SESS_CACHE_OFF);
    }
    const unsigned char *alpn = c->pinned ? tls_alpn_enroll_wire : tls_alpn_wire;
    if (!c->foreign && SSL_CTX_set_alpn_protos(ssl, alpn, (unsigned int)alpn[0] + 1) != 0) {
      ctx_err(err, errlen, "ALPN");
      goto out;
    }
  }
  *out = c;
  c = NULL;
  rc = 0;
out:
  ctx_unref(c);
  ERR_clear_error();
  return rc;
}

void tt_tls_ctx_free(tt_tls_ctx_t *ctx) {
  ctx_unref(ctx); /* streams hold their own reference */
}

SSL_CTX *tt_tls_ctx_ssl(tt_tls_ctx_t *ctx) { return ctx ? ctx->ssl : NULL; }

/* ---- helpers --------------------------------------------------------------------- */

static void format_addr(char *dst, size_t cap, const struct sockaddr *sa) {
  char ip[INET6_ADDRSTRLEN] = "?";
  if (sa && sa->sa_family == AF_INET) {
    const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
    (void)uv_ip4_name(a, ip, sizeof(ip));
    snprintf(dst, cap, "%s:%u", ip, (unsigned)ntohs(a->sin_port));
  } else if (sa && sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
    (void)uv_ip6_name(a, ip, sizeof(ip));
    snprintf(dst, cap, "[%s]:%u", ip, (unsigned)ntohs(a->sin6_port));
  } else {
    snprintf(dst, cap, "?");
  }
}

static uint64_t add_sat(uint64_t a, uint64_t b) { return a > UINT64_MAX - b ? UINT64_MAX : a + b; }

/* Certificate trouble, ours or the peer's, as opposed to any other TLS failure. */
static bool err_is_cert(unsigned long e) {
  if (ERR_GET_LIB(e) != ERR_LIB_SSL) return false;
  switch (ERR_GET_REASON(e)) {
  case SSL_R_CERTIFICATE_VERIFY_FAILED:
  case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
  case SSL_AD_REASON_OFFSET + SSL_AD_BAD_CERTIFICATE:
  case SSL_AD_REASON_OFFSET + SSL_AD_UNSUPPORTED_CERTIFICATE:
  case SSL_AD_REASON_OFFSET + SSL_AD_CERTIFICATE_REVOKED:
  case SSL_AD_REASON_OFFSET + SSL_AD_CERTIFICATE_EXPIRED:
  case SSL_AD_REASON_OFFSET + SSL_AD_CERTIFICATE_UNKNOWN:
  case SSL_AD_REASON_OFFSET + SSL_AD_UNKNOWN_CA:
  case SSL_AD_REASON_OFFSET + SSL_AD_CERTIFICATE_REQUIRED:
    return true;
  default:
    return false;
  }
}

/* Swap an empty memory BIO that grew big for a fresh one (it never shrinks by itself). */
static BIO *bio_trim(BIO *b) {
  BUF_MEM *m = NULL;
  if (BIO_ctrl_pending(b) != 0) return NULL;
  BIO_get_mem_ptr(b, &m);
  if (!m || m->max <= TLS_BIO_KEEP) return NULL;
  BIO *nb = BIO_new(BIO_s_mem());
  if (nb) BIO_set_mem_eof_return(nb, -1);
  return nb;
}

/* Idle streams give their grown BIOs back. At most once a second, though: a busy stream
 * empties its BIOs after every pump, and freeing (which cleanses) and regrowing them each
 * time cost several percent of a bulk transfer. A stream that went quiet is trimmed at its
 * next pump (a heartbeat at the latest). */
static void stream_trim(tt_tls_t *s) {
  if (s->state != STREAM_OPEN || s->handles_closing) return;
  uint64_t now = uv_now(s->tcp.loop);
  if (now < s->trim_at) return;
  BIO *nb = bio_trim(s->rbio);
  if (nb) {
    s->trim_at = now + TLS_TRIM_EVERY_MS;
    SSL_set0_rbio(s->ssl, nb); /* frees the old one */
    s->rbio = nb;
  }
  nb = bio_trim(s->wbio);
  if (nb) {
    s->trim_at = now + TLS_TRIM_EVERY_MS;
    SSL_set0_wbio(s->ssl, nb);
    s->wbio = nb;
  }
}

/* ---- closing --------------------------------------------------------------------- */

static void tls_close_cb(uv_handle_t *h) {
  tt_tls_t *s = h->data;
  if (--s->open_handles > 0) return;
  if (!s->silent && s->cbs.on_close) s->cbs.on_close(s, s->reason);
  SSL_free(s->ssl);
  X509_free(s->pinned_ca);
  ctx_unref(s->ctx);
  free(s);
}

static void close_handles(tt_tls_t *s) {
  if (s->handles_closing) return;
  s->handles_closing = true;
  s->closing = true;
  s->open_handles = 2;
  uv_close((uv_handle_t *)&s->tcp, tls_close_cb);
  uv_close((uv_handle_t *)&s->timer, tls_close_cb);
}

static void tls_shutdown_cb(uv_shutdown_t *req, int status) {
  tt_tls_t *s = req->data;
  free(req);
  close_handles(s); /* no-op if the linger timer got there first (status UV_ECANCELED) */
}

static void tls_linger_cb(uv_timer_t *t) { close_handles(t->data); }

/* ---- writing --------------------------------------------------------------------- */

static int wire_acked(const tt_tls_t *s, uint64_t *acked);

static void tls_write_cb(uv_write_t *req, int status) {
  tls_wreq_t *w = (tls_wreq_t *)req;
  tt_tls_t *s = req->data;
  /* A write that failed never reached the peer: what it acknowledged is taken before these
   * bytes leave the count of those still pending. */
  if (status < 0 && !s->closing && s->state != STREAM_CONNECTING)
    s->acked_final = wire_acked(s, &s->wire_acked_final) == 0;
  s->queued -= w->len;
  free(w);
  if (status < 0) {
    if (status != UV_ECANCELED) tt_tls_close(s, status);
    return;
  }
  if (!s->closing && s->above_high && s->queued <= s->lim.low_water) {
    s->above_high = false;
    if (s->cbs.on_drain) s->cbs.on_drain(s);
  }
}

/* Hands whatever OpenSSL wrote to libuv. Called after every SSL_* call. Nonzero means
 * the stream is closing now. */
static int flush_out(tt_tls_t *s) {
  size_t n;
  while ((n = BIO_ctrl_pending(s->wbio)) > 0) {
    if (s->handles_closing) {
      (void)BIO_reset(s->wbio);
      return TT_ECLOSED;
    }
    if (n > (1u << 20)) n = 1u << 20;
    tls_wreq_t *w = malloc(sizeof(*w) + n);
    if (!w) {
      tt_tls_close(s, TT_ENOMEM);
      return TT_ENOMEM;
    }
    int got = BIO_read(s->wbio, w->bytes, (int)n);
    if (got <= 0) {
      free(w);
      break;
    }
    w->len = (size_t)got;
    w->req.data = s;
    uv_buf_t b = uv_buf_init((char *)w->bytes, (unsigned int)got);
    int r = uv_write(&w->req, (uv_stream_t *)&s->tcp, &b, 1, tls_write_cb);
    if (r < 0) {
      free(w);
      tt_tls_close(s, r);
      return r;
    }
    s->queued += w->len;
    s->wire_out += w->len;
    if (s->queued >= s->lim.high_water) s->above_high = true;
  }
  /* Bytes we queue on the peer's behalf (alerts, key updates) count too: a peer that
   * makes us write without ever reading is cut off. */
  if (s->queued > add_sat(s->lim.write_cap, s->lim.write_cap / 64 + 64u * 1024u)) {
    tt_tls_close(s, TT_EFULL);
    return TT_EFULL;
  }
  return 0;
}

/* ---- reading --------------------------------------------------------------------- */

/* Logs OpenSSL's reason once and closes with TT_ECERT when a certificate was the trouble
 * (ours refused by the peer, or the peer's by us), TT_ETLS otherwise. */
static void tls_fail(tt_tls_t *s, int sslerr, const char *msg) {
  char ebuf[256];
  long vr = SSL_get_verify_result(s->ssl);
  int code = vr != X509_V_OK ? TT_ECERT : TT_ETLS;
  unsigned long e, first = 0;
  while ((e = ERR_get_error()) != 0) {
    if (err_is_cert(e)) code = TT_ECERT;
    if (!first) first = e;
  }
  if (first)
    ERR_error_string_n(first, ebuf, sizeof(ebuf));
  else
    snprintf(ebuf, sizeof(ebuf), "SSL_get_error=%d", sslerr);
  TT_WARN("tls", msg, "peer=%s err=%s reason=\"%s\" verify=\"%s\"", s->peer, tt_errname(code),
          ebuf, X509_verify_cert_error_string(vr));
  s->failed = true;
  tt_tls_close(s, code);
}

/* The handshake finished: insist on the ALPN this stream must have (a client that offers
 * none never reaches the server's select callback), and on a client certificate for
 * tether/1 (resumed sessions carry it), then tell the user. Nonzero means stop. */
static int handshake_done(tt_tls_t *s) {
  const unsigned char *p = NULL;
  unsigned int n = 0;
  bool enroll = s->ctx->server ? s->enroll_offer : s->ctx->pinned;
  const unsigned char *want = enroll ? tls_alpn_enroll_wire : tls_alpn_wire;
  SSL_get0_alpn_selected(s->ssl, &p, &n);
  if (!s->ctx->foreign && (n != want[0] || memcmp(p, want + 1, n) != 0)) {
    TT_WARN("tls", "ALPN not agreed", "peer=%s want=%.*s", s->peer, (int)want[0], want + 1);
    s->failed = true;
    tt_tls_close(s, TT_ETLS);
    return -1;
  }
  if (s->ctx->server ? !enroll && !SSL_get0_peer_certificate(s->ssl)
                     : s->ctx->pinned && !s->pinned_ca) {
    TT_WARN("tls", "handshake done without a verified certificate", "peer=%s", s->peer);
    s->failed = true;
    tt_tls_close(s, TT_ECERT);
    return -1;
  }
  s->enroll = enroll;
  s->state = STREAM_OPEN;
  s->mark = uv_now(s->tcp.loop);
  if (s->paused && s->reading) {
    uv_read_stop((uv_stream_t *)&s->tcp);
    s->reading = false;
  }
  /* The one uv_timer_start of a stream's life outside a timer tick: from handshake
   * deadline to idle deadline. */
  uv_timer_stop(&s->timer);
  if (s->lim.idle_ms) uv_timer_start(&s->timer, tls_timer_cb, s->lim.idle_ms, 0);
  if (s->cbs.on_handshake) s->cbs.on_handshake(s);
  return s->closing ? -1 : 0;
}

/* Runs the handshake as far as the bytes in rbio allow. Nonzero means stop. */
static int tls_handshake(tt_tls_t *s) {
  ERR_clear_error();
  int r = SSL_do_handshake(s->ssl);
  int e = r == 1 ? SSL_ERROR_NONE : SSL_get_error(s->ssl, r);
  if (flush_out(s) != 0) return -1;
  if (r == 1) return handshake_done(s);
  if (e == SSL_ERROR_WANT_READ) return 1;
  tls_fail(s, e, "handshake failed");
  return -1;
}

/* Decrypts until OpenSSL wants more input, handing each record to on_read at once; the
 * plaintext buffer is shared by the thread, so nothing here may run inside on_read. */
static void tls_read_plain(tt_tls_t *s) {
  static _Thread_local uint8_t plain[TLS_PLAIN_BUF];
  while (!s->closing && !s->paused) {
    size_t got = 0;
    ERR_clear_error();
    int r = SSL_read_ex(s->ssl, plain, sizeof(plain), &got);
    int e = r == 1 ? SSL_ERROR_NONE : SSL_get_error(s->ssl, r);
    if (flush_out(s) != 0) return;
    if (r == 1) {
      if (s->cbs.on_read) s->cbs.on_read(s, plain, got);
      continue;
    }
    if (e == SSL_ERROR_WANT_READ) break;
    if (e == SSL_ERROR_ZERO_RETURN) { /* close_notify: a clean close by the peer */
      tt_tls_close(s, 0);
      return;
    }
    tls_fail(s, e, "TLS error");
    return;
  }
  if (!s->closing) stream_trim(s);
}

static void tls_pump(tt_tls_t *s) {
  if (s->state == STREAM_HANDSHAKE && tls_handshake(s) != 0) return;
  if (s->state == STREAM_OPEN) tls_read_plain(s);
}

/* libuv calls alloc_cb and read_cb back to back and the ciphertext is copied into rbio
 * before read_cb returns, so one buffer per thread serves every stream. */
static void tls_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  static _Thread_local char rbuf[TLS_READ_BUF];
  buf->base = rbuf;
  buf->len = sizeof(rbuf);
}

static void tls_read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
  tt_tls_t *s = st->data;
  if (nread == 0 || s->closing) return;
  if (nread < 0) { /* UV_EOF without close_notify, or a reset */
    tt_tls_close(s, (int)nread);
    return;
  }
  s->heard = true;
  if (s->state == STREAM_OPEN) s->mark = uv_now(s->tcp.loop);
  if (BIO_write(s->rbio, buf->base, (int)nread) != (int)nread) {
    tt_tls_close(s, TT_ENOMEM);
    return;
  }
  /* What the records ask to send goes out together once they are all read (tt/defer.h). */
  tt_defer_begin();
  tls_pump(s);
  tt_defer_end();
}

/* ---- timer ----------------------------------------------------------------------- */

/* Reads do not touch the timer; when it fires we look at how long it has really been
 * and sleep again for the remainder. */
static void tls_timer_cb(uv_timer_t *t) {
  tt_tls_t *s = t->data;
  if (s->closing) return;
  if (s->drain_due) {
    s->drain_due = false;
    if (s->state == STREAM_OPEN) tls_read_plain(s);
    if (s->closing) return;
  }
  uint64_t now = uv_now(s->tcp.loop), due = UINT64_MAX;
  if (s->state != STREAM_OPEN) {
    if (s->lim.handshake_ms) {
      due = add_sat(s->mark, s->lim.handshake_ms);
      if (now >= due) {
        TT_INFO("tls", "handshake timed out", "peer=%s ms=%llu", s->peer,
                (unsigned long long)s->lim.handshake_ms);
        tt_tls_close(s, TT_ETIMEOUT);
        return;
      }
    }
  } else if (s->lim.idle_ms) {
    if (s->paused) s->mark = now; /* we chose not to read; the peer is not idle */
    due = add_sat(s->mark, s->lim.idle_ms);
    if (now >= due) {
      TT_INFO("tls", "idle timeout", "peer=%s ms=%llu", s->peer,
              (unsigned long long)s->lim.idle_ms);
      tt_tls_close(s, TT_ETIMEOUT);
      return;
    }
  }
  if (due != UINT64_MAX) uv_timer_start(&s->timer, tls_timer_cb, due - now, 0);
}

/* ---- creation -------------------------------------------------------------------- */

/* The stream and its handles; no TLS state yet (stream_ssl adds it), so that an accept
 * the caller refuses costs no SSL object. */
static tt_tls_t *stream_new(tt_tls_ctx_t *ctx, uv_loop_t *loop, const tt_tls_limits_t *lim,
                            const tt_tls_cbs_t *cbs, void *data, int *rc) {
  tt_tls_t *s = calloc(1, sizeof(*s));
  *rc = TT_ENOMEM;
  if (!s) return NULL;
  if ((*rc = uv_tcp_init(loop, &s->tcp)) != 0) {
    free(s);
    return NULL;
  }
  /* uv_timer_init cannot fail. */
  (void)uv_timer_init(loop, &s->timer);
  s->tcp.data = s;
  s->timer.data = s;
  if (lim) s->lim = *lim;
  /* Zeros mean the defaults of tt/limits.h. */
  if (s->lim.write_cap == 0) s->lim.write_cap = TT_SOCKET_WRITE_CAP;
  if (s->lim.high_water == 0) s->lim.high_water = TT_SOCKET_QUEUE_CAP;
  if (s->lim.high_water > s->lim.write_cap) s->lim.high_water = s->lim.write_cap;
  if (s->lim.low_water > s->lim.high_water) s->lim.low_water = s->lim.high_water;
  if (cbs) s->cbs = *cbs;
  s->data = data;
  s->mark = uv_now(loop);
  snprintf(s->peer, sizeof(s->peer), "?");
  s->ctx = ctx;
  atomic_fetch_add(&ctx->refs, 1u);
  *rc = 0;
  return s;
}

/* The SSL object and its memory BIOs. On failure the caller aborts the stream. */
static int stream_ssl(tt_tls_t *s) {
  BIO *rb = NULL, *wb = NULL;
  ERR_clear_error();
  s->ssl = SSL_new(s->ctx->ssl);
  rb = BIO_new(BIO_s_mem());
  wb = BIO_new(BIO_s_mem());
  if (!s->ssl || !rb || !wb) {
    BIO_free(rb);
    BIO_free(wb);
    ERR_clear_error();
    return TT_ENOMEM;
  }
  BIO_set_mem_eof_return(rb, -1);
  BIO_set_mem_eof_return(wb, -1);
  SSL_set_bio(s->ssl, rb, wb); /* SSL owns both now */
  s->rbio = rb;
  s->wbio = wb;
  SSL_set_app_data(s->ssl, s);
  return 0;
}

/* Undo a half-made stream: the handles are live, so freeing waits for their close. */
static void stream_abort(tt_tls_t *s) {
  s->silent = true;
  close_handles(s);
}

static void tls_start_timer(tt_tls_t *s) {
  if (s->lim.handshake_ms) uv_timer_start(&s->timer, tls_timer_cb, s->lim.handshake_ms, 0);
}

/* No delay for small frames, and little unsent data in the kernel: what the kernel holds
 * unsent is beyond the mux's reach, so a keystroke's echo would wait behind all of it (a
 * bulk transfer fills megabytes of auto-tuned send buffer). Kept small, bulk data waits in
 * the mux's per-channel queues instead, where interactive frames go first. */
static void tune_socket(tt_tls_t *s) {
  (void)uv_tcp_nodelay(&s->tcp, 1);
#ifdef TCP_NOTSENT_LOWAT
  uv_os_fd_t fd;
  int lowat = (int)TT_SOCKET_NOTSENT_LOWAT;
  if (uv_fileno((uv_handle_t *)&s->tcp, &fd) == 0)
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &lowat, sizeof(lowat));
#endif
}

int tt_tls_accept(tt_tls_ctx_t *ctx, uv_stream_t *server, const tt_tls_limits_t *lim,
                  const tt_tls_cbs_t *cbs, void *data, tt_tls_t **out) {
  int rc;
  if (out) *out = NULL;
  if (!ctx || !ctx->server || !server || !out) return TT_EINVAL;
  tt_tls_t *s = stream_new(ctx, server->loop, lim, cbs, data, &rc);
  if (!s) return rc;
  rc = uv_accept(server, (uv_stream_t *)&s->tcp);
  if (rc) goto fail;
  struct sockaddr_storage ss;
  int sl = (int)sizeof(ss);
  /* A peer that is already gone has no address to judge it by: nothing to accept. */
  if ((rc = uv_tcp_getpeername(&s->tcp, (struct sockaddr *)&ss, &sl)) != 0) goto fail;
  format_addr(s->peer, sizeof(s->peer), (struct sockaddr *)&ss);
  if (s->cbs.on_accept && !s->cbs.on_accept(s, (struct sockaddr *)&ss)) {
    /* A reset, and no TIME_WAIT kept on our side: refusing costs an accept and a close. */
    struct linger lg = {1, 0};
    uv_os_fd_t fd;
    if (uv_fileno((uv_handle_t *)&s->tcp, &fd) == 0) (void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    rc = TT_EDENIED;
    goto fail;
  }
  if ((rc = stream_ssl(s)) != 0) goto fail;
  SSL_set_accept_state(s->ssl);
  tune_socket(s);
  s->state = STREAM_HANDSHAKE;
  rc = uv_read_start((uv_stream_t *)&s->tcp, tls_alloc_cb, tls_read_cb);
  if (rc) goto fail;
  s->reading = true;
  tls_start_timer(s);
  *out = s;
  return 0;
fail:
  stream_abort(s);
  return rc;
}

static void tls_connect_cb(uv_connect_t *req, int status) {
  tt_tls_t *s = req->data;
  free(req);
  if (s->closing) return; /* includes UV_ECANCELED from our own close */
  if (status < 0) {
    TT_DEBUG("tls", "connect failed", "peer=%s err=%s", s->peer, tt_errname(status));
    tt_tls_close(s, status);
    return;
  }
  tune_socket(s);
  s->state = STREAM_HANDSHAKE;
  int rc = uv_read_start((uv_stream_t *)&s->tcp, tls_alloc_cb, tls_read_cb);
  if (rc) {
    tt_tls_close(s, rc);
    return;
  }
  s->reading = true;
  tls_pump(s); /* sends the ClientHello */
}

static int set_server_name(SSL *ssl, const char *name) {
  unsigned char a[16];
  if (inet_pton(AF_INET, name, a) == 1 || inet_pton(AF_INET6, name, a) == 1)
    return X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name) == 1 ? 0 : TT_EINVAL;
  SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
  if (SSL_set1_host(ssl, name) != 1 || SSL_set_tlsext_host_name(ssl, name) != 1) return TT_EINVAL;
  return 0;
}

/* The newest ticket, if it can still resume; on any trouble a full handshake follows. */
static void offer_session(tt_tls_ctx_t *ctx, SSL *ssl) {
  uv_mutex_lock(&ctx->lock);
  SSL_SESSION *sess = ctx->session;
  if (sess && (!SSL_SESSION_is_resumable(sess) || !session_cert_current(sess) ||
               SSL_SESSION_up_ref(sess) != 1))
    sess = NULL;
  uv_mutex_unlock(&ctx->lock);
  if (!sess) return;
  if (SSL_set_session(ssl, sess) != 1) ERR_clear_error();
  SSL_SESSION_free(sess);
}

int tt_tls_connect(tt_tls_ctx_t *ctx, uv_loop_t *loop, const struct sockaddr *addr,
                   const char *server_name, const tt_tls_limits_t *lim,
                   const tt_tls_cbs_t *cbs, void *data, tt_tls_t **out) {
  int rc;
  if (out) *out = NULL;
  if (!ctx || ctx->server || !loop || !addr || !out) return TT_EINVAL;
  tt_tls_t *s = stream_new(ctx, loop, lim, cbs, data, &rc);
  if (!s) return rc;
  if ((rc = stream_ssl(s)) != 0) {
    stream_abort(s);
    return rc;
  }
  SSL_set_connect_state(s->ssl);
  format_addr(s->peer, sizeof(s->peer), addr);
  if (server_name && (rc = set_server_name(s->ssl, server_name)) != 0) {
    ERR_clear_error();
    stream_abort(s);
    return rc;
  }
  if (ctx->resume) offer_session(ctx, s->ssl);
  uv_connect_t *req = malloc(sizeof(*req));
  if (!req) {
    stream_abort(s);
    return TT_ENOMEM;
  }
  req->data = s;
  rc = uv_tcp_connect(req, &s->tcp, addr, tls_connect_cb);
  if (rc) {
    free(req);
    stream_abort(s);
    return rc;
  }
  /* The handshake deadline covers the TCP connect too. */
  tls_start_timer(s);
  *out = s;
  return 0;
}

/* ---- the rest of the interface --------------------------------------------------- */

int tt_tls_write(tt_tls_t *s, const void *data, size_t len) {
  if (s->closing) return TT_ECLOSED;
  if (s->state != STREAM_OPEN) return TT_ESTATE;
  if (len == 0) return 0;
  /* Plaintext length stands in for the ciphertext until it exists. */
  if (len > s->lim.write_cap || s->queued > s->lim.write_cap - len) return TT_EFULL;
  const uint8_t *p = data;
  size_t off = 0;
  while (off < len) {
    size_t n = len - off < TLS_WRITE_CHUNK ? len - off : TLS_WRITE_CHUNK, w = 0;
    ERR_clear_error();
    int r = SSL_write_ex(s->ssl, p + off, n, &w);
    if (r != 1) {
      int e = SSL_get_error(s->ssl, r);
      if (flush_out(s) == 0) tls_fail(s, e, "write failed");
      return TT_ETLS;
    }
    off += w;
    if (BIO_ctrl_pending(s->wbio) >= TLS_FLUSH_AT && flush_out(s) != 0) return TT_ECLOSED;
  }
  if (flush_out(s) != 0) return TT_ECLOSED;
  stream_trim(s);
  return 0;
}

size_t tt_tls_queued(const tt_tls_t *s) { return s->queued; }

uint64_t tt_tls_wire_out(const tt_tls_t *s) { return s->wire_out; }

static int wire_acked(const tt_tls_t *s, uint64_t *acked) {
  uv_os_fd_t fd;
  int outq = 0;
  if (uv_fileno((const uv_handle_t *)&s->tcp, &fd) != 0) return TT_ESTATE;
  if (ioctl(fd, SIOCOUTQ, &outq) != 0 || outq < 0) return -errno;
  /* Bytes libuv still holds were not even sent; the kernel's queue is sent but unacknowledged
   * or not sent yet. */
  uint64_t pending = (uint64_t)s->queued + (uint64_t)outq;
  *acked = s->wire_out > pending ? s->wire_out - pending : 0;
  return 0;
}

int tt_tls_wire_acked(const tt_tls_t *s, uint64_t *acked) {
  if (s->acked_final) {
    *acked = s->wire_acked_final;
    return 0;
  }
  return wire_acked(s, acked);
}

bool tt_tls_writable(const tt_tls_t *s) {
  return !s->closing && s->state == STREAM_OPEN && !s->above_high;
}

void tt_tls_read_stop(tt_tls_t *s) {
  if (s->closing) return;
  s->paused = true;
  /* During the handshake we keep reading; handshake_done stops the socket. */
  if (s->state == STREAM_OPEN && s->reading) {
    uv_read_stop((uv_stream_t *)&s->tcp);
    s->reading = false;
  }
}

void tt_tls_read_start(tt_tls_t *s) {
  if (s->closing || !s->paused) return;
  s->paused = false;
  if (s->state != STREAM_OPEN) return;
  if (!s->reading) {
    int rc = uv_read_start((uv_stream_t *)&s->tcp, tls_alloc_cb, tls_read_cb);
    if (rc) {
      tt_tls_close(s, rc);
      return;
    }
    s->reading = true;
  }
  /* OpenSSL may hold decrypted records or rbio ciphertext from before the stop; deliver
   * them on the next tick, never from here (we may be inside some stream's on_read). */
  s->mark = uv_now(s->tcp.loop);
  s->drain_due = true;
  uv_timer_start(&s->timer, tls_timer_cb, 0, 0);
}

/* close_notify, then uv_shutdown so that it actually leaves (uv_close drops queued
 * writes), then uv_close of both handles; on_close comes from the last close callback. */
void tt_tls_close(tt_tls_t *s, int reason) {
  if (!s || s->closing) return;
  /* The socket still knows what the peer acknowledged (after a reset too): keep it for a
   * sender that counts delivery by it (tt_tls_wire_acked), before the handle goes. */
  if (s->state != STREAM_CONNECTING && !s->acked_final) s->acked_final = wire_acked(s, &s->wire_acked_final) == 0;
  s->closing = true;
  s->reason = reason;
  s->drain_due = false;
  uv_timer_stop(&s->timer);
  if (s->reading) {
    uv_read_stop((uv_stream_t *)&s->tcp);
    s->reading = false;
  }
  if (s->state == STREAM_CONNECTING) {
    close_handles(s); /* the connect request is cancelled before the close callback */
    return;
  }
  if (s->state == STREAM_OPEN && !s->failed) {
    ERR_clear_error();
    (void)SSL_shutdown(s->ssl);
    ERR_clear_error();
    (void)flush_out(s);
  }
  if (s->handles_closing) return;
  uv_shutdown_t *req = malloc(sizeof(*req));
  if (req) {
    req->data = s;
    if (uv_shutdown(req, (uv_stream_t *)&s->tcp, tls_shutdown_cb) == 0) {
      uv_timer_start(&s->timer, tls_linger_cb, TLS_LINGER_MS, 0);
      return;
    }
    free(req);
  }
  close_handles(s);
}

bool tt_tls_closing(const tt_tls_t *s) { return s->closing; }

uint64_t tt_tls_last_read(const tt_tls_t *s) { return s->mark; }

bool tt_tls_heard(const tt_tls_t *s) {
  if (s->heard) return true;
  /* Bytes the kernel holds that the loop has not read yet count as heard too: a ClientHello
   * that just arrived is not silence. */
  uv_os_fd_t fd;
  int n = 0;
  return !s->handles_closing && uv_fileno((const uv_handle_t *)&s->tcp, &fd) == 0 && ioctl(fd, FIONREAD, &n) == 0 &&
         n > 0;
}

void tt_tls_set_idle(tt_tls_t *s, uint64_t idle_ms) {
  s->lim.idle_ms = idle_ms;
  if (s->closing || s->state != STREAM_OPEN || s->drain_due) return;
  /* The timer callback measures from the last read and re-arms itself. */
  uv_timer_stop(&s->timer);
  if (idle_ms) uv_timer_start(&s->timer, tls_timer_cb, idle_ms, 0);
}
void *tt_tls_data(const tt_tls_t *s) { return s->data; }
void tt_tls_set_data(tt_tls_t *s, void *data) { s->data = data; }

/* An enrolling client was never asked for a certificate: it has none, whatever it sent. */
X509 *tt_tls_peer_cert(const tt_tls_t *s) {
  if (s->state != STREAM_OPEN || (s->enroll && s->ctx->server)) return NULL;
  return SSL_get0_peer_certificate(s->ssl);
}

bool tt_tls_established(const tt_tls_t *s) { return s->state == STREAM_OPEN && !s->failed; }
bool tt_tls_is_enroll(const tt_tls_t *s) { return s->state == STREAM_OPEN && s->enroll; }
bool tt_tls_resumed(const tt_tls_t *s) {
  return s->state == STREAM_OPEN && SSL_session_reused(s->ssl) == 1;
}
X509 *tt_tls_pinned_ca(const tt_tls_t *s) {
  return s->state == STREAM_OPEN ? s->pinned_ca : NULL;
}

const char *tt_tls_peer_addr(const tt_tls_t *s) { return s->peer; }
uv_loop_t *tt_tls_loop(const tt_tls_t *s) { return s->tcp.loop; }
