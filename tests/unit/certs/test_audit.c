/* certs/audit.c: signed checkpoints (sign, format, parse, verify; hostile lines refused)
 * and the walk that names each kind of damage to a chain. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "tt/audit.h"
#include "tt/pki.h"

typedef struct {
  X509 *ca, *broker, *tech, *other_ca, *other_broker;
  EVP_PKEY *ca_key, *broker_key, *tech_key, *other_ca_key, *other_broker_key;
} fx_t;

static int setup(void **state) {
  static fx_t fx;
  char err[256];
  tt_pki_leaf_t b = {.role = TT_ROLE_BROKER, .name = "broker"};
  tt_pki_leaf_t t = {.role = TT_ROLE_TECHNICIAN, .name = "alice"};
  if (tt_pki_ca_new(0, &fx.ca, &fx.ca_key, err, sizeof err) ||
      tt_pki_issue(fx.ca, fx.ca_key, &b, &fx.broker, &fx.broker_key, err, sizeof err) ||
      tt_pki_issue(fx.ca, fx.ca_key, &t, &fx.tech, &fx.tech_key, err, sizeof err) ||
      tt_pki_ca_new(0, &fx.other_ca, &fx.other_ca_key, err, sizeof err) ||
      tt_pki_issue(fx.other_ca, fx.other_ca_key, &b, &fx.other_broker, &fx.other_broker_key, err, sizeof err))
    return -1;
  *state = &fx;
  return 0;
}

static int teardown(void **state) {
  fx_t *fx = *state;
  X509_free(fx->ca), X509_free(fx->broker), X509_free(fx->tech), X509_free(fx->other_ca);
  X509_free(fx->other_broker);
  EVP_PKEY_free(fx->ca_key), EVP_PKEY_free(fx->broker_key), EVP_PKEY_free(fx->tech_key);
  EVP_PKEY_free(fx->other_ca_key), EVP_PKEY_free(fx->other_broker_key);
  return 0;
}

static void make_cp(tt_audit_checkpoint_t *cp, int64_t entries) {
  memset(cp, 0, sizeof *cp);
  cp->entries = entries;
  memset(cp->head, 0xab, 32);
  cp->ts_ms = 1764806400000;
}

static void test_checkpoint_round_trip(void **state) {
  fx_t *fx = *state;
  tt_audit_checkpoint_t cp, back;
  char line[TT_AUDIT_CP_LINE_MAX], why[160];
  make_cp(&cp, 42);
  assert_int_equal(tt_audit_checkpoint_sign(&cp, fx->broker_key, fx->broker), 0);
  assert_int_equal(tt_audit_checkpoint_format(&cp, line, sizeof line), 0);
  assert_non_null(strstr(line, "tether-audit-checkpoint 1 42 abab"));
  assert_int_equal(line[strlen(line) - 1], '\n');
  assert_int_equal(tt_audit_checkpoint_parse(line, &back), 0);
  assert_int_equal(back.entries, 42);
  assert_int_equal(back.ts_ms, cp.ts_ms);
  assert_memory_equal(back.head, cp.head, 32);
  assert_int_equal(back.cert_len, cp.cert_len);
  assert_int_equal(tt_audit_checkpoint_verify(&back, fx->ca, why, sizeof why), 0);
  /* Any field changed after signing: the signature no longer holds. */
  back.entries = 43;
  assert_int_equal(tt_audit_checkpoint_verify(&back, fx->ca, why, sizeof why), TT_ECERT);
  assert_non_null(strstr(why, "signature"));
  back.entries = 42;
  back.head[0] ^= 1;
  assert_int_equal(tt_audit_checkpoint_verify(&back, fx->ca, why, sizeof why), TT_ECERT);
}

static void test_checkpoint_signers_are_checked(void **state) {
  fx_t *fx = *state;
  tt_audit_checkpoint_t cp;
  char why[160];
  /* Another CA's broker. */
  make_cp(&cp, 7);
  assert_int_equal(tt_audit_checkpoint_sign(&cp, fx->other_broker_key, fx->other_broker), 0);
  assert_int_equal(tt_audit_checkpoint_verify(&cp, fx->ca, why, sizeof why), TT_ECERT);
  assert_non_null(strstr(why, "not issued by this CA"));
  /* Our CA, but a technician, not a broker. */
  make_cp(&cp, 7);
  assert_int_equal(tt_audit_checkpoint_sign(&cp, fx->tech_key, fx->tech), 0);
  assert_int_equal(tt_audit_checkpoint_verify(&cp, fx->ca, why, sizeof why), TT_ECERT);
  assert_non_null(strstr(why, "not a broker"));
  /* A broker's certificate with another key's signature. */
  make_cp(&cp, 7);
  assert_int_equal(tt_audit_checkpoint_sign(&cp, fx->tech_key, fx->broker), 0);
  assert_int_equal(tt_audit_checkpoint_verify(&cp, fx->ca, why, sizeof why), TT_ECERT);
}

static void test_hostile_lines_are_refused(void **state) {
  fx_t *fx = *state;
  tt_audit_checkpoint_t cp;
  char line[TT_AUDIT_CP_LINE_MAX], bad[TT_AUDIT_CP_LINE_MAX + 64];
  make_cp(&cp, 5);
  assert_int_equal(tt_audit_checkpoint_sign(&cp, fx->broker_key, fx->broker), 0);
  assert_int_equal(tt_audit_checkpoint_format(&cp, line, sizeof line), 0);
  static const char *const lines[] = {
      "", "\n", "tether-audit-checkpoint", "tether-audit-checkpoint 2 5 00 1 AAAA 00",
      "tether-audit-checkpoint 1 -5 " "abababababababababababababababababababababababababababababababab" " 1 AAAA 00",
      "tether-audit-checkpoint 1 5 abab 1 AAAA 00",
      "tether-audit-checkpoint 1 5 " "zzabababababababababababababababababababababababababababababababab" " 1 AAAA 00",
      "tether-audit-checkpoint 1 5 " "abababababababababababababababababababababababababababababababab" " x AAAA 00",
      "tether-audit-checkpoint 1 5 " "abababababababababababababababababababababababababababababababab" " 1 A!A 00",
      "tether-audit-checkpoint 1 5 " "abababababababababababababababababababababababababababababababab" " 1 AAAA 0",
      "tether-audit-checkpoint 1 5 " "abababababababababababababababababababababababababababababababab" " 1 AAAA 00 extra",
  };
  for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++)
    if (tt_audit_checkpoint_parse(lines[i], &cp) == 0) fail_msg("line %zu parsed: %s", i, lines[i]);
  /* Over the line limit, and a truncated real line. */
  memset(bad, 'a', sizeof bad - 1);
  bad[sizeof bad - 1] = '\0';
  assert_int_equal(tt_audit_checkpoint_parse(bad, &cp), TT_ETOOBIG);
  snprintf(bad, sizeof bad, "%.*s", (int)(strlen(line) - 20), line);
  assert_int_not_equal(tt_audit_checkpoint_parse(bad, &cp) == 0 &&
                           tt_audit_checkpoint_verify(&cp, fx->ca, bad, 100) == 0,
                       1);
  /* A certificate that is not DER. */
  char *cert = strstr(line, " MII");
  assert_non_null(cert);
  memcpy(cert + 1, "AAAA", 4);
  char why[160];
  if (tt_audit_checkpoint_parse(line, &cp) == 0)
    assert_int_equal(tt_audit_checkpoint_verify(&cp, fx->ca, why, sizeof why), TT_ECERT);
}

/* A chain of n entries as the broker writes it, then fed to a walk. */
typedef struct {
  int64_t id, ts;
  char actor[16], action[16], target[16], detail[32];
  uint8_t prev[32], hash[32];
} ent_t;

static void chain(ent_t *e, int n) {
  uint8_t prev[32] = {0};
  for (int i = 0; i < n; i++) {
    e[i].id = i + 1;
    e[i].ts = 1000 + i;
    snprintf(e[i].actor, sizeof e[i].actor, "broker");
    snprintf(e[i].action, sizeof e[i].action, "connect");
    snprintf(e[i].target, sizeof e[i].target, "dev-%d", i);
    snprintf(e[i].detail, sizeof e[i].detail, "{\"i\":\"%d\"}", i);
    memcpy(e[i].prev, prev, 32);
    const char *f[4] = {e[i].actor, e[i].action, e[i].target, e[i].detail};
    size_t l[4] = {strlen(f[0]), strlen(f[1]), strlen(f[2]), strlen(f[3])};
    assert_int_equal(tt_audit_hash(prev, e[i].id, e[i].ts, f, l, e[i].hash), 0);
    memcpy(prev, e[i].hash, 32);
  }
}

static void walk(tt_audit_walk_t *w, const ent_t *e, int n, const tt_audit_anchor_t *a, size_t na) {
  tt_audit_walk_init(w, NULL, 0);
  tt_audit_walk_anchors(w, a, na);
  for (int i = 0; i < n; i++) {
    const char *f[4] = {e[i].actor, e[i].action, e[i].target, e[i].detail};
    size_t l[4] = {strlen(f[0]), strlen(f[1]), strlen(f[2]), strlen(f[3])};
    assert_int_equal(tt_audit_walk_entry(w, e[i].id, e[i].ts, f, l, e[i].prev, e[i].hash), 0);
  }
  tt_audit_walk_finish(w);
}

static bool said(const tt_audit_walk_t *w, const char *text) {
  for (unsigned i = 0; i < w->nproblems; i++)
    if (strstr(w->problems[i], text)) return true;
  return false;
}

static void test_walk_names_the_damage(void **state) {
  (void)state;
  static ent_t e[20], t[20];
  static tt_audit_walk_t w;
  chain(e, 20);
  tt_audit_anchor_t a[2] = {{.entries = 10, .ts_ms = 1}, {.entries = 20, .ts_ms = 2}};
  memcpy(a[0].head, e[9].hash, 32);
  memcpy(a[1].head, e[19].hash, 32);
  walk(&w, e, 20, a, 2);
  assert_int_equal(w.count, 20);
  assert_int_equal(w.first_bad, 0);
  assert_int_equal(w.nproblems, 0);
  /* An edited entry. */
  memcpy(t, e, sizeof e);
  snprintf(t[4].detail, sizeof t[4].detail, "{}");
  walk(&w, t, 20, a, 2);
  assert_int_equal(w.first_bad, 5);
  assert_true(said(&w, "entry 5 was edited"));
  /* A missing range. */
  memcpy(t, e, sizeof e);
  tt_audit_walk_init(&w, NULL, 0);
  for (int i = 0; i < 20; i++) {
    if (i >= 6 && i <= 8) continue;
    const char *f[4] = {t[i].actor, t[i].action, t[i].target, t[i].detail};
    size_t l[4] = {strlen(f[0]), strlen(f[1]), strlen(f[2]), strlen(f[3])};
    assert_int_equal(tt_audit_walk_entry(&w, t[i].id, t[i].ts, f, l, t[i].prev, t[i].hash), 0);
  }
  tt_audit_walk_finish(&w);
  assert_int_equal(w.first_bad, 7);
  assert_true(said(&w, "entries 7 to 9 are missing"));
  /* A truncated tail. */
  walk(&w, e, 15, a, 2);
  assert_int_equal(w.first_bad, 16);
  assert_true(said(&w, "the tail was cut off: the log ends at entry 15"));
  /* A rewritten chain: entry 3 changed and every later hash recomputed to match. */
  memcpy(t, e, sizeof e);
  snprintf(t[2].detail, sizeof t[2].detail, "{\"rewritten\":\"1\"}");
  uint8_t prev[32];
  memcpy(prev, t[1].hash, 32);
  for (int i = 2; i < 20; i++) {
    memcpy(t[i].prev, prev, 32);
    const char *f[4] = {t[i].actor, t[i].action, t[i].target, t[i].detail};
    size_t l[4] = {strlen(f[0]), strlen(f[1]), strlen(f[2]), strlen(f[3])};
    assert_int_equal(tt_audit_hash(prev, t[i].id, t[i].ts, f, l, t[i].hash), 0);
    memcpy(prev, t[i].hash, 32);
  }
  walk(&w, t, 20, a, 2);
  assert_int_equal(w.first_bad, 10);
  assert_true(said(&w, "the chain was rewritten: entry 10"));
  /* A later checkpoint that covers less: the log was cut back. */
  tt_audit_anchor_t back[2] = {{.entries = 10, .ts_ms = 5}, {.entries = 20, .ts_ms = 2}};
  memcpy(back[0].head, e[9].hash, 32);
  memcpy(back[1].head, e[19].hash, 32);
  walk(&w, e, 20, back, 2);
  assert_true(said(&w, "cut back"));
}

static void test_walk_problems_are_bounded(void **state) {
  (void)state;
  static ent_t e[100];
  static tt_audit_walk_t w;
  chain(e, 100);
  for (int i = 0; i < 100; i += 2) e[i].detail[0] = 'X'; /* 50 edited entries */
  walk(&w, e, 100, NULL, 0);
  assert_int_equal(w.nproblems, TT_AUDIT_PROBLEMS_MAX);
  assert_int_equal(w.more_problems, 50 - TT_AUDIT_PROBLEMS_MAX);
  assert_int_equal(w.first_bad, 1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_checkpoint_round_trip),
      cmocka_unit_test(test_checkpoint_signers_are_checked),
      cmocka_unit_test(test_hostile_lines_are_refused),
      cmocka_unit_test(test_walk_names_the_damage),
      cmocka_unit_test(test_walk_problems_are_bounded),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
