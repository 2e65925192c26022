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


if __name__ == "__main__":
    unittest.main()
