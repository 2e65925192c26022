/* journal_errors (agent/inv/linux/journal.c): through a stand-in journalctl that checks it is
 * asked for the last 50 errors as JSON and prints captured entries, each entry is a row with
 * its time, unit, identifier and priority; the password, the Authorization header and the
 * private key planted in messages come out redacted; a binary message is text; lines that
 * are not entries are skipped; a missing, hanging or failing journalctl says so. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <cmocka.h>

#include "inv_fixture.h"

#define BIN TT_FIXTURES "/bin"

static long by_time(const inv_table_t *t, const char *when) {
  long r = fx_find(t, "time", when);
  if (r < 0) fail_msg("no entry at %s", when);
  return r;
}

static void test_journal_errors(void **state) {
  (void)state;
  inv_env_t env = {.root = FIXTURE_A, .path = BIN "/journal"};
  inv_table_t t;
  FX_COLLECT(journal_errors, &env, &t);
  assert_string_equal(t.error, "");
  /* Eleven lines: eight entries, three that are not (cut off, an array, not JSON). */
  assert_int_equal(t.nrows, 8);
  long r = by_time(&t, "1709258404");
  assert_string_equal(fx_val(&t, (size_t)r, "unit"), "init.scope");
  assert_string_equal(fx_val(&t, (size_t)r, "identifier"), "systemd");
  assert_string_equal(fx_val(&t, (size_t)r, "priority"), "3");
  assert_string_equal(fx_val(&t, (size_t)r, "message"), "Failed to start backup.service - Nightly backup.");
  /* Secrets in messages: the name stays, the secret does not. */
  r = by_time(&t, "1709258403");
  assert_string_equal(fx_val(&t, (size_t)r, "unit"), "backup.service");
  assert_string_equal(fx_val(&t, (size_t)r, "message"),
                      "mysqldump failed: cmd=mysqldump --user=backup --password=[REDACTED] shop");
  r = by_time(&t, "1709294400");
  assert_string_equal(fx_val(&t, (size_t)r, "message"), "proxy: upstream rejected the request; Authorization: [REDACTED]");
  r = by_time(&t, "1709294401");
  assert_string_equal(fx_val(&t, (size_t)r, "unit"), "app.service"); /* a user unit */
  assert_string_equal(fx_val(&t, (size_t)r, "priority"), "2");
  assert_string_equal(fx_val(&t, (size_t)r, "message"), "config dump: tls_key=[REDACTED]\nport=8443");
  for (size_t i = 0; i < t.nrows; i++) {
    const char *m = fx_val(&t, i, "message");
    assert_null(strstr(m, "Sup3rS3cret"));
    assert_null(strstr(m, "abc.def.ghi"));
    assert_null(strstr(m, "-----BEGIN"));
    assert_null(strstr(m, "MIIEow"));
  }
  inv_table_free(&t);
  /* On the machine itself (no root): the same journal, asked without --root. */
  inv_env_t here = {.root = "", .path = BIN "/journal"};
  FX_COLLECT(journal_errors, &here, &t);
  assert_string_equal(t.error, "");
  assert_int_equal(t.nrows, 8);
  inv_table_free(&t);
  FX_COLLECT(journal_errors, &env, &t);
  /* A message journalctl gave as bytes (not UTF-8): the bad byte is U+FFFD, the NUL a space;
   * no identifier but the command's name. */
  r = by_time(&t, "1709294402");
  assert_string_equal(fx_val(&t, (size_t)r, "message"), "ext4-fs error\xef\xbf\xbd !");
  assert_string_equal(fx_val(&t, (size_t)r, "identifier"), "kworker");
  assert_string_equal(fx_val(&t, (size_t)r, "unit"), "");
  /* A message too large for journalctl's JSON (null): empty. A field given twice: the first. */
  assert_string_equal(fx_val(&t, (size_t)by_time(&t, "1709294403"), "message"), "");
  assert_string_equal(fx_val(&t, (size_t)by_time(&t, "1709294404"), "identifier"), "sshd");
  /* A timestamp that is not a number: no time, the entry still shown. */
  r = fx_find(&t, "identifier", "odd");
  assert_true(r >= 0);
  assert_string_equal(fx_val(&t, (size_t)r, "time"), "");
  inv_table_free(&t);
}

/* A journalctl made here: body is the shell script's. */
static void fake(const char *root, const char *body) {
  char text[512];
  snprintf(text, sizeof(text), "#!/bin/sh\nPATH=/usr/bin:/bin\n%s\n", body);
  fx_puts(root, "journalctl", text);
  char p[600];
  snprintf(p, sizeof(p), "%s/journalctl", root);
  assert_int_equal(chmod(p, 0755), 0);
}

static void test_journal_cannot_be_had(void **state) {
  (void)state;
  inv_table_t t;
  inv_env_t none = {.root = FIXTURE_A, .path = "/nonexistent"};
  FX_COLLECT(journal_errors, &none, &t);
  assert_int_equal(t.nrows, 0);
  assert_string_equal(t.error, "journalctl is not installed");
  inv_table_free(&t);

  char dir[512];
  fx_mkroot(dir, sizeof(dir));
  inv_env_t env = {.root = FIXTURE_A, .path = dir, .timeout_ms = 200};
  /* No journal to read (journalctl says why on standard error, and exits 1). */
  fake(dir, "echo 'No journal files were found.' >&2; exit 1");
  FX_COLLECT(journal_errors, &env, &t);
  assert_int_equal(t.nrows, 0);
  assert_string_equal(t.error, "journalctl exited with status 1");
  inv_table_free(&t);
  /* No errors at all: no rows, nothing wrong. */
  fake(dir, "exit 0");
  FX_COLLECT(journal_errors, &env, &t);
  assert_int_equal(t.nrows, 0);
  assert_string_equal(t.error, "");
  inv_table_free(&t);
  /* One that hangs is stopped at the timeout. */
  fake(dir, "exec sleep 3600");
  FX_COLLECT(journal_errors, &env, &t);
  assert_non_null(strstr(t.error, "timed out after 200ms"));
  inv_table_free(&t);
  fx_rmroot(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_journal_errors),
      cmocka_unit_test(test_journal_cannot_be_had),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
