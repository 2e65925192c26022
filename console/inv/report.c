/* The readable diagnostics page (report.h). Every string came from the device: it reaches
 * the terminal only through console_text (controls and bidi characters shown as \xNN). */
#include "report.h"
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include "console.h"

/* Names resolved that the page lists (the agent resolves at most 8). */
#define INV_DNS_SHOWN 8

/* A value of one row of a table by column name; "" when there is no such column. */
typedef struct {
  json_t *cols, *rows;
  size_t n;
  const char *error;
} tab_t;

static tab_t tab(json_t *doc, const char *name) {
  tab_t t = {0};
  json_t *o = json_object_get(json_object_get(doc, "tables"), name);
  if (!o) return t;
  t.cols = json_object_get(o, "columns");
  t.rows = json_object_get(o, "rows");
  t.n = json_array_size(t.rows);
  t.error = json_string_value(json_object_get(o, "error"));
  return t;
}

static const char *val(const tab_t *t, size_t row, const char *col) {
  size_t i;
  json_t *c;
  json_array_foreach(t->cols, i, c) {
    if (strcmp(json_string_value(c), col) == 0) {
      const char *v = json_string_value(json_array_get(json_array_get(t->rows, row), i));
      return v ? v : "";
    }
  }
  return "";
}

/* Safe for a terminal: untrusted text through console_text. */
static const char *safe(char *dst, size_t cap, const char *s) {
  ProtobufCBinaryData b = {strlen(s), (uint8_t *)s};
  console_text(dst, cap, b);
  return dst;
}

#define S(buf, s) safe(buf, sizeof(buf), s)

static uint64_t num(const char *s) { return strtoull(s, NULL, 10); }

static void human_bytes(char *dst, size_t cap, uint64_t b) {
  const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  double v = (double)b;
  int i = 0;
  while (v >= 1024 && i < 5) {
    v /= 1024;
    i++;
  }
  snprintf(dst, cap, i ? "%.1f %s" : "%.0f %s", v, u[i]);
}

static void line(FILE *f, const char *label, const char *fmt, ...) TT_PRINTF(3, 4);
static void line(FILE *f, const char *label, const char *fmt, ...) {
  va_list ap;
  fprintf(f, "%-12s", label);
  va_start(ap, fmt);
  vfprintf(f, fmt, ap);
  va_end(ap);
  fputc('\n', f);
}

static void head(FILE *f, json_t *doc) {
  char dev[256], host[256], ver[64], when[40];
  const char *d = json_string_value(json_object_get(doc, "device"));
  const char *h = json_string_value(json_object_get(doc, "hostname"));
  const char *v = json_string_value(json_object_get(doc, "agent_version"));
  json_int_t at = json_integer_value(json_object_get(doc, "collected_at"));
  json_int_t ms = json_integer_value(json_object_get(doc, "ms"));
  console_iso(when, sizeof(when), at > 0 ? (uint64_t)at : 0, false);
  char took[32];
  if (ms < 1000) snprintf(took, sizeof(took), "%d ms", (int)(ms > 0 ? ms : 0));
  else snprintf(took, sizeof(took), "%.1f s", (double)ms / 1000.0);
  fprintf(f, "%s (%s), collected %s in %s by agent %s\n\n", S(host, h ? h : "?"), S(dev, d ? d : "?"), when, took,
          S(ver, v ? v : "?"));
}

static void system_part(FILE *f, json_t *doc) {
  char a[256], b[256], c[256], d[256];
  tab_t si = tab(doc, "system_info"), os = tab(doc, "os_version"), k = tab(doc, "kernel_info"),
        up = tab(doc, "uptime"), mem = tab(doc, "memory_info");
  if (si.n) {
    const char *serial = val(&si, 0, "hardware_serial"), *vendor = val(&si, 0, "hardware_vendor"),
               *model = val(&si, 0, "hardware_model");
    if (vendor[0] || model[0] || serial[0])
      line(f, "Machine", "%s %s%s%s", S(a, vendor), S(b, model), serial[0] ? ", serial " : "", S(c, serial));
    else
      line(f, "Machine", "unknown (no firmware facts readable: a virtual machine, or not root)");
    line(f, "CPU", "%s, %s cores, %s threads", S(a, val(&si, 0, "cpu_brand")), S(b, val(&si, 0, "cpu_physical_cores")),
         S(c, val(&si, 0, "cpu_logical_cores")));
  }
  if (os.n)
    line(f, "OS", "%s %s (%s)%s%s", S(a, val(&os, 0, "name")), S(b, val(&os, 0, "version")), S(c, val(&os, 0, "arch")),
         k.n ? ", kernel " : "", k.n ? S(d, val(&k, 0, "version")) : "");
  if (up.n) {
    char dur[32];
    console_duration(dur, sizeof(dur), num(val(&up, 0, "total_seconds")) * 1000);
    line(f, "Up", "%s", dur);
  }
  if (mem.n) {
    human_bytes(a, sizeof(a), num(val(&mem, 0, "memory_total")));
    human_bytes(b, sizeof(b), num(val(&mem, 0, "memory_available")));
    human_bytes(c, sizeof(c), num(val(&mem, 0, "swap_total")));
    human_bytes(d, sizeof(d), num(val(&mem, 0, "swap_free")));
    line(f, "Memory", "%s, %s available; swap %s, %s free", a, b, c, d);
  }
}

/* ---- the live state: what a call is about ------------------------------------------------ */

/* A line being built from many rows, cut when full: a page, not a dump. */
typedef struct {
  char s[1024];
  size_t n;
} lbuf_t;

static void lb_add(lbuf_t *b, const char *fmt, ...) TT_PRINTF(2, 3);
static void lb_add(lbuf_t *b, const char *fmt, ...) {
  if (b->n >= sizeof(b->s) - 1) return;
  va_list ap;
  va_start(ap, fmt);
  int w = vsnprintf(b->s + b->n, sizeof(b->s) - b->n, fmt, ap);
  va_end(ap);
  if (w < 0) return;
  b->n = (size_t)w < sizeof(b->s) - b->n ? b->n + (size_t)w : sizeof(b->s) - 1;
}

/* A table the device sent (an older agent sends none of these) that did not fail outright:
 * one that failed is listed under "Not collected" with its reason. */
static bool shown(const tab_t *t) { return t->cols && (t->n || !t->error); }

/* The first line of a message, at most max bytes of it, cut at a whole character. */
static const char *first_line(char *dst, size_t cap, const char *s, size_t max) {
  size_t n = strcspn(s, "\r\n");
  if (n > max) {
    n = max;
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80) n--;
  }
  char tmp[512];
  if (n >= sizeof(tmp)) n = sizeof(tmp) - 1;
  memcpy(tmp, s, n);
  tmp[n] = 0;
  return safe(dst, cap, tmp);
}

static const char *prio_name(const char *p) {
  static const char *const names[] = {"emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"};
  return p[0] >= '0' && p[0] <= '7' && !p[1] ? names[p[0] - '0'] : "?";
}

/* Failed units, disks nearly full, memory and stalls. */
static void live_trouble(FILE *f, json_t *doc) {
  tab_t fu = tab(doc, "systemd_failed_units"), dp = tab(doc, "disk_pressure"), mp = tab(doc, "memory_pressure"),
        ps = tab(doc, "pressure_stall");
  char a[256], b[256], c[128];
  if (shown(&fu)) {
    lbuf_t l = {.n = 0};
    if (!fu.n) lb_add(&l, "none");
    for (size_t r = 0; r < fu.n && r < 16; r++) {
      const char *result = val(&fu, r, "result"), *since = val(&fu, r, "since");
      lb_add(&l, "%s%s", r ? ", " : "", S(a, val(&fu, r, "id")));
      if (result[0] || since[0])
        lb_add(&l, " (%s%s%s)", S(b, result), result[0] && since[0] ? " since " : since[0] ? "since " : "",
               S(c, since));
    }
    if (fu.n > 16) lb_add(&l, ", ... (%zu in all)", fu.n);
    line(f, "Failed", "%s", l.s);
  }
  if (shown(&dp)) {
    lbuf_t l = {.n = 0};
    if (!dp.n) lb_add(&l, "no filesystem 90%% full or more");
    for (size_t r = 0; r < dp.n && r < 16; r++) {
      const char *ino = val(&dp, r, "inodes_used_percent");
      char fr[32];
      human_bytes(fr, sizeof(fr), num(val(&dp, r, "bytes_available")));
      lb_add(&l, "%s%s %s%% used (%s free)", r ? "; " : "", S(a, val(&dp, r, "path")), S(b, val(&dp, r, "used_percent")),
             fr);
      if (ino[0] && num(ino) >= 90) lb_add(&l, ", inodes %s%% used", S(c, ino));
    }
    line(f, "Disk full", "%s", l.s);
  }
  if (shown(&mp) && mp.n) {
    lbuf_t l = {.n = 0};
    const char *apct = val(&mp, 0, "memory_available_percent"), *oom = val(&mp, 0, "oom_kills");
    if (apct[0]) lb_add(&l, "%s%% available", S(a, apct));
    if (num(val(&mp, 0, "swap_total"))) {
      char used[32];
      human_bytes(used, sizeof(used), num(val(&mp, 0, "swap_used")));
      lb_add(&l, "%sswap %s used (%s%%)", l.n ? ", " : "", used, S(b, val(&mp, 0, "swap_used_percent")));
    }
    if (oom[0] && strcmp(oom, "0")) lb_add(&l, "%s%s processes killed for want of memory since boot", l.n ? ", " : "", S(c, oom));
    if (l.n) line(f, "Memory now", "%s", l.s);
  }
  if (shown(&ps) && ps.n) {
    /* The share of the last 10 s that some task waited for the resource. */
    lbuf_t l = {.n = 0};
    for (size_t r = 0; r < ps.n && r < 8; r++) {
      const char *full = val(&ps, r, "full_avg10");
      lb_add(&l, "%s%s %s%%", r ? ", " : "", S(a, val(&ps, r, "resource")), S(b, val(&ps, r, "some_avg10")));
      if (full[0] && strcmp(full, "0.00") && strcmp(val(&ps, r, "resource"), "cpu")) lb_add(&l, " (all tasks %s%%)", S(c, full));
    }
    line(f, "Waiting", "%s of the last 10 s", l.s);
  }
}

static void live_journal(FILE *f, json_t *doc) {
  tab_t je = tab(doc, "journal_errors");
  if (!shown(&je)) return;
  if (!je.n) {
    line(f, "Errors", "none in the journal");
    return;
  }
  line(f, "Errors", "%zu in the journal; the latest:", je.n);
  /* Rows come in time order (canonical order, times of one width): the last are the latest. */
  for (size_t k = 0; k < je.n && k < 5; k++) {
    size_t r = je.n - 1 - k;
    char when[40] = "?", u[256], m[1024];
    const char *t = val(&je, r, "time"), *unit = val(&je, r, "unit"), *p = val(&je, r, "priority"),
               *msg = val(&je, r, "message");
    if (t[0]) console_iso(when, sizeof(when), num(t) * 1000, false);
    if (!unit[0]) unit = val(&je, r, "identifier");
    fprintf(f, "%-12s%s %s%s%s: %s\n", "", when, strcmp(p, "3") ? prio_name(p) : "", strcmp(p, "3") ? " " : "",
            S(u, unit[0] ? unit : "?"), msg[0] ? first_line(m, sizeof(m), msg, 160) : "(no text)");
  }
}

static void live_reach(FILE *f, json_t *doc) {
  tab_t dns = tab(doc, "dns_lookups"), bc = tab(doc, "broker_connection"), ts = tab(doc, "time_skew"),
        pr = tab(doc, "pending_reboot");
  char a[256], b[512], c[128];
  if (bc.cols && bc.n) {
    lbuf_t l = {.n = 0};
    const char *since = val(&bc, 0, "connected_since"), *rtt = val(&bc, 0, "round_trip_ms"), *name = val(&bc, 0, "name");
    lb_add(&l, "%s %s", S(a, val(&bc, 0, "state")), S(b, val(&bc, 0, "address")));
    if (name[0]) lb_add(&l, " (%s)", S(c, name));
    if (since[0]) {
      char when[40];
      console_iso(when, sizeof(when), num(since) * 1000, false);
      lb_add(&l, " since %s", when);
    }
    if (rtt[0]) lb_add(&l, ", round trip %s ms", S(a, rtt));
    else lb_add(&l, ", no answer to a ping");
    line(f, "Broker", "%s", l.s);
  }
  if (shown(&ts) && ts.n) {
    long long skew = strtoll(val(&ts, 0, "skew_ms"), NULL, 10), unc = strtoll(val(&ts, 0, "uncertainty_ms"), NULL, 10);
    unsigned long long mag = skew < 0 ? 0ull - (unsigned long long)skew : (unsigned long long)skew;
    char amount[32];
    if (mag < 1000) snprintf(amount, sizeof(amount), "%llu ms", mag);
    else if (mag < 120000) snprintf(amount, sizeof(amount), "%.1f s", (double)mag / 1000.0);
    else console_duration(amount, sizeof(amount), mag);
    if (mag <= (unsigned long long)(unc > 0 ? unc : 0) || mag < 100)
      line(f, "Clock", "in step with the broker's (%s%s, +-%lld ms)", skew < 0 ? "-" : "", amount, unc);
    else
      line(f, "Clock", "%s %s the broker's (+-%lld ms)", amount, skew > 0 ? "ahead of" : "behind", unc);
  }
  if (shown(&dns)) {
    lbuf_t l = {.n = 0};
    for (size_t r = 0; r < dns.n && r < INV_DNS_SHOWN; r++) {
      const char *err = val(&dns, r, "error");
      lb_add(&l, "%s%s ", r ? "; " : "", S(a, val(&dns, r, "name")));
      if (err[0]) lb_add(&l, "FAILED: %s", S(b, err));
      else lb_add(&l, "%s (%s ms)", S(b, val(&dns, r, "addresses")), S(c, val(&dns, r, "ms")));
    }
    if (dns.n) line(f, "Resolves", "%s", l.s);
  }
  if (shown(&pr)) {
    if (!pr.n) line(f, "Reboot", "not pending");
    for (size_t r = 0; r < pr.n && r < 4; r++)
      line(f, r ? "" : "Reboot", "pending: %s (%s)", S(b, val(&pr, r, "detail")), S(a, val(&pr, r, "source")));
  }
}

static void live_part(FILE *f, json_t *doc) {
  static const char *const live[] = {"systemd_failed_units", "journal_errors", "disk_pressure", "memory_pressure",
                                     "pressure_stall",       "dns_lookups",    "broker_connection", "time_skew",
                                     "pending_reboot"};
  bool any = false;
  for (size_t i = 0; i < sizeof(live) / sizeof(live[0]); i++) any |= tab(doc, live[i]).cols != NULL;
  if (!any) return; /* an agent older than these tables */
  fprintf(f, "\nNow\n");
  live_trouble(f, doc);
  live_journal(f, doc);
  live_reach(f, doc);
}

static bool pseudo_fs(const char *type) {
  static const char *const skip[] = {"proc", "sysfs", "devpts", "cgroup", "cgroup2", "securityfs", "debugfs",
                                     "tracefs", "pstore", "bpf", "mqueue", "hugetlbfs", "configfs", "fusectl",
                                     "autofs", "binfmt_misc", "rpc_pipefs", "nsfs", "efivarfs", "devtmpfs",
                                     "squashfs", "overlay", "ramfs", "selinuxfs", NULL};
  for (int i = 0; skip[i]; i++)
    if (strcmp(type, skip[i]) == 0) return true;
  return false;
}

static void disks_part(FILE *f, json_t *doc) {
  tab_t m = tab(doc, "mounts");
  if (!m.n) return;
  fprintf(f, "\nDisks\n  %-24s %-8s %10s %10s %5s\n", "PATH", "TYPE", "SIZE", "FREE", "USE%");
  for (size_t r = 0; r < m.n; r++) {
    const char *type = val(&m, r, "type");
    uint64_t bs = num(val(&m, r, "blocks_size")), blocks = num(val(&m, r, "blocks")),
             avail = num(val(&m, r, "blocks_available")), free_b = num(val(&m, r, "blocks_free"));
    /* tmpfs only where people put files: /tmp and /dev/shm. */
    const char *path = val(&m, r, "path");
    if (pseudo_fs(type) || blocks == 0 ||
        (strcmp(type, "tmpfs") == 0 && strcmp(path, "/tmp") && strcmp(path, "/dev/shm")))
      continue;
    char p[256], t[64], size[32], fr[32];
    human_bytes(size, sizeof(size), blocks * bs);
    human_bytes(fr, sizeof(fr), avail * bs);
    uint64_t used = blocks - (free_b <= blocks ? free_b : blocks);
    unsigned pct = used + avail ? (unsigned)((used * 100 + (used + avail) - 1) / (used + avail)) : 0;
    fprintf(f, "  %-24s %-8s %10s %10s %4u%%\n", S(p, val(&m, r, "path")), S(t, type), size, fr, pct);
  }
}

static void net_part(FILE *f, json_t *doc) {
  tab_t ifs = tab(doc, "interface_details"), ad = tab(doc, "interface_addresses"), rt = tab(doc, "routes"),
        dns = tab(doc, "dns_resolvers"), lp = tab(doc, "listening_ports");
  if (!ifs.n && !ad.n) return;
  fprintf(f, "\nNetwork\n");
  /* A page, not a dump: the rest is in --json (and each address lookup below is a scan). */
  size_t nifs = ifs.n < 32 ? ifs.n : 32;
  if (ad.n > 512) ad.n = 512;
  for (size_t r = 0; r < nifs; r++) {
    char n[64], mac[64], sp[32], addrs[1024] = "";
    const char *name = val(&ifs, r, "interface");
    size_t o = 0;
    for (size_t i = 0; i < ad.n; i++) {
      if (strcmp(val(&ad, i, "interface"), name)) continue;
      char a[128];
      int w = snprintf(addrs + o, sizeof(addrs) - o, "%s%s", o ? ", " : "", S(a, val(&ad, i, "address")));
      if (w < 0 || (size_t)w >= sizeof(addrs) - o) break;
      o += (size_t)w;
    }
    const char *speed = val(&ifs, r, "link_speed");
    char spd[16];
    bool known = speed[0] && strcmp(speed, "-1") && strcmp(speed, "0");
    snprintf(sp, sizeof(sp), "%s%s", known ? S(spd, speed) : "", known ? " Mb/s" : "");
    fprintf(f, "  %-10s %-18s %-10s %s\n", S(n, name), S(mac, val(&ifs, r, "mac")), sp, addrs);
  }
  if (ifs.n > nifs) fprintf(f, "  (%zu interfaces in all)\n", ifs.n);
  for (size_t r = 0; r < rt.n && r < 4096; r++) {
    const char *dst = val(&rt, r, "destination"), *mask = val(&rt, r, "netmask");
    if ((strcmp(dst, "0.0.0.0") == 0 || strcmp(dst, "::") == 0) && (strcmp(mask, "0") == 0 || !mask[0])) {
      char g[128], i[64];
      if (strcmp(val(&rt, r, "gateway"), "0.0.0.0") == 0 || strcmp(val(&rt, r, "gateway"), "::") == 0) continue;
      fprintf(f, "  default via %s dev %s\n", S(g, val(&rt, r, "gateway")), S(i, val(&rt, r, "interface")));
    }
  }
  if (dns.n) {
    fprintf(f, "  DNS:");
    for (size_t r = 0; r < dns.n; r++) {
      char a[256];
      if (strcmp(val(&dns, r, "type"), "nameserver") == 0) fprintf(f, " %s", S(a, val(&dns, r, "address")));
      else if (strcmp(val(&dns, r, "type"), "search") == 0) fprintf(f, " (search %s)", S(a, val(&dns, r, "address")));
    }
    fputc('\n', f);
  }
  if (lp.n) {
    fprintf(f, "  Listening:");
    size_t shown = 0;
    for (size_t r = 0; r < lp.n && shown < 24; r++) {
      char pr[16], a[128], p[16];
      const char *proto = val(&lp, r, "protocol");
      /* osquery gives the IP protocol number: 6 tcp, 17 udp. */
      const char *pname = strcmp(proto, "6") == 0 ? "tcp" : strcmp(proto, "17") == 0 ? "udp" : S(pr, proto);
      if (!val(&lp, r, "port")[0] || strcmp(val(&lp, r, "port"), "0") == 0) continue;
      fprintf(f, " %s/%s:%s", pname, S(a, val(&lp, r, "address")), S(p, val(&lp, r, "port")));
      shown++;
    }
    if (lp.n > shown) fprintf(f, " (%zu in all)", lp.n);
    fputc('\n', f);
  }
}

static void software_part(FILE *f, json_t *doc) {
  tab_t deb = tab(doc, "deb_packages"), rpm = tab(doc, "rpm_packages"), units = tab(doc, "systemd_units"),
        users = tab(doc, "logged_in_users"), bat = tab(doc, "battery");
  fputc('\n', f);
  if (deb.n || rpm.n)
    line(f, "Packages", "%zu%s%s", deb.n ? deb.n : rpm.n, deb.n ? " deb" : " rpm", " (--json lists them)");
  if (units.n) {
    size_t failed = 0;
    char names[1024] = "";
    size_t o = 0;
    for (size_t r = 0; r < units.n; r++) {
      if (strcmp(val(&units, r, "active_state"), "failed")) continue;
      failed++;
      char u[256];
      int w = snprintf(names + o, sizeof(names) - o, "%s%s", o ? ", " : "", S(u, val(&units, r, "id")));
      if (w > 0 && (size_t)w < sizeof(names) - o) o += (size_t)w;
    }
    line(f, "Services", "%zu units, %zu failed%s%s", units.n, failed, failed ? ": " : "", names);
  }
  for (size_t r = 0; r < users.n; r++) {
    if (strcmp(val(&users, r, "type"), "user")) continue;
    char u[128], t[64], h[256], when[40];
    console_iso(when, sizeof(when), num(val(&users, r, "time")) * 1000, false);
    const char *host = val(&users, r, "host");
    line(f, "Logged in", "%s on %s since %s%s%s", S(u, val(&users, r, "user")), S(t, val(&users, r, "tty")), when,
         host[0] ? " from " : "", S(h, host));
  }
  for (size_t r = 0; r < bat.n; r++) {
    char p[32], s[64], h[64];
    line(f, "Battery", "%s%%, %s%s%s", S(p, val(&bat, r, "percent_remaining")), S(s, val(&bat, r, "state")),
         val(&bat, r, "health")[0] ? ", health " : "", S(h, val(&bat, r, "health")));
  }
}

static void failures(FILE *f, json_t *doc) {
  const char *name;
  json_t *t;
  bool any = false;
  json_object_foreach(json_object_get(doc, "tables"), name, t) {
    const char *e = json_string_value(json_object_get(t, "error"));
    if (!e) continue;
    char n[64], w[512];
    if (!any) fprintf(f, "\nNot collected\n");
    any = true;
    fprintf(f, "  %-20s %s\n", S(n, name), S(w, e));
  }
}

void console_report_print(FILE *f, json_t *doc) {
  head(f, doc);
  system_part(f, doc);
  live_part(f, doc);
  disks_part(f, doc);
  net_part(f, doc);
  software_part(f, doc);
  failures(f, doc);
}

int console_report_json(FILE *f, json_t *doc) {
  if (json_dumpf(doc, f, JSON_COMPACT | JSON_ENSURE_ASCII | JSON_PRESERVE_ORDER)) return TT_EIO;
  fputc('\n', f);
  return 0;
}

bool console_table_ok(json_t *t) {
  json_t *cols = json_object_get(t, "columns"), *rows = json_object_get(t, "rows"), *c, *r;
  size_t i, k;
  if (!json_is_object(t) || !json_is_array(cols) || !json_is_array(rows) || json_array_size(cols) == 0 ||
      json_array_size(cols) > 64)
    return false;
  json_array_foreach(cols, i, c) if (!json_is_string(c)) return false;
  json_array_foreach(rows, i, r) {
    if (!json_is_array(r) || json_array_size(r) != json_array_size(cols)) return false;
    json_array_foreach(r, k, c) if (!json_is_string(c)) return false;
  }
  json_t *e = json_object_get(t, "error");
  return !e || json_is_string(e);
}

json_t *console_report_parse(const char *buf, size_t n, char *err, size_t errlen) {
  json_error_t je;
  json_t *doc = json_loadb(buf, n, JSON_REJECT_DUPLICATES, &je);
  if (!doc) {
    /* Not je.text: it quotes the offending byte, which may be a control character. */
    snprintf(err, errlen, "the device's report is not JSON (at byte %d)", je.position);
    return NULL;
  }
  json_t *tables = json_object_get(doc, "tables");
  const char *name;
  json_t *t;
  if (!json_is_object(doc) || !json_is_object(tables)) goto bad;
  json_object_foreach(tables, name, t) if (!console_table_ok(t)) goto bad;
  return doc;
bad:
  snprintf(err, errlen, "the device's report is not in the expected form (tables of columns and rows of strings)");
  json_decref(doc);
  return NULL;
}
