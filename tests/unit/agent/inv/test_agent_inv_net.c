/* The network collectors (agent/inv/linux/net.c) against the captured root in
 * tests/fixtures/linux-a, against broken and missing files, and against this machine. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <cmocka.h>

#include "linux.h"
#include "tt/err.h"

#define FX TT_FIXTURES "/linux-a"

static void run(const inv_env_t *env, const char *name, const char *const *cols, inv_collect_fn fn, inv_table_t *t) {
  inv_collector_t c = {name, cols, fn};
  assert_int_equal(inv_collect(env, &c, t), 0);
}
#define RUN(env, table, t) run(env, #table, inv_linux_##table##_cols, inv_linux_##table, t)

static size_t col(const inv_table_t *t, const char *name) {
  for (size_t c = 0; c < t->ncols; c++)
    if (!strcmp(t->cols[c], name)) return c;
  fail_msg("no column %s in %s", name, t->name);
  return 0;
}

static const char *get(const inv_table_t *t, long row, const char *name) {
  assert_true(row >= 0);
  return inv_cell(t, (size_t)row, col(t, name));
}

/* The row whose column c1 is v1 (and c2 is v2, if given); -1 if none. */
static long find2(const inv_table_t *t, const char *c1, const char *v1, const char *c2, const char *v2) {
  for (size_t r = 0; r < t->nrows; r++)
    if (!strcmp(inv_cell(t, r, col(t, c1)), v1) && (!c2 || !strcmp(inv_cell(t, r, col(t, c2)), v2))) return (long)r;
  return -1;
}
static long find(const inv_table_t *t, const char *c, const char *v) { return find2(t, c, v, NULL, NULL); }

static const inv_env_t g_fx = {.root = FX};
static const inv_env_t g_none = {.root = "/nonexistent-inventory-root"};

static void test_interface_details(void **state) {
  (void)state;
  inv_table_t t;
  RUN(&g_fx, interface_details, &t);
  assert_string_equal(t.error, "");
  /* eth0, lo, wlan0 and the broken bad0; bonding_masters is a file, not an interface. */
  assert_int_equal(t.nrows, 4);
  assert_int_equal(find(&t, "interface", "bonding_masters"), -1);
  long r = find(&t, "interface", "eth0");
  assert_string_equal(get(&t, r, "mac"), "02:fc:00:00:00:01");
  assert_string_equal(get(&t, r, "type"), "1");
  assert_string_equal(get(&t, r, "mtu"), "1400");
  /* 0x1003 (UP|BROADCAST|MULTICAST) + RUNNING (operstate up) + LOWER_UP (carrier 1). */
  assert_string_equal(get(&t, r, "flags"), "69699");
  assert_string_equal(get(&t, r, "ipackets"), "1209");
  assert_string_equal(get(&t, r, "opackets"), "1210");
  assert_string_equal(get(&t, r, "ibytes"), "22292307");
  assert_string_equal(get(&t, r, "obytes"), "87162");
  assert_string_equal(get(&t, r, "idrops"), "0");
  assert_string_equal(get(&t, r, "metric"), "0");
  assert_string_equal(get(&t, r, "last_change"), "-1");
  assert_string_equal(get(&t, r, "link_speed"), "0"); /* sysfs says -1: unknown */
  assert_string_equal(get(&t, r, "pci_slot"), "0000:00:03.0"); /* virtio2's parent */
  r = find(&t, "interface", "lo");
  assert_string_equal(get(&t, r, "type"), "772");
  assert_string_equal(get(&t, r, "mtu"), "65536");
  assert_string_equal(get(&t, r, "flags"), "65609"); /* UP|LOOPBACK|RUNNING|LOWER_UP */
  assert_string_equal(get(&t, r, "mac"), "00:00:00:00:00:00");
  assert_string_equal(get(&t, r, "pci_slot"), "");
  assert_string_equal(get(&t, r, "ipackets"), "1334252");
  r = find(&t, "interface", "wlan0");
  assert_string_equal(get(&t, r, "flags"), "4099"); /* up, but no carrier: not RUNNING */
  assert_string_equal(get(&t, r, "pci_slot"), "0000:00:14.3");
  assert_string_equal(get(&t, r, "oerrors"), "2");
  assert_string_equal(get(&t, r, "idrops"), "7");
  assert_string_equal(get(&t, r, "collisions"), "1");
  /* Garbage and missing values are empty cells, not guesses. */
  r = find(&t, "interface", "bad0");
  assert_string_equal(get(&t, r, "type"), "");
  assert_string_equal(get(&t, r, "mtu"), "");
  assert_string_equal(get(&t, r, "flags"), "");
  assert_string_equal(get(&t, r, "ibytes"), "");
  assert_string_equal(get(&t, r, "mac"), "00:00:00:00:00:00");
  inv_table_free(&t);
  RUN(&g_none, interface_details, &t);
  assert_int_equal(t.nrows, 0);
  assert_non_null(strstr(t.error, "/sys/class/net"));
  inv_table_free(&t);
}

static void test_interface_addresses(void **state) {
  (void)state;
  inv_table_t t;
  RUN(&g_fx, interface_addresses, &t);
  assert_string_equal(t.error, "");
  /* Four IPv4 addresses (Main and Local list them twice: once here), three IPv6. */
  assert_int_equal(t.nrows, 7);
  long r = find(&t, "address", "192.0.2.2");
  assert_string_equal(get(&t, r, "interface"), "eth0");
  assert_string_equal(get(&t, r, "mask"), "255.255.255.0");
  assert_string_equal(get(&t, r, "broadcast"), "192.0.2.255");
  assert_string_equal(get(&t, r, "point_to_point"), "");
  assert_string_equal(get(&t, r, "type"), "unknown");
  r = find(&t, "address", "10.20.3.4");
  assert_string_equal(get(&t, r, "interface"), "wlan0");
  assert_string_equal(get(&t, r, "mask"), "255.255.0.0");
  assert_string_equal(get(&t, r, "broadcast"), "10.20.255.255");
  /* lo's subnet is a LOCAL route, not in /proc/net/route; lo has no broadcast, and
   * getifaddrs calls the address its own other end. */
  r = find(&t, "address", "127.0.0.1");
  assert_string_equal(get(&t, r, "interface"), "lo");
  assert_string_equal(get(&t, r, "mask"), "255.0.0.0");
  assert_string_equal(get(&t, r, "broadcast"), "");
  assert_string_equal(get(&t, r, "point_to_point"), "127.0.0.1");
  /* An address in no known subnet: there, interface unknown. */
  r = find(&t, "address", "198.51.100.7");
  assert_string_equal(get(&t, r, "interface"), "");
  assert_string_equal(get(&t, r, "mask"), "");
  assert_int_equal(find(&t, "address", "127.0.0.0"), -1);
  assert_int_equal(find(&t, "address", "203.0.113.5"), -1);
  r = find(&t, "address", "::1");
  assert_string_equal(get(&t, r, "interface"), "lo");
  assert_string_equal(get(&t, r, "mask"), "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
  r = find(&t, "address", "fd00::2");
  assert_string_equal(get(&t, r, "interface"), "eth0");
  assert_string_equal(get(&t, r, "mask"), "ffff:ffff:ffff:ffff::");
  r = find(&t, "address", "fe80::fc:ff:fe00:1%eth0");
  assert_string_equal(get(&t, r, "interface"), "eth0");
  inv_table_free(&t);
  RUN(&g_none, interface_addresses, &t);
  assert_non_null(strstr(t.error, "fib_trie"));
  inv_table_free(&t);
}

static void test_routes(void **state) {
  (void)state;
  inv_table_t t;
  RUN(&g_fx, routes, &t);
  assert_string_equal(t.error, "");
  /* Four good IPv4 lines, seven IPv6 routes (the kernel's null entry is not one). */
  assert_int_equal(t.nrows, 11);
  long r = find2(&t, "destination", "0.0.0.0", "netmask", "0");
  assert_string_equal(get(&t, r, "gateway"), "192.0.2.1");
  assert_string_equal(get(&t, r, "interface"), "eth0");
  assert_string_equal(get(&t, r, "flags"), "3"); /* RTF_UP|RTF_GATEWAY */
  assert_string_equal(get(&t, r, "type"), "gateway");
  r = find(&t, "destination", "192.0.2.0");
  assert_string_equal(get(&t, r, "netmask"), "24");
  assert_string_equal(get(&t, r, "gateway"), "");
  r = find(&t, "destination", "10.20.0.0");
  assert_string_equal(get(&t, r, "netmask"), "16");
  assert_string_equal(get(&t, r, "interface"), "wlan0");
  assert_string_equal(get(&t, r, "metric"), "600");
  assert_string_equal(get(&t, r, "mtu"), "1400");
  r = find(&t, "destination", "192.168.0.0");
  assert_string_equal(get(&t, r, "type"), "other"); /* unreachable */
  assert_string_equal(get(&t, r, "interface"), "");
  r = find2(&t, "destination", "::", "netmask", "0");
  assert_string_equal(get(&t, r, "gateway"), "fd00::1");
  assert_string_equal(get(&t, r, "metric"), "1024");
  assert_string_equal(get(&t, r, "interface"), "eth0");
  r = find(&t, "destination", "::1");
  assert_string_equal(get(&t, r, "netmask"), "128");
  assert_string_equal(get(&t, r, "type"), "local");
  assert_string_equal(get(&t, r, "interface"), "lo");
  assert_string_equal(get(&t, r, "type"), "local");
  r = find(&t, "destination", "ff00::");
  assert_string_equal(get(&t, r, "type"), "other"); /* multicast */
  assert_string_equal(get(&t, r, "netmask"), "8");
  r = find2(&t, "destination", "fd00::", "netmask", "64");
  assert_string_equal(get(&t, r, "type"), "gateway");
  assert_string_equal(get(&t, r, "metric"), "256");
  assert_int_equal(find(&t, "destination", "2001:db8::"), -1); /* bad metric: skipped */
  inv_table_free(&t);
  RUN(&g_none, routes, &t);
  assert_int_equal(t.nrows, 0);
  assert_non_null(strstr(t.error, "/proc/net/route"));
  inv_table_free(&t);
}

static void test_dns_resolvers(void **state) {
  (void)state;
  inv_table_t t;
  RUN(&g_fx, dns_resolvers, &t);
  assert_string_equal(t.error, "");
  assert_int_equal(t.nrows, 8);
  /* The first three good nameservers (glibc's MAXNS), as glibc would use them. */
  long r = find2(&t, "type", "nameserver", "id", "0");
  assert_string_equal(get(&t, r, "address"), "192.0.2.53");
  assert_string_equal(get(&t, r, "netmask"), "32");
  /* RES_DEFAULT|RES_INIT (705) + rotate + edns0 + trust-ad. */
  assert_string_equal(get(&t, r, "options"), "68174529");
  r = find2(&t, "type", "nameserver", "id", "1");
  assert_string_equal(get(&t, r, "address"), "2001:db8::53");
  assert_string_equal(get(&t, r, "netmask"), "128");
  r = find2(&t, "type", "nameserver", "id", "2");
  assert_string_equal(get(&t, r, "address"), "fe80::1%eth0");
  assert_int_equal(find(&t, "address", "203.0.113.9"), -1);
  assert_int_equal(find(&t, "address", "198.51.100.99"), -1); /* indented: not a keyword */
  /* The last search line wins over domain and the earlier search. */
  assert_string_equal(get(&t, find2(&t, "type", "search", "id", "0"), "address"), "corp.example");
  assert_string_equal(get(&t, find2(&t, "type", "search", "id", "1"), "address"), "lab.example");
  assert_string_equal(get(&t, find2(&t, "type", "search", "id", "2"), "address"), "\xef\xbf\xbd-bad.example");
  assert_int_equal(find(&t, "address", "example.org"), -1);
  r = find2(&t, "type", "sortlist", "id", "0");
  assert_string_equal(get(&t, r, "address"), "130.155.160.0");
  assert_string_equal(get(&t, r, "netmask"), "20");
  r = find2(&t, "type", "sortlist", "id", "1");
  assert_string_equal(get(&t, r, "address"), "130.155.0.0");
  assert_string_equal(get(&t, r, "netmask"), "16"); /* class B's natural mask */
  inv_table_free(&t);
  RUN(&g_none, dns_resolvers, &t);
  assert_non_null(strstr(t.error, "resolv.conf"));
  inv_table_free(&t);
}

static void test_listening_ports(void **state) {
  (void)state;
  inv_table_t t;
  RUN(&g_fx, listening_ports, &t);
  assert_string_equal(t.error, "");
  /* Two TCP and two TCP6 listeners, one UDP and one UDP6 bound, four named unix sockets;
   * not the established, connected, unbound, accepted or unnamed ones. */
  assert_int_equal(t.nrows, 10);
  long r = find2(&t, "socket", "1001", NULL, NULL);
  assert_string_equal(get(&t, r, "port"), "22");
  assert_string_equal(get(&t, r, "address"), "0.0.0.0");
  assert_string_equal(get(&t, r, "protocol"), "6");
  assert_string_equal(get(&t, r, "family"), "2");
  /* Held by pids 100 (fds 3 and 12) and 200: the lowest pid and fd. */
  assert_string_equal(get(&t, r, "pid"), "100");
  assert_string_equal(get(&t, r, "fd"), "3");
  assert_string_equal(get(&t, r, "net_namespace"), "4026531840");
  r = find(&t, "socket", "1002");
  assert_string_equal(get(&t, r, "address"), "127.0.0.1");
  assert_string_equal(get(&t, r, "port"), "631");
  assert_string_equal(get(&t, r, "pid"), "-1");
  assert_string_equal(get(&t, r, "fd"), "-1");
  r = find(&t, "socket", "1003");
  assert_string_equal(get(&t, r, "address"), "::");
  assert_string_equal(get(&t, r, "family"), "10");
  assert_string_equal(get(&t, r, "pid"), "100");
  assert_string_equal(get(&t, r, "fd"), "4");
  assert_string_equal(get(&t, find(&t, "socket", "1011"), "address"), "::1");
  r = find(&t, "socket", "1004");
  assert_string_equal(get(&t, r, "protocol"), "17");
  assert_string_equal(get(&t, r, "port"), "68");
  assert_string_equal(get(&t, r, "pid"), "200");
  assert_string_equal(get(&t, r, "fd"), "5");
  r = find(&t, "socket", "1005");
  assert_string_equal(get(&t, r, "address"), "fe80::fc:ff:fe00:1");
  assert_string_equal(get(&t, r, "port"), "546");
  r = find(&t, "path", "/run/dbus/system_bus_socket");
  assert_string_equal(get(&t, r, "family"), "1");
  assert_string_equal(get(&t, r, "port"), "0");
  assert_string_equal(get(&t, r, "socket"), "1006");
  assert_string_equal(get(&t, r, "pid"), "200");
  assert_string_equal(get(&t, r, "fd"), "8");
  assert_true(find(&t, "path", "@/tmp/.X11-unix/X0") >= 0);
  assert_true(find(&t, "path", "/run/systemd/journal/dev-log") >= 0);
  assert_true(find(&t, "path", "/run/my app/ctl.sock") >= 0);
  const char *gone[] = {"1010", "1012", "1013", "1014", "1015", "1099"};
  for (size_t i = 0; i < sizeof(gone) / sizeof(gone[0]); i++) assert_int_equal(find(&t, "socket", gone[i]), -1);
  inv_table_free(&t);
  RUN(&g_none, listening_ports, &t);
  assert_int_equal(t.nrows, 0);
  assert_non_null(strstr(t.error, "/proc/net/tcp"));
  inv_table_free(&t);
}

/* This machine: plausible facts only, and our own sockets found with our pid. */
static void test_live(void **state) {
  (void)state;
  inv_env_t live = {.root = ""}, slash = {.root = "/"};
  inv_table_t t, u;
  RUN(&live, interface_details, &t);
  assert_string_equal(t.error, "");
  long r = find(&t, "interface", "lo");
  assert_string_equal(get(&t, r, "type"), "772");
  assert_true(strtoul(get(&t, r, "flags"), NULL, 10) & IFF_LOOPBACK);
  inv_table_free(&t);

  /* getifaddrs and the files agree on this machine's IPv4 addresses. */
  RUN(&live, interface_addresses, &t);
  RUN(&slash, interface_addresses, &u);
  assert_string_equal(t.error, "");
  assert_string_equal(u.error, "");
  r = find(&t, "address", "127.0.0.1");
  assert_string_equal(get(&t, r, "interface"), "lo");
  assert_string_equal(get(&t, r, "mask"), "255.0.0.0");
  size_t v4 = 0;
  for (size_t i = 0; i < t.nrows; i++) {
    const char *a = inv_cell(&t, i, col(&t, "address"));
    if (strchr(a, ':')) continue;
    v4++;
    long k = find(&u, "address", a);
    assert_true(k >= 0);
    assert_string_equal(get(&u, k, "interface"), inv_cell(&t, i, col(&t, "interface")));
    assert_string_equal(get(&u, k, "mask"), inv_cell(&t, i, col(&t, "mask")));
    assert_string_equal(get(&u, k, "broadcast"), inv_cell(&t, i, col(&t, "broadcast")));
    assert_string_equal(get(&u, k, "point_to_point"), inv_cell(&t, i, col(&t, "point_to_point")));
  }
  size_t v4u = 0;
  for (size_t i = 0; i < u.nrows; i++) v4u += !strchr(inv_cell(&u, i, col(&u, "address")), ':');
  assert_int_equal(v4, v4u);
  inv_table_free(&t);
  inv_table_free(&u);

  RUN(&live, routes, &t);
  assert_string_equal(t.error, "");
  for (size_t i = 0; i < t.nrows; i++) assert_true(atoi(inv_cell(&t, i, col(&t, "netmask"))) <= 128);
  inv_table_free(&t);

  if (access("/etc/resolv.conf", R_OK) == 0) {
    RUN(&live, dns_resolvers, &t);
    assert_string_equal(t.error, "");
    inv_table_free(&t);
  }

  /* A TCP listener and a unix listener of our own show up with our pid and fds. */
  int tcp = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t sl = sizeof(sin);
  assert_true(tcp >= 0);
  assert_int_equal(bind(tcp, (struct sockaddr *)&sin, sizeof(sin)), 0);
  assert_int_equal(listen(tcp, 1), 0);
  assert_int_equal(getsockname(tcp, (struct sockaddr *)&sin, &sl), 0);
  int ux = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_un sun = {.sun_family = AF_UNIX};
  const char *tmp = getenv("TT_TEST_TMP");
  snprintf(sun.sun_path, sizeof(sun.sun_path), "%s/inv_net_%d.sock", tmp ? tmp : "/tmp", (int)getpid());
  unlink(sun.sun_path);
  assert_true(ux >= 0);
  assert_int_equal(bind(ux, (struct sockaddr *)&sun, sizeof(sun)), 0);
  assert_int_equal(listen(ux, 1), 0);
  RUN(&live, listening_ports, &t);
  char port[8], pid[16], fd[16], ns[64] = "";
  snprintf(port, sizeof(port), "%u", ntohs(sin.sin_port));
  snprintf(pid, sizeof(pid), "%d", (int)getpid());
  r = find2(&t, "port", port, "address", "127.0.0.1");
  assert_string_equal(get(&t, r, "pid"), pid);
  snprintf(fd, sizeof(fd), "%d", tcp);
  assert_string_equal(get(&t, r, "fd"), fd);
  assert_string_equal(get(&t, r, "protocol"), "6");
  ssize_t n = readlink("/proc/self/ns/net", ns, sizeof(ns) - 1);
  assert_true(n > 6);
  ns[n - 1] = 0; /* net:[N] -> N */
  assert_string_equal(get(&t, r, "net_namespace"), ns + 5);
  r = find(&t, "path", sun.sun_path);
  assert_string_equal(get(&t, r, "pid"), pid);
  snprintf(fd, sizeof(fd), "%d", ux);
  assert_string_equal(get(&t, r, "fd"), fd);
  inv_table_free(&t);
  close(tcp);
  close(ux);
  unlink(sun.sun_path);
}


/* ---- garbage ----------------------------------------------------------------------------- */

static uint64_t g_rng = 0x9e3779b97f4a7c15u;
static uint32_t rnd(uint32_t n) {
  g_rng ^= g_rng << 13;
  g_rng ^= g_rng >> 7;
  g_rng ^= g_rng << 17;
  return (uint32_t)(g_rng % n);
}

/* Bytes that look enough like the real files to get past the first checks. */
static size_t junk(char *out, size_t cap) {
  static const char *const bits[] = {"0", "A", "F", "f", "00000000", ":", " ", "\t", "\n", "/32", "|-- ", "+-- ",
                                     "1", "-", "0x", "LOCAL", "BROADCAST", "host", "127.0.0.1", "socket:[",
                                     "]", "nameserver ", "search ", "options ", "sortlist ", "%", "@", "\xff", "::"};
  size_t n = 0, want = rnd((uint32_t)cap);
  while (n < want) {
    if (rnd(8) == 0) {
      out[n++] = (char)rnd(256);
      continue;
    }
    const char *b = bits[rnd(sizeof(bits) / sizeof(bits[0]))];
    size_t l = strlen(b);
    if (n + l > want) break;
    memcpy(out + n, b, l);
    n += l;
  }
  return n;
}

static void write_file(const char *root, const char *rel, const void *data, size_t n) {
  char p[1024];
  snprintf(p, sizeof(p), "%s/%s", root, rel);
  for (char *s = p + strlen(root) + 1; (s = strchr(s, '/')); s++) {
    *s = 0;
    mkdir(p, 0755);
    *s = '/';
  }
  FILE *f = fopen(p, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(data, 1, n, f), n);
  fclose(f);
}

/* Each file a collector reads, as random junk or a real file cut anywhere: every collector
 * runs to its end (ASan and UBSan watching), with valid tables. */
static void test_garbage(void **state) {
  (void)state;
  static const char *const files[] = {
      "proc/net/route", "proc/net/ipv6_route", "proc/net/if_inet6", "proc/net/fib_trie", "proc/net/tcp",
      "proc/net/tcp6",  "proc/net/udp",        "proc/net/udp6",     "proc/net/unix",     "etc/resolv.conf",
      "sys/class/net/x0/type", "sys/class/net/x0/address", "sys/class/net/x0/flags", "sys/class/net/x0/mtu",
      "sys/class/net/x0/operstate", "sys/class/net/x0/carrier", "sys/class/net/x0/statistics/rx_bytes",
      "sys/class/net/lo/type", "sys/class/net/lo/flags"};
  char root[512];
  const char *base = getenv("TT_TEST_TMP");
  snprintf(root, sizeof(root), "%s/inv_net_XXXXXX", base ? base : "/tmp");
  assert_non_null(mkdtemp(root));
  inv_env_t env = {.root = root};
  static char buf[8192];
  for (int round = 0; round < 300; round++) {
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
      size_t n;
      char real[1024];
      snprintf(real, sizeof(real), "%s/%s", FX, files[i]);
      FILE *f = rnd(2) ? fopen(real, "rb") : NULL;
      if (f) {
        n = fread(buf, 1, sizeof(buf), f);
        fclose(f);
        n = n ? rnd((uint32_t)n + 1) : 0; /* cut anywhere, mid-line and mid-number too */
      } else {
        n = junk(buf, 600);
      }
      write_file(root, files[i], buf, n);
    }
    inv_table_t t;
    RUN(&env, interface_details, &t);
    inv_table_free(&t);
    RUN(&env, interface_addresses, &t);
    inv_table_free(&t);
    RUN(&env, routes, &t);
    inv_table_free(&t);
    RUN(&env, dns_resolvers, &t);
    inv_table_free(&t);
    RUN(&env, listening_ports, &t);
    inv_table_free(&t);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_interface_details), cmocka_unit_test(test_interface_addresses),
      cmocka_unit_test(test_routes),            cmocka_unit_test(test_dns_resolvers),
      cmocka_unit_test(test_listening_ports),   cmocka_unit_test(test_live),
      cmocka_unit_test(test_garbage),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
