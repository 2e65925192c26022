/* What the machine is: system_info, os_version, kernel_info, uptime, cpu_info and memory_info,
 * from /proc, /sys/class/dmi/id and /etc/os-release under the environment's root. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/utsname.h>
#include "linux.h"
#include "scan.h"
#include "tt/err.h"

/* Processors /proc/cpuinfo may list: the kernel's largest NR_CPUS. More are not counted. */
#define INV_CPUS_MAX 8192
/* The machine name ("x86_64"): utsname holds at most 65 bytes of it. */
#define ARCH_MAX 80

/* osquery's system_info, every column. */
const char *const inv_linux_system_info_cols[] = {
    "hostname", "uuid", "cpu_type", "cpu_subtype", "cpu_brand", "cpu_physical_cores",
    "cpu_logical_cores", "cpu_sockets", "cpu_microcode", "physical_memory", "hardware_vendor",
    "hardware_model", "hardware_version", "hardware_serial", "board_vendor", "board_model",
    "board_version", "board_serial", "computer_name", "local_hostname", NULL};
/* osquery's os_version (Linux); left out: pid_with_namespace and mount_namespace_id, hidden
 * columns about where osquery ran, not about the machine. */
const char *const inv_linux_os_version_cols[] = {"name", "version", "major", "minor", "patch",
                                                 "build", "platform", "platform_like", "codename",
                                                 "arch", NULL};
const char *const inv_linux_kernel_info_cols[] = {"version", "arguments", "path", "device", NULL};
const char *const inv_linux_uptime_cols[] = {"days", "hours", "minutes", "seconds", "total_seconds", NULL};
/* osquery's cpu_info; left out: cpu_status and socket_designation, which only the SMBIOS
 * tables hold (/sys/firmware/dmi/tables is root's alone). */
const char *const inv_linux_cpu_info_cols[] = {"device_id", "model", "manufacturer", "processor_type",
                                               "number_of_cores", "logical_processors", "address_width",
                                               "current_clock_speed", "max_clock_speed", NULL};
const char *const inv_linux_memory_info_cols[] = {"memory_total", "memory_free", "memory_available",
                                                  "buffers", "cached", "swap_cached", "active",
                                                  "inactive", "swap_total", "swap_free", NULL};

/* ---- /proc/meminfo ---- */

/* The fields memory_info reports, in its column order; the values are kB in the file. */
static const char *const g_mem_keys[] = {"MemTotal", "MemFree", "MemAvailable", "Buffers", "Cached",
                                         "SwapCached", "Active", "Inactive", "SwapTotal", "SwapFree"};
#define MEM_NKEYS (sizeof(g_mem_keys) / sizeof(g_mem_keys[0]))

typedef struct {
  bool have[MEM_NKEYS];
  uint64_t bytes[MEM_NKEYS];
} meminfo_t;

/* "Key:   123 kB" lines into bytes; a line that is not a key and a whole number is skipped. */
static int meminfo_read(const inv_env_t *env, meminfo_t *m) {
  memset(m, 0, sizeof(*m));
  tt_buf_t b;
  int rc = inv_read(env, "/proc/meminfo", &b);
  if (rc) return rc;
  char *cur = (char *)b.data + b.off, *end = cur + b.len, *line;
  while ((line = inv_next_line(&cur, end))) {
    char *colon = strchr(line, ':');
    if (!colon) continue;
    *colon = 0;
    size_t k = 0;
    while (k < MEM_NKEYS && strcmp(line, g_mem_keys[k]) != 0) k++;
    if (k == MEM_NKEYS || m->have[k]) continue;
    char *val = inv_trim(colon + 1), *unit = val;
    while (*unit >= '0' && *unit <= '9') unit++;
    uint64_t mult = 1;
    if (*unit) {
      if (!inv_is_space(*unit)) continue;
      *unit++ = 0;
      unit = inv_trim(unit);
      if (strcmp(unit, "kB") == 0) mult = 1024;
      else if (*unit) continue;
    }
    uint64_t v;
    if (!inv_parse_u64(val, &v) || v > UINT64_MAX / mult) continue;
    m->bytes[k] = v * mult;
    m->have[k] = true;
  }
  tt_buf_free(&b);
  return 0;
}

void inv_linux_memory_info(const inv_env_t *env, inv_table_t *tab) {
  meminfo_t m;
  int rc = meminfo_read(env, &m);
  if (rc) {
    inv_table_fail(tab, "cannot read /proc/meminfo: %s", tt_strerror(rc));
    return;
  }
  char num[MEM_NKEYS][24];
  const char *vals[MEM_NKEYS];
  bool any = false;
  for (size_t k = 0; k < MEM_NKEYS; k++) {
    num[k][0] = 0;
    if (m.have[k]) inv_u64_str(num[k], sizeof(num[k]), m.bytes[k]), any = true;
    vals[k] = num[k];
  }
  if (!m.have[0]) inv_table_fail(tab, "no MemTotal in /proc/meminfo");
  if (any) inv_table_add(tab, vals);
}

/* ---- /proc/cpuinfo ---- */

typedef struct {
  long proc, phys, core; /* "processor", "physical id", "core id"; -1 when absent */
  const char *vendor, *model_name, *model, *microcode, *mhz, *cores;
  bool flags, lm; /* an x86 "flags" line, and "lm" (64-bit capable) in it */
} cpu_t;

typedef struct {
  tt_buf_t buf; /* the file; the fields point into it */
  cpu_t *cpu;
  size_t n;
  cpu_t head; /* what comes before the first "processor" line (s390 puts vendor_id there) */
} cpuinfo_t;

static void cpu_clear(cpu_t *c) {
  memset(c, 0, sizeof(*c));
  c->proc = c->phys = c->core = -1;
}

static long to_long(const char *s) {
  uint64_t v;
  return inv_parse_u64(s, &v) && v <= (uint64_t)INT32_MAX ? (long)v : -1;
}

static bool has_word(const char *list, const char *w) {
  size_t n = strlen(w);
  for (const char *p = list; (p = strstr(p, w)); p += n)
    if ((p == list || inv_is_space(p[-1])) && (p[n] == 0 || inv_is_space(p[n]))) return true;
  return false;
}

static void cpuinfo_free(cpuinfo_t *ci) {
  tt_buf_free(&ci->buf);
  free(ci->cpu);
  ci->cpu = NULL;
}

/* One record per "processor : N" line; every "key : value" after it belongs to it. Lines
 * without a colon, and processors past INV_CPUS_MAX, are skipped. */
static int cpuinfo_read(const inv_env_t *env, cpuinfo_t *ci) {
  memset(ci, 0, sizeof(*ci));
  cpu_clear(&ci->head);
  int rc = inv_read(env, "/proc/cpuinfo", &ci->buf);
  if (rc) return rc;
  char *cur = (char *)ci->buf.data + ci->buf.off, *end = cur + ci->buf.len, *line;
  size_t cap = 0;
  cpu_t *c = &ci->head;
  bool skipping = false;
  while ((line = inv_next_line(&cur, end))) {
    char *colon = strchr(line, ':');
    if (!colon) continue;
    *colon = 0;
    char *key = inv_trim(line), *val = inv_trim(colon + 1);
    if (strcmp(key, "processor") == 0 && to_long(val) >= 0) {
      skipping = ci->n == INV_CPUS_MAX;
      if (skipping) continue;
      if (ci->n == cap) {
        size_t ncap = cap ? cap * 2 : 16;
        cpu_t *p = realloc(ci->cpu, ncap * sizeof(*p));
        if (!p) {
          cpuinfo_free(ci);
          return TT_ENOMEM;
        }
        ci->cpu = p;
        cap = ncap;
      }
      c = &ci->cpu[ci->n++];
      cpu_clear(c);
      c->proc = to_long(val);
      continue;
    }
    if (skipping) continue;
    if (strcmp(key, "vendor_id") == 0) c->vendor = val;
    else if (strcmp(key, "model name") == 0) c->model_name = val;
    else if (strcmp(key, "model") == 0) c->model = val;
    else if (strcmp(key, "microcode") == 0) c->microcode = val;
    else if (strcmp(key, "cpu MHz") == 0) c->mhz = val;
    else if (strcmp(key, "cpu cores") == 0) c->cores = val;
    else if (strcmp(key, "physical id") == 0) c->phys = to_long(val);
    else if (strcmp(key, "core id") == 0) c->core = to_long(val);
    else if (strcmp(key, "flags") == 0) c->flags = true, c->lm = has_word(val, "lm");
  }
  return 0;
}

/* A processor's field, or the one given before the first processor, or "". */
#define CPU_STR(ci, c, f) ((c)->f ? (c)->f : (ci)->head.f ? (ci)->head.f : "")

static long cpu_socket(const cpu_t *c) { return c->phys < 0 ? 0 : c->phys; }
/* A processor with no "core id" (ARM) is a core of its own. */
static long cpu_core(const cpu_t *c) { return c->core < 0 ? c->proc : c->core; }

static int cmp_socket_core(const void *a, const void *b) {
  const cpu_t *x = *(const cpu_t *const *)a, *y = *(const cpu_t *const *)b;
  long p = cpu_socket(x) - cpu_socket(y);
  if (p) return p < 0 ? -1 : 1;
  long c = cpu_core(x) - cpu_core(y);
  if (c) return c < 0 ? -1 : 1;
  return x->proc < y->proc ? -1 : x->proc > y->proc;
}

/* The processors ordered by socket, core and number (the caller frees). */
static const cpu_t **cpu_sorted(const cpuinfo_t *ci) {
  const cpu_t **v = malloc((ci->n ? ci->n : 1) * sizeof(*v));
  if (!v) return NULL;
  for (size_t i = 0; i < ci->n; i++) v[i] = &ci->cpu[i];
  qsort(v, ci->n, sizeof(*v), cmp_socket_core);
  return v;
}

/* Distinct sockets and distinct (socket, core) pairs among v[from, to). */
static void cpu_count(const cpu_t **v, size_t from, size_t to, size_t *sockets, size_t *cores) {
  *sockets = *cores = 0;
  for (size_t i = from; i < to; i++) {
    bool new_socket = i == from || cpu_socket(v[i]) != cpu_socket(v[i - 1]);
    if (new_socket) ++*sockets;
    if (new_socket || cpu_core(v[i]) != cpu_core(v[i - 1])) ++*cores;
  }
}

/* "2096.506" MHz to the nearest whole MHz; "" for anything else. */
static void mhz_round(const char *s, char *out, size_t cap) {
  out[0] = 0;
  const char *p = s;
  while (*p >= '0' && *p <= '9') p++;
  if (p == s || (*p && *p != '.')) return;
  uint64_t v = inv_leading_u64(s);
  if (*p == '.' && p[1] >= '5' && p[1] <= '9') v++;
  inv_u64_str(out, cap, v);
}

/* A cpufreq value of processor n, kHz in the file, as whole MHz. */
static void cpufreq_mhz(const inv_env_t *env, long n, const char *file, char *out, size_t cap) {
  char path[128], v[INV_VALUE_MAX];
  uint64_t khz;
  out[0] = 0;
  snprintf(path, sizeof(path), "/sys/devices/system/cpu/cpu%ld/cpufreq/%s", n, file);
  if (inv_read_value(env, path, v, sizeof(v)) == 0 && inv_parse_u64(v, &khz)) inv_u64_str(out, cap, khz / 1000);
}

/* The kernel's machine name (x86_64, aarch64): uname on the machine itself, the file the
 * kernel also gives it in (Linux 6.1 and later) under a fixture root. */
static void machine_arch(const inv_env_t *env, char *out, size_t cap) {
  out[0] = 0;
  if (!env->root || !env->root[0]) {
    struct utsname u;
    if (uname(&u) == 0) snprintf(out, cap, "%s", u.machine);
    return;
  }
  inv_read_value(env, "/proc/sys/kernel/arch", out, cap);
}

/* One row per socket, as osquery's SMBIOS processor records are: the first processor of each
 * socket speaks for it. */
void inv_linux_cpu_info(const inv_env_t *env, inv_table_t *tab) {
  cpuinfo_t ci;
  int rc = cpuinfo_read(env, &ci);
  if (rc) {
    inv_table_fail(tab, "cannot read /proc/cpuinfo: %s", tt_strerror(rc));
    return;
  }
  if (ci.n == 0) {
    inv_table_fail(tab, "no processor in /proc/cpuinfo");
    cpuinfo_free(&ci);
    return;
  }
  const cpu_t **v = cpu_sorted(&ci);
  if (!v) {
    inv_table_fail(tab, "out of memory");
    cpuinfo_free(&ci);
    return;
  }
  char arch[ARCH_MAX];
  machine_arch(env, arch, sizeof(arch));
  size_t socket = 0;
  for (size_t i = 0; i < ci.n;) {
    size_t j = i + 1;
    while (j < ci.n && cpu_socket(v[j]) == cpu_socket(v[i])) j++;
    const cpu_t *c = v[i];
    for (size_t k = i + 1; k < j; k++)
      if (v[k]->proc < c->proc) c = v[k];
    size_t nsock, ncores;
    cpu_count(v, i, j, &nsock, &ncores);
    char id[32], cores[24], logical[24], cur[24], max[24];
    snprintf(id, sizeof(id), "CPU%zu", socket++);
    uint64_t n;
    /* "cpu cores" counts the socket's cores even when some are offline. */
    inv_u64_str(cores, sizeof(cores), inv_parse_u64(CPU_STR(&ci, c, cores), &n) && n > 0 ? n : ncores);
    inv_u64_str(logical, sizeof(logical), j - i);
    mhz_round(CPU_STR(&ci, c, mhz), cur, sizeof(cur));
    if (!cur[0]) cpufreq_mhz(env, c->proc, "scaling_cur_freq", cur, sizeof(cur));
    cpufreq_mhz(env, c->proc, "cpuinfo_max_freq", max, sizeof(max));
    const char *width = c->flags ? (c->lm ? "64" : "32") : strstr(arch, "64") ? "64" : arch[0] ? "32" : "";
    /* 3 is SMBIOS's "central processor", what every processor of /proc/cpuinfo is. */
    const char *vals[] = {id, CPU_STR(&ci, c, model_name), CPU_STR(&ci, c, vendor), "3",
                          cores, logical, width, cur, max};
    if (inv_table_add(tab, vals) == TT_EFULL) break;
    i = j;
  }
  free(v);
  cpuinfo_free(&ci);
}

/* ---- system_info ---- */

/* Firmware's "no UUID set" values, which identify no machine (osquery drops the same). */
static bool uuid_placeholder(const char *u) {
  static const char *const bad[] = {"00000000-0000-0000-0000-000000000000", "ffffffff-ffff-ffff-ffff-ffffffffffff",
                                    "03000200-0400-0500-0006-000700080009", "03020100-0504-0706-0809-0a0b0c0d0e0f",
                                    "10000000-0000-8000-0040-000000000000"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    if (strcasecmp(u, bad[i]) == 0) return true;
  return false;
}

void inv_linux_system_info(const inv_env_t *env, inv_table_t *tab) {
  char host[INV_VALUE_MAX], uuid[INV_VALUE_MAX], arch[ARCH_MAX];
  char hw_vendor[INV_VALUE_MAX], hw_model[INV_VALUE_MAX], hw_version[INV_VALUE_MAX], hw_serial[INV_VALUE_MAX];
  char bd_vendor[INV_VALUE_MAX], bd_model[INV_VALUE_MAX], bd_version[INV_VALUE_MAX], bd_serial[INV_VALUE_MAX];
  char phys[24] = "", logical[24] = "", sockets[24] = "", mem[24] = "";
  int rc = inv_read_value(env, "/proc/sys/kernel/hostname", host, sizeof(host));
  if (rc) inv_table_fail(tab, "cannot read /proc/sys/kernel/hostname: %s", tt_strerror(rc));
  /* The DMI files: absent in many VMs and on ARM boards, the serials root's alone. Missing
   * is empty, never an error. */
  inv_read_value(env, "/sys/class/dmi/id/product_uuid", uuid, sizeof(uuid));
  if (uuid_placeholder(uuid)) uuid[0] = 0;
  inv_read_value(env, "/sys/class/dmi/id/sys_vendor", hw_vendor, sizeof(hw_vendor));
  inv_read_value(env, "/sys/class/dmi/id/product_name", hw_model, sizeof(hw_model));
  inv_read_value(env, "/sys/class/dmi/id/product_version", hw_version, sizeof(hw_version));
  inv_read_value(env, "/sys/class/dmi/id/product_serial", hw_serial, sizeof(hw_serial));
  inv_read_value(env, "/sys/class/dmi/id/board_vendor", bd_vendor, sizeof(bd_vendor));
  inv_read_value(env, "/sys/class/dmi/id/board_name", bd_model, sizeof(bd_model));
  inv_read_value(env, "/sys/class/dmi/id/board_version", bd_version, sizeof(bd_version));
  inv_read_value(env, "/sys/class/dmi/id/board_serial", bd_serial, sizeof(bd_serial));
  /* Lenovo puts the model people know in the version and a SKU in the name: swapped, as
   * osquery does, so the model reads like other vendors'. */
  if (strcasecmp(hw_vendor, "lenovo") == 0) {
    char t[INV_VALUE_MAX];
    memcpy(t, hw_model, sizeof(t));
    memcpy(hw_model, hw_version, sizeof(t));
    memcpy(hw_version, t, sizeof(t));
  }
  /* Boards without DMI (ARM) name themselves in the device tree. */
  if (!hw_model[0]) inv_read_value(env, "/proc/device-tree/model", hw_model, sizeof(hw_model));
  machine_arch(env, arch, sizeof(arch));

  cpuinfo_t ci;
  const char *brand = "", *subtype = "", *microcode = "";
  rc = cpuinfo_read(env, &ci);
  if (rc) {
    inv_table_fail(tab, "cannot read /proc/cpuinfo: %s", tt_strerror(rc));
  } else if (ci.n > 0) {
    const cpu_t **v = cpu_sorted(&ci);
    if (v) {
      size_t ns, nc;
      cpu_count(v, 0, ci.n, &ns, &nc);
      inv_u64_str(phys, sizeof(phys), nc);
      inv_u64_str(sockets, sizeof(sockets), ns);
      inv_u64_str(logical, sizeof(logical), ci.n);
      free(v);
    }
    brand = CPU_STR(&ci, &ci.cpu[0], model_name);
    subtype = CPU_STR(&ci, &ci.cpu[0], model);
    microcode = CPU_STR(&ci, &ci.cpu[0], microcode);
  }
  meminfo_t m;
  rc = meminfo_read(env, &m);
  if (rc) inv_table_fail(tab, "cannot read /proc/meminfo: %s", tt_strerror(rc));
  else if (m.have[0]) inv_u64_str(mem, sizeof(mem), m.bytes[0]);
  /* hostname is osquery's FQDN, which needs a resolver; the kernel's name is what the machine
   * calls itself, and all three columns say that. */
  const char *vals[] = {host, uuid, arch, subtype, brand, phys, logical, sockets, microcode, mem,
                        hw_vendor, hw_model, hw_version, hw_serial, bd_vendor, bd_model, bd_version,
                        bd_serial, host, host};
  inv_table_add(tab, vals);
  cpuinfo_free(&ci); /* after the row: brand, subtype and microcode point into it */
}

/* ---- os_version ---- */

/* An os-release value: unquoted as os-release(5) says (shell-style "..." with \ escapes, or
 * '...'), in place. */
static char *osr_unquote(char *v) {
  v = inv_trim(v);
  char q = v[0];
  if (q != '"' && q != '\'') return v;
  char *w = v, *r = v + 1;
  while (*r && *r != q) {
    if (q == '"' && *r == '\\' && r[1]) r++;
    *w++ = *r++;
  }
  *w = 0;
  return v;
}

/* VERSION_ID's dot-separated part i as a number ("22.04": 22, 4, 0). */
static void version_part(const char *id, int i, char *out, size_t cap) {
  const char *p = id;
  for (; i > 0 && p; i--) {
    p = strchr(p, '.');
    if (p) p++;
  }
  inv_u64_str(out, cap, p ? inv_leading_u64(p) : 0);
}

void inv_linux_os_version(const inv_env_t *env, inv_table_t *tab) {
  tt_buf_t b;
  int rc = inv_read(env, "/etc/os-release", &b);
  /* os-release(5): /usr/lib/os-release when /etc has none. */
  if (rc && inv_read(env, "/usr/lib/os-release", &b)) {
    inv_table_fail(tab, "cannot read /etc/os-release: %s", tt_strerror(rc));
    return;
  }
  const char *name = NULL, *version = "", *build = "", *id = NULL, *like = "", *vid = "";
  const char *codename = NULL, *other_codename = "";
  char *cur = (char *)b.data + b.off, *end = cur + b.len, *line;
  while ((line = inv_next_line(&cur, end))) {
    char *eq = strchr(line, '=');
    if (!eq || line[0] == '#') continue;
    *eq = 0;
    char *key = inv_trim(line), *val = osr_unquote(eq + 1);
    if (strcmp(key, "NAME") == 0) name = val;
    else if (strcmp(key, "VERSION") == 0) version = val;
    else if (strcmp(key, "BUILD_ID") == 0) build = val;
    else if (strcmp(key, "ID") == 0) id = val;
    else if (strcmp(key, "ID_LIKE") == 0) like = val;
    else if (strcmp(key, "VERSION_ID") == 0) vid = val;
    else if (strcmp(key, "VERSION_CODENAME") == 0) codename = val;
    /* Distributions add their own (UBUNTU_CODENAME): used when the standard one is missing. */
    else if (strstr(key, "CODENAME")) other_codename = val;
  }
  char major[24], minor[24], patch[24], arch[ARCH_MAX];
  version_part(vid, 0, major, sizeof(major));
  version_part(vid, 1, minor, sizeof(minor));
  version_part(vid, 2, patch, sizeof(patch));
  machine_arch(env, arch, sizeof(arch));
  /* os-release(5)'s defaults for a field a file leaves out. */
  const char *vals[] = {name ? name : "Linux", version, major, minor, patch, build, id ? id : "linux",
                        like, codename ? codename : other_codename, arch};
  inv_table_add(tab, vals);
  tt_buf_free(&b);
}

/* ---- kernel_info ---- */

void inv_linux_kernel_info(const inv_env_t *env, inv_table_t *tab) {
  char version[INV_VALUE_MAX];
  int vrc = inv_read_value(env, "/proc/sys/kernel/osrelease", version, sizeof(version));
  if (vrc) {
    /* "Linux version 6.1.0-18-amd64 (...)": the third word. */
    char sig[INV_VALUE_MAX];
    if (inv_read_value(env, "/proc/version", sig, sizeof(sig)) == 0 && strncmp(sig, "Linux version ", 14) == 0) {
      size_t n = strcspn(sig + 14, " \t");
      if (n > 0) {
        snprintf(version, sizeof(version), "%.*s", (int)n, sig + 14);
        vrc = 0;
      }
    }
  }
  tt_buf_t b;
  int crc = inv_read(env, "/proc/cmdline", &b);
  if (vrc && crc) {
    inv_table_fail(tab, "cannot read /proc/sys/kernel/osrelease or /proc/cmdline: %s", tt_strerror(crc));
    return;
  }
  if (vrc) inv_table_fail(tab, "cannot read the kernel's version: %s", tt_strerror(vrc));
  if (crc) inv_table_fail(tab, "cannot read /proc/cmdline: %s", tt_strerror(crc));
  /* BOOT_IMAGE= is the kernel's path and root= its device; the rest are its arguments. */
  char args[INV_CELL_MAX + 1] = "", path[INV_CELL_MAX + 1] = "", dev[INV_CELL_MAX + 1] = "";
  if (!crc) {
    size_t alen = 0;
    char *s = (char *)b.data + b.off, *end = s + b.len;
    while (s < end) {
      while (s < end && inv_is_space(*s)) s++;
      char *w = s;
      while (s < end && *s && !inv_is_space(*s)) s++;
      if (s == w) break;
      size_t n = (size_t)(s - w);
      if (n > 11 && strncmp(w, "BOOT_IMAGE=", 11) == 0) {
        snprintf(path, sizeof(path), "%.*s", (int)(n - 11), w + 11);
      } else if (n > 5 && strncmp(w, "root=", 5) == 0) {
        snprintf(dev, sizeof(dev), "%.*s", (int)(n - 5), w + 5);
      } else if (alen + n + 1 < sizeof(args)) {
        if (alen) args[alen++] = ' ';
        memcpy(args + alen, w, n);
        args[alen += n] = 0;
      }
    }
    tt_buf_free(&b);
  }
  const char *vals[] = {vrc ? "" : version, args, path, dev};
  inv_table_add(tab, vals);
}

/* ---- uptime ---- */

void inv_linux_uptime(const inv_env_t *env, inv_table_t *tab) {
  char v[INV_VALUE_MAX];
  int rc = inv_read_value(env, "/proc/uptime", v, sizeof(v));
  if (rc) {
    inv_table_fail(tab, "cannot read /proc/uptime: %s", tt_strerror(rc));
    return;
  }
  /* "9318.24 17725.02": seconds since boot, then idle time; whole seconds are reported. */
  size_t n = strspn(v, "0123456789");
  if (n == 0 || n > 18 || (v[n] && v[n] != '.' && !inv_is_space(v[n]))) {
    inv_table_fail(tab, "/proc/uptime does not start with a number");
    return;
  }
  uint64_t total = inv_leading_u64(v);
  char d[24], h[24], m[24], s[24], t[24];
  inv_u64_str(d, sizeof(d), total / 86400);
  inv_u64_str(h, sizeof(h), total % 86400 / 3600);
  inv_u64_str(m, sizeof(m), total % 3600 / 60);
  inv_u64_str(s, sizeof(s), total % 60);
  inv_u64_str(t, sizeof(t), total);
  const char *vals[] = {d, h, m, s, t};
  inv_table_add(tab, vals);
}
