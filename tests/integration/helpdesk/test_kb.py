"""The knowledge base: an admin adds the fixture articles (tests/fixtures/kb/), a search ranks
the right one first and reads FTS5 syntax as words, a level 1 technician is refused `kb add`
and may once an admin marks them level 3, `ticket link T-n KB-n` shows in `ticket show` and
in the article's solved count, an edit keeps what it does not change, and a body over the
limit is refused by the console before it is read and by the broker if a console sends it.
The real programs on 127.0.0.1.

Run by ctest as `integration.kb` (TT_BIN_DIR names the build directory)."""

import json
import os
import subprocess
import unittest

from harness import (CMD_TIMEOUT, K_REQUEST, K_RESPONSE, Pki, Result, TetherTestCase, WireClient, binary, pb_bytes,
                     pb_parse, pb_varint, sanitizer_report)

ROLE_ADMIN = 3
ERR_PROTOCOL, ERR_TOO_BIG = 1, 4
BODY_MAX = 64 * 1024  # TT_KB_BODY_MAX
FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "fixtures", "kb")

LEVEL_1 = ("tether: permission denied: writing the knowledge base needs an admin or a level 3 technician; "
           "you are level 1 (an admin sets it: tether person add tech --role technician --level 3)\n")


def corpus():
    """index.tsv: (file, title, checks) a line; comments and lines of another shape skipped."""
    rows = []
    with open(os.path.join(FIXTURES, "index.tsv"), encoding="utf-8") as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if line.startswith("#") or len(parts) != 3:
                continue
            checks = [] if parts[2] == "-" else parts[2].split(",")
            rows.append((parts[0], parts[1], checks))
    return rows


class KbTest(TetherTestCase):
    maxDiff = None

    @classmethod
    def setUpClass(cls):
        cls.pki = Pki()
        for role, name in (("technician", "tech"), ("technician", "lead"), ("admin", "boss"), ("agent", "dev1")):
            cls.pki.issue(role, name)

    def setUp(self):
        super().setUp()
        self.b = self.h.start_broker()

    # -- helpers -----------------------------------------------------------------------------

    def as_(self, who, args):
        return self.h.console(self.b.addr, args, cert=self.pki.cert(who), key=self.pki.key(who))

    def ok(self, who, args):
        r = self.as_(who, args)
        self.assertEqual(r.rc, 0, r)
        return r

    def refused(self, who, args, err, rc=1):
        r = self.as_(who, args)
        self.assertEqual((r.rc, r.err), (rc, err), r)
        return r

    def with_stdin(self, who, args, data):
        """The console with data on its standard input (harness.run gives it none)."""
        argv = [binary("tether"), "--broker", self.b.addr, "--ca", self.pki.ca, "--cert", self.pki.cert(who),
                "--key", self.pki.key(who)] + list(args)
        cp = subprocess.run(argv, input=data, capture_output=True, env=self.h.env, cwd=self.h.dir,
                            timeout=CMD_TIMEOUT)
        r = Result(argv, cp.returncode, cp.stdout.decode("utf-8", "replace"), cp.stderr.decode("utf-8", "replace"),
                   0.0)
        self.assertIsNone(sanitizer_report(r.err), r)
        return r

    def add_corpus(self, who="boss"):
        """Every fixture article added; {file: "KB-n"}."""
        ids = {}
        for name, title, checks in corpus():
            args = ["kb", "add", "--title", title]
            for c in checks:
                args += ["--check", c]
            r = self.ok(who, args + [os.path.join(FIXTURES, name)])
            self.assertRegex(r.out, r"^KB-\d+\n$")
            ids[name] = r.out.strip()
        self.assertGreaterEqual(len(ids), 8)
        return ids

    def search(self, who, words):
        r = self.ok(who, ["kb", "search"] + list(words) + ["--json"])
        return json.loads(r.out)

    def show(self, who, kb):
        return json.loads(self.ok(who, ["kb", "show", kb, "--json"]).out)

    def audit(self):
        r = self.ok("boss", ["audit", "--json"])
        return [json.loads(ln) for ln in r.out.splitlines() if ln.strip()]

    def path(self, name, data):
        p = os.path.join(self.h.dir, name)
        with open(p, "wb") as f:
            f.write(data)
        return p

    # -- tests ---------------------------------------------------------------------------------

    def test_search_ranks_the_right_article_first(self):
        ids = self.add_corpus()
        for words, name in ((["vpn", "drops"], "vpn-drops.md"), (["disk", "full"], "disk-full.md"),
                            (["printer", "offline"], "printer-offline.md"), (["clock"], "clock-skew.md"),
                            (["resume", "upload"], "hr-portal-upload.md"), (["dropping", "tunnel"], "vpn-drops.md")):
            hits = self.search("tech", words)
            self.assertEqual(hits[0]["id"], ids[name], (words, hits))
            self.assertEqual([h["rank"] for h in hits], list(range(1, len(hits) + 1)))
        # Some of the words still find an article: the DNS one says VPN, the Wi-Fi one drops.
        hits = self.search("tech", ["vpn", "drops"])
        found = [h["id"] for h in hits]
        for name in ("dns.md", "wifi-meeting-rooms.md"):
            self.assertIn(ids[name], found)
        top = hits[0]
        self.assertEqual((top["title"], top["solved"], top["checks"]), ("VPN drops every few minutes", 0, []))
        self.assertIn("[VPN]", top["snippet"])
        # The table: rank, id, solved, title, and the context under it.
        r = self.ok("tech", ["kb", "search", "disk", "full"])
        lines = r.out.splitlines()
        self.assertEqual(lines[0].split(), ["RANK", "ID", "SOLVED", "TITLE"])
        self.assertEqual(lines[1].split(None, 3), ["1", ids["disk-full.md"], "0", "Disk full on /var"])
        self.assertTrue(lines[2].startswith("     ") and "[" in lines[2], r)
        # FTS5's syntax is read as words: answered, never an error.
        hits = self.search("tech", ['"vpn" NEAR(drops) -: *'])
        self.assertEqual(hits[0]["id"], ids["vpn-drops.md"])
        self.search("tech", ["vpn\" OR \"*", "'); DROP TABLE kb_articles; --"])
        self.refused("tech", ["kb", "search", "* -: ()", '""'],
                     "tether: search for words: letters or digits (symbols alone find nothing)\n")
        r = self.ok("tech", ["kb", "search", "zyxwvut"])
        self.assertEqual((r.out, r.err), ("", "(no articles match)\n"))
        self.refused("tech", ["kb", "search", "x" * 257], "tether: a search is at most 256 bytes: a few words\n", rc=2)

    def test_show_prints_the_article_as_written(self):
        ids = self.add_corpus()
        kb = ids["disk-full.md"]
        with open(os.path.join(FIXTURES, "disk-full.md"), encoding="utf-8") as f:
            text = f.read()
        a = self.show("tech", kb)
        self.assertEqual((a["id"], a["title"], a["checks"], a["author"], a["solved"], a["body"]),
                         (kb, "Disk full on /var", ["disk_used", "inodes_used"], "boss", 0, text))
        self.assertEqual(a["created_ms"], a["updated_ms"])
        r = self.ok("tech", ["kb", "show", kb])
        head, body = r.out.split("\n\n", 1)
        fields = dict(ln.split(": ", 1) for ln in head.splitlines())
        self.assertEqual((fields["article"], fields["title"], fields["checks"], fields["author"], fields["solved"]),
                         (kb, "Disk full on /var", "disk_used, inodes_used", "boss", "0 tickets"))
        self.assertEqual(body, text)
        self.refused("tech", ["kb", "show", "KB-999"], "tether: no such article: KB-999\n")
        self.refused("tech", ["kb", "show", "T-3"], "tether: 'T-3' is not an article (want KB-3 or 3)\n", rc=2)

    def test_writers_are_admins_and_level_3_technicians(self):
        path = os.path.join(FIXTURES, "vpn-drops.md")
        add = ["kb", "add", "--title", "VPN drops", path]
        # A technician the broker knows at level 1 (seen at connect) is refused, and told how.
        self.refused("tech", add, LEVEL_1)
        self.assertEqual(self.search("tech", ["vpn"]), [])
        refusals = [e for e in self.audit() if e["action"] == "refuse" and e["actor"] == "tech"]
        self.assertEqual(refusals[-1]["detail"]["request"], "kb-add")
        # An admin marks them level 3: then they may.
        r = self.ok("boss", ["person", "add", "tech", "--role", "technician", "--level", "3"])
        self.assertEqual(r.out, "technician tech, level 3\n")
        kb = self.ok("tech", add).out.strip()
        self.assertEqual(self.show("tech", kb)["author"], "tech")
        # Someone who never connected is added at level 3 and writes at their first connect.
        self.ok("boss", ["person", "add", "lead", "--role", "technician", "--level", "3"])
        self.ok("lead", ["kb", "edit", kb, "--title", "VPN drops every few minutes"])
        people = {p["name"]: p for p in json.loads(self.ok("boss", ["people", "--json"]).out)}
        self.assertEqual((people["tech"]["level"], people["lead"]["level"], people["boss"]["level"]), (3, 3, 1))
        rows = {ln.split()[0]: ln.split() for ln in self.ok("boss", ["people"]).out.splitlines()[1:]}
        self.assertEqual(rows["lead"][6], "3")
        # Without --level, a known person is still refused as before.
        self.refused("boss", ["person", "add", "tech", "--role", "technician"],
                     "tether: tech is already a person this broker knows\n")
        self.refused("boss", ["person", "add", "tech", "--role", "technician", "--level", "4"],
                     'tether: --level: "4" out of range [0, 3]\n', rc=2)
        # Each write is audited with its article and title, the level change too.
        entries = self.audit()
        adds = [(e["actor"], e["action"], e["target"], e["detail"]["title"]) for e in entries
                if e["action"] in ("kb-add", "kb-update")]
        self.assertEqual(adds, [("tech", "kb-add", kb, "VPN drops"),
                                ("lead", "kb-update", kb, "VPN drops every few minutes")])
        levels = [(e["target"], e["detail"]) for e in entries if e["action"] == "person-level"]
        self.assertEqual(levels, [("tech", {"level": "3", "was": "1"})])

    def test_link_shows_in_ticket_and_counts(self):
        self.h.start_agent(self.b.addr, "dev1", "dev1.example")
        ids = self.add_corpus()
        kb = ids["disk-full.md"]
        t = self.ok("tech", ["ticket", "new", "--device", "dev1", "--summary", "disk full"]).out.strip()
        r = self.ok("tech", ["ticket", "link", t, kb])
        self.assertEqual(r.out, "%s: %s linked\n" % (t, kb))
        d = json.loads(self.ok("tech", ["ticket", "show", t, "--json"]).out)
        self.assertEqual(d["articles"], [{"id": kb, "title": "Disk full on /var", "linked": True, "solved": 1}])
        ev = d["events"][-1]
        self.assertEqual((ev["kind"], ev["actor"], ev["text"]), ("kb-linked", "tech", kb + " Disk full on /var"))
        r = self.ok("tech", ["ticket", "show", t])
        self.assertIn("\narticles:\n  %-8s %-10s %s (solved 1)\n" % (kb, "linked", "Disk full on /var"), r.out)
        self.assertEqual(self.show("tech", kb)["solved"], 1)
        self.assertIn("solved: 1 ticket\n", self.ok("tech", ["kb", "show", kb]).out)
        self.assertEqual(self.search("tech", ["disk", "full"])[0]["solved"], 1)
        # Twice is an error; so is an article that does not exist, or a ticket.
        self.refused("tech", ["ticket", "link", t, kb], "tether: %s is already linked to %s\n" % (kb, t))
        self.refused("tech", ["ticket", "link", t, "KB-999"], "tether: no such article: KB-999\n")
        self.refused("tech", ["ticket", "link", "T-999", kb], "tether: no such ticket: T-999\n")
        # A second ticket solved by it counts too; unlinking takes it back.
        t2 = self.ok("tech", ["ticket", "new", "--device", "dev1", "--summary", "disk full again"]).out.strip()
        self.ok("tech", ["ticket", "link", t2, kb])
        self.assertEqual(self.show("tech", kb)["solved"], 2)
        self.assertEqual(self.ok("tech", ["ticket", "unlink", t2, kb]).out, "%s: %s unlinked\n" % (t2, kb))
        self.assertEqual(self.show("tech", kb)["solved"], 1)
        self.refused("tech", ["ticket", "unlink", t2, kb], "tether: %s is not linked to %s\n" % (kb, t2))
        d2 = json.loads(self.ok("tech", ["ticket", "show", t2, "--json"]).out)
        self.assertEqual(d2["articles"], [])
        self.assertEqual([e["kind"] for e in d2["events"]][-2:], ["kb-linked", "kb-unlinked"])
        links = [(e["actor"], e["action"], e["target"]) for e in self.audit()
                 if e["action"] in ("ticket-link", "ticket-unlink")]
        self.assertEqual(links, [("tech", "ticket-link", t), ("tech", "ticket-link", t2),
                                 ("tech", "ticket-unlink", t2)])
        # Only who works the ticket links to it: a colleague's is refused.
        self.ok("boss", ["person", "add", "lead", "--role", "technician"])
        self.refused("lead", ["ticket", "link", t, ids["dns.md"]],
                     "tether: permission denied: %s is assigned to tech\n" % t)

    def test_edit_keeps_what_it_does_not_change(self):
        ids = self.add_corpus()
        kb = ids["printer-offline.md"]
        before = self.show("tech", kb)
        self.assertEqual(self.ok("boss", ["kb", "edit", kb, "--title", "Printer offline"]).out, "%s updated\n" % kb)
        a = self.show("tech", kb)
        self.assertEqual((a["title"], a["body"], a["checks"], a["created_ms"]),
                         ("Printer offline", before["body"], [], before["created_ms"]))
        new = self.path("label.md", b"# Label printer\n\nThe label printer jams on glossy rolls.\n")
        # A check the catalogue does not know is refused by the broker.
        r = self.as_("boss", ["kb", "edit", kb, "--check", "printer_queue", new])
        self.assertEqual(r.rc, 1, r)
        self.assertIn("no such health check: printer_queue", r.err)
        self.ok("boss", ["kb", "edit", kb, "--check", "services_down", new])
        a = self.show("tech", kb)
        self.assertEqual((a["title"], a["checks"]), ("Printer offline", ["services_down"]))
        self.assertEqual(self.search("tech", ["glossy"])[0]["id"], kb)
        self.assertNotIn(kb, [h["id"] for h in self.search("tech", ["lpadmin"])])
        self.ok("boss", ["kb", "edit", kb, "--check", ""])
        self.assertEqual(self.show("tech", kb)["checks"], [])
        self.refused("boss", ["kb", "edit", kb], "tether: kb edit: nothing to change (give --title, --check or a file)\n",
                     rc=2)
        self.refused("boss", ["kb", "edit", "KB-999", "--title", "x"], "tether: no such article: KB-999\n")
        self.refused("boss", ["kb", "add", "--title", "x", "--check", "Disk Used", new],
                     "tether: --check 'Disk Used': a check's name is 1 to 63 of a-z, 0-9 and _ (disk_used)\n", rc=2)
        self.refused("boss", ["kb", "search", "--check", "disk_used", "x"], "tether: --check does not apply to 'kb'\n",
                     rc=2)

    def test_body_over_the_limit_is_refused(self):
        big = self.path("big.md", b"x" * (BODY_MAX + 1))
        self.refused("boss", ["kb", "add", "--title", "Big", big],
                     "tether: %s is %d bytes; an article is at most 64 KiB\n" % (big, BODY_MAX + 1), rc=2)
        r = self.with_stdin("boss", ["kb", "add", "--title", "Big", "-"], b"x" * (BODY_MAX + 1))
        self.assertEqual((r.rc, r.err), (2, "tether: standard input holds more than 64 KiB; an article is at most that\n"))
        # The limit itself is fine, from a file or from standard input.
        r = self.with_stdin("boss", ["kb", "add", "--title", "Exactly", "-"], b"y" * BODY_MAX)
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(len(self.show("tech", r.out.strip())["body"]), BODY_MAX)
        # Text only: a line with an escape is named.
        bad = self.path("bad.md", b"# Fine\n\nthen \x1b[2J an escape\n")
        self.refused("boss", ["kb", "add", "--title", "Bad", bad],
                     "tether: %s line 3: not UTF-8 text, or a control or invisible formatting character "
                     "(an article holds text, tabs and line ends)\n" % bad, rc=2)
        self.refused("boss", ["kb", "add", "--title", "Empty", self.path("empty.md", b"")],
                     "tether: %s is empty\n" % os.path.join(self.h.dir, "empty.md"), rc=2)
        # A console that sends more anyway is refused by the broker, before it stores a byte.
        with WireClient(self.b.port, self.pki.ca, self.pki.cert("boss"), self.pki.key("boss")) as c:
            c.handshake_hello(role=ROLE_ADMIN)

            def ask(rid, body):
                c.send_frame(K_REQUEST, pb_varint(1, rid) + pb_bytes(42, body))
                kind, _, _, rb = c.read_control()
                self.assertEqual(kind, K_RESPONSE)
                r = pb_parse(rb)
                self.assertEqual(r[1], [rid])
                err = pb_parse(r[2][0])
                return err[1][0], err[2][0].decode()

            self.assertEqual(ask(1, pb_bytes(2, b"Big") + pb_bytes(3, b"x" * (BODY_MAX + 1))),
                             (ERR_TOO_BIG, "the article is 65537 bytes; at most 64 KiB"))
            self.assertEqual(ask(2, pb_bytes(2, b"Bell") + pb_bytes(3, b"ring \x07")),
                             (ERR_PROTOCOL, "the body must be UTF-8 text: no control characters but tabs and "
                                            "line ends, no invisible formatting characters"))
            self.assertEqual(ask(3, pb_bytes(2, b"Checks") + pb_bytes(3, b"ok\n") +
                                 b"".join(pb_bytes(4, b"c%d" % i) for i in range(9))),
                             (ERR_TOO_BIG, "an article names at most 8 checks"))
        self.assertEqual(self.search("tech", ["big", "bell", "checks", "ring"]), [])


if __name__ == "__main__":
    unittest.main()
