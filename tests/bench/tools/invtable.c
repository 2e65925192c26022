/* The benchmarks' generated deb_packages tables (invtable.h). */
#include "invtable.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

uint64_t invtable_rng(uint64_t *s) {
  uint64_t x = *s;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  *s = x;
  return x;
}

/* Names: a few that people look for, then plausible library names. */
static void pkg_name(int i, char *out, size_t cap) {
  static const char *const known[] = {"openssl", "libssl3", "bash", "curl", "libcurl4", "openssh-client",
                                      "openssh-server", "sudo", "zstd", "systemd", "libc6", "tzdata"};
  if (i < (int)(sizeof known / sizeof known[0])) snprintf(out, cap, "%s", known[i]);
  else snprintf(out, cap, "lib%c%c%c-%d", 'a' + i % 26, 'a' + (i / 26) % 26, 'a' + (i / 676) % 26, i);
}

static void put(invtable_buf_t *b, const char *s) {
  size_t n = strlen(s);
  if (b->len + n + 1 > b->cap) {
    b->cap = (b->len + n + 1) * 2;
    b->p = realloc(b->p, b->cap);
    if (b->p == NULL) abort();
  }
  memcpy(b->p + b->len, s, n + 1);
  b->len += n;
}

/* The agent's canonical JSON of deb_packages for device d. */
void invtable_json(int d, int packages, int vary_pct, invtable_buf_t *b, unsigned char *variant) {
  uint64_t s = 0x2545F4914F6CDD1Dull ^ ((uint64_t)(d + 1) * 0x9E3779B97F4A7C15ull);
  memset(variant, 0, (size_t)packages);
  int nvary = packages * vary_pct / 100;
  for (int k = 0; k < nvary; k++) variant[invtable_rng(&s) % (uint64_t)packages] = (unsigned char)(1 + invtable_rng(&s) % INVTABLE_VARIANTS);
  b->len = 0;
  put(b, "{\"columns\":[\"name\",\"version\",\"source\",\"size\",\"arch\",\"revision\",\"status\",\"maintainer\","
         "\"section\",\"priority\",\"admindir\"],\"rows\":[");
  for (int i = 0; i < packages; i++) {
    char name[64], ver[48], row[640];
    pkg_name(i, name, sizeof name);
    int v = variant[i];
    if (v) snprintf(ver, sizeof ver, "%d.%d.%d-%d+deb12u%d", 1 + i % 7, i % 13, i % 5, 1 + i % 3, v);
    else snprintf(ver, sizeof ver, "%d.%d.%d-%d", 1 + i % 7, i % 13, i % 5, 1 + i % 3);
    snprintf(row, sizeof row,
             "%s[\"%s\",\"%s\",\"%s\",\"%d\",\"amd64\",\"%d\",\"install ok installed\","
             "\"Debian %s Maintainers <%s@packages.debian.org>\",\"%s\",\"optional\",\"/var/lib/dpkg\"]",
             i ? "," : "", name, ver, name, 100 + (i * 37) % 9000, 1 + i % 3, name, name, i % 3 ? "libs" : "utils");
    put(b, row);
  }
  put(b, "]}");
}

