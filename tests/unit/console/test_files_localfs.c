/* The console's disk as the transfer engine sees it: only regular files are read (a
 * directory, a FIFO or a device is refused with a clear reason, and a FIFO without waiting
 * for a writer), a received file's parent directory is opened and its name split off, and
 * the directories of a pull -r are made (an existing one is fine, a file in the way is not). */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>
#include "files.h"

static char g_tmp[512];

static const char *at(const char *rel) {
  static char p[4][1024];
  static int k;
  k = (k + 1) % 4;
  snprintf(p[k], sizeof(p[k]), "%s/%s", g_tmp, rel);
  return p[k];
}

static int setup(void **state) {
  (void)state;
  const char *tmp = getenv("TT_TEST_TMP");
  if (!tmp || !tmp[0]) tmp = "/tmp";
  snprintf(g_tmp, sizeof(g_tmp), "%s/test_files_localfs.XXXXXX", tmp);
  return mkdtemp(g_tmp) ? 0 : -1;
}

static void test_open_read(void **state) {
  (void)state;
  char err[256];
  tt_xfer_stat_t st;
  FILE *f = fopen(at("a.txt"), "w");
  assert_non_null(f);
  fputs("hello", f);
  fclose(f);
  assert_int_equal(chmod(at("a.txt"), 0640), 0);
  struct stat sb;
  assert_int_equal(stat(at("a.txt"), &sb), 0);
  int fd = files_fs_open_read(NULL, at("a.txt"), &st, err, sizeof(err));
  assert_true(fd >= 0);
  assert_int_equal(st.size, 5);
  assert_int_equal(st.mode, 0640);
  assert_true(st.mtime_ns == (int64_t)sb.st_mtim.tv_sec * 1000000000 + sb.st_mtim.tv_nsec);
  /* Blocking again, so the engine's reads wait as reads of a file do. */
  assert_int_equal(fcntl(fd, F_GETFL) & O_NONBLOCK, 0);
  char buf[8];
  assert_int_equal(read(fd, buf, sizeof(buf)), 5);
  close(fd);

  assert_int_equal(files_fs_open_read(NULL, g_tmp, &st, err, sizeof(err)), -EISDIR);
  assert_non_null(strstr(err, "is a directory, not a regular file"));
  assert_int_equal(mkfifo(at("fifo"), 0600), 0);
  assert_true(files_fs_open_read(NULL, at("fifo"), &st, err, sizeof(err)) < 0); /* and no hang */
  assert_non_null(strstr(err, "a FIFO"));
  assert_true(files_fs_open_read(NULL, "/dev/null", &st, err, sizeof(err)) < 0);
  assert_non_null(strstr(err, "a device"));
  assert_int_equal(files_fs_open_read(NULL, at("nothere"), &st, err, sizeof(err)), -ENOENT);
  assert_non_null(strstr(err, "No such file"));
}

static void test_open_parent(void **state) {
  (void)state;
  char err[256], name[TT_FILE_NAME_MAX + 1];
  struct stat a, b;
  int fd = files_fs_open_parent(NULL, at("new.bin"), name, sizeof(name), err, sizeof(err));
  assert_true(fd >= 0);
  assert_string_equal(name, "new.bin");
  assert_int_equal(fstat(fd, &a), 0);
  assert_int_equal(stat(g_tmp, &b), 0);
  assert_true(a.st_ino == b.st_ino && a.st_dev == b.st_dev);
  close(fd);
  /* A bare name lives in the working directory. */
  fd = files_fs_open_parent(NULL, "bare", name, sizeof(name), err, sizeof(err));
  assert_true(fd >= 0);
  assert_string_equal(name, "bare");
  close(fd);
  assert_true(files_fs_open_parent(NULL, at("missing/x"), name, sizeof(name), err, sizeof(err)) < 0);
  assert_non_null(strstr(err, "cannot open the directory"));
  assert_int_equal(files_fs_open_parent(NULL, at("x/"), name, sizeof(name), err, sizeof(err)), TT_EINVAL);
  assert_int_equal(files_fs_open_parent(NULL, at(".."), name, sizeof(name), err, sizeof(err)), TT_EINVAL);
}

static void test_local_mkdir(void **state) {
  (void)state;
  char err[256];
  struct stat sb;
  files_roots_t r;
  files_roots_init(&r);
  assert_int_equal(files_local_mkdir_root(&r, at("d"), true, 0700, err, sizeof(err)), 0);
  assert_int_equal(stat(at("d"), &sb), 0);
  assert_true(S_ISDIR(sb.st_mode));
  assert_int_equal(sb.st_mode & 0777, 0700);
  assert_int_equal(files_local_mkdir_root(&r, at("d"), true, 0755, err, sizeof(err)), 0); /* there already */
  assert_int_equal(r.n, 1);
  assert_int_equal(files_local_mkdir(&r, at("d/sub"), 0755, err, sizeof(err)), 0);
  assert_int_equal(stat(at("d/sub"), &sb), 0);
  assert_true(S_ISDIR(sb.st_mode));
  assert_int_equal(files_local_mkdir(&r, at("d/sub"), 0755, err, sizeof(err)), 0); /* there already */
  FILE *f = fopen(at("d/plain"), "w");
  assert_non_null(f);
  fclose(f);
  assert_int_equal(files_local_mkdir(&r, at("d/plain"), 0755, err, sizeof(err)), -ENOTDIR);
  assert_non_null(strstr(err, "exists and is not a directory"));
  assert_int_equal(files_local_mkdir(&r, at("d/no/such/parent"), 0755, err, sizeof(err)), -ENOENT);
  assert_non_null(strstr(err, "cannot open the directory"));
  assert_int_equal(files_local_mkdir(&r, at("elsewhere/x"), 0755, err, sizeof(err)), -EINVAL);
  assert_int_equal(files_local_mkdir_root(&r, at("plain"), true, 0755, err, sizeof(err)), 0); /* a new one */
  f = fopen(at("file"), "w");
  assert_non_null(f);
  fclose(f);
  assert_int_equal(files_local_mkdir_root(&r, at("file"), true, 0755, err, sizeof(err)), -ENOTDIR);
  assert_non_null(strstr(err, "exists and is not a directory"));
  assert_int_equal(files_local_mkdir_root(&r, at("no/such/parent"), false, 0755, err, sizeof(err)), -ENOENT);
  assert_int_equal(files_local_mkdir(&r, at("d/x.tether-part"), 0755, err, sizeof(err)), -EINVAL);
  assert_non_null(strstr(err, "refused"));
  files_roots_free(&r);
}

/* A link where a directory of a pulled tree goes, planted before or swapped in after we made
 * the directory: nothing is made or opened through it. A link the user names is followed. */
static void test_tree_links(void **state) {
  (void)state;
  char err[256], name[TT_FILE_NAME_MAX + 1];
  struct stat sb, tb;
  files_roots_t r;
  files_roots_init(&r);
  assert_int_equal(mkdir(at("away"), 0755), 0);
  assert_int_equal(mkdir(at("t"), 0777), 0);
  /* The root the pull names itself (t/tree), planted as a link: refused. */
  assert_int_equal(symlink(at("away"), at("t/tree")), 0);
  assert_int_equal(files_local_mkdir_root(&r, at("t/tree"), false, 0755, err, sizeof(err)), -ELOOP);
  assert_non_null(strstr(err, "symbolic link"));
  assert_int_equal(r.n, 0);
  /* The target the user typed, a link of theirs: followed. */
  assert_int_equal(files_local_mkdir_root(&r, at("t/tree"), true, 0755, err, sizeof(err)), 0);
  assert_int_equal(unlink(at("t/tree")), 0);
  files_roots_free(&r);
  /* Below the root: a link planted where a directory goes. */
  assert_int_equal(files_local_mkdir_root(&r, at("t/tree"), false, 0755, err, sizeof(err)), 0);
  assert_int_equal(symlink(at("away"), at("t/tree/sub")), 0);
  assert_int_equal(files_local_mkdir(&r, at("t/tree/sub"), 0755, err, sizeof(err)), -ELOOP);
  assert_non_null(strstr(err, "t/tree/sub is a symbolic link"));
  assert_int_equal(files_fs_open_parent(&r, at("t/tree/sub/f"), name, sizeof(name), err, sizeof(err)), -ELOOP);
  assert_int_equal(files_local_mkdir(&r, at("t/tree/sub/deeper"), 0755, err, sizeof(err)), -ELOOP);
  assert_int_equal(access(at("away/deeper"), F_OK), -1);
  assert_int_equal(unlink(at("t/tree/sub")), 0);
  /* Made by us, then swapped for a link before the file is made in it. */
  assert_int_equal(files_local_mkdir(&r, at("t/tree/sub"), 0755, err, sizeof(err)), 0);
  int fd = files_fs_open_parent(&r, at("t/tree/sub/f"), name, sizeof(name), err, sizeof(err));
  assert_true(fd >= 0);
  assert_string_equal(name, "f");
  assert_int_equal(fstat(fd, &sb), 0);
  assert_int_equal(stat(at("t/tree/sub"), &tb), 0);
  assert_true(sb.st_ino == tb.st_ino);
  close(fd);
  assert_int_equal(rename(at("t/tree/sub"), at("t/sub.old")), 0);
  assert_int_equal(symlink(at("away"), at("t/tree/sub")), 0);
  assert_int_equal(files_fs_open_parent(&r, at("t/tree/sub/f"), name, sizeof(name), err, sizeof(err)), -ELOOP);
  /* The root itself swapped for a link: what was made goes on into the directory held. */
  assert_int_equal(unlink(at("t/tree/sub")), 0);
  assert_int_equal(rename(at("t/sub.old"), at("t/tree/sub")), 0);
  assert_int_equal(rename(at("t/tree"), at("t/tree.old")), 0);
  assert_int_equal(symlink(at("away"), at("t/tree")), 0);
  fd = files_fs_open_parent(&r, at("t/tree/sub/f"), name, sizeof(name), err, sizeof(err));
  assert_true(fd >= 0);
  assert_int_equal(fstat(fd, &sb), 0);
  assert_int_equal(stat(at("t/tree.old/sub"), &tb), 0);
  assert_true(sb.st_ino == tb.st_ino);
  close(fd);
  assert_int_equal(files_local_mkdir(&r, at("t/tree/new"), 0755, err, sizeof(err)), 0);
  assert_int_equal(access(at("t/tree.old/new"), F_OK), 0);
  assert_int_equal(access(at("away/new"), F_OK), -1);
  /* A path below no held root is the user's: its directory opened as they typed it. */
  fd = files_fs_open_parent(&r, at("t/tree.bin"), name, sizeof(name), err, sizeof(err));
  assert_true(fd >= 0);
  assert_string_equal(name, "tree.bin");
  assert_int_equal(fstat(fd, &sb), 0);
  assert_int_equal(stat(at("t"), &tb), 0);
  assert_true(sb.st_ino == tb.st_ino);
  close(fd);
  files_roots_free(&r);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_open_read),
      cmocka_unit_test(test_open_parent),
      cmocka_unit_test(test_local_mkdir),
      cmocka_unit_test(test_tree_links),
  };
  return cmocka_run_group_tests(tests, setup, NULL);
}
