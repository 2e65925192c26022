/* JSON strings written by hand (the audit detail, recordings, the inventory's canonical rows,
 * the console's output): the one place that decides how a character is escaped. */
#ifndef TT_JSON_H
#define TT_JSON_H

#include <stddef.h>
#include <stdint.h>

/* Escapes a writer may take on beyond what JSON requires ('"', '\\', U+0000..U+001F as
 * \u00XX). Each writer's choice is part of its bytes on disk, so it stays the writer's. */
enum {
  TT_JSON_ESC_SHORT = 1u << 0, /* \b \f \n \r \t rather than \u0008 ... */
  TT_JSON_ESC_DEL = 1u << 1,   /* DEL (0x7f) as \u007f: valid raw in JSON, not on a terminal */
};

/* The longest escape: a surrogate pair, \ud83d\ude00. */
#define TT_JSON_ESC_MAX 12

/* The escape of one byte inside a JSON string into out (not NUL-terminated): its length,
 * 2 or 6, or 0 when the byte goes as it is (every byte >= 0x80 does: UTF-8 is the
 * caller's to check). Hex digits are lower case. */
size_t tt_json_escape_byte(char out[TT_JSON_ESC_MAX], uint8_t c, unsigned flags);

/* A code point as \uXXXX (6 bytes), or above U+FFFF as its surrogate pair (12 bytes), for
 * characters that must not appear raw (tt_cp_unsafe). cp must be at most U+10FFFF. */
size_t tt_json_escape_cp(char out[TT_JSON_ESC_MAX], uint32_t cp);

#endif
