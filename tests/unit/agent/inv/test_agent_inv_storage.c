/* Mounts and block devices (agent/inv/linux/storage.c) against the captured root linux-a,
 * roots with files missing or garbled, and this machine itself. */
#include "inv_fixture.h"

static const inv_env_t g_fx = {.root = FIXTURE_A};

static void test_mounts(void **state) {
  (void)state;
  inv_table_t t;
  FX_COLLECT(mounts, &g_fx, &t);
  assert_string_equal(t.error, "");
  /* Every mount line, pseudo filesystems too; the two garbled lines skipped. */
  assert_int_equal(t.nrows, 12);
  long r = fx_find(&t, "path", "/");
  assert_true(r >= 0);
  assert_string_equal(fx_val(&t, (size_t)r, "device"), "/dev/mapper/vg0-root");
  assert_string_equal(fx_val(&t, (size_t)r, "device_alias"), "/dev/dm-0"); /* the fixture's symlink */
  assert_string_equal(fx_val(&t, (size_t)r, "type"), "ext4");
  assert_string_equal(fx_val(&t, (size_t)r, "flags"), "rw,relatime,errors=remount-ro");
  /* The fixture's "/" is a directory: it has usage (the disk the fixture is on). */
  assert_true(atoll(fx_val(&t, (size_t)r, "blocks_size")) > 0);
  assert_true(atoll(fx_val(&t, (size_t)r, "blocks")) > 0);
  assert_true(atoll(fx_val(&t, (size_t)r, "blocks_available")) <= atoll(fx_val(&t, (size_t)r, "blocks_free")));
  assert_true(fx_val(&t, (size_t)r, "inodes")[0] != 0);
  /* A mount point the fixture lacks: usage left empty. */
  r = fx_find(&t, "path", "/boot/efi");
  assert_true(r >= 0);
  assert_string_equal(fx_val(&t, (size_t)r, "device_alias"), "/dev/sda1");
  assert_string_equal(fx_val(&t, (size_t)r, "type"), "vfat");
  assert_string_equal(fx_val(&t, (size_t)r, "blocks"), "");
  /* "\040" in the kernel's line is a space. */
  r = fx_find(&t, "path", "/media/usb stick");
  assert_true(r >= 0);
  assert_string_equal(fx_val(&t, (size_t)r, "device"), "/dev/sdb1");
  assert_string_equal(fx_val(&t, (size_t)r, "device_alias"), ""); /* no /dev/sdb1 in the fixture */
  /* Network and automounted filesystems are never statvfs'd, even where the path exists. */
  r = fx_find(&t, "path", "/home");
  assert_true(r >= 0);
  assert_string_equal(fx_val(&t, (size_t)r, "type"), "nfs4");
  assert_string_equal(fx_val(&t, (size_t)r, "device"), "nas.example.com:/export/home");
  assert_string_equal(fx_val(&t, (size_t)r, "blocks_size"), "");
  assert_true(fx_find(&t, "type", "autofs") >= 0);
  /* A device that is not a path has no alias. */
  r = fx_find(&t, "path", "/dev");
  assert_true(r >= 0);
  assert_string_equal(fx_val(&t, (size_t)r, "device"), "udev");
  assert_string_equal(fx_val(&t, (size_t)r, "device_alias"), "");
  inv_table_free(&t);
}

static void test_mounts_bad(void **state) {
  (void)state;
  char root[512];
  fx_mkroot(root, sizeof(root));
  inv_env_t env = {.root = root};
  inv_table_t t;
  FX_COLLECT(mounts, &env, &t);
  assert_non_null(strstr(t.error, "/proc/mounts"));
  assert_int_equal(t.nrows, 0);
  inv_table_free(&t);
  /* Junk, truncated lines, a relative mount point, bytes that are not UTF-8, an escape
   * cut short: skipped or kept as text, never a crash. */
  static const char junk[] = "\n   \n\x01\x02\x03\nonly two\nthree fields here\ndev relative/path ext4 rw 0 0\n"
                             "/dev/x /mnt/\xff\xfe ext4 rw 0 0\n/dev/y /mnt/cut\\04 ext4 rw\n\0/dev/z / ext4 rw 0 0\n";
  fx_write(root, "proc/mounts", junk, sizeof(junk) - 1);
  FX_COLLECT(mounts, &env, &t);
  assert_string_equal(t.error, "");
  assert_int_equal(t.nrows, 2);
  assert_true(fx_find(&t, "path", "/mnt/cut\\04") >= 0);
  assert_int_equal(fx_find(&t, "device", "/dev/z"), -1);
  inv_table_free(&t);
  fx_rmroot(root);
}

static void test_block_devices(void **state) {
  (void)state;
  inv_table_t t;
  FX_COLLECT(block_devices, &g_fx, &t);
  assert_string_equal(t.error, "");
  /* sda with two partitions, a mapped device on sda2, an NVMe disk with one partition, a DVD. */
  assert_int_equal(t.nrows, 7);
  long r = fx_find(&t, "name", "/dev/sda");
  assert_true(r >= 0);
  assert_string_equal(fx_val(&t, (size_t)r, "parent"), "");
  assert_string_equal(fx_val(&t, (size_t)r, "vendor"), "ATA");
  assert_string_equal(fx_val(&t, (size_t)r, "model"), "Samsung SSD 860");
  assert_string_equal(fx_val(&t, (size_t)r, "size"), "976773168"); /* 512-byte sectors, as osquery */
  assert_string_equal(fx_val(&t, (size_t)r, "block_size"), "512");
  assert_string_equal(fx_val(&t, (size_t)r, "uuid"), "");
  /* A partition: its parent's vendor and model, udev's filesystem facts. */
  r = fx_find(&t, "name", "/dev/sda1");
  assert_true(r >= 0);
  assert_string_equal(fx_val(&t, (size_t)r, "parent"), "/dev/sda");
  assert_string_equal(fx_val(&t, (size_t)r, "vendor"), "ATA");
  assert_string_equal(fx_val(&t, (size_t)r, "model"), "Samsung SSD 860");
  assert_string_equal(fx_val(&t, (size_t)r, "size"), "1048576");
  assert_string_equal(fx_val(&t, (size_t)r, "block_size"), "512");
  assert_string_equal(fx_val(&t, (size_t)r, "uuid"), "6A1B-2C3D");
  assert_string_equal(fx_val(&t, (size_t)r, "type"), "vfat");
  assert_string_equal(fx_val(&t, (size_t)r, "label"), "EFI SYSTEM");
  r = fx_find(&t, "name", "/dev/sda2");
  assert_true(r >= 0);
  assert_string_equal(fx_val(&t, (size_t)r, "type"), "LVM2_member");
  assert_string_equal(fx_val(&t, (size_t)r, "uuid"), "Xa9Lq2-pQ3r-7Tz1-Kk0d-M4nB-Vc5e-Yw8f1z");
  assert_string_equal(fx_val(&t, (size_t)r, "label"), "");
  /* A mapped device: its parent from slaves/, its UUID from /dev/disk/by-uuid (no udev data). */
  r = fx_find(&t, "name", "/dev/dm-0");
  assert_true(r >= 0);
  assert_string_equal(fx_val(&t, (size_t)r, "parent"), "/dev/sda2");
  assert_string_equal(fx_val(&t, (size_t)r, "uuid"), "3f1c2a9e-5b7d-4e21-9c3a-8d2e6f4b1a07");
  assert_string_equal(fx_val(&t, (size_t)r, "type"), "");
  assert_string_equal(fx_val(&t, (size_t)r, "vendor"), "");
  r = fx_find(&t, "name", "/dev/nvme0n1");
  assert_true(r >= 0);
  assert_string_equal(fx_val(&t, (size_t)r, "vendor"), "0x15b7");
  assert_string_equal(fx_val(&t, (size_t)r, "model"), "WDC PC SN730 SDBQNTY-1T00-1001");
  assert_string_equal(fx_val(&t, (size_t)r, "serial"), "20461K800123");
  assert_string_equal(fx_val(&t, (size_t)r, "block_size"), "4096");
  r = fx_find(&t, "name", "/dev/nvme0n1p1");
  assert_true(r >= 0);
  assert_string_equal(fx_val(&t, (size_t)r, "parent"), "/dev/nvme0n1");
  assert_string_equal(fx_val(&t, (size_t)r, "serial"), "20461K800123");
  assert_string_equal(fx_val(&t, (size_t)r, "block_size"), "4096");
  assert_string_equal(fx_val(&t, (size_t)r, "size"), "500101888");
  /* A size that is not a number is left empty. */
  r = fx_find(&t, "name", "/dev/sr0");
  assert_true(r >= 0);
  assert_string_equal(fx_val(&t, (size_t)r, "size"), "");
  assert_string_equal(fx_val(&t, (size_t)r, "model"), "DVD+-RW GU90N");
  inv_table_free(&t);
}

static void test_block_devices_other(void **state) {
  (void)state;
  char root[512];
  fx_mkroot(root, sizeof(root));
  inv_env_t env = {.root = root};
  inv_table_t t;
  FX_COLLECT(block_devices, &env, &t);
  assert_non_null(strstr(t.error, "/sys/block"));
  assert_int_equal(t.nrows, 0);
  inv_table_free(&t);
  /* sysfs's '!' for '/', a label found only through /dev/disk/by-label (udev's \x escapes
   * undone), and a device directory with nothing in it. */
  fx_puts(root, "sys/block/cciss!c0d0/size", "1000\n");
  fx_puts(root, "sys/block/cciss!c0d0/cciss!c0d0p1/partition", "1\n");
  fx_puts(root, "sys/block/cciss!c0d0/cciss!c0d0p1/size", "900\n");
  fx_puts(root, "sys/block/empty/.keep", "");
  char dir[600], link[700];
  snprintf(dir, sizeof(dir), "%s/dev/disk/by-label", root);
  fx_puts(root, "dev/disk/by-label/.keep", "");
  snprintf(link, sizeof(link), "%s/My\\x20Data\\x2", dir);
  assert_int_equal(symlink("../../cciss/c0d0p1", link), 0);
  FX_COLLECT(block_devices, &env, &t);
  assert_string_equal(t.error, "");
  assert_int_equal(t.nrows, 3);
  long r = fx_find(&t, "name", "/dev/cciss/c0d0p1");
  assert_true(r >= 0);
  assert_string_equal(fx_val(&t, (size_t)r, "parent"), "/dev/cciss/c0d0");
  assert_string_equal(fx_val(&t, (size_t)r, "label"), "My Data\\x2");
  assert_string_equal(fx_val(&t, (size_t)r, "size"), "900");
  r = fx_find(&t, "name", "/dev/empty");
  assert_true(r >= 0);
  assert_string_equal(fx_val(&t, (size_t)r, "size"), "");
  inv_table_free(&t);
  fx_rmroot(root);
}

/* This machine: only facts that hold anywhere. */
static void test_live(void **state) {
  (void)state;
  inv_env_t env = {.root = ""};
  inv_table_t t;
  FX_COLLECT(mounts, &env, &t);
  assert_string_equal(t.error, "");
  long r = fx_find(&t, "path", "/");
  assert_true(r >= 0);
  assert_true(fx_val(&t, (size_t)r, "type")[0] != 0);
  assert_true(atoll(fx_val(&t, (size_t)r, "blocks")) > 0);
  assert_true(atoll(fx_val(&t, (size_t)r, "blocks_size")) >= 512);
  assert_true(fx_find(&t, "type", "proc") >= 0);
  inv_table_free(&t);

  FX_COLLECT(block_devices, &env, &t);
  if (access("/sys/block", R_OK) == 0) {
    assert_string_equal(t.error, "");
    /* Every row names a /dev path, and every disk has a size. */
    for (size_t i = 0; i < t.nrows; i++) {
      assert_memory_equal(fx_val(&t, i, "name"), "/dev/", 5);
      if (!fx_val(&t, i, "parent")[0]) assert_true(fx_val(&t, i, "size")[0] != 0);
    }
  } else {
    assert_true(t.error[0] != 0);
  }
  inv_table_free(&t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_mounts),        cmocka_unit_test(test_mounts_bad),
      cmocka_unit_test(test_block_devices), cmocka_unit_test(test_block_devices_other),
      cmocka_unit_test(test_live),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
