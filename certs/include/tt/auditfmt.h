/* The audit trail as other systems read it: one entry as a JSON line, an ArcSight CEF line or
 * an RFC 5424 syslog message, each carrying the entry's sequence number and chain hash, and
 * the OCSF class it maps to. One writer for `tether audit follow` and the broker's SIEM feed,
 * so that the two streams are the same bytes. README "SIEM feed" documents the schema. */
#ifndef TT_AUDITFMT_H
#define TT_AUDITFMT_H

#include <stddef.h>
#include <stdint.h>

/* The longest message: an entry is at most ~1.3 KiB of fields, each escaped at most 6-fold in
 * the worst case (controls as \u00XX) but in practice close to 1:1. */
#define TT_AUDITFMT_MAX 8192u

typedef enum { TT_AUDITFMT_JSONL = 0, TT_AUDITFMT_CEF = 1, TT_AUDITFMT_RFC5424 = 2 } tt_auditfmt_t;

typedef struct {
  int64_t id, ts_ms;
  const char *actor, *action, *target, *detail; /* as stored; detail a JSON object's text */
  const uint8_t *hash, *prev_hash;              /* 32 bytes each */
  const char *host;                             /* the broker's host (RFC 5424 HOSTNAME); "" = "-" */
  const char *version;                          /* the broker's software version (CEF) */
} tt_audit_view_t;

/* The OCSF class an action maps to (https://schema.ocsf.io, version 1.x). */
typedef struct {
  unsigned class_uid;        /* 3002 Authentication, 4007 SSH Activity, 1001 File System Activity,
                              * 3001 Account Change, 6003 API Activity (everything else) */
  const char *class_name;
  unsigned category_uid;     /* class_uid / 1000 */
  unsigned severity_id;      /* 1 informational, 3 medium (refusals, revocations, failures) */
} tt_ocsf_t;

void tt_audit_ocsf(const char *action, const char *detail, tt_ocsf_t *out);

/* "jsonl", "cef", "rfc5424" (or "syslog"). TT_EINVAL otherwise. */
int tt_auditfmt_parse(const char *name, tt_auditfmt_t *out);
const char *tt_auditfmt_name(tt_auditfmt_t f);

/* One entry, without a line end, into out (NUL-terminated): its length, or TT_ETOOBIG. */
int tt_auditfmt_write(tt_auditfmt_t f, const tt_audit_view_t *e, char *out, size_t cap);

#endif
