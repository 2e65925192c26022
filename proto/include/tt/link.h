/* A link is one peer connection as every program sees it: the TLS stream, the frame reader
 * with its pre-/post-authentication limits, the channel mux and its writer, and answers to
 * Ping. The program decides what Hello/Welcome mean; the link only carries them. */
#ifndef TT_LINK_H
#define TT_LINK_H

#include <stdbool.h>
#include "tt/cc.h"
#include "tt/defer.h"
#include "tt/frame.h"
#include "tt/msg.h"
#include "tt/mux.h"
#include "tt/tls.h"

typedef struct tt_link_s tt_link_t;

typedef struct {
  /* TLS handshake done; tt_link_peer_cert() is valid. May be NULL. */
  void (*on_up)(tt_link_t *l);
  /* A channel-0 frame other than PING/PONG (which the link answers itself), unpacked.
   * Return 0 to go on, or an error code to close the link with it. */
  int (*on_control)(tt_link_t *l, uint8_t kind, const ProtobufCMessage *msg);
  /* The link is gone (reason as in tt_tls_cbs_t.on_close, or the protocol error that made
   * us close it). Channels were closed before this. The link is freed after return. */
  void (*on_down)(tt_link_t *l, int reason);
  /* Channel callbacks; tt_link_from_mux() gets the link back. */
  tt_mux_cbs_t mux;
  /* Server, may be NULL: the peer's address, before any TLS state exists (l->tls is not
   * set yet; l->data is). false refuses the connection: it is reset, tt_link_accept
   * returns TT_EDENIED and no other callback follows. */
  bool (*on_accept)(tt_link_t *l, const struct sockaddr *peer);
  /* May be NULL: the Pong to the last tt_link_ping came back after rtt_ns (also kept in
   * l->rtt_ns). */
  void (*on_rtt)(tt_link_t *l, uint64_t rtt_ns);
} tt_link_cbs_t;

struct tt_link_s {
  tt_tls_t *tls;
  tt_frame_reader_t rd;
  tt_mux_t mux;
  const tt_link_cbs_t *cbs;
  void *data;
  bool authed;       /* Hello accepted: full frame and message limits apply */
  bool closing;
  bool in_flush;
  int close_reason;
  uint64_t last_pong_ms;
  /* The last tt_link_ping: its nonce and when it went (uv_hrtime), and the round trip of
   * the last one answered (0: none yet). A Ping sent again before the answer replaces it. */
  uint64_t ping_nonce, ping_sent_ns, rtt_ns;
  bool ping_out;
  tt_cc_t cc;        /* how much bulk data may be unread by the peer (tt/cc.h) */
  tt_deferred_t flush_later; /* a flush asked for inside a read batch (tt/defer.h) */
  uint64_t frames_in, frames_out;
};

int tt_link_accept(tt_link_t **out, tt_tls_ctx_t *ctx, uv_stream_t *server,
                   const tt_tls_limits_t *lim, const tt_link_cbs_t *cbs, void *data) TT_WUR;
/* opener_odd is true for the connecting side. */
int tt_link_connect(tt_link_t **out, tt_tls_ctx_t *ctx, uv_loop_t *loop, const struct sockaddr *addr,
                    const char *server_name, const tt_tls_limits_t *lim,
                    const tt_link_cbs_t *cbs, void *data) TT_WUR;

/* Raise limits from the pre-authentication ones once Hello/Welcome succeeded. */
void tt_link_set_authed(tt_link_t *l);
/* Queue a channel-0 control message and flush. TT_EFULL if the peer is not reading. */
int tt_link_send(tt_link_t *l, uint8_t kind, const ProtobufCMessage *msg) TT_WUR;
/* Move frames from the mux to the socket while its queue is under TT_SOCKET_QUEUE_CAP.
 * Call after queueing channel data. Inside a read batch (tt/defer.h) the move happens once,
 * when the batch ends, so the frames of one read leave in one write. */
void tt_link_flush(tt_link_t *l);
/* Send an Error frame (if code is ours and the link is up), then close. Idempotent. */
void tt_link_close(tt_link_t *l, int code, const char *why);
/* The same, asking the peer to wait retry_after_ms before it comes back. */
void tt_link_refuse(tt_link_t *l, int code, const char *why, uint32_t retry_after_ms);
/* Send a Ping carrying nonce (below 2^48: higher ones are the link's own probes); its
 * Pong sets rtt_ns and calls on_rtt. */
int tt_link_ping(tt_link_t *l, uint64_t nonce) TT_WUR;

X509 *tt_link_peer_cert(const tt_link_t *l);
const char *tt_link_peer_addr(const tt_link_t *l);
static inline tt_link_t *tt_link_from_mux(tt_mux_t *m) { return (tt_link_t *)m->data; }

#endif
