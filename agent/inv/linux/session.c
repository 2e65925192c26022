/* Who and what runs the machine, under osquery's names: systemd's units (through systemctl),
 * the login records of utmp, and the batteries of /sys/class/power_supply. */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <utmpx.h>
#include "linux.h"
#include "scan.h"
#include "tt/err.h"
#include "tt/hex.h"

/* What systemctl says about a unit, and a job's type ("verify-active" is the longest). */
#define SESS_ERR_MAX 256
#define SESS_JOBS_MAX 1024
#define SESS_JOBTYPE_MAX 32
/* A power supply's name in sysfs ("BAT0", "hidpp_battery_0"). */
#define SESS_NAME_MAX 128
/* A capacity past this (a million Ah) is a broken driver or file, not a battery: unknown,
 * which also keeps the minutes arithmetic far from overflow. */
#define SESS_MAH_MAX 1000000000

/* osquery's unit_file_state too; all of its columns. */
const char *const inv_linux_systemd_units_cols[] = {
    "id",        "description", "load_state", "active_state",  "sub_state", "unit_file_state", "following",
    "object_path", "job_id",    "job_type",   "job_path",      "fragment_path", "user",         "source_path", NULL};
/* osquery's sid and registry_hive are Windows-only. */
const char *const inv_linux_logged_in_users_cols[] = {"type", "user", "tty", "host", "time", "pid", NULL};
/* osquery's battery table (macOS, Windows); its manufacture_date (macOS) and chemistry
 * (Windows) are left out. Capacities in mAh, amperage in mA, voltage in mV, as osquery's. */
const char *const inv_linux_battery_cols[] = {
    "manufacturer",    "model",          "serial_number",     "cycle_count",        "state",
    "charging",        "charged",        "designed_capacity", "max_capacity",       "current_capacity",
    "percent_remaining", "amperage",     "voltage",           "minutes_until_empty", "minutes_to_full_charge",
    "health",          "condition",      NULL};

/* ---- text helpers ------------------------------------------------------------------------ */

/* An optionally negative decimal that fits an int64. */
static bool dec_i64(const char *s, int64_t *out) {
  bool neg = *s == '-';
  uint64_t v;
  if (!inv_parse_u64(neg ? s + 1 : s, &v) || v > (uint64_t)INT64_MAX) return false;
  *out = neg ? -(int64_t)v : (int64_t)v;
  return true;
}

static void i64s(char *out, size_t cap, int64_t v) { snprintf(out, cap, "%lld", (long long)v); }

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

/* ---- systemd_units ----------------------------------------------------------------------- */

/* The properties asked of every unit: `systemctl show` prints them as Key=Value lines, one
 * block per unit, blocks apart by a blank line; an asked-for property prints even empty. It
 * gives every column list-units does and the unit files, user and following besides, and a
 * value is the rest of its line, so a description with spaces or '=' parses whole. */
#define SESS_PROPS "Id,Description,LoadState,ActiveState,SubState,UnitFileState,Following,Job,FragmentPath,SourcePath,User"

enum { U_ID, U_DESC, U_LOAD, U_ACTIVE, U_SUB, U_FILE, U_FOLLOW, U_JOB, U_FRAG, U_SRC, U_USER, U_N };
static const char *const g_unit_keys[U_N] = {"Id",        "Description", "LoadState",    "ActiveState",
                                             "SubState",  "UnitFileState", "Following",  "Job",
                                             "FragmentPath", "SourcePath", "User"};

typedef struct {
  uint32_t id;
  char type[SESS_JOBTYPE_MAX];
} sess_job_t;

/* The object path systemd gives a unit: its name with every byte but a letter (or a digit
 * after the first) as _xx (sd_bus_path_encode). */
static void unit_object_path(const char *id, char *out, size_t cap) {
  size_t n = (size_t)snprintf(out, cap, "/org/freedesktop/systemd1/unit/");
  if (!*id && n + 2 <= cap) memcpy(out + n++, "_", 2);
  for (const char *p = id; *p && n + 4 <= cap; p++) {
    unsigned char c = (unsigned char)*p;
    bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'), digit = c >= '0' && c <= '9';
    if (alpha || (digit && p > id)) {
      out[n++] = (char)c;
    } else {
      out[n++] = '_';
      tt_hex_byte(out + n, c);
      n += 2;
    }
  }
  out[n < cap ? n : cap - 1] = 0;
}

/* The types of the queued jobs (`systemctl list-jobs`: "ID UNIT TYPE STATE"), asked only when
 * a unit has one. A job that ends between the two calls just has no type. */
static size_t list_jobs(const inv_env_t *env, sess_job_t *jobs, size_t max) {
  char *argv[] = {"systemctl", "list-jobs", "--no-pager", "--no-legend", "--full", NULL};
  tt_buf_t out;
  int st;
  char err[SESS_ERR_MAX];
  size_t n = 0;
  if (inv_run(env, argv, &out, &st, err, sizeof(err))) return 0;
  char *cur = (char *)out.data + out.off, *end = cur + out.len, *line;
  while (st == 0 && n < max && (line = inv_next_line(&cur, end))) {
    char id[16], type[SESS_JOBTYPE_MAX];
    uint64_t v;
    if (sscanf(line, "%15s %*s %31s", id, type) != 2 || !inv_parse_u64(id, &v) || v == 0 || v > UINT32_MAX) continue;
    jobs[n].id = (uint32_t)v;
    snprintf(jobs[n].type, sizeof(jobs[n].type), "%s", type);
    n++;
  }
  tt_buf_free(&out);
  return n;
}

static int add_unit(inv_table_t *tab, char *const *v, const sess_job_t *jobs, size_t njobs) {
  char path[INV_CELL_MAX], job_id[16] = "0", job_path[64] = "/";
  const char *job_type = "";
  uint64_t job;
  unit_object_path(v[U_ID], path, sizeof(path));
  /* No job: osquery's id 0 and path "/", as ListUnits gives them. */
  if (inv_parse_u64(v[U_JOB], &job) && job > 0 && job <= UINT32_MAX) {
    snprintf(job_id, sizeof(job_id), "%u", (unsigned)job);
    snprintf(job_path, sizeof(job_path), "/org/freedesktop/systemd1/job/%u", (unsigned)job);
    for (size_t i = 0; i < njobs; i++)
      if (jobs[i].id == job) job_type = jobs[i].type;
  }
  const char *row[] = {v[U_ID],   v[U_DESC], v[U_LOAD], v[U_ACTIVE], v[U_SUB],  v[U_FILE], v[U_FOLLOW],
                       path,      job_id,    job_type,  job_path,    v[U_FRAG], v[U_USER], v[U_SRC]};
  return inv_table_add(tab, row);
}

/* Every unit systemd has loaded (list-units --all's set: `show` of the pattern "*"). */
void inv_linux_systemd_units(const inv_env_t *env, inv_table_t *tab) {
  char p[PATH_MAX], err[SESS_ERR_MAX];
  struct stat sb;
  /* sd_booted()'s test: systemd as init makes this directory; without it systemctl has
   * no manager to ask. */
  if (inv_path(env, p, sizeof(p), "/run/systemd/system") || stat(p, &sb) || !S_ISDIR(sb.st_mode)) {
    inv_table_fail(tab, "not booted with systemd (no /run/systemd/system)");
    return;
  }
  char *argv[] = {"systemctl", "show", "--no-pager", "--property=" SESS_PROPS, "*", NULL};
  tt_buf_t out;
  int st, rc = inv_run(env, argv, &out, &st, err, sizeof(err));
  if (rc) {
    inv_table_fail(tab, "%s", err);
    return;
  }
  if (st != 0) {
    inv_table_fail(tab, "systemctl show exited with status %d", st);
    tt_buf_free(&out);
    return;
  }
  /* Two passes: the first finds whether any unit has a job (then list-jobs gives the types),
   * the second adds the rows. Values point into out, cut in place. */
  char *start = (char *)out.data + out.off, *end = start + out.len;
  for (char *c = start; c < end; c++)
    if (*c == '\n') *c = 0;
  bool any_job = false;
  for (char *line = start; line < end; line += strlen(line) + 1) {
    uint64_t j;
    if (!strncmp(line, "Job=", 4) && inv_parse_u64(line + 4, &j) && j > 0) any_job = true;
  }
  sess_job_t *jobs = any_job ? calloc(SESS_JOBS_MAX, sizeof(*jobs)) : NULL;
  size_t njobs = jobs ? list_jobs(env, jobs, SESS_JOBS_MAX) : 0;
  char *v[U_N];
  bool have = false;
  for (int k = 0; k < U_N; k++) v[k] = "";
  for (char *line = start, *next; ; line = next) {
    bool last = line >= end;
    next = last ? end : line + strlen(line) + 1; /* before the line is cut at its '=' */
    if (last || !*line) {
      /* A block ends: a unit, if it said its name. */
      if (have && v[U_ID][0] && add_unit(tab, v, jobs, njobs)) break;
      for (int k = 0; k < U_N; k++) v[k] = "";
      have = false;
      if (last) break;
      continue;
    }
    char *eq = strchr(line, '=');
    if (!eq) continue; /* not a property line: skipped */
    *eq = 0;
    for (int k = 0; k < U_N; k++) {
      if (strcmp(line, g_unit_keys[k])) continue;
      v[k] = eq + 1;
      have = true;
    }
  }
  free(jobs);
  tt_buf_free(&out);
}

/* ---- logged_in_users --------------------------------------------------------------------- */

static const char *utmp_type(short t) {
  switch (t) {
  case EMPTY: return "empty";
  case RUN_LVL: return "runlevel";
  case BOOT_TIME: return "boot_time";
  case NEW_TIME: return "new_time";
  case OLD_TIME: return "old_time";
  case INIT_PROCESS: return "init";
  case LOGIN_PROCESS: return "login";
  case USER_PROCESS: return "user";
  case DEAD_PROCESS: return "dead";
#ifdef ACCOUNTING
  case ACCOUNTING: return "accounting";
#endif
  default: return "unknown";
  }
}

/* A fixed-size utmp field, NUL-terminated or not, as a string. */
static void utmp_str(char *out, size_t cap, const char *field, size_t len) {
  size_t n = strnlen(field, len);
  if (n >= cap) n = cap - 1;
  memcpy(out, field, n);
  out[n] = 0;
}

/* Every record of utmp but init's (pid 1), as osquery lists them: record by record in
 * glibc's struct utmpx layout, a partial record at the end ignored. */
void inv_linux_logged_in_users(const inv_env_t *env, inv_table_t *tab) {
  static const char *const paths[] = {"/var/run/utmp", "/run/utmp"};
  tt_buf_t b;
  int rc = 0;
  for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
    rc = inv_read(env, paths[i], &b);
    if (rc != -ENOENT) break;
  }
  if (rc) {
    inv_table_fail(tab, "cannot read /var/run/utmp or /run/utmp: %s", tt_strerror(rc));
    return;
  }
  const uint8_t *p = b.data + b.off;
  for (size_t off = 0; off + sizeof(struct utmpx) <= b.len; off += sizeof(struct utmpx)) {
    struct utmpx u;
    memcpy(&u, p + off, sizeof(u)); /* the file's bytes may sit at any alignment */
    if (u.ut_pid == 1) continue;
    char user[sizeof(u.ut_user) + 1], tty[sizeof(u.ut_line) + 1], host[sizeof(u.ut_host) + 1], t[24], pid[24];
    utmp_str(user, sizeof(user), u.ut_user, sizeof(u.ut_user));
    utmp_str(tty, sizeof(tty), u.ut_line, sizeof(u.ut_line));
    utmp_str(host, sizeof(host), u.ut_host, sizeof(u.ut_host));
    i64s(t, sizeof(t), (int64_t)u.ut_tv.tv_sec);
    i64s(pid, sizeof(pid), (int64_t)u.ut_pid);
    const char *row[] = {utmp_type(u.ut_type), user, tty, host, t, pid};
    if (inv_table_add(tab, row)) break;
  }
  tt_buf_free(&b);
}

/* ---- battery ----------------------------------------------------------------------------- */

/* A power supply's attribute, or "" if it has none. */
static void ps_value(const inv_env_t *env, const char *ps, const char *attr, char *out, size_t cap) {
  if (read_value(env, out, cap, "/sys/class/power_supply/%s/%s", ps, attr)) out[0] = 0;
}

/* A numeric attribute; false if missing or not a number. */
static bool ps_num(const inv_env_t *env, const char *ps, const char *attr, int64_t *v) {
  char s[64];
  ps_value(env, ps, attr, s, sizeof(s));
  return dec_i64(s, v);
}

/* Whether a mains supply is online: 1, 0, or -1 if the machine shows none. */
static int mains_online(const inv_env_t *env, DIR *d) {
  int online = -1;
  struct dirent *e;
  rewinddir(d);
  while ((e = readdir(d))) {
    char type[32];
    int64_t on;
    if (e->d_name[0] == '.' || strlen(e->d_name) >= SESS_NAME_MAX) continue;
    ps_value(env, e->d_name, "type", type, sizeof(type));
    if (strcmp(type, "Mains") || !ps_num(env, e->d_name, "online", &on)) continue;
    if (on) return 1;
    online = 0;
  }
  return online;
}

/* A capacity in mAh: the charge_* attribute (µAh), or energy_* (µWh) over the design
 * voltage (µV); -1 if the battery gives neither. */
static int64_t capacity_mah(const inv_env_t *env, const char *ps, const char *which, int64_t uv) {
  char a[32];
  int64_t v, mah = -1;
  snprintf(a, sizeof(a), "charge_%s", which);
  if (ps_num(env, ps, a, &v) && v >= 0) {
    mah = v / 1000;
  } else {
    snprintf(a, sizeof(a), "energy_%s", which);
    if (ps_num(env, ps, a, &v) && v >= 0 && uv > 0 && v <= INT64_MAX / 1000) mah = v * 1000 / uv;
  }
  return mah <= SESS_MAH_MAX ? mah : -1;
}

static void opt_num(char *out, size_t cap, int64_t v) {
  if (v < 0)
    out[0] = 0;
  else
    i64s(out, cap, v);
}

/* What osquery's macOS "condition" would say, from the kernel's health word. */
static const char *condition(const char *health) {
  if (!health[0] || !strcmp(health, "Unknown")) return "";
  if (!strcmp(health, "Good")) return "Normal";
  if (!strcmp(health, "Dead")) return "Permanent Failure";
  return "Service Needed";
}

static int add_battery(const inv_env_t *env, inv_table_t *tab, const char *ps, int mains) {
  char maker[INV_CELL_MAX], model[INV_CELL_MAX], serial[INV_CELL_MAX], status[32], health[64];
  ps_value(env, ps, "manufacturer", maker, sizeof(maker));
  ps_value(env, ps, "model_name", model, sizeof(model));
  ps_value(env, ps, "serial_number", serial, sizeof(serial));
  ps_value(env, ps, "status", status, sizeof(status));
  ps_value(env, ps, "health", health, sizeof(health));
  bool discharging = !strcmp(status, "Discharging"), charging = !strcmp(status, "Charging"),
       full = !strcmp(status, "Full");
  int64_t present = 1, cycles = -1, pct = -1, uv_now = -1, uv_design = -1, ua = -1, uw = -1, secs;
  ps_num(env, ps, "present", &present);
  ps_num(env, ps, "cycle_count", &cycles);
  ps_num(env, ps, "voltage_now", &uv_now);
  ps_num(env, ps, "voltage_min_design", &uv_design);
  int64_t uv = uv_design > 0 ? uv_design : uv_now;
  int64_t design = capacity_mah(env, ps, "full_design", uv), max = capacity_mah(env, ps, "full", uv),
          now = capacity_mah(env, ps, "now", uv);
  if (!ps_num(env, ps, "capacity", &pct) && now >= 0 && max > 0) pct = now * 100 / max;
  /* The current in mA, signed as osquery's: positive charging, negative discharging, whatever
   * sign the driver uses. From power over voltage when the driver gives only power. */
  int64_t ma = -1;
  if (ps_num(env, ps, "current_now", &ua))
    ma = (ua < 0 ? -ua : ua) / 1000;
  else if (ps_num(env, ps, "power_now", &uw) && uv_now > 0 && uw >= 0 && uw <= INT64_MAX / 1000)
    ma = uw * 1000 / uv_now;
  char amps[24] = "";
  if (ma >= 0) i64s(amps, sizeof(amps), discharging ? -ma : ma);
  /* Minutes: the driver's own estimate, else charge over current; -1 while not applicable or
   * not known, as osquery's "still being calculated". */
  int64_t to_empty = -1, to_full = -1;
  if (discharging) {
    if (ps_num(env, ps, "time_to_empty_now", &secs) && secs >= 0)
      to_empty = secs / 60;
    else if (ma > 0 && now >= 0)
      to_empty = now * 60 / ma;
  }
  if (full) {
    to_full = 0;
  } else if (charging) {
    if (ps_num(env, ps, "time_to_full_now", &secs) && secs >= 0)
      to_full = secs / 60;
    else if (ma > 0 && now >= 0 && max >= now)
      to_full = (max - now) * 60 / ma;
  }
  /* Where the power comes from: the mains supply if the machine shows one, else the
   * battery's own status. */
  const char *state = "";
  if (present == 0)
    state = "Off Line";
  else if (mains >= 0)
    state = mains ? "AC Power" : "Battery Power";
  else if (discharging)
    state = "Battery Power";
  else if (charging || full || !strcmp(status, "Not charging"))
    state = "AC Power";
  char cyc[24], des[24], mx[24], cur[24], per[24], volt[24], te[24], tf[24];
  opt_num(cyc, sizeof(cyc), cycles);
  opt_num(des, sizeof(des), design);
  opt_num(mx, sizeof(mx), max);
  opt_num(cur, sizeof(cur), now);
  opt_num(per, sizeof(per), pct);
  opt_num(volt, sizeof(volt), uv_now < 0 ? -1 : uv_now / 1000);
  i64s(te, sizeof(te), to_empty);
  i64s(tf, sizeof(tf), to_full);
  const char *row[] = {maker, model, serial, cyc,  state, charging ? "1" : "0", full ? "1" : "0", des,   mx,
                       cur,   per,   amps,   volt, te,    tf,                   health,           condition(health)};
  return inv_table_add(tab, row);
}

/* Every power supply of type Battery that powers the machine (scope "Device" is a mouse's or
 * a headset's); none is zero rows. */
void inv_linux_battery(const inv_env_t *env, inv_table_t *tab) {
  char dir[PATH_MAX];
  if (inv_path(env, dir, sizeof(dir), "/sys/class/power_supply")) {
    inv_table_fail(tab, "root path too long");
    return;
  }
  DIR *d = opendir(dir);
  if (!d) {
    inv_table_fail(tab, "cannot list /sys/class/power_supply: %s", strerror(errno));
    return;
  }
  int mains = mains_online(env, d);
  struct dirent *e;
  rewinddir(d);
  while ((e = readdir(d))) {
    char type[32], scope[32];
    if (e->d_name[0] == '.' || strlen(e->d_name) >= SESS_NAME_MAX) continue;
    ps_value(env, e->d_name, "type", type, sizeof(type));
    ps_value(env, e->d_name, "scope", scope, sizeof(scope));
    if (strcmp(type, "Battery") || !strcmp(scope, "Device")) continue;
    if (add_battery(env, tab, e->d_name, mains)) break;
  }
  closedir(d);
}
