"""A store as a broker before schema 16 left it, made from a current one: the later
migrations undone (schema 15) and the audit chain hashed in format 1, with checkpoints its
broker signed over that chain. The broker at its next start migrates it forward and hashes
the chain again in format 2, once. test_store.py checks that re-hash; the package test
(tests/package) upgrades a packaged broker over such a store.

The store must be stopped. Needs python3-cryptography: the checkpoints are signed with the
broker's key, as the older broker signed them.
"""

import base64
import hashlib
import os
import sqlite3
import struct

SCHEMA = 15  # the schema rewind() leaves

# The migrations after 15 undone, newest first (tests/unit/broker/store_undo.h has the same
# steps for the C tests); audit_no_update and audit_no_delete come back after the re-hash.
_UNDO = (
    "DROP TABLE rollout_devices; DROP TABLE rollouts; DROP TABLE agent_releases;"
    " ALTER TABLE audit_values DROP COLUMN digest2;"
    " DROP INDEX inv_tables_version; DROP TABLE inv_floor; DROP INDEX help_requests_ticket;"
    " DROP INDEX recordings_ticket; DROP INDEX tickets_closed; ALTER TABLE tickets DROP COLUMN closed_ms;"
    " DROP INDEX audit_values_erased; ALTER TABLE recordings DROP COLUMN erased;"
    " DROP TRIGGER ticket_events_no_update; DROP TRIGGER ticket_events_no_delete;"
    " CREATE TRIGGER ticket_events_no_update BEFORE UPDATE ON ticket_events"
    "  BEGIN SELECT RAISE(ABORT, 'ticket_events is append-only'); END;"
    " CREATE TRIGGER ticket_events_no_delete BEFORE DELETE ON ticket_events"
    "  BEGIN SELECT RAISE(ABORT, 'ticket_events is append-only'); END;"
    " DROP TRIGGER audit_values_no_update; DROP TRIGGER audit_values_no_delete; DROP TABLE audit_values;"
    " DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete; DROP TABLE audit_gate;"
    " DROP TRIGGER audit_checkpoints_no_delete; DELETE FROM audit_checkpoints;"
    " ALTER TABLE audit DROP COLUMN format; DROP TABLE siem_cursor; PRAGMA user_version = 15;"
    " DROP TABLE retention; DROP TABLE ticket_holds; DROP TABLE audit_base; DROP INDEX recordings_started;"
    " DROP INDEX diag_reports_taken; ALTER TABLE recordings DROP COLUMN expired_ms;"
    " CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints"
    "  BEGIN SELECT RAISE(ABORT, 'audit_checkpoints is append-only'); END;")

_AUDIT_APPEND_ONLY = (
    "CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit"
    "  BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END;"
    "CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit"
    "  BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END;")


def entry_hash(prev, i, ts, actor, action, target, detail):
    """An audit entry's hash in format 1: the fields in the clear, after the previous hash."""
    h = hashlib.sha256(prev + struct.pack(">QQ", i, ts))
    for f in (actor, action, target, detail):
        f = f.encode()
        h.update(struct.pack(">I", len(f)) + f)
    return h.digest()


def rewind(data_dir, broker_key, broker_cert, edit=None, checkpoint_file=None):
    """Turn the stopped store in data_dir into schema 15 with its audit in format 1, and its
    checkpoint file (data_dir/audit.checkpoints unless named) into two checkpoints signed
    with broker_key over that chain, at half its length and at its end. edit(db) may change a
    row after its hash (damage the older broker never saw). Returns the number of entries;
    the chain needs two at least."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    db = sqlite3.connect(os.path.join(data_dir, "broker.db"))
    try:
        db.executescript(_UNDO)
        rows = db.execute("SELECT id, ts_ms, actor, action, target, detail FROM audit ORDER BY id").fetchall()
        if len(rows) < 2:
            raise ValueError("the store's audit has %d entries: a rewind needs two" % len(rows))
        prev, heads = bytes(32), {}
        for (i, ts, actor, action, target, detail) in rows:
            h = entry_hash(prev, i, ts, actor, action, target, detail)
            db.execute("UPDATE audit SET prev_hash = ?, hash = ? WHERE id = ?", (prev, h, i))
            heads[i] = h
            prev = h
        if edit:
            edit(db)
        db.executescript(_AUDIT_APPEND_ONLY)
        db.commit()
    finally:
        db.close()
    with open(broker_key, "rb") as f:
        key = serialization.load_pem_private_key(f.read(), None)
    with open(broker_cert, "rb") as f:
        der = x509.load_pem_x509_certificate(f.read()).public_bytes(serialization.Encoding.DER)
    lines = []
    for n, ts in ((len(rows) // 2, 1000), (len(rows), 2000)):
        msg = "tether-audit-checkpoint 1 %d %s %d" % (n, heads[n].hex(), ts)
        sig = key.sign(msg.encode(), ec.ECDSA(hashes.SHA256()))
        lines.append("%s %s %s\n" % (msg, base64.b64encode(der).decode(), sig.hex()))
    with open(checkpoint_file or os.path.join(data_dir, "audit.checkpoints"), "w") as f:
        f.writelines(lines)
    return len(rows)
