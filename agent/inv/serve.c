/* CHANNEL_DIAG on the agent: under a session granted here with diag access (or an admin's,
 * session 0, which only the broker lets through), ping the broker for the link's round trip,
 * take the agent's own facts (the link, the clock against the broker's, the names to
 * resolve) on the loop thread, then run every collector on a worker thread and send the
 * report as one JSON document, as the console's credit allows, then EOF. The employee's
 * prompt shows that it ran. */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "agent.h"
#include "collect.h"
#include "inv.h"
#include "tt/addr.h"
#include "tt/log.h"
#include "tt/msg.h"

/* Nonces of the agent's own Pings stay far below the link's probe nonces (2^48 and up). */
#define DIAG_NONCE_MAX ((1ull << 40) - 1)

typedef struct agent_dchan_s {
  Tether__ChannelKind kind; /* first: chan.c tells channel owners apart by it */
  agent_t *a;
  tt_mux_t *m;
  tt_chan_t *ch;            /* NULL once the channel closed (the work may still run) */
  uv_timer_t wait;          /* for the Ping's answer; closing it frees this */
  uv_work_t work;
  bool waiting, working;
  uint64_t wait_start;      /* uv_now when the wait began */
  struct agent_dchan_s *next; /* in a->diag_waiting while waiting */
  char device[TT_NAME_MAX + 1], hostname[TT_NAME_MAX + 1];
  inv_live_t live;          /* the agent's facts, taken on the loop thread */
  char root[AGENT_PATH_MAX];  /* inventory.root */
  tt_buf_t out;             /* the report; sent from its head */
  int rc;
  char err[INV_ERROR_MAX];
} dchan_t;

static void work_cb(uv_work_t *w) {
  dchan_t *d = w->data;
  /* cfg does not change while the agent runs: read here without a lock. */
  inv_env_t env = {.root = d->root, .path = d->a->cfg.inventory_path, .live = &d->live};
  d->rc = inv_report(&env, d->device, d->hostname, &d->out, d->err, sizeof(d->err));
}

static void pump(dchan_t *d) {
  while (d->ch && d->out.len) {
    uint32_t room = tt_mux_sendable(d->ch);
    if (room == 0) return;
    size_t n = d->out.len < room ? d->out.len : room;
    if (tt_mux_send(d->m, d->ch, tt_buf_head(&d->out), n, n == d->out.len ? TT_FF_EOF : 0)) return;
    tt_buf_consume(&d->out, n);
  }
}

static void freed_cb(uv_handle_t *h) {
  dchan_t *d = h->data;
  tt_buf_free(&d->out);
  free(d);
}

static void unwait(dchan_t *d) {
  if (!d->waiting) return;
  d->waiting = false;
  uv_timer_stop(&d->wait);
  for (dchan_t **p = &d->a->diag_waiting; *p; p = &(*p)->next)
    if (*p == d) {
      *p = d->next;
      break;
    }
  d->next = NULL;
}

static void dchan_free(dchan_t *d) {
  unwait(d);
  uv_close((uv_handle_t *)&d->wait, freed_cb);
}

static void after_cb(uv_work_t *w, int status) {
  dchan_t *d = w->data;
  d->working = false;
  if (!d->ch) {
    dchan_free(d);
    return;
  }
  tt_link_t *l = tt_link_from_mux(d->m);
  if (status || d->rc) {
    TT_WARN("diag", "no report", "id=%u err=%s why=\"%s\"", d->ch->id, tt_errname(status ? status : d->rc), d->err);
    (void)!tt_mux_close(d->m, d->ch, status ? status : d->rc, d->err[0] ? d->err : "the report could not be made");
    d->ch->data = NULL;
    dchan_free(d);
  } else {
    TT_INFO("diag", "report made", "id=%u bytes=%zu", d->ch->id, d->out.len);
    pump(d);
  }
  tt_link_flush(l);
}

/* ---- the agent's facts ------------------------------------------------------------------- */

static void add_name(inv_live_t *l, const char *s, size_t n) {
  while (n && (*s == ' ' || *s == '\t')) s++, n--;
  while (n && (s[n - 1] == ' ' || s[n - 1] == '\t')) n--;
  if (n == 0 || n > INV_DNS_NAME_MAX || l->ndns >= INV_DNS_NAMES_MAX) return;
  for (size_t i = 0; i < l->ndns; i++)
    if (strlen(l->dns[i]) == n && !strncmp(l->dns[i], s, n)) return;
  memcpy(l->dns[l->ndns], s, n);
  l->dns[l->ndns++][n] = 0;
}

/* diag.dns_names, or by default the broker's host name (an address resolves to itself:
 * nothing to learn) and this machine's own name, which needs no outside server. */
static void dns_names(const agent_t *a, inv_live_t *l) {
  const char *list = a->cfg.diag_dns_names;
  if (list[0]) {
    for (const char *p = list; *p;) {
      const char *e = strchr(p, ',');
      size_t n = e ? (size_t)(e - p) : strlen(p);
      add_name(l, p, n);
      p += n + (e ? 1 : 0);
    }
    return;
  }
  char host[256], me[256];
  int port;
  unsigned char bin[16];
  if (tt_addr_split(a->cfg.broker, host, sizeof(host), &port, 0) == 0 && inet_pton(AF_INET, host, bin) != 1 &&
      inet_pton(AF_INET6, host, bin) != 1)
    add_name(l, host, strlen(host));
  if (gethostname(me, sizeof(me)) == 0) {
    me[sizeof(me) - 1] = 0;
    add_name(l, me, strlen(me));
  }
}

void agent_diag_facts(agent_t *a, inv_live_t *l, int64_t rtt_us, uint32_t rtt_wait_ms) {
  memset(l, 0, sizeof(*l));
  snprintf(l->broker, sizeof(l->broker), "%s", a->cfg.broker);
  snprintf(l->broker_name, sizeof(l->broker_name), "%s", a->broker_name);
  l->connected = a->link && a->welcomed;
  l->connected_at_ms = l->connected ? a->welcome_unix_ms : 0;
  l->connects = a->connects;
  l->rtt_us = rtt_us;
  l->rtt_wait_ms = rtt_wait_ms;
  l->heard_ms_ago = -1;
  if (l->connected) {
    uint64_t now = uv_now(a->loop), last = tt_tls_last_read(a->link->tls);
    l->heard_ms_ago = now >= last ? (int64_t)(now - last) : 0;
  }
  l->heartbeat_ms = a->heartbeat_ms;
  /* Both clocks at one instant: ours now, the broker's carried forward from its Welcome on
   * the monotonic clock (which no one sets). */
  l->local_ms = agent_unix_ms();
  l->clock_known = a->clock_known;
  if (a->clock_known) {
    l->broker_ms = a->clock_broker_ms + (int64_t)((uv_hrtime() - a->welcome_hr) / 1000000u);
    l->clock_error_ms = a->clock_error_ms;
    l->clock_learnt_ms = a->welcome_unix_ms;
  }
  dns_names(a, l);
  l->dns_timeout_ms = INV_DNS_TIMEOUT_MS;
}

/* The wait is over (answered, timed out, or not possible): take the facts, start the work. */
static void go(dchan_t *d, int64_t rtt_us) {
  unwait(d);
  agent_diag_facts(d->a, &d->live, rtt_us, (uint32_t)(uv_now(d->a->loop) - d->wait_start));
  tt_link_t *l = tt_link_from_mux(d->m);
  d->work.data = d;
  if (uv_queue_work(d->a->loop, &d->work, work_cb, after_cb)) {
    (void)!tt_mux_close(d->m, d->ch, TT_EIO, "the agent cannot run the collectors now");
    d->ch->data = NULL;
    dchan_free(d);
    tt_link_flush(l);
    return;
  }
  d->working = true;
}

static void wait_cb(uv_timer_t *t) {
  dchan_t *d = t->data;
  TT_INFO("diag", "no answer to our ping", "id=%u wait_ms=%u", d->ch->id, AGENT_DIAG_PING_WAIT_MS);
  go(d, -1);
}

void agent_diag_rtt(agent_t *a, uint64_t rtt_ns) {
  while (a->diag_waiting) go(a->diag_waiting, (int64_t)(rtt_ns / 1000u));
}

/* ---- the channel ------------------------------------------------------------------------- */

bool agent_diag_owns(const tt_chan_t *ch) {
  return ch->data && *(const Tether__ChannelKind *)ch->data == TETHER__CHANNEL_KIND__CHANNEL_DIAG;
}

void agent_diag_open(tt_mux_t *m, tt_chan_t *ch, const Tether__ChannelOpen *msg, const agent_session_t *s) {
  agent_t *a = tt_link_from_mux(m)->data;
  tt_link_t *l = tt_link_from_mux(m);
  dchan_t *d = calloc(1, sizeof(*d));
  if (!d) {
    (void)!tt_mux_reject(m, ch, TT_ENOMEM, "the agent is out of memory");
    tt_link_flush(l);
    return;
  }
  if (tt_mux_accept(m, ch, TT_WINDOW_BULK, true, 0)) {
    free(d);
    (void)!tt_mux_reject(m, ch, TT_EIO, "cannot accept");
    tt_link_flush(l);
    return;
  }
  d->kind = TETHER__CHANNEL_KIND__CHANNEL_DIAG;
  d->a = a;
  d->m = m;
  d->ch = ch;
  snprintf(d->device, sizeof(d->device), "%s", a->ident.device_id);
  snprintf(d->hostname, sizeof(d->hostname), "%s", a->cfg.hostname);
  snprintf(d->root, sizeof(d->root), "%s", a->cfg.inventory_root);
  tt_buf_init(&d->out, TT_DIAG_REPORT_MAX);
  uv_timer_init(a->loop, &d->wait);
  d->wait.data = d;
  ch->data = d;
  TT_INFO("diag", "channel opened", "id=%u session=S-%llu", ch->id, (unsigned long long)msg->session);
  if (s)
    agent_consent_notice(a,
                         "ACTIVITY S-%llu\t%s\tcollected diagnostics (system, disks, network, packages, services, "
                         "the journal's recent errors)",
                         (unsigned long long)msg->session, s->technician);
  /* A Ping of our own for the round trip (one sent moments ago, for another report, serves
   * this one too); its Pong comes after the broker read everything before it. */
  d->wait_start = uv_now(a->loop);
  bool pinging = l->ping_out && uv_hrtime() - l->ping_sent_ns < AGENT_DIAG_PING_WAIT_MS * 1000000ull;
  if (!pinging) {
    if (++a->ping_nonce > DIAG_NONCE_MAX) a->ping_nonce = 1;
    pinging = tt_link_ping(l, a->ping_nonce) == 0;
  }
  if (pinging) {
    d->waiting = true;
    d->next = a->diag_waiting;
    a->diag_waiting = d;
    uv_timer_start(&d->wait, wait_cb, AGENT_DIAG_PING_WAIT_MS, 0);
  } else {
    go(d, -1);
  }
  tt_link_flush(l);
}

void agent_diag_credit(tt_mux_t *m, tt_chan_t *ch) {
  dchan_t *d = ch->data;
  if (!d->working && !d->waiting) pump(d);
  tt_link_flush(tt_link_from_mux(m));
}

void agent_diag_data(tt_mux_t *m, tt_chan_t *ch, const uint8_t *p, size_t n, uint8_t flags) {
  (void)p;
  (void)flags;
  tt_mux_consumed(m, ch, n); /* the console has nothing to say on this channel */
}

void agent_diag_chan_closed(tt_mux_t *m, tt_chan_t *ch, int code, const char *msg) {
  (void)m;
  dchan_t *d = ch->data;
  TT_INFO("diag", "channel closed", "id=%u code=%s left=%zu", ch->id, code ? tt_errname(code) : "ok", d->out.len);
  (void)msg;
  ch->data = NULL;
  d->ch = NULL;
  if (!d->working) dchan_free(d); /* else after_cb frees it */
}
