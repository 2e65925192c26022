/* The diagnostics page: a report of the wrong shape is refused with a reason, what the device
 * wrote reaches the terminal without a control or bidi character, and the live state (failed
 * units, pressure, journal errors, reachability, clock, reboot) comes first. */
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

/* The live state, near the top: failed units, full disks, memory and stalls, the latest
 * journal errors (a few, one line each, escaped), the broker, the clock, names resolved and
 * a pending reboot; an agent without these tables gets no such section. */
static void test_live_state_near_the_top(void **state) {
  (void)state;
  char err[256];
  const char *doc =
      "{\"device\":\"dev1\",\"hostname\":\"h\",\"agent_version\":\"0.2.0\",\"collected_at\":1709294400000,\"ms\":900,"
      "\"tables\":{"
      "\"systemd_failed_units\":{\"columns\":[\"id\",\"result\",\"since\"],"
      "\"rows\":[[\"backup.service\",\"exit-code\",\"Fri 2024-03-01 02:00:04 UTC\"],[\"evil\\u001b[2J.service\",\"\",\"\"]]},"
      "\"journal_errors\":{\"columns\":[\"time\",\"unit\",\"identifier\",\"priority\",\"message\"],\"rows\":["
      "[\"1709294390\",\"nginx.service\",\"nginx\",\"3\",\"old one\"],"
      "[\"1709294391\",\"a.service\",\"a\",\"3\",\"e1\"],[\"1709294392\",\"b.service\",\"b\",\"3\",\"e2\"],"
      "[\"1709294393\",\"c.service\",\"c\",\"3\",\"e3\"],"
      "[\"1709294394\",\"\",\"kernel\",\"2\",\"ext4-fs error\\u0007\\nsecond line\"],"
      "[\"1709294395\",\"ssh.service\",\"sshd\",\"3\",\"error: kex_exchange_identification\"]]},"
      "\"disk_pressure\":{\"columns\":[\"path\",\"used_percent\",\"inodes_used_percent\",\"bytes_available\"],"
      "\"rows\":[[\"/\",\"100\",\"50\",\"0\"],[\"/var\",\"50\",\"97\",\"2048000\"]]},"
      "\"memory_pressure\":{\"columns\":[\"memory_available_percent\",\"swap_total\",\"swap_used\",\"swap_used_percent\",\"oom_kills\"],"
      "\"rows\":[[\"7\",\"2147479552\",\"1073741824\",\"50\",\"3\"]]},"
      "\"pressure_stall\":{\"columns\":[\"resource\",\"some_avg10\",\"full_avg10\"],"
      "\"rows\":[[\"cpu\",\"0.00\",\"0.00\"],[\"io\",\"31.02\",\"4.75\"],[\"memory\",\"12.50\",\"4.75\"]]},"
      "\"dns_lookups\":{\"columns\":[\"name\",\"addresses\",\"ms\",\"error\"],"
      "\"rows\":[[\"localhost\",\"127.0.0.1, ::1\",\"0\",\"\"],[\"nope.example\",\"\",\"3000\",\"no answer within 3000 ms\"]]},"
      "\"broker_connection\":{\"columns\":[\"address\",\"name\",\"state\",\"connected_since\",\"round_trip_ms\"],"
      "\"rows\":[[\"broker.example:7443\",\"broker-1\",\"connected\",\"1709294000\",\"1.234\"]]},"
      "\"time_skew\":{\"columns\":[\"source\",\"skew_ms\",\"uncertainty_ms\"],\"rows\":[[\"broker\",\"-4500\",\"3\"]]},"
      "\"pending_reboot\":{\"columns\":[\"source\",\"detail\",\"since\"],"
      "\"rows\":[[\"/run/reboot-required\",\"*** System restart required ***\",\"1709294000\"]]},"
      "\"mounts\":{\"columns\":[\"path\",\"type\",\"blocks_size\",\"blocks\",\"blocks_free\",\"blocks_available\"],"
      "\"rows\":[[\"/\",\"ext4\",\"4096\",\"1000\",\"0\",\"0\"]]}}}";
  json_t *d = parse(doc, err);
  assert_non_null(d);
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  console_report_print(f, d);
  fclose(f);
  for (size_t i = 0; i < len; i++)
    if (buf[i] == 0x1b || buf[i] == 0x07) fail_msg("a control byte reached the page: %s", buf);
  const char *now = strstr(buf, "\nNow\n"), *disks = strstr(buf, "\nDisks\n");
  assert_non_null(now);
  assert_non_null(disks);
  assert_true(now < disks);
  assert_non_null(strstr(buf, "Failed      backup.service (exit-code since Fri 2024-03-01 02:00:04 UTC), evil\\x1b[2J.service\n"));
  assert_non_null(strstr(buf, "Disk full   / 100% used (0 B free); /var 50% used (2.0 MiB free), inodes 97% used\n"));
  assert_non_null(strstr(buf, "Memory now  7% available, swap 1.0 GiB used (50%), 3 processes killed for want of memory"));
  assert_non_null(strstr(buf, "Waiting     cpu 0.00%, io 31.02% (all tasks 4.75%), memory 12.50% (all tasks 4.75%) of the last 10 s\n"));
  /* The five latest errors, newest first, one line each; the oldest is left out. */
  assert_non_null(strstr(buf, "Errors      6 in the journal; the latest:\n"
                              "            2024-03-01T11:59:55Z ssh.service: error: kex_exchange_identification\n"
                              "            2024-03-01T11:59:54Z crit kernel: ext4-fs error\\x07\n"
                              "            2024-03-01T11:59:53Z c.service: e3\n"));
  assert_null(strstr(buf, "old one"));
  assert_null(strstr(buf, "second line"));
  assert_non_null(strstr(buf, "Broker      connected broker.example:7443 (broker-1) since 2024-03-01T11:53:20Z, round trip 1.234 ms\n"));
  assert_non_null(strstr(buf, "Clock       4.5 s behind the broker's (+-3 ms)\n"));
  assert_non_null(strstr(buf, "Resolves    localhost 127.0.0.1, ::1 (0 ms); nope.example FAILED: no answer within 3000 ms\n"));
  assert_non_null(strstr(buf, "Reboot      pending: *** System restart required *** (/run/reboot-required)\n"));
  free(buf);
  json_decref(d);

  /* Nothing wrong: said so; an older agent's report: no section. */
  d = parse("{\"tables\":{\"systemd_failed_units\":{\"columns\":[\"id\"],\"rows\":[]},"
            "\"pending_reboot\":{\"columns\":[\"source\"],\"rows\":[]},"
            "\"journal_errors\":{\"columns\":[\"time\"],\"rows\":[],\"error\":\"journalctl is not installed\"},"
            "\"time_skew\":{\"columns\":[\"skew_ms\",\"uncertainty_ms\"],\"rows\":[[\"40\",\"2\"]]}}}",
            err);
  assert_non_null(d);
  buf = NULL;
  f = open_memstream(&buf, &len);
  console_report_print(f, d);
  fclose(f);
  assert_non_null(strstr(buf, "Failed      none\n"));
  assert_non_null(strstr(buf, "Reboot      not pending\n"));
  assert_non_null(strstr(buf, "Clock       in step with the broker's (40 ms, +-2 ms)\n"));
  assert_null(strstr(buf, "Errors  ")); /* it failed: listed under Not collected instead */
  assert_non_null(strstr(buf, "journal_errors       journalctl is not installed"));
  free(buf);
  json_decref(d);
  d = parse("{\"tables\":{\"os_version\":{\"columns\":[\"name\"],\"rows\":[]}}}", err);
  buf = NULL;
  f = open_memstream(&buf, &len);
  console_report_print(f, d);
  fclose(f);
  assert_null(strstr(buf, "Now"));
  free(buf);
  json_decref(d);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_bad_shapes_refused),
      cmocka_unit_test(test_page_is_safe_and_says_the_facts),
      cmocka_unit_test(test_live_state_near_the_top),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
