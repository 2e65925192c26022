/* Channel commands. speedtest DEVICE: pull --bytes of incompressible data from the device
 * through the broker and report MB/s. ping DEVICE: time --count echo round trips. diag
 * DEVICE: the device's diagnostics report (inv/report.c shows it). All are diagnostics: with --ticket T they run in a session with diag access (asked for like a
 * shell's, or a live one reused); without, only an admin's are let through. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "console.h"
#include "inv/report.h"
#include "tt/log.h"
#include "tt/msg.h"

#define PING_PAYLOAD 64u

typedef struct {
  uint64_t ticket;   /* --ticket, 0 = none */
  bool note_on;
  uv_timer_t note;   /* on a terminal: says that the person at the device is being asked */
  uint64_t t0_ns, t_first_ns;
  uint64_t received;
  uint64_t expected;
  uint64_t sent_ns;
  uint64_t n, *rtt_ns;
  size_t echo_got;
  tt_buf_t report;   /* diag: the device's report as it comes */
  uint64_t kept;     /* diag --attach: the D-n the broker kept it as */
} chan_state_t;

static chan_state_t g_cs;

static int open_channel(console_t *c, Tether__ChannelKind kind, Tether__Priority prio, uint64_t bytes,
                        uint64_t session) {
  Tether__ChannelOpen o = TETHER__CHANNEL_OPEN__INIT;
  o.attach = kind == TETHER__CHANNEL_KIND__CHANNEL_DIAG && (c->args.switches & CONSOLE_SW_ATTACH);
  o.kind = kind;
  o.device = tt_text(c->arg[0]);
  o.priority = prio;
  o.bytes = bytes;
  o.session = session;
  tt_chan_t *ch;
  uint32_t window = prio == TETHER__PRIORITY__PRIORITY_BULK ? TT_WINDOW_BULK : TT_WINDOW_DEFAULT;
  int rc = tt_mux_open(&c->link->mux, &o, window, true, &ch);
  if (rc) return rc;
  ch->data = c;
  g_cs.t0_ns = uv_hrtime();
  tt_link_flush(c->link);
  return 0;
}

static int speedtest_open(console_t *c, uint64_t session) {
  g_cs.expected = (uint64_t)c->cfg.bytes;
  return open_channel(c, TETHER__CHANNEL_KIND__CHANNEL_THROUGHPUT, TETHER__PRIORITY__PRIORITY_BULK,
                      g_cs.expected, session);
}

static void ping_send(console_t *c, tt_chan_t *ch) {
  uint8_t buf[PING_PAYLOAD];
  memset(buf, 'p', sizeof(buf));
  g_cs.sent_ns = uv_hrtime();
  g_cs.echo_got = 0;
  if (tt_mux_send(&c->link->mux, ch, buf, sizeof(buf), 0)) {
    console_fail(c, "echo channel has no credit");
    return;
  }
  tt_link_flush(c->link);
}

static int ping_open(console_t *c, uint64_t session) {
  g_cs.rtt_ns = calloc((size_t)c->cfg.count, sizeof(uint64_t));
  if (!g_cs.rtt_ns) return TT_ENOMEM;
  return open_channel(c, TETHER__CHANNEL_KIND__CHANNEL_ECHO, TETHER__PRIORITY__PRIORITY_INTERACTIVE, 0, session);
}

static int report_open(console_t *c, uint64_t session) {
  tt_buf_init(&g_cs.report, TT_DIAG_REPORT_MAX);
  return open_channel(c, TETHER__CHANNEL_KIND__CHANNEL_DIAG, TETHER__PRIORITY__PRIORITY_BULK, 0, session);
}

static int diag_open(console_t *c, uint64_t session) {
  if (c->cmd == &console_cmd_diag) return report_open(c, session);
  return c->cmd == &console_cmd_ping ? ping_open(c, session) : speedtest_open(c, session);
}

static int diag_check(console_t *c) {
  if (!c->arg[0][0] || !tt_text_valid(tt_text(c->arg[0]), TT_NAME_MAX))
    return console_usage_error("'%s' is not a device id", c->arg[0]);
  if (c->cfg.ticket[0] && console_parse_id(c->cfg.ticket, 'T', false, &g_cs.ticket))
    return console_usage_error("--ticket: '%s' is not a ticket (want T-3 or 3)", c->cfg.ticket);
  if ((c->args.switches & CONSOLE_SW_ATTACH) && !g_cs.ticket)
    return console_usage_error("--attach keeps the report on a ticket: give --ticket T");
  return 0;
}

static void note_stop(void) {
  if (!g_cs.note_on) return;
  g_cs.note_on = false;
  uv_close((uv_handle_t *)&g_cs.note, NULL);
}

static void note_cb(uv_timer_t *t) {
  console_t *c = t->data;
  if (c->done || !c->pending) return;
  console_waiting_line(c, c->arg[0], "diag", g_cs.ticket, "\n");
}

/* Under a ticket: ask for a session with diag access first (a live one is reused). */
static int diag_start(console_t *c) {
  if (!g_cs.ticket) return diag_open(c, 0);
  int rc = console_session_request(c, c->arg[0], g_cs.ticket, TETHER__ACCESS__ACCESS_DIAG, (uint64_t)c->cfg.for_ms);
  /* A reused grant answers at once; the employee may take a minute: after a second, say so
   * (on a terminal only, so scripts see nothing extra). */
  if (!rc && isatty(STDERR_FILENO) && uv_timer_init(c->loop, &g_cs.note) == 0) {
    g_cs.note_on = true;
    g_cs.note.data = c;
    uv_timer_start(&g_cs.note, note_cb, 1000, 0);
    uv_unref((uv_handle_t *)&g_cs.note); /* never what keeps the console running */
  }
  return rc;
}

static int diag_response(console_t *c, const Tether__Response *r) {
  note_stop();
  const Tether__Session *ses = r->session;
  if (!ses || !ses->id) return TT_EPROTO;
  if (!(ses->access & TETHER__ACCESS__ACCESS_DIAG)) {
    console_fail(c, "S-%" PRIu64 " does not allow diag access", ses->id);
    return 0;
  }
  int rc = diag_open(c, ses->id);
  if (!rc) console_arm_timeout(c); /* until the device accepts */
  return rc;
}

static void on_accept(tt_mux_t *m, tt_chan_t *ch, const Tether__ChannelAccept *msg) {
  console_t *c = ch->data;
  uv_timer_stop(&c->timeout); /* the device answered; transfers may take as long as they take */
  if (c->cmd == &console_cmd_ping) ping_send(c, ch);
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

static void ping_report(console_t *c) {
  uint64_t n = g_cs.n;
  qsort(g_cs.rtt_ns, (size_t)n, sizeof(uint64_t), cmp_u64);
  double p50 = (double)g_cs.rtt_ns[n / 2] / 1e3;
  double p99 = (double)g_cs.rtt_ns[(n * 99) / 100 < n ? (n * 99) / 100 : n - 1] / 1e3;
  double mx = (double)g_cs.rtt_ns[n - 1] / 1e3;
  if (c->json) {
    printf("{\"device\":");
    console_json_str(stdout, c->arg[0]);
    printf(",\"count\":%" PRIu64 ",\"p50_us\":%.1f,\"p99_us\":%.1f,\"max_us\":%.1f}\n", n, p50, p99, mx);
  } else
    printf("%s: %" PRIu64 " round trips of %u bytes: p50 %.1f us, p99 %.1f us, max %.1f us\n",
           c->arg[0], n, PING_PAYLOAD, p50, p99, mx);
}

/* The whole report is in: check it, then show it. */
static void report_done(console_t *c) {
  char err[256];
  json_t *doc = console_report_parse((const char *)tt_buf_head(&g_cs.report), g_cs.report.len, err, sizeof(err));
  tt_buf_free(&g_cs.report);
  if (!doc) {
    console_fail(c, "%s: %s", c->arg[0], err);
    return;
  }
  int rc = 0;
  if (c->json) rc = console_report_json(stdout, doc);
  else console_report_print(stdout, doc);
  json_decref(doc);
  if (g_cs.kept && !c->json) printf("\nkept on T-%" PRIu64 " as D-%" PRIu64 " (tether diag show D-%" PRIu64 ")\n", g_cs.ticket,
                                   g_cs.kept, g_cs.kept);
  else if (g_cs.kept) fprintf(stderr, "tether: kept on T-%" PRIu64 " as D-%" PRIu64 "\n", g_cs.ticket, g_cs.kept);
  fflush(stdout);
  if (rc) console_fail(c, "cannot write the report: %s", tt_strerror(rc));
  else console_finish(c, 0);
}

static void report_data(console_t *c, tt_mux_t *m, tt_chan_t *ch, const uint8_t *p, size_t n, uint8_t flags) {
  if (flags & TT_FF_CTRL) { /* the broker: where it kept the report (--attach) */
    tt_msg_t msg;
    if (tt_msg_unpack_ctrl(&msg, p, n) == 0) {
      const Tether__ChannelControl *cc = (const Tether__ChannelControl *)msg.m;
      if (cc->body_case == TETHER__CHANNEL_CONTROL__BODY_ATTACHED) g_cs.kept = cc->attached;
      tt_msg_free(&msg);
    }
    n = 0;
    p = NULL;
  }
  if (n && tt_buf_append(&g_cs.report, p, n)) {
    tt_mux_close(m, ch, TT_ETOOBIG, "report too large");
    ch->data = NULL;
    tt_buf_free(&g_cs.report);
    console_fail(c, "%s: the device's report is larger than %u bytes: refused", c->arg[0], TT_DIAG_REPORT_MAX);
    return;
  }
  if (!(flags & TT_FF_EOF)) {
    tt_link_flush(c->link);
    return;
  }
  tt_mux_close(m, ch, 0, "done");
  ch->data = NULL;
  report_done(c);
}

static void on_data(tt_mux_t *m, tt_chan_t *ch, const uint8_t *p, size_t n, uint8_t flags) {
  console_t *c = ch->data;
  if (!c) return;
  tt_mux_consumed(m, ch, n);
  if (c->cmd == &console_cmd_diag) {
    report_data(c, m, ch, p, n, flags);
    return;
  }
  if (c->cmd == &console_cmd_speedtest) {
    if (g_cs.received == 0) g_cs.t_first_ns = uv_hrtime();
    g_cs.received += n;
    if (!(flags & TT_FF_EOF)) {
      tt_link_flush(c->link);
      return;
    }
    double secs = (double)(uv_hrtime() - g_cs.t0_ns) / 1e9;
    double mbps = secs > 0 ? (double)g_cs.received / 1e6 / secs : 0;
    tt_mux_close(m, ch, 0, "done");
    ch->data = NULL;
    if (g_cs.received != g_cs.expected) {
      console_fail(c, "speedtest: got %" PRIu64 " bytes, expected %" PRIu64, g_cs.received, g_cs.expected);
      return;
    }
    if (c->json) {
      printf("{\"device\":");
      console_json_str(stdout, c->arg[0]);
      printf(",\"bytes\":%" PRIu64 ",\"seconds\":%.3f,\"mb_per_s\":%.1f}\n", g_cs.received, secs, mbps);
    } else
      printf("%s: %" PRIu64 " bytes in %.3f s = %.1f MB/s\n", c->arg[0], g_cs.received, secs, mbps);
    fflush(stdout);
    console_finish(c, 0);
    return;
  }
  /* ping */
  g_cs.echo_got += n;
  if (g_cs.echo_got < PING_PAYLOAD) return;
  g_cs.rtt_ns[g_cs.n++] = uv_hrtime() - g_cs.sent_ns;
  if (g_cs.n < (uint64_t)c->cfg.count) {
    ping_send(c, ch);
    return;
  }
  tt_mux_close(m, ch, 0, "done");
  ch->data = NULL;
  ping_report(c);
  free(g_cs.rtt_ns);
  g_cs.rtt_ns = NULL;
  fflush(stdout);
  console_finish(c, 0);
}

static void on_close(tt_mux_t *m, tt_chan_t *ch, int code, const char *msg) {
  console_t *c = ch->data;
  note_stop();
  if (!c) return;
  free(g_cs.rtt_ns);
  g_cs.rtt_ns = NULL;
  tt_buf_free(&g_cs.report);
  console_fail(c, "%s: %s", c->arg[0], msg && *msg ? msg : tt_strerror(code));
}

const tt_mux_cbs_t console_mux_cbs = {
    .on_accept = on_accept,
    .on_data = on_data,
    .on_close = on_close,
};

const console_cmd_t console_cmd_speedtest = {
    .name = "speedtest",
    .args = "DEVICE --ticket T [--bytes N] [--for 30m]",
    .help = "pull N bytes from the device through the broker, report MB/s (asks for diag access)",
    .min_pos = 1,
    .device_arg = true,
    .max_pos = 1,
    .switches = CONSOLE_SW_JSON,
    .check = diag_check,
    .start = diag_start,
    .on_response = diag_response,
    .denied_plain = true,
};

const console_cmd_t console_cmd_ping = {
    .name = "ping",
    .args = "DEVICE --ticket T [--count N] [--for 30m]",
    .help = "time echo round trips to the device's agent (asks for diag access)",
    .min_pos = 1,
    .device_arg = true,
    .max_pos = 1,
    .switches = CONSOLE_SW_JSON,
    .check = diag_check,
    .start = diag_start,
    .on_response = diag_response,
    .denied_plain = true,
};

const console_cmd_t console_cmd_diag = {
    .name = "diag",
    .args = "DEVICE --ticket T [--attach] [--json] [--for 30m]",
    .help = "the device's diagnostics: machine, OS, memory, disks, network, packages, services, users "
            "(asks for diag access); --attach keeps it on the ticket",
    .min_pos = 1,
    .device_arg = true,
    .max_pos = 1,
    .switches = CONSOLE_SW_JSON | CONSOLE_SW_ATTACH,
    .check = diag_check,
    .start = diag_start,
    .on_response = diag_response,
    .denied_plain = true,
};
