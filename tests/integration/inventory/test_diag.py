"""Diagnostics (echo and throughput channels: `tether ping`, `tether speedtest`; the report:
`tether diag`) are channels like any other: under a ticket, in a session with diag access that the person at
the device agreed to (admins may run them without), and no one person may hold so many
channels on a device that others are locked out. The real programs on 127.0.0.1, as in
test_session.

Run by ctest as `integration.diag` (TT_BIN_DIR names the build directory)."""

import json
import os
import re
import socket
import subprocess
import time
import unittest

from harness import (K_CH_ACCEPT, K_CH_CLOSE, K_CH_OPEN, K_CH_REJECT, ROLE_TECHNICIAN, Pki, TetherTestCase,
                     WireClient, pb_bytes, pb_parse, pb_varint)
from test_session import SessionWorld

CH_THROUGHPUT, CH_ECHO, CH_DIAG = 1, 2, 6
# The stand-in journalctl (tests/fixtures/bin/journal) and the report's live tables.
JOURNAL_BIN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "fixtures", "bin", "journal")
LIVE_TABLES = ("systemd_failed_units", "journal_errors", "disk_pressure", "memory_pressure", "pressure_stall",
               "dns_lookups", "broker_connection", "time_skew", "pending_reboot")
ERR_INVALID = 14
ROLE_ADMIN = 3
ERR_TOO_BIG, ERR_BUSY, ERR_DENIED = 4, 8, 11
PER_PERSON_DEVICE = 8  # TT_CHANNELS_PER_PERSON_DEVICE_MAX
GiB = 1 << 30


def diag_open(kind, device, session=0, nbytes=0, window=65536):
    return (pb_varint(1, kind) + pb_bytes(2, device) + pb_varint(3, window)
            + (pb_varint(6, nbytes) if nbytes else b"") + (pb_varint(8, session) if session else b""))


class DiagTest(SessionWorld, TetherTestCase):
    maxDiff = None

    @classmethod
    def setUpClass(cls):
        cls.pki = Pki()
        for role, name in (("technician", "tech"), ("technician", "tech2"), ("admin", "boss"),
                           ("agent", "dev1")):
            cls.pki.issue(role, name)

    # -- helpers ---------------------------------------------------------------------------

    def wire(self, who="tech"):
        c = WireClient(self.b.port, self.pki.ca, self.pki.cert(who), self.pki.key(who))
        self.addCleanup(c.close)
        c.handshake_hello(role=ROLE_ADMIN if who == "boss" else ROLE_TECHNICIAN)
        return c

    def answer_to(self, c, ch):
        """The broker's answer to our open of channel ch: (kind, fields)."""
        while True:
            kind, _, got, body = c.read_control(timeout=10, answer_pings=True)
            if got == ch and kind in (K_CH_ACCEPT, K_CH_REJECT):
                return kind, pb_parse(body)

    def session_open(self, tid, want, who="tech"):
        r = self.tech(["session", "open", "--device", "dev1", "--ticket", tid, "--want", want], who=who)
        self.assertEqual(r.rc, 0, r)
        sid = r.out.split()[0]
        self.assertRegex(sid, r"^S-\d+$")
        return int(sid[2:])

    def one_line(self, r, *needles):
        lines = r.err.strip().splitlines()
        self.assertEqual(len(lines), 1, r)
        for n in needles:
            self.assertIn(n, lines[0], r)

    # -- a ticket and diag access ------------------------------------------------------------

    def test_technician_needs_a_ticket_and_diag_access(self):
        self.world(policy="unattended")
        # Without a ticket: refused, saying what to do; nothing reaches the device.
        for cmd in (["ping", "dev1", "--count", "3"], ["speedtest", "dev1", "--bytes", "64k"]):
            r = self.tech(cmd)
            self.assertEqual(r.rc, 1, r)
            self.assertEqual(r.out, "", r)
            self.one_line(r, "dev1", "--ticket")
        self.assertEqual(self.a.count(r'msg="channel opened"'), 0, self.a.log())
        # On the wire too, and with a session that does not include diag access.
        tid = self.new_ticket()
        shell_sid = self.session_open(tid, "shell")
        c = self.wire()
        for i, (kind, sid) in enumerate(((CH_ECHO, 0), (CH_THROUGHPUT, 0), (CH_ECHO, shell_sid),
                                         (CH_ECHO, shell_sid + 100))):
            ch = 2 * i + 1
            c.send_frame(K_CH_OPEN, diag_open(kind, "dev1", sid, nbytes=4096 if kind == CH_THROUGHPUT else 0),
                         channel=ch)
            k, f = self.answer_to(c, ch)
            self.assertEqual((k, f.get(1)), (K_CH_REJECT, [ERR_DENIED]), f)
            msg = f[2][0].decode()
            if sid == 0:
                self.assertIn("--ticket", msg)
            elif sid == shell_sid:
                self.assertIn("S-%d does not include diag access" % sid, msg)
            else:
                self.assertIn("not a live session of yours", msg)
        self.assertEqual(self.a.count(r'msg="channel opened"'), 0, self.a.log())
        # Under the ticket: a session with diag access (a new grant: the shell one lacks it),
        # which the speedtest then reuses.
        r = self.tech(["ping", "dev1", "--ticket", tid, "--count", "5"])
        self.assertEqual(r.rc, 0, r)
        self.assertRegex(r.out, r"^dev1: 5 round trips of \d+ bytes: p50 ")
        r = self.tech(["speedtest", "dev1", "--ticket", tid, "--bytes", "1M", "--json"])
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(json.loads(r.out)["bytes"], 1 << 20)
        entries = self.audit()
        requests = [e for e in entries if e["action"] == "session-request"]
        self.assertEqual([e["detail"]["access"] for e in requests], ["shell", "diag"], requests)
        diag_sid = requests[1]["target"]
        self.assertIn("session-reuse", [e["action"] for e in entries])
        opens = [e for e in entries if e["action"] == "channel-open"]
        self.assertEqual([(e["actor"], e["detail"]["kind"], e["detail"]["session"]) for e in opens],
                         [("tech", "echo", diag_sid), ("tech", "throughput", diag_sid)])
        refused = [e for e in entries if e["action"] == "channel-refused"]
        self.assertEqual(len(refused), 6, refused)
        # The ticket's timeline tells what ran under it.
        text = json.dumps(self.ticket(tid)["events"])
        self.assertIn("echo channel of %s opened" % diag_sid, text)
        self.assertIn("throughput channel of %s opened" % diag_sid, text)

    def test_diag_access_is_asked_for_like_a_shell(self):
        self.world(policy="ask")
        tid = self.new_ticket()
        w = self.watcher()
        ping = self.spawn_bg(["ping", "dev1", "--ticket", tid, "--count", "3"])
        p = w.prompt()
        self.assertEqual((p["technician"], p["ticket"], p["access"]), ("tech", tid, "diag"), p)
        w.answer(p["id"], False)
        out, err = ping.communicate(timeout=30)
        self.assertEqual(ping.returncode, 1, err)
        self.assertEqual(err.decode().strip(), "tether: the employee refused access")
        self.assertEqual(self.a.count(r'msg="channel opened"'), 0, self.a.log())
        # Yes this time: the test runs, and the employee sees it run.
        ping = self.spawn_bg(["ping", "dev1", "--ticket", tid, "--count", "3"])
        p = w.prompt()
        w.answer(p["id"], True)
        out, err = ping.communicate(timeout=30)
        self.assertEqual(ping.returncode, 0, err)
        self.assertIn(b"3 round trips", out)
        self.assertEqual(w.expect("ACTIVITY").split(" ", 1)[1].split("\t")[1:],
                         ["tech", "started a latency test (ping)"])

    def test_diag_report_is_the_machine_under_a_ticket(self):
        """`tether diag`: asked for like any diag access, shown to the employee, audited, and
        its facts are this machine's (the agent runs here), the live state first. This
        machine runs no journald: the agent's helper PATH (inventory.path) puts a stand-in
        journalctl first, whose entries carry a password, an Authorization header and a
        private key, which must not leave the device."""
        self.world(policy="ask", agent_extra=["--inventory-path", JOURNAL_BIN + ":/usr/bin:/bin:/usr/sbin:/sbin"])
        tid = self.new_ticket()
        r = self.tech(["diag", "dev1"])
        self.assertEqual(r.rc, 1, r)
        self.one_line(r, "dev1", "--ticket")
        w = self.watcher()
        p = self.spawn_bg(["diag", "dev1", "--ticket", tid, "--json"])
        q = w.prompt()
        self.assertEqual((q["technician"], q["ticket"], q["access"]), ("tech", tid, "diag"), q)
        w.answer(q["id"], True)
        out, err = p.communicate(timeout=60)
        self.assertEqual(p.returncode, 0, err)
        self.assertEqual(w.expect("ACTIVITY").split(" ", 1)[1].split("\t")[1:2], ["tech"])
        doc = json.loads(out)
        self.assertEqual(doc["device"], "dev1")
        tables = doc["tables"]
        for name in ("system_info", "os_version", "kernel_info", "uptime", "cpu_info", "memory_info", "mounts",
                     "block_devices", "interface_details", "interface_addresses", "routes", "dns_resolvers",
                     "listening_ports", "deb_packages", "rpm_packages", "systemd_units", "logged_in_users",
                     "battery"):
            self.assertIn(name, tables)

        def rows(name):
            t = tables[name]
            return [dict(zip(t["columns"], r)) for r in t["rows"]]
        with open("/proc/meminfo") as f:
            total_kb = int(next(ln for ln in f if ln.startswith("MemTotal:")).split()[1])
        self.assertEqual(int(rows("memory_info")[0]["memory_total"]), total_kb * 1024)
        self.assertEqual(rows("kernel_info")[0]["version"], os.uname().release)
        self.assertIn("/", [m["path"] for m in rows("mounts")])
        self.assertIn("bash", [d["name"] for d in rows("deb_packages")])
        # The live state, which only a report has.
        for name in LIVE_TABLES:
            self.assertIn(name, tables)
        self.assertEqual(int(rows("memory_pressure")[0]["memory_total"]), total_kb * 1024)
        if os.path.exists("/proc/pressure/memory"):
            self.assertEqual(sorted(p["resource"] for p in rows("pressure_stall")), ["cpu", "io", "memory"])
        if not os.path.isdir("/run/systemd/system"):
            self.assertIn("not booted with systemd", tables["systemd_failed_units"]["error"])
        link = rows("broker_connection")[0]
        self.assertEqual((link["state"], link["address"], link["connects"]), ("connected", self.b.addr, "1"))
        self.assertGreater(float(link["round_trip_ms"]), 0)
        self.assertLess(float(link["round_trip_ms"]), 2000)
        self.assertNotIn("error", tables["broker_connection"])
        # Broker and agent share this machine's clock: no skew beyond the measure's error.
        skew = rows("time_skew")[0]
        self.assertLessEqual(abs(int(skew["skew_ms"])), int(skew["uncertainty_ms"]) + 50, skew)
        self.assertAlmostEqual(int(skew["local_time"]) / 1000, time.time(), delta=120)
        # The broker is an address (nothing to resolve); this machine's own name is resolved.
        self.assertEqual([d["name"] for d in rows("dns_lookups")], [socket.gethostname()])
        journal = rows("journal_errors")
        self.assertEqual(len(journal), 8, journal)
        by_time = {e["time"]: e for e in journal}
        self.assertEqual(by_time["1709258403"]["message"],
                         "mysqldump failed: cmd=mysqldump --user=backup --password=[REDACTED] shop")
        self.assertEqual(by_time["1709294400"]["message"],
                         "proxy: upstream rejected the request; Authorization: [REDACTED]")
        self.assertEqual(by_time["1709294401"]["message"], "config dump: tls_key=[REDACTED]\nport=8443")
        # No secret anywhere in what left the device.
        for secret in ("-----BEGIN", "Authorization: Bearer", "abc.def.ghi", "Sup3rS3cret", "MIIEow"):
            self.assertNotIn(secret, out.decode())
        # The readable page, under the same grant (no second prompt): the live state first.
        r = self.tech(["diag", "dev1", "--ticket", tid])
        self.assertEqual(r.rc, 0, r)
        for word in ("Memory", "OS", "Disks", "Packages"):
            self.assertIn(word, r.out)
        self.assertLess(r.out.index("\nNow\n"), r.out.index("\nDisks\n"), r.out)
        self.assertRegex(r.out, r"\nBroker +connected %s .*round trip [0-9.]+ ms\n" % re.escape(self.b.addr))
        self.assertRegex(r.out, r"\nClock +in step with the broker's ")
        self.assertIn("Errors      8 in the journal; the latest:\n", r.out)
        self.assertIn("ssh.service: error: kex_exchange_identification", r.out)
        self.assertIn("Authorization: [REDACTED]", r.out)
        for secret in ("-----BEGIN", "Authorization: Bearer", "Sup3rS3cret"):
            self.assertNotIn(secret, r.out)
        # The pushed inventory has none of the live tables: they change by the minute, and
        # they are the session's, not anyone's to read.
        self.a.wait_for(r'msg="sent" version=\d+')
        r = self.tech(["inventory", "dev1", "--json"])
        self.assertEqual(r.rc, 0, r)
        pushed = json.loads(r.out)["tables"]
        self.assertIn("memory_info", pushed)
        for name in LIVE_TABLES:
            self.assertNotIn(name, pushed)
        opens = [e for e in self.audit() if e["action"] == "channel-open"]
        self.assertEqual([e["detail"]["kind"] for e in opens], ["diag", "diag"], opens)
        self.assertIn("diag channel of", json.dumps(self.ticket(tid)["events"]))

    def test_diag_attach_keeps_the_devices_report_on_the_ticket(self):
        self.world(policy="unattended")
        tid = self.new_ticket()
        r = self.tech(["diag", "dev1", "--attach"])
        self.assertEqual(r.rc, 2, r)
        self.assertIn("--attach keeps the report on a ticket", r.err)
        r = self.tech(["diag", "dev1", "--ticket", tid, "--attach"])
        self.assertEqual(r.rc, 0, r)
        m = re.search(r"kept on (T-\d+) as (D-\d+) \(tether diag show D-\d+\)", r.out)
        self.assertIsNotNone(m, r.out)
        self.assertEqual(m.group(1), tid)
        did = m.group(2)
        # What is kept is what the device sent: shown the same way, with who and when.
        r = self.tech(["diag", "show", did])
        self.assertEqual(r.rc, 0, r)
        self.assertRegex(r.out.splitlines()[0],
                         r"^%s: kept on %s by tech at \S+ \(S-\d+, \d+ bytes, sha256 [0-9a-f]{64}\)$" % (did, tid))
        sha = r.out.splitlines()[0].split("sha256 ")[1].rstrip(")")
        self.assertIn("Memory", r.out)
        r = self.tech(["diag", "show", did, "--json"])
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(json.loads(r.out)["device"], "dev1")
        r = self.tech(["diag", "show", "D-999"])
        self.assertEqual(r.rc, 1, r)
        self.assertIn("no diagnostics report D-999", r.err)
        # On the ticket's timeline, and in the audit with its sha256.
        self.assertIn("kept as %s" % did, json.dumps(self.ticket(tid)["events"]))
        kept = [e for e in self.audit() if e["action"] == "diag-attach"]
        self.assertEqual(len(kept), 1, kept)
        self.assertEqual((kept[0]["actor"], kept[0]["detail"]["ticket"], kept[0]["detail"]["sha256"]), ("tech", tid, sha))
        # Without a session there is no ticket to keep it on: the broker says so.
        c = self.wire(who="boss")
        c.send_frame(K_CH_OPEN, diag_open(CH_DIAG, "dev1") + pb_varint(14, 1), channel=1)
        k, f = self.answer_to(c, 1)
        self.assertEqual((k, f.get(1)), (K_CH_REJECT, [ERR_INVALID]), f)
        self.assertIn(b"--attach needs --ticket", f[2][0])

    def test_admin_needs_no_ticket_and_is_audited(self):
        self.world(policy="deny")  # nobody could consent: an admin's diagnostics do not ask
        r = self.admin(["ping", "dev1", "--count", "3"])
        self.assertEqual(r.rc, 0, r)
        r = self.admin(["speedtest", "dev1", "--bytes", "256k"])
        self.assertEqual(r.rc, 0, r)
        opens = [e for e in self.audit() if e["action"] == "channel-open"]
        self.assertEqual([(e["actor"], e["detail"]["kind"], e["detail"]["session"], e["detail"]["as"])
                          for e in opens],
                         [("boss", "echo", "", "admin, without a ticket"),
                          ("boss", "throughput", "", "admin, without a ticket")])

    def test_session_end_closes_its_diagnostics(self):
        self.world(policy="unattended")
        tid = self.new_ticket()
        sid = self.session_open(tid, "diag")
        c = self.wire()
        c.send_frame(K_CH_OPEN, diag_open(CH_ECHO, "dev1", sid), channel=1)
        k, f = self.answer_to(c, 1)
        self.assertEqual(k, K_CH_ACCEPT, f)
        r = self.tech(["session", "end", "S-%d" % sid])
        self.assertEqual(r.rc, 0, r)
        while True:
            kind, _, ch, body = c.read_control(timeout=10, answer_pings=True)
            if kind == K_CH_CLOSE and ch == 1:
                break
        self.assertIn(b"session S-%d was ended by tech" % sid, pb_parse(body)[2][0])

    # -- bounds ------------------------------------------------------------------------------

    def test_one_technician_cannot_take_a_device_from_everyone(self):
        self.world(policy="unattended")
        tid = self.new_ticket()
        sid = self.session_open(tid, "diag")
        c1, c2 = self.wire(), self.wire()
        # Eight echo channels over two connections: all accepted by the device.
        for i in range(PER_PERSON_DEVICE):
            c = c1 if i < 5 else c2
            ch = 2 * i + 1
            c.send_frame(K_CH_OPEN, diag_open(CH_ECHO, "dev1", sid), channel=ch)
            k, f = self.answer_to(c, ch)
            self.assertEqual(k, K_CH_ACCEPT, (i, f))
        # The ninth is refused, on either connection, with the limit named.
        for c, ch in ((c1, 41), (c2, 43)):
            c.send_frame(K_CH_OPEN, diag_open(CH_ECHO, "dev1", sid), channel=ch)
            k, f = self.answer_to(c, ch)
            self.assertEqual((k, f.get(1)), (K_CH_REJECT, [ERR_BUSY]), f)
            self.assertEqual(f[2][0], b"you already hold 8 channels on dev1: close some first")
        r = self.tech(["ping", "dev1", "--ticket", tid, "--count", "1"])
        self.assertEqual(r.rc, 1, r)
        self.one_line(r, "you already hold 8 channels on dev1")
        # Someone else still gets in.
        t2 = self.new_ticket(who="tech2", summary="theirs")
        r = self.tech(["ping", "dev1", "--ticket", t2, "--count", "3"], who="tech2")
        self.assertEqual(r.rc, 0, r)
        # Closing one gives the room back.
        c1.send_frame(K_CH_CLOSE, b"", channel=1)
        deadline = time.monotonic() + 10
        while True:
            r = self.tech(["ping", "dev1", "--ticket", tid, "--count", "1"])
            if r.rc == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.1)  # the close reaches the broker after our next open may
        self.assertEqual(r.rc, 0, r)
        self.assertTrue(self.a.alive(), self.a.log())

    def test_a_speedtest_asks_for_at_most_1_gib(self):
        self.world(policy="unattended")
        tid = self.new_ticket()
        sid = self.session_open(tid, "diag")
        c = self.wire()
        c.send_frame(K_CH_OPEN, diag_open(CH_THROUGHPUT, "dev1", sid, nbytes=GiB + 1), channel=1)
        k, f = self.answer_to(c, 1)
        self.assertEqual((k, f.get(1)), (K_CH_REJECT, [ERR_TOO_BIG]), f)
        self.assertEqual(f[2][0], b"a speedtest may ask for at most 1 GiB")
        self.assertEqual(self.a.count(r'msg="channel opened"'), 0, self.a.log())
        # Admins too; and the console says so before connecting.
        a = self.wire("boss")
        a.send_frame(K_CH_OPEN, diag_open(CH_THROUGHPUT, "dev1", 0, nbytes=64 * GiB), channel=1)
        k, f = self.answer_to(a, 1)
        self.assertEqual((k, f.get(1)), (K_CH_REJECT, [ERR_TOO_BIG]), f)
        r = self.tech(["speedtest", "dev1", "--ticket", tid, "--bytes", "2G"])
        self.assertEqual(r.rc, 2, r)
        self.assertIn("--bytes", r.err)
        refused = [e for e in self.audit() if e["action"] == "channel-refused"]
        self.assertEqual(len(refused), 2, refused)


if __name__ == "__main__":
    unittest.main()
