/* tether person erase NAME --reason TEXT [--dry-run] (admins): every value that names one person
 * becomes a pseudonym (erased-<12 hex>, random: it cannot be worked back to the name), their
 * diagnostics reports and recordings go, the audit values that named them are released, and
 * the erasure's own audit entry (person-erase, its target the pseudonym, the reason with the
 * name replaced) commits to what it released (tt/audit.h), so `audit verify` still says
 * intact. One transaction on the writer with SQLite's secure_delete on; after the commit the
 * recording files are deleted and the write-ahead log is truncated, so no old page keeps the
 * name. The store does the finding (store/records/erase.c); this file asks and answers. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include "broker.h"
#include "tt/hex.h"
#include "tt/log.h"
#include "tt/msg.h"

#define MOD "erase"
#define ERASE_NAME_MIN 3u

typedef struct {
  broker_creq_t h;
  store_erase_t e;
  char by[TT_NAME_MAX + 1];
  char reason[TT_TEXT_MAX + 1];
  char data_dir[1024];
  broker_t *b;
  char line[TT_AUDIT_CP_LINE_MAX]; /* the signed erase line, for the checkpoint file */
  int64_t now_ms;
  uint32_t files_deleted, files_failed;
  bool scrubbed;
} erase_req_t;

static const char *const k_kinds[STORE_EC_N] = {
    [STORE_EC_TICKETS] = "tickets",       [STORE_EC_EVENTS] = "events", [STORE_EC_SESSIONS] = "sessions",
    [STORE_EC_RECORDINGS] = "recordings", [STORE_EC_DIAG] = "diagnostics", [STORE_EC_HELP] = "help",
    [STORE_EC_AUDIT] = "audit",           [STORE_EC_OTHER] = "other",
};

/* The erasure's own entry and its signed line, in the erasure's transaction: the reason says
 * why without the name. */
static int erase_audit(void *ctx, broker_store_t *s, const store_erase_t *e, const uint8_t acc[32], int64_t *id) {
  erase_req_t *x = ctx;
  char *why = store_erase_rewrite(x->reason, strlen(x->reason), e->name, e->pseudonym, TT_TEXT_MAX, NULL);
  if (!why) return TT_ENOMEM;
  int64_t records = 0, held = 0;
  for (int i = 0; i < STORE_EC_N; i++) records += e->changed[i], held += e->held[i];
  char released[24], rec[24], hl[24], values[TT_HEX_CAP(32)];
  snprintf(released, sizeof released, "%" PRId64, e->released);
  snprintf(rec, sizeof rec, "%" PRId64, records);
  snprintf(hl, sizeof hl, "%" PRId64, held);
  tt_hex(values, sizeof values, acc, 32);
  store_audit_rec_t a;
  broker_audit_rec(&a, x->by, TT_AUDIT_ERASE_ACTION, e->pseudonym, "reason", why, "records", rec, "held", hl,
                   "released", released, "values", values, AUDIT_END);
  free(why);
  return broker_audit_erasure(x->b, s, &a, e->released, acc, id, x->line, sizeof x->line);
}

static int erase_run(broker_store_t *s, store_req_t *r) {
  erase_req_t *x = (erase_req_t *)r;
  int rc = store_secure_delete(s, true);
  if (rc == 0) rc = store_person_erase(s, &x->e, erase_audit, x);
  if (store_secure_delete(s, false) != 0) TT_WARN(MOD, "secure_delete left on", "err=%s", tt_errname(TT_EIO));
  return rc;
}

/* Committed: the files, then the old pages in the write-ahead log. */
static int erase_after_commit(broker_store_t *s, store_req_t *r) {
  erase_req_t *x = (erase_req_t *)r;
  if (x->e.dry_run || !x->e.erasure) return 0;
  if (broker_audit_append_line(x->b, x->line) != 0) /* the store has it: copied at the next start */
    TT_ERROR(MOD, "erase line not written to the checkpoint file", "erasure=%" PRId64, x->e.erasure);
  int rc = store_erase_files(s, x->data_dir, x->e.erasure, &x->files_deleted, &x->files_failed);
  if (rc) TT_ERROR(MOD, "erased recordings' files not all deleted", "erasure=%" PRId64 " err=%s", x->e.erasure,
                   tt_errname(rc));
  if (store_erase_scrub(s, &x->scrubbed) != 0) x->scrubbed = false;
  TT_INFO(MOD, "person erased", "erasure=%" PRId64 " pseudonym=%s released=%" PRId64 " files=%u failed=%u wal=%s",
          x->e.erasure, x->e.pseudonym, x->e.released, x->files_deleted, x->files_failed,
          x->scrubbed ? "truncated" : "kept by a reader");
  return 0; /* the erasure stands: what could not follow is in the answer and the log */
}

static int send_result(broker_conn_t *c, erase_req_t *x) {
  Tether__PersonEraseCount cnt[STORE_EC_N], *cp[STORE_EC_N];
  uint64_t held[STORE_ERASE_HELD_MAX];
  for (int i = 0; i < STORE_EC_N; i++) {
    tether__person_erase_count__init(&cnt[i]);
    cnt[i].kind = tt_text(k_kinds[i]);
    cnt[i].erased = (uint64_t)x->e.changed[i];
    cnt[i].held = (uint64_t)x->e.held[i];
    cp[i] = &cnt[i];
  }
  for (uint32_t i = 0; i < x->e.nheld_tickets; i++) held[i] = (uint64_t)x->e.held_tickets[i];
  Tether__PersonEraseResult v = TETHER__PERSON_ERASE_RESULT__INIT;
  v.pseudonym = tt_text(x->e.pseudonym);
  v.erasure = (uint64_t)x->e.erasure;
  v.counts = cp;
  v.n_counts = STORE_EC_N;
  v.held_tickets = held;
  v.n_held_tickets = x->e.nheld_tickets;
  v.released = (uint64_t)x->e.released;
  v.files_deleted = x->files_deleted;
  v.files_failed = x->files_failed;
  v.dry_run = x->e.dry_run;
  v.scrubbed = x->scrubbed;
  Tether__Response resp = TETHER__RESPONSE__INIT;
  resp.id = x->h.id;
  resp.body_case = TETHER__RESPONSE__BODY_PERSON_ERASE;
  resp.person_erase = &v;
  return tt_link_send(c->link, TT_K_RESPONSE, &resp.base);
}

static void erase_done(store_req_t *r) {
  erase_req_t *x = (erase_req_t *)r;
  broker_conn_t *c = broker_creq_conn(x);
  if (r->rc && x->e.refused[0]) /* an attempt refused is on the record too (nothing was erased) */
    broker_audit(x->b, x->by, "person-erase-refused", x->e.name, "why", x->e.refused, AUDIT_END);
  if (c) {
    int rc;
    if (r->rc == 0) rc = send_result(c, x);
    else if (x->e.refused[0]) rc = broker_reply_error(c, x->h.id, r->rc, x->e.refused);
    else if (r->rc == TT_ETOOBIG)
      rc = broker_reply_error(c, x->h.id, TT_ETOOBIG, "an audit entry would not hold the pseudonym: nothing was erased");
    else rc = broker_reply_error(c, x->h.id, TT_EIO, "the broker could not erase: nothing was changed (see its log)");
    if (rc) tt_link_close(c->link, rc, "peer not reading");
  }
  free(x);
}

int broker_erase_key_init(const char *data_dir, broker_store_t *s, char *err, size_t cap) {
  char path[600];
  snprintf(path, sizeof path, "%.580s/erase.key", data_dir);
  uint8_t key[32];
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0 && errno == ENOENT) {
    /* The first start makes a key of its own, never in the store. Erased people's revocations
     * already kept under a key that is gone would no longer hold: then the broker does not
     * start without it. */
    int64_t kept = 0;
    if (store_erase_revocations(s, &kept) != 0 || kept) {
      snprintf(err, cap, "%s is missing, and %lld erased people's revocations are kept under it: restore it from "
                         "the backup of this data directory", path, (long long)kept);
      return TT_ECONFIG;
    }
    if (RAND_bytes(key, sizeof key) != 1) {
      snprintf(err, cap, "no random bytes for %s", path);
      return TT_EIO;
    }
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
      snprintf(err, cap, "cannot make %s: %s", path, strerror(errno));
      return TT_EIO;
    }
    bool ok = write(fd, key, sizeof key) == (ssize_t)sizeof key && fsync(fd) == 0;
    int e = errno;
    close(fd);
    int dfd = ok ? open(data_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
    if (ok && (dfd < 0 || fsync(dfd) != 0)) ok = false, e = errno; /* the name, too, must survive a crash */
    if (dfd >= 0) close(dfd);
    if (!ok) {
      snprintf(err, cap, "cannot write %s: %s", path, strerror(e));
      unlink(path); /* ours, half made */
      return TT_EIO;
    }
  } else {
    ssize_t n = fd >= 0 ? read(fd, key, sizeof key) : -1;
    uint8_t more;
    bool whole = n == (ssize_t)sizeof key && read(fd, &more, 1) == 0;
    if (fd >= 0) close(fd);
    if (!whole) {
      snprintf(err, cap, "%s is not a 32-byte key: restore it from the backup of this data directory", path);
      return TT_ECONFIG;
    }
  }
  store_erase_set_key(key);
  OPENSSL_cleanse(key, sizeof key);
  return 0;
}

int broker_person_erase(broker_conn_t *c, uint32_t id, const Tether__PersonEraseRequest *q) {
  char name[STORE_NAME_MAX], reason[TT_TEXT_MAX + 1];
  if (!q->name.len || tt_text_copy(name, sizeof name, q->name) || strchr(name, '"') || strchr(name, '\\'))
    return broker_reply_error(c, id, TT_EINVAL, "not a person's name");
  /* A name is found as a word in free text: a short one would take words that are not it. */
  if (strlen(name) < ERASE_NAME_MIN)
    return broker_reply_error(c, id, TT_EINVAL, "a name to erase has at least 3 characters");
  if (!q->reason.len || tt_text_copy(reason, sizeof reason, q->reason))
    return broker_reply_error(c, id, TT_EINVAL, "say why (--reason), in one line of at most 256 bytes");
  erase_req_t *x = broker_creq_new(c, id, sizeof(*x), STORE_LANE_WRITE, erase_run, erase_done, "person_erase");
  if (!x) return TT_ENOMEM;
  uint8_t rnd[6];
  if (RAND_bytes(rnd, sizeof rnd) != 1) {
    free(x);
    return broker_reply_error(c, id, TT_EIO, "no random bytes for a pseudonym");
  }
  char hex[TT_HEX_CAP(sizeof rnd)];
  tt_hex(hex, sizeof hex, rnd, sizeof rnd);
  snprintf(x->e.pseudonym, sizeof x->e.pseudonym, "erased-%s", hex);
  snprintf(x->e.name, sizeof x->e.name, "%s", name);
  x->e.dry_run = q->dry_run;
  snprintf(x->by, sizeof x->by, "%s", c->id.name);
  snprintf(x->e.by, sizeof x->e.by, "%s", c->id.name);
  x->b = c->b;
  snprintf(x->reason, sizeof x->reason, "%s", reason);
  snprintf(x->data_dir, sizeof x->data_dir, "%s", c->b->cfg.data_dir);
  x->h.req.after_commit = erase_after_commit;
  if (q->dry_run) { /* looking is audited too; the erasure writes its own entry */
    broker_audit_rec(&x->h.audit, c->id.name, "person-erase-dry-run", name, AUDIT_END);
    x->h.req.audit = &x->h.audit;
  }
  return broker_creq_submit(x);
}
