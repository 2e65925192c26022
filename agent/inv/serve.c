/* CHANNEL_DIAG on the agent: under a session granted here with diag access (or an admin's,
 * session 0, which only the broker lets through), run every collector on a worker thread and
 * send the report as one JSON document, as the console's credit allows, then EOF. The
 * employee's prompt shows that it ran. */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "agent.h"
#include "collect.h"
#include "inv.h"
#include "tt/log.h"
#include "tt/msg.h"

typedef struct {
  Tether__ChannelKind kind; /* first: chan.c tells channel owners apart by it */
  tt_mux_t *m;
  tt_chan_t *ch;            /* NULL once the channel closed (the work may still run) */
  uv_work_t work;
  bool working;
  char device[TT_NAME_MAX + 1], hostname[TT_NAME_MAX + 1];
  char root[AGENT_PATH_MAX];  /* inventory.root */
  tt_buf_t out;             /* the report; sent from its head */
  int rc;
  char err[INV_ERROR_MAX];
} dchan_t;

static void work_cb(uv_work_t *w) {
  dchan_t *d = w->data;
  inv_env_t env = {.root = d->root};
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

static void dchan_free(dchan_t *d) {
  tt_buf_free(&d->out);
  free(d);
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
  d->m = m;
  d->ch = ch;
  snprintf(d->device, sizeof(d->device), "%s", a->ident.device_id);
  snprintf(d->hostname, sizeof(d->hostname), "%s", a->cfg.hostname);
  snprintf(d->root, sizeof(d->root), "%s", a->cfg.inventory_root);
  tt_buf_init(&d->out, TT_DIAG_REPORT_MAX);
  d->work.data = d;
  if (uv_queue_work(a->loop, &d->work, work_cb, after_cb)) {
    (void)!tt_mux_close(m, ch, TT_EIO, "the agent cannot run the collectors now");
    dchan_free(d);
    tt_link_flush(l);
    return;
  }
  d->working = true;
  ch->data = d;
  TT_INFO("diag", "channel opened", "id=%u session=S-%llu", ch->id, (unsigned long long)msg->session);
  if (s)
    agent_consent_notice(a, "ACTIVITY S-%llu\t%s\tcollected diagnostics (system, disks, network, packages, services)",
                         (unsigned long long)msg->session, s->technician);
  tt_link_flush(l);
}

void agent_diag_credit(tt_mux_t *m, tt_chan_t *ch) {
  dchan_t *d = ch->data;
  if (!d->working) pump(d);
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
