/* Requests the agent sent the broker and is waiting on: a small table keyed by request id,
 * each with a deadline, so that a Response reaches whoever asked and silence ends in a
 * timeout instead of a wait forever. */
#include <string.h>
#include "agent.h"
#include "tt/log.h"

static void reqs_arm(agent_reqs_t *t);

static void reqs_timer_cb(uv_timer_t *tm) {
  agent_reqs_t *t = tm->data;
  uint64_t now = uv_now(tm->loop);
  for (size_t i = 0; i < AGENT_REQS_MAX; i++) {
    agent_req_t r = t->slot[i];
    if (r.id == 0 || r.deadline > now) continue;
    memset(&t->slot[i], 0, sizeof(t->slot[i]));
    TT_WARN("agent", "request timed out", "id=%u", r.id);
    r.cb(r.data, NULL, TT_ETIMEOUT);
  }
  reqs_arm(t);
}

/* One timer for the earliest deadline. */
static void reqs_arm(agent_reqs_t *t) {
  uint64_t first = UINT64_MAX;
  for (size_t i = 0; i < AGENT_REQS_MAX; i++)
    if (t->slot[i].id && t->slot[i].deadline < first) first = t->slot[i].deadline;
  if (first == UINT64_MAX) {
    uv_timer_stop(&t->timer);
    return;
  }
  uint64_t now = uv_now(t->timer.loop);
  uv_timer_start(&t->timer, reqs_timer_cb, first > now ? first - now : 0, 0);
}

void agent_reqs_init(agent_reqs_t *t, uv_loop_t *loop) {
  memset(t, 0, sizeof(*t));
  t->next_id = 1;
  uv_timer_init(loop, &t->timer);
  t->timer.data = t;
}

void agent_reqs_close(agent_reqs_t *t) {
  agent_reqs_fail_all(t, TT_ECLOSED);
  uv_close((uv_handle_t *)&t->timer, NULL);
}

int agent_reqs_send(agent_reqs_t *t, tt_link_t *l, Tether__Request *q, uint64_t timeout_ms,
                    agent_reply_cb cb, void *data) {
  agent_req_t *free_slot = NULL;
  for (size_t i = 0; i < AGENT_REQS_MAX && !free_slot; i++)
    if (t->slot[i].id == 0) free_slot = &t->slot[i];
  if (!free_slot) return TT_EFULL;
  q->id = t->next_id++;
  if (t->next_id == 0) t->next_id = 1;
  int rc = tt_link_send(l, TT_K_REQUEST, &q->base);
  if (rc) return rc;
  *free_slot = (agent_req_t){
      .id = q->id, .deadline = uv_now(t->timer.loop) + timeout_ms, .cb = cb, .data = data};
  reqs_arm(t);
  return 0;
}

void agent_reqs_dispatch(agent_reqs_t *t, const Tether__Response *r) {
  for (size_t i = 0; i < AGENT_REQS_MAX; i++) {
    if (r->id == 0 || t->slot[i].id != r->id) continue;
    agent_req_t q = t->slot[i];
    memset(&t->slot[i], 0, sizeof(t->slot[i]));
    reqs_arm(t);
    q.cb(q.data, r, 0);
    return;
  }
  /* Most likely the answer to a request that already timed out. */
  TT_WARN("agent", "response to no pending request", "id=%u", r->id);
}

void agent_reqs_fail_all(agent_reqs_t *t, int err) {
  for (size_t i = 0; i < AGENT_REQS_MAX; i++) {
    agent_req_t q = t->slot[i];
    if (q.id == 0) continue;
    memset(&t->slot[i], 0, sizeof(t->slot[i]));
    q.cb(q.data, NULL, err);
  }
  uv_timer_stop(&t->timer);
}
