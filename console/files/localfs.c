/* The technician's disk as the transfer engine sees it (tt_xfer_fs_t): which local files may
 * be read and where a received file may be made. These run on the engine's pool threads, or
 * on a libuv worker for the directories of a pull -r, never on the event loop. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "files.h"

int files_fs_open_read(void *fs, const char *path, tt_xfer_stat_t *st, char *err, size_t errlen) {
  (void)fs;
  struct stat sb;
  /* O_NONBLOCK: opening a FIFO must not wait for a writer before we can refuse it. */
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd < 0) {
    int e = errno;
    snprintf(err, errlen, "cannot open %s: %s", path, strerror(e));
    return -e;
  }
  if (fstat(fd, &sb) != 0) {
    int e = errno;
    snprintf(err, errlen, "cannot stat %s: %s", path, strerror(e));
    close(fd);
    return -e;
  }
  if (!S_ISREG(sb.st_mode)) {
    snprintf(err, errlen, "%s is %s, not a regular file", path,
             S_ISDIR(sb.st_mode) ? "a directory" : S_ISFIFO(sb.st_mode) ? "a FIFO"
             : S_ISSOCK(sb.st_mode) ? "a socket" : "a device");
    close(fd);
    return S_ISDIR(sb.st_mode) ? -EISDIR : TT_EINVAL;
  }
  int fl = fcntl(fd, F_GETFL);
  if (fl >= 0) (void)fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
  st->size = (uint64_t)sb.st_size;
  st->mtime_ns = (int64_t)sb.st_mtim.tv_sec * 1000000000 + sb.st_mtim.tv_nsec;
  st->mode = (uint32_t)sb.st_mode & 07777;
  return fd;
}

/* ---- the roots of pulled trees --------------------------------------------------------- */

void files_roots_init(files_roots_t *r) {
  memset(r, 0, sizeof(*r));
  pthread_mutex_init(&r->mu, NULL);
}

void files_roots_free(files_roots_t *r) {
  pthread_mutex_lock(&r->mu);
  for (size_t i = 0; i < r->n; i++) {
    close(r->v[i].fd);
    free(r->v[i].path);
  }
  r->n = 0;
  pthread_mutex_unlock(&r->mu);
}

/* The held root that path is strictly below (the longest, component-wise), and where the
 * part below it starts in *off; -1 when there is none. The descriptor stays open until
 * files_roots_free, which runs only once no job is left. */
static int held_root(files_roots_t *r, const char *path, size_t *off) {
  int fd = -1;
  size_t best = 0;
  pthread_mutex_lock(&r->mu);
  for (size_t i = 0; i < r->n; i++) {
    const char *root = r->v[i].path;
    size_t n = strlen(root);
    if (n <= best || strncmp(root, path, n) != 0) continue;
    size_t o = root[n - 1] == '/' ? n : path[n] == '/' ? n + 1 : 0; /* "/" is a root too */
    if (!o || !path[o]) continue;
    best = n;
    fd = r->v[i].fd;
    *off = o;
  }
  pthread_mutex_unlock(&r->mu);
  return fd;
}

/* Why a directory below a root could not be opened (e, from openat or mkdirat): a link or
 * a file in its place is said as such. shown: path's first n bytes name it. */
static int below_err(int dfd, const char *comp, const char *path, size_t n, int e, char *err, size_t errlen) {
  struct stat sb;
  if ((e == ENOTDIR || e == ELOOP || e == EEXIST) && fstatat(dfd, comp, &sb, AT_SYMLINK_NOFOLLOW) == 0) {
    if (S_ISLNK(sb.st_mode)) {
      snprintf(err, errlen, "%.*s is a symbolic link: refused (nothing of a pulled tree is written through a link)",
               (int)n, path);
      return -ELOOP;
    }
    if (!S_ISDIR(sb.st_mode)) {
      snprintf(err, errlen, "%.*s exists and is not a directory", (int)n, path);
      return -ENOTDIR;
    }
  }
  snprintf(err, errlen, "cannot open the directory %.*s: %s", (int)n, path, strerror(e));
  return -e;
}

/* The directory comp in dfd, never through a link. */
static int open_below(int dfd, const char *comp, const char *path, size_t n, char *err, size_t errlen) {
  int fd = openat(dfd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd >= 0) return fd;
  return below_err(dfd, comp, path, n, errno, err, errlen);
}

/* path's part from off on, walked from the held root rootfd a component at a time: the
 * descriptor of the directory holding its last component (ours to close), that component
 * in name. */
static int walk_parent(int rootfd, const char *path, size_t off, char *name, size_t cap, char *err, size_t errlen) {
  char comp[TT_FILE_NAME_MAX + 1];
  int dfd = fcntl(rootfd, F_DUPFD_CLOEXEC, 0);
  if (dfd < 0) {
    int e = errno;
    snprintf(err, errlen, "%s: %s", path, strerror(e));
    return -e;
  }
  for (const char *p = path + off;;) {
    const char *slash = strchr(p, '/');
    size_t n = slash ? (size_t)(slash - p) : strlen(p);
    bool dots = (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.');
    if (n == 0 || dots || n > TT_FILE_NAME_MAX || n + 1 > cap) {
      close(dfd);
      snprintf(err, errlen, "%s names no file to write below its tree", path);
      return TT_EINVAL;
    }
    if (!slash) {
      memcpy(name, p, n);
      name[n] = '\0';
      return dfd;
    }
    memcpy(comp, p, n);
    comp[n] = '\0';
    int fd = open_below(dfd, comp, path, (size_t)(slash - path), err, errlen);
    close(dfd);
    if (fd < 0) return fd;
    dfd = fd;
    p = slash + 1;
  }
}

static bool reserved(const char *path, const char *name, char *err, size_t errlen) {
  if (!tt_xfer_name_reserved(name)) return false;
  snprintf(err, errlen, "%s: " TT_XFER_NAME_RESERVED_WHY, path);
  return true;
}

int files_fs_open_parent(void *fs, const char *path, char *name, size_t cap, char *err, size_t errlen) {
  char dir[FILES_LOCAL_PATH_MAX + 1];
  size_t off;
  int root = fs ? held_root(fs, path, &off) : -1;
  if (root >= 0) return walk_parent(root, path, off, name, cap, err, errlen);
  int rc = files_split(path, dir, sizeof(dir), name, cap);
  if (rc) {
    snprintf(err, errlen, "%s names no file to write", path);
    return rc;
  }
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    snprintf(err, errlen, "cannot open the directory %s: %s", dir, strerror(e));
    return -e;
  }
  return fd;
}

/* mkdirat(dfd, name) and open it (never through a link); an existing directory is fine. */
static int make_below(int dfd, const char *name, const char *path, uint32_t mode, char *err, size_t errlen) {
  if (mkdirat(dfd, name, (mode_t)(mode & 07777)) != 0 && errno != EEXIST) {
    int e = errno;
    snprintf(err, errlen, "cannot make the directory %s: %s", path, strerror(e));
    return -e;
  }
  return open_below(dfd, name, path, strlen(path), err, errlen);
}

int files_local_mkdir_root(files_roots_t *r, const char *path, bool named, uint32_t mode, char *err,
                           size_t errlen) {
  char dir[FILES_LOCAL_PATH_MAX + 1], name[TT_FILE_NAME_MAX + 1];
  struct stat sb;
  int fd;
  if (files_basename(path, name, sizeof(name)) == 0 && reserved(path, name, err, errlen)) return -EINVAL;
  if (named || files_split(path, dir, sizeof(dir), name, sizeof(name)) != 0) {
    /* The target as the user typed it ("/" too): followed, as any path they type. */
    if (mkdir(path, (mode_t)(mode & 07777)) != 0 && errno != EEXIST) {
      int e = errno;
      snprintf(err, errlen, "cannot make the directory %s: %s", path, strerror(e));
      return -e;
    }
    fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
      int e = errno;
      if (e == ENOTDIR && stat(path, &sb) == 0) {
        snprintf(err, errlen, "%s exists and is not a directory", path);
        return -ENOTDIR;
      }
      snprintf(err, errlen, "cannot open the directory %s: %s", path, strerror(e));
      return -e;
    }
  } else {
    /* The user's directory, then the pull's own name in it. */
    int pfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (pfd < 0) {
      int e = errno;
      snprintf(err, errlen, "cannot open the directory %s: %s", dir, strerror(e));
      return -e;
    }
    fd = make_below(pfd, name, path, mode, err, errlen);
    close(pfd);
    if (fd < 0) return fd;
  }
  pthread_mutex_lock(&r->mu);
  bool held = false;
  for (size_t i = 0; i < r->n && !held; i++) held = strcmp(r->v[i].path, path) == 0;
  char *copy = held || r->n == FILES_ROOTS_MAX ? NULL : strdup(path);
  if (copy) {
    r->v[r->n].path = copy;
    r->v[r->n++].fd = fd;
  }
  pthread_mutex_unlock(&r->mu);
  if (copy) return 0;
  close(fd); /* two sources into one root: the first one's descriptor serves both */
  if (held) return 0;
  snprintf(err, errlen, "%s: %s", path, r->n == FILES_ROOTS_MAX ? "too many trees at once" : "out of memory");
  return -ENOMEM;
}

int files_local_mkdir(files_roots_t *r, const char *path, uint32_t mode, char *err, size_t errlen) {
  char name[TT_FILE_NAME_MAX + 1];
  size_t off;
  int root = held_root(r, path, &off);
  if (root < 0) {
    snprintf(err, errlen, "%s is not below the directory the pull makes", path);
    return -EINVAL;
  }
  int dfd = walk_parent(root, path, off, name, sizeof(name), err, errlen);
  if (dfd < 0) return dfd;
  if (reserved(path, name, err, errlen)) {
    close(dfd);
    return -EINVAL;
  }
  int fd = make_below(dfd, name, path, mode, err, errlen);
  close(dfd);
  if (fd < 0) return fd;
  close(fd);
  return 0;
}
