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

/* ---- format 2: personal values are referenced, not hashed in ------------------------------
 * An entry's values are its actor, its target and each value of its detail (a flat JSON object
 * of strings, as the broker writes it: each value taken as written, escapes and all). Each
 * value gets a random salt and a digest = HMAC-SHA256(salt, u32be(n) || value); the chain
 * hashes the action, the detail's keys and the digests, never a value. The store keeps salts
 * and digests beside the entry (audit_values). Erasing a person rewrites their values to a
 * pseudonym and destroys those values' salts: the digest, kept, still links the chain, and
 * without the salt it cannot be tied back to a name (a plain hash of a name could be, by
 * hashing a list of names).
 *   hash = sha256("tether-audit-2" 0x00 || prev(32) || u64be(id) || u64be(ts_ms) ||
 *                 u32be(len) || action || u32be(n) || for each value: u32be(len) || key || digest)
 * The keys of actor and target are "actor" and "target". A detail of another shape (or with
 * more values than fit) is one value whose key is TT_AUDIT_WHOLE_DETAIL, a control character
 * that no key of a flat detail holds raw: {"detail":"x"} and x never hash alike. */
#define TT_AUDIT_WHOLE_DETAIL "\x01"
#define TT_AUDIT_VALUES_MAX 16u
#define TT_AUDIT_SALT_LEN 16u
#define TT_AUDIT_FORMAT 2

typedef struct {
  const char *key, *val;
  size_t klen, vlen;
} tt_audit_pair_t;

typedef struct {
  uint8_t salt[TT_AUDIT_SALT_LEN]; /* released: a new salt, for the new text */
  bool has_salt;
  uint8_t digest[32];  /* what the chain hashes: of the value as written */
  int64_t erased;      /* the entry of the erasure that released it, 0 = never */
  uint8_t digest2[32]; /* released: HMAC-SHA256(salt, u32be(n) || the text it became) */
  bool has_digest2;
} tt_audit_value_t;

/* The entry's values, in hash order, into out; how many (1..TT_AUDIT_VALUES_MAX). The pairs
 * point into the strings given. */
size_t tt_audit_split(const char *actor, const char *target, const char *detail, tt_audit_pair_t out[TT_AUDIT_VALUES_MAX]);
int tt_audit_value_digest(const uint8_t salt[TT_AUDIT_SALT_LEN], uint32_t n, const char *v, size_t vlen,
                          uint8_t out[32]);
/* A new value: a random salt and its digest. */
int tt_audit_value_new(uint32_t n, const char *v, size_t vlen, tt_audit_value_t *out);
int tt_audit_hash2(const uint8_t prev[32], int64_t id, int64_t ts_ms, const char *action, size_t alen,
                   const tt_audit_pair_t *p, const tt_audit_value_t *v, size_t n, uint8_t out[32]);

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

/* A rechain line: the whole chain, intact in format 1 up to ENTRIES with head FROM, was hashed
 * again in format 2 (head HEAD) once, when the broker first ran a version with format 2;
 * checkpoints signed before it anchored format 1 hashes and give way to it:
 *   tether-audit-rechain 1 ENTRIES FROM_HEX HEAD_HEX TS_MS CERT_BASE64 SIG_HEX */
/* A cut line: entries 1 to ENTRIES were pruned by retention, the last of them hashed HEAD;
 * the chain goes on from entry ENTRIES + 1, which must link to HEAD:
 *   tether-audit-cut 1 ENTRIES HEAD_HEX TS_MS CERT_BASE64 SIG_HEX */
/* An erase line: erasure ENTRY released COUNT values and its commitment is ACC (above):
 *   tether-audit-erase 1 ENTRY COUNT ACC_HEX TS_MS CERT_BASE64 SIG_HEX */
typedef enum { TT_AUDIT_CP_CHECKPOINT = 0, TT_AUDIT_CP_RECHAIN = 1, TT_AUDIT_CP_CUT = 2, TT_AUDIT_CP_ERASE = 3 } tt_audit_cp_kind_t;

typedef struct {
  tt_audit_cp_kind_t kind;
  int64_t entries;      /* the chain's length: its head is entry `entries` (0 = empty); ERASE: the erasure */
  uint8_t from[32];     /* RECHAIN: the format 1 head it replaced */
  uint8_t head[32];     /* that entry's hash (zeros when empty); ERASE: the commitment */
  int64_t count;        /* ERASE: how many values it released */
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

/* An erasure (an entry whose action is TT_AUDIT_ERASE_ACTION or TT_AUDIT_RELEASE_ACTION)
 * releases values: it rewrites each one (the pseudonym, or a placeholder), destroys the salt
 * its digest was made with, gives the new text a new salt and digest2, and sets `erased` to
 * its own id. It commits to what it released: acc = 32 zero bytes, then for each released
 * value in (entry, n) order acc = sha256(acc || u64be(entry) || u32be(n) || digest ||
 * digest2), as "released" (how many) and "values" (hex) in its own detail and in a line the
 * broker signs with its key in the same transaction (tether-audit-erase, below): without the
 * key nobody makes an erasure that adds up. The walk checks each released value's text
 * against its digest2, keeps an accumulator per erasure it has not reached yet, and checks it
 * there against the entry and the signed line. */
#define TT_AUDIT_ERASE_ACTION "person-erase"
/* Retention releases the paths of old file transfers the same way (records/retention.c). */
#define TT_AUDIT_RELEASE_ACTION "retention-release"
#define TT_AUDIT_RELEASE_PENDING_MAX 100000u /* erasures whose values the walk holds unchecked */

typedef struct {
  int64_t by;        /* the erasure's entry */
  int64_t count;
  uint8_t acc[32];
} tt_audit_release_t;

/* One step of an erasure's commitment (above). */
int tt_audit_release_step(uint8_t acc[32], int64_t entry, uint32_t n, const uint8_t digest[32],
                          const uint8_t digest2[32]);

typedef struct {
  const tt_audit_anchor_t *anchors; /* sorted by entries */
  size_t nanchors, next_anchor;
  int64_t count;                    /* entries seen */
  int64_t last_id;                  /* the last entry's id */
  int64_t first_bad;                /* the first entry found wrong (0 = none) */
  int64_t base;                     /* entries up to this were pruned (a signed cut): not walked */
  bool based;
  tt_audit_release_t *rel;          /* erasures not reached yet, by `by` (tt_audit_walk_free) */
  size_t nrel, caprel;
  const tt_audit_release_t *signed_erasures; /* the signed erase lines, by `by` (anchors) */
  size_t nsigned;
  bool erasures_signed;             /* checked against them (a walk with its anchors) */
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
/* The same for a format 2 entry: its action, its values (tt_audit_split of what is stored)
 * and their salts and digests. Each value must match its digest under its salt, or have been
 * released by a later erasure that commits to it. */
int tt_audit_walk_entry2(tt_audit_walk_t *w, int64_t id, int64_t ts_ms, const char *action, size_t alen,
                         const tt_audit_pair_t *p, const tt_audit_value_t *v, size_t n, const uint8_t *prev_hash,
                         const uint8_t *hash);
/* A value released by erasure `by` in an entry the walk does not see (pruned before a cut):
 * fed before the first entry, in (entry, n) order, so that the erasure's commitment still adds
 * up. 0 or TT_ENOMEM. */
int tt_audit_walk_released(tt_audit_walk_t *w, int64_t entry, uint32_t n, const uint8_t digest[32],
                           const uint8_t digest2[32], int64_t by);
/* After the last entry: anchors past the end are a cut tail, erasures never reached a problem. */
void tt_audit_walk_finish(tt_audit_walk_t *w);
void tt_audit_walk_free(tt_audit_walk_t *w);
void tt_audit_walk_problem(tt_audit_walk_t *w, int64_t bad_id, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- anchors: checkpoint lines, from a store and a file, checked and put in order --------- */
typedef struct {
  tt_audit_anchor_t *a;
  size_t n, cap;
  bool rechained;               /* a rechain line was found: it and what was signed after it */
  tt_audit_anchor_t rechain;
  uint8_t rechain_from[32];     /* the format 1 head it replaced */
  bool cut;                     /* a cut line was found: the latest (the most entries) */
  tt_audit_anchor_t cut_at;
  tt_audit_release_t *erasures; /* erase lines, sorted by erasure at finish */
  size_t nerasures, caperasures;
} tt_audit_anchors_t;
/* One line, from `where` (for the problems it names): a line that is not a checkpoint, or whose
 * signature does not hold under ca, is a problem in w and adds nothing. TT_ETOOBIG past
 * TT_AUDIT_CHECKPOINTS_MAX, TT_ENOMEM. */
int tt_audit_anchors_add(tt_audit_anchors_t *k, tt_audit_walk_t *w, X509 *ca, const char *where, unsigned lineno,
                         const char *line);
/* Sorted, each once (the store and the file hold the same lines), checkpoints older than a
 * rechain dropped for it, those within a cut dropped and the walk starting after the cut; then
 * set as w's anchors (k must outlive the walk). */
void tt_audit_anchors_finish(tt_audit_anchors_t *k, tt_audit_walk_t *w);
void tt_audit_anchors_free(tt_audit_anchors_t *k);

#endif
