/* The relay: a console's channel paired with a channel to the agent. Data bodies are copied
 * across with a new header, never decoded (a shell's output is recorded as it passes, and a
 * files channel's control messages are read for its records, files.c); credit travels end
 * to end (the broker grants a side only what the other side granted it), so a relay holds at
 * most one window per direction. Every way a relay ends goes through relay_end(), which detaches both channels
 * before closing them: a close may free a channel at once (a reject of a PENDING one). */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include "broker.h"
#include "record.h"
#include "tt/log.h"
#include "tt/msg.h"

/* The part of an exec's command line kept in its audit entry and on the ticket. */
#define RELAY_COMMAND_MAX 160u

struct relay_s {
  relay_t *prev, *next;  /* broker's list of relays still waiting for the device */
  broker_t *b;
  broker_conn_t *console, *agent;
  tt_chan_t *cch, *ach;  /* NULL once that side is gone */
  uint64_t opened_ms;    /* uv_now when requested */
  bool pending;          /* on the pending list */
  uint32_t down_window;  /* held for the console: data from the device waits in its queue */
  uint32_t up_window;    /* held for the device: data from the console waits in its queue */
  uint64_t bytes_up, bytes_down;
  Tether__ChannelKind kind;
  broker_grant_t *grant; /* the session it runs under (NULL: an admin's diagnostic without one,
                          * or the session ended) */
  relay_t *gprev, *gnext; /* the session's relays */
  broker_rec_t *rec;     /* SHELL: the recording */
  void *rec_handle;      /* session.c's side of it */
  uint64_t held_credit;  /* console credit not passed on while the recording catches up
                          * (FILES: while records wait for the store) */
  broker_files_t *files; /* FILES: its records (files.c) */
  uint64_t held_up;      /* FILES: device credit not passed on while records wait */
  char command[RELAY_COMMAND_MAX]; /* EXEC: the command line, for the records */
  broker_diag_keep_t *keep; /* DIAG with attach: the report, kept as it passes */
  int64_t kept_id;       /* ... and once stored, the D-n the console hears before EOF */
  bool keep_waiting;     /* the device's EOF came: the console's EOF waits for the store */
  char dev[TT_NAME_MAX + 1];
  struct open_req_s *opening; /* its opening is being recorded; agent and ach are NULL */
};

static const char *kind_name(Tether__ChannelKind k) {
  switch (k) {
  case TETHER__CHANNEL_KIND__CHANNEL_THROUGHPUT: return "throughput";
  case TETHER__CHANNEL_KIND__CHANNEL_ECHO: return "echo";
  case TETHER__CHANNEL_KIND__CHANNEL_SHELL: return "shell";
  case TETHER__CHANNEL_KIND__CHANNEL_EXEC: return "exec";
  case TETHER__CHANNEL_KIND__CHANNEL_FILES: return "files";
  case TETHER__CHANNEL_KIND__CHANNEL_DIAG: return "diag";
  default: return "unknown";
  }
}

static void opening_forget(relay_t *r);

static bool is_session_kind(Tether__ChannelKind k) {
  return k == TETHER__CHANNEL_KIND__CHANNEL_SHELL || k == TETHER__CHANNEL_KIND__CHANNEL_EXEC;
}

/* Echo and throughput (link tests) and the diagnostics report: under a session with diag
 * access. */
static bool is_diag_kind(Tether__ChannelKind k) {
  return k == TETHER__CHANNEL_KIND__CHANNEL_THROUGHPUT || k == TETHER__CHANNEL_KIND__CHANNEL_ECHO ||
         k == TETHER__CHANNEL_KIND__CHANNEL_DIAG;
}

static bool is_files_kind(Tether__ChannelKind k) { return k == TETHER__CHANNEL_KIND__CHANNEL_FILES; }

static void grant_link(relay_t *r, broker_grant_t *g) {
  r->grant = g;
  r->gprev = NULL;
  r->gnext = g->relays;
  if (g->relays) g->relays->gprev = r;
  g->relays = r;
  g->nrelays++;
}

static void grant_unlink(relay_t *r) {
  broker_grant_t *g = r->grant;
  if (!g) return;
  if (r->gprev) r->gprev->gnext = r->gnext;
  else g->relays = r->gnext;
  if (r->gnext) r->gnext->gprev = r->gprev;
  r->gprev = r->gnext = NULL;
  g->nrelays--;
  r->grant = NULL;
}

static void pending_remove(relay_t *r) {
  if (!r->pending) return;
  broker_t *b = r->b;
  if (r->prev) r->prev->next = r->next;
  else b->pending = r->next;
  if (r->next) r->next->prev = r->prev;
  r->prev = r->next = NULL;
  r->pending = false;
}

/* The window to pass on for a peer: what it asked, within what is left of its budget, and
 * at least one chunk so that a spent budget slows a relay instead of stopping it; never more
 * than the peer asked, or the other side could send what the peer will not take. */
static uint32_t clamp_window(broker_conn_t *peer, uint32_t asked) {
  uint64_t left = peer->relay_window >= TT_RELAY_WINDOW_BUDGET ? 0 : TT_RELAY_WINDOW_BUDGET - peer->relay_window;
  uint32_t w = asked < left ? asked : (uint32_t)left;
  if (w < TT_DATA_CHUNK_MAX) w = asked < TT_DATA_CHUNK_MAX ? asked : TT_DATA_CHUNK_MAX;
  return w;
}

/* The relay's end in the audit trail and, under a session, on the ticket's timeline. */
static void audit_close(relay_t *r, int code, const char *msg) {
  if (r->opening) return; /* never opened: its opening's entry may not even be written */
  char session[32] = "", up[24], down[24], text[STORE_TEXT_MAX];
  broker_grant_t *g = r->grant;
  if (g) snprintf(session, sizeof(session), "S-%" PRId64, g->s.id);
  snprintf(up, sizeof(up), "%" PRIu64, r->bytes_up);
  snprintf(down, sizeof(down), "%" PRIu64, r->bytes_down);
  broker_audit(r->b, r->console->id.name, "channel-close", r->dev, "session", session, "kind",
               kind_name(r->kind), "bytes_up", up, "bytes_down", down, "reason",
               msg && msg[0] ? msg : code ? tt_strerror(code) : "closed", AUDIT_END);
  if (!g) return;
  snprintf(text, sizeof(text), "%s channel of %s closed (%s up, %s down)%s%.120s", kind_name(r->kind), session, up,
           down, msg && msg[0] ? ": " : "", msg ? msg : "");
  (void)!broker_ticket_event(r->b, g->s.ticket, r->console->id.name, "channel-closed", "%s", text);
}

/* Close whatever side is still attached with (code, msg) and free r. */
static void relay_end(relay_t *r, int code, const char *msg) {
  tt_chan_t *c = r->cch, *a = r->ach;
  broker_conn_t *console = r->console, *agent = r->agent;
  console->relay_window -= r->down_window;
  if (agent) agent->relay_window -= r->up_window;
  pending_remove(r);
  r->cch = r->ach = NULL;
  if (c) c->data = NULL;
  if (a) a->data = NULL;
  TT_DEBUG("relay", "relay ended", "up=%llu down=%llu code=%s", (unsigned long long)r->bytes_up,
           (unsigned long long)r->bytes_down, tt_errname(code));
  audit_close(r, code, msg);
  opening_forget(r);
  grant_unlink(r);
  if (r->rec_handle) broker_session_record_end(r->rec_handle); /* finishes on its own */
  if (r->files) broker_files_end(r->files);                    /* so do its records */
  broker_diag_keep_end(r->keep);                               /* and a report being kept */
  free(r);
  if (c) {
    tt_mux_close(&console->link->mux, c, code, msg);
    tt_link_flush(console->link);
  }
  if (a) {
    tt_mux_close(&agent->link->mux, a, code, msg);
    tt_link_flush(agent->link);
  }
}

void relay_end_grant(broker_grant_t *g, int code, const char *msg) {
  while (g->relays) relay_end(g->relays, code, msg);
}

void relay_tick_grant(broker_grant_t *g) {
  /* A tick may report a failed recording, which ends (frees) that relay: step on first. */
  for (relay_t *r = g->relays, *next; r; r = next) {
    next = r->gnext;
    if (r->rec) broker_rec_tick(r->rec);
    else if (r->files) broker_files_tick(r->files);
  }
}

/* The recording caught up with the output: the console's credit goes on to the device. */
static void rec_drained(relay_t *r) {
  if (!r->held_credit || !r->ach || r->ach->state != TT_CH_OPEN) return;
  uint32_t n = r->held_credit > UINT32_MAX ? UINT32_MAX : (uint32_t)r->held_credit;
  r->held_credit -= n;
  if (tt_mux_grant(&r->agent->link->mux, r->ach, n)) {
    relay_end(r, TT_EFULL, "relay could not pass credit on");
    return;
  }
  tt_link_flush(r->agent->link);
}

static void rec_failed(relay_t *r, const char *why) { relay_end(r, TT_EIO, why); }

static const broker_rec_owner_t rec_owner = {.on_drain = rec_drained, .on_fail = rec_failed};

/* A files relay's records are all queued: credit held meanwhile goes on, both ways. */
static void files_drained(relay_t *r) {
  struct {
    uint64_t *held;
    broker_conn_t *peer;
    tt_chan_t *ch;
  } side[2] = {{&r->held_credit, r->agent, r->ach}, {&r->held_up, r->console, r->cch}};
  for (int i = 0; i < 2; i++) {
    if (!*side[i].held || !side[i].ch || side[i].ch->state != TT_CH_OPEN) continue;
    uint32_t n = *side[i].held > UINT32_MAX ? UINT32_MAX : (uint32_t)*side[i].held;
    *side[i].held -= n;
    if (tt_mux_grant(&side[i].peer->link->mux, side[i].ch, n)) {
      relay_end(r, TT_EFULL, "relay could not pass credit on");
      return;
    }
    tt_link_flush(side[i].peer->link);
  }
}

static const broker_files_owner_t files_owner = {.on_drain = files_drained};

static tt_chan_t *other_side(relay_t *r, tt_chan_t *ch, tt_link_t **link) {
  if (!r->agent) return NULL; /* still being recorded: nothing to pass anything to */
  if (ch == r->cch) {
    *link = r->agent->link;
    return r->ach;
  }
  *link = r->console->link;
  return r->cch;
}

/* Opens this person has waiting, over all of their connections. */
static uint32_t pending_for(const broker_t *b, const char *name) {
  uint32_t n = 0;
  for (const relay_t *r = b->pending; r; r = r->next)
    if (strcmp(r->console->id.name, name) == 0) n++;
  return n;
}

/* The session an open runs under: `session` must be a live grant of this person on this
 * device that includes `need` access (what = its word, for the refusal). NULL with *code and
 * why filled in otherwise. */
static broker_grant_t *grant_check(broker_conn_t *c, const char *dev, uint64_t session, unsigned need,
                                   const char *what, int *code, char *why, size_t cap) {
  *code = TT_EDENIED;
  broker_grant_t *g = broker_session_live(c->b, (int64_t)session);
  if (!g || strcmp(g->s.person, c->id.name) != 0 || strcmp(g->s.device, dev) != 0) {
    snprintf(why, cap, "S-%" PRIu64 " is not a live session of yours on %s", session, dev);
    return NULL;
  }
  if (!(g->s.access & need)) {
    snprintf(why, cap, "S-%" PRIu64 " does not include %s access: open a session with --want %s", session, what,
             what);
    return NULL;
  }
  return g;
}

/* SHELL and EXEC run under a session with shell access, and the terminal or command must
 * be within limits. NULL with *code and why filled in otherwise. */
static broker_grant_t *session_check(broker_conn_t *c, const char *dev, const Tether__ChannelOpen *msg, int *code,
                                     char *why, size_t cap) {
  *code = TT_EINVAL;
  if (msg->cols > TT_TERM_DIM_MAX || msg->rows > TT_TERM_DIM_MAX) {
    snprintf(why, cap, "terminal size %ux%u is out of range (at most %u)", msg->cols, msg->rows, TT_TERM_DIM_MAX);
    return NULL;
  }
  if (!tt_text_valid(msg->term, TT_TERM_NAME_MAX)) {
    snprintf(why, cap, "TERM is not valid text of at most %u bytes", TT_TERM_NAME_MAX);
    return NULL;
  }
  if (msg->command.len > TT_EXEC_COMMAND_MAX || (msg->command.len && memchr(msg->command.data, 0, msg->command.len)) ||
      (msg->kind == TETHER__CHANNEL_KIND__CHANNEL_SHELL && msg->n_argv)) {
    snprintf(why, cap, "a shell's command is one line for the shell of at most %u bytes, without NUL",
             TT_EXEC_COMMAND_MAX);
    return NULL;
  }
  if (msg->kind == TETHER__CHANNEL_KIND__CHANNEL_EXEC && msg->command.len) {
    if (msg->n_argv) {
      snprintf(why, cap, "a command is argv or a line for the shell, not both");
      return NULL;
    }
  } else if (msg->kind == TETHER__CHANNEL_KIND__CHANNEL_EXEC) {
    bool ok = msg->n_argv > 0 && msg->n_argv <= TT_EXEC_ARGV_MAX;
    for (size_t i = 0; ok && i < msg->n_argv; i++)
      ok = msg->argv[i].len <= TT_EXEC_ARG_MAX && !memchr(msg->argv[i].data, 0, msg->argv[i].len);
    if (!ok) {
      snprintf(why, cap, "a command is 1..%u arguments of at most %u bytes, without NUL", TT_EXEC_ARGV_MAX,
               TT_EXEC_ARG_MAX);
      return NULL;
    }
  }
  *code = TT_EDENIED;
  if (msg->session == 0) {
    snprintf(why, cap, "open a session first: tether session open");
    return NULL;
  }
  return grant_check(c, dev, msg->session, STORE_ACCESS_SHELL, "shell", code, why, cap);
}

/* ECHO, THROUGHPUT and DIAG are diagnostics: under a session with diag access like any other
 * channel, so that the employee agreed to them and a ticket says why; admins may run them
 * without one (the audit says so). false with *code and why filled in when refused; *g is
 * NULL for an admin's run without a session. */
static bool diag_check(broker_conn_t *c, const char *dev, const Tether__ChannelOpen *msg, broker_grant_t **g,
                       int *code, char *why, size_t cap) {
  *g = NULL;
  if (msg->session == 0) {
    if (c->id.role == TT_ROLE_ADMIN) return true;
    *code = TT_EDENIED;
    snprintf(why, cap, "diag, ping and speedtest run under a ticket: pass --ticket T (a session with diag access)");
    return false;
  }
  *g = grant_check(c, dev, msg->session, STORE_ACCESS_DIAG, "diag", code, why, cap);
  return *g != NULL;
}

/* FILES: personal data, so always under a session with files access that the employee
 * agreed to (admins too: unlike a link test, nothing about files is a diagnostic), on a device
 * whose agent serves files. false with *code and why filled in when refused. */
static bool files_check(broker_conn_t *c, broker_conn_t *a, const Tether__ChannelOpen *msg, broker_grant_t **g,
                        int *code, char *why, size_t cap) {
  if (!(a->caps & TETHER__CAPABILITY__CAP_FILES)) {
    *code = TT_EVERSION;
    snprintf(why, cap, "this agent does not serve files (version %s)", a->version[0] ? a->version : "unknown");
    return false;
  }
  if (msg->session == 0) {
    *code = TT_EDENIED;
    snprintf(why, cap, "file access runs under a ticket: pass --ticket T (a session with files access)");
    return false;
  }
  *g = grant_check(c, a->id.name, msg->session, STORE_ACCESS_FILES, "files", code, why, cap);
  return *g != NULL;
}

/* Channels this person holds on the device (open, waiting for it, or having their opening
 * recorded), over all of their connections: the device's own channel table is at most
 * TT_CHANNELS_MAX long. */
static uint32_t held_on(const broker_t *b, const broker_conn_t *agent, const char *name) {
  uint32_t n = 0;
  for (const tt_chan_t *ch = agent->link->mux.chans; ch; ch = ch->next) {
    const relay_t *r = ch->data;
    if (r && r->ach == ch && strcmp(r->console->id.name, name) == 0) n++;
  }
  for (const relay_t *r = b->pending; r; r = r->next)
    if (r->opening && strcmp(r->dev, agent->id.name) == 0 && strcmp(r->console->id.name, name) == 0) n++;
  return n;
}

/* Every open is checked here, in this order; the first refusal wins. */
static const char *open_check(broker_conn_t *c, const Tether__ChannelOpen *msg, char *dev, broker_conn_t **a,
                              broker_grant_t **g, int *code, char *why, size_t cap) {
  if (c->id.role != TT_ROLE_TECHNICIAN && c->id.role != TT_ROLE_ADMIN) {
    *code = TT_EDENIED;
    return "only technicians and admins open channels";
  }
  if (tt_text_copy(dev, TT_NAME_MAX + 1, msg->device) || !dev[0]) {
    *code = TT_EINVAL;
    return "no valid device id";
  }
  /* Only kinds we know how to check are passed on: a new kind needs its rules here first. */
  if (!is_diag_kind(msg->kind) && !is_session_kind(msg->kind) && !is_files_kind(msg->kind)) {
    *code = TT_EINVAL;
    return "unknown channel kind";
  }
  if (msg->kind == TETHER__CHANNEL_KIND__CHANNEL_THROUGHPUT && msg->bytes > TT_THROUGHPUT_BYTES_MAX) {
    *code = TT_ETOOBIG;
    snprintf(why, cap, "a speedtest may ask for at most %llu GiB", (unsigned long long)(TT_THROUGHPUT_BYTES_MAX >> 30));
    return why;
  }
  if (pending_for(c->b, c->id.name) >= TT_PENDING_OPENS_MAX) {
    *code = TT_EBUSY;
    return "too many channel requests waiting for devices";
  }
  if (!(*a = broker_find_agent(c->b, dev))) {
    snprintf(why, cap, "device %s is not connected", dev);
    *code = TT_ENOTFOUND;
    return why;
  }
  if (is_session_kind(msg->kind) && !(*g = session_check(c, dev, msg, code, why, cap))) return why;
  if (is_diag_kind(msg->kind) && !diag_check(c, dev, msg, g, code, why, cap)) return why;
  if (is_files_kind(msg->kind) && !files_check(c, *a, msg, g, code, why, cap)) return why;
  if (msg->attach && (msg->kind != TETHER__CHANNEL_KIND__CHANNEL_DIAG || !*g)) {
    *code = TT_EINVAL;
    return "only a diag report under a ticket can be kept on it (--attach needs --ticket)";
  }
  uint32_t held = held_on(c->b, *a, c->id.name);
  if (held >= TT_CHANNELS_PER_PERSON_DEVICE_MAX) {
    *code = TT_EBUSY;
    snprintf(why, cap, "you already hold %u channels on %s: close some first", held, dev);
    return why;
  }
  return NULL;
}

/* The shell's recording starts with the channel: no file, no shell. */
static int start_recording(relay_t *r, const Tether__ChannelOpen *msg, const store_recording_t *row, char *why,
                           size_t cap) {
  char term[TT_TERM_NAME_MAX + 1];
  if (tt_text_copy(term, sizeof(term), msg->term) || !term[0]) snprintf(term, sizeof(term), "xterm-256color");
  uint32_t cols = msg->cols ? msg->cols : 80, rows = msg->rows ? msg->rows : 24;
  return broker_session_record(r->grant, r, &rec_owner, row, cols, rows, term, &r->rec, &r->rec_handle, why, cap);
}

/* A channel's opening is audited (and a shell's recording row written) before the device
 * hears of it: an opening that cannot be recorded does not happen. The open to forward is
 * kept packed meanwhile, as the console's message is gone when the callback returns. */
typedef struct open_req_s {
  store_req_t req;
  store_audit_rec_t audit;
  relay_t *r;              /* NULL once the relay ended first */
  bool shell;
  store_recording_t row;   /* SHELL: the recording's row, written with the entry */
  size_t len;
  uint8_t fwd[];           /* the ChannelOpen for the device, packed */
} open_req_t;

static void opening_forget(relay_t *r) {
  if (!r->opening) return;
  r->opening->r = NULL;
  r->opening = NULL;
}

static int open_run(broker_store_t *s, store_req_t *req) {
  open_req_t *x = (open_req_t *)req;
  return x->shell ? store_recording_add(s, &x->row) : 0;
}

static void forward_open(relay_t *r, Tether__ChannelOpen *fwd, const store_recording_t *row);

static void open_done(store_req_t *req) {
  open_req_t *x = (open_req_t *)req;
  relay_t *r = x->r;
  if (!r) { /* the console or the session went first */
    if (req->rc == 0 && x->shell) broker_session_record_abandon(x->req.data, &x->row, TT_ECHANNEL);
    goto out;
  }
  r->opening = NULL;
  if (req->rc) {
    TT_ERROR("relay", "channel opening not recorded", "device=%s err=%s", r->dev, tt_errname(req->rc));
    relay_end(r, TT_EIO, "the broker could not record the channel's opening in its audit log, so it was not opened");
    goto out;
  }
  Tether__ChannelOpen *fwd = tether__channel_open__unpack(NULL, x->len, x->fwd);
  if (!fwd) {
    if (x->shell) broker_session_record_abandon(r->b, &x->row, TT_ENOMEM);
    relay_end(r, TT_ENOMEM, "out of memory");
    goto out;
  }
  forward_open(r, fwd, x->shell ? &x->row : NULL);
  tether__channel_open__free_unpacked(fwd, NULL);
out:
  free(x);
}

/* The opening is on record: pass it to the device, if it is still there. */
static void forward_open(relay_t *r, Tether__ChannelOpen *fwd, const store_recording_t *row) {
  broker_t *b = r->b;
  broker_conn_t *c = r->console;
  broker_conn_t *a = broker_find_agent(b, r->dev);
  char why[TT_TEXT_MAX];
  if (!a) {
    if (row) broker_session_record_abandon(b, row, TT_ENOTFOUND);
    snprintf(why, sizeof(why), "device %s is not connected", r->dev);
    relay_end(r, TT_ENOTFOUND, why);
    return;
  }
  tt_chan_t *ach;
  /* The device may send the console at most this much before credit returns: it waits in the
   * console's queue here, so it comes out of the console connection's budget. */
  uint32_t down = clamp_window(c, fwd->window);
  int rc = tt_mux_open(&a->link->mux, fwd, down, false, &ach);
  if (rc) {
    if (row) broker_session_record_abandon(b, row, rc);
    relay_end(r, rc == TT_EFULL ? TT_EBUSY : rc, "device has too many channels open");
    return;
  }
  r->agent = a;
  r->ach = ach;
  ach->data = r;
  r->down_window = down;
  c->relay_window += down;
  if (row && start_recording(r, fwd, row, why, sizeof(why))) {
    relay_end(r, TT_EIO, why);
    return;
  }
  tt_link_flush(a->link);
}

void relay_on_open(tt_mux_t *m, tt_chan_t *ch, const Tether__ChannelOpen *msg) {
  tt_link_t *l = tt_link_from_mux(m);
  broker_conn_t *c = l->data;
  char dev[TT_NAME_MAX + 1], why[TT_TEXT_MAX];
  int code = 0;
  broker_conn_t *a = NULL;
  broker_grant_t *g = NULL;
  const char *refusal = open_check(c, msg, dev, &a, &g, &code, why, sizeof(why));
  relay_t *r = refusal ? NULL : calloc(1, sizeof(*r));
  if (!refusal && !r) code = TT_ENOMEM, refusal = "out of memory";
  Tether__ChannelOpen fwd = *msg;
  open_req_t *x = NULL;
  if (!refusal) {
    fwd.base.unknown_fields = NULL;
    fwd.base.n_unknown_fields = 0;
    fwd.device.len = 0;
    fwd.device.data = NULL;
    fwd.requester = tt_text(c->id.name);
    /* The device learns the session from us, never from the console's word. */
    fwd.session = g ? (uint64_t)g->s.id : 0;
    fwd.ticket = g ? (uint64_t)g->s.ticket : 0;
    fwd.attach = false; /* the broker's business, not the device's */
    /* A shell's output is recorded as it passes: it must come uncompressed. */
    if (msg->kind == TETHER__CHANNEL_KIND__CHANNEL_SHELL) fwd.compression = 0;
    /* Files are bulk whatever the console said, so a transfer never delays keystrokes. */
    if (is_files_kind(msg->kind)) fwd.priority = TETHER__PRIORITY__PRIORITY_BULK;
    size_t len = protobuf_c_message_get_packed_size(&fwd.base);
    x = calloc(1, sizeof(*x) + len);
    if (x && msg->attach && msg->kind == TETHER__CHANNEL_KIND__CHANNEL_DIAG && g &&
        !(r->keep = broker_diag_keep_new(c->b, r, g->s.ticket, g->s.id, dev, c->id.name))) {
      free(x);
      x = NULL;
    }
    if (x && is_files_kind(msg->kind) && !(r->files = broker_files_new(c->b, r, &files_owner, g, c->id.name, dev))) {
      free(x);
      x = NULL;
    }
    if (!x) {
      free(r);
      r = NULL;
      code = TT_ENOMEM, refusal = "out of memory";
    } else {
      x->len = protobuf_c_message_pack(&fwd.base, x->fwd);
    }
  }
  if (refusal) {
    if (c->id.role == TT_ROLE_TECHNICIAN || c->id.role == TT_ROLE_ADMIN)
      broker_audit(c->b, c->id.name, "channel-refused", a ? a->id.name : "", "kind", kind_name(msg->kind),
                   "reason", refusal, AUDIT_END);
    tt_mux_reject(m, ch, code, refusal);
    tt_link_flush(l);
    if (++c->refusals >= TT_REFUSALS_MAX) tt_link_close(l, TT_EDENIED, "too many refused requests");
    return;
  }
  broker_t *b = c->b;
  r->b = b;
  r->console = c;
  r->cch = ch;
  r->kind = msg->kind;
  if (is_files_kind(msg->kind)) ch->prio = TT_PRIO_BULK; /* toward the console too */
  snprintf(r->dev, sizeof(r->dev), "%s", dev);
  if (msg->kind == TETHER__CHANNEL_KIND__CHANNEL_EXEC || msg->kind == TETHER__CHANNEL_KIND__CHANNEL_SHELL)
    tt_open_command_line(msg, r->command, sizeof(r->command));
  ch->data = r;
  if (g) grant_link(r, g);
  /* Waiting from now on (first for the store, then for the device): counted against the
   * person's TT_PENDING_OPENS_MAX, and ended after TT_OPEN_TIMEOUT_MS. */
  r->opened_ms = uv_now(b->loop);
  r->pending = true;
  r->next = b->pending;
  if (b->pending) b->pending->prev = r;
  b->pending = r;
  char session[32] = "";
  if (g) snprintf(session, sizeof(session), "S-%" PRId64, g->s.id);
  TT_INFO("relay", "channel requested", "requester=%s device=%s kind=%s session=%s", c->id.name, dev,
          kind_name(msg->kind), g ? session : "-");
  x->req.run = open_run;
  x->req.done = open_done;
  x->req.what = "channel_open";
  x->req.data = b;
  x->req.audit = &x->audit;
  x->r = r;
  x->shell = msg->kind == TETHER__CHANNEL_KIND__CHANNEL_SHELL;
  if (x->shell) broker_session_record_row(g, &x->row);
  if (r->command[0])
    broker_audit_rec(&x->audit, c->id.name, "channel-open", dev, "kind", kind_name(msg->kind), "session", session,
                     "command", r->command, "?via", c->via, AUDIT_END);
  else if (!g) /* an admin's diagnostic without a ticket */
    broker_audit_rec(&x->audit, c->id.name, "channel-open", dev, "kind", kind_name(msg->kind), "session", session,
                     "as", "admin, without a ticket", "?via", c->via, AUDIT_END);
  else
    broker_audit_rec(&x->audit, c->id.name, "channel-open", dev, "kind", kind_name(msg->kind), "session", session,
                     "?via", c->via, AUDIT_END);
  int rc = store_svc_submit(b->svc, &x->req);
  if (rc) {
    free(x);
    relay_end(r, TT_EBUSY, "the broker is busy, try again shortly");
    return;
  }
  r->opening = x;
}

void relay_on_accept(tt_mux_t *m, tt_chan_t *ch, const Tether__ChannelAccept *msg) {
  relay_t *r = ch->data;
  tt_link_t *ol;
  if (!r) return;
  tt_chan_t *o = other_side(r, ch, &ol);
  pending_remove(r);
  /* Same for the other way: console data waits in the device's queue here. */
  uint32_t up = clamp_window(r->agent, msg->window);
  r->up_window = up;
  r->agent->relay_window += up;
  if (!o || tt_mux_accept(&ol->mux, o, up, false, msg->compression)) {
    relay_end(r, TT_ECHANNEL, "requester went away");
    return;
  }
  tt_link_flush(ol);
  if (r->grant)
    (void)!broker_ticket_event(r->b, r->grant->s.ticket, r->console->id.name, "channel-opened",
                               "%s channel of S-%" PRId64 " opened%s%s%s", kind_name(r->kind), r->grant->s.id,
                               r->rec ? " (recorded)" : "", r->command[0] ? ": " : "", r->command);
}

static void rec_error(relay_t *r, int rc) {
  char why[TT_TEXT_MAX];
  snprintf(why, sizeof(why), "recording failed (%s): the session cannot continue unrecorded", tt_strerror(rc));
  relay_end(r, TT_EIO, why);
}

/* A console's in-band control on a recorded shell: a resize is an "r" event. Anything the
 * recording does not use goes on as it came; the device checks it. */
static int record_control(relay_t *r, const uint8_t *p, size_t n) {
  tt_msg_t msg;
  if (tt_msg_unpack_ctrl(&msg, p, n)) return 0;
  const Tether__ChannelControl *cc = (const Tether__ChannelControl *)msg.m;
  int rc = 0;
  if (cc->body_case == TETHER__CHANNEL_CONTROL__BODY_RESIZE && cc->resize && cc->resize->cols &&
      cc->resize->rows && cc->resize->cols <= TT_TERM_DIM_MAX && cc->resize->rows <= TT_TERM_DIM_MAX)
    rc = broker_rec_resize(r->rec, cc->resize->cols, cc->resize->rows);
  tt_msg_free(&msg);
  return rc;
}

/* Record what passes on a shell relay; nonzero = the relay was ended. */
static int record_data(relay_t *r, tt_chan_t *ch, const uint8_t *p, size_t n, uint8_t flags) {
  int rc = 0;
  if (ch == r->ach && !(flags & TT_FF_CTRL)) {
    if (flags & TT_FF_ZSTD) {
      relay_end(r, TT_EPROTO, "the device sent compressed shell output, which cannot be recorded");
      return 1;
    }
    if (n) rc = broker_rec_output(r->rec, p, n);
  } else if (ch == r->cch && (flags & TT_FF_CTRL)) {
    rc = record_control(r, p, n);
  }
  if (rc) {
    rec_error(r, rc);
    return 1;
  }
  return 0;
}

void relay_on_data(tt_mux_t *m, tt_chan_t *ch, const uint8_t *p, size_t n, uint8_t flags) {
  relay_t *r = ch->data;
  tt_link_t *ol;
  if (!r) return;
  tt_chan_t *o = other_side(r, ch, &ol);
  if (!o || o->state != TT_CH_OPEN) return;
  if (r->rec && record_data(r, ch, p, n, flags)) return;
  if (r->keep && ch == r->ach) {
    if (r->keep_waiting || (flags & (TT_FF_CTRL | TT_FF_ZSTD))) {
      relay_end(r, TT_EPROTO, "the device sent more than its report");
      return;
    }
    if (broker_diag_keep_data(r->keep, p, n)) {
      relay_end(r, TT_ETOOBIG, "the device's report is too large to keep");
      return;
    }
    if (flags & TT_FF_EOF) {
      /* The console's EOF waits until the report is stored and its D-n said. */
      flags &= (uint8_t)~TT_FF_EOF;
      r->keep_waiting = true;
      int krc = broker_diag_keep_finish(r->keep);
      if (krc) {
        relay_end(r, krc == TT_EPROTO ? krc : TT_EBUSY, "the broker could not keep the report");
        return;
      }
    }
  }
  if (r->files) {
    char why[TT_TEXT_MAX];
    int frc = broker_files_data(r->files, ch == r->ach, p, n, flags, why, sizeof(why));
    if (frc) {
      relay_end(r, frc, why);
      return;
    }
  }
  /* The window we granted this side is the one the other side granted us: this fits. */
  int rc = tt_mux_send(&ol->mux, o, p, n, flags);
  if (rc) {
    TT_WARN("relay", "relay send failed", "err=%s", tt_errname(rc));
    relay_end(r, rc, "relay failed");
    return;
  }
  if (ch == r->cch) r->bytes_up += n;
  else r->bytes_down += n;
  tt_link_flush(ol);
}

/* D-n then EOF to the console, once it has room for them (relay_on_credit retries). */
static void kept_say(relay_t *r) {
  Tether__ChannelControl cc = TETHER__CHANNEL_CONTROL__INIT;
  uint8_t buf[32];
  cc.body_case = TETHER__CHANNEL_CONTROL__BODY_ATTACHED;
  cc.attached = (uint64_t)r->kept_id;
  size_t n = tether__channel_control__pack(&cc, buf);
  if (!r->cch || r->cch->state != TT_CH_OPEN || tt_mux_sendable(r->cch) < n) return;
  tt_mux_t *m = &r->console->link->mux;
  if (tt_mux_send(m, r->cch, buf, n, TT_FF_CTRL) || tt_mux_send(m, r->cch, NULL, 0, TT_FF_EOF)) {
    relay_end(r, TT_EIO, "cannot tell the console where its report is kept");
    return;
  }
  r->kept_id = 0;
  tt_link_flush(r->console->link);
}

void relay_diag_kept(relay_t *r, int64_t id, int rc) {
  broker_diag_keep_t *k = r->keep;
  r->keep = NULL; /* freed by its completion, which is calling us */
  (void)k;
  if (rc) {
    relay_end(r, TT_EIO, "the broker could not keep the report on the ticket");
    return;
  }
  r->kept_id = id;
  kept_say(r);
}

void relay_on_credit(tt_mux_t *m, tt_chan_t *ch, uint32_t n) {
  relay_t *r = ch->data;
  tt_link_t *ol;
  if (!r) return;
  if (r->kept_id && ch == r->cch) kept_say(r);
  tt_chan_t *o = other_side(r, ch, &ol);
  if (!o || o->state != TT_CH_OPEN) return;
  /* A recording behind on the disk holds the shell: its output waits for the console's
   * credit, which waits here until the disk catches up. */
  if (r->rec && ch == r->cch && (r->held_credit || broker_rec_backlogged(r->rec))) {
    r->held_credit += n;
    if (!broker_rec_backlogged(r->rec)) rec_drained(r);
    return;
  }
  /* A files relay whose records wait for the store holds its credit, both ways: the peers
   * stop once their windows are spent, which bounds the bytes; files.c bounds the records. */
  if (r->files && broker_files_holding(r->files)) {
    if (ch == r->cch) r->held_credit += n;
    else r->held_up += n;
    return;
  }
  /* Credit that cannot be passed on would shrink the window for good: end the relay. */
  if (tt_mux_grant(&ol->mux, o, n)) {
    relay_end(r, TT_EFULL, "relay could not pass credit on");
    return;
  }
  tt_link_flush(ol);
}

void relay_on_close(tt_mux_t *m, tt_chan_t *ch, int code, const char *msg) {
  relay_t *r = ch->data;
  if (!r) return;
  /* ch is being freed by the mux: detach it, then end the other side. */
  if (ch == r->cch) r->cch = NULL;
  else r->ach = NULL;
  ch->data = NULL;
  relay_end(r, code, msg);
}

void relay_sweep(broker_t *b, uint64_t now) {
  for (relay_t *r = b->pending, *next; r; r = next) {
    next = r->next;
    if (now - r->opened_ms >= TT_OPEN_TIMEOUT_MS)
      relay_end(r, TT_ETIMEOUT, "the device did not answer in time");
  }
}
