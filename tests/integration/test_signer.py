"""The CA key lives in the signer process only: the broker starts it (a child of its own),
never opens the key file and never holds the key in its memory; a signer that dies is
restarted (a bounded number of times) while the broker carries on, and enrollment and
renewal go on through it. Run by ctest as `integration.signer`; the signer's refusals of
garbage and oversized requests are in the unit test (unit.signer)."""

import os
import re
import signal
import subprocess
import time
import unittest

from harness import TetherTestCase, Pki

RESTARTS_MAX = 5  # TT_SIGNER_RESTARTS_MAX


def children(pid):
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                stat = f.read()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces and parentheses.
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            out.append(int(d))
    return out


def cmdline(pid):
    with open("/proc/%d/cmdline" % pid, "rb") as f:
        return [a.decode() for a in f.read().split(b"\0") if a]


def private_scalar(key_path):
    """The 32 bytes of a P-256 private key, as they sit in memory in a BIGNUM."""
    out = subprocess.run(["openssl", "pkey", "-in", key_path, "-text", "-noout"],
                         capture_output=True, text=True, check=True).stdout
    m = re.search(r"priv:\s*\n((?:\s+[0-9a-f:]+\n)+)", out)
    return bytes.fromhex(re.sub(r"[\s:]", "", m.group(1)))[-32:]


def memory_holds(pid, needle):
    """Whether any anonymous, readable mapping of pid (up to 256 MiB each: the sanitizers'
    reserved ranges are left out) holds needle. PermissionError if we may not look."""
    with open("/proc/%d/maps" % pid) as maps, open("/proc/%d/mem" % pid, "rb", 0) as mem:
        for line in maps:
            f = line.split()
            lo, hi = (int(x, 16) for x in f[0].split("-"))
            if "r" not in f[1] or hi - lo > 256 << 20 or (len(f) > 5 and f[5].startswith("/")):
                continue
            try:
                mem.seek(lo)
                data = mem.read(hi - lo)
            except OSError:
                continue
            if needle in data:
                return True
    return False


class SignerTest(TetherTestCase):

    @classmethod
    def setUpClass(cls):
        cls.pki = Pki()
        cls.pki.issue("admin", "boss")

    # -- helpers ---------------------------------------------------------------------------

    def token(self, b):
        r = self.h.console(b.addr, ["token", "new"], cert=self.pki.cert("boss"), key=self.pki.key("boss"))
        self.assertEqual(r.rc, 0, r)
        return r.out.splitlines()[0].strip()

    def pin(self):
        r = self.h.run("tether-certs", ["fingerprint", "--dir", self.pki.main])
        return r.out.strip()

    def state_dir(self, name):
        return os.path.join(self.h.dir, "agent-" + name)

    def enroll(self, b, name):
        return self.h.run("tether-agent", ["enroll", "--broker", b.addr, "--token", self.token(b),
                                           "--ca-pin", self.pin(), "--state-dir", self.state_dir(name),
                                           "--hostname", name + ".example"])

    def signer(self, b, after=0):
        """The pid of the broker's signer (the one it last said it started)."""
        m = b.wait_for(r'msg="signer started" pid=(\d+)', after=after)
        pid = int(m.group(1))
        self.assertIn(pid, children(b.pid), "the signer is not a child of the broker")
        return pid

    def kill_signer(self, b, pid):
        """SIGKILL the signer; the pid of the one the broker starts in its place."""
        mark = b.mark()
        os.kill(pid, signal.SIGKILL)
        b.wait_for(r'msg="signer exited" pid=%d .*signal=9' % pid, after=mark)
        return mark

    # -- tests -----------------------------------------------------------------------------

    def test_01_the_broker_never_holds_the_ca_key(self):
        b = self.h.start_broker()
        # A signing has happened (the key was used) before we look.
        r = self.enroll(b, "one")
        self.assertEqual(r.rc, 0, r)
        key = os.path.realpath(self.pki.ca_key)
        fds = os.listdir("/proc/%d/fd" % b.pid)
        self.assertNotIn(key, [os.path.realpath("/proc/%d/fd/%s" % (b.pid, fd)) for fd in fds])
        try:
            held = memory_holds(b.pid, private_scalar(self.pki.ca_key))
        except PermissionError as e:
            held = None
            note = "cannot read the broker's memory here (%s)" % e
        self.assertFalse(held, "the CA's private key is in the broker's memory")
        # It is in a process of its own, the broker's child.
        pid = self.signer(b)
        argv = cmdline(pid)
        self.assertEqual(argv[1:3], ["--signer", "3"])
        self.assertIn(self.pki.ca_key, argv)
        if held is None:
            self.skipTest(note + "; the rest was checked")

    def test_02_a_killed_signer_is_restarted_and_signing_goes_on(self):
        b = self.h.start_broker(extra=["--device-cert-lifetime", "12s"])
        old = self.signer(b)
        r = self.enroll(b, "renewing")
        self.assertEqual(r.rc, 0, r)
        a = self.h.spawn("agent-renewing", "tether-agent",
                         ["run", "--broker", b.addr, "--state-dir", self.state_dir("renewing"),
                          "--backoff-base", "100ms", "--backoff-max", "1s"])
        a.wait_for(r'msg="connected"')
        mark = self.kill_signer(b, old)
        # Right away: a clean refusal or, if the new signer is already up, a certificate.
        r = self.enroll(b, "meanwhile")
        self.assertTrue(r.rc == 0 or "try again" in r.err, r)
        new = self.signer(b, after=mark)
        self.assertNotEqual(new, old)
        self.assertEqual(self.enroll(b, "after").rc, 0)
        # The agent renews (at two thirds of 12 s) through the new signer.
        a.wait_for(r'msg="certificate renewed"', timeout=20)
        self.assertTrue(b.alive())

    def test_03_a_signer_that_keeps_dying_is_not_restarted_in_a_loop(self):
        b = self.h.start_broker()
        pid = self.signer(b)
        for i in range(RESTARTS_MAX - 1):
            mark = self.kill_signer(b, pid)
            pid = self.signer(b, after=mark)
        mark = self.kill_signer(b, pid)
        b.wait_for(r'msg="the signer keeps failing: enrollment and renewal wait" next_start_in_ms=\d+',
                   after=mark)
        r = self.enroll(b, "waiting")
        self.assertEqual(r.rc, 1, r)
        self.assertIn("the broker cannot sign certificates at the moment; try again later", r.err)
        self.assertEqual(b.count(r'msg="signer started"', after=mark), 0)
        self.assertTrue(b.alive())

    def test_04_a_key_that_is_not_the_cas_stops_the_broker_at_start(self):
        r = self.h.run("tether-broker", ["--listen", "127.0.0.1:0", "--ca", self.pki.ca,
                                         "--ca-key", os.path.join(self.pki.foreign, "ca.key"),
                                         "--cert", self.pki.broker_cert, "--key", self.pki.broker_key,
                                         "--data-dir", os.path.join(self.h.dir, "data")])
        self.assertEqual(r.rc, 1, r)
        self.assertIn("tether-broker: signer: ", r.err)
        self.assertIn("does not belong to", r.err)


if __name__ == "__main__":
    unittest.main()
