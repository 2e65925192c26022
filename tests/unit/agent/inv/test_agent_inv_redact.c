/* Redaction (agent/inv/redact.c): each pattern on text a device really shows (journal lines,
 * config lines, command lines, JSON), the words that only look like one left alone, the
 * marks idempotent, the output bounded and whole UTF-8, an adversarial kilobyte (and 64 KiB)
 * done in linear time, and inv_table_add applying it to every cell. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "redact.h"
#include "table.h"
#include "tt/utf8.h"

/* The PEM key label, spelled in two pieces so that no tracked file holds a key marker: the PEM texts
 * below are made-up bodies, and a key scanner should find none here. */
#define PK "PRIV" "ATE KEY"

static char g_out[64 * 1024 * INV_REDACT_GROWTH];

static const char *R(const char *in) {
  inv_redact(g_out, sizeof(g_out), in, strlen(in), NULL);
  return g_out;
}

static unsigned hits(const char *in) {
  unsigned h = 0;
  inv_redact(g_out, sizeof(g_out), in, strlen(in), &h);
  return h;
}

typedef struct {
  const char *in, *want;
} case_t;

static void check(const case_t *c, size_t n) {
  for (size_t i = 0; i < n; i++) {
    const char *got = R(c[i].in);
    if (strcmp(got, c[i].want)) fail_msg("redact(%s)\n  got  %s\n  want %s", c[i].in, got, c[i].want);
    /* Redacting again changes nothing: a mark is not a secret. */
    char once[4096];
    size_t len = strlen(got);
    if (len >= sizeof(once)) fail_msg("redact(%s): result too long for the test", c[i].in);
    memcpy(once, got, len + 1);
    if (strcmp(R(once), once)) fail_msg("not idempotent: %s -> %s", once, g_out);
  }
}
#define CHECK(cases) check(cases, sizeof(cases) / sizeof(cases[0]))

static void test_private_keys(void **state) {
  (void)state;
  static const case_t c[] = {
      {"key follows\n-----BEGIN RSA " PK "-----\nMIIEowIBAAKCAQEAx5\nq1w==\n-----END RSA " PK "-----\nafter",
       "key follows\n[REDACTED]\nafter"},
      {"-----BEGIN OPENSSH " PK "-----\nb3BlbnNzaC1rZXk\n-----END OPENSSH " PK "-----",
       "[REDACTED]"},
      {"a -----BEGIN ENCRYPTED " PK "-----MIIF-----END ENCRYPTED " PK "----- b", "a [REDACTED] b"},
      {"-----BEGIN PGP " PK " BLOCK-----\nlQdGBF\n-----END PGP " PK " BLOCK-----", "[REDACTED]"},
      /* In a JSON string, with its newlines escaped (a journal line quoting a config). */
      {"cfg {\"tls\": \"-----BEGIN EC " PK "-----\\nMHcCAQEEI\\n-----END EC " PK "-----\\n\"}",
       "cfg {\"tls\": \"[REDACTED]\\n\"}"},
      /* Its END cut off (the cell was too long): everything after BEGIN goes. */
      {"x -----BEGIN EC " PK "-----\nMHcCAQEEIIr", "x [REDACTED]"},
      /* Cut inside the BEGIN line: there is no telling what it was. */
      {"x -----BEGIN OPENSSH PRIV", "x [REDACTED]"},
      {"x -----BEGIN RSA " PK "---", "x [REDACTED]"},
      /* Certificates and public keys are not secrets. */
      {"-----BEGIN CERTIFICATE-----\nMIIBszCCAVmg\n-----END CERTIFICATE-----",
       "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmg\n-----END CERTIFICATE-----"},
      {"-----BEGIN PUBLIC KEY-----\nMFkwEwYH\n-----END PUBLIC KEY-----",
       "-----BEGIN PUBLIC KEY-----\nMFkwEwYH\n-----END PUBLIC KEY-----"},
      {"-----BEGIN lower case-----", "-----BEGIN lower case-----"},
      /* A key block right after curl's -u: what it leaves is not read as user:password the
       * second time (fuzz.redact found "-u x[REDACTED]...:b:b" redacted again). */
      {"-u x-----BEGIN RSA " PK "-----\nMIIE\n-----END RSA\x13:b:b", "-u x[REDACTED]\x13:b:b"},
      /* The same after a secret's flag: the mark is its value, what follows it stays. */
      {"--apikey -----BEGIN RSA " PK "-----\nMIIE\n-----END RSA PRK\x13" "AT", "--apikey [REDACTED]\x13" "AT"},
      /* A token right after a key block whose END label runs into it: the mark ends a word,
       * so the token goes in the first pass, not the second (fuzz.redact found it). */
      {"-----BEGIN RSA " PK "-----\nMIIE\n-----END RSA PRIVATE KEYbearer RI========<x",
       "[REDACTED]bearer [REDACTED]<x"},
      {"-----BEGIN RSA " PK "-----\nMIIE\n-----END RSA KEYghp_0123456789abcdefghijklmnopqrstuvwxyz",
       "[REDACTED]ghp_[REDACTED]"},
  };
  CHECK(c);
  assert_int_equal(hits(c[0].in), 1);
}

static void test_authorization_headers(void **state) {
  (void)state;
  static const case_t c[] = {
      {"GET / HTTP/1.1\r\nAuthorization: Bearer abc.def.ghi\r\nHost: x", "GET / HTTP/1.1\r\nAuthorization: [REDACTED]\r\nHost: x"},
      {"Proxy-Authorization: Basic dXNlcjpwYXNzd29yZA==", "Proxy-Authorization: [REDACTED]"},
      {"request failed: authorization: token 0123456789abcdef (401)", "request failed: authorization: [REDACTED]"},
      {"headers={\"Authorization\": \"Bearer abc.def.ghi\", \"Accept\": \"*/*\"}",
       "headers={\"Authorization\": \"[REDACTED]\", \"Accept\": \"*/*\"}"},
      {"Cookie: sid=4f9a1c2e; theme=dark", "Cookie: [REDACTED]"},
      {"Set-Cookie: session=abc123; HttpOnly", "Set-Cookie: [REDACTED]"},
      /* Nothing after the colon: nothing to hide. */
      {"Authorization:", "Authorization:"},
      {"missing Authorization header", "missing Authorization header"},
  };
  CHECK(c);
}

static void test_bearer_tokens(void **state) {
  (void)state;
  static const case_t c[] = {
      {"sent Bearer abcDEF123456 to the api", "sent Bearer [REDACTED] to the api"},
      {"curl -H 'X-Token-Type: bearer' -H 'X: Bearer a1b2c3d4e5f6g7h8=='", "curl -H 'X-Token-Type: bearer' -H 'X: Bearer [REDACTED]'"},
      {"bearer\tsk-live.abcdefghij", "bearer\t[REDACTED]"},
      /* Words, not tokens. */
      {"the bearer of this card", "the bearer of this card"},
      {"Bearer token missing", "Bearer token missing"},
      {"Bearer abc", "Bearer abc"},
      {"Bearer", "Bearer"},
  };
  CHECK(c);
}

static void test_key_value(void **state) {
  (void)state;
  static const case_t c[] = {
      {"password=hunter2 user=sam", "password=[REDACTED] user=sam"},
      {"passwd=x", "passwd=[REDACTED]"},
      {"pwd=s3cret", "pwd=[REDACTED]"},
      {"MYSQL_PWD=s3cret", "MYSQL_PWD=[REDACTED]"},
      {"secret=x", "secret=[REDACTED]"},
      {"token=x", "token=[REDACTED]"},
      {"api_key=x", "api_key=[REDACTED]"},
      {"apikey=x", "apikey=[REDACTED]"},
      {"access_key=x", "access_key=[REDACTED]"},
      {"PASSWORD=Tr0ub4dor&3", "PASSWORD=[REDACTED]&3"},
      {"DB_PASSWORD = 's3cr3t pass' next", "DB_PASSWORD = '[REDACTED]' next"},
      {"spring.datasource.password: hunter2", "spring.datasource.password: [REDACTED]"},
      {"client_secret=abc; x=1", "client_secret=[REDACTED]; x=1"},
      {"GET /cb?code=1&access_token=abc&state=9 HTTP/1.1", "GET /cb?code=1&access_token=[REDACTED]&state=9 HTTP/1.1"},
      {"x-api-key: 0123", "x-api-key: [REDACTED]"},
      {"user=sam pass=hunter2", "user=sam pass=[REDACTED]"},
      {"smtp_pass=hunter2", "smtp_pass=[REDACTED]"},
      {"passphrase=correct horse", "passphrase=[REDACTED] horse"},
      /* JSON, plain and escaped inside a logged string. */
      {"{\"password\": \"hunter2\", \"user\": \"sam\"}", "{\"password\": \"[REDACTED]\", \"user\": \"sam\"}"},
      {"{\"token\":\"a\\\"b\",\"n\":1}", "{\"token\":\"[REDACTED]\",\"n\":1}"},
      {"body={\\\"api_key\\\":\\\"xyz\\\"}", "body={\\\"api_key\\\":\\\"[REDACTED]\\\"}"},
      {"{'secret': 'x y'}", "{'secret': '[REDACTED]'}"},
      /* An unterminated quote hides the rest of the line, not the next one. */
      {"password=\"abc\nnext", "password=\"[REDACTED]\nnext"},
      /* Command-line flags. */
      {"mysql --password hunter2 -u root", "mysql --password [REDACTED] -u root"},
      {"mysql --password=hunter2 -u root", "mysql --password=[REDACTED] -u root"},
      {"tool --token -v", "tool --token -v"},
      {"tool --password-file /run/secrets/db", "tool --password-file /run/secrets/db"},
      /* Connection strings end a value at ';' (and lists at ','). */
      {"DefaultEndpointsProtocol=https;AccountName=acme;AccountKey=Zm9vYmFyYmF6cXV4cXV1eDEyMw==;EndpointSuffix=core.windows.net",
       "DefaultEndpointsProtocol=https;AccountName=acme;AccountKey=[REDACTED];EndpointSuffix=core.windows.net"},
      {"Server=db;Password=hunter2;User Id=sa", "Server=db;Password=[REDACTED];User Id=sa"},
      /* Azure SAS: the signature is its own name. */
      {"GET /c/b?sv=2022-11-02&se=2026-12-06&sig=abc%2Bdef%3D HTTP/1.1", "GET /c/b?sv=2022-11-02&se=2026-12-06&sig=[REDACTED] HTTP/1.1"},
      /* PHP, Perl, Ruby hashes. */
      {"'password' => 'hunter2',", "'password' => '[REDACTED]',"},
      {":password => \"hunter2\"", ":password => \"[REDACTED]\""},
      /* Named keys that are always secrets, whatever they look like. */
      {"SECRET_KEY = 'django-insecure-!@#x'", "SECRET_KEY = '[REDACTED]'"},
      {"signing_key=short encryption_key: abc master_key=1", "signing_key=[REDACTED] encryption_key: [REDACTED] master_key=[REDACTED]"},
      /* The secret word anywhere in the name. */
      {"PASSWORD_NEW=hunter2 password1=x token_value=abc db.secret.old=y",
       "PASSWORD_NEW=[REDACTED] password1=[REDACTED] token_value=[REDACTED] db.secret.old=[REDACTED]"},
      /* curl and wget take user:password. */
      {"curl -u alice:pw https://x", "curl -u alice:[REDACTED] https://x"},
      {"curl --user alice:s3cret -v", "curl --user alice:[REDACTED] -v"},
      {"curl -u alice https://x", "curl -u alice https://x"},
  };
  CHECK(c);
}

static void test_not_secrets(void **state) {
  (void)state;
  static const case_t c[] = {
      {"passwordless sudo for the admin group", ""},
      {"Failed password for invalid user admin from 10.0.0.1 port 22 ssh2", ""},
      {"pam_unix(sudo:auth): authentication failure; logname=sam uid=1000 tty=/dev/pts/0 user=root", ""},
      {"[sudo] password for sam:", ""},
      {"Password: ", ""},
      {"open /etc/passwd: permission denied", ""},
      {"PWD=/home/sam OLDPWD=/tmp", ""},
      {"max_tokens=5 tokens: 9 tokenizer=bpe", ""},
      {"a == b", ""},
      {"key=value sort_key=LastModifiedDate monkey=banana", ""},
      {"Started Session 3 of User sam.", ""},
      {"ssh://git@github.com/tether/tether.git", ""},
      {"https://user:@host/", ""},
      {"ghp_short AKIAIOSFODNN7 xoxz-1234567890abc github_pat_short", ""},
      {"eyJhbGciOiJIUzI1NiJ9 alone", ""},
      {"DB_PASSWORD_FILE=/run/secrets/db", ""},
      {"12:30:00 up 3 days", ""},
      {"Secret Service", ""},
      {"libsecret-1-0 0.20.5-3", ""},
  };
  for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++)
    if (strcmp(R(c[i].in), c[i].in)) fail_msg("mangled: %s -> %s", c[i].in, g_out);
}

static void test_urls(void **state) {
  (void)state;
  static const case_t c[] = {
      {"git clone https://sam:hunter2@git.example.com/r.git", "git clone https://sam:[REDACTED]@git.example.com/r.git"},
      {"DATABASE_URL=postgres://app:p%40ss@db:5432/app", "DATABASE_URL=postgres://app:[REDACTED]@db:5432/app"},
      {"proxy http://u:p@[::1]:3128 down", "proxy http://u:[REDACTED]@[::1]:3128 down"},
      /* A token as the user name is found by its own shape. */
      {"https://ghp_0123456789abcdefghijABCDEFGHIJ012345:x-oauth-basic@github.com/x",
       "https://ghp_[REDACTED]:[REDACTED]@github.com/x"},
      {"https://token:abc@host/", "https://token:[REDACTED]@host/"},
      /* A key block inside what looked like a URL (fuzz.redact found it): once redacted, the
       * text is not a user:password@ the second time either. */
      {"ps://u:-----BEGIN RSA " PK "-----\nMIIE\n-----END RSA PRI junk@host",
       "ps://u:[REDACTED]junk@host"},
  };
  CHECK(c);
}

static void test_shapes(void **state) {
  (void)state;
  static const case_t c[] = {
      {"id AKIAIOSFODNN7EXAMPLE used", "id AKIA[REDACTED] used"},
      {"aws_access_key_id=ASIAIOSFODNN7EXAMPLE", "aws_access_key_id=ASIA[REDACTED]"},
      {"aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "aws_secret_access_key = [REDACTED]"},
      {"GH ghp_0123456789abcdefghijABCDEFGHIJ012345 end", "GH ghp_[REDACTED] end"},
      {"gho_0123456789abcdefghijABCDEFGHIJ012345", "gho_[REDACTED]"},
      {"ghs_0123456789abcdefghijABCDEFGHIJ012345", "ghs_[REDACTED]"},
      {"(ghu_0123456789abcdefghijABCDEFGHIJ012345)", "(ghu_[REDACTED])"},
      {"github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz", "github_pat_[REDACTED]"},
      {"slack xoxb-1234567890-abcdefghijKL ok", "slack xoxb-[REDACTED] ok"},
      {"xoxp-1234567890-1234567890-abcdef", "xoxp-[REDACTED]"},
      {"xoxa-2-abcdefghijkl xoxr-abcdefghijkl", "xoxa-[REDACTED] xoxr-[REDACTED]"},
      {"jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig_-abc rest", "jwt [REDACTED] rest"},
      {"unsigned eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0. rest", "unsigned [REDACTED] rest"},
      /* Inside a longer word, not a token. */
      {"XAKIAIOSFODNN7EXAMPLE", "XAKIAIOSFODNN7EXAMPLE"},
      {"AKIAIOSFODNN7EXAMPLEX", "AKIAIOSFODNN7EXAMPLEX"},
      /* Named by a secret-ish key and random-looking: gone; plain words stay. */
      {"session=4f9a1c2e8b7d6a5f3e2d1c0b9a8f7e6d", "session=[REDACTED]"},
      {"ssh_key: AbC0dEf1GhI2jKl3MnO4", "ssh_key: [REDACTED]"},
      {"signature=QmFzZTY0U2lnbmF0dXJlVmFsdWU9PQ== ok", "signature=[REDACTED] ok"},
  };
  CHECK(c);
}

static void test_bounded_output(void **state) {
  (void)state;
  char out[16];
  /* The mark does not fit: the text stops before the secret. */
  size_t n = inv_redact(out, sizeof(out), "password=hunter2", 16, NULL);
  assert_string_equal(out, "password=");
  assert_int_equal(n, 9);
  /* A full buffer cuts at a whole character. */
  n = inv_redact(out, 6, "ab\xc3\xa9\xc3\xa9", 6, NULL);
  assert_string_equal(out, "ab\xc3\xa9");
  n = inv_redact(out, 5, "ab\xe2\x82\xac", 5, NULL);
  assert_string_equal(out, "ab");
  assert_int_equal(inv_redact(out, 1, "abc", 3, NULL), 0);
  assert_string_equal(out, "");
  /* NUL bytes are text like any other, and end nothing early. */
  static const char nul[] = "a\0password=x", want[] = "a\0password=[REDACTED]";
  char wide[64];
  n = inv_redact(wide, sizeof(wide), nul, sizeof(nul) - 1, NULL);
  assert_int_equal(n, sizeof(want) - 1);
  assert_memory_equal(wide, want, n);
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Text made of one piece repeated: the shapes that make a backtracking matcher (or a
 * careless scanner) go quadratic. */
static size_t fill(char *buf, size_t n, const char *piece) {
  size_t l = strlen(piece), o = 0;
  while (o + l <= n) memcpy(buf + o, piece, l), o += l;
  return o;
}

static void test_adversarial_cells_are_fast(void **state) {
  (void)state;
  static const char *const pieces[] = {
      "key=",  "session=", "eyJ-",  "eyJaaaaaaaaaaa.", "-----BEGIN ", "-----BEGIN " PK "-----", "a://",
      "a://b:", "=",       ":",     " ",  "\"",  "password=\"\\", "Bearer ", "bearer aaaaaaaaaa ", "--x ",
      "xoxb-", "ghp_",    "AKIA",  "github_pat_", "token\\\":", "aaaaaaaa", "@:", "a:b@",
  };
  static char big[64 * 1024];
  for (size_t i = 0; i < sizeof(pieces) / sizeof(pieces[0]); i++) {
    /* A cell's kilobyte, many times over. */
    size_t n = fill(big, INV_CELL_MAX, pieces[i]);
    double t0 = now_s();
    for (int k = 0; k < 100; k++) inv_redact(g_out, INV_CELL_MAX * INV_REDACT_GROWTH, big, n, NULL);
    double per_cell = (now_s() - t0) / 100;
    if (per_cell > 0.020) fail_msg("%.2f ms for a kilobyte of \"%s\"", per_cell * 1000, pieces[i]);
    /* 64 times the text must cost about 64 times as much, not 4,096: under a second even
     * under the sanitizers, where a quadratic scan takes minutes. */
    n = fill(big, sizeof(big), pieces[i]);
    t0 = now_s();
    inv_redact(g_out, sizeof(g_out), big, n, NULL);
    double t = now_s() - t0;
    if (t > 1.0) fail_msg("%.2f s for 64 KiB of \"%s\"", t, pieces[i]);
  }
}

/* Every cell of every table: the secret never reaches the table, a growing cell is cut at
 * INV_CELL_MAX, and the error text is redacted too. */
/* A token that straddles a cell's cut is recognised whole (redacted before the cut), and a
 * token cut off by the end of the text goes however little of it is left. */
static void test_cut_tokens(void **state) {
  (void)state;
  static const case_t c[] = {
      {"clone https://ghp_abcdefghij", "clone https://ghp_[REDACTED]"},
      {"key AKIAIOSFODNN", "key AKIA[REDACTED]"},
      {"xoxb-12345678", "xoxb-[REDACTED]"},
  };
  CHECK(c);
  static const char *const cols[] = {"message", NULL};
  inv_table_t t;
  assert_int_equal(inv_table_init(&t, "t", cols, 1), 0);
  static const char tok[] = "ghp_Zx81qLm0Pp7sT4uVw9yBc2dEf5gHi3jKl6nR";
  char cell[INV_CELL_MAX + 64];
  size_t n = fill(cell, INV_CELL_MAX - 33, "journal line ");
  memcpy(cell + n, "https://", 8);
  memcpy(cell + n + 8, tok, sizeof(tok)); /* its NUL too */
  const char *row[] = {cell};
  assert_int_equal(inv_table_add(&t, row), 0);
  const char *got = inv_cell(&t, 0, 0);
  assert_true(strlen(got) <= INV_CELL_MAX);
  assert_null(strstr(got, "Zx81qL"));
  assert_non_null(strstr(got, "https://ghp_["));
  inv_table_free(&t);
}

/* A program that logs a private key a line at a time: each line is a cell (a journal entry),
 * and every cell from the BEGIN to the END goes. */
static void test_private_key_over_cells(void **state) {
  (void)state;
  static const char *const cols[] = {"unit", "message", NULL};
  inv_table_t t;
  assert_int_equal(inv_table_init(&t, "journal_errors", cols, 2), 0);
  const char *lines[][2] = {{"app", "loading key"},
                            {"app", "-----BEGIN RSA " PK "-----"},
                            {"app", "MIIEowIBAAKCAQEAx5q1wMIIEowIBAAKCAQEAx5q1w"},
                            {"app", "q1w=="},
                            {"app", "-----END RSA " PK "-----"},
                            {"app", "key loaded"}};
  for (size_t i = 0; i < 6; i++) assert_int_equal(inv_table_add(&t, lines[i]), 0);
  static const char *const want[] = {"loading key", "[REDACTED]", "[REDACTED]", "[REDACTED]", "[REDACTED]",
                                     "key loaded"};
  for (size_t i = 0; i < 6; i++) {
    assert_string_equal(inv_cell(&t, i, 0), "app"); /* the other column is its own */
    assert_string_equal(inv_cell(&t, i, 1), want[i]);
  }
  inv_table_free(&t);
}

static void test_table_cells_are_redacted(void **state) {
  (void)state;
  static const char *const cols[] = {"a", "b", NULL};
  inv_table_t t;
  assert_int_equal(inv_table_init(&t, "t", cols, 2), 0);
  const char *row[] = {"mysql --password hunter2", "Authorization: Bearer abc.def.ghi"};
  assert_int_equal(inv_table_add(&t, row), 0);
  assert_string_equal(inv_cell(&t, 0, 0), "mysql --password [REDACTED]");
  assert_string_equal(inv_cell(&t, 0, 1), "Authorization: [REDACTED]");
  char grow[INV_CELL_MAX + 1];
  size_t n = fill(grow, INV_CELL_MAX, "pwd=s&");
  grow[n] = 0;
  const char *row2[] = {grow, "-----BEGIN RSA " PK "-----\nMIIE"};
  assert_int_equal(inv_table_add(&t, row2), 0);
  const char *cell = inv_cell(&t, 1, 0);
  assert_true(strlen(cell) <= INV_CELL_MAX);
  assert_null(strstr(cell, "=s"));
  assert_non_null(strstr(cell, "pwd=[REDACTED]&pwd=[REDACTED]&"));
  assert_string_equal(inv_cell(&t, 1, 1), "[REDACTED]");
  inv_table_fail(&t, "helper said: token=%s", "abc123");
  assert_string_equal(t.error, "helper said: token=[REDACTED]");
  inv_table_free(&t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_private_keys),     cmocka_unit_test(test_authorization_headers),
      cmocka_unit_test(test_bearer_tokens),    cmocka_unit_test(test_key_value),
      cmocka_unit_test(test_not_secrets),      cmocka_unit_test(test_urls),
      cmocka_unit_test(test_shapes),           cmocka_unit_test(test_bounded_output),
      cmocka_unit_test(test_adversarial_cells_are_fast), cmocka_unit_test(test_table_cells_are_redacted),
      cmocka_unit_test(test_cut_tokens),       cmocka_unit_test(test_private_key_over_cells),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
