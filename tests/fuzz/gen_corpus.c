/* Writes the fuzzers' seed corpus: valid frame streams, control bodies and zstd chunks,
 * made with the real encoders so the seeds follow the code. Usage: gen_corpus DIR; the seeds
 * land in DIR/frame, DIR/msg and DIR/zstd. Nothing binary is kept in the repository. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zstd.h>
#include "tt/frame.h"
#include "tt/limits.h"
#include "tt/msg.h"
#include "tt/zstd.h"

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

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: gen_corpus DIR\n");
    return 2;
  }
  g_dir = argv[1];
  char path[4096];
  mkdir_p(g_dir);
  static const char *const subs[] = {"frame", "msg", "zstd"};
  for (size_t i = 0; i < 3; i++) {
    snprintf(path, sizeof(path), "%s/%s", g_dir, subs[i]);
    mkdir_p(path);
  }
  uint8_t zchunk[4096];
  size_t zlen = gen_zstd(zchunk, sizeof(zchunk));
  if (!zlen) fail("no compressed chunk for the frame seeds", TT_EZSTD);
  gen_frames(zchunk, zlen);
  gen_msgs();
  return g_failed;
}
