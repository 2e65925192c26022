/* tether-agent: shared types of the agent's modules. */
#ifndef AGENT_H
#define AGENT_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>
#include "tt/backoff.h"
#include "tt/link.h"
#include "tt/limits.h"

typedef struct {
  char broker[256];
  char server_name[256];
  char ca[512];
  char cert[512];
  char key[512];
  char hostname[TT_NAME_MAX + 1];
  int64_t backoff_base_ms;
  int64_t backoff_max_ms;
  int64_t handshake_timeout_ms;
  int log_level;
} agent_cfg_t;

typedef struct {
  uv_loop_t *loop;
  agent_cfg_t cfg;
  tt_tls_ctx_t *tls;
  tt_link_t *link;      /* NULL while disconnected */
  bool welcomed;
  bool stopping;
  uint32_t retry_after_ms; /* from the broker's last Error, honoured once */
  tt_backoff_t backoff;
  uv_timer_t retry;
  uv_signal_t sigint, sigterm;
  char broker_name[TT_NAME_MAX + 1];
  uint64_t connects;
} agent_t;

/* chan.c: the channels an agent serves */
extern const tt_mux_cbs_t agent_mux_cbs;

#endif
