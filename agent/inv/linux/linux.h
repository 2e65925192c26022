/* The Linux collectors, one function per osquery table; linux/registry.c lists them with
 * their columns. Files: system.c (system_info, os_version, kernel_info, uptime, cpu_info,
 * memory_info), storage.c (mounts, block_devices), net.c (interface_details,
 * interface_addresses, routes, dns_resolvers, listening_ports), packages.c (deb_packages,
 * rpm_packages), session.c (systemd_units, logged_in_users, battery); and the diagnostics
 * report's live tables below (INV_DIAG_TABLES). */
#ifndef AGENT_INV_LINUX_H
#define AGENT_INV_LINUX_H

#include "../collect.h"

#define INV_TABLES(X)                                                                    \
  X(system_info) X(os_version) X(kernel_info) X(uptime) X(cpu_info) X(memory_info)       \
  X(mounts) X(block_devices)                                                             \
  X(interface_details) X(interface_addresses) X(routes) X(dns_resolvers) X(listening_ports) \
  X(deb_packages) X(rpm_packages)                                                        \
  X(systemd_units) X(logged_in_users) X(battery)

/* The diagnostics report's own tables (osquery has none of these; the names follow its
 * style): failed.c (systemd_failed_units), journal.c (journal_errors), pressure.c
 * (disk_pressure, memory_pressure, pressure_stall), reach.c (dns_lookups,
 * broker_connection, time_skew), reboot.c (pending_reboot). */
#define INV_DIAG_TABLES(X)                                                               \
  X(systemd_failed_units) X(journal_errors) X(disk_pressure) X(memory_pressure)          \
  X(pressure_stall) X(dns_lookups) X(broker_connection) X(time_skew) X(pending_reboot)

/* Each collector: void inv_linux_<table>(const inv_env_t *, inv_table_t *), and its columns,
 * osquery's, NULL-terminated: const char *const inv_linux_<table>_cols[]. */
#define INV_DECLARE(t)                                          \
  void inv_linux_##t(const inv_env_t *env, inv_table_t *tab);   \
  extern const char *const inv_linux_##t##_cols[];
INV_TABLES(INV_DECLARE)
INV_DIAG_TABLES(INV_DECLARE)
#undef INV_DECLARE

/* storage.c: the mounts table with each filesystem's usage from statvfs_fn (statvfs; a
 * stand-in in unit tests, where a fixture's mount points are not filesystems). */
struct statvfs;
void inv_linux_mounts_with(const inv_env_t *env, inv_table_t *tab, int (*statvfs_fn)(const char *, struct statvfs *));

/* pressure.c: the rows of disk_pressure from a mounts table (what inv_linux_disk_pressure
 * does with the machine's): filesystems written to that are 90% full or more, of space or
 * of inodes. */
#define INV_DISK_PRESSURE_PCT 90
void inv_linux_disk_pressure_from(const inv_table_t *mounts, inv_table_t *tab);

/* reach.c: resolve names, each on a thread of its own, all within timeout_ms; a lookup
 * still running then is left to finish on its own and reported as timed out. fn resolves
 * one name into addrs (", "-separated) or says why not in err; 0 or negative. */
typedef int (*inv_resolve_fn)(const char *name, char *addrs, size_t cap, char *err, size_t errlen);
int inv_resolve_getaddrinfo(const char *name, char *addrs, size_t cap, char *err, size_t errlen);
void inv_linux_dns_lookups_with(const inv_env_t *env, inv_table_t *tab, inv_resolve_fn fn);

#endif
