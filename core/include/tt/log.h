/* Logging with levels and key=value fields, one line per event on stderr:
 *   ts=2026-11-23T18:04:17.123Z level=info mod=broker msg="agent connected" peer=127.0.0.1:5555 */
#ifndef TT_LOG_H
#define TT_LOG_H

#include <stddef.h>
#include "tt/err.h"

typedef enum { TT_LOG_DEBUG = 0, TT_LOG_INFO, TT_LOG_WARN, TT_LOG_ERROR, TT_LOG_OFF } tt_log_level_t;

void tt_log_set_level(tt_log_level_t lvl);
tt_log_level_t tt_log_get_level(void);
/* "debug", "info", "warn", "error", "off" -> level; TT_EINVAL otherwise. */
int tt_log_parse_level(const char *s, tt_log_level_t *out);

/* kvfmt is a printf format for the trailing fields ("peer=%s err=%s"), may be NULL. */
void tt_log(tt_log_level_t lvl, const char *mod, const char *msg, const char *kvfmt, ...) TT_PRINTF(4, 5);

/* Copies untrusted bytes into dst as a printable, NUL-terminated value: quotes, backslashes
 * and anything outside printable ASCII become \xNN. Truncates to fit. Returns dst. */
char *tt_log_quote(char *dst, size_t cap, const void *src, size_t len);

#define TT_DEBUG(mod, ...) \
  do { if (tt_log_get_level() <= TT_LOG_DEBUG) tt_log(TT_LOG_DEBUG, mod, __VA_ARGS__); } while (0)
#define TT_INFO(mod, ...) tt_log(TT_LOG_INFO, mod, __VA_ARGS__)
#define TT_WARN(mod, ...) tt_log(TT_LOG_WARN, mod, __VA_ARGS__)
#define TT_ERROR(mod, ...) tt_log(TT_LOG_ERROR, mod, __VA_ARGS__)

#endif
