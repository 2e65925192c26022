/* Staged rollouts of agent releases: `tether rollout start VERSION` picks a group's devices
 * (as policy's groups: "*", or a department, location or "group" field of the asset
 * records), shuffles them, and cuts them into a canary wave (canary_pct of them, at least
 * one) and waves of wave_pct each. Once a second the sweep offers the release to devices of
 * the waves reached that are online, at most TT_ROLLOUT_ACTIVE_MAX at a time; each agent
 * checks the signed manifest itself, downloads (serve.c), installs, and reports every step.
 * A wave is done when none of its devices is still at it and one of them, at least, took the
 * new version (so a canary of offline laptops does not wave the fleet through); the next
 * wave starts then. pause_on failures (refused, failed, rolled back, no answer) pause it.
 * One rollout is active at a time. Every step goes to the store and the audit. */
#include <inttypes.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "rollout.h"
#include "tt/log.h"
#include "tt/msg.h"

#define MOD "rollout"
/* An agent answers an offer at once (the checks are local); a download without progress for
 * this long, or an install that has not come back by its health deadline and this grace,
 * failed. */
#define ANSWER_MS 60000u
#define STALL_MS (5u * 60u * 1000u)
#define INSTALL_GRACE_MS 120000u

static const char *const k_running = "running", *const k_paused = "paused", *const k_done = "done",
                         *const k_cancelled = "cancelled";

static bool in_progress(ro_state_t s) {
  return s == RO_OFFERED || s == RO_DOWNLOADING || s == RO_VERIFIED || s == RO_INSTALLING;
}
static bool is_failure(ro_state_t s) { return s == RO_REFUSED || s == RO_FAILED || s == RO_ROLLED_BACK; }

static int dev_cmp(const void *a, const void *b) {
  return strcmp(((const ro_dev_t *)a)->d.device, ((const ro_dev_t *)b)->d.device);
}

/* A device of the rollout in memory: the active one, or the one that ended last, whose
 * agents may still report how an install under way ended. */
static ro_dev_t *dev_find(broker_t *b, const char *device) {
  struct broker_rollout_s *ro = b->ro;
  if (!ro->dev) return NULL;
  ro_dev_t key;
  snprintf(key.d.device, sizeof key.d.device, "%s", device);
  return bsearch(&key, ro->dev, ro->ndev, sizeof *ro->dev, dev_cmp);
}

static ro_state_t state_of(const char *name) {
  for (int s = 0; s < RO__COUNT; s++)
    if (!strcmp(ro_state_name((ro_state_t)s), name)) return (ro_state_t)s;
  return RO_PENDING;
}

/* ---- writes nobody waits for ------------------------------------------------------------ */

typedef struct {
  store_req_t req;
  int64_t rollout;
  bool has_dev;
  store_rollout_dev_t d;
  store_rollout_t r;
} write_req_t;

static int write_run(broker_store_t *s, store_req_t *rq) {
  write_req_t *x = (write_req_t *)rq;
  return x->has_dev ? store_rollout_dev_update(s, x->rollout, &x->d) : store_rollout_update(s, &x->r);
}

static void save_rollout(broker_t *b) {
  write_req_t *x = calloc(1, sizeof *x);
  if (!x) return;
  x->req.run = write_run;
  x->req.lane = STORE_LANE_WRITE;
  x->req.what = "rollout_update";
  b->ro->r.updated_ms = (int64_t)broker_unix_ms();
  x->r = b->ro->r;
  broker_store_later(b, &x->req);
}

static void rollout_set(broker_t *b, const char *state, const char *why, const char *action);
static void stop_downloads(broker_t *b, const char *state);

/* pause_on failures pause a running rollout at once: nothing more is offered. */
static void pause_if_failed(broker_t *b) {
  struct broker_rollout_s *ro = b->ro;
  if (ro->busy || ro->r.failures < ro->r.pause_on || strcmp(ro->r.state, k_running)) return;
  char why[TT_TEXT_MAX];
  snprintf(why, sizeof why, "%" PRId64 " failure%s (pauses at %" PRId64 "): see rollout status", ro->r.failures,
           ro->r.failures == 1 ? "" : "s", ro->r.pause_on);
  rollout_set(b, k_paused, why, "rollout-pause");
}

/* d enters st (reason may be NULL): stored, logged, and audited unless it is a download's
 * progress. */
static void dev_set(broker_t *b, ro_dev_t *d, ro_state_t st, const char *reason) {
  struct broker_rollout_s *ro = b->ro;
  bool changed = d->st != st;
  if (changed && is_failure(st)) ro->r.failures++;
  d->st = st;
  d->since = uv_now(b->loop);
  snprintf(d->d.state, sizeof d->d.state, "%s", ro_state_name(st));
  if (reason) broker_text_fit(d->d.reason, sizeof d->d.reason, reason);
  d->d.updated_ms = (int64_t)broker_unix_ms();
  write_req_t *x = calloc(1, sizeof *x);
  if (x) {
    x->req.run = write_run;
    x->req.lane = STORE_LANE_WRITE;
    x->req.what = "rollout_device";
    x->rollout = ro->r.id;
    x->has_dev = true;
    x->d = d->d;
    broker_store_later(b, &x->req);
  }
  if (!changed) return;
  char target[32], action[40];
  snprintf(target, sizeof target, "rollout %" PRId64, ro->r.id);
  snprintf(action, sizeof action, "upgrade-%s", ro_state_name(st));
  TT_INFO(MOD, "device", "rollout=%" PRId64 " device=%s state=%s reason=\"%s\"", ro->r.id, d->d.device,
          ro_state_name(st), d->d.reason);
  broker_audit(b, d->d.device, action, target, "version", ro->r.version, "from", d->d.from_version, "?reason",
               is_failure(st) || st == RO_SKIPPED || st == RO_CURRENT ? d->d.reason : "", AUDIT_END);
  if (is_failure(st)) {
    save_rollout(b);
    pause_if_failed(b);
  }
}

static void rollout_set(broker_t *b, const char *state, const char *why, const char *action) {
  struct broker_rollout_s *ro = b->ro;
  snprintf(ro->r.state, sizeof ro->r.state, "%s", state);
  broker_text_fit(ro->r.why, sizeof ro->r.why, why ? why : "");
  char target[32], wave[24];
  snprintf(target, sizeof target, "rollout %" PRId64, ro->r.id);
  snprintf(wave, sizeof wave, "%" PRId64, ro->r.wave);
  TT_INFO(MOD, "rollout", "id=%" PRId64 " state=%s wave=%" PRId64 " why=\"%s\"", ro->r.id, state, ro->r.wave, ro->r.why);
  broker_audit(b, "broker", action, target, "version", ro->r.version, "wave", wave, "?why", ro->r.why, AUDIT_END);
  save_rollout(b);
  if (!strcmp(state, k_paused)) stop_downloads(b, state);
  if (strcmp(state, k_running) && strcmp(state, k_paused)) ro->active = false;
}

/* ---- offers --------------------------------------------------------------------------- */

static void offer(broker_t *b, ro_dev_t *d, broker_conn_t *c) {
  struct broker_rollout_s *ro = b->ro;
  char why[TT_TEXT_MAX];
  snprintf(d->d.from_version, sizeof d->d.from_version, "%s", c->version);
  if (!(c->caps & TETHER__CAPABILITY__CAP_UPGRADE)) {
    snprintf(why, sizeof why, "agent %s does not take upgrades from the broker", c->version);
    return dev_set(b, d, RO_SKIPPED, why);
  }
  const store_release_t *rel = ro_release_find(b, ro->r.version, c->arch, ro->r.channel);
  if (!rel) {
    snprintf(why, sizeof why, "no %s release for %s in channel %s", ro->r.version, c->arch[0] ? c->arch : "its architecture",
             ro->r.channel);
    return dev_set(b, d, RO_SKIPPED, why);
  }
  int cmp = tt_version_cmp(c->version, ro->r.version);
  tt_release_t m = {0};
  char err[160];
  bool down_ok = rel->downgrade && tt_release_parse(rel->manifest, strlen(rel->manifest), &m, err, sizeof err) == 0 &&
                 !strcmp(m.downgrade_from, c->version);
  if (cmp == 0 || (cmp > 0 && !down_ok)) {
    if (cmp > 0 && rel->downgrade)
      snprintf(why, sizeof why, "runs %.64s: the release is a downgrade only from %.64s", c->version,
               m.downgrade_from[0] ? m.downgrade_from : "another version");
    else
      snprintf(why, sizeof why, "runs %s already", c->version);
    return dev_set(b, d, RO_CURRENT, why);
  }
  /* The package to go back to, if the new one does not come back: the running version's. */
  const store_release_t *rb = ro_release_find(b, c->version, c->arch, ro->r.channel);
  if (!rb) rb = ro_release_find(b, c->version, c->arch, NULL);
  Tether__UpgradeOffer o = TETHER__UPGRADE_OFFER__INIT;
  o.rollout = (uint64_t)ro->r.id;
  o.manifest = (ProtobufCBinaryData){strlen(rel->manifest), (uint8_t *)rel->manifest};
  if (rb) o.rollback_manifest = (ProtobufCBinaryData){strlen(rb->manifest), (uint8_t *)rb->manifest};
  o.health_s = (uint32_t)ro->r.health_s;
  Tether__Request q = TETHER__REQUEST__INIT;
  q.id = broker_agent_req_id(b);
  q.body_case = TETHER__REQUEST__BODY_UPGRADE_OFFER;
  q.upgrade_offer = &o;
  if (tt_link_send(c->link, TT_K_REQUEST, &q.base)) return; /* not reading: tried again next time */
  d->req = q.id;
  snprintf(d->sha, sizeof d->sha, "%s", rel->sha256);
  snprintf(d->rb_sha, sizeof d->rb_sha, "%s", rb ? rb->sha256 : "");
  d->d.size = rel->size;
  d->d.done = 0;
  d->d.reason[0] = '\0';
  dev_set(b, d, RO_OFFERED, NULL);
}

bool ro_release_in_use(broker_t *b, const store_release_t *r, char *why, size_t cap) {
  struct broker_rollout_s *ro = b->ro;
  if (!ro->active) return false;
  bool used = !strcmp(ro->r.version, r->version) && !strcmp(ro->r.channel, r->channel);
  for (size_t i = 0; i < ro->ndev && !used; i++)
    used = in_progress(ro->dev[i].st) && (!strcmp(ro->dev[i].sha, r->sha256) || !strcmp(ro->dev[i].rb_sha, r->sha256));
  if (used)
    snprintf(why, cap, "rollout %" PRId64 " (%.64s, %s) may still offer %.64s: cancel it first", ro->r.id,
             ro->r.version, ro->r.state, r->version);
  return used;
}

bool ro_may_fetch(broker_t *b, const char *device, const char *sha) {
  ro_dev_t *d = dev_find(b, device);
  if (!d || !b->ro->active || strcmp(b->ro->r.state, k_running) || (d->st != RO_OFFERED && d->st != RO_DOWNLOADING))
    return false;
  return !strcmp(d->sha, sha) || (d->rb_sha[0] && !strcmp(d->rb_sha, sha));
}

static const char *k_steps[] = {
    [TETHER__UPGRADE_STEP__UPGRADE_REFUSED] = "refused",        [TETHER__UPGRADE_STEP__UPGRADE_DOWNLOADING] = "downloading",
    [TETHER__UPGRADE_STEP__UPGRADE_VERIFIED] = "verified",      [TETHER__UPGRADE_STEP__UPGRADE_INSTALLING] = "installing",
    [TETHER__UPGRADE_STEP__UPGRADE_INSTALLED] = "installed",    [TETHER__UPGRADE_STEP__UPGRADE_ROLLED_BACK] = "rolled-back",
    [TETHER__UPGRADE_STEP__UPGRADE_FAILED] = "failed",
};

/* A step an agent reports (its answer to the offer, or a report later). */
static void step(broker_conn_t *c, const Tether__UpgradeReport *r) {
  broker_t *b = c->b;
  ro_dev_t *d = dev_find(b, c->id.name);
  if (!d || r->rollout != (uint64_t)b->ro->r.id) return;
  unsigned k = (unsigned)r->step;
  if (k >= sizeof k_steps / sizeof k_steps[0] || !k_steps[k]) return;
  char reason[TT_TEXT_MAX + 1] = "";
  if (tt_text_copy(reason, sizeof reason, r->reason)) snprintf(reason, sizeof reason, "(a reason that is not text)");
  ro_state_t st = state_of(k_steps[k]);
  switch (st) {
  case RO_DOWNLOADING:
    if (d->st != RO_OFFERED && d->st != RO_DOWNLOADING) return;
    d->d.done = r->done <= (uint64_t)d->d.size ? (int64_t)r->done : d->d.size;
    if (d->st == RO_DOWNLOADING) { /* progress: stored, not audited */
      d->since = uv_now(b->loop);
      dev_set(b, d, RO_DOWNLOADING, NULL);
      return;
    }
    break;
  case RO_VERIFIED:
  case RO_INSTALLING:
    if (!in_progress(d->st)) return;
    break;
  case RO_INSTALLED: {
    /* The version the link runs (its Hello), not only the one the report names; and not for
     * a device this rollout offered nothing (skipped, current) or that refused it. A device
     * failed by a deadline, or pending again after a restart of the broker, may still come
     * back on the version. */
    char v[TT_NAME_MAX + 1] = "";
    if (tt_text_copy(v, sizeof v, r->version) || strcmp(v, b->ro->r.version) || strcmp(c->version, b->ro->r.version))
      return;
    if (d->st == RO_SKIPPED || d->st == RO_CURRENT || d->st == RO_REFUSED) return;
    /* A rollback is the last word (below): an agent cannot take it back, or flip between
     * the two and have each rollback counted (and audited) as a failure again. */
    if (d->st == RO_ROLLED_BACK) return;
    break;
  }
  case RO_REFUSED:
  case RO_FAILED:
  case RO_ROLLED_BACK:
    /* An install the guard rolled back after the new agent had said it was back (it did
     * not stay up): the rollback is the last word. */
    if (!in_progress(d->st) && !(st == RO_ROLLED_BACK && d->st == RO_INSTALLED)) return;
    if (!reason[0]) snprintf(reason, sizeof reason, "(no reason given)");
    break;
  default:
    return;
  }
  dev_set(b, d, st, reason[0] ? reason : NULL);
}

bool broker_upgrade_answer(broker_conn_t *c, const Tether__Response *r) {
  ro_dev_t *d = dev_find(c->b, c->id.name);
  if (!d || !d->req || r->id != d->req) return false;
  d->req = 0;
  if (r->error) {
    char why[TT_TEXT_MAX + 1] = "";
    if (tt_text_copy(why, sizeof why, r->error->message)) snprintf(why, sizeof why, "?");
    dev_set(c->b, d, RO_FAILED, why[0] ? why : "the agent could not take the offer");
  } else if (r->body_case == TETHER__RESPONSE__BODY_UPGRADE && r->upgrade) {
    step(c, r->upgrade);
  }
  return true;
}

int broker_upgrade_report(broker_conn_t *c, uint32_t id, const Tether__UpgradeReport *r) {
  if (c->id.role != TT_ROLE_AGENT) return broker_reply_error(c, id, TT_EROLE, "upgrades are reported by agents");
  if (!r) return broker_reply_error(c, id, TT_EPROTO, "malformed report");
  /* An install starts only under a running rollout that is still offering this device
   * the release: after a pause or a cancel the agent is told, and does not start it. */
  if (r->step == TETHER__UPGRADE_STEP__UPGRADE_INSTALLING) {
    ro_dev_t *d = dev_find(c->b, c->id.name);
    struct broker_rollout_s *ro = c->b->ro;
    if (!d || !ro->active || r->rollout != (uint64_t)ro->r.id || strcmp(ro->r.state, k_running) ||
        !in_progress(d->st)) {
      char why[TT_TEXT_MAX];
      snprintf(why, sizeof why, "rollout %" PRIu64 " is not offering this device an install now%s%.100s", r->rollout,
               ro->r.why[0] ? ": " : "", ro->r.why);
      return broker_reply_error(c, id, TT_ESTATE, why);
    }
  }
  step(c, r);
  Tether__UpgradeReportResponse o = TETHER__UPGRADE_REPORT_RESPONSE__INIT;
  Tether__Response resp = TETHER__RESPONSE__INIT;
  resp.id = id;
  resp.body_case = TETHER__RESPONSE__BODY_UPGRADE_REPORT;
  resp.upgrade_report = &o;
  return tt_link_send(c->link, TT_K_RESPONSE, &resp.base);
}

void broker_rollout_agent_up(broker_conn_t *c) {
  ro_dev_t *d = dev_find(c->b, c->id.name);
  if (!d || !c->b->ro->active) return;
  /* Installed is the new agent's own word, once it has stayed up (its report), not its
   * Hello. A download cut short is offered again (the agent resumes it); an install goes on: the
   * agent reports how it ended. */
  if (d->st == RO_OFFERED || d->st == RO_DOWNLOADING || d->st == RO_VERIFIED) {
    d->req = 0;
    dev_set(c->b, d, RO_PENDING, NULL);
  }
}

void broker_rollout_conn_down(broker_conn_t *c) {
  ro_upload_conn_gone(c);
  if (c->id.role != TT_ROLE_AGENT) return;
  ro_dev_t *d = dev_find(c->b, c->id.name);
  if (d && (d->st == RO_OFFERED || d->st == RO_DOWNLOADING || d->st == RO_VERIFIED)) {
    d->req = 0;
    dev_set(c->b, d, RO_PENDING, NULL);
  }
}

/* ---- the sweep ------------------------------------------------------------------------- */

void broker_rollout_sweep(broker_t *b, uint64_t now) {
  ro_upload_sweep(b, now);
  struct broker_rollout_s *ro = b->ro;
  if (!ro->active || ro->busy) return;
  size_t active = 0, open = 0, installed = 0, pending = 0;
  for (size_t i = 0; i < ro->ndev; i++) {
    ro_dev_t *d = &ro->dev[i];
    if (d->st == RO_OFFERED && now - d->since > ANSWER_MS) {
      d->req = 0;
      dev_set(b, d, RO_FAILED, "did not answer the offer within a minute");
    } else if (d->st == RO_DOWNLOADING && now - d->since > STALL_MS) {
      dev_set(b, d, RO_FAILED, "the download made no progress for 5 minutes");
    } else if (d->st == RO_INSTALLING && now - d->since > (uint64_t)ro->r.health_s * 1000 + INSTALL_GRACE_MS) {
      char why[TT_TEXT_MAX];
      snprintf(why, sizeof why, "did not come back on %.64s within %" PRId64 " s", ro->r.version, ro->r.health_s);
      dev_set(b, d, RO_FAILED, why);
    }
    if (in_progress(d->st)) active++;
    if ((int64_t)d->d.wave > ro->r.wave) continue;
    if (d->st == RO_INSTALLED) installed++;
    if (in_progress(d->st)) open++;
    if (d->st == RO_PENDING) {
      pending++;
      if (broker_find_agent(b, d->d.device)) open++;
    }
  }
  pause_if_failed(b);
  if (strcmp(ro->r.state, k_running)) return;
  for (size_t i = 0; i < ro->ndev && active < TT_ROLLOUT_ACTIVE_MAX; i++) {
    ro_dev_t *d = &ro->dev[i];
    if (d->st != RO_PENDING || (int64_t)d->d.wave > ro->r.wave) continue;
    broker_conn_t *c = broker_find_agent(b, d->d.device);
    if (!c || !c->link || c->link->closing) continue;
    offer(b, d, c);
    if (d->st == RO_OFFERED) active++;
  }
  /* The wave reached is through: nobody at it, someone took the version (or nobody is left
   * to). The last wave through with nobody pending ends the rollout. A canary (or any wave)
   * that failed and where nobody took it does not let the next wave go: it pauses (resume
   * counts failures from zero: the admin's word to go on). The last wave ends as before. */
  if (open == 0 && installed == 0 && pending == 0 && ro->r.failures > 0 && ro->r.wave + 1 < ro->r.waves) {
    char why[TT_TEXT_MAX];
    snprintf(why, sizeof why, "no device of wave %" PRId64 " took %.64s, %" PRId64 " failed: see rollout status",
             ro->r.wave, ro->r.version, ro->r.failures);
    rollout_set(b, k_paused, why, "rollout-pause");
    return;
  }
  if (open == 0 && (installed > 0 || pending == 0)) {
    if (ro->r.wave + 1 < ro->r.waves) {
      ro->r.wave++;
      rollout_set(b, k_running, "", "rollout-wave");
    } else if (pending == 0 && active == 0) {
      rollout_set(b, k_done, "", "rollout-done");
    }
  }
  for (broker_conn_t *c = b->conns; c; c = c->next)
    if (c->link && c->id.role == TT_ROLE_AGENT && tt_mux_has_output(&c->link->mux)) tt_link_flush(c->link);
}

/* ---- status ---------------------------------------------------------------------------- */

/* Listed first: what went wrong, then what is under way, then what waits, then the rest. */
static int rank(ro_state_t s) {
  return is_failure(s) ? 0 : in_progress(s) ? 1 : s == RO_PENDING ? 2 : s == RO_SKIPPED ? 3 : 4;
}

static int rank_cmp(const void *a, const void *b) {
  const ro_dev_t *x = *(ro_dev_t *const *)a, *y = *(ro_dev_t *const *)b;
  int r = rank(x->st) - rank(y->st);
  if (r) return r;
  if (x->d.wave != y->d.wave) return x->d.wave < y->d.wave ? -1 : 1;
  return strcmp(x->d.device, y->d.device);
}

static int send_status(broker_conn_t *c, uint32_t id, const store_rollout_t *r, ro_dev_t *dev, size_t n) {
  ro_dev_t **order = calloc(n ? n : 1, sizeof *order);
  size_t shown = n < TT_ROLLOUT_SHOWN_MAX ? n : TT_ROLLOUT_SHOWN_MAX;
  Tether__RolloutDevice *od = calloc(shown ? shown : 1, sizeof *od);
  Tether__RolloutDevice **pd = calloc(shown ? shown : 1, sizeof *pd);
  if (!order || !od || !pd) {
    free(order), free(od), free(pd);
    return broker_reply_error(c, id, TT_ENOMEM, "out of memory");
  }
  uint32_t counts[RO__COUNT] = {0};
  for (size_t i = 0; i < n; i++) {
    order[i] = &dev[i];
    counts[dev[i].st]++;
  }
  qsort(order, n, sizeof *order, rank_cmp);
  for (size_t i = 0; i < shown; i++) {
    const store_rollout_dev_t *d = &order[i]->d;
    tether__rollout_device__init(&od[i]);
    od[i].device = tt_text(d->device);
    od[i].wave = (uint32_t)d->wave;
    od[i].state = tt_text(d->state);
    od[i].reason = tt_text(d->reason);
    od[i].from_version = tt_text(d->from_version);
    od[i].updated_ms = (uint64_t)d->updated_ms;
    od[i].done = (uint64_t)d->done;
    od[i].size = (uint64_t)d->size;
    pd[i] = &od[i];
  }
  Tether__RolloutCount oc[RO__COUNT], *pc[RO__COUNT];
  size_t nc = 0;
  for (int s = 0; s < RO__COUNT; s++) {
    if (!counts[s]) continue;
    tether__rollout_count__init(&oc[nc]);
    oc[nc].state = tt_text(ro_state_name((ro_state_t)s));
    oc[nc].n = counts[s];
    pc[nc] = &oc[nc];
    nc++;
  }
  Tether__Rollout o = TETHER__ROLLOUT__INIT;
  o.id = (uint64_t)r->id;
  o.version = tt_text(r->version);
  o.channel = tt_text(r->channel);
  o.group = tt_text(r->group);
  o.canary_pct = (uint32_t)r->canary_pct;
  o.wave_pct = (uint32_t)r->wave_pct;
  o.pause_on_failure = (uint32_t)r->pause_on;
  o.health_s = (uint32_t)r->health_s;
  o.state = tt_text(r->state);
  o.why = tt_text(r->why);
  o.started_by = tt_text(r->started_by);
  o.started_ms = (uint64_t)r->started_ms;
  o.wave = (uint32_t)r->wave;
  o.waves = (uint32_t)r->waves;
  o.failures = (uint32_t)r->failures;
  o.devices = pd;
  o.n_devices = shown;
  o.counts = pc;
  o.n_counts = nc;
  o.total = (uint32_t)n;
  Tether__Response resp = TETHER__RESPONSE__INIT;
  resp.id = id;
  resp.body_case = TETHER__RESPONSE__BODY_ROLLOUT;
  resp.rollout = &o;
  int rc = tt_link_send(c->link, TT_K_RESPONSE, &resp.base);
  free(order), free(od), free(pd);
  return rc;
}

/* ---- loading a rollout from the store (at start; status of an older one) ------------------ */

typedef struct {
  ro_dev_t *dev;
  size_t n, cap;
} devs_t;

static int devs_cb(void *ctx, const store_rollout_dev_t *d) {
  devs_t *v = ctx;
  if (v->n == v->cap) {
    size_t cap = v->cap ? v->cap * 2 : 64;
    if (cap > TT_ROLLOUT_DEVICES_MAX) cap = TT_ROLLOUT_DEVICES_MAX;
    if (v->n == cap) return 1;
    ro_dev_t *p = realloc(v->dev, cap * sizeof *p);
    if (!p) return TT_ENOMEM;
    v->dev = p;
    v->cap = cap;
  }
  ro_dev_t *x = &v->dev[v->n++];
  memset(x, 0, sizeof *x);
  x->d = *d;
  x->st = state_of(d->state);
  return 0;
}

int ro_engine_load(broker_t *b, broker_store_t *s, char *err, size_t cap) {
  struct broker_rollout_s *ro = b->ro;
  int got = store_rollout_get(s, 0, true, &ro->r);
  if (got < 0) {
    snprintf(err, cap, "cannot read the active rollout from the store");
    return got;
  }
  if (got == 0) return 0;
  devs_t v = {0};
  if (store_rollout_devices(s, ro->r.id, devs_cb, &v)) {
    free(v.dev);
    snprintf(err, cap, "cannot read rollout %" PRId64 "'s devices from the store", ro->r.id);
    return TT_EIO;
  }
  /* A step under way when the broker stopped: offers again (the agents resume), installs
   * wait for their report. `since` is on the loop's clock (uv_now: the machine's uptime), so
   * it is set from the time the row was written, or an install would be past its deadline
   * (and failed) at the first sweep. */
  uint64_t now = uv_now(b->loop);
  int64_t wall = (int64_t)broker_unix_ms();
  for (size_t i = 0; i < v.n; i++) {
    int64_t ago = wall - v.dev[i].d.updated_ms;
    if (ago < 0) ago = 0;
    v.dev[i].since = (uint64_t)ago < now ? now - (uint64_t)ago : 0;
    if (v.dev[i].st == RO_OFFERED || v.dev[i].st == RO_DOWNLOADING || v.dev[i].st == RO_VERIFIED) {
      v.dev[i].st = RO_PENDING;
      snprintf(v.dev[i].d.state, sizeof v.dev[i].d.state, "pending");
    }
  }
  qsort(v.dev, v.n, sizeof *v.dev, dev_cmp);
  ro->dev = v.dev;
  ro->ndev = v.n;
  ro->active = true;
  TT_INFO(MOD, "rollout resumed", "id=%" PRId64 " version=%s state=%s devices=%zu", ro->r.id, ro->r.version,
          ro->r.state, ro->ndev);
  return 0;
}

typedef struct {
  broker_creq_t h;
  int64_t id;
  store_rollout_t r;
  devs_t v;
  int got;
} status_req_t;

static int status_run(broker_store_t *s, store_req_t *rq) {
  status_req_t *x = (status_req_t *)rq;
  x->got = store_rollout_get(s, x->id, false, &x->r);
  if (x->got <= 0) return x->got < 0 ? x->got : 0;
  return store_rollout_devices(s, x->r.id, devs_cb, &x->v);
}

static void status_done(store_req_t *rq) {
  status_req_t *x = (status_req_t *)rq;
  broker_conn_t *c = broker_creq_conn(x);
  if (c) {
    int rc;
    if (rq->rc) rc = broker_reply_error(c, x->h.id, TT_EIO, "the broker could not read its store");
    else if (x->got == 0) rc = broker_reply_error(c, x->h.id, TT_ENOTFOUND, x->id ? "no such rollout" : "no rollout yet");
    else rc = send_status(c, x->h.id, &x->r, x->v.dev, x->v.n);
    if (rc) tt_link_close(c->link, rc, "peer not reading");
  }
  free(x->v.dev);
  free(x);
}

/* ---- start ------------------------------------------------------------------------------- */

/* A change of the rollout, one at a time: busy until its completion. The service's own
 * refusals are checked first, so that a refused request never leaves busy set. */
static int submit_busy(void *p) {
  broker_creq_t *x = p;
  broker_conn_t *c = x->c;
  if (c->work >= TT_CONN_STORE_REQS_MAX || store_svc_backlog(c->b->svc) > TT_STORE_QUEUE_MAX / 2) {
    uint32_t id = x->id;
    free(x);
    return broker_reply_error(c, id, TT_EBUSY, "the broker is busy, try again shortly");
  }
  c->b->ro->busy = true;
  return broker_creq_submit(x);
}

typedef struct {
  broker_creq_t h;
  broker_t *b;
  store_rollout_t r;
  devs_t v;
  char why[TT_TEXT_MAX];
  size_t nlisted;             /* devices named instead of a group */
  char listed[TT_ROLLOUT_LISTED_MAX][STORE_NAME_MAX];
  bool found[TT_ROLLOUT_LISTED_MAX];
  broker_store_t *s;          /* start_run's, for the callback */
} start_req_t;

/* Each enrolled device: kept if named, or in the group (as policy's groups are worked out). */
static int start_dev_cb(void *ctx, const store_device_t *d) {
  start_req_t *x = ctx;
  if (d->revoked) return 0;
  bool in = !x->nlisted && !strcmp(x->r.group, "*");
  for (size_t k = 0; k < x->nlisted; k++) /* every mention: a name given twice is found too */
    if (!strcmp(d->id, x->listed[k])) in = x->found[k] = true;
  if (!in && !x->nlisted) {
    store_device_groups_t g;
    int rc = store_device_groups(x->s, d->id, &g);
    if (rc < 0) return rc;
    in = !strcmp(g.department, x->r.group) || !strcmp(g.location, x->r.group) || !strcmp(g.group, x->r.group);
  }
  if (!in) return 0;
  if (x->v.n >= TT_ROLLOUT_DEVICES_MAX) {
    snprintf(x->why, sizeof x->why, "more than %u devices: roll out to smaller groups", TT_ROLLOUT_DEVICES_MAX);
    return TT_ETOOBIG;
  }
  store_rollout_dev_t rd = {0};
  snprintf(rd.device, sizeof rd.device, "%s", d->id);
  snprintf(rd.state, sizeof rd.state, "pending");
  snprintf(rd.from_version, sizeof rd.from_version, "%s", d->version);
  return devs_cb(&x->v, &rd) < 0 ? TT_ENOMEM : 0;
}

static int start_run(broker_store_t *s, store_req_t *rq) {
  start_req_t *x = (start_req_t *)rq;
  store_rollout_t active;
  int got = store_rollout_get(s, 0, true, &active);
  if (got < 0) return got;
  if (got) {
    snprintf(x->why, sizeof x->why, "rollout %" PRId64 " (%s) is %s: cancel it first", active.id, active.version,
             active.state);
    return TT_ESTATE;
  }
  x->s = s;
  int rc = store_device_list(s, 0, 0, start_dev_cb, x, NULL);
  if (rc < 0) return rc;
  for (size_t k = 0; k < x->nlisted; k++)
    if (!x->found[k]) {
      snprintf(x->why, sizeof x->why, "no enrolled device %s", x->listed[k]);
      return TT_ENOTFOUND;
    }
  size_t n = x->v.n;
  x->v.n = n;
  if (n == 0) {
    snprintf(x->why, sizeof x->why, "no device is in group %.200s", x->r.group);
    return TT_ENOTFOUND;
  }
  /* A random canary: Fisher-Yates over the group. */
  for (size_t i = n - 1; i > 0; i--) {
    uint32_t r = 0;
    if (RAND_bytes((unsigned char *)&r, sizeof r) != 1) return TT_EIO;
    size_t j = r % (i + 1);
    ro_dev_t t = x->v.dev[i];
    x->v.dev[i] = x->v.dev[j];
    x->v.dev[j] = t;
  }
  size_t canary = (n * (size_t)x->r.canary_pct + 99) / 100, wave = (n * (size_t)x->r.wave_pct + 99) / 100;
  if (canary < 1) canary = 1;
  if (wave < 1) wave = 1;
  x->r.waves = 1 + (int64_t)((n - canary + wave - 1) / wave);
  int64_t now = (int64_t)broker_unix_ms();
  store_rollout_dev_t *rows = malloc(n * sizeof *rows);
  if (!rows) return TT_ENOMEM;
  for (size_t i = 0; i < n; i++) {
    x->v.dev[i].d.wave = i < canary ? 0 : 1 + (int64_t)((i - canary) / wave);
    x->v.dev[i].d.updated_ms = now;
    rows[i] = x->v.dev[i].d;
  }
  x->r.started_ms = x->r.updated_ms = now;
  rc = store_rollout_add(s, &x->r, rows, n);
  free(rows);
  /* The entry written with this request names the rollout it made. */
  if (rc == 0) snprintf(x->h.audit.target, sizeof x->h.audit.target, "rollout %" PRId64, x->r.id);
  return rc;
}

static void start_done(store_req_t *rq) {
  start_req_t *x = (start_req_t *)rq;
  broker_t *b = x->b;
  struct broker_rollout_s *ro = b->ro;
  broker_conn_t *c = broker_creq_conn(x);
  ro->busy = false;
  if (rq->rc == 0) {
    qsort(x->v.dev, x->v.n, sizeof *x->v.dev, dev_cmp);
    free(ro->dev);
    ro->dev = x->v.dev;
    ro->ndev = x->v.n;
    x->v.dev = NULL;
    ro->r = x->r;
    ro->active = true;
    TT_INFO(MOD, "rollout started", "id=%" PRId64 " version=%s group=%s devices=%zu waves=%" PRId64, ro->r.id,
            ro->r.version, ro->r.group, ro->ndev, ro->r.waves);
  }
  if (c) {
    int rc;
    if (rq->rc == 0) rc = send_status(c, x->h.id, &ro->r, ro->dev, ro->ndev);
    else
      rc = broker_reply_error(c, x->h.id,
                              rq->rc == TT_ESTATE || rq->rc == TT_ENOTFOUND || rq->rc == TT_ETOOBIG ? rq->rc : TT_EIO,
                              x->why[0] ? x->why : "the broker could not start the rollout");
    if (rc) tt_link_close(c->link, rc, "peer not reading");
  }
  free(x->v.dev);
  free(x);
}

static int on_start(broker_conn_t *c, uint32_t id, const Tether__RolloutRequest *q) {
  broker_t *b = c->b;
  struct broker_rollout_s *ro = b->ro;
  char version[TT_RELEASE_VERSION_MAX + 1], channel[STORE_NAME_MAX] = "stable", group[STORE_GROUP_MAX] = "*";
  if (tt_text_copy(version, sizeof version, q->version) || !tt_version_ok(version))
    return broker_reply_error(c, id, TT_EINVAL, "a rollout needs the version of a release");
  if (q->channel.len && tt_text_copy(channel, sizeof channel, q->channel))
    return broker_reply_error(c, id, TT_EINVAL, "bad channel");
  if (q->group.len && tt_text_copy(group, sizeof group, q->group))
    return broker_reply_error(c, id, TT_EINVAL, "bad group");
  if (q->n_devices > TT_ROLLOUT_LISTED_MAX)
    return broker_reply_error(c, id, TT_ETOOBIG, "a rollout names at most 256 devices (or use a group)");
  if (q->canary_pct < 1 || q->canary_pct > 100 || q->wave_pct < 1 || q->wave_pct > 100)
    return broker_reply_error(c, id, TT_EINVAL, "canary and wave are 1% to 100%");
  if (q->pause_on_failure < 1 || q->pause_on_failure > TT_ROLLOUT_DEVICES_MAX)
    return broker_reply_error(c, id, TT_EINVAL, "pause-on-failure is at least 1");
  if (q->health_s < TT_ROLLOUT_HEALTH_MIN_S || q->health_s > TT_ROLLOUT_HEALTH_MAX_S)
    return broker_reply_error(c, id, TT_EINVAL, "the health deadline is 5 s to 24 h");
  bool any = false;
  for (size_t i = 0; i < ro->nrel && !any; i++)
    any = !strcmp(ro->rel[i].version, version) && !strcmp(ro->rel[i].channel, channel);
  if (!any) {
    char why[TT_TEXT_MAX];
    snprintf(why, sizeof why, "no release %s in channel %s: add it first (tether release add)", version, channel);
    return broker_reply_error(c, id, TT_ENOTFOUND, why);
  }
  if (ro->busy) return broker_reply_error(c, id, TT_EBUSY, "another rollout change is being recorded");
  if (ro->active) {
    char why[TT_TEXT_MAX];
    snprintf(why, sizeof why, "rollout %" PRId64 " (%s) is %s: cancel it first", ro->r.id, ro->r.version, ro->r.state);
    return broker_reply_error(c, id, TT_ESTATE, why);
  }
  start_req_t *x = broker_creq_new(c, id, sizeof *x, STORE_LANE_WRITE, start_run, start_done, "rollout_start");
  if (!x) return broker_reply_error(c, id, TT_ENOMEM, "out of memory");
  x->b = b;
  for (size_t i = 0; i < q->n_devices; i++)
    if (tt_text_copy(x->listed[i], sizeof x->listed[i], q->devices[i])) {
      free(x);
      return broker_reply_error(c, id, TT_EINVAL, "a device is named by its id");
    }
  x->nlisted = q->n_devices;
  if (x->nlisted) snprintf(group, sizeof group, "(%zu device%s)", x->nlisted, x->nlisted == 1 ? "" : "s");
  snprintf(x->r.version, sizeof x->r.version, "%s", version);
  snprintf(x->r.channel, sizeof x->r.channel, "%s", channel);
  snprintf(x->r.group, sizeof x->r.group, "%s", group);
  x->r.canary_pct = q->canary_pct;
  x->r.wave_pct = q->wave_pct;
  x->r.pause_on = q->pause_on_failure;
  x->r.health_s = q->health_s;
  snprintf(x->r.state, sizeof x->r.state, "%s", k_running);
  snprintf(x->r.started_by, sizeof x->r.started_by, "%s", c->id.name);
  char pct[24], wpct[24], pause[24], health[24];
  snprintf(pct, sizeof pct, "%u%%", q->canary_pct);
  snprintf(wpct, sizeof wpct, "%u%%", q->wave_pct);
  snprintf(pause, sizeof pause, "%u", q->pause_on_failure);
  snprintf(health, sizeof health, "%us", q->health_s);
  x->h.req.audit = &x->h.audit;
  broker_audit_rec(&x->h.audit, c->id.name, "rollout-start", "rollout", "version", version, "channel", channel,
                   "group", group, "canary", pct, "wave", wpct, "pause_on_failure", pause, "health", health, AUDIT_END);
  return submit_busy(x);
}

/* ---- pause, resume, cancel ---------------------------------------------------------------- */

typedef struct {
  broker_creq_t h;
  broker_t *b;
  store_rollout_t r;
  int64_t before;   /* failures when the change was asked for */
  char action[24];
} change_req_t;

/* A pause or a cancel: downloads under way stop (the agents keep what they have, to resume
 * if the release is offered again) and those devices wait again; installs under way go on,
 * and their agents report how they ended. */
static void stop_downloads(broker_t *b, const char *state) {
  struct broker_rollout_s *ro = b->ro;
  char why[64];
  snprintf(why, sizeof why, "rollout %s", state);
  for (size_t i = 0; i < ro->ndev; i++) {
    ro_dev_t *d = &ro->dev[i];
    if (d->st != RO_OFFERED && d->st != RO_DOWNLOADING && d->st != RO_VERIFIED) continue;
    broker_conn_t *c = broker_find_agent(b, d->d.device);
    if (c) ro_serve_stop(c, why);
    d->req = 0;
    dev_set(b, d, RO_PENDING, why);
  }
}

static int change_run(broker_store_t *s, store_req_t *rq) {
  change_req_t *x = (change_req_t *)rq;
  return store_rollout_update(s, &x->r);
}

static void change_done(store_req_t *rq) {
  change_req_t *x = (change_req_t *)rq;
  struct broker_rollout_s *ro = x->b->ro;
  broker_conn_t *c = broker_creq_conn(x);
  ro->busy = false;
  if (rq->rc == 0 && ro->active && ro->r.id == x->r.id) {
    /* Failures counted while the change was written stay counted (a resume starts from what
     * came after it), and the merged row is written last, after any write of the old state
     * queued meanwhile. */
    int64_t since = ro->r.failures - x->before;
    ro->r = x->r;
    if (since > 0) ro->r.failures += since;
    if (strcmp(ro->r.state, k_running)) stop_downloads(x->b, ro->r.state);
    if (strcmp(ro->r.state, k_running) && strcmp(ro->r.state, k_paused)) ro->active = false;
    save_rollout(x->b);
    TT_INFO(MOD, "rollout", "id=%" PRId64 " state=%s by=%s", ro->r.id, ro->r.state, x->h.audit.actor);
  }
  if (c) {
    int rc = rq->rc ? broker_reply_error(c, x->h.id, TT_EIO, "the broker could not record the change")
                    : send_status(c, x->h.id, &x->r, ro->r.id == x->r.id ? ro->dev : NULL, ro->r.id == x->r.id ? ro->ndev : 0);
    if (rc) tt_link_close(c->link, rc, "peer not reading");
  }
  free(x);
}

static int on_change(broker_conn_t *c, uint32_t id, const Tether__RolloutRequest *q) {
  struct broker_rollout_s *ro = c->b->ro;
  if (!ro->active || (q->id && q->id != (uint64_t)ro->r.id))
    return broker_reply_error(c, id, TT_ESTATE, "no such rollout is running or paused");
  if (ro->busy) return broker_reply_error(c, id, TT_EBUSY, "another rollout change is being recorded");
  char reason[TT_TEXT_MAX + 1] = "";
  if (tt_text_copy(reason, sizeof reason, q->reason)) return broker_reply_error(c, id, TT_EINVAL, "bad reason");
  const char *state, *action;
  if (q->op == TETHER__ROLLOUT_OP__ROLLOUT_PAUSE) state = k_paused, action = "rollout-pause";
  else if (q->op == TETHER__ROLLOUT_OP__ROLLOUT_RESUME) state = k_running, action = "rollout-resume";
  else state = k_cancelled, action = "rollout-cancel";
  if (!strcmp(state, ro->r.state)) return broker_reply_error(c, id, TT_ESTATE, "the rollout is that already");
  change_req_t *x = broker_creq_new(c, id, sizeof *x, STORE_LANE_WRITE, change_run, change_done, "rollout_change");
  if (!x) return broker_reply_error(c, id, TT_ENOMEM, "out of memory");
  x->b = c->b;
  x->r = ro->r;
  x->before = ro->r.failures;
  snprintf(x->r.state, sizeof x->r.state, "%s", state);
  char why[TT_TEXT_MAX + 1];
  snprintf(why, sizeof why, "%s by %.64s%s%.160s", state, c->id.name, reason[0] ? ": " : "", reason);
  broker_text_fit(x->r.why, sizeof x->r.why, q->op == TETHER__ROLLOUT_OP__ROLLOUT_RESUME ? "" : why);
  /* Resuming is the admin's word on the failures so far: the count starts again. */
  if (q->op == TETHER__ROLLOUT_OP__ROLLOUT_RESUME) x->r.failures = 0;
  x->r.updated_ms = (int64_t)broker_unix_ms();
  char target[32];
  snprintf(target, sizeof target, "rollout %" PRId64, ro->r.id);
  x->h.req.audit = &x->h.audit;
  broker_audit_rec(&x->h.audit, c->id.name, action, target, "version", ro->r.version, "?reason", reason, AUDIT_END);
  return submit_busy(x);
}

int broker_rollout_request(broker_conn_t *c, uint32_t id, const Tether__RolloutRequest *q) {
  if (!q) return broker_reply_error(c, id, TT_EPROTO, "malformed rollout request");
  struct broker_rollout_s *ro = c->b->ro;
  switch (q->op) {
  case TETHER__ROLLOUT_OP__ROLLOUT_START:
    return on_start(c, id, q);
  case TETHER__ROLLOUT_OP__ROLLOUT_PAUSE:
  case TETHER__ROLLOUT_OP__ROLLOUT_RESUME:
  case TETHER__ROLLOUT_OP__ROLLOUT_CANCEL:
    return on_change(c, id, q);
  case TETHER__ROLLOUT_OP__ROLLOUT_STATUS:
    if (ro->active && (q->id == 0 || q->id == (uint64_t)ro->r.id)) return send_status(c, id, &ro->r, ro->dev, ro->ndev);
    {
      status_req_t *x = broker_creq_new(c, id, sizeof *x, STORE_LANE_READ, status_run, status_done, "rollout_status");
      if (!x) return broker_reply_error(c, id, TT_ENOMEM, "out of memory");
      x->id = (int64_t)q->id;
      return broker_creq_submit(x);
    }
  default:
    return broker_reply_error(c, id, TT_EINVAL, "unknown rollout operation");
  }
}
