/* tether-agent: shared types of the agent's modules. */
#ifndef AGENT_H
#define AGENT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include "tt/backoff.h"
#include "tt/cert.h"
#include "tt/checks.h"
#include "tt/link.h"
#include "tt/limits.h"
#include "tt/pki.h"

#define AGENT_PATH_MAX 512

/* Files in the state directory (made by `tether-agent enroll`). */
#define AGENT_CA_FILE "ca.pem"
#define AGENT_CERT_FILE "device.pem"
#define AGENT_KEY_FILE "device.key"
#define AGENT_HOSTNAME_FILE "hostname" /* the --hostname given at enrollment, if any */
#define AGENT_STATE_DIR_DEFAULT "/var/lib/tether-agent"

/* A certificate the broker sends us (enrollment, renewal) as PEM: one P-256 certificate is
 * under 1 KiB; anything near this is not ours. */
#define AGENT_PEM_MAX (16u * 1024u)
/* Enrollment tokens as an admin hands them out ("tt1_" + 64 hex); bounded generously. */
#define AGENT_TOKEN_MAX 255u

#define AGENT_CONSENT_SOCKET_DEFAULT "/run/tether-agent/consent.sock"
#define AGENT_USERS_MAX 255u   /* consent.users: a comma-separated list of names */
#define AGENT_DIALOG_MAX 1023u /* consent.dialog: a /bin/sh -c command */
#define AGENT_FILES_LIST_TEXT_MAX 4095u /* files.roots, files.read_only: comma-separated paths */
#define AGENT_INV_PATH_MAX 1023u /* inventory.path: a PATH for the collectors' helper programs */
#define AGENT_DNS_NAMES_TEXT_MAX 1023u /* diag.dns_names: comma-separated host names */
/* A diagnostics report pings the broker first, for its round trip: this long at most. */
#define AGENT_DIAG_PING_WAIT_MS 2000u
/* A clock further than this from the broker's is logged at connect: TLS certificates carry
 * TT_PKI_BACKDATE_SECONDS of slack, and a minute is already past what NTP leaves. */
#define AGENT_CLOCK_SKEW_WARN_MS (60 * 1000)

/* consent.policy: what to answer when there is no one to ask. */
typedef enum { AGENT_POLICY_ASK = 0, AGENT_POLICY_UNATTENDED = 1, AGENT_POLICY_DENY = 2 } agent_policy_t;

/* shell.containment: how the processes of a session are kept together (contain.c). */
typedef enum { AGENT_CONTAIN_AUTO = 0, AGENT_CONTAIN_CGROUP = 1, AGENT_CONTAIN_SUBREAPER = 2 } agent_containment_t;

/* A cgroup directory: the mount point, the agent's own group (systemd names nest a few
 * levels deep), then tether-sessions.PID/S-N/pN. */
#define AGENT_CGROUP_PATH_MAX 1024u

typedef struct {
  char broker[256];
  char server_name[256];
  char ca[AGENT_PATH_MAX];
  char cert[AGENT_PATH_MAX];
  char key[AGENT_PATH_MAX];
  char state_dir[AGENT_PATH_MAX];
  char hostname[TT_NAME_MAX + 1];
  char token[AGENT_TOKEN_MAX + 1]; /* secret: never logged */
  char ca_pin[128];
  int64_t enroll_timeout_ms;
  int64_t backoff_base_ms;
  int64_t backoff_max_ms;
  int64_t handshake_timeout_ms;
  int log_level;
  /* consent and shells (consent.c, shell.c) */
  char consent_socket[AGENT_PATH_MAX];
  char consent_users[AGENT_USERS_MAX + 1];
  int consent_policy; /* agent_policy_t */
  int64_t consent_timeout_ms;
  int64_t inventory_interval_ms;
  char inventory_path[AGENT_INV_PATH_MAX + 1];   /* PATH for the collectors' helpers */
  char diag_dns_names[AGENT_DNS_NAMES_TEXT_MAX + 1]; /* "" : the broker's host and ours */
  char inventory_root[AGENT_PATH_MAX]; /* "": this machine's / */
  char consent_dialog[AGENT_DIALOG_MAX + 1];
  char shell_user[TT_NAME_MAX + 1];
  char shell_path[AGENT_PATH_MAX];
  int containment; /* agent_containment_t */
  /* files (files/): comma-separated absolute paths */
  char files_roots[AGENT_FILES_LIST_TEXT_MAX + 1];
  char files_read_only[AGENT_FILES_LIST_TEXT_MAX + 1];
  /* upgrades (upgrade/) */
  char upgrade_release_keys[AGENT_PATH_MAX];
  char upgrade_install[AGENT_PATH_MAX];
  char upgrade_launcher[16];
} agent_cfg_t;

/* version.c: the version this agent reports (TT_VERSION; the test suite builds one more). */
extern const char agent_version[];

/* ---- ident.c: what our certificate says, and checks on one the broker issued ---------- */

typedef struct {
  char device_id[TT_NAME_MAX + 1];
  int64_t not_before_ms, not_after_ms; /* unix ms */
} agent_ident_t;

/* Device id (role agent required) and validity of x. TT_ECERT otherwise. */
int agent_ident_read(X509 *x, agent_ident_t *out) TT_WUR;
/* One PEM certificate from a peer's bytes (at most AGENT_PEM_MAX). */
int agent_pem_cert(const uint8_t *pem, size_t len, X509 **out) TT_WUR;
/* A certificate the broker issued us: key is the one we made for it, it names role agent
 * and device_id (any id if NULL), it is valid now as a TLS client certificate and chains
 * to ca_file (or ca, if ca_file is NULL). Fills out on success. */
int agent_cert_check(X509 *cert, EVP_PKEY *key, X509 *ca, const char *ca_file, const char *device_id,
                     agent_ident_t *out, char *err, size_t errlen) TT_WUR;
/* "2026-11-23T18:04:17Z" */
void agent_fmt_time(char *out, size_t cap, int64_t unix_ms);
int64_t agent_unix_ms(void);

/* ---- state.c: the state directory and atomic replacement of files in it --------------- */

/* One file of a commit: exactly one of cert, key and text is set. */
typedef struct {
  const char *path;
  X509 *cert;
  EVP_PKEY *key;
  const char *text; /* a line, written 0644 */
} agent_file_t;

/* "dir/name" into out; TT_ETOOBIG if it does not fit. */
int agent_path(char *out, size_t cap, const char *dir, const char *name) TT_WUR;
/* Make dir (0700) if missing, refuse one others may write to, and take an exclusive lock
 * on it for as long as *lock_fd stays open, so that two agents (or an enroll and a running
 * agent) never write the same identity. */
int agent_state_open(const char *dir, bool create, int *lock_fd, char *err, size_t errlen) TT_WUR;
/* Write every file under a temporary name, fsync, then rename them into place in the
 * given order and fsync the directories. Nothing is renamed unless all were written. */
int agent_state_commit(const agent_file_t *files, size_t n, char *err, size_t errlen) TT_WUR;
/* Finish or undo a commit that a crash cut short (see state.c). ca and name may be NULL. */
void agent_state_recover(const char *key_path, const char *cert_path, const char *ca_path,
                         const char *name_path);
/* The one-line text file at path into out (a name: at most cap-1 of [A-Za-z0-9._@-]);
 * out is empty if there is none or it is not a name. */
void agent_state_read_name(const char *path, char *out, size_t cap);

/* ---- reqs.c: requests we sent the broker, waiting for their Response ------------------ */

#define AGENT_REQS_MAX 8u

/* r is NULL when err is set: TT_ETIMEOUT, or TT_ECLOSED when the link went away. */
typedef void (*agent_reply_cb)(void *data, const Tether__Response *r, int err);

typedef struct {
  uint32_t id; /* 0 = free */
  uint64_t deadline; /* uv_now ms */
  agent_reply_cb cb;
  void *data;
} agent_req_t;

typedef struct {
  agent_req_t slot[AGENT_REQS_MAX];
  uint32_t next_id;
  uv_timer_t timer;
} agent_reqs_t;

void agent_reqs_init(agent_reqs_t *t, uv_loop_t *loop);
/* Fails what is pending with TT_ECLOSED and closes the timer. */
void agent_reqs_close(agent_reqs_t *t);
/* Sets q->id, sends it and remembers cb. TT_EFULL if AGENT_REQS_MAX are pending. If this
 * fails, cb is never called. */
int agent_reqs_send(agent_reqs_t *t, tt_link_t *l, Tether__Request *q, uint64_t timeout_ms,
                    agent_reply_cb cb, void *data) TT_WUR;
/* Hand a Response to whoever waits for its id. */
void agent_reqs_dispatch(agent_reqs_t *t, const Tether__Response *r);
void agent_reqs_fail_all(agent_reqs_t *t, int err);

/* ---- consent.c: the local consent socket, prompts and the sessions live here ---------- */

/* Sessions granted here at once, and consent prompts waiting at once: the broker holds
 * them to TT_SESSIONS_PER_DEVICE_MAX and TT_CONSENT_PENDING_PER_DEVICE_MAX; room for twice
 * that absorbs a broker's view lagging ours, and past it we say busy. */
#define AGENT_SESSIONS_MAX (2u * TT_SESSIONS_PER_DEVICE_MAX)
#define AGENT_PROMPTS_MAX (2u * TT_CONSENT_PENDING_PER_DEVICE_MAX)

typedef struct {
  uint64_t id; /* 0 = free */
  uint64_t ticket;
  uint32_t access;      /* Access bits */
  uint64_t deadline;    /* uv_now ms: the grant ends here even if the broker says nothing */
  int64_t expires_ms;   /* unix ms, for display */
  bool unattended;
  char technician[TT_NAME_MAX + 1];
  char summary[TT_TEXT_MAX + 1];
} agent_session_t;

typedef struct agent_consent_s agent_consent_t;

/* ---- the running agent --------------------------------------------------------------- */

typedef struct {
  uv_timer_t timer;
  int64_t next_ms;   /* unix ms of the next attempt */
  bool in_flight;    /* a RenewRequest is out */
  EVP_PKEY *key;     /* the new key of the request in flight */
  char last_error[TT_TEXT_MAX + 1]; /* why the last attempt failed; "" after a success */
} agent_renew_t;

typedef struct agent_s {
  uv_loop_t *loop;
  agent_cfg_t cfg;
  tt_tls_ctx_t *tls;
  tt_tls_ctx_t *tls_next; /* built after a renewal; replaces tls at the next connect */
  tt_link_t *link;      /* NULL while disconnected */
  bool welcomed;
  bool stopping;
  uint32_t retry_after_ms; /* from the broker's last Error, honoured once */
  tt_backoff_t backoff;
  uv_timer_t retry;
  uv_signal_t sigint, sigterm;
  char broker_name[TT_NAME_MAX + 1];
  uint64_t connects;
  agent_ident_t ident;  /* our certificate, as last loaded or renewed */
  agent_reqs_t reqs;
  agent_renew_t renew;
  int state_lock;       /* fd locking the state directory, -1 if not used */
  agent_consent_t *consent;
  struct agent_shells_s *shells;
  struct agent_contain_s *contain;
  struct agent_files_s *files;
  struct agent_inv_s *inv;
  struct agent_checks_s *checks;
  tt_checks_conf_t checks_local; /* the checks' defaults with the config file's checks.* (main.c) */
  struct agent_help_s *help;
  struct agent_upgrade_s *upgrade;
  /* What the link showed, for a diagnostics report's broker_connection and time_skew
   * (conn.c): when Hello went and Welcome came (uv_hrtime; unix ms), the broker's clock
   * at that Welcome (estimated as its server_time_ms plus half the round trip, good to
   * +- clock_error_ms), its heartbeat. */
  uint64_t hello_hr;
  int64_t welcome_unix_ms;
  uint64_t welcome_hr;
  bool clock_known;
  int64_t clock_broker_ms, clock_error_ms;
  uint32_t heartbeat_ms;
  uint64_t ping_nonce;               /* the last Ping this agent sent (for a report) */
  struct agent_dchan_s *diag_waiting; /* reports waiting for that Ping's answer (inv/serve.c) */
} agent_t;

/* consent.c. init opens the local socket (a failure is logged: the agent still serves,
 * with the policy and dialog as the only answers). */
void agent_consent_init(agent_t *a);
void agent_consent_close(agent_t *a);
/* Broker -> agent Requests: consent and session_end. Each is answered with a Response of
 * the same id (now or once someone answers). */
void agent_consent_request(agent_t *a, const Tether__Request *q);
void agent_session_end_request(agent_t *a, const Tether__Request *q);
/* The link went down: prompts are cancelled, every session ends here. */
void agent_consent_link_down(agent_t *a);
/* Tell every WATCH client on the local socket (the employee's prompts) what is going on:
 * one protocol line, printf-style. */
void agent_consent_notice(agent_t *a, const char *fmt, ...) TT_PRINTF(2, 3);
/* A consent.dialog process the agent runs right now (contain.c leaves it alone). */
bool agent_consent_owns_pid(agent_t *a, pid_t pid);
/* A session granted here, live and not past its deadline; NULL otherwise. */
const agent_session_t *agent_session_find(agent_t *a, uint64_t id);
/* "S-4" or "4" -> 4; 0 if not a session id (zero, a leading zero, anything else, too big). */
uint64_t agent_parse_id(const char *s, char prefix);

/* Local clients (consent.c) by serial, for answers that come later: one protocol line to the
 * client (dropped if it went away), and one line to every WATCH client of a local user. */
void agent_local_reply(agent_t *a, uint64_t client, const char *fmt, ...) TT_PRINTF(3, 4);
void agent_local_tell_user(agent_t *a, const char *user, const char *fmt, ...) TT_PRINTF(3, 4);

/* ---- employee/help.c: the employee's help requests (ask, tickets, comment) ---------------- */

/* At start: the requests kept while offline are loaded (state_dir/help-queue). */
void agent_help_init(agent_t *a);
/* Welcomed: what is queued goes, oldest first. */
void agent_help_welcomed(agent_t *a);
void agent_help_close(agent_t *a);
void agent_help_free(agent_t *a);
/* A local client's ASK, TICKETS or COMMENT (user: its account); false if cmd is not one. */
bool agent_help_local(agent_t *a, uint64_t client, const char *user, const char *cmd, char *arg);
/* Broker -> agent: a notice for the person (answered at once). */
void agent_help_notice_request(agent_t *a, const Tether__Request *q);

/* ---- shell.c: shell and exec channels inside sessions ---------------------------------- */

void agent_shell_init(agent_t *a);
void agent_shell_close(agent_t *a);
/* A SHELL or EXEC ChannelOpen: accepted (with a process) or rejected. */
void agent_shell_open(tt_mux_t *m, tt_chan_t *ch, const Tether__ChannelOpen *msg);
/* Close every channel of the session with why as the close message; their processes get
 * SIGHUP, then SIGKILL. */
void agent_shell_end_session(agent_t *a, uint64_t session, const char *why);
/* Mux callbacks for a channel whose data is a shell's. */
bool agent_shell_owns(const tt_chan_t *ch);
void agent_shell_data(tt_mux_t *m, tt_chan_t *ch, const uint8_t *p, size_t n, uint8_t flags);
void agent_shell_credit(tt_mux_t *m, tt_chan_t *ch);
void agent_shell_chan_closed(tt_mux_t *m, tt_chan_t *ch, int code, const char *msg);

/* A shell or command process of ours not yet reaped (in subreaper mode, its keeper): the
 * session it runs under, or 0. */
uint64_t agent_shell_session_of(agent_t *a, pid_t pid);

/* ---- files/serve.c: file channels inside sessions (files/files.h: the rest of files/) -- */

/* At start, before anything can open a channel: the roots (a mistake in files.roots or
 * files.read_only is TT_ECONFIG with why in err), shell.user's identity and the transfer
 * pool. A device where the identity cannot be had starts with file access off, and says
 * why to whoever asks for a file channel. */
int agent_files_init(agent_t *a, char *err, size_t errlen) TT_WUR;
/* The agent stops: every file channel closes. */
void agent_files_close(agent_t *a);
/* After the loop: the pool stops, the rest is freed. */
void agent_files_free(agent_t *a);
/* A FILES ChannelOpen: accepted inside a session with file access, or rejected. */
void agent_files_open(tt_mux_t *m, tt_chan_t *ch, const Tether__ChannelOpen *msg);
/* Close every file channel of the session with why as the close message. */
void agent_files_end_session(agent_t *a, uint64_t session, const char *why);
/* Mux callbacks for a channel whose data is a file channel's. */
bool agent_files_owns(const tt_chan_t *ch);
void agent_files_data(tt_mux_t *m, tt_chan_t *ch, const uint8_t *p, size_t n, uint8_t flags);
void agent_files_credit(tt_mux_t *m, tt_chan_t *ch);
void agent_files_chan_closed(tt_mux_t *m, tt_chan_t *ch, int code, const char *msg);

/* ---- inv/push.c: the inventory, collected on a timer and pushed to the broker --------- */

void agent_inv_init(agent_t *a);
/* Welcomed: offer what was collected (collecting first if nothing is, or it is stale). */
void agent_inv_welcomed(agent_t *a);
/* A shell or exec ended: collect again shortly (debounced, at most one per 10 s), so that
 * what a session changed is in the inventory and its diff. */
void agent_inv_soon(agent_t *a);
void agent_inv_close(agent_t *a);
void agent_inv_free(agent_t *a);

/* ---- inv/serve.c: the diagnostics report channel ------------------------------------------ */

/* A DIAG ChannelOpen whose session (s, NULL for an admin's session 0) chan.c checked:
 * accepted; the broker is pinged for its round trip (AGENT_DIAG_PING_WAIT_MS at most), then
 * the collectors run on a worker thread with the agent's facts, and the report follows. */
void agent_diag_open(tt_mux_t *m, tt_chan_t *ch, const Tether__ChannelOpen *msg, const agent_session_t *s);
bool agent_diag_owns(const tt_chan_t *ch);
/* The broker answered the agent's Ping (conn.c): the reports waiting for it go on. (A link
 * that goes down closes their channels first.) */
void agent_diag_rtt(agent_t *a, uint64_t rtt_ns);
void agent_diag_data(tt_mux_t *m, tt_chan_t *ch, const uint8_t *p, size_t n, uint8_t flags);
void agent_diag_credit(tt_mux_t *m, tt_chan_t *ch);
void agent_diag_chan_closed(tt_mux_t *m, tt_chan_t *ch, int code, const char *msg);

/* ---- checks/: health checks with hysteresis (checks/checks.h: the engine, the samplers) -- */

/* At start: the settings (checks_local, and over them the broker's policy kept in the state
 * directory), each check on its own timer. */
void agent_checks_init(agent_t *a);
/* Welcomed: a full report now, then one per change and a full one every
 * TT_CHECK_FULL_REPORT_MS. */
void agent_checks_welcomed(agent_t *a);
/* Broker -> agent PolicyPushRequest: every setting checked before any is applied, kept in
 * the state directory, answered with the version now in force or an Error saying why not. */
void agent_checks_policy_request(agent_t *a, const Tether__Request *q);
/* The local socket's CHECKS: one line per result, and one per check with none, to say. */
void agent_checks_lines(agent_t *a, void (*say)(void *ctx, const char *line), void *ctx);
void agent_checks_close(agent_t *a);
void agent_checks_free(agent_t *a);

/* ---- upgrade/: signed upgrades the broker rolls out (upgrade/upgrade.h) ------------------- */

void agent_upgrade_init(agent_t *a);
/* Welcomed: a new version says it is healthy; how an earlier upgrade ended is reported. */
void agent_upgrade_welcomed(agent_t *a);
/* Broker -> agent UpgradeOffer: checked, answered (taken or refused, and why). */
void agent_upgrade_offer_request(agent_t *a, const Tether__Request *q);
/* The link went down: a new agent's wait to be called healthy starts again. */
void agent_upgrade_link_down(agent_t *a);
void agent_upgrade_close(agent_t *a);
void agent_upgrade_free(agent_t *a);
/* `tether-agent upgrade-guard`: install, wait for the new agent, roll back (guard.c). */
int agent_upgrade_guard(const agent_cfg_t *cfg);

/* ---- contain.c: where a session's processes live, and how all of them end -------------- */

/* One shell's or command's processes, all of them however they detach. */
typedef struct agent_box_s agent_box_t;

/* At start, before any shell: cgroup mode where a cgroup2 group can be made beside ours
 * (a delegated one under systemd), else subreaper mode, as shell.containment allows. A
 * forced mode that cannot be had fails with why in err. */
int agent_contain_init(agent_t *a, char *err, size_t errlen) TT_WUR;
/* The agent stops: everything in every box is killed; freed once the last box is empty. */
void agent_contain_close(agent_t *a);
/* Parent, before fork: a box for one shell or command of the session. */
int agent_box_new(agent_t *a, uint64_t session, agent_box_t **out, char *err, size_t errlen) TT_WUR;
/* Child, right after fork (async-signal-safe): move into the box. Returns 0 in the process
 * that goes on to exec, or an errno. In subreaper mode the process that called it stays
 * behind as the keeper and never returns; `limit` is how far its descriptors go. */
int agent_box_enter(const agent_box_t *b, int limit);
/* Parent: the child's pid. */
void agent_box_started(agent_box_t *b, pid_t pid);
/* The main process's group gets sig (SIGHUP, SIGINT, ...); SIGKILL kills the whole box. */
void agent_box_signal(agent_box_t *b, int sig);
/* Kill every process in the box now. */
void agent_box_kill(agent_box_t *b);
/* The main process was reaped: what it leaves behind is killed. */
void agent_box_exited(agent_box_t *b);
/* shell.c is done with the box: it is killed if it was not, and removed once empty. */
void agent_box_release(agent_box_t *b);
/* Kill everything the session started. */
void agent_contain_end_session(agent_t *a, uint64_t session);
/* subreaper mode, after SIGCHLD: a child of the agent that is neither a shell (keeper) nor a
 * consent dialog came from a keeper that was killed: kill it (and reap it). */
void agent_contain_sweep(agent_t *a);
/* Is pid a process a session started (in one of our groups, or below the agent)? Sets
 * *session to its session where that is known (else 0). */
bool agent_contain_peer(agent_t *a, pid_t pid, uint64_t *session);
const char *agent_contain_mode_name(const agent_t *a);

/* ---- procfs.c: pure readers of /proc text (async-signal-safe) ------------------------- */

/* v in decimal into out; the length, or 0 (out empty) if it does not fit. */
size_t agent_procfs_utoa(char *out, size_t cap, uint64_t v);
/* A /proc directory name as a pid, or 0 if it is not one. */
pid_t agent_procfs_pid_name(const char *name);
/* The parent pid in the text of /proc/PID/stat, or 0 if it cannot be read there. */
pid_t agent_procfs_stat_ppid(const char *stat, size_t len);
/* The first cgroup2 mount in /proc/self/mountinfo text: its mount point and the hierarchy
 * path it shows, escapes undone. TT_ENOTFOUND if none, TT_ETOOBIG if they do not fit. */
int agent_procfs_cgroup2_mount(const char *mountinfo, char *mnt, size_t mntcap, char *root, size_t rootcap);
/* The unified hierarchy's path in /proc/PID/cgroup text (the "0::/..." line). */
int agent_procfs_cgroup2_path(const char *text, char *path, size_t cap);
/* Where the group at hierarchy path `path` is in the file system, given the mount point and
 * the root it shows. TT_ENOTFOUND if that mount does not show it. */
int agent_procfs_cgroup_dir(const char *mnt, const char *root, const char *path, char *out, size_t cap);
/* Is the hierarchy path at or below root? *session: N when it is below root/S-N, else 0. */
bool agent_procfs_under(const char *path, const char *root, uint64_t *session);

/* ---- local.c: `tether-agent prompt|sessions|end`, clients of the consent socket -------- */

int agent_local_prompt(const agent_cfg_t *cfg);
int agent_local_sessions(const agent_cfg_t *cfg);
int agent_local_end(const agent_cfg_t *cfg, const char *session);
/* `tether-agent checks`: the checks' table (checks/report.c says CHECKS). */
int agent_local_checks(const agent_cfg_t *cfg);
/* `tether-agent ask WORDS...`, `comment T-n WORDS...`, `tickets`: the employee's help. */
int agent_local_ask(const agent_cfg_t *cfg, const char *const *words, int n);
int agent_local_comment(const agent_cfg_t *cfg, const char *ticket, const char *const *words, int n);
int agent_local_tickets(const agent_cfg_t *cfg);

/* conn.c: connect, Hello, serve, reconnect. Returns the exit status. */
int agent_run(agent_t *a);
/* enroll.c: `tether-agent enroll`. Returns the exit status. */
int agent_enroll(const agent_cfg_t *cfg, bool force);

/* renew.c */
void agent_renew_init(agent_t *a);
void agent_renew_welcomed(agent_t *a); /* check at once, then on the timer */
void agent_renew_close(agent_t *a);

/* Renewal is due when two thirds of the certificate's lifetime have passed. Our CA dates
 * notBefore TT_PKI_BACKDATE_SECONDS into the past (for clock skew); that is not lifetime,
 * and counting it would make a short-lived certificate due the moment it arrives. */
static inline int64_t agent_renew_due_ms(int64_t not_before_ms, int64_t not_after_ms) {
  const int64_t back = TT_PKI_BACKDATE_SECONDS * 1000;
  if (not_after_ms <= not_before_ms) return not_before_ms;
  if (not_after_ms - not_before_ms > back) not_before_ms += back;
  return not_before_ms + (not_after_ms - not_before_ms) / 3 * 2;
}

/* After a failed attempt: a tenth of what is left of the certificate, at least 5 s (and
 * at most an hour, so a long-lived certificate does not wait days after a hiccup). */
#define AGENT_RENEW_RETRY_MIN_MS 5000
#define AGENT_RENEW_RETRY_MAX_MS (3600 * 1000)
static inline int64_t agent_renew_retry_ms(int64_t now_ms, int64_t not_after_ms) {
  int64_t d = not_after_ms > now_ms ? (not_after_ms - now_ms) / 10 : 0;
  if (d < AGENT_RENEW_RETRY_MIN_MS) d = AGENT_RENEW_RETRY_MIN_MS;
  if (d > AGENT_RENEW_RETRY_MAX_MS) d = AGENT_RENEW_RETRY_MAX_MS;
  return now_ms + d;
}

/* chan.c: the channels an agent serves */
extern const tt_mux_cbs_t agent_mux_cbs;

#endif
