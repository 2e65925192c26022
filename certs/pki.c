/* The broker's PKI: makes the CA, issues leaves for a role and name, signs enrollment CSRs,
 * and writes key and certificate files once, with the right modes, never overwriting. */
#include "tt/pki.h"
#include "pki_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

/* One line into err: the caller's words, then OpenSSL's reason if it left one. Empties
 * OpenSSL's queue either way, so a stale error never shows up in a later message. */
static int fail(int code, char *err, size_t errlen, const char *fmt, ...) TT_PRINTF(4, 5);
static int fail(int code, char *err, size_t errlen, const char *fmt, ...) {
  unsigned long e = ERR_peek_last_error();
  if (err != NULL && errlen > 0) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    if (e != 0 && n >= 0 && (size_t)n < errlen) {
      const char *why = ERR_SYSTEM_ERROR(e) ? strerror(ERR_GET_REASON(e))
                                            : ERR_reason_error_string(e);
      if (why == NULL)
        why = ERR_lib_error_string(e);
      if (why != NULL)
        snprintf(err + n, errlen - (size_t)n, ": %s", why);
    }
  }
  ERR_clear_error();
  return code;
}

int64_t tt_pki_default_seconds(tt_role_t role) {
  switch (role) {
  case TT_ROLE_AGENT:
    return TT_PKI_AGENT_SECONDS;
  case TT_ROLE_TECHNICIAN:
  case TT_ROLE_ADMIN:
    return TT_PKI_PERSON_SECONDS;
  case TT_ROLE_BROKER:
  case TT_ROLE_GATEWAY: /* a service, renewed with the broker's */
    return TT_PKI_BROKER_SECONDS;
  case TT_ROLE_NONE:
    break;
  }
  return 0;
}

static int dns_name_valid(const char *s) {
  size_t len = strnlen(s, TT_PKI_SAN_MAX + 1), label = 0;
  if (len == 0 || len > TT_PKI_SAN_MAX)
    return 0;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '.') {
      if (label == 0)
        return 0; /* leading dot or ".." */
      label = 0;
      continue;
    }
    int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
             c == '-';
    if (!ok || ++label > 63)
      return 0;
  }
  return label > 0; /* no trailing dot */
}

int tt_pki_san_valid(const char *s) {
  unsigned char ip[16];
  if (s == NULL)
    return 0;
  if (inet_pton(AF_INET, s, ip) == 1 || inet_pton(AF_INET6, s, ip) == 1)
    return 1;
  return dns_name_valid(s);
}

static int key_is_p256(EVP_PKEY *pk) {
  char group[64];
  if (pk == NULL || !EVP_PKEY_is_a(pk, "EC"))
    return 0;
  if (!EVP_PKEY_get_utf8_string_param(pk, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group,
                                      NULL)) {
    ERR_clear_error();
    return 0;
  }
  int nid = OBJ_sn2nid(group);
  if (nid == NID_undef)
    nid = EC_curve_nist2nid(group);
  return nid == NID_X9_62_prime256v1;
}

int tt_pki_key_new(EVP_PKEY **out, char *err, size_t errlen) {
  *out = EVP_EC_gen("P-256");
  if (*out == NULL)
    return fail(TT_ETLS, err, errlen, "generating a P-256 key");
  return 0;
}

/* 128 random bits, positive and never zero (RFC 5280 wants at least 64 unpredictable
 * bits and at most 20 octets; 16 bytes fit with room for a sign octet). */
static int set_random_serial(X509 *x) {
  unsigned char b[16];
  int ok = 0;
  BIGNUM *bn = NULL;
  do {
    if (RAND_bytes(b, sizeof b) != 1)
      return 0;
  } while (memcmp(b, (const unsigned char[16]){0}, sizeof b) == 0);
  if ((bn = BN_bin2bn(b, sizeof b, NULL)) == NULL)
    return 0;
  ASN1_INTEGER *serial = BN_to_ASN1_INTEGER(bn, NULL);
  if (serial != NULL)
    ok = X509_set_serialNumber(x, serial) == 1;
  ASN1_INTEGER_free(serial);
  BN_free(bn);
  return ok;
}

/* notBefore a little in the past; notAfter now + seconds, but never past the CA's own. */
static int set_validity(X509 *x, int64_t seconds, X509 *ca) {
  if (X509_gmtime_adj(X509_getm_notBefore(x), -TT_PKI_BACKDATE_SECONDS) == NULL)
    return 0;
  if (X509_time_adj_ex(X509_getm_notAfter(x), (int)(seconds / TT_PKI_DAY),
                       (long)(seconds % TT_PKI_DAY), NULL) == NULL)
    return 0;
  if (ca != NULL && ASN1_TIME_compare(X509_get0_notAfter(x), X509_get0_notAfter(ca)) > 0)
    return X509_set1_notAfter(x, X509_get0_notAfter(ca)) == 1;
  return 1;
}

/* /O=Tether[/OU=ou]/CN=cn */
static int set_subject(X509_NAME *n, const char *ou, const char *cn) {
  if (!X509_NAME_add_entry_by_txt(n, "O", MBSTRING_ASC, (const unsigned char *)TT_PKI_ORG,
                                  -1, -1, 0))
    return 0;
  if (ou != NULL &&
      !X509_NAME_add_entry_by_txt(n, "OU", MBSTRING_ASC, (const unsigned char *)ou, -1, -1, 0))
    return 0;
  return X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1,
                                    0) == 1;
}

static int add_ext(X509 *x, X509V3_CTX *ctx, int nid, const char *value) {
  X509_EXTENSION *ext = X509V3_EXT_nconf_nid(NULL, ctx, nid, value);
  if (ext == NULL)
    return 0;
  int ok = X509_add_ext(x, ext, -1) == 1;
  X509_EXTENSION_free(ext);
  return ok;
}

/* Built as GENERAL_NAMEs rather than an "IP:..,DNS:.." string, so no name can smuggle in
 * another entry through a comma. */
static int add_sans(X509 *x, const char *const *sans, size_t n) {
  GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
  int ok = 0;
  if (gens == NULL)
    return 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char ip[16];
    int iplen = inet_pton(AF_INET, sans[i], ip) == 1    ? 4
                : inet_pton(AF_INET6, sans[i], ip) == 1 ? 16
                                                        : 0;
    GENERAL_NAME *gn = GENERAL_NAME_new();
    ASN1_STRING *s = iplen > 0 ? ASN1_OCTET_STRING_new() : ASN1_IA5STRING_new();
    int set = iplen > 0 ? ASN1_STRING_set(s, ip, iplen) : ASN1_STRING_set(s, sans[i], -1);
    if (gn == NULL || s == NULL || set != 1) {
      GENERAL_NAME_free(gn);
      ASN1_STRING_free(s);
      goto out;
    }
    GENERAL_NAME_set0_value(gn, iplen > 0 ? GEN_IPADD : GEN_DNS, s);
    if (sk_GENERAL_NAME_push(gens, gn) <= 0) {
      GENERAL_NAME_free(gn);
      goto out;
    }
  }
  ok = X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0, X509V3_ADD_DEFAULT) == 1;
out:
  GENERAL_NAMES_free(gens);
  return ok;
}

static int check_leaf(const tt_pki_leaf_t *leaf, char *err, size_t errlen) {
  if (leaf == NULL)
    return fail(TT_EINVAL, err, errlen, "no leaf description");
  if (leaf->role < TT_ROLE_AGENT || leaf->role > TT_ROLE_GATEWAY)
    return fail(TT_EINVAL, err, errlen, "role %d is not agent, technician, admin, broker or gateway",
                (int)leaf->role);
  if (!tt_name_valid(leaf->name))
    return fail(TT_EINVAL, err, errlen,
                "name must be 1..%u characters of A-Z a-z 0-9 . _ @ -", TT_NAME_MAX);
  if (leaf->seconds < 0 || leaf->seconds > TT_PKI_MAX_SECONDS)
    return fail(TT_EINVAL, err, errlen, "validity must be 1..%lld seconds",
                (long long)TT_PKI_MAX_SECONDS);
  if (leaf->nsans > 0 && leaf->role != TT_ROLE_BROKER)
    return fail(TT_EINVAL, err, errlen, "subject alternative names are for the broker only");
  if (leaf->nsans > TT_PKI_SANS_MAX)
    return fail(TT_EINVAL, err, errlen, "more than %u subject alternative names",
                TT_PKI_SANS_MAX);
  for (size_t i = 0; i < leaf->nsans; i++)
    if (!tt_pki_san_valid(leaf->sans[i]))
      return fail(TT_EINVAL, err, errlen,
                  "subject alternative name %zu is neither an IP address nor a DNS name",
                  i + 1);
  return 0;
}

/* The certificate both issuing paths share: our subject on pub, signed by the CA. */
static int build_leaf(X509 *ca, EVP_PKEY *ca_key, EVP_PKEY *pub, const tt_pki_leaf_t *leaf,
                      X509 **out, char *err, size_t errlen) {
  X509V3_CTX ctx;
  X509 *x = NULL;
  int rc = check_leaf(leaf, err, errlen);
  if (rc < 0)
    return rc;
  if (ca == NULL || ca_key == NULL)
    return fail(TT_EINVAL, err, errlen, "no CA certificate or key");
  if (X509_check_private_key(ca, ca_key) != 1)
    return fail(TT_ECERT, err, errlen, "CA key does not match the CA certificate");

  int64_t seconds = leaf->seconds > 0 ? leaf->seconds : tt_pki_default_seconds(leaf->role);
  if ((x = X509_new()) == NULL) {
    rc = fail(TT_ENOMEM, err, errlen, "allocating a certificate");
    goto out;
  }
  if (X509_set_version(x, X509_VERSION_3) != 1 || !set_random_serial(x) ||
      !set_subject(X509_get_subject_name(x), tt_role_name(leaf->role), leaf->name) ||
      X509_set_issuer_name(x, X509_get_subject_name(ca)) != 1 ||
      !set_validity(x, seconds, ca) || X509_set_pubkey(x, pub) != 1) {
    rc = fail(TT_ETLS, err, errlen, "building the certificate for %s", leaf->name);
    goto out;
  }
  X509V3_set_ctx(&ctx, ca, x, NULL, NULL, 0);
  if (!add_ext(x, &ctx, NID_basic_constraints, "critical,CA:FALSE") ||
      !add_ext(x, &ctx, NID_key_usage, "critical,digitalSignature") ||
      !add_ext(x, &ctx, NID_ext_key_usage,
               leaf->role == TT_ROLE_BROKER ? "serverAuth" : "clientAuth") ||
      !add_ext(x, &ctx, NID_subject_key_identifier, "hash") ||
      !add_ext(x, &ctx, NID_authority_key_identifier, "keyid:always") ||
      (leaf->nsans > 0 && !add_sans(x, leaf->sans, leaf->nsans))) {
    rc = fail(TT_ETLS, err, errlen, "adding extensions for %s", leaf->name);
    goto out;
  }
  if (X509_sign(x, ca_key, EVP_sha256()) <= 0) {
    rc = fail(TT_ETLS, err, errlen, "signing the certificate for %s", leaf->name);
    goto out;
  }
  *out = x;
  x = NULL;
  rc = 0;
out:
  X509_free(x);
  return rc;
}

int tt_pki_ca_new(int64_t seconds, X509 **cert, EVP_PKEY **key, char *err, size_t errlen) {
  X509V3_CTX ctx;
  X509 *x = NULL;
  EVP_PKEY *k = NULL;
  int rc;

  *cert = NULL;
  *key = NULL;
  if (seconds < 0 || seconds > TT_PKI_CA_SECONDS)
    return fail(TT_EINVAL, err, errlen, "CA validity must be 1..%lld seconds",
                (long long)TT_PKI_CA_SECONDS);
  if (seconds == 0)
    seconds = TT_PKI_CA_SECONDS;
  if ((rc = tt_pki_key_new(&k, err, errlen)) < 0)
    return rc;
  if ((x = X509_new()) == NULL) {
    rc = fail(TT_ENOMEM, err, errlen, "allocating the CA certificate");
    goto out;
  }
  if (X509_set_version(x, X509_VERSION_3) != 1 || !set_random_serial(x) ||
      !set_subject(X509_get_subject_name(x), TT_PKI_CA_OU, TT_PKI_CA_CN) ||
      X509_set_issuer_name(x, X509_get_subject_name(x)) != 1 ||
      !set_validity(x, seconds, NULL) || X509_set_pubkey(x, k) != 1) {
    rc = fail(TT_ETLS, err, errlen, "building the CA certificate");
    goto out;
  }
  X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
  if (!add_ext(x, &ctx, NID_basic_constraints, "critical,CA:TRUE,pathlen:0") ||
      !add_ext(x, &ctx, NID_key_usage, "critical,keyCertSign,cRLSign") ||
      !add_ext(x, &ctx, NID_subject_key_identifier, "hash")) {
    rc = fail(TT_ETLS, err, errlen, "adding the CA's extensions");
    goto out;
  }
  if (X509_sign(x, k, EVP_sha256()) <= 0) {
    rc = fail(TT_ETLS, err, errlen, "self-signing the CA certificate");
    goto out;
  }
  *cert = x;
  *key = k;
  return 0;
out:
  X509_free(x);
  EVP_PKEY_free(k);
  return rc;
}

int tt_pki_issue(X509 *ca, EVP_PKEY *ca_key, const tt_pki_leaf_t *leaf, X509 **cert,
                 EVP_PKEY **key, char *err, size_t errlen) {
  EVP_PKEY *k = NULL;
  int rc;

  *cert = NULL;
  *key = NULL;
  if ((rc = check_leaf(leaf, err, errlen)) < 0)
    return rc; /* before spending a key generation */
  if ((rc = tt_pki_key_new(&k, err, errlen)) < 0)
    return rc;
  if ((rc = build_leaf(ca, ca_key, k, leaf, cert, err, errlen)) < 0) {
    EVP_PKEY_free(k);
    return rc;
  }
  *key = k;
  return 0;
}

int tt_pki_sign_csr(X509 *ca, EVP_PKEY *ca_key, X509_REQ *csr, const tt_pki_leaf_t *leaf,
                    X509 **cert, char *err, size_t errlen) {
  *cert = NULL;
  int rc = tt_pki_csr_check(csr, err, errlen);
  if (rc) return rc;
  return build_leaf(ca, ca_key, X509_REQ_get0_pubkey(csr), leaf, cert, err, errlen);
}

int tt_pki_csr_check(X509_REQ *csr, char *err, size_t errlen) {
  if (csr == NULL)
    return fail(TT_EINVAL, err, errlen, "no CSR");
  EVP_PKEY *pub = X509_REQ_get0_pubkey(csr);
  if (!key_is_p256(pub))
    return fail(TT_ECERT, err, errlen, "CSR key is not ECDSA P-256");
  if (X509_REQ_verify(csr, pub) != 1)
    return fail(TT_ECERT, err, errlen, "CSR signature does not verify");
  return 0;
}

int tt_pki_csr_new(EVP_PKEY *key, const char *name, X509_REQ **out, char *err,
                   size_t errlen) {
  *out = NULL;
  if (key == NULL)
    return fail(TT_EINVAL, err, errlen, "no key for the CSR");
  if (!tt_name_valid(name))
    return fail(TT_EINVAL, err, errlen,
                "name must be 1..%u characters of A-Z a-z 0-9 . _ @ -", TT_NAME_MAX);
  X509_REQ *req = X509_REQ_new();
  if (req == NULL)
    return fail(TT_ENOMEM, err, errlen, "allocating a CSR");
  if (X509_REQ_set_version(req, X509_REQ_VERSION_1) != 1 ||
      !set_subject(X509_REQ_get_subject_name(req), NULL, name) ||
      X509_REQ_set_pubkey(req, key) != 1 || X509_REQ_sign(req, key, EVP_sha256()) <= 0) {
    X509_REQ_free(req);
    return fail(TT_ETLS, err, errlen, "building the CSR");
  }
  *out = req;
  return 0;
}

int tt_pki_csr_from_der(const uint8_t *der, size_t len, X509_REQ **out, char *err,
                        size_t errlen) {
  *out = NULL;
  if (der == NULL || len == 0)
    return fail(TT_ECERT, err, errlen, "empty CSR");
  if (len > TT_PKI_CSR_MAX)
    return fail(TT_ETOOBIG, err, errlen, "CSR of %zu bytes exceeds %u", len, TT_PKI_CSR_MAX);
  const unsigned char *p = der;
  X509_REQ *req = d2i_X509_REQ(NULL, &p, (long)len);
  if (req == NULL)
    return fail(TT_ECERT, err, errlen, "CSR is not valid DER");
  if (p != der + len) {
    X509_REQ_free(req);
    return fail(TT_ECERT, err, errlen, "%zu trailing bytes after the CSR",
                (size_t)(der + len - p));
  }
  *out = req;
  return 0;
}

static int emit_key(BIO *b, void *obj) {
  return PEM_write_bio_PrivateKey(b, obj, NULL, NULL, 0, NULL, NULL);
}

static int emit_cert(BIO *b, void *obj) {
  return PEM_write_bio_X509(b, obj);
}

/* O_EXCL makes "refuse to overwrite" atomic and, with O_NOFOLLOW, refuses a planted
 * symlink too. The file starts life 0600 so a key is never readable by others, not even
 * for a moment; a certificate is opened up to its final mode once written. */
int tt_pki_write_file(const char *path, mode_t mode, tt_pki_emit_fn emit, void *obj,
                      char *err, size_t errlen) {
  int rc;
  BIO *b = NULL;

  if (path == NULL || obj == NULL)
    return fail(TT_EINVAL, err, errlen, "nothing to write");
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) {
    rc = -errno;
    if (rc == -EEXIST)
      return fail(rc, err, errlen, "%s: already exists, refusing to overwrite", path);
    return fail(rc, err, errlen, "%s: %s", path, strerror(-rc));
  }
  if ((b = BIO_new_fd(fd, BIO_NOCLOSE)) == NULL) {
    rc = fail(TT_ENOMEM, err, errlen, "%s: allocating a BIO", path);
    goto out;
  }
  if (emit(b, obj) != 1 || BIO_flush(b) != 1) {
    rc = fail(TT_EIO, err, errlen, "%s: writing PEM", path);
    goto out;
  }
  if (fchmod(fd, mode) < 0 || fsync(fd) < 0) {
    rc = -errno;
    fail(rc, err, errlen, "%s: %s", path, strerror(-rc));
    goto out;
  }
  rc = 0;
out:
  BIO_free(b);
  if (close(fd) < 0 && rc == 0) {
    rc = -errno;
    fail(rc, err, errlen, "%s: %s", path, strerror(-rc));
  }
  if (rc < 0)
    unlink(path); /* ours: O_EXCL created it */
  return rc;
}

int tt_pki_write_key(const char *path, EVP_PKEY *key, char *err, size_t errlen) {
  return tt_pki_write_file(path, 0600, emit_key, key, err, errlen);
}

int tt_pki_write_cert(const char *path, X509 *x, char *err, size_t errlen) {
  return tt_pki_write_file(path, 0644, emit_cert, x, err, errlen);
}

/* Never prompt on a terminal for a passphrase: our keys are not encrypted. */
static int no_passphrase_cb(char *buf, int size, int rwflag, void *u) {
  return -1;
}

/* An fd-backed BIO for a regular file, and the file's mode (for the key permission check). */
static int open_bio(const char *path, BIO **out, mode_t *mode, char *err, size_t errlen) {
  struct stat st;
  *out = NULL;
  if (path == NULL)
    return fail(TT_EINVAL, err, errlen, "no file name");
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0 || fstat(fd, &st) < 0) {
    int rc = -errno;
    if (fd >= 0)
      close(fd);
    return fail(rc, err, errlen, "%s: %s", path, strerror(-rc));
  }
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    return fail(TT_EINVAL, err, errlen, "%s: not a regular file", path);
  }
  if ((*out = BIO_new_fd(fd, BIO_CLOSE)) == NULL) {
    close(fd);
    return fail(TT_ENOMEM, err, errlen, "%s: allocating a BIO", path);
  }
  *mode = st.st_mode;
  return 0;
}

int tt_pki_load_cert(const char *path, X509 **out, char *err, size_t errlen) {
  BIO *b;
  mode_t mode = 0;
  *out = NULL;
  int rc = open_bio(path, &b, &mode, err, errlen);
  if (rc < 0)
    return rc;
  *out = PEM_read_bio_X509(b, NULL, no_passphrase_cb, NULL);
  BIO_free(b);
  if (*out == NULL)
    return fail(TT_ECERT, err, errlen, "%s: no PEM certificate", path);
  return 0;
}

int tt_pki_load_key(const char *path, EVP_PKEY **out, char *err, size_t errlen) {
  BIO *b;
  mode_t mode = 0;
  *out = NULL;
  int rc = open_bio(path, &b, &mode, err, errlen);
  if (rc < 0)
    return rc;
  if (mode & 077) {
    BIO_free(b);
    return fail(TT_EDENIED, err, errlen,
                "%s: private key is accessible by group or others (chmod 600 it)", path);
  }
  *out = PEM_read_bio_PrivateKey(b, NULL, no_passphrase_cb, NULL);
  BIO_free(b);
  if (*out == NULL)
    return fail(TT_ECONFIG, err, errlen, "%s: no usable PEM private key", path);
  return 0;
}

int tt_pki_load_ca(const char *dir, X509 **cert, EVP_PKEY **key, char *err, size_t errlen) {
  char cpath[4096], kpath[4096];
  int rc;

  *cert = NULL;
  *key = NULL;
  if (dir == NULL)
    return fail(TT_EINVAL, err, errlen, "no CA directory");
  int n1 = snprintf(cpath, sizeof cpath, "%s/%s", dir, TT_PKI_CA_CERT_FILE);
  int n2 = snprintf(kpath, sizeof kpath, "%s/%s", dir, TT_PKI_CA_KEY_FILE);
  if (n1 < 0 || n2 < 0 || (size_t)n1 >= sizeof cpath || (size_t)n2 >= sizeof kpath)
    return fail(TT_EINVAL, err, errlen, "CA directory name too long");
  if ((rc = tt_pki_load_cert(cpath, cert, err, errlen)) < 0)
    return rc;
  if ((rc = tt_pki_load_key(kpath, key, err, errlen)) < 0)
    goto out;
  if (X509_check_ca(*cert) < 1) {
    rc = fail(TT_ECERT, err, errlen, "%s: not a CA certificate", cpath);
    goto out;
  }
  if (X509_check_private_key(*cert, *key) != 1) {
    rc = fail(TT_ECERT, err, errlen, "%s does not match %s", kpath, cpath);
    goto out;
  }
  return 0;
out:
  X509_free(*cert);
  EVP_PKEY_free(*key);
  *cert = NULL;
  *key = NULL;
  return rc;
}
