/* The broker's store: every byte of SQL lives in store.c. SQLite in WAL mode under the data
 * directory, schema versions with migrations at open, prepared statements only, short
 * transactions. A broker killed at any moment reopens a consistent store. */
#ifndef BROKER_STORE_H
#define BROKER_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "tt/err.h"
#include "tt/limits.h"
#include "tt/release.h"
#include "tt/audit.h"
#include "tt/sshkey.h"
#include <uv.h>

typedef struct broker_store_s broker_store_t;

#define STORE_TEXT_MAX (TT_TEXT_MAX + 1)
#define STORE_NAME_MAX (TT_NAME_MAX + 1)
#define STORE_FP_MAX 72 /* "sha256:" + 64 hex + NUL */

/* Open (creating DATA_DIR/broker.db and the directory, 0700, if missing) and migrate. */
int store_open(broker_store_t **out, const char *data_dir, char *err, size_t errlen) TT_WUR;
/* Open an existing store read-only (no migration, no write): the readers' connections. */
int store_open_ro(broker_store_t **out, const char *data_dir, char *err, size_t errlen) TT_WUR;
/* How long a statement waits for a lock another process holds before it fails. */
void store_set_busy_timeout(broker_store_t *s, int ms);
/* A read transaction: what is read until store_read_end is one snapshot. TT_ESTATE inside a
 * transaction already (then that one is the snapshot). */
int store_read_begin(broker_store_t *s) TT_WUR;
void store_read_end(broker_store_t *s);
/* Commits that must survive a power loss, not only a crash: on, every commit syncs the WAL
 * (and with it every commit before); off again, the usual (synchronous = NORMAL). */
int store_set_durable(broker_store_t *s, bool on) TT_WUR;
void store_close(broker_store_t *s);
/* The schema this build makes and migrates to (db.c checks it against its migrations). */
#define STORE_SCHEMA_VERSION 22
int store_schema_version(broker_store_t *s);
/* The schema this build migrates to (tests compare with it rather than spell a number). */
int store_schema_latest(void);

/* ---- devices ---------------------------------------------------------------------- */
typedef struct {
  char id[STORE_NAME_MAX];          /* stable device id, the CN of its certificate */
  char hostname[STORE_TEXT_MAX];
  char address[STORE_TEXT_MAX];     /* last seen from */
  char version[STORE_NAME_MAX];     /* agent version last reported */
  char cert_fp[STORE_FP_MAX];       /* fingerprint of the newest certificate issued */
  int64_t enrolled_ms;              /* unix ms */
  int64_t last_seen_ms;             /* unix ms, 0 = never connected */
  int64_t cert_not_after_ms;
  bool revoked;
} store_device_t;

/* Insert a new device (enrollment); -EEXIST if the id exists. */
int store_device_add(broker_store_t *s, const store_device_t *d) TT_WUR;
/* A device connected or reported: update hostname, address, version, last_seen. Inserts the
 * device if unknown (a certificate the admin issued by hand). */
int store_device_seen(broker_store_t *s, const char *id, const char *hostname, const char *address,
                      const char *version, int64_t now_ms) TT_WUR;
/* A device's connection ended: only its last-seen time moves (what it reported at connect
 * stays, and a newer connection's report is never overwritten by an older one's). */
int store_device_last_seen(broker_store_t *s, const char *id, int64_t now_ms) TT_WUR;
/* A renewed certificate. */
int store_device_set_cert(broker_store_t *s, const char *id, const char *cert_fp,
                          int64_t not_after_ms) TT_WUR;
int store_device_get(broker_store_t *s, const char *id, store_device_t *out) TT_WUR; /* TT_ENOTFOUND */
/* A device by what a person calls it: its id, else its hostname or the hostname's first
 * label, either case (whole-name matches win over first-label ones), among devices not
 * revoked. Up to max matches into out, *n of them (several: the name is ambiguous);
 * TT_ENOTFOUND when nothing matches. */
int store_device_find(broker_store_t *s, const char *name, store_device_t *out, size_t max, size_t *n) TT_WUR;
/* Devices ordered by id, from offset, at most limit; calls cb for each; *total = all. */
typedef int (*store_device_cb)(void *ctx, const store_device_t *d);
int store_device_list(broker_store_t *s, uint32_t offset, uint32_t limit, store_device_cb cb,
                      void *ctx, uint32_t *total) TT_WUR;
/* Keyset paging: devices with an id after `after` ("" = from the first), in id order, at
 * most limit (0 = all). Each page costs what it returns, however deep into the fleet. */
int store_device_page(broker_store_t *s, const char *after, uint32_t limit, store_device_cb cb, void *ctx) TT_WUR;
size_t store_device_count(broker_store_t *s);

/* ---- enrollment tokens -------------------------------------------------------------- */
/* Tokens are stored as sha256 of the token text only. */
int store_token_add(broker_store_t *s, const uint8_t hash[32], int64_t expires_ms, uint32_t uses,
                    const char *note, const char *created_by, int64_t now_ms) TT_WUR;
/* Consume one use, atomically. Looks the token up by hash and compares in constant time.
 * TT_ENOTFOUND (no such token), TT_ETIMEOUT (expired), TT_EDENIED (no uses left). */
int store_token_use(broker_store_t *s, const uint8_t hash[32], int64_t now_ms) TT_WUR;

/* ---- revocations -------------------------------------------------------------------- */
typedef enum { STORE_REVOKE_DEVICE = 1, STORE_REVOKE_PERSON = 2 } store_revoke_kind_t;
/* -EEXIST if already revoked. Revoking a device also sets its revoked flag. */
int store_revoke(broker_store_t *s, store_revoke_kind_t kind, const char *name, const char *by,
                 const char *reason, int64_t now_ms) TT_WUR;
/* Every revocation, for the broker's cache; a non-zero return stops the walk. */
typedef int (*store_revocation_cb)(void *ctx, store_revoke_kind_t kind, const char *name);
int store_revocations(broker_store_t *s, store_revocation_cb cb, void *ctx) TT_WUR;
/* *revoked = whether that identity is revoked. */
int store_is_revoked(broker_store_t *s, store_revoke_kind_t kind, const char *name, bool *revoked) TT_WUR;

/* ---- audit: append-only, hash-chained ------------------------------------------------ */
typedef struct {
  int64_t id;                   /* 1, 2, 3 ... */
  int64_t ts_ms;
  int format;                   /* 1: hashed in the clear (before schema 16); 2: tt/audit.h */
  tt_audit_value_t values[TT_AUDIT_VALUES_MAX]; /* format 2: each value's salt and digest */
  size_t nvalues;
  char actor[STORE_NAME_MAX];   /* who: a person, a device id, or "broker" */
  char action[STORE_NAME_MAX];  /* "enroll", "connect", "refuse", "revoke", ... */
  char target[STORE_NAME_MAX];  /* what it acted on (device id, person), may be empty */
  char detail[512];             /* a JSON object of further fields, "{}" if none */
  uint8_t prev_hash[32];
  uint8_t hash[32];             /* sha256 over prev_hash and the canonical fields */
  /* A pruned entry's values that an erasure after the cut released: no text, no hashes, only
   * each value's index (value_n), digest and erasure, for the erasure's commitment. */
  bool pruned;
  uint8_t value_n[TT_AUDIT_VALUES_MAX];
} store_audit_t;

/* Append in format 2 (tt/audit.h): each value gets a salt and a digest, the hash covers
 * prev_hash, id, ts, the action, the detail's keys and the digests. *id_out may be NULL. */
int store_audit_append(broker_store_t *s, int64_t ts_ms, const char *actor, const char *action,
                       const char *target, const char *detail_json, int64_t *id_out) TT_WUR;
typedef struct {
  int64_t since_ms;             /* 0 = from the start */
  const char *device;           /* actor or target equals this; NULL = any */
  uint32_t limit;               /* 0 = no limit */
  int64_t after_id;             /* paging: only entries with a larger id; 0 = from the start */
} store_audit_filter_t;
typedef int (*store_audit_cb)(void *ctx, const store_audit_t *e);
/* Entry id, with its values; TT_ENOTFOUND. */
int store_audit_one(broker_store_t *s, int64_t id, store_audit_t *a) TT_WUR;
/* The pruned entries after after_id (at most limit; 0 = all) whose values an erasure after
 * the cut released, as store_audit_t with pruned set: an export lists them before the entries,
 * so that an offline walk can check the erasure (tt_audit_walk_released). */
int store_audit_released_before(broker_store_t *s, int64_t after_id, uint32_t limit, store_audit_cb cb,
                                void *ctx) TT_WUR;
int store_audit_list(broker_store_t *s, const store_audit_filter_t *f, store_audit_cb cb, void *ctx) TT_WUR;
/* The chain's head: the last entry's id and hash (0 and zeros when empty). Logged at start
 * and stop and every hour, it anchors the chain outside the database: rows cut off the end,
 * or a chain rewritten whole, no longer end at a head that was logged. */
void store_audit_head(broker_store_t *s, int64_t *id, uint8_t hash[32]);
/* Walk the whole chain: *count entries checked; *first_bad = id of the first entry whose
 * hash or link does not hold (0 if the chain is intact). */
int store_audit_verify(broker_store_t *s, int64_t *count, int64_t *first_bad) TT_WUR;
/* The same walk through w, with its checkpoints as anchors: w says what damage it found. */
int store_audit_walk(broker_store_t *s, tt_audit_walk_t *w) TT_WUR;
/* Entries still in format 1 (written before schema 16): how many, 0 when none. */
int store_audit_format1(broker_store_t *s, int64_t *count) TT_WUR;
/* Hash every format 1 entry again in format 2, from entry 1 on, in one transaction with the
 * signed line that bridges the two (cp: kind RECHAIN, signed by the caller's sign callback once
 * the new head is known). The caller has checked the format 1 chain first. */
typedef int (*store_rechain_sign_fn)(void *ctx, tt_audit_checkpoint_t *cp, char *line, size_t cap);
int store_audit_rechain(broker_store_t *s, store_rechain_sign_fn sign, void *ctx, tt_audit_checkpoint_t *cp,
                        char *line, size_t cap) TT_WUR;
/* The SIEM forwarder's cursor for a collector (schema 17): the last entry it has; 0 = none. */
int store_siem_cursor_get(broker_store_t *s, const char *target, int64_t *seq) TT_WUR;
int store_siem_cursor_put(broker_store_t *s, const char *target, int64_t seq, int64_t now_ms) TT_WUR;
/* ---- retention (schema 18, records/retention.c) ------------------------------------------ */
/* What an admin set for a class (TT_ENOTFOUND: nothing, the default applies). */
int store_retention_get(broker_store_t *s, const char *cls, int64_t *keep_ms, char *set_by, size_t cap,
                        int64_t *set_ms) TT_WUR;
int store_retention_set(broker_store_t *s, const char *cls, int64_t keep_ms, const char *by, int64_t now_ms) TT_WUR;
/* A ticket on hold keeps its records past retention. -EEXIST: held already (the reason stays);
 * TT_ENOTFOUND: no such ticket (set) or not held (clear). */
int store_hold_set(broker_store_t *s, int64_t ticket, const char *reason, const char *by, int64_t now_ms) TT_WUR;
int store_hold_clear(broker_store_t *s, int64_t ticket) TT_WUR;
int store_holds_count(broker_store_t *s, uint32_t *n) TT_WUR;
/* Recordings finished before cutoff of tickets not held, at most budget: each file deleted
 * (DATA_DIR/path; one already gone is fine) and the row marked expired. *n: how many. */
int store_retention_recordings(broker_store_t *s, const char *data_dir, int64_t cutoff_ms, uint32_t budget,
                               int64_t now_ms, uint32_t *n) TT_WUR;
/* Diagnostics reports taken before cutoff, of tickets not held, at most budget: deleted. */
int store_retention_diagnostics(broker_store_t *s, int64_t cutoff_ms, uint32_t budget, uint32_t *n) TT_WUR;
/* Where a sweep of closed tickets or of inventory history has got to: zeroed when the sweep
 * starts, kept between its steps. */
typedef struct {
  int64_t closed_ms, ticket;    /* closed tickets: the last one looked at */
  char device[TT_NAME_MAX + 1]; /* inventory history: the last device done */
} store_sweep_cursor_t;
/* Tickets closed before cutoff (schema 20), after cur, with everything that references them,
 * until budget rows are gone: the timeline, sessions, recordings (their files deleted first),
 * diagnostics reports, help requests and knowledge-base links; alerts and storms forget the
 * ticket. Not a ticket on hold, one an alert still fails on, one with a live session, nor one
 * whose storm (its parent, or a child) must stay: a storm and its members go together. The
 * audit keeps its entries. *tickets: how many went; *more: the budget ran out first. */
int store_retention_tickets(broker_store_t *s, const char *data_dir, int64_t cutoff_ms, uint32_t budget,
                            int64_t now_ms, store_sweep_cursor_t *cur, uint32_t *tickets, bool *more) TT_WUR;
/* Inventory history received before cutoff (schema 20), a device at a time after cur, until
 * budget rows are gone: each device's history starts at its first version received since
 * (its newest if none), and the rows only the versions before it needed are deleted. What
 * every version from there reads, the current inventory first, is unchanged. *versions: how
 * many left the history; *more: the budget ran out first. */
int store_retention_inventory(broker_store_t *s, int64_t cutoff_ms, uint32_t budget, store_sweep_cursor_t *cur,
                              uint32_t *versions, bool *more) TT_WUR;
/* The pruned audit's start: entries up to *entries are gone, the last of them hashed *head
 * (0 and zeros: nothing pruned). */
int store_audit_base(broker_store_t *s, int64_t *entries, uint8_t head[32]) TT_WUR;
/* Where a cut at cutoff would fall: the last entry before cutoff, and before the creation of
 * any held ticket; *entries 0 when there is none past the current base. */
int store_audit_cut_point(broker_store_t *s, int64_t cutoff_ms, int64_t *entries, uint8_t head[32]) TT_WUR;
/* Move the base to entries (with its head, and the signed line that says so), then delete at
 * most budget entries (with their values) up to the base. *removed: how many; call again
 * with entries 0 to go on deleting up to the base already set. */
int store_audit_prune(broker_store_t *s, int64_t entries, const uint8_t head[32], const tt_audit_checkpoint_t *cut,
                      const char *line, uint32_t budget, uint32_t *removed) TT_WUR;
/* ---- a person's records (records/person.c): what `person export` collects -------------- */
typedef enum {
  STORE_PX_TICKETS = 1,    /* tickets they asked for, were given or opened */
  STORE_PX_EVENTS = 2,     /* those tickets' timelines, and every event they wrote */
  STORE_PX_SESSIONS = 3,   /* sessions they took, or consented to on their machine */
  STORE_PX_RECORDINGS = 4, /* recordings of those sessions */
  STORE_PX_DIAG = 5,       /* diagnostics reports they took, or of sessions on their machine */
  STORE_PX_AUDIT = 6,      /* audit entries naming them (actor, target or a value of the detail) */
} store_px_t;
/* Ids after `after`, in order, at most cap into ids (*n of them). The audit looks at most
 * `window` entries past after (0 = no limit) and *scanned_to says how far it looked. */
int store_person_ids(broker_store_t *s, store_px_t which, const char *name, int64_t after, int64_t window,
                     int64_t *ids, uint32_t cap, uint32_t *n, int64_t *scanned_to) TT_WUR;
/* ---- a person's erasure (records/erase.c): `person erase` ----------------------------------
 * Every value that names the person (as a whole word, in any case) becomes the pseudonym, in
 * one transaction: tickets, their timelines, sessions, recordings' rows, help requests, who
 * set what, asset records, and the audit (released: tt/audit.h). Their diagnostics reports
 * are deleted and their recordings marked erased (the files go after the commit,
 * store_erase_files). A revoked technician's row and ssh keys are deleted and the revocation
 * kept under store_erase_revocation_key. Records of a ticket on hold are counted in held and
 * left as they are. Refused (x->refused says why): a device's id (TT_EINVAL), someone who can
 * still sign in (TT_EDENIED), an open session (TT_EBUSY), a name no record holds
 * (TT_ENOTFOUND). A dry run does it all and rolls it back: the counts say what would go. */
typedef enum {
  STORE_EC_TICKETS, STORE_EC_EVENTS, STORE_EC_SESSIONS, STORE_EC_RECORDINGS, STORE_EC_DIAG, STORE_EC_HELP,
  STORE_EC_AUDIT, STORE_EC_OTHER, STORE_EC_N
} store_erase_class_t;
#define STORE_ERASE_HELD_MAX TT_ERASE_HELD_MAX /* held tickets listed in the answer */
#define STORE_ERASE_REVOKED_CAP (7 + 48 + 1) /* "erased:" and 48 hex digits: it fits a name */
#define STORE_ERASE_PSEUDONYM_MAX 32u
#define STORE_ERASED_TEXT "(erased)" /* an audit value that held the name among other words */
typedef struct {
  char name[STORE_NAME_MAX];
  char pseudonym[STORE_ERASE_PSEUDONYM_MAX];
  char by[STORE_NAME_MAX];          /* the admin erasing: never themselves */
  bool dry_run;
  int64_t changed[STORE_EC_N];      /* rows rewritten (diagnostics: deleted) per class */
  int64_t held[STORE_EC_N];         /* rows that name them under a hold, left */
  int64_t held_tickets[STORE_ERASE_HELD_MAX];
  uint32_t nheld_tickets;
  int64_t released;                 /* audit values released */
  int64_t erasure;                  /* the erasure's audit entry (0 on a dry run) */
  char refused[256];
} store_erase_t;
/* Writes the erasure's own audit entry (committing to acc, tt/audit.h) and the broker's
 * signed erase line for it, in the transaction: the entry's id into *id. */
typedef int (*store_erase_audit_fn)(void *ctx, broker_store_t *s, const store_erase_t *x, const uint8_t acc[32],
                                    int64_t *id);
int store_person_erase(broker_store_t *s, store_erase_t *x, store_erase_audit_fn audit, void *ctx) TT_WUR;
/* After the commit: the files of the recordings erasure `erasure` marked, deleted. */
int store_erase_files(broker_store_t *s, const char *data_dir, int64_t erasure, uint32_t *deleted,
                      uint32_t *failed) TT_WUR;
/* After the commit: the WAL checkpointed and truncated; clean is false if a reader kept it. */
int store_erase_scrub(broker_store_t *s, bool *clean) TT_WUR;
int store_secure_delete(broker_store_t *s, bool on) TT_WUR;
/* The revocation of an erased person is kept under HMAC(key, name): the broker sets the key
 * (erase.key in its data directory, never in the store) before it opens connections. */
void store_erase_set_key(const uint8_t key[32]);
/* How many revocations are kept under that key (an erased person's). */
int store_erase_revocations(broker_store_t *s, int64_t *n) TT_WUR;
void store_erase_revocation_key(const char *name, char out[STORE_ERASE_REVOKED_CAP]);
/* Transfers' records older than cutoff (retention class transfers): the file-transfer events
 * of ticket timelines are deleted, and the path and message of file-transfer audit entries
 * after *after released to "(expired)" (tt/audit.h); who, when, size and sha256 stay. At most
 * budget of each, not under a hold. When values were released, audit writes the release's own
 * entry, committing to them. *more: a budget ran out. */
typedef int (*store_release_audit_fn)(void *ctx, broker_store_t *s, int64_t released, const uint8_t acc[32],
                                      int64_t *id);
int store_retention_transfers(broker_store_t *s, int64_t cutoff_ms, uint32_t budget, int64_t *after,
                              store_release_audit_fn audit, void *ctx, uint32_t *events, int64_t *released,
                              bool *more) TT_WUR;
/* The word matching erase does (exposed for its unit test). */
bool store_erase_names(const char *t, size_t len, const char *name);
bool store_erase_is(const char *t, size_t len, const char *name); /* the whole text, in any case */
bool store_erase_names_json(const char *t, size_t len, const char *name); /* JSON text: escapes separate */
char *store_erase_rewrite(const char *t, size_t len, const char *name, const char *pseudo, size_t max, size_t *outlen);

/* Signed checkpoints of the chain's head (schema 4): one row per line, append-only. */
int store_checkpoint_add(broker_store_t *s, const tt_audit_checkpoint_t *cp, const char *line) TT_WUR;
/* The same in a transaction of its own (outside a batch). */
int store_checkpoint_commit(broker_store_t *s, const tt_audit_checkpoint_t *cp, const char *line) TT_WUR;
typedef int (*store_checkpoint_cb)(void *ctx, const char *line);
int store_checkpoints(broker_store_t *s, store_checkpoint_cb cb, void *ctx) TT_WUR;

/* ---- help-desk tickets (schema 2) ----------------------------------------------------- */
/* A ticket is the reason for access (DESIGN "Sessions, tickets and consent"); users see its
 * id as T-<id>. Every change leaves an event on the ticket's append-only timeline. */
typedef enum {
  STORE_TICKET_LOW = 0,
  STORE_TICKET_NORMAL = 1,
  STORE_TICKET_HIGH = 2,
  STORE_TICKET_URGENT = 3,
} store_ticket_priority_t;

typedef enum {
  STORE_TICKET_OPEN = 1,
  STORE_TICKET_RESOLVED = 2,
  STORE_TICKET_CLOSED = 3,
} store_ticket_state_t;

#define STORE_TICKET_SOURCE_MAX 16
#define STORE_TICKET_LEVEL_MIN 1
#define STORE_TICKET_LEVEL_MAX 3
/* A bit of store_ticket_filter_t.state_mask. */
#define STORE_TICKET_STATE_BIT(state) (1u << (unsigned)(state))

typedef struct {
  int64_t id;                          /* 1, 2, 3 ... filled in by store_ticket_add */
  char device[STORE_NAME_MAX];         /* the device the ticket is about */
  char requester[STORE_NAME_MAX];      /* who asked, may be empty */
  char assignee[STORE_NAME_MAX];       /* technician, empty = unassigned */
  char summary[STORE_TEXT_MAX];
  char external_id[STORE_NAME_MAX];    /* another service desk's id, may be empty */
  store_ticket_priority_t priority;
  int level;                           /* support level 1..3 */
  store_ticket_state_t state;
  int64_t created_ms;
  int64_t updated_ms;
  int64_t first_response_due_ms;       /* SLA due times, 0 = none */
  int64_t resolution_due_ms;
  int64_t first_response_ms;           /* 0 = no response yet */
  int64_t resolved_ms;                 /* 0 = not resolved */
  char created_by[STORE_NAME_MAX];     /* the actor of store_ticket_add (schema 3); read only */
  char source[STORE_TICKET_SOURCE_MAX]; /* technician (""), employee, check, storm (schema 11) */
  int64_t parent;                      /* the storm ticket this one belongs to, 0 = none */
} store_ticket_t;

typedef struct {
  int64_t id;                          /* ascending over all tickets */
  int64_t ticket;
  int64_t ts_ms;
  char actor[STORE_NAME_MAX];          /* a person, a device id, or "broker" */
  char kind[STORE_NAME_MAX];           /* "created", "assigned", "escalated", "comment",
                                        * "resolved", "closed", "reopened",
                                        * "session-opened", "consent-given", ... */
  char text[STORE_TEXT_MAX];
} store_ticket_event_t;

/* Insert a ticket and its "created" event (text = summary) in one transaction; sets t->id
 * and t->created_ms = t->updated_ms = now_ms. A state of 0 is taken as open and a level of 0
 * as 1; other values out of range are refused by the schema (TT_EINVAL), writing nothing. */
int store_ticket_add(broker_store_t *s, store_ticket_t *t, const char *actor, int64_t now_ms) TT_WUR;
int store_ticket_get(broker_store_t *s, int64_t id, store_ticket_t *out) TT_WUR; /* TT_ENOTFOUND */
/* Write t's mutable fields (assignee, priority, level, state, summary, due times,
 * first_response_ms, resolved_ms; updated_ms = now_ms) and one event (kind, text) at now_ms,
 * in one transaction. TT_ENOTFOUND if no ticket t->id; TT_EINVAL for values out of range or
 * an empty kind; TT_ETOOBIG for a field too long to list back. Nothing is written on error. */
int store_ticket_update(broker_store_t *s, const store_ticket_t *t, const char *actor,
                        const char *kind, const char *text, int64_t now_ms) TT_WUR;
/* Set first_response_ms = now_ms if it is still 0 (no event: the caller's own event says
 * what the response was). 0 also when it was set already; TT_ENOTFOUND if no such ticket. */
int store_ticket_responded(broker_store_t *s, int64_t id, int64_t now_ms) TT_WUR;
/* An event on its own (a comment, session-opened, consent-given). TT_ENOTFOUND if no such
 * ticket; TT_EINVAL for an empty kind; TT_ETOOBIG for a field too long to list back. */
int store_ticket_event_add(broker_store_t *s, int64_t ticket, int64_t ts_ms, const char *actor,
                           const char *kind, const char *text) TT_WUR;

typedef struct {
  unsigned state_mask;                 /* STORE_TICKET_STATE_BIT(state) | ...; 0 = all */
  const char *assignee;                /* NULL = any ("" = unassigned) */
  const char *device;                  /* NULL = any */
  uint32_t limit;                      /* 0 = no limit */
  int64_t after_id;                    /* paging: only tickets with a larger id */
} store_ticket_filter_t;
/* Tickets ordered by id. The callback must not list tickets again (the statement is in
 * use); a non-zero return stops the walk and is returned. */
typedef int (*store_ticket_cb)(void *ctx, const store_ticket_t *t);
int store_ticket_list(broker_store_t *s, const store_ticket_filter_t *f, store_ticket_cb cb,
                      void *ctx) TT_WUR;
/* A ticket's timeline in id order; same callback rules. No events (or no ticket) = no calls. */
typedef int (*store_ticket_event_cb)(void *ctx, const store_ticket_event_t *e);
int store_ticket_events(broker_store_t *s, int64_t ticket, store_ticket_event_cb cb, void *ctx) TT_WUR;
/* The newest `limit` events of a ticket (0 = all), oldest first; *total = all its events. */
int store_ticket_events_tail(broker_store_t *s, int64_t ticket, uint32_t limit,
                             store_ticket_event_cb cb, void *ctx, uint32_t *total) TT_WUR;
/* One event by its id (records/person.c). TT_ENOTFOUND. */
int store_ticket_event_get(broker_store_t *s, int64_t id, store_ticket_event_t *out) TT_WUR;

/* ---- sessions and recordings (schema 3) ---------------------------------------------- */
/* A session is a consented grant: one person, one device, one ticket, some access, until
 * expires_ms or until ended. Users see S-<id>; recordings R-<id>. */
#define STORE_ACCESS_SHELL 1u
#define STORE_ACCESS_FILES 2u
#define STORE_ACCESS_DIAG 4u

typedef struct {
  int64_t id;                          /* filled in by store_session_add */
  int64_t ticket;
  char device[STORE_NAME_MAX];
  char person[STORE_NAME_MAX];
  unsigned access;                     /* STORE_ACCESS_* bits */
  int64_t started_ms;
  int64_t expires_ms;
  bool unattended;
  char consent_by[STORE_NAME_MAX];     /* local user who said yes, "" if unattended */
  int64_t ended_ms;                    /* 0 = live */
  char ended_by[STORE_NAME_MAX];
  char end_reason[STORE_TEXT_MAX];
} store_session_t;

/* Insert a session as given (asked for: expires_ms 0 until granted); sets sess->id.
 * TT_ENOTFOUND if the ticket does not exist; TT_EINVAL for access outside 1..7 or an empty
 * device or person; TT_ETOOBIG for a text field without its NUL. */
int store_session_add(broker_store_t *s, store_session_t *sess) TT_WUR;
/* Consent came: record the grant (expiry, unattended, who said yes). TT_ENOTFOUND if no
 * such session, TT_ESTATE if it has ended. */
int store_session_grant(broker_store_t *s, int64_t id, int64_t expires_ms, bool unattended,
                        const char *consent_by) TT_WUR;
int store_session_get(broker_store_t *s, int64_t id, store_session_t *out) TT_WUR; /* TT_ENOTFOUND */
/* Mark ended (only if still live: TT_ESTATE if it had ended already; TT_ENOTFOUND if no
 * such session; now_ms must be > 0, as 0 means live). */
int store_session_end(broker_store_t *s, int64_t id, int64_t now_ms, const char *by,
                      const char *reason) TT_WUR;
/* At start: every session still marked live ended when the broker last stopped; mark them
 * ended (by "broker", reason "broker restarted") and return how many. Recordings still
 * marked as being written died with that broker too: they are marked failed (ended_ms =
 * now, size 0 and sha256 "": unknown; the partial file stays for an admin to look at). */
int store_session_end_all(broker_store_t *s, int64_t now_ms, uint32_t *count) TT_WUR;

typedef struct {
  int64_t id;
  int64_t session;
  int64_t ticket;
  char device[STORE_NAME_MAX];
  char person[STORE_NAME_MAX];
  char path[512];                      /* relative to the data dir: recordings/R-<id>.cast.zst */
  int64_t started_ms;
  int64_t ended_ms;                    /* 0 = still being written (or the broker died) */
  int64_t size;                        /* compressed bytes, when ended */
  char sha256[65];                     /* hex, when ended */
  bool failed;                         /* writing failed (disk full...): the file is partial */
  int64_t expired_ms;                  /* retention deleted the file then (schema 18), 0 = kept */
  int64_t erased;                      /* the audit entry of the erasure that deleted it (schema 19) */
} store_recording_t;

/* Insert (session, ticket, device, person, started_ms are used; ended_ms 0); sets r->id and
 * r->path ("recordings/R-<id>.cast.zst"). TT_ENOTFOUND if the session or ticket does not
 * exist. Ids are never reused, so a new id never names an old file. */
int store_recording_add(broker_store_t *s, store_recording_t *r) TT_WUR;
/* Once: TT_ESTATE if it was finished already, TT_ENOTFOUND if no such recording, TT_EINVAL
 * for a sha256 that is not 64 lowercase hex digits (NULL or "" = unknown, for a failure),
 * a negative size, or ended_ms <= 0. */
int store_recording_finish(broker_store_t *s, int64_t id, int64_t ended_ms, int64_t size,
                           const char *sha256_hex, bool failed) TT_WUR;
int store_recording_get(broker_store_t *s, int64_t id, store_recording_t *out) TT_WUR; /* TT_ENOTFOUND */
/* A session's recordings in id order, at most cap; *n = how many were written to out. */
int store_recording_list(broker_store_t *s, int64_t session, store_recording_t *out, uint32_t cap,
                         uint32_t *n) TT_WUR;

/* ---- people (schema 4) ------------------------------------------------------------------ */
/* Technicians and admins the broker knows: seen at connect (their certificate's name and
 * role) or added by an admin before they ever connect. Only a known, unrevoked person can
 * be given a ticket. Revocation stays in revocations (STORE_REVOKE_PERSON). */
typedef enum {
  STORE_PERSON_TECHNICIAN = 2,          /* tt_role_t's numbers, so a role maps one to one */
  STORE_PERSON_ADMIN = 3,
} store_person_role_t;

typedef struct {
  char name[STORE_NAME_MAX];           /* their certificate's CN */
  store_person_role_t role;            /* as added, then as their certificate said when seen */
  int64_t first_seen_ms;               /* first connect, 0 = never connected */
  int64_t last_seen_ms;                /* latest connect or disconnect, 0 = never */
  char added_by[STORE_NAME_MAX];       /* the admin who added them, "" = first seen at connect */
  int64_t added_ms;                    /* 0 when first seen at connect */
  char note[STORE_TEXT_MAX];
  bool revoked;                        /* a person revocation names them; read only */
  int level;                           /* support level 1..3 (schema 12; 0 on add = 1) */
} store_person_t;

/* An admin adds someone who has not connected yet (name, role, added_by, added_ms, note,
 * level). -EEXIST if the name is known; TT_EINVAL for a name that is not 1..TT_NAME_MAX of
 * [A-Za-z0-9._@-], a role that is not a person's or a level outside 1..3 (the schema checks
 * them); TT_ETOOBIG
 * for a field without its NUL. Nothing is written on error. */
int store_person_add(broker_store_t *s, const store_person_t *p) TT_WUR;
/* A person connected with a certificate of this role: inserted if new (first and last seen
 * now), else the role follows the certificate and last seen moves on (never back); first
 * seen is set if they had only been added. TT_EINVAL as for store_person_add. */
int store_person_seen(broker_store_t *s, const char *name, store_person_role_t role, int64_t now_ms) TT_WUR;
/* Their connection ended: last seen moves on (never back); nothing for someone never seen. */
int store_person_last_seen(broker_store_t *s, const char *name, int64_t now_ms) TT_WUR;
int store_person_get(broker_store_t *s, const char *name, store_person_t *out) TT_WUR; /* TT_ENOTFOUND */

/* ---- ssh keys (schema 15): what people log in to the ssh gateway with -------------------- */
typedef struct {
  char fingerprint[TT_SSH_FP_LEN + 1];
  char person[STORE_NAME_MAX];
  char type[24];
  unsigned bits;
  char line[TT_SSH_KEY_LINE_MAX + 1];
  char comment[STORE_TEXT_MAX];
  int64_t added_ms;
  char added_by[STORE_NAME_MAX];
} store_ssh_key_t;

typedef enum {
  STORE_SSH_KEYS_OF,   /* one person's, oldest first */
  STORE_SSH_KEYS_ALL,  /* everyone's, by person */
  STORE_SSH_KEYS_LIVE, /* everyone's but revoked people's: what the gateway lets in */
} store_ssh_keys_t;

/* Register a key (parsed by tt_sshkey_parse) for a known person. -EEXIST: that key is
 * registered already (to anyone); TT_ENOTFOUND: no such person; TT_EFULL: they hold
 * max_per_person keys. */
int store_ssh_key_add(broker_store_t *s, const store_ssh_key_t *k, uint32_t max_per_person) TT_WUR;
int store_ssh_key_get(broker_store_t *s, const char *fingerprint, store_ssh_key_t *out) TT_WUR; /* TT_ENOTFOUND */
int store_ssh_key_remove(broker_store_t *s, const char *fingerprint) TT_WUR;                      /* TT_ENOTFOUND */
typedef int (*store_ssh_key_cb)(void *ctx, const store_ssh_key_t *k);
/* person: for STORE_SSH_KEYS_OF. A non-zero return from cb stops the walk and is returned. */
int store_ssh_key_list(broker_store_t *s, store_ssh_keys_t which, const char *person, store_ssh_key_cb cb,
                       void *ctx) TT_WUR;
/* An admin's mark: the person's support level (1..3, else TT_EINVAL). TT_ENOTFOUND. */
int store_person_set_level(broker_store_t *s, const char *name, int level) TT_WUR;
/* People ordered by name, those after `after` ("" = from the start), at most limit (0 = no
 * limit). The callback must not list people again; a non-zero return stops the walk and is
 * returned. */
typedef int (*store_person_cb)(void *ctx, const store_person_t *p);
int store_person_list(broker_store_t *s, const char *after, uint32_t limit, store_person_cb cb,
                      void *ctx) TT_WUR;

/* ---- knowledge base (schema 12, kb.c) ----------------------------------------------------
 * Articles (KB-<id>): a title, a Markdown body, the health checks it is the fix for, and the
 * tickets it solved. Title and body are indexed by SQLite FTS5 (porter over unicode61,
 * diacritics folded), kept in the same transaction as each write. */
#define STORE_KB_TITLE_MAX TT_TEXT_MAX       /* bytes */
#define STORE_KB_BODY_MAX TT_KB_BODY_MAX     /* bytes */
#define STORE_KB_CHECKS_MAX TT_KB_CHECKS_MAX /* checks one article names */
#define STORE_KB_CHECK_MAX 63u               /* bytes of a check's name: [a-z0-9_]{1,63} */
#define STORE_KB_QUERY_MAX TT_KB_QUERY_MAX   /* bytes of a search */
#define STORE_KB_HITS_MAX TT_KB_HITS_MAX     /* hits one search returns */
#define STORE_KB_LINKS_MAX TT_KB_LINKS_MAX   /* articles linked to one ticket */
/* A hit's context as snippet() gives it (16 tokens, matches in [brackets]), whitespace made
 * single spaces and cut to this many bytes at a character's boundary. */
#define STORE_KB_SNIPPET_MAX 320u

typedef struct {
  int64_t id;                                   /* KB-<id>; 0 in a put: a new article */
  char title[STORE_KB_TITLE_MAX + 1];
  const char *body;                             /* Markdown, body_len bytes, no NUL */
  size_t body_len;
  char checks[STORE_KB_CHECKS_MAX][STORE_KB_CHECK_MAX + 1];
  size_t nchecks;
  char author[STORE_NAME_MAX];                  /* who wrote it first */
  char updated_by[STORE_NAME_MAX];              /* who wrote it last */
  int64_t created_ms, updated_ms;
  uint32_t solved;                              /* tickets linked to it */
} store_kb_article_t;

typedef struct {
  int64_t id;
  char title[STORE_KB_TITLE_MAX + 1];
  char snippet[STORE_KB_SNIPPET_MAX + 1];       /* search hits only */
  double score;                                 /* bm25 (lower is better); search hits only */
  uint32_t matched;                             /* distinct words of the search it holds */
  uint32_t solved;
  char checks[STORE_KB_CHECKS_MAX][STORE_KB_CHECK_MAX + 1];
  size_t nchecks;
} store_kb_hit_t;

/* A check's name as articles and the catalogue spell it: [a-z0-9_]{1,63}. */
bool store_kb_check_name_ok(const char *name);
/* A body: 1..STORE_KB_BODY_MAX bytes of UTF-8 with no NUL, DEL or control character but
 * tab, CR and LF. */
bool store_kb_body_ok(const char *body, size_t len);
/* Write an article: a->id 0 makes a new one (a->id, author, created_ms set; author and
 * updated_by = by), else KB-id is replaced (title, body and checks; updated_ms, updated_by;
 * its author, created_ms and links stay). a->solved, author and dates are filled in as stored.
 * TT_ENOTFOUND for no article KB-id; TT_EINVAL for an empty or invalid title or body, a bad
 * or repeated check name, more than STORE_KB_CHECKS_MAX checks or no `by`; TT_ETOOBIG for a
 * title or body past its limit. The article, its checks and the index change in one
 * transaction, or nothing does. */
int store_kb_put(broker_store_t *s, store_kb_article_t *a, const char *by, int64_t now_ms) TT_WUR;
/* KB-id: cb gets the article, its body valid during the call. TT_ENOTFOUND. */
typedef int (*store_kb_article_cb)(void *ctx, const store_kb_article_t *a);
int store_kb_get(broker_store_t *s, int64_t id, store_kb_article_cb cb, void *ctx) TT_WUR;
/* KB-id's title (cut to cap at a character's boundary). TT_ENOTFOUND. */
int store_kb_title(broker_store_t *s, int64_t id, char *title, size_t cap) TT_WUR;
/* Search: the query is split into words as the index splits text (never read as FTS5
 * syntax), each word quoted; articles holding any of them match, those holding more of the
 * words first, then by bm25 with the title weighing ten times the body. At most limit hits
 * (0 or past STORE_KB_HITS_MAX: STORE_KB_HITS_MAX), best first. TT_EINVAL for a query with
 * no word (empty, or symbols only); TT_ETOOBIG past STORE_KB_QUERY_MAX bytes. */
typedef int (*store_kb_hit_cb)(void *ctx, const store_kb_hit_t *h);
int store_kb_search(broker_store_t *s, const char *query, uint32_t limit, store_kb_hit_cb cb, void *ctx) TT_WUR;
/* Ticket T-ticket was solved by KB-article: linked by `by` at now_ms. TT_ENOTFOUND for no
 * such article (or ticket); -EEXIST if linked already; TT_ETOOBIG when the ticket links
 * STORE_KB_LINKS_MAX articles already; TT_EINVAL for no `by`. */
int store_kb_link(broker_store_t *s, int64_t ticket, int64_t article, const char *by, int64_t now_ms) TT_WUR;
/* The link undone; TT_ENOTFOUND if there was none. */
int store_kb_unlink(broker_store_t *s, int64_t ticket, int64_t article) TT_WUR;
/* The articles linked to a ticket, in the order they were linked (no snippet or score). */
int store_kb_for_ticket(broker_store_t *s, int64_t ticket, store_kb_hit_cb cb, void *ctx) TT_WUR;
/* The articles that name a check, most solved first (no snippet or score); a ticket a health
 * check raised shows them. TT_EINVAL for a name that is not a check's. */
int store_kb_for_check(broker_store_t *s, const char *check, store_kb_hit_cb cb, void *ctx) TT_WUR;

/* ---- inventory (schema 6) ---------------------------------------------------------------
 * A device's inventory is a set of tables named as osquery names them, each the canonical
 * JSON the agent hashed. A version is one arrival of changes (tables added, changed or
 * removed); only changed tables are stored, zstd-compressed, so a device's state at any
 * version is, per table name, its newest row at or before that version. Version ids are
 * global and ascending: any id is also a point in arrival order. Callbacks: a non-zero return
 * stops the walk and is returned; a body is valid only during its call. */
#define STORE_INV_TABLE_MAX (4u * 1024 * 1024)  /* one table's JSON, decompressed */
#define STORE_INV_TABLES_MAX 64                  /* tables per device (and per put) */
#define STORE_INV_NAME_MAX 64                    /* name + NUL */
/* A version's changed names as history gives them: at most every table, "-" and "," each. */
#define STORE_INV_CHANGED_MAX (STORE_INV_TABLES_MAX * (STORE_INV_NAME_MAX + 1))
typedef struct {
  char name[STORE_INV_NAME_MAX]; /* [a-z0-9_]{1,63} */
  uint8_t sha256[32];            /* of body; checked by the store */
  const uint8_t *body; /* canonical JSON; NULL = the device no longer reports this table (removed) */
  size_t len;
} store_inv_table_t;

/* The device's current hash of each table it has (removed ones excluded), for the agent's
 * "what changed" check: cb once per table, in name order. No tables = no calls. */
typedef int (*store_inv_hash_cb)(void *ctx, const char *name, const uint8_t sha256[32]);
int store_inv_hashes(broker_store_t *s, const char *device, store_inv_hash_cb cb, void *ctx) TT_WUR;

/* Record what changed: of the n tables given, those whose sha256 differs from the current one
 * (or that are new, or body==NULL for a current one = removed) go into a new version; *version
 * gets its id, or 0 when nothing differed (no row written). TT_EINVAL for a device id that is
 * not 1..TT_NAME_MAX bytes, a bad name, a name given twice, n past STORE_INV_TABLES_MAX, an
 * empty body, a body over STORE_INV_TABLE_MAX, a sha256 that is not the body's, a negative
 * time, or a put that would leave the device more than STORE_INV_TABLES_MAX tables; nothing
 * is half-written (one savepoint/transaction). */
int store_inv_put(broker_store_t *s, const char *device, int64_t collected_ms, int64_t now_ms,
                  const store_inv_table_t *t, size_t n, int64_t *version) TT_WUR;

/* One table's body as it was at `version` (0 = latest): the newest row of that table at or
 * before that version. cb gets the version that wrote it, its received time and the
 * decompressed body. TT_ENOTFOUND if the device never had it (or it was removed by then);
 * TT_EINVAL for a bad device, name or a negative version; TT_EIO for a stored body that does
 * not decompress to its recorded size and hash (damage, logged). */
typedef int (*store_inv_body_cb)(void *ctx, const char *name, int64_t version, int64_t received_ms,
                                 const uint8_t *body, size_t len);
int store_inv_table(broker_store_t *s, const char *device, const char *name, int64_t version,
                    store_inv_body_cb cb, void *ctx) TT_WUR;
/* Every current table of the device at `version` (0 = latest), in name order, same cb.
 * No tables = no calls. Each table is read by its own index seek and the statement is reset
 * before cb runs, so cb may call the store. */
int store_inv_tables(broker_store_t *s, const char *device, int64_t version, store_inv_body_cb cb, void *ctx) TT_WUR;

/* The device's versions, newest first, at most limit (0 = all), with before (0 = from the
 * newest; else only ids below it) for paging: cb gets id, collected_ms, received_ms and the
 * changed table names as one comma-separated string in name order ("deb_packages,mounts";
 * removed ones as "-name"). cb must not list history again (the statement is in use). */
typedef int (*store_inv_version_cb)(void *ctx, int64_t version, int64_t collected_ms, int64_t received_ms,
                                    const char *changed);
int store_inv_history(broker_store_t *s, const char *device, int64_t before, uint32_t limit,
                      store_inv_version_cb cb, void *ctx) TT_WUR;
/* The version current at a time (the newest received at or before at_ms), or TT_ENOTFOUND. */
int store_inv_version_at(broker_store_t *s, const char *device, int64_t at_ms, int64_t *version) TT_WUR;
/* Bytes stored for the device's inventory (compressed bodies + row overhead estimate), for the benchmark. */
int store_inv_bytes(broker_store_t *s, const char *device, int64_t *bytes) TT_WUR;

/* ---- asset records (schema 8, assets.c) -------------------------------------------------
 * The admins' records of their assets in Snipe-IT's asset columns, one per asset tag (unique
 * whatever its case), and the facts each device's latest inventory reports. A record keeps
 * the key its import matched it by; the device it belongs to is worked out at every read
 * (a record is joined to a device when that device is the only one its key finds), so a
 * record imported before its device enrolled joins it once the device reports that key. */
#define STORE_ASSET_TAG_MAX 128u                /* bytes of an asset tag */
#define STORE_ASSET_CELL_MAX TT_ASSET_CELL_MAX  /* bytes of any other field */
#define STORE_ASSET_COLUMN_MAX TT_ASSET_HEADER_MAX /* bytes of a custom field's name */
#define STORE_ASSET_CUSTOM_MAX TT_ASSET_COLUMNS_MAX
#define STORE_ASSET_ROWS_MAX TT_ASSET_ROWS_MAX
#define STORE_FACT_MAX 256u                     /* bytes of a fact (serial, OS, CPU) */

typedef enum {
  STORE_AF_TAG = 0,       /* Asset Tag */
  STORE_AF_NAME,          /* Name: the hostname key */
  STORE_AF_SERIAL,
  STORE_AF_MODEL,
  STORE_AF_MANUFACTURER,
  STORE_AF_CATEGORY,
  STORE_AF_LOCATION,
  STORE_AF_DEPARTMENT,
  STORE_AF_OWNER,         /* Checked Out To: a username or an email */
  STORE_AF_PURCHASE_DATE,
  STORE_AF_WARRANTY,      /* Warranty Months: digits, at most 4 */
  STORE_AF_NOTES,
  STORE_AF__COUNT
} store_asset_field_t;
/* Snipe-IT's column names, by field; and the short names --where takes (owner, asset_tag). */
extern const char *const store_asset_columns[STORE_AF__COUNT];
extern const char *const store_asset_short[STORE_AF__COUNT];
/* The column a --match mac import reads the MAC from (Snipe-IT's default fieldset's). */
#define STORE_ASSET_MAC_COLUMN "MAC Address"

typedef enum {
  STORE_MATCH_SERIAL = 0, /* Serial = system_info.hardware_serial */
  STORE_MATCH_HOSTNAME,   /* Name = the device's hostname */
  STORE_MATCH_MAC,        /* MAC Address = one of interface_details.mac */
  STORE_MATCH_TAG,        /* Asset Tag = an existing record's (its own key stays) */
} store_match_t;
const char *store_match_name(store_match_t m);
/* "serial", "hostname", "mac", "asset_tag" -> 0; TT_EINVAL otherwise. */
int store_match_parse(const char *s, store_match_t *m) TT_WUR;

/* Text a record may hold: valid UTF-8, no NUL, no control character but tab and (when
 * multiline) CR and LF, at most cap bytes. */
bool store_asset_text_ok(const char *s, size_t cap, bool multiline);

typedef struct {
  const char *name;
  const char *value;
} store_asset_kv_t;

/* One row of an import. f[i] NULL: the file has no such column (the stored value stays);
 * "" clears it. A custom column with value "" removes that field. */
typedef struct {
  uint32_t line;
  const char *f[STORE_AF__COUNT];
  const store_asset_kv_t *custom;
  size_t ncustom;
} store_asset_row_t;

typedef struct {
  store_match_t match;
  bool dry_run;           /* work it all out, report, write nothing */
  int64_t now_ms;
  const char *by;         /* who imports */
} store_asset_import_t;

typedef struct {
  size_t rows, skipped, created, changed, unchanged, matched, unmatched, row_conflicts, device_conflicts,
      devices_without_record;
} store_asset_counts_t;

/* Import rows in one transaction (a dry run rolls it back): each row's record is created or
 * updated by its Asset Tag, and the report (a malloc'd JSON object, the caller frees it)
 * says what matched which device, what changed field by field, which rows have no device
 * yet, the devices with no record, and the conflicts (a row whose key finds two devices, a
 * device two records find). Rows are checked first, nothing written if one fails:
 * TT_EINVAL with why (a line number and the reason) for a bad value, a tag given twice or
 * a key column the match needs and the file lacks. Importing the same rows again changes
 * nothing and says so. A row with no tag and no other field (an export's line for a device
 * with no record) is skipped. */
int store_asset_import(broker_store_t *s, const store_asset_import_t *opt, const store_asset_row_t *rows, size_t n,
                       store_asset_counts_t *counts, char **report, char *why, size_t whylen) TT_WUR;

/* What a device's latest inventory says, with the registry's hostname, version and last
 * seen. */
typedef struct {
  char device[STORE_NAME_MAX];
  char hostname[STORE_TEXT_MAX];
  char agent_version[STORE_NAME_MAX];
  int64_t last_seen_ms;
  char serial[STORE_FACT_MAX + 1];
  char os[STORE_FACT_MAX + 1];
  char cpu[STORE_FACT_MAX + 1];
  int64_t memory;           /* bytes, 0 unknown */
  int64_t disk;             /* bytes, 0 unknown */
} store_device_facts_t;
int store_device_facts(broker_store_t *s, const char *device, store_device_facts_t *out) TT_WUR; /* TT_ENOTFOUND */
/* Work out a device's facts from its latest inventory (store_inv_put does at each put that
 * changes one of the tables they come from). */
int store_facts_refresh(broker_store_t *s, const char *device) TT_WUR;
/* At open: the devices whose facts are not worked out yet (inventory older than schema 8). */
int store_facts_backfill(broker_store_t *s) TT_WUR;

/* A line of an export: a record (f set, dev the device joined to it or NULL), or a device
 * no record is joined to (f all NULL, dev set). Valid during the call. */
typedef struct {
  const char *f[STORE_AF__COUNT];
  const store_asset_kv_t *custom;
  size_t ncustom;
  const store_device_facts_t *dev;
} store_asset_line_t;
/* 0: taken; 1: not taken, stop (the page is full: it resumes at this line). */
typedef int (*store_asset_line_cb)(void *ctx, const store_asset_line_t *l);
/* The custom fields' names, sorted, at most cap of them (TT_ETOOBIG past it). */
int store_asset_custom_names(broker_store_t *s, char (*names)[STORE_ASSET_COLUMN_MAX + 1], size_t cap,
                             size_t *n) TT_WUR;
/* From cursor `after` ("" the start): every record by tag, then every device no record is
 * joined to, by id; at most `limit` lines (and fewer when cb stops). next gets the cursor
 * to resume from ("" when the export is complete). TT_EINVAL for a cursor that is not one. */
int store_asset_export(broker_store_t *s, const char *after, uint32_t limit, store_asset_line_cb cb, void *ctx,
                       char *next, size_t nextcap) TT_WUR;
#define STORE_ASSET_CURSOR_MAX (1 + STORE_ASSET_TAG_MAX + 1)

/* A --where condition: field = value, or a custom field (field -1, custom its name). */
typedef struct {
  int field;
  const char *custom;
  const char *value;
} store_asset_cond_t;
/* "owner=sam" -> a condition pointing into s (which it modifies); TT_EINVAL if malformed. */
int store_asset_cond_parse(char *s, store_asset_cond_t *c) TT_WUR;
/* Devices after `after` (by id) that a record satisfying every condition is joined to, as
 * store_device_page. The conditions are matched in the store's query (case-insensitively),
 * not by the caller over every device. TT_EINVAL for more than TT_ASSET_WHERE_MAX. */
int store_device_page_where(broker_store_t *s, const char *after, uint32_t limit, const store_asset_cond_t *c,
                            size_t n, store_device_cb cb, void *ctx) TT_WUR;
/* ---- inventory find (schema 9, inventory_find.c) ----------------------------------------
 * Every device whose latest table holds a row matching all the conditions. store_inv_put
 * keeps an index of current rows in its own transaction: each table's distinct rows once,
 * as JSON objects {"column":"value",...} in the table's column order, and per device a
 * shared row set plus and minus its own differences. Devices come in the index's order
 * (the order they were first indexed), each with its matching rows in row order. */
#define STORE_INV_ROW_MAX 16384          /* one row as the index keeps it; longer ones are not indexed */
#define STORE_INV_FIND_CONDS_MAX TT_INV_FIND_CONDS_MAX
#define STORE_INV_FIND_VALUE_MAX TT_INV_FIND_VALUE_MAX
/* Distinct rows (that some device holds) one find may match: past it the conditions are too
 * wide to page (every package of the fleet), and the find is refused (TT_ETOOBIG) rather than
 * ground through. A page keeps their ids only (16 bytes each, 1 MiB at most). */
#define STORE_INV_FIND_MATCH_MAX 65536u
/* What one device's current tables may hold in the index, all tables together: rows (a row
 * counted once per table that has it, shared or not) and their bytes as the index keeps them.
 * A desktop's whole inventory is ~20k rows and ~4 MiB so; the agent sends at most 20k rows a
 * table. Past either, a table's further rows are not indexed (logged), so a device that
 * pushes fresh rows at every version replaces its rows in the index, never adds to them, and
 * no one device can hold half of STORE_INV_FIND_MATCH_MAX matching rows. */
#define STORE_INV_DEVICE_INDEX_ROWS_MAX 32768u
#define STORE_INV_DEVICE_INDEX_BYTES_MAX (16u * 1024u * 1024u)
_Static_assert(STORE_INV_DEVICE_INDEX_ROWS_MAX <= STORE_INV_FIND_MATCH_MAX / 2, "one device cannot fill a find");
/* A page's work past the scan of the table's distinct rows that every page starts with:
 * postings, devices and rows read (~50 ms of the reader on a 2-core machine). */
#define STORE_INV_FIND_WORK_MAX 1000000u
typedef struct {
  char col[STORE_INV_NAME_MAX]; /* [a-z0-9_]{1,63} */
  const char *value;            /* bytes, no NUL, valid UTF-8 */
  size_t len;
  bool contains;                /* the cell contains value (bytewise); else equals it */
} store_inv_cond_t;
/* Whether body is a table as agents push it: a JSON object with "columns" (1..64
 * names, [a-z0-9_]{1,63}), "rows" (arrays of exactly as many strings) and an optional
 * "error" string; other members only strings or arrays of them; every string valid (UTF-8, no
 * NUL, escapes well formed), no member twice among those three, nothing after the object.
 * One pass, nothing built: the writer checks every pushed table with it. 0 or TT_EINVAL. */
int store_inv_table_check(const char *body, size_t len) TT_WUR;
/* Where a page ended: the last device (the index's number for it) and row given. {0, 0}
 * starts from the first. */
typedef struct {
  int64_t dev, row;
} store_inv_cursor_t;
/* One device and its matching rows (ids ascending; rows[i] is lens[i] bytes of JSON, not
 * NUL-terminated), valid during the call. */
typedef int (*store_inv_find_cb)(void *ctx, const char *device, const char *hostname, size_t n,
                                 const int64_t *ids, const char *const *rows, const size_t *lens);
/* The devices after *cur whose current `table` has rows matching every condition, at most
 * max_rows rows in all, and stopping before the page's size passes max_bytes (each distinct
 * row's bytes once, each device's id and hostname, a few bytes per reference: what the wire
 * page holds); a device whose rows do not all fit is continued on the next page. *cur moves
 * to the last row given; *more says whether there may be more. A page also ends, with *more
 * and the cursor past the devices it has looked at, when it has done STORE_INV_FIND_WORK_MAX
 * units of work (postings and devices read), so that no request holds the store's reader for
 * long; such a page may carry no device. TT_EINVAL for a bad table
 * name, column, value or count of conditions (1..STORE_INV_FIND_CONDS_MAX); TT_ETOOBIG past
 * STORE_INV_FIND_MATCH_MAX distinct matching rows; TT_EIO for a damaged index. */
int store_inv_find(broker_store_t *s, const char *table, const store_inv_cond_t *cond, size_t ncond,
                   store_inv_cursor_t *cur, uint32_t max_rows, size_t max_bytes, store_inv_find_cb cb, void *ctx,
                   bool *more) TT_WUR;
/* Another work budget for this connection's finds (tests and benchmarks: small budgets make
 * many pages); 0 restores STORE_INV_FIND_WORK_MAX. */
void store_inv_find_set_work(broker_store_t *s, uint64_t units);

/* ---- the store as a service ------------------------------------------------------------
 * The event loop never waits on SQLite. One store thread owns the write connection and
 * runs requests in submission order, group-committed: every request queued when a batch
 * starts runs in one transaction, each in a savepoint of its own (one failing undoes only
 * itself). A reader thread with a read-only connection serves listings, exports and
 * verification, after the writes submitted before them have committed (waiting at most
 * STORE_READ_BARRIER_MS for them, so a stuck lock never stalls a reader for good).
 * Completions run on the loop. The requests are functions over the domain API above, so a
 * second backend (PostgreSQL) implements that API and reuses the service unchanged. */
typedef struct store_svc_s store_svc_t;
typedef struct store_req_s store_req_t;
/* On a store thread, inside the request's savepoint (writer) or a read transaction
 * (reader). A non-zero return undoes the request's writes; it becomes req->rc. */
typedef int (*store_run_fn)(broker_store_t *s, store_req_t *req);
/* On the loop: req->rc says how it went; the callback owns req from here (frees it). */
typedef void (*store_done_fn)(store_req_t *req);

typedef enum { STORE_LANE_WRITE = 0, STORE_LANE_READ = 1 } store_lane_t;

/* An audit entry a request appends in its own savepoint, so the action and its record
 * commit together or not at all. detail is a JSON object ("{}" if empty). */
typedef struct {
  int64_t ts_ms;
  char actor[STORE_NAME_MAX];
  char action[STORE_NAME_MAX];
  char target[STORE_NAME_MAX];
  char detail[512];
} store_audit_rec_t;

struct store_req_s {
  store_req_t *next;            /* the service's queues */
  store_run_fn run;             /* NULL: nothing but the audit entry (if any) */
  store_done_fn done;           /* NULL: nobody waits; a failure is logged and req is freed
                                 * (one allocation: req first, its audit entry inside) */
  void *data;                   /* the caller's */
  store_lane_t lane;
  int rc;                       /* the outcome, set before done runs */
  uint64_t seq;                 /* set by submit */
  const char *what;             /* for the log, a literal */
  store_audit_rec_t *audit;     /* NULL or an entry written with the request */
  /* Writer lane, optional: runs on the store thread once the request's batch has
   * committed, outside any transaction (it may open its own); non-zero becomes rc. */
  store_run_fn after_commit;
  int64_t audit_id;             /* the entry's id once committed */
};

/* Start the threads over an open store (the service owns it from here, and closes it at
 * stop; on failure it stays the caller's) and open the reader's connection. */
int store_svc_start(store_svc_t **out, uv_loop_t *loop, broker_store_t *writer, const char *data_dir,
                    char *err, size_t errlen) TT_WUR;
/* Queue a request. TT_EBUSY when STORE_QUEUE_MAX are waiting, TT_ECLOSED once stopping:
 * then done is never called and the caller still owns req. */
int store_svc_submit(store_svc_t *v, store_req_t *req) TT_WUR;
/* Requests queued and not yet completed: the loop's measure of back-pressure. */
size_t store_svc_backlog(store_svc_t *v);
/* Transactions the writer has run so far (group commit: far fewer than requests). */
uint64_t store_svc_batches(store_svc_t *v);
/* The audit chain's head as of the last finished batch (committed entries only). */
void store_svc_audit_head(store_svc_t *v, int64_t *id, uint8_t hash[32]);
/* Finish every queued request (their completions run here, on the calling loop thread:
 * a request they submit is refused with TT_ECLOSED), stop the threads, close both
 * connections, and close the loop handle (run the loop once more to free it). */
void store_svc_stop(store_svc_t *v);

/* ---- diagnostics reports kept on tickets (diag.c) ---------------------------------------- */
#define STORE_DIAG_MAX (16u * 1024u * 1024u) /* TT_DIAG_REPORT_MAX */
typedef struct {
  int64_t id;                 /* D-<id>; set by store_diag_add */
  int64_t ticket, session;
  char device[STORE_NAME_MAX];
  char person[STORE_NAME_MAX];
  int64_t taken_ms;
  int64_t size;               /* the report's bytes, uncompressed */
  char sha256[65];            /* of those bytes, lowercase hex */
} store_diag_t;
/* Keep a report: zbody is its zstd form (the caller compressed it). TT_EINVAL for fields out
 * of range. d->id gets the new id. */
int store_diag_add(broker_store_t *s, store_diag_t *d, const uint8_t *zbody, size_t zlen) TT_WUR;
/* The report D-id: cb gets its row and compressed body (valid during the call). TT_ENOTFOUND. */
typedef int (*store_diag_cb)(void *ctx, const store_diag_t *d, const uint8_t *zbody, size_t zlen);
int store_diag_get(broker_store_t *s, int64_t id, store_diag_cb cb, void *ctx) TT_WUR;

/* ---- the employee's help requests (help.c, schema 11) ------------------------------------ */
#define STORE_HELP_NONCE_LEN 16
/* Timeline kinds the ticket's requester sees (tether-agent tickets): a technician's public
 * comment and the requester's own. Every other event stays with the help desk. */
#define STORE_EVENT_PUBLIC_COMMENT "public-comment"
#define STORE_EVENT_REQUESTER_COMMENT "requester-comment"
/* A public comment that asks the requester something: the ticket waits on them until their
 * next comment (or its resolution). */
#define STORE_EVENT_WAITING "waiting-on-requester"
/* The ticket an earlier request from device with this nonce opened; TT_ENOTFOUND if none. */
int store_help_find(broker_store_t *s, const char *device, const uint8_t nonce[STORE_HELP_NONCE_LEN],
                    int64_t *ticket) TT_WUR;
/* Requests from device received at or after since_ms: how many, and when the oldest came. */
int store_help_recent(broker_store_t *s, const char *device, int64_t since_ms, uint32_t *count,
                      int64_t *oldest_ms) TT_WUR;
/* -EEXIST if the device sent this nonce before (store_help_find first: it names the ticket). */
/* The requesters' comments on a device's tickets since since_ms. */
int store_help_comments_recent(broker_store_t *s, const char *device, int64_t since_ms, uint32_t *count) TT_WUR;
int store_help_add(broker_store_t *s, const char *device, const uint8_t nonce[STORE_HELP_NONCE_LEN],
                   const char *user, int64_t ticket, int64_t asked_ms, int64_t received_ms) TT_WUR;
/* A person's tickets on a device (requester = user), newest first, at most limit; with each
 * the newest event the person may see, or NULL. A non-zero return stops the walk. */
typedef int (*store_help_ticket_cb)(void *ctx, const store_ticket_t *t, const store_ticket_event_t *last);
int store_help_tickets(broker_store_t *s, const char *device, const char *user, uint32_t limit,
                       store_help_ticket_cb cb, void *ctx) TT_WUR;

/* ---- health checks, alerts, policy (alerts.c, policy.c; schema 12) ------------------------- */
#define STORE_DIM_MAX STORE_TEXT_MAX /* a dimension: a mount point, a unit, a file */
#define STORE_GROUP_MAX (STORE_ASSET_CELL_MAX + 1)
#define STORE_POLICY_KEY_MAX 128u
#define STORE_POLICY_VALUE_MAX (TT_POLICY_VALUE_MAX + 1)

/* The latest result of one (device, check, dimension), as its agent reported it. */
typedef struct {
  char check[STORE_NAME_MAX];
  char dimension[STORE_DIM_MAX];
  int state, last;                 /* CheckState */
  char value[STORE_TEXT_MAX], threshold[STORE_TEXT_MAX], message[STORE_TEXT_MAX];
  int64_t since_ms, run_ms;        /* the agent's clock */
  uint32_t streak;
  int64_t seen_ms;                 /* the broker's clock: the report that last named it */
} store_check_result_t;
int store_check_result_put(broker_store_t *s, const char *device, const store_check_result_t *r) TT_WUR;
typedef int (*store_check_result_cb)(void *ctx, const store_check_result_t *r);
/* One device's results by check and dimension. */
int store_check_results(broker_store_t *s, const char *device, store_check_result_cb cb, void *ctx) TT_WUR;
/* Its results no report named since before_ms (a full report at before_ms names all it runs),
 * then (prune) their removal. */
int store_check_results_stale(broker_store_t *s, const char *device, int64_t before_ms, store_check_result_cb cb,
                              void *ctx) TT_WUR;
int store_check_results_prune(broker_store_t *s, const char *device, int64_t before_ms) TT_WUR;
/* How many results a device has; whether it has this one. */
int store_check_results_count(broker_store_t *s, const char *device, uint32_t *n) TT_WUR;
bool store_check_result_known(broker_store_t *s, const char *device, const char *check, const char *dimension);
/* One more report from the device this minute: *over when it passes limit (the count is
 * kept: refusals count too, until the minute is over). */
int store_check_agent_rate(broker_store_t *s, const char *device, int64_t now_ms, uint32_t limit, bool *over) TT_WUR;
/* The policy version an agent last said it runs, and when it reported. */
int store_check_agent_put(broker_store_t *s, const char *device, int64_t policy_version, int64_t now_ms) TT_WUR;
int store_check_agent_get(broker_store_t *s, const char *device, int64_t *policy_version,
                          int64_t *reported_ms) TT_WUR; /* TT_ENOTFOUND */
typedef int (*store_check_agent_cb)(void *ctx, const char *device, int64_t policy_version, int64_t reported_ms);
/* Devices that reported checks, by id after `after`, at most limit. */
int store_check_agents(broker_store_t *s, const char *after, uint32_t limit, store_check_agent_cb cb,
                       void *ctx) TT_WUR;

/* One alert: per (device, check, dimension), for good; its state cycles. */
typedef struct {
  int64_t id;                      /* A-<id>; 0 before store_alert_put inserts it */
  char device[STORE_NAME_MAX];
  char check[STORE_NAME_MAX];
  char dimension[STORE_DIM_MAX];
  int state;                       /* alert_state_t (AlertState) */
  int64_t opened_ms, last_ms, resolved_ms;
  char value[STORE_TEXT_MAX], threshold[STORE_TEXT_MAX];
  int64_t ticket, storm;           /* its own ticket; the storm ticket it joined */
  char acked_by[STORE_NAME_MAX];
  int64_t snoozed_until_ms;
  uint32_t raised, suppressed;
} store_alert_t;
int store_alert_find(broker_store_t *s, const char *device, const char *check, const char *dimension,
                     store_alert_t *out) TT_WUR; /* TT_ENOTFOUND */
int store_alert_get(broker_store_t *s, int64_t id, store_alert_t *out) TT_WUR; /* TT_ENOTFOUND */
/* Insert (id 0: sets a->id) or write every field of alert a->id. */
int store_alert_put(broker_store_t *s, store_alert_t *a) TT_WUR;
typedef struct {
  bool open_only;                  /* not resolved */
  const char *device, *check;      /* NULL: any */
  int64_t after_id;
  uint32_t limit;                  /* 0: no limit */
} store_alert_filter_t;
typedef int (*store_alert_cb)(void *ctx, const store_alert_t *a);
int store_alert_list(broker_store_t *s, const store_alert_filter_t *f, store_alert_cb cb, void *ctx) TT_WUR;
/* Devices other than `except` whose alert for check opened at or after since_ms and is open
 * or acked: the storm rule's count. */
int store_alert_failing_devices(broker_store_t *s, const char *check, int64_t since_ms, const char *except,
                                uint32_t *n) TT_WUR;
/* Alerts for check opened at or after since_ms, open or acked, with a ticket of their own and
 * in no storm: the tickets a new storm takes in as its children. */
int store_alert_window(broker_store_t *s, const char *check, int64_t since_ms, store_alert_cb cb, void *ctx) TT_WUR;
/* Tickets of this source (check, employee, storm) opened on a device at or after since_ms. */
int store_tickets_since(broker_store_t *s, const char *device, const char *source, int64_t since_ms,
                        uint32_t *n) TT_WUR;
/* A new alert row for the device is about to be made: if it keeps TT_ALERTS_PER_DEVICE_MAX
 * already, its oldest resolved one goes (*dropped its id, 0 if none could). */
int store_alert_make_room(broker_store_t *s, const char *device, int64_t *dropped) TT_WUR;
/* Members of a storm not resolved. */
int store_alert_storm_live(broker_store_t *s, int64_t storm, uint32_t *n) TT_WUR;
/* Alerts whose ticket or storm is this ticket, at most cap ids. */
int store_alerts_of_ticket(broker_store_t *s, int64_t ticket, int64_t *ids, size_t cap, size_t *n) TT_WUR;
/* Alerts that may need the sweep, by id after after_id, at most limit: snoozed until at most
 * now, or suppressed. A sweep goes on from where the last one stopped, so alerts that stay
 * held (a long window) never hide the ones behind them. */
int store_alerts_due(broker_store_t *s, int64_t now_ms, int64_t after_id, uint32_t limit, store_alert_cb cb,
                     void *ctx) TT_WUR;
/* A check's open storm: its ticket (TT_ENOTFOUND: none). */
int store_storm_get(broker_store_t *s, const char *check, int64_t *ticket) TT_WUR;
int store_storm_set(broker_store_t *s, const char *check, int64_t ticket, int64_t now_ms) TT_WUR;
int store_storm_del(broker_store_t *s, const char *check) TT_WUR;
/* A storm ticket's children (tickets whose parent it is), at most cap, and how many in all. */
int store_ticket_children(broker_store_t *s, int64_t parent, int64_t *ids, size_t cap, size_t *n,
                          uint32_t *total) TT_WUR;
int store_ticket_set_parent(broker_store_t *s, int64_t ticket, int64_t parent) TT_WUR;

/* Policy: settings per group ("*" every device), one version over all of them. */
int store_policy_set(broker_store_t *s, const char *group, const char *key, const char *value, const char *by,
                     int64_t now_ms) TT_WUR;
int store_policy_unset(broker_store_t *s, const char *group, const char *key) TT_WUR; /* TT_ENOTFOUND */
int store_policy_version(broker_store_t *s, int64_t *version) TT_WUR;
/* version + 1, stored; *version the new one. */
int store_policy_bump(broker_store_t *s, int64_t *version) TT_WUR;
typedef int (*store_policy_cb)(void *ctx, const char *group, const char *key, const char *value, const char *by,
                               int64_t set_ms);
/* By group then key; group NULL: every group. */
int store_policy_list(broker_store_t *s, const char *group, store_policy_cb cb, void *ctx) TT_WUR;
/* The groups a device is in: its asset record's Department and Location and a custom field
 * named "group" (any case); empty when it has no record (or two: a conflict). */
typedef struct {
  char department[STORE_GROUP_MAX], location[STORE_GROUP_MAX], group[STORE_GROUP_MAX];
} store_device_groups_t;
int store_device_groups(broker_store_t *s, const char *device, store_device_groups_t *out) TT_WUR;

/* Maintenance windows: alerts raised in one are recorded, not ticketed. */
typedef struct {
  int64_t id;
  char group[STORE_GROUP_MAX];     /* a group, or */
  char device[STORE_NAME_MAX];     /* one device */
  int64_t start_ms, end_ms;
  char reason[STORE_TEXT_MAX];
  char set_by[STORE_NAME_MAX];
} store_maint_t;
int store_maint_add(broker_store_t *s, store_maint_t *m) TT_WUR;
typedef int (*store_maint_cb)(void *ctx, const store_maint_t *m);
/* Windows that have not ended by now_ms, by start. */
int store_maint_list(broker_store_t *s, int64_t now_ms, store_maint_cb cb, void *ctx) TT_WUR;
/* Does a window cover the device (by id or one of its groups, "*" for all) at now_ms? */
int store_maint_active(broker_store_t *s, const char *device, const store_device_groups_t *g, int64_t now_ms,
                       bool *active) TT_WUR;

/* ---- agent releases and rollouts (schema 22, rollout/rollout.c) ----------------------------
 * A release is a signed manifest (tt/release.h) and its package, DATA_DIR/releases/SHA.pkg;
 * the broker keeps them and serves them, it cannot make one. A rollout moves a group's
 * devices to one version in waves; the broker's loop drives it (broker/rollout/) and writes
 * each step here. */
#define STORE_RELEASE_KEY_MAX 72 /* "sha256:" + 64 hex */
#define STORE_ROLLOUT_STATE_MAX 16
typedef struct {
  char sha256[65];
  char package[TT_RELEASE_PACKAGE_MAX + 1];
  char version[TT_RELEASE_VERSION_MAX + 1];
  char arch[TT_RELEASE_ARCH_MAX + 1];
  char channel[STORE_NAME_MAX];
  int64_t size;
  bool downgrade;
  char key[STORE_RELEASE_KEY_MAX + 1];
  char manifest[TT_RELEASE_MANIFEST_MAX + 1];
  char added_by[STORE_NAME_MAX];
  int64_t added_ms;
} store_release_t;
/* -EEXIST: that package, version, arch and channel (or that sha256) is there already;
 * TT_EFULL: TT_RELEASES_MAX are kept. */
int store_release_add(broker_store_t *s, const store_release_t *r) TT_WUR;
typedef int (*store_release_cb)(void *ctx, const store_release_t *r);
int store_release_remove(broker_store_t *s, const char *sha256) TT_WUR;
/* Newest first. */
int store_release_list(broker_store_t *s, store_release_cb cb, void *ctx) TT_WUR;

typedef struct {
  int64_t id;
  char version[TT_RELEASE_VERSION_MAX + 1];
  char channel[STORE_NAME_MAX];
  char group[STORE_GROUP_MAX];
  int64_t canary_pct, wave_pct, pause_on, health_s;
  char state[STORE_ROLLOUT_STATE_MAX]; /* running, paused, done, cancelled */
  char why[STORE_TEXT_MAX];
  int64_t wave, waves, failures;
  char started_by[STORE_NAME_MAX];
  int64_t started_ms, updated_ms;
} store_rollout_t;
typedef struct {
  char device[STORE_NAME_MAX];
  int64_t wave;
  char state[STORE_ROLLOUT_STATE_MAX];
  char reason[STORE_TEXT_MAX];
  char from_version[STORE_NAME_MAX];
  int64_t done, size, updated_ms;
} store_rollout_dev_t;
/* A new rollout and its devices in one transaction; r->id set. */
int store_rollout_add(broker_store_t *s, store_rollout_t *r, const store_rollout_dev_t *d, size_t n) TT_WUR;
/* Its state, why, wave, failures and updated_ms. */
int store_rollout_update(broker_store_t *s, const store_rollout_t *r) TT_WUR;
int store_rollout_dev_update(broker_store_t *s, int64_t rollout, const store_rollout_dev_t *d) TT_WUR;
/* Rollout id (0: the latest; active: the one running or paused) into out: 1, or 0 if none. */
int store_rollout_get(broker_store_t *s, int64_t id, bool active, store_rollout_t *out) TT_WUR;
typedef int (*store_rollout_dev_cb)(void *ctx, const store_rollout_dev_t *d);
/* In wave order, then by device. */
int store_rollout_devices(broker_store_t *s, int64_t rollout, store_rollout_dev_cb cb, void *ctx) TT_WUR;

#endif
