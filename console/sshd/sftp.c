/* sftp (protocol version 3, what OpenSSH's sftp and scp speak) served by the gateway on a
 * Tether file channel, so that every byte goes the way `tether pull` and `push` send it: the
 * device's confinement to its roots, atomic placement, one audit entry per file with its
 * sha256.
 *
 * SFTP reads and writes at offsets; the file channel moves whole files. A file opened for
 * reading is therefore pulled whole into the gateway's spool first (the OPEN is answered
 * once it is here) and READs are served from it, as many in flight as the client likes; a
 * file opened for writing is written into the spool and pushed whole on CLOSE (answered
 * once it is in place on the device). Directories are listed with LIST, STAT is a LIST of
 * the path itself; MKDIR, REMOVE, RMDIR and RENAME are the file channel's own. What it
 * cannot do (links, setting a path's attributes) is answered OP_UNSUPPORTED.
 *
 * Bounds: a message is at most SFTP_PACKET_MAX; at most SFTP_HANDLES_MAX handles and
 * SFTP_ASYNC_MAX requests waiting on the device; input is taken only while the replies
 * queued for the client are under SFTP_OUT_HIGH (the rest waits in libssh's buffer, which
 * holds back the client's window); written files count against the spool's budget. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "sshd.h"
#include "tt/log.h"
#include "tt/msg.h"
#include "tt/xfer.h"

#define SFTP_VERSION 3u
#define SFTP_PACKET_MAX (256u * 1024u + 1024u)
#define SFTP_HANDLES_MAX 64u
#define SFTP_ASYNC_MAX 16u
#define SFTP_READ_MAX (64u * 1024u)
#define SFTP_OUT_HIGH (192u * 1024u)
#define SFTP_DIR_BATCH 64u
#define CTL_ID_BASE 100000u
/* Directory entries all of one session's open listings may hold. */
#define SFTP_LIST_BUDGET 100000u

enum {
  FXP_INIT = 1, FXP_VERSION = 2, FXP_OPEN = 3, FXP_CLOSE = 4, FXP_READ = 5, FXP_WRITE = 6,
  FXP_LSTAT = 7, FXP_FSTAT = 8, FXP_SETSTAT = 9, FXP_FSETSTAT = 10, FXP_OPENDIR = 11,
  FXP_READDIR = 12, FXP_REMOVE = 13, FXP_MKDIR = 14, FXP_RMDIR = 15, FXP_REALPATH = 16,
  FXP_STAT = 17, FXP_RENAME = 18, FXP_READLINK = 19, FXP_SYMLINK = 20,
  FXP_STATUS = 101, FXP_HANDLE = 102, FXP_DATA = 103, FXP_NAME = 104, FXP_ATTRS = 105,
  FXP_EXTENDED = 200,
};
enum { FX_OK = 0, FX_EOF = 1, FX_NO_SUCH_FILE = 2, FX_PERMISSION_DENIED = 3, FX_FAILURE = 4,
       FX_BAD_MESSAGE = 5, FX_OP_UNSUPPORTED = 8 };
#define ATTR_SIZE 0x1u
#define ATTR_UIDGID 0x2u
#define ATTR_PERM 0x4u
#define ATTR_ACMODTIME 0x8u
#define ATTR_EXTENDED 0x80000000u
#define PF_READ 0x1u
#define PF_WRITE 0x2u
#define PF_APPEND 0x4u
#define PF_CREAT 0x8u
#define PF_TRUNC 0x10u
#define PF_EXCL 0x20u

typedef struct {
  char *name;
  Tether__FileKind kind;
  uint64_t size;
  int64_t mtime_ns;
  uint32_t mode;
  char owner[33], group[33];
} sentry_t;

typedef enum { H_FREE, H_STATING, H_PULLING, H_READ, H_WRITE, H_PUSHING, H_LISTING, H_DIR } hstate_t;

typedef struct {
  hstate_t st;
  uint32_t gen;
  uint32_t req;       /* the sftp request waiting on the device (open, close, opendir) */
  bool excl;
  bool update;        /* opened to write without truncating: starts from the device's file */
  bool creat;         /* update: made empty when the device has none */
  mode_t mode;        /* writing: the mode it goes to the device with (| 0600) */
  int fd;
  uint64_t size;      /* H_WRITE: bytes the spool file holds (its budget share) */
  char path[TT_FILE_PATH_MAX + 1];
  char local[600];
  sentry_t *ents;
  size_t n, cap, next;
} handle_t;

typedef enum { C_FREE, C_STAT, C_OPEN_STAT, C_OPENDIR_STAT, C_LIST, C_CHANGE } ctl_kind_t;

typedef struct {
  ctl_kind_t kind;
  uint32_t req;
  int handle;         /* C_OPENDIR_STAT, C_LIST */
  char path[TT_FILE_PATH_MAX + 1];
  char to[TT_FILE_PATH_MAX + 1]; /* RENAME */
  bool got;
  bool discard;       /* C_LIST given up (over the budget): its batches are dropped until the last */
  sentry_t one;
} ctl_t;

struct sftp_s {
  gw_chan_t *h;
  tt_xfer_t *x;
  bool inited, failed;
  tt_buf_t in;
  tt_buf_t out;       /* one reply being built */
  handle_t hd[SFTP_HANDLES_MAX];
  ctl_t ctl[SFTP_ASYNC_MAX];
  unsigned async;     /* requests waiting on the device */
  uint32_t serial;    /* handle generations, from a random start */
  char dir[600];      /* this session's own directory in the spool (mkdtemp, 0700) */
  size_t list_entries; /* entries all its listings hold */
};


/* -- encoding -------------------------------------------------------------------------------- */

static void put(sftp_t *s, const void *p, size_t n) {
  if (tt_buf_append(&s->out, p, n)) s->failed = true;
}
static void put_u8(sftp_t *s, uint8_t v) { put(s, &v, 1); }
static void put_u32(sftp_t *s, uint32_t v) {
  uint8_t b[4];
  tt_put_u32(b, v);
  put(s, b, 4);
}
static void put_u64(sftp_t *s, uint64_t v) {
  put_u32(s, (uint32_t)(v >> 32));
  put_u32(s, (uint32_t)v);
}
static void put_str(sftp_t *s, const void *p, size_t n) {
  put_u32(s, (uint32_t)n);
  put(s, p, n);
}
static void put_cstr(sftp_t *s, const char *t) { put_str(s, t, strlen(t)); }

static void begin(sftp_t *s, uint8_t type, uint32_t id, bool with_id) {
  tt_buf_reset(&s->out);
  put_u32(s, 0); /* length, set by send */
  put_u8(s, type);
  if (with_id) put_u32(s, id);
}

static void send_reply(sftp_t *s) {
  if (s->failed || s->out.len < 5) return;
  uint8_t *p = s->out.data + s->out.off;
  tt_put_u32(p, (uint32_t)(s->out.len - 4));
  gw_chan_reply(s->h, p, s->out.len);
  tt_buf_reset(&s->out);
}

static void status(sftp_t *s, uint32_t id, uint32_t code, const char *msg) {
  begin(s, FXP_STATUS, id, true);
  put_u32(s, code);
  put_cstr(s, msg ? msg : "");
  put_cstr(s, "en");
  send_reply(s);
}

static void put_attrs(sftp_t *s, const sentry_t *e) {
  uint32_t mode = e->mode & 07777;
  if (e->kind == TETHER__FILE_KIND__FILE_KIND_DIR) mode |= S_IFDIR;
  else if (e->kind == TETHER__FILE_KIND__FILE_KIND_SYMLINK) mode |= S_IFLNK;
  else if (e->kind == TETHER__FILE_KIND__FILE_KIND_REGULAR) mode |= S_IFREG;
  put_u32(s, ATTR_SIZE | ATTR_PERM | ATTR_ACMODTIME);
  put_u64(s, e->size);
  put_u32(s, mode);
  uint32_t t = e->mtime_ns > 0 ? (uint32_t)(e->mtime_ns / 1000000000) : 0;
  put_u32(s, t);
  put_u32(s, t);
}

/* `ls -l` of one entry, as sftp's ls -l shows it. */
static void longname(const sentry_t *e, char *out, size_t cap) {
  char perm[11] = "----------";
  perm[0] = e->kind == TETHER__FILE_KIND__FILE_KIND_DIR ? 'd' : e->kind == TETHER__FILE_KIND__FILE_KIND_SYMLINK ? 'l' : '-';
  static const char rwx[] = "rwxrwxrwx";
  for (int i = 0; i < 9; i++)
    if (e->mode & (1u << (8 - i))) perm[1 + i] = rwx[i];
  char when[32] = "";
  time_t t = (time_t)(e->mtime_ns / 1000000000);
  struct tm tm;
  if (gmtime_r(&t, &tm)) strftime(when, sizeof(when), "%b %e %H:%M", &tm);
  snprintf(out, cap, "%s    1 %-8s %-8s %8" PRIu64 " %s %s", perm, e->owner[0] ? e->owner : "?",
           e->group[0] ? e->group : "?", e->size, when, e->name);
}

/* -- decoding -------------------------------------------------------------------------------- */

typedef struct {
  const uint8_t *p;
  size_t n, off;
  bool bad;
} rd_t;

static uint32_t get_u32(rd_t *r) {
  if (r->n - r->off < 4) {
    r->bad = true;
    return 0;
  }
  uint32_t v = tt_get_u32(r->p + r->off);
  r->off += 4;
  return v;
}
static uint64_t get_u64(rd_t *r) {
  uint64_t hi = get_u32(r);
  return (hi << 32) | get_u32(r);
}
/* A string: pointer into the packet and its length. */
static const uint8_t *get_str(rd_t *r, uint32_t *len) {
  uint32_t n = get_u32(r);
  if (r->bad || r->n - r->off < n) {
    r->bad = true;
    *len = 0;
    return NULL;
  }
  const uint8_t *p = r->p + r->off;
  r->off += n;
  *len = n;
  return p;
}
/* ATTRS: what the gateway uses of them (perm, times); the rest is skipped. */
static void get_attrs(rd_t *r, uint32_t *flags, uint64_t *size, uint32_t *perm, uint32_t *mtime) {
  *flags = get_u32(r);
  *size = (*flags & ATTR_SIZE) ? get_u64(r) : 0;
  if (*flags & ATTR_UIDGID) {
    (void)get_u32(r);
    (void)get_u32(r);
  }
  *perm = (*flags & ATTR_PERM) ? get_u32(r) : 0;
  if (*flags & ATTR_ACMODTIME) {
    (void)get_u32(r);
    *mtime = get_u32(r);
  }
  if (*flags & ATTR_EXTENDED) {
    uint32_t n = get_u32(r), len;
    for (uint32_t i = 0; i < n && !r->bad; i++) {
      (void)get_str(r, &len);
      (void)get_str(r, &len);
    }
  }
}

/* A path from the client, as the device will take it: "." and empty parts dropped, ".."
 * taken back lexically (refused above the top: the device refuses ".." anyway). Relative
 * paths stay relative: the device starts them in the session user's home. */
static int norm_path(const uint8_t *p, uint32_t n, char *out, size_t cap) {
  if (n > TT_FILE_PATH_MAX || memchr(p, 0, n)) return TT_EINVAL;
  bool abs = n > 0 && p[0] == '/';
  size_t o = 0;
  size_t starts[TT_FILE_PATH_MAX / 2 + 1];
  size_t depth = 0;
  if (abs) out[o++] = '/';
  for (uint32_t i = 0; i < n;) {
    while (i < n && p[i] == '/') i++;
    uint32_t j = i;
    while (j < n && p[j] != '/') j++;
    size_t len = j - i;
    if (len == 0 || (len == 1 && p[i] == '.')) {
      i = j;
      continue;
    }
    if (len == 2 && p[i] == '.' && p[i + 1] == '.') {
      if (depth == 0 && !abs) return TT_EINVAL;
      if (depth > 0) o = starts[--depth];
      i = j;
      continue;
    }
    if (o + (o && out[o - 1] != '/' ? 1 : 0) + len + 1 > cap) return TT_ETOOBIG;
    starts[depth++] = o;
    if (o && out[o - 1] != '/') out[o++] = '/';
    memcpy(out + o, p + i, len);
    o += len;
    i = j;
  }
  if (o == 0) out[o++] = '.';
  out[o] = '\0';
  return 0;
}

/* -- the device's answers -------------------------------------------------------------------- */

static uint32_t fx_of(int code) {
  if (code == TT_ENOTFOUND || code == -ENOENT || code == -ENOTDIR) return FX_NO_SUCH_FILE;
  if (code == TT_EDENIED || code == -EACCES || code == -EPERM || code == TT_EROLE) return FX_PERMISSION_DENIED;
  return FX_FAILURE;
}

static handle_t *handle_of(sftp_t *s, const uint8_t *p, uint32_t n) {
  if (n != 8) return NULL;
  uint32_t idx = tt_get_u32(p), gen = tt_get_u32(p + 4);
  if (idx >= SFTP_HANDLES_MAX || s->hd[idx].st == H_FREE || s->hd[idx].gen != gen) return NULL;
  return &s->hd[idx];
}

static void send_handle(sftp_t *s, uint32_t id, handle_t *hd) {
  uint8_t b[8];
  tt_put_u32(b, (uint32_t)(hd - s->hd));
  tt_put_u32(b + 4, hd->gen);
  begin(s, FXP_HANDLE, id, true);
  put_str(s, b, 8);
  send_reply(s);
}

static void entries_free(handle_t *hd) {
  for (size_t i = 0; i < hd->n; i++) free(hd->ents[i].name);
  free(hd->ents);
  hd->ents = NULL;
  hd->n = hd->cap = hd->next = 0;
}

/* The spool file and what the transfer engine keeps beside it after a failure. */
static void spool_unlink(const char *local) {
  if (!local[0]) return;
  (void)unlink(local);
  const char *slash = strrchr(local, '/');
  if (!slash) return;
  char part[700];
  snprintf(part, sizeof(part), "%.*s/.%s%s", (int)(slash - local), local, slash + 1, TT_XFER_PART_SUFFIX);
  (void)unlink(part);
  snprintf(part, sizeof(part), "%.*s/.%s%s", (int)(slash - local), local, slash + 1, TT_XFER_STATE_SUFFIX);
  (void)unlink(part);
}

static void handle_free(sftp_t *s, handle_t *hd) {
  if (hd->fd >= 0) close(hd->fd);
  hd->fd = -1;
  s->h->c->d->spool_used -= hd->size; /* written, or reserved for a pull */
  spool_unlink(hd->local);
  s->list_entries -= hd->n;
  entries_free(hd);
  hd->st = H_FREE;
  hd->local[0] = '\0';
  hd->size = 0;
}

static handle_t *handle_new(sftp_t *s, const char *path) {
  for (size_t i = 0; i < SFTP_HANDLES_MAX; i++) {
    handle_t *hd = &s->hd[i];
    if (hd->st != H_FREE) continue;
    memset(hd, 0, sizeof(*hd));
    hd->gen = ++s->serial;
    hd->fd = -1;
    snprintf(hd->path, sizeof(hd->path), "%s", path);
    /* In this session's own directory: no other session can name, open or remove it. */
    snprintf(hd->local, sizeof(hd->local), "%.560s/h%zu-%u", s->dir, i, hd->gen);
    return hd;
  }
  return NULL;
}

static void done_async(sftp_t *s) {
  if (s->async) s->async--;
  gw_chan_pump(s->h);
  gw_conn_kick(s->h->c);
}

static int open_for_write(sftp_t *s, handle_t *hd, bool made);

static void x_done(tt_xfer_t *x, const tt_xfer_result_t *r) {
  sftp_t *s = tt_xfer_data(x);
  if (r->id == 0 || r->id > SFTP_HANDLES_MAX) return;
  handle_t *hd = &s->hd[r->id - 1];
  if (hd->st == H_PULLING) {
    if (r->code) {
      status(s, hd->req, fx_of(r->code), r->msg && *r->msg ? r->msg : tt_strerror(r->code));
      handle_free(s, hd);
    } else if (chmod(hd->local, 0600) != 0) {
      /* (placed with the device's mode: one we could not read is ours to change) */
      status(s, hd->req, FX_FAILURE, "the gateway cannot use its spool");
      handle_free(s, hd);
    } else if (hd->update) {
      if (open_for_write(s, hd, true)) {
        status(s, hd->req, FX_FAILURE, "the gateway cannot write its spool");
        handle_free(s, hd);
      } else {
        send_handle(s, hd->req, hd);
      }
    } else if ((hd->fd = open(hd->local, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0) {
      status(s, hd->req, FX_FAILURE, "the gateway cannot read its spool");
      handle_free(s, hd);
    } else {
      hd->st = H_READ;
      send_handle(s, hd->req, hd);
    }
  } else if (hd->st == H_PUSHING) {
    if (r->code) status(s, hd->req, fx_of(r->code), r->msg && *r->msg ? r->msg : tt_strerror(r->code));
    else status(s, hd->req, FX_OK, "");
    handle_free(s, hd);
  } else {
    return;
  }
  done_async(s);
}

static ctl_t *ctl_of(sftp_t *s, uint32_t id) {
  if (id < CTL_ID_BASE || id >= CTL_ID_BASE + SFTP_ASYNC_MAX) return NULL;
  ctl_t *k = &s->ctl[id - CTL_ID_BASE];
  return k->kind == C_FREE ? NULL : k;
}

static void entry_from(sentry_t *e, const Tether__FileStat *f) {
  memset(e, 0, sizeof(*e));
  e->kind = f->kind;
  e->size = f->size;
  e->mtime_ns = f->mtime_ns;
  e->mode = f->mode;
  if (tt_text_copy(e->owner, sizeof(e->owner), f->owner)) e->owner[0] = '\0';
  if (tt_text_copy(e->group, sizeof(e->group), f->group)) e->group[0] = '\0';
}

static int ctl_send(sftp_t *s, ctl_t *k, Tether__FileMsgType type, bool self, uint32_t mode);

static void ctl_finish(sftp_t *s, ctl_t *k) {
  k->kind = C_FREE;
  done_async(s);
}

/* A write handle's spool file: empty (made now), or the device's file just pulled. */
static int open_for_write(sftp_t *s, handle_t *hd, bool made) {
  (void)s;
  int flags = O_WRONLY | O_CLOEXEC | O_NOFOLLOW | (made ? 0 : O_CREAT | O_EXCL);
  hd->fd = open(hd->local, flags, 0600);
  if (hd->fd < 0 || fchmod(hd->fd, hd->mode) != 0) return TT_EIO;
  hd->st = H_WRITE;
  return 0;
}

/* OPEN for reading: the file's size is known (its stat), so its room in the spool is taken
 * before it is pulled. */
static void open_pull(sftp_t *s, ctl_t *k) {
  handle_t *hd = &s->hd[k->handle];
  sshd_t *d = s->h->c->d;
  uint32_t req = k->req;
  k->kind = C_FREE; /* the async slot goes on to the pull */
  if (k->one.kind != TETHER__FILE_KIND__FILE_KIND_REGULAR) {
    status(s, req, FX_FAILURE, k->one.kind == TETHER__FILE_KIND__FILE_KIND_DIR ? "a directory" : "not a regular file");
    handle_free(s, hd);
    done_async(s);
    return;
  }
  if (k->one.size > (uint64_t)d->cfg.spool_max || d->spool_used + k->one.size > (uint64_t)d->cfg.spool_max) {
    status(s, req, FX_FAILURE, "the gateway's spool is full; try again later");
    handle_free(s, hd);
    done_async(s);
    return;
  }
  hd->size = k->one.size;
  d->spool_used += hd->size;
  hd->st = H_PULLING;
  hd->req = req;
  int rc = tt_xfer_pull(s->x, (uint32_t)(hd - s->hd) + 1, hd->path, hd->local, true);
  if (rc && hd->st == H_PULLING) { /* (a pull refused at once has been answered by x_done) */
    status(s, req, FX_FAILURE, tt_strerror(rc));
    handle_free(s, hd);
    done_async(s);
  }
}

static void x_ctl(tt_xfer_t *x, const Tether__FileCtl *m) {
  sftp_t *s = tt_xfer_data(x);
  ctl_t *k = ctl_of(s, m->id);
  if (!k) return;
  char msg[TT_TEXT_MAX * 4 + 1];
  if (m->type == TETHER__FILE_MSG_TYPE__FILE_ERROR && k->kind == C_OPEN_STAT && s->hd[k->handle].update &&
      s->hd[k->handle].creat && fx_of(tt_err_from_wire((Tether__ErrorCode)m->code)) == FX_NO_SUCH_FILE) {
    handle_t *hd = &s->hd[k->handle]; /* a new file: it starts empty */
    if (open_for_write(s, hd, false)) {
      status(s, k->req, FX_FAILURE, "the gateway cannot write its spool");
      handle_free(s, hd);
    } else {
      send_handle(s, k->req, hd);
    }
    ctl_finish(s, k);
    return;
  }
  if (m->type == TETHER__FILE_MSG_TYPE__FILE_ERROR) {
    if (tt_text_copy(msg, sizeof(msg), m->message) || !msg[0])
      snprintf(msg, sizeof(msg), "%s", tt_strerror(tt_err_from_wire((Tether__ErrorCode)m->code)));
    status(s, k->req, fx_of(tt_err_from_wire((Tether__ErrorCode)m->code)), msg);
    if (!k->discard && (k->kind == C_OPENDIR_STAT || k->kind == C_LIST || k->kind == C_OPEN_STAT))
      handle_free(s, &s->hd[k->handle]);
    ctl_finish(s, k);
    return;
  }
  if (k->kind == C_CHANGE) {
    status(s, k->req, m->type == TETHER__FILE_MSG_TYPE__FILE_OK ? FX_OK : FX_FAILURE,
           m->type == TETHER__FILE_MSG_TYPE__FILE_OK ? "" : "the device answered out of turn");
    ctl_finish(s, k);
    return;
  }
  if (m->type != TETHER__FILE_MSG_TYPE__FILE_ENTRIES) return;
  if (k->kind == C_STAT || k->kind == C_OPENDIR_STAT || k->kind == C_OPEN_STAT) {
    if (m->n_entries >= 1 && !k->got) {
      entry_from(&k->one, m->entries[0]);
      k->got = true;
    }
    if (!m->last) return;
    if (!k->got) {
      status(s, k->req, FX_NO_SUCH_FILE, "the device listed nothing");
      if (k->kind != C_STAT) handle_free(s, &s->hd[k->handle]);
      ctl_finish(s, k);
      return;
    }
    if (k->kind == C_OPEN_STAT) {
      open_pull(s, k);
      return;
    }
    if (k->kind == C_STAT) {
      begin(s, FXP_ATTRS, k->req, true);
      put_attrs(s, &k->one);
      send_reply(s);
      ctl_finish(s, k);
      return;
    }
    if (k->one.kind != TETHER__FILE_KIND__FILE_KIND_DIR) {
      status(s, k->req, FX_FAILURE, "not a directory");
      handle_free(s, &s->hd[k->handle]);
      ctl_finish(s, k);
      return;
    }
    k->kind = C_LIST; /* now its entries */
    if (ctl_send(s, k, TETHER__FILE_MSG_TYPE__FILE_LIST, false, 0)) {
      status(s, k->req, FX_FAILURE, "cannot ask the device");
      handle_free(s, &s->hd[k->handle]);
      ctl_finish(s, k);
    }
    return;
  }
  /* C_LIST: gather the entries into the handle, within the session's budget. The slot (and
   * so the id) stays taken until the device's last batch, which no later request may get. */
  if (k->discard) {
    if (m->last) ctl_finish(s, k);
    return;
  }
  handle_t *hd = &s->hd[k->handle];
  for (size_t i = 0; i < m->n_entries; i++) {
    if (s->list_entries >= SFTP_LIST_BUDGET) {
      status(s, k->req, FX_FAILURE, "this session holds too many directory entries open: close a listing first");
      handle_free(s, hd);
      k->discard = true;
      if (m->last) ctl_finish(s, k);
      return;
    }
    const ProtobufCBinaryData nm = m->entries[i]->path;
    /* A name, not a path, printable: anything else from the device is left out. */
    if (!nm.len || memchr(nm.data, '/', nm.len) || !tt_text_valid(nm, TT_FILE_NAME_MAX)) continue;
    if (hd->n == hd->cap) {
      size_t cap = hd->cap ? hd->cap * 2 : 64;
      sentry_t *v = realloc(hd->ents, cap * sizeof(*v));
      if (!v) break;
      hd->ents = v;
      hd->cap = cap;
    }
    sentry_t *e = &hd->ents[hd->n];
    entry_from(e, m->entries[i]);
    if (!m->entries[i]->path.len || !(e->name = malloc(m->entries[i]->path.len + 1))) continue;
    memcpy(e->name, m->entries[i]->path.data, m->entries[i]->path.len);
    e->name[m->entries[i]->path.len] = '\0';
    hd->n++;
    s->list_entries++;
  }
  if (!m->last) return;
  hd->st = H_DIR;
  send_handle(s, k->req, hd);
  ctl_finish(s, k);
}

static void x_fail(tt_xfer_t *x, int code, const char *msg) {
  sftp_t *s = tt_xfer_data(x);
  s->failed = true;
  gw_chan_fail(s->h, msg && *msg ? msg : tt_strerror(code));
}

static const tt_xfer_cbs_t xfer_cbs = {.on_ctl = x_ctl, .on_done = x_done, .on_fail = x_fail};

/* The gateway's side of the engine: its spool. These run on the pool's threads. */
static int fs_open_read(void *fs, const char *path, tt_xfer_stat_t *st, char *err, size_t errlen) {
  (void)fs;
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  struct stat sb;
  if (fd < 0 || fstat(fd, &sb) != 0) {
    int e = errno;
    snprintf(err, errlen, "the gateway cannot read its spool: %s", strerror(e));
    if (fd >= 0) close(fd);
    return -e;
  }
  st->size = (uint64_t)sb.st_size;
  st->mtime_ns = (int64_t)sb.st_mtim.tv_sec * 1000000000 + sb.st_mtim.tv_nsec;
  st->mode = (uint32_t)sb.st_mode & 07777;
  return fd;
}

static int fs_open_parent(void *fs, const char *path, char *name, size_t cap, char *err, size_t errlen) {
  (void)fs;
  const char *slash = strrchr(path, '/');
  char dir[600];
  if (!slash || (size_t)(slash - path) >= sizeof(dir) || strlen(slash + 1) >= cap) {
    snprintf(err, errlen, "bad spool path");
    return TT_EINVAL;
  }
  memcpy(dir, path, (size_t)(slash - path));
  dir[slash - path] = '\0';
  snprintf(name, cap, "%s", slash + 1);
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    snprintf(err, errlen, "the gateway cannot use its spool: %s", strerror(e));
    return -e;
  }
  return fd;
}

static const tt_xfer_fs_t spool_fs = {.open_read = fs_open_read, .open_parent = fs_open_parent};

/* -- requests -------------------------------------------------------------------------------- */

static int ctl_send(sftp_t *s, ctl_t *k, Tether__FileMsgType type, bool self, uint32_t mode) {
  Tether__FileCtl m = TETHER__FILE_CTL__INIT;
  Tether__FileStat st = TETHER__FILE_STAT__INIT;
  m.type = type;
  m.id = CTL_ID_BASE + (uint32_t)(k - s->ctl);
  m.path = tt_text(k->path);
  m.self = self;
  if (type == TETHER__FILE_MSG_TYPE__FILE_RENAME) m.to = tt_text(k->to);
  if (type == TETHER__FILE_MSG_TYPE__FILE_MKDIR) {
    st.kind = TETHER__FILE_KIND__FILE_KIND_DIR;
    st.mode = mode;
    m.stat = &st;
  }
  return tt_xfer_ctl(s->x, &m);
}

static ctl_t *ctl_new(sftp_t *s, ctl_kind_t kind, uint32_t req, const char *path) {
  for (size_t i = 0; i < SFTP_ASYNC_MAX; i++)
    if (s->ctl[i].kind == C_FREE) {
      ctl_t *k = &s->ctl[i];
      memset(k, 0, sizeof(*k));
      k->kind = kind;
      k->req = req;
      snprintf(k->path, sizeof(k->path), "%s", path);
      return k;
    }
  return NULL;
}

static void unsupported(sftp_t *s, uint32_t id, const char *what) {
  char msg[160];
  snprintf(msg, sizeof(msg), "%s is not served through the Tether gateway yet", what);
  status(s, id, FX_OP_UNSUPPORTED, msg);
}

/* The path argument of a request, normalised; a refusal answered here. */
static bool path_arg(sftp_t *s, rd_t *r, uint32_t id, char *out, size_t cap) {
  uint32_t n;
  const uint8_t *p = get_str(r, &n);
  if (r->bad) return false;
  int rc = norm_path(p, n, out, cap);
  char why[160];
  if (!rc && !tt_xfer_path_ok(tt_text(out), why, sizeof(why))) rc = TT_EINVAL;
  if (rc) {
    status(s, id, rc == TT_ETOOBIG ? FX_FAILURE : FX_NO_SUCH_FILE, "not a path the device takes");
    return false;
  }
  return true;
}

static void on_open(sftp_t *s, rd_t *r, uint32_t id) {
  char path[TT_FILE_PATH_MAX + 1];
  if (!path_arg(s, r, id, path, sizeof(path))) return;
  uint32_t pflags = get_u32(r), aflags, perm = 0, mtime = 0;
  uint64_t asize;
  get_attrs(r, &aflags, &asize, &perm, &mtime);
  if (r->bad) return;
  bool reading = pflags & PF_READ, writing = pflags & PF_WRITE;
  if (reading == writing || (pflags & PF_APPEND)) {
    status(s, id, FX_OP_UNSUPPORTED, "the Tether gateway opens a file to read or to write, not both, and never to append");
    return;
  }
  handle_t *hd = handle_new(s, path);
  if (!hd) {
    status(s, id, FX_FAILURE, "too many open handles");
    return;
  }
  hd->mode = ((aflags & ATTR_PERM) ? (perm & 0777) : 0644) | 0600;
  /* Written without truncating (scp writes in place, then sets the size): the device's file
   * is the starting point, fetched first, so that what is not written stays as it was. */
  hd->update = writing && !(pflags & (PF_TRUNC | PF_EXCL));
  hd->creat = pflags & PF_CREAT;
  if (reading || hd->update) {
    ctl_t *k = ctl_new(s, C_OPEN_STAT, id, path);
    if (!k) {
      status(s, id, FX_FAILURE, "too many requests waiting");
      handle_free(s, hd);
      return;
    }
    hd->st = H_STATING;
    hd->req = id;
    k->handle = (int)(hd - s->hd);
    int rc = ctl_send(s, k, TETHER__FILE_MSG_TYPE__FILE_LIST, true, 0);
    if (rc) {
      status(s, id, FX_FAILURE, tt_strerror(rc));
      handle_free(s, hd);
      k->kind = C_FREE;
      return;
    }
    s->async++;
    return;
  }
  hd->excl = pflags & PF_EXCL;
  /* Its mode goes to the device with it; the gateway keeps read and write for itself. */
  if (open_for_write(s, hd, false)) {
    status(s, id, FX_FAILURE, "the gateway cannot write its spool");
    handle_free(s, hd);
    return;
  }
  send_handle(s, id, hd);
}

static void on_close(sftp_t *s, handle_t *hd, uint32_t id) {
  if (hd->st == H_WRITE) {
    close(hd->fd);
    hd->fd = -1;
    hd->st = H_PUSHING; /* before: a push refused at once is answered by x_done inside it */
    hd->req = id;
    s->async++;
    int rc = tt_xfer_push(s->x, (uint32_t)(hd - s->hd) + 1, hd->local, hd->path, !hd->excl);
    if (rc && hd->st == H_PUSHING) {
      status(s, id, FX_FAILURE, tt_strerror(rc));
      handle_free(s, hd);
      done_async(s);
    }
    return;
  }
  if (hd->st == H_STATING || hd->st == H_PULLING || hd->st == H_PUSHING || hd->st == H_LISTING) {
    status(s, id, FX_FAILURE, "the handle is busy");
    return;
  }
  handle_free(s, hd);
  status(s, id, FX_OK, "");
}

static void on_read(sftp_t *s, handle_t *hd, rd_t *r, uint32_t id) {
  uint64_t off = get_u64(r);
  uint32_t len = get_u32(r);
  if (r->bad) return;
  if (hd->st != H_READ) {
    status(s, id, FX_FAILURE, "the handle is not open for reading");
    return;
  }
  static uint8_t buf[SFTP_READ_MAX];
  if (len > sizeof(buf)) len = sizeof(buf);
  ssize_t n = off > (uint64_t)INT64_MAX ? 0 : pread(hd->fd, buf, len, (off_t)off);
  if (n < 0) {
    status(s, id, FX_FAILURE, strerror(errno));
    return;
  }
  if (n == 0 && len > 0) {
    status(s, id, FX_EOF, "");
    return;
  }
  begin(s, FXP_DATA, id, true);
  put_str(s, buf, (size_t)n);
  send_reply(s);
}

static void on_write(sftp_t *s, handle_t *hd, rd_t *r, uint32_t id) {
  uint64_t off = get_u64(r);
  uint32_t len;
  const uint8_t *p = get_str(r, &len);
  if (r->bad) return;
  if (hd->st != H_WRITE) {
    status(s, id, FX_FAILURE, "the handle is not open for writing");
    return;
  }
  sshd_t *d = s->h->c->d;
  uint64_t end = off + len;
  if (end < off || end > (uint64_t)d->cfg.spool_max) {
    status(s, id, FX_FAILURE, "the file is larger than the gateway's spool takes");
    return;
  }
  uint64_t grow = end > hd->size ? end - hd->size : 0;
  if (d->spool_used + grow > (uint64_t)d->cfg.spool_max) {
    status(s, id, FX_FAILURE, "the gateway's spool is full; try again later");
    return;
  }
  ssize_t n = pwrite(hd->fd, p, len, (off_t)off);
  if (n != (ssize_t)len) {
    status(s, id, FX_FAILURE, n < 0 && errno == ENOSPC ? "the gateway's disk is full" : "the gateway cannot write its spool");
    return;
  }
  hd->size += grow;
  d->spool_used += grow;
  status(s, id, FX_OK, "");
}

static void on_fstat(sftp_t *s, handle_t *hd, uint32_t id) {
  struct stat sb;
  if ((hd->st != H_READ && hd->st != H_WRITE) || fstat(hd->fd, &sb) != 0) {
    status(s, id, FX_FAILURE, "the handle has no file");
    return;
  }
  sentry_t e = {.kind = TETHER__FILE_KIND__FILE_KIND_REGULAR, .size = (uint64_t)sb.st_size,
                .mtime_ns = (int64_t)sb.st_mtim.tv_sec * 1000000000, .mode = (uint32_t)sb.st_mode & 07777};
  begin(s, FXP_ATTRS, id, true);
  put_attrs(s, &e);
  send_reply(s);
}

/* A file being written: its mode and time go with it to the device (put -p, scp -p). */
static void on_fsetstat(sftp_t *s, handle_t *hd, rd_t *r, uint32_t id) {
  uint32_t flags, perm = 0, mtime = 0;
  uint64_t size = 0;
  get_attrs(r, &flags, &size, &perm, &mtime);
  if (r->bad) return;
  if (hd->st != H_WRITE) {
    unsupported(s, id, "setting attributes of a file not being written");
    return;
  }
  if (flags & ATTR_PERM) {
    hd->mode = (perm & 0777) | 0600;
    if (fchmod(hd->fd, hd->mode) != 0) {
      status(s, id, FX_FAILURE, strerror(errno));
      return;
    }
  }
  if (flags & ATTR_SIZE) { /* scp's in-place write ends by setting the size */
    sshd_t *d = s->h->c->d;
    if (size > hd->size && (size > (uint64_t)d->cfg.spool_max || d->spool_used + (size - hd->size) > (uint64_t)d->cfg.spool_max)) {
      status(s, id, FX_FAILURE, "the gateway's spool is full; try again later");
      return;
    }
    if (ftruncate(hd->fd, (off_t)size) != 0) {
      status(s, id, FX_FAILURE, strerror(errno));
      return;
    }
    d->spool_used = d->spool_used - hd->size + size;
    hd->size = size;
  }
  if (flags & ATTR_ACMODTIME) {
    struct timespec ts[2] = {{.tv_sec = mtime}, {.tv_sec = mtime}};
    (void)futimens(hd->fd, ts);
  }
  status(s, id, FX_OK, "");
}

static void on_readdir(sftp_t *s, handle_t *hd, uint32_t id) {
  if (hd->st != H_DIR) {
    status(s, id, FX_FAILURE, "the handle is not a directory");
    return;
  }
  if (hd->next >= hd->n) {
    status(s, id, FX_EOF, "");
    return;
  }
  size_t k = hd->n - hd->next < SFTP_DIR_BATCH ? hd->n - hd->next : SFTP_DIR_BATCH;
  begin(s, FXP_NAME, id, true);
  put_u32(s, (uint32_t)k);
  char ln[TT_FILE_NAME_MAX * 4 + 128];
  for (size_t i = 0; i < k; i++) {
    const sentry_t *e = &hd->ents[hd->next + i];
    put_cstr(s, e->name);
    longname(e, ln, sizeof(ln));
    put_cstr(s, ln);
    put_attrs(s, e);
  }
  hd->next += k;
  send_reply(s);
}

static void on_realpath(sftp_t *s, rd_t *r, uint32_t id) {
  char path[TT_FILE_PATH_MAX + 1];
  uint32_t n;
  const uint8_t *p = get_str(r, &n);
  if (r->bad) return;
  if (norm_path(p, n, path, sizeof(path))) {
    status(s, id, FX_NO_SUCH_FILE, "not a path the device takes");
    return;
  }
  sentry_t e = {.kind = TETHER__FILE_KIND__FILE_KIND_DIR, .mode = 0755};
  begin(s, FXP_NAME, id, true);
  put_u32(s, 1);
  put_cstr(s, path);
  put_cstr(s, path);
  put_attrs(s, &e);
  send_reply(s);
}

static void on_path_ctl(sftp_t *s, rd_t *r, uint32_t id, uint8_t type) {
  char path[TT_FILE_PATH_MAX + 1];
  if (!path_arg(s, r, id, path, sizeof(path))) return;
  uint32_t aflags = 0, perm = 0, mtime = 0;
  uint64_t asize = 0;
  if (type == FXP_MKDIR) get_attrs(r, &aflags, &asize, &perm, &mtime);
  if (r->bad) return;
  handle_t *hd = NULL;
  if (type == FXP_OPENDIR && !(hd = handle_new(s, path))) {
    status(s, id, FX_FAILURE, "too many open handles");
    return;
  }
  ctl_kind_t kind = type == FXP_MKDIR ? C_CHANGE : type == FXP_OPENDIR ? C_OPENDIR_STAT : C_STAT;
  ctl_t *k = ctl_new(s, kind, id, path);
  if (!k) { /* cannot happen: input stops at SFTP_ASYNC_MAX */
    status(s, id, FX_FAILURE, "too many requests waiting");
    if (hd) handle_free(s, hd);
    return;
  }
  if (hd) {
    hd->st = H_LISTING;
    hd->req = id;
    hd->local[0] = '\0';
    k->handle = (int)(hd - s->hd);
  }
  int rc = type == FXP_MKDIR ? ctl_send(s, k, TETHER__FILE_MSG_TYPE__FILE_MKDIR, false, (aflags & ATTR_PERM) ? perm & 07777 : 0755)
                             : ctl_send(s, k, TETHER__FILE_MSG_TYPE__FILE_LIST, true, 0);
  if (rc) {
    status(s, id, FX_FAILURE, tt_strerror(rc));
    if (hd) handle_free(s, hd);
    k->kind = C_FREE;
    return;
  }
  s->async++;
}

/* REMOVE, RMDIR, RENAME: the device makes the change, confined as a PUT is. */
static void on_change(sftp_t *s, rd_t *r, uint32_t id, uint8_t type) {
  char path[TT_FILE_PATH_MAX + 1], to[TT_FILE_PATH_MAX + 1] = "";
  if (!path_arg(s, r, id, path, sizeof(path))) return;
  if (type == FXP_RENAME && !path_arg(s, r, id, to, sizeof(to))) return;
  if (r->bad) return;
  ctl_t *k = ctl_new(s, C_CHANGE, id, path);
  if (!k) {
    status(s, id, FX_FAILURE, "too many requests waiting");
    return;
  }
  snprintf(k->to, sizeof(k->to), "%s", to);
  Tether__FileMsgType t = type == FXP_REMOVE ? TETHER__FILE_MSG_TYPE__FILE_REMOVE
                          : type == FXP_RMDIR ? TETHER__FILE_MSG_TYPE__FILE_RMDIR
                                              : TETHER__FILE_MSG_TYPE__FILE_RENAME;
  int rc = ctl_send(s, k, t, false, 0);
  if (rc) {
    status(s, id, FX_FAILURE, tt_strerror(rc));
    k->kind = C_FREE;
    return;
  }
  s->async++;
}

/* One whole packet (after its length). false: the client broke the protocol. */
static bool packet(sftp_t *s, const uint8_t *p, size_t n) {
  rd_t r = {.p = p, .n = n};
  if (n < 1) return false;
  uint8_t type = p[0];
  r.off = 1;
  if (type == FXP_INIT) {
    (void)get_u32(&r); /* the client's version: we speak 3 */
    s->inited = true;
    begin(s, FXP_VERSION, 0, false);
    put_u32(s, SFTP_VERSION);
    send_reply(s);
    return true;
  }
  if (!s->inited) return false;
  uint32_t id = get_u32(&r);
  if (r.bad) return false;
  uint32_t hl;
  const uint8_t *hp;
  handle_t *hd;
  switch (type) {
  case FXP_OPEN: on_open(s, &r, id); break;
  case FXP_CLOSE:
  case FXP_READ:
  case FXP_WRITE:
  case FXP_FSTAT:
  case FXP_FSETSTAT:
  case FXP_READDIR:
    hp = get_str(&r, &hl);
    if (r.bad) return false;
    if (!(hd = handle_of(s, hp, hl))) {
      status(s, id, FX_FAILURE, "no such handle");
      break;
    }
    if (type == FXP_CLOSE) on_close(s, hd, id);
    else if (type == FXP_READ) on_read(s, hd, &r, id);
    else if (type == FXP_WRITE) on_write(s, hd, &r, id);
    else if (type == FXP_FSTAT) on_fstat(s, hd, id);
    else if (type == FXP_FSETSTAT) on_fsetstat(s, hd, &r, id);
    else on_readdir(s, hd, id);
    break;
  case FXP_STAT:
  case FXP_LSTAT:
  case FXP_OPENDIR:
  case FXP_MKDIR: on_path_ctl(s, &r, id, type); break;
  case FXP_REALPATH: on_realpath(s, &r, id); break;
  case FXP_SETSTAT: unsupported(s, id, "setting a path's attributes"); break;
  case FXP_REMOVE:
  case FXP_RMDIR:
  case FXP_RENAME: on_change(s, &r, id, type); break;
  case FXP_READLINK:
  case FXP_SYMLINK: unsupported(s, id, "symbolic links"); break;
  default: status(s, id, FX_OP_UNSUPPORTED, "unknown request"); break;
  }
  return !r.bad;
}

/* -- the channel ----------------------------------------------------------------------------- */

int sftp_new(gw_chan_t *h, tt_link_t *link, tt_chan_t *tc, sftp_t **out) {
  sftp_t *s = calloc(1, sizeof(*s));
  if (!s) return TT_ENOMEM;
  s->h = h;
  if (getrandom(&s->serial, sizeof(s->serial), 0) != (ssize_t)sizeof(s->serial)) s->serial = (uint32_t)uv_hrtime();
  snprintf(s->dir, sizeof(s->dir), "%.500s/sftp-XXXXXX", h->c->d->cfg.spool_dir);
  if (!mkdtemp(s->dir)) {
    free(s);
    return TT_EIO;
  }
  tt_buf_init(&s->in, SFTP_PACKET_MAX + 4);
  tt_buf_init(&s->out, SFTP_PACKET_MAX + 64);
  for (size_t i = 0; i < SFTP_HANDLES_MAX; i++) s->hd[i].fd = -1;
  int rc = tt_xfer_new(&s->x, link, tc, false, &spool_fs, &xfer_cbs, s);
  if (rc) {
    tt_buf_free(&s->in);
    tt_buf_free(&s->out);
    free(s);
    return rc;
  }
  *out = s;
  return 0;
}

void sftp_free(sftp_t *s) {
  if (!s) return;
  for (size_t i = 0; i < SFTP_HANDLES_MAX; i++)
    if (s->hd[i].st != H_FREE) handle_free(s, &s->hd[i]);
  if (s->x) tt_xfer_free(s->x);
  (void)rmdir(s->dir); /* empty unless a pool job still writes: the next start empties it */
  tt_buf_free(&s->in);
  tt_buf_free(&s->out);
  free(s);
}

tt_xfer_t *sftp_xfer(sftp_t *s) { return s->x; }

bool sftp_idle(const sftp_t *s) { return s->async == 0; }

size_t sftp_room(const sftp_t *s) {
  if (s->failed || s->h->queued >= SFTP_OUT_HIGH || s->async >= SFTP_ASYNC_MAX) return 0;
  if (s->in.len < 4) return 4 - s->in.len;
  uint32_t len = tt_get_u32(tt_buf_head(&s->in));
  return len == 0 || len > SFTP_PACKET_MAX ? 1 : 4 + (size_t)len - s->in.len;
}

size_t sftp_input(sftp_t *s, const uint8_t *p, size_t n) {
  size_t used = 0;
  while (used < n && !s->failed) {
    if (s->h->queued >= SFTP_OUT_HIGH || s->async >= SFTP_ASYNC_MAX) break; /* wait: the rest stays in libssh */
    /* The length first, then the body, into s->in; a packet is handled once it is whole. */
    size_t want = 4;
    if (s->in.len >= 4) {
      uint32_t len = tt_get_u32(tt_buf_head(&s->in));
      if (len == 0 || len > SFTP_PACKET_MAX) {
        s->failed = true;
        gw_chan_fail(s->h, "the sftp client sent a message over the size limit");
        break;
      }
      want = 4 + (size_t)len;
    }
    size_t take = want - s->in.len < n - used ? want - s->in.len : n - used;
    if (tt_buf_append(&s->in, p + used, take)) {
      s->failed = true;
      break;
    }
    used += take;
    if (s->in.len < want || want == 4) continue;
    bool ok = packet(s, tt_buf_head(&s->in) + 4, s->in.len - 4);
    tt_buf_reset(&s->in);
    if (!ok) {
      s->failed = true;
      gw_chan_fail(s->h, "the sftp client broke the protocol");
    }
  }
  return used;
}
