"""Health checks on the agent (agent/checks/): the real tether-agent on 127.0.0.1.

With the real broker, which does not take check reports yet: the agent runs its checks with
the settings of its config file ([checks]), `tether-agent checks` shows a check failing after
exactly raise_after runs, a systemctl that hangs makes its checks unknown (not ok), and the
broker's "unknown request" answer costs nothing but one debug line.

With a stand-in broker (TLS and frames by hand, as the wire says): reports come at Welcome
(full) and at each change; a policy pushed over the live link changes the checks without a
restart, a bad one is refused whole, and the last good one is kept in the state directory,
so an agent restarted offline runs it.

Run by ctest as `integration.checks_agent` (TT_BIN_DIR names the build directory)."""

import json
import os
import socket
import ssl
import threading
import time
import unittest

from harness import (HDR, K_HELLO, K_PING, K_PONG, K_REQUEST, K_RESPONSE, K_WELCOME, Closed, Pki,
                     TetherTestCase, frame, pb_bytes, pb_parse, pb_varint)

K_ERROR = 3
ERR_PROTOCOL, ERR_INVALID = 1, 14
# Request / Response fields (tether.proto)
REQ_CHECK_REPORT, REQ_POLICY_PUSH = 34, 35
RESP_CHECK_REPORT, RESP_POLICY_PUSH = 35, 36
STATE = {0: "pending", 1: "ok", 2: "failing", 3: "unknown"}


def checks_lines(sock_path, timeout=10.0):
    """The local socket's CHECKS answer, as lines (OK not included)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(sock_path)
    s.sendall(b"CHECKS\n")
    buf = b""
    try:
        while not (buf.endswith(b"OK\n") and (buf == b"OK\n" or buf.endswith(b"\nOK\n"))):
            d = s.recv(65536)
            if not d:
                raise AssertionError("the agent closed the connection: %r" % buf)
            buf += d
    finally:
        s.close()
    return buf.decode().splitlines()[:-1]


def results(sock_path):
    """{(check, dimension): {...}} from CHECKS, with the checks that have none as dimension None."""
    out = {}
    for line in checks_lines(sock_path):
        word, rest = line.split(" ", 1)
        if word == "CHECK":
            f = rest.split("\t")
            out[(f[0], f[1])] = dict(state=f[2], last=f[3], streak=int(f[4]), needed=int(f[5]), value=f[6],
                                     threshold=f[7], since=int(f[8]), message=f[9])
        elif word in ("OFF", "NA", "WAIT"):
            f = rest.split("\t")
            out[(f[0], None)] = dict(state=word.lower(), message=f[1] if len(f) > 1 else "")
        elif word == "POLICY":
            out["policy"] = int(rest)
    return out


class FakeBroker:
    """A broker by hand: TLS 1.3 with the broker's certificate, Welcome with a clock of our
    choosing, every CheckReport kept (and answered, or refused as unknown), every other
    request answered "unknown request" as the real broker does; policy pushes on demand."""

    def __init__(self, pki, clock_offset_ms=0):
        self.pki, self.clock_offset_ms = pki, clock_offset_ms
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(4)
        self.port = self.lsock.getsockname()[1]
        self.addr = "127.0.0.1:%d" % self.port
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_3
        ctx.load_cert_chain(pki.broker_cert, pki.broker_key)
        ctx.load_verify_locations(pki.ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.set_alpn_protocols(["tether/1"])
        self.ctx = ctx
        self.conn = None
        self.buf = b""
        self.reports = []       # [(id, fields)] every CheckReportRequest
        self.answers = {}       # request id -> Response fields, for our own requests
        self.lock = threading.Lock()
        self.next_id = 1000
        self.stop = False
        self.refuse_reports = False
        self.thread = None

    def accept(self, timeout=15.0):
        self.lsock.settimeout(timeout)
        raw, _ = self.lsock.accept()
        raw.settimeout(timeout)
        self.conn = self.ctx.wrap_socket(raw, server_side=True)
        self.buf = b""
        kind, _, _, body = self._read()
        assert kind == K_HELLO, kind
        now = int(time.time() * 1000) + self.clock_offset_ms
        self._send(K_WELCOME, pb_varint(1, 1) + pb_bytes(2, "fake/0") + pb_varint(4, 15000) +
                   pb_varint(5, 600000) + pb_bytes(6, "dev1") + pb_varint(7, now))
        self.conn.settimeout(0.2)
        self.stop = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def close(self):
        self.stop = True
        if self.thread:
            self.thread.join(5)
        if self.conn:
            try:
                self.conn.close()
            except OSError:
                pass
        self.conn = None

    def shutdown(self):
        self.close()
        self.lsock.close()

    def _send(self, kind, body):
        self.conn.sendall(frame(kind, body))

    def _read(self):
        while True:
            if len(self.buf) >= HDR.size:
                n, kind, flags, ch = HDR.unpack(self.buf[:HDR.size])
                if len(self.buf) >= HDR.size + n:
                    body = self.buf[HDR.size:HDR.size + n]
                    self.buf = self.buf[HDR.size + n:]
                    return kind, flags, ch, body
            d = self.conn.recv(65536)
            if not d:
                raise Closed("EOF")
            self.buf += d

    def _serve(self):
        while not self.stop:
            try:
                kind, _, _, body = self._read()
            except (socket.timeout, TimeoutError):
                continue
            except (Closed, OSError, ssl.SSLError):
                return
            f = pb_parse(body)
            if kind == K_PING:
                self._send(K_PONG, pb_varint(1, f.get(1, [0])[0]))
            elif kind == K_REQUEST:
                rid = f[1][0]
                if REQ_CHECK_REPORT in f:
                    with self.lock:
                        self.reports.append(pb_parse(f[REQ_CHECK_REPORT][0]))
                    if self.refuse_reports:
                        self._error(rid, ERR_PROTOCOL, "unknown request")
                    else:
                        self._send(K_RESPONSE, pb_varint(1, rid) + pb_bytes(RESP_CHECK_REPORT, b""))
                else:
                    self._error(rid, ERR_PROTOCOL, "unknown request")
            elif kind == K_RESPONSE:
                with self.lock:
                    self.answers[f[1][0]] = f

    def _error(self, rid, code, msg):
        self._send(K_RESPONSE, pb_varint(1, rid) + pb_bytes(2, pb_varint(1, code) + pb_bytes(2, msg)))

    def push(self, version, settings, timeout=10.0):
        """PolicyPushRequest; the Response's fields."""
        with self.lock:
            self.next_id += 1
            rid = self.next_id
        body = pb_varint(1, version) + b"".join(pb_bytes(2, pb_bytes(1, k) + pb_bytes(2, v)) for k, v in settings)
        self._send(K_REQUEST, pb_varint(1, rid) + pb_bytes(REQ_POLICY_PUSH, body))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if rid in self.answers:
                    return self.answers.pop(rid)
            time.sleep(0.02)
        raise AssertionError("no answer to the policy push")

    def report_list(self):
        with self.lock:
            return list(self.reports)


def decode_results(report):
    out = []
    for r in report.get(3, []):
        f = pb_parse(r)
        out.append(dict(check=f.get(1, [b""])[0].decode(), dimension=f.get(2, [b""])[0].decode(),
                        state=STATE[f.get(3, [0])[0]], last=STATE[f.get(4, [0])[0]],
                        value=f.get(5, [b""])[0].decode(), threshold=f.get(6, [b""])[0].decode(),
                        since=f.get(7, [0])[0], streak=f.get(9, [0])[0], message=f.get(10, [b""])[0].decode()))
    return out


class ChecksAgentTest(TetherTestCase):
    maxDiff = None

    @classmethod
    def setUpClass(cls):
        cls.pki = Pki()
        cls.pki.issue("agent", "dev1")

    def root_with_hung_systemctl(self):
        """A machine under inventory.root: one ext4 mount at / (the test's own disk, so some of
        it is in use), booted with systemd, and a systemctl on the helper PATH that never
        answers."""
        root = os.path.join(self.h.dir, "root")
        os.makedirs(os.path.join(root, "proc"))
        os.makedirs(os.path.join(root, "run", "systemd", "system"))
        with open(os.path.join(root, "proc", "mounts"), "w") as f:
            f.write("/dev/vdz / ext4 rw,relatime 0 0\ntmpfs /run tmpfs rw,nosuid 0 0\n")
        bindir = os.path.join(self.h.dir, "bin")
        os.makedirs(bindir)
        with open(os.path.join(bindir, "systemctl"), "w") as f:
            f.write("#!/bin/sh\nexec sleep 3600\n")
        os.chmod(os.path.join(bindir, "systemctl"), 0o755)
        return root, bindir

    def agent(self, addr, conf_text, extra=(), name=None, wait=True):
        conf = os.path.join(self.h.dir, (name or "agent") + ".conf")
        with open(conf, "w") as f:
            f.write(conf_text)
        self.sock = os.path.join(self.h.dir, "consent.sock")
        self.state = os.path.join(self.h.dir, "state")
        os.makedirs(self.state, mode=0o700, exist_ok=True)
        return self.h.start_agent(addr, "dev1", "dev1.example", name=name,
                                  extra=["--config", conf, "--consent-socket", self.sock, "--state-dir", self.state]
                                  + list(extra), wait=wait)

    def wait_result(self, check, dim, pred, what, timeout=20.0):
        seen = []

        def ok():
            r = results(self.sock).get((check, dim))
            if r and (not seen or seen[-1] != r):
                seen.append(r)
            return r is not None and pred(r)
        try:
            self.wait_until(ok, what, timeout=timeout)
        except AssertionError:
            raise AssertionError("%s; %s %s went through %r" % (what, check, dim, seen))
        return seen

    def table(self):
        r = self.h.run("tether-agent", ["checks", "--consent-socket", self.sock])
        self.assertEqual(r.rc, 0, r)
        return r.out

    # -- with the real broker ---------------------------------------------------------------

    def test_failing_after_exactly_raise_after_runs_and_hung_helper_is_unknown(self):
        root, bindir = self.root_with_hung_systemctl()
        b = self.h.start_broker()
        # A second's period (the catalogue's least) and 1%: the test's disk fails every run.
        a = self.agent(b.addr, "checks.units_failed.period = 1s\n"   # dotted at top level, or:
                               "[checks]\n"
                               "disk_used.threshold = 1%\n"
                               "disk_used.raise_after = 2\n"
                               "disk_used.period = 1s\n"
                               "units_failed.raise_after = 1\n"
                               "services_down.services = cups, ssh\n"
                               "services_down.raise_after = 1\n",
                       extra=["--inventory-root", root, "--inventory-path", bindir, "--log-level", "debug"])
        seen = self.wait_result("disk_used", "/", lambda r: r["state"] == "failing", "disk_used failing")
        # Never failing before its second failing run in a row: first pending with one.
        for r in seen:
            self.assertEqual(r["last"], "failing", seen)
            self.assertEqual(r["needed"], 2, seen)
            if r["state"] == "pending":
                self.assertEqual(r["streak"], 1, seen)
            else:
                self.assertGreaterEqual(r["streak"], 2, seen)
        d = results(self.sock)[("disk_used", "/")]
        self.assertRegex(d["value"], r"^\d+% used \(.* free\)$")
        self.assertEqual(d["threshold"], "1%")
        # tmpfs is left out by default: /run is no result.
        self.assertNotIn(("disk_used", "/run"), results(self.sock))
        # The hung systemctl: unknown after its timeout, never ok.
        u = self.wait_result("units_failed", "", lambda r: r["state"] == "unknown", "units_failed unknown")
        self.assertNotIn("ok", [r["state"] for r in u])
        r = results(self.sock)
        self.assertEqual(r[("units_failed", "")]["message"], "systemctl timed out after 5s (stopped)")
        self.assertEqual(r[("units_failed", "")]["value"], "")
        self.wait_result("services_down", "cups.service", lambda r: r["state"] == "unknown", "cups unknown")
        r = results(self.sock)
        self.assertEqual(r[("services_down", "ssh.service")]["state"], "unknown")
        self.assertEqual(r[("services_down", "ssh.service")]["message"], "systemctl timed out after 5s (stopped)")
        # The broker's policy (version 1 before any admin sets one) reaches the agent.
        self.wait_until(lambda: results(self.sock).get("policy") == 1, "the agent runs the broker's policy v1")
        self.assertEqual(r[("cert_expiry", None)]["state"], "na")
        # What the employee sees.
        out = self.table()
        self.assertIn("policy: version 1 from the broker", out)
        lines = out.splitlines()
        self.assertEqual(lines[1].split(), ["CHECK", "DIMENSION", "STATE", "VALUE", "THRESHOLD", "SINCE"])
        disk = [ln for ln in lines if ln.startswith("disk_used ")]
        self.assertEqual(len(disk), 1, out)
        self.assertRegex(disk[0], r"^disk_used +/ +failing +\d+% used \(.* free\) +1% +\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        units = [ln for ln in lines if ln.startswith("units_failed ")][0]
        self.assertRegex(units, r"^units_failed +- +unknown +systemctl timed out after 5s \(stopped\) +1 +\d{4}-")
        self.assertRegex(out, r"\ncert_expiry +- +n/a +no certificate file to watch")
        # The broker takes the reports: the failing disk is an alert with a ticket there; the
        # unknown ones are not (unknown is neither a failure nor a pass).
        b.wait_for(r'msg="alert" what=opened alert=A-\d+ device=dev1 check=disk_used dimension="/"')
        self.assertEqual(b.count(r'msg="alert" what=opened'), 1, b.log())
        self.assertEqual(a.count(r'level=warn mod=checks'), 0, a.log())
        self.assertEqual(a.count(r'msg="disconnected"'), 0, a.log())
        a.wait_for(r'msg="state changed" check=disk_used dimension="/" state=failing')

    def test_a_bad_config_key_is_refused_at_start(self):
        b = self.h.start_broker()
        a = self.agent(b.addr, "[checks]\ndisk_used.threshold = 120%\n", wait=False)
        a2 = self.agent(b.addr, "checks.disk_usd.period = 1s\n", name="agent2", wait=False)
        for p in (a, a2):
            p.expect_clean_exit = False
            self.wait_until(lambda: not p.alive(), "the agent exits")
            self.assertEqual(p.p.returncode, 2, p.log())
        self.assertIn("agent.conf:2: checks.disk_used.threshold: 120% is out of range (1%..100%)", a.log())
        self.assertIn("agent2.conf:1: checks.disk_usd.period: no such check (known: disk_used, ", a2.log())

    # -- with a stand-in broker ----------------------------------------------------------------

    def fake(self, **kw):
        fb = FakeBroker(self.pki, **kw)
        self.addCleanup(fb.shutdown)
        return fb

    def wait_report(self, fb, pred, what, timeout=20.0):
        got = []

        def ok():
            for rep in fb.report_list():
                if pred(rep):
                    got.append(rep)
                    return True
            return False
        self.wait_until(ok, what, timeout=timeout)
        return got[0]

    def test_policy_push_applies_live_and_is_kept(self):
        # The broker's clock ten minutes behind ours: clock_skew has something to find.
        fb = self.fake(clock_offset_ms=-600000)
        a = self.agent(fb.addr, "", wait=False)
        fb.accept()
        a.wait_for(r'msg="connected"')
        # At Welcome: a full report of the policy it runs (none yet).
        first = self.wait_report(fb, lambda r: True, "a report at Welcome")
        self.assertEqual(first.get(2, [0])[0], 1, first)        # full
        self.assertEqual(first.get(1, [0])[0], 0, first)        # policy_version
        # A policy: disk at 1% every second, the clock checked every second, certificates.
        dev1 = self.pki.cert("dev1")  # 30 days
        missing = os.path.join(self.h.dir, "nothing.pem")
        policy = [("checks.disk_used.threshold", "1%"), ("checks.disk_used.period", "1s"),
                  ("checks.disk_used.raise_after", "1"), ("checks.disk_used.ignore", ""),
                  ("checks.clock_skew.period", "1s"), ("checks.clock_skew.raise_after", "1"),
                  ("checks.cert_expiry.period", "1s"), ("checks.cert_expiry.threshold", "60d"),
                  ("checks.cert_expiry.paths", "%s, %s,%s" % (dev1, self.pki.broker_cert, missing))]
        ans = fb.push(5, policy)
        self.assertNotIn(2, ans, ans)
        self.assertEqual(pb_parse(ans[RESP_POLICY_PUSH][0]).get(1, [0])[0], 5)
        a.wait_for(r'msg="policy applied" version=5 settings=9 changed=1')
        # Without a restart: the next reports say version 5 and carry the new results.
        self.wait_report(fb, lambda r: r.get(1, [0])[0] == 5 and r.get(2, [0])[0] == 1, "a full report of version 5")

        def failing(check, dim=""):
            return lambda rep: rep.get(1, [0])[0] == 5 and any(
                x["check"] == check and x["dimension"] == dim and x["state"] == "failing" for x in decode_results(rep))
        rep = self.wait_report(fb, failing("clock_skew"), "clock_skew failing in a report")
        skew = [x for x in decode_results(rep) if x["check"] == "clock_skew"][0]
        self.assertRegex(skew["value"], r"^\+(9m 5\d|10m)s? .*ahead of the broker$")
        self.assertEqual(skew["threshold"], "1m")
        self.assertGreater(skew["since"], 0)
        rep = self.wait_report(fb, failing("cert_expiry", dev1), "the 30-day certificate failing")
        r = results(self.sock)
        self.assertEqual(r["policy"], 5)
        self.assertEqual(r[("cert_expiry", dev1)]["state"], "failing")
        self.assertRegex(r[("cert_expiry", dev1)]["value"], r"^expires in (29|30)d")
        self.assertIn("CN", r[("cert_expiry", dev1)]["message"])
        self.assertEqual(r[("cert_expiry", self.pki.broker_cert)]["last"], "ok")
        self.assertEqual(r[("cert_expiry", missing)]["last"], "unknown")
        self.assertIn("cannot read it", r[("cert_expiry", missing)]["value"])
        self.wait_result("disk_used", "/", lambda x: x["state"] == "failing", "disk_used failing")
        self.assertIn("policy: version 5 from the broker", self.table())
        # Kept in the state directory.
        with open(os.path.join(self.state, "checks-policy.json")) as f:
            kept = json.load(f)
        self.assertEqual(kept["version"], 5)
        self.assertIn(["checks.disk_used.threshold", "1%"], kept["settings"])
        # A bad policy: refused whole with the reason; version 5 runs on.
        ans = fb.push(6, [("checks.disk_used.period", "5s"), ("checks.disk_used.threshold", "120%")])
        err = pb_parse(ans[2][0])
        self.assertEqual(err[1][0], ERR_INVALID)
        self.assertEqual(err[2][0].decode(), "checks.disk_used.threshold: 120% is out of range (1%..100%)")
        self.assertEqual(results(self.sock)["policy"], 5)
        with open(os.path.join(self.state, "checks-policy.json")) as f:
            self.assertEqual(json.load(f)["version"], 5)
        # Turned off: its results go, and a full report without them says so.
        n = len(fb.report_list())
        ans = fb.push(7, policy + [("checks.disk_used.enabled", "off")])
        self.assertNotIn(2, ans, ans)
        self.assertEqual(results(self.sock)[("disk_used", None)]["state"], "off")
        rep = self.wait_report(fb, lambda r: r.get(1, [0])[0] == 7 and r.get(2, [0])[0] == 1 and
                               fb.report_list().index(r) >= n, "a full report of version 7")
        self.assertNotIn("disk_used", [x["check"] for x in decode_results(rep)])
        self.assertIn("clock_skew", [x["check"] for x in decode_results(rep)])
        # Restarted with no broker to reach: it runs the kept policy.
        a.stop()
        fb.close()
        dead = socket.socket()
        dead.bind(("127.0.0.1", 0))
        port = dead.getsockname()[1]
        dead.close()
        a2 = self.agent("127.0.0.1:%d" % port, "", name="agent2", wait=False)
        a2.wait_for(r'msg="running the kept policy" version=7 settings=10')
        a2.wait_for(r'mod=consent msg="listening"')  # the checks start before the local socket is up
        self.wait_until(lambda: results(self.sock).get("policy") == 7, "the kept policy in CHECKS")
        self.assertEqual(results(self.sock)[("disk_used", None)]["state"], "off")
        self.wait_result("cert_expiry", dev1, lambda x: x["state"] == "failing", "cert_expiry from the kept policy")

    def test_reports_follow_changes_and_stop_when_refused(self):
        fb = self.fake()
        fb.refuse_reports = True
        a = self.agent(fb.addr, "[checks]\ndisk_used.threshold = 1%\ndisk_used.period = 1s\n"
                                "disk_used.raise_after = 1\ndisk_used.ignore = \"\"\n", wait=False)
        fb.accept()
        a.wait_for(r'msg="connected"')
        seen = self.wait_result("disk_used", "/", lambda r: r["state"] == "failing", "disk_used failing")
        # Two more runs of the check (its streak grows), time for a report to follow if one would.
        streak = seen[-1]["streak"]
        self.wait_result("disk_used", "/", lambda r: r["streak"] >= streak + 2, "two more runs of disk_used")
        # Refused as unknown: the one report at Welcome, nothing after it on this link.
        self.assertEqual(len(fb.report_list()), 1, fb.report_list())
        # The next link hears everything: a full report with the failing disk.
        fb.close()
        fb.refuse_reports = False
        fb.accept()
        rep = self.wait_report(fb, lambda r: r.get(2, [0])[0] == 1 and any(
            x["check"] == "disk_used" and x["state"] == "failing" for x in decode_results(r)), "a full report")
        got = {(x["check"], x["dimension"]) for x in decode_results(rep)}
        self.assertIn(("disk_used", "/"), got)
        self.assertIn(("reboot_pending", ""), got)
        # Changes go as they come, only the results that changed.
        a.wait_for(r'msg="connected"', count=2)


if __name__ == "__main__":
    unittest.main()
