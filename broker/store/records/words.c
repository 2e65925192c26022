/* A person's name as a word (store.h "a person's erasure"): found in any case, and only where
 * it stands alone: "Nadia.K asked", "for nadia.k.", «nadia.k», "mail nadia.k@corp" and a
 * JSON "\tnadia.k" name nadia.k; "nadia.kim", "jo.nadia.k" and "nadia.k2" do not. Letters,
 * digits, . _ - and letters continue a name (a name in Latin letters only Latin ones: "私はnadia.k"
 * names nadia.k); spaces, punctuation and symbols (ASCII, Latin-1's, the general punctuation
 * block, CJK and full-width punctuation) end it, and a trailing . _ - ends it when nothing of a name follows ("for nadia.k."). Two SQL
 * functions on the store's connections do the finding and the rewriting: tt_names(text, name)
 * (tt_names_json for JSON text, where an escape before the name separates it) and
 * tt_rename(text, name, pseudonym[, max bytes]). */
#include <ctype.h>
#include <stdlib.h>
#include <strings.h>
#include "../internal.h"

#define MOD "store"

/* A code point that ends a name rather than continuing it. */
static bool separator(uint32_t c) {
  return (c >= 0x80 && c <= 0xbf) || c == 0xd7 || c == 0xf7 || (c >= 0x2000 && c <= 0x206f) ||
         (c >= 0x2190 && c <= 0x2bff) || (c >= 0x3000 && c <= 0x303f) || (c >= 0xfe10 && c <= 0xfe1f) ||
         (c >= 0xfe30 && c <= 0xfe4f) || c == 0xfeff || (c >= 0xff01 && c <= 0xff0f) ||
         (c >= 0xff1a && c <= 0xff20) || (c >= 0xff3b && c <= 0xff40) || (c >= 0xff5b && c <= 0xff65);
}

static bool ascii_name(unsigned char c) { return isalnum(c) || c == '.' || c == '_' || c == '-'; }

/* The code point of the UTF-8 sequence starting at t[i] (0xfffd for a broken one). */
static uint32_t decode(const char *t, size_t len, size_t i) {
  const unsigned char *u = (const unsigned char *)t;
  size_t n = u[i] >= 0xf0 ? 4 : u[i] >= 0xe0 ? 3 : u[i] >= 0xc0 ? 2 : 1;
  if (n == 1 || i + n > len) return 0xfffd;
  uint32_t c = u[i] & (0x7f >> n);
  for (size_t k = 1; k < n; k++) {
    if ((u[i + k] & 0xc0) != 0x80) return 0xfffd;
    c = (c << 6) | (u[i + k] & 0x3f);
  }
  return c;
}

/* Whether code point c continues a name whose own edge is ASCII (latin) or not: a Latin name
 * goes on only in Latin letters ("nadia.kß"), so that "私はnadia.k。" names nadia.k. */
static bool continues(uint32_t c, bool latin) {
  if (separator(c)) return false;
  return !latin || (c >= 0xc0 && c <= 0x24f) || (c >= 0x1e00 && c <= 0x1eff);
}

/* Whether the backslash at t[i] starts an escape: an odd run of backslashes ends at it. */
static bool escaping(const char *t, size_t i) {
  size_t n = 0;
  while (n <= i && t[i - n] == '\\') n++;
  return n % 2 == 1;
}

/* Whether the character that ends just before t[at] continues a name. In JSON text (the
 * audit's values, as written) an escape there (\t, \n, \u0009) is a separator. */
static bool name_before(const char *t, size_t at, bool latin, bool json) {
  if (at == 0) return false;
  unsigned char c = (unsigned char)t[at - 1];
  if (c < 0x80) {
    if (!ascii_name(c)) return false;
    if (json && at >= 2 && t[at - 2] == '\\' && strchr("tnrbf", c) && escaping(t, at - 2)) return false;
    if (json && at >= 6 && t[at - 6] == '\\' && t[at - 5] == 'u' && isxdigit((unsigned char)t[at - 4]) &&
        isxdigit((unsigned char)t[at - 3]) && isxdigit((unsigned char)t[at - 2]) && isxdigit(c) && escaping(t, at - 6))
      return false;
    return true;
  }
  size_t i = at - 1;
  while (i > 0 && ((unsigned char)t[i] & 0xc0) == 0x80 && at - i < 4) i--;
  return continues(decode(t, at, i), latin);
}

static bool name_after(const char *t, size_t len, size_t i, bool latin) {
  if (i >= len) return false;
  unsigned char c = (unsigned char)t[i];
  return c < 0x80 ? ascii_name(c) : continues(decode(t, len, i), latin);
}

/* The name at t[at] is a word: nothing of a name before it, and after it at most the . _ - that
 * end a sentence, not one that goes on ("nadia.k.smith"). */
static bool word_at(const char *t, size_t len, size_t at, size_t nlen, bool json) {
  if (name_before(t, at, (unsigned char)t[at] < 0x80, json)) return false;
  size_t i = at + nlen;
  bool latin_end = (unsigned char)t[at + nlen - 1] < 0x80;
  while (i < len && (t[i] == '.' || t[i] == '_' || t[i] == '-')) i++;
  return !name_after(t, len, i, latin_end);
}

static const char *find_word(const char *t, size_t len, const char *name, size_t nlen, bool json) {
  for (size_t at = 0; nlen && at + nlen <= len; at++)
    if (strncasecmp(t + at, name, nlen) == 0 && word_at(t, len, at, nlen, json)) return t + at;
  return NULL;
}

bool store_erase_names(const char *t, size_t len, const char *name) {
  return find_word(t, len, name, strlen(name), false) != NULL;
}

bool store_erase_names_json(const char *t, size_t len, const char *name) {
  return find_word(t, len, name, strlen(name), true) != NULL;
}

bool store_erase_is(const char *t, size_t len, const char *name) {
  return len == strlen(name) && strncasecmp(t, name, len) == 0;
}

char *store_erase_rewrite(const char *t, size_t len, const char *name, const char *pseudo, size_t max, size_t *outlen) {
  size_t nlen = strlen(name), plen = strlen(pseudo), n = 0;
  for (size_t i = 0; nlen && i + nlen <= len; i++)
    if (strncasecmp(t + i, name, nlen) == 0 && word_at(t, len, i, nlen, false)) n++, i += nlen - 1;
  char *out = malloc(len + n * (plen > nlen ? plen - nlen : 0) + 1);
  if (!out) return NULL;
  size_t o = 0;
  for (size_t i = 0; i < len;) {
    if (nlen && i + nlen <= len && strncasecmp(t + i, name, nlen) == 0 && word_at(t, len, i, nlen, false)) {
      memcpy(out + o, pseudo, plen);
      o += plen;
      i += nlen;
    } else {
      out[o++] = t[i++];
    }
  }
  if (max && o > max) {
    o = max;
    while (o > 0 && ((unsigned char)out[o] & 0xc0) == 0x80) o--;
  }
  out[o] = '\0';
  if (outlen) *outlen = o;
  return out;
}

static void fn_has(sqlite3_context *cx, int argc, sqlite3_value **av) {
  (void)argc;
  const char *t = (const char *)sqlite3_value_text(av[0]), *name = (const char *)sqlite3_value_text(av[1]);
  sqlite3_result_int(cx, t && name && name[0] && store_erase_names(t, (size_t)sqlite3_value_bytes(av[0]), name));
}

static void fn_has_json(sqlite3_context *cx, int argc, sqlite3_value **av) {
  (void)argc;
  const char *t = (const char *)sqlite3_value_text(av[0]), *name = (const char *)sqlite3_value_text(av[1]);
  sqlite3_result_int(cx, t && name && name[0] && store_erase_names_json(t, (size_t)sqlite3_value_bytes(av[0]), name));
}

static void fn_rewrite(sqlite3_context *cx, int argc, sqlite3_value **av) {
  const char *t = (const char *)sqlite3_value_text(av[0]), *name = (const char *)sqlite3_value_text(av[1]),
             *pseudo = (const char *)sqlite3_value_text(av[2]);
  if (!t || !name || !name[0] || !pseudo) {
    sqlite3_result_value(cx, av[0]);
    return;
  }
  size_t max = argc > 3 ? (size_t)sqlite3_value_int64(av[3]) : 0, n = 0;
  char *out = store_erase_rewrite(t, (size_t)sqlite3_value_bytes(av[0]), name, pseudo, max, &n);
  if (!out) {
    sqlite3_result_error_nomem(cx);
    return;
  }
  sqlite3_result_text(cx, out, (int)n, free);
}

int store_prepare_erase(broker_store_t *s) {
  int f = SQLITE_UTF8 | SQLITE_DETERMINISTIC | SQLITE_DIRECTONLY;
  if (sqlite3_create_function_v2(s->db, "tt_names", 2, f, NULL, fn_has, NULL, NULL, NULL) != SQLITE_OK ||
      sqlite3_create_function_v2(s->db, "tt_names_json", 2, f, NULL, fn_has_json, NULL, NULL, NULL) != SQLITE_OK ||
      sqlite3_create_function_v2(s->db, "tt_rename", 3, f, NULL, fn_rewrite, NULL, NULL, NULL) != SQLITE_OK ||
      sqlite3_create_function_v2(s->db, "tt_rename", 4, f, NULL, fn_rewrite, NULL, NULL, NULL) != SQLITE_OK) {
    TT_ERROR(MOD, "cannot add the erase functions", "err=\"%s\"", sqlite3_errmsg(s->db));
    return TT_EIO;
  }
  return 0;
}
