/* What the agent reads of /proc to find cgroups and parents (agent/procfs.c): real lines from
 * a unified, a hybrid and a container's mountinfo, and text made to mislead (a comm with
 * spaces and parentheses, an escaped mount point, paths that only look like ours). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>
#include "agent.h"

static void test_utoa_and_pid_names(void **state) {
  (void)state;
  char b[24];
  assert_int_equal(agent_procfs_utoa(b, sizeof(b), 0), 1);
  assert_string_equal(b, "0");
  assert_int_equal(agent_procfs_utoa(b, sizeof(b), UINT64_MAX), 20);
  assert_string_equal(b, "18446744073709551615");
  assert_int_equal(agent_procfs_utoa(b, 3, 123), 0); /* no room for the NUL */
  assert_string_equal(b, "");
  assert_int_equal(agent_procfs_pid_name("4242"), 4242);
  static const char *const bad[] = {"", "0", "042", "self", "4x", "-1", "99999999999", "thread-self"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    if (agent_procfs_pid_name(bad[i]) != 0) fail_msg("\"%s\" was taken for a pid", bad[i]);
}

static void test_stat_ppid(void **state) {
  (void)state;
  const char *s = "4242 (bash) S 17 4242 4242 34816 4300 4194560 ...";
  assert_int_equal(agent_procfs_stat_ppid(s, strlen(s)), 17);
  /* A comm a user chose, to look like other fields: only the last ')' counts. */
  s = "4243 (x) S 1 (y) R 99) S 4242 4243 4243 0 -1";
  assert_int_equal(agent_procfs_stat_ppid(s, strlen(s)), 4242);
  s = "1 (init) S 0 1 1 0 -1";
  assert_int_equal(agent_procfs_stat_ppid(s, strlen(s)), 0);
  static const char *const bad[] = {"", "4242 (bash", "4242 (bash) S", "4242 (bash) S x", "4242 (bash)S 17 ",
                                    "4242 (bash) S 99999999999 1", "4242 (bash) S 17x 1"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    if (agent_procfs_stat_ppid(bad[i], strlen(bad[i])) != 0) fail_msg("a parent read from \"%s\"", bad[i]);
  s = "4242 (bash) S 17 4242"; /* a length shorter than the text is honoured */
  assert_int_equal(agent_procfs_stat_ppid(s, 12), 0);
}

static void test_cgroup2_mount(void **state) {
  (void)state;
  char mnt[AGENT_CGROUP_PATH_MAX], root[AGENT_CGROUP_PATH_MAX];
  /* This project's machines: hybrid, cgroup2 at /sys/fs/cgroup/unified. */
  const char *hybrid = "30 22 0:27 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
                       "31 30 0:28 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n"
                       "40 30 0:37 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
  assert_int_equal(agent_procfs_cgroup2_mount(hybrid, mnt, sizeof(mnt), root, sizeof(root)), 0);
  assert_string_equal(mnt, "/sys/fs/cgroup/unified");
  assert_string_equal(root, "/");
  /* systemd's unified layout, with optional fields before the separator. */
  const char *unified = "25 30 0:22 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 "
                        "rw,nsdelegate,memory_recursiveprot";
  assert_int_equal(agent_procfs_cgroup2_mount(unified, mnt, sizeof(mnt), root, sizeof(root)), 0);
  assert_string_equal(mnt, "/sys/fs/cgroup");
  /* A container given part of the host's tree, at a path with a space in it. */
  const char *ctr = "1 0 0:1 / / rw - overlay overlay rw,lowerdir=/a:/b\n"
                    "7 1 0:30 /docker/abc /sys/fs/my\\040cgroup ro master:9 - cgroup2 cgroup rw\n";
  assert_int_equal(agent_procfs_cgroup2_mount(ctr, mnt, sizeof(mnt), root, sizeof(root)), 0);
  assert_string_equal(mnt, "/sys/fs/my cgroup");
  assert_string_equal(root, "/docker/abc");
  /* cgroup v1 only, a "cgroup2" that is a source rather than a type, garbage. */
  const char *none = "31 30 0:28 / /sys/fs/cgroup/cpu rw - cgroup cgroup2 rw,cpu\n"
                     "bad line\n\n"
                     "40 30 0:37 / /x rw cgroup2 cgroup2 rw\n";
  assert_int_equal(agent_procfs_cgroup2_mount(none, mnt, sizeof(mnt), root, sizeof(root)), TT_ENOTFOUND);
  assert_int_equal(agent_procfs_cgroup2_mount(hybrid, mnt, 8, root, sizeof(root)), TT_ETOOBIG);
}

static void test_cgroup2_path_and_dir(void **state) {
  (void)state;
  char path[AGENT_CGROUP_PATH_MAX], dir[AGENT_CGROUP_PATH_MAX];
  const char *hybrid = "9:name=systemd:/\n4:memory:/process_api/e4e9\n0::/\n";
  assert_int_equal(agent_procfs_cgroup2_path(hybrid, path, sizeof(path)), 0);
  assert_string_equal(path, "/");
  assert_int_equal(agent_procfs_cgroup_dir("/sys/fs/cgroup/unified", "/", path, dir, sizeof(dir)), 0);
  assert_string_equal(dir, "/sys/fs/cgroup/unified");
  assert_int_equal(agent_procfs_cgroup2_path("0::/system.slice/tether-agent.service\n", path, sizeof(path)), 0);
  assert_string_equal(path, "/system.slice/tether-agent.service");
  assert_int_equal(agent_procfs_cgroup_dir("/sys/fs/cgroup", "/", path, dir, sizeof(dir)), 0);
  assert_string_equal(dir, "/sys/fs/cgroup/system.slice/tether-agent.service");
  /* A mount showing only /docker/abc: our path must be inside it, and is shown from there. */
  assert_int_equal(agent_procfs_cgroup_dir("/sys/fs/cgroup", "/docker/abc", "/docker/abc/svc", dir, sizeof(dir)), 0);
  assert_string_equal(dir, "/sys/fs/cgroup/svc");
  assert_int_equal(agent_procfs_cgroup_dir("/sys/fs/cgroup", "/docker/abc", "/docker/abc", dir, sizeof(dir)), 0);
  assert_string_equal(dir, "/sys/fs/cgroup");
  assert_int_equal(agent_procfs_cgroup_dir("/sys/fs/cgroup", "/docker/abc", "/docker/abcd/x", dir, sizeof(dir)),
                   TT_ENOTFOUND);
  assert_int_equal(agent_procfs_cgroup_dir("/sys/fs/cgroup", "/", "/a", dir, 10), TT_ETOOBIG);
  /* v1 only: no unified line. */
  assert_int_equal(agent_procfs_cgroup2_path("1:cpu:/\n2:memory:/x\n", path, sizeof(path)), TT_ENOTFOUND);
  assert_int_equal(agent_procfs_cgroup2_path("0::/abcdefgh\n", path, 5), TT_ETOOBIG);
}

static void test_under(void **state) {
  (void)state;
  uint64_t s = 99;
  const char *root = "/system.slice/tether-agent.service/tether-sessions.812";
  assert_true(agent_procfs_under("/system.slice/tether-agent.service/tether-sessions.812/S-3/p7", root, &s));
  assert_int_equal(s, 3);
  assert_true(agent_procfs_under("/system.slice/tether-agent.service/tether-sessions.812/S-18446744073709551615",
                                 root, &s));
  assert_int_equal(s, UINT64_MAX);
  assert_true(agent_procfs_under(root, root, &s)); /* the tree itself: ours, no session */
  assert_int_equal(s, 0);
  assert_true(agent_procfs_under("/system.slice/tether-agent.service/tether-sessions.812/S-3x/p1", root, &s));
  assert_int_equal(s, 0);
  /* Another agent's tree, or a name that merely starts like ours. */
  assert_false(agent_procfs_under("/system.slice/tether-agent.service/tether-sessions.8120/S-3/p7", root, &s));
  assert_false(agent_procfs_under("/system.slice/tether-agent.service", root, &s));
  assert_false(agent_procfs_under("/user.slice/S-3", root, &s));
  assert_int_equal(s, 0);
  assert_true(agent_procfs_under("/tether-sessions.5/S-1/p1", "/tether-sessions.5", &s));
  assert_int_equal(s, 1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_utoa_and_pid_names),
      cmocka_unit_test(test_stat_ppid),
      cmocka_unit_test(test_cgroup2_mount),
      cmocka_unit_test(test_cgroup2_path_and_dir),
      cmocka_unit_test(test_under),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
