/* The checks' samplers (agent/checks/{disk,memory,units,host,cert}.c) on captured machines
 * (tests/fixtures/linux-a and roots made here), with statvfs injected and stand-in systemctls
 * (tests/fixtures/bin): what each check finds, what it leaves out, and that a helper that
 * hangs or a file that cannot be read gives unknown, never ok. */
#include <errno.h>
#include <setjmp.h>
#include <sys/stat.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <cmocka.h>

#include "checks.h"
#include "inv/inv_fixture.h"

#define BIN TT_FIXTURES "/bin"
#define DAY (86400LL * 1000)

/* ---- statvfs, as the tests say ------------------------------------------------------------ */

typedef struct {
  const char *path; /* under the root */
  unsigned long frsize;
  fsblkcnt_t blocks, bfree, bavail;
  fsfilcnt_t files, ffree;
  unsigned long flag;
} fake_fs_t;

static const char *g_root;
static const fake_fs_t *g_fs;

static int fake_statvfs(const char *path, struct statvfs *out) {
  size_t n = g_root ? strlen(g_root) : 0;
  const char *rel = g_root && !strncmp(path, g_root, n) ? path + n : path;
  if (!*rel) rel = "/";
  for (const fake_fs_t *f = g_fs; f && f->path; f++) {
    if (strcmp(f->path, rel)) continue;
    memset(out, 0, sizeof(*out));
    out->f_frsize = out->f_bsize = f->frsize;
    out->f_blocks = f->blocks;
    out->f_bfree = f->bfree;
    out->f_bavail = f->bavail;
    out->f_files = f->files;
    out->f_ffree = f->ffree;
    out->f_flag = f->flag;
    return 0;
  }
  errno = ENOENT;
  return -1;
}

static agent_check_ctx_t ctx_at(const char *root, const char *path) {
  agent_check_ctx_t c;
  memset(&c, 0, sizeof(c));
  c.env.root = root;
  c.env.path = path;
  c.statvfs_fn = fake_statvfs;
  c.now_ms = 1700000000000;
  g_root = root;
  return c;
}

static tt_check_conf_t conf_of(tt_check_id_t id) {
  tt_checks_conf_t all;
  tt_checks_defaults(&all);
  return all.c[id];
}

/* The run's sample for dim, or NULL. */
static const agent_check_sample_t *sample(const agent_check_run_t *r, const char *dim) {
  for (size_t i = 0; i < r->n; i++)
    if (!strcmp(r->s[i].dim, dim)) return &r->s[i];
  return NULL;
}

static void expect(const agent_check_run_t *r, const char *dim, tt_check_state_t raw, const char *value) {
  const agent_check_sample_t *s = sample(r, dim);
  if (!s) fail_msg("no sample for \"%s\" (%zu samples, failed=%d na=%d why=%s)", dim, r->n, r->failed, r->na, r->why);
  if (s->raw != raw) fail_msg("\"%s\": %s, not %s (%s)", dim, tt_check_state_name(s->raw), tt_check_state_name(raw), s->value);
  if (value && strcmp(s->value, value)) fail_msg("\"%s\": value \"%s\", not \"%s\"", dim, s->value, value);
}

/* ---- disks ----------------------------------------------------------------------------------- */

static const fake_fs_t linux_a_fs[] = {
    /* /: 900 of 1000 blocks used, 50 more for its users (df: 900 / 950 = 95%) */
    {"/", 4096, 1000, 100, 50, 1000, 10, 0},
    {"/boot/efi", 512, 1000, 900, 900, 0, 0, 0},      /* vfat: no inodes */
    {"/media/usb stick", 4096, 100, 50, 50, 100, 90, 0},
    {"/run", 4096, 100, 1, 1, 100, 1, 0},             /* tmpfs, nearly full: left out by default */
    {"/dev/shm", 4096, 100, 100, 100, 100, 100, 0},
    {"/sys", 4096, 0, 0, 0, 0, 0, 0},                 /* no blocks: nothing to judge */
    {"/proc", 4096, 0, 0, 0, 0, 0, 0},
    {NULL, 0, 0, 0, 0, 0, 0, 0},
};

static void test_disk_used(void **state) {
  (void)state;
  g_fs = linux_a_fs;
  agent_check_ctx_t ctx = ctx_at(FIXTURE_A, NULL);
  tt_check_conf_t c = conf_of(TT_CHECK_DISK_USED);
  agent_check_run_t r;
  agent_check_run_init(&r);
  agent_check_disk_used(&ctx, &c, &r);
  assert_false(r.failed || r.na);
  assert_string_equal(r.threshold, "90%");
  expect(&r, "/", TT_CHECK_FAILING, "95% used (200 KiB free)");
  expect(&r, "/boot/efi", TT_CHECK_OK, "10% used (450 KiB free)");
  expect(&r, "/media/usb stick", TT_CHECK_OK, "50% used (200 KiB free)");
  /* tmpfs and devtmpfs by default; /sys and /proc have no blocks; the network and automount
   * filesystems are never asked; the fixture's garbage lines are no mounts. */
  assert_int_equal(r.n, 3);
  agent_check_run_free(&r);
  /* Nothing ignored: /run is there (99% full) and failing; the rest stays. */
  snprintf(c.list, sizeof(c.list), "%s", "");
  agent_check_run_init(&r);
  agent_check_disk_used(&ctx, &c, &r);
  expect(&r, "/run", TT_CHECK_FAILING, "99% used (4.0 KiB free)");
  expect(&r, "/dev/shm", TT_CHECK_OK, "0% used (400 KiB free)");
  assert_int_equal(r.n, 5);
  agent_check_run_free(&r);
  /* Patterns: a type, and mount points under /media. */
  snprintf(c.list, sizeof(c.list), "%s", "tmpfs,/media/*,vf?t");
  c.threshold = 96;
  agent_check_run_init(&r);
  agent_check_disk_used(&ctx, &c, &r);
  assert_int_equal(r.n, 1);
  expect(&r, "/", TT_CHECK_OK, NULL);
  agent_check_run_free(&r);
}

static void test_inodes_used(void **state) {
  (void)state;
  g_fs = linux_a_fs;
  agent_check_ctx_t ctx = ctx_at(FIXTURE_A, NULL);
  tt_check_conf_t c = conf_of(TT_CHECK_INODES_USED);
  agent_check_run_t r;
  agent_check_run_init(&r);
  agent_check_inodes_used(&ctx, &c, &r);
  expect(&r, "/", TT_CHECK_FAILING, "99% of inodes used (10 free)");
  expect(&r, "/media/usb stick", TT_CHECK_OK, "10% of inodes used (90 free)");
  assert_null(sample(&r, "/boot/efi")); /* vfat counts no inodes */
  assert_int_equal(r.n, 2);
  agent_check_run_free(&r);
}

static void test_disk_mounts_hostile_and_stacked(void **state) {
  (void)state;
  char root[512];
  fx_mkroot(root, sizeof(root));
  fx_puts(root, "proc/mounts",
          "/dev/sr0 /cdrom iso9660 ro,relatime 0 0\n"
          "/dev/sdd1 /data ext4 ro,relatime 0 0\n"         /* read-only: full by design */
          "/dev/sde1 /srv ext4 rw 0 0\n"                   /* mounted over by the next line */
          "/dev/sdf1 /srv xfs rw 0 0\n"
          "/dev/sdg1 /odd ext4 rw 0 0\n"                   /* free > blocks: not believed */
          "/dev/sdh1 relative ext4 rw 0 0\n"
          "\n\n/dev/x\n");
  static const fake_fs_t fs[] = {{"/cdrom", 2048, 100, 0, 0, 0, 0, 0},   {"/data", 4096, 100, 0, 0, 10, 0, 0},
                                 {"/srv", 4096, 100, 10, 10, 100, 50, 0}, {"/odd", 4096, 100, 200, 200, 10, 20, 0},
                                 {NULL, 0, 0, 0, 0, 0, 0, 0}};
  g_fs = fs;
  agent_check_ctx_t ctx = ctx_at(root, NULL);
  tt_check_conf_t c = conf_of(TT_CHECK_DISK_USED);
  agent_check_run_t r;
  agent_check_run_init(&r);
  agent_check_disk_used(&ctx, &c, &r);
  assert_int_equal(r.n, 1);
  expect(&r, "/srv", TT_CHECK_FAILING, "90% used (40 KiB free)");
  agent_check_run_free(&r);
  /* The visible /srv is xfs: ignoring xfs leaves it out, the ext4 under it is not judged. */
  snprintf(c.list, sizeof(c.list), "%s", "xfs");
  agent_check_run_init(&r);
  agent_check_disk_used(&ctx, &c, &r);
  assert_int_equal(r.n, 0);
  assert_false(r.failed);
  agent_check_run_free(&r);
  /* No mount table at all: the check cannot tell. */
  fx_rmroot(root);
  fx_mkroot(root, sizeof(root));
  ctx = ctx_at(root, NULL);
  agent_check_run_init(&r);
  agent_check_disk_used(&ctx, &c, &r);
  assert_true(r.failed);
  assert_non_null(strstr(r.why, "cannot read /proc/mounts"));
  agent_check_run_free(&r);
  fx_rmroot(root);
}

static void test_agent_state_disk(void **state) {
  (void)state;
  static const fake_fs_t fs[] = {{"/var/lib/tether-agent", 4096, 1000, 50, 40, 100, 50, 0},
                                 {"/ro/state", 4096, 1000, 500, 500, 100, 50, ST_RDONLY},
                                 {"/roomy", 4096, 1000, 900, 900, 100, 50, 0},
                                 {NULL, 0, 0, 0, 0, 0, 0, 0}};
  g_fs = fs;
  agent_check_ctx_t ctx = ctx_at(NULL, NULL);
  tt_check_conf_t c = conf_of(TT_CHECK_AGENT_STATE_DISK);
  agent_check_run_t r;
  snprintf(ctx.state_dir, sizeof(ctx.state_dir), "/var/lib/tether-agent");
  agent_check_run_init(&r);
  agent_check_agent_state_disk(&ctx, &c, &r);
  expect(&r, "", TT_CHECK_FAILING, "96% used, 160 KiB free (/var/lib/tether-agent)");
  agent_check_run_free(&r);
  snprintf(ctx.state_dir, sizeof(ctx.state_dir), "/ro/state");
  agent_check_run_init(&r);
  agent_check_agent_state_disk(&ctx, &c, &r);
  expect(&r, "", TT_CHECK_FAILING, "read-only (/ro/state)");
  agent_check_run_free(&r);
  snprintf(ctx.state_dir, sizeof(ctx.state_dir), "/roomy");
  agent_check_run_init(&r);
  agent_check_agent_state_disk(&ctx, &c, &r);
  expect(&r, "", TT_CHECK_OK, "10% used, 3.5 MiB free (/roomy)");
  agent_check_run_free(&r);
  snprintf(ctx.state_dir, sizeof(ctx.state_dir), "/nowhere");
  agent_check_run_init(&r);
  agent_check_agent_state_disk(&ctx, &c, &r);
  assert_true(r.na);
  assert_string_equal(r.why, "no state directory at /nowhere");
  agent_check_run_free(&r);
}

/* ---- memory ---------------------------------------------------------------------------------- */

static void test_memory_pressure(void **state) {
  (void)state;
  agent_check_ctx_t ctx = ctx_at(FIXTURE_A, NULL);
  tt_check_conf_t c = conf_of(TT_CHECK_MEMORY_PRESSURE);
  agent_check_run_t r;
  agent_check_run_init(&r);
  agent_check_memory_pressure(&ctx, &c, &r); /* some avg60=8.25 */
  expect(&r, "", TT_CHECK_OK, "8.25% of the last minute waiting for memory");
  assert_string_equal(r.threshold, "20%");
  agent_check_run_free(&r);
  c.threshold = 8;
  agent_check_run_init(&r);
  agent_check_memory_pressure(&ctx, &c, &r);
  expect(&r, "", TT_CHECK_FAILING, NULL);
  agent_check_run_free(&r);
  /* No PSI: MemAvailable against checks.memory_pressure.available. */
  char root[512];
  fx_mkroot(root, sizeof(root));
  fx_puts(root, "proc/meminfo", "MemTotal: 1000 kB\nMemFree: 10 kB\nMemAvailable: 40 kB\n");
  ctx = ctx_at(root, NULL);
  agent_check_run_init(&r);
  agent_check_memory_pressure(&ctx, &c, &r);
  expect(&r, "", TT_CHECK_FAILING, "4% available");
  assert_string_equal(r.threshold, "under 5% available");
  assert_non_null(strstr(r.s[0].message, "no pressure stall information"));
  agent_check_run_free(&r);
  /* Neither: unknown. */
  fx_puts(root, "proc/meminfo", "garbage\n");
  agent_check_run_init(&r);
  agent_check_memory_pressure(&ctx, &c, &r);
  assert_true(r.failed);
  assert_non_null(strstr(r.why, "no pressure stall information"));
  agent_check_run_free(&r);
  fx_rmroot(root);
}

static void test_swap_used(void **state) {
  (void)state;
  agent_check_ctx_t ctx = ctx_at(FIXTURE_A, NULL);
  tt_check_conf_t c = conf_of(TT_CHECK_SWAP_USED);
  agent_check_run_t r;
  agent_check_run_init(&r);
  agent_check_swap_used(&ctx, &c, &r); /* 1 MiB of 2 GiB */
  expect(&r, "", TT_CHECK_OK, "0% used (1.0 MiB of 2.0 GiB)");
  agent_check_run_free(&r);
  char root[512];
  fx_mkroot(root, sizeof(root));
  fx_puts(root, "proc/meminfo", "MemTotal: 1000 kB\nSwapTotal: 1000 kB\nSwapFree: 100 kB\n");
  ctx = ctx_at(root, NULL);
  agent_check_run_init(&r);
  agent_check_swap_used(&ctx, &c, &r);
  expect(&r, "", TT_CHECK_FAILING, "90% used (900 KiB of 1000 KiB)");
  agent_check_run_free(&r);
  fx_puts(root, "proc/meminfo", "MemTotal: 1000 kB\nSwapTotal: 0 kB\nSwapFree: 0 kB\n");
  agent_check_run_init(&r);
  agent_check_swap_used(&ctx, &c, &r);
  assert_true(r.na);
  assert_string_equal(r.why, "this machine has no swap");
  agent_check_run_free(&r);
  fx_rmroot(root);
}

/* ---- systemd --------------------------------------------------------------------------------- */

static void test_units_failed(void **state) {
  (void)state;
  agent_check_ctx_t ctx = ctx_at(FIXTURE_A, BIN "/failed");
  tt_check_conf_t c = conf_of(TT_CHECK_UNITS_FAILED);
  agent_check_run_t r;
  agent_check_run_init(&r);
  agent_check_units_failed(&ctx, &c, &r);
  expect(&r, "", TT_CHECK_FAILING, "3 failed: backup.service, cups.service, srv-data.mount");
  assert_non_null(strstr(r.s[0].message, "backup.service: exit-code 2"));
  assert_non_null(strstr(r.s[0].message, "cups.service: core-dump 11"));
  agent_check_run_free(&r);
  /* Ignored ones do not count; under the threshold it passes. */
  snprintf(c.list, sizeof(c.list), "%s", "cups*,*.mount");
  c.threshold = 2;
  agent_check_run_init(&r);
  agent_check_units_failed(&ctx, &c, &r);
  expect(&r, "", TT_CHECK_OK, "1 failed: backup.service");
  agent_check_run_free(&r);
  /* A systemctl that never answers: unknown after the timeout, saying so. */
  ctx = ctx_at(FIXTURE_A, BIN "/hang");
  ctx.env.timeout_ms = 200;
  agent_check_run_init(&r);
  agent_check_units_failed(&ctx, &c, &r);
  assert_true(r.failed);
  assert_int_equal(r.n, 0);
  assert_string_equal(r.why, "systemctl timed out after 200ms (stopped)");
  agent_check_run_free(&r);
  /* Not booted with systemd: nothing to judge. */
  char root[512];
  fx_mkroot(root, sizeof(root));
  ctx = ctx_at(root, BIN "/failed");
  agent_check_run_init(&r);
  agent_check_units_failed(&ctx, &c, &r);
  assert_true(r.na);
  assert_string_equal(r.why, "not booted with systemd");
  agent_check_run_free(&r);
  fx_rmroot(root);
}

static void test_services_down(void **state) {
  (void)state;
  agent_check_ctx_t ctx = ctx_at(FIXTURE_A, BIN "/services");
  tt_check_conf_t c = conf_of(TT_CHECK_SERVICES_DOWN);
  agent_check_run_t r;
  agent_check_run_init(&r);
  agent_check_services_down(&ctx, &c, &r);
  assert_true(r.na); /* none required by default */
  agent_check_run_free(&r);
  char err[256];
  tt_checks_conf_t all;
  tt_checks_defaults(&all);
  assert_int_equal(tt_checks_set(&all, "checks.services_down.services", "ssh, sshd, cups, nope, nginx, mute", err,
                                 sizeof(err)),
                   0);
  c = all.c[TT_CHECK_SERVICES_DOWN];
  agent_check_run_init(&r);
  agent_check_services_down(&ctx, &c, &r);
  expect(&r, "ssh.service", TT_CHECK_OK, "active (running)");
  expect(&r, "sshd.service", TT_CHECK_OK, "active (running) as ssh.service");
  expect(&r, "cups.service", TT_CHECK_FAILING, "failed (failed)");
  expect(&r, "nope.service", TT_CHECK_FAILING, "not installed");
  expect(&r, "nginx.service", TT_CHECK_OK, "reloading (reload)");
  expect(&r, "mute.service", TT_CHECK_UNKNOWN, NULL);
  assert_string_equal(sample(&r, "mute.service")->message, "systemctl said nothing of it");
  assert_string_equal(r.threshold, "active");
  agent_check_run_free(&r);
  /* Hung: each required service unknown, by name. */
  ctx = ctx_at(FIXTURE_A, BIN "/hang");
  ctx.env.timeout_ms = 200;
  agent_check_run_init(&r);
  agent_check_services_down(&ctx, &c, &r);
  assert_int_equal(r.n, 6);
  expect(&r, "ssh.service", TT_CHECK_UNKNOWN, "");
  assert_string_equal(sample(&r, "cups.service")->message, "systemctl timed out after 200ms (stopped)");
  agent_check_run_free(&r);
  /* Not installed at all: unknown too. */
  ctx = ctx_at(FIXTURE_A, BIN "/nothing-here");
  agent_check_run_init(&r);
  agent_check_services_down(&ctx, &c, &r);
  expect(&r, "ssh.service", TT_CHECK_UNKNOWN, "");
  assert_string_equal(sample(&r, "ssh.service")->message, "systemctl is not installed");
  agent_check_run_free(&r);
}

/* ---- the host and the agent -------------------------------------------------------------------- */

static void test_reboot_pending(void **state) {
  (void)state;
  agent_check_ctx_t ctx = ctx_at(FIXTURE_A, NULL);
  /* An hour after the fixture's flag file was made (its mtime: a checkout's time, or older). */
  struct stat flag;
  assert_int_equal(stat(FIXTURE_A "/run/reboot-required", &flag), 0);
  ctx.now_ms = (int64_t)flag.st_mtime * 1000 + 3600 * 1000 + 500;
  tt_check_conf_t c = conf_of(TT_CHECK_REBOOT_PENDING);
  agent_check_run_t r;
  agent_check_run_init(&r);
  agent_check_reboot_pending(&ctx, &c, &r); /* within its 7 days */
  expect(&r, "", TT_CHECK_OK, NULL);
  assert_non_null(strstr(r.s[0].value, "wanted for 1h"));
  agent_check_run_free(&r);
  c.threshold = 0;
  agent_check_run_init(&r);
  agent_check_reboot_pending(&ctx, &c, &r);
  expect(&r, "", TT_CHECK_FAILING, NULL);
  assert_string_equal(r.threshold, "0s");
  agent_check_run_free(&r);
  /* A running kernel whose modules are gone: wanted since no one knows when, so failing. */
  char root[512];
  fx_mkroot(root, sizeof(root));
  fx_puts(root, "proc/sys/kernel/osrelease", "5.10.0-9-amd64\n");
  fx_puts(root, "lib/modules/5.10.0-20-amd64/modules.dep", "");
  ctx = ctx_at(root, NULL);
  c.threshold = 365 * DAY;
  agent_check_run_init(&r);
  agent_check_reboot_pending(&ctx, &c, &r);
  expect(&r, "", TT_CHECK_FAILING, "wanted since an unknown time (kernel)");
  assert_non_null(strstr(r.s[0].message, "is no longer installed"));
  agent_check_run_free(&r);
  fx_rmroot(root);
  fx_mkroot(root, sizeof(root));
  ctx = ctx_at(root, NULL);
  agent_check_run_init(&r);
  agent_check_reboot_pending(&ctx, &c, &r);
  expect(&r, "", TT_CHECK_OK, "no restart wanted");
  agent_check_run_free(&r);
  fx_rmroot(root);
}

static void test_clock_skew(void **state) {
  (void)state;
  agent_check_ctx_t ctx = ctx_at(NULL, NULL);
  tt_check_conf_t c = conf_of(TT_CHECK_CLOCK_SKEW); /* 1m */
  agent_check_run_t r;
  agent_check_run_init(&r);
  agent_check_clock_skew(&ctx, &c, &r);
  assert_true(r.failed); /* never welcomed: the broker's clock is not known */
  agent_check_run_free(&r);
  ctx.clock_known = true;
  ctx.clock_error_ms = 5;
  ctx.broker_ms = ctx.now_ms - 90000;
  agent_check_run_init(&r);
  agent_check_clock_skew(&ctx, &c, &r);
  expect(&r, "", TT_CHECK_FAILING, "+1m 30s (+-5ms) ahead of the broker");
  agent_check_run_free(&r);
  ctx.broker_ms = ctx.now_ms + 120000;
  agent_check_run_init(&r);
  agent_check_clock_skew(&ctx, &c, &r);
  expect(&r, "", TT_CHECK_FAILING, "-2m (+-5ms) behind the broker");
  agent_check_run_free(&r);
  /* The error bar counts in the device's favour: 61 s +- 2 s is not past a minute. */
  ctx.clock_error_ms = 2000;
  ctx.broker_ms = ctx.now_ms - 61000;
  agent_check_run_init(&r);
  agent_check_clock_skew(&ctx, &c, &r);
  expect(&r, "", TT_CHECK_OK, "+1m 1s (+-2s) ahead of the broker");
  agent_check_run_free(&r);
}

static void test_agent_renewal(void **state) {
  (void)state;
  agent_check_ctx_t ctx = ctx_at(NULL, NULL);
  tt_check_conf_t c = conf_of(TT_CHECK_AGENT_RENEWAL); /* 1d */
  agent_check_run_t r;
  agent_check_run_init(&r);
  agent_check_agent_renewal(&ctx, &c, &r);
  assert_true(r.na);
  agent_check_run_free(&r);
  ctx.renew_known = true;
  ctx.not_after_ms = ctx.now_ms + 10 * DAY;
  ctx.renew_due_ms = ctx.now_ms + 2 * DAY;
  agent_check_run_init(&r);
  agent_check_agent_renewal(&ctx, &c, &r);
  expect(&r, "", TT_CHECK_OK, "renews in 2d (expires 2023-11-24T22:13:20Z)");
  agent_check_run_free(&r);
  ctx.renew_due_ms = ctx.now_ms - 2 * 3600 * 1000;
  snprintf(ctx.renew_error, sizeof(ctx.renew_error), "connection closed");
  agent_check_run_init(&r);
  agent_check_agent_renewal(&ctx, &c, &r);
  expect(&r, "", TT_CHECK_OK, "renewal overdue by 2h (expires 2023-11-24T22:13:20Z)");
  agent_check_run_free(&r);
  ctx.renew_due_ms = ctx.now_ms - 2 * DAY;
  agent_check_run_init(&r);
  agent_check_agent_renewal(&ctx, &c, &r);
  expect(&r, "", TT_CHECK_FAILING, "renewal overdue by 2d (expires 2023-11-24T22:13:20Z)");
  assert_string_equal(r.s[0].message, "connection closed");
  agent_check_run_free(&r);
  ctx.not_after_ms = ctx.now_ms - 3 * DAY;
  agent_check_run_init(&r);
  agent_check_agent_renewal(&ctx, &c, &r);
  expect(&r, "", TT_CHECK_FAILING, NULL);
  assert_non_null(strstr(r.s[0].value, "expired 3d ago"));
  agent_check_run_free(&r);
}

/* A self-signed P-256 certificate valid for days (negative: expired), PEM or DER. */
static void write_cert(const char *path, long days, int pem) {
  EVP_PKEY *k = EVP_EC_gen("P-256");
  X509 *x = X509_new();
  assert_non_null(k);
  assert_non_null(x);
  X509_set_version(x, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x), 7);
  X509_gmtime_adj(X509_getm_notBefore(x), -400L * 86400);
  X509_gmtime_adj(X509_getm_notAfter(x), days * 86400);
  X509_NAME *n = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"site.example", -1, -1, 0);
  X509_set_issuer_name(x, n);
  X509_set_pubkey(x, k);
  assert_true(X509_sign(x, k, EVP_sha256()) > 0);
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  assert_int_equal(pem ? PEM_write_X509(f, x) : i2d_X509_fp(f, x), 1);
  fclose(f);
  X509_free(x);
  EVP_PKEY_free(k);
}

static void test_cert_expiry(void **state) {
  (void)state;
  char dir[128], soon[160], later[160], old[160], junk[160], none[160], list[TT_POLICY_VALUE_MAX + 1], err[512];
  fx_mkroot(dir, sizeof(dir));
  snprintf(soon, sizeof(soon), "%s/soon.pem", dir);
  snprintf(later, sizeof(later), "%s/later.der", dir);
  snprintf(old, sizeof(old), "%s/old.pem", dir);
  snprintf(junk, sizeof(junk), "%s/junk.pem", dir);
  snprintf(none, sizeof(none), "%s/none.pem", dir);
  write_cert(soon, 10, 1);
  write_cert(later, 100, 0);
  write_cert(old, -3, 1);
  fx_puts(dir, "junk.pem", "-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n");
  tt_checks_conf_t all;
  tt_checks_defaults(&all);
  agent_check_ctx_t ctx = ctx_at(NULL, NULL);
  ctx.now_ms = (int64_t)time(NULL) * 1000;
  agent_check_run_t r;
  agent_check_run_init(&r);
  agent_check_cert_expiry(&ctx, &all.c[TT_CHECK_CERT_EXPIRY], &r);
  assert_true(r.na); /* no paths by default */
  agent_check_run_free(&r);
  snprintf(list, sizeof(list), "%s,%s,%s,%s,%s,%s", soon, later, old, junk, none, dir);
  assert_int_equal(tt_checks_set(&all, "checks.cert_expiry.paths", list, err, sizeof(err)), 0);
  agent_check_run_init(&r);
  agent_check_cert_expiry(&ctx, &all.c[TT_CHECK_CERT_EXPIRY], &r);
  assert_string_equal(r.threshold, "14d");
  assert_int_equal(r.n, 6);
  expect(&r, soon, TT_CHECK_FAILING, NULL);
  const char *v = sample(&r, soon)->value; /* (now is whole seconds: the edge of the tenth day either side) */
  assert_true(strstr(v, "expires in 9d 23h") == v || strstr(v, "expires in 10d") == v);
  assert_non_null(strstr(sample(&r, soon)->message, "CN=site.example"));
  expect(&r, later, TT_CHECK_OK, NULL);
  v = sample(&r, later)->value;
  assert_true(strstr(v, "expires in 99d 23h") == v || strstr(v, "expires in 100d") == v);
  expect(&r, old, TT_CHECK_FAILING, NULL);
  assert_non_null(strstr(sample(&r, old)->value, "expired 3d ago"));
  expect(&r, junk, TT_CHECK_UNKNOWN, "not a certificate (PEM or DER)");
  expect(&r, none, TT_CHECK_UNKNOWN, "cannot read it: no such file or directory");
  expect(&r, dir, TT_CHECK_UNKNOWN, "cannot read it: not a regular file");
  agent_check_run_free(&r);
  fx_rmroot(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_disk_used),
      cmocka_unit_test(test_inodes_used),
      cmocka_unit_test(test_disk_mounts_hostile_and_stacked),
      cmocka_unit_test(test_agent_state_disk),
      cmocka_unit_test(test_memory_pressure),
      cmocka_unit_test(test_swap_used),
      cmocka_unit_test(test_units_failed),
      cmocka_unit_test(test_services_down),
      cmocka_unit_test(test_reboot_pending),
      cmocka_unit_test(test_clock_skew),
      cmocka_unit_test(test_agent_renewal),
      cmocka_unit_test(test_cert_expiry),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
