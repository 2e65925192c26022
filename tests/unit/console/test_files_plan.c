/* The file commands' plan: how words on the command line become device and local paths
 * (DEVICE:PATH, joining a target with a name), which mistakes are usage errors found before
 * connecting, the order a local tree is walked in for push -r, and how a device's listing
 * becomes the directories and files of a pull -r without letting a name escape the target. */
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
#include "tt/msg.h"

#define LIT(s) ((ProtobufCBinaryData){sizeof(s) - 1, (uint8_t *)(s)})

static char g_tmp[512];

/* A fresh directory per test, under the build tree. */
static void make_tmp(void) {
  const char *tmp = getenv("TT_TEST_TMP");
  if (!tmp || !tmp[0]) tmp = "/tmp";
  int n = snprintf(g_tmp, sizeof(g_tmp), "%s/test_files_plan.XXXXXX", tmp);
  assert_true(n > 0 && (size_t)n < sizeof(g_tmp));
  assert_non_null(mkdtemp(g_tmp));
}

static void touch(const char *rel, const char *text) {
  char p[1024];
  snprintf(p, sizeof(p), "%s/%s", g_tmp, rel);
  FILE *f = fopen(p, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
}

static void dir(const char *rel) {
  char p[1024];
  snprintf(p, sizeof(p), "%s/%s", g_tmp, rel);
  assert_int_equal(mkdir(p, 0755), 0);
}

static const char *at(const char *rel) {
  static char p[8][1024];
  static int k;
  k = (k + 1) % 8;
  snprintf(p[k], sizeof(p[k]), "%s/%s", g_tmp, rel);
  return p[k];
}

/* ---- paths ---------------------------------------------------------------------------- */

static void test_remote_split(void **state) {
  (void)state;
  char dev[TT_NAME_MAX + 1];
  const char *path;
  assert_int_equal(files_remote_split("dev-7b38:/tmp/a.txt", dev, sizeof(dev), &path), 1);
  assert_string_equal(dev, "dev-7b38");
  assert_string_equal(path, "/tmp/a.txt");
  assert_int_equal(files_remote_split("pc.example_1@x:rel/a", dev, sizeof(dev), &path), 1);
  assert_string_equal(path, "rel/a");
  assert_int_equal(files_remote_split("dev-1:", dev, sizeof(dev), &path), 1);
  assert_string_equal(path, "");
  /* A colon after a slash, or none, or nothing before it: a local name, as scp reads it. */
  assert_int_equal(files_remote_split("./a:b", dev, sizeof(dev), &path), 0);
  assert_int_equal(files_remote_split("/x/y:z", dev, sizeof(dev), &path), 0);
  assert_int_equal(files_remote_split("a.txt", dev, sizeof(dev), &path), 0);
  assert_int_equal(files_remote_split(":a", dev, sizeof(dev), &path), 0);
  assert_null(path);
  /* Remote by shape, but not a device id. */
  assert_int_equal(files_remote_split("d$x:/a", dev, sizeof(dev), &path), TT_EINVAL);
  assert_int_equal(files_remote_split("a b:/a", dev, sizeof(dev), &path), TT_EINVAL);
  char longdev[TT_NAME_MAX + 8];
  memset(longdev, 'd', TT_NAME_MAX + 1);
  strcpy(longdev + TT_NAME_MAX + 1, ":/a");
  assert_int_equal(files_remote_split(longdev, dev, sizeof(dev), &path), TT_EINVAL);
}

static void test_join(void **state) {
  (void)state;
  char out[16];
  assert_int_equal(files_join(out, sizeof(out), 15, "a", "b"), 0);
  assert_string_equal(out, "a/b");
  assert_int_equal(files_join(out, sizeof(out), 15, "a/", "b"), 0);
  assert_string_equal(out, "a/b");
  assert_int_equal(files_join(out, sizeof(out), 15, "/", "b"), 0);
  assert_string_equal(out, "/b");
  assert_int_equal(files_join(out, sizeof(out), 15, "", "b"), 0);
  assert_string_equal(out, "b");
  assert_int_equal(files_join(out, sizeof(out), 15, "0123456", "0123456"), 0); /* 15: fits */
  assert_int_equal(files_join(out, sizeof(out), 15, "0123456", "01234567"), TT_ETOOBIG);
  assert_int_equal(files_join(out, sizeof(out), 5, "abc", "de"), TT_ETOOBIG); /* over max */
}

static void test_basename_split(void **state) {
  (void)state;
  char name[TT_FILE_NAME_MAX + 1], d[64];
  assert_int_equal(files_basename("/var/log/syslog", name, sizeof(name)), 0);
  assert_string_equal(name, "syslog");
  assert_int_equal(files_basename("/var/log//", name, sizeof(name)), 0);
  assert_string_equal(name, "log");
  assert_int_equal(files_basename("a", name, sizeof(name)), 0);
  assert_string_equal(name, "a");
  assert_int_equal(files_basename("/", name, sizeof(name)), TT_EINVAL);
  assert_int_equal(files_basename("", name, sizeof(name)), TT_EINVAL);
  assert_int_equal(files_basename(".", name, sizeof(name)), TT_EINVAL);
  assert_int_equal(files_basename("x/..", name, sizeof(name)), TT_EINVAL);
  char longname[TT_FILE_NAME_MAX + 3];
  memset(longname, 'n', TT_FILE_NAME_MAX + 1);
  longname[TT_FILE_NAME_MAX + 1] = '\0';
  assert_int_equal(files_basename(longname, name, sizeof(name)), TT_ETOOBIG);

  assert_int_equal(files_split("a/b/c", d, sizeof(d), name, sizeof(name)), 0);
  assert_string_equal(d, "a/b");
  assert_string_equal(name, "c");
  assert_int_equal(files_split("c", d, sizeof(d), name, sizeof(name)), 0);
  assert_string_equal(d, ".");
  assert_string_equal(name, "c");
  assert_int_equal(files_split("/c", d, sizeof(d), name, sizeof(name)), 0);
  assert_string_equal(d, "/");
  assert_int_equal(files_split("a/", d, sizeof(d), name, sizeof(name)), TT_EINVAL);
  assert_int_equal(files_split("a/..", d, sizeof(d), name, sizeof(name)), TT_EINVAL);
  assert_int_equal(files_split("", d, sizeof(d), name, sizeof(name)), TT_EINVAL);
  assert_int_equal(files_split("0123456789/x", d, 4, name, sizeof(name)), TT_ETOOBIG);

  char p[32] = "/tmp/x//";
  files_strip_slash(p);
  assert_string_equal(p, "/tmp/x");
  strcpy(p, "/");
  files_strip_slash(p);
  assert_string_equal(p, "/");
}

static void test_rel_ok(void **state) {
  (void)state;
  assert_true(files_rel_ok(LIT("a")));
  assert_true(files_rel_ok(LIT("a/b.txt")));
  assert_true(files_rel_ok(LIT("caf\xc3\xa9/..x")));
  assert_false(files_rel_ok(LIT("")));
  assert_false(files_rel_ok(LIT("/etc/passwd")));
  assert_false(files_rel_ok(LIT("..")));
  assert_false(files_rel_ok(LIT("../x")));
  assert_false(files_rel_ok(LIT("a/../../x")));
  assert_false(files_rel_ok(LIT("a/./b")));
  assert_false(files_rel_ok(LIT("a//b")));
  assert_false(files_rel_ok(LIT("a/")));
  assert_false(files_rel_ok(LIT("a\nb")));
  assert_false(files_rel_ok(LIT("a\0b")));
  assert_false(files_rel_ok(LIT("\xff")));
  char comp[TT_FILE_NAME_MAX + 2];
  memset(comp, 'c', sizeof(comp) - 1);
  comp[sizeof(comp) - 1] = '\0';
  assert_false(files_rel_ok((ProtobufCBinaryData){strlen(comp), (uint8_t *)comp}));
  comp[TT_FILE_NAME_MAX] = '\0';
  assert_true(files_rel_ok((ProtobufCBinaryData){strlen(comp), (uint8_t *)comp}));
}

static int cmp_cstr(const void *a, const void *b) {
  const char *x = *(const char *const *)a, *y = *(const char *const *)b;
  return files_path_cmp((const uint8_t *)x, strlen(x), (const uint8_t *)y, strlen(y));
}

static void test_path_order(void **state) {
  (void)state;
  const char *v[] = {"b", "a.txt", "a/x", "a-c", "a", "a/x/y", "a/w"};
  qsort(v, 7, sizeof(v[0]), cmp_cstr);
  const char *want[] = {"a", "a/w", "a/x", "a/x/y", "a-c", "a.txt", "b"};
  for (int i = 0; i < 7; i++) assert_string_equal(v[i], want[i]);
}

/* ---- the command line ----------------------------------------------------------------- */

static int parse(files_args_t *a, const char *cmd, const char *const *w, int n, const char *flag, const char *env,
                 char *err) {
  memset(a, 0, sizeof(*a));
  err[0] = '\0';
  return files_args_parse(a, cmd, w, n, flag, env, err, FILES_ERR_MAX);
}

static void test_args(void **state) {
  (void)state;
  files_args_t a;
  char err[FILES_ERR_MAX];
  const char *pull[] = {"dev-1", "/var/log/syslog", "/home/sam/crash.dmp", "./evidence/"};
  assert_int_equal(parse(&a, "pull", pull, 4, "T-3", NULL, err), 0);
  assert_int_equal(a.verb, FILES_VERB_PULL);
  assert_string_equal(a.device, "dev-1");
  assert_int_equal(a.nsrc, 2);
  assert_string_equal(a.src[1], "/home/sam/crash.dmp");
  assert_string_equal(a.target, "./evidence/");
  assert_int_equal(a.ticket, 3);

  /* The ticket: the flag, else the environment; neither is a usage error. */
  assert_int_equal(parse(&a, "pull", pull, 4, "", "t-12", err), 0);
  assert_int_equal(a.ticket, 12);
  assert_int_equal(parse(&a, "pull", pull, 4, "7", "t-12", err), 0);
  assert_int_equal(a.ticket, 7);
  assert_int_equal(parse(&a, "pull", pull, 4, NULL, NULL, err), TT_EINVAL);
  assert_non_null(strstr(err, "--ticket is required"));
  assert_int_equal(parse(&a, "pull", pull, 4, "S-3", NULL, err), TT_EINVAL);
  assert_non_null(strstr(err, "not a ticket"));
  assert_int_equal(parse(&a, "pull", pull, 4, NULL, "x", err), TT_EINVAL);
  assert_non_null(strstr(err, "TETHER_TICKET"));

  const char *baddev[] = {"dev/1", "/a", "."};
  assert_int_equal(parse(&a, "push", baddev, 3, "3", NULL, err), TT_EINVAL);
  assert_string_equal(err, "'dev/1' is not a device id");
  const char *empty[] = {"dev-1", "", "."};
  assert_int_equal(parse(&a, "push", empty, 3, "3", NULL, err), TT_EINVAL);
  const char *two[] = {"dev-1", "/a"};
  assert_int_equal(parse(&a, "pull", two, 2, "3", NULL, err), TT_EINVAL);

  const char *ls[] = {"dev-1", "/var/log"};
  assert_int_equal(parse(&a, "ls", ls, 2, "3", NULL, err), 0);
  assert_int_equal(a.verb, FILES_VERB_LS);
  assert_string_equal(a.src[0], "/var/log");
}

static void test_args_cp(void **state) {
  (void)state;
  files_args_t a;
  char err[FILES_ERR_MAX];
  const char *up[] = {"./a.txt", "dev-1:/tmp/a.txt"};
  assert_int_equal(parse(&a, "cp", up, 2, NULL, "T-3", err), 0);
  assert_int_equal(a.verb, FILES_VERB_PUSH);
  assert_string_equal(a.device, "dev-1");
  assert_string_equal(a.src[0], "./a.txt");
  assert_string_equal(a.target, "/tmp/a.txt");
  const char *down[] = {"dev-1:/tmp/a.txt", "dev-1:/tmp/b.txt", "."};
  assert_int_equal(parse(&a, "cp", down, 3, "3", NULL, err), 0);
  assert_int_equal(a.verb, FILES_VERB_PULL);
  assert_int_equal(a.nsrc, 2);
  assert_string_equal(a.src[1], "/tmp/b.txt");
  assert_string_equal(a.target, ".");

  const char *none[] = {"./a", "./b"};
  assert_int_equal(parse(&a, "cp", none, 2, "3", NULL, err), TT_EINVAL);
  assert_non_null(strstr(err, "DEVICE:PATH on one side"));
  const char *both[] = {"dev-1:/a", "dev-2:/b"};
  assert_int_equal(parse(&a, "cp", both, 2, "3", NULL, err), TT_EINVAL);
  assert_non_null(strstr(err, "one side only"));
  const char *mixed[] = {"dev-1:/a", "./b", "."};
  assert_int_equal(parse(&a, "cp", mixed, 3, "3", NULL, err), TT_EINVAL);
  const char *devices[] = {"dev-1:/a", "dev-2:/b", "."};
  assert_int_equal(parse(&a, "cp", devices, 3, "3", NULL, err), TT_EINVAL);
  assert_non_null(strstr(err, "one device at a time"));
  const char *bad[] = {"./a", "d$v:/tmp/"};
  assert_int_equal(parse(&a, "cp", bad, 2, "3", NULL, err), TT_EINVAL);
  assert_string_equal(err, "'d$v' is not a device id");
  const char *nopath[] = {"dev-1:", "."};
  assert_int_equal(parse(&a, "cp", nopath, 2, "3", NULL, err), TT_EINVAL);
  const char *noticket[] = {"./a", "dev-1:/tmp/"};
  assert_int_equal(parse(&a, "cp", noticket, 2, NULL, "", err), TT_EINVAL);
  const char *one[] = {"dev-1:/a"};
  assert_int_equal(parse(&a, "cp", one, 1, "3", NULL, err), TT_EINVAL);
}

/* ---- plans ---------------------------------------------------------------------------- */

static int build(files_plan_t *p, files_args_t *a, char *err) {
  files_plan_init(p);
  err[0] = '\0';
  return files_plan_build(p, a, err, FILES_ERR_MAX);
}

static void test_plan_pull(void **state) {
  (void)state;
  files_args_t a;
  files_plan_t p;
  char err[FILES_ERR_MAX];
  make_tmp();
  dir("evidence");
  touch("file", "x");
  const char *several[] = {"dev-1", "/var/log/syslog", "/home/sam/crash.dmp/", at("evidence/")};
  assert_int_equal(parse(&a, "pull", several, 4, "3", NULL, err), 0);
  assert_int_equal(build(&p, &a, err), 0);
  assert_int_equal(p.n, 2);
  assert_int_equal(p.v[0].kind, FILES_OP_GET);
  assert_string_equal(p.v[0].dev, "/var/log/syslog");
  assert_string_equal(p.v[0].local, at("evidence/syslog"));
  assert_string_equal(p.v[1].local, at("evidence/crash.dmp"));
  assert_int_equal(p.v[1].parent, -1);
  files_plan_free(&p);

  /* One source may name the file; a target ending in '/' must be a directory. */
  const char *one[] = {"dev-1", "/var/log/syslog", at("evidence/sys.log")};
  assert_int_equal(parse(&a, "pull", one, 3, "3", NULL, err), 0);
  assert_int_equal(build(&p, &a, err), 0);
  assert_string_equal(p.v[0].local, at("evidence/sys.log"));
  files_plan_free(&p);
  const char *slash[] = {"dev-1", "/var/log/syslog", at("nothere/")};
  assert_int_equal(parse(&a, "pull", slash, 3, "3", NULL, err), 0);
  assert_int_equal(build(&p, &a, err), TT_EINVAL);
  assert_non_null(strstr(err, "is not a directory"));
  files_plan_free(&p);

  /* Several sources need an existing directory. */
  const char *tofile[] = {"dev-1", "/a", "/b", at("file")};
  assert_int_equal(parse(&a, "pull", tofile, 4, "3", NULL, err), 0);
  assert_int_equal(build(&p, &a, err), TT_EINVAL);
  assert_non_null(strstr(err, "is not a directory"));
  files_plan_free(&p);
  const char *tonothing[] = {"dev-1", "/a", "/b", at("nothere")};
  assert_int_equal(parse(&a, "pull", tonothing, 4, "3", NULL, err), 0);
  assert_int_equal(build(&p, &a, err), TT_EINVAL);
  assert_non_null(strstr(err, "no such directory"));
  files_plan_free(&p);
  /* Two sources that would land on one file. */
  const char *same[] = {"dev-1", "/x/log", "/y/log", at("evidence")};
  assert_int_equal(parse(&a, "pull", same, 4, "3", NULL, err), 0);
  assert_int_equal(build(&p, &a, err), TT_EINVAL);
  assert_non_null(strstr(err, "two sources would land on"));
  files_plan_free(&p);
  /* A source that names no file. */
  const char *root[] = {"dev-1", "/", at("evidence")};
  assert_int_equal(parse(&a, "pull", root, 3, "3", NULL, err), 0);
  assert_int_equal(build(&p, &a, err), TT_EINVAL);
  files_plan_free(&p);
}

static void test_plan_pull_tree(void **state) {
  (void)state;
  files_args_t a;
  files_plan_t p;
  char err[FILES_ERR_MAX];
  make_tmp();
  dir("evidence");
  touch("file", "x");
  /* Into an existing directory: under the source's name; "dir/": what it holds. */
  const char *r[] = {"dev-1", "/var/log/app", "/var/log/other/", at("evidence")};
  assert_int_equal(parse(&a, "pull", r, 4, "3", NULL, err), 0);
  a.recursive = true;
  assert_int_equal(build(&p, &a, err), 0);
  assert_int_equal(p.n, 2);
  assert_int_equal(p.v[0].kind, FILES_OP_LIST);
  assert_true(p.v[0].recursive);
  assert_string_equal(p.v[0].dev, "/var/log/app");
  assert_string_equal(p.v[0].local, at("evidence/app"));
  assert_string_equal(p.v[1].dev, "/var/log/other");
  assert_string_equal(p.v[1].local, at("evidence"));
  files_plan_free(&p);
  /* A target that does not exist yet becomes the tree's root. */
  const char *fresh[] = {"dev-1", "/var/log/app", at("evidence/new/")};
  assert_int_equal(parse(&a, "pull", fresh, 3, "3", NULL, err), 0);
  a.recursive = true;
  assert_int_equal(build(&p, &a, err), 0);
  assert_string_equal(p.v[0].local, at("evidence/new"));
  files_plan_free(&p);
  /* A file in the way is not a directory. */
  const char *onfile[] = {"dev-1", "/var/log/app", at("file")};
  assert_int_equal(parse(&a, "pull", onfile, 3, "3", NULL, err), 0);
  a.recursive = true;
  assert_int_equal(build(&p, &a, err), TT_EINVAL);
  files_plan_free(&p);
}

static void test_plan_push(void **state) {
  (void)state;
  files_args_t a;
  files_plan_t p;
  char err[FILES_ERR_MAX];
  make_tmp();
  touch("settings.ini", "k=v\n");
  touch("b.txt", "bb");
  dir("tree");
  const char *topath[] = {"dev-1", at("settings.ini"), "/home/sam/.config/app/settings.ini"};
  assert_int_equal(parse(&a, "push", topath, 3, "3", NULL, err), 0);
  assert_int_equal(build(&p, &a, err), 0);
  assert_int_equal(p.n, 1);
  assert_int_equal(p.v[0].kind, FILES_OP_PUT);
  assert_string_equal(p.v[0].dev, "/home/sam/.config/app/settings.ini");
  assert_string_equal(p.v[0].local, at("settings.ini"));
  assert_int_equal(p.v[0].size, 4);
  assert_true(p.v[0].size_known);
  files_plan_free(&p);
  /* Ending in '/': into that directory, under the file's name; several sources: the same. */
  const char *intodir[] = {"dev-1", at("settings.ini"), "/tmp/"};
  assert_int_equal(parse(&a, "push", intodir, 3, "3", NULL, err), 0);
  assert_int_equal(build(&p, &a, err), 0);
  assert_string_equal(p.v[0].dev, "/tmp/settings.ini");
  files_plan_free(&p);
  const char *several[] = {"dev-1", at("settings.ini"), at("b.txt"), "/tmp"};
  assert_int_equal(parse(&a, "push", several, 4, "3", NULL, err), 0);
  assert_int_equal(build(&p, &a, err), 0);
  assert_string_equal(p.v[0].dev, "/tmp/settings.ini");
  assert_string_equal(p.v[1].dev, "/tmp/b.txt");
  files_plan_free(&p);
  /* Usage errors: a source that does not exist, a directory without -r, twice one target. */
  const char *missing[] = {"dev-1", at("nothere"), "/tmp/"};
  assert_int_equal(parse(&a, "push", missing, 3, "3", NULL, err), 0);
  assert_int_equal(build(&p, &a, err), TT_EINVAL);
  assert_non_null(strstr(err, "No such file or directory"));
  files_plan_free(&p);
  const char *adir[] = {"dev-1", at("tree"), "/tmp/"};
  assert_int_equal(parse(&a, "push", adir, 3, "3", NULL, err), 0);
  assert_int_equal(build(&p, &a, err), TT_EINVAL);
  assert_non_null(strstr(err, "-r"));
  files_plan_free(&p);
  const char *twice[] = {"dev-1", at("b.txt"), at("b.txt"), "/tmp/"};
  assert_int_equal(parse(&a, "push", twice, 4, "3", NULL, err), 0);
  assert_int_equal(build(&p, &a, err), TT_EINVAL);
  files_plan_free(&p);
#ifdef S_IFIFO
  char fifo[1024];
  snprintf(fifo, sizeof(fifo), "%s", at("fifo"));
  assert_int_equal(mkfifo(fifo, 0600), 0);
  const char *special[] = {"dev-1", fifo, "/tmp/"};
  assert_int_equal(parse(&a, "push", special, 3, "3", NULL, err), 0);
  assert_int_equal(build(&p, &a, err), TT_EINVAL);
  assert_non_null(strstr(err, "not a regular file"));
  files_plan_free(&p);
#endif
}

/* push -r: every directory's MKDIR after its parent's, level by level, names sorted; then
 * the files; links and specials skipped with a warning. */
static void test_plan_push_tree(void **state) {
  (void)state;
  files_args_t a;
  files_plan_t p;
  char err[FILES_ERR_MAX];
  make_tmp();
  dir("installer");
  touch("installer/b.txt", "b");
  dir("installer/a");
  touch("installer/a/x", "xx");
  dir("installer/a/y");
  dir("installer/c");
  touch("installer/c/z", "zzz");
  assert_int_equal(symlink("/etc/passwd", at("installer/link")), 0);
  assert_int_equal(mkfifo(at("installer/fifo"), 0600), 0);

  const char *w[] = {"dev-1", at("installer"), "/tmp/"};
  assert_int_equal(parse(&a, "push", w, 3, "3", NULL, err), 0);
  a.recursive = true;
  assert_int_equal(build(&p, &a, err), 0);
  struct {
    files_op_kind_t kind;
    const char *dev, *local;
    int64_t parent;
  } want[] = {
      {FILES_OP_MKDIR, "/tmp/installer", "installer", -1},
      {FILES_OP_MKDIR, "/tmp/installer/a", "installer/a", 0},
      {FILES_OP_MKDIR, "/tmp/installer/c", "installer/c", 0},
      {FILES_OP_MKDIR, "/tmp/installer/a/y", "installer/a/y", 1},
      {FILES_OP_PUT, "/tmp/installer/b.txt", "installer/b.txt", 0},
      {FILES_OP_PUT, "/tmp/installer/a/x", "installer/a/x", 1},
      {FILES_OP_PUT, "/tmp/installer/c/z", "installer/c/z", 2},
  };
  assert_int_equal(p.n, sizeof(want) / sizeof(want[0]));
  for (size_t i = 0; i < p.n; i++) {
    assert_int_equal(p.v[i].kind, want[i].kind);
    assert_string_equal(p.v[i].dev, want[i].dev);
    assert_string_equal(p.v[i].local, at(want[i].local));
    assert_int_equal(p.v[i].parent, want[i].parent);
    assert_int_equal(p.v[i].state, FILES_WAIT);
  }
  assert_int_equal(p.v[6].size, 3);
  struct stat st;
  assert_int_equal(stat(at("installer"), &st), 0);
  assert_int_equal(p.v[0].mode, st.st_mode & 07777); /* the device's copy gets the same mode */
  assert_int_equal(p.nwarn, 2);
  assert_non_null(strstr(p.warn[0], "installer/fifo: not a regular file"));
  assert_non_null(strstr(p.warn[1], "installer/link: a symbolic link, skipped"));
  files_plan_free(&p);

  /* "installer/": what it holds, into the target itself. */
  char contents[1024];
  snprintf(contents, sizeof(contents), "%s/", at("installer"));
  const char *c[] = {"dev-1", contents, "/tmp/inst/"};
  assert_int_equal(parse(&a, "push", c, 3, "3", NULL, err), 0);
  a.recursive = true;
  assert_int_equal(build(&p, &a, err), 0);
  assert_string_equal(p.v[0].dev, "/tmp/inst");
  assert_string_equal(p.v[4].dev, "/tmp/inst/b.txt");
  files_plan_free(&p);
  /* A target without '/': the tree's root is named by it. */
  const char *named[] = {"dev-1", at("installer"), "/opt/app"};
  assert_int_equal(parse(&a, "push", named, 3, "3", NULL, err), 0);
  a.recursive = true;
  assert_int_equal(build(&p, &a, err), 0);
  assert_string_equal(p.v[0].dev, "/opt/app");
  assert_string_equal(p.v[5].dev, "/opt/app/a/x");
  files_plan_free(&p);
}

/* ---- pull -r: a listing becomes a plan ------------------------------------------------- */

static void add_entry(files_listing_t *l, const char *path, Tether__FileKind kind, uint64_t size) {
  Tether__FileStat st = TETHER__FILE_STAT__INIT;
  st.path = (ProtobufCBinaryData){strlen(path), (uint8_t *)(uintptr_t)path};
  st.kind = kind;
  st.size = size;
  st.mode = 0750;
  assert_int_equal(files_listing_add(l, &st), 0);
}

static void test_plan_tree(void **state) {
  (void)state;
  files_plan_t p;
  size_t list;
  files_plan_init(&p);
  assert_int_equal(files_plan_add(&p, FILES_OP_LIST, "/var/log/app", "ev/app", -1, &list), 0);
  files_listing_t *l = p.v[list].listing = files_listing_new();
  assert_non_null(l);
  const Tether__FileKind D = TETHER__FILE_KIND__FILE_KIND_DIR, F = TETHER__FILE_KIND__FILE_KIND_REGULAR;
  /* The device's order is its own; entries are placed parents first whatever it is. */
  add_entry(l, "sub/inner.log", F, 7);
  add_entry(l, "b.log", F, 5);
  add_entry(l, "sub", D, 0);
  add_entry(l, "link", TETHER__FILE_KIND__FILE_KIND_SYMLINK, 0);
  add_entry(l, "../../etc/cron.d/x", F, 1);     /* would land outside the target */
  add_entry(l, "orphan/f", F, 1);               /* its directory was not listed */
  add_entry(l, "b.log", F, 5);                  /* twice */
  add_entry(l, "sub/deeper", D, 0);
  add_entry(l, "sub/deeper/d.log", F, 9);
  add_entry(l, "fifo", TETHER__FILE_KIND__FILE_KIND_OTHER, 0);
  assert_int_equal(files_plan_tree(&p, list), 0);
  /* ops: LIST, LMKDIR root, then in tree order:
   * "../../etc/cron.d/x" (unsafe), "b.log", "b.log" (twice), "orphan/f" (no dir),
   * "sub", "sub/deeper", "sub/deeper/d.log", "sub/inner.log" */
  assert_int_equal(p.n, 10);
  assert_int_equal(p.v[1].kind, FILES_OP_LMKDIR);
  assert_string_equal(p.v[1].local, "ev/app");
  assert_int_equal(p.v[1].parent, -1);
  assert_int_equal(p.v[2].state, FILES_FAILED);
  assert_non_null(strstr(p.v[2].error, "unsafe name"));
  assert_null(p.v[2].local);
  assert_int_equal(p.v[3].kind, FILES_OP_GET);
  assert_string_equal(p.v[3].dev, "/var/log/app/b.log");
  assert_string_equal(p.v[3].local, "ev/app/b.log");
  assert_int_equal(p.v[3].parent, 1);
  assert_int_equal(p.v[3].size, 5);
  assert_int_equal(p.v[3].state, FILES_WAIT);
  assert_int_equal(p.v[4].state, FILES_FAILED);
  assert_non_null(strstr(p.v[4].error, "twice"));
  assert_int_equal(p.v[5].state, FILES_FAILED);
  assert_non_null(strstr(p.v[5].error, "without its directory"));
  assert_int_equal(p.v[6].kind, FILES_OP_LMKDIR);
  assert_string_equal(p.v[6].local, "ev/app/sub");
  assert_int_equal(p.v[6].mode, 0750 | 0700);
  assert_int_equal(p.v[6].parent, 1);
  assert_int_equal(p.v[7].kind, FILES_OP_LMKDIR);
  assert_int_equal(p.v[7].parent, 6);
  assert_string_equal(p.v[8].local, "ev/app/sub/deeper/d.log");
  assert_int_equal(p.v[8].parent, 7);
  assert_string_equal(p.v[9].dev, "/var/log/app/sub/inner.log");
  assert_int_equal(p.v[9].parent, 6);
  assert_int_equal(p.nwarn, 2);
  assert_non_null(strstr(p.warn[0], "/var/log/app/fifo: not a regular file on the device"));
  assert_non_null(strstr(p.warn[1], "/var/log/app/link: a symbolic link on the device"));
  files_plan_free(&p);
}

/* A name from the device with a control character is shown escaped, never raw. */
static void test_plan_tree_escapes(void **state) {
  (void)state;
  files_plan_t p;
  size_t list;
  files_plan_init(&p);
  assert_int_equal(files_plan_add(&p, FILES_OP_LIST, "/d", "ev", -1, &list), 0);
  files_listing_t *l = p.v[list].listing = files_listing_new();
  add_entry(l, "a\x1b]0;x\x07", TETHER__FILE_KIND__FILE_KIND_REGULAR, 1);
  add_entry(l, "s\x1b[2J", TETHER__FILE_KIND__FILE_KIND_SYMLINK, 1);
  assert_int_equal(files_plan_tree(&p, list), 0);
  assert_int_equal(p.n, 3);
  assert_int_equal(p.v[2].state, FILES_FAILED);
  assert_null(strchr(p.v[2].error, 0x1b));
  assert_int_equal(p.nwarn, 1);
  assert_null(strchr(p.warn[0], 0x1b));
  files_plan_free(&p);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_remote_split),   cmocka_unit_test(test_join),
      cmocka_unit_test(test_basename_split), cmocka_unit_test(test_rel_ok),
      cmocka_unit_test(test_path_order),     cmocka_unit_test(test_args),
      cmocka_unit_test(test_args_cp),        cmocka_unit_test(test_plan_pull),
      cmocka_unit_test(test_plan_pull_tree), cmocka_unit_test(test_plan_push),
      cmocka_unit_test(test_plan_push_tree), cmocka_unit_test(test_plan_tree),
      cmocka_unit_test(test_plan_tree_escapes),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
