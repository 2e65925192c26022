/* Store requests made on behalf of a connection: the connection is held while the store
 * works, and the answer goes out only if it is still there. */
#include <stdlib.h>
#include "broker.h"
#include "tt/log.h"

void *broker_creq_new(broker_conn_t *c, uint32_t id, size_t size, store_lane_t lane, store_run_fn run,
                      store_done_fn done, const char *what) {
  broker_creq_t *x = calloc(1, size);
  if (!x) return NULL;
  x->req.run = run;
  x->req.done = done;
  x->req.lane = lane;
  x->req.what = what;
  x->c = c;
  x->id = id;
  return x;
}

static void plain_free(void *p) { free(p); }

int broker_creq_submit(void *p) { return broker_creq_submit_free(p, plain_free); }

int broker_creq_submit_free(void *p, void (*free_fn)(void *)) {
  broker_creq_t *x = p;
  broker_conn_t *c = x->c;
  int rc = TT_EBUSY;
  if (c->work < TT_CONN_STORE_REQS_MAX && store_svc_backlog(c->b->svc) <= TT_STORE_QUEUE_MAX / 2)
    rc = store_svc_submit(c->b->svc, &x->req);
  if (rc == 0) {
    c->work++;
    TT_DEBUG("broker", "store request queued", "what=%s peer=%s", x->req.what, c->addr);
    return 0;
  }
  TT_WARN("broker", "store request refused", "what=%s err=%s", x->req.what, tt_errname(rc));
  uint32_t id = x->id;
  free_fn(x);
  return broker_reply_error(c, id, TT_EBUSY, "the broker is busy, try again shortly");
}

broker_conn_t *broker_creq_conn(void *p) {
  broker_creq_t *x = p;
  broker_conn_t *c = x->c;
  x->c = NULL;
  if (!c || !broker_conn_work_done(c)) return NULL;
  if (!c->link || c->link->closing) return NULL;
  return c;
}

void broker_store_later(broker_t *b, store_req_t *r) {
  r->done = NULL;
  r->lane = STORE_LANE_WRITE;
  int rc = store_svc_submit(b->svc, r);
  if (rc) {
    TT_ERROR("broker", "store write dropped", "what=%s action=%s err=%s", r->what ? r->what : "?",
             r->audit ? r->audit->action : "-", tt_errname(rc));
    free(r);
  }
}
