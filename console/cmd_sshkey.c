/* tether ssh-key add FILE [--person NAME]: register an ssh public key (a .pub file, or - for
 * standard input) to log in to the ssh gateway with; admins may add one for someone else.
 * tether ssh-key list [--person NAME | --all] [--json]: the keys registered (yours by default).
 * tether ssh-key remove SHA256:...: take one away (the gateway's sessions made with it end).
 * tether ssh-config: a ~/.ssh/config block and known_hosts lines for the gateways connected to
 * the broker now, ready to paste. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "console.h"
#include "tt/cert.h"
#include "tt/msg.h"
#include "tt/sshkey.h"

#define TEXT_SHOWN (TT_TEXT_MAX * 4 + 1)

static struct {
  char line[TT_SSH_KEY_LINE_MAX + 2];
  size_t len;
} g_key;

static int person_ok(console_t *c) {
  if (c->cfg.ssh_person[0] && !tt_name_valid(c->cfg.ssh_person))
    return console_usage_error("--person: '%s' is not a person's name", c->cfg.ssh_person);
  return 0;
}

/* The first line of a .pub file that is not blank or a comment. */
static int add_check(console_t *c) {
  if (person_ok(c)) return 2;
  const char *path = c->arg[0];
  FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
  if (!f) return console_usage_error("cannot read %s: %s", path, strerror(errno));
  char buf[TT_SSH_KEY_LINE_MAX * 2];
  bool found = false, too_long = false;
  while (!found && fgets(buf, sizeof(buf), f)) {
    size_t n = strlen(buf);
    if (n == sizeof(buf) - 1 && buf[n - 1] != '\n') too_long = true;
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' ')) buf[--n] = '\0';
    const char *s = buf + strspn(buf, " \t");
    if (!*s || *s == '#') continue;
    found = true;
    if (too_long || strlen(s) > TT_SSH_KEY_LINE_MAX) too_long = true;
    else memcpy(g_key.line, s, (g_key.len = strlen(s)) + 1);
  }
  if (f != stdin) fclose(f);
  if (too_long) return console_usage_error("%s: a public key line is at most %u bytes", path, TT_SSH_KEY_LINE_MAX);
  if (!found) return console_usage_error("%s holds no public key", path);
  /* Said here rather than by the broker when it is plainly not a public key (a private key
   * file given by mistake must not travel). */
  tt_sshkey_t k;
  char why[160];
  if (strstr(g_key.line, "PRIVATE KEY"))
    return console_usage_error("%s is a private key: give the .pub file next to it", path);
  if (tt_sshkey_parse(g_key.line, g_key.len, &k, why, sizeof(why)))
    return console_usage_error("%s: %s", path, why);
  return 0;
}

static int send_key_request(console_t *c, Tether__SshKeyRequest *k) {
  if (c->cfg.ssh_person[0]) k->person = tt_text(c->cfg.ssh_person);
  Tether__Request q = TETHER__REQUEST__INIT;
  q.body_case = TETHER__REQUEST__BODY_SSH_KEY;
  q.ssh_key = k;
  return console_request(c, &q, TETHER__RESPONSE__BODY_SSH_KEYS);
}

static int add_start(console_t *c) {
  Tether__SshKeyRequest k = TETHER__SSH_KEY_REQUEST__INIT;
  k.op = TETHER__SSH_KEY_OP__SSH_KEY_ADD;
  k.line = (ProtobufCBinaryData){.data = (uint8_t *)g_key.line, .len = g_key.len};
  return send_key_request(c, &k);
}

static void key_json(FILE *o, const Tether__SshKey *k) {
  fputs("{\"fingerprint\":", o);
  console_json_bytes(o, k->fingerprint);
  fputs(",\"person\":", o);
  console_json_bytes(o, k->person);
  fputs(",\"type\":", o);
  console_json_bytes(o, k->type);
  fprintf(o, ",\"bits\":%u,\"comment\":", (unsigned)k->bits);
  console_json_bytes(o, k->comment);
  fputs(",\"added\":", o);
  console_json_time(o, k->added_ms);
  fputs(",\"added_by\":", o);
  console_json_bytes(o, k->added_by);
  fputc('}', o);
}

static void key_line(const Tether__SshKey *k, bool person) {
  char fp[TEXT_SHOWN], who[TEXT_SHOWN], type[TEXT_SHOWN], comment[TEXT_SHOWN], when[40];
  console_text(fp, sizeof(fp), k->fingerprint);
  console_text(who, sizeof(who), k->person);
  console_text(type, sizeof(type), k->type);
  console_text(comment, sizeof(comment), k->comment);
  console_iso(when, sizeof(when), k->added_ms, false);
  if (person) printf("%-16s ", who);
  printf("%s  %s %u  %s  %s\n", fp, type, (unsigned)k->bits, when, comment[0] ? comment : "-");
}

static int one_key_response(console_t *c, const Tether__Response *r) {
  if (r->ssh_keys->n_keys != 1) return TT_EPROTO;
  const Tether__SshKey *k = r->ssh_keys->keys[0];
  if (c->json) {
    key_json(stdout, k);
    fputc('\n', stdout);
  } else {
    char fp[TEXT_SHOWN], who[TEXT_SHOWN];
    console_text(fp, sizeof(fp), k->fingerprint);
    console_text(who, sizeof(who), k->person);
    printf("%s %s's key %s\n", c->cmd->sub[0] == 'a' ? "added" : "removed", who, fp);
  }
  console_finish(c, 0);
  return 0;
}

/* -- list ------------------------------------------------------------------------------------ */

static int list_check(console_t *c) {
  if (person_ok(c)) return 2;
  if (c->all && c->cfg.ssh_person[0]) return console_usage_error("--person or --all, not both");
  return 0;
}

static int list_start(console_t *c) {
  Tether__SshKeyRequest k = TETHER__SSH_KEY_REQUEST__INIT;
  k.op = TETHER__SSH_KEY_OP__SSH_KEY_LIST;
  k.all = c->all;
  return send_key_request(c, &k);
}

static int list_response(console_t *c, const Tether__Response *r) {
  const Tether__SshKeyList *l = r->ssh_keys;
  for (size_t i = 0; i < l->n_keys; i++) {
    if (c->json) {
      key_json(stdout, l->keys[i]);
      fputc('\n', stdout);
    } else {
      key_line(l->keys[i], c->all);
    }
  }
  if (!c->json && l->n_keys == 0) printf("no ssh keys registered%s\n", c->all ? "" : " (tether ssh-key add FILE.pub)");
  if (!c->json && l->more) printf("(more keys than one listing shows)\n");
  console_finish(c, 0);
  return 0;
}

/* -- remove ---------------------------------------------------------------------------------- */

static int remove_check(console_t *c) {
  if (strlen(c->arg[0]) != TT_SSH_FP_LEN || strncmp(c->arg[0], "SHA256:", 7) != 0)
    return console_usage_error("'%s' is not a key fingerprint: SHA256: and 43 characters, as ssh-key list shows",
                               c->arg[0]);
  return 0;
}

static int remove_start(console_t *c) {
  Tether__SshKeyRequest k = TETHER__SSH_KEY_REQUEST__INIT;
  k.op = TETHER__SSH_KEY_OP__SSH_KEY_REMOVE;
  k.fingerprint = tt_text(c->arg[0]);
  Tether__Request q = TETHER__REQUEST__INIT;
  q.body_case = TETHER__REQUEST__BODY_SSH_KEY;
  q.ssh_key = &k;
  return console_request(c, &q, TETHER__RESPONSE__BODY_SSH_KEYS);
}

/* -- ssh-config ------------------------------------------------------------------------------ */

static int config_start(console_t *c) {
  Tether__SshConfigRequest k = TETHER__SSH_CONFIG_REQUEST__INIT;
  Tether__Request q = TETHER__REQUEST__INIT;
  q.body_case = TETHER__REQUEST__BODY_SSH_CONFIG;
  q.ssh_config = &k;
  return console_request(c, &q, TETHER__RESPONSE__BODY_SSH_CONFIG);
}

/* "host:port" / "[v6]:port" -> host and port; a wildcard host is the broker's. */
static void split_listen(const console_t *c, const char *listen, char *host, size_t hcap, char *port, size_t pcap) {
  const char *colon = strrchr(listen, ':');
  snprintf(port, pcap, "%s", colon ? colon + 1 : "22");
  size_t hl = colon ? (size_t)(colon - listen) : strlen(listen);
  if (hl >= 2 && listen[0] == '[' && listen[hl - 1] == ']') listen++, hl -= 2;
  snprintf(host, hcap, "%.*s", (int)hl, listen);
  if (!host[0] || strcmp(host, "0.0.0.0") == 0 || strcmp(host, "::") == 0) {
    const char *bc = strrchr(c->cfg.broker, ':');
    size_t bl = bc ? (size_t)(bc - c->cfg.broker) : strlen(c->cfg.broker);
    snprintf(host, hcap, "%.*s", (int)bl, c->cfg.broker);
  }
}

static int config_response(console_t *c, const Tether__Response *r) {
  const Tether__SshConfig *g = r->ssh_config;
  if (g->n_gateways == 0) {
    console_fail(c, "no ssh gateway is connected to the broker (start tether-sshd)");
    return 0;
  }
  for (size_t i = 0; i < g->n_gateways; i++) {
    char name[TEXT_SHOWN], listen[TEXT_SHOWN], key[TT_SSH_KEY_LINE_MAX * 4 + 1], host[TEXT_SHOWN], port[16];
    console_text(name, sizeof(name), g->gateways[i]->name);
    console_text(listen, sizeof(listen), g->gateways[i]->listen);
    console_text(key, sizeof(key), g->gateways[i]->host_key);
    split_listen(c, listen, host, sizeof(host), port, sizeof(port));
    if (c->json) {
      fputs("{\"gateway\":", stdout);
      console_json_str(stdout, name);
      fputs(",\"host\":", stdout);
      console_json_str(stdout, host);
      printf(",\"port\":%s,\"host_key\":", port);
      console_json_str(stdout, key);
      fputs("}\n", stdout);
      continue;
    }
    printf("# ~/.ssh/config: then ssh DEVICE+T-3@tether-%s (scp, sftp: -P is not needed)\n", name);
    printf("Host tether-%s\n  HostName %s\n  Port %s\n  HostKeyAlias tether-%s\n  ForwardAgent no\n"
           "  ForwardX11 no\n  ClearAllForwardings yes\n\n",
           name, host, port, name);
    printf("# ~/.ssh/known_hosts (the gateway's host key, as tether-sshd --fingerprint shows it):\n");
    printf("tether-%s %s\n[%s]:%s %s\n", name, key, host, port, key);
    if (i + 1 < g->n_gateways) putchar('\n');
  }
  console_finish(c, 0);
  return 0;
}

const console_cmd_t console_cmd_ssh_key_add = {
    .name = "ssh-key",
    .sub = "add",
    .args = "FILE.pub [--person NAME] [--json]",
    .help = "register an ssh public key to log in to the ssh gateway with (admins: for --person)",
    .min_pos = 1,
    .max_pos = 1,
    .switches = CONSOLE_SW_JSON,
    .check = add_check,
    .start = add_start,
    .on_response = one_key_response,
};

const console_cmd_t console_cmd_ssh_key_list = {
    .name = "ssh-key",
    .sub = "list",
    .args = "[--person NAME | --all] [--json]",
    .help = "the ssh keys registered: yours, another's or (--all) everyone's (admins)",
    .switches = CONSOLE_SW_JSON | CONSOLE_SW_ALL,
    .check = list_check,
    .start = list_start,
    .on_response = list_response,
};

const console_cmd_t console_cmd_ssh_key_remove = {
    .name = "ssh-key",
    .sub = "remove",
    .args = "SHA256:... [--json]",
    .help = "remove an ssh key (yours; admins: anyone's); the ssh sessions it logged in end",
    .min_pos = 1,
    .max_pos = 1,
    .switches = CONSOLE_SW_JSON,
    .check = remove_check,
    .start = remove_start,
    .on_response = one_key_response,
};

const console_cmd_t console_cmd_ssh_config = {
    .name = "ssh-config",
    .args = "[--json]",
    .help = "a ~/.ssh/config block and known_hosts lines for the ssh gateway",
    .switches = CONSOLE_SW_JSON,
    .start = config_start,
    .on_response = config_response,
};
