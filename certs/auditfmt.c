/* The audit trail for other systems (tt/auditfmt.h): JSON lines, CEF and RFC 5424, and the
 * OCSF class of each action. */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "tt/audit.h"
#include "tt/auditfmt.h"
#include "tt/err.h"
#include "tt/hex.h"
#include "tt/json.h"

/* ---- OCSF ---------------------------------------------------------------------------------- */

static bool starts(const char *s, const char *prefix) { return strncmp(s, prefix, strlen(prefix)) == 0; }

static bool any(const char *s, const char *const *list) {
  for (; *list; list++)
    if (strcmp(s, *list) == 0) return true;
  return false;
}

void tt_audit_ocsf(const char *action, const char *detail, tt_ocsf_t *out) {
  static const char *const auth[] = {"connect", "disconnect", "refuse", "refuse-summary", "enroll", "enroll-refused",
                                     "renew", "act-as-refused", NULL};
  static const char *const account[] = {"person-add", "person-level", "revoke", "ssh-key-add", "ssh-key-remove",
                                        "token-new", "person-export", "person-erase", NULL};
  static const char *const severe[] = {"refuse", "refuse-summary", "enroll-refused", "act-as-refused", "revoke",
                                       "channel-refused", "help-refused", "policy-refused", "asset-import-refused",
                                       "recording-failed", "file-refused", "file-push-failed", "person-erase", NULL};
  bool ssh = detail && strstr(detail, "\"via\":\"ssh\"") != NULL;
  if (strcmp(action, "act-as") == 0 || (ssh && (starts(action, "session-") || starts(action, "channel-"))))
    *out = (tt_ocsf_t){4007, "SSH Activity", 4, 1};
  else if (any(action, auth))
    *out = (tt_ocsf_t){3002, "Authentication", 3, 1};
  else if (starts(action, "file-"))
    *out = (tt_ocsf_t){1001, "File System Activity", 1, 1};
  else if (any(action, account))
    *out = (tt_ocsf_t){3001, "Account Change", 3, 1};
  else
    *out = (tt_ocsf_t){6003, "API Activity", 6, 1};
  if (any(action, severe)) out->severity_id = 3;
}

int tt_auditfmt_parse(const char *name, tt_auditfmt_t *out) {
  if (strcmp(name, "jsonl") == 0 || strcmp(name, "json") == 0) *out = TT_AUDITFMT_JSONL;
  else if (strcmp(name, "cef") == 0) *out = TT_AUDITFMT_CEF;
  else if (strcmp(name, "rfc5424") == 0 || strcmp(name, "syslog") == 0) *out = TT_AUDITFMT_RFC5424;
  else return TT_EINVAL;
  return 0;
}

const char *tt_auditfmt_name(tt_auditfmt_t f) {
  return f == TT_AUDITFMT_CEF ? "cef" : f == TT_AUDITFMT_RFC5424 ? "rfc5424" : "jsonl";
}

/* ---- a bounded writer ------------------------------------------------------------------------ */

typedef struct {
  char *p;
  size_t len, cap;
  bool full;
} out_t;

static void put(out_t *o, const char *s, size_t n) {
  if (o->full || o->len + n >= o->cap) {
    o->full = true;
    return;
  }
  memcpy(o->p + o->len, s, n);
  o->len += n;
}

static void puts_(out_t *o, const char *s) { put(o, s, strlen(s)); }

static void putn(out_t *o, long long v) {
  char b[24];
  int n = snprintf(b, sizeof b, "%lld", v);
  put(o, b, (size_t)n);
}

/* The text before %lld, the number, the text after. */
static void putf(out_t *o, const char *fmt, long long v) {
  const char *at = strstr(fmt, "%lld");
  put(o, fmt, (size_t)(at - fmt));
  putn(o, v);
  puts_(o, at + 4);
}

static void json_str(out_t *o, const char *s) {
  put(o, "\"", 1);
  for (; *s; s++) {
    char esc[TT_JSON_ESC_MAX];
    size_t n = tt_json_escape_byte(esc, (uint8_t)*s, TT_JSON_ESC_DEL);
    put(o, n ? esc : s, n ? n : 1);
  }
  put(o, "\"", 1);
}

/* CEF: header fields escape | and \; extension values escape = and \ and carry line ends as
 * \n and \r. Other controls are dropped (a CEF line is one line). */
static void cef_esc(out_t *o, const char *s, bool header) {
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '\\' || (header && c == '|') || (!header && c == '=')) {
      put(o, "\\", 1);
      put(o, s, 1);
    } else if (c == '\n') {
      puts_(o, header ? " " : "\\n");
    } else if (c == '\r') {
      puts_(o, header ? " " : "\\r");
    } else if (c >= 0x20 && c != 0x7f) {
      put(o, s, 1);
    }
  }
}

/* RFC 5424 SD-PARAM value: ", \ and ] escaped with a backslash; controls dropped. */
static void sd_esc(out_t *o, const char *s) {
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\' || c == ']') {
      put(o, "\\", 1);
      put(o, s, 1);
    } else if (c >= 0x20 && c != 0x7f) {
      put(o, s, 1);
    }
  }
}

/* As it is, on one line: controls dropped (a syslog MSG). */
static void one_line(out_t *o, const char *s) {
  for (; *s; s++)
    if ((unsigned char)*s >= 0x20 && *s != 0x7f) put(o, s, 1);
}

/* PRINTUSASCII without spaces, at most max characters, "-" when empty (HOSTNAME, MSGID). */
static void token(out_t *o, const char *s, size_t max) {
  size_t n = 0;
  for (; *s && n < max; s++)
    if (*s > 32 && *s < 127) put(o, s, 1), n++;
  if (n == 0) put(o, "-", 1);
}

static void iso(char *out, size_t cap, int64_t ts_ms) {
  time_t t = (time_t)(ts_ms / 1000);
  struct tm tm;
  gmtime_r(&t, &tm);
  char base[32];
  strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(out, cap, "%s.%03dZ", base, (int)(ts_ms % 1000));
}

/* The broker writes details as flat objects of strings; anything else goes as a string. */
static bool flat_object(const char *detail) {
  tt_audit_pair_t p[TT_AUDIT_VALUES_MAX];
  size_t n = tt_audit_split("", "", detail, p);
  return !(n == 3 && p[2].klen == 1 && p[2].key[0] == TT_AUDIT_WHOLE_DETAIL[0] && p[2].val == detail);
}

int tt_auditfmt_write(tt_auditfmt_t f, const tt_audit_view_t *e, char *buf, size_t cap) {
  out_t o = {buf, 0, cap, false};
  char when[40], hash[TT_HEX_CAP(32)], prev[TT_HEX_CAP(32)];
  iso(when, sizeof when, e->ts_ms);
  tt_hex(hash, sizeof hash, e->hash, 32);
  tt_hex(prev, sizeof prev, e->prev_hash, 32);
  tt_ocsf_t c;
  tt_audit_ocsf(e->action, e->detail, &c);
  switch (f) {
  case TT_AUDITFMT_JSONL:
    putf(&o, "{\"seq\":%lld,\"time\":\"", e->id);
    puts_(&o, when);
    putf(&o, "\",\"ts_ms\":%lld,\"actor\":", e->ts_ms);
    json_str(&o, e->actor);
    puts_(&o, ",\"action\":");
    json_str(&o, e->action);
    puts_(&o, ",\"target\":");
    json_str(&o, e->target);
    puts_(&o, ",\"detail\":");
    if (flat_object(e->detail)) puts_(&o, e->detail); /* the broker's own JSON, escaped when written */
    else json_str(&o, e->detail);
    puts_(&o, ",\"hash\":\"");
    puts_(&o, hash);
    puts_(&o, "\",\"prev_hash\":\"");
    puts_(&o, prev);
    putf(&o, "\",\"ocsf\":{\"class_uid\":%lld,\"class_name\":\"", c.class_uid);
    puts_(&o, c.class_name);
    putf(&o, "\",\"category_uid\":%lld", c.category_uid);
    putf(&o, ",\"severity_id\":%lld}}", c.severity_id);
    break;
  case TT_AUDITFMT_CEF:
    puts_(&o, "CEF:0|Tether|tether-broker|");
    cef_esc(&o, e->version ? e->version : "", true);
    put(&o, "|", 1);
    cef_esc(&o, e->action, true);
    put(&o, "|", 1);
    cef_esc(&o, e->action, true);
    putf(&o, "|%lld|", c.severity_id == 3 ? 6 : 3);
    putf(&o, "rt=%lld", e->ts_ms);
    putf(&o, " externalId=%lld cn1Label=seq", e->id);
    putf(&o, " cn1=%lld", e->id);
    puts_(&o, " suser=");
    cef_esc(&o, e->actor, false);
    puts_(&o, " duser=");
    cef_esc(&o, e->target, false);
    puts_(&o, " act=");
    cef_esc(&o, e->action, false);
    puts_(&o, " cat=");
    cef_esc(&o, c.class_name, false);
    puts_(&o, " cs1Label=chainHash cs1=");
    puts_(&o, hash);
    puts_(&o, " cs2Label=prevHash cs2=");
    puts_(&o, prev);
    putf(&o, " cn2Label=ocsfClass cn2=%lld", c.class_uid);
    puts_(&o, " msg=");
    cef_esc(&o, e->detail, false);
    break;
  case TT_AUDITFMT_RFC5424:
    /* facility 13 (log audit); severity notice (5) for refusals and the like, else info (6) */
    putf(&o, "<%lld>1 ", 13 * 8 + (c.severity_id == 3 ? 5 : 6));
    puts_(&o, when);
    put(&o, " ", 1);
    token(&o, e->host ? e->host : "", 255);
    puts_(&o, " tether-broker - ");
    token(&o, e->action, 32);
    putf(&o, " [tether@32473 seq=\"%lld\" actor=\"", e->id);
    sd_esc(&o, e->actor);
    puts_(&o, "\" target=\"");
    sd_esc(&o, e->target);
    puts_(&o, "\" hash=\"");
    puts_(&o, hash);
    puts_(&o, "\" prev=\"");
    puts_(&o, prev);
    putf(&o, "\" ocsf_class=\"%lld\"] ", c.class_uid);
    one_line(&o, e->detail);
    break;
  }
  buf[o.len] = '\0'; /* o.len < cap always: a cut message is still a string */
  if (o.full) return TT_ETOOBIG;
  return (int)o.len;
}
