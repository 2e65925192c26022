/* Secrets taken out of text before it leaves the device: every cell of every inventory and
 * diagnostics table passes through here (table.c's inv_table_add), so a journal line with a
 * token or a unit description with a password never reaches the broker as it was. */
#ifndef AGENT_INV_REDACT_H
#define AGENT_INV_REDACT_H

#include <stdbool.h>
#include <stddef.h>

/* What a secret is replaced by. The name in front of it (password=, Authorization:, ghp_)
 * stays, so whoever reads the report sees that something was there and what kind. */
#define INV_REDACT_MARK "[REDACTED]"
/* The longest key name (db_password, aws_secret_access_key, x-api-key) looked at in
 * key=value, key: value and "key": "value" forms; a longer word is not a key. */
#define INV_REDACT_KEY_MAX 64
/* How much longer redacted text can be than the text: the worst is a one-byte value,
 * "pwd=x&" (6 bytes) becoming "pwd=[REDACTED]&" (15). Past it the text is cut, never a
 * secret let through. */
#define INV_REDACT_GROWTH 3
/* A cell is redacted with this much of what follows its cut (inv_table_add), so that a
 * secret across the cut is recognised whole. */
#define INV_REDACT_LOOKAHEAD 256
/* A PEM label ("RSA PRIVATE KEY", "OPENSSH PRIVATE KEY") is at most this long. */
#define INV_REDACT_LABEL_MAX 64

/* Copy the n bytes at in into out (cap bytes, always NUL-terminated) with each secret's value
 * replaced by INV_REDACT_MARK:
 *   - PEM private key blocks (-----BEGIN ... PRIVATE KEY----- to its END line, or to the
 *     end of the text when the END was cut off): the whole block;
 *   - values named by a secret key (password, passwd, passphrase, pwd, pass, secret, token,
 *     api_key/apikey, access_key, private_key, secret_key, signing_key, encryption_key,
 *     master_key, credentials, authorization, cookie, and any name ending in one of them:
 *     db_password, client_secret, aws_secret_access_key; or with password, passwd,
 *     passphrase, secret, token, apikey or credentials as one of its words: PASSWORD_NEW,
 *     password1, token_value; and Azure's SAS `sig`) in key=value, key: value, "key": "value",
 *     'key' => 'value' and --key value forms; an unquoted value ends at white space, & ; , or
 *     a quote; Authorization and Cookie values run to the end of the line (a scheme and its
 *     credentials);
 *   - the password of -u / --user user:password (curl, wget);
 *   - values named by a secret-ish key (key, auth, signature, session, credential...) only
 *     when they look random: 16+ characters of a token alphabet, mixed classes, high entropy;
 *   - the password of a URL's user:password@;
 *   - Bearer tokens; AWS access key ids (AKIA/ASIA + 16); GitHub tokens (ghp_ gho_ ghs_ ghu_
 *     ghr_ github_pat_); Slack tokens (xoxa- xoxb- xoxp- xoxr-); JWTs (eyJ... three base64url
 *     segments). A prefixed token cut off by the end of the text goes however short the
 *     part that is left (the caller redacts before it cuts a cell, but a helper's own
 *     output may have been cut).
 * Work is linear in n: hand-written scanners, each look-back and look-ahead bounded. When out
 * fills up the rest is dropped (never a secret's first bytes) and the cut is at a whole
 * UTF-8 character. Returns the length written; *hits (if not NULL) counts the secrets. */
size_t inv_redact(char *out, size_t cap, const char *in, size_t n, unsigned *hits);

/* Whether a private key block is still open at the end of the text (a BEGIN ... PRIVATE
 * KEY line with no END after it), given whether one was open at its start: a program that
 * logs a key a line at a time spreads it over cells, and the cells after the BEGIN are
 * replaced whole until the END (table.c). */
bool inv_redact_pem_open(const char *in, size_t n, bool open);

#endif
