/* What collectors share: paths under the environment's root, whole-file reads with a limit,
 * and helper programs that are stopped at their timeout or their output cap. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "collect.h"
#include "tt/err.h"

static char g_dir[512];

static int setup(void **state) {
  (void)state;
  const char *base = getenv("TT_TEST_TMP");
  snprintf(g_dir, sizeof(g_dir), "%s/inv_collect_XXXXXX", base ? base : "/tmp");
  return mkdtemp(g_dir) ? 0 : -1;
}

static void test_paths_and_reads(void **state) {
  (void)state;
  inv_env_t fx = {.root = "/fx"};
  char p[16];
  assert_int_equal(inv_path(&fx, p, sizeof(p), "/proc/%s", "x"), 0);
  assert_string_equal(p, "/fx/proc/x");
  assert_int_equal(inv_path(&fx, p, sizeof(p), "/proc/%s", "meminfo"), TT_ETOOBIG);
  inv_env_t env = {.root = g_dir};
  char f[1024];
  snprintf(f, sizeof(f), "%s/small", g_dir);
  FILE *o = fopen(f, "w");
  fputs("MemTotal: 1 kB\n", o);
  fclose(o);
  tt_buf_t b;
  assert_int_equal(inv_read(&env, "/small", &b), 0);
  assert_int_equal(b.len, 15);
  assert_string_equal((const char *)tt_buf_head(&b), "MemTotal: 1 kB\n");
  tt_buf_free(&b);
  assert_true(inv_read(&env, "/missing", &b) < 0);
  /* A file past the limit is refused whole. */
  snprintf(f, sizeof(f), "%s/big", g_dir);
  o = fopen(f, "w");
  assert_int_equal(fseek(o, INV_FILE_MAX, SEEK_SET), 0);
  fputc('x', o);
  fclose(o);
  assert_int_equal(inv_read(&env, "/big", &b), TT_ETOOBIG);
  assert_null(b.data);
  /* Exactly at the limit: read. */
  assert_int_equal(truncate(f, INV_FILE_MAX), 0);
  assert_int_equal(inv_read(&env, "/big", &b), 0);
  assert_int_equal(b.len, INV_FILE_MAX);
  tt_buf_free(&b);
  /* /proc, whose files say size 0, reads whole. */
  inv_env_t live = {.root = ""};
  assert_int_equal(inv_read(&live, "/proc/self/status", &b), 0);
  assert_non_null(strstr((const char *)tt_buf_head(&b), "Name:"));
  tt_buf_free(&b);
}

static void test_run(void **state) {
  (void)state;
  inv_env_t env = {.root = "", .timeout_ms = 300};
  tt_buf_t out;
  int st;
  char err[256];
  char *ok[] = {"sh", "-c", "echo hi; exit 3", NULL};
  assert_int_equal(inv_run(&env, ok, &out, &st, err, sizeof(err)), 0);
  assert_int_equal(st, 3);
  assert_string_equal((const char *)tt_buf_head(&out), "hi\n");
  tt_buf_free(&out);
  /* Hangs: stopped at the timeout, with what it started. */
  char *slow[] = {"sh", "-c", "sleep 30 & sleep 30", NULL};
  assert_int_equal(inv_run(&env, slow, &out, &st, err, sizeof(err)), TT_ETIMEOUT);
  assert_non_null(strstr(err, "timed out after 300ms"));
  /* Talks too much: stopped at the cap. */
  env.timeout_ms = 10000;
  char *loud[] = {"sh", "-c", "exec cat /dev/zero", NULL};
  assert_int_equal(inv_run(&env, loud, &out, &st, err, sizeof(err)), TT_ETOOBIG);
  assert_non_null(strstr(err, "more than"));
  /* Not there: says so. */
  char *none[] = {"tether-no-such-program", NULL};
  assert_int_equal(inv_run(&env, none, &out, &st, err, sizeof(err)), TT_ENOTFOUND);
  assert_string_equal(err, "tether-no-such-program is not installed");
  env.path = "/nonexistent";
  assert_int_equal(inv_run(&env, ok, &out, &st, err, sizeof(err)), TT_ENOTFOUND);
}

static void test_inventory_leaves_out_what_changes_by_the_minute(void **state) {
  (void)state;
  assert_false(inv_stable_table("uptime"));
  assert_false(inv_stable_table("logged_in_users"));
  assert_true(inv_stable_table("deb_packages"));
  assert_false(inv_stable_column("memory_info", "memory_free"));
  assert_true(inv_stable_column("memory_info", "memory_total"));
  assert_false(inv_stable_column("mounts", "blocks_available"));
  assert_true(inv_stable_column("mounts", "blocks"));
  assert_false(inv_stable_column("interface_details", "ibytes"));
  assert_true(inv_stable_column("interface_details", "mac"));
  assert_true(inv_stable_column("deb_packages", "version"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_paths_and_reads),
      cmocka_unit_test(test_run),
      cmocka_unit_test(test_inventory_leaves_out_what_changes_by_the_minute),
  };
  return cmocka_run_group_tests(tests, setup, NULL);
}
