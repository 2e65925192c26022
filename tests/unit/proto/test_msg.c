/* tt_msg: control bodies round-trip, malformed protobuf is refused, the unpack budget is a
 * hard cap, untrusted text is strict UTF-8 without controls, error codes cross the wire. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tt/limits.h"
#include "tt/msg.h"

/* Encode m as one frame into a fresh buffer and check the header. */
static void encode_frame(tt_buf_t *b, uint8_t kind, uint32_t ch, const ProtobufCMessage *m, tt_frame_t *f) {
  tt_buf_init(b, TT_FRAME_HDR + TT_FRAME_MAX_BODY);
  assert_int_equal(tt_msg_encode(b, kind, ch, m), 0);
  assert_int_equal(tt_frame_header_decode(tt_buf_head(b), TT_FRAME_MAX_BODY, f), 0);
  assert_int_equal(f->kind, kind);
  assert_int_equal(f->channel, ch);
  assert_int_equal(b->len, TT_FRAME_HDR + f->len);
  f->body = tt_buf_head(b) + TT_FRAME_HDR;
}

static void assert_bin(ProtobufCBinaryData d, const char *s) {
  assert_int_equal(d.len, strlen(s));
  if (d.len) assert_memory_equal(d.data, s, d.len);
}

static void test_descriptors(void **state) {
  (void)state;
  for (unsigned k = 0; k < 256; k++) {
    const ProtobufCMessageDescriptor *d = tt_msg_descriptor((uint8_t)k);
    bool want = k >= TT_K_HELLO && k <= TT_K_RESPONSE;
    assert_int_equal(d != NULL, want);
  }
  assert_ptr_equal(tt_msg_descriptor(TT_K_HELLO), &tether__hello__descriptor);
  assert_ptr_equal(tt_msg_descriptor(TT_K_RESPONSE), &tether__response__descriptor);
  tt_msg_t msg;
  uint8_t body[1] = {0};
  assert_int_equal(tt_msg_unpack(&msg, TT_K_DATA, body, 0, TT_MSG_BUDGET), TT_EKIND);
  assert_null(msg.m);
  tt_msg_free(&msg);
  assert_int_equal(tt_msg_unpack(&msg, 200, body, 0, TT_MSG_BUDGET), TT_EKIND);
  tt_msg_free(&msg);
}

static void test_hello_round_trip(void **state) {
  (void)state;
  Tether__Hello h = TETHER__HELLO__INIT;
  h.proto_version = TT_PROTO_VERSION;
  h.role = TETHER__ROLE__ROLE_AGENT;
  h.software_version = tt_text("0.1.0");
  h.capabilities = TETHER__CAPABILITY__CAP_ZSTD | TETHER__CAPABILITY__CAP_ECHO;
  h.hostname = tt_text("host-\xc3\xa9t\xc3\xa9.example");
  tt_buf_t b;
  tt_frame_t f;
  encode_frame(&b, TT_K_HELLO, 0, &h.base, &f);
  assert_true(f.len <= TT_FRAME_MAX_BODY_PREAUTH);
  tt_msg_t msg;
  assert_int_equal(tt_msg_unpack(&msg, f.kind, f.body, f.len, TT_MSG_BUDGET_PREAUTH), 0);
  assert_non_null(msg.m);
  assert_true(msg.used > 0 && msg.used <= msg.budget);
  const Tether__Hello *u = (const Tether__Hello *)msg.m;
  assert_ptr_equal(u->base.descriptor, &tether__hello__descriptor);
  assert_int_equal(u->proto_version, TT_PROTO_VERSION);
  assert_int_equal(u->role, TETHER__ROLE__ROLE_AGENT);
  assert_int_equal(u->capabilities, h.capabilities);
  assert_bin(u->software_version, "0.1.0");
  assert_bin(u->hostname, "host-\xc3\xa9t\xc3\xa9.example");
  assert_true(tt_text_valid(u->hostname, TT_TEXT_MAX));
  tt_msg_free(&msg);
  assert_null(msg.m);
  assert_int_equal(msg.used, 0); /* every allocation returned */
  tt_msg_free(&msg);              /* twice is harmless */
  tt_buf_free(&b);
}

static void test_response_device_list_round_trip(void **state) {
  (void)state;
  Tether__DeviceInfo di[3];
  Tether__DeviceInfo *dp[3];
  static const char *ids[3] = {"dev-a", "dev-b", ""};
  for (int i = 0; i < 3; i++) {
    Tether__DeviceInfo init = TETHER__DEVICE_INFO__INIT;
    di[i] = init;
    di[i].device_id = tt_text(ids[i]);
    di[i].hostname = tt_text("h");
    di[i].address = tt_text("192.0.2.7:4433");
    di[i].connected_since_ms = 1700000000000ull + (uint64_t)i;
    di[i].agent_version = tt_text("0.1.0");
    dp[i] = &di[i];
  }
  Tether__DeviceList dl = TETHER__DEVICE_LIST__INIT;
  dl.n_devices = 3;
  dl.devices = dp;
  dl.total = 1234;
  Tether__Response r = TETHER__RESPONSE__INIT;
  r.id = 42;
  r.body_case = TETHER__RESPONSE__BODY_DEVICES;
  r.devices = &dl;
  tt_buf_t b;
  tt_frame_t f;
  encode_frame(&b, TT_K_RESPONSE, 0, &r.base, &f);
  tt_msg_t msg;
  assert_int_equal(tt_msg_unpack(&msg, f.kind, f.body, f.len, TT_MSG_BUDGET), 0);
  const Tether__Response *u = (const Tether__Response *)msg.m;
  assert_int_equal(u->id, 42);
  assert_null(u->error);
  assert_int_equal(u->body_case, TETHER__RESPONSE__BODY_DEVICES);
  assert_non_null(u->devices);
  assert_int_equal(u->devices->total, 1234);
  assert_int_equal(u->devices->n_devices, 3);
  for (int i = 0; i < 3; i++) {
    const Tether__DeviceInfo *d = u->devices->devices[i];
    assert_bin(d->device_id, ids[i]);
    assert_bin(d->hostname, "h");
    assert_bin(d->address, "192.0.2.7:4433");
    assert_bin(d->agent_version, "0.1.0");
    assert_int_equal(d->connected_since_ms, 1700000000000ull + (uint64_t)i);
  }
  tt_msg_free(&msg);
  assert_int_equal(msg.used, 0);
  tt_buf_free(&b);

  /* An error response. */
  Tether__Error e = TETHER__ERROR__INIT;
  e.code = TETHER__ERROR_CODE__ERR_BUSY;
  e.message = tt_text("later");
  e.retry_after_ms = 1500;
  Tether__Response re = TETHER__RESPONSE__INIT;
  re.id = 7;
  re.error = &e;
  encode_frame(&b, TT_K_RESPONSE, 0, &re.base, &f);
  assert_int_equal(tt_msg_unpack(&msg, f.kind, f.body, f.len, TT_MSG_BUDGET), 0);
  u = (const Tether__Response *)msg.m;
  assert_int_equal(u->id, 7);
  assert_non_null(u->error);
  assert_int_equal(u->error->code, TETHER__ERROR_CODE__ERR_BUSY);
  assert_int_equal(u->error->retry_after_ms, 1500);
  assert_bin(u->error->message, "later");
  assert_int_equal(u->body_case, TETHER__RESPONSE__BODY__NOT_SET);
  tt_msg_free(&msg);
  tt_buf_free(&b);
}

static void test_encode_limits(void **state) {
  (void)state;
  /* A body over the frame limit is refused before anything is written. */
  size_t big = TT_FRAME_MAX_BODY + 1;
  uint8_t *blob = calloc(1, big);
  assert_non_null(blob);
  Tether__Error e = TETHER__ERROR__INIT;
  e.message.data = blob;
  e.message.len = big;
  tt_buf_t b;
  tt_buf_init(&b, 4u * TT_FRAME_MAX_BODY);
  assert_int_equal(tt_msg_encode(&b, TT_K_ERROR, 0, &e.base), TT_ETOOBIG);
  assert_int_equal(b.len, 0);
  tt_buf_free(&b);
  /* An output buffer too small: TT_EFULL, nothing appended. */
  e.message.len = 100;
  tt_buf_init(&b, 50);
  assert_int_equal(tt_msg_encode(&b, TT_K_ERROR, 0, &e.base), TT_EFULL);
  assert_int_equal(b.len, 0);
  tt_buf_free(&b);
  free(blob);
  /* An empty message is a header with an empty body. */
  Tether__Ping p = TETHER__PING__INIT;
  tt_buf_init(&b, 100);
  assert_int_equal(tt_msg_encode(&b, TT_K_PING, 0, &p.base), 0);
  assert_int_equal(b.len, TT_FRAME_HDR);
  tt_msg_t msg;
  assert_int_equal(tt_msg_unpack(&msg, TT_K_PING, tt_buf_head(&b) + TT_FRAME_HDR, 0, TT_MSG_BUDGET_PREAUTH), 0);
  assert_int_equal(((Tether__Ping *)msg.m)->nonce, 0);
  tt_msg_free(&msg);
  tt_buf_free(&b);
}

static void test_malformed(void **state) {
  (void)state;
  static const struct { const char *b; size_t n; uint8_t kind; } cases[] = {
      {"\x2a\x05" "ab", 4, TT_K_HELLO},          /* hostname length runs past the end */
      {"\x2a", 1, TT_K_HELLO},                   /* tag with no length */
      {"\x08", 1, TT_K_HELLO},                   /* varint missing */
      {"\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 12, TT_K_HELLO}, /* 11-byte varint */
      {"\x00\x01", 2, TT_K_PING},                /* field number 0 */
      {"\x0f", 1, TT_K_PING},                    /* wire type 7 */
      {"\x0b\x0c", 2, TT_K_PING},                /* group wire types */
      {"\x1a\x03\x0a\x09\x00", 5, TT_K_RESPONSE},/* nested DeviceList truncated inside */
      {"\x1a\xff\xff\xff\xff\x0f", 6, TT_K_RESPONSE}, /* 4 GiB submessage length */
      {"\x0d\x01\x02", 3, TT_K_WINDOW},          /* fixed32 cut short */
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    tt_msg_t msg;
    int rc = tt_msg_unpack(&msg, cases[i].kind, (const uint8_t *)cases[i].b, cases[i].n, TT_MSG_BUDGET);
    if (rc != TT_EPROTO) fail_msg("case %zu: rc %d, want TT_EPROTO", i, rc);
    assert_null(msg.m);
    assert_int_equal(msg.used, 0); /* partial work freed */
    tt_msg_free(&msg);             /* safe after failure */
  }
}

/* A Response whose DeviceList holds n empty entries: 2 wire bytes each, ~100 bytes unpacked. */
static void encode_empty_devices(tt_buf_t *b, size_t n, tt_frame_t *f) {
  Tether__DeviceInfo *one = malloc(sizeof(*one));
  Tether__DeviceInfo **dp = malloc(n * sizeof(*dp));
  assert_non_null(one);
  assert_non_null(dp);
  Tether__DeviceInfo init = TETHER__DEVICE_INFO__INIT;
  *one = init;
  for (size_t i = 0; i < n; i++) dp[i] = one;
  Tether__DeviceList dl = TETHER__DEVICE_LIST__INIT;
  dl.n_devices = n;
  dl.devices = dp;
  Tether__Response r = TETHER__RESPONSE__INIT;
  r.id = 1;
  r.body_case = TETHER__RESPONSE__BODY_DEVICES;
  r.devices = &dl;
  encode_frame(b, TT_K_RESPONSE, 0, &r.base, f);
  free(dp);
  free(one);
}

static void test_budget_refuses_expansion(void **state) {
  (void)state;
  /* Thousands of entries in a few KiB of body: well within the frame limit, far past the
   * pre-auth unpack budget (2000: four listing pages' worth, each DeviceInfo unpacking to
   * ~170 bytes, so still well inside the authenticated budget). */
  tt_buf_t b;
  tt_frame_t f;
  encode_empty_devices(&b, 2000, &f);
  assert_true(f.len < TT_FRAME_MAX_BODY);
  tt_msg_t msg;
  assert_int_equal(tt_msg_unpack(&msg, f.kind, f.body, f.len, TT_MSG_BUDGET_PREAUTH), TT_ETOOBIG);
  assert_null(msg.m);
  assert_true(msg.refused);
  assert_int_equal(msg.used, 0);
  tt_msg_free(&msg);
  /* The same body fits the authenticated budget. */
  assert_int_equal(tt_msg_unpack(&msg, f.kind, f.body, f.len, TT_MSG_BUDGET), 0);
  assert_int_equal(((Tether__Response *)msg.m)->devices->n_devices, 2000);
  assert_true(msg.used <= TT_MSG_BUDGET);
  tt_msg_free(&msg);
  assert_int_equal(msg.used, 0);
  tt_buf_free(&b);

  /* A full-size body of empty entries passes the frame limit but not even the big budget. */
  encode_empty_devices(&b, 120000, &f);
  assert_true(f.len <= TT_FRAME_MAX_BODY);
  assert_int_equal(tt_msg_unpack(&msg, f.kind, f.body, f.len, TT_MSG_BUDGET_PREAUTH), TT_ETOOBIG);
  assert_int_equal(msg.used, 0);
  tt_msg_free(&msg);
  assert_int_equal(tt_msg_unpack(&msg, f.kind, f.body, f.len, TT_MSG_BUDGET), TT_ETOOBIG);
  assert_null(msg.m);
  assert_int_equal(msg.used, 0);
  tt_msg_free(&msg);
  tt_buf_free(&b);
}

static void test_budget_is_hard_cap(void **state) {
  (void)state;
  /* A Hello with a hostname of exactly budget bytes can never fit the budget: the struct
   * and the allocation headers come on top. */
  static const size_t budgets[] = {64, 200, 1000, 4000};
  for (size_t i = 0; i < sizeof budgets / sizeof budgets[0]; i++) {
    size_t budget = budgets[i];
    for (size_t hl = budget > 40 ? budget - 40 : 0; hl <= budget; hl++) {
      char *host = malloc(hl + 1);
      assert_non_null(host);
      memset(host, 'a', hl);
      host[hl] = '\0';
      Tether__Hello h = TETHER__HELLO__INIT;
      h.hostname = tt_text(host);
      tt_buf_t b;
      tt_frame_t f;
      encode_frame(&b, TT_K_HELLO, 0, &h.base, &f);
      tt_msg_t msg;
      int rc = tt_msg_unpack(&msg, f.kind, f.body, f.len, budget);
      if (rc == 0) {
        /* Whatever succeeded stayed within its budget. */
        if (msg.used > budget) fail_msg("budget %zu hostname %zu: used %zu", budget, hl, msg.used);
        tt_msg_free(&msg);
      } else {
        assert_int_equal(rc, TT_ETOOBIG);
        assert_int_equal(msg.used, 0);
      }
      if (hl == budget) assert_int_equal(rc, TT_ETOOBIG);
      tt_buf_free(&b);
      free(host);
    }
  }
}

static void test_budget_sweep(void **state) {
  (void)state;
  /* Every budget from 0 up: either a clean refusal or a message within budget, no leak. */
  tt_buf_t b;
  tt_frame_t f;
  encode_empty_devices(&b, 40, &f);
  bool ok_seen = false;
  for (size_t budget = 0; budget < 8192; budget += 7) {
    tt_msg_t msg;
    int rc = tt_msg_unpack(&msg, f.kind, f.body, f.len, budget);
    if (rc == 0) {
      ok_seen = true;
      assert_true(msg.used <= budget);
      assert_int_equal(((Tether__Response *)msg.m)->devices->n_devices, 40);
    } else {
      assert_int_equal(rc, TT_ETOOBIG);
      assert_null(msg.m);
      assert_int_equal(msg.used, 0);
      assert_false(ok_seen); /* monotone: more budget never fails where less succeeded */
    }
    tt_msg_free(&msg);
    tt_msg_free(&msg);
  }
  assert_true(ok_seen);
  tt_buf_free(&b);
}

static bool valid(const char *s, size_t n, size_t max) {
  ProtobufCBinaryData d = {n, (uint8_t *)(uintptr_t)s};
  return tt_text_valid(d, max);
}
#define V(lit) valid(lit, sizeof(lit) - 1, TT_TEXT_MAX)

static void test_text_valid(void **state) {
  (void)state;
  /* Accepted. */
  assert_true(V(""));
  assert_true(V("plain ASCII host-01.example ~!@#$%^&*()_+{}|:\"<>?"));
  assert_true(V("\xc2\xa0"));               /* U+00A0, first after C1 */
  assert_true(V("caf\xc3\xa9"));            /* 2 bytes */
  assert_true(V("\xdf\xbf"));               /* U+07FF */
  assert_true(V("\xe0\xa0\x80"));           /* U+0800, smallest 3-byte */
  assert_true(V("\xe2\x82\xac"));           /* euro */
  assert_true(V("\xed\x9f\xbf"));           /* U+D7FF, just below surrogates */
  assert_true(V("\xee\x80\x80"));           /* U+E000, just above */
  assert_true(V("\xef\xbf\xbd"));           /* U+FFFD */
  assert_true(V("\xf0\x90\x80\x80"));       /* U+10000 */
  assert_true(V("\xf0\x9f\x98\x80"));       /* emoji */
  assert_true(V("\xf4\x8f\xbf\xbf"));       /* U+10FFFF */
  assert_true(V("\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e host"));
  assert_true(valid(NULL, 0, 10));
  /* Overlong. */
  assert_false(V("\xc0\x80"));
  assert_false(V("\xc0\xaf"));
  assert_false(V("\xc1\xbf"));
  assert_false(V("\xe0\x80\xaf"));
  assert_false(V("\xe0\x9f\xbf"));
  assert_false(V("\xf0\x80\x80\xaf"));
  assert_false(V("\xf0\x8f\xbf\xbf"));
  /* Surrogates. */
  assert_false(V("\xed\xa0\x80"));
  assert_false(V("\xed\xbf\xbf"));
  assert_false(V("\xed\xa0\xbd\xed\xb8\x80"));
  /* Past U+10FFFF, and bytes that never appear in UTF-8. */
  assert_false(V("\xf4\x90\x80\x80"));
  assert_false(V("\xf5\x80\x80\x80"));
  assert_false(V("\xf7\xbf\xbf\xbf"));
  assert_false(V("\xf8\x88\x80\x80\x80"));
  assert_false(V("\xfc\x84\x80\x80\x80\x80"));
  assert_false(V("\xfe"));
  assert_false(V("\xff"));
  /* Truncated sequences and stray continuation bytes. */
  assert_false(V("\xc3"));
  assert_false(V("ab\xc3"));
  assert_false(V("\xe2\x82"));
  assert_false(V("\xf0\x9f\x98"));
  assert_false(V("\xe2\x82" "A"));
  assert_false(V("\xf0\x9f" "AB"));
  assert_false(V("\x80"));
  assert_false(V("a\xbf" "b"));
  assert_false(V("\xc3\xc3\xa9"));
  /* A sequence cut by the length, though the byte after is a continuation. */
  assert_false(valid("\xe2\x82\xac", 2, TT_TEXT_MAX));
  /* Controls: C0, DEL, C1 (U+0080..U+009F encoded), embedded NUL. */
  for (unsigned c = 0; c < 0x20; c++) {
    char s[3] = {'a', (char)c, 'b'};
    assert_false(valid(s, 3, TT_TEXT_MAX));
  }
  assert_false(V("\t"));
  assert_false(V("line\nbreak"));
  assert_false(V("\r"));
  assert_false(V("\x1b[31m"));
  assert_false(V("\x7f"));
  assert_false(V("a\x7f"));
  for (unsigned c = 0x80; c <= 0x9f; c++) {
    char s[2] = {(char)0xc2, (char)(0x80 | (c & 0x3f))};
    assert_false(valid(s, 2, TT_TEXT_MAX));
  }
  assert_false(valid("ab\0cd", 5, TT_TEXT_MAX));
  assert_false(valid("\0", 1, TT_TEXT_MAX));
  /* Length limit, in bytes. */
  char buf[TT_TEXT_MAX + 2];
  memset(buf, 'x', sizeof buf);
  assert_true(valid(buf, TT_TEXT_MAX, TT_TEXT_MAX));
  assert_false(valid(buf, TT_TEXT_MAX + 1, TT_TEXT_MAX));
  assert_true(valid("\xc3\xa9\xc3\xa9", 4, 4));
  assert_false(valid("\xc3\xa9\xc3\xa9", 4, 3));
  assert_false(valid("a", 1, 0));
  assert_true(valid("", 0, 0));
}

/* Format characters would let one device's listing line impersonate another. */
static void test_text_refuses_format_chars(void **state) {
  (void)state;
  static const char *const bad[] = {
      "host\xe2\x80\xae" "evil",   /* U+202E right-to-left override */
      "a\xe2\x80\x8b" "b",      /* U+200B zero-width space */
      "\xef\xbb\xbf" "host",       /* U+FEFF byte-order mark */
      "x\xe2\x81\xa6y",         /* U+2066 left-to-right isolate */
      "soft\xc2\xad" "hyphen",   /* U+00AD */
      "tag\xf3\xa0\x80\x81",   /* U+E0001 language tag */
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    assert_false(tt_text_valid(tt_text(bad[i]), TT_TEXT_MAX));
  assert_true(tt_text_valid(tt_text("r\xc3\xa9" "ception-\xe6\x9d\xb1\xe4\xba\xac"), TT_TEXT_MAX));
}

/* A block of text (an article's Markdown): lines and tabs, but nothing else a line may not hold. */
static void test_text_block(void **state) {
  (void)state;
  const char *md = "# Title\r\n\n\tindented \xc3\xa9\n";
  assert_true(tt_text_block_valid(tt_text(md), TT_TEXT_MAX));
  assert_false(tt_text_valid(tt_text(md), TT_TEXT_MAX));
  assert_false(tt_text_block_valid(tt_text(md), strlen(md) - 1));
  static const char *const bad[] = {
      "bell\a", "esc\x1b[2J", "del\x7f", "form\x0c", "\xc3",
      "a\xe2\x80\xae\x62", /* U+202E right-to-left override */
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    assert_false(tt_text_block_valid(tt_text(bad[i]), TT_TEXT_MAX));
  ProtobufCBinaryData nul = {3, (uint8_t *)"a\0b"};
  assert_false(tt_text_block_valid(nul, TT_TEXT_MAX));
}

static void test_text_copy(void **state) {
  (void)state;
  char dst[8];
  assert_int_equal(tt_text_copy(dst, sizeof dst, tt_text("host")), 0);
  assert_string_equal(dst, "host");
  assert_int_equal(tt_text_copy(dst, sizeof dst, tt_text("1234567")), 0); /* cap-1 fits */
  assert_string_equal(dst, "1234567");
  memset(dst, 'z', sizeof dst);
  assert_int_equal(tt_text_copy(dst, sizeof dst, tt_text("12345678")), TT_ETEXT);
  assert_string_equal(dst, ""); /* output cleared on refusal */
  memset(dst, 'z', sizeof dst);
  assert_int_equal(tt_text_copy(dst, sizeof dst, tt_text("a\nb")), TT_ETEXT);
  assert_string_equal(dst, "");
  ProtobufCBinaryData nul = {3, (uint8_t *)(uintptr_t)"a\0b"};
  assert_int_equal(tt_text_copy(dst, sizeof dst, nul), TT_ETEXT);
  assert_string_equal(dst, "");
  ProtobufCBinaryData bad = {2, (uint8_t *)(uintptr_t)"\xc0\x80"};
  assert_int_equal(tt_text_copy(dst, sizeof dst, bad), TT_ETEXT);
  assert_int_equal(tt_text_copy(dst, sizeof dst, tt_text("\xc3\xa9t\xc3\xa9")), 0);
  assert_string_equal(dst, "\xc3\xa9t\xc3\xa9");
  ProtobufCBinaryData empty = {0, NULL};
  assert_int_equal(tt_text_copy(dst, sizeof dst, empty), 0);
  assert_string_equal(dst, "");
  assert_int_equal(tt_text_copy(dst, 1, empty), 0);
  assert_string_equal(dst, "");
  assert_int_equal(tt_text_copy(dst, 1, tt_text("a")), TT_ETEXT);
  assert_int_equal(tt_text_copy(dst, 0, tt_text("a")), TT_EINVAL);
  /* tt_text views a C string without copying. */
  const char *s = "view";
  ProtobufCBinaryData v = tt_text(s);
  assert_ptr_equal(v.data, s);
  assert_int_equal(v.len, 4);
  v = tt_text(NULL);
  assert_int_equal(v.len, 0);
}

/* A field numbered 0 with a two-byte tag is kept by protobuf-c as unknown but cannot be
 * re-packed into something it accepts again (found by fuzz_msg): refused at unpack. */
static void test_tag_zero_refused(void **state) {
  (void)state;
  static const uint8_t top[] = {0x80, 0x00, 0x00};
  tt_msg_t msg;
  assert_int_equal(tt_msg_unpack(&msg, TT_K_WELCOME, top, sizeof(top), TT_MSG_BUDGET), TT_EPROTO);
  assert_null(msg.m);
  /* The same inside a nested DeviceInfo of a Response (field 3 -> DeviceList, field 1). */
  static const uint8_t nested[] = {0x1a, 0x05, 0x0a, 0x03, 0x80, 0x00, 0x00};
  assert_int_equal(tt_msg_unpack(&msg, TT_K_RESPONSE, nested, sizeof(nested), TT_MSG_BUDGET), TT_EPROTO);
  assert_null(msg.m);
  /* An ordinary unknown field (number 15) is still tolerated. */
  static const uint8_t unknown15[] = {0x78, 0x01};
  assert_int_equal(tt_msg_unpack(&msg, TT_K_WELCOME, unknown15, sizeof(unknown15), TT_MSG_BUDGET), 0);
  tt_msg_free(&msg);
}

static void test_err_wire_round_trip(void **state) {
  (void)state;
  static const int codes[] = {0, TT_EPROTO, TT_EVERSION, TT_EROLE, TT_ETOOBIG, TT_EWINDOW,
                              TT_ECHANNEL, TT_ENOTFOUND, TT_EBUSY, TT_ETIMEOUT, TT_EDENIED,
                              TT_ECLOSED, TT_EINVAL};
  for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++)
    assert_int_equal(tt_err_from_wire(tt_err_to_wire(codes[i])), codes[i]);
  assert_int_equal(tt_err_to_wire(0), TETHER__ERROR_CODE__ERR_NONE);
  assert_int_equal(tt_err_to_wire(TT_EPROTO), TETHER__ERROR_CODE__ERR_PROTOCOL);
  assert_int_equal(tt_err_to_wire(TT_EKIND), TETHER__ERROR_CODE__ERR_PROTOCOL);
  assert_int_equal(tt_err_to_wire(TT_ETEXT), TETHER__ERROR_CODE__ERR_PROTOCOL);
  assert_int_equal(tt_err_to_wire(TT_EFULL), TETHER__ERROR_CODE__ERR_TOO_BIG);
  assert_int_equal(tt_err_to_wire(TT_EWINDOW), TETHER__ERROR_CODE__ERR_WINDOW);
  /* A request that is not valid says so, not "internal error" (an enrollment's bad CSR). */
  assert_int_equal(tt_err_to_wire(TT_EINVAL), TETHER__ERROR_CODE__ERR_INVALID);
  /* Local-only codes do not leak detail to the peer. */
  assert_int_equal(tt_err_to_wire(TT_ENOMEM), TETHER__ERROR_CODE__ERR_INTERNAL);
  assert_int_equal(tt_err_to_wire(TT_ECONFIG), TETHER__ERROR_CODE__ERR_INTERNAL);
  assert_int_equal(tt_err_to_wire(-104 /* -ECONNRESET */), TETHER__ERROR_CODE__ERR_INTERNAL);
  /* Every wire code maps to a negative local code (or 0 for NONE); unknown ones to EPEER. */
  for (int w = 1; w <= 14; w++) assert_true(tt_err_from_wire((Tether__ErrorCode)w) < 0);
  assert_int_equal(tt_err_from_wire(TETHER__ERROR_CODE__ERR_INTERNAL), TT_EPEER);
  assert_int_equal(tt_err_from_wire(TETHER__ERROR_CODE__ERR_UNAVAILABLE), TT_ENOTFOUND);
  assert_int_equal(tt_err_from_wire((Tether__ErrorCode)999), TT_EPEER);
  assert_int_equal(tt_err_from_wire((Tether__ErrorCode)-5), TT_EPEER);
}

/* In-band channel control: read back as sent, bounded by the chunk size and the budget. */
static void test_ctrl_unpack(void **state) {
  (void)state;
  uint8_t buf[TT_DATA_CHUNK_MAX + 16];
  Tether__TermSize ts = TETHER__TERM_SIZE__INIT;
  ts.cols = 132;
  ts.rows = 43;
  Tether__ChannelControl cc = TETHER__CHANNEL_CONTROL__INIT;
  cc.body_case = TETHER__CHANNEL_CONTROL__BODY_RESIZE;
  cc.resize = &ts;
  size_t n = tether__channel_control__pack(&cc, buf);
  tt_msg_t m;
  assert_int_equal(tt_msg_unpack_ctrl(&m, buf, n), 0);
  const Tether__ChannelControl *got = (const Tether__ChannelControl *)m.m;
  assert_int_equal(got->body_case, TETHER__CHANNEL_CONTROL__BODY_RESIZE);
  assert_int_equal(got->resize->cols, 132);
  assert_int_equal(got->resize->rows, 43);
  tt_msg_free(&m);
  assert_int_equal(m.used, 0);
  /* Larger than one DATA chunk: refused before unpacking. */
  assert_int_equal(tt_msg_unpack_ctrl(&m, buf, TT_DATA_CHUNK_MAX + 1), TT_ETOOBIG);
  assert_null(m.m);
  /* Garbage. */
  memset(buf, 0xff, 64);
  assert_int_equal(tt_msg_unpack_ctrl(&m, buf, 64), TT_EPROTO);
  /* A chunk of tiny unknown fields costs far more than its bytes: the budget says no. */
  for (size_t i = 0; i + 2 <= TT_DATA_CHUNK_MAX; i += 2) {
    buf[i] = (uint8_t)((15u << 3) | 0u); /* field 15, varint */
    buf[i + 1] = 1;
  }
  assert_int_equal(tt_msg_unpack_ctrl(&m, buf, TT_DATA_CHUNK_MAX), TT_ETOOBIG);
  assert_null(m.m);
}

/* Access bits as people read and type them (console, agent prompt, broker messages). */
static void test_access_words(void **state) {
  (void)state;
  char b[32];
  assert_string_equal(tt_access_words(0, b, sizeof(b)), "none");
  assert_string_equal(tt_access_words(TETHER__ACCESS__ACCESS_SHELL, b, sizeof(b)), "shell");
  assert_string_equal(tt_access_words(TETHER__ACCESS__ACCESS_SHELL | TETHER__ACCESS__ACCESS_DIAG, b, sizeof(b)),
                      "shell,diag");
  assert_string_equal(tt_access_words(7, b, sizeof(b)), "shell,files,diag");
  /* Bits we have no word for are not shown as anything. */
  assert_string_equal(tt_access_words(0x80, b, sizeof(b)), "none");
  /* Too small: whole words only. */
  char s[12];
  assert_string_equal(tt_access_words(7, s, sizeof(s)), "shell,files");
  char t[4];
  assert_string_equal(tt_access_words(TETHER__ACCESS__ACCESS_SHELL, t, sizeof(t)), "non");
  uint32_t a;
  assert_int_equal(tt_access_parse("shell,diag", &a), 0);
  assert_int_equal(a, TETHER__ACCESS__ACCESS_SHELL | TETHER__ACCESS__ACCESS_DIAG);
  assert_int_equal(tt_access_parse("files", &a), 0);
  assert_int_equal(a, TETHER__ACCESS__ACCESS_FILES);
  assert_int_equal(tt_access_parse("", &a), TT_EINVAL);
  assert_int_equal(tt_access_parse("shell,root", &a), TT_EINVAL);
  assert_int_equal(tt_access_parse("shel", &a), TT_EINVAL);
}

/* What an exec ran, as the records show it. */
static void test_argv_line(void **state) {
  (void)state;
  char out[64];
  ProtobufCBinaryData a[] = {tt_text("sh"), tt_text("-c"), tt_text("echo hi; exit 3")};
  tt_argv_line(a, 3, out, sizeof(out));
  assert_string_equal(out, "sh -c 'echo hi; exit 3'");
  ProtobufCBinaryData b[] = {tt_text("printf"), tt_text("a\tb\n\x1b[2J"), tt_text("")};
  tt_argv_line(b, 3, out, sizeof(out));
  assert_string_equal(out, "printf a?b??[2J ''"); /* no TAB, newline or escape gets through */
  char small[12];
  ProtobufCBinaryData c[] = {tt_text("systemctl"), tt_text("restart"), tt_text("cups")};
  tt_argv_line(c, 3, small, sizeof(small));
  assert_string_equal(small, "systemct...");
  tt_argv_line(NULL, 0, out, sizeof(out));
  assert_string_equal(out, "");
}

/* What a SHELL or EXEC open runs, for the audit: its argv, its command line as given (ssh's
 * exec, exec -t), or nothing for a login shell. */
static void test_open_command_line(void **state) {
  (void)state;
  char out[64], small[12];
  Tether__ChannelOpen o = TETHER__CHANNEL_OPEN__INIT;
  tt_open_command_line(&o, out, sizeof(out));
  assert_string_equal(out, "");
  ProtobufCBinaryData a[] = {tt_text("echo"), tt_text("a b")};
  o.argv = a;
  o.n_argv = 2;
  tt_open_command_line(&o, out, sizeof(out));
  assert_string_equal(out, "echo 'a b'");
  o.argv = NULL;
  o.n_argv = 0;
  o.command = tt_text("journalctl -u cups\t| tail\n\x1b]0;x\a");
  tt_open_command_line(&o, out, sizeof(out));
  assert_string_equal(out, "journalctl -u cups?| tail??]0;x?");
  o.command = tt_text("systemctl restart cups");
  tt_open_command_line(&o, small, sizeof(small));
  assert_string_equal(small, "systemct...");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_descriptors),
      cmocka_unit_test(test_hello_round_trip),
      cmocka_unit_test(test_response_device_list_round_trip),
      cmocka_unit_test(test_encode_limits),
      cmocka_unit_test(test_malformed),
      cmocka_unit_test(test_budget_refuses_expansion),
      cmocka_unit_test(test_budget_is_hard_cap),
      cmocka_unit_test(test_budget_sweep),
      cmocka_unit_test(test_text_valid),
      cmocka_unit_test(test_text_refuses_format_chars),
      cmocka_unit_test(test_text_block),
      cmocka_unit_test(test_text_copy),
      cmocka_unit_test(test_tag_zero_refused),
      cmocka_unit_test(test_err_wire_round_trip),
      cmocka_unit_test(test_ctrl_unpack),
      cmocka_unit_test(test_open_command_line),
      cmocka_unit_test(test_access_words),
      cmocka_unit_test(test_argv_line),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
