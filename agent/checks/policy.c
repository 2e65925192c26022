/* The admins' policy on this device: a PolicyPushRequest carries every setting in force here
 * (its groups' over the defaults); each is checked with the catalogue before any is applied
 * over this machine's own (the defaults and the config file's checks.*), the checks change
 * without a restart, and the push is kept in the state directory (written whole, then renamed)
 * so that an agent restarted offline runs it too. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "run.h"
#include "tt/log.h"
#include "tt/msg.h"

static int policy_path(const agent_checks_t *cs, char *out, size_t cap) {
  return agent_path(out, cap, cs->a->cfg.state_dir, CHECKS_POLICY_FILE);
}

/* {"version":N,"settings":[["checks.x.y","value"],...]}: the push as it came (checked). */
static void policy_keep(agent_checks_t *cs, uint64_t version, Tether__PolicySetting *const *s, size_t n) {
  char path[AGENT_PATH_MAX], err[512];
  if (policy_path(cs, path, sizeof(path))) return;
  json_t *list = json_array(), *doc = json_pack("{s:I,s:o}", "version", (json_int_t)version, "settings", list);
  for (size_t i = 0; doc && i < n; i++)
    json_array_append_new(list, json_pack("[s%,s%]", (const char *)s[i]->key.data, s[i]->key.len,
                                          s[i]->value.len ? (const char *)s[i]->value.data : "", s[i]->value.len));
  char *text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
  json_decref(doc);
  if (!text) {
    TT_WARN("checks", "cannot keep the policy: out of memory", "version=%llu", (unsigned long long)version);
    return;
  }
  /* One line, fsync'd and renamed into place: a few KiB, once per policy change. */
  const agent_file_t f = {.path = path, .text = text};
  if (agent_state_commit(&f, 1, err, sizeof(err)))
    TT_WARN("checks", "cannot keep the policy: a restart will run the local settings until the next push",
            "version=%llu err=\"%s\"", (unsigned long long)version, err);
  free(text);
}

void checks_policy_load(agent_checks_t *cs) {
  char path[AGENT_PATH_MAX], err[512];
  if (policy_path(cs, path, sizeof(path))) return;
  /* Non-blocking and a regular file only: a FIFO there must not hold the agent's start. */
  int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  struct stat st;
  if (fd >= 0 && (fstat(fd, &st) || !S_ISREG(st.st_mode))) {
    TT_WARN("checks", "the kept policy is not a regular file: running the local settings", "file=%s", path);
    close(fd);
    return;
  }
  if (fd < 0) {
    if (errno != ENOENT)
      TT_WARN("checks", "cannot read the kept policy: running the local settings", "file=%s err=%s", path, strerror(errno));
    return;
  }
  char *buf = malloc(CHECKS_POLICY_FILE_MAX + 1);
  size_t len = 0;
  ssize_t r = 0;
  while (buf && len <= CHECKS_POLICY_FILE_MAX &&
         ((r = read(fd, buf + len, CHECKS_POLICY_FILE_MAX + 1 - len)) > 0 || (r < 0 && errno == EINTR)))
    if (r > 0) len += (size_t)r;
  close(fd);
  json_t *doc = buf && r >= 0 && len <= CHECKS_POLICY_FILE_MAX ? json_loadb(buf, len, 0, NULL) : NULL;
  free(buf);
  json_int_t version = 0;
  json_t *list = NULL;
  size_t n = 0;
  tt_check_kv_t kv[TT_POLICY_SETTINGS_MAX];
  bool good = doc && json_unpack(doc, "{s:I,s:o}", "version", &version, "settings", &list) == 0 && version >= 0 &&
              json_is_array(list) && json_array_size(list) <= TT_POLICY_SETTINGS_MAX;
  for (size_t i = 0; good && i < json_array_size(list); i++) {
    json_t *k = json_array_get(json_array_get(list, i), 0), *v = json_array_get(json_array_get(list, i), 1);
    good = json_is_string(k) && json_is_string(v);
    if (good)
      kv[n++] = (tt_check_kv_t){(const uint8_t *)json_string_value(k), json_string_length(k),
                                (const uint8_t *)json_string_value(v), json_string_length(v)};
  }
  tt_checks_conf_t next = cs->conf;
  if (!good) {
    TT_WARN("checks", "the kept policy is not one: running the local settings", "file=%s", path);
  } else if (tt_checks_apply(&next, kv, n, err, sizeof(err))) {
    char q[2048];
    tt_log_quote(q, sizeof(q), err, strlen(err));
    TT_WARN("checks", "the kept policy does not apply: running the local settings", "file=%s err=\"%s\"", path, q);
  } else {
    cs->conf = next;
    cs->policy_version = (uint64_t)version;
    TT_INFO("checks", "running the kept policy", "version=%llu settings=%zu", (unsigned long long)version, n);
  }
  json_decref(doc);
}

static void answer(agent_t *a, uint32_t id, Tether__Response *r) {
  r->id = id;
  if (tt_link_send(a->link, TT_K_RESPONSE, &r->base)) tt_link_close(a->link, TT_EIO, "cannot answer");
}

void agent_checks_policy_request(agent_t *a, const Tether__Request *q) {
  agent_checks_t *cs = a->checks;
  const Tether__PolicyPushRequest *p = q->policy_push;
  char err[1024] = "";
  Tether__Response r = TETHER__RESPONSE__INIT;
  Tether__Error e = TETHER__ERROR__INIT;
  tt_checks_conf_t next;
  if (!cs) {
    snprintf(err, sizeof(err), "the checks are not running on this agent");
    e.code = TETHER__ERROR_CODE__ERR_INTERNAL;
  } else if (!p) {
    snprintf(err, sizeof(err), "an empty policy push");
    e.code = TETHER__ERROR_CODE__ERR_INVALID;
  } else {
    /* Over this machine's own settings, not over the last policy: a key the broker no longer
     * sends goes back to the local value. */
    next = a->checks_local;
    if (tt_checks_apply_pb(&next, p->settings, p->n_settings, err, sizeof(err)))
      e.code = TETHER__ERROR_CODE__ERR_INVALID;
  }
  if (err[0]) {
    char why[TT_TEXT_MAX + 1], q2[TT_TEXT_MAX * 4 + 1];
    agent_check_text(why, sizeof(why), err); /* an Error's message is at most TT_TEXT_MAX */
    tt_log_quote(q2, sizeof(q2), why, strlen(why));
    TT_WARN("checks", "policy refused: nothing of it applied", "version=%llu err=\"%s\"",
            (unsigned long long)(p ? p->version : 0), q2);
    e.message = tt_text(why);
    r.error = &e;
    answer(a, q->id, &r);
    return;
  }
  tt_checks_conf_t old = cs->conf;
  bool same = !memcmp(&old, &next, sizeof(old)) && cs->policy_version == p->version;
  cs->conf = next;
  cs->policy_version = p->version;
  if (!same) policy_keep(cs, p->version, p->settings, p->n_settings);
  TT_INFO("checks", "policy applied", "version=%llu settings=%zu changed=%d", (unsigned long long)p->version,
          p->n_settings, (int)!same);
  Tether__PolicyPushResponse pr = TETHER__POLICY_PUSH_RESPONSE__INIT;
  pr.version = p->version;
  r.body_case = TETHER__RESPONSE__BODY_POLICY_PUSH;
  r.policy_push = &pr;
  answer(a, q->id, &r);
  if (!same) checks_reconfigure(cs, &old);
}
