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
  char audit_since[64];            /* audit: ISO-8601 UTC or a duration back from now */
  char audit_device[TT_NAME_MAX + 1];
  int64_t audit_limit;
  int log_level;
} console_cfg_t;

/* Boolean switches (bits of tt_cli_args_t.switches), in the order main.c lists them. */
enum {
  CONSOLE_SW_JSON = 1u << 0,
  CONSOLE_SW_ONLINE = 1u << 1,
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
  bool json;
  bool online;      /* --online */
  bool welcomed;
  bool done;        /* the command finished; a close now is expected */
  int exit_code;
  uv_timer_t timeout;
  uint32_t last_id;  /* id of the last request sent */
  uint32_t pending;  /* id of the request awaiting an answer, 0 = none */
  Tether__Response__BodyCase expect;
  void *state;      /* the command's */
};

/* main.c */
/* Finish: remember the exit code and close the link. */
void console_finish(console_t *c, int exit_code);
/* Print "tether: <msg>" on stderr and finish with exit code 1. */
void console_fail(console_t *c, const char *fmt, ...) TT_PRINTF(2, 3);
/* (Re)start the wait for the broker's next answer: --timeout bounds each answer, not a
 * whole listing, so an export of many pages runs as long as the broker keeps answering. */
void console_arm_timeout(console_t *c);
/* Before connecting: print "tether: <msg>" on stderr; returns 2 (the usage exit code). */
int console_usage_error(const char *fmt, ...) TT_PRINTF(1, 2);

/* request.c: one request at a time to the broker, answered by a Response with its id. */
/* Give r the next id, send it, and (re)arm the answer timeout. The Response must carry
 * `expect`. */
int console_request(console_t *c, Tether__Request *r, Tether__Response__BodyCase expect) TT_WUR;
/* Route a Response: match the id, turn Response.error into its one line (and exit 1),
 * check the body case, then hand it to the command. */
void console_on_response(console_t *c, const Tether__Response *r);

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

extern const console_cmd_t console_cmd_devices;
extern const console_cmd_t console_cmd_device_show;
extern const console_cmd_t console_cmd_token_new;
extern const console_cmd_t console_cmd_revoke_device;
extern const console_cmd_t console_cmd_revoke_person;
extern const console_cmd_t console_cmd_audit;
extern const console_cmd_t console_cmd_audit_verify;
extern const console_cmd_t console_cmd_speedtest;
extern const console_cmd_t console_cmd_ping;
extern const tt_mux_cbs_t console_mux_cbs;

#endif
