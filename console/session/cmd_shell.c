/* tether shell DEVICE --ticket T: an interactive shell on the device's pty, inside a
 * consented session. tether exec DEVICE --ticket T -- CMD [ARG...]: one command, no pty.
 *
 * Flow control runs end to end: remote output is acknowledged to the channel
 * (tt_mux_consumed) only once it has been written to stdout, so a console that stops
 * reading stalls the remote program instead of filling memory; stdin is read only while
 * the channel has credit. The terminal is in raw mode while a shell runs and is put back
 * on every way out: a normal end, an error, a fatal signal, exit(); a stop (SIGTSTP) puts
 * it back too, and every SIGCONT makes it raw again (a job-control shell set its own modes
 * while we were stopped, whether by SIGTSTP or by SIGSTOP, which cannot be caught). */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>
#include "console.h"
#include "tt/msg.h"

#define TERM_DEFAULT "xterm-256color"
#define COLS_DEFAULT 80u
#define ROWS_DEFAULT 24u
/* Exit status when the channel ended without the remote's: like ssh. */
#define EXIT_NO_STATUS 255
#define EXIT_INTERRUPTED 130
/* What an exec's command line may take of the ChannelOpen frame; the rest is headroom for
 * the other fields. */
#define EXEC_LINE_MAX (TT_FRAME_MAX_BODY - 4096u)
#define MSG_MAX (TT_TEXT_MAX * 4 + 64)

/* -- the terminal ---------------------------------------------------------------------- */

static struct termios g_saved_tio;
static struct termios g_raw_tio; /* what tty_raw set: a SIGCONT sets it again */
static volatile sig_atomic_t g_raw;

void console_tty_restore(void) {
  if (!g_raw) return;
  g_raw = 0;
  (void)tcsetattr(STDIN_FILENO, TCSADRAIN, &g_saved_tio);
}

/* SIGINT, SIGTERM, SIGHUP, SIGQUIT while raw: put the terminal back, then die of the signal
 * as we would have. Only async-signal-safe calls here. */
static void fatal_signal(int sig) {
  if (g_raw) {
    g_raw = 0;
    (void)tcsetattr(STDIN_FILENO, TCSANOW, &g_saved_tio);
  }
  signal(sig, SIG_DFL);
  raise(sig);
}

/* SIGTSTP (kill -TSTP, or ^Z while the console still takes it, before the shell runs; once
 * it runs ^Z is a byte for the remote side): put the terminal back and stop as the default
 * action would, as a well-behaved full-screen program does; once continued, raw again.
 * Only async-signal-safe calls here. */
static void stop_signal(int sig) {
  int saved_errno = errno;
  bool raw = g_raw;
  if (raw) (void)tcsetattr(STDIN_FILENO, TCSANOW, &g_saved_tio);
  struct sigaction dfl, mine;
  memset(&dfl, 0, sizeof(dfl));
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  sigaction(sig, &dfl, &mine);
  /* Not blocked in its own handler (SA_NODEFER): this stops us here, unless the process
   * group is orphaned (no job-control shell to continue it), where the kernel discards it. */
  raise(sig);
  sigaction(sig, &mine, NULL);
  if (raw && g_raw) (void)tcsetattr(STDIN_FILENO, TCSANOW, &g_raw_tio);
  errno = saved_errno;
}

/* Raw from the start, so that what is typed while the employee decides is neither echoed
 * nor cooked here but reaches the shell as typed. Until the shell runs, ^C still
 * interrupts the console (isig): there is nothing remote to send it to yet. */
static int tty_raw(bool isig) {
  struct termios raw;
  if (!g_raw && tcgetattr(STDIN_FILENO, &g_saved_tio) != 0) return -errno;
  raw = g_saved_tio;
  cfmakeraw(&raw);
  if (isig) raw.c_lflag |= ISIG;
  if (!g_raw) {
    static const int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = fatal_signal;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) sigaction(sigs[i], &sa, NULL);
    sa.sa_handler = stop_signal;
    sa.sa_flags = SA_RESTART | SA_NODEFER;
    sigaction(SIGTSTP, &sa, NULL);
    atexit(console_tty_restore);
  }
  g_raw_tio = raw;
  g_raw = 1;
  if (tcsetattr(STDIN_FILENO, TCSADRAIN, &raw) != 0) {
    int e = errno;
    console_tty_restore();
    return -e;
  }
  return 0;
}

static void term_size(uint32_t *cols, uint32_t *rows) {
  struct winsize ws;
  *cols = COLS_DEFAULT;
  *rows = ROWS_DEFAULT;
  if (ioctl(STDIN_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col && ws.ws_row) {
    *cols = ws.ws_col > TT_TERM_DIM_MAX ? TT_TERM_DIM_MAX : ws.ws_col;
    *rows = ws.ws_row > TT_TERM_DIM_MAX ? TT_TERM_DIM_MAX : ws.ws_row;
  }
}

/* -- state ------------------------------------------------------------------------------ */

typedef struct shell_s shell_t;
typedef struct sink_s sink_t;

/* One piece of output waiting for its descriptor; `credit` is what the channel counted for
 * it (a CTRL frame counts whole, its stderr text is less). */
typedef struct chunk_s {
  struct chunk_s *next;
  sink_t *k;
  size_t credit, len, off;
  union {
    uv_write_t w;
    uv_fs_t fs;
  } req;
  uint8_t data[];
} chunk_t;

/* A standard descriptor as libuv serves it: a terminal or a pipe is a stream. */
typedef union {
  uv_tty_t tty;
  uv_pipe_t pipe;
} stdio_handle_t;

/* stdout or stderr: a libuv stream for ttys and pipes, plain writes from the thread pool for
 * files; one write in flight, in order. */
struct sink_s {
  shell_t *s;
  int fd;
  bool stream, open, busy, failed;
  stdio_handle_t h;
  chunk_t *head, *tail;
};

/* stdin: the same, reading. */
typedef struct {
  shell_t *s;
  bool stream, open, reading, eof;
  stdio_handle_t h;
  uv_fs_t fs;
  uint8_t buf[TT_DATA_CHUNK_MAX];
} source_t;

struct shell_s {
  console_t *c;
  tt_chan_t *ch;
  bool exec;          /* exec on pipes (exec -t runs as a shell does, on a pty) */
  bool input;         /* exec: stdin is not a terminal, so it goes to the command, then EOF */
  char *line;         /* exec -t: the command, quoted for the remote shell */
  uint64_t ticket;
  uint32_t cols, rows;
  bool accepted, have_exit, eof_rcvd;
  int exit_code;
  bool ending, finalized;
  bool out_mid_line;  /* the last byte written to stdout was not a newline */
  int end_code;
  char end_msg[MSG_MAX];
  source_t in;
  sink_t out, err;
  uv_signal_t winch, sigint, sigterm;
  bool signals_on;
  uv_signal_t cont;      /* SIGCONT while the terminal is raw: raw again, and the size */
  bool cont_on;
  int interrupts;
  uint32_t pending_signal;
  bool pending_resize;
  uv_timer_t wait_note;  /* says on a terminal that the person at the device is being asked */
  bool wait_note_on;
};

static shell_t g_sh;

static void shell_end(shell_t *s, int code, const char *fmt, ...) TT_PRINTF(3, 4);

static tt_mux_t *mux_of(shell_t *s) {
  return s->c->link ? &s->c->link->mux : NULL;
}

/* -- output ----------------------------------------------------------------------------- */

static void shell_maybe_finalize(shell_t *s);
static void sink_kick(sink_t *k);

static void chunk_done(sink_t *k, chunk_t *ch) {
  shell_t *s = k->s;
  k->head = ch->next;
  if (!k->head) k->tail = NULL;
  tt_mux_t *m = mux_of(s);
  /* Only now may the remote send more: the bytes are out of our hands. */
  if (ch->credit && s->ch && m) {
    tt_mux_consumed(m, s->ch, ch->credit);
    tt_link_flush(s->c->link);
  }
  free(ch);
}

static void sink_failed(sink_t *k, int err) {
  shell_t *s = k->s;
  k->failed = true;
  while (k->head) {
    chunk_t *ch = k->head;
    k->head = ch->next;
    free(ch);
  }
  k->tail = NULL;
  shell_end(s, 1, "cannot write to %s: %s", k->fd == STDOUT_FILENO ? "stdout" : "stderr", uv_strerror(err));
}

static void write_cb(uv_write_t *req, int status) {
  chunk_t *ch = req->data;
  sink_t *k = ch->k;
  k->busy = false;
  if (status < 0) {
    if (status != UV_ECANCELED) sink_failed(k, status);
    shell_maybe_finalize(k->s);
    return;
  }
  chunk_done(k, ch);
  sink_kick(k);
  shell_maybe_finalize(k->s);
}

static void fs_write_cb(uv_fs_t *req) {
  chunk_t *ch = req->data;
  sink_t *k = ch->k;
  ssize_t r = req->result;
  uv_fs_req_cleanup(req);
  k->busy = false;
  if (r < 0) {
    sink_failed(k, (int)r);
    shell_maybe_finalize(k->s);
    return;
  }
  ch->off += (size_t)r;
  if (ch->off >= ch->len) chunk_done(k, ch);
  sink_kick(k);
  shell_maybe_finalize(k->s);
}

static void sink_kick(sink_t *k) {
  if (k->busy || k->failed || !k->head) return;
  chunk_t *ch = k->head;
  uv_buf_t b = uv_buf_init((char *)ch->data + ch->off, (unsigned)(ch->len - ch->off));
  int rc;
  k->busy = true;
  if (k->stream) {
    ch->req.w.data = ch;
    rc = uv_write(&ch->req.w, (uv_stream_t *)&k->h, &b, 1, write_cb);
  } else {
    ch->req.fs.data = ch;
    rc = uv_fs_write(k->s->c->loop, &ch->req.fs, k->fd, &b, 1, -1, fs_write_cb);
  }
  if (rc) {
    k->busy = false;
    sink_failed(k, rc);
  }
}

/* Queue n bytes for k; credit is acknowledged once they are written. */
static int sink_push(sink_t *k, const uint8_t *p, size_t n, size_t credit) {
  shell_t *s = k->s;
  if (k->failed) return 0; /* ending already; what is left is dropped */
  if (n == 0) {
    tt_mux_t *m = mux_of(s);
    if (credit && s->ch && m) tt_mux_consumed(m, s->ch, credit);
    return 0;
  }
  chunk_t *ch = malloc(sizeof(*ch) + n);
  if (!ch) return TT_ENOMEM;
  if (k == &s->out) s->out_mid_line = p[n - 1] != '\n';
  memset(ch, 0, sizeof(*ch));
  ch->k = k;
  ch->credit = credit;
  ch->len = n;
  memcpy(ch->data, p, n);
  if (k->tail) k->tail->next = ch;
  else k->head = ch;
  k->tail = ch;
  sink_kick(k);
  return 0;
}

/* A libuv stream for fd when it is a terminal or a pipe (*stream = true); anything else (a
 * file) stays a plain descriptor, served with uv_fs from the thread pool. */
static int stdio_open(uv_loop_t *loop, stdio_handle_t *h, int fd, bool readable, bool *stream) {
  uv_handle_type t = uv_guess_handle(fd);
  *stream = t == UV_TTY || t == UV_NAMED_PIPE || t == UV_TCP;
  if (t == UV_TTY) return uv_tty_init(loop, &h->tty, fd, readable);
  if (!*stream) return 0;
  int rc = uv_pipe_init(loop, &h->pipe, 0);
  if (!rc && (rc = uv_pipe_open(&h->pipe, fd))) uv_close((uv_handle_t *)&h->pipe, NULL);
  return rc;
}

static int sink_open(shell_t *s, sink_t *k, int fd) {
  memset(k, 0, sizeof(*k));
  k->s = s;
  k->fd = fd;
  int rc = stdio_open(s->c->loop, &k->h, fd, false, &k->stream);
  if (rc) return rc;
  k->open = k->stream;
  return 0;
}

static bool sink_idle(const sink_t *k) {
  return !k->busy && !k->head;
}

static void sink_close(sink_t *k) {
  if (k->open) uv_close((uv_handle_t *)&k->h, NULL);
  k->open = false;
}

/* -- input ------------------------------------------------------------------------------ */

static void source_start(source_t *in);

static void send_eof(shell_t *s) {
  static const uint8_t none = 0;
  tt_mux_t *m = mux_of(s);
  if (!s->ch || !m || s->ch->eof_sent) return;
  if (tt_mux_send(m, s->ch, &none, 0, TT_FF_EOF) == 0) tt_link_flush(s->c->link);
}

static void source_stop(source_t *in) {
  if (in->reading && in->stream) uv_read_stop((uv_stream_t *)&in->h);
  if (in->stream) in->reading = false;
}

static void source_close(source_t *in) {
  source_stop(in);
  if (in->open) uv_close((uv_handle_t *)&in->h, NULL);
  in->open = false;
}

/* Bytes typed (or piped in) go to the remote as they are. */
static void source_got(source_t *in, const uint8_t *p, size_t n) {
  shell_t *s = in->s;
  tt_mux_t *m = mux_of(s);
  if (!s->ch || !m || s->ending) return;
  /* Reads are sized to the credit, so this fits. */
  int rc = tt_mux_send(m, s->ch, p, n, 0);
  if (rc) {
    shell_end(s, 1, "cannot send to the device: %s", tt_strerror(rc));
    return;
  }
  tt_link_flush(s->c->link);
}

static void source_eof(source_t *in) {
  in->eof = true;
  source_stop(in);
  send_eof(in->s);
}

static size_t source_room(source_t *in) {
  shell_t *s = in->s;
  size_t room = s->ch ? tt_mux_sendable(s->ch) : 0;
  return room < sizeof(in->buf) ? room : sizeof(in->buf);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *b) {
  (void)suggested;
  source_t *in = h->data;
  *b = uv_buf_init((char *)in->buf, (unsigned)source_room(in));
}

static void read_cb(uv_stream_t *st, ssize_t n, const uv_buf_t *b) {
  source_t *in = st->data;
  (void)b;
  if (n > 0) source_got(in, in->buf, (size_t)n);
  else if (n == UV_ENOBUFS) {
    source_stop(in); /* no credit: on_credit starts reading again */
    return;
  } else if (n < 0) {
    source_eof(in);
    return;
  }
  if (in->reading && source_room(in) == 0) source_stop(in);
}

static void fs_read_cb(uv_fs_t *req) {
  source_t *in = req->data;
  ssize_t n = req->result;
  uv_fs_req_cleanup(req);
  in->reading = false;
  if (in->s->ending) {
    shell_maybe_finalize(in->s); /* it waited for this read to give back in.buf */
    return;
  }
  if (n <= 0) {
    source_eof(in);
    return;
  }
  source_got(in, in->buf, (size_t)n);
  source_start(in);
}

static void source_start(source_t *in) {
  shell_t *s = in->s;
  if (in->eof || in->reading || s->ending || !s->ch) return;
  size_t room = source_room(in);
  if (room == 0) return;
  int rc;
  if (in->stream) {
    rc = uv_read_start((uv_stream_t *)&in->h, alloc_cb, read_cb);
  } else {
    uv_buf_t b = uv_buf_init((char *)in->buf, (unsigned)room);
    in->fs.data = in;
    rc = uv_fs_read(s->c->loop, &in->fs, STDIN_FILENO, &b, 1, -1, fs_read_cb);
  }
  if (rc) {
    source_eof(in);
    return;
  }
  in->reading = true;
}

static int source_open(shell_t *s, source_t *in) {
  memset(in, 0, sizeof(*in));
  in->s = s;
  int rc = stdio_open(s->c->loop, &in->h, STDIN_FILENO, true, &in->stream);
  if (rc) return rc;
  in->open = in->stream;
  if (in->stream) in->h.tty.data = in;
  return 0;
}

/* -- control messages ------------------------------------------------------------------- */

static void send_pending(shell_t *s) {
  tt_mux_t *m = mux_of(s);
  if (s->ch && m && tt_mux_term_ctl(m, s->ch, &s->pending_resize, s->cols, s->rows, &s->pending_signal))
    tt_link_flush(s->c->link);
}

/* The terminal's size now, to the remote side if it changed. */
static void resize_check(shell_t *s) {
  uint32_t cols, rows;
  term_size(&cols, &rows);
  if (cols == s->cols && rows == s->rows) return;
  s->cols = cols;
  s->rows = rows;
  s->pending_resize = true;
  send_pending(s);
}

static void winch_cb(uv_signal_t *h, int sig) {
  (void)sig;
  resize_check(h->data);
}

/* Continued after a stop: whoever had the terminal meanwhile (the job-control shell) set
 * its own modes, and may have resized the window. SIGSTOP cannot be caught, so this is the
 * only place to notice it. */
static void cont_cb(uv_signal_t *h, int sig) {
  shell_t *s = h->data;
  (void)sig;
  if (g_raw && tcsetattr(STDIN_FILENO, TCSADRAIN, &g_raw_tio) != 0 && errno != EINTR && !s->ending) {
    shell_end(s, 1, "cannot put the terminal back in raw mode: %s", strerror(errno));
    return;
  }
  if (s->ch && s->accepted && !s->ending) resize_check(s);
}

/* exec: ^C and SIGTERM go to the remote command; a second ^C gives up on it. */
static void interrupt_cb(uv_signal_t *h, int sig) {
  shell_t *s = h->data;
  if (s->ending) { /* still waiting for stdout to take the rest: this one means now */
    console_tty_restore();
    signal(sig, SIG_DFL);
    raise(sig);
    return;
  }
  if (sig == SIGINT && ++s->interrupts >= 2) {
    shell_end(s, EXIT_INTERRUPTED, NULL);
    return;
  }
  s->pending_signal = (uint32_t)sig;
  send_pending(s);
}

/* -- the end ---------------------------------------------------------------------------- */

static void wait_note_stop(shell_t *s) {
  if (!s->wait_note_on) return;
  s->wait_note_on = false;
  uv_close((uv_handle_t *)&s->wait_note, NULL);
}

static void signals_close(shell_t *s) {
  wait_note_stop(s);
  if (s->cont_on) {
    s->cont_on = false;
    uv_close((uv_handle_t *)&s->cont, NULL);
  }
  if (!s->signals_on) return;
  s->signals_on = false;
  if (!s->exec) uv_close((uv_handle_t *)&s->winch, NULL);
  else {
    uv_close((uv_handle_t *)&s->sigint, NULL);
    uv_close((uv_handle_t *)&s->sigterm, NULL);
  }
}

/* Everything written: put the terminal back, say why if there is something to say, and let
 * the loop end. */
static void shell_maybe_finalize(shell_t *s) {
  if (!s->ending || s->finalized) return;
  if (!sink_idle(&s->out) || !sink_idle(&s->err)) return;
  if (s->in.reading && !s->in.stream) return; /* a pool read still owns in.buf */
  s->finalized = true;
  console_tty_restore();
  /* On a terminal the remote output may have stopped mid-line: start the message on its own. */
  if (s->end_msg[0])
    fprintf(stderr, "%stether: %s\n", s->out_mid_line && isatty(STDERR_FILENO) ? "\r\n" : "", s->end_msg);
  source_close(&s->in);
  sink_close(&s->out);
  sink_close(&s->err);
  signals_close(s);
}

/* Stop the shell with this exit code (and a line to print once stdout is drained). */
static void shell_end(shell_t *s, int code, const char *fmt, ...) {
  if (s->ending) return;
  s->ending = true;
  s->end_code = code;
  /* A failure already reported (the broker's error, a lost link) keeps its one line. */
  if (fmt && !s->c->done) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->end_msg, sizeof(s->end_msg), fmt, ap);
    va_end(ap);
  }
  tt_mux_t *m = mux_of(s);
  if (s->ch) {
    s->ch->data = NULL;
    if (m) (void)tt_mux_close(m, s->ch, 0, "done");
    s->ch = NULL;
  }
  source_stop(&s->in);
  console_finish(s->c, code);
  shell_maybe_finalize(s);
}

static int exit_code_of(const Tether__ExitStatus *e) {
  if (e->signal) return 128 + (int)(e->signal & 0x7f);
  return e->code >= 0 && e->code <= 255 ? e->code : EXIT_NO_STATUS;
}

/* The remote said all it will say: finish when it has been written. */
static void remote_done(shell_t *s, const char *why) {
  if (s->have_exit) shell_end(s, s->exit_code, NULL);
  else shell_end(s, EXIT_NO_STATUS, "%s", why);
}

/* -- the channel ------------------------------------------------------------------------ */

static void on_accept(tt_mux_t *m, tt_chan_t *ch, const Tether__ChannelAccept *msg) {
  (void)m;
  (void)msg;
  shell_t *s = ch->data;
  if (!s) return;
  console_t *c = s->c;
  uv_timer_stop(&c->timeout); /* a shell may stay quiet as long as it likes */
  s->accepted = true;
  int rc = sink_open(s, &s->out, STDOUT_FILENO);
  if (!rc) rc = sink_open(s, &s->err, STDERR_FILENO);
  if (rc) {
    shell_end(s, 1, "cannot use stdout/stderr: %s", uv_strerror(rc));
    return;
  }
  if (s->exec) {
    uv_signal_init(c->loop, &s->sigint);
    uv_signal_init(c->loop, &s->sigterm);
    s->sigint.data = s->sigterm.data = s;
    uv_signal_start(&s->sigint, interrupt_cb, SIGINT);
    uv_signal_start(&s->sigterm, interrupt_cb, SIGTERM);
    s->signals_on = true;
    if (!s->input) return;
    if ((rc = source_open(s, &s->in))) {
      shell_end(s, 1, "cannot read stdin: %s", uv_strerror(rc));
      return;
    }
    source_start(&s->in);
    return;
  }
  uv_signal_init(c->loop, &s->winch);
  s->winch.data = s;
  uv_signal_start(&s->winch, winch_cb, SIGWINCH);
  s->signals_on = true;
  if (isatty(STDIN_FILENO) && (rc = tty_raw(false))) {
    shell_end(s, 1, "cannot put the terminal in raw mode: %s", strerror(-rc));
    return;
  }
  rc = source_open(s, &s->in);
  if (rc) {
    shell_end(s, 1, "cannot read stdin: %s", uv_strerror(rc));
    return;
  }
  source_start(&s->in);
}

static void on_ctrl(shell_t *s, const uint8_t *p, size_t n) {
  tt_msg_t msg;
  if (tt_msg_unpack_ctrl(&msg, p, n)) {
    shell_end(s, EXIT_NO_STATUS, "the device sent a malformed control message");
    return;
  }
  const Tether__ChannelControl *cc = (const Tether__ChannelControl *)msg.m;
  int rc = 0;
  switch (cc->body_case) {
  case TETHER__CHANNEL_CONTROL__BODY_EXIT:
    if (cc->exit) {
      s->have_exit = true;
      s->exit_code = exit_code_of(cc->exit);
    }
    sink_push(&s->err, NULL, 0, n); /* nothing to write: acknowledge at once */
    break;
  case TETHER__CHANNEL_CONTROL__BODY_STDERR:
    rc = sink_push(&s->err, cc->stderr.data, cc->stderr.len, n);
    break;
  default: /* resize and signal are ours to send, not to receive: ignore them */
    rc = sink_push(&s->err, NULL, 0, n);
    break;
  }
  tt_msg_free(&msg);
  if (rc) shell_end(s, 1, "%s", tt_strerror(rc));
}

static void on_data(tt_mux_t *m, tt_chan_t *ch, const uint8_t *p, size_t n, uint8_t flags) {
  (void)m;
  shell_t *s = ch->data;
  if (!s || s->ending) return;
  if (flags & TT_FF_ZSTD) { /* never offered: a device that sends it is broken */
    shell_end(s, EXIT_NO_STATUS, "the device sent compressed data that was not asked for");
    return;
  }
  if (flags & TT_FF_CTRL) on_ctrl(s, p, n);
  else if (sink_push(&s->out, p, n, n)) shell_end(s, 1, "%s", tt_strerror(TT_ENOMEM));
  if (s->ending) return;
  if (flags & TT_FF_EOF) {
    s->eof_rcvd = true;
    remote_done(s, "the device ended the channel without an exit status");
  }
}

static void on_credit(tt_mux_t *m, tt_chan_t *ch, uint32_t n) {
  (void)m;
  (void)n;
  shell_t *s = ch->data;
  if (!s || s->ending) return;
  send_pending(s);
  if (!s->exec || s->input) source_start(&s->in); /* exec from a terminal sends no input */
}

static void on_close(tt_mux_t *m, tt_chan_t *ch, int code, const char *msg) {
  (void)m;
  shell_t *s = ch->data;
  if (!s) return;
  ch->data = NULL;
  s->ch = NULL;
  if (s->ending) return;
  /* The mux says "connection closed" for every channel when the link goes down. */
  bool link_lost = code == TT_ECLOSED && (!msg || !*msg || strcmp(msg, "connection closed") == 0);
  const char *why = link_lost ? "the connection to the broker was lost" : msg && *msg ? msg : tt_strerror(code);
  if (!s->accepted) {
    /* Refused before it started: an error like any other. A lost link is reported by
     * the link's own handler, which names the broker. */
    if (!link_lost) console_fail(s->c, "%s", why);
    return;
  }
  remote_done(s, why);
}

static const tt_mux_cbs_t shell_mux_cbs = {
    .on_accept = on_accept,
    .on_data = on_data,
    .on_credit = on_credit,
    .on_close = on_close,
};

/* -- the commands ----------------------------------------------------------------------- */

/* argv as one line for the remote shell: words of safe characters as they are, anything
 * else in single quotes ('\'' for a quote inside). NULL when it would not fit. */
static char *sh_quote_line(char *const *argv, int n) {
  tt_buf_t b;
  tt_buf_init(&b, TT_EXEC_COMMAND_MAX + 1);
  int rc = 0;
  for (int i = 0; i < n && !rc; i++) {
    const char *a = argv[i];
    bool plain = *a != '\0';
    for (const char *q = a; *q && plain; q++)
      plain = (*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z') || (*q >= '0' && *q <= '9') || strchr("_./=:,+@%-", *q);
    if (i) rc = tt_buf_append(&b, " ", 1);
    if (plain) {
      if (!rc) rc = tt_buf_append(&b, a, strlen(a));
      continue;
    }
    if (!rc) rc = tt_buf_append(&b, "'", 1);
    for (const char *q = a; *q && !rc; q++) rc = *q == '\'' ? tt_buf_append(&b, "'\\''", 4) : tt_buf_append(&b, q, 1);
    if (!rc) rc = tt_buf_append(&b, "'", 1);
  }
  if (!rc) rc = tt_buf_append(&b, "", 1); /* the NUL */
  if (rc) {
    tt_buf_free(&b);
    return NULL;
  }
  return (char *)b.data;
}

static int shell_check(console_t *c) {
  g_sh.exec = c->cmd == &console_cmd_exec;
  if (!c->arg[0][0] || !tt_text_valid(tt_text(c->arg[0]), TT_NAME_MAX))
    return console_usage_error("'%s' is not a device id", c->arg[0]);
  if (!c->cfg.ticket[0])
    return console_usage_error("--ticket is required: the ticket the work is for (T-3)");
  if (console_parse_id(c->cfg.ticket, 'T', false, &g_sh.ticket))
    return console_usage_error("--ticket: '%s' is not a ticket (want T-3 or 3)", c->cfg.ticket);
  if (!g_sh.exec) return 0;
  if (c->nrest == 0)
    return console_usage_error("exec needs the command after --: tether exec DEVICE --ticket T -- CMD [ARG...]");
  if ((unsigned)c->nrest > TT_EXEC_ARGV_MAX)
    return console_usage_error("at most %u arguments for exec", TT_EXEC_ARGV_MAX);
  size_t total = 0;
  for (int i = 0; i < c->nrest; i++) {
    size_t n = strlen(c->rest[i]);
    if (n > TT_EXEC_ARG_MAX) return console_usage_error("argument %d is over %u bytes", i + 1, TT_EXEC_ARG_MAX);
    total += n + 4;
  }
  if (!c->rest[0][0]) return console_usage_error("exec: the command is empty");
  if (total > EXEC_LINE_MAX) return console_usage_error("the command line is too long");
  if (c->args.switches & CONSOLE_SW_TTY) { /* on a pty: a shell that runs the command */
    if (!(g_sh.line = sh_quote_line(c->rest, c->nrest)))
      return console_usage_error("the command line is over %u bytes once quoted", TT_EXEC_COMMAND_MAX);
    g_sh.exec = false;
    return 0;
  }
  /* Like ssh: what is piped in reaches the command; a terminal's typing does not (-t). */
  g_sh.input = !isatty(STDIN_FILENO);
  return 0;
}

static void wait_note_cb(uv_timer_t *t) {
  shell_t *s = t->data;
  if (s->ending || s->ch || s->c->done) return;
  console_waiting_line(s->c, s->c->arg[0], "shell", s->ticket, g_raw ? "\r\n" : "\n");
}

static int shell_start(console_t *c) {
  g_sh.c = c;
  c->state = &g_sh;
  int rc;
  if (!g_sh.exec && isatty(STDIN_FILENO)) {
    if ((rc = tty_raw(true))) {
      console_fail(c, "cannot put the terminal in raw mode: %s", strerror(-rc));
      return 0;
    }
    if (uv_signal_init(c->loop, &g_sh.cont) == 0) {
      g_sh.cont_on = true;
      g_sh.cont.data = &g_sh;
      uv_signal_start(&g_sh.cont, cont_cb, SIGCONT);
      uv_unref((uv_handle_t *)&g_sh.cont); /* never what keeps the console running */
    }
  }
  rc = console_session_request(c, c->arg[0], g_sh.ticket, TETHER__ACCESS__ACCESS_SHELL, (uint64_t)c->cfg.for_ms);
  /* A grant that is reused answers at once; one that needs the employee's yes may take a
   * minute: after a second, say so (on a terminal only, so scripts see nothing extra). */
  if (!rc && isatty(STDERR_FILENO) && uv_timer_init(c->loop, &g_sh.wait_note) == 0) {
    g_sh.wait_note_on = true;
    g_sh.wait_note.data = &g_sh;
    uv_timer_start(&g_sh.wait_note, wait_note_cb, 1000, 0);
    uv_unref((uv_handle_t *)&g_sh.wait_note); /* never what keeps the console running */
  }
  return rc;
}

static int open_channel(console_t *c, uint64_t session) {
  shell_t *s = &g_sh;
  Tether__ChannelOpen o = TETHER__CHANNEL_OPEN__INIT;
  ProtobufCBinaryData argv[TT_EXEC_ARGV_MAX];
  const char *term = getenv("TERM");
  o.kind = s->exec ? TETHER__CHANNEL_KIND__CHANNEL_EXEC : TETHER__CHANNEL_KIND__CHANNEL_SHELL;
  o.device = tt_text(c->arg[0]);
  o.priority = TETHER__PRIORITY__PRIORITY_INTERACTIVE;
  o.session = session;
  if (s->exec) {
    for (int i = 0; i < c->nrest; i++) argv[i] = tt_text(c->rest[i]);
    o.argv = argv;
    o.n_argv = (size_t)c->nrest;
    o.input = s->input;
  } else {
    if (s->line) o.command = tt_text(s->line);
    term_size(&s->cols, &s->rows);
    o.cols = s->cols;
    o.rows = s->rows;
    if (!term || !*term || !tt_text_valid(tt_text(term), TT_TERM_NAME_MAX)) term = TERM_DEFAULT;
    o.term = tt_text(term);
  }
  tt_chan_t *ch;
  int rc = tt_mux_open(&c->link->mux, &o, TT_WINDOW_DEFAULT, true, &ch);
  if (rc) return rc;
  ch->data = s;
  s->ch = ch;
  tt_link_flush(c->link);
  console_arm_timeout(c); /* until the device accepts */
  return 0;
}

static int shell_response(console_t *c, const Tether__Response *r) {
  wait_note_stop(&g_sh);
  const Tether__Session *ses = r->session;
  if (!ses || !ses->id) return TT_EPROTO;
  if (!(ses->access & TETHER__ACCESS__ACCESS_SHELL)) {
    console_fail(c, "S-%" PRIu64 " does not allow shell access", ses->id);
    return 0;
  }
  return open_channel(c, ses->id);
}

const console_cmd_t console_cmd_shell = {
    .name = "shell",
    .args = "DEVICE --ticket T [--for 30m]",
    .help = "an interactive shell on the device (asks the person there first)",
    .min_pos = 1,
    .device_arg = true,
    .max_pos = 1,
    .check = shell_check,
    .start = shell_start,
    .on_response = shell_response,
    .mux = &shell_mux_cbs,
    .denied_plain = true,
};

const console_cmd_t console_cmd_exec = {
    .name = "exec",
    .args = "DEVICE --ticket T [--for 30m] [-t] -- CMD [ARG...]",
    .help = "run one command on the device; stdin (when not a terminal) goes to it, its output and exit status "
            "are yours; -t runs it on a pty",
    .min_pos = 1,
    .device_arg = true,
    .max_pos = 1,
    .switches = CONSOLE_SW_TTY,
    .check = shell_check,
    .start = shell_start,
    .on_response = shell_response,
    .mux = &shell_mux_cbs,
    .denied_plain = true,
};
