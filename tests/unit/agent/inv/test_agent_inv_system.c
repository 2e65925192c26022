/* The machine's own tables (agent/inv/linux/system.c) against the captured root linux-a, roots
 * with files missing or garbled, and this machine itself. */
#include <sys/utsname.h>
#include <time.h>
#include "inv_fixture.h"

static const inv_env_t g_fx = {.root = FIXTURE_A};

static void test_memory_info(void **state) {
  (void)state;
  inv_table_t t;
  FX_COLLECT(memory_info, &g_fx, &t);
  assert_string_equal(t.error, "");
  assert_int_equal(t.nrows, 1);
  /* The fixture's kB values, in bytes. */
  assert_string_equal(fx_val(&t, 0, "memory_total"), "25276157952");     /* 24683748 kB */
  assert_string_equal(fx_val(&t, 0, "memory_free"), "24604319744");      /* 24027656 kB */
  assert_string_equal(fx_val(&t, 0, "memory_available"), "24837033984"); /* 24254916 kB */
  assert_string_equal(fx_val(&t, 0, "buffers"), "14729216");
  assert_string_equal(fx_val(&t, 0, "cached"), "405078016");
  assert_string_equal(fx_val(&t, 0, "swap_cached"), "0");
  assert_string_equal(fx_val(&t, 0, "active"), "204718080");
  assert_string_equal(fx_val(&t, 0, "inactive"), "209973248");
  assert_string_equal(fx_val(&t, 0, "swap_total"), "2147479552"); /* 2097148 kB */
  assert_string_equal(fx_val(&t, 0, "swap_free"), "2146430976");  /* 2096124 kB */
  inv_table_free(&t);
}

static void test_memory_info_bad(void **state) {
  (void)state;
  char root[512];
  fx_mkroot(root, sizeof(root));
  inv_env_t env = {.root = root};
  inv_table_t t;
  /* Missing: an error, no row. */
  FX_COLLECT(memory_info, &env, &t);
  assert_non_null(strstr(t.error, "/proc/meminfo"));
  assert_int_equal(t.nrows, 0);
  inv_table_free(&t);
  /* Garbage lines and bad numbers are skipped; a field left out is empty. */
  fx_puts(root, "proc/meminfo", "MemTotal: 1x kB\nnonsense\nMemFree:\nMemFree: 99999999999999999999999 kB\n"
                                "Cached: 10 MB\nMemTotal:    2048 kB\nBuffers: 7\n\xff\xfe:\x01");
  FX_COLLECT(memory_info, &env, &t);
  assert_string_equal(t.error, "");
  assert_int_equal(t.nrows, 1);
  assert_string_equal(fx_val(&t, 0, "memory_total"), "2097152");
  assert_string_equal(fx_val(&t, 0, "buffers"), "7");
  assert_string_equal(fx_val(&t, 0, "memory_free"), "");
  assert_string_equal(fx_val(&t, 0, "cached"), "");
  inv_table_free(&t);
  /* Nothing of meminfo in it: an error, no row. */
  fx_puts(root, "proc/meminfo", "\x7f" "ELF\x02\x01\x01");
  FX_COLLECT(memory_info, &env, &t);
  assert_non_null(strstr(t.error, "MemTotal"));
  assert_int_equal(t.nrows, 0);
  inv_table_free(&t);
  fx_rmroot(root);
}

static void test_system_info(void **state) {
  (void)state;
  inv_table_t t;
  FX_COLLECT(system_info, &g_fx, &t);
  assert_string_equal(t.error, "");
  assert_int_equal(t.nrows, 1);
  assert_string_equal(fx_val(&t, 0, "hostname"), "vm-fixture-a");
  assert_string_equal(fx_val(&t, 0, "computer_name"), "vm-fixture-a");
  assert_string_equal(fx_val(&t, 0, "local_hostname"), "vm-fixture-a");
  assert_string_equal(fx_val(&t, 0, "uuid"), "4c4c4544-0042-3510-8052-b4c04f4a3732");
  assert_string_equal(fx_val(&t, 0, "cpu_type"), "x86_64");
  assert_string_equal(fx_val(&t, 0, "cpu_brand"), "Intel(R) Xeon(R) Silver 4214R CPU @ 2.40GHz");
  assert_string_equal(fx_val(&t, 0, "cpu_subtype"), "85");
  assert_string_equal(fx_val(&t, 0, "cpu_microcode"), "0x5003604");
  /* Two sockets of two cores with two threads each. */
  assert_string_equal(fx_val(&t, 0, "cpu_sockets"), "2");
  assert_string_equal(fx_val(&t, 0, "cpu_physical_cores"), "4");
  assert_string_equal(fx_val(&t, 0, "cpu_logical_cores"), "8");
  assert_string_equal(fx_val(&t, 0, "physical_memory"), "25276157952");
  assert_string_equal(fx_val(&t, 0, "hardware_vendor"), "Dell Inc.");
  assert_string_equal(fx_val(&t, 0, "hardware_model"), "PowerEdge R640");
  assert_string_equal(fx_val(&t, 0, "hardware_version"), "");
  assert_string_equal(fx_val(&t, 0, "hardware_serial"), "8R5JJ72");
  assert_string_equal(fx_val(&t, 0, "board_vendor"), "Dell Inc.");
  assert_string_equal(fx_val(&t, 0, "board_model"), "0H28RR");
  assert_string_equal(fx_val(&t, 0, "board_version"), "A03");
  assert_string_equal(fx_val(&t, 0, "board_serial"), ".8R5JJ72.CNFCP0098C00C1.");
  inv_table_free(&t);
}

static void test_system_info_sparse(void **state) {
  (void)state;
  char root[512];
  fx_mkroot(root, sizeof(root));
  inv_env_t env = {.root = root};
  inv_table_t t;
  /* A Lenovo whose serials only root may read (absent here), with a firmware placeholder
   * UUID: no error, the serials and the UUID empty, the model people know in hardware_model. */
  fx_puts(root, "proc/sys/kernel/hostname", "thinkpad\n");
  fx_puts(root, "proc/sys/kernel/arch", "x86_64\n");
  fx_puts(root, "proc/cpuinfo", "processor\t: 0\nmodel name\t: Intel(R) Core(TM) i7-8650U\n");
  fx_puts(root, "proc/meminfo", "MemTotal: 16 kB\n");
  fx_puts(root, "sys/class/dmi/id/sys_vendor", "LENOVO\n");
  fx_puts(root, "sys/class/dmi/id/product_name", "20KHCTO1WW\n");
  fx_puts(root, "sys/class/dmi/id/product_version", "ThinkPad X1 Carbon 6th\n");
  fx_puts(root, "sys/class/dmi/id/product_uuid", "03000200-0400-0500-0006-000700080009\n");
  FX_COLLECT(system_info, &env, &t);
  assert_string_equal(t.error, "");
  assert_int_equal(t.nrows, 1);
  assert_string_equal(fx_val(&t, 0, "hostname"), "thinkpad");
  assert_string_equal(fx_val(&t, 0, "uuid"), "");
  assert_string_equal(fx_val(&t, 0, "hardware_model"), "ThinkPad X1 Carbon 6th");
  assert_string_equal(fx_val(&t, 0, "hardware_version"), "20KHCTO1WW");
  assert_string_equal(fx_val(&t, 0, "hardware_serial"), "");
  assert_string_equal(fx_val(&t, 0, "board_serial"), "");
  assert_string_equal(fx_val(&t, 0, "cpu_logical_cores"), "1");
  assert_string_equal(fx_val(&t, 0, "physical_memory"), "16384");
  inv_table_free(&t);
  /* No hostname or /proc/cpuinfo: the row has the rest, and the table says what it missed. */
  char p[600];
  snprintf(p, sizeof(p), "%s/proc/sys/kernel/hostname", root);
  assert_int_equal(unlink(p), 0);
  FX_COLLECT(system_info, &env, &t);
  assert_non_null(strstr(t.error, "hostname"));
  assert_int_equal(t.nrows, 1);
  assert_string_equal(fx_val(&t, 0, "hostname"), "");
  assert_string_equal(fx_val(&t, 0, "hardware_vendor"), "LENOVO");
  inv_table_free(&t);
  fx_rmroot(root);
}

static void test_cpu_info(void **state) {
  (void)state;
  inv_table_t t;
  FX_COLLECT(cpu_info, &g_fx, &t);
  assert_string_equal(t.error, "");
  /* One row a socket; the garbage lines in processor 3 change nothing. */
  assert_int_equal(t.nrows, 2);
  long a = fx_find(&t, "device_id", "CPU0"), b = fx_find(&t, "device_id", "CPU1");
  assert_true(a >= 0 && b >= 0);
  for (long r = 0; r < 2; r++) {
    assert_string_equal(fx_val(&t, (size_t)r, "model"), "Intel(R) Xeon(R) Silver 4214R CPU @ 2.40GHz");
    assert_string_equal(fx_val(&t, (size_t)r, "manufacturer"), "GenuineIntel");
    assert_string_equal(fx_val(&t, (size_t)r, "processor_type"), "3");
    assert_string_equal(fx_val(&t, (size_t)r, "number_of_cores"), "2");
    assert_string_equal(fx_val(&t, (size_t)r, "logical_processors"), "4");
    assert_string_equal(fx_val(&t, (size_t)r, "address_width"), "64");
  }
  assert_string_equal(fx_val(&t, (size_t)a, "current_clock_speed"), "2400");
  assert_string_equal(fx_val(&t, (size_t)b, "current_clock_speed"), "1200"); /* 1199.998 MHz */
  assert_string_equal(fx_val(&t, (size_t)a, "max_clock_speed"), "3500");
  assert_string_equal(fx_val(&t, (size_t)b, "max_clock_speed"), ""); /* cpu2 has no cpufreq */
  inv_table_free(&t);
}

static void test_cpu_info_other(void **state) {
  (void)state;
  char root[512];
  fx_mkroot(root, sizeof(root));
  inv_env_t env = {.root = root};
  inv_table_t t;
  FX_COLLECT(cpu_info, &env, &t);
  assert_non_null(strstr(t.error, "/proc/cpuinfo"));
  assert_int_equal(t.nrows, 0);
  inv_table_free(&t);
  /* An ARM board: no physical or core ids, no model name; each processor is a core. */
  fx_puts(root, "proc/sys/kernel/arch", "aarch64\n");
  fx_puts(root, "proc/cpuinfo", "processor\t: 0\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32\n"
                                "CPU implementer\t: 0x41\nCPU part\t: 0xd08\n\n"
                                "processor\t: 1\nBogoMIPS\t: 108.00\nCPU implementer\t: 0x41\n\n"
                                "processor\t: 2\nBogoMIPS\t: 108.00\n\nHardware\t: BCM2835\n");
  FX_COLLECT(cpu_info, &env, &t);
  assert_string_equal(t.error, "");
  assert_int_equal(t.nrows, 1);
  assert_string_equal(fx_val(&t, 0, "device_id"), "CPU0");
  assert_string_equal(fx_val(&t, 0, "number_of_cores"), "3");
  assert_string_equal(fx_val(&t, 0, "logical_processors"), "3");
  assert_string_equal(fx_val(&t, 0, "address_width"), "64");
  assert_string_equal(fx_val(&t, 0, "model"), "");
  inv_table_free(&t);
  FX_COLLECT(system_info, &env, &t);
  assert_string_equal(fx_val(&t, 0, "cpu_type"), "aarch64");
  assert_string_equal(fx_val(&t, 0, "cpu_physical_cores"), "3");
  assert_string_equal(fx_val(&t, 0, "cpu_sockets"), "1");
  inv_table_free(&t);
  /* No processor at all (a truncated file, binary junk): an error, no row. */
  static const char junk[] = "vendor_id : x\nprocessor : \nprocessor : -1\n\0processor : 0";
  fx_write(root, "proc/cpuinfo", junk, sizeof(junk) - 1);
  FX_COLLECT(cpu_info, &env, &t);
  assert_non_null(strstr(t.error, "no processor"));
  assert_int_equal(t.nrows, 0);
  inv_table_free(&t);
  fx_rmroot(root);
}

static void test_os_version(void **state) {
  (void)state;
  inv_table_t t;
  FX_COLLECT(os_version, &g_fx, &t);
  assert_string_equal(t.error, "");
  assert_int_equal(t.nrows, 1);
  assert_string_equal(fx_val(&t, 0, "name"), "Debian GNU/Linux");
  assert_string_equal(fx_val(&t, 0, "version"), "12 (bookworm)");
  assert_string_equal(fx_val(&t, 0, "major"), "12");
  assert_string_equal(fx_val(&t, 0, "minor"), "0");
  assert_string_equal(fx_val(&t, 0, "patch"), "0");
  assert_string_equal(fx_val(&t, 0, "platform"), "debian");
  assert_string_equal(fx_val(&t, 0, "platform_like"), "");
  assert_string_equal(fx_val(&t, 0, "codename"), "bookworm");
  assert_string_equal(fx_val(&t, 0, "build"), "");
  assert_string_equal(fx_val(&t, 0, "arch"), "x86_64");
  inv_table_free(&t);
}

static void test_os_version_other(void **state) {
  (void)state;
  char root[512];
  fx_mkroot(root, sizeof(root));
  inv_env_t env = {.root = root};
  inv_table_t t;
  FX_COLLECT(os_version, &env, &t);
  assert_non_null(strstr(t.error, "os-release"));
  assert_int_equal(t.nrows, 0);
  inv_table_free(&t);
  /* Only /usr/lib/os-release (os-release(5)'s fallback), shell quoting, a distribution's
   * own codename key, a three-part version, comments and junk. */
  fx_puts(root, "usr/lib/os-release", "# a comment=yes\nNAME=\"Ubu\\\"ntu\"\nVERSION='22.04.3 LTS (Jammy Jellyfish)'\n"
                                      "ID=ubuntu\nID_LIKE=debian\nVERSION_ID=\"22.04.3\"\nUBUNTU_CODENAME=jammy\n"
                                      "BUILD_ID=20230808\njunk line\n=\nVERSION_ID_X\n");
  FX_COLLECT(os_version, &env, &t);
  assert_string_equal(t.error, "");
  assert_int_equal(t.nrows, 1);
  assert_string_equal(fx_val(&t, 0, "name"), "Ubu\"ntu");
  assert_string_equal(fx_val(&t, 0, "version"), "22.04.3 LTS (Jammy Jellyfish)");
  assert_string_equal(fx_val(&t, 0, "major"), "22");
  assert_string_equal(fx_val(&t, 0, "minor"), "4");
  assert_string_equal(fx_val(&t, 0, "patch"), "3");
  assert_string_equal(fx_val(&t, 0, "platform"), "ubuntu");
  assert_string_equal(fx_val(&t, 0, "platform_like"), "debian");
  assert_string_equal(fx_val(&t, 0, "codename"), "jammy");
  assert_string_equal(fx_val(&t, 0, "build"), "20230808");
  assert_string_equal(fx_val(&t, 0, "arch"), "");
  inv_table_free(&t);
  /* An empty /etc/os-release: os-release(5)'s defaults. */
  fx_puts(root, "etc/os-release", "");
  FX_COLLECT(os_version, &env, &t);
  assert_int_equal(t.nrows, 1);
  assert_string_equal(fx_val(&t, 0, "name"), "Linux");
  assert_string_equal(fx_val(&t, 0, "platform"), "linux");
  assert_string_equal(fx_val(&t, 0, "major"), "0");
  inv_table_free(&t);
  fx_rmroot(root);
}

static void test_kernel_info(void **state) {
  (void)state;
  inv_table_t t;
  FX_COLLECT(kernel_info, &g_fx, &t);
  assert_string_equal(t.error, "");
  assert_int_equal(t.nrows, 1);
  assert_string_equal(fx_val(&t, 0, "version"), "6.1.0-18-amd64");
  assert_string_equal(fx_val(&t, 0, "path"), "/boot/vmlinuz-6.1.0-18-amd64");
  assert_string_equal(fx_val(&t, 0, "device"), "UUID=3f1c2a9e-5b7d-4e21-9c3a-8d2e6f4b1a07");
  assert_string_equal(fx_val(&t, 0, "arguments"), "ro quiet splash");
  inv_table_free(&t);

  char root[512];
  fx_mkroot(root, sizeof(root));
  inv_env_t env = {.root = root};
  FX_COLLECT(kernel_info, &env, &t);
  assert_true(t.error[0] != 0);
  assert_int_equal(t.nrows, 0);
  inv_table_free(&t);
  /* No osrelease (an older kernel's fixture): /proc/version's third word; no cmdline: said. */
  fx_puts(root, "proc/version", "Linux version 5.10.0-28-arm64 (debian-kernel@lists.debian.org) #1 SMP\n");
  FX_COLLECT(kernel_info, &env, &t);
  assert_non_null(strstr(t.error, "cmdline"));
  assert_int_equal(t.nrows, 1);
  assert_string_equal(fx_val(&t, 0, "version"), "5.10.0-28-arm64");
  inv_table_free(&t);
  fx_puts(root, "proc/cmdline", "  console=ttyS0,115200   root=/dev/vda1\trw  \n");
  FX_COLLECT(kernel_info, &env, &t);
  assert_string_equal(t.error, "");
  assert_string_equal(fx_val(&t, 0, "arguments"), "console=ttyS0,115200 rw");
  assert_string_equal(fx_val(&t, 0, "device"), "/dev/vda1");
  assert_string_equal(fx_val(&t, 0, "path"), "");
  inv_table_free(&t);
  fx_rmroot(root);
}

static void test_uptime(void **state) {
  (void)state;
  inv_table_t t;
  FX_COLLECT(uptime, &g_fx, &t);
  assert_string_equal(t.error, "");
  assert_int_equal(t.nrows, 1);
  /* 93784.52 s: 1 day, 2 hours, 3 minutes, 4 seconds. */
  assert_string_equal(fx_val(&t, 0, "days"), "1");
  assert_string_equal(fx_val(&t, 0, "hours"), "2");
  assert_string_equal(fx_val(&t, 0, "minutes"), "3");
  assert_string_equal(fx_val(&t, 0, "seconds"), "4");
  assert_string_equal(fx_val(&t, 0, "total_seconds"), "93784");
  inv_table_free(&t);

  char root[512];
  fx_mkroot(root, sizeof(root));
  inv_env_t env = {.root = root};
  FX_COLLECT(uptime, &env, &t);
  assert_non_null(strstr(t.error, "/proc/uptime"));
  assert_int_equal(t.nrows, 0);
  inv_table_free(&t);
  const char *bad[] = {"", "abc 1.0\n", "-5.0 1.0\n", "12x 1\n", "99999999999999999999999.0 1\n"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    fx_puts(root, "proc/uptime", bad[i]);
    FX_COLLECT(uptime, &env, &t);
    assert_true(t.error[0] != 0);
    assert_int_equal(t.nrows, 0);
    inv_table_free(&t);
  }
  fx_puts(root, "proc/uptime", "59");
  FX_COLLECT(uptime, &env, &t);
  assert_string_equal(fx_val(&t, 0, "seconds"), "59");
  inv_table_free(&t);
  fx_rmroot(root);
}

/* This machine: only facts that hold anywhere. */
static void test_live(void **state) {
  (void)state;
  inv_env_t env = {.root = ""};
  inv_table_t t;
  struct utsname u;
  assert_int_equal(uname(&u), 0);

  FX_COLLECT(system_info, &env, &t);
  assert_int_equal(t.nrows, 1);
  assert_string_equal(fx_val(&t, 0, "hostname"), u.nodename);
  assert_string_equal(fx_val(&t, 0, "cpu_type"), u.machine);
  long cpus = sysconf(_SC_NPROCESSORS_CONF);
  assert_true(atol(fx_val(&t, 0, "cpu_logical_cores")) >= 1);
  assert_true(atol(fx_val(&t, 0, "cpu_logical_cores")) <= cpus);
  assert_true(atoll(fx_val(&t, 0, "physical_memory")) > 64ll * 1024 * 1024);
  inv_table_free(&t);

  FX_COLLECT(memory_info, &env, &t);
  assert_string_equal(t.error, "");
  long long total = atoll(fx_val(&t, 0, "memory_total"));
  assert_true(total > 0 && atoll(fx_val(&t, 0, "memory_free")) <= total);
  inv_table_free(&t);

  FX_COLLECT(kernel_info, &env, &t);
  assert_string_equal(t.error, "");
  assert_string_equal(fx_val(&t, 0, "version"), u.release);
  inv_table_free(&t);

  FX_COLLECT(uptime, &env, &t);
  assert_string_equal(t.error, "");
  struct timespec ts;
  clock_gettime(CLOCK_BOOTTIME, &ts);
  long long up = atoll(fx_val(&t, 0, "total_seconds"));
  assert_true(up <= ts.tv_sec && up >= ts.tv_sec - 5);
  inv_table_free(&t);

  FX_COLLECT(cpu_info, &env, &t);
  assert_string_equal(t.error, "");
  assert_true(t.nrows >= 1);
  assert_true(fx_find(&t, "device_id", "CPU0") >= 0);
  inv_table_free(&t);

  if (access("/etc/os-release", R_OK) == 0 || access("/usr/lib/os-release", R_OK) == 0) {
    FX_COLLECT(os_version, &env, &t);
    assert_string_equal(t.error, "");
    assert_true(fx_val(&t, 0, "name")[0] != 0);
    assert_string_equal(fx_val(&t, 0, "arch"), u.machine);
    inv_table_free(&t);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_memory_info), cmocka_unit_test(test_memory_info_bad),
      cmocka_unit_test(test_system_info), cmocka_unit_test(test_system_info_sparse),
      cmocka_unit_test(test_cpu_info),    cmocka_unit_test(test_cpu_info_other),
      cmocka_unit_test(test_os_version),  cmocka_unit_test(test_os_version_other),
      cmocka_unit_test(test_kernel_info), cmocka_unit_test(test_uptime),
      cmocka_unit_test(test_live),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
