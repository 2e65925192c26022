/* One release downloaded from the broker (upgrade.h): a CHANNEL_RELEASE the agent opens,
 * naming the package's sha256 and the bytes SHA.part holds already, so a download the link
 * cut short resumes there. Bytes are appended on libuv's thread pool and credit goes back as
 * they are written, so the broker never sends more than a window ahead of the disk. At the
 * end the whole file is hashed again from the disk (resumed bytes too) and must be the size
 * and sha256 its manifest signs; then it is renamed SHA.pkg. A write that fails (a full
 * disk) ends the download and removes the part: nothing else on the machine is touched. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "upgrade.h"
#include "tt/log.h"
#include "tt/msg.h"

#define MOD "upgrade"
#define WRITE_MAX (256u * 1024u)

struct agent_fetch_s {
  agent_t *a;
  tt_release_t r;
  char part[UPGRADE_PATH_MAX], pkg[UPGRADE_PATH_MAX];
  uv_file fd;
  tt_chan_t *ch;
  uint64_t held;          /* bytes in the part file */
  tt_buf_t q;             /* received, not yet written */
  size_t writing;         /* bytes of wbuf being written (0: no write out) */
  bool eof;
  bool hashing;
  bool freed;             /* freed while the pool held it: the completion frees it */
  agent_fetch_cb cb;
  uv_fs_t wreq;
  uv_work_t work;
  int rc;
  char why[TT_TEXT_MAX];
  uint8_t wbuf[WRITE_MAX]; /* what the pool writes: q may grow (and move) meanwhile */
  size_t wlen, woff;       /* bytes in wbuf, and written of them */
};

static agent_fetch_t *g_fetch; /* the one download at a time */

uint64_t agent_fetch_done(const agent_fetch_t *f) { return f->held; }

bool agent_fetch_owns(const tt_chan_t *ch) { return g_fetch && g_fetch->ch == ch && ch; }

/* Close our side of the channel (code 0: done); later frames on it are dropped by chan.c. */
static void detach(agent_fetch_t *f, int code, const char *why) {
  if (f->ch && f->a->link) {
    f->ch->data = NULL;
    tt_mux_close(&f->a->link->mux, f->ch, code, why);
    tt_link_flush(f->a->link);
  }
  f->ch = NULL;
}

static void really_free(agent_fetch_t *f) {
  if (f->fd >= 0) close(f->fd);
  tt_buf_free(&f->q);
  free(f);
}

void agent_fetch_free(agent_fetch_t *f) {
  if (!f) return;
  if (g_fetch == f) g_fetch = NULL;
  detach(f, TT_ECLOSED, "download stopped");
  if (f->writing || f->hashing) f->freed = true;
  else really_free(f);
}

/* The end, once: the callback decides what comes next (and frees f). */
static void finish(agent_fetch_t *f, int rc, const char *fmt, ...) TT_PRINTF(3, 4);
static void finish(agent_fetch_t *f, int rc, const char *fmt, ...) {
  if (!f->cb) return;
  if (fmt) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(f->why, sizeof f->why, fmt, ap);
    va_end(ap);
  }
  agent_fetch_cb cb = f->cb;
  f->cb = NULL;
  cb(f->a, rc, f->why);
}

/* ---- checking the whole file ------------------------------------------------------------- */

static void hash_work(uv_work_t *w) {
  agent_fetch_t *f = w->data;
  f->rc = 0;
  int fd = open(f->part, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  EVP_MD_CTX *md = EVP_MD_CTX_new();
  uint8_t buf[64 * 1024], digest[32];
  uint64_t total = 0;
  if (fd < 0 || !md || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
    snprintf(f->why, sizeof f->why, "cannot read the download %.120s: %.60s", f->part, strerror(errno));
    f->rc = TT_EIO;
    goto out;
  }
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      snprintf(f->why, sizeof f->why, "cannot read the download: %s", strerror(errno));
      f->rc = TT_EIO;
      goto out;
    }
    if (n == 0) break;
    total += (uint64_t)n;
    EVP_DigestUpdate(md, buf, (size_t)n);
  }
  unsigned dl = 0;
  EVP_DigestFinal_ex(md, digest, &dl);
  if (total != f->r.size || memcmp(digest, f->r.sha256, 32)) {
    snprintf(f->why, sizeof f->why,
             total != f->r.size ? "the package is %" PRIu64 " bytes, its manifest signs %" PRIu64 ": refused"
                                : "the package's sha256 is not the one its manifest signs: refused (tampered with?)",
             total, f->r.size);
    f->rc = TT_EINVAL;
    unlink(f->part);
    goto out;
  }
  if (rename(f->part, f->pkg)) {
    snprintf(f->why, sizeof f->why, "cannot keep the package: %s", strerror(errno));
    f->rc = TT_EIO;
  }
out:
  if (fd >= 0) close(fd);
  EVP_MD_CTX_free(md);
}

static void hash_done(uv_work_t *w, int status) {
  agent_fetch_t *f = w->data;
  f->hashing = false;
  if (f->freed) {
    really_free(f);
    return;
  }
  if (status) f->rc = TT_EIO, snprintf(f->why, sizeof f->why, "the check of the package did not run");
  if (f->rc == 0) TT_INFO(MOD, "package verified", "version=%s size=%" PRIu64, f->r.version, f->r.size);
  finish(f, f->rc, NULL);
}

static void check_file(agent_fetch_t *f) {
  if (f->fd >= 0) {
    (void)fsync(f->fd); /* on the loop: once per package, after its last write */
    close(f->fd);
    f->fd = -1;
  }
  f->work.data = f;
  if (uv_queue_work(f->a->loop, &f->work, hash_work, hash_done)) {
    finish(f, TT_EIO, "cannot check the package");
    return;
  }
  f->hashing = true;
}

/* ---- writing -------------------------------------------------------------------------------- */

static void write_more(agent_fetch_t *f);

static void write_cb(uv_fs_t *r) {
  agent_fetch_t *f = r->data;
  ssize_t n = r->result;
  uv_fs_req_cleanup(r);
  f->writing = 0;
  if (f->freed) {
    really_free(f);
    return;
  }
  if (n < 0 || (size_t)n == 0) {
    int e = n < 0 ? (int)-n : EIO;
    unlink(f->part);
    detach(f, TT_EIO, "the agent could not write the download");
    finish(f, e == ENOSPC ? TT_EFULL : TT_EIO, "cannot write the download %.120s: %.60s", f->part, strerror(e));
    return;
  }
  f->woff += (size_t)n; /* a short write: the rest of wbuf goes next */
  f->held += (uint64_t)n;
  if (f->ch && f->a->link) {
    tt_mux_consumed(&f->a->link->mux, f->ch, (size_t)n);
    tt_link_flush(f->a->link);
  }
  agent_upgrade_progress(f->a, f->held, f->r.size);
  write_more(f);
}

static void write_more(agent_fetch_t *f) {
  if (f->writing) return;
  if (f->woff == f->wlen && f->q.len) {
    f->wlen = f->q.len < WRITE_MAX ? f->q.len : WRITE_MAX;
    f->woff = 0;
    memcpy(f->wbuf, tt_buf_head(&f->q), f->wlen);
    tt_buf_consume(&f->q, f->wlen);
  }
  if (f->woff == f->wlen) {
    if (f->eof) {
      detach(f, 0, "done");
      check_file(f);
    } else {
      tt_buf_shrink(&f->q);
    }
    return;
  }
  size_t n = f->wlen - f->woff;
  uv_buf_t b = uv_buf_init((char *)f->wbuf + f->woff, (unsigned)n);
  f->wreq.data = f;
  int rc = uv_fs_write(f->a->loop, &f->wreq, f->fd, &b, 1, -1, write_cb);
  if (rc) {
    finish(f, TT_EIO, "cannot write the download: %s", uv_strerror(rc));
    return;
  }
  f->writing = n;
}

/* ---- the channel ---------------------------------------------------------------------------- */

void agent_fetch_accepted(tt_mux_t *m, tt_chan_t *ch) {
  (void)m;
  (void)ch;
  TT_INFO(MOD, "downloading", "version=%s from=%" PRIu64 " size=%" PRIu64, g_fetch->r.version, g_fetch->held,
          g_fetch->r.size);
}

void agent_fetch_data(tt_mux_t *m, tt_chan_t *ch, const uint8_t *p, size_t n, uint8_t flags) {
  agent_fetch_t *f = g_fetch;
  uint64_t have = f->held + (f->wlen - f->woff) + f->q.len + n;
  if (flags & (TT_FF_CTRL | TT_FF_ZSTD) || f->eof || have > f->r.size || ((flags & TT_FF_EOF) && have != f->r.size)) {
    (void)m;
    (void)ch;
    unlink(f->part);
    detach(f, TT_EPROTO, "not the release's bytes");
    finish(f, TT_EPROTO, "the broker sent other bytes than the release's size");
    return;
  }
  if (tt_buf_append(&f->q, p, n)) {
    detach(f, TT_EFULL, "buffer full");
    finish(f, TT_ENOMEM, "out of memory for the download");
    return;
  }
  if (flags & TT_FF_EOF) f->eof = true;
  write_more(f);
}

void agent_fetch_closed(tt_mux_t *m, tt_chan_t *ch, int code, const char *msg) {
  (void)m;
  (void)ch;
  agent_fetch_t *f = g_fetch;
  f->ch = NULL;
  if (f->eof) return; /* every byte came: the write and the check go on */
  if (code == TT_ECLOSED) {
    finish(f, TT_ECLOSED, "the link went down");
    return;
  }
  finish(f, code ? code : TT_EPROTO, "the broker stopped the download: %s", msg && msg[0] ? msg : tt_errname(code));
}

int agent_fetch_start(agent_t *a, const char *dir, const tt_release_t *r, agent_fetch_cb cb, agent_fetch_t **out,
                      char *why, size_t cap) {
  if (g_fetch) {
    snprintf(why, cap, "a download is under way already");
    return TT_EBUSY;
  }
  if (!a->link || !a->welcomed) {
    snprintf(why, cap, "not connected");
    return TT_ECLOSED;
  }
  agent_fetch_t *f = calloc(1, sizeof *f);
  if (!f) {
    snprintf(why, cap, "out of memory");
    return TT_ENOMEM;
  }
  f->a = a;
  f->r = *r;
  f->cb = cb;
  f->fd = -1;
  tt_buf_init(&f->q, TT_WINDOW_BULK + TT_DATA_CHUNK_MAX);
  agent_upgrade_file(f->part, sizeof f->part, dir, r->sha256, "part");
  agent_upgrade_file(f->pkg, sizeof f->pkg, dir, r->sha256, "pkg");
  g_fetch = f;
  *out = f;
  /* Downloaded before (an earlier offer that stopped after it): checked again, not fetched. */
  if (access(f->pkg, F_OK) == 0 && rename(f->pkg, f->part) == 0) {
    f->eof = true;
    check_file(f);
    return 0;
  }
  f->fd = open(f->part, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
  struct stat st;
  if (f->fd < 0 || fstat(f->fd, &st)) {
    snprintf(why, cap, "cannot write %s: %s", f->part, strerror(errno));
    g_fetch = NULL;
    *out = NULL;
    really_free(f);
    return TT_EIO;
  }
  if ((uint64_t)st.st_size > r->size && ftruncate(f->fd, 0) == 0) st.st_size = 0;
  f->held = (uint64_t)st.st_size;
  Tether__ChannelOpen o = TETHER__CHANNEL_OPEN__INIT;
  o.kind = TETHER__CHANNEL_KIND__CHANNEL_RELEASE;
  o.priority = TETHER__PRIORITY__PRIORITY_BULK;
  o.release = (ProtobufCBinaryData){32, f->r.sha256};
  o.offset = f->held;
  if (tt_mux_open(&a->link->mux, &o, TT_WINDOW_BULK, true, &f->ch)) {
    snprintf(why, cap, "cannot open a channel to the broker");
    g_fetch = NULL;
    *out = NULL;
    really_free(f);
    return TT_EFULL;
  }
  f->ch->prio = TT_PRIO_BULK;
  f->ch->data = f;
  tt_link_flush(a->link);
  return 0;
}
