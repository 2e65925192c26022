/* The running checks (run.c), shared with the reports (report.c) and the policy (policy.c):
 * each check on its own timer, each run on the loop's threadpool, the engine's results, and
 * the settings in force with the version of the broker's policy they came from. */
#ifndef AGENT_CHECKS_RUN_H
#define AGENT_CHECKS_RUN_H

#include "agent.h"
#include "checks.h"

/* The reports a connection may send a minute (the broker drops the rest): one at most every
 * CHECKS_REPORT_GAP_MS; changes in between wait and go together. */
#define CHECKS_REPORT_GAP_MS (60u * 1000u / TT_CHECK_REPORTS_PER_MIN)
/* The broker answers a report from memory; a minute without an answer is a lost one. */
#define CHECKS_REPORT_TIMEOUT_MS (60u * 1000u)
/* At start (and after a policy changes a check) the checks run one after another this far
 * apart, not all in the same instant. */
#define CHECKS_FIRST_MS 200u
#define CHECKS_STAGGER_MS 100u
/* The policy kept in the state directory: 128 settings of at most ~1.2 KiB each. */
#define CHECKS_POLICY_FILE "checks-policy.json"
#define CHECKS_POLICY_FILE_MAX (256u * 1024u)

typedef struct agent_checks_s agent_checks_t;

/* One check: its timer and the run on the threadpool. */
typedef struct {
  agent_checks_t *cs;
  tt_check_id_t id;
  uv_timer_t timer;
  uv_work_t work;
  bool running;            /* a run is on the threadpool: the next tick waits for it */
  bool ran;                /* it has run since it was (re)started */
  bool na;                 /* its last run said it does not apply here */
  bool warned_over;        /* said once that its results did not all fit */
  char note[TT_CHECK_TEXT_MAX + 1]; /* why it does not apply */
  /* The run's input and output, owned by the worker while running. */
  agent_check_ctx_t ctx;
  tt_check_conf_t conf;
  agent_check_run_t run;
} agent_check_job_t;

struct agent_checks_s {
  agent_t *a;
  tt_checks_conf_t conf;   /* in force: checks_local, then the broker's policy over it */
  uint64_t policy_version; /* of the broker's policy in force; 0: none */
  agent_checks_engine_t eng;
  agent_check_job_t job[TT_CHECK_COUNT];
  uv_timer_t report_timer; /* the next report: at the end of this loop turn, or after the gap */
  uv_timer_t full_timer;   /* every TT_CHECK_FULL_REPORT_MS */
  bool need_full;          /* the next report carries every result */
  bool in_flight;          /* a report waits for its answer */
  bool unsupported;        /* this link's broker takes no check reports: none until the next */
  bool said_unsupported;   /* logged once */
  bool closing;
  bool sent_any;
  uint64_t last_report;    /* uv_now of the last report sent */
};

/* run.c: a policy changed the settings from old to cs->conf: checks turned off stop and
 * lose their results, the others restart on their period (soon, with the new settings). */
void checks_reconfigure(agent_checks_t *cs, const tt_checks_conf_t *old);

/* report.c */
void checks_report_init(agent_checks_t *cs);
void checks_report_close(agent_checks_t *cs);
/* Something changed: a report goes at the end of this loop turn (or once the gap allows). */
void checks_report_soon(agent_checks_t *cs);

/* policy.c: at start, the policy kept in the state directory over checks_local. */
void checks_policy_load(agent_checks_t *cs);

#endif
