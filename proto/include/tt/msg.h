/* Control messages: protobuf bodies for frame kinds, unpacked with a counting allocator that
 * refuses to grow past a budget, and checks for the untrusted text they carry. */
#ifndef TT_MSG_H
#define TT_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <protobuf-c/protobuf-c.h>
#include "tether.pb-c.h"
#include "tt/buf.h"
#include "tt/err.h"
#include "tt/frame.h"

#define TT_PROTO_VERSION 1u

/* One unpacked message and the allocator that owns it. Do not move between unpack and free. */
typedef struct {
  ProtobufCMessage *m;
  ProtobufCAllocator alloc;
  size_t used;
  size_t budget;
  bool refused; /* the allocator said no: the budget ran dry */
} tt_msg_t;

/* Descriptor for a control kind, NULL for DATA and unknown kinds. */
const ProtobufCMessageDescriptor *tt_msg_descriptor(uint8_t kind);
/* Unpack body as kind's message. TT_EKIND for a kind without a message, TT_ETOOBIG if the
 * allocator budget ran out, TT_EPROTO for malformed protobuf. On error msg->m is NULL. */
int tt_msg_unpack(tt_msg_t *msg, uint8_t kind, const uint8_t *body, size_t len, size_t budget) TT_WUR;
/* The ChannelControl a DATA frame with TT_FF_CTRL carries, under TT_CTRL_MSG_BUDGET, with
 * the same checks; msg->m is a Tether__ChannelControl. Free with tt_msg_free. */
int tt_msg_unpack_ctrl(tt_msg_t *msg, const uint8_t *body, size_t len) TT_WUR;
void tt_msg_free(tt_msg_t *msg);

/* Append header + packed body to out. TT_ETOOBIG if the body exceeds TT_FRAME_MAX_BODY,
 * TT_EFULL if out cannot take it. */
int tt_msg_encode(tt_buf_t *out, uint8_t kind, uint32_t channel, const ProtobufCMessage *m) TT_WUR;

/* Untrusted text: at most max bytes of valid UTF-8 with no control characters (and no NUL). */
bool tt_text_valid(ProtobufCBinaryData t, size_t max);
/* The same for text of many lines (a knowledge-base article): tab, CR and LF allowed too. */
bool tt_text_block_valid(ProtobufCBinaryData t, size_t max);
/* Copy validated text into a NUL-terminated buffer; TT_ETEXT if not valid or too long. */
int tt_text_copy(char *dst, size_t cap, ProtobufCBinaryData t) TT_WUR;
/* A ProtobufCBinaryData view of a C string (no copy). */
ProtobufCBinaryData tt_text(const char *s);

/* Access bits (tether.proto Access) as people read and type them: "shell,files,diag", and
 * "none" for none; whole words only when cap is short. Returns out. */
const char *tt_access_words(uint32_t access, char *out, size_t cap);
/* "shell,diag" -> Access bits; TT_EINVAL for an unknown word or an empty list. */
int tt_access_parse(const char *s, uint32_t *access) TT_WUR;

/* An exec's command line for people and records (audit, ticket, the employee's prompt):
 * arguments joined by spaces, quoted when they hold a space or a quote, anything that is not
 * printable ASCII shown as '?' (so never a TAB or newline), cut with "..." to fit cap. */
void tt_argv_line(const ProtobufCBinaryData *argv, size_t argc, char *out, size_t cap);
/* The same for what a SHELL or EXEC open runs: its argv, or its command line as it is (only
 * the same '?' for what is not printable, and the same cut); "" for a login shell. */
void tt_open_command_line(const Tether__ChannelOpen *o, char *out, size_t cap);

/* ErrorCode <-> our error codes. */
Tether__ErrorCode tt_err_to_wire(int err);
int tt_err_from_wire(Tether__ErrorCode code);

#endif
