"""Identity and fleet: enrollment with tokens, the registry in the broker's store,
revocation, renewal, roles and the audit chain, with the real programs on 127.0.0.1.

Run by ctest as `integration.fleet` (TT_BIN_DIR names the build directory)."""

import json
import os
import re
import signal
import sqlite3
import subprocess
import time
import unittest

from harness import (TetherTestCase, K_ERROR, K_REQUEST, K_RESPONSE, ROLE_AGENT, ROLE_TECHNICIAN, Harness, Pki,
                     WireClient, frame, iso_utc_to_unix, pb_bytes, pb_parse, pb_varint)


class FleetTest(TetherTestCase):
    maxDiff = None

    @classmethod
    def setUpClass(cls):
        cls.pki = Pki()
        for role, name in (("technician", "tech"), ("admin", "boss"), ("agent", "dev-manual")):
            cls.pki.issue(role, name)
        for i in range(6):
            cls.pki.issue("agent", "busy-%d" % i)


    # -- helpers ---------------------------------------------------------------------------

    def admin(self, b, args, **kw):
        return self.h.console(b.addr, args, cert=self.pki.cert("boss"), key=self.pki.key("boss"), **kw)

    def tech(self, b, args, **kw):
        return self.h.console(b.addr, args, **kw)

    def pin(self):
        r = self.h.run("tether-certs", ["fingerprint", "--dir", self.pki.main])
        self.assertEqual(r.rc, 0, r)
        pin = r.out.strip()
        self.assertRegex(pin, r"^sha256:[0-9a-f]{64}$")
        return pin

    def new_token(self, b, *extra):
        r = self.admin(b, ["token", "new"] + list(extra))
        self.assertEqual(r.rc, 0, r)
        token = r.out.splitlines()[0].strip()
        self.assertRegex(token, r"^tt1_[0-9a-f]{64}$")
        return token

    def state_dir(self, name):
        return os.path.join(self.h.dir, "agent-" + name)

    def enroll(self, b, token, name, pin=None, hostname=None):
        return self.h.run("tether-agent", ["enroll", "--broker", b.addr, "--token", token,
                                           "--ca-pin", pin or self.pin(),
                                           "--state-dir", self.state_dir(name),
                                           "--hostname", hostname or name + ".example"])

    def enrolled_id(self, r):
        m = re.search(r"enrolled as (\S+)", r.out)
        self.assertIsNotNone(m, r)
        return m.group(1)

    def run_agent(self, b, name, extra=()):
        a = self.h.spawn("agent-" + name, "tether-agent",
                         ["run", "--broker", b.addr, "--state-dir", self.state_dir(name),
                          "--backoff-base", "100ms", "--backoff-max", "1s"] + list(extra))
        a.wait_for(r'msg="connected"')
        return a

    def enroll_and_run(self, b, name):
        r = self.enroll(b, self.new_token(b), name)
        self.assertEqual(r.rc, 0, r)
        dev = self.enrolled_id(r)
        return dev, self.run_agent(b, name)

    def device(self, b, dev):
        for d in self.h.devices(b.addr):
            if d["device"] == dev:
                return d
        return None

    # -- enrollment ------------------------------------------------------------------------

    def test_01_enroll_with_a_good_token(self):
        b = self.h.start_broker()
        t0 = time.time()
        dev, a = self.enroll_and_run(b, "laptop")
        sd = self.state_dir("laptop")
        for f, mode in (("device.key", 0o600), ("device.pem", 0o644), ("ca.pem", 0o644)):
            st = os.stat(os.path.join(sd, f))
            self.assertEqual(st.st_mode & 0o777, mode, f)
        self.assertEqual(os.stat(sd).st_mode & 0o777, 0o700)
        d = self.device(b, dev)
        self.assertIsNotNone(d, "enrolled device not listed")
        self.assertTrue(d["online"])
        self.assertEqual(d["hostname"], "laptop.example")
        self.assertFalse(d["revoked"])
        self.assertGreaterEqual(iso_utc_to_unix(d["enrolled"]), int(t0) - 1)
        r = self.tech(b, ["device", "show", dev])
        self.assertEqual(r.rc, 0, r)
        self.assertIn(dev, r.out)
        self.assertIn("laptop.example", r.out)
        # The same identity after a restart of the agent.
        a.stop()
        a2 = self.run_agent(b, "laptop")
        self.assertIn('name=%s' % dev, b.log())
        self.assertEqual(self.device(b, dev)["online"], True)
        del a2

    def test_02_tokens_are_single_use_expire_and_must_exist(self):
        b = self.h.start_broker()
        token = self.new_token(b)
        r = self.enroll(b, token, "first")
        self.assertEqual(r.rc, 0, r)
        cases = [
            ("reused", token, "second", "token already used"),
            ("wrong", "tt1_" + "0" * 64, "third", "unknown token"),
        ]
        short = self.new_token(b, "--ttl", "1s")
        time.sleep(1.5)
        cases.append(("expired", short, "fourth", "token expired"))
        for what, tok, name, needle in cases:
            with self.subTest(token=what):
                r = self.enroll(b, tok, name)
                self.assertEqual(r.rc, 1, r)
                self.assertIn(needle, r.err)
                self.assertEqual(len(r.err.strip().splitlines()), 1, r)
                self.assertFalse(os.path.exists(os.path.join(self.state_dir(name), "device.pem")))
        # N uses
        multi = self.new_token(b, "--uses", "2")
        self.assertEqual(self.enroll(b, multi, "m1").rc, 0)
        self.assertEqual(self.enroll(b, multi, "m2").rc, 0)
        self.assertEqual(self.enroll(b, multi, "m3").rc, 1)
        # Each refusal is in the audit log with its reason.
        r = self.admin(b, ["audit", "--json"])
        self.assertEqual(r.rc, 0, r)
        reasons = [json.loads(l)["detail"].get("reason") for l in r.out.splitlines()
                   if json.loads(l)["action"] == "enroll-refused"]
        for needle in ("token already used", "unknown token", "token expired"):
            self.assertIn(needle, reasons)

    def test_03_wrong_ca_pin_is_refused_before_the_token_is_sent(self):
        b = self.h.start_broker()
        token = self.new_token(b)
        r = self.h.run("tether-certs", ["fingerprint", "--dir", self.pki.foreign])
        wrong = r.out.strip()
        r = self.enroll(b, token, "pinned", pin=wrong)
        self.assertEqual(r.rc, 1, r)
        self.assertIn("pin", r.err)
        self.assertFalse(os.path.exists(os.path.join(self.state_dir("pinned"), "device.pem")))
        # The token was never presented, so it still works.
        self.assertEqual(self.enroll(b, token, "pinned").rc, 0)

    # -- roles -----------------------------------------------------------------------------

    def test_04_roles_are_enforced(self):
        b = self.h.start_broker()
        r = self.tech(b, ["token", "new"])
        self.assertEqual(r.rc, 1, r)
        self.assertIn("permission denied", r.err)
        r = self.tech(b, ["audit"])
        self.assertEqual(r.rc, 1, r)
        self.assertIn("permission denied", r.err)
        r = self.tech(b, ["revoke", "device", "dev-manual"])
        self.assertEqual(r.rc, 1, r)
        self.assertIn("permission denied", r.err)
        # An agent certificate cannot act as a console.
        r = self.h.console(b.addr, ["devices"], cert=self.pki.cert("dev-manual"), key=self.pki.key("dev-manual"))
        self.assertEqual(r.rc, 1, r)
        self.assertIn("permission denied", r.err)
        r = self.admin(b, ["audit", "--json"])
        refusals = [json.loads(l) for l in r.out.splitlines() if json.loads(l)["action"] == "refuse"]
        self.assertGreaterEqual(len(refusals), 4, r.out)

    # -- revocation ------------------------------------------------------------------------

    def test_05_revoked_device_is_cut_off_at_once_and_stays_out(self):
        b = self.h.start_broker()
        dev, a = self.enroll_and_run(b, "stolen")
        mark = a.mark()
        t0 = time.monotonic()
        r = self.admin(b, ["revoke", "device", dev, "--reason", "laptop stolen"])
        self.assertEqual(r.rc, 0, r)
        self.assertIn("1 live connection", r.out)
        a.wait_for(r'msg="disconnected"', after=mark, timeout=5)
        took = time.monotonic() - t0
        print("\n    revoked device cut off %.2f s after the revoke command" % took, flush=True)
        self.assertLess(took, 1.0 + r.elapsed)
        # It keeps trying and keeps being refused.
        b.wait_for(r'msg="refusing peer" .*name=%s reason=revoked' % re.escape(dev), timeout=10)
        time.sleep(1.5)
        d = self.device(b, dev)
        self.assertFalse(d["online"])
        self.assertTrue(d["revoked"])
        r = self.admin(b, ["audit", "--device", dev, "--json"])
        actions = [json.loads(l)["action"] for l in r.out.splitlines()]
        self.assertIn("revoke", actions)
        self.assertIn("refuse", actions)

    def test_06_revoked_person_cannot_connect(self):
        b = self.h.start_broker()
        self.assertEqual(self.tech(b, ["devices"]).rc, 0)
        r = self.admin(b, ["revoke", "person", "tech", "--reason", "left the company"])
        self.assertEqual(r.rc, 0, r)
        r = self.tech(b, ["devices"])
        self.assertEqual(r.rc, 1, r)
        self.assertIn("revoked", r.err)

    # -- renewal ---------------------------------------------------------------------------

    def test_07_device_certificate_is_renewed_before_it_expires(self):
        b = self.h.start_broker(extra=["--device-cert-lifetime", "12s"])
        dev, a = self.enroll_and_run(b, "renewing")
        pem = os.path.join(self.state_dir("renewing"), "device.pem")

        def not_after():
            out = subprocess.run(["openssl", "x509", "-in", pem, "-noout", "-enddate"],
                                 capture_output=True, text=True).stdout
            return out.strip()

        before = not_after()
        a.wait_for(r'msg="certificate renewed"', timeout=20)
        self.assertNotEqual(not_after(), before)
        # The renewed identity is the same device and works for the next connection.
        mark = a.mark()
        b.stop()
        b2 = self.h.start_broker(port=b.port, extra=["--device-cert-lifetime", "12s"])
        a.wait_for(r'msg="connected"', after=mark, timeout=15)
        self.assertTrue(self.device(b2, dev)["online"])
        r = self.admin(b2, ["audit", "--device", dev, "--json"])
        self.assertIn("renew", [json.loads(l)["action"] for l in r.out.splitlines()])

    # -- the store -------------------------------------------------------------------------

    def test_08_sigkilled_broker_restarts_with_every_device_known(self):
        b = self.h.start_broker()
        devs = [self.enroll_and_run(b, "fleet%d" % i)[0] for i in range(3)]
        os.kill(b.pid, signal.SIGKILL)
        b.p.wait(timeout=10)
        b.expect_clean_exit = False
        b2 = self.h.start_broker(port=b.port)
        listed = {d["device"] for d in self.h.devices(b2.addr)}
        for dev in devs:
            self.assertIn(dev, listed)
        for dev in devs:  # and they come back online
            deadline = time.monotonic() + 15
            while not (self.device(b2, dev) or {}).get("online"):
                self.assertLess(time.monotonic(), deadline, "%s did not reconnect" % dev)
                time.sleep(0.1)
        r = self.admin(b2, ["audit", "verify"])
        self.assertEqual(r.rc, 0, r)

    def test_09_audit_chain_verifies_and_detects_an_edited_row(self):
        b = self.h.start_broker()
        dev, a = self.enroll_and_run(b, "audited")
        r = self.admin(b, ["audit", "verify"])
        self.assertEqual(r.rc, 0, r)
        self.assertIn("intact", r.out)
        n = int(re.search(r"(\d+) entries", r.out).group(1))
        self.assertGreaterEqual(n, 4)  # start, token-new, enroll, connect
        a.stop()
        b.stop()
        db = sqlite3.connect(os.path.join(b.data_dir, "broker.db"))
        db.execute("DROP TRIGGER IF EXISTS audit_no_update")
        for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type='trigger'").fetchall():
            db.execute("DROP TRIGGER %s" % name)
        row = db.execute("SELECT id FROM audit WHERE action = 'enroll'").fetchone()[0]
        db.execute("UPDATE audit SET detail = '{\"hostname\":\"someone-else\"}' WHERE id = ?", (row,))
        db.commit()
        db.close()
        b2 = self.h.start_broker(port=b.port)
        r = self.admin(b2, ["audit", "verify"])
        self.assertEqual(r.rc, 1, r)
        self.assertIn("BROKEN at entry %d" % row, r.out)


    # -- fleet behaviour -------------------------------------------------------------------

    def test_10_an_overloaded_broker_spreads_agents_out_with_retry_after(self):
        b = self.h.start_broker(extra=["--max-hello-rate", "2"])
        agents = [self.h.start_agent(b.addr, "busy-%d" % i, "busy-host-%d" % i, wait=False,
                                     extra=["--backoff-base", "50ms", "--backoff-max", "200ms"])
                  for i in range(6)]
        for a in agents:
            a.wait_for(r'msg="connected"', timeout=30)
        told = [a for a in agents if re.search(r'msg="broker refused us" code=8 .*retry_after_ms=\d+', a.log())]
        self.assertTrue(told, "no agent was told to retry later")
        for a in told:
            log = a.log()
            m = re.search(r'retry_after_ms=(\d+)', log)
            after = int(m.group(1))
            self.assertGreaterEqual(after, 1000)
            # The next delay honours the broker's retry-after, not the 200 ms backoff cap.
            wait = int(re.search(r'msg="reconnecting" in_ms=(\d+)', log[m.end():]).group(1))
            self.assertGreaterEqual(wait, after, log)
        b.wait_for(r'msg="agents told to retry later"')

    # -- abuse -----------------------------------------------------------------------------

    def wire(self, b, name):
        return WireClient(b.port, self.pki.ca, self.pki.cert(name), self.pki.key(name))

    def test_11_an_expired_certificate_ends_the_live_connection(self):
        b = self.h.start_broker()
        r = self.h.run("tether-certs", ["issue", "technician", "shortlived", "--dir", self.pki.main,
                                        "--seconds", "3"])
        self.assertEqual(r.rc, 0, r)
        with self.wire(b, "shortlived") as c:
            c.handshake_hello(role=ROLE_TECHNICIAN)
            frames, how, secs = c.read_until_closed(timeout=10)
        errs = [pb_parse(body) for kind, _, _, body in frames if kind == K_ERROR]
        self.assertTrue(errs, "closed (%s) without an Error frame" % how)
        self.assertIn(b"expired", errs[0].get(2, [b""])[0])
        b.wait_for(r'msg="certificate expired" .*name=shortlived')

    def test_12_refused_requests_are_bounded_per_connection(self):
        b = self.h.start_broker()
        with self.wire(b, "tech") as c:
            c.handshake_hello(role=ROLE_TECHNICIAN)
            # token new, admin only, 40 times in one write: the broker has all of it when it
            # closes, so the close is not a reset racing its 16 answers (or our sends).
            c.send(b"".join(frame(K_REQUEST, pb_varint(1, i + 1) + pb_bytes(3, b"")) for i in range(40)))
            frames, how, secs = c.read_until_closed(timeout=10)
        answers = [f for f in frames if f[0] == K_RESPONSE]
        self.assertEqual(len(answers), 16, "refusals before the connection was closed")
        r = self.admin(b, ["audit", "--json"])
        refusals = [l for l in r.out.splitlines() if json.loads(l)["action"] == "refuse"]
        self.assertEqual(len(refusals), 16)

    def test_13_a_long_peer_value_cannot_push_fields_out_of_its_audit_entry(self):
        b = self.h.start_broker()
        with self.wire(b, "dev-manual") as c:
            c.handshake_hello(role=ROLE_AGENT, hostname='"' * 256)
        r = self.admin(b, ["audit", "--device", "dev-manual", "--json"])
        connect = [json.loads(l) for l in r.out.splitlines() if json.loads(l)["action"] == "connect"][0]
        d = connect["detail"]
        for field in ("role", "address", "resumed", "hostname", "version"):
            self.assertIn(field, d)
        self.assertEqual(d["truncated"], "yes")
        self.assertTrue(d["hostname"].endswith("..."))
        r = self.admin(b, ["audit", "verify"])
        self.assertEqual(r.rc, 0, r)

    def test_14_channels_are_audited_and_the_chain_head_is_logged(self):
        b = self.h.start_broker()
        b.wait_for(r'msg="audit head" when=start id=\d+ sha256=[0-9a-f]{64}')
        dev, a = self.enroll_and_run(b, "channels")
        r = self.admin(b, ["speedtest", dev, "--bytes", "1M"])  # an admin needs no ticket
        self.assertEqual(r.rc, 0, r)
        r = self.tech(b, ["speedtest", "dev-nowhere", "--bytes", "1M"])
        self.assertEqual(r.rc, 1, r)
        r = self.admin(b, ["audit", "--json"])
        entries = [json.loads(l) for l in r.out.splitlines()]
        opens = [e for e in entries if e["action"] == "channel-open"]
        self.assertEqual([(e["actor"], e["target"]) for e in opens], [("boss", dev)])
        self.assertEqual(opens[0]["detail"]["as"], "admin, without a ticket")
        refused = [e for e in entries if e["action"] == "channel-refused"]
        self.assertEqual(len(refused), 1)
        self.assertIn("not connected", refused[0]["detail"]["reason"])
        a.stop()
        last = entries[-1]["id"]
        self.assertEqual(b.stop(), 0)
        m = re.search(r'msg="audit head" when=stop id=(\d+) sha256=([0-9a-f]{64})', b.log())
        self.assertIsNotNone(m, b.log())
        self.assertGreater(int(m.group(1)), last)

    def test_15_the_token_can_come_from_standard_input(self):
        # Not on the command line, where every local user could read it in the process list.
        from harness import binary
        b = self.h.start_broker()
        token = self.new_token(b)
        argv = [binary("tether-agent"), "enroll", "--broker", b.addr, "--token", "-",
                "--ca-pin", self.pin(), "--state-dir", self.state_dir("stdin")]
        cp = subprocess.run(argv, input=token + "\n", capture_output=True, text=True, env=self.h.env,
                            timeout=30)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertIn("enrolled as", cp.stdout)
        cp = subprocess.run(argv[:5] + ["-"] + argv[6:], input="", capture_output=True, text=True,
                            env=self.h.env, timeout=30)
        self.assertEqual(cp.returncode, 2, cp.stderr)
        self.assertIn("no token on standard input", cp.stderr)

if __name__ == "__main__":
    unittest.main()
