/* Identities in certificates: the role travels in the subject's OU, the name in its CN.
 * Subject form: /O=Tether/OU=<role>/CN=<name>. Also fingerprints (the CA pin). */
#ifndef TT_CERT_H
#define TT_CERT_H

#include <stddef.h>
#include <openssl/x509.h>
#include "tt/err.h"
#include "tt/limits.h"

/* Values match tether.proto's Role. */
typedef enum {
  TT_ROLE_NONE = 0,
  TT_ROLE_AGENT = 1,
  TT_ROLE_TECHNICIAN = 2,
  TT_ROLE_ADMIN = 3,
  TT_ROLE_BROKER = 4,
  TT_ROLE_GATEWAY = 5, /* tether-sshd */
} tt_role_t;

#define TT_FINGERPRINT_LEN (7 + 64) /* "sha256:" + hex, without NUL */

typedef struct {
  tt_role_t role;
  char name[TT_NAME_MAX + 1];
  char fingerprint[TT_FINGERPRINT_LEN + 1];
} tt_identity_t;

const char *tt_role_name(tt_role_t r);            /* "agent", "technician", ... */
int tt_role_parse(const char *s, tt_role_t *out); /* TT_EINVAL if unknown */

/* Read role (OU), name (CN) and sha256 fingerprint from a verified certificate.
 * TT_ECERT if the OU is missing or not a role, or the CN is empty, too long or has
 * characters outside [A-Za-z0-9._@-]. */
int tt_cert_identity(X509 *x, tt_identity_t *out) TT_WUR;
/* "sha256:<64 hex>" of the DER encoding. */
int tt_cert_fingerprint(X509 *x, char *out, size_t cap) TT_WUR;
/* Same for a PEM file's first certificate. */
int tt_cert_file_fingerprint(const char *path, char *out, size_t cap) TT_WUR;
/* A name usable as a CN: 1..TT_NAME_MAX of [A-Za-z0-9._@-]. */
int tt_name_valid(const char *s);

#endif
