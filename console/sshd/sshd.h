/* tether-sshd: the SSH front door. A libssh server on libuv that logs technicians in by the
 * ssh keys they registered with the broker and turns each SSH session channel into a Tether
 * session: the same ticket, consent, recording and audit as `tether shell`.
 *
 * It is its own process so that libssh's parsing never shares memory with the broker or a
 * CA key. It speaks to the broker over mTLS with a `gateway` certificate on two kinds of
 * link: one control link (main.c: its host key and address; the keys it may let in,
 * refreshed every second), and one link per SSH connection that, once the client proved
 * its key, asks the broker to act for that person (ActAs): from then on the broker treats
 * the link as the person's console.
 *
 * Files: main.c (config, host key, listener, pre-auth limits, the control link), blink.c
 * (a link to the broker with requests and answers), conn.c (one SSH connection: key
 * exchange, public-key authentication, its broker link), chan.c (one SSH session channel
 * bridged to one Tether shell or exec channel). */
#ifndef SSHD_H
#define SSHD_H

#include <stdbool.h>
#include <stdint.h>
#include <libssh/libssh.h>
#include <libssh/server.h>
#include <libssh/callbacks.h>
#include <uv.h>
#include "tt/backoff.h"
#include "tt/buf.h"
#include "tt/limits.h"
#include "tt/link.h"
#include "tt/sshkey.h"

#define SSHD_MOD "sshd"

/* Requests one broker link may have unanswered at once (a connection asks for its person,
 * its device and one session per channel). */
#define SSHD_PENDING_MAX 16u
/* Session channels one SSH connection may hold (OpenSSH's MaxSessions is 10). */
#define SSHD_CHANNELS_PER_CONN 8u
/* Output bytes for the SSH client held per channel beyond what libssh took (the Tether
 * channel's window bounds it anyway; this is the check). */
#define SSHD_OUTQ_MAX (TT_WINDOW_DEFAULT + 64u * 1024u)
/* Client input held in libssh's channel buffer beyond which the client is ignoring the
 * window libssh gave it (libssh grants about 1.25 MiB, and keeps what comes past it). */
#define SSHD_HELD_MAX (4u * 1024u * 1024u)
/* Time libssh may spend on one connection before it logs in (key exchange, signatures
 * checked): a client that makes it check expensive bad signatures is ended. */
#define SSHD_PREAUTH_CPU_NS (300u * 1000u * 1000u)
/* libssh rounds (each reads at most 4 KiB) run for one readiness of a connection's socket. */
#define SSHD_ROUNDS_PER_WAKEUP 32
/* What one read of buffered client input may take. */
#define SSHD_READ_CHUNK TT_DATA_CHUNK_MAX

typedef struct {
  char listen[256];       /* host:port to listen on */
  char advertise[256];    /* host:port people reach it at (tether ssh-config); default listen */
  char broker[256];
  char server_name[256];
  char ca[512];
  char cert[512];          /* a gateway certificate (tether-certs issue gateway NAME) */
  char key[512];
  char host_key[512];      /* ed25519, made at first start, 0600 */
  char user[64];           /* started as root: run as this user once the files are read */
  char spool_dir[512];     /* sftp: files on their way, whole, to or from a device */
  int64_t spool_max;       /* bytes of files being written that the spool holds at once */
  int64_t login_grace_ms;  /* from accept to authenticated */
  int64_t max_startups;    /* unauthenticated connections per source address */
  int64_t max_unauth;      /* unauthenticated connections in all */
  int64_t max_conns;       /* connections in all */
  int64_t auth_tries;      /* keys a connection may offer */
  int64_t max_per_person;  /* logged-in connections of one person */
  int64_t refresh_ms;      /* how often the key list is asked for */
  int64_t timeout_ms;      /* an answer from the broker */
  int log_level;
} sshd_cfg_t;

typedef struct sshd_s sshd_t;
typedef struct blink_s blink_t;
typedef struct gw_conn_s gw_conn_t;
typedef struct gw_chan_s gw_chan_t;
typedef struct sftp_s sftp_t;

/* -- blink.c: a link to the broker ------------------------------------------------------------ */

/* The answer to a request: r is NULL when the link went down first (why says how). */
typedef void (*blink_answer_fn)(blink_t *b, void *arg, const Tether__Response *r, const char *why);

typedef struct {
  void (*on_ready)(blink_t *b);                 /* welcomed: requests may go */
  void (*on_down)(blink_t *b, const char *why); /* gone; answers pending got r = NULL first */
  const tt_mux_cbs_t *mux;                      /* NULL: channels are refused */
} blink_cbs_t;

struct blink_s {
  sshd_t *d;
  tt_link_t *link;
  const blink_cbs_t *cbs;
  void *data;
  bool welcomed;
  uint32_t last_id;
  struct {
    uint32_t id;
    blink_answer_fn fn;
    void *arg;
  } pending[SSHD_PENDING_MAX];
  char why[TT_TEXT_MAX * 4 + 64]; /* the broker's Error text, when it sent one */
};

int blink_open(sshd_t *d, blink_t *b, const blink_cbs_t *cbs, void *data) TT_WUR;
/* Send a request; fn gets its answer (or NULL when the link goes first). */
int blink_request(blink_t *b, Tether__Request *r, blink_answer_fn fn, void *arg) TT_WUR;
/* Forget every answer for arg (its owner is going away). */
void blink_forget(blink_t *b, void *arg);
/* Close without callbacks: nothing of b is touched once this returns. */
void blink_close(blink_t *b, const char *why);
/* "message" of an Error answer, or what the code means. */
void blink_error_text(const Tether__Error *e, char *out, size_t cap);

/* -- main.c ---------------------------------------------------------------------------------- */

typedef struct {
  char fp[TT_SSH_FP_LEN + 1];
  char person[TT_NAME_MAX + 1];
} sshd_key_t;

struct sshd_s {
  uv_loop_t *loop;
  sshd_cfg_t cfg;
  tt_tls_ctx_t *tls;
  struct sockaddr_storage broker_addr;
  char broker_host[256];
  ssh_bind bind;
  char host_line[TT_SSH_KEY_LINE_MAX + 1]; /* "ssh-ed25519 BASE64" */
  char host_fp[TT_SSH_FP_LEN + 1];
  int listen_fd;
  uv_poll_t listen_poll;
  /* the control link */
  blink_t ctl;
  bool ctl_up;
  uv_timer_t ctl_timer;  /* refresh, or reconnect after backoff */
  uv_timer_t ctl_watch;  /* a key list asked for and not answered within timeout: reconnect */
  uv_timer_t accept_timer; /* out of descriptors: accepting resumes */
  tt_backoff_t backoff;
  uint64_t keys_version; /* 0: no list yet */
  sshd_key_t *keys;      /* sorted by fingerprint */
  size_t nkeys;
  /* connections */
  gw_conn_t *conns;
  uint32_t nconns, nunauth;
  uint64_t accepted;       /* connections accepted so far (their seq) */
  uint64_t spool_used;     /* sftp.c: bytes written into the spool and not yet gone */
  bool stopping;
  uv_signal_t sigint, sigterm;
};

/* The person whose key this is, or NULL. */
const char *sshd_key_person(const sshd_t *d, const char *fp);
/* Unauthenticated connections from the address (conn.c keeps the list). */
uint32_t sshd_unauth_from(const sshd_t *d, const char *addr);

/* -- conn.c: one SSH connection -------------------------------------------------------------- */

typedef enum {
  GW_KEX,      /* key exchange */
  GW_AUTH,     /* waiting for a valid signature */
  GW_LINKING,  /* authenticated: broker link, ActAs, the device */
  GW_READY,    /* acting for the person on the device */
  GW_FAILED,   /* a reason to tell every channel, then the end */
  GW_CLOSING,
} gw_state_t;

struct gw_conn_s {
  gw_conn_t *next;
  sshd_t *d;
  ssh_session ssh;
  ssh_event ev;
  int fd_poll;           /* a dup of libssh's socket, for uv_poll */
  uv_poll_t poll;
  int poll_events;
  uv_timer_t timer;      /* login grace; a failed one's linger; the deferred free */
  int handles;           /* open: poll and timer; freed when both are closed */
  gw_state_t state;
  bool authed;
  char addr[64];         /* the client's, "ip:port" */
  char ip[64];
  unsigned tries;         /* keys refused */
  unsigned probes;        /* keys asked about */
  uint64_t preauth_ns;    /* time libssh spent on it before it logged in */
  uint64_t seq;           /* accept order (make_room ends the oldest) */
  char user[TT_NAME_MAX * 2 + 8]; /* as the client gave it: DEVICE+T-n */
  char person[TT_NAME_MAX + 1];
  char fp[TT_SSH_FP_LEN + 1];
  char device[TT_NAME_MAX + 1];   /* as typed, then the id the broker resolved */
  char device_host[TT_TEXT_MAX + 1];
  uint32_t device_consent_ms;     /* its employee's time to answer (0: not said) */
  uint64_t ticket;
  char fail[TT_TEXT_MAX * 4 + 64]; /* GW_FAILED: what to tell the client */
  blink_t bl;
  bool bl_open;
  gw_chan_t *chans;
  uint32_t nchans;
  char refused[160];     /* forwarding asked for and refused, said on the next channel */
  struct ssh_server_callbacks_struct scb;
  bool in_ssh;           /* inside libssh (a callback): freeing waits */
  bool dead;             /* to be freed once out of libssh */
};

int gw_conn_accept(sshd_t *d, int fd, const struct sockaddr *peer);
/* End the connection (disconnect; freed once out of libssh's callbacks). */
void gw_conn_end(gw_conn_t *c, const char *why);
/* After writing to libssh from outside its callbacks: poll for what it now wants. */
void gw_conn_kick(gw_conn_t *c);
/* The connection is ready (GW_READY) or failed (GW_FAILED): channels go on. */
void gw_conn_settled(gw_conn_t *c);

/* -- chan.c: one SSH session channel --------------------------------------------------------- */

typedef enum {
  CH_NEW,     /* no shell, exec or subsystem asked for yet */
  CH_WAIT,    /* asked: waiting for the connection to settle, then for the session */
  CH_OPENING, /* the Tether channel is being opened */
  CH_RUN,
  CH_ENDING,  /* output drains, then exit status, EOF and close */
  CH_DONE,    /* closed towards the client; freed after this round */
} gw_chan_state_t;

/* Output for the client, in order: stdout, stderr, as the Tether channel gave it. */
typedef struct gw_out_s {
  struct gw_out_s *next;
  bool err;
  size_t len, off, credit; /* credit: Tether bytes acknowledged once it is written */
  uint8_t data[];
} gw_out_t;

struct gw_chan_s {
  gw_chan_t *next;
  gw_conn_t *c;
  ssh_channel sc;
  struct ssh_channel_callbacks_struct cb;
  gw_chan_state_t st;
  bool pty, exec;
  bool want_sftp;        /* the sftp subsystem: a files channel */
  sftp_t *sftp;          /* once the files channel is open */
  char term[TT_TERM_NAME_MAX + 1];
  uint32_t cols, rows;
  char *command;         /* exec: the line for the remote shell */
  tt_chan_t *tc;         /* the Tether channel, once opened */
  uint64_t session;
  gw_out_t *head, *tail;
  size_t queued;
  bool in_held;          /* client input left in libssh's buffer for want of credit */
  bool in_eof;           /* the client sent EOF */
  bool in_eof_sent;
  bool have_exit;
  int32_t exit_code;
  uint32_t exit_signal;
  uint32_t pending_signal;
  bool pending_resize;
  uv_timer_t note;       /* "waiting for the person at ..." after a second */
};

/* A new session channel (ssh_channel_new done here), or NULL past the limit. */
ssh_channel gw_chan_new(gw_conn_t *c);
/* End the channel now, telling the client why (on stderr) once its output is out. */
void gw_chan_end(gw_chan_t *h, const char *why);
/* The connection settled: channels waiting for it go on (or print c->fail and end). */
void gw_chan_go(gw_chan_t *h);
/* After each poll round: queued output and held input move if they can. */
void gw_chan_pump(gw_chan_t *h);
/* Let go of the Tether channel and libssh's (free_ssh: now; else with the session). Out of
 * libssh's callbacks only. */
void gw_chan_free(gw_chan_t *h, bool free_ssh);
/* sftp.c hands the client its replies, in order. */
void gw_chan_reply(gw_chan_t *h, const void *p, size_t n);
/* sftp.c: the channel cannot go on: say why and end it. */
void gw_chan_fail(gw_chan_t *h, const char *why);
/* Tether channel callbacks for a connection's broker link. */
extern const tt_mux_cbs_t gw_chan_mux_cbs;

/* -- sftp.c: the sftp subsystem on a files channel ------------------------------------------- */

int sftp_new(gw_chan_t *h, tt_link_t *link, tt_chan_t *tc, sftp_t **out) TT_WUR;
/* Closes the files channel (if open) and forgets every handle and spool file. */
void sftp_free(sftp_t *s);
struct tt_xfer_s *sftp_xfer(sftp_t *s);
/* Client bytes: how many were taken (fewer when replies or device requests are backed up). */
size_t sftp_input(sftp_t *s, const uint8_t *p, size_t n);
/* Bytes sftp_input would take whole now (0: its answers or the device are backed up). */
size_t sftp_room(const sftp_t *s);
/* Nothing waits on the device (an EOF from the client can end the channel). */
bool sftp_idle(const sftp_t *s);

#endif
