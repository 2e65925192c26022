/* The channel multiplexer: channel state machine, per-channel credit windows, and the
 * scheduler that decides which frame goes to the socket next. No I/O here: frames come in
 * through tt_mux_input() and go out through tt_mux_pull(); tt_link wires it to TLS.
 *
 * Channel ids: the side that connects opens odd ids, the accepting side even ids, so the
 * two never collide. Credit counts DATA body bytes. A receiver grants credit as it consumes
 * (auto_credit) or explicitly (tt_mux_grant: the broker forwards credit end to end). */
#ifndef TT_MUX_H
#define TT_MUX_H

#include <stdbool.h>
#include <stdint.h>
#include "tether.pb-c.h"
#include "tt/buf.h"
#include "tt/frame.h"
#include "tt/limits.h"

typedef enum {
  TT_CH_FREE = 0,
  TT_CH_OPENING,  /* we sent CH_OPEN, waiting for ACCEPT/REJECT */
  TT_CH_PENDING,  /* peer sent CH_OPEN, we have not answered */
  TT_CH_OPEN,
  TT_CH_CLOSING,  /* we sent CH_CLOSE, waiting for the peer's CH_CLOSE */
} tt_chan_state_t;

typedef enum { TT_PRIO_INTERACTIVE = 0, TT_PRIO_BULK = 1, TT_PRIO_COUNT } tt_prio_t;

typedef struct tt_mux_s tt_mux_t;

typedef struct tt_chan_s tt_chan_t;
struct tt_chan_s {
  tt_chan_t *next;       /* the mux's list; channels are allocated on demand */
  uint32_t id;
  tt_chan_state_t state;
  tt_prio_t prio;
  bool auto_credit;
  bool eof_sent, eof_rcvd;
  uint32_t send_credit;  /* DATA body bytes we may still send */
  uint32_t recv_left;    /* DATA body bytes the peer may still send */
  uint32_t window;       /* the window we advertise (auto_credit re-grants up to it) */
  uint32_t consumed;     /* consumed since the last grant (auto_credit) */
  tt_buf_t outq;         /* whole DATA frames waiting for the socket */
  uint32_t tail_from_end; /* where the last queued DATA frame starts, counted from the end
                             of outq; 0 = none that small sends may be added to */
  uint64_t bytes_in, bytes_out;
  void *data;            /* the application's */
};

typedef struct {
  /* Peer asks to open ch (state PENDING); answer now or later with accept/reject. */
  void (*on_open)(tt_mux_t *m, tt_chan_t *ch, const Tether__ChannelOpen *msg);
  /* Our open was accepted; ch is OPEN and send_credit holds the peer's window. */
  void (*on_accept)(tt_mux_t *m, tt_chan_t *ch, const Tether__ChannelAccept *msg);
  /* DATA arrived within the window. In auto_credit mode call tt_mux_consumed() once the
   * bytes are used up. flags carries TT_FF_ZSTD / TT_FF_EOF. */
  void (*on_data)(tt_mux_t *m, tt_chan_t *ch, const uint8_t *p, size_t n, uint8_t flags);
  /* The peer granted n more bytes (send_credit already raised). May be NULL. */
  void (*on_credit)(tt_mux_t *m, tt_chan_t *ch, uint32_t n);
  /* The channel is gone: peer rejected, peer closed, or the mux is being destroyed
   * (code TT_ECLOSED). msg text may be empty. After return ch is FREE. */
  void (*on_close)(tt_mux_t *m, tt_chan_t *ch, int code, const char *msg);
} tt_mux_cbs_t;

struct tt_mux_s {
  tt_chan_t *chans;        /* at most TT_CHANNELS_MAX; an idle link holds none */
  uint32_t count;
  uint32_t next_id;        /* next id we open (odd or even) */
  uint32_t rr[TT_PRIO_COUNT]; /* id served last per priority, for round-robin */
  tt_buf_t ctrl;           /* encoded control/channel-control frames, sent first */
  uint32_t budget;         /* protobuf unpack budget for incoming channel-control frames */
  size_t bulk_room;        /* bulk DATA bytes tt_mux_pull may still take (the link's delay
                              control sets it; SIZE_MAX: no limit); pull lowers it */
  const tt_mux_cbs_t *cbs;
  void *data;
};

void tt_mux_init(tt_mux_t *m, bool opener_odd, const tt_mux_cbs_t *cbs, void *data);
/* Closes every channel (on_close with TT_ECLOSED) and frees queues. */
void tt_mux_destroy(tt_mux_t *m);

/* Open a channel: msg->window is overwritten with `window`. */
int tt_mux_open(tt_mux_t *m, Tether__ChannelOpen *msg, uint32_t window, bool auto_credit,
                tt_chan_t **out) TT_WUR;
int tt_mux_accept(tt_mux_t *m, tt_chan_t *ch, uint32_t window, bool auto_credit,
                  uint64_t compression) TT_WUR;
/* Reject a PENDING channel or close an OPEN one; the channel is freed once the peer's
 * CH_CLOSE arrives (or at once for a reject). No on_close for a local close. Best effort
 * and idempotent: TT_ESTATE means it was closing already; the channel is closing (or gone)
 * whatever the result, so callers need not check it. */
int tt_mux_reject(tt_mux_t *m, tt_chan_t *ch, int code, const char *msg);
int tt_mux_close(tt_mux_t *m, tt_chan_t *ch, int code, const char *msg);

/* Bytes the application may still queue on ch (send_credit minus what is queued). */
uint32_t tt_mux_sendable(const tt_chan_t *ch);
/* Queue DATA, split into frames of at most TT_DATA_CHUNK_MAX; small sends are added to a
 * plain DATA frame still waiting at the tail, so a stalled peer costs a header per chunk,
 * not per keystroke. TT_EWINDOW if n exceeds tt_mux_sendable (nothing queued), TT_ESTATE
 * if not OPEN or EOF already sent. A chunk with TT_FF_ZSTD or TT_FF_CTRL must fit one frame
 * and is never joined to another. */
int tt_mux_send(tt_mux_t *m, tt_chan_t *ch, const void *p, size_t n, uint8_t flags) TT_WUR;
/* A terminal channel's pending controls (SHELL, EXEC): a window size when *resize, then
 * *signal when not 0, each sent as one ChannelControl frame once ch has the credit for it
 * and then cleared; what does not fit yet stays pending for the next credit. Nothing is
 * sent after EOF. true when a frame was queued (the caller flushes its link). */
bool tt_mux_term_ctl(tt_mux_t *m, tt_chan_t *ch, bool *resize, uint32_t cols, uint32_t rows, uint32_t *signal);
/* auto_credit: report consumed bytes; a WINDOW frame goes out once half the window is used. */
void tt_mux_consumed(tt_mux_t *m, tt_chan_t *ch, size_t n);
/* Explicit credit (broker relay). TT_EWINDOW if it would pass TT_WINDOW_MAX outstanding. */
int tt_mux_grant(tt_mux_t *m, tt_chan_t *ch, uint32_t n) TT_WUR;

/* Queue a control message on channel 0 (Ping, Pong, Response, ...). TT_EFULL past
 * TT_CTRL_QUEUE_MAX: the peer is not reading, drop it. */
int tt_mux_control(tt_mux_t *m, uint8_t kind, const ProtobufCMessage *msg) TT_WUR;

/* Feed one frame of a channel kind (CH_*, WINDOW, DATA). Errors are fatal for the
 * connection: TT_EWINDOW (overrun), TT_ECHANNEL (unknown id, wrong state, wrong parity,
 * table full is a reject, not an error), TT_EPROTO/TT_ETOOBIG (bad body). */
int tt_mux_input(tt_mux_t *m, const tt_frame_t *f) TT_WUR;

/* Scheduler: append whole frames to out until it holds at least `max` bytes or nothing is
 * ready. Order: control frames, then interactive channels round-robin, then bulk channels
 * round-robin, one frame per channel per turn; bulk frames only while m->bulk_room is not 0
 * (a frame may pass it by its own size). Returns bytes appended. */
size_t tt_mux_pull(tt_mux_t *m, tt_buf_t *out, size_t max);
bool tt_mux_has_output(const tt_mux_t *m);

tt_chan_t *tt_mux_find(tt_mux_t *m, uint32_t id);
size_t tt_mux_count(const tt_mux_t *m);

#endif
