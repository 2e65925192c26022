/* tt_tls: a real client and server on 127.0.0.1 with certificates made by the openssl CLI
 * at test time: echo, refused certificates, ALPN, timeouts, write cap, hostile bytes,
 * closing from inside callbacks, enrollment with a CA pin, session resumption. Every test is bounded by a watchdog and ends with an
 * empty loop. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/x509.h>

#include "tt/cert.h"
#include "tt/pki.h"
#include "tt/tls.h"

#define WATCHDOG_MS 10000
#define ECHO_LEN (1024u * 1024u)

/* ---- certificates ---------------------------------------------------------------- */

static char g_dir[512];

static void path_of(char *dst, size_t cap, const char *name) {
  snprintf(dst, cap, "%s/%s", g_dir, name);
}

#define P(name) path_buf(name)
static const char *path_buf(const char *name) {
  static char bufs[8][640];
  static unsigned i;
  char *b = bufs[i++ % 8];
  path_of(b, sizeof(bufs[0]), name);
  return b;
}

static const char cnf_text[] =
    "[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = unused\n"
    "[v3_ca]\nbasicConstraints = critical,CA:TRUE\nkeyUsage = critical,keyCertSign,cRLSign\n"
    "subjectKeyIdentifier = hash\n"
    "[v3_server]\nbasicConstraints = CA:FALSE\nkeyUsage = critical,digitalSignature\n"
    "extendedKeyUsage = serverAuth\nsubjectAltName = IP:127.0.0.1,DNS:localhost\n"
    "[v3_client]\nbasicConstraints = CA:FALSE\nkeyUsage = critical,digitalSignature\n"
    "extendedKeyUsage = clientAuth\n";

static int sh(const char *fmt, ...) TT_PRINTF(1, 2);
static int sh(const char *fmt, ...) {
  char cmd[4096];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(cmd, sizeof(cmd) - 32, fmt, ap);
  va_end(ap);
  if (n < 0 || (size_t)n >= sizeof(cmd) - 32) return -1;
  strcat(cmd, " >/dev/null 2>&1");
  int rc = system(cmd);
  if (rc != 0) fprintf(stderr, "failed (%d): %s\n", rc, cmd);
  return rc;
}

static int make_ca(const char *name, const char *subj) {
  return sh("cd '%s' && openssl ecparam -name prime256v1 -genkey -noout -out %s.key && "
            "openssl req -config cnf -new -x509 -key %s.key -subj '%s' -days 2 "
            "-extensions v3_ca -out %s.crt",
            g_dir, name, name, subj, name);
}

static int make_leaf(const char *name, const char *ca, const char *subj, const char *ext,
                     int serial) {
  return sh("cd '%s' && openssl ecparam -name prime256v1 -genkey -noout -out %s.key && "
            "openssl req -config cnf -new -key %s.key -subj '%s' -out %s.csr && "
            "openssl x509 -req -in %s.csr -CA %s.crt -CAkey %s.key -set_serial %d -days 2 "
            "-extfile cnf -extensions %s -out %s.crt",
            g_dir, name, name, subj, name, name, ca, ca, serial, ext, name);
}

static int rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  return remove(path);
}

static int group_setup(void **state) {
  const char *base = getenv("TT_TEST_TMP");
  if (!base || !*base) base = "/tmp";
  snprintf(g_dir, sizeof(g_dir), "%s/test_tls.XXXXXX", base);
  if (!mkdtemp(g_dir)) return -1;
  FILE *f = fopen(P("cnf"), "w");
  if (!f) return -1;
  fputs(cnf_text, f);
  fclose(f);
  if (make_ca("ca", "/O=Tether/CN=Tether Test CA") ||
      make_leaf("srv", "ca", "/O=Tether/OU=broker/CN=broker", "v3_server", 2) ||
      make_leaf("cli", "ca", "/O=Tether/OU=agent/CN=dev-1", "v3_client", 3) ||
      make_ca("ca2", "/O=Other/CN=Unrelated CA") ||
      make_leaf("evil", "ca2", "/O=Tether/OU=agent/CN=dev-1", "v3_client", 4) ||
      make_leaf("evilsrv", "ca2", "/O=Tether/OU=broker/CN=broker", "v3_server", 5) ||
      /* The broker's chain: its certificate, then the CA (what tether-certs init writes),
       * and a foreign server certificate followed by our CA. */
      sh("cd '%s' && cat srv.crt ca.crt > srvchain.crt && (cat evilsrv.crt ca.crt > evilchain.crt)",
         g_dir))
    return -1;
  return 0;
}

static int group_teardown(void **state) {
  if (g_dir[0]) nftw(g_dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
  return 0;
}

static tt_tls_ctx_t *mkctx(bool server, const char *ca, const char *cert, const char *key) {
  tt_tls_ctx_opts_t o = {.server = server, .ca_file = ca, .cert_file = cert, .key_file = key};
  char err[256];
  tt_tls_ctx_t *c = NULL;
  int rc = tt_tls_ctx_new(&c, &o, err, sizeof(err));
  if (rc) print_message("ctx: %s\n", err);
  assert_int_equal(rc, 0);
  assert_non_null(c);
  return c;
}

/* ---- fixture --------------------------------------------------------------------- */

typedef enum {
  S_ECHO,
  S_BADCA,
  S_NOCERT,
  S_HS_TIMEOUT,
  S_IDLE,
  S_WRITECAP,
  S_GARBAGE,
  S_CLOSE_IN_READ,
  S_NOALPN,
  S_BADALPN,
  S_BADNAME,
  S_REFUSED,
  S_ADMIT,
} scenario_t;

typedef struct {
  scenario_t sc;
  uv_loop_t loop;
  uv_tcp_t listener;
  uv_timer_t watchdog;
  uv_timer_t aux;
  bool aux_used;
  int alive; /* parties whose close we still wait for */
  bool timed_out;
  struct sockaddr_in addr;
  char port_str[16];
  tt_tls_ctx_t *sctx, *cctx;
  tt_tls_limits_t slim, clim;
  const char *server_name;
  uint8_t *payload;

  tt_tls_t *srv;
  int srv_hs, srv_closes, srv_reason, srv_reads, srv_drains;
  size_t srv_rx, srv_queued_at_close;
  uint64_t srv_t_accept, srv_t_hs, srv_t_read, srv_t_close;
  char srv_peer_cn[64];
  bool srv_paused;
  bool srv_heard; /* tt_tls_heard at close */
  int admit_calls, admit_family;

  tt_tls_t *cli;
  int cli_hs, cli_closes, cli_reason;
  size_t cli_rx, cli_queued_at_close, cli_queued_at_end;
  char cli_peer_cn[64];
  char cli_peer_addr[64];
  bool in_connect, cli_closed_too_early;

  uv_tcp_t raw;
  uv_connect_t raw_conn;
  uv_write_t raw_wr;
  const char *raw_send;
  int raw_err;
} fx_t;

static uint8_t pat(size_t i) { return (uint8_t)(i * 131u + (i >> 11)); }

static void peer_cn(tt_tls_t *s, char *out, size_t n) {
  X509 *x = tt_tls_peer_cert(s);
  out[0] = '\0';
  if (x) X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, out, (int)n);
}

static void fx_done(fx_t *fx) {
  if (--fx->alive > 0) return;
  uv_close((uv_handle_t *)&fx->watchdog, NULL);
  if (fx->aux_used) uv_close((uv_handle_t *)&fx->aux, NULL);
}

static void watchdog_cb(uv_timer_t *t) {
  fx_t *fx = t->data;
  fx->timed_out = true;
  uv_stop(&fx->loop);
}

/* server side */

static void resume_cb(uv_timer_t *t) {
  fx_t *fx = t->data;
  if (fx->srv && !tt_tls_closing(fx->srv)) tt_tls_read_start(fx->srv);
}

static void srv_on_handshake(tt_tls_t *s) {
  fx_t *fx = tt_tls_data(s);
  fx->srv_hs++;
  fx->srv_t_hs = uv_now(&fx->loop);
  peer_cn(s, fx->srv_peer_cn, sizeof(fx->srv_peer_cn));
  if (fx->sc == S_WRITECAP) {
    static uint8_t big[60 * 1024];
    assert_true(tt_tls_writable(s));
    assert_int_equal(tt_tls_write(s, big, 40 * 1024), 0);
    size_t q = tt_tls_queued(s);
    assert_true(q >= 40 * 1024);
    assert_false(tt_tls_writable(s));
    assert_int_equal(tt_tls_write(s, big, sizeof(big)), TT_EFULL);
    assert_int_equal(tt_tls_queued(s), q); /* nothing queued */
  }
}

static void srv_on_read(tt_tls_t *s, const uint8_t *data, size_t len) {
  fx_t *fx = tt_tls_data(s);
  fx->srv_reads++;
  if (fx->sc == S_ECHO) {
    for (size_t i = 0; i < len; i++)
      if (data[i] != pat(fx->srv_rx + i)) fail_msg("server: byte %zu differs", fx->srv_rx + i);
    fx->srv_rx += len;
    assert_int_equal(tt_tls_write(s, data, len), 0);
    /* Pause once mid-stream: the rest of this read batch must wait in OpenSSL and come
     * out after read_start, in order. */
    if (!fx->srv_paused && fx->srv_rx >= 256 * 1024) {
      fx->srv_paused = true;
      tt_tls_read_stop(s);
      tt_tls_read_start(s); /* a no-op pair inside on_read must be harmless */
      tt_tls_read_stop(s);
      fx->aux_used = true;
      uv_timer_init(&fx->loop, &fx->aux);
      fx->aux.data = fx;
      uv_timer_start(&fx->aux, resume_cb, 30, 0);
    }
    return;
  }
  fx->srv_rx += len;
  fx->srv_t_read = uv_now(&fx->loop);
  if (fx->sc == S_CLOSE_IN_READ) {
    tt_tls_close(s, 0);
    tt_tls_close(s, TT_EPROTO); /* idempotent: the first reason stays */
    assert_true(tt_tls_closing(s));
    assert_false(tt_tls_writable(s));
    assert_int_equal(tt_tls_write(s, "x", 1), TT_ECLOSED);
    tt_tls_read_start(s);
    tt_tls_read_stop(s);
  }
}

static void srv_on_drain(tt_tls_t *s) {
  fx_t *fx = tt_tls_data(s);
  fx->srv_drains++;
  if (fx->sc == S_WRITECAP) {
    assert_true(tt_tls_queued(s) <= fx->slim.low_water);
    assert_true(tt_tls_writable(s));
    tt_tls_close(s, 0);
  }
}

static void srv_on_close(tt_tls_t *s, int reason) {
  fx_t *fx = tt_tls_data(s);
  fx->srv_closes++;
  fx->srv_reason = reason;
  fx->srv_queued_at_close = tt_tls_queued(s);
  fx->srv_t_close = uv_now(&fx->loop);
  fx->srv_heard = tt_tls_heard(s);
  tt_tls_close(s, TT_EPROTO); /* harmless from inside on_close */
  assert_int_equal(tt_tls_write(s, "x", 1), TT_ECLOSED);
  fx->srv = NULL;
  fx_done(fx);
}

static const tt_tls_cbs_t srv_cbs = {.on_handshake = srv_on_handshake, .on_read = srv_on_read, .on_drain = srv_on_drain, .on_close = srv_on_close};

static void on_connection(uv_stream_t *server, int status) {
  fx_t *fx = server->data;
  assert_int_equal(status, 0);
  fx->srv_t_accept = uv_now(&fx->loop);
  assert_int_equal(tt_tls_accept(fx->sctx, server, &fx->slim, &srv_cbs, fx, &fx->srv), 0);
  assert_non_null(fx->srv);
  assert_null(tt_tls_peer_cert(fx->srv));
  assert_int_equal(strncmp(tt_tls_peer_addr(fx->srv), "127.0.0.1:", 10), 0);
  assert_ptr_equal(tt_tls_loop(fx->srv), &fx->loop);
  assert_int_equal(tt_tls_write(fx->srv, "x", 1), TT_ESTATE);
  uv_close((uv_handle_t *)server, NULL); /* one connection per test */
}

/* client side */

static void ping_cb(uv_timer_t *t) {
  fx_t *fx = t->data;
  if (fx->cli) assert_int_equal(tt_tls_write(fx->cli, "ping", 4), 0);
}

static void cli_on_handshake(tt_tls_t *s) {
  fx_t *fx = tt_tls_data(s);
  fx->cli_hs++;
  peer_cn(s, fx->cli_peer_cn, sizeof(fx->cli_peer_cn));
  snprintf(fx->cli_peer_addr, sizeof(fx->cli_peer_addr), "%s", tt_tls_peer_addr(s));
  switch (fx->sc) {
  case S_ECHO:
    assert_int_equal(tt_tls_write(s, fx->payload, ECHO_LEN), 0);
    break;
  case S_IDLE:
    fx->aux_used = true;
    uv_timer_init(&fx->loop, &fx->aux);
    fx->aux.data = fx;
    uv_timer_start(&fx->aux, ping_cb, 120, 0);
    break;
  case S_CLOSE_IN_READ: {
    uint8_t chunk[1000];
    memset(chunk, 'a', sizeof(chunk));
    for (int i = 0; i < 10; i++) assert_int_equal(tt_tls_write(s, chunk, sizeof(chunk)), 0);
    break;
  }
  default:
    break;
  }
}

static void cli_on_read(tt_tls_t *s, const uint8_t *data, size_t len) {
  fx_t *fx = tt_tls_data(s);
  if (fx->sc == S_ECHO) {
    for (size_t i = 0; i < len; i++)
      if (data[i] != pat(fx->cli_rx + i)) fail_msg("client: byte %zu differs", fx->cli_rx + i);
  }
  fx->cli_rx += len;
  if (fx->sc == S_ECHO && fx->cli_rx == ECHO_LEN) {
    fx->cli_queued_at_end = tt_tls_queued(s);
    tt_tls_close(s, 0);
  }
}

static void cli_on_close(tt_tls_t *s, int reason) {
  fx_t *fx = tt_tls_data(s);
  if (fx->in_connect) fx->cli_closed_too_early = true;
  fx->cli_closes++;
  fx->cli_reason = reason;
  fx->cli_queued_at_close = tt_tls_queued(s);
  fx->cli = NULL;
  fx_done(fx);
}

static const tt_tls_cbs_t cli_cbs = {.on_handshake = cli_on_handshake, .on_read = cli_on_read, .on_close = cli_on_close};

/* a raw TCP client for the tests that are not TLS at all */

static void raw_alloc(uv_handle_t *h, size_t sz, uv_buf_t *b) {
  static char buf[4096];
  b->base = buf;
  b->len = sizeof(buf);
}

static void raw_close_cb(uv_handle_t *h) { fx_done(h->data); }

static void raw_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b) {
  if (n >= 0) return;
  ((fx_t *)st->data)->raw_err = (int)n;
  uv_close((uv_handle_t *)st, raw_close_cb);
}

static void raw_connect_cb(uv_connect_t *req, int status) {
  fx_t *fx = req->data;
  if (status == UV_ECONNRESET && fx->sc == S_ADMIT) { /* the reset may come before we look */
    fx->raw_err = status;
    uv_close((uv_handle_t *)&fx->raw, raw_close_cb);
    return;
  }
  assert_int_equal(status, 0);
  assert_int_equal(uv_read_start((uv_stream_t *)&fx->raw, raw_alloc, raw_read), 0);
  if (fx->raw_send) {
    uv_buf_t b = uv_buf_init((char *)fx->raw_send, (unsigned)strlen(fx->raw_send));
    assert_int_equal(uv_write(&fx->raw_wr, (uv_stream_t *)&fx->raw, &b, 1, NULL), 0);
  }
}

static void fx_init(fx_t *fx, scenario_t sc) {
  memset(fx, 0, sizeof(*fx));
  fx->sc = sc;
  assert_int_equal(uv_loop_init(&fx->loop), 0);
  fx->loop.data = fx;
  uv_timer_init(&fx->loop, &fx->watchdog);
  fx->watchdog.data = fx;
  uv_timer_start(&fx->watchdog, watchdog_cb, WATCHDOG_MS, 0);
  fx->slim = (tt_tls_limits_t){.handshake_ms = 5000, .high_water = 256 * 1024,
                               .low_water = 64 * 1024, .write_cap = 4 * 1024 * 1024};
  fx->clim = fx->slim;
  fx->server_name = "127.0.0.1";
  fx->sctx = mkctx(true, P("ca.crt"), P("srv.crt"), P("srv.key"));

  assert_int_equal(uv_tcp_init(&fx->loop, &fx->listener), 0);
  fx->listener.data = fx;
  struct sockaddr_in a;
  assert_int_equal(uv_ip4_addr("127.0.0.1", 0, &a), 0);
  assert_int_equal(uv_tcp_bind(&fx->listener, (struct sockaddr *)&a, 0), 0);
  int len = (int)sizeof(fx->addr);
  assert_int_equal(uv_tcp_getsockname(&fx->listener, (struct sockaddr *)&fx->addr, &len), 0);
  snprintf(fx->port_str, sizeof(fx->port_str), "%u", (unsigned)ntohs(fx->addr.sin_port));
}

static void fx_listen(fx_t *fx) {
  assert_int_equal(uv_listen((uv_stream_t *)&fx->listener, 16, on_connection), 0);
}

static void fx_client(fx_t *fx) {
  fx->in_connect = true;
  int rc = tt_tls_connect(fx->cctx, &fx->loop, (struct sockaddr *)&fx->addr, fx->server_name,
                          &fx->clim, &cli_cbs, fx, &fx->cli);
  fx->in_connect = false;
  assert_int_equal(rc, 0);
  assert_non_null(fx->cli);
  assert_int_equal(tt_tls_write(fx->cli, "x", 1), TT_ESTATE);
  assert_false(tt_tls_writable(fx->cli));
}

static void fx_raw_client(fx_t *fx, const char *send) {
  fx->raw_send = send;
  assert_int_equal(uv_tcp_init(&fx->loop, &fx->raw), 0);
  fx->raw.data = fx;
  fx->raw_conn.data = fx;
  assert_int_equal(uv_tcp_connect(&fx->raw_conn, &fx->raw, (struct sockaddr *)&fx->addr,
                                  raw_connect_cb), 0);
}

static void fx_run(fx_t *fx) {
  uv_run(&fx->loop, UV_RUN_DEFAULT);
  if (fx->timed_out) fail_msg("watchdog: test did not finish in %d ms", WATCHDOG_MS);
  assert_int_equal(fx->alive, 0);
  assert_int_equal(uv_loop_close(&fx->loop), 0); /* nothing left on the loop */
  tt_tls_ctx_free(fx->sctx);
  tt_tls_ctx_free(fx->cctx);
  free(fx->payload);
}

/* A TLS client against the fixture's server, with the given client credentials. */
static void fx_tls_pair(fx_t *fx, const char *ca, const char *cert, const char *key) {
  fx->cctx = mkctx(false, ca, cert, key);
  fx->alive = 2;
  fx_listen(fx);
  fx_client(fx);
}

/* A server that refuses every connection in on_accept, before any TLS state exists. */
static bool admit_no(tt_tls_t *s, const struct sockaddr *peer) {
  fx_t *fx = tt_tls_data(s);
  fx->admit_calls++;
  fx->admit_family = peer->sa_family;
  return false;
}

static const tt_tls_cbs_t refuse_cbs = {
    .on_handshake = srv_on_handshake, .on_read = srv_on_read, .on_close = srv_on_close, .on_accept = admit_no};

static void on_connection_refuse(uv_stream_t *server, int status) {
  fx_t *fx = server->data;
  tt_tls_t *s = NULL;
  assert_int_equal(status, 0);
  assert_int_equal(tt_tls_accept(fx->sctx, server, &fx->slim, &refuse_cbs, fx, &s), TT_EDENIED);
  assert_null(s);
  uv_close((uv_handle_t *)server, NULL);
}

/* ---- tests ----------------------------------------------------------------------- */

static void test_echo(void **state) {
  fx_t fx;
  fx_init(&fx, S_ECHO);
  fx.payload = malloc(ECHO_LEN);
  assert_non_null(fx.payload);
  for (size_t i = 0; i < ECHO_LEN; i++) fx.payload[i] = pat(i);
  fx_tls_pair(&fx, P("ca.crt"), P("cli.crt"), P("cli.key"));
  fx_run(&fx);

  assert_int_equal(fx.srv_hs, 1);
  assert_int_equal(fx.cli_hs, 1); /* both saw tether/1, or there is no on_handshake */
  assert_string_equal(fx.srv_peer_cn, "dev-1");
  assert_string_equal(fx.cli_peer_cn, "broker");
  char want[64];
  snprintf(want, sizeof(want), "127.0.0.1:%s", fx.port_str);
  assert_string_equal(fx.cli_peer_addr, want);
  assert_int_equal(fx.srv_rx, ECHO_LEN);
  assert_int_equal(fx.cli_rx, ECHO_LEN);
  assert_true(fx.srv_paused);
  assert_int_equal(fx.cli_queued_at_end, 0);
  assert_int_equal(fx.cli_queued_at_close, 0);
  assert_int_equal(fx.srv_queued_at_close, 0);
  assert_int_equal(fx.srv_closes, 1);
  assert_int_equal(fx.cli_closes, 1);
  assert_int_equal(fx.srv_reason, 0);
  assert_int_equal(fx.cli_reason, 0);
}

static void test_client_cert_other_ca(void **state) {
  fx_t fx;
  fx_init(&fx, S_BADCA);
  fx_tls_pair(&fx, P("ca.crt"), P("evil.crt"), P("evil.key"));
  fx_run(&fx);
  assert_int_equal(fx.srv_hs, 0);
  assert_int_equal(fx.srv_closes, 1);
  assert_int_equal(fx.srv_reason, TT_ECERT);
  assert_int_equal(fx.cli_closes, 1);
  assert_int_not_equal(fx.cli_reason, 0); /* TLS 1.3: the client hears on its first read */
  assert_int_equal(fx.cli_reason, TT_ECERT);
}

static void test_client_without_cert(void **state) {
  fx_t fx;
  fx_init(&fx, S_NOCERT);
  fx_tls_pair(&fx, P("ca.crt"), NULL, NULL);
  fx_run(&fx);
  assert_int_equal(fx.srv_hs, 0);
  assert_int_equal(fx.srv_closes, 1);
  assert_int_equal(fx.srv_reason, TT_ECERT);
  assert_int_equal(fx.cli_closes, 1);
  assert_int_equal(fx.cli_reason, TT_ECERT);
}

static void test_handshake_timeout(void **state) {
  fx_t fx;
  fx_init(&fx, S_HS_TIMEOUT);
  fx.slim.handshake_ms = 200;
  fx.alive = 2;
  fx_listen(&fx);
  fx_raw_client(&fx, NULL);
  fx_run(&fx);
  assert_int_equal(fx.srv_hs, 0);
  assert_int_equal(fx.srv_closes, 1);
  assert_int_equal(fx.srv_reason, TT_ETIMEOUT);
  assert_false(fx.srv_heard); /* the raw client never sent a byte */
  uint64_t took = fx.srv_t_close - fx.srv_t_accept;
  print_message("handshake timeout after %llu ms\n", (unsigned long long)took);
  assert_true(took >= 200 && took < 1500);
}

static void test_idle_timeout(void **state) {
  fx_t fx;
  fx_init(&fx, S_IDLE);
  fx.slim.idle_ms = 200;
  fx_tls_pair(&fx, P("ca.crt"), P("cli.crt"), P("cli.key"));
  fx_run(&fx);
  assert_int_equal(fx.srv_hs, 1);
  assert_int_equal(fx.srv_rx, 4); /* the ping at 120 ms pushed the deadline out */
  assert_int_equal(fx.srv_reason, TT_ETIMEOUT);
  assert_true(fx.srv_t_read > fx.srv_t_hs);
  uint64_t took = fx.srv_t_close - fx.srv_t_read;
  print_message("idle timeout %llu ms after the ping, %llu after the handshake\n",
                (unsigned long long)took, (unsigned long long)(fx.srv_t_close - fx.srv_t_hs));
  assert_true(took >= 200 && took < 2000);
  assert_int_equal(fx.cli_closes, 1);
  assert_int_equal(fx.cli_reason, 0); /* the server said close_notify */
}

static void test_write_cap(void **state) {
  fx_t fx;
  fx_init(&fx, S_WRITECAP);
  fx.slim.write_cap = 64 * 1024;
  fx.slim.high_water = 32 * 1024;
  fx.slim.low_water = 8 * 1024;
  fx_tls_pair(&fx, P("ca.crt"), P("cli.crt"), P("cli.key"));
  fx_run(&fx);
  assert_int_equal(fx.srv_hs, 1);
  assert_int_equal(fx.srv_drains, 1);
  assert_int_equal(fx.srv_reason, 0);
  assert_int_equal(fx.cli_rx, 40 * 1024); /* the refused write left nothing behind */
  assert_int_equal(fx.cli_reason, 0);
}

static void test_plain_tcp_garbage(void **state) {
  fx_t fx;
  fx_init(&fx, S_GARBAGE);
  fx.alive = 2;
  fx_listen(&fx);
  fx_raw_client(&fx, "GET / HTTP/1.1\r\nHost: localhost\r\nUser-Agent: curl/8\r\n\r\n");
  fx_run(&fx);
  assert_int_equal(fx.srv_hs, 0);
  assert_int_equal(fx.srv_closes, 1);
  assert_int_equal(fx.srv_reason, TT_ETLS);
  assert_true(fx.srv_heard);
}

static void test_accept_refused(void **state) {
  fx_t fx;
  fx_init(&fx, S_ADMIT);
  fx.alive = 1; /* the raw client; the refused stream never calls back */
  assert_int_equal(uv_listen((uv_stream_t *)&fx.listener, 16, on_connection_refuse), 0);
  fx_raw_client(&fx, NULL);
  fx_run(&fx);
  assert_int_equal(fx.admit_calls, 1);
  assert_int_equal(fx.admit_family, AF_INET);
  assert_int_equal(fx.srv_hs, 0);
  assert_int_equal(fx.srv_closes, 0);
  assert_int_equal(fx.raw_err, UV_ECONNRESET); /* reset, not a graceful close */
}

static void test_close_inside_on_read(void **state) {
  fx_t fx;
  fx_init(&fx, S_CLOSE_IN_READ);
  fx.server_name = "localhost"; /* the DNS-name path of the name check */
  fx_tls_pair(&fx, P("ca.crt"), P("cli.crt"), P("cli.key"));
  fx_run(&fx);
  assert_int_equal(fx.srv_reads, 1); /* nothing delivered after the close */
  assert_int_equal(fx.srv_closes, 1);
  assert_int_equal(fx.srv_reason, 0);
  assert_int_equal(fx.cli_closes, 1);
  assert_int_equal(fx.cli_reason, 0);
}

static void test_client_without_alpn(void **state) {
  fx_t fx;
  fx_init(&fx, S_NOALPN);
  fx.cctx = mkctx(false, P("ca.crt"), P("cli.crt"), P("cli.key"));
  assert_int_equal(SSL_CTX_set_alpn_protos(tt_tls_ctx_ssl(fx.cctx), NULL, 0), 0);
  fx.alive = 2;
  fx_listen(&fx);
  fx_client(&fx);
  fx_run(&fx);
  assert_int_equal(fx.srv_hs, 0);
  assert_int_equal(fx.cli_hs, 0);
  assert_int_equal(fx.srv_reason, TT_ETLS);
  assert_int_equal(fx.cli_reason, TT_ETLS);
}

static void test_client_wrong_alpn(void **state) {
  fx_t fx;
  fx_init(&fx, S_BADALPN);
  fx.cctx = mkctx(false, P("ca.crt"), P("cli.crt"), P("cli.key"));
  static const unsigned char h1[] = "\x08http/1.1";
  assert_int_equal(SSL_CTX_set_alpn_protos(tt_tls_ctx_ssl(fx.cctx), h1, sizeof(h1) - 1), 0);
  fx.alive = 2;
  fx_listen(&fx);
  fx_client(&fx);
  fx_run(&fx);
  assert_int_equal(fx.srv_hs, 0);
  assert_int_equal(fx.cli_hs, 0);
  assert_int_equal(fx.srv_reason, TT_ETLS);
  assert_int_equal(fx.cli_reason, TT_ETLS);
}

static void test_server_name_mismatch(void **state) {
  fx_t fx;
  fx_init(&fx, S_BADNAME);
  fx.server_name = "broker.example.org";
  fx_tls_pair(&fx, P("ca.crt"), P("cli.crt"), P("cli.key"));
  fx_run(&fx);
  assert_int_equal(fx.cli_hs, 0);
  assert_int_equal(fx.cli_reason, TT_ECERT);
  assert_int_equal(fx.srv_hs, 0);
  assert_int_not_equal(fx.srv_reason, 0);
}

static void test_server_from_other_ca(void **state) {
  fx_t fx;
  fx_init(&fx, S_BADNAME);
  /* The client trusts only ca2: the broker's certificate is refused by the client. */
  fx_tls_pair(&fx, P("ca2.crt"), P("evil.crt"), P("evil.key"));
  fx_run(&fx);
  assert_int_equal(fx.cli_hs, 0);
  assert_int_equal(fx.cli_reason, TT_ECERT);
  assert_int_equal(fx.srv_hs, 0);
  assert_int_not_equal(fx.srv_reason, 0);
}

static void test_connect_refused(void **state) {
  fx_t fx;
  fx_init(&fx, S_REFUSED);
  /* The listener is bound but never listens: connecting to it is refused. */
  fx.cctx = mkctx(false, P("ca.crt"), P("cli.crt"), P("cli.key"));
  uv_close((uv_handle_t *)&fx.listener, NULL);
  fx.alive = 1;
  fx_client(&fx);
  fx_run(&fx);
  assert_false(fx.cli_closed_too_early);
  assert_int_equal(fx.cli_hs, 0);
  assert_int_equal(fx.cli_closes, 1);
  assert_int_equal(fx.cli_reason, UV_ECONNREFUSED);
}

static void test_ctx_errors(void **state) {
  char err[256];
  tt_tls_ctx_t *c = (tt_tls_ctx_t *)&err; /* must be cleared on failure */
  tt_tls_ctx_opts_t o = {.server = true, .ca_file = P("ca.crt")};
  assert_int_equal(tt_tls_ctx_new(&c, &o, err, sizeof(err)), TT_EINVAL);
  assert_null(c);
  o.cert_file = P("srv.crt");
  o.key_file = P("nope.key");
  assert_int_equal(tt_tls_ctx_new(&c, &o, err, sizeof(err)), TT_ECONFIG);
  assert_non_null(strstr(err, "nope.key"));
  o.key_file = P("cli.key"); /* does not match the certificate */
  assert_int_equal(tt_tls_ctx_new(&c, &o, err, sizeof(err)), TT_ECONFIG);
  o.key_file = P("srv.key");
  o.ca_file = P("missing.crt");
  assert_int_equal(tt_tls_ctx_new(&c, &o, err, sizeof(err)), TT_ECONFIG);
  assert_non_null(strstr(err, "missing.crt"));
  o.ca_file = P("ca.crt");
  assert_int_equal(tt_tls_ctx_new(&c, &o, err, sizeof(err)), 0);
  assert_non_null(tt_tls_ctx_ssl(c));
  tt_tls_ctx_free(c);
  tt_tls_ctx_free(NULL);
}

/* ---- enrollment, CA pin, resumption ---------------------------------------------- */

/* One connection between two given contexts: each side says a word on handshake, the
 * client closes once it heard the server's. Records what each end saw. */
typedef struct {
  int hs, closes, reason;
  size_t rx;
  bool enroll, resumed, established, established_early;
  bool has_cert;
  char cn[64];
  char pinned[TT_FINGERPRINT_LEN + 1];
} end_t;

typedef struct {
  uv_loop_t loop;
  uv_tcp_t listener;
  uv_timer_t watchdog;
  struct sockaddr_in addr;
  int alive;
  bool timed_out;
  tt_tls_ctx_t *sctx, *cctx;
  end_t srv, cli;
} pair_t;

static void pair_done(pair_t *p) {
  if (--p->alive > 0) return;
  uv_close((uv_handle_t *)&p->watchdog, NULL);
}

static void pair_watchdog_cb(uv_timer_t *t) {
  pair_t *p = t->data;
  p->timed_out = true;
  uv_stop(&p->loop);
}

static void pair_record(tt_tls_t *s, end_t *e) {
  e->hs++;
  e->enroll = tt_tls_is_enroll(s);
  e->resumed = tt_tls_resumed(s);
  e->established = tt_tls_established(s);
  e->has_cert = tt_tls_peer_cert(s) != NULL;
  peer_cn(s, e->cn, sizeof(e->cn));
  X509 *ca = tt_tls_pinned_ca(s);
  if (ca) assert_int_equal(tt_cert_fingerprint(ca, e->pinned, sizeof(e->pinned)), 0);
}

static void pair_srv_hs(tt_tls_t *s) {
  pair_t *p = tt_tls_data(s);
  pair_record(s, &p->srv);
  assert_int_equal(tt_tls_write(s, "hi", 2), 0);
}

static void pair_cli_hs(tt_tls_t *s) {
  pair_t *p = tt_tls_data(s);
  pair_record(s, &p->cli);
  assert_int_equal(tt_tls_write(s, "hello", 5), 0);
}

static void pair_srv_read(tt_tls_t *s, const uint8_t *d, size_t n) {
  pair_t *p = tt_tls_data(s);
  p->srv.rx += n;
}

static void pair_cli_read(tt_tls_t *s, const uint8_t *d, size_t n) {
  pair_t *p = tt_tls_data(s);
  p->cli.rx += n;
  if (p->cli.rx >= 2) tt_tls_close(s, 0);
}

static void pair_srv_close(tt_tls_t *s, int reason) {
  pair_t *p = tt_tls_data(s);
  p->srv.closes++;
  p->srv.reason = reason;
  pair_done(p);
}

static void pair_cli_close(tt_tls_t *s, int reason) {
  pair_t *p = tt_tls_data(s);
  p->cli.closes++;
  p->cli.reason = reason;
  pair_done(p);
}

static const tt_tls_cbs_t pair_srv_cbs = {.on_handshake = pair_srv_hs, .on_read = pair_srv_read, .on_close = pair_srv_close};
static const tt_tls_cbs_t pair_cli_cbs = {.on_handshake = pair_cli_hs, .on_read = pair_cli_read, .on_close = pair_cli_close};

static void pair_on_connection(uv_stream_t *server, int status) {
  pair_t *p = server->data;
  tt_tls_t *s = NULL;
  tt_tls_limits_t lim = {.handshake_ms = 5000};
  assert_int_equal(status, 0);
  assert_int_equal(tt_tls_accept(p->sctx, server, &lim, &pair_srv_cbs, p, &s), 0);
  p->srv.established_early = tt_tls_established(s);
  assert_false(tt_tls_is_enroll(s));
  assert_false(tt_tls_resumed(s));
  uv_close((uv_handle_t *)server, NULL);
}

/* Runs one connection to completion; the contexts stay the caller's. */
static void pair_run(pair_t *p, tt_tls_ctx_t *sctx, tt_tls_ctx_t *cctx, const char *name) {
  memset(p, 0, sizeof(*p));
  p->sctx = sctx;
  p->cctx = cctx;
  assert_int_equal(uv_loop_init(&p->loop), 0);
  uv_timer_init(&p->loop, &p->watchdog);
  p->watchdog.data = p;
  uv_timer_start(&p->watchdog, pair_watchdog_cb, WATCHDOG_MS, 0);
  assert_int_equal(uv_tcp_init(&p->loop, &p->listener), 0);
  p->listener.data = p;
  struct sockaddr_in a;
  assert_int_equal(uv_ip4_addr("127.0.0.1", 0, &a), 0);
  assert_int_equal(uv_tcp_bind(&p->listener, (struct sockaddr *)&a, 0), 0);
  int len = (int)sizeof(p->addr);
  assert_int_equal(uv_tcp_getsockname(&p->listener, (struct sockaddr *)&p->addr, &len), 0);
  assert_int_equal(uv_listen((uv_stream_t *)&p->listener, 16, pair_on_connection), 0);
  p->alive = 2;
  tt_tls_t *c = NULL;
  tt_tls_limits_t lim = {.handshake_ms = 5000};
  assert_int_equal(tt_tls_connect(cctx, &p->loop, (struct sockaddr *)&p->addr, name, &lim,
                                  &pair_cli_cbs, p, &c), 0);
  p->cli.established_early = tt_tls_established(c);
  assert_null(tt_tls_pinned_ca(c));
  uv_run(&p->loop, UV_RUN_DEFAULT);
  if (p->timed_out) fail_msg("watchdog: connection did not finish in %d ms", WATCHDOG_MS);
  assert_int_equal(p->alive, 0);
  assert_int_equal(uv_loop_close(&p->loop), 0);
  assert_false(p->srv.established_early);
  assert_false(p->cli.established_early);
  assert_int_equal(p->srv.closes, 1);
  assert_int_equal(p->cli.closes, 1);
}

/* Both ends completed, said their word and closed cleanly. */
static void assert_pair_ok(const pair_t *p) {
  assert_int_equal(p->srv.hs, 1);
  assert_int_equal(p->cli.hs, 1);
  assert_true(p->srv.established);
  assert_true(p->cli.established);
  assert_int_equal(p->srv.rx, 5);
  assert_int_equal(p->cli.rx, 2);
  assert_int_equal(p->srv.reason, 0);
  assert_int_equal(p->cli.reason, 0);
}

typedef struct {
  bool server, allow_enroll, resume;
  const char *ca, *cert, *key, *pin, *tickets;
} mk_t;

static int mkctx2(tt_tls_ctx_t **c, const mk_t *m, char *err, size_t errlen) {
  tt_tls_ctx_opts_t o = {.server = m->server, .ca_file = m->ca, .cert_file = m->cert,
                         .key_file = m->key, .allow_enroll = m->allow_enroll,
                         .ticket_key_file = m->tickets, .ca_pin = m->pin,
                         .resume = m->resume};
  return tt_tls_ctx_new(c, &o, err, errlen);
}

static tt_tls_ctx_t *mk(const mk_t *m) {
  char err[256];
  tt_tls_ctx_t *c = NULL;
  int rc = mkctx2(&c, m, err, sizeof(err));
  if (rc) print_message("ctx: %s\n", err);
  assert_int_equal(rc, 0);
  return c;
}

static void ca_pin(const char *file, char out[TT_FINGERPRINT_LEN + 1]) {
  assert_int_equal(tt_cert_file_fingerprint(P(file), out, TT_FINGERPRINT_LEN + 1), 0);
}

static int g_tickets_seen;
static int count_ticket_cb(SSL *ssl, SSL_SESSION *sess) {
  g_tickets_seen++;
  return 0; /* not kept */
}

static void count_tickets(tt_tls_ctx_t *c) {
  SSL_CTX *ssl = tt_tls_ctx_ssl(c);
  SSL_CTX_set_session_cache_mode(ssl, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
  SSL_CTX_sess_set_new_cb(ssl, count_ticket_cb);
}

static void test_enroll_with_pin(void **state) {
  char pin[TT_FINGERPRINT_LEN + 1];
  ca_pin("ca.crt", pin);
  unlink(P("tickets.enroll"));
  tt_tls_ctx_t *s = mk(&(mk_t){.server = true, .allow_enroll = true, .ca = P("ca.crt"),
                               .cert = P("srvchain.crt"), .key = P("srv.key"),
                               .tickets = P("tickets.enroll")});
  tt_tls_ctx_t *c = mk(&(mk_t){.pin = pin, .resume = true}); /* resume is ignored */
  count_tickets(c);
  g_tickets_seen = 0;
  pair_t p;
  pair_run(&p, s, c, "127.0.0.1");
  assert_pair_ok(&p);
  assert_true(p.srv.enroll);
  assert_false(p.srv.has_cert); /* never asked for one */
  assert_false(p.srv.resumed);
  assert_true(p.cli.enroll);
  assert_string_equal(p.cli.cn, "broker"); /* the broker's leaf, verified under the pin */
  assert_string_equal(p.cli.pinned, pin);
  assert_int_equal(g_tickets_seen, 0); /* enrolling devices get no ticket */
  /* The same name check as without a pin: the DNS form works too. */
  pair_run(&p, s, c, "localhost");
  assert_pair_ok(&p);
  assert_string_equal(p.cli.pinned, pin);
  /* A device with a certificate on the same server still gets tether/1, verified, and a
   * ticket. */
  tt_tls_ctx_t *d = mk(&(mk_t){.ca = P("ca.crt"), .cert = P("cli.crt"), .key = P("cli.key")});
  count_tickets(d);
  pair_run(&p, s, d, "127.0.0.1");
  assert_pair_ok(&p);
  assert_false(p.srv.enroll);
  assert_false(p.cli.enroll);
  assert_string_equal(p.srv.cn, "dev-1");
  assert_string_equal(p.cli.cn, "broker"); /* the chain with the CA verifies by ca.crt */
  assert_string_equal(p.cli.pinned, "");
  assert_int_equal(g_tickets_seen, 1);
  tt_tls_ctx_free(d);
  tt_tls_ctx_free(c);
  tt_tls_ctx_free(s);
}

static void test_enroll_not_allowed(void **state) {
  char pin[TT_FINGERPRINT_LEN + 1];
  ca_pin("ca.crt", pin);
  tt_tls_ctx_t *s = mk(&(mk_t){.server = true, .ca = P("ca.crt"), .cert = P("srvchain.crt"),
                               .key = P("srv.key")});
  tt_tls_ctx_t *c = mk(&(mk_t){.pin = pin});
  pair_t p;
  pair_run(&p, s, c, "127.0.0.1");
  assert_int_equal(p.srv.hs, 0);
  assert_int_equal(p.cli.hs, 0);
  assert_int_equal(p.srv.rx, 0);
  assert_int_equal(p.srv.reason, TT_ETLS); /* a foreign ALPN, like any other */
  assert_int_equal(p.cli.reason, TT_ETLS);
  tt_tls_ctx_free(c);
  tt_tls_ctx_free(s);
}

/* Offering tether-enroll/1 next to tether/1 buys no way around the client certificate. */
static void test_enroll_offer_gets_no_tether(void **state) {
  static const unsigned char both[] = "\x08" TT_ALPN "\x0f" TT_ALPN_ENROLL;
  tt_tls_ctx_t *s = mk(&(mk_t){.server = true, .allow_enroll = true, .ca = P("ca.crt"),
                               .cert = P("srvchain.crt"), .key = P("srv.key")});
  tt_tls_ctx_t *c = mk(&(mk_t){.ca = P("ca.crt")});
  assert_int_equal(SSL_CTX_set_alpn_protos(tt_tls_ctx_ssl(c), both, sizeof(both) - 1), 0);
  pair_t p;
  pair_run(&p, s, c, "127.0.0.1");
  assert_int_equal(p.cli.hs, 0); /* the server chose tether-enroll/1 */
  assert_int_equal(p.cli.reason, TT_ETLS);
  if (p.srv.hs) { /* if the server got that far, it is an enrollment stream */
    assert_true(p.srv.enroll);
    assert_false(p.srv.has_cert);
  }
  assert_int_equal(p.srv.rx, 0);
  tt_tls_ctx_free(c);
  /* Offering tether/1 alone without a certificate: refused as on any server. */
  c = mk(&(mk_t){.ca = P("ca.crt")});
  pair_run(&p, s, c, "127.0.0.1");
  assert_int_equal(p.srv.hs, 0);
  assert_int_equal(p.srv.rx, 0);
  assert_int_equal(p.cli.rx, 0); /* TLS 1.3: the client hears of it on its first read */
  assert_int_equal(p.srv.reason, TT_ECERT);
  assert_int_equal(p.cli.reason, TT_ECERT);
  tt_tls_ctx_free(c);
  tt_tls_ctx_free(s);
}

static void expect_pin_refused(tt_tls_ctx_t *s, const char *pin, const char *name) {
  tt_tls_ctx_t *c = mk(&(mk_t){.pin = pin});
  pair_t p;
  pair_run(&p, s, c, name);
  assert_int_equal(p.cli.hs, 0);
  assert_int_equal(p.cli.reason, TT_ECERT);
  assert_int_equal(p.srv.hs, 0);
  assert_int_equal(p.srv.rx, 0); /* nothing sent */
  assert_int_not_equal(p.srv.reason, 0);
  tt_tls_ctx_free(c);
}

static void test_pin_refused(void **state) {
  char pin[TT_FINGERPRINT_LEN + 1], other[TT_FINGERPRINT_LEN + 1];
  ca_pin("ca.crt", pin);
  ca_pin("ca2.crt", other);
  tt_tls_ctx_t *s = mk(&(mk_t){.server = true, .allow_enroll = true, .ca = P("ca.crt"),
                               .cert = P("srvchain.crt"), .key = P("srv.key")});
  expect_pin_refused(s, other, "127.0.0.1");        /* wrong pin */
  expect_pin_refused(s, pin, "broker.example.org"); /* right pin, wrong name */
  tt_tls_ctx_free(s);
  /* The server sends its certificate without the CA: nothing to pin to. */
  s = mk(&(mk_t){.server = true, .allow_enroll = true, .ca = P("ca.crt"), .cert = P("srv.crt"),
                 .key = P("srv.key")});
  expect_pin_refused(s, pin, "127.0.0.1");
  tt_tls_ctx_free(s);
  /* A chain that carries a CA with the pinned fingerprint must also have signed the leaf:
   * evil.crt (from ca2) followed by the real CA. */
  s = mk(&(mk_t){.server = true, .allow_enroll = true, .ca = P("ca.crt"),
                 .cert = P("evilchain.crt"), .key = P("evilsrv.key")});
  expect_pin_refused(s, pin, NULL);
  tt_tls_ctx_free(s);
}

static mode_t file_mode(const char *path) {
  struct stat st;
  assert_int_equal(stat(path, &st), 0);
  return st.st_mode & 07777;
}

static void test_resume(void **state) {
  const char *tk = P("tickets");
  unlink(tk);
  mk_t sm = {.server = true, .ca = P("ca.crt"), .cert = P("srvchain.crt"), .key = P("srv.key"),
             .tickets = tk};
  tt_tls_ctx_t *s = mk(&sm);
  assert_int_equal(file_mode(tk), 0600);
  struct stat st;
  assert_int_equal(stat(tk, &st), 0);
  assert_int_equal(st.st_size, 80);
  tt_tls_ctx_t *c = mk(&(mk_t){.ca = P("ca.crt"), .cert = P("cli.crt"), .key = P("cli.key"),
                               .resume = true});
  pair_t p;
  pair_run(&p, s, c, "127.0.0.1");
  assert_pair_ok(&p);
  assert_false(p.srv.resumed);
  assert_false(p.cli.resumed);

  pair_run(&p, s, c, "127.0.0.1");
  assert_pair_ok(&p);
  assert_true(p.srv.resumed);
  assert_true(p.cli.resumed);
  assert_string_equal(p.srv.cn, "dev-1"); /* the session kept the client's certificate */
  assert_string_equal(p.cli.cn, "broker");

  /* A broker restart: a new context from the same key file still resumes. */
  tt_tls_ctx_free(s);
  s = mk(&sm);
  assert_int_equal(file_mode(tk), 0600);
  pair_run(&p, s, c, "127.0.0.1");
  assert_pair_ok(&p);
  assert_true(p.srv.resumed);
  assert_true(p.cli.resumed);
  assert_string_equal(p.srv.cn, "dev-1");
  /* Every resumption brings a fresh ticket (a TLS 1.3 ticket is used once). */
  for (int i = 0; i < 2; i++) {
    pair_run(&p, s, c, "127.0.0.1");
    assert_pair_ok(&p);
    assert_true(p.srv.resumed);
    assert_true(p.cli.resumed);
  }
  tt_tls_ctx_free(s);

  /* Other keys: the ticket is not recognised and a full handshake follows. */
  unlink(P("tickets.other"));
  sm.tickets = P("tickets.other");
  s = mk(&sm);
  pair_run(&p, s, c, "127.0.0.1");
  assert_pair_ok(&p);
  assert_false(p.srv.resumed);
  assert_false(p.cli.resumed);
  assert_string_equal(p.srv.cn, "dev-1");
  tt_tls_ctx_free(s);

  /* A server without tickets: nothing to resume, nothing breaks. */
  sm.tickets = NULL;
  s = mk(&sm);
  pair_run(&p, s, c, "127.0.0.1");
  assert_pair_ok(&p);
  assert_false(p.srv.resumed);
  tt_tls_ctx_free(s);
  tt_tls_ctx_free(c);
}

/* A resumed handshake shows no certificate; one that expired since the ticket was made
 * must not ride on it: the server ignores the ticket and the full handshake refuses. */
static void test_resume_expired_cert(void **state) {
  char err[256];
  X509 *ca = NULL, *x = NULL;
  EVP_PKEY *cak = NULL, *k = NULL;
  tt_pki_leaf_t leaf = {.role = TT_ROLE_AGENT, .name = "dev-2", .seconds = 2};
  unlink(P("short.crt"));
  unlink(P("short.key"));
  assert_int_equal(tt_pki_load_cert(P("ca.crt"), &ca, err, sizeof(err)), 0);
  assert_int_equal(tt_pki_load_key(P("ca.key"), &cak, err, sizeof(err)), 0);
  assert_int_equal(tt_pki_issue(ca, cak, &leaf, &x, &k, err, sizeof(err)), 0);
  assert_int_equal(tt_pki_write_cert(P("short.crt"), x, err, sizeof(err)), 0);
  assert_int_equal(tt_pki_write_key(P("short.key"), k, err, sizeof(err)), 0);

  unlink(P("tickets.short"));
  tt_tls_ctx_t *s = mk(&(mk_t){.server = true, .ca = P("ca.crt"), .cert = P("srvchain.crt"),
                               .key = P("srv.key"), .tickets = P("tickets.short")});
  tt_tls_ctx_t *c = mk(&(mk_t){.ca = P("ca.crt"), .cert = P("short.crt"), .key = P("short.key"),
                               .resume = true});
  pair_t p;
  pair_run(&p, s, c, "127.0.0.1");
  assert_pair_ok(&p);
  pair_run(&p, s, c, "127.0.0.1");
  assert_pair_ok(&p);
  assert_true(p.srv.resumed);
  assert_string_equal(p.srv.cn, "dev-2");
  for (int i = 0; i < 50 && X509_cmp_current_time(X509_get0_notAfter(x)) > 0; i++)
    usleep(100 * 1000);
  usleep(1100 * 1000); /* notAfter has one-second resolution */
  pair_run(&p, s, c, "127.0.0.1");
  assert_int_equal(p.srv.hs, 0);
  assert_int_equal(p.srv.reason, TT_ECERT);
  assert_int_equal(p.srv.rx, 0);
  assert_int_equal(p.cli.reason, TT_ECERT);
  tt_tls_ctx_free(c);
  tt_tls_ctx_free(s);
  X509_free(ca);
  X509_free(x);
  EVP_PKEY_free(cak);
  EVP_PKEY_free(k);
}

static void write_file(const char *path, const void *b, size_t n, mode_t mode) {
  unlink(path);
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  assert_int_equal(fwrite(b, 1, n, f), n);
  assert_int_equal(fclose(f), 0);
  assert_int_equal(chmod(path, mode), 0);
}

static void test_new_option_errors(void **state) {
  char err[256], pin[TT_FINGERPRINT_LEN + 1];
  unsigned char bytes[81];
  tt_tls_ctx_t *c = NULL;
  mk_t sm = {.server = true, .ca = P("ca.crt"), .cert = P("srv.crt"), .key = P("srv.key")};
  for (size_t i = 0; i < sizeof(bytes); i++) bytes[i] = (unsigned char)(i * 7 + 1);

  sm.tickets = P("tk.short");
  write_file(sm.tickets, bytes, 40, 0600);
  assert_int_equal(mkctx2(&c, &sm, err, sizeof(err)), TT_ECONFIG);
  assert_null(c);
  assert_non_null(strstr(err, "tk.short"));
  assert_non_null(strstr(err, "40 bytes"));
  sm.tickets = P("tk.long");
  write_file(sm.tickets, bytes, 81, 0600);
  assert_int_equal(mkctx2(&c, &sm, err, sizeof(err)), TT_ECONFIG);
  assert_non_null(strstr(err, "tk.long"));
  sm.tickets = P("tk.empty");
  write_file(sm.tickets, bytes, 0, 0600);
  assert_int_equal(mkctx2(&c, &sm, err, sizeof(err)), TT_ECONFIG);
  sm.tickets = P("tk.zero");
  memset(bytes, 0, sizeof(bytes));
  write_file(sm.tickets, bytes, 80, 0600);
  assert_int_equal(mkctx2(&c, &sm, err, sizeof(err)), TT_ECONFIG);
  sm.tickets = P("tk.open");
  bytes[0] = 1;
  write_file(sm.tickets, bytes, 80, 0644);
  assert_int_equal(mkctx2(&c, &sm, err, sizeof(err)), TT_EDENIED);
  assert_non_null(strstr(err, "tk.open"));
  assert_int_equal(chmod(sm.tickets, 0600), 0);
  assert_int_equal(mkctx2(&c, &sm, err, sizeof(err)), 0);
  tt_tls_ctx_free(c);
  c = NULL;
  sm.tickets = P("no-such-dir/tickets");
  assert_int_equal(mkctx2(&c, &sm, err, sizeof(err)), TT_ECONFIG);
  assert_non_null(strstr(err, "no-such-dir"));
  sm.tickets = NULL;

  /* Options of the other side, and pins that are not pins. */
  sm.resume = true;
  assert_int_equal(mkctx2(&c, &sm, err, sizeof(err)), TT_EINVAL);
  sm.resume = false;
  ca_pin("ca.crt", pin);
  sm.pin = pin;
  assert_int_equal(mkctx2(&c, &sm, err, sizeof(err)), TT_EINVAL);
  assert_int_equal(mkctx2(&c, &(mk_t){.ca = P("ca.crt"), .allow_enroll = true}, err,
                          sizeof(err)), TT_EINVAL);
  assert_int_equal(mkctx2(&c, &(mk_t){.ca = P("ca.crt"), .tickets = P("t")}, err, sizeof(err)),
                   TT_EINVAL);
  assert_int_equal(mkctx2(&c, &(mk_t){.ca = P("ca.crt"), .pin = pin}, err, sizeof(err)),
                   TT_EINVAL); /* one or the other */
  assert_int_equal(mkctx2(&c, &(mk_t){0}, err, sizeof(err)), TT_EINVAL);
  static const char *const bad[] = {"", "sha256:", "sha1:abcd", "a1b2", "sha256:xyz"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    assert_int_equal(mkctx2(&c, &(mk_t){.pin = bad[i]}, err, sizeof(err)), TT_EINVAL);
  char p2[TT_FINGERPRINT_LEN + 2];
  snprintf(p2, sizeof(p2), "%sa", pin); /* one digit too many */
  assert_int_equal(mkctx2(&c, &(mk_t){.pin = p2}, err, sizeof(err)), TT_EINVAL);
  p2[TT_FINGERPRINT_LEN - 1] = 'g';
  p2[TT_FINGERPRINT_LEN] = '\0';
  assert_int_equal(mkctx2(&c, &(mk_t){.pin = p2}, err, sizeof(err)), TT_EINVAL);
  for (size_t i = 7; pin[i]; i++) /* upper case is the same pin */
    if (pin[i] >= 'a' && pin[i] <= 'f') pin[i] = (char)(pin[i] - 'a' + 'A');
  assert_int_equal(mkctx2(&c, &(mk_t){.pin = pin}, err, sizeof(err)), 0);
  tt_tls_ctx_free(c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_ctx_errors),
      cmocka_unit_test(test_echo),
      cmocka_unit_test(test_client_cert_other_ca),
      cmocka_unit_test(test_client_without_cert),
      cmocka_unit_test(test_handshake_timeout),
      cmocka_unit_test(test_idle_timeout),
      cmocka_unit_test(test_write_cap),
      cmocka_unit_test(test_plain_tcp_garbage),
      cmocka_unit_test(test_accept_refused),
      cmocka_unit_test(test_close_inside_on_read),
      cmocka_unit_test(test_client_without_alpn),
      cmocka_unit_test(test_client_wrong_alpn),
      cmocka_unit_test(test_server_name_mismatch),
      cmocka_unit_test(test_server_from_other_ca),
      cmocka_unit_test(test_connect_refused),
      cmocka_unit_test(test_enroll_with_pin),
      cmocka_unit_test(test_enroll_not_allowed),
      cmocka_unit_test(test_enroll_offer_gets_no_tether),
      cmocka_unit_test(test_pin_refused),
      cmocka_unit_test(test_resume),
      cmocka_unit_test(test_resume_expired_cert),
      cmocka_unit_test(test_new_option_errors),
  };
  /* As in the programs: a write to a peer that already hung up is an error, not death. */
  signal(SIGPIPE, SIG_IGN);
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
