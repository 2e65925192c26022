/* tether-certs: the admin's tool for the broker's PKI. Makes the CA and the broker's
 * certificate, issues identities, prints fingerprints (the CA pin) and shows certificates;
 * makes the offline release key, and signs and shows agent release manifests. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "tt/audit.h"
#include "tt/cert.h"
#include "tt/hex.h"
#include "tt/limits.h"
#include "tt/pki.h"
#include "tt/release.h"

#include "pki_int.h"

#define PROG "tether-certs"
#define EXIT_USAGE 2
#define PATH_CAP 4096

static const char usage_text[] =
  "usage: " PROG " COMMAND [OPTIONS]\n"
  "\n"
  "  init --dir DIR [--name NAME] [--san HOST ...] [--days N]\n"
  "      Make DIR (0700) with a new CA (ca.pem, ca.key) and the broker's certificate\n"
  "      (broker.pem, broker.key; broker.pem holds the broker's certificate followed by\n"
  "      the CA's, which enrolling agents check against their pin). NAME is the broker's CN (default broker). Each --san\n"
  "      adds an IP address or DNS name (default 127.0.0.1, ::1, localhost). --days is\n"
  "      the broker certificate's validity (default 730). Refuses if DIR/ca.key exists.\n"
  "  issue ROLE NAME --dir DIR [--out PREFIX] [--days N | --seconds N]\n"
  "      Issue a key and certificate for ROLE (agent, technician, admin, or gateway for\n"
  "      tether-sshd) and NAME, signed by DIR's CA, as PREFIX.pem and PREFIX.key (default\n"
  "      DIR/NAME). Default validity: 30 days for agents, 365 days for technicians and\n"
  "      admins, 730 for a gateway.\n"
  "  fingerprint --dir DIR | --cert FILE\n"
  "      Print the sha256 fingerprint of DIR's CA (the pin agents enroll with) or FILE.\n"
  "  show FILE\n"
  "      Print a certificate's role, name, fingerprint and expiry.\n"
  "  audit-verify (--dir DIR | --cert CA.pem) --checkpoints FILE EXPORT\n"
  "      Check an exported audit log (`tether audit --json > EXPORT`, or - for standard\n"
  "      input) against the broker's signed checkpoints (its audit.checkpoints file),\n"
  "      with nothing but the CA certificate: every hash and link, every checkpoint's\n"
  "      signature, and what damage there is (an edited entry, a missing range, a cut\n"
  "      tail, a rewritten chain). Exit status 1 if anything is wrong.\n"
  "  release-key --out PREFIX\n"
  "      Make an Ed25519 release key, PREFIX.key and PREFIX.pub, and print its\n"
  "      fingerprint. Keep PREFIX.key offline (never on the broker: a release signed\n"
  "      with it is one every agent installs); give PREFIX.pub to the broker\n"
  "      (release.keys) and to the agents (agent.conf upgrade.release_keys).\n"
  "  release-sign --key KEY PACKAGE [--version V] [--arch A] [--package NAME]\n"
  "               [--downgrade-from VERSION] [--out FILE]\n"
  "      Write FILE (default PACKAGE.manifest): PACKAGE's size and sha256 with its\n"
  "      package name, version and architecture, signed by the release key KEY. What\n"
  "      is not given is read from the .deb's control fields (with dpkg-deb).\n"
  "      --downgrade-from VERSION lets agents running exactly VERSION (newer than\n"
  "      this one) install it: a downgrade signed once cannot take agents back later\n"
  "      from whatever they run then.\n"
  "  release-show MANIFEST [--keys PUBFILE]\n"
  "      Print a release manifest's fields; with --keys, check its signature against\n"
  "      the release public keys in PUBFILE. Exit status 1 if it does not verify.\n"
  "\n"
  "  --help      this text\n"
  "  --version   print the version\n"
  "\n"
  "NAME: 1-64 characters of A-Z a-z 0-9 . _ @ -. Keys are written 0600; certificates,\n"
  "public keys and manifests 0644; no existing file is ever overwritten.\n"
  "Exit status: 0 success, 1 failure, 2 bad usage.\n";

static int usage_error(const char *fmt, ...) TT_PRINTF(1, 2);
static int usage_error(const char *fmt, ...) {
  va_list ap;
  fputs(PROG ": ", stderr);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  return EXIT_USAGE;
}

static int failure(const char *fmt, ...) TT_PRINTF(1, 2);
static int failure(const char *fmt, ...) {
  va_list ap;
  fputs(PROG ": ", stderr);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  return EXIT_FAILURE;
}

/* The message for getopt_long's '?' or ':' (opterr is off so getopt stays quiet). */
static int bad_option(int c, char **argv) {
  const char *opt = argv[optind - 1];
  if (c == ':')
    return usage_error("option '%s' needs a value", opt);
  if (optopt != 0)
    return usage_error("unknown option '-%c' (try --help)", optopt);
  return usage_error("unknown option '%s' (try --help)", opt);
}

/* A positive decimal count no larger than max. */
static int parse_count(const char *s, long long max, long long *out) {
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno != 0 || end == s || *end != '\0' || v < 1 || v > max)
    return -1;
  *out = v;
  return 0;
}

static int join(char *dst, const char *a, const char *b, const char *c) {
  int n = snprintf(dst, PATH_CAP, "%s%s%s", a, b, c);
  return n >= 0 && n < PATH_CAP ? 0 : -1;
}

static int path_exists(const char *p) {
  struct stat st;
  return lstat(p, &st) == 0;
}

static void format_time(const ASN1_TIME *t, char *out, size_t cap) {
  struct tm tm;
  if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1 ||
      strftime(out, cap, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
    snprintf(out, cap, "?");
}

/* broker.pem: the broker's certificate, then the CA's. The broker sends the file's chain
 * as it is, and an enrolling agent, which has only the CA's fingerprint, finds the CA in
 * it. Readers of the first certificate (show, fingerprint, the console) see the broker.
 * Same rules as tt_pki_write_cert: O_EXCL, no symlink, 0644, fsync, removed if short. */
static int write_chain(const char *path, X509 *leaf, X509 *ca, char *err, size_t errlen) {
  int rc = 0;
  BIO *b = NULL;
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) {
    snprintf(err, errlen, "%s: %s", path,
             errno == EEXIST ? "already exists, refusing to overwrite" : strerror(errno));
    return -1;
  }
  if ((b = BIO_new_fd(fd, BIO_NOCLOSE)) == NULL || PEM_write_bio_X509(b, leaf) != 1 ||
      PEM_write_bio_X509(b, ca) != 1 || BIO_flush(b) != 1) {
    snprintf(err, errlen, "%s: writing PEM", path);
    rc = -1;
  } else if (fchmod(fd, 0644) < 0 || fsync(fd) < 0) {
    snprintf(err, errlen, "%s: %s", path, strerror(errno));
    rc = -1;
  }
  BIO_free(b);
  ERR_clear_error();
  if (close(fd) < 0 && rc == 0) {
    snprintf(err, errlen, "%s: %s", path, strerror(errno));
    rc = -1;
  }
  if (rc < 0)
    unlink(path);
  return rc;
}

static const struct option dir_opts[] = {
  {"dir", required_argument, NULL, 'd'},   {"name", required_argument, NULL, 'n'},
  {"san", required_argument, NULL, 's'},   {"days", required_argument, NULL, 'D'},
  {"seconds", required_argument, NULL, 'S'}, {"out", required_argument, NULL, 'o'},
  {"cert", required_argument, NULL, 'c'},  {"help", no_argument, NULL, 'h'},
  {"checkpoints", required_argument, NULL, 'k'},
  {"key", required_argument, NULL, 'y'},   {"keys", required_argument, NULL, 'K'},
  {"version", required_argument, NULL, 'V'}, {"arch", required_argument, NULL, 'a'},
  {"package", required_argument, NULL, 'p'}, {"downgrade-from", required_argument, NULL, 'g'},
  {NULL, 0, NULL, 0},
};

/* Options each command takes, so a flag meant for another command is refused. */
static int option_allowed(int c, const char *allowed) {
  return c == 'h' || strchr(allowed, c) != NULL;
}

typedef struct {
  const char *dir, *name, *out, *cert, *checkpoints;
  const char *key, *keys, *version, *arch, *package;
  const char *downgrade_from;
  const char *sans[TT_PKI_SANS_MAX];
  size_t nsans;
  long long seconds; /* 0: default */
  int help;
  char *pos[3];
  int npos;
} opts_t;

static int parse_opts(int argc, char **argv, const char *allowed, opts_t *o) {
  int c, li = -1;
  memset(o, 0, sizeof *o);
  opterr = 0;
  optind = 1;
  while ((c = getopt_long(argc, argv, ":h", dir_opts, &li)) != -1) {
    /* The option's own name: argv[optind - 1] is its value when given as "--x VALUE". */
    const char *opt = li >= 0 ? dir_opts[li].name : "h";
    li = -1;
    if (c == '?' || c == ':')
      return bad_option(c, argv);
    if (!option_allowed(c, allowed))
      return usage_error("option '--%s' does not apply to %s (try --help)", opt, argv[0]);
    long long v;
    switch (c) {
    case 'h':
      o->help = 1;
      break;
    case 'd':
      o->dir = optarg;
      break;
    case 'n':
      o->name = optarg;
      break;
    case 'o':
      o->out = optarg;
      break;
    case 'c':
      o->cert = optarg;
      break;
    case 'k':
      o->checkpoints = optarg;
      break;
    case 'y':
      o->key = optarg;
      break;
    case 'K':
      o->keys = optarg;
      break;
    case 'V':
      o->version = optarg;
      break;
    case 'a':
      o->arch = optarg;
      break;
    case 'p':
      o->package = optarg;
      break;
    case 'g':
      o->downgrade_from = optarg;
      break;
    case 's':
      if (o->nsans == TT_PKI_SANS_MAX)
        return usage_error("at most %u --san", TT_PKI_SANS_MAX);
      if (!tt_pki_san_valid(optarg))
        return usage_error("--san '%s' is neither an IP address nor a DNS name", optarg);
      o->sans[o->nsans++] = optarg;
      break;
    case 'D':
    case 'S':
      if (o->seconds != 0)
        return usage_error("give one of --days and --seconds, once");
      if (c == 'D' && parse_count(optarg, TT_PKI_MAX_SECONDS / TT_PKI_DAY, &v) == 0) {
        o->seconds = v * TT_PKI_DAY;
      } else if (c == 'S' && parse_count(optarg, TT_PKI_MAX_SECONDS, &v) == 0) {
        o->seconds = v;
      } else {
        return usage_error("--%s must be a whole number from 1 to %lld", opt,
                           c == 'D' ? TT_PKI_MAX_SECONDS / TT_PKI_DAY : TT_PKI_MAX_SECONDS);
      }
      break;
    default:
      return usage_error("unexpected option");
    }
  }
  for (int i = optind; i < argc; i++) {
    if (o->npos == (int)(sizeof o->pos / sizeof o->pos[0]))
      return usage_error("too many arguments to %s", argv[0]);
    o->pos[o->npos++] = argv[i];
  }
  return 0;
}

static int check_name(const char *name) {
  if (tt_name_valid(name))
    return 0;
  return usage_error("name '%s' must be 1-%u characters of A-Z a-z 0-9 . _ @ -", name,
                     TT_NAME_MAX);
}

static int cmd_init(int argc, char **argv) {
  static const char *const default_sans[] = {"127.0.0.1", "::1", "localhost"};
  char ca_pem[PATH_CAP], ca_key[PATH_CAP], br_pem[PATH_CAP], br_key[PATH_CAP];
  char err[512], fp[TT_FINGERPRINT_LEN + 1], until[32];
  X509 *ca = NULL, *br = NULL;
  EVP_PKEY *cak = NULL, *brk = NULL;
  opts_t o;
  struct stat st;
  int rc;

  if ((rc = parse_opts(argc, argv, "dnsD", &o)) != 0)
    return rc;
  if (o.help)
    return fputs(usage_text, stdout), 0;
  if (o.npos > 0)
    return usage_error("init takes no arguments, got '%s'", o.pos[0]);
  if (o.dir == NULL)
    return usage_error("init needs --dir DIR");
  if (o.name == NULL)
    o.name = "broker";
  if ((rc = check_name(o.name)) != 0)
    return rc;
  if (join(ca_pem, o.dir, "/", TT_PKI_CA_CERT_FILE) < 0 ||
      join(ca_key, o.dir, "/", TT_PKI_CA_KEY_FILE) < 0 ||
      join(br_pem, o.dir, "/", "broker.pem") < 0 || join(br_key, o.dir, "/", "broker.key") < 0)
    return usage_error("--dir is too long");

  if (mkdir(o.dir, 0700) < 0 && errno != EEXIST)
    return failure("%s: %s", o.dir, strerror(errno));
  if (stat(o.dir, &st) < 0 || !S_ISDIR(st.st_mode))
    return failure("%s: not a directory", o.dir);
  /* Check all four first: a half-made directory is worse than a clear refusal. */
  if (path_exists(ca_key))
    return failure("%s: already exists, refusing to overwrite an existing CA", ca_key);
  const char *const all[] = {ca_pem, br_pem, br_key};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
    if (path_exists(all[i]))
      return failure("%s: already exists, refusing to overwrite", all[i]);

  tt_pki_leaf_t leaf = {
    .role = TT_ROLE_BROKER,
    .name = o.name,
    .seconds = o.seconds,
    .sans = o.nsans > 0 ? o.sans : default_sans,
    .nsans = o.nsans > 0 ? o.nsans : sizeof default_sans / sizeof default_sans[0],
  };
  if (tt_pki_ca_new(0, &ca, &cak, err, sizeof err) < 0 ||
      tt_pki_issue(ca, cak, &leaf, &br, &brk, err, sizeof err) < 0) {
    rc = failure("%s", err);
    goto out;
  }
  /* Key before certificate: a certificate without its key is the more confusing leftover.
   * On any failure, remove what this run wrote so init can simply be run again. */
  const struct {
    const char *path;
    EVP_PKEY *key;
    X509 *cert;
  } files[] = {{ca_key, cak, NULL}, {ca_pem, NULL, ca}, {br_key, brk, NULL}, {br_pem, NULL, br}};
  for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
    int w = files[i].key != NULL ? tt_pki_write_key(files[i].path, files[i].key, err, sizeof err)
            : files[i].cert == br ? write_chain(files[i].path, br, ca, err, sizeof err)
                                  : tt_pki_write_cert(files[i].path, files[i].cert, err,
                                                      sizeof err);
    if (w < 0) {
      rc = failure("%s", err);
      while (i-- > 0)
        unlink(files[i].path);
      goto out;
    }
  }
  if (tt_cert_fingerprint(ca, fp, sizeof fp) < 0) {
    rc = failure("cannot fingerprint the new CA");
    goto out;
  }
  format_time(X509_get0_notAfter(br), until, sizeof until);
  printf("wrote %s, %s, %s, %s\n", ca_pem, ca_key, br_pem, br_key);
  printf("broker %s, not after %s, names", o.name, until);
  for (size_t i = 0; i < leaf.nsans; i++)
    printf(" %s", leaf.sans[i]);
  printf("\nca pin: %s\n", fp);
  rc = 0;
out:
  X509_free(ca);
  X509_free(br);
  EVP_PKEY_free(cak);
  EVP_PKEY_free(brk);
  return rc;
}

static int cmd_issue(int argc, char **argv) {
  char pem[PATH_CAP], key[PATH_CAP], defprefix[PATH_CAP], err[512], until[32];
  X509 *ca = NULL, *x = NULL;
  EVP_PKEY *cak = NULL, *k = NULL;
  tt_role_t role;
  opts_t o;
  int rc;

  if ((rc = parse_opts(argc, argv, "doDS", &o)) != 0)
    return rc;
  if (o.help)
    return fputs(usage_text, stdout), 0;
  if (o.npos != 2)
    return usage_error("issue needs ROLE and NAME (try --help)");
  if (tt_role_parse(o.pos[0], &role) < 0 || role == TT_ROLE_BROKER)
    return usage_error("role '%s' must be agent, technician, admin or gateway", o.pos[0]);
  if ((rc = check_name(o.pos[1])) != 0)
    return rc;
  if (o.dir == NULL)
    return usage_error("issue needs --dir DIR (where the CA is)");
  if (o.out != NULL && o.out[0] == '\0')
    return usage_error("--out must not be empty");
  const char *prefix = o.out;
  if (prefix == NULL) {
    if (join(defprefix, o.dir, "/", o.pos[1]) < 0)
      return usage_error("output path is too long");
    prefix = defprefix;
  }
  if (join(pem, prefix, ".pem", "") < 0 || join(key, prefix, ".key", "") < 0)
    return usage_error("output path is too long");
  if (path_exists(pem) || path_exists(key))
    return failure("%s: already exists, refusing to overwrite", path_exists(pem) ? pem : key);

  tt_pki_leaf_t leaf = {.role = role, .name = o.pos[1], .seconds = o.seconds};
  if (tt_pki_load_ca(o.dir, &ca, &cak, err, sizeof err) < 0 ||
      tt_pki_issue(ca, cak, &leaf, &x, &k, err, sizeof err) < 0 ||
      tt_pki_write_key(key, k, err, sizeof err) < 0) {
    rc = failure("%s", err);
    goto out;
  }
  if (tt_pki_write_cert(pem, x, err, sizeof err) < 0) {
    rc = failure("%s", err);
    unlink(key);
    goto out;
  }
  format_time(X509_get0_notAfter(x), until, sizeof until);
  printf("wrote %s, %s\n%s %s, not after %s\n", pem, key, tt_role_name(role), o.pos[1], until);
  rc = 0;
out:
  X509_free(ca);
  X509_free(x);
  EVP_PKEY_free(cak);
  EVP_PKEY_free(k);
  return rc;
}

static int cmd_fingerprint(int argc, char **argv) {
  char path[PATH_CAP], err[512], fp[TT_FINGERPRINT_LEN + 1];
  X509 *x = NULL;
  opts_t o;
  int rc;

  if ((rc = parse_opts(argc, argv, "dc", &o)) != 0)
    return rc;
  if (o.help)
    return fputs(usage_text, stdout), 0;
  if (o.npos > 0)
    return usage_error("fingerprint takes no arguments, got '%s'", o.pos[0]);
  if ((o.dir == NULL) == (o.cert == NULL))
    return usage_error("fingerprint needs one of --dir DIR and --cert FILE");
  if (o.dir != NULL && join(path, o.dir, "/", TT_PKI_CA_CERT_FILE) < 0)
    return usage_error("--dir is too long");
  if (tt_pki_load_cert(o.dir != NULL ? path : o.cert, &x, err, sizeof err) < 0)
    return failure("%s", err);
  rc = tt_cert_fingerprint(x, fp, sizeof fp);
  X509_free(x);
  if (rc < 0)
    return failure("cannot fingerprint %s", o.dir != NULL ? path : o.cert);
  printf("%s\n", fp);
  return 0;
}

static int cmd_show(int argc, char **argv) {
  char err[512], until[32];
  tt_identity_t id;
  X509 *x = NULL;
  opts_t o;
  int rc;

  if ((rc = parse_opts(argc, argv, "", &o)) != 0)
    return rc;
  if (o.help)
    return fputs(usage_text, stdout), 0;
  if (o.npos != 1)
    return usage_error("show needs exactly one FILE");
  if (tt_pki_load_cert(o.pos[0], &x, err, sizeof err) < 0)
    return failure("%s", err);
  format_time(X509_get0_notAfter(x), until, sizeof until);
  if (tt_cert_identity(x, &id) == 0) {
    printf("role: %s\nname: %s\n", tt_role_name(id.role), id.name);
  } else if (X509_check_ca(x) >= 1 && tt_cert_fingerprint(x, id.fingerprint,
                                                          sizeof id.fingerprint) == 0) {
    /* The CA has OU=ca, which is not a role; show its subject instead. */
    printf("role: ca\nsubject: ");
    X509_NAME_print_ex_fp(stdout, X509_get_subject_name(x), 0, XN_FLAG_ONELINE);
    printf("\n");
  } else {
    X509_free(x);
    return failure("%s: not a Tether identity (OU must be a role, CN a valid name)",
                   o.pos[0]);
  }
  printf("fingerprint: %s\nnot-after: %s\n", id.fingerprint, until);
  X509_free(x);
  return 0;
}

/* ---- audit-verify --------------------------------------------------------------------------- */

/* The checkpoint file: each line's signature checked against the CA; bad ones are problems. */
static int load_anchors(const char *path, X509 *ca, tt_audit_walk_t *w, tt_audit_anchors_t *k) {
  FILE *f = fopen(path, "re");
  if (!f) return failure("%s: %s", path, strerror(errno));
  char line[TT_AUDIT_CP_LINE_MAX + 2];
  unsigned lineno = 0;
  int rc = 0;
  while (rc == 0 && fgets(line, sizeof line, f)) rc = tt_audit_anchors_add(k, w, ca, path, ++lineno, line);
  fclose(f);
  if (rc == TT_ETOOBIG) return failure("%s: more than %u checkpoints", path, TT_AUDIT_CHECKPOINTS_MAX);
  if (rc) return failure("out of memory");
  tt_audit_anchors_finish(k, w);
  return 0;
}

static int hex32(const char *s, uint8_t out[32]) {
  if (!s || strlen(s) != 64) return -1;
  return tt_unhex(out, 32, s, 64) == 32 ? 0 : -1;
}

/* Format 2: the values' salts and digests ride along. The fields' texts are NUL-free (the
 * console escapes what is not text), so the split reads them as strings. */
static int walk_line2(tt_audit_walk_t *w, json_t *o, int64_t id, int64_t ts, const char *const field[],
                      const uint8_t prev[32], const uint8_t hash[32], unsigned lineno) {
  json_t *vals = json_object_get(o, "values");
  tt_audit_pair_t p[TT_AUDIT_VALUES_MAX];
  tt_audit_value_t v[TT_AUDIT_VALUES_MAX];
  size_t np = tt_audit_split(field[TT_AUDIT_ACTOR], field[TT_AUDIT_TARGET], field[TT_AUDIT_DETAIL], p);
  if (!json_is_array(vals)) return failure("export line %u lacks its values (salts and digests)", lineno);
  size_t nv = json_array_size(vals);
  if (nv != np) /* an entry edited in the export: the hash will not hold either */
    tt_audit_walk_problem(w, id, "entry %lld was edited: it has %zu values and %zu salts and digests", (long long)id,
                          np, nv);
  for (size_t i = 0; i < np; i++) {
    if (i >= nv) {
      memset(&v[i], 0, sizeof(v[i]));
      continue;
    }
    json_t *x = json_array_get(vals, i);
    const char *salt = json_string_value(json_object_get(x, "salt"));
    memset(&v[i], 0, sizeof(v[i]));
    if (!salt || hex32(json_string_value(json_object_get(x, "digest")), v[i].digest))
      return failure("export line %u: value %zu lacks its salt or digest", lineno, i);
    v[i].has_salt = salt[0] != '\0';
    if (v[i].has_salt &&
        (strlen(salt) != 2 * TT_AUDIT_SALT_LEN || tt_unhex(v[i].salt, TT_AUDIT_SALT_LEN, salt, strlen(salt)) !=
                                                      (int)TT_AUDIT_SALT_LEN))
      return failure("export line %u: value %zu has a malformed salt", lineno, i);
    v[i].erased = (int64_t)json_integer_value(json_object_get(x, "erased"));
    const char *d2 = json_string_value(json_object_get(x, "digest2"));
    v[i].has_digest2 = d2 && d2[0] && hex32(d2, v[i].digest2) == 0;
  }
  int rc = tt_audit_walk_entry2(w, id, ts, field[TT_AUDIT_ACTION], strlen(field[TT_AUDIT_ACTION]), p, v, np, prev,
                                hash);
  return rc ? failure("cannot hash export line %u", lineno) : 0;
}

/* A pruned entry's released values (before the first entry): an erasure after the cut counts
 * them in its commitment. */
static int walk_pruned(tt_audit_walk_t *w, json_t *o, json_t *id, unsigned lineno) {
  json_t *vals = json_object_get(o, "values");
  int64_t e = json_is_integer(id) ? (int64_t)json_integer_value(id) : 0;
  if (!w->based || e <= 0 || e > w->base || w->count > 0 || !json_is_array(vals) ||
      json_array_size(vals) > TT_AUDIT_VALUES_MAX)
    return failure("export line %u: a pruned entry where none can be (not before the entries, or after the cut)",
                   lineno);
  for (size_t i = 0; i < json_array_size(vals); i++) {
    json_t *x = json_array_get(vals, i);
    uint8_t d[32], d2[32];
    json_t *n = json_object_get(x, "n"), *by = json_object_get(x, "erased");
    if (!json_is_integer(n) || !json_is_integer(by) || json_integer_value(n) < 0 ||
        json_integer_value(n) >= (json_int_t)TT_AUDIT_VALUES_MAX || hex32(json_string_value(json_object_get(x, "digest")), d) ||
        hex32(json_string_value(json_object_get(x, "digest2")), d2))
      return failure("export line %u: a pruned entry's value lacks its n, digest, digest2 or erasure", lineno);
    int rc = tt_audit_walk_released(w, e, (uint32_t)json_integer_value(n), d, d2, (int64_t)json_integer_value(by));
    if (rc) return failure("out of memory");
  }
  return 0;
}

/* One line of `tether audit --json`: the fields the hash covers, exactly as stored. */
static int walk_line(tt_audit_walk_t *w, const char *line, unsigned lineno) {
  json_error_t jerr;
  json_t *o = json_loads(line, JSON_REJECT_DUPLICATES, &jerr);
  if (!o || !json_is_object(o)) {
    json_decref(o);
    return failure("export line %u is not a JSON object: %s", lineno, jerr.text);
  }
  json_t *id = json_object_get(o, "id"), *ts = json_object_get(o, "ts_ms");
  if (json_is_true(json_object_get(o, "pruned"))) {
    int rc = walk_pruned(w, o, id, lineno);
    json_decref(o);
    return rc;
  }
  const char *keys[TT_AUDIT_NFIELDS] = {"actor", "action", "target", "detail_text"};
  const char *field[TT_AUDIT_NFIELDS];
  size_t flen[TT_AUDIT_NFIELDS];
  int rc = 0;
  for (int i = 0; i < TT_AUDIT_NFIELDS; i++) {
    json_t *v = json_object_get(o, keys[i]);
    field[i] = json_string_value(v);
    flen[i] = v ? json_string_length(v) : 0;
    if (!field[i]) rc = -1;
  }
  uint8_t hash[32], prev[32];
  if (rc || !json_is_integer(id) || !json_is_integer(ts) ||
      hex32(json_string_value(json_object_get(o, "hash")), hash) ||
      hex32(json_string_value(json_object_get(o, "prev_hash")), prev)) {
    json_decref(o);
    return failure("export line %u lacks id, ts_ms, actor, action, target, detail_text, hash or prev_hash "
                   "(export it with this version's `tether audit --json`)", lineno);
  }
  json_t *fmt = json_object_get(o, "format");
  if (fmt && json_integer_value(fmt) == 2) {
    rc = walk_line2(w, o, (int64_t)json_integer_value(id), (int64_t)json_integer_value(ts), field, prev, hash,
                    lineno);
    json_decref(o);
    return rc;
  }
  rc = tt_audit_walk_entry(w, (int64_t)json_integer_value(id), (int64_t)json_integer_value(ts), field, flen,
                           prev, hash);
  json_decref(o);
  return rc ? failure("cannot hash export line %u", lineno) : 0;
}

static int cmd_audit_verify(int argc, char **argv) {
  char path[PATH_CAP], err[512];
  opts_t o;
  int rc;
  if ((rc = parse_opts(argc, argv, "dck", &o)) != 0)
    return rc;
  if (o.help)
    return fputs(usage_text, stdout), 0;
  if (o.npos != 1)
    return usage_error("audit-verify needs the exported log (a file, or - for standard input)");
  if ((o.dir == NULL) == (o.cert == NULL))
    return usage_error("audit-verify needs one of --dir DIR and --cert CA.pem");
  if (o.checkpoints == NULL)
    return usage_error("audit-verify needs --checkpoints FILE (the broker's audit.checkpoints)");
  if (o.dir != NULL && join(path, o.dir, "/", TT_PKI_CA_CERT_FILE) < 0)
    return usage_error("--dir is too long");
  X509 *ca = NULL;
  if (tt_pki_load_cert(o.dir != NULL ? path : o.cert, &ca, err, sizeof err) < 0)
    return failure("%s", err);
  tt_audit_walk_t w;
  tt_audit_anchors_t anchors = {0};
  tt_audit_walk_init(&w, NULL, 0);
  rc = load_anchors(o.checkpoints, ca, &w, &anchors);
  X509_free(ca);
  if (rc) {
    tt_audit_anchors_free(&anchors);
    return rc;
  }
  size_t n = anchors.n;
  FILE *f = strcmp(o.pos[0], "-") == 0 ? stdin : fopen(o.pos[0], "re");
  if (!f) {
    tt_audit_anchors_free(&anchors);
    return failure("%s: %s", o.pos[0], strerror(errno));
  }
  /* An entry's line is at most a few KiB; a longer one is not an export of ours. */
  char *line = malloc(65536);
  unsigned lineno = 0;
  rc = line ? 0 : failure("out of memory");
  while (rc == 0 && fgets(line, 65536, f)) {
    lineno++;
    if (!strchr(line, '\n') && !feof(f)) rc = failure("export line %u is too long", lineno);
    else rc = walk_line(&w, line, lineno);
  }
  if (f != stdin) fclose(f);
  free(line);
  if (rc) {
    tt_audit_walk_free(&w);
    tt_audit_anchors_free(&anchors);
    return rc;
  }
  tt_audit_walk_finish(&w);
  tt_audit_walk_free(&w);
  tt_audit_anchors_free(&anchors);
  bool intact = w.first_bad == 0 && w.nproblems == 0;
  if (w.based) printf("entries 1 to %lld were pruned by retention (a signed cut line says so)\n", (long long)w.base);
  if (intact)
    printf("audit log intact: %lld entries, %zu signed checkpoints\n", (long long)w.count, n);
  else if (w.first_bad)
    printf("audit log BROKEN at entry %lld (%lld entries checked, %zu signed checkpoints)\n",
           (long long)w.first_bad, (long long)w.count, n);
  else
    printf("audit log intact (%lld entries), but its checkpoints are not:\n", (long long)w.count);
  for (unsigned i = 0; i < w.nproblems; i++) printf("  - %s\n", w.problems[i]);
  if (w.more_problems) printf("  ... and %u more\n", w.more_problems);
  return intact ? 0 : 1;
}

/* ---- releases ------------------------------------------------------------------------------- */

static int cmd_release_key(int argc, char **argv) {
  char key[PATH_CAP], pub[PATH_CAP], err[512], hex[TT_HEX_CAP(32)];
  uint8_t fp[32];
  opts_t o;
  int rc;

  if ((rc = parse_opts(argc, argv, "o", &o)) != 0)
    return rc;
  if (o.help)
    return fputs(usage_text, stdout), 0;
  if (o.npos > 0)
    return usage_error("release-key takes no arguments, got '%s'", o.pos[0]);
  if (o.out == NULL || o.out[0] == '\0')
    return usage_error("release-key needs --out PREFIX (writes PREFIX.key and PREFIX.pub)");
  if (join(key, o.out, ".key", "") < 0 || join(pub, o.out, ".pub", "") < 0)
    return usage_error("--out is too long");
  if (tt_release_key_new(key, pub, fp, err, sizeof err) < 0)
    return failure("%s", err);
  tt_hex(hex, sizeof hex, fp, sizeof fp);
  printf("wrote %s, %s\nrelease key: sha256:%s\n", key, pub, hex);
  printf("Keep %s offline; give %s to the broker (release.keys) and to the agents "
         "(upgrade.release_keys).\n", key, pub);
  return 0;
}

/* PACKAGE's size and sha256, read in pieces (a package is megabytes). */
static int hash_package(const char *path, uint64_t *size, uint8_t sha256[32]) {
  static unsigned char buf[64 * 1024];
  struct stat st;
  uint64_t total = 0;
  unsigned int n = 0;
  int rc = 1;

  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0 || fstat(fd, &st) < 0) {
    rc = failure("%s: %s", path, strerror(errno));
    if (fd >= 0)
      close(fd);
    return rc;
  }
  EVP_MD_CTX *md = EVP_MD_CTX_new();
  if (!S_ISREG(st.st_mode)) {
    failure("%s: not a regular file", path);
    goto out;
  }
  if (st.st_size < 1 || (uint64_t)st.st_size > TT_RELEASE_SIZE_MAX) {
    failure("%s: %lld bytes; a release is 1 to %llu bytes", path, (long long)st.st_size,
            (unsigned long long)TT_RELEASE_SIZE_MAX);
    goto out;
  }
  if (md == NULL || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
    failure("cannot start a sha256");
    goto out;
  }
  for (;;) {
    ssize_t got = read(fd, buf, sizeof buf);
    if (got < 0 && errno == EINTR)
      continue;
    if (got < 0) {
      failure("%s: %s", path, strerror(errno));
      goto out;
    }
    if (got == 0)
      break;
    total += (uint64_t)got;
    if (total > (uint64_t)st.st_size)
      break;
    if (EVP_DigestUpdate(md, buf, (size_t)got) != 1) {
      failure("cannot hash %s", path);
      goto out;
    }
  }
  if (total != (uint64_t)st.st_size) {
    failure("%s: changed while it was read (%llu bytes, then %llu)", path,
            (unsigned long long)st.st_size, (unsigned long long)total);
    goto out;
  }
  if (EVP_DigestFinal_ex(md, sha256, &n) != 1 || n != 32) {
    failure("cannot finish the sha256");
    goto out;
  }
  *size = total;
  rc = 0;
out:
  EVP_MD_CTX_free(md);
  ERR_clear_error();
  close(fd);
  return rc;
}

/* name in one of PATH's directories, executable; 0 when found. */
static int find_program(const char *name, char out[PATH_CAP]) {
  const char *path = getenv("PATH");
  if (path == NULL || path[0] == '\0')
    path = "/usr/bin:/bin";
  for (const char *p = path;; ) {
    const char *end = strchr(p, ':');
    size_t n = end != NULL ? (size_t)(end - p) : strlen(p);
    int w = snprintf(out, PATH_CAP, "%.*s/%s", n > 0 ? (int)n : 1, n > 0 ? p : ".", name);
    if (w > 0 && w < PATH_CAP && access(out, X_OK) == 0)
      return 0;
    if (end == NULL)
      return -1;
    p = end + 1;
  }
}

/* "--package, --version and --arch": the flags that would have spared reading the .deb. */
static void missing_flags(const tt_release_t *r, char *out, size_t cap) {
  const char *m[3];
  size_t n = 0;
  if (r->package[0] == '\0')
    m[n++] = "--package NAME";
  if (r->version[0] == '\0')
    m[n++] = "--version V";
  if (r->arch[0] == '\0')
    m[n++] = "--arch A";
  out[0] = '\0';
  for (size_t i = 0; i < n; i++)
    snprintf(out + strlen(out), cap - strlen(out), "%s%s", i == 0 ? "" : i + 1 == n ? " and " : ", ", m[i]);
}

/* The control fields a .deb says about itself, for those r lacks: `dpkg-deb -f PACKAGE
 * Package Version Architecture`, run without a shell. Its errors go to /dev/null: ours say
 * what to do instead. */
static int deb_fields(const char *path, tt_release_t *r) {
  static const struct {
    const char *field;
    size_t off, cap;
  } want[] = {
    {"Package", offsetof(tt_release_t, package), sizeof r->package},
    {"Version", offsetof(tt_release_t, version), sizeof r->version},
    {"Architecture", offsetof(tt_release_t, arch), sizeof r->arch},
  };
  char prog[PATH_CAP], flags[64], text[4096];
  size_t len = 0;
  int fds[2], status = 0;

  missing_flags(r, flags, sizeof flags);
  if (find_program("dpkg-deb", prog) < 0)
    return failure("dpkg-deb is not installed to read %s's control fields: pass %s", path, flags);
  int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
  if (null < 0 || pipe2(fds, O_CLOEXEC) < 0) {
    int e = errno;
    if (null >= 0)
      close(null);
    return failure("running dpkg-deb: %s", strerror(e));
  }
  char *const args[] = {prog, "-f", (char *)path, "Package", "Version", "Architecture", NULL};
  pid_t pid = fork();
  if (pid == 0) {
    /* Only async-signal-safe calls here. */
    if (dup2(fds[1], STDOUT_FILENO) < 0 || dup2(null, STDERR_FILENO) < 0)
      _exit(127);
    execv(prog, args);
    _exit(127);
  }
  close(fds[1]);
  close(null);
  if (pid < 0) {
    close(fds[0]);
    return failure("running dpkg-deb: %s", strerror(errno));
  }
  for (;;) {
    ssize_t got = read(fds[0], text + len, sizeof text - 1 - len);
    if (got < 0 && errno == EINTR)
      continue;
    if (got <= 0)
      break;
    len += (size_t)got;
    if (len == sizeof text - 1)
      break; /* more than three fields' worth: refused below */
  }
  close(fds[0]);
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  text[len] = '\0';
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || len == sizeof text - 1)
    return failure("%s: dpkg-deb cannot read it as a Debian package: pass %s", path, flags);
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
    char *dst = (char *)r + want[i].off;
    if (dst[0] != '\0')
      continue; /* given on the command line */
    size_t fl = strlen(want[i].field);
    const char *v = NULL;
    for (const char *line = text; line != NULL && *line != '\0';) {
      const char *nl = strchr(line, '\n');
      if (strncmp(line, want[i].field, fl) == 0 && line[fl] == ':' && line[fl + 1] == ' ') {
        v = line + fl + 2;
        size_t vl = nl != NULL ? (size_t)(nl - v) : strlen(v);
        if (vl == 0 || vl >= want[i].cap)
          return failure("%s: its %s field is %s", path, want[i].field, vl == 0 ? "empty" : "too long");
        memcpy(dst, v, vl);
        dst[vl] = '\0';
        break;
      }
      line = nl != NULL ? nl + 1 : NULL;
    }
    if (v == NULL)
      return failure("%s: it has no %s control field: pass %s", path, want[i].field, flags);
  }
  return 0;
}

typedef struct {
  const char *text;
  size_t len;
} text_t;

static int emit_text(BIO *b, void *obj) {
  const text_t *t = obj;
  return BIO_write(b, t->text, (int)t->len) == (int)t->len;
}

/* A flag's value into a field of the manifest, or a usage error when it cannot fit. */
static int take_flag(const char *flag, const char *v, char *dst, size_t cap) {
  if (v == NULL)
    return 0;
  if (v[0] == '\0' || strlen(v) >= cap)
    return usage_error("%s must be 1-%zu characters", flag, cap - 1);
  memcpy(dst, v, strlen(v) + 1);
  return 0;
}

static int cmd_release_sign(int argc, char **argv) {
  char out[PATH_CAP], err[512], text[TT_RELEASE_MANIFEST_MAX + 1], hash[TT_HEX_CAP(32)],
    fp[TT_HEX_CAP(32)];
  tt_release_t r;
  size_t len = 0;
  opts_t o;
  int rc;

  if ((rc = parse_opts(argc, argv, "yVapgo", &o)) != 0)
    return rc;
  if (o.help)
    return fputs(usage_text, stdout), 0;
  if (o.npos != 1)
    return usage_error("release-sign needs exactly one PACKAGE (try --help)");
  if (o.key == NULL)
    return usage_error("release-sign needs --key KEY (the release key, PREFIX.key of release-key)");
  if (o.out != NULL && o.out[0] == '\0')
    return usage_error("--out must not be empty");
  if (o.out == NULL ? join(out, o.pos[0], ".manifest", "") < 0 : join(out, o.out, "", "") < 0)
    return usage_error("output path is too long");
  memset(&r, 0, sizeof r);
  if ((rc = take_flag("--package", o.package, r.package, sizeof r.package)) != 0 ||
      (rc = take_flag("--version", o.version, r.version, sizeof r.version)) != 0 ||
      (rc = take_flag("--arch", o.arch, r.arch, sizeof r.arch)) != 0)
    return rc;
  if (o.downgrade_from) {
    if ((rc = take_flag("--downgrade-from", o.downgrade_from, r.downgrade_from, sizeof r.downgrade_from)) != 0)
      return rc;
    r.downgrade = true;
  }
  /* Before reading megabytes: a manifest is never overwritten. */
  if (path_exists(out))
    return failure("%s: already exists, refusing to overwrite", out);
  if ((rc = hash_package(o.pos[0], &r.size, r.sha256)) != 0)
    return rc;
  if ((r.package[0] == '\0' || r.version[0] == '\0' || r.arch[0] == '\0') &&
      (rc = deb_fields(o.pos[0], &r)) != 0)
    return rc;
  if (tt_release_sign(o.key, &r, text, sizeof text, &len, err, sizeof err) < 0)
    return failure("%s", err);
  text_t t = {text, len};
  if ((rc = tt_pki_write_file(out, 0644, emit_text, &t, err, sizeof err)) < 0)
    return failure("%s", err);
  tt_hex(hash, sizeof hash, r.sha256, sizeof r.sha256);
  tt_hex(fp, sizeof fp, r.key, sizeof r.key);
  printf("signed %s %s (%s), %llu bytes, sha256 %s%s%s\nwith release key sha256:%s\nwrote %s\n", r.package,
         r.version, r.arch, (unsigned long long)r.size, hash, r.downgrade ? ", a downgrade from " : "",
         r.downgrade ? r.downgrade_from : "", fp, out);
  return 0;
}

/* A manifest file whole, refused past TT_RELEASE_MANIFEST_MAX before it is read. */
static int read_manifest(const char *path, char *buf, size_t cap, size_t *len) {
  struct stat st;
  *len = 0;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0 || fstat(fd, &st) < 0) {
    int rc = failure("%s: %s", path, strerror(errno));
    if (fd >= 0)
      close(fd);
    return rc;
  }
  int rc = 0;
  if (!S_ISREG(st.st_mode))
    rc = failure("%s: not a regular file", path);
  else if (st.st_size > (off_t)TT_RELEASE_MANIFEST_MAX)
    rc = failure("%s: %lld bytes, larger than a manifest may be (%u)", path, (long long)st.st_size,
                 (unsigned)TT_RELEASE_MANIFEST_MAX);
  while (rc == 0 && *len < cap) {
    ssize_t got = read(fd, buf + *len, cap - *len);
    if (got < 0 && errno == EINTR)
      continue;
    if (got < 0)
      rc = failure("%s: %s", path, strerror(errno));
    if (got <= 0)
      break;
    *len += (size_t)got;
  }
  close(fd);
  return rc;
}

static int cmd_release_show(int argc, char **argv) {
  char text[TT_RELEASE_MANIFEST_MAX + 1], err[512], hash[TT_HEX_CAP(32)], fp[TT_HEX_CAP(32)],
    created[32];
  tt_release_keys_t keys;
  tt_release_t r;
  size_t len = 0;
  opts_t o;
  int rc;

  if ((rc = parse_opts(argc, argv, "K", &o)) != 0)
    return rc;
  if (o.help)
    return fputs(usage_text, stdout), 0;
  if (o.npos != 1)
    return usage_error("release-show needs exactly one MANIFEST");
  /* One byte more than a manifest may be, so a file grown since fstat is refused too. */
  if ((rc = read_manifest(o.pos[0], text, sizeof text, &len)) != 0)
    return rc;
  if (tt_release_parse(text, len, &r, err, sizeof err) < 0)
    return failure("%s: %s", o.pos[0], err);
  int verdict = 1; /* 1: not checked */
  if (o.keys != NULL) {
    if (tt_release_keys_load(o.keys, &keys, err, sizeof err) < 0)
      return failure("%s", err);
    tt_release_t checked;
    verdict = tt_release_verify(text, len, &keys, &checked, err, sizeof err);
    tt_release_keys_free(&keys);
  }
  time_t secs = (time_t)(r.created_ms / 1000);
  struct tm tm;
  if (gmtime_r(&secs, &tm) == NULL || strftime(created, sizeof created, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
    snprintf(created, sizeof created, "?");
  tt_hex(hash, sizeof hash, r.sha256, sizeof r.sha256);
  tt_hex(fp, sizeof fp, r.key, sizeof r.key);
  printf("package: %s\nversion: %s\narch: %s\nsize: %llu\nsha256: %s\ndowngrade: %s%s\ncreated: %s\n"
         "key: sha256:%s\n",
         r.package, r.version, r.arch, (unsigned long long)r.size, hash, r.downgrade ? "from " : "no",
         r.downgrade ? r.downgrade_from : "", created, fp);
  if (verdict == 1)
    printf("signature: not checked (give --keys PUBFILE)\n");
  else if (verdict == 0)
    printf("signature: good (sha256:%s)\n", fp);
  else
    printf("signature: BAD: %s\n", err);
  return verdict < 0 ? EXIT_FAILURE : 0;
}

int main(int argc, char **argv) {
  static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
  } cmds[] = {
    {"init", cmd_init},
    {"issue", cmd_issue},
    {"fingerprint", cmd_fingerprint},
    {"show", cmd_show},
    {"audit-verify", cmd_audit_verify},
    {"release-key", cmd_release_key},
    {"release-sign", cmd_release_sign},
    {"release-show", cmd_release_show},
  };

  if (argc < 2)
    return usage_error("missing command (try --help)");
  if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
      strcmp(argv[1], "help") == 0) {
    fputs(usage_text, stdout);
    return 0;
  }
  if (strcmp(argv[1], "--version") == 0) {
    printf("%s %s\n", PROG, TT_VERSION);
    return 0;
  }
  for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
    if (strcmp(argv[1], cmds[i].name) == 0) {
      int rc = cmds[i].run(argc - 1, argv + 1);
      if (fflush(stdout) != 0 || ferror(stdout))
        return failure("writing output: %s", strerror(errno));
      return rc;
    }
  }
  if (argv[1][0] == '-')
    return usage_error("missing command before '%s' (try --help)", argv[1]);
  return usage_error("unknown command '%s' (try --help)", argv[1]);
}
