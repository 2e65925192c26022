"""The SIEM feed and `tether audit follow`: every audit entry reaches a TLS syslog collector
(RFC 5425 framing) exactly once and in order, across a collector outage (the broker goes on
answering, `tether status` says how far behind it is) and across a broker restart (the cursor
is in the store); a collector with a certificate from another CA is refused and reported; a
collector that stops reading or resets never holds the broker up. `audit follow` streams the
same entries in jsonl, cef or rfc5424, resumes with --from, and goes on live. The real
programs and a test collector (records/collector.py) on 127.0.0.1.

Run by ctest as `integration.siem` (TT_BIN_DIR names the build directory)."""

import json
import os
import re
import select
import subprocess
import time
import unittest

from harness import Pki, TetherTestCase, binary
from records.collector import Collector, make_server_cert, parse_seq


class SiemTest(TetherTestCase):
    maxDiff = None

    @classmethod
    def setUpClass(cls):
        cls.pki = Pki()
        for role, name in (("technician", "tech"), ("admin", "boss")):
            cls.pki.issue(role, name)

    def setUp(self):
        super().setUp()
        self.ca, self.cert, self.key = make_server_cert(os.path.join(self.h.dir, "collector"))
        os.makedirs(os.path.join(self.h.dir, "other"), exist_ok=True)
        self.col = Collector(self.cert, self.key).start()
        self.addCleanup(self.col.stop)

    def broker(self, fmt="rfc5424", ca=None, port=0, name="broker"):
        extra = ["--siem-target", "tls://127.0.0.1:%d" % self.col.port, "--siem-ca", ca or self.ca,
                 "--siem-format", fmt]
        data = os.path.join(self.h.dir, "data")
        self.b = self.h.start_broker(port=port, name=name, extra=extra, data_dir=data)
        return self.b

    def boss(self, args):
        r = self.h.console(self.b.addr, args, cert=self.pki.cert("boss"), key=self.pki.key("boss"))
        self.assertEqual(r.rc, 0, r)
        return r

    def head(self):
        return json.loads(self.boss(["audit", "--json"]).out.splitlines()[-1])["id"]

    def status(self):
        return json.loads(self.boss(["status", "--json"]).out)

    def quiet(self):
        """Until the collector has every entry, the last being the disconnect of the console run
        that asked: a collector stopped now has nothing unread in its socket (what its TCP
        acknowledged but it never read is lost with it: syslog over TLS has no acknowledgement
        of its own)."""
        head = self.head()
        self.col.wait_for_seq(head + 1)

    def entries(self, n, note="t"):
        for i in range(n):
            self.boss(["token", "new", "--note", "%s%d" % (note, i)])

    def assert_exactly_once(self, upto):
        """Entries 1..upto each arrived once, and in order (later ones may be on their way: each
        console command is itself audited)."""
        seqs = self.col.seqs()
        self.assertEqual(len(seqs), len(set(seqs)), "no entry twice: %s" % seqs)
        self.assertEqual(seqs, sorted(seqs), "in order")
        self.assertEqual([s for s in seqs if s <= upto], list(range(1, upto + 1)), "no gap")

    def test_outage_and_restart_lose_nothing_and_repeat_nothing(self):
        self.broker()
        self.entries(3)
        head = self.head()
        self.col.wait_for_seq(head)
        # The messages are RFC 5424 with the sequence number and the chain hash.
        msg = self.col.messages()[0]
        self.assertRegex(msg, r'^<1\d\d>1 \S+Z \S+ tether-broker - \S+ \[tether@32473 seq="1" actor="[^"]*" '
                              r'target="[^"]*" hash="[0-9a-f]{64}" prev="0{64}" ocsf_class="\d+"\] \{')
        first = json.loads(self.boss(["audit", "--json"]).out.splitlines()[0])
        self.assertIn('hash="%s"' % first["hash"], msg)

        # The collector goes away for a while; the broker keeps answering and says so.
        self.quiet()
        self.col.stop()
        t0 = time.monotonic()
        self.entries(20, note="down")
        self.assertLess(time.monotonic() - t0, 60)
        self.wait_until(lambda: not self.status()["siem"]["up"], "status says the feed is down")
        st = self.status()["siem"]
        self.assertGreaterEqual(st["behind"], 20)
        self.assertTrue(st["down_since"])
        r = self.boss(["status"])
        self.assertIn("SIEM feed: NOT CONNECTED to tls://127.0.0.1:%d since " % self.col.port, r.out)
        self.assertIn('msg="collector unreachable"', self.b.log())

        # It comes back: the backlog arrives, no gap, no repeat.
        self.col.start()
        head = self.head()
        self.col.wait_for_seq(head, timeout=60)
        self.wait_until(lambda: self.status()["siem"]["up"], "status says the feed is up")
        self.assert_exactly_once(head)

        # The broker restarts: it resumes from the cursor in its store.
        port = self.b.port
        self.b.stop()
        self.broker(port=port, name="broker2")
        self.entries(2, note="after")
        head = self.head()
        self.col.wait_for_seq(head, timeout=60)
        self.assert_exactly_once(head)

    def test_a_collector_of_another_ca_is_refused_and_reported(self):
        other_ca, _, _ = make_server_cert(os.path.join(self.h.dir, "other"))
        self.broker(ca=other_ca)
        self.entries(2)
        self.wait_until(lambda: self.status()["siem"]["error"], "the failure is reported")
        st = self.status()["siem"]
        self.assertFalse(st["up"])
        self.assertIn("certificate", st["error"])
        self.assertEqual(self.col.seqs(), [])
        self.assertGreaterEqual(self.col.tls_failures, 1)

    def test_a_slow_or_resetting_collector_never_holds_the_broker(self):
        self.broker(fmt="cef")
        self.entries(2)
        self.col.wait_for_seq(self.head())
        self.assertTrue(self.col.messages()[0].startswith("CEF:0|Tether|tether-broker|"))
        # It stops reading: the broker answers as before, and all arrives once it reads again.
        self.col.pause_reading()
        t0 = time.monotonic()
        self.entries(30, note="slow")
        self.assertLess(time.monotonic() - t0, 60)
        self.col.resume_reading()
        self.col.wait_for_seq(self.head(), timeout=60)
        # It resets every connection: the broker reconnects and goes on.
        self.quiet()
        self.col.reset_all()
        self.entries(3, note="reset")
        head = self.head()
        self.col.wait_for_seq(head, timeout=60)
        self.col.wait_connections(2)
        self.assert_exactly_once(head)

    def test_bad_configuration_is_refused_at_start(self):
        p = self.h.spawn("bad", "tether-broker",
                         ["--listen", "127.0.0.1:0", "--ca", self.pki.ca, "--ca-key", self.pki.ca_key,
                          "--cert", self.pki.broker_cert, "--key", self.pki.broker_key,
                          "--data-dir", os.path.join(self.h.dir, "bad"), "--siem-target", "udp://127.0.0.1:514",
                          "--siem-ca", self.ca])
        p.p.wait(timeout=30)
        p.expect_clean_exit = False
        self.assertEqual(p.p.returncode, 2)
        self.assertIn("siem.target: want tls://HOST:PORT", p.log())


class FollowTest(TetherTestCase):
    maxDiff = None

    @classmethod
    def setUpClass(cls):
        cls.pki = Pki()
        cls.pki.issue("admin", "boss")

    def boss(self, args):
        r = self.h.console(self.b.addr, args, cert=self.pki.cert("boss"), key=self.pki.key("boss"))
        self.assertEqual(r.rc, 0, r)
        return r

    def follow(self, *args):
        argv = [binary("tether"), "--broker", self.b.addr, "--ca", self.pki.ca, "--cert", self.pki.cert("boss"),
                "--key", self.pki.key("boss"), "audit", "follow"] + list(args)
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=self.h.env, cwd=self.h.dir)
        self.addCleanup(lambda: (p.poll() is None and p.kill(), p.wait(timeout=10), p.stdout.close(),
                                 p.stderr.close()))
        return p

    def read_until(self, p, seq, timeout=30):
        """Lines until one with this sequence number (bounded: the follower never ends by itself)."""
        lines, deadline = [], time.monotonic() + timeout
        fd, buf = p.stdout.fileno(), b""
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], deadline - time.monotonic())
            if not ready:
                break
            chunk = os.read(fd, 65536)
            if not chunk:
                self.fail("audit follow ended: %s" % p.stderr.read())
            buf += chunk
            *done, buf = buf.split(b"\n")
            lines += [ln.decode() for ln in done]
            if lines and parse_seq(lines[-1]) is not None and parse_seq(lines[-1]) >= seq:
                return lines
        self.fail("no entry %d within %ds: %s" % (seq, timeout, lines[-3:]))

    def test_follow_resumes_and_goes_on_live(self):
        self.b = self.h.start_broker()
        for i in range(5):
            self.boss(["token", "new", "--note", "n%d" % i])
        entries = [json.loads(ln) for ln in self.boss(["audit", "--json"]).out.splitlines()]
        head = entries[-1]["id"]
        # From the start, as JSON lines: the same entries with their chain hashes.
        p = self.follow()
        lines = self.read_until(p, head)
        got = [json.loads(ln) for ln in lines][:len(entries)]  # (each console run adds entries of its own)
        self.assertEqual([g["seq"] for g in got], [e["id"] for e in entries])
        self.assertEqual([g["hash"] for g in got], [e["hash"] for e in entries])
        self.assertEqual(got[0]["prev_hash"], "0" * 64)
        self.assertIn("class_uid", got[0]["ocsf"])
        # Live: a new entry shows up without asking again.
        self.boss(["token", "new", "--note", "live"])
        live = [e for e in map(json.loads, self.boss(["audit", "--json"]).out.splitlines()) if e["action"] == "token-new"]
        more = [json.loads(ln) for ln in self.read_until(p, live[-1]["id"])]
        self.assertEqual([m["action"] for m in more if m["seq"] == live[-1]["id"]], ["token-new"])
        head = live[-1]["id"] - 1
        # Resumed from a sequence number, in the other formats.
        p2 = self.follow("--from", str(head - 1), "--format", "cef")
        cef = self.read_until(p2, head + 1)[:3]
        self.assertEqual([parse_seq(ln) for ln in cef], [head - 1, head, head + 1])
        self.assertTrue(all(ln.startswith("CEF:0|Tether|tether-broker|") for ln in cef))
        p3 = self.follow("--from", str(head), "--format", "rfc5424")
        sys = self.read_until(p3, head + 1)[:2]
        self.assertEqual([parse_seq(ln) for ln in sys], [head, head + 1])
        self.assertRegex(sys[0], r'^<1\d\d>1 .* \[tether@32473 seq="%d" ' % head)
        # Its reader goes away in a quiet log (`| head -2`): it ends, without waiting for an entry.
        # From the last entry: it prints that one and its own connect, then nothing comes.
        last = json.loads(self.boss(["audit", "--json"]).out.splitlines()[-1])["id"]
        argv = [binary("tether"), "--broker", self.b.addr, "--ca", self.pki.ca, "--cert", self.pki.cert("boss"),
                "--key", self.pki.key("boss"), "audit", "follow", "--from", str(last + 1)]
        p4 = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=self.h.env, cwd=self.h.dir)
        for _ in range(2):
            self.assertTrue(p4.stdout.readline())
        p4.stdout.close()
        self.assertEqual(p4.wait(timeout=30), 0)
        p4.stderr.close()
        # Bad input is said before anything is sent.
        r = self.h.console(self.b.addr, ["audit", "follow", "--format", "xml"], cert=self.pki.cert("boss"),
                           key=self.pki.key("boss"))
        self.assertEqual((r.rc, r.err), (2, "tether: --format: jsonl, cef or rfc5424\n"))
        r = self.h.console(self.b.addr, ["audit", "follow", "--from", "3", "--since", "1h"],
                           cert=self.pki.cert("boss"), key=self.pki.key("boss"))
        self.assertEqual(r.rc, 2, r)


if __name__ == "__main__":
    unittest.main()
