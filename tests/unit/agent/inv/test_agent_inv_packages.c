/* Installed packages (agent/inv/linux/packages.c): dpkg's status file captured in linux-a with
 * hand-made edge cases, a generated one of 5,000 packages, a stand-in rpm, and this machine. */
#include <time.h>
#include "inv_fixture.h"

static const inv_env_t g_fx = {.root = FIXTURE_A};

static void test_deb_packages(void **state) {
  (void)state;
  inv_table_t t;
  FX_COLLECT(deb_packages, &g_fx, &t);
  assert_string_equal(t.error, "");
  /* 23 real packages, libc6 for a second architecture, and the 5 edge-case stanzas that are
   * packages (config-files, Latin-1 maintainer, lower-case fields, half-installed, no final
   * newline); "not-installed", no Status and a two-word Status are not. */
  assert_int_equal(t.nrows, 29);
  long r = fx_find(&t, "name", "openssl");
  assert_true(r >= 0);
  assert_string_equal(fx_val(&t, (size_t)r, "version"), "3.0.19-1~deb12u2");
  assert_string_equal(fx_val(&t, (size_t)r, "revision"), "1~deb12u2");
  assert_string_equal(fx_val(&t, (size_t)r, "arch"), "amd64");
  assert_string_equal(fx_val(&t, (size_t)r, "size"), "2308");
  assert_string_equal(fx_val(&t, (size_t)r, "status"), "install ok installed");
  assert_string_equal(fx_val(&t, (size_t)r, "section"), "utils");
  assert_string_equal(fx_val(&t, (size_t)r, "priority"), "optional");
  assert_string_equal(fx_val(&t, (size_t)r, "maintainer"),
                      "Debian OpenSSL Team <pkg-openssl-devel@alioth-lists.debian.net>");
  assert_string_equal(fx_val(&t, (size_t)r, "source"), "");
  assert_string_equal(fx_val(&t, (size_t)r, "admindir"), "/var/lib/dpkg");
  /* An epoch stays in the version; Source is given as dpkg wrote it. */
  r = fx_find(&t, "name", "zlib1g");
  assert_true(r >= 0);
  assert_string_equal(fx_val(&t, (size_t)r, "version"), "1:1.2.13.dfsg-1");
  assert_string_equal(fx_val(&t, (size_t)r, "revision"), "1");
  assert_string_equal(fx_val(&t, (size_t)r, "source"), "zlib");
  assert_int_equal(fx_count(&t, "name", "libc6"), 2);
  assert_true(fx_find(&t, "arch", "i386") >= 0);
  /* A native package has no revision. */
  r = fx_find(&t, "name", "dpkg");
  assert_true(r >= 0);
  assert_string_equal(fx_val(&t, (size_t)r, "version"), "1.21.22");
  assert_string_equal(fx_val(&t, (size_t)r, "revision"), "");
  /* Removed with its configuration left: listed, as osquery does, with its state. */
  r = fx_find(&t, "name", "oldpkg");
  assert_true(r >= 0);
  assert_string_equal(fx_val(&t, (size_t)r, "status"), "deinstall ok config-files");
  assert_int_equal(fx_find(&t, "name", "purged"), -1);
  assert_int_equal(fx_find(&t, "name", "nostatus"), -1);
  assert_int_equal(fx_find(&t, "name", "twowords"), -1);
  assert_true(fx_find(&t, "status", "install reinstreq half-installed") >= 0);
  /* Not UTF-8: made valid, the rest of the stanza intact around the junk line. */
  r = fx_find(&t, "name", "badbytes");
  assert_true(r >= 0);
  assert_non_null(strstr(fx_val(&t, (size_t)r, "maintainer"), "<jose@example.org>"));
  assert_string_equal(fx_val(&t, (size_t)r, "source"), "badsrc (0.1-3)");
  assert_string_equal(fx_val(&t, (size_t)r, "revision"), "3+b1");
  assert_string_equal(fx_val(&t, (size_t)r, "section"), "misc");
  /* Field names in any case; an Installed-Size that is not a number is left empty. */
  r = fx_find(&t, "name", "casepkg");
  assert_true(r >= 0);
  assert_string_equal(fx_val(&t, (size_t)r, "status"), "hold ok installed");
  assert_string_equal(fx_val(&t, (size_t)r, "version"), "4:1.2");
  assert_string_equal(fx_val(&t, (size_t)r, "size"), "");
  r = fx_find(&t, "name", "truncated");
  assert_true(r >= 0);
  assert_string_equal(fx_val(&t, (size_t)r, "version"), "0.9");
  inv_table_free(&t);
}

static void test_deb_packages_bad(void **state) {
  (void)state;
  char root[512];
  fx_mkroot(root, sizeof(root));
  inv_env_t env = {.root = root};
  inv_table_t t;
  FX_COLLECT(deb_packages, &env, &t);
  assert_string_equal(t.error, "dpkg is not installed");
  assert_int_equal(t.nrows, 0);
  inv_table_free(&t);
  fx_puts(root, "var/lib/dpkg/available", "");
  FX_COLLECT(deb_packages, &env, &t);
  assert_non_null(strstr(t.error, "/var/lib/dpkg/status"));
  assert_int_equal(t.nrows, 0);
  inv_table_free(&t);
  /* Binary junk: no crash, nothing taken for a package. */
  unsigned char junk[4096];
  uint32_t x = 12345;
  for (size_t i = 0; i < sizeof(junk); i++) {
    x = x * 1103515245u + 12345u;
    junk[i] = (unsigned char)(x >> 16);
  }
  fx_write(root, "var/lib/dpkg/status", junk, sizeof(junk));
  FX_COLLECT(deb_packages, &env, &t);
  assert_string_equal(t.error, "");
  inv_table_free(&t);
  /* Stanzas parted by CRLF blank lines, a field with no value, a stanza cut mid-field. */
  fx_puts(root, "var/lib/dpkg/status", "Package: a\r\nStatus: install ok installed\r\nVersion:\r\n\r\n"
                                       "Package: b\nStatus: install ok installed\nVersion: 1-\n\n\n\nPackage: c\nStat");
  FX_COLLECT(deb_packages, &env, &t);
  assert_string_equal(t.error, "");
  assert_int_equal(t.nrows, 2);
  assert_string_equal(fx_val(&t, (size_t)fx_find(&t, "name", "a"), "version"), "");
  assert_string_equal(fx_val(&t, (size_t)fx_find(&t, "name", "b"), "revision"), "");
  inv_table_free(&t);
  fx_rmroot(root);
}

/* A large server's database: 5,000 packages of realistic size parse well inside a second. */
static void test_deb_packages_many(void **state) {
  (void)state;
  char root[512];
  fx_mkroot(root, sizeof(root));
  enum { N = 5000 };
  size_t cap = (size_t)N * 1600, len = 0;
  char *s = malloc(cap);
  assert_non_null(s);
  for (int i = 0; i < N; i++) {
    len += (size_t)snprintf(s + len, cap - len,
                            "Package: pkg%04d\nStatus: install ok installed\nPriority: optional\nSection: libs\n"
                            "Installed-Size: %d\nMaintainer: Team %d <team%d@example.org>\nArchitecture: amd64\n"
                            "Multi-Arch: same\nSource: src%d\nVersion: 1:%d.%d-%d\nDepends: libc6 (>= 2.34), zlib1g\n"
                            "Description: package number %d\n a long description line that the parser must walk over\n"
                            " and another one, as real descriptions run to several lines of text\n .\n the end\n"
                            "Conffiles:\n /etc/pkg%d.conf 0123456789abcdef0123456789abcdef\n\n",
                            i, i * 3, i % 97, i % 97, i / 3, i % 13, i % 7, i % 5 + 1, i, i);
    assert_true(len < cap);
  }
  fx_write(root, "var/lib/dpkg/status", s, len);
  free(s);
  inv_env_t env = {.root = root};
  inv_table_t t;
  struct timespec a, b;
  clock_gettime(CLOCK_MONOTONIC, &a);
  FX_COLLECT(deb_packages, &env, &t);
  clock_gettime(CLOCK_MONOTONIC, &b);
  double secs = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
  assert_string_equal(t.error, "");
  assert_int_equal(t.nrows, N);
  long r = fx_find(&t, "name", "pkg4999");
  assert_true(r >= 0);
  assert_string_equal(fx_val(&t, (size_t)r, "version"), "1:7.1-5");
  assert_string_equal(fx_val(&t, (size_t)r, "size"), "14997");
  assert_true(secs < 1.0);
  inv_table_free(&t);
  fx_rmroot(root);
}

/* A stand-in rpm in a directory of its own, put on env.path. */
static void fake_rpm(const char *dir, const char *body) {
  char script[4096];
  snprintf(script, sizeof(script), "#!/bin/sh\n%s", body);
  fx_puts(dir, "bin/rpm", script);
  char p[600];
  snprintf(p, sizeof(p), "%s/bin/rpm", dir);
  assert_int_equal(chmod(p, 0755), 0);
}

static void test_rpm_packages(void **state) {
  (void)state;
  inv_table_t t;
  /* Where rpm is not installed (Debian): the table says so. */
  inv_env_t none = {.root = "", .path = "/nonexistent"};
  FX_COLLECT(rpm_packages, &none, &t);
  assert_string_equal(t.error, "rpm is not installed");
  assert_int_equal(t.nrows, 0);
  inv_table_free(&t);

  char dir[512], path[600];
  fx_mkroot(dir, sizeof(dir));
  snprintf(path, sizeof(path), "%s/bin", dir);
  inv_env_t env = {.root = "", .path = path, .timeout_ms = 5000};
  /* rpm's answer to the query it is asked, checked by the stand-in: -qa and a format. */
  fake_rpm(dir,
           "[ \"$1\" = -qa ] && [ \"$2\" = --qf ] || exit 9\n"
           "printf 'openssl-libs\\t3.0.7\\t27.el9\\topenssl-3.0.7-27.el9.src.rpm\\t6155281\\t"
           "0c81b3a2f0f0b1e6e5c8d0a5a7c2f8a6a1f3e2d4\\tx86_64\\t1\\t1712345678\\tRed Hat, Inc.\\tUnspecified\\n'\n"
           "printf 'gpg-pubkey\\tfd431d51\\t4ae0493b\\t(none)\\t0\\t(none)\\t(none)\\t(none)\\t1712340000\\t"
           "(none)\\tPublic Keys\\n'\n"
           "printf 'too\\tfew\\tfields\\n'\n"
           "printf 'bash\\t5.1.8\\t9.el9\\tbash-5.1.8-9.el9.src.rpm\\tlots\\t\\tx86_64\\t(none)\\t1712345600\\t"
           "Red Hat, Inc.\\tSystem Environment/Shells\\textra\\n'\n"
           "printf 'bash\\t5.1.8\\t9.el9\\tbash-5.1.8-9.el9.src.rpm\\t7738634\\t\\tx86_64\\t(none)\\t1712345600\\t"
           "Red Hat, Inc.\\tUnspecified'\n");
  FX_COLLECT(rpm_packages, &env, &t);
  assert_string_equal(t.error, "");
  assert_int_equal(t.nrows, 3);
  long r = fx_find(&t, "name", "openssl-libs");
  assert_true(r >= 0);
  assert_string_equal(fx_val(&t, (size_t)r, "version"), "3.0.7");
  assert_string_equal(fx_val(&t, (size_t)r, "release"), "27.el9");
  assert_string_equal(fx_val(&t, (size_t)r, "source"), "openssl-3.0.7-27.el9.src.rpm");
  assert_string_equal(fx_val(&t, (size_t)r, "size"), "6155281");
  assert_string_equal(fx_val(&t, (size_t)r, "sha1"), "0c81b3a2f0f0b1e6e5c8d0a5a7c2f8a6a1f3e2d4");
  assert_string_equal(fx_val(&t, (size_t)r, "arch"), "x86_64");
  assert_string_equal(fx_val(&t, (size_t)r, "epoch"), "1");
  assert_string_equal(fx_val(&t, (size_t)r, "install_time"), "1712345678");
  assert_string_equal(fx_val(&t, (size_t)r, "vendor"), "Red Hat, Inc.");
  assert_string_equal(fx_val(&t, (size_t)r, "package_group"), "Unspecified");
  /* rpm's "(none)" is empty. */
  r = fx_find(&t, "name", "gpg-pubkey");
  assert_true(r >= 0);
  assert_string_equal(fx_val(&t, (size_t)r, "epoch"), "");
  assert_string_equal(fx_val(&t, (size_t)r, "arch"), "");
  assert_string_equal(fx_val(&t, (size_t)r, "source"), "");
  /* The line with a field too many was skipped; the last one, with no newline, was not. */
  r = fx_find(&t, "name", "bash");
  assert_true(r >= 0);
  assert_string_equal(fx_val(&t, (size_t)r, "size"), "7738634");
  assert_string_equal(fx_val(&t, (size_t)r, "epoch"), "");
  inv_table_free(&t);

  /* rpm failing (a locked or broken database): the table says how, and has no rows. */
  fake_rpm(dir, "echo 'half a line'; exit 1\n");
  FX_COLLECT(rpm_packages, &env, &t);
  assert_string_equal(t.error, "rpm -qa exited with status 1");
  assert_int_equal(t.nrows, 0);
  inv_table_free(&t);
  /* rpm hanging: stopped at the timeout. */
  env.timeout_ms = 200;
  fake_rpm(dir, "exec sleep 30\n");
  FX_COLLECT(rpm_packages, &env, &t);
  assert_non_null(strstr(t.error, "timed out after 200ms"));
  inv_table_free(&t);
  fx_rmroot(dir);
}

/* This machine: only facts that hold anywhere. */
static void test_live(void **state) {
  (void)state;
  inv_env_t env = {.root = ""};
  inv_table_t t;
  FX_COLLECT(deb_packages, &env, &t);
  if (access("/var/lib/dpkg/status", R_OK) == 0) {
    assert_string_equal(t.error, "");
    long r = fx_find(&t, "name", "dpkg");
    assert_true(r >= 0);
    assert_string_equal(fx_val(&t, (size_t)r, "status"), "install ok installed");
    assert_true(fx_val(&t, (size_t)r, "version")[0] != 0);
  } else {
    assert_true(t.error[0] != 0);
  }
  inv_table_free(&t);
  FX_COLLECT(rpm_packages, &env, &t);
  if (access("/usr/bin/rpm", X_OK) != 0 && access("/bin/rpm", X_OK) != 0 && access("/usr/sbin/rpm", X_OK) != 0 &&
      access("/sbin/rpm", X_OK) != 0)
    assert_string_equal(t.error, "rpm is not installed");
  else if (!t.error[0] && access("/var/lib/dpkg/status", R_OK) != 0)
    assert_true(fx_find(&t, "name", "rpm") >= 0);
  inv_table_free(&t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_deb_packages), cmocka_unit_test(test_deb_packages_bad),
      cmocka_unit_test(test_deb_packages_many), cmocka_unit_test(test_rpm_packages),
      cmocka_unit_test(test_live),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
