/* tt_xfer: the file-transfer engine between two muxes wired back to back (no TLS: a link
 * without a TLS stream never flushes, so frames are carried by hand), with the real pool
 * and real files in a temporary directory. Push and pull at the chunk edges, resume after a
 * cut, refusal of an existing target, a hostile sender's bad chunk, a source that changed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <errno.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "tt/link.h"
#include "tt/msg.h"
#include "tt/xfer.h"
#include "xfer_int.h"

#define MAXF 16

typedef struct side_s side_t;
struct side_s {
  tt_link_t link;
  tt_frame_reader_t rd;
  side_t *peer;
  bool serve;
  tt_chan_t *ch;
  tt_xfer_t *x;
  tt_xfer_result_t res[MAXF];
  char msgs[MAXF][256];
  int ndone;
  int failed;
  uint64_t progress;
  uint64_t cut_after; /* stop carrying frames once this many DATA bytes went this way */
  uint64_t carried;
};

static char g_dir[256];
static bool g_agent_raw; /* the agent side answers by hand */
static uv_loop_t *g_loop;

/* ---- the file systems: plain paths under g_dir ------------------------------------- */

static int fs_open_read(void *fs, const char *path, tt_xfer_stat_t *st, char *err, size_t errlen) {
  (void)fs;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  struct stat s;
  if (fd < 0 || fstat(fd, &s) || !S_ISREG(s.st_mode)) {
    snprintf(err, errlen, "%s: cannot open", path);
    if (fd >= 0) close(fd);
    return TT_ENOTFOUND;
  }
  st->size = (uint64_t)s.st_size;
  st->mtime_ns = (int64_t)s.st_mtim.tv_sec * 1000000000 + s.st_mtim.tv_nsec;
  st->mode = s.st_mode & 07777;
  return fd;
}

static int fs_open_parent(void *fs, const char *path, char *name, size_t cap, char *err, size_t errlen) {
  (void)fs;
  const char *slash = strrchr(path, '/');
  char dir[512];
  snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
  snprintf(name, cap, "%s", slash + 1);
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) snprintf(err, errlen, "%s: no such directory", dir);
  return fd < 0 ? TT_ENOTFOUND : fd;
}

static const tt_xfer_fs_t g_fs = {fs_open_read, fs_open_parent, NULL};

/* ---- callbacks ------------------------------------------------------------------- */

static void cb_done(tt_xfer_t *x, const tt_xfer_result_t *r) {
  side_t *s = tt_xfer_data(x);
  assert_true(s->ndone < MAXF);
  s->res[s->ndone] = *r;
  snprintf(s->msgs[s->ndone], sizeof(s->msgs[0]), "%s", r->msg ? r->msg : "");
  s->res[s->ndone].msg = s->msgs[s->ndone];
  s->res[s->ndone].path = NULL;
  s->res[s->ndone].local = NULL;
  s->ndone++;
}
static void cb_fail(tt_xfer_t *x, int code, const char *msg) {
  side_t *s = tt_xfer_data(x);
  (void)code;
  (void)msg;
  s->failed++;
}
static void cb_progress(tt_xfer_t *x, uint32_t id, uint64_t done, uint64_t total) {
  side_t *s = tt_xfer_data(x);
  (void)id;
  (void)total;
  s->progress = done;
}
static const tt_xfer_cbs_t g_cbs = {.on_done = cb_done, .on_fail = cb_fail, .on_progress = cb_progress};

static void m_open(tt_mux_t *m, tt_chan_t *ch, const Tether__ChannelOpen *msg) {
  side_t *s = (side_t *)tt_link_from_mux(m);
  (void)msg;
  assert_int_equal(tt_mux_accept(m, ch, TT_WINDOW_BULK, true, 0), 0);
  s->ch = ch;
  if (!g_agent_raw) assert_int_equal(tt_xfer_new(&s->x, &s->link, ch, s->serve, &g_fs, &g_cbs, s), 0);
}
static void m_accept(tt_mux_t *m, tt_chan_t *ch, const Tether__ChannelAccept *msg) {
  side_t *s = (side_t *)tt_link_from_mux(m);
  (void)msg;
  (void)ch;
  (void)s;
}
static void m_data(tt_mux_t *m, tt_chan_t *ch, const uint8_t *p, size_t n, uint8_t flags) {
  side_t *s = (side_t *)tt_link_from_mux(m);
  (void)ch;
  if (s->x) tt_xfer_on_data(s->x, p, n, flags);
}
static void m_credit(tt_mux_t *m, tt_chan_t *ch, uint32_t n) {
  side_t *s = (side_t *)tt_link_from_mux(m);
  (void)ch;
  (void)n;
  if (s->x) tt_xfer_on_credit(s->x);
}
static void m_close(tt_mux_t *m, tt_chan_t *ch, int code, const char *msg) {
  side_t *s = (side_t *)tt_link_from_mux(m);
  (void)ch;
  if (s->x) tt_xfer_on_close(s->x, code, msg);
}
static const tt_mux_cbs_t g_mcbs = {m_open, m_accept, m_data, m_credit, m_close};

static int feed_cb(void *ctx, const tt_frame_t *f) {
  side_t *s = ctx;
  return tt_mux_input(&s->link.mux, f);
}

/* Carry frames from a to b; false if nothing moved. */
static bool carry(side_t *a, side_t *b) {
  tt_buf_t out;
  tt_buf_init(&out, 8u << 20);
  tt_mux_pull(&a->link.mux, &out, 1u << 20);
  bool moved = out.len > 0;
  if (moved) {
    a->carried += out.len;
    assert_int_equal(tt_frame_reader_feed(&b->rd, tt_buf_head(&out), out.len, feed_cb, b), 0);
  }
  tt_buf_free(&out);
  return moved;
}

static void side_init(side_t *s, bool opener, bool serve) {
  memset(s, 0, sizeof(*s));
  s->serve = serve;
  tt_mux_init(&s->link.mux, opener, &g_mcbs, &s->link);
  tt_frame_reader_init(&s->rd, TT_FRAME_MAX_BODY);
  s->link.data = s;
}

static void side_free(side_t *s) {
  if (s->x) tt_xfer_free(s->x);
  s->x = NULL;
  tt_mux_destroy(&s->link.mux);
  tt_frame_reader_free(&s->rd);
}

/* console (c) opens a files channel to agent (a). */
static void pair(side_t *c, side_t *a) {
  side_init(c, true, false);
  side_init(a, false, true);
  Tether__ChannelOpen o = TETHER__CHANNEL_OPEN__INIT;
  o.kind = TETHER__CHANNEL_KIND__CHANNEL_FILES;
  o.priority = TETHER__PRIORITY__PRIORITY_BULK;
  assert_int_equal(tt_mux_open(&c->link.mux, &o, TT_WINDOW_BULK, true, &c->ch), 0);
  carry(c, a);
  carry(a, c);
  assert_true(a->x || g_agent_raw);
  assert_int_equal(c->ch->state, TT_CH_OPEN);
  assert_int_equal(tt_xfer_new(&c->x, &c->link, c->ch, false, &g_fs, &g_cbs, c), 0);
}

/* Run until the console has n results (or the cut stopped the flow). */
static void run(side_t *c, side_t *a, int n, uint64_t cut) {
  for (int spins = 0; spins < 200000 && c->ndone < n; spins++) {
    uv_run(g_loop, UV_RUN_NOWAIT);
    bool m1 = false, m2 = false;
    if (!cut || c->carried + a->carried < cut) {
      m1 = carry(c, a);
      m2 = carry(a, c);
    } else {
      return;
    }
    if (!m1 && !m2) usleep(200);
  }
  assert_true(c->ndone >= n);
}

static void make_file(const char *path, size_t n, bool compressible, unsigned seed) {
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  uint64_t x = 0x9e3779b97f4a7c15ull ^ seed;
  for (size_t i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    fputc(compressible ? "abcdefgh \n"[x % 10] : (int)(x & 0xff), f);
  }
  fclose(f);
}

static void sha_file(const char *path, uint8_t out[32]) {
  FILE *f = fopen(path, "rb");
  assert_non_null(f);
  EVP_MD_CTX *c = EVP_MD_CTX_new();
  EVP_DigestInit_ex(c, EVP_sha256(), NULL);
  uint8_t buf[65536];
  size_t r;
  while ((r = fread(buf, 1, sizeof(buf), f)) > 0) EVP_DigestUpdate(c, buf, r);
  unsigned len = 32;
  EVP_DigestFinal_ex(c, out, &len);
  EVP_MD_CTX_free(c);
  fclose(f);
}

static void same_files(const char *a, const char *b) {
  uint8_t ha[32], hb[32];
  sha_file(a, ha);
  sha_file(b, hb);
  assert_memory_equal(ha, hb, 32);
}

/* Wait until no job holds the partial file of target dst (its lock is free). */
static void wait_unlocked(const char *dst) {
  char part[600];
  const char *slash = strrchr(dst, '/');
  snprintf(part, sizeof(part), "%.*s/.%s.tether-part", (int)(slash - dst), dst, slash + 1);
  for (int i = 0; i < 100000; i++) {
    uv_run(g_loop, UV_RUN_NOWAIT);
    int fd = open(part, O_RDONLY);
    if (fd < 0) return;
    int ok = flock(fd, LOCK_EX | LOCK_NB) == 0;
    close(fd);
    if (ok) return;
    usleep(100);
  }
  fail_msg("the partial file of %s stayed locked", dst);
}

static void path_of(char *out, size_t cap, const char *name) { snprintf(out, cap, "%s/%s", g_dir, name); }

/* ---- tests --------------------------------------------------------------------- */

static void test_push_pull_sizes(void **state) {
  (void)state;
  const size_t sizes[] = {0, 1, TT_FILE_CHUNK - 1, TT_FILE_CHUNK, TT_FILE_CHUNK + 1, 5 * TT_FILE_CHUNK + 7};
  for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
    for (int comp = 0; comp < 2; comp++) {
      char src[512], dev[512], back[512];
      snprintf(src, sizeof(src), "%s/src-%zu-%d", g_dir, i, comp);
      snprintf(dev, sizeof(dev), "%s/dev-%zu-%d", g_dir, i, comp);
      snprintf(back, sizeof(back), "%s/back-%zu-%d", g_dir, i, comp);
      make_file(src, sizes[i], comp, (unsigned)i);
      side_t c, a;
      pair(&c, &a);
      assert_int_equal(tt_xfer_push(c.x, 1, src, dev, false), 0);
      run(&c, &a, 1, 0);
      assert_int_equal(c.res[0].code, 0);
      assert_true(c.res[0].sent);
      assert_int_equal(c.res[0].size, sizes[i]);
      same_files(src, dev);
      assert_int_equal(tt_xfer_pull(c.x, 2, dev, back, false), 0);
      run(&c, &a, 2, 0);
      assert_int_equal(c.res[1].code, 0);
      assert_false(c.res[1].sent);
      same_files(src, back);
      uint8_t h[32];
      sha_file(src, h);
      assert_memory_equal(h, c.res[1].sha256, 32);
      /* The agent's side saw both, with the same hash. */
      for (int spins = 0; a.ndone < 2 && spins < 10000; spins++) {
        uv_run(g_loop, UV_RUN_NOWAIT);
        carry(&c, &a);
        carry(&a, &c);
      }
      assert_int_equal(a.ndone, 2);
      assert_memory_equal(a.res[1].sha256, h, 32);
      if (comp && sizes[i] > 4096) assert_true(c.res[0].wire < sizes[i] / 4 * 3); /* it compressed */
      if (!comp && sizes[i] > 4096) assert_true(c.res[0].wire >= sizes[i]);       /* raw: never larger */
      struct stat s1, s2;
      assert_int_equal(stat(src, &s1), 0);
      assert_int_equal(stat(back, &s2), 0);
      assert_int_equal(s1.st_mtim.tv_sec, s2.st_mtim.tv_sec);
      assert_int_equal(s1.st_mtim.tv_nsec, s2.st_mtim.tv_nsec);
      assert_int_equal(s1.st_mode & 07777, s2.st_mode & 07777);
      side_free(&c);
      side_free(&a);
    }
  }
}

static void test_exists_needs_force(void **state) {
  (void)state;
  char src[512], dst[512];
  path_of(src, sizeof(src), "force-src");
  path_of(dst, sizeof(dst), "force-dst");
  make_file(src, 1000, true, 7);
  make_file(dst, 10, true, 8);
  side_t c, a;
  pair(&c, &a);
  assert_int_equal(tt_xfer_push(c.x, 1, src, dst, false), 0);
  run(&c, &a, 1, 0);
  assert_int_not_equal(c.res[0].code, 0);
  assert_non_null(strstr(c.res[0].msg, "--force"));
  struct stat s;
  assert_int_equal(stat(dst, &s), 0);
  assert_int_equal(s.st_size, 10);
  assert_int_equal(tt_xfer_push(c.x, 2, src, dst, true), 0);
  run(&c, &a, 2, 0);
  assert_int_equal(c.res[1].code, 0);
  same_files(src, dst);
  side_free(&c);
  side_free(&a);
}

/* Cut a pull midway (the channel goes away), then run it again: it resumes. */
static void test_resume_after_cut(void **state) {
  (void)state;
  char src[512], dst[512];
  path_of(src, sizeof(src), "resume-src");
  path_of(dst, sizeof(dst), "resume-dst");
  make_file(src, 8 * TT_FILE_CHUNK + 3, false, 9);
  side_t c, a;
  pair(&c, &a);
  assert_int_equal(tt_xfer_pull(c.x, 1, src, dst, false), 0);
  run(&c, &a, 1, 4 * TT_FILE_CHUNK);
  /* Let the receiver write what it has. */
  for (int i = 0; i < 2000 && c.progress < 2 * TT_FILE_CHUNK; i++) {
    uv_run(g_loop, UV_RUN_NOWAIT);
    usleep(500);
  }
  assert_true(c.progress >= 2 * TT_FILE_CHUNK);
  side_free(&c);
  side_free(&a);
  wait_unlocked(dst);
  struct stat s;
  assert_int_not_equal(stat(dst, &s), 0); /* nothing under the final name */
  pair(&c, &a);
  assert_int_equal(tt_xfer_pull(c.x, 2, src, dst, false), 0);
  run(&c, &a, 1, 0);
  assert_int_equal(c.res[0].code, 0);
  assert_true(c.res[0].resumed >= 2 * TT_FILE_CHUNK);
  same_files(src, dst);
  side_free(&c);
  side_free(&a);
}

/* A partial of a source that changed since is started over, with a note. */
static void test_resume_source_changed(void **state) {
  (void)state;
  char src[512], dst[512];
  path_of(src, sizeof(src), "changed-src");
  path_of(dst, sizeof(dst), "changed-dst");
  make_file(src, 6 * TT_FILE_CHUNK, false, 10);
  side_t c, a;
  pair(&c, &a);
  assert_int_equal(tt_xfer_pull(c.x, 1, src, dst, false), 0);
  run(&c, &a, 1, 3 * TT_FILE_CHUNK);
  for (int i = 0; i < 2000 && c.progress < TT_FILE_CHUNK; i++) {
    uv_run(g_loop, UV_RUN_NOWAIT);
    usleep(500);
  }
  side_free(&c);
  side_free(&a);
  wait_unlocked(dst);
  make_file(src, 6 * TT_FILE_CHUNK + 1, false, 11);
  pair(&c, &a);
  assert_int_equal(tt_xfer_pull(c.x, 2, src, dst, false), 0);
  run(&c, &a, 1, 0);
  assert_int_equal(c.res[0].code, 0);
  assert_int_equal(c.res[0].resumed, 0);
  assert_non_null(strstr(c.res[0].msg, "started over"));
  same_files(src, dst);
  side_free(&c);
  side_free(&a);
}

/* A hostile sender: a chunk whose bytes do not match its sha256. The file fails, nothing
 * appears under its name, and the channel goes on. */
static void send_ctl(side_t *s, const Tether__FileCtl *m) {
  Tether__ChannelControl cc = TETHER__CHANNEL_CONTROL__INIT;
  cc.body_case = TETHER__CHANNEL_CONTROL__BODY_FILE;
  cc.file = (Tether__FileCtl *)m;
  uint8_t buf[4096];
  size_t n = protobuf_c_message_pack(&cc.base, buf);
  assert_int_equal(tt_mux_send(&s->link.mux, s->ch, buf, n, TT_FF_CTRL), 0);
}

static void test_bad_chunk_refused(void **state) {
  (void)state;
  char dst[512];
  path_of(dst, sizeof(dst), "hostile-dst");
  side_t c, a;
  /* The console pulls; the "agent" answers by hand. */
  g_agent_raw = true;
  pair(&c, &a);
  g_agent_raw = false;
  assert_int_equal(tt_xfer_pull(c.x, 1, "/dev/whatever", dst, false), 0);
  for (int i = 0; i < 2000 && !carry(&c, &a); i++) {
    uv_run(g_loop, UV_RUN_NOWAIT);
    usleep(200);
  }
  uint8_t data[100], sha[32] = {0};
  memset(data, 'x', sizeof(data));
  Tether__FileStat st = TETHER__FILE_STAT__INIT;
  st.size = sizeof(data);
  st.mode = 0644;
  Tether__FileCtl b = TETHER__FILE_CTL__INIT;
  b.type = TETHER__FILE_MSG_TYPE__FILE_BEGIN;
  b.id = 1;
  b.stat = &st;
  b.chunk_size = TT_FILE_CHUNK;
  send_ctl(&a, &b);
  Tether__FileCtl h = TETHER__FILE_CTL__INIT;
  h.type = TETHER__FILE_MSG_TYPE__FILE_CHUNK;
  h.id = 1;
  h.index = 0;
  h.raw_len = h.wire_len = sizeof(data);
  h.sha256.len = 32;
  h.sha256.data = sha; /* wrong */
  send_ctl(&a, &h);
  assert_int_equal(tt_mux_send(&a.link.mux, a.ch, data, sizeof(data), 0), 0);
  run(&c, &a, 1, 0);
  assert_int_not_equal(c.res[0].code, 0);
  assert_non_null(strstr(c.res[0].msg, "sha256"));
  assert_int_equal(c.failed, 0); /* the channel is still up */
  struct stat s;
  assert_int_not_equal(stat(dst, &s), 0);
  side_free(&c);
  side_free(&a);
}

/* A refusal that names a long path of multi-byte characters is cut to whole characters: it
 * goes to the peer as text (and the console shows it), so it must stay valid UTF-8. */
static void test_refusal_text_whole(void **state) {
  (void)state;
  char dst[512], dev[1024];
  path_of(dst, sizeof(dst), "wide-dst");
  size_t n = 0;
  for (int i = 0; i < 242; i++) {
    if (i % 81 == 80) dev[n++] = '/';
    else {
      memcpy(dev + n, "\xe2\x82\xac", 3); /* the euro sign: three bytes */
      n += 3;
    }
  }
  dev[n] = 0;
  side_t c, a;
  g_agent_raw = true;
  pair(&c, &a);
  g_agent_raw = false;
  assert_int_equal(tt_xfer_pull(c.x, 1, dev, dst, false), 0);
  for (int i = 0; i < 2000 && !carry(&c, &a); i++) {
    uv_run(g_loop, UV_RUN_NOWAIT);
    usleep(200);
  }
  Tether__FileStat st = TETHER__FILE_STAT__INIT;
  st.size = 10;
  Tether__FileCtl b = TETHER__FILE_CTL__INIT;
  b.type = TETHER__FILE_MSG_TYPE__FILE_BEGIN;
  b.id = 1;
  b.stat = &st;
  b.chunk_size = 7; /* not ours: refused, naming the path */
  send_ctl(&a, &b);
  run(&c, &a, 1, 0);
  assert_int_equal(c.res[0].code, TT_EPROTO);
  assert_true(strlen(c.msgs[0]) > 200);
  assert_true(tt_text_valid(tt_text(c.msgs[0]), TT_FILE_PATH_MAX));
  side_free(&c);
  side_free(&a);
}

/* Credit the console's end of the channel holds: bytes received and not given back. */
static uint32_t held_credit(const side_t *s) { return s->ch->window - s->ch->recv_left - s->ch->consumed; }

/* A receiver gives back the credit of chunk bytes it will never write. A file the sender
 * gives up on in the middle of a chunk's bytes (the rest still comes, as the protocol says),
 * or while a whole chunk waits for the disk, must not shrink the channel's window for good:
 * a few such files and the channel would stall. */
static void test_credit_back_dropped_chunks(void **state) {
  (void)state;
  for (int waiting = 0; waiting < 2; waiting++) {
    char dst[512];
    snprintf(dst, sizeof(dst), "%s/credit-dst-%d", g_dir, waiting);
    side_t c, a;
    g_agent_raw = true;
    pair(&c, &a);
    g_agent_raw = false;
    assert_int_equal(tt_xfer_pull(c.x, 1, "/dev/whatever", dst, false), 0);
    for (int i = 0; i < 2000 && !carry(&c, &a); i++) {
      uv_run(g_loop, UV_RUN_NOWAIT);
      usleep(200);
    }
    uint8_t data[1000], sha[32];
    memset(data, 'y', sizeof(data));
    unsigned shalen = 32;
    EVP_Digest(data, sizeof(data), sha, &shalen, EVP_sha256(), NULL);
    Tether__FileStat st = TETHER__FILE_STAT__INIT;
    st.size = sizeof(data);
    st.mode = 0644;
    Tether__FileCtl b = TETHER__FILE_CTL__INIT;
    b.type = TETHER__FILE_MSG_TYPE__FILE_BEGIN;
    b.id = 1;
    b.stat = &st;
    b.chunk_size = TT_FILE_CHUNK;
    send_ctl(&a, &b);
    Tether__FileCtl h = TETHER__FILE_CTL__INIT;
    h.type = TETHER__FILE_MSG_TYPE__FILE_CHUNK;
    h.id = 1;
    h.raw_len = h.wire_len = sizeof(data);
    h.sha256.len = 32;
    h.sha256.data = sha;
    send_ctl(&a, &h);
    Tether__FileCtl e = TETHER__FILE_CTL__INIT;
    e.type = TETHER__FILE_MSG_TYPE__FILE_ERROR;
    e.id = 1;
    e.code = TETHER__ERROR_CODE__ERR_INTERNAL;
    e.message = tt_text("the source went away");
    if (!waiting) {
      assert_int_equal(tt_mux_send(&a.link.mux, a.ch, data, 400, 0), 0);
      send_ctl(&a, &e);
      assert_int_equal(tt_mux_send(&a.link.mux, a.ch, data + 400, sizeof(data) - 400, 0), 0);
    } else {
      assert_int_equal(tt_mux_send(&a.link.mux, a.ch, data, sizeof(data), 0), 0);
      send_ctl(&a, &e);
    }
    /* All of it arrives before the loop turns: the job that empties the partial file (begun
     * by BEGIN) is still out, so the whole chunk waits behind it. */
    carry(&a, &c);
    run(&c, &a, 1, 0);
    assert_int_not_equal(c.res[0].code, 0);
    assert_int_equal(c.failed, 0);
    for (int i = 0; i < 10000 && held_credit(&c) != 0; i++) {
      uv_run(g_loop, UV_RUN_NOWAIT);
      carry(&c, &a);
      carry(&a, &c);
      usleep(100);
    }
    assert_int_equal(held_credit(&c), 0);
    side_free(&c);
    side_free(&a);
  }
}

/* The transfer stops while the jobs opening its files run on the pool's threads: the
 * results are made on the loop from what the loop owns, never from what those jobs are
 * writing (op_done read the source's stat and end_all the partial file's state while the
 * jobs wrote them: a TSan build of this test reports it). */
static void test_stop_while_opening(void **state) {
  (void)state;
  char src[512], dev[512], dst[512];
  path_of(src, sizeof(src), "opening-src");
  path_of(dev, sizeof(dev), "opening-dev");
  path_of(dst, sizeof(dst), "opening-dst");
  make_file(src, 5000, true, 12);
  for (int round = 0; round < 20; round++) {
    side_t c, a;
    pair(&c, &a);
    assert_int_equal(tt_xfer_push(c.x, 1, src, dev, false), 0);
    assert_int_equal(tt_xfer_pull(c.x, 2, src, dst, false), 0);
    if (round % 2) usleep(50); /* now and then, let the jobs get under way */
    side_free(&c);
    assert_int_equal(c.ndone, 2);
    assert_int_not_equal(c.res[0].code, 0);
    assert_int_not_equal(c.res[1].code, 0);
    for (int i = 0; i < 100000 && xfer_pool_pending(); i++) {
      uv_run(g_loop, UV_RUN_NOWAIT);
      usleep(100);
    }
    assert_int_equal(xfer_pool_pending(), 0);
    side_free(&a);
  }
}

/* ---- with the pool stepped: each job runs where the test says ------------------------ */

/* The pool's wake-up handle closes on the loop before it can be made again. */
static void pool_stop(void) {
  tt_xfer_pool_stop();
  uv_run(g_loop, UV_RUN_NOWAIT);
}

static void stepped_begin(void) {
  pool_stop();
  assert_int_equal(xfer_pool_start_stepped(g_loop), 0);
}

static void stepped_end(void) {
  pool_stop();
  assert_int_equal(tt_xfer_pool_start(g_loop, 2, NULL, NULL), 0);
}

static void assert_sane(const side_t *s) {
  char why[256];
  if (s->x && !xfer_check(s->x, why, sizeof(why))) fail_msg("the engine's state broke: %s", why);
}

/* Run every job and completion and carry every frame until nothing moves. */
static void settle(side_t *c, side_t *a) {
  for (int spins = 0; spins < 100000; spins++) {
    bool did = carry(c, a);
    did |= carry(a, c);
    did |= xfer_pool_work_one();
    did |= xfer_pool_deliver() > 0;
    assert_sane(c);
    assert_sane(a);
    if (!did && xfer_pool_pending() == 0) return;
  }
  fail_msg("the channel never settled");
}

/* The raw agent's side of one file: BEGIN, one chunk, END. */
static void send_file_raw(side_t *a, uint32_t id, const uint8_t *data, size_t n) {
  uint8_t sha[32];
  unsigned shalen = 32;
  EVP_Digest(data, n, sha, &shalen, EVP_sha256(), NULL);
  Tether__FileStat st = TETHER__FILE_STAT__INIT;
  st.size = n;
  st.mode = 0644;
  Tether__FileCtl b = TETHER__FILE_CTL__INIT;
  b.type = TETHER__FILE_MSG_TYPE__FILE_BEGIN;
  b.id = id;
  b.stat = &st;
  b.chunk_size = TT_FILE_CHUNK;
  send_ctl(a, &b);
  Tether__FileCtl h = TETHER__FILE_CTL__INIT;
  h.type = TETHER__FILE_MSG_TYPE__FILE_CHUNK;
  h.id = id;
  h.raw_len = h.wire_len = (uint32_t)n;
  h.sha256.len = 32;
  h.sha256.data = sha;
  send_ctl(a, &h);
  assert_int_equal(tt_mux_send(&a->link.mux, a->ch, data, n, 0), 0);
  Tether__FileCtl e = TETHER__FILE_CTL__INIT;
  e.type = TETHER__FILE_MSG_TYPE__FILE_END;
  e.id = id;
  Tether__FileStat es = TETHER__FILE_STAT__INIT;
  es.size = n;
  e.stat = &es;
  e.sha256.len = 32;
  e.sha256.data = sha; /* one chunk: the whole file's is the chunk's */
  send_ctl(a, &e);
}

/* A file sent for a pull before the pull's GET went out (the job that opens the partial
 * file has not come back, so the peer cannot know of the op) is not taken for it: the file
 * that comes after the GET is the one kept. */
static void test_stream_before_request(void **state) {
  (void)state;
  stepped_begin();
  char dst[512];
  path_of(dst, sizeof(dst), "early-dst");
  side_t c, a;
  g_agent_raw = true;
  pair(&c, &a);
  g_agent_raw = false;
  assert_int_equal(tt_xfer_pull(c.x, 1, "/dev/whatever", dst, false), 0);
  uint8_t early[300], real[500];
  memset(early, 'e', sizeof(early));
  memset(real, 'r', sizeof(real));
  send_file_raw(&a, 1, early, sizeof(early));
  carry(&a, &c); /* all of it arrives while the partial file is being opened */
  assert_sane(&c);
  settle(&c, &a);
  assert_int_equal(c.ndone, 0); /* still waiting for its file */
  send_file_raw(&a, 1, real, sizeof(real));
  settle(&c, &a);
  assert_int_equal(c.ndone, 1);
  assert_int_equal(c.res[0].code, 0);
  assert_int_equal(c.res[0].size, sizeof(real));
  struct stat s;
  assert_int_equal(stat(dst, &s), 0);
  assert_int_equal(s.st_size, sizeof(real));
  side_free(&c);
  side_free(&a);
  stepped_end();
}

/* The channel goes while the receiver puts a pulled file in place. Once the job has renamed
 * it, the file is there and the result says so; before that, it never appears (the job
 * must not rename it after the op was reported failed). */
static void test_stop_while_finishing(void **state) {
  (void)state;
  stepped_begin();
  for (int renamed = 0; renamed < 2; renamed++) {
    char dst[512];
    snprintf(dst, sizeof(dst), "%s/finishing-dst-%d", g_dir, renamed);
    side_t c, a;
    g_agent_raw = true;
    pair(&c, &a);
    g_agent_raw = false;
    assert_int_equal(tt_xfer_pull(c.x, 1, "/dev/whatever", dst, false), 0);
    settle(&c, &a); /* the GET is out */
    uint8_t data[700];
    memset(data, 'f', sizeof(data));
    send_file_raw(&a, 1, data, sizeof(data));
    carry(&a, &c);
    /* Empty the partial, write the chunk: then the finishing job is queued. */
    for (int i = 0; i < 2; i++) {
      assert_true(xfer_pool_work_one());
      assert_int_equal(xfer_pool_deliver(), 1);
    }
    assert_int_equal(xfer_pool_pending(), 1);
    if (renamed) assert_true(xfer_pool_work_one()); /* its completion waits */
    side_free(&c);
    assert_int_equal(c.ndone, 1);
    while (xfer_pool_work_one() || xfer_pool_deliver()) {
    }
    assert_int_equal(xfer_pool_pending(), 0);
    struct stat s;
    if (renamed) {
      assert_int_equal(c.res[0].code, 0);
      assert_int_equal(stat(dst, &s), 0);
      assert_int_equal(s.st_size, sizeof(data));
    } else {
      assert_int_not_equal(c.res[0].code, 0);
      assert_int_not_equal(stat(dst, &s), 0);
    }
    side_free(&a);
  }
  stepped_end();
}

/* Two files pushed back to back while credit is short: the second file's read-ahead fills
 * the channel's, and once the first file's chunk in flight has gone, the first file must
 * still read its next chunk (it once waited for a wake-up that never came: a pull of
 * several files hung about one time in five). */
static void test_readahead_room_after_send(void **state) {
  (void)state;
  stepped_begin();
  char a_src[512], b_src[512], a_dst[512], b_dst[512];
  path_of(a_src, sizeof(a_src), "ra-a-src");
  path_of(b_src, sizeof(b_src), "ra-b-src");
  path_of(a_dst, sizeof(a_dst), "ra-a-dst");
  path_of(b_dst, sizeof(b_dst), "ra-b-dst");
  make_file(a_src, 5 * TT_FILE_CHUNK + 1, false, 11);
  make_file(b_src, 3 * TT_FILE_CHUNK, false, 12);
  side_t c, a;
  pair(&c, &a);
  assert_int_equal(tt_xfer_push(c.x, 1, a_src, a_dst, false), 0);
  assert_int_equal(tt_xfer_push(c.x, 2, b_src, b_dst, false), 0);
  /* Let every job run and come back but hold the agent's credit back, so a chunk waits on
   * the wire while the read-ahead of both files completes; then let everything go. */
  for (int round = 0; round < 64; round++) {
    bool did = carry(&c, &a);
    did |= xfer_pool_work_one();
    did |= xfer_pool_deliver() > 0;
    if (round % 4 == 3) did |= carry(&a, &c);
    assert_sane(&c);
    assert_sane(&a);
    if (!did && xfer_pool_pending() == 0) break;
  }
  settle(&c, &a);
  assert_int_equal(c.ndone, 2);
  assert_int_equal(c.res[0].code, 0);
  assert_int_equal(c.res[1].code, 0);
  same_files(a_src, a_dst);
  same_files(b_src, b_dst);
  side_free(&c);
  side_free(&a);
  stepped_end();
}

static void test_path_checks(void **state) {
  (void)state;
  char why[128];
  assert_true(tt_xfer_path_ok(tt_text("/tmp/a.txt"), why, sizeof(why)));
  assert_false(tt_xfer_path_ok(tt_text(""), why, sizeof(why)));
  assert_false(tt_xfer_path_ok(tt_text("/tmp/a\nb"), why, sizeof(why)));
  uint8_t nul[] = {'/', 'a', 0, 'b'};
  ProtobufCBinaryData p = {sizeof(nul), nul};
  assert_false(tt_xfer_path_ok(p, why, sizeof(why)));
  char *longp = malloc(TT_FILE_PATH_MAX + 2);
  memset(longp, 'a', TT_FILE_PATH_MAX + 1);
  longp[TT_FILE_PATH_MAX + 1] = 0;
  assert_false(tt_xfer_path_ok(tt_text(longp), why, sizeof(why)));
  longp[300] = 0;
  assert_false(tt_xfer_path_ok(tt_text(longp), why, sizeof(why))); /* one name over NAME_MAX */
  free(longp);
}

static void keep_cb(uv_prepare_t *h) { (void)h; }

static int setup(void **state) {
  (void)state;
  snprintf(g_dir, sizeof(g_dir), "/tmp/tt-xfer-XXXXXX");
  assert_non_null(mkdtemp(g_dir));
  g_loop = uv_default_loop();
  /* The pool's wake-up handle does not keep a loop alive; a program's connections do. */
  static uv_prepare_t keep;
  uv_prepare_init(g_loop, &keep);
  uv_prepare_start(&keep, keep_cb);
  return tt_xfer_pool_start(g_loop, 2, NULL, NULL);
}

static void close_walk(uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h)) uv_close(h, NULL);
}

static int teardown(void **state) {
  (void)state;
  tt_xfer_pool_stop();
  uv_walk(g_loop, close_walk, NULL);
  uv_run(g_loop, UV_RUN_DEFAULT);
  char cmd[300];
  snprintf(cmd, sizeof(cmd), "rm -rf %s", g_dir);
  return system(cmd) == 0 ? 0 : -1;
}

/* File work runs below the loop's priority, so a busy machine serves keystrokes first. */
static int g_job_nice, g_job_done;
static void nice_work(void *arg) {
  (void)arg;
  errno = 0;
  g_job_nice = getpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid));
}
static void nice_done(void *arg) {
  (void)arg;
  g_job_done = 1;
}

static void deadline_cb(uv_timer_t *t) { *(int *)t->data = 1; }

static void test_pool_yields_to_loop(void **state) {
  (void)state;
  errno = 0;
  int loop_nice = getpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid));
  g_job_done = 0;
  assert_int_equal(tt_xfer_pool_submit(nice_work, nice_done, NULL), 0);
  /* The job's completion wakes the loop; a deadline ends the wait if it never comes. */
  uv_timer_t deadline;
  int expired = 0;
  uv_timer_init(g_loop, &deadline);
  deadline.data = &expired;
  uv_timer_start(&deadline, deadline_cb, 10000, 0);
  while (!g_job_done && !expired) uv_run(g_loop, UV_RUN_ONCE);
  uv_timer_stop(&deadline);
  uv_close((uv_handle_t *)&deadline, NULL);
  uv_run(g_loop, UV_RUN_NOWAIT);
  assert_true(g_job_done);
  assert_true(g_job_nice > loop_nice);
}

/* The compression level: a wire that waits for chunks lowers it; a slow link (compressing a
 * chunk takes a small share of the time a chunk spends on the wire) raises it; a fast link
 * where compressing takes most of that time lowers it, even though chunks wait for the wire
 * (loopback, where the compressor and the wire share the CPU: the old rule raised it there). */
static void test_level_adapts(void **state) {
  (void)state;
  const int levels = 5;
  xfer_adapt_t a;
  xfer_adapt_init(&a, 2);
  uint64_t t = 1000000000;
  /* A 25 MB/s link: a 1 MiB chunk leaves every 40 ms; compressing it takes 2 ms. */
  for (int i = 0; i < 40; i++) {
    xfer_adapt_sent(&a, t += 40000000);
    (void)xfer_adapt(&a, true, 2000000, levels);
  }
  assert_int_equal(a.level, levels - 1);
  /* Loopback: a chunk every 5 ms and compressing it takes 3 ms: down, chunks waiting or not. */
  for (int i = 0; i < 60; i++) {
    xfer_adapt_sent(&a, t += 5000000);
    (void)xfer_adapt(&a, true, 3000000, levels);
  }
  assert_int_equal(a.level, 0);
  /* In between (a third of the wire's time): it stays. */
  xfer_adapt_init(&a, 2);
  for (int i = 0; i < 40; i++) {
    xfer_adapt_sent(&a, t += 9000000);
    (void)xfer_adapt(&a, true, 3000000, levels);
  }
  assert_int_equal(a.level, 2);
  /* Raw chunks say nothing about compression: it stays. */
  for (int i = 0; i < 40; i++) {
    xfer_adapt_sent(&a, t += 40000000);
    (void)xfer_adapt(&a, true, 0, levels);
  }
  assert_int_equal(a.level, 2);
  /* The wire waiting for the sender lowers it whatever the share; one hiccup does not. */
  (void)xfer_adapt(&a, false, 1000, levels);
  assert_int_equal(a.level, 2);
  for (int i = 0; i < 20; i++) (void)xfer_adapt(&a, false, 1000, levels);
  assert_int_equal(a.level, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_path_checks),
      cmocka_unit_test(test_push_pull_sizes),
      cmocka_unit_test(test_exists_needs_force),
      cmocka_unit_test(test_resume_after_cut),
      cmocka_unit_test(test_resume_source_changed),
      cmocka_unit_test(test_bad_chunk_refused),
      cmocka_unit_test(test_credit_back_dropped_chunks),
      cmocka_unit_test(test_refusal_text_whole),
      cmocka_unit_test(test_stop_while_opening),
      cmocka_unit_test(test_stream_before_request),
      cmocka_unit_test(test_stop_while_finishing),
      cmocka_unit_test(test_readahead_room_after_send),
      cmocka_unit_test(test_level_adapts),
      cmocka_unit_test(test_pool_yields_to_loop),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
