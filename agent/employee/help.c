/* The employee asks for help from their own machine (`tether-agent ask | tickets | comment`,
 * through the consent socket, so its rules on who may connect apply). An ask takes a
 * diagnostics snapshot, is kept on disk before anything is sent (a machine that is offline,
 * or an agent that restarts, still sends it when it connects) and goes to the broker with a
 * nonce made when the person asked, so a resend after a lost answer is the same request.
 * Requests go one at a time, in the order asked. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>
#include <openssl/rand.h>
#include "agent.h"
#include "inv.h"
#include "tt/hex.h"
#include "tt/log.h"
#include "tt/msg.h"

#define MOD "help"
#define HELP_DIR "help-queue"
#define HELP_SUFFIX ".ask"
/* The person waits this long for the broker's answer; then the request stays queued. */
#define HELP_ANSWER_WAIT_MS 30000u
/* A request the broker did not answer is tried again this often while connected. */
#define HELP_RETRY_MS 30000u
/* tickets and comment: the broker answers from its store. */
#define HELP_QUERY_TIMEOUT_MS 15000u
/* A queued file holds the request: the snapshot and a few fields. */
#define HELP_FILE_MAX (TT_HELP_SNAPSHOT_MAX + 4096u)
#define HELP_ZSTD_LEVEL 3

typedef struct ask_s {
  struct ask_s *next;
  agent_t *a;
  uint8_t nonce[TT_HELP_NONCE_LEN];
  char name[2 * TT_HELP_NONCE_LEN + 1]; /* the nonce in hex: the file's name */
  uint64_t client;                      /* the local client waiting for the answer, 0: none */
  char user[TT_NAME_MAX + 1];
  char text[TT_TEXT_MAX + 1];
  int64_t asked_ms;
  uint8_t *z;                           /* the snapshot, zstd; NULL: none */
  size_t zlen;
  uint64_t size;
  char snap_err[INV_ERROR_MAX];
  bool queued;                          /* in h->queue (kept on disk, or not keepable) */
  bool sending;
  /* the snapshot, made on a worker thread */
  uv_work_t work;
  inv_live_t live;
  char path[AGENT_PATH_MAX];            /* where it is kept ("" : the state dir is not usable) */
  int keep_err;                         /* errno of a failed write */
} ask_t;

struct agent_help_s {
  ask_t *queue; /* oldest first */
  size_t n;     /* queued and being made */
  uv_timer_t retry;
  bool closing;
  char dir[AGENT_PATH_MAX]; /* "" : no place to keep requests */
};

static void pump(agent_t *a);

static void ask_free(ask_t *k) {
  free(k->z);
  free(k);
}

static void hex(char *out, const uint8_t *p, size_t n) { tt_hex(out, TT_HEX_CAP(n), p, n); }

/* ---- keeping requests on disk ------------------------------------------------------------ */

static void fill_request(const ask_t *k, Tether__HelpAskRequest *q) {
  tether__help_ask_request__init(q);
  q->nonce.data = (uint8_t *)k->nonce;
  q->nonce.len = sizeof(k->nonce);
  q->user = tt_text(k->user);
  q->text = tt_text(k->text);
  q->asked_ms = (uint64_t)k->asked_ms;
  if (k->z) {
    q->snapshot_zdata.data = k->z;
    q->snapshot_zdata.len = k->zlen;
    q->snapshot_size = k->size;
  } else {
    q->snapshot_error = tt_text(k->snap_err);
  }
}

/* Write, fsync, rename, fsync the directory: a request is either whole on disk or not there.
 * Runs on a worker thread. */
static int keep(ask_t *k) {
  Tether__HelpAskRequest q;
  fill_request(k, &q);
  size_t n = tether__help_ask_request__get_packed_size(&q);
  if (n > HELP_FILE_MAX) return EFBIG;
  uint8_t *buf = malloc(n ? n : 1);
  if (!buf) return ENOMEM;
  tether__help_ask_request__pack(&q, buf);
  char tmp[AGENT_PATH_MAX + 8];
  snprintf(tmp, sizeof(tmp), "%s.tmp", k->path);
  int err = 0;
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) err = errno;
  for (size_t off = 0; !err && off < n;) {
    ssize_t w = write(fd, buf + off, n - off);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) err = w < 0 ? errno : EIO;
    else off += (size_t)w;
  }
  if (fd >= 0) {
    if (!err && fsync(fd)) err = errno;
    if (close(fd) && !err) err = errno;
  }
  if (!err && rename(tmp, k->path)) err = errno;
  if (err) unlink(tmp);
  free(buf);
  if (!err) {
    char dir[AGENT_PATH_MAX];
    snprintf(dir, sizeof(dir), "%s", k->path);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = '\0';
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
      (void)fsync(dfd);
      close(dfd);
    }
  }
  return err;
}

static void forget(agent_t *a, ask_t *k) {
  struct agent_help_s *h = a->help;
  for (ask_t **p = &h->queue; *p; p = &(*p)->next)
    if (*p == k) {
      *p = k->next;
      break;
    }
  h->n--;
  if (k->path[0] && unlink(k->path) && errno != ENOENT)
    TT_WARN(MOD, "cannot remove a sent request", "path=%s err=%s", k->path, strerror(errno));
  ask_free(k);
}

/* A kept request, read back at start. Files are ours (a 0700 directory), still read
 * bounded and checked as if they were not. */
static ask_t *load(agent_t *a, const char *dir, const char *name) {
  char path[AGENT_PATH_MAX];
  if (snprintf(path, sizeof(path), "%s/%s", dir, name) >= (int)sizeof(path)) return NULL;
  /* Non-blocking: a FIFO put there must not hold the agent's start (refused below). */
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) return NULL;
  struct stat st;
  uint8_t *buf = NULL;
  ask_t *k = NULL;
  Tether__HelpAskRequest *q = NULL;
  if (fstat(fd, &st) || !S_ISREG(st.st_mode) || st.st_size <= 0 || st.st_size > (off_t)HELP_FILE_MAX) goto bad;
  buf = malloc((size_t)st.st_size);
  if (!buf || read(fd, buf, (size_t)st.st_size) != st.st_size) goto bad;
  q = tether__help_ask_request__unpack(NULL, (size_t)st.st_size, buf);
  if (!q || q->nonce.len != TT_HELP_NONCE_LEN || q->snapshot_zdata.len > TT_HELP_SNAPSHOT_MAX) goto bad;
  k = calloc(1, sizeof(*k));
  if (!k) goto bad;
  k->a = a;
  memcpy(k->nonce, q->nonce.data, TT_HELP_NONCE_LEN);
  hex(k->name, k->nonce, sizeof(k->nonce));
  if (tt_text_copy(k->user, sizeof(k->user), q->user) || tt_text_copy(k->text, sizeof(k->text), q->text) ||
      (q->snapshot_error.len && tt_text_copy(k->snap_err, sizeof(k->snap_err), q->snapshot_error)))
    goto bad;
  k->asked_ms = (int64_t)q->asked_ms;
  if (q->snapshot_zdata.len) {
    k->z = malloc(q->snapshot_zdata.len);
    if (!k->z) goto bad;
    memcpy(k->z, q->snapshot_zdata.data, q->snapshot_zdata.len);
    k->zlen = q->snapshot_zdata.len;
    k->size = q->snapshot_size;
  }
  snprintf(k->path, sizeof(k->path), "%s", path);
  tether__help_ask_request__free_unpacked(q, NULL);
  free(buf);
  close(fd);
  return k;
bad:
  TT_WARN(MOD, "a kept help request is unreadable: removed", "path=%s", path);
  if (q) tether__help_ask_request__free_unpacked(q, NULL);
  if (k) ask_free(k);
  free(buf);
  close(fd);
  unlink(path);
  return NULL;
}

static void load_all(agent_t *a) {
  struct agent_help_s *h = a->help;
  DIR *d = opendir(h->dir);
  if (!d) return;
  struct dirent *e;
  while ((e = readdir(d))) {
    size_t len = strlen(e->d_name);
    if (len != 2 * TT_HELP_NONCE_LEN + strlen(HELP_SUFFIX) || strcmp(e->d_name + 2 * TT_HELP_NONCE_LEN, HELP_SUFFIX))
      continue;
    if (h->n >= TT_HELP_QUEUE_MAX) break;
    ask_t *k = load(a, h->dir, e->d_name);
    if (!k) continue;
    k->queued = true;
    /* Oldest first: by the time each was asked. */
    ask_t **p = &h->queue;
    while (*p && (*p)->asked_ms <= k->asked_ms) p = &(*p)->next;
    k->next = *p;
    *p = k;
    h->n++;
  }
  closedir(d);
  if (h->n) TT_INFO(MOD, "help requests waiting to be sent", "count=%zu", h->n);
}

/* ---- sending ----------------------------------------------------------------------------- */

static void retry_cb(uv_timer_t *t) { pump(t->data); }

static void retry_start(agent_t *a) {
  struct agent_help_s *h = a->help;
  if (!h->closing && !uv_is_active((uv_handle_t *)&h->retry)) uv_timer_start(&h->retry, retry_cb, HELP_RETRY_MS, 0);
}

static void ask_reply_cb(void *data, const Tether__Response *r, int err) {
  ask_t *k = data;
  agent_t *a = k->a;
  k->sending = false;
  uint64_t client = k->client;
  k->client = 0;
  if (err) { /* no answer (timed out, or the link went): it stays queued */
    TT_INFO(MOD, "help request not answered: kept", "request=%s err=%s", k->name, tt_errname(err));
    if (client)
      agent_local_reply(a, client, "QUEUED the help desk did not answer in time: your request is kept and sent again");
    retry_start(a);
    return;
  }
  char msg[TT_TEXT_MAX + 1] = "";
  if (r->error || r->body_case != TETHER__RESPONSE__BODY_HELP_ASK || !r->help_ask || !r->help_ask->ticket) {
    if (!r->error || tt_text_copy(msg, sizeof(msg), r->error->message)) snprintf(msg, sizeof(msg), "refused");
    TT_WARN(MOD, "help request refused by the broker", "request=%s why=\"%s\"", k->name, msg);
    if (client) agent_local_reply(a, client, "ERR %s", msg);
    else agent_local_tell_user(a, k->user, "HELP -\trefused\t%s\t%s", k->text, msg);
  } else {
    const Tether__HelpAskResponse *x = r->help_ask;
    TT_INFO(MOD, "help request sent", "request=%s ticket=T-%llu diag=D-%llu again=%d", k->name,
            (unsigned long long)x->ticket, (unsigned long long)x->diag, x->again);
    if (client)
      agent_local_reply(a, client, "OK T-%llu\t%llu\t%s", (unsigned long long)x->ticket, (unsigned long long)x->diag,
                        k->snap_err);
    else agent_local_tell_user(a, k->user, "HELP T-%llu\topened\t%s\t", (unsigned long long)x->ticket, k->text);
  }
  forget(a, k);
  pump(a);
}

/* Send the oldest request, if connected and none is out. */
static void pump(agent_t *a) {
  struct agent_help_s *h = a->help;
  if (!h || h->closing || !a->link || !a->welcomed) return;
  for (ask_t *k = h->queue; k; k = k->next)
    if (k->sending) return;
  ask_t *k = h->queue;
  if (!k) return;
  Tether__HelpAskRequest hq;
  fill_request(k, &hq);
  Tether__Request q = TETHER__REQUEST__INIT;
  q.body_case = TETHER__REQUEST__BODY_HELP_ASK;
  q.help_ask = &hq;
  int rc = agent_reqs_send(&a->reqs, a->link, &q, HELP_ANSWER_WAIT_MS, ask_reply_cb, k);
  if (rc) {
    TT_WARN(MOD, "help request not sent now", "request=%s err=%s", k->name, tt_errname(rc));
    retry_start(a);
    return;
  }
  k->sending = true;
}

/* ---- asking: the snapshot on a worker thread, then kept, then sent ------------------------- */

static void snap_work(uv_work_t *w) {
  ask_t *k = w->data;
  agent_t *a = k->a;
  tt_buf_t report;
  tt_buf_init(&report, TT_DIAG_REPORT_MAX);
  inv_env_t env = {.root = a->cfg.inventory_root, .path = a->cfg.inventory_path, .live = &k->live};
  char err[INV_ERROR_MAX] = "";
  int rc = inv_report(&env, a->ident.device_id, a->cfg.hostname, &report, err, sizeof(err));
  if (rc) {
    snprintf(k->snap_err, sizeof(k->snap_err), "the report could not be made: %.200s", err[0] ? err : tt_errname(rc));
  } else {
    size_t cap = ZSTD_compressBound(report.len);
    k->z = malloc(cap);
    size_t z = k->z ? ZSTD_compress(k->z, cap, tt_buf_head(&report), report.len, HELP_ZSTD_LEVEL) : 0;
    if (!k->z || ZSTD_isError(z)) {
      snprintf(k->snap_err, sizeof(k->snap_err), "the report could not be compressed");
    } else if (z > TT_HELP_SNAPSHOT_MAX) {
      snprintf(k->snap_err, sizeof(k->snap_err), "the report was too big to send with the request (%zu KiB compressed)",
               z / 1024);
    } else {
      k->zlen = z;
      k->size = report.len;
    }
    if (!k->zlen) {
      free(k->z);
      k->z = NULL;
    }
  }
  tt_buf_free(&report);
  if (k->path[0]) k->keep_err = keep(k);
}

static void snap_after(uv_work_t *w, int status) {
  ask_t *k = w->data;
  agent_t *a = k->a;
  struct agent_help_s *h = a->help;
  (void)status;
  if (h->closing) { /* kept on disk (if it could be): sent at the next start */
    h->n--;
    ask_free(k);
    return;
  }
  if (k->keep_err) {
    TT_WARN(MOD, "help request not kept on disk", "path=%s err=%s", k->path, strerror(k->keep_err));
    k->path[0] = '\0';
  }
  k->queued = true;
  ask_t **p = &h->queue;
  while (*p) p = &(*p)->next;
  *p = k;
  TT_INFO(MOD, "help asked", "request=%s user=%s snapshot_bytes=%llu", k->name, k->user, (unsigned long long)k->size);
  if (a->link && a->welcomed) {
    pump(a);
    if (k->sending || k != h->queue) return; /* the answer goes to the person */
  }
  if (!k->path[0]) { /* cannot be kept while offline: say so rather than lose it silently */
    agent_local_reply(a, k->client, "ERR the help desk cannot be reached now and this machine cannot keep the "
                                    "request (its state directory is not writable): try again later");
    forget(a, k);
    return;
  }
  if (k->client && !(a->link && a->welcomed))
    agent_local_reply(a, k->client, "QUEUED this machine is not connected to the help desk: your request is kept "
                                    "and sent when it is");
  else if (k->client)
    agent_local_reply(a, k->client, "QUEUED your request is kept and sent after the ones before it");
  k->client = 0;
}

static void cmd_ask(agent_t *a, uint64_t client, const char *user, const char *text) {
  struct agent_help_s *h = a->help;
  if (!text[0]) {
    agent_local_reply(a, client, "ERR say what is wrong: tether-agent ask \"the printer on floor 2 jams\"");
    return;
  }
  if (!tt_text_valid(tt_text(text), TT_TEXT_MAX)) {
    agent_local_reply(a, client, "ERR the request must be one line of at most %u bytes, without control characters",
                      (unsigned)TT_TEXT_MAX);
    return;
  }
  if (h->n >= TT_HELP_QUEUE_MAX) {
    agent_local_reply(a, client, "ERR %u requests are already waiting to be sent from this machine: they reach the "
                                 "help desk when it is connected",
                      (unsigned)TT_HELP_QUEUE_MAX);
    return;
  }
  ask_t *k = calloc(1, sizeof(*k));
  if (!k || RAND_bytes(k->nonce, sizeof(k->nonce)) != 1) {
    free(k);
    agent_local_reply(a, client, "ERR the agent cannot take a request now");
    return;
  }
  k->a = a;
  k->client = client;
  hex(k->name, k->nonce, sizeof(k->nonce));
  snprintf(k->user, sizeof(k->user), "%s", user);
  snprintf(k->text, sizeof(k->text), "%s", text);
  k->asked_ms = agent_unix_ms();
  if (h->dir[0] && snprintf(k->path, sizeof(k->path), "%s/%s" HELP_SUFFIX, h->dir, k->name) >= (int)sizeof(k->path))
    k->path[0] = '\0';
  agent_diag_facts(a, &k->live, -1, 0);
  k->work.data = k;
  if (uv_queue_work(a->loop, &k->work, snap_work, snap_after)) {
    ask_free(k);
    agent_local_reply(a, client, "ERR the agent cannot take a request now");
    return;
  }
  h->n++;
}

/* ---- tickets, comment ---------------------------------------------------------------------- */

/* Who waits for a tickets or comment answer. */
typedef struct {
  agent_t *a;
  uint64_t client;
} query_t;

static query_t *query_new(agent_t *a, uint64_t client) {
  query_t *x = malloc(sizeof(*x));
  if (x) *x = (query_t){.a = a, .client = client};
  return x;
}

/* Text from the broker, made safe for one protocol line (no control characters). */
static void safe(char *dst, size_t cap, ProtobufCBinaryData v) {
  if (tt_text_copy(dst, cap, v)) snprintf(dst, cap, "?");
}

static void tickets_cb(void *data, const Tether__Response *r, int err) {
  query_t *x = data;
  agent_t *a = x->a;
  uint64_t client = x->client;
  free(x);
  char msg[TT_TEXT_MAX + 1];
  if (err || r->error || r->body_case != TETHER__RESPONSE__BODY_HELP_TICKETS || !r->help_tickets) {
    if (err) snprintf(msg, sizeof(msg), "the help desk did not answer (%s)", tt_errname(err));
    else if (!r->error || tt_text_copy(msg, sizeof(msg), r->error->message)) snprintf(msg, sizeof(msg), "refused");
    agent_local_reply(a, client, "ERR %s", msg);
    return;
  }
  const Tether__HelpTickets *l = r->help_tickets;
  for (size_t i = 0; i < l->n_tickets && i < TT_HELP_TICKETS_MAX; i++) {
    const Tether__HelpTicket *t = l->tickets[i];
    if (!t || !t->ticket) continue;
    const Tether__Ticket *tk = t->ticket;
    char assignee[TT_NAME_MAX + 1], summary[TT_TEXT_MAX + 1], by[TT_NAME_MAX + 1] = "", text[TT_TEXT_MAX + 1] = "";
    safe(assignee, sizeof(assignee), tk->assignee);
    safe(summary, sizeof(summary), tk->summary);
    uint64_t when = 0;
    if (t->last_public) {
      safe(by, sizeof(by), t->last_public->actor);
      safe(text, sizeof(text), t->last_public->text);
      when = t->last_public->ts_ms;
    }
    static const char *const states[] = {"?", "open", "resolved", "closed"};
    const char *state = (unsigned)tk->state < 4 ? states[tk->state] : "?";
    agent_local_reply(a, client, "TICKET T-%llu\t%s\t%s\t%llu\t%s\t%llu\t%s\t%s", (unsigned long long)tk->id, state,
                      assignee, (unsigned long long)tk->updated_ms, by, (unsigned long long)when, summary, text);
  }
  agent_local_reply(a, client, l->more ? "OK more" : "OK");
}

static void comment_cb(void *data, const Tether__Response *r, int err) {
  query_t *x = data;
  agent_t *a = x->a;
  uint64_t client = x->client;
  free(x);
  char msg[TT_TEXT_MAX + 1];
  if (err || r->error || r->body_case != TETHER__RESPONSE__BODY_HELP_TICKET || !r->help_ticket ||
      !r->help_ticket->ticket) {
    if (err) snprintf(msg, sizeof(msg), "the help desk did not answer (%s)", tt_errname(err));
    else if (!r->error || tt_text_copy(msg, sizeof(msg), r->error->message)) snprintf(msg, sizeof(msg), "refused");
    agent_local_reply(a, client, "ERR %s", msg);
    return;
  }
  const Tether__Ticket *t = r->help_ticket->ticket;
  agent_local_reply(a, client, "OK T-%llu\t%s", (unsigned long long)t->id,
                    t->state == TETHER__TICKET_STATE__TICKET_OPEN ? "open" : "?");
}

static bool online(agent_t *a, uint64_t client) {
  if (a->link && a->welcomed) return true;
  agent_local_reply(a, client, "ERR this machine is not connected to the help desk right now: try again later");
  return false;
}

static void cmd_tickets(agent_t *a, uint64_t client, const char *user) {
  if (!online(a, client)) return;
  Tether__HelpTicketsRequest t = TETHER__HELP_TICKETS_REQUEST__INIT;
  t.user = tt_text(user);
  Tether__Request q = TETHER__REQUEST__INIT;
  q.body_case = TETHER__REQUEST__BODY_HELP_TICKETS;
  q.help_tickets = &t;
  query_t *x = query_new(a, client);
  if (!x || agent_reqs_send(&a->reqs, a->link, &q, HELP_QUERY_TIMEOUT_MS, tickets_cb, x)) {
    free(x);
    agent_local_reply(a, client, "ERR the agent is busy: try again shortly");
  }
}

static void cmd_comment(agent_t *a, uint64_t client, const char *user, char *arg) {
  char *text = strchr(arg, ' ');
  if (text) *text++ = '\0';
  uint64_t id = agent_parse_id(arg, 'T');
  if (!id || !text || !text[0]) {
    agent_local_reply(a, client, "ERR usage: tether-agent comment T-42 \"what you want to add\"");
    return;
  }
  if (!tt_text_valid(tt_text(text), TT_TEXT_MAX)) {
    agent_local_reply(a, client, "ERR the comment must be one line of at most %u bytes, without control characters",
                      (unsigned)TT_TEXT_MAX);
    return;
  }
  if (!online(a, client)) return;
  Tether__HelpCommentRequest m = TETHER__HELP_COMMENT_REQUEST__INIT;
  m.user = tt_text(user);
  m.ticket = id;
  m.text = tt_text(text);
  Tether__Request q = TETHER__REQUEST__INIT;
  q.body_case = TETHER__REQUEST__BODY_HELP_COMMENT;
  q.help_comment = &m;
  query_t *x = query_new(a, client);
  if (!x || agent_reqs_send(&a->reqs, a->link, &q, HELP_QUERY_TIMEOUT_MS, comment_cb, x)) {
    free(x);
    agent_local_reply(a, client, "ERR the agent is busy: try again shortly");
  }
}

bool agent_help_local(agent_t *a, uint64_t client, const char *user, const char *cmd, char *arg) {
  if (!a->help) return false;
  if (strcmp(cmd, "ASK") == 0) cmd_ask(a, client, user, arg);
  else if (strcmp(cmd, "TICKETS") == 0 && !arg[0]) cmd_tickets(a, client, user);
  else if (strcmp(cmd, "COMMENT") == 0) cmd_comment(a, client, user, arg);
  else return false;
  return true;
}

/* ---- notices from the broker ------------------------------------------------------------- */

void agent_help_notice_request(agent_t *a, const Tether__Request *q) {
  const Tether__HelpNoticeRequest *n = q->help_notice;
  char user[TT_NAME_MAX + 1], kind[TT_NAME_MAX + 1], by[TT_NAME_MAX + 1], text[TT_TEXT_MAX + 1];
  Tether__Response r = TETHER__RESPONSE__INIT;
  r.id = q->id;
  Tether__Error e = TETHER__ERROR__INIT;
  Tether__HelpNoticeResponse ok = TETHER__HELP_NOTICE_RESPONSE__INIT;
  if (!n || tt_text_copy(user, sizeof(user), n->user) || !user[0] || tt_text_copy(kind, sizeof(kind), n->kind) ||
      tt_text_copy(by, sizeof(by), n->by) || tt_text_copy(text, sizeof(text), n->text)) {
    e.code = TETHER__ERROR_CODE__ERR_INVALID;
    e.message = tt_text("a notice needs a user, a kind and text fields");
    r.error = &e;
  } else {
    TT_INFO(MOD, "notice for the employee", "user=%s ticket=T-%llu kind=%s by=%s", user,
            (unsigned long long)n->ticket, kind, by);
    agent_local_tell_user(a, user, "NOTICE T-%llu\t%s\t%s\t%s", (unsigned long long)n->ticket, kind, by, text);
    r.body_case = TETHER__RESPONSE__BODY_HELP_NOTICE;
    r.help_notice = &ok;
  }
  if (a->link && tt_link_send(a->link, TT_K_RESPONSE, &r.base)) tt_link_close(a->link, TT_EIO, "cannot answer");
}

/* ---- life ---------------------------------------------------------------------------------- */

void agent_help_init(agent_t *a) {
  struct agent_help_s *h = calloc(1, sizeof(*h));
  if (!h) abort(); /* at start-up */
  a->help = h;
  uv_timer_init(a->loop, &h->retry);
  h->retry.data = a;
  if (snprintf(h->dir, sizeof(h->dir), "%s/" HELP_DIR, a->cfg.state_dir) >= (int)sizeof(h->dir) ||
      (mkdir(h->dir, 0700) && errno != EEXIST)) {
    TT_WARN(MOD, "no place to keep help requests while offline", "dir=%s err=%s", h->dir, strerror(errno));
    h->dir[0] = '\0';
    return;
  }
  load_all(a);
}

void agent_help_welcomed(agent_t *a) { pump(a); }

void agent_help_close(agent_t *a) {
  struct agent_help_s *h = a->help;
  if (!h || h->closing) return;
  h->closing = true;
  uv_close((uv_handle_t *)&h->retry, NULL);
}

void agent_help_free(agent_t *a) {
  struct agent_help_s *h = a->help;
  if (!h) return;
  while (h->queue) {
    ask_t *k = h->queue;
    h->queue = k->next;
    ask_free(k);
  }
  free(h);
  a->help = NULL;
}
