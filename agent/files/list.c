/* LIST and MKDIR on the device, run on a transfer pool thread as shell.user. A listing is
 * gathered whole before anything is sent, so that a tree over the limits is an error and
 * never a list that looks complete and is not; it is then cut into FILE_ENTRIES batches
 * that each fit one in-band control frame. Entries are sorted by name per directory, the
 * tree walked depth first without following symbolic links (each is listed as a link). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "files.h"
#include "tt/log.h"

/* Owner and group names one listing remembers; past it, the rest go as numbers. */
#define NAMES_CACHED 64u
#define NO_TEXT UINT32_MAX

typedef struct {
  uint32_t path, link, owner, group; /* offsets into text (NO_TEXT: none) */
  uint32_t mode;
  Tether__FileKind kind;
  uint64_t size;
  int64_t mtime_ns;
} entry_t;

typedef struct {
  uint32_t id;
  uint32_t off;
} name_t;

struct agent_files_list_s {
  entry_t *e;
  size_t n, cap;
  char *text;
  size_t tlen, tcap;
  name_t users[NAMES_CACHED], groups[NAMES_CACHED];
  size_t nusers, ngroups;
  /* while walking */
  char *rel; /* the path below the listed directory being read */
  char *err;
  size_t errlen;
};

size_t agent_files_list_count(const agent_files_list_t *l) { return l->n; }

void agent_files_list_free(agent_files_list_t *l) {
  if (!l) return;
  free(l->e);
  free(l->text);
  free(l->rel);
  free(l);
}

static int too_big(agent_files_list_t *l, const char *what) {
  snprintf(l->err, l->errlen, "the tree is too big to list: %s (list a smaller part of it)", what);
  return TT_ETOOBIG;
}

/* Keep s (n bytes, plus a NUL) with the listing; its offset, or NO_TEXT when the listing
 * would pass TT_FILE_LIST_BYTES_MAX. */
static uint32_t keep(agent_files_list_t *l, const char *s, size_t n) {
  if (l->tlen + n + 1 > TT_FILE_LIST_BYTES_MAX) return NO_TEXT;
  if (l->tlen + n + 1 > l->tcap) {
    size_t cap = l->tcap ? l->tcap : 64 * 1024;
    while (cap < l->tlen + n + 1) cap *= 2;
    if (cap > TT_FILE_LIST_BYTES_MAX) cap = TT_FILE_LIST_BYTES_MAX;
    char *t = realloc(l->text, cap);
    if (!t) return NO_TEXT;
    l->text = t;
    l->tcap = cap;
  }
  uint32_t off = (uint32_t)l->tlen;
  memcpy(l->text + off, s, n);
  l->text[off + n] = '\0';
  l->tlen += n + 1;
  return off;
}

/* The name of a user or group (the number when it has none), kept once per listing. */
static uint32_t id_name(agent_files_list_t *l, bool user, uint32_t id) {
  name_t *cache = user ? l->users : l->groups;
  size_t *n = user ? &l->nusers : &l->ngroups;
  for (size_t i = 0; i < *n; i++)
    if (cache[i].id == id) return cache[i].off;
  char buf[4096], num[16];
  const char *name = NULL;
  if (user) {
    struct passwd pw, *r = NULL;
    if (getpwuid_r(id, &pw, buf, sizeof(buf), &r) == 0 && r && strlen(r->pw_name) <= TT_NAME_MAX) name = r->pw_name;
  } else {
    struct group gr, *r = NULL;
    if (getgrgid_r(id, &gr, buf, sizeof(buf), &r) == 0 && r && strlen(r->gr_name) <= TT_NAME_MAX) name = r->gr_name;
  }
  if (!name) {
    snprintf(num, sizeof(num), "%u", (unsigned)id);
    name = num;
  }
  uint32_t off = keep(l, name, strlen(name));
  if (off != NO_TEXT && *n < NAMES_CACHED) cache[(*n)++] = (name_t){id, off};
  return off;
}

static Tether__FileKind kind_of(mode_t m) {
  if (S_ISREG(m)) return TETHER__FILE_KIND__FILE_KIND_REGULAR;
  if (S_ISDIR(m)) return TETHER__FILE_KIND__FILE_KIND_DIR;
  if (S_ISLNK(m)) return TETHER__FILE_KIND__FILE_KIND_SYMLINK;
  return TETHER__FILE_KIND__FILE_KIND_OTHER;
}

/* One entry: path (relative), what st says, the link's target read from dir/name. */
static int add(agent_files_list_t *l, const char *path, const struct stat *st, int dir, const char *name) {
  if (l->n == TT_FILE_LIST_MAX) {
    char what[64];
    snprintf(what, sizeof(what), "more than %u entries", TT_FILE_LIST_MAX);
    return too_big(l, what);
  }
  if (l->n == l->cap) {
    size_t cap = l->cap ? l->cap * 2 : 256;
    entry_t *e = realloc(l->e, cap * sizeof(*e));
    if (!e) {
      snprintf(l->err, l->errlen, "the agent is out of memory");
      return TT_ENOMEM;
    }
    l->e = e;
    l->cap = cap;
  }
  entry_t *e = &l->e[l->n];
  e->kind = kind_of(st->st_mode);
  e->size = S_ISREG(st->st_mode) || S_ISLNK(st->st_mode) ? (uint64_t)st->st_size : 0;
  e->mtime_ns = (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
  e->mode = (uint32_t)(st->st_mode & 07777);
  e->link = NO_TEXT;
  e->path = keep(l, path, strlen(path));
  e->owner = id_name(l, true, st->st_uid);
  e->group = id_name(l, false, st->st_gid);
  if (S_ISLNK(st->st_mode)) {
    char target[AGENT_FILES_PATH_MAX];
    ssize_t n = readlinkat(dir, name, target, sizeof(target));
    if (n >= 0 && (size_t)n < sizeof(target)) e->link = keep(l, target, (size_t)n);
    else e->link = keep(l, "", 0);
  }
  if (e->path == NO_TEXT || e->owner == NO_TEXT || e->group == NO_TEXT || (S_ISLNK(st->st_mode) && e->link == NO_TEXT)) {
    char what[64];
    snprintf(what, sizeof(what), "its names take more than %u MiB", TT_FILE_LIST_BYTES_MAX >> 20);
    return too_big(l, what);
  }
  l->n++;
  return 0;
}

static int cmp_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The entries of the open directory fd (taken over), l->rel naming it, at depth `depth`
 * (its entries are depth + 1 below the listed directory). */
static int list_dir(agent_files_list_t *l, int fd, bool recursive, unsigned depth) {
  DIR *d = fdopendir(fd);
  char **names = NULL;
  size_t n = 0, cap = 0;
  int rc = 0;
  if (!d) {
    close(fd);
    snprintf(l->err, l->errlen, "cannot read a directory: %s", strerror(errno));
    return TT_EIO;
  }
  struct dirent *de;
  errno = 0;
  while ((de = readdir(d))) {
    if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
    if (l->n + n >= TT_FILE_LIST_MAX) {
      char what[64];
      snprintf(what, sizeof(what), "more than %u entries", TT_FILE_LIST_MAX);
      rc = too_big(l, what);
      goto out;
    }
    if (n == cap) {
      size_t nc = cap ? cap * 2 : 64;
      char **nn = realloc(names, nc * sizeof(*nn));
      if (!nn) goto oom;
      names = nn;
      cap = nc;
    }
    if (!(names[n] = strdup(de->d_name))) goto oom;
    n++;
  }
  if (n && depth + 1 > TT_FILE_DEPTH_MAX) {
    char what[64];
    snprintf(what, sizeof(what), "deeper than %u levels", TT_FILE_DEPTH_MAX);
    rc = too_big(l, what);
    goto out;
  }
  if (n) qsort(names, n, sizeof(*names), cmp_names);
  size_t base = strlen(l->rel);
  for (size_t i = 0; i < n && !rc; i++) {
    struct stat st;
    if (fstatat(dirfd(d), names[i], &st, AT_SYMLINK_NOFOLLOW) != 0) continue; /* gone since */
    size_t nl = strlen(names[i]);
    if (base + (base ? 1 : 0) + nl > TT_FILE_PATH_MAX) {
      char what[64];
      snprintf(what, sizeof(what), "a path in it is longer than %u bytes", TT_FILE_PATH_MAX);
      rc = too_big(l, what);
      break;
    }
    if (base) l->rel[base] = '/';
    memcpy(l->rel + base + (base ? 1 : 0), names[i], nl + 1);
    rc = add(l, l->rel, &st, dirfd(d), names[i]);
    if (!rc && recursive && S_ISDIR(st.st_mode)) {
      int sub = openat(dirfd(d), names[i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      /* One that shell.user may not read is listed, not entered (as ls -R goes on). */
      if (sub >= 0) rc = list_dir(l, sub, true, depth + 1);
    }
    l->rel[base] = '\0';
  }
  goto out;
oom:
  snprintf(l->err, l->errlen, "the agent is out of memory");
  rc = TT_ENOMEM;
out:
  for (size_t i = 0; i < n; i++) free(names[i]);
  free(names);
  closedir(d);
  return rc;
}

int agent_files_list(const agent_files_fs_t *fs, const char *path, bool recursive, bool self, agent_files_list_t **out,
                     char *err, size_t errlen) {
  *out = NULL;
  char name[TT_FILE_NAME_MAX + 1], shown[128];
  agent_files_list_t *l = calloc(1, sizeof(*l));
  if (!l || !(l->rel = malloc(TT_FILE_PATH_MAX + 1))) {
    free(l);
    snprintf(err, errlen, "the agent is out of memory");
    return TT_ENOMEM;
  }
  l->rel[0] = '\0';
  l->err = err;
  l->errlen = errlen;
  int rc = 0;
  int fd = agent_files_open_path(fs, path, name, sizeof(name), err, errlen);
  if (fd < 0) {
    rc = fd;
    goto out;
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    rc = agent_files_errno(-errno, agent_files_shown(path, shown, sizeof(shown)), err, errlen);
    close(fd);
    goto out;
  }
  if (!S_ISDIR(st.st_mode) || self) {
    rc = add(l, name, &st, fd, ""); /* followed already: never a link here */
    close(fd);
    goto out;
  }
  int dir = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  int e = errno;
  close(fd);
  if (dir < 0) {
    rc = agent_files_errno(-e, agent_files_shown(path, shown, sizeof(shown)), err, errlen);
    goto out;
  }
  rc = list_dir(l, dir, recursive, 0);
out:
  if (rc) {
    agent_files_list_free(l);
    return rc;
  }
  free(l->rel);
  l->rel = NULL;
  *out = l;
  return 0;
}

static size_t varint_len(size_t v) {
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    n++;
  }
  return n;
}

static ProtobufCBinaryData text_of(const agent_files_list_t *l, uint32_t off) {
  ProtobufCBinaryData b = {0, NULL};
  if (off == NO_TEXT) return b;
  b.data = (uint8_t *)l->text + off;
  b.len = strlen(l->text + off);
  return b;
}

void agent_files_list_batch(const agent_files_list_t *l, size_t *pos, Tether__FileCtl *m, agent_files_batch_t *b) {
  m->entries = b->ptr;
  m->n_entries = 0;
  m->last = true; /* counted as present: the size below is the largest the header gets */
  /* The ChannelControl around the FileCtl: a tag and a length of at most 3 bytes. */
  size_t used = tether__file_ctl__get_packed_size(m) + 1 + 3;
  /* The receiver unpacks a batch under TT_CTRL_MSG_BUDGET: each entry costs it a FileStat,
   * a pointer and a copy of each text, so many short names would pass the budget long
   * before TT_FILE_CTL_MAX; keep to half of it. */
  size_t unpacked = sizeof(Tether__FileCtl) + sizeof(Tether__ChannelControl);
  size_t i = *pos;
  for (; i < l->n && m->n_entries < AGENT_FILES_BATCH_MAX; i++) {
    const entry_t *e = &l->e[i];
    Tether__FileStat *s = &b->st[m->n_entries];
    tether__file_stat__init(s);
    s->path = text_of(l, e->path);
    s->kind = e->kind;
    s->size = e->size;
    s->mtime_ns = e->mtime_ns;
    s->mode = e->mode;
    s->link = text_of(l, e->link);
    s->owner = text_of(l, e->owner);
    s->group = text_of(l, e->group);
    size_t es = tether__file_stat__get_packed_size(s);
    size_t cost = 2 + varint_len(es) + es; /* field 20: a two-byte tag */
    size_t ucost = sizeof(*s) + sizeof(s) + s->path.len + s->link.len + s->owner.len + s->group.len + 4 * 16;
    if ((used + cost > TT_FILE_CTL_MAX || unpacked + ucost > TT_CTRL_MSG_BUDGET / 2) && m->n_entries > 0) break;
    used += cost;
    unpacked += ucost;
    b->ptr[m->n_entries++] = s;
  }
  *pos = i;
  m->last = i == l->n;
}

int agent_files_mkdir(const agent_files_fs_t *fs, const char *path, uint32_t mode, char *err, size_t errlen) {
  char name[TT_FILE_NAME_MAX + 1], shown[128];
  int dir = agent_files_open_parent((void *)(uintptr_t)fs, path, name, sizeof(name), err, errlen);
  if (dir < 0) return dir;
  if (tt_xfer_name_reserved(name)) {
    snprintf(err, errlen, "%s: " TT_XFER_NAME_RESERVED_WHY, agent_files_shown(path, shown, sizeof(shown)));
    close(dir);
    return TT_EINVAL;
  }
  /* The sender's bits less the agent's umask, as sftp-server's mkdir and scp make one and
   * as a received file's are (proto/xfer_part.c): the device's side says what its other
   * users may do in it. Never set-user-ID or set-group-ID (the sticky bit stays); none
   * given is 0777 as in sftp-server; always rwx for shell.user, who must fill it. */
  mode &= 01777;
  if (!(mode & 0777)) mode |= 0777;
  mode |= 0700;
  int rc = 0;
  agent_files_shown(path, shown, sizeof(shown));
  if (mkdirat(dir, name, mode) != 0) {
    struct stat st;
    if (errno != EEXIST) {
      rc = agent_files_errno(-errno, shown, err, errlen);
    } else if (fstatat(dir, name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISDIR(st.st_mode)) {
      snprintf(err, errlen, "%s exists and is not a directory", shown);
      rc = TT_EINVAL;
    }
  }
  close(dir);
  return rc;
}
