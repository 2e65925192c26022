/* A release's bytes to the agent it was offered to: the agent opens CHANNEL_RELEASE naming
 * the package's sha256 and the offset it holds already (a download that broke resumes
 * there); the broker sends from there to the end and EOF, reading the file on libuv's thread
 * pool a block at a time as the channel's credit allows, so one slow agent holds one block.
 * One such channel per agent; the agent closes it once it has the EOF. The agent checks the
 * bytes against the signed manifest: the broker only moves them. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include "rollout.h"
#include "tt/hex.h"
#include "tt/log.h"
#include "tt/msg.h"

#define MOD "release"
#define BLOCK (64u * 1024u)
/* The agent sends nothing on the channel: the window it may use is small. */
#define SERVE_WINDOW 4096u

struct broker_serve_s {
  broker_conn_t *c;        /* NULL once the channel closed while the pool held it */
  tt_chan_t *ch;
  uv_fs_t req;
  uv_file fd;
  uint64_t pos, size;
  bool reading;
  bool eof_sent;
  char sha[65];
  uint8_t buf[BLOCK];
};

static void serve_free(struct broker_serve_s *s) {
  if (s->fd >= 0) {
    uv_fs_t r;
    uv_fs_close(NULL, &r, s->fd, NULL); /* a close of a file we read: no waiting on a disk */
    uv_fs_req_cleanup(&r);
  }
  free(s);
}

static void pump(struct broker_serve_s *s);

static void read_done(uv_fs_t *r) {
  struct broker_serve_s *s = r->data;
  ssize_t n = r->result;
  uv_fs_req_cleanup(r);
  s->reading = false;
  broker_conn_t *c = s->c;
  if (!c) {
    serve_free(s);
    return;
  }
  tt_mux_t *m = &c->link->mux;
  if (n <= 0) {
    TT_WARN(MOD, "release read failed", "device=%s sha256=%.12s err=%s", c->id.name, s->sha,
            n < 0 ? uv_strerror((int)n) : "short file");
    tt_mux_close(m, s->ch, TT_EIO, "the broker could not read the release");
    c->serve = NULL;
    serve_free(s);
    tt_link_flush(c->link);
    return;
  }
  uint8_t fl = s->pos + (uint64_t)n == s->size ? TT_FF_EOF : 0;
  if (tt_mux_send(m, s->ch, s->buf, (size_t)n, fl)) {
    tt_mux_close(m, s->ch, TT_EIO, "cannot send");
    c->serve = NULL;
    serve_free(s);
    tt_link_flush(c->link);
    return;
  }
  s->pos += (uint64_t)n;
  s->eof_sent = fl != 0;
  tt_link_flush(c->link);
  pump(s);
}

static void pump(struct broker_serve_s *s) {
  if (s->reading || s->eof_sent || !s->c) return;
  uint32_t room = tt_mux_sendable(s->ch);
  if (room == 0) return;
  uint64_t left = s->size - s->pos;
  size_t n = room < BLOCK ? room : BLOCK;
  if (n > left) n = (size_t)left;
  uv_buf_t b = uv_buf_init((char *)s->buf, (unsigned)n);
  s->req.data = s;
  if (uv_fs_read(s->c->b->loop, &s->req, s->fd, &b, 1, (int64_t)s->pos, read_done) == 0) s->reading = true;
}

static void reject(tt_mux_t *m, tt_chan_t *ch, int code, const char *why) {
  tt_mux_reject(m, ch, code, why);
  tt_link_flush(tt_link_from_mux(m));
}

void broker_serve_open(tt_mux_t *m, tt_chan_t *ch, const Tether__ChannelOpen *msg) {
  broker_conn_t *c = tt_link_from_mux(m)->data;
  char sha[65];
  if (c->id.role != TT_ROLE_AGENT) return reject(m, ch, TT_EROLE, "releases go to agents");
  if (msg->release.len != 32) return reject(m, ch, TT_EINVAL, "a release is named by its sha256 (32 bytes)");
  if (c->serve) return reject(m, ch, TT_EBUSY, "one release download at a time");
  tt_hex(sha, sizeof sha, msg->release.data, 32);
  if (!ro_may_fetch(c->b, c->id.name, sha))
    return reject(m, ch, TT_EDENIED, "that release was not offered to this device");
  const store_release_t *rel = ro_release_by_sha(c->b, sha);
  if (!rel) return reject(m, ch, TT_ENOTFOUND, "no such release");
  if (msg->offset > (uint64_t)rel->size) return reject(m, ch, TT_EINVAL, "offset past the end of the release");
  char path[700];
  ro_release_path(c->b, sha, path, sizeof path);
  struct broker_serve_s *s = calloc(1, sizeof *s);
  if (!s) return reject(m, ch, TT_ENOMEM, "out of memory");
  /* A local file the broker made itself: opened here, on the loop, as the recordings are. */
  uv_fs_t r;
  s->fd = uv_fs_open(NULL, &r, path, O_RDONLY | O_CLOEXEC, 0, NULL);
  uv_fs_req_cleanup(&r);
  if (s->fd < 0) {
    TT_WARN(MOD, "release file missing", "sha256=%s err=%s", sha, uv_strerror(s->fd));
    free(s);
    return reject(m, ch, TT_EIO, "the broker cannot read that release");
  }
  if (tt_mux_accept(m, ch, SERVE_WINDOW, true, 0)) {
    serve_free(s);
    return reject(m, ch, TT_ENOMEM, "cannot accept");
  }
  s->c = c;
  s->ch = ch;
  s->pos = msg->offset;
  s->size = (uint64_t)rel->size;
  snprintf(s->sha, sizeof s->sha, "%s", sha);
  c->serve = s;
  TT_INFO(MOD, "release download", "device=%s version=%s sha256=%.12s from=%" PRIu64 " size=%" PRIu64, c->id.name,
          rel->version, sha, s->pos, s->size);
  if (s->pos == s->size) {
    if (tt_mux_send(m, ch, NULL, 0, TT_FF_EOF) == 0) s->eof_sent = true;
  } else {
    pump(s);
  }
  tt_link_flush(c->link);
}

void ro_serve_stop(broker_conn_t *c, const char *why) {
  struct broker_serve_s *s = c->serve;
  if (!s || !c->link) return;
  /* ECLOSED: to the agent, the download stopped as a lost link stops it (it resumes later). */
  tt_mux_close(&c->link->mux, s->ch, TT_ECLOSED, why);
  tt_link_flush(c->link);
  c->serve = NULL;
  if (s->reading) s->c = NULL; /* read_done frees it */
  else serve_free(s);
}

bool broker_serve_owns(broker_conn_t *c, tt_chan_t *ch) { return c->serve && c->serve->ch == ch; }

void broker_serve_credit(broker_conn_t *c, tt_chan_t *ch) {
  (void)ch;
  pump(c->serve);
}

void broker_serve_data(broker_conn_t *c, tt_chan_t *ch, size_t n) {
  tt_mux_consumed(&c->link->mux, ch, n); /* nothing is expected; counted and dropped */
}

void broker_serve_close(broker_conn_t *c, tt_chan_t *ch) {
  struct broker_serve_s *s = c->serve;
  if (!s || s->ch != ch) return;
  c->serve = NULL;
  if (s->reading) s->c = NULL; /* read_done frees it */
  else serve_free(s);
}
