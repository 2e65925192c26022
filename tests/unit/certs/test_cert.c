/* Unit tests for certs/: identities in certificates, fingerprints, and the PKI (CA, leaves,
 * CSR signing, key files). Everything is made at test time in a temporary directory. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "tt/cert.h"
#include "tt/pki.h"

typedef struct {
  char dir[PATH_MAX];
  X509 *ca;
  EVP_PKEY *ca_key;
  X509 *other_ca; /* an unrelated CA, to show trust does not leak between CAs */
  EVP_PKEY *other_key;
} fx_t;

static char err[512];

static int rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  return remove(path);
}

static int group_setup(void **state) {
  fx_t *fx = calloc(1, sizeof *fx);
  if (fx == NULL)
    return -1;
  const char *base = getenv("TT_TEST_TMP");
  if (base == NULL || base[0] == '\0')
    base = "/tmp";
  snprintf(fx->dir, sizeof fx->dir, "%s/test_cert.XXXXXX", base);
  if (mkdtemp(fx->dir) == NULL) {
    free(fx);
    return -1;
  }
  if (tt_pki_ca_new(0, &fx->ca, &fx->ca_key, err, sizeof err) < 0 ||
      tt_pki_ca_new(0, &fx->other_ca, &fx->other_key, err, sizeof err) < 0) {
    fprintf(stderr, "ca: %s\n", err);
    return -1;
  }
  *state = fx;
  return 0;
}

static int group_teardown(void **state) {
  fx_t *fx = *state;
  X509_free(fx->ca);
  X509_free(fx->other_ca);
  EVP_PKEY_free(fx->ca_key);
  EVP_PKEY_free(fx->other_key);
  nftw(fx->dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
  free(fx);
  return 0;
}

static void path_in(const fx_t *fx, const char *name, char *out, size_t cap) {
  int n = snprintf(out, cap, "%s/%s", fx->dir, name);
  assert_true(n > 0 && (size_t)n < cap);
}

static void issue(fx_t *fx, tt_role_t role, const char *name, X509 **x, EVP_PKEY **k) {
  tt_pki_leaf_t leaf = {.role = role, .name = name};
  static const char *const sans[] = {"127.0.0.1", "::1", "localhost"};
  if (role == TT_ROLE_BROKER) {
    leaf.sans = sans;
    leaf.nsans = 3;
  }
  int rc = tt_pki_issue(fx->ca, fx->ca_key, &leaf, x, k, err, sizeof err);
  if (rc != 0)
    fail_msg("issue %s: %s", name, err);
}

/* X509_verify_cert of leaf against ca as the only trust anchor: 1 verified, 0 not. */
static int verifies(X509 *ca, X509 *leaf) {
  X509_STORE *store = X509_STORE_new();
  X509_STORE_CTX *ctx = X509_STORE_CTX_new();
  assert_non_null(store);
  assert_non_null(ctx);
  assert_int_equal(X509_STORE_add_cert(store, ca), 1);
  assert_int_equal(X509_STORE_CTX_init(ctx, store, leaf, NULL), 1);
  int ok = X509_verify_cert(ctx);
  X509_STORE_CTX_free(ctx);
  X509_STORE_free(store);
  ERR_clear_error();
  return ok == 1;
}

/* A certificate with an arbitrary subject, signed by the fixture CA: what a forged or
 * foreign certificate would look like to tt_cert_identity. Entries are field/value pairs;
 * a value's length is taken from vlen[] when non-zero (to embed a NUL). */
static X509 *craft(fx_t *fx, const char *const *fields, const char *const *values,
                   const int *vlen, size_t n) {
  EVP_PKEY *k = NULL;
  assert_int_equal(tt_pki_key_new(&k, err, sizeof err), 0);
  X509 *x = X509_new();
  assert_non_null(x);
  X509_NAME *subj = X509_get_subject_name(x);
  for (size_t i = 0; i < n; i++)
    /* A plain UTF8String type skips OpenSSL's own length table, as a forger would. */
    assert_int_equal(X509_NAME_add_entry_by_txt(subj, fields[i], V_ASN1_UTF8STRING,
                                                (const unsigned char *)values[i],
                                                vlen != NULL && vlen[i] ? vlen[i] : -1, -1, 0),
                     1);
  assert_int_equal(X509_set_version(x, X509_VERSION_3), 1);
  assert_int_equal(ASN1_INTEGER_set(X509_get_serialNumber(x), 42), 1);
  assert_int_equal(X509_set_issuer_name(x, X509_get_subject_name(fx->ca)), 1);
  assert_non_null(X509_gmtime_adj(X509_getm_notBefore(x), 0));
  assert_non_null(X509_gmtime_adj(X509_getm_notAfter(x), 3600));
  assert_int_equal(X509_set_pubkey(x, k), 1);
  assert_true(X509_sign(x, fx->ca_key, EVP_sha256()) > 0);
  EVP_PKEY_free(k);
  return x;
}

static long long seconds_left(const X509 *x) {
  int days = 0, secs = 0;
  assert_int_equal(ASN1_TIME_diff(&days, &secs, NULL, X509_get0_notAfter(x)), 1);
  return (long long)days * 86400 + secs;
}

static void test_role_names(void **state) {
  static const tt_role_t all[] = {TT_ROLE_AGENT, TT_ROLE_TECHNICIAN, TT_ROLE_ADMIN,
                                  TT_ROLE_BROKER};
  static const char *const names[] = {"agent", "technician", "admin", "broker"};
  tt_role_t r;
  for (size_t i = 0; i < 4; i++) {
    assert_string_equal(tt_role_name(all[i]), names[i]);
    assert_int_equal(tt_role_parse(names[i], &r), 0);
    assert_int_equal(r, all[i]);
  }
  static const char *const bad[] = {"", "ca", "none", "Agent", "agent ", "admins"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    r = TT_ROLE_ADMIN;
    assert_int_equal(tt_role_parse(bad[i], &r), TT_EINVAL);
    assert_int_equal(r, TT_ROLE_NONE);
  }
  assert_int_equal(tt_role_parse(NULL, &r), TT_EINVAL);
  assert_string_equal(tt_role_name(TT_ROLE_NONE), "none");
}

static void test_identity_every_role(void **state) {
  fx_t *fx = *state;
  static const tt_role_t all[] = {TT_ROLE_AGENT, TT_ROLE_TECHNICIAN, TT_ROLE_ADMIN,
                                  TT_ROLE_BROKER};
  static const char *const names[] = {"host-17.corp", "alice@example.com", "root_admin",
                                      "broker"};
  for (size_t i = 0; i < 4; i++) {
    X509 *x;
    EVP_PKEY *k;
    tt_identity_t id;
    char fp[TT_FINGERPRINT_LEN + 1];
    issue(fx, all[i], names[i], &x, &k);
    assert_int_equal(tt_cert_identity(x, &id), 0);
    assert_int_equal(id.role, all[i]);
    assert_string_equal(id.name, names[i]);
    assert_int_equal(tt_cert_fingerprint(x, fp, sizeof fp), 0);
    assert_string_equal(id.fingerprint, fp);
    assert_true(verifies(fx->ca, x));
    X509_free(x);
    EVP_PKEY_free(k);
  }
  tt_identity_t id;
  assert_int_equal(tt_cert_identity(NULL, &id), TT_EINVAL);
}

static void test_name_rules(void **state) {
  fx_t *fx = *state;
  char n64[65], n65[66];
  memset(n64, 'a', 64);
  n64[64] = '\0';
  memset(n65, 'b', 65);
  n65[65] = '\0';

  assert_true(tt_name_valid("a"));
  assert_true(tt_name_valid(n64));
  assert_true(tt_name_valid("A.b_c-d@E9"));
  const char *const bad[] = {"", n65, "a/b", "x y", "caf\xc3\xa9", "\xff", "a,b", "a=b",
                             "tab\t", "new\nline", "..\\x"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    X509 *x = (X509 *)1;
    EVP_PKEY *k = (EVP_PKEY *)1;
    tt_pki_leaf_t leaf = {.role = TT_ROLE_TECHNICIAN, .name = bad[i]};
    assert_false(tt_name_valid(bad[i]));
    assert_int_equal(tt_pki_issue(fx->ca, fx->ca_key, &leaf, &x, &k, err, sizeof err),
                     TT_EINVAL);
    assert_null(x);
    assert_null(k);
    assert_non_null(strstr(err, "name"));
  }
  assert_false(tt_name_valid(NULL));

  /* 64 is the most a name may be, end to end. */
  X509 *x;
  EVP_PKEY *k;
  tt_identity_t id;
  issue(fx, TT_ROLE_AGENT, n64, &x, &k);
  assert_int_equal(tt_cert_identity(x, &id), 0);
  assert_string_equal(id.name, n64);
  X509_free(x);
  EVP_PKEY_free(k);
}

static void test_file_modes(void **state) {
  fx_t *fx = *state;
  char kp[PATH_MAX], cp[PATH_MAX];
  struct stat st;
  X509 *x;
  EVP_PKEY *k;
  issue(fx, TT_ROLE_TECHNICIAN, "modes", &x, &k);
  path_in(fx, "modes.key", kp, sizeof kp);
  path_in(fx, "modes.pem", cp, sizeof cp);

  /* Modes hold whatever the umask says. */
  mode_t old = umask(0);
  int rk = tt_pki_write_key(kp, k, err, sizeof err);
  umask(0777);
  int rc = tt_pki_write_cert(cp, x, err, sizeof err);
  umask(old);
  assert_int_equal(rk, 0);
  assert_int_equal(rc, 0);
  assert_int_equal(stat(kp, &st), 0);
  assert_int_equal(st.st_mode & 07777, 0600);
  assert_int_equal(stat(cp, &st), 0);
  assert_int_equal(st.st_mode & 07777, 0644);

  /* And they read back as what was written. */
  X509 *x2;
  EVP_PKEY *k2;
  assert_int_equal(tt_pki_load_cert(cp, &x2, err, sizeof err), 0);
  assert_int_equal(tt_pki_load_key(kp, &k2, err, sizeof err), 0);
  assert_int_equal(X509_cmp(x, x2), 0);
  assert_int_equal(EVP_PKEY_eq(k, k2), 1);
  X509_free(x2);
  EVP_PKEY_free(k2);

  /* A key others can read is refused on load. */
  assert_int_equal(chmod(kp, 0640), 0);
  assert_int_equal(tt_pki_load_key(kp, &k2, err, sizeof err), TT_EDENIED);
  assert_null(k2);
  assert_non_null(strstr(err, "chmod"));

  path_in(fx, "nonexistent.pem", cp, sizeof cp);
  assert_int_equal(tt_pki_load_cert(cp, &x2, err, sizeof err), -ENOENT);
  assert_non_null(strstr(err, "nonexistent.pem"));
  /* A key file is not a certificate. */
  assert_int_equal(chmod(kp, 0600), 0);
  assert_int_equal(tt_pki_load_cert(kp, &x2, err, sizeof err), TT_ECERT);
  assert_null(x2);
  X509_free(x);
  EVP_PKEY_free(k);
}

static void test_no_overwrite(void **state) {
  fx_t *fx = *state;
  char kp[PATH_MAX], cp[PATH_MAX], lp[PATH_MAX];
  X509 *x1, *x2;
  EVP_PKEY *k1, *k2;
  issue(fx, TT_ROLE_ADMIN, "once", &x1, &k1);
  issue(fx, TT_ROLE_ADMIN, "twice", &x2, &k2);
  path_in(fx, "once.key", kp, sizeof kp);
  path_in(fx, "once.pem", cp, sizeof cp);
  assert_int_equal(tt_pki_write_key(kp, k1, err, sizeof err), 0);
  assert_int_equal(tt_pki_write_cert(cp, x1, err, sizeof err), 0);

  assert_int_equal(tt_pki_write_key(kp, k2, err, sizeof err), -EEXIST);
  assert_non_null(strstr(err, "refusing to overwrite"));
  assert_non_null(strstr(err, "once.key"));
  assert_int_equal(tt_pki_write_cert(cp, x2, err, sizeof err), -EEXIST);
  assert_non_null(strstr(err, "refusing to overwrite"));

  /* The originals are untouched. */
  X509 *xr;
  EVP_PKEY *kr;
  assert_int_equal(tt_pki_load_cert(cp, &xr, err, sizeof err), 0);
  assert_int_equal(tt_pki_load_key(kp, &kr, err, sizeof err), 0);
  assert_int_equal(X509_cmp(x1, xr), 0);
  assert_int_equal(EVP_PKEY_eq(k1, kr), 1);
  X509_free(xr);
  EVP_PKEY_free(kr);

  /* A planted symlink (even a dangling one) is not followed. */
  path_in(fx, "planted.key", lp, sizeof lp);
  path_in(fx, "elsewhere", kp, sizeof kp);
  assert_int_equal(symlink(kp, lp), 0);
  assert_int_equal(tt_pki_write_key(lp, k2, err, sizeof err), -EEXIST);
  assert_int_equal(access(kp, F_OK), -1);

  /* A missing directory is a plain errno. */
  path_in(fx, "no/such/dir.key", kp, sizeof kp);
  assert_int_equal(tt_pki_write_key(kp, k2, err, sizeof err), -ENOENT);
  X509_free(x1);
  X509_free(x2);
  EVP_PKEY_free(k1);
  EVP_PKEY_free(k2);
}

static void test_chain_and_extensions(void **state) {
  fx_t *fx = *state;
  X509 *tech, *br;
  EVP_PKEY *k1, *k2;
  char subj[256];

  /* The CA. */
  X509_NAME_oneline(X509_get_subject_name(fx->ca), subj, sizeof subj);
  assert_string_equal(subj, "/O=Tether/OU=ca/CN=Tether CA");
  assert_int_equal(X509_check_ca(fx->ca), 1);
  assert_int_equal(X509_get_pathlen(fx->ca), 0);
  assert_int_equal(X509_get_key_usage(fx->ca), KU_KEY_CERT_SIGN | KU_CRL_SIGN);
  assert_non_null(X509_get0_subject_key_id(fx->ca));
  int idx = X509_get_ext_by_NID(fx->ca, NID_basic_constraints, -1);
  assert_true(idx >= 0);
  assert_int_equal(X509_EXTENSION_get_critical(X509_get_ext(fx->ca, idx)), 1);
  long long left = seconds_left(fx->ca);
  assert_true(left > 3650LL * 86400 && left <= TT_PKI_CA_SECONDS);
  assert_true(verifies(fx->ca, fx->ca));

  issue(fx, TT_ROLE_TECHNICIAN, "bob", &tech, &k1);
  issue(fx, TT_ROLE_BROKER, "broker", &br, &k2);
  /* Trust goes only to the CA that signed. */
  assert_true(verifies(fx->ca, tech));
  assert_true(verifies(fx->ca, br));
  assert_false(verifies(fx->other_ca, tech));
  assert_false(verifies(fx->other_ca, br));
  /* A leaf is not a CA, and cannot act as one. */
  assert_int_equal(X509_check_ca(tech), 0);
  assert_false(verifies(tech, br));

  assert_int_equal(X509_get_key_usage(tech), KU_DIGITAL_SIGNATURE);
  assert_int_equal(X509_get_extended_key_usage(tech), XKU_SSL_CLIENT);
  assert_int_equal(X509_get_extended_key_usage(br), XKU_SSL_SERVER);
  assert_int_equal(X509_check_purpose(tech, X509_PURPOSE_SSL_CLIENT, 0), 1);
  assert_int_equal(X509_check_purpose(tech, X509_PURPOSE_SSL_SERVER, 0), 0);
  assert_int_equal(X509_check_purpose(br, X509_PURPOSE_SSL_SERVER, 0), 1);
  assert_non_null(X509_get0_subject_key_id(tech));
  const ASN1_OCTET_STRING *aki = X509_get0_authority_key_id(tech);
  assert_non_null(aki);
  assert_int_equal(ASN1_OCTET_STRING_cmp(aki, X509_get0_subject_key_id(fx->ca)), 0);
  X509_NAME_oneline(X509_get_subject_name(tech), subj, sizeof subj);
  assert_string_equal(subj, "/O=Tether/OU=technician/CN=bob");

  /* Broker names: IP literals as IP, others as DNS. */
  assert_int_equal(X509_check_ip_asc(br, "127.0.0.1", 0), 1);
  assert_int_equal(X509_check_ip_asc(br, "::1", 0), 1);
  assert_int_equal(X509_check_host(br, "localhost", 0, 0, NULL), 1);
  assert_int_equal(X509_check_ip_asc(br, "127.0.0.2", 0), 0);
  assert_int_equal(X509_check_host(br, "127.0.0.1", 0, 0, NULL), 0); /* not a DNS entry */
  assert_int_equal(X509_get_ext_by_NID(tech, NID_subject_alt_name, -1), -1);

  /* 128-bit random serials. */
  const ASN1_INTEGER *s1 = X509_get0_serialNumber(tech), *s2 = X509_get0_serialNumber(br);
  assert_int_not_equal(ASN1_INTEGER_cmp(s1, s2), 0);
  BIGNUM *bn = ASN1_INTEGER_to_BN(s1, NULL);
  assert_non_null(bn);
  assert_false(BN_is_negative(bn));
  assert_true(BN_num_bits(bn) > 64 && BN_num_bits(bn) <= 128);
  BN_free(bn);

  X509_free(tech);
  X509_free(br);
  EVP_PKEY_free(k1);
  EVP_PKEY_free(k2);
}

static void test_fingerprint(void **state) {
  fx_t *fx = *state;
  char fp1[TT_FINGERPRINT_LEN + 1], fp2[TT_FINGERPRINT_LEN + 1], fp3[TT_FINGERPRINT_LEN + 1];
  char path[PATH_MAX];

  assert_int_equal(tt_cert_fingerprint(fx->ca, fp1, sizeof fp1), 0);
  assert_int_equal(strlen(fp1), TT_FINGERPRINT_LEN);
  assert_memory_equal(fp1, "sha256:", 7);
  for (size_t i = 7; i < TT_FINGERPRINT_LEN; i++)
    assert_non_null(strchr("0123456789abcdef", fp1[i]));

  /* Stable, and equal to sha256 of the DER computed independently. */
  assert_int_equal(tt_cert_fingerprint(fx->ca, fp2, sizeof fp2), 0);
  assert_string_equal(fp1, fp2);
  unsigned char *der = NULL, md[32];
  int len = i2d_X509(fx->ca, &der);
  assert_true(len > 0);
  unsigned int mdlen = 0;
  assert_int_equal(EVP_Digest(der, (size_t)len, md, &mdlen, EVP_sha256(), NULL), 1);
  OPENSSL_free(der);
  for (unsigned int i = 0; i < mdlen; i++)
    snprintf(fp3 + 2 * i, 3, "%02x", md[i]);
  assert_string_equal(fp1 + 7, fp3);

  /* The same through a PEM file; a different CA differs. */
  path_in(fx, "fp-ca.pem", path, sizeof path);
  assert_int_equal(tt_pki_write_cert(path, fx->ca, err, sizeof err), 0);
  assert_int_equal(tt_cert_file_fingerprint(path, fp2, sizeof fp2), 0);
  assert_string_equal(fp1, fp2);
  assert_int_equal(tt_cert_fingerprint(fx->other_ca, fp2, sizeof fp2), 0);
  assert_string_not_equal(fp1, fp2);

  /* Too small a buffer, missing or non-PEM files. */
  assert_int_equal(tt_cert_fingerprint(fx->ca, fp2, TT_FINGERPRINT_LEN), TT_EINVAL);
  assert_string_equal(fp2, "");
  path_in(fx, "missing.pem", path, sizeof path);
  assert_int_equal(tt_cert_file_fingerprint(path, fp2, sizeof fp2), -ENOENT);
  path_in(fx, "junk.pem", path, sizeof path);
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n", f);
  fclose(f);
  assert_int_equal(tt_cert_file_fingerprint(path, fp2, sizeof fp2), TT_ECERT);
  assert_int_equal(ERR_peek_error(), 0);
}

static void test_csr_subject_ignored(void **state) {
  fx_t *fx = *state;
  EVP_PKEY *k;
  X509_REQ *req;
  X509 *x;
  tt_identity_t id;
  assert_int_equal(tt_pki_key_new(&k, err, sizeof err), 0);

  /* A greedy CSR: asks to be an admin called root, and a CA. */
  req = X509_REQ_new();
  assert_non_null(req);
  X509_NAME *n = X509_REQ_get_subject_name(req);
  assert_int_equal(X509_NAME_add_entry_by_txt(n, "OU", MBSTRING_ASC,
                                              (const unsigned char *)"admin", -1, -1, 0), 1);
  assert_int_equal(X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC,
                                              (const unsigned char *)"root", -1, -1, 0), 1);
  STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
  X509V3_CTX v3;
  X509V3_set_ctx(&v3, NULL, NULL, req, NULL, 0);
  X509_EXTENSION *bc = X509V3_EXT_nconf_nid(NULL, &v3, NID_basic_constraints,
                                            "critical,CA:TRUE");
  assert_non_null(bc);
  assert_true(sk_X509_EXTENSION_push(exts, bc) > 0);
  assert_int_equal(X509_REQ_add_extensions(req, exts), 1);
  sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
  assert_int_equal(X509_REQ_set_pubkey(req, k), 1);
  assert_true(X509_REQ_sign(req, k, EVP_sha256()) > 0);

  tt_pki_leaf_t leaf = {.role = TT_ROLE_AGENT, .name = "dev-42"};
  assert_int_equal(tt_pki_sign_csr(fx->ca, fx->ca_key, req, &leaf, &x, err, sizeof err), 0);
  assert_int_equal(tt_cert_identity(x, &id), 0);
  assert_int_equal(id.role, TT_ROLE_AGENT);
  assert_string_equal(id.name, "dev-42");
  assert_int_equal(X509_check_ca(x), 0);
  assert_int_equal(EVP_PKEY_eq(X509_get0_pubkey(x), k), 1);
  assert_true(verifies(fx->ca, x));
  long long left = seconds_left(x);
  assert_true(left > TT_PKI_AGENT_SECONDS - 60 && left <= TT_PKI_AGENT_SECONDS);
  X509_free(x);
  X509_REQ_free(req);

  /* Our own CSR builder, through DER as it would cross the wire. */
  assert_int_equal(tt_pki_csr_new(k, "laptop-7", &req, err, sizeof err), 0);
  unsigned char *der = NULL;
  int len = i2d_X509_REQ(req, &der);
  assert_true(len > 0);
  X509_REQ_free(req);
  assert_int_equal(tt_pki_csr_from_der(der, (size_t)len, &req, err, sizeof err), 0);
  assert_int_equal(tt_pki_csr_check(req, err, sizeof err), 0);
  leaf.name = "device-1";
  assert_int_equal(tt_pki_sign_csr(fx->ca, fx->ca_key, req, &leaf, &x, err, sizeof err), 0);
  assert_int_equal(tt_cert_identity(x, &id), 0);
  assert_string_equal(id.name, "device-1");
  X509_free(x);
  X509_REQ_free(req);

  /* A flipped bit in the signature. */
  der[len - 1] ^= 0x01;
  assert_int_equal(tt_pki_csr_from_der(der, (size_t)len, &req, err, sizeof err), 0);
  /* The check alone (what the broker runs before a token is spent) says the same. */
  assert_int_equal(tt_pki_csr_check(req, err, sizeof err), TT_ECERT);
  assert_non_null(strstr(err, "signature"));
  assert_int_equal(tt_pki_csr_check(NULL, err, sizeof err), TT_EINVAL);
  x = (X509 *)1;
  assert_int_equal(tt_pki_sign_csr(fx->ca, fx->ca_key, req, &leaf, &x, err, sizeof err),
                   TT_ECERT);
  assert_null(x);
  assert_non_null(strstr(err, "signature"));
  assert_int_equal(ERR_peek_error(), 0);
  X509_REQ_free(req);
  der[len - 1] ^= 0x01;

  /* Bad shapes of DER. */
  unsigned char big[TT_PKI_CSR_MAX + 1];
  memset(big, 0x30, sizeof big);
  assert_int_equal(tt_pki_csr_from_der(big, sizeof big, &req, err, sizeof err), TT_ETOOBIG);
  assert_int_equal(tt_pki_csr_from_der(big, 100, &req, err, sizeof err), TT_ECERT);
  assert_null(req);
  assert_int_equal(tt_pki_csr_from_der(der, (size_t)len - 1, &req, err, sizeof err), TT_ECERT);
  unsigned char *padded = malloc((size_t)len + 1);
  assert_non_null(padded);
  memcpy(padded, der, (size_t)len);
  padded[len] = 0;
  assert_int_equal(tt_pki_csr_from_der(padded, (size_t)len + 1, &req, err, sizeof err),
                   TT_ECERT);
  assert_non_null(strstr(err, "trailing"));
  free(padded);
  OPENSSL_free(der);
  EVP_PKEY_free(k);

  /* Only P-256 keys. */
  EVP_PKEY *p384 = EVP_EC_gen("P-384");
  assert_non_null(p384);
  assert_int_equal(tt_pki_csr_new(p384, "big-curve", &req, err, sizeof err), 0);
  assert_int_equal(tt_pki_csr_check(req, err, sizeof err), TT_ECERT);
  assert_int_equal(tt_pki_sign_csr(fx->ca, fx->ca_key, req, &leaf, &x, err, sizeof err),
                   TT_ECERT);
  assert_non_null(strstr(err, "P-256"));
  X509_REQ_free(req);
  EVP_PKEY_free(p384);
}

static void test_identity_refused(void **state) {
  fx_t *fx = *state;
  tt_identity_t id;
  char n65[66];
  memset(n65, 'n', 65);
  n65[65] = '\0';
  static const char *const f_ca[] = {"O", "OU", "CN"};
  const struct {
    const char *const *fields;
    const char *values[3];
    int vlen[3];
    size_t n;
  } cases[] = {
    {f_ca, {"Tether", "ca", "x"}, {0}, 3},           /* OU not a role */
    {f_ca, {"Tether", "root", "x"}, {0}, 3},
    {f_ca, {"Tether", "Admin", "x"}, {0}, 3},        /* roles are exact */
    {f_ca, {"Tether", "", "x"}, {0}, 3},
    {f_ca, {"Tether", "admin", "x y"}, {0}, 3},      /* CN not a name */
    {f_ca, {"Tether", "admin", n65}, {0}, 3},
    {f_ca, {"Tether", "admin", "a/b"}, {0}, 3},
    {f_ca, {"Tether", "admin", "caf\xc3\xa9"}, {0}, 3},
    {f_ca, {"Tether", "admin", "ok\0evil"}, {0, 0, 7}, 3}, /* embedded NUL */
    {f_ca, {"Tether", "admin\0x", "x"}, {0, 7, 0}, 3},
    {(const char *const[]){"O", "CN"}, {"Tether", "alice"}, {0}, 2}, /* no OU */
    {(const char *const[]){"O", "OU"}, {"Tether", "admin"}, {0}, 2}, /* no CN */
    {(const char *const[]){"OU", "OU", "CN"}, {"agent", "admin", "x"}, {0}, 3},
    {(const char *const[]){"OU", "CN", "CN"}, {"admin", "x", "y"}, {0}, 3},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    X509 *x = craft(fx, cases[i].fields, cases[i].values, cases[i].vlen, cases[i].n);
    id.role = TT_ROLE_ADMIN;
    if (tt_cert_identity(x, &id) != TT_ECERT)
      fail_msg("case %zu accepted", i);
    assert_int_equal(id.role, TT_ROLE_NONE);
    assert_string_equal(id.name, "");
    X509_free(x);
  }
  /* The CA is not an identity either. */
  assert_int_equal(tt_cert_identity(fx->ca, &id), TT_ECERT);

  /* Control: the crafting itself makes acceptable certificates. */
  X509 *ok = craft(fx, f_ca, (const char *const[]){"Tether", "admin", "carol"}, NULL, 3);
  assert_int_equal(tt_cert_identity(ok, &id), 0);
  assert_int_equal(id.role, TT_ROLE_ADMIN);
  X509_free(ok);
}

static void test_validity(void **state) {
  fx_t *fx = *state;
  static const struct {
    tt_role_t role;
    long long expect;
  } defaults[] = {
    {TT_ROLE_AGENT, 30LL * 86400},
    {TT_ROLE_TECHNICIAN, 365LL * 86400},
    {TT_ROLE_ADMIN, 365LL * 86400},
    {TT_ROLE_BROKER, 730LL * 86400},
  };
  X509 *x;
  EVP_PKEY *k;
  for (size_t i = 0; i < 4; i++) {
    assert_int_equal(tt_pki_default_seconds(defaults[i].role), defaults[i].expect);
    issue(fx, defaults[i].role, "v", &x, &k);
    long long left = seconds_left(x);
    assert_true(left > defaults[i].expect - 60 && left <= defaults[i].expect);
    /* notBefore is a little in the past, for clocks that lag. */
    int days, secs;
    assert_int_equal(ASN1_TIME_diff(&days, &secs, X509_get0_notBefore(x), NULL), 1);
    assert_true(days == 0 && secs >= TT_PKI_BACKDATE_SECONDS - 5);
    X509_free(x);
    EVP_PKEY_free(k);
  }
  tt_pki_leaf_t leaf = {.role = TT_ROLE_AGENT, .name = "short", .seconds = 90};
  assert_int_equal(tt_pki_issue(fx->ca, fx->ca_key, &leaf, &x, &k, err, sizeof err), 0);
  long long left = seconds_left(x);
  assert_true(left > 30 && left <= 90);
  X509_free(x);
  EVP_PKEY_free(k);

  leaf.seconds = -1;
  assert_int_equal(tt_pki_issue(fx->ca, fx->ca_key, &leaf, &x, &k, err, sizeof err), TT_EINVAL);
  leaf.seconds = TT_PKI_MAX_SECONDS + 1;
  assert_int_equal(tt_pki_issue(fx->ca, fx->ca_key, &leaf, &x, &k, err, sizeof err), TT_EINVAL);

  /* A leaf never outlives its CA. */
  X509 *ca;
  EVP_PKEY *cak;
  assert_int_equal(tt_pki_ca_new(3600, &ca, &cak, err, sizeof err), 0);
  leaf.seconds = 0;
  assert_int_equal(tt_pki_issue(ca, cak, &leaf, &x, &k, err, sizeof err), 0);
  assert_int_equal(ASN1_TIME_compare(X509_get0_notAfter(x), X509_get0_notAfter(ca)), 0);
  /* And a CA key must match its certificate. */
  X509 *x2 = (X509 *)1;
  EVP_PKEY *k2 = (EVP_PKEY *)1;
  assert_int_equal(tt_pki_issue(ca, fx->ca_key, &leaf, &x2, &k2, err, sizeof err), TT_ECERT);
  assert_null(x2);
  assert_null(k2);
  assert_int_equal(ERR_peek_error(), 0);
  X509_free(x);
  EVP_PKEY_free(k);
  X509_free(ca);
  EVP_PKEY_free(cak);
}

static void test_san_rules(void **state) {
  fx_t *fx = *state;
  X509 *x;
  EVP_PKEY *k;
  assert_true(tt_pki_san_valid("10.0.0.1"));
  assert_true(tt_pki_san_valid("fe80::1"));
  assert_true(tt_pki_san_valid("broker.corp.example"));
  const char *const bad[] = {"", "a b", "a..b", ".a", "a.", "x,IP:1.2.3.4", "*.corp",
                             "caf\xc3\xa9", "a/b"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    assert_false(tt_pki_san_valid(bad[i]));
    tt_pki_leaf_t leaf = {.role = TT_ROLE_BROKER, .name = "b", .sans = &bad[i], .nsans = 1};
    assert_int_equal(tt_pki_issue(fx->ca, fx->ca_key, &leaf, &x, &k, err, sizeof err),
                     TT_EINVAL);
  }
  /* Names are the broker's alone. */
  const char *one = "localhost";
  tt_pki_leaf_t leaf = {.role = TT_ROLE_AGENT, .name = "a", .sans = &one, .nsans = 1};
  assert_int_equal(tt_pki_issue(fx->ca, fx->ca_key, &leaf, &x, &k, err, sizeof err), TT_EINVAL);
  leaf.role = TT_ROLE_NONE;
  leaf.nsans = 0;
  assert_int_equal(tt_pki_issue(fx->ca, fx->ca_key, &leaf, &x, &k, err, sizeof err), TT_EINVAL);
  assert_non_null(strstr(err, "role"));

  leaf = (tt_pki_leaf_t){.role = TT_ROLE_BROKER, .name = "b2",
                         .sans = (const char *const[]){"10.1.2.3", "broker.corp"}, .nsans = 2};
  assert_int_equal(tt_pki_issue(fx->ca, fx->ca_key, &leaf, &x, &k, err, sizeof err), 0);
  assert_int_equal(X509_check_ip_asc(x, "10.1.2.3", 0), 1);
  assert_int_equal(X509_check_host(x, "broker.corp", 0, 0, NULL), 1);
  assert_int_equal(X509_check_host(x, "localhost", 0, 0, NULL), 0);
  X509_free(x);
  EVP_PKEY_free(k);
}

static void test_load_ca(void **state) {
  fx_t *fx = *state;
  char sub[PATH_MAX], p[PATH_MAX];
  X509 *ca;
  EVP_PKEY *cak;
  path_in(fx, "pki", sub, sizeof sub);
  assert_int_equal(mkdir(sub, 0700), 0);
  assert_int_equal(tt_pki_load_ca(sub, &ca, &cak, err, sizeof err), -ENOENT);

  path_in(fx, "pki/" TT_PKI_CA_CERT_FILE, p, sizeof p);
  assert_int_equal(tt_pki_write_cert(p, fx->ca, err, sizeof err), 0);
  path_in(fx, "pki/" TT_PKI_CA_KEY_FILE, p, sizeof p);
  assert_int_equal(tt_pki_write_key(p, fx->other_key, err, sizeof err), 0);
  assert_int_equal(tt_pki_load_ca(sub, &ca, &cak, err, sizeof err), TT_ECERT);
  assert_null(ca);
  assert_null(cak);
  assert_non_null(strstr(err, "does not match"));

  assert_int_equal(unlink(p), 0);
  assert_int_equal(tt_pki_write_key(p, fx->ca_key, err, sizeof err), 0);
  assert_int_equal(tt_pki_load_ca(sub, &ca, &cak, err, sizeof err), 0);
  assert_int_equal(X509_cmp(ca, fx->ca), 0);
  X509 *x;
  EVP_PKEY *k;
  tt_pki_leaf_t leaf = {.role = TT_ROLE_TECHNICIAN, .name = "from-disk"};
  assert_int_equal(tt_pki_issue(ca, cak, &leaf, &x, &k, err, sizeof err), 0);
  assert_true(verifies(fx->ca, x));
  X509_free(x);
  EVP_PKEY_free(k);
  X509_free(ca);
  EVP_PKEY_free(cak);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_role_names),
    cmocka_unit_test(test_identity_every_role),
    cmocka_unit_test(test_name_rules),
    cmocka_unit_test(test_file_modes),
    cmocka_unit_test(test_no_overwrite),
    cmocka_unit_test(test_chain_and_extensions),
    cmocka_unit_test(test_fingerprint),
    cmocka_unit_test(test_csr_subject_ignored),
    cmocka_unit_test(test_identity_refused),
    cmocka_unit_test(test_validity),
    cmocka_unit_test(test_san_rules),
    cmocka_unit_test(test_load_ca),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
