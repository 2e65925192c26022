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
  int fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return -errno;
  struct stat st;
  int rc = fstat(fd, &st) == 0 ? 0 : -errno;
  /* A file that does not end a line (cut short, or edited) gets its line ended first: the
   * line written now is never glued onto another. */
  char last = '\n';
  if (rc == 0 && st.st_size > 0 && pread(fd, &last, 1, st.st_size - 1) != 1) rc = -errno;
  if (rc == 0 && last != '\n' && write(fd, "\n", 1) != 1) rc = -errno;
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

int broker_audit_append_line(broker_t *b, const char *line) { return append_line(b->checkpoint_file, line); }

int broker_audit_erasure(broker_t *b, broker_store_t *s, const store_audit_rec_t *a, int64_t count,
                         const uint8_t acc[32], int64_t *id, char *line, size_t cap) {
  int rc = store_audit_append(s, a->ts_ms, a->actor, a->action, a->target, a->detail, id);
  if (rc) return rc;
  tt_audit_checkpoint_t cp;
  memset(&cp, 0, sizeof cp);
  cp.kind = TT_AUDIT_CP_ERASE;
  cp.entries = *id;
  cp.count = count;
  memcpy(cp.head, acc, 32);
  cp.ts_ms = a->ts_ms;
  rc = tt_audit_checkpoint_sign(&cp, b->cp_key, b->cp_cert);
  if (rc == 0) rc = tt_audit_checkpoint_format(&cp, line, cap);
  if (rc == 0) rc = store_checkpoint_add(s, &cp, line);
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

static int store_line_cb(void *ctx, const char *line) {
  broker_audit_check_t *k = ctx;
  return tt_audit_anchors_add(&k->anchors, &k->walk, k->ca, "the store", ++k->lines, line);
}

static int broker_audit_check_in(broker_store_t *s, broker_audit_check_t *k) {
  int rc = store_checkpoints(s, store_line_cb, k);
  if (rc) return rc;
  unsigned in_store = k->lines;
  FILE *f = fopen(k->file, "re");
  if (!f && (errno != ENOENT || in_store)) {
    /* Checkpoints in the store and no file: the copy outside the store, which a rewrite of the
     * store cannot reach, is gone. */
    tt_audit_walk_problem(&k->walk, 0, "the checkpoint file %s cannot be read (%s), though the store holds %u "
                                       "checkpoints",
                          k->file, strerror(errno), in_store);
  } else if (f) {
    char line[TT_AUDIT_CP_LINE_MAX + 2];
    k->lines = 0;
    while (rc == 0 && fgets(line, sizeof(line), f))
      rc = tt_audit_anchors_add(&k->anchors, &k->walk, k->ca, "the checkpoint file", ++k->lines, line);
    fclose(f);
    if (rc) return rc;
  }
  tt_audit_anchors_finish(&k->anchors, &k->walk);
  return store_audit_walk(s, &k->walk);
}

int broker_audit_check(broker_store_t *s, broker_audit_check_t *k) {
  /* One snapshot of the store for the lines and the walk: an erasure or a cut that commits
   * meanwhile is either wholly in it or not at all. The file is read after the store's lines,
   * so it holds at least theirs. */
  bool snap = store_read_begin(s) == 0;
  int rc = broker_audit_check_in(s, k);
  if (snap) store_read_end(s);
  return rc;
}

/* ---- the one-time rechain to format 2 ------------------------------------------------------ */

static int rechain_sign(void *ctx, tt_audit_checkpoint_t *cp, char *line, size_t cap) {
  broker_t *b = ctx;
  cp->ts_ms = (int64_t)broker_unix_ms();
  int rc = tt_audit_checkpoint_sign(cp, b->cp_key, b->cp_cert);
  return rc ? rc : tt_audit_checkpoint_format(cp, line, cap);
}

/* The rechain and cut lines in the store that the checkpoint file lacks (a crash between
 * the commit and the append, a full disk) go to the file now: an offline check reads only it. */
typedef struct {
  char **lines;
  size_t n, cap;
} lines_t;

static bool special(const char *line) {
  return strncmp(line, "tether-audit-rechain ", 21) == 0 || strncmp(line, "tether-audit-cut ", 17) == 0 ||
         strncmp(line, "tether-audit-erase ", 19) == 0;
}

static int collect_special(void *ctx, const char *line) {
  lines_t *l = ctx;
  if (!special(line)) return 0;
  if (l->n == l->cap) {
    size_t cap = l->cap ? 2 * l->cap : 8;
    char **n = realloc(l->lines, cap * sizeof(*n));
    if (!n) return TT_ENOMEM;
    l->lines = n;
    l->cap = cap;
  }
  if (!(l->lines[l->n] = strdup(line))) return TT_ENOMEM;
  l->n++;
  return 0;
}

static void sync_special_lines(broker_t *b, broker_store_t *s) {
  lines_t st = {0}, in_file = {0};
  if (store_checkpoints(s, collect_special, &st) != 0 || st.n == 0) goto out;
  FILE *f = fopen(b->checkpoint_file, "re");
  if (f) {
    char line[TT_AUDIT_CP_LINE_MAX + 2];
    while (fgets(line, sizeof(line), f))
      if (collect_special(&in_file, line)) break;
    fclose(f);
  }
  for (size_t i = 0; i < st.n; i++) {
    bool found = false;
    for (size_t j = 0; j < in_file.n && !found; j++) found = strcmp(st.lines[i], in_file.lines[j]) == 0;
    if (found) continue;
    /* Only what the broker signed, one line: a row a writer to the store added is not copied
     * into the file that is out of its reach (the walk names it as it finds it in the store). */
    const char *nl = strchr(st.lines[i], '\n');
    tt_audit_checkpoint_t cp;
    char why[160];
    if ((nl && nl[1]) || !nl || tt_audit_checkpoint_parse(st.lines[i], &cp) ||
        tt_audit_checkpoint_verify(&cp, b->ca_cert, why, sizeof why)) {
      TT_ERROR("audit", "a line in the store is not the broker's: not copied to the checkpoint file", "file=%s",
               b->checkpoint_file);
      continue;
    }
    int rc = append_line(b->checkpoint_file, st.lines[i]);
    if (rc) TT_ERROR("audit", "line not written to the checkpoint file", "file=%s err=%s", b->checkpoint_file,
                     tt_strerror(rc));
    else TT_WARN("audit", "a line the checkpoint file lacked was added from the store", "file=%s", b->checkpoint_file);
  }
out:
  for (size_t i = 0; i < st.n; i++) free(st.lines[i]);
  for (size_t i = 0; i < in_file.n; i++) free(in_file.lines[i]);
  free(st.lines);
  free(in_file.lines);
}

int broker_audit_rechain(broker_t *b, broker_store_t *s) {
  sync_special_lines(b, s);
  int64_t old = 0;
  int rc = store_audit_format1(s, &old);
  if (rc || old == 0) return rc;
  broker_audit_check_t *k = calloc(1, sizeof(*k));
  tt_audit_checkpoint_t *cp = calloc(1, sizeof(*cp));
  char *line = malloc(TT_AUDIT_CP_LINE_MAX);
  rc = TT_ENOMEM;
  if (!k || !cp || !line) goto out;
  k->ca = b->ca_cert;
  k->file = b->checkpoint_file;
  tt_audit_walk_init(&k->walk, NULL, 0);
  rc = broker_audit_check(s, k);
  if (rc) goto out;
  if (k->walk.first_bad || k->walk.nproblems) {
    /* Re-hashing a damaged chain would launder the damage under a fresh signature. */
    TT_ERROR("audit", "audit chain damaged: left in format 1", "entries=%" PRId64 " first_bad=%" PRId64 " problem=\"%s\"",
             k->walk.count, k->walk.first_bad, k->walk.nproblems ? k->walk.problems[0] : "");
    rc = 0;
    goto out;
  }
  rc = store_audit_rechain(s, rechain_sign, b, cp, line, TT_AUDIT_CP_LINE_MAX);
  if (rc) {
    TT_ERROR("audit", "audit chain not re-hashed", "err=%s", tt_errname(rc));
    goto out;
  }
  int frc = append_line(b->checkpoint_file, line);
  if (frc) TT_ERROR("audit", "rechain line not written to its file", "file=%s err=%s", b->checkpoint_file, tt_strerror(frc));
  char from[TT_HEX_CAP(32)], to[TT_HEX_CAP(32)];
  tt_hex(from, sizeof(from), cp->from, 32);
  tt_hex(to, sizeof(to), cp->head, 32);
  TT_INFO("audit", "audit chain re-hashed in format 2", "entries=%" PRId64 " format1=%" PRId64 " from=%s to=%s",
          cp->entries, old, from, to);
out:
  if (k) tt_audit_anchors_free(&k->anchors), tt_audit_walk_free(&k->walk);
  free(k);
  free(cp);
  free(line);
  return rc;
}
