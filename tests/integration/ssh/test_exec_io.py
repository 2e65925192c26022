"""`tether exec` as ssh users expect it: what is piped in reaches the remote command (then its
end), a command that stops reading does not stall the session, a large input moves under the
channel's credit without loss, and `-t` runs the command on a pty (typing reaches it, its
exit status comes back) with the arguments quoted for the remote shell. The real programs on
127.0.0.1.

Run by ctest as `integration.exec_io` (TT_BIN_DIR names the build directory)."""

import hashlib
import os
import unittest

from harness import Pki, TetherTestCase
from test_session import SessionWorld


class ExecIoTest(SessionWorld, TetherTestCase):
    maxDiff = None

    @classmethod
    def setUpClass(cls):
        cls.pki = Pki()
        for role, name in (("technician", "tech"), ("admin", "boss"), ("agent", "dev1")):
            cls.pki.issue(role, name)

    def setUp(self):
        super().setUp()
        self.world(policy="unattended")
        self.tid = self.new_ticket()

    def exec(self, argv, input=None, extra=()):
        return self.tech(["exec", "dev1", "--ticket", self.tid] + list(extra) + ["--"] + list(argv), input=input)

    def test_stdin_reaches_the_command(self):
        r = self.exec(["cat"], input=b"a\nb\n")
        self.assertEqual((r.rc, r.out), (0, "a\nb\n"), r)
        # sh -s < script: the way a fix is pushed to a machine.
        r = self.exec(["sh", "-s"], input=b"echo one\nx=$((6*7)); echo $x\nexit 5\n")
        self.assertEqual((r.rc, r.out), (5, "one\n42\n"), r)
        # Empty input is an immediate end: a command reading it does not wait.
        r = self.exec(["wc", "-c"], input=b"")
        self.assertEqual((r.rc, r.out.strip()), (0, "0"), r)

    def test_large_input_arrives_whole(self):
        data = os.urandom(6 * 1024 * 1024 + 12345)  # many channel windows
        r = self.exec(["sha256sum"], input=data)
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(r.out.split()[0], hashlib.sha256(data).hexdigest())

    def test_command_that_stops_reading(self):
        # head exits after 10 bytes: the rest of the input is dropped, not waited on.
        r = self.exec(["head", "-c", "10"], input=b"0123456789" * 400000)
        self.assertEqual((r.rc, r.out), (0, "0123456789"), r)
        # A command that never reads its input ends the session by itself.
        r = self.exec(["sh", "-c", "exit 4"], input=b"x" * (3 * 1024 * 1024))
        self.assertEqual(r.rc, 4, r)

    def test_tty_runs_on_a_pty(self):
        c = self.pty_console(["exec", "-t", "dev1", "--ticket", self.tid, "--",
                              "sh", "-c", "tty; read x; echo \"got [$x]\"; exit 3"])
        c.wait_output(rb"/dev/pts/\d+")
        c.write(b"hello there\r")
        c.wait_output(rb"got \[hello there\]")
        self.assertEqual(c.wait_exit(), 3)
        # Without -t the command has no terminal, even when the console has one.
        c = self.pty_console(["exec", "dev1", "--ticket", self.tid, "--", "sh", "-c", "tty || echo none"])
        self.assertEqual(c.wait_exit(), 0)
        self.assertIn(b"not a tty", c.output())

    def test_tty_quotes_the_arguments(self):
        c = self.pty_console(["exec", "-t", "dev1", "--ticket", self.tid, "--",
                              "printf", "[%s]", "a b", "it's", "$HOME", ""])
        self.assertEqual(c.wait_exit(), 0)
        self.assertIn(b"[a b][it's][$HOME][]", c.output())
        # The records say what ran, as the shell was given it.
        opened = [e for e in self.audit() if e["action"] == "channel-open"]
        self.assertIn("printf '[%s]' 'a b' 'it'\\''s' '$HOME' ''", [e["detail"].get("command") for e in opened])


if __name__ == "__main__":
    unittest.main()
