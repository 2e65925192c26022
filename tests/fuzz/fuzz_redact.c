/* libFuzzer driver for redaction (agent/inv/redact.c), which every cell of every table the
 * agent sends passes through: any text, raw or made valid UTF-8 first as inv_table_add does,
 * at any output size. The output is always NUL-terminated within its buffer, whole UTF-8
 * when the input was, and redacting it again changes nothing (a mark is not a secret).
 *
 * Input: byte 0 picks the output size (0: the full INV_CELL_MAX * INV_REDACT_GROWTH, else
 * that many bytes); the rest is the text. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "redact.h"
#include "table.h"
#include "tt/utf8.h"

#define FZ_TEXT_MAX (4 * INV_CELL_MAX)
#define FZ_OUT_MAX (FZ_TEXT_MAX * INV_REDACT_GROWTH)

static char fz_clean[FZ_TEXT_MAX + 1];
static char fz_out[FZ_OUT_MAX];
static char fz_again[FZ_OUT_MAX * INV_REDACT_GROWTH];
static char fz_check[FZ_OUT_MAX];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void bounded(const char *out, size_t cap, size_t len) {
  if (len >= cap || out[len] != 0) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0 || size > FZ_TEXT_MAX + 1) return 0;
  size_t cap = data[0] ? data[0] : FZ_OUT_MAX;
  const char *text = (const char *)data + 1;
  size_t n = size - 1;
  /* Raw bytes (NULs, broken UTF-8): bounded, nothing more promised. */
  size_t len = inv_redact(fz_out, cap, text, n, NULL);
  bounded(fz_out, cap, len);
  /* As inv_table_add gives it: valid UTF-8 in, valid UTF-8 out, even when cut short. */
  size_t cn = tt_utf8_sanitize(fz_clean, sizeof(fz_clean), text, n);
  len = inv_redact(fz_out, cap, fz_clean, cn, NULL);
  bounded(fz_out, cap, len);
  if (tt_utf8_sanitize(fz_check, sizeof(fz_check), fz_out, len) != len || memcmp(fz_check, fz_out, len)) abort();
  if (cap == FZ_OUT_MAX) {
    unsigned hits = 0;
    size_t again = inv_redact(fz_again, sizeof(fz_again), fz_out, len, &hits);
    if (again != len || memcmp(fz_again, fz_out, len)) abort();
  }
  return 0;
}
