/* certs/auditfmt.c: an audit entry as a JSON line, a CEF line and an RFC 5424 message, each
 * with its sequence number and chain hash and its OCSF class; hostile values cannot break out
 * of their field (a CEF extension, an SD-PARAM, a JSON string) or onto a second line. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "tt/auditfmt.h"
#include "tt/err.h"

static uint8_t H[32], P[32];

static tt_audit_view_t entry(const char *actor, const char *action, const char *target, const char *detail) {
  memset(H, 0xab, sizeof H);
  memset(P, 0x01, sizeof P);
  return (tt_audit_view_t){.id = 42, .ts_ms = 1764806400123, .actor = actor, .action = action, .target = target,
                           .detail = detail, .hash = H, .prev_hash = P, .host = "broker.example", .version = "0.1.0"};
}

static void test_jsonl(void **state) {
  (void)state;
  char out[TT_AUDITFMT_MAX];
  tt_audit_view_t e = entry("alice", "file-push", "dev1", "{\"path\":\"/tmp/a\",\"size\":\"12\"}");
  int n = tt_auditfmt_write(TT_AUDITFMT_JSONL, &e, out, sizeof out);
  assert_true(n > 0);
  assert_string_equal(out,
                      "{\"seq\":42,\"time\":\"2025-12-04T00:00:00.123Z\",\"ts_ms\":1764806400123,\"actor\":\"alice\","
                      "\"action\":\"file-push\",\"target\":\"dev1\",\"detail\":{\"path\":\"/tmp/a\",\"size\":\"12\"},"
                      "\"hash\":\"abababababababababababababababababababababababababababababababab\",\"prev_hash\":"
                      "\"0101010101010101010101010101010101010101010101010101010101010101\",\"ocsf\":{\"class_uid\":"
                      "1001,\"class_name\":\"File System Activity\",\"category_uid\":1,\"severity_id\":1}}");
  /* A detail that is not the broker's flat object goes as a string; controls are escaped. */
  e = entry("a\"b\n", "connect", "", "not {json}");
  assert_true(tt_auditfmt_write(TT_AUDITFMT_JSONL, &e, out, sizeof out) > 0);
  assert_non_null(strstr(out, "\"actor\":\"a\\\"b\\u000a\""));
  assert_non_null(strstr(out, "\"detail\":\"not {json}\""));
  assert_non_null(strstr(out, "\"class_uid\":3002"));
  assert_null(strchr(out, '\n'));
}

static void test_cef(void **state) {
  (void)state;
  char out[TT_AUDITFMT_MAX];
  tt_audit_view_t e = entry("mallory", "refuse", "x=1 suser=root", "{\"why\":\"a|b\\\\c\\nd\"}");
  assert_true(tt_auditfmt_write(TT_AUDITFMT_CEF, &e, out, sizeof out) > 0);
  static const char head[] = "CEF:0|Tether|tether-broker|0.1.0|refuse|refuse|6|rt=1764806400123 externalId=42 ";
  assert_memory_equal(out, head, sizeof head - 1);
  /* the detail's backslashes are escaped once more: the JSON comes back by undoing CEF's */
  assert_non_null(strstr(out, " msg={\"why\":\"a|b\\\\\\\\c\\\\nd\"}"));
  /* the target's = is escaped: it cannot add a key */
  assert_non_null(strstr(out, " duser=x\\=1 suser\\=root "));
  assert_non_null(strstr(out, " cs1Label=chainHash cs1=abab"));
  assert_non_null(strstr(out, " cat=Authentication "));
  assert_null(strchr(out, '\n'));
  /* a | in the action stays inside its header field */
  e = entry("a", "bad|action", "", "{}");
  assert_true(tt_auditfmt_write(TT_AUDITFMT_CEF, &e, out, sizeof out) > 0);
  assert_non_null(strstr(out, "|bad\\|action|bad\\|action|3|"));
}

static void test_rfc5424(void **state) {
  (void)state;
  char out[TT_AUDITFMT_MAX];
  tt_audit_view_t e = entry("sam", "act-as", "sam", "{\"via\":\"ssh\"}");
  assert_true(tt_auditfmt_write(TT_AUDITFMT_RFC5424, &e, out, sizeof out) > 0);
  char want[512];
  snprintf(want, sizeof want,
           "<110>1 2025-12-04T00:00:00.123Z broker.example tether-broker - act-as [tether@32473 seq=\"42\" "
           "actor=\"sam\" target=\"sam\" hash=\"%s\" prev=\"%s\" ocsf_class=\"4007\"] {\"via\":\"ssh\"}",
           "abababababababababababababababababababababababababababababababab",
           "0101010101010101010101010101010101010101010101010101010101010101");
  assert_string_equal(out, want);
  /* an actor that tries to close the structured data and start another */
  e = entry("x\"] [evil@1 a=\"b", "revoke", "", "{}");
  e.host = "";
  assert_true(tt_auditfmt_write(TT_AUDITFMT_RFC5424, &e, out, sizeof out) > 0);
  assert_non_null(strstr(out, "<109>1 2025-12-04T00:00:00.123Z - tether-broker - revoke "));
  assert_non_null(strstr(out, "actor=\"x\\\"\\] [evil@1 a=\\\"b\""));
}

static void test_limits_and_names(void **state) {
  (void)state;
  char small[64];
  tt_audit_view_t e = entry("alice", "connect", "alice", "{}");
  assert_int_equal(tt_auditfmt_write(TT_AUDITFMT_JSONL, &e, small, sizeof small), TT_ETOOBIG);
  tt_auditfmt_t f;
  assert_int_equal(tt_auditfmt_parse("cef", &f), 0);
  assert_int_equal(f, TT_AUDITFMT_CEF);
  assert_int_equal(tt_auditfmt_parse("syslog", &f), 0);
  assert_int_equal(f, TT_AUDITFMT_RFC5424);
  assert_int_equal(tt_auditfmt_parse("xml", &f), TT_EINVAL);
  tt_ocsf_t c;
  tt_audit_ocsf("person-add", "{}", &c);
  assert_int_equal(c.class_uid, 3001);
  tt_audit_ocsf("session-request", "{\"via\":\"ssh\"}", &c);
  assert_int_equal(c.class_uid, 4007);
  tt_audit_ocsf("session-request", "{}", &c);
  assert_int_equal(c.class_uid, 6003);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_jsonl),
      cmocka_unit_test(test_cef),
      cmocka_unit_test(test_rfc5424),
      cmocka_unit_test(test_limits_and_names),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
