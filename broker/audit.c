/* Audit entries: every decision the broker takes about who may do what goes into the
 * store's hash-chained log. Details are a small JSON object built here, values escaped. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "broker.h"
#include "tt/log.h"

#define DETAIL_MAX 511 /* store_audit_t.detail holds 512 with its NUL */

typedef struct {
  char s[DETAIL_MAX + 1];
  size_t len;
  bool cut;
} detail_t;

/* Every byte goes through here; two are always kept for the closing brace and the NUL. */
static void put(detail_t *d, const char *p, size_t n) {
  if (d->cut || d->len + n > DETAIL_MAX - 1) {
    d->cut = true;
    return;
  }
  memcpy(d->s + d->len, p, n);
  d->len += n;
}

static void put_json_str(detail_t *d, const char *v) {
  put(d, "\"", 1);
  for (; *v; v++) {
    unsigned char c = (unsigned char)*v;
    char esc[8];
    if (c == '"' || c == '\\') {
      esc[0] = '\\';
      esc[1] = (char)c;
      put(d, esc, 2);
    } else if (c < 0x20 || c == 0x7f) {
      snprintf(esc, sizeof(esc), "\\u%04x", c);
      put(d, esc, 6);
    } else {
      put(d, (const char *)&c, 1);
    }
  }
  put(d, "\"", 1);
}

/* Each value gets at most this many bytes (cut at a UTF-8 boundary and marked), so that a
 * long value from a peer cannot push the other fields out of the entry. */
#define VALUE_MAX 96u

static const char *cut_value(const char *v, char *buf, size_t cap, bool *cut) {
  size_t n = strlen(v);
  if (n <= VALUE_MAX) return v;
  size_t k = VALUE_MAX;
  while (k > 0 && ((unsigned char)v[k] & 0xc0) == 0x80) k--; /* not inside a character */
  snprintf(buf, cap, "%.*s...", (int)k, v);
  *cut = true;
  return buf;
}

static void audit_fill(store_audit_rec_t *a, const char *actor, const char *action, const char *target,
                       va_list ap) {
  detail_t d = {.len = 0};
  bool cut = false;
  put(&d, "{", 1);
  for (int n = 0;; n++) {
    const char *k = va_arg(ap, const char *);
    if (!k) break;
    const char *v = va_arg(ap, const char *);
    char vbuf[VALUE_MAX + 4];
    v = cut_value(v ? v : "", vbuf, sizeof(vbuf), &cut);
    size_t before = d.len;
    if (n) put(&d, ",", 1);
    put_json_str(&d, k);
    put(&d, ":", 1);
    put_json_str(&d, v);
    if (d.cut) { /* cannot happen with today's callers; keep the JSON valid if it does */
      d.len = before;
      d.cut = false;
      cut = true;
      break;
    }
  }
  if (cut) put(&d, ",\"truncated\":\"yes\"", 18);
  d.s[d.len++] = '}';
  d.s[d.len] = '\0';
  a->ts_ms = (int64_t)broker_unix_ms();
  /* Names come from certificates and the broker's own words: they fit; cut, not overrun. */
  snprintf(a->actor, sizeof(a->actor), "%s", actor ? actor : "");
  snprintf(a->action, sizeof(a->action), "%s", action ? action : "");
  snprintf(a->target, sizeof(a->target), "%s", target ? target : "");
  memcpy(a->detail, d.s, d.len + 1);
}

void broker_audit_rec(store_audit_rec_t *a, const char *actor, const char *action, const char *target, ...) {
  va_list ap;
  va_start(ap, target);
  audit_fill(a, actor, action, target, ap);
  va_end(ap);
}

typedef struct {
  store_req_t req;
  store_audit_rec_t audit;
} audit_req_t;

void broker_audit(broker_t *b, const char *actor, const char *action, const char *target, ...) {
  audit_req_t *x = calloc(1, sizeof(*x));
  if (!x) {
    TT_ERROR("audit", "audit entry not written", "action=%s err=%s", action, tt_errname(TT_ENOMEM));
    return;
  }
  va_list ap;
  va_start(ap, target);
  audit_fill(&x->audit, actor, action, target, ap);
  va_end(ap);
  x->req.audit = &x->audit;
  x->req.what = "audit";
  broker_store_later(b, &x->req);
}

void broker_audit_log_head(broker_t *b, const char *when) {
  int64_t id;
  uint8_t h[32];
  char hex[65];
  store_svc_audit_head(b->svc, &id, h);
  for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", h[i]);
  TT_INFO("audit", "audit head", "when=%s id=%lld sha256=%s", when, (long long)id, hex);
}
