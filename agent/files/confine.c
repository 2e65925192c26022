/* Where a technician's file requests may reach on this device: the roots (files.roots,
 * read-write; files.read_only), and every open beneath one of them. A device path is made
 * absolute (relative ones start in shell.user's home), refused outright if it holds "..",
 * matched lexically to the root that holds it (the longest, component-wise), and opened
 * beneath that root's directory with openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS), or,
 * where openat2 is missing, by a walk of our own that does the same: one component at a
 * time with O_NOFOLLOW, each symbolic link read and followed by hand, an absolute one or
 * one that climbs out refused. Nothing here follows a link the kernel resolves for us
 * outside a root, so nothing can be read or written outside one. Runs on the transfer
 * pool's threads, whose file-system identity is shell.user's (identity.c). */
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "files.h"
#include "tt/log.h"
#include "tt/msg.h"

/* Symbolic links one resolution may follow (Linux's MAXSYMLINKS). */
#define WALK_LINKS_MAX 40
/* What a message shows of a long path: its end, which names the file. */
#define SHOWN_MAX 120u

/* Set once openat2 said ENOSYS: every later resolution walks. */
static atomic_bool g_no_openat2;

/* ---- checks and messages ------------------------------------------------------------ */

bool agent_files_path_ok(const void *p, size_t len, char *why, size_t cap) {
  const uint8_t *s = p;
  if (len == 0 || !s) {
    snprintf(why, cap, "an empty path");
    return false;
  }
  if (len > TT_FILE_PATH_MAX) {
    snprintf(why, cap, "a path longer than %u bytes", TT_FILE_PATH_MAX);
    return false;
  }
  if (memchr(s, 0, len)) {
    snprintf(why, cap, "a path with a NUL byte");
    return false;
  }
  ProtobufCBinaryData b = {len, (uint8_t *)(uintptr_t)s};
  if (!tt_text_valid(b, TT_FILE_PATH_MAX)) {
    snprintf(why, cap, "a path with control characters or invalid UTF-8");
    return false;
  }
  size_t comp = 0;
  for (size_t i = 0; i < len; i++) {
    if (s[i] == '/') comp = 0;
    else if (++comp > TT_FILE_NAME_MAX) {
      snprintf(why, cap, "a path component longer than %u bytes", TT_FILE_NAME_MAX);
      return false;
    }
  }
  return true;
}

const char *agent_files_shown(const char *path, char *buf, size_t cap) {
  size_t n = strlen(path);
  size_t keep = cap > 4 ? cap - 4 : 0;
  if (keep > SHOWN_MAX) keep = SHOWN_MAX;
  if (n < cap && n <= SHOWN_MAX) {
    snprintf(buf, cap, "%s", path);
    return buf;
  }
  const char *tail = path + n - keep;
  while (*tail && ((uint8_t)*tail & 0xc0) == 0x80) tail++; /* not in the middle of a character */
  snprintf(buf, cap, "...%s", tail);
  return buf;
}

int agent_files_errno(int e, const char *shown, char *err, size_t errlen) {
  switch (e) {
  case -ENOENT:
    snprintf(err, errlen, "%s does not exist", shown);
    return TT_ENOTFOUND;
  case -EACCES:
  case -EPERM:
    snprintf(err, errlen, "%s: permission denied", shown);
    return TT_EDENIED;
  case -EXDEV:
    snprintf(err, errlen,
             "%s: a symbolic link on the way leads outside its shared directory (absolute links and links out "
             "of a shared directory are refused)",
             shown);
    return TT_EDENIED;
  case -ELOOP:
    snprintf(err, errlen, "%s: too many symbolic links, or a link into /proc (refused)", shown);
    return TT_EDENIED;
  case -ENOTDIR:
    snprintf(err, errlen, "%s: a component of the path is not a directory", shown);
    return TT_EINVAL;
  case -EISDIR:
    snprintf(err, errlen, "%s is a directory", shown);
    return TT_EINVAL;
  case -EEXIST:
    snprintf(err, errlen, "%s exists already", shown);
    return TT_EINVAL;
  case -ENAMETOOLONG:
    snprintf(err, errlen, "%s: the name is too long", shown);
    return TT_ETOOBIG;
  case -EAGAIN:
    snprintf(err, errlen, "%s changed while it was opened: try again", shown);
    return TT_EBUSY;
  case -ENOSPC:
  case -EDQUOT:
    snprintf(err, errlen, "%s: no space left on the device", shown);
    return TT_EIO;
  case -EROFS:
    snprintf(err, errlen, "%s: the file system is read-only", shown);
    return TT_EDENIED;
  default:
    snprintf(err, errlen, "%s: %s", shown, strerror(-e));
    return TT_EIO;
  }
}

/* ---- roots ----------------------------------------------------------------------------- */

/* path (absolute) without empty and "." components and without a trailing slash, into out.
 * TT_EINVAL for a ".." component, TT_ETOOBIG if it does not fit. */
static int normalize(const char *path, char *out, size_t cap) {
  size_t o = 0;
  const char *p = path;
  while (*p) {
    while (*p == '/') p++;
    if (!*p) break;
    const char *e = strchr(p, '/');
    size_t n = e ? (size_t)(e - p) : strlen(p);
    if (n == 1 && p[0] == '.') {
      p += n;
      continue;
    }
    if (n == 2 && p[0] == '.' && p[1] == '.') return TT_EINVAL;
    if (o + 1 + n + 1 > cap) return TT_ETOOBIG;
    out[o++] = '/';
    memcpy(out + o, p, n);
    o += n;
    p += n;
  }
  if (o == 0) {
    if (cap < 2) return TT_ETOOBIG;
    out[o++] = '/';
  }
  out[o] = '\0';
  return 0;
}

/* How much of path (normalized) root (normalized) covers: its length when path is root or
 * below it, component-wise ("/tmpx" is not below "/tmp"), else 0. */
static size_t covers(const char *root, const char *path) {
  size_t n = strlen(root);
  if (n == 0) return 0;
  if (n == 1) return 1; /* "/" */
  if (strncmp(root, path, n) != 0) return 0;
  return path[n] == '\0' || path[n] == '/' ? n : 0;
}

static int add_root(agent_files_fs_t *fs, const char *item, bool rw, char *err, size_t errlen) {
  const char *key = rw ? "files.roots" : "files.read_only";
  char norm[AGENT_FILES_PATH_MAX], real[AGENT_FILES_PATH_MAX];
  if (item[0] != '/') {
    snprintf(err, errlen, "%s: %s is not an absolute path", key, item);
    return TT_ECONFIG;
  }
  int rc = normalize(item, norm, sizeof(norm));
  if (rc) {
    snprintf(err, errlen, "%s: %s %s", key, item, rc == TT_EINVAL ? "holds '..'" : "is too long");
    return TT_ECONFIG;
  }
  struct stat st;
  if (!realpath(norm, real) || stat(real, &st) != 0) {
    TT_WARN("files", "a shared directory does not exist: left out", "key=%s root=\"%s\" err=\"%s\"", key, norm,
            strerror(errno));
    return 0;
  }
  if (!S_ISDIR(st.st_mode)) {
    TT_WARN("files", "a shared directory is not a directory: left out", "key=%s root=\"%s\"", key, norm);
    return 0;
  }
  for (size_t i = 0; i < fs->nroots; i++) {
    agent_files_root_t *r = &fs->roots[i];
    if (strcmp(r->path, real) != 0) continue;
    if (r->rw && !rw) TT_WARN("files", "a directory is in both lists: it is shared read-only", "root=\"%s\"", real);
    r->rw = r->rw && rw; /* the narrower grant wins */
    if (!r->alias[0] && strcmp(norm, real) != 0) snprintf(r->alias, sizeof(r->alias), "%s", norm);
    return 0;
  }
  if (fs->nroots == AGENT_FILES_ROOTS_MAX) {
    snprintf(err, errlen, "files.roots and files.read_only name more than %u directories",
             (unsigned)AGENT_FILES_ROOTS_MAX);
    return TT_ECONFIG;
  }
  agent_files_root_t *r = &fs->roots[fs->nroots++];
  memset(r, 0, sizeof(*r));
  snprintf(r->path, sizeof(r->path), "%s", real);
  if (strcmp(norm, real) != 0) snprintf(r->alias, sizeof(r->alias), "%s", norm);
  r->rw = rw;
  r->dev = st.st_dev;
  r->ino = st.st_ino;
  return 0;
}

static int add_list(agent_files_fs_t *fs, const char *list, bool rw, char *err, size_t errlen) {
  char *buf = strdup(list), *save = NULL;
  int rc = 0;
  if (!buf) {
    snprintf(err, errlen, "out of memory");
    return TT_ENOMEM;
  }
  for (char *it = strtok_r(buf, ",", &save); it && !rc; it = strtok_r(NULL, ",", &save)) {
    while (*it == ' ' || *it == '\t') it++;
    size_t n = strlen(it);
    while (n && (it[n - 1] == ' ' || it[n - 1] == '\t')) it[--n] = '\0';
    if (n) rc = add_root(fs, it, rw, err, errlen);
  }
  free(buf);
  return rc;
}

int agent_files_fs_init(agent_files_fs_t *fs, const char *rw_list, const char *ro_list, const char *home,
                        char *err, size_t errlen) {
  memset(fs, 0, sizeof(*fs));
  int rc = 0;
  if (home && home[0] == '/' && !realpath(home, fs->home)) fs->home[0] = '\0';
  if (rw_list && rw_list[0]) {
    if (strcmp(rw_list, "none") != 0) rc = add_list(fs, rw_list, true, err, errlen);
  } else {
    if (fs->home[0]) rc = add_root(fs, fs->home, true, err, errlen);
    if (!rc) rc = add_root(fs, "/tmp", true, err, errlen);
  }
  if (!rc && ro_list && ro_list[0]) rc = add_list(fs, ro_list, false, err, errlen);
  if (rc) return rc;
  for (size_t i = 0; i < fs->nroots; i++) {
    agent_files_root_t *r = &fs->roots[i];
    for (size_t j = 0; j < fs->nroots && r->rw; j++) {
      const agent_files_root_t *o = &fs->roots[j];
      if (!o->rw && covers(r->path, o->path)) r->ro_inside = true;
    }
    TT_INFO("files", "shared directory", "root=\"%s\" as=\"%s\" access=%s", r->path, r->alias[0] ? r->alias : r->path,
            r->rw ? "read-write" : "read-only");
  }
  if (!fs->nroots) TT_WARN("files", "no shared directories: file requests will be refused", NULL);
  return 0;
}

void agent_files_roots_text(const agent_files_fs_t *fs, char *out, size_t cap) {
  size_t o = 0;
  out[0] = '\0';
  for (int pass = 0; pass < 2; pass++) {
    bool first = true;
    for (size_t i = 0; i < fs->nroots; i++) {
      const agent_files_root_t *r = &fs->roots[i];
      if (r->rw != (pass == 0)) continue;
      const char *sep = first ? (pass == 1 ? (o ? "; read-only: " : "read-only: ") : "") : ", ";
      int n = snprintf(out + o, cap - o, "%s%s", sep, r->alias[0] ? r->alias : r->path);
      if (n < 0 || (size_t)n >= cap - o) return;
      o += (size_t)n;
      first = false;
    }
  }
  if (!o) snprintf(out, cap, "none");
}

/* ---- finding the root ------------------------------------------------------------------- */

typedef struct {
  const agent_files_root_t *root;
  char abs[AGENT_FILES_PATH_MAX]; /* the normalized absolute path */
  const char *rest;               /* in abs: below the root, "" for the root itself */
  char shown[SHOWN_MAX + 8];
} where_t;

static int locate(const agent_files_fs_t *fs, const char *path, bool write, where_t *w, char *err, size_t errlen) {
  char why[96];
  memset(w, 0, sizeof(*w));
  if (!agent_files_path_ok(path, strlen(path), why, sizeof(why))) {
    snprintf(err, errlen, "refused: %s", why);
    return TT_EINVAL;
  }
  char joined[AGENT_FILES_PATH_MAX * 2];
  if (path[0] != '/') {
    if (!fs->home[0]) {
      snprintf(err, errlen, "%s: a relative path needs shell.user's home directory, and there is none",
               agent_files_shown(path, w->shown, sizeof(w->shown)));
      return TT_EINVAL;
    }
    snprintf(joined, sizeof(joined), "%s/%s", fs->home, path);
    path = joined;
  }
  agent_files_shown(path, w->shown, sizeof(w->shown));
  int rc = normalize(path, w->abs, sizeof(w->abs));
  if (rc == TT_EINVAL) {
    snprintf(err, errlen, "%s: '..' is not allowed in a path", w->shown);
    return TT_EINVAL;
  }
  if (rc) {
    snprintf(err, errlen, "%s: longer than %u bytes", w->shown, TT_FILE_PATH_MAX);
    return TT_ETOOBIG;
  }
  agent_files_shown(w->abs, w->shown, sizeof(w->shown));
  size_t best = 0;
  for (size_t i = 0; i < fs->nroots; i++) {
    const agent_files_root_t *r = &fs->roots[i];
    size_t n = covers(r->path, w->abs), m = covers(r->alias, w->abs);
    if (m > n) n = m;
    if (n > best) {
      best = n;
      w->root = r;
    }
  }
  if (!w->root) {
    char roots[512];
    agent_files_roots_text(fs, roots, sizeof(roots));
    snprintf(err, errlen, "%s is outside the directories this device shares (%s)", w->shown, roots);
    return TT_EDENIED;
  }
  w->rest = w->abs + best;
  while (*w->rest == '/') w->rest++;
  if (write && !w->root->rw) {
    snprintf(err, errlen, "%s is in %s, which this device shares read-only", w->shown,
             w->root->alias[0] ? w->root->alias : w->root->path);
    return TT_EDENIED;
  }
  return 0;
}

/* The root's directory (O_PATH), the one found at start. */
static int root_open(const where_t *w, char *err, size_t errlen) {
  const agent_files_root_t *r = w->root;
  int fd = open(r->path, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    if (e == EACCES || e == EPERM) {
      snprintf(err, errlen, "%s: shell.user may not enter %s", w->shown, r->path);
      return TT_EDENIED;
    }
    return agent_files_errno(-e, r->path, err, errlen);
  }
  struct stat st;
  if (fstat(fd, &st) != 0 || st.st_dev != r->dev || st.st_ino != r->ino) {
    close(fd);
    snprintf(err, errlen, "%s: the shared directory %s was replaced since the agent started (restart it)", w->shown,
             r->path);
    return TT_EDENIED;
  }
  return fd;
}

/* ---- opening beneath a root -------------------------------------------------------------- */

/* dir's entry `name` as O_PATH without following it, and what it is. */
static int step(int dir, const char *name, struct stat *st) {
  int fd = openat(dir, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return -errno;
  if (fstat(fd, st) != 0) {
    int e = -errno;
    close(fd);
    return e;
  }
  return fd;
}

/* Reopen the directory `done` (components below root, each a real directory when first
 * walked): after a link's "..", the walk goes back up by walking down again, so that it
 * never leaves the root by "..". */
static int rewalk(int rootfd, const char *done) {
  int cur = openat(rootfd, ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (cur < 0) return -errno;
  char comp[TT_FILE_NAME_MAX + 1];
  for (const char *p = done; *p;) {
    const char *e = strchr(p, '/');
    size_t n = e ? (size_t)(e - p) : strlen(p);
    memcpy(comp, p, n);
    comp[n] = '\0';
    p += n + (e ? 1 : 0);
    int next = openat(cur, comp, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    close(cur);
    if (next < 0) return -EAGAIN; /* it was a directory a moment ago: something moved */
    cur = next;
  }
  return cur;
}

/* openat2(RESOLVE_BENEATH) by hand: rest beneath rootfd, one component at a time, each
 * symbolic link read (never followed by the kernel) and spliced into what is left, an
 * absolute one or a ".." above the root refused with EXDEV. The last component is opened
 * with flags (plus O_NOFOLLOW; O_PATH: as found). */
static int walk(int rootfd, const char *rest, int flags) {
  /* todo: what is left to resolve; done: the directories below root we stand in. */
  char *todo = malloc(AGENT_FILES_PATH_MAX * 2), *done = malloc(AGENT_FILES_PATH_MAX);
  char comp[TT_FILE_NAME_MAX + 1], link[AGENT_FILES_PATH_MAX];
  int cur = -1, rc = 0, links = 0;
  size_t dlen = 0;
  if (!todo || !done) {
    rc = -ENOMEM;
    goto out;
  }
  snprintf(todo, AGENT_FILES_PATH_MAX * 2, "%s", rest);
  done[0] = '\0';
  cur = openat(rootfd, ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (cur < 0) {
    rc = -errno;
    goto out;
  }
  size_t at = 0;
  for (;;) {
    while (todo[at] == '/') at++;
    if (!todo[at]) { /* the path ended on a directory ("", ".", "a/..") */
      if (flags & O_PATH) {
        rc = cur;
        cur = -1;
      } else {
        rc = openat(cur, ".", flags | O_CLOEXEC);
        if (rc < 0) rc = -errno;
      }
      goto out;
    }
    const char *e = strchr(todo + at, '/');
    size_t n = e ? (size_t)(e - (todo + at)) : strlen(todo + at);
    if (n > TT_FILE_NAME_MAX) {
      rc = -ENAMETOOLONG;
      goto out;
    }
    memcpy(comp, todo + at, n);
    comp[n] = '\0';
    at += n;
    size_t more = at;
    while (todo[more] == '/') more++;
    bool last = todo[more] == '\0';
    if (strcmp(comp, ".") == 0) continue;
    if (strcmp(comp, "..") == 0) {
      if (dlen == 0) {
        rc = -EXDEV; /* above the root */
        goto out;
      }
      char *slash = strrchr(done, '/');
      dlen = slash ? (size_t)(slash - done) : 0;
      done[dlen] = '\0';
      close(cur);
      cur = rewalk(rootfd, done);
      if (cur < 0) {
        rc = cur;
        goto out;
      }
      continue;
    }
    struct stat st;
    int fd = step(cur, comp, &st);
    if (fd < 0) {
      rc = fd;
      goto out;
    }
    if (S_ISLNK(st.st_mode)) {
      ssize_t ln = readlinkat(fd, "", link, sizeof(link));
      close(fd);
      if (ln < 0) {
        rc = -errno;
        goto out;
      }
      if ((size_t)ln >= sizeof(link)) {
        rc = -ENAMETOOLONG;
        goto out;
      }
      link[ln] = '\0';
      if (++links > WALK_LINKS_MAX) {
        rc = -ELOOP;
        goto out;
      }
      if (link[0] == '/') {
        rc = -EXDEV; /* an absolute link: never beneath the root as the kernel would read it */
        goto out;
      }
      /* todo = link + "/" + what was left after this component */
      size_t left = strlen(todo + at);
      if ((size_t)ln + 1 + left + 1 > AGENT_FILES_PATH_MAX * 2) {
        rc = -ENAMETOOLONG;
        goto out;
      }
      memmove(todo + ln + 1, todo + at, left + 1);
      memcpy(todo, link, (size_t)ln);
      todo[ln] = '/';
      at = 0;
      continue;
    }
    if (!last) {
      if (!S_ISDIR(st.st_mode)) {
        close(fd);
        rc = -ENOTDIR;
        goto out;
      }
      if (dlen + 1 + n + 1 > AGENT_FILES_PATH_MAX) {
        close(fd);
        rc = -ENAMETOOLONG;
        goto out;
      }
      if (dlen) done[dlen++] = '/';
      memcpy(done + dlen, comp, n + 1);
      dlen += n;
      close(cur);
      cur = fd;
      continue;
    }
    /* The last component, not a link. */
    if (flags & O_PATH) {
      rc = fd;
      goto out;
    }
    int real = openat(cur, comp, flags | O_NOFOLLOW | O_CLOEXEC);
    if (real < 0) {
      rc = errno == ELOOP ? -EAGAIN : -errno; /* became a link since step */
      close(fd);
      goto out;
    }
    struct stat rs;
    if (fstat(real, &rs) != 0 || rs.st_dev != st.st_dev || rs.st_ino != st.st_ino) {
      close(real);
      close(fd);
      rc = -EAGAIN;
      goto out;
    }
    close(fd);
    rc = real;
    goto out;
  }
out:
  if (cur >= 0) close(cur);
  free(todo);
  free(done);
  return rc;
}

/* rest beneath rootfd with flags: openat2 where the kernel has it, else the walk. */
static int beneath(const agent_files_fs_t *fs, int rootfd, const char *rest, int flags) {
  if (!fs->walk && !atomic_load(&g_no_openat2)) {
    struct open_how how = {.flags = (uint64_t)(flags | O_CLOEXEC), .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS};
    for (int tries = 0; tries < 3; tries++) {
      long fd = syscall(SYS_openat2, rootfd, rest[0] ? rest : ".", &how, sizeof(how));
      if (fd >= 0) return (int)fd;
      if (errno == EAGAIN) continue; /* a rename raced a "..": the kernel asks us to retry */
      if (errno != ENOSYS) return -errno;
      atomic_store(&g_no_openat2, true);
      TT_INFO("files", "openat2 is missing: paths are resolved by walking them", NULL);
      break;
    }
    if (!atomic_load(&g_no_openat2)) return -EAGAIN;
  }
  return walk(rootfd, rest, flags);
}

/* A write lands under `w`'s read-write root, never in a read-only root beneath it (which a
 * link inside the rw root could reach lexically unseen): climb from dir to the root. */
static int not_read_only(const agent_files_fs_t *fs, const where_t *w, int dir, char *err, size_t errlen) {
  const agent_files_root_t *rw = w->root;
  if (!rw->ro_inside) return 0;
  int fd = openat(dir, ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
  for (unsigned up = 0; fd >= 0 && up <= TT_FILE_PATH_MAX / 2; up++) {
    struct stat st, pst;
    if (fstat(fd, &st) != 0) break;
    if (st.st_dev == rw->dev && st.st_ino == rw->ino) {
      close(fd);
      return 0;
    }
    for (size_t i = 0; i < fs->nroots; i++) {
      const agent_files_root_t *r = &fs->roots[i];
      if (r->rw || st.st_dev != r->dev || st.st_ino != r->ino) continue;
      close(fd);
      snprintf(err, errlen, "%s leads into %s, which this device shares read-only", w->shown, r->path);
      return TT_EDENIED;
    }
    int parent = openat(fd, "..", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (parent < 0 || fstat(parent, &pst) != 0 || (pst.st_dev == st.st_dev && pst.st_ino == st.st_ino)) {
      if (parent >= 0) close(parent);
      break;
    }
    close(fd);
    fd = parent;
  }
  if (fd >= 0) close(fd);
  snprintf(err, errlen, "%s: cannot tell that it is still inside %s: refused", w->shown, rw->path);
  return TT_EDENIED;
}

/* ---- the callbacks ------------------------------------------------------------------------ */

static const char *kind_name(mode_t m) {
  if (S_ISDIR(m)) return "a directory";
  if (S_ISFIFO(m)) return "a FIFO";
  if (S_ISSOCK(m)) return "a socket";
  if (S_ISCHR(m) || S_ISBLK(m)) return "a device";
  if (S_ISLNK(m)) return "a symbolic link";
  return "not a regular file";
}

static int open_read(const agent_files_fs_t *fs, const char *path, tt_xfer_stat_t *st, char *err, size_t errlen) {
  where_t w;
  int rc = locate(fs, path, false, &w, err, errlen);
  if (rc) return rc;
  if (!w.rest[0]) {
    snprintf(err, errlen, "%s is a directory: only regular files can be pulled", w.shown);
    return TT_EINVAL;
  }
  int root = root_open(&w, err, errlen);
  if (root < 0) return root;
  /* What it is, before anything opens it for reading (opening a device can do things). */
  int probe = beneath(fs, root, w.rest, O_PATH), fd = -1;
  struct stat ps, s;
  if (probe < 0) {
    rc = agent_files_errno(probe, w.shown, err, errlen);
    goto out;
  }
  if (fstat(probe, &ps) != 0) {
    rc = agent_files_errno(-errno, w.shown, err, errlen);
    goto out;
  }
  if (!S_ISREG(ps.st_mode)) {
    snprintf(err, errlen, "%s is %s: only regular files can be pulled", w.shown, kind_name(ps.st_mode));
    rc = TT_EINVAL;
    goto out;
  }
  /* O_NONBLOCK: if it became a FIFO meanwhile, the open does not wait for a writer. */
  fd = beneath(fs, root, w.rest, O_RDONLY | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) {
    rc = agent_files_errno(fd, w.shown, err, errlen);
    fd = -1;
    goto out;
  }
  if (fstat(fd, &s) != 0) {
    rc = agent_files_errno(-errno, w.shown, err, errlen);
    goto out;
  }
  if (!S_ISREG(s.st_mode)) {
    snprintf(err, errlen, "%s is %s: only regular files can be pulled", w.shown, kind_name(s.st_mode));
    rc = TT_EINVAL;
    goto out;
  }
  if (s.st_dev != ps.st_dev || s.st_ino != ps.st_ino) {
    rc = agent_files_errno(-EAGAIN, w.shown, err, errlen);
    goto out;
  }
  int fl = fcntl(fd, F_GETFL);
  if (fl >= 0) (void)!fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
  st->size = (uint64_t)s.st_size;
  st->mtime_ns = (int64_t)s.st_mtim.tv_sec * 1000000000 + s.st_mtim.tv_nsec;
  st->mode = (uint32_t)(s.st_mode & 07777);
  rc = fd;
  fd = -1;
out:
  if (fd >= 0) close(fd);
  if (probe >= 0) close(probe);
  close(root);
  return rc;
}

static int open_parent(const agent_files_fs_t *fs, const char *path, char *name, size_t cap, char *err, size_t errlen) {
  where_t w;
  int rc = locate(fs, path, true, &w, err, errlen);
  if (rc) return rc;
  if (!w.rest[0]) {
    snprintf(err, errlen, "%s is a shared directory itself: name a file inside it", w.shown);
    return TT_EINVAL;
  }
  const char *slash = strrchr(w.rest, '/');
  const char *last = slash ? slash + 1 : w.rest;
  size_t n = strlen(last);
  if (n + 1 > cap || n > TT_FILE_NAME_MAX) {
    snprintf(err, errlen, "%s: the name is too long", w.shown);
    return TT_ETOOBIG;
  }
  char dir[AGENT_FILES_PATH_MAX];
  size_t dn = slash ? (size_t)(slash - w.rest) : 0;
  memcpy(dir, w.rest, dn);
  dir[dn] = '\0';
  int root = root_open(&w, err, errlen);
  if (root < 0) return root;
  int fd = beneath(fs, root, dir, O_RDONLY | O_DIRECTORY);
  close(root);
  if (fd < 0) {
    if (fd == -ENOENT || fd == -ENOTDIR) {
      char parent[AGENT_FILES_PATH_MAX], ps[SHOWN_MAX + 8];
      snprintf(parent, sizeof(parent), "%.*s", (int)(strlen(w.abs) - n - 1), w.abs);
      snprintf(err, errlen, "%s: the directory to hold it (%s) %s", w.shown,
               agent_files_shown(parent[0] ? parent : "/", ps, sizeof(ps)),
               fd == -ENOENT ? "does not exist" : "is not a directory");
      return fd == -ENOENT ? TT_ENOTFOUND : TT_EINVAL;
    }
    return agent_files_errno(fd, w.shown, err, errlen);
  }
  rc = not_read_only(fs, &w, fd, err, errlen);
  if (rc) {
    close(fd);
    return rc;
  }
  memcpy(name, last, n + 1);
  return fd;
}

static int open_path(const agent_files_fs_t *fs, const char *path, char *name, size_t cap, char *err, size_t errlen) {
  where_t w;
  int rc = locate(fs, path, false, &w, err, errlen);
  if (rc) return rc;
  const char *slash = strrchr(w.abs, '/');
  snprintf(name, cap, "%s", slash && slash[1] ? slash + 1 : w.abs);
  int root = root_open(&w, err, errlen);
  if (root < 0) return root;
  int fd = beneath(fs, root, w.rest, O_PATH);
  close(root);
  if (fd < 0) return agent_files_errno(fd, w.shown, err, errlen);
  return fd;
}


/* A message cut by snprintf may end in half a UTF-8 character: cut it back to whole ones, so
 * that it is valid text where it goes (the peer checks). */
static int fit(int rc, char *err) {
  if (rc >= 0) return rc;
  size_t n = strlen(err), i = n;
  while (i > 0 && ((uint8_t)err[i - 1] & 0xc0) == 0x80) i--;
  if (i == 0) return rc;
  uint8_t lead = (uint8_t)err[i - 1];
  size_t need = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc0 ? 2 : 1;
  if (n - (i - 1) < need) err[i - 1] = '\0';
  return rc;
}

int agent_files_open_read(void *fs, const char *path, tt_xfer_stat_t *st, char *err, size_t errlen) {
  return fit(open_read(fs, path, st, err, errlen), err);
}

int agent_files_open_parent(void *fs, const char *path, char *name, size_t cap, char *err, size_t errlen) {
  return fit(open_parent(fs, path, name, cap, err, errlen), err);
}

int agent_files_open_path(const agent_files_fs_t *fs, const char *path, char *name, size_t cap, char *err,
                          size_t errlen) {
  return fit(open_path(fs, path, name, cap, err, errlen), err);
}
