/* What is installed: deb_packages from dpkg's status database, read as text, and
 * rpm_packages from `rpm -qa` where rpm is installed. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include "linux.h"
#include "scan.h"
#include "tt/err.h"

/* osquery's deb_packages; left out: pid_with_namespace and mount_namespace_id, hidden columns
 * about where osquery ran. */
const char *const inv_linux_deb_packages_cols[] = {"name", "version", "source", "size", "arch", "revision",
                                                   "status", "maintainer", "section", "priority",
                                                   "admindir", NULL};
/* osquery's rpm_packages; the same two hidden columns left out. */
const char *const inv_linux_rpm_packages_cols[] = {"name", "version", "release", "source", "size", "sha1",
                                                   "arch", "epoch", "install_time", "vendor",
                                                   "package_group", NULL};

#define DPKG_ADMINDIR "/var/lib/dpkg"

/* ---- deb_packages ---- */

/* One stanza's fields, pointing into the file's buffer. */
typedef struct {
  const char *name, *version, *source, *size, *arch, *status, *maint, *section, *prio;
} deb_t;

/* Add the stanza's package if dpkg has it in any state but "not-installed" (osquery lists
 * removed packages that left their configuration behind, "deinstall ok config-files", too).
 * A stanza with no Package or no three-word Status is not a package: skipped. */
static int deb_emit(inv_table_t *tab, const deb_t *d) {
  if (!d->name || !d->name[0] || !d->status) return 0;
  char st[3][64];
  int n = sscanf(d->status, "%63s %63s %63s", st[0], st[1], st[2]);
  if (n != 3 || strcmp(st[2], "not-installed") == 0) return 0;
  char status[200];
  snprintf(status, sizeof(status), "%s %s %s", st[0], st[1], st[2]);
  const char *version = d->version ? d->version : "";
  /* The Debian revision is what follows the version's last '-' ("3.0.11-1~deb12u2": 1~deb12u2). */
  const char *dash = strrchr(version, '-');
  uint64_t kib;
  /* Installed-Size is KiB in the file; osquery reports the field as it is, and so do we. */
  const char *size = d->size && inv_parse_u64(d->size, &kib) ? d->size : "";
  const char *vals[] = {d->name, version, d->source, size, d->arch, dash ? dash + 1 : "",
                        status, d->maint, d->section, d->prio, DPKG_ADMINDIR};
  return inv_table_add(tab, vals);
}

/* dpkg's status file: stanzas of "Field: value" lines parted by empty lines, long values
 * continued on lines that start with a space or tab (the ones read here never are). */
void inv_linux_deb_packages(const inv_env_t *env, inv_table_t *tab) {
  tt_buf_t b;
  int rc = inv_read(env, DPKG_ADMINDIR "/status", &b);
  if (rc) {
    char dir[4096];
    struct stat st;
    if (inv_path(env, dir, sizeof(dir), DPKG_ADMINDIR) == 0 && stat(dir, &st) != 0)
      inv_table_fail(tab, "dpkg is not installed");
    else
      inv_table_fail(tab, "cannot read " DPKG_ADMINDIR "/status: %s", tt_strerror(rc));
    return;
  }
  static const struct {
    const char *key;
    size_t off;
  } fields[] = {
      {"Package", offsetof(deb_t, name)},          {"Version", offsetof(deb_t, version)},
      {"Source", offsetof(deb_t, source)},         {"Installed-Size", offsetof(deb_t, size)},
      {"Architecture", offsetof(deb_t, arch)},     {"Status", offsetof(deb_t, status)},
      {"Maintainer", offsetof(deb_t, maint)},      {"Section", offsetof(deb_t, section)},
      {"Priority", offsetof(deb_t, prio)},
  };
  deb_t d = {0};
  char *cur = (char *)b.data + b.off, *end = cur + b.len, *line;
  while (!rc && (line = inv_next_line(&cur, end))) {
    if (line[0] == 0 || (line[0] == '\r' && line[1] == 0)) {
      rc = deb_emit(tab, &d);
      memset(&d, 0, sizeof(d));
      continue;
    }
    if (line[0] == ' ' || line[0] == '\t' || line[0] == '#') continue;
    char *colon = strchr(line, ':');
    if (!colon) continue; /* not a field: skipped, the stanza goes on */
    *colon = 0;
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
      /* Field names are case-insensitive (deb822). */
      if (strcasecmp(line, fields[i].key) == 0) {
        *(const char **)((char *)&d + fields[i].off) = inv_trim(colon + 1);
        break;
      }
    }
  }
  if (!rc) rc = deb_emit(tab, &d); /* the last stanza may have no empty line after it */
  if (rc == TT_ENOMEM) inv_table_fail(tab, "out of memory");
  tt_buf_free(&b);
}

/* ---- rpm_packages ---- */

#define RPM_NFIELDS 11

/* rpm prints "(none)" for a tag a package does not have. */
static const char *rpm_val(const char *v, bool number) {
  uint64_t n;
  if (strcmp(v, "(none)") == 0) return "";
  if (number && !inv_parse_u64(v, &n)) return "";
  return v;
}

void inv_linux_rpm_packages(const inv_env_t *env, inv_table_t *tab) {
  /* One line a package, the columns' tags parted by tabs, which no tag holds in practice; a
   * line that does not split into exactly the columns is skipped. */
  char fmt[] = "%{NAME}\t%{VERSION}\t%{RELEASE}\t%{SOURCERPM}\t%{SIZE}\t%{SHA1HEADER}\t%{ARCH}\t"
               "%{EPOCH}\t%{INSTALLTIME}\t%{VENDOR}\t%{GROUP}\n";
  char prog[] = "rpm", qa[] = "-qa", qf[] = "--qf", rootopt[] = "--root";
  char *argv[] = {prog, qa, qf, fmt, NULL, NULL, NULL};
  /* Under a fixture root, rpm reads that root's database. */
  if (env->root && env->root[0]) argv[4] = rootopt, argv[5] = (char *)env->root;
  tt_buf_t out;
  int status;
  char err[256];
  int rc = inv_run(env, argv, &out, &status, err, sizeof(err));
  if (rc) {
    inv_table_fail(tab, "%s", err);
    return;
  }
  if (status != 0) {
    inv_table_fail(tab, "rpm -qa exited with status %d", status);
    tt_buf_free(&out);
    return;
  }
  static const bool number[RPM_NFIELDS] = {[4] = true, [7] = true, [8] = true};
  char *cur = (char *)out.data + out.off, *end = cur + out.len, *line;
  while ((line = inv_next_line(&cur, end))) {
    const char *vals[RPM_NFIELDS];
    size_t n = 0;
    for (char *p = line;; n++) {
      char *tab_ch = strchr(p, '\t');
      if (n < RPM_NFIELDS) vals[n] = p;
      if (!tab_ch) break;
      *tab_ch = 0;
      p = tab_ch + 1;
    }
    if (n + 1 != RPM_NFIELDS || !vals[0][0]) continue;
    for (size_t i = 0; i < RPM_NFIELDS; i++) vals[i] = rpm_val(vals[i], number[i]);
    if (inv_table_add(tab, vals) == TT_EFULL) break;
  }
  tt_buf_free(&out);
}
