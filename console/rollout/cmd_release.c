/* tether release add PACKAGE [--manifest FILE] [--channel NAME] [--json] (admins): a signed agent
 * release sent to the broker in parts, each waiting for the broker's count of what it holds.
 * The console does not read the manifest: the broker checks it, and the agents check it again.
 * tether release list [--json] (admins): the releases the broker keeps, newest first. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>
#include "console.h"
#include "files.h"
#include "tt/msg.h"
#include "tt/release.h"

/* The last part makes the broker hash and keep the whole package: more than one answer's wait. */
#define LAST_PART_TIMEOUT_MS 120000u
/* Redraw the progress line at most this often. */
#define DRAW_EVERY_NS 100000000ull
/* A fingerprint as the broker sends it: "sha256:" and 64 hex. */
#define KEY_MAX (7u + 64u)

static struct {
  char path[512];              /* the package, as typed */
  char manifest[TT_RELEASE_MANIFEST_MAX];
  size_t mlen;
  int fd;
  uint64_t size, sent, inflight;
  bool last;
  uint8_t *part;
  bool tty;
  progress_t prog;
  uint64_t drawn_ns;
} g_rel = {.fd = -1};

static void rel_discard(void) {
  if (g_rel.fd >= 0) close(g_rel.fd);
  free(g_rel.part);
  memset(&g_rel, 0, sizeof g_rel);
  g_rel.fd = -1;
}

/* The manifest whole, refused past TT_RELEASE_MANIFEST_MAX before it is read (a pipe is read
 * one byte past the limit, no further). */
static int read_manifest(const char *path) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return console_usage_error("cannot open the manifest %s: %s", path, strerror(errno));
  struct stat st;
  int rc = 2;
  if (fstat(fd, &st) != 0 || S_ISDIR(st.st_mode)) {
    console_usage_error("the manifest %s is not a file", path);
    goto out;
  }
  if (S_ISREG(st.st_mode) && (uint64_t)st.st_size > TT_RELEASE_MANIFEST_MAX) {
    console_usage_error("the manifest %s is %lld bytes; a manifest is at most %u (is it the package?)", path,
                        (long long)st.st_size, TT_RELEASE_MANIFEST_MAX);
    goto out;
  }
  char buf[TT_RELEASE_MANIFEST_MAX + 1];
  size_t got = 0;
  while (got < sizeof buf) {
    ssize_t k = read(fd, buf + got, sizeof buf - got);
    if (k < 0 && errno == EINTR) continue;
    if (k < 0) {
      console_usage_error("cannot read the manifest %s: %s", path, strerror(errno));
      goto out;
    }
    if (k == 0) break;
    got += (size_t)k;
  }
  if (got > TT_RELEASE_MANIFEST_MAX) {
    console_usage_error("the manifest %s is longer than %u bytes", path, TT_RELEASE_MANIFEST_MAX);
    goto out;
  }
  if (got == 0) {
    console_usage_error("the manifest %s is empty", path);
    goto out;
  }
  memcpy(g_rel.manifest, buf, got);
  g_rel.mlen = got;
  rc = 0;
out:
  close(fd);
  return rc;
}

static int add_check(console_t *c) {
  const char *pkg = c->arg[0];
  char mpath[sizeof c->cfg.manifest];
  atexit(rel_discard);
  if (!tt_text_valid(tt_text(c->cfg.channel), TT_NAME_MAX))
    return console_usage_error("--channel: a name of at most %u printable bytes", TT_NAME_MAX);
  if (strlen(pkg) >= sizeof g_rel.path) return console_usage_error("%.64s...: the path is too long", pkg);
  memcpy(g_rel.path, pkg, strlen(pkg) + 1);
  if (c->cfg.manifest[0]) snprintf(mpath, sizeof mpath, "%s", c->cfg.manifest);
  else if (strlen(pkg) + sizeof ".manifest" > sizeof mpath)
    return console_usage_error("%.64s...: the path is too long (give --manifest)", pkg);
  else snprintf(mpath, sizeof mpath, "%.*s.manifest", (int)(sizeof mpath - sizeof ".manifest"), pkg);
  if (read_manifest(mpath)) return 2;
  g_rel.fd = open(pkg, O_RDONLY | O_CLOEXEC);
  if (g_rel.fd < 0) return console_usage_error("cannot open %s: %s", pkg, strerror(errno));
  struct stat st;
  if (fstat(g_rel.fd, &st) != 0 || !S_ISREG(st.st_mode)) return console_usage_error("%s is not a file", pkg);
  if (st.st_size == 0) return console_usage_error("%s: empty package", pkg);
  if ((uint64_t)st.st_size > TT_RELEASE_SIZE_MAX)
    return console_usage_error("%s is %lld bytes; a release is at most %llu MiB", pkg, (long long)st.st_size,
                               TT_RELEASE_SIZE_MAX >> 20);
  g_rel.size = (uint64_t)st.st_size;
  if (!(g_rel.part = malloc(TT_RELEASE_PART_MAX))) return console_usage_error("out of memory");
  g_rel.tty = isatty(STDERR_FILENO);
  return 0;
}

/* The next part from where the broker said it stands; the last one says so. */
static int send_part(console_t *c) {
  uint64_t left = g_rel.size - g_rel.sent;
  size_t n = left < TT_RELEASE_PART_MAX ? (size_t)left : TT_RELEASE_PART_MAX, got = 0;
  while (got < n) {
    ssize_t k = pread(g_rel.fd, g_rel.part + got, n - got, (off_t)(g_rel.sent + got));
    if (k < 0 && errno == EINTR) continue;
    if (k < 0) {
      console_fail(c, "cannot read %s: %s", g_rel.path, strerror(errno));
      return 0;
    }
    if (k == 0) {
      console_fail(c, "%s became shorter while it was sent", g_rel.path);
      return 0;
    }
    got += (size_t)k;
  }
  Tether__ReleaseAddRequest q = TETHER__RELEASE_ADD_REQUEST__INIT;
  q.manifest.data = (uint8_t *)g_rel.manifest;
  q.manifest.len = g_rel.mlen;
  q.channel = tt_text(c->cfg.channel);
  q.offset = g_rel.sent;
  q.data.data = g_rel.part;
  q.data.len = n;
  q.last = g_rel.last = n == left;
  Tether__Request r = TETHER__REQUEST__INIT;
  r.body_case = TETHER__REQUEST__BODY_RELEASE_ADD;
  r.release_add = &q;
  int rc = console_request(c, &r, TETHER__RESPONSE__BODY_RELEASE);
  if (rc) return rc;
  g_rel.inflight = n;
  if (g_rel.last && c->timeout_ms < LAST_PART_TIMEOUT_MS) console_arm_timeout_ms(c, LAST_PART_TIMEOUT_MS);
  return 0;
}

static int add_start(console_t *c) {
  progress_init(&g_rel.prog, uv_hrtime());
  g_rel.prog.files_total = 1;
  g_rel.prog.bytes_total = g_rel.size;
  return send_part(c);
}

static unsigned term_cols(void) {
  struct winsize ws;
  return ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col ? ws.ws_col : 80u;
}

/* One line on a terminal: bytes, rate and time left, as pull and push draw them. */
static void draw(bool force) {
  uint64_t now = uv_hrtime();
  if (!g_rel.tty || (!force && now < g_rel.drawn_ns + DRAW_EVERY_NS)) return;
  g_rel.drawn_ns = now;
  g_rel.prog.bytes_done = g_rel.prog.moved = g_rel.sent;
  progress_tick(&g_rel.prog, now);
  progress_draw(&g_rel.prog, stderr, NULL, 0, 0, now, term_cols());
}

/* Every field within what a manifest allows (the text is escaped where it is shown). */
static bool release_ok(const Tether__Release *v) {
  return v && v->package.len <= TT_RELEASE_PACKAGE_MAX && v->version.len <= TT_RELEASE_VERSION_MAX &&
         v->arch.len <= TT_RELEASE_ARCH_MAX && v->channel.len <= TT_NAME_MAX && v->sha256.len <= 64 &&
         v->key.len <= KEY_MAX && v->added_by.len <= TT_NAME_MAX && v->size <= TT_RELEASE_SIZE_MAX;
}

static void release_json(FILE *o, const Tether__Release *v) {
  fputs("{\"package\":", o);
  console_json_bytes(o, v->package);
  fputs(",\"version\":", o);
  console_json_bytes(o, v->version);
  fputs(",\"arch\":", o);
  console_json_bytes(o, v->arch);
  fputs(",\"channel\":", o);
  console_json_bytes(o, v->channel);
  fputs(",\"sha256\":", o);
  console_json_bytes(o, v->sha256);
  fprintf(o, ",\"size\":%" PRIu64 ",\"downgrade\":%s,\"key\":", v->size, v->downgrade ? "true" : "false");
  console_json_bytes(o, v->key);
  fputs(",\"added_by\":", o);
  console_json_bytes(o, v->added_by);
  fputs(",\"added\":", o);
  console_json_time(o, v->added_ms);
  fputc('}', o);
}

static int add_response(console_t *c, const Tether__Response *r) {
  const Tether__Release *v = r->release;
  if (!release_ok(v)) {
    console_fail(c, "the broker's release is malformed (a field longer than a manifest allows)");
    return 0;
  }
  g_rel.sent += g_rel.inflight;
  g_rel.inflight = 0;
  if (!g_rel.last) {
    if (v->received != g_rel.sent) {
      console_fail(c, "the broker holds %" PRIu64 " bytes of the package, %" PRIu64 " were sent: stopped",
                   v->received, g_rel.sent);
      return 0;
    }
    draw(false);
    return send_part(c);
  }
  if (g_rel.tty && g_rel.prog.drawn) progress_clear(&g_rel.prog, stderr);
  if (v->size != g_rel.size) {
    console_fail(c, "the broker kept a release of %" PRIu64 " bytes, %" PRIu64 " were sent", v->size, g_rel.size);
    return 0;
  }
  if (c->json) {
    release_json(stdout, v);
    putchar('\n');
  } else {
    char ver[TT_RELEASE_VERSION_MAX * 4 + 1], arch[TT_RELEASE_ARCH_MAX * 4 + 1], chan[TT_NAME_MAX * 4 + 1],
        sha[64 * 4 + 1], key[KEY_MAX * 4 + 1];
    console_text(ver, sizeof ver, v->version);
    console_text(arch, sizeof arch, v->arch);
    console_text(chan, sizeof chan, v->channel);
    console_text(sha, sizeof sha, v->sha256);
    console_text(key, sizeof key, v->key);
    printf("release %s (%s, %s) added: sha256 %s, %" PRIu64 " bytes, signed by %s%s\n", ver, arch, chan, sha, v->size,
           key, v->downgrade ? "; it may replace a newer version (downgrade)" : "");
  }
  fflush(stdout);
  console_finish(c, 0);
  return 0;
}

const console_cmd_t console_cmd_release_add = {
    .name = "release",
    .sub = "add",
    .args = "PACKAGE [--manifest FILE] [--channel NAME] [--json]",
    .help = "admin: upload a signed agent release (the .deb and the manifest tether-certs release-sign wrote "
            "beside it, PACKAGE.manifest); rollouts offer it to the agents",
    .min_pos = 1,
    .max_pos = 1,
    .switches = CONSOLE_SW_JSON,
    .check = add_check,
    .start = add_start,
    .on_response = add_response,
};

/* ---- release list ------------------------------------------------------------------------- */

static int list_start(console_t *c) {
  Tether__ReleaseListRequest q = TETHER__RELEASE_LIST_REQUEST__INIT;
  Tether__Request r = TETHER__REQUEST__INIT;
  r.body_case = TETHER__REQUEST__BODY_RELEASE_LIST;
  r.release_list = &q;
  return console_request(c, &r, TETHER__RESPONSE__BODY_RELEASE_LIST);
}

/* The first n characters of a digest, without its "sha256:" (escaped as console_text does). */
static void digest_head(char *dst, size_t cap, ProtobufCBinaryData t, size_t n) {
  if (t.len >= 7 && memcmp(t.data, "sha256:", 7) == 0) {
    t.data += 7;
    t.len -= 7;
  }
  if (t.len > n) t.len = n;
  console_text(dst, cap, t);
  if (!dst[0]) snprintf(dst, cap, "-");
}

static int list_response(console_t *c, const Tether__Response *r) {
  const Tether__ReleaseList *l = r->release_list;
  bool ok = l && l->n_releases <= TT_RELEASES_MAX;
  for (size_t i = 0; ok && i < l->n_releases; i++) ok = release_ok(l->releases[i]);
  if (!ok) {
    console_fail(c, "the broker's list is malformed (past %u releases, or a field longer than a manifest allows)",
                 TT_RELEASES_MAX);
    return 0;
  }
  if (c->json) {
    fputs("[", stdout);
    for (size_t i = 0; i < l->n_releases; i++) {
      if (i) fputs(",\n", stdout);
      release_json(stdout, l->releases[i]);
    }
    fputs("]\n", stdout);
  } else {
    printf("%-12s %-7s %-10s %10s  %-12s %-16s %-20s %s\n", "VERSION", "ARCH", "CHANNEL", "SIZE", "SHA256", "KEY",
           "ADDED", "BY");
    for (size_t i = 0; i < l->n_releases; i++) {
      const Tether__Release *v = l->releases[i];
      char ver[TT_RELEASE_VERSION_MAX * 4 + 1], arch[TT_RELEASE_ARCH_MAX * 4 + 1], chan[TT_NAME_MAX * 4 + 1],
          size[24], sha[12 * 4 + 1], key[16 * 4 + 1], added[40], by[TT_NAME_MAX * 4 + 1];
      console_text(ver, sizeof ver, v->version);
      console_text(arch, sizeof arch, v->arch);
      console_text(chan, sizeof chan, v->channel);
      progress_bytes(size, sizeof size, v->size);
      digest_head(sha, sizeof sha, v->sha256, 12);
      digest_head(key, sizeof key, v->key, 16);
      if (v->added_ms) console_iso(added, sizeof added, v->added_ms, false);
      else snprintf(added, sizeof added, "-");
      console_text(by, sizeof by, v->added_by);
      printf("%-12s %-7s %-10s %10s  %-12s %-16s %-20s %s\n", ver, arch, chan, size, sha, key, added, by);
    }
    if (!l->n_releases) fprintf(stderr, "(no releases yet: tether release add PACKAGE)\n");
  }
  fflush(stdout);
  console_finish(c, 0);
  return 0;
}

const console_cmd_t console_cmd_release_list = {
    .name = "release",
    .sub = "list",
    .args = "[--json]",
    .help = "admin: the agent releases the broker keeps, newest first",
    .switches = CONSOLE_SW_JSON,
    .start = list_start,
    .on_response = list_response,
};

/* ---- release remove ------------------------------------------------------------------------ */

static int remove_start(console_t *c) {
  Tether__ReleaseRemoveRequest q = TETHER__RELEASE_REMOVE_REQUEST__INIT;
  const char *a = c->arg[0];
  size_t n = strlen(a), hex = strspn(a, "0123456789abcdef");
  if (n == 64 && hex == 64) {
    q.sha256 = tt_text(a);
  } else {
    q.version = tt_text(a);
    q.channel = tt_text(c->cfg.channel);
  }
  Tether__Request r = TETHER__REQUEST__INIT;
  r.body_case = TETHER__REQUEST__BODY_RELEASE_REMOVE;
  r.release_remove = &q;
  return console_request(c, &r, TETHER__RESPONSE__BODY_RELEASE_LIST);
}

static int remove_check(console_t *c) {
  if (!tt_text_valid(tt_text(c->arg[0]), TT_RELEASE_VERSION_MAX))
    return console_usage_error("'%s': name a release by its version or its sha256 (tether release list)", c->arg[0]);
  if (!tt_text_valid(tt_text(c->cfg.channel), TT_NAME_MAX))
    return console_usage_error("--channel: a name of at most %u printable bytes", TT_NAME_MAX);
  return 0;
}

const console_cmd_t console_cmd_release_remove = {
    .name = "release",
    .sub = "remove",
    .args = "VERSION|SHA256 [--channel NAME] [--json]",
    .help = "admin: remove releases and their packages: one by its sha256, or a version of a channel (every "
            "architecture); refused while the active rollout may still offer it",
    .min_pos = 1,
    .max_pos = 1,
    .switches = CONSOLE_SW_JSON,
    .check = remove_check,
    .start = remove_start,
    .on_response = list_response,
};
