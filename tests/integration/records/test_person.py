"""tether person export: everything the broker holds about one person, as one JSON document:
an employee named as a ticket's requester (the ticket, its whole timeline, the audit entries
that name them) and a technician (who they are, their ssh keys, the sessions they took, their
recordings and diagnostics reports, their audit entries); the export is itself audited; a
name nobody holds gives empty sections; only admins export. The real programs on 127.0.0.1.

Run by ctest as `integration.person` (TT_BIN_DIR names the build directory)."""

import json
import os
import subprocess
import unittest

from harness import Pki, TetherTestCase
from test_session import SessionWorld

SECTIONS = ["profile", "tickets", "events", "sessions", "recordings", "diagnostics", "audit"]


class PersonExportTest(SessionWorld, TetherTestCase):
    maxDiff = None

    @classmethod
    def setUpClass(cls):
        cls.pki = Pki()
        for role, name in (("technician", "tech"), ("admin", "boss"), ("agent", "dev1")):
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


if __name__ == "__main__":
    unittest.main()
