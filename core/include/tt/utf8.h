/* UTF-8 for text from peers and from the machine: the one decoder the programs share, what
 * must never be shown raw, and a copy that is always valid UTF-8 (for JSON libraries, which
 * refuse anything else, and for terminals). */
#ifndef TT_UTF8_H
#define TT_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One strict UTF-8 sequence at s (no overlongs, surrogates or > U+10FFFF): its length and
 * code point, or 0 if the bytes there are not one. */
size_t tt_utf8_decode(const uint8_t *s, size_t n, uint32_t *cp);
/* Not to be shown raw: C0 controls, DEL, C1 controls, Unicode format characters (bidi
 * overrides, zero-width), and U+2028/2029 (line ends for JavaScript readers). */
bool tt_cp_unsafe(uint32_t cp);
/* Copy n bytes of src into dst (cap bytes, NUL-terminated): each byte that does not start a
 * valid sequence, and each NUL, becomes U+FFFD; cut at a whole character when dst is full.
 * Returns the length written. */
size_t tt_utf8_sanitize(char *dst, size_t cap, const void *src, size_t n);

#endif
