/* The audit trail's format, shared by the broker that writes it and the tools that verify
 * it: how an entry is hashed into the chain. */
#ifndef TT_AUDIT_H
#define TT_AUDIT_H

#include <stddef.h>
#include <stdint.h>

/* Fields of an entry in hash order. */
enum { TT_AUDIT_ACTOR, TT_AUDIT_ACTION, TT_AUDIT_TARGET, TT_AUDIT_DETAIL, TT_AUDIT_NFIELDS };

/* out = sha256(prev(32) || u64be(id) || u64be(ts_ms) || for actor, action, target, detail:
 * u32be(len) || bytes). The length prefixes keep ("ab","c") and ("a","bc") apart.
 * 0, or TT_EIO if the digest failed (logged). */
int tt_audit_hash(const uint8_t prev[32], int64_t id, int64_t ts_ms,
                  const char *const field[TT_AUDIT_NFIELDS], const size_t flen[TT_AUDIT_NFIELDS],
                  uint8_t out[32]);

#endif
