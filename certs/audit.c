/* The audit trail's format: the chain's hash, signed checkpoints of its head, and the walk
 * that verifies a chain against them; one definition for the broker, its store and offline
 * verifiers. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/x509_vfy.h>
#include "tt/limits.h"
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

/* ---- format 2 ----------------------------------------------------------------------------- */

/* A JSON string as the broker writes it, from the opening quote: its text (escapes kept) and
 * what follows it; NULL if it is not one. */
static const char *jstr(const char *p, const char **text, size_t *len) {
  if (*p != '"') return NULL;
  const char *s = ++p;
  for (; *p && *p != '"'; p++) {
    if ((unsigned char)*p < 0x20) return NULL; /* never raw in the broker's JSON */
    if (*p == '\\' && !*++p) return NULL;
  }
  if (*p != '"') return NULL;
  *text = s;
  *len = (size_t)(p - s);
  return p + 1;
}

size_t tt_audit_split(const char *actor, const char *target, const char *detail,
                      tt_audit_pair_t out[TT_AUDIT_VALUES_MAX]) {
  out[0] = (tt_audit_pair_t){"actor", actor, 5, strlen(actor)};
  out[1] = (tt_audit_pair_t){"target", target, 6, strlen(target)};
  size_t n = 2;
  const char *p = detail;
  bool ok = *p == '{';
  if (ok) p++;
  if (ok && *p == '}') {
    p++;
  } else {
    while (ok) {
      tt_audit_pair_t *q = &out[n];
      if (n >= TT_AUDIT_VALUES_MAX || !(p = jstr(p, &q->key, &q->klen)) || *p++ != ':' ||
          !(p = jstr(p, &q->val, &q->vlen))) {
        ok = false;
        break;
      }
      n++;
      if (*p == '}') {
        p++;
        break;
      }
      if (*p++ != ',') ok = false;
    }
  }
  if (!ok || *p) { /* not the broker's flat object: the whole of it is one value */
    out[2] = (tt_audit_pair_t){TT_AUDIT_WHOLE_DETAIL, detail, 1, strlen(detail)};
    n = 3;
  }
  return n;
}

int tt_audit_value_digest(const uint8_t salt[TT_AUDIT_SALT_LEN], uint32_t n, const char *v, size_t vlen,
                          uint8_t out[32]) {
  /* A value is at most an entry's detail (512 bytes): one buffer on the stack, one HMAC. A
   * longer one (a store edited by hand) is digested all the same, so the walk can say so. */
  uint8_t small[4 + 1024], *msg = vlen <= sizeof(small) - 4 ? small : malloc(4 + vlen);
  if (!msg) return TT_ENOMEM;
  msg[0] = (uint8_t)(n >> 24), msg[1] = (uint8_t)(n >> 16), msg[2] = (uint8_t)(n >> 8), msg[3] = (uint8_t)n;
  if (vlen) memcpy(msg + 4, v, vlen);
  unsigned int outlen = 0;
  unsigned char *ok = HMAC(EVP_sha256(), salt, TT_AUDIT_SALT_LEN, msg, 4 + vlen, out, &outlen);
  if (msg != small) free(msg);
  if (!ok || outlen != 32) {
    TT_ERROR("audit", "hmac failed", "op=%s", "audit_value_digest");
    return TT_EIO;
  }
  return 0;
}

int tt_audit_value_new(uint32_t n, const char *v, size_t vlen, tt_audit_value_t *out) {
  memset(out, 0, sizeof(*out));
  if (RAND_bytes(out->salt, TT_AUDIT_SALT_LEN) != 1) {
    TT_ERROR("audit", "no random bytes for a salt", "op=%s", "audit_value_new");
    return TT_EIO;
  }
  out->has_salt = true;
  return tt_audit_value_digest(out->salt, n, v, vlen, out->digest);
}

static int put_len(EVP_MD_CTX *md, size_t n) {
  uint8_t len[4] = {(uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n};
  return EVP_DigestUpdate(md, len, sizeof len);
}

int tt_audit_hash2(const uint8_t prev[32], int64_t id, int64_t ts_ms, const char *action, size_t alen,
                   const tt_audit_pair_t *p, const tt_audit_value_t *v, size_t n, uint8_t out[32]) {
  static const char tag[] = "tether-audit-2"; /* and its NUL */
  uint8_t hdr[16];
  put_be64(hdr, (uint64_t)id);
  put_be64(hdr + 8, (uint64_t)ts_ms);
  unsigned int outlen = 0;
  EVP_MD_CTX *md = EVP_MD_CTX_new();
  int ok = md != NULL && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1 && EVP_DigestUpdate(md, tag, sizeof tag) == 1 &&
           EVP_DigestUpdate(md, prev, 32) == 1 && EVP_DigestUpdate(md, hdr, sizeof hdr) == 1 &&
           put_len(md, alen) == 1 && (alen == 0 || EVP_DigestUpdate(md, action, alen) == 1) && put_len(md, n) == 1;
  for (size_t i = 0; ok && i < n; i++)
    ok = put_len(md, p[i].klen) == 1 && (p[i].klen == 0 || EVP_DigestUpdate(md, p[i].key, p[i].klen) == 1) &&
         EVP_DigestUpdate(md, v[i].digest, 32) == 1;
  ok = ok && EVP_DigestFinal_ex(md, out, &outlen) == 1 && outlen == 32;
  EVP_MD_CTX_free(md);
  if (!ok) {
    TT_ERROR("audit", "sha256 failed", "op=%s", "audit_hash2");
    return TT_EIO;
  }
  return 0;
}

/* ---- signed checkpoints ------------------------------------------------------------------ */


/* What is signed: the line's fields before the certificate, so that nothing else can be
 * taken for a checkpoint. */
static int cp_message(const tt_audit_checkpoint_t *cp, char *out, size_t cap) {
  char hex[TT_HEX_CAP(32)], from[TT_HEX_CAP(32)];
  tt_hex(hex, sizeof(hex), cp->head, sizeof(cp->head));
  tt_hex(from, sizeof(from), cp->from, sizeof(cp->from));
  int n = cp->kind == TT_AUDIT_CP_ERASE
              ? snprintf(out, cap, "tether-audit-erase 1 %lld %lld %s %lld", (long long)cp->entries,
                         (long long)cp->count, hex, (long long)cp->ts_ms)
          : cp->kind == TT_AUDIT_CP_CUT
              ? snprintf(out, cap, "tether-audit-cut 1 %lld %s %lld", (long long)cp->entries, hex, (long long)cp->ts_ms)
          : cp->kind == TT_AUDIT_CP_RECHAIN
              ? snprintf(out, cap, "tether-audit-rechain 1 %lld %s %s %lld", (long long)cp->entries, from, hex,
                         (long long)cp->ts_ms)
              : snprintf(out, cap, "tether-audit-checkpoint 1 %lld %s %lld", (long long)cp->entries, hex,
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
  char msg[256];
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
  char msg[256];
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
  char *save = NULL, *all[9];
  const char *tok[7];
  int n = 0;
  for (char *t = strtok_r(buf, " ", &save); t && n < 9; t = strtok_r(NULL, " ", &save)) all[n++] = t;
  if (n == 8 && strcmp(all[0], "tether-audit-rechain") == 0 && strlen(all[3]) == 64) {
    /* A checkpoint's fields with FROM after ENTRIES. */
    cp->kind = TT_AUDIT_CP_RECHAIN;
    if (tt_unhex(cp->from, sizeof(cp->from), all[3], 64) != 32) return TT_EINVAL;
    const char *as_cp[7] = {"tether-audit-checkpoint", all[1], all[2], all[4], all[5], all[6], all[7]};
    memcpy(tok, as_cp, sizeof(tok));
    n = 7;
  } else if (n == 8 && strcmp(all[0], "tether-audit-erase") == 0) {
    cp->kind = TT_AUDIT_CP_ERASE;
    char *end;
    long long count = strtoll(all[3], &end, 10);
    if (*end || count < 0 || !all[3][0]) return TT_EINVAL;
    cp->count = count;
    const char *as_cp[7] = {"tether-audit-checkpoint", all[1], all[2], all[4], all[5], all[6], all[7]};
    memcpy(tok, as_cp, sizeof(tok));
    n = 7;
  } else if (n == 7 && strcmp(all[0], "tether-audit-cut") == 0) {
    cp->kind = TT_AUDIT_CP_CUT;
    const char *as_cp[7] = {"tether-audit-checkpoint", all[1], all[2], all[3], all[4], all[5], all[6]};
    memcpy(tok, as_cp, sizeof(tok));
  } else {
    for (int i = 0; i < 7 && i < n; i++) tok[i] = all[i];
  }
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
  char msg[256];
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


/* An entry whose hash, recomputed from what it says, is h: its place in the chain. */
static void walk_link(tt_audit_walk_t *w, int64_t id, const uint8_t h[32], const uint8_t *prev_hash,
                      const uint8_t *hash) {
  int64_t expect = w->last_id + 1;
  bool gap = id > expect;
  if (gap) {
    if (id == expect + 1) tt_audit_walk_problem(w, expect, "entry %lld is missing", (long long)expect);
    else tt_audit_walk_problem(w, expect, "entries %lld to %lld are missing", (long long)expect, (long long)(id - 1));
  } else if (id < expect) {
    tt_audit_walk_problem(w, id, "entry %lld is out of order (after entry %lld)", (long long)id,
                          (long long)w->last_id);
  }
  if (!hash || !prev_hash || memcmp(h, hash, 32) != 0)
    tt_audit_walk_problem(w, id, "entry %lld was edited: its hash does not match what it says", (long long)id);
  else if (!gap && id == expect && memcmp(prev_hash, w->prev, 32) != 0 && (w->count > 0 || w->based))
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
}

int tt_audit_walk_entry(tt_audit_walk_t *w, int64_t id, int64_t ts_ms,
                        const char *const field[TT_AUDIT_NFIELDS], const size_t flen[TT_AUDIT_NFIELDS],
                        const uint8_t *prev_hash, const uint8_t *hash) {
  if (w->based && id <= w->base) return 0; /* pruned, and not yet deleted */
  uint8_t h[32];
  int rc = tt_audit_hash(prev_hash ? prev_hash : w->prev, id, ts_ms, field, flen, h);
  if (rc) return rc;
  walk_link(w, id, h, prev_hash, hash);
  return 0;
}

int tt_audit_release_step(uint8_t acc[32], int64_t entry, uint32_t n, const uint8_t digest[32],
                          const uint8_t digest2[32]) {
  uint8_t m[32 + 8 + 4 + 32 + 32];
  memcpy(m, acc, 32);
  put_be64(m + 32, (uint64_t)entry);
  m[40] = (uint8_t)(n >> 24), m[41] = (uint8_t)(n >> 16), m[42] = (uint8_t)(n >> 8), m[43] = (uint8_t)n;
  memcpy(m + 44, digest, 32);
  memcpy(m + 76, digest2, 32);
  if (!SHA256(m, sizeof m, acc)) {
    TT_ERROR("audit", "sha256 failed", "op=%s", "audit_release_step");
    return TT_EIO;
  }
  return 0;
}

/* The release of erasure `by` in a list sorted by `by`, or where it would go. */
static size_t release_at(const tt_audit_release_t *r, size_t n, int64_t by, bool *found) {
  size_t lo = 0, hi = n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (r[mid].by < by) lo = mid + 1;
    else hi = mid;
  }
  *found = lo < n && r[lo].by == by;
  return lo;
}

int tt_audit_walk_released(tt_audit_walk_t *w, int64_t entry, uint32_t n, const uint8_t digest[32],
                           const uint8_t digest2[32], int64_t by) {
  bool found = false;
  size_t at = release_at(w->rel, w->nrel, by, &found);
  if (!found) {
    if (w->nrel >= TT_AUDIT_RELEASE_PENDING_MAX) {
      tt_audit_walk_problem(w, entry, "entry %lld: more than %u erasures pending, the rest not checked",
                            (long long)entry, TT_AUDIT_RELEASE_PENDING_MAX);
      return 0;
    }
    if (w->nrel == w->caprel) {
      size_t cap = w->caprel ? 2 * w->caprel : 8;
      tt_audit_release_t *g = realloc(w->rel, cap * sizeof(*g));
      if (!g) return TT_ENOMEM;
      w->rel = g;
      w->caprel = cap;
    }
    memmove(&w->rel[at + 1], &w->rel[at], (w->nrel - at) * sizeof(*w->rel));
    w->nrel++;
    memset(&w->rel[at], 0, sizeof(w->rel[at]));
    w->rel[at].by = by;
  }
  w->rel[at].count++;
  return tt_audit_release_step(w->rel[at].acc, entry, n, digest, digest2);
}

/* An erasure's own entry: what it says it released against what the walk saw released, and
 * against the line the broker signed for it. */
static void walk_erasure(tt_audit_walk_t *w, int64_t id, bool erasure, const tt_audit_pair_t *p, size_t n) {
  bool found = false;
  size_t at = release_at(w->rel, w->nrel, id, &found);
  tt_audit_release_t r = {.by = id};
  if (found) {
    r = w->rel[at];
    memmove(&w->rel[at], &w->rel[at + 1], (w->nrel - at - 1) * sizeof(*w->rel));
    w->nrel--;
  }
  if (!erasure) {
    if (found)
      tt_audit_walk_problem(w, id, "entry %lld is named as the erasure of %lld values, but it is not one",
                            (long long)id, (long long)r.count);
    return;
  }
  const char *count = NULL, *values = NULL;
  size_t clen = 0, vlen = 0;
  for (size_t i = 2; i < n; i++) {
    if (p[i].klen == 8 && memcmp(p[i].key, "released", 8) == 0) count = p[i].val, clen = p[i].vlen;
    if (p[i].klen == 6 && memcmp(p[i].key, "values", 6) == 0) values = p[i].val, vlen = p[i].vlen;
  }
  char want_count[24], want_values[TT_HEX_CAP(32)];
  snprintf(want_count, sizeof want_count, "%lld", (long long)r.count);
  tt_hex(want_values, sizeof want_values, r.acc, 32);
  if (!count || !values || clen != strlen(want_count) || memcmp(count, want_count, clen) != 0 || vlen != 64 ||
      memcmp(values, want_values, 64) != 0) {
    tt_audit_walk_problem(w, id, "entry %lld, an erasure, does not match the values released under it (%lld found)",
                          (long long)id, (long long)r.count);
    return;
  }
  if (!w->erasures_signed || r.count == 0) return;
  bool s = false;
  size_t k = release_at(w->signed_erasures, w->nsigned, id, &s);
  if (!s)
    tt_audit_walk_problem(w, id, "entry %lld, an erasure of %lld values, has no erase line signed by the broker",
                          (long long)id, (long long)r.count);
  else if (w->signed_erasures[k].count != r.count || memcmp(w->signed_erasures[k].acc, r.acc, 32) != 0)
    tt_audit_walk_problem(w, id, "entry %lld, an erasure, is not the one the broker signed", (long long)id);
}

int tt_audit_walk_entry2(tt_audit_walk_t *w, int64_t id, int64_t ts_ms, const char *action, size_t alen,
                         const tt_audit_pair_t *p, const tt_audit_value_t *v, size_t n, const uint8_t *prev_hash,
                         const uint8_t *hash) {
  if (w->based && id <= w->base) return 0; /* pruned, and not yet deleted */
  /* A value must be what its digest says under its salt: an edit shows here. A value without
   * its salt must name a later erasure, which will have to account for it. */
  for (size_t i = 0; i < n; i++) {
    int klen = (int)(p[i].klen > 40 ? 40 : p[i].klen);
    if (!v[i].has_salt) {
      tt_audit_walk_problem(w, id, "entry %lld was edited: its %.*s lost its salt", (long long)id, klen, p[i].key);
      break;
    }
    uint8_t d[32];
    int rc = tt_audit_value_digest(v[i].salt, (uint32_t)i, p[i].val, p[i].vlen, d);
    if (rc) return rc;
    if (v[i].erased) { /* released: the new text under its new salt, and a later erasure's to account for */
      if (v[i].erased <= id || !v[i].has_digest2 || memcmp(d, v[i].digest2, 32) != 0) {
        tt_audit_walk_problem(w, id, "entry %lld was edited: its %.*s is not the text it was released as",
                              (long long)id, klen, p[i].key);
        break;
      }
      rc = tt_audit_walk_released(w, id, (uint32_t)i, v[i].digest, v[i].digest2, v[i].erased);
      if (rc) return rc;
      continue;
    }
    if (memcmp(d, v[i].digest, 32) != 0) {
      tt_audit_walk_problem(w, id, "entry %lld was edited: its %.*s is not the value it was written with",
                            (long long)id, klen, p[i].key);
      break;
    }
  }
  uint8_t h[32];
  int rc = tt_audit_hash2(prev_hash ? prev_hash : w->prev, id, ts_ms, action, alen, p, v, n, h);
  if (rc) return rc;
  walk_link(w, id, h, prev_hash, hash);
  bool erasure = (alen == strlen(TT_AUDIT_ERASE_ACTION) && memcmp(action, TT_AUDIT_ERASE_ACTION, alen) == 0) ||
                 (alen == strlen(TT_AUDIT_RELEASE_ACTION) && memcmp(action, TT_AUDIT_RELEASE_ACTION, alen) == 0);
  if (erasure || w->nrel) walk_erasure(w, id, erasure, p, n);
  return 0;
}

void tt_audit_walk_free(tt_audit_walk_t *w) {
  free(w->rel);
  w->rel = NULL;
  w->nrel = w->caprel = 0;
}

void tt_audit_walk_finish(tt_audit_walk_t *w) {
  for (size_t i = 0; i < w->nrel; i++) /* claimed by an entry the walk never reached */
    tt_audit_walk_problem(w, w->rel[i].by,
                          "%lld values claim to be released by entry %lld, which is not an erasure in the log",
                          (long long)w->rel[i].count, (long long)w->rel[i].by);
  w->nrel = 0;
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

/* ---- anchors ------------------------------------------------------------------------------ */

static int release_cmp(const void *a, const void *b) {
  int64_t x = ((const tt_audit_release_t *)a)->by, y = ((const tt_audit_release_t *)b)->by;
  return x < y ? -1 : x > y;
}

static int anchor_cmp(const void *a, const void *b) {
  const tt_audit_anchor_t *x = a, *y = b;
  if (x->entries != y->entries) return x->entries < y->entries ? -1 : 1;
  return memcmp(x->head, y->head, 32);
}

int tt_audit_anchors_add(tt_audit_anchors_t *k, tt_audit_walk_t *w, X509 *ca, const char *where, unsigned lineno,
                         const char *line) {
  tt_audit_checkpoint_t cp;
  char why[160];
  if (tt_audit_checkpoint_parse(line, &cp)) {
    tt_audit_walk_problem(w, 0, "%s: line %u is not a checkpoint", where, lineno);
    return 0;
  }
  if (tt_audit_checkpoint_verify(&cp, ca, why, sizeof(why))) {
    tt_audit_walk_problem(w, 0, "%s: the checkpoint for %lld entries is forged: %s", where, (long long)cp.entries,
                          why);
    return 0;
  }
  tt_audit_anchor_t a = {.entries = cp.entries, .ts_ms = cp.ts_ms};
  memcpy(a.head, cp.head, 32);
  if (cp.kind == TT_AUDIT_CP_RECHAIN) {
    if (!k->rechained || cp.ts_ms > k->rechain.ts_ms) {
      k->rechain = a;
      memcpy(k->rechain_from, cp.from, 32);
    }
    k->rechained = true;
    return 0;
  }
  if (cp.kind == TT_AUDIT_CP_CUT) {
    if (!k->cut || cp.entries > k->cut_at.entries) k->cut_at = a;
    k->cut = true;
    return 0;
  }
  if (cp.kind == TT_AUDIT_CP_ERASE) {
    if (k->nerasures >= 2 * TT_AUDIT_RELEASE_PENDING_MAX) return TT_ETOOBIG; /* the store's and the file's */
    if (k->nerasures == k->caperasures) {
      size_t cap = k->caperasures ? 2 * k->caperasures : 16;
      tt_audit_release_t *g = realloc(k->erasures, cap * sizeof(*g));
      if (!g) return TT_ENOMEM;
      k->erasures = g;
      k->caperasures = cap;
    }
    tt_audit_release_t *r = &k->erasures[k->nerasures++];
    r->by = cp.entries;
    r->count = cp.count;
    memcpy(r->acc, cp.head, 32);
    return 0;
  }
  if (k->n >= TT_AUDIT_CHECKPOINTS_MAX) return TT_ETOOBIG;
  if (k->n == k->cap) {
    size_t cap = k->cap ? 2 * k->cap : 64;
    tt_audit_anchor_t *n = realloc(k->a, cap * sizeof(*n));
    if (!n) return TT_ENOMEM;
    k->a = n;
    k->cap = cap;
  }
  k->a[k->n++] = a;
  return 0;
}

void tt_audit_anchors_finish(tt_audit_anchors_t *k, tt_audit_walk_t *w) {
  size_t n = 0;
  /* Checkpoints signed before the rechain anchored format 1 hashes: the rechain, signed once
   * the chain they anchored was found intact, stands for them. */
  for (size_t i = 0; i < k->n; i++) {
    const tt_audit_anchor_t *a = &k->a[i];
    if (!k->rechained || a->ts_ms >= k->rechain.ts_ms) {
      k->a[n++] = *a;
      continue;
    }
    /* Signed before the rechain: it cannot anchor a format 2 hash, but it still says how long
     * the chain was then, and at the rechain's length what its head was. */
    char t[32];
    when(a->ts_ms, t, sizeof(t));
    if (a->entries > k->rechain.entries)
      tt_audit_walk_problem(w, k->rechain.entries + 1,
                            "the log was cut before it was re-hashed: the checkpoint of %s covered %lld entries, the "
                            "re-hash only %lld",
                            t, (long long)a->entries, (long long)k->rechain.entries);
    else if (a->entries == k->rechain.entries && memcmp(a->head, k->rechain_from, 32) != 0)
      tt_audit_walk_problem(w, a->entries,
                            "the chain was rewritten before it was re-hashed: entry %lld is not the one the checkpoint "
                            "of %s signed",
                            (long long)a->entries, t);
  }
  k->n = n;
  /* A cut: what it pruned is not walked, and what anchored it cannot be checked; the walk
   * starts after it, linked to the head it signed. */
  if (k->cut) {
    if (k->rechained && k->rechain.entries <= k->cut_at.entries) k->rechained = false;
    n = 0;
    for (size_t i = 0; i < k->n; i++)
      if (k->a[i].entries > k->cut_at.entries) k->a[n++] = k->a[i];
    k->n = n;
    w->base = w->last_id = k->cut_at.entries;
    memcpy(w->prev, k->cut_at.head, 32);
    w->based = true;
  }
  if (k->rechained) {
    if (k->n == k->cap) {
      tt_audit_anchor_t *a = realloc(k->a, (k->cap + 1) * sizeof(*a));
      if (a) {
        k->a = a;
        k->cap++;
      }
    }
    if (k->n < k->cap) k->a[k->n++] = k->rechain;
  }
  if (k->n) qsort(k->a, k->n, sizeof(*k->a), anchor_cmp);
  n = 0;
  for (size_t i = 0; i < k->n; i++)
    if (n == 0 || anchor_cmp(&k->a[n - 1], &k->a[i]) != 0) k->a[n++] = k->a[i];
  k->n = n;
  tt_audit_walk_anchors(w, k->a, k->n);
  /* Erase lines, by erasure; the store and the file hold the same ones. Two that differ for
   * one erasure are a problem (the first is kept); lines of erasures a cut pruned are dropped. */
  if (k->nerasures) qsort(k->erasures, k->nerasures, sizeof(*k->erasures), release_cmp);
  n = 0;
  for (size_t i = 0; i < k->nerasures; i++) {
    tt_audit_release_t *r = &k->erasures[i];
    if (w->based && r->by <= w->base) continue;
    if (n && k->erasures[n - 1].by == r->by) {
      if (k->erasures[n - 1].count != r->count || memcmp(k->erasures[n - 1].acc, r->acc, 32) != 0)
        tt_audit_walk_problem(w, r->by, "two different erase lines are signed for entry %lld", (long long)r->by);
      continue;
    }
    k->erasures[n++] = *r;
  }
  k->nerasures = n;
  w->signed_erasures = k->erasures;
  w->nsigned = k->nerasures;
  w->erasures_signed = true;
}

void tt_audit_anchors_free(tt_audit_anchors_t *k) {
  free(k->erasures);
  free(k->a);
  memset(k, 0, sizeof(*k));
}
