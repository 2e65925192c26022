/* Signed agent releases: Ed25519 release keys made once and kept offline, and the manifest
 * that names one package by size and sha256, written and read in exactly one form. */
#include "tt/release.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "pki_int.h"
#include "tt/hex.h"
#include "tt/pki.h"

/* An Ed25519 signature, and its base64 (two '=' of padding). */
#define SIG_LEN 64
#define SIG_B64_LEN 88
/* A keys file holds at most TT_RELEASE_KEYS_MAX PEM keys of ~113 bytes and perhaps comments:
 * anything near this is not a keys file, and is refused before it is read. */
#define KEYS_FILE_MAX (64u * 1024u)
/* "created": YYYY-MM-DDTHH:MM:SSZ. */
#define CREATED_LEN 20

/* The manifest's keys, in their one order. */
enum {
  L_MAGIC,
  L_PACKAGE,
  L_VERSION,
  L_ARCH,
  L_SIZE,
  L_SHA256,
  L_DOWNGRADE,
  L_CREATED,
  L_KEY,
  L_SIGNATURE,
  L_COUNT
};
static const char *const line_key[L_COUNT] = {
  "tether-release", "package", "version", "arch", "size",
  "sha256", "downgrade", "created", "key", "signature",
};

/* One line into err: the caller's words, then OpenSSL's reason if it left one. Empties
 * OpenSSL's queue either way, so a stale error never shows up in a later message. */
static int fail(int code, char *err, size_t cap, const char *fmt, ...) TT_PRINTF(4, 5);
static int fail(int code, char *err, size_t cap, const char *fmt, ...) {
  unsigned long e = ERR_peek_last_error();
  if (err != NULL && cap > 0) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(err, cap, fmt, ap);
    va_end(ap);
    const char *why = e != 0 ? ERR_reason_error_string(e) : NULL;
    if (why != NULL && n >= 0 && (size_t)n < cap)
      snprintf(err + n, cap - (size_t)n, ": %s", why);
  }
  ERR_clear_error();
  return code;
}

static bool is_digit(int c) { return c >= '0' && c <= '9'; }
static bool is_lower(int c) { return c >= 'a' && c <= 'z'; }
static bool is_alpha(int c) { return is_lower(c) || (c >= 'A' && c <= 'Z'); }
static bool is_lower_hex(int c) { return is_digit(c) || (c >= 'a' && c <= 'f'); }

/* Debian's package names: [a-z0-9.+-], starting with a letter or digit. */
static bool package_ok(const char *s, size_t len) {
  if (len == 0 || len > TT_RELEASE_PACKAGE_MAX || !(is_lower(s[0]) || is_digit(s[0])))
    return false;
  for (size_t i = 0; i < len; i++)
    if (!(is_lower(s[i]) || is_digit(s[i]) || s[i] == '.' || s[i] == '+' || s[i] == '-'))
      return false;
  return true;
}

/* Debian's architecture names: [a-z0-9-]. */
static bool arch_ok(const char *s, size_t len) {
  if (len == 0 || len > TT_RELEASE_ARCH_MAX)
    return false;
  for (size_t i = 0; i < len; i++)
    if (!(is_lower(s[i]) || is_digit(s[i]) || s[i] == '-'))
      return false;
  return true;
}

/* Counted, so the manifest's value need not be a string. Beyond the characters, dpkg's shape:
 * an epoch is digits, the upstream part starts with a digit, a revision is not empty; a
 * version dpkg would refuse is one we could not order against what runs. */
static bool version_ok_n(const char *s, size_t len) {
  if (len == 0 || len > TT_RELEASE_VERSION_MAX || !is_digit(s[0]))
    return false;
  for (size_t i = 0; i < len; i++) {
    char c = s[i];
    if (!(is_alpha(c) || is_digit(c) || c == '.' || c == '+' || c == '~' || c == ':' || c == '-'))
      return false;
  }
  const char *colon = memchr(s, ':', len);
  size_t up = 0;
  if (colon != NULL) {
    up = (size_t)(colon - s) + 1;
    for (size_t i = 0; i + 1 < up; i++)
      if (!is_digit(s[i]))
        return false;
  }
  size_t end = len;
  for (size_t i = len; i > up; i--) {
    if (s[i - 1] == '-') {
      end = i - 1;
      break;
    }
  }
  if (end == len - 1 && s[len - 1] == '-')
    return false; /* an empty revision */
  return end > up && is_digit(s[up]);
}

bool tt_version_ok(const char *v) {
  if (v == NULL)
    return false;
  size_t len = strnlen(v, TT_RELEASE_VERSION_MAX + 1);
  return len <= TT_RELEASE_VERSION_MAX && version_ok_n(v, len);
}

/* ---- Debian's version order ------------------------------------------------------------- */

/* dpkg's order of one character in a non-digit run: '~' before everything (the end of the
 * part included), then the end and digits, then letters, then everything else. */
static int order(int c) {
  if (is_digit(c))
    return 0;
  if (is_alpha(c))
    return c;
  if (c == '~')
    return -1;
  if (c != 0)
    return c + 256;
  return 0;
}

/* dpkg's verrevcmp over counted strings: non-digit runs by order(), digit runs as numbers. */
static int verrevcmp(const char *a, size_t alen, const char *b, size_t blen) {
  size_t i = 0, j = 0;
#define AT(s, n, k) ((k) < (n) ? (unsigned char)(s)[k] : 0)
  while (i < alen || j < blen) {
    int first_diff = 0;
    while ((i < alen && !is_digit(AT(a, alen, i))) || (j < blen && !is_digit(AT(b, blen, j)))) {
      int ac = order(AT(a, alen, i)), bc = order(AT(b, blen, j));
      if (ac != bc)
        return ac - bc;
      i++;
      j++;
    }
    while (AT(a, alen, i) == '0')
      i++;
    while (AT(b, blen, j) == '0')
      j++;
    while (is_digit(AT(a, alen, i)) && is_digit(AT(b, blen, j))) {
      if (first_diff == 0)
        first_diff = AT(a, alen, i) - AT(b, blen, j);
      i++;
      j++;
    }
    if (is_digit(AT(a, alen, i)))
      return 1;
    if (is_digit(AT(b, blen, j)))
      return -1;
    if (first_diff != 0)
      return first_diff;
  }
#undef AT
  return 0;
}

typedef struct {
  const char *epoch, *up, *rev;
  size_t elen, ulen, rlen;
} version_parts_t;

/* [epoch:]upstream[-revision], as dpkg splits it: the epoch before the first ':' (when it is
 * digits), the revision after the last '-'. */
static void version_split(const char *v, version_parts_t *p) {
  size_t len = strlen(v);
  memset(p, 0, sizeof *p);
  p->up = v;
  p->ulen = len;
  const char *colon = strchr(v, ':');
  if (colon != NULL && colon > v) {
    bool digits = true;
    for (const char *c = v; c < colon; c++)
      digits = digits && is_digit(*c);
    if (digits) {
      p->epoch = v;
      p->elen = (size_t)(colon - v);
      p->up = colon + 1;
      p->ulen = len - p->elen - 1;
    }
  }
  const char *dash = NULL;
  for (size_t i = 0; i < p->ulen; i++)
    if (p->up[i] == '-')
      dash = p->up + i;
  if (dash != NULL) {
    p->rev = dash + 1;
    p->rlen = p->ulen - (size_t)(dash - p->up) - 1;
    p->ulen = (size_t)(dash - p->up);
  }
}

/* Epochs as numbers of any length: leading zeros off, then the longer is larger. */
static int epoch_cmp(const char *a, size_t alen, const char *b, size_t blen) {
  while (alen > 0 && *a == '0')
    a++, alen--;
  while (blen > 0 && *b == '0')
    b++, blen--;
  if (alen != blen)
    return alen < blen ? -1 : 1;
  int c = alen > 0 ? memcmp(a, b, alen) : 0;
  return c < 0 ? -1 : c > 0;
}

int tt_version_cmp(const char *a, const char *b) {
  version_parts_t pa, pb;
  version_split(a != NULL ? a : "", &pa);
  version_split(b != NULL ? b : "", &pb);
  int c = epoch_cmp(pa.epoch, pa.elen, pb.epoch, pb.elen);
  if (c == 0)
    c = verrevcmp(pa.up, pa.ulen, pb.up, pb.ulen);
  if (c == 0)
    c = verrevcmp(pa.rev, pa.rlen, pb.rev, pb.rlen);
  return c < 0 ? -1 : c > 0;
}

const char *tt_release_arch(void) {
#if defined(__x86_64__) && defined(__ILP32__)
  return "x32";
#elif defined(__x86_64__)
  return "amd64";
#elif defined(__i386__)
  return "i386";
#elif defined(__aarch64__) && defined(__AARCH64EL__)
  return "arm64";
#elif defined(__arm__) && defined(__ARMEL__) && defined(__ARM_PCS_VFP)
  return "armhf";
#elif defined(__arm__) && defined(__ARMEL__)
  return "armel";
#elif defined(__riscv) && __riscv_xlen == 64
  return "riscv64";
#elif defined(__powerpc64__) && defined(__LITTLE_ENDIAN__)
  return "ppc64el";
#elif defined(__powerpc64__)
  return "ppc64";
#elif defined(__s390x__)
  return "s390x";
#elif defined(__loongarch64)
  return "loong64";
#else
  return "unknown";
#endif
}

/* ---- keys ------------------------------------------------------------------------------- */

/* sha256 of the key's SubjectPublicKeyInfo DER: what the manifest's "key" line names. */
static int key_fingerprint(EVP_PKEY *k, uint8_t fp[32]) {
  unsigned char *der = NULL;
  unsigned int n = 0;
  int len = i2d_PUBKEY(k, &der);
  int ok = len > 0 && EVP_Digest(der, (size_t)len, fp, &n, EVP_sha256(), NULL) == 1 && n == 32;
  OPENSSL_free(der);
  return ok ? 0 : TT_ETLS;
}

static bool file_exists(const char *path) {
  struct stat st;
  return lstat(path, &st) == 0;
}

static int emit_pubkey(BIO *b, void *obj) { return PEM_write_bio_PUBKEY(b, obj); }

int tt_release_key_new(const char *key_path, const char *pub_path, uint8_t fp[32], char *err, size_t cap) {
  uint8_t mine[32];
  EVP_PKEY *k = NULL;
  int rc;

  if (fp != NULL)
    memset(fp, 0, 32);
  if (key_path == NULL || pub_path == NULL || strcmp(key_path, pub_path) == 0)
    return fail(TT_EINVAL, err, cap, "the key and the public key need two file names");
  /* Both first: a key without its public half (or the reverse) is worse than a refusal. */
  for (int i = 0; i < 2; i++) {
    const char *p = i == 0 ? key_path : pub_path;
    if (file_exists(p))
      return fail(TT_ESTATE, err, cap, "%s: already exists, refusing to overwrite", p);
  }
  if ((k = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519")) == NULL)
    return fail(TT_ETLS, err, cap, "generating an Ed25519 key");
  if (key_fingerprint(k, mine) < 0) {
    rc = fail(TT_ETLS, err, cap, "fingerprinting the new key");
    goto out;
  }
  if ((rc = tt_pki_write_key(key_path, k, err, cap)) < 0)
    goto out;
  if ((rc = tt_pki_write_file(pub_path, 0644, emit_pubkey, k, err, cap)) < 0) {
    unlink(key_path); /* ours: O_EXCL made it a moment ago */
    goto out;
  }
  if (fp != NULL)
    memcpy(fp, mine, 32);
  rc = 0;
out:
  EVP_PKEY_free(k);
  if (rc == -EEXIST) /* made between the check and the write: the message stands */
    rc = TT_ESTATE;
  return rc;
}

void tt_release_keys_free(tt_release_keys_t *k) {
  if (k == NULL)
    return;
  for (size_t i = 0; i < k->n && i < TT_RELEASE_KEYS_MAX; i++)
    EVP_PKEY_free(k->key[i]);
  memset(k, 0, sizeof *k);
}

/* One PEM block: a PUBLIC KEY holding an Ed25519 key and nothing after it. */
static int key_from_block(const char *path, size_t nth, const char *name, const unsigned char *data, long len,
                          EVP_PKEY **out, char *err, size_t cap) {
  *out = NULL;
  if (strcmp(name, "PUBLIC KEY") != 0)
    return fail(TT_EINVAL, err, cap, "%s: block %zu is a %.40s, not a PUBLIC KEY (give the release key's .pub)", path,
                nth, name);
  const unsigned char *p = data;
  EVP_PKEY *k = d2i_PUBKEY(NULL, &p, len);
  if (k == NULL || p != data + len) {
    EVP_PKEY_free(k);
    return fail(TT_EINVAL, err, cap, "%s: key %zu is not a valid public key", path, nth);
  }
  if (!EVP_PKEY_is_a(k, "ED25519")) {
    const char *type = EVP_PKEY_get0_type_name(k);
    EVP_PKEY_free(k);
    return fail(TT_EINVAL, err, cap, "%s: key %zu is %.20s, not Ed25519 (make release keys with tether-certs release-key)",
                path, nth, type != NULL ? type : "another type");
  }
  *out = k;
  return 0;
}

int tt_release_keys_load(const char *path, tt_release_keys_t *k, char *err, size_t cap) {
  struct stat st;
  BIO *b = NULL;
  int rc = 0;

  memset(k, 0, sizeof *k);
  if (path == NULL)
    return fail(TT_EINVAL, err, cap, "no release keys file");
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0 || fstat(fd, &st) < 0) {
    rc = -errno;
    if (fd >= 0)
      close(fd);
    return fail(rc, err, cap, "%s: %s", path, strerror(-rc));
  }
  if (!S_ISREG(st.st_mode) || st.st_size > (off_t)KEYS_FILE_MAX) {
    close(fd);
    return fail(TT_EINVAL, err, cap, "%s: %s", path,
                !S_ISREG(st.st_mode) ? "not a regular file" : "too large for a file of release keys");
  }
  if ((b = BIO_new_fd(fd, BIO_CLOSE)) == NULL) {
    close(fd);
    return fail(TT_ENOMEM, err, cap, "%s: allocating a BIO", path);
  }
  for (size_t nth = 1;; nth++) {
    char *name = NULL, *header = NULL;
    unsigned char *data = NULL;
    long len = 0;
    if (PEM_read_bio(b, &name, &header, &data, &len) != 1) {
      unsigned long e = ERR_peek_last_error();
      if (ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE) {
        ERR_clear_error(); /* the end of the file */
        break;
      }
      rc = fail(TT_EINVAL, err, cap, "%s: block %zu is not valid PEM", path, nth);
      goto out;
    }
    EVP_PKEY *one = NULL;
    if (k->n == TT_RELEASE_KEYS_MAX)
      rc = fail(TT_EINVAL, err, cap, "%s: more than %u release keys", path, TT_RELEASE_KEYS_MAX);
    else if (header != NULL && header[0] != '\0')
      rc = fail(TT_EINVAL, err, cap, "%s: block %zu has PEM headers (an encrypted key?)", path, nth);
    else
      rc = key_from_block(path, nth, name, data, len, &one, err, cap);
    OPENSSL_free(name);
    OPENSSL_free(header);
    OPENSSL_free(data);
    if (rc < 0)
      goto out;
    k->key[k->n] = one;
    if (key_fingerprint(one, k->fp[k->n]) < 0) {
      EVP_PKEY_free(one);
      rc = fail(TT_ETLS, err, cap, "%s: fingerprinting key %zu", path, nth);
      goto out;
    }
    k->n++;
  }
  if (k->n == 0)
    rc = fail(TT_EINVAL, err, cap, "%s: no PEM public key in it", path);
out:
  BIO_free(b);
  if (rc < 0)
    tt_release_keys_free(k);
  return rc;
}

/* ---- time ------------------------------------------------------------------------------- */

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  int64_t era = (y >= 0 ? y : y - 399) / 400;
  unsigned yoe = (unsigned)(y - era * 400);
  unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + (int64_t)doe - 719468;
}

static unsigned days_in_month(unsigned y, unsigned m) {
  static const unsigned char days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  return m == 2 && leap ? 29 : days[m - 1];
}

/* YYYY-MM-DDTHH:MM:SSZ, in UTC, from 1970 on: unix ms. No leap second (we never write one). */
static bool created_parse(const char *s, size_t len, int64_t *ms) {
  static const char shape[] = "dddd-dd-ddTdd:dd:ddZ";
  unsigned v[6] = {0}, k = 0;
  if (len != CREATED_LEN)
    return false;
  for (size_t i = 0; i < CREATED_LEN; i++) {
    if (shape[i] == 'd') {
      if (!is_digit(s[i]))
        return false;
      v[k] = v[k] * 10 + (unsigned)(s[i] - '0');
    } else if (s[i] != shape[i]) {
      return false;
    } else {
      k++;
    }
  }
  if (v[0] < 1970 || v[1] < 1 || v[1] > 12 || v[2] < 1 || v[2] > days_in_month(v[0], v[1]) || v[3] > 23 ||
      v[4] > 59 || v[5] > 59)
    return false;
  int64_t secs = days_from_civil(v[0], v[1], v[2]) * 86400 + v[3] * 3600 + v[4] * 60 + v[5];
  *ms = secs * 1000;
  return true;
}

static bool created_format(int64_t ms, char out[CREATED_LEN + 1]) {
  time_t t = (time_t)(ms / 1000);
  struct tm tm;
  return ms >= 0 && gmtime_r(&t, &tm) != NULL && strftime(out, CREATED_LEN + 1, "%Y-%m-%dT%H:%M:%SZ", &tm) == CREATED_LEN;
}

/* ---- the manifest ----------------------------------------------------------------------- */

/* A key's name is shown in a refusal only when it reads as one. */
static bool key_printable(const char *s, size_t len) {
  if (len == 0 || len > 32)
    return false;
  for (size_t i = 0; i < len; i++)
    if (!(is_lower(s[i]) || is_digit(s[i]) || s[i] == '-' || s[i] == '_'))
      return false;
  return true;
}

/* A decimal size without sign or leading zero, 1..TT_RELEASE_SIZE_MAX. */
static const char *size_parse(const char *s, size_t len, uint64_t *out) {
  uint64_t v = 0;
  if (len == 0)
    return "empty";
  for (size_t i = 0; i < len; i++) {
    if (!is_digit(s[i]))
      return "not a number (decimal digits only)";
    if (v <= TT_RELEASE_SIZE_MAX) /* past it, only whether the rest are digits matters */
      v = v * 10 + (uint64_t)(s[i] - '0');
  }
  if (s[0] == '0')
    return len == 1 ? "zero" : "a leading zero";
  if (v > TT_RELEASE_SIZE_MAX)
    return "larger than a release may be";
  *out = v;
  return NULL;
}

/* Exactly 64 lower-case hex digits at s into out. */
static bool hex32_lower(const char *s, size_t len, uint8_t out[32]) {
  if (len != 64)
    return false;
  for (size_t i = 0; i < len; i++)
    if (!is_lower_hex(s[i]))
      return false;
  return tt_unhex(out, 32, s, 64) == 32;
}

/* The signature's base64: decoded, then encoded again and compared, so exactly one text (the
 * one EVP_EncodeBlock writes) stands for a signature. */
static bool sig_parse(const char *s, size_t len, uint8_t sig[SIG_LEN]) {
  unsigned char dec[SIG_B64_LEN / 4 * 3], enc[SIG_B64_LEN + 1];
  if (len != SIG_B64_LEN)
    return false;
  /* DecodeBlock counts the padding as zero bytes (66 here) and would skip blanks: both are
   * ruled out by the comparison below. */
  if (EVP_DecodeBlock(dec, (const unsigned char *)s, (int)len) != (int)sizeof dec)
    return false;
  if (EVP_EncodeBlock(enc, dec, SIG_LEN) != SIG_B64_LEN || memcmp(enc, s, SIG_B64_LEN) != 0)
    return false;
  memcpy(sig, dec, SIG_LEN);
  return true;
}

/* One value against its line's rules; NULL when good, else why not. */
static const char *field_parse(int line, const char *v, size_t vlen, tt_release_t *r, uint8_t sig[SIG_LEN]) {
  switch (line) {
  case L_MAGIC:
    return vlen == 1 && v[0] == '1' ? NULL : "format not supported (this program reads format 1)";
  case L_PACKAGE:
    if (!package_ok(v, vlen))
      return "must be 1-64 of a-z 0-9 . + -, starting with a letter or digit";
    memcpy(r->package, v, vlen);
    return NULL;
  case L_VERSION:
    if (!version_ok_n(v, vlen))
      return "not a Debian version (1-64 of A-Z a-z 0-9 . + ~ : -, [epoch:]upstream[-revision], starting with a digit)";
    memcpy(r->version, v, vlen);
    return NULL;
  case L_ARCH:
    if (!arch_ok(v, vlen))
      return "must be 1-16 of a-z 0-9 -";
    memcpy(r->arch, v, vlen);
    return NULL;
  case L_SIZE:
    return size_parse(v, vlen, &r->size);
  case L_SHA256:
    return hex32_lower(v, vlen, r->sha256) ? NULL : "not 64 lower-case hex digits";
  case L_DOWNGRADE:
    if (vlen == 2 && memcmp(v, "no", 2) == 0) return NULL;
    if (vlen <= 5 || memcmp(v, "from ", 5) != 0 || vlen - 5 > TT_RELEASE_VERSION_MAX)
      return "must be no, or from VERSION";
    memcpy(r->downgrade_from, v + 5, vlen - 5);
    r->downgrade_from[vlen - 5] = '\0';
    /* strlen: a NUL inside the value would hide what follows it from tt_version_ok. */
    if (strlen(r->downgrade_from) != vlen - 5 || !tt_version_ok(r->downgrade_from)) return "from: not a version";
    if (tt_version_cmp(r->downgrade_from, r->version) <= 0) return "from: not newer than the version";
    r->downgrade = true;
    return NULL;
  case L_CREATED:
    return created_parse(v, vlen, &r->created_ms) ? NULL : "not a UTC time YYYY-MM-DDTHH:MM:SSZ";
  case L_KEY:
    if (vlen != 7 + 64 || memcmp(v, "sha256:", 7) != 0 || !hex32_lower(v + 7, 64, r->key))
      return "not sha256: and 64 lower-case hex digits";
    return NULL;
  case L_SIGNATURE:
    return sig_parse(v, vlen, sig) ? NULL : "not an Ed25519 signature in base64 (88 characters)";
  }
  return "unexpected line";
}

/* The whole manifest, line by line in its one order; *signed_len: the bytes the signature
 * covers (all before the "signature " line). r is left for the caller to clear on failure. */
static int manifest_parse(const char *text, size_t len, tt_release_t *r, uint8_t sig[SIG_LEN], size_t *signed_len,
                          char *err, size_t cap) {
  size_t pos = 0;

  ERR_clear_error(); /* no stale OpenSSL reason on a refusal of ours */
  if (text == NULL)
    return fail(TT_EINVAL, err, cap, "no manifest");
  if (len > TT_RELEASE_MANIFEST_MAX)
    return fail(TT_EINVAL, err, cap, "%zu bytes, larger than a manifest may be (%u)", len,
                (unsigned)TT_RELEASE_MANIFEST_MAX);
  for (int i = 0; i < L_COUNT; i++) {
    int no = i + 1;
    const char *want = line_key[i];
    if (pos == len)
      return fail(TT_EINVAL, err, cap, "line %d: missing (expected \"%s\")", no, want);
    const char *s = text + pos, *nl = memchr(s, '\n', len - pos);
    if (nl == NULL)
      return fail(TT_EINVAL, err, cap, "line %d: %s: no newline at its end", no, want);
    size_t n = (size_t)(nl - s);
    if (n == 0)
      return fail(TT_EINVAL, err, cap, "line %d: blank line (expected \"%s\")", no, want);
    if (memchr(s, '\r', n) != NULL)
      return fail(TT_EINVAL, err, cap, "line %d: a carriage return (lines end in \\n alone)", no);
    const char *sp = memchr(s, ' ', n);
    size_t klen = sp != NULL ? (size_t)(sp - s) : n;
    if (klen != strlen(want) || memcmp(s, want, klen) != 0) {
      if (i == L_MAGIC)
        return fail(TT_EINVAL, err, cap, "line 1: not a Tether release manifest (it starts \"tether-release 1\")");
      for (int j = 0; j < L_COUNT; j++) {
        if (klen != strlen(line_key[j]) || memcmp(s, line_key[j], klen) != 0)
          continue;
        if (j < i)
          return fail(TT_EINVAL, err, cap, "line %d: %s: repeated", no, line_key[j]);
        return fail(TT_EINVAL, err, cap, "line %d: expected \"%s\", got \"%s\" (out of order)", no, want,
                    line_key[j]);
      }
      if (key_printable(s, klen))
        return fail(TT_EINVAL, err, cap, "line %d: unknown key \"%.*s\" (expected \"%s\")", no, (int)klen, s, want);
      return fail(TT_EINVAL, err, cap, "line %d: expected \"%s\"", no, want);
    }
    if (sp == NULL || klen + 1 == n)
      return fail(TT_EINVAL, err, cap, "line %d: %s: no value", no, want);
    const char *v = sp + 1;
    size_t vlen = n - klen - 1;
    if (v[0] == ' ' || v[vlen - 1] == ' ')
      return fail(TT_EINVAL, err, cap, "line %d: %s: a space before or after the value", no, want);
    if (i == L_SIGNATURE)
      *signed_len = pos;
    const char *why = field_parse(i, v, vlen, r, sig);
    if (why != NULL)
      return fail(TT_EINVAL, err, cap, "line %d: %s: %s", no, want, why);
    pos += n + 1;
  }
  if (pos != len)
    return fail(TT_EINVAL, err, cap, "line %d: nothing may follow the signature", L_COUNT + 1);
  return 0;
}

int tt_release_parse(const char *text, size_t len, tt_release_t *r, char *err, size_t cap) {
  uint8_t sig[SIG_LEN];
  size_t signed_len = 0;
  memset(r, 0, sizeof *r);
  int rc = manifest_parse(text, len, r, sig, &signed_len, err, cap);
  if (rc < 0)
    memset(r, 0, sizeof *r);
  return rc;
}

int tt_release_verify(const char *text, size_t len, const tt_release_keys_t *keys, tt_release_t *r, char *err,
                      size_t cap) {
  uint8_t sig[SIG_LEN];
  size_t signed_len = 0;
  EVP_MD_CTX *md = NULL;
  int rc;

  memset(r, 0, sizeof *r);
  if ((rc = manifest_parse(text, len, r, sig, &signed_len, err, cap)) < 0)
    goto out;
  EVP_PKEY *key = NULL;
  for (size_t i = 0; keys != NULL && i < keys->n && i < TT_RELEASE_KEYS_MAX && key == NULL; i++)
    if (memcmp(keys->fp[i], r->key, 32) == 0)
      key = keys->key[i];
  if (key == NULL) {
    char hex[TT_HEX_CAP(8)];
    tt_hex(hex, sizeof hex, r->key, 8);
    rc = fail(TT_EDENIED, err, cap, "signed by sha256:%s\u2026, not a release key this agent trusts", hex);
    goto out;
  }
  if ((md = EVP_MD_CTX_new()) == NULL) {
    rc = fail(TT_ENOMEM, err, cap, "allocating a digest context");
    goto out;
  }
  /* Ed25519 signs the message itself: no digest, one shot. */
  if (EVP_DigestVerifyInit(md, NULL, NULL, NULL, key) != 1 ||
      EVP_DigestVerify(md, sig, SIG_LEN, (const unsigned char *)text, signed_len) != 1) {
    ERR_clear_error(); /* a bad signature is the answer, not OpenSSL's failure */
    rc = fail(TT_EDENIED, err, cap, "signature does not verify");
    goto out;
  }
  rc = 0;
out:
  EVP_MD_CTX_free(md);
  if (rc < 0)
    memset(r, 0, sizeof *r);
  return rc;
}

int tt_release_sign(const char *key_path, tt_release_t *r, char *out, size_t cap, size_t *len, char *err,
                    size_t errcap) {
  char created[CREATED_LEN + 1], hash[TT_HEX_CAP(32)], fp[TT_HEX_CAP(32)];
  unsigned char b64[SIG_B64_LEN + 1];
  uint8_t sig[SIG_LEN];
  size_t slen = sizeof sig;
  EVP_PKEY *key = NULL;
  EVP_MD_CTX *md = NULL;
  tt_release_t check;
  int rc;

  if (cap > 0)
    out[0] = '\0';
  *len = 0;
  size_t plen = strnlen(r->package, sizeof r->package), alen = strnlen(r->arch, sizeof r->arch);
  if (plen == sizeof r->package || !package_ok(r->package, plen))
    return fail(TT_EINVAL, err, errcap, "package: must be 1-%u of a-z 0-9 . + -, starting with a letter or digit",
                TT_RELEASE_PACKAGE_MAX);
  if (strnlen(r->version, sizeof r->version) == sizeof r->version || !tt_version_ok(r->version))
    return fail(TT_EINVAL, err, errcap, "version: not a Debian version of 1-%u characters starting with a digit",
                TT_RELEASE_VERSION_MAX);
  if (alen == sizeof r->arch || !arch_ok(r->arch, alen))
    return fail(TT_EINVAL, err, errcap, "arch: must be 1-%u of a-z 0-9 -", TT_RELEASE_ARCH_MAX);
  if (r->size < 1 || r->size > TT_RELEASE_SIZE_MAX)
    return fail(TT_EINVAL, err, errcap, "size: must be 1 to %llu bytes", (unsigned long long)TT_RELEASE_SIZE_MAX);
  if ((rc = tt_pki_load_key(key_path, &key, err, errcap)) < 0)
    return rc;
  if (!EVP_PKEY_is_a(key, "ED25519")) {
    rc = fail(TT_EINVAL, err, errcap, "%s: not an Ed25519 release key (make one with tether-certs release-key)",
              key_path);
    goto out;
  }
  if (key_fingerprint(key, r->key) < 0) {
    rc = fail(TT_ETLS, err, errcap, "%s: fingerprinting the key", key_path);
    goto out;
  }
  r->created_ms = (int64_t)time(NULL) * 1000;
  if (!created_format(r->created_ms, created)) {
    rc = fail(TT_EINVAL, err, errcap, "the clock reads before 1970");
    goto out;
  }
  tt_hex(hash, sizeof hash, r->sha256, 32);
  tt_hex(fp, sizeof fp, r->key, 32);
  int n = snprintf(out, cap,
                   "tether-release 1\npackage %s\nversion %s\narch %s\nsize %llu\nsha256 %s\ndowngrade %s%s\n"
                   "created %s\nkey sha256:%s\n",
                   r->package, r->version, r->arch, (unsigned long long)r->size, hash, r->downgrade ? "from " : "no",
                   r->downgrade ? r->downgrade_from : "", created, fp);
  size_t total = n < 0 ? SIZE_MAX : (size_t)n + strlen("signature ") + SIG_B64_LEN + 1;
  if (total > TT_RELEASE_MANIFEST_MAX || total >= cap) {
    rc = fail(TT_ETOOBIG, err, errcap, "the manifest does not fit in %zu bytes", cap);
    goto out;
  }
  if ((md = EVP_MD_CTX_new()) == NULL || EVP_DigestSignInit(md, NULL, NULL, NULL, key) != 1 ||
      EVP_DigestSign(md, sig, &slen, (const unsigned char *)out, (size_t)n) != 1 || slen != SIG_LEN) {
    rc = fail(TT_ETLS, err, errcap, "signing the manifest");
    goto out;
  }
  EVP_EncodeBlock(b64, sig, SIG_LEN);
  snprintf(out + n, cap - (size_t)n, "signature %s\n", (const char *)b64);
  /* What we write must be what we read: a manifest we would refuse is never handed out. */
  if ((rc = tt_release_parse(out, total, &check, err, errcap)) < 0)
    goto out;
  *len = total;
  rc = 0;
out:
  EVP_MD_CTX_free(md);
  EVP_PKEY_free(key);
  if (rc < 0 && cap > 0)
    out[0] = '\0';
  return rc;
}
