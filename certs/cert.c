/* Identities in certificates: role in the subject's OU, name in its CN, and the sha256
 * fingerprint that agents pin the CA by. */
#include "tt/cert.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "tt/hex.h"

static const struct {
  tt_role_t role;
  const char *name;
} roles[] = {
  {TT_ROLE_AGENT, "agent"},
  {TT_ROLE_TECHNICIAN, "technician"},
  {TT_ROLE_ADMIN, "admin"},
  {TT_ROLE_BROKER, "broker"},
  {TT_ROLE_GATEWAY, "gateway"},
};

const char *tt_role_name(tt_role_t r) {
  for (size_t i = 0; i < sizeof roles / sizeof roles[0]; i++)
    if (roles[i].role == r)
      return roles[i].name;
  return r == TT_ROLE_NONE ? "none" : "unknown";
}

int tt_role_parse(const char *s, tt_role_t *out) {
  *out = TT_ROLE_NONE;
  if (s == NULL)
    return TT_EINVAL;
  for (size_t i = 0; i < sizeof roles / sizeof roles[0]; i++) {
    if (strcmp(s, roles[i].name) == 0) {
      *out = roles[i].role;
      return 0;
    }
  }
  return TT_EINVAL;
}

/* Counted, so an ASN.1 string with an embedded NUL cannot pass as a shorter name. */
static int name_valid_n(const char *s, size_t len) {
  if (len == 0 || len > TT_NAME_MAX)
    return 0;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
             c == '.' || c == '_' || c == '@' || c == '-';
    if (!ok)
      return 0;
  }
  return 1;
}

int tt_name_valid(const char *s) {
  if (s == NULL)
    return 0;
  return name_valid_n(s, strnlen(s, TT_NAME_MAX + 1));
}

/* The one entry of nid in the subject, as UTF-8 (caller frees with OPENSSL_free).
 * Missing or repeated entries are refused: two OUs would leave the role ambiguous. */
static int subject_one(const X509_NAME *subj, int nid, char **out, int *outlen) {
  int idx = X509_NAME_get_index_by_NID(subj, nid, -1);
  if (idx < 0 || X509_NAME_get_index_by_NID(subj, nid, idx) >= 0)
    return TT_ECERT;
  const X509_NAME_ENTRY *e = X509_NAME_get_entry(subj, idx);
  const ASN1_STRING *data = e != NULL ? X509_NAME_ENTRY_get_data(e) : NULL;
  unsigned char *utf8 = NULL;
  int n = data != NULL ? ASN1_STRING_to_UTF8(&utf8, data) : -1;
  if (n < 0) {
    ERR_clear_error();
    return TT_ECERT;
  }
  *out = (char *)utf8;
  *outlen = n;
  return 0;
}

int tt_cert_identity(X509 *x, tt_identity_t *out) {
  char *ou = NULL, *cn = NULL;
  int oulen = 0, cnlen = 0, rc;

  memset(out, 0, sizeof *out);
  if (x == NULL)
    return TT_EINVAL;
  const X509_NAME *subj = X509_get_subject_name(x);
  if (subj == NULL)
    return TT_ECERT;
  if ((rc = subject_one(subj, NID_organizationalUnitName, &ou, &oulen)) < 0)
    goto out;
  if ((rc = subject_one(subj, NID_commonName, &cn, &cnlen)) < 0)
    goto out;

  rc = TT_ECERT;
  tt_role_t role;
  if (strlen(ou) != (size_t)oulen || tt_role_parse(ou, &role) < 0)
    goto out;
  if (!name_valid_n(cn, (size_t)cnlen))
    goto out;
  if ((rc = tt_cert_fingerprint(x, out->fingerprint, sizeof out->fingerprint)) < 0)
    goto out;
  out->role = role;
  memcpy(out->name, cn, (size_t)cnlen);
  out->name[cnlen] = '\0';
  rc = 0;
out:
  OPENSSL_free(ou);
  OPENSSL_free(cn);
  if (rc < 0)
    memset(out, 0, sizeof *out);
  return rc;
}

int tt_cert_fingerprint(X509 *x, char *out, size_t cap) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;

  if (cap > 0)
    out[0] = '\0';
  if (x == NULL || cap < TT_FINGERPRINT_LEN + 1)
    return TT_EINVAL;
  /* X509_digest hashes the DER encoding of the whole certificate. */
  if (X509_digest(x, EVP_sha256(), md, &n) != 1 || n != 32) {
    ERR_clear_error();
    return TT_ECERT;
  }
  memcpy(out, "sha256:", 7);
  tt_hex(out + 7, cap - 7, md, n);
  return 0;
}

int tt_cert_file_fingerprint(const char *path, char *out, size_t cap) {
  if (cap > 0)
    out[0] = '\0';
  if (path == NULL)
    return TT_EINVAL;
  FILE *f = fopen(path, "re");
  if (f == NULL)
    return -errno;
  X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
  fclose(f);
  if (x == NULL) {
    ERR_clear_error();
    return TT_ECERT;
  }
  int rc = tt_cert_fingerprint(x, out, cap);
  X509_free(x);
  return rc;
}
