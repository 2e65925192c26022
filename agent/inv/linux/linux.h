/* The Linux collectors, one function per osquery table; linux/registry.c lists them with
 * their columns. Files: system.c (system_info, os_version, kernel_info, uptime, cpu_info,
 * memory_info), storage.c (mounts, block_devices), net.c (interface_details,
 * interface_addresses, routes, dns_resolvers, listening_ports), packages.c (deb_packages,
 * rpm_packages), session.c (systemd_units, logged_in_users, battery). */
#ifndef AGENT_INV_LINUX_H
#define AGENT_INV_LINUX_H

#include "../collect.h"

#define INV_TABLES(X)                                                                    \
  X(system_info) X(os_version) X(kernel_info) X(uptime) X(cpu_info) X(memory_info)       \
  X(mounts) X(block_devices)                                                             \
  X(interface_details) X(interface_addresses) X(routes) X(dns_resolvers) X(listening_ports) \
  X(deb_packages) X(rpm_packages)                                                        \
  X(systemd_units) X(logged_in_users) X(battery)

/* Each collector: void inv_linux_<table>(const inv_env_t *, inv_table_t *), and its columns,
 * osquery's, NULL-terminated: const char *const inv_linux_<table>_cols[]. */
#define INV_DECLARE(t)                                          \
  void inv_linux_##t(const inv_env_t *env, inv_table_t *tab);   \
  extern const char *const inv_linux_##t##_cols[];
INV_TABLES(INV_DECLARE)
#undef INV_DECLARE

#endif
