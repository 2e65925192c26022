/* Unit tests for certs/release.c: release keys (made once, modes, never overwritten), keys
 * files, manifests signed and verified, every way a manifest can be altered or malformed, and
 * Debian's version order. Keys are made at test time in a temporary directory. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "tt/hex.h"
#include "tt/pki.h"
#include "tt/release.h"

#define TEXT_CAP (TT_RELEASE_MANIFEST_MAX + 256)

typedef struct {
  char dir[PATH_MAX];
  char a_key[PATH_MAX], a_pub[PATH_MAX], b_key[PATH_MAX], b_pub[PATH_MAX];
  uint8_t a_fp[32], b_fp[32];
  tt_release_keys_t a; /* the one key the "agent" trusts */
  char good[TEXT_CAP]; /* a manifest signed by a */
  size_t good_len;
} fx_t;

static char err[512];

static int rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  return remove(path);
}

static void path_in(const fx_t *fx, const char *name, char *out, size_t cap) {
  int n = snprintf(out, cap, "%s/%s", fx->dir, name);
  assert_true(n > 0 && (size_t)n < cap);
}

/* The release the tests sign unless they say otherwise. */
static tt_release_t sample(void) {
  tt_release_t r;
  memset(&r, 0, sizeof r);
  strcpy(r.package, "tether-agent");
  strcpy(r.version, "0.3.0");
  strcpy(r.arch, "amd64");
  r.size = 1234567;
  for (int i = 0; i < 32; i++)
    r.sha256[i] = (uint8_t)(i * 7 + 1);
  return r;
}

/* name in the test's directory (PATH_MAX, as every path here), or false when it does not fit. */
static bool in_dir(const fx_t *fx, const char *name, char *out) {
  int n = snprintf(out, PATH_MAX, "%s/%s", fx->dir, name);
  return n > 0 && n < PATH_MAX;
}

static int group_setup(void **state) {
  fx_t *fx = calloc(1, sizeof *fx);
  if (fx == NULL)
    return -1;
  const char *base = getenv("TT_TEST_TMP");
  if (base == NULL || base[0] == '\0')
    base = "/tmp";
  snprintf(fx->dir, sizeof fx->dir, "%s/test_release.XXXXXX", base);
  if (mkdtemp(fx->dir) == NULL) {
    free(fx);
    return -1;
  }
  tt_release_t r = sample();
  if (!in_dir(fx, "a.key", fx->a_key) || !in_dir(fx, "a.pub", fx->a_pub) || !in_dir(fx, "b.key", fx->b_key) ||
      !in_dir(fx, "b.pub", fx->b_pub) ||
      tt_release_key_new(fx->a_key, fx->a_pub, fx->a_fp, err, sizeof err) < 0 ||
      tt_release_key_new(fx->b_key, fx->b_pub, fx->b_fp, err, sizeof err) < 0 ||
      tt_release_keys_load(fx->a_pub, &fx->a, err, sizeof err) < 0 ||
      tt_release_sign(fx->a_key, &r, fx->good, sizeof fx->good, &fx->good_len, err, sizeof err) < 0) {
    fprintf(stderr, "setup: %s\n", err);
    return -1;
  }
  *state = fx;
  return 0;
}

static int group_teardown(void **state) {
  fx_t *fx = *state;
  tt_release_keys_free(&fx->a);
  nftw(fx->dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
  free(fx);
  return 0;
}

/* fx->good with the first `from` replaced by `to`, into out; its length. */
static size_t edit(const fx_t *fx, const char *from, const char *to, char *out) {
  const char *at = strstr(fx->good, from);
  assert_non_null(at);
  size_t head = (size_t)(at - fx->good), fl = strlen(from), tl = strlen(to);
  assert_true(fx->good_len - fl + tl < TEXT_CAP);
  memcpy(out, fx->good, head);
  memcpy(out + head, to, tl);
  memcpy(out + head + tl, at + fl, fx->good_len - head - fl);
  out[fx->good_len - fl + tl] = '\0';
  return fx->good_len - fl + tl;
}

/* Refused by verify with code and a message containing why; nothing of it is left in r. */
static void refused(const char *text, size_t len, const tt_release_keys_t *keys, int code, const char *why) {
  tt_release_t r, zero;
  memset(&r, 0xa5, sizeof r);
  memset(&zero, 0, sizeof zero);
  int rc = tt_release_verify(text, len, keys, &r, err, sizeof err);
  if (rc != code || strstr(err, why) == NULL)
    fail_msg("wanted %d \"%s\", got %d \"%s\" for:\n%.*s", code, why, rc, err, (int)len, text);
  assert_memory_equal(&r, &zero, sizeof r);
  assert_int_equal(ERR_peek_error(), 0);
}

static void test_round_trip(void **state) {
  fx_t *fx = *state;
  tt_release_t want = sample(), got;
  int64_t now_ms = (int64_t)time(NULL) * 1000;

  assert_int_equal(fx->good_len, strlen(fx->good));
  assert_true(fx->good_len <= TT_RELEASE_MANIFEST_MAX);
  static const char head[] = "tether-release 1\npackage tether-agent\nversion 0.3.0\narch amd64\n"
                             "size 1234567\nsha256 01080f";
  assert_int_equal(strncmp(fx->good, head, strlen(head)), 0);
  assert_non_null(strstr(fx->good, "\ndowngrade no\ncreated 20"));
  assert_int_equal(tt_release_verify(fx->good, fx->good_len, &fx->a, &got, err, sizeof err), 0);
  assert_string_equal(got.package, want.package);
  assert_string_equal(got.version, want.version);
  assert_string_equal(got.arch, want.arch);
  assert_int_equal(got.size, want.size);
  assert_memory_equal(got.sha256, want.sha256, 32);
  assert_false(got.downgrade);
  assert_memory_equal(got.key, fx->a_fp, 32);
  assert_true(got.created_ms % 1000 == 0);
  assert_true(got.created_ms <= now_ms && got.created_ms > now_ms - 60000);

  /* Parsed without its signature: the same fields. */
  tt_release_t parsed;
  assert_int_equal(tt_release_parse(fx->good, fx->good_len, &parsed, err, sizeof err), 0);
  assert_memory_equal(&parsed, &got, sizeof got);

  /* A downgrade, signed by the second key, verifies under a file holding both. */
  char both[PATH_MAX], text[TEXT_CAP];
  size_t len;
  tt_release_keys_t keys;
  path_in(fx, "both.pub", both, sizeof both);
  FILE *f = fopen(both, "w");
  assert_non_null(f);
  tt_release_keys_t b;
  assert_int_equal(tt_release_keys_load(fx->b_pub, &b, err, sizeof err), 0);
  assert_int_equal(PEM_write_PUBKEY(f, fx->a.key[0]), 1);
  assert_int_equal(PEM_write_PUBKEY(f, b.key[0]), 1);
  assert_int_equal(fclose(f), 0);
  tt_release_keys_free(&b);
  want.downgrade = true;
  strcpy(want.version, "1:0.2.9~rc1-2");
  strcpy(want.downgrade_from, "1:0.3.0");
  assert_int_equal(tt_release_sign(fx->b_key, &want, text, sizeof text, &len, err, sizeof err), 0);
  assert_memory_equal(want.key, fx->b_fp, 32);
  assert_non_null(strstr(text, "\ndowngrade from 1:0.3.0\n"));
  assert_int_equal(tt_release_keys_load(both, &keys, err, sizeof err), 0);
  assert_int_equal(keys.n, 2);
  assert_memory_equal(keys.fp[0], fx->a_fp, 32);
  assert_memory_equal(keys.fp[1], fx->b_fp, 32);
  assert_int_equal(tt_release_verify(text, len, &keys, &got, err, sizeof err), 0);
  assert_true(got.downgrade);
  assert_string_equal(got.downgrade_from, "1:0.3.0");
  assert_string_equal(got.version, "1:0.2.9~rc1-2");
  assert_memory_equal(got.key, fx->b_fp, 32);
  assert_int_equal(tt_release_verify(fx->good, fx->good_len, &keys, &got, err, sizeof err), 0);
  tt_release_keys_free(&keys);
  assert_int_equal(keys.n, 0);
}

/* Any signed field changed: the text still parses, the signature no longer holds. */
static void test_fields_tampered(void **state) {
  fx_t *fx = *state;
  char text[TEXT_CAP];
  char hash[TT_HEX_CAP(32)];
  tt_release_t s = sample();
  tt_hex(hash, sizeof hash, s.sha256, 32);
  char hash2[TT_HEX_CAP(32) + 7];
  snprintf(hash2, sizeof hash2, "sha256 %s", hash);
  hash2[7 + 63] = hash2[7 + 63] == '0' ? '1' : '0';
  char created[32];
  const char *c = strstr(fx->good, "created ");
  assert_non_null(c);
  memcpy(created, c, 28);
  created[28] = '\0';
  char created2[32];
  strcpy(created2, created);
  created2[11] = created2[11] == '1' ? '2' : '1'; /* the year's last digit */

  static const struct {
    const char *from, *to;
  } edits[] = {
    {"package tether-agent\n", "package tether-agenu\n"},
    {"version 0.3.0\n", "version 0.3.1\n"},
    {"version 0.3.0\n", "version 1:0.3.0\n"},
    {"arch amd64\n", "arch arm64\n"},
    {"size 1234567\n", "size 1234568\n"},
    {"downgrade no\n", "downgrade from 0.3.1\n"},
  };
  for (size_t i = 0; i < sizeof edits / sizeof edits[0]; i++) {
    size_t len = edit(fx, edits[i].from, edits[i].to, text);
    tt_release_t r;
    assert_int_equal(tt_release_parse(text, len, &r, err, sizeof err), 0);
    refused(text, len, &fx->a, TT_EDENIED, "signature does not verify");
  }
  size_t len = edit(fx, hash, hash2 + 7, text);
  refused(text, len, &fx->a, TT_EDENIED, "signature does not verify");
  len = edit(fx, created, created2, text);
  refused(text, len, &fx->a, TT_EDENIED, "signature does not verify");

  /* The signature itself changed (still 64 bytes of canonical base64). */
  const char *sig = strstr(fx->good, "\nsignature ") + 11;
  char sig2[96];
  memcpy(sig2, sig, 88);
  sig2[88] = '\0';
  char from[96];
  strcpy(from, sig2);
  sig2[10] = sig2[10] == 'A' ? 'B' : 'A';
  len = edit(fx, from, sig2, text);
  refused(text, len, &fx->a, TT_EDENIED, "signature does not verify");
}

/* Malformed manifests: refused for what they are, before any key is looked at. */
static void test_malformed(void **state) {
  fx_t *fx = *state;
  char text[TEXT_CAP];
  size_t len;
  const char *sig = strstr(fx->good, "\nsignature ") + 11;
  char sigline[128], noncanon[128], shortsig[128];
  snprintf(sigline, sizeof sigline, "signature %.88s\n", sig);
  /* The last digit before "==" carries 2 bits of the last byte and 4 zero bits: set one. */
  strcpy(noncanon, sigline);
  char *last = noncanon + 10 + 85;
  const char *b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  *last = b64[(strchr(b64, *last) - b64) | 1];
  /* 63 bytes: 84 characters with one '='. */
  snprintf(shortsig, sizeof shortsig, "signature %.83s=\n", sig);

  static const char *const cr_edit = "package tether-agent\n";
  static const struct {
    const char *from, *to, *why;
  } edits[] = {
    {"tether-release 1\n", "tether-release 2\n", "line 1: tether-release: format not supported"},
    {"tether-release 1\n", "hello 1\n", "line 1: not a Tether release manifest"},
    {"arch amd64\n", "arch amd64\nnote hello\n", "line 5: unknown key \"note\" (expected \"size\")"},
    {"package tether-agent\n", "package tether-agent\npackage other\n", "line 3: package: repeated"},
    {"version 0.3.0\narch amd64\n", "arch amd64\nversion 0.3.0\n", "line 3: expected \"version\", got \"arch\""},
    {"arch amd64\n", "arch amd64\n\n", "line 5: blank line"},
    {cr_edit, "package tether-agent\r\n", "line 2: a carriage return"},
    {"version 0.3.0\n", "version 0.3.0 \n", "line 3: version: a space before or after"},
    {"version 0.3.0\n", "version  0.3.0\n", "line 3: version: a space before or after"},
    {"version 0.3.0\n", "version\n", "line 3: version: no value"},
    {"version 0.3.0\n", "version v0.3.0\n", "line 3: version: not a Debian version"},
    {"version 0.3.0\n", "version 0.3.0-\n", "line 3: version: not a Debian version"},
    {"package tether-agent\n", "package Tether-agent\n", "line 2: package: must be"},
    {"package tether-agent\n", "package -tether\n", "line 2: package: must be"},
    {"package tether-agent\n", "package tether_agent\n", "line 2: package: must be"},
    {"arch amd64\n", "arch AMD64\n", "line 4: arch: must be"},
    {"arch amd64\n", "arch amd64amd64amd64xy\n", "line 4: arch: must be"},
    {"size 1234567\n", "size 01234567\n", "line 5: size: a leading zero"},
    {"size 1234567\n", "size +1234567\n", "line 5: size: not a number"},
    {"size 1234567\n", "size -1\n", "line 5: size: not a number"},
    {"size 1234567\n", "size 0\n", "line 5: size: zero"},
    {"size 1234567\n", "size 1234567x\n", "line 5: size: not a number"},
    {"size 1234567\n", "size 536870913\n", "line 5: size: larger than"},
    {"size 1234567\n", "size 99999999999999999999999999\n", "line 5: size: larger than"},
    {"sha256 01", "sha256 0A", "line 6: sha256: not 64 lower-case hex"},
    {"sha256 01", "sha256 1", "line 6: sha256: not 64 lower-case hex"},
    {"downgrade no\n", "downgrade No\n", "line 7: downgrade: must be no, or from VERSION"},
    {"downgrade no\n", "downgrade yes\n", "line 7: downgrade: must be no, or from VERSION"},
    {"downgrade no\n", "downgrade from\n", "line 7: downgrade: must be no, or from VERSION"},
    {"downgrade no\n", "downgrade from x1\n", "line 7: downgrade: from: not a version"},
    {"downgrade no\n", "downgrade from 0.3.0\n", "line 7: downgrade: from: not newer than the version"},
    {"downgrade no\n", "downgrade from 0.2.9\n", "line 7: downgrade: from: not newer than the version"},
    {"key sha256:", "key sha512:", "line 9: key: not sha256:"},
    {"key sha256:", "key SHA256:", "line 9: key: not sha256:"},
  };
  for (size_t i = 0; i < sizeof edits / sizeof edits[0]; i++) {
    len = edit(fx, edits[i].from, edits[i].to, text);
    refused(text, len, &fx->a, TT_EINVAL, edits[i].why);
    tt_release_t r;
    assert_int_equal(tt_release_parse(text, len, &r, err, sizeof err), TT_EINVAL);
  }

  /* created: the shape and the calendar. */
  static const char *const times[] = {"2026-02-30T04:00:00Z", "2026-13-01T04:00:00Z", "2026-12-07T24:00:00Z",
                                      "2026-12-07T04:00:60Z", "2026-12-07 04:00:00Z", "2026-12-07T04:00:00+00:00",
                                      "1969-12-31T23:59:59Z", "2026-12-7T04:00:00Z",  "2026-12-07T04:00:00z"};
  const char *c = strstr(fx->good, "created ");
  char from[32], to[64];
  memcpy(from, c, 28);
  from[28] = '\0';
  for (size_t i = 0; i < sizeof times / sizeof times[0]; i++) {
    snprintf(to, sizeof to, "created %s", times[i]);
    len = edit(fx, from, to, text);
    refused(text, len, &fx->a, TT_EINVAL, "line 8: created: not a UTC time");
  }
  /* A leap day is a day. */
  len = edit(fx, from, "created 2028-02-29T23:59:59Z", text);
  refused(text, len, &fx->a, TT_EDENIED, "signature does not verify");

  /* The signature: only the one base64 text of 64 bytes. */
  len = edit(fx, sigline, noncanon, text);
  refused(text, len, &fx->a, TT_EINVAL, "line 10: signature: not an Ed25519 signature");
  len = edit(fx, sigline, shortsig, text);
  refused(text, len, &fx->a, TT_EINVAL, "line 10: signature: not an Ed25519 signature");

  /* CRLF endings throughout; the last newline missing; one line missing; bytes after. */
  len = 0;
  for (size_t i = 0; i < fx->good_len; i++) {
    if (fx->good[i] == '\n')
      text[len++] = '\r';
    text[len++] = fx->good[i];
  }
  refused(text, len, &fx->a, TT_EINVAL, "line 1: a carriage return");
  refused(fx->good, fx->good_len - 1, &fx->a, TT_EINVAL, "line 10: signature: no newline at its end");
  len = edit(fx, sigline, "", text);
  refused(text, len, &fx->a, TT_EINVAL, "line 10: missing (expected \"signature\")");
  refused(fx->good, 0, &fx->a, TT_EINVAL, "line 1: missing");
  memcpy(text, fx->good, fx->good_len);
  memcpy(text + fx->good_len, "x", 2);
  refused(text, fx->good_len + 1, &fx->a, TT_EINVAL, "line 11: nothing may follow the signature");
  memcpy(text + fx->good_len, "\n", 2);
  refused(text, fx->good_len + 1, &fx->a, TT_EINVAL, "line 11: nothing may follow the signature");
  memcpy(text + fx->good_len, "signature x\n", 13);
  refused(text, fx->good_len + 12, &fx->a, TT_EINVAL, "line 11: nothing may follow the signature");
  /* A NUL inside a value. */
  len = edit(fx, "arch amd64\n", "arch amd64\n", text);
  *strstr(text, "amd64") = '\0';
  refused(text, len, &fx->a, TT_EINVAL, "line 4: arch: must be");
  /* ... in the version a downgrade is from: what follows the NUL must not go unseen (the
   * fuzzer found "downgrade from 1:0.3.<NUL>" taken for "1:0.3."). */
  len = edit(fx, "downgrade no\n", "downgrade from 0.3.1Zx\n", text);
  *strstr(text, "Zx") = '\0';
  refused(text, len, &fx->a, TT_EINVAL, "line 7: downgrade: from: not a version");

  /* Oversize: refused on its length, whatever it holds. */
  char big[TT_RELEASE_MANIFEST_MAX + 2];
  memcpy(big, fx->good, fx->good_len);
  memset(big + fx->good_len, 'x', sizeof big - fx->good_len);
  refused(big, TT_RELEASE_MANIFEST_MAX + 1, &fx->a, TT_EINVAL, "larger than a manifest may be");
  refused(fx->good, TT_RELEASE_MANIFEST_MAX + 1, &fx->a, TT_EINVAL, "1025 bytes");
}

static void test_other_key(void **state) {
  fx_t *fx = *state;
  char text[TEXT_CAP], want[128], afp[TT_HEX_CAP(32)], bfp[TT_HEX_CAP(32)];
  size_t len;
  tt_release_t r = sample();
  assert_int_equal(tt_release_sign(fx->b_key, &r, text, sizeof text, &len, err, sizeof err), 0);

  /* Signed by a key the agent does not hold: named by its fingerprint's start. */
  tt_hex(bfp, sizeof bfp, fx->b_fp, 32);
  snprintf(want, sizeof want, "signed by sha256:%.16s\u2026, not a release key this agent trusts", bfp);
  refused(text, len, &fx->a, TT_EDENIED, want);
  tt_release_keys_t none;
  memset(&none, 0, sizeof none);
  refused(text, len, &none, TT_EDENIED, want);
  refused(text, len, NULL, TT_EDENIED, want);

  /* The key line rewritten to a trusted key's: the signature is still b's. */
  tt_hex(afp, sizeof afp, fx->a_fp, 32);
  char *k = strstr(text, bfp);
  assert_non_null(k);
  memcpy(k, afp, 64);
  refused(text, len, &fx->a, TT_EDENIED, "signature does not verify");
}

/* A keys file with n fresh Ed25519 keys, or one key of another type. */
static void write_keys(const char *path, size_t n, EVP_PKEY *other) {
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  for (size_t i = 0; i < n; i++) {
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    assert_non_null(k);
    assert_int_equal(PEM_write_PUBKEY(f, k), 1);
    EVP_PKEY_free(k);
  }
  if (other != NULL)
    assert_int_equal(PEM_write_PUBKEY(f, other), 1);
  assert_int_equal(fclose(f), 0);
}

static void keys_refused(const char *path, int code, const char *why) {
  tt_release_keys_t k;
  memset(&k, 0xa5, sizeof k);
  int rc = tt_release_keys_load(path, &k, err, sizeof err);
  if (rc != code || strstr(err, why) == NULL)
    fail_msg("%s: wanted %d \"%s\", got %d \"%s\"", path, code, why, rc, err);
  assert_int_equal(k.n, 0);
  assert_null(k.key[0]);
  assert_int_equal(ERR_peek_error(), 0);
}

static void test_keys_files(void **state) {
  fx_t *fx = *state;
  char p[PATH_MAX];
  tt_release_keys_t k;

  path_in(fx, "eight.pub", p, sizeof p);
  write_keys(p, TT_RELEASE_KEYS_MAX, NULL);
  assert_int_equal(tt_release_keys_load(p, &k, err, sizeof err), 0);
  assert_int_equal(k.n, TT_RELEASE_KEYS_MAX);
  tt_release_keys_free(&k);

  path_in(fx, "nine.pub", p, sizeof p);
  write_keys(p, TT_RELEASE_KEYS_MAX + 1, NULL);
  keys_refused(p, TT_EINVAL, "more than 8 release keys");

  EVP_PKEY *rsa = EVP_RSA_gen(2048), *ec = EVP_EC_gen("P-256");
  assert_non_null(rsa);
  assert_non_null(ec);
  path_in(fx, "rsa.pub", p, sizeof p);
  write_keys(p, 1, rsa);
  keys_refused(p, TT_EINVAL, "key 2 is RSA, not Ed25519");
  path_in(fx, "ec.pub", p, sizeof p);
  write_keys(p, 0, ec);
  keys_refused(p, TT_EINVAL, "key 1 is EC, not Ed25519");
  EVP_PKEY_free(rsa);
  EVP_PKEY_free(ec);

  path_in(fx, "empty.pub", p, sizeof p);
  FILE *f = fopen(p, "w");
  assert_non_null(f);
  assert_int_equal(fclose(f), 0);
  keys_refused(p, TT_EINVAL, "no PEM public key");

  path_in(fx, "junk.pub", p, sizeof p);
  f = fopen(p, "w");
  assert_non_null(f);
  fputs("-----BEGIN PUBLIC KEY-----\nnot base64 at all!\n-----END PUBLIC KEY-----\n", f);
  assert_int_equal(fclose(f), 0);
  keys_refused(p, TT_EINVAL, "block 1 is not valid PEM");

  /* The private key given where the public one belongs. */
  keys_refused(fx->a_key, TT_EINVAL, "block 1 is a PRIVATE KEY, not a PUBLIC KEY");

  path_in(fx, "missing.pub", p, sizeof p);
  keys_refused(p, -ENOENT, "missing.pub");
  keys_refused(fx->dir, TT_EINVAL, "not a regular file");
}

static void test_key_files(void **state) {
  fx_t *fx = *state;
  char kp[PATH_MAX], pp[PATH_MAX], lp[PATH_MAX];
  uint8_t fp[32], zero[32] = {0};
  struct stat st;

  /* Modes hold whatever the umask says. */
  path_in(fx, "modes.key", kp, sizeof kp);
  path_in(fx, "modes.pub", pp, sizeof pp);
  mode_t old = umask(0777);
  int rc = tt_release_key_new(kp, pp, fp, err, sizeof err);
  umask(old);
  assert_int_equal(rc, 0);
  assert_int_equal(stat(kp, &st), 0);
  assert_int_equal(st.st_mode & 07777, 0600);
  assert_int_equal(stat(pp, &st), 0);
  assert_int_equal(st.st_mode & 07777, 0644);
  path_in(fx, "modes0.key", kp, sizeof kp);
  path_in(fx, "modes0.pub", pp, sizeof pp);
  old = umask(0);
  rc = tt_release_key_new(kp, pp, NULL, err, sizeof err);
  umask(old);
  assert_int_equal(rc, 0);
  assert_int_equal(stat(kp, &st), 0);
  assert_int_equal(st.st_mode & 07777, 0600);
  assert_int_equal(stat(pp, &st), 0);
  assert_int_equal(st.st_mode & 07777, 0644);

  /* The private key is PKCS#8 PEM, Ed25519; the fingerprint is the public file's. */
  FILE *f = fopen(fx->a_key, "r");
  char line[64];
  assert_non_null(f);
  assert_non_null(fgets(line, sizeof line, f));
  fclose(f);
  assert_string_equal(line, "-----BEGIN " "PRIVATE" " KEY-----\n"); /* split: no key text in the tree */
  EVP_PKEY *k;
  assert_int_equal(tt_pki_load_key(fx->a_key, &k, err, sizeof err), 0);
  assert_true(EVP_PKEY_is_a(k, "ED25519"));
  assert_int_equal(EVP_PKEY_eq(k, fx->a.key[0]), 1);
  EVP_PKEY_free(k);
  assert_memory_equal(fx->a.fp[0], fx->a_fp, 32);

  /* Never overwritten: either file there refuses both, and nothing is made or changed. */
  struct stat before, after;
  assert_int_equal(stat(fx->a_key, &before), 0);
  memset(fp, 0xa5, sizeof fp);
  assert_int_equal(tt_release_key_new(fx->a_key, fx->a_pub, fp, err, sizeof err), TT_ESTATE);
  assert_non_null(strstr(err, "a.key: already exists, refusing to overwrite"));
  assert_memory_equal(fp, zero, 32);
  path_in(fx, "new.key", kp, sizeof kp);
  assert_int_equal(tt_release_key_new(kp, fx->a_pub, fp, err, sizeof err), TT_ESTATE);
  assert_non_null(strstr(err, "a.pub: already exists, refusing to overwrite"));
  assert_int_equal(access(kp, F_OK), -1);
  path_in(fx, "new.pub", pp, sizeof pp);
  assert_int_equal(tt_release_key_new(fx->a_key, pp, fp, err, sizeof err), TT_ESTATE);
  assert_int_equal(access(pp, F_OK), -1);
  assert_int_equal(stat(fx->a_key, &after), 0);
  assert_int_equal(before.st_ino, after.st_ino);
  assert_int_equal(before.st_mtime, after.st_mtime);
  tt_release_keys_t again;
  assert_int_equal(tt_release_keys_load(fx->a_pub, &again, err, sizeof err), 0);
  assert_memory_equal(again.fp[0], fx->a_fp, 32);
  tt_release_keys_free(&again);

  /* A planted symlink, even a dangling one, is not followed. */
  path_in(fx, "planted.key", lp, sizeof lp);
  path_in(fx, "elsewhere", kp, sizeof kp);
  assert_int_equal(symlink(kp, lp), 0);
  path_in(fx, "planted.pub", pp, sizeof pp);
  assert_int_equal(tt_release_key_new(lp, pp, fp, err, sizeof err), TT_ESTATE);
  assert_int_equal(access(kp, F_OK), -1);
  assert_int_equal(access(pp, F_OK), -1);

  /* One name for both files is a mistake, not a key. */
  assert_int_equal(tt_release_key_new(pp, pp, fp, err, sizeof err), TT_EINVAL);
  assert_int_equal(access(pp, F_OK), -1);
}

static void test_sign_refusals(void **state) {
  fx_t *fx = *state;
  char text[TEXT_CAP], p[PATH_MAX];
  size_t len = 99;
  tt_release_t r;

  static const struct {
    const char *package, *version, *arch, *why;
  } bad[] = {
    {"Tether", "0.3.0", "amd64", "package:"},     {"", "0.3.0", "amd64", "package:"},
    {"tether", "v0.3", "amd64", "version:"},      {"tether", "", "amd64", "version:"},
    {"tether", "1:", "amd64", "version:"},        {"tether", "0.3.0", "amd 64", "arch:"},
    {"tether", "0.3.0", "", "arch:"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    r = sample();
    strcpy(r.package, bad[i].package);
    strcpy(r.version, bad[i].version);
    strcpy(r.arch, bad[i].arch);
    text[0] = 'x';
    assert_int_equal(tt_release_sign(fx->a_key, &r, text, sizeof text, &len, err, sizeof err), TT_EINVAL);
    assert_non_null(strstr(err, bad[i].why));
    assert_int_equal(text[0], '\0');
    assert_int_equal(len, 0);
  }
  /* A name that fills its field has no NUL: refused, not read past. */
  r = sample();
  memset(r.package, 'a', sizeof r.package);
  assert_int_equal(tt_release_sign(fx->a_key, &r, text, sizeof text, &len, err, sizeof err), TT_EINVAL);
  r = sample();
  r.size = 0;
  assert_int_equal(tt_release_sign(fx->a_key, &r, text, sizeof text, &len, err, sizeof err), TT_EINVAL);
  r.size = TT_RELEASE_SIZE_MAX + 1;
  assert_int_equal(tt_release_sign(fx->a_key, &r, text, sizeof text, &len, err, sizeof err), TT_EINVAL);
  r.size = TT_RELEASE_SIZE_MAX;
  assert_int_equal(tt_release_sign(fx->a_key, &r, text, sizeof text, &len, err, sizeof err), 0);
  assert_int_equal(len, strlen(text));

  /* Room for exactly the manifest and its NUL, and one byte less. */
  r = sample();
  size_t need = fx->good_len + 1;
  assert_int_equal(tt_release_sign(fx->a_key, &r, text, need, &len, err, sizeof err), 0);
  assert_int_equal(len + 1, need);
  assert_int_equal(tt_release_sign(fx->a_key, &r, text, need - 1, &len, err, sizeof err), TT_ETOOBIG);
  assert_int_equal(len, 0);

  /* Only an Ed25519 key signs, and only one others cannot read. */
  EVP_PKEY *ec = EVP_EC_gen("P-256");
  assert_non_null(ec);
  path_in(fx, "ec.key", p, sizeof p);
  assert_int_equal(tt_pki_write_key(p, ec, err, sizeof err), 0);
  EVP_PKEY_free(ec);
  assert_int_equal(tt_release_sign(p, &r, text, sizeof text, &len, err, sizeof err), TT_EINVAL);
  assert_non_null(strstr(err, "not an Ed25519 release key"));
  assert_int_equal(chmod(fx->b_key, 0640), 0);
  assert_int_equal(tt_release_sign(fx->b_key, &r, text, sizeof text, &len, err, sizeof err), TT_EDENIED);
  assert_int_equal(chmod(fx->b_key, 0600), 0);
  assert_int_equal(tt_release_sign(fx->a_pub, &r, text, sizeof text, &len, err, sizeof err), TT_EDENIED);
  assert_int_equal(ERR_peek_error(), 0);
}

static void test_version_cmp(void **state) {
  static const struct {
    const char *a, *b;
    int want;
  } cases[] = {
    {"1.0", "1.0.1", -1},
    {"1.0~rc1", "1.0", -1},
    {"1.0~rc1", "1.0~rc2", -1},
    {"1.0~~", "1.0~", -1},
    {"1.0~", "1.0", -1},
    {"1:0.1", "2.0", 1},
    {"1.0-1", "1.0-2", -1},
    {"0.1.0", "0.1.0+next", -1},
    {"1.0a", "1.0+", -1},
    {"1.0", "1.0a", -1},
    {"1.0a", "1.0b", -1},
    {"1.9", "1.10", -1},
    {"1.0-1", "1.0-1ubuntu1", -1},
    {"1.0-9", "1.0-10", -1},
    {"1.0", "1.0-0", 0},
    {"1.0", "1.0", 0},
    {"1.00", "1.0", 0},
    {"01.0", "1.0", 0},
    {"0:1.0", "1.0", 0},
    {"00:1.0", "0:1.0", 0},
    {"2:1.0", "10:0.1", -1},
    {"1.0-1", "1.0-1", 0},
    {"1.2.3-4-5", "1.2.3-4-6", -1},
    {"0.3.0", "0.3.0~rc1", 1},
    {"0.10.0", "0.9.9", 1},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    int got = tt_version_cmp(cases[i].a, cases[i].b), back = tt_version_cmp(cases[i].b, cases[i].a);
    int sign = got < 0 ? -1 : got > 0;
    int bsign = back < 0 ? -1 : back > 0;
    if (sign != cases[i].want || bsign != -cases[i].want)
      fail_msg("%s vs %s: got %d and %d, wanted %d", cases[i].a, cases[i].b, got, back, cases[i].want);
  }
}

static void test_version_ok(void **state) {
  static const char *const good[] = {
    "0", "0.3.0", "1:0.1", "1.0~rc1", "1.0+next", "1.0-1", "2.0.0-1ubuntu1", "1:2:3", "1.0-beta-1", "1.0~rc1+git20261207.abc",
    "1234567890123456789012345678901234567890123456789012345678901234",
  };
  static const char *const bad[] = {
    "", "v1", ".1", "1.0 ", " 1.0", "1.0_1", "a:1.0", "1:", "1:a", "1.0-", "1.0:3", "-1", "1:-1", "1.0\n", "1.0/2",
    "12345678901234567890123456789012345678901234567890123456789012345",
  };
  for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
    if (!tt_version_ok(good[i]))
      fail_msg("refused good version \"%s\"", good[i]);
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    if (tt_version_ok(bad[i]))
      fail_msg("took bad version \"%s\"", bad[i]);
  assert_false(tt_version_ok(NULL));
}

static void test_arch(void **state) {
  const char *a = tt_release_arch();
  assert_non_null(a);
#if defined(__x86_64__) && !defined(__ILP32__)
  assert_string_equal(a, "amd64");
#elif defined(__aarch64__)
  assert_string_equal(a, "arm64");
#endif
  /* Whatever it is, a manifest takes it. */
  fx_t *fx = *state;
  tt_release_t r = sample(), got;
  char text[TEXT_CAP];
  size_t len;
  strcpy(r.arch, a);
  assert_int_equal(tt_release_sign(fx->a_key, &r, text, sizeof text, &len, err, sizeof err), 0);
  assert_int_equal(tt_release_verify(text, len, &fx->a, &got, err, sizeof err), 0);
  assert_string_equal(got.arch, a);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_round_trip),
    cmocka_unit_test(test_fields_tampered),
    cmocka_unit_test(test_malformed),
    cmocka_unit_test(test_other_key),
    cmocka_unit_test(test_keys_files),
    cmocka_unit_test(test_key_files),
    cmocka_unit_test(test_sign_refusals),
    cmocka_unit_test(test_version_cmp),
    cmocka_unit_test(test_version_ok),
    cmocka_unit_test(test_arch),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
