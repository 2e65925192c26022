/* tt_conf: every value type, file syntax, and the exact "where: reason" of each error. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "tt/conf.h"

typedef struct {
  int64_t port;
  int64_t workers;
  bool verbose;
  char name[16];
  int64_t timeout;
  int64_t maxmem;
  int consent;
  char cert[64];
  int64_t idle;
  bool quiet;
} cfg_t;

static const tt_conf_opt_t opts[] = {
    {"port", "port", TT_CONF_INT, offsetof(cfg_t, port), 0, 1, 65535, "8443", NULL,
     "TCP port"},
    {"workers", NULL, TT_CONF_INT, offsetof(cfg_t, workers), 0, -4, 64, "-1", NULL,
     "worker threads"},
    {"verbose", "verbose", TT_CONF_BOOL, offsetof(cfg_t, verbose), 0, 0, 0, "no", NULL,
     "chatty logs"},
    {"name", "name", TT_CONF_STR, offsetof(cfg_t, name), sizeof(((cfg_t *)0)->name), 1, 0,
     "tether", NULL, "display name"},
    {"timeout", "timeout", TT_CONF_DURATION, offsetof(cfg_t, timeout), 0, 1000, 3600000, "30s",
     NULL, "handshake timeout"},
    {"max_mem", "max-mem", TT_CONF_SIZE, offsetof(cfg_t, maxmem), 0, 1024,
     INT64_C(4) << 30, "64M", NULL, "memory cap"},
    {"consent", "consent", TT_CONF_ENUM, offsetof(cfg_t, consent), 0, 0, 0, "ask",
     "ask|unattended|deny", "consent policy"},
    {"tls.cert", "cert", TT_CONF_STR, offsetof(cfg_t, cert), sizeof(((cfg_t *)0)->cert), 0, 0,
     NULL, NULL, "certificate file"},
    {"tls.idle", NULL, TT_CONF_DURATION, offsetof(cfg_t, idle), 0, 0, 0, "5m", NULL,
     "idle timeout"},
    {"tls.quiet", NULL, TT_CONF_BOOL, offsetof(cfg_t, quiet), 0, 0, 0, NULL, NULL, "no alerts"},
};
#define NOPTS (sizeof opts / sizeof opts[0])

static char tmp_path[512];

/* Writes `text` to a fresh temp file; its name is left in tmp_path. */
static const char *write_tmp(const char *text) {
  const char *dir = getenv("TT_TEST_TMP");
  if (dir == NULL || *dir == '\0') dir = "/tmp";
  snprintf(tmp_path, sizeof tmp_path, "%s/tt_conf_XXXXXX", dir);
  int fd = mkstemp(tmp_path);
  assert_true(fd >= 0);
  size_t len = strlen(text);
  assert_int_equal(write(fd, text, len), (ssize_t)len);
  close(fd);
  return tmp_path;
}

/* Loads `text` over the defaults; returns the code, error text in err. */
static int load_text(cfg_t *c, const char *text, char *err, size_t errlen) {
  char e[256];
  memset(c, 0x5a, sizeof *c);
  assert_int_equal(tt_conf_defaults(opts, NOPTS, c, e, sizeof e), 0);
  const char *path = write_tmp(text);
  err[0] = '\0';
  int rc = tt_conf_load(opts, NOPTS, c, path, err, errlen);
  unlink(path);
  return rc;
}

/* Expects TT_ECONFIG and err == "<path>:<line>: <reason...>" starting with `want`. */
static void expect_err(const char *text, int line, const char *want) {
  cfg_t c;
  char err[512], prefix[700];
  int rc = load_text(&c, text, err, sizeof err);
  snprintf(prefix, sizeof prefix, "%s:%d: %s", tmp_path, line, want);
  if (rc != TT_ECONFIG || strncmp(err, prefix, strlen(prefix)) != 0)
    fail_msg("text [%s]: rc=%d err [%s], want prefix [%s]", text, rc, err, prefix);
}

static void test_defaults(void **state) {
  (void)state;
  cfg_t c;
  char err[256] = "";
  memset(&c, 0x5a, sizeof c);
  assert_int_equal(tt_conf_defaults(opts, NOPTS, &c, err, sizeof err), 0);
  assert_int_equal(c.port, 8443);
  assert_int_equal(c.workers, -1);
  assert_false(c.verbose);
  assert_string_equal(c.name, "tether");
  assert_int_equal(c.timeout, 30000);
  assert_int_equal(c.maxmem, 64 * 1024 * 1024);
  assert_int_equal(c.consent, 0);
  assert_string_equal(c.cert, "");
  assert_int_equal(c.idle, 300000);
  assert_false(c.quiet);
}

static void test_bad_default_is_reported(void **state) {
  (void)state;
  const tt_conf_opt_t bad[] = {
      {"port", NULL, TT_CONF_INT, 0, 0, 1, 10, "11", NULL, "x"},
  };
  int64_t v;
  char err[256] = "";
  assert_int_equal(tt_conf_defaults(bad, 1, &v, err, sizeof err), TT_ECONFIG);
  assert_string_equal(err, "default of port: \"11\" out of range [1, 10]");
}

static void test_load_every_type(void **state) {
  (void)state;
  cfg_t c;
  char err[512];
  const char *text = "# a comment\n"
                     "\n"
                     "   # indented comment\n"
                     "port = 9000\n"
                     "workers=-4   # trailing comment\n"
                     "verbose = yes\n"
                     "name = \"my \\\"box\\\" \\\\ #1\"  # quoted, then a comment\n"
                     "timeout = 5m\r\n"
                     "max_mem = 1G\n"
                     "consent = unattended\n"
                     "[tls]\n"
                     "cert = /etc/tether/a#b.pem\n"
                     "idle = 250\n"
                     "\t[ tls ]  # same section again is fine\n"
                     "quiet = on";
  assert_int_equal(load_text(&c, text, err, sizeof err), 0);
  assert_string_equal(err, "");
  assert_int_equal(c.port, 9000);
  assert_int_equal(c.workers, -4);
  assert_true(c.verbose);
  assert_string_equal(c.name, "my \"box\" \\ #1");
  assert_int_equal(c.timeout, 300000);
  assert_int_equal(c.maxmem, INT64_C(1) << 30);
  assert_int_equal(c.consent, 1);
  assert_string_equal(c.cert, "/etc/tether/a#b.pem");
  assert_int_equal(c.idle, 250);
  assert_true(c.quiet);
}

static void test_dotted_key_and_later_wins(void **state) {
  (void)state;
  cfg_t c;
  char err[512];
  assert_int_equal(load_text(&c, "tls.cert = x\nport = 1\nport = 2\ntls.cert=\"\"\n", err,
                             sizeof err),
                   0);
  assert_string_equal(c.cert, "");
  assert_int_equal(c.port, 2);
}

static void test_errors(void **state) {
  (void)state;
  expect_err("port = 1\nbogus = 2\n", 2, "unknown key \"bogus\"");
  expect_err("[tls]\nport = 1\n", 2, "unknown key \"port\" in [tls]");
  expect_err("[nope]\ncert = 1\n", 2, "unknown key \"cert\" in [nope]");
  expect_err("port = 12ab\n", 1, "port: expected an integer, got \"12ab\"");
  expect_err("port = \n", 1, "port: expected an integer, got \"\"");
  expect_err("port = 99999999999999999999\n", 1, "port: expected an integer");
  expect_err("port = +5\n", 1, "port: expected an integer");
  expect_err("port = 0x10\n", 1, "port: expected an integer");
  expect_err("port = 65536\n", 1, "port: \"65536\" out of range [1, 65535]");
  expect_err("workers = -5\n", 1, "workers: \"-5\" out of range [-4, 64]");
  expect_err("timeout = 2h\n", 1, "timeout: \"2h\" out of range [1s, 1h]");
  expect_err("timeout = 999\n", 1, "timeout: \"999\" out of range [1s, 1h]");
  expect_err("timeout = 5 s\n", 1, "timeout: expected a duration");
  expect_err("timeout = 1.5s\n", 1, "timeout: expected a duration");
  expect_err("max_mem = 5G\n", 1, "max_mem: \"5G\" out of range [1k, 4G]");
  expect_err("max_mem = 1023\n", 1, "max_mem: \"1023\" out of range [1k, 4G]");
  expect_err("max_mem = 64q\n", 1, "max_mem: expected a size");
  expect_err("max_mem = 99999999999T\n", 1, "max_mem: expected a size");
  expect_err("verbose = maybe\n", 1, "verbose: expected a boolean");
  expect_err("verbose = True\n", 1, "verbose: expected a boolean");
  expect_err("consent = always\n", 1,
             "consent: expected one of ask|unattended|deny, got \"always\"");
  expect_err("consent = as\n", 1, "consent: expected one of");
  expect_err("name = 0123456789abcdefXYZ\n", 1, "name: too long (19 bytes, max 15)");
  expect_err("name = \"\"\n", 1, "name: too short (0 bytes, min 1)");
  expect_err("\n\njust some words\n", 3, "expected \"key = value\" or \"[section]\"");
  expect_err("= 5\n", 1, "missing key");
  expect_err("po rt = 5\n", 1, "bad key \"po rt\"");
  expect_err("[tls\n", 1, "malformed section header");
  expect_err("[tls] x\n", 1, "malformed section header");
  expect_err("[]\n", 1, "bad section name \"\"");
  expect_err("name = \"abc\n", 1, "unterminated quote");
  expect_err("name = \"abc\\\"\n", 1, "unterminated quote");
  expect_err("name = \"a\\nb\"\n", 1, "unknown escape");
  expect_err("name = \"abc\" def\n", 1, "unexpected text after closing quote");
  expect_err("verbose = \"maybe\\x01\"\n", 1, "unknown escape");
}

static void test_value_is_quoted_back_safely(void **state) {
  (void)state;
  expect_err("port = \x1b[31m\n", 1, "port: expected an integer, got \"\\x1b[31m\"");
}

static void test_long_line(void **state) {
  (void)state;
  size_t n = 5000;
  char *text = malloc(n + 32);
  assert_non_null(text);
  strcpy(text, "port = 1\nname = ");
  size_t off = strlen(text);
  memset(text + off, 'a', n);
  strcpy(text + off + n, "\n");
  expect_err(text, 2, "line longer than 4096 bytes");
  /* A line of exactly 4096 bytes is accepted (and then fails on its own merits). */
  memset(text, 'a', 4096);
  text[0] = '#';
  strcpy(text + 4096, "\nport = 7\n");
  cfg_t c;
  char err[512];
  assert_int_equal(load_text(&c, text, err, sizeof err), 0);
  assert_int_equal(c.port, 7);
  free(text);
}

static void test_nul_byte(void **state) {
  (void)state;
  const char *dir = getenv("TT_TEST_TMP");
  if (dir == NULL || *dir == '\0') dir = "/tmp";
  char path[512];
  snprintf(path, sizeof path, "%s/tt_conf_XXXXXX", dir);
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, "port = 1\0 2\n", 12), 12);
  close(fd);
  cfg_t c;
  char err[512], want[600];
  int rc = tt_conf_load(opts, NOPTS, &c, path, err, sizeof err);
  unlink(path);
  assert_int_equal(rc, TT_ECONFIG);
  snprintf(want, sizeof want, "%s:1: NUL byte in line", path);
  assert_string_equal(err, want);
}

static void test_unreadable(void **state) {
  (void)state;
  cfg_t c;
  char err[512];
  assert_int_equal(tt_conf_load(opts, NOPTS, &c, "/nonexistent/tether.conf", err, sizeof err),
                   TT_ECONFIG);
  assert_string_equal(err, "/nonexistent/tether.conf: No such file or directory");
}

static void test_set(void **state) {
  (void)state;
  cfg_t c;
  char err[256];
  assert_int_equal(tt_conf_defaults(opts, NOPTS, &c, err, sizeof err), 0);
  assert_int_equal(tt_conf_set(opts, NOPTS, &c, "port", "443", "--port", err, sizeof err), 0);
  assert_int_equal(c.port, 443);
  assert_int_equal(tt_conf_set(opts, NOPTS, &c, "tls.cert", "c.pem", "--cert", err, sizeof err),
                   0);
  assert_string_equal(c.cert, "c.pem");
  assert_int_equal(tt_conf_set(opts, NOPTS, &c, "port", "x", "--listen", err, sizeof err),
                   TT_ECONFIG);
  assert_string_equal(err, "--listen: expected an integer, got \"x\"");
  assert_int_equal(tt_conf_set(opts, NOPTS, &c, "port", "0", "--listen", err, sizeof err),
                   TT_ECONFIG);
  assert_string_equal(err, "--listen: \"0\" out of range [1, 65535]");
  assert_int_equal(tt_conf_set(opts, NOPTS, &c, "nope", "1", "--listen", err, sizeof err),
                   TT_ECONFIG);
  assert_string_equal(err, "--listen: unknown option \"nope\"");
  assert_int_equal(tt_conf_set(opts, NOPTS, &c, "cert", "1", NULL, err, sizeof err), TT_ECONFIG);
  assert_string_equal(err, "unknown option \"cert\"");
  assert_int_equal(tt_conf_set(opts, NOPTS, &c, "timeout", "1d", NULL, err, sizeof err),
                   TT_ECONFIG);
  assert_string_equal(err, "timeout: \"1d\" out of range [1s, 1h]");
  assert_int_equal(c.port, 443); /* failures leave the field alone */
  assert_int_equal(tt_conf_set(opts, NOPTS, &c, "consent", "deny", "--consent", err, sizeof err),
                   0);
  assert_int_equal(c.consent, 2);
}

static void test_find_flag(void **state) {
  (void)state;
  const tt_conf_opt_t *o = tt_conf_find_flag(opts, NOPTS, "max-mem");
  assert_non_null(o);
  assert_string_equal(o->name, "max_mem");
  o = tt_conf_find_flag(opts, NOPTS, "cert");
  assert_non_null(o);
  assert_string_equal(o->name, "tls.cert");
  assert_null(tt_conf_find_flag(opts, NOPTS, "max_mem"));
  assert_null(tt_conf_find_flag(opts, NOPTS, "workers"));
  assert_null(tt_conf_find_flag(opts, NOPTS, ""));
  assert_null(tt_conf_find_flag(opts, NOPTS, NULL));
}

static void test_parse_duration(void **state) {
  (void)state;
  int64_t v;
  assert_int_equal(tt_conf_parse_duration("250ms", &v), 0);
  assert_int_equal(v, 250);
  assert_int_equal(tt_conf_parse_duration("250", &v), 0);
  assert_int_equal(v, 250);
  assert_int_equal(tt_conf_parse_duration("30s", &v), 0);
  assert_int_equal(v, 30000);
  assert_int_equal(tt_conf_parse_duration("5m", &v), 0);
  assert_int_equal(v, 300000);
  assert_int_equal(tt_conf_parse_duration("2h", &v), 0);
  assert_int_equal(v, 7200000);
  assert_int_equal(tt_conf_parse_duration("1d", &v), 0);
  assert_int_equal(v, 86400000);
  assert_int_equal(tt_conf_parse_duration("0", &v), 0);
  assert_int_equal(v, 0);
  static const char *const bad[] = {"", "s", "-1s", "+1s", " 1s", "1s ", "1S", "1x", "1.5s",
                                    "1sm", "1ms5", "9223372036854775807s",
                                    "99999999999999999999", NULL};
  for (int i = 0; bad[i] != NULL; i++)
    if (tt_conf_parse_duration(bad[i], &v) != TT_EINVAL) fail_msg("accepted \"%s\"", bad[i]);
  assert_int_equal(tt_conf_parse_duration("9223372036854775807", &v), 0);
  assert_int_equal(v, INT64_MAX);
}

static void test_parse_size(void **state) {
  (void)state;
  int64_t v;
  static const struct {
    const char *s;
    int64_t v;
  } good[] = {
      {"512", 512},         {"512B", 512},       {"0", 0},
      {"64k", 64 << 10},    {"64K", 64 << 10},   {"64KiB", 64 << 10},
      {"64kb", 64 << 10},   {"16M", 16 << 20},   {"16mib", 16 << 20},
      {"1G", INT64_C(1) << 30}, {"1GB", INT64_C(1) << 30}, {"2T", INT64_C(2) << 40},
      {"8388607T", INT64_C(8388607) << 40},
  };
  for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
    if (tt_conf_parse_size(good[i].s, &v) != 0) fail_msg("rejected \"%s\"", good[i].s);
    assert_int_equal(v, good[i].v);
  }
  static const char *const bad[] = {"", "k", "-1", "+1", " 1k", "1k ", "1.5G", "1Ki", "1iB",
                                    "1kk", "1KBB", "1P", "8388608T", "9223372036854775808",
                                    NULL};
  for (int i = 0; bad[i] != NULL; i++)
    if (tt_conf_parse_size(bad[i], &v) != TT_EINVAL) fail_msg("accepted \"%s\"", bad[i]);
}

static void test_print_help(void **state) {
  (void)state;
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  assert_non_null(f);
  tt_conf_print_help(f, opts, NOPTS);
  fclose(f);
  assert_non_null(strstr(buf, "  --port N "));
  assert_non_null(strstr(buf, "  --verbose [BOOL] "));
  assert_non_null(strstr(buf, "TCP port (default: 8443)\n"));
  assert_non_null(strstr(buf, "  --consent ask|unattended|deny  consent policy (default: ask)\n"));
  assert_non_null(strstr(buf, "handshake timeout (default: 30s)\n"));
  assert_non_null(strstr(buf, "certificate file\n")); /* no default shown for empty text */
  const char *keys = strstr(buf, "\nconfig file keys:\n");
  assert_non_null(keys);
  assert_null(strstr(buf, "--workers"));
  assert_non_null(strstr(keys, "  workers = N "));
  assert_non_null(strstr(keys, "worker threads (default: -1)\n"));
  assert_non_null(strstr(keys, "  tls.cert = TEXT "));
  assert_non_null(strstr(keys, "same as --cert\n"));
  assert_non_null(strstr(keys, "no alerts (default: false)\n"));
  free(buf);
}

/* The keys a program checks itself: every key under the prefix, from a section or dotted at
 * top level, reaches the hook whole; its refusal becomes "path:line: why"; other unknown keys
 * are still refused by the table. */
typedef struct {
  int calls;
  char last[64], value[64];
} extra_seen_t;

static int extra_fn(void *ctx, const char *name, const char *value, char *err, size_t errlen) {
  extra_seen_t *s = ctx;
  s->calls++;
  snprintf(s->last, sizeof s->last, "%s", name);
  snprintf(s->value, sizeof s->value, "%s", value);
  if (strcmp(value, "bad") == 0) {
    snprintf(err, errlen, "%s: bad is not allowed", name);
    return -1;
  }
  return 0;
}

static int load_extra(cfg_t *c, extra_seen_t *seen, const char *text, char *err, size_t errlen) {
  char e[256];
  assert_int_equal(tt_conf_defaults(opts, NOPTS, c, e, sizeof e), 0);
  const char *path = write_tmp(text);
  tt_conf_extra_t x = {.prefix = "checks.", .fn = extra_fn, .ctx = seen};
  err[0] = '\0';
  int rc = tt_conf_load_extra(opts, NOPTS, c, path, &x, err, errlen);
  unlink(path);
  return rc;
}

static void test_extra_keys(void **state) {
  (void)state;
  cfg_t c;
  extra_seen_t seen = {0};
  char err[256];
  assert_int_equal(load_extra(&c, &seen, "port = 9\n[checks]\ndisk_used.threshold = 85%\n", err, sizeof err), 0);
  assert_int_equal(c.port, 9);
  assert_int_equal(seen.calls, 1);
  assert_string_equal(seen.last, "checks.disk_used.threshold");
  assert_string_equal(seen.value, "85%");
  assert_int_equal(load_extra(&c, &seen, "checks.units_failed.ignore = \"a, b\" # why\n", err, sizeof err), 0);
  assert_string_equal(seen.last, "checks.units_failed.ignore");
  assert_string_equal(seen.value, "a, b");
  assert_int_equal(load_extra(&c, &seen, "\n[checks]\nx.y = bad\n", err, sizeof err), TT_ECONFIG);
  assert_non_null(strstr(err, ":3: checks.x.y: bad is not allowed"));
  /* Not under the prefix: the table's own error, the hook never asked. */
  int calls = seen.calls;
  assert_int_equal(load_extra(&c, &seen, "[check]\nx = 1\n", err, sizeof err), TT_ECONFIG);
  assert_non_null(strstr(err, ":2: unknown key \"x\" in [check]"));
  assert_int_equal(seen.calls, calls);
  /* Without a hook, the same key is unknown. */
  assert_int_equal(load_text(&c, "[checks]\ndisk_used.threshold = 85%\n", err, sizeof err), TT_ECONFIG);
  assert_non_null(strstr(err, ":2: unknown key \"disk_used.threshold\" in [checks]"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_defaults),
      cmocka_unit_test(test_bad_default_is_reported),
      cmocka_unit_test(test_load_every_type),
      cmocka_unit_test(test_dotted_key_and_later_wins),
      cmocka_unit_test(test_errors),
      cmocka_unit_test(test_value_is_quoted_back_safely),
      cmocka_unit_test(test_long_line),
      cmocka_unit_test(test_nul_byte),
      cmocka_unit_test(test_unreadable),
      cmocka_unit_test(test_set),
      cmocka_unit_test(test_find_flag),
      cmocka_unit_test(test_parse_duration),
      cmocka_unit_test(test_parse_size),
      cmocka_unit_test(test_print_help),
      cmocka_unit_test(test_extra_keys),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
