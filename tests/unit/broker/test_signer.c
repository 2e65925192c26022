/* The certificate signer (broker/signer/process.c, broker/signer/wire.c): its messages, and the
 * serving loop on a socketpair with a CA made at test time: a good request is signed as a
 * device certificate for the name asked, for the time asked; requests that are garbage,
 * ask too much, carry a bad CSR, or are oversized are refused with a clear code, and
 * only the oversized one (which cannot be framed past) ends the loop. */
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "signer.h"
#include "tt/cert.h"
#include "tt/pki.h"

#define MAX_SECONDS 3600u

typedef struct {
  X509 *ca;
  EVP_PKEY *ca_key;
  int fd;      /* our end */
  int peer;    /* the signer's end */
  pthread_t thread;
  int served;  /* broker_signer_serve's result */
  bool joined;
} fx_t;

static void *serve_main(void *arg) {
  fx_t *fx = arg;
  fx->served = broker_signer_serve(fx->peer, fx->ca, fx->ca_key, MAX_SECONDS);
  return NULL;
}

static int setup(void **state) {
  fx_t *fx = calloc(1, sizeof(*fx));
  char err[256];
  int sv[2];
  if (!fx || tt_pki_ca_new(0, &fx->ca, &fx->ca_key, err, sizeof(err)) ||
      socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
    return -1;
  fx->fd = sv[0];
  fx->peer = sv[1];
  if (pthread_create(&fx->thread, NULL, serve_main, fx)) return -1;
  *state = fx;
  return 0;
}

/* Closing our end is the broker going away: the loop ends (cleanly unless told otherwise). */
static int teardown(void **state) {
  fx_t *fx = *state;
  close(fx->fd);
  if (!fx->joined) pthread_join(fx->thread, NULL);
  assert_int_equal(fx->served, fx->joined ? TT_ETOOBIG : 0); /* EOF ends it cleanly */
  close(fx->peer);
  X509_free(fx->ca);
  EVP_PKEY_free(fx->ca_key);
  free(fx);
  return 0;
}

static void send_all(int fd, const void *p, size_t n) {
  while (n) {
    ssize_t w = write(fd, p, n);
    assert_true(w > 0);
    p = (const uint8_t *)p + w;
    n -= (size_t)w;
  }
}

static void recv_all(int fd, uint8_t *p, size_t n) {
  while (n) {
    ssize_t r = read(fd, p, n);
    assert_true(r > 0);
    p += r;
    n -= (size_t)r;
  }
}

/* One reply; the body is kept in buf for r's pointers. */
static void read_reply(int fd, uint8_t *buf, broker_sign_reply_t *r) {
  recv_all(fd, buf, BROKER_SIGNER_HDR);
  size_t len = (size_t)buf[0] << 24 | (size_t)buf[1] << 16 | (size_t)buf[2] << 8 | buf[3];
  assert_true(len > 0 && len <= TT_SIGNER_REPLY_MAX);
  recv_all(fd, buf, len);
  assert_int_equal(broker_sign_reply_decode(buf, len, r), 0);
}

static size_t csr_der(EVP_PKEY *k, uint8_t *out, size_t cap) {
  char err[256];
  X509_REQ *req = NULL;
  assert_int_equal(tt_pki_csr_new(k, "whatever", &req, err, sizeof(err)), 0);
  unsigned char *der = NULL;
  int n = i2d_X509_REQ(req, &der);
  assert_true(n > 0 && (size_t)n <= cap);
  memcpy(out, der, (size_t)n);
  OPENSSL_free(der);
  X509_REQ_free(req);
  return (size_t)n;
}

/* Send a request and read its reply. */
static void ask(fx_t *fx, uint32_t id, uint32_t seconds, const char *dev, const uint8_t *csr, size_t n,
                uint8_t *buf, broker_sign_reply_t *r) {
  uint8_t msg[BROKER_SIGNER_HDR + TT_SIGNER_REQUEST_MAX];
  broker_sign_req_t q = {.id = id, .seconds = seconds, .csr = csr, .csr_len = n};
  snprintf(q.device_id, sizeof(q.device_id), "%s", dev);
  size_t len = broker_sign_req_encode(&q, msg, sizeof(msg));
  assert_true(len > 0);
  send_all(fx->fd, msg, len);
  read_reply(fx->fd, buf, r);
  assert_int_equal(r->id, id);
}

static void test_signs_a_device_certificate(void **state) {
  fx_t *fx = *state;
  EVP_PKEY *k = EVP_EC_gen("P-256");
  assert_non_null(k);
  uint8_t csr[TT_PKI_CSR_MAX], buf[TT_SIGNER_REPLY_MAX];
  size_t n = csr_der(k, csr, sizeof(csr));
  broker_sign_reply_t r;
  ask(fx, 7, 600, "dev-0123456789ab", csr, n, buf, &r);
  assert_int_equal(r.status, 0);
  const unsigned char *p = r.data;
  X509 *x = d2i_X509(NULL, &p, (long)r.len);
  assert_non_null(x);
  tt_identity_t id;
  assert_int_equal(tt_cert_identity(x, &id), 0);
  assert_int_equal(id.role, TT_ROLE_AGENT); /* whatever the CSR's subject said */
  assert_string_equal(id.name, "dev-0123456789ab");
  assert_int_equal(X509_verify(x, X509_get0_pubkey(fx->ca)), 1);
  assert_int_equal(EVP_PKEY_eq(X509_get0_pubkey(x), k), 1);
  int days, secs;
  assert_int_equal(ASN1_TIME_diff(&days, &secs, NULL, X509_get0_notAfter(x)), 1);
  long left = days * 86400L + secs;
  assert_true(left > 540 && left <= 600);
  X509_free(x);
  EVP_PKEY_free(k);
}

static void test_refuses_what_is_not_valid(void **state) {
  fx_t *fx = *state;
  EVP_PKEY *k = EVP_EC_gen("P-256"), *p384 = EVP_EC_gen("P-384");
  assert_non_null(k);
  assert_non_null(p384);
  uint8_t csr[TT_PKI_CSR_MAX], big[TT_PKI_CSR_MAX], buf[TT_SIGNER_REPLY_MAX];
  size_t n = csr_der(k, csr, sizeof(csr)), n384 = csr_der(p384, big, sizeof(big));
  broker_sign_reply_t r;
  char msg[TT_SIGNER_REPLY_MAX + 1];

  /* Longer than policy, or no time at all: a broker cannot ask for more than it was given. */
  ask(fx, 1, MAX_SECONDS + 1, "dev-1", csr, n, buf, &r);
  assert_int_equal(r.status, TT_EINVAL);
  ask(fx, 2, 0, "dev-1", csr, n, buf, &r);
  assert_int_equal(r.status, TT_EINVAL);

  /* Not a CSR; a CSR whose signature does not verify; a key that is not P-256. */
  static const uint8_t junk[] = {0x30, 0x03, 0x02, 0x01, 0x00};
  ask(fx, 3, 60, "dev-1", junk, sizeof(junk), buf, &r);
  assert_int_equal(r.status, TT_EINVAL);
  snprintf(msg, sizeof(msg), "%.*s", (int)r.len, (const char *)r.data);
  assert_non_null(strstr(msg, "the certificate request is not valid: "));
  csr[n - 1] ^= 0x01;
  ask(fx, 4, 60, "dev-1", csr, n, buf, &r);
  assert_int_equal(r.status, TT_EINVAL);
  snprintf(msg, sizeof(msg), "%.*s", (int)r.len, (const char *)r.data);
  assert_non_null(strstr(msg, "signature"));
  csr[n - 1] ^= 0x01;
  ask(fx, 5, 60, "dev-1", big, n384, buf, &r);
  assert_int_equal(r.status, TT_EINVAL);

  /* Framed right but not a request: wrong version, a name that is not one, bytes after
   * the CSR, a body cut short. Each is answered, and the signer reads on. */
  uint8_t msgbuf[BROKER_SIGNER_HDR + TT_SIGNER_REQUEST_MAX];
  broker_sign_req_t q = {.id = 6, .seconds = 60, .csr = csr, .csr_len = n};
  snprintf(q.device_id, sizeof(q.device_id), "dev-1");
  size_t len = broker_sign_req_encode(&q, msgbuf, sizeof(msgbuf));
  assert_true(len > 0);
  uint8_t bad[sizeof(msgbuf) + 1];
  memcpy(bad, msgbuf, len);
  bad[BROKER_SIGNER_HDR] = 99; /* version */
  send_all(fx->fd, bad, len);
  read_reply(fx->fd, buf, &r);
  assert_int_equal(r.status, TT_EPROTO);
  memcpy(bad, msgbuf, len);
  bad[BROKER_SIGNER_HDR + 10] = ' '; /* "dev-1" -> " ev-1" */
  send_all(fx->fd, bad, len);
  read_reply(fx->fd, buf, &r);
  assert_int_equal(r.status, TT_EPROTO);
  memcpy(bad, msgbuf, len);
  bad[len] = 0; /* one byte more, and the length says so */
  bad[3]++;
  send_all(fx->fd, bad, len + 1);
  read_reply(fx->fd, buf, &r);
  assert_int_equal(r.status, TT_EPROTO);
  memcpy(bad, msgbuf, len);
  bad[3] = 4; /* a body of 4 bytes: cut short */
  send_all(fx->fd, bad, BROKER_SIGNER_HDR + 4);
  read_reply(fx->fd, buf, &r);
  assert_int_equal(r.status, TT_EPROTO);

  /* And it still signs. */
  ask(fx, 8, 60, "dev-1", csr, n, buf, &r);
  assert_int_equal(r.status, 0);
  EVP_PKEY_free(k);
  EVP_PKEY_free(p384);
}

static void test_oversized_ends_the_stream(void **state) {
  fx_t *fx = *state;
  uint8_t hdr[BROKER_SIGNER_HDR], buf[TT_SIGNER_REPLY_MAX];
  uint32_t n = TT_SIGNER_REQUEST_MAX + 1;
  hdr[0] = (uint8_t)(n >> 24);
  hdr[1] = (uint8_t)(n >> 16);
  hdr[2] = (uint8_t)(n >> 8);
  hdr[3] = (uint8_t)n;
  send_all(fx->fd, hdr, sizeof(hdr));
  broker_sign_reply_t r;
  read_reply(fx->fd, buf, &r);
  assert_int_equal(r.id, 0);
  assert_int_equal(r.status, TT_ETOOBIG);
  pthread_join(fx->thread, NULL);
  fx->joined = true;
  assert_int_equal(fx->served, TT_ETOOBIG);
}

static void test_wire_codec(void **state) {
  (void)state;
  uint8_t out[BROKER_SIGNER_HDR + TT_SIGNER_REQUEST_MAX], csr[16] = {1, 2, 3};
  broker_sign_req_t q = {.id = 42, .seconds = 9, .csr = csr, .csr_len = sizeof(csr)}, d;
  snprintf(q.device_id, sizeof(q.device_id), "dev-x");
  size_t len = broker_sign_req_encode(&q, out, sizeof(out));
  assert_int_equal(len, BROKER_SIGNER_HDR + 1 + 4 + 4 + 1 + 5 + 2 + sizeof(csr));
  assert_int_equal(broker_sign_req_decode(out + BROKER_SIGNER_HDR, len - BROKER_SIGNER_HDR, &d), 0);
  assert_int_equal(d.id, 42);
  assert_int_equal(d.seconds, 9);
  assert_string_equal(d.device_id, "dev-x");
  assert_int_equal(d.csr_len, sizeof(csr));
  assert_memory_equal(d.csr, csr, sizeof(csr));
  /* Every truncation is refused. */
  for (size_t cut = 0; cut < len - BROKER_SIGNER_HDR; cut++)
    assert_int_equal(broker_sign_req_decode(out + BROKER_SIGNER_HDR, cut, &d), TT_EPROTO);
  /* A name that is not one: refused, and nothing of it is kept but the id. */
  out[BROKER_SIGNER_HDR + 10] = ' ';
  assert_int_equal(broker_sign_req_decode(out + BROKER_SIGNER_HDR, len - BROKER_SIGNER_HDR, &d), TT_EPROTO);
  assert_int_equal(d.id, 42);
  assert_string_equal(d.device_id, "");
  assert_null(d.csr);
  out[BROKER_SIGNER_HDR + 10] = 'd';
  /* Nothing that does not fit is encoded: no name, a CSR over the limit, a small buffer. */
  q.device_id[0] = '\0';
  assert_int_equal(broker_sign_req_encode(&q, out, sizeof(out)), 0);
  snprintf(q.device_id, sizeof(q.device_id), "dev-x");
  q.csr_len = TT_SIGNER_REQUEST_MAX;
  assert_int_equal(broker_sign_req_encode(&q, out, sizeof(out)), 0);
  q.csr_len = sizeof(csr);
  assert_int_equal(broker_sign_req_encode(&q, out, 10), 0);

  broker_sign_reply_t r = {.id = 3, .status = TT_EINVAL, .data = (const uint8_t *)"no", .len = 2}, rd;
  len = broker_sign_reply_encode(&r, out, sizeof(out));
  assert_true(len > 0);
  assert_int_equal(broker_sign_reply_decode(out + BROKER_SIGNER_HDR, len - BROKER_SIGNER_HDR, &rd), 0);
  assert_int_equal(rd.id, 3);
  assert_int_equal(rd.status, TT_EINVAL);
  assert_int_equal(rd.len, 2);
  /* A positive status is not one of ours; nor trailing bytes. */
  r.status = 5;
  len = broker_sign_reply_encode(&r, out, sizeof(out));
  assert_int_equal(broker_sign_reply_decode(out + BROKER_SIGNER_HDR, len - BROKER_SIGNER_HDR, &rd), TT_EPROTO);
  r.status = 0;
  len = broker_sign_reply_encode(&r, out, sizeof(out));
  assert_int_equal(broker_sign_reply_decode(out + BROKER_SIGNER_HDR, len - BROKER_SIGNER_HDR + 1, &rd), TT_EPROTO);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_wire_codec),
      cmocka_unit_test_setup_teardown(test_signs_a_device_certificate, setup, teardown),
      cmocka_unit_test_setup_teardown(test_refuses_what_is_not_valid, setup, teardown),
      cmocka_unit_test_setup_teardown(test_oversized_ends_the_stream, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
