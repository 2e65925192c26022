/* The transfer pool: threads of our own for file work (not libuv's pool, which getaddrinfo
 * and uv_fs share), because the agent changes these threads' file-system identity for good
 * (see tt/xfer.h) and nothing else may run on them. Jobs are queued under a mutex; finished
 * ones come back to the loop through one uv_async_t, in the order they finished. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "tt/defer.h"
#include "tt/limits.h"
#include "tt/log.h"
#include "tt/xfer.h"
#include "xfer_int.h"

#define POOL_THREADS_MAX 8u
#define XFER_POOL_NICE 10

typedef struct job_s {
  struct job_s *next;
  void (*work)(void *);
  void (*done)(void *);
  void *arg;
} job_t;

static struct {
  bool started, stopping;
  bool stepped;     /* no threads: xfer_pool_work_one and xfer_pool_deliver run the jobs */
  unsigned pending; /* submitted, completion not yet run (loop thread only) */
  pthread_mutex_t mu;
  pthread_cond_t cv;
  job_t *todo, *todo_tail;
  job_t *done, *done_tail;
  pthread_t th[POOL_THREADS_MAX];
  unsigned nth;
  mode_t umask;     /* the process's, read at start (xfer_umask) */
  uv_async_t async;
  int (*init)(void *);
  void *init_arg;
  int init_rc;      /* the first init failure */
  unsigned inited;  /* threads that ran init */
  pthread_cond_t init_cv;
} g = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER, .init_cv = PTHREAD_COND_INITIALIZER};

static void *pool_main(void *unused) {
  (void)unused;
  /* File work yields the CPU to the loop thread, which carries keystrokes and screens: a
   * lower priority for this thread only (Linux keeps nice per thread). */
  (void)!setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), XFER_POOL_NICE);
  int rc = g.init ? g.init(g.init_arg) : 0;
  pthread_mutex_lock(&g.mu);
  if (rc && !g.init_rc) g.init_rc = rc;
  g.inited++;
  pthread_cond_broadcast(&g.init_cv);
  /* A thread whose identity did not take runs nothing. */
  while (!rc) {
    while (!g.todo && !g.stopping) pthread_cond_wait(&g.cv, &g.mu);
    if (!g.todo) break;
    job_t *j = g.todo;
    g.todo = j->next;
    if (!g.todo) g.todo_tail = NULL;
    pthread_mutex_unlock(&g.mu);
    j->work(j->arg);
    pthread_mutex_lock(&g.mu);
    j->next = NULL;
    if (g.done_tail) g.done_tail->next = j;
    else g.done = j;
    g.done_tail = j;
    uv_async_send(&g.async);
  }
  pthread_mutex_unlock(&g.mu);
  return NULL;
}

/* Run the completions of the jobs finished so far; returns how many. */
static unsigned run_done(void) {
  unsigned n = 0;
  pthread_mutex_lock(&g.mu);
  job_t *j = g.done;
  g.done = g.done_tail = NULL;
  pthread_mutex_unlock(&g.mu);
  while (j) {
    job_t *next = j->next;
    g.pending--;
    n++;
    j->done(j->arg);
    free(j);
    j = next;
  }
  return n;
}

/* The process's umask. Linux shows it in /proc/self/status (since 4.7); else it is read by
 * setting it, which is safe here because no pool thread runs yet. */
static mode_t read_umask(void) {
  FILE *f = fopen("/proc/self/status", "re");
  if (f) {
    char line[256];
    unsigned m;
    while (fgets(line, sizeof(line), f))
      if (sscanf(line, "Umask: %o", &m) == 1) {
        fclose(f);
        return (mode_t)(m & 0777);
      }
    fclose(f);
  }
  mode_t m = umask(0);
  umask(m);
  return m;
}

mode_t xfer_umask(void) { return g.umask; }

/* The chunks finished together leave in one write per link (tt/defer.h). */
static void pool_async(uv_async_t *a) {
  (void)a;
  tt_defer_begin();
  (void)run_done();
  tt_defer_end();
}

int tt_xfer_pool_start(uv_loop_t *loop, unsigned threads, int (*init)(void *arg), void *arg) {
  if (g.started) return TT_ESTATE;
  if (threads == 0 || threads > POOL_THREADS_MAX) return TT_EINVAL;
  int rc = uv_async_init(loop, &g.async, pool_async);
  if (rc) return rc;
  /* Idle, the pool must not keep the loop alive. */
  uv_unref((uv_handle_t *)&g.async);
  g.umask = read_umask();
  g.init = init;
  g.init_arg = arg;
  g.init_rc = 0;
  g.inited = 0;
  g.stopping = false;
  g.nth = 0;
  for (unsigned i = 0; i < threads; i++) {
    if (pthread_create(&g.th[i], NULL, pool_main, NULL)) {
      rc = TT_ENOMEM;
      break;
    }
    g.nth++;
  }
  pthread_mutex_lock(&g.mu);
  while (g.inited < g.nth) pthread_cond_wait(&g.init_cv, &g.mu);
  if (!rc) rc = g.init_rc;
  pthread_mutex_unlock(&g.mu);
  g.started = true;
  if (rc) tt_xfer_pool_stop();
  return rc;
}

void tt_xfer_pool_stop(void) {
  if (!g.started) return;
  if (g.stepped) {
    while (xfer_pool_work_one()) xfer_pool_deliver();
    xfer_pool_deliver();
  }
  pthread_mutex_lock(&g.mu);
  g.stopping = true;
  pthread_cond_broadcast(&g.cv);
  pthread_mutex_unlock(&g.mu);
  /* The threads drain the queue before they leave: every job has run. */
  for (unsigned i = 0; i < g.nth; i++) pthread_join(g.th[i], NULL);
  /* Their completions run here, on the loop's thread, so that what they hold is let go
   * (an xfer freed while its job ran is released by that job's completion). */
  pool_async(&g.async);
  uv_close((uv_handle_t *)&g.async, NULL);
  g.started = false;
  g.stepped = false;
}

int tt_xfer_pool_submit(void (*work)(void *arg), void (*done)(void *arg), void *arg) {
  if (!g.started || g.stopping) return TT_ESTATE;
  job_t *j = calloc(1, sizeof(*j));
  if (!j) return TT_ENOMEM;
  j->work = work;
  j->done = done;
  j->arg = arg;
  pthread_mutex_lock(&g.mu);
  if (g.todo_tail) g.todo_tail->next = j;
  else g.todo = j;
  g.todo_tail = j;
  pthread_cond_signal(&g.cv);
  pthread_mutex_unlock(&g.mu);
  g.pending++;
  return 0;
}

bool tt_xfer_pool_running(void) { return g.started; }

unsigned xfer_pool_pending(void) { return g.pending; }

int xfer_pool_start_stepped(uv_loop_t *loop) {
  if (g.started) return TT_ESTATE;
  int rc = uv_async_init(loop, &g.async, pool_async);
  if (rc) return rc;
  uv_unref((uv_handle_t *)&g.async);
  g.umask = read_umask();
  g.stopping = false;
  g.nth = 0;
  g.stepped = true;
  g.started = true;
  return 0;
}

bool xfer_pool_work_one(void) {
  if (!g.stepped) return false;
  pthread_mutex_lock(&g.mu);
  job_t *j = g.todo;
  if (j) {
    g.todo = j->next;
    if (!g.todo) g.todo_tail = NULL;
  }
  pthread_mutex_unlock(&g.mu);
  if (!j) return false;
  j->work(j->arg);
  pthread_mutex_lock(&g.mu);
  j->next = NULL;
  if (g.done_tail) g.done_tail->next = j;
  else g.done = j;
  g.done_tail = j;
  pthread_mutex_unlock(&g.mu);
  return true;
}

unsigned xfer_pool_deliver(void) { return g.started ? run_done() : 0; }
