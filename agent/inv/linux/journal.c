/* journal_errors: the last messages of priority err or worse in systemd's journal, through
 * `journalctl -o json` (one JSON object a line), for the diagnostics report. Their text is a
 * log's, so it is where secrets show up most: table.c redacts each cell as it is added. */
#include <jansson.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include "linux.h"
#include "scan.h"
#include "tt/err.h"

/* The lines asked for: the last few errors are what a call is about; 50 covers a burst. */
#define JOURNAL_LINES "50"
#define JOURNAL_ERR_MAX 256
/* A field journalctl gives as an array of byte values (text that is not UTF-8): at most a
 * cell's worth is taken. */
#define JOURNAL_BYTES_MAX (INV_CELL_MAX + 4)

const char *const inv_linux_journal_errors_cols[] = {"time", "unit", "identifier", "priority", "message", NULL};

/* A field as text: a string, or the array of byte values journalctl prints for one that is
 * not valid UTF-8 (bad bytes are made U+FFFD when the row is added); "" for anything else
 * (null: a field journalctl left out as too large). A string returned may be buf or the
 * JSON's own. */
static const char *field(json_t *o, const char *key, char *buf, size_t cap) {
  json_t *f = json_object_get(o, key);
  if (json_is_string(f)) return json_string_value(f);
  buf[0] = 0;
  if (!json_is_array(f)) return buf;
  /* A field the entry has more than once: an array of its values; the first is shown. */
  if (json_is_string(json_array_get(f, 0))) return json_string_value(json_array_get(f, 0));
  size_t i, n = 0;
  json_t *b;
  json_array_foreach(f, i, b) {
    if (n + 1 >= cap) break;
    json_int_t v = json_integer_value(b);
    if (!json_is_integer(b) || v < 0 || v > 255) continue;
    buf[n++] = v ? (char)v : ' '; /* a NUL would end the text early */
  }
  buf[n] = 0;
  return buf;
}

static int add_line(inv_table_t *tab, const char *line, size_t len) {
  json_error_t je;
  json_t *o = json_loadb(line, len, JSON_REJECT_DUPLICATES, &je);
  if (!json_is_object(o)) { /* not a journal entry: skipped */
    json_decref(o);
    return 0;
  }
  char when[24] = "", unit_b[INV_VALUE_MAX], id_b[INV_VALUE_MAX], prio_b[8], msg_b[JOURNAL_BYTES_MAX + 1];
  char us_b[32];
  uint64_t us;
  /* __REALTIME_TIMESTAMP is microseconds since the epoch; time is osquery's unix seconds. */
  if (inv_parse_u64(field(o, "__REALTIME_TIMESTAMP", us_b, sizeof(us_b)), &us)) inv_u64_str(when, sizeof(when), us / 1000000);
  const char *unit = field(o, "_SYSTEMD_UNIT", unit_b, sizeof(unit_b));
  if (!unit[0]) unit = field(o, "_SYSTEMD_USER_UNIT", unit_b, sizeof(unit_b));
  const char *ident = field(o, "SYSLOG_IDENTIFIER", id_b, sizeof(id_b));
  if (!ident[0]) ident = field(o, "_COMM", id_b, sizeof(id_b));
  const char *prio = field(o, "PRIORITY", prio_b, sizeof(prio_b));
  const char *msg = field(o, "MESSAGE", msg_b, sizeof(msg_b));
  const char *row[] = {when, unit, ident, prio, msg};
  int rc = inv_table_add(tab, row);
  json_decref(o);
  return rc;
}

void inv_linux_journal_errors(const inv_env_t *env, inv_table_t *tab) {
  char rootopt[PATH_MAX + 8];
  char *argv[] = {"journalctl", "-p", "err", "-n", JOURNAL_LINES, "-o", "json", "--no-pager", NULL, NULL};
  char err[JOURNAL_ERR_MAX];
  /* Under inventory.root (an agent in a container), the journal is the machine's there. */
  if (env->root && env->root[0]) {
    if ((size_t)snprintf(rootopt, sizeof(rootopt), "--root=%s", env->root) >= sizeof(rootopt)) {
      inv_table_fail(tab, "root path too long");
      return;
    }
    argv[8] = rootopt;
  }
  tt_buf_t out;
  int st, rc = inv_run(env, argv, &out, &st, err, sizeof(err));
  if (rc) {
    inv_table_fail(tab, "%s", err);
    return;
  }
  char *cur = (char *)out.data + out.off, *end = cur + out.len, *line;
  while ((line = inv_next_line(&cur, end))) {
    size_t len = strlen(line);
    if (len && add_line(tab, line, len)) break;
  }
  /* journalctl says what went wrong (no journal files, no permission to read them) on
   * standard error, which is not kept: its status is. */
  if (st != 0 && tab->nrows == 0) inv_table_fail(tab, "journalctl exited with status %d", st);
  tt_buf_free(&out);
}
