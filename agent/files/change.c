/* REMOVE, RMDIR and RENAME on the device, run on a transfer pool thread as shell.user, with
 * the same confinement as a received file: each path's directory is opened beneath a
 * read-write root (agent_files_open_parent) and the change is made there by name, so
 * nothing outside the roots can be touched, through a symbolic link or otherwise. Names a
 * transfer keeps its partial files under are refused, as for PUT and MKDIR. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "files.h"

/* The directory holding path, opened beneath a read-write root, and path's name in it. */
static int open_dir_of(const agent_files_fs_t *fs, const char *path, char *name, size_t cap, char *err, size_t errlen) {
  char shown[128];
  int dir = agent_files_open_parent((void *)(uintptr_t)fs, path, name, cap, err, errlen);
  if (dir < 0) return dir;
  if (tt_xfer_name_reserved(name)) {
    snprintf(err, errlen, "%s: " TT_XFER_NAME_RESERVED_WHY, agent_files_shown(path, shown, sizeof(shown)));
    close(dir);
    return TT_EINVAL;
  }
  return dir;
}

int agent_files_remove(const agent_files_fs_t *fs, const char *path, bool directory, char *err, size_t errlen) {
  char name[TT_FILE_NAME_MAX + 1], shown[128];
  int dir = open_dir_of(fs, path, name, sizeof(name), err, errlen);
  if (dir < 0) return dir;
  agent_files_shown(path, shown, sizeof(shown));
  int rc = 0;
  struct stat st;
  if (fstatat(dir, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
    rc = agent_files_errno(-errno, shown, err, errlen);
  } else if (directory && !S_ISDIR(st.st_mode)) {
    snprintf(err, errlen, "%s is not a directory", shown);
    rc = -ENOTDIR;
  } else if (!directory && S_ISDIR(st.st_mode)) {
    snprintf(err, errlen, "%s is a directory (remove it as one)", shown);
    rc = -EISDIR;
  } else if (unlinkat(dir, name, directory ? AT_REMOVEDIR : 0) != 0) {
    if (errno == ENOTEMPTY || errno == EEXIST) {
      snprintf(err, errlen, "%s is not empty", shown);
      rc = -ENOTEMPTY;
    } else {
      rc = agent_files_errno(-errno, shown, err, errlen);
    }
  }
  close(dir);
  return rc;
}

int agent_files_rename(const agent_files_fs_t *fs, const char *from, const char *to, char *err, size_t errlen) {
  char name1[TT_FILE_NAME_MAX + 1], name2[TT_FILE_NAME_MAX + 1], shown[128];
  int d1 = open_dir_of(fs, from, name1, sizeof(name1), err, errlen);
  if (d1 < 0) return d1;
  int d2 = open_dir_of(fs, to, name2, sizeof(name2), err, errlen);
  if (d2 < 0) {
    close(d1);
    return d2;
  }
  int rc = 0;
  /* Never over an existing name (SFTP's rename does not replace). */
  if (renameat2(d1, name1, d2, name2, RENAME_NOREPLACE) != 0) {
    int e = errno;
    if (e == EEXIST) {
      snprintf(err, errlen, "%s exists already", agent_files_shown(to, shown, sizeof(shown)));
      rc = -EEXIST;
    } else if (e == EXDEV) {
      snprintf(err, errlen, "%s and %s are on different file systems", agent_files_shown(from, shown, sizeof(shown)), to);
      rc = -EXDEV;
    } else {
      rc = agent_files_errno(-e, agent_files_shown(from, shown, sizeof(shown)), err, errlen);
    }
  }
  close(d1);
  close(d2);
  return rc;
}
