/* pending_reboot (agent/inv/linux/reboot.c): Debian's /run/reboot-required with the packages
 * that asked (once each), and the kernel hints: a newer kernel of the running one's flavour
 * installed beside it, or the running one removed; none of it on a machine that wants
 * nothing, and no crash on a tree that is odd. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "inv_fixture.h"

/* The file's mtime as the table shows it. */
static void mtime(const char *path, char *out, size_t cap) {
  struct stat sb;
  assert_int_equal(stat(path, &sb), 0);
  snprintf(out, cap, "%lld", (long long)sb.st_mtime);
}

static void test_debian_reboot_required(void **state) {
  (void)state;
  inv_env_t env = {.root = FIXTURE_A};
  inv_table_t t;
  FX_COLLECT(pending_reboot, &env, &t);
  assert_string_equal(t.error, "");
  assert_int_equal(t.nrows, 2);
  long r = fx_find(&t, "source", "/run/reboot-required");
  assert_true(r >= 0);
  assert_string_equal(fx_val(&t, (size_t)r, "detail"),
                      "*** System restart required *** (packages: linux-image-6.1.0-21-amd64, libc6)");
  char when[32];
  mtime(FIXTURE_A "/run/reboot-required", when, sizeof(when));
  assert_string_equal(fx_val(&t, (size_t)r, "since"), when);
  /* 6.1.0-21-amd64 is newer than the running 6.1.0-18-amd64; 6.1.0-25-rt-amd64 is newer
   * still but another flavour. */
  r = fx_find(&t, "source", "kernel");
  assert_true(r >= 0);
  assert_string_equal(fx_val(&t, (size_t)r, "detail"), "a newer kernel is installed: 6.1.0-21-amd64 (running 6.1.0-18-amd64)");
  mtime(FIXTURE_A "/lib/modules/6.1.0-21-amd64", when, sizeof(when));
  assert_string_equal(fx_val(&t, (size_t)r, "since"), when);
  inv_table_free(&t);
}

static void kernels(const char *root, const char *running, const char *const *installed) {
  char p[512];
  fx_puts(root, "proc/sys/kernel/osrelease", running);
  for (size_t i = 0; installed[i]; i++) {
    snprintf(p, sizeof(p), "lib/modules/%s/modules.dep", installed[i]);
    fx_puts(root, p, "");
  }
}

static void test_kernel_hints(void **state) {
  (void)state;
  char root[512];
  inv_table_t t;
  /* Nothing wanted: no rows, no error. */
  fx_mkroot(root, sizeof(root));
  inv_env_t env = {.root = root};
  FX_COLLECT(pending_reboot, &env, &t);
  assert_int_equal(t.nrows, 0);
  assert_string_equal(t.error, "");
  inv_table_free(&t);
  /* Versions by number, not by byte: 100 after 18 after 9. */
  static const char *const deb[] = {"6.1.0-9-amd64", "6.1.0-18-amd64", "6.1.0-100-amd64", NULL};
  kernels(root, "6.1.0-9-amd64\n", deb);
  FX_COLLECT(pending_reboot, &env, &t);
  assert_int_equal(t.nrows, 1);
  assert_string_equal(fx_val(&t, 0, "detail"), "a newer kernel is installed: 6.1.0-100-amd64 (running 6.1.0-9-amd64)");
  inv_table_free(&t);
  fx_rmroot(root);

  /* The running kernel removed; the directory it left behind is empty (no modules.dep). */
  fx_mkroot(root, sizeof(root));
  static const char *const gone[] = {"5.10.0-20-amd64", NULL};
  kernels(root, "5.10.0-9-amd64", gone);
  char p[600];
  snprintf(p, sizeof(p), "%s/lib/modules/5.10.0-9-amd64", root);
  assert_int_equal(mkdir(p, 0755), 0);
  FX_COLLECT(pending_reboot, &env, &t);
  assert_int_equal(t.nrows, 1);
  assert_string_equal(fx_val(&t, 0, "source"), "kernel");
  assert_string_equal(fx_val(&t, 0, "detail"), "the running kernel 5.10.0-9-amd64 is no longer installed (installed: 5.10.0-20-amd64)");
  inv_table_free(&t);
  fx_rmroot(root);

  /* Fedora's releases have no flavour: all compare. Up to date: nothing. */
  fx_mkroot(root, sizeof(root));
  static const char *const fc[] = {"6.5.6-300.fc39.x86_64", "6.7.4-200.fc39.x86_64", NULL};
  kernels(root, "6.5.6-300.fc39.x86_64", fc);
  FX_COLLECT(pending_reboot, &env, &t);
  assert_int_equal(t.nrows, 1);
  assert_non_null(strstr(fx_val(&t, 0, "detail"), "6.7.4-200.fc39.x86_64"));
  inv_table_free(&t);
  kernels(root, "6.7.4-200.fc39.x86_64", fc);
  FX_COLLECT(pending_reboot, &env, &t);
  assert_int_equal(t.nrows, 0);
  inv_table_free(&t);
  fx_rmroot(root);
}

static void test_odd_files(void **state) {
  (void)state;
  char root[512];
  inv_table_t t;
  fx_mkroot(root, sizeof(root));
  inv_env_t env = {.root = root};
  /* An empty reboot-required, a .pkgs of many packages (listed up to a point), binary junk. */
  fx_puts(root, "run/reboot-required", "");
  char pkgs[4096] = "";
  for (int i = 0; i < 40; i++) snprintf(pkgs + strlen(pkgs), sizeof(pkgs) - strlen(pkgs), "pkg%02d\n\xff\n", i);
  fx_puts(root, "run/reboot-required.pkgs", pkgs);
  FX_COLLECT(pending_reboot, &env, &t);
  assert_int_equal(t.nrows, 1);
  const char *d = fx_val(&t, 0, "detail");
  static const char head[] = "a restart is required (packages: pkg00, \xef\xbf\xbd, pkg01, ";
  assert_memory_equal(d, head, sizeof(head) - 1);
  assert_non_null(strstr(d, ", ...)"));
  assert_null(strstr(d, "pkg39"));
  inv_table_free(&t);
  fx_rmroot(root);
}

/* Under a root (a container's tree), a symlink that points out of it is resolved inside it:
 * the host's file it names is never read into the table. */
static void test_links_stay_in_the_root(void **state) {
  (void)state;
  char root[512], outside[512], target[600], link[600];
  inv_table_t t;
  fx_mkroot(root, sizeof(root));
  fx_mkroot(outside, sizeof(outside));
  fx_puts(outside, "secret", "root:$y$j9T$hash:19000:0:99999:7:::\n");
  fx_puts(root, "run/reboot-required", "");
  snprintf(target, sizeof(target), "%s/secret", outside);
  snprintf(link, sizeof(link), "%s/run/reboot-required.pkgs", root);
  assert_int_equal(symlink(target, link), 0);
  inv_env_t env = {.root = root};
  FX_COLLECT(pending_reboot, &env, &t);
  assert_int_equal(t.nrows, 1);
  assert_null(strstr(fx_val(&t, 0, "detail"), "hash"));
  assert_null(strstr(fx_val(&t, 0, "detail"), "root:"));
  inv_table_free(&t);
  /* A link inside the root, relative or absolute, still reads the root's own file. */
  fx_puts(root, "etc/pkgs", "openssl\n");
  assert_int_equal(unlink(link), 0);
  assert_int_equal(symlink("/etc/pkgs", link), 0);
  FX_COLLECT(pending_reboot, &env, &t);
  assert_int_equal(t.nrows, 1);
  assert_non_null(strstr(fx_val(&t, 0, "detail"), "openssl"));
  inv_table_free(&t);
  fx_rmroot(root);
  fx_rmroot(outside);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_debian_reboot_required),
      cmocka_unit_test(test_kernel_hints),
      cmocka_unit_test(test_odd_files),
      cmocka_unit_test(test_links_stay_in_the_root),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
