/* A TLS 1.3 stream over a libuv TCP handle, for both ends: memory BIOs, mutual
 * authentication, ALPN "tether/1", TCP_NODELAY, handshake and idle timeouts, a counted
 * write queue with a cap and a backpressure signal, close_notify on close. */
#ifndef TT_TLS_H
#define TT_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>
#include <openssl/ssl.h>
#include "tt/err.h"

#define TT_ALPN "tether/1"
/* Enrollment: a device without a certificate yet, after it checked the broker against a
 * pinned CA fingerprint. The server allows it only when opts.allow_enroll is set. */
#define TT_ALPN_ENROLL "tether-enroll/1"

typedef struct tt_tls_ctx_s tt_tls_ctx_t;
typedef struct tt_tls_s tt_tls_t;

typedef struct {
  bool server;
  const char *ca_file;   /* PEM: the only trust anchor for the peer's certificate */
  const char *cert_file; /* PEM: our certificate (chain; the broker's includes its CA so
                            that enrolling devices can check it against their pin) */
  const char *key_file;  /* PEM: our private key */
  /* server: also accept ALPN "tether-enroll/1" from clients without a certificate; such
   * streams report tt_tls_is_enroll() and have no peer certificate. */
  bool allow_enroll;
  /* server: session-ticket keys in this file (created 0600 if missing), so that resumption
   * survives a broker restart; NULL = no resumption. */
  const char *ticket_key_file;
  /* client, instead of ca_file: trust the CA certificate in the server's chain whose
   * fingerprint is this ("sha256:<hex>"), and offer only ALPN "tether-enroll/1".
   * cert_file/key_file may be NULL then. */
  const char *ca_pin;
  /* client: keep the newest session ticket and offer it on the next connect. */
  bool resume;
  /* client: the server is not a Tether broker (an RFC 5425 syslog collector): TLS 1.2 (ECDHE
   * with AEAD ciphers) is accepted besides 1.3, and no ALPN is offered or required. ca_file
   * and the name check still apply; cert_file may be NULL (no client certificate). */
  bool foreign;
} tt_tls_ctx_opts_t;

/* err gets a one-line reason (file name and OpenSSL's word) on failure. */
int tt_tls_ctx_new(tt_tls_ctx_t **out, const tt_tls_ctx_opts_t *o, char *err, size_t errlen) TT_WUR;
void tt_tls_ctx_free(tt_tls_ctx_t *ctx);
SSL_CTX *tt_tls_ctx_ssl(tt_tls_ctx_t *ctx);

typedef struct {
  uint64_t handshake_ms; /* whole TLS handshake must finish within this; 0 = none */
  uint64_t idle_ms;      /* close with TT_ETIMEOUT when nothing is received for this long; 0 = none */
  size_t high_water;     /* tt_tls_writable() turns false at this many queued bytes */
  size_t low_water;      /* on_drain fires when queued falls to this after high water */
  size_t write_cap;      /* tt_tls_write refuses (TT_EFULL) what would queue beyond this */
} tt_tls_limits_t;

typedef struct {
  /* status 0: handshake done and the peer's certificate verified; the peer's first
   * bytes may follow at once. Not called when the handshake fails (on_close is). */
  void (*on_handshake)(tt_tls_t *s);
  /* Decrypted bytes. The callee may call tt_tls_close() or tt_tls_read_stop(). */
  void (*on_read)(tt_tls_t *s, const uint8_t *data, size_t len);
  /* Queued bytes fell to low_water after having reached high_water. May be NULL. */
  void (*on_drain)(tt_tls_t *s);
  /* Last callback: the reason (0 for a clean close by either side, TT_ETIMEOUT,
   * TT_ECERT, TT_ETLS, UV_EOF, UV_ECONNRESET, ...). The stream is freed when it returns. */
  void (*on_close)(tt_tls_t *s, int reason);
  /* Server, may be NULL: called by tt_tls_accept with the peer's address once the TCP
   * connection is accepted and before any TLS state is made for it. false refuses it: the
   * socket is reset and closed, tt_tls_accept returns TT_EDENIED and no other callback
   * follows. tt_tls_data() works here; nothing else may be called on s. */
  bool (*on_accept)(tt_tls_t *s, const struct sockaddr *peer);
} tt_tls_cbs_t;

/* Accept one pending connection from a listening handle (call from its connection_cb). */
int tt_tls_accept(tt_tls_ctx_t *ctx, uv_stream_t *server, const tt_tls_limits_t *lim,
                  const tt_tls_cbs_t *cbs, void *data, tt_tls_t **out) TT_WUR;
/* Connect to addr; server_name (DNS name or IP literal) must match the broker's certificate,
 * NULL skips the name check (the CA pin still applies). on_close(reason) on failure. */
int tt_tls_connect(tt_tls_ctx_t *ctx, uv_loop_t *loop, const struct sockaddr *addr,
                   const char *server_name, const tt_tls_limits_t *lim,
                   const tt_tls_cbs_t *cbs, void *data, tt_tls_t **out) TT_WUR;

/* Encrypt and queue. TT_EFULL if queued+n would pass write_cap (nothing is queued then),
 * TT_ECLOSED once closing, TT_ESTATE before the handshake is done. */
int tt_tls_write(tt_tls_t *s, const void *data, size_t len) TT_WUR;
size_t tt_tls_queued(const tt_tls_t *s);
/* Ciphertext bytes handed to the socket since the stream began, and how many of them the
 * peer's TCP has acknowledged (Linux SIOCOUTQ): a sender that must not lose what it sent
 * counts a message as delivered once the byte that ends it is acknowledged. */
uint64_t tt_tls_wire_out(const tt_tls_t *s);
int tt_tls_wire_acked(const tt_tls_t *s, uint64_t *acked) TT_WUR;
bool tt_tls_writable(const tt_tls_t *s);
/* Stop / restart delivering on_read (backpressure from whoever consumes our bytes). */
void tt_tls_read_stop(tt_tls_t *s);
void tt_tls_read_start(tt_tls_t *s);
/* Send close_notify, flush, shut down and close; on_close(reason) follows on a later tick.
 * Safe to call more than once and from inside any callback. */
void tt_tls_close(tt_tls_t *s, int reason);
bool tt_tls_closing(const tt_tls_t *s);
/* Change the idle timeout of an open stream (e.g. once the broker said how often it pings);
 * 0 turns it off. */
void tt_tls_set_idle(tt_tls_t *s, uint64_t idle_ms);
/* uv_now() of the last bytes received (of the handshake's start before it is done): for
 * callers that keep idle deadlines on a shared wheel instead of idle_ms. */
uint64_t tt_tls_last_read(const tt_tls_t *s);
/* A byte has come from the peer (read, or waiting in the kernel to be read): a server
 * under pressure drops the connections that have sent nothing first. */
bool tt_tls_heard(const tt_tls_t *s);

/* The handshake is done (and, on a server, the client verified or enrolling). */
bool tt_tls_established(const tt_tls_t *s);
/* The stream negotiated "tether-enroll/1". */
bool tt_tls_is_enroll(const tt_tls_t *s);
/* The handshake resumed a session (no certificates exchanged this time). */
bool tt_tls_resumed(const tt_tls_t *s);
/* Client with ca_pin: the pinned CA certificate found in the server's chain (owned by the
 * stream), NULL before the handshake. */
X509 *tt_tls_pinned_ca(const tt_tls_t *s);

void *tt_tls_data(const tt_tls_t *s);
void tt_tls_set_data(tt_tls_t *s, void *data);
/* Peer's verified leaf certificate (owned by the stream), NULL before the handshake. */
X509 *tt_tls_peer_cert(const tt_tls_t *s);
/* "127.0.0.1:5555" */
const char *tt_tls_peer_addr(const tt_tls_t *s);
uv_loop_t *tt_tls_loop(const tt_tls_t *s);

#endif
