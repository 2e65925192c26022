/* The agent's state directory (its CA, certificate and key) and the one way files in it
 * change: written whole under a temporary name, fsynced, renamed into place, directory
 * fsynced. A crash never leaves a half-written file where a whole one was expected. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <openssl/err.h>
#include "agent.h"
#include "tt/log.h"
#include "tt/pki.h"

int agent_path(char *out, size_t cap, const char *dir, const char *name) {
  int n = snprintf(out, cap, "%s/%s", dir, name);
  return n < 0 || (size_t)n >= cap ? TT_ETOOBIG : 0;
}

/* "dir/.name.new" beside path: same directory, so rename() is atomic. */
static int tmp_path(char *out, size_t cap, const char *path) {
  char a[AGENT_PATH_MAX], b[AGENT_PATH_MAX];
  if (snprintf(a, sizeof(a), "%s", path) >= (int)sizeof(a)) return TT_ETOOBIG;
  memcpy(b, a, sizeof(b));
  int n = snprintf(out, cap, "%s/.%s.new", dirname(a), basename(b));
  return n < 0 || (size_t)n >= cap ? TT_ETOOBIG : 0;
}

static int fsync_dir_of(const char *path) {
  char a[AGENT_PATH_MAX];
  if (snprintf(a, sizeof(a), "%s", path) >= (int)sizeof(a)) return TT_ETOOBIG;
  int fd = open(dirname(a), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return -errno;
  int rc = fsync(fd) < 0 ? -errno : 0;
  close(fd);
  return rc;
}

int agent_state_open(const char *dir, bool create, int *lock_fd, char *err, size_t errlen) {
  struct stat st;
  *lock_fd = -1;
  if (create && mkdir(dir, 0700) < 0 && errno != EEXIST) {
    int rc = -errno;
    snprintf(err, errlen, "cannot create the state directory %s: %s", dir, strerror(errno));
    return rc;
  }
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0 || fstat(fd, &st) < 0) {
    int rc = -errno;
    snprintf(err, errlen, "state directory %s: %s", dir, strerror(errno));
    if (fd >= 0) close(fd);
    return rc;
  }
  /* Our key lives here: a directory someone else may write to (or owns) could have it
   * swapped under us. */
  if ((st.st_mode & 022) || st.st_uid != geteuid()) {
    snprintf(err, errlen, "state directory %s is writable by others or not ours (chmod 700 it)", dir);
    close(fd);
    return TT_EDENIED;
  }
  if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
    int rc = errno == EWOULDBLOCK ? TT_EBUSY : -errno;
    snprintf(err, errlen, "state directory %s is in use by another tether-agent%s", dir,
             rc == TT_EBUSY ? " (stop it first)" : "");
    close(fd);
    return rc;
  }
  *lock_fd = fd;
  return 0;
}

static int write_text(const char *path, const char *text, char *err, size_t errlen) {
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (fd < 0) {
    int rc = -errno;
    snprintf(err, errlen, "%s: %s", path, strerror(errno));
    return rc;
  }
  size_t len = strlen(text);
  int rc = 0;
  if (write(fd, text, len) != (ssize_t)len || write(fd, "\n", 1) != 1 || fchmod(fd, 0644) < 0 ||
      fsync(fd) < 0)
    rc = errno ? -errno : TT_EIO;
  if (close(fd) < 0 && !rc) rc = -errno;
  if (rc) {
    snprintf(err, errlen, "%s: %s", path, tt_strerror(rc));
    unlink(path);
  }
  return rc;
}

static int write_one(const agent_file_t *f, const char *tmp, char *err, size_t errlen) {
  if (unlink(tmp) < 0 && errno != ENOENT) { /* a leftover the recovery did not want */
    snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
    return -errno;
  }
  errno = 0;
  if (f->text) return write_text(tmp, f->text, err, errlen);
  return f->key ? tt_pki_write_key(tmp, f->key, err, errlen) : tt_pki_write_cert(tmp, f->cert, err, errlen);
}

void agent_state_read_name(const char *path, char *out, size_t cap) {
  char buf[TT_NAME_MAX + 2];
  out[0] = '\0';
  int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return;
  ssize_t n = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  if (n <= 0) return;
  buf[n] = '\0';
  buf[strcspn(buf, "\n")] = '\0';
  if (tt_name_valid(buf) && strlen(buf) < cap) memcpy(out, buf, strlen(buf) + 1);
}

int agent_state_commit(const agent_file_t *files, size_t n, char *err, size_t errlen) {
  char tmp[4][AGENT_PATH_MAX];
  size_t written = 0;
  int rc = 0;
  if (n == 0 || n > 4) return TT_EINVAL;
  for (size_t i = 0; i < n; i++) {
    if ((rc = tmp_path(tmp[i], sizeof(tmp[i]), files[i].path))) {
      snprintf(err, errlen, "%s: path too long", files[i].path);
      goto undo;
    }
  }
  for (; written < n; written++)
    if ((rc = write_one(&files[written], tmp[written], err, errlen))) goto undo;
  /* All are on disk whole; from here on agent_state_recover() can finish the job. */
  for (size_t i = 0; i < n; i++) {
    if (rename(tmp[i], files[i].path) < 0) {
      rc = -errno;
      snprintf(err, errlen, "cannot rename %s into place: %s", files[i].path, strerror(errno));
      if (i == 0) goto undo;
      return rc; /* part is in place: leave the rest for agent_state_recover() */
    }
  }
  for (size_t i = 0; i < n; i++) {
    if ((rc = fsync_dir_of(files[i].path))) {
      snprintf(err, errlen, "cannot fsync the directory of %s: %s", files[i].path, tt_strerror(rc));
      return rc;
    }
  }
  return 0;
undo:
  /* In reverse: the first file's temporary goes last, since recovery reads its presence
   * as "nothing was renamed yet". */
  while (written-- > 0) unlink(tmp[written]);
  return rc;
}

static bool exists(const char *p) { return access(p, F_OK) == 0; }

static void roll(const char *tmp, const char *path, bool forward) {
  if (forward ? rename(tmp, path) == 0 : unlink(tmp) == 0) {
    int rc = fsync_dir_of(path);
    TT_WARN("agent", forward ? "finished an interrupted update" : "removed an unfinished update",
            "file=%s%s%s", path, rc ? " fsync_err=" : "", rc ? tt_errname(rc) : "");
  }
}

/* Commits write the key first, then the certificate, then (enrollment) the CA and the
 * hostname, and rename in that order. So: the key's temporary still there means nothing
 * was renamed (undo all); the certificate's temporary alone, matching the key now in
 * place, means the last steps were lost (finish them); the CA's likewise if the
 * certificate now in place chains to it; the hostname's if all before it are in place. */
void agent_state_recover(const char *key_path, const char *cert_path, const char *ca_path,
                         const char *name_path) {
  char tk[AGENT_PATH_MAX], tc[AGENT_PATH_MAX], ta[AGENT_PATH_MAX] = "", tn[AGENT_PATH_MAX] = "";
  char err[256];
  if (tmp_path(tk, sizeof(tk), key_path) || tmp_path(tc, sizeof(tc), cert_path) ||
      (ca_path && tmp_path(ta, sizeof(ta), ca_path)) || (name_path && tmp_path(tn, sizeof(tn), name_path)))
    return;
  bool k = exists(tk), c = exists(tc), a = ta[0] && exists(ta), h = tn[0] && exists(tn);
  bool forward = !k;
  if (c && forward) {
    X509 *x = NULL;
    EVP_PKEY *key = NULL;
    forward = tt_pki_load_cert(tc, &x, err, sizeof(err)) == 0 &&
              tt_pki_load_key(key_path, &key, err, sizeof(err)) == 0 &&
              EVP_PKEY_eq(X509_get0_pubkey(x), key) == 1;
    ERR_clear_error();
    X509_free(x);
    EVP_PKEY_free(key);
  }
  if (c) roll(tc, cert_path, forward);
  if (a && forward) {
    X509 *x = NULL, *ca = NULL;
    forward = tt_pki_load_cert(cert_path, &x, err, sizeof(err)) == 0 &&
              tt_pki_load_cert(ta, &ca, err, sizeof(err)) == 0 &&
              X509_verify(x, X509_get0_pubkey(ca)) == 1;
    ERR_clear_error();
    X509_free(x);
    X509_free(ca);
  }
  if (a) roll(ta, ca_path, forward);
  if (h) roll(tn, name_path, forward);
  if (k) roll(tk, key_path, false); /* last: its presence is what says "undo" */
}
