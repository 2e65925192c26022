/* The audit trail's format: the chain's hash, signed checkpoints of its head, and the walk
 * that verifies a chain against them; one definition for the broker, its store and offline
 * verifiers. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <openssl/evp.h>
#include <openssl/x509_vfy.h>
#include "tt/cert.h"

#include "tt/audit.h"
#include "tt/err.h"
#include "tt/hex.h"
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

/* ---- signed checkpoints ------------------------------------------------------------------ */


/* What is signed: the line's fields before the certificate, so that nothing else can be
 * taken for a checkpoint. */
static int cp_message(const tt_audit_checkpoint_t *cp, char *out, size_t cap) {
  char hex[TT_HEX_CAP(32)];
  tt_hex(hex, sizeof(hex), cp->head, sizeof(cp->head));
  int n = snprintf(out, cap, "tether-audit-checkpoint 1 %lld %s %lld", (long long)cp->entries, hex,
                   (long long)cp->ts_ms);
  return n < 0 || (size_t)n >= cap ? TT_ETOOBIG : n;
}

int tt_audit_checkpoint_sign(tt_audit_checkpoint_t *cp, EVP_PKEY *key, X509 *cert) {
  unsigned char *der = NULL;
  int dlen = i2d_X509(cert, &der);
  if (dlen <= 0 || (size_t)dlen > sizeof(cp->cert)) {
    OPENSSL_free(der);
    return TT_ETOOBIG;
  }
  memcpy(cp->cert, der, (size_t)dlen);
  cp->cert_len = (size_t)dlen;
  OPENSSL_free(der);
  char msg[160];
  int n = cp_message(cp, msg, sizeof(msg));
  if (n < 0) return n;
  EVP_MD_CTX *md = EVP_MD_CTX_new();
  size_t slen = sizeof(cp->sig);
  int ok = md && EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key) == 1 &&
           EVP_DigestSign(md, cp->sig, &slen, (const unsigned char *)msg, (size_t)n) == 1;
  EVP_MD_CTX_free(md);
  if (!ok) {
    TT_ERROR("audit", "checkpoint not signed", "entries=%lld", (long long)cp->entries);
    return TT_EIO;
  }
  cp->sig_len = slen;
  return 0;
}

int tt_audit_checkpoint_format(const tt_audit_checkpoint_t *cp, char *out, size_t cap) {
  char msg[160];
  int n = cp_message(cp, msg, sizeof(msg));
  if (n < 0) return n;
  char b64[4 * ((TT_AUDIT_CP_CERT_MAX + 2) / 3) + 1];
  int blen = EVP_EncodeBlock((unsigned char *)b64, cp->cert, (int)cp->cert_len);
  if (blen < 0) return TT_EIO;
  char sig[TT_HEX_CAP(TT_AUDIT_CP_SIG_MAX)];
  if (cp->sig_len > sizeof(cp->sig)) return TT_EINVAL;
  tt_hex(sig, sizeof(sig), cp->sig, cp->sig_len);
  int m = snprintf(out, cap, "%s %s %s\n", msg, b64, sig);
  return m < 0 || (size_t)m >= cap ? TT_ETOOBIG : 0;
}

int tt_audit_checkpoint_parse(const char *line, tt_audit_checkpoint_t *cp) {
  memset(cp, 0, sizeof(*cp));
  size_t len = strnlen(line, TT_AUDIT_CP_LINE_MAX + 1);
  if (len > TT_AUDIT_CP_LINE_MAX) return TT_ETOOBIG;
  char buf[TT_AUDIT_CP_LINE_MAX + 1];
  memcpy(buf, line, len + 1);
  while (len && (buf[len - 1] == '\n' || buf[len - 1] == '\r')) buf[--len] = '\0';
  char *save = NULL, *tok[8];
  int n = 0;
  for (char *t = strtok_r(buf, " ", &save); t && n < 8; t = strtok_r(NULL, " ", &save)) tok[n++] = t;
  if (n != 7 || strcmp(tok[0], "tether-audit-checkpoint") != 0 ||
      strcmp(tok[1], "1") != 0 || strlen(tok[3]) != 64)
    return TT_EINVAL;
  char *end;
  long long entries = strtoll(tok[2], &end, 10);
  if (*end || entries < 0) return TT_EINVAL;
  long long ts = strtoll(tok[4], &end, 10);
  if (*end || ts < 0) return TT_EINVAL;
  cp->entries = entries;
  cp->ts_ms = ts;
  if (tt_unhex(cp->head, sizeof(cp->head), tok[3], 64) != 32) return TT_EINVAL;
  size_t b64len = strlen(tok[5]);
  if (b64len == 0 || b64len % 4 || b64len / 4 * 3 > sizeof(cp->cert) + 2) return TT_EINVAL;
  unsigned char der[TT_AUDIT_CP_CERT_MAX + 3];
  int dlen = EVP_DecodeBlock(der, (const unsigned char *)tok[5], (int)b64len);
  if (dlen <= 0) return TT_EINVAL;
  /* EVP_DecodeBlock counts the padding's zero bytes: take them off. */
  if (b64len >= 1 && tok[5][b64len - 1] == '=') dlen--;
  if (b64len >= 2 && tok[5][b64len - 2] == '=') dlen--;
  if ((size_t)dlen > sizeof(cp->cert)) return TT_EINVAL;
  memcpy(cp->cert, der, (size_t)dlen);
  cp->cert_len = (size_t)dlen;
  size_t slen = strlen(tok[6]);
  if (slen == 0 || slen % 2 || slen / 2 > sizeof(cp->sig)) return TT_EINVAL;
  if (tt_unhex(cp->sig, sizeof(cp->sig), tok[6], slen) != (int)(slen / 2)) return TT_EINVAL;
  cp->sig_len = slen / 2;
  return 0;
}

int tt_audit_checkpoint_verify(const tt_audit_checkpoint_t *cp, X509 *ca, char *why, size_t cap) {
  const unsigned char *p = cp->cert;
  X509 *cert = d2i_X509(NULL, &p, (long)cp->cert_len);
  X509_STORE *store = X509_STORE_new();
  X509_STORE_CTX *ctx = X509_STORE_CTX_new();
  EVP_MD_CTX *md = EVP_MD_CTX_new();
  int rc = TT_EIO;
  tt_identity_t id;
  char msg[160];
  int n = cp_message(cp, msg, sizeof(msg));
  if (!cert || (size_t)(p - cp->cert) != cp->cert_len) {
    snprintf(why, cap, "its certificate cannot be read");
    rc = TT_ECERT;
    goto out;
  }
  if (!store || !ctx || !md || n < 0 || X509_STORE_add_cert(store, ca) != 1 ||
      X509_STORE_CTX_init(ctx, store, cert, NULL) != 1) {
    snprintf(why, cap, "out of memory");
    goto out;
  }
  /* The checkpoint outlives the certificate's validity: what matters is who signed. */
  X509_STORE_CTX_set_flags(ctx, X509_V_FLAG_NO_CHECK_TIME);
  if (X509_verify_cert(ctx) != 1) {
    snprintf(why, cap, "its certificate was not issued by this CA (%s)",
             X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx)));
    rc = TT_ECERT;
    goto out;
  }
  if (tt_cert_identity(cert, &id) || id.role != TT_ROLE_BROKER) {
    snprintf(why, cap, "its certificate is not a broker's");
    rc = TT_ECERT;
    goto out;
  }
  if (EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, X509_get0_pubkey(cert)) != 1 ||
      EVP_DigestVerify(md, cp->sig, cp->sig_len, (const unsigned char *)msg, (size_t)n) != 1) {
    snprintf(why, cap, "its signature does not match what it says");
    rc = TT_ECERT;
    goto out;
  }
  rc = 0;
out:
  EVP_MD_CTX_free(md);
  X509_STORE_CTX_free(ctx);
  X509_STORE_free(store);
  X509_free(cert);
  return rc;
}

/* ---- verifying a chain ------------------------------------------------------------------ */

static void when(int64_t ts_ms, char *out, size_t cap) {
  time_t t = (time_t)(ts_ms / 1000);
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(out, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

void tt_audit_walk_init(tt_audit_walk_t *w, const tt_audit_anchor_t *anchors, size_t n) {
  memset(w, 0, sizeof(*w));
  w->anchors = anchors;
  w->nanchors = n;
}

void tt_audit_walk_anchors(tt_audit_walk_t *w, const tt_audit_anchor_t *anchors, size_t n) {
  w->anchors = anchors;
  w->nanchors = n;
  w->next_anchor = 0;
  /* A chain only grows: a checkpoint signed later that covers fewer entries than an earlier
   * one means the log was cut back between them (and perhaps written on since). */
  for (size_t i = 1; i < n; i++) {
    const tt_audit_anchor_t *a = &anchors[i - 1], *b = &anchors[i];
    if (a->entries < b->entries && a->ts_ms > b->ts_ms) {
      char ta[32], tb[32];
      when(b->ts_ms, tb, sizeof(tb));
      when(a->ts_ms, ta, sizeof(ta));
      tt_audit_walk_problem(w, a->entries + 1,
                            "the log was cut back: the checkpoint of %s covered %lld entries, the later one of %s "
                            "only %lld",
                            tb, (long long)b->entries, ta, (long long)a->entries);
    }
  }
}

void tt_audit_walk_problem(tt_audit_walk_t *w, int64_t bad_id, const char *fmt, ...) {
  if (bad_id > 0 && (w->first_bad == 0 || bad_id < w->first_bad)) w->first_bad = bad_id;
  if (w->nproblems >= TT_AUDIT_PROBLEMS_MAX) {
    w->more_problems++;
    return;
  }
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(w->problems[w->nproblems++], TT_AUDIT_PROBLEM_LEN, fmt, ap);
  va_end(ap);
}


int tt_audit_walk_entry(tt_audit_walk_t *w, int64_t id, int64_t ts_ms,
                        const char *const field[TT_AUDIT_NFIELDS], const size_t flen[TT_AUDIT_NFIELDS],
                        const uint8_t *prev_hash, const uint8_t *hash) {
  int64_t expect = w->last_id + 1;
  bool gap = id > expect;
  if (gap) {
    if (id == expect + 1) tt_audit_walk_problem(w, expect, "entry %lld is missing", (long long)expect);
    else tt_audit_walk_problem(w, expect, "entries %lld to %lld are missing", (long long)expect, (long long)(id - 1));
  } else if (id < expect) {
    tt_audit_walk_problem(w, id, "entry %lld is out of order (after entry %lld)", (long long)id,
                          (long long)w->last_id);
  }
  uint8_t h[32];
  int rc = tt_audit_hash(prev_hash ? prev_hash : w->prev, id, ts_ms, field, flen, h);
  if (rc) return rc;
  if (!hash || !prev_hash || memcmp(h, hash, 32) != 0)
    tt_audit_walk_problem(w, id, "entry %lld was edited: its hash does not match what it says", (long long)id);
  else if (!gap && id == expect && memcmp(prev_hash, w->prev, 32) != 0 && w->count > 0)
    tt_audit_walk_problem(w, id - 1, "entry %lld was edited or replaced: entry %lld does not link to it",
                          (long long)(id - 1), (long long)id);
  else if (!gap && id == 1 && memcmp(prev_hash, (uint8_t[32]){0}, 32) != 0)
    tt_audit_walk_problem(w, 1, "entry 1 does not start the chain");
  /* Anchors at or before this entry: each must name this entry's hash, or ones we skipped. */
  while (w->next_anchor < w->nanchors && w->anchors[w->next_anchor].entries <= id) {
    const tt_audit_anchor_t *a = &w->anchors[w->next_anchor++];
    char t[32];
    when(a->ts_ms, t, sizeof(t));
    if (a->entries == 0) continue;
    if (a->entries < id) {
      tt_audit_walk_problem(w, a->entries, "entry %lld, which the checkpoint of %s covers, is missing",
                            (long long)a->entries, t);
    } else if (!hash || memcmp(a->head, hash, 32) != 0) {
      tt_audit_walk_problem(w, id,
                            "the chain was rewritten: entry %lld is not the one the checkpoint of %s signed",
                            (long long)id, t);
    }
  }
  if (hash) memcpy(w->prev, hash, 32);
  else memset(w->prev, 0xff, sizeof(w->prev));
  w->last_id = id > w->last_id ? id : w->last_id;
  w->count++;
  return 0;
}

void tt_audit_walk_finish(tt_audit_walk_t *w) {
  if (w->next_anchor >= w->nanchors) return;
  /* The furthest anchor past the end says how much was cut. */
  const tt_audit_anchor_t *a = &w->anchors[w->nanchors - 1];
  char t[32];
  when(a->ts_ms, t, sizeof(t));
  tt_audit_walk_problem(w, w->last_id + 1,
                        "the tail was cut off: the log ends at entry %lld, but the checkpoint of %s covers %lld entries",
                        (long long)w->last_id, t, (long long)a->entries);
  w->next_anchor = w->nanchors;
}
