/* One SSH session channel bridged to one Tether channel, as `tether shell` and `tether exec`
 * use them: a shell on a pty (with window changes and signals), or a command with stdin,
 * stdout and stderr apart and its exit status or signal.
 *
 * The channel is accepted at once and the shell or exec request answered yes; the session
 * (the ticket, the employee's consent, a live grant reused) is asked for afterwards, and
 * while it is pending the client reads "waiting for the person at HOST ..." on stderr; a
 * refusal ends the channel with one line and no exit status (ssh exits 255).
 *
 * Flow control, both ways, so that a slow side holds only a window of data anywhere:
 * - device -> client: what the Tether channel delivers is queued and written to libssh only
 *   as far as the client's SSH window allows; the Tether channel is credited for bytes once
 *   libssh took them, so the Tether window bounds the queue.
 * - client -> device: the data callback takes only as much as the Tether channel has credit
 *   for; the rest stays in libssh's channel buffer, which counts against the window libssh
 *   grants the client, and is read out (ssh_channel_read_nonblocking) when credit comes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "sshd.h"
#include "tt/log.h"
#include "tt/msg.h"
#include "tt/xfer.h"

#define COLS_DEFAULT 80u
#define ROWS_DEFAULT 24u
#define WAIT_NOTE_MS 1000u
/* The command a shell request without a pty runs: the user's shell, reading stdin, as sshd
 * does for `ssh -T host`. */
#define SHELL_NO_PTY "exec \"${SHELL:-/bin/sh}\""

static const char *const sig_names[] = {
    [1] = "HUP",  [2] = "INT",   [3] = "QUIT",  [4] = "ILL",   [6] = "ABRT",  [8] = "FPE",
    [9] = "KILL", [10] = "USR1", [11] = "SEGV", [12] = "USR2", [13] = "PIPE", [14] = "ALRM",
    [15] = "TERM",
};
#define NSIGS (sizeof(sig_names) / sizeof(sig_names[0]))

static tt_mux_t *mux_of(gw_chan_t *h) { return h->c->bl.link ? &h->c->bl.link->mux : NULL; }

static void flush(gw_chan_t *h) {
  if (h->c->bl.link) tt_link_flush(h->c->bl.link);
}

/* -- output to the client -------------------------------------------------------------------- */

static int queue(gw_chan_t *h, bool err, const void *p, size_t n, size_t credit) {
  if (h->queued + n > SSHD_OUTQ_MAX) return TT_EWINDOW;
  gw_out_t *o = malloc(sizeof(*o) + (n ? n : 1));
  if (!o) return TT_ENOMEM;
  memset(o, 0, sizeof(*o));
  o->err = err;
  o->len = n;
  o->credit = credit;
  if (n) memcpy(o->data, p, n);
  if (h->tail) h->tail->next = o;
  else h->head = o;
  h->tail = o;
  h->queued += n;
  return 0;
}

/* One line for the person at the ssh client, on stderr. */
static void say(gw_chan_t *h, const char *msg) {
  char line[TT_TEXT_MAX * 4 + 128];
  int n = snprintf(line, sizeof(line), "tether: %s%s", msg, h->pty ? "\r\n" : "\n");
  if (n > 0) (void)queue(h, true, line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1, 0);
}

static void detach_tether(gw_chan_t *h, const char *why) {
  /* A files channel belongs to the transfer engine until the channel is freed (gw_chan_free,
   * never inside a callback of the engine's). */
  if (!h->tc || h->sftp) return;
  tt_mux_t *m = mux_of(h);
  h->tc->data = NULL;
  if (m) (void)tt_mux_close(m, h->tc, 0, why);
  h->tc = NULL;
  flush(h);
}

/* Whatever is queued goes out, then the exit status (if any), EOF and close. */
static void finish(gw_chan_t *h) {
  if (h->st == CH_ENDING || h->st == CH_DONE) return;
  h->st = CH_ENDING;
  uv_timer_stop(&h->note);
}

/* -- the session and the Tether channel ------------------------------------------------------ */

static void session_answer(blink_t *b, void *arg, const Tether__Response *r, const char *why);

static void note_cb(uv_timer_t *t) {
  gw_chan_t *h = t->data;
  if (h->st != CH_WAIT && h->st != CH_OPENING) return;
  if (h->tc) return; /* granted: the device is starting it */
  gw_conn_t *c = h->c;
  char msg[TT_TEXT_MAX * 4 + 160], limit[32] = "";
  if (c->device_consent_ms) snprintf(limit, sizeof(limit), " (%u s)", (unsigned)((c->device_consent_ms + 999) / 1000));
  snprintf(msg, sizeof(msg), "waiting for the person at %s to allow %s access under T-%llu%s...",
           c->device_host[0] ? c->device_host : c->device, h->want_sftp ? "file" : "shell",
           (unsigned long long)c->ticket, limit);
  say(h, msg);
  gw_chan_pump(h);
  gw_conn_kick(c);
}

void gw_chan_reply(gw_chan_t *h, const void *p, size_t n) {
  if (h->st != CH_RUN) return; /* ending: what is left goes unsaid */
  if (queue(h, false, p, n, 0)) gw_chan_fail(h, "the sftp client is not reading its answers");
}

void gw_chan_fail(gw_chan_t *h, const char *why) {
  if (h->st == CH_DONE || h->st == CH_ENDING) return;
  say(h, why);
  finish(h);
}

void gw_chan_end(gw_chan_t *h, const char *why) {
  if (h->st == CH_DONE || h->st == CH_ENDING) return;
  detach_tether(h, why);
  if (h->st != CH_NEW) say(h, why);
  finish(h);
  gw_chan_pump(h);
}

void gw_chan_go(gw_chan_t *h) {
  gw_conn_t *c = h->c;
  if (c->state == GW_FAILED) {
    if (h->st == CH_WAIT || h->st == CH_OPENING || h->st == CH_RUN) {
      detach_tether(h, "ended");
      say(h, c->fail);
      finish(h);
    }
    return;
  }
  if (c->state != GW_READY || h->st != CH_WAIT) return;
  Tether__SessionOpenRequest q = TETHER__SESSION_OPEN_REQUEST__INIT;
  q.device = tt_text(c->device);
  q.ticket = c->ticket;
  q.access = h->want_sftp ? TETHER__ACCESS__ACCESS_FILES : TETHER__ACCESS__ACCESS_SHELL;
  Tether__Request r = TETHER__REQUEST__INIT;
  r.body_case = TETHER__REQUEST__BODY_SESSION_OPEN;
  r.session_open = &q;
  int rc = blink_request(&c->bl, &r, session_answer, h);
  if (rc) {
    say(h, tt_strerror(rc));
    finish(h);
    return;
  }
  h->st = CH_OPENING;
}

static int open_tether(gw_chan_t *h) {
  gw_conn_t *c = h->c;
  tt_mux_t *m = mux_of(h);
  if (!m) return TT_ECLOSED;
  Tether__ChannelOpen o = TETHER__CHANNEL_OPEN__INIT;
  o.device = tt_text(c->device);
  o.priority = TETHER__PRIORITY__PRIORITY_INTERACTIVE;
  o.session = h->session;
  uint32_t window = TT_WINDOW_DEFAULT;
  if (h->want_sftp) {
    o.kind = TETHER__CHANNEL_KIND__CHANNEL_FILES;
    o.priority = TETHER__PRIORITY__PRIORITY_BULK;
    window = TT_WINDOW_BULK;
  } else if (!h->pty) {
    o.kind = TETHER__CHANNEL_KIND__CHANNEL_EXEC;
    o.command = tt_text(h->exec ? h->command : SHELL_NO_PTY);
    o.input = true;
  } else {
    o.kind = TETHER__CHANNEL_KIND__CHANNEL_SHELL;
    if (h->exec) o.command = tt_text(h->command);
    o.cols = h->cols;
    o.rows = h->rows;
    o.term = tt_text(h->term);
  }
  tt_chan_t *tc;
  int rc = tt_mux_open(m, &o, window, true, &tc);
  if (rc) return rc;
  tc->data = h;
  h->tc = tc;
  flush(h);
  return 0;
}

static void session_answer(blink_t *b, void *arg, const Tether__Response *r, const char *why) {
  gw_chan_t *h = arg;
  (void)b;
  uv_timer_stop(&h->note);
  if (h->st != CH_OPENING) return;
  char msg[TT_TEXT_MAX * 4 + 1];
  if (!r) {
    say(h, why);
    finish(h);
  } else if (r->error) {
    blink_error_text(r->error, msg, sizeof(msg));
    say(h, msg);
    finish(h);
  } else if (r->body_case != TETHER__RESPONSE__BODY_SESSION || !r->session || !r->session->id ||
             !(r->session->access & (h->want_sftp ? TETHER__ACCESS__ACCESS_FILES : TETHER__ACCESS__ACCESS_SHELL))) {
    say(h, h->want_sftp ? "the broker's answer is not a session with file access"
                        : "the broker's answer is not a session with shell access");
    finish(h);
  } else {
    h->session = r->session->id;
    int rc = open_tether(h);
    if (rc) {
      say(h, tt_strerror(rc));
      finish(h);
    }
  }
  gw_chan_pump(h);
  gw_conn_kick(h->c);
}

static void send_pending(gw_chan_t *h) {
  tt_mux_t *m = mux_of(h);
  if (h->st == CH_RUN && h->tc && m && tt_mux_term_ctl(m, h->tc, &h->pending_resize, h->cols, h->rows, &h->pending_signal))
    flush(h);
}

/* -- pumping --------------------------------------------------------------------------------- */

/* Client input that waited in libssh's buffer for credit. */
static void read_held(gw_chan_t *h) {
  static uint8_t buf[SSHD_READ_CHUNK];
  tt_mux_t *m = mux_of(h);
  /* ssh_channel_poll reads packets (runs libssh, and our callbacks inside it) when the
   * buffer is empty: it is asked only while bytes are known to be held. */
  while (h->in_held && h->tc && m) {
    size_t room = h->sftp ? sftp_room(h->sftp) : tt_mux_sendable(h->tc);
    if (!room) return;
    int avail = ssh_channel_poll(h->sc, 0);
    if (avail <= 0) {
      h->in_held = false;
      return;
    }
    size_t want = (size_t)avail < room ? (size_t)avail : room;
    if (want > sizeof(buf)) want = sizeof(buf);
    int n = ssh_channel_read_nonblocking(h->sc, buf, (uint32_t)want, 0);
    if (n <= 0) {
      h->in_held = false;
      return;
    }
    if (n >= avail) h->in_held = false;
    if (h->sftp) { /* sized to what it takes now: all of it */
      (void)sftp_input(h->sftp, buf, (size_t)n);
      continue;
    }
    if (tt_mux_send(m, h->tc, buf, (size_t)n, 0)) { /* sized to the credit: cannot happen */
      say(h, "the input could not be passed on");
      finish(h);
      return;
    }
    flush(h);
  }
}

static void send_exit(gw_chan_t *h) {
  if (!h->have_exit) return;
  if (h->exit_signal) {
    const char *name = h->exit_signal < NSIGS && sig_names[h->exit_signal] ? sig_names[h->exit_signal] : "KILL";
    ssh_channel_request_send_exit_signal(h->sc, name, 0, "", "");
  } else {
    ssh_channel_request_send_exit_status(h->sc, h->exit_code);
  }
}

void gw_chan_pump(gw_chan_t *h) {
  if (h->st == CH_DONE || !h->sc) return;
  tt_mux_t *m = mux_of(h);
  bool acked = false;
  /* Input first: what it makes (sftp's answers) goes out in the same round. */
  if (h->st == CH_RUN) {
    read_held(h);
    /* sftp: the client sent all it will; once every request is answered, the end. */
    if (h->sftp && h->in_eof && !h->in_held && sftp_idle(h->sftp)) {
      h->have_exit = true;
      h->exit_code = 0;
      finish(h);
    }
    if (h->in_eof && !h->in_held && h->tc && !h->in_eof_sent && m && !h->want_sftp) {
      static const uint8_t none = 0;
      if (tt_mux_send(m, h->tc, &none, 0, TT_FF_EOF) == 0) {
        h->in_eof_sent = true;
        flush(h);
      }
    }
  }
  while (h->head) {
    gw_out_t *o = h->head;
    if (o->off < o->len) {
      uint32_t win = ssh_channel_window_size(h->sc);
      if (!win) break;
      size_t n = o->len - o->off;
      if (n > win) n = win;
      int w = o->err ? ssh_channel_write_stderr(h->sc, o->data + o->off, (uint32_t)n)
                     : ssh_channel_write(h->sc, o->data + o->off, (uint32_t)n);
      if (w < 0) { /* the client's side is closed: nothing more can reach it */
        detach_tether(h, "the ssh client went away");
        h->st = CH_DONE;
        break;
      }
      if (w == 0) break;
      o->off += (size_t)w;
      if (o->off < o->len) break;
    }
    h->head = o->next;
    if (!h->head) h->tail = NULL;
    h->queued -= o->len;
    if (o->credit && h->tc && m) {
      tt_mux_consumed(m, h->tc, o->credit);
      acked = true;
    }
    free(o);
  }
  if (acked) flush(h);
  if (h->st == CH_ENDING && !h->head) {
    detach_tether(h, "done");
    send_exit(h);
    ssh_channel_send_eof(h->sc);
    ssh_channel_close(h->sc);
    h->st = CH_DONE;
  }
}

/* -- Tether channel callbacks ---------------------------------------------------------------- */

static void t_accept(tt_mux_t *m, tt_chan_t *ch, const Tether__ChannelAccept *msg) {
  (void)m;
  (void)msg;
  gw_chan_t *h = ch->data;
  if (!h) return;
  if (h->want_sftp) {
    int rc = sftp_new(h, h->c->bl.link, ch, &h->sftp);
    if (rc) {
      say(h, tt_strerror(rc));
      finish(h);
      gw_chan_pump(h);
      gw_conn_kick(h->c);
      return;
    }
  }
  h->st = CH_RUN;
  send_pending(h);
  gw_chan_pump(h);
  gw_conn_kick(h->c);
}

static void t_ctrl(gw_chan_t *h, const uint8_t *p, size_t n) {
  tt_msg_t msg;
  tt_mux_t *m = mux_of(h);
  if (tt_msg_unpack_ctrl(&msg, p, n)) {
    say(h, "the device sent a malformed control message");
    finish(h);
    return;
  }
  const Tether__ChannelControl *cc = (const Tether__ChannelControl *)msg.m;
  int rc = 0;
  switch (cc->body_case) {
  case TETHER__CHANNEL_CONTROL__BODY_EXIT:
    if (cc->exit) {
      h->have_exit = true;
      h->exit_code = cc->exit->code;
      h->exit_signal = cc->exit->signal & 0x7f;
    }
    if (m) tt_mux_consumed(m, h->tc, n);
    break;
  case TETHER__CHANNEL_CONTROL__BODY_STDERR:
    rc = queue(h, true, cc->stderr.data, cc->stderr.len, n);
    break;
  default: /* resize and signal go the other way */
    if (m) tt_mux_consumed(m, h->tc, n);
    break;
  }
  tt_msg_free(&msg);
  if (rc) {
    say(h, tt_strerror(rc));
    finish(h);
  }
}

static void t_data(tt_mux_t *m, tt_chan_t *ch, const uint8_t *p, size_t n, uint8_t flags) {
  (void)m;
  gw_chan_t *h = ch->data;
  if (!h) return;
  if (h->sftp) { /* the transfer engine's: it credits what it used */
    tt_xfer_on_data(sftp_xfer(h->sftp), p, n, flags);
    gw_chan_pump(h);
    gw_conn_kick(h->c);
    return;
  }
  if (h->st != CH_RUN) return;
  if (flags & TT_FF_ZSTD) {
    say(h, "the device sent compressed data that was not asked for");
    finish(h);
  } else if (flags & TT_FF_CTRL) {
    t_ctrl(h, p, n);
  } else if (queue(h, false, p, n, n)) {
    say(h, "the device sent more than its window");
    finish(h);
  }
  if (h->st == CH_RUN && (flags & TT_FF_EOF)) {
    if (!h->have_exit) say(h, "the device ended the channel without an exit status");
    finish(h);
  }
  gw_chan_pump(h);
  gw_conn_kick(h->c);
}

static void t_credit(tt_mux_t *m, tt_chan_t *ch, uint32_t n) {
  (void)m;
  (void)n;
  gw_chan_t *h = ch->data;
  if (!h) return;
  if (h->sftp) tt_xfer_on_credit(sftp_xfer(h->sftp));
  send_pending(h);
  gw_chan_pump(h);
  gw_conn_kick(h->c);
}

static void t_close(tt_mux_t *m, tt_chan_t *ch, int code, const char *msg) {
  (void)m;
  gw_chan_t *h = ch->data;
  if (!h) return;
  ch->data = NULL;
  h->tc = NULL;
  if (h->sftp) tt_xfer_on_close(sftp_xfer(h->sftp), code, msg); /* its on_fail says why */
  if (h->st == CH_OPENING || h->st == CH_RUN) {
    bool link_lost = code == TT_ECLOSED && (!msg || !*msg || strcmp(msg, "connection closed") == 0);
    if (!link_lost || !h->have_exit) {
      /* A link the broker ended says why in its Error frame (a revocation): that, first. */
      const char *bl_why = h->c->bl.why[0] ? h->c->bl.why : "the connection to the broker was lost";
      if (!h->have_exit) say(h, link_lost ? bl_why : msg && *msg ? msg : tt_strerror(code));
    }
    finish(h);
  }
  gw_chan_pump(h);
  gw_conn_kick(h->c);
}

const tt_mux_cbs_t gw_chan_mux_cbs = {
    .on_accept = t_accept,
    .on_data = t_data,
    .on_credit = t_credit,
    .on_close = t_close,
};

/* -- libssh channel callbacks ---------------------------------------------------------------- */

static int s_data(ssh_session s, ssh_channel sc, void *data, uint32_t len, int is_stderr, void *ud) {
  gw_chan_t *h = ud;
  (void)s;
  (void)sc;
  if (is_stderr) return (int)len; /* a client has no stderr to give: dropped */
  /* libssh keeps what a client sends past the window it was given: a client that ignores
   * its window is ended before it fills our memory. */
  if (len > SSHD_HELD_MAX) {
    TT_WARN(SSHD_MOD, "client ignored its window", "address=%s person=%s held=%u", h->c->addr, h->c->person, len);
    gw_conn_end(h->c, "the client sent past its window");
    return (int)len;
  }
  tt_mux_t *m = mux_of(h);
  if (h->st == CH_DONE || h->st == CH_ENDING) return (int)len; /* no one to give it to */
  if (h->sftp && h->st == CH_RUN) {
    size_t took = sftp_input(h->sftp, data, len);
    h->in_held = took < len;
    return (int)took;
  }
  if (h->st != CH_RUN || !h->tc || !m || h->in_eof_sent) {
    h->in_held = len > 0;
    return 0;
  }
  uint32_t room = tt_mux_sendable(h->tc);
  uint32_t n = len < room ? len : room;
  if (n && tt_mux_send(m, h->tc, data, n, 0)) n = 0;
  if (n) flush(h);
  h->in_held = n < len;
  return (int)n;
}

static void s_eof(ssh_session s, ssh_channel sc, void *ud) {
  (void)s;
  (void)sc;
  gw_chan_t *h = ud;
  h->in_eof = true; /* sftp: the channel ends once what it asked is answered (gw_chan_pump) */
}

static void s_close(ssh_session s, ssh_channel sc, void *ud) {
  (void)s;
  (void)sc;
  gw_chan_t *h = ud;
  detach_tether(h, "the ssh client closed the session");
  if (h->st != CH_DONE) {
    ssh_channel_close(h->sc);
    h->st = CH_DONE;
  }
}

static void s_signal(ssh_session s, ssh_channel sc, const char *sig, void *ud) {
  (void)s;
  (void)sc;
  gw_chan_t *h = ud;
  for (uint32_t i = 1; i < NSIGS; i++)
    if (sig_names[i] && sig && strcmp(sig, sig_names[i]) == 0) {
      h->pending_signal = i;
      send_pending(h);
      return;
    }
  TT_INFO(SSHD_MOD, "signal not passed on", "person=%s signal=%.16s", h->c->person, sig ? sig : "");
}

static uint32_t dim(int v, uint32_t def) {
  if (v <= 0) return def;
  return (uint32_t)v > TT_TERM_DIM_MAX ? TT_TERM_DIM_MAX : (uint32_t)v;
}

static int s_pty(ssh_session s, ssh_channel sc, const char *term, int w, int hgt, int pw, int ph, void *ud) {
  (void)s;
  (void)sc;
  (void)pw;
  (void)ph;
  gw_chan_t *h = ud;
  if (h->st != CH_NEW || h->pty) return -1;
  h->pty = true;
  if (term && *term && strlen(term) <= TT_TERM_NAME_MAX && tt_text_valid(tt_text(term), TT_TERM_NAME_MAX))
    snprintf(h->term, sizeof(h->term), "%s", term);
  else snprintf(h->term, sizeof(h->term), "xterm-256color");
  h->cols = dim(w, COLS_DEFAULT);
  h->rows = dim(hgt, ROWS_DEFAULT);
  return 0;
}

static int s_winch(ssh_session s, ssh_channel sc, int w, int hgt, int pw, int ph, void *ud) {
  (void)s;
  (void)sc;
  (void)pw;
  (void)ph;
  gw_chan_t *h = ud;
  h->cols = dim(w, COLS_DEFAULT);
  h->rows = dim(hgt, ROWS_DEFAULT);
  h->pending_resize = true;
  send_pending(h);
  return 0;
}

static void start(gw_chan_t *h) {
  h->st = CH_WAIT;
  if (h->c->refused[0]) {
    say(h, h->c->refused);
    h->c->refused[0] = '\0';
  }
  uv_timer_start(&h->note, note_cb, WAIT_NOTE_MS, 0);
  gw_chan_go(h);
}

static int s_shell(ssh_session s, ssh_channel sc, void *ud) {
  (void)s;
  (void)sc;
  gw_chan_t *h = ud;
  if (h->st != CH_NEW) return -1;
  start(h);
  return 0;
}

static int s_exec(ssh_session s, ssh_channel sc, const char *command, void *ud) {
  (void)s;
  (void)sc;
  gw_chan_t *h = ud;
  if (h->st != CH_NEW || !command) return -1;
  size_t n = strlen(command);
  if (n == 0 || n > TT_EXEC_COMMAND_MAX) {
    TT_INFO(SSHD_MOD, "exec refused", "person=%s why=\"command of %zu bytes\"", h->c->person, n);
    return -1;
  }
  if (!(h->command = strdup(command))) return -1;
  h->exec = true;
  start(h);
  return 0;
}

static int s_subsystem(ssh_session s, ssh_channel sc, const char *sub, void *ud) {
  (void)s;
  (void)sc;
  gw_chan_t *h = ud;
  if (h->st == CH_NEW && sub && strcmp(sub, "sftp") == 0) {
    h->want_sftp = true;
    start(h);
    return 0;
  }
  TT_INFO(SSHD_MOD, "subsystem refused", "person=%s subsystem=%.32s", h->c->person, sub ? sub : "");
  return -1;
}

static int s_env(ssh_session s, ssh_channel sc, const char *name, const char *value, void *ud) {
  (void)s;
  (void)sc;
  (void)name;
  (void)value;
  (void)ud;
  return -1; /* the session user's environment is the device's to set */
}

ssh_channel gw_chan_new(gw_conn_t *c) {
  if (c->nchans >= SSHD_CHANNELS_PER_CONN) {
    TT_INFO(SSHD_MOD, "channel refused", "person=%s why=\"%u sessions on one connection\"", c->person,
            SSHD_CHANNELS_PER_CONN);
    return NULL;
  }
  gw_chan_t *h = calloc(1, sizeof(*h));
  if (!h) return NULL;
  h->c = c;
  h->sc = ssh_channel_new(c->ssh);
  if (!h->sc) {
    free(h);
    return NULL;
  }
  h->cols = COLS_DEFAULT;
  h->rows = ROWS_DEFAULT;
  ssh_callbacks_init(&h->cb);
  h->cb.userdata = h;
  h->cb.channel_data_function = s_data;
  h->cb.channel_eof_function = s_eof;
  h->cb.channel_close_function = s_close;
  h->cb.channel_signal_function = s_signal;
  h->cb.channel_pty_request_function = s_pty;
  h->cb.channel_pty_window_change_function = s_winch;
  h->cb.channel_shell_request_function = s_shell;
  h->cb.channel_exec_request_function = s_exec;
  h->cb.channel_subsystem_request_function = s_subsystem;
  h->cb.channel_env_request_function = s_env;
  ssh_set_channel_callbacks(h->sc, &h->cb);
  uv_timer_init(c->d->loop, &h->note);
  h->note.data = h;
  h->next = c->chans;
  c->chans = h;
  c->nchans++;
  return h->sc;
}

static void chan_closed(uv_handle_t *t) { free(t->data); }

void gw_chan_free(gw_chan_t *h, bool free_ssh) {
  if (h->sftp) {
    if (h->tc) h->tc->data = NULL;
    sftp_free(h->sftp); /* closes the files channel */
    h->sftp = NULL;
    h->tc = NULL;
  }
  detach_tether(h, "the ssh connection ended");
  /* libssh may still hear of the channel (the client's close): never through us again. */
  ssh_remove_channel_callbacks(h->sc, &h->cb);
  if (free_ssh) ssh_channel_free(h->sc);
  blink_forget(&h->c->bl, h);
  while (h->head) {
    gw_out_t *o = h->head;
    h->head = o->next;
    free(o);
  }
  free(h->command);
  h->c->nchans--;
  uv_close((uv_handle_t *)&h->note, chan_closed);
}
