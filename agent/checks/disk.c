/* Disk checks: space and inodes used per filesystem (disk_used, inodes_used), read from the
 * inventory's mounts table so that both see the machine the same way, and the room where the
 * agent keeps its state (agent_state_disk). statvfs comes through ctx->statvfs_fn. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "checks.h"
#include "inv/linux/linux.h"
#include "inv/linux/scan.h"

static long col_of(const inv_table_t *t, const char *name) {
  for (size_t c = 0; c < t->ncols; c++)
    if (!strcmp(t->cols[c], name)) return (long)c;
  return -1;
}

/* "ro" among a mount's options: a read-only filesystem (a snap, a CD) is full by design. */
static bool read_only(const char *opts) {
  for (const char *p = opts; *p;) {
    size_t n = strcspn(p, ",");
    if (n == 2 && p[0] == 'r' && p[1] == 'o') return true;
    p += n + (p[n] == ',');
  }
  return false;
}

/* used * 100 / total rounded up, as df shows it: any use at all is at least 1%. */
static bool pct_up(uint64_t used, uint64_t total, uint64_t *pct) {
  if (total == 0 || used > total || used > UINT64_MAX / 100) return false;
  *pct = (used * 100 + total - 1) / total;
  return true;
}

typedef struct {
  const inv_table_t *m;
  size_t col;
} by_path_t;

static int by_path_then_later(const void *x, const void *y, void *arg) {
  const by_path_t *k = arg;
  size_t a = *(const size_t *)x, b = *(const size_t *)y;
  int c = strcmp(inv_cell(k->m, a, k->col), inv_cell(k->m, b, k->col));
  return c ? c : (a < b) - (a > b);
}

/* Rows whose mount point a later row mounts over: /proc/self/mounts lists both, and only the
 * later is what the path shows (what statvfs measured, the type it has). calloc'd, or NULL. */
static bool *visible_only(const inv_table_t *m, size_t c_path) {
  bool *hidden = calloc(m->nrows ? m->nrows : 1, sizeof(*hidden));
  size_t *idx = malloc((m->nrows ? m->nrows : 1) * sizeof(*idx));
  if (!hidden || !idx) {
    free(hidden);
    free(idx);
    return NULL;
  }
  for (size_t i = 0; i < m->nrows; i++) idx[i] = i;
  by_path_t k = {m, c_path};
  qsort_r(idx, m->nrows, sizeof(*idx), by_path_then_later, &k);
  for (size_t i = 1; i < m->nrows; i++)
    if (!strcmp(inv_cell(m, idx[i], c_path), inv_cell(m, idx[i - 1], c_path))) hidden[idx[i]] = true;
  free(idx);
  return hidden;
}

static void disk_check(const agent_check_ctx_t *ctx, const tt_check_conf_t *conf, agent_check_run_t *run,
                       bool inodes) {
  tt_checks_format_num(TT_CHECK_V_PERCENT, conf->threshold, run->threshold, sizeof(run->threshold));
  size_t ncols = 0;
  while (inv_linux_mounts_cols[ncols]) ncols++;
  inv_table_t m;
  if (inv_table_init(&m, "mounts", inv_linux_mounts_cols, ncols)) {
    agent_check_fail(run, "out of memory");
    return;
  }
  inv_linux_mounts_with(&ctx->env, &m, ctx->statvfs_fn ? ctx->statvfs_fn : statvfs);
  if (m.nrows == 0) {
    agent_check_fail(run, "%s", m.error[0] ? m.error : "no filesystems are mounted");
    inv_table_free(&m);
    return;
  }
  long c_path = col_of(&m, "path"), c_type = col_of(&m, "type"), c_bs = col_of(&m, "blocks_size"),
       c_blocks = col_of(&m, "blocks"), c_free = col_of(&m, "blocks_free"), c_avail = col_of(&m, "blocks_available"),
       c_files = col_of(&m, "inodes"), c_ffree = col_of(&m, "inodes_free"), c_flags = col_of(&m, "flags");
  bool *hidden = visible_only(&m, (size_t)c_path);
  if (!hidden) {
    agent_check_fail(run, "out of memory");
    inv_table_free(&m);
    return;
  }
  for (size_t i = 0; i < m.nrows; i++) {
    const char *path = inv_cell(&m, i, (size_t)c_path), *type = inv_cell(&m, i, (size_t)c_type);
    uint64_t bs, blocks, bfree, bavail, files, ffree, pct;
    if (hidden[i] || agent_check_listed(conf->list, type) || agent_check_listed(conf->list, path) ||
        read_only(inv_cell(&m, i, (size_t)c_flags)))
      continue;
    /* No usage (a network filesystem is not asked: statvfs could hang; /proc has no blocks):
     * nothing to judge. */
    if (!inv_parse_u64(inv_cell(&m, i, (size_t)c_bs), &bs) || !inv_parse_u64(inv_cell(&m, i, (size_t)c_blocks), &blocks) ||
        !inv_parse_u64(inv_cell(&m, i, (size_t)c_free), &bfree) ||
        !inv_parse_u64(inv_cell(&m, i, (size_t)c_avail), &bavail) || blocks == 0 || bfree > blocks)
      continue;
    char v[TT_CHECK_TEXT_MAX], sz[32];
    if (!inodes) {
      /* Of what its users can have, as df counts: the root-reserved blocks are not theirs. */
      uint64_t used = blocks - bfree;
      if (bavail > UINT64_MAX - used || !pct_up(used, used + bavail, &pct)) continue;
      if (bs && bavail <= UINT64_MAX / bs) agent_check_fmt_bytes(sz, sizeof(sz), bavail * bs);
      else snprintf(sz, sizeof(sz), "?");
      snprintf(v, sizeof(v), "%" PRIu64 "%% used (%s free)", pct, sz);
    } else {
      /* btrfs and some others count no inodes: only space can run out there. */
      if (!inv_parse_u64(inv_cell(&m, i, (size_t)c_files), &files) ||
          !inv_parse_u64(inv_cell(&m, i, (size_t)c_ffree), &ffree) || files == 0 || ffree > files ||
          !pct_up(files - ffree, files, &pct))
        continue;
      snprintf(v, sizeof(v), "%" PRIu64 "%% of inodes used (%" PRIu64 " free)", pct, ffree);
    }
    agent_check_sample(run, path, (int64_t)pct >= conf->threshold ? TT_CHECK_FAILING : TT_CHECK_OK, NULL, "%s", v);
  }
  free(hidden);
  inv_table_free(&m);
}

void agent_check_disk_used(const agent_check_ctx_t *ctx, const tt_check_conf_t *conf, agent_check_run_t *run) {
  disk_check(ctx, conf, run, false);
}

void agent_check_inodes_used(const agent_check_ctx_t *ctx, const tt_check_conf_t *conf, agent_check_run_t *run) {
  disk_check(ctx, conf, run, true);
}

/* The agent writes its renewed certificate and the policy it runs there: a full or read-only
 * filesystem means the next renewal cannot be kept. Not under inventory.root: it is the
 * agent's own directory. */
void agent_check_agent_state_disk(const agent_check_ctx_t *ctx, const tt_check_conf_t *conf, agent_check_run_t *run) {
  tt_checks_format_num(TT_CHECK_V_PERCENT, conf->threshold, run->threshold, sizeof(run->threshold));
  struct statvfs sv;
  if ((ctx->statvfs_fn ? ctx->statvfs_fn : statvfs)(ctx->state_dir, &sv)) {
    int e = errno;
    if (e == ENOENT) agent_check_na(run, "no state directory at %s", ctx->state_dir);
    else agent_check_fail(run, "cannot look at %s: %s", ctx->state_dir, strerror(e));
    return;
  }
  uint64_t unit = sv.f_frsize ? sv.f_frsize : sv.f_bsize, used = sv.f_blocks - sv.f_bfree, pct = 0;
  char sz[32];
  if (sv.f_bfree > sv.f_blocks || sv.f_bavail > UINT64_MAX - used || !pct_up(used, used + sv.f_bavail, &pct)) {
    agent_check_fail(run, "%s: the filesystem reports no usable size", ctx->state_dir);
    return;
  }
  if (unit && sv.f_bavail <= UINT64_MAX / unit) agent_check_fmt_bytes(sz, sizeof(sz), (uint64_t)sv.f_bavail * unit);
  else snprintf(sz, sizeof(sz), "?");
  if (sv.f_flag & ST_RDONLY)
    agent_check_sample(run, "", TT_CHECK_FAILING, NULL, "read-only (%s)", ctx->state_dir);
  else
    agent_check_sample(run, "", (int64_t)pct >= conf->threshold ? TT_CHECK_FAILING : TT_CHECK_OK, NULL,
                       "%" PRIu64 "%% used, %s free (%s)", pct, sz, ctx->state_dir);
}
