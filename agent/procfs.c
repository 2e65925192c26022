/* Readers of what the kernel says about processes and cgroups: the text of
 * /proc/self/mountinfo, /proc/PID/cgroup and /proc/PID/stat. Pure functions with no
 * allocation, no stdio and no locale, so that the keeper process (contain.c) may use them
 * between fork and exit. Unit-tested in tests/unit/agent/test_agent_procfs.c. */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include "agent.h"

size_t agent_procfs_utoa(char *out, size_t cap, uint64_t v) {
  char tmp[24];
  size_t n = 0;
  do {
    tmp[n++] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  if (n + 1 > cap) {
    if (cap) out[0] = '\0';
    return 0;
  }
  for (size_t i = 0; i < n; i++) out[i] = tmp[n - 1 - i];
  out[n] = '\0';
  return n;
}

pid_t agent_procfs_pid_name(const char *name) {
  uint64_t v = 0;
  if (*name < '1' || *name > '9') return 0;
  for (; *name; name++) {
    if (*name < '0' || *name > '9') return 0;
    v = v * 10 + (uint64_t)(*name - '0');
    if (v > INT32_MAX) return 0; /* pid_max is at most 2^22 */
  }
  return (pid_t)v;
}

pid_t agent_procfs_stat_ppid(const char *stat, size_t len) {
  /* "pid (comm) state ppid ...": comm may hold spaces and parentheses, so from the last ')'. */
  const char *close = NULL;
  for (size_t i = 0; i < len; i++)
    if (stat[i] == ')') close = stat + i;
  if (!close) return 0;
  const char *p = close + 1, *end = stat + len;
  if (p + 3 > end || p[0] != ' ' || p[2] != ' ') return 0; /* " S " */
  p += 3;
  uint64_t v = 0;
  const char *digits = p;
  while (p < end && *p >= '0' && *p <= '9' && v <= INT32_MAX) v = v * 10 + (uint64_t)(*p++ - '0');
  if (p == digits || v > INT32_MAX || (p < end && *p != ' ')) return 0;
  return (pid_t)v;
}

/* The next space-separated field of a mountinfo line into out with its octal escapes
 * (\040 for a space, \011, \012, \134) undone. Returns the position after it, or NULL if the
 * line ended or the field does not fit. */
static const char *field(const char *s, const char *end, char *out, size_t cap) {
  while (s < end && *s == ' ') s++;
  if (s >= end) return NULL;
  size_t n = 0;
  while (s < end && *s != ' ') {
    char ch = *s++;
    if (ch == '\\' && end - s >= 3 && s[0] >= '0' && s[0] <= '3' && s[1] >= '0' && s[1] <= '7' && s[2] >= '0' &&
        s[2] <= '7') {
      ch = (char)((s[0] - '0') * 64 + (s[1] - '0') * 8 + (s[2] - '0'));
      s += 3;
    }
    if (n + 1 >= cap) return NULL;
    out[n++] = ch;
  }
  out[n] = '\0';
  return s;
}

int agent_procfs_cgroup2_mount(const char *mountinfo, char *mnt, size_t mntcap, char *root, size_t rootcap) {
  for (const char *line = mountinfo; *line;) {
    const char *end = strchr(line, '\n');
    if (!end) end = line + strlen(line);
    char tok[AGENT_CGROUP_PATH_MAX], r[AGENT_CGROUP_PATH_MAX], m[AGENT_CGROUP_PATH_MAX];
    const char *p = line;
    /* id, parent, major:minor, root, mount point, options, optional fields..., "-", type */
    bool ok = (p = field(p, end, tok, sizeof(tok))) && (p = field(p, end, tok, sizeof(tok))) &&
              (p = field(p, end, tok, sizeof(tok))) && (p = field(p, end, r, sizeof(r))) &&
              (p = field(p, end, m, sizeof(m))) && (p = field(p, end, tok, sizeof(tok)));
    while (ok && strcmp(tok, "-") != 0) ok = (p = field(p, end, tok, sizeof(tok))) != NULL;
    if (ok && (p = field(p, end, tok, sizeof(tok))) && strcmp(tok, "cgroup2") == 0) {
      if (strlen(m) >= mntcap || strlen(r) >= rootcap) return TT_ETOOBIG;
      memcpy(mnt, m, strlen(m) + 1);
      memcpy(root, r, strlen(r) + 1);
      return 0;
    }
    line = *end ? end + 1 : end;
  }
  return TT_ENOTFOUND;
}

int agent_procfs_cgroup2_path(const char *text, char *path, size_t cap) {
  for (const char *line = text; *line;) {
    const char *end = strchr(line, '\n');
    if (!end) end = line + strlen(line);
    if (end - line >= 4 && memcmp(line, "0::/", 4) == 0) {
      size_t n = (size_t)(end - line) - 3;
      if (n + 1 > cap) return TT_ETOOBIG;
      memcpy(path, line + 3, n);
      path[n] = '\0';
      return 0;
    }
    line = *end ? end + 1 : end;
  }
  return TT_ENOTFOUND;
}

int agent_procfs_cgroup_dir(const char *mnt, const char *root, const char *path, char *out, size_t cap) {
  /* The mount shows the hierarchy from `root` down: a path outside it is not under mnt. */
  size_t rl = strcmp(root, "/") == 0 ? 0 : strlen(root);
  if (rl && (strncmp(path, root, rl) != 0 || (path[rl] != '/' && path[rl] != '\0'))) return TT_ENOTFOUND;
  const char *rest = path + rl;
  if (strcmp(rest, "/") == 0) rest = "";
  size_t ml = strlen(mnt), sl = strlen(rest);
  if (ml + sl + 1 > cap) return TT_ETOOBIG;
  memcpy(out, mnt, ml);
  memcpy(out + ml, rest, sl + 1);
  return 0;
}

bool agent_procfs_under(const char *path, const char *root, uint64_t *session) {
  size_t rl = strlen(root);
  *session = 0;
  if (strncmp(path, root, rl) != 0 || (path[rl] != '/' && path[rl] != '\0')) return false;
  const char *s = path + rl;
  if (s[0] == '/' && s[1] == 'S' && s[2] == '-') {
    uint64_t v = 0;
    const char *d = s + 3;
    for (; *d >= '0' && *d <= '9'; d++) {
      uint64_t digit = (uint64_t)(*d - '0');
      if (v > (UINT64_MAX - digit) / 10) return true; /* not a session id of ours */
      v = v * 10 + digit;
    }
    if (d > s + 3 && (*d == '/' || *d == '\0')) *session = v;
  }
  return true;
}
