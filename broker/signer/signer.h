/* The certificate signer: a small process of its own, started by the broker, the only one
 * that holds the CA key. It does one thing: sign a device's CSR. Broker and signer speak
 * over a socketpair (fd 3 in the signer) in length-prefixed messages, one request type and
 * one reply type, so that a memory bug on the broker's TLS path cannot read the CA key.
 *
 * A message is a big-endian u32 body length (at most TT_SIGNER_REQUEST_MAX, or
 * TT_SIGNER_REPLY_MAX for replies) and the body:
 *   request: u8 version, u32 id, u32 seconds of validity, u8 n + n bytes device id,
 *            u16 m + m bytes CSR (DER)
 *   reply:   u8 version, u32 id, i32 status (0 or a negative TT_E code),
 *            u16 n + n bytes: the certificate (DER) or, on failure, the reason (text)
 * The signer's first message is a reply with id 0: status 0 when it is ready, or why it
 * cannot start (then it exits). It exits when the socket closes (the broker is gone). */
#ifndef BROKER_SIGNER_H
#define BROKER_SIGNER_H

#include <stddef.h>
#include <stdint.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include "tt/err.h"
#include "tt/limits.h"

#define BROKER_SIGNER_FD 3
#define BROKER_SIGNER_VERSION 1
#define BROKER_SIGNER_HDR 4u /* the length prefix */

typedef struct {
  uint32_t id;
  uint32_t seconds;                 /* validity asked for: at most the signer's lifetime */
  char device_id[TT_NAME_MAX + 1];
  const uint8_t *csr;               /* DER; points into the message it was decoded from */
  size_t csr_len;
} broker_sign_req_t;

typedef struct {
  uint32_t id;
  int32_t status;
  const uint8_t *data;              /* certificate DER, or the reason; points into the message */
  size_t len;
} broker_sign_reply_t;

/* Whole messages, length prefix included, into out; the length written, or 0 if a field
 * is out of bounds or cap is too small. */
size_t broker_sign_req_encode(const broker_sign_req_t *r, uint8_t *out, size_t cap);
size_t broker_sign_reply_encode(const broker_sign_reply_t *r, uint8_t *out, size_t cap);
/* A body (after the length prefix). TT_EPROTO if it is not one of ours: wrong version,
 * truncated, trailing bytes, a field out of bounds. */
int broker_sign_req_decode(const uint8_t *body, size_t len, broker_sign_req_t *out) TT_WUR;
int broker_sign_reply_decode(const uint8_t *body, size_t len, broker_sign_reply_t *out) TT_WUR;

/* process.c: the process. `tether-broker --signer 3 --ca FILE --ca-key FILE --lifetime SECONDS
 * [--log-level LEVEL]`, started by the broker only; returns its exit status. */
int broker_signer_main(int argc, char **argv);
/* Answer requests on fd until it closes: 0 at EOF, or the error that ended it (a message
 * over TT_SIGNER_REQUEST_MAX is answered and ends it: the stream cannot be trusted after).
 * A request that is not valid gets an error reply and the next one is read. */
int broker_signer_serve(int fd, X509 *ca, EVP_PKEY *key, uint32_t max_seconds);

#endif
