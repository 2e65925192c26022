/* Command-line flags from the same option table as the config file: `--flag VALUE`,
 * `--flag=VALUE`, `--config FILE` (read first, flags override it), `--help`, `--version`. */
#ifndef TT_CLI_H
#define TT_CLI_H

#include <stdbool.h>
#include "tt/conf.h"

#define TT_CLI_POS_MAX 256 /* a pull or push of a shell glob: many sources */

typedef struct {
  const char *prog;        /* "tether-broker" */
  const char *usage;       /* printed by --help above the option list */
  const char *config_path; /* default config file, NULL = none; used only if it exists */
  const char *config_shown; /* what --help names as that default when config_path was made
                               from the environment (~/...); NULL: config_path itself */
  bool config_required;    /* config_path was named by the user (e.g. an environment
                              variable): it must exist */
  /* Extra boolean switches the program handles itself (e.g. "json"); NULL-terminated. */
  const char *const *switches;
  /* Config-file keys the program checks itself (tt_conf_load_extra); NULL: none. */
  const tt_conf_extra_t *extra;
} tt_cli_t;

typedef struct {
  const char *pos[TT_CLI_POS_MAX]; /* positional arguments, in order */
  int npos;
  unsigned switches;               /* bit i set: switches[i] was given */
  bool help, version;
} tt_cli_args_t;

/* Fills cfg from defaults, then the config file, then flags. On a bad flag or config prints
 * "prog: reason" on stderr and returns TT_ECONFIG or TT_EINVAL; the caller exits 2. */
int tt_cli_parse(const tt_cli_t *cli, const tt_conf_opt_t *t, size_t n, void *cfg, int argc,
                 char **argv, tt_cli_args_t *out) TT_WUR;
void tt_cli_help(const tt_cli_t *cli, const tt_conf_opt_t *t, size_t n);

#endif
