/* The broker's PKI: a P-256 CA, leaf certificates for a role and name, CSR signing for
 * enrollment, and key/cert files that are written once (keys 0600) and never overwritten. */
#ifndef TT_PKI_H
#define TT_PKI_H

#include <stddef.h>
#include <stdint.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include "tt/cert.h"
#include "tt/err.h"

#define TT_PKI_DAY 86400LL
/* Validity. The CA outlives every leaf it signs; a leaf that would outlive its CA is cut
 * to the CA's notAfter. Devices are short-lived and renewed over the live connection. */
#define TT_PKI_CA_SECONDS (3653LL * TT_PKI_DAY)       /* 10 years */
#define TT_PKI_BROKER_SECONDS (730LL * TT_PKI_DAY)    /* 2 years */
#define TT_PKI_PERSON_SECONDS (365LL * TT_PKI_DAY)    /* technician, admin: 1 year */
#define TT_PKI_AGENT_SECONDS (30LL * TT_PKI_DAY)      /* 30 days */
#define TT_PKI_MAX_SECONDS TT_PKI_CA_SECONDS
/* notBefore is set this far in the past so a peer whose clock runs a little behind still
 * accepts a certificate issued a moment ago. */
#define TT_PKI_BACKDATE_SECONDS 300LL
/* Subject alternative names on a broker certificate. */
#define TT_PKI_SANS_MAX 32u
#define TT_PKI_SAN_MAX 253u /* longest DNS name */
/* A DER CSR for P-256 is ~200-400 bytes; anything bigger is not ours. (Candidate for
 * tt/limits.h once enrollment reads CSRs off the wire.) */
#define TT_PKI_CSR_MAX 4096u

/* Fixed CA subject: /O=Tether/OU=ca/CN=Tether CA. */
#define TT_PKI_ORG "Tether"
#define TT_PKI_CA_OU "ca"
#define TT_PKI_CA_CN "Tether CA"

/* File names inside a PKI directory made by `tether-certs init`. */
#define TT_PKI_CA_CERT_FILE "ca.pem"
#define TT_PKI_CA_KEY_FILE "ca.key"

/* What a leaf certificate says. Unset fields take defaults. */
typedef struct {
  tt_role_t role;            /* agent, technician, admin or broker */
  const char *name;          /* CN; must pass tt_name_valid() */
  int64_t seconds;           /* validity from now; 0 = tt_pki_default_seconds(role) */
  const char *const *sans;   /* broker only: IP literals -> IP:, others -> DNS: */
  size_t nsans;
} tt_pki_leaf_t;

/* Every function below that takes err/errlen writes a one-line reason there on failure
 * (with OpenSSL's reason where OpenSSL failed) and leaves OpenSSL's error queue empty.
 * Codes: TT_EINVAL bad argument (role, name, SAN, validity), TT_ECERT a CSR or
 * certificate that is malformed, badly signed, uses the wrong key type or does not match
 * its key, TT_ETOOBIG a CSR over TT_PKI_CSR_MAX, TT_ECONFIG an unreadable key file,
 * TT_EDENIED a key file readable by others, TT_EIO a failed PEM write, TT_ENOMEM,
 * TT_ETLS any other OpenSSL failure, and -errno from the file system (-EEXIST: refusing
 * to overwrite). Outputs are cleared on entry and set only on success; the caller frees
 * them. Key generation and signing take milliseconds: run them off the event loop. */

/* Default validity for a role, in seconds (0 for TT_ROLE_NONE). */
int64_t tt_pki_default_seconds(tt_role_t role);
/* A SAN tt_pki_issue accepts: an IPv4/IPv6 literal, or a DNS name of [A-Za-z0-9.-]. */
int tt_pki_san_valid(const char *s);

/* A fresh ECDSA P-256 key. */
int tt_pki_key_new(EVP_PKEY **out, char *err, size_t errlen) TT_WUR;

/* A self-signed CA with a new key: CA:TRUE pathlen:0, keyCertSign+cRLSign, SKI.
 * seconds = 0 means TT_PKI_CA_SECONDS. */
int tt_pki_ca_new(int64_t seconds, X509 **cert, EVP_PKEY **key, char *err,
                  size_t errlen) TT_WUR;

/* A new key and a leaf certificate for it, signed by the CA. */
int tt_pki_issue(X509 *ca, EVP_PKEY *ca_key, const tt_pki_leaf_t *leaf, X509 **cert,
                 EVP_PKEY **key, char *err, size_t errlen) TT_WUR;

/* Sign a CSR for enrollment. The CSR's signature must verify and its key must be P-256;
 * only its public key is used: subject, extensions and attributes it asks for are ignored
 * and ours (leaf->role, leaf->name) applied. */
int tt_pki_sign_csr(X509 *ca, EVP_PKEY *ca_key, X509_REQ *csr, const tt_pki_leaf_t *leaf,
                    X509 **cert, char *err, size_t errlen) TT_WUR;

/* What tt_pki_sign_csr checks before it signs (a P-256 key, a signature that verifies),
 * for a caller that must refuse a bad CSR before it spends anything on it. */
int tt_pki_csr_check(X509_REQ *csr, char *err, size_t errlen) TT_WUR;

/* The enrolling side: a CSR for key with subject /O=Tether/CN=name, signed by key. */
int tt_pki_csr_new(EVP_PKEY *key, const char *name, X509_REQ **out, char *err,
                   size_t errlen) TT_WUR;
/* Parse a DER CSR from a peer: at most TT_PKI_CSR_MAX bytes, no trailing bytes. The
 * signature is checked by tt_pki_sign_csr, not here. */
int tt_pki_csr_from_der(const uint8_t *der, size_t len, X509_REQ **out, char *err,
                        size_t errlen) TT_WUR;

/* Write PEM files. Refuse (-EEXIST) if path exists; never follow a symlink at path. The
 * key file is created 0600 and the certificate 0644, whatever the umask; a file that
 * could not be written whole is removed. The key is written unencrypted (PKCS#8). */
int tt_pki_write_key(const char *path, EVP_PKEY *key, char *err, size_t errlen) TT_WUR;
int tt_pki_write_cert(const char *path, X509 *x, char *err, size_t errlen) TT_WUR;

/* Read the first certificate / the private key of a PEM file. A key file that group or
 * others may read is refused (TT_EDENIED), as ssh does. */
int tt_pki_load_cert(const char *path, X509 **out, char *err, size_t errlen) TT_WUR;
int tt_pki_load_key(const char *path, EVP_PKEY **out, char *err, size_t errlen) TT_WUR;
/* dir/ca.pem and dir/ca.key, checked to belong together. */
int tt_pki_load_ca(const char *dir, X509 **cert, EVP_PKEY **key, char *err,
                   size_t errlen) TT_WUR;

#endif
