/* Retention: how long each class of record is kept, and the sweep that removes what expired
 * (README "Data protection officer"). Settings are the store's (an admin's `tether retention
 * set`, audited), with defaults that say why. The sweep runs on the store's writer thread in
 * steps of TT_RETENTION_BUDGET rows, each step its own request (so other writes interleave),
 * every retention.sweep_interval and on `tether retention sweep`: recordings (files deleted,
 * rows marked expired), diagnostics reports, closed tickets (with every row that names them),
 * inventory history (each device's current inventory stays), then the audit: the entries
 * before the cutoff (and before the creation of any ticket on hold) are pruned up to a base
 * that a signed tether-audit-cut line records, in the store and the checkpoint file, so that
 * `audit verify` still says intact. Tickets on hold keep their records. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "broker.h"
#include "tt/hex.h"
#include "tt/log.h"
#include "tt/msg.h"

#define MOD "retention"
#define DAY_MS 86400000ll

typedef struct {
  const char *name;
  int64_t default_ms;
  const char *why;
} class_t;

static const class_t k_classes[] = {
    {"audit", 730 * DAY_MS,
     "two years: investigations look back a year and more, and auditors ask for at least one"},
    {"recordings", 90 * DAY_MS,
     "ninety days: a screen is the most personal record; it matters while its ticket can be questioned"},
    {"diagnostics", 30 * DAY_MS, "thirty days: a report describes the machine at one moment; its use ends with the ticket"},
    {"closed_tickets", 1095 * DAY_MS,
     "three years: reports compare years, and a problem that comes back is found in its old ticket"},
    {"inventory_history", 365 * DAY_MS,
     "one year: what changed on a machine is asked about for a year's audit; the current inventory always stays"},
    {"transfers", 365 * DAY_MS,
     "one year: a file's path says what was on a person's machine; who moved how many bytes when stays in the audit"},
};
#define NCLASSES (sizeof k_classes / sizeof k_classes[0])
/* The longest class name and its NUL. */
#define CLASS_NAME_MAX 24
#define CLASS_LIST "audit, recordings, diagnostics, closed_tickets, inventory_history or transfers"

static const class_t *class_named(const char *name) {
  for (size_t i = 0; i < NCLASSES; i++)
    if (strcmp(k_classes[i].name, name) == 0) return &k_classes[i];
  return NULL;
}

/* ---- the sweep ---------------------------------------------------------------------------- */

typedef enum {
  STEP_RECORDINGS, STEP_DIAGNOSTICS, STEP_TICKETS, STEP_INVENTORY, STEP_TRANSFERS, STEP_AUDIT, STEP_DONE
} step_t;

typedef struct sweep_s {
  store_req_t req;
  broker_t *b;
  step_t step;
  int64_t now_ms;
  uint32_t recordings, diagnostics, tickets, inventory, audit_removed, transfer_events;
  int64_t transfer_values, transfers_after; /* audit values released; the last entry looked at */
  int64_t audit_base;
  uint32_t last; /* what the last step removed */
  bool more;     /* the last step's budget ran out: the same step again */
  store_sweep_cursor_t cursor; /* closed tickets' and inventory's walk; zeroed between them */
  bool cut_new;  /* this step signed a line (a cut, a release): it goes to the file after the commit */
  tt_audit_checkpoint_t cut;
  char line[TT_AUDIT_CP_LINE_MAX];
  /* who asked (a console waiting for the answer), or NULL for the timer's */
  broker_conn_t *c;
  uint32_t id;
  char by[TT_NAME_MAX + 1];
} sweep_t;

static int64_t keep_of(broker_store_t *s, const char *cls) {
  int64_t keep = 0, at = 0;
  char by[STORE_NAME_MAX];
  if (store_retention_get(s, cls, &keep, by, sizeof by, &at) != 0) keep = class_named(cls)->default_ms;
  return keep;
}

/* The release of old transfers' paths: its own audit entry and signed line, committing to
 * them (tt/audit.h). */
static int release_entry(void *ctx, broker_store_t *s, int64_t released, const uint8_t acc[32], int64_t *id) {
  sweep_t *x = ctx;
  char n[24], before[24], values[TT_HEX_CAP(32)];
  snprintf(n, sizeof n, "%" PRId64, released);
  snprintf(before, sizeof before, "%" PRId64, x->now_ms - keep_of(s, "transfers"));
  tt_hex(values, sizeof values, acc, 32);
  store_audit_rec_t a;
  broker_audit_rec(&a, x->by[0] ? x->by : "broker", TT_AUDIT_RELEASE_ACTION, "", "class", "transfers", "before_ms",
                   before, "released", n, "values", values, AUDIT_END);
  int rc = broker_audit_erasure(x->b, s, &a, released, acc, id, x->line, sizeof x->line);
  x->cut_new = rc == 0; /* its line goes to the file after the commit, as a cut's does */
  return rc;
}

/* Files an erasure could not delete then (logged) are tried again at each sweep. */
static void retry_erased_files(broker_store_t *s, sweep_t *x) {
  uint32_t gone = 0, failed = 0;
  if (store_erase_files(s, x->b->cfg.data_dir, 0, &gone, &failed) != 0 || failed)
    TT_WARN(MOD, "erased recordings' files still not deleted", "deleted=%u failed=%u", gone, failed);
}

static int sweep_run(broker_store_t *s, store_req_t *r) {
  sweep_t *x = (sweep_t *)r;
  x->last = 0;
  x->more = false;
  x->cut_new = false;
  int rc = 0;
  switch (x->step) {
  case STEP_RECORDINGS:
    if (x->recordings == 0) retry_erased_files(s, x);
    rc = store_retention_recordings(s, x->b->cfg.data_dir, x->now_ms - keep_of(s, "recordings"), TT_RETENTION_BUDGET,
                                    x->now_ms, &x->last);
    x->recordings += x->last;
    x->more = x->last >= TT_RETENTION_BUDGET;
    break;
  case STEP_DIAGNOSTICS:
    rc = store_retention_diagnostics(s, x->now_ms - keep_of(s, "diagnostics"), TT_RETENTION_BUDGET, &x->last);
    x->diagnostics += x->last;
    x->more = x->last >= TT_RETENTION_BUDGET;
    break;
  case STEP_TICKETS:
    rc = store_retention_tickets(s, x->b->cfg.data_dir, x->now_ms - keep_of(s, "closed_tickets"), TT_RETENTION_BUDGET,
                                 x->now_ms, &x->cursor, &x->last, &x->more);
    x->tickets += x->last;
    break;
  case STEP_INVENTORY:
    rc = store_retention_inventory(s, x->now_ms - keep_of(s, "inventory_history"), TT_RETENTION_BUDGET, &x->cursor,
                                   &x->last, &x->more);
    x->inventory += x->last;
    break;
  case STEP_TRANSFERS: {
    int64_t released = 0;
    rc = store_retention_transfers(s, x->now_ms - keep_of(s, "transfers"), TT_RETENTION_BUDGET, &x->transfers_after,
                                   release_entry, x, &x->last, &released, &x->more);
    x->transfer_events += x->last;
    x->transfer_values += released;
    break;
  }
  case STEP_AUDIT: {
    int64_t k = 0;
    uint8_t head[32];
    rc = store_audit_cut_point(s, x->now_ms - keep_of(s, "audit"), &k, head);
    if (rc == 0 && k > 0) { /* a new base: signed here, with the broker's own key */
      memset(&x->cut, 0, sizeof x->cut);
      x->cut.kind = TT_AUDIT_CP_CUT;
      x->cut.entries = k;
      memcpy(x->cut.head, head, 32);
      x->cut.ts_ms = x->now_ms;
      rc = tt_audit_checkpoint_sign(&x->cut, x->b->cp_key, x->b->cp_cert);
      if (rc == 0) rc = tt_audit_checkpoint_format(&x->cut, x->line, sizeof x->line);
      x->cut_new = rc == 0;
    }
    if (rc == 0) rc = store_audit_prune(s, x->cut_new ? k : 0, head, &x->cut, x->line, TT_RETENTION_BUDGET, &x->last);
    if (rc == 0) rc = store_audit_base(s, &x->audit_base, head);
    x->audit_removed += x->last;
    x->more = x->last >= TT_RETENTION_BUDGET;
    break;
  }
  case STEP_DONE: break;
  }
  return rc;
}

/* The cut is in the store: now its line goes to the file outside it too. */
static int sweep_after_commit(broker_store_t *s, store_req_t *r) {
  sweep_t *x = (sweep_t *)r;
  (void)s;
  if (x->cut_new && broker_audit_append_line(x->b, x->line) != 0)
    TT_ERROR(MOD, "signed line not written to the checkpoint file", "step=%d", (int)x->step);
  return 0;
}

static int send_view(broker_conn_t *c, uint32_t id, const sweep_t *x, store_req_t *r);
static void sweep_done(store_req_t *r);

static int sweep_submit(sweep_t *x) {
  memset(&x->req, 0, sizeof x->req);
  x->req.run = sweep_run;
  x->req.after_commit = sweep_after_commit;
  x->req.done = sweep_done;
  x->req.lane = STORE_LANE_WRITE;
  x->req.what = "retention_sweep";
  return store_svc_submit(x->b->svc, &x->req);
}

static void sweep_finish(sweep_t *x, int rc) {
  broker_t *b = x->b;
  b->retention_sweeping = false;
  if (rc) TT_ERROR(MOD, "sweep failed", "step=%d err=%s", (int)x->step, tt_errname(rc));
  if (x->recordings || x->diagnostics || x->tickets || x->inventory || x->audit_removed || x->transfer_events ||
      x->transfer_values) {
    char rec[16], diag[16], tix[16], inv[16], aud[16], base[24], tev[16], tva[24];
    snprintf(tev, sizeof tev, "%u", x->transfer_events);
    snprintf(tva, sizeof tva, "%" PRId64, x->transfer_values);
    snprintf(rec, sizeof rec, "%u", x->recordings);
    snprintf(diag, sizeof diag, "%u", x->diagnostics);
    snprintf(tix, sizeof tix, "%u", x->tickets);
    snprintf(inv, sizeof inv, "%u", x->inventory);
    snprintf(aud, sizeof aud, "%u", x->audit_removed);
    snprintf(base, sizeof base, "%" PRId64, x->audit_base);
    TT_INFO(MOD, "swept",
            "recordings=%u diagnostics=%u closed_tickets=%u inventory_history=%u transfer_events=%u "
            "transfer_values=%" PRId64 " audit=%u audit_base=%" PRId64,
            x->recordings, x->diagnostics, x->tickets, x->inventory, x->transfer_events, x->transfer_values,
            x->audit_removed, x->audit_base);
    broker_audit(b, x->by[0] ? x->by : "broker", "retention-sweep", "", "recordings", rec, "diagnostics", diag,
                 "closed_tickets", tix, "inventory_history", inv, "transfer_events", tev, "transfer_values", tva,
                 "audit", aud, "audit_base", base, AUDIT_END);
  }
  if (x->c) {
    broker_conn_t *c = x->c;
    x->c = NULL;
    if (broker_conn_work_done(c) && c->link && !c->link->closing) {
      int src = rc ? broker_reply_error(c, x->id, TT_EIO, "the sweep failed; see the broker's log")
                   : send_view(c, x->id, x, NULL);
      if (src) tt_link_close(c->link, src, "peer not reading");
    }
  }
  free(x);
}

static void sweep_done(store_req_t *r) {
  sweep_t *x = (sweep_t *)r;
  int rc = r->rc;
  if (rc == 0) {
    /* A step whose budget ran out goes again; one that finished moves on. */
    if (!x->more || x->step == STEP_DONE) {
      x->step++;
      memset(&x->cursor, 0, sizeof x->cursor);
    }
    if (x->step < STEP_DONE && !x->b->stopping) {
      rc = sweep_submit(x);
      if (rc == 0) return;
    }
  }
  sweep_finish(x, rc);
}

/* Start a sweep unless one runs: c (with its request id) is answered when it ends. */
static int sweep_start(broker_t *b, broker_conn_t *c, uint32_t id) {
  if (b->retention_sweeping) return TT_EBUSY;
  sweep_t *x = calloc(1, sizeof(*x));
  if (!x) return TT_ENOMEM;
  x->b = b;
  x->now_ms = (int64_t)broker_unix_ms();
  if (c) {
    x->c = c;
    x->id = id;
    snprintf(x->by, sizeof x->by, "%s", c->id.name);
  }
  int rc = sweep_submit(x);
  if (rc) {
    free(x);
    return rc;
  }
  if (c) c->work++;
  b->retention_sweeping = true;
  return 0;
}

void broker_retention_tick(broker_t *b) {
  int rc = sweep_start(b, NULL, 0);
  if (rc && rc != TT_EBUSY) TT_WARN(MOD, "sweep not started", "err=%s", tt_errname(rc));
}

/* ---- show and set ------------------------------------------------------------------------- */

typedef struct {
  broker_creq_t h;
  Tether__RetentionOp op;
  size_t nset;
  char set_name[NCLASSES][CLASS_NAME_MAX];
  int64_t set_ms[NCLASSES];
  char by[TT_NAME_MAX + 1];
  int64_t now_ms;
  /* the view */
  int64_t keep[NCLASSES], at[NCLASSES];
  char set_by[NCLASSES][STORE_NAME_MAX];
  uint32_t holds;
} ret_req_t;

static int ret_run(broker_store_t *s, store_req_t *r) {
  ret_req_t *x = (ret_req_t *)r;
  int rc = 0;
  for (size_t i = 0; rc == 0 && i < x->nset; i++) rc = store_retention_set(s, x->set_name[i], x->set_ms[i], x->by, x->now_ms);
  for (size_t i = 0; rc == 0 && i < NCLASSES; i++) {
    int g = store_retention_get(s, k_classes[i].name, &x->keep[i], x->set_by[i], sizeof x->set_by[i], &x->at[i]);
    if (g == TT_ENOTFOUND) {
      x->keep[i] = k_classes[i].default_ms;
      x->set_by[i][0] = '\0';
      x->at[i] = 0;
    } else {
      rc = g;
    }
  }
  if (rc == 0) rc = store_holds_count(s, &x->holds);
  return rc;
}

static int send_view(broker_conn_t *c, uint32_t id, const sweep_t *sw, store_req_t *r) {
  const ret_req_t *x = r ? (const ret_req_t *)r : NULL;
  Tether__RetentionClass cls[NCLASSES], *ptrs[NCLASSES];
  Tether__RetentionView v = TETHER__RETENTION_VIEW__INIT;
  if (x) {
    for (size_t i = 0; i < NCLASSES; i++) {
      tether__retention_class__init(&cls[i]);
      cls[i].name = tt_text(k_classes[i].name);
      cls[i].keep_ms = (uint64_t)x->keep[i];
      cls[i].default_ms = (uint64_t)k_classes[i].default_ms;
      cls[i].why = tt_text(k_classes[i].why);
      cls[i].set_by = tt_text(x->set_by[i]);
      cls[i].set_ms = (uint64_t)x->at[i];
      ptrs[i] = &cls[i];
    }
    v.classes = ptrs;
    v.n_classes = NCLASSES;
    v.holds = x->holds;
  }
  if (sw) {
    v.recordings = sw->recordings;
    v.diagnostics = sw->diagnostics;
    v.audit_removed = sw->audit_removed;
    v.audit_base = (uint64_t)sw->audit_base;
    v.closed_tickets = sw->tickets;
    v.inventory_versions = sw->inventory;
    v.transfer_events = sw->transfer_events;
    v.transfer_values = (uint64_t)sw->transfer_values;
  }
  Tether__Response resp = TETHER__RESPONSE__INIT;
  resp.id = id;
  resp.body_case = TETHER__RESPONSE__BODY_RETENTION;
  resp.retention = &v;
  return tt_link_send(c->link, TT_K_RESPONSE, &resp.base);
}

static void ret_done(store_req_t *r) {
  ret_req_t *x = (ret_req_t *)r;
  broker_conn_t *c = broker_creq_conn(x);
  if (c) {
    int rc = r->rc ? broker_reply_error(c, x->h.id, TT_EIO, "the broker could not use its store")
                   : send_view(c, x->h.id, NULL, r);
    if (rc) tt_link_close(c->link, rc, "peer not reading");
  }
  free(x);
}

int broker_retention_request(broker_conn_t *c, uint32_t id, const Tether__RetentionRequest *q) {
  bool admin = c->id.role == TT_ROLE_ADMIN;
  if (q->op == TETHER__RETENTION_OP__RETENTION_SWEEP) {
    if (!admin) return broker_reply_error(c, id, TT_EDENIED, "a sweep needs the admin role");
    int rc = sweep_start(c->b, c, id);
    if (rc == TT_EBUSY) return broker_reply_error(c, id, TT_EBUSY, "a sweep is running: try again when it ends");
    return rc ? broker_reply_error(c, id, TT_EBUSY, "the broker is busy, try again shortly") : 0;
  }
  if (q->op != TETHER__RETENTION_OP__RETENTION_SHOW && q->op != TETHER__RETENTION_OP__RETENTION_SET)
    return broker_reply_error(c, id, TT_EINVAL, "unknown retention request");
  if (q->op == TETHER__RETENTION_OP__RETENTION_SET && !admin)
    return broker_reply_error(c, id, TT_EDENIED, "setting retention needs the admin role");
  if (q->op == TETHER__RETENTION_OP__RETENTION_SET && (q->n_set == 0 || q->n_set > NCLASSES))
    return broker_reply_error(c, id, TT_EINVAL,
                              "say what to keep how long: audit=2y recordings=90d diagnostics=30d closed_tickets=3y"
                              " inventory_history=1y");
  ret_req_t *x = broker_creq_new(c, id, sizeof(*x), q->op == TETHER__RETENTION_OP__RETENTION_SET ? STORE_LANE_WRITE
                                                                                                : STORE_LANE_READ,
                                 ret_run, ret_done, "retention");
  if (!x) return TT_ENOMEM;
  x->op = q->op;
  x->now_ms = (int64_t)broker_unix_ms();
  snprintf(x->by, sizeof x->by, "%s", c->id.name);
  /* Every setting is checked before any is written: a bad one refuses the whole request. */
  for (size_t i = 0; q->op == TETHER__RETENTION_OP__RETENTION_SET && i < q->n_set; i++) {
    char name[CLASS_NAME_MAX] = "";
    const Tether__RetentionSetting *st = q->set[i];
    if (st->name.len < sizeof name) memcpy(name, st->name.data, st->name.len);
    char msg[160];
    const char *bad = NULL;
    if (!class_named(name)) bad = "is not a class of record: " CLASS_LIST;
    else if (st->keep_ms < TT_RETENTION_MIN_MS || st->keep_ms > TT_RETENTION_MAX_MS)
      bad = "is out of range: at least 1 day, at most 10 years";
    for (size_t j = 0; !bad && j < i; j++)
      if (strcmp(x->set_name[j], name) == 0) bad = "is given twice";
    if (bad) {
      snprintf(msg, sizeof msg, "%.23s %s", name[0] ? name : "(empty)", bad);
      free(x);
      return broker_reply_error(c, id, TT_EINVAL, msg);
    }
    snprintf(x->set_name[i], sizeof x->set_name[i], "%s", name);
    x->set_ms[i] = (int64_t)st->keep_ms;
    x->nset++;
  }
  if (x->nset) { /* one entry, written with the settings or not at all */
    _Static_assert(NCLASSES == 6, "the retention-set entry names every class, in k_classes' order");
    char keep[NCLASSES][24];
    for (size_t i = 0; i < NCLASSES; i++) {
      keep[i][0] = '\0';
      for (size_t j = 0; j < x->nset; j++)
        if (strcmp(x->set_name[j], k_classes[i].name) == 0) snprintf(keep[i], sizeof keep[i], "%" PRId64, x->set_ms[j]);
    }
    broker_audit_rec(&x->h.audit, c->id.name, "retention-set", "", "?audit_ms", keep[0], "?recordings_ms", keep[1],
                     "?diagnostics_ms", keep[2], "?closed_tickets_ms", keep[3], "?inventory_history_ms", keep[4],
                     "?transfers_ms", keep[5], AUDIT_END);
    x->h.req.audit = &x->h.audit;
  }
  return broker_creq_submit(x);
}
