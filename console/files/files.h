/* tether pull / push / cp / ls: the console side of file transfer. The modules here: plan.c
 * turns the command line into a list of ops (and walks local trees), list.c keeps and prints
 * what a LIST returned, progress.c draws the terminal's progress lines, localfs.c is the
 * engine's view of the technician's disk, cmd_files.c runs the ops on a CHANNEL_FILES channel. */
#ifndef CONSOLE_FILES_H
#define CONSOLE_FILES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <pthread.h>
#include <protobuf-c/protobuf-c.h>
#include "tether.pb-c.h"
#include "tt/cli.h"
#include "tt/err.h"
#include "tt/limits.h"
#include "tt/xfer.h"

/* A local path we build (a target joined with a name): Linux's PATH_MAX with its NUL. */
#define FILES_LOCAL_PATH_MAX 4095u
/* A usage error's text. */
#define FILES_ERR_MAX 512u

/* ---- the command line ----------------------------------------------------------------- */

typedef enum { FILES_VERB_PULL = 1, FILES_VERB_PUSH, FILES_VERB_LS } files_verb_t;

typedef struct {
  files_verb_t verb;  /* cp becomes pull or push */
  bool recursive, force, json;
  char device[TT_NAME_MAX + 1];
  uint64_t ticket;
  const char *src[TT_CLI_POS_MAX]; /* pull: device paths; push: local paths; ls: the path */
  int nsrc;
  const char *target;              /* pull: local; push: a device path; ls: NULL */
} files_args_t;

/* The positional words after the command word (cmd: "pull", "push", "cp" or "ls") and the
 * ticket (the --ticket flag, else TETHER_TICKET from the environment; either may be NULL).
 * Only the words' shape is checked here (devices, DEVICE:PATH, counts, the ticket); what
 * exists on the local disk is files_plan_build's. TT_EINVAL with a line for people in err. */
int files_args_parse(files_args_t *a, const char *cmd, const char *const *arg, int narg,
                     const char *ticket_flag, const char *ticket_env, char *err, size_t cap);

/* "DEVICE:PATH" as scp reads it: remote when a ':' comes before any '/' and something comes
 * before it (so "./a:b" and "/x:y" are local). 1 remote (device copied, *path after the
 * colon), 0 local, TT_EINVAL when the part before ':' is not a device id. */
int files_remote_split(const char *arg, char *device, size_t cap, const char **path);

/* ---- paths ---------------------------------------------------------------------------- */

/* dir + '/' + name, without doubling a '/' that dir ends with; dir "" gives name. TT_ETOOBIG
 * when it does not fit cap (or would be over max bytes). */
int files_join(char *out, size_t cap, size_t max, const char *dir, const char *name);
/* The last component of path, trailing '/' ignored ("/var/log/" -> "log"). TT_EINVAL when
 * there is none to name a file after ("/", "", ".", ".."), TT_ETOOBIG past TT_FILE_NAME_MAX. */
int files_basename(const char *path, char *name, size_t cap);
/* path without its trailing '/' ("/tmp/x/" -> "/tmp/x"; "/" stays "/"). */
void files_strip_slash(char *path);
/* path's directory and last component, for opening the parent: "a/b/c" -> "a/b" + "c",
 * "c" -> "." + "c", "/c" -> "/" + "c". TT_EINVAL when the last component is empty, "." or
 * "..", TT_ETOOBIG when a part does not fit. */
int files_split(const char *path, char *dir, size_t dcap, char *name, size_t ncap);
/* A relative path from a device's listing, safe to join under a local directory: valid text
 * without controls, not absolute, no empty, "." or ".." component, none over
 * TT_FILE_NAME_MAX, at most TT_FILE_PATH_MAX bytes. */
bool files_rel_ok(ProtobufCBinaryData rel);
/* Order of a tree listing: byte order with '/' before every other byte, so that a
 * directory's entries follow it directly ("a", "a/x", "a.txt"). */
int files_path_cmp(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen);

/* ---- ops ------------------------------------------------------------------------------ */

typedef enum {
  FILES_OP_GET = 1,  /* pull one file: dev -> local */
  FILES_OP_PUT,      /* push one file: local -> dev */
  FILES_OP_MKDIR,    /* make dev (FILE_MKDIR) */
  FILES_OP_LIST,     /* list dev (ls; pull -r: the tree to fetch into local) */
  FILES_OP_LMKDIR,   /* make the local directory local */
} files_op_kind_t;

typedef enum {
  FILES_WAIT = 0,    /* not asked yet */
  FILES_ISSUED,      /* asked, not answered */
  FILES_OK,
  FILES_FAILED,
} files_state_t;

typedef struct files_listing_s files_listing_t;

typedef struct {
  files_op_kind_t kind;
  char *dev;           /* the device path (NULL for LMKDIR) */
  char *local;         /* the local path (NULL for MKDIR; LIST: the local root, or NULL) */
  uint64_t size;       /* PUT: the local size; GET: the listed size (when size_known) */
  bool size_known;
  uint32_t mode;       /* MKDIR, LMKDIR: permission bits */
  bool recursive;      /* LIST */
  bool root;           /* LMKDIR: the root of a pulled tree (held open: localfs.c) */
  bool named;          /* LIST, its root LMKDIR: local is the target the user typed */
  int64_t parent;      /* the op that must succeed before this one is asked, -1 none */
  /* run time */
  files_state_t state;
  bool begun;          /* the engine said on_begin */
  bool quiet;          /* failed because its directory did: counted, not a line of its own */
  bool reported;       /* its failure line is out */
  uint64_t done;       /* bytes there so far (resumed ones included) */
  uint64_t t0_ns;      /* when it began */
  uint64_t resumed, wire;
  uint8_t sha256[32];
  char *error;         /* FAILED: why */
  char *note;          /* OK: what the engine had to say ("source changed: started over") */
  files_listing_t *listing; /* LIST */
} files_op_t;

typedef struct {
  files_op_t *v;
  size_t n, cap;
  char **warn;         /* lines for people (skipped links and specials) not yet printed */
  size_t nwarn, capwarn;
} files_plan_t;

void files_plan_init(files_plan_t *p);
void files_plan_free(files_plan_t *p);
/* Append an op (strings copied; NULL stays NULL); its index in *idx. */
int files_plan_add(files_plan_t *p, files_op_kind_t kind, const char *dev, const char *local,
                   int64_t parent, size_t *idx) TT_WUR;
/* Mark op i failed with a reason (copied). */
void files_op_fail(files_op_t *op, const char *fmt, ...) TT_PRINTF(2, 3);
/* Add a warning line (formatted). */
void files_plan_warn(files_plan_t *p, const char *fmt, ...) TT_PRINTF(2, 3);

/* The ops for parsed arguments, checking the local side as it is now: pull targets (several
 * sources need an existing directory), push sources (exist, regular files or -r trees, which
 * are walked here), no two sources landing on one target. TT_EINVAL (a usage error) with a
 * line for people in err; TT_ENOMEM. */
int files_plan_build(files_plan_t *p, const files_args_t *a, char *err, size_t cap);

/* pull -r: a LIST (op list_idx, its listing complete) becomes the local directories to make
 * and the files to GET into its local root. Entries that are not safe to place (a name with
 * "..", a file listed without its directory, twice) fail on their own; links and specials
 * are skipped with a warning. */
int files_plan_tree(files_plan_t *p, size_t list_idx) TT_WUR;

/* ---- a listing (list.c) --------------------------------------------------------------- */

typedef struct {
  ProtobufCBinaryData path, owner, group, link; /* copies */
  Tether__FileKind kind;
  uint64_t size;
  int64_t mtime_ns;
  uint32_t mode;
} files_entry_t;

struct files_listing_s {
  files_entry_t *v;
  size_t n, cap;
  size_t bytes;        /* of the copied text, under TT_FILE_LIST_BYTES_MAX */
};

files_listing_t *files_listing_new(void);
void files_listing_free(files_listing_t *l);
/* Copy one entry in. TT_ETOOBIG past TT_FILE_LIST_MAX entries or TT_FILE_LIST_BYTES_MAX bytes
 * of text, TT_EPROTO for an entry without a path, TT_ENOMEM. */
int files_listing_add(files_listing_t *l, const Tether__FileStat *st) TT_WUR;
/* Sort by files_path_cmp. */
void files_listing_sort(files_listing_t *l);
/* "drwxr-x---" for a kind and permission bits (out: at least 11 bytes). */
void files_mode_string(char *out, Tether__FileKind kind, uint32_t mode);
/* What `tether ls` prints: one line per entry, like `ls -l` (mode, owner, group, size,
 * modification time in UTC, name, "-> target" for links); or a JSON array. */
void files_listing_print(FILE *f, const files_listing_t *l);
void files_listing_json(FILE *f, const files_listing_t *l);

/* ---- the local disk (localfs.c) ------------------------------------------------------- */

/* The roots of the trees a pull -r makes, each held open from when it is made to the end.
 * Everything below a root is made and opened from its descriptor one component at a time,
 * never following a link (mkdirat, openat O_DIRECTORY | O_NOFOLLOW; the engine then makes
 * its files inside with O_NOFOLLOW and O_EXCL): a local user who can write where the tree
 * goes (a shared 0777 directory) and puts a link where one of its directories goes, before
 * or after we made it, gets a refusal, not our files written where the link points. One
 * root per source at most. Filled by a libuv worker, read by the pool's threads: a mutex. */
#define FILES_ROOTS_MAX TT_CLI_POS_MAX
typedef struct {
  pthread_mutex_t mu;
  size_t n;
  struct {
    char *path;
    int fd;
  } v[FILES_ROOTS_MAX];
} files_roots_t;

void files_roots_init(files_roots_t *r);
/* Close the roots (after the pool and the mkdir jobs are done). */
void files_roots_free(files_roots_t *r);

/* The engine's tt_xfer_fs_t callbacks on the console (run on the transfer pool's threads).
 * open_parent's fs is a files_roots_t (or NULL): a path below a held root is walked from
 * it; any other path's directory is the user's to name, opened as they typed it. */
int files_fs_open_read(void *fs, const char *path, tt_xfer_stat_t *st, char *err, size_t errlen);
int files_fs_open_parent(void *fs, const char *path, char *name, size_t cap, char *err, size_t errlen);
/* The root of a pulled tree: made (an existing directory is fine), opened and held in r.
 * named: the user typed path as the target, so a link there is theirs and followed; else
 * its last component is the pull's own (a source's name) and a link there is refused.
 * 0, or -errno with err filled. */
int files_local_mkdir_root(files_roots_t *r, const char *path, bool named, uint32_t mode, char *err,
                           size_t errlen);
/* A directory below a held root, made from its descriptor (an existing directory is fine;
 * a link or a file there is not). 0, or -errno with err filled. */
int files_local_mkdir(files_roots_t *r, const char *path, uint32_t mode, char *err, size_t errlen);

/* ---- progress (progress.c) ------------------------------------------------------------ */

/* File lines shown at once; the others moving are counted on the total line. Files move one
 * after another on a channel, so more than two are rarely between begin and done. */
#define PROGRESS_FILES_SHOWN 4u
/* Widest block drawn (columns): lines are cut to the terminal's width. */
#define PROGRESS_COLS_MAX 400u
#define PROGRESS_BUF (PROGRESS_COLS_MAX * 4u * (PROGRESS_FILES_SHOWN + 1u) + 256u)

/* One file moving, as the display needs it. */
typedef struct {
  const char *name;   /* safe for a terminal */
  uint64_t done, total, resumed;
  uint64_t t0_ns;
} progress_file_t;

/* The whole transfer; the counts are the caller's, the rate and the lines drawn are ours. */
typedef struct {
  uint64_t files_total, files_done;
  uint64_t bytes_total;     /* of the files whose size is known */
  uint64_t unknown;         /* files whose size is not known yet (no total, no ETA) */
  uint64_t bytes_done;      /* resumed bytes count as done */
  uint64_t moved;           /* bytes that moved in this run (resumed ones did not) */
  uint64_t last_moved, last_ns, t0_ns;
  double rate;              /* bytes/s, smoothed */
  unsigned drawn;           /* lines on the terminal now */
} progress_t;

void progress_init(progress_t *p, uint64_t now_ns);
/* Bring the smoothed rate up to now. */
void progress_tick(progress_t *p, uint64_t now_ns);
/* The block for a terminal cols wide: a line for each of the nf files given (at most
 * PROGRESS_FILES_SHOWN), then the total line, which counts the moving files not shown (of
 * `moving`); lines separated by '\n', into out (NUL terminated). Returns the line count. */
unsigned progress_render(const progress_t *p, const progress_file_t *f, size_t nf, size_t moving, uint64_t now_ns,
                         unsigned cols, char *out, size_t cap);
/* Draw the block over the one drawn before (the cursor rests below it); clear it. */
void progress_draw(progress_t *p, FILE *out, const progress_file_t *f, size_t nf, size_t moving, uint64_t now_ns,
                   unsigned cols);
void progress_clear(progress_t *p, FILE *out);

/* Formatting, exposed for tests. */
void progress_bytes(char *out, size_t cap, uint64_t n);   /* "12.3 MiB" */
void progress_eta(char *out, size_t cap, double seconds); /* "1:02", "1:02:03", "--:--" */
/* Copy s into out cut to at most width characters (UTF-8 aware), dropping its head behind
 * "..." when too long (the end of a path names the file). */
void progress_fit(char *out, size_t cap, const char *s, unsigned width);

#endif
