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

typedef struct {
  char listen[128];
  char ca[512];
  char cert[512];
  char key[512];
  int64_t heartbeat_ms;
  int64_t idle_timeout_ms;
  int64_t handshake_timeout_ms;
  int64_t max_connections;
  int log_level;
} broker_cfg_t;

typedef struct broker_s broker_t;
typedef struct relay_s relay_t;

typedef enum {
  BROKER_CONN_HANDSHAKE = 0, /* TLS in progress */
  BROKER_CONN_HELLO,         /* TLS done, waiting for Hello */
  BROKER_CONN_READY,         /* welcomed */
} broker_conn_state_t;

typedef struct broker_conn_s {
  struct broker_conn_s *prev, *next;
  struct broker_conn_s *uprev, *unext; /* on the not-yet-welcomed list */
  broker_t *b;
  tt_link_t *link;
  broker_conn_state_t state;
  tt_identity_t id;
  char addr[64];
  char hostname[TT_TEXT_MAX + 1];
  char version[TT_NAME_MAX + 1];
  uint64_t caps;
  uint64_t connected_unix_ms;
  uint64_t accepted_ms;   /* uv_now at accept: Hello must come within handshake_timeout */
} broker_conn_t;

struct broker_s {
  uv_loop_t *loop;
  broker_cfg_t cfg;
  tt_tls_ctx_t *tls;
  tt_tls_limits_t limits;
  uv_tcp_t listener;
  uv_timer_t heartbeat;
  uv_timer_t sweep;       /* one timer for every deadline: Hello, channel opens */
  uv_signal_t sigint, sigterm;
  broker_conn_t *conns;
  broker_conn_t *unready; /* accepted, not yet welcomed */
  relay_t *pending;       /* relays waiting for the device's answer */
  size_t nconns, nagents;
  uint64_t ping_nonce;
  bool stopping;
};

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

#endif
