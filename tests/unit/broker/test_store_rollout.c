/* broker/store/rollout/rollout.c: agent releases and rollouts as rows. Releases: newest
 * first, one per (package, version, arch, channel) and per sha256, at most TT_RELEASES_MAX,
 * removed by sha256. Rollouts: the active one (running or paused) found at start, the latest
 * for status, each device's row updated in place and listed by wave. */
#include <errno.h>
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

#include "store.h"

typedef struct {
  char base[PATH_MAX];
  char dir[PATH_MAX];
  char db[PATH_MAX];
  broker_store_t *s;
} fx_t;

static int rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st;
  (void)flag;
  (void)ftw;
  return remove(path);
}

static int setup(void **state) {
  fx_t *fx = calloc(1, sizeof *fx);
  if (fx == NULL) return -1;
  const char *tmp = getenv("TT_TEST_TMP");
  if (tmp == NULL || tmp[0] == '\0') tmp = "/tmp";
  snprintf(fx->base, sizeof fx->base, "%s/test_store_rollout.XXXXXX", tmp);
  if (mkdtemp(fx->base) == NULL) {
    free(fx);
    return -1;
  }
  int n = snprintf(fx->dir, sizeof fx->dir, "%s/data", fx->base);
  int m = snprintf(fx->db, sizeof fx->db, "%s/data/broker.db", fx->base);
  char err[512];
  if (n < 0 || (size_t)n >= sizeof fx->dir || m < 0 || (size_t)m >= sizeof fx->db ||
      store_open(&fx->s, fx->dir, err, sizeof err) != 0) {
    nftw(fx->base, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    free(fx);
    return -1;
  }
  *state = fx;
  return 0;
}

static int teardown(void **state) {
  fx_t *fx = *state;
  store_close(fx->s);
  nftw(fx->base, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
  free(fx);
  return 0;
}

static void release(store_release_t *r, int n, const char *version, const char *channel) {
  memset(r, 0, sizeof *r);
  snprintf(r->sha256, sizeof r->sha256, "%064x", n);
  snprintf(r->package, sizeof r->package, "tether-agent");
  snprintf(r->version, sizeof r->version, "%s", version);
  snprintf(r->arch, sizeof r->arch, "amd64");
  snprintf(r->channel, sizeof r->channel, "%s", channel);
  r->size = 1000 + n;
  snprintf(r->key, sizeof r->key, "sha256:%064x", 7);
  snprintf(r->manifest, sizeof r->manifest, "tether-release 1\n(manifest %d)\n", n);
  snprintf(r->added_by, sizeof r->added_by, "boss");
  r->added_ms = 1000 * n;
}

typedef struct {
  store_release_t r[TT_RELEASES_MAX + 1];
  size_t n;
} rels_t;

static int rel_cb(void *ctx, const store_release_t *r) {
  rels_t *v = ctx;
  v->r[v->n++] = *r;
  return 0;
}

static void test_releases(void **state) {
  fx_t *fx = *state;
  static rels_t got;
  store_release_t a, b, c;
  release(&a, 1, "0.1.0", "stable");
  release(&b, 2, "0.1.1", "stable");
  assert_int_equal(store_release_add(fx->s, &a), 0);
  assert_int_equal(store_release_add(fx->s, &b), 0);
  got.n = 0;
  assert_int_equal(store_release_list(fx->s, rel_cb, &got), 0);
  assert_int_equal(got.n, 2);
  assert_string_equal(got.r[0].version, "0.1.1"); /* newest first */
  assert_memory_equal(&got.r[1], &a, sizeof a);   /* every field as added */

  release(&c, 3, "0.1.1", "stable"); /* that version, arch and channel again */
  assert_int_equal(store_release_add(fx->s, &c), -EEXIST);
  release(&c, 1, "0.2.0", "beta"); /* that package (sha256) again */
  assert_int_equal(store_release_add(fx->s, &c), -EEXIST);
  release(&c, 3, "0.1.1", "beta"); /* the same version in another channel is another release */
  assert_int_equal(store_release_add(fx->s, &c), 0);

  assert_int_equal(store_release_remove(fx->s, b.sha256), 0);
  got.n = 0;
  assert_int_equal(store_release_list(fx->s, rel_cb, &got), 0);
  assert_int_equal(got.n, 2);
  assert_string_equal(got.r[0].channel, "beta");
  assert_string_equal(got.r[1].sha256, a.sha256);

  /* Up to TT_RELEASES_MAX, then full. */
  for (int i = 10; got.n < TT_RELEASES_MAX; i++, got.n++) {
    char v[16];
    snprintf(v, sizeof v, "1.%d", i);
    release(&c, i, v, "stable");
    assert_int_equal(store_release_add(fx->s, &c), 0);
  }
  release(&c, 9999, "9.9", "stable");
  assert_int_equal(store_release_add(fx->s, &c), TT_EFULL);
}

typedef struct {
  store_rollout_dev_t d[8];
  size_t n;
} devs_t;

static int dev_cb(void *ctx, const store_rollout_dev_t *d) {
  devs_t *v = ctx;
  if (v->n < 8) v->d[v->n++] = *d;
  return 0;
}

static void rollout(store_rollout_t *r, const char *version) {
  memset(r, 0, sizeof *r);
  snprintf(r->version, sizeof r->version, "%s", version);
  snprintf(r->channel, sizeof r->channel, "stable");
  snprintf(r->group, sizeof r->group, "*");
  r->canary_pct = 50, r->wave_pct = 50, r->pause_on = 1, r->health_s = 600;
  snprintf(r->state, sizeof r->state, "running");
  r->waves = 2;
  snprintf(r->started_by, sizeof r->started_by, "boss");
  r->started_ms = r->updated_ms = 5000;
}

static void test_rollouts(void **state) {
  fx_t *fx = *state;
  store_rollout_t r, got;
  assert_int_equal(store_rollout_get(fx->s, 0, true, &got), 0);  /* none active */
  assert_int_equal(store_rollout_get(fx->s, 0, false, &got), 0); /* none at all */

  rollout(&r, "0.1.1");
  store_rollout_dev_t d[3] = {0};
  const char *names[3] = {"pc-3", "pc-1", "pc-2"};
  for (int i = 0; i < 3; i++) {
    snprintf(d[i].device, sizeof d[i].device, "%s", names[i]);
    d[i].wave = i == 0 ? 0 : 1;
    snprintf(d[i].state, sizeof d[i].state, "pending");
    snprintf(d[i].from_version, sizeof d[i].from_version, "0.1.0");
    d[i].updated_ms = 5000;
  }
  assert_int_equal(store_rollout_add(fx->s, &r, d, 3), 0);
  assert_true(r.id > 0);
  assert_int_equal(store_rollout_get(fx->s, 0, true, &got), 1);
  assert_memory_equal(&got, &r, sizeof r);

  /* A device's step, in place; the list by wave, then device. */
  snprintf(d[2].state, sizeof d[2].state, "rolled-back");
  snprintf(d[2].reason, sizeof d[2].reason, "back on 0.1.0: did not come back healthy");
  d[2].done = d[2].size = 4096;
  d[2].updated_ms = 6000;
  assert_int_equal(store_rollout_dev_update(fx->s, r.id, &d[2]), 0);
  devs_t v = {0};
  assert_int_equal(store_rollout_devices(fx->s, r.id, dev_cb, &v), 0);
  assert_int_equal(v.n, 3);
  assert_string_equal(v.d[0].device, "pc-3");
  assert_string_equal(v.d[1].device, "pc-1");
  assert_string_equal(v.d[2].device, "pc-2");
  assert_memory_equal(&v.d[2], &d[2], sizeof d[2]);

  /* Paused is still active; cancelled is not, and stays the latest. */
  snprintf(r.state, sizeof r.state, "paused");
  snprintf(r.why, sizeof r.why, "1 failure (pauses at 1)");
  r.failures = 1;
  r.updated_ms = 7000;
  assert_int_equal(store_rollout_update(fx->s, &r), 0);
  assert_int_equal(store_rollout_get(fx->s, 0, true, &got), 1);
  assert_memory_equal(&got, &r, sizeof r);
  snprintf(r.state, sizeof r.state, "cancelled");
  assert_int_equal(store_rollout_update(fx->s, &r), 0);
  assert_int_equal(store_rollout_get(fx->s, 0, true, &got), 0);
  assert_int_equal(store_rollout_get(fx->s, 0, false, &got), 1);
  assert_int_equal(got.id, r.id);

  /* A state the schema does not know is refused, and changes nothing. */
  store_rollout_t bad = r;
  snprintf(bad.state, sizeof bad.state, "exploded");
  assert_int_equal(store_rollout_update(fx->s, &bad), TT_EINVAL);
  assert_int_equal(store_rollout_get(fx->s, r.id, false, &got), 1);
  assert_string_equal(got.state, "cancelled");

  /* A second rollout: the latest, the active one; the first by its id. */
  store_rollout_t r2;
  rollout(&r2, "0.1.2");
  assert_int_equal(store_rollout_add(fx->s, &r2, d, 1), 0);
  assert_int_equal(store_rollout_get(fx->s, 0, false, &got), 1);
  assert_int_equal(got.id, r2.id);
  assert_int_equal(store_rollout_get(fx->s, 0, true, &got), 1);
  assert_int_equal(got.id, r2.id);
  assert_int_equal(store_rollout_get(fx->s, r.id, false, &got), 1);
  assert_string_equal(got.version, "0.1.1");
  v.n = 0;
  assert_int_equal(store_rollout_devices(fx->s, r2.id, dev_cb, &v), 0);
  assert_int_equal(v.n, 1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_releases, setup, teardown),
      cmocka_unit_test_setup_teardown(test_rollouts, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
