/* broker/frontdoor/addrkey.c: how the front door keys a peer's source address. An IPv4 address is
 * its own key; every IPv6 address of one /64 shares a key (a peer with a /64 has all of
 * it); an IPv4-mapped IPv6 address is its IPv4 address. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include <cmocka.h>

#include "addrkey.h"

static broker_addr_key_t key(const char *text) {
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof(ss));
  if (strchr(text, ':')) {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(7443);
    assert_int_equal(inet_pton(AF_INET6, text, &a->sin6_addr), 1);
  } else {
    struct sockaddr_in *a = (struct sockaddr_in *)&ss;
    a->sin_family = AF_INET;
    a->sin_port = htons(5555);
    assert_int_equal(inet_pton(AF_INET, text, &a->sin_addr), 1);
  }
  broker_addr_key_t k;
  broker_addr_key_of((struct sockaddr *)&ss, &k);
  return k;
}

static void assert_text(const char *addr, const char *want) {
  broker_addr_key_t k = key(addr);
  char out[64];
  broker_addr_key_text(&k, out, sizeof(out));
  assert_string_equal(out, want);
}

static void test_ipv4_is_one_address(void **state) {
  (void)state;
  broker_addr_key_t a = key("127.0.0.2"), b = key("127.0.0.2"), c = key("127.0.0.3");
  assert_true(broker_addr_key_eq(&a, &b));
  assert_false(broker_addr_key_eq(&a, &c));
  assert_false(a.v6);
  assert_text("127.0.0.2", "127.0.0.2");
  assert_text("10.255.0.1", "10.255.0.1");
}

static void test_ipv6_is_its_64(void **state) {
  (void)state;
  broker_addr_key_t a = key("2001:db8:1:2::1"), b = key("2001:db8:1:2:ffff:ffff:ffff:ffff");
  broker_addr_key_t c = key("2001:db8:1:3::1");
  assert_true(a.v6);
  assert_true(broker_addr_key_eq(&a, &b));
  assert_false(broker_addr_key_eq(&a, &c));
  assert_text("2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::/64");
  assert_text("::1", "::/64");
}

static void test_mapped_ipv4_is_ipv4(void **state) {
  (void)state;
  broker_addr_key_t m = key("::ffff:127.0.0.2"), v4 = key("127.0.0.2");
  assert_true(broker_addr_key_eq(&m, &v4));
  assert_text("::ffff:192.0.2.7", "192.0.2.7");
  /* An IPv4 address and the IPv6 /64 whose bits look the same are not one peer. */
  broker_addr_key_t z4 = key("0.0.0.1"), z6 = key("0:0:0:1::");
  assert_false(broker_addr_key_eq(&z4, &z6));
}

static void test_text_fits_or_is_cut(void **state) {
  (void)state;
  broker_addr_key_t k = key("2001:db8:1:2::1");
  char small[8];
  broker_addr_key_text(&k, small, sizeof(small));
  assert_int_equal(strlen(small), sizeof(small) - 1);
  broker_addr_key_text(&k, small, 0); /* nothing written, nothing broken */
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_ipv4_is_one_address),
      cmocka_unit_test(test_ipv6_is_its_64),
      cmocka_unit_test(test_mapped_ipv4_is_ipv4),
      cmocka_unit_test(test_text_fits_or_is_cut),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
