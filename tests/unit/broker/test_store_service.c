/* broker/store/service.c: requests run off the loop in submission order, group-committed,
 * each in a savepoint of its own with its audit entry; a lock held by another process
 * delays them (or fails them after the busy timeout) without touching the chain; the queue
 * is bounded; readers see what was written before them; stop drains everything. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>
#include <uv.h>

#include "internal.h" /* the test reaches the connection to break a transaction */
#include "store.h"
#include "tt/limits.h"

typedef struct {
  char base[PATH_MAX];
  char dir[PATH_MAX];
  char db[PATH_MAX];
  uv_loop_t loop;
  store_svc_t *svc;
} fx_t;

static int rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw) { return remove(path); }

static int setup(void **state) {
  fx_t *fx = calloc(1, sizeof *fx);
  if (!fx) return -1;
  const char *tmp = getenv("TT_TEST_TMP");
  snprintf(fx->base, sizeof fx->base, "%s/test_store_service.XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
  if (!mkdtemp(fx->base)) return -1;
  /* Checked, as gcc asks: a TT_TEST_TMP too long for PATH_MAX fails the setup, never cuts. */
  int n = snprintf(fx->dir, sizeof fx->dir, "%s/data", fx->base);
  int m = snprintf(fx->db, sizeof fx->db, "%s/data/broker.db", fx->base);
  if (n < 0 || (size_t)n >= sizeof fx->dir || m < 0 || (size_t)m >= sizeof fx->db) return -1;
  if (uv_loop_init(&fx->loop)) return -1;
  broker_store_t *s = NULL;
  char err[256];
  if (store_open(&s, fx->dir, err, sizeof err)) return -1;
  store_set_busy_timeout(s, 5000);
  if (store_svc_start(&fx->svc, &fx->loop, s, fx->dir, err, sizeof err)) return -1;
  *state = fx;
  return 0;
}

static void stop(fx_t *fx) {
  if (!fx->svc) return;
  store_svc_stop(fx->svc);
  fx->svc = NULL;
  uv_run(&fx->loop, UV_RUN_DEFAULT);
}

static int teardown(void **state) {
  fx_t *fx = *state;
  stop(fx);
  /* Every test ends with nothing left on its loop. */
  assert_int_equal(uv_loop_close(&fx->loop), 0);
  nftw(fx->base, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
  free(fx);
  return 0;
}

static sqlite3 *raw_open(const fx_t *fx) {
  sqlite3 *db = NULL;
  assert_int_equal(sqlite3_open_v2(fx->db, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
  assert_int_equal(sqlite3_busy_timeout(db, 5000), SQLITE_OK);
  return db;
}

static int64_t raw_int(sqlite3 *db, const char *sql) {
  sqlite3_stmt *st = NULL;
  assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
  assert_int_equal(sqlite3_step(st), SQLITE_ROW);
  int64_t v = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  return v;
}

/* ---- requests of the tests -------------------------------------------------------------- */

typedef struct {
  store_req_t req;
  store_audit_rec_t audit;
  int n;            /* which request: its token hash and note */
  bool fail;        /* write, then fail: the savepoint must undo the write */
  int *done_order;  /* completions append n here */
  int *ndone;
  int rc;
  int64_t count;    /* readers: what they counted */
} t_req_t;

static int token_run(broker_store_t *s, store_req_t *r) {
  t_req_t *x = (t_req_t *)r;
  uint8_t hash[32] = {0};
  memcpy(hash, &x->n, sizeof x->n);
  int rc = store_token_add(s, hash, INT64_MAX, 1, "t", "test", 1);
  if (rc) return rc;
  return x->fail ? TT_EINVAL : 0;
}

static int count_run(broker_store_t *s, store_req_t *r) {
  t_req_t *x = (t_req_t *)r;
  int64_t bad = 0;
  return store_audit_verify(s, &x->count, &bad) || bad ? TT_EIO : 0;
}

static void t_done(store_req_t *r) {
  t_req_t *x = (t_req_t *)r;
  x->rc = r->rc;
  x->done_order[(*x->ndone)++] = x->n;
}

static t_req_t *t_new(int n, store_lane_t lane, store_run_fn run, int *order, int *ndone) {
  t_req_t *x = calloc(1, sizeof *x);
  assert_non_null(x);
  x->req.run = run;
  x->req.done = t_done;
  x->req.lane = lane;
  x->req.what = "test";
  x->n = n;
  x->done_order = order;
  x->ndone = ndone;
  if (lane == STORE_LANE_WRITE) {
    x->req.audit = &x->audit;
    snprintf(x->audit.actor, sizeof x->audit.actor, "test");
    snprintf(x->audit.action, sizeof x->audit.action, "token-new");
    snprintf(x->audit.detail, sizeof x->audit.detail, "{\"n\":\"%d\"}", n);
    x->audit.ts_ms = 1000 + n;
  }
  return x;
}

static void tick_cb(uv_timer_t *t) { (void)t; }

/* The service's handle keeps no loop alive (a broker's loop ends when its peers do): a
 * ticking timer keeps this one waiting for completions, for at most 30 s. */
static void run_until(fx_t *fx, const int *ndone, int want) {
  uv_timer_t tick;
  uv_timer_init(&fx->loop, &tick);
  uv_timer_start(&tick, tick_cb, 5, 5);
  uint64_t deadline = uv_now(&fx->loop) + 30000;
  while (*ndone < want && uv_now(&fx->loop) < deadline) uv_run(&fx->loop, UV_RUN_ONCE);
  uv_close((uv_handle_t *)&tick, NULL);
  uv_run(&fx->loop, UV_RUN_NOWAIT);
  assert_int_equal(*ndone, want);
}

/* ---- tests -------------------------------------------------------------------------- */

/* Requests queued while a batch runs commit together: far fewer transactions than
 * requests, completions in submission order, each audit entry with its write. */
static void test_group_commit_in_order(void **state) {
  fx_t *fx = *state;
  enum { N = 500 };
  static int order[N];
  int ndone = 0;
  sqlite3 *db = raw_open(fx);
  assert_int_equal(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
  t_req_t *xs[N];
  for (int i = 0; i < N; i++) {
    xs[i] = t_new(i, STORE_LANE_WRITE, token_run, order, &ndone);
    assert_int_equal(store_svc_submit(fx->svc, &xs[i]->req), 0);
  }
  uint64_t before = store_svc_batches(fx->svc);
  assert_int_equal(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
  run_until(fx, &ndone, N);
  for (int i = 0; i < N; i++) {
    assert_int_equal(order[i], i);
    assert_int_equal(xs[i]->rc, 0);
    assert_int_equal(xs[i]->req.audit_id, i + 1);
    free(xs[i]);
  }
  uint64_t batches = store_svc_batches(fx->svc) - before;
  printf("    %d requests in %llu transactions\n", N, (unsigned long long)batches);
  assert_true(batches <= 1 + N / TT_STORE_BATCH_MAX + 1);
  assert_int_equal(raw_int(db, "SELECT count(*) FROM tokens"), N);
  assert_int_equal(raw_int(db, "SELECT count(*) FROM audit"), N);
  sqlite3_close(db);
}

/* One request that fails inside a batch is undone alone, with its audit entry; the chain
 * goes on from the request before it. */
static void test_failed_request_is_undone_alone(void **state) {
  fx_t *fx = *state;
  int order[4], ndone = 0;
  sqlite3 *db = raw_open(fx);
  assert_int_equal(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
  t_req_t *xs[3];
  for (int i = 0; i < 3; i++) {
    xs[i] = t_new(i, STORE_LANE_WRITE, token_run, order, &ndone);
    xs[i]->fail = i == 1;
    assert_int_equal(store_svc_submit(fx->svc, &xs[i]->req), 0);
  }
  assert_int_equal(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
  run_until(fx, &ndone, 3);
  assert_int_equal(xs[0]->rc, 0);
  assert_int_equal(xs[1]->rc, TT_EINVAL);
  assert_int_equal(xs[1]->req.audit_id, 0);
  assert_int_equal(xs[2]->rc, 0);
  assert_int_equal(xs[2]->req.audit_id, 2);
  assert_int_equal(raw_int(db, "SELECT count(*) FROM tokens"), 2);
  assert_int_equal(raw_int(db, "SELECT count(*) FROM audit"), 2);
  for (int i = 0; i < 3; i++) free(xs[i]);
  /* A reader after them sees an intact chain of 2. */
  t_req_t *r = t_new(9, STORE_LANE_READ, count_run, order, &ndone);
  assert_int_equal(store_svc_submit(fx->svc, &r->req), 0);
  run_until(fx, &ndone, 4);
  assert_int_equal(r->rc, 0);
  assert_int_equal(r->count, 2);
  free(r);
  sqlite3_close(db);
}

/* A lock held past the busy timeout fails the waiting batch: nothing of it is written and
 * the chain's head is where it was, so the next batch links on correctly. */
static void test_busy_timeout_fails_batch_and_keeps_chain(void **state) {
  fx_t *fx = *state;
  int order[4], ndone = 0;
  t_req_t *first = t_new(0, STORE_LANE_WRITE, token_run, order, &ndone);
  assert_int_equal(store_svc_submit(fx->svc, &first->req), 0);
  run_until(fx, &ndone, 1);
  assert_int_equal(first->rc, 0);
  stop(fx); /* again with a short busy timeout */
  broker_store_t *s = NULL;
  char err[256];
  assert_int_equal(store_open(&s, fx->dir, err, sizeof err), 0);
  store_set_busy_timeout(s, 200);
  assert_int_equal(store_svc_start(&fx->svc, &fx->loop, s, fx->dir, err, sizeof err), 0);
  sqlite3 *db = raw_open(fx);
  assert_int_equal(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
  t_req_t *blocked = t_new(1, STORE_LANE_WRITE, token_run, order, &ndone);
  assert_int_equal(store_svc_submit(fx->svc, &blocked->req), 0);
  run_until(fx, &ndone, 2);
  assert_int_not_equal(blocked->rc, 0);
  assert_int_equal(blocked->req.audit_id, 0);
  assert_int_equal(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
  t_req_t *after = t_new(2, STORE_LANE_WRITE, token_run, order, &ndone);
  assert_int_equal(store_svc_submit(fx->svc, &after->req), 0);
  t_req_t *check = t_new(3, STORE_LANE_READ, count_run, order, &ndone);
  assert_int_equal(store_svc_submit(fx->svc, &check->req), 0);
  run_until(fx, &ndone, 4);
  assert_int_equal(after->rc, 0);
  assert_int_equal(after->req.audit_id, 2);
  assert_int_equal(check->rc, 0);
  assert_int_equal(check->count, 2);
  free(first);
  free(blocked);
  free(after);
  free(check);
  sqlite3_close(db);
}

/* What SQLite does on a full disk or an I/O error: the whole transaction is rolled back,
 * not just the failing statement. */
static int rollback_run(broker_store_t *s, store_req_t *r) {
  (void)r;
  sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
  return TT_EIO;
}

/* A request whose failure took the whole batch's transaction with it: nothing of the
 * batch stands (the requests before it are answered failed, not done), none after it
 * commits on its own, and the chain goes on from what is on disk. */
static int g_gate[2];

/* Holds the writer in a batch of its own until the test writes a byte: what is submitted
 * meanwhile makes up the next batch, whole. */
static int gate_run(broker_store_t *s, store_req_t *r) {
  (void)s, (void)r;
  char c;
  return read(g_gate[0], &c, 1) == 1 ? 0 : TT_EIO;
}

static void test_a_lost_transaction_fails_the_whole_batch(void **state) {
  fx_t *fx = *state;
  int order[6], ndone = 0;
  sqlite3 *db = raw_open(fx);
  assert_int_equal(pipe(g_gate), 0);
  t_req_t *gate = t_new(9, STORE_LANE_WRITE, gate_run, order, &ndone);
  gate->req.audit = NULL;
  assert_int_equal(store_svc_submit(fx->svc, &gate->req), 0);
  t_req_t *xs[3];
  for (int i = 0; i < 3; i++) {
    xs[i] = t_new(i, STORE_LANE_WRITE, i == 1 ? rollback_run : token_run, order, &ndone);
    assert_int_equal(store_svc_submit(fx->svc, &xs[i]->req), 0);
  }
  assert_int_equal(write(g_gate[1], "x", 1), 1);
  run_until(fx, &ndone, 4);
  close(g_gate[0]);
  close(g_gate[1]);
  free(gate); /* alone, or in the lost batch too if the writer took it with the others */
  for (int i = 0; i < 3; i++) {
    assert_int_not_equal(xs[i]->rc, 0);
    assert_int_equal(xs[i]->req.audit_id, 0);
    free(xs[i]);
  }
  assert_int_equal(raw_int(db, "SELECT count(*) FROM tokens"), 0);
  assert_int_equal(raw_int(db, "SELECT count(*) FROM audit"), 0);
  t_req_t *after = t_new(7, STORE_LANE_WRITE, token_run, order, &ndone);
  assert_int_equal(store_svc_submit(fx->svc, &after->req), 0);
  t_req_t *check = t_new(8, STORE_LANE_READ, count_run, order, &ndone);
  assert_int_equal(store_svc_submit(fx->svc, &check->req), 0);
  run_until(fx, &ndone, 6);
  assert_int_equal(after->rc, 0);
  assert_int_equal(after->req.audit_id, 1);
  assert_int_equal(check->rc, 0);
  assert_int_equal(check->count, 1);
  free(after);
  free(check);
  sqlite3_close(db);
}

/* TT_STORE_QUEUE_MAX requests may wait; the next is refused as busy (and its callback is
 * never called); once the lock goes, every accepted one completes. */
static void test_queue_is_bounded(void **state) {
  fx_t *fx = *state;
  static int order[TT_STORE_QUEUE_MAX + TT_STORE_BATCH_MAX + 1];
  int ndone = 0, n = 0;
  sqlite3 *db = raw_open(fx);
  assert_int_equal(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
  t_req_t **xs = calloc(TT_STORE_QUEUE_MAX + TT_STORE_BATCH_MAX + 1, sizeof *xs);
  assert_non_null(xs);
  for (;;) {
    assert_true(n <= (int)(TT_STORE_QUEUE_MAX + TT_STORE_BATCH_MAX));
    t_req_t *x = t_new(n, STORE_LANE_WRITE, NULL, order, &ndone);
    x->req.audit = NULL;
    int rc = store_svc_submit(fx->svc, &x->req);
    if (rc) {
      assert_int_equal(rc, TT_EBUSY);
      free(x);
      break;
    }
    xs[n++] = x;
  }
  /* The writer may hold one batch outside the queue, waiting for the lock. */
  assert_true(n >= (int)TT_STORE_QUEUE_MAX);
  assert_true(n <= (int)(TT_STORE_QUEUE_MAX + TT_STORE_BATCH_MAX));
  assert_int_equal(ndone, 0);
  assert_int_equal(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
  run_until(fx, &ndone, n);
  for (int i = 0; i < n; i++) {
    assert_int_equal(xs[i]->rc, 0);
    free(xs[i]);
  }
  free(xs);
  sqlite3_close(db);
}

/* Stop finishes what was queued: every completion runs, nothing is left on the loop, and a
 * request after stop began is refused. */
static void test_stop_drains(void **state) {
  fx_t *fx = *state;
  enum { N = 100 };
  int order[N], ndone = 0;
  t_req_t *xs[N];
  for (int i = 0; i < N; i++) {
    xs[i] = t_new(i, STORE_LANE_WRITE, token_run, order, &ndone);
    assert_int_equal(store_svc_submit(fx->svc, &xs[i]->req), 0);
  }
  stop(fx);
  assert_int_equal(ndone, N);
  for (int i = 0; i < N; i++) {
    assert_int_equal(xs[i]->rc, 0);
    free(xs[i]);
  }
  sqlite3 *db = raw_open(fx);
  assert_int_equal(raw_int(db, "SELECT count(*) FROM audit"), N);
  sqlite3_close(db);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(test_group_commit_in_order, setup, teardown),
    cmocka_unit_test_setup_teardown(test_failed_request_is_undone_alone, setup, teardown),
    cmocka_unit_test_setup_teardown(test_busy_timeout_fails_batch_and_keeps_chain, setup, teardown),
    cmocka_unit_test_setup_teardown(test_a_lost_transaction_fails_the_whole_batch, setup, teardown),
    cmocka_unit_test_setup_teardown(test_queue_is_bounded, setup, teardown),
    cmocka_unit_test_setup_teardown(test_stop_drains, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
