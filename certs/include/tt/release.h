/* Signed agent releases (issue 14). The admin makes a release key with `tether-certs
 * release-key` and keeps it offline: it is not the broker's key and not the CA's, so a
 * broker (or whoever holds the broker's host) can store and serve releases but cannot make
 * one. `tether-certs release-sign` writes a manifest beside a package; an agent accepts a
 * package only if its size and sha256 are those of a manifest that verifies under a release
 * key the agent was given (agent.conf upgrade.release_keys), for this agent's architecture,
 * and newer than what runs unless the manifest allows a downgrade from exactly the version
 * that runs.
 *
 * The manifest is text, one "key value" per line, in this order, the signature last:
 *
 *   tether-release 1
 *   package tether-agent
 *   version 0.3.0
 *   arch amd64
 *   size 1234567
 *   sha256 <64 lowercase hex>
 *   downgrade no                  (or: downgrade from 0.3.1)
 *   created 2026-12-07T04:00:00Z
 *   key sha256:<64 hex: sha256 of the release public key's DER (SubjectPublicKeyInfo)>
 *   signature <base64 of the Ed25519 signature over every byte before this line>
 *
 * Every line ends in "\n"; nothing else is allowed (no blank lines, no \r, no other keys, no
 * repeated key): a parser that accepts exactly one form leaves nothing to disagree about. */
#ifndef TT_RELEASE_H
#define TT_RELEASE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <openssl/evp.h>
#include "tt/err.h"

/* A whole manifest, bytes: checked before anything is read of it. */
#define TT_RELEASE_MANIFEST_MAX 1024
/* A package name and a version (Debian's characters: [A-Za-z0-9.+~-], starting with a
 * digit for a version), an architecture (Debian's names: amd64, arm64, ...). */
#define TT_RELEASE_PACKAGE_MAX 64
#define TT_RELEASE_VERSION_MAX 64
#define TT_RELEASE_ARCH_MAX 16
/* The largest package a manifest may describe (an agent package is a few MB). */
#define TT_RELEASE_SIZE_MAX (512ull * 1024 * 1024)
/* Release public keys one file may hold (a new key rolls in beside the old one). */
#define TT_RELEASE_KEYS_MAX 8

typedef struct {
  char package[TT_RELEASE_PACKAGE_MAX + 1];
  char version[TT_RELEASE_VERSION_MAX + 1];
  char arch[TT_RELEASE_ARCH_MAX + 1];
  uint64_t size;
  uint8_t sha256[32];
  /* A downgrade is allowed only from one version, the one this release replaces ("downgrade
   * from 0.3.1"): a signed downgrade cannot be replayed later to take agents back from
   * whatever they run then. */
  bool downgrade;
  char downgrade_from[TT_RELEASE_VERSION_MAX + 1];
  int64_t created_ms;      /* unix ms, from "created" */
  uint8_t key[32];         /* sha256 of the signing key's public DER */
} tt_release_t;

typedef struct {
  EVP_PKEY *key[TT_RELEASE_KEYS_MAX];
  uint8_t fp[TT_RELEASE_KEYS_MAX][32];
  size_t n;
} tt_release_keys_t;

/* Make a new Ed25519 release key: key_path (PKCS#8 PEM, 0600) and pub_path (public key PEM,
 * 0644). Refuses to overwrite either (TT_ESTATE). fp (may be NULL): the key's fingerprint. */
int tt_release_key_new(const char *key_path, const char *pub_path, uint8_t fp[32], char *err, size_t cap) TT_WUR;

/* Read one or more PEM public keys (Ed25519 only) from path into k (zeroed first). TT_EINVAL
 * with a reason for a file with none, another key type, or more than TT_RELEASE_KEYS_MAX. */
int tt_release_keys_load(const char *path, tt_release_keys_t *k, char *err, size_t cap) TT_WUR;
void tt_release_keys_free(tt_release_keys_t *k);

/* Write r's manifest signed by the private key at key_path into out (NUL-terminated,
 * at most TT_RELEASE_MANIFEST_MAX bytes); r->key and r->created_ms are set here (created:
 * now). *len: its length. */
int tt_release_sign(const char *key_path, tt_release_t *r, char *out, size_t cap, size_t *len, char *err,
                    size_t errcap) TT_WUR;

/* Parse a manifest without checking its signature (for showing it; the broker's check when it
 * has no keys). TT_EINVAL with the first thing wrong, for people ("line 4: size: not a
 * number"). */
int tt_release_parse(const char *text, size_t len, tt_release_t *r, char *err, size_t cap) TT_WUR;

/* Parse and check the signature under one of keys: TT_EINVAL for a manifest that does not
 * parse, TT_EDENIED when no key of keys made its signature ("signed by sha256:ab12…, not a
 * release key this agent trusts" or "signature does not verify"). */
int tt_release_verify(const char *text, size_t len, const tt_release_keys_t *keys, tt_release_t *r, char *err,
                      size_t cap) TT_WUR;

/* Debian's version order (dpkg's verrevcmp over [epoch:]upstream[-revision]): <0, 0, >0. */
int tt_version_cmp(const char *a, const char *b);
/* A version as the manifest allows it: 1..TT_RELEASE_VERSION_MAX of [A-Za-z0-9.+~:-],
 * starting with a digit, in dpkg's shape (an epoch of digits, an upstream part starting with a
 * digit, no empty revision), so that tt_version_cmp orders it as dpkg does. */
bool tt_version_ok(const char *v);
/* The Debian architecture this program was built for ("amd64", "arm64", "i386", "armhf",
 * "riscv64", "ppc64el", "s390x"), from the compiler's macros; "unknown" elsewhere. */
const char *tt_release_arch(void);

#endif
