/* One SSH connection: libssh non-blocking on a uv_poll of a dup of its socket (libssh closes
 * its own descriptor whenever it likes; ours stays valid until the poll handle is closed).
 * Every readiness runs libssh for one round with a zero timeout (ssh_handle_key_exchange
 * until the keys are agreed, then ssh_event_dopoll), after which the poll asks for what
 * libssh now wants (ssh_get_poll_flags) and channels move what they can.
 *
 * Authentication is by public key only. The key's fingerprint must be one the broker listed
 * for an unrevoked person; a probe (no signature) of such a key is answered "go on", and
 * only a signature libssh verified (SSH_PUBLICKEY_STATE_VALID) logs in. A connection then
 * opens its own broker link and asks to act for the person (the broker checks again, in its
 * store), and resolves the DEVICE of the user name DEVICE+T-n. Until authenticated a
 * connection counts against its address's max_startups and the login grace timer. */
#include <arpa/inet.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "sshd.h"
#include "tt/addr.h"
#include "tt/cert.h"
#include "tt/log.h"
#include "tt/msg.h"

/* How long a failed connection (bad user name, refused by the broker) stays to say why on
 * a channel before it is dropped. */
#define FAILED_LINGER_MS 10000u

static void conn_after(gw_conn_t *c);
static void grace_cb(uv_timer_t *t);
static void device_answer(blink_t *b, void *arg, const Tether__Response *r, const char *why);

uint32_t sshd_unauth_from(const sshd_t *d, const char *ip) {
  uint32_t n = 0;
  for (const gw_conn_t *c = d->conns; c; c = c->next) n += !c->authed && c->state != GW_CLOSING && strcmp(c->ip, ip) == 0;
  return n;
}

/* -- ending ---------------------------------------------------------------------------------- */

static void handle_closed(uv_handle_t *h) {
  gw_conn_t *c = h->data;
  if (h == (uv_handle_t *)&c->poll) close(c->fd_poll);
  if (--c->handles == 0) free(c);
}

/* Out of every libssh callback (a timer): let go of libssh and the handles. */
static void conn_free(uv_timer_t *t) {
  gw_conn_t *c = t->data;
  sshd_t *d = c->d;
  for (gw_conn_t **p = &d->conns; *p; p = &(*p)->next)
    if (*p == c) {
      *p = c->next;
      break;
    }
  d->nconns--;
  while (c->chans) {
    gw_chan_t *h = c->chans;
    c->chans = h->next;
    gw_chan_free(h, false);
  }
  if (c->ev) {
    ssh_event_remove_session(c->ev, c->ssh);
    ssh_event_free(c->ev);
  }
  ssh_disconnect(c->ssh);
  ssh_free(c->ssh); /* closes libssh's descriptor */
  uv_poll_stop(&c->poll);
  uv_close((uv_handle_t *)&c->poll, handle_closed);
  uv_close((uv_handle_t *)&c->timer, handle_closed);
}

void gw_conn_end(gw_conn_t *c, const char *why) {
  if (c->state == GW_CLOSING) return;
  TT_INFO(SSHD_MOD, "connection ended", "address=%s person=%s why=\"%s\"", c->addr, c->person[0] ? c->person : "-", why);
  if (!c->authed) c->d->nunauth--;
  for (gw_chan_t *h = c->chans; h; h = h->next) gw_chan_end(h, why);
  c->state = GW_CLOSING;
  blink_close(&c->bl, why);
  uv_timer_stop(&c->timer);
  uv_timer_start(&c->timer, conn_free, 0, 0);
}

static void fail(gw_conn_t *c, const char *fmt, ...) TT_PRINTF(2, 3);
static void fail(gw_conn_t *c, const char *fmt, ...) {
  if (c->state == GW_CLOSING || c->state == GW_FAILED) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(c->fail, sizeof(c->fail), fmt, ap);
  va_end(ap);
  TT_WARN(SSHD_MOD, "session refused", "address=%s person=%s user=%s why=\"%s\"", c->addr, c->person, c->user, c->fail);
  c->state = GW_FAILED;
  gw_conn_settled(c);
  if (c->state != GW_CLOSING) uv_timer_start(&c->timer, grace_cb, FAILED_LINGER_MS, 0);
}

void gw_conn_settled(gw_conn_t *c) {
  for (gw_chan_t *h = c->chans; h;) {
    gw_chan_t *next = h->next;
    gw_chan_go(h);
    h = next;
  }
}

/* -- polling --------------------------------------------------------------------------------- */

static void on_poll(uv_poll_t *p, int status, int events);

void gw_conn_kick(gw_conn_t *c) {
  if (c->state == GW_CLOSING) return;
  int want = UV_READABLE | ((ssh_get_poll_flags(c->ssh) & SSH_WRITE_PENDING) ? UV_WRITABLE : 0);
  if (want == c->poll_events) return;
  c->poll_events = want;
  uv_poll_start(&c->poll, want, on_poll);
}

static void conn_after(gw_conn_t *c) {
  if (c->state == GW_CLOSING) return;
  int st = ssh_get_status(c->ssh);
  if ((st & (SSH_CLOSED | SSH_CLOSED_ERROR)) || !ssh_is_connected(c->ssh)) {
    gw_conn_end(c, c->authed ? "the client disconnected" : "closed before logging in");
    return;
  }
  for (gw_chan_t **p = &c->chans; *p && c->state != GW_CLOSING;) {
    gw_chan_t *h = *p;
    gw_chan_pump(h);
    if (h->st != CH_DONE) {
      p = &h->next;
      continue;
    }
    *p = h->next; /* closed towards the client: gone */
    gw_chan_free(h, true);
  }
  gw_conn_kick(c);
}

static void kex_step(gw_conn_t *c) {
  int rc = ssh_handle_key_exchange(c->ssh);
  if (rc == SSH_AGAIN) return;
  if (rc != SSH_OK) {
    TT_INFO(SSHD_MOD, "key exchange failed", "address=%s why=\"%s\"", c->addr, ssh_get_error(c->ssh));
    gw_conn_end(c, "key exchange failed");
    return;
  }
  c->state = GW_AUTH;
  if (!(c->ev = ssh_event_new()) || ssh_event_add_session(c->ev, c->ssh) != SSH_OK) {
    gw_conn_end(c, "out of memory");
    return;
  }
  ssh_event_dopoll(c->ev, 0); /* what came with the last packets of the exchange */
}

static void on_poll(uv_poll_t *p, int status, int events) {
  gw_conn_t *c = p->data;
  (void)events;
  if (c->state == GW_CLOSING) return;
  if (status < 0 && status != UV_EBADF) {
    gw_conn_end(c, uv_strerror(status));
    return;
  }
  uint64_t t0 = c->authed ? 0 : uv_hrtime();
  if (c->state == GW_KEX) kex_step(c);
  else if (c->ev) {
    /* libssh reads at most 4 KiB a round: a few rounds per wakeup while more is there, so a
     * bulk transfer is not one uv_poll wakeup per 4 KiB (bounded, for the others' turn). */
    for (int i = 0; i < SSHD_ROUNDS_PER_WAKEUP && c->state != GW_CLOSING; i++) {
      if (ssh_event_dopoll(c->ev, 0) != SSH_OK) break;
      if (!c->authed) break; /* before login: one round, under the pre-login budget */
    }
  }
  if (t0 && !c->authed && c->state != GW_CLOSING && (c->preauth_ns += uv_hrtime() - t0) > SSHD_PREAUTH_CPU_NS) {
    TT_WARN(SSHD_MOD, "pre-login work over budget", "address=%s tries=%u ms=%llu", c->addr, c->tries,
            (unsigned long long)(c->preauth_ns / 1000000u));
    gw_conn_end(c, "too much work before logging in");
  }
  conn_after(c);
}

static void grace_cb(uv_timer_t *t) {
  gw_conn_t *c = t->data;
  if (c->state == GW_FAILED) {
    gw_conn_end(c, c->fail);
    return;
  }
  if (!c->authed) {
    TT_INFO(SSHD_MOD, "login grace time over", "address=%s tries=%u", c->addr, c->tries);
    gw_conn_end(c, "login grace time over");
    return;
  }
  if (c->state == GW_LINKING) {
    fail(c, "the broker did not answer within %lld ms", (long long)c->d->cfg.timeout_ms);
    conn_after(c);
  }
}

/* -- the broker: act for the person, find the device ----------------------------------------- */

static void device_answer_do(blink_t *b, void *arg, const Tether__Response *r, const char *why) {
  gw_conn_t *c = arg;
  (void)b;
  char msg[TT_TEXT_MAX * 4 + 1];
  if (!r) {
    fail(c, "%s", why);
    return;
  }
  if (r->error) {
    blink_error_text(r->error, msg, sizeof(msg));
    if (r->error->code == TETHER__ERROR_CODE__ERR_NOT_FOUND) fail(c, "no device has the id or hostname %s", c->device);
    else fail(c, "%s", msg);
    return;
  }
  if (r->body_case != TETHER__RESPONSE__BODY_DEVICE || !r->device ||
      tt_text_copy(c->device, sizeof(c->device), r->device->device_id) || !c->device[0]) {
    fail(c, "the broker's answer does not name a device");
    return;
  }
  if (tt_text_copy(c->device_host, sizeof(c->device_host), r->device->hostname)) c->device_host[0] = '\0';
  c->device_consent_ms = r->device->consent_timeout_ms;
  c->state = GW_READY;
  uv_timer_stop(&c->timer);
  TT_INFO(SSHD_MOD, "logged in", "address=%s person=%s key=%s device=%s ticket=T-%" PRIu64, c->addr, c->person, c->fp,
          c->device, c->ticket);
  gw_conn_settled(c);
  conn_after(c);
}

static void acting_answer_do(blink_t *b, void *arg, const Tether__Response *r, const char *why) {
  gw_conn_t *c = arg;
  char msg[TT_TEXT_MAX * 4 + 1];
  if (!r) {
    fail(c, "%s", why);
    return;
  }
  if (r->error) {
    blink_error_text(r->error, msg, sizeof(msg));
    fail(c, "%s", msg);
    return;
  }
  Tether__DeviceShowRequest q = TETHER__DEVICE_SHOW_REQUEST__INIT;
  q.device_id = tt_text(c->device);
  q.resolve = true;
  Tether__Request rq = TETHER__REQUEST__INIT;
  rq.body_case = TETHER__REQUEST__BODY_DEVICE_SHOW;
  rq.device_show = &q;
  int rc = blink_request(b, &rq, device_answer, c);
  if (rc) fail(c, "cannot ask the broker: %s", tt_strerror(rc));
}

/* Answers come from the uv loop, never from inside libssh: channels may move at once. */
static void device_answer(blink_t *b, void *arg, const Tether__Response *r, const char *why) {
  device_answer_do(b, arg, r, why);
  conn_after(arg);
}

static void acting_answer(blink_t *b, void *arg, const Tether__Response *r, const char *why) {
  acting_answer_do(b, arg, r, why);
  conn_after(arg);
}

static void bl_ready(blink_t *b) {
  gw_conn_t *c = b->data;
  Tether__ActAsRequest q = TETHER__ACT_AS_REQUEST__INIT;
  q.person = tt_text(c->person);
  q.fingerprint = tt_text(c->fp);
  q.address = tt_text(c->addr);
  Tether__Request r = TETHER__REQUEST__INIT;
  r.body_case = TETHER__REQUEST__BODY_ACT_AS;
  r.act_as = &q;
  int rc = blink_request(b, &r, acting_answer, c);
  if (rc) fail(c, "cannot ask the broker: %s", tt_strerror(rc));
}

/* The broker ended the link: a revoked person or key, or the broker is gone. Whatever runs
 * ends now, with the reason on each channel. */
static void bl_down(blink_t *b, const char *why) {
  gw_conn_t *c = b->data;
  if (c->state == GW_CLOSING) return;
  if (c->state == GW_READY) {
    TT_WARN(SSHD_MOD, "broker ended the person's link", "address=%s person=%s why=\"%s\"", c->addr, c->person, why);
    c->state = GW_LINKING; /* so that fail() takes it */
  }
  fail(c, "%s", why);
  conn_after(c);
}

static const blink_cbs_t conn_blink_cbs = {.on_ready = bl_ready, .on_down = bl_down, .mux = &gw_chan_mux_cbs};

/* DEVICE+T-n (or DEVICE+n): the last '+' splits. */
static int parse_user(gw_conn_t *c) {
  const char *plus = strrchr(c->user, '+');
  if (!plus || plus == c->user) return TT_EINVAL;
  size_t dl = (size_t)(plus - c->user);
  if (dl > TT_NAME_MAX) return TT_EINVAL;
  memcpy(c->device, c->user, dl);
  c->device[dl] = '\0';
  const char *t = plus + 1;
  if ((t[0] == 'T' || t[0] == 't') && t[1] == '-') t += 2;
  if (!*t || strspn(t, "0123456789") != strlen(t) || strlen(t) > 15) return TT_EINVAL;
  c->ticket = strtoull(t, NULL, 10);
  return c->ticket ? 0 : TT_EINVAL;
}

static void start_linking(gw_conn_t *c) {
  c->state = GW_LINKING;
  if (parse_user(c)) {
    fail(c, "log in as DEVICE+T-n, the device and the ticket the work is for (ssh %s+T-3@...); '%s' is not that",
         "sams-laptop", c->user);
    return;
  }
  int rc = blink_open(c->d, &c->bl, &conn_blink_cbs, c);
  if (rc) fail(c, "cannot reach the broker: %s", tt_strerror(rc));
}

/* -- libssh callbacks ------------------------------------------------------------------------ */

static int key_fingerprint(ssh_key key, char *fp, size_t cap) {
  char *b64 = NULL;
  if (ssh_pki_export_pubkey_base64(key, &b64) != SSH_OK || !b64) return TT_EINVAL;
  const char *type = ssh_key_type_to_char(ssh_key_type(key));
  static char line[TT_SSH_KEY_LINE_MAX + 1];
  int n = snprintf(line, sizeof(line), "%s %s", type ? type : "?", b64);
  ssh_string_free_char(b64);
  if (n < 0 || (size_t)n >= sizeof(line)) return TT_ETOOBIG;
  static tt_sshkey_t k;
  char why[160];
  if (tt_sshkey_parse(line, (size_t)n, &k, why, sizeof(why))) return TT_EINVAL;
  snprintf(fp, cap, "%s", k.fingerprint);
  return 0;
}

static int auth_pubkey(ssh_session s, const char *user, struct ssh_key_struct *pubkey, char state, void *ud) {
  gw_conn_t *c = ud;
  (void)s;
  if (c->authed || (c->state != GW_AUTH && c->state != GW_KEX)) return SSH_AUTH_DENIED;
  /* Every key asked about counts: a registered key's probe is answered, so without a bound
   * anyone could test many public keys for being registered. */
  if (++c->probes > 2u * (unsigned)c->d->cfg.auth_tries) {
    gw_conn_end(c, "too many keys offered");
    return SSH_AUTH_DENIED;
  }
  char fp[TT_SSH_FP_LEN + 1] = "";
  const char *person = NULL;
  if (!key_fingerprint(pubkey, fp, sizeof(fp))) person = sshd_key_person(c->d, fp);
  if (person && state == SSH_PUBLICKEY_STATE_NONE) return SSH_AUTH_SUCCESS; /* "go on and sign" */
  if (!person || state != SSH_PUBLICKEY_STATE_VALID) {
    c->tries++;
    TT_INFO(SSHD_MOD, "key refused", "address=%s key=%s why=%s tries=%u", c->addr, fp[0] ? fp : "-",
            !person ? "not registered" : "signature not verified", c->tries);
    if (c->tries >= (unsigned)c->d->cfg.auth_tries) gw_conn_end(c, "too many keys offered");
    return SSH_AUTH_DENIED;
  }
  uint32_t mine = 0;
  for (const gw_conn_t *o = c->d->conns; o; o = o->next) mine += o->authed && o->state != GW_CLOSING && strcmp(o->person, person) == 0;
  if (mine >= (uint32_t)c->d->cfg.max_per_person) {
    TT_WARN(SSHD_MOD, "key refused", "address=%s key=%s why=\"%s holds %u connections (max_per_person)\"", c->addr, fp,
            person, mine);
    gw_conn_end(c, "too many connections for this person");
    return SSH_AUTH_DENIED;
  }
  if (!user || strlen(user) >= sizeof(c->user)) {
    snprintf(c->user, sizeof(c->user), "?");
  } else {
    snprintf(c->user, sizeof(c->user), "%s", user);
  }
  snprintf(c->person, sizeof(c->person), "%s", person);
  memcpy(c->fp, fp, sizeof(c->fp));
  c->authed = true;
  c->d->nunauth--;
  uv_timer_stop(&c->timer);
  uv_timer_start(&c->timer, grace_cb, (uint64_t)c->d->cfg.timeout_ms, 0); /* the broker's answers */
  TT_INFO(SSHD_MOD, "key verified", "address=%s person=%s key=%s user=%s", c->addr, c->person, c->fp, c->user);
  start_linking(c);
  return SSH_AUTH_SUCCESS;
}

static ssh_channel chan_open(ssh_session s, void *ud) {
  gw_conn_t *c = ud;
  (void)s;
  if (!c->authed || c->state == GW_CLOSING) return NULL;
  return gw_chan_new(c);
}

/* Anything the callbacks do not take: forwarding of ports, agents and X11, other channel
 * types, global requests. Refused (the default answer), logged, and said on the session. */
static int on_message(ssh_session s, ssh_message m, void *ud) {
  gw_conn_t *c = ud;
  (void)s;
  int type = ssh_message_type(m), sub = ssh_message_subtype(m);
  const char *what = NULL;
  if (type == SSH_REQUEST_CHANNEL_OPEN && (sub == SSH_CHANNEL_DIRECT_TCPIP || sub == SSH_CHANNEL_FORWARDED_TCPIP))
    what = "port forwarding";
  else if (type == SSH_REQUEST_GLOBAL && (sub == SSH_GLOBAL_REQUEST_TCPIP_FORWARD))
    what = "port forwarding";
  else if (type == SSH_REQUEST_CHANNEL_OPEN && sub == SSH_CHANNEL_X11)
    what = "X11 forwarding";
  else if (type == SSH_REQUEST_CHANNEL && sub == SSH_CHANNEL_REQUEST_X11)
    what = "X11 forwarding";
  else if (type == SSH_REQUEST_CHANNEL_OPEN && sub == SSH_CHANNEL_AUTH_AGENT)
    what = "agent forwarding";
  if (what) {
    TT_INFO(SSHD_MOD, "forwarding refused", "address=%s person=%s what=\"%s\"", c->addr, c->person, what);
    snprintf(c->refused, sizeof(c->refused), "%s is not allowed through Tether", what);
  }
  return 1; /* the default reply: refused */
}

/* -- accept ---------------------------------------------------------------------------------- */

static uint64_t g_refused, g_refused_logged_ms;

static bool refuse(sshd_t *d, const char *ip, const char *why) {
  g_refused++;
  uint64_t now = uv_now(d->loop);
  if (now - g_refused_logged_ms >= 1000 || g_refused_logged_ms == 0) {
    TT_WARN(SSHD_MOD, "connection refused", "address=%s why=\"%s\" refused_so_far=%" PRIu64, ip, why, g_refused);
    g_refused_logged_ms = now ? now : 1;
  }
  return true;
}

/* The oldest connection not logged in, of the source that holds most of them (not ip's own
 * unless it holds the most): ended to make room. false when there is none to end. */
static int by_ip_then_age(const void *a, const void *b) {
  const gw_conn_t *x = *(const gw_conn_t *const *)a, *y = *(const gw_conn_t *const *)b;
  int c = strcmp(x->ip, y->ip);
  return c ? c : (x->seq > y->seq) - (x->seq < y->seq);
}

static bool make_room(sshd_t *d, const char *ip) {
  /* Sorted by source, oldest first within one: the longest run is the busiest source, and
   * its head the one to end (n log n: this runs at accept while the gateway is full). */
  gw_conn_t **v = malloc(d->nunauth * sizeof(*v));
  size_t n = 0;
  if (!v) return false;
  for (gw_conn_t *c = d->conns; c && n < d->nunauth; c = c->next)
    if (!c->authed && c->state != GW_CLOSING) v[n++] = c;
  qsort(v, n, sizeof(*v), by_ip_then_age);
  gw_conn_t *victim = NULL;
  size_t most = 0;
  for (size_t i = 0, j; i < n; i = j) {
    for (j = i + 1; j < n && strcmp(v[j]->ip, v[i]->ip) == 0; j++) {}
    if (j - i > most) {
      most = j - i;
      victim = v[i];
    }
  }
  free(v);
  if (!victim || (most <= 1 && strcmp(victim->ip, ip) == 0)) return false;
  TT_INFO(SSHD_MOD, "connection dropped for room", "address=%s holds=%zu newcomer=%s", victim->addr, most, ip);
  gw_conn_end(victim, "dropped to make room (max_unauth)");
  return true;
}

int gw_conn_accept(sshd_t *d, int fd, const struct sockaddr *peer) {
  char addr[64], ip[64];
  tt_addr_format(peer, addr, sizeof(addr));
  /* The source as the limits count it: an IPv4 address, or an IPv6 /64 (one host holds a
   * whole /64). */
  if (peer->sa_family == AF_INET) {
    inet_ntop(AF_INET, &((const struct sockaddr_in *)peer)->sin_addr, ip, sizeof(ip));
  } else if (peer->sa_family == AF_INET6) {
    struct in6_addr a = ((const struct sockaddr_in6 *)peer)->sin6_addr;
    memset(a.s6_addr + 8, 0, 8);
    inet_ntop(AF_INET6, &a, ip, sizeof(ip) - 4);
    strcat(ip, "/64");
  } else {
    snprintf(ip, sizeof(ip), "?");
  }
  if (d->nconns >= (uint32_t)d->cfg.max_conns && refuse(d, ip, "max_conns")) return TT_EFULL;
  if (sshd_unauth_from(d, ip) >= (uint32_t)d->cfg.max_startups && refuse(d, ip, "max_startups")) return TT_EFULL;
  /* Full of connections not logged in: the oldest of the source holding most makes room, so
   * that a few addresses that hold their share cannot keep everyone else out. */
  if (d->nunauth >= (uint32_t)d->cfg.max_unauth && !make_room(d, ip)) {
    refuse(d, ip, "max_unauth");
    return TT_EFULL;
  }
  gw_conn_t *c = calloc(1, sizeof(*c));
  if (!c) return TT_ENOMEM;
  c->d = d;
  snprintf(c->addr, sizeof(c->addr), "%s", addr);
  snprintf(c->ip, sizeof(c->ip), "%s", ip);
  c->fd_poll = dup(fd);
  c->ssh = ssh_new();
  if (c->fd_poll < 0 || !c->ssh) {
    if (c->fd_poll >= 0) close(c->fd_poll);
    ssh_free(c->ssh);
    free(c);
    return TT_ENOMEM;
  }
  if (ssh_bind_accept_fd(d->bind, c->ssh, fd) != SSH_OK) {
    TT_WARN(SSHD_MOD, "libssh refused the connection", "address=%s why=\"%s\"", addr, ssh_get_error(d->bind));
    ssh_free(c->ssh); /* it holds fd now */
    close(c->fd_poll);
    free(c);
    return 0;
  }
  ssh_set_blocking(c->ssh, 0);
  ssh_callbacks_init(&c->scb);
  c->scb.userdata = c;
  c->scb.auth_pubkey_function = auth_pubkey;
  c->scb.channel_open_request_session_function = chan_open;
  ssh_set_server_callbacks(c->ssh, &c->scb);
  ssh_set_auth_methods(c->ssh, SSH_AUTH_METHOD_PUBLICKEY);
  ssh_set_message_callback(c->ssh, on_message, c);
  uv_poll_init(d->loop, &c->poll, c->fd_poll);
  uv_timer_init(d->loop, &c->timer);
  c->handles = 2;
  c->poll.data = c->timer.data = c;
  c->next = d->conns;
  d->conns = c;
  d->nconns++;
  d->nunauth++;
  c->seq = ++d->accepted;
  c->state = GW_KEX;
  uv_timer_start(&c->timer, grace_cb, (uint64_t)d->cfg.login_grace_ms, 0);
  TT_DEBUG(SSHD_MOD, "connection", "address=%s", addr);
  kex_step(c); /* sends our banner */
  conn_after(c);
  return 0;
}
