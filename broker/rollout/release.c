/* Agent releases the broker keeps: `tether release add` (admins) uploads a package and its
 * signed manifest in parts; the broker checks the manifest (its signature too when
 * release.keys is set), writes the package to DATA_DIR/releases/.upload-N on libuv's thread
 * pool with a running sha256, and once the last part makes it whole and it matches the
 * manifest, renames it to SHA.pkg and records the release (audited) in the store. The list
 * stays in memory for rollouts (at most TT_RELEASES_MAX). The broker never makes a manifest:
 * agents check each one against the release keys they were given. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>
#include "rollout.h"
#include "tt/hex.h"
#include "tt/log.h"
#include "tt/msg.h"

#define MOD "release"
/* Uploads in progress at once, broker-wide. */
#define UPLOADS_MAX 4u
/* A release add keeps this much free on the data directory's file system besides the package. */
#define FREE_MARGIN (64ull * 1024 * 1024)

struct broker_upload_s {
  broker_conn_t *c;       /* NULL once dropped (the connection went, or a new upload began)
                             while a write was out */
  broker_conn_t *owner;   /* whose c->work the write in flight holds */
  broker_t *b;
  tt_release_t m;
  char manifest[TT_RELEASE_MANIFEST_MAX + 1];
  size_t mlen;
  char channel[STORE_NAME_MAX];
  char part[640];         /* DATA_DIR/releases/.upload-N */
  int fd;
  EVP_MD_CTX *sha;
  uint64_t received;
  uint64_t last_ms;
  bool busy;              /* a write is on the thread pool */
  /* the write in flight */
  uv_work_t work;
  uint8_t data[TT_RELEASE_PART_MAX];
  size_t len;
  bool last;
  uint32_t id;
  int rc;
  char why[160];
  uint8_t digest[32];
};

const char *ro_state_name(ro_state_t s) {
  static const char *const names[RO__COUNT] = {"pending",   "offered", "downloading", "verified",
                                               "installing", "installed", "current", "refused",
                                               "failed",    "rolled-back", "skipped"};
  return (unsigned)s < RO__COUNT ? names[s] : "?";
}

void ro_release_path(broker_t *b, const char *sha, char *out, size_t cap) {
  snprintf(out, cap, "%s/%.64s.pkg", b->ro->dir, sha);
}

const store_release_t *ro_release_find(broker_t *b, const char *version, const char *arch, const char *channel) {
  for (size_t i = 0; i < b->ro->nrel; i++) {
    const store_release_t *r = &b->ro->rel[i];
    if (!strcmp(r->version, version) && !strcmp(r->arch, arch) && (!channel || !strcmp(r->channel, channel)))
      return r;
  }
  return NULL;
}

const store_release_t *ro_release_by_sha(broker_t *b, const char *sha) {
  for (size_t i = 0; i < b->ro->nrel; i++)
    if (!strcmp(b->ro->rel[i].sha256, sha)) return &b->ro->rel[i];
  return NULL;
}

/* ---- start and stop -------------------------------------------------------------------- */

static int load_cb(void *ctx, const store_release_t *r) {
  broker_t *b = ctx;
  if (b->ro->nrel >= TT_RELEASES_MAX) return 1;
  b->ro->rel[b->ro->nrel++] = *r;
  return 0;
}

/* Uploads a stop cut short leave their part files: nothing resumes them. */
static void drop_stale_parts(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return;
  struct dirent *e;
  while ((e = readdir(d)) != NULL)
    if (!strncmp(e->d_name, ".upload-", 8) && unlinkat(dirfd(d), e->d_name, 0) == 0)
      TT_INFO(MOD, "unfinished upload removed", "file=%s", e->d_name);
  closedir(d);
}


int broker_rollout_init(broker_t *b, broker_store_t *s, char *err, size_t cap) {
  struct broker_rollout_s *ro = calloc(1, sizeof *ro);
  if (!ro || !(ro->rel = calloc(TT_RELEASES_MAX, sizeof *ro->rel))) {
    free(ro);
    snprintf(err, cap, "out of memory for the releases");
    return TT_ENOMEM;
  }
  b->ro = ro;
  snprintf(ro->dir, sizeof ro->dir, "%s/releases", b->cfg.data_dir);
  if (mkdir(ro->dir, 0700) && errno != EEXIST) {
    snprintf(err, cap, "cannot make %s: %s", ro->dir, strerror(errno));
    return TT_EIO;
  }
  drop_stale_parts(ro->dir);
  if (b->cfg.release_keys[0]) {
    char why[256];
    if (tt_release_keys_load(b->cfg.release_keys, &ro->keys, why, sizeof why)) {
      snprintf(err, cap, "release.keys: %s", why);
      return TT_ECONFIG;
    }
  }
  if (store_release_list(s, load_cb, b)) {
    snprintf(err, cap, "cannot read the agent releases from the store");
    return TT_EIO;
  }
  TT_INFO(MOD, "releases", "count=%zu keys=%zu", ro->nrel, ro->keys.n);
  return ro_engine_load(b, s, err, cap);
}

void broker_rollout_free(broker_t *b) {
  if (!b->ro) return;
  tt_release_keys_free(&b->ro->keys);
  free(b->ro->rel);
  free(b->ro->dev);
  free(b->ro);
  b->ro = NULL;
}

/* ---- release add ----------------------------------------------------------------------- */

static void upload_free(struct broker_upload_s *u) {
  if (u->fd >= 0) close(u->fd);
  if (u->part[0]) unlink(u->part);
  EVP_MD_CTX_free(u->sha);
  u->b->ro->uploads--;
  free(u);
}

static void upload_drop(broker_conn_t *c) {
  struct broker_upload_s *u = c->upload;
  if (!u) return;
  c->upload = NULL;
  if (u->busy) u->c = NULL; /* the write's completion frees it */
  else upload_free(u);
}

void ro_upload_conn_gone(broker_conn_t *c) { upload_drop(c); }

/* A release as the wire carries it (strings point into r). */
static void release_wire(const store_release_t *r, uint64_t received, Tether__Release *o) {
  tether__release__init(o);
  o->package = tt_text(r->package);
  o->version = tt_text(r->version);
  o->arch = tt_text(r->arch);
  o->channel = tt_text(r->channel);
  o->sha256 = tt_text(r->sha256);
  o->size = (uint64_t)r->size;
  o->downgrade = r->downgrade;
  o->key = tt_text(r->key);
  o->added_by = tt_text(r->added_by);
  o->added_ms = (uint64_t)r->added_ms;
  o->received = received;
}

static int reply_release(broker_conn_t *c, uint32_t id, const store_release_t *r, uint64_t received) {
  Tether__Release o;
  release_wire(r, received, &o);
  Tether__Response resp = TETHER__RESPONSE__INIT;
  resp.id = id;
  resp.body_case = TETHER__RESPONSE__BODY_RELEASE;
  resp.release = &o;
  return tt_link_send(c->link, TT_K_RESPONSE, &resp.base);
}

/* The release u describes, as the store keeps it. */
static void upload_row(const struct broker_upload_s *u, const char *by, store_release_t *r) {
  memset(r, 0, sizeof *r);
  tt_hex(r->sha256, sizeof r->sha256, u->m.sha256, 32);
  snprintf(r->package, sizeof r->package, "%s", u->m.package);
  snprintf(r->version, sizeof r->version, "%s", u->m.version);
  snprintf(r->arch, sizeof r->arch, "%s", u->m.arch);
  snprintf(r->channel, sizeof r->channel, "%s", u->channel);
  r->size = (int64_t)u->m.size;
  r->downgrade = u->m.downgrade;
  char fp[65];
  tt_hex(fp, sizeof fp, u->m.key, 32);
  snprintf(r->key, sizeof r->key, "sha256:%s", fp);
  memcpy(r->manifest, u->manifest, u->mlen);
  r->manifest[u->mlen] = '\0';
  snprintf(r->added_by, sizeof r->added_by, "%s", by);
  r->added_ms = (int64_t)broker_unix_ms();
}

typedef struct {
  broker_creq_t h;
  broker_t *b;
  store_release_t r;
} add_req_t;

static int add_run(broker_store_t *s, store_req_t *rq) {
  add_req_t *x = (add_req_t *)rq;
  return store_release_add(s, &x->r);
}

static void add_done(store_req_t *rq) {
  add_req_t *x = (add_req_t *)rq;
  broker_conn_t *c = broker_creq_conn(x);
  struct broker_rollout_s *ro = x->b->ro;
  if (rq->rc == 0 && ro->nrel < TT_RELEASES_MAX) { /* the store's order: newest first */
    memmove(&ro->rel[1], &ro->rel[0], ro->nrel * sizeof ro->rel[0]);
    ro->rel[0] = x->r;
    ro->nrel++;
  } else if (rq->rc && rq->rc != -EEXIST) { /* kept only for a release the store has */
    char path[700];
    ro_release_path(x->b, x->r.sha256, path, sizeof path);
    unlink(path);
  }
  if (!c) goto out;
  int rc;
  if (rq->rc == -EEXIST)
    rc = broker_reply_error(c, x->h.id, TT_ESTATE, "that release (or that package) was added before");
  else if (rq->rc == TT_EFULL)
    rc = broker_reply_error(c, x->h.id, TT_EFULL, "the broker keeps 256 releases at most");
  else if (rq->rc)
    rc = broker_reply_error(c, x->h.id, TT_EIO, "the broker could not record the release");
  else {
    TT_INFO(MOD, "release added", "version=%s arch=%s channel=%s sha256=%s by=%s", x->r.version, x->r.arch,
            x->r.channel, x->r.sha256, x->r.added_by);
    rc = reply_release(c, x->h.id, &x->r, (uint64_t)x->r.size);
  }
  if (rc) tt_link_close(c->link, rc, "peer not reading");
out:
  free(x);
}

/* Thread pool: write the part, hash it; the last also checks, syncs and renames. */
static void write_work(uv_work_t *w) {
  struct broker_upload_s *u = w->data;
  u->rc = 0;
  size_t off = 0;
  while (off < u->len) {
    ssize_t n = write(u->fd, u->data + off, u->len - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int e = n < 0 ? errno : EIO;
      snprintf(u->why, sizeof u->why, "the broker could not write the package: %s", strerror(e));
      u->rc = e == ENOSPC ? TT_EFULL : TT_EIO;
      return;
    }
    off += (size_t)n;
  }
  if (EVP_DigestUpdate(u->sha, u->data, u->len) != 1) {
    snprintf(u->why, sizeof u->why, "sha256 failed");
    u->rc = TT_EIO;
    return;
  }
  if (!u->last) return;
  unsigned dl = 0;
  if (EVP_DigestFinal_ex(u->sha, u->digest, &dl) != 1) {
    snprintf(u->why, sizeof u->why, "sha256 failed");
    u->rc = TT_EIO;
    return;
  }
  if (memcmp(u->digest, u->m.sha256, 32) != 0) {
    snprintf(u->why, sizeof u->why, "the package's sha256 is not the one its manifest signs");
    u->rc = TT_EINVAL;
    return;
  }
  char hex[65], path[700];
  tt_hex(hex, sizeof hex, u->digest, 32);
  ro_release_path(u->b, hex, path, sizeof path);
  if (fsync(u->fd) || link(u->part, path)) {
    int e = errno;
    snprintf(u->why, sizeof u->why, e == EEXIST ? "that package was added before" : "cannot keep the package: %s",
             strerror(e));
    u->rc = e == EEXIST ? TT_ESTATE : TT_EIO;
    return;
  }
  int dfd = open(u->b->ro->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    (void)fsync(dfd);
    close(dfd);
  }
}

static void write_done(uv_work_t *w, int status) {
  struct broker_upload_s *u = w->data;
  broker_conn_t *c = u->c;
  u->busy = false;
  /* The write held its connection's work count, dropped or not: give it back first. */
  bool alive = broker_conn_work_done(u->owner);
  if (!c || !alive) {
    upload_free(u);
    return;
  }
  if (status) u->rc = TT_EIO, snprintf(u->why, sizeof u->why, "the broker could not write the package");
  int rc;
  if (u->rc) {
    TT_WARN(MOD, "release upload failed", "by=%s why=\"%s\"", c->id.name, u->why);
    rc = broker_reply_error(c, u->id, u->rc, u->why);
    upload_drop(c);
  } else if (!u->last) {
    u->received += u->len;
    store_release_t r;
    upload_row(u, c->id.name, &r);
    rc = reply_release(c, u->id, &r, u->received);
  } else {
    add_req_t *x = broker_creq_new(c, u->id, sizeof *x, STORE_LANE_WRITE, add_run, add_done, "release_add");
    if (!x) {
      rc = broker_reply_error(c, u->id, TT_ENOMEM, "out of memory");
    } else {
      x->b = c->b;
      upload_row(u, c->id.name, &x->r);
      char size[24];
      snprintf(size, sizeof size, "%" PRId64, x->r.size);
      x->h.req.audit = &x->h.audit;
      broker_audit_rec(&x->h.audit, c->id.name, "release-add", x->r.version, "package", x->r.package, "arch",
                       x->r.arch, "channel", x->r.channel, "sha256", x->r.sha256, "size", size, "key", x->r.key,
                       "downgrade", x->r.downgrade ? "yes" : "no", AUDIT_END);
      rc = broker_creq_submit(x);
    }
    upload_drop(c); /* the part file goes; the package is SHA.pkg now */
  }
  if (rc) tt_link_close(c->link, rc, "peer not reading");
}

static bool channel_ok(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n > 32) return false;
  for (size_t i = 0; i < n; i++)
    if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-' || s[i] == '_' || s[i] == '.'))
      return false;
  return true;
}

/* The first part: the manifest checked, room on disk, the part file made. */
static int upload_begin(broker_conn_t *c, uint32_t id, const Tether__ReleaseAddRequest *q) {
  broker_t *b = c->b;
  struct broker_rollout_s *ro = b->ro;
  char why[256];
  if (q->manifest.len == 0 || q->manifest.len > TT_RELEASE_MANIFEST_MAX)
    return broker_reply_error(c, id, TT_ETOOBIG, "a release needs its manifest (at most 1024 bytes)");
  char channel[STORE_NAME_MAX] = "stable";
  if (q->channel.len && (tt_text_copy(channel, sizeof channel, q->channel) || !channel_ok(channel)))
    return broker_reply_error(c, id, TT_EINVAL, "a channel is 1-32 of a-z 0-9 . _ -");
  tt_release_t m;
  int rc = ro->keys.n ? tt_release_verify((const char *)q->manifest.data, q->manifest.len, &ro->keys, &m, why, sizeof why)
                      : tt_release_parse((const char *)q->manifest.data, q->manifest.len, &m, why, sizeof why);
  if (rc) {
    char msg[320];
    snprintf(msg, sizeof msg, "manifest refused: %s", why);
    broker_audit(b, c->id.name, "release-refused", "", "why", msg, AUDIT_END);
    return broker_reply_error(c, id, rc == TT_EDENIED ? TT_EDENIED : TT_EINVAL, msg);
  }
  if (strcmp(m.package, "tether-agent"))
    return broker_reply_error(c, id, TT_EINVAL, "the broker rolls out tether-agent packages only");
  char hex[65];
  tt_hex(hex, sizeof hex, m.sha256, 32);
  if (ro_release_by_sha(b, hex) || ro_release_find(b, m.version, m.arch, channel))
    return broker_reply_error(c, id, TT_ESTATE, "that release (or that package) was added before");
  if (ro->nrel >= TT_RELEASES_MAX) return broker_reply_error(c, id, TT_EFULL, "the broker keeps 256 releases at most");
  if (ro->uploads >= UPLOADS_MAX) return broker_reply_error(c, id, TT_EBUSY, "other uploads are in progress");
  struct statvfs fs;
  if (statvfs(ro->dir, &fs) == 0 && (uint64_t)fs.f_bavail * fs.f_frsize < m.size + FREE_MARGIN) {
    snprintf(why, sizeof why, "the broker's disk has %llu MB free: not enough for a %llu MB package",
             (unsigned long long)((uint64_t)fs.f_bavail * fs.f_frsize >> 20), (unsigned long long)(m.size >> 20));
    return broker_reply_error(c, id, TT_EFULL, why);
  }
  struct broker_upload_s *u = calloc(1, sizeof *u);
  if (!u) return broker_reply_error(c, id, TT_ENOMEM, "out of memory");
  u->c = u->owner = c;
  u->b = b;
  u->m = m;
  memcpy(u->manifest, q->manifest.data, q->manifest.len);
  u->mlen = q->manifest.len;
  snprintf(u->channel, sizeof u->channel, "%s", channel);
  snprintf(u->part, sizeof u->part, "%s/.upload-%" PRIu64, ro->dir, ++ro->upload_seq);
  u->fd = open(u->part, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  u->sha = EVP_MD_CTX_new();
  ro->uploads++;
  if (u->fd < 0 || !u->sha || EVP_DigestInit_ex(u->sha, EVP_sha256(), NULL) != 1) {
    int e = errno;
    if (u->fd < 0) u->part[0] = '\0';
    upload_free(u);
    snprintf(why, sizeof why, "the broker cannot make the package's file: %s", strerror(e));
    return broker_reply_error(c, id, TT_EIO, why);
  }
  c->upload = u;
  return 0;
}

static int on_add(broker_conn_t *c, uint32_t id, const Tether__ReleaseAddRequest *q) {
  if (q->offset == 0) {
    upload_drop(c); /* a new upload replaces one this console gave up on */
    int rc = upload_begin(c, id, q);
    if (rc || !c->upload) return rc;
  }
  struct broker_upload_s *u = c->upload;
  if (!u) return broker_reply_error(c, id, TT_ESTATE, "no upload in progress here: start again from the beginning");
  if (u->busy) return broker_reply_error(c, id, TT_EBUSY, "one part at a time");
  if (q->manifest.len != u->mlen || memcmp(q->manifest.data, u->manifest, u->mlen)) {
    upload_drop(c);
    return broker_reply_error(c, id, TT_EINVAL, "every part carries the same manifest");
  }
  char why[200] = "";
  if (q->data.len > u->m.size - u->received)
    snprintf(why, sizeof why, "the package is larger than the %llu bytes (size) its manifest signs",
             (unsigned long long)u->m.size);
  else if (q->last && u->received + q->data.len != u->m.size)
    snprintf(why, sizeof why, "the package is smaller than the %llu bytes (size) its manifest signs",
             (unsigned long long)u->m.size);
  else if (q->offset != u->received || q->data.len > TT_RELEASE_PART_MAX || (!q->last && q->data.len == 0))
    snprintf(why, sizeof why, "a part at %llu of %zu bytes: the broker holds %llu bytes, parts are 1 to %u bytes",
             (unsigned long long)q->offset, q->data.len, (unsigned long long)u->received, TT_RELEASE_PART_MAX);
  if (why[0]) {
    upload_drop(c);
    return broker_reply_error(c, id, TT_EINVAL, why);
  }
  memcpy(u->data, q->data.data, q->data.len);
  u->len = q->data.len;
  u->last = q->last;
  u->id = id;
  u->last_ms = uv_now(c->b->loop);
  u->work.data = u;
  if (uv_queue_work(c->b->loop, &u->work, write_work, write_done)) {
    upload_drop(c);
    return broker_reply_error(c, id, TT_EBUSY, "the broker is busy: try again");
  }
  u->busy = true;
  c->work++;
  return 0;
}

/* Once a second: an upload that has not moved in TT_RELEASE_UPLOAD_IDLE_MS goes. */
void ro_upload_sweep(broker_t *b, uint64_t now) {
  for (broker_conn_t *c = b->conns; c; c = c->next)
    if (c->upload && !c->upload->busy && now - c->upload->last_ms > TT_RELEASE_UPLOAD_IDLE_MS) {
      TT_INFO(MOD, "idle upload dropped", "by=%s received=%" PRIu64, c->id.name, c->upload->received);
      upload_drop(c);
    }
}

/* ---- release list ---------------------------------------------------------------------- */

static int send_list(broker_conn_t *c, uint32_t id, const store_release_t *rel, size_t n) {
  Tether__Release *o = calloc(n ? n : 1, sizeof *o);
  Tether__Release **p = calloc(n ? n : 1, sizeof *p);
  if (!o || !p) {
    free(o);
    free(p);
    return broker_reply_error(c, id, TT_ENOMEM, "out of memory");
  }
  for (size_t i = 0; i < n; i++) {
    release_wire(&rel[i], (uint64_t)rel[i].size, &o[i]);
    p[i] = &o[i];
  }
  Tether__ReleaseList l = TETHER__RELEASE_LIST__INIT;
  l.releases = p;
  l.n_releases = n;
  Tether__Response resp = TETHER__RESPONSE__INIT;
  resp.id = id;
  resp.body_case = TETHER__RESPONSE__BODY_RELEASE_LIST;
  resp.release_list = &l;
  int rc = tt_link_send(c->link, TT_K_RESPONSE, &resp.base);
  free(o);
  free(p);
  return rc;
}

static int on_list(broker_conn_t *c, uint32_t id) { return send_list(c, id, c->b->ro->rel, c->b->ro->nrel); }

/* ---- release remove ------------------------------------------------------------------------ */

typedef struct {
  broker_creq_t h;
  broker_t *b;
  size_t n;
  store_release_t rel[]; /* n */
} remove_req_t;

static int remove_run(broker_store_t *s, store_req_t *rq) {
  remove_req_t *x = (remove_req_t *)rq;
  for (size_t i = 0; i < x->n; i++) {
    int rc = store_release_remove(s, x->rel[i].sha256);
    if (rc) return rc;
  }
  return 0;
}

static void remove_done(store_req_t *rq) {
  remove_req_t *x = (remove_req_t *)rq;
  struct broker_rollout_s *ro = x->b->ro;
  broker_conn_t *c = broker_creq_conn(x);
  if (rq->rc == 0) {
    for (size_t i = 0; i < x->n; i++) {
      char path[700];
      ro_release_path(x->b, x->rel[i].sha256, path, sizeof path);
      /* On the loop, as at start: one unlink of a file the broker made. */
      if (unlink(path) && errno != ENOENT)
        TT_WARN(MOD, "release file not removed", "file=%s err=%s", path, strerror(errno));
      for (size_t k = 0; k < ro->nrel; k++)
        if (!strcmp(ro->rel[k].sha256, x->rel[i].sha256)) {
          memmove(&ro->rel[k], &ro->rel[k + 1], (ro->nrel - k - 1) * sizeof ro->rel[0]);
          ro->nrel--;
          break;
        }
      TT_INFO(MOD, "release removed", "version=%s arch=%s channel=%s sha256=%s", x->rel[i].version, x->rel[i].arch,
              x->rel[i].channel, x->rel[i].sha256);
    }
  }
  if (c) {
    int rc = rq->rc ? broker_reply_error(c, x->h.id, TT_EIO, "the broker could not remove the release")
                    : send_list(c, x->h.id, x->rel, x->n);
    if (rc) tt_link_close(c->link, rc, "peer not reading");
  }
  free(x);
}

static bool hex64(const char *s) {
  if (strlen(s) != 64) return false;
  for (size_t i = 0; i < 64; i++)
    if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return false;
  return true;
}

static int on_remove(broker_conn_t *c, uint32_t id, const Tether__ReleaseRemoveRequest *q) {
  struct broker_rollout_s *ro = c->b->ro;
  char sha[65] = "", version[TT_RELEASE_VERSION_MAX + 1] = "", channel[STORE_NAME_MAX] = "stable";
  if (!q || tt_text_copy(sha, sizeof sha, q->sha256) || tt_text_copy(version, sizeof version, q->version) ||
      (q->channel.len && tt_text_copy(channel, sizeof channel, q->channel)) || (!sha[0] == !version[0]) ||
      (sha[0] && !hex64(sha)))
    return broker_reply_error(c, id, TT_EINVAL, "name a release by its sha256 (64 hex) or by its version");
  size_t n = 0;
  for (size_t i = 0; i < ro->nrel; i++)
    if (sha[0] ? !strcmp(ro->rel[i].sha256, sha)
               : !strcmp(ro->rel[i].version, version) && !strcmp(ro->rel[i].channel, channel))
      n++;
  if (n == 0) return broker_reply_error(c, id, TT_ENOTFOUND, "no such release");
  remove_req_t *x = broker_creq_new(c, id, sizeof *x + n * sizeof x->rel[0], STORE_LANE_WRITE, remove_run, remove_done,
                                    "release_remove");
  if (!x) return broker_reply_error(c, id, TT_ENOMEM, "out of memory");
  x->b = c->b;
  for (size_t i = 0; i < ro->nrel; i++) {
    const store_release_t *r = &ro->rel[i];
    if (sha[0] ? strcmp(r->sha256, sha) : strcmp(r->version, version) || strcmp(r->channel, channel)) continue;
    char why[TT_TEXT_MAX];
    if (ro_release_in_use(c->b, r, why, sizeof why)) {
      free(x);
      return broker_reply_error(c, id, TT_ESTATE, why);
    }
    x->rel[x->n++] = *r;
  }
  /* One entry names what went: the version, and each package's sha256. */
  char list[TT_TEXT_MAX] = "";
  for (size_t i = 0, off = 0; i < x->n && off + 18 < sizeof list; i++)
    off += (size_t)snprintf(list + off, sizeof list - off, "%s%.12s", i ? "," : "", x->rel[i].sha256);
  x->h.req.audit = &x->h.audit;
  broker_audit_rec(&x->h.audit, c->id.name, "release-remove", x->rel[0].version, "channel", x->rel[0].channel,
                   "sha256", list, AUDIT_END);
  return broker_creq_submit(x);
}

int broker_release_request(broker_conn_t *c, const Tether__Request *q) {
  if (q->body_case == TETHER__REQUEST__BODY_RELEASE_ADD && q->release_add) return on_add(c, q->id, q->release_add);
  if (q->body_case == TETHER__REQUEST__BODY_RELEASE_LIST) return on_list(c, q->id);
  if (q->body_case == TETHER__REQUEST__BODY_RELEASE_REMOVE) return on_remove(c, q->id, q->release_remove);
  return broker_reply_error(c, q->id, TT_EPROTO, "malformed release request");
}
