/* Channels the agent serves (shell, exec, files and the diagnostics report have files of
 * their own). Throughput: send N incompressible bytes as credit allows (a
 * link test a technician can run). Echo: return every byte (a latency test). Both respect
 * credit end to end: nothing is produced that the console has not made room for. Both are
 * diagnostics: under a session granted here with diag access, or (session 0) an admin's,
 * which only the broker can tell. */
#include <stdlib.h>
#include <string.h>
#include "agent.h"
#include "upgrade/upgrade.h"
#include "tt/log.h"
#include "tt/msg.h"

#define AGENT_BLOCK (64u * 1024u)

typedef struct {
  Tether__ChannelKind kind;
  uint64_t remaining; /* throughput: bytes still to send */
  tt_buf_t pending;   /* echo: bytes received but not yet sent back */
} agent_chan_t;

static uint8_t g_block[AGENT_BLOCK];
static int g_block_ready;

/* Incompressible filler: xorshift output, made once. */
static void fill_block(void) {
  uint64_t x = 0x9e3779b97f4a7c15ull;
  for (size_t i = 0; i < AGENT_BLOCK; i += 8) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    memcpy(g_block + i, &x, 8);
  }
  g_block_ready = 1;
}

static void pump_throughput(tt_mux_t *m, tt_chan_t *ch, agent_chan_t *ac) {
  size_t off = 0;
  while (ac->remaining > 0) {
    uint32_t room = tt_mux_sendable(ch);
    if (room == 0) break;
    size_t n = room < AGENT_BLOCK - off ? room : AGENT_BLOCK - off;
    if (n > ac->remaining) n = (size_t)ac->remaining;
    uint8_t fl = n == ac->remaining ? TT_FF_EOF : 0;
    if (tt_mux_send(m, ch, g_block + off, n, fl)) break;
    ac->remaining -= n;
    off = (off + n) % AGENT_BLOCK;
  }
}

static void pump_echo(tt_mux_t *m, tt_chan_t *ch, agent_chan_t *ac) {
  size_t n = ac->pending.len;
  uint32_t room = tt_mux_sendable(ch);
  if (n > room) n = room;
  if (n == 0) return;
  if (tt_mux_send(m, ch, tt_buf_head(&ac->pending), n, 0)) return;
  tt_buf_consume(&ac->pending, n);
  tt_buf_shrink(&ac->pending);
  tt_mux_consumed(m, ch, n);
}

/* A local close gets no on_close from the mux: free our side here. */
static void chan_finish(tt_mux_t *m, tt_chan_t *ch, int code, const char *why) {
  agent_chan_t *ac = ch->data;
  tt_mux_close(m, ch, code, why);
  if (ac) {
    tt_buf_free(&ac->pending);
    free(ac);
  }
  ch->data = NULL;
}

static void chan_open(tt_mux_t *m, tt_chan_t *ch, const Tether__ChannelOpen *msg) {
  tt_link_t *l = tt_link_from_mux(m);
  char who[TT_NAME_MAX + 1];
  if (tt_text_copy(who, sizeof(who), msg->requester)) snprintf(who, sizeof(who), "?");
  if (msg->kind == TETHER__CHANNEL_KIND__CHANNEL_SHELL || msg->kind == TETHER__CHANNEL_KIND__CHANNEL_EXEC) {
    agent_shell_open(m, ch, msg);
    return;
  }
  if (msg->kind == TETHER__CHANNEL_KIND__CHANNEL_FILES) {
    agent_files_open(m, ch, msg);
    return;
  }
  if (msg->kind != TETHER__CHANNEL_KIND__CHANNEL_THROUGHPUT && msg->kind != TETHER__CHANNEL_KIND__CHANNEL_ECHO &&
      msg->kind != TETHER__CHANNEL_KIND__CHANNEL_DIAG) {
    tt_mux_reject(m, ch, TT_ENOTFOUND, "this agent does not serve that channel kind");
    tt_link_flush(l);
    return;
  }
  if (msg->kind == TETHER__CHANNEL_KIND__CHANNEL_THROUGHPUT && msg->bytes > TT_THROUGHPUT_BYTES_MAX) {
    char why[64];
    snprintf(why, sizeof(why), "a speedtest may ask for at most %llu GiB",
             (unsigned long long)(TT_THROUGHPUT_BYTES_MAX >> 30));
    tt_mux_reject(m, ch, TT_ETOOBIG, why);
    tt_link_flush(l);
    return;
  }
  /* The broker checked the grant; a session it names must be one the employee gave here. */
  const agent_session_t *s = msg->session ? agent_session_find(l->data, msg->session) : NULL;
  if (msg->session && (!s || !(s->access & TETHER__ACCESS__ACCESS_DIAG))) {
    char why[96];
    snprintf(why, sizeof(why), "S-%llu is not a live session with diag access on this device",
             (unsigned long long)msg->session);
    tt_mux_reject(m, ch, TT_EDENIED, why);
    tt_link_flush(l);
    return;
  }
  if (msg->kind == TETHER__CHANNEL_KIND__CHANNEL_DIAG) {
    agent_diag_open(m, ch, msg, s);
    return;
  }
  agent_chan_t *ac = calloc(1, sizeof(*ac));
  uint32_t window = ch->prio == TT_PRIO_BULK ? TT_WINDOW_BULK : TT_WINDOW_DEFAULT;
  if (!ac || tt_mux_accept(m, ch, window, true, 0)) {
    free(ac);
    tt_mux_reject(m, ch, TT_ENOMEM, "cannot accept");
    tt_link_flush(l);
    return;
  }
  ac->kind = msg->kind;
  ac->remaining = msg->bytes;
  tt_buf_init(&ac->pending, TT_WINDOW_MAX);
  ch->data = ac;
  TT_INFO("agent", "channel opened", "id=%u kind=%d requester=%s session=S-%llu", ch->id, (int)msg->kind, who,
          (unsigned long long)msg->session);
  /* The employee sees diagnostics run under their grant, as they see shells opened. */
  if (s && msg->kind == TETHER__CHANNEL_KIND__CHANNEL_ECHO)
    agent_consent_notice(l->data, "ACTIVITY S-%llu\t%s\tstarted a latency test (ping)",
                         (unsigned long long)msg->session, s->technician);
  else if (s)
    agent_consent_notice(l->data, "ACTIVITY S-%llu\t%s\tstarted a speedtest of %llu bytes",
                         (unsigned long long)msg->session, s->technician, (unsigned long long)msg->bytes);
  if (ac->kind == TETHER__CHANNEL_KIND__CHANNEL_THROUGHPUT) {
    if (!g_block_ready) fill_block();
    if (ac->remaining == 0) {
      if (tt_mux_send(m, ch, NULL, 0, TT_FF_EOF)) chan_finish(m, ch, TT_EIO, "cannot send");
    }
    else pump_throughput(m, ch, ac);
  }
  tt_link_flush(l);
}

/* The one channel the agent opens: the download of a release (upgrade/fetch.c). */
static void chan_accept(tt_mux_t *m, tt_chan_t *ch, const Tether__ChannelAccept *msg) {
  (void)msg;
  if (agent_fetch_owns(ch)) agent_fetch_accepted(m, ch);
}

static void chan_data(tt_mux_t *m, tt_chan_t *ch, const uint8_t *p, size_t n, uint8_t flags) {
  if (agent_fetch_owns(ch)) {
    agent_fetch_data(m, ch, p, n, flags);
    return;
  }
  agent_chan_t *ac = ch->data;
  if (!ac) {
    tt_mux_consumed(m, ch, n); /* a channel we are closing: the bytes still count */
    return;
  }
  if (agent_shell_owns(ch)) {
    agent_shell_data(m, ch, p, n, flags);
    return;
  }
  if (agent_files_owns(ch)) {
    agent_files_data(m, ch, p, n, flags);
    return;
  }
  if (agent_diag_owns(ch)) {
    agent_diag_data(m, ch, p, n, flags);
    return;
  }
  if (ac->kind == TETHER__CHANNEL_KIND__CHANNEL_ECHO) {
    /* Within our window by the mux's check, so pending never passes one window. */
    if (tt_buf_append(&ac->pending, p, n)) {
      chan_finish(m, ch, TT_EFULL, "echo buffer full");
      tt_link_flush(tt_link_from_mux(m));
      return;
    }
    pump_echo(m, ch, ac);
  } else {
    tt_mux_consumed(m, ch, n); /* throughput ignores what the console sends */
  }
  if (flags & TT_FF_EOF) chan_finish(m, ch, 0, "done");
  tt_link_flush(tt_link_from_mux(m));
}

static void chan_credit(tt_mux_t *m, tt_chan_t *ch, uint32_t n) {
  agent_chan_t *ac = ch->data;
  if (!ac || agent_fetch_owns(ch)) return;
  if (agent_shell_owns(ch)) {
    agent_shell_credit(m, ch);
    return;
  }
  if (agent_files_owns(ch)) {
    agent_files_credit(m, ch);
    return;
  }
  if (agent_diag_owns(ch)) {
    agent_diag_credit(m, ch);
    return;
  }
  if (ac->kind == TETHER__CHANNEL_KIND__CHANNEL_THROUGHPUT) pump_throughput(m, ch, ac);
  else pump_echo(m, ch, ac);
  tt_link_flush(tt_link_from_mux(m));
}

static void chan_close(tt_mux_t *m, tt_chan_t *ch, int code, const char *msg) {
  if (agent_fetch_owns(ch)) {
    agent_fetch_closed(m, ch, code, msg);
    return;
  }
  agent_chan_t *ac = ch->data;
  if (!ac) return;
  if (agent_shell_owns(ch)) {
    agent_shell_chan_closed(m, ch, code, msg);
    return;
  }
  if (agent_files_owns(ch)) {
    agent_files_chan_closed(m, ch, code, msg);
    return;
  }
  if (agent_diag_owns(ch)) {
    agent_diag_chan_closed(m, ch, code, msg);
    return;
  }
  TT_INFO("agent", "channel closed", "id=%u code=%s sent=%llu", ch->id, code ? tt_errname(code) : "ok",
          (unsigned long long)ch->bytes_out);
  tt_buf_free(&ac->pending);
  free(ac);
  ch->data = NULL;
}

const tt_mux_cbs_t agent_mux_cbs = {
    .on_open = chan_open,
    .on_accept = chan_accept,
    .on_data = chan_data,
    .on_credit = chan_credit,
    .on_close = chan_close,
};
