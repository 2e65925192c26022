/* A fleet's deb_packages for the inventory benchmarks: the agent's canonical JSON of device
 * d's table, the same for tether-invbench (straight into a store) and tether-loadgen (over
 * the wire, as agents push it). PACKAGES packages, VARY_PCT percent of them at one of
 * INVTABLE_VARIANTS versions of their own, so the fleet holds about
 * PACKAGES * (1 + INVTABLE_VARIANTS) distinct rows, as a fleet of one image patched unevenly. */
#ifndef TT_BENCH_INVTABLE_H
#define TT_BENCH_INVTABLE_H

#include <stddef.h>
#include <stdint.h>

#define INVTABLE_VARIANTS 24

typedef struct {
  char *p;
  size_t len, cap;
} invtable_buf_t;

/* Replaces b's contents with device d's table (NUL-terminated; b->len excludes the NUL).
 * variant is scratch of PACKAGES bytes. Aborts when out of memory (a benchmark tool). */
/* xorshift64: the generator behind the tables (and invbench's device ids). */
uint64_t invtable_rng(uint64_t *s);

void invtable_json(int d, int packages, int vary_pct, invtable_buf_t *b, unsigned char *variant);

#endif
