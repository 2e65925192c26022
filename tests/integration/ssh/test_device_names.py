"""DEVICE is a device id or a hostname that names exactly one device, everywhere a command
takes one: the whole hostname or its first label, either case; an id wins over a hostname;
revoked devices name nothing; a name several devices share is refused with the matches
listed; a name that matches nothing reaches the command as typed. The technician's wait
for consent names the machine by its hostname. The real programs on 127.0.0.1.

Run by ctest as `integration.device_names` (TT_BIN_DIR names the build directory)."""

import json
import os
import unittest

from harness import Pki, TetherTestCase
from test_session import ME, SessionWorld

UNATTENDED = ["--consent-policy", "unattended", "--shell-user", ME]


class DeviceNamesTest(SessionWorld, TetherTestCase):
    maxDiff = None

    @classmethod
    def setUpClass(cls):
        cls.pki = Pki()
        for role, name in (("technician", "tech"), ("admin", "boss"), ("agent", "dev1"), ("agent", "dev2"),
                           ("agent", "dev3"), ("agent", "dev4"), ("agent", "dev5")):
            cls.pki.issue(role, name)

    def setUp(self):
        super().setUp()
        self.world(policy="unattended")
        for dev, host in (("dev2", "Sams-Laptop.corp.example"), ("dev3", "shared.corp"), ("dev4", "shared.corp"),
                          ("dev5", "dev2")):
            self.h.start_agent(self.b.addr, dev, host, extra=UNATTENDED)

    def show(self, name):
        r = self.tech(["device", "show", name, "--json"])
        self.assertEqual(r.rc, 0, r)
        return json.loads(r.out)["device"]

    def test_hostnames_name_devices(self):
        # The whole hostname or its first label, either case.
        for name in ("sams-laptop", "SAMS-LAPTOP", "sams-laptop.corp.example", "Sams-Laptop.Corp.Example"):
            self.assertEqual(self.show(name), "dev2", name)
        # An id is an id, even where another device calls itself by it.
        self.assertEqual(self.show("dev2"), "dev2")
        self.assertEqual(self.show("dev5"), "dev5")
        # A ticket, a command and the audit all take the hostname.
        tid = self.new_ticket(extra=())  # dev1 by its id
        r = self.tech(["ticket", "new", "--device", "sams-laptop", "--summary", "vpn drops"])
        self.assertEqual(r.rc, 0, r)
        t2 = r.out.split()[0]
        self.assertEqual(self.ticket(t2)["ticket"]["device"], "dev2")
        r = self.tech(["exec", "sams-laptop", "--ticket", t2, "--", "echo", "on-dev2"])
        self.assertEqual((r.rc, r.out), (0, "on-dev2\n"), r)
        r = self.tech(["exec", "dev1.example", "--ticket", tid, "--", "echo", "on-dev1"])
        self.assertEqual((r.rc, r.out), (0, "on-dev1\n"), r)
        # The file commands take the hostname too (cp DEVICE:PATH as scp reads it, ls DEVICE PATH).
        local = os.path.join(self.h.dir, "note.txt")
        with open(local, "w") as f:
            f.write("for sam\n")
        remote = "/tmp/tt-devnames-%d.txt" % os.getpid()
        self.addCleanup(lambda: os.path.exists(remote) and os.unlink(remote))
        r = self.tech(["cp", local, "sams-laptop:" + remote, "--ticket", t2, "--force"])
        self.assertEqual(r.rc, 0, r)
        r = self.tech(["ls", "Sams-Laptop", remote, "--ticket", t2, "--json"])
        self.assertEqual(r.rc, 0, r)
        self.assertEqual([e["size"] for e in json.loads(r.out)], [8], r.out)
        r = self.admin(["audit", "--device", "sams-laptop", "--json"])
        self.assertEqual(r.rc, 0, r)
        acts = [json.loads(ln)["action"] for ln in r.out.splitlines()]
        self.assertIn("channel-open", acts)

    def test_ambiguous_and_unknown_names(self):
        tid = self.new_ticket()
        r = self.tech(["exec", "shared", "--ticket", tid, "--", "true"])
        self.assertEqual(r.rc, 1, r)
        self.assertIn("shared names 2 devices: dev3 (shared.corp), dev4 (shared.corp); name one by its id",
                      r.err)
        r = self.tech(["device", "show", "shared.corp"])
        self.assertEqual(r.rc, 1, r)
        self.assertIn("names 2 devices", r.err)
        # A name that matches nothing reaches the command, which says what is wrong.
        r = self.tech(["exec", "nosuch", "--ticket", tid, "--", "true"])
        self.assertEqual(r.rc, 1, r)
        self.assertNotIn("names", r.err)
        r = self.tech(["device", "show", "nosuch"])
        self.assertEqual(r.rc, 1, r)
        self.assertIn("no device has the id or hostname nosuch", r.err)
        # A revoked device names nothing: the name is the other one's now.
        self.assertEqual(self.admin(["revoke", "device", "dev4"]).rc, 0)
        self.assertEqual(self.show("shared"), "dev3")
        # A filter keeps a name that matches nothing: the records of a device since gone.
        r = self.admin(["audit", "--device", "nosuch", "--json"])
        self.assertEqual((r.rc, r.out), (0, ""), r)


if __name__ == "__main__":
    unittest.main()
