/* From the command line to a list of ops: which device paths go to which local paths, the
 * directories to make first, and a local tree walked for push -r. Everything a user can get
 * wrong is found here, before the console connects (exit 2); what only the transfer can
 * tell (a path missing on the device) is the transfer's. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "console.h"
#include "files.h"
#include "tt/cert.h"
#include "tt/msg.h"

/* ---- paths ---------------------------------------------------------------------------- */

int files_remote_split(const char *arg, char *device, size_t cap, const char **path) {
  const char *colon = strchr(arg, ':');
  *path = NULL;
  if (!colon || colon == arg) return 0;
  const char *slash = strchr(arg, '/');
  if (slash && slash < colon) return 0; /* "./a:b", "/x:y": a local name with a colon */
  size_t n = (size_t)(colon - arg);
  if (n > TT_NAME_MAX || n + 1 > cap) return TT_EINVAL;
  memcpy(device, arg, n);
  device[n] = '\0';
  if (!tt_name_valid(device)) return TT_EINVAL;
  *path = colon + 1;
  return 1;
}

int files_join(char *out, size_t cap, size_t max, const char *dir, const char *name) {
  size_t dl = strlen(dir), nl = strlen(name);
  bool sep = dl > 0 && dir[dl - 1] != '/';
  size_t total = dl + (sep ? 1 : 0) + nl;
  if (total > max || total + 1 > cap) return TT_ETOOBIG;
  memcpy(out, dir, dl);
  if (sep) out[dl] = '/';
  memcpy(out + dl + (sep ? 1 : 0), name, nl);
  out[total] = '\0';
  return 0;
}

static bool ends_with_slash(const char *s) {
  size_t n = strlen(s);
  return n > 0 && s[n - 1] == '/';
}

void files_strip_slash(char *path) {
  size_t n = strlen(path);
  while (n > 1 && path[n - 1] == '/') path[--n] = '\0';
}

static bool dot_or_dotdot(const char *s, size_t n) {
  return (n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.');
}

int files_basename(const char *path, char *name, size_t cap) {
  size_t n = strlen(path);
  while (n > 0 && path[n - 1] == '/') n--;
  size_t s = n;
  while (s > 0 && path[s - 1] != '/') s--;
  size_t len = n - s;
  if (len == 0 || dot_or_dotdot(path + s, len)) return TT_EINVAL;
  if (len > TT_FILE_NAME_MAX || len + 1 > cap) return TT_ETOOBIG;
  memcpy(name, path + s, len);
  name[len] = '\0';
  return 0;
}

int files_split(const char *path, char *dir, size_t dcap, char *name, size_t ncap) {
  size_t n = strlen(path);
  if (n == 0 || path[n - 1] == '/') return TT_EINVAL;
  const char *slash = strrchr(path, '/');
  const char *base = slash ? slash + 1 : path;
  size_t bl = strlen(base);
  if (dot_or_dotdot(base, bl)) return TT_EINVAL;
  if (bl > TT_FILE_NAME_MAX || bl + 1 > ncap) return TT_ETOOBIG;
  size_t dl = slash ? (size_t)(slash - path) : 0;
  const char *d = path;
  if (!slash) {
    d = ".";
    dl = 1;
  } else if (dl == 0) {
    d = "/";
    dl = 1;
  }
  if (dl + 1 > dcap) return TT_ETOOBIG;
  memcpy(dir, d, dl);
  dir[dl] = '\0';
  memcpy(name, base, bl + 1);
  return 0;
}

bool files_rel_ok(ProtobufCBinaryData rel) {
  if (rel.len == 0 || rel.len > TT_FILE_PATH_MAX || !tt_text_valid(rel, TT_FILE_PATH_MAX)) return false;
  if (rel.data[0] == '/') return false;
  size_t start = 0;
  for (size_t i = 0; i <= rel.len; i++) {
    if (i < rel.len && rel.data[i] != '/') continue;
    size_t len = i - start;
    if (len == 0 || len > TT_FILE_NAME_MAX || dot_or_dotdot((const char *)rel.data + start, len)) return false;
    start = i + 1;
  }
  return true;
}

int files_path_cmp(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen) {
  size_t n = alen < blen ? alen : blen;
  for (size_t i = 0; i < n; i++) {
    unsigned ca = a[i] == '/' ? 0u : a[i] + 1u, cb = b[i] == '/' ? 0u : b[i] + 1u;
    if (ca != cb) return ca < cb ? -1 : 1;
  }
  return alen < blen ? -1 : alen > blen;
}

/* ---- the command line ----------------------------------------------------------------- */

static int usage(char *err, size_t cap, const char *fmt, ...) TT_PRINTF(3, 4);
static int usage(char *err, size_t cap, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, cap, fmt, ap);
  va_end(ap);
  return TT_EINVAL;
}

static int parse_ticket(files_args_t *a, const char *flag, const char *env, char *err, size_t cap) {
  if (flag && *flag) {
    if (console_parse_id(flag, 'T', false, &a->ticket))
      return usage(err, cap, "--ticket: '%s' is not a ticket (want T-3 or 3)", flag);
    return 0;
  }
  if (env && *env) {
    if (console_parse_id(env, 'T', false, &a->ticket))
      return usage(err, cap, "TETHER_TICKET: '%s' is not a ticket (want T-3 or 3)", env);
    return 0;
  }
  return usage(err, cap, "--ticket is required (or TETHER_TICKET in the environment): the ticket the work is for (T-3)");
}

static int set_device(files_args_t *a, const char *d, char *err, size_t cap) {
  if (!tt_name_valid(d)) return usage(err, cap, "'%s' is not a device id", d);
  snprintf(a->device, sizeof(a->device), "%s", d);
  return 0;
}

/* scp-style: every word but the last is a source, DEVICE:PATH on exactly one side. */
static int parse_cp(files_args_t *a, const char *const *arg, int narg, char *err, size_t cap) {
  char dev[TT_NAME_MAX + 1], first[TT_NAME_MAX + 1] = "";
  const char *path;
  int remote_src = 0, local_src = 0;
  if (narg < 2) return usage(err, cap, "cp needs a source and a target: tether cp SRC... DEST");
  for (int i = 0; i < narg - 1; i++) {
    int r = files_remote_split(arg[i], dev, sizeof(dev), &path);
    if (r < 0) return usage(err, cap, "'%.*s' is not a device id", (int)(strchr(arg[i], ':') - arg[i]), arg[i]);
    if (r == 0) {
      local_src++;
      a->src[a->nsrc++] = arg[i];
      continue;
    }
    if (!*path) return usage(err, cap, "'%s' names no path on the device (DEVICE:/path)", arg[i]);
    if (remote_src++ == 0) snprintf(first, sizeof(first), "%s", dev);
    else if (strcmp(first, dev) != 0)
      return usage(err, cap, "cp copies from one device at a time ('%s' and '%s')", first, dev);
    a->src[a->nsrc++] = path;
  }
  const char *t = arg[narg - 1];
  int r = files_remote_split(t, dev, sizeof(dev), &path);
  if (r < 0) return usage(err, cap, "'%.*s' is not a device id", (int)(strchr(t, ':') - t), t);
  if (r == 1 && !*path) return usage(err, cap, "'%s' names no path on the device (DEVICE:/path)", t);
  if (r == 1 && remote_src)
    return usage(err, cap, "cp copies between this machine and a device: DEVICE:PATH on one side only");
  if (r == 0 && !remote_src)
    return usage(err, cap, "cp needs DEVICE:PATH on one side (tether cp ./a.txt DEVICE:/tmp/a.txt)");
  if (remote_src && local_src)
    return usage(err, cap, "cp's sources are all local or all on the device, not both");
  if (r == 1) {
    a->verb = FILES_VERB_PUSH;
    a->target = path;
    snprintf(a->device, sizeof(a->device), "%s", dev);
  } else {
    a->verb = FILES_VERB_PULL;
    a->target = t;
    snprintf(a->device, sizeof(a->device), "%s", first);
  }
  return 0;
}

int files_args_parse(files_args_t *a, const char *cmd, const char *const *arg, int narg,
                     const char *ticket_flag, const char *ticket_env, char *err, size_t cap) {
  int rc;
  a->nsrc = 0;
  a->target = NULL;
  a->device[0] = '\0';
  if (narg > TT_CLI_POS_MAX) return usage(err, cap, "too many arguments");
  for (int i = 0; i < narg; i++)
    if (!arg[i][0]) return usage(err, cap, "an empty path (argument %d)", i + 1);
  if (strcmp(cmd, "cp") == 0) {
    rc = parse_cp(a, arg, narg, err, cap);
  } else if (strcmp(cmd, "ls") == 0) {
    a->verb = FILES_VERB_LS;
    if (narg != 2) return usage(err, cap, "usage: tether ls DEVICE PATH");
    rc = set_device(a, arg[0], err, cap);
    a->src[a->nsrc++] = arg[1];
  } else {
    bool pull = strcmp(cmd, "pull") == 0;
    a->verb = pull ? FILES_VERB_PULL : FILES_VERB_PUSH;
    if (narg < 3)
      return usage(err, cap, "usage: tether %s DEVICE SRC... DEST", pull ? "pull" : "push");
    rc = set_device(a, arg[0], err, cap);
    for (int i = 1; i < narg - 1; i++) a->src[a->nsrc++] = arg[i];
    a->target = arg[narg - 1];
  }
  if (rc) return rc;
  return parse_ticket(a, ticket_flag, ticket_env, err, cap);
}

/* ---- ops ------------------------------------------------------------------------------ */

void files_plan_init(files_plan_t *p) {
  memset(p, 0, sizeof(*p));
}

void files_plan_free(files_plan_t *p) {
  for (size_t i = 0; i < p->n; i++) {
    files_op_t *op = &p->v[i];
    free(op->dev);
    free(op->local);
    free(op->error);
    free(op->note);
    files_listing_free(op->listing);
  }
  free(p->v);
  for (size_t i = 0; i < p->nwarn; i++) free(p->warn[i]);
  free(p->warn);
  memset(p, 0, sizeof(*p));
}

int files_plan_add(files_plan_t *p, files_op_kind_t kind, const char *dev, const char *local, int64_t parent,
                   size_t *idx) {
  if (p->n == p->cap) {
    size_t cap = p->cap ? p->cap * 2 : 16;
    files_op_t *v = realloc(p->v, cap * sizeof(*v));
    if (!v) return TT_ENOMEM;
    p->v = v;
    p->cap = cap;
  }
  files_op_t *op = &p->v[p->n];
  memset(op, 0, sizeof(*op));
  op->kind = kind;
  op->parent = parent;
  if ((dev && !(op->dev = strdup(dev))) || (local && !(op->local = strdup(local)))) {
    free(op->dev);
    return TT_ENOMEM;
  }
  if (idx) *idx = p->n;
  p->n++;
  return 0;
}

void files_op_fail(files_op_t *op, const char *fmt, ...) {
  va_list ap;
  char *s = NULL;
  va_start(ap, fmt);
  if (vasprintf(&s, fmt, ap) < 0) s = NULL;
  va_end(ap);
  free(op->error);
  op->error = s; /* NULL when out of memory: shown as "failed" */
  op->state = FILES_FAILED;
}

void files_plan_warn(files_plan_t *p, const char *fmt, ...) {
  va_list ap;
  char *s = NULL;
  va_start(ap, fmt);
  if (vasprintf(&s, fmt, ap) < 0) s = NULL;
  va_end(ap);
  if (!s) return;
  if (p->nwarn == p->capwarn) {
    size_t cap = p->capwarn ? p->capwarn * 2 : 8;
    char **v = realloc(p->warn, cap * sizeof(*v));
    if (!v) {
      free(s);
      return;
    }
    p->warn = v;
    p->capwarn = cap;
  }
  p->warn[p->nwarn++] = s;
}

/* A path as a user reads it: escaped if it holds controls or invalid UTF-8. */
static void shown(char *out, size_t cap, const char *s) {
  console_text(out, cap, tt_text(s));
}

/* ---- push -r: the local tree ---------------------------------------------------------- */

typedef struct {
  char *rel;
  size_t op;        /* its MKDIR */
  unsigned depth;
} walk_dir_t;

typedef struct {
  char *rel;
  uint64_t size;
  size_t parent;    /* its directory's MKDIR */
} walk_file_t;

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The names in a directory, sorted, so that a tree always goes in the same order. */
static int read_names(DIR *d, char ***out, size_t *n) {
  char **v = NULL;
  size_t cap = 0;
  struct dirent *e;
  *n = 0;
  errno = 0;
  while ((e = readdir(d))) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    if (*n == cap) {
      cap = cap ? cap * 2 : 32;
      char **nv = realloc(v, cap * sizeof(*nv));
      if (!nv) goto nomem;
      v = nv;
    }
    if (!(v[*n] = strdup(e->d_name))) goto nomem;
    (*n)++;
  }
  if (errno) {
    int rc = -errno;
    for (size_t i = 0; i < *n; i++) free(v[i]);
    free(v);
    return rc;
  }
  if (*n) qsort(v, *n, sizeof(*v), cmp_str);
  *out = v;
  return 0;
nomem:
  for (size_t i = 0; i < *n; i++) free(v[i]);
  free(v);
  return TT_ENOMEM;
}

/* Breadth first: a directory's MKDIR comes after its parent's, level by level, so the few
 * round trips directories need are one per level; then every file. Links and specials are
 * skipped with a warning (the device gets regular files and directories only). */
static int walk_tree(files_plan_t *p, const char *root_local, const char *root_dev, uint32_t mode, char *err,
                     size_t cap) {
  walk_dir_t *dirs = NULL;
  walk_file_t *files = NULL;
  size_t nd = 0, capd = 0, nf = 0, capf = 0, root_op;
  char local[FILES_LOCAL_PATH_MAX + 1], dev[TT_FILE_PATH_MAX + 1], rel[FILES_LOCAL_PATH_MAX + 1];
  char show[FILES_LOCAL_PATH_MAX * 4 + 1];
  int rc = files_plan_add(p, FILES_OP_MKDIR, root_dev, root_local, -1, &root_op);
  if (rc) return rc;
  p->v[root_op].mode = mode & 07777;
  if (!(dirs = malloc(16 * sizeof(*dirs)))) return TT_ENOMEM;
  capd = 16;
  if (!(dirs[0].rel = strdup(""))) {
    rc = TT_ENOMEM;
    goto out;
  }
  dirs[0].op = root_op;
  dirs[0].depth = 0;
  nd = 1;
  for (size_t i = 0; i < nd; i++) {
    char **names = NULL;
    size_t nn = 0;
    if (files_join(local, sizeof(local), FILES_LOCAL_PATH_MAX, root_local, dirs[i].rel)) {
      files_op_fail(&p->v[dirs[i].op], "the local path is too long");
      continue;
    }
    DIR *d = opendir(local);
    if (!d || (rc = read_names(d, &names, &nn)) != 0) {
      int e = d ? -rc : errno;
      if (d) closedir(d);
      if (rc == TT_ENOMEM) goto out;
      rc = 0;
      if (i == 0) {
        shown(show, sizeof(show), local);
        rc = usage(err, cap, "cannot read %s: %s", show, strerror(e));
        goto out;
      }
      files_op_fail(&p->v[dirs[i].op], "cannot read the directory: %s", strerror(e));
      continue;
    }
    for (size_t k = 0; k < nn && rc == 0; k++) {
      struct stat st;
      rc = files_join(rel, sizeof(rel), FILES_LOCAL_PATH_MAX, dirs[i].rel, names[k]);
      if (!rc) rc = files_join(local, sizeof(local), FILES_LOCAL_PATH_MAX, root_local, rel);
      if (rc) {
        rc = 0;
        files_plan_warn(p, "%s/%s: the path is too long, skipped", dirs[i].rel, names[k]);
        continue;
      }
      shown(show, sizeof(show), local);
      if (fstatat(dirfd(d), names[k], &st, AT_SYMLINK_NOFOLLOW) != 0) {
        files_plan_warn(p, "%s: %s, skipped", show, strerror(errno));
        continue;
      }
      if (S_ISLNK(st.st_mode)) {
        files_plan_warn(p, "%s: a symbolic link, skipped", show);
        continue;
      }
      if (!S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode)) {
        files_plan_warn(p, "%s: not a regular file or directory, skipped", show);
        continue;
      }
      if (S_ISREG(st.st_mode)) {
        if (nf == capf) {
          size_t nc = capf ? capf * 2 : 64;
          walk_file_t *v = realloc(files, nc * sizeof(*v));
          if (!v) {
            rc = TT_ENOMEM;
            break;
          }
          files = v;
          capf = nc;
        }
        if (!(files[nf].rel = strdup(rel))) {
          rc = TT_ENOMEM;
          break;
        }
        files[nf].size = (uint64_t)st.st_size;
        files[nf].parent = dirs[i].op;
        nf++;
        continue;
      }
      size_t op;
      bool dev_ok = files_join(dev, sizeof(dev), TT_FILE_PATH_MAX, root_dev, rel) == 0;
      if ((rc = files_plan_add(p, FILES_OP_MKDIR, dev_ok ? dev : NULL, local, (int64_t)dirs[i].op, &op))) break;
      p->v[op].mode = (uint32_t)st.st_mode & 07777;
      if (!dev_ok) {
        files_op_fail(&p->v[op], "the path on the device would be over %u bytes", TT_FILE_PATH_MAX);
        continue;
      }
      if (dirs[i].depth + 1 > TT_FILE_DEPTH_MAX) {
        files_op_fail(&p->v[op], "more than %u directories deep", TT_FILE_DEPTH_MAX);
        continue;
      }
      if (nd == capd) {
        size_t nc = capd * 2;
        walk_dir_t *v = realloc(dirs, nc * sizeof(*v));
        if (!v) {
          rc = TT_ENOMEM;
          break;
        }
        dirs = v;
        capd = nc;
      }
      if (!(dirs[nd].rel = strdup(rel))) {
        rc = TT_ENOMEM;
        break;
      }
      dirs[nd].op = op;
      dirs[nd].depth = dirs[i].depth + 1;
      nd++;
    }
    for (size_t k = 0; k < nn; k++) free(names[k]);
    free(names);
    closedir(d);
    if (rc) goto out;
  }
  for (size_t i = 0; i < nf; i++) {
    size_t op;
    bool dev_ok = files_join(dev, sizeof(dev), TT_FILE_PATH_MAX, root_dev, files[i].rel) == 0;
    if (files_join(local, sizeof(local), FILES_LOCAL_PATH_MAX, root_local, files[i].rel)) continue; /* fit above */
    if ((rc = files_plan_add(p, FILES_OP_PUT, dev_ok ? dev : NULL, local, (int64_t)files[i].parent, &op))) goto out;
    p->v[op].size = files[i].size;
    p->v[op].size_known = true;
    if (!dev_ok) files_op_fail(&p->v[op], "the path on the device would be over %u bytes", TT_FILE_PATH_MAX);
  }
out:
  for (size_t i = 0; i < nd; i++) free(dirs[i].rel);
  for (size_t i = 0; i < nf; i++) free(files[i].rel);
  free(dirs);
  free(files);
  return rc;
}

/* ---- building the plan ---------------------------------------------------------------- */

/* Two sources that would land on one target would race for its partial file. */
static int check_distinct(const files_plan_t *p, bool pull, char *err, size_t cap) {
  char show[FILES_LOCAL_PATH_MAX * 4 + 1];
  for (size_t i = 0; i < p->n; i++) {
    const files_op_t *a = &p->v[i];
    if (a->kind != FILES_OP_GET && a->kind != FILES_OP_PUT) continue; /* trees may merge */
    const char *ta = pull ? a->local : a->dev;
    if (!ta || a->parent >= 0) continue; /* inside a tree: the walk named each once */
    for (size_t k = i + 1; k < p->n; k++) {
      const files_op_t *b = &p->v[k];
      if (b->kind != a->kind) continue;
      const char *tb = pull ? b->local : b->dev;
      if (b->parent >= 0 || !tb || strcmp(ta, tb) != 0) continue;
      shown(show, sizeof(show), ta);
      return usage(err, cap, "two sources would land on %s", show);
    }
  }
  return 0;
}

static int plan_pull(files_plan_t *p, const files_args_t *a, char *err, size_t cap) {
  char local[FILES_LOCAL_PATH_MAX + 1], name[TT_FILE_NAME_MAX + 1], dev[TT_FILE_PATH_MAX + 1];
  char show[FILES_LOCAL_PATH_MAX * 4 + 1];
  struct stat st;
  const char *t = a->target;
  bool exists = stat(t, &st) == 0, isdir = exists && S_ISDIR(st.st_mode);
  int rc;
  shown(show, sizeof(show), t);
  if (a->nsrc > 1 && !isdir)
    return usage(err, cap, exists ? "%s is not a directory (several sources go into one)"
                                  : "%s: no such directory (several sources go into one)", show);
  if (exists && !isdir && a->recursive) return usage(err, cap, "%s exists and is not a directory", show);
  for (int i = 0; i < a->nsrc; i++) {
    const char *s = a->src[i];
    if (strlen(s) > TT_FILE_PATH_MAX) return usage(err, cap, "a device path is over %u bytes", TT_FILE_PATH_MAX);
    snprintf(dev, sizeof(dev), "%s", s);
    if (a->recursive) {
      bool contents = ends_with_slash(s); /* "dir/": what it holds, as rsync reads it */
      files_strip_slash(dev);
      if (contents || !isdir) {
        rc = files_join(local, sizeof(local), FILES_LOCAL_PATH_MAX, "", t);
        files_strip_slash(local);
      } else if ((rc = files_basename(s, name, sizeof(name))) == 0) {
        rc = files_join(local, sizeof(local), FILES_LOCAL_PATH_MAX, t, name);
      } else {
        return usage(err, cap, "'%s' names no directory to copy into %s (end it with '/' to copy what it holds)", s,
                     show);
      }
      if (rc) return usage(err, cap, "the local path for '%s' is too long", s);
      size_t op;
      if ((rc = files_plan_add(p, FILES_OP_LIST, dev, local, -1, &op))) return rc;
      p->v[op].recursive = true;
      p->v[op].named = contents || !isdir; /* else the last component is the source's name */
      continue;
    }
    if (isdir) {
      if (files_basename(s, name, sizeof(name))) return usage(err, cap, "'%s' names no file", s);
      if (files_join(local, sizeof(local), FILES_LOCAL_PATH_MAX, t, name))
        return usage(err, cap, "the local path for '%s' is too long", s);
    } else if (ends_with_slash(t)) {
      return usage(err, cap, "%s is not a directory", show);
    } else {
      snprintf(local, sizeof(local), "%s", t);
    }
    if ((rc = files_plan_add(p, FILES_OP_GET, dev, local, -1, NULL))) return rc;
  }
  return check_distinct(p, true, err, cap);
}

static int plan_push(files_plan_t *p, const files_args_t *a, char *err, size_t cap) {
  char dev[TT_FILE_PATH_MAX + 1], name[TT_FILE_NAME_MAX + 1];
  char show[FILES_LOCAL_PATH_MAX * 4 + 1];
  const char *t = a->target;
  bool into = ends_with_slash(t) || a->nsrc > 1; /* several sources can only go into a directory */
  int rc;
  if (strlen(t) > TT_FILE_PATH_MAX) return usage(err, cap, "the device path is over %u bytes", TT_FILE_PATH_MAX);
  for (int i = 0; i < a->nsrc; i++) {
    const char *s = a->src[i];
    struct stat st;
    shown(show, sizeof(show), s);
    if (strlen(s) > FILES_LOCAL_PATH_MAX) return usage(err, cap, "a local path is over %u bytes", FILES_LOCAL_PATH_MAX);
    if (stat(s, &st) != 0) return usage(err, cap, "%s: %s", show, strerror(errno));
    bool isdir = S_ISDIR(st.st_mode);
    if (isdir && !a->recursive) return usage(err, cap, "%s is a directory (push it with -r)", show);
    if (!isdir && !S_ISREG(st.st_mode)) return usage(err, cap, "%s is not a regular file", show);
    bool contents = isdir && ends_with_slash(s);
    if (contents || !into) {
      snprintf(dev, sizeof(dev), "%s", t);
      if (isdir) files_strip_slash(dev);
    } else {
      if (files_basename(s, name, sizeof(name)))
        return usage(err, cap, "cannot name a target after %s: give the target in full%s", show,
                     isdir ? ", or end the source with '/' to copy what it holds" : "");
      if (files_join(dev, sizeof(dev), TT_FILE_PATH_MAX, t, name))
        return usage(err, cap, "the device path for %s is over %u bytes", show, TT_FILE_PATH_MAX);
    }
    if (isdir) {
      char root[FILES_LOCAL_PATH_MAX + 1];
      snprintf(root, sizeof(root), "%s", s);
      files_strip_slash(root);
      if ((rc = walk_tree(p, root, dev, (uint32_t)st.st_mode, err, cap))) return rc;
      continue;
    }
    size_t op;
    if ((rc = files_plan_add(p, FILES_OP_PUT, dev, s, -1, &op))) return rc;
    p->v[op].size = (uint64_t)st.st_size;
    p->v[op].size_known = true;
  }
  return check_distinct(p, false, err, cap);
}

int files_plan_build(files_plan_t *p, const files_args_t *a, char *err, size_t cap) {
  switch (a->verb) {
  case FILES_VERB_PULL: return plan_pull(p, a, err, cap);
  case FILES_VERB_PUSH: return plan_push(p, a, err, cap);
  case FILES_VERB_LS: {
    size_t op;
    if (strlen(a->src[0]) > TT_FILE_PATH_MAX) return usage(err, cap, "the path is over %u bytes", TT_FILE_PATH_MAX);
    int rc = files_plan_add(p, FILES_OP_LIST, a->src[0], NULL, -1, &op);
    if (!rc) p->v[op].recursive = a->recursive;
    return rc;
  }
  }
  return usage(err, cap, "no such command");
}

/* ---- pull -r: a listing becomes directories and files --------------------------------- */

typedef struct {
  const uint8_t *rel;
  size_t len;
  size_t op;
} tree_dir_t;

/* Is e's path inside dir d ("a/b" inside "a")? */
static bool inside(const tree_dir_t *d, const files_entry_t *e) {
  return e->path.len > d->len + 1 && memcmp(e->path.data, d->rel, d->len) == 0 && e->path.data[d->len] == '/';
}

int files_plan_tree(files_plan_t *p, size_t list_idx) {
  files_listing_t *l = p->v[list_idx].listing;
  char *root_dev = p->v[list_idx].dev, *root_local = p->v[list_idx].local; /* owned by the op: stable */
  char dev[TT_FILE_PATH_MAX + 1], local[FILES_LOCAL_PATH_MAX + 1], show[TT_FILE_PATH_MAX * 4 + 1];
  tree_dir_t *stack = NULL;
  size_t depth = 0, capd = 0, root, op;
  bool named = p->v[list_idx].named;
  int rc = files_plan_add(p, FILES_OP_LMKDIR, NULL, root_local, -1, &root);
  if (rc || !l) return rc;
  p->v[root].mode = 0777; /* as mkdir(1) makes it: the umask decides */
  p->v[root].root = true;
  p->v[root].named = named;
  files_listing_sort(l);
  for (size_t i = 0; i < l->n; i++) {
    const files_entry_t *e = &l->v[i];
    const char *rel = (const char *)e->path.data; /* NUL-terminated copy */
    files_op_kind_t kind = e->kind == TETHER__FILE_KIND__FILE_KIND_DIR ? FILES_OP_LMKDIR : FILES_OP_GET;
    if (e->kind != TETHER__FILE_KIND__FILE_KIND_DIR && e->kind != TETHER__FILE_KIND__FILE_KIND_REGULAR) {
      console_text(show, sizeof(show), e->path);
      files_plan_warn(p, "%s/%s: %s on the device, skipped", root_dev, show,
                      e->kind == TETHER__FILE_KIND__FILE_KIND_SYMLINK ? "a symbolic link" : "not a regular file");
      continue;
    }
    if (!files_rel_ok(e->path)) {
      console_text(show, sizeof(show), e->path);
      if ((rc = files_plan_add(p, kind, root_dev, NULL, -1, &op))) break;
      files_op_fail(&p->v[op], "the device listed an unsafe name '%s': not fetched", show);
      continue;
    }
    bool twice = i > 0 && l->v[i - 1].path.len == e->path.len && memcmp(l->v[i - 1].path.data, rel, e->path.len) == 0;
    while (depth > 0 && !inside(&stack[depth - 1], e)) depth--;
    const uint8_t *slash = memrchr(e->path.data, '/', e->path.len);
    size_t parent_len = slash ? (size_t)(slash - e->path.data) : 0;
    int64_t parent = -1;
    if (!slash) parent = (int64_t)root;
    else if (depth > 0 && stack[depth - 1].len == parent_len) parent = (int64_t)stack[depth - 1].op;
    bool dev_ok = files_join(dev, sizeof(dev), TT_FILE_PATH_MAX, root_dev, rel) == 0;
    bool local_ok = files_join(local, sizeof(local), FILES_LOCAL_PATH_MAX, root_local, rel) == 0;
    if ((rc = files_plan_add(p, kind, dev_ok ? dev : root_dev, local_ok ? local : NULL, parent, &op))) break;
    files_op_t *o = &p->v[op];
    /* As the agent makes one (agent/files/list.c): no set-ID bits, rwx for us who must fill
     * it, and mkdir leaves what our umask lets through. */
    if (kind == FILES_OP_LMKDIR) o->mode = (e->mode & 01777) | 0700;
    else {
      o->size = e->size;
      o->size_known = true;
    }
    if (twice) files_op_fail(o, "listed twice by the device");
    else if (parent < 0) files_op_fail(o, "listed without its directory");
    else if (!dev_ok || !local_ok) files_op_fail(o, "the path is too long");
    if (kind != FILES_OP_LMKDIR || o->state == FILES_FAILED) continue;
    if (depth == capd) {
      size_t nc = capd ? capd * 2 : 16;
      tree_dir_t *v = realloc(stack, nc * sizeof(*v));
      if (!v) {
        rc = TT_ENOMEM;
        break;
      }
      stack = v;
      capd = nc;
    }
    stack[depth].rel = e->path.data;
    stack[depth].len = e->path.len;
    stack[depth].op = op;
    depth++;
  }
  free(stack);
  return rc;
}
