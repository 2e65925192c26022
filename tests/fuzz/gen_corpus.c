/* Writes the fuzzers' seed corpus: valid frame streams, control bodies, zstd chunks and file
 * channel exchanges, made with the real encoders so the seeds follow the code, texts
 * with secrets for redaction, and release manifests signed by the fuzz key, checked with the
 * real verifier. Usage: gen_corpus DIR; the seeds land in DIR/frame, DIR/msg, DIR/zstd,
 * DIR/files, DIR/redact, DIR/checks and DIR/release. Nothing binary is kept in the repository. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zstd.h>
#include <openssl/evp.h>
#include "fuzz_files.h"
#include "fuzz_release.h"
#include "tt/frame.h"
#include "tt/limits.h"
#include "tt/msg.h"
#include "tt/release.h"
#include "tt/xfer.h"
#include "tt/zstd.h"

/* The PEM key label, spelled in two pieces so that no tracked file holds a key marker: the PEM texts
 * below are made-up bodies, and a key scanner should find none here. */
#define PK "PRIV" "ATE KEY"

/* fuzz_frame's mode byte (see fuzz_frame.c). */
enum {
  FZ_WHOLE = 0x0f,
  FZ_ODD = 0x10,
  FZ_OPEN_FIRST = 0x20,
  FZ_CLOSE_ON_EOF = 0x40,
  FZ_ECHO = 0x80,
};

/* fuzz_msg's kind table, in its order: byte 0 of a seed is the index. */
static const uint8_t msg_kinds[] = {
    TT_K_HELLO,   TT_K_WELCOME,   TT_K_ERROR,     TT_K_PING,     TT_K_PONG,
    TT_K_CH_OPEN, TT_K_CH_ACCEPT, TT_K_CH_REJECT, TT_K_CH_CLOSE, TT_K_WINDOW,
    TT_K_REQUEST, TT_K_RESPONSE,  TT_K_DATA,
};

static const char *g_dir;
static int g_failed;

static void fail(const char *what, int rc) {
  fprintf(stderr, "gen_corpus: %s: %s\n", what, tt_strerror(rc));
  exit(1);
}

static void mkdir_p(const char *path) {
  if (mkdir(path, 0755) && errno != EEXIST) {
    fprintf(stderr, "gen_corpus: mkdir %s: %s\n", path, strerror(errno));
    exit(1);
  }
}

static void put(const char *sub, const char *name, const void *p, size_t n) {
  char path[4096];
  snprintf(path, sizeof(path), "%s/%s/%s", g_dir, sub, name);
  FILE *f = fopen(path, "wb");
  if (!f || (n && fwrite(p, 1, n, f) != n) || fclose(f)) {
    fprintf(stderr, "gen_corpus: write %s: %s\n", path, strerror(errno));
    g_failed = 1;
  }
}

/* A frame stream under construction: fuzz_frame's two leading bytes, then frames. */
typedef struct {
  tt_buf_t b;
} stream_t;

static void stream_init(stream_t *s, uint8_t mode, uint8_t seed) {
  tt_buf_init(&s->b, 1u << 20);
  uint8_t pre[2] = {mode, seed};
  if (tt_buf_append(&s->b, pre, sizeof(pre))) fail("stream", TT_EFULL);
}

static void stream_msg(stream_t *s, uint8_t kind, uint32_t ch, const ProtobufCMessage *m) {
  int rc = tt_msg_encode(&s->b, kind, ch, m);
  if (rc) fail("encode", rc);
}

static void stream_data(stream_t *s, uint32_t ch, uint8_t flags, const void *p, size_t n) {
  uint8_t hdr[TT_FRAME_HDR];
  tt_frame_header_encode(hdr, TT_K_DATA, flags, ch, (uint32_t)n);
  if (tt_buf_append(&s->b, hdr, sizeof(hdr)) || tt_buf_append(&s->b, p, n))
    fail("stream", TT_EFULL);
}

static void stream_put(stream_t *s, const char *name) {
  put("frame", name, tt_buf_head(&s->b), s->b.len);
  tt_buf_free(&s->b);
}

/* A control body for fuzz_msg: kind index, budget bit, then the packed message. */
static void msg_put(const char *name, uint8_t kind, bool preauth, const ProtobufCMessage *m) {
  uint8_t idx = 0;
  while (msg_kinds[idx] != kind) idx++;
  size_t n = protobuf_c_message_get_packed_size(m);
  uint8_t *p = malloc(1 + n);
  if (!p) fail("malloc", TT_ENOMEM);
  p[0] = (uint8_t)(idx | (preauth ? 0x80 : 0));
  protobuf_c_message_pack(m, p + 1);
  put("msg", name, p, 1 + n);
  free(p);
}

static const char k_text[] =
    "Tether carries a technician's keystrokes and a device's screen over one TLS link; "
    "frames of every channel share it, interactive ones first. ";

/* Compressible filler of n bytes. */
static void fill_text(uint8_t *p, size_t n) {
  for (size_t i = 0; i < n; i++) p[i] = (uint8_t)k_text[i % (sizeof(k_text) - 1)];
}

/* One zstd frame of p without a content size: only a peer's encoder makes those. */
static size_t zstd_unsized(const uint8_t *p, size_t n, uint8_t *out, size_t cap) {
  ZSTD_CCtx *c = ZSTD_createCCtx();
  if (!c) fail("zstd", TT_ENOMEM);
  if (ZSTD_isError(ZSTD_CCtx_setParameter(c, ZSTD_c_contentSizeFlag, 0)) ||
      ZSTD_isError(ZSTD_CCtx_setParameter(c, ZSTD_c_checksumFlag, 1)))
    fail("zstd parameters", TT_EZSTD);
  ZSTD_inBuffer in = {p, n, 0};
  ZSTD_outBuffer o = {out, cap, 0};
  size_t r = ZSTD_compressStream2(c, &o, &in, ZSTD_e_end);
  ZSTD_freeCCtx(c);
  if (ZSTD_isError(r) || r != 0) fail("zstd unsized", TT_EZSTD);
  return o.pos;
}

static void gen_frames(const uint8_t *zchunk, size_t zlen) {
  Tether__Hello hello = TETHER__HELLO__INIT;
  hello.proto_version = TT_PROTO_VERSION;
  hello.role = TETHER__ROLE__ROLE_AGENT;
  hello.software_version = tt_text("0.1.0");
  hello.hostname = tt_text("build-host-01");
  hello.capabilities = TETHER__CAPABILITY__CAP_ZSTD | TETHER__CAPABILITY__CAP_ECHO;
  Tether__Ping ping = TETHER__PING__INIT;
  ping.nonce = 0x0123456789abcdefull;
  Tether__ChannelOpen open = TETHER__CHANNEL_OPEN__INIT;
  open.kind = TETHER__CHANNEL_KIND__CHANNEL_ECHO;
  open.window = TT_WINDOW_DEFAULT;
  open.compression = TETHER__CAPABILITY__CAP_ZSTD;
  open.requester = tt_text("alice@example.org");
  Tether__ChannelOpen bulk = open;
  bulk.kind = TETHER__CHANNEL_KIND__CHANNEL_THROUGHPUT;
  bulk.priority = TETHER__PRIORITY__PRIORITY_BULK;
  bulk.bytes = 1u << 20;
  Tether__WindowAdjust win = TETHER__WINDOW_ADJUST__INIT;
  win.bytes = 4096;
  Tether__ChannelClose close = TETHER__CHANNEL_CLOSE__INIT;
  close.message = tt_text("bye");
  Tether__ChannelAccept accept = TETHER__CHANNEL_ACCEPT__INIT;
  accept.window = TT_WINDOW_DEFAULT;
  Tether__ChannelReject reject = TETHER__CHANNEL_REJECT__INIT;
  reject.code = TETHER__ERROR_CODE__ERR_UNAVAILABLE;
  reject.message = tt_text("device offline");
  uint8_t text[2048];
  fill_text(text, sizeof(text));

  stream_t s;
  stream_init(&s, FZ_WHOLE, 0);
  stream_msg(&s, TT_K_HELLO, 0, &hello.base);
  stream_msg(&s, TT_K_PING, 0, &ping.base);
  stream_put(&s, "hello_ping");

  stream_init(&s, 0x03, 7); /* pieces of 1..8 bytes */
  stream_msg(&s, TT_K_HELLO, 0, &hello.base);
  stream_msg(&s, TT_K_PING, 0, &ping.base);
  stream_msg(&s, TT_K_PING, 0, &ping.base);
  stream_put(&s, "hello_ping_split");

  /* We accepted the connection: the peer opens odd ids. */
  stream_init(&s, FZ_WHOLE | FZ_ECHO | FZ_CLOSE_ON_EOF, 0);
  stream_msg(&s, TT_K_HELLO, 0, &hello.base);
  stream_msg(&s, TT_K_CH_OPEN, 1, &open.base);
  stream_data(&s, 1, 0, "hello, echo", 11);
  stream_msg(&s, TT_K_WINDOW, 1, &win.base);
  stream_data(&s, 1, TT_FF_EOF, text, sizeof(text));
  stream_msg(&s, TT_K_CH_CLOSE, 1, &close.base);
  stream_put(&s, "open_data_echo");

  stream_init(&s, 0x07, 42);
  stream_msg(&s, TT_K_HELLO, 0, &hello.base);
  stream_msg(&s, TT_K_CH_OPEN, 1, &open.base);
  stream_msg(&s, TT_K_CH_OPEN, 3, &bulk.base);
  stream_data(&s, 1, TT_FF_ZSTD, zchunk, zlen);
  stream_data(&s, 3, 0, text, sizeof(text));
  stream_data(&s, 3, TT_FF_EOF, NULL, 0);
  stream_msg(&s, TT_K_CH_CLOSE, 3, &close.base);
  stream_msg(&s, TT_K_CH_CLOSE, 1, &close.base);
  stream_put(&s, "two_channels_split");

  /* We connected and opened channel 1 ourselves; the peer answers. */
  stream_init(&s, FZ_WHOLE | FZ_ODD | FZ_OPEN_FIRST | FZ_ECHO, 0);
  stream_msg(&s, TT_K_HELLO, 0, &hello.base);
  stream_msg(&s, TT_K_CH_ACCEPT, 1, &accept.base);
  stream_data(&s, 1, 0, text, 512);
  stream_msg(&s, TT_K_WINDOW, 1, &win.base);
  stream_msg(&s, TT_K_CH_OPEN, 2, &open.base);
  stream_msg(&s, TT_K_CH_CLOSE, 1, &close.base);
  stream_put(&s, "our_open_accepted");

  stream_init(&s, FZ_WHOLE | FZ_ODD | FZ_OPEN_FIRST, 0);
  stream_msg(&s, TT_K_HELLO, 0, &hello.base);
  stream_msg(&s, TT_K_CH_REJECT, 1, &reject.base);
  stream_put(&s, "our_open_rejected");

  /* A listing, as the broker sends it to a console. */
  Tether__DeviceInfo d1 = TETHER__DEVICE_INFO__INIT, d2 = TETHER__DEVICE_INFO__INIT;
  d1.device_id = tt_text("dev-0001");
  d1.hostname = tt_text("reception-pc");
  d1.address = tt_text("192.0.2.10:50512");
  d1.connected_since_ms = 1700000000000ull;
  d1.agent_version = tt_text("0.1.0");
  d2.device_id = tt_text("dev-0002");
  d2.hostname = tt_text("caf\xc3\xa9-\xe6\x9c\xba\xe5\x99\xa8"); /* UTF-8 */
  d2.address = tt_text("[2001:db8::7]:443");
  d2.agent_version = tt_text("0.0.9");
  Tether__DeviceInfo *devs[] = {&d1, &d2};
  Tether__DeviceList list = TETHER__DEVICE_LIST__INIT;
  list.n_devices = 2;
  list.devices = devs;
  list.total = 2;
  Tether__Response resp = TETHER__RESPONSE__INIT;
  resp.id = 7;
  resp.body_case = TETHER__RESPONSE__BODY_DEVICES;
  resp.devices = &list;
  stream_init(&s, FZ_WHOLE | FZ_ODD, 0);
  stream_msg(&s, TT_K_HELLO, 0, &hello.base);
  stream_msg(&s, TT_K_RESPONSE, 0, &resp.base);
  stream_put(&s, "response_devices");

  /* One open more than the table holds: the last is refused, not an error. */
  stream_init(&s, FZ_WHOLE, 0);
  stream_msg(&s, TT_K_HELLO, 0, &hello.base);
  for (uint32_t i = 0; i <= TT_CHANNELS_MAX; i++) stream_msg(&s, TT_K_CH_OPEN, 2 * i + 1, &open.base);
  stream_msg(&s, TT_K_CH_CLOSE, 1, &close.base);
  stream_put(&s, "channels_full");

  /* Small windows (seed bit 7): consuming half of one sends a WINDOW back. */
  stream_init(&s, FZ_WHOLE | FZ_ECHO, 0x80);
  stream_msg(&s, TT_K_HELLO, 0, &hello.base);
  stream_msg(&s, TT_K_CH_OPEN, 1, &open.base);
  stream_data(&s, 1, 0, text, 1500);
  stream_data(&s, 1, 0, text, 1500);
  stream_data(&s, 1, 0, text, 1500);
  stream_data(&s, 1, TT_FF_EOF, text, 1500);
  stream_put(&s, "small_window_grant");

  /* Before Hello: a small body that unpacks past the pre-authentication budget. */
  static Tether__DeviceInfo *many[1500];
  Tether__DeviceInfo empty = TETHER__DEVICE_INFO__INIT;
  for (size_t i = 0; i < sizeof(many) / sizeof(many[0]); i++) many[i] = &empty;
  Tether__DeviceList biglist = TETHER__DEVICE_LIST__INIT;
  biglist.n_devices = sizeof(many) / sizeof(many[0]);
  biglist.devices = many;
  Tether__Response bigresp = TETHER__RESPONSE__INIT;
  bigresp.body_case = TETHER__RESPONSE__BODY_DEVICES;
  bigresp.devices = &biglist;
  stream_init(&s, FZ_WHOLE, 0);
  stream_msg(&s, TT_K_RESPONSE, 0, &bigresp.base);
  stream_put(&s, "preauth_budget");

  Tether__Error err = TETHER__ERROR__INIT;
  err.code = TETHER__ERROR_CODE__ERR_BUSY;
  err.message = tt_text("try later");
  err.retry_after_ms = 5000;
  stream_init(&s, FZ_WHOLE, 0);
  stream_msg(&s, TT_K_HELLO, 0, &hello.base);
  stream_msg(&s, TT_K_ERROR, 0, &err.base);
  stream_put(&s, "error");
}

static void gen_msgs(void) {
  Tether__Hello hello = TETHER__HELLO__INIT;
  hello.proto_version = TT_PROTO_VERSION;
  hello.role = TETHER__ROLE__ROLE_TECHNICIAN;
  hello.software_version = tt_text("0.1.0");
  hello.hostname = tt_text("laptop-\xc3\xa9");
  hello.capabilities = TETHER__CAPABILITY__CAP_ZSTD;
  msg_put("hello", TT_K_HELLO, true, &hello.base);

  Tether__Welcome welcome = TETHER__WELCOME__INIT;
  welcome.proto_version = TT_PROTO_VERSION;
  welcome.broker_version = tt_text("0.1.0");
  welcome.capabilities = TETHER__CAPABILITY__CAP_ZSTD;
  welcome.heartbeat_ms = 15000;
  welcome.idle_timeout_ms = 45000;
  welcome.identity = tt_text("dev-0001");
  msg_put("welcome", TT_K_WELCOME, false, &welcome.base);

  Tether__Error err = TETHER__ERROR__INIT;
  err.code = TETHER__ERROR_CODE__ERR_TOO_BIG;
  err.message = tt_text("size exceeds limit");
  msg_put("error", TT_K_ERROR, true, &err.base);

  Tether__Ping ping = TETHER__PING__INIT;
  ping.nonce = 99;
  msg_put("ping", TT_K_PING, false, &ping.base);
  msg_put("pong", TT_K_PONG, false, &ping.base); /* same wire shape */

  Tether__ChannelOpen open = TETHER__CHANNEL_OPEN__INIT;
  open.kind = TETHER__CHANNEL_KIND__CHANNEL_THROUGHPUT;
  open.device = tt_text("dev-0002");
  open.window = TT_WINDOW_DEFAULT;
  open.priority = TETHER__PRIORITY__PRIORITY_BULK;
  open.compression = TETHER__CAPABILITY__CAP_ZSTD;
  open.bytes = 1u << 24;
  open.requester = tt_text("bob");
  msg_put("ch_open", TT_K_CH_OPEN, false, &open.base);

  Tether__ChannelAccept accept = TETHER__CHANNEL_ACCEPT__INIT;
  accept.window = TT_WINDOW_MAX;
  accept.compression = TETHER__CAPABILITY__CAP_ZSTD;
  msg_put("ch_accept", TT_K_CH_ACCEPT, false, &accept.base);

  Tether__ChannelReject reject = TETHER__CHANNEL_REJECT__INIT;
  reject.code = TETHER__ERROR_CODE__ERR_DENIED;
  reject.message = tt_text("access denied");
  msg_put("ch_reject", TT_K_CH_REJECT, false, &reject.base);

  Tether__ChannelClose close = TETHER__CHANNEL_CLOSE__INIT;
  close.code = TETHER__ERROR_CODE__ERR_CLOSED;
  close.message = tt_text("peer went away");
  msg_put("ch_close", TT_K_CH_CLOSE, false, &close.base);

  Tether__WindowAdjust win = TETHER__WINDOW_ADJUST__INIT;
  win.bytes = 131072;
  msg_put("window", TT_K_WINDOW, false, &win.base);

  Tether__DeviceListRequest dlr = TETHER__DEVICE_LIST_REQUEST__INIT;
  dlr.offset = 0;
  dlr.limit = TT_DEVICE_PAGE_MAX;
  Tether__Request req = TETHER__REQUEST__INIT;
  req.id = 1;
  req.body_case = TETHER__REQUEST__BODY_DEVICES;
  req.devices = &dlr;
  msg_put("request", TT_K_REQUEST, false, &req.base);

  Tether__DeviceInfo d[3] = {TETHER__DEVICE_INFO__INIT, TETHER__DEVICE_INFO__INIT,
                             TETHER__DEVICE_INFO__INIT};
  Tether__DeviceInfo *devs[3];
  static const char *const ids[] = {"dev-a", "dev-b", "dev-\xf0\x9f\x96\xa5"};
  for (int i = 0; i < 3; i++) {
    d[i].device_id = tt_text(ids[i]);
    d[i].hostname = tt_text("host");
    d[i].address = tt_text("198.51.100.4:1234");
    d[i].connected_since_ms = 1700000000000ull + (uint64_t)i;
    d[i].agent_version = tt_text("0.1.0");
    devs[i] = &d[i];
  }
  Tether__DeviceList list = TETHER__DEVICE_LIST__INIT;
  list.n_devices = 3;
  list.devices = devs;
  list.total = 1000;
  Tether__Response resp = TETHER__RESPONSE__INIT;
  resp.id = 1;
  resp.body_case = TETHER__RESPONSE__BODY_DEVICES;
  resp.devices = &list;
  msg_put("response_devices", TT_K_RESPONSE, false, &resp.base);

  Tether__Response fail_resp = TETHER__RESPONSE__INIT;
  fail_resp.id = 2;
  fail_resp.error = &err;
  msg_put("response_error", TT_K_RESPONSE, false, &fail_resp.base);

  /* In-band channel control (fuzz_msg reads a DATA seed as one ChannelControl). */
  Tether__TermSize ts = TETHER__TERM_SIZE__INIT;
  ts.cols = 120;
  ts.rows = 40;
  Tether__ChannelControl cc = TETHER__CHANNEL_CONTROL__INIT;
  cc.body_case = TETHER__CHANNEL_CONTROL__BODY_RESIZE;
  cc.resize = &ts;
  msg_put("ctrl_resize", TT_K_DATA, false, &cc.base);
  Tether__ExitStatus es = TETHER__EXIT_STATUS__INIT;
  es.code = 3;
  cc.body_case = TETHER__CHANNEL_CONTROL__BODY_EXIT;
  cc.exit = &es;
  msg_put("ctrl_exit", TT_K_DATA, false, &cc.base);
  cc.body_case = TETHER__CHANNEL_CONTROL__BODY_SIGNAL;
  cc.signal = 2;
  msg_put("ctrl_signal", TT_K_DATA, false, &cc.base);
  cc.body_case = TETHER__CHANNEL_CONTROL__BODY_STDERR;
  cc.stderr = tt_text("ls: cannot access 'x': No such file or directory\n");
  msg_put("ctrl_stderr", TT_K_DATA, false, &cc.base);
}

/* Returns one compressed chunk of text for the frame seeds. */
static size_t gen_zstd(uint8_t *zchunk, size_t zcap) {
  static uint8_t text[TT_DATA_CHUNK_MAX + 4096], out[TT_DATA_CHUNK_MAX + 4096];
  static const int levels[] = {1, 3, 19};
  static const size_t sizes[] = {64, 2048, TT_DATA_CHUNK_MAX};
  fill_text(text, sizeof(text));
  size_t zlen = 0;
  char name[64];
  for (size_t li = 0; li < sizeof(levels) / sizeof(levels[0]); li++) {
    tt_zstd_t *z;
    int rc = tt_zstd_new_compressor(&z, levels[li]);
    if (rc) fail("zstd compressor", rc);
    for (size_t si = 0; si < sizeof(sizes) / sizeof(sizes[0]); si++) {
      size_t n;
      bool compressed;
      rc = tt_zstd_compress(z, text, sizes[si], out, tt_zstd_bound(sizes[si]), &n, &compressed);
      if (rc) fail("zstd compress", rc);
      snprintf(name, sizeof(name), "l%d_%zu%s", levels[li], sizes[si], compressed ? "" : "_raw");
      put("zstd", name, out, n);
      if (compressed && sizes[si] == 2048 && !zlen && n <= zcap) {
        memcpy(zchunk, out, n);
        zlen = n;
      }
    }
    tt_zstd_free(z);
  }
  /* No content size: the streaming guard, within and past the cap. */
  put("zstd", "unsized_2048", out, zstd_unsized(text, 2048, out, sizeof(out)));
  put("zstd", "unsized_over_cap", out, zstd_unsized(text, sizeof(text), out, sizeof(out)));
  /* Incompressible: goes raw on our side, is garbage on the peer's. */
  uint32_t x = 2463534242u;
  for (size_t i = 0; i < 1024; i++) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    text[i] = (uint8_t)x;
  }
  put("zstd", "random_1024", text, 1024);
  return zlen;
}

/* ---- fuzz_files: exchanges on a file channel (see fuzz_files.h) ------------------------ */

typedef struct {
  tt_buf_t b;
} fseed_t;

static void fs_init(fseed_t *s, uint8_t mode) {
  tt_buf_init(&s->b, 8u << 20);
  if (tt_buf_append(&s->b, &mode, 1)) fail("seed", TT_EFULL);
}

static void fs_bytes(fseed_t *s, const void *p, size_t n) {
  if (tt_buf_append(&s->b, p, n)) fail("seed", TT_EFULL);
}

static void fs_op(fseed_t *s, uint8_t op) { fs_bytes(s, &op, 1); }

static void fs_body(fseed_t *s, uint8_t op, const void *p, size_t n) {
  if (n > TT_DATA_CHUNK_MAX) fail("seed body", TT_ETOOBIG);
  uint8_t h[3] = {op, (uint8_t)(n >> 8), (uint8_t)n};
  fs_bytes(s, h, 3);
  fs_bytes(s, p, n);
}

/* A FileCtl as the peer sends it; settle: let the engine act on it before the next. */
static void fs_ctl(fseed_t *s, const Tether__FileCtl *m, bool settle) {
  Tether__ChannelControl cc = TETHER__CHANNEL_CONTROL__INIT;
  cc.body_case = TETHER__CHANNEL_CONTROL__BODY_FILE;
  cc.file = (Tether__FileCtl *)m;
  uint8_t buf[TT_DATA_CHUNK_MAX];
  size_t n = protobuf_c_message_get_packed_size(&cc.base);
  if (n > sizeof(buf)) fail("seed control", TT_ETOOBIG);
  protobuf_c_message_pack(&cc.base, buf);
  fs_body(s, (uint8_t)(FZF_R_CTRL | (settle ? FZF_R_SETTLE_AFTER : 0)), buf, n);
}

/* Chunk bytes, in DATA frames of at most TT_DATA_CHUNK_MAX. */
static void fs_data(fseed_t *s, const uint8_t *p, size_t n) {
  while (n) {
    size_t k = n < TT_DATA_CHUNK_MAX ? n : TT_DATA_CHUNK_MAX;
    fs_body(s, FZF_R_DATA, p, k);
    p += k;
    n -= k;
  }
}

static void fs_fill(fseed_t *s, uint8_t v, uint32_t n) {
  uint8_t h[5] = {FZF_R_FILL, v, (uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n};
  fs_bytes(s, h, 5);
}

static void fs_put(fseed_t *s, const char *name) {
  put("files", name, tt_buf_head(&s->b), s->b.len);
  tt_buf_free(&s->b);
}

static void sha256(const void *p, size_t n, uint8_t out[32]) {
  unsigned len = 32;
  EVP_Digest(p, n, out, &len, EVP_sha256(), NULL);
}

/* A file the peer sends: its bytes, one chunk (the seeds' files are small). */
typedef struct {
  uint8_t *p;
  size_t n;
  uint8_t sha[32];
  uint32_t id;
} ffile_t;

static Tether__FileStat fstat_of(size_t n) {
  Tether__FileStat st = TETHER__FILE_STAT__INIT;
  st.kind = TETHER__FILE_KIND__FILE_KIND_REGULAR;
  st.size = n;
  st.mtime_ns = (int64_t)FZF_MTIME_S * 1000000000 + FZF_MTIME_NS;
  st.mode = FZF_MODE;
  return st;
}

static void ctl_begin(fseed_t *s, uint32_t id, size_t size, uint64_t from, const char *path, bool settle) {
  Tether__FileStat st = fstat_of(size);
  Tether__FileCtl m = TETHER__FILE_CTL__INIT;
  m.type = TETHER__FILE_MSG_TYPE__FILE_BEGIN;
  m.id = id;
  m.path = tt_text(path);
  m.stat = &st;
  m.from_chunk = from;
  m.chunk_size = TT_FILE_CHUNK;
  fs_ctl(s, &m, settle);
}

static void ctl_chunk(fseed_t *s, uint32_t id, uint64_t index, uint32_t raw, uint32_t wire, uint32_t codec,
                      const uint8_t sha[32]) {
  Tether__FileCtl m = TETHER__FILE_CTL__INIT;
  m.type = TETHER__FILE_MSG_TYPE__FILE_CHUNK;
  m.id = id;
  m.index = index;
  m.raw_len = raw;
  m.wire_len = wire;
  m.codec = codec;
  m.sha256.data = (uint8_t *)sha;
  m.sha256.len = 32;
  fs_ctl(s, &m, false);
}

static void ctl_end(fseed_t *s, uint32_t id, size_t size, const uint8_t sha[32], bool settle) {
  Tether__FileStat st = TETHER__FILE_STAT__INIT;
  st.size = size;
  Tether__FileCtl m = TETHER__FILE_CTL__INIT;
  m.type = TETHER__FILE_MSG_TYPE__FILE_END;
  m.id = id;
  m.stat = &st;
  m.sha256.data = (uint8_t *)sha;
  m.sha256.len = 32;
  fs_ctl(s, &m, settle);
}

/* BEGIN, one chunk (zstd when zcodec), END. */
static void send_file(fseed_t *s, const ffile_t *f, bool zcodec, bool settle) {
  ctl_begin(s, f->id, f->n, 0, "f", false);
  if (f->n) {
    static uint8_t z[TT_FILE_CHUNK];
    size_t zn = 0;
    if (zcodec) {
      zn = ZSTD_compress(z, sizeof(z), f->p, f->n, 3);
      if (ZSTD_isError(zn) || zn >= f->n) fail("seed zstd", TT_EZSTD);
    }
    ctl_chunk(s, f->id, 0, (uint32_t)f->n, (uint32_t)(zcodec ? zn : f->n), zcodec, f->sha);
    fs_data(s, zcodec ? z : f->p, zcodec ? zn : f->n);
  }
  ctl_end(s, f->id, f->n, f->sha, settle);
}

static void ctl_req(fseed_t *s, Tether__FileMsgType type, uint32_t id, const void *path, size_t plen, size_t size,
                    bool force, bool settle) {
  Tether__FileStat st = fstat_of(size);
  Tether__FileCtl m = TETHER__FILE_CTL__INIT;
  m.type = type;
  m.id = id;
  m.path.data = (uint8_t *)path;
  m.path.len = plen;
  m.force = force;
  if (type == TETHER__FILE_MSG_TYPE__FILE_PUT || type == TETHER__FILE_MSG_TYPE__FILE_MKDIR) m.stat = &st;
  m.recursive = type == TETHER__FILE_MSG_TYPE__FILE_LIST;
  fs_ctl(s, &m, settle);
}

static void ctl_path(fseed_t *s, Tether__FileMsgType type, uint32_t id, const char *path, size_t size, bool settle) {
  ctl_req(s, type, id, path, strlen(path), size, false, settle);
}

static void ctl_done(fseed_t *s, uint32_t id, size_t size, const uint8_t sha[32], int32_t code, bool settle) {
  Tether__FileStat st = TETHER__FILE_STAT__INIT;
  st.size = size;
  Tether__FileCtl m = TETHER__FILE_CTL__INIT;
  m.type = TETHER__FILE_MSG_TYPE__FILE_DONE;
  m.id = id;
  m.stat = &st;
  m.sha256.data = (uint8_t *)sha;
  m.sha256.len = 32;
  m.code = code;
  if (code) m.message = tt_text("the disk is full");
  fs_ctl(s, &m, settle);
}

static void ctl_simple(fseed_t *s, Tether__FileMsgType type, uint32_t id, bool settle) {
  Tether__FileCtl m = TETHER__FILE_CTL__INIT;
  m.type = type;
  m.id = id;
  if (type == TETHER__FILE_MSG_TYPE__FILE_ERROR) {
    m.code = TETHER__ERROR_CODE__ERR_NOT_FOUND;
    m.message = tt_text("no such file");
  }
  fs_ctl(s, &m, settle);
}

static void gen_files(void) {
  static uint8_t text[4096], big[TT_FILE_CHUNK];
  fzf_content(text, sizeof(text), 99);
  ffile_t small = {text, 1500, {0}, 1};
  sha256(small.p, small.n, small.sha);
  /* The tree's files, as the engine will send them. */
  uint8_t a[100], push[2500], sha_a[32], sha_push[32];
  fzf_content(a, sizeof(a), 0);
  sha256(a, sizeof(a), sha_a);
  fzf_content(push, sizeof(push), FZF_PUSH_SRC);
  sha256(push, sizeof(push), sha_push);
  uint8_t zero[32] = {0};
  fseed_t s;

  /* ---- the agent serves ---- */
  fs_init(&s, 0); /* a well-formed pull: GET, the engine sends, the peer says DONE */
  ctl_path(&s, TETHER__FILE_MSG_TYPE__FILE_GET, 1, "a.txt", 0, true);
  ctl_done(&s, 1, sizeof(a), sha_a, 0, true);
  fs_put(&s, "serve_get");

  fs_init(&s, 0); /* a well-formed push: PUT, BEGIN, CHUNK and bytes, END */
  ctl_path(&s, TETHER__FILE_MSG_TYPE__FILE_PUT, 1, "new.txt", small.n, true);
  send_file(&s, &small, false, true);
  fs_put(&s, "serve_put");

  fs_init(&s, FZF_MODE_WALK); /* the same, its chunk compressed, into a subdirectory */
  ctl_path(&s, TETHER__FILE_MSG_TYPE__FILE_PUT, 1, "sub/z.txt", small.n, true);
  send_file(&s, &small, true, true);
  fs_put(&s, "serve_put_zstd_walk");

  fs_init(&s, 0); /* LIST and MKDIR, inside the root and out of it */
  ctl_path(&s, TETHER__FILE_MSG_TYPE__FILE_LIST, 1, ".", 0, false);
  ctl_path(&s, TETHER__FILE_MSG_TYPE__FILE_LIST, 2, "esc", 0, false);
  ctl_path(&s, TETHER__FILE_MSG_TYPE__FILE_MKDIR, 3, "newdir", 0755, false);
  ctl_path(&s, TETHER__FILE_MSG_TYPE__FILE_MKDIR, 4, "esc/evil", 0755, false);
  ctl_path(&s, TETHER__FILE_MSG_TYPE__FILE_MKDIR, 5, "ro/nope", 0755, true);
  fs_put(&s, "serve_list_mkdir");

  fs_init(&s, 0); /* a chunk whose sha256 is wrong */
  ctl_path(&s, TETHER__FILE_MSG_TYPE__FILE_PUT, 1, "bad.txt", small.n, true);
  ctl_begin(&s, 1, small.n, 0, "f", false);
  ctl_chunk(&s, 1, 0, (uint32_t)small.n, (uint32_t)small.n, 0, zero);
  fs_data(&s, small.p, small.n);
  ctl_end(&s, 1, small.n, small.sha, true);
  fs_put(&s, "serve_bad_sha");

  fs_init(&s, 0); /* a chunk past the declared size, then one longer than the file */
  ctl_path(&s, TETHER__FILE_MSG_TYPE__FILE_PUT, 1, "past.txt", small.n, true);
  ctl_begin(&s, 1, small.n, 0, "f", false);
  ctl_chunk(&s, 1, 1, 10, 10, 0, small.sha);
  fs_data(&s, small.p, 10);
  ctl_path(&s, TETHER__FILE_MSG_TYPE__FILE_PUT, 2, "past2.txt", small.n, true);
  ctl_begin(&s, 2, small.n, 0, "f", false);
  ctl_chunk(&s, 2, 0, (uint32_t)small.n + 100, (uint32_t)small.n + 100, 0, small.sha);
  fs_data(&s, small.p, small.n + 100);
  ctl_end(&s, 2, small.n, small.sha, true);
  fs_put(&s, "serve_chunk_past_size");

  fs_init(&s, 0); /* BEGIN resuming from a chunk beyond the file */
  ctl_path(&s, TETHER__FILE_MSG_TYPE__FILE_PUT, 1, "far.txt", small.n, true);
  ctl_begin(&s, 1, small.n, 7, "f", false);
  ctl_chunk(&s, 1, 7, 10, 10, 0, small.sha);
  fs_data(&s, small.p, 10);
  ctl_end(&s, 1, small.n, small.sha, true);
  fs_put(&s, "serve_offset_beyond");

  fs_init(&s, 0); /* paths with NUL and control characters, and ways out of the root */
  static const char nul[] = "a\0.txt";
  ctl_req(&s, TETHER__FILE_MSG_TYPE__FILE_GET, 1, nul, sizeof(nul) - 1, 0, false, false);
  ctl_path(&s, TETHER__FILE_MSG_TYPE__FILE_PUT, 2, "evil\n\x1b[2J.txt", 10, false);
  ctl_path(&s, TETHER__FILE_MSG_TYPE__FILE_GET, 3, "../outside/secret", 0, false);
  ctl_path(&s, TETHER__FILE_MSG_TYPE__FILE_GET, 4, "esc/secret", 0, false);
  ctl_path(&s, TETHER__FILE_MSG_TYPE__FILE_GET, 5, "esc-file", 0, false);
  ctl_path(&s, TETHER__FILE_MSG_TYPE__FILE_PUT, 6, "esc/planted", 10, false);
  ctl_path(&s, TETHER__FILE_MSG_TYPE__FILE_PUT, 7, "/etc/tether-fuzz", 10, true);
  fs_put(&s, "serve_bad_paths");

  fs_init(&s, 0); /* an overlong name and an overlong path */
  static char longp[TT_FILE_PATH_MAX + 8];
  memset(longp, 'n', 300);
  longp[300] = 0;
  ctl_path(&s, TETHER__FILE_MSG_TYPE__FILE_PUT, 1, longp, 10, false);
  memset(longp, 'n', 250);
  longp[250] = 0; /* fits NAME_MAX; its part file's name does not */
  ctl_path(&s, TETHER__FILE_MSG_TYPE__FILE_PUT, 2, longp, small.n, true);
  small.id = 2;
  send_file(&s, &small, false, true);
  small.id = 1;
  for (size_t i = 0; i < sizeof(longp) - 1; i++) longp[i] = (i % 200 == 199) ? '/' : 'd';
  longp[sizeof(longp) - 1] = 0;
  ctl_path(&s, TETHER__FILE_MSG_TYPE__FILE_LIST, 3, longp, 0, true);
  fs_put(&s, "serve_overlong");

  fs_init(&s, 0); /* a long path of three-byte characters, in the engine's own refusal */
  static char wide[800];
  size_t w = 0;
  for (int i = 0; i < 242; i++) {
    if (i % 81 == 80) {
      wide[w] = 0;
      ctl_path(&s, TETHER__FILE_MSG_TYPE__FILE_MKDIR, 1, wide, 0755, true);
      wide[w++] = '/';
    } else {
      memcpy(wide + w, "\xe2\x82\xac", 3);
      w += 3;
    }
  }
  wide[w] = 0;
  ctl_path(&s, TETHER__FILE_MSG_TYPE__FILE_PUT, 2, wide, small.n, true);
  ctl_begin(&s, 2, small.n + 1, 0, "f", true);
  fs_put(&s, "serve_wide_path");

  fs_init(&s, 0); /* duplicate ids, ids of no op, a chunk and an end for another file */
  ctl_path(&s, TETHER__FILE_MSG_TYPE__FILE_PUT, 1, "dup.txt", small.n, false);
  ctl_path(&s, TETHER__FILE_MSG_TYPE__FILE_PUT, 1, "dup2.txt", small.n, false);
  ctl_path(&s, TETHER__FILE_MSG_TYPE__FILE_GET, 1, "a.txt", 0, true);
  ctl_begin(&s, 9, small.n, 0, "f", false);
  ctl_chunk(&s, 9, 0, (uint32_t)small.n, (uint32_t)small.n, 0, small.sha);
  fs_data(&s, small.p, small.n);
  ctl_begin(&s, 1, small.n, 0, "f", false);
  ctl_chunk(&s, 3, 0, (uint32_t)small.n, (uint32_t)small.n, 0, small.sha);
  fs_data(&s, small.p, small.n);
  ctl_end(&s, 4, small.n, small.sha, false);
  ctl_done(&s, 77, small.n, small.sha, 0, false);
  ctl_simple(&s, TETHER__FILE_MSG_TYPE__FILE_ERROR, 78, false);
  ctl_simple(&s, TETHER__FILE_MSG_TYPE__FILE_READY, 1, true);
  fs_put(&s, "serve_bad_ids");

  fs_init(&s, 0); /* a file of two chunks, the first 1 MiB of one byte, raw */
  memset(big, 'x', sizeof(big));
  uint8_t sha_big[32], sha_tail[32], sha_whole[32];
  sha256(big, sizeof(big), sha_big);
  sha256(big, 10, sha_tail);
  {
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    unsigned len = 32;
    EVP_DigestInit_ex(c, EVP_sha256(), NULL);
    EVP_DigestUpdate(c, big, sizeof(big));
    EVP_DigestUpdate(c, big, 10);
    EVP_DigestFinal_ex(c, sha_whole, &len);
    EVP_MD_CTX_free(c);
  }
  ctl_path(&s, TETHER__FILE_MSG_TYPE__FILE_PUT, 1, "two.bin", TT_FILE_CHUNK + 10, true);
  ctl_begin(&s, 1, TT_FILE_CHUNK + 10, 0, "f", false);
  ctl_chunk(&s, 1, 0, TT_FILE_CHUNK, TT_FILE_CHUNK, 0, sha_big);
  fs_fill(&s, 'x', TT_FILE_CHUNK);
  ctl_chunk(&s, 1, 1, 10, 10, 0, sha_tail);
  fs_fill(&s, 'x', 10);
  ctl_end(&s, 1, TT_FILE_CHUNK + 10, sha_whole, true);
  fs_put(&s, "serve_two_chunks");

  /* The peer goes away while the file is being put in place: the pool has renamed it when
   * the channel closes, and only then does the job come back. */
  fs_init(&s, 0);
  ctl_path(&s, TETHER__FILE_MSG_TYPE__FILE_PUT, 1, "late.txt", small.n, true);
  send_file(&s, &small, false, false);
  fs_op(&s, FZF_R_WORK);  /* empty the partial */
  fs_op(&s, FZF_R_BACK);  /* then write the chunk */
  fs_op(&s, FZF_R_WORK);
  fs_op(&s, FZF_R_BACK);  /* then finish */
  fs_op(&s, FZF_R_WORK);
  fs_op(&s, FZF_R_CLOSE);
  fs_put(&s, "serve_close_while_finishing");

  fs_init(&s, FZF_MODE_FREE_FIRST); /* the link goes in the middle of a chunk */
  ctl_path(&s, TETHER__FILE_MSG_TYPE__FILE_PUT, 1, "cut.txt", small.n, true);
  ctl_begin(&s, 1, small.n, 0, "f", false);
  ctl_chunk(&s, 1, 0, (uint32_t)small.n, (uint32_t)small.n, 0, small.sha);
  fs_data(&s, small.p, 700);
  fs_op(&s, FZF_R_WORK);
  fs_op(&s, FZF_R_CLOSE | FZF_R_LINK);
  fs_put(&s, "serve_link_down");

  fs_init(&s, 0); /* channel compression and an EOF on a file channel */
  fs_body(&s, FZF_R_FLAGS | (TT_FF_ZSTD << 4), small.p, 100);
  fs_put(&s, "serve_zstd_flag");
  fs_init(&s, 0);
  ctl_path(&s, TETHER__FILE_MSG_TYPE__FILE_GET, 1, "sub/b.bin", 0, false);
  fs_body(&s, FZF_R_FLAGS | (TT_FF_EOF << 4), small.p, 0);
  fs_put(&s, "serve_eof");

  /* ---- the console asks: a pull (id 1) and a push (id 2) are out ---- */
  fs_init(&s, FZF_MODE_ASK); /* well-formed: the pull's file comes, the push goes */
  send_file(&s, &small, false, true);
  ctl_simple(&s, TETHER__FILE_MSG_TYPE__FILE_READY, FZF_PUSH_ID, true);
  ctl_done(&s, FZF_PUSH_ID, sizeof(push), sha_push, 0, true);
  fs_put(&s, "ask_pull_push");

  fs_init(&s, FZF_MODE_ASK | FZF_MODE_FORCE); /* compressed, and the push refused at the end */
  send_file(&s, &small, true, true);
  ctl_simple(&s, TETHER__FILE_MSG_TYPE__FILE_READY, FZF_PUSH_ID, true);
  ctl_done(&s, FZF_PUSH_ID, sizeof(push), zero, TETHER__ERROR_CODE__ERR_INTERNAL, true);
  fs_put(&s, "ask_zstd_refused");

  fs_init(&s, FZF_MODE_ASK); /* a wrong sha256, a DONE with a wrong one */
  ctl_begin(&s, FZF_PULL_ID, small.n, 0, "f", false);
  ctl_chunk(&s, FZF_PULL_ID, 0, (uint32_t)small.n, (uint32_t)small.n, 0, zero);
  fs_data(&s, small.p, small.n);
  ctl_end(&s, FZF_PULL_ID, small.n, small.sha, true);
  ctl_simple(&s, TETHER__FILE_MSG_TYPE__FILE_READY, FZF_PUSH_ID, true);
  ctl_done(&s, FZF_PUSH_ID, sizeof(push), zero, 0, true);
  fs_put(&s, "ask_bad_sha");

  fs_init(&s, FZF_MODE_ASK); /* a chunk past the size, a resume from beyond the file */
  ctl_begin(&s, FZF_PULL_ID, small.n, 3, "f", false);
  ctl_chunk(&s, FZF_PULL_ID, 3, 10, 10, 0, small.sha);
  fs_data(&s, small.p, 10);
  ctl_begin(&s, FZF_PULL_ID, small.n, 0, "f", false);
  ctl_chunk(&s, FZF_PULL_ID, 1, 10, 10, 0, small.sha);
  fs_data(&s, small.p, 10);
  ctl_end(&s, FZF_PULL_ID, small.n, small.sha, true);
  fs_put(&s, "ask_past_size");

  fs_init(&s, FZF_MODE_ASK); /* ids crossed: a BEGIN for the push, a READY for the pull */
  ctl_begin(&s, FZF_PUSH_ID, small.n, 0, "a\x01path", false);
  ctl_simple(&s, TETHER__FILE_MSG_TYPE__FILE_READY, FZF_PULL_ID, false);
  ctl_simple(&s, TETHER__FILE_MSG_TYPE__FILE_READY, FZF_PUSH_ID, false);
  ctl_simple(&s, TETHER__FILE_MSG_TYPE__FILE_READY, FZF_PUSH_ID, false);
  ctl_done(&s, FZF_PULL_ID, small.n, small.sha, 0, false);
  ctl_simple(&s, TETHER__FILE_MSG_TYPE__FILE_ERROR, 5, false);
  ctl_simple(&s, TETHER__FILE_MSG_TYPE__FILE_ERROR, FZF_PULL_ID, true);
  fs_put(&s, "ask_crossed_ids");

  /* Answers before the requests are out: the GET's and PUT's jobs have not come back. */
  fs_init(&s, FZF_MODE_ASK | FZF_MODE_EARLY);
  ctl_simple(&s, TETHER__FILE_MSG_TYPE__FILE_READY, FZF_PUSH_ID, false);
  send_file(&s, &small, false, false);
  fs_op(&s, FZF_R_WORK);
  fs_op(&s, FZF_R_BACK);
  fs_op(&s, FZF_R_SETTLE);
  fs_put(&s, "ask_early_answers");

  fs_init(&s, FZF_MODE_ASK | FZF_MODE_FREE_FIRST); /* the push's stream cut by a close */
  ctl_simple(&s, TETHER__FILE_MSG_TYPE__FILE_READY, FZF_PUSH_ID, false);
  fs_op(&s, FZF_R_WORK);
  fs_op(&s, FZF_R_CLOSE);
  fs_put(&s, "ask_close_mid_push");
}

/* fuzz_redact: byte 0 the output size (0: full), then text with a secret of each kind. */
static void gen_redact(void) {
  static const char *const texts[] = {
      "Authorization: Bearer abc.def.ghi\r\nHost: x",
      "-----BEGIN RSA " PK "-----\nMIIEow\n-----END RSA " PK "-----\nafter",
      "{\"password\": \"hunter2\", \"token\":\"a\\\"b\"} body={\\\"api_key\\\":\\\"x\\\"}",
      "mysql --password hunter2 -u root PWD=/home/sam session=4f9a1c2e8b7d6a5f3e2d1c0b9a8f7e6d",
      "git clone https://sam:hunter2@git.example.com/r.git ssh://git@github.com/x",
      "AKIAIOSFODNN7EXAMPLE ghp_0123456789abcdefghijABCDEFGHIJ012345 xoxb-1234567890-abc",
      "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig_-abc passwordless sudo",
  };
  char name[32], buf[512];
  for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
    size_t n = strlen(texts[i]);
    buf[0] = i % 2 ? 0 : (char)(n / 2); /* whole, and cut halfway */
    memcpy(buf + 1, texts[i], n);
    snprintf(name, sizeof(name), "text-%zu", i);
    put("redact", name, buf, n + 1);
  }
}

/* fuzz_checks: settings as admins write them, good and bad, one list a seed. */
static void gen_checks(void) {
  static const char *const seeds[] = {
      "checks.disk_used.threshold=85%",
      "checks.disk_used.period=90s\nchecks.disk_used.raise_after=3\nchecks.disk_used.clear_after=2",
      "checks.services_down.services=cups,sshd.service\nchecks.services_down.priority=urgent",
      "checks.cert_expiry.paths=/etc/ssl/a.pem,/etc/ssl/b.pem\nchecks.cert_expiry.threshold=14d",
      "checks.disk_used.ignore=tmpfs,/boot/*\nchecks.inodes_used.enabled=off",
      "checks.disk_used.threshold=120%",
      "checks.disk_usd.period=1s",
      "checks.clock_skew.threshold=500ms\nchecks.clock_skew.threshold=1m",
      "checks.memory_pressure.available=5\nchecks.units_failed.ignore=foo*.service",
  };
  for (size_t i = 0; i < sizeof(seeds) / sizeof(seeds[0]); i++) {
    char name[32];
    snprintf(name, sizeof(name), "seed-%zu", i);
    put("checks", name, seeds[i], strlen(seeds[i]));
  }
}

/* A manifest of r signed by the fuzz key, as fuzz_release.h writes it; its length. */
static size_t release_text(EVP_PKEY *priv, const tt_release_t *r, char *out, size_t cap) {
  size_t n = fzr_format(r, out, cap);
  if (n == 0 || n + FZR_SIG_LINE >= cap || fzr_sign_line(priv, out, n, out + n)) fail("release seed", TT_ETLS);
  return n + FZR_SIG_LINE;
}

/* text with its first `from` replaced by `to`, into out; its length. */
static size_t release_edit(const char *text, size_t n, const char *from, const char *to, char *out, size_t cap) {
  const char *at = strstr(text, from);
  size_t head = at ? (size_t)(at - text) : 0, fl = strlen(from), tl = strlen(to);
  if (!at || n - fl + tl >= cap) fail("release seed edit", TT_EINVAL);
  memcpy(out, text, head);
  memcpy(out + head, to, tl);
  memcpy(out + head + tl, at + fl, n - head - fl);
  out[n - fl + tl] = '\0';
  return n - fl + tl;
}

/* A seed that the real verifier answers as the seed means it to be. */
static void release_put(const tt_release_keys_t *k, const char *name, const char *text, size_t n, int want) {
  tt_release_t r;
  char err[256] = "";
  int rc = tt_release_verify(text, n, k, &r, err, sizeof(err));
  if (rc != want) {
    fprintf(stderr, "gen_corpus: release seed %s: %s (%s), wanted %s\n", name, tt_strerror(rc), err,
            tt_strerror(want));
    exit(1);
  }
  put("release", name, text, n);
}

/* fuzz_release: manifests signed by fuzz_release.h's key at a fixed time, so that they are the
 * same every build and the fuzzer starts past the signature check; broken ones; and lists of
 * versions, one a line, for the version order. */
static void gen_release(void) {
  EVP_PKEY *priv = fzr_private();
  tt_release_keys_t k;
  if (!priv || fzr_keys(priv, &k)) fail("the fuzz release key", TT_ETLS);
  tt_release_t r;
  memset(&r, 0, sizeof(r));
  strcpy(r.package, "tether-agent");
  strcpy(r.version, "0.3.0");
  strcpy(r.arch, "amd64");
  r.size = 1234567;
  for (int i = 0; i < 32; i++) r.sha256[i] = (uint8_t)(i * 7 + 1);
  r.created_ms = 1796616000000LL; /* 2026-12-07T04:00:00Z */
  memcpy(r.key, k.fp[0], 32);
  char text[TT_RELEASE_MANIFEST_MAX + 1], bad[TT_RELEASE_MANIFEST_MAX + 64];
  size_t n = release_text(priv, &r, text, sizeof(text)), bn;
  release_put(&k, "signed", text, n, 0);

  tt_release_t d = r;
  d.downgrade = true;
  strcpy(d.version, "1:0.2.9~rc1-2");
  strcpy(d.downgrade_from, "1:0.3.0");
  strcpy(d.arch, "arm64");
  d.size = TT_RELEASE_SIZE_MAX;
  d.created_ms = 951868799000LL; /* 2000-02-29T23:59:59Z: a leap day */
  bn = release_text(priv, &d, bad, sizeof(bad));
  release_put(&k, "signed_downgrade", bad, bn, 0);
  tt_release_t o = r; /* signed by the fuzz key, naming another */
  memset(o.key, 0x5a, sizeof(o.key));
  bn = release_text(priv, &o, bad, sizeof(bad));
  release_put(&k, "other_key", bad, bn, TT_EDENIED);

  /* The signed text altered: a signature that does not verify, then malformed. */
  memcpy(bad, text, n + 1);
  size_t at = n - 1 - 2 - 40; /* a base64 digit well before the padding */
  bad[at] = bad[at] == 'A' ? 'B' : 'A';
  release_put(&k, "bad_signature", bad, n, TT_EDENIED);
  release_put(&k, "no_last_newline", text, n - 1, TT_EINVAL);
  release_put(&k, "no_signature", text, n - FZR_SIG_LINE, TT_EINVAL);
  static const struct {
    const char *name, *from, *to;
  } edits[] = {
      {"out_of_order", "version 0.3.0\narch amd64\n", "arch amd64\nversion 0.3.0\n"},
      {"crlf", "package tether-agent\n", "package tether-agent\r\n"},
      {"february_30", "created 2026-12-07", "created 2026-02-30"},
      {"size_leading_zero", "size 1234567\n", "size 01234567\n"},
      {"empty_revision", "version 0.3.0\n", "version 0.3.0-\n"},
      {"after_signature", "==\n", "==\nsignature x\n"},
  };
  for (size_t i = 0; i < sizeof(edits) / sizeof(edits[0]); i++) {
    bn = release_edit(text, n, edits[i].from, edits[i].to, bad, sizeof(bad));
    release_put(&k, edits[i].name, bad, bn, TT_EINVAL);
  }

  static const char versions[][64] = {
      "1.0~rc1\n1.0\n1:0.9",       "1.0-1\n1.0-1ubuntu1\n01.0-1", "2:1.0\n10:0.1\n00:1.0",
      "1.0~~\n1.0~\n1.0+next-9",   "1.2.3-4-5\n1.2.3-4-6\n1:2:3", "0.10.0\n0.9.9\n1.0a",
  };
  for (size_t i = 0; i < sizeof(versions) / sizeof(versions[0]); i++) {
    char name[32];
    snprintf(name, sizeof(name), "versions-%zu", i);
    release_put(&k, name, versions[i], strlen(versions[i]), TT_EINVAL);
  }
  release_put(&k, "versions-nul", "1.0-1\0" "1.0", 9, TT_EINVAL);
  tt_release_keys_free(&k);
  EVP_PKEY_free(priv);
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: gen_corpus DIR\n");
    return 2;
  }
  g_dir = argv[1];
  char path[4096];
  mkdir_p(g_dir);
  static const char *const subs[] = {"frame", "msg", "zstd", "files", "redact", "checks", "release"};
  for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++) {
    snprintf(path, sizeof(path), "%s/%s", g_dir, subs[i]);
    mkdir_p(path);
  }
  uint8_t zchunk[4096];
  size_t zlen = gen_zstd(zchunk, sizeof(zchunk));
  if (!zlen) fail("no compressed chunk for the frame seeds", TT_EZSTD);
  gen_frames(zchunk, zlen);
  gen_msgs();
  gen_files();
  gen_redact();
  gen_checks();
  gen_release();
  return g_failed;
}
