"""`tether inventory find`: every device whose latest inventory has a matching row. A real
agent's packages are found; a device on the wire pushes a distinctive row, is found by it
exactly, and after it pushes a changed table the old row is found no more; a find of many
pages is one audit entry; a device pushing more rows than its index budget, again and again,
neither grows the index nor makes finds refused; agents may not ask; bad arguments are refused
before connecting.
The real programs on 127.0.0.1.

Run by ctest as `integration.inventory_find` (TT_BIN_DIR names the build directory)."""

import hashlib
import json
import unittest

from inventory import test_inventory as ti
from harness import (K_REQUEST, K_RESPONSE, ROLE_TECHNICIAN, Pki, TetherTestCase, WireClient, pb_bytes, pb_parse,
                     pb_varint)

ERR_DENIED = 11


def table(columns, rows):
    return json.dumps({"columns": columns, "rows": rows}, separators=(",", ":")).encode()


class InventoryFindTest(TetherTestCase):
    maxDiff = None
    fake_agent = ti.InventoryTest.fake_agent
    call = ti.InventoryTest.call
    offer = ti.InventoryTest.offer
    put = ti.InventoryTest.put

    @classmethod
    def setUpClass(cls):
        cls.pki = Pki()
        cls.pki.issue("technician", "tech")
        cls.pki.issue("admin", "boss")
        cls.pki.issue("agent", "dev1")
        cls.pki.issue("agent", "dev2")

    def tech(self, args, who="tech"):
        return self.h.console(self.b.addr, args, cert=self.pki.cert(who), key=self.pki.key(who))

    def push(self, c, name, data):
        """The agent's side of a push: offer the table's hash, send it when asked, in parts
        of at most TT_INV_PART_MAX."""
        r = self.offer(c, [(name, hashlib.sha256(data).digest())])
        want = pb_parse(r[21][0])
        self.assertEqual(want[2], [name.encode()])
        z = ti.zstd_frame(data)
        part = 150 * 1024
        for off in range(0, len(z), part):
            r = self.put(c, want[1][0], name, data, z=z[off:off + part], offset=off, total=len(z))
        self.assertEqual(pb_parse(r[22][0]).get(1), [1], r)  # complete

    def find_json(self, *args):
        r = self.tech(["inventory", "find"] + list(args) + ["--json"])
        self.assertEqual(r.rc, 0, r)
        return [json.loads(ln) for ln in r.out.splitlines()]

    def finds_in_audit(self):
        r = self.h.console(self.b.addr, ["audit", "--json"], cert=self.pki.cert("boss"), key=self.pki.key("boss"))
        self.assertEqual(r.rc, 0, r)
        return [json.loads(ln) for ln in r.out.splitlines() if '"inventory-find"' in ln]

    def test_real_agent_packages_are_found(self):
        self.b = self.h.start_broker()
        self.a = self.h.start_agent(self.b.addr, "dev1", "dev1.example")
        self.b.wait_for(r'msg="inventory stored" device=dev1 ')
        # Readable: a header, the device with its hostname, the package's columns.
        r = self.tech(["inventory", "find", "deb_packages", "name=bash"])
        self.assertEqual(r.rc, 0, r)
        lines = r.out.splitlines()
        self.assertRegex(lines[0], r"^DEVICE +HOSTNAME +name +version +")
        self.assertRegex(lines[1], r"^dev1 +\S+ +bash +\S+")
        self.assertEqual(lines[-1], "1 device, 1 row")
        # Every column starts where the header's does.
        for col in ("HOSTNAME", "name", "version"):
            self.assertEqual(lines[1][lines[0].index(col) - 2:lines[0].index(col)], "  ", (col, lines[:2]))
        # --json: one object per device and line, rows as objects.
        found = self.find_json("deb_packages", "name=bash")
        self.assertEqual(len(found), 1, found)
        self.assertEqual(found[0]["device"], "dev1")
        self.assertEqual([row["name"] for row in found[0]["rows"]], ["bash"])
        self.assertIn("version", found[0]["rows"][0])
        # Contains, and two conditions in one row.
        found = self.find_json("deb_packages", "name~bas")
        self.assertIn("bash", [row["name"] for row in found[0]["rows"]])
        version = self.find_json("deb_packages", "name=bash")[0]["rows"][0]["version"]
        self.assertEqual(len(self.find_json("deb_packages", "name=bash", "version=" + version)), 1)
        self.assertEqual(self.find_json("deb_packages", "name=bash", "version=0-not-this"), [])
        r = self.tech(["inventory", "find", "deb_packages", "name=no-such-package-here"])
        self.assertEqual((r.rc, r.out), (0, "no device has a deb_packages row like that\n"))
        # Each find is one audit entry, with its conditions.
        entries = self.finds_in_audit()
        self.assertEqual(len(entries), 7, entries)
        self.assertEqual({e["actor"] for e in entries}, {"tech"})
        self.assertIn("name=bash", json.dumps(entries[0]))

    def test_device_on_the_wire_found_exactly_and_changes_follow(self):
        self.b = self.h.start_broker()
        c = self.fake_agent()
        self.push(c, "deb_packages", table(["name", "version", "arch"],
                                           [["bash", "5.2", "amd64"], ["tether-probe-xyzzy", "1.0", "amd64"]]))
        found = self.find_json("deb_packages", "name=tether-probe-xyzzy")
        self.assertEqual(found, [{"device": "dev2", "hostname": found[0]["hostname"],
                                  "rows": [{"name": "tether-probe-xyzzy", "version": "1.0", "arch": "amd64"}]}])
        self.assertEqual(self.find_json("deb_packages", "name=tether-probe-xyzz"), [])
        self.assertEqual(len(self.find_json("deb_packages", "name~probe-xyz")), 1)
        # Another table is another index.
        self.assertEqual(self.find_json("rpm_packages", "name=tether-probe-xyzzy"), [])
        # The agent pushes the table changed: the old row is found no more, the new one is.
        self.push(c, "deb_packages", table(["name", "version", "arch"],
                                           [["bash", "5.2", "amd64"], ["tether-probe-xyzzy", "2.0", "amd64"]]))
        self.assertEqual(self.find_json("deb_packages", "name=tether-probe-xyzzy", "version=1.0"), [])
        found = self.find_json("deb_packages", "name=tether-probe-xyzzy")
        self.assertEqual([r["version"] for r in found[0]["rows"]], ["2.0"])
        # Removed (an offer without the table): not found at all.
        r = self.offer(c, [])
        self.assertEqual(self.find_json("deb_packages", "name=tether-probe-xyzzy"), [])

    def test_many_pages_one_audit_entry(self):
        self.b = self.h.start_broker()
        c = self.fake_agent()
        rows = [["pkg-%05d" % i, "1.%d" % i, "x" * 60] for i in range(6000)]
        self.push(c, "deb_packages", table(["name", "version", "note"], rows))
        before = len(self.finds_in_audit())
        found = self.find_json("deb_packages", "name~pkg-")
        # One device, its rows over several pages joined back in one line.
        self.assertEqual(len(found), 1)
        self.assertEqual(sorted(r["name"] for r in found[0]["rows"]), [r[0] for r in rows])
        r = self.tech(["inventory", "find", "deb_packages", "name~pkg-"])
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(r.out.splitlines()[-1], "1 device, 6000 rows")
        self.assertEqual(len(self.finds_in_audit()) - before, 2)

    def test_a_page_asked_with_a_made_up_cursor_is_audited(self):
        """Only the cursor the page before gave this connection continues a find unaudited:
        a first request with a cursor of its own making (which still reads every device
        after it) is a find, and so is one with a cursor given for other conditions."""
        self.b = self.h.start_broker()
        c = self.fake_agent()
        self.push(c, "deb_packages", table(["name", "version"], [["bash", "5.2"]]))
        t = WireClient(self.b.port, self.pki.ca, self.pki.cert("tech"), self.pki.key("tech"))
        self.addCleanup(t.close)
        t.handshake_hello(role=ROLE_TECHNICIAN)
        before = len(self.finds_in_audit())
        cond = pb_bytes(1, b"name") + pb_bytes(2, b"bash")
        for rid, (dev, row) in enumerate(((0, 1), (1, 0), (0, 1)), start=100):
            t.send_frame(K_REQUEST, pb_varint(1, rid) + pb_bytes(29, pb_bytes(1, b"deb_packages") + pb_bytes(2, cond)
                                                           + pb_varint(3, dev) + pb_varint(4, row)))
            while True:
                kind, _, _, body = t.read_control(timeout=10, answer_pings=True)
                if kind == K_RESPONSE and pb_parse(body)[1][0] == rid:
                    break
            self.assertIn(30, pb_parse(body), pb_parse(body))  # a page, not an error
        self.wait_until(lambda: len(self.finds_in_audit()) - before == 3, "three finds in the audit")

    def test_hostile_rows_do_not_shut_find_down(self):
        # An agent pushes more distinct rows named openssl than a device may hold in the index
        # (STORE_INV_DEVICE_INDEX_ROWS_MAX, 32,768), twice with other rows: before, every row
        # stayed in the index and every find of openssl was refused as too wide from then on.
        self.b = self.h.start_broker()
        c = self.fake_agent()
        n, cap = 34000, 32768
        for tag in ("a", "b"):
            self.push(c, "deb_packages", table(["name", "pad"], [["openssl", "%s%05d" % (tag, i)] for i in range(n)]))
        self.b.wait_for(r"inventory rows past the device's find index budget.* left_out=%d" % (n - cap))
        found = self.find_json("deb_packages", "name=openssl")
        self.assertEqual(len(found), 1, [f["device"] for f in found])
        pads = [r["pad"] for r in found[0]["rows"]]
        # Only the latest table's rows, and only as many as the budget.
        self.assertEqual(len(pads), cap)
        self.assertEqual(sorted(pads), ["b%05d" % i for i in range(cap)])
        self.assertEqual(self.find_json("deb_packages", "pad=a00001"), [])

    def test_refused(self):
        self.b = self.h.start_broker()
        # An agent may not ask.
        c = self.fake_agent()
        c.rid += 1
        cond = pb_bytes(1, b"name") + pb_bytes(2, b"bash")
        c.send_frame(K_REQUEST, pb_varint(1, c.rid) + pb_bytes(29, pb_bytes(1, b"deb_packages") + pb_bytes(2, cond)))
        while True:
            kind, _, _, body = c.read_control(timeout=10, answer_pings=True)
            if kind == K_RESPONSE:
                break
        err = pb_parse(pb_parse(body)[2][0])
        self.assertEqual(err[1][0], ERR_DENIED)
        # Bad arguments never reach the broker.
        for args, why in ((["Deb", "name=x"], "is not a table name"),
                          (["deb_packages", "name"], "is not COLUMN=VALUE"),
                          (["deb_packages", "Name=x"], "is not COLUMN=VALUE"),
                          (["deb_packages"], "")):
            r = self.tech(["inventory", "find"] + args)
            self.assertEqual(r.rc, 2, (args, r))
            self.assertIn(why, r.err)
        r = self.tech(["inventory", "find", "deb_packages"] + ["name=x"] * 9)
        self.assertEqual(r.rc, 2, r)


if __name__ == "__main__":
    unittest.main()
