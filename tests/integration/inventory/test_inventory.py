"""Device inventory, pushed by the agent and kept by the broker: it arrives after the agent
connects, an interval with nothing changed sends nothing but the hashes, and technicians
read the latest tables, one table, and the versions, each read audited. Hostile pushes (a
table that is not what its hash says, oversized parts, parts of no offer) are refused and
the device's last good inventory stays. The real programs on 127.0.0.1.

Run by ctest as `integration.inventory` (TT_BIN_DIR names the build directory)."""

import hashlib
import json
import os
import re
import unittest

from harness import (K_REQUEST, K_RESPONSE, ROLE_AGENT, Pki, TetherTestCase, WireClient, pb_bytes, pb_parse,
                     pb_varint)
from test_session import SessionWorld

ERR_INVALID, ERR_TOO_BIG = 14, 4


def zstd_frame(data):
    """A zstd frame of data with its content size, stored raw (no compression needed to make
    one: a single raw block), so the test needs no zstd module."""
    assert len(data) < (1 << 21)
    magic = (0xFD2FB528).to_bytes(4, "little")
    # Frame header: single segment, 4-byte content size (FCS_flag=2), no checksum, no dict.
    fhd = bytes([(2 << 6) | (1 << 5)]) + len(data).to_bytes(4, "little")
    block = ((len(data) << 3) | (0 << 1) | 1).to_bytes(3, "little")  # last block, raw
    return magic + fhd + block + data


class InventoryTest(TetherTestCase):
    maxDiff = None

    @classmethod
    def setUpClass(cls):
        cls.pki = Pki()
        cls.pki.issue("technician", "tech")
        cls.pki.issue("admin", "boss")
        cls.pki.issue("agent", "dev1")
        cls.pki.issue("agent", "dev2")  # a device of the test's own making, on the wire

    def tech(self, args, who="tech"):
        return self.h.console(self.b.addr, args, cert=self.pki.cert(who), key=self.pki.key(who))

    def world(self, interval="1h"):
        self.b = self.h.start_broker()
        self.a = self.h.start_agent(self.b.addr, "dev1", "dev1.example", extra=["--inventory-interval", interval])
        return self.b, self.a

    def test_arrives_is_read_and_unchanged_sends_no_table(self):
        b, a = self.world(interval="1s")
        a.wait_for(r'msg="sent" version=\d+ tables=(\d+)')
        m = b.wait_for(r'msg="inventory stored" device=dev1 version=(\d+) tables=(\d+)')
        version, tables = int(m.group(1)), int(m.group(2))
        self.assertGreaterEqual(tables, 15)
        # A later interval with nothing changed sends the hashes alone: the agent says
        # "unchanged" and the broker stores nothing (what does change between intervals on
        # a live machine, a socket opened, comes as that table alone).
        m = a.wait_for(r'msg="unchanged" tables=%d .* offer_bytes=(\d+)' % tables, timeout=60)
        self.assertLess(int(m.group(1)), 80)  # the digest alone
        for line in b.log().splitlines():
            if 'msg="inventory stored"' in line and "version=%d " % version not in line:
                self.assertLess(int(line.split("tables=")[1].split()[0]), tables, line)
        # The index, as a technician sees it.
        r = self.tech(["inventory", "dev1"])
        self.assertEqual(r.rc, 0, r)
        self.assertRegex(r.out, r"^dev1: inventory version \d+, received ")
        for name in ("deb_packages", "memory_info", "mounts", "os_version"):
            self.assertIn(name, r.out)
        # One table, readable: this machine's memory.
        with open("/proc/meminfo") as f:
            total_kb = int(next(ln for ln in f if ln.startswith("MemTotal:")).split()[1])
        r = self.tech(["inventory", "dev1", "--table", "memory_info"])
        self.assertEqual(r.rc, 0, r)
        self.assertIn(str(total_kb * 1024), r.out)
        # All of it as JSON, every table as of one version.
        r = self.tech(["inventory", "dev1", "--json"])
        self.assertEqual(r.rc, 0, r)
        doc = json.loads(r.out)
        self.assertEqual(doc["device"], "dev1")
        pk = doc["tables"]["deb_packages"]
        names = [row[pk["columns"].index("name")] for row in pk["rows"]]
        self.assertIn("bash", names)
        self.assertEqual(doc["tables"]["kernel_info"]["rows"][0][doc["tables"]["kernel_info"]["columns"].index("version")],
                         os.uname().release)
        # History: the first version names every table it brought.
        r = self.tech(["inventory", "history", "dev1", "--json"])
        self.assertEqual(r.rc, 0, r)
        versions = [json.loads(ln) for ln in r.out.splitlines()]
        self.assertEqual(versions[-1]["version"], version)
        self.assertIn("deb_packages", versions[-1]["changed"])
        # An older version's table is still there.
        r = self.tech(["inventory", "dev1", "--table", "os_version", "--at", str(version), "--json"])
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(json.loads(r.out)["tables"]["os_version"]["version"], version)
        # Every read is in the audit.
        r = self.h.console(b.addr, ["audit", "--json"], cert=self.pki.cert("boss"), key=self.pki.key("boss"))
        reads = [json.loads(ln) for ln in r.out.splitlines() if '"inventory-read"' in ln]
        self.assertEqual({e["actor"] for e in reads}, {"tech"})
        tables = [e["detail"]["table"] for e in reads]
        # index; memory_info; index + each table for --json; history; os_version at a version
        self.assertEqual(tables[:2], ["(index)", "memory_info"])
        self.assertIn("deb_packages", tables)
        self.assertEqual(tables[-3:], ["(history)", "(index)", "os_version"])
        self.assertFalse("logged_in_users" in doc["tables"])  # who uses the machine: diag only

    # -- a hostile device ----------------------------------------------------------------------

    def fake_agent(self):
        c = WireClient(self.b.port, self.pki.ca, self.pki.cert("dev2"), self.pki.key("dev2"))
        self.addCleanup(c.close)
        c.handshake_hello(role=ROLE_AGENT)
        c.rid = 0
        return c

    def call(self, c, field, body):
        c.rid += 1
        c.send_frame(K_REQUEST, pb_varint(1, c.rid) + pb_bytes(field, body))
        while True:
            kind, _, _, b = c.read_control(timeout=10, answer_pings=True)
            if kind == K_RESPONSE and pb_parse(b)[1][0] == c.rid:
                return pb_parse(b)

    def offer(self, c, tables):
        body = pb_varint(1, 1000)
        for name, sha in tables:
            body += pb_bytes(2, pb_bytes(1, name.encode()) + pb_bytes(2, sha))
        return self.call(c, 21, body)

    def put(self, c, offer, name, data, z=None, offset=0, total=None):
        z = zstd_frame(data) if z is None else z
        body = (pb_varint(1, offer) + pb_bytes(2, name.encode()) + pb_varint(3, len(data)) + pb_varint(4, offset)
                + pb_varint(5, total or len(z)) + pb_bytes(6, z))
        return self.call(c, 22, body)

    def error_of(self, r):
        e = pb_parse(r[2][0])
        return e[1][0], e[2][0].decode()

    def test_hostile_pushes_are_refused_and_the_last_good_stays(self):
        self.world()
        c = self.fake_agent()
        good = json.dumps({"columns": ["name", "version"], "rows": [["bash", "5.2"]]}, separators=(",", ":")).encode()
        r = self.offer(c, [("deb_packages", hashlib.sha256(good).digest())])
        want = pb_parse(r[21][0])
        self.assertEqual(want[2], [b"deb_packages"])
        r = self.put(c, want[1][0], "deb_packages", good)
        self.assertEqual(pb_parse(r[22][0]).get(1), [1], r)  # complete
        # A table that is not what its hash says: refused, nothing stored.
        bad = good.replace(b"5.2", b"6.6")
        r = self.offer(c, [("deb_packages", hashlib.sha256(good + b" ").digest())])
        want = pb_parse(r[21][0])
        r = self.put(c, want[1][0], "deb_packages", bad)
        self.assertEqual(self.error_of(r), (ERR_INVALID, "deb_packages: its sha256 is not the one offered"))
        # Not a table (rows of numbers), though its hash is right.
        notab = b'{"columns":["name"],"rows":[[1]]}'
        r = self.offer(c, [("deb_packages", hashlib.sha256(notab).digest())])
        r = self.put(c, pb_parse(r[21][0])[1][0], "deb_packages", notab)
        self.assertEqual(self.error_of(r)[1], "deb_packages: not a table (columns and rows of strings)")
        # Names, sizes and offers the broker never asked for.
        r = self.offer(c, [("Deb Packages", b"x" * 32)])
        self.assertEqual(self.error_of(r)[0], ERR_INVALID)
        r = self.offer(c, [("t%d" % i, b"x" * 32) for i in range(65)])
        self.assertEqual(self.error_of(r)[0], ERR_TOO_BIG)
        r = self.put(c, 999, "deb_packages", good)
        self.assertIn("no such inventory offer", self.error_of(r)[1])
        # Oversized parts and tables; each refusal closes the offer, so a new one each time.
        def fresh():
            return pb_parse(self.offer(c, [("mounts", hashlib.sha256(good).digest())])[21][0])[1][0]
        r = self.put(c, fresh(), "mounts", b"x" * 10, z=b"y" * 200 * 1024)
        self.assertEqual(self.error_of(r)[0], ERR_TOO_BIG)
        offer = fresh()
        r = self.put(c, offer, "mounts", b"x" * (5 << 20), z=b"y")
        self.assertEqual(self.error_of(r), (ERR_TOO_BIG, "a table's JSON is at most 4 MiB"))
        r = self.put(c, offer, "mounts", good)
        self.assertIn("no such inventory offer", self.error_of(r)[1])
        # The last good inventory is what a technician reads.
        r = self.tech(["inventory", "dev2", "--table", "deb_packages", "--json"])
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(json.loads(r.out)["tables"]["deb_packages"]["rows"], [["bash", "5.2"]])
        self.assertEqual(self.b.count(r'msg="inventory stored" device=dev2'), 1)
        self.assertGreaterEqual(self.b.count(r'msg="inventory refused" device=dev2'), 3)

    def push(self, c, tables):
        """Offer {name: body} and send what the broker asks for; the version made (0: none)."""
        r = self.offer(c, [(n, hashlib.sha256(b).digest()) for n, b in tables.items()])
        want = pb_parse(r[21][0])
        version = want.get(3, [0])[0]
        for name in want.get(2, []):
            r = self.put(c, want[1][0], name.decode(), tables[name.decode()])
            done = pb_parse(r[22][0])
            if done.get(1) == [1]:
                version = done[2][0]
        return version

    def test_diff_shows_rows_added_and_removed(self):
        self.world()
        c = self.fake_agent()

        def pk(*rows):
            return json.dumps({"columns": ["name", "version"], "rows": sorted(rows)}, separators=(",", ":")).encode()
        os_v = json.dumps({"columns": ["name"], "rows": [["Debian"]]}, separators=(",", ":")).encode()
        v1 = self.push(c, {"deb_packages": pk(["bash", "5.2"], ["openssl", "3.0.1"]), "os_version": os_v})
        v2 = self.push(c, {"deb_packages": pk(["bash", "5.2"], ["openssl", "3.0.2"]), "os_version": os_v})
        self.assertGreater(v2, v1)
        self.assertEqual(self.push(c, {"deb_packages": pk(["bash", "5.2"], ["openssl", "3.0.2"]),
                                       "os_version": os_v}), 0)  # unchanged: no version
        # What an agent sends first: the digest alone. The same: unchanged; another: send_tables.
        cur = {"deb_packages": pk(["bash", "5.2"], ["openssl", "3.0.2"]), "os_version": os_v}
        digest = hashlib.sha256(b"".join(n.encode() + b"\0" + hashlib.sha256(cur[n]).digest()
                                         for n in sorted(cur))).digest()
        want = pb_parse(self.call(c, 21, pb_varint(1, 1000) + pb_bytes(3, digest))[21][0])
        self.assertEqual((want.get(2), want.get(4)), (None, None), want)
        want = pb_parse(self.call(c, 21, pb_varint(1, 1000) + pb_bytes(3, b"\1" * 32))[21][0])
        self.assertEqual(want.get(4), [1], want)
        r = self.tech(["inventory", "diff", "dev2"])
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(r.out, "dev2: inventory version %d -> %d\ndeb_packages: 1 added, 1 removed\n"
                                "    name     version\n  - openssl  3.0.1\n  + openssl  3.0.2\n" % (v1, v2))
        r = self.tech(["inventory", "diff", "dev2", str(v1), str(v2), "--json"])
        self.assertEqual(r.rc, 0, r)
        d = json.loads(r.out)
        self.assertEqual(d["tables"], {"deb_packages": {"columns": ["name", "version"], "added": [["openssl", "3.0.2"]],
                                                         "removed": [["openssl", "3.0.1"]]}})
        # From before the first version: everything is added.
        r = self.tech(["inventory", "diff", "dev2", "--since", "2000-01-01T00:00:00Z", "--json"])
        self.assertEqual(r.rc, 0, r)
        d = json.loads(r.out)
        self.assertEqual(d["from"], 0)
        self.assertEqual(sorted(d["tables"]), ["deb_packages", "os_version"])
        self.assertEqual(d["tables"]["deb_packages"]["removed"], [])
        # A table the device stopped reporting: its rows are removed.
        v3 = self.push(c, {"deb_packages": pk(["bash", "5.2"], ["openssl", "3.0.2"])})
        r = self.tech(["inventory", "diff", "dev2", "--json"])
        d = json.loads(r.out)
        self.assertEqual((d["from"], d["to"]), (v2, v3))
        self.assertEqual(d["tables"], {"os_version": {"columns": ["name"], "added": [], "removed": [["Debian"]]}})
        r = self.tech(["inventory", "diff", "dev2", str(v2), "1"])
        self.assertEqual(r.rc, 1, r)
        self.assertIn("is after version", r.err)
        r = self.tech(["inventory", "diff", "dev2", "3"])
        self.assertEqual(r.rc, 2, r)

    def test_big_tables_move_in_parts_and_limits_hold(self):
        self.world()
        c = self.fake_agent()
        # A table whose JSON does not compress below one part: hex noise, ~900 KiB.
        rows = sorted([["pkg%05d" % i, os.urandom(48).hex()] for i in range(8000)])
        big = json.dumps({"columns": ["name", "version"], "rows": rows}, separators=(",", ":")).encode()
        z = zstd_frame(big)
        self.assertGreater(len(z), 2 * 192 * 1024)
        r = self.offer(c, [("deb_packages", hashlib.sha256(big).digest())])
        offer = pb_parse(r[21][0])[1][0]
        step = 192 * 1024
        for off in range(0, len(z), step):
            r = self.put(c, offer, "deb_packages", big, z=z[off:off + step], offset=off, total=len(z))
            self.assertNotIn(2, r, r)
        self.assertEqual(pb_parse(r[22][0]).get(1), [1], r)
        # Read back through the broker in parts, as of the version that wrote it.
        r = self.tech(["inventory", "dev2", "--table", "deb_packages", "--json"])
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(json.loads(r.out)["tables"]["deb_packages"]["rows"], rows)
        r = self.tech(["inventory", "dev2", "--table", "deb_packages"])
        self.assertEqual(r.rc, 0, r)
        self.assertIn("8000 rows", r.out)
        # One part over 192 KiB; JSON over what an offer may declare; a column that is not a
        # column name (it would be printed as a header).
        r = self.offer(c, [("mounts", hashlib.sha256(big).digest())])
        offer = pb_parse(r[21][0])[1][0]
        r = self.put(c, offer, "mounts", big, z=z[:step + 1], total=len(z))
        self.assertEqual(self.error_of(r), (ERR_TOO_BIG, "a part is 1 byte to 192 KiB"))
        names = ["t%d" % i for i in range(5)]
        r = self.offer(c, [(n, b"x" * 32) for n in names])
        offer = pb_parse(r[21][0])[1][0]
        for n in names[:4]:
            r = self.put(c, offer, n, b"x" * (4 << 20), z=b"y" * 100, total=4 << 20)
            self.assertNotIn(2, r, r)
        r = self.put(c, offer, names[4], b"x" * (4 << 20), z=b"y" * 100, total=4 << 20)
        self.assertEqual(self.error_of(r), (ERR_TOO_BIG, "an inventory is at most 16 MiB of JSON"))
        evil = json.dumps({"columns": ["name\x1b]52;c;cm0gLXJmIH4K\x07"], "rows": [["x"]]}).encode()
        r = self.offer(c, [("os_version", hashlib.sha256(evil).digest())])
        r = self.put(c, pb_parse(r[21][0])[1][0], "os_version", evil)
        self.assertEqual(self.error_of(r)[1], "os_version: not a table (columns and rows of strings)")

    def test_a_connection_that_goes_mid_offer_leaves_the_broker_whole(self):
        """The offer's store request outlives the connection (a second Hello closes it): its
        state is freed once, by whoever holds it last. The sanitizers watch the broker."""
        from harness import K_HELLO, frame, hello_body
        self.world()
        for _ in range(20):
            c = WireClient(self.b.port, self.pki.ca, self.pki.cert("dev2"), self.pki.key("dev2"))
            c.handshake_hello(role=ROLE_AGENT)
            body = pb_varint(1, 1000) + b"".join(pb_bytes(2, pb_bytes(1, b"t%d" % i) + pb_bytes(2, os.urandom(32)))
                                                 for i in range(3))
            c.send(frame(K_REQUEST, pb_varint(1, 1) + pb_bytes(21, body)) + frame(K_HELLO, hello_body(ROLE_AGENT)))
            try:
                c.read_until_closed(timeout=5)
            except Exception:
                pass
            c.close()
        self.assertTrue(self.b.alive())
        r = self.tech(["inventory", "dev1"])
        self.assertEqual(r.rc, 0, r)

    def test_an_enrolled_agent_pushes_and_a_changed_package_shows_in_diff(self):
        """The whole path a fleet takes: enroll with a token, connect, push; a package upgraded
        on the machine is one changed table at the next interval, and diff names it. The
        agent reads a package database of the test's making (inventory.root)."""
        b = self.b = self.h.start_broker()
        root = os.path.join(self.h.dir, "host")
        status = os.path.join(root, "var", "lib", "dpkg", "status")
        os.makedirs(os.path.dirname(status))

        def dpkg(openssl):
            with open(status + ".new", "w") as f:
                for name, ver in (("bash", "5.2.15-2+b8"), ("openssl", openssl)):
                    f.write("Package: %s\nStatus: install ok installed\nVersion: %s\nArchitecture: amd64\n\n"
                            % (name, ver))
            os.replace(status + ".new", status)
        dpkg("3.0.17-1~deb12u2")
        admin = dict(cert=self.pki.cert("boss"), key=self.pki.key("boss"))
        r = self.h.console(b.addr, ["token", "new", "--note", "inventory test"], **admin)
        self.assertEqual(r.rc, 0, r)
        token = r.out.splitlines()[0].strip()
        r = self.h.run("tether-certs", ["fingerprint", "--dir", self.pki.main])
        pin = r.out.strip()
        state = os.path.join(self.h.dir, "agent-enrolled")
        r = self.h.run("tether-agent", ["enroll", "--broker", b.addr, "--token", token, "--ca-pin", pin,
                                        "--state-dir", state, "--hostname", "laptop-7.example"])
        self.assertEqual(r.rc, 0, r)
        dev = re.search(r"enrolled as (\S+)", r.out).group(1)
        a = self.h.spawn("agent-enrolled", "tether-agent",
                         ["run", "--broker", b.addr, "--state-dir", state, "--inventory-root", root,
                          "--inventory-interval", "1s", "--consent-socket", os.path.join(self.h.dir, "e.sock")])
        a.wait_for(r'msg="sent"')
        r = self.tech(["inventory", dev, "--table", "deb_packages", "--json"])
        self.assertEqual(r.rc, 0, r)
        t = json.loads(r.out)["tables"]["deb_packages"]
        self.assertEqual([(row[0], row[1]) for row in t["rows"]],
                         [("bash", "5.2.15-2+b8"), ("openssl", "3.0.17-1~deb12u2")])
        a.wait_for(r'msg="unchanged"')
        mark = b.mark()
        dpkg("3.0.19-1~deb12u2")
        b.wait_for(r'msg="inventory stored" device=%s version=\d+ tables=1 ' % re.escape(dev), after=mark, timeout=30)
        r = self.tech(["inventory", "diff", dev])
        self.assertEqual(r.rc, 0, r)
        lines = r.out.splitlines()
        self.assertEqual(lines[1], "deb_packages: 1 added, 1 removed")
        self.assertEqual(lines[2].split()[:2], ["name", "version"], r.out)  # the columns the rows fill
        self.assertTrue(lines[3].startswith("  - openssl  3.0.17-1~deb12u2"), r.out)
        self.assertTrue(lines[4].startswith("  + openssl  3.0.19-1~deb12u2"), r.out)
        r = self.tech(["inventory", "history", dev, "--json"])
        versions = [json.loads(ln) for ln in r.out.splitlines()]
        self.assertEqual(len(versions), 2, versions)
        self.assertEqual(versions[0]["changed"], "deb_packages")

    def test_unknown_device_and_table(self):
        self.world()
        r = self.tech(["inventory", "nosuch"])
        self.assertEqual(r.rc, 1, r)
        self.assertEqual(r.err.strip(), "tether: no inventory from nosuch yet")
        self.a.wait_for(r'msg="sent"')
        r = self.tech(["inventory", "dev1", "--table", "nosuch_table"])
        self.assertEqual(r.rc, 1, r)
        self.assertEqual(r.err.strip(), "tether: dev1 has no table nosuch_table")



class InventoryAfterShellTest(SessionWorld, TetherTestCase):
    """What a technician's command changed is in the inventory seconds after it ends, not at
    the next interval: the agent collects again after every shell or exec."""

    @classmethod
    def setUpClass(cls):
        cls.pki = Pki()
        cls.pki.issue("technician", "tech")
        cls.pki.issue("agent", "dev1")

    def test_an_exec_that_upgrades_a_package_shows_in_diff_at_once(self):
        root = os.path.join(self.h.dir, "host")
        status = os.path.join(root, "var", "lib", "dpkg", "status")
        os.makedirs(os.path.dirname(status))
        with open(status, "w") as f:
            for name, ver in (("bash", "5.2.15-2+b8"), ("openssl", "3.0.17-1~deb12u2")):
                f.write("Package: %s\nStatus: install ok installed\nVersion: %s\nArchitecture: amd64\n\n"
                        % (name, ver))
        b, a = self.world(policy="unattended",
                          agent_extra=["--inventory-root", root, "--inventory-interval", "1h"])
        a.wait_for(r'msg="sent"')
        tid = self.new_ticket()
        mark = b.mark()
        # The "upgrade": the technician's command rewrites the package database it reads.
        r = self.tech(["exec", "dev1", "--ticket", tid, "--", "sed", "-i", "s/3.0.17-1~deb12u2/3.0.19-1~deb12u2/",
                       status])
        self.assertEqual(r.rc, 0, r)
        b.wait_for(r'msg="inventory stored" device=dev1 version=\d+ tables=1 ', after=mark, timeout=30)
        r = self.tech(["inventory", "diff", "dev1", "--table", "deb_packages"])
        self.assertEqual(r.rc, 0, r)
        lines = r.out.splitlines()
        self.assertEqual(lines[1], "deb_packages: 1 added, 1 removed", r.out)
        self.assertEqual(lines[2].split()[:2], ["name", "version"], r.out)  # the columns the rows fill
        self.assertTrue(lines[3].startswith("  - openssl  3.0.17-1~deb12u2"), r.out)
        self.assertTrue(lines[4].startswith("  + openssl  3.0.19-1~deb12u2"), r.out)
        # A command that changes nothing adds no version: the agent's offer is the digest alone.
        mark = a.mark()
        r = self.tech(["exec", "dev1", "--ticket", tid, "--", "true"])
        self.assertEqual(r.rc, 0, r)
        a.wait_for(r'msg="unchanged"', after=mark, timeout=30)


if __name__ == "__main__":
    unittest.main()
