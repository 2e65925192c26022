/* Redaction of secrets in the text of tables (redact.h): one forward pass over the text, at
 * each position a few hand-written recognisers that either copy a replacement and skip the
 * secret, or let the byte through. No regular expressions: every look-back is bounded by
 * INV_REDACT_KEY_MAX, every failed look-ahead by the run it scanned or INV_REDACT_VALUE_SCAN,
 * so the work per cell stays linear whatever the text (tests/unit/agent: an adversarial
 * kilobyte). */
#include "redact.h"
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

/* A value named by a secret-ish key (key=, session=) is judged by its look: one longer than
 * this is not looked at (session ids and keys are far shorter) and stays. */
#define INV_REDACT_VALUE_SCAN 256
/* What "looks random" means for those: at least this many characters, and at least this
 * many bits of Shannon entropy per character (hex ids ~3.7, words and dates under 3.4). */
#define INV_REDACT_RANDOM_MIN 16
#define INV_REDACT_RANDOM_BITS 3.0
/* Shortest secret bodies recognised by shape: below these, "ghp_x" is a word, not a token. */
#define GH_TOKEN_MIN 30    /* ghp_ + 36 */
#define GH_PAT_MIN 20      /* github_pat_ + 82 */
#define SLACK_MIN 10
#define JWT_HEAD_MIN 10    /* base64url of {"alg":...} is 20+ */
#define JWT_BODY_MIN 2
#define BEARER_MIN 8
/* A prefixed token cut off by the end of the text goes when this much of its body is left
 * (less is a word: "github_pat_short"). */
#define CUT_MIN 8
#define SPACES_BACK_MAX 8  /* "password   =" */

#define MARK INV_REDACT_MARK
#define MARK_LEN (sizeof(MARK) - 1)

typedef struct {
  char *out;
  size_t cap, len;
  bool full;
  unsigned hits;
} emit_t;

static void put(emit_t *e, const char *s, size_t n) {
  if (e->full) return;
  if (e->len + n >= e->cap) { /* the NUL needs its byte */
    e->full = true;
    return;
  }
  memcpy(e->out + e->len, s, n);
  e->len += n;
}

static void mark(emit_t *e) {
  put(e, MARK, MARK_LEN);
  e->hits++;
}

/* c is one of set (never the NUL that ends set). */
static bool in_set(char c, const char *set) { return c != 0 && strchr(set, c) != NULL; }
static bool is_alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); }
static bool is_upper_or_digit(char c) { return (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); }
static bool is_space(char c) { return c == ' ' || c == '\t'; }
/* The characters of a key name: db_password, x-api-key, spring.datasource.password. */
static bool is_keych(char c) { return is_alnum(c) || c == '_' || c == '-' || c == '.'; }
/* base64url, as JWT segments use it. */
static bool is_b64url(char c) { return is_alnum(c) || c == '_' || c == '-'; }
/* RFC 6750's b64token, which a Bearer credential is. */
static bool is_b64tok(char c) { return is_alnum(c) || in_set(c, "-._~+/"); }
/* Where an unquoted value ends (the hot loop of a key's look-ahead: no strchr). */
static bool ends_value(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '&' || c == '"' || c == '\'' || c == ';' ||
         c == ',';
}
static char lower(char c) { return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c; }

static bool starts(const char *in, size_t n, size_t i, const char *lit) {
  size_t l = strlen(lit);
  return n - i >= l && memcmp(in + i, lit, l) == 0;
}

static bool starts_nocase(const char *in, size_t n, size_t i, const char *lit) {
  size_t l = strlen(lit);
  if (n - i < l) return false;
  for (size_t k = 0; k < l; k++)
    if (lower(in[i + k]) != lit[k]) return false;
  return true;
}

static size_t run(const char *in, size_t n, size_t i, bool (*cls)(char)) {
  size_t k = i;
  while (k < n && cls(in[k])) k++;
  return k - i;
}

/* ---- PEM private keys ------------------------------------------------------------------- */

static bool is_label(char c) { return (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == ' '; }

/* -----BEGIN <label>-----: the whole block when the label names a private key (RSA, EC,
 * OPENSSH, ENCRYPTED, PGP ... BLOCK), to its END line or, cut off, to the end. A BEGIN line
 * itself cut off inside its label is taken for one too: there is no telling. */
static size_t pem_block(emit_t *e, const char *in, size_t n, size_t i) {
  static const char begin[] = "-----BEGIN ";
  if (in[i] != '-' || !starts(in, n, i, begin)) return 0;
  size_t j = i + sizeof(begin) - 1, k = j;
  while (k < n && k - j < INV_REDACT_LABEL_MAX && is_label(in[k])) k++;
  bool cut = k == n || n - k < 5;
  for (size_t d = k; cut && d < n; d++) cut = in[d] == '-';
  if (!cut) {
    if (!starts(in, n, k, "-----")) return 0;
    const char *l = in + j;
    size_t ll = k - j;
    if (ll < 11 || !memmem(l, ll, "PRIVATE KEY", 11)) return 0;
    const char *end = memmem(in + k + 5, n - k - 5, "-----END ", 9);
    if (end) {
      size_t q = (size_t)(end - in) + 9;
      size_t lim = q + INV_REDACT_LABEL_MAX < n ? q + INV_REDACT_LABEL_MAX : n;
      while (q < lim && is_label(in[q])) q++;
      if (starts(in, n, q, "-----")) q += 5;
      mark(e);
      return q - i;
    }
  }
  mark(e);
  return n - i;
}

/* ---- key = value ------------------------------------------------------------------------ */

typedef enum { KEY_NONE, KEY_SECRET, KEY_SECRETISH } key_kind_t;

static bool ends_with(const char *s, size_t n, const char *suffix) {
  size_t l = strlen(suffix);
  return n >= l && memcmp(s + n - l, suffix, l) == 0;
}

/* A word of the name (between _ - . and the ends, trailing digits aside) that names a
 * secret wherever it stands: PASSWORD_NEW, password1, token_value, db.secret.old. */
static bool secret_segment(const char *k, size_t n) {
  static const char *const words[] = {"password", "passwd", "passphrase", "secret", "token", "apikey", "credentials"};
  size_t a = 0;
  while (a < n) {
    size_t b = a;
    while (b < n && k[b] != '_' && k[b] != '-' && k[b] != '.') b++;
    size_t e = b;
    while (e > a && k[e - 1] >= '0' && k[e - 1] <= '9') e--;
    for (size_t w = 0; w < sizeof(words) / sizeof(words[0]); w++)
      if (e - a == strlen(words[w]) && memcmp(k + a, words[w], e - a) == 0) return true;
    a = b + 1;
  }
  return false;
}

/* What a (lowercased) key name says of its value. */
static key_kind_t key_kind(const char *k, size_t n) {
  /* Where a secret is kept, not the secret: DB_PASSWORD_FILE=/run/secrets/db. */
  if (ends_with(k, n, "_file") || ends_with(k, n, "-file") || ends_with(k, n, "_path") || ends_with(k, n, "-path") ||
      ends_with(k, n, "_dir") || ends_with(k, n, "_type") || ends_with(k, n, "-type"))
    return KEY_NONE; /* nor what kind it is: token_type, X-Token-Type */
  static const char *const secret[] = {"password", "passwd",  "passphrase", "pwd",         "secret",
                                       "token",    "api_key", "api-key",    "apikey",      "access_key",
                                       "access-key", "accesskey", "private_key", "private-key", "privatekey",
                                       "credentials", "authorization", "cookie"};
  static const char *const secretish[] = {"key",     "auth",       "signature",  "session",
                                          "sessionid", "session_id", "session-id", "credential"};
  static const char *const secret_key[] = {"secret_key", "secret-key", "secretkey", "signing_key", "signing-key",
                                           "encryption_key", "encryption-key", "master_key", "master-key", "sig"};
  for (size_t i = 0; i < sizeof(secret) / sizeof(secret[0]); i++)
    if (ends_with(k, n, secret[i])) return KEY_SECRET;
  for (size_t i = 0; i < sizeof(secret_key) / sizeof(secret_key[0]); i++)
    if (ends_with(k, n, secret_key[i]) && (i + 1 < sizeof(secret_key) / sizeof(secret_key[0]) || n == 3))
      return KEY_SECRET; /* "sig": Azure's SAS signature, that name alone */
  if (secret_segment(k, n)) return KEY_SECRET;
  if ((n == 4 && memcmp(k, "pass", 4) == 0) || ends_with(k, n, "_pass") || ends_with(k, n, "-pass") ||
      ends_with(k, n, ".pass"))
    return KEY_SECRET;
  for (size_t i = 0; i < sizeof(secretish) / sizeof(secretish[0]); i++)
    if (ends_with(k, n, secretish[i])) return KEY_SECRETISH;
  return KEY_NONE;
}

/* A value that looks generated rather than written: long enough, of a token alphabet, with
 * letters and digits (or long), and high entropy. */
static bool looks_random(const char *v, size_t n) {
  if (n < INV_REDACT_RANDOM_MIN) return false;
  bool lower_c = false, upper_c = false, digit = false;
  for (size_t i = 0; i < n; i++) {
    char c = v[i];
    if (!is_alnum(c) && !in_set(c, "+/=_-.~")) return false;
    lower_c |= c >= 'a' && c <= 'z';
    upper_c |= c >= 'A' && c <= 'Z';
    digit |= c >= '0' && c <= '9';
  }
  if ((int)lower_c + (int)upper_c + (int)digit < 2 || (!digit && n < 32)) return false;
  unsigned count[128] = {0}; /* ASCII only, checked above */
  for (size_t i = 0; i < n; i++) count[(unsigned char)v[i]]++;
  double h = 0;
  for (size_t c = 0; c < 128; c++) {
    if (!count[c]) continue;
    double p = (double)count[c] / (double)n;
    h -= p * log2(p);
  }
  return h >= INV_REDACT_RANDOM_BITS;
}

/* The space after -u or --user (curl, wget): a value user:password has its password
 * replaced; a user name alone stays. */
static size_t user_password(emit_t *e, const char *in, size_t n, size_t i) {
  size_t v = i + 1;
  while (v < n && is_space(in[v])) v++;
  size_t ve = v;
  while (ve < n && !is_space(in[ve]) && in[ve] != '\n' && in[ve] != '\r') ve++;
  const char *colon = memchr(in + v, ':', ve - v);
  if (!colon || (size_t)(colon - in) + 1 == ve) return 0;
  /* A user part holding a mark is text a redaction ran into (a key block right after -u):
   * read as user:password the second time, it would redact what the first pass left, and
   * redacting must change nothing the second time (fuzz.redact found it). */
  if (memmem(in + v, (size_t)(colon - (in + v)), MARK, sizeof(MARK) - 1)) return 0;
  size_t p = (size_t)(colon - in) + 1;
  put(e, in + i, p - i);
  mark(e);
  return ve - i;
}

/* At a separator ('=' or ':', or the space after a --flag): is the word before it a secret's
 * name? Then its value is replaced: quoted ("...", '...', \"...\") to the quote, an
 * Authorization or Cookie value to the end of the line, anything else to white space, '&' or
 * a quote. floor: where the text not yet replaced starts (a look-back stops there). */
static size_t key_value(emit_t *e, const char *in, size_t n, size_t i, size_t floor) {
  char c = in[i];
  bool flag = is_space(c);
  if (c != '=' && c != ':' && !flag) return 0;
  if (c == ':' && starts(in, n, i, "://")) return 0; /* a URL: url_userinfo's */
  if (c == '=' && i + 1 < n && in[i + 1] == '=') return 0;
  bool arrow = c == '=' && i + 1 < n && in[i + 1] == '>'; /* 'password' => 'x' (PHP, Perl, Ruby) */
  size_t k = i;
  if (!flag) {
    size_t sp = 0;
    while (k > floor && sp < SPACES_BACK_MAX && is_space(in[k - 1])) k--, sp++;
    if (k > floor && (in[k - 1] == '"' || in[k - 1] == '\'')) {
      k--;
      if (k > floor && in[k - 1] == '\\') k--;
    }
  }
  size_t end = k;
  while (k > floor && end - k <= INV_REDACT_KEY_MAX && is_keych(in[k - 1])) k--;
  if (end == k || end - k > INV_REDACT_KEY_MAX) return 0;
  if (k > floor && in[k - 1] == '/') return 0; /* a path: /etc/passwd: ... */
  char key[INV_REDACT_KEY_MAX + 1];
  size_t kn = end - k;
  for (size_t d = 0; d < kn; d++) key[d] = lower(in[k + d]);
  key[kn] = 0;
  const char *name = key;
  if (flag) { /* --password hunter2 */
    if (kn == 2 && strcmp(key, "-u") == 0) return user_password(e, in, n, i); /* curl -u alice:pw */
    if (kn < 3 || key[0] != '-' || key[1] != '-') return 0;
    if (strcmp(key, "--user") == 0) return user_password(e, in, n, i);
    name += 2;
    kn -= 2;
  }
  key_kind_t kind = key_kind(name, kn);
  if (kind == KEY_NONE || (flag && kind != KEY_SECRET)) return 0;
  size_t v = i + 1 + (arrow ? 1 : 0);
  while (v < n && is_space(in[v])) v++;
  /* A value that starts with a mark was redacted already (or a key block right after the
   * name was): taking it again would swallow what the first pass left after the mark, and
   * redacting must change nothing the second time (fuzz.redact found it). */
  if (starts(in, n, v, MARK)) return 0;
  /* A value judged by its look is looked at only so far: past that it stays, and the next
   * separator inside it costs no more than this one did. */
  size_t lim = n;
  if (kind == KEY_SECRETISH && n - v > INV_REDACT_VALUE_SCAN + 3) lim = v + INV_REDACT_VALUE_SCAN + 3;
  size_t vs, ve;
  if (flag) {
    vs = ve = v;
    if (v < n && in[v] == '-') return 0; /* the next flag, not a value */
    while (ve < lim && !is_space(in[ve]) && in[ve] != '\n' && in[ve] != '\r') ve++;
  } else if (v + 1 < n && in[v] == '\\' && in[v + 1] == '"') {
    vs = ve = v + 2;
    while (ve < lim && in[ve] != '\n' && !(in[ve] == '\\' && ve + 1 < lim && in[ve + 1] == '"')) ve++;
  } else if (v < n && (in[v] == '"' || in[v] == '\'')) {
    char q = in[v];
    vs = ve = v + 1;
    while (ve < lim && in[ve] != q && in[ve] != '\n') ve += in[ve] == '\\' && ve + 1 < lim && in[ve + 1] != '\n' ? 2 : 1;
    if (ve > lim) ve = lim;
  } else {
    vs = ve = v;
    if (ends_with(name, kn, "authorization") || ends_with(name, kn, "cookie")) {
      while (ve < lim && in[ve] != '\n' && in[ve] != '\r') ve++;
      while (ve > vs && is_space(in[ve - 1])) ve--;
    } else {
      while (ve < lim && !ends_value(in[ve])) ve++;
    }
  }
  if (ve == vs) return 0;
  if (kind == KEY_SECRETISH && (ve - vs > INV_REDACT_VALUE_SCAN || !looks_random(in + vs, ve - vs))) return 0;
  /* PWD and OLDPWD are the shell's directories, not MySQL's password. */
  if ((strcmp(key, "pwd") == 0 || strcmp(key, "oldpwd") == 0) && in[vs] == '/') return 0;
  put(e, in + i, vs - i);
  mark(e);
  return ve - i;
}

/* ---- secrets by their shape ------------------------------------------------------------- */

static bool is_tok_alnum(char c) { return is_alnum(c); }
static bool is_pat(char c) { return is_alnum(c) || c == '_'; }
static bool is_slack(char c) { return is_alnum(c) || c == '-'; }

/* Tokens whose own prefix says what they are; the prefix stays. *no_jwt: a JWT that failed
 * to parse ending there cannot start anywhere before it either (the same segments follow).
 * A token starts a word; right after a redaction (i == floor) it does whatever the replaced
 * text ended with, because the output there ends with the mark's ']' and the second pass
 * must find nothing the first did not (fuzz.redact: "...KEYBearer <token>" after a key
 * block). */
static size_t token_shape(emit_t *e, const char *in, size_t n, size_t i, size_t floor, size_t *no_jwt) {
  if (i > floor && (is_alnum(in[i - 1]) || in[i - 1] == '_')) return 0;
  char c = in[i];
  size_t r;
  if (c == 'A' && (starts(in, n, i, "AKIA") || starts(in, n, i, "ASIA"))) {
    size_t end = n - i < 20 ? n : i + 20; /* cut off at the end of the text: what is there goes */
    if (end - i < 4 + CUT_MIN) return 0;
    for (size_t k = i + 4; k < end; k++)
      if (!is_upper_or_digit(in[k])) return 0;
    if (end < i + 20) {
      put(e, in + i, 4);
      mark(e);
      return end - i;
    }
    if (i + 20 < n && is_alnum(in[i + 20])) return 0;
    put(e, in + i, 4);
    mark(e);
    return 20;
  }
  if (c == 'g') {
    if (starts(in, n, i, "github_pat_")) {
      if ((r = run(in, n, i + 11, is_pat)) < GH_PAT_MIN && !(r >= CUT_MIN && i + 11 + r == n)) return 0;
      put(e, in + i, 11);
      mark(e);
      return 11 + r;
    }
    if (n - i > 4 && in[i + 1] == 'h' && in_set(in[i + 2], "opsur") && in[i + 3] == '_') {
      if ((r = run(in, n, i + 4, is_tok_alnum)) < GH_TOKEN_MIN && !(r >= CUT_MIN && i + 4 + r == n)) return 0;
      put(e, in + i, 4);
      mark(e);
      return 4 + r;
    }
    return 0;
  }
  if (c == 'x') {
    if (n - i < 5 || !starts(in, n, i, "xox") || !in_set(in[i + 3], "abpr") || in[i + 4] != '-') return 0;
    if ((r = run(in, n, i + 5, is_slack)) < SLACK_MIN && !(r >= CUT_MIN && i + 5 + r == n)) return 0;
    put(e, in + i, 5);
    mark(e);
    return 5 + r;
  }
  if (c == 'e') {
    if (i < *no_jwt || !starts(in, n, i, "eyJ")) return 0;
    size_t a = run(in, n, i, is_b64url), k = i + a;
    size_t b = k < n && in[k] == '.' ? run(in, n, k + 1, is_b64url) : 0, k2 = k + 1 + b;
    if (a < JWT_HEAD_MIN || b < JWT_BODY_MIN || k2 >= n || in[k2] != '.') {
      *no_jwt = k;
      return 0;
    }
    size_t s = run(in, n, k2 + 1, is_b64url);
    mark(e);
    return k2 + 1 + s - i;
  }
  if ((c == 'B' || c == 'b') && starts_nocase(in, n, i, "bearer")) {
    size_t k = i + 6, sp = k;
    while (k < n && is_space(in[k])) k++;
    if (k == sp) return 0;
    size_t t = k;
    bool plain = true; /* all lower-case letters: a word ("the bearer of"), not a token */
    while (t < n && is_b64tok(in[t])) plain = plain && in[t] >= 'a' && in[t] <= 'z', t++;
    while (t < n && in[t] == '=') plain = false, t++;
    if (t - k < BEARER_MIN || plain) return 0;
    put(e, in + i, k - i);
    mark(e);
    return t - i;
  }
  return 0;
}

/* ---- the pass ---------------------------------------------------------------------------- */

/* scheme://user:password@host: the password's place in the text, for the pass to replace
 * when it gets there (the user name goes through the other recognisers first). */
static void url_userinfo(const char *in, size_t n, size_t i, size_t *pw_from, size_t *pw_to) {
  if (in[i] != ':' || !starts(in, n, i, "://") || i == 0 || !is_alnum(in[i - 1])) return;
  size_t a = i + 3, k = a, at = SIZE_MAX;
  /* '[' and ']' never stand in a userinfo (RFC 3986), and a mark starts with one: a URL
   * a redaction ran into is not read as a new user:password@ the second time. */
  while (k < n && !is_space(in[k]) && !in_set(in[k], "/?#\"'<>[]\n\r")) {
    if (in[k] == '@') at = k;
    k++;
  }
  if (at == SIZE_MAX) return;
  const char *colon = memchr(in + a, ':', at - a);
  if (!colon || (size_t)(colon - in) + 1 == at) return;
  *pw_from = (size_t)(colon - in) + 1;
  *pw_to = at;
}

/* The last bytes of out when they are the start of a character cut off by a full buffer. */
static size_t whole_chars(const char *s, size_t len) {
  size_t k = len, back = 0;
  while (k > 0 && back < 4 && ((unsigned char)s[k - 1] & 0xC0) == 0x80) k--, back++;
  if (k == 0) return len;
  unsigned char lead = (unsigned char)s[k - 1];
  size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
  return back + 1 < need ? k - 1 : len;
}

size_t inv_redact(char *out, size_t cap, const char *in, size_t n, unsigned *hits) {
  emit_t e = {out, cap, 0, cap == 0, 0};
  size_t i = 0, floor = 0, pw_from = SIZE_MAX, pw_to = 0, no_jwt = 0;
  while (i < n && !e.full) {
    size_t adv;
    if (i == pw_from) {
      mark(&e);
      i = floor = pw_to;
      pw_from = SIZE_MAX;
      continue;
    }
    if (i > pw_from) pw_from = SIZE_MAX; /* another recogniser took the text it was in */
    if ((adv = pem_block(&e, in, n, i)) || (adv = key_value(&e, in, n, i, floor)) ||
        (adv = token_shape(&e, in, n, i, floor, &no_jwt))) {
      i += adv;
      floor = i;
      continue;
    }
    if (pw_from == SIZE_MAX) url_userinfo(in, n, i, &pw_from, &pw_to);
    put(&e, in + i, 1);
    i++;
  }
  if (cap) {
    if (e.full) e.len = whole_chars(out, e.len);
    out[e.len] = 0;
  }
  if (hits) *hits = e.hits;
  return e.len;
}

bool inv_redact_pem_open(const char *in, size_t n, bool open) {
  for (size_t i = 0; i < n; i++) {
    if (in[i] != '-') continue;
    if (open && starts(in, n, i, "-----END ")) open = false;
    else if (!open && starts(in, n, i, "-----BEGIN ")) {
      size_t j = i + 11, k = j;
      while (k < n && k - j < INV_REDACT_LABEL_MAX && is_label(in[k])) k++;
      open = k - j >= 11 && memmem(in + j, k - j, "PRIVATE KEY", 11) != NULL;
    }
  }
  return open;
}
