/* Sessions: a technician asks for access to a device under a ticket; the device asks its
 * employee; a yes is a grant (a session) that shell channels run under until it expires or
 * someone ends it. Every step is audited and lands on the ticket's timeline. Live sessions
 * are kept here in memory (a few per person and device); the store keeps their history. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "broker.h"
#include "record.h"
#include "tt/hex.h"
#include "tt/log.h"
#include "tt/msg.h"

/* Recordings one answer lists for a session (session_recordings). */
#define SESSION_RECORDINGS_LIST_MAX 256u
/* Recordings named, with their sha256, in one session-end audit entry (the entry is
 * bounded; each recording has an entry of its own as well). */
#define SESSION_END_AUDIT_RECORDINGS 4u

typedef struct rec_meta_s rec_meta_t;

/* A session that ended while some of its recordings were still being written: its
 * session-end audit entry waits for them, so that it names every file with its sha256. */
typedef struct end_wait_s {
  struct end_wait_s *next;
  int64_t session, ticket;
  unsigned waiting;  /* recordings of the session not yet complete on disk */
  char device[STORE_NAME_MAX], person[STORE_NAME_MAX], by[STORE_NAME_MAX];
  char reason[STORE_TEXT_MAX];
} end_wait_t;

struct broker_sessions_s {
  broker_grant_t *list;
  uint32_t next_req;  /* ids of our requests to agents */
  rec_meta_t *metas;  /* recordings being written */
  end_wait_t *ends;   /* session-end entries waiting for their recordings */
};

static uint32_t next_req(broker_t *b) {
  if (++b->sessions->next_req == 0) b->sessions->next_req = 1;
  return b->sessions->next_req;
}

uint32_t broker_agent_req_id(broker_t *b) { return b->sessions ? next_req(b) : 1; }

static bool is_admin(const broker_conn_t *c) { return c->id.role == TT_ROLE_ADMIN; }

static void fmt_duration(uint64_t ms, char *out, size_t cap) {
  if (ms && ms % 3600000u == 0) snprintf(out, cap, "%" PRIu64 "h", ms / 3600000u);
  else if (ms && ms % 60000u == 0) snprintf(out, cap, "%" PRIu64 "m", ms / 60000u);
  else snprintf(out, cap, "%" PRIu64 "s", (ms + 999u) / 1000u);
}

static void fmt_time(int64_t unix_ms, char *out, size_t cap) {
  time_t t = (time_t)(unix_ms / 1000);
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(out, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static int reply_error(broker_conn_t *c, uint32_t id, int code, const char *fmt, ...) TT_PRINTF(4, 5);
static int reply_error(broker_conn_t *c, uint32_t id, int code, const char *fmt, ...) {
  char msg[TT_TEXT_MAX];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  return broker_reply_error(c, id, code, msg);
}

/* ERR_UNAVAILABLE has no code of ours: the device is known but not connected. */
static int reply_unavailable(broker_conn_t *c, uint32_t id, const char *dev) {
  char msg[TT_TEXT_MAX];
  snprintf(msg, sizeof(msg), "device %s is not connected", dev);
  Tether__Error e = TETHER__ERROR__INIT;
  e.code = TETHER__ERROR_CODE__ERR_UNAVAILABLE;
  e.message = tt_text(msg);
  Tether__Response r = TETHER__RESPONSE__INIT;
  r.id = id;
  r.error = &e;
  return tt_link_send(c->link, TT_K_RESPONSE, &r.base);
}

static bool conn_usable(const broker_conn_t *c) { return c && c->link && !c->link->closing; }

static void session_msg(const broker_grant_t *g, Tether__Session *o) {
  tether__session__init(o);
  o->id = (uint64_t)g->s.id;
  o->ticket = (uint64_t)g->s.ticket;
  o->device = tt_text(g->s.device);
  o->person = tt_text(g->s.person);
  o->access = g->s.access;
  o->started_ms = (uint64_t)g->s.started_ms;
  o->expires_ms = (uint64_t)g->s.expires_ms;
  o->unattended = g->s.unattended;
  o->consent_by = tt_text(g->s.consent_by);
  o->channels = g->nrelays;
  o->summary = tt_text(g->summary);
}

static int reply_session(broker_conn_t *c, uint32_t id, const broker_grant_t *g, bool reused) {
  Tether__Session s;
  session_msg(g, &s);
  s.reused = reused;
  Tether__Response r = TETHER__RESPONSE__INIT;
  r.id = id;
  r.body_case = TETHER__RESPONSE__BODY_SESSION;
  r.session = &s;
  return tt_link_send(c->link, TT_K_RESPONSE, &r.base);
}

static void grant_unlink(broker_t *b, broker_grant_t *g) {
  if (g->prev) g->prev->next = g->next;
  else b->sessions->list = g->next;
  if (g->next) g->next->prev = g->prev;
  g->prev = g->next = NULL;
}

static broker_grant_t *grant_find(broker_t *b, int64_t id) {
  for (broker_grant_t *g = b->sessions->list; g; g = g->next)
    if (g->s.id == id) return g;
  return NULL;
}

broker_grant_t *broker_session_live(broker_t *b, int64_t id) {
  if (!b->sessions) return NULL; /* stopping: sessions are gone */
  broker_grant_t *g = grant_find(b, id);
  if (!g || !g->granted || g->s.expires_ms <= (int64_t)broker_unix_ms()) return NULL;
  return g;
}

/* Tell the device a session ended (it closes what runs under it and tells its employee),
 * or that its consent request is withdrawn. */
static void send_session_end(broker_grant_t *g, const char *by, const char *reason, bool withdrawn) {
  if (!conn_usable(g->agent)) return;
  Tether__SessionEndRequest e = TETHER__SESSION_END_REQUEST__INIT;
  e.id = (uint64_t)g->s.id;
  e.reason = tt_text(reason);
  e.by = tt_text(by);
  e.withdrawn = withdrawn;
  Tether__Request q = TETHER__REQUEST__INIT;
  q.id = next_req(g->agent->b);
  q.body_case = TETHER__REQUEST__BODY_SESSION_END;
  q.session_end = &e;
  int rc = tt_link_send(g->agent->link, TT_K_REQUEST, &q.base);
  if (rc) TT_WARN("session", "session end not sent to the device", "session=%" PRId64 " err=%s", g->s.id, tt_errname(rc));
}

static void notify_agent_end(broker_grant_t *g, const char *by, const char *reason) {
  send_session_end(g, by, reason, false);
}

/* The session-end audit entry names the session's finished recordings with their sha256:
 * listed on the store thread, in order after the recordings' own entries. */
typedef struct {
  store_req_t req;
  store_audit_rec_t audit;
  int64_t session, ticket;
  char device[STORE_NAME_MAX], person[STORE_NAME_MAX], by[STORE_NAME_MAX];
  char reason[STORE_TEXT_MAX];
  store_recording_t recs[SESSION_END_AUDIT_RECORDINGS];
} end_audit_req_t;

static int end_audit_run(broker_store_t *s, store_req_t *r) {
  end_audit_req_t *x = (end_audit_req_t *)r;
  uint32_t n = 0;
  const char *k[SESSION_END_AUDIT_RECORDINGS + 1] = {NULL};
  const char *v[SESSION_END_AUDIT_RECORDINGS + 1] = {NULL};
  char names[SESSION_END_AUDIT_RECORDINGS][32];
  if (store_recording_list(s, x->session, x->recs, SESSION_END_AUDIT_RECORDINGS, &n) == 0) {
    uint32_t j = 0;
    for (uint32_t i = 0; i < n; i++) {
      if (!x->recs[i].ended_ms || x->recs[i].failed) continue;
      snprintf(names[j], sizeof(names[j]), "R-%" PRId64, x->recs[i].id);
      k[j] = names[j];
      v[j] = x->recs[i].sha256;
      j++;
    }
  }
  char sid[32], ticket[32];
  snprintf(sid, sizeof(sid), "S-%" PRId64, x->session);
  snprintf(ticket, sizeof(ticket), "T-%" PRId64, x->ticket);
  broker_audit_rec(&x->audit, x->by, "session-end", sid, "by", x->by, "reason", x->reason, "device", x->device,
                   "person", x->person, "ticket", ticket, k[0], v[0], k[1], v[1], k[2], v[2], k[3], v[3], AUDIT_END);
  return 0;
}

static void audit_end(broker_t *b, int64_t session, int64_t ticket_id, const char *device, const char *person,
                      const char *by, const char *reason) {
  end_audit_req_t *x = calloc(1, sizeof(*x));
  if (!x) {
    TT_ERROR("session", "session-end entry not written", "session=S-%" PRId64 " err=%s", session,
             tt_errname(TT_ENOMEM));
    return;
  }
  x->req.run = end_audit_run;
  x->req.what = "session_end_audit";
  x->req.audit = &x->audit;
  x->session = session;
  x->ticket = ticket_id;
  snprintf(x->device, sizeof(x->device), "%s", device);
  snprintf(x->person, sizeof(x->person), "%s", person);
  snprintf(x->by, sizeof(x->by), "%s", by);
  snprintf(x->reason, sizeof(x->reason), "%s", reason);
  broker_store_later(b, &x->req);
}

/* The session's row says it ended (once; an end already recorded is not an error). */
typedef struct {
  store_req_t req;
  int64_t id, now_ms;
  char by[STORE_NAME_MAX], reason[STORE_TEXT_MAX];
} end_req_t;

static int end_run(broker_store_t *s, store_req_t *r) {
  end_req_t *x = (end_req_t *)r;
  int rc = store_session_end(s, x->id, x->now_ms, x->by, x->reason);
  return rc == TT_ESTATE ? 0 : rc;
}

static void session_end_later(broker_t *b, int64_t id, const char *by, const char *reason) {
  end_req_t *x = calloc(1, sizeof(*x));
  if (!x) {
    TT_ERROR("session", "session end not stored", "session=S-%" PRId64 " err=%s", id, tt_errname(TT_ENOMEM));
    return;
  }
  x->req.run = end_run;
  x->req.what = "session_end";
  x->id = id;
  x->now_ms = (int64_t)broker_unix_ms();
  snprintf(x->by, sizeof(x->by), "%s", by);
  snprintf(x->reason, sizeof(x->reason), "%s", reason);
  broker_store_later(b, &x->req);
}

/* An end asked for while the session's row or grant is being written: it happens when the
 * store answers (session_open_done, grant_done). */
static bool end_deferred(broker_grant_t *g, const char *by, const char *reason) {
  if (!g->storing) return false;
  if (!g->end_asked) {
    g->end_asked = true;
    snprintf(g->end_by, sizeof(g->end_by), "%s", by);
    snprintf(g->end_reason, sizeof(g->end_reason), "%s", reason);
  }
  return true;
}

static unsigned recordings_in_progress(broker_t *b, int64_t session);

/* Now if every recording of the session is complete, else once the last one is. */
static void audit_end_when_recorded(broker_t *b, const broker_grant_t *g, const char *by, const char *reason) {
  unsigned n = recordings_in_progress(b, g->s.id);
  end_wait_t *w = n ? calloc(1, sizeof(*w)) : NULL;
  if (!w) {
    audit_end(b, g->s.id, g->s.ticket, g->s.device, g->s.person, by, reason);
    return;
  }
  w->session = g->s.id;
  w->ticket = g->s.ticket;
  w->waiting = n;
  snprintf(w->device, sizeof(w->device), "%s", g->s.device);
  snprintf(w->person, sizeof(w->person), "%s", g->s.person);
  snprintf(w->by, sizeof(w->by), "%s", by);
  snprintf(w->reason, sizeof(w->reason), "%s", reason);
  w->next = b->sessions->ends;
  b->sessions->ends = w;
}

/* One of the session's recordings is complete: write the waiting entry after the last. */
static void end_wait_recorded(broker_t *b, int64_t session) {
  if (!b->sessions) return;
  for (end_wait_t **pw = &b->sessions->ends, *w; (w = *pw); pw = &w->next) {
    if (w->session != session) continue;
    if (--w->waiting == 0) {
      *pw = w->next;
      audit_end(b, w->session, w->ticket, w->device, w->person, w->by, w->reason);
      free(w);
    }
    return;
  }
}

/* End a session for good: its channels close at once with the reason, the device is told
 * (unless it told us), a console still waiting for consent hears why. */
static void grant_end(broker_t *b, broker_grant_t *g, const char *by, const char *reason, bool tell_agent) {
  if (end_deferred(g, by, reason)) return;
  char sid[32];
  snprintf(sid, sizeof(sid), "S-%" PRId64, g->s.id);
  if (g->console && conn_usable(g->console))
    (void)!reply_error(g->console, g->console_req, TT_EDENIED, "%s ended before consent: %s", sid, reason);
  g->console = NULL;
  /* What the technician's console prints as the shell ends: which session, and why. */
  char why[STORE_TEXT_MAX + 48];
  if (strncmp(reason, "ended by ", 9) == 0) snprintf(why, sizeof(why), "session %s was %s", sid, reason);
  else snprintf(why, sizeof(why), "session %s ended: %s", sid, reason);
  relay_end_grant(g, TT_ECLOSED, why);
  if (tell_agent) notify_agent_end(g, by, reason);
  session_end_later(b, g->s.id, by, reason);
  audit_end_when_recorded(b, g, by, reason);
  (void)!broker_ticket_event(b, g->s.ticket, by, "session-ended", "%s ended by %s: %s", sid, by, reason);
  TT_INFO("session", "session ended", "session=%s by=%s reason=\"%s\"", sid, by, reason);
  grant_unlink(b, g);
  free(g);
}

/* ---- consent answers --------------------------------------------------------------- */

/* No grant: the employee said no, nobody answered, or nobody could be asked. */
static void consent_denied(broker_t *b, broker_grant_t *g, const char *action, const char *event, const char *by,
                           const char *msg, bool tell_agent) {
  if (end_deferred(g, by[0] ? by : "broker", msg)) return;
  char sid[32], ticket[32];
  snprintf(sid, sizeof(sid), "S-%" PRId64, g->s.id);
  snprintf(ticket, sizeof(ticket), "T-%" PRId64, g->s.ticket);
  broker_audit(b, g->s.device, action, sid, "by", by, "person", g->s.person, "ticket", ticket, "reason", msg,
               AUDIT_END);
  (void)!broker_ticket_event(b, g->s.ticket, g->s.device, event, "%s for %s: %s", sid, g->s.person, msg);
  if (tell_agent) notify_agent_end(g, "broker", msg);
  session_end_later(b, g->s.id, by[0] ? by : g->s.device, msg);
  if (g->console && conn_usable(g->console)) (void)!broker_reply_error(g->console, g->console_req, TT_EDENIED, msg);
  TT_INFO("session", "consent not given", "session=%s action=%s", sid, action);
  grant_unlink(b, g);
  free(g);
}

/* A request about one session: it finds the session again through g, which the session
 * clears if it is freed first (broker_sessions_free). */
typedef struct session_req_s {
  broker_creq_t h;        /* h.c is NULL: sessions answer their console themselves */
  broker_t *b;
  broker_grant_t *g;
  bool unattended;
  char by[STORE_NAME_MAX];
  char via[8];            /* "ssh": asked for through the gateway */
  /* session_open */
  int64_t ticket_id;
  uint64_t duration_ms;
  store_session_t s;
  store_ticket_t t;
  int err;
  char msg[TT_TEXT_MAX];
} session_req_t;

static session_req_t *session_req_new(broker_t *b, broker_grant_t *g, store_run_fn run, store_done_fn done,
                                      const char *what) {
  session_req_t *x = calloc(1, sizeof(*x));
  if (!x) return NULL;
  x->h.req.run = run;
  x->h.req.done = done;
  x->h.req.lane = STORE_LANE_WRITE;
  x->h.req.what = what;
  x->h.req.audit = &x->h.audit;
  x->b = b;
  x->g = g;
  return x;
}

static int grant_run(broker_store_t *s, store_req_t *r) {
  session_req_t *x = (session_req_t *)r;
  return store_session_grant(s, x->t.id, x->t.resolution_due_ms, x->unattended, x->by);
}

/* The grant and its consent entry are on disk: only now may the session be used. */
static void grant_done(store_req_t *r) {
  session_req_t *x = (session_req_t *)r;
  broker_t *b = x->b;
  broker_grant_t *g = x->g;
  if (!g) goto out;
  g->storing = NULL;
  if (r->rc) {
    TT_ERROR("session", "grant not stored", "session=S-%" PRId64 " err=%s", g->s.id, tt_errname(r->rc));
    consent_denied(b, g, "consent-failed", "consent-failed", "",
                   "the broker could not record the employee's consent, so access is not granted", true);
    goto out;
  }
  g->granted = true;
  if (g->end_asked) { /* ended while the grant was being written: it ends now */
    char by[STORE_NAME_MAX], reason[STORE_TEXT_MAX];
    snprintf(by, sizeof(by), "%s", g->end_by);
    snprintf(reason, sizeof(reason), "%s", g->end_reason);
    grant_end(b, g, by, reason, true);
    goto out;
  }
  char sid[32], until[32], dur[32], words[32];
  snprintf(sid, sizeof(sid), "S-%" PRId64, g->s.id);
  fmt_time(g->s.expires_ms, until, sizeof(until));
  fmt_duration(g->duration_ms, dur, sizeof(dur));
  tt_access_words(g->s.access, words, sizeof(words));
  if (x->unattended)
    (void)!broker_ticket_event(b, g->s.ticket, g->s.device, "unattended",
                               "%s granted unattended by the device's policy (no one to ask)", sid);
  else
    (void)!broker_ticket_event(b, g->s.ticket, g->s.device, "consent-given", "%s allowed by %s", sid, x->by);
  (void)!broker_ticket_event(b, g->s.ticket, g->s.person, "session-opened", "%s: %s for %s, until %s", sid, words,
                             dur, until);
  broker_ticket_responded(b, g->s.ticket);
  TT_INFO("session", "session granted", "session=%s person=%s device=%s unattended=%d", sid, g->s.person,
          g->s.device, (int)x->unattended);
  if (g->console && conn_usable(g->console)) {
    int rc = reply_session(g->console, g->console_req, g, false);
    if (rc) tt_link_close(g->console->link, rc, "console is not reading");
  }
  g->console = NULL;
out:
  free(x);
}

/* The employee (or the device's policy) said yes: the grant is written with its consent
 * entry first, and a grant that cannot be recorded is no grant. */
static void consent_granted(broker_t *b, broker_grant_t *g, bool unattended, const char *by) {
  char sid[32], ticket[32], until[32], words[32];
  snprintf(sid, sizeof(sid), "S-%" PRId64, g->s.id);
  g->agent_req = 0; /* answered: a second answer finds nothing */
  g->s.unattended = unattended;
  snprintf(g->s.consent_by, sizeof(g->s.consent_by), "%s", unattended ? "" : by);
  g->s.expires_ms = (int64_t)broker_unix_ms() + (int64_t)g->duration_ms;
  session_req_t *x = session_req_new(b, g, grant_run, grant_done, "session_grant");
  if (!x) {
    consent_denied(b, g, "consent-failed", "consent-failed", "", "the broker is out of memory", true);
    return;
  }
  x->t.id = g->s.id;                       /* the session, */
  x->t.resolution_due_ms = g->s.expires_ms; /* and until when */
  x->unattended = unattended;
  snprintf(x->by, sizeof(x->by), "%s", g->s.consent_by);
  snprintf(ticket, sizeof(ticket), "T-%" PRId64, g->s.ticket);
  fmt_time(g->s.expires_ms, until, sizeof(until));
  tt_access_words(g->s.access, words, sizeof(words));
  if (unattended)
    broker_audit_rec(&x->h.audit, g->s.device, "consent-unattended", sid, "person", g->s.person, "ticket", ticket,
                     "access", words, "until", until, AUDIT_END);
  else
    broker_audit_rec(&x->h.audit, g->s.device, "consent-given", sid, "by", by, "person", g->s.person, "ticket",
                     ticket, "access", words, "until", until, AUDIT_END);
  if (store_svc_submit(b->svc, &x->h.req)) {
    free(x);
    consent_denied(b, g, "consent-failed", "consent-failed", "", "the broker is busy: ask again shortly", true);
    return;
  }
  g->storing = x;
}

static broker_grant_t *find_asked(broker_t *b, const broker_conn_t *agent, uint32_t req) {
  for (broker_grant_t *g = b->sessions->list; g; g = g->next)
    if (!g->granted && !g->storing && req && g->agent == agent && g->agent_req == req) return g;
  return NULL;
}

int broker_agent_response(broker_conn_t *c, const Tether__Response *r) {
  broker_t *b = c->b;
  broker_grant_t *g = find_asked(b, c, r->id);
  if (!g) return 0; /* a session-end acknowledgement, or an answer past the deadline */
  char msg[TT_TEXT_MAX], by[TT_NAME_MAX + 1] = "", text[TT_TEXT_MAX] = "";
  if (r->error || r->body_case != TETHER__RESPONSE__BODY_CONSENT || !r->consent) {
    if (r->error && tt_text_copy(text, sizeof(text), r->error->message)) text[0] = '\0';
    /* The device's words are cut to fit: what is kept still says why. */
    if (snprintf(msg, sizeof(msg), "the device could not ask its employee%s%s", text[0] ? ": " : "", text) < 0)
      msg[0] = '\0';
    consent_denied(b, g, "consent-failed", "consent-failed", "", msg, false);
    return 0;
  }
  const Tether__ConsentResponse *a = r->consent;
  if (tt_text_copy(by, sizeof(by), a->by)) snprintf(by, sizeof(by), "?");
  uint64_t secs = (uv_now(b->loop) - g->asked_at + 500u) / 1000u;
  switch (a->decision) {
  case TETHER__CONSENT_DECISION__CONSENT_GRANTED:
    consent_granted(b, g, false, by[0] ? by : "?");
    return 0;
  case TETHER__CONSENT_DECISION__CONSENT_UNATTENDED:
    consent_granted(b, g, true, "");
    return 0;
  case TETHER__CONSENT_DECISION__CONSENT_REFUSED:
    consent_denied(b, g, "consent-refused", "consent-refused", by, "the employee refused access", false);
    return 0;
  case TETHER__CONSENT_DECISION__CONSENT_TIMEOUT:
    snprintf(msg, sizeof(msg), "no answer from the employee within %" PRIu64 " s", secs);
    consent_denied(b, g, "consent-timeout", "consent-timeout", "", msg, false);
    return 0;
  case TETHER__CONSENT_DECISION__CONSENT_NOBODY:
    consent_denied(b, g, "consent-nobody", "consent-nobody", "",
                   "no one is at the device to ask and its policy does not allow unattended access", false);
    return 0;
  default:
    consent_denied(b, g, "consent-failed", "consent-failed", "", "the device gave no valid consent answer", true);
    return 0;
  }
}

/* ---- session_open ---------------------------------------------------------------- */

typedef struct {
  uint32_t person, device, waiting; /* live sessions of the person, of the device; prompts waiting on it */
  broker_grant_t *reuse;
} counts_t;

static counts_t count(broker_t *b, const char *person, const char *dev, int64_t ticket, unsigned access) {
  counts_t k = {0, 0, 0, NULL};
  int64_t now = (int64_t)broker_unix_ms();
  for (broker_grant_t *g = b->sessions->list; g; g = g->next) {
    bool mine = strcmp(g->s.person, person) == 0, here = strcmp(g->s.device, dev) == 0;
    k.person += mine;
    k.device += here;
    k.waiting += here && !g->granted;
    if (mine && here && g->granted && g->s.ticket == ticket && (g->s.access & access) == access &&
        g->s.expires_ms > now && !k.reuse)
      k.reuse = g;
  }
  return k;
}

/* The ticket must be open, about this device, and the asker's (admins: anyone's). Runs on
 * the store thread; x->err and x->msg say why not. */
static void ticket_refuse(session_req_t *x, int err, const char *fmt, ...) TT_PRINTF(3, 4);
static void ticket_refuse(session_req_t *x, int err, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(x->msg, sizeof(x->msg), fmt, ap);
  va_end(ap);
  x->err = err;
}

static int check_ticket(session_req_t *x, const store_ticket_t *t, const char *dev, bool admin, const char *who) {
  int64_t tid = t->id;
  if (t->state != STORE_TICKET_OPEN)
    ticket_refuse(x, TT_EINVAL, "T-%" PRId64 " is %s", tid, t->state == STORE_TICKET_RESOLVED ? "resolved" : "closed");
  else if (strcmp(t->device, dev) != 0)
    ticket_refuse(x, TT_EINVAL, "T-%" PRId64 " is for device %s, not %s", tid, t->device, dev);
  else if (!admin && strcmp(t->assignee, who) != 0 && t->assignee[0])
    ticket_refuse(x, TT_EDENIED, "T-%" PRId64 " is assigned to %s", tid, t->assignee);
  else if (!admin && strcmp(t->assignee, who) != 0)
    ticket_refuse(x, TT_EDENIED, "T-%" PRId64 " is not assigned to you: assign it first", tid);
  return x->err;
}

static int send_consent(broker_grant_t *g) {
  Tether__ConsentRequest cr = TETHER__CONSENT_REQUEST__INIT;
  cr.session = (uint64_t)g->s.id;
  cr.technician = tt_text(g->s.person);
  cr.ticket = (uint64_t)g->s.ticket;
  cr.summary = tt_text(g->summary);
  cr.access = g->s.access;
  cr.duration_ms = g->duration_ms;
  cr.timeout_ms = 0; /* the device's own */
  Tether__Request q = TETHER__REQUEST__INIT;
  q.id = g->agent_req;
  q.body_case = TETHER__REQUEST__BODY_CONSENT;
  q.consent = &cr;
  return tt_link_send(g->agent->link, TT_K_REQUEST, &q.base);
}

/* The ticket is checked and the session's row written with its session-request entry in
 * one store request; the device is asked only once both are on disk. */
static int open_run(broker_store_t *s, store_req_t *r) {
  session_req_t *x = (session_req_t *)r;
  int rc = store_ticket_get(s, x->ticket_id, &x->t);
  if (rc == TT_ENOTFOUND) ticket_refuse(x, TT_ENOTFOUND, "no such ticket: T-%" PRId64, x->ticket_id);
  if (rc) return rc;
  if (check_ticket(x, &x->t, x->s.device, x->unattended, x->s.person)) return TT_EDENIED;
  x->s.ticket = x->t.id;
  rc = store_session_add(s, &x->s);
  if (rc) return rc;
  char sid[32], ticket[32], words[32], d[32];
  snprintf(sid, sizeof(sid), "S-%" PRId64, x->s.id);
  snprintf(ticket, sizeof(ticket), "T-%" PRId64, x->t.id);
  tt_access_words(x->s.access, words, sizeof(words));
  fmt_duration(x->duration_ms, d, sizeof(d));
  broker_audit_rec(&x->h.audit, x->s.person, "session-request", sid, "device", x->s.device, "ticket", ticket,
                   "access", words, "duration", d, "?via", x->via, AUDIT_END);
  return 0;
}

static void consent_withdrawn(broker_t *b, broker_grant_t *g);

static void open_done(store_req_t *r) {
  session_req_t *x = (session_req_t *)r;
  broker_t *b = x->b;
  broker_grant_t *g = x->g;
  if (!g) goto out;
  g->storing = NULL;
  broker_conn_t *c = g->console && conn_usable(g->console) ? g->console : NULL;
  if (r->rc) {
    if (c && x->err) (void)!broker_reply_error(c, g->console_req, x->err, x->msg);
    else if (c) (void)!broker_reply_error(c, g->console_req, TT_EIO, "the broker could not record the session request");
    if (!x->err) TT_ERROR("session", "session not stored", "err=%s", tt_errname(r->rc));
    grant_unlink(b, g);
    free(g);
    goto out;
  }
  g->s = x->s;
  snprintf(g->summary, sizeof(g->summary), "%s", x->t.summary);
  char sid[32], words[32], d[32];
  snprintf(sid, sizeof(sid), "S-%" PRId64, g->s.id);
  tt_access_words(g->s.access, words, sizeof(words));
  fmt_duration(g->duration_ms, d, sizeof(d));
  (void)!broker_ticket_event(b, g->s.ticket, g->s.person, "session-requested", "%s: %s for %s asked by %s", sid,
                             words, d, g->s.person);
  if (g->withdrawn) { /* the console went away while the row was written */
    consent_withdrawn(b, g);
    goto out;
  }
  if (g->end_asked) { /* the device went away meanwhile */
    char by[STORE_NAME_MAX], reason[STORE_TEXT_MAX];
    snprintf(by, sizeof(by), "%s", g->end_by);
    snprintf(reason, sizeof(reason), "%s", g->end_reason);
    consent_denied(b, g, "consent-failed", "consent-failed", by, reason, false);
    goto out;
  }
  broker_conn_t *a = broker_find_agent(b, g->s.device);
  if (!a) {
    consent_denied(b, g, "consent-failed", "consent-failed", "", "the device disconnected", false);
    goto out;
  }
  g->agent = a;
  g->agent_req = next_req(b);
  g->asked_at = uv_now(b->loop);
  g->deadline = g->asked_at + TT_CONSENT_DEADLINE_MS;
  if (send_consent(g)) {
    consent_denied(b, g, "consent-failed", "consent-failed", "", "the device could not be asked (not reading)", false);
    goto out;
  }
  broker_audit(b, "broker", "consent-asked", sid, "device", g->s.device, "person", g->s.person, AUDIT_END);
out:
  free(x);
}

static int on_open(broker_conn_t *c, uint32_t id, const Tether__SessionOpenRequest *q) {
  broker_t *b = c->b;
  char dev[TT_NAME_MAX + 1];
  if (!q || tt_text_copy(dev, sizeof(dev), q->device) || !dev[0])
    return broker_reply_error(c, id, TT_EINVAL, "no valid device id");
  if (q->ticket == 0 || q->ticket > INT64_MAX) return broker_reply_error(c, id, TT_EINVAL, "a ticket is required");
  const unsigned all = STORE_ACCESS_SHELL | STORE_ACCESS_FILES | STORE_ACCESS_DIAG;
  if (q->access == 0) return broker_reply_error(c, id, TT_EINVAL, "ask for some access: shell, files or diag");
  if (q->access & ~all) return broker_reply_error(c, id, TT_EINVAL, "unknown access asked for");
  uint64_t dur = q->duration_ms ? q->duration_ms : (uint64_t)b->cfg.session_duration_ms;
  if (dur > (uint64_t)b->cfg.session_max_ms) {
    char max[32];
    fmt_duration((uint64_t)b->cfg.session_max_ms, max, sizeof(max));
    return reply_error(c, id, TT_EINVAL, "a session may last at most %s (session.max)", max);
  }
  counts_t k = count(b, c->id.name, dev, (int64_t)q->ticket, q->access);
  if (k.reuse) {
    char sid[32], ticket[32];
    snprintf(sid, sizeof(sid), "S-%" PRId64, k.reuse->s.id);
    snprintf(ticket, sizeof(ticket), "T-%" PRId64, k.reuse->s.ticket);
    broker_audit(b, c->id.name, "session-reuse", sid, "device", dev, "ticket", ticket, "?via", c->via, AUDIT_END);
    return reply_session(c, id, k.reuse, true);
  }
  if (k.person >= TT_SESSIONS_PER_PERSON_MAX)
    return reply_error(c, id, TT_EBUSY, "you have %u live sessions: end some first", k.person);
  if (k.device >= TT_SESSIONS_PER_DEVICE_MAX)
    return reply_error(c, id, TT_EBUSY, "%s has %u live sessions: end some first", dev, k.device);
  if (k.waiting >= TT_CONSENT_PENDING_PER_DEVICE_MAX)
    return reply_error(c, id, TT_EBUSY, "%u requests are already waiting for an answer on %s", k.waiting, dev);
  broker_conn_t *a = broker_find_agent(b, dev);
  if (!a) return reply_unavailable(c, id, dev);
  if (!(a->caps & TETHER__CAPABILITY__CAP_SHELL))
    return reply_error(c, id, TT_EINVAL, "the agent on %s is too old for sessions: update it", dev);
  /* Never ask the employee for what the device cannot give. */
  if ((q->access & STORE_ACCESS_FILES) && !(a->caps & TETHER__CAPABILITY__CAP_FILES))
    return reply_error(c, id, TT_EVERSION, "this agent does not serve files (version %s): update it, or ask for shell or diag access",
                       a->version[0] ? a->version : "unknown");

  /* In the list from now on, so that the limits above count it while its row is written. */
  broker_grant_t *g = calloc(1, sizeof(*g));
  session_req_t *x = g ? session_req_new(b, g, open_run, open_done, "session_open") : NULL;
  if (!x) {
    free(g);
    return broker_reply_error(c, id, TT_ENOMEM, "out of memory");
  }
  snprintf(g->s.device, sizeof(g->s.device), "%s", dev);
  snprintf(g->s.person, sizeof(g->s.person), "%s", c->id.name);
  g->s.ticket = (int64_t)q->ticket;
  g->s.access = q->access;
  g->s.started_ms = (int64_t)broker_unix_ms();
  g->duration_ms = dur;
  g->console = c;
  g->console_req = id;
  g->asked_at = uv_now(b->loop);
  g->deadline = g->asked_at + TT_CONSENT_DEADLINE_MS;
  x->s = g->s;
  snprintf(x->via, sizeof(x->via), "%s", c->via);
  x->ticket_id = (int64_t)q->ticket;
  x->duration_ms = dur;
  x->unattended = is_admin(c); /* open_run: admins may use any ticket */
  if (store_svc_submit(b->svc, &x->h.req)) {
    free(x);
    free(g);
    return broker_reply_error(c, id, TT_EBUSY, "the broker is busy, try again shortly");
  }
  g->storing = x;
  g->next = b->sessions->list;
  if (g->next) g->next->prev = g;
  b->sessions->list = g;
  return 0;
}

/* ---- session_list, session_end -------------------------------------------------------- */

static int on_list(broker_conn_t *c, uint32_t id, const Tether__SessionListRequest *q) {
  broker_t *b = c->b;
  bool all = q && q->all && is_admin(c);
  int64_t now = (int64_t)broker_unix_ms();
  size_t n = 0;
  bool more = false;
  for (broker_grant_t *g = b->sessions->list; g; g = g->next)
    if (g->granted && g->s.expires_ms > now && (all || strcmp(g->s.person, c->id.name) == 0)) n++;
  if (n > TT_SESSION_LIST_MAX) { /* one frame's worth; the answer says there are more */
    n = TT_SESSION_LIST_MAX;
    more = true;
  }
  Tether__Session *rows = calloc(n ? n : 1, sizeof(*rows));
  Tether__Session **ptrs = calloc(n ? n : 1, sizeof(*ptrs));
  int rc;
  if (!rows || !ptrs) {
    rc = broker_reply_error(c, id, TT_ENOMEM, "out of memory");
    goto out;
  }
  size_t i = 0;
  for (broker_grant_t *g = b->sessions->list; g && i < n; g = g->next) {
    if (!g->granted || g->s.expires_ms <= now || (!all && strcmp(g->s.person, c->id.name) != 0)) continue;
    session_msg(g, &rows[i]);
    ptrs[i] = &rows[i];
    i++;
  }
  Tether__SessionList list = TETHER__SESSION_LIST__INIT;
  list.sessions = ptrs;
  list.n_sessions = i;
  list.more = more;
  Tether__Response r = TETHER__RESPONSE__INIT;
  r.id = id;
  r.body_case = TETHER__RESPONSE__BODY_SESSION_LIST;
  r.session_list = &list;
  rc = tt_link_send(c->link, TT_K_RESPONSE, &r.base);
out:
  free(rows);
  free(ptrs);
  return rc;
}

static int reply_end_ok(broker_conn_t *c, uint32_t id) {
  Tether__SessionEndResponse e = TETHER__SESSION_END_RESPONSE__INIT;
  Tether__Response r = TETHER__RESPONSE__INIT;
  r.id = id;
  r.body_case = TETHER__RESPONSE__BODY_SESSION_END;
  r.session_end = &e;
  return tt_link_send(c->link, TT_K_RESPONSE, &r.base);
}

static int on_end(broker_conn_t *c, uint32_t id, const Tether__SessionEndRequest *q) {
  broker_t *b = c->b;
  if (!q || q->id == 0 || q->id > INT64_MAX) return broker_reply_error(c, id, TT_EINVAL, "no session id");
  broker_grant_t *g = grant_find(b, (int64_t)q->id);
  if (c->id.role == TT_ROLE_AGENT) {
    /* The employee ended it on the device: only that device's sessions. */
    if (!g || strcmp(g->s.device, c->id.name) != 0)
      return reply_error(c, id, TT_ENOTFOUND, "S-%" PRIu64 " is not a live session on this device", q->id);
    char user[TT_NAME_MAX + 1], by[STORE_NAME_MAX];
    if (tt_text_copy(user, sizeof(user), q->by) || !user[0]) snprintf(user, sizeof(user), "?");
    snprintf(by, sizeof(by), "employee:%.*s", (int)(sizeof(by) - 10), user);
    grant_end(b, g, by, "ended by the employee", false);
    return reply_end_ok(c, id);
  }
  if (!g) return reply_error(c, id, TT_ENOTFOUND, "S-%" PRIu64 " is not a live session", q->id);
  if (!is_admin(c) && strcmp(g->s.person, c->id.name) != 0)
    return reply_error(c, id, TT_EDENIED, "S-%" PRIu64 " is %s's session", q->id, g->s.person);
  char reason[STORE_TEXT_MAX];
  if (tt_text_copy(reason, sizeof(reason), q->reason) || !reason[0])
    snprintf(reason, sizeof(reason), "ended by %s", c->id.name);
  grant_end(b, g, c->id.name, reason, true);
  return reply_end_ok(c, id);
}

/* ---- recordings ---------------------------------------------------------------------- */

/* The store keeps the sha256 as hex (as the audit shows it); the wire carries its 32 bytes. */
static int hex_to_bytes(const char *hex, uint8_t *out, size_t n) {
  size_t len = strlen(hex);
  return len == 2 * n && tt_unhex(out, n, hex, len) == (int)n ? 0 : TT_EINVAL;
}

/* A recording is looked up, checked and read on the store's reader thread: neither the
 * store nor the file is touched on the loop. */
typedef struct {
  broker_creq_t h;
  const char *data_dir;
  bool admin;
  char who[STORE_NAME_MAX];
  uint64_t recording, session, offset;
  uint32_t index;
  int err;                 /* refused: code and message */
  char msg[TT_TEXT_MAX];
  store_recording_t rec;
  uint32_t n;
  size_t got;
  uint64_t ids[SESSION_RECORDINGS_LIST_MAX];
  store_recording_t list[SESSION_RECORDINGS_LIST_MAX];
  uint8_t buf[TT_RECORDING_CHUNK_MAX];
} rec_req_t;

static void rec_refuse(rec_req_t *x, int err, const char *fmt, ...) TT_PRINTF(3, 4);
static void rec_refuse(rec_req_t *x, int err, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(x->msg, sizeof(x->msg), fmt, ap);
  va_end(ap);
  x->err = err;
}

static int read_chunk(const char *data_dir, const store_recording_t *rec, uint64_t offset, uint8_t *buf, size_t *n) {
  char path[1100];
  snprintf(path, sizeof(path), "%s/%s", data_dir, rec->path);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -errno;
  uint64_t left = (uint64_t)rec->size - offset;
  size_t want = left < TT_RECORDING_CHUNK_MAX ? (size_t)left : TT_RECORDING_CHUNK_MAX, got = 0;
  int rc = 0;
  while (got < want) {
    ssize_t k = pread(fd, buf + got, want - got, (off_t)(offset + got));
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) {
      rc = k < 0 ? -errno : TT_EIO; /* shorter than the store says */
      break;
    }
    got += (size_t)k;
  }
  close(fd);
  *n = got;
  return rc;
}

static int rec_run(broker_store_t *s, store_req_t *r) {
  rec_req_t *x = (rec_req_t *)r;
  store_recording_t *rec = &x->rec;
  int rc;
  if (x->recording) {
    rc = x->recording > INT64_MAX ? TT_ENOTFOUND : store_recording_get(s, (int64_t)x->recording, rec);
    if (rc == TT_ENOTFOUND) {
      rec_refuse(x, TT_ENOTFOUND, "no such recording: R-%" PRIu64, x->recording);
      return rc;
    }
  } else {
    rc = store_recording_list(s, (int64_t)x->session, x->list, SESSION_RECORDINGS_LIST_MAX, &x->n);
    if (!rc && x->index >= x->n) {
      if (x->n)
        rec_refuse(x, TT_ENOTFOUND, "S-%" PRIu64 " has %u recordings, not #%u", x->session, x->n, x->index + 1);
      else
        rec_refuse(x, TT_ENOTFOUND, "S-%" PRIu64 " has no recordings", x->session);
      return TT_ENOTFOUND;
    }
    if (!rc) *rec = x->list[x->index];
  }
  if (rc) return rc;
  if (!x->admin && strcmp(rec->person, x->who) != 0)
    rec_refuse(x, TT_EDENIED, "R-%" PRId64 " was made in %s's session", rec->id, rec->person);
  else if (!rec->ended_ms)
    rec_refuse(x, TT_EBUSY, "R-%" PRId64 " is still being recorded", rec->id);
  else if (rec->expired_ms)
    rec_refuse(x, TT_ENOTFOUND, "R-%" PRId64 " was deleted by retention (tether retention show)", rec->id);
  else if (rec->erased)
    rec_refuse(x, TT_ENOTFOUND, "R-%" PRId64 " was deleted when a person's data was erased (audit entry %" PRId64 ")",
               rec->id, rec->erased);
  /* A failed recording has no sha256 to check it by, and its file may be cut anywhere. */
  else if (rec->failed)
    rec_refuse(x, TT_EIO, "R-%" PRId64 " is incomplete: its recording failed (see the audit)", rec->id);
  else if (x->offset > (uint64_t)rec->size)
    rec_refuse(x, TT_EINVAL, "offset %" PRIu64 " is past the end of R-%" PRId64, x->offset, rec->id);
  if (x->err) return x->err;
  rc = read_chunk(x->data_dir, rec, x->offset, x->buf, &x->got);
  if (rc) {
    TT_ERROR("session", "recording not readable", "recording=R-%" PRId64 " err=%s", rec->id, tt_errname(rc));
    rec_refuse(x, TT_EIO, "R-%" PRId64 " cannot be read on the broker (%s)", rec->id, tt_strerror(rc));
    return rc;
  }
  if (x->recording) /* the session's list, for a recording asked by id */
    (void)!store_recording_list(s, rec->session, x->list, SESSION_RECORDINGS_LIST_MAX, &x->n);
  for (uint32_t i = 0; i < x->n; i++) x->ids[i] = (uint64_t)x->list[i].id;
  return 0;
}

static void rec_done(store_req_t *r) {
  rec_req_t *x = (rec_req_t *)r;
  broker_conn_t *c = broker_creq_conn(x);
  if (!c) goto out;
  int rc;
  if (x->err) {
    rc = broker_reply_error(c, x->h.id, x->err, x->msg);
  } else if (r->rc) {
    rc = broker_reply_error(c, x->h.id, TT_EIO, "the broker could not read its store");
  } else {
    const store_recording_t *rec = &x->rec;
    Tether__RecordingChunk ch = TETHER__RECORDING_CHUNK__INIT;
    ch.recording = (uint64_t)rec->id;
    ch.session = (uint64_t)rec->session;
    ch.ticket = (uint64_t)rec->ticket;
    ch.device = tt_text(rec->device);
    ch.person = tt_text(rec->person);
    ch.started_ms = (uint64_t)rec->started_ms;
    ch.size = (uint64_t)rec->size;
    uint8_t sha[32];
    ch.sha256.data = sha;
    ch.sha256.len = hex_to_bytes(rec->sha256, sha, sizeof(sha)) ? 0 : sizeof(sha); /* "" when it failed */
    ch.offset = x->offset;
    ch.data.data = x->buf;
    ch.data.len = x->got;
    ch.session_recordings = x->ids;
    ch.n_session_recordings = x->n;
    Tether__Response resp = TETHER__RESPONSE__INIT;
    resp.id = x->h.id;
    resp.body_case = TETHER__RESPONSE__BODY_RECORDING;
    resp.recording = &ch;
    rc = tt_link_send(c->link, TT_K_RESPONSE, &resp.base);
  }
  if (rc) tt_link_close(c->link, rc, "peer not reading");
out:
  free(x);
}

static int on_recording(broker_conn_t *c, uint32_t id, const Tether__RecordingGetRequest *q) {
  if (!q || (!q->recording && !(q->session && q->session <= INT64_MAX)))
    return broker_reply_error(c, id, TT_EINVAL, "ask for a session or a recording");
  rec_req_t *x = broker_creq_new(c, id, sizeof(*x), STORE_LANE_READ, rec_run, rec_done, "recording_get");
  if (!x) return broker_reply_error(c, id, TT_ENOMEM, "out of memory");
  x->data_dir = c->b->cfg.data_dir;
  x->admin = is_admin(c);
  snprintf(x->who, sizeof(x->who), "%s", c->id.name);
  x->recording = q->recording;
  x->session = q->session;
  x->index = q->index;
  x->offset = q->offset;
  return broker_creq_submit(x);
}

int broker_session_request(broker_conn_t *c, const Tether__Request *q) {
  if (c->state != BROKER_CONN_READY) return broker_reply_error(c, q->id, TT_EDENIED, "sessions need a welcome first");
  bool person = c->id.role == TT_ROLE_TECHNICIAN || c->id.role == TT_ROLE_ADMIN;
  if (!person && !(c->id.role == TT_ROLE_AGENT && q->body_case == TETHER__REQUEST__BODY_SESSION_END))
    return broker_reply_error(c, q->id, TT_EDENIED, "sessions are for technicians and admins");
  switch (q->body_case) {
  case TETHER__REQUEST__BODY_SESSION_OPEN: return on_open(c, q->id, q->session_open);
  case TETHER__REQUEST__BODY_SESSION_LIST: return on_list(c, q->id, q->session_list);
  case TETHER__REQUEST__BODY_SESSION_END: return on_end(c, q->id, q->session_end);
  case TETHER__REQUEST__BODY_RECORDING_GET: return on_recording(c, q->id, q->recording_get);
  default: return broker_reply_error(c, q->id, TT_EPROTO, "not a session request");
  }
}

/* ---- recording a shell relay ------------------------------------------------------------ */

struct rec_meta_s {
  rec_meta_t *prev, *next; /* b->sessions->metas, while linked */
  bool linked;
  broker_t *b;
  relay_t *relay; /* NULL once the relay ended */
  const broker_rec_owner_t *owner;
  broker_rec_t *rec;
  store_recording_t row;
};

static void meta_link(broker_t *b, rec_meta_t *m) {
  m->next = b->sessions->metas;
  if (m->next) m->next->prev = m;
  b->sessions->metas = m;
  m->linked = true;
}

static void meta_unlink(broker_t *b, rec_meta_t *m) {
  if (!m->linked || !b->sessions) return;
  if (m->prev) m->prev->next = m->next;
  else b->sessions->metas = m->next;
  if (m->next) m->next->prev = m->prev;
  m->linked = false;
}

static unsigned recordings_in_progress(broker_t *b, int64_t session) {
  unsigned n = 0;
  for (const rec_meta_t *m = b->sessions->metas; m; m = m->next) n += m->row.session == session;
  return n;
}

static void rec_fail_text(char *out, size_t cap, int err) {
  snprintf(out, cap, "recording failed (%s): the session cannot continue unrecorded", tt_strerror(err));
}

static void meta_drain(void *ctx) {
  rec_meta_t *m = ctx;
  if (m->relay) m->owner->on_drain(m->relay);
}

static void meta_fail(void *ctx, int err) {
  rec_meta_t *m = ctx;
  char why[TT_TEXT_MAX];
  rec_fail_text(why, sizeof(why), err);
  TT_ERROR("session", "recording failed", "recording=R-%" PRId64 " err=%s", m->row.id, tt_errname(err));
  if (m->relay) m->owner->on_fail(m->relay, why); /* ends the relay: m may be gone after */
}

/* A recording's end: its row and its audit entry in one request, nobody waiting. */
typedef struct {
  store_req_t req;
  store_audit_rec_t audit;
  int64_t id, ended_ms, size;
  char sha256[65];
  bool failed;
} rec_end_req_t;

static int rec_end_run(broker_store_t *s, store_req_t *r) {
  rec_end_req_t *x = (rec_end_req_t *)r;
  return store_recording_finish(s, x->id, x->ended_ms, x->size, x->failed ? "" : x->sha256, x->failed);
}

static rec_end_req_t *rec_end_new(int64_t id, int64_t size, const char *sha256, bool failed) {
  rec_end_req_t *x = calloc(1, sizeof(*x));
  if (!x) {
    TT_ERROR("session", "recording end not stored", "recording=R-%" PRId64 " err=%s", id, tt_errname(TT_ENOMEM));
    return NULL;
  }
  x->req.run = rec_end_run;
  x->req.what = "recording_finish";
  x->req.audit = &x->audit;
  x->id = id;
  x->ended_ms = (int64_t)broker_unix_ms();
  x->size = size;
  snprintf(x->sha256, sizeof(x->sha256), "%s", sha256 ? sha256 : "");
  x->failed = failed;
  return x;
}

static void meta_done(void *ctx, const broker_rec_result_t *res) {
  rec_meta_t *m = ctx;
  broker_t *b = m->b;
  char rid[32], sid[32], ticket[32], size[24];
  snprintf(rid, sizeof(rid), "R-%" PRId64, m->row.id);
  snprintf(sid, sizeof(sid), "S-%" PRId64, m->row.session);
  snprintf(ticket, sizeof(ticket), "T-%" PRId64, m->row.ticket);
  snprintf(size, sizeof(size), "%" PRId64, res->size);
  rec_end_req_t *x = rec_end_new(m->row.id, res->size, res->sha256, res->failed);
  if (x) {
    if (res->failed)
      broker_audit_rec(&x->audit, "broker", "recording-failed", rid, "session", sid, "ticket", ticket, "error",
                       tt_strerror(res->err), "size", size, AUDIT_END);
    else
      broker_audit_rec(&x->audit, "broker", "recording", rid, "session", sid, "ticket", ticket, "size", size,
                       "sha256", res->sha256, AUDIT_END);
    broker_store_later(b, &x->req);
  }
  if (res->failed)
    (void)!broker_ticket_event(b, m->row.ticket, "broker", "recording", "%s of %s failed (%s): the file is partial",
                               rid, sid, tt_strerror(res->err));
  else
    (void)!broker_ticket_event(b, m->row.ticket, "broker", "recording", "%s of %s: %s bytes, sha256 %s", rid, sid,
                               size, res->sha256);
  TT_INFO("session", "recording closed", "recording=%s size=%s failed=%d", rid, size, (int)res->failed);
  bool was_linked = m->linked;
  meta_unlink(b, m);
  int64_t session = m->row.session;
  free(m);
  if (was_linked) end_wait_recorded(b, session);
}

/* A recording whose row was written but whose file never was (the relay ended first, or the
 * file could not be made): it is closed as failed, with nothing in it. */
void broker_session_record_abandon(broker_t *b, const store_recording_t *row, int err) {
  rec_end_req_t *x = rec_end_new(row->id, 0, "", true);
  if (!x) return;
  char rid[32], sid[32];
  snprintf(rid, sizeof(rid), "R-%" PRId64, row->id);
  snprintf(sid, sizeof(sid), "S-%" PRId64, row->session);
  broker_audit_rec(&x->audit, "broker", "recording-failed", rid, "session", sid, "error", tt_strerror(err), AUDIT_END);
  broker_store_later(b, &x->req);
}

void broker_session_record_row(const broker_grant_t *g, store_recording_t *row) {
  memset(row, 0, sizeof(*row));
  row->session = g->s.id;
  row->ticket = g->s.ticket;
  snprintf(row->device, sizeof(row->device), "%s", g->s.device);
  snprintf(row->person, sizeof(row->person), "%s", g->s.person);
  row->started_ms = (int64_t)broker_unix_ms();
}

static const broker_rec_cbs_t meta_cbs = {.on_drain = meta_drain, .on_fail = meta_fail, .on_done = meta_done};

int broker_session_record(broker_grant_t *g, relay_t *r, const broker_rec_owner_t *owner,
                          const store_recording_t *row, uint32_t cols, uint32_t rows, const char *term,
                          broker_rec_t **out, void **handle, char *why, size_t whylen) {
  broker_t *b = g->agent->b;
  *out = NULL;
  *handle = NULL;
  rec_meta_t *m = calloc(1, sizeof(*m));
  if (!m) {
    rec_fail_text(why, whylen, TT_ENOMEM);
    broker_session_record_abandon(b, row, TT_ENOMEM);
    return TT_ENOMEM;
  }
  m->b = b;
  m->relay = r;
  m->owner = owner;
  m->row = *row;
  char path[1100], title[3 * STORE_NAME_MAX + 64];
  snprintf(path, sizeof(path), "%s/%s", b->cfg.data_dir, m->row.path);
  snprintf(title, sizeof(title), "S-%" PRId64 " T-%" PRId64 " %s@%s", g->s.id, g->s.ticket, g->s.person, g->s.device);
  broker_rec_header_t h = {.cols = cols, .rows = rows, .unix_s = m->row.started_ms / 1000, .term = term,
                           .title = title};
  int rc = broker_rec_open(&m->rec, b->loop, path, &h, &meta_cbs, m);
  if (rc) {
    rec_fail_text(why, whylen, rc);
    broker_session_record_abandon(b, row, rc);
    free(m);
    return rc;
  }
  meta_link(b, m);
  *out = m->rec;
  *handle = m;
  return 0;
}

void broker_session_record_end(void *handle) {
  rec_meta_t *m = handle;
  m->relay = NULL;
  broker_rec_finish(m->rec); /* may call meta_done (and free m) at once */
}

/* ---- ending many, sweeping ----------------------------------------------------------- */

/* These may run from a store completion during the last drain at stop, after the
 * sessions were freed (broker_sessions_free): then there is nothing left to end. */
void broker_sessions_end_ticket(broker_t *b, int64_t ticket, const char *by, const char *reason) {
  if (!b->sessions) return;
  for (broker_grant_t *g = b->sessions->list, *next; g; g = next) {
    next = g->next;
    if (g->s.ticket == ticket) grant_end(b, g, by, reason, true);
  }
}

void broker_sessions_end_identity(broker_t *b, bool device, const char *name, const char *by, const char *reason) {
  if (!b->sessions) return;
  for (broker_grant_t *g = b->sessions->list, *next; g; g = next) {
    next = g->next;
    if (strcmp(device ? g->s.device : g->s.person, name) == 0) grant_end(b, g, by, reason, true);
  }
}

void broker_sessions_agent_down(broker_conn_t *agent) {
  broker_t *b = agent->b;
  const char *reason = b->stopping ? "the broker is shutting down" : "the device disconnected";
  if (!b->sessions) return;
  for (broker_grant_t *g = b->sessions->list, *next; g; g = next) {
    next = g->next;
    if (g->agent != agent) continue;
    /* A grant whose row is being written ends when the store answers: by then the agent's
     * connection is freed, so it must not be told (or looked at) any more. */
    if (g->storing) g->agent = NULL;
    grant_end(b, g, "broker", reason, false);
  }
}

/* The console that asked went away before the device answered (Ctrl-C on a waiting `tether
 * shell` or `tether session open`): the request is withdrawn. The device takes it off every
 * prompt, so that a later yes there grants nothing that nobody asks for any more, and the
 * records say consent-withdrawn, never consent-given. */
static void consent_withdrawn(broker_t *b, broker_grant_t *g) {
  if (g->storing) { /* its row or grant is being written: withdrawn when that is done */
    g->console = NULL; /* the connection is being freed: nobody to answer then */
    g->withdrawn = true;
    (void)end_deferred(g, g->s.person, "the console went away before the employee answered");
    return;
  }
  char sid[32], ticket[32], why[STORE_TEXT_MAX];
  snprintf(sid, sizeof(sid), "S-%" PRId64, g->s.id);
  snprintf(ticket, sizeof(ticket), "T-%" PRId64, g->s.ticket);
  snprintf(why, sizeof(why), "%.*s withdrew the request", (int)TT_NAME_MAX, g->s.person);
  send_session_end(g, g->s.person, why, true);
  broker_audit(b, g->s.person, "consent-withdrawn", sid, "device", g->s.device, "ticket", ticket, "reason",
               "the console went away before the employee answered", AUDIT_END);
  (void)!broker_ticket_event(b, g->s.ticket, g->s.person, "consent-withdrawn",
                             "%s: %s before the employee answered", sid, why);
  session_end_later(b, g->s.id, g->s.person, why);
  TT_INFO("session", "consent request withdrawn", "session=%s person=%s device=%s", sid, g->s.person, g->s.device);
  grant_unlink(b, g);
  free(g);
}

void broker_sessions_conn_down(broker_conn_t *c) {
  if (!c->b->sessions) return;
  if (c->id.role == TT_ROLE_AGENT) {
    broker_sessions_agent_down(c);
    return;
  }
  for (broker_grant_t *g = c->b->sessions->list, *next; g; g = next) {
    next = g->next;
    if (g->console == c && !g->granted) consent_withdrawn(c->b, g);
  }
}

void broker_sessions_sweep(broker_t *b, uint64_t now) {
  int64_t unow = (int64_t)broker_unix_ms();
  for (broker_grant_t *g = b->sessions->list, *next; g; g = next) {
    next = g->next;
    if (!g->granted && now >= g->deadline) {
      char msg[TT_TEXT_MAX];
      snprintf(msg, sizeof(msg), "no answer from the employee within %u s", TT_CONSENT_DEADLINE_MS / 1000u);
      consent_denied(b, g, "consent-timeout", "consent-timeout", "", msg, true);
    } else if (g->granted && unow >= g->s.expires_ms) {
      grant_end(b, g, "broker", "the session's time ran out", true);
    } else {
      relay_tick_grant(g);
    }
  }
}

/* ---- life ------------------------------------------------------------------------------ */

int broker_sessions_init(broker_t *b) {
  b->sessions = calloc(1, sizeof(*b->sessions));
  if (!b->sessions) return TT_ENOMEM;
  char dir[600];
  snprintf(dir, sizeof(dir), "%s/recordings", b->cfg.data_dir);
  if (mkdir(dir, 0700) && errno != EEXIST) {
    int rc = -errno;
    TT_ERROR("session", "recordings directory not made", "dir=%s err=%s", dir, tt_strerror(rc));
    return rc;
  }
  uint32_t stale = 0;
  int rc = store_session_end_all(b->store, (int64_t)broker_unix_ms(), &stale);
  if (rc) {
    TT_ERROR("session", "sessions of the last run not ended", "err=%s", tt_errname(rc));
    return rc;
  }
  if (stale) TT_INFO("session", "sessions of the last run ended", "count=%u", stale);
  return 0;
}

void broker_sessions_free(broker_t *b) {
  if (!b->sessions) return;
  for (broker_grant_t *g = b->sessions->list, *next; g; g = next) {
    next = g->next;
    if (g->storing) g->storing->g = NULL; /* its completion finds nothing to do */
    free(g);
  }
  /* Entries still waiting for recordings are written now, naming what is complete. */
  for (end_wait_t *w = b->sessions->ends, *next; w; w = next) {
    next = w->next;
    audit_end(b, w->session, w->ticket, w->device, w->person, w->by, w->reason);
    free(w);
  }
  for (rec_meta_t *m = b->sessions->metas; m; m = m->next) m->linked = false;
  free(b->sessions);
  b->sessions = NULL;
}
