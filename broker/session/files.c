/* A CHANNEL_FILES relay's records. The broker never reads, stores or inflates chunk data: it
 * peeks at the in-band FileCtl messages only (DATA frames with TT_FF_CTRL), to remember the
 * console's requests by id and to write one audit entry and one ticket event per file on the
 * device's word; what the console says about a file is never a record of it.
 *
 * Each record is one store request carrying both the audit entry and the ticket event, so
 * the two commit together. A record is never dropped for a full queue: it waits in the relay,
 * which holds credit meanwhile (relay.c), and past TT_FILE_RECORDS_HELD_MAX the channel ends.
 * Holding credit alone would not do: it bounds bytes, and a window of tiny files (or of bare
 * ERROR messages from a hostile agent) carries tens of thousands of records. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "broker.h"
#include "tt/hex.h"
#include "tt/log.h"
#include "tt/msg.h"

#define MOD "files"

/* A request of the console the broker saw: what a refusal or a listing names. */
typedef struct {
  uint32_t id;
  Tether__FileMsgType type;   /* FILE_MSG_NONE: a free slot */
  bool recorded;              /* LIST: its entry is written (one per request) */
  bool recursive;             /* LIST: of the whole tree */
  bool self;                  /* LIST: of the path itself (a stat) */
  bool cancelled;             /* the console gave it up: its slot is the first to reuse */
  char path[STORE_TEXT_MAX];  /* as show() makes it */
  char to[STORE_TEXT_MAX];    /* RENAME: the new path */
} files_op_t;

typedef struct files_rec_s files_rec_t;
struct files_rec_s {
  store_req_t req;            /* first: the service's */
  store_audit_rec_t audit;
  files_rec_t *next;          /* held: waiting to be queued */
  broker_files_t *f;
  int64_t ticket;             /* 0: an audit entry only (a listing, a directory made) */
  char actor[STORE_NAME_MAX], kind[STORE_NAME_MAX], text[STORE_TEXT_MAX];
};

struct broker_files_s {
  broker_t *b;
  relay_t *r;                 /* NULL once the relay ended: records in flight finish first */
  const broker_files_owner_t *owner;
  int64_t ticket;
  char session[32], ticket_s[32];
  char person[STORE_NAME_MAX], dev[STORE_NAME_MAX];
  files_op_t ops[TT_FILE_OPS_MAX];
  files_rec_t *held, **held_tail;
  uint32_t nheld, inflight;
};

/* ---- text from the peer ------------------------------------------------------------------ */

/* Untrusted bytes as text for the records: each valid character as it is; anything else (a
 * control character, a byte that is not UTF-8, and the backslash itself, so that an escape
 * is never ambiguous) as \xNN. Cut at a character with "..." when it does not fit cap. */
static void show(char *dst, size_t cap, ProtobufCBinaryData t) {
  size_t o = 0, i = 0;
  while (i < t.len) {
    uint8_t c = t.data[i];
    size_t n = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : (c & 0xf8) == 0xf0 ? 4 : 1;
    ProtobufCBinaryData ch = {n, t.data + i};
    bool ok = c != '\\' && n <= t.len - i && tt_text_valid(ch, n);
    size_t step = ok ? n : 1, need = ok ? n : 4;
    /* Room for this character and the NUL, and for "..." too unless nothing follows. */
    if (o + need + (i + step < t.len ? 4 : 1) > cap) {
      memcpy(dst + o, "...", 3);
      o += 3;
      break;
    }
    if (ok) {
      memcpy(dst + o, t.data + i, n);
    } else {
      dst[o] = '\\';
      dst[o + 1] = 'x';
      tt_hex_byte(dst + o + 2, c);
    }
    o += need;
    i += step;
  }
  dst[o] = '\0';
}

static void sha_hex(char out[TT_HEX_CAP(32)], ProtobufCBinaryData s) {
  if (s.len != 32) { /* the receiving end refuses the file; the record says so */
    snprintf(out, TT_HEX_CAP(32), "invalid (%zu bytes)", s.len);
    return;
  }
  tt_hex(out, TT_HEX_CAP(32), s.data, 32);
}

/* The ticket's text: cut at a character boundary so that it is what the store takes. */
static void fit(char *dst, size_t cap, const char *src) {
  size_t n = strlen(src);
  if (n >= cap) {
    n = cap - 1;
    while (n > 0 && ((unsigned char)src[n] & 0xc0) == 0x80) n--;
  }
  memcpy(dst, src, n);
  dst[n] = '\0';
}

static const char *op_word(Tether__FileMsgType t) {
  switch (t) {
  case TETHER__FILE_MSG_TYPE__FILE_GET: return "get";
  case TETHER__FILE_MSG_TYPE__FILE_PUT: return "put";
  case TETHER__FILE_MSG_TYPE__FILE_LIST: return "list";
  case TETHER__FILE_MSG_TYPE__FILE_MKDIR: return "mkdir";
  case TETHER__FILE_MSG_TYPE__FILE_REMOVE: return "remove";
  case TETHER__FILE_MSG_TYPE__FILE_RMDIR: return "rmdir";
  case TETHER__FILE_MSG_TYPE__FILE_RENAME: return "rename";
  default: return "unknown";
  }
}

/* ---- the console's requests -------------------------------------------------------------- */

static files_op_t *op_find(broker_files_t *f, uint32_t id) {
  for (size_t i = 0; i < TT_FILE_OPS_MAX; i++)
    if (f->ops[i].type != TETHER__FILE_MSG_TYPE__FILE_MSG_NONE && f->ops[i].id == id) return &f->ops[i];
  return NULL;
}

/* A new request: the slot of the same id (the console reuses ids of ops it has finished),
 * else a free one, else one the console gave up. Past TT_FILE_OPS_MAX live ones it is not
 * remembered: the agent refuses it, and the refusal's record goes without the path. */
static void op_track(broker_files_t *f, const Tether__FileCtl *m) {
  files_op_t *o = op_find(f, m->id);
  for (size_t i = 0; !o && i < TT_FILE_OPS_MAX; i++)
    if (f->ops[i].type == TETHER__FILE_MSG_TYPE__FILE_MSG_NONE) o = &f->ops[i];
  for (size_t i = 0; !o && i < TT_FILE_OPS_MAX; i++)
    if (f->ops[i].cancelled) o = &f->ops[i];
  if (!o) return;
  o->id = m->id;
  o->type = m->type;
  o->recorded = o->cancelled = false;
  o->recursive = m->type == TETHER__FILE_MSG_TYPE__FILE_LIST && m->recursive;
  o->self = m->type == TETHER__FILE_MSG_TYPE__FILE_LIST && m->self;
  show(o->path, sizeof(o->path), m->path);
  if (m->type == TETHER__FILE_MSG_TYPE__FILE_RENAME) show(o->to, sizeof(o->to), m->to);
  else o->to[0] = '\0';
}

static void op_forget(files_op_t *o) {
  if (o) o->type = TETHER__FILE_MSG_TYPE__FILE_MSG_NONE;
}

/* ---- records ----------------------------------------------------------------------------- */

static files_rec_t *rec_new(broker_files_t *f, const char *kind) {
  files_rec_t *x = calloc(1, sizeof(*x));
  if (!x) return NULL;
  x->f = f;
  x->ticket = kind ? f->ticket : 0;
  snprintf(x->actor, sizeof(x->actor), "%s", f->person);
  snprintf(x->kind, sizeof(x->kind), "%s", kind ? kind : "");
  return x;
}

/* In the request's savepoint, after its audit entry: the timeline event. Its failure is
 * logged and does not undo the audit entry, which is the record that must stand. */
static int rec_run(broker_store_t *s, store_req_t *req) {
  files_rec_t *x = (files_rec_t *)req;
  if (!x->ticket) return 0;
  int rc = store_ticket_event_add(s, x->ticket, x->audit.ts_ms, x->actor, x->kind, x->text);
  if (rc) TT_ERROR(MOD, "ticket event not written", "ticket=T-%" PRId64 " kind=%s err=%s", x->ticket, x->kind, tt_errname(rc));
  return 0;
}

static void pump(broker_files_t *f);

static void rec_done(store_req_t *req) {
  files_rec_t *x = (files_rec_t *)req;
  broker_files_t *f = x->f;
  if (req->rc)
    TT_ERROR(MOD, "file record not written", "action=%s target=%s detail=%s err=%s", x->audit.action, x->audit.target,
             x->audit.detail, tt_errname(req->rc));
  free(x);
  f->inflight--;
  if (!f->r) {
    if (!f->inflight) free(f);
    return;
  }
  pump(f);
}

static int submit(broker_files_t *f, files_rec_t *x) {
  x->req.run = rec_run;
  x->req.done = rec_done;
  x->req.lane = STORE_LANE_WRITE;
  x->req.what = "file_record";
  x->req.audit = &x->audit;
  int rc = store_svc_submit(f->b->svc, &x->req);
  if (rc == 0) f->inflight++;
  return rc;
}

/* The store takes this relay's records while it has fewer than its share waiting and is
 * not half full (past half, people's requests are refused as busy: records wait instead). */
static bool room(const broker_files_t *f) {
  return f->inflight < TT_FILE_RECORDS_INFLIGHT_MAX && store_svc_backlog(f->b->svc) <= TT_STORE_QUEUE_MAX / 2;
}

/* Queue what waits, in order. Once nothing does, the relay passes its held credit on: that
 * may end the relay, so f is not touched after on_drain. */
static void pump(broker_files_t *f) {
  if (!f->held) return;
  while (f->held && room(f)) {
    files_rec_t *x = f->held, *next = x->next;
    if (submit(f, x)) break;
    f->held = next;
    f->nheld--;
  }
  if (f->held) return;
  f->held_tail = &f->held;
  f->owner->on_drain(f->r);
}

/* Queue x, or keep it for later (the relay holds credit from now on). TT_EBUSY: as many
 * wait as may; x is kept too, and the relay must end. */
static int rec_put(broker_files_t *f, files_rec_t *x) {
  TT_DEBUG(MOD, "file record", "action=%s device=%s detail=%s", x->audit.action, f->dev, x->audit.detail);
  if (!f->held && room(f) && submit(f, x) == 0) return 0;
  x->next = NULL;
  *f->held_tail = x;
  f->held_tail = &x->next;
  f->nheld++;
  return f->nheld >= TT_FILE_RECORDS_HELD_MAX ? TT_EBUSY : 0;
}

/* ---- what the device says ---------------------------------------------------------------- */

/* A file moved: the agent sent it (END of a pull) or has it in place (DONE of a push). */
static int record_moved(broker_files_t *f, const Tether__FileCtl *m, const files_op_t *o, bool pull) {
  char path[STORE_TEXT_MAX], size[24], sha[65], text[STORE_TEXT_MAX + 128];
  show(path, sizeof(path), m->path);
  if (!path[0] && o) snprintf(path, sizeof(path), "%s", o->path);
  snprintf(size, sizeof(size), "%" PRIu64, m->stat ? m->stat->size : 0);
  sha_hex(sha, m->sha256);
  files_rec_t *x = rec_new(f, pull ? "file-pulled" : "file-pushed");
  if (!x) return TT_ENOMEM;
  broker_audit_rec(&x->audit, f->person, pull ? "file-pull" : "file-push", f->dev, "session", f->session, "ticket",
                   f->ticket_s, "direction", pull ? "pull" : "push", "path", path, "size", size, "sha256", sha,
                   AUDIT_END);
  snprintf(text, sizeof(text), "%s (%s bytes, sha256 %s)", path, size, sha);
  fit(x->text, sizeof(x->text), text);
  return rec_put(f, x);
}

/* An op failed on the device: a refused path (outside the roots, not there, not allowed), or
 * a push it could not finish (push_failed: a DONE with an error). */
static int record_failed(broker_files_t *f, const Tether__FileCtl *m, const files_op_t *o, bool push_failed) {
  char path[STORE_TEXT_MAX], why[TT_TEXT_MAX + 1], text[STORE_TEXT_MAX + TT_TEXT_MAX + 64];
  show(path, sizeof(path), m->path);
  if (o && (!path[0] || !push_failed)) snprintf(path, sizeof(path), "%s", o->path); /* the request's, if seen */
  show(why, sizeof(why), m->message);
  const char *code = tt_strerror(tt_err_from_wire((Tether__ErrorCode)m->code));
  const char *op = push_failed ? "put" : o && o->self ? "stat" : op_word(o ? o->type : TETHER__FILE_MSG_TYPE__FILE_MSG_NONE);
  /* A stat that finds nothing is how sftp and scp ask whether a name exists: audited, kept
   * off the ticket's timeline. */
  files_rec_t *x = rec_new(f, o && o->self ? NULL : push_failed ? "file-push-failed" : "file-refused");
  if (!x) return TT_ENOMEM;
  broker_audit_rec(&x->audit, f->person, push_failed ? "file-push-failed" : "file-refused", f->dev, "session",
                   f->session, "ticket", f->ticket_s, "op", op, "path", path, "code", code, "message", why, AUDIT_END);
  snprintf(text, sizeof(text), "%s %s: %s", op, path[0] ? path : "(a request the broker did not see)",
           why[0] ? why : code);
  fit(x->text, sizeof(x->text), text);
  return rec_put(f, x);
}

/* Reads are accountable too: a listing (once per LIST) and a directory made, audit only. */
static int record_op(broker_files_t *f, files_op_t *o, const char *action, bool recursive) {
  files_rec_t *x = rec_new(f, NULL);
  if (!x) return TT_ENOMEM;
  if (o->to[0])
    broker_audit_rec(&x->audit, f->person, action, f->dev, "session", f->session, "ticket", f->ticket_s, "path",
                     o->path, "to", o->to, AUDIT_END);
  else if (recursive)
    broker_audit_rec(&x->audit, f->person, action, f->dev, "session", f->session, "ticket", f->ticket_s, "path",
                     o->path, "recursive", "yes", AUDIT_END);
  else
    broker_audit_rec(&x->audit, f->person, action, f->dev, "session", f->session, "ticket", f->ticket_s, "path",
                     o->path, AUDIT_END);
  return rec_put(f, x);
}

static int device_said(broker_files_t *f, const Tether__FileCtl *m) {
  files_op_t *o = op_find(f, m->id);
  int rc = 0;
  switch (m->type) {
  case TETHER__FILE_MSG_TYPE__FILE_END:
    rc = record_moved(f, m, o, true);
    op_forget(o);
    break;
  case TETHER__FILE_MSG_TYPE__FILE_DONE:
    rc = m->code == 0 ? record_moved(f, m, o, false) : record_failed(f, m, o, true);
    op_forget(o);
    break;
  case TETHER__FILE_MSG_TYPE__FILE_ERROR:
    rc = record_failed(f, m, o, false);
    op_forget(o);
    break;
  case TETHER__FILE_MSG_TYPE__FILE_ENTRIES:
    if (o && o->type == TETHER__FILE_MSG_TYPE__FILE_LIST && !o->recorded) {
      o->recorded = true;
      rc = record_op(f, o, o->self ? "file-stat" : "file-list", o->recursive);
    }
    if (o && m->last) op_forget(o);
    break;
  case TETHER__FILE_MSG_TYPE__FILE_OK:
    /* Changes are the device's to report: recorded once it says they are done. */
    if (o && o->type == TETHER__FILE_MSG_TYPE__FILE_MKDIR) rc = record_op(f, o, "file-mkdir", false);
    else if (o && o->type == TETHER__FILE_MSG_TYPE__FILE_REMOVE) rc = record_op(f, o, "file-remove", false);
    else if (o && o->type == TETHER__FILE_MSG_TYPE__FILE_RMDIR) rc = record_op(f, o, "file-rmdir", false);
    else if (o && o->type == TETHER__FILE_MSG_TYPE__FILE_RENAME) rc = record_op(f, o, "file-rename", false);
    op_forget(o);
    break;
  default: /* READY, BEGIN, CHUNK: steps of a file, recorded when it is done */
    break;
  }
  return rc;
}

static void console_asked(broker_files_t *f, const Tether__FileCtl *m) {
  switch (m->type) {
  case TETHER__FILE_MSG_TYPE__FILE_GET:
  case TETHER__FILE_MSG_TYPE__FILE_PUT:
  case TETHER__FILE_MSG_TYPE__FILE_LIST:
  case TETHER__FILE_MSG_TYPE__FILE_MKDIR:
  case TETHER__FILE_MSG_TYPE__FILE_REMOVE:
  case TETHER__FILE_MSG_TYPE__FILE_RMDIR:
  case TETHER__FILE_MSG_TYPE__FILE_RENAME:
    op_track(f, m);
    break;
  case TETHER__FILE_MSG_TYPE__FILE_ERROR: { /* the console gives an op up */
    files_op_t *o = op_find(f, m->id);
    if (o) o->cancelled = true;
    break;
  }
  default:
    break;
  }
}

/* ---- for relay.c ------------------------------------------------------------------------- */

broker_files_t *broker_files_new(broker_t *b, relay_t *r, const broker_files_owner_t *owner, const broker_grant_t *g,
                                 const char *person, const char *dev) {
  broker_files_t *f = calloc(1, sizeof(*f));
  if (!f) return NULL;
  f->b = b;
  f->r = r;
  f->owner = owner;
  f->ticket = g->s.ticket;
  snprintf(f->session, sizeof(f->session), "S-%" PRId64, g->s.id);
  snprintf(f->ticket_s, sizeof(f->ticket_s), "T-%" PRId64, g->s.ticket);
  snprintf(f->person, sizeof(f->person), "%s", person);
  snprintf(f->dev, sizeof(f->dev), "%s", dev);
  f->held_tail = &f->held;
  return f;
}

int broker_files_data(broker_files_t *f, bool from_device, const uint8_t *p, size_t n, uint8_t flags, char *why,
                      size_t cap) {
  if (!(flags & TT_FF_CTRL)) return 0; /* chunk bytes: never looked at */
  if (flags & TT_FF_ZSTD) {
    /* The broker cannot read it without inflating, and what it cannot read it cannot
     * record: a file could land without its entry. FileCtl travels plain. */
    snprintf(why, cap, "a compressed file control message from the %s: the broker must read them to keep the records",
             from_device ? "device" : "console");
    return TT_EPROTO;
  }
  tt_msg_t msg;
  if (tt_msg_unpack_ctrl(&msg, p, n)) return 0; /* the receiving end refuses it */
  const Tether__ChannelControl *cc = (const Tether__ChannelControl *)msg.m;
  int rc = 0;
  if (cc->body_case == TETHER__CHANNEL_CONTROL__BODY_FILE && cc->file) {
    if (from_device) rc = device_said(f, cc->file);
    else console_asked(f, cc->file);
  }
  tt_msg_free(&msg);
  if (rc == TT_EBUSY)
    snprintf(why, cap, "the broker cannot record files as fast as they arrive, so the transfer stopped rather than "
                       "leave one unrecorded: run it again to resume");
  else if (rc)
    snprintf(why, cap, "the broker could not record a file (%s)", tt_strerror(rc));
  return rc;
}

bool broker_files_holding(const broker_files_t *f) { return f->held != NULL; }

void broker_files_tick(broker_files_t *f) { pump(f); }

void broker_files_end(broker_files_t *f) {
  f->r = NULL;
  /* The relay's share no longer matters: what waits goes to the store now. Only a store that
   * is full to the brim refuses, and then the log keeps what the audit could not. */
  while (f->held) {
    files_rec_t *x = f->held;
    f->held = x->next;
    int rc = submit(f, x);
    if (rc) {
      TT_ERROR(MOD, "file record not written", "action=%s target=%s detail=%s err=%s", x->audit.action,
               x->audit.target, x->audit.detail, tt_errname(rc));
      free(x);
    }
  }
  f->nheld = 0;
  if (!f->inflight) free(f);
}
