/* libFuzzer driver for the file channel: the transfer engine (proto/xfer*.c) as a hostile
 * peer meets it. The peer is the input: DATA bodies on one CHANNEL_FILES channel (FileCtl
 * control messages, chunk bytes with and without channel flags), with the points where the
 * engine's pool jobs run and come back, and where the channel or the link goes away. The
 * engine either serves (the agent: GET, PUT, LIST, MKDIR through the agent's own confined
 * file system, rooted in a temporary directory) or asks (the console: a pull and a push
 * under way, the peer answering them).
 *
 * The pool is stepped (no threads): each job runs where the input says, or when the
 * channel settles, so a run is deterministic and every interleaving of the loop's events
 * with a job's work and its completion is reachable. After every input the pool is idle and
 * everything is freed (libFuzzer's leak check), descriptors included.
 *
 * Oracles beyond the sanitizers: the engine's own invariants (xfer_check) after every step;
 * each op reported once, all of them before on_fail; what the engine sends decodes and its
 * texts are valid; nothing outside the shared root changes; a file appears under a final
 * name only with a successful report of its sha256; the channel's credit is all given back.
 *
 * Input: a mode byte, then records of the peer's frames and the pool's steps (fuzz_files.h). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <openssl/evp.h>
#include "files.h"
#include "fuzz_files.h"
#include "tt/frame.h"
#include "tt/limits.h"
#include "tt/link.h"
#include "tt/log.h"
#include "tt/msg.h"
#include "tt/xfer.h"
#include "xfer_int.h"

/* Chunk bytes one input may carry: a file of two chunks and some. */
#define FILL_MAX (2u * TT_FILE_CHUNK + 65536u)
#define RESULTS_MAX 256
#define CHAN 1u

typedef struct {
  tt_link_t link; /* the engine's side; tls NULL: frames are carried by hand */
  tt_frame_reader_t rd; /* the peer reads what the engine sends */
  tt_chan_t *ch;
  tt_xfer_t *x;
  bool ask, down;
  int failed;
  unsigned started; /* console ops begun */
  unsigned reported;
  uint32_t ids[RESULTS_MAX];
  uint8_t got_sha[RESULTS_MAX][32]; /* files received well */
  unsigned ngot;
  bool got_lost; /* too many to check */
  size_t filled;
  uint64_t data_in; /* DATA bytes from the engine not yet granted back */
} world_t;

static world_t g_w;
static char g_base[64], g_root[128], g_outside[128];
static agent_files_fs_t g_fs;
static tt_xfer_fs_t g_xfs;
static uv_loop_t *g_loop;
static bool g_verbose; /* FUZZ_FILES_VERBOSE=1: say what each input did */

static uint8_t g_tree_sha[FZF_TREE_N][32];
static const char k_secret[] = "not to be read or written from the channel\n";

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void die(const char *what, const char *detail) {
  fprintf(stderr, "fuzz_files: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
  abort();
}

/* ---- the temporary tree ---------------------------------------------------------------- */

static void write_file(int dir, const char *name, const void *p, size_t n) {
  int fd = openat(dir, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, FZF_MODE);
  if (fd < 0 || (n && write(fd, p, n) != (ssize_t)n)) die("cannot write", name);
  /* Fixed times: the same input resumes or not the same way every run. */
  struct timespec ts[2] = {{FZF_MTIME_S, 0}, {FZF_MTIME_S, FZF_MTIME_NS}};
  futimens(fd, ts);
  close(fd);
}

/* Remove everything below dir (not following links), but keep the directory `keep` (a root
 * the agent checks by its inode) and only empty it. */
static void rm_below(int dir, const char *keep) {
  int d2 = dup(dir);
  DIR *d = d2 >= 0 ? fdopendir(d2) : NULL;
  if (!d) die("cannot read a directory to empty it", strerror(errno));
  struct dirent *e;
  while ((e = readdir(d))) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    struct stat st;
    if (fstatat(dir, e->d_name, &st, AT_SYMLINK_NOFOLLOW)) continue;
    if (S_ISDIR(st.st_mode)) {
      fchmodat(dir, e->d_name, 0700, 0);
      int sub = openat(dir, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (sub >= 0) {
        rm_below(sub, NULL);
        close(sub);
      }
      if (keep && !strcmp(e->d_name, keep)) continue;
      if (unlinkat(dir, e->d_name, AT_REMOVEDIR)) die("cannot remove a directory", e->d_name);
    } else if (unlinkat(dir, e->d_name, 0)) {
      die("cannot remove", e->d_name);
    }
  }
  closedir(d);
}

static void tree_reset(void) {
  int root = open(g_root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (root < 0) die("cannot open the root", g_root);
  rm_below(root, "ro");
  for (size_t i = 0; i < FZF_TREE_N; i++) {
    if (fzf_tree[i].size < 0) {
      if (mkdirat(root, fzf_tree[i].path, 0755) && errno != EEXIST) die("mkdir", fzf_tree[i].path);
      fchmodat(root, fzf_tree[i].path, 0755, 0);
      continue;
    }
    uint8_t buf[4096];
    fzf_content(buf, (size_t)fzf_tree[i].size, (unsigned)i);
    write_file(root, fzf_tree[i].path, buf, (size_t)fzf_tree[i].size);
  }
  /* A way out that confinement must not take. */
  if (symlinkat("../outside", root, "esc") || symlinkat("../outside/secret", root, "esc-file"))
    die("symlink", strerror(errno));
  close(root);
}

static void sha_fd(int fd, uint8_t out[32]) {
  EVP_MD_CTX *c = EVP_MD_CTX_new();
  EVP_DigestInit_ex(c, EVP_sha256(), NULL);
  uint8_t buf[65536];
  ssize_t r;
  while ((r = read(fd, buf, sizeof(buf))) > 0) EVP_DigestUpdate(c, buf, (size_t)r);
  unsigned len = 32;
  EVP_DigestFinal_ex(c, out, &len);
  EVP_MD_CTX_free(c);
}

static bool is_part(const char *name) {
  size_t n = strlen(name);
  static const char *const sfx[] = {XFER_PART_SUFFIX, XFER_STATE_SUFFIX};
  for (size_t i = 0; i < 2; i++) {
    size_t k = strlen(sfx[i]);
    if (name[0] == '.' && n > k && !strcmp(name + n - k, sfx[i])) return true;
  }
  return false;
}

/* Every file under a final name is one we made, unchanged, or one the engine reported
 * received with that sha256. */
static void check_tree(world_t *w, int dir, const char *rel) {
  int d2 = dup(dir);
  DIR *d = d2 >= 0 ? fdopendir(d2) : NULL;
  if (!d) die("cannot read the root", strerror(errno));
  struct dirent *e;
  while ((e = readdir(d))) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    char path[1200];
    snprintf(path, sizeof(path), "%s%s%s", rel, rel[0] ? "/" : "", e->d_name);
    struct stat st;
    if (fstatat(dir, e->d_name, &st, AT_SYMLINK_NOFOLLOW)) continue;
    if (S_ISDIR(st.st_mode)) {
      fchmodat(dir, e->d_name, 0700, 0);
      int sub = openat(dir, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (sub >= 0) {
        check_tree(w, sub, path);
        close(sub);
      }
      continue;
    }
    if (!S_ISREG(st.st_mode) || is_part(e->d_name)) continue;
    int fd = openat(dir, e->d_name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) die("cannot read back", path);
    uint8_t h[32];
    sha_fd(fd, h);
    close(fd);
    bool ok = w->got_lost;
    for (size_t i = 0; i < FZF_TREE_N && !ok; i++)
      ok = !strcmp(fzf_tree[i].path, path) && !memcmp(g_tree_sha[i], h, 32);
    for (unsigned i = 0; i < w->ngot && !ok; i++) ok = !memcmp(w->got_sha[i], h, 32);
    if (!ok) die("a file under a final name that no successful transfer reported", path);
  }
  closedir(d);
}

/* The outside directory holds its one file, unchanged, and the base only root and outside. */
static void check_outside(void) {
  DIR *d = opendir(g_outside);
  if (!d) die("the outside directory is gone", g_outside);
  struct dirent *e;
  int n = 0;
  while ((e = readdir(d)))
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
      if (strcmp(e->d_name, "secret")) die("something was made outside the root", e->d_name);
      n++;
    }
  closedir(d);
  char p[200];
  snprintf(p, sizeof(p), "%s/secret", g_outside);
  int fd = open(p, O_RDONLY | O_CLOEXEC);
  char buf[sizeof(k_secret) + 8];
  ssize_t r = fd >= 0 ? read(fd, buf, sizeof(buf)) : -1;
  if (fd >= 0) close(fd);
  if (n != 1 || r != (ssize_t)sizeof(k_secret) - 1 || memcmp(buf, k_secret, (size_t)r))
    die("the file outside the root changed", NULL);
  d = opendir(g_base);
  while (d && (e = readdir(d)))
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && strcmp(e->d_name, "root") &&
        strcmp(e->d_name, "outside"))
      die("something was made beside the root", e->d_name);
  if (d) closedir(d);
}

static int count_fds(void) {
  DIR *d = opendir("/proc/self/fd");
  int n = 0;
  if (!d) return -1;
  while (readdir(d)) n++;
  closedir(d);
  return n;
}

/* ---- the peer's frames -------------------------------------------------------------- */

static void link_down(world_t *w) {
  if (w->down) return;
  w->down = true;
  tt_mux_destroy(&w->link.mux); /* on_close: the engine ends its ops */
}

/* One frame from the peer; a frame the mux refuses ends the link, as tt_link does. */
static void inject(world_t *w, uint8_t kind, uint8_t flags, const void *body, size_t len) {
  if (w->down) return;
  tt_frame_t f = {.len = (uint32_t)len, .kind = kind, .flags = flags, .channel = CHAN, .body = body};
  if (tt_mux_input(&w->link.mux, &f)) link_down(w);
}

static void inject_msg(world_t *w, uint8_t kind, const ProtobufCMessage *m) {
  uint8_t buf[1024];
  size_t n = protobuf_c_message_get_packed_size(m);
  if (n > sizeof(buf)) die("a peer message too large", NULL);
  protobuf_c_message_pack(m, buf);
  inject(w, kind, 0, buf, n);
}

/* What the engine sends must decode, and its texts be valid: the peer's side checks them. */
static void check_sent_ctl(const uint8_t *p, size_t n) {
  tt_msg_t msg;
  if (n > TT_FILE_CTL_MAX + 64 || tt_msg_unpack_ctrl(&msg, p, n)) die("the engine sent a control that does not decode", NULL);
  const Tether__ChannelControl *cc = (const Tether__ChannelControl *)msg.m;
  if (cc->body_case != TETHER__CHANNEL_CONTROL__BODY_FILE || !cc->file) die("the engine sent a non-file control", NULL);
  const Tether__FileCtl *m = cc->file;
  if (g_verbose)
    fprintf(stderr, "fuzz_files: the engine sends type %d id %u%s%.*s\n", (int)m->type, m->id, m->message.len ? ": " : "",
            (int)m->message.len, (const char *)m->message.data);
  if (m->message.len && !tt_text_valid(m->message, TT_FRAME_MAX_BODY)) die("the engine sent a message that is not text", NULL);
  if (m->note.len && !tt_text_valid(m->note, TT_FRAME_MAX_BODY)) die("the engine sent a note that is not text", NULL);
  if (m->path.len) {
    char why[128];
    if (!tt_xfer_path_ok(m->path, why, sizeof(why))) die("the engine sent a path that may not travel", why);
  }
  tt_msg_free(&msg);
}

static int peer_frame(void *ctx, const tt_frame_t *f) {
  world_t *w = ctx;
  if (f->channel != CHAN) return 0;
  if (f->kind == TT_K_DATA) {
    if (f->flags & ~TT_FF_CTRL) die("the engine sent DATA with channel flags", NULL);
    if (f->flags & TT_FF_CTRL) check_sent_ctl(f->body, f->len);
    w->data_in += f->len;
  } else if (f->kind == TT_K_CH_CLOSE) {
    /* The engine closed: answer, so the mux lets the channel go. */
    Tether__ChannelClose c = TETHER__CHANNEL_CLOSE__INIT;
    inject_msg(w, TT_K_CH_CLOSE, &c.base);
    w->data_in = 0;
  }
  return 0;
}

/* Carry what the engine queued to the peer and give its credit back; true if any moved. */
static bool drain(world_t *w) {
  bool moved = false;
  while (!w->down && tt_mux_has_output(&w->link.mux)) {
    tt_buf_t out;
    tt_buf_init(&out, 8u << 20);
    tt_mux_pull(&w->link.mux, &out, 1u << 20);
    if (!out.len) {
      tt_buf_free(&out);
      break;
    }
    moved = true;
    if (tt_frame_reader_feed(&w->rd, tt_buf_head(&out), out.len, peer_frame, w)) die("the engine sent a bad frame", NULL);
    tt_buf_free(&out);
    while (w->data_in && !w->down && w->ch && tt_mux_find(&w->link.mux, CHAN)) {
      Tether__WindowAdjust win = TETHER__WINDOW_ADJUST__INIT;
      win.bytes = w->data_in > TT_WINDOW_BULK ? TT_WINDOW_BULK : (uint32_t)w->data_in;
      w->data_in -= win.bytes;
      inject_msg(w, TT_K_WINDOW, &win.base);
    }
    w->data_in = 0;
  }
  return moved;
}

static void check(world_t *w) {
  char why[256];
  if (w->x && !xfer_check(w->x, why, sizeof(why))) die("the engine's state broke", why);
  if (w->x && w->ask && tt_xfer_outstanding(w->x) + w->reported != w->started)
    die("console ops neither done nor outstanding", NULL);
}

/* Run every job and completion, and carry everything, until nothing moves. */
static void settle(world_t *w) {
  for (int spins = 0;; spins++) {
    if (spins > 100000) die("the channel never settles", NULL);
    bool did = drain(w);
    if (xfer_pool_work_one()) did = true;
    if (xfer_pool_deliver()) did = true;
    check(w);
    if (!did && xfer_pool_pending() == 0) return;
  }
}

/* ---- the engine's callbacks ------------------------------------------------------------ */

typedef struct {
  world_t *w;
  Tether__FileMsgType type;
  uint32_t id;
  bool recursive;
  uint32_t mode;
  int rc;
  agent_files_list_t *list;
  char path[TT_FILE_PATH_MAX + 1];
  char err[TT_TEXT_MAX];
} req_t;

static agent_files_batch_t g_batch;

static void req_work(void *arg) {
  req_t *r = arg;
  if (r->rc) return; /* refused already: answered from the loop, like the rest */
  if (r->type == TETHER__FILE_MSG_TYPE__FILE_LIST)
    r->rc = agent_files_list(&g_fs, r->path, r->recursive, false, &r->list, r->err, sizeof(r->err));
  else r->rc = agent_files_mkdir(&g_fs, r->path, r->mode, r->err, sizeof(r->err));
}

/* The agent's answer, as serve.c gives it (all of a listing the channel takes now). */
static void req_done(void *arg) {
  req_t *r = arg;
  tt_xfer_t *x = r->w->x;
  Tether__FileCtl m = TETHER__FILE_CTL__INIT;
  m.id = r->id;
  if (x && r->rc) {
    m.type = TETHER__FILE_MSG_TYPE__FILE_ERROR;
    m.code = (int32_t)tt_err_to_wire(r->rc);
    m.message = tt_text(tt_text_valid(tt_text(r->err), TT_TEXT_MAX) ? r->err : "refused");
    (void)!tt_xfer_ctl(x, &m);
  } else if (x && r->type == TETHER__FILE_MSG_TYPE__FILE_MKDIR) {
    m.type = TETHER__FILE_MSG_TYPE__FILE_OK;
    (void)!tt_xfer_ctl(x, &m);
  } else if (x) {
    size_t pos = 0;
    for (;;) {
      Tether__FileCtl b = TETHER__FILE_CTL__INIT;
      b.type = TETHER__FILE_MSG_TYPE__FILE_ENTRIES;
      b.id = r->id;
      agent_files_list_batch(r->list, &pos, &b, &g_batch);
      if (tt_xfer_ctl(x, &b) || b.last) break;
    }
  }
  agent_files_list_free(r->list);
  free(r);
}

static void x_on_ctl(tt_xfer_t *x, const Tether__FileCtl *m) {
  world_t *w = tt_xfer_data(x);
  if (w->ask) return; /* ENTRIES, OK, an ERROR of no op of ours: the console's commands' */
  if (m->type == TETHER__FILE_MSG_TYPE__FILE_LIST || m->type == TETHER__FILE_MSG_TYPE__FILE_MKDIR) {
    req_t *r = calloc(1, sizeof(*r));
    if (!r) die("out of memory", NULL);
    r->w = w;
    r->type = m->type;
    r->id = m->id;
    r->recursive = m->recursive;
    r->mode = m->stat ? m->stat->mode : 0;
    char why[96];
    if (!agent_files_path_ok(m->path.data, m->path.len, why, sizeof(why))) {
      r->rc = TT_EINVAL;
      snprintf(r->err, sizeof(r->err), "refused: %s", why);
    } else {
      memcpy(r->path, m->path.data, m->path.len);
    }
    /* Answered once the engine has returned, as the agent does. */
    if (tt_xfer_pool_submit(req_work, req_done, r)) die("the pool refused a job", NULL);
    return;
  }
  if (m->type == TETHER__FILE_MSG_TYPE__FILE_ERROR) return;
  Tether__FileCtl e = TETHER__FILE_CTL__INIT;
  e.type = TETHER__FILE_MSG_TYPE__FILE_ERROR;
  e.id = m->id;
  e.code = (int32_t)tt_err_to_wire(TT_EPROTO);
  e.message = tt_text("the agent does not take that message");
  (void)!tt_xfer_ctl(x, &e);
}

static void x_on_done(tt_xfer_t *x, const tt_xfer_result_t *r) {
  world_t *w = tt_xfer_data(x);
  if (w->failed) die("an op reported after on_fail", NULL);
  if (!r->path || (r->code && !r->msg)) die("a result without its path or its reason", NULL);
  if (w->ask) {
    if (r->id != FZF_PULL_ID && r->id != FZF_PUSH_ID) die("a result for an op the console never began", NULL);
    for (unsigned i = 0; i < w->reported && i < RESULTS_MAX; i++)
      if (w->ids[i] == r->id) die("an op reported twice", NULL);
  }
  if (g_verbose)
    fprintf(stderr, "fuzz_files: op %u %s: %s%s%s\n", r->id, r->sent ? "sent" : "received",
            r->code ? tt_errname(r->code) : "ok", r->msg && r->msg[0] ? ": " : "", r->msg ? r->msg : "");
  if (w->reported < RESULTS_MAX) w->ids[w->reported] = r->id;
  w->reported++;
  if (!r->code && !r->sent) {
    if (w->ngot < RESULTS_MAX) memcpy(w->got_sha[w->ngot++], r->sha256, 32);
    else w->got_lost = true;
  }
}

static void x_on_fail(tt_xfer_t *x, int code, const char *msg) {
  world_t *w = tt_xfer_data(x);
  if (!msg) die("on_fail without a reason", NULL);
  if (g_verbose) fprintf(stderr, "fuzz_files: the channel failed: %s: %s\n", tt_errname(code), msg);
  if (w->failed++) die("on_fail twice", NULL);
  if (tt_xfer_outstanding(x)) die("on_fail with ops not reported", NULL);
}

static const tt_xfer_cbs_t k_cbs = {.on_ctl = x_on_ctl, .on_done = x_on_done, .on_fail = x_on_fail};

static world_t *world_of(tt_mux_t *m) { return tt_link_from_mux(m)->data; }

static void m_open(tt_mux_t *m, tt_chan_t *ch, const Tether__ChannelOpen *msg) {
  world_t *w = world_of(m);
  (void)msg;
  if (tt_mux_accept(m, ch, TT_WINDOW_BULK, true, 0)) die("cannot accept", NULL);
  w->ch = ch;
  if (tt_xfer_new(&w->x, &w->link, ch, true, &g_xfs, &k_cbs, w)) die("cannot serve", NULL);
}
static void m_accept(tt_mux_t *m, tt_chan_t *ch, const Tether__ChannelAccept *msg) {
  (void)m;
  (void)ch;
  (void)msg;
}
static void m_data(tt_mux_t *m, tt_chan_t *ch, const uint8_t *p, size_t n, uint8_t flags) {
  world_t *w = world_of(m);
  if (w->x) tt_xfer_on_data(w->x, p, n, flags);
  else tt_mux_consumed(m, ch, n);
}
static void m_credit(tt_mux_t *m, tt_chan_t *ch, uint32_t n) {
  world_t *w = world_of(m);
  (void)ch;
  (void)n;
  if (w->x) tt_xfer_on_credit(w->x);
}
static void m_close(tt_mux_t *m, tt_chan_t *ch, int code, const char *msg) {
  world_t *w = world_of(m);
  (void)ch;
  if (w->x) tt_xfer_on_close(w->x, code, msg);
  w->ch = NULL;
}
static const tt_mux_cbs_t k_mcbs = {m_open, m_accept, m_data, m_credit, m_close};

/* ---- one input ------------------------------------------------------------------------ */

static void world_open(world_t *w, uint8_t mode) {
  memset(w, 0, sizeof(*w));
  w->ask = mode & FZF_MODE_ASK;
  tt_mux_init(&w->link.mux, w->ask, &k_mcbs, &w->link);
  tt_frame_reader_init(&w->rd, TT_FRAME_MAX_BODY);
  w->link.data = w;
  Tether__ChannelOpen o = TETHER__CHANNEL_OPEN__INIT;
  o.kind = TETHER__CHANNEL_KIND__CHANNEL_FILES;
  o.priority = TETHER__PRIORITY__PRIORITY_BULK;
  o.window = TT_WINDOW_BULK;
  if (!w->ask) {
    inject_msg(w, TT_K_CH_OPEN, &o.base); /* the console opens; m_open serves */
    if (!w->x) die("the channel did not open", NULL);
    return;
  }
  if (tt_mux_open(&w->link.mux, &o, TT_WINDOW_BULK, true, &w->ch) || w->ch->id != CHAN) die("cannot open", NULL);
  Tether__ChannelAccept a = TETHER__CHANNEL_ACCEPT__INIT;
  a.window = TT_WINDOW_BULK;
  inject_msg(w, TT_K_CH_ACCEPT, &a.base);
  if (w->ch->state != TT_CH_OPEN) die("the channel was not accepted", NULL);
  if (tt_xfer_new(&w->x, &w->link, w->ch, false, &g_xfs, &k_cbs, w)) die("cannot ask", NULL);
  char local[200], src[200];
  snprintf(local, sizeof(local), "%s/pulled.txt", g_root);
  snprintf(src, sizeof(src), "%s/%s", g_root, fzf_tree[FZF_PUSH_SRC].path);
  bool force = mode & FZF_MODE_FORCE;
  if (tt_xfer_pull(w->x, FZF_PULL_ID, FZF_PULL_PATH, local, force)) die("cannot pull", NULL);
  if (tt_xfer_push(w->x, FZF_PUSH_ID, src, FZF_PUSH_PATH, force)) die("cannot push", NULL);
  w->started = 2;
  if (!(mode & FZF_MODE_EARLY)) settle(w);
}

static void world_close(world_t *w, uint8_t mode) {
  if (mode & FZF_MODE_FREE_FIRST) {
    /* The owner lets go with jobs still out: the pool's completions release it. */
    tt_xfer_free(w->x);
    w->x = NULL;
  }
  settle(w);
  check(w);
  int root = open(g_root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (root < 0) die("the root is gone", NULL);
  check_tree(w, root, "");
  close(root);
  check_outside();
  if (w->x) tt_xfer_free(w->x);
  w->x = NULL;
  if (!w->down) tt_mux_destroy(&w->link.mux);
  w->down = true;
  settle(w);
  if (xfer_pool_pending()) die("jobs left after the channel went", NULL);
  tt_frame_reader_free(&w->rd);
}

static uint32_t get_be(const uint8_t *p, size_t n) {
  uint32_t v = 0;
  for (size_t i = 0; i < n; i++) v = (v << 8) | p[i];
  return v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  int fds = count_fds();
  uint8_t mode = data[0];
  g_fs.walk = mode & FZF_MODE_WALK;
  tree_reset();
  world_t *w = &g_w;
  world_open(w, mode);
  size_t i = 1;
  while (i < size && !w->down) {
    uint8_t op = data[i++];
    size_t len;
    switch (op & 7) {
    case FZF_R_CTRL:
    case FZF_R_DATA:
    case FZF_R_FLAGS: {
      if (i + 2 > size) goto end;
      len = get_be(data + i, 2);
      i += 2;
      if (len > size - i) len = size - i;
      if (len > TT_DATA_CHUNK_MAX) len = TT_DATA_CHUNK_MAX;
      uint8_t flags = (op & 7) == FZF_R_CTRL ? TT_FF_CTRL : (op & 7) == FZF_R_DATA ? 0 : (uint8_t)((op >> 4) & TT_FF_MASK);
      inject(w, TT_K_DATA, flags, data + i, len);
      i += len;
      break;
    }
    case FZF_R_FILL: {
      if (i + 4 > size) goto end;
      uint8_t v = data[i];
      size_t n = get_be(data + i + 1, 3);
      i += 4;
      if (n > FILL_MAX - w->filled) n = FILL_MAX - w->filled;
      w->filled += n;
      static uint8_t buf[TT_DATA_CHUNK_MAX];
      memset(buf, v, sizeof(buf));
      while (n && !w->down) {
        size_t k = n < sizeof(buf) ? n : sizeof(buf);
        inject(w, TT_K_DATA, 0, buf, k);
        n -= k;
      }
      break;
    }
    case FZF_R_WORK:
      (void)xfer_pool_work_one();
      break;
    case FZF_R_BACK:
      (void)xfer_pool_deliver();
      (void)drain(w);
      break;
    case FZF_R_CLOSE:
      if (op & FZF_R_LINK) {
        link_down(w);
      } else if (w->ch && tt_mux_find(&w->link.mux, CHAN)) {
        Tether__ChannelClose c = TETHER__CHANNEL_CLOSE__INIT;
        c.code = TETHER__ERROR_CODE__ERR_CLOSED;
        c.message = tt_text("the technician went away");
        inject_msg(w, TT_K_CH_CLOSE, &c.base);
      }
      break;
    case FZF_R_SETTLE:
      settle(w);
      break;
    }
    if (op & FZF_R_SETTLE_AFTER) settle(w);
    check(w);
  }
end:
  world_close(w, mode);
  if (count_fds() != fds) die("a descriptor was left open", NULL);
  return 0;
}

static void cleanup(void) {
  int base = open(g_base, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (base < 0) return;
  rm_below(base, NULL);
  close(base);
  rmdir(g_base);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  g_verbose = getenv("FUZZ_FILES_VERBOSE") && atoi(getenv("FUZZ_FILES_VERBOSE")) > 0;
  tt_log_set_level(TT_LOG_OFF);
  /* tmpfs where there is one: each input writes a few files. */
  const char *tmp = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
  snprintf(g_base, sizeof(g_base), "%s/tt-fuzz-files-XXXXXX", tmp);
  if (!mkdtemp(g_base)) die("mkdtemp", strerror(errno));
  snprintf(g_root, sizeof(g_root), "%s/root", g_base);
  snprintf(g_outside, sizeof(g_outside), "%s/outside", g_base);
  if (mkdir(g_root, 0755) || mkdir(g_outside, 0755)) die("mkdir", strerror(errno));
  atexit(cleanup);
  int out = open(g_outside, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (out < 0) die("open", g_outside);
  write_file(out, "secret", k_secret, sizeof(k_secret) - 1);
  close(out);
  tree_reset();
  int root = open(g_root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  for (size_t i = 0; i < FZF_TREE_N; i++) {
    if (fzf_tree[i].size < 0) continue;
    int fd = openat(root, fzf_tree[i].path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) die("cannot read back", fzf_tree[i].path);
    sha_fd(fd, g_tree_sha[i]);
    close(fd);
  }
  close(root);
  /* The agent shares the root read-write with ro/ read-only inside it; relative paths
   * start at the root (shell.user's home). */
  char ro[200], err[512];
  snprintf(ro, sizeof(ro), "%s/ro", g_root);
  if (agent_files_fs_init(&g_fs, g_root, ro, g_root, err, sizeof(err))) die("the roots", err);
  g_xfs.open_read = agent_files_open_read;
  g_xfs.open_parent = agent_files_open_parent;
  g_xfs.fs = &g_fs;
  g_loop = uv_default_loop();
  if (xfer_pool_start_stepped(g_loop)) die("the pool", NULL);
  return 0;
}
