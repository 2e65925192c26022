/* The signer's messages (see signer.h): encoded and checked here, for both ends. */
#include <string.h>
#include "signer.h"
#include "tt/cert.h"

static uint8_t *put_u32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24);
  p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
  return p + 4;
}

static uint32_t get_u32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

size_t broker_sign_req_encode(const broker_sign_req_t *r, uint8_t *out, size_t cap) {
  size_t n = strlen(r->device_id);
  if (n == 0 || n > TT_NAME_MAX || r->csr_len == 0 || r->csr_len > UINT16_MAX) return 0;
  size_t body = 1 + 4 + 4 + 1 + n + 2 + r->csr_len;
  if (body > TT_SIGNER_REQUEST_MAX || BROKER_SIGNER_HDR + body > cap) return 0;
  uint8_t *p = put_u32(out, (uint32_t)body);
  *p++ = BROKER_SIGNER_VERSION;
  p = put_u32(p, r->id);
  p = put_u32(p, r->seconds);
  *p++ = (uint8_t)n;
  memcpy(p, r->device_id, n);
  p += n;
  *p++ = (uint8_t)(r->csr_len >> 8);
  *p++ = (uint8_t)r->csr_len;
  memcpy(p, r->csr, r->csr_len);
  return BROKER_SIGNER_HDR + body;
}

size_t broker_sign_reply_encode(const broker_sign_reply_t *r, uint8_t *out, size_t cap) {
  if (r->len > UINT16_MAX) return 0;
  size_t body = 1 + 4 + 4 + 2 + r->len;
  if (body > TT_SIGNER_REPLY_MAX || BROKER_SIGNER_HDR + body > cap) return 0;
  uint8_t *p = put_u32(out, (uint32_t)body);
  *p++ = BROKER_SIGNER_VERSION;
  p = put_u32(p, r->id);
  p = put_u32(p, (uint32_t)r->status);
  *p++ = (uint8_t)(r->len >> 8);
  *p++ = (uint8_t)r->len;
  if (r->len) memcpy(p, r->data, r->len);
  return BROKER_SIGNER_HDR + body;
}

/* On failure only the id is kept (for the error reply): nothing unchecked leaves here. */
static int req_bad(broker_sign_req_t *out) {
  uint32_t id = out->id;
  memset(out, 0, sizeof(*out));
  out->id = id;
  return TT_EPROTO;
}

int broker_sign_req_decode(const uint8_t *p, size_t len, broker_sign_req_t *out) {
  memset(out, 0, sizeof(*out));
  if (len < 1 + 4 + 4 + 1 || p[0] != BROKER_SIGNER_VERSION) return TT_EPROTO;
  out->id = get_u32(p + 1);
  out->seconds = get_u32(p + 5);
  size_t n = p[9], at = 10;
  if (n == 0 || n > TT_NAME_MAX || len < at + n + 2) return req_bad(out);
  memcpy(out->device_id, p + at, n);
  out->device_id[n] = '\0';
  at += n;
  size_t m = (size_t)p[at] << 8 | p[at + 1];
  at += 2;
  if (m == 0 || len != at + m) return req_bad(out); /* truncated, or bytes after the CSR */
  if (!tt_name_valid(out->device_id)) return req_bad(out);
  out->csr = p + at;
  out->csr_len = m;
  return 0;
}

int broker_sign_reply_decode(const uint8_t *p, size_t len, broker_sign_reply_t *out) {
  memset(out, 0, sizeof(*out));
  if (len < 1 + 4 + 4 + 2 || p[0] != BROKER_SIGNER_VERSION) return TT_EPROTO;
  out->id = get_u32(p + 1);
  out->status = (int32_t)get_u32(p + 5);
  size_t n = (size_t)p[9] << 8 | p[10];
  if (len != 11 + n || out->status > 0) return TT_EPROTO;
  out->data = n ? p + 11 : NULL;
  out->len = n;
  return 0;
}
