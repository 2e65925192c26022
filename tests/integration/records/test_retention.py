"""Retention: an admin sets how long recordings, diagnostics reports, the audit, closed tickets
and inventory history are kept (values out of range, unknown classes and technicians refused;
audited); a sweep removes what expired, except what a ticket on hold keeps; the audit is pruned
up to a signed cut line and `tether audit verify` (and the offline check) still says intact;
a closed ticket goes with its records, and inventory history before the cut leaves `inventory
history` while `inventory` shows what it did. The store is aged in place (records/auditchain.py:
the entries moved back in time, the chain and a checkpoint made again as the broker's key
would), then the real programs sweep on 127.0.0.1.

Run by ctest as `integration.retention` (TT_BIN_DIR names the build directory)."""

import glob
import json
import os
import sqlite3
import subprocess
import unittest

from harness import Pki, TetherTestCase
from inventory import test_inventory as ti
from records import auditchain
from test_session import ME, SessionWorld

DAY = 86400 * 1000


class RetentionTest(SessionWorld, TetherTestCase):
    maxDiff = None
    # dev2 is a device of the test's own making: its inventory versions are what it pushes.
    fake_agent = ti.InventoryTest.fake_agent
    call = ti.InventoryTest.call
    offer = ti.InventoryTest.offer
    put = ti.InventoryTest.put
    push = ti.InventoryTest.push

    @classmethod
    def setUpClass(cls):
        cls.pki = Pki()
        for role, name in (("technician", "tech"), ("admin", "boss"), ("agent", "dev1"), ("agent", "dev2")):
            cls.pki.issue(role, name)

    def ok(self, r):
        self.assertEqual(r.rc, 0, r)
        return r

    def work_on(self, tid):
        """A recorded shell and an attached diagnostics report under ticket tid."""
        p = subprocess.run(self.console_argv(["shell", "dev1", "--ticket", tid]), env=self.h.env, cwd=self.h.dir,
                           input=b"echo kept-or-not\nexit 0\n", capture_output=True, timeout=60)
        self.assertEqual(p.returncode, 0, p)
        self.ok(self.tech(["diag", "dev1", "--ticket", tid, "--attach", "--json"]))

    def audit(self):
        return [json.loads(ln) for ln in self.ok(self.admin(["audit", "--json"])).out.splitlines()]

    def aged(self, old, edits, days=400):
        """Stop the world, move what edits(db, delta_ms) changes and audit entries 1..old days
        back (the chain hashed again and its checkpoint signed anew with the broker's key), and
        start the broker on the same store. Returns what edits returned."""
        self.a.stop()
        self.b.stop()
        data = self.b.data_dir
        db_path = os.path.join(data, "broker.db")
        db = sqlite3.connect(db_path)
        db.execute("UPDATE audit_gate SET open = 1")
        out = edits(db, days * DAY)
        db.execute("UPDATE audit_gate SET open = 0")
        db.commit()
        db.close()
        if old:
            heads = auditchain.age(db_path, old, days * DAY)
            auditchain.resign(db_path, os.path.join(data, "audit.checkpoints"), self.pki.broker_cert,
                              self.pki.broker_key, heads)
        self.b = self.h.start_broker(port=self.b.port, data_dir=data, name="broker-later")
        return out

    def test_sweep_keeps_what_is_held_and_the_chain_verifies(self):
        self.world(policy="unattended")
        held, gone = self.new_ticket(summary="legal case"), self.new_ticket(summary="printer")
        self.work_on(held)
        self.work_on(gone)
        self.ok(self.admin(["ticket", "hold", held, "--reason", "legal hold #12"]))
        r = self.tech(["ticket", "hold", gone, "--reason", "mine"])
        self.assertEqual((r.rc, r.err), (1, "tether: permission denied: holding a ticket's records needs the admin "
                                            "role\n"), r)
        r = self.admin(["ticket", "hold", gone])
        self.assertEqual(r.rc, 2, r)
        self.assertIn("held", [e["kind"] for e in json.loads(self.ok(self.tech(["ticket", "show", held, "--json"])).out)["events"]])
        old = self.audit()[-1]["id"]

        # Everything so far happened 400 days ago.
        def edits(db, delta):
            for sql in ("UPDATE tickets SET created_ms = created_ms - ?", "UPDATE recordings SET started_ms = started_ms - ?",
                        "UPDATE diag_reports SET taken_ms = taken_ms - ?"):
                db.execute(sql, (delta,))
            return dict(db.execute("SELECT ticket, path FROM recordings").fetchall())
        recs = self.aged(old, edits)
        data = self.b.data_dir
        cps = os.path.join(data, "audit.checkpoints")
        held_id, gone_id = int(held[2:]), int(gone[2:])
        self.ok(self.admin(["audit", "verify"]))

        # Settings: shown with their defaults and why; bad ones refused whole.
        r = json.loads(self.ok(self.admin(["retention", "show", "--json"])).out)
        self.assertEqual({c["name"]: c["keep_ms"] for c in r["classes"]},
                         {"audit": 730 * DAY, "recordings": 90 * DAY, "diagnostics": 30 * DAY,
                          "closed_tickets": 1095 * DAY, "inventory_history": 365 * DAY, "transfers": 365 * DAY})
        self.assertTrue(all(c["why"] for c in r["classes"]))
        self.assertEqual(r["holds"], 1)
        for bad, err in ((["audit=11y"], "audit is out of range: at least 1 day, at most 10 years"),
                         (["recordings=90d", "mood=3d"], "mood is not a class of record: audit, recordings, "
                                                         "diagnostics, closed_tickets, inventory_history or "
                                                         "transfers")):
            r = self.admin(["retention", "set"] + bad)
            self.assertEqual((r.rc, r.err), (1, "tether: %s\n" % err), r)
        r = self.admin(["retention", "set", "audit=0d"])
        self.assertEqual(r.rc, 2, r)
        r = self.tech(["retention", "set", "audit=1y"])
        self.assertEqual(r.rc, 1, r)
        self.assertIn("admin", r.err)
        self.assertEqual(json.loads(self.ok(self.admin(["retention", "show", "--json"])).out)["classes"][1]["keep_ms"],
                         90 * DAY)  # nothing of the refused requests was applied
        self.ok(self.admin(["retention", "set", "audit=1y", "recordings=30d", "diagnostics=30d"]))
        self.assertIn("retention-set", [e["action"] for e in self.audit()])

        # The sweep: the unheld ticket's recording and report go, the held one's stay; the audit
        # is pruned up to the held ticket's creation.
        swept = json.loads(self.ok(self.admin(["retention", "sweep", "--json"])).out)
        self.assertEqual((swept["recordings"], swept["diagnostics"]), (1, 1), swept)
        self.assertGreater(swept["audit"], 0)
        base = swept["audit_base"]
        self.assertFalse(os.path.exists(os.path.join(data, recs[gone_id])))
        self.assertTrue(os.path.exists(os.path.join(data, recs[held_id])))
        r = self.admin(["replay", recs[gone_id].split("/")[-1].split(".")[0], "--speed", "0"])
        self.assertEqual(r.rc, 1, r)
        self.assertIn("was deleted by retention", r.err)
        entries = self.audit()
        self.assertEqual(entries[0]["id"], base + 1)
        created = [e for e in entries if e["action"] == "ticket-new" and e["target"] == held]
        self.assertTrue(created, "the held ticket's creation is kept")
        r = self.ok(self.admin(["audit", "verify"]))
        self.assertRegex(r.out, r"audit chain intact: \d+ entries")
        self.assertIn("entries 1 to %d were pruned by retention" % base, r.out)
        with open(cps) as f:
            self.assertTrue(any(ln.startswith("tether-audit-cut 1 %d " % base) for ln in f))
        export = os.path.join(self.h.dir, "audit.jsonl")
        with open(export, "w") as f:
            f.write("".join(json.dumps(e) + "\n" for e in self.audit()))
        r = self.h.run("tether-certs", ["audit-verify", "--cert", self.pki.ca, "--checkpoints", cps, export])
        self.assertEqual(r.rc, 0, r)
        self.assertIn("audit log intact", r.out)

        # The hold ends: the next sweep takes the rest.
        self.ok(self.admin(["ticket", "release", held]))
        swept = json.loads(self.ok(self.admin(["retention", "sweep", "--json"])).out)
        self.assertEqual((swept["recordings"], swept["diagnostics"]), (1, 1), swept)
        self.assertGreaterEqual(swept["audit_base"], old)
        self.assertEqual(glob.glob(os.path.join(data, "recordings", "*.cast.zst")), [])
        self.ok(self.admin(["audit", "verify"]))
        self.assertIn("retention-sweep", [e["action"] for e in self.audit()])

    def show(self, tid):
        return json.loads(self.ok(self.tech(["ticket", "show", tid, "--json"])).out)

    def test_closed_tickets_and_inventory_history_expire(self):
        self.world(policy="unattended")
        c = self.fake_agent()
        os_v = json.dumps({"columns": ["name"], "rows": [["Debian"]]}, separators=(",", ":")).encode()

        def pk(v):
            return json.dumps({"columns": ["name", "version"], "rows": [["openssl", v]]},
                              separators=(",", ":")).encode()
        v1 = self.push(c, {"deb_packages": pk("3.0.1"), "os_version": os_v})
        v2 = self.push(c, {"deb_packages": pk("3.0.2"), "os_version": os_v})
        self.assertGreater(v2, v1)
        gone, held, still_open, recent = (self.new_ticket(summary=s) for s in ("printer", "legal case", "vpn", "wifi"))
        self.work_on(gone)
        self.work_on(held)
        for tid in (gone, held, recent):
            self.ok(self.admin(["ticket", "close", tid]))
        self.ok(self.admin(["ticket", "hold", held, "--reason", "legal hold #12"]))

        # The tickets closed, and dev2's first two versions came, 400 days ago.
        ids = [int(t[2:]) for t in (gone, held, still_open)]

        def edits(db, delta):
            db.execute("UPDATE tickets SET created_ms = created_ms - ?1, closed_ms = max(closed_ms - ?1, 0)"
                       " WHERE id IN (?2, ?3, ?4)", [delta] + ids)
            db.execute("UPDATE inv_versions SET received_ms = received_ms - ? WHERE device = 'dev2'", (delta,))
            return dict(db.execute("SELECT ticket, path FROM recordings").fetchall())
        recs = self.aged(0, edits)
        data = self.b.data_dir
        c = self.fake_agent()
        v3 = self.push(c, {"deb_packages": pk("3.0.3"), "os_version": os_v})
        inventory = self.ok(self.tech(["inventory", "dev2", "--json"])).out
        self.assertIn("3.0.3", inventory)

        # The defaults keep both (three years, one year); the admin keeps them shorter.
        for bad in ("closed_tickets=0d", "inventory_history=0h"):
            r = self.admin(["retention", "set", bad])
            self.assertEqual(r.rc, 2, r)
        r = self.admin(["retention", "set", "closed_tickets=1y", "inventory_history=11y"])
        self.assertEqual((r.rc, r.err), (1, "tether: inventory_history is out of range: at least 1 day, at most 10 "
                                            "years\n"), r)
        self.ok(self.admin(["retention", "set", "closed_tickets=1y", "inventory_history=180d"]))
        r = json.loads(self.ok(self.admin(["retention", "show", "--json"])).out)
        self.assertEqual({c["name"]: (c["keep_ms"], c["set_by"]) for c in r["classes"]}["closed_tickets"],
                         (365 * DAY, "boss"))
        out = self.ok(self.admin(["retention", "show"])).out
        self.assertRegex(out, r"inventory_history +180d +boss \(default 1y\) +one year: ")
        sets = [e for e in self.audit() if e["action"] == "retention-set"]
        self.assertEqual((sets[-1]["detail"]["closed_tickets_ms"], sets[-1]["detail"]["inventory_history_ms"]),
                         (str(365 * DAY), str(180 * DAY)))

        swept = json.loads(self.ok(self.admin(["retention", "sweep", "--json"])).out)
        self.assertEqual((swept["closed_tickets"], swept["inventory_history"]), (1, 2), swept)
        r = self.tech(["ticket", "show", gone])
        self.assertEqual((r.rc, r.err), (1, "tether: no such ticket: %s\n" % gone), r)
        self.assertFalse(os.path.exists(os.path.join(data, recs[ids[0]])))
        self.assertTrue(os.path.exists(os.path.join(data, recs[ids[1]])))
        self.assertIn("held", [e["kind"] for e in self.show(held)["events"]])
        self.assertEqual(self.show(still_open)["ticket"]["state"], "open")
        self.assertEqual(self.show(recent)["ticket"]["state"], "closed")
        history = [json.loads(ln)["version"] for ln in self.ok(self.tech(["inventory", "history", "dev2", "--json"]))
                   .out.splitlines()]
        self.assertEqual(history, [v3])
        self.assertEqual(self.ok(self.tech(["inventory", "dev2", "--json"])).out, inventory)
        r = self.tech(["inventory", "dev2", "--at", str(v2)])
        self.assertEqual(r.rc, 1, r)
        self.assertIn("at that version", r.err)
        entry = [e for e in self.audit() if e["action"] == "retention-sweep"][-1]
        self.assertEqual((entry["actor"], entry["detail"]["closed_tickets"], entry["detail"]["inventory_history"]),
                         ("boss", "1", "2"))
        # The audit keeps what it said about the ticket that went.
        self.assertIn(gone, [e["target"] for e in self.audit() if e["action"] == "ticket-close"])

        # The hold ends: the next sweep takes the held ticket too, and nothing else.
        self.ok(self.admin(["ticket", "release", held]))
        swept = json.loads(self.ok(self.admin(["retention", "sweep", "--json"])).out)
        self.assertEqual((swept["closed_tickets"], swept["inventory_history"]), (1, 0), swept)
        self.assertEqual(self.tech(["ticket", "show", held]).rc, 1)
        self.assertFalse(os.path.exists(os.path.join(data, recs[ids[1]])))
        self.assertEqual(self.show(recent)["ticket"]["state"], "closed")


    def verify_offline(self):
        auditchain.verify_offline(self, self.audit())

    def test_transfers_released_and_an_erasure_outlives_the_cut(self):
        self.world(policy="unattended")
        tid = self.new_ticket(summary="send mia.r the vpn profile", extra=["--requester", "mia.r"])
        local = os.path.join(self.h.dir, "profile.ovpn")
        with open(local, "w") as f:
            f.write("client\n")
        remote = "/tmp/tt-retention-%d-mia-profile.ovpn" % os.getpid()
        self.addCleanup(lambda: os.path.exists(remote) and os.unlink(remote))
        self.ok(self.tech(["cp", local, "dev1:" + remote, "--ticket", tid, "--force"]))
        self.wait_until(lambda: '"file-push"' in self.admin(["audit", "--json"]).out, "the push audited")
        kinds = [e["kind"] for e in json.loads(self.ok(self.tech(["ticket", "show", tid, "--json"])).out)["events"]]
        self.assertIn("file-pushed", kinds)
        old = self.audit()[-1]["id"]

        # All of it 400 days ago; then the requester's data erased today.
        self.aged(old, lambda db, delta: db.execute("UPDATE ticket_events SET ts_ms = ts_ms - ?", (delta,)))
        erased = json.loads(self.ok(self.admin(["person", "erase", "mia.r", "--reason", "request 7", "--json"])).out)
        self.assertGreater(erased["released"], 0)

        # Transfers older than a year: the timeline's file events go, the audit keeps who moved
        # how many bytes when, and the path is released under a retention-release entry.
        swept = json.loads(self.ok(self.admin(["retention", "sweep", "--json"])).out)
        self.assertEqual(swept["transfer_events"], 1, swept)
        self.assertEqual(swept["transfer_values"], 1, swept)
        self.assertEqual(swept["audit"], 0, swept)
        kinds = [e["kind"] for e in json.loads(self.ok(self.tech(["ticket", "show", tid, "--json"])).out)["events"]]
        self.assertNotIn("file-pushed", kinds)
        entries = self.audit()
        push = [e for e in entries if e["action"] == "file-push"][0]
        self.assertEqual(push["detail"]["path"], "(expired)")
        self.assertEqual(push["detail"]["size"], "7")
        release = [e for e in entries if e["action"] == "retention-release"]
        self.assertEqual([(e["detail"]["class"], e["detail"]["released"]) for e in release], [("transfers", "1")])
        self.ok(self.admin(["audit", "verify"]))
        self.verify_offline()
        swept = json.loads(self.ok(self.admin(["retention", "sweep", "--json"])).out)
        self.assertEqual((swept["transfer_events"], swept["transfer_values"]), (0, 0), swept)

        # The audit kept a year: the cut takes the old entries, values the erasure released in
        # them among them. The erasure still adds up, online and from an export.
        self.ok(self.admin(["retention", "set", "audit=1y"]))
        swept = json.loads(self.ok(self.admin(["retention", "sweep", "--json"])).out)
        self.assertGreaterEqual(swept["audit_base"], old)
        r = self.ok(self.admin(["audit", "verify"]))
        self.assertRegex(r.out, r"audit chain intact: \d+ entries")
        pruned = [e for e in self.audit() if e.get("pruned")]
        self.assertTrue(pruned, "the export lists the pruned entries' released values")
        self.assertTrue(all(v["erased"] > swept["audit_base"] for e in pruned for v in e["values"]))
        self.verify_offline()


if __name__ == "__main__":
    unittest.main()
