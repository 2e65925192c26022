/* tether-loadgen: a fleet of agents in one process, to measure what a broker holds per
 * connected agent and how fast a whole fleet (re)connects. A test tool, not an agent.
 *
 * It carries its own minimal TLS client (memory BIOs over libuv, like core/tls.c) because
 * tt_tls_connect takes one context per connection and has no per-connection certificate
 * hook: here one SSL_CTX holds the CA, ALPN and TLS 1.3 settings and each SSL gets its own
 * certificate. It speaks just enough of the protocol to look like an idle agent: Hello,
 * Welcome, Pong for every Ping, and Error (honouring retry_after_ms). With --inventory P
 * each agent also pushes a deb_packages table of P packages after its first Welcome, as
 * tether-agent pushes a first inventory (offer, the broker's want, parts of at most
 * TT_INV_PART_MAX), a window of agents at a time, so that a fleet arrives in the broker's
 * store through the broker. With --check-fail CHECK[:DIMENSION] each agent reports that
 * check failing after every Welcome (one full CheckReport, as tether-agent's checks do): a
 * fleet-wide failure, for the broker's storm rule. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>
#include <zstd.h>
#include <openssl/asn1.h>
#include <openssl/buffer.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "tt/addr.h"
#include "tt/backoff.h"
#include "tt/cert.h"
#include "tt/frame.h"
#include "tt/msg.h"
#include "tt/pki.h"
#include "tt/tls.h"
#include "invtable.h"

#define LG_COUNT_MAX 999999u       /* names are load-NNNNNN */
#define LG_INFLIGHT_DEFAULT 2000u  /* connects + handshakes + Hellos at once */
#define LG_TICK_MS 10u             /* admission ticker */
#define LG_HANDSHAKE_MS 20000u     /* connect + TLS + Welcome must finish within this */
#define LG_BACKOFF_BASE_MS 500u    /* as tether-agent's defaults */
#define LG_BACKOFF_CAP_MS 30000u
#define LG_STOP_GRACE_S 30u        /* SIGALRM ends us if closing ever hangs */
#define LG_NOFILE_WANT 1100000u
#define LG_FD_SPARE 64u            /* fds besides the connections */
#define LG_CERT_SECONDS (365LL * TT_PKI_DAY) /* the cache should outlive a month of runs */
#define LG_CACHE_DIR "load"
#define LG_CACHE_KEY "agent.key"
#define LG_CACHE_CERTS "agents.der"
#define LG_INV_WINDOW_DEFAULT 32u  /* agents pushing an inventory at once */
#define LG_INV_VARY_PCT 5          /* as tether-invbench's default */
#define LG_INV_ZLEVEL 3            /* as tether-agent's INV_ZSTD_LEVEL */
#define LG_INV_BUSY_MS 500u        /* after the broker says busy, try that agent again */
#define LG_LEAVE_HELD 4u           /* --inventory-leave: connections at once, in windows */

typedef enum {
  LG_WAIT = 0,   /* backoff timer running, or not started yet */
  LG_QUEUED,     /* waiting for the admission ticker */
  LG_CONNECTING, /* TCP connect */
  LG_TLS,        /* TLS handshake */
  LG_HELLO,      /* Hello sent, waiting for Welcome */
  LG_READY,      /* welcomed: a connected agent */
  LG_CLOSING,    /* uv_close issued on the socket */
} lg_state_t;

/* One agent's first inventory while it is being pushed. */
typedef struct {
  uint8_t *z; /* the table's JSON, zstd-compressed */
  size_t zlen, size, off;
  uint8_t sha[32]; /* of the JSON */
  uint64_t offer;
  uint32_t req; /* the request id we wait on */
  bool put;     /* past the offer */
} lg_inv_t;

typedef struct lg_conn_s {
  uv_tcp_t tcp;
  uv_timer_t timer; /* backoff while waiting, then the handshake deadline */
  uv_connect_t creq;
  SSL *ssl;
  BIO *rbio, *wbio;
  X509 *cert;           /* parsed at the first connect, kept: d2i costs ~130 us in 3.0 */
  SSL_SESSION *session; /* the broker's newest ticket, offered at the next connect */
  tt_frame_reader_t rd;
  tt_backoff_t bo;
  struct lg_conn_s *qnext;
  struct lg_conn_s *inext; /* the inventory queue */
  lg_inv_t *inv;           /* while pushing */
  uint64_t inv_after_ns;   /* not before this (the broker was busy) */
  uint32_t next_req;
  bool inv_done, inv_queued;
  bool left; /* --inventory-leave: pushed and gone for good */
  uint32_t idx;
  uint32_t retry_after_ms; /* from the broker's last Error, honoured once */
  lg_state_t state;
  bool welcomed_before;
} lg_conn_t;

typedef struct {
  uv_write_t req;
  size_t len;
  uint8_t bytes[];
} lg_wreq_t;

typedef struct {
  /* options */
  struct sockaddr_storage broker;
  char broker_host[128];
  const char *ca_dir;
  uint32_t count;
  struct sockaddr_in *sources;
  uint32_t nsources;
  double rate;
  uint32_t inflight_max;
  double duration_s;
  bool resume;
  double stats_s;
  uint32_t handshake_ms;
  /* identities: one key, count certificates as concatenated DER */
  EVP_PKEY *key;
  uint8_t *der;
  uint32_t *der_off; /* count + 1 offsets */
  SSL_CTX *ctx;
  /* state */
  uv_loop_t *loop;
  lg_conn_t *conns;
  lg_conn_t *qhead, *qtail;
  uv_timer_t tick, stats, stop_timer;
  uv_signal_t sigint, sigterm;
  double tokens;
  uint64_t last_tick_ns, start_ns, last_stats_ns, epoch_ns;
  uint32_t connected, inflight;
  uint64_t attempts, failed, dropped, reconnects, errors, welcomes, welcomes_at_stats,
      welcomes_at_epoch, resumed, tickets;
  int last_err;
  bool all_connected, stopping;
  /* inventory */
  uint32_t inv_packages, inv_window, inv_active, inv_done, inv_failed;
  lg_conn_t *ihead, *itail;
  uint64_t inv_start_ns, inv_busy, inv_wire, inv_json, inv_zbytes;
  invtable_buf_t inv_buf;
  unsigned char *inv_variant;
  bool inv_reported, inv_leave;
  uint32_t inv_left;
  /* --check-fail */
  char check_fail[64], check_dim[128];
  uint64_t check_reports;
} lg_t;

static lg_t g; /* the one fleet of this process */

static double secs_since(uint64_t ns) { return (double)(uv_hrtime() - ns) / 1e9; }

/* Unix time in seconds, so that a script can line our events up with its own. */
static double wall_now(void) {
  struct timespec ts = {0, 0};
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- identities -------------------------------------------------------------------- */

static void ssl_err(const char *what) {
  unsigned long e = ERR_get_error();
  fprintf(stderr, "tether-loadgen: %s: %s\n", what, e ? ERR_reason_error_string(e) : "failed");
  ERR_clear_error();
}

/* a + b into out; TT_ETOOBIG rather than a truncated path. */
static int path_cat(char *out, size_t cap, const char *a, const char *b) {
  int n = snprintf(out, cap, "%s%s", a, b);
  return n < 0 || (size_t)n >= cap ? TT_ETOOBIG : 0;
}

/* Whole file into memory; *len = 0 and NULL when it does not exist. */
static int read_file(const char *path, uint8_t **out, size_t *len) {
  *out = NULL;
  *len = 0;
  FILE *f = fopen(path, "rb");
  if (!f) return errno == ENOENT ? 0 : -errno;
  int rc = 0;
  if (fseek(f, 0, SEEK_END) != 0) { rc = -errno; goto out; }
  long n = ftell(f);
  if (n < 0 || fseek(f, 0, SEEK_SET) != 0) { rc = TT_EIO; goto out; }
  *out = malloc((size_t)n + 1);
  if (!*out) { rc = TT_ENOMEM; goto out; }
  if (fread(*out, 1, (size_t)n, f) != (size_t)n) {
    free(*out);
    *out = NULL;
    rc = TT_EIO;
    goto out;
  }
  *len = (size_t)n;
out:
  fclose(f);
  return rc;
}

/* Splits concatenated DER certificates into offsets; returns how many whole ones lead. */
static uint32_t der_split(const uint8_t *p, size_t len, uint32_t want, uint32_t *off) {
  uint32_t n = 0;
  size_t pos = 0;
  while (n < want && pos < len) {
    const unsigned char *q = p + pos;
    long clen = 0;
    int tag = 0, cls = 0;
    int r = ASN1_get_object(&q, &clen, &tag, &cls, (long)(len - pos));
    if ((r & 0x80) || tag != V_ASN1_SEQUENCE || clen <= 0) break;
    size_t whole = (size_t)(q - (p + pos)) + (size_t)clen;
    if (whole > len - pos) break;
    off[n++] = (uint32_t)pos;
    pos += whole;
  }
  off[n] = (uint32_t)pos;
  return n;
}

/* A cached certificate is good if the CA signed it, it carries our key and it has more
 * than a day left. Checking the first one is enough: the cache is written whole. */
static bool cache_usable(const uint8_t *der, size_t len, X509 *ca) {
  const unsigned char *p = der;
  X509 *x = d2i_X509(NULL, &p, (long)len);
  bool ok = false;
  if (x) {
    time_t soon = time(NULL) + TT_PKI_DAY;
    ok = X509_verify(x, X509_get0_pubkey(ca)) == 1 && X509_check_private_key(x, g.key) == 1 &&
         X509_cmp_time(X509_get0_notAfter(x), &soon) > 0;
  }
  X509_free(x);
  ERR_clear_error();
  return ok;
}

/* Write tmp, fsync, rename: a reader never sees half a cache. */
static int write_whole(const char *path, const uint8_t *p, size_t n) {
  char tmp[4200];
  if (path_cat(tmp, sizeof(tmp), path, ".tmp") != 0) return TT_ETOOBIG;
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd < 0) return -errno;
  int rc = 0;
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) { rc = TT_EIO; break; }
    p += w;
    n -= (size_t)w;
  }
  if (!rc && fsync(fd) != 0) rc = -errno;
  if (close(fd) != 0 && !rc) rc = -errno;
  if (!rc && rename(tmp, path) != 0) rc = -errno;
  if (rc) unlink(tmp);
  return rc;
}

/* N agent certificates load-000001.. from the CA in ca_dir, cached in ca_dir/load/.
 * SHORTCUT (a test fleet only): every certificate is distinct (its own CN and serial) but
 * all share ONE P-256 key, signed from one CSR with tt_pki_sign_csr, because tt_pki_issue
 * makes a fresh key per certificate. Real devices make their own keys. */
static int identities_load(void) {
  char dir[4096], path[4200], err[512];
  X509 *ca = NULL;
  EVP_PKEY *ca_key = NULL;
  X509_REQ *csr = NULL;
  uint8_t *cached = NULL, *der = NULL;
  size_t clen = 0;
  int rc;
  if ((rc = tt_pki_load_ca(g.ca_dir, &ca, &ca_key, err, sizeof(err))) != 0) {
    fprintf(stderr, "tether-loadgen: %s\n", err);
    return rc;
  }
  if (path_cat(dir, sizeof(dir), g.ca_dir, "/" LG_CACHE_DIR) != 0 ||
      path_cat(path, sizeof(path), dir, "/" LG_CACHE_KEY) != 0) {
    rc = TT_ETOOBIG;
    fprintf(stderr, "tether-loadgen: --ca-dir is too long\n");
    goto out;
  }
  if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
    rc = -errno;
    fprintf(stderr, "tether-loadgen: mkdir %s: %s\n", dir, strerror(errno));
    goto out;
  }
  if (access(path, F_OK) == 0) {
    rc = tt_pki_load_key(path, &g.key, err, sizeof(err));
  } else {
    rc = tt_pki_key_new(&g.key, err, sizeof(err));
    if (!rc) rc = tt_pki_write_key(path, g.key, err, sizeof(err));
  }
  if (rc) {
    fprintf(stderr, "tether-loadgen: %s\n", err);
    goto out;
  }
  g.der_off = calloc((size_t)g.count + 1, sizeof(*g.der_off));
  if (!g.der_off) { rc = TT_ENOMEM; goto out; }
  if ((rc = path_cat(path, sizeof(path), dir, "/" LG_CACHE_CERTS)) != 0) goto out;
  if ((rc = read_file(path, &cached, &clen)) != 0) {
    fprintf(stderr, "tether-loadgen: %s: %s\n", path, tt_strerror(rc));
    goto out;
  }
  uint32_t have = clen && cache_usable(cached, clen, ca) ? der_split(cached, clen, g.count, g.der_off) : 0;
  if (have == g.count) {
    g.der = cached;
    cached = NULL;
    printf("identities: %u agent certificates from %s\n", have, path);
    goto out;
  }
  /* Issue the missing ones after those we have, then rewrite the cache whole. */
  size_t kept = g.der_off[have], cap = kept + (size_t)(g.count - have) * 1024u;
  der = malloc(cap);
  if (!der) { rc = TT_ENOMEM; goto out; }
  if (kept) memcpy(der, cached, kept);
  if ((rc = tt_pki_csr_new(g.key, "load", &csr, err, sizeof(err))) != 0) {
    fprintf(stderr, "tether-loadgen: %s\n", err);
    goto out;
  }
  printf("identities: issuing %u agent certificates (%u cached), one shared key...\n",
         g.count - have, have);
  fflush(stdout);
  uint64_t t0 = uv_hrtime();
  size_t pos = kept;
  for (uint32_t i = have; i < g.count; i++) {
    char name[32];
    snprintf(name, sizeof(name), "load-%06u", i + 1);
    tt_pki_leaf_t leaf = {.role = TT_ROLE_AGENT, .name = name, .seconds = LG_CERT_SECONDS};
    X509 *x = NULL;
    if ((rc = tt_pki_sign_csr(ca, ca_key, csr, &leaf, &x, err, sizeof(err))) != 0) {
      fprintf(stderr, "tether-loadgen: issue %s: %s\n", name, err);
      goto out;
    }
    int n = i2d_X509(x, NULL);
    if (n <= 0 || (size_t)n > cap - pos) {
      X509_free(x);
      rc = TT_ETOOBIG;
      fprintf(stderr, "tether-loadgen: issue %s: certificate does not fit\n", name);
      goto out;
    }
    unsigned char *w = der + pos;
    (void)i2d_X509(x, &w);
    X509_free(x);
    g.der_off[i] = (uint32_t)pos;
    pos += (size_t)n;
    if ((i + 1) % 10000 == 0) {
      printf("identities: %u/%u\n", i + 1, g.count);
      fflush(stdout);
    }
  }
  g.der_off[g.count] = (uint32_t)pos;
  printf("identities: issued %u in %.1f s\n", g.count - have, secs_since(t0));
  if ((rc = write_whole(path, der, pos)) != 0) {
    fprintf(stderr, "tether-loadgen: write %s: %s\n", path, tt_strerror(rc));
    goto out;
  }
  g.der = der;
  der = NULL;
out:
  free(cached);
  free(der);
  X509_REQ_free(csr);
  X509_free(ca);
  EVP_PKEY_free(ca_key);
  return rc;
}

/* The broker sent a ticket: keep the newest for this connection's next attempt. */
static int new_session_cb(SSL *ssl, SSL_SESSION *sess) {
  lg_conn_t *c = SSL_get_app_data(ssl);
  if (!c) return 0;
  g.tickets++;
  SSL_SESSION_free(c->session);
  c->session = sess;
  return 1; /* we keep the reference */
}

static int ctx_make(void) {
  char ca[4200];
  if (path_cat(ca, sizeof(ca), g.ca_dir, "/" TT_PKI_CA_CERT_FILE) != 0) return TT_ETOOBIG;
  g.ctx = SSL_CTX_new(TLS_client_method());
  if (!g.ctx) { ssl_err("SSL_CTX_new"); return TT_ETLS; }
  static const unsigned char alpn[] = "\x08" TT_ALPN;
  unsigned char ip[16];
  bool literal = inet_pton(AF_INET, g.broker_host, ip) == 1 || inet_pton(AF_INET6, g.broker_host, ip) == 1;
  if (SSL_CTX_set_min_proto_version(g.ctx, TLS1_3_VERSION) != 1 ||
      SSL_CTX_set_max_proto_version(g.ctx, TLS1_3_VERSION) != 1 ||
      SSL_CTX_load_verify_locations(g.ctx, ca, NULL) != 1 ||
      SSL_CTX_set_alpn_protos(g.ctx, alpn, sizeof(alpn) - 1) != 0 ||
      (literal ? X509_VERIFY_PARAM_set1_ip_asc(SSL_CTX_get0_param(g.ctx), g.broker_host)
               : X509_VERIFY_PARAM_set1_host(SSL_CTX_get0_param(g.ctx), g.broker_host, 0)) != 1) {
    ssl_err(ca);
    return TT_ETLS;
  }
  SSL_CTX_set_verify(g.ctx, SSL_VERIFY_PEER, NULL);
  SSL_CTX_set_mode(g.ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_NO_AUTO_CHAIN);
  /* Tickets are kept per connection (new_session_cb), never in OpenSSL's cache. */
  SSL_CTX_set_session_cache_mode(g.ctx, g.resume ? SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE
                                                 : SSL_SESS_CACHE_OFF);
  if (g.resume) SSL_CTX_sess_set_new_cb(g.ctx, new_session_cb);
  return 0;
}

/* ---- connections ------------------------------------------------------------------- */

static void conn_fail(lg_conn_t *c, int reason);
static void lg_stop(void);
static void conn_pump(lg_conn_t *c);

static void queue_push(lg_conn_t *c) {
  c->state = LG_QUEUED;
  c->qnext = NULL;
  if (g.qtail) g.qtail->qnext = c;
  else g.qhead = c;
  g.qtail = c;
}

static lg_conn_t *queue_pop(void) {
  lg_conn_t *c = g.qhead;
  if (!c) return NULL;
  g.qhead = c->qnext;
  if (!g.qhead) g.qtail = NULL;
  c->qnext = NULL;
  return c;
}

static void write_cb(uv_write_t *req, int status) {
  lg_wreq_t *w = (lg_wreq_t *)req;
  lg_conn_t *c = req->data;
  free(w);
  if (status < 0 && status != UV_ECANCELED) conn_fail(c, status);
}

/* Hands what OpenSSL wrote to libuv; nonzero means the connection is failing. */
static int conn_flush(lg_conn_t *c) {
  size_t n;
  while ((n = BIO_ctrl_pending(c->wbio)) > 0) {
    lg_wreq_t *w = malloc(sizeof(*w) + n);
    if (!w) return TT_ENOMEM;
    int got = BIO_read(c->wbio, w->bytes, (int)n);
    if (got <= 0) {
      free(w);
      return TT_ETLS;
    }
    w->len = (size_t)got;
    w->req.data = c;
    uv_buf_t b = uv_buf_init((char *)w->bytes, (unsigned int)got);
    int r = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, write_cb);
    if (r < 0) {
      free(w);
      return r;
    }
  }
  return 0;
}

static int conn_send(lg_conn_t *c, uint8_t kind, const ProtobufCMessage *m) {
  tt_buf_t b;
  size_t w = 0;
  tt_buf_init(&b, TT_FRAME_HDR + (c->state == LG_READY ? TT_FRAME_MAX_BODY : TT_FRAME_MAX_BODY_PREAUTH));
  int rc = tt_msg_encode(&b, kind, 0, m);
  if (!rc) {
    ERR_clear_error();
    if (SSL_write_ex(c->ssl, tt_buf_head(&b), b.len, &w) != 1) rc = TT_ETLS;
  }
  tt_buf_free(&b);
  return rc ? rc : conn_flush(c);
}

/* A fresh memory BIO for one that grew during the handshake (they never shrink). */
static void conn_trim(lg_conn_t *c) {
  BUF_MEM *m = NULL;
  BIO *nb;
  BIO_get_mem_ptr(c->rbio, &m);
  if (BIO_ctrl_pending(c->rbio) == 0 && m && m->max > 256 && (nb = BIO_new(BIO_s_mem()))) {
    BIO_set_mem_eof_return(nb, -1);
    SSL_set0_rbio(c->ssl, nb);
    c->rbio = nb;
  }
  BIO_get_mem_ptr(c->wbio, &m);
  if (BIO_ctrl_pending(c->wbio) == 0 && m && m->max > 256 && (nb = BIO_new(BIO_s_mem()))) {
    BIO_set_mem_eof_return(nb, -1);
    SSL_set0_wbio(c->ssl, nb);
    c->wbio = nb;
  }
}

static void epoch_check(void) {
  if (g.all_connected || g.connected != g.count) return;
  g.all_connected = true;
  double took = secs_since(g.epoch_ns);
  uint64_t hs = g.welcomes - g.welcomes_at_epoch;
  printf("event=all-connected t=%.3f wall=%.3f n=%u took=%.3f handshakes=%llu hs_per_s=%.0f "
         "failed=%llu resumed=%llu\n",
         secs_since(g.start_ns), wall_now(), g.count, took, (unsigned long long)hs,
         took > 0 ? (double)hs / took : 0.0, (unsigned long long)g.failed,
         (unsigned long long)g.resumed);
}

/* ---- the first inventory (--inventory) ---------------------------------------------- */

static void inv_free(lg_conn_t *c) {
  if (!c->inv) return;
  free(c->inv->z);
  free(c->inv);
  c->inv = NULL;
  g.inv_active--;
}

static void inv_queue(lg_conn_t *c) {
  if (!g.inv_packages || c->inv_done || c->inv_queued || c->inv) return;
  c->inv_queued = true;
  c->inext = NULL;
  if (g.itail) g.itail->inext = c;
  else g.ihead = c;
  g.itail = c;
}

static void inv_report(void) {
  if (g.inv_reported || g.inv_done + g.inv_failed < g.count) return;
  g.inv_reported = true;
  double took = secs_since(g.inv_start_ns);
  printf("event=inventory-all t=%.3f n=%u stored=%u failed=%u took=%.1f ms_per_device=%.2f "
         "json_kib_per_device=%.0f zstd_kib_per_device=%.1f wire_bytes=%llu busy_retries=%llu\n",
         secs_since(g.start_ns), g.count, g.inv_done, g.inv_failed, took,
         g.inv_done ? took * 1000.0 / g.inv_done : 0.0, g.inv_done ? (double)g.inv_json / 1024.0 / g.inv_done : 0.0,
         g.inv_done ? (double)g.inv_zbytes / 1024.0 / g.inv_done : 0.0, (unsigned long long)g.inv_wire,
         (unsigned long long)g.inv_busy);
}

static int inv_request(lg_conn_t *c, Tether__Request *q) {
  q->id = c->inv->req = ++c->next_req;
  g.inv_wire += tether__request__get_packed_size(q) + TT_FRAME_HDR;
  return conn_send(c, TT_K_REQUEST, &q->base);
}

/* The whole table offered by its hash, as a device the broker has never seen is asked to. */
static int inv_offer(lg_conn_t *c) {
  lg_inv_t *v = c->inv;
  Tether__InventoryHash h = TETHER__INVENTORY_HASH__INIT, *hp = &h;
  h.name = tt_text("deb_packages");
  h.sha256.data = v->sha;
  h.sha256.len = 32;
  Tether__InventoryOfferRequest o = TETHER__INVENTORY_OFFER_REQUEST__INIT;
  o.collected_ms = (uint64_t)(wall_now() * 1000.0);
  o.n_tables = 1;
  o.tables = &hp;
  Tether__Request q = TETHER__REQUEST__INIT;
  q.body_case = TETHER__REQUEST__BODY_INVENTORY_OFFER;
  q.inventory_offer = &o;
  return inv_request(c, &q);
}

static int inv_part(lg_conn_t *c) {
  lg_inv_t *v = c->inv;
  size_t n = v->zlen - v->off < TT_INV_PART_MAX ? v->zlen - v->off : TT_INV_PART_MAX;
  Tether__InventoryPutRequest p = TETHER__INVENTORY_PUT_REQUEST__INIT;
  p.offer = v->offer;
  p.name = tt_text("deb_packages");
  p.size = v->size;
  p.offset = v->off;
  p.total = v->zlen;
  p.zdata.data = v->z + v->off;
  p.zdata.len = n;
  Tether__Request q = TETHER__REQUEST__INIT;
  q.body_case = TETHER__REQUEST__BODY_INVENTORY_PUT;
  q.inventory_put = &p;
  v->off += n;
  v->put = true;
  return inv_request(c, &q);
}

/* This agent's table (invtable.h, the same as tether-invbench's device c->idx), compressed. */
static int inv_start(lg_conn_t *c) {
  lg_inv_t *v = calloc(1, sizeof(*v));
  if (!v) return TT_ENOMEM;
  invtable_json((int)c->idx, (int)g.inv_packages, LG_INV_VARY_PCT, &g.inv_buf, g.inv_variant);
  size_t cap = ZSTD_compressBound(g.inv_buf.len);
  unsigned int hl = 0;
  v->z = malloc(cap);
  if (!v->z || EVP_Digest(g.inv_buf.p, g.inv_buf.len, v->sha, &hl, EVP_sha256(), NULL) != 1) {
    free(v->z);
    free(v);
    return TT_ENOMEM;
  }
  size_t z = ZSTD_compress(v->z, cap, g.inv_buf.p, g.inv_buf.len, LG_INV_ZLEVEL);
  if (ZSTD_isError(z)) {
    free(v->z);
    free(v);
    return TT_EIO;
  }
  v->zlen = z;
  v->size = g.inv_buf.len;
  c->inv = v;
  g.inv_active++;
  return inv_offer(c);
}

/* Starts queued pushes up to the window; from the ticker. */
static void inv_pump(void) {
  uint64_t now = uv_hrtime();
  uint32_t skipped = 0, queued = 0;
  for (lg_conn_t *c = g.ihead; c; c = c->inext) queued++;
  while (g.ihead && g.inv_active < g.inv_window && skipped < queued) {
    lg_conn_t *c = g.ihead;
    g.ihead = c->inext;
    if (!g.ihead) g.itail = NULL;
    c->inv_queued = false;
    if (c->state != LG_READY) continue; /* queued again at its next Welcome */
    if (c->inv_after_ns > now) {        /* the broker was busy: to the back */
      inv_queue(c);
      skipped++;
      continue;
    }
    if (!g.inv_start_ns) g.inv_start_ns = now;
    int rc = inv_start(c);
    if (rc) conn_fail(c, rc);
  }
}

/* --inventory-leave: this agent's inventory is stored; it closes (close_notify, then the
 * socket) and does not come back, so that a fleet larger than this host's open-file limit
 * arrives through the broker a window at a time. */
static void inv_leave(lg_conn_t *c) {
  c->left = true;
  g.inv_left++;
  ERR_clear_error();
  (void)SSL_shutdown(c->ssl);
  (void)conn_flush(c);
  conn_fail(c, TT_ECLOSED);
  if (g.inv_left == g.count) lg_stop();
}

/* A Response to this agent's inventory request. Nonzero fails the connection. */
static int inv_response(lg_conn_t *c, const Tether__Response *r) {
  lg_inv_t *v = c->inv;
  if (!v || r->id != v->req) return 0; /* not ours, or from before a reconnect */
  if (r->error) {
    if (r->error->code == TETHER__ERROR_CODE__ERR_BUSY) { /* the broker's window or queue: again later */
      g.inv_busy++;
      uint32_t ms = r->error->retry_after_ms ? r->error->retry_after_ms : LG_INV_BUSY_MS;
      c->inv_after_ns = uv_hrtime() + (uint64_t)ms * 1000000u;
      inv_free(c);
      inv_queue(c);
      return 0;
    }
    if (g.inv_failed++ == 0)
      fprintf(stderr, "tether-loadgen: load-%06u: inventory refused: %.*s\n", c->idx + 1,
              (int)r->error->message.len, (const char *)r->error->message.data);
    c->inv_done = true;
    inv_free(c);
    inv_report();
    return 0;
  }
  if (!v->put) {
    if (r->body_case != TETHER__RESPONSE__BODY_INVENTORY_WANT) return TT_EPROTO;
    const Tether__InventoryWant *w = r->inventory_want;
    if (w->n_names == 0) { /* the broker has this table already (a run on a loaded store) */
      g.inv_done++;
      c->inv_done = true;
      inv_free(c);
      inv_report();
      return 0;
    }
    v->offer = w->offer;
    return inv_part(c);
  }
  if (r->body_case != TETHER__RESPONSE__BODY_INVENTORY_PUT) return TT_EPROTO;
  if (!r->inventory_put->complete) return v->off < v->zlen ? inv_part(c) : TT_EPROTO;
  g.inv_done++;
  g.inv_json += v->size;
  g.inv_zbytes += v->zlen;
  c->inv_done = true;
  inv_free(c);
  conn_trim(c); /* the BIOs grew with the parts; a fleet keeps them */
  inv_report();
  if (g.inv_leave) inv_leave(c);
  return 0;
}

/* --check-fail: the one failing result, in a full report (its answer is not waited for). */
static int check_report(lg_conn_t *c) {
  uint64_t now = (uint64_t)(wall_now() * 1000.0);
  Tether__CheckResult r = TETHER__CHECK_RESULT__INIT, *rp = &r;
  r.check = tt_text(g.check_fail);
  r.dimension = tt_text(g.check_dim);
  r.state = TETHER__CHECK_STATE__CHECK_FAILING;
  r.last = TETHER__CHECK_STATE__CHECK_FAILING;
  r.value = tt_text("97% used");
  r.threshold = tt_text("90%");
  r.since_ms = now;
  r.run_ms = now;
  r.streak = 3;
  Tether__CheckReportRequest rep = TETHER__CHECK_REPORT_REQUEST__INIT;
  rep.full = true;
  rep.results = &rp;
  rep.n_results = 1;
  rep.sent_ms = now;
  Tether__Request q = TETHER__REQUEST__INIT;
  q.id = ++c->next_req;
  q.body_case = TETHER__REQUEST__BODY_CHECK_REPORT;
  q.check_report = &rep;
  g.check_reports++;
  return conn_send(c, TT_K_REQUEST, &q.base);
}

static void on_welcome(lg_conn_t *c) {
  c->state = LG_READY;
  uv_timer_stop(&c->timer);
  tt_backoff_reset(&c->bo);
  c->rd.max_body = TT_FRAME_MAX_BODY;
  g.inflight--;
  g.connected++;
  g.welcomes++;
  if (SSL_session_reused(c->ssl)) g.resumed++;
  if (c->welcomed_before) g.reconnects++;
  c->welcomed_before = true;
  conn_trim(c);
  epoch_check();
  inv_queue(c);
  if (g.check_fail[0] && check_report(c))
    fprintf(stderr, "tether-loadgen: load-%06u: check report not sent\n", c->idx + 1);
}

/* One frame from the broker. Nonzero stops the read loop and fails the connection. */
static int frame_cb(void *ctx, const tt_frame_t *f) {
  lg_conn_t *c = ctx;
  tt_msg_t m;
  if (!tt_kind_is_control(f->kind)) return TT_EPROTO; /* nobody opens channels to us */
  int rc = tt_msg_unpack(&m, f->kind, f->body, f->len,
                         c->state == LG_READY ? TT_MSG_BUDGET : TT_MSG_BUDGET_PREAUTH);
  if (rc) return rc;
  switch (f->kind) {
  case TT_K_WELCOME:
    if (c->state == LG_HELLO) on_welcome(c);
    else rc = TT_EPROTO;
    break;
  case TT_K_PING: {
    Tether__Pong p = TETHER__PONG__INIT;
    p.nonce = ((Tether__Ping *)m.m)->nonce;
    rc = c->state == LG_READY ? conn_send(c, TT_K_PONG, &p.base) : TT_EPROTO;
    break;
  }
  case TT_K_ERROR:
    g.errors++;
    c->retry_after_ms = ((Tether__Error *)m.m)->retry_after_ms;
    rc = TT_EPEER;
    break;
  case TT_K_RESPONSE:
    rc = c->state == LG_READY ? inv_response(c, (Tether__Response *)m.m) : TT_EPROTO;
    break;
  default:
    break; /* not for an idle agent */
  }
  tt_msg_free(&m);
  return rc;
}

/* TLS is up: the broker must have said tether/1 and be a broker; then Hello. */
static int handshake_done(lg_conn_t *c) {
  const unsigned char *p = NULL;
  unsigned int n = 0;
  tt_identity_t id;
  SSL_get0_alpn_selected(c->ssl, &p, &n);
  if (n != strlen(TT_ALPN) || memcmp(p, TT_ALPN, n) != 0) return TT_ETLS;
  X509 *peer = SSL_get0_peer_certificate(c->ssl);
  if (!peer || tt_cert_identity(peer, &id) != 0 || id.role != TT_ROLE_BROKER) return TT_ECERT;
  char host[32];
  snprintf(host, sizeof(host), "load-%06u", c->idx + 1);
  Tether__Hello h = TETHER__HELLO__INIT;
  h.proto_version = TT_PROTO_VERSION;
  h.role = TETHER__ROLE__ROLE_AGENT;
  h.software_version = tt_text("tether-loadgen/" TT_VERSION);
  h.hostname = tt_text(host);
  c->state = LG_HELLO;
  return conn_send(c, TT_K_HELLO, &h.base);
}

/* Handshake as far as rbio allows, then decrypt until OpenSSL wants more. A TLS 1.3
 * client learns that its certificate was refused only here, on its first read. */
static void conn_pump(lg_conn_t *c) {
  static uint8_t plain[16384]; /* one record; never used across a callback */
  int rc;
  if (c->state == LG_TLS) {
    ERR_clear_error();
    int r = SSL_do_handshake(c->ssl);
    int e = r == 1 ? SSL_ERROR_NONE : SSL_get_error(c->ssl, r);
    if ((rc = conn_flush(c)) != 0) goto fail;
    if (r != 1) {
      if (e == SSL_ERROR_WANT_READ) return;
      rc = SSL_get_verify_result(c->ssl) != X509_V_OK ? TT_ECERT : TT_ETLS;
      goto fail;
    }
    if ((rc = handshake_done(c)) != 0) goto fail;
  }
  while (c->state == LG_HELLO || c->state == LG_READY) {
    size_t got = 0;
    ERR_clear_error();
    int r = SSL_read_ex(c->ssl, plain, sizeof(plain), &got);
    int e = r == 1 ? SSL_ERROR_NONE : SSL_get_error(c->ssl, r);
    if ((rc = conn_flush(c)) != 0) goto fail;
    if (r == 1) {
      if ((rc = tt_frame_reader_feed(&c->rd, plain, got, frame_cb, c)) != 0) goto fail;
      continue;
    }
    if (e == SSL_ERROR_WANT_READ) break;
    rc = e == SSL_ERROR_ZERO_RETURN ? TT_ECLOSED : TT_ETLS;
    goto fail;
  }
  tt_frame_reader_shrink(&c->rd);
  return;
fail:
  conn_fail(c, rc);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  static char rbuf[65536]; /* copied into rbio before read_cb returns */
  buf->base = rbuf;
  buf->len = sizeof(rbuf);
}

static void read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
  lg_conn_t *c = st->data;
  if (nread == 0 || c->state == LG_CLOSING) return;
  if (nread < 0) {
    conn_fail(c, (int)nread);
    return;
  }
  if (BIO_write(c->rbio, buf->base, (int)nread) != (int)nread) {
    conn_fail(c, TT_ENOMEM);
    return;
  }
  conn_pump(c);
}

static void conn_timer_cb(uv_timer_t *t) {
  lg_conn_t *c = t->data;
  if (g.stopping) return;
  if (c->state == LG_WAIT) queue_push(c);
  else if (c->state >= LG_CONNECTING && c->state <= LG_HELLO) conn_fail(c, TT_ETIMEOUT);
}

static void conn_close_cb(uv_handle_t *h) {
  lg_conn_t *c = h->data;
  SSL_free(c->ssl); /* frees both BIOs */
  c->ssl = NULL;
  c->rbio = c->wbio = NULL;
  tt_frame_reader_free(&c->rd);
  c->state = LG_WAIT;
  if (g.stopping || c->left) return;
  uint32_t d = c->retry_after_ms ? tt_backoff_next_after(&c->bo, c->retry_after_ms)
                                 : tt_backoff_next(&c->bo);
  c->retry_after_ms = 0;
  uv_timer_start(&c->timer, conn_timer_cb, d, 0);
}

/* Every way a connection ends, before or after Welcome; the retry follows its close. */
static void conn_fail(lg_conn_t *c, int reason) {
  if (c->state < LG_CONNECTING || c->state == LG_CLOSING) return;
  if (c->state == LG_READY) {
    g.connected--;
    if (!g.stopping && !c->left) g.dropped++;
    if (g.all_connected && !g.stopping && !c->left) {
      g.all_connected = false;
      g.epoch_ns = uv_hrtime();
      g.welcomes_at_epoch = g.welcomes;
      printf("event=first-drop t=%.3f wall=%.3f reason=%s\n", secs_since(g.start_ns), wall_now(),
             tt_errname(reason));
    }
  } else {
    g.inflight--;
    g.failed++;
  }
  g.last_err = reason;
  /* OpenSSL marks a session not resumable when its SSL is freed without close_notify sent;
   * a dropped connection (the broker crashed) should still resume, as tt_tls's does (it
   * sends close_notify on EOF). Not after a TLS failure. */
  if ((c->state == LG_HELLO || c->state == LG_READY) && reason != TT_ETLS && reason != TT_ECERT)
    SSL_set_shutdown(c->ssl, SSL_get_shutdown(c->ssl) | SSL_SENT_SHUTDOWN);
  inv_free(c); /* pushed again after the next Welcome */
  uv_timer_stop(&c->timer);
  c->state = LG_CLOSING;
  uv_close((uv_handle_t *)&c->tcp, conn_close_cb);
}

static void connect_cb(uv_connect_t *req, int status) {
  lg_conn_t *c = req->data;
  if (c->state != LG_CONNECTING) return; /* closed meanwhile (UV_ECANCELED) */
  if (status < 0) {
    conn_fail(c, status);
    return;
  }
  (void)uv_tcp_nodelay(&c->tcp, 1);
  int rc = uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb);
  if (rc) {
    conn_fail(c, rc);
    return;
  }
  c->state = LG_TLS;
  conn_pump(c); /* ClientHello */
}

/* Our certificate on this SSL only; the key is shared (see identities_load). */
static int conn_ssl(lg_conn_t *c) {
  int rc = TT_ETLS;
  ERR_clear_error();
  if (!c->cert) {
    const unsigned char *p = g.der + g.der_off[c->idx];
    c->cert = d2i_X509(NULL, &p, (long)(g.der_off[c->idx + 1] - g.der_off[c->idx]));
  }
  c->ssl = SSL_new(g.ctx);
  BIO *rb = BIO_new(BIO_s_mem()), *wb = BIO_new(BIO_s_mem());
  if (!c->cert || !c->ssl || !rb || !wb || SSL_use_certificate(c->ssl, c->cert) != 1 ||
      SSL_use_PrivateKey(c->ssl, g.key) != 1 ||
      (c->session && SSL_set_session(c->ssl, c->session) != 1)) {
    BIO_free(rb);
    BIO_free(wb);
    goto out;
  }
  SSL_set_app_data(c->ssl, c);
  BIO_set_mem_eof_return(rb, -1);
  BIO_set_mem_eof_return(wb, -1);
  SSL_set_bio(c->ssl, rb, wb);
  c->rbio = rb;
  c->wbio = wb;
  SSL_set_connect_state(c->ssl);
  rc = 0;
out:
  ERR_clear_error();
  return rc; /* on failure c->ssl is freed in conn_close_cb */
}

static void conn_start(lg_conn_t *c) {
  int family = g.broker.ss_family, rc;
  g.attempts++;
  g.inflight++;
  tt_frame_reader_init(&c->rd, TT_FRAME_MAX_BODY_PREAUTH);
  /* The socket exists at once (init_ex), so it can be told to pick its port at connect
   * time: a source address then serves 64k connections per broker port, not 64k total. */
  rc = uv_tcp_init_ex(g.loop, &c->tcp, (unsigned int)family);
  if (rc) {
    g.inflight--;
    g.failed++;
    g.last_err = rc;
    tt_frame_reader_free(&c->rd);
    c->state = LG_WAIT;
    uv_timer_start(&c->timer, conn_timer_cb, tt_backoff_next(&c->bo), 0);
    return;
  }
  c->tcp.data = c;
  c->state = LG_CONNECTING;
  if (g.nsources) {
    uv_os_fd_t fd;
    int one = 1;
    if (uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0)
      (void)setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
    rc = uv_tcp_bind(&c->tcp, (const struct sockaddr *)&g.sources[c->idx % g.nsources], 0);
  }
  if (!rc) rc = conn_ssl(c);
  c->creq.data = c;
  if (!rc) rc = uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)&g.broker, connect_cb);
  if (rc) {
    conn_fail(c, rc);
    return;
  }
  uv_timer_start(&c->timer, conn_timer_cb, g.handshake_ms, 0);
}

/* ---- the fleet --------------------------------------------------------------------- */

/* Admits queued connections at --rate, never more than --inflight at once. */
static void tick_cb(uv_timer_t *t) {
  uint64_t now = uv_hrtime();
  if (g.rate > 0) {
    g.tokens += g.rate * (double)(now - g.last_tick_ns) / 1e9;
    double burst = g.rate / 10.0 + 1.0;
    if (g.tokens > burst) g.tokens = burst;
  }
  g.last_tick_ns = now;
  while (g.qhead && g.inflight < g.inflight_max && (g.rate <= 0 || g.tokens >= 1.0) &&
         (!g.inv_leave || g.inflight + g.connected < LG_LEAVE_HELD * g.inv_window)) {
    if (g.rate > 0) g.tokens -= 1.0;
    conn_start(queue_pop());
  }
  if (g.inv_packages) inv_pump();
}

static void stats_line(void) {
  uint64_t now = uv_hrtime();
  double dt = (double)(now - g.last_stats_ns) / 1e9;
  uint32_t waiting = g.count - g.connected - g.inflight;
  printf("t=%.1f connected=%u handshaking=%u waiting=%u failed=%llu dropped=%llu "
         "reconnects=%llu resumed=%llu errors=%llu hs_per_s=%.0f last_err=%s\n",
         secs_since(g.start_ns), g.connected, g.inflight, waiting, (unsigned long long)g.failed,
         (unsigned long long)g.dropped, (unsigned long long)g.reconnects,
         (unsigned long long)g.resumed, (unsigned long long)g.errors, dt > 0 ? (double)(g.welcomes - g.welcomes_at_stats) / dt : 0.0,
         g.last_err ? tt_errname(g.last_err) : "-");
  if (g.inv_packages)
    printf("t=%.1f inventory stored=%u pushing=%u failed=%u busy_retries=%llu\n", secs_since(g.start_ns), g.inv_done,
           g.inv_active, g.inv_failed, (unsigned long long)g.inv_busy);
  g.last_stats_ns = now;
  g.welcomes_at_stats = g.welcomes;
}

static void stats_cb(uv_timer_t *t) { stats_line(); }

/* Closes everything at once: close_notify where we can send it without waiting, then the
 * sockets; libuv cancels what is still queued. Bounded by LG_STOP_GRACE_S. */
static void lg_stop(void) {
  if (g.stopping) return;
  stats_line();
  g.stopping = true;
  alarm(LG_STOP_GRACE_S);
  uv_close((uv_handle_t *)&g.tick, NULL);
  uv_close((uv_handle_t *)&g.stats, NULL);
  uv_close((uv_handle_t *)&g.stop_timer, NULL);
  uv_close((uv_handle_t *)&g.sigint, NULL);
  uv_close((uv_handle_t *)&g.sigterm, NULL);
  for (uint32_t i = 0; i < g.count; i++) {
    lg_conn_t *c = &g.conns[i];
    if (c->state == LG_READY) {
      uint8_t out[256];
      (void)SSL_shutdown(c->ssl);
      int n = BIO_read(c->wbio, out, sizeof(out));
      uv_buf_t b = uv_buf_init((char *)out, n > 0 ? (unsigned int)n : 0u);
      if (n > 0) (void)uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    }
    if (c->state >= LG_CONNECTING && c->state <= LG_READY) conn_fail(c, TT_ECLOSED);
    uv_close((uv_handle_t *)&c->timer, NULL);
  }
  ERR_clear_error();
}

static void stop_cb(uv_timer_t *t) { lg_stop(); }
static void signal_cb(uv_signal_t *s, int signum) { lg_stop(); }

/* ---- setup ------------------------------------------------------------------------- */

/* Enough descriptors for count sockets: the soft limit to the hard one, and as root the
 * hard one up first (which needs CAP_SYS_RESOURCE and stops at fs.nr_open). */
static int raise_nofile(uint32_t need) {
  struct rlimit rl;
  unsigned long nr_open = 0;
  FILE *f = fopen("/proc/sys/fs/nr_open", "r");
  if (f) {
    if (fscanf(f, "%lu", &nr_open) != 1) nr_open = 0;
    fclose(f);
  }
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return -errno;
  if (geteuid() == 0 && rl.rlim_max < LG_NOFILE_WANT) {
    rlim_t want = LG_NOFILE_WANT;
    if (nr_open && want > nr_open) want = nr_open;
    struct rlimit up = {want, want};
    if (setrlimit(RLIMIT_NOFILE, &up) == 0) rl = up;
    else if (rl.rlim_max < need)
      fprintf(stderr, "tether-loadgen: cannot raise the hard RLIMIT_NOFILE to %lu: %s%s\n",
              (unsigned long)want, strerror(errno),
              errno == EPERM ? " (no CAP_SYS_RESOURCE here)" : "");
  }
  if (rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0) return -errno;
  }
  if (nr_open && nr_open < need)
    fprintf(stderr, "tether-loadgen: fs.nr_open is %lu, below the %u descriptors needed "
            "(sysctl -w fs.nr_open=%u)\n", nr_open, need, need);
  if (rl.rlim_cur < need) {
    fprintf(stderr, "tether-loadgen: RLIMIT_NOFILE is %lu, %u needed for --count %u\n",
            (unsigned long)rl.rlim_cur, need, need - LG_FD_SPARE);
    return TT_ECONFIG;
  }
  return 0;
}

static int parse_sources(const char *s) {
  char a[64], b[64];
  struct in_addr lo, hi;
  const char *dash = strchr(s, '-');
  if (strcmp(s, "none") == 0) return 0;
  if (dash) {
    if ((size_t)(dash - s) >= sizeof(a) || strlen(dash + 1) >= sizeof(b)) return TT_EINVAL;
    memcpy(a, s, (size_t)(dash - s));
    a[dash - s] = '\0';
    snprintf(b, sizeof(b), "%s", dash + 1);
  } else {
    snprintf(a, sizeof(a), "%s", s);
    snprintf(b, sizeof(b), "%s", s);
  }
  if (inet_pton(AF_INET, a, &lo) != 1 || inet_pton(AF_INET, b, &hi) != 1) return TT_EINVAL;
  uint32_t l = ntohl(lo.s_addr), h = ntohl(hi.s_addr);
  if (h < l || h - l >= 65536u) return TT_EINVAL;
  g.nsources = h - l + 1;
  g.sources = calloc(g.nsources, sizeof(*g.sources));
  if (!g.sources) return TT_ENOMEM;
  for (uint32_t i = 0; i < g.nsources; i++) {
    g.sources[i].sin_family = AF_INET;
    g.sources[i].sin_addr.s_addr = htonl(l + i);
  }
  return 0;
}

static void usage(FILE *f) {
  fprintf(f,
          "usage: tether-loadgen --broker HOST:PORT --ca-dir DIR --count N [options]\n\n"
          "Connects N agents (certificates load-000001.. issued from DIR's CA, cached in\n"
          "DIR/load/) and keeps them connected: Pong for Ping, reconnect with backoff.\n\n"
          "  --sources A-B         bind to source addresses A..B in turn (IPv4; default\n"
          "                        127.0.0.1-127.0.0.8 for a loopback broker, 'none' = don't)\n"
          "  --rate R              new connections per second (default 0 = unlimited)\n"
          "  --inflight M          connects and handshakes at once (default %u)\n"
          "  --duration S          run this long, then close everything (default 60, 0 = until\n"
          "                        SIGINT/SIGTERM)\n"
          "  --stats-interval S    one status line every S seconds (default 5)\n"
          "  --handshake-timeout S connect + TLS + Welcome deadline (default %u)\n"
          "  --no-resume           never offer a session ticket (default: offer the newest\n"
          "                        ticket the broker sent, as tether-agent does)\n"
          "  --inventory P         after its first Welcome each agent pushes a deb_packages\n"
          "                        table of P packages (tests/bench/tools/invtable.h), as a\n"
          "                        first inventory; 'event=inventory-all ..' when all are stored\n"
          "  --inventory-window W  agents pushing at once (default %u)\n"
          "  --inventory-leave     each agent closes for good once its inventory is stored, and\n"
          "                        at most 4 x W are connected at once: a fleet larger than the\n"
          "                        open-file limit; loadgen ends when all have left\n"
          "  --check-fail C[:DIM]  after each Welcome each agent reports health check C failing\n"
          "                        (on dimension DIM, e.g. disk_used:/var): a fleet-wide alert\n\n"
          "Output: status lines 't=.. connected=.. handshaking=.. waiting=.. failed=..\n"
          "dropped=.. reconnects=.. errors=.. hs_per_s=..', and 'event=all-connected ..\n"
          "took=..' each time all N are connected (first: since start; later: since the\n"
          "first drop, 'event=first-drop').\n",
          LG_INFLIGHT_DEFAULT, LG_HANDSHAKE_MS / 1000u, LG_INV_WINDOW_DEFAULT);
}

static double parse_num(const char *opt, const char *s, double lo, double hi) {
  char *end = NULL;
  errno = 0;
  double v = strtod(s, &end);
  if (errno || end == s || *end || !(v >= lo && v <= hi)) {
    fprintf(stderr, "tether-loadgen: --%s: '%s' is not a number in [%g, %g]\n", opt, s, lo, hi);
    exit(2);
  }
  return v;
}

int main(int argc, char **argv) {
  static const struct option opts[] = {
      {"broker", required_argument, NULL, 'b'},   {"ca-dir", required_argument, NULL, 'c'},
      {"count", required_argument, NULL, 'n'},    {"sources", required_argument, NULL, 's'},
      {"rate", required_argument, NULL, 'r'},     {"inflight", required_argument, NULL, 'i'},
      {"duration", required_argument, NULL, 'd'}, {"stats-interval", required_argument, NULL, 'S'},
      {"handshake-timeout", required_argument, NULL, 'H'}, {"no-resume", no_argument, NULL, 'R'},
      {"inventory", required_argument, NULL, 'I'}, {"inventory-window", required_argument, NULL, 'W'},
      {"inventory-leave", no_argument, NULL, 'L'}, {"check-fail", required_argument, NULL, 'C'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0},
  };
  const char *broker = NULL, *sources = NULL;
  int o, rc;
  g.inflight_max = LG_INFLIGHT_DEFAULT;
  g.duration_s = 60;
  g.resume = true;
  g.stats_s = 5;
  g.handshake_ms = LG_HANDSHAKE_MS;
  g.inv_window = LG_INV_WINDOW_DEFAULT;
  while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    switch (o) {
    case 'b': broker = optarg; break;
    case 'c': g.ca_dir = optarg; break;
    case 'n': g.count = (uint32_t)parse_num("count", optarg, 1, LG_COUNT_MAX); break;
    case 's': sources = optarg; break;
    case 'r': g.rate = parse_num("rate", optarg, 0, 1e7); break;
    case 'i': g.inflight_max = (uint32_t)parse_num("inflight", optarg, 1, 1e6); break;
    case 'd': g.duration_s = parse_num("duration", optarg, 0, 1e6); break;
    case 'S': g.stats_s = parse_num("stats-interval", optarg, 0.1, 3600); break;
    case 'H': g.handshake_ms = (uint32_t)(parse_num("handshake-timeout", optarg, 0.1, 600) * 1000); break;
    case 'R': g.resume = false; break;
    case 'I': g.inv_packages = (uint32_t)parse_num("inventory", optarg, 1, 20000); break;
    case 'L': g.inv_leave = true; break;
    case 'C': {
      const char *colon = strchr(optarg, ':');
      size_t n = colon ? (size_t)(colon - optarg) : strlen(optarg);
      if (n == 0 || n >= sizeof(g.check_fail) || (colon && strlen(colon + 1) >= sizeof(g.check_dim))) {
        fprintf(stderr, "tether-loadgen: --check-fail: CHECK[:DIMENSION]\n");
        return 2;
      }
      memcpy(g.check_fail, optarg, n);
      g.check_fail[n] = '\0';
      snprintf(g.check_dim, sizeof(g.check_dim), "%s", colon ? colon + 1 : "");
      break;
    }
    case 'W': g.inv_window = (uint32_t)parse_num("inventory-window", optarg, 1, 4096); break;
    case 'h': usage(stdout); return 0;
    default: usage(stderr); return 2;
    }
  }
  if (!broker || !g.ca_dir || !g.count || optind < argc || (g.inv_leave && !g.inv_packages)) {
    usage(stderr);
    return 2;
  }
  setvbuf(stdout, NULL, _IOLBF, 0);
  signal(SIGPIPE, SIG_IGN);
  if ((rc = tt_addr_resolve(broker, &g.broker, g.broker_host, sizeof(g.broker_host))) != 0) {
    fprintf(stderr, "tether-loadgen: --broker '%s': %s\n", broker, tt_strerror(rc));
    return 2;
  }
  bool loopback = g.broker.ss_family == AF_INET &&
                  (ntohl(((struct sockaddr_in *)&g.broker)->sin_addr.s_addr) >> 24) == 127;
  if (!sources) sources = loopback ? "127.0.0.1-127.0.0.8" : "none";
  if (parse_sources(sources) != 0 || (g.nsources && g.broker.ss_family != AF_INET)) {
    fprintf(stderr, "tether-loadgen: --sources '%s': want A.B.C.D[-A.B.C.D] (IPv4 broker) or none\n", sources);
    return 2;
  }
  if (raise_nofile((g.inv_leave && g.count > LG_LEAVE_HELD * g.inv_window ? LG_LEAVE_HELD * g.inv_window : g.count) +
                   LG_FD_SPARE) != 0)
    return 1;
  if (identities_load() != 0 || ctx_make() != 0) return 1;

  if (g.inv_packages && !(g.inv_variant = malloc(g.inv_packages))) return 1;
  g.loop = uv_default_loop();
  g.conns = calloc(g.count, sizeof(*g.conns));
  if (!g.conns) {
    fprintf(stderr, "tether-loadgen: out of memory for %u connections\n", g.count);
    return 1;
  }
  for (uint32_t i = 0; i < g.count; i++) {
    lg_conn_t *c = &g.conns[i];
    c->idx = i;
    (void)uv_timer_init(g.loop, &c->timer);
    c->timer.data = c;
    tt_backoff_init(&c->bo, LG_BACKOFF_BASE_MS, LG_BACKOFF_CAP_MS, (uint64_t)i + 1);
    queue_push(c);
  }
  printf("loadgen: broker=%s count=%u sources=%u (%s) rate=%s inflight=%u duration=%gs\n",
         broker, g.count, g.nsources, sources, g.rate > 0 ? "limited" : "unlimited",
         g.inflight_max, g.duration_s);
  g.start_ns = g.epoch_ns = g.last_tick_ns = g.last_stats_ns = uv_hrtime();
  (void)uv_timer_init(g.loop, &g.tick);
  (void)uv_timer_init(g.loop, &g.stats);
  (void)uv_timer_init(g.loop, &g.stop_timer);
  uv_timer_start(&g.tick, tick_cb, 0, LG_TICK_MS);
  uint64_t st = (uint64_t)(g.stats_s * 1000.0);
  uv_timer_start(&g.stats, stats_cb, st, st);
  if (g.duration_s > 0) uv_timer_start(&g.stop_timer, stop_cb, (uint64_t)(g.duration_s * 1000.0), 0);
  uv_signal_init(g.loop, &g.sigint);
  uv_signal_init(g.loop, &g.sigterm);
  uv_signal_start(&g.sigint, signal_cb, SIGINT);
  uv_signal_start(&g.sigterm, signal_cb, SIGTERM);

  uv_run(g.loop, UV_RUN_DEFAULT);
  rc = uv_loop_close(g.loop);
  printf("loadgen: done attempts=%llu welcomes=%llu tickets=%llu resumed=%llu failed=%llu dropped=%llu "
         "errors=%llu loop_close=%s\n",
         (unsigned long long)g.attempts, (unsigned long long)g.welcomes, (unsigned long long)g.tickets,
         (unsigned long long)g.resumed, (unsigned long long)g.failed,
         (unsigned long long)g.dropped, (unsigned long long)g.errors, rc ? uv_err_name(rc) : "ok");
  for (uint32_t i = 0; i < g.count; i++) {
    X509_free(g.conns[i].cert);
    SSL_SESSION_free(g.conns[i].session);
  }
  for (uint32_t i = 0; i < g.count; i++) {
    free(g.conns[i].inv ? g.conns[i].inv->z : NULL);
    free(g.conns[i].inv);
  }
  free(g.inv_buf.p);
  free(g.inv_variant);
  free(g.conns);
  free(g.sources);
  free(g.der);
  free(g.der_off);
  SSL_CTX_free(g.ctx);
  EVP_PKEY_free(g.key);
  return rc ? 1 : 0;
}
