/* The store as a service: a writer thread that owns the write connection and group-commits,
 * a reader thread for listings and verification, and completions back on the event loop.
 * Nothing here runs SQL on the loop thread. */
#include <pthread.h>

#include "internal.h"

/* A reader waits at most this long for the writes submitted before it to commit; past it
 * (another process holds the write lock) it answers from what is committed. */
#define STORE_READ_BARRIER_MS 1000

typedef struct {
  store_req_t *head, *tail;
  size_t n;
} req_queue_t;

static void q_push(req_queue_t *q, store_req_t *r) {
  r->next = NULL;
  if (q->tail) q->tail->next = r;
  else q->head = r;
  q->tail = r;
  q->n++;
}

static store_req_t *q_pop(req_queue_t *q) {
  store_req_t *r = q->head;
  if (!r) return NULL;
  q->head = r->next;
  if (!q->head) q->tail = NULL;
  q->n--;
  r->next = NULL;
  return r;
}

struct store_svc_s {
  uv_loop_t *loop;
  uv_async_t async;             /* completions are waiting */
  broker_store_t *wdb, *rdb;
  pthread_t wthread, rthread;
  bool wstarted, rstarted;
  pthread_mutex_t mu;
  pthread_cond_t wcond, rcond;  /* work for the writer / the reader, or a commit landed */
  req_queue_t wq, rq, doneq;
  uint64_t submitted_seq;       /* last write submitted */
  uint64_t committed_seq;       /* last write whose batch finished (committed or failed) */
  bool reader_waits_commit;     /* the reader waits for a commit (not for work): wake it */
  uint64_t batches;             /* transactions the writer has run */
  int64_t head_id;              /* the audit chain's head after the last batch */
  uint8_t head_hash[32];
  size_t backlog;               /* submitted, completion not yet run */
  bool stopping;
};

static uint64_t now_mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* One request inside the batch: its own savepoint, its audit entry with it. The chain's
 * head moves only if the savepoint is released. */
static int run_one(broker_store_t *s, store_req_t *r) {
  int64_t head_id = s->audit_last_id;
  uint8_t head_hash[32];
  memcpy(head_hash, s->audit_last_hash, 32);
  int rc = tx_begin(s);
  if (rc != 0) return rc;
  if (r->run) rc = r->run(s, r);
  if (rc == 0 && r->audit) {
    const store_audit_rec_t *a = r->audit;
    rc = store_audit_append(s, a->ts_ms, a->actor, a->action, a->target, a->detail, &r->audit_id);
  }
  if (rc == 0) rc = tx_commit(s);
  else tx_rollback(s);
  if (rc != 0) {
    s->audit_last_id = head_id;
    memcpy(s->audit_last_hash, head_hash, 32);
    r->audit_id = 0;
  }
  return rc;
}

static void finish(store_svc_t *v, req_queue_t *batch, uint64_t seq) {
  pthread_mutex_lock(&v->mu);
  v->batches++;
  v->head_id = v->wdb->audit_last_id;
  memcpy(v->head_hash, v->wdb->audit_last_hash, 32);
  if (seq > v->committed_seq) {
    v->committed_seq = seq;
    /* Most commits have no reader waiting on them: waking it for nothing costs CPU. */
    if (v->reader_waits_commit) pthread_cond_broadcast(&v->rcond);
  }
  store_req_t *r;
  while ((r = q_pop(batch)) != NULL) q_push(&v->doneq, r);
  pthread_mutex_unlock(&v->mu);
  uv_async_send(&v->async);
}

static void *writer_main(void *arg) {
  store_svc_t *v = arg;
  broker_store_t *s = v->wdb;
  for (;;) {
    req_queue_t batch = {0};
    pthread_mutex_lock(&v->mu);
    while (v->wq.n == 0 && !v->stopping) pthread_cond_wait(&v->wcond, &v->mu);
    if (v->wq.n == 0) { /* stopping, and nothing left */
      pthread_mutex_unlock(&v->mu);
      break;
    }
    while (batch.n < TT_STORE_BATCH_MAX && v->wq.n) q_push(&batch, q_pop(&v->wq));
    pthread_mutex_unlock(&v->mu);

    uint64_t last_seq = batch.tail->seq;
    int rc = tx_begin(s);
    bool lost = rc != 0;
    for (store_req_t *r = batch.head; r; r = r->next) {
      if (lost) {
        r->rc = rc;
        continue;
      }
      r->rc = run_one(s, r);
      /* Some errors (a full disk, I/O, out of memory) make SQLite roll the whole
       * transaction back, not just the request's savepoint: then nothing of the batch
       * stands, the requests before this one included, and none after it may run on its
       * own outside the batch. */
      if (sqlite3_get_autocommit(s->db)) {
        lost = true;
        rc = r->rc ? r->rc : TT_EIO;
        for (store_req_t *q = batch.head; q != r->next; q = q->next) {
          if (q->rc == 0) q->rc = rc;
          q->audit_id = 0;
        }
      }
    }
    if (!lost) {
      rc = tx_commit(s);
      if (rc != 0) {
        lost = true;
        for (store_req_t *r = batch.head; r; r = r->next) {
          if (r->rc == 0) r->rc = rc;
          r->audit_id = 0;
        }
      }
    }
    if (lost) {
      /* Nothing of the batch is on disk: the chain continues from what is. */
      s->tx_depth = 0;
      s->tx_outer = 0;
      if (!sqlite3_get_autocommit(s->db)) (void)sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
      store_inv_find_forget(s); /* rows it interned are gone too */
      if (store_audit_load_tail(s) != 0)
        TT_ERROR(MOD, "audit tail unreadable after a failed batch", "batch=%zu", batch.n);
    } else {
      /* Work that may only follow a commit (a signed checkpoint of what is on disk). */
      for (store_req_t *r = batch.head; r; r = r->next)
        if (r->rc == 0 && r->after_commit) r->rc = r->after_commit(s, r);
    }
    finish(v, &batch, last_seq);
  }
  return NULL;
}

static void *reader_main(void *arg) {
  store_svc_t *v = arg;
  for (;;) {
    pthread_mutex_lock(&v->mu);
    while (v->rq.n == 0 && !v->stopping) pthread_cond_wait(&v->rcond, &v->mu);
    store_req_t *r = q_pop(&v->rq);
    if (!r) {
      pthread_mutex_unlock(&v->mu);
      break;
    }
    /* Read what was written before this was asked, unless the writer is stuck. */
    uint64_t deadline = now_mono_ms() + STORE_READ_BARRIER_MS;
    while (v->committed_seq < r->seq && !v->stopping) {
      uint64_t now = now_mono_ms();
      if (now >= deadline) break;
      struct timespec ts;
      clock_gettime(CLOCK_REALTIME, &ts);
      uint64_t wait_ms = deadline - now;
      ts.tv_sec += (time_t)(wait_ms / 1000u);
      ts.tv_nsec += (long)(wait_ms % 1000u) * 1000000L;
      if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
      }
      v->reader_waits_commit = true;
      pthread_cond_timedwait(&v->rcond, &v->mu, &ts);
      v->reader_waits_commit = false;
    }
    pthread_mutex_unlock(&v->mu);
    r->rc = r->run ? r->run(v->rdb, r) : 0;
    pthread_mutex_lock(&v->mu);
    q_push(&v->doneq, r);
    pthread_mutex_unlock(&v->mu);
    uv_async_send(&v->async);
  }
  return NULL;
}

static void complete(store_req_t *r) {
  if (r->rc != 0 && (r->done == NULL || r->audit != NULL))
    TT_ERROR(MOD, "store request failed", "what=%s action=%s err=%s", r->what ? r->what : "?",
             r->audit ? r->audit->action : "-", tt_errname(r->rc));
  if (r->done) r->done(r);
  else free(r); /* nobody waits: one allocation, its audit entry inside it */
}

static void drain_done(store_svc_t *v) {
  pthread_mutex_lock(&v->mu);
  req_queue_t d = v->doneq;
  v->doneq = (req_queue_t){0};
  v->backlog -= d.n;
  pthread_mutex_unlock(&v->mu);
  store_req_t *r;
  while ((r = q_pop(&d)) != NULL) complete(r);
}

static void async_cb(uv_async_t *a) { drain_done(a->data); }

int store_svc_start(store_svc_t **out, uv_loop_t *loop, broker_store_t *writer, const char *data_dir,
                    char *err, size_t errlen) {
  *out = NULL;
  store_svc_t *v = calloc(1, sizeof(*v));
  if (!v) return TT_ENOMEM;
  v->loop = loop;
  v->wdb = writer;
  v->head_id = writer->audit_last_id;
  memcpy(v->head_hash, writer->audit_last_hash, 32);
  int rc = store_open_ro(&v->rdb, data_dir, err, errlen);
  if (rc) goto fail;
  pthread_mutex_init(&v->mu, NULL);
  pthread_cond_init(&v->wcond, NULL);
  pthread_cond_init(&v->rcond, NULL);
  rc = uv_async_init(loop, &v->async, async_cb);
  if (rc) goto fail;
  v->async.data = v;
  /* Completions come while the loop runs for other reasons; this alone keeps nothing alive
   * (a stopping broker's loop ends, and store_svc_stop drains what is left). */
  uv_unref((uv_handle_t *)&v->async);
  if (pthread_create(&v->wthread, NULL, writer_main, v) != 0) {
    rc = TT_ENOMEM;
    goto fail_async;
  }
  v->wstarted = true;
  if (pthread_create(&v->rthread, NULL, reader_main, v) != 0) {
    rc = TT_ENOMEM;
    goto fail_async;
  }
  v->rstarted = true;
  *out = v;
  return 0;
fail_async:
  /* Threads started so far see stopping and exit; the writer store stays the caller's. */
  v->wdb = NULL;
  store_svc_stop(v);
  return rc;
fail:
  store_close(v->rdb);
  free(v);
  return rc;
}

int store_svc_submit(store_svc_t *v, store_req_t *r) {
  pthread_mutex_lock(&v->mu);
  int rc = 0;
  if (v->stopping) rc = TT_ECLOSED;
  else if (v->wq.n + v->rq.n >= TT_STORE_QUEUE_MAX) rc = TT_EBUSY;
  if (rc == 0) {
    r->rc = 0;
    r->audit_id = 0;
    if (r->lane == STORE_LANE_WRITE) {
      r->seq = ++v->submitted_seq;
      q_push(&v->wq, r);
      pthread_cond_signal(&v->wcond);
    } else {
      r->seq = v->submitted_seq;
      q_push(&v->rq, r);
      pthread_cond_broadcast(&v->rcond);
    }
    v->backlog++;
  }
  pthread_mutex_unlock(&v->mu);
  return rc;
}

size_t store_svc_backlog(store_svc_t *v) {
  pthread_mutex_lock(&v->mu);
  size_t n = v->backlog;
  pthread_mutex_unlock(&v->mu);
  return n;
}

uint64_t store_svc_batches(store_svc_t *v) {
  pthread_mutex_lock(&v->mu);
  uint64_t n = v->batches;
  pthread_mutex_unlock(&v->mu);
  return n;
}

void store_svc_audit_head(store_svc_t *v, int64_t *id, uint8_t hash[32]) {
  pthread_mutex_lock(&v->mu);
  *id = v->head_id;
  memcpy(hash, v->head_hash, 32);
  pthread_mutex_unlock(&v->mu);
}

/* The last of the service: its head and counters stay readable until the loop closes it. */
static void async_close_cb(uv_handle_t *h) {
  store_svc_t *v = h->data;
  pthread_cond_destroy(&v->wcond);
  pthread_cond_destroy(&v->rcond);
  pthread_mutex_destroy(&v->mu);
  free(v);
}

void store_svc_stop(store_svc_t *v) {
  if (!v) return;
  pthread_mutex_lock(&v->mu);
  v->stopping = true;
  pthread_cond_broadcast(&v->wcond);
  pthread_cond_broadcast(&v->rcond);
  pthread_mutex_unlock(&v->mu);
  /* The threads finish what is queued, then exit. */
  if (v->wstarted) pthread_join(v->wthread, NULL);
  if (v->rstarted) pthread_join(v->rthread, NULL);
  drain_done(v);
  store_close(v->rdb);
  store_close(v->wdb);
  v->rdb = v->wdb = NULL;
  /* The handle's memory is v: freed when the loop has closed it. */
  uv_close((uv_handle_t *)&v->async, async_close_cb);
}
