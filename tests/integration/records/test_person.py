"""tether person export: everything the broker holds about one person, as one JSON document:
an employee named as a ticket's requester (the ticket, its whole timeline, the audit entries
that name them) and a technician (who they are, their ssh keys, the sessions they took, their
recordings and diagnostics reports, their audit entries); the export is itself audited; a
name nobody holds gives empty sections; only admins export. The real programs on 127.0.0.1.

Run by ctest as `integration.person` (TT_BIN_DIR names the build directory)."""

import hashlib
import json
import re
import os
import sqlite3
import subprocess
import unittest

from harness import Pki, TetherTestCase
from records import auditchain
from test_session import SessionWorld

SECTIONS = ["profile", "tickets", "events", "sessions", "recordings", "diagnostics", "audit"]


class PersonExportTest(SessionWorld, TetherTestCase):
    maxDiff = None

    @classmethod
    def setUpClass(cls):
        cls.pki = Pki()
        for role, name in (("technician", "tech"), ("technician", "liv.t"), ("admin", "boss"), ("agent", "dev1")):
            cls.pki.issue(role, name)

    def export(self, name):
        r = self.admin(["person", "export", name])
        self.assertEqual(r.rc, 0, r)
        doc = json.loads(r.out)
        self.assertEqual([k for k in doc if k in SECTIONS], SECTIONS)
        self.assertEqual(doc["person"], name)
        return doc

    def test_export_an_employee_and_a_technician(self):
        self.world(policy="unattended")
        tid = self.new_ticket(extra=["--requester", "sam"], summary="vpn drops for sam")
        other = self.new_ticket(summary="someone else's printer")
        p = subprocess.run(self.console_argv(["shell", "dev1", "--ticket", tid]), env=self.h.env, cwd=self.h.dir,
                           input=b"echo hello\nexit 0\n", capture_output=True, timeout=60)
        self.assertEqual(p.returncode, 0, p)
        r = self.tech(["diag", "dev1", "--ticket", tid, "--attach", "--json"])
        self.assertEqual(r.rc, 0, r)
        key = os.path.join(self.h.dir, "id_ed25519")
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "tech@laptop", "-f", key], check=True,
                       timeout=30)
        r = self.tech(["ssh-key", "add", key + ".pub"])
        self.assertEqual(r.rc, 0, r)

        sam = self.export("sam")
        self.assertEqual(sam["profile"], [])  # an employee: no row of their own at the broker
        self.assertEqual([t["id"] for t in sam["tickets"]], [int(tid[2:])])
        self.assertEqual(sam["tickets"][0]["requester"], "sam")
        kinds = [e["kind"] for e in sam["events"]]
        self.assertEqual(kinds[0], "created")
        self.assertIn("session-opened", kinds)  # the ticket's whole timeline is theirs
        self.assertTrue(all(e["ticket"] == int(tid[2:]) for e in sam["events"]))
        self.assertTrue(sam["audit"], "audit entries naming sam")
        self.assertTrue(all("sam" in (a["actor"], a["target"]) or '"sam"' in a["detail"] for a in sam["audit"]))
        self.assertNotIn(int(other[2:]), [t["id"] for t in sam["tickets"]])

        tech = self.export("tech")
        self.assertEqual([(p["record"], p["name"], p["role"]) for p in tech["profile"] if p["record"] == "person"],
                         [("person", "tech", "technician")])
        self.assertEqual([k["comment"] for k in tech["profile"] if k["record"] == "ssh_key"], ["tech@laptop"])
        self.assertEqual({t["id"] for t in tech["tickets"]}, {int(tid[2:]), int(other[2:])})  # opened both
        self.assertGreaterEqual(len(tech["sessions"]), 1)
        self.assertTrue(all(s["person"] == "tech" for s in tech["sessions"]))
        self.assertEqual(len(tech["recordings"]), 1)
        self.assertRegex(tech["recordings"][0]["sha256"], r"^[0-9a-f]{64}$")
        self.assertEqual(len(tech["diagnostics"]), 1)
        self.assertTrue(any(a["action"] == "session-request" for a in tech["audit"]))

        # Every export is audited, and the second one finds the first.
        audit = [json.loads(ln) for ln in self.admin(["audit", "--json"]).out.splitlines()]
        self.assertEqual([(a["actor"], a["target"]) for a in audit if a["action"] == "person-export"],
                         [("boss", "sam"), ("boss", "tech")])
        self.assertIn("person-export", [a["action"] for a in self.export("sam")["audit"]])

        # A name nobody holds: every section empty. Technicians do not export.
        nobody = self.export("nobody")
        self.assertTrue(all(nobody[s] == [] for s in SECTIONS if s != "audit"))
        r = self.tech(["person", "export", "sam"])
        self.assertEqual((r.rc, r.err), (1, "tether: permission denied: a person's data needs the admin role\n"))
        r = self.admin(["person", "export", 'bad"name'])
        self.assertEqual(r.rc, 2, r)


    def audit(self):
        return [json.loads(ln) for ln in self.ok(self.admin(["audit", "--json"])).out.splitlines()]

    def ok(self, r):
        self.assertEqual(r.rc, 0, r)
        return r

    def erase(self, name, *extra):
        r = self.ok(self.admin(["person", "erase", name, "--reason", "GDPR request #88 from " + name, "--json"]
                               + list(extra)))
        return json.loads(r.out)

    def verified(self):
        """Online and offline, the chain still holds."""
        r = self.ok(self.admin(["audit", "verify"]))
        self.assertRegex(r.out, r"audit chain intact: \d+ entries")
        auditchain.verify_offline(self, self.audit())

    def files_naming(self, *names):
        """Every file of the broker's data directory (the store, its write-ahead log, the
        recordings) that still holds one of the names as a word, in any case, byte for byte:
        live rows, free space and old pages alike ("nadia.kim" is not "nadia.k")."""
        pats = [re.compile(rb"(?i)(?<![A-Za-z0-9._-])" + re.escape(n.encode()) + rb"(?![A-Za-z0-9_-]|\.[A-Za-z0-9])")
                for n in names]
        found = []
        for root, _, files in os.walk(self.b.data_dir):
            for f in files:
                with open(os.path.join(root, f), "rb") as fh:
                    body = fh.read()
                found += ["%s: %s" % (f, n) for n, p in zip(names, pats) if p.search(body)]
        if found:  # say where, for the failure message
            db = sqlite3.connect("file:%s?mode=ro" % os.path.join(self.b.data_dir, "broker.db"), uri=True)
            for (t,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
                for row in db.execute('SELECT * FROM "%s"' % t):
                    text = repr(row).encode()
                    found += ["row of %s: %.300s" % (t, text) for p in pats if p.search(text)]
            db.close()
        return found

    def test_erase_an_employee_and_a_technician(self):
        self.world(policy="unattended")
        tid = self.new_ticket(who="liv.t", extra=["--requester", "nadia.k"], summary="VPN drops for Nadia.K every morning")
        held = self.new_ticket(extra=["--requester", "nadia.k"], summary="laptop returned by nadia.k")
        other = self.new_ticket(summary="nadia.kim's printer")  # another person: not a word of the name
        p = subprocess.run(self.console_argv(["shell", "dev1", "--ticket", tid], who="liv.t"), env=self.h.env,
                           cwd=self.h.dir, input=b"echo hello\nexit 0\n", capture_output=True, timeout=60)
        self.assertEqual(p.returncode, 0, p)
        self.ok(self.tech(["diag", "dev1", "--ticket", tid, "--attach", "--json"], who="liv.t"))
        self.ok(self.tech(["ticket", "comment", tid, "called nadia.k, she says it started monday"], who="liv.t"))
        self.ok(self.admin(["ticket", "hold", held, "--reason", "legal hold for nadia.k's case"]))
        before = self.export("nadia.k")
        self.assertEqual(len(before["recordings"]), 1)
        self.assertEqual(len(before["diagnostics"]), 1)
        # With the files: the document and each recording beside it, as recorded.
        out = os.path.join(self.h.dir, "export-nadia")
        r = self.ok(self.admin(["person", "export", "nadia.k", "--dir", out]))
        self.assertEqual(r.out, "")
        with open(os.path.join(out, "nadia.k.json")) as f:
            doc = json.load(f)
        rec = doc["recordings"][0]
        with open(os.path.join(out, "R-%d.cast.zst" % rec["id"]), "rb") as f:
            self.assertEqual(hashlib.sha256(f.read()).hexdigest(), rec["sha256"])
        self.assertEqual(sorted(os.listdir(out)), sorted(["nadia.k.json", "R-%d.cast.zst" % rec["id"]]))
        r = self.admin(["person", "export", "nadia.k", "--dir", out])  # never over an earlier export
        self.assertEqual(r.rc, 1, r)
        self.assertIn("nadia.k.json: File exists", r.err)

        # Sessions on her machine are still open (their grants have not expired): ended first.
        ended = []
        for _ in range(5):
            r = self.admin(["person", "erase", "nadia.k", "--reason", "r", "--dry-run"])
            m = re.search(r"nadia\.k is in a session that is still open: end it first \(tether session end "
                          r"(S-\d+)\)", r.err)
            if not m:
                break
            self.assertEqual(r.rc, 1, r)
            self.ok(self.tech(["session", "end", m.group(1)], who="liv.t"))
            ended.append(m.group(1))
        self.assertEqual(len(ended), 2, ended)  # the shell's and the diagnostics'

        # A dry run counts and changes nothing.
        dry = self.erase("nadia.k", "--dry-run")
        self.assertTrue(dry["dry_run"])
        self.assertEqual(dry["erasure"], 0)
        self.assertEqual((dry["counts"]["tickets"]["erased"], dry["counts"]["tickets"]["held"]), (1, 1), dry)
        self.assertEqual(dry["counts"]["recordings"]["erased"], 1, dry)
        self.assertEqual(dry["counts"]["diagnostics"]["erased"], 1, dry)
        self.assertEqual(dry["held_tickets"], [held])
        after_dry = self.export("nadia.k")
        self.assertEqual([t["id"] for t in after_dry["tickets"]], [t["id"] for t in before["tickets"]])
        self.assertEqual(len(after_dry["recordings"]), 1)

        # The erasure: the held ticket stays as it is and is named in the answer.
        e = self.erase("nadia.k")
        self.assertFalse(e["dry_run"])
        self.assertRegex(e["pseudonym"], r"^erased-[0-9a-f]{12}$")
        self.assertGreater(e["erasure"], 0)
        self.assertGreater(e["released"], 0)
        self.assertEqual(e["held_tickets"], [held])
        self.assertEqual(e["files_deleted"], 1, e)
        self.assertTrue(e["scrubbed"], e)
        t = json.loads(self.ok(self.tech(["ticket", "show", tid, "--json"])).out)["ticket"]
        self.assertEqual(t["requester"], e["pseudonym"])
        self.assertEqual(t["summary"], "VPN drops for %s every morning" % e["pseudonym"])
        self.assertIn("nadia.kim's printer", self.ok(self.tech(["ticket", "show", other])).out)
        self.assertIn("nadia.k", self.ok(self.tech(["ticket", "show", held])).out)
        self.verified()
        r = self.admin(["replay", "R-%d" % before["recordings"][0]["id"]])
        self.assertEqual(r.rc, 1, r)
        self.assertIn("was deleted when a person's data was erased", r.err)
        entry = [a for a in self.audit() if a["action"] == "person-erase"]
        self.assertEqual(len(entry), 1)
        self.assertEqual((entry[0]["actor"], entry[0]["target"]), ("boss", e["pseudonym"]))
        self.assertEqual(entry[0]["detail"]["reason"], "GDPR request #88 from " + e["pseudonym"])
        self.assertNotIn("nadia.k", json.dumps(entry[0]).lower())
        # Only the held ticket's records still name her; released, the second erasure takes them.
        self.assertTrue(self.files_naming("nadia.k"))
        self.ok(self.admin(["ticket", "release", held]))
        e2 = self.erase("nadia.k")
        self.assertEqual(e2["held_tickets"], [])
        self.assertEqual(e2["counts"]["tickets"]["erased"], 1, e2)
        self.verified()

        # A technician who can still sign in is not erased; revoked, they are, and stay out.
        r = self.admin(["person", "erase", "liv.t", "--reason", "left the company"])
        self.assertEqual(r.rc, 1, r)
        self.assertIn("liv.t can still sign in: revoke them first", r.err)
        self.ok(self.admin(["revoke", "person", "liv.t", "--reason", "left"]))
        lt = self.erase("liv.t")
        self.assertGreater(lt["counts"]["sessions"]["erased"], 0, lt)
        self.assertGreater(lt["counts"]["other"]["erased"], 0, lt)  # the people row, the revocation
        self.verified()
        self.assertEqual(self.files_naming("nadia.k", "liv.t"), [])
        r = self.tech(["devices"], who="liv.t")
        self.assertNotEqual(r.rc, 0, r)
        self.b.wait_for(r'msg="refusing peer" .*name=liv\.t reason=revoked', timeout=10)

        # Someone who can write broker.db but has no broker key rewrites who opened a ticket and
        # passes it off as an erasure whose commitment adds up: no line signed by the broker.
        victim = [a for a in self.audit() if a["action"] == "ticket-new" and a["target"] == other][0]["id"]
        self.a.stop()
        self.b.stop()
        forged = auditchain.forge_erasure(os.path.join(self.b.data_dir, "broker.db"), victim, 0, "boss")
        self.b = self.h.start_broker(port=self.b.port, data_dir=self.b.data_dir, name="broker-later")
        r = self.admin(["audit", "verify"])
        self.assertEqual(r.rc, 1, r)
        self.assertIn("entry %d, an erasure of 1 values, has no erase line signed by the broker" % forged, r.out)

        # Unknown names, devices and the erasing admin are refused, and only admins erase.
        r = self.admin(["person", "erase", "nobody.x", "--reason", "r"])
        self.assertEqual((r.rc, r.err), (1, "tether: no person is known as nobody.x (a technician, an admin, or an employee's "
                                          "user name on a ticket, a consent or a help request)\n"), r)
        r = self.admin(["person", "erase", "dev1", "--reason", "r"])
        self.assertIn("dev1 is a device, or a word of a device's name, not a person", r.err)
        r = self.tech(["person", "erase", "tech", "--reason", "r"])
        self.assertEqual(r.rc, 1, r)
        self.assertIn("permission denied", r.err)
        r = self.admin(["person", "erase", "nadia.k"])
        self.assertEqual(r.rc, 2, r)
        refused = [a for a in self.audit() if a["action"] == "person-erase-refused"]
        self.assertIn(("boss", "dev1"), [(a["actor"], a["target"]) for a in refused])

        # The key the erased technician's revocation is kept under is gone: the broker does not
        # start rather than let liv.t back in.
        self.b.stop()
        os.unlink(os.path.join(self.b.data_dir, "erase.key"))
        pki = self.pki
        r = self.h.run("tether-broker", ["--listen", "127.0.0.1:0", "--ca", pki.ca, "--ca-key", pki.ca_key, "--cert",
                                         pki.broker_cert, "--key", pki.broker_key, "--data-dir", self.b.data_dir])
        self.assertEqual(r.rc, 1, r)
        self.assertIn("erase.key is missing, and 1 erased people's revocations are kept under it", r.err)


if __name__ == "__main__":
    unittest.main()
