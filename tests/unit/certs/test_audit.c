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

/* Format 2: the split of an entry into values, digests under salts, and an erased value that
 * keeps the chain while its salt is gone. */
#define ZERO64 "0000000000000000000000000000000000000000000000000000000000000000"

static void test_format2_values(void **state) {
  (void)state;
  tt_audit_pair_t p[TT_AUDIT_VALUES_MAX];
  size_t n = tt_audit_split("sam", "dev1", "{\"by\":\"sam\",\"path\":\"/home/sam/a \\\"b\\\"\",\"e\":\"\"}", p);
  assert_int_equal(n, 5);
  assert_memory_equal(p[0].key, "actor", 5);
  assert_memory_equal(p[1].val, "dev1", 4);
  assert_int_equal(p[2].klen, 2);
  assert_memory_equal(p[2].val, "sam", 3);
  assert_int_equal(p[3].vlen, strlen("/home/sam/a \\\"b\\\"")); /* as written, escapes kept */
  assert_int_equal(p[4].vlen, 0);
  /* Not the broker's flat object of strings: the detail whole is one value. */
  const char *odd[] = {"{\"i\":37}", "not json", "{\"a\":\"b\"} ", "{\"a\":\"b\",}", "{\"a\":\"unterminated}", "", "{}x"};
  for (size_t i = 0; i < sizeof odd / sizeof odd[0]; i++) {
    n = tt_audit_split("a", "t", odd[i], p);
    assert_int_equal(n, 3);
    assert_memory_equal(p[2].key, TT_AUDIT_WHOLE_DETAIL, 1);
    assert_int_equal(p[2].vlen, strlen(odd[i]));
  }
  assert_int_equal(tt_audit_split("a", "t", "{}", p), 2);
  /* More values than an entry references: the detail whole. */
  char many[600] = "{";
  for (int i = 0; i < 20; i++) snprintf(many + strlen(many), sizeof many - strlen(many), "%s\"k%d\":\"v\"", i ? "," : "", i);
  strcat(many, "}");
  assert_int_equal(tt_audit_split("a", "t", many, p), 3);

  /* Digests: salted, positional. */
  tt_audit_value_t v[2], w2;
  assert_int_equal(tt_audit_value_new(0, "sam", 3, &v[0]), 0);
  assert_int_equal(tt_audit_value_new(0, "sam", 3, &w2), 0);
  assert_memory_not_equal(v[0].digest, w2.digest, 32); /* another salt, another digest */
  uint8_t d[32];
  assert_int_equal(tt_audit_value_digest(v[0].salt, 0, "sam", 3, d), 0);
  assert_memory_equal(d, v[0].digest, 32);
  assert_int_equal(tt_audit_value_digest(v[0].salt, 1, "sam", 3, d), 0);
  assert_memory_not_equal(d, v[0].digest, 32);

  /* A walk of two entries; then the first's actor erased (rewritten, its salt gone): intact. */
  uint8_t zero[32] = {0}, h1[32], h2[32];
  tt_audit_pair_t a[TT_AUDIT_VALUES_MAX], b[TT_AUDIT_VALUES_MAX];
  tt_audit_value_t va[TT_AUDIT_VALUES_MAX], vb[TT_AUDIT_VALUES_MAX];
  size_t na = tt_audit_split("sam", "dev1", "{\"by\":\"sam\"}", a), nb = tt_audit_split("broker", "", "{\"released\":\"0\",\"values\":\"" ZERO64 "\"}", b);
  for (size_t i = 0; i < na; i++) assert_int_equal(tt_audit_value_new((uint32_t)i, a[i].val, a[i].vlen, &va[i]), 0);
  for (size_t i = 0; i < nb; i++) assert_int_equal(tt_audit_value_new((uint32_t)i, b[i].val, b[i].vlen, &vb[i]), 0);
  assert_int_equal(tt_audit_hash2(zero, 1, 10, "ask", 3, a, va, na, h1), 0);
  assert_int_equal(tt_audit_hash2(h1, 2, 20, "person-erase", 12, b, vb, nb, h2), 0);
  tt_audit_walk_t w;
  tt_audit_walk_init(&w, NULL, 0);
  assert_int_equal(tt_audit_walk_entry2(&w, 1, 10, "ask", 3, a, va, na, zero, h1), 0);
  assert_int_equal(tt_audit_walk_entry2(&w, 2, 20, "person-erase", 12, b, vb, nb, h1, h2), 0);
  assert_int_equal(w.first_bad, 0);
  /* rewritten without erasing: the value no longer matches its digest */
  size_t ne = tt_audit_split("erased-1a2b", "dev1", "{\"by\":\"erased-1a2b\"}", a);
  assert_int_equal(ne, na);
  tt_audit_walk_init(&w, NULL, 0);
  assert_int_equal(tt_audit_walk_entry2(&w, 1, 10, "ask", 3, a, va, na, zero, h1), 0);
  assert_int_equal(w.first_bad, 1);
  assert_non_null(strstr(w.problems[0], "its actor is not the value it was written with"));
  /* A salt dropped by hand: an edit. One that names an erasure entry that does not commit to
   * it (the review's forged tail erasure): that erasure does not add up. */
  for (int erased = 0; erased <= 2; erased += 2) {
    va[0].has_salt = false;
    va[0].erased = erased;
    tt_audit_walk_init(&w, NULL, 0);
    assert_int_equal(tt_audit_walk_entry2(&w, 1, 10, "ask", 3, a, va, na, zero, h1), 0);
    assert_int_equal(tt_audit_walk_entry2(&w, 2, 20, "person-erase", 12, b, vb, nb, h1, h2), 0);
    tt_audit_walk_finish(&w);
    assert_int_equal(w.first_bad, 1);
    assert_true(said(&w, "lost its salt"));
    tt_audit_walk_free(&w);
  }
  va[0].has_salt = true;
  /* A value too long for any entry (a store edited by hand) is named, and the walk goes on. */
  char big[3000];
  memset(big, 'x', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  tt_audit_pair_t longp[TT_AUDIT_VALUES_MAX];
  size_t nl = tt_audit_split(big, "dev1", "{\"by\":\"sam\"}", longp);
  tt_audit_walk_init(&w, NULL, 0);
  assert_int_equal(tt_audit_walk_entry2(&w, 1, 10, "ask", 3, longp, va, nl, zero, h1), 0);
  assert_int_equal(tt_audit_walk_entry2(&w, 2, 20, "person-erase", 12, b, vb, nb, h1, h2), 0);
  assert_int_equal(w.first_bad, 1);
  assert_int_equal(w.count, 2);
  /* {"detail":"x"} and x are not the same entry */
  tt_audit_pair_t q1[TT_AUDIT_VALUES_MAX], q2[TT_AUDIT_VALUES_MAX];
  size_t n1 = tt_audit_split("a", "t", "{\"detail\":\"abc\"}", q1), n2 = tt_audit_split("a", "t", "abc", q2);
  assert_int_equal(n1, n2);
  assert_false(q1[2].klen == q2[2].klen && memcmp(q1[2].key, q2[2].key, q1[2].klen) == 0);
  /* a digest changed: the hash no longer holds */
  va[0].digest[0] ^= 1;
  tt_audit_walk_init(&w, NULL, 0);
  assert_int_equal(tt_audit_walk_entry2(&w, 1, 10, "ask", 3, a, va, na, zero, h1), 0);
  assert_int_equal(w.first_bad, 1);
}

/* An erasure: three entries, the first two naming sam; the third, person-erase, released
 * sam's values (rewritten to erased-1, a new salt and digest2 each) and commits to them. Built
 * as the store builds it. */
typedef struct {
  tt_audit_pair_t p[3][TT_AUDIT_VALUES_MAX];
  tt_audit_value_t v[3][TT_AUDIT_VALUES_MAX];
  size_t n[3];
  uint8_t h[4][32]; /* h[0] zeros, h[i] entry i's hash */
  uint8_t acc[32];
  char detail[256];
} erasure_t;

static const char *const k_acts[3] = {"ask", "revoke", TT_AUDIT_ERASE_ACTION};

static void release(erasure_t *x, int e, uint32_t n, uint8_t acc[32]) {
  tt_audit_value_t v2;
  assert_int_equal(tt_audit_value_new(n, x->p[e][n].val, x->p[e][n].vlen, &v2), 0);
  tt_audit_value_t *v = &x->v[e][n];
  memcpy(v->salt, v2.salt, sizeof v->salt);
  memcpy(v->digest2, v2.digest, 32);
  v->has_digest2 = true;
  v->erased = 3;
  assert_int_equal(tt_audit_release_step(acc, e + 1, n, v->digest, v->digest2), 0);
}

static void erasure_build(erasure_t *x) {
  memset(x, 0, sizeof *x);
  tt_audit_pair_t orig[2][TT_AUDIT_VALUES_MAX];
  tt_audit_split("sam", "dev1", "{\"by\":\"sam\"}", orig[0]);
  tt_audit_split("boss", "sam", "{\"kind\":\"person\"}", orig[1]);
  x->n[0] = tt_audit_split("erased-1", "dev1", "{\"by\":\"erased-1\"}", x->p[0]);
  x->n[1] = tt_audit_split("boss", "erased-1", "{\"kind\":\"person\"}", x->p[1]);
  for (int e = 0; e < 2; e++) /* the digests of what was written */
    for (size_t i = 0; i < x->n[e]; i++)
      assert_int_equal(tt_audit_value_new((uint32_t)i, orig[e][i].val, orig[e][i].vlen, &x->v[e][i]), 0);
  release(x, 0, 0, x->acc);
  release(x, 0, 2, x->acc);
  release(x, 1, 1, x->acc);
  char hex[65];
  for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", x->acc[i]);
  snprintf(x->detail, sizeof x->detail, "{\"reason\":\"r\",\"released\":\"3\",\"values\":\"%s\"}", hex);
  x->n[2] = tt_audit_split("boss", "erased-1", x->detail, x->p[2]);
  for (size_t i = 0; i < x->n[2]; i++)
    assert_int_equal(tt_audit_value_new((uint32_t)i, x->p[2][i].val, x->p[2][i].vlen, &x->v[2][i]), 0);
  for (int e = 0; e < 3; e++)
    assert_int_equal(tt_audit_hash2(x->h[e], e + 1, 10 * (e + 1), k_acts[e], strlen(k_acts[e]), x->p[e], x->v[e],
                                    x->n[e], x->h[e + 1]), 0);
}

static void erasure_walk(tt_audit_walk_t *w, erasure_t *x, int from) {
  for (int e = from; e < 3; e++)
    assert_int_equal(tt_audit_walk_entry2(w, e + 1, 10 * (e + 1), k_acts[e], strlen(k_acts[e]), x->p[e], x->v[e],
                                          x->n[e], x->h[e], x->h[e + 1]), 0);
  tt_audit_walk_finish(w);
}

static void test_erasure_commits_to_what_it_released(void **state) {
  (void)state;
  static erasure_t x;
  tt_audit_walk_t w;
  erasure_build(&x);
  tt_audit_walk_init(&w, NULL, 0);
  erasure_walk(&w, &x, 0);
  assert_int_equal(w.first_bad, 0);
  assert_int_equal(w.nproblems, 0);
  tt_audit_walk_free(&w);

  /* A released text rewritten (the review's "blame another person"): its digest2 says so. */
  x.p[0][2].val = "liv.t\"}"; /* the detail's value as a writer left it */
  x.p[0][2].vlen = 5;
  tt_audit_walk_init(&w, NULL, 0);
  erasure_walk(&w, &x, 0);
  assert_true(said(&w, "entry 1 was edited: its by is not the text it was released as"));
  tt_audit_walk_free(&w);
  erasure_build(&x);

  /* One more value released by a writer, claiming the same erasure: it no longer adds up. */
  uint8_t junk[32] = {0};
  release(&x, 1, 0, junk);
  tt_audit_walk_init(&w, NULL, 0);
  erasure_walk(&w, &x, 0);
  assert_int_equal(w.first_bad, 3);
  assert_true(said(&w, "entry 3, an erasure, does not match the values released under it (4 found)"));
  tt_audit_walk_free(&w);
  /* ... claiming an entry that is not an erasure, or one past the end */
  x.v[1][0].erased = 2;
  tt_audit_walk_init(&w, NULL, 0);
  erasure_walk(&w, &x, 0);
  assert_true(said(&w, "is not the text it was released as"));
  tt_audit_walk_free(&w);
  erasure_build(&x);
  x.v[0][2].erased = 9;
  tt_audit_walk_init(&w, NULL, 0);
  erasure_walk(&w, &x, 0);
  assert_true(said(&w, "1 values claim to be released by entry 9, which is not an erasure in the log"));
  tt_audit_walk_free(&w);

  /* With its anchors, a walk wants the broker's signed line for each erasure. */
  erasure_build(&x);
  tt_audit_release_t line = {.by = 3, .count = 3};
  memcpy(line.acc, x.acc, 32);
  tt_audit_walk_init(&w, NULL, 0);
  w.erasures_signed = true;
  erasure_walk(&w, &x, 0);
  assert_true(said(&w, "entry 3, an erasure of 3 values, has no erase line signed by the broker"));
  tt_audit_walk_free(&w);
  tt_audit_walk_init(&w, NULL, 0);
  w.erasures_signed = true;
  w.signed_erasures = &line;
  w.nsigned = 1;
  erasure_walk(&w, &x, 0);
  assert_int_equal(w.nproblems, 0);
  tt_audit_walk_free(&w);
  line.acc[0] ^= 1;
  tt_audit_walk_init(&w, NULL, 0);
  w.erasures_signed = true;
  w.signed_erasures = &line;
  w.nsigned = 1;
  erasure_walk(&w, &x, 0);
  assert_true(said(&w, "entry 3, an erasure, is not the one the broker signed"));
  tt_audit_walk_free(&w);

  /* Entry 1 pruned by a cut: its released values, fed before the walk, still count. */
  erasure_build(&x);
  tt_audit_walk_init(&w, NULL, 0);
  w.based = true;
  w.base = 1;
  memcpy(w.prev, x.h[1], 32);
  w.last_id = 1;
  assert_int_equal(tt_audit_walk_released(&w, 1, 0, x.v[0][0].digest, x.v[0][0].digest2, 3), 0);
  assert_int_equal(tt_audit_walk_released(&w, 1, 2, x.v[0][2].digest, x.v[0][2].digest2, 3), 0);
  erasure_walk(&w, &x, 1);
  assert_int_equal(w.first_bad, 0);
  assert_int_equal(w.nproblems, 0);
  tt_audit_walk_free(&w);
  /* ... and without them the erasure does not add up */
  tt_audit_walk_init(&w, NULL, 0);
  w.based = true;
  w.base = 1;
  memcpy(w.prev, x.h[1], 32);
  w.last_id = 1;
  erasure_walk(&w, &x, 1);
  assert_int_equal(w.first_bad, 3);
  tt_audit_walk_free(&w);
}

/* An erase line round-trips and is signed like a checkpoint; anchors collect it for the walk. */
static void test_erase_line(void **state) {
  fx_t *fx = *state;
  tt_audit_checkpoint_t cp, back;
  char line[TT_AUDIT_CP_LINE_MAX], why[160];
  memset(&cp, 0, sizeof cp);
  cp.kind = TT_AUDIT_CP_ERASE;
  cp.entries = 77;
  cp.count = 5;
  memset(cp.head, 0xcd, 32);
  cp.ts_ms = 1764806400000;
  assert_int_equal(tt_audit_checkpoint_sign(&cp, fx->broker_key, fx->broker), 0);
  assert_int_equal(tt_audit_checkpoint_format(&cp, line, sizeof line), 0);
  assert_non_null(strstr(line, "tether-audit-erase 1 77 5 cdcd"));
  assert_int_equal(tt_audit_checkpoint_parse(line, &back), 0);
  assert_int_equal(back.kind, TT_AUDIT_CP_ERASE);
  assert_int_equal(back.count, 5);
  assert_int_equal(tt_audit_checkpoint_verify(&back, fx->ca, why, sizeof why), 0);
  back.count = 6; /* what it says is what is signed */
  assert_int_not_equal(tt_audit_checkpoint_verify(&back, fx->ca, why, sizeof why), 0);
  tt_audit_walk_t w;
  tt_audit_anchors_t k = {0};
  tt_audit_walk_init(&w, NULL, 0);
  assert_int_equal(tt_audit_anchors_add(&k, &w, fx->ca, "file", 1, line), 0);
  tt_audit_anchors_finish(&k, &w);
  assert_true(w.erasures_signed);
  assert_int_equal(w.nsigned, 1);
  assert_int_equal(w.signed_erasures[0].by, 77);
  assert_int_equal(w.nproblems, 0);
  tt_audit_anchors_free(&k);
  tt_audit_walk_free(&w);
}

/* A rechain line round-trips, is signed like a checkpoint, and replaces the checkpoints signed
 * before it as the walk's anchor. */
static void test_rechain_line_and_anchors(void **state) {
  fx_t *fx = *state;
  tt_audit_checkpoint_t cp, back;
  char line[TT_AUDIT_CP_LINE_MAX], old[TT_AUDIT_CP_LINE_MAX], later[TT_AUDIT_CP_LINE_MAX], why[160];
  make_cp(&cp, 10);
  cp.ts_ms = 1000;
  assert_int_equal(tt_audit_checkpoint_sign(&cp, fx->broker_key, fx->broker), 0);
  assert_int_equal(tt_audit_checkpoint_format(&cp, old, sizeof old), 0);
  make_cp(&cp, 12);
  cp.kind = TT_AUDIT_CP_RECHAIN;
  memset(cp.from, 0x11, 32);
  memset(cp.head, 0x22, 32);
  cp.ts_ms = 2000;
  assert_int_equal(tt_audit_checkpoint_sign(&cp, fx->broker_key, fx->broker), 0);
  assert_int_equal(tt_audit_checkpoint_format(&cp, line, sizeof line), 0);
  assert_non_null(strstr(line, "tether-audit-rechain 1 12 1111"));
  assert_int_equal(tt_audit_checkpoint_parse(line, &back), 0);
  assert_int_equal(back.kind, TT_AUDIT_CP_RECHAIN);
  assert_int_equal(back.entries, 12);
  assert_memory_equal(back.from, cp.from, 32);
  assert_memory_equal(back.head, cp.head, 32);
  assert_int_equal(tt_audit_checkpoint_verify(&back, fx->ca, why, sizeof why), 0);
  back.from[0] ^= 1; /* the old head is signed too */
  assert_int_equal(tt_audit_checkpoint_verify(&back, fx->ca, why, sizeof why), TT_ECERT);
  make_cp(&cp, 15);
  cp.ts_ms = 3000;
  memset(cp.head, 0x33, 32);
  assert_int_equal(tt_audit_checkpoint_sign(&cp, fx->broker_key, fx->broker), 0);
  assert_int_equal(tt_audit_checkpoint_format(&cp, later, sizeof later), 0);

  tt_audit_walk_t w;
  tt_audit_anchors_t k = {0};
  tt_audit_walk_init(&w, NULL, 0);
  assert_int_equal(tt_audit_anchors_add(&k, &w, fx->ca, "file", 1, old), 0);
  assert_int_equal(tt_audit_anchors_add(&k, &w, fx->ca, "file", 2, line), 0);
  assert_int_equal(tt_audit_anchors_add(&k, &w, fx->ca, "file", 3, later), 0);
  assert_int_equal(tt_audit_anchors_add(&k, &w, fx->ca, "store", 1, later), 0); /* the same, twice */
  tt_audit_anchors_finish(&k, &w);
  assert_int_equal(w.nproblems, 0);
  assert_int_equal(k.n, 2); /* the rechain (12) and the later checkpoint (15); the old one gave way */
  assert_int_equal(k.a[0].entries, 12);
  assert_int_equal(k.a[0].head[0], 0x22);
  assert_int_equal(k.a[1].entries, 15);
  tt_audit_anchors_free(&k);

  /* An archived checkpoint from before the rechain that covers more entries than the rechain
   * did (the tail was cut, then re-hashed), or the same number with another head: damage. */
  char longer[TT_AUDIT_CP_LINE_MAX], other[TT_AUDIT_CP_LINE_MAX];
  make_cp(&cp, 20);
  cp.ts_ms = 1500;
  assert_int_equal(tt_audit_checkpoint_sign(&cp, fx->broker_key, fx->broker), 0);
  assert_int_equal(tt_audit_checkpoint_format(&cp, longer, sizeof longer), 0);
  make_cp(&cp, 12);
  cp.ts_ms = 1500;
  memset(cp.head, 0x12, 32); /* the rechain says its format 1 head was 0x11... */
  assert_int_equal(tt_audit_checkpoint_sign(&cp, fx->broker_key, fx->broker), 0);
  assert_int_equal(tt_audit_checkpoint_format(&cp, other, sizeof other), 0);
  for (int i = 0; i < 2; i++) {
    tt_audit_walk_init(&w, NULL, 0);
    memset(&k, 0, sizeof k);
    assert_int_equal(tt_audit_anchors_add(&k, &w, fx->ca, "archive", 1, i ? other : longer), 0);
    assert_int_equal(tt_audit_anchors_add(&k, &w, fx->ca, "file", 2, line), 0);
    tt_audit_anchors_finish(&k, &w);
    assert_int_equal(w.nproblems, 1);
    assert_non_null(strstr(w.problems[0], i ? "rewritten before it was re-hashed" : "cut before it was re-hashed"));
    tt_audit_anchors_free(&k);
  }
}

/* A cut line: the walk starts after it, linked to the head it signed; anchors within it give
 * way; an entry after it that does not link to it, or a missing first entry, is damage. */
static void test_cut_line_and_walk(void **state) {
  fx_t *fx = *state;
  tt_audit_checkpoint_t cp, back;
  char line[TT_AUDIT_CP_LINE_MAX], old[TT_AUDIT_CP_LINE_MAX], why[160];
  make_cp(&cp, 2);
  cp.ts_ms = 1000;
  assert_int_equal(tt_audit_checkpoint_sign(&cp, fx->broker_key, fx->broker), 0);
  assert_int_equal(tt_audit_checkpoint_format(&cp, old, sizeof old), 0);
  /* a chain of 5 (format 2, empty values) */
  uint8_t h[6][32] = {{0}};
  tt_audit_pair_t p[TT_AUDIT_VALUES_MAX];
  tt_audit_value_t v[TT_AUDIT_VALUES_MAX];
  size_t n = tt_audit_split("a", "", "{}", p);
  for (size_t i = 0; i < n; i++) assert_int_equal(tt_audit_value_new((uint32_t)i, p[i].val, p[i].vlen, &v[i]), 0);
  for (int id = 1; id <= 5; id++) assert_int_equal(tt_audit_hash2(h[id - 1], id, id * 10, "x", 1, p, v, n, h[id]), 0);
  make_cp(&cp, 2);
  cp.kind = TT_AUDIT_CP_CUT;
  memcpy(cp.head, h[2], 32);
  cp.ts_ms = 2000;
  assert_int_equal(tt_audit_checkpoint_sign(&cp, fx->broker_key, fx->broker), 0);
  assert_int_equal(tt_audit_checkpoint_format(&cp, line, sizeof line), 0);
  assert_non_null(strstr(line, "tether-audit-cut 1 2 "));
  assert_int_equal(tt_audit_checkpoint_parse(line, &back), 0);
  assert_int_equal(back.kind, TT_AUDIT_CP_CUT);
  assert_int_equal(tt_audit_checkpoint_verify(&back, fx->ca, why, sizeof why), 0);
  back.entries = 1; /* what it covers is signed */
  assert_int_equal(tt_audit_checkpoint_verify(&back, fx->ca, why, sizeof why), TT_ECERT);

  for (int variant = 0; variant < 3; variant++) {
    tt_audit_walk_t w;
    tt_audit_anchors_t k = {0};
    tt_audit_walk_init(&w, NULL, 0);
    assert_int_equal(tt_audit_anchors_add(&k, &w, fx->ca, "file", 1, old), 0);  /* within the cut: gives way */
    assert_int_equal(tt_audit_anchors_add(&k, &w, fx->ca, "file", 2, line), 0);
    tt_audit_anchors_finish(&k, &w);
    assert_int_equal(k.n, 0);
    assert_true(w.based);
    assert_int_equal(w.base, 2);
    int first = variant == 2 ? 4 : 3; /* variant 2: entry 3 is missing too */
    for (int id = first; id <= 5; id++) {
      uint8_t prev[32];
      memcpy(prev, h[id - 1], 32);
      if (variant == 1 && id == 3) prev[0] ^= 1; /* entry 3 claims another predecessor */
      assert_int_equal(tt_audit_walk_entry2(&w, id, id * 10, "x", 1, p, v, n, prev, id == 3 && variant == 1 ? NULL : h[id]),
                       0);
    }
    tt_audit_walk_finish(&w);
    if (variant == 0) {
      assert_int_equal(w.first_bad, 0);
      assert_int_equal(w.count, 3);
    } else {
      assert_int_equal(w.first_bad, 3);
    }
    tt_audit_anchors_free(&k);
  }
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
      cmocka_unit_test(test_format2_values),
      cmocka_unit_test(test_erasure_commits_to_what_it_released),
      cmocka_unit_test(test_erase_line),
      cmocka_unit_test(test_rechain_line_and_anchors),
      cmocka_unit_test(test_cut_line_and_walk),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
