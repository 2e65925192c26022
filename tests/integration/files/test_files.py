"""File transfer end to end: the real tether console pushing and pulling through the real
broker to the real agent, under tickets and consent, on 127.0.0.1. Sizes at the chunk edges
and 64 MiB, a tree of 2,000 small files, resume after the console is killed and after the
broker restarts, confinement on the device, --force, consent refused, and the records."""
import hashlib
import json
import os
import signal
import stat
import subprocess
import time
import unittest

from harness import Harness, TetherTestCase, Pki
from test_session import SessionWorld

CHUNK = 1 << 20


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def random_file(path, size, seed=0):
    # os.urandom is fast enough; seed unused but kept for distinct names.
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 4 << 20)
            f.write(os.urandom(n))
            left -= n
    return sha256_file(path)


class FilesTest(SessionWorld, TetherTestCase):
    maxDiff = None

    @classmethod
    def setUpClass(cls):
        cls.pki = Pki()
        for role, name in (("technician", "tech"), ("admin", "boss"), ("agent", "dev1")):
            cls.pki.issue(role, name)

    def files_world(self, policy="unattended", extra=(), broker_extra=(), port=0):
        """A broker and dev1 whose file roots are <dir>/root (read-write) and <dir>/ro."""
        self.root = os.path.join(self.h.dir, "root")
        self.ro = os.path.join(self.h.dir, "ro")
        self.local = os.path.join(self.h.dir, "local")
        for d in (self.root, self.ro, self.local):
            os.makedirs(d, exist_ok=True)
        self.world(policy=policy, broker_extra=broker_extra,
                   agent_extra=["--files-roots", self.root, "--files-read-only", self.ro] + list(extra))
        self.tid = self.new_ticket()

    def files(self, args, timeout=120, **kw):
        return self.tech(args, timeout=timeout, **kw)

    def summary(self, r):
        self.assertTrue(r.out.strip(), r)
        return json.loads(r.out)

    def wait_records(self, action, n, timeout=30):
        """The audit's entries of action once there are n of them (they are written behind)."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.audit_files(action)
            if len(got) >= n or time.monotonic() > deadline:
                self.assertEqual(len(got), n, got)
                return got
            time.sleep(0.05)

    def audit_files(self, action):
        return [e for e in self.audit() if e["action"] == action]

    # -- push and pull ------------------------------------------------------------------

    def test_push_pull_sizes(self):
        """Random files at the chunk edges and 64 MiB go there and back identical; the
        summary, the audit and the ticket carry each file's sha256."""
        self.files_world()
        sizes = [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 64 * CHUNK]
        want = {}
        for n in sizes:
            src = os.path.join(self.local, "f%d" % n)
            want[n] = random_file(src, n)
            r = self.files(["push", "dev1", "--ticket", self.tid, "--json", src, os.path.join(self.root, "f%d" % n)])
            self.assertEqual(r.rc, 0, r)
            s = self.summary(r)
            self.assertEqual(s["files_ok"], 1, s)
            self.assertEqual(s["files"][0]["sha256"], want[n])
            self.assertEqual(sha256_file(os.path.join(self.root, "f%d" % n)), want[n])
        back = os.path.join(self.local, "back")
        os.makedirs(back)
        r = self.files(["pull", "dev1", "--ticket", self.tid, "--json"]
                       + [os.path.join(self.root, "f%d" % n) for n in sizes] + [back + "/"])
        self.assertEqual(r.rc, 0, r)
        s = self.summary(r)
        self.assertEqual(s["files_ok"], len(sizes), s)
        for n in sizes:
            self.assertEqual(sha256_file(os.path.join(back, "f%d" % n)), want[n], n)
        # Mode and mtime are kept.
        st1 = os.stat(os.path.join(self.local, "f1"))
        st2 = os.stat(os.path.join(back, "f1"))
        self.assertEqual(st1.st_mtime_ns, st2.st_mtime_ns)
        self.assertEqual(stat.S_IMODE(st1.st_mode), stat.S_IMODE(st2.st_mode))
        # One audit entry per file each way, with the device's sha256.
        pushes = self.wait_records("file-push", len(sizes))
        pulls = self.wait_records("file-pull", len(sizes))
        for entries in (pushes, pulls):
            got = {}
            for e in entries:
                d = e["detail"]
                got[d["path"]] = d["sha256"]
                self.assertEqual(d["ticket"], self.tid)
                self.assertTrue(d["session"].startswith("S-"), d)
            for n in sizes:
                self.assertEqual(got[os.path.join(self.root, "f%d" % n)], want[n])
        kinds = self.timeline(self.tid)
        self.assertEqual(kinds.count("file-pushed"), len(sizes), kinds)
        self.assertEqual(kinds.count("file-pulled"), len(sizes), kinds)

    def test_cp_and_ls(self):
        """scp-style cp both ways with the ticket from TETHER_TICKET, and ls."""
        self.files_world()
        src = os.path.join(self.local, "a.txt")
        with open(src, "w") as f:
            f.write("hello\n")
        self.h.env["TETHER_TICKET"] = self.tid
        self.addCleanup(self.h.env.pop, "TETHER_TICKET", None)
        r = self.files(["cp", src, "dev1:" + os.path.join(self.root, "a.txt")])
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(r.out, "")  # off a terminal: nothing but errors
        os.makedirs(os.path.join(self.local, "b"))
        r = self.files(["cp", "dev1:" + os.path.join(self.root, "a.txt"), os.path.join(self.local, "b") + "/"])
        self.assertEqual(r.rc, 0, r)
        with open(os.path.join(self.local, "b", "a.txt")) as f:
            self.assertEqual(f.read(), "hello\n")
        r = self.files(["ls", "dev1", "--ticket", self.tid, "--json", self.root])
        self.assertEqual(r.rc, 0, r)
        names = {e["path"]: e for e in json.loads(r.out)}
        self.assertIn("a.txt", names)
        self.assertEqual(names["a.txt"]["size"], 6)
        r = self.files(["ls", "dev1", "--ticket", self.tid, self.root])
        self.assertEqual(r.rc, 0, r)
        self.assertIn("a.txt", r.out)

    def test_tree_of_small_files(self):
        """push -r of 2,000 small files in nested directories, then pull -r back: identical."""
        self.files_world()
        tree = os.path.join(self.local, "tree")
        want = {}
        for i in range(2000):
            d = os.path.join(tree, "d%02d" % (i % 40), "e%d" % (i % 3))
            os.makedirs(d, exist_ok=True)
            p = os.path.join(d, "f%04d.txt" % i)
            with open(p, "wb") as f:
                f.write(os.urandom(i % 700))
            want[os.path.relpath(p, tree)] = sha256_file(p)
        dest = os.path.join(self.root, "tree")
        t0 = time.monotonic()
        r = self.files(["push", "dev1", "--ticket", self.tid, "-r", "--json", tree + "/", dest + "/"], timeout=300)
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(self.summary(r)["files_ok"], 2000)
        for rel, h in want.items():
            self.assertEqual(sha256_file(os.path.join(dest, rel)), h, rel)
        back = os.path.join(self.local, "back")
        os.makedirs(back)
        r = self.files(["pull", "dev1", "--ticket", self.tid, "-r", "--json", dest, back + "/"], timeout=300)
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(self.summary(r)["files_ok"], 2000)
        got = os.path.join(back, "tree")
        for rel, h in want.items():
            self.assertEqual(sha256_file(os.path.join(got, rel)), h, rel)
        print("2000 files pushed and pulled in %.1fs" % (time.monotonic() - t0))

    def test_overwrite_needs_force(self):
        self.files_world()
        src = os.path.join(self.local, "new.ini")
        with open(src, "w") as f:
            f.write("new\n")
        dst = os.path.join(self.root, "settings.ini")
        with open(dst, "w") as f:
            f.write("old\n")
        r = self.files(["push", "dev1", "--ticket", self.tid, src, dst])
        self.assertEqual(r.rc, 1, r)
        self.assertIn("--force", r.err)
        with open(dst) as f:
            self.assertEqual(f.read(), "old\n")
        r = self.files(["push", "dev1", "--ticket", self.tid, "--force", src, dst])
        self.assertEqual(r.rc, 0, r)
        with open(dst) as f:
            self.assertEqual(f.read(), "new\n")
        # Pulling over a local file is the same.
        local = os.path.join(self.local, "settings.ini")
        with open(local, "w") as f:
            f.write("mine\n")
        r = self.files(["pull", "dev1", "--ticket", self.tid, dst, local])
        self.assertEqual(r.rc, 1, r)
        with open(local) as f:
            self.assertEqual(f.read(), "mine\n")

    # -- resume -------------------------------------------------------------------------

    def _part(self, target):
        d, n = os.path.split(target)
        return os.path.join(d, "." + n + ".tether-part")

    def _kill_midway(self, argv, part, size, kill):
        p = self.spawn_bg(argv)
        def far_enough():
            try:
                return os.path.getsize(part) >= size // 4
            except FileNotFoundError:
                return p.poll() is not None
        deadline = time.monotonic() + 120
        while not far_enough():
            self.assertLess(time.monotonic(), deadline, "a quarter of the file never arrived")
            time.sleep(0.002)
        kill(p)
        p.wait(timeout=30)

    def test_resume_after_console_killed(self):
        """SIGKILL the console during a pull: the same command again resumes (bytes resumed
        > 0) and the result is identical."""
        self.files_world()
        size = 256 * CHUNK
        src = os.path.join(self.root, "big.bin")
        want = random_file(src, size)
        dst = os.path.join(self.local, "big.bin")
        argv = ["pull", "dev1", "--ticket", self.tid, "--json", src, dst]
        self._kill_midway(argv, self._part(dst), size, lambda p: p.send_signal(signal.SIGKILL))
        self.assertFalse(os.path.exists(dst))
        self.assertTrue(os.path.exists(self._part(dst)))
        r = self.files(argv)
        self.assertEqual(r.rc, 0, r)
        s = self.summary(r)
        self.assertGreater(s["resumed_bytes"], 0, s)
        self.assertEqual(sha256_file(dst), want)
        self.assertFalse(os.path.exists(self._part(dst)))

    def test_resume_push_after_broker_restart(self):
        """The broker is killed during a push: once it is back, the same push resumes on the
        device's partial file."""
        self.files_world()
        port = self.b.port
        size = 256 * CHUNK
        src = os.path.join(self.local, "big.bin")
        want = random_file(src, size)
        dst = os.path.join(self.root, "big.bin")
        argv = ["push", "dev1", "--ticket", self.tid, "--json", src, dst]
        def kill_broker(p):
            self.b.expect_clean_exit = False
            self.b.kill()
        self._kill_midway(argv, self._part(dst), size, kill_broker)
        self.b = self.h.start_broker(port=port, name="broker2")
        self.h.wait_device(self.b.addr, "dev1")
        r = self.files(argv)
        self.assertEqual(r.rc, 0, r)
        s = self.summary(r)
        self.assertGreater(s["resumed_bytes"], 0, s)
        self.assertEqual(sha256_file(dst), want)

    # -- confinement --------------------------------------------------------------------

    def test_confinement(self):
        """Escapes are refused with a clear error and nothing is written outside a root."""
        self.files_world()
        outside = os.path.join(self.h.dir, "outside")
        os.makedirs(outside)
        with open(os.path.join(outside, "secret"), "w") as f:
            f.write("secret\n")
        os.symlink(outside, os.path.join(self.root, "out-abs"))                       # absolute
        os.symlink("../outside", os.path.join(self.root, "out-rel"))                  # relative, escapes
        os.symlink("/etc/passwd", os.path.join(self.root, "passwd"))
        os.mkfifo(os.path.join(self.root, "fifo"))
        os.symlink("/dev/zero", os.path.join(self.root, "zero"))
        os.makedirs(os.path.join(self.root, "sub"))
        with open(os.path.join(self.root, "sub", "ok.txt"), "w") as f:
            f.write("ok\n")
        os.symlink("sub/ok.txt", os.path.join(self.root, "inside-link"))             # stays inside: fine
        src = os.path.join(self.local, "payload")
        with open(src, "w") as f:
            f.write("payload\n")
        back = os.path.join(self.local, "back")
        os.makedirs(back)
        for bad in (os.path.join(self.root, "..", "outside", "secret"),
                    os.path.join(self.root, "out-abs", "secret"),
                    os.path.join(self.root, "out-rel", "secret"),
                    os.path.join(self.root, "passwd"),
                    os.path.join(self.root, "fifo"),
                    os.path.join(self.root, "zero"),
                    "/etc/hostname",
                    os.path.join(self.root, "sub")):
            r = self.files(["pull", "dev1", "--ticket", self.tid, bad, back + "/"], timeout=60)
            self.assertEqual(r.rc, 1, (bad, r))
            self.assertTrue(r.err.strip(), r)
            self.assertEqual(os.listdir(back), [], bad)
        for bad in (os.path.join(self.root, "..", "outside", "new"),
                    os.path.join(self.root, "out-abs", "new"),
                    os.path.join(self.root, "out-rel", "new"),
                    os.path.join(outside, "new"),
                    os.path.join(self.ro, "new")):
            r = self.files(["push", "dev1", "--ticket", self.tid, src, bad], timeout=60)
            self.assertEqual(r.rc, 1, (bad, r))
            self.assertTrue(r.err.strip(), r)
        self.assertEqual(sorted(os.listdir(outside)), ["secret"])
        self.assertEqual(os.listdir(self.ro), [])
        # Control characters in a path never reach the device.
        r = self.files(["pull", "dev1", "--ticket", self.tid, self.root + "/a\x1bb", back + "/"], timeout=60)
        self.assertIn(r.rc, (1, 2), r)
        # Inside a root a relative symlink is followed; read-only roots can be pulled from.
        with open(os.path.join(self.ro, "log.txt"), "w") as f:
            f.write("log\n")
        r = self.files(["pull", "dev1", "--ticket", self.tid, os.path.join(self.root, "inside-link"),
                        os.path.join(self.ro, "log.txt"), back + "/"])
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(sorted(os.listdir(back)), ["inside-link", "log.txt"])
        refused = self.audit_files("file-refused")
        self.assertTrue(refused, "refusals are audited")

    # -- consent ------------------------------------------------------------------------

    def test_refused_without_consent(self):
        """The first transfer under a ticket asks the employee for file access; a no stops
        it, and nothing is moved."""
        self.files_world(policy="ask")
        w = self.watcher()
        src = os.path.join(self.local, "x")
        with open(src, "w") as f:
            f.write("x\n")
        p = self.spawn_bg(["push", "dev1", "--ticket", self.tid, src, os.path.join(self.root, "x")])
        pr = w.prompt()
        self.assertIn("files", pr["access"])
        w.answer(pr["id"], False)
        out, err = p.communicate(timeout=60)
        self.assertEqual(p.returncode, 1, err)
        self.assertIn(b"refused", err)
        self.assertFalse(os.path.exists(os.path.join(self.root, "x")))
        # Yes this time: the employee's prompt then shows the file as it moves.
        p = self.spawn_bg(["push", "dev1", "--ticket", self.tid, src, os.path.join(self.root, "x")])
        pr = w.prompt()
        w.answer(pr["id"], True)
        act = w.expect("ACTIVITY", timeout=60)
        self.assertIn(os.path.join(self.root, "x"), act)
        out, err = p.communicate(timeout=60)
        self.assertEqual(p.returncode, 0, err)


if __name__ == "__main__":
    unittest.main()
