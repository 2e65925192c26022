/* The checks' engine (agent/checks/engine.c): hysteresis run by run. A value hovering at its
 * threshold never flaps; states change after exactly raise_after or clear_after runs in a
 * row; unknown is its own state and never a pass; results that go away are dropped; the
 * table is bounded. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "checks.h"

#define DISK TT_CHECK_DISK_USED
#define MEM TT_CHECK_MEMORY_PRESSURE

typedef struct {
  agent_checks_engine_t e;
  int64_t now;
} world_t;

static int setup(void **state) {
  static world_t w;
  memset(&w, 0, sizeof(w));
  assert_int_equal(agent_checks_engine_init(&w.e, TT_CHECK_RESULTS_MAX), 0);
  w.now = 1700000000000;
  *state = &w;
  return 0;
}

static int teardown(void **state) {
  world_t *w = *state;
  agent_checks_engine_free(&w->e);
  return 0;
}

/* One run of check with one result per "dim=raw" word: o ok, f failing, u unknown. */
static unsigned run_of(world_t *w, tt_check_id_t check, uint32_t raise, uint32_t clear, const char *spec) {
  agent_check_run_t r;
  agent_check_run_init(&r);
  snprintf(r.threshold, sizeof(r.threshold), "90%%");
  char buf[256];
  snprintf(buf, sizeof(buf), "%s", spec);
  for (char *save = NULL, *t = strtok_r(buf, " ", &save); t; t = strtok_r(NULL, " ", &save)) {
    char *eq = strchr(t, '=');
    assert_non_null(eq);
    *eq = 0;
    tt_check_state_t raw = eq[1] == 'o' ? TT_CHECK_OK : eq[1] == 'f' ? TT_CHECK_FAILING : TT_CHECK_UNKNOWN;
    assert_int_equal(agent_check_sample(&r, t, raw, raw == TT_CHECK_UNKNOWN ? "could not tell" : NULL, "v%s",
                                        eq + 1),
                     0);
  }
  w->now += 60000;
  unsigned out = agent_checks_engine_apply(&w->e, check, &r, raise, clear, w->now);
  agent_check_run_free(&r);
  return out;
}

/* One result of one dimension "/" per run: raw is 'o', 'f' or 'u'. */
static unsigned one(world_t *w, uint32_t raise, uint32_t clear, char raw) {
  char spec[8];
  snprintf(spec, sizeof(spec), "/=%c", raw);
  return run_of(w, DISK, raise, clear, spec);
}

static tt_check_state_t state_of(world_t *w, tt_check_id_t check, const char *dim) {
  agent_check_result_t *r = agent_checks_engine_find(&w->e, check, dim);
  assert_non_null(r);
  return r->state;
}

static void test_exact_counts_to_raise_and_clear(void **state) {
  world_t *w = *state;
  /* New: pending until a verdict; three failing runs raise it, not two. */
  assert_int_equal(one(w, 3, 2, 'f'), 0);
  assert_int_equal(state_of(w, DISK, "/"), TT_CHECK_PENDING);
  assert_int_equal(one(w, 3, 2, 'f'), 0);
  assert_int_equal(state_of(w, DISK, "/"), TT_CHECK_PENDING);
  agent_check_result_t *r = agent_checks_engine_find(&w->e, DISK, "/");
  assert_false(r->dirty);
  assert_int_equal(one(w, 3, 2, 'f'), AGENT_CHECKS_CHANGED);
  assert_int_equal(r->state, TT_CHECK_FAILING);
  assert_true(r->dirty);
  assert_int_equal(r->since_ms, w->now);
  assert_int_equal(r->streak, 3);
  assert_int_equal(r->last, TT_CHECK_FAILING);
  assert_string_equal(r->value, "vf");
  assert_string_equal(r->threshold, "90%");
  int64_t raised = w->now;
  /* More failing runs change nothing. */
  r->dirty = false;
  assert_int_equal(one(w, 3, 2, 'f'), 0);
  assert_false(r->dirty);
  assert_int_equal(r->since_ms, raised);
  /* One passing run does not clear it; the second does. */
  assert_int_equal(one(w, 3, 2, 'o'), 0);
  assert_int_equal(r->state, TT_CHECK_FAILING);
  assert_int_equal(r->last, TT_CHECK_OK);
  assert_int_equal(r->streak, 1);
  assert_int_equal(one(w, 3, 2, 'o'), AGENT_CHECKS_CHANGED);
  assert_int_equal(r->state, TT_CHECK_OK);
  assert_int_equal(r->since_ms, w->now);
  /* raise_after 1: the first failing run raises it. */
  assert_int_equal(one(w, 1, 1, 'f'), AGENT_CHECKS_CHANGED);
  assert_int_equal(r->state, TT_CHECK_FAILING);
  assert_int_equal(one(w, 1, 1, 'o'), AGENT_CHECKS_CHANGED);
  assert_int_equal(r->state, TT_CHECK_OK);
}

static void test_new_result_gets_a_verdict_only_by_counts(void **state) {
  world_t *w = *state;
  /* clear_after 2: a new healthy result is pending after one run, ok after two. */
  assert_int_equal(one(w, 3, 2, 'o'), 0);
  assert_int_equal(state_of(w, DISK, "/"), TT_CHECK_PENDING);
  assert_int_equal(one(w, 3, 2, 'o'), AGENT_CHECKS_CHANGED);
  assert_int_equal(state_of(w, DISK, "/"), TT_CHECK_OK);
}

static void test_hovering_does_not_flap(void **state) {
  world_t *w = *state;
  one(w, 2, 2, 'o');
  one(w, 2, 2, 'o');
  assert_int_equal(state_of(w, DISK, "/"), TT_CHECK_OK);
  agent_check_result_t *r = agent_checks_engine_find(&w->e, DISK, "/");
  r->dirty = false;
  int64_t since = r->since_ms;
  /* Over the line, under it, over it... for a hundred runs: never raised. */
  for (int i = 0; i < 100; i++) assert_int_equal(one(w, 2, 2, i % 2 ? 'o' : 'f'), 0);
  assert_int_equal(r->state, TT_CHECK_OK);
  assert_false(r->dirty);
  assert_int_equal(r->since_ms, since);
  /* Raised, then hovering: never cleared either. */
  one(w, 2, 2, 'f');
  one(w, 2, 2, 'f');
  assert_int_equal(r->state, TT_CHECK_FAILING);
  r->dirty = false;
  for (int i = 0; i < 100; i++) assert_int_equal(one(w, 2, 2, i % 2 ? 'f' : 'o'), 0);
  assert_int_equal(r->state, TT_CHECK_FAILING);
  assert_false(r->dirty);
}

static void test_unknown_is_never_a_pass(void **state) {
  world_t *w = *state;
  one(w, 2, 2, 'f');
  one(w, 2, 2, 'f');
  agent_check_result_t *r = agent_checks_engine_find(&w->e, DISK, "/");
  assert_int_equal(r->state, TT_CHECK_FAILING);
  /* ok, unknown, ok, unknown...: the unknowns break every passing streak. */
  for (int i = 0; i < 20; i++) assert_int_equal(one(w, 2, 2, i % 2 ? 'o' : 'u'), 0);
  assert_int_equal(r->state, TT_CHECK_FAILING);
  /* raise_after unknowns in a row: unknown, still not ok. */
  assert_int_equal(one(w, 2, 2, 'u'), 0);
  assert_int_equal(one(w, 2, 2, 'u'), AGENT_CHECKS_CHANGED);
  assert_int_equal(r->state, TT_CHECK_UNKNOWN);
  assert_string_equal(r->message, "could not tell");
  /* From unknown, clear_after passes make it ok. */
  one(w, 2, 2, 'o');
  assert_int_equal(r->state, TT_CHECK_UNKNOWN);
  assert_int_equal(one(w, 2, 2, 'o'), AGENT_CHECKS_CHANGED);
  assert_int_equal(r->state, TT_CHECK_OK);
  /* An unknown between failing runs breaks the failing streak too. */
  one(w, 3, 1, 'f');
  one(w, 3, 1, 'f');
  one(w, 3, 1, 'u');
  one(w, 3, 1, 'f');
  one(w, 3, 1, 'f');
  assert_int_equal(r->state, TT_CHECK_OK);
  assert_int_equal(one(w, 3, 1, 'f'), AGENT_CHECKS_CHANGED);
  assert_int_equal(r->state, TT_CHECK_FAILING);
}

static void test_failed_run_makes_every_result_unknown(void **state) {
  world_t *w = *state;
  run_of(w, DISK, 1, 1, "/=o /var=f");
  assert_int_equal(state_of(w, DISK, "/"), TT_CHECK_OK);
  assert_int_equal(state_of(w, DISK, "/var"), TT_CHECK_FAILING);
  agent_check_run_t r;
  agent_check_run_init(&r);
  agent_check_fail(&r, "cannot read /proc/self/mounts: %s", "No such file or directory");
  w->now += 1000;
  assert_int_equal(agent_checks_engine_apply(&w->e, DISK, &r, 1, 1, w->now), AGENT_CHECKS_CHANGED);
  assert_int_equal(state_of(w, DISK, "/"), TT_CHECK_UNKNOWN);
  assert_int_equal(state_of(w, DISK, "/var"), TT_CHECK_UNKNOWN);
  agent_check_result_t *v = agent_checks_engine_find(&w->e, DISK, "/var");
  assert_string_equal(v->message, "cannot read /proc/self/mounts: No such file or directory");
  assert_string_equal(v->value, "");
  assert_int_equal(w->e.n, 2); /* nothing dropped, nothing added */
  /* A check with no results yet: one of dimension "". */
  w->now += 1000;
  assert_int_equal(agent_checks_engine_apply(&w->e, MEM, &r, 2, 1, w->now), 0);
  assert_int_equal(state_of(w, MEM, ""), TT_CHECK_PENDING);
  w->now += 1000;
  assert_int_equal(agent_checks_engine_apply(&w->e, MEM, &r, 2, 1, w->now), AGENT_CHECKS_CHANGED);
  assert_int_equal(state_of(w, MEM, ""), TT_CHECK_UNKNOWN);
  agent_check_run_free(&r);
  /* The helper answers again: the "" result goes, the real one comes. */
  assert_int_equal(run_of(w, MEM, 2, 1, "=o") & AGENT_CHECKS_DROPPED, 0); /* dimension "" is the one */
  assert_int_equal(state_of(w, MEM, ""), TT_CHECK_OK);
}

static void test_gone_dimensions_are_dropped(void **state) {
  world_t *w = *state;
  assert_int_equal(run_of(w, DISK, 1, 1, "/=o /media/usb=f /var=o"), AGENT_CHECKS_CHANGED);
  run_of(w, MEM, 1, 1, "=o");
  assert_int_equal(w->e.n, 4);
  /* The stick is unmounted: its result goes, with the failing state it had. */
  assert_int_equal(run_of(w, DISK, 1, 1, "/=o /var=o"), AGENT_CHECKS_DROPPED);
  assert_null(agent_checks_engine_find(&w->e, DISK, "/media/usb"));
  assert_int_equal(w->e.n, 3);
  /* Other checks' results stay, in order. */
  assert_string_equal(w->e.r[0].dim, "/");
  assert_string_equal(w->e.r[1].dim, "/var");
  assert_int_equal(w->e.r[2].check, MEM);
  /* Mounted again: a new result, pending again. */
  run_of(w, DISK, 2, 2, "/=o /var=o /media/usb=f");
  assert_int_equal(state_of(w, DISK, "/media/usb"), TT_CHECK_PENDING);
  /* Not applicable: every result of the check goes. */
  agent_check_run_t r;
  agent_check_run_init(&r);
  agent_check_na(&r, "no swap");
  assert_int_equal(agent_checks_engine_apply(&w->e, DISK, &r, 1, 1, w->now), AGENT_CHECKS_DROPPED);
  assert_int_equal(w->e.n, 1);
  assert_int_equal(agent_checks_engine_apply(&w->e, DISK, &r, 1, 1, w->now), 0);
  agent_check_run_free(&r);
  /* Turned off. */
  assert_int_equal(agent_checks_engine_drop(&w->e, MEM), AGENT_CHECKS_DROPPED);
  assert_int_equal(w->e.n, 0);
}

static void test_named_twice_counts_once(void **state) {
  world_t *w = *state;
  /* raise_after 2: had the second "/" counted, this one run would raise it. */
  run_of(w, DISK, 2, 2, "/=f /=f");
  assert_int_equal(state_of(w, DISK, "/"), TT_CHECK_PENDING);
  assert_int_equal(agent_checks_engine_find(&w->e, DISK, "/")->streak, 1);
  assert_int_equal(w->e.n, 1);
}

static void test_bounded(void **state) {
  (void)state;
  world_t w = {.now = 1000};
  assert_int_equal(agent_checks_engine_init(&w.e, 0), TT_EINVAL);
  assert_int_equal(agent_checks_engine_init(&w.e, TT_CHECK_RESULTS_MAX + 1), TT_EINVAL);
  assert_int_equal(agent_checks_engine_init(&w.e, 3), 0);
  run_of(&w, DISK, 1, 1, "/a=f /b=f");
  run_of(&w, MEM, 1, 1, "=f");
  /* Full: new dimensions are not tracked and counted; the ones it has go on. */
  run_of(&w, DISK, 1, 1, "/a=o /b=f /c=f /d=f");
  assert_int_equal(w.e.n, 3);
  assert_int_equal(w.e.over[DISK], 2);
  assert_null(agent_checks_engine_find(&w.e, DISK, "/c"));
  assert_int_equal(state_of(&w, DISK, "/a"), TT_CHECK_OK);
  /* Room again (b unmounted): c comes in. */
  run_of(&w, DISK, 1, 1, "/a=o /c=f");
  assert_int_equal(w.e.over[DISK], 0);
  assert_int_equal(state_of(&w, DISK, "/c"), TT_CHECK_FAILING);
  agent_checks_engine_free(&w.e);
  /* A run keeps at most TT_CHECK_RESULTS_MAX samples, and no dimension past
   * TT_CHECK_DIM_MAX. */
  agent_check_run_t r;
  agent_check_run_init(&r);
  char dim[TT_CHECK_DIM_MAX + 2];
  memset(dim, 'x', sizeof(dim) - 1);
  dim[sizeof(dim) - 1] = 0;
  assert_int_equal(agent_check_sample(&r, dim, TT_CHECK_OK, NULL, "v"), TT_ETOOBIG);
  dim[TT_CHECK_DIM_MAX] = 0;
  assert_int_equal(agent_check_sample(&r, dim, TT_CHECK_OK, NULL, "v"), 0);
  for (unsigned i = 1; i < TT_CHECK_RESULTS_MAX; i++) {
    char d[16];
    snprintf(d, sizeof(d), "/m%u", i);
    assert_int_equal(agent_check_sample(&r, d, TT_CHECK_OK, NULL, "v"), 0);
  }
  assert_int_equal(agent_check_sample(&r, "/one-more", TT_CHECK_OK, NULL, "v"), TT_EFULL);
  assert_int_equal(r.n, TT_CHECK_RESULTS_MAX);
  assert_int_equal(r.over, 2);
  agent_check_run_free(&r);
}

static void test_text_is_made_safe(void **state) {
  (void)state;
  agent_check_run_t r;
  agent_check_run_init(&r);
  /* A mount point with a TAB and a newline (the kernel writes them as \011, \012), bad UTF-8. */
  assert_int_equal(agent_check_sample(&r, "/media/a\tb\nc", TT_CHECK_OK, "bad \xff byte", "%s", "caf\xc3\xa9\x1b[2J"),
                   0);
  assert_string_equal(r.s[0].dim, "/media/a?b?c");
  assert_string_equal(r.s[0].message, "bad \xef\xbf\xbd byte");
  assert_string_equal(r.s[0].value, "caf\xc3\xa9?[2J");
  /* Cut at a whole character. */
  char big[TT_CHECK_TEXT_MAX * 2];
  memset(big, 'a', sizeof(big));
  memcpy(big + TT_CHECK_TEXT_MAX - 1, "\xc3\xa9", 2); /* astride the last byte that fits */
  big[sizeof(big) - 1] = 0;
  assert_int_equal(agent_check_sample(&r, "/", TT_CHECK_OK, NULL, "%s", big), 0);
  assert_int_equal(strlen(r.s[1].value), TT_CHECK_TEXT_MAX - 1);
  agent_check_run_free(&r);
}

static void test_helpers(void **state) {
  (void)state;
  assert_true(agent_check_listed("tmpfs,squashfs,/snap/*", "tmpfs"));
  assert_true(agent_check_listed("tmpfs,squashfs,/snap/*", "/snap/core/123"));
  assert_false(agent_check_listed("tmpfs,squashfs,/snap/*", "ext4"));
  assert_false(agent_check_listed("", "ext4"));
  assert_true(agent_check_listed("fuse.*", "fuse.sshfs"));
  char b[32];
  agent_check_fmt_age(b, sizeof(b), 800);
  assert_string_equal(b, "800ms");
  agent_check_fmt_age(b, sizeof(b), 65000);
  assert_string_equal(b, "1m 5s");
  agent_check_fmt_age(b, sizeof(b), -(3 * 86400000LL + 4 * 3600000LL + 5000));
  assert_string_equal(b, "3d 4h");
  agent_check_fmt_age(b, sizeof(b), 7200000);
  assert_string_equal(b, "2h");
  agent_check_fmt_bytes(b, sizeof(b), 17);
  assert_string_equal(b, "17 B");
  agent_check_fmt_bytes(b, sizeof(b), 1288490189);
  assert_string_equal(b, "1.2 GiB");
  agent_check_fmt_bytes(b, sizeof(b), 300ull << 20);
  assert_string_equal(b, "300 MiB");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_exact_counts_to_raise_and_clear, setup, teardown),
      cmocka_unit_test_setup_teardown(test_new_result_gets_a_verdict_only_by_counts, setup, teardown),
      cmocka_unit_test_setup_teardown(test_hovering_does_not_flap, setup, teardown),
      cmocka_unit_test_setup_teardown(test_unknown_is_never_a_pass, setup, teardown),
      cmocka_unit_test_setup_teardown(test_failed_run_makes_every_result_unknown, setup, teardown),
      cmocka_unit_test_setup_teardown(test_gone_dimensions_are_dropped, setup, teardown),
      cmocka_unit_test_setup_teardown(test_named_twice_counts_once, setup, teardown),
      cmocka_unit_test(test_bounded),
      cmocka_unit_test(test_text_is_made_safe),
      cmocka_unit_test(test_helpers),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
