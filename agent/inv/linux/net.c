/* Network inventory under osquery's names: interfaces and their counters, addresses, routes,
 * resolvers and listening sockets, read from /proc, /sys and /etc under env->root. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <limits.h>
#include <net/if.h>
#include <net/route.h>
#include <netinet/in.h>
#include <resolv.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include "linux.h"
#include "scan.h"
#include "tt/err.h"
#include "tt/hex.h"

/* An interface name is at most IFNAMSIZ-1 bytes; a longer entry is not an interface. */
#define NET_NAME_MAX 64
/* Processes and descriptors looked at to find who owns a listening socket: a busy server
 * has a few thousand of each; past these the rest of the sockets keep pid -1 and the table
 * says it stopped short rather than spend seconds on readlink. */
#define NET_PROCS_MAX 32768u
#define NET_FDS_MAX 262144u
/* A unix socket path as /proc/net/unix prints it (sun_path is 108 bytes, '@' for abstract). */
#define NET_UNIX_PATH_MAX 128
/* Addresses as text: an IPv6 address, '%' and an interface name. */
#define NET_ADDR_MAX (INET6_ADDRSTRLEN + 1 + NET_NAME_MAX)

/* Kernel bits that <net/if.h> and <net/route.h> do not all name (linux/if.h,
 * linux/ipv6_route.h would clash with them). */
#define NET_IFF_LOWER_UP (1u << 16)
#define NET_IFF_DORMANT (1u << 17)
#define NET_RTF_ANYCAST 0x00100000u
#define NET_RTF_LOCAL 0x80000000u
/* The listening flag of a unix socket in /proc/net/unix (__SO_ACCEPTCON). */
#define NET_UNIX_ACCEPTCON 0x00010000u

const char *const inv_linux_interface_details_cols[] = {
    "interface", "mac",      "type",    "mtu",     "metric",     "flags",
    "ipackets",  "opackets", "ibytes",  "obytes",  "ierrors",    "oerrors",
    "idrops",    "odrops",   "collisions", "last_change", "link_speed", "pci_slot", NULL};
const char *const inv_linux_interface_addresses_cols[] = {
    "interface", "address", "mask", "broadcast", "point_to_point", "type", NULL};
/* osquery's POSIX hopcount is left out: /proc does not show a route's hop limit. */
const char *const inv_linux_routes_cols[] = {
    "destination", "netmask", "gateway", "source", "flags", "interface", "mtu", "metric", "type", NULL};
/* osquery's hidden pid_with_namespace is left out: we read this namespace's resolv.conf. */
const char *const inv_linux_dns_resolvers_cols[] = {"id", "type", "address", "netmask", "options", NULL};
const char *const inv_linux_listening_ports_cols[] = {
    "pid", "port", "protocol", "family", "address", "fd", "socket", "path", "net_namespace", NULL};

/* ---- text helpers ------------------------------------------------------------------------ */

/* Split s in place into at most max blank-separated fields; *rest gets what follows them. */
static size_t split(char *s, char **f, size_t max, char **rest) {
  size_t n = 0;
  char *p = s;
  while (n < max) {
    while (inv_is_space(*p)) p++;
    if (!*p) break;
    f[n++] = p;
    while (*p && !inv_is_space(*p)) p++;
    if (*p) *p++ = 0;
  }
  while (inv_is_space(*p)) p++;
  if (rest) *rest = p;
  return n;
}

/* All of s as hex, 1 to 8 digits (a ninth is refused without looking further). */
static bool hex_u32(const char *s, uint32_t *out) { return tt_hex_u32(s, strnlen(s, 9), out) == 0; }

/* An optionally negative decimal, as sysfs prints an int. */
static bool is_int(const char *s) {
  uint64_t v;
  return inv_parse_u64(*s == '-' ? s + 1 : s, &v);
}

/* The first line of root + the path made from fmt, trimmed, into out; negative if unreadable. */
__attribute__((format(printf, 4, 5))) static int read_value(const inv_env_t *env, char *out, size_t cap,
                                                            const char *fmt, ...) {
  char rel[PATH_MAX];
  out[0] = 0;
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(rel, sizeof(rel), fmt, ap);
  va_end(ap);
  if (n < 0 || (size_t)n >= sizeof(rel)) return TT_ETOOBIG;
  return inv_read_value(env, rel, out, cap);
}

/* A 32-bit word as /proc prints a __be32 (%08X of the value in host order): the same bytes
 * back, so the address comes out right on this machine whatever its byte order. */
static bool proc_in4(const char *hex, struct in_addr *a) {
  uint32_t v;
  if (strlen(hex) != 8 || !hex_u32(hex, &v)) return false;
  memcpy(&a->s_addr, &v, 4);
  return true;
}

/* An IPv6 address as the socket tables print it: four such words. */
static bool proc_in6_words(const char *hex, struct in6_addr *a) {
  if (strlen(hex) != 32) return false;
  for (int i = 0; i < 4; i++) {
    char w[9];
    memcpy(w, hex + 8 * i, 8);
    w[8] = 0;
    uint32_t v;
    if (!hex_u32(w, &v)) return false;
    memcpy(a->s6_addr + 4 * i, &v, 4);
  }
  return true;
}

/* An IPv6 address as if_inet6 and ipv6_route print it: 32 hex digits in network order. */
static bool proc_in6_bytes(const char *hex, struct in6_addr *a) {
  return strlen(hex) == 32 && tt_unhex(a->s6_addr, sizeof(a->s6_addr), hex, 32) == 16;
}

static void ntop4_host(uint32_t host, char *out, size_t cap) {
  struct in_addr a = {.s_addr = htonl(host)};
  inet_ntop(AF_INET, &a, out, (socklen_t)cap);
}

static unsigned prefix_len4(uint32_t host_mask) {
  unsigned n = 0;
  for (; host_mask; host_mask <<= 1) n += host_mask >> 31;
  return n;
}

static uint32_t mask4(unsigned len) { return len == 0 ? 0 : len >= 32 ? 0xffffffffu : ~(0xffffffffu >> len); }

static void mask6(unsigned len, struct in6_addr *m) {
  memset(m, 0, sizeof(*m));
  for (unsigned i = 0; i < 16 && len; i++) {
    unsigned b = len >= 8 ? 8 : len;
    m->s6_addr[i] = (uint8_t)(0xff00u >> b);
    len -= b;
  }
}

/* Decimal text for a table cell. */

/* ---- interface_details ------------------------------------------------------------------- */

/* The interface's flags as the kernel reports them to getifaddrs (dev_get_flags): the sysfs
 * flags with RUNNING, LOWER_UP and DORMANT worked out from operstate and carrier, which
 * sysfs keeps apart. */
static bool iface_flags(const inv_env_t *env, const char *ifn, uint32_t *flags) {
  char v[64];
  uint32_t f;
  if (read_value(env, v, sizeof(v), "/sys/class/net/%s/flags", ifn) || strncmp(v, "0x", 2) || !hex_u32(v + 2, &f))
    return false;
  f &= ~((uint32_t)IFF_RUNNING | NET_IFF_LOWER_UP | NET_IFF_DORMANT);
  if (f & IFF_UP) {
    char oper[32], carrier[8];
    read_value(env, oper, sizeof(oper), "/sys/class/net/%s/operstate", ifn);
    read_value(env, carrier, sizeof(carrier), "/sys/class/net/%s/carrier", ifn);
    if (!strcmp(oper, "up") || !strcmp(oper, "unknown")) f |= IFF_RUNNING;
    if (!strcmp(carrier, "1")) f |= NET_IFF_LOWER_UP;
    if (!strcmp(oper, "dormant")) f |= NET_IFF_DORMANT;
  }
  *flags = f;
  return true;
}

static bool is_hex(char c) { return tt_hex_value((unsigned char)c) >= 0; }

/* "0000:00:03.0": a PCI address (the domain may have more than four digits). */
static bool is_pci_addr(const char *s) {
  size_t n = 0;
  while (is_hex(s[n])) n++;
  if (n < 4 || s[n] != ':') return false;
  s += n + 1;
  return is_hex(s[0]) && is_hex(s[1]) && s[2] == ':' && is_hex(s[3]) && is_hex(s[4]) && s[5] == '.' && is_hex(s[6]) &&
         s[7] == 0;
}

/* The PCI slot behind the interface, as ethtool's bus_info gives it: the device itself, or
 * its parent for a virtio device; "" for a virtual interface or one on another bus. */
static void pci_slot(const inv_env_t *env, const char *ifn, char *out, size_t cap) {
  char p[PATH_MAX], real[PATH_MAX];
  out[0] = 0;
  if (inv_path(env, p, sizeof(p), "/sys/class/net/%s/device", ifn) || !realpath(p, real)) return;
  for (int up = 0; up < 2; up++) {
    char *base = strrchr(real, '/');
    if (!base) return;
    if (is_pci_addr(base + 1)) {
      snprintf(out, cap, "%s", base + 1);
      return;
    }
    *base = 0;
  }
}

/* The MAC as osquery prints it: six bytes, lower case, zeros where the device has none. */
static void mac_text(const char *sysfs, char *out, size_t cap) {
  uint8_t m[6] = {0};
  for (int i = 0; i < 6 && tt_unhex(m + i, 1, sysfs, 2) == 1; i++) {
    sysfs += 2;
    if (*sysfs != ':') break;
    sysfs++;
  }
  tt_hex_sep(out, cap, m, 6, ':');
}

/* A sysfs integer of the interface, or "" if it is missing or not a number. */
static void iface_int(const inv_env_t *env, const char *ifn, const char *file, char *out, size_t cap) {
  if (read_value(env, out, cap, "/sys/class/net/%s/%s", ifn, file) || !is_int(out)) out[0] = 0;
}

static const char *const g_stats[] = {"rx_packets", "tx_packets", "rx_bytes",   "tx_bytes",  "rx_errors",
                                      "tx_errors",  "rx_dropped", "tx_dropped", "collisions"};
#define NSTATS (sizeof(g_stats) / sizeof(g_stats[0]))

/* One row per entry of /sys/class/net that has a type (bonding_masters and the like do not). */
void inv_linux_interface_details(const inv_env_t *env, inv_table_t *tab) {
  char dir[PATH_MAX];
  if (inv_path(env, dir, sizeof(dir), "/sys/class/net")) {
    inv_table_fail(tab, "root path too long");
    return;
  }
  DIR *d = opendir(dir);
  if (!d) {
    inv_table_fail(tab, "cannot list /sys/class/net: %s", strerror(errno));
    return;
  }
  struct dirent *e;
  while ((e = readdir(d))) {
    const char *ifn = e->d_name;
    if (ifn[0] == '.' || strlen(ifn) >= NET_NAME_MAX) continue;
    char type[32], addr[128], mac[32], mtu[32], flags[32], speed[32], slot[64], stats[NSTATS][32];
    if (read_value(env, type, sizeof(type), "/sys/class/net/%s/type", ifn)) continue;
    if (!is_int(type)) type[0] = 0;
    read_value(env, addr, sizeof(addr), "/sys/class/net/%s/address", ifn);
    mac_text(addr, mac, sizeof(mac));
    iface_int(env, ifn, "mtu", mtu, sizeof(mtu));
    uint32_t f;
    flags[0] = 0;
    if (iface_flags(env, ifn, &f)) inv_u64_str(flags, sizeof(flags), f);
    /* ethtool's "unknown" speed reads as -1 (or fails while the link is down): osquery's 0. */
    iface_int(env, ifn, "speed", speed, sizeof(speed));
    if (!speed[0] || speed[0] == '-') snprintf(speed, sizeof(speed), "0");
    for (size_t i = 0; i < NSTATS; i++) {
      char sub[64];
      snprintf(sub, sizeof(sub), "statistics/%s", g_stats[i]);
      iface_int(env, ifn, sub, stats[i], sizeof(stats[i]));
    }
    pci_slot(env, ifn, slot, sizeof(slot));
    /* Linux has no interface metric (SIOCGIFMETRIC is always 0) and keeps no time of the last
     * change: osquery's 0 and -1. */
    const char *row[] = {ifn,      mac,      type,     mtu,      "0",      flags,    stats[0], stats[1], stats[2],
                         stats[3], stats[4], stats[5], stats[6], stats[7], stats[8], "-1",     speed,    slot};
    if (inv_table_add(tab, row)) break;
  }
  closedir(d);
}

/* ---- interface_addresses ----------------------------------------------------------------- */

static int add_addr(inv_table_t *tab, const char *ifn, const char *addr, const char *mask, const char *brd,
                    const char *ptp) {
  /* Linux does not say how an address was configured: osquery's "unknown". */
  const char *row[] = {ifn, addr, mask, brd, ptp, "unknown"};
  return inv_table_add(tab, row);
}

/* IPv6 from /proc/net/if_inet6 ("addr ifindex prefixlen scope flags name"); no file means
 * IPv6 is off. Link-local addresses carry their scope as getnameinfo prints them. */
static void addrs_v6(const inv_env_t *env, inv_table_t *tab) {
  tt_buf_t b;
  int rc = inv_read(env, "/proc/net/if_inet6", &b);
  if (rc == -ENOENT) return;
  if (rc) {
    inv_table_fail(tab, "cannot read /proc/net/if_inet6: %s", tt_strerror(rc));
    return;
  }
  char *cur = (char *)b.data + b.off, *end = cur + b.len, *line;
  while ((line = inv_next_line(&cur, end))) {
    char *f[6];
    uint32_t plen;
    struct in6_addr a, m;
    if (split(line, f, 6, NULL) < 6 || !proc_in6_bytes(f[0], &a) || !hex_u32(f[2], &plen) || plen > 128 ||
        strlen(f[5]) >= NET_NAME_MAX)
      continue;
    char addr[NET_ADDR_MAX], mask[INET6_ADDRSTRLEN];
    inet_ntop(AF_INET6, &a, addr, sizeof(addr));
    if (IN6_IS_ADDR_LINKLOCAL(&a)) snprintf(addr + strlen(addr), sizeof(addr) - strlen(addr), "%%%s", f[5]);
    mask6(plen, &m);
    inet_ntop(AF_INET6, &m, mask, sizeof(mask));
    if (add_addr(tab, f[5], addr, mask, "", "")) break;
  }
  tt_buf_free(&b);
}

/* IPv4 on this machine: getifaddrs, which asks the kernel over netlink. */
static void addrs_v4_live(inv_table_t *tab) {
  struct ifaddrs *all;
  if (getifaddrs(&all)) {
    inv_table_fail(tab, "getifaddrs: %s", strerror(errno));
    return;
  }
  for (struct ifaddrs *i = all; i; i = i->ifa_next) {
    if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET || !i->ifa_name) continue;
    char addr[INET_ADDRSTRLEN] = "", mask[INET_ADDRSTRLEN] = "", dst[INET_ADDRSTRLEN] = "";
    inet_ntop(AF_INET, &((struct sockaddr_in *)(void *)i->ifa_addr)->sin_addr, addr, sizeof(addr));
    if (i->ifa_netmask && i->ifa_netmask->sa_family == AF_INET)
      inet_ntop(AF_INET, &((struct sockaddr_in *)(void *)i->ifa_netmask)->sin_addr, mask, sizeof(mask));
    if (i->ifa_dstaddr && i->ifa_dstaddr->sa_family == AF_INET)
      inet_ntop(AF_INET, &((struct sockaddr_in *)(void *)i->ifa_dstaddr)->sin_addr, dst, sizeof(dst));
    bool brd = (i->ifa_flags & IFF_BROADCAST) != 0;
    if (add_addr(tab, i->ifa_name, addr, mask, brd ? dst : "", brd ? "" : dst)) break;
  }
  freeifaddrs(all);
}

typedef struct {
  uint32_t net, mask; /* host order */
  char ifn[NET_NAME_MAX];
} net_route4_t;

typedef struct {
  uint32_t *v;
  size_t n, cap;
} net_u32s_t;

static bool u32s_push(net_u32s_t *s, uint32_t v) {
  if (s->n == s->cap) {
    if (s->cap >= INV_ROWS_MAX) return false;
    size_t cap = s->cap ? s->cap * 2 : 16;
    uint32_t *nv = realloc(s->v, cap * sizeof(*nv));
    if (!nv) return false;
    s->v = nv;
    s->cap = cap;
  }
  s->v[s->n++] = v;
  return true;
}

static int cmp_u32(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return x < y ? -1 : x > y;
}

static bool u32s_has(const net_u32s_t *s, uint32_t v) {
  return s->n && bsearch(&v, s->v, s->n, sizeof(v), cmp_u32) != NULL;
}

/* The connected (gatewayless, usable) routes of /proc/net/route: which interface holds
 * which subnet. */
static int connected_routes(const inv_env_t *env, net_route4_t **out, size_t *n) {
  tt_buf_t b;
  *out = NULL;
  *n = 0;
  int rc = inv_read(env, "/proc/net/route", &b);
  if (rc) return rc;
  size_t cap = 0;
  char *cur = (char *)b.data + b.off, *end = cur + b.len, *line;
  inv_next_line(&cur, end); /* the header */
  while ((line = inv_next_line(&cur, end))) {
    char *f[8];
    uint32_t flags;
    struct in_addr dst, mask;
    if (split(line, f, 8, NULL) < 8 || !proc_in4(f[1], &dst) || !hex_u32(f[3], &flags) || !proc_in4(f[7], &mask) ||
        (flags & (RTF_GATEWAY | RTF_REJECT)) || !strcmp(f[0], "*") || strlen(f[0]) >= NET_NAME_MAX)
      continue;
    if (*n == cap) {
      if (cap >= INV_ROWS_MAX) break;
      size_t nc = cap ? cap * 2 : 8;
      net_route4_t *nr = realloc(*out, nc * sizeof(*nr));
      if (!nr) break;
      *out = nr;
      cap = nc;
    }
    net_route4_t *r = &(*out)[(*n)++];
    r->net = ntohl(dst.s_addr);
    r->mask = ntohl(mask.s_addr);
    snprintf(r->ifn, sizeof(r->ifn), "%s", f[0]);
  }
  tt_buf_free(&b);
  return 0;
}

/* The loopback interface's name: the first (by name) with IFF_LOOPBACK in sysfs. */
static void loopback_name(const inv_env_t *env, char *out, size_t cap) {
  char dir[PATH_MAX];
  out[0] = 0;
  if (inv_path(env, dir, sizeof(dir), "/sys/class/net")) return;
  DIR *d = opendir(dir);
  if (!d) return;
  struct dirent *e;
  while ((e = readdir(d))) {
    uint32_t f;
    if (e->d_name[0] == '.' || strlen(e->d_name) >= NET_NAME_MAX || !iface_flags(env, e->d_name, &f) ||
        !(f & IFF_LOOPBACK))
      continue;
    if (!out[0] || strcmp(e->d_name, out) < 0) snprintf(out, cap, "%s", e->d_name);
  }
  closedir(d);
}

/* IPv4 from files, for a captured root, where no kernel can be asked. /proc/net/fib_trie
 * names each local address ("/32 host LOCAL"), each subnet broadcast ("/32 link BROADCAST")
 * and loopback subnets ("/8 host LOCAL"); /proc/net/route says which interface holds the
 * subnet an address is in. An address in no known subnet keeps an empty interface. */
static void addrs_v4_files(const inv_env_t *env, inv_table_t *tab) {
  net_u32s_t local = {0}, brd = {0}, lo_net = {0}, lo_len = {0};
  net_route4_t *routes = NULL;
  size_t nroutes = 0;
  tt_buf_t b;
  int rc = inv_read(env, "/proc/net/fib_trie", &b);
  if (rc) {
    inv_table_fail(tab, "cannot read /proc/net/fib_trie: %s", tt_strerror(rc));
    return;
  }
  char *cur = (char *)b.data + b.off, *end = cur + b.len, *line;
  struct in_addr leaf = {0};
  bool have_leaf = false;
  while ((line = inv_next_line(&cur, end))) {
    char *s = inv_trim(line), *f[3];
    if (!strncmp(s, "|-- ", 4)) {
      have_leaf = inet_pton(AF_INET, s + 4, &leaf) == 1;
      continue;
    }
    if (s[0] != '/') {
      have_leaf = false; /* a subtree ("+-- 10.0.0.0/8 ...") or a table ("Local:") */
      continue;
    }
    uint64_t len;
    if (!have_leaf || split(s + 1, f, 3, NULL) < 3 || !inv_parse_u64(f[0], &len) || len > 32) continue;
    uint32_t a = ntohl(leaf.s_addr);
    if (!strcmp(f[2], "LOCAL") && len == 32) {
      if (!u32s_push(&local, a)) break;
    } else if (!strcmp(f[2], "LOCAL")) {
      if (!u32s_push(&lo_net, a) || !u32s_push(&lo_len, (uint32_t)len)) break;
    } else if (!strcmp(f[2], "BROADCAST") && len == 32) {
      if (!u32s_push(&brd, a)) break;
    }
  }
  tt_buf_free(&b);
  if ((rc = connected_routes(env, &routes, &nroutes))) {
    inv_table_fail(tab, "cannot read /proc/net/route: %s", tt_strerror(rc));
    goto out;
  }
  /* Main and Local both list the same addresses when no policy routing splits them. */
  if (local.n) qsort(local.v, local.n, sizeof(uint32_t), cmp_u32);
  if (brd.n) qsort(brd.v, brd.n, sizeof(uint32_t), cmp_u32);
  char lo[NET_NAME_MAX] = "";
  bool lo_known = false;
  for (size_t i = 0; i < local.n; i++) {
    uint32_t a = local.v[i];
    if (i > 0 && a == local.v[i - 1]) continue;
    const char *ifn = "";
    int len = -1;
    for (size_t r = 0; r < nroutes; r++) {
      int l = (int)prefix_len4(routes[r].mask);
      if ((a & routes[r].mask) == routes[r].net && l > len) {
        len = l;
        ifn = routes[r].ifn;
      }
    }
    for (size_t r = 0; len < 0 && r < lo_net.n; r++) {
      if ((a & mask4(lo_len.v[r])) != (lo_net.v[r] & mask4(lo_len.v[r]))) continue;
      if (!lo_known) loopback_name(env, lo, sizeof(lo));
      lo_known = true;
      len = (int)lo_len.v[r];
      ifn = lo;
    }
    char addr[INET_ADDRSTRLEN], mask[INET_ADDRSTRLEN] = "", bcast[INET_ADDRSTRLEN] = "", ptp[INET_ADDRSTRLEN] = "";
    uint32_t flags;
    ntop4_host(a, addr, sizeof(addr));
    if (len >= 0) ntop4_host(mask4((unsigned)len), mask, sizeof(mask));
    /* As getifaddrs fills them: the subnet's broadcast on a broadcast interface; elsewhere
     * (loopback) the address itself as the other end, which is what glibc reports. */
    if (len >= 0 && ifn[0] && iface_flags(env, ifn, &flags)) {
      uint32_t bc = a | ~mask4((unsigned)len);
      if (!(flags & IFF_BROADCAST))
        snprintf(ptp, sizeof(ptp), "%s", addr);
      else if (len < 31 && u32s_has(&brd, bc))
        ntop4_host(bc, bcast, sizeof(bcast));
    }
    if (add_addr(tab, ifn, addr, mask, bcast, ptp)) break;
  }
out:
  free(routes);
  free(local.v);
  free(brd.v);
  free(lo_net.v);
  free(lo_len.v);
}

/* On the machine itself (root "") IPv4 comes from getifaddrs; under any other root, from the
 * files a fixture can hold (root "/" reads this machine's files the same way). */
void inv_linux_interface_addresses(const inv_env_t *env, inv_table_t *tab) {
  if (!env->root || !env->root[0])
    addrs_v4_live(tab);
  else
    addrs_v4_files(env, tab);
  addrs_v6(env, tab);
}

/* ---- routes ------------------------------------------------------------------------------ */

static int add_route(inv_table_t *tab, const char *dst, unsigned len, const char *gw, uint32_t flags, const char *ifn,
                     const char *mtu, uint64_t metric, const char *type) {
  char l[8], fl[16], m[24];
  inv_u64_str(l, sizeof(l), len);
  inv_u64_str(fl, sizeof(fl), flags);
  inv_u64_str(m, sizeof(m), metric);
  /* No /proc file shows a route's preferred source. */
  const char *row[] = {dst, l, gw, "", fl, ifn, mtu, m, type};
  return inv_table_add(tab, row);
}

/* The main table's IPv4 routes ("Iface Destination Gateway Flags RefCnt Use Metric Mask MTU
 * Window IRTT"). flags are the RTF_ bits /proc shows (osquery shows netlink's, usually 0);
 * every usable route is "gateway", as osquery calls any unicast route. */
static void routes_v4(const inv_env_t *env, inv_table_t *tab) {
  tt_buf_t b;
  int rc = inv_read(env, "/proc/net/route", &b);
  if (rc) {
    inv_table_fail(tab, "cannot read /proc/net/route: %s", tt_strerror(rc));
    return;
  }
  char *cur = (char *)b.data + b.off, *end = cur + b.len, *line;
  inv_next_line(&cur, end);
  while ((line = inv_next_line(&cur, end))) {
    char *f[9];
    uint32_t flags;
    uint64_t metric, mtu;
    struct in_addr dst, gw, mask;
    if (split(line, f, 9, NULL) < 9 || !proc_in4(f[1], &dst) || !proc_in4(f[2], &gw) || !hex_u32(f[3], &flags) ||
        !inv_parse_u64(f[6], &metric) || !proc_in4(f[7], &mask) || !inv_parse_u64(f[8], &mtu))
      continue;
    char d[INET_ADDRSTRLEN], g[INET_ADDRSTRLEN] = "";
    inet_ntop(AF_INET, &dst, d, sizeof(d));
    if (flags & RTF_GATEWAY) inet_ntop(AF_INET, &gw, g, sizeof(g));
    if (add_route(tab, d, prefix_len4(ntohl(mask.s_addr)), g, flags, strcmp(f[0], "*") ? f[0] : "", f[8], metric,
                  (flags & RTF_REJECT) ? "other" : "gateway"))
      break;
  }
  tt_buf_free(&b);
}

/* Every IPv6 route ("dst dst_len src src_len next_hop metric refcnt use flags dev"), less the
 * kernel's placeholder null entry (::/0 reject via lo, metric 0xffffffff), which netlink, and
 * so osquery, never shows. No file means IPv6 is off. */
static void routes_v6(const inv_env_t *env, inv_table_t *tab) {
  tt_buf_t b;
  int rc = inv_read(env, "/proc/net/ipv6_route", &b);
  if (rc == -ENOENT) return;
  if (rc) {
    inv_table_fail(tab, "cannot read /proc/net/ipv6_route: %s", tt_strerror(rc));
    return;
  }
  char *cur = (char *)b.data + b.off, *end = cur + b.len, *line;
  while ((line = inv_next_line(&cur, end))) {
    char *f[10];
    uint32_t len, metric, flags;
    struct in6_addr dst, gw;
    if (split(line, f, 10, NULL) < 10 || !proc_in6_bytes(f[0], &dst) || !hex_u32(f[1], &len) || len > 128 ||
        !proc_in6_bytes(f[4], &gw) || !hex_u32(f[5], &metric) || !hex_u32(f[8], &flags))
      continue;
    if (len == 0 && IN6_IS_ADDR_UNSPECIFIED(&dst) && (flags & RTF_REJECT) && metric == 0xffffffffu &&
        !strcmp(f[9], "lo"))
      continue;
    char d[INET6_ADDRSTRLEN], g[INET6_ADDRSTRLEN] = "";
    inet_ntop(AF_INET6, &dst, d, sizeof(d));
    if (!IN6_IS_ADDR_UNSPECIFIED(&gw)) inet_ntop(AF_INET6, &gw, g, sizeof(g));
    const char *type = (flags & NET_RTF_LOCAL)     ? "local"
                       : (flags & NET_RTF_ANYCAST) ? "anycast"
                       : (flags & RTF_REJECT) || IN6_IS_ADDR_MULTICAST(&dst) ? "other"
                                                                             : "gateway";
    /* The route's MTU is not in the file: 0, osquery's value for none set. */
    if (add_route(tab, d, len, g, flags, f[9], "0", metric, type)) break;
  }
  tt_buf_free(&b);
}

void inv_linux_routes(const inv_env_t *env, inv_table_t *tab) {
  routes_v4(env, tab);
  routes_v6(env, tab);
}

/* ---- dns_resolvers ----------------------------------------------------------------------- */

/* The resolver's option bits as glibc's res_init sets them from an "options" word. */
static uint32_t resolv_option(const char *w) {
  static const struct {
    const char *name;
    uint32_t bit;
  } opts[] = {
      {"rotate", RES_ROTATE},           {"edns0", RES_USE_EDNS0},       {"single-request-reopen", RES_SNGLKUPREOP},
      {"single-request", RES_SNGLKUP},  {"no_tld_query", RES_NOTLDQUERY}, {"no-tld-query", RES_NOTLDQUERY},
      {"use-vc", RES_USEVC},
#ifdef RES_NORELOAD
      {"no-reload", RES_NORELOAD},
#endif
#ifdef RES_TRUSTAD
      {"trust-ad", RES_TRUSTAD},
#endif
#ifdef RES_NOAAAA
      {"no-aaaa", RES_NOAAAA},
#endif
  };
  for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++)
    if (!strcmp(w, opts[i].name)) return opts[i].bit;
  return 0;
}

/* A nameserver as glibc takes it: IPv4, or IPv6 with an optional %scope; normalised. */
static bool resolver_addr(const char *s, char *out, size_t cap, bool *v6) {
  struct in_addr a4;
  struct in6_addr a6;
  char host[INET6_ADDRSTRLEN + 1];
  const char *pct = strchr(s, '%');
  size_t n = pct ? (size_t)(pct - s) : strlen(s);
  if (inet_pton(AF_INET, s, &a4) == 1) {
    *v6 = false;
    inet_ntop(AF_INET, &a4, out, (socklen_t)cap);
    return true;
  }
  if (n >= sizeof(host)) return false;
  memcpy(host, s, n);
  host[n] = 0;
  if (inet_pton(AF_INET6, host, &a6) != 1 || (pct && (!pct[1] || strlen(pct) >= NET_NAME_MAX))) return false;
  *v6 = true;
  inet_ntop(AF_INET6, &a6, out, (socklen_t)cap);
  if (pct) snprintf(out + strlen(out), cap - strlen(out), "%s", pct);
  return true;
}

/* The natural mask glibc gives a sortlist entry written without one. */
static unsigned classful_len(uint32_t host) {
  return (host >> 31) == 0 ? 8 : (host >> 30) == 2 ? 16 : 24;
}

typedef struct {
  char addr[INET_ADDRSTRLEN];
  unsigned len;
} net_sort_t;

/* /etc/resolv.conf read the way glibc's res_init reads it: the first MAXNS nameservers, the
 * last domain or search line, the first MAXRESOLVSORT sortlist entries, and the options bits
 * (RES_DEFAULT and RES_INIT, plus each known word) on every row, as osquery gives them. */
void inv_linux_dns_resolvers(const inv_env_t *env, inv_table_t *tab) {
  tt_buf_t b;
  int rc = inv_read(env, "/etc/resolv.conf", &b);
  if (rc) {
    inv_table_fail(tab, "cannot read /etc/resolv.conf: %s", tt_strerror(rc));
    return;
  }
  char ns[MAXNS][NET_ADDR_MAX];
  bool ns6[MAXNS];
  size_t nns = 0, nsearch = 0, nsort = 0;
  char *search[MAXDNSRCH];
  net_sort_t sort[MAXRESOLVSORT];
  uint32_t options = RES_DEFAULT | RES_INIT;
  char *cur = (char *)b.data + b.off, *end = cur + b.len, *line;
  while ((line = inv_next_line(&cur, end))) {
    char *f[2], *rest;
    /* glibc matches a keyword only at the start of its line. */
    if (line[0] == ';' || line[0] == '#' || inv_is_space(line[0]) || split(line, f, 1, &rest) < 1) continue;
    if (!strcmp(f[0], "nameserver")) {
      char *w[1];
      if (nns < MAXNS && split(rest, w, 1, NULL) == 1 && resolver_addr(w[0], ns[nns], sizeof(ns[nns]), &ns6[nns])) nns++;
    } else if (!strcmp(f[0], "domain") || !strcmp(f[0], "search")) {
      /* The last of these lines wins; "domain" takes one name. */
      nsearch = split(rest, search, !strcmp(f[0], "domain") ? 1 : MAXDNSRCH, NULL);
    } else if (!strcmp(f[0], "sortlist")) {
      char *w[MAXRESOLVSORT];
      size_t nw = split(rest, w, MAXRESOLVSORT, NULL);
      for (size_t i = 0; i < nw && nsort < MAXRESOLVSORT; i++) {
        char *slash = strpbrk(w[i], "/&");
        struct in_addr a, m;
        if (slash) *slash = 0;
        if (inet_pton(AF_INET, w[i], &a) != 1) continue;
        if (slash && inet_pton(AF_INET, slash + 1, &m) != 1) continue;
        inet_ntop(AF_INET, &a, sort[nsort].addr, sizeof(sort[nsort].addr));
        sort[nsort++].len = slash ? prefix_len4(ntohl(m.s_addr)) : classful_len(ntohl(a.s_addr));
      }
    } else if (!strcmp(f[0], "options")) {
      char *w[32];
      size_t nw = split(rest, w, 32, NULL);
      for (size_t i = 0; i < nw; i++) options |= resolv_option(w[i]);
    }
  }
  char opt[16], id[16], len[8];
  inv_u64_str(opt, sizeof(opt), options);
  for (size_t i = 0; i < nns; i++) {
    inv_u64_str(id, sizeof(id), i);
    const char *row[] = {id, "nameserver", ns[i], ns6[i] ? "128" : "32", opt};
    if (inv_table_add(tab, row)) goto out;
  }
  for (size_t i = 0; i < nsort; i++) {
    inv_u64_str(id, sizeof(id), i);
    inv_u64_str(len, sizeof(len), sort[i].len);
    const char *row[] = {id, "sortlist", sort[i].addr, len, opt};
    if (inv_table_add(tab, row)) goto out;
  }
  for (size_t i = 0; i < nsearch; i++) {
    inv_u64_str(id, sizeof(id), i);
    const char *row[] = {id, "search", search[i], "", opt};
    if (inv_table_add(tab, row)) goto out;
  }
out:
  tt_buf_free(&b);
}

/* ---- listening_ports --------------------------------------------------------------------- */

typedef struct {
  uint64_t inode;
  long pid, fd; /* -1 until a process is found holding it */
  int family, protocol;
  unsigned port;
  char addr[INET6_ADDRSTRLEN];
  char path[NET_UNIX_PATH_MAX];
} net_sock_t;

typedef struct {
  net_sock_t *v;
  size_t n, cap;
} net_socks_t;

static net_sock_t *socks_new(net_socks_t *s) {
  if (s->n == s->cap) {
    if (s->cap >= INV_ROWS_MAX) return NULL;
    size_t cap = s->cap ? s->cap * 2 : 32;
    net_sock_t *nv = realloc(s->v, cap * sizeof(*nv));
    if (!nv) return NULL;
    s->v = nv;
    s->cap = cap;
  }
  net_sock_t *k = &s->v[s->n++];
  memset(k, 0, sizeof(*k));
  k->pid = k->fd = -1;
  return k;
}

/* "ADDR:PORT" of a socket table. */
static bool sock_endpoint(char *s, int family, char *addr, size_t cap, unsigned *port) {
  char *colon = strchr(s, ':');
  uint32_t p;
  if (!colon || !hex_u32(colon + 1, &p) || p > 0xffff) return false;
  *colon = 0;
  *port = p;
  if (family == AF_INET) {
    struct in_addr a;
    if (!proc_in4(s, &a)) return false;
    if (addr) inet_ntop(AF_INET, &a, addr, (socklen_t)cap);
  } else {
    struct in6_addr a;
    if (!proc_in6_words(s, &a)) return false;
    if (addr) inet_ntop(AF_INET6, &a, addr, (socklen_t)cap);
  }
  return true;
}

/* tcp, tcp6, udp, udp6 ("sl local rem st tx:rx tr:when retrnsmt uid timeout inode ..."):
 * TCP sockets in LISTEN (0A), UDP sockets bound to a port and connected to none. A missing
 * IPv6 file is IPv6 turned off: nothing to add. */
static int inet_socks(const inv_env_t *env, const char *file, int family, int protocol, net_socks_t *out) {
  char path[64];
  snprintf(path, sizeof(path), "/proc/net/%s", file);
  tt_buf_t b;
  int rc = inv_read(env, path, &b);
  if (rc == -ENOENT && family == AF_INET6) return 0;
  if (rc) return rc;
  char *cur = (char *)b.data + b.off, *end = cur + b.len, *line;
  inv_next_line(&cur, end);
  while ((line = inv_next_line(&cur, end))) {
    char *f[10], addr[INET6_ADDRSTRLEN];
    unsigned lport, rport;
    uint32_t st;
    uint64_t inode;
    if (split(line, f, 10, NULL) < 10 || !sock_endpoint(f[1], family, addr, sizeof(addr), &lport) ||
        !sock_endpoint(f[2], family, NULL, 0, &rport) || !hex_u32(f[3], &st) || !inv_parse_u64(f[9], &inode))
      continue;
    if (protocol == IPPROTO_TCP ? st != 0x0A : (rport != 0 || lport == 0)) continue;
    net_sock_t *k = socks_new(out);
    if (!k) break;
    k->inode = inode;
    k->family = family;
    k->protocol = protocol;
    k->port = lport;
    snprintf(k->addr, sizeof(k->addr), "%s", addr);
  }
  tt_buf_free(&b);
  return 0;
}

/* /proc/net/unix ("Num RefCount Protocol Flags Type St Inode Path"): named sockets that
 * listen (stream, seqpacket) or are bound for datagrams; the path is the rest of the line. */
static int unix_socks(const inv_env_t *env, net_socks_t *out) {
  tt_buf_t b;
  int rc = inv_read(env, "/proc/net/unix", &b);
  if (rc == -ENOENT) return 0;
  if (rc) return rc;
  char *cur = (char *)b.data + b.off, *end = cur + b.len, *line;
  inv_next_line(&cur, end);
  while ((line = inv_next_line(&cur, end))) {
    char *f[7], *path;
    uint32_t proto, flags, type;
    uint64_t inode;
    if (split(line, f, 7, &path) < 7 || !hex_u32(f[2], &proto) || !hex_u32(f[3], &flags) || !hex_u32(f[4], &type) ||
        !inv_parse_u64(f[6], &inode))
      continue;
    path = inv_trim(path);
    if (!path[0] || !((flags & NET_UNIX_ACCEPTCON) || type == SOCK_DGRAM)) continue;
    net_sock_t *k = socks_new(out);
    if (!k) break;
    k->inode = inode;
    k->family = AF_UNIX;
    k->protocol = (int)proto;
    snprintf(k->path, sizeof(k->path), "%s", path);
  }
  tt_buf_free(&b);
  return 0;
}

static int cmp_sock_inode(const void *a, const void *b) {
  uint64_t x = ((const net_sock_t *)a)->inode, y = ((const net_sock_t *)b)->inode;
  return x < y ? -1 : x > y;
}

static int cmp_long(const void *a, const void *b) {
  long x = *(const long *)a, y = *(const long *)b;
  return x < y ? -1 : x > y;
}

/* "socket:[12345]" */
static bool socket_link(const char *s, uint64_t *inode) {
  if (strncmp(s, "socket:[", 8)) return false;
  char num[24];
  const char *close = strchr(s + 8, ']');
  if (!close || close[1] || (size_t)(close - s - 8) >= sizeof(num)) return false;
  memcpy(num, s + 8, (size_t)(close - s - 8));
  num[close - s - 8] = 0;
  return inv_parse_u64(num, inode);
}

/* Who holds each socket: the lowest pid (and its lowest fd) whose /proc/PID/fd has a link to
 * it, so the same machine always gives the same answer. Processes are walked in pid order
 * and the walk ends once every socket is placed. Processes we may not read are skipped. */
static void owners(const inv_env_t *env, net_socks_t *s, inv_table_t *tab) {
  char dir[PATH_MAX];
  if (!s->n || inv_path(env, dir, sizeof(dir), "/proc")) return;
  DIR *d = opendir(dir);
  if (!d) return;
  long *pids = NULL;
  size_t npids = 0, cap = 0, placed = 0, fds = 0;
  bool short_pids = false, short_fds = false;
  struct dirent *e;
  while ((e = readdir(d))) {
    uint64_t pid;
    if (!inv_parse_u64(e->d_name, &pid) || pid > LONG_MAX) continue;
    if (npids == NET_PROCS_MAX) {
      short_pids = true;
      break;
    }
    if (npids == cap) {
      size_t nc = cap ? cap * 2 : 256;
      long *np = realloc(pids, nc * sizeof(*np));
      if (!np) break;
      pids = np;
      cap = nc;
    }
    pids[npids++] = (long)pid;
  }
  closedir(d);
  if (npids) qsort(pids, npids, sizeof(long), cmp_long);
  qsort(s->v, s->n, sizeof(net_sock_t), cmp_sock_inode);
  for (size_t i = 0; i < npids && placed < s->n && !short_fds; i++) {
    char fdp[PATH_MAX];
    if (inv_path(env, fdp, sizeof(fdp), "/proc/%ld/fd", pids[i])) continue;
    int dfd = open(fdp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) continue;
    DIR *fd_dir = fdopendir(dfd);
    if (!fd_dir) {
      close(dfd);
      continue;
    }
    while ((e = readdir(fd_dir))) {
      uint64_t fdn, inode;
      if (!inv_parse_u64(e->d_name, &fdn)) continue;
      if (++fds > NET_FDS_MAX) {
        short_fds = true;
        break;
      }
      char link[64];
      ssize_t n = readlinkat(dirfd(fd_dir), e->d_name, link, sizeof(link) - 1);
      if (n <= 0) continue;
      link[n] = 0;
      if (!socket_link(link, &inode)) continue;
      net_sock_t key = {.inode = inode};
      net_sock_t *k = bsearch(&key, s->v, s->n, sizeof(net_sock_t), cmp_sock_inode);
      /* Sockets can share an inode only across namespaces we do not read; first is fine. */
      if (!k) continue;
      if (k->pid < 0) {
        k->pid = pids[i];
        k->fd = (long)fdn;
        placed++;
      } else if (k->pid == pids[i] && (long)fdn < k->fd) {
        k->fd = (long)fdn;
      }
    }
    closedir(fd_dir);
  }
  free(pids);
  if (short_pids || short_fds)
    inv_table_fail(tab, "stopped after %u processes or %u descriptors: some sockets have pid -1",
                   NET_PROCS_MAX, NET_FDS_MAX);
}

/* The network namespace these socket tables belong to (our own): "net:[4026531840]". */
static void net_namespace(const inv_env_t *env, char *out, size_t cap) {
  char p[PATH_MAX], link[64];
  out[0] = 0;
  if (inv_path(env, p, sizeof(p), "/proc/self/ns/net")) return;
  ssize_t n = readlink(p, link, sizeof(link) - 1);
  if (n <= 0) return;
  link[n] = 0;
  uint64_t ino;
  char *close = strchr(link, ']');
  if (strncmp(link, "net:[", 5) || !close || close[1]) return;
  *close = 0;
  if (inv_parse_u64(link + 5, &ino)) inv_u64_str(out, cap, ino);
}

/* Listening TCP, bound UDP and listening or bound named unix sockets of this network
 * namespace (osquery walks every namespace; we see ours), each with the process that holds
 * it or pid -1. */
void inv_linux_listening_ports(const inv_env_t *env, inv_table_t *tab) {
  static const struct {
    const char *file;
    int family, protocol;
  } tables[] = {{"tcp", AF_INET, IPPROTO_TCP},
                {"tcp6", AF_INET6, IPPROTO_TCP},
                {"udp", AF_INET, IPPROTO_UDP},
                {"udp6", AF_INET6, IPPROTO_UDP}};
  net_socks_t s = {0};
  for (size_t i = 0; i < sizeof(tables) / sizeof(tables[0]); i++) {
    int rc = inet_socks(env, tables[i].file, tables[i].family, tables[i].protocol, &s);
    if (rc) inv_table_fail(tab, "cannot read /proc/net/%s: %s", tables[i].file, tt_strerror(rc));
  }
  int rc = unix_socks(env, &s);
  if (rc) inv_table_fail(tab, "cannot read /proc/net/unix: %s", tt_strerror(rc));
  owners(env, &s, tab);
  char ns[24];
  net_namespace(env, ns, sizeof(ns));
  for (size_t i = 0; i < s.n; i++) {
    net_sock_t *k = &s.v[i];
    char pid[24], fd[24], port[8], proto[8], fam[8], sock[24];
    snprintf(pid, sizeof(pid), "%ld", k->pid);
    snprintf(fd, sizeof(fd), "%ld", k->fd);
    inv_u64_str(port, sizeof(port), k->port);
    inv_u64_str(proto, sizeof(proto), (uint64_t)k->protocol);
    inv_u64_str(fam, sizeof(fam), (uint64_t)k->family);
    inv_u64_str(sock, sizeof(sock), k->inode);
    const char *row[] = {pid, port, proto, fam, k->addr, fd, sock, k->path, ns};
    if (inv_table_add(tab, row)) break;
  }
  free(s.v);
}
