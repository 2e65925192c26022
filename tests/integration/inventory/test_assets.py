"""Asset records, the admins' push: `tether inventory import` with --dry-run then for real
(a device that pushed its inventory matched by hostname and by serial, a row with no device
yet that joins the device once it connects, a row matching two devices), the same file
again changes nothing, export joins the facts and round-trips (CSV and JSON), a formula cell
is neutralised on export, `tether devices --where` filters in the broker, non-admins are
refused, a file of a million rows is refused before anything is sent, and a console that
lies on the wire is checked by the broker. The real programs on 127.0.0.1.

Run by ctest as `integration.assets` (TT_BIN_DIR names the build directory)."""

import csv
import hashlib
import io
import json
import os
import unittest

from harness import (K_REQUEST, K_RESPONSE, ROLE_AGENT, Pki, TetherTestCase, WireClient, pb_bytes, pb_parse,
                     pb_varint)

ROLE_ADMIN = 3
ERR_TOO_BIG, ERR_INVALID = 4, 14
FORMULA = "=cmd|' /C calc'!A0"
HEADER = ["Asset Tag", "Name", "Serial", "Model", "Manufacturer", "Category", "Location", "Department",
          "Checked Out To", "Purchase Date", "Warranty Months", "Notes", "Cost Center"]
FACTS = ["Device", "Hostname", "OS", "Discovered Serial", "CPU", "Memory", "Disk", "Last Seen", "Agent Version"]


def zstd_frame(data):
    """A zstd frame of data stored raw (one raw block): no zstd module needed."""
    magic = (0xFD2FB528).to_bytes(4, "little")
    fhd = bytes([(2 << 6) | (1 << 5)]) + len(data).to_bytes(4, "little")
    block = ((len(data) << 3) | 1).to_bytes(3, "little")
    return magic + fhd + block + data


def table(columns, rows):
    return json.dumps({"columns": columns, "rows": rows}, separators=(",", ":")).encode()


class AssetsTest(TetherTestCase):
    maxDiff = None

    @classmethod
    def setUpClass(cls):
        cls.pki = Pki()
        cls.pki.issue("technician", "tech")
        cls.pki.issue("admin", "boss")
        for d in ("dev1", "dev2", "dev3", "dev4"):
            cls.pki.issue("agent", d)

    def cli(self, args, who="boss"):
        return self.h.console(self.b.addr, args, cert=self.pki.cert(who), key=self.pki.key(who))

    def path(self, name, text):
        p = os.path.join(self.h.dir, name)
        with open(p, "w" if isinstance(text, str) else "wb") as f:
            f.write(text)
        return p

    # -- devices on the wire, pushing what the facts come from ---------------------------

    def call(self, c, field, body):
        c.rid += 1
        c.send_frame(K_REQUEST, pb_varint(1, c.rid) + pb_bytes(field, body))
        while True:
            kind, _, _, b = c.read_control(timeout=20, answer_pings=True)
            if kind == K_RESPONSE and pb_parse(b)[1][0] == c.rid:
                return pb_parse(b)

    def agent(self, name, hostname, serial=None, mac=None):
        c = WireClient(self.b.port, self.pki.ca, self.pki.cert(name), self.pki.key(name))
        self.addCleanup(c.close)
        c.handshake_hello(role=ROLE_AGENT, hostname=hostname)
        c.rid = 0
        if serial is None:
            return c
        tables = {
            "system_info": table(["hostname", "cpu_brand", "physical_memory", "hardware_serial"],
                                 [[hostname, "Test CPU 3000", "8589934592", serial]]),
            "os_version": table(["name", "version"], [["Debian GNU/Linux", "12 (bookworm)"]]),
            "mounts": table(["device", "path", "type", "blocks_size", "blocks"], [["/dev/vda1", "/", "ext4", "4096", "262144"]]),
            "interface_details": table(["interface", "mac"], [["eth0", mac]]),
        }
        body = pb_varint(1, 1000)
        for n, t in tables.items():
            body += pb_bytes(2, pb_bytes(1, n.encode()) + pb_bytes(2, hashlib.sha256(t).digest()))
        want = pb_parse(self.call(c, 21, body)[21][0])
        for n in want[2]:
            t, z = tables[n.decode()], zstd_frame(tables[n.decode()])
            self.call(c, 22, pb_varint(1, want[1][0]) + pb_bytes(2, n) + pb_varint(3, len(t)) + pb_varint(4, 0)
                      + pb_varint(5, len(z)) + pb_bytes(6, z))
        self.b.wait_for(r'msg="inventory stored" device=%s ' % name)
        return c

    def world(self):
        self.b = self.h.start_broker()
        self.agent("dev1", "ws-01.corp", serial="SN-A1", mac="52:54:00:00:00:01")
        self.agent("dev2", "twin.corp")
        self.agent("dev3", "twin.corp")
        for d in ("dev1", "dev2", "dev3"):
            self.h.wait_device(self.b.addr, d)

    def csv_file(self, name="assets.csv"):
        rows = [HEADER,
                ["LT-001", "ws-01.corp", "SN-A1", "ThinkPad T14", "Lenovo", "Laptop", "Zurich", "Finance", "sam",
                 "2024-01-15", "36", "first line\nsecond line", "4410"],
                ["LT-002", "ws-99.corp", "SN-Z9", "Latitude", "Dell", "Laptop", "Bern", "Finance", "kim",
                 "2023-05-01", "24", FORMULA, ""],
                ["LT-003", "twin.corp", "SN-T3", "OptiPlex", "Dell", "Desktop", "Bern", "Sales", "lee", "", "", "", ""]]
        out = io.StringIO()
        csv.writer(out, lineterminator="\r\n").writerows(rows)
        return self.path(name, "\ufeff" + out.getvalue())  # as Excel's "CSV UTF-8" writes it: with a BOM

    def report(self, r):
        self.assertEqual(r.rc, 0, r)
        return json.loads(r.out)

    def export(self, fmt="csv"):
        r = self.cli(["inventory", "export", "--format", fmt])
        self.assertEqual(r.rc, 0, r)
        return r.out

    # -- the tests ---------------------------------------------------------------------------

    def test_import_export_round_trip_and_where(self):
        self.world()
        f = self.csv_file()
        # The dry run: the match report, nothing written.
        r = self.cli(["inventory", "import", f, "--match", "hostname", "--dry-run"])
        self.assertEqual(r.rc, 0, r)
        self.assertIn("dry run: nothing was changed", r.out)
        self.assertIn("LT-001 (line 2) -> dev1: new", r.out)
        self.assertIn('Location: "" -> "Zurich"', r.out)
        self.assertIn("LT-002 (line 4): hostname=ws-99.corp", r.out)
        self.assertIn("LT-003 (line 5) matches more than one device, so none: dev2 dev3", r.out)
        rep = self.report(self.cli(["inventory", "import", f, "--match", "hostname", "--dry-run", "--json"]))
        self.assertEqual((rep["rows"], rep["new"], rep["matched"], rep["no_device"], rep["row_conflicts"]),
                         (3, 3, 1, 1, 1))
        self.assertEqual(sorted(rep["without_record"]), ["dev2", "dev3"])
        self.assertTrue(rep["dry_run"])
        self.assertNotIn("LT-001", self.export())

        # For real; then the same file again changes nothing.
        rep = self.report(self.cli(["inventory", "import", f, "--match", "hostname", "--json"]))
        self.assertEqual((rep["new"], rep["changed"], rep["dry_run"]), (3, 0, False))
        rep = self.report(self.cli(["inventory", "import", f, "--match", "hostname", "--json"]))
        self.assertEqual((rep["new"], rep["changed"], rep["unchanged"]), (0, 0, 3))
        self.assertEqual(rep["changes"], [])

        # Export: the records joined with what the device reports, then the devices with none.
        out = self.export()
        rows = list(csv.reader(io.StringIO(out)))
        self.assertEqual(rows[0], HEADER + FACTS)
        by = {row[0] or row[len(HEADER)]: dict(zip(rows[0], row)) for row in rows[1:]}
        lt1 = by["LT-001"]
        self.assertEqual((lt1["Device"], lt1["Hostname"], lt1["Discovered Serial"], lt1["OS"], lt1["CPU"]),
                         ("dev1", "ws-01.corp", "SN-A1", "Debian GNU/Linux 12 (bookworm)", "Test CPU 3000"))
        self.assertEqual((lt1["Memory"], lt1["Disk"], lt1["Cost Center"]), ("8589934592", str(4096 * 262144), "4410"))
        self.assertRegex(lt1["Last Seen"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        self.assertEqual(lt1["Notes"], "first line\nsecond line")
        self.assertEqual(by["LT-003"]["Device"], "")  # a conflict joins no device
        self.assertEqual(by["dev2"]["Asset Tag"], "")
        # The formula is stored as text and leaves neutralised: a spreadsheet shows it, runs nothing.
        self.assertEqual(by["LT-002"]["Notes"], "'" + FORMULA)
        self.assertNotIn("\n=cmd", out)
        self.assertNotIn("," + FORMULA, out)

        # Export -> import: no change (the facts columns are skipped, the quote taken off).
        back = self.path("export.csv", out)
        rep = self.report(self.cli(["inventory", "import", back, "--match", "hostname", "--json"]))
        self.assertEqual((rep["new"], rep["changed"], rep["unchanged"], rep["skipped"]), (0, 0, 3, 2), rep)
        js = json.loads(self.export("json"))
        self.assertEqual(js[0]["Asset Tag"], "LT-001")
        self.assertEqual(js[1]["Notes"], FORMULA)  # JSON is not opened by spreadsheets: as stored
        rep = self.report(self.cli(["inventory", "import", self.path("export.json", json.dumps(js)), "--match",
                                    "hostname", "--json"]))
        self.assertEqual((rep["new"], rep["changed"], rep["unchanged"]), (0, 0, 3), rep)

        # devices --where, in the broker; technicians may filter too.
        def where(*conds, who="tech"):
            args = ["devices", "--json"]
            for c in conds:
                args += ["--where", c]
            r = self.cli(args, who=who)
            self.assertEqual(r.rc, 0, r)
            return [d["device"] for d in json.loads(r.out)]
        self.assertEqual(where("owner=sam", "department=finance"), ["dev1"])
        self.assertEqual(where("Cost Center=4410"), ["dev1"])
        self.assertEqual(where("owner=kim"), [])
        self.assertEqual(where("department=sales"), [])  # LT-003 is a conflict: no device
        r = self.cli(["devices", "--where", "owner"], who="tech")
        self.assertEqual(r.rc, 2, r)
        # Each listing by asset fields is in the audit, with who asked and the conditions.
        def wheres():
            r = self.cli(["audit", "--json"])
            return [(e["actor"], e["detail"]["where"]) for e in map(json.loads, r.out.splitlines())
                    if e["action"] == "devices-where"]
        self.wait_until(lambda: len(wheres()) == 4, "four devices --where listings in the audit")
        self.assertEqual(wheres()[-4:], [("tech", "owner=sam department=finance"), ("tech", "Cost Center=4410"),
                                         ("tech", "owner=kim"), ("tech", "department=sales")])

        # The row with no device joins the device that reports its key once it connects.
        self.agent("dev4", "ws-99.corp")
        self.h.wait_device(self.b.addr, "dev4")
        self.assertEqual(where("owner=kim"), ["dev4"])

        # One field changed in the file: that field alone changes.
        with open(f, encoding="utf-8-sig") as fh:
            text = fh.read().replace("Zurich", "Geneva")
        rep = self.report(self.cli(["inventory", "import", self.path("moved.csv", text), "--match", "hostname",
                                    "--json"]))
        self.assertEqual((rep["changed"], rep["unchanged"]), (1, 2))
        self.assertEqual(rep["changes"][0]["fields"], {"Location": ["Zurich", "Geneva"]})

        # Audited with a summary, the dry run too.
        r = self.cli(["audit", "--json"])
        ents = [json.loads(ln) for ln in r.out.splitlines()]
        imports = [e for e in ents if e["action"] == "asset-import"]
        self.assertEqual([e["detail"]["dry_run"] for e in imports[:3]], ["yes", "yes", "no"])
        self.assertEqual(imports[2]["detail"]["new"], "3")
        self.assertEqual(imports[2]["detail"]["file"], "assets.csv")
        self.assertTrue(any(e["action"] == "asset-export" for e in ents))

    def test_match_by_serial_and_refusals(self):
        self.world()
        f = self.csv_file()
        # By serial (system_info.hardware_serial of the latest inventory).
        rep = self.report(self.cli(["inventory", "import", f, "--json"]))
        self.assertEqual(rep["match"], "serial")
        self.assertEqual(rep["matched"], 1)
        self.assertEqual(rep["changes"][0]["device"], "dev1")
        # Technicians may not import or export.
        for args in (["inventory", "import", f], ["inventory", "export"]):
            r = self.cli(args, who="tech")
            self.assertEqual(r.rc, 1, r)
            self.assertIn("permission denied", r.err)
        # Files that are refused before anything is sent.
        r = self.cli(["inventory", "import", self.path("latin1.csv", b"Asset Tag,Location\nLT-9,Z\xfcrich\n")])
        self.assertEqual(r.rc, 2, r)
        self.assertIn("line 2: byte 0xFC is not UTF-8", r.err)
        r = self.cli(["inventory", "import", self.path("dup.csv", "Asset Tag,Name,name\nLT-9,a,b\n")])
        self.assertEqual(r.rc, 2, r)
        self.assertIn("named twice", r.err)
        big = "Asset Tag,Name\n" + "".join("M-%d,h\n" % i for i in range(1000000))
        r = self.cli(["inventory", "import", self.path("million.csv", big)])
        self.assertEqual(r.rc, 2, r)
        self.assertIn("more than 200000 rows: split the file", r.err)
        # Refused by the store with the line: a tag twice; nothing imported.
        r = self.cli(["inventory", "import", self.path("twice.csv", "Asset Tag,Serial\nX-1,a\nx-1,b\n")])
        self.assertEqual(r.rc, 1, r)
        self.assertIn("lines 2 and 3: asset tag 'x-1' given twice", r.err)
        out = self.export()
        self.assertNotIn("X-1", out)
        self.assertNotIn("M-0", out)

    def test_wide_records_export_in_pages_that_fit_a_frame(self):
        """Two records of nearly the widest kind (75 custom fields of 2,048 bytes): each page
        stops before the line that would take it past its budget, so none outgrows a frame
        (a page of both was ~300 KiB, and the broker closed the link on the export)."""
        self.b = self.h.start_broker()
        names = ["Field %02d" % i for i in range(75)]
        rows = [["Asset Tag", "Name"] + names,
                ["W-1", "wide-1"] + ["a" * 2048] * 62 + [""] * 13,
                ["W-2", "wide-2"] + ["b" * 2048] * 75]
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerows(rows)
        r = self.cli(["inventory", "import", self.path("wide.csv", out.getvalue()), "--match", "hostname"])
        self.assertEqual(r.rc, 0, r)
        got = {row["Asset Tag"]: row for row in csv.DictReader(io.StringIO(self.export()))}
        self.assertEqual(sorted(got), ["W-1", "W-2"])
        self.assertEqual(got["W-1"]["Field 61"], "a" * 2048)
        self.assertEqual(got["W-1"]["Field 62"], "")
        self.assertEqual([got["W-2"][n] for n in names], ["b" * 2048] * 75)

    def test_an_export_page_asked_with_a_made_up_cursor_is_audited(self):
        """Pages after the first are not audited again, but only with the cursor the page
        before gave this connection: any other cursor is an export of its own."""
        self.world()
        self.assertEqual(self.cli(["inventory", "import", self.csv_file(), "--match", "hostname"]).rc, 0)
        c = WireClient(self.b.port, self.pki.ca, self.pki.cert("boss"), self.pki.key("boss"))
        self.addCleanup(c.close)
        c.handshake_hello(role=ROLE_ADMIN)
        c.rid = 0

        def exports():
            r = self.cli(["audit", "--json"])
            return sum(1 for ln in r.out.splitlines() if json.loads(ln)["action"] == "asset-export")
        before = exports()
        for cursor in (b"r", b"rA-1", b"r"):
            r = self.call(c, 28, pb_bytes(1, cursor))
            self.assertIn(29, r, r)  # a page, not an error
        self.wait_until(lambda: exports() - before == 3, "three exports in the audit")

    def test_broker_checks_what_a_console_sends(self):
        """A console that does not parse honestly: the broker checks sizes and text again."""
        self.b = self.h.start_broker()
        c = WireClient(self.b.port, self.pki.ca, self.pki.cert("boss"), self.pki.key("boss"))
        self.addCleanup(c.close)
        c.handshake_hello(role=ROLE_ADMIN)
        c.rid = 0

        def first(rows_total, nbytes, columns=(b"Asset Tag", b"Name"), rows=()):
            body = b"".join(pb_bytes(2, col) for col in columns)
            body += pb_varint(3, rows_total) + pb_varint(4, nbytes) + pb_bytes(5, b"hostname")
            for line, cells in rows:
                body += pb_bytes(8, pb_varint(1, line) + b"".join(pb_bytes(2, x) for x in cells))
            return self.call(c, 27, body)

        def error(r):
            e = pb_parse(r[2][0])
            return e[1][0], e[2][0].decode()
        self.assertEqual(error(first(1000000, 10))[0], ERR_TOO_BIG)
        self.assertEqual(error(first(10, 1 << 40))[0], ERR_TOO_BIG)
        self.assertEqual(error(first(1, 5, columns=(b"Name", b"name")))[1], "a column is named twice")
        self.assertIn("no 'Asset Tag' column", error(first(1, 5, columns=(b"Name",)))[1])
        code, msg = error(first(1, 5, rows=[(7, [b"A-1", b"\xff\xfe"])]))
        self.assertEqual((code, msg), (ERR_INVALID, "line 7: a cell is not UTF-8 text of at most 2048 bytes"))
        self.assertEqual(error(first(1, 5, rows=[(2, [b"A-1", b"a", b"extra"])]))[1],
                         "a row does not have the header's width")
        self.assertEqual(error(first(1, 2, rows=[(2, [b"A-1", b"abc"])]))[1], "more bytes than the import declared")
        r = first(1, 10, rows=[(2, [b"A-1", b"a\x00b"])])
        self.assertEqual(error(r)[0], ERR_INVALID)
        # Parts of an import that is not open.
        r = self.call(c, 27, pb_varint(1, 999) + pb_bytes(8, pb_varint(1, 2) + pb_bytes(2, b"x") + pb_bytes(2, b"y")))
        self.assertIn("no such import open", error(r)[1])
        # An honest one still goes through on the same connection.
        r = first(1, 7, rows=[(2, [b"A-1", b"host"])])
        self.assertIn(28, r, error(r) if 2 in r else r)
        rep = json.loads(pb_parse(r[28][0])[3][0])
        self.assertEqual(rep["new"], 1)
        # Every refusal is in the audit with its reason, not only the imports that ran.
        def refused():
            r = self.cli(["audit", "--json"])
            return [json.loads(ln)["detail"].get("why", "") for ln in r.out.splitlines()
                    if json.loads(ln)["action"] == "asset-import-refused"]
        self.wait_until(lambda: len(refused()) >= 8, "eight refused imports in the audit")
        whys = refused()
        self.assertIn("a column is named twice", whys)
        self.assertIn("more bytes than the import declared", whys)
        self.assertTrue(any(w.startswith("an import is at most 200000 rows") for w in whys), whys)


if __name__ == "__main__":
    unittest.main()
