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

typedef struct {
  char broker[256];
  char server_name[256];
  char ca[512];
  char cert[512];
  char key[512];
  int64_t timeout_ms;
  int64_t bytes;     /* speedtest */
  int64_t count;     /* ping */
  int log_level;
} console_cfg_t;

typedef struct console_s console_t;

typedef struct {
  const char *name;
  const char *args;  /* usage of positional arguments */
  const char *help;
  int min_pos, max_pos;
  /* Welcomed: start the work. Return 0, or an error (printed, exit 1). */
  int (*start)(console_t *c);
  /* A Response to our request. */
  int (*on_response)(console_t *c, const Tether__Response *r);
} console_cmd_t;

struct console_s {
  uv_loop_t *loop;
  console_cfg_t cfg;
  tt_tls_ctx_t *tls;
  tt_link_t *link;
  const console_cmd_t *cmd;
  tt_cli_args_t args;
  bool json;
  bool welcomed;
  bool done;        /* the command finished; a close now is expected */
  int exit_code;
  uv_timer_t timeout;
  void *state;      /* the command's */
};

/* A JSON string literal for any C string (escapes quotes, backslashes, controls). */
void console_json_str(FILE *f, const char *s);
/* Finish: remember the exit code and close the link. */
void console_finish(console_t *c, int exit_code);
/* Print "tether: <msg>" on stderr and finish with exit code 1. */
void console_fail(console_t *c, const char *fmt, ...) TT_PRINTF(2, 3);

extern const console_cmd_t console_cmd_devices;
extern const console_cmd_t console_cmd_speedtest;
extern const console_cmd_t console_cmd_ping;
extern const tt_mux_cbs_t console_mux_cbs;

#endif
