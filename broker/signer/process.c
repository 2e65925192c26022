/* The signer process (see signer.h): started by the broker as `tether-broker --signer 3
 * ...` (the same binary, re-executed from /proc/self/exe, so broker and signer are always
 * the same build and the signer starts from a fresh image that holds nothing of the
 * broker's). It loads the CA, gives up what it does not need, then answers one request at
 * a time until the broker closes the socket. It signs only device (agent) certificates,
 * for at most the configured lifetime: a broker taken over cannot make it mint a
 * technician's or an admin's certificate, nor a device certificate that outlives policy. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <openssl/err.h>
#include <openssl/x509.h>
#include "signer.h"
#include "tt/log.h"
#include "tt/pki.h"

static int read_full(int fd, uint8_t *p, size_t n) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = read(fd, p + got, n - got);
    if (r == 0) return got == 0 ? 1 : TT_EPROTO; /* EOF: clean between messages only */
    if (r < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    got += (size_t)r;
  }
  return 0;
}

static int write_full(int fd, const uint8_t *p, size_t n) {
  while (n) {
    ssize_t w = write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

static int reply(int fd, uint32_t id, int status, const void *data, size_t len) {
  uint8_t out[BROKER_SIGNER_HDR + TT_SIGNER_REPLY_MAX];
  broker_sign_reply_t r = {.id = id, .status = status, .data = data, .len = len};
  size_t n = broker_sign_reply_encode(&r, out, sizeof(out));
  if (n == 0) return TT_ETOOBIG;
  return write_full(fd, out, n);
}

static int reply_text(int fd, uint32_t id, int status, const char *msg) {
  return reply(fd, id, status, msg, strlen(msg));
}

static int refuse(int fd, const broker_sign_req_t *q, int code, const char *why) {
  TT_INFO("signer", "request refused", "device=%s reason=\"%s\"", q->device_id[0] ? q->device_id : "-", why);
  return reply_text(fd, q->id, code, why);
}

/* One request: every check first, then the signature; an answer either way. */
static int sign_one(int fd, const uint8_t *body, size_t len, X509 *ca, EVP_PKEY *key, uint32_t max_seconds) {
  broker_sign_req_t q;
  char err[200], why[240];
  X509_REQ *csr = NULL;
  X509 *cert = NULL;
  unsigned char *der = NULL;
  int rc;
  if (broker_sign_req_decode(body, len, &q)) {
    rc = refuse(fd, &q, TT_EPROTO, "not a signing request");
    goto out;
  }
  if (q.seconds == 0 || q.seconds > max_seconds) {
    snprintf(why, sizeof(why), "a validity of %u s is not within 1..%u s", q.seconds, max_seconds);
    rc = refuse(fd, &q, TT_EINVAL, why);
    goto out;
  }
  tt_pki_leaf_t leaf = {.role = TT_ROLE_AGENT, .name = q.device_id, .seconds = q.seconds};
  if ((rc = tt_pki_csr_from_der(q.csr, q.csr_len, &csr, err, sizeof(err))) == 0)
    rc = tt_pki_sign_csr(ca, key, csr, &leaf, &cert, err, sizeof(err));
  if (rc) {
    /* The CSR's own faults are the requester's; anything else is ours. */
    bool theirs = rc == TT_ECERT || rc == TT_ETOOBIG;
    snprintf(why, sizeof(why), "%s%s", theirs ? "the certificate request is not valid: " : "", err);
    rc = refuse(fd, &q, theirs ? TT_EINVAL : rc, why);
    goto out;
  }
  int n = i2d_X509(cert, &der);
  if (n <= 0) {
    rc = refuse(fd, &q, TT_ETLS, "cannot encode the certificate");
    goto out;
  }
  TT_DEBUG("signer", "signed", "device=%s seconds=%u", q.device_id, q.seconds);
  rc = reply(fd, q.id, 0, der, (size_t)n);
out:
  OPENSSL_free(der);
  X509_free(cert);
  X509_REQ_free(csr);
  ERR_clear_error();
  return rc;
}

int broker_signer_serve(int fd, X509 *ca, EVP_PKEY *key, uint32_t max_seconds) {
  static uint8_t body[TT_SIGNER_REQUEST_MAX];
  for (;;) {
    uint8_t hdr[BROKER_SIGNER_HDR];
    int rc = read_full(fd, hdr, sizeof(hdr));
    if (rc == 1) return 0; /* the broker closed the socket */
    if (rc) return rc;
    uint32_t len = (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 | (uint32_t)hdr[2] << 8 | hdr[3];
    if (len == 0 || len > TT_SIGNER_REQUEST_MAX) {
      /* Checked before a byte of it is read; what follows cannot be framed any more. */
      char why[96];
      snprintf(why, sizeof(why), "a request of %u bytes is not within 1..%u", len, TT_SIGNER_REQUEST_MAX);
      TT_WARN("signer", "request refused", "reason=\"%s\"", why);
      (void)reply_text(fd, 0, TT_ETOOBIG, why);
      return TT_ETOOBIG;
    }
    if ((rc = read_full(fd, body, len)) != 0) return rc == 1 ? TT_EPROTO : rc;
    if ((rc = sign_one(fd, body, len, ca, key, max_seconds)) != 0) return rc;
  }
}

/* Nothing of the broker's reaches us but fd 3 and stdio; the kernel is told we never gain
 * privileges, may not be ptraced or dumped by our user (the key is in our memory), and may
 * open no descriptor at all: no socket, no file, once the CA is loaded. */
static int drop(char *err, size_t errlen) {
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
    snprintf(err, errlen, "PR_SET_NO_NEW_PRIVS: %s", strerror(errno));
    return TT_EDENIED;
  }
  (void)prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
  struct rlimit none = {0, 0};
  (void)setrlimit(RLIMIT_CORE, &none);
  struct rlimit fds = {BROKER_SIGNER_FD + 1, BROKER_SIGNER_FD + 1};
  if (setrlimit(RLIMIT_NOFILE, &fds) != 0) {
    snprintf(err, errlen, "RLIMIT_NOFILE: %s", strerror(errno));
    return TT_EDENIED;
  }
  return 0;
}

int broker_signer_main(int argc, char **argv) {
  const char *ca_path = NULL, *key_path = NULL;
  long long lifetime = 0;
  int fd = -1;
  for (int i = 1; i + 1 < argc; i += 2) {
    const char *k = argv[i], *v = argv[i + 1];
    if (strcmp(k, "--signer") == 0) fd = atoi(v);
    else if (strcmp(k, "--ca") == 0) ca_path = v;
    else if (strcmp(k, "--ca-key") == 0) key_path = v;
    else if (strcmp(k, "--lifetime") == 0) lifetime = atoll(v);
    else if (strcmp(k, "--log-level") == 0) {
      tt_log_level_t lvl;
      if (tt_log_parse_level(v, &lvl) == 0) tt_log_set_level(lvl);
    }
  }
  struct stat st;
  if (fd != BROKER_SIGNER_FD || fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode)) {
    fprintf(stderr, "tether-broker: --signer is for the broker's own use (it starts the signer itself)\n");
    return 2;
  }
  /* A Ctrl-C in the broker's terminal is the broker's to handle: we go when it does. */
  signal(SIGINT, SIG_IGN);
  signal(SIGPIPE, SIG_IGN);
  closefrom(BROKER_SIGNER_FD + 1);
  char err[512];
  X509 *ca = NULL;
  EVP_PKEY *key = NULL;
  int rc = 0;
  if (!ca_path || !key_path || lifetime <= 0 || lifetime > UINT32_MAX) {
    snprintf(err, sizeof(err), "the signer needs --ca, --ca-key and --lifetime");
    rc = TT_EINVAL;
  } else if ((rc = tt_pki_load_cert(ca_path, &ca, err, sizeof(err))) == 0 &&
             (rc = tt_pki_load_key(key_path, &key, err, sizeof(err))) == 0 &&
             X509_check_private_key(ca, key) != 1) {
    snprintf(err, sizeof(err), "%s does not belong to %s", key_path, ca_path);
    rc = TT_ECERT;
  }
  ERR_clear_error();
  if (!rc) rc = drop(err, sizeof(err));
  if (rc) {
    /* The broker prints it and does not start without a signer. */
    (void)reply_text(fd, 0, rc, err);
  } else if ((rc = reply(fd, 0, 0, NULL, 0)) == 0) {
    TT_INFO("signer", "ready", "pid=%d lifetime_s=%lld", (int)getpid(), lifetime);
    rc = broker_signer_serve(fd, ca, key, (uint32_t)lifetime);
    if (rc) TT_WARN("signer", "stopped", "err=%s", tt_errname(rc));
  }
  close(fd);
  EVP_PKEY_free(key);
  X509_free(ca);
  return rc ? 1 : 0;
}
