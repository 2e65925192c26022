/* tether-keyrtt: keystroke echo round trips through a remote shell, the way a technician
 * feels them: one byte typed, the time until the pty's echo of it is back. A test tool.
 *
 *   tether-keyrtt tether --broker H:P --ca F --cert F --key F --device D [options]
 *       a technician's link: ticket_new (or --ticket), session_open with shell and diag
 *       access (the bench's agent runs with consent.policy = unattended, so nobody is
 *       asked), CHANNEL_SHELL under the session; bulk: CHANNEL_THROUGHPUT of --bulk bytes
 *       (at most TT_THROUGHPUT_BYTES_MAX) under the same session, on the SAME link meanwhile.
 *   tether-keyrtt ssh --ssh-config F --ssh-host NAME [options]
 *       `ssh -tt` with pipes as the ControlMaster; bulk: a second ssh over the same
 *       connection pulls --bulk bytes (`head -c N /dev/zero`) to /dev/null.
 *
 * Both: once the shell is up, `echo KRTT''READY; exec cat >/dev/null` is typed, so from
 * then on each typed byte only gets the pty's echo. Then --count keystrokes, one at a time
 * (letters, a carriage return every TYPE_LINE_LEN so canonical mode never fills its line
 * buffer), idle, then (with --bulk) as many again while bulk transfers run back to back.
 * --echo-channel (tether): the same over a CHANNEL_ECHO instead (a session with diag access
 * only, no pty: the link's share of the round trip).
 * --interval-us N (tether): type on a clock instead, one keystroke every N us whether or not
 * the echoes are back (a typist does not wait for the screen), so that a stall of the path
 * delays every keystroke typed during it, not just one; each round trip runs from the
 * keystroke's own send. --ready-file F: created when the typing starts (for a script that
 * starts a disturbance then). --open-only (tether): open the ticket, session and shell, report
 * how long that took and end.
 * Prints one line per phase: `keyrtt mode=.. phase=idle|bulk count=.. p50_us=.. ...`, and in
 * tether mode `keyrtt mode=tether phase=open connect_ms=.. ticket_ms=.. session_ms=.. shell_ms=..
 * total_ms=..` once the shell is accepted: TCP connect to Welcome, then each answer, and the
 * whole from the connect (ticket_ms=0 with --ticket). */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "tt/addr.h"
#include "tt/cert.h"
#include "tt/link.h"
#include "tt/msg.h"

#define KR_COUNT_DEFAULT 10000u
#define KR_COUNT_MAX 10000000u
#define KR_INTERVAL_MAX_US 1000000u /* --interval-us: slower than a keystroke a second says nothing */
#define KR_TICK_MS 1u              /* --interval-us: the clock that sends what is due */
#define KR_TIMEOUT_DEFAULT_S 300u  /* the whole run, setup included */
#define KR_SETTLE_MS 300u          /* quiet output after the marker before typing starts */
#define KR_BULK_HEADSTART_MS 300u  /* ssh: let the bulk pipe fill before typing */
#define KR_MARKER "KRTTREADY"
#define KR_COMMAND "echo KRTT''READY; exec cat >/dev/null\r" /* typed; its echo never holds the marker */
#define KR_TAIL 16u                /* bytes kept across reads to find the marker */
#define TYPE_LINE_LEN 64u          /* a CR after this many letters */
#define KR_TERM "xterm"
#define KR_SESSION_MS (15u * 60u * 1000u)

typedef enum { PH_SETUP = 0, PH_SETTLE, PH_IDLE, PH_BULK_WAIT, PH_BULK, PH_DRAIN, PH_DONE } phase_t;

/* ---- what both modes share: the keystrokes and their statistics ---------------------- */

typedef struct {
  uint64_t *rtt_ns;
  uint32_t n;
} samples_t;

typedef struct {
  uint32_t count;
  uint64_t bulk_bytes;     /* per transfer, 0 = no bulk phase */
  uint64_t gap_us;         /* pause between an echo and the next keystroke */
  uint64_t interval_ns;    /* typing on a clock: a keystroke every interval_ns, 0 = after each echo */
  const char *ready_file;  /* created when the typing starts */
  bool open_only;          /* tether: open the shell, report the time, end */
  uint32_t bulk_window;    /* the receive window we grant the bulk channel */
  bool raw_echo;           /* CHANNEL_ECHO: every byte comes back as sent, no pty */
  uint32_t timeout_s;
  const char *mode;
  phase_t phase;
  samples_t idle, bulk;
  uint32_t typed;          /* keystrokes of the current phase sent */
  uint32_t echoed;         /* keystrokes of the current phase whose echo is whole */
  char expect[2];          /* echo expected for keystroke number `echoed`, the oldest in flight */
  uint8_t expect_len, expect_got;
  uint64_t phase_t0_ns;    /* typing on a clock: when keystroke 0 of the phase was due */
  char tail[KR_TAIL + 1];  /* marker search across reads */
  /* bulk transfers: back to back until the typing is done, then the last one finishes */
  uint64_t bulk_t0_ns, bulk_last_end_ns;
  uint32_t bulk_done;      /* whole transfers finished */
  bool bulk_running;
} kr_t;

static kr_t g;

static void die(const char *fmt, ...) TT_PRINTF(1, 2);

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

/* The keystroke number i of a phase: letters, and CR ending a line now and then. Its echo:
 * the letter, or CR LF (ICRNL turns CR into LF for the reader, ONLCR echoes CR LF). */
static uint8_t key_for(uint32_t i, char *echo, uint8_t *echo_len) {
  if (i % TYPE_LINE_LEN == TYPE_LINE_LEN - 1) {
    echo[0] = '\r';
    echo[1] = '\n';
    *echo_len = g.raw_echo ? 1 : 2;
    return '\r';
  }
  echo[0] = (char)('a' + i % 26);
  *echo_len = 1;
  return (uint8_t)echo[0];
}

static samples_t *cur_samples(void) { return g.phase == PH_BULK ? &g.bulk : &g.idle; }

/* The echo expected next: that of the oldest keystroke still in flight (none: length 0). */
static void expect_next(void) {
  g.expect_got = 0;
  g.expect_len = 0;
  if (g.echoed < g.typed) (void)key_for(g.echoed, g.expect, &g.expect_len);
}

/* Prepare the next keystroke: returns the byte and notes the time it is sent (kept where its
 * round trip will go). Echoes come back in typing order, so one counter finds each. */
static uint8_t key_next(void) {
  char echo[2];
  uint8_t len;
  uint8_t k = key_for(g.typed, echo, &len);
  cur_samples()->rtt_ns[g.typed] = uv_hrtime();
  g.typed++;
  if (g.echoed == g.typed - 1) expect_next();
  return k;
}

/* Echo bytes arrived while typing. Returns how many keystrokes' echoes became whole (their
 * round trips recorded). Anything else is a failure: with cat reading, nothing but the echo
 * should ever come back. */
static uint32_t echo_feed(const uint8_t *p, size_t n) {
  uint32_t whole = 0;
  samples_t *s = cur_samples();
  for (size_t used = 0; used < n; used++) {
    if (g.expect_got >= g.expect_len)
      die("%zu bytes of output beyond the echo after %u keystrokes", n - used, g.typed);
    if (p[used] != (uint8_t)g.expect[g.expect_got])
      die("unexpected output byte 0x%02x after %u keystrokes (expected 0x%02x)", p[used], g.typed,
          (uint8_t)g.expect[g.expect_got]);
    if (++g.expect_got < g.expect_len) continue;
    s->rtt_ns[g.echoed] = uv_hrtime() - s->rtt_ns[g.echoed];
    s->n = ++g.echoed;
    whole++;
    expect_next();
  }
  return whole;
}

/* True once the marker has been seen in the output so far. */
static bool marker_feed(const uint8_t *p, size_t n) {
  char buf[KR_TAIL + 4096 + 1];
  while (n > 0) {
    size_t take = n > 4096 ? 4096 : n;
    size_t tl = strlen(g.tail);
    memcpy(buf, g.tail, tl);
    for (size_t i = 0; i < take; i++) buf[tl + i] = p[i] ? (char)p[i] : ' ';
    buf[tl + take] = '\0';
    if (strstr(buf, KR_MARKER)) return true;
    size_t all = tl + take, keep = all < KR_TAIL ? all : KR_TAIL;
    memcpy(g.tail, buf + all - keep, keep);
    g.tail[keep] = '\0';
    p += take;
    n -= take;
  }
  return false;
}

/* --ready-file: the typing starts now. */
static int ready_mark(void) {
  if (!g.ready_file) return 0;
  FILE *f = fopen(g.ready_file, "w");
  if (!f) return -1;
  return fclose(f) == 0 ? 0 : -1;
}

static double us(uint64_t ns) { return (double)ns / 1e3; }

static void report(const char *phase, samples_t *s, double bulk_mb_s) {
  if (s->n == 0) {
    printf("keyrtt mode=%s phase=%s count=0\n", g.mode, phase);
    return;
  }
  qsort(s->rtt_ns, s->n, sizeof(uint64_t), cmp_u64);
  uint64_t sum = 0;
  for (uint32_t i = 0; i < s->n; i++) sum += s->rtt_ns[i];
  uint32_t i99 = (uint32_t)(((uint64_t)s->n * 99 + 99) / 100);
  printf("keyrtt mode=%s phase=%s count=%u p50_us=%.1f p99_us=%.1f p999_us=%.1f max_us=%.1f mean_us=%.1f",
         g.mode, phase, s->n, us(s->rtt_ns[s->n / 2]), us(s->rtt_ns[i99 ? i99 - 1 : 0]),
         us(s->rtt_ns[(uint32_t)(((uint64_t)s->n * 999) / 1000)]), us(s->rtt_ns[s->n - 1]),
         us(sum / s->n));
  if (bulk_mb_s >= 0) printf(" bulk_mb_s=%.1f bulk_transfers=%u", bulk_mb_s, g.bulk_done);
  printf("\n");
  fflush(stdout);
}

static double bulk_rate(void) {
  if (!g.bulk_done || g.bulk_last_end_ns <= g.bulk_t0_ns) return 0;
  return (double)g.bulk_bytes * g.bulk_done / 1e6 / ((double)(g.bulk_last_end_ns - g.bulk_t0_ns) / 1e9);
}

static void report_all(void) {
  report("idle", &g.idle, -1);
  if (g.bulk_bytes) report("bulk", &g.bulk, bulk_rate());
}

/* ---- mode tether ------------------------------------------------------------------- */

typedef struct {
  const char *broker, *ca, *cert, *key, *device;
  uint64_t ticket;
  uv_loop_t *loop;
  tt_tls_ctx_t *tls;
  tt_link_t *link;
  tt_chan_t *shell, *bulk;
  uv_timer_t timer, deadline, tick;
  uint32_t last_id;
  uint64_t session;
  uint64_t start_ns, welcome_ns, ticket_ns, session_ns; /* when each step of the opening ended */
  bool welcomed, ending, failed;
} tt_side_t;

static tt_side_t T;

static void t_finish(bool failed);

static void t_fail(const char *fmt, ...) TT_PRINTF(1, 2);
static void t_fail(const char *fmt, ...) {
  if (T.ending) return;
  va_list ap;
  va_start(ap, fmt);
  fputs("tether-keyrtt: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  t_finish(true);
}

static int t_request(Tether__Request *r) {
  r->id = ++T.last_id;
  return tt_link_send(T.link, TT_K_REQUEST, &r->base);
}

static int t_ticket_new(void) {
  Tether__Request r = TETHER__REQUEST__INIT;
  Tether__TicketNewRequest tn = TETHER__TICKET_NEW_REQUEST__INIT;
  tn.device = tt_text(T.device);
  tn.summary = tt_text("keystroke echo benchmark (tether-keyrtt)");
  tn.requester = tt_text("tether-keyrtt");
  r.body_case = TETHER__REQUEST__BODY_TICKET_NEW;
  r.ticket_new = &tn;
  return t_request(&r);
}

static int t_session_open(void) {
  Tether__Request r = TETHER__REQUEST__INIT;
  Tether__SessionOpenRequest so = TETHER__SESSION_OPEN_REQUEST__INIT;
  so.device = tt_text(T.device);
  so.ticket = T.ticket;
  /* Echo and throughput are diagnostics: they need diag access, the shell needs shell. */
  so.access = g.raw_echo ? TETHER__ACCESS__ACCESS_DIAG : TETHER__ACCESS__ACCESS_SHELL | TETHER__ACCESS__ACCESS_DIAG;
  so.duration_ms = KR_SESSION_MS;
  r.body_case = TETHER__REQUEST__BODY_SESSION_OPEN;
  r.session_open = &so;
  return t_request(&r);
}

static int t_open(Tether__ChannelKind kind, uint64_t bytes, tt_chan_t **out) {
  Tether__ChannelOpen o = TETHER__CHANNEL_OPEN__INIT;
  bool bulk = kind == TETHER__CHANNEL_KIND__CHANNEL_THROUGHPUT, shell = kind == TETHER__CHANNEL_KIND__CHANNEL_SHELL;
  o.kind = kind;
  o.device = tt_text(T.device);
  o.priority = bulk ? TETHER__PRIORITY__PRIORITY_BULK : TETHER__PRIORITY__PRIORITY_INTERACTIVE;
  o.bytes = bytes;
  o.session = T.session;
  if (shell) {
    o.cols = 80;
    o.rows = 24;
    o.term = tt_text(KR_TERM);
  }
  int rc = tt_mux_open(&T.link->mux, &o, bulk ? g.bulk_window : TT_WINDOW_DEFAULT, true, out);
  if (rc) return rc;
  (*out)->data = &T;
  tt_link_flush(T.link);
  return 0;
}

static void t_type(void) {
  uint8_t k = key_next();
  if (tt_mux_sendable(T.shell) < 1) {
    t_fail("the shell channel has no credit left");
    return;
  }
  int rc = tt_mux_send(&T.link->mux, T.shell, &k, 1, 0);
  if (rc) {
    t_fail("send: %s", tt_strerror(rc));
    return;
  }
  tt_link_flush(T.link);
}

static void t_gap_cb(uv_timer_t *h) { t_type(); }

/* Typing on a clock: send every keystroke that is due, whether or not the echoes are back. */
static void t_tick_cb(uv_timer_t *h) {
  uint64_t now = uv_hrtime();
  while (!T.ending && g.typed < g.count && g.phase_t0_ns + (uint64_t)g.typed * g.interval_ns <= now) {
    if (tt_mux_sendable(T.shell) < 1) return; /* the window is spent: the rest goes with new credit */
    t_type();
  }
  if (g.typed >= g.count) uv_timer_stop(&T.tick);
}

/* The typing of a phase begins: one keystroke (each next one follows its echo), or the clock. */
static void t_phase_start(void) {
  g.typed = g.echoed = 0;
  expect_next();
  if (g.phase == PH_IDLE && ready_mark() != 0) {
    t_fail("cannot create %s: %s", g.ready_file, strerror(errno));
    return;
  }
  if (!g.interval_ns) {
    t_type();
    return;
  }
  g.phase_t0_ns = uv_hrtime();
  uv_timer_start(&T.tick, t_tick_cb, 0, KR_TICK_MS);
}

static void t_bulk_start(void) {
  if (!g.bulk_t0_ns) g.bulk_t0_ns = uv_hrtime();
  g.bulk_running = true;
  int rc = t_open(TETHER__CHANNEL_KIND__CHANNEL_THROUGHPUT, g.bulk_bytes, &T.bulk);
  if (rc) t_fail("cannot open the bulk channel: %s", tt_strerror(rc));
}

/* A phase's keystrokes are all back: next phase, or the end. */
static void t_phase_done(void) {
  uv_timer_stop(&T.tick);
  if (g.phase == PH_IDLE && g.bulk_bytes) {
    g.phase = PH_BULK_WAIT; /* typing resumes once bulk bytes flow */
    t_bulk_start();
    return;
  }
  if (g.phase == PH_BULK && g.bulk_running) {
    g.phase = PH_DRAIN; /* the transfer in flight ends, for its MB/s */
    return;
  }
  t_finish(false);
}

static void t_on_echo_done(void) {
  if (g.echoed >= g.count) {
    t_phase_done();
    return;
  }
  if (g.interval_ns) return; /* the clock types */
  if (g.gap_us) uv_timer_start(&T.timer, t_gap_cb, (g.gap_us + 999) / 1000, 0);
  else t_type();
}

static void t_settle_cb(uv_timer_t *h) {
  g.phase = PH_IDLE;
  t_phase_start();
}

static void t_shell_output(const uint8_t *p, size_t n) {
  switch (g.phase) {
  case PH_SETUP:
    if (marker_feed(p, n)) {
      g.phase = PH_SETTLE;
      uv_timer_start(&T.timer, t_settle_cb, KR_SETTLE_MS, 0);
    }
    break;
  case PH_SETTLE:
    uv_timer_start(&T.timer, t_settle_cb, KR_SETTLE_MS, 0); /* still printing: wait on */
    break;
  case PH_IDLE:
  case PH_BULK:
    if (echo_feed(p, n)) t_on_echo_done();
    break;
  default:
    die("%zu bytes of output while not typing", n);
  }
}

/* A CTRL frame on the shell: an exit status means the shell is gone. */
static void t_shell_ctrl(const uint8_t *p, size_t n) {
  if (n > TT_DATA_CHUNK_MAX) return;
  Tether__ChannelControl *cc = tether__channel_control__unpack(NULL, n, p);
  if (!cc) return;
  if (cc->body_case == TETHER__CHANNEL_CONTROL__BODY_EXIT)
    t_fail("the remote shell exited (code %d, signal %u)", cc->exit->code, cc->exit->signal);
  tether__channel_control__free_unpacked(cc, NULL);
}

static void t_bulk_data(tt_mux_t *m, tt_chan_t *ch, size_t n, uint8_t flags) {
  if (g.phase == PH_BULK_WAIT && n > 0) {
    g.phase = PH_BULK;
    t_phase_start();
  }
  if (!(flags & TT_FF_EOF)) return;
  g.bulk_done++;
  g.bulk_last_end_ns = uv_hrtime();
  (void)!tt_mux_close(m, ch, 0, "done");
  ch->data = NULL;
  T.bulk = NULL;
  g.bulk_running = false;
  if (g.phase == PH_DRAIN) t_finish(false);
  else if (g.phase == PH_BULK || g.phase == PH_BULK_WAIT) t_bulk_start();
}

static void t_on_data(tt_mux_t *m, tt_chan_t *ch, const uint8_t *p, size_t n, uint8_t flags) {
  tt_mux_consumed(m, ch, n);
  if (ch->data && ch == T.bulk) t_bulk_data(m, ch, n, flags);
  else if (ch->data && ch == T.shell) {
    if (flags & TT_FF_CTRL) t_shell_ctrl(p, n);
    else if (n) t_shell_output(p, n);
    if ((flags & TT_FF_EOF) && !T.ending) t_fail("the remote shell ended its output");
  }
  if (T.link) tt_link_flush(T.link);
}

static double ms_between(uint64_t a_ns, uint64_t b_ns) { return a_ns && b_ns > a_ns ? (double)(b_ns - a_ns) / 1e6 : 0; }

static void t_on_accept(tt_mux_t *m, tt_chan_t *ch, const Tether__ChannelAccept *msg) {
  if (ch != T.shell) return;
  if (g.raw_echo) { /* nothing to set up: type at once */
    g.phase = PH_IDLE;
    t_phase_start();
    return;
  }
  uint64_t now = uv_hrtime();
  printf("keyrtt mode=%s phase=open connect_ms=%.1f ticket_ms=%.1f session_ms=%.1f shell_ms=%.1f total_ms=%.1f\n",
         g.mode, ms_between(T.start_ns, T.welcome_ns), ms_between(T.welcome_ns, T.ticket_ns),
         ms_between(T.ticket_ns ? T.ticket_ns : T.welcome_ns, T.session_ns), ms_between(T.session_ns, now),
         ms_between(T.start_ns, now));
  fflush(stdout);
  if (g.open_only) {
    t_finish(false);
    return;
  }
  static const char cmd[] = KR_COMMAND;
  if (tt_mux_sendable(ch) < sizeof(cmd) - 1 || tt_mux_send(m, ch, cmd, sizeof(cmd) - 1, 0) != 0) {
    t_fail("cannot type the command into the shell");
    return;
  }
  tt_link_flush(T.link);
}

static void t_on_close(tt_mux_t *m, tt_chan_t *ch, int code, const char *msg) {
  if (!ch->data || T.ending) return;
  t_fail("%s channel closed: %s", ch == T.shell ? "shell" : "bulk", msg && *msg ? msg : tt_strerror(code));
}

static void t_on_response(const Tether__Response *r) {
  if (r->error) {
    char msg[TT_TEXT_MAX + 1] = "";
    if (tt_text_copy(msg, sizeof(msg), r->error->message) != 0 || !msg[0])
      snprintf(msg, sizeof(msg), "%s", tt_strerror(tt_err_from_wire(r->error->code)));
    if (T.ending) return; /* the session_end at the end: nothing more to do */
    t_fail("the broker refused request %u: %s", r->id, msg);
    return;
  }
  int rc = 0;
  if (r->body_case == TETHER__RESPONSE__BODY_TICKET && r->ticket) {
    T.ticket = r->ticket->id;
    T.ticket_ns = uv_hrtime();
    fprintf(stderr, "tether-keyrtt: ticket T-%" PRIu64 " on %s\n", T.ticket, T.device);
    rc = t_session_open();
  } else if (r->body_case == TETHER__RESPONSE__BODY_SESSION && r->session) {
    T.session = r->session->id;
    T.session_ns = uv_hrtime();
    fprintf(stderr, "tether-keyrtt: session S-%" PRIu64 "%s\n", T.session,
            r->session->unattended ? " granted unattended" : r->session->reused ? " reused" : " granted");
    rc = t_open(g.raw_echo ? TETHER__CHANNEL_KIND__CHANNEL_ECHO : TETHER__CHANNEL_KIND__CHANNEL_SHELL, 0, &T.shell);
  } else if (r->body_case == TETHER__RESPONSE__BODY_SESSION_END) {
    return;
  } else {
    t_fail("unexpected answer (body %d) to request %u", (int)r->body_case, r->id);
    return;
  }
  if (rc) t_fail("%s", tt_strerror(rc));
}

static void t_on_up(tt_link_t *l) {
  tt_identity_t me;
  X509 *mine = SSL_CTX_get0_certificate(tt_tls_ctx_ssl(T.tls));
  if (!mine || tt_cert_identity(mine, &me)) {
    t_fail("%s carries no Tether identity", T.cert);
    return;
  }
  Tether__Hello h = TETHER__HELLO__INIT;
  h.proto_version = TT_PROTO_VERSION;
  h.role = (Tether__Role)me.role;
  h.software_version = tt_text(TT_VERSION);
  h.hostname = tt_text("tether-keyrtt");
  if (tt_link_send(l, TT_K_HELLO, &h.base)) t_fail("cannot send hello");
}

static int t_on_control(tt_link_t *l, uint8_t kind, const ProtobufCMessage *m) {
  if (kind == TT_K_WELCOME && !T.welcomed) {
    const Tether__Welcome *w = (const Tether__Welcome *)m;
    T.welcomed = true;
    T.welcome_ns = uv_hrtime();
    tt_link_set_authed(l);
    if (w->idle_timeout_ms) tt_tls_set_idle(l->tls, w->idle_timeout_ms);
    int rc = T.ticket ? t_session_open() : t_ticket_new();
    if (rc) t_fail("%s", tt_strerror(rc));
    return 0;
  }
  if (kind == TT_K_RESPONSE && T.welcomed) {
    t_on_response((const Tether__Response *)m);
    return 0;
  }
  if (kind == TT_K_ERROR) {
    const Tether__Error *e = (const Tether__Error *)m;
    char msg[TT_TEXT_MAX + 1] = "";
    (void)!tt_text_copy(msg, sizeof(msg), e->message);
    t_fail("the broker closed the link: %s", msg[0] ? msg : tt_strerror(tt_err_from_wire(e->code)));
    return 0;
  }
  return TT_EKIND;
}

static void t_on_down(tt_link_t *l, int reason) {
  T.link = NULL;
  if (!T.ending) t_fail("lost the broker at %s: %s", T.broker, tt_strerror(reason));
  if (!uv_is_closing((uv_handle_t *)&T.timer)) uv_close((uv_handle_t *)&T.timer, NULL);
  if (!uv_is_closing((uv_handle_t *)&T.tick)) uv_close((uv_handle_t *)&T.tick, NULL);
  if (!uv_is_closing((uv_handle_t *)&T.deadline)) uv_close((uv_handle_t *)&T.deadline, NULL);
}

/* Everything ends here: report what was measured, end the session, close the link. */
static void t_finish(bool failed) {
  if (T.ending) return;
  T.ending = true;
  T.failed = failed;
  uv_timer_stop(&T.timer);
  uv_timer_stop(&T.tick);
  uv_timer_stop(&T.deadline);
  if (!g.open_only) report_all();
  if (!T.link) return;
  if (T.session) {
    Tether__Request r = TETHER__REQUEST__INIT;
    Tether__SessionEndRequest se = TETHER__SESSION_END_REQUEST__INIT;
    se.id = T.session;
    se.reason = tt_text("benchmark done");
    r.body_case = TETHER__REQUEST__BODY_SESSION_END;
    r.session_end = &se;
    (void)!t_request(&r); /* best effort: the session would expire anyway */
  }
  tt_link_close(T.link, 0, NULL);
}

static void t_deadline_cb(uv_timer_t *h) { t_fail("time limit of %u s reached (phase %d)", g.timeout_s, (int)g.phase); }

static tt_link_cbs_t t_cbs = {
    .on_up = t_on_up,
    .on_control = t_on_control,
    .on_down = t_on_down,
    .mux = {.on_accept = t_on_accept, .on_data = t_on_data, .on_close = t_on_close},
};

static int run_tether(void) {
  char err[512], host[256];
  tt_tls_ctx_opts_t to = {.server = false, .ca_file = T.ca, .cert_file = T.cert, .key_file = T.key};
  if (tt_tls_ctx_new(&T.tls, &to, err, sizeof(err))) die("%s", err);
  struct sockaddr_storage sa;
  int rc = tt_addr_resolve(T.broker, &sa, host, sizeof(host));
  if (rc) die("cannot resolve %s: %s", T.broker, tt_strerror(rc));
  T.loop = uv_default_loop();
  uv_timer_init(T.loop, &T.timer);
  uv_timer_init(T.loop, &T.deadline);
  uv_timer_init(T.loop, &T.tick);
  uv_timer_start(&T.deadline, t_deadline_cb, (uint64_t)g.timeout_s * 1000, 0);
  tt_tls_limits_t lim = {
      .handshake_ms = 10000,
      .idle_ms = 30000,
      .high_water = TT_SOCKET_QUEUE_CAP,
      .low_water = TT_SOCKET_QUEUE_CAP / 4,
      .write_cap = TT_SOCKET_WRITE_CAP,
  };
  T.start_ns = uv_hrtime();
  rc = tt_link_connect(&T.link, T.tls, T.loop, (struct sockaddr *)&sa, host, &lim, &t_cbs, &T);
  if (rc) die("cannot connect to %s: %s", T.broker, tt_strerror(rc));
  uv_run(T.loop, UV_RUN_DEFAULT);
  (void)uv_loop_close(T.loop);
  tt_tls_ctx_free(T.tls);
  return T.failed ? 1 : 0;
}

/* ---- mode ssh ---------------------------------------------------------------------- */

typedef struct {
  const char *ssh, *config, *host;
  pid_t master, bulk;
  int to_fd, from_fd; /* the master's stdin and stdout */
  uint64_t bulk_start_ns;
  uint64_t deadline_ns;
} ssh_side_t;

static ssh_side_t S = {.ssh = "ssh", .master = -1, .bulk = -1, .to_fd = -1, .from_fd = -1};

static void ssh_stop(void) {
  if (S.to_fd >= 0) close(S.to_fd);
  S.to_fd = -1;
  pid_t pids[2] = {S.bulk, S.master};
  for (int i = 0; i < 2; i++) {
    if (pids[i] <= 0) continue;
    kill(pids[i], SIGTERM);
    for (int w = 0; w < 200; w++) { /* 2 s, then SIGKILL */
      if (waitpid(pids[i], NULL, WNOHANG) != 0) { pids[i] = -1; break; }
      usleep(10000);
    }
    if (pids[i] > 0) {
      kill(pids[i], SIGKILL);
      (void)waitpid(pids[i], NULL, 0);
    }
  }
  S.bulk = S.master = -1;
}

static pid_t spawn(char *const argv[], int in_fd, int out_fd) {
  pid_t pid = fork();
  if (pid < 0) die("fork: %s", strerror(errno));
  if (pid == 0) {
    if (dup2(in_fd, 0) < 0 || dup2(out_fd, 1) < 0) _exit(127);
    for (int fd = 3; fd < 256; fd++) close(fd);
    execvp(argv[0], argv);
    fprintf(stderr, "tether-keyrtt: exec %s: %s\n", argv[0], strerror(errno));
    _exit(127);
  }
  return pid;
}

static void ssh_start_master(void) {
  int in[2], out[2];
  if (pipe2(in, O_CLOEXEC) || pipe2(out, O_CLOEXEC)) die("pipe: %s", strerror(errno));
  char *argv[] = {(char *)S.ssh, "-F", (char *)S.config, "-tt", "-o", "ControlMaster=yes",
                  (char *)S.host, NULL};
  S.master = spawn(argv, in[0], out[1]);
  close(in[0]);
  close(out[1]);
  S.to_fd = in[1];
  S.from_fd = out[0];
}

static void ssh_start_bulk(void) {
  char cmd[64];
  snprintf(cmd, sizeof(cmd), "head -c %" PRIu64 " /dev/zero", g.bulk_bytes);
  int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (devnull < 0) die("/dev/null: %s", strerror(errno));
  char *argv[] = {(char *)S.ssh, "-F", (char *)S.config, "-T", "-o", "ControlMaster=no",
                  (char *)S.host, cmd, NULL};
  S.bulk = spawn(argv, devnull, devnull);
  close(devnull);
  S.bulk_start_ns = uv_hrtime();
  if (!g.bulk_t0_ns) g.bulk_t0_ns = S.bulk_start_ns;
  g.bulk_running = true;
}

/* The bulk ssh exited: count it if it went well, start the next while typing goes on. */
static void ssh_bulk_reap(void) {
  int st;
  if (S.bulk <= 0 || waitpid(S.bulk, &st, WNOHANG) != S.bulk) return;
  S.bulk = -1;
  g.bulk_running = false;
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) die("the bulk ssh failed (status 0x%x)", st);
  g.bulk_done++;
  g.bulk_last_end_ns = uv_hrtime();
  if (g.phase == PH_BULK || g.phase == PH_BULK_WAIT) ssh_start_bulk();
}

static void ssh_write_all(const void *p, size_t n) {
  const uint8_t *b = p;
  while (n > 0) {
    ssize_t w = write(S.to_fd, b, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) die("write to ssh: %s", strerror(errno));
    b += w;
    n -= (size_t)w;
  }
}

static void ssh_type(void) {
  uint8_t k = key_next();
  ssh_write_all(&k, 1);
}

/* Read what ssh printed, up to timeout_ms; 0 bytes means the wait ended quietly. */
static ssize_t ssh_read(uint8_t *buf, size_t cap, int timeout_ms) {
  struct pollfd pfd = {.fd = S.from_fd, .events = POLLIN};
  for (;;) {
    if (uv_hrtime() > S.deadline_ns) die("time limit of %u s reached (phase %d)", g.timeout_s, (int)g.phase);
    int r = poll(&pfd, 1, timeout_ms);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) die("poll: %s", strerror(errno));
    if (r == 0) return 0;
    ssize_t n = read(S.from_fd, buf, cap);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) die("read from ssh: %s", strerror(errno));
    if (n == 0) die("ssh exited (phase %d)", (int)g.phase);
    return n;
  }
}

static void ssh_wait_ready(void) {
  uint8_t buf[4096];
  ssh_write_all(KR_COMMAND, sizeof(KR_COMMAND) - 1);
  for (;;) {
    ssize_t n = ssh_read(buf, sizeof(buf), 1000);
    if (n > 0 && marker_feed(buf, (size_t)n)) break;
  }
  while (ssh_read(buf, sizeof(buf), KR_SETTLE_MS) > 0) {
  }
}

/* One phase: count keystrokes, each sent when the previous echo is whole. */
static void ssh_type_phase(void) {
  uint8_t buf[4096];
  g.typed = g.echoed = 0;
  expect_next();
  ssh_type();
  for (;;) {
    if (g.bulk_bytes && (g.phase == PH_BULK)) ssh_bulk_reap();
    ssize_t n = ssh_read(buf, sizeof(buf), 100);
    if (n == 0) continue;
    if (!echo_feed(buf, (size_t)n)) continue;
    if (g.typed >= g.count) return;
    if (g.gap_us) usleep((useconds_t)g.gap_us);
    ssh_type();
  }
}

static int run_ssh(void) {
  S.deadline_ns = uv_hrtime() + (uint64_t)g.timeout_s * 1000000000u;
  ssh_start_master();
  ssh_wait_ready();
  g.phase = PH_IDLE;
  if (ready_mark() != 0) die("cannot create %s: %s", g.ready_file, strerror(errno));
  ssh_type_phase();
  if (g.bulk_bytes) {
    g.phase = PH_BULK;
    ssh_start_bulk();
    usleep(KR_BULK_HEADSTART_MS * 1000);
    ssh_type_phase();
    g.phase = PH_DRAIN;
    while (g.bulk_running) { /* the transfer in flight ends, for its MB/s */
      if (uv_hrtime() > S.deadline_ns) die("time limit of %u s reached (bulk drain)", g.timeout_s);
      ssh_bulk_reap();
      usleep(1000);
    }
  }
  g.phase = PH_DONE;
  ssh_stop();
  report_all();
  return 0;
}

/* ---- main -------------------------------------------------------------------------- */

static void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("tether-keyrtt: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  if (g.idle.n) report_all(); /* what was measured before it went wrong */
  ssh_stop();
  exit(1);
}

static void usage(void) {
  fprintf(stderr,
          "usage: tether-keyrtt tether --broker H:P --ca F --cert F --key F --device D [--ticket N | --echo-channel]\n"
          "                           [--bulk-window BYTES (the bulk channel's receive window, 4194304)] [common]\n"
          "                           [--interval-us N (type on a clock: a keystroke every N us)] [--open-only]\n"
          "       tether-keyrtt ssh --ssh-config F --ssh-host NAME [--ssh PROG] [common]\n"
          "common: [--count N (10000)] [--bulk BYTES (0 = idle only)] [--gap-us N (0)] [--timeout S (300)]\n"
          "        [--ready-file F (created when the typing starts)]\n");
  exit(2);
}

static uint64_t num(const char *s, uint64_t lo, uint64_t hi, const char *what) {
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno || end == s || *end || v < lo || v > hi) {
    fprintf(stderr, "tether-keyrtt: --%s must be %" PRIu64 "..%" PRIu64 "\n", what, lo, hi);
    exit(2);
  }
  return v;
}

int main(int argc, char **argv) {
  if (argc < 2) usage();
  g.mode = argv[1];
  bool tether = strcmp(argv[1], "tether") == 0;
  if (!tether && strcmp(g.mode, "ssh") != 0) usage();
  g.count = KR_COUNT_DEFAULT;
  g.timeout_s = KR_TIMEOUT_DEFAULT_S;
  g.bulk_window = TT_WINDOW_BULK;
  static const struct option opts[] = {
      {"broker", 1, 0, 'b'}, {"ca", 1, 0, 'a'},         {"cert", 1, 0, 'c'},      {"key", 1, 0, 'k'},
      {"device", 1, 0, 'd'}, {"ticket", 1, 0, 'T'},     {"ssh", 1, 0, 's'},       {"ssh-config", 1, 0, 'F'},
      {"ssh-host", 1, 0, 'H'}, {"count", 1, 0, 'n'},    {"bulk", 1, 0, 'B'},      {"gap-us", 1, 0, 'g'},
      {"timeout", 1, 0, 't'}, {"echo-channel", 0, 0, 'E'},
      {"bulk-window", 1, 0, 'W'}, {"interval-us", 1, 0, 'I'}, {"ready-file", 1, 0, 'R'},
      {"open-only", 0, 0, 'O'},   {0, 0, 0, 0}};
  int o;
  optind = 2;
  while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    switch (o) {
    case 'b': T.broker = optarg; break;
    case 'a': T.ca = optarg; break;
    case 'c': T.cert = optarg; break;
    case 'k': T.key = optarg; break;
    case 'd': T.device = optarg; break;
    case 'T': T.ticket = num(optarg, 1, INT64_MAX, "ticket"); break;
    case 's': S.ssh = optarg; break;
    case 'F': S.config = optarg; break;
    case 'H': S.host = optarg; break;
    case 'n': g.count = (uint32_t)num(optarg, 1, KR_COUNT_MAX, "count"); break;
    case 'B': g.bulk_bytes = num(optarg, 0, 1ull << 40, "bulk"); break;
    case 'g': g.gap_us = num(optarg, 0, 1000000, "gap-us"); break;
    case 't': g.timeout_s = (uint32_t)num(optarg, 1, 86400, "timeout"); break;
    case 'E': g.raw_echo = true; break;
    case 'W': g.bulk_window = (uint32_t)num(optarg, TT_DATA_CHUNK_MAX, TT_WINDOW_MAX, "bulk-window"); break;
    case 'I': g.interval_ns = num(optarg, 1, KR_INTERVAL_MAX_US, "interval-us") * 1000u; break;
    case 'R': g.ready_file = optarg; break;
    case 'O': g.open_only = true; break;
    default: usage();
    }
  }
  if (optind != argc) usage();
  if (tether ? !(T.broker && T.ca && T.cert && T.key && T.device) : !(S.config && S.host)) usage();
  if (!tether && (g.interval_ns || g.open_only)) {
    fprintf(stderr, "tether-keyrtt: --interval-us and --open-only are for the tether mode\n");
    exit(2);
  }
  if (g.open_only && g.raw_echo) {
    fprintf(stderr, "tether-keyrtt: --open-only opens a shell; --echo-channel has none\n");
    exit(2);
  }
  if (g.interval_ns && g.gap_us) {
    fprintf(stderr, "tether-keyrtt: --interval-us (a clock) and --gap-us (after each echo) exclude each other\n");
    exit(2);
  }
  if (g.raw_echo) g.mode = "tether-echo";
  if (tether && g.bulk_bytes > TT_THROUGHPUT_BYTES_MAX)
    die("--bulk: the broker allows at most %llu bytes per transfer", (unsigned long long)TT_THROUGHPUT_BYTES_MAX);
  g.idle.rtt_ns = calloc(g.count, sizeof(uint64_t));
  g.bulk.rtt_ns = calloc(g.count, sizeof(uint64_t));
  if (!g.idle.rtt_ns || !g.bulk.rtt_ns) die("out of memory");
  signal(SIGPIPE, SIG_IGN);
  int rc = tether ? run_tether() : run_ssh();
  free(g.idle.rtt_ns);
  free(g.bulk.rtt_ns);
  return rc;
}
