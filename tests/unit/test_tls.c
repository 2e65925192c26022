/* tt_tls: a real client and server on 127.0.0.1 with certificates made by the openssl CLI
 * at test time: echo, refused certificates, ALPN, timeouts, write cap, hostile bytes,
 * closing from inside callbacks. Every test is bounded by a watchdog and ends with an
 * empty loop. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ftw.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/x509.h>

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
      make_leaf("evil", "ca2", "/O=Tether/OU=agent/CN=dev-1", "v3_client", 4))
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
  tt_tls_close(s, TT_EPROTO); /* harmless from inside on_close */
  assert_int_equal(tt_tls_write(s, "x", 1), TT_ECLOSED);
  fx->srv = NULL;
  fx_done(fx);
}

static const tt_tls_cbs_t srv_cbs = {srv_on_handshake, srv_on_read, srv_on_drain, srv_on_close};

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

static const tt_tls_cbs_t cli_cbs = {cli_on_handshake, cli_on_read, NULL, cli_on_close};

/* a raw TCP client for the tests that are not TLS at all */

static void raw_alloc(uv_handle_t *h, size_t sz, uv_buf_t *b) {
  static char buf[4096];
  b->base = buf;
  b->len = sizeof(buf);
}

static void raw_close_cb(uv_handle_t *h) { fx_done(h->data); }

static void raw_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b) {
  if (n < 0) uv_close((uv_handle_t *)st, raw_close_cb);
}

static void raw_connect_cb(uv_connect_t *req, int status) {
  fx_t *fx = req->data;
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
      cmocka_unit_test(test_close_inside_on_read),
      cmocka_unit_test(test_client_without_alpn),
      cmocka_unit_test(test_client_wrong_alpn),
      cmocka_unit_test(test_server_name_mismatch),
      cmocka_unit_test(test_server_from_other_ca),
      cmocka_unit_test(test_connect_refused),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
