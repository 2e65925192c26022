/* The technician's disk as the transfer engine sees it (tt_xfer_fs_t): which local files may
 * be read and where a received file may be made. These run on the engine's pool threads, or
 * on a libuv worker for the directories of a pull -r, never on the event loop. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
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

int files_fs_open_parent(void *fs, const char *path, char *name, size_t cap, char *err, size_t errlen) {
  (void)fs;
  char dir[FILES_LOCAL_PATH_MAX + 1];
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

int files_local_mkdir(const char *path, uint32_t mode, char *err, size_t errlen) {
  struct stat sb;
  char name[TT_FILE_NAME_MAX + 1];
  if (files_basename(path, name, sizeof(name)) == 0 && tt_xfer_name_reserved(name)) {
    snprintf(err, errlen, "%s: " TT_XFER_NAME_RESERVED_WHY, path);
    return -EINVAL;
  }
  if (mkdir(path, (mode_t)(mode & 07777)) == 0) return 0;
  int e = errno;
  if (e == EEXIST && stat(path, &sb) == 0) {
    if (S_ISDIR(sb.st_mode)) return 0;
    snprintf(err, errlen, "%s exists and is not a directory", path);
    return -ENOTDIR;
  }
  snprintf(err, errlen, "cannot make the directory %s: %s", path, strerror(e));
  return -e;
}
