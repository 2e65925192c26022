/* libFuzzer driver for the checks' catalogue parser (proto/checks.c), which takes admins'
 * policy at the broker and the broker's pushes at every agent: any key and value, and any
 * list of settings applied at once. A value it takes comes back in its canonical form, which
 * parses again to itself; a list it refuses leaves the settings as they were, with why.
 *
 * Input: settings separated by '\n', each "key=value" (no '=': key alone, value empty). */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "tt/checks.h"

#define FZ_MAX 8192

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char fz_text[FZ_MAX + 1];
static tt_check_kv_t fz_kv[TT_POLICY_SETTINGS_MAX + 2];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > FZ_MAX) return 0;
  memcpy(fz_text, data, size);
  fz_text[size] = '\0';
  size_t n = 0;
  char *line = fz_text;
  while (line && n < sizeof(fz_kv) / sizeof(fz_kv[0])) {
    char *next = memchr(line, '\n', size - (size_t)(line - fz_text));
    size_t len = next ? (size_t)(next - line) : size - (size_t)(line - fz_text);
    char *eq = memchr(line, '=', len);
    fz_kv[n].key = (const uint8_t *)line;
    fz_kv[n].key_len = eq ? (size_t)(eq - line) : len;
    fz_kv[n].value = eq ? (const uint8_t *)eq + 1 : (const uint8_t *)"";
    fz_kv[n].value_len = eq ? len - (size_t)(eq - line) - 1 : 0;
    n++;
    line = next ? next + 1 : NULL;
  }
  /* One setting, as C strings (NULs in the input end them early: that is what a caller
   * with C strings would pass). */
  char key[256], value[TT_POLICY_VALUE_MAX + 64], canon[TT_POLICY_VALUE_MAX + 1], again[TT_POLICY_VALUE_MAX + 1];
  char err[512];
  size_t kl = fz_kv[0].key_len < sizeof(key) - 1 ? fz_kv[0].key_len : sizeof(key) - 1;
  size_t vl = fz_kv[0].value_len < sizeof(value) - 1 ? fz_kv[0].value_len : sizeof(value) - 1;
  memcpy(key, fz_kv[0].key, kl);
  key[kl] = '\0';
  memcpy(value, fz_kv[0].value, vl);
  value[vl] = '\0';
  tt_check_id_t id;
  const tt_check_setting_t *s = NULL;
  err[0] = '\0';
  if (tt_checks_parse(key, value, &id, &s, canon, sizeof(canon), err, sizeof(err)) == 0) {
    if (!s || (unsigned)id >= TT_CHECK_COUNT || strnlen(canon, sizeof(canon)) == sizeof(canon)) abort();
    tt_check_id_t id2;
    const tt_check_setting_t *s2 = NULL;
    if (tt_checks_parse(key, canon, &id2, &s2, again, sizeof(again), err, sizeof(err)) != 0) abort();
    if (id2 != id || s2 != s || strcmp(again, canon) != 0) abort();
  } else if (!err[0] || strnlen(err, sizeof(err)) == sizeof(err)) {
    abort();
  }
  /* The whole list, all or nothing. */
  static tt_checks_conf_t before, cfg;
  tt_checks_defaults(&cfg);
  memcpy(&before, &cfg, sizeof(cfg));
  err[0] = '\0';
  if (tt_checks_apply(&cfg, fz_kv, n, err, sizeof(err)) != 0) {
    if (memcmp(&before, &cfg, sizeof(cfg)) != 0 || !err[0]) abort();
  }
  return 0;
}
