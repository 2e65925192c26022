/* systemd_failed_units (agent/inv/linux/failed.c): through a stand-in systemctl that checks
 * what it is asked and prints systemd 252's `show` output, the failed units come out with why
 * and since when (a secret in a description redacted), the others do not; and a machine not
 * booted with systemd, a systemctl that hangs or never stops talking, each say so. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "inv_fixture.h"

#define BIN TT_FIXTURES "/bin"

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void test_failed_units(void **state) {
  (void)state;
  inv_env_t env = {.root = FIXTURE_A, .path = BIN "/failed"};
  inv_table_t t;
  FX_COLLECT(systemd_failed_units, &env, &t);
  assert_string_equal(t.error, "");
  /* Three failed; the active, the not-found and the block without an Id are not rows. */
  assert_int_equal(t.nrows, 3);
  long r = fx_find(&t, "id", "backup.service");
  assert_true(r >= 0);
  assert_string_equal(fx_val(&t, (size_t)r, "description"), "Nightly backup");
  assert_string_equal(fx_val(&t, (size_t)r, "load_state"), "loaded");
  assert_string_equal(fx_val(&t, (size_t)r, "active_state"), "failed");
  assert_string_equal(fx_val(&t, (size_t)r, "sub_state"), "failed");
  assert_string_equal(fx_val(&t, (size_t)r, "result"), "exit-code");
  assert_string_equal(fx_val(&t, (size_t)r, "exec_main_status"), "2");
  assert_string_equal(fx_val(&t, (size_t)r, "n_restarts"), "3");
  assert_string_equal(fx_val(&t, (size_t)r, "since"), "Fri 2024-03-01 02:00:04 UTC");
  assert_string_equal(fx_val(&t, (size_t)r, "fragment_path"), "/etc/systemd/system/backup.service");
  r = fx_find(&t, "id", "cups.service");
  assert_true(r >= 0);
  assert_string_equal(fx_val(&t, (size_t)r, "result"), "core-dump");
  assert_string_equal(fx_val(&t, (size_t)r, "description"), "CUPS Scheduler with password=[REDACTED] in its description");
  /* A mount has no main process: those columns are empty. */
  r = fx_find(&t, "id", "srv-data.mount");
  assert_true(r >= 0);
  assert_string_equal(fx_val(&t, (size_t)r, "n_restarts"), "");
  assert_string_equal(fx_val(&t, (size_t)r, "exec_main_status"), "");
  assert_int_equal(fx_find(&t, "id", "ssh.service"), -1);
  assert_int_equal(fx_find(&t, "id", "nfs-server.service"), -1);
  inv_table_free(&t);
}

static void test_failed_units_cannot_be_had(void **state) {
  (void)state;
  inv_table_t t;
  /* Not booted with systemd: nothing is run. */
  char root[512];
  fx_mkroot(root, sizeof(root));
  inv_env_t plain = {.root = root, .path = BIN "/failed"};
  FX_COLLECT(systemd_failed_units, &plain, &t);
  assert_int_equal(t.nrows, 0);
  assert_string_equal(t.error, "not booted with systemd (no /run/systemd/system)");
  inv_table_free(&t);
  fx_rmroot(root);

  inv_env_t none = {.root = FIXTURE_A, .path = "/nonexistent"};
  FX_COLLECT(systemd_failed_units, &none, &t);
  assert_string_equal(t.error, "systemctl is not installed");
  inv_table_free(&t);

  /* The session test's systemctl prints its own show.txt whatever it is asked: properties
   * not asked for are ignored, those asked for and not given are empty. */
  inv_env_t other = {.root = FIXTURE_A, .path = BIN "/systemd"};
  FX_COLLECT(systemd_failed_units, &other, &t);
  assert_string_equal(t.error, "");
  assert_true(fx_find(&t, "id", "backup.service") >= 0);
  assert_string_equal(fx_val(&t, (size_t)fx_find(&t, "id", "backup.service"), "result"), "");
  inv_table_free(&t);

  inv_env_t hang = {.root = FIXTURE_A, .path = BIN "/hang", .timeout_ms = 200};
  uint64_t t0 = now_ms();
  FX_COLLECT(systemd_failed_units, &hang, &t);
  assert_true(now_ms() - t0 < 5000);
  assert_int_equal(t.nrows, 0);
  assert_non_null(strstr(t.error, "timed out after 200ms"));
  inv_table_free(&t);

  inv_env_t loud = {.root = FIXTURE_A, .path = BIN "/loud", .timeout_ms = 20000};
  FX_COLLECT(systemd_failed_units, &loud, &t);
  assert_int_equal(t.nrows, 0);
  assert_non_null(strstr(t.error, "more than"));
  inv_table_free(&t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_failed_units),
      cmocka_unit_test(test_failed_units_cannot_be_had),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
