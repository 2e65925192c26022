/* Config files and flags from one table per program (the Redis habit): every option has a
 * name, a type, a default and bounds, and every error names where it came from (file:line). */
#ifndef TT_CONF_H
#define TT_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include "tt/err.h"

typedef enum {
  TT_CONF_INT,      /* int64_t; decimal, optional leading '-', nothing else */
  TT_CONF_BOOL,     /* bool; true/false/yes/no/on/off/1/0 (lower case only) */
  TT_CONF_STR,      /* char[size]; min/max bound the length */
  TT_CONF_DURATION, /* int64_t milliseconds; "250ms", "30s", "5m", "2h", "1d" (bare number = ms);
                     * digits then one lower-case unit, no sign, fraction or spaces */
  TT_CONF_SIZE,     /* int64_t bytes; "512", "64k", "16M", "1G", "2T": digits, then optionally
                     * k/m/g/t, then optionally "B" or "iB"; case-insensitive; always powers of
                     * 1024 ("1MB" = "1MiB" = 1048576); no sign, fraction or spaces */
  TT_CONF_ENUM,     /* int; value must be one of `choices` ("ask|unattended|deny"), stored as index */
} tt_conf_type_t;

typedef struct {
  const char *name;    /* "key" or "section.key"; in a file, key sits under [section] */
  const char *flag;    /* command-line flag without dashes ("listen"), or NULL */
  tt_conf_type_t type;
  size_t offset;       /* offsetof(the program's config struct, field) */
  size_t size;         /* TT_CONF_STR: capacity of the char array, including NUL */
  int64_t min, max;    /* inclusive bounds, in the stored units (ms, bytes); both 0 = unbounded.
                        * STR: length bounds; max 0 = size - 1. Unused for BOOL and ENUM. */
  const char *def;     /* default as text, parsed like a file value; NULL = empty/0 */
  const char *choices; /* TT_CONF_ENUM: "a|b|c" */
  const char *help;    /* one line for --help */
} tt_conf_opt_t;

/* Fill every field from its default. A default that fails its own type or bounds is a bug in
 * the table: TT_ECONFIG with err = "default of name: reason". */
int tt_conf_defaults(const tt_conf_opt_t *t, size_t n, void *cfg, char *err, size_t errlen) TT_WUR;
/* Read `path`: `key = value` lines, `[section]` headers, `#` comments, blank lines;
 * values may be "double quoted". An unknown key, a bad value, an out-of-range value or a
 * malformed line is TT_ECONFIG with err = "path:line: reason". Details: a comment is a line
 * starting with '#', or " #..." after an unquoted value ("a#b" stays a value). Quoted values
 * know only the escapes \" and \\; after the closing quote only a comment may follow. A key
 * may also be written "section.key" at top level. Repeated sections are fine; a key set twice
 * keeps the last value. Lines over 4096 bytes and NUL bytes are errors. A value error reads
 * "path:line: section.key: reason"; an unreadable file "path: strerror". Fields already set
 * before an error keep their new values: treat any error as fatal. */
int tt_conf_load(const tt_conf_opt_t *t, size_t n, void *cfg, const char *path,
                 char *err, size_t errlen) TT_WUR;
/* Keys a program checks with a catalogue of its own (the agent's checks.*): a file key under
 * `prefix` ("checks.") that the table does not name goes, whole ("checks.disk_used.period"), to
 * fn, which says why it is wrong in err (nonzero return); the error then reads
 * "path:line: <err>". */
typedef struct {
  const char *prefix;
  int (*fn)(void *ctx, const char *name, const char *value, char *err, size_t errlen);
  void *ctx;
} tt_conf_extra_t;

/* tt_conf_load, with extra (NULL: none) taking the keys under its prefix. */
int tt_conf_load_extra(const tt_conf_opt_t *t, size_t n, void *cfg, const char *path, const tt_conf_extra_t *extra,
                       char *err, size_t errlen) TT_WUR;
/* Set one option by name ("section.key") from text; `where` prefixes errors ("--listen"),
 * or the option's name when `where` is NULL. TT_ECONFIG on error, field left unchanged. */
int tt_conf_set(const tt_conf_opt_t *t, size_t n, void *cfg, const char *name, const char *value,
                const char *where, char *err, size_t errlen) TT_WUR;
/* Find the option whose flag is `flag`; NULL if none. */
const tt_conf_opt_t *tt_conf_find_flag(const tt_conf_opt_t *t, size_t n, const char *flag);
/* Print "  --flag VALUE   help (default: x)" lines, and the config-file names. */
void tt_conf_print_help(FILE *out, const tt_conf_opt_t *t, size_t n);

/* Parse helpers, also used for flags such as --for 30m. 0 or TT_EINVAL. */
int tt_conf_parse_duration(const char *s, int64_t *ms) TT_WUR;
int tt_conf_parse_size(const char *s, int64_t *bytes) TT_WUR;

#endif
