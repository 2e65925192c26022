/* broker/store/records/closed_tickets.c and inventory.c's retention: a ticket closed longer
 * ago than the keep goes with its timeline, sessions, recordings (and their files),
 * diagnostics, help requests and links, a storm with its members; what is held, recent, open,
 * alerting or in a family that must stay, stays; the audit is untouched. Inventory history
 * before the cut leaves `history`, while the current inventory and every read from the floor
 * on are what they were. Both in budgeted steps. */
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

#include <openssl/evp.h>
#include <sqlite3.h>

#include "store.h"
#include "tt/log.h"

#define DAY 86400000ll
#define NOW (1000 * DAY)
#define KEEP (100 * DAY)

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
  snprintf(fx->base, sizeof fx->base, "%s/test_store_retention.XXXXXX", tmp);
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

/* A number over a plain connection (what an admin's sqlite3 shell would see), ?1 = id. */
static int64_t count(const fx_t *fx, const char *sql, int64_t id) {
  sqlite3 *db = NULL;
  sqlite3_stmt *st = NULL;
  assert_int_equal(sqlite3_open_v2(fx->db, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
  assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
  if (sqlite3_bind_parameter_count(st) > 0) assert_int_equal(sqlite3_bind_int64(st, 1, id), SQLITE_OK);
  assert_int_equal(sqlite3_step(st), SQLITE_ROW);
  int64_t v = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  sqlite3_close(db);
  return v;
}

/* ---- closed tickets -------------------------------------------------------------------------- */

static int64_t ticket(fx_t *fx, int64_t at_ms, int64_t parent) {
  store_ticket_t t = {.priority = STORE_TICKET_NORMAL, .parent = parent};
  snprintf(t.device, sizeof t.device, "dev-1");
  snprintf(t.summary, sizeof t.summary, "printer jams");
  snprintf(t.requester, sizeof t.requester, "sam");
  assert_int_equal(store_ticket_add(fx->s, &t, "tech", at_ms), 0);
  assert_int_equal(store_ticket_event_add(fx->s, t.id, at_ms + 1, "tech", "comment", "looked at it"), 0);
  return t.id;
}

static void set_state(fx_t *fx, int64_t id, store_ticket_state_t state, const char *kind, int64_t at_ms) {
  store_ticket_t t;
  assert_int_equal(store_ticket_get(fx->s, id, &t), 0);
  t.state = state;
  if (state == STORE_TICKET_RESOLVED) t.resolved_ms = at_ms;
  assert_int_equal(store_ticket_update(fx->s, &t, "tech", kind, "", at_ms), 0);
}

static void close_at(fx_t *fx, int64_t id, int64_t at_ms) { set_state(fx, id, STORE_TICKET_CLOSED, "closed", at_ms); }

/* A recorded session on the ticket, with a diagnostics report; the recording's file is made
 * on disk. Returns the file's path. */
static void work(fx_t *fx, int64_t id, int64_t at_ms, char *file, size_t cap) {
  store_session_t ses = {.ticket = id, .access = STORE_ACCESS_SHELL, .started_ms = at_ms};
  snprintf(ses.device, sizeof ses.device, "dev-1");
  snprintf(ses.person, sizeof ses.person, "tech");
  assert_int_equal(store_session_add(fx->s, &ses), 0);
  store_recording_t r = {.session = ses.id, .ticket = id, .started_ms = at_ms};
  snprintf(r.device, sizeof r.device, "dev-1");
  snprintf(r.person, sizeof r.person, "tech");
  assert_int_equal(store_recording_add(fx->s, &r), 0);
  assert_int_equal(store_recording_finish(fx->s, r.id, at_ms + 5, 3, NULL, false), 0);
  assert_int_equal(store_session_end(fx->s, ses.id, at_ms + 10, "tech", "done"), 0);
  char dir[PATH_MAX + 16];
  snprintf(dir, sizeof dir, "%s/recordings", fx->dir);
  (void)mkdir(dir, 0700);
  snprintf(file, cap, "%.3000s/%.512s", fx->dir, r.path);
  FILE *f = fopen(file, "w");
  assert_non_null(f);
  fputs("zst", f);
  fclose(f);
  store_diag_t d = {.ticket = id, .session = ses.id, .taken_ms = at_ms + 2, .size = 4};
  snprintf(d.device, sizeof d.device, "dev-1");
  snprintf(d.person, sizeof d.person, "tech");
  memset(d.sha256, 'a', 64);
  d.sha256[64] = '\0';
  static const uint8_t z[] = {1, 2, 3};
  assert_int_equal(store_diag_add(fx->s, &d, z, sizeof z), 0);
}

/* Steps of a small budget until one says there is no more: how many tickets went. */
static uint32_t sweep_tickets(fx_t *fx, uint32_t budget) {
  store_sweep_cursor_t cur;
  memset(&cur, 0, sizeof cur);
  uint32_t total = 0, n = 0, steps = 0;
  bool more = true;
  while (more) {
    assert_int_equal(store_retention_tickets(fx->s, fx->dir, NOW - KEEP, budget, NOW, &cur, &n, &more), 0);
    total += n;
    assert_true(++steps < 1000);
  }
  return total;
}

static bool exists(const char *path) { return access(path, F_OK) == 0; }

static void test_closed_tickets_expire_with_what_names_them(void **state) {
  fx_t *fx = *state;
  int64_t old_at = 10 * DAY, closed_at = 20 * DAY;
  char old_file[PATH_MAX], held_file[PATH_MAX];
  int64_t old = ticket(fx, old_at, 0);
  work(fx, old, old_at, old_file, sizeof old_file);
  static const uint8_t nonce[STORE_HELP_NONCE_LEN] = {7};
  assert_int_equal(store_help_add(fx->s, "dev-1", nonce, "sam", old, old_at, old_at), 0);
  store_kb_article_t kb = {.body = "Turn it off and on.", .body_len = 19};
  snprintf(kb.title, sizeof kb.title, "Printer jams");
  assert_int_equal(store_kb_put(fx->s, &kb, "tech", old_at), 0);
  assert_int_equal(store_kb_link(fx->s, old, kb.id, "tech", old_at), 0);
  store_alert_t al = {.state = 4, .opened_ms = old_at, .last_ms = old_at, .resolved_ms = old_at + 1, .ticket = old};
  snprintf(al.device, sizeof al.device, "dev-1");
  snprintf(al.check, sizeof al.check, "disk_used");
  assert_int_equal(store_alert_put(fx->s, &al), 0);
  close_at(fx, old, closed_at);
  int64_t audit_id = 0;
  assert_int_equal(store_audit_append(fx->s, closed_at, "tech", "ticket-close", "T-1", "{}", &audit_id), 0);

  int64_t held = ticket(fx, old_at, 0);
  work(fx, held, old_at, held_file, sizeof held_file);
  close_at(fx, held, closed_at);
  assert_int_equal(store_hold_set(fx->s, held, "legal hold #12", "boss", closed_at), 0);
  int64_t recent = ticket(fx, old_at, 0);
  close_at(fx, recent, NOW - 10 * DAY);
  int64_t open_old = ticket(fx, old_at, 0);
  int64_t resolved_old = ticket(fx, old_at, 0);
  set_state(fx, resolved_old, STORE_TICKET_RESOLVED, "resolved", closed_at);
  /* Closed long ago, then reopened and closed again lately: counted from the last close. */
  int64_t again = ticket(fx, old_at, 0);
  close_at(fx, again, closed_at);
  set_state(fx, again, STORE_TICKET_OPEN, "reopened", closed_at + DAY);
  close_at(fx, again, NOW - DAY);
  /* Closed, but a check still fails on it: the alert writes to it. */
  int64_t alerting = ticket(fx, old_at, 0);
  close_at(fx, alerting, closed_at);
  store_alert_t live = {.state = 1, .opened_ms = old_at, .last_ms = old_at, .ticket = alerting};
  snprintf(live.device, sizeof live.device, "dev-2");
  snprintf(live.check, sizeof live.check, "disk_used");
  assert_int_equal(store_alert_put(fx->s, &live), 0);
  /* A storm whose members all closed goes whole; one with a member still open stays whole. */
  int64_t storm = ticket(fx, old_at, 0), m1 = ticket(fx, old_at, storm), m2 = ticket(fx, old_at, storm);
  close_at(fx, m1, closed_at);
  close_at(fx, storm, closed_at + 1);
  close_at(fx, m2, closed_at + 2);
  int64_t storm2 = ticket(fx, old_at, 0), m3 = ticket(fx, old_at, storm2), m4 = ticket(fx, old_at, storm2);
  close_at(fx, storm2, closed_at);
  close_at(fx, m3, closed_at);
  (void)m4; /* open */
  /* A held storm keeps its closed members. */
  int64_t storm3 = ticket(fx, old_at, 0), m5 = ticket(fx, old_at, storm3);
  close_at(fx, storm3, closed_at);
  close_at(fx, m5, closed_at);
  assert_int_equal(store_hold_set(fx->s, storm3, "investigation", "boss", closed_at), 0);

  assert_int_equal(count(fx, "SELECT closed_ms FROM tickets WHERE id = ?1", again), NOW - DAY);
  assert_int_equal(count(fx, "SELECT closed_ms FROM tickets WHERE id = ?1", resolved_old), 0);
  int64_t audit_rows = count(fx, "SELECT count(*) FROM audit WHERE id > ?1", 0);

  /* A budget of 5 rows: a ticket's rows go in one step, several steps in all. */
  assert_int_equal(sweep_tickets(fx, 5), 4); /* old, and storm with m1 and m2 */

  store_ticket_t t;
  int64_t gone[] = {old, storm, m1, m2};
  for (size_t i = 0; i < sizeof gone / sizeof gone[0]; i++)
    assert_int_equal(store_ticket_get(fx->s, gone[i], &t), TT_ENOTFOUND);
  assert_int_equal(count(fx, "SELECT count(*) FROM ticket_events WHERE ticket = ?1", old), 0);
  assert_int_equal(count(fx, "SELECT count(*) FROM sessions WHERE ticket = ?1", old), 0);
  assert_int_equal(count(fx, "SELECT count(*) FROM recordings WHERE ticket = ?1", old), 0);
  assert_int_equal(count(fx, "SELECT count(*) FROM diag_reports WHERE ticket = ?1", old), 0);
  assert_int_equal(count(fx, "SELECT count(*) FROM help_requests WHERE ticket = ?1", old), 0);
  assert_int_equal(count(fx, "SELECT count(*) FROM kb_links WHERE ticket = ?1", old), 0);
  assert_false(exists(old_file));
  /* The alert stays, as if it had never had a ticket; the audit keeps every entry. */
  store_alert_t got;
  assert_int_equal(store_alert_get(fx->s, al.id, &got), 0);
  assert_int_equal(got.ticket, 0);
  assert_int_equal(count(fx, "SELECT count(*) FROM audit WHERE id > ?1", 0), audit_rows);
  int64_t checked = 0, bad = -1;
  assert_int_equal(store_audit_verify(fx->s, &checked, &bad), 0);
  assert_int_equal(bad, 0);

  int64_t kept[] = {held, recent, open_old, resolved_old, again, alerting, storm2, m3, m4, storm3, m5};
  for (size_t i = 0; i < sizeof kept / sizeof kept[0]; i++) {
    assert_int_equal(store_ticket_get(fx->s, kept[i], &t), 0);
    assert_true(count(fx, "SELECT count(*) FROM ticket_events WHERE ticket = ?1", kept[i]) >= 2);
  }
  assert_true(exists(held_file));
  assert_int_equal(count(fx, "SELECT count(*) FROM recordings WHERE ticket = ?1 AND expired_ms = 0", held), 1);
  assert_int_equal(count(fx, "SELECT count(*) FROM diag_reports WHERE ticket = ?1", held), 1);
  assert_int_equal(store_alert_get(fx->s, live.id, &got), 0);
  assert_int_equal(got.ticket, alerting);

  /* The timeline is append-only again once the sweep is done. */
  sqlite3 *db = NULL;
  assert_int_equal(sqlite3_open_v2(fx->db, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
  char sql[96];
  snprintf(sql, sizeof sql, "DELETE FROM ticket_events WHERE ticket = %lld", (long long)held);
  assert_int_not_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
  sqlite3_close(db);

  /* Nothing more to do; the hold released, the held ticket goes (and its file). */
  assert_int_equal(sweep_tickets(fx, 100), 0);
  assert_int_equal(store_hold_clear(fx->s, held), 0);
  assert_int_equal(sweep_tickets(fx, 100), 1);
  assert_false(exists(held_file));
  assert_int_equal(store_ticket_get(fx->s, held, &t), TT_ENOTFOUND);
}

/* ---- inventory history ----------------------------------------------------------------------- */

static void sha256(const void *p, size_t len, uint8_t out[32]) {
  unsigned int n = 0;
  assert_int_equal(EVP_Digest(p, len, out, &n, EVP_sha256(), NULL), 1);
}

static store_inv_table_t tab(const char *name, const char *json) {
  store_inv_table_t t;
  memset(&t, 0, sizeof t);
  snprintf(t.name, sizeof t.name, "%s", name);
  if (json != NULL) {
    t.body = (const uint8_t *)json;
    t.len = strlen(json);
    sha256(t.body, t.len, t.sha256);
  }
  return t;
}

static int64_t put(fx_t *fx, const char *device, int64_t at_ms, store_inv_table_t *t, size_t n) {
  int64_t v = 0;
  assert_int_equal(store_inv_put(fx->s, device, at_ms, at_ms, t, n, &v), 0);
  assert_true(v > 0);
  return v;
}

/* A device's tables at a version as one line: "name@version@received=body;..." */
typedef struct {
  char text[2048];
} snap_t;

static int snap_cb(void *ctx, const char *name, int64_t version, int64_t received_ms, const uint8_t *body,
                   size_t len) {
  snap_t *s = ctx;
  size_t off = strlen(s->text);
  snprintf(s->text + off, sizeof s->text - off, "%s@%lld@%lld=%.*s;", name, (long long)version,
           (long long)received_ms, (int)len, (const char *)body);
  return 0;
}

static snap_t snap(fx_t *fx, const char *device, int64_t version) {
  snap_t s;
  memset(&s, 0, sizeof s);
  assert_int_equal(store_inv_tables(fx->s, device, version, snap_cb, &s), 0);
  return s;
}

typedef struct {
  int64_t v[16];
  size_t n;
} hist_t;

static int hist_cb(void *ctx, int64_t version, int64_t collected_ms, int64_t received_ms, const char *changed) {
  hist_t *h = ctx;
  (void)collected_ms;
  (void)received_ms;
  (void)changed;
  if (h->n < 16) h->v[h->n++] = version;
  return 0;
}

static hist_t history(fx_t *fx, const char *device) {
  hist_t h;
  memset(&h, 0, sizeof h);
  assert_int_equal(store_inv_history(fx->s, device, 0, 0, hist_cb, &h), 0);
  return h;
}

static uint32_t sweep_inventory(fx_t *fx, uint32_t budget) {
  store_sweep_cursor_t cur;
  memset(&cur, 0, sizeof cur);
  uint32_t total = 0, n = 0, steps = 0;
  bool more = true;
  while (more) {
    assert_int_equal(store_retention_inventory(fx->s, NOW - KEEP, budget, &cur, &n, &more), 0);
    total += n;
    assert_true(++steps < 1000);
  }
  return total;
}

static int noop_cb(void *ctx, const char *name, int64_t version, int64_t received_ms, const uint8_t *body,
                   size_t len) {
  (void)ctx, (void)name, (void)version, (void)received_ms, (void)body, (void)len;
  return 0;
}

static void test_inventory_history_expires_current_stays(void **state) {
  fx_t *fx = *state;
  /* dev-1: a, b, c at day 10; a changes and c goes at 20; a again at 30 (all past the
   * keep); b changes at 950 and 990 (within it). */
  store_inv_table_t t1[] = {tab("a", "[1]"), tab("b", "[1]"), tab("c", "[1]")};
  int64_t v1 = put(fx, "dev-1", 10 * DAY, t1, 3);
  store_inv_table_t t2[] = {tab("a", "[2]"), tab("c", NULL)};
  int64_t v2 = put(fx, "dev-1", 20 * DAY, t2, 2);
  store_inv_table_t t3[] = {tab("a", "[3]")};
  int64_t v3 = put(fx, "dev-1", 30 * DAY, t3, 1);
  store_inv_table_t t4[] = {tab("b", "[4]")};
  int64_t v4 = put(fx, "dev-1", 950 * DAY, t4, 1);
  store_inv_table_t t5[] = {tab("b", "[5]")};
  int64_t v5 = put(fx, "dev-1", 990 * DAY, t5, 1);
  /* dev-2: nothing within the keep: its newest version stays, it is the current one. */
  store_inv_table_t u1[] = {tab("a", "[1]"), tab("z", "[1]")};
  int64_t w1 = put(fx, "dev-2", 10 * DAY, u1, 2);
  store_inv_table_t u2[] = {tab("a", "[2]")};
  int64_t w2 = put(fx, "dev-2", 20 * DAY, u2, 1);
  /* dev-3: all within the keep. */
  store_inv_table_t x1[] = {tab("a", "[1]")};
  int64_t y1 = put(fx, "dev-3", 990 * DAY, x1, 1);

  snap_t cur1 = snap(fx, "dev-1", 0), at4 = snap(fx, "dev-1", v4), cur2 = snap(fx, "dev-2", 0),
         cur3 = snap(fx, "dev-3", 0);
  int64_t find_rows = count(fx, "SELECT count(*) FROM inv_rows WHERE refs > ?1", 0);

  /* v1, v2, v3 of dev-1 and w1 of dev-2 leave the history; budgets of 2 rows a step. */
  assert_int_equal(sweep_inventory(fx, 2), 4);

  hist_t h = history(fx, "dev-1");
  assert_int_equal(h.n, 2);
  assert_int_equal(h.v[0], v5);
  assert_int_equal(h.v[1], v4);
  h = history(fx, "dev-2");
  assert_int_equal(h.n, 1);
  assert_int_equal(h.v[0], w2);
  h = history(fx, "dev-3");
  assert_int_equal(h.n, 1);
  assert_int_equal(h.v[0], y1);
  /* What is current, and what every version left reads, is what it was: a from v3 with its
   * received time, b, and no c. */
  assert_string_equal(snap(fx, "dev-1", 0).text, cur1.text);
  assert_string_equal(snap(fx, "dev-1", v4).text, at4.text);
  assert_non_null(strstr(cur1.text, "a@"));
  assert_null(strstr(cur1.text, "c@"));
  assert_string_equal(snap(fx, "dev-2", 0).text, cur2.text);
  assert_string_equal(snap(fx, "dev-3", 0).text, cur3.text);
  /* Before the floor there is nothing to read; at a time after it, the version then. */
  int64_t v = 0;
  assert_int_equal(store_inv_version_at(fx->s, "dev-1", 25 * DAY, &v), TT_ENOTFOUND);
  assert_int_equal(store_inv_version_at(fx->s, "dev-1", 960 * DAY, &v), 0);
  assert_int_equal(v, v4);
  assert_int_equal(store_inv_table(fx->s, "dev-1", "a", v1, noop_cb, NULL), TT_ENOTFOUND);
  assert_int_equal(store_inv_table(fx->s, "dev-1", "a", v4, noop_cb, NULL), 0);
  memset(&h, 0, sizeof h);
  assert_int_equal(store_inv_history(fx->s, "dev-1", v3 + 1, 1, hist_cb, &h), 0);
  assert_int_equal(h.n, 0);
  /* The rows only the old versions needed are gone, and the versions that held only them;
   * v3 stays out of history for a's received time. */
  assert_int_equal(count(fx, "SELECT count(*) FROM inv_tables WHERE device = 'dev-1' AND version < ?1", v4), 1);
  assert_int_equal(count(fx, "SELECT count(*) FROM inv_versions WHERE id = ?1", v1), 0);
  assert_int_equal(count(fx, "SELECT count(*) FROM inv_versions WHERE id = ?1", v2), 0);
  assert_int_equal(count(fx, "SELECT count(*) FROM inv_versions WHERE id = ?1", v3), 1);
  assert_int_equal(count(fx, "SELECT count(*) FROM inv_versions WHERE id = ?1", w1), 1); /* z's */
  assert_int_equal(count(fx, "SELECT count(*) FROM inv_tables WHERE device = 'dev-2' AND version = ?1", w1), 1);
  /* The find index holds the current inventory only: untouched. */
  assert_int_equal(count(fx, "SELECT count(*) FROM inv_rows WHERE refs > ?1", 0), find_rows);

  /* Again: nothing to do. A new version keeps working on top of the floor. */
  assert_int_equal(sweep_inventory(fx, 2), 0);
  store_inv_table_t t6[] = {tab("a", "[6]"), tab("c", "[6]")};
  int64_t v6 = put(fx, "dev-1", NOW, t6, 2);
  h = history(fx, "dev-1");
  assert_int_equal(h.n, 3);
  assert_int_equal(h.v[0], v6);
  assert_non_null(strstr(snap(fx, "dev-1", 0).text, "c@"));
  assert_string_equal(snap(fx, "dev-1", v5).text, cur1.text);
}

int main(void) {
  tt_log_set_level(TT_LOG_OFF);
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(test_closed_tickets_expire_with_what_names_them, setup, teardown),
    cmocka_unit_test_setup_teardown(test_inventory_history_expires_current_stays, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
