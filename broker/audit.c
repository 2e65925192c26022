/* Audit entries: every decision the broker takes about who may do what goes into the
 * store's hash-chained log. Details are a small JSON object built here, values escaped. */
#include <stdarg.h>
#include <stdio.h>
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

void broker_audit(broker_t *b, const char *actor, const char *action, const char *target, ...) {
  detail_t d = {.len = 0};
  put(&d, "{", 1);
  va_list ap;
  va_start(ap, target);
  for (int n = 0;; n++) {
    const char *k = va_arg(ap, const char *);
    if (!k) break;
    const char *v = va_arg(ap, const char *);
    size_t before = d.len;
    if (n) put(&d, ",", 1);
    put_json_str(&d, k);
    put(&d, ":", 1);
    put_json_str(&d, v ? v : "");
    if (d.cut) { /* drop the field that did not fit whole, keep the JSON valid */
      d.len = before;
      break;
    }
  }
  va_end(ap);
  d.s[d.len++] = '}';
  d.s[d.len] = '\0';
  int rc = store_audit_append(b->store, (int64_t)broker_unix_ms(), actor, action, target ? target : "",
                              d.s, NULL);
  if (rc) TT_ERROR("audit", "audit entry not written", "action=%s err=%s", action, tt_errname(rc));
}
