/* The session collectors (agent/inv/linux/session.c): systemd's units through stand-in
 * systemctl programs (one that answers, one that hangs, one that never stops talking), utmp
 * records written here, batteries in the captured root and in trees made here. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <utmpx.h>

#include <cmocka.h>

#include "linux.h"
#include "tt/err.h"

#define FX TT_FIXTURES "/linux-a"
#define BIN TT_FIXTURES "/bin"

static char g_dir[512];

static int setup(void **state) {
  (void)state;
  const char *base = getenv("TT_TEST_TMP");
  snprintf(g_dir, sizeof(g_dir), "%s/inv_session_XXXXXX", base ? base : "/tmp");
  return mkdtemp(g_dir) ? 0 : -1;
}

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

static long find(const inv_table_t *t, const char *c, const char *v) {
  for (size_t r = 0; r < t->nrows; r++)
    if (!strcmp(inv_cell(t, r, col(t, c)), v)) return (long)r;
  return -1;
}

/* A file under the temp dir, its folders made on the way. */
static void put(const char *rel, const void *data, size_t n) {
  char p[1024];
  snprintf(p, sizeof(p), "%s/%s", g_dir, rel);
  for (char *s = p + strlen(g_dir) + 1; (s = strchr(s, '/')); s++) {
    *s = 0;
    mkdir(p, 0755);
    *s = '/';
  }
  FILE *f = fopen(p, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(data, 1, n, f), n);
  fclose(f);
}
static void puts_at(const char *rel, const char *text) { put(rel, text, strlen(text)); }

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void test_systemd_units(void **state) {
  (void)state;
  inv_env_t env = {.root = FX, .path = BIN "/systemd"};
  inv_table_t t;
  RUN(&env, systemd_units, &t);
  assert_string_equal(t.error, "");
  /* Seven units; the block without an Id is not one. */
  assert_int_equal(t.nrows, 7);
  long r = find(&t, "id", "ssh.service");
  assert_string_equal(get(&t, r, "description"), "OpenBSD Secure Shell server");
  assert_string_equal(get(&t, r, "load_state"), "loaded");
  assert_string_equal(get(&t, r, "active_state"), "active");
  assert_string_equal(get(&t, r, "sub_state"), "running");
  assert_string_equal(get(&t, r, "unit_file_state"), "enabled");
  assert_string_equal(get(&t, r, "fragment_path"), "/lib/systemd/system/ssh.service");
  assert_string_equal(get(&t, r, "object_path"), "/org/freedesktop/systemd1/unit/ssh_2eservice");
  assert_string_equal(get(&t, r, "job_id"), "0");
  assert_string_equal(get(&t, r, "job_type"), "");
  assert_string_equal(get(&t, r, "job_path"), "/");
  r = find(&t, "id", "-.mount");
  assert_string_equal(get(&t, r, "object_path"), "/org/freedesktop/systemd1/unit/_2d_2emount");
  assert_string_equal(get(&t, r, "source_path"), "/etc/fstab");
  assert_string_equal(get(&t, r, "unit_file_state"), "generated");
  r = find(&t, "id", "postgresql@15-main.service");
  assert_string_equal(get(&t, r, "user"), "postgres");
  assert_string_equal(get(&t, r, "object_path"), "/org/freedesktop/systemd1/unit/postgresql_4015_2dmain_2eservice");
  /* A queued job: its type from list-jobs. */
  r = find(&t, "id", "apt-daily.service");
  assert_string_equal(get(&t, r, "job_id"), "1234");
  assert_string_equal(get(&t, r, "job_type"), "start");
  assert_string_equal(get(&t, r, "job_path"), "/org/freedesktop/systemd1/job/1234");
  assert_string_equal(get(&t, r, "description"), "Daily apt \xef\xbf\xbd download activities");
  r = find(&t, "id", "dev-ttyS0.device");
  assert_string_equal(get(&t, r, "following"), "sys-devices-platform-serial8250-tty-ttyS0.device");
  r = find(&t, "id", "nfs-server.service");
  assert_string_equal(get(&t, r, "load_state"), "not-found");
  /* A description with '=' in it is whole. */
  r = find(&t, "id", "backup.service");
  assert_string_equal(get(&t, r, "description"), "Run backup with MODE=full (nightly)");
  assert_string_equal(get(&t, r, "active_state"), "failed");
  assert_string_equal(get(&t, r, "job_id"), "0");
  inv_table_free(&t);

  /* Not booted with systemd: said so, systemctl not asked. */
  inv_env_t bare = {.root = g_dir, .path = BIN "/systemd"};
  RUN(&bare, systemd_units, &t);
  assert_int_equal(t.nrows, 0);
  assert_non_null(strstr(t.error, "not booted with systemd"));
  inv_table_free(&t);

  /* No systemctl. */
  inv_env_t none = {.root = FX, .path = "/nonexistent"};
  RUN(&none, systemd_units, &t);
  assert_int_equal(t.nrows, 0);
  assert_string_equal(t.error, "systemctl is not installed");
  inv_table_free(&t);

  /* One that hangs is stopped at the timeout. */
  inv_env_t hang = {.root = FX, .path = BIN "/hang", .timeout_ms = 200};
  uint64_t t0 = now_ms();
  RUN(&hang, systemd_units, &t);
  assert_true(now_ms() - t0 < 5000);
  assert_int_equal(t.nrows, 0);
  assert_non_null(strstr(t.error, "timed out after 200ms"));
  inv_table_free(&t);

  /* One that never stops talking is stopped at the output cap. */
  inv_env_t loud = {.root = FX, .path = BIN "/loud", .timeout_ms = 20000};
  RUN(&loud, systemd_units, &t);
  assert_int_equal(t.nrows, 0);
  assert_non_null(strstr(t.error, "more than"));
  inv_table_free(&t);
}

static struct utmpx rec(short type, pid_t pid, const char *line, const char *user, const char *host, int32_t sec) {
  struct utmpx u;
  memset(&u, 0, sizeof(u));
  u.ut_type = type;
  u.ut_pid = pid;
  strncpy(u.ut_line, line, sizeof(u.ut_line));
  strncpy(u.ut_user, user, sizeof(u.ut_user));
  strncpy(u.ut_host, host, sizeof(u.ut_host));
  u.ut_tv.tv_sec = sec;
  return u;
}

static void test_logged_in_users(void **state) {
  (void)state;
  struct utmpx recs[8];
  char full[sizeof(recs[0].ut_user) + 1];
  memset(full, 'a', sizeof(full) - 1);
  full[sizeof(full) - 1] = 0;
  recs[0] = rec(BOOT_TIME, 0, "~", "reboot", "6.1.0-13-amd64", 1700000000);
  recs[1] = rec(RUN_LVL, 53, "~", "runlevel", "6.1.0-13-amd64", 1700000005);
  recs[2] = rec(INIT_PROCESS, 1, "", "", "", 1700000006);
  recs[3] = rec(LOGIN_PROCESS, 812, "tty1", "LOGIN", "", 1700000010);
  /* A user name filling its field, with no NUL after it. */
  recs[4] = rec(USER_PROCESS, 4242, "pts/0", full, "192.0.2.7", 1700000123);
  recs[5] = rec(USER_PROCESS, 4300, "pts/1", "bob", "h\xffst", 1700000200);
  recs[6] = rec(DEAD_PROCESS, 4100, "pts/2", "", "", 1700000300);
  recs[7] = rec(99, 5, "x", "", "", 0);
  char blob[sizeof(recs) + 100];
  memcpy(blob, recs, sizeof(recs));
  memset(blob + sizeof(recs), 0x5a, 100); /* a torn record at the end */
  put("run/utmp", blob, sizeof(blob));

  inv_env_t env = {.root = g_dir};
  inv_table_t t;
  RUN(&env, logged_in_users, &t);
  assert_string_equal(t.error, "");
  assert_int_equal(t.nrows, 7); /* init's record (pid 1) is not listed */
  long r = find(&t, "pid", "4242");
  assert_string_equal(get(&t, r, "type"), "user");
  assert_string_equal(get(&t, r, "user"), full);
  assert_string_equal(get(&t, r, "tty"), "pts/0");
  assert_string_equal(get(&t, r, "host"), "192.0.2.7");
  assert_string_equal(get(&t, r, "time"), "1700000123");
  r = find(&t, "pid", "4300");
  assert_string_equal(get(&t, r, "host"), "h\xef\xbf\xbdst");
  assert_string_equal(get(&t, find(&t, "pid", "0"), "type"), "boot_time");
  assert_string_equal(get(&t, find(&t, "pid", "53"), "type"), "runlevel");
  assert_string_equal(get(&t, find(&t, "pid", "812"), "type"), "login");
  assert_string_equal(get(&t, find(&t, "pid", "4100"), "type"), "dead");
  assert_string_equal(get(&t, find(&t, "pid", "5"), "type"), "unknown");
  assert_int_equal(find(&t, "pid", "1"), -1);
  inv_table_free(&t);

  /* No utmp at all: an error, not an empty success. */
  inv_env_t none = {.root = FX};
  RUN(&none, logged_in_users, &t);
  assert_int_equal(t.nrows, 0);
  assert_non_null(strstr(t.error, "utmp"));
  inv_table_free(&t);
}

static void test_battery(void **state) {
  (void)state;
  inv_env_t env = {.root = FX};
  inv_table_t t;
  RUN(&env, battery, &t);
  assert_string_equal(t.error, "");
  /* BAT0; not the mouse's battery (scope Device), not the mains supply. */
  assert_int_equal(t.nrows, 1);
  long r = 0;
  assert_string_equal(get(&t, r, "manufacturer"), "SMP");
  assert_string_equal(get(&t, r, "model"), "5B10W13975");
  assert_string_equal(get(&t, r, "serial_number"), "1234");
  assert_string_equal(get(&t, r, "cycle_count"), "87");
  assert_string_equal(get(&t, r, "state"), "Battery Power"); /* AC offline */
  assert_string_equal(get(&t, r, "charging"), "0");
  assert_string_equal(get(&t, r, "charged"), "0");
  /* µWh over the 11.55 V design voltage: 57.02 Wh is 4936 mAh. */
  assert_string_equal(get(&t, r, "designed_capacity"), "4936");
  assert_string_equal(get(&t, r, "max_capacity"), "4441");
  assert_string_equal(get(&t, r, "current_capacity"), "2220");
  assert_string_equal(get(&t, r, "percent_remaining"), "50");
  /* 9.68 W at 12.1 V, discharging: -800 mA; 2220 mAh at 800 mA is 166 minutes. */
  assert_string_equal(get(&t, r, "amperage"), "-800");
  assert_string_equal(get(&t, r, "voltage"), "12100");
  assert_string_equal(get(&t, r, "minutes_until_empty"), "166");
  assert_string_equal(get(&t, r, "minutes_to_full_charge"), "-1");
  assert_string_equal(get(&t, r, "health"), "");
  assert_string_equal(get(&t, r, "condition"), "");
  inv_table_free(&t);

  /* A charge-based battery charging with no mains supply shown, its driver's current
   * negative: charging is positive all the same. */
  puts_at("sys/class/power_supply/BAT1/type", "Battery\n");
  puts_at("sys/class/power_supply/BAT1/status", "Charging\n");
  puts_at("sys/class/power_supply/BAT1/charge_full_design", "5000000\n");
  puts_at("sys/class/power_supply/BAT1/charge_full", "4800000\n");
  puts_at("sys/class/power_supply/BAT1/charge_now", "3600000\n");
  puts_at("sys/class/power_supply/BAT1/current_now", "-1500000\n");
  puts_at("sys/class/power_supply/BAT1/voltage_now", "12600000\n");
  puts_at("sys/class/power_supply/BAT1/health", "Good\n");
  puts_at("sys/class/power_supply/BAT1/cycle_count", "lots\n");
  inv_env_t tmp = {.root = g_dir};
  RUN(&tmp, battery, &t);
  assert_string_equal(t.error, "");
  assert_int_equal(t.nrows, 1);
  assert_string_equal(get(&t, 0, "state"), "AC Power");
  assert_string_equal(get(&t, 0, "charging"), "1");
  assert_string_equal(get(&t, 0, "designed_capacity"), "5000");
  assert_string_equal(get(&t, 0, "max_capacity"), "4800");
  assert_string_equal(get(&t, 0, "current_capacity"), "3600");
  assert_string_equal(get(&t, 0, "percent_remaining"), "75");
  assert_string_equal(get(&t, 0, "amperage"), "1500");
  assert_string_equal(get(&t, 0, "voltage"), "12600");
  assert_string_equal(get(&t, 0, "minutes_to_full_charge"), "48");
  assert_string_equal(get(&t, 0, "minutes_until_empty"), "-1");
  assert_string_equal(get(&t, 0, "cycle_count"), ""); /* not a number */
  assert_string_equal(get(&t, 0, "health"), "Good");
  assert_string_equal(get(&t, 0, "condition"), "Normal");
  inv_table_free(&t);

  /* No battery: zero rows, no error. A machine with no power_supply class: an error. */
  puts_at("sys/class/power_supply/BAT1/type", "Mains\n");
  RUN(&tmp, battery, &t);
  assert_int_equal(t.nrows, 0);
  assert_string_equal(t.error, "");
  inv_table_free(&t);
  inv_env_t none = {.root = "/nonexistent-inventory-root"};
  RUN(&none, battery, &t);
  assert_non_null(strstr(t.error, "power_supply"));
  inv_table_free(&t);
}

/* This machine: each table either fills or says why not, as its files say it should. */
static void test_live(void **state) {
  (void)state;
  inv_env_t live = {.root = ""};
  inv_table_t t;
  struct stat sb;
  RUN(&live, systemd_units, &t);
  if (stat("/run/systemd/system", &sb) == 0 && access("/usr/bin/systemctl", X_OK) == 0) {
    assert_string_equal(t.error, "");
    assert_true(t.nrows > 0);
  } else {
    assert_int_equal(t.nrows, 0);
    assert_true(t.error[0] != 0);
  }
  inv_table_free(&t);
  RUN(&live, logged_in_users, &t);
  if (access("/run/utmp", R_OK) == 0 || access("/var/run/utmp", R_OK) == 0)
    assert_string_equal(t.error, "");
  else
    assert_non_null(strstr(t.error, "utmp"));
  inv_table_free(&t);
  RUN(&live, battery, &t);
  if (stat("/sys/class/power_supply", &sb) == 0) assert_string_equal(t.error, "");
  for (size_t i = 0; i < t.nrows; i++) {
    int pct = atoi(get(&t, (long)i, "percent_remaining"));
    assert_true(pct >= 0 && pct <= 100);
  }
  inv_table_free(&t);
}


static uint64_t g_rng = 0x2545f4914f6cdd1du;
static uint32_t rnd(uint32_t n) {
  g_rng ^= g_rng << 13;
  g_rng ^= g_rng >> 7;
  g_rng ^= g_rng << 17;
  return (uint32_t)(g_rng % n);
}

static size_t junk(char *out, size_t cap) {
  static const char *const bits[] = {"Id=", "Job=", "Job=7", "Description=", "User=", "=", "\n", "\n\n", "x.service",
                                     "-", "9", "99999999999999999999", "0", " ", "\xff", "Battery", "Mains",
                                     "Discharging", "Charging", "Full", "Device"};
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

/* systemctl's output, utmp and the battery files as junk: every collector runs to its end
 * (ASan and UBSan watching). */
static void test_garbage(void **state) {
  (void)state;
  static const char *const ps[] = {"type", "status", "present", "charge_full_design", "charge_full", "charge_now",
                                   "energy_full_design", "energy_full", "energy_now", "voltage_now",
                                   "voltage_min_design", "current_now", "power_now", "capacity", "time_to_empty_now",
                                   "time_to_full_now", "cycle_count", "health", "scope"};
  static const char script[] = "#!/bin/sh\nPATH=/usr/bin:/bin\nexec cat \"$(dirname \"$0\")/out.txt\"\n";
  char bin[1024], prog[1100], root[1024];
  snprintf(bin, sizeof(bin), "%s/junk/bin", g_dir);
  snprintf(prog, sizeof(prog), "%s/systemctl", bin);
  snprintf(root, sizeof(root), "%s/junk/root", g_dir);
  put("junk/bin/systemctl", script, strlen(script));
  assert_int_equal(chmod(prog, 0755), 0);
  puts_at("junk/root/run/systemd/system/.keep", "");
  puts_at("junk/root/sys/class/power_supply/AC/type", "Mains\n");
  inv_env_t env = {.root = root, .path = bin};
  static char buf[4096];
  for (int round = 0; round < 100; round++) {
    put("junk/bin/out.txt", buf, junk(buf, sizeof(buf)));
    for (size_t i = 0; i < sizeof(ps) / sizeof(ps[0]); i++) {
      char rel[256];
      snprintf(rel, sizeof(rel), "junk/root/sys/class/power_supply/BAT%d/%s", round % 2, ps[i]);
      put(rel, buf, rnd(2) ? junk(buf, 40) : (size_t)snprintf(buf, sizeof(buf), "%d\n", (int)rnd(2000000000) - 1000));
    }
    if (rnd(2)) put("junk/root/sys/class/power_supply/BAT0/type", "Battery\n", 8);
    for (size_t i = 0; i < sizeof(buf); i++) buf[i] = (char)rnd(256);
    put("junk/root/run/utmp", buf, rnd(sizeof(buf)));
    inv_table_t t;
    RUN(&env, systemd_units, &t);
    inv_table_free(&t);
    RUN(&env, logged_in_users, &t);
    inv_table_free(&t);
    RUN(&env, battery, &t);
    inv_table_free(&t);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_systemd_units),
      cmocka_unit_test(test_logged_in_users),
      cmocka_unit_test(test_battery),
      cmocka_unit_test(test_live),
      cmocka_unit_test(test_garbage),
  };
  return cmocka_run_group_tests(tests, setup, NULL);
}
