"""Integration tests of the link: real broker, agent and console on 127.0.0.1, certificates
made at test time, hostile peers written by hand. Run by ctest (integration.link) with
TT_BIN_DIR set to the build directory; or by hand:
    TT_BIN_DIR=build/debug python3 -m unittest -v test_link   (from tests/integration)
TT_KEEP_TMP=1 keeps every temporary directory (logs are kept anyway when a test fails).
"""

import json
import os
import signal
import random
import re
import socket
import ssl
import time
import unittest

from harness import (TetherTestCase, K_CH_OPEN, K_CH_REJECT, K_CH_CLOSE, ERR_ROLE, ERR_TOO_BIG, ERR_VERSION, K_HELLO, K_REQUEST, K_WELCOME,
                     ROLE_AGENT, ROLE_TECHNICIAN, Harness, Pki, WireClient, error_of,
                     free_port, frame, hello_body, iso_utc_to_unix, pb_bytes, pb_parse, pb_varint)

ERR_PROTOCOL = 1
ROLE_ADMIN = 3
MiB = 1024 * 1024


def recv_until_closed(sock, timeout):
    """Read a plain socket until the peer closes it; (bytes received, seconds).
    Fails the test if it is still open at the deadline."""
    t0 = time.monotonic()
    got = b""
    while True:
        left = timeout - (time.monotonic() - t0)
        if left <= 0:
            raise AssertionError("broker kept the connection open for %.0fs" % timeout)
        sock.settimeout(left)
        try:
            data = sock.recv(65536)
        except socket.timeout:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return got, time.monotonic() - t0
        if not data:
            return got, time.monotonic() - t0
        got += data


class LinkTest(TetherTestCase):
    maxDiff = None

    @classmethod
    def setUpClass(cls):
        cls.pki = Pki()
        for role, name in (("agent", "dev-a"), ("agent", "dev-b"), ("technician", "tech"),
                           ("admin", "boss")):
            cls.pki.issue(role, name)
        # A second CA, unknown to the broker, with identities that look right otherwise.
        cls.pki.issue("agent", "rogue", foreign=True)
        cls.pki.issue("technician", "mallory", foreign=True)
        cls.pki.issue("agent", "dev-a", foreign=True)  # an impersonator of a real device


    # -- helpers ---------------------------------------------------------------------------

    def broker_with_agent(self, device="dev-a", hostname="host-a.example", broker_extra=(),
                          agent_extra=()):
        b = self.h.start_broker(extra=broker_extra)
        a = self.h.start_agent(b.addr, device, hostname, extra=agent_extra)
        b.wait_for(r'msg="peer connected" .*role=agent name=%s ' % re.escape(device))
        return b, a

    def assert_still_listed(self, b, a, device="dev-a"):
        """The broker survived and the agent's one connection was never touched."""
        self.assertTrue(b.alive(), "broker died; log:\n%s" % b.log())
        names = [d["device"] for d in self.h.devices(b.addr)]
        self.assertIn(device, names)
        self.assertEqual(a.count(r'msg="connected"'), 1, "agent reconnected:\n%s" % a.log())
        self.assertEqual(b.count(r'msg="peer disconnected" .*name=%s ' % re.escape(device)), 0,
                         "broker dropped the agent:\n%s" % b.log())

    def assert_one_line(self, r, prog, *needles):
        lines = r.err.splitlines()
        self.assertEqual(len(lines), 1, "expected exactly one line on stderr: %r" % r)
        self.assertTrue(lines[0].startswith(prog + ": "), "line does not start '%s: ': %r" % (prog, r))
        for n in needles:
            self.assertIn(n, lines[0], r)
        return lines[0]

    def wire(self, b, cert="tech", foreign=False, **kw):
        p = self.pki
        return WireClient(b.port, p.ca, p.cert(cert, foreign), p.key(cert, foreign), **kw)

    def admin_wire(self, b):
        """An admin's raw link, welcomed: admins open echo and throughput channels without a
        session (a technician's need one, see test_diag)."""
        c = self.wire(b, cert="boss")
        c.handshake_hello(role=ROLE_ADMIN)
        return c

    def admin(self, b, args, **kw):
        return self.h.console(b.addr, args, cert=self.pki.cert("boss"), key=self.pki.key("boss"), **kw)

    # -- 1 ---------------------------------------------------------------------------------

    def test_01_agent_shows_up(self):
        t_start = time.time()
        b, a = self.broker_with_agent("dev-a", "host-a.example")

        r = self.h.console(b.addr, ["devices"])
        self.assertEqual(r.rc, 0, r)
        lines = r.out.splitlines()
        self.assertEqual(lines[0].split(), ["DEVICE", "HOSTNAME", "STATUS", "LAST", "SEEN",
                                            "ADDRESS", "VERSION"], r)
        rows = [l.split() for l in lines[1:]]
        self.assertEqual(len(rows), 1, r)
        self.assertEqual(rows[0][:4], ["dev-a", "host-a.example", "online", "now"], r)

        listed = self.h.devices(b.addr)
        t_end = time.time()
        self.assertEqual(len(listed), 1, listed)
        d = listed[0]
        self.assertEqual(set(d), {"device", "hostname", "online", "revoked", "last_seen",
                                  "connected_since", "enrolled", "cert_not_after", "address",
                                  "version"})
        self.assertIs(d["revoked"], False)
        self.assertEqual(d["device"], "dev-a")
        self.assertEqual(d["hostname"], "host-a.example")
        self.assertRegex(d["address"], r"^127\.0\.0\.1:\d+$")
        version = self.h.run("tether-agent", ["--version"]).out.split()[-1]
        self.assertEqual(d["version"], version)
        self.assertIs(d["online"], True)
        since = iso_utc_to_unix(d["connected_since"])  # whole seconds
        self.assertGreaterEqual(since, int(t_start) - 1, d)
        self.assertLessEqual(since, t_end + 1, d)

    # -- 2 ---------------------------------------------------------------------------------

    def test_02_agent_from_foreign_ca_is_refused(self):
        b, good = self.broker_with_agent("dev-a", "host-a")
        rogue = self.h.start_agent(b.addr, "rogue", "rogue-host", name="agent-rogue",
                                   cert=self.pki.cert("rogue", True), key=self.pki.key("rogue", True),
                                   extra=["--backoff-base", "100ms", "--backoff-max", "300ms"],
                                   wait=False)
        # Refused at every attempt, and it keeps trying.
        rogue.wait_for(r'msg="connection failed" .*reason=TT_ECERT', count=3)
        b.wait_for(r'msg="handshake failed" .*err=TT_ECERT', count=3)
        self.assertEqual(rogue.count(r'msg="connected"'), 0, rogue.log())
        self.assertEqual(b.count(r'name=rogue'), 0, b.log())
        names = [d["device"] for d in self.h.devices(b.addr)]
        self.assertEqual(names, ["dev-a"])

        # Same name as the real device, wrong CA: refused, and the real one is not displaced.
        mark = b.mark()
        fake = self.h.start_agent(b.addr, "dev-a", "fake-host", name="agent-fake-dev-a",
                                  cert=self.pki.cert("dev-a", True), key=self.pki.key("dev-a", True),
                                  extra=["--backoff-base", "100ms", "--backoff-max", "300ms"],
                                  wait=False)
        fake.wait_for(r'msg="connection failed" .*reason=TT_ECERT', count=2)
        self.assertEqual(fake.count(r'msg="connected"'), 0, fake.log())
        self.assertEqual(b.count(r"replaced|hostname=fake-host", after=mark), 0, b.log())
        listed = self.h.devices(b.addr)
        self.assertEqual([(d["device"], d["hostname"]) for d in listed], [("dev-a", "host-a")])
        self.assert_still_listed(b, good)

    # -- 3 ---------------------------------------------------------------------------------

    def test_03_client_without_certificate_is_refused(self):
        b, a = self.broker_with_agent()
        mark = b.mark()
        frames, how = [], None
        try:
            c = WireClient(b.port, self.pki.ca, cert=None)
        except (ssl.SSLError, OSError) as e:
            how = "handshake failed: %s" % e
        else:
            with c:
                # TLS 1.3: the client learns of the refusal on its first read.
                try:
                    c.send_frame(K_HELLO, hello_body(ROLE_TECHNICIAN))
                except (ssl.SSLError, OSError) as e:
                    how = "send failed: %s" % e
                if how is None:
                    frames, how, _ = c.read_until_closed(timeout=10)
        self.assertNotIn(K_WELCOME, [f[0] for f in frames], "welcomed without a certificate")
        self.assertIsNotNone(how)
        b.wait_for(r'msg="handshake failed" .*err=TT_ECERT', after=mark)
        self.assert_still_listed(b, a)

    def test_03b_client_without_tether_alpn_is_refused(self):
        b, a = self.broker_with_agent()
        mark = b.mark()
        frames, how = [], None
        try:
            c = self.wire(b, alpn=("http/1.1",))
        except (ssl.SSLError, OSError) as e:
            how = "handshake failed: %s" % e
        else:
            with c:
                try:
                    c.send_frame(K_HELLO, hello_body(ROLE_TECHNICIAN))
                    frames, how, _ = c.read_until_closed(timeout=10)
                except (ssl.SSLError, OSError) as e:
                    how = "send failed: %s" % e
        self.assertNotIn(K_WELCOME, [f[0] for f in frames], "welcomed without ALPN tether/1")
        self.assertIsNotNone(how)
        b.wait_for(r'msg="handshake failed" .*err=TT_ETLS', after=mark)
        b.wait_for(r'msg="connection refused or dropped before hello"', after=mark)
        self.assert_still_listed(b, a)

    # -- 4 ---------------------------------------------------------------------------------

    def test_04_plain_tcp_garbage_closes_only_that_connection(self):
        b, a = self.broker_with_agent()
        rnd = random.Random(20240611)
        payloads = {
            "http": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
            "random": bytes(rnd.getrandbits(8) for _ in range(4096)),
            # A TLS handshake record header claiming 64 KiB, then junk.
            "tls-header": b"\x16\x03\x01\xff\xff" + bytes(rnd.getrandbits(8) for _ in range(300)),
            "zeros": bytes(1024),
        }
        before = b.count(r'msg="connection refused or dropped before hello"')
        for name, data in payloads.items():
            with self.subTest(payload=name):
                with socket.create_connection(("127.0.0.1", b.port), timeout=5) as s:
                    s.sendall(data)
                    got, secs = recv_until_closed(s, timeout=10)
                self.assertTrue(b.alive(), b.log())
        b.wait_for(r'msg="connection refused or dropped before hello"', count=before + len(payloads))
        self.assert_still_listed(b, a)

    # -- 5 ---------------------------------------------------------------------------------

    def test_05_oversized_frames_are_refused(self):
        b, a = self.broker_with_agent()
        # After Hello: 256 KiB is the limit; a header declaring more closes the connection
        # before any of the body is buffered.
        for declared in (16 * MiB, 256 * 1024 + 1):
            with self.subTest(after_hello=declared):
                mark = b.mark()
                with self.wire(b) as c:
                    c.handshake_hello(ROLE_TECHNICIAN)
                    c.send_frame(K_REQUEST, b"\x08\x01" * 50, length=declared)
                    frames, how, secs = c.read_until_closed(timeout=10)
                err = error_of(frames)
                self.assertIsNotNone(err, "no Error frame before close (%s); frames %r" % (how, frames))
                self.assertEqual(err[0], ERR_TOO_BIG, err)
                b.wait_for(r'msg="closing peer on bad input" .*err=TT_ETOOBIG', after=mark)
        # Before Hello: 4 KiB is the limit.
        for declared in (8 * 1024, 4096 + 1):
            with self.subTest(before_hello=declared):
                mark = b.mark()
                with self.wire(b) as c:
                    c.send_frame(K_HELLO, b"\x08\x01" * 50, length=declared)
                    frames, how, secs = c.read_until_closed(timeout=10)
                self.assertNotIn(K_WELCOME, [f[0] for f in frames])
                err = error_of(frames)
                self.assertIsNotNone(err, "no Error frame before close (%s); frames %r" % (how, frames))
                self.assertEqual(err[0], ERR_TOO_BIG, err)
                b.wait_for(r'msg="closing peer on bad input" .*err=TT_ETOOBIG', after=mark)
        self.assert_still_listed(b, a)

    # -- 6 ---------------------------------------------------------------------------------

    def test_06_agent_comes_back_after_broker_restart(self):
        backoff_max = 2.0
        b, a = self.broker_with_agent(agent_extra=["--backoff-base", "200ms", "--backoff-max", "2s"])
        self.h.wait_device(b.addr, "dev-a")
        port = b.port
        mark = a.mark()
        self.assertEqual(b.stop(), 0, "broker did not exit 0 on SIGTERM:\n%s" % b.log())
        a.wait_for(r'msg="disconnected"', after=mark)
        # Stay down until the agent's backoff has reached its ceiling (attempt 5: 200ms << 4
        # is capped at 2 s), so the restart meets the longest delay the agent may pick.
        a.wait_for(r'msg="reconnecting" in_ms=\d+ attempt=5\b', after=mark, timeout=15)
        t0 = time.monotonic()
        b2 = self.h.start_broker(port=port, name="broker-restarted")
        self.h.wait_device(b2.addr, "dev-a", timeout=15, interval=0.05)
        took = time.monotonic() - t0
        print("\n    agent listed again %.2f s after the broker restarted (bound %.1f s + 3 s)"
              % (took, backoff_max), flush=True)
        self.assertLess(took, backoff_max + 3.0)
        delays = [int(x) for x in re.findall(r'msg="reconnecting" in_ms=(\d+)', a.log()[mark:])]
        self.assertTrue(delays, a.log())
        self.assertLessEqual(max(delays), 2000, "backoff beyond --backoff-max: %r" % delays)
        self.assertEqual(a.count(r'msg="connected"'), 2, a.log())

    def test_06b_agent_drops_a_frozen_broker_and_reconnects(self):
        # A broker that stops answering (host hung, cable pulled: no FIN ever arrives) is
        # noticed by the agent through the idle timeout the broker announced in its Welcome.
        b, a = self.broker_with_agent(
            broker_extra=["--heartbeat", "200ms", "--idle-timeout", "1s"],
            agent_extra=["--backoff-base", "100ms", "--backoff-max", "500ms"])
        mark = a.mark()
        os.kill(b.pid, signal.SIGSTOP)
        try:
            t0 = time.monotonic()
            a.wait_for(r'msg="disconnected" .*reason=TT_ETIMEOUT', after=mark, timeout=6)
            took = time.monotonic() - t0
        finally:
            os.kill(b.pid, signal.SIGCONT)
        print("\n    agent dropped the frozen broker after %.2f s (idle timeout 1 s)" % took, flush=True)
        self.assertGreaterEqual(took, 0.6, "dropped before the idle timeout")
        self.assertLess(took, 1.0 + 1.5)
        a.wait_for(r'msg="connected"', after=mark, timeout=10)
        self.h.wait_device(b.addr, "dev-a", timeout=10)

    def test_06c_no_hello_in_time_is_dropped(self):
        # TLS done but no Hello: trickling bytes must not keep the connection (the idle
        # timer would); the Hello deadline is the handshake timeout.
        b, a = self.broker_with_agent(broker_extra=["--handshake-timeout", "1s", "--idle-timeout", "30s"])
        mark = b.mark()
        with self.wire(b) as c:
            t0 = time.monotonic()
            c.send(frame(K_HELLO, b"x" * 100)[:3])  # part of a header, then nothing more
            frames, how, secs = c.read_until_closed(timeout=8)
        print("\n    peer without hello dropped after %.2f s (deadline 1 s, swept each second)" % secs,
              flush=True)
        self.assertLess(secs, 1.0 + 1.0 + 1.0)
        b.wait_for(r'msg="no hello in time"', after=mark)
        self.assert_still_listed(b, a)

    # -- 7 ---------------------------------------------------------------------------------

    def test_07_wrong_hello_gets_an_error_and_is_disconnected(self):
        b, a = self.broker_with_agent()
        cases = [
            ("role agent on a technician certificate", hello_body(ROLE_AGENT), ERR_ROLE,
             ("hello says role agent", "certificate says technician")),
            ("protocol version 99", hello_body(ROLE_TECHNICIAN, proto_version=99), ERR_VERSION,
             ("protocol version 99 not supported",)),
        ]
        for what, body, code, needles in cases:
            with self.subTest(hello=what):
                mark = b.mark()
                with self.wire(b) as c:
                    c.send_frame(K_HELLO, body)
                    frames, how, secs = c.read_until_closed(timeout=10)
                self.assertNotIn(K_WELCOME, [f[0] for f in frames])
                err = error_of(frames)
                self.assertIsNotNone(err, "closed (%s) without an Error frame" % how)
                self.assertEqual(err[0], code, err)
                for n in needles:
                    self.assertIn(n, err[1])
                b.wait_for(r'msg="refusing peer" .*name=tech ', after=mark)
        with self.subTest(hello="a request before hello"):
            with self.wire(b) as c:
                c.send_frame(K_REQUEST, b"\x08\x01")
                frames, how, secs = c.read_until_closed(timeout=10)
            err = error_of(frames)
            self.assertIsNotNone(err, "closed (%s) without an Error frame" % how)
            self.assertEqual(err[0], ERR_PROTOCOL, err)
        self.assert_still_listed(b, a)

    # -- 8 ---------------------------------------------------------------------------------

    def test_08_silent_peer_is_dropped(self):
        # The agent answers pings and must survive the same idle timeout the silent peer fails.
        b, a = self.broker_with_agent(broker_extra=["--heartbeat", "200ms", "--idle-timeout", "1s"])
        mark = b.mark()
        with self.wire(b) as c:
            w = c.handshake_hello(ROLE_TECHNICIAN)
            self.assertEqual(w.get(4), [200], "welcome heartbeat_ms: %r" % w)
            self.assertEqual(w.get(5), [1000], "welcome idle_timeout_ms: %r" % w)
            self.assertEqual(w.get(6), [b"tech"], "welcome identity: %r" % w)
            frames, how, secs = c.read_until_closed(timeout=6)
            pings = c.pings
        print("\n    silent peer dropped %.2f s after its welcome (%d pings unanswered; %s)"
              % (secs, pings, how), flush=True)
        self.assertGreaterEqual(secs, 0.6, "dropped before the idle timeout")
        self.assertLess(secs, 1.0 + 1.5)
        self.assertGreaterEqual(pings, 2, "broker did not ping")
        b.wait_for(r'msg="idle timeout"', after=mark)
        b.wait_for(r'msg="peer disconnected" .*name=tech ', after=mark)
        self.assert_still_listed(b, a)

    # -- 9 ---------------------------------------------------------------------------------

    def test_09_speedtest_and_ping_through_the_broker(self):
        # As an admin: no ticket needed (a technician's need one, see test_diag).
        b, a = self.broker_with_agent()
        r = self.admin(b, ["speedtest", "dev-a", "--bytes", "8M"], timeout=60)
        self.assertEqual(r.rc, 0, r)
        self.assertRegex(r.out, r"^dev-a: 8388608 bytes in [0-9.]+ s = [0-9.]+ MB/s$")
        print("\n    " + r.out.strip(), flush=True)

        r = self.admin(b, ["ping", "dev-a", "--count", "50"], timeout=60)
        self.assertEqual(r.rc, 0, r)
        self.assertRegex(r.out, r"^dev-a: 50 round trips of \d+ bytes: p50 ")
        print("    " + r.out.strip(), flush=True)

        r = self.admin(b, ["ping", "dev-a", "--count", "5", "--json"], timeout=60)
        self.assertEqual(r.rc, 0, r)
        j = json.loads(r.out)
        self.assertEqual((j["device"], j["count"]), ("dev-a", 5), j)

        r = self.admin(b, ["speedtest", "no-such-device", "--bytes", "1M"])
        self.assertEqual(r.rc, 1, r)
        self.assert_one_line(r, "tether", "no-such-device", "not connected")
        self.assert_still_listed(b, a)

    def open_frame(self, device, kind=1, window=65536, nbytes=1000):
        return pb_varint(1, kind) + pb_bytes(2, device) + pb_varint(3, window) + pb_varint(6, nbytes)

    def test_09b_relay_survives_refusals_and_vanishing_agents(self):
        b, a = self.broker_with_agent()
        # An open the agent refuses (a session it does not know): the broker passes the
        # rejection on (this used to free the pending channel twice). A kind the broker has no
        # rules for never reaches the device at all.
        with self.wire(b, cert="dev-b") as ag:
            ag.handshake_hello(role=ROLE_AGENT, hostname="host-b")
            with self.admin_wire(b) as c:
                c.send_frame(K_CH_OPEN, self.open_frame("dev-b", kind=2), channel=1)
                kind, _, ch, body = ag.read_control(timeout=10, answer_pings=True)
                self.assertEqual(kind, K_CH_OPEN)
                ag.send_frame(K_CH_REJECT, pb_varint(1, 5) + pb_bytes(2, "not today"), channel=ch)
                kind, _, ch, body = c.read_control(timeout=10, answer_pings=True)
                self.assertEqual((kind, ch), (K_CH_REJECT, 1), pb_parse(body))
                self.assertIn(b"not today", pb_parse(body).get(2, [b""])[0])
        with self.admin_wire(b) as c:
            c.send_frame(K_CH_OPEN, self.open_frame("dev-a", kind=0), channel=3)
            kind, _, ch, body = c.read_control(timeout=10, answer_pings=True)
            self.assertEqual((kind, ch), (K_CH_REJECT, 3), pb_parse(body))
            self.assertIn(b"unknown channel kind", pb_parse(body).get(2, [b""])[0])
        # An agent that vanishes while a channel to it waits for an answer: the console hears
        # of it, the broker lives on.
        with self.wire(b, cert="dev-b") as ag:
            ag.handshake_hello(role=ROLE_AGENT, hostname="host-b")
            with self.admin_wire(b) as c:
                c.send_frame(K_CH_OPEN, self.open_frame("dev-b"), channel=1)
                kind, _, ch, body = ag.read_control(timeout=10, answer_pings=True)
                self.assertEqual(kind, K_CH_OPEN)
                ag.close()  # never answers
                kind, _, ch, body = c.read_control(timeout=10, answer_pings=True)
                self.assertIn(kind, (K_CH_REJECT, K_CH_CLOSE), pb_parse(body))
                self.assertEqual(ch, 1)
        self.assertTrue(b.alive(), b.log())
        self.assert_still_listed(b, a)

    def test_09c_one_person_cannot_fill_a_device_with_waiting_opens(self):
        b, a = self.broker_with_agent()
        with self.wire(b, cert="dev-b") as ag:
            ag.handshake_hello(role=ROLE_AGENT, hostname="host-b")  # never answers opens
            with self.admin_wire(b) as c1, self.admin_wire(b) as c2:
                def opens_reaching_agent(want):
                    n = 0
                    deadline = time.monotonic() + 3
                    while time.monotonic() < deadline:
                        try:
                            k, _, _, _ = ag.read_control(timeout=0.5, answer_pings=True)
                            n += k == K_CH_OPEN
                        except TimeoutError:
                            if n >= want:
                                break
                    return n
                for i in range(6):
                    c1.send_frame(K_CH_OPEN, self.open_frame("dev-b"), channel=2 * i + 1)
                self.assertEqual(opens_reaching_agent(6), 6)
                for i in range(3):  # same person, another connection: 6 + 3 > 8
                    c2.send_frame(K_CH_OPEN, self.open_frame("dev-b"), channel=2 * i + 1)
                kind, _, ch, body = c2.read_control(timeout=10, answer_pings=True)
                self.assertEqual((kind, ch), (K_CH_REJECT, 5), pb_parse(body))
                self.assertEqual(pb_parse(body).get(1), [8], pb_parse(body))  # ERR_BUSY
                self.assertEqual(opens_reaching_agent(2), 2)
        self.assert_still_listed(b, a)

    def test_09e_relay_memory_per_connection_is_budgeted(self):
        # Each relayed channel's window is memory the broker may have to hold for that
        # connection; the windows it passes on are clamped to a 16 MiB budget per connection.
        b, a = self.broker_with_agent()
        big = 4 << 20
        with self.wire(b, cert="dev-b") as ag:
            ag.handshake_hello(role=ROLE_AGENT, hostname="host-b")
            with self.admin_wire(b) as c:
                def next_open_window():
                    while True:
                        k, _, ch, body = ag.read_control(timeout=10, answer_pings=True)
                        if k == K_CH_OPEN:
                            return pb_parse(body).get(3, [0])[0]

                windows = []
                for i in range(6):
                    c.send_frame(K_CH_OPEN, self.open_frame("dev-b", window=big), channel=2 * i + 1)
                    windows.append(next_open_window())
                self.assertEqual(windows, [big] * 4 + [16384] * 2)
                # Ending a relay gives its share back.
                c.send_frame(K_CH_CLOSE, b"", channel=1)
                time.sleep(0.3)
                c.send_frame(K_CH_OPEN, self.open_frame("dev-b", window=big), channel=13)
                self.assertEqual(next_open_window(), (16 << 20) - 3 * big - 2 * 16384)
        self.assert_still_listed(b, a)

    def test_09d_peer_text_cannot_forge_log_fields(self):
        b = self.h.start_broker()
        with self.wire(b, cert="dev-b") as ag:
            ag.handshake_hello(role=ROLE_AGENT, hostname='h role=admin name=alice msg="forged"')
            line = b.wait_for(r'msg="peer connected" .*name=dev-b .*').group(0)
        self.assertIn('hostname="h role=admin name=alice msg=\\x22forged\\x22"', line)
        self.assertNotIn('msg="forged"', line)

    # -- 10 --------------------------------------------------------------------------------

    def test_10_usage_errors(self):
        for prog in ("tether-broker", "tether-agent", "tether", "tether-certs"):
            with self.subTest(prog=prog, arg="--help"):
                r = self.h.run(prog, ["--help"])
                self.assertEqual(r.rc, 0, r)
                self.assertIn("usage: " + prog, r.out)
            with self.subTest(prog=prog, arg="--version"):
                r = self.h.run(prog, ["--version"])
                self.assertEqual(r.rc, 0, r)
                self.assertRegex(r.out, r"^%s \d+\.\d+\.\d+\n$" % re.escape(prog))
            with self.subTest(prog=prog, arg="--no-such-flag"):
                r = self.h.run(prog, ["--no-such-flag"])
                self.assertEqual(r.rc, 2, r)
                self.assert_one_line(r, prog, "--no-such-flag")

        first = {"tether-broker": "listen = 127.0.0.1:7443",
                 "tether-agent": "broker = 127.0.0.1:7443",
                 "tether": "broker = 127.0.0.1:7443"}
        for prog, line in first.items():
            with self.subTest(prog=prog, config="unknown key"):
                path = os.path.join(self.h.dir, prog + ".conf")
                with open(path, "w") as f:
                    f.write("# integration test\n%s\n[tls]\nno_such_key = 1\n" % line)
                args = ["--config", path] + (["devices"] if prog == "tether" else [])
                r = self.h.run(prog, args)
                self.assertEqual(r.rc, 2, r)
                self.assert_one_line(r, prog, "%s:4" % path, "no_such_key")

        with self.subTest(console="nothing listening"):
            addr = "127.0.0.1:%d" % free_port()
            r = self.h.console(addr, ["devices", "--timeout", "3s"], timeout=20)
            self.assertEqual(r.rc, 1, r)
            self.assertLess(r.elapsed, 3.0 + 2.0, r)
            self.assert_one_line(r, "tether", addr, "refused")

    # -- 11 --------------------------------------------------------------------------------

    def test_11_console_with_foreign_certificate_is_refused(self):
        b, a = self.broker_with_agent()
        mark = b.mark()
        r = self.h.console(b.addr, ["devices"], cert=self.pki.cert("mallory", True),
                           key=self.pki.key("mallory", True))
        self.assertEqual(r.rc, 1, r)
        self.assertEqual(r.out, "", "printed a listing to a refused console: %r" % r)
        self.assert_one_line(r, "tether", b.addr, "certificate")
        b.wait_for(r'msg="handshake failed" .*err=TT_ECERT', after=mark)
        self.assertEqual(b.count(r"name=mallory", after=mark), 0, b.log())
        self.assert_still_listed(b, a)


if __name__ == "__main__":
    unittest.main(verbosity=2)
