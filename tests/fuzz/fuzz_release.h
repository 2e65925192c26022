/* What fuzz_release.c and its seeds (gen_corpus.c) share: one Ed25519 release key made from a
 * fixed seed, so that a seed signed at build time verifies in the driver, and the manifest's
 * text written from its fields independently of certs/release.c. The key signs nothing but the
 * corpus: it is no secret. */
#ifndef FUZZ_RELEASE_H
#define FUZZ_RELEASE_H

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include "tt/hex.h"
#include "tt/release.h"

/* An Ed25519 signature in the manifest's base64, and the line that carries it. */
#define FZR_SIG_B64 88
#define FZR_SIG_LINE (sizeof("signature ") - 1 + FZR_SIG_B64 + 1)

static const uint8_t fzr_seed[32] = {
    0x54, 0x65, 0x74, 0x68, 0x65, 0x72, 0x20, 0x66, 0x75, 0x7a, 0x7a, 0x20, 0x72, 0x65, 0x6c, 0x65,
    0x61, 0x73, 0x65, 0x20, 0x6b, 0x65, 0x79, 0x2c, 0x20, 0x70, 0x75, 0x62, 0x6c, 0x69, 0x63, 0x21,
};

/* The fixed key, private half: NULL if OpenSSL cannot make it. */
static inline EVP_PKEY *fzr_private(void) {
  return EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, fzr_seed, sizeof(fzr_seed));
}

/* Its public half as an agent holds it after tt_release_keys_load: one key, its fingerprint
 * the sha256 of its SubjectPublicKeyInfo DER. 0, or -1 with k empty. */
static inline int fzr_keys(EVP_PKEY *priv, tt_release_keys_t *k) {
  uint8_t raw[32];
  size_t rn = sizeof(raw);
  unsigned char *der = NULL;
  unsigned int dn = 0;
  EVP_PKEY *pub = NULL;
  int len = -1;
  memset(k, 0, sizeof(*k));
  if (EVP_PKEY_get_raw_public_key(priv, raw, &rn) == 1 && rn == sizeof(raw))
    pub = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, raw, rn);
  if (pub) len = i2d_PUBKEY(pub, &der);
  int ok = len > 0 && EVP_Digest(der, (size_t)len, k->fp[0], &dn, EVP_sha256(), NULL) == 1 && dn == 32;
  OPENSSL_free(der);
  if (!ok) {
    EVP_PKEY_free(pub);
    memset(k, 0, sizeof(*k));
    return -1;
  }
  k->key[0] = pub;
  k->n = 1;
  return 0;
}

/* The signed part of r's manifest (every line before "signature "), as the header of
 * tt/release.h describes it; its length, or 0 if it does not fit in cap or r cannot be
 * written (a time before 1970). */
static inline size_t fzr_format(const tt_release_t *r, char *out, size_t cap) {
  char hash[TT_HEX_CAP(32)], fp[TT_HEX_CAP(32)], created[32];
  struct tm tm;
  time_t t = (time_t)(r->created_ms / 1000);
  if (r->created_ms < 0 || !gmtime_r(&t, &tm) || !strftime(created, sizeof(created), "%Y-%m-%dT%H:%M:%SZ", &tm))
    return 0;
  tt_hex(hash, sizeof(hash), r->sha256, 32);
  tt_hex(fp, sizeof(fp), r->key, 32);
  int n = snprintf(out, cap,
                   "tether-release 1\npackage %s\nversion %s\narch %s\nsize %llu\nsha256 %s\ndowngrade %s%s\n"
                   "created %s\nkey sha256:%s\n",
                   r->package, r->version, r->arch, (unsigned long long)r->size, hash, r->downgrade ? "from " : "no",
                   r->downgrade ? r->downgrade_from : "", created, fp);
  return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

/* The signature line of the n bytes at p under priv ("signature <base64>\n", and a NUL) into
 * line, which holds FZR_SIG_LINE + 1. 0 or -1. */
static inline int fzr_sign_line(EVP_PKEY *priv, const void *p, size_t n, char *line) {
  unsigned char sig[64], b64[FZR_SIG_B64 + 1];
  size_t slen = sizeof(sig);
  EVP_MD_CTX *md = EVP_MD_CTX_new();
  int ok = md && EVP_DigestSignInit(md, NULL, NULL, NULL, priv) == 1 &&
           EVP_DigestSign(md, sig, &slen, p, n) == 1 && slen == sizeof(sig);
  EVP_MD_CTX_free(md);
  if (!ok || EVP_EncodeBlock(b64, sig, (int)slen) != FZR_SIG_B64) return -1;
  memcpy(line, "signature ", 10);
  memcpy(line + 10, b64, FZR_SIG_B64);
  line[10 + FZR_SIG_B64] = '\n';
  line[FZR_SIG_LINE] = '\0';
  return 0;
}

#endif
