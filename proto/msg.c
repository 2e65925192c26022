/* Control-message bodies: protobuf with a counting allocator, and untrusted-text checks. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "tt/limits.h"
#include "tt/msg.h"

const ProtobufCMessageDescriptor *tt_msg_descriptor(uint8_t kind) {
  switch (kind) {
  case TT_K_HELLO: return &tether__hello__descriptor;
  case TT_K_WELCOME: return &tether__welcome__descriptor;
  case TT_K_ERROR: return &tether__error__descriptor;
  case TT_K_PING: return &tether__ping__descriptor;
  case TT_K_PONG: return &tether__pong__descriptor;
  case TT_K_CH_OPEN: return &tether__channel_open__descriptor;
  case TT_K_CH_ACCEPT: return &tether__channel_accept__descriptor;
  case TT_K_CH_REJECT: return &tether__channel_reject__descriptor;
  case TT_K_CH_CLOSE: return &tether__channel_close__descriptor;
  case TT_K_WINDOW: return &tether__window_adjust__descriptor;
  case TT_K_REQUEST: return &tether__request__descriptor;
  case TT_K_RESPONSE: return &tether__response__descriptor;
  default: return NULL;
  }
}

/* Each allocation carries its size in front so that frees return budget. */
typedef struct {
  size_t size;
  max_align_t align[];
} alloc_hdr_t;

static void *count_alloc(void *data, size_t size) {
  tt_msg_t *msg = data;
  /* size is checked first so total cannot overflow; used <= budget always holds, so
   * budget - used cannot wrap (budget - total could, and then let anything through). */
  if (size > msg->budget) {
    msg->refused = true;
    return NULL;
  }
  size_t total = sizeof(alloc_hdr_t) + size;
  if (total > msg->budget - msg->used) {
    msg->refused = true;
    return NULL;
  }
  alloc_hdr_t *h = malloc(total);
  if (!h) return NULL;
  h->size = total;
  msg->used += total;
  return h->align;
}

static void count_free(void *data, void *p) {
  tt_msg_t *msg = data;
  if (!p) return;
  alloc_hdr_t *h = (alloc_hdr_t *)((uint8_t *)p - offsetof(alloc_hdr_t, align));
  msg->used -= h->size;
  free(h);
}

/* protobuf-c 1.4 keeps a field numbered 0 as "unknown" when its tag is written in more
 * than one byte, yet refuses the same bytes once re-packed. No valid sender writes field 0:
 * refuse such messages here, at any depth, before anyone re-encodes them. */
static bool has_bad_unknown(const ProtobufCMessage *m, int depth) {
  if (depth > 8) return true; /* our schema nests three deep */
  for (unsigned i = 0; i < m->n_unknown_fields; i++)
    if (m->unknown_fields[i].tag == 0) return true;
  const ProtobufCMessageDescriptor *d = m->descriptor;
  for (unsigned i = 0; i < d->n_fields; i++) {
    const ProtobufCFieldDescriptor *f = &d->fields[i];
    if (f->type != PROTOBUF_C_TYPE_MESSAGE) continue;
    const char *base = (const char *)m;
    if (f->label == PROTOBUF_C_LABEL_REPEATED) {
      size_t n = *(const size_t *)(base + f->quantifier_offset);
      ProtobufCMessage *const *v = *(ProtobufCMessage *const *const *)(base + f->offset);
      for (size_t k = 0; k < n; k++)
        if (v[k] && has_bad_unknown(v[k], depth + 1)) return true;
    } else {
      if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
          *(const uint32_t *)(base + f->quantifier_offset) != f->id)
        continue;
      const ProtobufCMessage *sub = *(ProtobufCMessage *const *)(base + f->offset);
      if (sub && has_bad_unknown(sub, depth + 1)) return true;
    }
  }
  return false;
}

static int unpack(tt_msg_t *msg, const ProtobufCMessageDescriptor *d, const uint8_t *body, size_t len,
                  size_t budget) {
  msg->budget = budget;
  msg->alloc.alloc = count_alloc;
  msg->alloc.free = count_free;
  msg->alloc.allocator_data = msg;
  msg->m = protobuf_c_message_unpack(d, &msg->alloc, len, body);
  if (!msg->m) {
    return msg->refused ? TT_ETOOBIG : TT_EPROTO;
  }
  if (has_bad_unknown(msg->m, 0)) {
    tt_msg_free(msg);
    return TT_EPROTO;
  }
  return 0;
}

int tt_msg_unpack(tt_msg_t *msg, uint8_t kind, const uint8_t *body, size_t len, size_t budget) {
  memset(msg, 0, sizeof(*msg));
  const ProtobufCMessageDescriptor *d = tt_msg_descriptor(kind);
  if (!d) return TT_EKIND;
  return unpack(msg, d, body, len, budget);
}

int tt_msg_unpack_ctrl(tt_msg_t *msg, const uint8_t *body, size_t len) {
  memset(msg, 0, sizeof(*msg));
  if (len > TT_DATA_CHUNK_MAX) return TT_ETOOBIG;
  return unpack(msg, &tether__channel_control__descriptor, body, len, TT_CTRL_MSG_BUDGET);
}

void tt_msg_free(tt_msg_t *msg) {
  if (msg->m) protobuf_c_message_free_unpacked(msg->m, &msg->alloc);
  msg->m = NULL;
}

int tt_msg_encode(tt_buf_t *out, uint8_t kind, uint32_t channel, const ProtobufCMessage *m) {
  size_t len = protobuf_c_message_get_packed_size(m);
  if (len > TT_FRAME_MAX_BODY) return TT_ETOOBIG;
  int rc = tt_buf_reserve(out, TT_FRAME_HDR + len);
  if (rc) return rc;
  uint8_t *p = tt_buf_tail(out);
  tt_frame_header_encode(p, kind, 0, channel, (uint32_t)len);
  protobuf_c_message_pack(m, p + TT_FRAME_HDR);
  tt_buf_commit(out, TT_FRAME_HDR + len);
  return 0;
}

/* Unicode format characters (category Cf): bidi overrides, zero-width joiners and spaces,
 * invisible tags. In a hostname they make one line of `tether devices` pass for another. */
static bool is_format_char(uint32_t cp) {
  return cp == 0xad || (cp >= 0x600 && cp <= 0x605) || cp == 0x61c || cp == 0x6dd || cp == 0x70f ||
         cp == 0x180e || (cp >= 0x200b && cp <= 0x200f) || (cp >= 0x202a && cp <= 0x202e) ||
         (cp >= 0x2060 && cp <= 0x2064) || (cp >= 0x2066 && cp <= 0x206f) || cp == 0xfeff ||
         (cp >= 0xfff9 && cp <= 0xfffb) || cp == 0xe0001 || (cp >= 0xe0020 && cp <= 0xe007f);
}

/* Strict UTF-8 (no overlongs, no surrogates, max U+10FFFF), no C0/C1 controls or DEL, no
 * format characters. */
static bool text_valid(ProtobufCBinaryData t, size_t max, bool block) {
  if (t.len > max) return false;
  const uint8_t *s = t.data;
  size_t i = 0;
  while (i < t.len) {
    uint8_t c = s[i];
    if (c < 0x80) {
      if ((c < 0x20 && !(block && (c == '\t' || c == '\n' || c == '\r'))) || c == 0x7f) return false;
      i++;
      continue;
    }
    uint32_t cp;
    size_t n;
    if ((c & 0xe0) == 0xc0) { cp = c & 0x1f; n = 1; }
    else if ((c & 0xf0) == 0xe0) { cp = c & 0x0f; n = 2; }
    else if ((c & 0xf8) == 0xf0) { cp = c & 0x07; n = 3; }
    else return false;
    if (t.len - i <= n) return false;
    for (size_t k = 1; k <= n; k++) {
      if ((s[i + k] & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (s[i + k] & 0x3f);
    }
    if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000)) return false;
    if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
    if (cp >= 0x80 && cp <= 0x9f) return false;
    if (is_format_char(cp)) return false;
    i += n + 1;
  }
  return true;
}

bool tt_text_valid(ProtobufCBinaryData t, size_t max) { return text_valid(t, max, false); }

bool tt_text_block_valid(ProtobufCBinaryData t, size_t max) { return text_valid(t, max, true); }

int tt_text_copy(char *dst, size_t cap, ProtobufCBinaryData t) {
  if (cap == 0) return TT_EINVAL;
  dst[0] = '\0';
  if (t.len >= cap || !tt_text_valid(t, cap - 1)) return TT_ETEXT;
  if (t.len) memcpy(dst, t.data, t.len);
  dst[t.len] = '\0';
  return 0;
}

ProtobufCBinaryData tt_text(const char *s) {
  ProtobufCBinaryData b = {s ? strlen(s) : 0, (uint8_t *)(uintptr_t)s};
  return b;
}

Tether__ErrorCode tt_err_to_wire(int err) {
  switch (err) {
  case 0: return TETHER__ERROR_CODE__ERR_NONE;
  case TT_EPROTO: case TT_EKIND: case TT_ETEXT: return TETHER__ERROR_CODE__ERR_PROTOCOL;
  case TT_EVERSION: return TETHER__ERROR_CODE__ERR_VERSION;
  case TT_EROLE: return TETHER__ERROR_CODE__ERR_ROLE;
  case TT_ETOOBIG: case TT_EFULL: return TETHER__ERROR_CODE__ERR_TOO_BIG;
  case TT_EWINDOW: return TETHER__ERROR_CODE__ERR_WINDOW;
  case TT_ECHANNEL: return TETHER__ERROR_CODE__ERR_CHANNEL;
  case TT_ENOTFOUND: return TETHER__ERROR_CODE__ERR_NOT_FOUND;
  case TT_EBUSY: return TETHER__ERROR_CODE__ERR_BUSY;
  case TT_ETIMEOUT: return TETHER__ERROR_CODE__ERR_TIMEOUT;
  case TT_EDENIED: return TETHER__ERROR_CODE__ERR_DENIED;
  case TT_ECLOSED: return TETHER__ERROR_CODE__ERR_CLOSED;
  case TT_EINVAL: return TETHER__ERROR_CODE__ERR_INVALID;
  default: return TETHER__ERROR_CODE__ERR_INTERNAL;
  }
}

int tt_err_from_wire(Tether__ErrorCode code) {
  switch (code) {
  case TETHER__ERROR_CODE__ERR_NONE: return 0;
  case TETHER__ERROR_CODE__ERR_PROTOCOL: return TT_EPROTO;
  case TETHER__ERROR_CODE__ERR_VERSION: return TT_EVERSION;
  case TETHER__ERROR_CODE__ERR_ROLE: return TT_EROLE;
  case TETHER__ERROR_CODE__ERR_TOO_BIG: return TT_ETOOBIG;
  case TETHER__ERROR_CODE__ERR_WINDOW: return TT_EWINDOW;
  case TETHER__ERROR_CODE__ERR_CHANNEL: return TT_ECHANNEL;
  case TETHER__ERROR_CODE__ERR_NOT_FOUND: return TT_ENOTFOUND;
  case TETHER__ERROR_CODE__ERR_BUSY: return TT_EBUSY;
  case TETHER__ERROR_CODE__ERR_TIMEOUT: return TT_ETIMEOUT;
  case TETHER__ERROR_CODE__ERR_DENIED: return TT_EDENIED;
  case TETHER__ERROR_CODE__ERR_UNAVAILABLE: return TT_ENOTFOUND;
  case TETHER__ERROR_CODE__ERR_CLOSED: return TT_ECLOSED;
  case TETHER__ERROR_CODE__ERR_INVALID: return TT_EINVAL;
  default: return TT_EPEER;
  }
}

static const struct {
  uint32_t bit;
  const char *word;
} k_access[] = {
    {TETHER__ACCESS__ACCESS_SHELL, "shell"},
    {TETHER__ACCESS__ACCESS_FILES, "files"},
    {TETHER__ACCESS__ACCESS_DIAG, "diag"},
};
#define NACCESS (sizeof(k_access) / sizeof(k_access[0]))

const char *tt_access_words(uint32_t access, char *out, size_t cap) {
  size_t n = 0;
  out[0] = '\0';
  for (size_t i = 0; i < NACCESS; i++) {
    if (!(access & k_access[i].bit)) continue;
    int k = snprintf(out + n, cap - n, "%s%s", n ? "," : "", k_access[i].word);
    if (k < 0 || (size_t)k >= cap - n) {
      out[n] = '\0'; /* whole words only */
      break;
    }
    n += (size_t)k;
  }
  if (n == 0) snprintf(out, cap, "none");
  return out;
}

int tt_access_parse(const char *s, uint32_t *access) {
  *access = 0;
  while (*s) {
    size_t n = strcspn(s, ",");
    bool known = false;
    for (size_t i = 0; i < NACCESS; i++)
      if (strlen(k_access[i].word) == n && strncmp(s, k_access[i].word, n) == 0) {
        *access |= k_access[i].bit;
        known = true;
      }
    if (!known) return TT_EINVAL;
    s += n;
    if (*s == ',') s++;
  }
  return *access ? 0 : TT_EINVAL;
}

void tt_argv_line(const ProtobufCBinaryData *argv, size_t argc, char *out, size_t cap) {
  size_t n = 0;
  out[0] = '\0';
  for (size_t i = 0; i < argc; i++) {
    ProtobufCBinaryData a = argv[i];
    bool quote = a.len == 0 || memchr(a.data, ' ', a.len) || memchr(a.data, '\'', a.len) ||
                 memchr(a.data, '"', a.len);
    char piece[TT_EXEC_ARG_MAX + 4];
    size_t k = 0;
    if (i) piece[k++] = ' ';
    if (quote) piece[k++] = '\'';
    for (size_t j = 0; j < a.len && k < sizeof(piece) - 2; j++) {
      uint8_t ch = a.data[j];
      piece[k++] = ch >= 0x20 && ch < 0x7f ? (char)ch : '?';
    }
    if (quote) piece[k++] = '\'';
    if (n + k >= cap) { /* cut, and say so: "..." at the very end, over what it must */
      if (cap < 4) break;
      size_t end = cap - 4;
      if (end > n) memcpy(out + n, piece, end - n);
      memcpy(out + end, "...", 3);
      n = end + 3;
      break;
    }
    memcpy(out + n, piece, k);
    n += k;
  }
  out[n] = '\0';
}

void tt_open_command_line(const Tether__ChannelOpen *o, char *out, size_t cap) {
  if (!o->command.len) {
    if (o->n_argv) tt_argv_line(o->argv, o->n_argv, out, cap);
    else if (cap) out[0] = '\0';
    return;
  }
  if (cap == 0) return;
  size_t n = 0;
  for (size_t j = 0; j < o->command.len; j++) {
    if (n + 1 >= cap) { /* cut, and say so */
      n = cap >= 4 ? cap - 4 : 0;
      if (cap >= 4) memcpy(out + n, "...", 3), n += 3;
      break;
    }
    uint8_t ch = o->command.data[j];
    out[n++] = ch >= 0x20 && ch < 0x7f ? (char)ch : '?';
  }
  out[n] = '\0';
}
