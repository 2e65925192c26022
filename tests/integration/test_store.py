"""The broker's store keeps what it acknowledged: crashes, outside readers, a store that is
locked or failing, and a tampered audit trail, with the real programs on 127.0.0.1.

Run by ctest as `integration.store` (TT_BIN_DIR names the build directory)."""

import json
import os
import re
import signal
import sqlite3
import time
import unittest

import store_rewind
from harness import TetherTestCase, Pki


class StoreTest(TetherTestCase):
    maxDiff = None

    @classmethod
    def setUpClass(cls):
        cls.pki = Pki()
        cls.pki.issue("technician", "tech")
        cls.pki.issue("admin", "boss")
        for name in ("laptop", "kiosk"):
            cls.pki.issue("agent", name)

    def admin(self, b, args, **kw):
        return self.h.console(b.addr, args, cert=self.pki.cert("boss"), key=self.pki.key("boss"), **kw)

    def sigkill(self, b):
        os.kill(b.pid, signal.SIGKILL)
        b.p.wait(timeout=10)
        b.expect_clean_exit = False

    def outside_read(self, b, sql="SELECT count(*) FROM audit"):
        """What an admin's `sqlite3 broker.db` or a backup does: open, read, close."""
        db = sqlite3.connect(os.path.join(b.data_dir, "broker.db"), timeout=5)
        try:
            return db.execute(sql).fetchone()[0]
        finally:
            db.close()

    def audit_actions(self, b, *extra):
        r = self.admin(b, ["audit", "--json"] + list(extra))
        self.assertEqual(r.rc, 0, r)
        return [json.loads(l) for l in r.out.splitlines()]

    # -- a new store is made 0600 without alarming anyone; a loosened one is tightened aloud --

    def test_00_a_new_store_starts_without_a_warning(self):
        b = self.h.start_broker()
        db = os.path.join(b.data_dir, "broker.db")
        self.assertEqual(os.stat(db).st_mode & 0o777, 0o600)
        self.assertIn("store schema migrated", b.log())
        self.assertNotIn("level=warn", b.log())
        self.sigkill(b)
        os.chmod(db, 0o644)
        b2 = self.h.start_broker(port=b.port)
        b2.wait_for(r'msg="store file mode tightened" .*was=644')
        self.assertEqual(os.stat(db).st_mode & 0o777, 0o600)

    # -- defect: writes acknowledged after `audit verify` were lost at the next crash ------

    def test_01_writes_after_verify_and_an_outside_read_survive_sigkill(self):
        b = self.h.start_broker()
        a = self.h.start_agent(b.addr, "laptop", "laptop.example")
        r = self.admin(b, ["audit", "verify"])
        self.assertEqual(r.rc, 0, r)
        self.assertGreater(self.outside_read(b), 0)
        wal = os.path.join(b.data_dir, "broker.db-wal")
        self.assertTrue(os.path.exists(wal), "the outside reader deleted the live WAL")
        mark = a.mark()
        r = self.admin(b, ["revoke", "device", "laptop", "--reason", "laptop stolen"])
        self.assertEqual(r.rc, 0, r)
        a.wait_for(r'msg="disconnected"', after=mark, timeout=10)
        r = self.admin(b, ["token", "new", "--note", "after verify"])
        self.assertEqual(r.rc, 0, r)
        self.outside_read(b)  # a second reader, after the writes: a backup taken now
        self.sigkill(b)
        b2 = self.h.start_broker(port=b.port)
        # The revocation holds: the agent that keeps retrying is refused.
        b2.wait_for(r'msg="refusing peer" .*name=laptop reason=revoked', timeout=15)
        entries = self.audit_actions(b2)
        actions = [e["action"] for e in entries]
        self.assertIn("revoke", actions)
        self.assertIn("token-new", actions)
        r = self.admin(b2, ["audit", "verify"])
        self.assertEqual(r.rc, 0, r)

    # -- defect: the loop waited on the disk, and entries were dropped under a held lock ---

    def test_02_a_lock_held_outside_delays_writes_and_drops_none(self):
        b = self.h.start_broker()
        a = self.h.start_agent(b.addr, "laptop", "laptop.example")
        k = self.h.start_agent(b.addr, "kiosk", "kiosk.example")
        self.h.wait_device(b.addr, "kiosk")
        k.stop()
        self.h.wait_device(b.addr, "kiosk", present=False)
        connects = "SELECT count(*) FROM audit WHERE action = 'connect' AND target = 'kiosk'"
        self.assertEqual(self.outside_read(b, connects), 1)
        db = sqlite3.connect(os.path.join(b.data_dir, "broker.db"), isolation_level=None, timeout=5)
        try:
            db.execute("BEGIN IMMEDIATE")  # what a backup or an admin's sqlite3 shell may do
            # While the lock is held the broker keeps serving: a device comes back and is
            # listed online, people's read-only requests are answered.
            self.h.start_agent(b.addr, "kiosk", "kiosk.example", name="kiosk-again")
            self.h.wait_device(b.addr, "kiosk")
            r = self.admin(b, ["sessions", "--all"])
            self.assertEqual(r.rc, 0, r)
            self.assertEqual(self.outside_read(b, connects), 1)  # not through the lock, surely
        finally:
            db.execute("COMMIT")
            db.close()
        # Once the lock is gone, what happened meanwhile is all there: nothing was dropped.
        deadline = time.monotonic() + 10
        while self.outside_read(b, connects) < 2:
            self.assertLess(time.monotonic(), deadline, "the connect entry made under the lock never came")
            time.sleep(0.05)
        r = self.admin(b, ["audit", "verify"])
        self.assertEqual(r.rc, 0, r)
        self.assertNotIn("not written", b.log())
        self.assertNotIn("dropped", b.log())

    # -- defect: the audit failed open -------------------------------------------------------

    def test_03_a_privileged_action_whose_entry_cannot_be_written_is_refused(self):
        b = self.h.start_broker()
        a = self.h.start_agent(b.addr, "laptop", "laptop.example")
        path = os.path.join(b.data_dir, "broker.db")
        db = sqlite3.connect(path, isolation_level=None, timeout=5)
        try:
            # The audit table refuses every new row, as a full disk or a broken file would.
            db.execute("CREATE TRIGGER audit_refuses BEFORE INSERT ON audit"
                       " BEGIN SELECT RAISE(ABORT, 'no more audit'); END")
            tokens_before = db.execute("SELECT count(*) FROM tokens").fetchone()[0]
            r = self.admin(b, ["token", "new", "--note", "unrecorded"])
            self.assertNotEqual(r.rc, 0, r)
            self.assertIn("audit", r.err)
            self.assertNotRegex(r.out, r"tt1_[0-9a-f]{64}")
            self.assertEqual(db.execute("SELECT count(*) FROM tokens").fetchone()[0], tokens_before)
            r = self.admin(b, ["revoke", "device", "laptop", "--reason", "unrecorded"])
            self.assertNotEqual(r.rc, 0, r)
            self.assertIn("nothing was revoked", r.err)
            self.assertEqual(db.execute("SELECT count(*) FROM revocations").fetchone()[0], 0)
            self.assertTrue(a.alive())
            r = self.h.console(b.addr, ["ticket", "new", "--device", "laptop", "--summary", "unrecorded"])
            self.assertNotEqual(r.rc, 0, r)
            self.assertEqual(db.execute("SELECT count(*) FROM tickets").fetchone()[0], 0)
            db.execute("DROP TRIGGER audit_refuses")
        finally:
            db.close()
        # With the audit writable again, the same actions go through, and the device that
        # was never revoked is still online.
        self.assertTrue([d for d in self.h.devices(b.addr) if d["device"] == "laptop" and d["online"]])
        r = self.admin(b, ["token", "new", "--note", "recorded"])
        self.assertEqual(r.rc, 0, r)
        self.assertIn("token-new", [e["action"] for e in self.audit_actions(b)])

    # -- defect: a replaced connection wrote its stale report over the new one's --------------

    def test_04_a_replaced_connection_leaves_the_newer_report_in_place(self):
        b = self.h.start_broker()
        old = self.h.start_agent(b.addr, "laptop", "old-host.example", name="laptop-old")
        new = self.h.start_agent(b.addr, "laptop", "new-host.example", name="laptop-new")
        old.wait_for(r'msg="broker refused us"|msg="disconnected"')
        disconnects = "SELECT count(*) FROM audit WHERE action = 'disconnect' AND actor = 'laptop'"
        deadline = time.monotonic() + 10
        while self.outside_read(b, disconnects) < 1:  # written after the device row
            self.assertLess(time.monotonic(), deadline, "no disconnect entry for the replaced connection")
            time.sleep(0.05)
        self.assertEqual(self.outside_read(b, "SELECT hostname FROM devices WHERE id = 'laptop'"),
                         "new-host.example")
        old.stop()
        self.assertTrue(new.alive())

    # -- defect: truncation and rewriting of the audit went unnoticed ------------------------

    def checkpointed_store(self):
        """A broker that ran, signed checkpoints and stopped: its data dir, its chain length."""
        b = self.h.start_broker(extra=["--checkpoint-interval", "1s"])
        a = self.h.start_agent(b.addr, "laptop", "laptop.example")
        for i in range(3):
            self.assertEqual(self.admin(b, ["token", "new", "--note", "t%d" % i]).rc, 0)
        b.wait_for(r'msg="audit checkpoint" when=periodic')
        a.stop()
        b.stop()
        self.assertIn('msg="audit checkpoint" when=stop', b.log())
        with open(os.path.join(b.data_dir, "audit.checkpoints")) as f:
            lines = f.read().splitlines()
        self.assertGreaterEqual(len(lines), 3)  # start, periodic, stop
        self.assertTrue(all(l.startswith("tether-audit-checkpoint 1 ") for l in lines))
        return b

    def tamper(self, b, *sql):
        db = sqlite3.connect(os.path.join(b.data_dir, "broker.db"))
        for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type='trigger'").fetchall():
            db.execute("DROP TRIGGER %s" % name)
        for q in sql:
            db.execute(q)
        db.commit()
        n = db.execute("SELECT max(id) FROM audit").fetchone()[0]
        db.close()
        return n

    def verify_after(self, b):
        b2 = self.h.start_broker(port=b.port, data_dir=b.data_dir, name="broker-after")
        r = self.admin(b2, ["audit", "verify"])
        return r

    entry_hash = staticmethod(store_rewind.entry_hash)

    def test_05_verify_names_each_kind_of_damage(self):
        b = self.checkpointed_store()
        r = self.verify_after(b)
        self.assertEqual(r.rc, 0, r)
        self.assertRegex(r.out, r"audit chain intact: \d+ entries, [3-9]\d* signed checkpoints")

    def test_05a_a_truncated_tail_is_found(self):
        b = self.checkpointed_store()
        n = self.tamper(b, "DELETE FROM audit WHERE id > (SELECT max(id) - 3 FROM audit)",
                        "DELETE FROM audit_checkpoints")
        r = self.verify_after(b)
        print("\n" + r.out, end="", flush=True)
        self.assertEqual(r.rc, 1, r)
        self.assertIn("cut", r.out)

    def test_05b_a_rewritten_chain_is_found(self):
        b = self.checkpointed_store()
        db = sqlite3.connect(os.path.join(b.data_dir, "broker.db"))
        for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type='trigger'").fetchall():
            db.execute("DROP TRIGGER %s" % name)
        rows = db.execute("SELECT id, ts_ms, actor, action, target, detail FROM audit ORDER BY id").fetchall()
        victim = [r for r in rows if r[3] == "token-new"][0][0]
        prev = bytes(32)
        for (i, ts, actor, action, target, detail) in rows:
            if i == victim:
                detail = '{"note":"nothing to see"}'
            h = self.entry_hash(prev, i, ts, actor, action, target, detail)
            db.execute("UPDATE audit SET detail = ?, prev_hash = ?, hash = ? WHERE id = ?", (detail, prev, h, i))
            prev = h
        db.execute("DELETE FROM audit_checkpoints")
        db.commit()
        db.close()
        r = self.verify_after(b)
        print("\n" + r.out, end="", flush=True)
        self.assertEqual(r.rc, 1, r)
        self.assertIn("rewritten", r.out)

    def test_05c_a_missing_range_and_an_edited_entry_are_named(self):
        b = self.checkpointed_store()
        self.tamper(b, "DELETE FROM audit WHERE id IN (4, 5)",
                    "UPDATE audit SET detail = '{}' WHERE id = 7")
        r = self.verify_after(b)
        print("\n" + r.out, end="", flush=True)
        self.assertEqual(r.rc, 1, r)
        self.assertIn("BROKEN at entry 4", r.out)
        self.assertIn("entries 4 to 5 are missing", r.out)
        self.assertIn("entry 7 was edited", r.out)

    def test_05d_a_forged_checkpoint_is_refused(self):
        b = self.checkpointed_store()
        # A checkpoint made up from a real one: it claims 50 entries more than were signed.
        path = os.path.join(b.data_dir, "audit.checkpoints")
        with open(path) as f:
            line = f.read().splitlines()[-1].split(" ")
        with open(path, "a") as f:
            f.write(" ".join(line[:2] + [str(int(line[2]) + 50)] + line[3:]) + "\n")
        r = self.verify_after(b)
        print("\n" + r.out, end="", flush=True)
        self.assertEqual(r.rc, 1, r)
        self.assertIn("forged", r.out)

    def test_06_an_export_verifies_offline_with_the_ca_certificate_alone(self):
        b = self.checkpointed_store()
        b2 = self.h.start_broker(port=b.port, data_dir=b.data_dir, name="broker-after")
        r = self.admin(b2, ["audit", "--json"])
        self.assertEqual(r.rc, 0, r)
        lines = r.out.splitlines()
        export = os.path.join(self.h.dir, "audit.jsonl")
        cps = os.path.join(b.data_dir, "audit.checkpoints")

        def offline(text):
            with open(export, "w") as f:
                f.write(text)
            return self.h.run("tether-certs", ["audit-verify", "--cert", self.pki.ca, "--checkpoints", cps, export])

        r = offline("\n".join(lines) + "\n")
        self.assertEqual(r.rc, 0, r)
        self.assertRegex(r.out, r"audit log intact: %d entries, \d+ signed checkpoints" % len(lines))
        # Cut below the last checkpoint: the tail is missing.
        r = offline("\n".join(lines[:5]) + "\n")
        self.assertEqual(r.rc, 1, r)
        self.assertIn("the tail was cut off", r.out)
        # One entry's detail changed in the export.
        e = json.loads(lines[3])
        e["detail_text"] = e["detail_text"].replace("}", ',"x":"y"}')
        r = offline("\n".join(lines[:3] + [json.dumps(e)] + lines[4:]) + "\n")
        self.assertEqual(r.rc, 1, r)
        self.assertIn("entry %d was edited" % e["id"], r.out)
        # Checkpoints of another CA's broker count for nothing.
        other = Pki()
        try:
            r = self.h.run("tether-certs", ["audit-verify", "--cert", other.ca, "--checkpoints", cps, export])
            self.assertEqual(r.rc, 1, r)
            self.assertIn("not issued by this CA", r.out)
        finally:
            other.remove()

    # -- audit format 2: a store an older broker wrote is re-hashed once -----------------------

    def as_format1(self, b, edit=None):
        """Turn b's stopped store into what a broker before schema 16 left: format 1 rows
        (hashed in the clear) and checkpoints it signed over them. edit(db) may change a row
        after its hash (damage the older broker never saw)."""
        return store_rewind.rewind(b.data_dir, self.pki.broker_key, self.pki.broker_cert, edit=edit)

    def test_08_an_older_store_is_rehashed_once(self):
        b = self.checkpointed_store()
        n = self.as_format1(b)
        b2 = self.h.start_broker(port=b.port, data_dir=b.data_dir, name="broker-format2")
        b2.wait_for(r'msg="audit chain re-hashed in format 2" entries=%d format1=%d' % (n, n))
        r = self.admin(b2, ["audit", "verify"])
        self.assertEqual(r.rc, 0, r)
        self.assertRegex(r.out, r"audit chain intact: \d+ entries")
        cps = os.path.join(b.data_dir, "audit.checkpoints")
        with open(cps) as f:
            self.assertEqual(sum(1 for ln in f if ln.startswith("tether-audit-rechain 1 %d " % n)), 1)
        entries = self.audit_actions(b2)
        self.assertTrue(all(e["format"] == 2 and len(e["values"]) >= 2 for e in entries), entries[0])
        # Offline, with the CA certificate alone.
        export = os.path.join(self.h.dir, "audit.jsonl")
        with open(export, "w") as f:
            f.write("".join(json.dumps(e) + "\n" for e in entries))
        r = self.h.run("tether-certs", ["audit-verify", "--cert", self.pki.ca, "--checkpoints", cps, export])
        self.assertEqual(r.rc, 0, r)
        self.assertIn("audit log intact", r.out)
        # Once: a restart finds nothing left in format 1.
        b2.stop()
        b3 = self.h.start_broker(port=b.port, data_dir=b.data_dir, name="broker-again")
        r = self.admin(b3, ["audit", "verify"])
        self.assertEqual(r.rc, 0, r)
        self.assertNotIn("re-hashed", b3.log())

    def test_09_a_damaged_older_store_is_not_laundered(self):
        b = self.checkpointed_store()
        self.as_format1(b, edit=lambda db: db.execute("UPDATE audit SET detail = '{\"x\":\"y\"}' WHERE id = 3"))
        b2 = self.h.start_broker(port=b.port, data_dir=b.data_dir, name="broker-format2")
        b2.wait_for(r'msg="audit chain damaged: left in format 1" entries=\d+ first_bad=3')
        r = self.admin(b2, ["audit", "verify"])
        self.assertEqual(r.rc, 1, r)
        self.assertIn("BROKEN at entry 3", r.out)
        self.assertNotIn("re-hashed", b2.log())

    def test_07_the_device_list_pages_by_key_through_a_large_fleet(self):
        b = self.h.start_broker()
        b.stop()
        db = sqlite3.connect(os.path.join(b.data_dir, "broker.db"))
        db.executemany("INSERT INTO devices(id, hostname, enrolled_ms) VALUES(?, ?, 1)",
                       [("dev-%04d" % i, "host-%d" % i) for i in range(601)])
        db.commit()
        db.close()
        b2 = self.h.start_broker(port=b.port, data_dir=b.data_dir, name="broker-fleet")
        listed = [d["device"] for d in self.h.devices(b2.addr)]
        self.assertEqual(listed, ["dev-%04d" % i for i in range(601)])  # 3 pages, each once


if __name__ == "__main__":
    unittest.main()
