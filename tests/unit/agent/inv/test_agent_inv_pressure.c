/* Pressure (agent/inv/linux/pressure.c): pressure stall information and memory from the
 * captured /proc, a missing or garbled file said or skipped; disk pressure from mounts tables
 * made here (the fixture's filesystems are this machine's, whose usage no test controls):
 * 90% or more of space or inodes, as df rounds, and never a read-only or unmeasured one. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "inv_fixture.h"

static void test_pressure_stall(void **state) {
  (void)state;
  inv_env_t env = {.root = FIXTURE_A};
  inv_table_t t;
  FX_COLLECT(pressure_stall, &env, &t);
  assert_string_equal(t.error, "");
  assert_int_equal(t.nrows, 3);
  long r = fx_find(&t, "resource", "memory");
  assert_true(r >= 0);
  assert_string_equal(fx_val(&t, (size_t)r, "some_avg10"), "12.50");
  assert_string_equal(fx_val(&t, (size_t)r, "some_avg60"), "8.25");
  assert_string_equal(fx_val(&t, (size_t)r, "some_avg300"), "3.10");
  assert_string_equal(fx_val(&t, (size_t)r, "some_total"), "987654321");
  assert_string_equal(fx_val(&t, (size_t)r, "full_avg10"), "4.75");
  assert_string_equal(fx_val(&t, (size_t)r, "full_total"), "123456789");
  r = fx_find(&t, "resource", "cpu");
  assert_string_equal(fx_val(&t, (size_t)r, "some_avg10"), "0.00");
  /* io's "full" line has a value that is not a number: its columns stay empty. */
  r = fx_find(&t, "resource", "io");
  assert_string_equal(fx_val(&t, (size_t)r, "some_avg10"), "31.02");
  assert_string_equal(fx_val(&t, (size_t)r, "full_avg10"), "");
  assert_string_equal(fx_val(&t, (size_t)r, "full_total"), "");
  inv_table_free(&t);

  /* A kernel without PSI: the table says so. One file of three: one row. */
  char root[512];
  fx_mkroot(root, sizeof(root));
  inv_env_t bare = {.root = root};
  FX_COLLECT(pressure_stall, &bare, &t);
  assert_int_equal(t.nrows, 0);
  assert_non_null(strstr(t.error, "/proc/pressure"));
  inv_table_free(&t);
  fx_puts(root, "proc/pressure/io", "some avg10=1.00 avg60=2.00 avg300=3.00 total=4\n");
  fx_puts(root, "proc/pressure/memory", "garbage\nsome avg10=1.00\n");
  FX_COLLECT(pressure_stall, &bare, &t);
  assert_string_equal(t.error, "");
  assert_int_equal(t.nrows, 1);
  assert_string_equal(fx_val(&t, 0, "resource"), "io");
  inv_table_free(&t);
  fx_rmroot(root);
}

static void test_memory_pressure(void **state) {
  (void)state;
  inv_env_t env = {.root = FIXTURE_A};
  inv_table_t t;
  FX_COLLECT(memory_pressure, &env, &t);
  assert_string_equal(t.error, "");
  assert_int_equal(t.nrows, 1);
  assert_string_equal(fx_val(&t, 0, "memory_total"), "25276157952");     /* 24683748 kB */
  assert_string_equal(fx_val(&t, 0, "memory_available"), "24837033984"); /* 24254916 kB */
  assert_string_equal(fx_val(&t, 0, "memory_available_percent"), "98");
  assert_string_equal(fx_val(&t, 0, "swap_total"), "2147479552");
  assert_string_equal(fx_val(&t, 0, "swap_used"), "1048576");
  assert_string_equal(fx_val(&t, 0, "swap_used_percent"), "0");
  assert_string_equal(fx_val(&t, 0, "oom_kills"), "3");
  inv_table_free(&t);

  char root[512];
  fx_mkroot(root, sizeof(root));
  inv_env_t bare = {.root = root};
  FX_COLLECT(memory_pressure, &bare, &t);
  assert_int_equal(t.nrows, 0);
  assert_non_null(strstr(t.error, "cannot read /proc/meminfo"));
  inv_table_free(&t);
  /* An old kernel (no MemAvailable), swap mostly used, no vmstat: what is known. */
  fx_puts(root, "proc/meminfo", "MemTotal: 1000 kB\nMemFree: 10 kB\nSwapTotal: 400 kB\nSwapFree: 100 kB\n");
  FX_COLLECT(memory_pressure, &bare, &t);
  assert_string_equal(t.error, "");
  assert_string_equal(fx_val(&t, 0, "memory_available"), "");
  assert_string_equal(fx_val(&t, 0, "swap_used"), "307200");
  assert_string_equal(fx_val(&t, 0, "swap_used_percent"), "75");
  assert_string_equal(fx_val(&t, 0, "oom_kills"), "");
  inv_table_free(&t);
  /* No MemTotal, or garbage: no row. */
  fx_puts(root, "proc/meminfo", "MemTotal: lots\n\xff\xfe\n");
  FX_COLLECT(memory_pressure, &bare, &t);
  assert_int_equal(t.nrows, 0);
  assert_string_equal(t.error, "/proc/meminfo has no MemTotal");
  inv_table_free(&t);
  fx_rmroot(root);
}

/* A mounts row: path, type, block size, blocks, free, available, inodes, inodes free, flags. */
static void mount_row(inv_table_t *m, const char *path, const char *type, const char *blocks, const char *bfree,
                      const char *bavail, const char *inodes, const char *ifree, const char *flags) {
  const char *row[] = {"/dev/x", "", path, type, blocks[0] ? "4096" : "", blocks, bfree, bavail, inodes, ifree, flags};
  assert_int_equal(inv_table_add(m, row), 0);
}

static void test_disk_pressure(void **state) {
  (void)state;
  inv_table_t m, t;
  size_t n = 0;
  while (inv_linux_mounts_cols[n]) n++;
  assert_int_equal(inv_table_init(&m, "mounts", inv_linux_mounts_cols, n), 0);
  mount_row(&m, "/", "ext4", "1000", "50", "0", "100", "50", "rw,relatime,errors=remount-ro"); /* 100% (reserved) */
  mount_row(&m, "/var", "ext4", "1000", "500", "500", "1000", "30", "rw");                      /* inodes 97% */
  mount_row(&m, "/boot", "ext4", "1000", "100", "100", "100", "90", "rw");                      /* 90% */
  mount_row(&m, "/data", "xfs", "10000", "1095", "1095", "100", "90", "rw");                    /* 89.05%: 90 */
  mount_row(&m, "/almost", "xfs", "10000", "1100", "1100", "100", "90", "rw");                  /* 89% */
  mount_row(&m, "/home", "btrfs", "1000", "20", "20", "0", "0", "rw");                         /* no inodes */
  mount_row(&m, "/snap/core/1", "squashfs", "1000", "0", "0", "10", "0", "ro,nodev");           /* full by design */
  mount_row(&m, "/mnt/nfs", "nfs4", "", "", "", "", "", "rw");                                  /* not measured */
  mount_row(&m, "/proc", "proc", "0", "0", "0", "0", "0", "rw");
  mount_row(&m, "/bad", "ext4", "10", "20", "0", "x", "y", "rw");                               /* free > size */
  assert_int_equal(inv_table_init(&t, "disk_pressure", inv_linux_disk_pressure_cols, 7), 0);
  inv_linux_disk_pressure_from(&m, &t);
  assert_string_equal(t.error, "");
  assert_int_equal(t.nrows, 5);
  long r = fx_find(&t, "path", "/");
  assert_true(r >= 0);
  assert_string_equal(fx_val(&t, (size_t)r, "used_percent"), "100");
  assert_string_equal(fx_val(&t, (size_t)r, "inodes_used_percent"), "50");
  assert_string_equal(fx_val(&t, (size_t)r, "bytes_available"), "0");
  assert_string_equal(fx_val(&t, (size_t)r, "type"), "ext4");
  r = fx_find(&t, "path", "/var");
  assert_string_equal(fx_val(&t, (size_t)r, "used_percent"), "50");
  assert_string_equal(fx_val(&t, (size_t)r, "inodes_used_percent"), "97");
  assert_string_equal(fx_val(&t, (size_t)r, "inodes_free"), "30");
  assert_string_equal(fx_val(&t, (size_t)r, "bytes_available"), "2048000");
  assert_string_equal(fx_val(&t, (size_t)fx_find(&t, "path", "/boot"), "used_percent"), "90");
  assert_string_equal(fx_val(&t, (size_t)fx_find(&t, "path", "/data"), "used_percent"), "90");
  r = fx_find(&t, "path", "/home");
  assert_string_equal(fx_val(&t, (size_t)r, "used_percent"), "98");
  assert_string_equal(fx_val(&t, (size_t)r, "inodes_used_percent"), "");
  assert_int_equal(fx_find(&t, "path", "/almost"), -1);
  assert_int_equal(fx_find(&t, "path", "/snap/core/1"), -1);
  assert_int_equal(fx_find(&t, "path", "/mnt/nfs"), -1);
  inv_table_free(&t);
  /* A mounts table that failed: so does this one. */
  inv_table_fail(&m, "cannot read /proc/mounts: No such file or directory");
  assert_int_equal(inv_table_init(&t, "disk_pressure", inv_linux_disk_pressure_cols, 7), 0);
  inv_linux_disk_pressure_from(&m, &t);
  assert_string_equal(t.error, "cannot read /proc/mounts: No such file or directory");
  inv_table_free(&t);
  inv_table_free(&m);

  /* On the captured root it runs the mounts collector (usage is this machine's). */
  inv_env_t env = {.root = FIXTURE_A};
  FX_COLLECT(disk_pressure, &env, &t);
  assert_string_equal(t.error, "");
  for (size_t i = 0; i < t.nrows; i++) assert_true(atoi(fx_val(&t, i, "used_percent")) >= 90 ||
                                                   atoi(fx_val(&t, i, "inodes_used_percent")) >= 90);
  inv_table_free(&t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_pressure_stall),
      cmocka_unit_test(test_memory_pressure),
      cmocka_unit_test(test_disk_pressure),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
