/* The checks' catalogue (proto/checks.c): every default parses as written, every setting is
 * parsed and refused with the key and the allowed range in the error, and a list of settings
 * is applied all or nothing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "tt/checks.h"

static void test_table(void **state) {
  (void)state;
  static const char *const common[] = {"enabled", "period", "raise_after", "clear_after", "priority"};
  for (int i = 0; i < TT_CHECK_COUNT; i++) {
    const tt_check_def_t *d = &tt_checks[i];
    assert_non_null(d->name);
    assert_int_equal(tt_check_find(d->name), i);
    assert_true(d->desc && d->desc[0]);
    assert_true(d->nsettings >= 5 && d->nsettings <= 8);
    for (size_t k = 0; k < 5; k++) assert_string_equal(d->settings[k].name, common[k]);
    for (size_t k = 0; k < d->nsettings; k++) {
      const tt_check_setting_t *s = &d->settings[k];
      assert_ptr_equal(tt_check_setting((tt_check_id_t)i, s->name), s);
      assert_ptr_equal(tt_check_setting_of((tt_check_id_t)i, s->field), s);
      assert_true(s->help && s->help[0]);
      /* Each default parses, in range, and is written the way it shows. */
      char key[128], canon[TT_POLICY_VALUE_MAX + 1], err[512];
      tt_check_id_t id;
      const tt_check_setting_t *got;
      snprintf(key, sizeof(key), "checks.%s.%s", d->name, s->name);
      assert_int_equal(tt_checks_parse(key, s->def, &id, &got, canon, sizeof(canon), err, sizeof(err)), 0);
      assert_int_equal(id, i);
      assert_ptr_equal(got, s);
      assert_string_equal(canon, s->def);
    }
  }
  assert_int_equal(tt_check_find("disk_usd"), -1);
  assert_null(tt_check_setting(TT_CHECK_DISK_USED, "services"));
  assert_string_equal(tt_check_state_name(TT_CHECK_PENDING), "pending");
  assert_string_equal(tt_check_state_name(TT_CHECK_FAILING), "failing");
  assert_string_equal(tt_check_prio_name(TT_CHECK_PRIO_URGENT), "urgent");
  assert_string_equal(tt_check_dim_name(tt_checks[TT_CHECK_DISK_USED].dim), "mount");
  assert_string_equal(tt_check_dim_name(tt_checks[TT_CHECK_SERVICES_DOWN].dim), "service");
  assert_string_equal(tt_check_dim_name(tt_checks[TT_CHECK_CERT_EXPIRY].dim), "path");
}

static void test_defaults(void **state) {
  (void)state;
  tt_checks_conf_t c;
  tt_checks_defaults(&c);
  const tt_check_conf_t *d = &c.c[TT_CHECK_DISK_USED];
  assert_true(d->enabled);
  assert_int_equal(d->period_ms, 5 * 60 * 1000);
  assert_int_equal(d->raise_after, 3);
  assert_int_equal(d->clear_after, 2);
  assert_int_equal(d->priority, TT_CHECK_PRIO_NORMAL);
  assert_int_equal(d->threshold, 90);
  assert_non_null(strstr(d->list, "tmpfs"));
  assert_non_null(strstr(d->list, "squashfs"));
  assert_non_null(strstr(d->list, "overlay"));
  assert_int_equal(c.c[TT_CHECK_MEMORY_PRESSURE].available, 5);
  assert_int_equal(c.c[TT_CHECK_CLOCK_SKEW].threshold, 60 * 1000);
  assert_int_equal(c.c[TT_CHECK_CERT_EXPIRY].threshold, 14LL * 86400 * 1000);
  assert_string_equal(c.c[TT_CHECK_SERVICES_DOWN].list, "");
  assert_int_equal(c.c[TT_CHECK_UNITS_FAILED].threshold, 1);
  /* Formatted back as they were written. */
  char out[TT_POLICY_VALUE_MAX + 1];
  for (int i = 0; i < TT_CHECK_COUNT; i++)
    for (size_t k = 0; k < tt_checks[i].nsettings; k++) {
      tt_checks_format(&c, (tt_check_id_t)i, &tt_checks[i].settings[k], out, sizeof(out));
      assert_string_equal(out, tt_checks[i].settings[k].def);
    }
}

/* key = value gives canon, or fails with exactly want. */
static void ok(const char *key, const char *value, const char *canon) {
  char got[TT_POLICY_VALUE_MAX + 1], err[512] = "";
  tt_check_id_t id;
  const tt_check_setting_t *s;
  int rc = tt_checks_parse(key, value, &id, &s, got, sizeof(got), err, sizeof(err));
  if (rc) fail_msg("%s = %s: %s", key, value, err);
  assert_string_equal(got, canon);
}

static void bad(const char *key, const char *value, const char *want) {
  char got[TT_POLICY_VALUE_MAX + 1], err[512] = "";
  tt_check_id_t id;
  const tt_check_setting_t *s;
  assert_int_equal(tt_checks_parse(key, value, &id, &s, got, sizeof(got), err, sizeof(err)), TT_EINVAL);
  if (strncmp(err, want, strlen(want))) fail_msg("%s = %s:\n got: %s\nwant: %s...", key, value, err, want);
}

static void test_values(void **state) {
  (void)state;
  ok("checks.disk_used.threshold", "85%", "85%");
  ok("checks.disk_used.threshold", "85", "85%");
  ok("checks.disk_used.threshold", "100%", "100%");
  ok("checks.disk_used.period", "90s", "90s");
  ok("checks.disk_used.period", "60s", "1m");
  ok("checks.disk_used.period", "1s", "1s");
  ok("checks.disk_used.period", "1d", "1d");
  ok("checks.disk_used.period", "1500ms", "1500ms");
  ok("checks.reboot_pending.threshold", "0s", "0s");
  ok("checks.cert_expiry.threshold", "4h", "4h");
  ok("checks.disk_used.enabled", "off", "off");
  ok("checks.disk_used.enabled", "yes", "on");
  ok("checks.disk_used.raise_after", "100", "100");
  ok("checks.disk_used.priority", "urgent", "urgent");
  ok("checks.units_failed.threshold", "3", "3");
  /* Lists: trimmed, canonical, each item once. */
  ok("checks.services_down.services", " cups , ssh.service,getty@tty1,cups.service,systemd-journald.socket ",
     "cups.service,ssh.service,getty@tty1.service,systemd-journald.socket");
  ok("checks.services_down.services", "", "");
  ok("checks.services_down.services", "  ", "");
  ok("checks.disk_used.ignore", "tmpfs, /media/usb stick ,fuse.*", "tmpfs,/media/usb stick,fuse.*");
  ok("checks.cert_expiry.paths", "/etc/ssl/certs/site.pem,/opt/app/tls/cert.der", "/etc/ssl/certs/site.pem,/opt/app/tls/cert.der");
}

static void test_refusals(void **state) {
  (void)state;
  bad("checks.disk_used.threshold", "120%", "checks.disk_used.threshold: 120% is out of range (1%..100%)");
  bad("checks.disk_used.threshold", "0%", "checks.disk_used.threshold: 0% is out of range (1%..100%)");
  bad("checks.disk_used.threshold", "85.5%", "checks.disk_used.threshold: \"85.5%\" is not a percentage (85%)");
  bad("checks.disk_used.threshold", "-5%", "checks.disk_used.threshold: \"-5%\" is not a percentage");
  bad("checks.disk_usd.threshold", "85%",
      "checks.disk_usd.threshold: no such check (known: disk_used, inodes_used, memory_pressure, swap_used, "
      "units_failed, services_down, reboot_pending, clock_skew, cert_expiry, agent_renewal, agent_state_disk)");
  bad("checks.disk_used.treshold", "85%",
      "checks.disk_used.treshold: no such setting (disk_used has: enabled, period, raise_after, clear_after, "
      "priority, threshold, ignore)");
  bad("checks.disk_used", "85%", "checks.disk_used: not a check's setting (keys are checks.<check>.<setting>)");
  bad("disk_used.threshold", "85%", "disk_used.threshold: not a check's setting");
  bad("checks..threshold", "85%", "checks..threshold: no such check");
  bad("checks.disk_used.period", "60", "checks.disk_used.period: \"60\" is not a duration (90s, 5m, 4h, 14d)");
  bad("checks.disk_used.period", "500ms", "checks.disk_used.period: 500ms is out of range (1s..1d)");
  bad("checks.disk_used.period", "2d", "checks.disk_used.period: 2d is out of range (1s..1d)");
  bad("checks.disk_used.period", "1.5h", "checks.disk_used.period: \"1.5h\" is not a duration");
  bad("checks.clock_skew.threshold", "0s", "checks.clock_skew.threshold: 0s is out of range (1s..1d)");
  bad("checks.disk_used.raise_after", "0", "checks.disk_used.raise_after: 0 is out of range (1..100)");
  bad("checks.disk_used.raise_after", "101", "checks.disk_used.raise_after: 101 is out of range (1..100)");
  bad("checks.disk_used.raise_after", "99999999999999999999", "checks.disk_used.raise_after: \"99999999999999999999\" is not a whole number");
  bad("checks.disk_used.priority", "critical", "checks.disk_used.priority: \"critical\" is not low, normal, high or urgent");
  bad("checks.disk_used.enabled", "maybe", "checks.disk_used.enabled: \"maybe\" is not on or off");
  bad("checks.disk_used.threshold", "9\n0%", "checks.disk_used.threshold: the value is not printable text");
  bad("checks.disk_used.threshold", "", "checks.disk_used.threshold: \"\" is not a percentage");
  bad("checks.disk\x1b[2J.threshold", "1", "a setting's key is not printable text");
  bad("checks.services_down.services", "cups,bad name!", "checks.services_down.services: \"bad name!\" is not a unit name");
  bad("checks.services_down.services", "cups,,ssh", "checks.services_down.services: an item of the list is empty");
  bad("checks.cert_expiry.paths", "/etc/ok.pem,relative.pem",
      "checks.cert_expiry.paths: \"relative.pem\" is not an absolute path without . or .. parts");
  bad("checks.cert_expiry.paths", "/etc/../shadow", "checks.cert_expiry.paths: \"/etc/../shadow\" is not an absolute path");
  bad("checks.cert_expiry.paths", "/etc/./x", "checks.cert_expiry.paths: \"/etc/./x\" is not an absolute path");
  char many[TT_POLICY_VALUE_MAX + 1] = "";
  for (unsigned i = 0; i <= TT_CHECK_LIST_MAX; i++) snprintf(many + strlen(many), sizeof(many) - strlen(many), "%su%u", i ? "," : "", i);
  bad("checks.services_down.services", many, "checks.services_down.services: more than 32 items");
  char longv[TT_POLICY_VALUE_MAX + 2];
  memset(longv, 'a', sizeof(longv) - 1);
  longv[sizeof(longv) - 1] = 0;
  bad("checks.disk_used.ignore", longv, "checks.disk_used.ignore: the value is not printable text of at most 1024 bytes");
  char item[TT_CHECK_DIM_MAX + 3] = "/";
  memset(item + 1, 'p', TT_CHECK_DIM_MAX);
  bad("checks.cert_expiry.paths", item, "checks.cert_expiry.paths: an item is longer than 200 bytes");
  /* A unit's canonical name ("x" -> "x.service") must fit as its input did, or it would not
   * parse again (fuzz.checks found one). */
  char unit[TT_CHECK_DIM_MAX + 1];
  memset(unit, 'u', TT_CHECK_DIM_MAX - 4);
  unit[TT_CHECK_DIM_MAX - 4] = 0;
  bad("checks.services_down.services", unit, "checks.services_down.services: a unit name is longer than 200 bytes");
  memset(unit, 'u', TT_CHECK_DIM_MAX - 8);
  unit[TT_CHECK_DIM_MAX - 8] = 0;
  char canon[TT_POLICY_VALUE_MAX + 1], again[TT_POLICY_VALUE_MAX + 1], err[512];
  tt_check_id_t id;
  const tt_check_setting_t *s;
  assert_int_equal(tt_checks_parse("checks.services_down.services", unit, &id, &s, canon, sizeof(canon), err, sizeof(err)), 0);
  assert_int_equal(strlen(canon), TT_CHECK_DIM_MAX);
  assert_int_equal(tt_checks_parse("checks.services_down.services", canon, &id, &s, again, sizeof(again), err, sizeof(err)), 0);
  assert_string_equal(again, canon);
}

static void test_set_leaves_cfg_alone_on_error(void **state) {
  (void)state;
  tt_checks_conf_t c, before;
  char err[512];
  tt_checks_defaults(&c);
  assert_int_equal(tt_checks_set(&c, "checks.disk_used.threshold", "1%", err, sizeof(err)), 0);
  assert_int_equal(c.c[TT_CHECK_DISK_USED].threshold, 1);
  assert_int_equal(tt_checks_set(&c, "checks.services_down.services", "cups", err, sizeof(err)), 0);
  assert_string_equal(c.c[TT_CHECK_SERVICES_DOWN].list, "cups.service");
  assert_int_equal(tt_checks_set(&c, "checks.disk_used.period", "1s", err, sizeof(err)), 0);
  assert_int_equal(c.c[TT_CHECK_DISK_USED].period_ms, 1000);
  before = c;
  assert_int_equal(tt_checks_set(&c, "checks.disk_used.threshold", "101%", err, sizeof(err)), TT_EINVAL);
  assert_memory_equal(&c, &before, sizeof(c));
}

#define KV(k, v) {(const uint8_t *)(k), sizeof(k) - 1, (const uint8_t *)(v), sizeof(v) - 1}

static void test_apply_all_or_nothing(void **state) {
  (void)state;
  tt_checks_conf_t c, before;
  char err[512];
  tt_checks_defaults(&c);
  before = c;
  /* Two good, one bad: none applied, the bad one named. */
  tt_check_kv_t mixed[] = {KV("checks.disk_used.threshold", "70%"), KV("checks.swap_used.enabled", "off"),
                           KV("checks.clock_skew.threshold", "2d")};
  assert_int_equal(tt_checks_apply(&c, mixed, 3, err, sizeof(err)), TT_EINVAL);
  assert_string_equal(err, "checks.clock_skew.threshold: 2d is out of range (1s..1d)");
  assert_memory_equal(&c, &before, sizeof(c));
  /* All good: all applied. */
  tt_check_kv_t good[] = {KV("checks.disk_used.threshold", "70%"), KV("checks.swap_used.enabled", "off"),
                          KV("checks.clock_skew.threshold", "2m"), KV("checks.cert_expiry.paths", "/etc/a.pem")};
  assert_int_equal(tt_checks_apply(&c, good, 4, err, sizeof(err)), 0);
  assert_int_equal(c.c[TT_CHECK_DISK_USED].threshold, 70);
  assert_false(c.c[TT_CHECK_SWAP_USED].enabled);
  assert_int_equal(c.c[TT_CHECK_CLOCK_SKEW].threshold, 120000);
  assert_string_equal(c.c[TT_CHECK_CERT_EXPIRY].list, "/etc/a.pem");
  /* The same key twice is refused, even with the same value. */
  before = c;
  tt_check_kv_t twice[] = {KV("checks.disk_used.threshold", "60%"), KV("checks.disk_used.threshold", "60%")};
  assert_int_equal(tt_checks_apply(&c, twice, 2, err, sizeof(err)), TT_EINVAL);
  assert_string_equal(err, "checks.disk_used.threshold: set twice");
  assert_memory_equal(&c, &before, sizeof(c));
  /* Bytes from a peer: a NUL, bad UTF-8, an empty key, too many settings. */
  tt_check_kv_t nul[] = {KV("checks.disk_used.threshold", "6\0000%")};
  assert_int_equal(tt_checks_apply(&c, nul, 1, err, sizeof(err)), TT_EINVAL);
  assert_non_null(strstr(err, "checks.disk_used.threshold: the value is not printable text"));
  tt_check_kv_t utf[] = {KV("checks.disk_used.threshold", "\xff")};
  assert_int_equal(tt_checks_apply(&c, utf, 1, err, sizeof(err)), TT_EINVAL);
  tt_check_kv_t nokey[] = {{NULL, 0, (const uint8_t *)"1", 1}};
  assert_int_equal(tt_checks_apply(&c, nokey, 1, err, sizeof(err)), TT_EINVAL);
  assert_string_equal(err, "setting 1: its key is not printable text of at most 128 bytes");
  tt_check_kv_t empty_value[] = {{(const uint8_t *)"checks.services_down.services", 29, NULL, 0}};
  assert_int_equal(tt_checks_apply(&c, empty_value, 1, err, sizeof(err)), 0); /* an empty list */
  static tt_check_kv_t lots[TT_POLICY_SETTINGS_MAX + 1];
  for (size_t i = 0; i <= TT_POLICY_SETTINGS_MAX; i++) lots[i] = (tt_check_kv_t)KV("checks.disk_used.threshold", "1%");
  assert_int_equal(tt_checks_apply(&c, lots, TT_POLICY_SETTINGS_MAX + 1, err, sizeof(err)), TT_EINVAL);
  assert_string_equal(err, "129 settings: at most 128 at once");
  assert_memory_equal(&c, &before, sizeof(c));
  /* The wire's form. */
  Tether__PolicySetting a = TETHER__POLICY_SETTING__INIT, b = TETHER__POLICY_SETTING__INIT;
  a.key = tt_text("checks.units_failed.ignore");
  a.value = tt_text("apt-daily*.service");
  b.key = tt_text("checks.units_failed.raise_after");
  b.value = tt_text("5");
  Tether__PolicySetting *list[] = {&a, &b};
  assert_int_equal(tt_checks_apply_pb(&c, list, 2, err, sizeof(err)), 0);
  assert_string_equal(c.c[TT_CHECK_UNITS_FAILED].list, "apt-daily*.service");
  assert_int_equal(c.c[TT_CHECK_UNITS_FAILED].raise_after, 5);
  Tether__PolicySetting *holes[] = {&a, NULL};
  assert_int_equal(tt_checks_apply_pb(&c, holes, 2, err, sizeof(err)), TT_EINVAL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_table),
      cmocka_unit_test(test_defaults),
      cmocka_unit_test(test_values),
      cmocka_unit_test(test_refusals),
      cmocka_unit_test(test_set_leaves_cfg_alone_on_error),
      cmocka_unit_test(test_apply_all_or_nothing),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
