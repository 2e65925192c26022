/* SSH public key lines as people register them for the gateway (certs/sshkey.c): the types
 * taken, with ssh-keygen's own fingerprints and sizes (these keys were made by ssh-keygen;
 * only their public halves are here), and every refusal with its reason. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>
#include "tt/sshkey.h"

static const struct {
  const char *line, *type;
  unsigned bits;
  const char *fp;
} k_good[] = {
    {"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICBtBABRqUYbE32KAQrm/hZauS3nFxbmn+t2y1XaBWOC alice@lap"
      "top",
      "ssh-ed25519", 256, "SHA256:kaxt8wrrA61dsuconpFVAin6dKGX+xodqLqv7f/WXTc"},
    {"ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBJmzoIAOa7d7RmKTzl"
      "bwz7hg3A+Wcm9v7wjP2+MXqbFwh/Lm7hZnrED1TthLG+tGFSuM29unQ8MMzNY9jveHg94= alice@laptop",
      "ecdsa-sha2-nistp256", 256, "SHA256:lrB0iFsn7gWsOfAW68SXUc508pq6RE3U+Rt6SxHXwDw"},
    {"ecdsa-sha2-nistp384 AAAAE2VjZHNhLXNoYTItbmlzdHAzODQAAAAIbmlzdHAzODQAAABhBBgWcBEKjZ0epjHoGw"
      "CpX5tQGfjo/RT0ep6+cqa58lQ+uKqtClHVkHQduBjh/TGbGCwrvsGsIelEnWKot88JvwPE9pMtiLl1lyijfftB089x"
      "ipxFglaeOvIevYFCeGZe3w== alice@laptop",
      "ecdsa-sha2-nistp384", 384, "SHA256:s/m9rzAqi0Ozz5jNVQiQyEKcB6M+Y2SaXc8BDtwzR90"},
    {"ecdsa-sha2-nistp521 AAAAE2VjZHNhLXNoYTItbmlzdHA1MjEAAAAIbmlzdHA1MjEAAACFBAAM2FkaBX9bchwwyH"
      "LESmJcUxkiUDuwKJSx1T1MLxrY6Lgxx468XnUb/OJfHLtOlRpXD45olCR8Os/VGF1ihyX8VAEmvMebP0KTrK5KiH94"
      "JXvP5ARj20f3c1+mXZTs2WPem4VjXGeg6Se6ETg/kRGQNPKzhmQ8MKzzuP4IO88aCmzTbg== alice@laptop",
      "ecdsa-sha2-nistp521", 521, "SHA256:P+rMrJPP60Ri6RcSJVqHh49b7KgAzAEArtQHr7la+m8"},
    {"ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABgQCRJzjNaDkcio4AQVOT8+Rx73jV+oMI+fl4G0mijkKT3omzeH9EXM"
      "CrAk+MoNfk4TR35OTqjEu8QNcWlP1oRQjUnNHqrfO/LvMSgLhxn3zKOEBj12bAPYmrp9MhrXRoWSTvGsJ7XERXz2l+"
      "FAhi2QNUIC1jgQrzrmJvKoLGqO/4EMFSfKbNgwBEvRfpOnpooYjuClwCP73fYNssQIbp0HPv9iTrLOLUv7Kc7M7L10"
      "WRyCF6n6FGHV1SgOExx/ym/iYcu/eVz9bo89FXNoBFeBEyy4SG6lyl+rkQhS09UGP+xh/sWyaDNcccDC4Urk/0Ze1s"
      "VDU4y3oK1pxx6mNqF8IRUN9QmkZCqd8YYb1JugF9POdiI3SnzjOwduCsM5FKEXzP90BeXUubv1HcDN7gNWzBCzGPOl"
      "BLt3OMxgrYIpbtsA7x2aXbC1ER++xRmwO4bfsF7j2JCj+Vcwn363Pf2EMpezt5yVcpL1aGorosztXYONou0sNgCncp"
      "SkB+5u37A9M= alice@laptop",
      "ssh-rsa", 3072, "SHA256:oaPoz/gc1u6JVKLmYz/uXgsJ7lOjE+pKtdA7UlK6sz0"},
};

static const char k_rsa2048[] = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC0wmAs5mZDTMG5wzIB7X78CAImypKwUcvjpEdZLcPXy42UPJ6yOA"
      "H+8UIc0VSJIBD596HhmwTIrVSbJMQTNFfu50Kwsbut7JQZMQdkxsFGqKDrJ35rGI6gJy7WVOeKl+wuRIRXkx/MaQPr"
      "C3VUuzWQriyh0O7S7lEusUGVuAnaZDJ0bDeU/ka5DJfcfbPSgLx62mYKfR9Mvt8Id37PUFGE3j5PLDsxW47T+l2fVg"
      "bY5SFXi2svB4jFC+dysIQHlAw8q90GFYn3YqJ9hrx4ybfKQ7MYbsUQ9lFNePhCJc2P4S27F8oeanVVnmGa3TCve9RD"
      "GDnDg1fHty+sTUnfyEP1 alice@laptop";
static const char k_ed25519[] = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICBtBABRqUYbE32KAQrm/hZauS3nFxbmn+t2y1XaBWOC alice@lap"
      "top";

static void test_taken_types(void **state) {
  (void)state;
  static tt_sshkey_t k;
  char why[256];
  for (size_t i = 0; i < sizeof(k_good) / sizeof(k_good[0]); i++) {
    assert_int_equal(tt_sshkey_parse(k_good[i].line, strlen(k_good[i].line), &k, why, sizeof(why)), 0);
    assert_string_equal(k.type, k_good[i].type);
    assert_int_equal(k.bits, k_good[i].bits);
    assert_string_equal(k.fingerprint, k_good[i].fp);
    assert_string_equal(k.comment, "alice@laptop");
    /* The line kept is the type and the base64, without the comment. */
    assert_int_equal(strncmp(k.line, k_good[i].line, strlen(k.line)), 0);
    assert_string_equal(k_good[i].line + strlen(k.line), " alice@laptop");
  }
}

static void test_line_forms(void **state) {
  (void)state;
  static tt_sshkey_t k;
  char why[256], buf[TT_SSH_KEY_LINE_MAX + 64];
  /* A trailing newline, no comment, leading blanks: all the same key. */
  snprintf(buf, sizeof(buf), "  %.*s\n", (int)(strchr(strchr(k_ed25519, ' ') + 1, ' ') - k_ed25519), k_ed25519);
  assert_int_equal(tt_sshkey_parse(buf, strlen(buf), &k, why, sizeof(why)), 0);
  assert_string_equal(k.comment, "");
  assert_string_equal(k.fingerprint, k_good[0].fp);
  /* A comment with controls is kept printable. */
  snprintf(buf, sizeof(buf), "%.*s bob\x1b[2J\tx", (int)(strchr(strchr(k_ed25519, ' ') + 1, ' ') - k_ed25519),
           k_ed25519);
  assert_int_equal(tt_sshkey_parse(buf, strlen(buf), &k, why, sizeof(why)), 0);
  assert_string_equal(k.comment, "bob?[2J?x");
}

static void refused(const char *line, int rc, const char *says) {
  static tt_sshkey_t k;
  char why[256] = "";
  assert_int_equal(tt_sshkey_parse(line, strlen(line), &k, why, sizeof(why)), rc);
  if (!strstr(why, says)) fail_msg("'%s' does not say '%s'", why, says);
}

static void test_refusals(void **state) {
  (void)state;
  refused(k_rsa2048, TT_EINVAL, "at least 3072 bits; this one has 2048");
  refused("ssh-dss AAAAB3NzaC1kc3MAAACBAP", TT_EINVAL, "DSA keys are not taken");
  refused("sk-ssh-ed25519@openssh.com AAAAGnNrLXNzaC1lZDI1NTE5QG9wZW5zc2guY29tAAAAI", TT_EINVAL, "security-key");
  refused("from=\"10.0.0.1\" ssh-ed25519 AAAA", TT_EINVAL, "options");
  refused("", TT_EINVAL, "not an SSH public key");
  refused("ssh-ed25519", TT_EINVAL, "base64");
  refused("ssh-ed25519 AAAA!AAA", TT_EINVAL, "base64");
  refused("ssh-ed25519 AAA", TT_EINVAL, "base64");
  /* The blob names another type than the line. */
  char buf[TT_SSH_KEY_LINE_MAX * 2];
  snprintf(buf, sizeof(buf), "ssh-rsa %s", strchr(k_ed25519, ' ') + 1);
  refused(buf, TT_EINVAL, "does not say it is ssh-rsa");
  /* Ed25519 with a short key: "ssh-ed25519" then a 31-byte string. */
  refused("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAHwAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", TT_EINVAL,
          "not an Ed25519");
  /* Bytes after the last field. */
  refused("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==", TT_EINVAL,
          "after its last field");
  /* A length that runs past the blob. */
  refused("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA/wAA", TT_EINVAL, "not an Ed25519");
  /* Two lines, and a line over the limit. */
  snprintf(buf, sizeof(buf), "%s\n%s", k_ed25519, k_ed25519);
  refused(buf, TT_EINVAL, "one line");
  memset(buf, 'A', TT_SSH_KEY_LINE_MAX + 1);
  memcpy(buf, "ssh-rsa ", 8);
  buf[TT_SSH_KEY_LINE_MAX + 1] = '\0';
  refused(buf, TT_ETOOBIG, "at most");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_taken_types),
      cmocka_unit_test(test_line_forms),
      cmocka_unit_test(test_refusals),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
