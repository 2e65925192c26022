/* LIST and MKDIR on the agent (agent/files/list.c): the entries of a directory, of a file, of
 * a whole tree (sorted, links not followed), the FILE_ENTRIES batches they are sent in (each
 * under TT_FILE_CTL_MAX once wrapped, every entry once, `last` on the final one), the limits
 * (TT_FILE_LIST_MAX entries, TT_FILE_DEPTH_MAX levels, TT_FILE_LIST_BYTES_MAX of names: an
 * error, never a cut list), and MKDIR's answers. */
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

/* snprintf into an array that must hold it all. */
#define FMT(buf, ...) assert_true(snprintf(buf, sizeof(buf), __VA_ARGS__) < (int)sizeof(buf))
#include "files.h"
#include "tt/msg.h"

typedef struct {
  char base[64], root[128], ro[128];
  agent_files_fs_t *fs;
  agent_files_batch_t *batch;
} tree_t;

static void mk(const char *dir, const char *name) {
  char p[1024];
  FMT(p, "%s%s%s", dir, name[0] ? "/" : "", name);
  assert_int_equal(mkdir(p, 0755), 0);
}

static void touch(const char *dir, const char *name, const char *text) {
  char p[1024];
  FMT(p, "%s/%s", dir, name);
  int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  assert_true(fd >= 0);
  if (text) assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
  close(fd);
}

/* base/root (rw): a "12345", b/ (c.txt), fifo, link -> a, d/ (empty)
 * base/ro (read-only) */
static int setup(void **state) {
  tree_t *t = calloc(1, sizeof(*t));
  assert_non_null(t);
  FMT(t->base, "/tmp/tt-list-XXXXXX");
  assert_non_null(mkdtemp(t->base));
  FMT(t->root, "%s/root", t->base);
  FMT(t->ro, "%s/ro", t->base);
  mk(t->root, "");
  mk(t->ro, "");
  mk(t->root, "b");
  mk(t->root, "d");
  touch(t->root, "a", "12345");
  touch(t->root, "b/c.txt", "c");
  char p[256];
  FMT(p, "%s/fifo", t->root);
  assert_int_equal(mkfifo(p, 0600), 0);
  FMT(p, "%s/link", t->root);
  assert_int_equal(symlink("a", p), 0);
  t->fs = calloc(1, sizeof(*t->fs));
  t->batch = calloc(1, sizeof(*t->batch));
  assert_non_null(t->fs);
  assert_non_null(t->batch);
  char err[256];
  assert_int_equal(agent_files_fs_init(t->fs, t->root, t->ro, t->root, err, sizeof(err)), 0);
  *state = t;
  return 0;
}

static int teardown(void **state) {
  tree_t *t = *state;
  char cmd[128];
  FMT(cmd, "rm -rf '%s'", t->base);
  assert_int_equal(system(cmd), 0);
  free(t->fs);
  free(t->batch);
  free(t);
  return 0;
}

/* Every batch of l, each checked to fit and to decode; the entries' paths joined by ' ',
 * and how many batches it took. */
static size_t all_batches(tree_t *t, const agent_files_list_t *l, char *paths, size_t cap, Tether__FileStat *first) {
  size_t pos = 0, batches = 0, o = 0, seen = 0;
  paths[0] = '\0';
  for (;;) {
    Tether__FileCtl m = TETHER__FILE_CTL__INIT;
    m.type = TETHER__FILE_MSG_TYPE__FILE_ENTRIES;
    m.id = 4000000000u; /* the longest id there is */
    size_t before = pos;
    agent_files_list_batch(l, &pos, &m, t->batch);
    batches++;
    Tether__ChannelControl cc = TETHER__CHANNEL_CONTROL__INIT;
    cc.body_case = TETHER__CHANNEL_CONTROL__BODY_FILE;
    cc.file = &m;
    size_t len = tether__channel_control__get_packed_size(&cc);
    if (len > TT_FILE_CTL_MAX) fail_msg("a batch of %zu entries packs to %zu bytes", m.n_entries, len);
    uint8_t *buf = malloc(len);
    assert_non_null(buf);
    tether__channel_control__pack(&cc, buf);
    tt_msg_t msg;
    assert_int_equal(tt_msg_unpack_ctrl(&msg, buf, len), 0);
    const Tether__FileCtl *back = ((const Tether__ChannelControl *)msg.m)->file;
    assert_int_equal(back->n_entries, pos - before);
    assert_int_equal(back->last, pos == agent_files_list_count(l));
    for (size_t i = 0; i < back->n_entries; i++, seen++) {
      const Tether__FileStat *s = back->entries[i];
      if (seen == 0 && first) {
        *first = *s;
        first->path.data = NULL; /* the rest is copied by value; names are checked below */
      }
      int n = snprintf(paths + o, cap - o, "%s%.*s", o ? " " : "", (int)s->path.len, (const char *)s->path.data);
      if (n > 0 && (size_t)n < cap - o) o += (size_t)n;
      assert_string_equal(tt_text_valid(s->owner, TT_NAME_MAX) ? "ok" : "bad", "ok");
    }
    tt_msg_free(&msg);
    free(buf);
    if (m.last) break;
    assert_true(pos > before); /* never an empty batch but the last */
  }
  assert_int_equal(seen, agent_files_list_count(l));
  return batches;
}

static void test_list_directory(void **state) {
  tree_t *t = *state;
  agent_files_list_t *l;
  char err[256], paths[512];
  assert_int_equal(agent_files_list(t->fs, t->root, false, false, &l, err, sizeof(err)), 0);
  Tether__FileStat first;
  assert_int_equal(all_batches(t, l, paths, sizeof(paths), &first), 1);
  assert_string_equal(paths, "a b d fifo link");
  assert_int_equal(first.kind, TETHER__FILE_KIND__FILE_KIND_REGULAR);
  assert_int_equal(first.size, 5);
  assert_int_equal(first.mode, 0644);
  assert_true(first.mtime_ns > 1000000000ll * 1000000000ll);
  /* Kinds, the link's target, owner names. */
  size_t pos = 0;
  Tether__FileCtl m = TETHER__FILE_CTL__INIT;
  agent_files_list_batch(l, &pos, &m, t->batch);
  assert_int_equal(m.n_entries, 5);
  assert_int_equal(m.entries[1]->kind, TETHER__FILE_KIND__FILE_KIND_DIR);
  assert_int_equal(m.entries[3]->kind, TETHER__FILE_KIND__FILE_KIND_OTHER);
  assert_int_equal(m.entries[4]->kind, TETHER__FILE_KIND__FILE_KIND_SYMLINK);
  assert_int_equal(m.entries[4]->link.len, 1);
  assert_memory_equal(m.entries[4]->link.data, "a", 1);
  if (geteuid() == 0) {
    assert_int_equal(m.entries[0]->owner.len, 4);
    assert_memory_equal(m.entries[0]->owner.data, "root", 4);
  }
  agent_files_list_free(l);
  /* Relative to home, through a link, and a file alone. */
  assert_int_equal(agent_files_list(t->fs, "b", false, false, &l, err, sizeof(err)), 0);
  all_batches(t, l, paths, sizeof(paths), NULL);
  assert_string_equal(paths, "c.txt");
  agent_files_list_free(l);
  assert_int_equal(agent_files_list(t->fs, "link", false, false, &l, err, sizeof(err)), 0);
  all_batches(t, l, paths, sizeof(paths), &first);
  assert_string_equal(paths, "link");
  assert_int_equal(first.kind, TETHER__FILE_KIND__FILE_KIND_REGULAR); /* what it points to */
  agent_files_list_free(l);
  /* self: the directory itself, one entry named as its last component (a stat). */
  assert_int_equal(agent_files_list(t->fs, "b", false, true, &l, err, sizeof(err)), 0);
  all_batches(t, l, paths, sizeof(paths), &first);
  assert_string_equal(paths, "b");
  assert_int_equal(first.kind, TETHER__FILE_KIND__FILE_KIND_DIR);
  agent_files_list_free(l);
  /* An empty directory: one batch, no entries, last. */
  assert_int_equal(agent_files_list(t->fs, "d", false, false, &l, err, sizeof(err)), 0);
  assert_int_equal(all_batches(t, l, paths, sizeof(paths), NULL), 1);
  assert_string_equal(paths, "");
  agent_files_list_free(l);
  /* A read-only root can be listed. */
  assert_int_equal(agent_files_list(t->fs, t->ro, false, false, &l, err, sizeof(err)), 0);
  agent_files_list_free(l);
}

static void test_list_recursive(void **state) {
  tree_t *t = *state;
  agent_files_list_t *l;
  char err[256], paths[512];
  assert_int_equal(agent_files_list(t->fs, t->root, true, false, &l, err, sizeof(err)), 0);
  all_batches(t, l, paths, sizeof(paths), NULL);
  assert_string_equal(paths, "a b b/c.txt d fifo link"); /* the link is not entered */
  agent_files_list_free(l);
}

static void test_list_refused(void **state) {
  tree_t *t = *state;
  agent_files_list_t *l = (agent_files_list_t *)&l;
  char err[256];
  assert_int_equal(agent_files_list(t->fs, t->base, false, false, &l, err, sizeof(err)), TT_EDENIED);
  assert_null(l);
  assert_non_null(strstr(err, "is outside"));
  assert_int_equal(agent_files_list(t->fs, "nothing", false, false, &l, err, sizeof(err)), TT_ENOTFOUND);
  assert_int_equal(agent_files_list(t->fs, "b/../a", false, false, &l, err, sizeof(err)), TT_EINVAL);
  char p[256];
  FMT(p, "%s/out", t->root);
  assert_int_equal(symlink("/etc", p), 0);
  assert_int_equal(agent_files_list(t->fs, "out", false, false, &l, err, sizeof(err)), TT_EDENIED);
  assert_non_null(strstr(err, "leads outside"));
}

/* Many entries with long names: many batches, every one under the frame's limit. */
static void test_list_batches(void **state) {
  tree_t *t = *state;
  char dir[256], name[300];
  FMT(dir, "%s/many", t->root);
  assert_int_equal(mkdir(dir, 0755), 0);
  for (int i = 0; i < 3000; i++) {
    int n = snprintf(name, sizeof(name), "%05d-", i);
    memset(name + n, 'x', (size_t)(i % 250));
    name[n + i % 250] = '\0';
    touch(dir, name, NULL);
  }
  agent_files_list_t *l;
  char err[256];
  char *paths = malloc(1 << 20);
  assert_non_null(paths);
  assert_int_equal(agent_files_list(t->fs, "many", false, false, &l, err, sizeof(err)), 0);
  assert_int_equal(agent_files_list_count(l), 3000);
  size_t batches = all_batches(t, l, paths, 1 << 20, NULL);
  assert_true(batches > 20);
  assert_memory_equal(paths, "00000- 00001-x 00002-xx", 23); /* in order */
  agent_files_list_free(l);
  free(paths);
}

/* Deeper than TT_FILE_DEPTH_MAX: an error. Exactly that deep: listed. */
static void test_list_depth(void **state) {
  tree_t *t = *state;
  char p[1024];
  size_t o = (size_t)snprintf(p, sizeof(p), "%s/deep", t->root);
  assert_int_equal(mkdir(p, 0755), 0);
  for (unsigned i = 0; i < TT_FILE_DEPTH_MAX; i++) {
    o += (size_t)snprintf(p + o, sizeof(p) - o, "/d");
    assert_int_equal(mkdir(p, 0755), 0);
  }
  agent_files_list_t *l;
  char err[256];
  /* deep/d/.../d: TT_FILE_DEPTH_MAX levels below "deep", the last one empty. */
  assert_int_equal(agent_files_list(t->fs, "deep", true, false, &l, err, sizeof(err)), 0);
  assert_int_equal(agent_files_list_count(l), TT_FILE_DEPTH_MAX);
  agent_files_list_free(l);
  touch(p, "one-too-deep", NULL);
  assert_int_equal(agent_files_list(t->fs, "deep", true, false, &l, err, sizeof(err)), TT_ETOOBIG);
  assert_null(l);
  assert_non_null(strstr(err, "deeper than 64 levels"));
  /* Not recursive: only the first level is read. */
  assert_int_equal(agent_files_list(t->fs, "deep", false, false, &l, err, sizeof(err)), 0);
  agent_files_list_free(l);
}

/* More than TT_FILE_LIST_MAX entries: an error, not the first hundred thousand. */
static void test_list_too_many(void **state) {
  tree_t *t = *state;
  char dir[256], name[32];
  FMT(dir, "%s/big", t->root);
  assert_int_equal(mkdir(dir, 0755), 0);
  int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  assert_true(dfd >= 0);
  for (unsigned i = 0; i < TT_FILE_LIST_MAX; i++) {
    FMT(name, "%u", i);
    int fd = openat(dfd, name, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    assert_true(fd >= 0);
    close(fd);
  }
  agent_files_list_t *l;
  char err[256];
  assert_int_equal(agent_files_list(t->fs, "big", false, false, &l, err, sizeof(err)), 0); /* exactly the limit */
  assert_int_equal(agent_files_list_count(l), TT_FILE_LIST_MAX);
  agent_files_list_free(l);
  int fd = openat(dfd, "one-more", O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  assert_true(fd >= 0);
  close(fd);
  close(dfd);
  assert_int_equal(agent_files_list(t->fs, "big", false, false, &l, err, sizeof(err)), TT_ETOOBIG);
  assert_null(l);
  assert_non_null(strstr(err, "more than 100000 entries"));
  /* ... and in a tree: "big" holds the limit, the rest of root more. */
  assert_int_equal(agent_files_list(t->fs, t->root, true, false, &l, err, sizeof(err)), TT_ETOOBIG);
  assert_null(l);
}

/* More than TT_FILE_LIST_BYTES_MAX of names (long names in long directories) under the
 * entry limit: an error too. */
static void test_list_too_many_bytes(void **state) {
  tree_t *t = *state;
  char top[256], dir[512], name[TT_FILE_NAME_MAX + 1];
  FMT(top, "%s/wide", t->root);
  assert_int_equal(mkdir(top, 0755), 0);
  /* Each entry: a 255-byte directory name + '/' + a 255-byte name, ~520 bytes with its
   * owner and group: 34 directories of 2000 (68,000 entries) pass 32 MiB. */
  size_t per_dir = 2000, dirs = TT_FILE_LIST_BYTES_MAX / (per_dir * 500) + 1;
  for (size_t d = 0; d < dirs; d++) {
    memset(name, 'd', TT_FILE_NAME_MAX);
    name[TT_FILE_NAME_MAX] = '\0';
    snprintf(name, 8, "%06u", (unsigned)(d % 1000000));
    name[6] = 'd';
    FMT(dir, "%s/%s", top, name);
    assert_int_equal(mkdir(dir, 0755), 0);
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    assert_true(dfd >= 0);
    for (size_t i = 0; i < per_dir; i++) {
      memset(name, 'f', TT_FILE_NAME_MAX);
      snprintf(name, 8, "%06u", (unsigned)(i % 1000000));
      name[6] = 'f';
      int fd = openat(dfd, name, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
      assert_true(fd >= 0);
      close(fd);
    }
    close(dfd);
  }
  assert_true(dirs * per_dir < TT_FILE_LIST_MAX);
  agent_files_list_t *l;
  char err[256];
  assert_int_equal(agent_files_list(t->fs, "wide", true, false, &l, err, sizeof(err)), TT_ETOOBIG);
  assert_null(l);
  assert_non_null(strstr(err, "MiB"));
}

static void test_mkdir(void **state) {
  tree_t *t = *state;
  char err[256], p[256];
  struct stat st;
  mode_t old = umask(022);
  assert_int_equal(agent_files_mkdir(t->fs, "new", 0750, err, sizeof(err)), 0);
  FMT(p, "%s/new", t->root);
  assert_int_equal(stat(p, &st), 0);
  assert_true(S_ISDIR(st.st_mode));
  assert_int_equal(st.st_mode & 07777, 0750);
  assert_int_equal(agent_files_mkdir(t->fs, "new", 0700, err, sizeof(err)), 0); /* there already: fine */
  assert_int_equal(agent_files_mkdir(t->fs, "new/inner", 0, err, sizeof(err)), 0); /* 0: 0777 less the umask */
  FMT(p, "%s/new/inner", t->root);
  assert_int_equal(stat(p, &st), 0);
  assert_int_equal(st.st_mode & 07777, 0755);
  assert_int_equal(agent_files_mkdir(t->fs, "suid", 06777, err, sizeof(err)), 0);
  FMT(p, "%s/suid", t->root);
  assert_int_equal(stat(p, &st), 0);
  assert_int_equal(st.st_mode & 07777, 0755); /* no set-ID bits, the umask's taken */
  assert_int_equal(agent_files_mkdir(t->fs, "ro", 0555, err, sizeof(err)), 0);
  FMT(p, "%s/ro", t->root);
  assert_int_equal(stat(p, &st), 0);
  assert_int_equal(st.st_mode & 07777, 0755); /* shell.user must be able to fill it */
  umask(077);
  assert_int_equal(agent_files_mkdir(t->fs, "private", 0777, err, sizeof(err)), 0);
  FMT(p, "%s/private", t->root);
  assert_int_equal(stat(p, &st), 0);
  assert_int_equal(st.st_mode & 07777, 0700); /* the umask says what the others get */
  assert_int_equal(agent_files_mkdir(t->fs, "x.tether-part", 0755, err, sizeof(err)), TT_EINVAL);
  assert_non_null(strstr(err, "refused"));
  umask(old);
  assert_int_equal(agent_files_mkdir(t->fs, "a", 0755, err, sizeof(err)), TT_EINVAL);
  assert_non_null(strstr(err, "exists and is not a directory"));
  assert_int_equal(agent_files_mkdir(t->fs, "link", 0755, err, sizeof(err)), TT_EINVAL); /* a link is not one */
  assert_int_equal(agent_files_mkdir(t->fs, "x/y/z", 0755, err, sizeof(err)), TT_ENOTFOUND);
  assert_non_null(strstr(err, "does not exist"));
  FMT(p, "%s/x", t->ro);
  assert_int_equal(agent_files_mkdir(t->fs, p, 0755, err, sizeof(err)), TT_EDENIED);
  assert_non_null(strstr(err, "read-only"));
  assert_int_equal(access(p, F_OK), -1);
  assert_int_equal(agent_files_mkdir(t->fs, t->root, 0755, err, sizeof(err)), TT_EINVAL);
  assert_int_equal(agent_files_mkdir(t->fs, "/etc/tt-x", 0755, err, sizeof(err)), TT_EDENIED);
  assert_int_equal(access("/etc/tt-x", F_OK), -1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_list_directory, setup, teardown),
      cmocka_unit_test_setup_teardown(test_list_recursive, setup, teardown),
      cmocka_unit_test_setup_teardown(test_list_refused, setup, teardown),
      cmocka_unit_test_setup_teardown(test_list_batches, setup, teardown),
      cmocka_unit_test_setup_teardown(test_list_depth, setup, teardown),
      cmocka_unit_test_setup_teardown(test_list_too_many, setup, teardown),
      cmocka_unit_test_setup_teardown(test_list_too_many_bytes, setup, teardown),
      cmocka_unit_test_setup_teardown(test_mkdir, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
