/* systemd_failed_units: the units systemd holds as failed (what `systemctl --failed` lists),
 * with why and since when, for the diagnostics report. osquery has no such table: the
 * columns are systemd_units' where they overlap, systemd's property names for the rest. */
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include "linux.h"
#include "scan.h"
#include "tt/err.h"

#define FAILED_ERR_MAX 256

const char *const inv_linux_systemd_failed_units_cols[] = {
    "id",     "description",      "load_state", "active_state", "sub_state",
    "result", "exec_main_status", "n_restarts", "since",        "fragment_path", NULL};

/* `systemctl show` prints asked-for properties as Key=Value lines, a blank line between
 * units; Result says why a unit failed (exit-code, signal, timeout, core-dump, ...), the
 * timestamp when it last changed state. */
#define FAILED_PROPS                                                                              \
  "Id,Description,LoadState,ActiveState,SubState,Result,ExecMainStatus,NRestarts,StateChangeTimestamp," \
  "FragmentPath"

enum { F_ID, F_DESC, F_LOAD, F_ACTIVE, F_SUB, F_RESULT, F_STATUS, F_RESTARTS, F_SINCE, F_FRAG, F_N };
static const char *const g_keys[F_N] = {"Id",     "Description",    "LoadState", "ActiveState",          "SubState",
                                        "Result", "ExecMainStatus", "NRestarts", "StateChangeTimestamp", "FragmentPath"};

static int add_if_failed(inv_table_t *tab, char *const *v) {
  if (!v[F_ID][0] || strcmp(v[F_ACTIVE], "failed")) return 0;
  const char *row[F_N];
  for (int k = 0; k < F_N; k++) row[k] = v[k];
  return inv_table_add(tab, row);
}

/* Every loaded unit's state is asked for ("*"), and the failed ones kept: `show` filters by
 * pattern only, and a unit that failed is always loaded. */
void inv_linux_systemd_failed_units(const inv_env_t *env, inv_table_t *tab) {
  char p[PATH_MAX], err[FAILED_ERR_MAX];
  struct stat sb;
  /* sd_booted()'s test, as systemd_units makes it. */
  if (inv_path(env, p, sizeof(p), "/run/systemd/system") || stat(p, &sb) || !S_ISDIR(sb.st_mode)) {
    inv_table_fail(tab, "not booted with systemd (no /run/systemd/system)");
    return;
  }
  char *argv[] = {"systemctl", "show", "--no-pager", "--property=" FAILED_PROPS, "*", NULL};
  tt_buf_t out;
  int st, rc = inv_run(env, argv, &out, &st, err, sizeof(err));
  if (rc) {
    inv_table_fail(tab, "%s", err);
    return;
  }
  if (st != 0) {
    inv_table_fail(tab, "systemctl show exited with status %d", st);
    tt_buf_free(&out);
    return;
  }
  char *cur = (char *)out.data + out.off, *end = cur + out.len, *line;
  char *v[F_N];
  for (int k = 0; k < F_N; k++) v[k] = "";
  for (;;) {
    line = inv_next_line(&cur, end);
    if (!line || !*line) { /* a block ends */
      if (add_if_failed(tab, v)) break;
      for (int k = 0; k < F_N; k++) v[k] = "";
      if (!line) break;
      continue;
    }
    char *eq = strchr(line, '=');
    if (!eq) continue; /* not a property line */
    *eq = 0;
    for (int k = 0; k < F_N; k++)
      if (!strcmp(line, g_keys[k])) v[k] = eq + 1;
  }
  tt_buf_free(&out);
}
