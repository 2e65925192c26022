/* Audit entries: every decision the broker takes about who may do what goes into the
 * store's hash-chained log. Details are a small JSON object built here, values escaped. */
#include <stdarg.h>
#include <stdio.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include <string.h>
#include "broker.h"
#include "tt/hex.h"
#include "tt/json.h"
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

/* Controls and DEL as \u00XX, with no \n short forms: the detail's spelling since the first
 * entry, so that one event never reads two ways in one chain. */
static void put_json_str(detail_t *d, const char *v) {
  put(d, "\"", 1);
  for (; *v; v++) {
    char esc[TT_JSON_ESC_MAX];
    size_t n = tt_json_escape_byte(esc, (uint8_t)*v, TT_JSON_ESC_DEL);
    put(d, n ? esc : v, n ? n : 1);
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
    if (k[0] == '?') { /* optional: only when it has a value */
      if (!v || !v[0]) {
        n--;
        continue;
      }
      k++;
    }
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
  char hex[TT_HEX_CAP(32)];
  store_svc_audit_head(b->svc, &id, h);
  tt_hex(hex, sizeof(hex), h, sizeof(h));
  TT_INFO("audit", "audit head", "when=%s id=%lld sha256=%s", when, (long long)id, hex);
}

/* ---- signed checkpoints ------------------------------------------------------------------
 * At start, at stop and every audit.checkpoint_interval (when the chain grew), the store
 * thread signs the chain's head as it stands after everything queued before, writes the
 * checkpoint into the store and appends its line to the checkpoint file outside the store
 * (fsynced), and the loop logs it. The broker's own TLS key signs: only the broker has it,
 * and its certificate, which the CA issued, travels in the line. */
typedef struct {
  store_req_t req;
  broker_t *b;
  char when[16];
  bool only_if_grown;
  bool skipped, file_ok;
  tt_audit_checkpoint_t cp;
  char line[TT_AUDIT_CP_LINE_MAX];
} checkpoint_req_t;

/* One whole line or nothing: a write that fails part way (a full disk) is cut back, so the
 * next checkpoint never lands glued to half a line. */
static int append_line(const char *path, const char *line) {
  int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return -errno;
  struct stat st;
  int rc = fstat(fd, &st) == 0 ? 0 : -errno;
  size_t len = strlen(line), off = 0;
  while (rc == 0 && off < len) {
    ssize_t n = write(fd, line + off, len - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      rc = n < 0 ? -errno : TT_EIO;
      break;
    }
    off += (size_t)n;
  }
  if (rc == 0 && fsync(fd) != 0) rc = -errno;
  if (rc != 0 && off > 0 && ftruncate(fd, st.st_size) != 0)
    TT_ERROR("audit", "half a checkpoint line left in its file", "file=%s", path);
  if (close(fd) != 0 && rc == 0) rc = -errno;
  return rc;
}

/* In the batch: nothing. The checkpoint is of what is on disk, so it is made once the
 * batch (with every entry queued before it) has committed. */
static int checkpoint_run(broker_store_t *s, store_req_t *r) { return 0; }

static int checkpoint_after_commit(broker_store_t *s, store_req_t *r) {
  checkpoint_req_t *x = (checkpoint_req_t *)r;
  broker_t *b = x->b;
  store_audit_head(s, &x->cp.entries, x->cp.head);
  /* Only the store thread reads and writes this: the last head it signed. */
  if (x->only_if_grown && x->cp.entries == b->checkpointed) {
    x->skipped = true;
    return 0;
  }
  x->cp.ts_ms = (int64_t)broker_unix_ms();
  int rc = tt_audit_checkpoint_sign(&x->cp, b->cp_key, b->cp_cert);
  if (rc == 0) rc = tt_audit_checkpoint_format(&x->cp, x->line, sizeof(x->line));
  if (rc) return rc;
  /* The row is committed durably (the WAL synced, with every commit before it) before the
   * line goes to the file: a power loss can never leave a signed head that the store lost. */
  rc = store_set_durable(s, true);
  if (rc == 0) rc = store_checkpoint_commit(s, &x->cp, x->line);
  int drc = store_set_durable(s, false);
  if (rc == 0) rc = drc;
  if (rc) return rc;
  int frc = append_line(b->checkpoint_file, x->line);
  x->file_ok = frc == 0;
  if (frc) TT_ERROR("audit", "checkpoint not written to its file", "file=%s err=%s", b->checkpoint_file, tt_strerror(frc));
  b->checkpointed = x->cp.entries;
  return 0;
}

static void checkpoint_done(store_req_t *r) {
  checkpoint_req_t *x = (checkpoint_req_t *)r;
  if (r->rc) {
    TT_ERROR("audit", "audit checkpoint failed", "when=%s err=%s", x->when, tt_errname(r->rc));
  } else if (!x->skipped) {
    char hex[TT_HEX_CAP(32)];
    tt_hex(hex, sizeof(hex), x->cp.head, sizeof(x->cp.head));
    TT_INFO("audit", "audit checkpoint", "when=%s entries=%" PRId64 " sha256=%s file=%s", x->when, x->cp.entries, hex,
            x->file_ok ? "written" : "FAILED");
  }
  free(x);
}

void broker_audit_checkpoint(broker_t *b, const char *when, bool only_if_grown) {
  checkpoint_req_t *x = calloc(1, sizeof(*x));
  if (!x) {
    TT_ERROR("audit", "audit checkpoint failed", "when=%s err=%s", when, tt_errname(TT_ENOMEM));
    return;
  }
  x->req.run = checkpoint_run;
  x->req.after_commit = checkpoint_after_commit;
  x->req.done = checkpoint_done;
  x->req.lane = STORE_LANE_WRITE;
  x->req.what = "audit_checkpoint";
  x->b = b;
  x->only_if_grown = only_if_grown;
  snprintf(x->when, sizeof(x->when), "%s", when);
  int rc = store_svc_submit(b->svc, &x->req);
  if (rc) {
    TT_ERROR("audit", "audit checkpoint failed", "when=%s err=%s", when, tt_errname(rc));
    free(x);
  }
}

/* ---- verifying against the checkpoints --------------------------------------------------- */

static int anchor_cmp(const void *a, const void *b) {
  const tt_audit_anchor_t *x = a, *y = b;
  if (x->entries != y->entries) return x->entries < y->entries ? -1 : 1;
  return memcmp(x->head, y->head, 32);
}

static int add_line(broker_audit_check_t *k, const char *where, const char *line) {
  tt_audit_checkpoint_t cp;
  char why[160];
  k->lines++;
  if (tt_audit_checkpoint_parse(line, &cp)) {
    tt_audit_walk_problem(&k->walk, 0, "%s: line %u is not a checkpoint", where, k->lines);
    return 0;
  }
  if (tt_audit_checkpoint_verify(&cp, k->ca, why, sizeof(why))) {
    tt_audit_walk_problem(&k->walk, 0, "%s: the checkpoint for %lld entries is forged: %s", where,
                          (long long)cp.entries, why);
    return 0;
  }
  if (k->nanchors >= TT_AUDIT_CHECKPOINTS_MAX) return TT_ETOOBIG;
  if (k->nanchors == k->cap) {
    size_t cap = k->cap ? 2 * k->cap : 64;
    tt_audit_anchor_t *n = realloc(k->anchors, cap * sizeof(*n));
    if (!n) return TT_ENOMEM;
    k->anchors = n;
    k->cap = cap;
  }
  tt_audit_anchor_t *a = &k->anchors[k->nanchors++];
  a->entries = cp.entries;
  memcpy(a->head, cp.head, 32);
  a->ts_ms = cp.ts_ms;
  return 0;
}

static int store_line_cb(void *ctx, const char *line) { return add_line(ctx, "the store", line); }

int broker_audit_check(broker_store_t *s, broker_audit_check_t *k) {
  int rc = store_checkpoints(s, store_line_cb, k);
  if (rc) return rc;
  FILE *f = fopen(k->file, "re");
  if (!f && errno != ENOENT) {
    tt_audit_walk_problem(&k->walk, 0, "the checkpoint file %s cannot be read: %s", k->file, strerror(errno));
  } else if (f) {
    char line[TT_AUDIT_CP_LINE_MAX + 2];
    k->lines = 0;
    while (rc == 0 && fgets(line, sizeof(line), f)) rc = add_line(k, "the checkpoint file", line);
    fclose(f);
    if (rc) return rc;
  }
  /* The file and the store hold the same checkpoints: each counts once. */
  if (k->nanchors) qsort(k->anchors, k->nanchors, sizeof(*k->anchors), anchor_cmp);
  size_t n = 0;
  for (size_t i = 0; i < k->nanchors; i++)
    if (n == 0 || anchor_cmp(&k->anchors[n - 1], &k->anchors[i]) != 0) k->anchors[n++] = k->anchors[i];
  k->nanchors = n;
  tt_audit_walk_anchors(&k->walk, k->anchors, n);
  return store_audit_walk(s, &k->walk);
}
