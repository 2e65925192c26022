/* Pressure, for the diagnostics report: filesystems nearly full (disk_pressure, from the
 * mounts table), memory and swap in use (memory_pressure, /proc/meminfo and /proc/vmstat),
 * and the kernel's pressure stall information (pressure_stall, /proc/pressure/{cpu,memory,
 * io}: the share of time tasks waited for CPU, memory or I/O). */
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include "linux.h"
#include "scan.h"
#include "tt/err.h"

const char *const inv_linux_disk_pressure_cols[] = {
    "path", "device", "type", "used_percent", "inodes_used_percent", "bytes_available", "inodes_free", NULL};
const char *const inv_linux_memory_pressure_cols[] = {
    "memory_total", "memory_available", "memory_available_percent", "swap_total", "swap_used", "swap_used_percent",
    "oom_kills", NULL};
const char *const inv_linux_pressure_stall_cols[] = {
    "resource",  "some_avg10", "some_avg60", "some_avg300", "some_total",
    "full_avg10", "full_avg60", "full_avg300", "full_total", NULL};

/* ---- disk_pressure ----------------------------------------------------------------------- */

static long col_of(const inv_table_t *t, const char *name) {
  for (size_t c = 0; c < t->ncols; c++)
    if (!strcmp(t->cols[c], name)) return (long)c;
  return -1;
}

/* A mount's option list has "ro": a read-only filesystem (a snap's squashfs, a CD) is full
 * by design, not under pressure. */
static bool read_only(const char *opts) {
  size_t n = strlen(opts);
  for (size_t i = 0; i + 2 <= n; i++)
    if ((i == 0 || opts[i - 1] == ',') && opts[i] == 'r' && opts[i + 1] == 'o' && (i + 2 == n || opts[i + 2] == ','))
      return true;
  return false;
}

/* part * 100 / whole (part <= whole), without the product overflowing for the sizes a
 * hostile /proc could claim; 0 for a whole of 0. */
static uint64_t pct_of(uint64_t part, uint64_t whole) {
  if (!whole) return 0;
  if (part > UINT64_MAX / 100) return part / (whole / 100 ? whole / 100 : 1);
  return part * 100 / whole;
}

/* used * 100 / total rounded up, as df shows it; false if total is 0 or it would overflow. */
static bool pct_up(uint64_t used, uint64_t total, uint64_t *pct) {
  if (total == 0 || used > UINT64_MAX / 100) return false;
  *pct = (used * 100 + total - 1) / total;
  return true;
}

void inv_linux_disk_pressure_from(const inv_table_t *m, inv_table_t *tab) {
  if (m->error[0]) inv_table_fail(tab, "%s", m->error);
  long c_path = col_of(m, "path"), c_dev = col_of(m, "device"), c_type = col_of(m, "type"),
       c_bs = col_of(m, "blocks_size"), c_blocks = col_of(m, "blocks"), c_free = col_of(m, "blocks_free"),
       c_avail = col_of(m, "blocks_available"), c_inodes = col_of(m, "inodes"), c_ifree = col_of(m, "inodes_free"),
       c_flags = col_of(m, "flags");
  if (c_path < 0 || c_dev < 0 || c_type < 0 || c_bs < 0 || c_blocks < 0 || c_free < 0 || c_avail < 0 || c_inodes < 0 ||
      c_ifree < 0 || c_flags < 0) {
    inv_table_fail(tab, "the mounts table lacks a column this needs");
    return;
  }
  for (size_t r = 0; r < m->nrows; r++) {
    uint64_t bs, blocks, bfree, bavail, inodes = 0, ifree = 0, pct = 0, ipct = 0;
    /* Usage is empty for a network filesystem (not asked, it could hang) and for one that
     * could not be measured: nothing to judge. */
    if (!inv_parse_u64(inv_cell(m, r, (size_t)c_bs), &bs) || !inv_parse_u64(inv_cell(m, r, (size_t)c_blocks), &blocks) ||
        !inv_parse_u64(inv_cell(m, r, (size_t)c_free), &bfree) ||
        !inv_parse_u64(inv_cell(m, r, (size_t)c_avail), &bavail) || blocks == 0 || bfree > blocks ||
        read_only(inv_cell(m, r, (size_t)c_flags)))
      continue;
    uint64_t used = blocks - bfree;
    bool space = pct_up(used, used + bavail, &pct) && pct >= INV_DISK_PRESSURE_PCT;
    /* btrfs and some others count no inodes (0): only space can be short there. */
    bool have_inodes = inv_parse_u64(inv_cell(m, r, (size_t)c_inodes), &inodes) &&
                       inv_parse_u64(inv_cell(m, r, (size_t)c_ifree), &ifree) && inodes > 0 && ifree <= inodes;
    bool files = have_inodes && pct_up(inodes - ifree, inodes, &ipct) && ipct >= INV_DISK_PRESSURE_PCT;
    if (!space && !files) continue;
    char s_pct[24], s_ipct[24] = "", s_bytes[24] = "", s_ifree[24] = "";
    inv_u64_str(s_pct, sizeof(s_pct), pct);
    if (have_inodes) {
      inv_u64_str(s_ipct, sizeof(s_ipct), ipct);
      inv_u64_str(s_ifree, sizeof(s_ifree), ifree);
    }
    if (bs == 0 || bavail <= UINT64_MAX / bs) inv_u64_str(s_bytes, sizeof(s_bytes), bavail * bs);
    const char *row[] = {inv_cell(m, r, (size_t)c_path), inv_cell(m, r, (size_t)c_dev), inv_cell(m, r, (size_t)c_type),
                         s_pct, s_ipct, s_bytes, s_ifree};
    if (inv_table_add(tab, row)) break;
  }
}

void inv_linux_disk_pressure(const inv_env_t *env, inv_table_t *tab) {
  size_t n = 0;
  while (inv_linux_mounts_cols[n]) n++;
  inv_table_t m;
  if (inv_table_init(&m, "mounts", inv_linux_mounts_cols, n)) {
    inv_table_fail(tab, "cannot make the mounts table");
    return;
  }
  inv_linux_mounts(env, &m);
  inv_linux_disk_pressure_from(&m, tab);
  inv_table_free(&m);
}

/* ---- memory_pressure --------------------------------------------------------------------- */

/* "Key:   123 kB" of /proc/meminfo (or "key 123" of /proc/vmstat) into *v; the unit is
 * left to the caller. */
static bool kv_u64(char *line, const char *key, uint64_t *v) {
  size_t kl = strlen(key);
  if (strncmp(line, key, kl) || (line[kl] != ':' && line[kl] != ' ')) return false;
  char *p = line + kl + 1, num[24];
  while (inv_is_space(*p)) p++;
  size_t d = 0;
  while (p[d] >= '0' && p[d] <= '9' && d < sizeof(num) - 1) num[d] = p[d], d++;
  num[d] = 0;
  return inv_parse_u64(num, v);
}

void inv_linux_memory_pressure(const inv_env_t *env, inv_table_t *tab) {
  tt_buf_t b;
  int rc = inv_read(env, "/proc/meminfo", &b);
  if (rc) {
    inv_table_fail(tab, "cannot read /proc/meminfo: %s", tt_strerror(rc));
    return;
  }
  uint64_t total = 0, avail = 0, stotal = 0, sfree = 0;
  bool have_total = false, have_avail = false, have_swap = false;
  char *cur = (char *)b.data + b.off, *end = cur + b.len, *line;
  while ((line = inv_next_line(&cur, end))) {
    uint64_t v;
    /* kB, and a number past 2^54 kB is no machine's. */
    if (kv_u64(line, "MemTotal", &v) && v < (1ull << 54)) total = v * 1024, have_total = true;
    else if (kv_u64(line, "MemAvailable", &v) && v < (1ull << 54)) avail = v * 1024, have_avail = true;
    else if (kv_u64(line, "SwapTotal", &v) && v < (1ull << 54)) stotal = v * 1024, have_swap = true;
    else if (kv_u64(line, "SwapFree", &v) && v < (1ull << 54)) sfree = v * 1024;
  }
  tt_buf_free(&b);
  if (!have_total || total == 0) {
    inv_table_fail(tab, "/proc/meminfo has no MemTotal");
    return;
  }
  char s_total[24], s_avail[24] = "", s_apct[24] = "", s_stotal[24] = "", s_sused[24] = "", s_spct[24] = "",
       s_oom[24] = "";
  inv_u64_str(s_total, sizeof(s_total), total);
  /* MemAvailable (Linux 3.14+) is the kernel's own estimate of what can be had without
   * swapping; older kernels show nothing here rather than a guess. */
  if (have_avail && avail <= total) {
    inv_u64_str(s_avail, sizeof(s_avail), avail);
    inv_u64_str(s_apct, sizeof(s_apct), pct_of(avail, total));
  }
  if (have_swap) {
    uint64_t used = sfree <= stotal ? stotal - sfree : 0;
    inv_u64_str(s_stotal, sizeof(s_stotal), stotal);
    inv_u64_str(s_sused, sizeof(s_sused), used);
    inv_u64_str(s_spct, sizeof(s_spct), pct_of(used, stotal));
  }
  /* The OOM killer's count since boot (Linux 4.13+): a machine that "freezes" often shows
   * it here. */
  if (inv_read(env, "/proc/vmstat", &b) == 0) {
    cur = (char *)b.data + b.off, end = cur + b.len;
    while ((line = inv_next_line(&cur, end))) {
      uint64_t v;
      if (kv_u64(line, "oom_kill", &v)) {
        inv_u64_str(s_oom, sizeof(s_oom), v);
        break;
      }
    }
    tt_buf_free(&b);
  }
  const char *row[] = {s_total, s_avail, s_apct, s_stotal, s_sused, s_spct, s_oom};
  inv_table_add(tab, row);
}

/* ---- pressure_stall ---------------------------------------------------------------------- */

/* A PSI average ("4.56") or total ("12345", microseconds): digits with at most one '.'. */
static bool psi_number(const char *s) {
  bool dot = false, digit = false;
  for (; *s; s++) {
    if (*s == '.' && !dot) dot = true;
    else if (*s >= '0' && *s <= '9') digit = true;
    else return false;
  }
  return digit;
}

/* "some avg10=0.00 avg60=0.00 avg300=0.00 total=0" into v[0..3]; false if it is not one. */
static bool psi_line(char *line, const char *kind, char v[4][24]) {
  static const char *const keys[4] = {"avg10", "avg60", "avg300", "total"};
  size_t kl = strlen(kind);
  if (strncmp(line, kind, kl) || line[kl] != ' ') return false;
  bool got[4] = {false, false, false, false};
  char *save = NULL;
  for (char *w = strtok_r(line + kl + 1, " \t", &save); w; w = strtok_r(NULL, " \t", &save)) {
    char *eq = strchr(w, '=');
    if (!eq) return false;
    *eq = 0;
    for (int k = 0; k < 4; k++) {
      if (strcmp(w, keys[k]) || !psi_number(eq + 1) || strlen(eq + 1) >= sizeof(v[k])) continue;
      snprintf(v[k], sizeof(v[k]), "%s", eq + 1);
      got[k] = true;
    }
  }
  return got[0] && got[1] && got[2] && got[3];
}

void inv_linux_pressure_stall(const inv_env_t *env, inv_table_t *tab) {
  static const char *const res[] = {"cpu", "memory", "io"};
  int first = 0;
  for (size_t i = 0; i < sizeof(res) / sizeof(res[0]); i++) {
    char path[64];
    tt_buf_t b;
    snprintf(path, sizeof(path), "/proc/pressure/%s", res[i]);
    int rc = inv_read(env, path, &b);
    if (rc) {
      if (!first) first = rc;
      continue;
    }
    char some[4][24] = {"", "", "", ""}, full[4][24] = {"", "", "", ""};
    bool any = false;
    char *cur = (char *)b.data + b.off, *end = cur + b.len, *line;
    while ((line = inv_next_line(&cur, end))) {
      char tmp[4][24];
      /* "full" for cpu came with Linux 5.13 (and is zero at the system level): absent, its
       * columns stay empty. */
      if (psi_line(line, "some", tmp)) memcpy(some, tmp, sizeof(some)), any = true;
      else if (psi_line(line, "full", tmp)) memcpy(full, tmp, sizeof(full));
    }
    tt_buf_free(&b);
    if (!any) continue;
    const char *row[] = {res[i], some[0], some[1], some[2], some[3], full[0], full[1], full[2], full[3]};
    if (inv_table_add(tab, row)) break;
  }
  if (tab->nrows == 0)
    inv_table_fail(tab, "no pressure stall information (Linux 4.20+ with psi on): /proc/pressure: %s",
                   first ? tt_strerror(first) : "nothing readable");
}
