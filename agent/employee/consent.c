/* Consent on the device: the local socket the employee's prompt program watches, the
 * prompts the broker's consent requests become, the device policy when no one is there to
 * ask, and the sessions granted here (shell.c serves channels only inside one of them). */
#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include "agent.h"
#include "tt/log.h"
#include "tt/msg.h"

/* A client that stops reading is closed once this much waits for it: a prompt window
 * never needs more than a few lines. */
#define LOCAL_OUT_MAX (64u * 1024u)
/* Names in consent.users. */
#define USERS_MAX 32u
/* A session end we tell the broker about waits this long for its answer. */
#define END_REQ_TIMEOUT_MS 10000u

typedef struct local_s {
  uv_pipe_t pipe;
  agent_t *a;
  uid_t uid;
  uint64_t serial; /* names the client to answers that come later (help.c) */
  bool watch;
  bool closing;
  size_t len;
  char user[TT_NAME_MAX + 1];
  char line[TT_LOCAL_LINE_MAX + 1];
} local_t;

typedef struct dialog_s dialog_t;

typedef struct {
  uint32_t id;      /* shown to clients; 0 = free */
  uint32_t req_id;  /* the broker's request */
  uint64_t deadline; /* uv_now ms */
  uint64_t session, ticket, duration_ms;
  uint32_t access;
  char technician[TT_NAME_MAX + 1];
  char summary[TT_TEXT_MAX + 1];
  dialog_t *dialog; /* the consent.dialog command running for it, if any */
} prompt_t;

struct dialog_s {
  uv_process_t proc;
  agent_t *a;
  dialog_t *next;  /* every dialog not yet reaped (libuv reaps them: contain.c must not) */
  uint32_t prompt; /* its prompt's id, 0 once that prompt is gone */
};

struct agent_consent_s {
  uv_pipe_t server;
  bool listening, bound; /* bound: the socket file is ours to remove */
  unsigned closing;      /* handles whose close has not completed: free after the last */
  uv_timer_t timer; /* the earliest prompt or session deadline */
  local_t *clients[TT_LOCAL_CLIENTS_MAX];
  prompt_t prompts[AGENT_PROMPTS_MAX];
  uint32_t next_prompt;
  uint64_t next_serial;
  dialog_t *dialogs;
  agent_session_t sessions[AGENT_SESSIONS_MAX];
  uid_t users[USERS_MAX];
  size_t nusers;
};

static void consent_arm(agent_t *a);

/* ---- helpers ------------------------------------------------------------------------------ */

static void user_name(uid_t uid, char *out, size_t cap) {
  struct passwd pw, *r = NULL;
  char buf[4096];
  if (getpwuid_r(uid, &pw, buf, sizeof(buf), &r) == 0 && r && strlen(r->pw_name) < cap)
    snprintf(out, cap, "%s", r->pw_name);
  else snprintf(out, cap, "uid%u", (unsigned)uid);
}

/* ---- sessions --------------------------------------------------------------------------- */

static agent_session_t *session_slot(agent_t *a, uint64_t id) {
  for (size_t i = 0; i < AGENT_SESSIONS_MAX; i++)
    if (a->consent->sessions[i].id == id) return &a->consent->sessions[i];
  return NULL;
}

const agent_session_t *agent_session_find(agent_t *a, uint64_t id) {
  if (!a->consent || id == 0) return NULL;
  const agent_session_t *s = session_slot(a, id);
  return s && s->deadline > uv_now(a->loop) ? s : NULL;
}

static size_t sessions_live(agent_t *a) {
  size_t n = 0;
  for (size_t i = 0; i < AGENT_SESSIONS_MAX; i++) n += a->consent->sessions[i].id != 0;
  return n;
}

/* ---- local clients: output ------------------------------------------------------------ */

static void client_close_cb(uv_handle_t *h) { free(h->data); }

static void client_drop(local_t *cl) {
  if (cl->closing) return;
  cl->closing = true;
  agent_consent_t *c = cl->a->consent;
  for (size_t i = 0; i < TT_LOCAL_CLIENTS_MAX; i++)
    if (c->clients[i] == cl) c->clients[i] = NULL;
  uv_close((uv_handle_t *)&cl->pipe, client_close_cb);
}

typedef struct {
  uv_write_t req;
  char text[];
} out_t;

static void write_cb(uv_write_t *w, int status) {
  (void)status; /* a failed write shows up as a read error or EOF too */
  free(w->data);
}

/* One line to one client; a client that lets LOCAL_OUT_MAX pile up is closed. */
TT_PRINTF(2, 3) static void client_say(local_t *cl, const char *fmt, ...) {
  if (cl->closing) return;
  char line[TT_LOCAL_LINE_MAX * 2];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if ((size_t)n > sizeof(line) - 2) n = (int)sizeof(line) - 2;
  line[n++] = '\n';
  if (uv_stream_get_write_queue_size((uv_stream_t *)&cl->pipe) + (size_t)n > LOCAL_OUT_MAX) {
    TT_WARN("consent", "local client not reading: closed", "user=%s", cl->user);
    client_drop(cl);
    return;
  }
  out_t *o = malloc(sizeof(*o) + (size_t)n);
  if (!o) {
    client_drop(cl);
    return;
  }
  memcpy(o->text, line, (size_t)n);
  o->req.data = o;
  uv_buf_t b = uv_buf_init(o->text, (unsigned)n);
  if (uv_write(&o->req, (uv_stream_t *)&cl->pipe, &b, 1, write_cb)) {
    free(o);
    client_drop(cl);
  }
}

static local_t *client_by_serial(agent_t *a, uint64_t serial) {
  if (!a->consent || !serial) return NULL;
  for (size_t i = 0; i < TT_LOCAL_CLIENTS_MAX; i++) {
    local_t *cl = a->consent->clients[i];
    if (cl && cl->serial == serial && !cl->closing) return cl;
  }
  return NULL;
}

void agent_local_reply(agent_t *a, uint64_t client, const char *fmt, ...) {
  local_t *cl = client_by_serial(a, client);
  if (!cl) return; /* it went away: nobody to tell */
  char line[TT_LOCAL_LINE_MAX * 2];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof(line), fmt, ap);
  va_end(ap);
  client_say(cl, "%s", line);
}

void agent_local_tell_user(agent_t *a, const char *user, const char *fmt, ...) {
  if (!a->consent) return;
  char line[TT_LOCAL_LINE_MAX * 2];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof(line), fmt, ap);
  va_end(ap);
  for (size_t i = 0; i < TT_LOCAL_CLIENTS_MAX; i++) {
    local_t *cl = a->consent->clients[i];
    if (cl && cl->watch && strcmp(cl->user, user) == 0) client_say(cl, "%s", line);
  }
}

static void prompt_say(agent_t *a, local_t *cl, const prompt_t *p) {
  char acc[32];
  uint64_t now = uv_now(a->loop);
  uint64_t left = p->deadline > now ? (p->deadline - now + 999) / 1000 : 0;
  client_say(cl, "PROMPT %u\t%s\tT-%llu\t%s\t%llu\t%llu\t%s", p->id, p->technician,
             (unsigned long long)p->ticket, tt_access_words(p->access, acc, sizeof(acc)),
             (unsigned long long)(p->duration_ms / 1000), (unsigned long long)left, p->summary);
}

static size_t watchers(agent_t *a) {
  size_t n = 0;
  for (size_t i = 0; i < TT_LOCAL_CLIENTS_MAX; i++) {
    local_t *cl = a->consent->clients[i];
    n += cl && cl->watch && !cl->closing;
  }
  return n;
}

TT_PRINTF(3, 4) static void tell_watchers(agent_t *a, local_t *except, const char *fmt, ...) {
  char line[TT_LOCAL_LINE_MAX * 2];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof(line), fmt, ap);
  va_end(ap);
  for (size_t i = 0; i < TT_LOCAL_CLIENTS_MAX; i++) {
    local_t *cl = a->consent->clients[i];
    if (cl && cl->watch && cl != except) client_say(cl, "%s", line);
  }
}

void agent_consent_notice(agent_t *a, const char *fmt, ...) {
  if (!a->consent) return;
  char line[TT_LOCAL_LINE_MAX * 2];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof(line), fmt, ap);
  va_end(ap);
  tell_watchers(a, NULL, "%s", line);
}

/* ---- answering the broker --------------------------------------------------------------- */

static void respond(agent_t *a, Tether__Response *r) {
  if (!a->link || !a->welcomed) return; /* the broker fails its side when the link goes */
  if (tt_link_send(a->link, TT_K_RESPONSE, &r->base))
    TT_WARN("consent", "cannot answer the broker", "id=%u", r->id);
}

static void respond_error(agent_t *a, uint32_t id, int code, const char *msg) {
  Tether__Response r = TETHER__RESPONSE__INIT;
  Tether__Error e = TETHER__ERROR__INIT;
  e.code = tt_err_to_wire(code);
  e.message = tt_text(msg);
  r.id = id;
  r.error = &e;
  respond(a, &r);
}

static const char *decision_name(Tether__ConsentDecision d) {
  switch (d) {
  case TETHER__CONSENT_DECISION__CONSENT_GRANTED: return "granted";
  case TETHER__CONSENT_DECISION__CONSENT_REFUSED: return "refused";
  case TETHER__CONSENT_DECISION__CONSENT_TIMEOUT: return "timeout";
  case TETHER__CONSENT_DECISION__CONSENT_UNATTENDED: return "unattended";
  case TETHER__CONSENT_DECISION__CONSENT_NOBODY: return "nobody";
  default: return "?";
  }
}

/* Answer a consent request; a grant makes the session live here. */
static void decide(agent_t *a, uint32_t req_id, const prompt_t *p, Tether__ConsentDecision d, const char *by) {
  bool grant = d == TETHER__CONSENT_DECISION__CONSENT_GRANTED || d == TETHER__CONSENT_DECISION__CONSENT_UNATTENDED;
  if (grant) {
    agent_session_t *s = session_slot(a, p->session);
    if (!s) s = session_slot(a, 0);
    if (!s) {
      respond_error(a, req_id, TT_EBUSY, "too many sessions live on this device");
      return;
    }
    /* A little past the broker's expiry (it counts from when our answer arrives): the
     * broker ends the session on time; this only bounds a broker that never says so. */
    *s = (agent_session_t){.id = p->session, .ticket = p->ticket, .access = p->access,
                           .deadline = uv_now(a->loop) + p->duration_ms + 5000,
                           .expires_ms = agent_unix_ms() + (int64_t)p->duration_ms,
                           .unattended = d == TETHER__CONSENT_DECISION__CONSENT_UNATTENDED};
    snprintf(s->technician, sizeof(s->technician), "%s", p->technician);
    snprintf(s->summary, sizeof(s->summary), "%s", p->summary);
    consent_arm(a);
    /* The person at the device sees who is now connected, unattended ones included. */
    char acc[32];
    tell_watchers(a, NULL, "STARTED S-%llu\t%s\tT-%llu\t%s\t%lld\t%s\t%s", (unsigned long long)s->id,
                  s->technician, (unsigned long long)s->ticket, tt_access_words(s->access, acc, sizeof(acc)),
                  (long long)(s->expires_ms / 1000), s->unattended ? "unattended" : "attended", s->summary);
  }
  TT_INFO("consent", "answered", "session=S-%llu ticket=T-%llu technician=%s decision=%s by=%s",
          (unsigned long long)p->session, (unsigned long long)p->ticket, p->technician, decision_name(d),
          by ? by : "");
  Tether__Response r = TETHER__RESPONSE__INIT;
  Tether__ConsentResponse c = TETHER__CONSENT_RESPONSE__INIT;
  c.decision = d;
  c.by = tt_text(by ? by : "");
  r.id = req_id;
  r.body_case = TETHER__RESPONSE__BODY_CONSENT;
  r.consent = &c;
  respond(a, &r);
}

/* ---- prompts ---------------------------------------------------------------------------- */

bool agent_consent_owns_pid(agent_t *a, pid_t pid) {
  for (const dialog_t *d = a->consent ? a->consent->dialogs : NULL; d && pid > 0; d = d->next)
    if (d->proc.pid == pid) return true;
  return false;
}

static prompt_t *prompt_find(agent_t *a, uint32_t id) {
  for (size_t i = 0; i < AGENT_PROMPTS_MAX && id; i++)
    if (a->consent->prompts[i].id == id) return &a->consent->prompts[i];
  return NULL;
}

static void dialog_close_cb(uv_handle_t *h) { free(h->data); }

static void dialog_kill(dialog_t *d) {
  d->prompt = 0;
  /* Its own process group (detached): the shell and whatever window it started. */
  if (d->proc.pid > 0) kill(-d->proc.pid, SIGKILL);
}

/* The prompt is over (answered, timed out, link gone): tell watchers, stop its dialog. */
static void prompt_finish(agent_t *a, prompt_t *p, local_t *except, const char *why) {
  tell_watchers(a, except, "CANCEL %u\t%s", p->id, why);
  if (p->dialog) dialog_kill(p->dialog);
  memset(p, 0, sizeof(*p));
  consent_arm(a);
}

static void answer(agent_t *a, prompt_t *p, local_t *from, bool yes, const char *by) {
  prompt_t copy = *p;
  char why[TT_NAME_MAX + 32];
  snprintf(why, sizeof(why), "answered by %s", by);
  prompt_finish(a, p, from, why);
  decide(a, copy.req_id, &copy,
         yes ? TETHER__CONSENT_DECISION__CONSENT_GRANTED : TETHER__CONSENT_DECISION__CONSENT_REFUSED, by);
}

static void dialog_exit_cb(uv_process_t *proc, int64_t status, int sig) {
  dialog_t *d = proc->data;
  agent_t *a = d->a;
  for (dialog_t **pd = a->consent ? &a->consent->dialogs : NULL; pd && *pd; pd = &(*pd)->next)
    if (*pd == d) {
      *pd = d->next;
      break;
    }
  prompt_t *p = d->prompt && a->consent ? prompt_find(a, d->prompt) : NULL;
  if (p) {
    p->dialog = NULL;
    /* The dialog command answered, not a person we know of: the record says so, and as
     * whom it ran (the agent's user), never the shell user's name. */
    char by[TT_NAME_MAX + 1], who[TT_NAME_MAX + 1];
    user_name(getuid(), who, sizeof(who));
    snprintf(by, sizeof(by), "consent.dialog:%.*s", (int)(sizeof(by) - 16), who);
    TT_INFO("consent", "dialog answered", "prompt=%u status=%lld signal=%d", p->id, (long long)status, sig);
    answer(a, p, NULL, status == 0 && sig == 0, by);
  }
  uv_close((uv_handle_t *)proc, dialog_close_cb);
}

/* Run consent.dialog for p: /bin/sh -c, the request in its environment, exit 0 = yes. */
static void dialog_start(agent_t *a, prompt_t *p) {
  dialog_t *d = calloc(1, sizeof(*d));
  if (!d) return;
  char env_s[7][AGENT_PATH_MAX + 64];
  char acc[32];
  snprintf(env_s[0], sizeof(env_s[0]), "TETHER_TECHNICIAN=%s", p->technician);
  snprintf(env_s[1], sizeof(env_s[1]), "TETHER_TICKET=T-%llu", (unsigned long long)p->ticket);
  snprintf(env_s[2], sizeof(env_s[2]), "TETHER_SUMMARY=%s", p->summary);
  snprintf(env_s[3], sizeof(env_s[3]), "TETHER_ACCESS=%s", tt_access_words(p->access, acc, sizeof(acc)));
  snprintf(env_s[4], sizeof(env_s[4]), "TETHER_DURATION=%llum", (unsigned long long)((p->duration_ms + 59999) / 60000));
  snprintf(env_s[5], sizeof(env_s[5]), "TETHER_SESSION=S-%llu", (unsigned long long)p->session);
  snprintf(env_s[6], sizeof(env_s[6]), "PATH=%s", a->cfg.shell_path);
  char *env[] = {env_s[0], env_s[1], env_s[2], env_s[3], env_s[4], env_s[5], env_s[6], NULL};
  char *argv[] = {"/bin/sh", "-c", a->cfg.consent_dialog, NULL};
  uv_stdio_container_t io[3] = {{.flags = UV_IGNORE}, {.flags = UV_INHERIT_FD, .data.fd = 2},
                                {.flags = UV_INHERIT_FD, .data.fd = 2}};
  uv_process_options_t o = {.exit_cb = dialog_exit_cb, .file = argv[0], .args = argv, .env = env,
                            .flags = UV_PROCESS_DETACHED, .stdio_count = 3, .stdio = io};
  d->a = a;
  d->prompt = p->id;
  d->proc.data = d;
  int rc = uv_spawn(a->loop, &d->proc, &o);
  if (rc) {
    TT_WARN("consent", "cannot run consent.dialog", "err=%s", tt_strerror(rc));
    uv_close((uv_handle_t *)&d->proc, dialog_close_cb);
    return;
  }
  p->dialog = d;
  d->next = a->consent->dialogs;
  a->consent->dialogs = d;
}

/* ---- the deadline timer: prompts and sessions ----------------------------------------- */

static void session_forget(agent_t *a, agent_session_t *s, const char *by, const char *why) {
  uint64_t id = s->id;
  memset(s, 0, sizeof(*s));
  agent_shell_end_session(a, id, why);
  agent_files_end_session(a, id, why);
  tell_watchers(a, NULL, "ENDED S-%llu\t%s\t%s", (unsigned long long)id, by, why);
  TT_INFO("consent", "session ended", "session=S-%llu by=%s reason=\"%s\"", (unsigned long long)id, by, why);
}

static void timer_cb(uv_timer_t *t) {
  agent_t *a = t->data;
  agent_consent_t *c = a->consent;
  uint64_t now = uv_now(a->loop);
  for (size_t i = 0; i < AGENT_PROMPTS_MAX; i++) {
    prompt_t *p = &c->prompts[i];
    if (!p->id || p->deadline > now) continue;
    prompt_t copy = *p;
    prompt_finish(a, p, NULL, "no answer in time");
    decide(a, copy.req_id, &copy, TETHER__CONSENT_DECISION__CONSENT_TIMEOUT, NULL);
  }
  for (size_t i = 0; i < AGENT_SESSIONS_MAX; i++) {
    agent_session_t *s = &c->sessions[i];
    if (s->id && s->deadline <= now) session_forget(a, s, "agent", "the session's time ran out");
  }
  consent_arm(a);
}

static void consent_arm(agent_t *a) {
  agent_consent_t *c = a->consent;
  uint64_t first = UINT64_MAX;
  for (size_t i = 0; i < AGENT_PROMPTS_MAX; i++)
    if (c->prompts[i].id && c->prompts[i].deadline < first) first = c->prompts[i].deadline;
  for (size_t i = 0; i < AGENT_SESSIONS_MAX; i++)
    if (c->sessions[i].id && c->sessions[i].deadline < first) first = c->sessions[i].deadline;
  if (first == UINT64_MAX) {
    uv_timer_stop(&c->timer);
    return;
  }
  uint64_t now = uv_now(a->loop);
  uv_timer_start(&c->timer, timer_cb, first > now ? first - now : 0, 0);
}

/* ---- broker requests -------------------------------------------------------------------- */

void agent_consent_request(agent_t *a, const Tether__Request *q) {
  const Tether__ConsentRequest *cr = q->consent;
  agent_consent_t *c = a->consent;
  prompt_t p = {0};
  uint32_t known = TETHER__ACCESS__ACCESS_SHELL | TETHER__ACCESS__ACCESS_FILES | TETHER__ACCESS__ACCESS_DIAG;
  if (!cr->session || !cr->ticket || !cr->access || (cr->access & ~known) || !cr->duration_ms ||
      cr->duration_ms > TT_SESSION_DURATION_MAX_MS ||
      tt_text_copy(p.technician, sizeof(p.technician), cr->technician) ||
      tt_text_copy(p.summary, sizeof(p.summary), cr->summary) || !p.technician[0]) {
    respond_error(a, q->id, TT_EINVAL, "malformed consent request");
    return;
  }
  p.req_id = q->id;
  p.session = cr->session;
  p.ticket = cr->ticket;
  p.access = cr->access;
  p.duration_ms = cr->duration_ms;
  uint64_t timeout = (uint64_t)a->cfg.consent_timeout_ms;
  if (cr->timeout_ms && cr->timeout_ms < timeout) timeout = cr->timeout_ms;
  if (timeout > TT_CONSENT_TIMEOUT_MAX_MS) timeout = TT_CONSENT_TIMEOUT_MAX_MS;
  p.deadline = uv_now(a->loop) + timeout;
  TT_INFO("consent", "asked", "session=S-%llu ticket=T-%llu technician=%s access=%u",
          (unsigned long long)p.session, (unsigned long long)p.ticket, p.technician, p.access);

  bool someone = (c && watchers(a) > 0) || a->cfg.consent_dialog[0];
  if (!someone && a->cfg.consent_policy == AGENT_POLICY_UNATTENDED) {
    decide(a, q->id, &p, TETHER__CONSENT_DECISION__CONSENT_UNATTENDED, NULL);
    return;
  }
  if (!someone && a->cfg.consent_policy == AGENT_POLICY_DENY) {
    decide(a, q->id, &p, TETHER__CONSENT_DECISION__CONSENT_NOBODY, NULL);
    return;
  }
  /* Someone to ask, or policy ask: a watcher that connects in time still gets it. */
  prompt_t *slot = NULL;
  for (size_t i = 0; c && i < AGENT_PROMPTS_MAX && !slot; i++)
    if (!c->prompts[i].id) slot = &c->prompts[i];
  if (!slot || sessions_live(a) >= AGENT_SESSIONS_MAX) {
    respond_error(a, q->id, TT_EBUSY, "too many consent prompts or sessions on this device");
    return;
  }
  if (++c->next_prompt == 0) c->next_prompt = 1;
  p.id = c->next_prompt;
  *slot = p;
  for (size_t i = 0; i < TT_LOCAL_CLIENTS_MAX; i++) {
    local_t *cl = c->clients[i];
    if (cl && cl->watch) prompt_say(a, cl, slot);
  }
  if (a->cfg.consent_dialog[0]) dialog_start(a, slot);
  consent_arm(a);
}

void agent_session_end_request(agent_t *a, const Tether__Request *q) {
  const Tether__SessionEndRequest *e = q->session_end;
  char reason[TT_TEXT_MAX + 1], by[TT_NAME_MAX + 1];
  if (tt_text_copy(reason, sizeof(reason), e->reason) || !reason[0]) snprintf(reason, sizeof(reason), "ended");
  if (tt_text_copy(by, sizeof(by), e->by) || !by[0]) snprintf(by, sizeof(by), "broker");
  agent_session_t *s = e->id && a->consent ? session_slot(a, e->id) : NULL;
  /* Ended before the employee answered (the technician gave up, the ticket closed): the
   * question is withdrawn, so a late yes cannot start a session the broker has ended. */
  for (size_t i = 0; e->id && a->consent && i < AGENT_PROMPTS_MAX; i++) {
    prompt_t *p = &a->consent->prompts[i];
    if (!p->id || p->session != e->id) continue;
    char why[TT_NAME_MAX + 32];
    if (e->withdrawn) {
      snprintf(why, sizeof(why), "%s withdrew the request", p->technician);
      TT_INFO("consent", "request withdrawn", "session=S-%llu ticket=T-%llu technician=%s",
              (unsigned long long)p->session, (unsigned long long)p->ticket, p->technician);
    }
    prompt_finish(a, p, NULL, e->withdrawn ? why : reason);
  }
  if (s) session_forget(a, s, by, reason);
  else { /* no channel outlives its session */
    agent_shell_end_session(a, e->id, reason);
    agent_files_end_session(a, e->id, reason);
  }
  if (a->consent) consent_arm(a);
  Tether__Response r = TETHER__RESPONSE__INIT;
  Tether__SessionEndResponse se = TETHER__SESSION_END_RESPONSE__INIT;
  r.id = q->id;
  r.body_case = TETHER__RESPONSE__BODY_SESSION_END;
  r.session_end = &se;
  respond(a, &r);
}

void agent_consent_link_down(agent_t *a) {
  agent_consent_t *c = a->consent;
  if (!c) return;
  for (size_t i = 0; i < AGENT_PROMPTS_MAX; i++)
    if (c->prompts[i].id) prompt_finish(a, &c->prompts[i], NULL, "the connection to the broker was lost");
  for (size_t i = 0; i < AGENT_SESSIONS_MAX; i++)
    if (c->sessions[i].id)
      session_forget(a, &c->sessions[i], "agent", "the connection to the broker was lost");
  consent_arm(a);
}

/* ---- local clients: commands ------------------------------------------------------------ */

static void end_reply_cb(void *data, const Tether__Response *r, int err) {
  uint64_t id = (uint64_t)(uintptr_t)data;
  if (err || (r && r->error))
    TT_WARN("consent", "broker did not confirm the session end", "session=S-%llu err=%s",
            (unsigned long long)id, err ? tt_errname(err) : "refused");
}

static void cmd_end(local_t *cl, const char *arg) {
  agent_t *a = cl->a;
  uint64_t id = agent_parse_id(arg, 'S');
  agent_session_t *s = id ? session_slot(a, id) : NULL;
  if (!s) {
    client_say(cl, "ERR no such session: %s", arg);
    return;
  }
  char why[64];
  snprintf(why, sizeof(why), "session S-%llu was ended by the employee", (unsigned long long)id);
  session_forget(a, s, cl->user, why);
  consent_arm(a);
  if (a->link && a->welcomed) {
    Tether__Request q = TETHER__REQUEST__INIT;
    Tether__SessionEndRequest e = TETHER__SESSION_END_REQUEST__INIT;
    e.id = id;
    e.by = tt_text(cl->user);
    e.reason = tt_text("ended by the employee");
    q.body_case = TETHER__REQUEST__BODY_SESSION_END;
    q.session_end = &e;
    int rc = agent_reqs_send(&a->reqs, a->link, &q, END_REQ_TIMEOUT_MS, end_reply_cb, (void *)(uintptr_t)id);
    if (rc) TT_WARN("consent", "cannot tell the broker of a session end", "err=%s", tt_errname(rc));
  }
  client_say(cl, "OK");
}

static void cmd_sessions(local_t *cl) {
  agent_t *a = cl->a;
  char acc[32];
  for (size_t i = 0; i < AGENT_SESSIONS_MAX; i++) {
    const agent_session_t *s = &a->consent->sessions[i];
    if (!s->id) continue;
    client_say(cl, "SESSION S-%llu\t%s\tT-%llu\t%s\t%lld\t%s\t%s", (unsigned long long)s->id, s->technician,
               (unsigned long long)s->ticket, tt_access_words(s->access, acc, sizeof(acc)),
               (long long)(s->expires_ms / 1000), s->unattended ? "unattended" : "attended", s->summary);
  }
  client_say(cl, "OK");
}

static void cmd_answer(local_t *cl, const char *arg) {
  char idbuf[16], word[8];
  if (sscanf(arg, "%15s %7s", idbuf, word) != 2 || (strcmp(word, "yes") && strcmp(word, "no"))) {
    client_say(cl, "ERR usage: ANSWER <prompt-id> yes|no");
    return;
  }
  /* Prompt ids are 32-bit: a bigger number must not match one modulo 2^32. */
  uint64_t pid = agent_parse_id(idbuf, 'P');
  prompt_t *p = pid <= UINT32_MAX ? prompt_find(cl->a, (uint32_t)pid) : NULL;
  if (!p) {
    client_say(cl, "ERR no such prompt (answered elsewhere, withdrawn or timed out): %s", idbuf);
    return;
  }
  client_say(cl, "OK");
  answer(cl->a, p, cl, strcmp(word, "yes") == 0, cl->user);
}

static void client_line(local_t *cl, char *line) {
  char *arg = strchr(line, ' ');
  if (arg) *arg++ = '\0';
  else arg = "";
  if (strcmp(line, "WATCH") == 0 && !arg[0]) {
    cl->watch = true;
    client_say(cl, "OK");
    for (size_t i = 0; i < AGENT_PROMPTS_MAX; i++)
      if (cl->a->consent->prompts[i].id) prompt_say(cl->a, cl, &cl->a->consent->prompts[i]);
  } else if (strcmp(line, "SESSIONS") == 0 && !arg[0]) {
    cmd_sessions(cl);
  } else if (strcmp(line, "END") == 0) {
    cmd_end(cl, arg);
  } else if (strcmp(line, "ANSWER") == 0) {
    cmd_answer(cl, arg);
  } else if (!agent_help_local(cl->a, cl->serial, cl->user, line, arg)) {
    client_say(cl, "ERR unknown command (WATCH, SESSIONS, END S-n, ANSWER id yes|no, ASK text, TICKETS, "
                   "COMMENT T-n text)");
  }
}

static void client_alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *b) {
  local_t *cl = h->data;
  (void)hint;
  *b = uv_buf_init(cl->line + cl->len, (unsigned)(TT_LOCAL_LINE_MAX - cl->len));
}

static void client_read_cb(uv_stream_t *st, ssize_t n, const uv_buf_t *b) {
  local_t *cl = st->data;
  (void)b;
  if (n < 0) {
    client_drop(cl);
    return;
  }
  cl->len += (size_t)n;
  char *start = cl->line;
  char *nl;
  while (!cl->closing && (nl = memchr(start, '\n', cl->len - (size_t)(start - cl->line)))) {
    if (memchr(start, '\0', (size_t)(nl - start))) {
      client_say(cl, "ERR NUL in line");
      client_drop(cl);
      return;
    }
    *nl = '\0';
    if (nl > start && nl[-1] == '\r') nl[-1] = '\0';
    client_line(cl, start);
    start = nl + 1;
  }
  if (cl->closing) return;
  size_t rest = cl->len - (size_t)(start - cl->line);
  memmove(cl->line, start, rest);
  cl->len = rest;
  if (cl->len >= TT_LOCAL_LINE_MAX) {
    client_say(cl, "ERR line too long (at most %u bytes)", (unsigned)TT_LOCAL_LINE_MAX);
    client_drop(cl);
  }
}

static bool uid_allowed(agent_consent_t *c, uid_t uid) {
  if (uid == 0 || uid == getuid()) return true;
  for (size_t i = 0; i < c->nusers; i++)
    if (c->users[i] == uid) return true;
  return false;
}

static void on_connection(uv_stream_t *server, int status) {
  agent_t *a = server->data;
  agent_consent_t *c = a->consent;
  if (status) return;
  local_t *cl = calloc(1, sizeof(*cl));
  if (!cl) return;
  cl->a = a;
  uv_pipe_init(a->loop, &cl->pipe, 0);
  cl->pipe.data = cl;
  if (uv_accept(server, (uv_stream_t *)&cl->pipe)) {
    uv_close((uv_handle_t *)&cl->pipe, client_close_cb);
    return;
  }
  uv_os_fd_t fd;
  struct ucred cred;
  socklen_t len = sizeof(cred);
  bool known = uv_fileno((uv_handle_t *)&cl->pipe, &fd) == 0 &&
               getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0;
  size_t slot = TT_LOCAL_CLIENTS_MAX;
  for (size_t i = 0; i < TT_LOCAL_CLIENTS_MAX && slot == TT_LOCAL_CLIENTS_MAX; i++)
    if (!c->clients[i]) slot = i;
  /* A shell or command a technician started runs as shell.user, which may be the employee's
   * own account: such a process, however it detached, must never answer for the employee
   * (contain.c knows them all: in a session's cgroup, or below the agent). */
  uint64_t session = 0;
  bool ours = known && agent_contain_peer(a, cred.pid, &session);
  if (slot == TT_LOCAL_CLIENTS_MAX || !known || !uid_allowed(c, cred.uid) || ours) {
    if (known) TT_WARN("consent", "local client refused", "uid=%u pid=%d full=%d session_process=%d session=S-%llu",
                       (unsigned)cred.uid, (int)cred.pid, slot == TT_LOCAL_CLIENTS_MAX, ours,
                       (unsigned long long)session);
    if (slot == TT_LOCAL_CLIENTS_MAX) client_say(cl, "ERR too many clients");
    else if (ours && session)
      client_say(cl, "ERR this process was started in a support session (S-%llu) and cannot answer for the employee",
                 (unsigned long long)session);
    else if (ours)
      client_say(cl, "ERR this process was started by the agent (a support session or a consent dialog) and "
                     "cannot answer for the employee");
    else client_say(cl, "ERR not allowed");
    if (cl->closing) return; /* the line could not be queued: client_say dropped it already */
    cl->closing = true;
    uv_close((uv_handle_t *)&cl->pipe, client_close_cb); /* the queued line still goes out */
    return;
  }
  c->clients[slot] = cl;
  cl->serial = ++c->next_serial;
  cl->uid = cred.uid;
  user_name(cred.uid, cl->user, sizeof(cl->user));
  uv_read_start((uv_stream_t *)&cl->pipe, client_alloc_cb, client_read_cb);
}

/* ---- set up and tear down --------------------------------------------------------------- */

static void users_load(agent_t *a) {
  agent_consent_t *c = a->consent;
  const char *list = a->cfg.consent_users[0] ? a->cfg.consent_users : a->cfg.shell_user;
  char buf[AGENT_USERS_MAX + 1];
  snprintf(buf, sizeof(buf), "%s", list);
  char *save = NULL;
  for (char *n = strtok_r(buf, ", ", &save); n; n = strtok_r(NULL, ", ", &save)) {
    struct passwd pw, *r = NULL;
    char pb[4096];
    if (getpwnam_r(n, &pw, pb, sizeof(pb), &r) != 0 || !r) {
      TT_WARN("consent", "consent.users: no such user", "user=%s", n);
      continue;
    }
    if (c->nusers < USERS_MAX) c->users[c->nusers++] = r->pw_uid;
  }
}

/* Someone answers at path (another agent): connect is immediate on a unix socket. */
static bool socket_live(const char *path) {
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  if (strlen(path) >= sizeof(sa.sun_path)) return false;
  memcpy(sa.sun_path, path, strlen(path));
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  bool live = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
  close(fd);
  return live;
}

static int socket_listen(agent_t *a) {
  agent_consent_t *c = a->consent;
  const char *path = a->cfg.consent_socket;
  char dir[AGENT_PATH_MAX];
  snprintf(dir, sizeof(dir), "%s", path);
  char *slash = strrchr(dir, '/');
  if (slash && slash != dir) {
    *slash = '\0';
    if (mkdir(dir, 0755) && errno != EEXIST) return -errno;
  }
  /* A socket left by an agent that died; never anything else, nor a live agent's. */
  struct stat st;
  if (lstat(path, &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) return TT_EINVAL;
    if (socket_live(path)) return TT_EBUSY;
    unlink(path);
  }
  int rc = uv_pipe_init(a->loop, &c->server, 0);
  if (rc) return rc;
  c->server.data = a;
  c->listening = true;
  if ((rc = uv_pipe_bind(&c->server, path))) return rc;
  c->bound = true;
  if ((rc = uv_listen((uv_stream_t *)&c->server, 16, on_connection))) return rc;
  /* Everyone may connect; SO_PEERCRED decides who is heard. */
  if (chmod(path, 0666)) return -errno;
  return 0;
}

void agent_consent_init(agent_t *a) {
  a->consent = calloc(1, sizeof(*a->consent));
  if (!a->consent) abort(); /* at start-up, before anything else */
  uv_timer_init(a->loop, &a->consent->timer);
  a->consent->timer.data = a;
  users_load(a);
  int rc = socket_listen(a);
  if (rc)
    TT_ERROR("consent", "cannot open the consent socket: no one can be asked on this device",
             "path=%s err=%s", a->cfg.consent_socket,
             rc == TT_EBUSY ? "another agent listens there" : rc == TT_EINVAL ? "not a socket" : tt_strerror(rc));
  else TT_INFO("consent", "listening", "path=%s policy=%d", a->cfg.consent_socket, a->cfg.consent_policy);
}

/* libuv finishes closes in its own order: the struct that holds the handles goes only
 * after the last of them. */
static void consent_free_cb(uv_handle_t *h) {
  agent_t *a = h->data;
  if (--a->consent->closing > 0) return;
  free(a->consent);
  a->consent = NULL;
}

void agent_consent_close(agent_t *a) {
  agent_consent_t *c = a->consent;
  if (!c) return;
  agent_consent_link_down(a);
  for (size_t i = 0; i < TT_LOCAL_CLIENTS_MAX; i++)
    if (c->clients[i]) client_drop(c->clients[i]);
  c->closing = 1;
  if (c->listening) {
    c->closing++;
    uv_close((uv_handle_t *)&c->server, consent_free_cb);
    if (c->bound) unlink(a->cfg.consent_socket);
  }
  uv_close((uv_handle_t *)&c->timer, consent_free_cb);
}
