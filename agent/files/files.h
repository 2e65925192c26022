/* tether-agent's file channel: the shared directories (roots) a technician may reach, how a
 * device path is resolved beneath one of them, the file-system identity of shell.user on the
 * transfer pool's threads, LIST and MKDIR, and the CHANNEL_FILES channel itself.
 *
 * confine.c, identity.c and list.c need nothing of the transfer engine (unit-tested alone);
 * serve.c wires them to it (tt/xfer.h) and to the agent's channels. */
#ifndef AGENT_FILES_H
#define AGENT_FILES_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include "tt/xfer.h"

/* Roots one agent shares (files.roots and files.read_only together): a handful is the use;
 * each costs a lookup per request. */
#define AGENT_FILES_ROOTS_MAX 16u
/* A resolved path on this machine, with its NUL (Linux's PATH_MAX). */
#define AGENT_FILES_PATH_MAX PATH_MAX

/* ---- confine.c: roots and confined opens -------------------------------------------- */

typedef struct {
  char path[AGENT_FILES_PATH_MAX];  /* realpath at start */
  char alias[AGENT_FILES_PATH_MAX]; /* as configured (normalized) when that differs: matched too */
  bool rw;                          /* push and mkdir allowed (else pull and list only) */
  bool ro_inside;                   /* rw, with a read-only root beneath it */
  dev_t dev;                        /* the directory found at start: a root replaced since */
  ino_t ino;                        /*   then (a swapped symlink, a remount) is refused */
} agent_files_root_t;

typedef struct {
  agent_files_root_t roots[AGENT_FILES_ROOTS_MAX];
  size_t nroots;
  char home[AGENT_FILES_PATH_MAX]; /* relative device paths start here; "" = refused */
  bool walk;                       /* resolve by walking (as where openat2 is missing) */
} agent_files_fs_t;

/* Parse files.roots (rw_list; NULL or "" = home and /tmp, "none" = no read-write root) and
 * files.read_only (ro_list), resolve each root with realpath and log it. A relative root or
 * too many is TT_ECONFIG with why in err; one that does not exist or is not a directory is
 * logged and left out. home: shell.user's home directory, or NULL. */
int agent_files_fs_init(agent_files_fs_t *fs, const char *rw_list, const char *ro_list, const char *home,
                        char *err, size_t errlen) TT_WUR;
/* The roots as people read them: "/home/sam, /tmp; read-only: /var/log". */
void agent_files_roots_text(const agent_files_fs_t *fs, char *out, size_t cap);

/* A device path as it may travel (what tt_xfer_path_ok checks, here without the engine):
 * 1..TT_FILE_PATH_MAX bytes of UTF-8, no NUL, no control characters, no component over
 * TT_FILE_NAME_MAX. false with a reason. */
bool agent_files_path_ok(const void *p, size_t len, char *why, size_t cap);

/* The tt_xfer_fs_t callbacks (fs is an agent_files_fs_t), called on a pool thread:
 * open_read opens a regular file under any root; open_parent opens the directory that is
 * to hold path, under a read-write root. Errors: a negative TT_E* and a line in err. */
int agent_files_open_read(void *fs, const char *path, tt_xfer_stat_t *st, char *err, size_t errlen);
int agent_files_open_parent(void *fs, const char *path, char *name, size_t cap, char *err, size_t errlen);
/* LIST: path (any root) as an O_PATH descriptor, symbolic links followed beneath its root;
 * name gets the last component of the path (the entry's name when it is not a directory). */
int agent_files_open_path(const agent_files_fs_t *fs, const char *path, char *name, size_t cap, char *err,
                          size_t errlen);
/* A short form of a path for messages (a long one keeps its end). */
const char *agent_files_shown(const char *path, char *buf, size_t cap);
/* A -errno from the file system as a TT_E* and a line "<shown>: why" in err. */
int agent_files_errno(int e, const char *shown, char *err, size_t errlen);

/* ---- identity.c: whose files they are ---------------------------------------------- */

typedef struct {
  bool switch_user;  /* the agent runs as root: pool threads take uid, gid and groups */
  uid_t uid;
  gid_t gid;
  gid_t *groups;
  size_t ngroups;
  char name[TT_NAME_MAX + 1];
  char home[AGENT_FILES_PATH_MAX]; /* "" when shell.user's home does not exist */
} agent_files_ident_t;

/* Look up shell.user (the agent's own user when unset and not root; required as root), its
 * home and groups. TT_EDENIED with why in err. */
int agent_files_ident_load(agent_files_ident_t *id, const char *shell_user, char *err, size_t errlen) TT_WUR;
void agent_files_ident_free(agent_files_ident_t *id);
/* The pool's init hook (tt_xfer_pool_start): this thread's groups, fsgid and fsuid become
 * shell.user's, checked after; 0, or a negative code if any did not take. A no-op when the
 * agent is not root. Other threads keep theirs (raw syscalls: glibc's wrappers would change
 * every thread of the process). */
int agent_files_ident_apply(void *id);

/* ---- list.c: LIST and MKDIR, on a pool thread -------------------------------------- */

typedef struct agent_files_list_s agent_files_list_t;

/* The entries of the directory at path, or the one entry of a file (self: of the path
 * itself, a directory too, as a stat; its name is the path's last component); recursive: the whole
 * tree, paths relative to the directory, symbolic links not followed. A tree of more than
 * TT_FILE_LIST_MAX entries, deeper than TT_FILE_DEPTH_MAX or holding more than
 * TT_FILE_LIST_BYTES_MAX of names is refused (TT_ETOOBIG), never cut short. */
int agent_files_list(const agent_files_fs_t *fs, const char *path, bool recursive, bool self, agent_files_list_t **out,
                     char *err, size_t errlen) TT_WUR;
size_t agent_files_list_count(const agent_files_list_t *l);
void agent_files_list_free(agent_files_list_t *l);

/* Entries at most one FILE_ENTRIES message holds (each encodes in 10 bytes or more). */
#define AGENT_FILES_BATCH_MAX 2048u

/* Room for one FILE_ENTRIES message's entries. */
typedef struct {
  Tether__FileStat st[AGENT_FILES_BATCH_MAX];
  Tether__FileStat *ptr[AGENT_FILES_BATCH_MAX];
  char ids[AGENT_FILES_BATCH_MAX][2][16];
} agent_files_batch_t;

/* Fill m (type, id and path set by the caller) with the entries from *pos on that fit
 * under TT_FILE_CTL_MAX once wrapped in a ChannelControl, set m->last when they are the
 * last, and advance *pos. m points into b and l until either changes. */
void agent_files_list_batch(const agent_files_list_t *l, size_t *pos, Tether__FileCtl *m, agent_files_batch_t *b);

/* MKDIR: make the directory path (mode: permission bits) under a read-write root; one that
 * exists already is fine, anything else there is an error. */
int agent_files_mkdir(const agent_files_fs_t *fs, const char *path, uint32_t mode, char *err, size_t errlen) TT_WUR;

/* ---- change.c: REMOVE, RMDIR, RENAME, on a pool thread -------------------------------- */

/* Remove the file or link path (directory: the empty directory path) under a read-write root. */
int agent_files_remove(const agent_files_fs_t *fs, const char *path, bool directory, char *err, size_t errlen) TT_WUR;
/* Rename from to to, both under read-write roots; an existing to is refused. */
int agent_files_rename(const agent_files_fs_t *fs, const char *from, const char *to, char *err, size_t errlen) TT_WUR;

#endif
