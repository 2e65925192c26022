/* The audit trail's format, shared by the broker that writes it and the tools that verify
 * it: how an entry is hashed into the chain. */
#ifndef TT_AUDIT_H
#define TT_AUDIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

/* Fields of an entry in hash order. */
enum { TT_AUDIT_ACTOR, TT_AUDIT_ACTION, TT_AUDIT_TARGET, TT_AUDIT_DETAIL, TT_AUDIT_NFIELDS };

/* out = sha256(prev(32) || u64be(id) || u64be(ts_ms) || for actor, action, target, detail:
 * u32be(len) || bytes). The length prefixes keep ("ab","c") and ("a","bc") apart.
 * 0, or TT_EIO if the digest failed (logged). */
int tt_audit_hash(const uint8_t prev[32], int64_t id, int64_t ts_ms,
                  const char *const field[TT_AUDIT_NFIELDS], const size_t flen[TT_AUDIT_NFIELDS],
                  uint8_t out[32]);

/* ---- signed checkpoints ----------------------------------------------------------------
 * The broker signs the chain's head (how many entries, the last one's hash, when) with its
 * own key, at start, at stop and periodically, and keeps each checkpoint in its store and,
 * one line each, in a file outside it. Rows cut off the end, or a chain rewritten whole
 * with fresh hashes, no longer match a checkpoint, and a checkpoint cannot be forged
 * without the broker's key. One line:
 *   tether-audit-checkpoint 1 ENTRIES HEAD_HEX TS_MS CERT_BASE64 SIG_HEX
 * CERT is the signing broker's certificate (DER), so that the CA certificate alone is
 * enough to check a checkpoint offline. */
#define TT_AUDIT_CP_LINE_MAX 4096u   /* a line: a certificate is well under 2 KiB */
#define TT_AUDIT_CP_SIG_MAX 80u      /* an ECDSA P-256 signature, DER */
#define TT_AUDIT_CP_CERT_MAX 2048u

typedef struct {
  int64_t entries;      /* the chain's length: its head is entry `entries` (0 = empty) */
  uint8_t head[32];     /* that entry's hash (zeros when empty) */
  int64_t ts_ms;        /* when it was signed */
  uint8_t cert[TT_AUDIT_CP_CERT_MAX];
  size_t cert_len;
  uint8_t sig[TT_AUDIT_CP_SIG_MAX];
  size_t sig_len;
} tt_audit_checkpoint_t;

/* Sign cp (entries, head, ts_ms set) with key, whose certificate is cert. */
int tt_audit_checkpoint_sign(tt_audit_checkpoint_t *cp, EVP_PKEY *key, X509 *cert);
/* The line for cp, with its newline, into out (at least TT_AUDIT_CP_LINE_MAX bytes). */
int tt_audit_checkpoint_format(const tt_audit_checkpoint_t *cp, char *out, size_t cap);
/* Parse one line (trailing newline allowed). TT_EINVAL if it is not one. */
int tt_audit_checkpoint_parse(const char *line, tt_audit_checkpoint_t *cp);
/* The signature holds, under a certificate that ca issued to a broker. why says what not. */
int tt_audit_checkpoint_verify(const tt_audit_checkpoint_t *cp, X509 *ca, char *why, size_t cap);

/* ---- verifying a chain ------------------------------------------------------------------
 * Entries are fed in id order; the walk recomputes every hash, follows the links and says
 * what kind of damage it found, with the checkpoints (sorted by entries) as anchors:
 * an edited entry (its hash does not match its fields, or the next entry does not link to
 * it), a missing range (ids skip), a truncated tail (a checkpoint covers more entries than
 * there are), a rewritten chain (an entry's hash differs from what a checkpoint signed). */
#define TT_AUDIT_PROBLEMS_MAX 16u
#define TT_AUDIT_PROBLEM_LEN 200u

typedef struct {
  int64_t entries;
  uint8_t head[32];
  int64_t ts_ms;
} tt_audit_anchor_t;

typedef struct {
  const tt_audit_anchor_t *anchors; /* sorted by entries */
  size_t nanchors, next_anchor;
  int64_t count;                    /* entries seen */
  int64_t last_id;                  /* the last entry's id */
  int64_t first_bad;                /* the first entry found wrong (0 = none) */
  uint8_t prev[32];                 /* the last entry's hash, as stored */
  unsigned nproblems, more_problems;
  char problems[TT_AUDIT_PROBLEMS_MAX][TT_AUDIT_PROBLEM_LEN];
} tt_audit_walk_t;

void tt_audit_walk_init(tt_audit_walk_t *w, const tt_audit_anchor_t *anchors, size_t n);
/* Set the anchors (sorted by entries) after init, checking that later ones never cover
 * fewer entries (a log cut back). */
void tt_audit_walk_anchors(tt_audit_walk_t *w, const tt_audit_anchor_t *anchors, size_t n);
/* One entry: its stored fields, prev_hash and hash (NULL when the row has none). */
int tt_audit_walk_entry(tt_audit_walk_t *w, int64_t id, int64_t ts_ms,
                        const char *const field[TT_AUDIT_NFIELDS], const size_t flen[TT_AUDIT_NFIELDS],
                        const uint8_t *prev_hash, const uint8_t *hash);
/* After the last entry: anchors past the end are a cut tail. */
void tt_audit_walk_finish(tt_audit_walk_t *w);
void tt_audit_walk_problem(tt_audit_walk_t *w, int64_t bad_id, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
