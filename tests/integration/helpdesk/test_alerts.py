"""Health checks become alerts and alerts become tickets, with the real broker and agent: an
admin's policy for every device ("*") reaches the agent without a restart and makes its disk
check fail; the failure is one alert and one ticket however often it is reported again;
recovery resolves the ticket with a comment; failing again within the reopen window opens the
same ticket; a snooze keeps the queue quiet and counts what it held back; a maintenance window
records and, once over, tickets what still fails; a storm over 50 devices (the fleet tool
speaks for them) is one parent ticket; a bad policy is refused whole. The real programs on
127.0.0.1.

Run by ctest as `integration.alerts` (TT_BIN_DIR names the build directory)."""

import json
import os
import re
import subprocess
import unittest

from harness import (K_REQUEST, K_RESPONSE, ROLE_AGENT, Pki, TetherTestCase, WireClient, binary, pb_bytes, pb_parse,
                     pb_varint)

ROLE_ADMIN = 3
ERR_TOO_BIG, ERR_BUSY, ERR_INVALID = 4, 8, 14
TICKETS_PER_DEVICE_HOUR = 20  # TT_ALERT_TICKETS_PER_DEVICE_HOUR
REPORTS_PER_MIN = 30          # TT_CHECK_REPORTS_PER_MIN
RESULTS_MAX = 256             # TT_CHECK_RESULTS_MAX
# Every check but disk_used is off, so the test's machine decides nothing but the disk.
OTHERS = ("inodes_used", "memory_pressure", "swap_used", "units_failed", "services_down", "reboot_pending",
          "clock_skew", "cert_expiry", "agent_renewal", "agent_state_disk")
AGENT_CONF = ("[checks]\ndisk_used.period = 1s\ndisk_used.raise_after = 2\ndisk_used.clear_after = 2\n"
              + "".join("%s.enabled = off\n" % c for c in OTHERS))


class AlertsTest(TetherTestCase):
    maxDiff = None

    @classmethod
    def setUpClass(cls):
        cls.pki = Pki()
        for role, name in (("technician", "tech"), ("admin", "boss"), ("agent", "dev1"), ("agent", "dev2")):
            cls.pki.issue(role, name)

    def world(self, broker_extra=()):
        self.b = self.h.start_broker(extra=["--alert-sweep-interval", "1s"] + list(broker_extra))
        self.conf = os.path.join(self.h.dir, "agent.conf")
        with open(self.conf, "w") as f:
            f.write(AGENT_CONF)
        self.state = os.path.join(self.h.dir, "state")
        os.makedirs(self.state, mode=0o700, exist_ok=True)
        self.a = self.start_agent()
        # Before any policy: the disk is far under 90%, the agent runs the broker's version 1.
        self.wait_until(lambda: self.disk_state() == "ok", "disk_used ok at the broker")
        return self.b, self.a

    def start_agent(self, name=None):
        return self.h.start_agent(self.b.addr, "dev1", "dev1.example", name=name,
                                  extra=["--config", self.conf, "--state-dir", self.state])

    def cli(self, args, who="boss"):
        return self.h.console(self.b.addr, args, cert=self.pki.cert(who), key=self.pki.key(who))

    def ok(self, args, who="boss"):
        r = self.cli(args, who)
        self.assertEqual(r.rc, 0, r)
        return r

    def jcli(self, args, who="tech"):
        return json.loads(self.ok(args + ["--json"], who).out)

    def checks(self):
        return self.jcli(["checks", "--device", "dev1"])[0]

    def disk_state(self):
        for r in self.checks()["results"]:
            if r["check"] == "disk_used" and r["dimension"] == "/":
                return r["state"]
        return None

    def threshold(self, value):
        """Every device's disk threshold: failing at 1%, passing at 100%."""
        r = self.ok(["policy", "set", "--group", "*", "checks.disk_used.threshold=" + value])
        v = int(re.search(r"policy version (\d+)", r.out).group(1))
        self.b.wait_for(r'msg="policy applied" device=dev1 version=%d' % v)
        return v

    def alerts(self):
        return self.jcli(["alerts"])

    def tickets(self):
        return self.jcli(["tickets", "--state", "all"])

    def show(self, tid):
        return self.jcli(["ticket", "show", tid])

    def count(self, pattern):
        return self.b.count(pattern)

    # -- the life of one alert -------------------------------------------------------------------

    def test_policy_makes_a_check_fail_one_alert_one_ticket_recovery_and_reopen(self):
        self.world()
        self.assertEqual(self.checks()["policy_version"], 1)
        v = self.threshold("1%")
        self.b.wait_for(r'msg="alert" what=opened alert=A-1 device=dev1 check=disk_used dimension="/" ticket=T-1')
        a = self.alerts()
        self.assertEqual(len(a), 1, a)
        self.assertEqual((a[0]["id"], a[0]["state"], a[0]["ticket"], a[0]["check"], a[0]["dimension"], a[0]["raised"]),
                         ("A-1", "open", "T-1", "disk_used", "/", 1))
        self.assertEqual(a[0]["threshold"], "1%")
        t = self.show("T-1")
        self.assertEqual((t["ticket"]["source"], t["ticket"]["device"], t["ticket"]["created_by"]),
                         ("check", "dev1", "broker"))
        self.assertRegex(t["ticket"]["summary"], r"^disk_used on dev1\.example: / \d+% used .*\(threshold 1%\)$")
        self.assertEqual(t["alerts"], ["A-1"])
        # The agent runs the broker's version, and `checks` says so.
        c = self.checks()
        self.assertEqual((c["policy_version"], c["policy_current"]), (v, v))
        # Reported again (a restarted agent's full reports: pending, then failing): still one.
        before = self.checks()["reported_ms"]
        self.a.stop()
        self.a = self.start_agent(name="agent-dev1-again")
        self.a.wait_for(r'msg="state changed" check=disk_used dimension="/" state=failing')
        self.wait_until(lambda: self.checks()["reported_ms"] > before and self.disk_state() == "failing",
                        "the restarted agent's failing report at the broker")
        self.assertEqual(self.count(r'msg="alert" what=opened'), 1)
        self.assertEqual(len(self.tickets()), 1)
        self.assertEqual(len(self.alerts()), 1)
        # Recovery resolves the ticket, with a comment.
        self.threshold("100%")
        self.b.wait_for(r'msg="alert" what=resolved alert=A-1 .* ticket=T-1')
        t = self.show("T-1")
        self.assertEqual(t["ticket"]["state"], "resolved")
        last = t["events"][-1]
        self.assertEqual((last["kind"], last["actor"]), ("resolved", "broker"))
        self.assertRegex(last["text"], r"^disk_used recovered on dev1\.example: / \d+% used")
        self.assertEqual(self.alerts()[0]["state"], "resolved")
        # Failing again within the reopen window: the same ticket, not another.
        self.threshold("1%")
        self.b.wait_for(r'msg="alert" what=reopened alert=A-1 .* ticket=T-1')
        self.assertEqual(self.show("T-1")["ticket"]["state"], "open")
        self.assertEqual([k["kind"] for k in self.show("T-1")["events"]][-1], "reopened")
        self.assertEqual(len(self.tickets()), 1)
        a = self.alerts()[0]
        self.assertEqual((a["state"], a["raised"]), ("open", 2))
        # What is in force on the device, and why.
        p = self.jcli(["policy", "show", "--device", "dev1"])
        self.assertEqual(p["effective"]["checks.disk_used.threshold"], "1%")
        self.assertEqual(p["device_version"], p["version"])

    def test_policy_by_the_asset_records_group(self):
        """A device's groups come from its asset record: Department, Location, a `group` field."""
        self.world()
        csv = os.path.join(self.h.dir, "assets.csv")
        with open(csv, "w") as f:
            f.write("Asset Tag,Name,Department,Location,group\nA-100,dev1.example,Finance,Berlin,laptops\n")
        self.ok(["inventory", "import", csv, "--match", "hostname"])
        # Another group's policy changes nothing here.
        self.ok(["policy", "set", "--group", "Sales", "checks.disk_used.threshold=1%"])
        p = self.jcli(["policy", "show", "--device", "dev1"])
        self.assertEqual(sorted(p["groups"]), ["Berlin", "Finance", "laptops"])
        self.assertEqual(p["effective"], {})
        # Its department's does; a later group (group over department) wins a key.
        self.ok(["policy", "set", "--group", "Finance", "checks.disk_used.threshold=1%",
                 "checks.disk_used.priority=high"])
        self.b.wait_for(r'msg="alert" what=opened alert=A-1 device=dev1 .* ticket=T-1')
        self.assertEqual(self.show("T-1")["ticket"]["priority"], "high")
        self.ok(["policy", "set", "--group", "laptops", "checks.disk_used.threshold=100%"])
        self.b.wait_for(r'msg="alert" what=resolved alert=A-1')
        p = self.jcli(["policy", "show", "--device", "dev1"])
        self.assertEqual(p["effective"]["checks.disk_used.threshold"], "100%")
        self.assertEqual(p["effective"]["checks.disk_used.priority"], "high")
        self.assertEqual(p["device_version"], p["version"])

    def test_a_bad_policy_is_refused_whole(self):
        self.world()
        for setting, why in (("checks.disk_used.threshold=120%", "out of range (1%..100%)"),
                             ("checks.disk_usd.threshold=80%", "no such check"),
                             ("checks.disk_used.colour=red", "checks.disk_used.colour")):
            r = self.cli(["policy", "set", "--group", "*", "checks.disk_used.period=5m", setting])
            self.assertEqual(r.rc, 2, r)
            self.assertIn(why, r.err)
        # The broker checks too, whatever a console sends: one bad setting, nothing applied.
        c = WireClient(self.b.port, self.pki.ca, self.pki.cert("boss"), self.pki.key("boss"))
        self.addCleanup(c.close)
        c.handshake_hello(role=ROLE_ADMIN)
        body = pb_bytes(1, b"*") + pb_bytes(2, pb_bytes(1, b"checks.disk_used.period") + pb_bytes(2, b"5m")) \
            + pb_bytes(2, pb_bytes(1, b"checks.disk_used.threshold") + pb_bytes(2, b"120%"))
        c.send_frame(K_REQUEST, pb_varint(1, 7) + pb_bytes(36, body))
        while True:
            kind, _, _, b = c.read_control(timeout=10, answer_pings=True)
            if kind == K_RESPONSE:
                break
        err = pb_parse(pb_parse(b)[2][0])
        self.assertEqual(err[1][0], ERR_INVALID)
        self.assertIn(b"120% is out of range", err[2][0])
        self.assertIn(b"nothing was changed", err[2][0])
        p = self.jcli(["policy", "show"])
        self.assertEqual((p["version"], p["entries"]), (1, []))
        # Technicians read policy; only admins set it.
        r = self.cli(["policy", "set", "--group", "*", "checks.disk_used.threshold=80%"], who="tech")
        self.assertEqual(r.rc, 1, r)
        self.assertIn("needs the admin role", r.err)

    # -- snooze and maintenance ------------------------------------------------------------------

    def test_snooze_holds_the_queue_and_counts(self):
        self.world()
        self.threshold("1%")
        self.b.wait_for(r'msg="alert" what=opened alert=A-1 .* ticket=T-1')
        r = self.ok(["alert", "snooze", "A-1", "--for", "1h", "--reason", "known, fixed Monday"], who="tech")
        self.assertIn("A-1 snoozed until", r.out)
        self.assertEqual(self.alerts()[0]["state"], "snoozed")
        # It recovers and fails again while snoozed: held, counted, no ticket opens.
        self.threshold("100%")
        self.b.wait_for(r'msg="alert" what=resolved alert=A-1')
        self.threshold("1%")
        self.b.wait_for(r'msg="alert" what=snoozed alert=A-1')
        a = self.alerts()[0]
        self.assertEqual(a["state"], "snoozed")
        self.assertGreaterEqual(a["suppressed"], 1)
        self.assertEqual(self.show("T-1")["ticket"]["state"], "resolved")
        self.assertEqual(self.count(r'msg="alert" what=(opened|reopened)'), 1)
        # Its end: what still fails is raised again (here: the same ticket opens).
        self.ok(["alert", "unsnooze", "A-1"], who="tech")
        self.b.wait_for(r'msg="alert" what=reopened alert=A-1 .* ticket=T-1')
        self.assertEqual(self.show("T-1")["ticket"]["state"], "open")
        r = self.ok(["audit", "--json"])
        acts = [json.loads(ln)["action"] for ln in r.out.splitlines() if ln.strip()]
        self.assertIn("alert-snooze", acts)
        self.assertIn("alert-unsnooze", acts)
        # Snoozes are bounded: longer is a policy change.
        r = self.cli(["alert", "snooze", "A-1", "--for", "8d"], who="tech")
        self.assertEqual(r.rc, 2, r)

    def test_maintenance_records_then_tickets_what_still_fails(self):
        self.world()
        r = self.ok(["maintenance", "add", "--device", "dev1", "--for", "6s", "--reason", "disk migration"])
        self.assertRegex(r.out, r"^M-1: alerts raised until ")
        self.threshold("1%")
        self.b.wait_for(r'msg="alert" what=suppressed alert=A-1 device=dev1')
        self.assertEqual(self.tickets(), [])
        a = self.alerts()[0]
        self.assertEqual((a["state"], a["ticket"]), ("suppressed", None))
        # The window ends: the sweep raises what still fails.
        self.b.wait_for(r'msg="alert" what=opened alert=A-1 .* ticket=T-1', timeout=30)
        self.assertEqual(self.alerts()[0]["state"], "open")
        self.assertEqual(len(self.tickets()), 1)
        m = self.jcli(["maintenance"])
        self.assertEqual(m["windows"], [])  # ended

    # -- what one device can push on --------------------------------------------------------------

    def call(self, c, field, body):
        c.rid += 1
        c.send_frame(K_REQUEST, pb_varint(1, c.rid) + pb_bytes(field, body))
        while True:
            kind, _, _, b = c.read_control(timeout=20, answer_pings=True)
            if kind == K_RESPONSE and pb_parse(b)[1][0] == c.rid:
                r = pb_parse(b)
                if 2 in r:
                    e = pb_parse(r[2][0])
                    return e.get(1, [0])[0], e.get(2, [b""])[0].decode()
                return None

    @staticmethod
    def result(check, dim, state=2):
        return pb_bytes(3, pb_bytes(1, check) + pb_bytes(2, dim) + pb_varint(3, state) + pb_varint(4, state)
                        + pb_bytes(5, b"99% used") + pb_bytes(6, b"90%"))

    def test_one_device_cannot_flood_the_queue(self):
        self.b = self.h.start_broker()
        c = WireClient(self.b.port, self.pki.ca, self.pki.cert("dev2"), self.pki.key("dev2"))
        self.addCleanup(c.close)
        c.handshake_hello(role=ROLE_AGENT, hostname="dev2.example")
        c.rid = 0
        # 25 new mount points failing at once: 20 tickets in the hour, the rest recorded.
        many = b"".join(self.result(b"disk_used", b"/m%02d" % i) for i in range(25))
        self.assertIsNone(self.call(c, 34, pb_varint(1, 1) + many))
        self.b.wait_for(r'msg="alert" what=flood', count=5)
        self.assertEqual(self.count(r'msg="alert" what=opened'), TICKETS_PER_DEVICE_HOUR)
        self.assertEqual(len(self.tickets()), TICKETS_PER_DEVICE_HOUR)
        states = [a["state"] for a in self.alerts()]
        self.assertEqual((states.count("open"), states.count("suppressed")), (20, 5))
        # What the broker will not take: a check it does not know, a state out of range, one
        # (check, dimension) twice, more results than a report may carry.
        self.assertEqual(self.call(c, 34, self.result(b"no_such_check", b"")),
                         (ERR_INVALID, "a result names no check this broker knows"))
        self.assertEqual(self.call(c, 34, self.result(b"disk_used", b"/", state=9)),
                         (ERR_INVALID, "disk_used: unknown state"))
        self.assertEqual(self.call(c, 34, self.result(b"disk_used", b"/x") * 2),
                         (ERR_INVALID, "a report names one (check, dimension) twice"))
        self.assertEqual(self.call(c, 34, b"".join(self.result(b"disk_used", b"/%d" % i) for i in range(RESULTS_MAX + 1))),
                         (ERR_TOO_BIG, "a report carries at most %d results" % RESULTS_MAX))
        # New dimensions past what a device keeps, without a full report: refused whole.
        more = b"".join(self.result(b"inodes_used", b"/n%03d" % i) for i in range(240))
        self.assertEqual(self.call(c, 34, more), (ERR_TOO_BIG, "a device keeps at most %d check results: send a "
                                                               "full report" % RESULTS_MAX))
        # Reports a minute: past the limit, refused until the minute is over.
        answers = [self.call(c, 34, pb_varint(1, 1)) for _ in range(REPORTS_PER_MIN)]
        self.assertIn((ERR_BUSY, "too many check reports this minute: the next full report counts"), answers)
        # A new connection does not start the minute afresh: the count is the device's, in the store.
        c.close()
        c2 = WireClient(self.b.port, self.pki.ca, self.pki.cert("dev2"), self.pki.key("dev2"))
        self.addCleanup(c2.close)
        c2.handshake_hello(role=ROLE_AGENT, hostname="dev2.example")
        c2.rid = 0
        self.assertEqual(self.call(c2, 34, pb_varint(1, 1)),
                         (ERR_BUSY, "too many check reports this minute: the next full report counts"))
        self.b.wait_for(r'msg="check report refused: too many this minute" device=dev2')

    # -- a storm ---------------------------------------------------------------------------------

    def test_a_storm_over_fifty_devices_is_one_parent_ticket(self):
        self.b = self.h.start_broker()
        lg = self.h.spawn("loadgen", "tether-loadgen",
                          ["--broker", self.b.addr, "--ca-dir", self.pki.main, "--count", "50", "--duration", "0",
                           "--check-fail", "disk_used:/var", "--stats-interval", "60"])
        self.b.wait_for(r'msg="alert" what=(opened|storm)', count=50, timeout=60)
        self.assertEqual(self.count(r'msg="alert" what=opened'), 4)
        self.assertEqual(self.count(r'msg="alert" what=storm'), 46)
        t = self.tickets()
        self.assertEqual(len(t), 5, [x["summary"] for x in t])
        storm = [x for x in t if x["source"] == "storm"]
        self.assertEqual(len(storm), 1, t)
        sid = storm[0]["id"]
        self.assertRegex(storm[0]["summary"], r"^storm: disk_used failing on 5 devices within 10 min$")
        d = self.show(sid)
        self.assertEqual(d["children_total"], 4)
        self.assertEqual(sorted(d["children"]), sorted(x["id"] for x in t if x["source"] == "check"))
        for x in t:
            if x["source"] == "check":
                self.assertEqual(x["parent"], sid)
        members = [e for e in d["events"] if e["kind"] == "storm-member"]
        self.assertEqual(len(members), 50)  # 4 adopted, the one that tipped it, 45 after
        alerts = self.alerts()
        self.assertEqual(len(alerts), 50)
        self.assertEqual(sum(1 for a in alerts if a["storm"] == sid), 50)


    # -- what admins and devices could get wrong ----------------------------------------------------

    def agent_wire(self, name):
        """A device that speaks for itself on the wire; its first (empty) report means the
        broker knows it (maintenance for a device needs that)."""
        c = WireClient(self.b.port, self.pki.ca, self.pki.cert(name), self.pki.key(name))
        self.addCleanup(c.close)
        c.handshake_hello(role=ROLE_AGENT, hostname=name + ".example")
        c.rid = 0
        self.assertIsNone(self.call(c, 34, pb_varint(1, 1)))
        return c

    def test_a_list_setting_is_kept_as_the_admin_gave_it(self):
        """A list (required services, paths, what to ignore) is kept in its canonical form, not
        emptied by the parse (it once was: the value was its own output buffer)."""
        self.b = self.h.start_broker()
        self.ok(["policy", "set", "--group", "*", "checks.services_down.services=cups,sshd",
                 "checks.disk_used.ignore=tmpfs,/data"])
        p = self.jcli(["policy", "show"])
        got = {e["key"]: e["value"] for e in p["entries"]}
        self.assertEqual(got, {"checks.services_down.services": "cups.service,sshd.service",
                               "checks.disk_used.ignore": "tmpfs,/data"})

    def test_the_audit_names_every_setting_of_a_policy_change(self):
        """One audit entry a setting: a check turned off for every device after a few harmless
        settings is in the audit whole (one entry for all cut the later ones)."""
        self.b = self.h.start_broker()
        self.ok(["policy", "set", "--group", "*", "checks.disk_used.period=10m", "checks.disk_used.priority=normal",
                 "checks.disk_used.raise_after=3", "checks.services_down.enabled=off"])
        r = self.ok(["audit", "--json"])
        entries = [json.loads(ln) for ln in r.out.splitlines() if ln.strip()]
        sets = [e for e in entries if e["action"] == "policy-set"]
        self.assertTrue(sets, entries)
        got = [(e["detail"]["key"], e["detail"]["value"], e["detail"]["version"]) for e in sets]
        self.assertEqual(got, [("checks.disk_used.period", "10m", "2"), ("checks.disk_used.priority", "normal", "2"),
                               ("checks.disk_used.raise_after", "3", "2"), ("checks.services_down.enabled", "off", "2")])

    def test_the_sweep_reaches_a_window_that_ended_behind_a_long_one(self):
        """The sweep goes on from where it stopped: 256 alerts held by a long window must not
        hide a later one whose window ended (dev1's failing check is ticketed)."""
        self.b = self.h.start_broker(extra=["--alert-sweep-interval", "1s"])
        dev2 = self.agent_wire("dev2")
        self.ok(["maintenance", "add", "--device", "dev2", "--for", "7d", "--reason", "rebuild"])
        many = b"".join(self.result(b"disk_used", b"/m%03d" % i) for i in range(RESULTS_MAX))
        self.assertIsNone(self.call(dev2, 34, pb_varint(1, 1) + many))
        dev1 = self.agent_wire("dev1")
        self.ok(["maintenance", "add", "--device", "dev1", "--for", "5s", "--reason", "reboot"])
        self.assertIsNone(self.call(dev1, 34, pb_varint(1, 1) + self.result(b"disk_used", b"/")))
        self.b.wait_for(r'msg="alert" what=suppressed alert=A-%d device=dev1' % (RESULTS_MAX + 1))
        # The window is over in 5 s and the sweep runs every second: the alert is ticketed.
        self.b.wait_for(r'msg="alert" what=opened alert=A-%d device=dev1' % (RESULTS_MAX + 1), timeout=30)

    def test_a_device_cannot_grow_the_alerts_without_bound(self):
        """A device that names new dimensions in each full report (the old ones resolve as no
        longer checked) keeps at most TT_ALERTS_PER_DEVICE_MAX alert rows: its oldest resolved
        ones go."""
        self.b = self.h.start_broker()
        c = self.agent_wire("dev2")
        for rnd in range(8):
            dims = b"".join(self.result(b"disk_used", b"/r%d/%03d" % (rnd, i)) for i in range(RESULTS_MAX))
            self.assertIsNone(self.call(c, 34, pb_varint(1, 1) + pb_varint(2, 1) + dims))
        alerts = self.jcli(["alerts", "--device", "dev2"])
        self.assertLessEqual(len(alerts), 2 * RESULTS_MAX)


    def test_one_device_opens_at_most_its_hours_tickets_when_nothing_reopens(self):
        """The hour's limit counts tickets, not alerts: ten mounts flapping past
        alerts.reopen_window (0 here) open a new ticket at each failure, 20 in the hour."""
        self.b = self.h.start_broker(extra=["--reopen-window", "0"])
        c = self.agent_wire("dev2")
        dims = [b"/f%02d" % i for i in range(10)]
        for state in (2, 1, 2, 1, 2):
            body = b"".join(self.result(b"disk_used", d, state=state) for d in dims)
            self.assertIsNone(self.call(c, 34, pb_varint(1, 1) + body))
        self.assertLessEqual(len(self.tickets()), TICKETS_PER_DEVICE_HOUR)


    def test_an_ack_does_not_silence_an_alert_that_has_no_ticket(self):
        """Acked means "failing, with a ticket someone took": an alert held back by a window has
        no ticket to take, so an ack is refused (it would keep it from ever getting one)."""
        self.b = self.h.start_broker(extra=["--alert-sweep-interval", "1s"])
        c = self.agent_wire("dev2")
        self.ok(["maintenance", "add", "--device", "dev2", "--for", "8s", "--reason", "reboot"])
        self.assertIsNone(self.call(c, 34, pb_varint(1, 1) + self.result(b"disk_used", b"/")))
        self.b.wait_for(r'msg="alert" what=suppressed alert=A-1 device=dev2')
        r = self.cli(["alert", "ack", "A-1"], who="tech")
        self.assertEqual(r.rc, 1, r)
        self.assertIn("A-1 has no open ticket to take (suppressed)", r.err)
        # The window is over and it still fails: it is ticketed, as it would be without the ack.
        self.b.wait_for(r'msg="alert" what=opened alert=A-1 device=dev2', timeout=30)


if __name__ == "__main__":
    unittest.main()
