/* libFuzzer driver for signed release manifests (certs/release.c), which every agent reads
 * from the broker before it fetches a package, and for Debian's version order, which decides
 * whether it installs one. A manifest that parses is in its one form (written again from its
 * fields it is the same bytes), verifies once the trusted key signs it, and is verified as it
 * is only when that key signed it; one that does not parse is refused alike by both calls,
 * with why, and leaves nothing in the result. Neither leaves an OpenSSL error queued. Versions
 * compare equal to themselves, antisymmetrically, and (those tt_version_ok takes) transitively.
 *
 * Input: the manifest, whole. The versions: its first three pieces between NULs and newlines
 * (the seeds with versions in them are not manifests). The trusted key: fuzz_release.h's. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/err.h>
#include "fuzz_release.h"
#include "tt/release.h"

/* A little more than a manifest may be, so that the refusal by size is reached. */
#define FZ_MAX (TT_RELEASE_MANIFEST_MAX + 64)
#define FZ_PIECES 3

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static EVP_PKEY *fz_priv;
static tt_release_keys_t fz_keys;
static char fz_piece[FZ_PIECES][FZ_MAX + 1];
static char fz_epoch[FZ_MAX + 3];
static char fz_signed[TT_RELEASE_MANIFEST_MAX + 1];
static char fz_resigned[TT_RELEASE_MANIFEST_MAX + FZR_SIG_LINE + 1];
static char fz_err[256], fz_err2[256];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  if (!(fz_priv = fzr_private()) || fzr_keys(fz_priv, &fz_keys)) abort();
  return 0;
}

static int sign_of(int c) { return c < 0 ? -1 : c > 0; }

static bool zeroed(const tt_release_t *r) {
  static const tt_release_t zero;
  return memcmp(r, &zero, sizeof(*r)) == 0;
}

/* A refusal says why, within its buffer, and leaves OpenSSL's queue empty. */
static void said_why(const char *err, size_t cap) {
  if (!err[0] || strnlen(err, cap) == cap) abort();
}

static void queue_empty(void) {
  if (ERR_peek_error() != 0) abort();
}

/* What parsed is what the manifest may hold. */
static void well_formed(const tt_release_t *r) {
  if (strnlen(r->package, sizeof(r->package)) == sizeof(r->package) || !r->package[0] ||
      strnlen(r->arch, sizeof(r->arch)) == sizeof(r->arch) || !r->arch[0] || !tt_version_ok(r->version) ||
      r->size < 1 || r->size > TT_RELEASE_SIZE_MAX || r->created_ms < 0 || r->created_ms % 1000)
    abort();
}

/* Debian's order over any strings a peer may send: reflexive and antisymmetric; over the
 * versions a manifest may carry, transitive too; and epoch 0 is no epoch. */
static void versions(const uint8_t *data, size_t size, const char *parsed) {
  size_t at = 0;
  for (int k = 0; k < FZ_PIECES; k++) {
    size_t n = 0;
    while (at < size && data[at] != '\0' && data[at] != '\n') fz_piece[k][n++] = (char)data[at++];
    fz_piece[k][n] = '\0';
    if (at < size) at++;
  }
  const char *v[FZ_PIECES + 1] = {fz_piece[0], fz_piece[1], fz_piece[2], parsed};
  const size_t nv = sizeof(v) / sizeof(v[0]);
  bool ok[FZ_PIECES + 1];
  for (size_t i = 0; i < nv; i++) {
    ok[i] = tt_version_ok(v[i]);
    if (tt_version_cmp(v[i], v[i]) != 0) abort();
    if (ok[i] && !strchr(v[i], ':')) {
      memcpy(fz_epoch, "0:", 2);
      strcpy(fz_epoch + 2, v[i]);
      bool fits = strlen(fz_epoch) <= TT_RELEASE_VERSION_MAX;
      if (tt_version_ok(fz_epoch) != fits || tt_version_cmp(fz_epoch, v[i]) != 0) abort();
    }
  }
  int c[FZ_PIECES + 1][FZ_PIECES + 1];
  for (size_t i = 0; i < nv; i++)
    for (size_t j = 0; j < nv; j++) c[i][j] = tt_version_cmp(v[i], v[j]);
  for (size_t i = 0; i < nv; i++)
    for (size_t j = 0; j < nv; j++) {
      if (c[i][j] < -1 || c[i][j] > 1 || sign_of(c[i][j]) != -sign_of(c[j][i])) abort();
      for (size_t k = 0; k < nv; k++)
        if (ok[i] && ok[j] && ok[k] && c[i][j] <= 0 && c[j][k] <= 0 && c[i][k] > 0) abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > FZ_MAX) return 0;
  const char *text = (const char *)data;
  tt_release_t p, v;

  memset(&p, 0xa5, sizeof(p));
  fz_err[0] = '\0';
  int prc = tt_release_parse(text, size, &p, fz_err, sizeof(fz_err));
  queue_empty();
  memset(&v, 0xa5, sizeof(v));
  fz_err2[0] = '\0';
  int vrc = tt_release_verify(text, size, &fz_keys, &v, fz_err2, sizeof(fz_err2));
  queue_empty();
  if (prc != 0) {
    /* Refused by both, for the same reason, nothing left behind. */
    if (prc != TT_EINVAL || vrc != prc || !zeroed(&p) || !zeroed(&v) || strcmp(fz_err, fz_err2) != 0) abort();
    said_why(fz_err, sizeof(fz_err));
    versions(data, size, "");
    return 0;
  }
  well_formed(&p);
  versions(data, size, p.version);
  bool ours = memcmp(p.key, fz_keys.fp[0], 32) == 0;
  if (vrc == 0) {
    if (!ours || memcmp(&v, &p, sizeof(p)) != 0) abort();
  } else {
    if (vrc != TT_EDENIED || !zeroed(&v)) abort();
    said_why(fz_err2, sizeof(fz_err2));
  }

  /* One form: the fields written out again are the bytes signed, then one signature line. */
  size_t n = fzr_format(&p, fz_signed, sizeof(fz_signed));
  if (n == 0 || n + FZR_SIG_LINE != size || memcmp(fz_signed, text, n) != 0 ||
      memcmp(text + n, "signature ", 10) != 0 || text[size - 1] != '\n')
    abort();

  /* Signed by the trusted key, whatever it held: verified, to the same fields, exactly when
   * it names that key. */
  memcpy(fz_resigned, text, n);
  if (fzr_sign_line(fz_priv, fz_resigned, n, fz_resigned + n)) abort();
  memset(&v, 0xa5, sizeof(v));
  vrc = tt_release_verify(fz_resigned, n + FZR_SIG_LINE, &fz_keys, &v, fz_err2, sizeof(fz_err2));
  queue_empty();
  if (ours && (vrc != 0 || memcmp(&v, &p, sizeof(p)) != 0)) abort();
  if (!ours && (vrc != TT_EDENIED || !zeroed(&v))) abort();
  return 0;
}
