"""tether report: a generated ticket history with answers worked out by hand (first response,
resolution, SLA met and breached, waiting on the employee, reopens, the backlog by age, medians
and p90s), read back as a table, CSV, JSON and HTML, with the same numbers in every format; the
HTML page rendered in headless Chromium with its charts laid out, no script, nothing fetched,
and a hostile name shown as text. Waiting taken off the SLA clock by configuration; an empty
range prints an empty table; only admins read reports, and each read is audited. Activity
from the real audit log of sessions on two devices (one lets technicians in unattended, one
refuses). The real programs on 127.0.0.1.

Run by ctest as `integration.reports` (TT_BIN_DIR names the build directory)."""

import csv
import io
import json
import os
import sqlite3
import time
import unittest

from harness import Pki, TetherTestCase
from records import chromium
from test_session import ME, SessionWorld

M = 60 * 1000
H = 60 * M
D = 24 * H
# The broker's default SLA targets by priority (store numbers: low 0 .. urgent 3).
TARGETS = {0: (D, 7 * D), 1: (4 * H, 3 * D), 2: (H, D), 3: (15 * M, 4 * H)}
HOSTILE_DEVICE = "pc-<script>x</script>"


def history(now):
    """Tickets and their timelines: (assignee, device, requester, priority, state, created,
    [(offset, actor, kind)]). The answers the tests expect are worked out in their comments."""
    c = now - 10 * D
    t = []
    # alice, normal: ticket i answered (public comment) after i minutes, resolved after i
    # hours: response median 5m (5th of 10), p90 9m; resolution 5h and 9h; all in SLA.
    for i in range(1, 11):
        t.append(("alice", "dev1", "", 1, 2, c + i * H,
                  [(i * M, "alice", "public-comment"), (i * H, "alice", "resolved")]))
    # bob, high (1h, 1d): a session asked for after 2h (breached), consent given 30m later
    # (waiting 30m), resolved after 2 days (breached); the first reopened at 3d and closed at
    # 4d: resolution 2d, 2d, 2d, 4d.
    for j in range(4):
        ev = [(2 * H, "bob", "session-requested"), (2 * H + 30 * M, "dev1", "consent-given"),
              (2 * H + 31 * M, "bob", "session-opened"), (2 * D, "bob", "resolved")]
        if j == 0:
            ev += [(3 * D, "sam", "reopened"), (4 * D, "bob", "closed")]
        t.append(("bob", "dev1", "", 2, 3 if j == 0 else 2, c + 20 * H + j * H, ev))
    # carol: two urgent tickets 10 days open with no answer (both SLAs breached, backlog 7-30d)
    # and a low one 2 hours old (both pending, backlog <1d); an internal comment is no answer.
    for _ in range(2):
        t.append(("carol", "dev2", "", 3, 1, c, [(5 * M, "carol", "comment")]))
    t.append(("carol", "dev2", "", 0, 1, now - 2 * H, []))
    # dave: the employee's own request with their snapshot (not an answer), a public question
    # after 20m (ticket comment --public --wait), the employee's answer 2h later (waiting 2h),
    # resolved after 3h. alice's public comments ask nothing: no waiting.
    t.append(("dave", HOSTILE_DEVICE, "sam", 1, 2, c + 30 * H,
              [(0, "sam", "diag-attached"), (20 * M, "dave", "public-comment"), (20 * M, "dave", "waiting-on-requester"),
               (140 * M, "sam", "requester-comment"), (3 * H, "dave", "resolved")]))
    # Outside a 30-day range: alice's from 60 days ago; bob's open one from 45 days ago,
    # which is in the backlog (30d+) all the same.
    t.append(("alice", "dev1", "", 1, 2, now - 60 * D, [(H, "alice", "resolved")]))
    t.append(("bob", "dev1", "", 1, 1, now - 45 * D, []))
    return t


def write_history(db, now):
    con = sqlite3.connect(db)
    with con:
        for assignee, device, requester, prio, state, created, events in history(now):
            first, fix = TARGETS[prio]
            last = created + (events[-1][0] if events else 0)
            cur = con.execute(
                "INSERT INTO tickets(device, requester, assignee, summary, priority, level, state, created_ms,"
                " updated_ms, first_response_due_ms, resolution_due_ms) VALUES(?,?,?,?,?,?,?,?,?,?,?)",
                (device, requester, assignee, "generated", prio, 1, state, created, last, created + first,
                 created + fix))
            tid = cur.lastrowid
            con.execute("INSERT INTO ticket_events(ticket, ts_ms, actor, kind, text) VALUES(?,?,?,?,?)",
                        (tid, created, "boss", "created", "generated"))
            for off, actor, kind in events:
                con.execute("INSERT INTO ticket_events(ticket, ts_ms, actor, kind, text) VALUES(?,?,?,?,?)",
                            (tid, created + off, actor, kind, ""))
    con.close()


def dur(d):
    return {k: d[k] for k in ("count", "median_ms", "p90_ms")}


class ReportsTest(TetherTestCase):
    maxDiff = None

    @classmethod
    def setUpClass(cls):
        cls.pki = Pki()
        for role, name in (("technician", "tech"), ("admin", "boss")):
            cls.pki.issue(role, name)

    def setUp(self):
        super().setUp()
        # The broker makes its store, stops; the history goes in; the broker starts again.
        b = self.h.start_broker()
        b.stop()
        self.now = int(time.time() * 1000)
        write_history(os.path.join(b.data_dir, "broker.db"), self.now)
        self.b = self.h.start_broker(name="broker2")

    def boss(self, args, ok=True):
        r = self.h.console(self.b.addr, args, cert=self.pki.cert("boss"), key=self.pki.key("boss"))
        if ok:
            self.assertEqual(r.rc, 0, r)
        return r

    def sla(self, *extra):
        return json.loads(self.boss(["report", "sla", "--format", "json"] + list(extra)).out)

    def test_known_answers_in_every_format(self):
        rep = self.sla()
        self.assertEqual(rep["report"], "sla")
        total = rep["total"]
        # 10 + 4 + 3 + 1 tickets created in 30 days; carol's three open.
        self.assertEqual((total["tickets"], total["open"], total["resolved"], total["reopened"]), (18, 3, 15, 1))
        # Responses: 1..10m, 20m, 2h x4 -> the 8th of 15 is 8m, the 14th 2h.
        self.assertEqual(dur(total["first_response"]), {"count": 15, "median_ms": 8 * M, "p90_ms": 2 * H})
        # Resolutions: 1h..10h with dave's 3h, then 2d x3 and 4d -> 8th 7h, 14th 2d.
        self.assertEqual(dur(total["resolution"]), {"count": 15, "median_ms": 7 * H, "p90_ms": 2 * D})
        # Waiting: bob's 30m x4, dave's 2h.
        self.assertEqual(dur(total["waiting"]), {"count": 5, "median_ms": 30 * M, "p90_ms": 2 * H})
        self.assertEqual(total["response_sla"], {"met": 11, "breached": 6, "pending": 1})
        self.assertEqual(total["resolution_sla"], {"met": 11, "breached": 6, "pending": 1})
        # Open now by age: carol's 2h-old, carol's two of 10 days, bob's of 45 days.
        self.assertEqual(rep["backlog_edges_ms"], [0, D, 3 * D, 7 * D, 30 * D])
        self.assertEqual(total["backlog"], [1, 0, 0, 2, 1])
        self.assertEqual(sum(b["created"] for b in rep["buckets"]), 18)
        self.assertEqual(sum(b["breached"] for b in rep["buckets"]), 6)  # bob's 4, carol's urgent 2
        self.assertFalse(rep["waiting_excluded"])

        rep = self.sla("--by", "technician")
        rows = {r["group"]: r for r in rep["rows"]}
        self.assertEqual([r["group"] for r in rep["rows"]], ["alice", "bob", "carol", "dave"])
        self.assertEqual(dur(rows["alice"]["first_response"]), {"count": 10, "median_ms": 5 * M, "p90_ms": 9 * M})
        self.assertEqual(dur(rows["alice"]["resolution"]), {"count": 10, "median_ms": 5 * H, "p90_ms": 9 * H})
        self.assertEqual(rows["alice"]["response_sla"], {"met": 10, "breached": 0, "pending": 0})
        self.assertEqual(dur(rows["bob"]["resolution"]), {"count": 4, "median_ms": 2 * D, "p90_ms": 4 * D})
        self.assertEqual((rows["bob"]["reopened"], rows["bob"]["backlog"]), (1, [0, 0, 0, 0, 1]))
        self.assertEqual(rows["bob"]["resolution_sla"], {"met": 0, "breached": 4, "pending": 0})
        self.assertEqual(rows["carol"]["response_sla"], {"met": 0, "breached": 2, "pending": 1})
        self.assertEqual(rows["carol"]["first_response"]["count"], 0)
        self.assertEqual(dur(rows["dave"]["first_response"]), {"count": 1, "median_ms": 20 * M, "p90_ms": 20 * M})
        self.assertEqual(dur(rows["dave"]["waiting"]), {"count": 1, "median_ms": 2 * H, "p90_ms": 2 * H})

        # CSV: the same numbers, a row per group and one for all.
        r = self.boss(["report", "sla", "--by", "technician", "--format", "csv"])
        table = list(csv.DictReader(io.StringIO(r.out)))
        self.assertEqual([row["group"] for row in table], ["alice", "bob", "carol", "dave", "(all)"])
        for row in table:
            want = rows.get(row["group"], rep["total"])
            self.assertEqual(int(row["tickets"]), want["tickets"], row)
            self.assertEqual(int(row["first_response_median_ms"]), want["first_response"]["median_ms"], row)
            self.assertEqual(int(row["first_response_p90_ms"]), want["first_response"]["p90_ms"], row)
            self.assertEqual(int(row["resolution_median_ms"]), want["resolution"]["median_ms"], row)
            self.assertEqual(int(row["waiting_count"]), want["waiting"]["count"], row)
            self.assertEqual(int(row["response_breached"]), want["response_sla"]["breached"], row)
            self.assertEqual(int(row["resolution_pending"]), want["resolution_sla"]["pending"], row)
            self.assertEqual([int(row[k]) for k in ("backlog_from_0d", "backlog_from_1d", "backlog_from_3d",
                                                    "backlog_from_7d", "backlog_from_30d")], want["backlog"], row)

        # The table a person reads.
        r = self.boss(["report", "sla", "--by", "technician"])
        lines = {ln.split()[0]: ln.split() for ln in r.out.splitlines() if ln.strip()}
        self.assertEqual(lines["alice"][1:], ["10", "0", "10", "0%", "5m", "9m", "5h00m", "9h00m", "100%", "100%", "-"],
                         r.out)
        self.assertEqual(lines["bob"][1:], ["4", "0", "4", "25%", "2h00m", "2h00m", "2d0h", "4d0h", "0%", "0%", "30m"],
                         r.out)
        self.assertEqual(lines["all"][1:5], ["18", "3", "15", "7%"], r.out)
        self.assertIn("Open now, by age:  <1d 1  1-3d 0  3-7d 0  7-30d 2  30d+ 1", r.out)
        self.assertIn("counted against the SLA", r.out)

        # Longer range: alice's old ticket joins.
        self.assertEqual(self.sla("--since", "90d")["total"]["tickets"], 20)

        # Grouped by priority: urgent first.
        rep = self.sla("--by", "priority")
        self.assertEqual([(r["group"], r["tickets"]) for r in rep["rows"]],
                         [("urgent", 2), ("high", 4), ("normal", 11), ("low", 1)])

    @unittest.skipUnless(chromium.available(), "needs Debian's chromium (scripts/deps.sh installs it)")
    def test_html_renders_with_charts(self):
        r = self.boss(["report", "sla", "--since", "30d", "--by", "device", "--format", "html"])
        self.assertNotIn("<script", r.out.lower().replace("&lt;script", ""))
        self.assertNotIn("http://", r.out)
        self.assertNotIn("https://", r.out)
        page = os.path.join(self.h.dir, "sla.html")
        with open(page, "w") as f:
            f.write(r.out)
        with chromium.Chromium(timeout=90) as c:
            got = c.evaluate(page, """(() => {
              const charts = Array.from(document.querySelectorAll('svg.chart'));
              const bars = id => Array.from(document.querySelectorAll('#' + id + ' rect.bar'));
              const size = el => { const b = el.getBoundingClientRect(); return [b.width, b.height]; };
              return {
                charts: charts.map(s => s.id),
                laidOut: charts.every(s => size(s)[0] > 300 && size(s)[1] > 20),
                timelineBars: bars('timeline').filter(b => b.getBBox().height > 0).length,
                responseBars: bars('response').map(b => b.getBBox().width),
                responseTitles: bars('response').map(b => b.querySelector('title').textContent),
                backlogBars: bars('backlog').map(b => b.getBBox().width),
                scripts: document.scripts.length,
                hostile: document.body.textContent.includes('%s'),
                cards: Array.from(document.querySelectorAll('.card b')).map(b => b.textContent),
              };
            })()""" % HOSTILE_DEVICE)
            errors = c.console_errors()
            shot = os.path.join(self.h.dir, "sla.png")
            c.screenshot(page, shot)
        self.assertEqual(got["charts"], ["timeline", "response", "resolution", "sla", "backlog"])
        self.assertTrue(got["laidOut"], got)
        self.assertGreaterEqual(got["timelineBars"], 3, got)
        # by device: dev1 (14 tickets), dev2 (3), the hostile name (1): median and p90 each.
        self.assertEqual(len(got["responseBars"]), 6, got)
        self.assertTrue(all(w > 0 for i, w in enumerate(got["responseBars"]) if i not in (2, 3)), got)
        self.assertIn("dev1, median: 7m", got["responseTitles"][0])  # 1..10m and 2h x4: the 7th of 14
        self.assertEqual(len(got["backlogBars"]), 5)
        self.assertEqual(got["scripts"], 0)
        self.assertTrue(got["hostile"], "the hostile device name is shown as text")
        self.assertEqual(got["cards"][:2], ["18", "8m"])
        self.assertEqual(errors, [])
        with open(shot, "rb") as f:
            self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")

    def test_waiting_off_the_clock_empty_range_and_who_may(self):
        self.b.stop()
        self.b = self.h.start_broker(name="broker3", extra=["--sla-exclude-waiting", "true"])
        rep = self.sla("--by", "technician")
        self.assertTrue(rep["waiting_excluded"])
        rows = {r["group"]: r for r in rep["rows"]}
        # dave's 3h less the 2h waited; bob's 2 days less 30m (still breached)
        self.assertEqual(rows["dave"]["resolution"]["median_ms"], H)
        self.assertEqual(rows["bob"]["resolution"]["median_ms"], 2 * D - 30 * M)
        self.assertEqual(rows["bob"]["resolution_sla"]["breached"], 4)
        r = self.boss(["report", "sla"])
        self.assertIn("taken off the SLA clock", r.out)
        # A range with nothing in it: an empty table, not an error.
        r = self.boss(["report", "sla", "--since", "1h", "--by", "technician"])
        self.assertIn("(no tickets were created in this range)", r.out)
        self.assertIn("TICKETS", r.out)
        rep = self.sla("--since", "1h")
        self.assertEqual((rep["total"]["tickets"], rep["rows"]), (0, []))
        self.assertEqual(rep["total"]["backlog"], [1, 0, 0, 2, 1])  # the backlog is now's
        # Bad input: said before anything is sent.
        r = self.boss(["report", "sla", "--by", "mood"], ok=False)
        self.assertEqual((r.rc, r.err), (2, "tether: --by: technician, priority, level, device or department\n"))
        r = self.boss(["report", "sla", "--format", "pdf"], ok=False)
        self.assertEqual(r.rc, 2, r)
        r = self.boss(["report", "activity", "--by", "technician"], ok=False)
        self.assertEqual(r.rc, 2, r)
        # Technicians do not read reports; admins' reads are audited.
        r = self.h.console(self.b.addr, ["report", "sla"], cert=self.pki.cert("tech"), key=self.pki.key("tech"))
        self.assertEqual((r.rc, r.err), (1, "tether: permission denied: reports needs the admin role\n"), r)
        audit = [json.loads(ln) for ln in self.boss(["audit", "--json"]).out.splitlines()]
        reads = [e for e in audit if e["action"] == "report"]
        self.assertEqual(len(reads), 4)
        self.assertEqual({e["actor"] for e in reads}, {"boss"})
        self.assertIn("since_ms", reads[0]["detail"])


class ActivityTest(SessionWorld, TetherTestCase):
    """Sessions on a device that lets technicians in and one that refuses, counted from the
    audit log."""
    maxDiff = None

    @classmethod
    def setUpClass(cls):
        cls.pki = Pki()
        for role, name in (("technician", "tech"), ("admin", "boss"), ("agent", "dev1"), ("agent", "dev2")):
            cls.pki.issue(role, name)

    def test_activity(self):
        self.world(policy="unattended")
        self.h.start_agent(self.b.addr, "dev2", "dev2.example",
                           extra=["--consent-policy", "deny", "--shell-user", ME])
        t1 = self.new_ticket()
        for _ in range(2):
            r = self.tech(["exec", "dev1", "--ticket", t1, "--", "true"])
            self.assertEqual(r.rc, 0, r)
        local = os.path.join(self.h.dir, "note.txt")
        with open(local, "w") as f:
            f.write("twelve bytes")
        remote = "/tmp/tt-report-%d.txt" % os.getpid()
        self.addCleanup(lambda: os.path.exists(remote) and os.unlink(remote))
        r = self.tech(["cp", local, "dev1:" + remote, "--ticket", t1, "--force"])
        self.assertEqual(r.rc, 0, r)
        # A question for the employee: the ticket waits on them (what report sla counts apart).
        r = self.tech(["ticket", "comment", t1, "which printer?", "--wait"])
        self.assertEqual((r.rc, r.err), (2, "tether: --wait is for a question the requester sees: add --public\n"))
        r = self.tech(["ticket", "comment", t1, "which printer?", "--public", "--wait"])
        self.assertEqual(r.rc, 0, r)
        r = self.tech(["ticket", "show", t1, "--json"])
        kinds = [e["kind"] for e in json.loads(r.out)["events"]]
        self.assertEqual(kinds[-2:], ["public-comment", "waiting-on-requester"], kinds)
        r = self.tech(["ticket", "new", "--device", "dev2", "--summary", "vpn"])
        t2 = r.out.split()[0]
        r = self.tech(["exec", "dev2", "--ticket", t2, "--", "true"])
        self.assertNotEqual(r.rc, 0, r)
        # The last of it is in the audit before the report reads it.
        self.wait_until(lambda: '"file-push"' in self.admin(["audit", "--json"]).out, "the push audited")
        r = self.admin(["report", "activity", "--format", "json"])
        self.assertEqual(r.rc, 0, r)
        rep = json.loads(r.out)
        self.assertEqual(rep["report"], "activity")
        sessions = sum(b["sessions"] for b in rep["buckets"])
        refused = sum(b["refused"] for b in rep["buckets"])
        self.assertGreaterEqual(sessions, 1)
        self.assertEqual(refused, 1)
        self.assertEqual(rep["devices"][0], {"name": "dev1", "count": sessions, "bytes": 0})
        self.assertEqual(rep["technicians"][0]["name"], "tech")
        self.assertEqual(rep["transfers"], {"count": 1, "bytes": 12})
        actions = {a["name"]: a["count"] for a in rep["actions"]}
        self.assertEqual(actions.get("consent-unattended"), sessions)
        self.assertEqual(actions.get("file-push"), 1)
        # CSV and the table carry the same.
        r = self.admin(["report", "activity", "--format", "csv"])
        self.assertIn("transfers,files,1,12\n", r.out)
        self.assertIn("device,dev1,%d,0\n" % sessions, r.out)
        r = self.admin(["report", "activity"])
        self.assertIn("files moved: 1 (12 bytes)", r.out)
        self.assertRegex(r.out, r"\n  dev1 +%d\n" % sessions)


if __name__ == "__main__":
    unittest.main()
