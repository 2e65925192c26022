/* broker/store/records/erase.c: a person's name found as a word (in any case, not inside
 * another name), rewritten in tickets and the audit; the erasure's entry commits to the values
 * it released, so the chain walks intact, before and after a retention cut prunes some of them;
 * a hold keeps its ticket; a dry run leaves nothing; refusals say why. */
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
#include <unistd.h>

#include <sqlite3.h>

#include "store.h"
#include "tt/audit.h"

typedef struct {
  char base[PATH_MAX];
  broker_store_t *s;
} fx_t;

static int rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st, (void)flag, (void)ftw;
  return remove(path);
}

static int setup(void **state) {
  fx_t *fx = calloc(1, sizeof(*fx));
  char err[512];
  snprintf(fx->base, sizeof fx->base, "/tmp/tt-erase-XXXXXX");
  if (!mkdtemp(fx->base) || store_open(&fx->s, fx->base, err, sizeof err) != 0) return -1;
  uint8_t key[32];
  memset(key, 0x5a, sizeof key);
  store_erase_set_key(key);
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

static void test_a_name_is_a_word(void **state) {
  (void)state;
  const char *yes[] = {"nadia.k", "for Nadia.K every day", "asked by nadia.k.", "(nadia.k)", "mail nadia.k@corp",
                       "/home/nadia.k/x", "\"nadia.k\"", "«nadia.k»", "“nadia.k”", "\u00a0nadia.k", "to\u00a0nadia.k",
                       "私はnadia.k。"};
  const char *no[] = {"nadia.kim", "xnadia.k", "nadia.k2", "nadia.k_old", "jo.nadia.k", "nadia.k.smith", "nadia",
                      "énadia.k", "nadia.kß"};
  for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) assert_true(store_erase_names(yes[i], strlen(yes[i]), "nadia.k"));
  for (size_t i = 0; i < sizeof no / sizeof no[0]; i++) assert_false(store_erase_names(no[i], strlen(no[i]), "nadia.k"));
  /* In JSON as the audit writes it, an escape before the name separates it; an escaped
   * backslash does not (that is a backslash and then "nnadia.k"). */
  const char *json_yes[] = {"\\tnadia.k", "x\\u0009nadia.k", "\\\\\\nnadia.k"};
  const char *json_no[] = {"\\\\nnadia.k", "tnadia.k"};
  for (size_t i = 0; i < sizeof json_yes / sizeof json_yes[0]; i++) {
    assert_true(store_erase_names_json(json_yes[i], strlen(json_yes[i]), "nadia.k"));
    assert_false(store_erase_names(json_yes[i], strlen(json_yes[i]), "nadia.k")); /* not in plain text */
  }
  for (size_t i = 0; i < sizeof json_no / sizeof json_no[0]; i++)
    assert_false(store_erase_names_json(json_no[i], strlen(json_no[i]), "nadia.k"));
  size_t n = 0;
  char *out = store_erase_rewrite("Nadia.K asked nadia.kim and nadia.k.", 36, "nadia.k", "erased-1", 0, &n);
  assert_string_equal(out, "erased-1 asked nadia.kim and erased-1.");
  assert_int_equal(n, strlen(out));
  free(out);
  /* bounded where a CHECK bounds the column: cut at a character, never inside one */
  out = store_erase_rewrite("né nadia.k", strlen("né nadia.k"), "nadia.k", "erased-0123456789", 3, &n);
  assert_string_equal(out, "né");
  free(out);
}

typedef struct {
  int calls;
  char values[65];
} audit_ctx_t;

static int erase_entry(void *ctx, broker_store_t *s, const store_erase_t *x, const uint8_t acc[32], int64_t *id) {
  audit_ctx_t *a = ctx;
  a->calls++;
  char values[65];
  for (int i = 0; i < 32; i++) snprintf(values + 2 * i, 3, "%02x", acc[i]);
  snprintf(a->values, sizeof a->values, "%s", values);
  char detail[256], rel[24];
  snprintf(rel, sizeof rel, "%lld", (long long)x->released);
  snprintf(detail, sizeof detail, "{\"reason\":\"r\",\"released\":\"%s\",\"values\":\"%s\"}", rel, values);
  return store_audit_append(s, 1000, "boss", TT_AUDIT_ERASE_ACTION, x->pseudonym, detail, id);
}

static void walk_intact(broker_store_t *s, int64_t base, const uint8_t *base_head) {
  tt_audit_walk_t w;
  tt_audit_walk_init(&w, NULL, 0);
  if (base) {
    w.based = true;
    w.base = base;
    w.last_id = base;
    memcpy(w.prev, base_head, 32);
  }
  assert_int_equal(store_audit_walk(s, &w), 0);
  for (unsigned i = 0; i < w.nproblems; i++) fprintf(stderr, "problem: %s\n", w.problems[i]);
  assert_int_equal(w.first_bad, 0);
  assert_int_equal(w.nproblems, 0);
  tt_audit_walk_free(&w);
}

static int64_t ticket(broker_store_t *s, const char *requester, const char *summary) {
  store_ticket_t t = {.priority = STORE_TICKET_NORMAL, .state = STORE_TICKET_OPEN};
  snprintf(t.device, sizeof t.device, "dev1");
  snprintf(t.requester, sizeof t.requester, "%s", requester);
  snprintf(t.summary, sizeof t.summary, "%s", summary);
  assert_int_equal(store_ticket_add(s, &t, "alice", 500), 0);
  return t.id;
}

static int count_cb(void *ctx, const store_audit_t *e) {
  int *n = ctx;
  assert_true(e->pruned);
  (*n)++;
  return 0;
}

static void test_erase_and_walk(void **state) {
  fx_t *fx = *state;
  broker_store_t *s = fx->s;
  int64_t t1 = ticket(s, "nadia.k", "VPN drops for Nadia.K");
  int64_t t2 = ticket(s, "nadia.k", "laptop returned");
  int64_t t3 = ticket(s, "nadia.kim", "printer");
  int64_t id = 0;
  assert_int_equal(store_audit_append(s, 600, "alice", "ticket-new", "T-1", "{\"requester\":\"nadia.k\"}", &id), 0);
  assert_int_equal(store_audit_append(s, 601, "nadia.k", "help-ask", "dev1", "{\"user\":\"nadia.k\",\"x\":\"y\"}", &id), 0);
  assert_int_equal(store_audit_append(s, 602, "alice", "ticket-new", "T-3", "{\"requester\":\"nadia.kim\"}", &id), 0);
  char hold[64];
  snprintf(hold, sizeof hold, "{\"ticket\":\"T-%lld\",\"by\":\"nadia.k\"}", (long long)t2);
  assert_int_equal(store_audit_append(s, 603, "alice", "note", "", hold, &id), 0);
  assert_int_equal(store_hold_set(s, t2, "legal", "boss", 700), 0);

  /* unknown, a dry run, then the erasure */
  audit_ctx_t a = {0};
  store_erase_t x = {.dry_run = false};
  snprintf(x.name, sizeof x.name, "nobody.x");
  snprintf(x.pseudonym, sizeof x.pseudonym, "erased-000000000001");
  assert_int_equal(store_person_erase(s, &x, erase_entry, &a), TT_ENOTFOUND);
  assert_non_null(strstr(x.refused, "no person is known as nobody.x"));
  snprintf(x.name, sizeof x.name, "T-%lld", (long long)t1); /* an object's id is nobody */
  assert_int_equal(store_person_erase(s, &x, erase_entry, &a), TT_EINVAL);
  snprintf(x.name, sizeof x.name, "nadia.k");
  x.dry_run = true;
  int64_t head = 0;
  uint8_t hh[32];
  store_audit_head(s, &head, hh);
  assert_int_equal(store_person_erase(s, &x, erase_entry, &a), 0);
  assert_int_equal(a.calls, 0);
  assert_int_equal(x.changed[STORE_EC_TICKETS], 1);
  assert_int_equal(x.held[STORE_EC_TICKETS], 1);
  assert_int_equal(x.changed[STORE_EC_AUDIT], 2);
  assert_int_equal(x.held[STORE_EC_AUDIT], 1);
  store_ticket_t t;
  assert_int_equal(store_ticket_get(s, t1, &t), 0);
  assert_string_equal(t.requester, "nadia.k"); /* nothing changed */
  x.dry_run = false;
  assert_int_equal(store_person_erase(s, &x, erase_entry, &a), 0);
  assert_int_equal(a.calls, 1);
  assert_int_equal(x.erasure, head + 1);
  assert_int_equal(x.released, 3); /* T-1's requester; help-ask's actor and user (target is dev1) */
  /* The audit's values: the name alone became the pseudonym, a sentence with it "(erased)". */
  store_audit_t e;
  assert_int_equal(store_audit_one(s, 2, &e), 0);
  assert_string_equal(e.actor, "erased-000000000001");
  assert_string_equal(e.detail, "{\"user\":\"erased-000000000001\",\"x\":\"y\"}");
  assert_int_equal(x.nheld_tickets, 1);
  assert_int_equal(x.held_tickets[0], t2);
  assert_int_equal(store_ticket_get(s, t1, &t), 0);
  assert_string_equal(t.requester, "erased-000000000001");
  assert_string_equal(t.summary, "VPN drops for erased-000000000001");
  assert_int_equal(store_ticket_get(s, t2, &t), 0);
  assert_string_equal(t.requester, "nadia.k"); /* on hold */
  assert_int_equal(store_ticket_get(s, t3, &t), 0);
  assert_string_equal(t.requester, "nadia.kim");
  walk_intact(s, 0, NULL);

  /* A writer drops one more salt and claims the erasure: the walk says so. */
  char *db = NULL;
  sqlite3 *raw = NULL;
  assert_true(asprintf(&db, "%s/broker.db", fx->base) > 0);
  assert_int_equal(sqlite3_open(db, &raw), SQLITE_OK);
  char sql[200];
  snprintf(sql, sizeof sql, "UPDATE audit_gate SET open = 1; UPDATE audit_values SET salt = NULL, erased = %lld"
           " WHERE entry = 3 AND n = 0; UPDATE audit_gate SET open = 0;", (long long)x.erasure);
  assert_int_equal(sqlite3_exec(raw, sql, NULL, NULL, NULL), SQLITE_OK);
  tt_audit_walk_t w;
  tt_audit_walk_init(&w, NULL, 0);
  assert_int_equal(store_audit_walk(s, &w), 0);
  assert_int_equal(w.first_bad, 3);
  assert_non_null(strstr(w.problems[0], "lost its salt"));
  tt_audit_walk_free(&w);
  sqlite3_close(raw);
  free(db);
}

static void test_erase_survives_a_cut(void **state) {
  fx_t *fx = *state;
  broker_store_t *s = fx->s;
  int64_t id = 0;
  (void)ticket(s, "sam.q", "a ticket sam.q asked for");
  for (int i = 0; i < 3; i++)
    assert_int_equal(store_audit_append(s, 600 + i, "sam.q", "connect", "dev1", "{\"why\":\"sam.q asked\"}", &id), 0);
  audit_ctx_t a = {0};
  store_erase_t x = {.dry_run = false};
  snprintf(x.name, sizeof x.name, "sam.q");
  snprintf(x.pseudonym, sizeof x.pseudonym, "erased-000000000002");
  assert_int_equal(store_person_erase(s, &x, erase_entry, &a), 0);
  assert_int_equal(x.released, 6);
  walk_intact(s, 0, NULL);
  /* Prune entries 1 and 2 (a cut): their released values stay for the erasure to add up. */
  tt_audit_checkpoint_t cut;
  memset(&cut, 0, sizeof cut);
  cut.kind = TT_AUDIT_CP_CUT;
  cut.entries = 2;
  cut.ts_ms = 5000;
  uint32_t removed = 0;
  uint8_t head2[32];
  {
    tt_audit_walk_t w;
    tt_audit_walk_init(&w, NULL, 0);
    assert_int_equal(store_audit_walk(s, &w), 0);
    tt_audit_walk_free(&w);
  }
  /* entry 2's hash, the new base */
  sqlite3 *raw = NULL;
  char *db = NULL;
  assert_true(asprintf(&db, "%s/broker.db", fx->base) > 0);
  assert_int_equal(sqlite3_open(db, &raw), SQLITE_OK);
  sqlite3_stmt *st = NULL;
  assert_int_equal(sqlite3_prepare_v2(raw, "SELECT hash FROM audit WHERE id = 2", -1, &st, NULL), SQLITE_OK);
  assert_int_equal(sqlite3_step(st), SQLITE_ROW);
  memcpy(head2, sqlite3_column_blob(st, 0), 32);
  sqlite3_finalize(st);
  sqlite3_close(raw);
  free(db);
  memcpy(cut.head, head2, 32);
  assert_int_equal(store_audit_prune(s, 2, head2, &cut, "tether-audit-cut 1 2 test\n", 100, &removed), 0);
  assert_int_equal(removed, 2);
  walk_intact(s, 2, head2);
  int n = 0;
  assert_int_equal(store_audit_released_before(s, 0, 0, count_cb, &n), 0);
  assert_int_equal(n, 2); /* the export lists entries 1 and 2's released values */
  /* Without them, the erasure would not add up: the walk must be given them. */
  tt_audit_walk_t w;
  tt_audit_walk_init(&w, NULL, 0);
  w.based = true;
  w.base = 2;
  w.last_id = 2;
  memcpy(w.prev, head2, 32);
  assert_int_equal(store_audit_walk(s, &w), 0);
  assert_int_equal(w.first_bad, 0);
  tt_audit_walk_free(&w);
}

/* An entry about something a hold keeps (its ticket, or a session under it) is left; values too
 * many to take the pseudonym and still fit the row are emptied instead. */
static void test_holds_and_room(void **state) {
  fx_t *fx = *state;
  broker_store_t *s = fx->s;
  int64_t t = ticket(s, "kim.o", "kim.o's laptop");
  store_session_t v = {.ticket = t, .access = 1, .started_ms = 700};
  snprintf(v.device, sizeof v.device, "dev1");
  snprintf(v.person, sizeof v.person, "tech");
  snprintf(v.consent_by, sizeof v.consent_by, "kim.o");
  assert_int_equal(store_session_add(s, &v), 0);
  assert_int_equal(store_session_end(s, v.id, 800, "tech", "done"), 0);
  char sid[32], detail[512];
  snprintf(sid, sizeof sid, "{\"session\":\"S-%lld\",\"by\":\"kim.o\"}", (long long)v.id);
  int64_t id = 0, held_entry = 0, full = 0;
  assert_int_equal(store_audit_append(s, 900, "tech", "consent-given", "dev1", sid, &held_entry), 0);
  size_t o = (size_t)snprintf(detail, sizeof detail, "{");
  for (int i = 0; i < 13; i++) o += (size_t)snprintf(detail + o, sizeof detail - o, "%s\"k%d\":\"kim.o\"", i ? "," : "", i);
  o += (size_t)snprintf(detail + o, sizeof detail - o, ",\"pad\":\"");
  while (o < 480) detail[o++] = 'x';
  snprintf(detail + o, sizeof detail - o, "\"}");
  assert_int_equal(store_audit_append(s, 901, "kim.o", "many", "", detail, &full), 0);
  assert_int_equal(store_hold_set(s, t, "legal", "boss", 950), 0);
  audit_ctx_t a = {0};
  store_erase_t x = {.dry_run = false};
  snprintf(x.name, sizeof x.name, "kim.o");
  snprintf(x.pseudonym, sizeof x.pseudonym, "erased-000000000004");
  assert_int_equal(store_person_erase(s, &x, erase_entry, &a), 0);
  assert_int_equal(x.held[STORE_EC_AUDIT], 1); /* names S-n of the held ticket */
  store_audit_t e;
  assert_int_equal(store_audit_one(s, held_entry, &e), 0);
  assert_non_null(strstr(e.detail, "kim.o"));
  assert_int_equal(store_audit_one(s, full, &e), 0);
  assert_string_equal(e.actor, "erased-000000000004");
  assert_non_null(strstr(e.detail, "\"k0\":\"\",\"k1\":\"\""));
  assert_null(strstr(e.detail, "kim.o"));
  (void)id;
  walk_intact(s, 0, NULL);
}

static void test_refusals(void **state) {
  fx_t *fx = *state;
  broker_store_t *s = fx->s;
  store_device_t d = {.enrolled_ms = 1};
  snprintf(d.id, sizeof d.id, "laptop-7");
  assert_int_equal(store_device_add(s, &d), 0);
  audit_ctx_t a = {0};
  store_erase_t x = {.dry_run = false};
  snprintf(x.pseudonym, sizeof x.pseudonym, "erased-000000000003");
  snprintf(x.name, sizeof x.name, "laptop-7");
  assert_int_equal(store_person_erase(s, &x, erase_entry, &a), TT_EINVAL);
  assert_string_equal(x.refused, "laptop-7 is a device, or a word of a device's name, not a person");
  store_person_t p = {.role = STORE_PERSON_TECHNICIAN, .level = 1, .added_ms = 10};
  snprintf(p.name, sizeof p.name, "liv.t");
  snprintf(p.added_by, sizeof p.added_by, "boss");
  assert_int_equal(store_person_add(s, &p), 0);
  snprintf(x.name, sizeof x.name, "liv.t");
  assert_int_equal(store_person_erase(s, &x, erase_entry, &a), TT_EDENIED);
  assert_non_null(strstr(x.refused, "liv.t can still sign in"));
  assert_int_equal(store_revoke(s, STORE_REVOKE_PERSON, "liv.t", "boss", "left", 20), 0);
  assert_int_equal(store_person_erase(s, &x, erase_entry, &a), 0);
  bool revoked = false;
  assert_int_equal(store_is_revoked(s, STORE_REVOKE_PERSON, "liv.t", &revoked), 0);
  assert_true(revoked); /* kept under a hash of the name */
  store_person_t back;
  assert_int_equal(store_person_get(s, "liv.t", &back), TT_ENOTFOUND);
  assert_int_equal(a.calls, 1);
  /* Case does not get around a refusal: a device, the admin themselves, another identity. */
  snprintf(x.name, sizeof x.name, "LAPTOP-7");
  assert_int_equal(store_person_erase(s, &x, erase_entry, &a), TT_EINVAL);
  snprintf(x.by, sizeof x.by, "boss.b");
  snprintf(x.name, sizeof x.name, "Boss.B");
  assert_int_equal(store_person_erase(s, &x, erase_entry, &a), TT_EDENIED);
  assert_string_equal(x.refused, "an admin cannot erase themselves");
  snprintf(p.name, sizeof p.name, "Jo.R");
  assert_int_equal(store_person_add(s, &p), 0);
  (void)ticket(s, "jo.r", "a ticket of the other jo.r");
  snprintf(x.name, sizeof x.name, "jo.r");
  assert_int_equal(store_person_erase(s, &x, erase_entry, &a), TT_EINVAL);
  assert_string_equal(x.refused, "jo.r is found in another identity, Jo.R: erasing it would rewrite their records too");
  /* ... nor a word of one: boss in boss@hq, the admin themselves or anyone else */
  snprintf(x.by, sizeof x.by, "boss@hq");
  snprintf(x.name, sizeof x.name, "boss");
  assert_int_equal(store_person_erase(s, &x, erase_entry, &a), TT_EDENIED);
  snprintf(x.by, sizeof x.by, "root");
  snprintf(p.name, sizeof p.name, "ann@corp");
  assert_int_equal(store_person_add(s, &p), 0);
  (void)ticket(s, "ann", "the other ann");
  snprintf(x.name, sizeof x.name, "ann");
  assert_int_equal(store_person_erase(s, &x, erase_entry, &a), TT_EINVAL);
  assert_non_null(strstr(x.refused, "found in another identity, ann@corp"));
  /* An object's id, or a role, even one typed as a requester, is nobody. */
  (void)ticket(s, "T-3", "a requester that is an id");
  snprintf(x.name, sizeof x.name, "T-3");
  assert_int_equal(store_person_erase(s, &x, erase_entry, &a), TT_EINVAL);
  snprintf(x.name, sizeof x.name, "admin");
  assert_int_equal(store_person_erase(s, &x, erase_entry, &a), TT_EINVAL);
  snprintf(x.name, sizeof x.name, "broker");
  assert_int_equal(store_person_erase(s, &x, erase_entry, &a), TT_EINVAL);
  assert_int_equal(a.calls, 1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_a_name_is_a_word),
      cmocka_unit_test_setup_teardown(test_erase_and_walk, setup, teardown),
      cmocka_unit_test_setup_teardown(test_erase_survives_a_cut, setup, teardown),
      cmocka_unit_test_setup_teardown(test_holds_and_room, setup, teardown),
      cmocka_unit_test_setup_teardown(test_refusals, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
