/* File transfer on one CHANNEL_FILES channel (tether.proto, "files"): the sending and the
 * receiving half of each file, the chunk codec (sha256 per chunk, zstd when it shrinks), and
 * the partial-file state that makes a transfer resumable. Who asks for what belongs to the
 * programs (the console asks GET and PUT through tt_xfer_pull / tt_xfer_push, LIST and
 * MKDIR through tt_xfer_ctl; the agent serves); moving, checking and placing the bytes
 * belongs here, the same code on both ends.
 *
 * Threads: opening, reading, writing, fsync, sha256 and zstd run on the transfer pool's
 * threads (tt_xfer_pool_start), one job at a time per file, so the event loop never waits
 * for a disk. The agent starts the pool with an init hook that gives each pool thread the
 * file-system identity of shell.user (Linux keeps fsuid, fsgid and groups per thread), so
 * the kernel checks every open, create and rename as that user. Everything else, and every
 * callback, runs on the loop.
 *
 * Receiving a file: the bytes go to ".NAME.tether-part" beside the target, the sha256 of
 * each verified chunk to ".NAME.tether-part.state" (with the source's size, mtime and mode).
 * When END comes, the whole file's sha256 is compared, the data fsync'd, mode and mtime set,
 * and the file renamed to NAME (RENAME_NOREPLACE unless force) and the directory fsync'd; the
 * state file goes last. A failure keeps the partial file and its state for a later resume
 * (the same command again); a mismatch of the whole file keeps nothing. */
#ifndef TT_XFER_H
#define TT_XFER_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <uv.h>
#include "tether.pb-c.h"
#include "tt/err.h"
#include "tt/link.h"
#include "tt/mux.h"

typedef struct tt_xfer_s tt_xfer_t;

typedef struct {
  uint64_t size;
  int64_t mtime_ns; /* unix ns */
  uint32_t mode;    /* permission bits */
} tt_xfer_stat_t;

/* ---- the pool ---------------------------------------------------------------------------- */

/* Start the pool's threads (once per process; at most 8). init, if set, runs first on each
 * thread; a nonzero return stops the start with that error (the agent refuses to serve files
 * rather than serve them as root). */
int tt_xfer_pool_start(uv_loop_t *loop, unsigned threads, int (*init)(void *arg), void *arg) TT_WUR;
/* Let the running jobs finish and join the threads (at exit). */
void tt_xfer_pool_stop(void);
/* Run work(arg) on a pool thread, then done(arg) on the loop: for the programs' own file
 * operations (the agent's LIST and MKDIR). TT_ESTATE if the pool is not started. */
int tt_xfer_pool_submit(void (*work)(void *arg), void (*done)(void *arg), void *arg) TT_WUR;

/* ---- the side's file system ------------------------------------------------------------ */

/* Called on a pool thread. Errors: a negative TT_E* and a line for people in err. */
typedef struct {
  /* Open path for reading: a regular file (a directory, device, FIFO or socket is refused
   * with a clear error); fill st. Returns the descriptor. */
  int (*open_read)(void *fs, const char *path, tt_xfer_stat_t *st, char *err, size_t errlen);
  /* Open the existing directory that is to hold path and copy path's last component into
   * name (cap >= TT_FILE_NAME_MAX + 1). Returns the directory's descriptor; the engine
   * makes its files inside it with openat(O_NOFOLLOW) and renames there, so nothing it
   * writes can land outside that directory. */
  int (*open_parent)(void *fs, const char *path, char *name, size_t cap, char *err, size_t errlen);
  void *fs;
} tt_xfer_fs_t;

/* ---- one channel ------------------------------------------------------------------------ */

/* A file that finished moving, either way. */
typedef struct {
  uint32_t id;
  const char *path;   /* the device path */
  const char *local;  /* console: the local path; NULL on the agent */
  bool sent;          /* this side sent it */
  uint64_t size;      /* bytes of the file */
  uint64_t resumed;   /* bytes a partial file already held and that were not sent again */
  uint64_t wire;      /* DATA bytes it took on the channel (compressed chunks count as sent) */
  uint8_t sha256[32]; /* the whole file's (valid when code is 0) */
  int code;           /* 0, or a TT_E* */
  const char *msg;    /* code != 0: why, for people; else a note ("source changed: started
                         over"), possibly empty */
  double seconds;     /* from the request to the end */
} tt_xfer_result_t;

typedef struct {
  /* A FileCtl the engine does not handle: LIST, MKDIR (on the agent), ENTRIES, OK and the
   * ERROR of an op the engine does not own (on the console). m is valid during the call. */
  void (*on_ctl)(tt_xfer_t *x, const Tether__FileCtl *m);
  /* A file starts moving (the agent shows it on the employee's prompt). May be NULL. */
  void (*on_begin)(tt_xfer_t *x, uint32_t id, const char *path, bool sending, uint64_t size,
                   uint64_t resumed);
  /* More of a file has moved: done of total bytes (resumed bytes count as done). May be NULL. */
  void (*on_progress)(tt_xfer_t *x, uint32_t id, uint64_t done, uint64_t total);
  /* A file is finished, well or not. The channel goes on either way. */
  void (*on_done)(tt_xfer_t *x, const tt_xfer_result_t *r);
  /* The channel cannot go on (the peer broke the protocol, or it closed): every op not yet
   * done has had its on_done with an error first. After this, only tt_xfer_free. */
  void (*on_fail)(tt_xfer_t *x, int code, const char *msg);
} tt_xfer_cbs_t;

/* Bind to an OPEN channel. serve: answer the peer's GET and PUT (the agent); else this side
 * asks (the console). ch->data is left to the caller, who routes the channel's callbacks to
 * tt_xfer_on_data / _on_credit / _on_close. */
int tt_xfer_new(tt_xfer_t **out, tt_link_t *link, tt_chan_t *ch, bool serve, const tt_xfer_fs_t *fs,
                const tt_xfer_cbs_t *cbs, void *data) TT_WUR;
void *tt_xfer_data(const tt_xfer_t *x);
/* Free now, or as soon as the pool is done with it; closes the channel if still open.
 * Partial files are kept (resumable); no callback runs after this. */
void tt_xfer_free(tt_xfer_t *x);

void tt_xfer_on_data(tt_xfer_t *x, const uint8_t *p, size_t n, uint8_t flags);
void tt_xfer_on_credit(tt_xfer_t *x);
/* The channel closed under us (peer close, link gone): ops end with (code, msg). */
void tt_xfer_on_close(tt_xfer_t *x, int code, const char *msg);

/* Console: fetch device_path into local_path (a file path; the caller has joined a
 * directory with the name already). An existing local_path is refused unless force; a
 * partial file beside it resumes. id: the caller's, unique among its live ops. */
int tt_xfer_pull(tt_xfer_t *x, uint32_t id, const char *device_path, const char *local_path, bool force) TT_WUR;
/* Console: send local_path to device_path (a file path). */
int tt_xfer_push(tt_xfer_t *x, uint32_t id, const char *local_path, const char *device_path, bool force) TT_WUR;
/* Ops begun and not yet done (the console keeps this under TT_FILE_OPS_MAX). */
unsigned tt_xfer_outstanding(const tt_xfer_t *x);
/* Send one FileCtl (LIST, MKDIR from the console; ENTRIES, OK, ERROR from the agent). It
 * must encode under TT_FILE_CTL_MAX. TT_EFULL when the control cannot be queued now. */
int tt_xfer_ctl(tt_xfer_t *x, const Tether__FileCtl *m) TT_WUR;
/* Bytes of chunk data the channel carried in each direction, and raw file bytes they stood
 * for (so wire/raw is the compression ratio). */
void tt_xfer_counts(const tt_xfer_t *x, uint64_t *wire, uint64_t *raw);

/* ---- checks both ends use ------------------------------------------------------------ */

/* What a receiver names its partial files: ".NAME" + these. */
#define TT_XFER_PART_SUFFIX ".tether-part"
#define TT_XFER_STATE_SUFFIX ".tether-part.state"
/* Why a name with one of them is refused, for the line a person reads after "NAME: ". */
#define TT_XFER_NAME_RESERVED_WHY \
  "a name ending in " TT_XFER_PART_SUFFIX " or " TT_XFER_STATE_SUFFIX " is refused (a transfer keeps its partial files under such names)"

/* Is name (one component) one that no transfer may make, file or directory? Such a name is
 * taken for another transfer's partial file or state: a file pushed as ".x.tether-part"
 * would be truncated by a later transfer of x and renamed into place as x. Both receivers
 * refuse it (the agent on push and MKDIR, the console on pull), each file on its own. */
static inline bool tt_xfer_name_reserved(const char *name) {
  size_t n = strlen(name), p = sizeof(TT_XFER_PART_SUFFIX) - 1, s = sizeof(TT_XFER_STATE_SUFFIX) - 1;
  return (n >= p && memcmp(name + n - p, TT_XFER_PART_SUFFIX, p) == 0) ||
         (n >= s && memcmp(name + n - s, TT_XFER_STATE_SUFFIX, s) == 0);
}

/* A device path as it may travel: 1..TT_FILE_PATH_MAX bytes of UTF-8 with no NUL and no
 * control characters, each component at most TT_FILE_NAME_MAX. false with a reason. */
bool tt_xfer_path_ok(ProtobufCBinaryData p, char *why, size_t cap);

#endif
