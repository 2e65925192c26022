/* What a test must undo to take a store back to what an older broker left: the later
 * migrations' tables, indexes and columns, newest first. Prepend to a rewind's SQL. */
#ifndef TT_TEST_STORE_UNDO_H
#define TT_TEST_STORE_UNDO_H

/* 22: agent releases and rollouts. */
#define STORE_UNDO_22 "DROP TABLE rollout_devices; DROP TABLE rollouts; DROP TABLE agent_releases; "

/* 21: released audit values' digest2. */
#define STORE_UNDO_21 "ALTER TABLE audit_values DROP COLUMN digest2; "

/* 20: when tickets closed, inventory history's floors, the sweeps' indexes. */
#define STORE_UNDO_20                                                                           \
  "DROP INDEX inv_tables_version; DROP TABLE inv_floor; DROP INDEX help_requests_ticket;"       \
  " DROP INDEX recordings_ticket; DROP INDEX tickets_closed; ALTER TABLE tickets DROP COLUMN closed_ms; "

/* 19: the ticket timeline's gate, erased recordings, released values' index. */
#define STORE_UNDO_19                                                                           \
  "DROP INDEX audit_values_erased; ALTER TABLE recordings DROP COLUMN erased;"                  \
  " DROP TRIGGER ticket_events_no_update; DROP TRIGGER ticket_events_no_delete;"               \
  " CREATE TRIGGER ticket_events_no_update BEFORE UPDATE ON ticket_events"                      \
  "  BEGIN SELECT RAISE(ABORT, 'ticket_events is append-only'); END;"                            \
  " CREATE TRIGGER ticket_events_no_delete BEFORE DELETE ON ticket_events"                      \
  "  BEGIN SELECT RAISE(ABORT, 'ticket_events is append-only'); END; "

/* 18: retention, holds, expired recordings, the pruned audit's base. */
#define STORE_UNDO_18                                                                           \
  "DROP TABLE retention; DROP TABLE ticket_holds; DROP TABLE audit_base; DROP INDEX recordings_started;" \
  " DROP INDEX diag_reports_taken; ALTER TABLE recordings DROP COLUMN expired_ms; "

/* 17: the SIEM forwarder's cursors. */
#define STORE_UNDO_17 "DROP TABLE siem_cursor; "

/* 16: audit format 2. Entries written since keep their format 2 hashes and would read as
 * format 1: a test that rewinds and then verifies writes its audit rows after the rewind, in
 * format 1 (test_store.c's raw_audit_v1). */
#define STORE_UNDO_16                                                                           \
  "DROP TRIGGER audit_values_no_update; DROP TRIGGER audit_values_no_delete; DROP TABLE audit_values;" \
  " DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete; DROP TABLE audit_gate;"        \
  " ALTER TABLE audit DROP COLUMN format;"                                                       \
  " CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit"                                      \
  "  BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END;"                                  \
  " CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit"                                      \
  "  BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END; "

/* 15: ssh keys. */
#define STORE_UNDO_15 "DROP TABLE ssh_keys; "

/* 14: check reports counted per device and minute. */
#define STORE_UNDO_14                                                                           \
  "ALTER TABLE check_agents DROP COLUMN window_ms; ALTER TABLE check_agents DROP COLUMN reports; "

/* 13: checks, alerts, policy, maintenance. */
#define STORE_UNDO_13                                                                           \
  "DROP TABLE check_results; DROP TABLE check_agents; DROP TABLE alerts; DROP TABLE storms;"   \
  " DROP TABLE policy; DROP TABLE policy_version; DROP TABLE maintenance; "

/* 12: the knowledge base; people's support level. */
#define STORE_UNDO_12                                                                           \
  "DROP TABLE kb_fts; DROP TABLE kb_links; DROP TABLE kb_checks; DROP TABLE kb_articles;"      \
  " ALTER TABLE people DROP COLUMN level; "

/* 11: help requests; tickets' source and parent (diag_reports keeps its laxer CHECK). */
#define STORE_UNDO_11                                                                           \
  "DROP TABLE help_requests; DROP INDEX tickets_parent; DROP INDEX tickets_requester;"         \
  " ALTER TABLE tickets DROP COLUMN parent; ALTER TABLE tickets DROP COLUMN source; "

/* Everything after schema 10, newest first: what a rewind to 10 or earlier starts with. */
#define STORE_UNDO_TO_10 STORE_UNDO_22 STORE_UNDO_21 STORE_UNDO_20 STORE_UNDO_19 STORE_UNDO_18 STORE_UNDO_17 STORE_UNDO_16 STORE_UNDO_15 STORE_UNDO_14 STORE_UNDO_13 STORE_UNDO_12 STORE_UNDO_11

#endif
