/* Bytes as hex text and hex text as bytes: the one digit table of the tree, for digests,
 * tokens, ids and fingerprints, and for the escapers that write a byte as \xNN, \u00NN or _NN. */
#ifndef TT_HEX_H
#define TT_HEX_H

#include <stddef.h>
#include <stdint.h>
#include "tt/err.h"

/* The room tt_hex needs for n bytes: two digits each and the NUL. */
#define TT_HEX_CAP(n) (2 * (size_t)(n) + 1)

/* "0123456789abcdef": output is lower case everywhere (digests compare as text). */
extern const char tt_hex_digits[16];

/* The digit of v's low four bits. */
static inline char tt_hex_digit(unsigned v) { return tt_hex_digits[v & 15u]; }

/* The two digits of one byte into out[0..1], no NUL: for escapers that write a prefix of
 * their own (\x, \u00, _) before them. */
static inline void tt_hex_byte(char out[2], uint8_t b) {
  out[0] = tt_hex_digits[b >> 4];
  out[1] = tt_hex_digits[b & 15u];
}

/* A hex digit's value, '0'-'9', 'a'-'f' or 'A'-'F'; -1 for any other character. */
int tt_hex_value(int c);

/* The n bytes at p as 2n lower-case digits and a NUL; returns 2n. Refuses rather than
 * truncates: when cap < TT_HEX_CAP(n) nothing is written but out[0] = '\0' (if cap > 0) and
 * it returns 0, since half a digest reads as a valid but different one. */
size_t tt_hex(char *out, size_t cap, const uint8_t *p, size_t n);

/* The same with sep between bytes ("00:1a:2b" for a MAC, sep ':'): 3n - 1 characters and a
 * NUL; refuses like tt_hex when cap < 3n (cap < 1 for n == 0). */
size_t tt_hex_sep(char *out, size_t cap, const uint8_t *p, size_t n, char sep);

/* Exactly len hex digits at s (either case) as len / 2 bytes into out. Returns the number
 * of bytes; TT_EINVAL if len is odd or a character is not a digit, TT_ETOOBIG if len / 2 >
 * cap. Reading stops at the first non-digit, so a NUL-terminated s shorter than len is safe.
 * Nothing is written to out unless the whole text is good: no half of a bad value is kept. */
int tt_unhex(uint8_t *out, size_t cap, const char *s, size_t len) TT_WUR;

/* Exactly n (1 to 8) hex digits at s, either case, as a number: a \uXXXX escape (n = 4), a
 * kernel table's %X or %08X field. TT_EINVAL for n outside 1..8 or a non-digit (reading
 * stops there, as in tt_unhex); out is written only on success. */
int tt_hex_u32(const char *s, size_t n, uint32_t *out) TT_WUR;

#endif
