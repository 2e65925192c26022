/* tether-sshd: configuration, the host key, the listener with its pre-authentication limits,
 * and the control link that tells the broker where we are and fetches the keys we may let
 * in. See sshd.h for the shape of the whole. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <dirent.h>
#include <pwd.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include "sshd.h"
#include "tt/addr.h"
#include "tt/cert.h"
#include "tt/cli.h"
#include "tt/log.h"
#include "tt/msg.h"
#include "tt/xfer.h"

#define OPT(n, f, t, field, lo, hi, d, h) \
  {n, f, t, offsetof(sshd_cfg_t, field), sizeof(((sshd_cfg_t *)0)->field), lo, hi, d, NULL, h}

static const tt_conf_opt_t opts[] = {
    OPT("listen", "listen", TT_CONF_STR, listen, 3, 255, "127.0.0.1:2222", "address to listen on, HOST:PORT"),
    OPT("advertise", "advertise", TT_CONF_STR, advertise, 0, 255, NULL,
        "HOST:PORT technicians reach this gateway at, for tether ssh-config (default: listen)"),
    OPT("broker", "broker", TT_CONF_STR, broker, 3, 255, "127.0.0.1:7443", "broker address HOST:PORT"),
    OPT("server_name", "server-name", TT_CONF_STR, server_name, 0, 255, NULL,
        "name the broker's certificate must carry (default: the host in broker)"),
    OPT("tls.ca", "ca", TT_CONF_STR, ca, 1, 511, NULL, "CA certificate (PEM)"),
    OPT("tls.cert", "cert", TT_CONF_STR, cert, 1, 511, NULL, "this gateway's certificate (tether-certs issue gateway NAME)"),
    OPT("tls.key", "key", TT_CONF_STR, key, 1, 511, NULL, "its private key"),
    OPT("host_key", "host-key", TT_CONF_STR, host_key, 1, 511, "/var/lib/tether-sshd/ssh_host_ed25519_key",
        "the SSH host key (ed25519, made at first start, mode 0600)"),
    OPT("user", "user", TT_CONF_STR, user, 0, 63, "nobody", "started as root: run as this user once keys are read"),
    OPT("spool_dir", "spool-dir", TT_CONF_STR, spool_dir, 1, 400, "/var/lib/tether-sshd/spool",
        "sftp: where files wait, whole, on their way to or from a device (emptied at start)"),
    OPT("spool_max", "spool-max", TT_CONF_SIZE, spool_max, 1024 * 1024, 1099511627776LL, "4G",
        "sftp: bytes of files being written that the spool holds at once"),
    OPT("login_grace", "login-grace", TT_CONF_DURATION, login_grace_ms, 1000, 600000, "30s",
        "time from connecting to logging in"),
    OPT("max_startups", "max-startups", TT_CONF_INT, max_startups, 1, 1000, "10",
        "connections not yet logged in, per source address"),
    OPT("max_unauth", "max-unauth", TT_CONF_INT, max_unauth, 1, 10000, "100", "connections not yet logged in, in all"),
    OPT("max_conns", "max-conns", TT_CONF_INT, max_conns, 1, 100000, "1000", "connections in all"),
    OPT("auth_tries", "auth-tries", TT_CONF_INT, auth_tries, 1, 100, "6", "keys one connection may offer"),
    OPT("max_per_person", "max-per-person", TT_CONF_INT, max_per_person, 1, 10000, "16",
        "connections one person may hold at once"),
    OPT("refresh", "refresh", TT_CONF_DURATION, refresh_ms, 100, 600000, "1s",
        "how often the registered keys are fetched from the broker"),
    OPT("timeout", "timeout", TT_CONF_DURATION, timeout_ms, 100, 600000, "15s", "how long an answer from the broker may take"),
    {"log_level", "log-level", TT_CONF_ENUM, offsetof(sshd_cfg_t, log_level), sizeof(int), 0, 0, "info",
     "debug|info|warn|error", "log verbosity"},
};
#define NOPTS (sizeof(opts) / sizeof(opts[0]))
/* Out of descriptors: accepting waits this long. */
#define ACCEPT_PAUSE_MS 250u

static const char usage[] =
    "usage: tether-sshd [--config FILE] [options]\n"
    "       tether-sshd --fingerprint [--host-key FILE]\n"
    "The SSH gateway: technicians log in with the ssh keys they registered (tether ssh-key add)\n"
    "as DEVICE+T-n, and get a shell or a command on that device under that ticket, asked of\n"
    "and recorded as tether shell is. --fingerprint prints the host key's SHA256 fingerprint.\n";

static const char *const switches[] = {"fingerprint", NULL};
#define SW_FINGERPRINT 1u

/* -- keys ------------------------------------------------------------------------------------ */

static int key_cmp(const void *a, const void *b) {
  return strcmp(((const sshd_key_t *)a)->fp, ((const sshd_key_t *)b)->fp);
}

const char *sshd_key_person(const sshd_t *d, const char *fp) {
  if (!d->nkeys) return NULL;
  sshd_key_t k;
  snprintf(k.fp, sizeof(k.fp), "%s", fp);
  const sshd_key_t *hit = bsearch(&k, d->keys, d->nkeys, sizeof(k), key_cmp);
  return hit ? hit->person : NULL;
}

static int keys_take(sshd_t *d, const Tether__SshKeyList *l) {
  if (l->n_keys > TT_SSH_KEYS_LIST_MAX) return TT_ETOOBIG; /* more than a broker sends */
  sshd_key_t *v = calloc(l->n_keys ? l->n_keys : 1, sizeof(*v));
  if (!v) return TT_ENOMEM;
  size_t n = 0;
  for (size_t i = 0; i < l->n_keys; i++) {
    const Tether__SshKey *k = l->keys[i];
    if (k->fingerprint.len != TT_SSH_FP_LEN || tt_text_copy(v[n].fp, sizeof(v[n].fp), k->fingerprint) ||
        tt_text_copy(v[n].person, sizeof(v[n].person), k->person) || !v[n].person[0])
      continue; /* not one we could match: skipped, never let in */
    n++;
  }
  qsort(v, n, sizeof(*v), key_cmp);
  free(d->keys);
  d->keys = v;
  d->nkeys = n;
  d->keys_version = l->version;
  return 0;
}

/* -- the control link ------------------------------------------------------------------------ */

static void ctl_connect(sshd_t *d);
static void keys_answer(blink_t *b, void *arg, const Tether__Response *r, const char *why);
static void ctl_down(blink_t *b, const char *why);

/* The control link is given up on (closed without callbacks) and made again after backoff. */
static void ctl_lost(sshd_t *d, const char *why) {
  blink_close(&d->ctl, why);
  ctl_down(&d->ctl, why);
}

static void ctl_watch_cb(uv_timer_t *t) {
  sshd_t *d = t->data;
  TT_WARN(SSHD_MOD, "broker did not answer", "what=keys timeout_ms=%lld", (long long)d->cfg.timeout_ms);
  ctl_lost(d, "the broker did not answer in time");
}

static void ctl_timer_cb(uv_timer_t *t) {
  sshd_t *d = t->data;
  if (d->stopping) return;
  if (!d->ctl.link) {
    ctl_connect(d);
    return;
  }
  if (!d->ctl_up) return;
  Tether__GatewayHelloRequest q = TETHER__GATEWAY_HELLO_REQUEST__INIT;
  q.host_key = tt_text(d->host_line);
  q.listen = tt_text(d->cfg.advertise[0] ? d->cfg.advertise : d->cfg.listen);
  q.known_version = d->keys_version;
  Tether__Request r = TETHER__REQUEST__INIT;
  r.body_case = TETHER__REQUEST__BODY_GATEWAY_HELLO;
  r.gateway_hello = &q;
  if (blink_request(&d->ctl, &r, keys_answer, d)) {
    ctl_lost(d, "cannot ask for keys");
    return;
  }
  uv_timer_start(&d->ctl_watch, ctl_watch_cb, (uint64_t)d->cfg.timeout_ms, 0);
}

static void keys_answer(blink_t *b, void *arg, const Tether__Response *r, const char *why) {
  sshd_t *d = arg;
  (void)b;
  uv_timer_stop(&d->ctl_watch);
  if (!r) {
    TT_WARN(SSHD_MOD, "key list not answered", "why=\"%s\"", why);
    return;
  }
  if (r->error) {
    char msg[TT_TEXT_MAX * 4 + 1];
    blink_error_text(r->error, msg, sizeof(msg));
    TT_ERROR(SSHD_MOD, "broker refused the gateway", "why=\"%s\"", msg);
  } else if (r->body_case != TETHER__RESPONSE__BODY_SSH_KEYS || !r->ssh_keys) {
    TT_ERROR(SSHD_MOD, "broker answered the key list with something else", "case=%d", (int)r->body_case);
  } else if (r->ssh_keys->version != d->keys_version || r->ssh_keys->n_keys) {
    uint64_t before = d->keys_version;
    int rc = keys_take(d, r->ssh_keys);
    if (rc) TT_ERROR(SSHD_MOD, "key list not taken", "keys=%zu err=%s", r->ssh_keys->n_keys, tt_errname(rc));
    else if (before == 0) TT_INFO(SSHD_MOD, "ready", "keys=%zu version=%llu listen=%s", d->nkeys,
                                  (unsigned long long)d->keys_version, d->cfg.listen);
    else TT_INFO(SSHD_MOD, "keys changed", "keys=%zu version=%llu", d->nkeys, (unsigned long long)d->keys_version);
  }
  if (!d->stopping) uv_timer_start(&d->ctl_timer, ctl_timer_cb, (uint64_t)d->cfg.refresh_ms, 0);
}

static void ctl_ready(blink_t *b) {
  sshd_t *d = b->data;
  d->ctl_up = true;
  tt_backoff_reset(&d->backoff);
  TT_INFO(SSHD_MOD, "broker connected", "broker=%s", d->cfg.broker);
  uv_timer_stop(&d->ctl_timer);
  ctl_timer_cb(&d->ctl_timer);
}

static void ctl_down(blink_t *b, const char *why) {
  sshd_t *d = b->data;
  d->ctl_up = false;
  if (d->stopping) return;
  uint32_t wait = tt_backoff_next(&d->backoff);
  /* The keys held stay: people keep logging in while the broker comes back (each login is
   * checked by the broker anyway, on the connection's own link). */
  TT_WARN(SSHD_MOD, "broker link down", "why=\"%s\" retry_ms=%u", why, wait);
  uv_timer_start(&d->ctl_timer, ctl_timer_cb, wait, 0);
}

static const blink_cbs_t ctl_blink_cbs = {.on_ready = ctl_ready, .on_down = ctl_down};

static void ctl_connect(sshd_t *d) {
  int rc = blink_open(d, &d->ctl, &ctl_blink_cbs, d);
  if (rc) {
    d->ctl.link = NULL;
    ctl_down(&d->ctl, tt_strerror(rc));
  }
}

/* -- the host key ---------------------------------------------------------------------------- */

static int host_key_public(sshd_t *d, ssh_key key) {
  char *b64 = NULL;
  if (ssh_pki_export_pubkey_base64(key, &b64) != SSH_OK || !b64) return TT_EINVAL;
  snprintf(d->host_line, sizeof(d->host_line), "ssh-ed25519 %s", b64);
  ssh_string_free_char(b64);
  tt_sshkey_t k;
  char why[160];
  if (tt_sshkey_parse(d->host_line, strlen(d->host_line), &k, why, sizeof(why))) return TT_EINVAL;
  memcpy(d->host_fp, k.fingerprint, sizeof(d->host_fp));
  return 0;
}

/* Read the host key, or make one (ed25519, 0600, written whole or not at all). */
static int host_key_load(sshd_t *d, bool create, ssh_key *out) {
  const char *path = d->cfg.host_key;
  struct stat st;
  *out = NULL;
  if (stat(path, &st) != 0) {
    if (errno != ENOENT || !create) {
      fprintf(stderr, "tether-sshd: host key %s: %s\n", path, strerror(errno));
      return 1;
    }
    ssh_key key = NULL;
    char tmp[600];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    (void)unlink(tmp);
    mode_t old = umask(077);
    int rc = ssh_pki_generate(SSH_KEYTYPE_ED25519, 0, &key);
    if (rc == SSH_OK) rc = ssh_pki_export_privkey_file(key, NULL, NULL, NULL, tmp);
    umask(old);
    if (rc != SSH_OK || chmod(tmp, 0600) != 0 || rename(tmp, path) != 0) {
      fprintf(stderr, "tether-sshd: cannot make the host key %s: %s\n", path, strerror(errno ? errno : EIO));
      (void)unlink(tmp);
      ssh_key_free(key);
      return 1;
    }
    ssh_key_free(key);
    TT_INFO(SSHD_MOD, "host key made", "path=%s", path);
    if (stat(path, &st) != 0) return 1;
  }
  if (!S_ISREG(st.st_mode) || (st.st_mode & 077)) {
    fprintf(stderr, "tether-sshd: host key %s must be a file only its owner can read (chmod 600 %s)\n", path, path);
    return 1;
  }
  ssh_key key = NULL;
  if (ssh_pki_import_privkey_file(path, NULL, NULL, NULL, &key) != SSH_OK || ssh_key_type(key) != SSH_KEYTYPE_ED25519) {
    fprintf(stderr, "tether-sshd: %s is not an ed25519 private key\n", path);
    ssh_key_free(key);
    return 1;
  }
  if (host_key_public(d, key)) {
    fprintf(stderr, "tether-sshd: cannot read the public half of %s\n", path);
    ssh_key_free(key);
    return 1;
  }
  *out = key;
  return 0;
}

/* -- the SSH side ---------------------------------------------------------------------------- */

/* Modern algorithms only: no SHA-1, no CBC, no plain DH groups. */
static int bind_setup(sshd_t *d, ssh_key host) {
  d->bind = ssh_bind_new();
  if (!d->bind) return 1;
  bool no = false;
  int verbosity = d->cfg.log_level == TT_LOG_DEBUG ? SSH_LOG_PROTOCOL : SSH_LOG_NOLOG;
  struct {
    enum ssh_bind_options_e opt;
    const void *v;
  } set[] = {
      {SSH_BIND_OPTIONS_PROCESS_CONFIG, &no}, /* never read /etc/ssh/libssh_server_config */
      {SSH_BIND_OPTIONS_LOG_VERBOSITY, &verbosity},
      {SSH_BIND_OPTIONS_KEY_EXCHANGE,
       "curve25519-sha256,curve25519-sha256@libssh.org,ecdh-sha2-nistp256,ecdh-sha2-nistp384,ecdh-sha2-nistp521"},
      {SSH_BIND_OPTIONS_CIPHERS_C_S, "chacha20-poly1305@openssh.com,aes256-gcm@openssh.com,aes128-gcm@openssh.com"},
      {SSH_BIND_OPTIONS_CIPHERS_S_C, "chacha20-poly1305@openssh.com,aes256-gcm@openssh.com,aes128-gcm@openssh.com"},
      {SSH_BIND_OPTIONS_HMAC_C_S, "hmac-sha2-256-etm@openssh.com,hmac-sha2-512-etm@openssh.com"},
      {SSH_BIND_OPTIONS_HMAC_S_C, "hmac-sha2-256-etm@openssh.com,hmac-sha2-512-etm@openssh.com"},
      {SSH_BIND_OPTIONS_HOSTKEY_ALGORITHMS, "ssh-ed25519"},
      {SSH_BIND_OPTIONS_PUBKEY_ACCEPTED_KEY_TYPES,
       "ssh-ed25519,ecdsa-sha2-nistp256,ecdsa-sha2-nistp384,ecdsa-sha2-nistp521,rsa-sha2-512,rsa-sha2-256"},
      {SSH_BIND_OPTIONS_IMPORT_KEY, host},
  };
  for (size_t i = 0; i < sizeof(set) / sizeof(set[0]); i++) {
    if (ssh_bind_options_set(d->bind, set[i].opt, set[i].v) != SSH_OK) {
      fprintf(stderr, "tether-sshd: libssh refused option %d: %s\n", (int)set[i].opt, ssh_get_error(d->bind));
      return 1;
    }
  }
  return 0;
}

static void on_listen(uv_poll_t *p, int status, int events);

static void accept_resume(uv_timer_t *t) {
  sshd_t *d = t->data;
  if (!d->stopping) uv_poll_start(&d->listen_poll, UV_READABLE, on_listen);
}

static void on_listen(uv_poll_t *p, int status, int events) {
  sshd_t *d = p->data;
  (void)events;
  if (status < 0 || d->stopping) return;
  for (int i = 0; i < 64; i++) {
    struct sockaddr_storage sa;
    socklen_t sl = sizeof(sa);
    int fd = accept4(d->listen_fd, (struct sockaddr *)&sa, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        /* Out of descriptors: the socket stays readable, so stop polling it a while rather
         * than spin; connections wait in the backlog meanwhile. */
        TT_WARN(SSHD_MOD, "accept paused", "err=%s pause_ms=%u", strerror(errno), ACCEPT_PAUSE_MS);
        uv_poll_stop(&d->listen_poll);
        uv_timer_start(&d->accept_timer, accept_resume, ACCEPT_PAUSE_MS, 0);
      } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ECONNABORTED) {
        TT_WARN(SSHD_MOD, "accept failed", "err=%s", strerror(errno));
      }
      return;
    }
    if (gw_conn_accept(d, fd, (struct sockaddr *)&sa)) close(fd);
  }
}

static int listen_open(sshd_t *d) {
  struct sockaddr_storage sa;
  char host[256];
  int rc = tt_addr_resolve(d->cfg.listen, &sa, host, sizeof(host));
  if (rc) {
    fprintf(stderr, "tether-sshd: cannot resolve listen address '%s': %s\n", d->cfg.listen, tt_strerror(rc));
    return 1;
  }
  int fd = socket(sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
      bind(fd, (struct sockaddr *)&sa, sa.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in)) != 0 ||
      listen(fd, 511) != 0) {
    fprintf(stderr, "tether-sshd: cannot listen on %s: %s\n", d->cfg.listen, strerror(errno));
    if (fd >= 0) close(fd);
    return 1;
  }
  d->listen_fd = fd;
  /* Port 0 asks for any: say which one it is (the log and tether ssh-config). */
  struct sockaddr_storage got;
  socklen_t gl = sizeof(got);
  if (getsockname(fd, (struct sockaddr *)&got, &gl) == 0) tt_addr_format((struct sockaddr *)&got, d->cfg.listen, sizeof(d->cfg.listen));
  if (uv_poll_init(d->loop, &d->listen_poll, fd) || uv_poll_start(&d->listen_poll, UV_READABLE, on_listen)) return 1;
  d->listen_poll.data = d;
  return 0;
}

/* The sftp spool: made if missing (0700), emptied of what a previous run left, and given to
 * cfg.user when we are root and about to become it. */
static int spool_setup(const sshd_t *d) {
  const char *dir = d->cfg.spool_dir;
  char parent[512];
  snprintf(parent, sizeof(parent), "%s", dir);
  char *slash = strrchr(parent, '/');
  if (slash && slash != parent) {
    *slash = '\0';
    if (mkdir(parent, 0755) != 0 && errno != EEXIST) {
      fprintf(stderr, "tether-sshd: cannot make %s: %s\n", parent, strerror(errno));
      return 1;
    }
  }
  if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
    fprintf(stderr, "tether-sshd: cannot make the spool %s: %s\n", dir, strerror(errno));
    return 1;
  }
  DIR *dd = opendir(dir);
  if (!dd) {
    fprintf(stderr, "tether-sshd: cannot open the spool %s: %s\n", dir, strerror(errno));
    return 1;
  }
  int dfd = dirfd(dd);
  for (struct dirent *e; (e = readdir(dd));) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    if (unlinkat(dfd, e->d_name, 0) == 0 || errno != EISDIR) continue;
    /* A session's own directory (sftp-XXXXXX): its files, then it. */
    int sub = openat(dfd, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    DIR *sd = sub >= 0 ? fdopendir(sub) : NULL;
    if (sd) {
      for (struct dirent *f; (f = readdir(sd));)
        if (strcmp(f->d_name, ".") && strcmp(f->d_name, "..")) (void)unlinkat(sub, f->d_name, 0);
      closedir(sd);
    } else if (sub >= 0) {
      close(sub);
    }
    (void)unlinkat(dfd, e->d_name, AT_REMOVEDIR);
  }
  if (fchmod(dfd, 0700) != 0) {
    closedir(dd);
    return 1;
  }
  if (geteuid() == 0) {
    struct passwd *pw = getpwnam(d->cfg.user);
    if (pw && fchown(dfd, pw->pw_uid, pw->pw_gid) != 0) {
      fprintf(stderr, "tether-sshd: cannot give the spool to %s: %s\n", d->cfg.user, strerror(errno));
      closedir(dd);
      return 1;
    }
  }
  closedir(dd);
  return 0;
}

/* The spool as the user we run as sees it: a file can be made there. */
static int spool_check(const sshd_t *d) {
  char probe[600];
  snprintf(probe, sizeof(probe), "%s/.probe", d->cfg.spool_dir);
  int fd = open(probe, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    fprintf(stderr, "tether-sshd: the spool %s is not writable by the user it runs as (uid %u): %s\n",
            d->cfg.spool_dir, (unsigned)geteuid(), strerror(errno));
    return 1;
  }
  close(fd);
  (void)unlink(probe);
  return 0;
}

/* Started as root: become cfg.user once every file is read (keys live in memory). */
static int drop_privileges(const sshd_t *d) {
  if (geteuid() != 0) return 0;
  struct passwd *pw = getpwnam(d->cfg.user);
  if (!pw) {
    fprintf(stderr, "tether-sshd: started as root and user '%s' does not exist (set user)\n", d->cfg.user);
    return 1;
  }
  if (setgroups(0, NULL) != 0 || setgid(pw->pw_gid) != 0 || setuid(pw->pw_uid) != 0 || setuid(0) == 0) {
    fprintf(stderr, "tether-sshd: cannot become %s: %s\n", d->cfg.user, strerror(errno));
    return 1;
  }
  TT_INFO(SSHD_MOD, "running unprivileged", "user=%s uid=%u", d->cfg.user, (unsigned)pw->pw_uid);
  return 0;
}

static void on_stop(uv_signal_t *s, int sig) {
  sshd_t *d = s->data;
  TT_INFO(SSHD_MOD, "stopping", "signal=%d", sig);
  d->stopping = true;
  uv_poll_stop(&d->listen_poll);
  uv_close((uv_handle_t *)&d->listen_poll, NULL);
  close(d->listen_fd);
  /* Each is freed on its own zero timer, which runs before the loop ends. */
  for (gw_conn_t *c = d->conns; c; c = c->next) gw_conn_end(c, "the gateway is stopping");
  blink_close(&d->ctl, "stopping");
  uv_close((uv_handle_t *)&d->ctl_timer, NULL);
  uv_close((uv_handle_t *)&d->ctl_watch, NULL);
  uv_close((uv_handle_t *)&d->accept_timer, NULL);
  uv_close((uv_handle_t *)&d->sigint, NULL);
  uv_close((uv_handle_t *)&d->sigterm, NULL);
}

int main(int argc, char **argv) {
  static sshd_t d;
  tt_cli_t cli = {.prog = "tether-sshd", .usage = usage, .config_path = "/etc/tether/sshd.conf",
                  .switches = switches};
  tt_cli_args_t args;
  int rc = tt_cli_parse(&cli, opts, NOPTS, &d.cfg, argc, argv, &args);
  if (rc) return 2;
  if (args.help) {
    tt_cli_help(&cli, opts, NOPTS);
    return 0;
  }
  if (args.version) {
    printf("tether-sshd %s (libssh %s)\n", TT_VERSION, ssh_version(0));
    return 0;
  }
  if (args.npos) {
    fprintf(stderr, "tether-sshd: unexpected argument '%s' (see --help)\n", args.pos[0]);
    return 2;
  }
  ssh_init();
  ssh_key host = NULL;
  if (args.switches & SW_FINGERPRINT) {
    if (host_key_load(&d, false, &host)) return 1;
    printf("%s\n", d.host_fp);
    ssh_key_free(host);
    ssh_finalize();
    return 0;
  }
  tt_log_set_level((tt_log_level_t)d.cfg.log_level);
  const char *missing = !d.cfg.ca[0] ? "tls.ca (--ca)" : !d.cfg.cert[0] ? "tls.cert (--cert)"
                        : !d.cfg.key[0] ? "tls.key (--key)" : NULL;
  if (missing) {
    fprintf(stderr, "tether-sshd: %s is required\n", missing);
    return 2;
  }
  char err[512];
  tt_tls_ctx_opts_t to = {.server = false, .ca_file = d.cfg.ca, .cert_file = d.cfg.cert, .key_file = d.cfg.key};
  if (tt_tls_ctx_new(&d.tls, &to, err, sizeof(err))) {
    fprintf(stderr, "tether-sshd: %s\n", err);
    return 1;
  }
  tt_identity_t me;
  X509 *mine = SSL_CTX_get0_certificate(tt_tls_ctx_ssl(d.tls));
  if (!mine || tt_cert_identity(mine, &me) || me.role != TT_ROLE_GATEWAY) {
    fprintf(stderr, "tether-sshd: %s is not a gateway certificate (tether-certs issue gateway NAME)\n", d.cfg.cert);
    return 2;
  }
  if ((rc = tt_addr_resolve(d.cfg.broker, &d.broker_addr, d.broker_host, sizeof(d.broker_host)))) {
    fprintf(stderr, "tether-sshd: cannot resolve broker '%s': %s\n", d.cfg.broker, tt_strerror(rc));
    return 2;
  }
  if (host_key_load(&d, true, &host)) return 1;
  if (bind_setup(&d, host)) return 1; /* the bind owns the key from here */
  d.loop = uv_default_loop();
  if (listen_open(&d)) return 1;
  if (spool_setup(&d) || drop_privileges(&d)) return 1;
  if (spool_check(&d)) return 1;
  if ((rc = tt_xfer_pool_start(d.loop, 2, NULL, NULL))) {
    fprintf(stderr, "tether-sshd: cannot start the transfer threads: %s\n", tt_strerror(rc));
    return 1;
  }
  TT_INFO(SSHD_MOD, "listening", "listen=%s fingerprint=%s gateway=%s", d.cfg.listen, d.host_fp, me.name);
  tt_backoff_init(&d.backoff, 200, 10000, 0);
  uv_timer_init(d.loop, &d.ctl_timer);
  uv_timer_init(d.loop, &d.ctl_watch);
  uv_timer_init(d.loop, &d.accept_timer);
  d.ctl_timer.data = d.ctl_watch.data = d.accept_timer.data = &d;
  uv_signal_init(d.loop, &d.sigint);
  uv_signal_init(d.loop, &d.sigterm);
  d.sigint.data = d.sigterm.data = &d;
  uv_signal_start(&d.sigint, on_stop, SIGINT);
  uv_signal_start(&d.sigterm, on_stop, SIGTERM);
  signal(SIGPIPE, SIG_IGN);
  ctl_connect(&d);
  uv_run(d.loop, UV_RUN_DEFAULT);
  tt_xfer_pool_stop();
  (void)uv_loop_close(d.loop);
  ssh_bind_free(d.bind);
  free(d.keys);
  tt_tls_ctx_free(d.tls);
  ssh_finalize();
  return 0;
}
