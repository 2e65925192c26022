/* systemd checks: units in the failed state (units_failed, through the diagnostics report's
 * systemd_failed_units collector) and required services that are not active (services_down,
 * one `systemctl show` for all of them). systemctl runs through inv_run: its timeout makes a
 * hung systemctl an unknown result, never a passing one. */
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include "checks.h"
#include "inv/linux/linux.h"
#include "inv/linux/scan.h"

/* sd_booted()'s test, under inventory.root: no systemd, nothing for these checks to judge. */
static bool booted_with_systemd(const agent_check_ctx_t *ctx) {
  char p[PATH_MAX];
  struct stat sb;
  return inv_path(&ctx->env, p, sizeof(p), "/run/systemd/system") == 0 && stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

/* Append s to out as an item of a ", " list; "..." once it no longer fits. */
static void list_add(char *out, size_t cap, const char *s) {
  size_t o = strlen(out);
  if (o >= 3 && !strcmp(out + o - 3, "...")) return;
  int w = snprintf(out + o, cap - o, "%s%s", o ? ", " : "", s);
  if (w < 0 || (size_t)w >= cap - o) snprintf(out + o, cap - o, "%s...", o ? ", " : "");
}

void agent_check_units_failed(const agent_check_ctx_t *ctx, const tt_check_conf_t *conf, agent_check_run_t *run) {
  tt_checks_format_num(TT_CHECK_V_COUNT, conf->threshold, run->threshold, sizeof(run->threshold));
  if (!booted_with_systemd(ctx)) {
    agent_check_na(run, "not booted with systemd");
    return;
  }
  size_t ncols = 0;
  while (inv_linux_systemd_failed_units_cols[ncols]) ncols++;
  inv_table_t t;
  if (inv_table_init(&t, "systemd_failed_units", inv_linux_systemd_failed_units_cols, ncols)) {
    agent_check_fail(run, "out of memory");
    return;
  }
  inv_linux_systemd_failed_units(&ctx->env, &t);
  if (t.error[0]) { /* systemctl hung, failed or said too much: we cannot tell */
    agent_check_fail(run, "%s", t.error);
    inv_table_free(&t);
    return;
  }
  inv_table_sort(&t); /* by unit name: the same failures read the same way every run */
  char names[TT_CHECK_TEXT_MAX] = "", detail[TT_CHECK_TEXT_MAX] = "";
  int64_t n = 0;
  for (size_t i = 0; i < t.nrows; i++) {
    const char *id = inv_cell(&t, i, 0);
    if (agent_check_listed(conf->list, id)) continue;
    n++;
    list_add(names, sizeof(names), id);
    char d[TT_CHECK_TEXT_MAX];
    /* why it failed: result (exit-code, signal, core-dump...) and status */
    snprintf(d, sizeof(d), "%s: %s%s%s", id, inv_cell(&t, i, 5), inv_cell(&t, i, 6)[0] ? " " : "",
             inv_cell(&t, i, 6));
    list_add(detail, sizeof(detail), d);
  }
  inv_table_free(&t);
  if (n) agent_check_sample(run, "", n >= conf->threshold ? TT_CHECK_FAILING : TT_CHECK_OK, detail,
                            "%lld failed: %s", (long long)n, names);
  else agent_check_sample(run, "", TT_CHECK_OK, NULL, "0 failed");
}

/* ---- services_down ------------------------------------------------------------------------- */

typedef struct {
  char id[256], load[64], active[64], sub[64];
} unit_t;

void agent_check_services_down(const agent_check_ctx_t *ctx, const tt_check_conf_t *conf, agent_check_run_t *run) {
  snprintf(run->threshold, sizeof(run->threshold), "active");
  if (!conf->list[0]) {
    agent_check_na(run, "no service is required (checks.services_down.services)");
    return;
  }
  if (!booted_with_systemd(ctx)) {
    agent_check_na(run, "not booted with systemd");
    return;
  }
  /* The catalogue keeps at most TT_CHECK_LIST_MAX names, each a checked unit name. */
  char list[TT_POLICY_VALUE_MAX + 1];
  char *argv[5 + TT_CHECK_LIST_MAX + 1] = {"systemctl", "show", "--no-pager", "--property=Id,LoadState,ActiveState,SubState"};
  size_t argc = 4, nunits = 0;
  snprintf(list, sizeof(list), "%s", conf->list);
  char *save = NULL;
  for (char *u = strtok_r(list, ",", &save); u && nunits < TT_CHECK_LIST_MAX; u = strtok_r(NULL, ",", &save))
    argv[argc++] = u, nunits++;
  argv[argc] = NULL;
  tt_buf_t out;
  int st;
  char err[256];
  /* systemctl hung or failed: every required service is unknown (its own result, not one
   * for the whole check: the services are known without asking). */
  if (inv_run(&ctx->env, argv, &out, &st, err, sizeof(err)) == 0 && st != 0) {
    snprintf(err, sizeof(err), "systemctl show exited with status %d", st);
    tt_buf_free(&out);
    st = -1;
  }
  if (st != 0) {
    for (size_t i = 0; i < nunits; i++) agent_check_sample(run, argv[4 + i], TT_CHECK_UNKNOWN, err, "%s", "");
    return;
  }
  /* One block per unit asked for, in the order asked, a blank line between: matched by
   * position (systemd may answer for an alias, sshd.service with Id=ssh.service). */
  unit_t u[TT_CHECK_LIST_MAX];
  memset(u, 0, sizeof(u));
  size_t k = 0;
  bool in_block = false;
  char *cur = (char *)out.data + out.off, *end = cur + out.len, *line;
  while ((line = inv_next_line(&cur, end)) && k < nunits) {
    if (!*line) {
      if (in_block) k++;
      in_block = false;
      continue;
    }
    char *eq = strchr(line, '=');
    if (!eq) continue;
    *eq = 0;
    in_block = true;
    const char *v = eq + 1;
    if (!strcmp(line, "Id")) snprintf(u[k].id, sizeof(u[k].id), "%s", v);
    else if (!strcmp(line, "LoadState")) snprintf(u[k].load, sizeof(u[k].load), "%s", v);
    else if (!strcmp(line, "ActiveState")) snprintf(u[k].active, sizeof(u[k].active), "%s", v);
    else if (!strcmp(line, "SubState")) snprintf(u[k].sub, sizeof(u[k].sub), "%s", v);
  }
  tt_buf_free(&out);
  for (size_t i = 0; i < nunits; i++) {
    const char *name = argv[4 + i];
    if (!u[i].active[0]) {
      agent_check_sample(run, name, TT_CHECK_UNKNOWN, "systemctl said nothing of it", "?");
    } else if (!strcmp(u[i].load, "not-found")) {
      agent_check_sample(run, name, TT_CHECK_FAILING, NULL, "not installed");
    } else {
      /* active, or reloading its configuration: running. Anything else (inactive, failed,
       * activating in a restart loop) is not, and raise_after lets a restart pass. */
      bool up = !strcmp(u[i].active, "active") || !strcmp(u[i].active, "reloading");
      char alias[300] = "";
      if (u[i].id[0] && strcmp(u[i].id, name)) snprintf(alias, sizeof(alias), " as %.255s", u[i].id);
      agent_check_sample(run, name, up ? TT_CHECK_OK : TT_CHECK_FAILING, NULL, "%s (%s)%s", u[i].active,
                         u[i].sub[0] ? u[i].sub : "?", alias);
    }
  }
}
