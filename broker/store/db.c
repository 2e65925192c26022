/* The store's file and connection: the data directory, the schema and its migrations,
 * pragmas, transactions, and the open of each domain's statements. */
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

/* Fail rather than wait forever when another process holds the write lock; the store
 * thread waits, never the event loop. An admin's sqlite3 shell or a backup holding it
 * longer than this makes the batch fail, and its requests are refused (privileged
 * actions are not carried out unrecorded). */
#define STORE_BUSY_MS 30000
#define STORE_FILE "broker.db"

static void set_err(char *err, size_t errlen, const char *fmt, ...) TT_PRINTF(3, 4);
static void set_err(char *err, size_t errlen, const char *fmt, ...) {
  if (err == NULL || errlen == 0) return;
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
  if (n < 0) err[0] = '\0';
}

/* ---- schema ----------------------------------------------------------------------------
 * Migrations in order: step i takes the store from version i to i + 1 and ends by setting
 * user_version to i + 1 (a literal, so no SQL is ever formatted). Each runs in its own
 * transaction; open checks that the bump landed. Never edit a released step: append one. */
static const char *const g_migrations[] = {
  /* 1: the first schema. STRICT keeps column types honest; the audit triggers make our own
   * code unable to rewrite history by accident (verify catches anyone else). */
  "CREATE TABLE devices("
  "  id TEXT PRIMARY KEY NOT NULL,"
  "  hostname TEXT NOT NULL DEFAULT '',"
  "  address TEXT NOT NULL DEFAULT '',"
  "  version TEXT NOT NULL DEFAULT '',"
  "  cert_fp TEXT NOT NULL DEFAULT '',"
  "  enrolled_ms INTEGER NOT NULL,"
  "  last_seen_ms INTEGER NOT NULL DEFAULT 0,"
  "  cert_not_after_ms INTEGER NOT NULL DEFAULT 0,"
  "  revoked INTEGER NOT NULL DEFAULT 0"
  ") STRICT;"
  "CREATE TABLE tokens("
  "  hash BLOB PRIMARY KEY NOT NULL CHECK(length(hash) = 32),"
  "  expires_ms INTEGER NOT NULL,"
  "  uses_left INTEGER NOT NULL CHECK(uses_left >= 0),"
  "  note TEXT NOT NULL DEFAULT '',"
  "  created_by TEXT NOT NULL DEFAULT '',"
  "  created_ms INTEGER NOT NULL"
  ") STRICT;"
  "CREATE TABLE revocations("
  "  kind INTEGER NOT NULL CHECK(kind IN (1, 2)),"
  "  name TEXT NOT NULL,"
  "  \"by\" TEXT NOT NULL DEFAULT '',"
  "  reason TEXT NOT NULL DEFAULT '',"
  "  ts_ms INTEGER NOT NULL,"
  "  PRIMARY KEY(kind, name)"
  ") STRICT;"
  "CREATE TABLE audit("
  "  id INTEGER PRIMARY KEY,"
  "  ts_ms INTEGER NOT NULL,"
  "  actor TEXT NOT NULL,"
  "  action TEXT NOT NULL,"
  "  target TEXT NOT NULL,"
  "  detail TEXT NOT NULL,"
  "  prev_hash BLOB NOT NULL CHECK(length(prev_hash) = 32),"
  "  hash BLOB NOT NULL CHECK(length(hash) = 32)"
  ") STRICT;"
  "CREATE INDEX audit_ts ON audit(ts_ms);"
  "CREATE INDEX audit_actor ON audit(actor);"
  "CREATE INDEX audit_target ON audit(target);"
  "CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit"
  "  BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END;"
  "CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit"
  "  BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END;"
  "PRAGMA user_version = 1;",
  /* 2: help-desk tickets and their timelines. Priority, level and state are checked here
   * so that a bad value is refused whatever wrote it; events are append-only like audit. */
  "CREATE TABLE tickets("
  "  id INTEGER PRIMARY KEY,"
  "  device TEXT NOT NULL,"
  "  requester TEXT NOT NULL DEFAULT '',"
  "  assignee TEXT NOT NULL DEFAULT '',"
  "  summary TEXT NOT NULL,"
  "  external_id TEXT NOT NULL DEFAULT '',"
  "  priority INTEGER NOT NULL CHECK(priority BETWEEN 0 AND 3),"
  "  level INTEGER NOT NULL DEFAULT 1 CHECK(level BETWEEN 1 AND 3),"
  "  state INTEGER NOT NULL CHECK(state IN (1, 2, 3)),"
  "  created_ms INTEGER NOT NULL,"
  "  updated_ms INTEGER NOT NULL,"
  "  first_response_due_ms INTEGER NOT NULL DEFAULT 0,"
  "  resolution_due_ms INTEGER NOT NULL DEFAULT 0,"
  "  first_response_ms INTEGER NOT NULL DEFAULT 0,"
  "  resolved_ms INTEGER NOT NULL DEFAULT 0"
  ") STRICT;"
  "CREATE INDEX tickets_state_assignee ON tickets(state, assignee);"
  "CREATE INDEX tickets_device ON tickets(device);"
  "CREATE TABLE ticket_events("
  "  id INTEGER PRIMARY KEY,"
  "  ticket INTEGER NOT NULL REFERENCES tickets(id),"
  "  ts_ms INTEGER NOT NULL,"
  "  actor TEXT NOT NULL DEFAULT '',"
  "  kind TEXT NOT NULL CHECK(kind <> ''),"
  "  text TEXT NOT NULL DEFAULT ''"
  ") STRICT;"
  "CREATE INDEX ticket_events_ticket ON ticket_events(ticket, id);"
  "CREATE TRIGGER ticket_events_no_update BEFORE UPDATE ON ticket_events"
  "  BEGIN SELECT RAISE(ABORT, 'ticket_events is append-only'); END;"
  "CREATE TRIGGER ticket_events_no_delete BEFORE DELETE ON ticket_events"
  "  BEGIN SELECT RAISE(ABORT, 'ticket_events is append-only'); END;"
  "PRAGMA user_version = 2;",
  /* 3: sessions (consented grants) and their shell recordings; who opened each ticket,
   * taken for older tickets from their "created" event. A session or recording row is
   * written once and then only ended: the end columns move from 0 exactly once. Recording
   * ids name files, so they are never reused (AUTOINCREMENT). */
  "ALTER TABLE tickets ADD COLUMN created_by TEXT NOT NULL DEFAULT '';"
  "UPDATE tickets SET created_by = coalesce((SELECT e.actor FROM ticket_events e"
  "  WHERE e.ticket = tickets.id AND e.kind = 'created' ORDER BY e.id LIMIT 1), '');"
  "CREATE TABLE sessions("
  "  id INTEGER PRIMARY KEY,"
  "  ticket INTEGER NOT NULL REFERENCES tickets(id),"
  "  device TEXT NOT NULL CHECK(device <> ''),"
  "  person TEXT NOT NULL CHECK(person <> ''),"
  "  access INTEGER NOT NULL CHECK(access BETWEEN 1 AND 7),"
  "  started_ms INTEGER NOT NULL,"
  "  expires_ms INTEGER NOT NULL DEFAULT 0 CHECK(expires_ms >= 0),"
  "  unattended INTEGER NOT NULL DEFAULT 0 CHECK(unattended IN (0, 1)),"
  "  consent_by TEXT NOT NULL DEFAULT '',"
  "  ended_ms INTEGER NOT NULL DEFAULT 0 CHECK(ended_ms >= 0),"
  "  ended_by TEXT NOT NULL DEFAULT '',"
  "  end_reason TEXT NOT NULL DEFAULT ''"
  ") STRICT;"
  "CREATE INDEX sessions_live ON sessions(id) WHERE ended_ms = 0;"
  "CREATE INDEX sessions_ticket ON sessions(ticket);"
  "CREATE TABLE recordings("
  "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
  "  session INTEGER NOT NULL REFERENCES sessions(id),"
  "  ticket INTEGER NOT NULL REFERENCES tickets(id),"
  "  device TEXT NOT NULL,"
  "  person TEXT NOT NULL,"
  "  path TEXT NOT NULL DEFAULT '',"
  "  started_ms INTEGER NOT NULL,"
  "  ended_ms INTEGER NOT NULL DEFAULT 0 CHECK(ended_ms >= 0),"
  "  size INTEGER NOT NULL DEFAULT 0 CHECK(size >= 0),"
  "  sha256 TEXT NOT NULL DEFAULT ''"
  "    CHECK(sha256 = '' OR (length(sha256) = 64 AND NOT sha256 GLOB '*[^0-9a-f]*')),"
  "  failed INTEGER NOT NULL DEFAULT 0 CHECK(failed IN (0, 1))"
  ") STRICT;"
  "CREATE INDEX recordings_session ON recordings(session, id);"
  "PRAGMA user_version = 3;",
  /* 4: signed checkpoints of the audit chain's head (tt/audit.h). The same lines go to a
   * file outside the store; here they are append-only like the audit itself. */
  "CREATE TABLE audit_checkpoints("
  "  id INTEGER PRIMARY KEY,"
  "  entries INTEGER NOT NULL CHECK(entries >= 0),"
  "  head BLOB NOT NULL CHECK(length(head) = 32),"
  "  ts_ms INTEGER NOT NULL,"
  "  line TEXT NOT NULL"
  ") STRICT;"
  "CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints"
  "  BEGIN SELECT RAISE(ABORT, 'audit_checkpoints is append-only'); END;"
  "CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints"
  "  BEGIN SELECT RAISE(ABORT, 'audit_checkpoints is append-only'); END;"
  "PRAGMA user_version = 4;",
  /* 5: the people the broker knows (technicians and admins), so that a ticket is only ever
   * given to someone real. Names are what tt_name_valid allows; roles are tt_role_t's
   * technician (2) and admin (3). first_seen_ms 0 = added by an admin, never connected.
   * Revocations stay in their own table. People who connected before this step are taken
   * from the audit's connect entries, whose detail carries the role (the newest entry's
   * role wins); an entry that is not JSON, or a name the check refuses, is skipped, never
   * fatal. */
  "CREATE TABLE people("
  "  name TEXT PRIMARY KEY NOT NULL"
  "    CHECK(length(name) BETWEEN 1 AND 64 AND NOT name GLOB '*[^A-Za-z0-9._@-]*'),"
  "  role INTEGER NOT NULL CHECK(role IN (2, 3)),"
  "  first_seen_ms INTEGER NOT NULL DEFAULT 0 CHECK(first_seen_ms >= 0),"
  "  last_seen_ms INTEGER NOT NULL DEFAULT 0 CHECK(last_seen_ms >= first_seen_ms),"
  "  added_by TEXT NOT NULL DEFAULT '',"
  "  added_ms INTEGER NOT NULL DEFAULT 0 CHECK(added_ms >= 0),"
  "  note TEXT NOT NULL DEFAULT ''"
  ") STRICT;"
  "INSERT OR IGNORE INTO people(name, role, first_seen_ms, last_seen_ms)"
  "  SELECT actor, CASE role WHEN 'admin' THEN 3 ELSE 2 END, first_ms, ts_ms FROM ("
  "    SELECT actor, role, ts_ms, min(ts_ms) OVER (PARTITION BY actor) AS first_ms,"
  "      row_number() OVER (PARTITION BY actor ORDER BY ts_ms DESC, id DESC) AS newest FROM ("
  "        SELECT id, actor, ts_ms,"
  "          CASE WHEN json_valid(detail) THEN json_extract(detail, '$.role') END AS role"
  "        FROM audit WHERE action = 'connect')"
  "    WHERE role IN ('technician', 'admin'))"
  "  WHERE newest = 1;"
  "PRAGMA user_version = 5;",
  /* 6: device inventory (inventory.c). A version is one arrival of changes; inv_tables holds
   * only the tables that changed in it, their canonical JSON zstd-compressed (body last, so
   * reading a hash never touches a body's pages). A removed table is a row with no sha256
   * and no body. UNIQUE(device, name, version DESC) serves every read of tables as a seek:
   * the newest row of a name at or before a version is the first the index meets. Versions
   * are found by device in id order (history) and in received order (a version at a time).
   * No foreign keys: an erase deletes by device, and a key on version would need one more
   * index to delete a version at all. The literals are store.h's limits (inventory.c checks
   * they agree): 64-byte device ids, [a-z0-9_]{1,63} names, 4 MiB bodies, 4160-byte lists. */
  "CREATE TABLE inv_versions("
  "  id INTEGER PRIMARY KEY,"
  "  device TEXT NOT NULL CHECK(length(CAST(device AS BLOB)) BETWEEN 1 AND 64),"
  "  collected_ms INTEGER NOT NULL CHECK(collected_ms >= 0),"
  "  received_ms INTEGER NOT NULL CHECK(received_ms >= 0),"
  "  changed TEXT NOT NULL CHECK(length(changed) BETWEEN 1 AND 4160)"
  ") STRICT;"
  "CREATE INDEX inv_versions_device ON inv_versions(device);"
  "CREATE INDEX inv_versions_received ON inv_versions(device, received_ms);"
  "CREATE TABLE inv_tables("
  "  id INTEGER PRIMARY KEY,"
  "  device TEXT NOT NULL CHECK(length(CAST(device AS BLOB)) BETWEEN 1 AND 64),"
  "  name TEXT NOT NULL CHECK(length(name) BETWEEN 1 AND 63 AND NOT name GLOB '*[^a-z0-9_]*'),"
  "  version INTEGER NOT NULL CHECK(version > 0),"
  "  sha256 BLOB CHECK(sha256 IS NULL OR length(sha256) = 32),"
  "  size INTEGER NOT NULL,"
  "  body BLOB,"
  "  CHECK(CASE WHEN body IS NULL THEN sha256 IS NULL AND size = 0"
  "        ELSE sha256 IS NOT NULL AND size BETWEEN 1 AND 4194304 END),"
  "  UNIQUE(device, name, version DESC)"
  ") STRICT;"
  "PRAGMA user_version = 6;",
  /* 7: diagnostics reports kept on a ticket (diag.c, `tether diag --attach`): the report as
   * the device sent it through the broker, zstd-compressed, with its sha256 (hex) and size.
   * Found by id (D-n) and by ticket. */
  "CREATE TABLE diag_reports("
  "  id INTEGER PRIMARY KEY,"
  "  ticket INTEGER NOT NULL CHECK(ticket > 0),"
  "  session INTEGER NOT NULL CHECK(session > 0),"
  "  device TEXT NOT NULL CHECK(length(device) BETWEEN 1 AND 64),"
  "  person TEXT NOT NULL CHECK(length(person) BETWEEN 1 AND 64),"
  "  taken_ms INTEGER NOT NULL CHECK(taken_ms > 0),"
  "  size INTEGER NOT NULL CHECK(size BETWEEN 1 AND 16777216),"
  "  sha256 TEXT NOT NULL CHECK(length(sha256) = 64 AND NOT sha256 GLOB '*[^0-9a-f]*'),"
  "  body BLOB NOT NULL"
  ") STRICT;"
  "CREATE INDEX diag_reports_ticket ON diag_reports(ticket, id);"
  "PRAGMA user_version = 7;",
  /* 8: asset records, the admins' push (assets.c, `tether inventory import`), and the facts
   * they are joined with. asset_records: Snipe-IT's columns, one row per asset tag (unique
   * whatever its case), with the key its import chose (match_kind 0 serial, 1 hostname, 2 mac,
   * 3 asset tag only) and that key's value, normalised; which device a record belongs to is
   * worked out when it is read, so a row imported before its device enrolled joins it once the
   * device reports that serial, hostname or MAC. Columns a file adds are asset_custom rows.
   * inv_facts and inv_macs: what the latest inventory says (system_info, os_version,
   * memory_info, mounts, interface_details), kept up to date by each inventory put (version 0:
   * to be computed at the next open, as for every device whose inventory predates this step).
   * The indexes serve the match keys and `devices --where`. Literals: store.h's STORE_ASSET_*
   * (assets.c checks they agree). */
  "CREATE TABLE asset_records("
  "  tag TEXT PRIMARY KEY NOT NULL COLLATE NOCASE CHECK(length(CAST(tag AS BLOB)) BETWEEN 1 AND 128),"
  "  name TEXT NOT NULL DEFAULT '' COLLATE NOCASE CHECK(length(CAST(name AS BLOB)) <= 2048),"
  "  serial TEXT NOT NULL DEFAULT '' COLLATE NOCASE CHECK(length(CAST(serial AS BLOB)) <= 2048),"
  "  model TEXT NOT NULL DEFAULT '' COLLATE NOCASE CHECK(length(CAST(model AS BLOB)) <= 2048),"
  "  manufacturer TEXT NOT NULL DEFAULT '' COLLATE NOCASE CHECK(length(CAST(manufacturer AS BLOB)) <= 2048),"
  "  category TEXT NOT NULL DEFAULT '' COLLATE NOCASE CHECK(length(CAST(category AS BLOB)) <= 2048),"
  "  location TEXT NOT NULL DEFAULT '' COLLATE NOCASE CHECK(length(CAST(location AS BLOB)) <= 2048),"
  "  department TEXT NOT NULL DEFAULT '' COLLATE NOCASE CHECK(length(CAST(department AS BLOB)) <= 2048),"
  "  owner TEXT NOT NULL DEFAULT '' COLLATE NOCASE CHECK(length(CAST(owner AS BLOB)) <= 2048),"
  "  purchase_date TEXT NOT NULL DEFAULT '' CHECK(length(CAST(purchase_date AS BLOB)) <= 2048),"
  "  warranty_months TEXT NOT NULL DEFAULT ''"
  "    CHECK(length(warranty_months) <= 4 AND NOT warranty_months GLOB '*[^0-9]*'),"
  "  notes TEXT NOT NULL DEFAULT '' CHECK(length(CAST(notes AS BLOB)) <= 2048),"
  "  match_kind INTEGER NOT NULL CHECK(match_kind BETWEEN 0 AND 3),"
  "  match_value TEXT NOT NULL DEFAULT '' CHECK(length(CAST(match_value AS BLOB)) <= 2048),"
  "  updated_ms INTEGER NOT NULL CHECK(updated_ms >= 0),"
  "  updated_by TEXT NOT NULL DEFAULT '' CHECK(length(CAST(updated_by AS BLOB)) <= 64)"
  ") STRICT;"
  "CREATE INDEX asset_records_match ON asset_records(match_kind, match_value) WHERE match_value <> '';"
  "CREATE INDEX asset_records_owner ON asset_records(owner);"
  "CREATE INDEX asset_records_department ON asset_records(department);"
  "CREATE INDEX asset_records_location ON asset_records(location);"
  "CREATE INDEX asset_records_model ON asset_records(model);"
  "CREATE INDEX asset_records_manufacturer ON asset_records(manufacturer);"
  "CREATE INDEX asset_records_category ON asset_records(category);"
  "CREATE INDEX asset_records_serial ON asset_records(serial);"
  "CREATE TABLE asset_custom("
  "  tag TEXT NOT NULL COLLATE NOCASE REFERENCES asset_records(tag) ON DELETE CASCADE,"
  "  name TEXT NOT NULL COLLATE NOCASE CHECK(length(CAST(name AS BLOB)) BETWEEN 1 AND 128),"
  "  value TEXT NOT NULL COLLATE NOCASE CHECK(length(CAST(value AS BLOB)) BETWEEN 1 AND 2048),"
  "  PRIMARY KEY(tag, name)"
  ") STRICT, WITHOUT ROWID;"
  "CREATE INDEX asset_custom_value ON asset_custom(name, value);"
  "CREATE TABLE inv_facts("
  "  device TEXT PRIMARY KEY NOT NULL CHECK(length(CAST(device AS BLOB)) BETWEEN 1 AND 64),"
  "  version INTEGER NOT NULL CHECK(version >= 0),"
  "  serial TEXT NOT NULL DEFAULT '' CHECK(length(CAST(serial AS BLOB)) <= 256),"
  "  serial_key TEXT NOT NULL DEFAULT '' CHECK(length(CAST(serial_key AS BLOB)) <= 256),"
  "  os TEXT NOT NULL DEFAULT '' CHECK(length(CAST(os AS BLOB)) <= 256),"
  "  cpu TEXT NOT NULL DEFAULT '' CHECK(length(CAST(cpu AS BLOB)) <= 256),"
  "  memory INTEGER NOT NULL DEFAULT 0 CHECK(memory >= 0),"
  "  disk INTEGER NOT NULL DEFAULT 0 CHECK(disk >= 0)"
  ") STRICT;"
  "CREATE INDEX inv_facts_serial ON inv_facts(serial_key) WHERE serial_key <> '';"
  "CREATE INDEX inv_facts_stale ON inv_facts(device) WHERE version = 0;"
  "CREATE TABLE inv_macs("
  "  device TEXT NOT NULL CHECK(length(CAST(device AS BLOB)) BETWEEN 1 AND 64),"
  "  mac TEXT NOT NULL CHECK(length(mac) = 17 AND NOT mac GLOB '*[^0-9a-f:]*'),"
  "  PRIMARY KEY(mac, device)"
  ") STRICT, WITHOUT ROWID;"
  "CREATE INDEX inv_macs_device ON inv_macs(device);"
  "CREATE INDEX devices_hostname_key ON devices(lower(hostname));"
  "INSERT INTO inv_facts(device, version) SELECT DISTINCT device, 0 FROM inv_versions;"
  "PRAGMA user_version = 8;",
  /* 9: the find index's first layout, which ran briefly on main before it counted its rows'
   * references and bounded each device's share; step 10 replaces it whole, so this step is
   * left a marker and a store at 9, of either layout, is rebuilt by 10. */
  "PRAGMA user_version = 9;",
  /* 10: the index of current rows that `inventory find` reads (inventory_find.c). Each
   * table's distinct rows once (inv_rows, a JSON object per row, with the count of base and
   * plus postings that hold it: a row nobody holds is deleted); devices by a small number
   * (inv_devs, with the rows and bytes the device's tables take in the index, which
   * STORE_INV_DEVICE_INDEX_ROWS_MAX and _BYTES_MAX bound), so that postings carry one to three
   * bytes, not a 36-byte id. A device's current table is a shared row set (inv_bases, its rows
   * inverted in inv_base_rows) plus the rows it has beyond it (inv_plus, inverted: a row's
   * devices are one range) and minus those it lacks (a blob in inv_cur, read per candidate,
   * and in device order per table when a find matches too many rows to merge their lists): a
   * fleet of one image costs a few hundred postings per device instead of a posting per row.
   * Whatever index step 9 left is dropped first. Tables current before this step are listed in
   * inv_find_todo and indexed at the next open (their bodies are compressed: SQL cannot
   * read them). Literals: 64-byte device ids, [a-z0-9_]{1,63} names, 16384-byte rows. */
  "DROP TABLE IF EXISTS inv_rows;"
  "DROP TABLE IF EXISTS inv_devs;"
  "DROP TABLE IF EXISTS inv_bases;"
  "DROP TABLE IF EXISTS inv_base_rows;"
  "DROP TABLE IF EXISTS inv_cur;"
  "DROP TABLE IF EXISTS inv_plus;"
  "DROP TABLE IF EXISTS inv_find_todo;"
  "CREATE TABLE inv_rows("
  "  id INTEGER PRIMARY KEY,"
  "  tbl TEXT NOT NULL CHECK(length(tbl) BETWEEN 1 AND 63 AND NOT tbl GLOB '*[^a-z0-9_]*'),"
  "  row TEXT NOT NULL CHECK(length(CAST(row AS BLOB)) BETWEEN 2 AND 16384),"
  "  refs INTEGER NOT NULL DEFAULT 0 CHECK(refs >= 0),"
  "  UNIQUE(tbl, row)"
  ") STRICT;"
  "CREATE TABLE inv_devs("
  "  id INTEGER PRIMARY KEY,"
  "  device TEXT NOT NULL UNIQUE CHECK(length(CAST(device AS BLOB)) BETWEEN 1 AND 64),"
  "  rows INTEGER NOT NULL DEFAULT 0 CHECK(rows >= 0),"
  "  bytes INTEGER NOT NULL DEFAULT 0 CHECK(bytes >= 0)"
  ") STRICT;"
  "CREATE TABLE inv_bases("
  "  id INTEGER PRIMARY KEY,"
  "  tbl TEXT NOT NULL CHECK(length(tbl) BETWEEN 1 AND 63 AND NOT tbl GLOB '*[^a-z0-9_]*'),"
  "  users INTEGER NOT NULL CHECK(users >= 0),"
  "  rows BLOB NOT NULL"
  ") STRICT;"
  "CREATE INDEX inv_bases_tbl ON inv_bases(tbl);"
  "CREATE TABLE inv_base_rows("
  "  row INTEGER NOT NULL,"
  "  base INTEGER NOT NULL,"
  "  PRIMARY KEY(row, base)"
  ") STRICT, WITHOUT ROWID;"
  "CREATE TABLE inv_cur("
  "  tbl TEXT NOT NULL CHECK(length(tbl) BETWEEN 1 AND 63 AND NOT tbl GLOB '*[^a-z0-9_]*'),"
  "  dev INTEGER NOT NULL,"
  "  base INTEGER NOT NULL CHECK(base >= 0),"
  "  plus BLOB NOT NULL,"
  "  minus BLOB NOT NULL,"
  "  rows INTEGER NOT NULL CHECK(rows >= 0),"
  "  bytes INTEGER NOT NULL CHECK(bytes >= 0),"
  "  PRIMARY KEY(tbl, dev)"
  ") STRICT, WITHOUT ROWID;"
  "CREATE INDEX inv_cur_base ON inv_cur(base, dev);"
  "CREATE TABLE inv_plus("
  "  row INTEGER NOT NULL,"
  "  dev INTEGER NOT NULL,"
  "  PRIMARY KEY(row, dev)"
  ") STRICT, WITHOUT ROWID;"
  "CREATE TABLE inv_find_todo("
  "  device TEXT NOT NULL,"
  "  name TEXT NOT NULL,"
  "  PRIMARY KEY(device, name)"
  ") STRICT, WITHOUT ROWID;"
  "INSERT INTO inv_find_todo(device, name)"
  "  SELECT device, name FROM inv_tables t WHERE body IS NOT NULL AND version ="
  "    (SELECT max(version) FROM inv_tables u WHERE u.device = t.device AND u.name = t.name);"
  "PRAGMA user_version = 10;",
  /* 11: help that comes to the help desk (help.c). A ticket says where it came from and, for
   * a member of a storm, its parent; an employee's help request keeps its nonce, so a resend
   * after a lost answer finds the ticket it opened, and its time, so a device's requests in
   * the last hour are counted from the store (a reconnect resets nothing). A diagnostics
   * report may now be taken at the employee's request, with no session (0): diag_reports is
   * made again with that CHECK (SQLite cannot change a constraint in place). */
  "ALTER TABLE tickets ADD COLUMN source TEXT NOT NULL DEFAULT 'technician'"
  "  CHECK(source IN ('technician', 'employee', 'check', 'storm'));"
  "ALTER TABLE tickets ADD COLUMN parent INTEGER NOT NULL DEFAULT 0 CHECK(parent >= 0);"
  "CREATE INDEX tickets_parent ON tickets(parent) WHERE parent > 0;"
  "CREATE INDEX tickets_requester ON tickets(device, requester, id);"
  "CREATE TABLE help_requests("
  "  id INTEGER PRIMARY KEY,"
  "  device TEXT NOT NULL CHECK(length(device) BETWEEN 1 AND 64),"
  "  nonce BLOB NOT NULL CHECK(length(nonce) = 16),"
  "  user TEXT NOT NULL CHECK(length(user) BETWEEN 1 AND 64),"
  "  ticket INTEGER NOT NULL REFERENCES tickets(id),"
  "  asked_ms INTEGER NOT NULL CHECK(asked_ms >= 0),"
  "  received_ms INTEGER NOT NULL CHECK(received_ms > 0),"
  "  UNIQUE(device, nonce)"
  ") STRICT;"
  "CREATE INDEX help_requests_recent ON help_requests(device, received_ms);"
  "CREATE TABLE diag_reports_11("
  "  id INTEGER PRIMARY KEY,"
  "  ticket INTEGER NOT NULL CHECK(ticket > 0),"
  "  session INTEGER NOT NULL CHECK(session >= 0),"
  "  device TEXT NOT NULL CHECK(length(device) BETWEEN 1 AND 64),"
  "  person TEXT NOT NULL CHECK(length(person) BETWEEN 1 AND 64),"
  "  taken_ms INTEGER NOT NULL CHECK(taken_ms > 0),"
  "  size INTEGER NOT NULL CHECK(size BETWEEN 1 AND 16777216),"
  "  sha256 TEXT NOT NULL CHECK(length(sha256) = 64 AND NOT sha256 GLOB '*[^0-9a-f]*'),"
  "  body BLOB NOT NULL"
  ") STRICT;"
  "INSERT INTO diag_reports_11 SELECT id, ticket, session, device, person, taken_ms, size, sha256, body"
  "  FROM diag_reports;"
  "DROP TABLE diag_reports;"
  "ALTER TABLE diag_reports_11 RENAME TO diag_reports;"
  "CREATE INDEX diag_reports_ticket ON diag_reports(ticket, id);"
  "PRAGMA user_version = 11;",
  /* 12: the knowledge base (kb.c) and people's support levels. An article's id is KB-<id>,
   * never reused (AUTOINCREMENT: a ticket's link or an old note keeps naming the same
   * article). kb_checks: the health checks an article is the fix for; kb_links: which
   * tickets it solved, who linked it and when. kb_fts indexes title and body with the
   * articles as its external content: kb.c writes both in the same transaction. Porter
   * over unicode61 (diacritics folded): "dropping" finds "drops", "cafe" finds "café".
   * people.level: 1..3, an admin's mark; level 3 technicians may write articles.
   * Literals: 256-byte titles (TT_TEXT_MAX), 64 KiB bodies (TT_KB_BODY_MAX), check names
   * [a-z0-9_]{1,63}, 64-byte names (kb.c checks they agree). */
  "ALTER TABLE people ADD COLUMN level INTEGER NOT NULL DEFAULT 1 CHECK(level BETWEEN 1 AND 3);"
  "CREATE TABLE kb_articles("
  "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
  "  title TEXT NOT NULL CHECK(length(CAST(title AS BLOB)) BETWEEN 1 AND 256),"
  "  body TEXT NOT NULL CHECK(length(CAST(body AS BLOB)) BETWEEN 1 AND 65536),"
  "  author TEXT NOT NULL CHECK(length(CAST(author AS BLOB)) BETWEEN 1 AND 64),"
  "  created_ms INTEGER NOT NULL CHECK(created_ms >= 0),"
  "  updated_ms INTEGER NOT NULL CHECK(updated_ms >= 0),"
  "  updated_by TEXT NOT NULL CHECK(length(CAST(updated_by AS BLOB)) BETWEEN 1 AND 64)"
  ") STRICT;"
  "CREATE TABLE kb_checks("
  "  article INTEGER NOT NULL REFERENCES kb_articles(id) ON DELETE CASCADE,"
  "  name TEXT NOT NULL CHECK(length(name) BETWEEN 1 AND 63 AND NOT name GLOB '*[^a-z0-9_]*'),"
  "  PRIMARY KEY(article, name)"
  ") STRICT, WITHOUT ROWID;"
  "CREATE INDEX kb_checks_name ON kb_checks(name, article);"
  "CREATE TABLE kb_links("
  "  ticket INTEGER NOT NULL REFERENCES tickets(id),"
  "  article INTEGER NOT NULL REFERENCES kb_articles(id),"
  "  linked_by TEXT NOT NULL CHECK(length(CAST(linked_by AS BLOB)) BETWEEN 1 AND 64),"
  "  linked_ms INTEGER NOT NULL CHECK(linked_ms >= 0),"
  "  PRIMARY KEY(ticket, article)"
  ") STRICT, WITHOUT ROWID;"
  "CREATE INDEX kb_links_article ON kb_links(article, ticket);"
  "CREATE VIRTUAL TABLE kb_fts USING fts5(title, body, content='kb_articles', content_rowid='id',"
  "  tokenize='porter unicode61 remove_diacritics 2');"
  "PRAGMA user_version = 12;",
  /* 13: health checks, alerts and policy (alerts.c, policy.c). The latest result of each
   * (device, check, dimension) for `tether checks` (seen_ms: the report that last named it,
   * so a full report can drop what the agent no longer runs); the policy version each agent
   * runs; one alert row per (device, check, dimension) for good (its state cycles, raised
   * counts the failures); the open storm of a check; admins' policy settings per group with
   * one version over all; maintenance windows (a group or one device). */
  "CREATE TABLE check_results("
  "  device TEXT NOT NULL CHECK(length(device) BETWEEN 1 AND 64),"
  "  name TEXT NOT NULL CHECK(length(name) BETWEEN 1 AND 64),"
  "  dimension TEXT NOT NULL CHECK(length(dimension) <= 256),"
  "  state INTEGER NOT NULL CHECK(state BETWEEN 0 AND 3),"
  "  last INTEGER NOT NULL CHECK(last BETWEEN 0 AND 3),"
  "  value TEXT NOT NULL CHECK(length(value) <= 256),"
  "  threshold TEXT NOT NULL CHECK(length(threshold) <= 256),"
  "  message TEXT NOT NULL CHECK(length(message) <= 256),"
  "  since_ms INTEGER NOT NULL,"
  "  run_ms INTEGER NOT NULL,"
  "  streak INTEGER NOT NULL CHECK(streak >= 0),"
  "  seen_ms INTEGER NOT NULL,"
  "  PRIMARY KEY(device, name, dimension)"
  ") STRICT, WITHOUT ROWID;"
  "CREATE TABLE check_agents("
  "  device TEXT PRIMARY KEY CHECK(length(device) BETWEEN 1 AND 64),"
  "  policy_version INTEGER NOT NULL CHECK(policy_version >= 0),"
  "  reported_ms INTEGER NOT NULL"
  ") STRICT, WITHOUT ROWID;"
  "CREATE TABLE alerts("
  "  id INTEGER PRIMARY KEY,"
  "  device TEXT NOT NULL CHECK(length(device) BETWEEN 1 AND 64),"
  "  name TEXT NOT NULL CHECK(length(name) BETWEEN 1 AND 64),"
  "  dimension TEXT NOT NULL CHECK(length(dimension) <= 256),"
  "  state INTEGER NOT NULL CHECK(state BETWEEN 1 AND 5),"
  "  opened_ms INTEGER NOT NULL,"
  "  last_ms INTEGER NOT NULL,"
  "  resolved_ms INTEGER NOT NULL CHECK(resolved_ms >= 0),"
  "  value TEXT NOT NULL CHECK(length(value) <= 256),"
  "  threshold TEXT NOT NULL CHECK(length(threshold) <= 256),"
  "  ticket INTEGER NOT NULL CHECK(ticket >= 0),"
  "  storm INTEGER NOT NULL CHECK(storm >= 0),"
  "  acked_by TEXT NOT NULL CHECK(length(acked_by) <= 64),"
  "  snoozed_until_ms INTEGER NOT NULL CHECK(snoozed_until_ms >= 0),"
  "  raised INTEGER NOT NULL CHECK(raised >= 0),"
  "  suppressed INTEGER NOT NULL CHECK(suppressed >= 0),"
  "  UNIQUE(device, name, dimension)"
  ") STRICT;"
  "CREATE INDEX alerts_check ON alerts(name, state, opened_ms);"
  "CREATE INDEX alerts_ticket ON alerts(ticket) WHERE ticket > 0;"
  "CREATE INDEX alerts_storm ON alerts(storm) WHERE storm > 0;"
  "CREATE INDEX alerts_state ON alerts(state, id);"
  "CREATE TABLE storms("
  "  name TEXT PRIMARY KEY CHECK(length(name) BETWEEN 1 AND 64),"
  "  ticket INTEGER NOT NULL CHECK(ticket > 0),"
  "  opened_ms INTEGER NOT NULL"
  ") STRICT, WITHOUT ROWID;"
  "CREATE TABLE policy("
  "  grp TEXT NOT NULL CHECK(length(grp) BETWEEN 1 AND 2048),"
  "  key TEXT NOT NULL CHECK(length(key) BETWEEN 1 AND 128),"
  "  value TEXT NOT NULL CHECK(length(value) <= 1024),"
  "  set_by TEXT NOT NULL CHECK(length(set_by) <= 64),"
  "  set_ms INTEGER NOT NULL,"
  "  PRIMARY KEY(grp, key)"
  ") STRICT, WITHOUT ROWID;"
  "CREATE TABLE policy_version("
  "  one INTEGER PRIMARY KEY CHECK(one = 1),"
  "  version INTEGER NOT NULL CHECK(version >= 1)"
  ") STRICT;"
  "INSERT INTO policy_version(one, version) VALUES(1, 1);"
  "CREATE TABLE maintenance("
  "  id INTEGER PRIMARY KEY,"
  "  grp TEXT NOT NULL CHECK(length(grp) <= 2048),"
  "  device TEXT NOT NULL CHECK(length(device) <= 64),"
  "  start_ms INTEGER NOT NULL,"
  "  end_ms INTEGER NOT NULL,"
  "  reason TEXT NOT NULL CHECK(length(reason) <= 256),"
  "  set_by TEXT NOT NULL CHECK(length(set_by) <= 64),"
  "  CHECK(end_ms > start_ms),"
  "  CHECK((grp = '') <> (device = ''))"
  ") STRICT;"
  "CREATE INDEX maintenance_end ON maintenance(end_ms);"
  "PRAGMA user_version = 13;",
  /* 14: each device's check reports counted per minute in the store (a reconnect must not
   * reset the limit). */
  "ALTER TABLE check_agents ADD COLUMN window_ms INTEGER NOT NULL DEFAULT 0;"
  "ALTER TABLE check_agents ADD COLUMN reports INTEGER NOT NULL DEFAULT 0 CHECK(reports >= 0);"
  "PRAGMA user_version = 14;",
  /* 15: ssh public keys people log in to the ssh gateway with (people.c). The fingerprint is
   * ssh-keygen's "SHA256:" and 43 base64 characters; a key belongs to one known person and
   * goes with them; removing a key deletes its row (the audit keeps what it was). */
  "CREATE TABLE ssh_keys("
  "  fingerprint TEXT PRIMARY KEY NOT NULL CHECK(length(fingerprint) = 50 AND fingerprint GLOB 'SHA256:*'),"
  "  person TEXT NOT NULL REFERENCES people(name) ON DELETE CASCADE,"
  "  type TEXT NOT NULL CHECK(type IN ('ssh-ed25519', 'ecdsa-sha2-nistp256', 'ecdsa-sha2-nistp384',"
  "    'ecdsa-sha2-nistp521', 'ssh-rsa')),"
  "  bits INTEGER NOT NULL CHECK(bits > 0),"
  "  line TEXT NOT NULL CHECK(length(line) BETWEEN 1 AND 4096),"
  "  comment TEXT NOT NULL DEFAULT '',"
  "  added_ms INTEGER NOT NULL CHECK(added_ms >= 0),"
  "  added_by TEXT NOT NULL"
  ") STRICT;"
  "CREATE INDEX ssh_keys_person ON ssh_keys(person, added_ms);"
  "PRAGMA user_version = 15;",
  /* 16: audit format 2 (tt/audit.h): an entry's values are referenced, not hashed in. Each
   * value's salt and digest live in audit_values; the chain hashes digests, so erasing a
   * person rewrites their values and destroys those salts without breaking it. Entries written
   * before are format 1 until the broker re-hashes the chain once (audit.c, at start). The
   * audit is still append-only, except inside the store's own erase and rechain transactions,
   * which open audit_gate for their writes and close it before they commit. */
  "ALTER TABLE audit ADD COLUMN format INTEGER NOT NULL DEFAULT 1 CHECK(format IN (1, 2));"
  "CREATE TABLE audit_values("
  "  entry INTEGER NOT NULL,"
  "  n INTEGER NOT NULL CHECK(n BETWEEN 0 AND 15),"
  "  salt BLOB CHECK(salt IS NULL OR length(salt) = 16),"
  "  digest BLOB NOT NULL CHECK(length(digest) = 32),"
  "  erased INTEGER NOT NULL DEFAULT 0,"
  "  PRIMARY KEY(entry, n)"
  ") STRICT, WITHOUT ROWID;"
  "CREATE TABLE audit_gate(one INTEGER PRIMARY KEY CHECK(one = 1), open INTEGER NOT NULL) STRICT;"
  "INSERT INTO audit_gate VALUES(1, 0);"
  "DROP TRIGGER audit_no_update;"
  "DROP TRIGGER audit_no_delete;"
  "CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit WHEN (SELECT open FROM audit_gate) = 0"
  "  BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END;"
  "CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit WHEN (SELECT open FROM audit_gate) = 0"
  "  BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END;"
  "CREATE TRIGGER audit_values_no_update BEFORE UPDATE ON audit_values WHEN (SELECT open FROM audit_gate) = 0"
  "  BEGIN SELECT RAISE(ABORT, 'audit_values is append-only'); END;"
  "CREATE TRIGGER audit_values_no_delete BEFORE DELETE ON audit_values WHEN (SELECT open FROM audit_gate) = 0"
  "  BEGIN SELECT RAISE(ABORT, 'audit_values is append-only'); END;"
  "PRAGMA user_version = 16;",
  /* 17: the SIEM forwarder's cursor per collector (records/siem.c): the last audit entry the
   * collector's TCP acknowledged. A new target starts from the first entry. */
  "CREATE TABLE siem_cursor("
  "  target TEXT PRIMARY KEY NOT NULL CHECK(length(target) BETWEEN 1 AND 300),"
  "  seq INTEGER NOT NULL CHECK(seq >= 0),"
  "  updated_ms INTEGER NOT NULL"
  ") STRICT;"
  "PRAGMA user_version = 17;",
  /* 18: retention (records/retention.c): how long each class of record is kept (a row per
   * class an admin set; the rest take their defaults), tickets on hold (their records outlive
   * retention), recordings whose file retention deleted, and where the pruned audit now
   * starts (a signed tether-audit-cut line says what went; this row is where pruning goes on). */
  "CREATE TABLE retention("
  "  class TEXT PRIMARY KEY NOT NULL,"
  "  keep_ms INTEGER NOT NULL CHECK(keep_ms > 0),"
  "  set_by TEXT NOT NULL,"
  "  set_ms INTEGER NOT NULL"
  ") STRICT;"
  "CREATE TABLE ticket_holds("
  "  ticket INTEGER PRIMARY KEY REFERENCES tickets(id),"
  "  reason TEXT NOT NULL CHECK(length(reason) BETWEEN 1 AND 256),"
  "  held_by TEXT NOT NULL,"
  "  held_ms INTEGER NOT NULL"
  ") STRICT;"
  "ALTER TABLE recordings ADD COLUMN expired_ms INTEGER NOT NULL DEFAULT 0 CHECK(expired_ms >= 0);"
  "CREATE INDEX recordings_started ON recordings(started_ms);"
  "CREATE INDEX diag_reports_taken ON diag_reports(taken_ms);"
  "CREATE TABLE audit_base("
  "  one INTEGER PRIMARY KEY CHECK(one = 1),"
  "  entries INTEGER NOT NULL CHECK(entries >= 0),"
  "  head BLOB NOT NULL CHECK(length(head) = 32),"
  "  ts_ms INTEGER NOT NULL"
  ") STRICT;"
  "PRAGMA user_version = 18;",
  /* 19: a person's erasure and the sweep of closed tickets (records/erase.c, retention.c).
   * The ticket timeline is append-only like the audit, except inside the store's own erase and
   * sweep transactions, which open the same gate; a recording whose file an erasure deleted
   * names that erasure's audit entry; values an erasure released are found by it. */
  "DROP TRIGGER ticket_events_no_update;"
  "DROP TRIGGER ticket_events_no_delete;"
  "CREATE TRIGGER ticket_events_no_update BEFORE UPDATE ON ticket_events WHEN (SELECT open FROM audit_gate) = 0"
  "  BEGIN SELECT RAISE(ABORT, 'ticket_events is append-only'); END;"
  "CREATE TRIGGER ticket_events_no_delete BEFORE DELETE ON ticket_events WHEN (SELECT open FROM audit_gate) = 0"
  "  BEGIN SELECT RAISE(ABORT, 'ticket_events is append-only'); END;"
  "ALTER TABLE recordings ADD COLUMN erased INTEGER NOT NULL DEFAULT 0 CHECK(erased >= 0);"
  "CREATE INDEX audit_values_erased ON audit_values(erased) WHERE erased > 0;"
  "PRAGMA user_version = 19;",
  /* 20: two more retention classes (records/retention.c). A ticket remembers when it was last
   * closed (it expires that long after; one closed before this step takes the time of its last
   * "closed" event, or its last change). A device's inventory history starts at a floor:
   * versions below it are out of history, and their table rows that are still current at the
   * floor stay, with their version rows (a table says when it was received). The indexes find
   * a ticket's recordings and help requests, and a version's table rows, without a scan. */
  "ALTER TABLE tickets ADD COLUMN closed_ms INTEGER NOT NULL DEFAULT 0 CHECK(closed_ms >= 0);"
  "UPDATE tickets SET closed_ms = coalesce((SELECT max(e.ts_ms) FROM ticket_events e"
  "  WHERE e.ticket = tickets.id AND e.kind = 'closed'), updated_ms) WHERE state = 3;"
  "CREATE INDEX tickets_closed ON tickets(closed_ms) WHERE state = 3;"
  "CREATE INDEX recordings_ticket ON recordings(ticket);"
  "CREATE INDEX help_requests_ticket ON help_requests(ticket);"
  "CREATE TABLE inv_floor("
  "  device TEXT PRIMARY KEY NOT NULL CHECK(length(CAST(device AS BLOB)) BETWEEN 1 AND 64),"
  "  version INTEGER NOT NULL CHECK(version > 0)"
  ") STRICT;"
  "CREATE INDEX inv_tables_version ON inv_tables(device, version);"
  "PRAGMA user_version = 20;",
  /* 21: a released audit value's new text is bound too (tt/audit.h): a new salt (in salt) and
   * digest2 over the text it became, which the erasure commits to and the broker signs. */
  ("ALTER TABLE audit_values ADD COLUMN digest2 BLOB CHECK(digest2 IS NULL OR length(digest2) = 32);"
   "PRAGMA user_version = 21;"),
  /* 22: signed agent releases the broker stores and serves (the package files live in
   * DATA_DIR/releases/SHA256.pkg), and rollouts: each device's wave and how its upgrade went. */
  ("CREATE TABLE agent_releases("
   "  sha256 TEXT PRIMARY KEY NOT NULL CHECK(length(sha256) = 64),"
   "  package TEXT NOT NULL, version TEXT NOT NULL, arch TEXT NOT NULL, channel TEXT NOT NULL,"
   "  size INTEGER NOT NULL CHECK(size > 0), downgrade INTEGER NOT NULL CHECK(downgrade IN (0, 1)),"
   "  key TEXT NOT NULL, manifest TEXT NOT NULL, added_by TEXT NOT NULL, added_ms INTEGER NOT NULL,"
   "  UNIQUE(package, version, arch, channel)"
   ") STRICT;"
   "CREATE TABLE rollouts("
   "  id INTEGER PRIMARY KEY,"
   "  version TEXT NOT NULL, channel TEXT NOT NULL, grp TEXT NOT NULL,"
   "  canary_pct INTEGER NOT NULL, wave_pct INTEGER NOT NULL, pause_on INTEGER NOT NULL,"
   "  health_s INTEGER NOT NULL,"
   "  state TEXT NOT NULL CHECK(state IN ('running', 'paused', 'done', 'cancelled')),"
   "  why TEXT NOT NULL DEFAULT '', wave INTEGER NOT NULL DEFAULT 0, waves INTEGER NOT NULL,"
   "  failures INTEGER NOT NULL DEFAULT 0,"
   "  started_by TEXT NOT NULL, started_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL"
   ") STRICT;"
   "CREATE TABLE rollout_devices("
   "  rollout INTEGER NOT NULL REFERENCES rollouts(id), device TEXT NOT NULL,"
   "  wave INTEGER NOT NULL, state TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '',"
   "  from_version TEXT NOT NULL DEFAULT '', done INTEGER NOT NULL DEFAULT 0,"
   "  size INTEGER NOT NULL DEFAULT 0, updated_ms INTEGER NOT NULL,"
   "  PRIMARY KEY(rollout, device)"
   ") STRICT, WITHOUT ROWID;"
   "PRAGMA user_version = 22;"),
};
#define STORE_SCHEMA_LATEST ((int)(sizeof g_migrations / sizeof g_migrations[0]))
_Static_assert(STORE_SCHEMA_LATEST == STORE_SCHEMA_VERSION, "store.h's STORE_SCHEMA_VERSION is the last migration");

static const store_sql_t k_sql[] = {
  /* IMMEDIATE: take the write lock up front so a read-then-write never fails half way. */
  {ST_BEGIN, "BEGIN IMMEDIATE"},
  {ST_COMMIT, "COMMIT"},
  {ST_ROLLBACK, "ROLLBACK"},
  {ST_SAVEPOINT, "SAVEPOINT tx"},
  {ST_RELEASE, "RELEASE tx"},
  {ST_ROLLBACK_TO, "ROLLBACK TO tx"},
};

int store_prepare(broker_store_t *s, const store_sql_t *tab, size_t n) {
  for (size_t i = 0; i < n; i++) {
    int rc = sqlite3_prepare_v3(s->db, tab[i].sql, -1, SQLITE_PREPARE_PERSISTENT, &s->st[tab[i].id], NULL);
    if (rc != SQLITE_OK) {
      TT_ERROR(MOD, "cannot prepare a store statement", "id=%d err=\"%s\"", (int)tab[i].id,
               sqlite3_errmsg(s->db));
      return TT_EIO;
    }
  }
  return 0;
}

int tx_begin(broker_store_t *s) {
  if (s->tx_depth >= 31) return TT_ESTATE; /* our own nesting bug, never a peer's */
  bool outer = sqlite3_get_autocommit(s->db) != 0;
  if (outer) {
    int rc = exec_done(s, ST_BEGIN, "begin");
    if (rc != 0) return rc;
  }
  int rc = exec_done(s, ST_SAVEPOINT, "savepoint");
  if (rc != 0) {
    if (outer) (void)exec_done(s, ST_ROLLBACK, "rollback");
    return rc;
  }
  if (outer) s->tx_outer |= 1u << s->tx_depth;
  else s->tx_outer &= ~(1u << s->tx_depth);
  s->tx_depth++;
  return 0;
}

int tx_commit(broker_store_t *s) {
  if (s->tx_depth == 0) return TT_ESTATE;
  s->tx_depth--;
  bool outer = (s->tx_outer >> s->tx_depth) & 1u;
  int rc = exec_done(s, ST_RELEASE, "release");
  if (rc == 0 && outer) rc = exec_done(s, ST_COMMIT, "commit");
  if (rc != 0 && !sqlite3_get_autocommit(s->db) && outer) (void)exec_done(s, ST_ROLLBACK, "rollback");
  if (rc != 0) store_inv_find_forget(s);
  return rc;
}

void tx_rollback(broker_store_t *s) {
  if (s->tx_depth == 0) return;
  s->tx_depth--;
  bool outer = (s->tx_outer >> s->tx_depth) & 1u;
  /* Rows interned by what is undone must not be found in the cache again. */
  store_inv_find_forget(s);
  if (sqlite3_get_autocommit(s->db)) return; /* SQLite already rolled the whole of it back */
  /* A failure is logged there; the next BEGIN then fails loudly rather than nest. */
  if (exec_done(s, ST_ROLLBACK_TO, "rollback_to") == 0) (void)exec_done(s, ST_RELEASE, "release");
  if (outer) (void)exec_done(s, ST_ROLLBACK, "rollback");
}

/* ---- open and close ------------------------------------------------------------------ */

/* The data directory holds the store and, beside it, keys: only the broker's user may
 * write it. Created 0700 if missing; one that others can write is refused, not repaired. */
static int prepare_dir(const char *dir, char *err, size_t errlen) {
  if (mkdir(dir, 0700) == 0) {
    /* Exactly 0700 whatever the umask, or the broker could lock itself out. */
    if (chmod(dir, 0700) != 0) {
      int e = errno;
      set_err(err, errlen, "cannot chmod 700 data directory %s: %s", dir, strerror(e));
      return -e;
    }
  } else if (errno != EEXIST) {
    int e = errno;
    set_err(err, errlen, "cannot create data directory %s: %s", dir, strerror(e));
    return -e;
  }
  struct stat st;
  if (stat(dir, &st) != 0) {
    int e = errno;
    set_err(err, errlen, "cannot stat data directory %s: %s", dir, strerror(e));
    return -e;
  }
  if (!S_ISDIR(st.st_mode)) {
    set_err(err, errlen, "data directory %s is not a directory", dir);
    return TT_ECONFIG;
  }
  if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
    set_err(err, errlen, "data directory %s is group- or world-writable (mode %03o); "
            "chmod 700 it", dir, (unsigned)(st.st_mode & 0777));
    return TT_ECONFIG;
  }
  return 0;
}

/* The database file must be 0600 whatever the umask (SQLite gives the -wal and -shm files
 * the database file's mode). Only SQLite ever opens these files: closing any other
 * descriptor of them would drop every POSIX lock SQLite holds on them (fcntl locks are per
 * process and file, not per descriptor), after which an outside reader's close deletes the
 * live WAL and acknowledged writes are gone at the next crash. So the mode is checked and
 * set by path, after SQLite has created the file and before the first write. The data
 * directory is 0700, so nobody else could open the file in between. */
static int secure_file(const char *path, char *err, size_t errlen) {
  struct stat st;
  if (lstat(path, &st) != 0) {
    int e = errno;
    set_err(err, errlen, "cannot stat %s: %s", path, strerror(e));
    return -e;
  }
  if (!S_ISREG(st.st_mode)) {
    set_err(err, errlen, "%s is not a regular file", path);
    return TT_ECONFIG;
  }
  if ((st.st_mode & 0777) == 0600) return 0;
  if (chmod(path, 0600) != 0) {
    int e = errno;
    set_err(err, errlen, "cannot chmod 600 %s: %s", path, strerror(e));
    return -e;
  }
  /* SQLite makes a new file with the umask's mode: tightened before its first byte, nothing
   * to warn about. A store that has held data with a looser mode is worth a warning. */
  if ((st.st_mode & 077) != 0 && st.st_size > 0)
    TT_WARN(MOD, "store file mode tightened", "path=%s was=%03o", path, (unsigned)(st.st_mode & 0777));
  return 0;
}

/* One-off statements at open (pragmas, version reads), not worth keeping prepared. */
static int open_query_int(sqlite3 *db, const char *sql, int64_t *out) {
  sqlite3_stmt *st = NULL;
  int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
  if (rc != SQLITE_OK) return rc;
  rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) {
    *out = sqlite3_column_int64(st, 0);
    rc = SQLITE_OK;
  } else if (rc == SQLITE_DONE) {
    rc = SQLITE_ERROR;
  }
  sqlite3_finalize(st);
  return rc;
}

static int open_pragmas(sqlite3 *db, char *err, size_t errlen) {
  /* WAL with synchronous=NORMAL: a commit is in the WAL before COMMIT returns, so a broker
   * killed at any moment (the crash test SIGKILLs) loses nothing it reported as done. The
   * WAL is fsynced only at checkpoints, so an OS crash or power loss may roll back the last
   * few commits; the file is never corrupted either way. FULL would fsync every commit for
   * no gain against the failure we expect (process death). */
  sqlite3_stmt *st = NULL;
  int rc = sqlite3_prepare_v2(db, "PRAGMA journal_mode = WAL", -1, &st, NULL);
  if (rc == SQLITE_OK) {
    rc = sqlite3_step(st);
    const unsigned char *mode = rc == SQLITE_ROW ? sqlite3_column_text(st, 0) : NULL;
    rc = (mode != NULL && strcmp((const char *)mode, "wal") == 0) ? SQLITE_OK : SQLITE_ERROR;
    sqlite3_finalize(st);
  }
  if (rc != SQLITE_OK) {
    set_err(err, errlen, "cannot switch the store to WAL mode: %s", sqlite3_errmsg(db));
    return TT_EIO;
  }
  /* The writer's page cache: 64 MiB, not SQLite's 2. The inventory find index's postings
   * land on pages all over its tables; with 2 MiB each was read back from the OS for every
   * insert (a fleet's load ran 4.0 ms a device instead of 5.3). */
  rc = sqlite3_exec(db,
                    "PRAGMA synchronous = NORMAL;"
                    "PRAGMA foreign_keys = ON;"
                    "PRAGMA secure_delete = OFF;"
                    "PRAGMA cache_size = -65536;",
                    NULL, NULL, NULL);
  if (rc != SQLITE_OK) {
    set_err(err, errlen, "cannot set store pragmas: %s", sqlite3_errmsg(db));
    return TT_EIO;
  }
  return 0;
}

static int open_migrate(broker_store_t *s, char *err, size_t errlen) {
  int64_t v = 0;
  int rc = open_query_int(s->db, "PRAGMA user_version", &v);
  if (rc != SQLITE_OK) {
    set_err(err, errlen, "cannot read the store schema version: %s", sqlite3_errmsg(s->db));
    return TT_EIO;
  }
  if (v > STORE_SCHEMA_LATEST) {
    set_err(err, errlen, "store schema %lld is newer than this broker (%d)", (long long)v,
            STORE_SCHEMA_LATEST);
    return TT_EVERSION;
  }
  if (v < 0) {
    set_err(err, errlen, "store schema version %lld is not valid", (long long)v);
    return TT_EVERSION;
  }
  for (int64_t i = v; i < STORE_SCHEMA_LATEST; i++) {
    int64_t now = 0;
    rc = sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    if (rc == SQLITE_OK) rc = sqlite3_exec(s->db, g_migrations[i], NULL, NULL, NULL);
    if (rc == SQLITE_OK) rc = open_query_int(s->db, "PRAGMA user_version", &now);
    if (rc == SQLITE_OK && now != i + 1) {
      /* A step that forgot its bump is our bug; refuse rather than run it twice later. */
      set_err(err, errlen, "store migration %lld left schema version %lld", (long long)(i + 1),
              (long long)now);
      if (!sqlite3_get_autocommit(s->db)) (void)sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
      return TT_EVERSION;
    }
    if (rc == SQLITE_OK) rc = sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
      set_err(err, errlen, "store migration to schema %lld failed: %s", (long long)(i + 1),
              sqlite3_errmsg(s->db));
      if (!sqlite3_get_autocommit(s->db)) (void)sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
      return TT_EIO;
    }
    TT_INFO(MOD, "store schema migrated", "version=%lld", (long long)(i + 1));
  }
  s->version = STORE_SCHEMA_LATEST;
  return 0;
}

int store_open(broker_store_t **out, const char *data_dir, char *err, size_t errlen) {
  *out = NULL;
  if (err != NULL && errlen > 0) err[0] = '\0';
  char path[4096];
  int n = snprintf(path, sizeof path, "%s/%s", data_dir, STORE_FILE);
  if (n < 0 || (size_t)n >= sizeof path) {
    set_err(err, errlen, "data directory path too long");
    return TT_ECONFIG;
  }
  int rc = prepare_dir(data_dir, err, errlen);
  if (rc != 0) return rc;

  broker_store_t *s = calloc(1, sizeof *s);
  if (s == NULL) {
    set_err(err, errlen, "out of memory");
    return TT_ENOMEM;
  }
  /* NOMUTEX: the store belongs to the loop thread alone. */
  int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX |
              SQLITE_OPEN_NOFOLLOW | SQLITE_OPEN_EXRESCODE;
  int src = sqlite3_open_v2(path, &s->db, flags, NULL);
  if (src != SQLITE_OK) {
    set_err(err, errlen, "cannot open %s: %s", path,
            s->db != NULL ? sqlite3_errmsg(s->db) : sqlite3_errstr(src));
    rc = TT_EIO;
    goto out;
  }
  rc = secure_file(path, err, errlen);
  if (rc != 0) goto out;
  /* Defensive mode forbids writable_schema and friends; an untrusted schema may not call
   * functions with side effects. Neither is something we do; both narrow what a crafted
   * database file could make us do. */
  if (sqlite3_db_config(s->db, SQLITE_DBCONFIG_DEFENSIVE, 1, (int *)NULL) != SQLITE_OK ||
      sqlite3_db_config(s->db, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, (int *)NULL) != SQLITE_OK ||
      sqlite3_busy_timeout(s->db, STORE_BUSY_MS) != SQLITE_OK) {
    set_err(err, errlen, "cannot configure the store connection: %s", sqlite3_errmsg(s->db));
    rc = TT_EIO;
    goto out;
  }
  /* Check the version before the first write, so a newer store is left untouched. */
  rc = open_migrate(s, err, errlen);
  if (rc != 0) goto out;
  rc = open_pragmas(s->db, err, errlen);
  if (rc != 0) goto out;
  rc = store_prepare(s, k_sql, sizeof k_sql / sizeof k_sql[0]);
  if (rc == 0) rc = store_prepare_devices(s);
  if (rc == 0) rc = store_prepare_tokens(s);
  if (rc == 0) rc = store_prepare_audit(s);
  if (rc == 0) rc = store_prepare_tickets(s);
  if (rc == 0) rc = store_prepare_sessions(s);
  if (rc == 0) rc = store_prepare_people(s);
  if (rc == 0) rc = store_prepare_inventory(s);
  if (rc == 0) rc = store_prepare_diag(s);
  if (rc == 0) rc = store_prepare_retention(s);
  if (rc == 0) rc = store_prepare_closed_tickets(s);
  if (rc == 0) rc = store_prepare_person_records(s);
  if (rc == 0) rc = store_prepare_erase(s);
  if (rc == 0) rc = store_prepare_erase_sql(s);
  if (rc == 0) rc = store_prepare_release(s);
  if (rc == 0) rc = store_prepare_help(s);
  if (rc == 0) rc = store_prepare_alerts(s);
  if (rc == 0) rc = store_prepare_policy(s);
  if (rc == 0) rc = store_prepare_assets(s);
  if (rc == 0) rc = store_prepare_kb(s);
  if (rc == 0) rc = store_prepare_rollout(s);
  if (rc != 0) {
    set_err(err, errlen, "cannot prepare the store's statements: %s", sqlite3_errmsg(s->db));
    goto out;
  }
  rc = store_facts_backfill(s);
  if (rc != 0) {
    set_err(err, errlen, "cannot work out the devices' inventory facts: %s", sqlite3_errmsg(s->db));
    goto out;
  }
  rc = store_audit_load_tail(s);
  if (rc != 0) {
    set_err(err, errlen, "cannot read the audit tail: %s", sqlite3_errmsg(s->db));
    goto out;
  }
  rc = store_inv_find_backfill(s);
  if (rc != 0) {
    set_err(err, errlen, "cannot index the stored inventory: %s", tt_strerror(rc));
    goto out;
  }
  *out = s;
  return 0;
out:
  store_close(s);
  return rc;
}

int store_open_ro(broker_store_t **out, const char *data_dir, char *err, size_t errlen) {
  *out = NULL;
  char path[4096];
  int n = snprintf(path, sizeof path, "%s/%s", data_dir, STORE_FILE);
  if (n < 0 || (size_t)n >= sizeof path) {
    set_err(err, errlen, "data directory path too long");
    return TT_ECONFIG;
  }
  broker_store_t *s = calloc(1, sizeof *s);
  if (s == NULL) {
    set_err(err, errlen, "out of memory");
    return TT_ENOMEM;
  }
  int rc = 0;
  int flags = SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_NOFOLLOW | SQLITE_OPEN_EXRESCODE;
  int src = sqlite3_open_v2(path, &s->db, flags, NULL);
  if (src != SQLITE_OK) {
    set_err(err, errlen, "cannot open %s: %s", path, s->db != NULL ? sqlite3_errmsg(s->db) : sqlite3_errstr(src));
    rc = TT_EIO;
    goto out;
  }
  int64_t v = 0;
  if (sqlite3_db_config(s->db, SQLITE_DBCONFIG_DEFENSIVE, 1, (int *)NULL) != SQLITE_OK ||
      sqlite3_db_config(s->db, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, (int *)NULL) != SQLITE_OK ||
      sqlite3_busy_timeout(s->db, STORE_BUSY_MS) != SQLITE_OK ||
      open_query_int(s->db, "PRAGMA user_version", &v) != SQLITE_OK) {
    set_err(err, errlen, "cannot configure the store reader: %s", sqlite3_errmsg(s->db));
    rc = TT_EIO;
    goto out;
  }
  if (v != STORE_SCHEMA_LATEST) {
    set_err(err, errlen, "store schema %lld, this broker reads %d", (long long)v, STORE_SCHEMA_LATEST);
    rc = TT_EVERSION;
    goto out;
  }
  s->version = (int)v;
  rc = store_prepare(s, k_sql, sizeof k_sql / sizeof k_sql[0]);
  if (rc == 0) rc = store_prepare_devices(s);
  if (rc == 0) rc = store_prepare_tokens(s);
  if (rc == 0) rc = store_prepare_audit(s);
  if (rc == 0) rc = store_prepare_tickets(s);
  if (rc == 0) rc = store_prepare_sessions(s);
  if (rc == 0) rc = store_prepare_people(s);
  if (rc == 0) rc = store_prepare_inventory(s);
  if (rc == 0) rc = store_prepare_diag(s);
  if (rc == 0) rc = store_prepare_retention(s);
  if (rc == 0) rc = store_prepare_closed_tickets(s);
  if (rc == 0) rc = store_prepare_person_records(s);
  if (rc == 0) rc = store_prepare_erase(s);
  if (rc == 0) rc = store_prepare_erase_sql(s);
  if (rc == 0) rc = store_prepare_release(s);
  if (rc == 0) rc = store_prepare_help(s);
  if (rc == 0) rc = store_prepare_alerts(s);
  if (rc == 0) rc = store_prepare_policy(s);
  if (rc == 0) rc = store_prepare_assets(s);
  if (rc == 0) rc = store_prepare_kb(s);
  if (rc == 0) rc = store_prepare_rollout(s);
  if (rc != 0) {
    set_err(err, errlen, "cannot prepare the store's statements: %s", sqlite3_errmsg(s->db));
    goto out;
  }
  *out = s;
  return 0;
out:
  store_close(s);
  return rc;
}

void store_set_busy_timeout(broker_store_t *s, int ms) { (void)sqlite3_busy_timeout(s->db, ms); }

int store_read_begin(broker_store_t *s) {
  if (!sqlite3_get_autocommit(s->db)) return TT_ESTATE; /* inside a transaction already: its snapshot */
  return sqlite3_exec(s->db, "BEGIN DEFERRED", NULL, NULL, NULL) == SQLITE_OK ? 0 : TT_EIO;
}

void store_read_end(broker_store_t *s) { (void)sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL); }

int store_set_durable(broker_store_t *s, bool on) {
  int rc = sqlite3_exec(s->db, on ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL", NULL, NULL, NULL);
  return rc == SQLITE_OK ? 0 : sql_fail(s, "synchronous", rc);
}

void store_close(broker_store_t *s) {
  if (s == NULL) return;
  for (int i = 0; i < ST__COUNT; i++) sqlite3_finalize(s->st[i]);
  store_inventory_close(s);
  store_kb_close(s);
  if (s->db != NULL) {
    int rc = sqlite3_close(s->db);
    if (rc != SQLITE_OK)
      TT_ERROR(MOD, "store close failed", "rc=%d err=\"%s\"", rc, sqlite3_errstr(rc));
  }
  free(s);
}

int store_schema_version(broker_store_t *s) { return s->version; }

int store_schema_latest(void) { return STORE_SCHEMA_LATEST; }

