/* Where data lives: mounts (the mount table with each filesystem's usage) and block_devices
 * (disks, their partitions and mapped devices from sysfs, with udev's filesystem facts). */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>
#include "linux.h"
#include "scan.h"
#include "tt/err.h"
#include "tt/hex.h"

/* Entries of one directory read for a table (/sys/block, a disk's directory, /dev/disk/by-uuid):
 * thousands of disks is already a storage array; a directory with more is not read further. */
#define INV_DIR_MAX 4096

const char *const inv_linux_mounts_cols[] = {"device", "device_alias", "path", "type", "blocks_size",
                                             "blocks", "blocks_free", "blocks_available", "inodes",
                                             "inodes_free", "flags", NULL};
const char *const inv_linux_block_devices_cols[] = {"name", "parent", "vendor", "model", "serial", "size",
                                                    "block_size", "uuid", "type", "label", NULL};

/* ---- mounts ---- */

/* The kernel writes ' ', '\t', '\n' and '\\' in mount fields as \ and three octal digits. */
static void unescape_octal(char *s) {
  char *w = s;
  for (char *r = s; *r;) {
    if (r[0] == '\\' && r[1] >= '0' && r[1] <= '3' && r[2] >= '0' && r[2] <= '7' && r[3] >= '0' && r[3] <= '7') {
      *w++ = (char)((r[1] - '0') * 64 + (r[2] - '0') * 8 + (r[3] - '0'));
      r += 4;
    } else {
      *w++ = *r++;
    }
  }
  *w = 0;
}

/* statvfs of a filesystem whose server is gone blocks until it comes back: network and
 * automounted filesystems keep empty usage columns rather than stall every other table. */
static bool usage_may_hang(const char *type) {
  static const char *const t[] = {"autofs", "nfs", "nfs4", "cifs", "smb3", "smbfs", "ncpfs", "afs",
                                  "ceph", "glusterfs", "lustre", "fuse.sshfs", "fuse.glusterfs",
                                  "fuse.s3fs", "fuse.rclone", "davfs", "fuse.davfs2"};
  for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
    if (strcmp(type, t[i]) == 0) return true;
  return false;
}

/* What device resolves to (/dev/mapper/vg-root: /dev/dm-0), under root; "" when it is not a
 * path or does not resolve inside root. */
static void device_alias(const inv_env_t *env, const char *dev, char *out, size_t cap) {
  char p[PATH_MAX], real[PATH_MAX], rootreal[PATH_MAX];
  out[0] = 0;
  if (dev[0] != '/' || inv_path(env, p, sizeof(p), "%s", dev) || !realpath(p, real)) return;
  const char *root = env->root ? env->root : "";
  if (!root[0]) {
    snprintf(out, cap, "%s", real);
    return;
  }
  if (!realpath(root, rootreal)) return;
  size_t n = strlen(rootreal);
  if (strncmp(real, rootreal, n) == 0 && real[n] == '/') snprintf(out, cap, "%s", real + n);
}

void inv_linux_mounts(const inv_env_t *env, inv_table_t *tab) { inv_linux_mounts_with(env, tab, statvfs); }

void inv_linux_mounts_with(const inv_env_t *env, inv_table_t *tab, int (*statvfs_fn)(const char *, struct statvfs *)) {
  tt_buf_t b;
  int rc = inv_read(env, "/proc/mounts", &b);
  if (rc && inv_read(env, "/proc/self/mounts", &b)) {
    inv_table_fail(tab, "cannot read /proc/mounts: %s", tt_strerror(rc));
    return;
  }
  char *cur = (char *)b.data + b.off, *end = cur + b.len, *line;
  while ((line = inv_next_line(&cur, end))) {
    /* device path type options dump pass; the first four are needed. */
    char *f[4], *save = NULL;
    size_t n = 0;
    for (char *w = strtok_r(line, " \t", &save); w && n < 4; w = strtok_r(NULL, " \t", &save)) f[n++] = w;
    if (n < 4) continue;
    for (size_t i = 0; i < 4; i++) unescape_octal(f[i]);
    if (f[1][0] != '/') continue;
    char alias[PATH_MAX], full[PATH_MAX];
    char bsize[24] = "", blocks[24] = "", bfree[24] = "", bavail[24] = "", files[24] = "", ffree[24] = "";
    device_alias(env, f[0], alias, sizeof(alias));
    struct statvfs sv;
    /* Under a fixture root the mount point is a directory of the fixture, if it has one. */
    if (!usage_may_hang(f[2]) && inv_path(env, full, sizeof(full), "%s", f[1]) == 0 && statvfs_fn(full, &sv) == 0) {
      /* f_frsize is the unit f_blocks counts in (f_bsize is only the preferred I/O size). */
      uint64_t unit = sv.f_frsize ? sv.f_frsize : sv.f_bsize;
      inv_u64_str(bsize, sizeof(bsize), unit);
      inv_u64_str(blocks, sizeof(blocks), sv.f_blocks);
      inv_u64_str(bfree, sizeof(bfree), sv.f_bfree);
      inv_u64_str(bavail, sizeof(bavail), sv.f_bavail);
      inv_u64_str(files, sizeof(files), sv.f_files);
      inv_u64_str(ffree, sizeof(ffree), sv.f_ffree);
    }
    const char *vals[] = {f[0], alias, f[1], f[2], bsize, blocks, bfree, bavail, files, ffree, f[3]};
    if (inv_table_add(tab, vals) == TT_EFULL) break;
  }
  tt_buf_free(&b);
}

/* ---- block_devices ---- */

typedef struct {
  char name[INV_VALUE_MAX], parent[INV_VALUE_MAX], vendor[INV_VALUE_MAX], model[INV_VALUE_MAX];
  char serial[INV_VALUE_MAX], size[32], bsize[32], uuid[INV_VALUE_MAX], type[64], label[INV_VALUE_MAX];
} bdev_t;

static int cmp_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The names in a directory under root, sorted, at most INV_DIR_MAX; dot entries left out. NULL
 * if it cannot be opened (errno says why); *n is the count. Free with names_free. */
static char **names_read(const char *dir, size_t *n) {
  *n = 0;
  DIR *d = opendir(dir);
  if (!d) return NULL;
  size_t cap = 16;
  char **v = malloc(cap * sizeof(*v));
  struct dirent *e;
  while (v && (e = readdir(d)) && *n < INV_DIR_MAX) {
    if (e->d_name[0] == '.') continue;
    if (*n == cap) {
      char **nv = realloc(v, (cap *= 2) * sizeof(*v));
      if (!nv) break;
      v = nv;
    }
    if (!(v[*n] = strdup(e->d_name))) break;
    ++*n;
  }
  closedir(d);
  if (!v) return NULL;
  qsort(v, *n, sizeof(*v), cmp_name);
  return v;
}

static void names_free(char **v, size_t n) {
  for (size_t i = 0; i < n; i++) free(v[i]);
  free(v);
}

/* sysfs writes '/' in a device name as '!' (cciss!c0d0 is /dev/cciss/c0d0). */
static void dev_name(char *out, size_t cap, const char *sysname) {
  int n = snprintf(out, cap, "/dev/%s", sysname);
  for (char *p = out + 5; n > 0 && *p; p++)
    if (*p == '!') *p = '/';
}

/* udev escapes unsafe bytes of names and labels as \xNN. */
static void unescape_hex(char *s) {
  char *w = s;
  for (char *r = s; *r;) {
    uint8_t b;
    if (r[0] == '\\' && r[1] == 'x' && tt_unhex(&b, 1, r + 2, 2) == 1) {
      *w++ = (char)b;
      r += 4;
    } else {
      *w++ = *r++;
    }
  }
  *w = 0;
}

/* uuid, type and label as udev's database recorded them from the device's superblock
 * (/run/udev/data/b<major>:<minor>, readable without root, unlike the device). */
static void udev_facts(const inv_env_t *env, const char *sysdir, bdev_t *d) {
  char devno[64], path[PATH_MAX];
  if ((size_t)snprintf(path, sizeof(path), "%s/dev", sysdir) >= sizeof(path)) return;
  if (inv_read_value(env, path, devno, sizeof(devno)) || !devno[0] || strchr(devno, '/')) return;
  snprintf(path, sizeof(path), "/run/udev/data/b%s", devno);
  tt_buf_t b;
  if (inv_read(env, path, &b)) return;
  char *cur = (char *)b.data + b.off, *end = cur + b.len, *line;
  char label_enc[INV_VALUE_MAX] = "";
  while ((line = inv_next_line(&cur, end))) {
    if (strncmp(line, "E:ID_FS_UUID=", 13) == 0) snprintf(d->uuid, sizeof(d->uuid), "%s", line + 13);
    else if (strncmp(line, "E:ID_FS_TYPE=", 13) == 0) snprintf(d->type, sizeof(d->type), "%s", line + 13);
    else if (strncmp(line, "E:ID_FS_LABEL=", 14) == 0 && !label_enc[0])
      snprintf(d->label, sizeof(d->label), "%s", line + 14);
    else if (strncmp(line, "E:ID_FS_LABEL_ENC=", 18) == 0) snprintf(label_enc, sizeof(label_enc), "%s", line + 18);
  }
  /* The _ENC form is the label as written (ID_FS_LABEL has its spaces made '_'). */
  if (label_enc[0]) {
    unescape_hex(label_enc);
    snprintf(d->label, sizeof(d->label), "%s", label_enc);
  }
  tt_buf_free(&b);
}

/* /dev/disk/by-<kind>/: each link's name (udev's escapes undone) and the device it points
 * at, read once for all devices. */
typedef struct {
  char **name, **dev;
  size_t n;
} links_t;

static void links_free(links_t *l) {
  names_free(l->name, l->n);
  names_free(l->dev, l->n);
  memset(l, 0, sizeof(*l));
}

static void links_read(const inv_env_t *env, const char *kind, links_t *l) {
  char dir[PATH_MAX], link[PATH_MAX], target[PATH_MAX];
  memset(l, 0, sizeof(*l));
  size_t n;
  char **v;
  if (inv_path(env, dir, sizeof(dir), "/dev/disk/by-%s", kind) || !(v = names_read(dir, &n))) return;
  l->name = calloc(n ? n : 1, sizeof(char *));
  l->dev = calloc(n ? n : 1, sizeof(char *));
  for (size_t i = 0; l->name && l->dev && i < n; i++) {
    if ((size_t)snprintf(link, sizeof(link), "%s/%s", dir, v[i]) >= sizeof(link)) continue;
    ssize_t k = readlink(link, target, sizeof(target) - 1);
    if (k <= 0) continue;
    target[k] = 0;
    const char *base = strrchr(target, '/');
    if (!(l->dev[l->n] = strdup(base ? base + 1 : target))) break;
    l->name[l->n] = v[i];
    v[i] = NULL;
    unescape_hex(l->name[l->n++]);
  }
  if (!l->name || !l->dev) {
    free(l->name), free(l->dev);
    l->name = l->dev = NULL;
  }
  names_free(v, n);
}

/* The name of the link pointing at device base ("sda1"). */
static void links_find(const links_t *l, const char *base, char *out, size_t cap) {
  for (size_t i = 0; i < l->n; i++)
    if (strcmp(l->dev[i], base) == 0) {
      snprintf(out, cap, "%s", l->name[i]);
      return;
    }
}

/* What block_devices reads once and every device consults. */
typedef struct {
  const inv_env_t *env;
  inv_table_t *tab;
  links_t by_uuid, by_label;
} bctx_t;

/* A sysfs value of the device at sysdir ("size", "device/model"), "" when it has none. */
static bool sys_value(const inv_env_t *env, const char *sysdir, const char *file, char *out, size_t cap) {
  char path[PATH_MAX];
  out[0] = 0;
  if ((size_t)snprintf(path, sizeof(path), "%s/%s", sysdir, file) >= sizeof(path)) return false;
  return inv_read_value(env, path, out, cap) == 0 && out[0];
}

/* Facts every device has: size in 512-byte sectors (what sysfs and osquery give), filesystem. */
static void bdev_common(const bctx_t *bc, const char *sysdir, const char *sysname, bdev_t *d) {
  const inv_env_t *env = bc->env;
  char v[INV_VALUE_MAX];
  uint64_t n;
  if (sys_value(env, sysdir, "size", v, sizeof(v)) && inv_parse_u64(v, &n))
    inv_u64_str(d->size, sizeof(d->size), n);
  udev_facts(env, sysdir, d);
  const char *base = strrchr(sysname, '!');
  base = base ? base + 1 : sysname;
  if (!d->uuid[0]) links_find(&bc->by_uuid, base, d->uuid, sizeof(d->uuid));
  if (!d->label[0]) links_find(&bc->by_label, base, d->label, sizeof(d->label));
}

static int bdev_add(inv_table_t *tab, const bdev_t *d) {
  const char *vals[] = {d->name, d->parent, d->vendor, d->model, d->serial,
                        d->size, d->bsize, d->uuid, d->type, d->label};
  return inv_table_add(tab, vals);
}

/* A disk or mapped device of /sys/block, then its partitions (subdirectories with a
 * "partition" file), which inherit its vendor, model, serial and block size. */
static int bdev_disk(const bctx_t *bc, const char *sysname) {
  const inv_env_t *env = bc->env;
  char sysdir[PATH_MAX], path[PATH_MAX], v[INV_VALUE_MAX];
  if ((size_t)snprintf(sysdir, sizeof(sysdir), "/sys/block/%s", sysname) >= sizeof(sysdir)) return 0;
  bdev_t *d = calloc(2, sizeof(*d));
  if (!d) return TT_ENOMEM;
  dev_name(d->name, sizeof(d->name), sysname);
  sys_value(env, sysdir, "device/model", d->model, sizeof(d->model));
  if (!sys_value(env, sysdir, "device/vendor", d->vendor, sizeof(d->vendor)))
    sys_value(env, sysdir, "device/device/vendor", d->vendor, sizeof(d->vendor));
  if (!sys_value(env, sysdir, "device/wwid", d->serial, sizeof(d->serial)) &&
      !sys_value(env, sysdir, "device/serial", d->serial, sizeof(d->serial)))
    sys_value(env, sysdir, "serial", d->serial, sizeof(d->serial)); /* virtio */
  uint64_t n;
  if (sys_value(env, sysdir, "queue/logical_block_size", v, sizeof(v)) && inv_parse_u64(v, &n))
    inv_u64_str(d->bsize, sizeof(d->bsize), n);
  bdev_common(bc, sysdir, sysname, d);
  /* A mapped device (dm, md) names what it is made of in slaves/: the first is its parent. */
  size_t ns = 0;
  char **slaves = NULL;
  if (inv_path(env, path, sizeof(path), "%s/slaves", sysdir) == 0 && (slaves = names_read(path, &ns)) && ns > 0)
    dev_name(d->parent, sizeof(d->parent), slaves[0]);
  if (slaves) names_free(slaves, ns);
  int rc = bdev_add(bc->tab, d);
  size_t np = 0;
  char **parts = NULL;
  if (!rc && inv_path(env, path, sizeof(path), "%s", sysdir) == 0) parts = names_read(path, &np);
  bdev_t *p = d + 1;
  for (size_t i = 0; i < np && !rc; i++) {
    char partdir[PATH_MAX], full[PATH_MAX];
    struct stat st;
    if ((size_t)snprintf(partdir, sizeof(partdir), "%s/%s", sysdir, parts[i]) >= sizeof(partdir) ||
        inv_path(env, full, sizeof(full), "%s/partition", partdir) || stat(full, &st) != 0)
      continue;
    memset(p, 0, sizeof(*p));
    dev_name(p->name, sizeof(p->name), parts[i]);
    memcpy(p->parent, d->name, sizeof(p->parent));
    memcpy(p->vendor, d->vendor, sizeof(p->vendor));
    memcpy(p->model, d->model, sizeof(p->model));
    memcpy(p->serial, d->serial, sizeof(p->serial));
    memcpy(p->bsize, d->bsize, sizeof(p->bsize));
    bdev_common(bc, partdir, parts[i], p);
    rc = bdev_add(bc->tab, p);
  }
  if (parts) names_free(parts, np);
  free(d);
  return rc;
}

void inv_linux_block_devices(const inv_env_t *env, inv_table_t *tab) {
  char dir[PATH_MAX];
  size_t n = 0;
  char **disks = NULL;
  int rc = inv_path(env, dir, sizeof(dir), "/sys/block");
  if (!rc && !(disks = names_read(dir, &n))) rc = errno ? -errno : TT_ENOMEM;
  if (rc) {
    inv_table_fail(tab, "cannot read /sys/block: %s", tt_strerror(rc));
    return;
  }
  bctx_t bc = {.env = env, .tab = tab};
  links_read(env, "uuid", &bc.by_uuid);
  links_read(env, "label", &bc.by_label);
  for (size_t i = 0; i < n; i++) {
    rc = bdev_disk(&bc, disks[i]);
    if (rc == TT_ENOMEM) inv_table_fail(tab, "out of memory");
    if (rc) break;
  }
  links_free(&bc.by_uuid);
  links_free(&bc.by_label);
  names_free(disks, n);
}
