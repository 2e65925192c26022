"""The broker's front door: one source address cannot lock everyone else out.

Silent TCP connections (no ClientHello), idle enrollment connections and bursts of bad
enrollment attempts from 127.0.0.2 (and other 127/8 addresses) must not stop a console, an
agent or an enrollment from 127.0.0.1, nor grow the audit log without bound; an invalid CSR
is answered with a clear error, not INTERNAL. Run by ctest as `integration.frontdoor`."""

import json
import os
import resource
import socket
import ssl
import subprocess
import time
import unittest

from harness import (TetherTestCase, K_REQUEST, K_RESPONSE, Closed, Pki, WireClient, binary,
                     pb_bytes, pb_parse, pb_varint, frame)

ERR_INTERNAL, ERR_INVALID = 10, 14
# The broker's defaults, as README documents them.
HANDSHAKES_PER_ADDRESS = 200
ENROLLING_PER_ADDRESS = 8
AUDIT_REFUSALS_PER_ADDRESS = 10
SILENT = 2000
# Descriptors this file needs at once: the silent connections on our side and on the
# broker's (it inherits our limit), with room for everything else.
NOFILE_NEEDED = 2 * SILENT + 512


def raise_nofile():
    """Raise the soft open-file limit (children inherit it); None or why it cannot be."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < NOFILE_NEEDED:
        if hard != resource.RLIM_INFINITY and hard < NOFILE_NEEDED:
            return "the open-file limit cannot be raised to %d (hard limit %d)" % (NOFILE_NEEDED, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE_NEEDED, hard))
    return None


def closed_by_peer(s):
    """True once the broker closed (FIN or reset) a socket we never wrote to (None: reset
    while it was still connecting)."""
    if s is None:
        return True
    s.setblocking(False)
    try:
        return s.recv(1) == b""
    except (BlockingIOError, ssl.SSLWantReadError):
        return False
    except OSError:
        return True


def enroll_body(token, csr, hostname="it-host"):
    er = pb_bytes(1, token) + pb_bytes(2, csr) + pb_bytes(3, hostname) + pb_bytes(4, "it/0.1")
    return pb_varint(1, 1) + pb_bytes(9, er)


class FrontDoorTest(TetherTestCase):
    maxDiff = None

    @classmethod
    def setUpClass(cls):
        cls.nofile_problem = raise_nofile()
        cls.pki = Pki()
        for role, name in (("technician", "tech"), ("admin", "boss"), ("agent", "dev-1")):
            cls.pki.issue(role, name)

    def setUp(self):
        super().setUp()
        self.socks = []
        self.addCleanup(self._close_socks)

    def _close_socks(self):
        for s in self.socks:
            try:
                s.close()
            except OSError:
                pass

    # -- helpers ---------------------------------------------------------------------------

    def admin(self, b, args):
        return self.h.console(b.addr, args, cert=self.pki.cert("boss"), key=self.pki.key("boss"))

    def token(self, b, *extra):
        r = self.admin(b, ["token", "new"] + list(extra))
        self.assertEqual(r.rc, 0, r)
        return r.out.splitlines()[0].strip()

    def pin(self):
        r = self.h.run("tether-certs", ["fingerprint", "--dir", self.pki.main])
        self.assertEqual(r.rc, 0, r)
        return r.out.strip()

    def enroll(self, b, token, name):
        return self.h.run("tether-agent", ["enroll", "--broker", b.addr, "--token", token,
                                           "--ca-pin", self.pin(),
                                           "--state-dir", os.path.join(self.h.dir, "agent-" + name),
                                           "--hostname", name + ".example"])

    def silent(self, b, n, source):
        """n TCP connections from source that never send a byte; None for one the broker
        reset before connect() returned here."""
        out = []
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.socks.append(s)
            s.bind((source, 0))
            s.settimeout(5)
            try:
                s.connect(("127.0.0.1", b.port))
            except ConnectionResetError:
                s = None
            out.append(s)
        return out

    def enroll_idle(self, b, n, source):
        """n enrollment connections from source: TLS done, then nothing."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        ctx.load_verify_locations(self.pki.ca)
        ctx.set_alpn_protocols(["tether-enroll/1"])
        out = []
        for _ in range(n):
            raw = socket.create_connection(("127.0.0.1", b.port), timeout=10,
                                           source_address=(source, 0))
            self.socks.append(raw)
            t = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
            self.socks.append(t)
            out.append(t)
        return out

    def wait_closed(self, s, timeout=15.0):
        """Wait until the broker closes a connection we opened (a barrier: the broker has
        handled everything that arrived before it)."""
        deadline = time.monotonic() + timeout
        s.settimeout(0.2)
        while time.monotonic() < deadline:
            try:
                if s.recv(4096) == b"":
                    return
            except (socket.timeout, ssl.SSLWantReadError):
                continue
            except (OSError, ssl.SSLError):
                return
        self.fail("the broker kept the connection open for %.0fs" % timeout)

    def bad_enroll(self, b, source, token="tt1_" + "0" * 64, csr=b"not a CSR"):
        """One enrollment attempt from source; the broker's (code, message)."""
        with WireClient(b.port, self.pki.ca, alpn=("tether-enroll/1",), source=source) as c:
            c.send(frame(K_REQUEST, enroll_body(token, csr)))
            kind, _, _, body = c.read_control()
            self.assertEqual(kind, K_RESPONSE)
            err = pb_parse(pb_parse(body)[2][0])
            return err.get(1, [0])[0], err.get(2, [b""])[0].decode()

    def audit(self, b):
        r = self.admin(b, ["audit", "--json"])
        self.assertEqual(r.rc, 0, r)
        return [json.loads(l) for l in r.out.splitlines()]

    def refusals(self, entries, prefix):
        """(enroll-refused entries from addresses starting with prefix, their summaries)."""
        refused = [e for e in entries if e["action"] == "enroll-refused"
                   and e["detail"].get("address", "").startswith(prefix)]
        summaries = [e for e in entries if e["action"] == "refuse-summary"]
        return refused, summaries

    def restart(self, b, extra=()):
        """Stop the broker (it writes what it holds back) and start it again on its port."""
        self.assertEqual(b.stop(), 0)
        return self.h.start_broker(port=b.port, data_dir=b.data_dir, name="broker-again", extra=extra)

    # -- silent connections ----------------------------------------------------------------

    def test_01_silent_connections_from_one_address_do_not_lock_out_others(self):
        if self.nofile_problem:
            self.skipTest(self.nofile_problem)
        # Long enough that no silent connection times out while the test runs.
        b = self.h.start_broker(extra=["--handshake-timeout", "60s"])
        socks = self.silent(b, SILENT, "127.0.0.2")
        # They are ahead of the console in the broker's accept queue.
        r = self.h.console(b.addr, ["devices"])
        self.assertEqual(r.rc, 0, r)
        a = self.h.start_agent(b.addr, "dev-1", "one.example")
        self.assertTrue(a.alive())
        # 127.0.0.2 holds its share of handshakes and no more.
        refused = sum(1 for s in socks if closed_by_peer(s))
        self.assertEqual(refused, SILENT - HANDSHAKES_PER_ADDRESS)
        b.wait_for(r'msg="connections refused" reason=per_address')

    def test_02_when_full_the_oldest_silent_connection_of_the_busiest_address_goes(self):
        b = self.h.start_broker(extra=["--handshake-timeout", "60s", "--max-handshakes", "50"])
        busy = self.silent(b, 30, "127.0.0.2")
        spread = [self.silent(b, 1, "127.0.0.%d" % (10 + i))[0] for i in range(20)]
        r = self.h.console(b.addr, ["devices"])
        self.assertEqual(r.rc, 0, r)
        self.assertTrue(closed_by_peer(busy[0]), "the oldest silent connection of 127.0.0.2 is still open")
        self.assertEqual([i for i, s in enumerate(busy[1:], 1) if closed_by_peer(s)], [])
        self.assertEqual([i for i, s in enumerate(spread) if closed_by_peer(s)], [])
        # Full again: the next oldest goes.
        busy += self.silent(b, 1, "127.0.0.2")
        self.assertEqual(self.h.console(b.addr, ["devices"]).rc, 0)
        self.assertTrue(closed_by_peer(busy[1]))
        self.assertEqual([i for i, s in enumerate(spread) if closed_by_peer(s)], [])

    # -- enrollment connections ------------------------------------------------------------

    def test_03_idle_enrollment_connections_from_one_address_do_not_block_enrollment(self):
        b = self.h.start_broker(extra=["--handshake-timeout", "60s"])
        tok = self.token(b)
        self.enroll_idle(b, 70, "127.0.0.2")
        self.wait_closed(self.enroll_idle(b, 1, "127.0.0.2")[0])
        r = self.enroll(b, tok, "first")
        self.assertEqual(r.rc, 0, r)
        self.assertIn("enrolled as", r.out)

    def test_04_when_enrollment_is_full_the_oldest_idle_one_goes(self):
        b = self.h.start_broker(extra=["--handshake-timeout", "60s", "--max-enrolling-per-address", "64"])
        tok = self.token(b)
        idle = self.enroll_idle(b, 64, "127.0.0.2")
        r = self.enroll(b, tok, "second")
        self.assertEqual(r.rc, 0, r)
        self.wait_closed(idle[0])
        self.assertFalse(closed_by_peer(idle[-1]))

    # -- refusals in the audit -------------------------------------------------------------

    def test_05_a_burst_of_bad_enrollments_writes_a_bounded_audit(self):
        b = self.h.start_broker()
        n = 40
        for _ in range(n):
            self.bad_enroll(b, "127.0.0.2")
        # A stopping broker writes the summary of what it held back.
        b2 = self.restart(b)
        refused, summaries = self.refusals(self.audit(b2), "127.0.0.2:")
        self.assertEqual(len(refused), AUDIT_REFUSALS_PER_ADDRESS)
        mine = [s for s in summaries if s["detail"].get("address") == "127.0.0.2"]
        self.assertEqual(len(mine), 1, summaries)
        self.assertEqual(int(mine[0]["detail"]["suppressed"]), n - AUDIT_REFUSALS_PER_ADDRESS)

    def test_06_many_addresses_share_one_bound(self):
        b = self.h.start_broker(extra=["--audit-refusals-total", "20"])
        n = 0
        for i in range(12):
            for _ in range(4):
                self.bad_enroll(b, "127.0.0.%d" % (10 + i))
                n += 1
        b2 = self.restart(b, extra=["--audit-refusals-total", "20"])
        refused, summaries = self.refusals(self.audit(b2), "127.0.0.")
        self.assertLessEqual(len(refused) + len(summaries), 21)
        suppressed = sum(int(s["detail"]["suppressed"]) for s in summaries)
        self.assertEqual(len(refused) + suppressed, n, (refused, summaries))

    def test_07_the_summary_comes_once_the_window_is_over(self):
        b = self.h.start_broker(extra=["--audit-refusal-window", "1s", "--audit-refusals-per-address", "3"])
        n = 8
        for _ in range(n):
            self.bad_enroll(b, "127.0.0.3")
        deadline = time.monotonic() + 15
        while True:
            refused, summaries = self.refusals(self.audit(b), "127.0.0.3:")
            suppressed = sum(int(s["detail"]["suppressed"]) for s in summaries
                             if s["detail"].get("address") == "127.0.0.3")
            if len(refused) + suppressed == n:
                break
            self.assertLess(time.monotonic(), deadline, (refused, summaries))
            time.sleep(0.2)
        self.assertLessEqual(len(refused), n - 1)
        self.assertEqual(summaries[0]["actor"], "broker")

    # -- an invalid CSR ---------------------------------------------------------------------

    def test_08_an_invalid_csr_gets_a_clear_error(self):
        b = self.h.start_broker()
        tok = self.token(b)
        csr_path = os.path.join(self.h.dir, "csr.der")
        subprocess.run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                        "-nodes", "-keyout", os.path.join(self.h.dir, "csr.key"), "-subj", "/CN=x",
                        "-outform", "DER", "-out", csr_path], check=True, capture_output=True)
        with open(csr_path, "rb") as f:
            good = f.read()
        broken = good[:-1] + bytes([good[-1] ^ 0x01])  # the signature's last byte
        for what, csr in (("garbage", b"\x30\x03\x02\x01\x00"), ("bad signature", broken)):
            with self.subTest(csr=what):
                code, msg = self.bad_enroll(b, "127.0.0.1", token=tok, csr=csr)
                self.assertEqual(code, ERR_INVALID, msg)
                self.assertIn("the certificate request is not valid: ", msg)
        # The token was not spent on them.
        r = self.enroll(b, tok, "after")
        self.assertEqual(r.rc, 0, r)


if __name__ == "__main__":
    unittest.main()
