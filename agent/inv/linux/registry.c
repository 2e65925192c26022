/* The Linux collectors in report order (linux.h): the inventory's, and the diagnostics
 * report's live ones in a list of their own, so that what is pushed stays the inventory. */
#include "linux.h"
#include <string.h>

static const inv_collector_t g_all[] = {
#define INV_ENTRY(t) {#t, inv_linux_##t##_cols, inv_linux_##t},
    INV_TABLES(INV_ENTRY)
};

static const inv_collector_t g_diag[] = {
    INV_DIAG_TABLES(INV_ENTRY)
#undef INV_ENTRY
};

const inv_collector_t *inv_collectors(size_t *n) {
  *n = sizeof(g_all) / sizeof(g_all[0]);
  return g_all;
}

const inv_collector_t *inv_diag_collectors(size_t *n) {
  *n = sizeof(g_diag) / sizeof(g_diag[0]);
  return g_diag;
}

const inv_collector_t *inv_collector(const char *name) {
  for (size_t i = 0; i < sizeof(g_all) / sizeof(g_all[0]); i++)
    if (strcmp(g_all[i].name, name) == 0) return &g_all[i];
  return NULL;
}
