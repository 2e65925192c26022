/* libFuzzer driver for control-message bodies: tt_msg_unpack under both budgets, the
 * untrusted-text check on every bytes field a handler reads, and the encode/unpack round
 * trip that the broker relies on when it forwards what it received.
 *
 * Input: byte 0 picks the kind (low 7 bits, modulo the kinds below; DATA stands for the
 * ChannelControl a DATA frame with TT_FF_CTRL carries) and the budget (bit 7
 * set: pre-authentication); the rest is the body. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "tt/frame.h"
#include "tt/limits.h"
#include "tt/log.h"
#include "tt/msg.h"

static const uint8_t fz_kinds[] = {
    TT_K_HELLO,     TT_K_WELCOME,   TT_K_ERROR,    TT_K_PING,   TT_K_PONG,
    TT_K_CH_OPEN,   TT_K_CH_ACCEPT, TT_K_CH_REJECT, TT_K_CH_CLOSE, TT_K_WINDOW,
    TT_K_REQUEST,   TT_K_RESPONSE,  TT_K_DATA,
};

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Unicode format characters (Cf) that tt_text_valid refuses, as a table of ranges. */
static bool fz_is_cf(uint32_t cp) {
  static const uint32_t r[][2] = {
      {0xad, 0xad},       {0x600, 0x605},     {0x61c, 0x61c},     {0x6dd, 0x6dd},
      {0x70f, 0x70f},     {0x180e, 0x180e},   {0x200b, 0x200f},   {0x202a, 0x202e},
      {0x2060, 0x2064},   {0x2066, 0x206f},   {0xfeff, 0xfeff},   {0xfff9, 0xfffb},
      {0xe0001, 0xe0001}, {0xe0020, 0xe007f},
  };
  for (size_t i = 0; i < sizeof(r) / sizeof(r[0]); i++)
    if (cp >= r[i][0] && cp <= r[i][1]) return true;
  return false;
}

/* An independent reading of tt_text_valid's contract (Unicode's table of well-formed
 * sequences, minus C0, DEL and C1), so the two can be checked against each other. */
static bool fz_text_ref(ProtobufCBinaryData t, size_t max) {
  if (t.len > max) return false;
  const uint8_t *s = t.data;
  size_t i = 0;
  while (i < t.len) {
    uint8_t c = s[i];
    uint8_t lo = 0x80, hi = 0xbf;
    size_t n;
    if (c >= 0x20 && c < 0x7f) { i++; continue; }
    if (c < 0x80) return false;
    if (c >= 0xc2 && c <= 0xdf) n = 1;
    else if (c == 0xe0) { n = 2; lo = 0xa0; }
    else if ((c >= 0xe1 && c <= 0xec) || c == 0xee || c == 0xef) n = 2;
    else if (c == 0xed) { n = 2; hi = 0x9f; }
    else if (c == 0xf0) { n = 3; lo = 0x90; }
    else if (c >= 0xf1 && c <= 0xf3) n = 3;
    else if (c == 0xf4) { n = 3; hi = 0x8f; }
    else return false;
    if (n >= t.len - i) return false;
    if (s[i + 1] < lo || s[i + 1] > hi) return false;
    for (size_t k = 2; k <= n; k++)
      if (s[i + k] < 0x80 || s[i + k] > 0xbf) return false;
    if (c == 0xc2 && s[i + 1] <= 0x9f) return false; /* U+0080..U+009F */
    uint32_t cp = c & (n == 1 ? 0x1f : n == 2 ? 0x0f : 0x07);
    for (size_t k = 1; k <= n; k++) cp = (cp << 6) | (s[i + k] & 0x3f);
    if (fz_is_cf(cp)) return false;
    i += n + 1;
  }
  return true;
}

/* tt_text_valid must agree with the reference, and tt_text_copy with both. */
static void fz_text(ProtobufCBinaryData t) {
  static const size_t maxes[] = {TT_NAME_MAX, TT_TEXT_MAX, TT_FRAME_MAX_BODY};
  for (size_t i = 0; i < sizeof(maxes) / sizeof(maxes[0]); i++)
    if (tt_text_valid(t, maxes[i]) != fz_text_ref(t, maxes[i])) abort();
  char dst[TT_TEXT_MAX + 1];
  int rc = tt_text_copy(dst, sizeof(dst), t);
  if (fz_text_ref(t, TT_TEXT_MAX)) {
    if (rc != 0 || strlen(dst) != t.len || (t.len && memcmp(dst, t.data, t.len))) abort();
  } else if (rc != TT_ETEXT) {
    abort();
  }
}

/* Every bytes field a handler of this kind reads. */
static void fz_texts(uint8_t kind, const ProtobufCMessage *m) {
  switch (kind) {
  case TT_K_HELLO: {
    const Tether__Hello *h = (const Tether__Hello *)m;
    fz_text(h->software_version);
    fz_text(h->hostname);
    break;
  }
  case TT_K_WELCOME: {
    const Tether__Welcome *w = (const Tether__Welcome *)m;
    fz_text(w->broker_version);
    fz_text(w->identity);
    break;
  }
  case TT_K_ERROR:
    fz_text(((const Tether__Error *)m)->message);
    break;
  case TT_K_CH_OPEN: {
    const Tether__ChannelOpen *o = (const Tether__ChannelOpen *)m;
    fz_text(o->device);
    fz_text(o->requester);
    break;
  }
  case TT_K_CH_REJECT:
    fz_text(((const Tether__ChannelReject *)m)->message);
    break;
  case TT_K_CH_CLOSE:
    fz_text(((const Tether__ChannelClose *)m)->message);
    break;
  case TT_K_RESPONSE: {
    const Tether__Response *r = (const Tether__Response *)m;
    if (r->error) fz_text(r->error->message);
    if (r->body_case == TETHER__RESPONSE__BODY_DEVICES && r->devices) {
      for (size_t i = 0; i < r->devices->n_devices; i++) {
        const Tether__DeviceInfo *d = r->devices->devices[i];
        fz_text(d->device_id);
        fz_text(d->hostname);
        fz_text(d->address);
        fz_text(d->agent_version);
      }
    }
    break;
  }
  default:
    break;
  }
}

/* Encode m as a whole frame into b; the header must decode to what was asked for. */
static void fz_encode(tt_buf_t *b, uint8_t kind, uint32_t ch, const ProtobufCMessage *m) {
  if (tt_msg_encode(b, kind, ch, m)) abort();
  tt_frame_t f;
  if (tt_frame_header_decode(tt_buf_head(b), TT_FRAME_MAX_BODY, &f)) abort();
  if (f.kind != kind || f.channel != ch || f.flags || f.len != b->len - TT_FRAME_HDR) abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  tt_log_set_level(TT_LOG_OFF);
  return 0;
}

/* In-band channel control: the documented failures only, the budget returned, and what was
 * unpacked packs back to something that unpacks to the same bytes again. */
static void fz_ctrl(const uint8_t *data, size_t size) {
  tt_msg_t msg, again;
  int rc = tt_msg_unpack_ctrl(&msg, data, size);
  if (rc) {
    if (msg.m || msg.used || (rc != TT_ETOOBIG && rc != TT_EPROTO)) abort();
    if (rc == TT_ETOOBIG && size <= TT_DATA_CHUNK_MAX && !msg.refused) abort();
    return;
  }
  if (msg.used > TT_CTRL_MSG_BUDGET) abort();
  size_t n = protobuf_c_message_get_packed_size(msg.m);
  uint8_t *b1 = malloc(n ? n : 1), *b2 = malloc(n ? n : 1);
  if (!b1 || !b2) abort();
  if (protobuf_c_message_pack(msg.m, b1) != n) abort();
  if (n <= TT_DATA_CHUNK_MAX) {
    if (tt_msg_unpack_ctrl(&again, b1, n)) abort();
    if (protobuf_c_message_get_packed_size(again.m) != n || protobuf_c_message_pack(again.m, b2) != n ||
        memcmp(b1, b2, n))
      abort();
    tt_msg_free(&again);
  }
  tt_msg_free(&msg);
  if (msg.used != 0) abort();
  free(b1);
  free(b2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  uint8_t kind = fz_kinds[(data[0] & 0x7f) % sizeof(fz_kinds)];
  size_t budget = (data[0] & 0x80) ? TT_MSG_BUDGET_PREAUTH : TT_MSG_BUDGET;
  data++;
  size--;

  tt_msg_t msg, again;
  if (kind == TT_K_DATA) { /* a DATA frame with TT_FF_CTRL: one ChannelControl */
    fz_ctrl(data, size);
    return 0;
  }
  int rc = tt_msg_unpack(&msg, kind, data, size, budget);
  if (rc) {
    /* The documented failures, and nothing left behind. */
    if (msg.m || msg.used || (rc != TT_EKIND && rc != TT_ETOOBIG && rc != TT_EPROTO)) abort();
    if (kind != TT_K_DATA && rc == TT_EKIND) abort();
    return 0;
  }
  if (kind == TT_K_DATA) abort();
  fz_texts(kind, msg.m);

  /* Round trip: what we unpacked we can send on, and it reads back as itself. A body that
   * only grew past the frame limit on re-encoding is the one allowed refusal. */
  uint32_t ch = tt_kind_is_control(kind) ? 0 : 1;
  if (protobuf_c_message_get_packed_size(msg.m) > TT_FRAME_MAX_BODY) {
    tt_msg_free(&msg);
    return 0;
  }
  tt_buf_t b1, b2;
  tt_buf_init(&b1, TT_FRAME_HDR + TT_FRAME_MAX_BODY);
  tt_buf_init(&b2, TT_FRAME_HDR + TT_FRAME_MAX_BODY);
  fz_encode(&b1, kind, ch, msg.m);
  if (tt_msg_unpack(&again, kind, tt_buf_head(&b1) + TT_FRAME_HDR, b1.len - TT_FRAME_HDR, budget))
    abort();
  fz_texts(kind, again.m);
  /* Canonical once encoded: a second trip gives the same bytes. */
  fz_encode(&b2, kind, ch, again.m);
  if (b1.len != b2.len || memcmp(tt_buf_head(&b1), tt_buf_head(&b2), b1.len)) abort();

  tt_msg_free(&again);
  tt_msg_free(&msg);
  if (msg.used != 0 || again.used != 0) abort(); /* the counting allocator returned all */
  tt_buf_free(&b1);
  tt_buf_free(&b2);
  return 0;
}
