"""The file commands' command line (tether pull, push, cp, ls): every mistake a technician
can make on it is refused before the console connects (exit 2, one line, nothing on
stdout), and a valid one goes to the broker asking for a session with file access under
the ticket, from --ticket or TETHER_TICKET. Transfers themselves are the subject of the
file-transfer suite.

Run by ctest as `integration.files_cli` (TT_BIN_DIR names the build directory)."""

import os
import unittest

from harness import Pki, TetherTestCase, free_port
from test_session import SessionWorld


class FilesCliTest(SessionWorld, TetherTestCase):
    @classmethod
    def setUpClass(cls):
        cls.pki = Pki()
        for role, name in (("technician", "tech"), ("admin", "boss"), ("agent", "dev1")):
            cls.pki.issue(role, name)

    def local(self, *parts):
        return os.path.join(self.h.dir, *parts)

    def test_usage_errors_before_connecting(self):
        os.makedirs(self.local("evidence", "dir"))
        with open(self.local("a.txt"), "w") as f:
            f.write("a")
        # Nothing listens there: a console that connected would fail with exit 1 instead.
        addr = "127.0.0.1:%d" % free_port()
        a_txt, ev, d = self.local("a.txt"), self.local("evidence"), self.local("evidence", "dir")
        cases = [
            (["pull", "dev1", "/var/log/syslog", ev], "--ticket is required"),
            (["pull", "dev1", "--ticket", "S-3", "/var/log/syslog", ev], "not a ticket"),
            (["pull", "dev/1", "--ticket", "T-3", "/a", ev], "'dev/1' is not a device id"),
            (["pull", "dev1", "--ticket", "T-3", "/a", "/b", a_txt], "is not a directory"),
            (["pull", "dev1", "--ticket", "T-3", "/a", "/b", self.local("nothere")], "no such directory"),
            (["pull", "dev1", "--ticket", "T-3", "/x/a", "/y/a", ev], "two sources would land on"),
            (["push", "dev1", "--ticket", "T-3", self.local("missing"), "/tmp/"], "No such file or directory"),
            (["push", "dev1", "--ticket", "T-3", d, "/tmp/"], "is a directory (push it with -r)"),
            (["cp", "--ticket", "T-3", a_txt, self.local("b.txt")], "DEVICE:PATH on one side"),
            (["cp", "--ticket", "T-3", "dev1:/a", "dev1:/b"], "on one side only"),
            (["cp", "--ticket", "T-3", "dev1:/a", a_txt, ev], "all local or all on the device"),
            (["cp", "--ticket", "T-3", a_txt, "dev1:"], "names no path on the device"),
            (["cp", "--ticket", "T-3", a_txt, "dev$1:/tmp/"], "'dev$1' is not a device id"),
            (["cp", a_txt, "dev1:/tmp/"], "--ticket is required"),
            (["ls", "dev1", "--ticket", "T-3", "/var/log", "--force"], "--force does not apply to 'ls'"),
            (["ls", "dev1", "--ticket", "T-3"], "usage: tether ls"),
            (["pull", "dev1", "--ticket", "T-3", "-x", "/a", ev], "unknown flag"),
        ]
        for args, needle in cases:
            with self.subTest(args=args):
                r = self.h.console(addr, args)
                self.assertEqual(r.rc, 2, r)
                self.assertEqual(r.out, "", r)
                lines = r.err.strip().splitlines()
                self.assertEqual(len(lines), 1, r)
                self.assertIn(needle, lines[0], r)

    def test_asks_for_file_access_under_the_ticket(self):
        self.world(policy="unattended")
        tid = self.new_ticket()
        os.makedirs(self.local("evidence"))
        with open(self.local("a.txt"), "w") as f:
            f.write("a")
        runs = [
            (["pull", "dev1", "--ticket", tid, "/tmp/nothing-here", self.local("evidence")], None),
            (["ls", "dev1", "--ticket", tid, "/tmp"], None),
            # cp takes the ticket from the environment; -r is --recursive. Into a directory
            # that does not exist: whatever serves files then, nothing is left behind.
            (["cp", "-r", self.local("a.txt"), "dev1:" + self.local("no-such-dir") + "/"], tid),
        ]
        for args, env_ticket in runs:
            with self.subTest(args=args):
                saved = self.h.env
                if env_ticket:
                    self.h.env = dict(saved, TETHER_TICKET=env_ticket)
                try:
                    r = self.tech(args)
                finally:
                    self.h.env = saved
                # Past the checks (not 2), whatever the device then makes of the request.
                self.assertIn(r.rc, (0, 1), r)
                self.assertNotIn("usage", r.err, r)
        requests = [e for e in self.audit() if e["action"] == "session-request"]
        self.assertEqual([e["detail"]["access"] for e in requests], ["files"], requests)
        self.assertIn("session-reuse", self.actions())


if __name__ == "__main__":
    unittest.main()
