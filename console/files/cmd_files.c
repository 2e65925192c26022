/* tether pull / push / cp / ls: files between this machine and a device, inside a consented
 * session with file access (asked for like a shell's, or a live grant reused), on one
 * CHANNEL_FILES channel that the transfer engine (tt/xfer.h) drives.
 *
 * The plan (plan.c) is a list of ops in the order they are asked: MKDIR before what goes
 * into the directory, LIST before the files it names. An op waits for the op it depends on
 * (its directory) and up to TT_FILE_OPS_MAX are outstanding at once, so a tree of small files
 * streams without a round trip each. The engine's callbacks only record what happened and
 * schedule a turn of the loop (kick); every call into the engine is made from that turn,
 * never from inside one of its callbacks, and the end (tt_xfer_free) too.
 *
 * Output: on a terminal, the progress block (progress.c) on stderr, redrawn ten times a
 * second and cleared at the end, then one summary line; off a terminal nothing but errors,
 * one line per failed file; --json: one summary object on stdout. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include "console.h"
#include "files.h"
#include "tt/msg.h"
#include "tt/xfer.h"

/* The progress block is redrawn at most this often: ten times a second reads as live and
 * costs nothing. */
#define DRAW_MS 100u
/* The note that the person at the device is being asked comes after this long (a reused
 * grant answers at once). */
#define NOTE_MS 1000u
/* The transfer pool's threads: sha256 and zstd of one file run on one thread at a time, so
 * more threads serve more small files at once; tt_xfer_pool_start takes at most 8. */
#define THREADS_MIN 2u
#define THREADS_MAX 8u
#define FILES_LINE_MAX (FILES_LOCAL_PATH_MAX * 4 + TT_TEXT_MAX * 4 + 64)
#define COLS_DEFAULT 80u

typedef struct {
  console_t *c;
  files_args_t a;
  files_plan_t plan;
  files_roots_t roots;     /* pull -r: the trees' roots, held open (localfs.c) */
  tt_chan_t *ch;
  tt_xfer_t *x;
  bool tty;                /* stderr is a terminal: progress and notes */
  bool pool_on, accepted, ended;
  bool chan_failed;        /* the channel cannot go on */
  char chan_msg[TT_TEXT_MAX * 4 + 1];
  size_t cursor;           /* the next op to ask */
  unsigned xfer_out;       /* GET, PUT asked and not done */
  unsigned ctl_out;        /* LIST, MKDIR asked and not answered */
  unsigned jobs;           /* local directories being made */
  size_t *fresh;           /* ops finished since the last turn whose line may be due */
  size_t nfresh, capfresh;
  size_t *active;          /* GET, PUT begun and not done, for the progress lines */
  size_t nactive, capactive;
  size_t quiet;            /* failed with their directory or the channel: counted, no line each */
  size_t warned;           /* plan.warn lines printed */
  progress_t prog;
  uint64_t t0_ns;
  uv_timer_t kick, draw, note;
  bool kick_on, draw_on, note_on;
} files_t;

static files_t g_f;

static bool ls_cmd(const files_t *s) {
  return s->a.verb == FILES_VERB_LS;
}

static bool is_file_op(const files_op_t *op) {
  return op->kind == FILES_OP_GET || op->kind == FILES_OP_PUT;
}

/* The name a user knows an op by: the source (pull: the device path; push: the local one). */
static const char *op_name(const files_t *s, const files_op_t *op) {
  if (s->a.verb == FILES_VERB_PUSH) return op->local ? op->local : op->dev ? op->dev : "?";
  return op->dev ? op->dev : op->local ? op->local : "?";
}

static files_op_t *op_of(files_t *s, uint32_t id) {
  if (id == 0 || id > s->plan.n) return NULL;
  return &s->plan.v[id - 1];
}

static int push_index(size_t **v, size_t *n, size_t *cap, size_t i) {
  if (*n == *cap) {
    size_t nc = *cap ? *cap * 2 : 64;
    size_t *nv = realloc(*v, nc * sizeof(*nv));
    if (!nv) return TT_ENOMEM;
    *v = nv;
    *cap = nc;
  }
  (*v)[(*n)++] = i;
  return 0;
}

/* ---- lines for people ----------------------------------------------------------------- */

/* "tether: ..." on stderr, from under the progress block (redrawn on the next tick). */
static void say(files_t *s, const char *fmt, ...) TT_PRINTF(2, 3);
static void say(files_t *s, const char *fmt, ...) {
  va_list ap;
  if (s->tty) progress_clear(&s->prog, stderr);
  va_start(ap, fmt);
  fputs("tether: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
}

static void shown(char *dst, size_t cap, const char *s) {
  console_text(dst, cap, tt_text(s ? s : ""));
}

static void say_failed(files_t *s, const files_op_t *op) {
  char name[FILES_LINE_MAX], why[FILES_LINE_MAX];
  shown(name, sizeof(name), op_name(s, op));
  shown(why, sizeof(why), op->error ? op->error : "failed");
  /* The engine's reasons mostly begin with the path already: name the file once. */
  size_t n = strlen(name);
  if (strncmp(why, name, n) == 0 && (why[n] == ':' || why[n] == ' ')) say(s, "%s", why);
  else say(s, "%s: %s", name, why);
}

static void say_warnings(files_t *s) {
  char line[FILES_LINE_MAX];
  for (; s->warned < s->plan.nwarn; s->warned++) {
    shown(line, sizeof(line), s->plan.warn[s->warned]);
    say(s, "%s", line);
  }
}

/* ---- progress accounting -------------------------------------------------------------- */

/* Files the plan added in [from, to) join the totals. */
static void expect_ops(files_t *s, size_t from, size_t to) {
  for (size_t i = from; i < to; i++) {
    const files_op_t *op = &s->plan.v[i];
    if (!is_file_op(op)) continue;
    s->prog.files_total++;
    if (op->state == FILES_FAILED) s->prog.files_done++;
    else if (op->size_known) s->prog.bytes_total += op->size;
    else s->prog.unknown++;
  }
}

static uint64_t minus(uint64_t a, uint64_t b) {
  return a > b ? a - b : 0;
}

static void account_begin(files_t *s, files_op_t *op, uint64_t size, uint64_t resumed) {
  if (op->begun) return;
  op->begun = true;
  if (op->size_known) s->prog.bytes_total = minus(s->prog.bytes_total, op->size) + size;
  else {
    s->prog.unknown = minus(s->prog.unknown, 1);
    s->prog.bytes_total += size;
  }
  op->size = size;
  op->size_known = true;
  op->done = resumed;
  op->resumed = resumed;
  op->t0_ns = uv_hrtime();
  s->prog.bytes_done += resumed;
  (void)push_index(&s->active, &s->nactive, &s->capactive, (size_t)(op - s->plan.v));
}

/* A file op ends. One that never began takes its expected bytes out of the total. */
static void account_end(files_t *s, files_op_t *op, bool ok) {
  size_t i = (size_t)(op - s->plan.v);
  for (size_t k = 0; k < s->nactive; k++)
    if (s->active[k] == i) { /* in order: the lines on the terminal keep their places */
      memmove(&s->active[k], &s->active[k + 1], (s->nactive - k - 1) * sizeof(s->active[0]));
      s->nactive--;
      break;
    }
  s->prog.files_done++;
  if (!op->begun) {
    if (op->size_known) s->prog.bytes_total = minus(s->prog.bytes_total, op->size);
    else s->prog.unknown = minus(s->prog.unknown, 1);
    return;
  }
  if (ok) s->prog.bytes_done += minus(op->size, op->done);
  else s->prog.bytes_total = minus(s->prog.bytes_total, minus(op->size, op->done));
  op->done = op->size;
}

/* ---- op results ----------------------------------------------------------------------- */

static void kick(files_t *s);

/* Op i failed; its line is printed on the next turn (unless the channel failed with it). */
static void op_failed(files_t *s, size_t i, const char *fmt, ...) TT_PRINTF(3, 4);
static void op_failed(files_t *s, size_t i, const char *fmt, ...) {
  files_op_t *op = &s->plan.v[i];
  va_list ap;
  char *why = NULL;
  va_start(ap, fmt);
  if (vasprintf(&why, fmt, ap) < 0) why = NULL;
  va_end(ap);
  free(op->error);
  op->error = why;
  op->state = FILES_FAILED;
  if (is_file_op(op)) account_end(s, op, false);
  (void)push_index(&s->fresh, &s->nfresh, &s->capfresh, i);
  kick(s);
}

/* Op i cannot be asked: the op it depends on failed. Counted, not a line each. */
static void op_dependent(files_t *s, size_t i) {
  files_op_t *op = &s->plan.v[i];
  const files_op_t *par = &s->plan.v[op->parent];
  char name[FILES_LINE_MAX];
  shown(name, sizeof(name), op_name(s, par));
  files_op_fail(op, "not transferred: %s failed", name);
  op->quiet = true;
  op->reported = true;
  s->quiet++;
  if (is_file_op(op)) account_end(s, op, false);
}

static void chan_fail(files_t *s, int code, const char *msg) {
  if (s->chan_failed) return;
  s->chan_failed = true;
  shown(s->chan_msg, sizeof(s->chan_msg), msg && *msg ? msg : tt_strerror(code));
  kick(s);
}

/* The text of a FILE_ERROR from the device, safe to print. */
static void ctl_message(char *dst, size_t cap, const Tether__FileCtl *m) {
  console_text(dst, cap, m->message);
  if (!dst[0]) snprintf(dst, cap, "%s", tt_strerror(tt_err_from_wire((Tether__ErrorCode)m->code)));
}

/* ---- the engine's callbacks: record, then let the loop's next turn act ---------------- */

static void list_done(files_t *s, size_t i) {
  files_op_t *op = &s->plan.v[i];
  s->ctl_out--;
  if (ls_cmd(s)) {
    op->state = FILES_OK;
    return;
  }
  size_t before = s->plan.n;
  int rc = files_plan_tree(&s->plan, i);
  op = &s->plan.v[i]; /* the plan may have moved */
  files_listing_free(op->listing);
  op->listing = NULL;
  if (rc) {
    op_failed(s, i, "%s", tt_strerror(rc));
    return;
  }
  op->state = FILES_OK;
  expect_ops(s, before, s->plan.n);
  for (size_t k = before; k < s->plan.n; k++)
    if (s->plan.v[k].state == FILES_FAILED) (void)push_index(&s->fresh, &s->nfresh, &s->capfresh, k);
}

static void on_ctl(tt_xfer_t *x, const Tether__FileCtl *m) {
  files_t *s = tt_xfer_data(x);
  files_op_t *op = op_of(s, m->id);
  char why[TT_TEXT_MAX * 4 + 1];
  if (!op || op->state != FILES_ISSUED || (op->kind != FILES_OP_LIST && op->kind != FILES_OP_MKDIR))
    return; /* nothing of ours waits for it */
  size_t i = (size_t)(op - s->plan.v);
  switch (m->type) {
  case TETHER__FILE_MSG_TYPE__FILE_ENTRIES:
    if (op->kind != FILES_OP_LIST) break;
    for (size_t k = 0; k < m->n_entries; k++) {
      int rc = files_listing_add(op->listing, m->entries[k]);
      if (rc == 0) continue;
      s->ctl_out--;
      if (rc == TT_ETOOBIG)
        op_failed(s, i, "the listing is larger than the console takes (%u entries, %u MiB of names)",
                  TT_FILE_LIST_MAX, TT_FILE_LIST_BYTES_MAX >> 20);
      else op_failed(s, i, "%s", rc == TT_EPROTO ? "the device sent an entry without a path" : tt_strerror(rc));
      return;
    }
    if (m->last) list_done(s, i);
    kick(s);
    return;
  case TETHER__FILE_MSG_TYPE__FILE_OK:
    if (op->kind != FILES_OP_MKDIR) break;
    s->ctl_out--;
    op->state = FILES_OK;
    kick(s);
    return;
  case TETHER__FILE_MSG_TYPE__FILE_ERROR:
    s->ctl_out--;
    ctl_message(why, sizeof(why), m);
    op_failed(s, i, "%s", why);
    return;
  default:
    break;
  }
  s->ctl_out--;
  op_failed(s, i, "the device answered out of turn");
}

static void on_begin(tt_xfer_t *x, uint32_t id, const char *path, bool sending, uint64_t size, uint64_t resumed) {
  (void)path;
  (void)sending;
  files_t *s = tt_xfer_data(x);
  files_op_t *op = op_of(s, id);
  if (!op || !is_file_op(op) || op->state != FILES_ISSUED) return;
  account_begin(s, op, size, resumed);
}

static void on_progress(tt_xfer_t *x, uint32_t id, uint64_t done, uint64_t total) {
  files_t *s = tt_xfer_data(x);
  files_op_t *op = op_of(s, id);
  if (!op || !is_file_op(op) || op->state != FILES_ISSUED) return;
  if (!op->begun) account_begin(s, op, total, 0);
  if (done > op->done) {
    s->prog.bytes_done += done - op->done;
    s->prog.moved += done - op->done;
    op->done = done;
  }
}

static void on_done(tt_xfer_t *x, const tt_xfer_result_t *r) {
  files_t *s = tt_xfer_data(x);
  files_op_t *op = op_of(s, r->id);
  if (!op || !is_file_op(op) || op->state != FILES_ISSUED) return;
  size_t i = (size_t)(op - s->plan.v);
  s->xfer_out--;
  op->resumed = r->resumed;
  op->wire = r->wire;
  if (r->code != 0) {
    op_failed(s, i, "%s", r->msg && *r->msg ? r->msg : tt_strerror(r->code));
    return;
  }
  if (!op->begun) account_begin(s, op, r->size, r->resumed);
  op->size = r->size;
  memcpy(op->sha256, r->sha256, sizeof(op->sha256));
  if (r->msg && *r->msg) op->note = strdup(r->msg);
  op->state = FILES_OK;
  account_end(s, op, true);
  if (op->note) (void)push_index(&s->fresh, &s->nfresh, &s->capfresh, i);
  kick(s);
}

static void on_fail(tt_xfer_t *x, int code, const char *msg) {
  chan_fail(tt_xfer_data(x), code, msg);
}

static const tt_xfer_cbs_t xfer_cbs = {
    .on_ctl = on_ctl,
    .on_begin = on_begin,
    .on_progress = on_progress,
    .on_done = on_done,
    .on_fail = on_fail,
};

static const tt_xfer_fs_t local_fs = {
    .open_read = files_fs_open_read,
    .open_parent = files_fs_open_parent,
    .fs = &g_f.roots,
};

/* ---- local directories (pull -r) ------------------------------------------------------ */

typedef struct {
  uv_work_t w;
  files_t *s;
  size_t i;
  char *path;
  uint32_t mode;
  bool root, named;
  int rc;
  char err[FILES_LOCAL_PATH_MAX + 128];
} mkdir_job_t;

static void mkdir_work(uv_work_t *w) {
  mkdir_job_t *j = w->data;
  files_roots_t *r = &j->s->roots;
  j->rc = j->root ? files_local_mkdir_root(r, j->path, j->named, j->mode, j->err, sizeof(j->err))
                  : files_local_mkdir(r, j->path, j->mode, j->err, sizeof(j->err));
}

static void mkdir_after(uv_work_t *w, int status) {
  mkdir_job_t *j = w->data;
  files_t *s = j->s;
  s->jobs--;
  if (status < 0) op_failed(s, j->i, "%s", uv_strerror(status));
  else if (j->rc) op_failed(s, j->i, "%s", j->err);
  else {
    s->plan.v[j->i].state = FILES_OK;
    kick(s);
  }
  free(j->path);
  free(j);
}

static int start_mkdir(files_t *s, size_t i) {
  mkdir_job_t *j = calloc(1, sizeof(*j));
  if (!j) return TT_ENOMEM;
  j->s = s;
  j->i = i;
  j->mode = s->plan.v[i].mode;
  j->root = s->plan.v[i].root;
  j->named = s->plan.v[i].named;
  j->w.data = j;
  if (!(j->path = strdup(s->plan.v[i].local))) {
    free(j);
    return TT_ENOMEM;
  }
  int rc = uv_queue_work(s->c->loop, &j->w, mkdir_work, mkdir_after);
  if (rc) {
    free(j->path);
    free(j);
    return rc;
  }
  s->jobs++;
  return 0;
}

/* ---- asking --------------------------------------------------------------------------- */

static unsigned busy(const files_t *s) {
  unsigned x = s->x ? tt_xfer_outstanding(s->x) : 0;
  if (x < s->xfer_out) x = s->xfer_out;
  return x + s->ctl_out + s->jobs;
}

/* A device path the plan made (a tree's names joined): one the device would refuse fails
 * here, on its own, with the reason. */
static bool dev_path_ok(files_t *s, size_t i) {
  char why[256];
  if (tt_xfer_path_ok(tt_text(s->plan.v[i].dev), why, sizeof(why))) return true;
  op_failed(s, i, "not a path the device takes: %s", why);
  return false;
}

/* Ask op i. TT_EFULL / TT_EWINDOW: not now, when credit comes. */
static int issue(files_t *s, size_t i) {
  files_op_t *op = &s->plan.v[i];
  uint32_t id = (uint32_t)(i + 1);
  Tether__FileCtl m = TETHER__FILE_CTL__INIT;
  Tether__FileStat st = TETHER__FILE_STAT__INIT;
  int rc;
  if (op->kind != FILES_OP_LMKDIR && !dev_path_ok(s, i)) return 0;
  switch (op->kind) {
  case FILES_OP_GET:
    rc = tt_xfer_pull(s->x, id, op->dev, op->local, s->a.force);
    if (!rc) s->xfer_out++;
    break;
  case FILES_OP_PUT:
    rc = tt_xfer_push(s->x, id, op->local, op->dev, s->a.force);
    if (!rc) s->xfer_out++;
    break;
  case FILES_OP_MKDIR:
    m.type = TETHER__FILE_MSG_TYPE__FILE_MKDIR;
    m.id = id;
    m.path = tt_text(op->dev);
    st.kind = TETHER__FILE_KIND__FILE_KIND_DIR;
    st.mode = op->mode;
    m.stat = &st;
    rc = tt_xfer_ctl(s->x, &m);
    if (!rc) s->ctl_out++;
    break;
  case FILES_OP_LIST:
    if (!op->listing && !(op->listing = files_listing_new())) return TT_ENOMEM;
    m.type = TETHER__FILE_MSG_TYPE__FILE_LIST;
    m.id = id;
    m.path = tt_text(op->dev);
    m.recursive = op->recursive;
    rc = tt_xfer_ctl(s->x, &m);
    if (!rc) s->ctl_out++;
    break;
  case FILES_OP_LMKDIR:
    rc = start_mkdir(s, i);
    break;
  default:
    rc = TT_EINVAL;
    break;
  }
  if (!rc) op->state = FILES_ISSUED;
  return rc;
}

/* Ask what can be asked: in plan order, each after the op it depends on, up to
 * TT_FILE_OPS_MAX outstanding. */
static void pump(files_t *s) {
  while (s->cursor < s->plan.n) {
    size_t i = s->cursor;
    files_op_t *op = &s->plan.v[i];
    if (op->state != FILES_WAIT) {
      s->cursor++;
      continue;
    }
    if (op->parent >= 0) {
      files_state_t ps = s->plan.v[op->parent].state;
      if (ps == FILES_FAILED) {
        op_dependent(s, i);
        s->cursor++;
        continue;
      }
      if (ps != FILES_OK) return; /* its directory is on its way */
    }
    if (busy(s) >= TT_FILE_OPS_MAX) return;
    int rc = issue(s, i);
    if (rc == TT_EFULL || rc == TT_EWINDOW) return;
    if (rc) op_failed(s, i, "%s", tt_strerror(rc));
    s->cursor++;
  }
}

/* ---- the end -------------------------------------------------------------------------- */

static void close_timer(uv_timer_t *t, bool *on) {
  if (!*on) return;
  *on = false;
  uv_close((uv_handle_t *)t, NULL);
}

/* Lines due: failures (one each, unless the channel failed with them) and notes. */
static void report(files_t *s) {
  say_warnings(s);
  for (size_t k = 0; k < s->nfresh; k++) {
    files_op_t *op = &s->plan.v[s->fresh[k]];
    if (op->reported) continue;
    op->reported = true;
    if (op->state == FILES_FAILED) {
      if (s->chan_failed) {
        op->quiet = true;
        s->quiet++;
      } else {
        say_failed(s, op);
      }
    } else if (op->note && s->tty && !s->a.json) {
      char name[FILES_LINE_MAX], note[FILES_LINE_MAX];
      shown(name, sizeof(name), op_name(s, op));
      shown(note, sizeof(note), op->note);
      say(s, "%s: %s", name, note);
    }
  }
  s->nfresh = 0;
}

static void json_str_or_null(FILE *f, const char *s) {
  if (s) console_json_str(f, s);
  else fputs("null", f);
}

typedef struct {
  uint64_t ok, failed, bytes, wire, resumed;
  double seconds;
} files_sum_t;

static void sum_up(const files_t *s, files_sum_t *t) {
  memset(t, 0, sizeof(*t));
  for (size_t i = 0; i < s->plan.n; i++) {
    const files_op_t *op = &s->plan.v[i];
    if (op->state == FILES_FAILED) t->failed++;
    if (!is_file_op(op)) continue;
    t->wire += op->wire;
    t->resumed += op->resumed;
    if (op->state == FILES_OK) {
      t->ok++;
      t->bytes += op->size;
    }
  }
  t->seconds = s->t0_ns ? (double)(uv_hrtime() - s->t0_ns) / 1e9 : 0;
}

/* Every file, and every other op that failed (a directory, a listing), in plan order. */
static void summary_json(const files_t *s, const files_sum_t *t) {
  FILE *f = stdout;
  const char *dir = s->a.verb == FILES_VERB_PULL ? "pull" : "push";
  bool first = true;
  fputs("{\"files\":[", f);
  for (size_t i = 0; i < s->plan.n; i++) {
    const files_op_t *op = &s->plan.v[i];
    bool ok = op->state == FILES_OK;
    if (!is_file_op(op) && op->state != FILES_FAILED) continue;
    if (!first) fputc(',', f);
    first = false;
    fputs("{\"path\":", f);
    json_str_or_null(f, op->dev);
    fputs(",\"local\":", f);
    json_str_or_null(f, op->local);
    fprintf(f, ",\"direction\":\"%s\",\"size\":%" PRIu64 ",\"sha256\":", dir, is_file_op(op) ? op->size : 0);
    if (ok) console_json_hex(f, (ProtobufCBinaryData){sizeof(op->sha256), (uint8_t *)(uintptr_t)op->sha256});
    else fputs("null", f);
    fprintf(f, ",\"resumed\":%" PRIu64 ",\"wire_bytes\":%" PRIu64 ",\"ok\":%s,\"error\":", op->resumed, op->wire,
            ok ? "true" : "false");
    json_str_or_null(f, ok ? NULL : op->error ? op->error : "failed");
    fputc('}', f);
  }
  fprintf(f,
          "],\"files_ok\":%" PRIu64 ",\"files_failed\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"wire_bytes\":%" PRIu64
          ",\"resumed_bytes\":%" PRIu64 ",\"seconds\":%.3f}\n",
          t->ok, t->failed, t->bytes, t->wire, t->resumed, t->seconds);
  fflush(f);
}

/* On a terminal, after the block is gone: what was done, in one line. */
static void summary_line(const files_t *s, const files_sum_t *t) {
  char b[32], r[32], w[32], z[32];
  progress_bytes(b, sizeof(b), t->bytes);
  progress_bytes(r, sizeof(r), t->seconds > 0 ? (uint64_t)((double)s->prog.moved / t->seconds) : 0);
  progress_bytes(w, sizeof(w), t->wire);
  progress_bytes(z, sizeof(z), t->resumed);
  fprintf(stderr, "%s %" PRIu64 " file%s (%s) in %.1f s, %s/s", s->a.verb == FILES_VERB_PULL ? "pulled" : "pushed",
          t->ok, t->ok == 1 ? "" : "s", b, t->seconds, r);
  if (t->wire != s->prog.moved) fprintf(stderr, ", %s on the wire", w);
  if (t->resumed) fprintf(stderr, ", %s resumed", z);
  if (t->failed) fprintf(stderr, ", %" PRIu64 " failed", t->failed);
  fputc('\n', stderr);
}

static void files_end(files_t *s) {
  console_t *c = s->c;
  files_sum_t t;
  s->ended = true;
  close_timer(&s->draw, &s->draw_on);
  close_timer(&s->note, &s->note_on);
  /* Someone else's line (the broker's error) may be under the block: then leave it be and
   * go on below that line. */
  if (s->tty && !c->done) progress_clear(&s->prog, stderr);
  s->prog.drawn = 0;
  report(s);
  /* A lost link was said by the console already, naming the broker. */
  if (s->chan_failed && !c->done) say(s, "%s: %s", s->a.device, s->chan_msg);
  if (s->chan_failed && s->quiet && !ls_cmd(s))
    say(s, "%zu not transferred%s", s->quiet, s->x ? ": run the same command again to resume" : "");
  else if (s->quiet && !ls_cmd(s))
    say(s, "%zu more not transferred: their directory could not be made", s->quiet);
  sum_up(s, &t);
  bool failed = t.failed > 0 || s->chan_failed;
  if (ls_cmd(s)) {
    const files_op_t *op = &s->plan.v[0];
    if (op->state == FILES_OK && op->listing) {
      files_listing_sort(op->listing);
      if (s->a.json) files_listing_json(stdout, op->listing);
      else if (op->listing->n == 0) fprintf(stderr, "(no entries)\n");
      else files_listing_print(stdout, op->listing);
      fflush(stdout);
    }
  } else if (s->a.json) {
    summary_json(s, &t);
  } else if (s->tty && !c->done) {
    summary_line(s, &t);
  }
  if (s->ch) s->ch->data = NULL;
  if (s->x) tt_xfer_free(s->x); /* closes the channel; partial files stay for a resume */
  else if (s->ch && c->link) (void)tt_mux_close(&c->link->mux, s->ch, 0, "done");
  if (c->link) tt_link_flush(c->link);
  s->x = NULL;
  s->ch = NULL;
  if (s->pool_on) tt_xfer_pool_stop();
  s->pool_on = false;
  files_roots_free(&s->roots); /* no job is left to use them (s->jobs is 0) */
  close_timer(&s->kick, &s->kick_on);
  files_plan_free(&s->plan);
  free(s->fresh);
  free(s->active);
  s->fresh = s->active = NULL;
  console_finish(c, failed ? 1 : 0);
}

/* After a channel failure nothing more will be answered: what is still waiting fails with
 * it (counted on one line, not a line each). */
static void fail_rest(files_t *s) {
  for (size_t i = 0; i < s->plan.n; i++) {
    files_op_t *op = &s->plan.v[i];
    if (op->state == FILES_WAIT || (op->state == FILES_ISSUED && op->kind != FILES_OP_LMKDIR)) {
      files_op_fail(op, "%s", s->chan_msg);
      op->quiet = op->reported = true;
      s->quiet++;
      if (is_file_op(op)) account_end(s, op, false);
    }
  }
  s->cursor = s->plan.n;
  s->xfer_out = s->ctl_out = 0;
}

/* One turn: ask what can be asked, say what is due, end when nothing is left. */
static void turn(files_t *s) {
  if (s->ended) return;
  if (s->chan_failed) {
    report(s); /* failures that came with the channel's count as quiet */
    fail_rest(s);
    if (s->jobs == 0) files_end(s);
    return;
  }
  if (s->x) pump(s);
  report(s);
  if (s->cursor >= s->plan.n && s->xfer_out == 0 && s->ctl_out == 0 && s->jobs == 0) files_end(s);
}

static void kick_cb(uv_timer_t *t) {
  turn(t->data);
}

static void kick(files_t *s) {
  if (s->kick_on && !s->ended) uv_timer_start(&s->kick, kick_cb, 0, 0);
}

/* ---- the progress block --------------------------------------------------------------- */

static unsigned term_cols(void) {
  struct winsize ws;
  if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col) return ws.ws_col;
  return COLS_DEFAULT;
}

static void draw_cb(uv_timer_t *t) {
  files_t *s = t->data;
  static char names[PROGRESS_FILES_SHOWN][PROGRESS_COLS_MAX * 4 + 1];
  progress_file_t view[PROGRESS_FILES_SHOWN];
  size_t n = 0;
  uint64_t now = uv_hrtime();
  if (s->ended || s->c->done) return;
  progress_tick(&s->prog, now);
  for (size_t k = 0; k < s->nactive && n < PROGRESS_FILES_SHOWN; k++, n++) {
    const files_op_t *op = &s->plan.v[s->active[k]];
    const char *name = op_name(s, op);
    /* The end of a long path names the file: keep that part. */
    size_t len = strlen(name);
    if (len > PROGRESS_COLS_MAX) name += len - PROGRESS_COLS_MAX;
    shown(names[n], sizeof(names[n]), name);
    view[n] = (progress_file_t){.name = names[n], .done = op->done, .total = op->size, .resumed = op->resumed,
                                .t0_ns = op->t0_ns};
  }
  progress_draw(&s->prog, stderr, view, n, s->nactive, now, term_cols());
}

/* ---- the channel ---------------------------------------------------------------------- */

static void note_cb(uv_timer_t *t) {
  files_t *s = t->data;
  if (s->c->done || s->ch || !s->c->pending) return;
  console_waiting_line(s->c, s->a.device, "file", s->a.ticket, "\n");
}

static unsigned pool_threads(void) {
  unsigned n = uv_available_parallelism();
  return n < THREADS_MIN ? THREADS_MIN : n > THREADS_MAX ? THREADS_MAX : n;
}

static void on_accept(tt_mux_t *m, tt_chan_t *ch, const Tether__ChannelAccept *msg) {
  (void)m;
  (void)msg;
  files_t *s = ch->data;
  if (!s) return;
  console_t *c = s->c;
  int rc;
  uv_timer_stop(&c->timeout); /* a transfer takes as long as it takes */
  s->accepted = true;
  s->t0_ns = uv_hrtime();
  uv_timer_init(c->loop, &s->kick);
  s->kick.data = s;
  s->kick_on = true;
  progress_init(&s->prog, s->t0_ns);
  expect_ops(s, 0, s->plan.n);
  if ((rc = tt_xfer_pool_start(c->loop, pool_threads(), NULL, NULL)) != 0) {
    chan_fail(s, rc, NULL);
    snprintf(s->chan_msg, sizeof(s->chan_msg), "cannot start the transfer threads: %s", tt_strerror(rc));
    return;
  }
  s->pool_on = true;
  if ((rc = tt_xfer_new(&s->x, c->link, ch, false, &local_fs, &xfer_cbs, s)) != 0) {
    s->x = NULL;
    chan_fail(s, rc, NULL);
    snprintf(s->chan_msg, sizeof(s->chan_msg), "cannot start the transfer: %s", tt_strerror(rc));
    return;
  }
  if (s->tty && !ls_cmd(s) && uv_timer_init(c->loop, &s->draw) == 0) {
    s->draw.data = s;
    s->draw_on = true;
    uv_timer_start(&s->draw, draw_cb, DRAW_MS, DRAW_MS);
  }
  kick(s);
}

static void on_data(tt_mux_t *m, tt_chan_t *ch, const uint8_t *p, size_t n, uint8_t flags) {
  files_t *s = ch->data;
  if (!s || !s->x || s->ended) {
    tt_mux_consumed(m, ch, n); /* closing: what still comes is dropped */
    return;
  }
  tt_xfer_on_data(s->x, p, n, flags);
}

static void on_credit(tt_mux_t *m, tt_chan_t *ch, uint32_t n) {
  (void)m;
  (void)n;
  files_t *s = ch->data;
  if (!s || !s->x || s->ended) return;
  tt_xfer_on_credit(s->x);
  kick(s);
}

static void on_close(tt_mux_t *m, tt_chan_t *ch, int code, const char *msg) {
  (void)m;
  files_t *s = ch->data;
  if (!s) return;
  ch->data = NULL;
  s->ch = NULL;
  close_timer(&s->note, &s->note_on);
  /* The mux says "connection closed" for every channel when the link goes down; the link's
   * own handler says so, naming the broker. */
  bool link_lost = code == TT_ECLOSED && (!msg || !*msg || strcmp(msg, "connection closed") == 0);
  const char *why = msg && *msg ? msg : tt_strerror(code);
  if (!s->accepted) {
    if (!link_lost) {
      char w[TT_TEXT_MAX * 4 + 1];
      shown(w, sizeof(w), why);
      console_fail(s->c, "%s: %s", s->a.device, w);
    }
    files_plan_free(&s->plan);
    return;
  }
  chan_fail(s, code, link_lost ? "the connection to the broker was lost" : why);
  if (s->x) tt_xfer_on_close(s->x, code, why);
  kick(s);
}

static const tt_mux_cbs_t files_mux_cbs = {
    .on_accept = on_accept,
    .on_data = on_data,
    .on_credit = on_credit,
    .on_close = on_close,
};

/* ---- the commands --------------------------------------------------------------------- */

/* A device path the user typed: the shape the device takes (a trailing '/' aside). */
static int check_dev_path(const char *p) {
  char buf[TT_FILE_PATH_MAX + 2], why[256], show[TT_FILE_PATH_MAX * 4 + 1];
  snprintf(buf, sizeof(buf), "%s", p);
  files_strip_slash(buf);
  if (tt_xfer_path_ok(tt_text(buf), why, sizeof(why))) return 0;
  shown(show, sizeof(show), p);
  return console_usage_error("%s is not a path the device takes: %s", show, why);
}

static int files_check(console_t *c) {
  files_t *s = &g_f;
  char err[FILES_ERR_MAX];
  s->c = c;
  s->a.recursive = (c->args.switches & CONSOLE_SW_RECURSIVE) != 0;
  s->a.force = (c->args.switches & CONSOLE_SW_FORCE) != 0; /* --resume: resuming is what a rerun does */
  s->a.json = c->json;
  files_roots_init(&s->roots);
  int rc = files_args_parse(&s->a, c->cmd->name, c->arg, c->narg, c->cfg.ticket, getenv("TETHER_TICKET"), err,
                            sizeof(err));
  if (rc) return console_usage_error("%s", err);
  if (s->a.device[0]) c->device_to = s->a.device; /* resolved before files_start reads it */
  if (s->a.verb == FILES_VERB_PUSH) {
    if (check_dev_path(s->a.target)) return 2;
  } else {
    for (int i = 0; i < s->a.nsrc; i++)
      if (check_dev_path(s->a.src[i])) return 2;
  }
  files_plan_init(&s->plan);
  if ((rc = files_plan_build(&s->plan, &s->a, err, sizeof(err))) != 0) {
    files_plan_free(&s->plan);
    return console_usage_error("%s", rc == TT_EINVAL ? err : tt_strerror(rc));
  }
  /* What the walk skipped or could not read is said now, before anything moves. */
  say_warnings(s);
  for (size_t i = 0; i < s->plan.n; i++)
    if (s->plan.v[i].state == FILES_FAILED) {
      say_failed(s, &s->plan.v[i]);
      s->plan.v[i].reported = true;
    }
  return 0;
}

static int files_start(console_t *c) {
  files_t *s = &g_f;
  c->state = s;
  s->tty = isatty(STDERR_FILENO);
  int rc = console_session_request(c, s->a.device, s->a.ticket, TETHER__ACCESS__ACCESS_FILES, (uint64_t)c->cfg.for_ms);
  /* A reused grant answers at once; the employee may take a minute: after a second, say so
   * (on a terminal only, so scripts see nothing extra). */
  if (!rc && s->tty && uv_timer_init(c->loop, &s->note) == 0) {
    s->note_on = true;
    s->note.data = s;
    uv_timer_start(&s->note, note_cb, NOTE_MS, 0);
    uv_unref((uv_handle_t *)&s->note); /* never what keeps the console running */
  }
  return rc;
}

static int files_response(console_t *c, const Tether__Response *r) {
  files_t *s = &g_f;
  close_timer(&s->note, &s->note_on);
  const Tether__Session *ses = r->session;
  if (!ses || !ses->id) return TT_EPROTO;
  if (!(ses->access & TETHER__ACCESS__ACCESS_FILES)) {
    console_fail(c, "S-%" PRIu64 " does not allow file access", ses->id);
    return 0;
  }
  Tether__ChannelOpen o = TETHER__CHANNEL_OPEN__INIT;
  o.kind = TETHER__CHANNEL_KIND__CHANNEL_FILES;
  o.device = tt_text(s->a.device);
  o.priority = TETHER__PRIORITY__PRIORITY_BULK;
  o.session = ses->id;
  tt_chan_t *ch;
  int rc = tt_mux_open(&c->link->mux, &o, TT_WINDOW_BULK, true, &ch);
  if (rc) return rc;
  ch->data = s;
  s->ch = ch;
  tt_link_flush(c->link);
  console_arm_timeout(c); /* until the device accepts */
  return 0;
}

#define FILE_SWITCHES (CONSOLE_SW_JSON | CONSOLE_SW_RECURSIVE | CONSOLE_SW_FORCE | CONSOLE_SW_RESUME)

const console_cmd_t console_cmd_pull = {
    .name = "pull",
    .args = "DEVICE --ticket T [-r] [--force] [--json] SRC... DEST",
    .help = "copy files (-r: directories) from the device to DEST here (asks for file access)",
    .min_pos = 3,
    .max_pos = TT_CLI_POS_MAX - 1,
    .switches = FILE_SWITCHES,
    .check = files_check,
    .start = files_start,
    .on_response = files_response,
    .mux = &files_mux_cbs,
    .denied_plain = true,
};

const console_cmd_t console_cmd_push = {
    .name = "push",
    .args = "DEVICE --ticket T [-r] [--force] [--json] SRC... DEST",
    .help = "copy files (-r: directories) to DEST on the device (DEST/: into that directory)",
    .min_pos = 3,
    .max_pos = TT_CLI_POS_MAX - 1,
    .switches = FILE_SWITCHES,
    .check = files_check,
    .start = files_start,
    .on_response = files_response,
    .mux = &files_mux_cbs,
    .denied_plain = true,
};

const console_cmd_t console_cmd_cp = {
    .name = "cp",
    .args = "[-r] [--force] [--json] SRC... DEST",
    .help = "scp-style copy: DEVICE:PATH on one side (--ticket or TETHER_TICKET)",
    .min_pos = 2,
    .max_pos = TT_CLI_POS_MAX - 1,
    .switches = FILE_SWITCHES,
    .check = files_check,
    .start = files_start,
    .on_response = files_response,
    .mux = &files_mux_cbs,
    .denied_plain = true,
};

const console_cmd_t console_cmd_ls = {
    .name = "ls",
    .args = "DEVICE --ticket T [-r] [--json] PATH",
    .help = "list PATH on the device like ls -l (-r: the whole tree; asks for file access)",
    .min_pos = 2,
    .max_pos = 2,
    .switches = CONSOLE_SW_JSON | CONSOLE_SW_RECURSIVE,
    .check = files_check,
    .start = files_start,
    .on_response = files_response,
    .mux = &files_mux_cbs,
    .denied_plain = true,
};
