/* The diagnostics page: a report of the wrong shape is refused with a reason, and what the
 * device wrote reaches the terminal without a control or bidi character. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "inv/report.h"

static json_t *parse(const char *s, char *err) { return console_report_parse(s, strlen(s), err, 256); }

static void test_bad_shapes_refused(void **state) {
  (void)state;
  char err[256];
  const char *bad[] = {
      "not json",
      "[]",
      "{}",
      "{\"tables\":[]}",
      "{\"tables\":{\"t\":{\"columns\":[],\"rows\":[]}}}",
      "{\"tables\":{\"t\":{\"columns\":[\"a\"],\"rows\":[[\"1\",\"2\"]]}}}",
      "{\"tables\":{\"t\":{\"columns\":[\"a\"],\"rows\":[[1]]}}}",
      "{\"tables\":{\"t\":{\"columns\":[\"a\"],\"rows\":[[\"1\"]],\"error\":5}}}",
      "{\"tables\":{\"t\":{\"columns\":[\"a\"],\"rows\":[]},\"t\":{\"columns\":[\"a\"],\"rows\":[]}}}",
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    err[0] = 0;
    json_t *d = parse(bad[i], err);
    if (d) fail_msg("accepted: %s", bad[i]);
    assert_true(strstr(err, "the device's report") != NULL);
  }
  json_t *ok = parse("{\"tables\":{\"t\":{\"columns\":[\"a\"],\"rows\":[[\"1\"]]}}}", err);
  assert_non_null(ok);
  json_decref(ok);
}

static void test_page_is_safe_and_says_the_facts(void **state) {
  (void)state;
  char err[256];
  const char *doc =
      "{\"device\":\"dev1\",\"hostname\":\"evil\\u001b]0;owned\\u0007\\u202e\",\"agent_version\":\"0.2.0\","
      "\"collected_at\":1764950400000,\"ms\":812,\"tables\":{"
      "\"os_version\":{\"columns\":[\"name\",\"version\",\"arch\"],\"rows\":[[\"Debian GNU/Linux\",\"12 (bookworm)\",\"x86_64\"]]},"
      "\"memory_info\":{\"columns\":[\"memory_total\",\"memory_available\",\"swap_total\",\"swap_free\"],"
      "\"rows\":[[\"17179869184\",\"8589934592\",\"0\",\"0\"]]},"
      "\"mounts\":{\"columns\":[\"path\",\"type\",\"blocks_size\",\"blocks\",\"blocks_free\",\"blocks_available\"],"
      "\"rows\":[[\"/\",\"ext4\",\"4096\",\"1000000\",\"250000\",\"200000\"],[\"/proc\",\"proc\",\"4096\",\"0\",\"0\",\"0\"]]},"
      "\"systemd_units\":{\"columns\":[\"id\",\"active_state\"],\"rows\":[[\"cups.service\",\"failed\"],[\"ssh.service\",\"active\"]]},"
      "\"rpm_packages\":{\"columns\":[\"name\"],\"rows\":[],\"error\":\"rpm is not installed\"},"
      "\"interface_details\":{\"columns\":[\"interface\",\"mac\",\"link_speed\"],"
      "\"rows\":[[\"eth0\\u001b[2J\",\"02:00\\u0007\",\"1\\u001b]52;c;cm0K\\u0007\"]]}}}";
  json_t *d = parse(doc, err);
  assert_non_null(d);
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  console_report_print(f, d);
  fclose(f);
  for (size_t i = 0; i < len; i++)
    if (buf[i] == 0x1b || buf[i] == 0x07) fail_msg("a control byte reached the page: %s", buf);
  assert_null(strstr(buf, "\xe2\x80\xae"));
  assert_non_null(strstr(buf, "Debian GNU/Linux 12 (bookworm) (x86_64)"));
  assert_non_null(strstr(buf, "16.0 GiB, 8.0 GiB available"));
  assert_non_null(strstr(buf, "2 units, 1 failed: cups.service"));
  assert_non_null(strstr(buf, "rpm is not installed"));
  assert_non_null(strstr(buf, "  /  "));
  assert_null(strstr(buf, "/proc")); /* pseudo filesystems are not disks */
  free(buf);
  buf = NULL;
  f = open_memstream(&buf, &len);
  assert_int_equal(console_report_json(f, d), 0);
  fclose(f);
  for (size_t i = 0; i < len; i++) assert_true((unsigned char)buf[i] < 0x80); /* ASCII only */
  free(buf);
  json_decref(d);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_bad_shapes_refused),
      cmocka_unit_test(test_page_is_safe_and_says_the_facts),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
