/* tether (console): shared types of the console's modules. */
#ifndef CONSOLE_H
#define CONSOLE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <uv.h>
#include "tt/cli.h"
#include "tt/link.h"
#include "tt/limits.h"

/* Audit entries asked for per page; the broker may answer with fewer (it clamps to its own
 * page size). Pages keep every answer well under TT_FRAME_MAX_BODY. */
#define CONSOLE_AUDIT_PAGE 500u
/* --limit for audit: at most this many entries in one run (0 = all). */
#define CONSOLE_AUDIT_LIMIT_MAX 100000000

typedef struct {
  char broker[256];
  char server_name[256];
  char ca[512];
  char cert[512];
  char key[512];
  int64_t timeout_ms;
  int64_t bytes;     /* speedtest */
  int64_t count;     /* ping */
  int64_t token_ttl_ms;            /* token new */
  int64_t token_uses;
  char token_note[TT_TEXT_MAX + 1];
  char revoke_reason[TT_TEXT_MAX + 1]; /* revoke */
  char person_role[16];            /* person add */
  char ssh_person[TT_NAME_MAX + 1]; /* ssh-key add, list: whose */
  char audit_since[64];            /* audit: ISO-8601 UTC or a duration back from now */
  char audit_device[TT_NAME_MAX + 1];
  int64_t audit_limit;
  int64_t audit_from;              /* audit follow: the first sequence number */
  /* tickets */
  char summary[TT_TEXT_MAX + 1];
  char requester[TT_TEXT_MAX + 1];
  char priority[16];
  char external_id[TT_NAME_MAX + 1];
  char state[64];
  int64_t level;                   /* ticket escalate, person add */
  char kb_title[TT_TEXT_MAX + 1];  /* kb add, kb edit */
  char group[TT_ASSET_CELL_MAX + 1]; /* policy, maintenance: "*" or a department, location, group */
  /* sessions, shell, exec */
  char inv_table[64];              /* inventory: one table */
  int64_t inv_version;             /* inventory: as of this version (0 = latest) */
  char asset_match[16];            /* inventory import: serial|hostname|mac|asset_tag */
  char asset_format[8];            /* inventory import, export: csv|json; report: table|csv|json|html */
  char report_by[16];              /* report sla: technician|priority|level|device|department */
  char person_dir[512];            /* person export: NAME.json and the recordings' files here */
  /* release add, rollout start */
  char manifest[512];              /* release add: the manifest (default: PACKAGE.manifest) */
  char channel[TT_NAME_MAX + 1];   /* "" = the broker's "stable" */
  char canary[8];                  /* rollout start: "5%" or "5" */
  char wave[8];
  int64_t pause_on_failure;
  int64_t health_ms;
  char ticket[32];
  char want[32];
  int64_t for_ms;
  /* replay, recording export */
  char speed[32];
  int64_t idle_max_ms;
  int64_t index;
  int log_level;
} console_cfg_t;

/* Boolean switches (bits of tt_cli_args_t.switches), in the order main.c lists them. */
enum {
  CONSOLE_SW_JSON = 1u << 0,
  CONSOLE_SW_ONLINE = 1u << 1,
  CONSOLE_SW_MINE = 1u << 2,
  CONSOLE_SW_ALL = 1u << 3,
  CONSOLE_SW_FORCE = 1u << 4,     /* pull, push, cp: replace existing targets */
  CONSOLE_SW_RESUME = 1u << 5,    /* pull, push, cp: accepted; a rerun always resumes */
  CONSOLE_SW_RECURSIVE = 1u << 6, /* pull, push, cp, ls: -r */
  CONSOLE_SW_ATTACH = 1u << 7,    /* diag: keep the report on the ticket */
  CONSOLE_SW_DRY_RUN = 1u << 8,   /* inventory import: report, change nothing */
  CONSOLE_SW_PUBLIC = 1u << 9,    /* ticket comment: the requester sees it */
  CONSOLE_SW_OPEN = 1u << 10,     /* alerts: only those not resolved */
  CONSOLE_SW_TTY = 1u << 11,      /* exec -t: the command on a pty, as ssh -t runs it */
  CONSOLE_SW_WAIT = 1u << 12,     /* ticket comment --public: a question; the ticket waits on the requester */
};

typedef struct console_s console_t;

typedef struct {
  const char *name;
  const char *sub;   /* second word ("show" in `device show`), or NULL */
  const char *args;  /* usage of positional arguments and the options that apply */
  const char *help;
  int min_pos, max_pos; /* positional arguments after the command word(s) */
  unsigned switches;    /* CONSOLE_SW_* this command accepts */
  /* Before connecting: check arguments. Return 0, or print "tether: ..." and return 2. */
  int (*check)(console_t *c);
  /* Welcomed: start the work. Return 0, or an error (printed, exit 1). */
  int (*start)(console_t *c);
  /* The answer to our pending request, already matched by id, free of Response.error and
   * carrying the body case the request asked for. Return 0 or an error (printed, exit 1). */
  int (*on_response)(console_t *c, const Tether__Response *r);
  /* Optional: the broker answered ERR_NOT_FOUND. Print the one line and finish; when NULL
   * the broker's message is printed like any other error. */
  void (*on_not_found)(console_t *c);
  /* Optional: channel callbacks for this command (default: console_mux_cbs). */
  const tt_mux_cbs_t *mux;
  /* Optional: runs after the connection is closed, when the command succeeded (replay
   * plays what it fetched without a broker to keep alive). Returns the exit code. */
  int (*after)(console_t *c);
  /* ERR_DENIED is printed as the broker's message alone ("the employee refused access"),
   * not as "permission denied: ...". */
  bool denied_plain;
  /* The first positional argument is DEVICE: a device id, or a hostname naming one. */
  bool device_arg;
} console_cmd_t;

struct console_s {
  uv_loop_t *loop;
  console_cfg_t cfg;
  tt_tls_ctx_t *tls;
  tt_link_t *link;
  const console_cmd_t *cmd;
  tt_cli_args_t args;
  const char *const *arg; /* the command's positional arguments (after its word(s)) */
  int narg;
  char **rest;      /* exec: the words after `--` */
  const char *where[TT_ASSET_WHERE_MAX]; /* devices: --where field=value, each one */
  int nwhere;
  const char *checks[TT_KB_CHECKS_MAX];  /* kb add, kb edit: --check NAME, each one */
  int nchecks;
  int nrest;
  bool json;
  bool online;      /* --online */
  bool mine;        /* --mine */
  bool all;         /* --all */
  bool welcomed;
  bool done;        /* the command finished; a close now is expected */
  int exit_code;
  uv_timer_t timeout;
  uint64_t timeout_ms; /* what the armed answer timeout waits */
  uint32_t last_id;  /* id of the last request sent */
  uint32_t pending;  /* id of the request awaiting an answer, 0 = none */
  Tether__Response__BodyCase expect;
  void *state;      /* the command's */
  /* DEVICE as typed, rewritten to the device's id once the broker resolved it (request.c)
   * before the command starts: arg[0] (device_arg commands), --device, or a buffer of
   * TT_NAME_MAX + 1 that a command's check names (files: DEVICE:PATH). */
  char device[TT_NAME_MAX + 1];
  char *device_to;
  char device_host[TT_TEXT_MAX + 1]; /* its hostname, for people ("" until resolved) */
  uint32_t device_consent_ms;        /* how long its employee has to answer (0: not known) */
  bool resolving;
};

/* main.c */
/* Finish: remember the exit code and close the link. */
void console_finish(console_t *c, int exit_code);
/* Print "tether: <msg>" on stderr and finish with exit code 1. */
void console_fail(console_t *c, const char *fmt, ...) TT_PRINTF(2, 3);
/* (Re)start the wait for the broker's next answer: --timeout bounds each answer, not a
 * whole listing, so an export of many pages runs as long as the broker keeps answering. */
void console_arm_timeout(console_t *c);
/* The same for one answer that may take longer (a consent prompt). */
void console_arm_timeout_ms(console_t *c, uint64_t ms);
/* Put the terminal back as it was (cmd_shell.c); safe to call any time, from anywhere. */
void console_tty_restore(void);
/* Before connecting: print "tether: <msg>" on stderr; returns 2 (the usage exit code). */
int console_usage_error(const char *fmt, ...) TT_PRINTF(1, 2);

/* request.c: one request at a time to the broker, answered by a Response with its id. */
/* Give r the next id, send it, and (re)arm the answer timeout. The Response must carry
 * `expect`. */
int console_request(console_t *c, Tether__Request *r, Tether__Response__BodyCase expect) TT_WUR;
/* Route a Response: match the id, turn Response.error into its one line (and exit 1),
 * check the body case, then hand it to the command. */
void console_on_response(console_t *c, const Tether__Response *r);
/* Welcomed: resolve c->device_to (when set) to a device id, then start the command. A name
 * that matches no device is left as typed (the command's own request says what is wrong,
 * and a filter still matches records of a device since removed); one that names several is
 * the broker's one-line refusal listing them. */
int console_begin(console_t *c) TT_WUR;
/* What to call the device in messages: its hostname once resolved, else DEVICE as typed. */
const char *console_device_shown(const console_t *c, const char *device);
/* On stderr: "tether: waiting for the person at HOST to allow ACCESS access under T-n (60 s)..."
 * and eol; the time is the device's consent timeout, when the broker said it. */
void console_waiting_line(const console_t *c, const char *device, const char *access, uint64_t ticket,
                          const char *eol);

/* text.c: printing what the broker sent, safely. */
/* A JSON string literal for any C string (escapes quotes, backslashes, controls). */
void console_json_str(FILE *f, const char *s);
/* A JSON string literal for untrusted bytes: invalid UTF-8 becomes U+FFFD; controls, DEL,
 * C1 and format characters (bidi overrides...) are \u-escaped, so the output is valid JSON
 * and safe to show on a terminal. */
void console_json_bytes(FILE *f, ProtobufCBinaryData t);
/* Re-emit t compactly if it is one JSON object (nesting at most a few levels), with the
 * same escaping as console_json_bytes; false (nothing written) if it is not. */
bool console_json_object(FILE *f, ProtobufCBinaryData t);
/* Untrusted bytes for a terminal: valid text as is, anything else (controls, invalid
 * UTF-8, format characters) as \xNN. Truncated to fit cap, always NUL-terminated. */
void console_text(char *dst, size_t cap, ProtobufCBinaryData t);
/* Cut s (valid UTF-8, as console_text makes it) to at most max characters, the last three
 * of them "..." when it was longer; the cut is between characters. */
void console_cut(char *s, size_t max);
/* A JSON string of t in lower-case hex. */
void console_json_hex(FILE *f, ProtobufCBinaryData t);
/* unix ms as "2026-11-23T18:00:00Z" (with_ms: "...:00.123Z"). */
void console_iso(char *dst, size_t cap, uint64_t unix_ms, bool with_ms);
/* JSON: the ISO time as a string, or null when unix_ms is 0. */
void console_json_time(FILE *f, uint64_t unix_ms);
/* How long ago unix_ms was, relative to now_ms: "12s ago", "3m ago", "5h ago", "2d ago". */
void console_ago(char *dst, size_t cap, uint64_t unix_ms, uint64_t now_ms);
/* The wall clock, unix ms. */
uint64_t console_now_ms(void);
/* "2026-11-23T18:00:00Z" (seconds and fraction optional, or a bare date) -> unix ms. */
int console_parse_iso(const char *s, uint64_t *unix_ms) TT_WUR;
/* WHEN: an ISO-8601 UTC time, or a duration with its unit ("30m", "7d") back from now ->
 * unix ms ("" -> 0). TT_EINVAL otherwise. */
int console_parse_since(const char *s, uint64_t *since_ms) TT_WUR;
/* "T-3", "t-3" or "3" (letter 'T') -> 3. Ids are 1..2^53. TT_EINVAL otherwise. With
 * need_prefix the letter is required. */
int console_parse_id(const char *s, char letter, bool need_prefix, uint64_t *id) TT_WUR;
/* "KB-3", "kb-3" or "3" -> 3, as console_parse_id. */
int console_parse_kb(const char *s, uint64_t *id) TT_WUR;
/* A duration for people: "45s", "30m", "2h", "3d" (largest unit that fits, rounded down),
 * "2h30m" when it has minutes too. */
void console_duration(char *dst, size_t cap, uint64_t ms);

extern const console_cmd_t console_cmd_devices;
extern const console_cmd_t console_cmd_report_sla, console_cmd_report_activity, console_cmd_audit_follow,
    console_cmd_status, console_cmd_ticket_hold, console_cmd_ticket_release, console_cmd_retention_show,
    console_cmd_retention_set, console_cmd_retention_sweep, console_cmd_person_export, console_cmd_person_erase;
extern const console_cmd_t console_cmd_alerts, console_cmd_alert_ack, console_cmd_alert_snooze,
    console_cmd_alert_unsnooze, console_cmd_checks, console_cmd_policy_set, console_cmd_policy_unset,
    console_cmd_policy_show, console_cmd_maintenance_add, console_cmd_maintenance;
extern const console_cmd_t console_cmd_device_show;
extern const console_cmd_t console_cmd_token_new;
extern const console_cmd_t console_cmd_revoke_device;
extern const console_cmd_t console_cmd_revoke_person;
extern const console_cmd_t console_cmd_person_add;
extern const console_cmd_t console_cmd_people;
extern const console_cmd_t console_cmd_ssh_key_add, console_cmd_ssh_key_list, console_cmd_ssh_key_remove,
    console_cmd_ssh_config; /* cmd_sshkey.c */
extern const console_cmd_t console_cmd_audit;
extern const console_cmd_t console_cmd_audit_verify;
extern const console_cmd_t console_cmd_speedtest;
extern const console_cmd_t console_cmd_ping;
extern const console_cmd_t console_cmd_diag;
extern const console_cmd_t console_cmd_diag_show; /* inv/cmd_diag_show.c */
extern const console_cmd_t console_cmd_inventory; /* inv/cmd_inventory.c */
extern const console_cmd_t console_cmd_inventory_history;
extern const console_cmd_t console_cmd_inventory_diff;
extern const console_cmd_t console_cmd_inventory_import; /* inv/cmd_assets.c */
extern const console_cmd_t console_cmd_inventory_export;
extern const console_cmd_t console_cmd_inventory_find; /* inv/cmd_find.c */
extern const console_cmd_t console_cmd_ticket_new;
extern const console_cmd_t console_cmd_tickets;
extern const console_cmd_t console_cmd_ticket_show;
extern const console_cmd_t console_cmd_ticket_assign;
extern const console_cmd_t console_cmd_ticket_escalate;
extern const console_cmd_t console_cmd_ticket_comment;
extern const console_cmd_t console_cmd_ticket_resolve;
extern const console_cmd_t console_cmd_ticket_close;
extern const console_cmd_t console_cmd_ticket_reopen;
extern const console_cmd_t console_cmd_ticket_link;
extern const console_cmd_t console_cmd_ticket_unlink;
extern const console_cmd_t console_cmd_kb_add; /* helpdesk/cmd_kb.c */
extern const console_cmd_t console_cmd_kb_edit;
extern const console_cmd_t console_cmd_kb_search;
extern const console_cmd_t console_cmd_kb_show;
extern const console_cmd_t console_cmd_session_open;
extern const console_cmd_t console_cmd_sessions;
extern const console_cmd_t console_cmd_session_end;
extern const console_cmd_t console_cmd_shell;
extern const console_cmd_t console_cmd_exec;
extern const console_cmd_t console_cmd_replay;
extern const console_cmd_t console_cmd_recording_export;
extern const console_cmd_t console_cmd_pull; /* files/cmd_files.c */
extern const console_cmd_t console_cmd_push;
extern const console_cmd_t console_cmd_cp;
extern const console_cmd_t console_cmd_ls;
extern const console_cmd_t console_cmd_release_add, console_cmd_release_list,
    console_cmd_release_remove; /* rollout/cmd_release.c */
extern const console_cmd_t console_cmd_rollout_start, console_cmd_rollout_status, console_cmd_rollout_pause,
    console_cmd_rollout_resume, console_cmd_rollout_cancel; /* rollout/cmd_rollout.c */
extern const tt_mux_cbs_t console_mux_cbs;

/* cmd_session.c: shared by session open, shell and exec. */
/* Ask the broker for a session (or a live one to reuse) on device under ticket; the
 * answer (body session) reaches the command's on_response. Waits for the employee: the
 * answer timeout is TT_CONSENT_DEADLINE_MS + 5 s for this request. */
int console_session_request(console_t *c, const char *device, uint64_t ticket, uint32_t access,
                            uint64_t duration_ms) TT_WUR;

#endif
