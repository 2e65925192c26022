/* The transfer engine: files over one CHANNEL_FILES channel (see tt/xfer.h and the "files"
 * section of tether.proto).
 *
 * Each file is an op: the console's pull or push, or the agent's serving of a GET or PUT.
 * An op runs its disk work as pool jobs, one at a time (so its hash contexts and partial
 * file see every chunk in order), and the loop moves bytes between jobs and the channel:
 *
 *  sending:   open ─► (prefix check) ─► read chunk k: pread, sha256, zstd ─► CHUNK + bytes
 *  receiving: open partial ─► (restart) ─► chunk k: inflate, check sha256, write ─► finish
 *
 * Outbound, control messages that are not part of a file's stream (GET, PUT, READY, DONE,
 * ERROR, ENTRIES...) go before stream messages (BEGIN, CHUNK and its bytes, END), so a
 * pipeline of small files never waits behind a chunk; a file's stream is never interleaved
 * with another file's. Inbound, a stream message while a chunk's bytes are still due is a
 * protocol violation that ends the channel; anything wrong with one file ends that file.
 *
 * Credit: in-band control is consumed at once; chunk bytes only once their chunk is written
 * (or dropped), so a slow disk slows the sender instead of growing our memory: a receiver
 * holds at most a window of chunk bytes. A sender holds at most XFER_PREFETCH bytes of
 * chunks read ahead. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zstd.h>
#include "tt/log.h"
#include "tt/msg.h"
#include "xfer_int.h"

/* Chunks read ahead of the wire per channel: two keep the link busy while the next is read
 * and compressed; more would only hold memory. */
#define XFER_PREFETCH (2u * TT_FILE_CHUNK)
/* Control messages waiting for credit (bounded by the ops: a few per op). */
#define XFER_CTLQ_MAX (1u << 20)
/* A chunk is sent compressed only if zstd saves at least 1/32 of it. */
#define XFER_MIN_SAVING_SHIFT 5
/* After two chunks that did not shrink, compression is tried on one chunk in 16 only. */
#define XFER_PROBE_EVERY 16u
/* zstd levels the sender moves between: up while the link is the bottleneck, down while the
 * sender's CPU is (see xfer_adapt in xfer_int.h). */
static const int xfer_levels[] = {-5, -1, 1, 3, 6};
#define XFER_LEVELS ((int)(sizeof(xfer_levels) / sizeof(xfer_levels[0])))
#define XFER_LEVEL_START 2
#define XFER_ADAPT_STREAK 4u

typedef enum {
  OP_PULL = 1, /* console receives */
  OP_PUSH,     /* console sends */
  OP_GET,      /* agent sends */
  OP_PUT,      /* agent receives */
} op_kind_t;

typedef struct chunk_s {
  struct chunk_s *next;
  uint64_t index;
  uint32_t raw_len, wire_len, codec;
  uint8_t sha[32];
  uint32_t sent;     /* bytes of buf already on the channel (sender) / received (receiver) */
  uint64_t zns;      /* sender: CPU time compressing it took (0: not tried) */
  uint8_t *buf;      /* wire bytes */
} chunk_t;

typedef struct op_s op_t;
struct op_s {
  op_t *next;                 /* x->ops */
  op_t *snext;                /* x's send queue */
  tt_xfer_t *x;
  op_kind_t kind;
  uint32_t id;
  char *path, *local;
  bool force;
  bool sending;               /* this side sends the file */
  bool busy;                  /* a pool job holds it */
  bool asked;                 /* the peer knows of it: it asked (agent), or our GET, PUT or
                                 READY is queued (a stream or READY before that is not for
                                 it: the job that opens its file may still be running) */
  bool finished;              /* on_done ran; waiting only for a job to come back */
  bool in_sendq;
  bool began;                 /* BEGIN sent / received */
  bool ended;                 /* END sent / received */
  bool peer_failed;           /* the peer said ERROR: say nothing more about it */
  bool need_restart;          /* receiver: BEGIN said from 0: empty the partial first */
  bool sha_final;             /* sender: sha holds the whole file's */
  int job;                    /* JOB_* being run or to run */
  uint64_t t0_ns;
  /* the file */
  int fd;                     /* sender */
  tt_xfer_stat_t st;          /* source */
  uint64_t nchunks;
  uint64_t have_chunks;       /* what the receiver keeps (sender: as told; receiver: ours) */
  uint8_t have_digest[32];
  tt_xfer_stat_t have_stat;
  bool have_stat_set;
  uint64_t from_chunk;
  uint64_t next_read;         /* sender: next chunk to read */
  uint64_t next_index;        /* receiver: next chunk expected */
  EVP_MD_CTX *whole;          /* sender */
  chunk_t *ready, *ready_tail; /* sender: read, waiting for the wire; receiver: to write */
  uint32_t nready;
  size_t ready_bytes;
  chunk_t *cur;               /* sender: on the wire */
  xfer_part_t part;           /* receiver */
  xfer_gate_t gate;           /* receiver: JOB_FINISH's rename against giving up meanwhile */
  bool part_open;
  uint8_t sha[32];            /* the whole file's, once known */
  uint8_t end_sha[32];        /* receiver: what END said */
  uint64_t resumed, wire, moved;
  int code;
  char msg[XFER_ERR_MAX];
  char note[XFER_ERR_MAX];
  /* job I/O: written by the job, read on the loop once it is back (op_done and end_all may
   * run while it is out) */
  tt_xfer_stat_t jst;         /* JOB_OPEN_READ: the source */
  bool jpart_open;            /* JOB_OPEN_PART: the partial file is open */
  uint8_t jsha[32];           /* JOB_FINISH: the whole file's */
  int jrc;
  char jerr[XFER_ERR_MAX];
  chunk_t *jchunk;
  int jlevel;
};

enum { JOB_NONE = 0, JOB_OPEN_READ, JOB_PREFIX, JOB_READ, JOB_OPEN_PART, JOB_RESTART, JOB_WRITE, JOB_FINISH };

typedef struct seg_s {
  struct seg_s *next;
  size_t len;
  uint8_t p[];
} seg_t;

struct tt_xfer_s {
  tt_link_t *link;
  tt_chan_t *ch;
  bool serve;
  tt_xfer_fs_t fs;
  tt_xfer_cbs_t cbs;
  void *data;
  op_t *ops;
  unsigned nops;              /* ops not finished */
  unsigned jobs;              /* pool jobs holding x */
  bool dead;                  /* channel gone or failed: no more sending */
  bool freed;                 /* the owner let go: free once jobs == 0 */
  bool in_cb;
  /* outbound */
  seg_t *ctlq, *ctlq_tail;
  size_t ctlq_bytes;
  op_t *sq, *sq_tail;         /* ops sending, in order; the head owns the stream */
  size_t prefetched;
  xfer_adapt_t adapt;         /* the compression level */
  unsigned incompressible, probe;
  bool starved;               /* the wire had credit and no chunk */
  bool pumping, repump;
  unsigned depth;             /* entry points on the stack: x is not freed under them */
  /* inbound stream */
  op_t *rx;                   /* the file whose chunk bytes are arriving (NULL: drop them) */
  chunk_t *rx_chunk;
  uint32_t rx_need;           /* bytes of the current chunk still due */
  bool rx_active;             /* between BEGIN and END of some file */
  uint64_t wire_out, raw_out, wire_in, raw_in;
};

static void pump(tt_xfer_t *x);
static void pump_once(tt_xfer_t *x);
static void maybe_free(tt_xfer_t *x);
static void job_next(op_t *o);
static void send_done(op_t *o);
static void op_fail(op_t *o, int code, bool tell_peer, const char *fmt, ...) TT_PRINTF(4, 5);
static void x_fail(tt_xfer_t *x, int code, const char *msg);

/* ---- chunk buffers ------------------------------------------------------------------- */

/* Chunk-sized buffers come from a small cache: a fresh 1 MiB malloc is an mmap whose first
 * touch faults in 256 pages, and a transfer makes two or three of them per chunk (~10% of a
 * pull's CPU went to those faults). Each buffer carries its capacity in front of it. */
#define XFER_BUF_CACHE 8u
#define XFER_BUF_HDR 16u
static pthread_mutex_t buf_mu = PTHREAD_MUTEX_INITIALIZER;
static uint8_t *buf_cache[XFER_BUF_CACHE];
static unsigned buf_cached;

static uint8_t *buf_get(size_t n) {
  size_t cap = n > TT_FILE_CHUNK / 16 && n <= TT_FILE_CHUNK ? TT_FILE_CHUNK : n;
  uint8_t *b = NULL;
  if (cap == TT_FILE_CHUNK) {
    pthread_mutex_lock(&buf_mu);
    if (buf_cached) b = buf_cache[--buf_cached];
    pthread_mutex_unlock(&buf_mu);
  }
  if (!b) {
    b = malloc(XFER_BUF_HDR + (cap ? cap : 1));
    if (!b) return NULL;
    memcpy(b, &cap, sizeof(cap));
  }
  return b + XFER_BUF_HDR;
}

static void buf_put(uint8_t *p) {
  if (!p) return;
  uint8_t *b = p - XFER_BUF_HDR;
  size_t cap;
  memcpy(&cap, b, sizeof(cap));
  if (cap == TT_FILE_CHUNK) {
    pthread_mutex_lock(&buf_mu);
    if (buf_cached < XFER_BUF_CACHE) {
      buf_cache[buf_cached++] = b;
      b = NULL;
    }
    pthread_mutex_unlock(&buf_mu);
  }
  free(b);
}

/* ---- small things ------------------------------------------------------------------- */

static uint64_t now_ns(void) { return uv_hrtime(); }

static void chunk_free(chunk_t *c) {
  if (!c) return;
  buf_put(c->buf);
  free(c);
}

/* Chunk bytes a receiver held back from credit and will never write: the peer may send as
 * many again, or the window shrinks for good with every file that fails. Nothing to give
 * once the channel is gone. */
static void credit_back(tt_xfer_t *x, size_t n) {
  if (n && !x->dead) tt_mux_consumed((&x->link->mux), x->ch, n);
}

/* A message cut to its buffer by snprintf may end in the middle of a character (a path of
 * multi-byte characters is most of one): cut it back to whole characters, as it goes to the
 * peer as text. */
static void fit_text(char *s) {
  size_t n = strlen(s), i = n;
  while (i > 0 && ((uint8_t)s[i - 1] & 0xc0) == 0x80) i--;
  if (i == 0) return;
  uint8_t lead = (uint8_t)s[i - 1];
  size_t need = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc0 ? 2 : 1;
  if (n - (i - 1) < need) s[i - 1] = '\0';
}

static op_t *op_find(tt_xfer_t *x, uint32_t id) {
  for (op_t *o = x->ops; o; o = o->next)
    if (o->id == id && !o->finished) return o;
  return NULL;
}

static ProtobufCBinaryData bin(const void *p, size_t n) {
  ProtobufCBinaryData b = {n, (uint8_t *)p};
  return b;
}

bool tt_xfer_path_ok(ProtobufCBinaryData p, char *why, size_t cap) {
  if (p.len == 0 || !p.data) {
    snprintf(why, cap, "an empty path");
    return false;
  }
  if (p.len > TT_FILE_PATH_MAX) {
    snprintf(why, cap, "a path longer than %u bytes", TT_FILE_PATH_MAX);
    return false;
  }
  if (memchr(p.data, 0, p.len)) {
    snprintf(why, cap, "a path with a NUL byte");
    return false;
  }
  if (!tt_text_valid(p, TT_FILE_PATH_MAX)) {
    snprintf(why, cap, "a path with control characters or invalid UTF-8");
    return false;
  }
  size_t comp = 0;
  for (size_t i = 0; i < p.len; i++) {
    if (p.data[i] == '/') comp = 0;
    else if (++comp > TT_FILE_NAME_MAX) {
      snprintf(why, cap, "a path component longer than %u bytes", TT_FILE_NAME_MAX);
      return false;
    }
  }
  return true;
}

/* A path from the peer into a C string; NULL (and why) if it may not travel. */
static char *path_dup(ProtobufCBinaryData p, char *why, size_t cap) {
  if (!tt_xfer_path_ok(p, why, cap)) return NULL;
  char *s = malloc(p.len + 1);
  if (!s) {
    snprintf(why, cap, "out of memory");
    return NULL;
  }
  memcpy(s, p.data, p.len);
  s[p.len] = 0;
  return s;
}

/* ---- outbound ---------------------------------------------------------------------- */

static int ctl_pack(const Tether__FileCtl *m, seg_t **out) {
  Tether__ChannelControl cc = TETHER__CHANNEL_CONTROL__INIT;
  cc.body_case = TETHER__CHANNEL_CONTROL__BODY_FILE;
  cc.file = (Tether__FileCtl *)m;
  size_t len = protobuf_c_message_get_packed_size(&cc.base);
  if (len > TT_FILE_CTL_MAX) return TT_ETOOBIG;
  seg_t *s = malloc(sizeof(*s) + len);
  if (!s) return TT_ENOMEM;
  s->next = NULL;
  s->len = protobuf_c_message_pack(&cc.base, s->p);
  *out = s;
  return 0;
}

/* Queue a control message that is not part of a file's stream. */
static int ctl_queue(tt_xfer_t *x, const Tether__FileCtl *m) {
  if (x->dead) return TT_ECLOSED;
  seg_t *s;
  int rc = ctl_pack(m, &s);
  if (rc) return rc;
  if (x->ctlq_bytes + s->len > XFER_CTLQ_MAX) {
    free(s);
    return TT_EFULL;
  }
  if (x->ctlq_tail) x->ctlq_tail->next = s;
  else x->ctlq = s;
  x->ctlq_tail = s;
  x->ctlq_bytes += s->len;
  return 0;
}

static int ctl_in(tt_xfer_t *x, const Tether__FileCtl *m) {
  int rc = ctl_queue(x, m);
  if (!rc) pump(x);
  return rc;
}

/* Send one stream control message now if credit allows; false if it must wait. */
static bool stream_ctl(tt_xfer_t *x, const Tether__FileCtl *m, bool *err) {
  seg_t *s;
  *err = false;
  if (ctl_pack(m, &s)) {
    *err = true;
    return false;
  }
  bool ok = tt_mux_sendable(x->ch) >= s->len && tt_mux_send((&x->link->mux), x->ch, s->p, s->len, TT_FF_CTRL) == 0;
  free(s);
  return ok;
}

static void send_error(tt_xfer_t *x, uint32_t id, int code, const char *path, const char *msg) {
  Tether__FileCtl m = TETHER__FILE_CTL__INIT;
  m.type = TETHER__FILE_MSG_TYPE__FILE_ERROR;
  m.id = id;
  m.code = (int32_t)tt_err_to_wire(code);
  if (path) m.path = tt_text(path);
  m.message = tt_text(msg);
  if (ctl_queue(x, &m)) TT_WARN("xfer", "cannot queue an error for the peer", "id=%u", id);
}

void xfer_adapt_init(xfer_adapt_t *a, int level) { *a = (xfer_adapt_t){.level = level}; }

void xfer_adapt_sent(xfer_adapt_t *a, uint64_t now_ns) {
  if (a->last_ns && now_ns > a->last_ns) {
    uint64_t g = now_ns - a->last_ns;
    a->gap_ns = a->gap_ns ? (3 * a->gap_ns + g) / 4 : g;
  }
  a->last_ns = now_ns;
}

/* A few chunks in a row before moving, so one hiccup does not. */
int xfer_adapt(xfer_adapt_t *a, bool link_bound, uint64_t zns, int levels) {
  int dir = 0;
  if (!link_bound) dir = -1;
  else if (zns && a->gap_ns) {
    double share = (double)zns / (double)a->gap_ns;
    dir = share < XFER_ADAPT_UP ? 1 : share > XFER_ADAPT_DOWN ? -1 : 0;
  }
  if (dir > 0) {
    a->down = 0;
    if (++a->up >= XFER_ADAPT_STREAK && a->level + 1 < levels) {
      a->level++;
      a->up = 0;
    }
  } else if (dir < 0) {
    a->up = 0;
    if (++a->down >= XFER_ADAPT_STREAK && a->level > 0) {
      a->level--;
      a->down = 0;
    }
  } else {
    a->up = a->down = 0;
  }
  return a->level;
}

/* The head of the send queue moves its stream: BEGIN, chunks as credit allows, END. */
static void pump_stream(tt_xfer_t *x) {
  tt_mux_t *m = (&x->link->mux);
  while (x->sq && !x->dead) {
    op_t *o = x->sq;
    bool err;
    if (o->finished || o->peer_failed) {
      /* Stopped between chunks: the rest of its stream is never sent. */
      if (o->cur && o->cur->sent < o->cur->wire_len) goto partial;
      goto next_op;
    }
    if (!o->began) {
      Tether__FileCtl b = TETHER__FILE_CTL__INIT;
      Tether__FileStat st = TETHER__FILE_STAT__INIT;
      b.type = TETHER__FILE_MSG_TYPE__FILE_BEGIN;
      b.id = o->id;
      b.path = tt_text(o->path);
      st.kind = TETHER__FILE_KIND__FILE_KIND_REGULAR;
      st.size = o->st.size;
      st.mtime_ns = o->st.mtime_ns;
      st.mode = o->st.mode;
      b.stat = &st;
      b.from_chunk = o->from_chunk;
      b.chunk_size = TT_FILE_CHUNK;
      if (o->note[0]) b.note = tt_text(o->note);
      if (!stream_ctl(x, &b, &err)) {
        if (err) op_fail(o, TT_EIO, true, "%s: cannot encode its header", o->path);
        return;
      }
      o->began = true;
      if (x->cbs.on_begin) x->cbs.on_begin(x, o->id, o->path, true, o->st.size, o->resumed);
    }
  partial:
    if (o->cur) {
      chunk_t *c = o->cur;
      if (c->sent == 0) {
        Tether__FileCtl h = TETHER__FILE_CTL__INIT;
        h.type = TETHER__FILE_MSG_TYPE__FILE_CHUNK;
        h.id = o->id;
        h.index = c->index;
        h.raw_len = c->raw_len;
        h.wire_len = c->wire_len;
        h.codec = c->codec;
        h.sha256 = bin(c->sha, 32);
        /* A chunk header with nothing sent yet may be dropped if the file was stopped. */
        if (o->finished || o->peer_failed) goto drop_cur;
        if (!stream_ctl(x, &h, &err)) {
          if (err) op_fail(o, TT_EIO, true, "%s: cannot encode a chunk header", o->path);
          return;
        }
      }
      while (c->sent < c->wire_len) {
        uint32_t room = tt_mux_sendable(x->ch);
        if (room == 0) return;
        uint32_t n = c->wire_len - c->sent;
        if (n > room) n = room;
        if (tt_mux_send(m, x->ch, c->buf + c->sent, n, 0)) return;
        c->sent += n;
        x->wire_out += n;
        o->wire += n;
      }
      x->raw_out += c->raw_len;
      o->moved += c->raw_len;
      xfer_adapt_sent(&x->adapt, now_ns());
      if (x->cbs.on_progress && !o->finished) x->cbs.on_progress(x, o->id, o->moved + o->resumed, o->st.size);
    drop_cur:
      x->prefetched -= c->wire_len;
      chunk_free(c);
      o->cur = NULL;
      if (o->finished || o->peer_failed) goto next_op;
    }
    if (o->ready) {
      o->cur = o->ready;
      o->ready = o->cur->next;
      if (!o->ready) o->ready_tail = NULL;
      o->nready--;
      o->ready_bytes -= o->cur->wire_len;
      if (!o->busy) job_next(o); /* room for one more read ahead */
      continue;
    }
    if (o->next_read < o->nchunks || o->busy) {
      /* Its next read may have waited for read-ahead room that the chunk just sent freed
       * (the files behind it had filled it): ask now, or nothing would. */
      if (!o->busy) job_next(o);
      /* The wire waits for the disk or the compressor (counted when the chunk comes). */
      if (tt_mux_sendable(x->ch) > 0) x->starved = true;
      return;
    }
    if (!o->sha_final) {
      unsigned len = 32;
      EVP_DigestFinal_ex(o->whole, o->sha, &len);
      o->sha_final = true;
    }
    if (!o->ended) {
      Tether__FileCtl e = TETHER__FILE_CTL__INIT;
      Tether__FileStat st = TETHER__FILE_STAT__INIT;
      e.type = TETHER__FILE_MSG_TYPE__FILE_END;
      e.id = o->id;
      e.path = tt_text(o->path);
      st.size = o->st.size;
      e.stat = &st;
      e.sha256 = bin(o->sha, 32);
      if (!stream_ctl(x, &e, &err)) {
        if (err) op_fail(o, TT_EIO, true, "%s: cannot encode its end", o->path);
        return;
      }
      o->ended = true;
    }
  next_op:
    x->sq = o->snext;
    if (!x->sq) x->sq_tail = NULL;
    o->in_sendq = false;
    o->snext = NULL;
    /* The next file may have waited for read-ahead room. */
    for (op_t *n = x->sq; n; n = n->snext)
      if (!n->busy && !n->finished) job_next(n);
  }
}

static void pump(tt_xfer_t *x) {
  if (x->pumping) {
    x->repump = true;
    return;
  }
  x->pumping = true;
  do {
    x->repump = false;
    pump_once(x);
  } while (x->repump && !x->dead);
  x->pumping = false;
  if (!x->dead) tt_link_flush(x->link);
}

static void pump_once(tt_xfer_t *x) {
  if (x->dead || x->ch->state != TT_CH_OPEN) return;
  tt_mux_t *m = (&x->link->mux);
  while (x->ctlq) {
    seg_t *s = x->ctlq;
    if (tt_mux_sendable(x->ch) < s->len) break;
    if (tt_mux_send(m, x->ch, s->p, s->len, TT_FF_CTRL)) break;
    x->ctlq = s->next;
    if (!x->ctlq) x->ctlq_tail = NULL;
    x->ctlq_bytes -= s->len;
    free(s);
  }
  if (!x->ctlq) pump_stream(x);
}

/* ---- ending ops ------------------------------------------------------------------ */



static void op_release(op_t *o) {
  if (o->fd >= 0) close(o->fd);
  o->fd = -1;
  /* A receive that failed before a chunk was kept leaves nothing behind (a refused pull
   * must not litter the target directory); one that kept chunks keeps them to resume. */
  if (o->part_open && !o->sending && o->code && o->part.kept == 0 && o->part.locked) xfer_part_discard(&o->part);
  else if (o->part_open) xfer_part_close(&o->part);
  o->part_open = false;
  EVP_MD_CTX_free(o->whole);
  o->whole = NULL;
  for (chunk_t *c = o->ready, *n; c; c = n) {
    n = c->next;
    if (o->sending) o->x->prefetched -= c->wire_len;
    else credit_back(o->x, c->wire_len);
    chunk_free(c);
  }
  o->ready = o->ready_tail = NULL;
  o->nready = 0;
}

static void op_unlink(op_t *o) {
  tt_xfer_t *x = o->x;
  for (op_t **p = &x->ops; *p; p = &(*p)->next)
    if (*p == o) {
      *p = o->next;
      break;
    }
  if (o->cur) {
    if (o->sending) x->prefetched -= o->cur->wire_len;
    chunk_free(o->cur);
  }
  free(o->path);
  free(o->local);
  pthread_mutex_destroy(&o->gate.mu);
  free(o);
}

/* Report o once; its memory goes when no job holds it and it has left the send queue. */
static void op_done(op_t *o) {
  tt_xfer_t *x = o->x;
  if (o->finished) return;
  if (o->busy && o->job == JOB_FINISH) {
    /* Given up on while its file is being put in place: either the job has renamed it
     * already, and the file is here whatever stopped us, or it never will (the partial
     * stays, to resume). */
    pthread_mutex_lock(&o->gate.mu);
    bool placed = o->gate.placed;
    o->gate.stop = !placed;
    pthread_mutex_unlock(&o->gate.mu);
    if (placed) {
      memcpy(o->sha, o->jsha, 32); /* written before the rename, under the gate */
      o->code = 0;
      snprintf(o->note, sizeof(o->note), "the file is in place, but the transfer stopped before the sender was told");
      if (!x->dead && !o->peer_failed) send_done(o);
    }
  }
  o->finished = true;
  x->nops--;
  if (x->rx == o) {
    /* Its chunk in arrival is dropped: what came of it goes back as credit now, the rest as
     * it comes (on_data_in drops it). */
    if (x->rx_chunk) credit_back(x, x->rx_chunk->sent);
    chunk_free(x->rx_chunk);
    x->rx_chunk = NULL;
    x->rx = NULL;
  }
  if (!o->busy) op_release(o);
  tt_xfer_result_t r = {
      .id = o->id,
      .path = o->path,
      .local = o->local,
      .sent = o->sending,
      .size = o->st.size,
      .resumed = o->resumed,
      .wire = o->wire,
      .code = o->code,
      .msg = o->code ? o->msg : o->note,
      .seconds = (double)(now_ns() - o->t0_ns) / 1e9,
  };
  memcpy(r.sha256, o->sha, 32);
  if (!x->freed && x->cbs.on_done) {
    x->in_cb = true;
    x->cbs.on_done(x, &r);
    x->in_cb = false;
  }
}

static void op_reap(tt_xfer_t *x) {
  for (op_t *o = x->ops, *n; o; o = n) {
    n = o->next;
    if (o->finished && !o->busy && !o->in_sendq && o != x->rx) op_unlink(o);
  }
}

static void op_fail(op_t *o, int code, bool tell_peer, const char *fmt, ...) {
  if (o->finished) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(o->msg, sizeof(o->msg), fmt, ap);
  va_end(ap);
  fit_text(o->msg);
  o->code = code ? code : TT_EIO;
  if (tell_peer && !o->peer_failed && !o->x->dead) send_error(o->x, o->id, o->code, o->path, o->msg);
  /* A receiver keeps its partial file (closed in op_release) for a resume. */
  op_done(o);
  pump(o->x);
}

/* ---- jobs ------------------------------------------------------------------------- */

static int level_of(tt_xfer_t *x) {
  if (x->incompressible >= 2 && (++x->probe % XFER_PROBE_EVERY) != 0) return INT32_MIN; /* raw */
  return xfer_levels[x->adapt.level];
}

static pthread_key_t g_zkey;
static pthread_once_t g_zonce = PTHREAD_ONCE_INIT;
typedef struct {
  ZSTD_CCtx *c;
  ZSTD_DCtx *d;
} zctx_t;
static void zctx_free(void *p) {
  zctx_t *z = p;
  ZSTD_freeCCtx(z->c);
  ZSTD_freeDCtx(z->d);
  free(z);
}
static void zkey_make(void) { (void)!pthread_key_create(&g_zkey, zctx_free); }
/* Each pool thread keeps one compressor and one decompressor. */
static zctx_t *zctx(void) {
  pthread_once(&g_zonce, zkey_make);
  zctx_t *z = pthread_getspecific(g_zkey);
  if (!z) {
    z = calloc(1, sizeof(*z));
    if (!z) return NULL;
    z->c = ZSTD_createCCtx();
    z->d = ZSTD_createDCtx();
    if (!z->c || !z->d || ZSTD_isError(ZSTD_DCtx_setParameter(z->d, ZSTD_d_windowLogMax, 20))) {
      zctx_free(z);
      return NULL;
    }
    (void)!pthread_setspecific(g_zkey, z);
  }
  return z;
}

static int errno_code(void) { return errno ? -errno : TT_EIO; }

static int read_exact(int fd, uint8_t *p, size_t n, uint64_t off) {
  while (n) {
    ssize_t r = pread(fd, p, n, (off_t)off);
    if (r < 0) {
      if (errno == EINTR) continue;
      return errno_code();
    }
    if (r == 0) return TT_EAGAIN; /* shorter than it was */
    p += r;
    n -= (size_t)r;
    off += (uint64_t)r;
  }
  return 0;
}

static void stat_of(const struct stat *s, tt_xfer_stat_t *out) {
  out->size = (uint64_t)s->st_size;
  out->mtime_ns = (int64_t)s->st_mtim.tv_sec * 1000000000 + s->st_mtim.tv_nsec;
  out->mode = s->st_mode & 07777;
}

/* Read, hash and maybe compress chunk `index` of a sending op. */
static int read_chunk(op_t *o, uint64_t index, chunk_t **out, char *err, size_t errlen) {
  uint32_t len = xfer_chunk_len(o->st.size, index);
  chunk_t *c = calloc(1, sizeof(*c));
  uint8_t *raw = buf_get(len);
  int rc = 0;
  if (!c || !raw) {
    rc = TT_ENOMEM;
    goto out;
  }
  rc = read_exact(o->fd, raw, len, index * (uint64_t)TT_FILE_CHUNK);
  if (rc) {
    snprintf(err, errlen, "%s: %s", o->path,
             rc == TT_EAGAIN ? "the file got shorter while it was read" : tt_strerror(rc));
    goto out;
  }
  c->index = index;
  c->raw_len = len;
  xfer_sha256(raw, len, c->sha);
  EVP_DigestUpdate(o->whole, raw, len);
  c->buf = raw;
  c->wire_len = len;
  c->codec = 0;
  raw = NULL;
  if (o->jlevel != INT32_MIN) {
    zctx_t *z = zctx();
    size_t cap = len - (len >> XFER_MIN_SAVING_SHIFT);
    uint8_t *zb = z ? buf_get(cap) : NULL;
    if (zb) {
      struct timespec t0, t1;
      clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t0);
      size_t r = ZSTD_compressCCtx(z->c, zb, cap, c->buf, len, o->jlevel);
      clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t1);
      int64_t d = (int64_t)(t1.tv_sec - t0.tv_sec) * 1000000000 + (t1.tv_nsec - t0.tv_nsec);
      c->zns = d > 0 ? (uint64_t)d : 1;
      if (!ZSTD_isError(r) && r > 0 && r < cap) {
        buf_put(c->buf);
        c->buf = zb;
        c->wire_len = (uint32_t)r;
        c->codec = 1;
        zb = NULL;
      }
      buf_put(zb);
    }
  }
  *out = c;
  c = NULL;
out:
  if (rc && !err[0]) snprintf(err, errlen, "%s: %s", o->path, tt_strerror(rc));
  buf_put(raw);
  chunk_free(c);
  return rc;
}

/* Inflate and check one received chunk, then write it. */
static int write_chunk(op_t *o, chunk_t *c, char *err, size_t errlen) {
  uint8_t *raw = c->buf;
  uint8_t *tmp = NULL;
  if (c->codec == 1) {
    zctx_t *z = zctx();
    tmp = buf_get(c->raw_len);
    if (!z || !tmp) {
      buf_put(tmp);
      snprintf(err, errlen, "%s: out of memory", o->path);
      return TT_ENOMEM;
    }
    unsigned long long want = ZSTD_getFrameContentSize(c->buf, c->wire_len);
    size_t r = want == c->raw_len ? ZSTD_decompressDCtx(z->d, tmp, c->raw_len, c->buf, c->wire_len) : 0;
    if (want != c->raw_len || ZSTD_isError(r) || r != c->raw_len) {
      buf_put(tmp);
      snprintf(err, errlen, "%s: chunk %" PRIu64 " does not decompress to its declared %u bytes", o->path, c->index,
               c->raw_len);
      return TT_EZSTD;
    }
    raw = tmp;
  }
  uint8_t got[32];
  xfer_sha256(raw, c->raw_len, got);
  int rc = 0;
  if (memcmp(got, c->sha, 32)) {
    snprintf(err, errlen, "%s: chunk %" PRIu64 " failed its sha256 check (nothing of it was written)", o->path,
             c->index);
    rc = TT_EPROTO;
  } else {
    rc = xfer_part_write(&o->part, c->index, raw, c->raw_len, c->sha, err, errlen);
  }
  buf_put(tmp);
  return rc;
}

static void job_work(void *arg) {
  op_t *o = arg;
  tt_xfer_t *x = o->x;
  o->jerr[0] = 0;
  o->jrc = 0;
  switch (o->job) {
  case JOB_OPEN_READ: {
    o->fd = x->fs.open_read(x->fs.fs, o->sending && o->kind == OP_PUSH ? o->local : o->path, &o->jst, o->jerr,
                            sizeof(o->jerr));
    if (o->fd < 0) {
      o->jrc = o->fd;
      o->fd = -1;
      break;
    }
    if (o->jst.size > TT_FILE_SIZE_MAX) {
      o->jrc = TT_ETOOBIG;
      snprintf(o->jerr, sizeof(o->jerr), "%s is larger than %llu bytes", o->path, (unsigned long long)TT_FILE_SIZE_MAX);
      break;
    }
    o->whole = EVP_MD_CTX_new();
    if (!o->whole || EVP_DigestInit_ex(o->whole, EVP_sha256(), NULL) != 1) o->jrc = TT_ENOMEM;
    o->nchunks = xfer_nchunks(o->jst.size);
    break;
  }
  case JOB_PREFIX: {
    /* What the receiver keeps: re-read it (the whole file's hash needs it anyway) and
     * compare the digest of its chunks' hashes. */
    EVP_MD_CTX *d = EVP_MD_CTX_new();
    uint8_t *buf = buf_get(TT_FILE_CHUNK);
    uint64_t i = 0;
    if (!d || !buf || EVP_DigestInit_ex(d, EVP_sha256(), NULL) != 1) o->jrc = TT_ENOMEM;
    for (; !o->jrc && i < o->have_chunks; i++) {
      uint32_t len = xfer_chunk_len(o->st.size, i);
      uint8_t h[32];
      int rc = read_exact(o->fd, buf, len, i * (uint64_t)TT_FILE_CHUNK);
      if (rc) {
        o->jrc = rc;
        snprintf(o->jerr, sizeof(o->jerr), "%s: %s", o->path,
                 rc == TT_EAGAIN ? "the file got shorter while it was read" : tt_strerror(rc));
        break;
      }
      xfer_sha256(buf, len, h);
      EVP_DigestUpdate(d, h, 32);
      EVP_DigestUpdate(o->whole, buf, len);
    }
    if (!o->jrc) {
      uint8_t dg[32];
      unsigned dl = 32;
      EVP_DigestFinal_ex(d, dg, &dl);
      if (memcmp(dg, o->have_digest, 32) == 0) {
        o->from_chunk = o->have_chunks;
      } else {
        snprintf(o->note, sizeof(o->note), "the partial copy does not match the source: started over");
        EVP_DigestInit_ex(o->whole, EVP_sha256(), NULL);
        o->from_chunk = 0;
      }
    }
    EVP_MD_CTX_free(d);
    buf_put(buf);
    break;
  }
  case JOB_READ:
    o->jrc = read_chunk(o, o->next_read, &o->jchunk, o->jerr, sizeof(o->jerr));
    if (!o->jrc && o->next_read + 1 == o->nchunks) {
      /* The last chunk: a file that changed while it was read is not what we hashed. */
      struct stat s;
      tt_xfer_stat_t now;
      if (fstat(o->fd, &s) == 0) {
        stat_of(&s, &now);
        if (!xfer_stat_eq(&now, &o->st)) {
          o->jrc = TT_EAGAIN;
          snprintf(o->jerr, sizeof(o->jerr), "%s changed while it was read (run the command again)", o->path);
          chunk_free(o->jchunk);
          o->jchunk = NULL;
        }
      }
    }
    break;
  case JOB_OPEN_PART: {
    char name[TT_FILE_NAME_MAX + 1];
    const char *target = o->kind == OP_PULL ? o->local : o->path;
    int dfd = x->fs.open_parent(x->fs.fs, target, name, sizeof(name), o->jerr, sizeof(o->jerr));
    if (dfd < 0) {
      o->jrc = dfd;
      break;
    }
    o->jrc = xfer_part_open(&o->part, dfd, name, o->kind == OP_PUT ? &o->st : NULL, o->force, o->note,
                            sizeof(o->note), o->jerr, sizeof(o->jerr));
    o->jpart_open = true; /* closed in op_release either way (it owns dfd now) */
    if (!o->jrc) {
      o->have_chunks = o->part.kept;
      xfer_part_digest(&o->part, o->have_digest);
      o->have_stat = o->part.src;
      o->have_stat_set = o->part.have_src;
    }
    break;
  }
  case JOB_RESTART:
    o->jrc = xfer_part_restart(&o->part, &o->st, o->jerr, sizeof(o->jerr));
    break;
  case JOB_WRITE:
    o->jrc = write_chunk(o, o->jchunk, o->jerr, sizeof(o->jerr));
    break;
  case JOB_FINISH:
    o->jrc = xfer_part_finish(&o->part, o->end_sha, o->force, &o->gate, o->jsha, o->jerr, sizeof(o->jerr));
    break;
  default:
    break;
  }
  if (o->jrc && !o->jerr[0]) snprintf(o->jerr, sizeof(o->jerr), "%s: %s", o->path, tt_strerror(o->jrc));
}

static void job_done(void *arg);

static void job_start(op_t *o, int job) {
  tt_xfer_t *x = o->x;
  o->job = job;
  o->busy = true;
  x->jobs++;
  if (job == JOB_READ) o->jlevel = level_of(x);
  int rc = tt_xfer_pool_submit(job_work, job_done, o);
  if (rc) {
    o->busy = false;
    x->jobs--;
    op_fail(o, rc, true, "%s: the file pool is not running", o->path);
  }
}

static void sendq_add(op_t *o) {
  tt_xfer_t *x = o->x;
  o->in_sendq = true;
  if (x->sq_tail) x->sq_tail->snext = o;
  else x->sq = o;
  x->sq_tail = o;
}

static void ready_add(op_t *o, chunk_t *c) {
  c->next = NULL;
  if (o->ready_tail) o->ready_tail->next = c;
  else o->ready = c;
  o->ready_tail = c;
  o->nready++;
  o->ready_bytes += c->wire_len;
}

/* Decide an idle op's next job, if any. */
static void job_next(op_t *o) {
  tt_xfer_t *x = o->x;
  if (o->busy || o->finished || x->freed) return;
  if (o->sending) {
    if (!o->in_sendq || o->next_read >= o->nchunks) return;
    /* Read ahead only while the channel's read-ahead has room (the stream's head always may
     * have one chunk, so it never waits for another file's). */
    if (x->prefetched >= XFER_PREFETCH && !(o == x->sq && !o->ready && !o->cur)) return;
    if (o->nready >= 2) return;
    x->prefetched += TT_FILE_CHUNK; /* reserved; trued up when the chunk is known */
    job_start(o, JOB_READ);
    return;
  }
  /* Receiving: empty the partial, write the next assembled chunk, or finish once END came
   * and all are in. */
  if (o->need_restart) {
    o->need_restart = false;
    job_start(o, JOB_RESTART);
    return;
  }
  if (o->ready) {
    o->jchunk = o->ready;
    o->ready = o->jchunk->next;
    if (!o->ready) o->ready_tail = NULL;
    o->nready--;
    o->ready_bytes -= o->jchunk->wire_len;
    job_start(o, JOB_WRITE);
    return;
  }
  /* Only while the channel stands: a file put in place after it closed could never be
   * reported to the peer (nor recorded by the broker); the partial keeps every chunk, so the
   * same command again finishes it at once. */
  if (o->ended && o->next_index == o->nchunks && o->part.kept == o->nchunks && !x->dead) job_start(o, JOB_FINISH);
}

static void send_ready_or_get(op_t *o) {
  tt_xfer_t *x = o->x;
  Tether__FileCtl m = TETHER__FILE_CTL__INIT;
  Tether__FileStat hs = TETHER__FILE_STAT__INIT;
  m.id = o->id;
  m.have_chunks = o->have_chunks;
  if (o->have_chunks) m.have_digest = bin(o->have_digest, 32);
  if (o->kind == OP_PULL) {
    m.type = TETHER__FILE_MSG_TYPE__FILE_GET;
    m.path = tt_text(o->path);
    if (o->have_stat_set) {
      hs.size = o->have_stat.size;
      hs.mtime_ns = o->have_stat.mtime_ns;
      hs.mode = o->have_stat.mode;
      m.have_stat = &hs;
    }
  } else {
    m.type = TETHER__FILE_MSG_TYPE__FILE_READY;
    m.path = tt_text(o->path);
  }
  int rc = ctl_queue(x, &m);
  if (rc) op_fail(o, rc, false, "%s: cannot send the request (%s)", o->path, tt_strerror(rc));
  else o->asked = true;
}

static void send_put(op_t *o) {
  Tether__FileCtl m = TETHER__FILE_CTL__INIT;
  Tether__FileStat st = TETHER__FILE_STAT__INIT;
  m.type = TETHER__FILE_MSG_TYPE__FILE_PUT;
  m.id = o->id;
  m.path = tt_text(o->path);
  m.force = o->force;
  st.kind = TETHER__FILE_KIND__FILE_KIND_REGULAR;
  st.size = o->st.size;
  st.mtime_ns = o->st.mtime_ns;
  st.mode = o->st.mode;
  m.stat = &st;
  int rc = ctl_queue(o->x, &m);
  if (rc) op_fail(o, rc, false, "%s: cannot send the request (%s)", o->path, tt_strerror(rc));
  else o->asked = true;
}

static void send_done(op_t *o) {
  Tether__FileCtl m = TETHER__FILE_CTL__INIT;
  Tether__FileStat st = TETHER__FILE_STAT__INIT;
  m.type = TETHER__FILE_MSG_TYPE__FILE_DONE;
  m.id = o->id;
  m.path = tt_text(o->path);
  st.size = o->st.size;
  m.stat = &st;
  m.sha256 = bin(o->sha, 32);
  m.resumed = o->resumed;
  if (o->note[0]) m.note = tt_text(o->note);
  if (ctl_queue(o->x, &m)) TT_WARN("xfer", "cannot queue done for the peer", "id=%u", o->id);
}

/* The sender knows what the receiver keeps: check it, or go straight to the stream. */
static void sender_go(op_t *o) {
  bool stat_ok = !o->have_stat_set || xfer_stat_eq(&o->have_stat, &o->st);
  if (o->have_chunks && o->have_chunks <= o->nchunks && stat_ok) {
    job_start(o, JOB_PREFIX);
    return;
  }
  if (o->have_chunks)
    snprintf(o->note, sizeof(o->note), "%s", stat_ok ? "the partial copy is longer than the source: started over"
                                                      : "the source changed since the partial copy began: started over");
  o->from_chunk = 0;
  o->next_read = 0;
  sendq_add(o);
  job_next(o);
}

static void job_done_in(op_t *o) {
  tt_xfer_t *x = o->x;
  o->busy = false;
  x->jobs--;
  if (o->job == JOB_OPEN_READ) o->st = o->jst;
  if (o->job == JOB_OPEN_PART) o->part_open = o->jpart_open;
  if (o->job == JOB_FINISH && !o->finished) memcpy(o->sha, o->jsha, 32);
  if (x->freed || o->finished) {
    if (o->job == JOB_READ && o->jchunk) {
      chunk_free(o->jchunk);
      o->jchunk = NULL;
    }
    if (o->job == JOB_READ) x->prefetched -= TT_FILE_CHUNK;
    if (o->job == JOB_WRITE) {
      if (o->jchunk) credit_back(x, o->jchunk->wire_len);
      chunk_free(o->jchunk);
      o->jchunk = NULL;
    }
    op_release(o);
    op_reap(x);
    maybe_free(x);
    return;
  }
  int job = o->job;
  o->job = JOB_NONE;
  if (o->jrc) {
    if (job == JOB_READ) x->prefetched -= TT_FILE_CHUNK;
    if (job == JOB_WRITE) {
      tt_mux_consumed((&x->link->mux), x->ch, o->jchunk->wire_len);
      chunk_free(o->jchunk);
      o->jchunk = NULL;
    }
    op_fail(o, o->jrc, true, "%s", o->jerr);
    op_reap(x);
    return;
  }
  switch (job) {
  case JOB_OPEN_READ:
    if (o->kind == OP_PUSH) send_put(o);
    else sender_go(o);
    break;
  case JOB_PREFIX:
    o->resumed = o->from_chunk ? (o->from_chunk == o->nchunks ? o->st.size : o->from_chunk * (uint64_t)TT_FILE_CHUNK) : 0;
    o->next_read = o->from_chunk;
    sendq_add(o);
    break;
  case JOB_READ: {
    chunk_t *c = o->jchunk;
    o->jchunk = NULL;
    x->prefetched -= TT_FILE_CHUNK;
    x->prefetched += c->wire_len;
    if (c->codec == 0 && c->raw_len >= 4096 && o->jlevel != INT32_MIN) x->incompressible++;
    else if (c->codec == 1) x->incompressible = 0;
    o->next_read++;
    /* The wire waited for this chunk: this side's CPU or disk is the bottleneck; else the
     * chunk waits for the wire, and the link is. */
    (void)xfer_adapt(&x->adapt, !x->starved, c->zns, XFER_LEVELS);
    x->starved = false;
    ready_add(o, c);
    break;
  }
  case JOB_OPEN_PART:
    if (o->kind == OP_PUT && o->have_chunks) o->resumed = o->have_chunks * (uint64_t)TT_FILE_CHUNK;
    send_ready_or_get(o);
    break;
  case JOB_RESTART:
    break;
  case JOB_WRITE: {
    chunk_t *c = o->jchunk;
    o->jchunk = NULL;
    x->raw_in += c->raw_len;
    o->moved += c->raw_len;
    tt_mux_consumed((&x->link->mux), x->ch, c->wire_len);
    chunk_free(c);
    if (x->cbs.on_progress) x->cbs.on_progress(x, o->id, o->moved + o->resumed, o->st.size);
    break;
  }
  case JOB_FINISH:
    o->code = 0;
    send_done(o);
    op_done(o);
    op_reap(x);
    pump(x);
    return;
  }
  if (!o->finished) job_next(o);
  for (op_t *n = x->sq; n; n = n->snext)
    if (n != o && !n->busy) job_next(n);
  pump(x);
  op_reap(x);
}

/* ---- inbound --------------------------------------------------------------------- */

static op_t *op_new(tt_xfer_t *x, op_kind_t kind, uint32_t id) {
  op_t *o = calloc(1, sizeof(*o));
  if (!o) return NULL;
  o->x = x;
  o->kind = kind;
  o->id = id;
  o->fd = -1;
  o->part.fd = o->part.sfd = o->part.dirfd = -1;
  if (pthread_mutex_init(&o->gate.mu, NULL)) {
    free(o);
    return NULL;
  }
  o->sending = kind == OP_PUSH || kind == OP_GET;
  o->t0_ns = now_ns();
  o->next = x->ops;
  x->ops = o;
  x->nops++;
  return o;
}

static void stat_from(const Tether__FileStat *s, tt_xfer_stat_t *out) {
  out->size = s ? s->size : 0;
  out->mtime_ns = s ? s->mtime_ns : 0;
  out->mode = s ? s->mode & 07777 : 0600;
}

/* The agent: a GET or PUT from the console. */
static void serve_op(tt_xfer_t *x, const Tether__FileCtl *m) {
  char why[XFER_ERR_MAX];
  if (op_find(x, m->id)) {
    send_error(x, m->id, TT_EINVAL, NULL, "an op with this id is still running");
    return;
  }
  if (x->nops >= TT_FILE_OPS_MAX) {
    snprintf(why, sizeof(why), "more than %u file operations at once on one channel", TT_FILE_OPS_MAX);
    send_error(x, m->id, TT_EBUSY, NULL, why);
    return;
  }
  char *path = path_dup(m->path, why, sizeof(why));
  if (!path) {
    char msg[XFER_ERR_MAX + 32];
    snprintf(msg, sizeof(msg), "refused: %s", why);
    send_error(x, m->id, TT_EINVAL, NULL, msg);
    return;
  }
  op_t *o = op_new(x, m->type == TETHER__FILE_MSG_TYPE__FILE_GET ? OP_GET : OP_PUT, m->id);
  if (!o) {
    free(path);
    send_error(x, m->id, TT_ENOMEM, NULL, "out of memory");
    return;
  }
  o->path = path;
  o->force = m->force;
  o->asked = true;
  if (o->kind == OP_GET) {
    o->have_chunks = m->have_chunks;
    if (m->have_chunks && m->have_digest.len == 32) memcpy(o->have_digest, m->have_digest.data, 32);
    else o->have_chunks = 0;
    if (m->have_stat) {
      stat_from(m->have_stat, &o->have_stat);
      o->have_stat_set = true;
    }
    job_start(o, JOB_OPEN_READ);
    return;
  }
  stat_from(m->stat, &o->st);
  if (!m->stat || o->st.size > TT_FILE_SIZE_MAX) {
    op_fail(o, TT_ETOOBIG, true, "%s: a declared size over %llu bytes is refused", path,
            (unsigned long long)TT_FILE_SIZE_MAX);
    return;
  }
  o->nchunks = xfer_nchunks(o->st.size);
  job_start(o, JOB_OPEN_PART);
}

static void on_begin_msg(tt_xfer_t *x, const Tether__FileCtl *m) {
  op_t *o = op_find(x, m->id);
  x->rx_active = true;
  x->rx = NULL;
  /* An op we gave up on, or one the peer cannot know of yet: its stream is dropped. */
  if (!o || o->sending || o->began || !o->asked) return;
  x->rx = o;
  o->began = true;
  tt_xfer_stat_t st;
  stat_from(m->stat, &st);
  if (!m->stat || m->chunk_size != TT_FILE_CHUNK || st.size > TT_FILE_SIZE_MAX) {
    x->rx = NULL;
    op_fail(o, TT_EPROTO, true, "%s: the sender's header is not valid (chunk size %u, size %llu)", o->path,
            m->chunk_size, (unsigned long long)st.size);
    return;
  }
  if (o->kind == OP_PUT && !xfer_stat_eq(&st, &o->st)) {
    x->rx = NULL;
    op_fail(o, TT_EPROTO, true, "%s: the sender's size differs from what it announced", o->path);
    return;
  }
  o->st = st;
  o->nchunks = xfer_nchunks(st.size);
  if (m->note.len) (void)!tt_text_copy(o->note, sizeof(o->note), m->note);
  if (m->from_chunk == 0) {
    o->resumed = 0;
    o->next_index = 0;
    o->need_restart = true;
    job_next(o);
  } else if (m->from_chunk == o->have_chunks && o->have_stat_set && xfer_stat_eq(&o->have_stat, &st) &&
             m->from_chunk <= o->nchunks) {
    o->next_index = m->from_chunk;
    o->resumed = m->from_chunk == o->nchunks ? st.size : m->from_chunk * (uint64_t)TT_FILE_CHUNK;
  } else {
    x->rx = NULL;
    op_fail(o, TT_EPROTO, true, "%s: the sender resumes from chunk %llu, but %llu are kept here", o->path,
            (unsigned long long)m->from_chunk, (unsigned long long)o->have_chunks);
    return;
  }
  if (x->cbs.on_begin) x->cbs.on_begin(x, o->id, o->path, false, st.size, o->resumed);
}

static void on_chunk_msg(tt_xfer_t *x, const Tether__FileCtl *m) {
  if (m->wire_len == 0 || m->wire_len > TT_FILE_CHUNK) {
    x_fail(x, TT_EPROTO, "a chunk header with a length the protocol does not allow");
    return;
  }
  x->rx_need = m->wire_len;
  x->rx_chunk = NULL;
  op_t *o = x->rx;
  if (!o || o->finished || o->id != m->id) {
    x->rx = NULL; /* its bytes are dropped */
    return;
  }
  const char *bad = NULL;
  if (m->index != o->next_index || m->index >= o->nchunks) bad = "a chunk past the file's declared size or out of order";
  else if (m->raw_len != xfer_chunk_len(o->st.size, m->index)) bad = "a chunk whose length does not match the file's";
  else if (m->wire_len > m->raw_len || (m->codec == 0 && m->wire_len != m->raw_len) || m->codec > 1)
    bad = "a chunk with a bad encoding";
  else if (m->sha256.len != 32) bad = "a chunk without its sha256";
  if (bad) {
    x->rx = NULL;
    op_fail(o, TT_EPROTO, true, "%s: %s (chunk %llu)", o->path, bad, (unsigned long long)m->index);
    return;
  }
  chunk_t *c = calloc(1, sizeof(*c));
  if (c) c->buf = buf_get(m->wire_len);
  if (!c || !c->buf) {
    chunk_free(c);
    x->rx = NULL;
    op_fail(o, TT_ENOMEM, true, "%s: out of memory", o->path);
    return;
  }
  c->index = m->index;
  c->raw_len = m->raw_len;
  c->wire_len = m->wire_len;
  c->codec = m->codec;
  memcpy(c->sha, m->sha256.data, 32);
  x->rx_chunk = c;
  o->next_index++;
}

static void on_end_msg(tt_xfer_t *x, const Tether__FileCtl *m) {
  op_t *o = x->rx;
  x->rx = NULL;
  x->rx_active = false;
  if (!o || o->finished || o->id != m->id) return;
  if (o->next_index != o->nchunks || m->sha256.len != 32 || !m->stat || m->stat->size != o->st.size) {
    op_fail(o, TT_EPROTO, true, "%s: the file ended before all of it came (%llu of %llu chunks)", o->path,
            (unsigned long long)o->next_index, (unsigned long long)o->nchunks);
    return;
  }
  memcpy(o->end_sha, m->sha256.data, 32);
  o->ended = true;
  job_next(o);
}

/* The receiver's answer to a file we sent. */
static void on_done_msg(tt_xfer_t *x, const Tether__FileCtl *m) {
  op_t *o = op_find(x, m->id);
  if (!o || !o->sending) return;
  if (m->code) {
    char why[XFER_ERR_MAX];
    if (tt_text_copy(why, sizeof(why), m->message)) snprintf(why, sizeof(why), "the receiver refused it");
    o->peer_failed = true;
    op_fail(o, tt_err_from_wire((Tether__ErrorCode)m->code), false, "%s", why);
    return;
  }
  if (!o->ended || m->sha256.len != 32 || memcmp(m->sha256.data, o->sha, 32)) {
    op_fail(o, TT_EPROTO, false, "%s: the receiver's sha256 differs from ours", o->path);
    return;
  }
  if (m->note.len) (void)!tt_text_copy(o->note, sizeof(o->note), m->note);
  o->code = 0;
  op_done(o);
  op_reap(x);
}

static void on_error_msg(tt_xfer_t *x, const Tether__FileCtl *m) {
  op_t *o = op_find(x, m->id);
  if (!o || !o->asked || (!x->serve && o->kind != OP_PULL && o->kind != OP_PUSH)) {
    if (!x->serve && x->cbs.on_ctl) x->cbs.on_ctl(x, m); /* LIST, MKDIR: the console's own */
    return;
  }
  char why[XFER_ERR_MAX];
  if (tt_text_copy(why, sizeof(why), m->message)) snprintf(why, sizeof(why), "refused by the peer");
  o->peer_failed = true;
  op_fail(o, m->code ? tt_err_from_wire((Tether__ErrorCode)m->code) : TT_EPEER, false, "%s", why);
}

static void on_ready_msg(tt_xfer_t *x, const Tether__FileCtl *m) {
  op_t *o = op_find(x, m->id);
  if (!o || o->kind != OP_PUSH || !o->asked || o->in_sendq || o->began || o->busy) return;
  o->have_chunks = m->have_chunks;
  if (m->have_chunks && m->have_digest.len == 32) memcpy(o->have_digest, m->have_digest.data, 32);
  else o->have_chunks = 0;
  o->have_stat_set = false; /* the agent compared our stat with its partial's already */
  sender_go(o);
}

static void on_ctl(tt_xfer_t *x, const Tether__FileCtl *m) {
  bool stream = m->type == TETHER__FILE_MSG_TYPE__FILE_BEGIN || m->type == TETHER__FILE_MSG_TYPE__FILE_CHUNK ||
                m->type == TETHER__FILE_MSG_TYPE__FILE_END;
  if (stream && x->rx_need) {
    x_fail(x, TT_EPROTO, "a file message arrived in the middle of a chunk's bytes");
    return;
  }
  switch (m->type) {
  case TETHER__FILE_MSG_TYPE__FILE_BEGIN:
    if (x->rx_active && x->rx) op_fail(x->rx, TT_EPROTO, true, "%s: the sender moved on before its end", x->rx->path);
    on_begin_msg(x, m);
    return;
  case TETHER__FILE_MSG_TYPE__FILE_CHUNK: on_chunk_msg(x, m); return;
  case TETHER__FILE_MSG_TYPE__FILE_END: on_end_msg(x, m); return;
  case TETHER__FILE_MSG_TYPE__FILE_DONE: on_done_msg(x, m); return;
  case TETHER__FILE_MSG_TYPE__FILE_ERROR: on_error_msg(x, m); return;
  default: break;
  }
  if (x->serve && (m->type == TETHER__FILE_MSG_TYPE__FILE_GET || m->type == TETHER__FILE_MSG_TYPE__FILE_PUT)) {
    serve_op(x, m);
    return;
  }
  if (!x->serve && m->type == TETHER__FILE_MSG_TYPE__FILE_READY) {
    on_ready_msg(x, m);
    return;
  }
  if (x->cbs.on_ctl) x->cbs.on_ctl(x, m);
}

static void on_data_in(tt_xfer_t *x, const uint8_t *p, size_t n, uint8_t flags) {
  tt_mux_t *mux = (&x->link->mux);
  if (x->dead) {
    tt_mux_consumed(mux, x->ch, n);
    return;
  }
  if (flags & TT_FF_CTRL) {
    tt_mux_consumed(mux, x->ch, n);
    tt_msg_t msg;
    if (tt_msg_unpack_ctrl(&msg, p, n)) {
      x_fail(x, TT_EPROTO, "a file message that does not decode");
      return;
    }
    const Tether__ChannelControl *cc = (const Tether__ChannelControl *)msg.m;
    if (cc->body_case == TETHER__CHANNEL_CONTROL__BODY_FILE && cc->file) on_ctl(x, cc->file);
    else x_fail(x, TT_EPROTO, "a control message that is not for files");
    tt_msg_free(&msg);
    pump(x);
    op_reap(x);
    return;
  }
  if (flags & (TT_FF_ZSTD | TT_FF_EOF)) {
    /* Chunks carry their own compression; an EOF ends the channel (the peer is done). */
    tt_mux_consumed(mux, x->ch, n);
    if (flags & TT_FF_ZSTD) x_fail(x, TT_EPROTO, "channel-level compression on a file channel");
    else x_fail(x, TT_ECLOSED, "the peer ended the channel");
    return;
  }
  if (n > x->rx_need) {
    tt_mux_consumed(mux, x->ch, n);
    x_fail(x, TT_EPROTO, "more chunk bytes than the chunk's header said");
    return;
  }
  x->rx_need -= (uint32_t)n;
  x->wire_in += n;
  chunk_t *c = x->rx_chunk;
  op_t *o = x->rx;
  if (!c || !o || o->finished) {
    tt_mux_consumed(mux, x->ch, n); /* a file given up on: its bytes are dropped */
    if (!x->rx_need) {
      chunk_free(c);
      x->rx_chunk = NULL;
    }
    return;
  }
  memcpy(c->buf + c->sent, p, n);
  c->sent += (uint32_t)n;
  o->wire += n;
  if (x->rx_need) return;
  x->rx_chunk = NULL;
  ready_add(o, c);
  job_next(o);
}

static void on_credit_in(tt_xfer_t *x) {
  if (x->dead) return;
  /* Credit returned with chunks ready: the link was what they waited for. */
  pump(x);
  op_reap(x);
}

/* ---- life ------------------------------------------------------------------------ */

static void end_all(tt_xfer_t *x, int code, const char *msg) {
  x->dead = true;
  for (op_t *o = x->ops; o; o = o->next) {
    if (o->finished) continue;
    snprintf(o->msg, sizeof(o->msg), "%s%s%s", o->path ? o->path : "", o->path ? ": " : "", msg);
    if (!o->sending && o->part_open)
      snprintf(o->msg + strlen(o->msg), sizeof(o->msg) - strlen(o->msg),
               " (the part received is kept: run the same command again to resume)");
    fit_text(o->msg);
    o->code = code;
    op_done(o);
  }
  x->sq = x->sq_tail = NULL;
  for (op_t *o = x->ops; o; o = o->next) {
    o->in_sendq = false;
    o->snext = NULL;
  }
  x->rx = NULL;
  chunk_free(x->rx_chunk);
  x->rx_chunk = NULL;
  for (seg_t *s = x->ctlq, *n; s; s = n) {
    n = s->next;
    free(s);
  }
  x->ctlq = x->ctlq_tail = NULL;
  x->ctlq_bytes = 0;
  op_reap(x);
}

static void x_fail(tt_xfer_t *x, int code, const char *msg) {
  if (x->dead) return;
  TT_WARN("xfer", "file channel failed", "id=%u err=%s why=\"%s\"", x->ch->id, tt_errname(code), msg);
  end_all(x, code, msg);
  tt_mux_close((&x->link->mux), x->ch, code, msg);
  tt_link_flush(x->link);
  if (!x->freed && x->cbs.on_fail) x->cbs.on_fail(x, code, msg);
}

static void on_close_in(tt_xfer_t *x, int code, const char *msg) {
  if (x->dead) return;
  char why[XFER_ERR_MAX];
  snprintf(why, sizeof(why), "%s", msg && msg[0] ? msg : tt_strerror(code ? code : TT_ECLOSED));
  end_all(x, code ? code : TT_ECLOSED, why);
  if (!x->freed && x->cbs.on_fail) x->cbs.on_fail(x, code ? code : TT_ECLOSED, why);
}

int tt_xfer_new(tt_xfer_t **out, tt_link_t *link, tt_chan_t *ch, bool serve, const tt_xfer_fs_t *fs,
                const tt_xfer_cbs_t *cbs, void *data) {
  if (!tt_xfer_pool_running()) return TT_ESTATE;
  tt_xfer_t *x = calloc(1, sizeof(*x));
  if (!x) return TT_ENOMEM;
  x->link = link;
  x->ch = ch;
  x->serve = serve;
  x->fs = *fs;
  x->cbs = *cbs;
  x->data = data;
  xfer_adapt_init(&x->adapt, XFER_LEVEL_START);
  *out = x;
  return 0;
}

void *tt_xfer_data(const tt_xfer_t *x) { return x->data; }

static void x_release(tt_xfer_t *x) {
  for (op_t *o = x->ops, *n; o; o = n) {
    n = o->next;
    op_release(o);
    op_unlink(o);
  }
  free(x);
}

static void maybe_free(tt_xfer_t *x) {
  if (x->freed && x->jobs == 0 && x->depth == 0) x_release(x);
}

void tt_xfer_free(tt_xfer_t *x) {
  if (!x) return;
  if (!x->dead) {
    end_all(x, TT_ECLOSED, "the transfer was stopped");
    if (x->ch->state == TT_CH_OPEN || x->ch->state == TT_CH_PENDING) {
      tt_mux_close((&x->link->mux), x->ch, TT_ECLOSED, "stopped");
      tt_link_flush(x->link);
    }
  }
  x->freed = true;
  maybe_free(x);
}

unsigned tt_xfer_outstanding(const tt_xfer_t *x) { return x->nops; }

void tt_xfer_counts(const tt_xfer_t *x, uint64_t *wire, uint64_t *raw) {
  *wire = x->wire_out + x->wire_in;
  *raw = x->raw_out + x->raw_in;
}

/* ---- the console's requests -------------------------------------------------------- */

static int start_op(tt_xfer_t *x, op_kind_t kind, uint32_t id, const char *device_path, const char *local, bool force) {
  char why[XFER_ERR_MAX];
  if (x->dead) return TT_ECLOSED;
  if (op_find(x, id)) return TT_EINVAL;
  if (!tt_xfer_path_ok(tt_text(device_path), why, sizeof(why))) return TT_EINVAL;
  op_t *o = op_new(x, kind, id);
  if (!o) return TT_ENOMEM;
  o->path = strdup(device_path);
  o->local = strdup(local);
  o->force = force;
  if (!o->path || !o->local) {
    o->code = TT_ENOMEM;
    snprintf(o->msg, sizeof(o->msg), "out of memory");
    op_done(o);
    return TT_ENOMEM;
  }
  job_start(o, kind == OP_PULL ? JOB_OPEN_PART : JOB_OPEN_READ);
  return 0;
}

int tt_xfer_pull(tt_xfer_t *x, uint32_t id, const char *device_path, const char *local_path, bool force) {
  return start_op(x, OP_PULL, id, device_path, local_path, force);
}

int tt_xfer_push(tt_xfer_t *x, uint32_t id, const char *local_path, const char *device_path, bool force) {
  return start_op(x, OP_PUSH, id, device_path, local_path, force);
}

void tt_xfer_on_data(tt_xfer_t *x, const uint8_t *p, size_t n, uint8_t flags) {
  x->depth++;
  on_data_in(x, p, n, flags);
  x->depth--;
  maybe_free(x);
}

void tt_xfer_on_credit(tt_xfer_t *x) {
  x->depth++;
  on_credit_in(x);
  x->depth--;
  maybe_free(x);
}

void tt_xfer_on_close(tt_xfer_t *x, int code, const char *msg) {
  x->depth++;
  on_close_in(x, code, msg);
  x->depth--;
  maybe_free(x);
}

int tt_xfer_ctl(tt_xfer_t *x, const Tether__FileCtl *m) {
  x->depth++;
  int rc = ctl_in(x, m);
  x->depth--;
  maybe_free(x);
  return rc;
}

static void job_done(void *arg) {
  op_t *o = arg;
  tt_xfer_t *x = o->x;
  x->depth++;
  job_done_in(o);
  x->depth--;
  maybe_free(x);
}

/* ---- invariants, for tests and the fuzzer ------------------------------------------ */

#define CHECK(cond, ...)                                                                                   \
  do {                                                                                                     \
    if (!(cond)) {                                                                                         \
      snprintf(why, cap, __VA_ARGS__);                                                                     \
      return false;                                                                                        \
    }                                                                                                      \
  } while (0)

bool xfer_check(const tt_xfer_t *x, char *why, size_t cap) {
  unsigned live = 0, busy = 0, queued = 0;
  size_t prefetched = 0, held = 0;
  for (const op_t *o = x->ops; o; o = o->next) {
    if (!o->finished) live++;
    if (o->busy) busy++;
    if (o->in_sendq) queued++;
    CHECK(!o->busy || o->job != JOB_NONE, "op %u is busy with no job", o->id);
    CHECK(!o->in_sendq || o->sending, "op %u receives but is in the send queue", o->id);
    size_t rb = 0;
    uint32_t nr = 0;
    for (const chunk_t *c = o->ready; c; c = c->next) {
      rb += c->wire_len;
      nr++;
      CHECK(c->next || c == o->ready_tail, "op %u: its ready list's tail is wrong", o->id);
    }
    CHECK(rb == o->ready_bytes && nr == o->nready, "op %u: ready counts %zu/%u, held %zu/%u", o->id, o->ready_bytes,
          o->nready, rb, nr);
    if (o->sending) {
      prefetched += rb + (o->cur ? o->cur->wire_len : 0) + (o->busy && o->job == JOB_READ ? TT_FILE_CHUNK : 0);
    } else {
      held += rb + (o->busy && o->job == JOB_WRITE && o->jchunk ? o->jchunk->wire_len : 0);
      CHECK(!o->cur, "op %u receives but has a chunk on the wire", o->id);
      CHECK(o->finished || o->next_index <= o->nchunks || !o->began, "op %u expects chunk %llu of %llu", o->id,
            (unsigned long long)o->next_index, (unsigned long long)o->nchunks);
    }
    if (o->finished && !o->busy && !o->in_sendq && o != x->rx && x->depth == 0)
      CHECK(false, "op %u is done and no longer held, but still listed", o->id);
  }
  CHECK(live == x->nops, "%u ops not done, counted %u", live, x->nops);
  CHECK(busy == x->jobs, "%u ops hold a job, counted %u", busy, x->jobs);
  CHECK(prefetched == x->prefetched, "read-ahead %zu, counted %zu", prefetched, x->prefetched);
  unsigned insq = 0;
  for (const op_t *o = x->sq; o; o = o->snext) {
    insq++;
    CHECK(o->in_sendq, "op %u is in the send queue unmarked", o->id);
    CHECK(o->snext || o == x->sq_tail, "the send queue's tail is wrong");
    bool listed = false;
    for (const op_t *p = x->ops; p && !listed; p = p->next) listed = p == o;
    CHECK(listed, "op %u is in the send queue but not among the ops", o->id);
  }
  CHECK(insq == queued, "%u ops marked in the send queue, %u in it", queued, insq);
  size_t cb = 0;
  for (const seg_t *s = x->ctlq; s; s = s->next) cb += s->len;
  CHECK(cb == x->ctlq_bytes, "control queue %zu bytes, counted %zu", cb, x->ctlq_bytes);
  if (x->rx) {
    bool listed = false;
    for (const op_t *p = x->ops; p && !listed; p = p->next) listed = p == x->rx;
    CHECK(listed, "the file in arrival is not among the ops");
    CHECK(!x->rx->finished && !x->rx->sending, "the file in arrival is done or sending");
  }
  if (x->rx_chunk) {
    CHECK(x->rx, "a chunk in arrival without its file");
    CHECK(x->rx_chunk->sent + x->rx_need == x->rx_chunk->wire_len, "a chunk in arrival: %u + %u of %u bytes",
          x->rx_chunk->sent, x->rx_need, x->rx_chunk->wire_len);
    held += x->rx_chunk->sent;
  }
  if (x->dead) {
    CHECK(x->nops == 0, "the channel is gone with %u ops not done", x->nops);
    CHECK(!x->sq && !x->ctlq, "the channel is gone with output queued");
  } else if (x->ch->state == TT_CH_OPEN) {
    size_t mux_held = x->ch->window - x->ch->recv_left - x->ch->consumed;
    CHECK(mux_held == held, "chunk bytes held back from credit: %zu, the channel says %zu", held, mux_held);
  }
  return true;
}
