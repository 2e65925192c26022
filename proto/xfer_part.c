/* The receiver's partial file: what makes a cut transfer resume, and what keeps a file that
 * did not verify from ever appearing under its final name. Runs on pool threads.
 *
 * ".NAME.tether-part" holds the data written so far, chunk by chunk in order, so what is
 * kept is always a prefix. ".NAME.tether-part.state" holds a header (magic, chunk size, the
 * source's size, mtime and mode) and then the sha256 of each chunk written, appended after
 * the chunk's data. No fsync per chunk: on resume the kept prefix is read back and checked
 * against those hashes (the whole file's hash needs those bytes anyway), so a crash that
 * lost data the state claims is caught and the prefix cut there. */
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "tt/hex.h"
#include "tt/log.h"
#include "xfer_int.h"

#define STATE_MAGIC "TTPART1\n"
#define STATE_HDR 40u /* magic 8, chunk u32, mode u32, size u64, mtime i64, reserved u64 */
#define READ_BUF TT_FILE_CHUNK

static void put64(uint8_t *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (56 - 8 * i));
}
static uint64_t get64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v = (v << 8) | p[i];
  return v;
}

uint64_t xfer_nchunks(uint64_t size) { return (size + TT_FILE_CHUNK - 1) / TT_FILE_CHUNK; }

uint32_t xfer_chunk_len(uint64_t size, uint64_t index) {
  uint64_t off = index * (uint64_t)TT_FILE_CHUNK;
  if (off >= size) return 0;
  uint64_t left = size - off;
  return left < TT_FILE_CHUNK ? (uint32_t)left : TT_FILE_CHUNK;
}

bool xfer_stat_eq(const tt_xfer_stat_t *a, const tt_xfer_stat_t *b) {
  return a->size == b->size && a->mtime_ns == b->mtime_ns;
}

void xfer_sha256(const void *p, size_t n, uint8_t out[32]) {
  unsigned len = 32;
  EVP_Digest(p, n, out, &len, EVP_sha256(), NULL);
}

/* err = "<what>: <why>" where what is formatted from fmt; returns code. */
static int fail(int code, char *err, size_t errlen, const char *fmt, ...) TT_PRINTF(4, 5);
static int fail(int code, char *err, size_t errlen, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
  if (n >= 0 && (size_t)n < errlen && code != TT_EINVAL && code != TT_EPROTO)
    snprintf(err + n, errlen - (size_t)n, ": %s", tt_strerror(code));
  return code;
}

static int errno_code(void) { return errno ? -errno : TT_EIO; }

/* Write all of p at off. */
static int pwrite_all(int fd, const uint8_t *p, size_t n, uint64_t off) {
  while (n) {
    ssize_t w = pwrite(fd, p, n, (off_t)off);
    if (w < 0) {
      if (errno == EINTR) continue;
      return errno_code();
    }
    if (w == 0) return TT_EIO;
    p += w;
    n -= (size_t)w;
    off += (uint64_t)w;
  }
  return 0;
}

/* Read exactly n at off: TT_EIO if the file is shorter. */
static int pread_all(int fd, uint8_t *p, size_t n, uint64_t off) {
  while (n) {
    ssize_t r = pread(fd, p, n, (off_t)off);
    if (r < 0) {
      if (errno == EINTR) continue;
      return errno_code();
    }
    if (r == 0) return TT_EIO;
    p += r;
    n -= (size_t)r;
    off += (uint64_t)r;
  }
  return 0;
}

/* The file-system uid this thread creates files as: the agent's pool threads take
 * shell.user's (agent/files/identity.c). An invalid id changes nothing and returns it. */
static uid_t fs_uid(void) {
#if defined(SYS_setfsuid32)
  return (uid_t)syscall(SYS_setfsuid32, (uid_t)-1);
#else
  return (uid_t)syscall(SYS_setfsuid, (uid_t)-1);
#endif
}

/* dirfd's temporary `name`, read-write, made by us: an existing one is taken only if it is
 * ours, a regular file, and has no other name. Anyone else who can write the directory (a
 * local user of /tmp, a default root) could otherwise plant it: a file of their own gets the
 * data and becomes the target, a hard link has a file outside every root truncated and
 * written. One that is not ours is removed and made afresh (O_EXCL: a new plant fails). */
static int open_temp(int dirfd, const char *name) {
  int fd = openat(dirfd, name, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) return -1;
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int e = errno;
    close(fd);
    errno = e;
    return -1;
  }
  if (S_ISREG(st.st_mode) && st.st_uid == fs_uid() && st.st_nlink == 1) return fd;
  close(fd);
  if (unlinkat(dirfd, name, 0) != 0) return -1;
  return openat(dirfd, name, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
}

/* Temporary names beside the target; a name too long for the suffix gets a hashed one. */
static void temp_names(xfer_part_t *p) {
  size_t n = strlen(p->name);
  if (1 + n + sizeof(XFER_STATE_SUFFIX) - 1 <= TT_FILE_NAME_MAX) {
    snprintf(p->part, sizeof(p->part), ".%s" XFER_PART_SUFFIX, p->name);
    snprintf(p->state, sizeof(p->state), ".%s" XFER_STATE_SUFFIX, p->name);
    return;
  }
  uint8_t h[32];
  char hex[TT_HEX_CAP(16)];
  xfer_sha256(p->name, n, h);
  tt_hex(hex, sizeof(hex), h, 16); /* half the digest names the file well enough */
  snprintf(p->part, sizeof(p->part), ".%s" XFER_PART_SUFFIX, hex);
  snprintf(p->state, sizeof(p->state), ".%s" XFER_STATE_SUFFIX, hex);
}

static int write_header(xfer_part_t *p) {
  uint8_t h[STATE_HDR] = {0};
  memcpy(h, STATE_MAGIC, 8);
  tt_put_u32(h + 8, TT_FILE_CHUNK);
  tt_put_u32(h + 12, p->src.mode);
  put64(h + 16, p->src.size);
  put64(h + 24, (uint64_t)p->src.mtime_ns);
  return pwrite_all(p->sfd, h, sizeof(h), 0);
}

static int hashes_reset(xfer_part_t *p) {
  if (!p->whole) p->whole = EVP_MD_CTX_new();
  if (!p->digest) p->digest = EVP_MD_CTX_new();
  if (!p->whole || !p->digest) return TT_ENOMEM;
  if (EVP_DigestInit_ex(p->whole, EVP_sha256(), NULL) != 1 || EVP_DigestInit_ex(p->digest, EVP_sha256(), NULL) != 1)
    return TT_ENOMEM;
  p->kept = 0;
  return 0;
}

int xfer_part_restart(xfer_part_t *p, const tt_xfer_stat_t *src, char *err, size_t errlen) {
  int rc = hashes_reset(p);
  if (rc) return fail(rc, err, errlen, "%s", p->name);
  p->src = *src;
  p->have_src = true;
  if (ftruncate(p->fd, 0) || ftruncate(p->sfd, 0)) return fail(errno_code(), err, errlen, "%s: cannot reset the partial file", p->name);
  rc = write_header(p);
  if (rc) return fail(rc, err, errlen, "%s: cannot write the partial file's state", p->name);
  return 0;
}

/* Read back the kept prefix against the state's hashes; cut at the first that differs. */
static int verify_prefix(xfer_part_t *p, uint64_t claimed) {
  uint8_t *buf = malloc(READ_BUF);
  if (!buf) return TT_ENOMEM;
  uint64_t good = 0;
  for (; good < claimed; good++) {
    uint8_t want[32], got[32];
    uint32_t len = xfer_chunk_len(p->src.size, good);
    if (pread_all(p->sfd, want, 32, STATE_HDR + 32 * good)) break;
    if (pread_all(p->fd, buf, len, good * (uint64_t)TT_FILE_CHUNK)) break;
    xfer_sha256(buf, len, got);
    if (memcmp(want, got, 32)) break;
    EVP_DigestUpdate(p->whole, buf, len);
    EVP_DigestUpdate(p->digest, got, 32);
  }
  free(buf);
  p->kept = good;
  /* Drop what did not verify, and anything past it. */
  if (ftruncate(p->fd, (off_t)(good * (uint64_t)TT_FILE_CHUNK)) || ftruncate(p->sfd, (off_t)(STATE_HDR + 32 * good)))
    return errno_code();
  return 0;
}

int xfer_part_open(xfer_part_t *p, int dirfd, const char *name, const tt_xfer_stat_t *src, bool force,
                   char *note, size_t notecap, char *err, size_t errlen) {
  memset(p, 0, sizeof(*p));
  p->dirfd = dirfd;
  p->fd = p->sfd = -1;
  if (note && notecap) note[0] = 0;
  if (tt_xfer_name_reserved(name)) return fail(TT_EINVAL, err, errlen, "%s: " TT_XFER_NAME_RESERVED_WHY, name);
  snprintf(p->name, sizeof(p->name), "%s", name);
  temp_names(p);
  int rc = hashes_reset(p);
  if (rc) return fail(rc, err, errlen, "%s", name);
  struct stat st;
  if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
    if (S_ISDIR(st.st_mode)) return fail(TT_EINVAL, err, errlen, "%s is a directory", name);
    if (!force) return fail(TT_EINVAL, err, errlen, "%s exists (use --force to replace it)", name);
  } else if (errno != ENOENT) {
    return fail(errno_code(), err, errlen, "%s", name);
  }
  p->fd = open_temp(dirfd, p->part);
  if (p->fd < 0) return fail(errno_code(), err, errlen, "%s: cannot create the partial file", name);
  if (fstat(p->fd, &st) || !S_ISREG(st.st_mode)) return fail(TT_EINVAL, err, errlen, "%s: the partial file is not a regular file", name);
  /* Two transfers into one target would interleave: the second is refused. */
  if (flock(p->fd, LOCK_EX | LOCK_NB))
    return fail(errno == EWOULDBLOCK ? TT_EBUSY : errno_code(), err, errlen,
                "%s: another transfer is writing this file", name);
  p->locked = true;
  p->sfd = open_temp(dirfd, p->state);
  if (p->sfd < 0) return fail(errno_code(), err, errlen, "%s: cannot create the partial file's state", name);
  /* Load the state, if it is ours and names a source. */
  uint8_t h[STATE_HDR];
  struct stat sst;
  bool loaded = false;
  if (fstat(p->sfd, &sst) == 0 && sst.st_size >= (off_t)STATE_HDR && pread_all(p->sfd, h, sizeof(h), 0) == 0 &&
      memcmp(h, STATE_MAGIC, 8) == 0 && tt_get_u32(h + 8) == TT_FILE_CHUNK) {
    tt_xfer_stat_t rec = {.size = get64(h + 16), .mtime_ns = (int64_t)get64(h + 24), .mode = tt_get_u32(h + 12)};
    uint64_t claimed = ((uint64_t)sst.st_size - STATE_HDR) / 32;
    if (rec.size <= TT_FILE_SIZE_MAX && claimed <= xfer_nchunks(rec.size)) {
      if (src && !xfer_stat_eq(src, &rec)) {
        if (note && claimed)
          snprintf(note, notecap, "the source changed since the partial copy began: started over");
      } else {
        p->src = rec;
        p->have_src = true;
        loaded = true;
        rc = verify_prefix(p, claimed);
        if (rc) return fail(rc, err, errlen, "%s: cannot check the partial file", name);
        if (note && p->kept < claimed)
          snprintf(note, notecap, "%llu of %llu kept chunks did not verify and are sent again",
                   (unsigned long long)(claimed - p->kept), (unsigned long long)claimed);
      }
    }
  }
  if (!loaded) {
    tt_xfer_stat_t none = {0};
    rc = xfer_part_restart(p, src ? src : &none, err, errlen);
    if (rc) return rc;
    p->have_src = src != NULL;
  }
  return 0;
}

void xfer_part_digest(const xfer_part_t *p, uint8_t out[32]) {
  memset(out, 0, 32);
  if (!p->kept || !p->digest) return;
  EVP_MD_CTX *c = EVP_MD_CTX_new();
  unsigned len = 32;
  if (c && EVP_MD_CTX_copy_ex(c, p->digest) == 1) EVP_DigestFinal_ex(c, out, &len);
  EVP_MD_CTX_free(c);
}

int xfer_part_write(xfer_part_t *p, uint64_t index, const uint8_t *raw, size_t n, const uint8_t sha[32], char *err,
                    size_t errlen) {
  if (index != p->kept) return fail(TT_EPROTO, err, errlen, "%s: chunk out of order", p->name);
  int rc = pwrite_all(p->fd, raw, n, index * (uint64_t)TT_FILE_CHUNK);
  if (!rc) rc = pwrite_all(p->sfd, sha, 32, STATE_HDR + 32 * index);
  if (rc) {
    /* Keep the verified prefix: cut what this chunk may have half written. */
    (void)!ftruncate(p->fd, (off_t)(index * (uint64_t)TT_FILE_CHUNK));
    (void)!ftruncate(p->sfd, (off_t)(STATE_HDR + 32 * index));
    snprintf(err, errlen, "%s: %s (the part written so far is kept: run the same command again to resume)", p->name,
             tt_strerror(rc));
    return rc;
  }
  /* Start writing this chunk back now, so the fsync before the rename waits for the last
   * chunk or so, not for the whole file (a 1 GiB fsync took a second here). */
  (void)sync_file_range(p->fd, (off_t)(index * (uint64_t)TT_FILE_CHUNK), (off_t)n, SYNC_FILE_RANGE_WRITE);
  EVP_DigestUpdate(p->whole, raw, n);
  EVP_DigestUpdate(p->digest, sha, 32);
  p->kept++;
  return 0;
}

int xfer_part_finish(xfer_part_t *p, const uint8_t expect[32], bool force, xfer_gate_t *gate, uint8_t out[32],
                     char *err, size_t errlen) {
  unsigned len = 32;
  EVP_MD_CTX *c = EVP_MD_CTX_new();
  if (!c || EVP_MD_CTX_copy_ex(c, p->whole) != 1 || EVP_DigestFinal_ex(c, out, &len) != 1) {
    EVP_MD_CTX_free(c);
    return fail(TT_ENOMEM, err, errlen, "%s", p->name);
  }
  EVP_MD_CTX_free(c);
  if (memcmp(out, expect, 32)) {
    xfer_part_discard(p);
    return fail(TT_EPROTO, err, errlen,
                "%s: the whole file's sha256 does not match the sender's: nothing was kept", p->name);
  }
  struct timespec ts[2] = {{.tv_nsec = UTIME_OMIT},
                           {.tv_sec = p->src.mtime_ns / 1000000000, .tv_nsec = p->src.mtime_ns % 1000000000}};
  if (p->src.mtime_ns < 0) ts[1].tv_nsec = UTIME_OMIT;
  if (fsync(p->fd)) return fail(errno_code(), err, errlen, "%s", p->name);
  /* Permission bits only: a setuid or setgid file would run as whoever receives it, for
   * anyone who can reach it here (mkdir drops them too, agent/files/list.c). And less this
   * program's umask, as scp (without -p) and sftp-server make a file: the receiving side
   * says what it shares with its other users (an agent under umask 027 makes no file that
   * they can write, whatever the sender's bits). Directories the same way (agent MKDIR,
   * the console's pull -r), so both sides agree. */
  if (fchmod(p->fd, p->src.mode & 0777 & ~xfer_umask()) || futimens(p->fd, ts))
    return fail(errno_code(), err, errlen, "%s: cannot set mode and time", p->name);
  pthread_mutex_lock(&gate->mu);
  if (gate->stop) {
    pthread_mutex_unlock(&gate->mu);
    return fail(TT_ECLOSED, err, errlen, "%s: the transfer stopped before the file was put in place", p->name);
  }
  int r = renameat2(p->dirfd, p->part, p->dirfd, p->name, force ? 0 : RENAME_NOREPLACE), e = errno;
  gate->placed = r == 0;
  pthread_mutex_unlock(&gate->mu);
  if (r) {
    if (e == EEXIST) return fail(TT_EINVAL, err, errlen, "%s exists (use --force to replace it)", p->name);
    errno = e;
    return fail(errno_code(), err, errlen, "%s", p->name);
  }
  (void)!fsync(p->dirfd);
  unlinkat(p->dirfd, p->state, 0);
  return 0;
}

void xfer_part_close(xfer_part_t *p) {
  if (p->fd >= 0) close(p->fd);
  if (p->sfd >= 0) close(p->sfd);
  if (p->dirfd >= 0) close(p->dirfd);
  p->fd = p->sfd = p->dirfd = -1;
  EVP_MD_CTX_free(p->whole);
  EVP_MD_CTX_free(p->digest);
  p->whole = p->digest = NULL;
}

void xfer_part_discard(xfer_part_t *p) {
  if (p->dirfd >= 0) {
    unlinkat(p->dirfd, p->part, 0);
    unlinkat(p->dirfd, p->state, 0);
  }
  xfer_part_close(p);
}
