/* The session ids the agent reads as typed on the local socket and the command line
 * (untrusted: a local user types them). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include "agent.h"

static void test_parse_id(void **state) {
  (void)state;
  assert_int_equal(agent_parse_id("S-4", 'S'), 4);
  assert_int_equal(agent_parse_id("4", 'S'), 4);
  assert_int_equal(agent_parse_id("S-18446744073709551615", 'S'), UINT64_MAX);
  assert_int_equal(agent_parse_id("S-18446744073709551616", 'S'), 0); /* past 2^64 - 1 */
  assert_int_equal(agent_parse_id("99999999999999999999999", 'S'), 0);
  static const char *const bad[] = {"", "S-", "S-0", "0", "S-04", "T-4", "s-4", "S4", "S--4", "S-4x", "-4",
                                    " 4", "4 ", "S-4\n", "+4", "0x10"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    if (agent_parse_id(bad[i], 'S') != 0) fail_msg("\"%s\" was taken for a session id", bad[i]);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_parse_id),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
