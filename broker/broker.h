/* tether-broker: shared types of the broker's modules (main, conn, relay). */
#ifndef BROKER_H
#define BROKER_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>
#include "tt/cert.h"
#include "tt/link.h"
#include "tt/limits.h"
#include "tt/tls.h"
#include "tt/wheel.h"
#include "tt/release.h"
#include <openssl/evp.h>
#include "store.h"
#include "addrkey.h"

typedef struct {
  char listen[128];
  char data_dir[512];
  char ca[512];
  char ca_key[512];
  char cert[512];
  char key[512];
  int64_t device_cert_lifetime_ms;
  int64_t token_ttl_ms;
  bool enroll;
  int64_t heartbeat_ms;
  int64_t idle_timeout_ms;
  int64_t handshake_timeout_ms;
  int64_t max_connections;
  int64_t max_handshakes;
  int64_t max_hello_rate;
  /* The front door (frontdoor/): per source address. */
  int64_t max_handshakes_per_address;
  int64_t max_enrolling_per_address;
  int64_t audit_refusals_per_address;
  int64_t audit_refusals_total;
  int64_t audit_refusal_window_ms;
  /* Tickets: SLA due times after creation, by priority (low, normal, high, urgent). */
  int64_t sla_first_response_ms[4];
  int64_t sla_resolution_ms[4];
  /* Reports: time waiting on the employee (consent, a reply) is off the SLA clock. */
  bool sla_exclude_waiting;
  /* The SIEM feed (records/siem.c): "" = off. */
  char siem_target[300];
  char siem_format[16];
  char siem_ca[512];
  char siem_server_name[256];
  int64_t retention_sweep_ms; /* how often the retention sweep runs */
  /* Sessions: a grant lasts this long unless the technician asks for another duration
   * (at most session_max). */
  int64_t session_duration_ms;
  int64_t session_max_ms;
  /* Alerts (helpdesk/alerts.c): the storm rule and the reopen window. */
  int64_t alert_storm_devices;
  int64_t alert_storm_window_ms;
  int64_t alert_reopen_window_ms;
  int64_t alert_sweep_ms;
  int64_t store_busy_timeout_ms;
  int64_t checkpoint_interval_ms;
  char checkpoint_file[512];  /* "" = DATA_DIR/audit.checkpoints */
  char release_keys[512]; /* release public keys `release add` checks ("" = not checked) */
  int log_level;
} broker_cfg_t;

typedef struct broker_s broker_t;
typedef struct relay_s relay_t;
typedef struct broker_frontdoor_s broker_frontdoor_t;
typedef struct broker_fd_addr_s broker_fd_addr_t;
typedef struct broker_signer_s broker_signer_t;
typedef struct broker_siem_s broker_siem_t;

typedef enum {
  BROKER_CONN_HANDSHAKE = 0, /* TLS in progress */
  BROKER_CONN_HELLO,         /* TLS done, waiting for Hello */
  BROKER_CONN_READY,         /* welcomed */
  BROKER_CONN_ENROLL,        /* a device without a certificate, here to enroll once */
} broker_conn_state_t;

typedef struct broker_conn_s {
  tt_wheel_entry_t idle;  /* idle deadline on the broker's wheel (welcomed peers) */
  struct broker_conn_s *prev, *next;
  struct broker_conn_s *uprev, *unext; /* on the not-yet-welcomed list */
  broker_t *b;
  tt_link_t *link;
  broker_conn_state_t state;
  tt_identity_t id;
  char addr[64];
  char hostname[TT_TEXT_MAX + 1];
  char version[TT_NAME_MAX + 1];
  uint32_t consent_timeout_ms; /* agent: its consent.timeout, from Hello (0: not said) */
  uint64_t caps;
  uint64_t connected_unix_ms;
  uint64_t accepted_ms;   /* uv_now at accept: Hello must come within handshake_timeout */
  struct broker_conn_s *hnext; /* registry bucket chain (welcomed agents) */
  unsigned work;          /* uv_queue_work jobs holding this conn */
  bool gone;              /* the link went down while work was out: free when it returns */
  bool enroll_used;       /* an enrollment connection gets one request */
  bool renewing;          /* a renewal is being signed: one at a time */
  bool verifying;         /* an audit verification is running: one at a time */
  bool tls_done;          /* counted out of broker.handshaking */
  /* frontdoor/: what this connection counts against its source address. */
  broker_addr_key_t akey;
  broker_fd_addr_t *fd_addr; /* the address's entry while the connection counts there */
  struct broker_conn_s *sprev, *snext; /* the address's connections that have sent nothing */
  struct broker_conn_s *eprev, *enext; /* enrollment connections, oldest first */
  bool fd_handshake;      /* a handshake in progress (broker.handshaking) */
  bool fd_silent;         /* on the address's list of connections that have sent nothing */
  bool fd_enrolling;      /* an enrollment connection (broker.enrolling) */
  bool fd_enroll_idle;    /* ... that has not sent its request yet */
  uint64_t expires_at;    /* uv_now when the peer's certificate expires (0 = not known) */
  uint32_t refusals;      /* requests refused on this connection */
  uint64_t relay_window;  /* windows of relayed channels the broker holds for this peer */
  struct broker_inv_s *inv; /* inventory/push.c: an agent's offer being received */
  uint32_t inv_tokens;    /* inventory versions it may still store now (push.c's bucket) */
  uint64_t inv_refill_ms; /* uv_now the bucket last refilled (0: never used) */
  uint32_t policy_req;    /* helpdesk/policy.c: the id of the policy push it has not answered */
  int64_t policy_pushing; /* ... and the version it carries */
  int64_t policy_refused; /* the version this agent refused (not pushed again on this link) */
  uint32_t check_reports; /* check reports in the minute that began at check_window_ms */
  uint64_t check_window_ms;
  struct broker_assets_s *assets; /* inventory/assets.c: an admin's import being received */
  /* The page cursors this connection was last given (broker_page_key of what the request
   * reads and where its page ended; zero: none). A find or export that comes with any other
   * cursor is a new read and is audited as one: a made-up cursor cannot read unaudited. */
  uint8_t find_next[32];
  uint8_t export_next[32];
  uint8_t where_next[32];
  /* gateway.c: a gateway's own link (gw: where it listens, its host key), or a link a gateway
   * made to act for one person (via "ssh", and the key they logged in with: removing the key
   * or revoking the person closes it). */
  struct broker_gw_s *gw;
  char via[8];
  char via_key[TT_SSH_FP_LEN + 1];
  char via_gw[TT_NAME_MAX + 1]; /* acting: the gateway's certificate name */
  bool acting;
  /* rollout/: an agent's architecture (Hello); the release it is being sent (serve.c); an
   * admin's release upload (release.c). */
  char arch[TT_RELEASE_ARCH_MAX + 1];
  struct broker_serve_s *serve;
  struct broker_upload_s *upload;
} broker_conn_t;

#define BROKER_REGISTRY_BUCKETS 65536u
/* The sweep tick: idle deadlines fire at most this late; once-a-second work runs every
 * 1000 / BROKER_SWEEP_MS ticks. */
#define BROKER_SWEEP_MS 250u

struct broker_s {
  uv_loop_t *loop;
  broker_cfg_t cfg;
  char hostname[256];     /* this machine's, for the SIEM feed's messages */
  uint64_t started_ms;    /* unix ms */
  broker_siem_t *siem;    /* records/siem.c, NULL when off */
  uv_timer_t retention_timer; /* records/retention.c: a sweep every retention.sweep_interval */
  bool retention_sweeping;
  tt_tls_ctx_t *tls;
  tt_tls_limits_t limits;
  uv_tcp_t listener;
  uv_timer_t heartbeat;
  uv_timer_t sweep;       /* one timer for every deadline: Hello, idle peers, channel opens */
  tt_wheel_t wheel;       /* idle deadlines of welcomed peers */
  uint32_t sweeps;
  bool alert_sweeping;    /* helpdesk/alerts.c: a sweep is in the store's queue */
  uint64_t alert_sweep_ms;
  int64_t alert_sweep_after; /* the due alerts' cursor (alerts.c) */
  uv_signal_t sigint, sigterm;
  broker_conn_t *conns;
  broker_conn_t *unready; /* accepted, not yet welcomed */
  relay_t *pending;       /* relays waiting for the device's answer */
  size_t nconns, nagents;
  uint64_t ssh_keys_version; /* gateway.c: what gateways hold of people's ssh keys */
  uint64_t ssh_keys_removed; /* gateway.c: keys removed or people revoked, so far */
  uint64_t ping_nonce;
  bool stopping;
  broker_store_t *store;  /* only before the loop runs (startup reads), then NULL */
  store_svc_t *svc;       /* the store as a service: everything on the loop goes here */
  struct broker_revoked_s **revoked; /* revoked identities, loaded at start (registry.c) */
  X509 *ca_cert;          /* the CA's key is not here: only the signer process has it */
  char *ca_pem;           /* the CA certificate as sent to enrolling devices */
  broker_signer_t *signer; /* signer/client.c: the process that signs device certificates */
  broker_conn_t **registry; /* welcomed agents by device id */
  broker_frontdoor_t *frontdoor; /* frontdoor/: per-address accounting */
  size_t handshaking;     /* accepted, TLS not finished: capped by max_handshakes */
  size_t enrolling;       /* enrollment connections open: capped by TT_ENROLLING_MAX */
  size_t accepted_since_trim; /* connections accepted since the heap was last trimmed */
  double hello_tokens;    /* token bucket for agent Hellos (max_hello_rate) */
  uint64_t hello_refill_ms;
  uint32_t busy_last_sec, busy_this_sec; /* Hellos told to come back later */
  struct broker_sessions_s *sessions; /* session.c: live grants and consent waits */
  /* Audit checkpoints: signed with the broker's own key (used on the store thread only). */
  EVP_PKEY *cp_key;
  X509 *cp_cert;
  char checkpoint_file[600];
  int64_t checkpointed;   /* entries at the last checkpoint (the store thread's) */
  uv_timer_t checkpoint_timer;
  struct broker_rollout_s *ro; /* rollout/: releases and the rollout in progress */
};

/* registry.c: welcomed agents by device id */
int registry_init(broker_t *b);
void registry_free(broker_t *b);
void registry_add(broker_t *b, broker_conn_t *c);
void registry_remove(broker_t *b, broker_conn_t *c);
broker_conn_t *registry_get(broker_t *b, const char *device_id);

/* registry.c: revoked identities, a cache of the store's revocations that the handshake
 * checks without a query (loaded at start, added to once a revocation has committed). */
int revoked_load(broker_t *b, broker_store_t *s);
void revoked_add(broker_t *b, store_revoke_kind_t kind, const char *name);
bool revoked_has(broker_t *b, store_revoke_kind_t kind, const char *name);
void revoked_free(broker_t *b);

/* frontdoor/frontdoor.c: what each source address holds of what every newcomer shares (handshakes
 * in progress, enrollment connections) and how many of its refusals reach the audit. A
 * table of fixed size, made at start (see TT_FRONTDOOR_IDLE_ADDRS). */
int broker_frontdoor_init(broker_t *b);
void broker_frontdoor_free(broker_t *b);
/* At max_handshakes with no connection that has sent nothing to drop: a newcomer is
 * refused before anything is allocated for it. */
bool broker_frontdoor_full(broker_t *b);
/* A new connection from peer, before any TLS state exists: false refuses it (its address
 * has its share of handshakes in progress, or the broker is full); at max_handshakes the
 * oldest connection that has sent nothing, of the address holding the most, is dropped
 * to make room. */
bool broker_frontdoor_admit(broker_conn_t *c, const struct sockaddr *peer);
/* The TLS handshake is over: the connection no longer counts as one in progress. */
void broker_frontdoor_handshake_done(broker_conn_t *c);
/* An enrollment connection finished its handshake (call before _handshake_done): false
 * closes it (its address has its share, or TT_ENROLLING_MAX are open and none is idle);
 * when full, the oldest idle one of the address holding the most is dropped for it. */
bool broker_frontdoor_enroll_admit(broker_conn_t *c);
/* The enrollment connection sent its request: it is no longer idle. */
void broker_frontdoor_enroll_busy(broker_conn_t *c);
/* The connection is gone: give back whatever it still counted. */
void broker_frontdoor_conn_gone(broker_conn_t *c);
/* Call before a refusal's audit entry: true to write it; false when its address, or the
 * broker as a whole, has written its share this window: then the refusal is counted and
 * written in a refuse-summary entry when the window ends. */
bool broker_frontdoor_audit_ok(broker_t *b, const broker_conn_t *c);
/* Once a second: summaries of windows that ended; refused and dropped counts to the log. */
void broker_frontdoor_sweep(broker_t *b, uint64_t now);
/* At stop: every summary still held back is written. */
void broker_frontdoor_flush(broker_t *b);

/* audit.c: one entry per decision. detail is built from "key", value pairs: a NULL-terminated
 * list of (const char *key, const char *value) strings; values are JSON-escaped.
 * broker_audit queues the entry on its own: for what happened whatever the store says
 * (a connect, a refusal, an end). A privileged action writes its entry with its own store
 * request instead (broker_audit_rec into the request's store_audit_rec_t), so the action
 * is refused when its entry cannot be written. */
void broker_audit(broker_t *b, const char *actor, const char *action, const char *target, ...);
void broker_audit_rec(store_audit_rec_t *a, const char *actor, const char *action, const char *target, ...);
#define AUDIT_END ((const char *)NULL)
/* A key spelled "?key" is written (as "key") only when its value is not empty: "?via",
 * c->via marks what a person did through the ssh gateway, and nothing otherwise. */
/* At start, before the store thread takes s: a chain with entries of format 1 (hashed in the
 * clear) is checked against its checkpoints and, intact, hashed again in format 2 with one
 * signed rechain line into the store and the checkpoint file. A damaged chain is left as it
 * is (logged): new entries are format 2 on top of it, and `audit verify` names the damage.
 * Non-zero only when the store failed. */
int broker_audit_rechain(broker_t *b, broker_store_t *s);
/* Log the audit chain's head (id and hash): an anchor outside the database. */
void broker_audit_log_head(broker_t *b, const char *when);
/* Sign the chain's head as it stands after everything queued so far, into the store, the
 * checkpoint file and the log (only_if_grown: not when no entry came since the last). */
void broker_audit_checkpoint(broker_t *b, const char *when, bool only_if_grown);
/* What `audit verify` checks, on the store's reader thread: the chain against every
 * checkpoint in the store and in the file (each one's signature checked against the CA). */
typedef struct {
  X509 *ca;
  const char *file;
  tt_audit_anchors_t anchors;
  unsigned lines;
  tt_audit_walk_t walk;
} broker_audit_check_t;
int broker_audit_check(broker_store_t *s, broker_audit_check_t *k);

/* inventory/push.c: agents' inventory offers and tables; the state of a connection that
 * goes (freed now, or by the store request that holds it). */
int broker_inv_offer(broker_conn_t *c, uint32_t id, const Tether__InventoryOfferRequest *q);
int broker_inv_put(broker_conn_t *c, uint32_t id, const Tether__InventoryPutRequest *q);
void broker_inv_conn_gone(broker_conn_t *c);
/* Once a second: offers idle past TT_INV_OFFER_IDLE_MS are dropped. */
void broker_inv_sweep(broker_t *b, uint64_t now);
/* inventory/query.c: people read a device's inventory (index, tables) and its versions. */
int broker_inv_get(broker_conn_t *c, uint32_t id, const Tether__InventoryGetRequest *q);
int broker_inv_history(broker_conn_t *c, uint32_t id, const Tether__InventoryHistoryRequest *q);
/* inventory/attach.c: a DIAG relay's report kept on the ticket as it passes (diag --attach).
 * keep_data may refuse (TT_ETOOBIG past TT_DIAG_REPORT_MAX); keep_finish submits the write
 * (the relay then hears relay_diag_kept); keep_end: the relay ended. */
typedef struct broker_diag_keep_s broker_diag_keep_t;
broker_diag_keep_t *broker_diag_keep_new(broker_t *b, relay_t *r, int64_t ticket, int64_t session,
                                         const char *device, const char *person);
int broker_diag_keep_data(broker_diag_keep_t *k, const uint8_t *p, size_t n);
int broker_diag_keep_finish(broker_diag_keep_t *k);
void broker_diag_keep_end(broker_diag_keep_t *k);
/* relay.c: the report is kept as D-id (rc 0) or not: tell the console, then EOF. */
void relay_diag_kept(relay_t *r, int64_t id, int rc);
/* inventory/query.c: a kept report, D-n, in parts (technicians and admins, audited). */
int broker_diag_get(broker_conn_t *c, uint32_t id, const Tether__DiagGetRequest *q);
/* inventory/diff.c: the rows added and removed between two versions. */
int broker_inv_diff(broker_conn_t *c, uint32_t id, const Tether__InventoryDiffRequest *q);

/* inventory/assets.c: admins' asset records: an import in parts (its state freed when the
 * connection goes, or by the store request that holds it), exports a page at a time. */
int broker_assets_import(broker_conn_t *c, uint32_t id, const Tether__AssetImportRequest *q);
int broker_assets_export(broker_conn_t *c, uint32_t id, const Tether__AssetExportRequest *q);
void broker_assets_conn_gone(broker_conn_t *c);
/* Once a second: imports idle past TT_ASSET_IMPORT_IDLE_MS are dropped. */
void broker_assets_sweep(broker_t *b, uint64_t now);
/* inventory/find.c: a page of `inventory find`. */
int broker_inv_find(broker_conn_t *c, uint32_t id, const Tether__InventoryFindRequest *q);
/* sha256 over n (pointer, length) pieces, each length-prefixed: what a paged request reads
 * and its cursor, for broker_conn_t's find_next / export_next. */
typedef struct {
  const void *p;
  size_t n;
} broker_key_part_t;
void broker_page_key(uint8_t out[32], const broker_key_part_t *parts, size_t n);

/* records/siem.c: the SIEM feed. Start (after the store service): "" target = off; err says
 * what is wrong with the configuration. Stop closes the connection (before the loop ends);
 * free after the loop. */
int broker_siem_start(broker_t *b, char *err, size_t errlen);
void broker_siem_stop(broker_t *b);
void broker_siem_free(broker_t *b);
typedef struct {
  char target[320];
  const char *format;   /* NULL: no feed */
  bool up;
  int64_t acked, head;  /* the last entry the collector acknowledged; the chain's last */
  uint64_t down_since_ms, connects, sent;
  char error[160];
} broker_siem_status_t;
void broker_siem_status(broker_t *b, broker_siem_status_t *out);
/* records/retention.c: tether retention show | set | sweep; the timer's sweep. */
int broker_retention_request(broker_conn_t *c, uint32_t id, const Tether__RetentionRequest *q);
void broker_retention_tick(broker_t *b);
/* audit.c: one whole line appended (and fsynced) to the checkpoint file. */
int broker_audit_append_line(broker_t *b, const char *line);
/* An erasure's own entry a, and the line the broker signs for it (count values released, acc
 * their commitment, tt/audit.h) into the store, in the erasure's transaction; the entry's id
 * into *id, the line (TT_AUDIT_CP_LINE_MAX) for the checkpoint file after the commit. */
int broker_audit_erasure(broker_t *b, broker_store_t *s, const store_audit_rec_t *a, int64_t count,
                         const uint8_t acc[32], int64_t *id, char *line, size_t cap);
/* records/person.c: tether person export (admins), a section a page at a time. */
int broker_person_export(broker_conn_t *c, uint32_t id, const Tether__PersonExportRequest *q);
int broker_person_erase(broker_conn_t *c, uint32_t id, const Tether__PersonEraseRequest *q);
/* records/erase.c: the key an erased person's revocation is kept under (DATA_DIR/erase.key,
 * made at the first start, refused missing once revocations depend on it), given to the store. */
int broker_erase_key_init(const char *data_dir, broker_store_t *s, char *err, size_t cap);
/* records/status.c: tether status (admins). */
int broker_status_request(broker_conn_t *c, uint32_t id);

/* records/report.c: tether report sla | activity (admins). */
int broker_report_request(broker_conn_t *c, uint32_t id, const Tether__ReportRequest *q);

/* rollout/: signed agent releases and staged rollouts. init at start with the store still
 * the loop's (loads the releases and the active rollout; err says why not); free after the
 * loop. */
int broker_rollout_init(broker_t *b, broker_store_t *s, char *err, size_t cap);
void broker_rollout_free(broker_t *b);
/* release add (in parts), release list (admins). */
int broker_release_request(broker_conn_t *c, const Tether__Request *q);
/* rollout start | status | pause | resume | cancel (admins). */
int broker_rollout_request(broker_conn_t *c, uint32_t id, const Tether__RolloutRequest *q);
/* An agent's report of its upgrade; its answer to an offer (true: it was one). */
int broker_upgrade_report(broker_conn_t *c, uint32_t id, const Tether__UpgradeReport *r);
bool broker_upgrade_answer(broker_conn_t *c, const Tether__Response *r);
/* An agent was welcomed, or its link went down. */
void broker_rollout_agent_up(broker_conn_t *c);
void broker_rollout_conn_down(broker_conn_t *c);
/* Once a second: offers, deadlines, waves; idle uploads dropped. */
void broker_rollout_sweep(broker_t *b, uint64_t now);
/* serve.c: an agent opens CHANNEL_RELEASE; the channel's callbacks (owns: is it one). */
void broker_serve_open(tt_mux_t *m, tt_chan_t *ch, const Tether__ChannelOpen *msg);
bool broker_serve_owns(broker_conn_t *c, tt_chan_t *ch);
void broker_serve_credit(broker_conn_t *c, tt_chan_t *ch);
void broker_serve_data(broker_conn_t *c, tt_chan_t *ch, size_t n);
void broker_serve_close(broker_conn_t *c, tt_chan_t *ch);

/* storereq.c: store requests on behalf of a connection that waits for the answer. The
 * connection is held (c->work) until the completion; broker_creq_conn then says whether
 * it is still there to answer. Embed broker_creq_t first in the request's own struct. */
typedef struct {
  store_req_t req;          /* first: the service's */
  store_audit_rec_t audit;  /* the entry written with the request, when req.audit points here */
  broker_conn_t *c;
  uint32_t id;              /* the request id to answer */
} broker_creq_t;
/* calloc'd request of `size` bytes for c's request id. NULL when out of memory. */
void *broker_creq_new(broker_conn_t *c, uint32_t id, size_t size, store_lane_t lane, store_run_fn run,
                      store_done_fn done, const char *what);
/* Submit; if the store will not take it (or c has TT_CONN_STORE_REQS_MAX waiting, or the
 * store's queue is half full), answer the request busy and free it. Returns what a request
 * handler returns (non-zero closes the connection). */
int broker_creq_submit(void *x);
/* The same for a request that owns more than its own block: free_fn frees it on refusal. */
int broker_creq_submit_free(void *x, void (*free_fn)(void *x));
/* In the completion: release the hold; the connection if it is still there to answer. */
broker_conn_t *broker_creq_conn(void *x);
/* Queue a write nobody waits for (its failure is logged), e.g. a device last seen. */
void broker_store_later(broker_t *b, store_req_t *r);

/* signer/client.c: the signer process (signer.h), the only one holding the CA key. */
typedef void (*broker_sign_cb)(void *data, int status, const uint8_t *der, size_t len, const char *msg);
/* At start, before anything else is loaded: start the signer and wait (bounded) until it
 * has loaded the CA key; err says why not (the broker does not start without it). */
int broker_signer_start(broker_t *b, char *err, size_t errlen);
/* A signer is up and has room for a request (checked before a token is spent). */
bool broker_signer_ready(broker_t *b);
/* Queue the signing of a device certificate for device_id; cb runs once, later, on the
 * loop: status 0 with the certificate (DER), or a negative code and a message (TT_EINVAL:
 * the CSR's fault, fit for the peer). Nonzero: nothing was queued and cb never runs
 * (TT_EBUSY: no signer at the moment or too many waiting). */
int broker_signer_sign(broker_t *b, const char *device_id, const uint8_t *csr, size_t len, broker_sign_cb cb,
                       void *data);
/* The live signer's pid, 0 while there is none. */
int broker_signer_pid(broker_t *b);
/* At stop: waiting signings end with TT_ECLOSED; the socket closes and the signer exits. */
void broker_signer_stop(broker_t *b);
/* After the loop has ended. */
void broker_signer_free(broker_t *b);

/* admin.c: requests from people (and agents' renewals, enrollment) */
int broker_on_request(broker_conn_t *c, const Tether__Request *q);
int broker_reply_error(broker_conn_t *c, uint32_t id, int code, const char *msg);
/* enroll.c */
int broker_enroll(broker_conn_t *c, uint32_t id, const Tether__EnrollRequest *q);
int broker_renew(broker_conn_t *c, uint32_t id, const Tether__RenewRequest *q);
/* A uv_queue_work job finished for c; false if c is gone (and was freed here). */
bool broker_conn_work_done(broker_conn_t *c);

/* conn.c */
void broker_on_connection(uv_stream_t *server, int status);
void broker_heartbeat_cb(uv_timer_t *t);
void broker_sweep_cb(uv_timer_t *t);
void broker_close_all(broker_t *b);
broker_conn_t *broker_find_agent(broker_t *b, const char *device_id);
extern const tt_link_cbs_t broker_link_cbs;

/* relay.c: channel callbacks of every link */
void relay_on_open(tt_mux_t *m, tt_chan_t *ch, const Tether__ChannelOpen *msg);
void relay_on_accept(tt_mux_t *m, tt_chan_t *ch, const Tether__ChannelAccept *msg);
void relay_on_data(tt_mux_t *m, tt_chan_t *ch, const uint8_t *p, size_t n, uint8_t flags);
void relay_on_credit(tt_mux_t *m, tt_chan_t *ch, uint32_t n);
void relay_on_close(tt_mux_t *m, tt_chan_t *ch, int code, const char *msg);
/* End relays whose device has not answered within TT_OPEN_TIMEOUT_MS. */
void relay_sweep(broker_t *b, uint64_t now);

uint64_t broker_unix_ms(void);

/* ticket.c: ticket_new, ticket_list, ticket_show, ticket_update (technicians and admins). */
int broker_ticket_request(broker_conn_t *c, const Tether__Request *q);
/* Add an event to a ticket's timeline at now (session-requested, consent-given, ...); the
 * text is formatted and cut to fit. Logs a failure and returns it (the caller carries on). */
int broker_ticket_event(broker_t *b, int64_t ticket, const char *actor, const char *kind,
                        const char *fmt, ...) TT_PRINTF(5, 6);
/* Copy text into dst, cut at a UTF-8 character boundary if it does not fit. */
void broker_text_fit(char *dst, size_t cap, const char *src);
/* A ticket as the wire carries it (strings point into t). */
void broker_ticket_to_wire(const store_ticket_t *t, Tether__Ticket *o);
/* t's SLA due times from its priority and the broker's [sla] settings, counted from now_ms. */
void broker_ticket_sla(broker_t *b, store_ticket_t *t, int64_t now_ms);

/* helpdesk/alerts.c: agents' check reports become alerts and tickets; once a minute the
 * sweep ends snoozes and maintenance windows. */
int broker_check_report(broker_conn_t *c, uint32_t id, const Tether__CheckReportRequest *q);
void broker_alerts_sweep(broker_t *b, uint64_t now);
/* helpdesk/alert_cmds.c: alerts, alert ack|snooze|unsnooze, checks (people). */
int broker_alert_request(broker_conn_t *c, const Tether__Request *q);
/* helpdesk/policy.c: policy set|show and maintenance (admins; show for technicians too), and
 * the push of the policy in force to an agent (after a report names another version, and to
 * every connected agent after a change). */
int broker_policy_request(broker_conn_t *c, const Tether__Request *q);
void broker_policy_push(broker_conn_t *agent);
/* An agent answered a push. */
void broker_policy_pushed(broker_conn_t *agent, const Tether__Response *r);

/* help.c: the employee's help requests, spoken for by their agent (agents only). */
int broker_help_request(broker_conn_t *c, const Tether__Request *q);
/* Tell the ticket's requester, through their device's agent if it is connected, that
 * something they may see happened (kind: public-comment, resolved, reopened, closed). */
void broker_help_notice(broker_t *b, const store_ticket_t *t, const char *kind, const char *by, const char *text);
/* An id for a request the broker sends an agent (session.c keeps the counter). */
uint32_t broker_agent_req_id(broker_t *b);

/* A person worked the ticket (a session was granted): sets first_response_ms if not set. */
void broker_ticket_responded(broker_t *b, int64_t ticket);

/* helpdesk/kb.c: the knowledge base: kb_add (admins and level 3 technicians, the level read
 * in the write's own store request), kb_search and kb_show (technicians and admins). */
int broker_kb_request(broker_conn_t *c, const Tether__Request *q);
/* A stored hit on the wire; strings point into h, checks holds TT_KB_CHECKS_MAX views. */
void broker_kb_hit_to_wire(const store_kb_hit_t *h, Tether__KbHit *o, ProtobufCBinaryData *checks, bool linked);

/* people.c: the technicians and admins the broker knows. A person connected (connect) or
 * their connection ended: recorded by a write nobody waits for (no-op for other roles). */
void broker_person_seen(broker_t *b, const broker_conn_t *c, bool connect);
/* person_add, people_list (admins; admin.c checks the role). */
int broker_people_request(broker_conn_t *c, const Tether__Request *q);

/* gateway.c: people's ssh keys (ssh_key, ssh_config: people) and the ssh gateway's own
 * requests (gateway_hello, act_as: role gateway); admin.c checks the roles. */
int broker_gateway_request(broker_conn_t *c, const Tether__Request *q);
/* The set of keys a gateway may let in changed (a key added or removed, a person revoked). */
void broker_gateway_keys_changed(broker_t *b, bool removed);
/* The connection is going away. */
void broker_gateway_conn_gone(broker_conn_t *c);

/* session.c: sessions (consented grants), consent orchestration, recordings access. */
int broker_sessions_init(broker_t *b);
void broker_sessions_free(broker_t *b);
/* session_open, session_list, session_end (people; session_end also from agents: the
 * employee ended it), recording_get. */
int broker_session_request(broker_conn_t *c, const Tether__Request *q);
/* A Response from an agent (consent answers, acknowledgements). Nonzero closes the agent. */
int broker_agent_response(broker_conn_t *c, const Tether__Response *r);
/* End every live session of a ticket (resolved, closed), of an identity (revoked: a person,
 * or a device when device is true), or of an agent whose connection went down. Live
 * channels of those sessions are closed at once. */
void broker_sessions_end_ticket(broker_t *b, int64_t ticket, const char *by, const char *reason);
void broker_sessions_end_identity(broker_t *b, bool device, const char *name, const char *by,
                                  const char *reason);
void broker_sessions_agent_down(broker_conn_t *agent);
/* A welcomed connection went down: an agent's sessions end; a console waiting for consent
 * is forgotten (a grant that comes later is kept for reuse). */
void broker_sessions_conn_down(broker_conn_t *c);
/* Every sweep tick: grant expiry, consent deadlines, recordings' periodic flush. */
void broker_sessions_sweep(broker_t *b, uint64_t now);

/* A session live in memory: waiting for the employee's consent, or granted. */
typedef struct broker_grant_s broker_grant_t;
struct broker_grant_s {
  broker_grant_t *prev, *next;
  store_session_t s;        /* as stored; expires_ms 0 until granted */
  char summary[STORE_TEXT_MAX]; /* the ticket's */
  bool granted;
  uint64_t duration_ms;
  broker_conn_t *agent;     /* the device's connection it was asked on */
  broker_conn_t *console;   /* waiting for the answer; NULL once answered or gone */
  uint32_t console_req;     /* the console's request id */
  uint32_t agent_req;       /* our Request{consent} id */
  uint64_t asked_at;        /* uv_now */
  uint64_t deadline;        /* uv_now: the device must answer by then */
  relay_t *relays;          /* live channels under this session (relay.c links them) */
  uint32_t nrelays;
  /* A store request about this session is out (its row, its grant): the session cannot
   * end before it is back; an end asked for meanwhile waits here and happens then. */
  struct session_req_s *storing;
  bool end_asked;
  bool withdrawn;           /* the end asked for is the console's withdrawal */
  char end_by[STORE_NAME_MAX];
  char end_reason[STORE_TEXT_MAX];
};
/* session.c, for relay.c: the live, granted, unexpired session id, or NULL. */
broker_grant_t *broker_session_live(broker_t *b, int64_t id);
/* session.c, for relay.c: a shell relay's recording (store row, file, audit when done). */
typedef struct broker_rec_s broker_rec_t;
typedef struct {
  void (*on_drain)(relay_t *r);             /* the disk caught up: pass held credit on */
  void (*on_fail)(relay_t *r, const char *why); /* the recording failed: end the relay */
} broker_rec_owner_t;
/* A shell's recording: its row (filled here, written by relay.c's store request together
 * with the channel's opening), then its file (broker_session_record). A row whose file is
 * never made is closed as failed (broker_session_record_abandon). */
void broker_session_record_row(const broker_grant_t *g, store_recording_t *row);
int broker_session_record(broker_grant_t *g, relay_t *r, const broker_rec_owner_t *owner,
                          const store_recording_t *row, uint32_t cols, uint32_t rows, const char *term,
                          broker_rec_t **out, void **handle, char *why, size_t whylen) TT_WUR;
void broker_session_record_abandon(broker_t *b, const store_recording_t *row, int err);
/* The relay is done with the recording: finish it (the handle outlives the relay). */
void broker_session_record_end(void *handle);
/* files.c, for relay.c: a CHANNEL_FILES relay's records. The broker peeks at the in-band
 * FileCtl messages only (never at chunk data): it remembers the console's requests by id and
 * writes one audit entry and ticket event per file on the device's word (a file pulled,
 * pushed, a push failed, a request refused; a listing and a directory made, audit only).
 * Records the store cannot take yet wait in the relay, which holds credit meanwhile. */
typedef struct broker_files_s broker_files_t;
typedef struct {
  void (*on_drain)(relay_t *r); /* every record is queued: pass held credit on (may end r) */
} broker_files_owner_t;
/* NULL when out of memory. g: the session the relay runs under (copied: f outlives it). */
broker_files_t *broker_files_new(broker_t *b, relay_t *r, const broker_files_owner_t *owner, const broker_grant_t *g,
                                 const char *person, const char *dev);
/* A DATA frame passing on the relay; from_device: the agent sent it. Non-zero: end the relay
 * with that code and why (a compressed control frame; more records waiting than may). */
int broker_files_data(broker_files_t *f, bool from_device, const uint8_t *p, size_t n, uint8_t flags, char *why,
                      size_t cap) TT_WUR;
/* Records wait to be queued: the relay passes no credit on until on_drain. */
bool broker_files_holding(const broker_files_t *f);
/* Once a second: queue what waits, if the store has room now. */
void broker_files_tick(broker_files_t *f);
/* The relay ended: what waits is queued now; f frees itself once the store is done. */
void broker_files_end(broker_files_t *f);
/* relay.c, for session.c: close every relay of g with msg (the console prints it). */
void relay_end_grant(broker_grant_t *g, int code, const char *msg);
/* relay.c: the once-a-second flush of g's recordings. */
void relay_tick_grant(broker_grant_t *g);

#endif
