/* SSH public keys as people register them for the ssh gateway: one line of an
 * authorized_keys / id_*.pub file ("ssh-ed25519 AAAA... alice@laptop"), parsed here, in the
 * broker, without libssh (the gateway's libssh never shares memory with the broker). Only
 * what the gateway accepts is taken: Ed25519, ECDSA on P-256/384/521, RSA of at least
 * TT_SSH_RSA_BITS_MIN bits (used with SHA-2 signatures only); DSA, security-key types and a
 * line with options are refused with the reason. */
#ifndef TT_SSHKEY_H
#define TT_SSHKEY_H

#include <stddef.h>
#include <stdint.h>
#include "tt/err.h"
#include "tt/limits.h"

/* "SHA256:" and 43 base64 characters, as ssh-keygen -l prints it. */
#define TT_SSH_FP_LEN (7u + 43u)

typedef struct {
  char type[24];                     /* "ssh-ed25519", "ecdsa-sha2-nistp256", "ssh-rsa" */
  unsigned bits;                     /* 256 (Ed25519), the curve's size, the RSA modulus' */
  char fingerprint[TT_SSH_FP_LEN + 1];
  char line[TT_SSH_KEY_LINE_MAX + 1]; /* "TYPE BASE64": the key as the gateway's config shows it */
  char comment[TT_TEXT_MAX + 1];     /* printable, cut at TT_TEXT_MAX */
} tt_sshkey_t;

/* Parse one public key line of len bytes (a trailing newline is allowed). 0, or TT_EINVAL /
 * TT_ETOOBIG with why ("RSA keys need at least 3072 bits; this one has 2048"). */
int tt_sshkey_parse(const char *text, size_t len, tt_sshkey_t *out, char *why, size_t cap) TT_WUR;

/* The fingerprint of a key blob (the base64's bytes): "SHA256:...". cap > TT_SSH_FP_LEN. */
int tt_sshkey_fingerprint(const uint8_t *blob, size_t len, char *out, size_t cap) TT_WUR;

#endif
