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


if __name__ == "__main__":
    unittest.main()
