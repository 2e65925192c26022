/* The agent's side of a rollout (upgrade.h): the offer's checks, the downloads, the hand-over
 * to the guard, and the reports. Nothing here trusts the broker: a manifest must verify
 * under a key of upgrade.release_keys, name tether-agent, this architecture, and a version
 * newer than this one (unless it allows a downgrade); the bytes must be what it signs. A
 * refusal or a failure leaves the running agent as it was. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>
#include "upgrade.h"
#include "tt/hex.h"
#include "tt/log.h"
#include "tt/msg.h"
#include "tt/utf8.h"

#define MOD "upgrade"
#define REPORT_TIMEOUT_MS 15000u
#define PROGRESS_MS 30000u
/* While the guard works, this agent looks every GUARD_WATCH_MS for its end. */
#define GUARD_WATCH_MS 2000u
/* The guard's longest run: the health deadline, the installer's timeout twice (the package
 * and the one to go back to) and a minute. Past it, the agent that handed over and is
 * still here stops waiting and takes offers again. */
#define GUARD_SLACK_MS (21u * 60u * 1000u)

typedef enum { UP_IDLE = 0, UP_FETCH, UP_FETCH_ROLLBACK, UP_INSTALLING } up_state_t;

struct agent_upgrade_s {
  tt_release_keys_t keys;
  char keys_why[256];      /* why there are none */
  char dir[UPGRADE_DIR_MAX];
  up_state_t state;
  uint64_t rollout;
  uint32_t health_s;
  tt_release_t rel, rb;
  bool have_rb;            /* rb is to be downloaded (else current.pkg is the way back) */
  char manifest[TT_RELEASE_MANIFEST_MAX + 1];
  char rb_manifest[TT_RELEASE_MANIFEST_MAX + 1];
  agent_fetch_t *fetch;
  unsigned reported_quarter;
  uint64_t reported_ms;    /* uv_now of the last progress report */
  uv_timer_t timer;        /* installing: the guard's time is up; welcomed: stayed up */
  bool timer_open;
  uint64_t guard_until;    /* uv_now past which the guard is taken for gone */
  bool outcome_sent;
};

/* ---- small files ----------------------------------------------------------------------- */

void agent_upgrade_file(char *out, size_t cap, const char *dir, const uint8_t sha[32], const char *ext) {
  char hex[65];
  tt_hex(hex, sizeof hex, sha, 32);
  snprintf(out, cap, "%s/%s.%s", dir, hex, ext);
}

int agent_upgrade_read(const char *path, char *buf, size_t cap) {
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return -1;
  ssize_t n = read(fd, buf, cap - 1);
  close(fd);
  if (n < 0 || (size_t)n >= cap - 1) return -1;
  buf[n] = '\0';
  return 0;
}

int agent_upgrade_write(const char *dir, const char *name, const char *text) {
  char tmp[UPGRADE_PATH_MAX], path[UPGRADE_PATH_MAX];
  snprintf(tmp, sizeof tmp, "%s/.%s.tmp", dir, name);
  snprintf(path, sizeof path, "%s/%s", dir, name);
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return -errno;
  size_t len = strlen(text), off = 0;
  while (off < len) {
    ssize_t n = write(fd, text + off, len - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int e = n < 0 ? errno : EIO;
      close(fd);
      unlink(tmp);
      return -e;
    }
    off += (size_t)n;
  }
  if (fsync(fd) || close(fd) || rename(tmp, path)) {
    int e = errno;
    unlink(tmp);
    return -e;
  }
  int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    (void)fsync(dfd);
    close(dfd);
  }
  return 0;
}

bool agent_upgrade_value(const char *text, const char *key, char *out, size_t cap) {
  size_t kl = strlen(key);
  for (const char *p = text; p && *p;) {
    const char *eol = strchr(p, '\n');
    size_t len = eol ? (size_t)(eol - p) : strlen(p);
    if (len > kl && !strncmp(p, key, kl) && p[kl] == ' ') {
      size_t v = len - kl - 1;
      if (v >= cap) v = cap - 1;
      memcpy(out, p + kl + 1, v);
      out[v] = '\0';
      return true;
    }
    p = eol ? eol + 1 : NULL;
  }
  return false;
}

/* Text for the broker: valid UTF-8 (tt_utf8_sanitize), control characters as spaces. */
static void fit(char *out, size_t cap, const char *in) {
  tt_utf8_sanitize(out, cap, in, strlen(in));
  for (char *p = out; *p; p++)
    if ((unsigned char)*p < 0x20 || *p == 0x7f) *p = ' ';
}

/* ---- reports ----------------------------------------------------------------------------- */

typedef struct {
  agent_t *a;
  bool launch;  /* INSTALLING: the guard starts once the broker has the report (or not) */
  bool outcome; /* an outcome file: removed once the broker has it */
} report_ctx_t;

static void launch_guard(agent_t *a);

/* An install that will not start after all: the pending file goes, the agent is idle. */
static void abandon_install(agent_t *a) {
  struct agent_upgrade_s *u = a->upgrade;
  char path[UPGRADE_PATH_MAX];
  snprintf(path, sizeof path, "%s/%s", u->dir, UPGRADE_PENDING);
  unlink(path);
  u->state = UP_IDLE;
}

static void report_done(void *data, const Tether__Response *r, int err) {
  report_ctx_t *x = data;
  agent_t *a = x->a;
  if (x->outcome && !err && r && !r->error) {
    char path[UPGRADE_PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", a->upgrade->dir, UPGRADE_OUTCOME);
    unlink(path);
  }
  if (x->launch) {
    /* The guard starts only on the broker's yes: a rollout paused or cancelled meanwhile
     * (or a broker gone) says no, and the agent runs on as it was; the checked packages
     * stay for the next offer. */
    if (!err && r && !r->error) {
      launch_guard(a);
    } else {
      char why[TT_TEXT_MAX + 1] = "";
      if (r && r->error && tt_text_copy(why, sizeof why, r->error->message)) why[0] = '\0';
      TT_WARN(MOD, "install not started", "rollout=%" PRIu64 " why=\"%s\"", a->upgrade->rollout,
              why[0] ? why : tt_errname(err ? err : TT_EPEER));
      abandon_install(a);
    }
  }
  free(x);
}

static void report(agent_t *a, Tether__UpgradeStep step, const char *reason, uint64_t done, uint64_t size,
                   bool launch, bool outcome) {
  struct agent_upgrade_s *u = a->upgrade;
  report_ctx_t *x = calloc(1, sizeof *x);
  if (x) x->a = a, x->launch = launch, x->outcome = outcome;
  if (!a->link || !a->welcomed || !x) {
    free(x);
    if (launch) abandon_install(a);
    return;
  }
  Tether__UpgradeReport rp = TETHER__UPGRADE_REPORT__INIT;
  rp.rollout = u->rollout;
  rp.step = step;
  char why[TT_TEXT_MAX + 1];
  fit(why, sizeof why, reason ? reason : "");
  rp.reason = tt_text(why);
  rp.done = done;
  rp.size = size;
  rp.version = tt_text(agent_version);
  Tether__Request q = TETHER__REQUEST__INIT;
  q.body_case = TETHER__REQUEST__BODY_UPGRADE_REPORT;
  q.upgrade_report = &rp;
  if (agent_reqs_send(&a->reqs, a->link, &q, REPORT_TIMEOUT_MS, report_done, x)) {
    free(x);
    if (launch) abandon_install(a);
  }
}

static void fail(agent_t *a, Tether__UpgradeStep step, const char *fmt, ...) TT_PRINTF(3, 4);
static void fail(agent_t *a, Tether__UpgradeStep step, const char *fmt, ...) {
  char why[TT_TEXT_MAX + 1];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(why, sizeof why, fmt, ap);
  va_end(ap);
  struct agent_upgrade_s *u = a->upgrade;
  TT_WARN(MOD, step == TETHER__UPGRADE_STEP__UPGRADE_REFUSED ? "upgrade refused" : "upgrade failed",
          "rollout=%" PRIu64 " why=\"%s\"", u->rollout, why);
  if (u->fetch) agent_fetch_free(u->fetch), u->fetch = NULL;
  u->state = UP_IDLE;
  report(a, step, why, 0, 0, false, false);
}

/* ---- the offer ---------------------------------------------------------------------------- */

static void answer(agent_t *a, uint32_t id, Tether__UpgradeStep step, const char *why) {
  Tether__UpgradeReport rp = TETHER__UPGRADE_REPORT__INIT;
  rp.rollout = a->upgrade->rollout;
  rp.step = step;
  char w[TT_TEXT_MAX + 1];
  fit(w, sizeof w, why ? why : "");
  rp.reason = tt_text(w);
  rp.size = a->upgrade->rel.size;
  rp.version = tt_text(agent_version);
  Tether__Response r = TETHER__RESPONSE__INIT;
  r.id = id;
  r.body_case = TETHER__RESPONSE__BODY_UPGRADE;
  r.upgrade = &rp;
  if (tt_link_send(a->link, TT_K_RESPONSE, &r.base)) tt_link_close(a->link, TT_EIO, "cannot answer");
}

static void fetched(agent_t *a, int rc, const char *why);

static int start_fetch(agent_t *a, const tt_release_t *r, char *why, size_t cap) {
  return agent_fetch_start(a, a->upgrade->dir, r, fetched, &a->upgrade->fetch, why, cap);
}

/* Why the offer cannot be taken ("" when it can); fills u->rel, u->rb, u->have_rb. */
static void check_offer(agent_t *a, const Tether__UpgradeOffer *o, char *why, size_t cap) {
  struct agent_upgrade_s *u = a->upgrade;
  char err[256];
  why[0] = '\0';
  if (u->keys.n == 0) {
    snprintf(why, cap, "no release key: %.200s", u->keys_why);
    return;
  }
  if (tt_release_verify((const char *)o->manifest.data, o->manifest.len, &u->keys, &u->rel, err, sizeof err)) {
    snprintf(why, cap, "manifest refused: %.200s", err);
    return;
  }
  if (strcmp(u->rel.package, "tether-agent")) {
    snprintf(why, cap, "the release is of %s, not tether-agent", u->rel.package);
    return;
  }
  if (strcmp(u->rel.arch, tt_release_arch())) {
    snprintf(why, cap, "the release is for %s; this agent is %s", u->rel.arch, tt_release_arch());
    return;
  }
  int cmp = tt_version_cmp(u->rel.version, agent_version);
  if (cmp == 0) {
    snprintf(why, cap, "%s runs here already", agent_version);
    return;
  }
  if (cmp < 0 && (!u->rel.downgrade || strcmp(u->rel.downgrade_from, agent_version))) {
    snprintf(why, cap, "%.64s is older than %s, which runs here, and the manifest allows %s%.64s", u->rel.version,
             agent_version, u->rel.downgrade ? "a downgrade only from " : "no downgrade",
             u->rel.downgrade ? u->rel.downgrade_from : "");
    return;
  }
  /* The way back: the running version's package, from the broker or kept from before. */
  u->have_rb = false;
  if (o->rollback_manifest.len) {
    if (tt_release_verify((const char *)o->rollback_manifest.data, o->rollback_manifest.len, &u->keys, &u->rb, err,
                          sizeof err)) {
      snprintf(why, cap, "the manifest to roll back to is refused: %.180s", err);
      return;
    }
    if (strcmp(u->rb.package, "tether-agent") || strcmp(u->rb.arch, tt_release_arch()) ||
        strcmp(u->rb.version, agent_version)) {
      snprintf(why, cap, "the release to roll back to is %s %s for %s, not this agent's", u->rb.package, u->rb.version,
               u->rb.arch);
      return;
    }
    u->have_rb = true;
  } else {
    char path[UPGRADE_PATH_MAX], text[TT_RELEASE_MANIFEST_MAX + 1];
    tt_release_t cur;
    snprintf(path, sizeof path, "%s/%s", u->dir, UPGRADE_CURRENT_MANIFEST);
    if (agent_upgrade_read(path, text, sizeof text) ||
        tt_release_verify(text, strlen(text), &u->keys, &cur, err, sizeof err) || strcmp(cur.version, agent_version)) {
      snprintf(why, cap, "no package of %s (which runs here) to roll back to: add it to the broker (tether release add)",
               agent_version);
      return;
    }
  }
  struct statvfs fs;
  uint64_t need = u->rel.size + (u->have_rb ? u->rb.size : 0) + UPGRADE_FREE_MARGIN;
  if (statvfs(u->dir, &fs) == 0 && (uint64_t)fs.f_bavail * fs.f_frsize < need) {
    snprintf(why, cap, "not enough disk: the download needs %" PRIu64 " MB free in %.120s, %" PRIu64 " MB are", need >> 20,
             u->dir, ((uint64_t)fs.f_bavail * fs.f_frsize) >> 20);
    return;
  }
}

void agent_upgrade_offer_request(agent_t *a, const Tether__Request *q) {
  struct agent_upgrade_s *u = a->upgrade;
  const Tether__UpgradeOffer *o = q->upgrade_offer;
  char why[TT_TEXT_MAX + 1];
  if (!o || o->manifest.len > TT_RELEASE_MANIFEST_MAX || o->rollback_manifest.len > TT_RELEASE_MANIFEST_MAX) {
    answer(a, q->id, TETHER__UPGRADE_STEP__UPGRADE_REFUSED, "a manifest longer than 1024 bytes");
    return;
  }
  if (u->state != UP_IDLE) {
    uint64_t was = u->rollout;
    u->rollout = o->rollout;
    snprintf(why, sizeof why, "an upgrade is under way here already (rollout %" PRIu64 ")", was);
    answer(a, q->id, TETHER__UPGRADE_STEP__UPGRADE_REFUSED, why);
    u->rollout = was;
    return;
  }
  char pend[UPGRADE_PATH_MAX], text[UPGRADE_FILE_MAX], dl[24] = "0";
  snprintf(pend, sizeof pend, "%s/%s", u->dir, UPGRADE_PENDING);
  /* A pending install whose guard's time is long over (the machine restarted under it) is
   * stale: it goes, and does not block upgrades for good. */
  if (agent_upgrade_read(pend, text, sizeof text) == 0 && agent_upgrade_value(text, "deadline_ms", dl, sizeof dl) &&
      agent_unix_ms() > strtoll(dl, NULL, 10) + (int64_t)GUARD_SLACK_MS) {
    TT_WARN(MOD, "stale pending upgrade removed", "file=%s", pend);
    unlink(pend);
  }
  if (access(pend, F_OK) == 0) { /* a guard still at work, or this agent new and settling */
    uint64_t was = u->rollout;
    u->rollout = o->rollout;
    answer(a, q->id, TETHER__UPGRADE_STEP__UPGRADE_REFUSED, "an upgrade of this device is still being finished");
    u->rollout = was;
    return;
  }
  u->rollout = o->rollout;
  u->health_s = o->health_s < TT_ROLLOUT_HEALTH_MIN_S   ? TT_ROLLOUT_HEALTH_MIN_S
                : o->health_s > TT_ROLLOUT_HEALTH_MAX_S ? TT_ROLLOUT_HEALTH_MAX_S
                                                        : o->health_s;
  check_offer(a, o, why, sizeof why);
  if (why[0]) {
    TT_WARN(MOD, "upgrade refused", "rollout=%" PRIu64 " why=\"%s\"", u->rollout, why);
    answer(a, q->id, TETHER__UPGRADE_STEP__UPGRADE_REFUSED, why);
    return;
  }
  memcpy(u->manifest, o->manifest.data, o->manifest.len);
  u->manifest[o->manifest.len] = '\0';
  if (u->have_rb) {
    memcpy(u->rb_manifest, o->rollback_manifest.data, o->rollback_manifest.len);
    u->rb_manifest[o->rollback_manifest.len] = '\0';
  }
  if (start_fetch(a, &u->rel, why, sizeof why)) {
    answer(a, q->id, TETHER__UPGRADE_STEP__UPGRADE_FAILED, why);
    return;
  }
  u->state = UP_FETCH;
  u->reported_quarter = 0;
  TT_INFO(MOD, "upgrade taken", "rollout=%" PRIu64 " from=%s to=%s size=%" PRIu64, u->rollout, agent_version,
          u->rel.version, u->rel.size);
  answer(a, q->id, TETHER__UPGRADE_STEP__UPGRADE_DOWNLOADING, NULL);
}

/* A download is a quarter further: the broker hears of it. */
void agent_upgrade_progress(agent_t *a, uint64_t done, uint64_t size) {
  struct agent_upgrade_s *u = a->upgrade;
  unsigned q = size ? (unsigned)(done * 4 / size) : 4;
  uint64_t now = uv_now(a->loop);
  if (u->state != UP_FETCH && u->state != UP_FETCH_ROLLBACK) return;
  /* Each quarter of the package, and every PROGRESS_MS whatever moved (the broker fails a
   * download that says nothing for minutes: a slow link must not look stalled). The
   * package to roll back to counts after the new one. */
  bool quarter = u->state == UP_FETCH && q > u->reported_quarter && q < 4;
  if (!quarter && now - u->reported_ms < PROGRESS_MS) return;
  if (quarter) u->reported_quarter = q;
  u->reported_ms = now;
  if (u->state == UP_FETCH_ROLLBACK) done = u->rel.size, size = u->rel.size;
  report(a, TETHER__UPGRADE_STEP__UPGRADE_DOWNLOADING, NULL, done, size, false, false);
}

static void fetched(agent_t *a, int rc, const char *reason) {
  struct agent_upgrade_s *u = a->upgrade;
  char why[TT_TEXT_MAX];
  snprintf(why, sizeof why, "%s", reason ? reason : ""); /* it lives in the download, freed here */
  agent_fetch_free(u->fetch);
  u->fetch = NULL;
  if (rc == TT_ECLOSED) { /* the link went: the broker offers it again and the download resumes */
    u->state = UP_IDLE;
    return;
  }
  if (rc) {
    fail(a, TETHER__UPGRADE_STEP__UPGRADE_FAILED, "%s", why);
    return;
  }
  char e[TT_TEXT_MAX];
  if (u->state == UP_FETCH && u->have_rb) {
    u->state = UP_FETCH_ROLLBACK;
    if (start_fetch(a, &u->rb, e, sizeof e)) fail(a, TETHER__UPGRADE_STEP__UPGRADE_FAILED, "%s", e);
    return;
  }
  /* Both checked: the guard takes it from here. */
  char pkg[UPGRADE_PATH_MAX], rb[UPGRADE_PATH_MAX], text[UPGRADE_FILE_MAX];
  agent_upgrade_file(pkg, sizeof pkg, u->dir, u->rel.sha256, "pkg");
  if (u->have_rb) {
    agent_upgrade_file(rb, sizeof rb, u->dir, u->rb.sha256, "pkg");
    int w = agent_upgrade_write(u->dir, "rollback.manifest", u->rb_manifest);
    if (w) {
      fail(a, TETHER__UPGRADE_STEP__UPGRADE_FAILED, "cannot keep the manifest to roll back to in %.120s: %s", u->dir,
           strerror(-w));
      return;
    }
  } else {
    snprintf(rb, sizeof rb, "%s/%s", u->dir, UPGRADE_CURRENT_PKG);
  }
  report(a, TETHER__UPGRADE_STEP__UPGRADE_VERIFIED, NULL, u->rel.size, u->rel.size, false, false);
  char healthy[UPGRADE_PATH_MAX], outcome[UPGRADE_PATH_MAX];
  snprintf(healthy, sizeof healthy, "%s/%s", u->dir, UPGRADE_HEALTHY);
  snprintf(outcome, sizeof outcome, "%s/%s", u->dir, UPGRADE_OUTCOME);
  unlink(healthy);
  unlink(outcome);
  snprintf(text, sizeof text,
           "rollout %" PRIu64 "\nfrom %s\nto %s\npackage %s\nrollback %s\nhealth_s %u\ndeadline_ms %" PRId64 "\n",
           u->rollout, agent_version, u->rel.version, pkg, rb, u->health_s,
           agent_unix_ms() + (int64_t)u->health_s * 1000);
  int w = agent_upgrade_write(u->dir, UPGRADE_PENDING, text);
  if (w || agent_upgrade_write(u->dir, "new.manifest", u->manifest)) {
    fail(a, TETHER__UPGRADE_STEP__UPGRADE_FAILED, "cannot write %s/%s: %s", u->dir, UPGRADE_PENDING, strerror(-w));
    return;
  }
  u->state = UP_INSTALLING;
  TT_INFO(MOD, "installing", "rollout=%" PRIu64 " to=%s health_s=%u", u->rollout, u->rel.version, u->health_s);
  report(a, TETHER__UPGRADE_STEP__UPGRADE_INSTALLING, NULL, u->rel.size, u->rel.size, true, false);
}

/* This agent handed over to the guard long ago and is still here: the guard did not start,
 * or ended without replacing it. It takes offers again; the broker already counts the
 * device as failed by then. */
static void guard_watch(uv_timer_t *t) {
  agent_t *a = t->data;
  struct agent_upgrade_s *u = a->upgrade;
  char path[UPGRADE_PATH_MAX], out[UPGRADE_PATH_MAX];
  if (u->state != UP_INSTALLING) {
    uv_timer_stop(t);
    return;
  }
  snprintf(path, sizeof path, "%s/%s", u->dir, UPGRADE_PENDING);
  snprintf(out, sizeof out, "%s/%s", u->dir, UPGRADE_OUTCOME);
  /* The guard ended and this agent is still the one running (nothing was installed, or
   * the install failed and put nothing back): its outcome goes to the broker now. */
  if (access(path, F_OK) != 0 && access(out, F_OK) == 0) {
    uv_timer_stop(t);
    u->state = UP_IDLE;
    agent_upgrade_welcomed(a); /* reports the outcome file */
    return;
  }
  if (uv_now(a->loop) < u->guard_until) return;
  uv_timer_stop(t);
  unlink(path);
  fail(a, TETHER__UPGRADE_STEP__UPGRADE_FAILED, "the upgrade guard did not replace this agent (%s) in time",
       agent_version);
}

/* The guard runs outside this process (and, under systemd, outside this service, whose
 * restart by the package would kill it): `tether-agent upgrade-guard`. */
static void launch_guard(agent_t *a) {
  struct agent_upgrade_s *u = a->upgrade;
  if (u->state != UP_INSTALLING) return;
  char self[AGENT_PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) {
    fail(a, TETHER__UPGRADE_STEP__UPGRADE_FAILED, "cannot find this program to run the upgrade");
    return;
  }
  self[n] = '\0';
  bool systemd = !strcmp(a->cfg.upgrade_launcher, "systemd-run") ||
                 (!strcmp(a->cfg.upgrade_launcher, "auto") && access("/run/systemd/system", F_OK) == 0 &&
                  access("/usr/bin/systemd-run", X_OK) == 0);
  char unit[64];
  snprintf(unit, sizeof unit, "--unit=tether-agent-upgrade-%" PRIu64, u->rollout);
  const char *argv_systemd[] = {"/usr/bin/systemd-run", unit, "--collect", "--quiet", "--no-block", self,
                                "upgrade-guard", "--state-dir", a->cfg.state_dir, "--upgrade-install",
                                a->cfg.upgrade_install, NULL};
  const char *argv_fork[] = {self, "upgrade-guard", "--state-dir", a->cfg.state_dir, "--upgrade-install",
                             a->cfg.upgrade_install, NULL};
  pid_t pid = fork();
  if (pid < 0) {
    fail(a, TETHER__UPGRADE_STEP__UPGRADE_FAILED, "cannot start the upgrade: %s", strerror(errno));
    return;
  }
  if (pid == 0) {
    /* A child of its own: a new session, so that nothing the agent's group gets reaches it;
     * in fork mode it forks once more and the agent does not wait for it. */
    setsid();
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    int fd = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (fd >= 0) {
      dup2(fd, 0);
      close(fd);
    }
    if (!systemd && fork() != 0) _exit(0);
    execv(systemd ? argv_systemd[0] : argv_fork[0], (char *const *)(systemd ? argv_systemd : argv_fork));
    _exit(127);
  }
  int st = 0;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  if (systemd && (!WIFEXITED(st) || WEXITSTATUS(st) != 0)) {
    fail(a, TETHER__UPGRADE_STEP__UPGRADE_FAILED, "systemd-run could not start the upgrade (status %d)", st);
    return;
  }
  TT_INFO(MOD, "upgrade guard started", "rollout=%" PRIu64 " via=%s", u->rollout, systemd ? "systemd-run" : "fork");
  u->guard_until = uv_now(a->loop) + (uint64_t)u->health_s * 1000u + GUARD_SLACK_MS;
  if (u->timer_open) uv_timer_start(&u->timer, guard_watch, GUARD_WATCH_MS, GUARD_WATCH_MS);
}

/* ---- the link ---------------------------------------------------------------------------- */

/* This agent is the new version the guard waits for, and has stayed connected since its
 * welcome for a third of the health deadline (2 s to 60 s): healthy. It says so (the file
 * the guard watches, then the broker), unless the guard gave up on it meanwhile (no pending
 * file for this version any more). */
static bool pending_for_me(struct agent_upgrade_s *u, char *roll, size_t cap, uint32_t *health_s) {
  char path[UPGRADE_PATH_MAX], text[UPGRADE_FILE_MAX], v[TT_NAME_MAX + 1], h[16] = "0";
  snprintf(path, sizeof path, "%s/%s", u->dir, UPGRADE_PENDING);
  if (agent_upgrade_read(path, text, sizeof text) || !agent_upgrade_value(text, "to", v, sizeof v) ||
      strcmp(v, agent_version))
    return false;
  if (!agent_upgrade_value(text, "rollout", roll, cap)) snprintf(roll, cap, "0");
  agent_upgrade_value(text, "health_s", h, sizeof h);
  *health_s = (uint32_t)strtoul(h, NULL, 10);
  return true;
}

static void settled(uv_timer_t *t) {
  agent_t *a = t->data;
  struct agent_upgrade_s *u = a->upgrade;
  char roll[24], line[TT_NAME_MAX + 16];
  uint32_t health_s;
  if (!a->welcomed || !pending_for_me(u, roll, sizeof roll, &health_s)) return;
  snprintf(line, sizeof line, "%s\n", agent_version);
  if (agent_upgrade_write(u->dir, UPGRADE_HEALTHY, line)) {
    TT_WARN(MOD, "cannot mark this agent healthy", "dir=%s", u->dir);
    return;
  }
  TT_INFO(MOD, "upgraded: healthy", "version=%s", agent_version);
  u->rollout = strtoull(roll, NULL, 10);
  report(a, TETHER__UPGRADE_STEP__UPGRADE_INSTALLED, NULL, 0, 0, false, false);
}

void agent_upgrade_welcomed(agent_t *a) {
  struct agent_upgrade_s *u = a->upgrade;
  char path[UPGRADE_PATH_MAX], text[UPGRADE_FILE_MAX], roll[24];
  uint32_t health_s;
  if (pending_for_me(u, roll, sizeof roll, &health_s)) {
    uint64_t settle = (uint64_t)health_s * 1000u / 3u;
    settle = settle < 2000u ? 2000u : settle > 60000u ? 60000u : settle;
    TT_INFO(MOD, "upgraded: staying up before saying healthy", "version=%s ms=%" PRIu64, agent_version, settle);
    if (u->timer_open) uv_timer_start(&u->timer, settled, settle, 0);
    return;
  }
  /* How an earlier upgrade ended, until the broker has heard it. */
  snprintf(path, sizeof path, "%s/%s", u->dir, UPGRADE_OUTCOME);
  if (agent_upgrade_read(path, text, sizeof text) == 0) {
    char step[24] = "", reason[TT_TEXT_MAX + 1] = "";
    agent_upgrade_value(text, "step", step, sizeof step);
    agent_upgrade_value(text, "reason", reason, sizeof reason);
    if (agent_upgrade_value(text, "rollout", roll, sizeof roll)) u->rollout = strtoull(roll, NULL, 10);
    Tether__UpgradeStep s = !strcmp(step, "installed")     ? TETHER__UPGRADE_STEP__UPGRADE_INSTALLED
                            : !strcmp(step, "rolled-back") ? TETHER__UPGRADE_STEP__UPGRADE_ROLLED_BACK
                                                           : TETHER__UPGRADE_STEP__UPGRADE_FAILED;
    TT_INFO(MOD, "upgrade outcome", "rollout=%" PRIu64 " step=%s reason=\"%s\"", u->rollout, step, reason);
    report(a, s, reason, 0, 0, false, true);
  }
}

/* The link went: a new agent that had not stayed up long enough starts again at the next
 * welcome. */
void agent_upgrade_link_down(agent_t *a) {
  struct agent_upgrade_s *u = a->upgrade;
  if (u && u->timer_open && u->state != UP_INSTALLING) uv_timer_stop(&u->timer);
}

/* ---- start and stop ---------------------------------------------------------------------- */

void agent_upgrade_init(agent_t *a) {
  struct agent_upgrade_s *u = calloc(1, sizeof *u);
  if (!u) abort(); /* at start: nothing runs yet */
  a->upgrade = u;
  snprintf(u->dir, sizeof u->dir, "%.*s/%s", (int)(AGENT_PATH_MAX - 1), a->cfg.state_dir, UPGRADE_DIR);
  uv_timer_init(a->loop, &u->timer);
  u->timer.data = a;
  u->timer_open = true;
  if (mkdir(u->dir, 0700) && errno != EEXIST)
    TT_WARN(MOD, "cannot make the upgrade directory", "dir=%s err=%s", u->dir, strerror(errno));
  if (!a->cfg.upgrade_release_keys[0]) {
    snprintf(u->keys_why, sizeof u->keys_why, "upgrade.release_keys is not set");
  } else if (tt_release_keys_load(a->cfg.upgrade_release_keys, &u->keys, u->keys_why, sizeof u->keys_why)) {
    TT_WARN(MOD, "no release keys: upgrades are refused", "file=%s why=\"%s\"", a->cfg.upgrade_release_keys,
            u->keys_why);
  } else {
    TT_INFO(MOD, "release keys", "file=%s keys=%zu", a->cfg.upgrade_release_keys, u->keys.n);
  }
}

void agent_upgrade_close(agent_t *a) {
  struct agent_upgrade_s *u = a->upgrade;
  if (!u) return;
  if (u->fetch) {
    agent_fetch_free(u->fetch);
    u->fetch = NULL;
  }
  if (u->timer_open) {
    uv_close((uv_handle_t *)&u->timer, NULL);
    u->timer_open = false;
  }
}

void agent_upgrade_free(agent_t *a) {
  if (!a->upgrade) return;
  tt_release_keys_free(&a->upgrade->keys);
  free(a->upgrade);
  a->upgrade = NULL;
}
