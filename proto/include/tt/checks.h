/* The health checks' catalogue, shared by agent, broker and console: each check's name, what
 * one of its results is about (a mount, a service, a file), its settings with their types,
 * bounds and defaults, and the one parser of "checks.<check>.<setting>" = "value" that the
 * agent's config file, its policy pushes and the broker's policy requests all go through. */
#ifndef TT_CHECKS_H
#define TT_CHECKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "tt/err.h"
#include "tt/limits.h"
#include "tt/msg.h"

typedef enum {
  TT_CHECK_DISK_USED,
  TT_CHECK_INODES_USED,
  TT_CHECK_MEMORY_PRESSURE,
  TT_CHECK_SWAP_USED,
  TT_CHECK_UNITS_FAILED,
  TT_CHECK_SERVICES_DOWN,
  TT_CHECK_REBOOT_PENDING,
  TT_CHECK_CLOCK_SKEW,
  TT_CHECK_CERT_EXPIRY,
  TT_CHECK_AGENT_RENEWAL,
  TT_CHECK_AGENT_STATE_DISK,
  TT_CHECK_COUNT
} tt_check_id_t;

/* A result's state, CheckState's numbers on the wire. PENDING (CHECK_STATE_NONE) is a new
 * result that has not yet run raise_after or clear_after times in a row: no verdict, so a
 * broker neither raises nor resolves on it (an agent that restarts says nothing it does not
 * know). */
typedef enum {
  TT_CHECK_PENDING = 0,
  TT_CHECK_OK = 1,
  TT_CHECK_FAILING = 2,
  TT_CHECK_UNKNOWN = 3,
} tt_check_state_t;

/* What one result of a check is about. */
typedef enum {
  TT_CHECK_DIM_NONE = 0, /* one result per device, dimension "" */
  TT_CHECK_DIM_MOUNT,    /* a mount point */
  TT_CHECK_DIM_SERVICE,  /* a systemd unit */
  TT_CHECK_DIM_PATH,     /* a file */
} tt_check_dim_t;

/* The priority of an alert's ticket: TicketPriority's numbers. */
typedef enum {
  TT_CHECK_PRIO_LOW = 1,
  TT_CHECK_PRIO_NORMAL = 2,
  TT_CHECK_PRIO_HIGH = 3,
  TT_CHECK_PRIO_URGENT = 4,
} tt_check_prio_t;

typedef enum {
  TT_CHECK_V_BOOL,     /* on|off (also true|false, yes|no) */
  TT_CHECK_V_DURATION, /* ms: digits and one unit, "500ms", "90s", "5m", "4h", "14d" */
  TT_CHECK_V_COUNT,    /* a whole number */
  TT_CHECK_V_PERCENT,  /* "85%" or "85" */
  TT_CHECK_V_PRIORITY, /* low|normal|high|urgent */
  TT_CHECK_V_GLOBS,    /* comma list of patterns: a mount's type, or (starting with '/') its path */
  TT_CHECK_V_UNITS,    /* comma list of systemd units ("cups" is "cups.service") */
  TT_CHECK_V_PATHS,    /* comma list of absolute paths */
} tt_check_vtype_t;

/* Which field of tt_check_conf_t a setting sets. */
typedef enum {
  TT_CHECK_F_ENABLED,
  TT_CHECK_F_PERIOD,
  TT_CHECK_F_RAISE_AFTER,
  TT_CHECK_F_CLEAR_AFTER,
  TT_CHECK_F_PRIORITY,
  TT_CHECK_F_THRESHOLD,
  TT_CHECK_F_AVAILABLE,
  TT_CHECK_F_LIST,
} tt_check_field_t;

typedef struct {
  const char *name;       /* "threshold" */
  tt_check_field_t field;
  tt_check_vtype_t type;
  int64_t min, max;       /* inclusive, in stored units (ms, %, a count); a list: most items */
  const char *def;        /* the default, as text: parsed like any value (a test checks each) */
  const char *help;       /* one line */
} tt_check_setting_t;

typedef struct {
  const char *name;       /* "disk_used" */
  tt_check_dim_t dim;
  const char *desc;       /* one line */
  const tt_check_setting_t *settings; /* enabled, period, raise_after, clear_after, priority, then its own */
  size_t nsettings;
} tt_check_def_t;

/* The catalogue, indexed by tt_check_id_t. */
extern const tt_check_def_t tt_checks[TT_CHECK_COUNT];

/* A check's id by name, or -1. */
int tt_check_find(const char *name);
/* A check's setting by name, or NULL; and the one a field is set by (NULL: it has none). */
const tt_check_setting_t *tt_check_setting(tt_check_id_t id, const char *name);
const tt_check_setting_t *tt_check_setting_of(tt_check_id_t id, tt_check_field_t field);
const char *tt_check_state_name(tt_check_state_t s); /* pending, ok, failing, unknown */
const char *tt_check_dim_name(tt_check_dim_t d);     /* none, mount, service, path */
const char *tt_check_prio_name(int prio);            /* low, normal, high, urgent */

/* One check's settings in force. */
typedef struct {
  bool enabled;
  int64_t period_ms;
  uint32_t raise_after, clear_after;
  int priority;      /* tt_check_prio_t */
  int64_t threshold; /* in its setting's units (%, ms, a count); 0 for a check without one */
  int64_t available; /* memory_pressure without PSI: MemAvailable % under which it fails */
  char list[TT_POLICY_VALUE_MAX + 1]; /* its list setting, canonical ("a,b,c"); "" empty */
} tt_check_conf_t;

typedef struct {
  tt_check_conf_t c[TT_CHECK_COUNT];
} tt_checks_conf_t;

/* Every check at its defaults. */
void tt_checks_defaults(tt_checks_conf_t *cfg);

/* Check one "checks.<check>.<setting>" = value without applying it: *id and *s say which,
 * canon (cap bytes, at least TT_POLICY_VALUE_MAX + 1) gets the value as it is shown and
 * stored ("85" -> "85%", "cups" -> "cups.service", "60s" -> "1m"). TT_EINVAL with err =
 * "checks.disk_used.threshold: 120% is out of range (1%..100%)" and the like. canon must not
 * be value's own buffer (it is written while value is read). */
int tt_checks_parse(const char *key, const char *value, tt_check_id_t *id, const tt_check_setting_t **s,
                    char *canon, size_t cap, char *err, size_t errlen) TT_WUR;
/* Parse one setting and set it in cfg; cfg is unchanged on error. */
int tt_checks_set(tt_checks_conf_t *cfg, const char *key, const char *value, char *err, size_t errlen) TT_WUR;

/* A setting as text, as a peer sent it: bytes that must still be checked (UTF-8, no control
 * characters, no NUL, lengths). */
typedef struct {
  const uint8_t *key;
  size_t key_len;
  const uint8_t *value;
  size_t value_len;
} tt_check_kv_t;

/* Apply n settings to cfg, all or none: every one is checked first (at most
 * TT_POLICY_SETTINGS_MAX, each key once), and cfg changes only if all are good. On error err
 * names the first bad one. */
int tt_checks_apply(tt_checks_conf_t *cfg, const tt_check_kv_t *kv, size_t n, char *err, size_t errlen) TT_WUR;
/* The same over a PolicyPushRequest's or PolicySetRequest's settings. */
int tt_checks_apply_pb(tt_checks_conf_t *cfg, Tether__PolicySetting *const *s, size_t n, char *err,
                       size_t errlen) TT_WUR;

/* A setting's value in cfg as text ("90%", "5m", "on", "high", "cups.service,ssh.service"). */
void tt_checks_format(const tt_checks_conf_t *cfg, tt_check_id_t id, const tt_check_setting_t *s, char *out,
                      size_t cap);
/* A number of a setting's type as text: a duration's largest exact unit, "85%", "12". */
void tt_checks_format_num(tt_check_vtype_t type, int64_t v, char *out, size_t cap);

#endif
