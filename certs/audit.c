/* The audit chain's hash: one definition for the broker, its store and offline verifiers. */
#include <openssl/evp.h>

#include "tt/audit.h"
#include "tt/err.h"
#include "tt/log.h"

static void put_be64(uint8_t *p, uint64_t v) {
  for (int i = 7; i >= 0; i--) {
    p[i] = (uint8_t)v;
    v >>= 8;
  }
}

int tt_audit_hash(const uint8_t prev[32], int64_t id, int64_t ts_ms,
                  const char *const field[TT_AUDIT_NFIELDS], const size_t flen[TT_AUDIT_NFIELDS],
                  uint8_t out[32]) {
  uint8_t hdr[16];
  put_be64(hdr, (uint64_t)id);
  put_be64(hdr + 8, (uint64_t)ts_ms);
  unsigned int outlen = 0;
  EVP_MD_CTX *md = EVP_MD_CTX_new();
  int ok = md != NULL && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1 &&
           EVP_DigestUpdate(md, prev, 32) == 1 && EVP_DigestUpdate(md, hdr, sizeof hdr) == 1;
  for (int i = 0; ok && i < TT_AUDIT_NFIELDS; i++) {
    uint8_t len[4] = {(uint8_t)(flen[i] >> 24), (uint8_t)(flen[i] >> 16), (uint8_t)(flen[i] >> 8),
                      (uint8_t)flen[i]};
    ok = EVP_DigestUpdate(md, len, sizeof len) == 1 &&
         (flen[i] == 0 || EVP_DigestUpdate(md, field[i], flen[i]) == 1);
  }
  ok = ok && EVP_DigestFinal_ex(md, out, &outlen) == 1 && outlen == 32;
  EVP_MD_CTX_free(md);
  if (!ok) {
    TT_ERROR("audit", "sha256 failed", "op=%s", "audit_hash");
    return TT_EIO;
  }
  return 0;
}
