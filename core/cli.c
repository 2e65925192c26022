/* Flags and config file from one option table. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "tt/cli.h"

void tt_cli_help(const tt_cli_t *cli, const tt_conf_opt_t *t, size_t n) {
  const char *shown = cli->config_shown ? cli->config_shown : cli->config_path;
  printf("%s\n\noptions:\n", cli->usage);
  printf("  --config FILE     read options from FILE%s%s%s\n", shown ? " (default: " : "", shown ? shown : "",
         shown ? ")" : "");
  tt_conf_print_help(stdout, t, n);
  printf("  --help            this text\n  --version         print the version\n");
}

static int switch_index(const tt_cli_t *cli, const char *name) {
  for (int i = 0; cli->switches && cli->switches[i]; i++)
    if (strcmp(cli->switches[i], name) == 0) return i;
  return -1;
}

int tt_cli_parse(const tt_cli_t *cli, const tt_conf_opt_t *t, size_t n, void *cfg, int argc,
                 char **argv, tt_cli_args_t *out) {
  char err[1024];
  memset(out, 0, sizeof(*out));
  int rc = tt_conf_defaults(t, n, cfg, err, sizeof(err));
  if (rc) goto bad;

  /* The config file comes first so that flags override it, wherever --config stands. */
  const char *conf = NULL;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--config") == 0) {
      if (i + 1 >= argc) {
        snprintf(err, sizeof(err), "--config needs a file");
        rc = TT_EINVAL;
        goto bad;
      }
      conf = argv[++i];
    } else if (strncmp(argv[i], "--config=", 9) == 0) {
      conf = argv[i] + 9;
    } else if (strcmp(argv[i], "--") == 0) {
      break;
    }
  }
  if (!conf && cli->config_path && (cli->config_required || access(cli->config_path, F_OK) == 0))
    conf = cli->config_path;
  if (conf && (rc = tt_conf_load_extra(t, n, cfg, conf, cli->extra, err, sizeof(err)))) goto bad;

  bool rest = false;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (rest || a[0] != '-' || a[1] != '-') {
      if (!rest && a[0] == '-' && a[1] != '\0') {
        snprintf(err, sizeof(err), "unknown flag '%s' (see --help)", a);
        rc = TT_EINVAL;
        goto bad;
      }
      if (out->npos >= TT_CLI_POS_MAX) {
        snprintf(err, sizeof(err), "too many arguments");
        rc = TT_EINVAL;
        goto bad;
      }
      out->pos[out->npos++] = a;
      continue;
    }
    if (strcmp(a, "--") == 0) { rest = true; continue; }
    if (strcmp(a, "--help") == 0) { out->help = true; continue; }
    if (strcmp(a, "--version") == 0) { out->version = true; continue; }
    if (strcmp(a, "--config") == 0) { i++; continue; }
    if (strncmp(a, "--config=", 9) == 0) continue;

    char name[64];
    const char *val = NULL;
    const char *eq = strchr(a + 2, '=');
    size_t nl = eq ? (size_t)(eq - (a + 2)) : strlen(a + 2);
    if (nl == 0 || nl >= sizeof(name)) {
      snprintf(err, sizeof(err), "unknown flag '%s' (see --help)", a);
      rc = TT_EINVAL;
      goto bad;
    }
    memcpy(name, a + 2, nl);
    name[nl] = '\0';
    int si = switch_index(cli, name);
    if (si >= 0 && !eq) {
      out->switches |= 1u << si;
      continue;
    }
    const tt_conf_opt_t *o = tt_conf_find_flag(t, n, name);
    if (!o) {
      snprintf(err, sizeof(err), "unknown flag '--%s' (see --help)", name);
      rc = TT_EINVAL;
      goto bad;
    }
    if (eq) {
      val = eq + 1;
    } else if (o->type == TT_CONF_BOOL && (i + 1 >= argc || argv[i + 1][0] == '-')) {
      val = "true";
    } else {
      if (i + 1 >= argc) {
        snprintf(err, sizeof(err), "--%s needs a value", name);
        rc = TT_EINVAL;
        goto bad;
      }
      val = argv[++i];
    }
    char where[80];
    snprintf(where, sizeof(where), "--%s", name);
    if ((rc = tt_conf_set(t, n, cfg, o->name, val, where, err, sizeof(err)))) goto bad;
  }
  return 0;
bad:
  fprintf(stderr, "%s: %s\n", cli->prog, err);
  return rc;
}
