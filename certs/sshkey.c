/* SSH public key lines (tt/sshkey.h): "TYPE BASE64 [COMMENT]", the base64 a blob of SSH
 * wire strings (RFC 4253 6.6, RFC 5656 3.1, RFC 8709 4) that must name the same type and
 * hold exactly what that type has. */
#include "tt/sshkey.h"
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <openssl/evp.h>

TT_PRINTF(4, 5) static int refuse(int rc, char *why, size_t cap, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  if (why && cap) vsnprintf(why, cap, fmt, ap);
  va_end(ap);
  return rc;
}

/* One SSH "string": a 32-bit big-endian length and that many bytes. */
typedef struct {
  const uint8_t *p;
  size_t n;
} rd_t;

static bool take(rd_t *r, const uint8_t **v, size_t *len) {
  if (r->n < 4) return false;
  uint32_t l = (uint32_t)r->p[0] << 24 | (uint32_t)r->p[1] << 16 | (uint32_t)r->p[2] << 8 | r->p[3];
  if (l > r->n - 4) return false;
  *v = r->p + 4;
  *len = l;
  r->p += 4 + l;
  r->n -= 4 + l;
  return true;
}

static bool take_is(rd_t *r, const char *want) {
  const uint8_t *v;
  size_t len;
  return take(r, &v, &len) && len == strlen(want) && memcmp(v, want, len) == 0;
}

/* An mpint's bits (positive: a leading 0x00 only when the top bit is set). 0 if malformed. */
static unsigned mpint_bits(const uint8_t *v, size_t len) {
  if (len == 0 || (v[0] & 0x80)) return 0;
  if (v[0] == 0) {
    if (len < 2 || !(v[1] & 0x80)) return 0; /* not minimal */
    v++, len--;
  }
  unsigned bits = (unsigned)len * 8u;
  for (uint8_t top = v[0]; !(top & 0x80); top <<= 1) bits--;
  return bits;
}

int tt_sshkey_fingerprint(const uint8_t *blob, size_t len, char *out, size_t cap) {
  uint8_t md[32];
  unsigned char b64[48];
  if (cap <= TT_SSH_FP_LEN) return TT_ETOOBIG;
  if (EVP_Digest(blob, len, md, NULL, EVP_sha256(), NULL) != 1) return TT_ETLS;
  int n = EVP_EncodeBlock(b64, md, sizeof(md)); /* 44 with one '=' */
  while (n > 0 && b64[n - 1] == '=') n--;
  snprintf(out, cap, "SHA256:%.*s", n, (const char *)b64);
  return 0;
}

/* The blob's own checks: the type inside names the line's, and holds that type's fields. */
static int check_blob(const uint8_t *blob, size_t len, tt_sshkey_t *k, char *why, size_t cap) {
  rd_t r = {blob, len};
  const uint8_t *v, *w;
  size_t vl, wl;
  if (!take_is(&r, k->type)) return refuse(TT_EINVAL, why, cap, "the key's data does not say it is %s", k->type);
  if (strcmp(k->type, "ssh-ed25519") == 0) {
    if (!take(&r, &v, &vl) || vl != 32) return refuse(TT_EINVAL, why, cap, "not an Ed25519 public key");
    k->bits = 256;
  } else if (strncmp(k->type, "ecdsa-sha2-", 11) == 0) {
    static const struct {
      const char *curve;
      size_t point;
      unsigned bits;
    } curves[] = {{"nistp256", 65, 256}, {"nistp384", 97, 384}, {"nistp521", 133, 521}};
    size_t i = 0;
    while (i < 3 && strcmp(k->type + 11, curves[i].curve)) i++;
    if (i == 3) return refuse(TT_EINVAL, why, cap, "ECDSA on %s is not taken (P-256, P-384, P-521 are)", k->type + 11);
    if (!take_is(&r, curves[i].curve) || !take(&r, &v, &vl) || vl != curves[i].point || v[0] != 0x04)
      return refuse(TT_EINVAL, why, cap, "not an ECDSA %s public key", curves[i].curve);
    k->bits = curves[i].bits;
  } else { /* ssh-rsa: e, then n */
    if (!take(&r, &v, &vl) || !take(&r, &w, &wl) || mpint_bits(v, vl) < 2 || !(v[vl - 1] & 1))
      return refuse(TT_EINVAL, why, cap, "not an RSA public key");
    k->bits = mpint_bits(w, wl);
    if (k->bits == 0) return refuse(TT_EINVAL, why, cap, "not an RSA public key");
    if (k->bits < TT_SSH_RSA_BITS_MIN)
      return refuse(TT_EINVAL, why, cap, "RSA keys need at least %u bits; this one has %u", TT_SSH_RSA_BITS_MIN,
                    k->bits);
    if (k->bits > TT_SSH_RSA_BITS_MAX)
      return refuse(TT_EINVAL, why, cap, "RSA keys of more than %u bits are not taken", TT_SSH_RSA_BITS_MAX);
  }
  if (r.n) return refuse(TT_EINVAL, why, cap, "the key has %zu bytes after its last field", r.n);
  return 0;
}

static bool is_b64(char ch) {
  return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '+' ||
         ch == '/' || ch == '=';
}

int tt_sshkey_parse(const char *text, size_t len, tt_sshkey_t *k, char *why, size_t cap) {
  memset(k, 0, sizeof(*k));
  while (len && (text[len - 1] == '\n' || text[len - 1] == '\r')) len--;
  if (len > TT_SSH_KEY_LINE_MAX)
    return refuse(TT_ETOOBIG, why, cap, "a public key line is at most %u bytes", TT_SSH_KEY_LINE_MAX);
  if (memchr(text, '\n', len)) return refuse(TT_EINVAL, why, cap, "one key, on one line");
  size_t i = 0;
  while (i < len && (text[i] == ' ' || text[i] == '\t')) i++;
  size_t t0 = i;
  while (i < len && text[i] != ' ' && text[i] != '\t') i++;
  size_t tl = i - t0;
  const char *type = text + t0;
  static const char *const taken[] = {"ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
                                      "ecdsa-sha2-nistp521", "ssh-rsa"};
  bool ok = false;
  for (size_t j = 0; j < sizeof(taken) / sizeof(taken[0]) && !ok; j++)
    ok = tl == strlen(taken[j]) && memcmp(type, taken[j], tl) == 0;
  if (!ok) {
    if (tl == 7 && memcmp(type, "ssh-dss", 7) == 0) return refuse(TT_EINVAL, why, cap, "DSA keys are not taken");
    if (tl > 3 && memcmp(type, "sk-", 3) == 0)
      return refuse(TT_EINVAL, why, cap, "security-key (sk-) keys are not taken yet");
    if (memchr(type, '=', tl) || memchr(type, ',', tl))
      return refuse(TT_EINVAL, why, cap, "a key line with options (from=, command=...) is not taken: give the key alone");
    return refuse(TT_EINVAL, why, cap, "not an SSH public key this gateway takes (ssh-ed25519, ecdsa-sha2-nistp256/384/521, ssh-rsa)");
  }
  memcpy(k->type, type, tl);
  while (i < len && (text[i] == ' ' || text[i] == '\t')) i++;
  size_t b0 = i;
  while (i < len && is_b64(text[i])) i++;
  size_t bl = i - b0;
  if (bl == 0 || bl % 4 || (i < len && text[i] != ' ' && text[i] != '\t'))
    return refuse(TT_EINVAL, why, cap, "the key's base64 is not valid");
  uint8_t blob[TT_SSH_KEY_LINE_MAX];
  int n = EVP_DecodeBlock(blob, (const unsigned char *)text + b0, (int)bl);
  if (n < 0) return refuse(TT_EINVAL, why, cap, "the key's base64 is not valid");
  size_t pad = text[b0 + bl - 1] == '=' ? (text[b0 + bl - 2] == '=' ? 2 : 1) : 0;
  if (memchr(text + b0, '=', bl - pad)) return refuse(TT_EINVAL, why, cap, "the key's base64 is not valid");
  size_t blen = (size_t)n - pad;
  int rc = check_blob(blob, blen, k, why, cap);
  if (rc) return rc;
  if ((rc = tt_sshkey_fingerprint(blob, blen, k->fingerprint, sizeof(k->fingerprint)))) return refuse(rc, why, cap, "cannot hash the key");
  snprintf(k->line, sizeof(k->line), "%s %.*s", k->type, (int)bl, text + b0);
  /* The comment: printable ASCII kept, anything else as '?', cut to fit. */
  while (i < len && (text[i] == ' ' || text[i] == '\t')) i++;
  size_t c = 0;
  for (; i < len && c < TT_TEXT_MAX; i++) {
    unsigned char ch = (unsigned char)text[i];
    k->comment[c++] = ch >= 0x20 && ch < 0x7f ? (char)ch : '?';
  }
  while (c && k->comment[c - 1] == ' ') c--;
  k->comment[c] = '\0';
  return 0;
}
