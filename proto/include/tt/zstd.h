/* zstd for channel data: one context per channel and direction, chunk by chunk. Chunks that
 * do not shrink go raw; decompression is bounded (a bomb is refused, not inflated). */
#ifndef TT_ZSTD_H
#define TT_ZSTD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "tt/err.h"

typedef struct tt_zstd_s tt_zstd_t;

/* level: zstd level for compressing (1..19); ignored for a decompressor. */
int tt_zstd_new_compressor(tt_zstd_t **out, int level) TT_WUR;
int tt_zstd_new_decompressor(tt_zstd_t **out) TT_WUR;
void tt_zstd_free(tt_zstd_t *z);

/* Compress one chunk into out (capacity out_cap; tt_zstd_bound(in_len) is always enough).
 * If the result would not be smaller than the input, copies the input raw and sets
 * *compressed = false. *out_len is the body to send, *compressed its TT_FF_ZSTD flag. */
int tt_zstd_compress(tt_zstd_t *z, const void *in, size_t in_len, void *out, size_t out_cap,
                     size_t *out_len, bool *compressed) TT_WUR;
size_t tt_zstd_bound(size_t in_len);

/* Decompress one chunk (one whole zstd frame) into out. TT_ETOOBIG if the output would pass
 * out_cap (checked against the frame header's content size first, then while streaming),
 * TT_EZSTD on corrupt or truncated input. */
int tt_zstd_decompress(tt_zstd_t *z, const void *in, size_t in_len, void *out, size_t out_cap,
                       size_t *out_len) TT_WUR;

#endif
