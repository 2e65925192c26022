/* libFuzzer driver for channel-data compression: a peer's chunk through tt_zstd_decompress
 * (which must stay within its cap, exactly), and our own chunk through compress and back.
 *
 * Input: the whole input is a peer's DATA body with TT_FF_ZSTD. Its first
 * TT_DATA_CHUNK_MAX bytes are also a chunk we send, at a level picked by byte 0.
 * Contexts live across inputs, as a channel's do across chunks. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "tt/limits.h"
#include "tt/log.h"
#include "tt/zstd.h"

#define FZ_LEVELS 19

static tt_zstd_t *fz_dec;
static tt_zstd_t *fz_enc[FZ_LEVELS + 1];
static uint8_t fz_out[TT_ZSTD_OUT_MAX];
static uint8_t fz_again[TT_ZSTD_OUT_MAX];
static uint8_t fz_packed[TT_DATA_CHUNK_MAX];

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  tt_log_set_level(TT_LOG_OFF);
  if (tt_zstd_new_decompressor(&fz_dec)) abort();
  return 0;
}

/* The cap is exact: what decoded into n bytes decodes into a cap of n, and not into n-1. */
static void fz_peer_chunk(const uint8_t *data, size_t size) {
  size_t n = 0, m = 0;
  int rc = tt_zstd_decompress(fz_dec, data, size, fz_out, sizeof(fz_out), &n);
  if (rc) {
    if (n != 0 || (rc != TT_EZSTD && rc != TT_ETOOBIG)) abort();
    return;
  }
  if (n > sizeof(fz_out)) abort();
  if (tt_zstd_decompress(fz_dec, data, size, fz_again, n, &m) || m != n ||
      (n && memcmp(fz_out, fz_again, n)))
    abort();
  if (n > 0 && tt_zstd_decompress(fz_dec, data, size, fz_again, n - 1, &m) != TT_ETOOBIG)
    abort();
}

/* Our own chunk: sent compressed only if it shrank, and always read back as itself. */
static void fz_own_chunk(const uint8_t *data, size_t size) {
  if (size > TT_DATA_CHUNK_MAX) size = TT_DATA_CHUNK_MAX;
  int level = size ? 1 + data[0] % FZ_LEVELS : 1;
  if (!fz_enc[level] && tt_zstd_new_compressor(&fz_enc[level], level)) abort();
  size_t n = 0, m = 0;
  bool compressed = true;
  if (tt_zstd_bound(size) > sizeof(fz_packed)) abort();
  if (tt_zstd_compress(fz_enc[level], data, size, fz_packed, tt_zstd_bound(size), &n, &compressed))
    abort();
  if (!compressed) {
    if (n != size || (n && memcmp(fz_packed, data, n))) abort();
    return;
  }
  if (n == 0 || n >= size) abort();
  if (tt_zstd_decompress(fz_dec, fz_packed, n, fz_again, sizeof(fz_again), &m) || m != size ||
      memcmp(fz_again, data, size))
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fz_peer_chunk(data, size);
  fz_own_chunk(data, size);
  return 0;
}
