/* Inside the transfer engine: the partial file (xfer_part.c), the pool's state, helpers.
 * Everything here runs on a pool thread unless it says otherwise. */
#ifndef TT_XFER_INT_H
#define TT_XFER_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <pthread.h>
#include <sys/types.h>
#include <openssl/evp.h>
#include "tt/limits.h"
#include "tt/xfer.h"

#define XFER_ERR_MAX 256u
/* ".NAME.tether-part.state" must fit NAME_MAX: a longer NAME gets a hashed temporary name. */
#define XFER_PART_SUFFIX TT_XFER_PART_SUFFIX
#define XFER_STATE_SUFFIX TT_XFER_STATE_SUFFIX

bool tt_xfer_pool_running(void);
/* The process's umask as it was when the pool started (what a received file's mode loses). */
mode_t xfer_umask(void);

/* For tests and the fuzzer, on the loop's thread. Jobs submitted whose completion has not
 * run yet. A stepped pool has no threads: xfer_pool_work_one runs the oldest queued job's
 * work on the caller's thread (false if none is queued), xfer_pool_deliver runs the
 * completions of the jobs worked so far (returns how many), so a driver decides exactly
 * where among the loop's events each job runs and comes back. tt_xfer_pool_stop works and
 * delivers what is left. */
unsigned xfer_pool_pending(void);
int xfer_pool_start_stepped(uv_loop_t *loop) TT_WUR;
bool xfer_pool_work_one(void);
unsigned xfer_pool_deliver(void);
/* The engine's own invariants (op counts, the send queue, read-ahead and credit held), for
 * tests and the fuzzer between the loop's events: true, or false with what broke in why. */
bool xfer_check(const tt_xfer_t *x, char *why, size_t cap);

/* The sender's compression level (loop thread). It moves only on what the chunks show: a
 * wire that waited for a chunk means this side's CPU is short (lower); a chunk that waited
 * for the wire means the link is the limit, and then the share of the wire's time that
 * compressing one chunk took decides: under XFER_ADAPT_UP of it, a harder level costs
 * nothing the link could have used (higher); over XFER_ADAPT_DOWN, compressing competes
 * with what moves the bytes (loopback, a busy machine) and a cheaper level wins (lower). */
typedef struct {
  int level;                 /* index into the engine's levels */
  unsigned up, down;         /* chunks in a row that pointed up / down */
  uint64_t gap_ns;           /* smoothed time between chunks handed to the wire */
  uint64_t last_ns;          /* when the last one was */
} xfer_adapt_t;
#define XFER_ADAPT_UP 0.25
#define XFER_ADAPT_DOWN 0.5
void xfer_adapt_init(xfer_adapt_t *a, int level);
/* A chunk went to the wire at now_ns. */
void xfer_adapt_sent(xfer_adapt_t *a, uint64_t now_ns);
/* A chunk came from the pool: link_bound (the wire was busy meanwhile), zns the CPU time its
 * compression took (0: not tried). Returns the level index for the next chunk; levels is
 * how many there are. */
int xfer_adapt(xfer_adapt_t *a, bool link_bound, uint64_t zns, int levels);

/* A receiver's partial file: data in `part`, the sha256 of each verified chunk in `state`
 * after a header naming the source (size, mtime, mode) and the chunk size. */
typedef struct {
  int dirfd;                 /* the target's directory (owned) */
  int fd, sfd;               /* part data, state; -1 when closed */
  char name[TT_FILE_NAME_MAX + 1];
  char part[TT_FILE_NAME_MAX + 40]; /* room gcc can see for ".NAME" and a suffix */
  char state[TT_FILE_NAME_MAX + 40];
  tt_xfer_stat_t src;        /* the source the partial belongs to */
  bool have_src;
  bool locked;                /* we hold its lock: ours to remove */
  uint64_t kept;             /* chunks verified and on disk */
  EVP_MD_CTX *whole;         /* sha256 over the bytes of those chunks, in order */
  EVP_MD_CTX *digest;        /* sha256 over their sha256s (what GET/READY report) */
} xfer_part_t;

uint64_t xfer_nchunks(uint64_t size);
uint32_t xfer_chunk_len(uint64_t size, uint64_t index);
bool xfer_stat_eq(const tt_xfer_stat_t *a, const tt_xfer_stat_t *b);

/* Open (or create) the partial file for `name` in dirfd (taken over, closed by
 * xfer_part_close). An existing `name` is refused unless force (a directory always). src:
 * the source when known (push): a partial of another source starts over, with a note. A
 * kept prefix is read back and checked against its recorded hashes; it is cut at the
 * first chunk that does not match. Returns 0 or a negative code with err set. */
int xfer_part_open(xfer_part_t *p, int dirfd, const char *name, const tt_xfer_stat_t *src, bool force,
                   char *note, size_t notecap, char *err, size_t errlen);
/* The digest over the kept chunks' hashes (32 bytes); zero when nothing is kept. */
void xfer_part_digest(const xfer_part_t *p, uint8_t out[32]);
/* Start over for source src: empty data, a fresh state. */
int xfer_part_restart(xfer_part_t *p, const tt_xfer_stat_t *src, char *err, size_t errlen);
/* Chunk `index` (== kept) verified: write it, record its hash, extend the whole hash. */
int xfer_part_write(xfer_part_t *p, uint64_t index, const uint8_t *raw, size_t n, const uint8_t sha[32], char *err,
                    size_t errlen);
/* Where the loop and a finishing job meet: the job renames the file into place only while
 * `stop` is false, and records that it did in `placed`, both under `mu`. So the loop, giving
 * up on the file while the job runs, knows whether the file is in place or will not be. */
typedef struct {
  pthread_mutex_t mu;
  bool stop, placed;
} xfer_gate_t;

/* Every chunk is in: compare the whole file's sha256 with `expect`, then fsync, set mode and
 * mtime, rename into place (never over an existing file unless force; not at all once
 * gate->stop, TT_ECLOSED), fsync the directory, remove the state. A mismatch removes the
 * partial file and its state: nothing is kept. out gets the sha256 computed here. */
int xfer_part_finish(xfer_part_t *p, const uint8_t expect[32], bool force, xfer_gate_t *gate, uint8_t out[32],
                     char *err, size_t errlen);
/* Close descriptors; files stay for a later resume. */
void xfer_part_close(xfer_part_t *p);
/* Remove the partial file and its state, then close. */
void xfer_part_discard(xfer_part_t *p);

/* sha256 of one buffer. */
void xfer_sha256(const void *p, size_t n, uint8_t out[32]);

#endif
