/* What `tether ls` keeps and shows of a device's listing: bounded however much the device
 * sends, sorted as a tree, printed like `ls -l` with every device-supplied name escaped, and
 * as JSON that stays valid whatever the names hold. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "files.h"

static Tether__FileStat entry(const char *path, Tether__FileKind kind) {
  Tether__FileStat st = TETHER__FILE_STAT__INIT;
  st.path = (ProtobufCBinaryData){strlen(path), (uint8_t *)(uintptr_t)path};
  st.kind = kind;
  return st;
}

static void test_mode_string(void **state) {
  (void)state;
  char m[11];
  files_mode_string(m, TETHER__FILE_KIND__FILE_KIND_REGULAR, 0644);
  assert_string_equal(m, "-rw-r--r--");
  files_mode_string(m, TETHER__FILE_KIND__FILE_KIND_DIR, 0750);
  assert_string_equal(m, "drwxr-x---");
  files_mode_string(m, TETHER__FILE_KIND__FILE_KIND_SYMLINK, 0777);
  assert_string_equal(m, "lrwxrwxrwx");
  files_mode_string(m, TETHER__FILE_KIND__FILE_KIND_REGULAR, 04755);
  assert_string_equal(m, "-rwsr-xr-x");
  files_mode_string(m, TETHER__FILE_KIND__FILE_KIND_DIR, 01777);
  assert_string_equal(m, "drwxrwxrwt");
  files_mode_string(m, TETHER__FILE_KIND__FILE_KIND_OTHER, 02640);
  assert_string_equal(m, "?rw-r-S---");
}

/* A device cannot make the console hold more than the limits, in entries or in bytes. */
static void test_limits(void **state) {
  (void)state;
  files_listing_t *l = files_listing_new();
  assert_non_null(l);
  Tether__FileStat st = entry("f", TETHER__FILE_KIND__FILE_KIND_REGULAR);
  for (unsigned i = 0; i < TT_FILE_LIST_MAX; i++) assert_int_equal(files_listing_add(l, &st), 0);
  assert_int_equal(files_listing_add(l, &st), TT_ETOOBIG);
  assert_int_equal(l->n, TT_FILE_LIST_MAX);
  files_listing_free(l);

  l = files_listing_new();
  char *big = malloc(TT_FILE_PATH_MAX + 1);
  assert_non_null(big);
  memset(big, 'n', TT_FILE_PATH_MAX);
  big[TT_FILE_PATH_MAX] = '\0';
  st = entry(big, TETHER__FILE_KIND__FILE_KIND_REGULAR);
  int rc = 0;
  size_t n = 0;
  while ((rc = files_listing_add(l, &st)) == 0) n++;
  assert_int_equal(rc, TT_ETOOBIG);
  assert_true(l->bytes <= TT_FILE_LIST_BYTES_MAX);
  assert_true(n < TT_FILE_LIST_MAX);
  assert_true(l->bytes + TT_FILE_PATH_MAX + 4 > TT_FILE_LIST_BYTES_MAX);
  free(big);
  assert_int_equal(files_listing_add(l, NULL), TT_EPROTO);
  files_listing_free(l);
}

static char *capture(files_listing_t *l, bool json) {
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  assert_non_null(f);
  if (json) files_listing_json(f, l);
  else files_listing_print(f, l);
  fclose(f);
  return buf;
}

static void test_print(void **state) {
  (void)state;
  files_listing_t *l = files_listing_new();
  Tether__FileStat st = entry("syslog", TETHER__FILE_KIND__FILE_KIND_REGULAR);
  st.size = 1234567;
  st.mtime_ns = 1764770400123000000ll; /* 2025-12-03T14:00:00.123Z */
  st.mode = 0640;
  st.owner = (ProtobufCBinaryData){6, (uint8_t *)"syslog"};
  st.group = (ProtobufCBinaryData){3, (uint8_t *)"adm"};
  assert_int_equal(files_listing_add(l, &st), 0);
  st = entry("app", TETHER__FILE_KIND__FILE_KIND_DIR);
  st.mode = 0755;
  st.size = 4096;
  st.owner = (ProtobufCBinaryData){4, (uint8_t *)"root"};
  assert_int_equal(files_listing_add(l, &st), 0);
  st = entry("evil\x1b[2J", TETHER__FILE_KIND__FILE_KIND_SYMLINK);
  st.link = (ProtobufCBinaryData){10, (uint8_t *)"/tmp/\xe2\x80\xaex\n"};
  st.mode = 0777;
  assert_int_equal(files_listing_add(l, &st), 0);
  files_listing_sort(l);
  char *out = capture(l, false);
  const char *want =
      "drwxr-xr-x  root   -      4096  1970-01-01T00:00:00Z  app\n"
      "lrwxrwxrwx  -      -         0  1970-01-01T00:00:00Z  evil\\x1b[2J -> /tmp/\\xe2\\x80\\xaex\\x0a\n"
      "-rw-r-----  syslog adm 1234567  2025-12-03T14:00:00Z  syslog\n";
  assert_string_equal(out, want);
  free(out);

  out = capture(l, true);
  assert_non_null(strstr(out, "{\"path\":\"app\",\"kind\":\"dir\",\"size\":4096,\"mtime\":\"1970-01-01T00:00:00.000Z\","
                              "\"mode\":\"0755\",\"owner\":\"root\",\"group\":\"\",\"link\":null}"));
  assert_non_null(strstr(out, "\"path\":\"evil\\u001b[2J\",\"kind\":\"symlink\""));
  assert_non_null(strstr(out, "\"link\":\"/tmp/\\u202ex\\u000a\""));
  assert_non_null(strstr(out, "\"mtime\":\"2025-12-03T14:00:00.123Z\",\"mode\":\"0640\""));
  assert_null(strchr(out, 0x1b));
  assert_int_equal(out[0], '[');
  assert_int_equal(strcmp(out + strlen(out) - 2, "]\n"), 0);
  free(out);
  files_listing_free(l);

  l = files_listing_new();
  out = capture(l, true);
  assert_string_equal(out, "[]\n");
  free(out);
  files_listing_free(l);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_mode_string),
      cmocka_unit_test(test_limits),
      cmocka_unit_test(test_print),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
