/* pending_reboot: why this machine wants a restart, one row a reason (none: it does not), for
 * the diagnostics report. Debian and Ubuntu's updates leave /run/reboot-required (and the
 * packages that asked in /run/reboot-required.pkgs); on every distribution a running kernel
 * whose modules are gone, or a newer kernel beside it in /lib/modules, says the same thing
 * (the kernel half of needs-restarting -r, without running it). */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "linux.h"
#include "scan.h"
#include "tt/err.h"

/* Kernels installed side by side: a few; a directory with more is not read further. */
#define REBOOT_KERNELS_MAX 256
/* Packages named in reboot-required.pkgs that are listed (the rest are counted). */
#define REBOOT_PKGS_MAX 32

const char *const inv_linux_pending_reboot_cols[] = {"source", "detail", "since", NULL};

/* The file's modification time under root, as unix seconds text; "" if it has none. */
static void mtime_of(const inv_env_t *env, const char *path, char *out, size_t cap) {
  char p[PATH_MAX];
  struct stat sb;
  out[0] = 0;
  if (inv_path(env, p, sizeof(p), "%s", path) == 0 && stat(p, &sb) == 0 && sb.st_mtime >= 0)
    inv_u64_str(out, cap, (uint64_t)sb.st_mtime);
}

/* Append s to out (cap) as an item of a ", " list; false when it does not fit. */
static bool list_add(char *out, size_t cap, const char *s) {
  size_t o = strlen(out);
  int w = snprintf(out + o, cap - o, "%s%s", o ? ", " : "", s);
  if (w < 0 || (size_t)w >= cap - o) {
    out[o] = 0;
    return false;
  }
  return true;
}

static void reboot_required(const inv_env_t *env, inv_table_t *tab) {
  static const char *const paths[] = {"/run/reboot-required", "/var/run/reboot-required"};
  for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
    char first[INV_VALUE_MAX], detail[INV_CELL_MAX], since[24], pkgs_path[64];
    if (inv_read_value(env, paths[i], first, sizeof(first))) continue;
    snprintf(detail, sizeof(detail), "%s", first[0] ? first : "a restart is required");
    mtime_of(env, paths[i], since, sizeof(since));
    /* The packages, once each (a package that asked twice is listed twice in the file). */
    snprintf(pkgs_path, sizeof(pkgs_path), "%s.pkgs", paths[i]);
    tt_buf_t b;
    if (inv_read(env, pkgs_path, &b) == 0) {
      char list[INV_CELL_MAX] = "";
      size_t listed = 0, more = 0;
      char *cur = (char *)b.data + b.off, *end = cur + b.len, *line, *seen[REBOOT_PKGS_MAX];
      while ((line = inv_next_line(&cur, end))) {
        char *pkg = inv_trim(line);
        bool dup = !*pkg;
        for (size_t k = 0; k < listed && !dup; k++) dup = !strcmp(seen[k], pkg);
        if (dup) continue;
        if (listed < REBOOT_PKGS_MAX && list_add(list, sizeof(list), pkg)) seen[listed++] = pkg;
        else more++;
      }
      if (listed) {
        size_t o = strlen(detail);
        snprintf(detail + o, sizeof(detail) - o, " (packages: %s%s)", list, more ? ", ..." : "");
      }
      tt_buf_free(&b);
    }
    const char *row[] = {paths[i], detail, since};
    inv_table_add(tab, row);
    return; /* /var/run is /run: one row */
  }
}

/* Kernel release strings compared as dpkg and rpm do in spirit: runs of digits by value,
 * everything else by byte ("6.1.0-18-amd64" after "6.1.0-9-amd64"). */
static int kver_cmp(const char *a, const char *b) {
  while (*a || *b) {
    if (*a >= '0' && *a <= '9' && *b >= '0' && *b <= '9') {
      while (*a == '0') a++;
      while (*b == '0') b++;
      size_t la = 0, lb = 0;
      while (a[la] >= '0' && a[la] <= '9') la++;
      while (b[lb] >= '0' && b[lb] <= '9') lb++;
      if (la != lb) return la < lb ? -1 : 1;
      int c = strncmp(a, b, la);
      if (c) return c;
      a += la, b += lb;
    } else {
      if (*a != *b) return (unsigned char)*a < (unsigned char)*b ? -1 : 1;
      a++, b++;
    }
  }
  return 0;
}

/* A Debian or Ubuntu release's flavour, after its second '-' ("6.1.0-18-amd64": "amd64",
 * "6.1.0-25-rt-amd64": "rt-amd64", "6.5.0-14-generic": "generic"); "" for Fedora's and
 * RHEL's ("6.5.6-300.fc39.x86_64"), whose kernels all compare. A newer kernel counts only of
 * the same flavour: a -lowlatency beside -generic is a choice, not an update. */
static const char *flavour(const char *rel) {
  const char *d = strchr(rel, '-');
  d = d ? strchr(d + 1, '-') : NULL;
  return d ? d + 1 : "";
}

static void kernel(const inv_env_t *env, inv_table_t *tab) {
  char running[INV_VALUE_MAX], dir[PATH_MAX];
  if (inv_read_value(env, "/proc/sys/kernel/osrelease", running, sizeof(running)) || !running[0]) return;
  if (inv_path(env, dir, sizeof(dir), "/lib/modules")) return;
  DIR *d = opendir(dir);
  if (!d) return; /* no modules tree (a container, a kernel without modules): nothing to say */
  char newest[INV_VALUE_MAX] = "", installed[INV_CELL_MAX / 2] = "";
  bool have_running = false;
  size_t n = 0;
  struct dirent *e;
  while ((e = readdir(d)) && n < REBOOT_KERNELS_MAX) {
    if (e->d_name[0] == '.' || strlen(e->d_name) >= sizeof(newest)) continue;
    char sub[PATH_MAX];
    struct stat sb;
    /* A release's directory, with its modules index: a half-removed kernel leaves an empty
     * directory behind, which is not an installed kernel. */
    if (inv_path(env, sub, sizeof(sub), "/lib/modules/%s/modules.dep", e->d_name) || stat(sub, &sb)) continue;
    n++;
    list_add(installed, sizeof(installed), e->d_name);
    if (!strcmp(e->d_name, running)) have_running = true;
    else if (!strcmp(flavour(e->d_name), flavour(running)) && kver_cmp(e->d_name, running) > 0 &&
             (!newest[0] || kver_cmp(e->d_name, newest) > 0))
      snprintf(newest, sizeof(newest), "%s", e->d_name);
  }
  closedir(d);
  if (n == 0) return;
  char detail[INV_CELL_MAX], since[24] = "", rel[PATH_MAX];
  if (!have_running) {
    snprintf(detail, sizeof(detail), "the running kernel %s is no longer installed (installed: %s)", running, installed);
  } else if (newest[0]) {
    snprintf(detail, sizeof(detail), "a newer kernel is installed: %s (running %s)", newest, running);
    snprintf(rel, sizeof(rel), "/lib/modules/%s", newest);
    mtime_of(env, rel, since, sizeof(since));
  } else {
    return;
  }
  const char *row[] = {"kernel", detail, since};
  inv_table_add(tab, row);
}

void inv_linux_pending_reboot(const inv_env_t *env, inv_table_t *tab) {
  reboot_required(env, tab);
  kernel(env, tab);
}
