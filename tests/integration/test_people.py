"""The people the broker knows, and who may be given a ticket: technicians take tickets for
themselves, admins give them to known, unrevoked people, and `tether people` lists who was
seen at connect or added. The real programs on 127.0.0.1.

Run by ctest as `integration.people` (TT_BIN_DIR names the build directory)."""

import json
import os
import sqlite3
import unittest

from harness import K_REQUEST, K_RESPONSE, Pki, TetherTestCase, WireClient, pb_bytes, pb_parse, pb_varint

ROLE_AGENT, ROLE_TECHNICIAN, ROLE_ADMIN = 1, 2, 3
PAGE_MAX = 250  # TT_PEOPLE_PAGE_MAX

UNKNOWN = ("tether: nobody-xyz is not a person this broker knows "
           "(an admin adds people with `tether person add`)\n")
COLLEAGUE = ("tether: permission denied: technicians take tickets for themselves or escalate them; "
             "only an admin assigns to a colleague\n")


class PeopleTest(TetherTestCase):
    maxDiff = None

    @classmethod
    def setUpClass(cls):
        cls.pki = Pki()
        for role, name in (("technician", "tech"), ("technician", "bob"), ("technician", "tech2"),
                           ("admin", "boss"), ("agent", "dev1")):
            cls.pki.issue(role, name)

    # -- helpers -------------------------------------------------------------------------------

    def setUp(self):
        super().setUp()
        self.b = self.h.start_broker()
        self.h.start_agent(self.b.addr, "dev1", "dev1.example")

    def as_(self, who, args):
        return self.h.console(self.b.addr, args, cert=self.pki.cert(who), key=self.pki.key(who))

    def ok(self, who, args):
        r = self.as_(who, args)
        self.assertEqual(r.rc, 0, r)
        return r

    def connect(self, who):
        """who connects once (any command will do): the broker knows them from then on."""
        self.ok(who, ["tickets"])

    def new_ticket(self, who="boss"):
        r = self.ok(who, ["ticket", "new", "--device", "dev1", "--summary", "printer jams"])
        return r.out.strip()

    def assignee(self, tid):
        r = self.ok("boss", ["ticket", "show", tid, "--json"])
        return json.loads(r.out)["ticket"]["assignee"]

    def refused(self, who, args, err):
        r = self.as_(who, args)
        self.assertEqual(r.rc, 1, r)
        self.assertEqual(r.err, err, r)
        return r

    def people(self):
        r = self.ok("boss", ["people", "--json"])
        return {p["name"]: p for p in json.loads(r.out)}

    def audit(self):
        r = self.ok("boss", ["audit", "--json"])
        return [json.loads(ln) for ln in r.out.splitlines() if ln.strip()]

    # -- defect 10: technicians gave tickets away, even to people who do not exist ----------------

    def test_technician_takes_tickets_only_for_themselves(self):
        self.connect("bob")
        # The defect as found: a technician's own ticket handed to a colleague, or to no one.
        own = self.new_ticket(who="tech")
        self.assertEqual(self.assignee(own), "tech")
        self.refused("tech", ["ticket", "assign", own, "bob"], COLLEAGUE)
        self.refused("tech", ["ticket", "assign", own, "nobody-xyz"], COLLEAGUE)
        self.assertEqual(self.assignee(own), "tech")
        # They escalate it instead.
        self.ok("tech", ["ticket", "escalate", own, "--level", "2"])
        self.assertEqual(self.assignee(own), "tech")
        tid = self.new_ticket()  # an admin's: unassigned
        self.assertEqual(self.assignee(tid), "")
        self.refused("tech", ["ticket", "assign", tid, "bob"], COLLEAGUE)
        self.refused("tech", ["ticket", "assign", tid, "nobody-xyz"], COLLEAGUE)
        self.assertEqual(self.assignee(tid), "")
        self.ok("tech", ["ticket", "assign", tid, "tech"])
        self.assertEqual(self.assignee(tid), "tech")
        # Once theirs, theirs: not handed on, not taken by a colleague.
        self.refused("tech", ["ticket", "assign", tid, "bob"], COLLEAGUE)
        self.refused("bob", ["ticket", "assign", tid, "bob"],
                     "tether: permission denied: %s is assigned to tech\n" % tid)
        self.refused("tech", ["ticket", "assign", tid, "tech"],
                     "tether: %s is already assigned to tech\n" % tid)
        self.assertEqual(self.assignee(tid), "tech")
        refusals = [e for e in self.audit() if e["action"] == "refuse" and e["actor"] == "tech"]
        self.assertEqual(len(refusals), 5, refusals)
        self.assertTrue(all(e["detail"]["request"] == "ticket-assign" for e in refusals), refusals)

    def test_admin_assigns_only_to_known_unrevoked_people(self):
        tid = self.new_ticket()
        self.refused("boss", ["ticket", "assign", tid, "nobody-xyz"], UNKNOWN)
        # bob's certificate exists, but bob has never connected: not known yet.
        self.refused("boss", ["ticket", "assign", tid, "bob"],
                     UNKNOWN.replace("nobody-xyz", "bob"))
        self.connect("tech2")
        self.ok("boss", ["revoke", "person", "tech2", "--reason", "left"])
        self.refused("boss", ["ticket", "assign", tid, "tech2"], "tether: tech2 was revoked\n")
        self.assertEqual(self.assignee(tid), "")
        self.connect("bob")
        r = self.ok("boss", ["ticket", "assign", tid, "bob"])
        self.assertEqual(r.out, "%s assigned to bob\n" % tid)
        self.assertEqual(self.assignee(tid), "bob")
        # Someone added by an admin can be given a ticket before they ever connect.
        self.refused("boss", ["ticket", "assign", tid, "carol"], UNKNOWN.replace("nobody-xyz", "carol"))
        r = self.ok("boss", ["person", "add", "carol", "--role", "technician", "--note", "starts Monday"])
        self.assertEqual(r.out, "added technician carol\n")
        self.ok("boss", ["ticket", "assign", tid, "carol"])
        self.assertEqual(self.assignee(tid), "carol")
        adds = [e for e in self.audit() if e["action"] == "person-add"]
        self.assertEqual(len(adds), 1, adds)
        self.assertEqual((adds[0]["actor"], adds[0]["target"]), ("boss", "carol"))
        self.assertEqual(adds[0]["detail"]["role"], "technician")
        # Adding is an admin's, once per name, and never of a revoked person.
        self.refused("boss", ["person", "add", "carol", "--role", "admin"],
                     "tether: carol is already a person this broker knows\n")
        self.refused("boss", ["person", "add", "tech2", "--role", "technician"], "tether: tech2 was revoked\n")
        self.refused("tech", ["person", "add", "dave", "--role", "technician"],
                     "tether: permission denied: adding people needs the admin role\n")
        r = self.as_("boss", ["person", "add", "dave"])
        self.assertEqual((r.rc, r.err), (2, "tether: --role is required: technician or admin\n"), r)
        r = self.as_("boss", ["person", "add", "da ve", "--role", "admin"])
        self.assertEqual(r.rc, 2, r)
        self.assertEqual(len([e for e in self.audit() if e["action"] == "person-add"]), 1)

    def test_people_lists_those_seen_at_connect_and_added(self):
        self.connect("tech")
        self.connect("tech2")
        self.ok("boss", ["person", "add", "carol", "--role", "admin", "--note", "night shift"])
        self.ok("boss", ["revoke", "person", "tech2"])
        ppl = self.people()
        # The device is no person; everyone else who connected is, and so is carol.
        self.assertEqual(sorted(ppl), ["boss", "carol", "tech", "tech2"])
        tech = ppl["tech"]
        self.assertEqual((tech["role"], tech["added_by"], tech["added"], tech["revoked"]),
                         ("technician", "", None, False))
        self.assertIsNotNone(tech["first_seen"])
        self.assertGreaterEqual(tech["last_seen"], tech["first_seen"])  # ISO-8601 sorts as time
        self.assertEqual(ppl["boss"]["role"], "admin")
        carol = ppl["carol"]
        self.assertEqual((carol["role"], carol["first_seen"], carol["last_seen"], carol["added_by"],
                          carol["note"], carol["revoked"]),
                         ("admin", None, None, "boss", "night shift", False))
        self.assertIsNotNone(carol["added"])
        self.assertTrue(ppl["tech2"]["revoked"])  # revoked people stay listed
        r = self.ok("boss", ["people"])
        rows = {ln.split()[0]: ln.split() for ln in r.out.splitlines()[1:]}
        self.assertEqual(r.out.splitlines()[0].split()[:2], ["NAME", "ROLE"])
        self.assertEqual(rows["tech2"][5], "yes")
        self.assertEqual(rows["tech"][5], "no")
        self.assertEqual(rows["carol"][2:6], ["never", "never", "boss", "no"])
        self.refused("tech", ["people"], "tether: permission denied: listing people needs the admin role\n")
        # What the broker knows outlives it.
        self.assertEqual(self.b.stop(), 0)
        self.b = self.h.start_broker(port=self.b.port, name="broker2", data_dir=self.b.data_dir)
        self.assertEqual(sorted(self.people()), ["boss", "carol", "tech", "tech2"])

    def test_people_listing_pages_and_refuses_bad_input(self):
        """A listing longer than a page comes whole to the console; a page never holds more
        than TT_PEOPLE_PAGE_MAX whatever is asked; the broker checks what it is sent."""
        self.assertEqual(self.b.stop(), 0)
        db = sqlite3.connect(os.path.join(self.b.data_dir, "broker.db"), timeout=5)
        with db:
            db.executemany("INSERT INTO people(name, role, added_by, added_ms) VALUES(?, 2, 'boss', 1)",
                           [("p%03d" % i,) for i in range(300)])
        db.close()
        self.b = self.h.start_broker(port=self.b.port, name="broker2", data_dir=self.b.data_dir)
        want = ["boss"] + ["p%03d" % i for i in range(300)]
        r = self.ok("boss", ["people", "--json"])
        self.assertEqual([p["name"] for p in json.loads(r.out)], want)
        with WireClient(self.b.port, self.pki.ca, self.pki.cert("boss"), self.pki.key("boss")) as c:
            c.handshake_hello(role=ROLE_ADMIN)
            rid = [0]

            def ask(field, body):
                rid[0] += 1
                c.send_frame(K_REQUEST, pb_varint(1, rid[0]) + pb_bytes(field, body))
                kind, _, _, rb = c.read_control()
                self.assertEqual(kind, K_RESPONSE)
                r = pb_parse(rb)
                self.assertEqual(r[1], [rid[0]])
                return r

            page = pb_parse(ask(20, pb_varint(2, 100000))[20][0])
            names = [pb_parse(p)[1][0].decode() for p in page[1]]
            self.assertEqual(names, want[:PAGE_MAX])
            self.assertEqual(page[2], [1])  # more
            page = pb_parse(ask(20, pb_bytes(1, names[-1]))[20][0])
            self.assertEqual([pb_parse(p)[1][0].decode() for p in page[1]], want[PAGE_MAX:])
            self.assertNotIn(2, page)
            for body, why in ((pb_bytes(1, "dev1") + pb_varint(2, ROLE_AGENT), b"technician or an admin"),
                              (pb_bytes(1, "x y") + pb_varint(2, ROLE_TECHNICIAN), b"not a person's name"),
                              (pb_bytes(1, "") + pb_varint(2, ROLE_ADMIN), b"not a person's name"),
                              (pb_bytes(1, "x" * 65) + pb_varint(2, ROLE_ADMIN), b"not a person's name"),
                              (pb_bytes(1, "ok") + pb_varint(2, ROLE_ADMIN) + pb_bytes(3, "a\nb"), b"note")):
                err = pb_parse(ask(19, body)[2][0])
                self.assertIn(why, err[2][0])
        self.assertNotIn("dev1", self.people())
        self.assertNotIn("ok", self.people())


if __name__ == "__main__":
    unittest.main()
