/* The Linux collectors in report order (linux.h). */
#include "linux.h"
#include <string.h>

static const inv_collector_t g_all[] = {
#define INV_ENTRY(t) {#t, inv_linux_##t##_cols, inv_linux_##t},
    INV_TABLES(INV_ENTRY)
#undef INV_ENTRY
};

const inv_collector_t *inv_collectors(size_t *n) {
  *n = sizeof(g_all) / sizeof(g_all[0]);
  return g_all;
}

const inv_collector_t *inv_collector(const char *name) {
  for (size_t i = 0; i < sizeof(g_all) / sizeof(g_all[0]); i++)
    if (strcmp(g_all[i].name, name) == 0) return &g_all[i];
  return NULL;
}
