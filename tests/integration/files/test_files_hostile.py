"""Hostile peers on the file channel (issue 9): a corrupted chunk is refused, and a hostile
console or agent (wrong chunk hash, a chunk past the declared size, an offset beyond the
file, a path with NUL or control characters, a name over PATH_MAX, a file that grows while
it is read, a full disk) gets a clear error on that transfer only; the connection and the
other transfers go on.

Three worlds, on 127.0.0.1 under the sanitizers:
- the real console (tether pull) against a device spoken by hand, which serves a pull with a
  chunk whose sha256 is wrong, a chunk past the file's declared size, or an END whose
  whole-file sha256 is wrong;
- the real agent behind the real broker, against a console spoken by hand that pushes the
  same faults and asks for paths no device may take;
- the real console, broker and agent, with a file that grows while the agent reads it and a
  receiving side whose disk fills up (a small tmpfs in a mount namespace of its own).

Run by ctest as `integration.files_hostile` (TT_BIN_DIR names the build directory)."""

import hashlib
import json
import os
import shutil
import subprocess
import time
import unittest

from harness import (K_CH_ACCEPT, K_CH_OPEN, K_HELLO, K_WELCOME, ROLE_AGENT, ROLE_TECHNICIAN, Pki, TetherTestCase, WireClient,
                     hello_body, pb_bytes, pb_parse, pb_varint)
from files.test_files_broker import CAP_ECHO, CAP_FILES, CAP_SHELL, CH_FILES, FF_CTRL, K_DATA, FakeAgent, Peer
from test_session import SessionWorld

(GET, PUT, LIST, MKDIR, READY, BEGIN, CHUNK, END, DONE, ENTRIES, ERROR, OK) = range(1, 13)
ERR_INVALID = 14
CHUNK_SIZE = 1 << 20        # TT_FILE_CHUNK
PATH_MAX = 4095             # TT_FILE_PATH_MAX
NAME_MAX = 255              # TT_FILE_NAME_MAX
DATA_MAX = 16 * 1024        # TT_DATA_CHUNK_MAX: chunk bytes go in DATA frames of at most this
WINDOW = 4 << 20
MTIME_NS = 1700000000 * 10**9


def file_stat(size=None, mtime_ns=None, mode=None, kind=None):
    b = b""
    if kind:
        b += pb_varint(2, kind)
    if size:
        b += pb_varint(3, size)
    if mtime_ns:
        b += pb_varint(4, mtime_ns)
    if mode:
        b += pb_varint(5, mode)
    return b


def fctl(type_, id_, path=None, stat=None, have_stat=None, sha256=None, message=None, **ints):
    """A ChannelControl{file: FileCtl}, every field of tether.proto's FileCtl by hand."""
    b = pb_varint(1, type_) + pb_varint(2, id_)
    if path is not None:
        b += pb_bytes(3, path)
    if stat is not None:
        b += pb_bytes(4, stat)
    if have_stat is not None:
        b += pb_bytes(9, have_stat)
    if sha256 is not None:
        b += pb_bytes(17, sha256)
    if message is not None:
        b += pb_bytes(19, message)
    for name, num in (("force", 5), ("have_chunks", 7), ("from_chunk", 10), ("chunk_size", 12), ("index", 13),
                      ("raw_len", 14), ("wire_len", 15), ("codec", 16), ("code", 18)):
        if ints.get(name):
            b += pb_varint(num, int(ints[name]))
    if ints.get("have_digest") is not None:
        b += pb_bytes(8, ints["have_digest"])
    return pb_bytes(5, b)


def sha(b):
    return hashlib.sha256(b).digest()


def flipped(h):
    return bytes([h[0] ^ 1]) + h[1:]


def sha256_file(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def send_file(peer, ch, fid, path, content, fault=None, from_chunk=0):
    """A file's stream from a sender spoken by hand: BEGIN, CHUNK + its bytes for each chunk,
    END. fault: "chunk-sha" (chunk 0's sha256 is wrong), "past-size" (one more chunk past the
    declared size), "end-sha" (END's whole-file sha256 is wrong)."""
    size = len(content)
    peer.ctl(ch, fctl(BEGIN, fid, path=path, stat=file_stat(size, MTIME_NS, 0o644, kind=1), chunk_size=CHUNK_SIZE,
                      from_chunk=from_chunk))
    chunks = [content[i:i + CHUNK_SIZE] for i in range(0, size, CHUNK_SIZE)]
    if fault == "past-size":
        chunks.append(b"p" * 500)
    for i, c in enumerate(chunks[from_chunk:], from_chunk):
        h = sha(c)
        if fault == "chunk-sha" and i == 0:
            h = flipped(h)
        peer.ctl(ch, fctl(CHUNK, fid, index=i, raw_len=len(c), wire_len=len(c), sha256=h))
        for k in range(0, len(c), DATA_MAX):
            peer.c.send_frame(K_DATA, c[k:k + DATA_MAX], channel=ch)
    whole = sha(content)
    peer.ctl(ch, fctl(END, fid, path=path, stat=file_stat(size), sha256=flipped(whole) if fault == "end-sha" else whole))


def parts_in(d):
    return sorted(n for n in os.listdir(d) if ".tether-part" in n)


class HostileBase(SessionWorld, TetherTestCase):
    maxDiff = None

    @classmethod
    def setUpClass(cls):
        cls.pki = Pki()
        for role, name in (("technician", "tech"), ("admin", "boss"), ("agent", "dev1")):
            cls.pki.issue(role, name)

    def until(self, what, pred, timeout=30.0):
        """Serve every hand-spoken peer until pred() holds."""
        deadline = time.monotonic() + timeout
        while not pred():
            if time.monotonic() > deadline:
                raise AssertionError("not within %.0fs: %s" % (timeout, what))
            for p in self.peers:
                while p.poll(0.01):
                    pass
            self.serve()

    def serve(self):
        pass

    def one_line(self, err):
        lines = [ln for ln in err.splitlines() if ln.strip()]
        self.assertEqual(len(lines), 1, err)
        return lines[0]


# ---- a hostile device against the real console -------------------------------------------------

class HostileDeviceTest(HostileBase):
    """The real tether pull, and a device that serves it by hand."""

    def setUp(self):
        super().setUp()
        self.b = self.h.start_broker()
        c = WireClient(self.b.port, self.pki.ca, self.pki.cert("dev1"), self.pki.key("dev1"))
        self.addCleanup(c.close)
        c.send_frame(K_HELLO, hello_body(ROLE_AGENT, software_version="it-agent/2.0", hostname="dev1.example")
                     + pb_varint(4, CAP_ECHO | CAP_SHELL | CAP_FILES))
        kind, _, _, body = c.read_control(answer_pings=True)
        self.assertEqual(kind, K_WELCOME, pb_parse(body))
        self.agent = FakeAgent(c)
        self.peers = [self.agent]
        self.h.wait_device(self.b.addr, "dev1")
        self.files = {}     # device path -> (content, fault)
        self.listings = {}  # device path -> [FileStat] its LIST answers
        self.served = set()  # (channel, id) of GETs answered
        self.local = os.path.join(self.h.dir, "local")
        os.makedirs(self.local)
        self.tid = self.new_ticket()

    def serve(self):
        """Answer each GET the console asked, in the order asked, as self.files says."""
        for ch, flags, body in list(self.agent.data):
            if not flags & FF_CTRL:
                continue
            m = pb_parse(pb_parse(body)[5][0])
            if m[1][0] not in (GET, LIST) or (ch, m[2][0]) in self.served:
                continue
            self.served.add((ch, m[2][0]))
            path = m[3][0].decode()
            if m[1][0] == LIST:
                self.agent.ctl(ch, pb_bytes(5, pb_varint(1, ENTRIES) + pb_varint(2, m[2][0])
                                            + b"".join(pb_bytes(20, e) for e in self.listings[path])
                                            + pb_varint(21, 1)))
                continue
            content, fault = self.files[path]
            send_file(self.agent, ch, m[2][0], path, content, fault)

    def answers(self):
        """The console's last word (DONE or ERROR) per device path, as (type, fields)."""
        asked, out = {}, {}
        for ch, flags, body in self.agent.data:
            if not flags & FF_CTRL:
                continue
            m = pb_parse(pb_parse(body)[5][0])
            if m[1][0] == GET:
                asked[(ch, m[2][0])] = m[3][0].decode()
            elif m[1][0] in (DONE, ERROR) and (ch, m[2][0]) in asked:
                out[asked[(ch, m[2][0])]] = (m[1][0], m)
        return out

    def pull(self, paths, dest, timeout=60.0):
        argv = self.console_argv(["pull", "dev1", "--ticket", self.tid, "--json"] + paths + [dest + "/"])
        p = subprocess.Popen(argv, env=self.h.env, cwd=self.h.dir, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        self.addCleanup(lambda: p.poll() is None and (p.kill(), p.wait()))
        self.until("tether pull to finish", lambda: p.poll() is not None, timeout)
        out, err = p.communicate(timeout=5)
        err = err.decode("utf-8", "replace")
        self.assertNotIn("AddressSanitizer", err)
        self.assertNotIn("runtime error:", err)
        return p.returncode, out.decode(), err

    def check_one_refused(self, fault, says):
        good, bad = os.urandom(200000), os.urandom(100000)
        self.files["/srv/bad.bin"] = (bad, fault)
        self.files["/srv/good.bin"] = (good, None)
        rc, out, err = self.pull(["/srv/bad.bin", "/srv/good.bin"], self.local)
        self.assertEqual(rc, 1, err)
        line = self.one_line(err)
        self.assertTrue(line.startswith("tether: /srv/bad.bin: "), line)
        self.assertEqual(line.count("/srv/bad.bin"), 1, "the file is named once: %s" % line)
        self.assertIn(says, line)
        s = json.loads(out)
        self.assertEqual((s["files_ok"], s["files_failed"]), (1, 1), s)
        # The other file of the same command arrived whole; nothing is under the bad one's name.
        self.assertEqual(sha256_file(os.path.join(self.local, "good.bin")), sha(good).hex())
        self.assertFalse(os.path.exists(os.path.join(self.local, "bad.bin")))
        for n in parts_in(self.local):  # what a partial keeps is a verified prefix, never more
            if not n.endswith(".state"):
                self.assertLessEqual(os.path.getsize(os.path.join(self.local, n)), len(bad), n)
        # The console told the device, per file: an ERROR for the bad one, DONE for the good.
        a = self.answers()
        self.assertEqual(a["/srv/bad.bin"][0], ERROR, a)
        self.assertIn(says.encode(), a["/srv/bad.bin"][1][19][0])
        self.assertEqual((a["/srv/good.bin"][0], a["/srv/good.bin"][1].get(18, [0])[0]), (DONE, 0), a)
        self.assertEqual(a["/srv/good.bin"][1][17][0], sha(good))
        # The broker and the device's link go on: the next pull works.
        more = os.urandom(5000)
        self.files["/srv/more.bin"] = (more, None)
        rc, out, err = self.pull(["/srv/more.bin"], self.local)
        self.assertEqual(rc, 0, err)
        self.assertEqual(sha256_file(os.path.join(self.local, "more.bin")), sha(more).hex())
        self.assertTrue(self.b.alive())
        return line

    def test_a_chunk_with_a_wrong_sha256_is_refused(self):
        line = self.check_one_refused("chunk-sha", "chunk 0 failed its sha256 check")
        self.assertEqual(parts_in(self.local), [], "nothing of a bad first chunk is kept")
        self.assertIn("nothing of it was written", line)

    def test_a_chunk_past_the_declared_size_is_refused(self):
        self.check_one_refused("past-size", "a chunk past the file's declared size")

    def test_a_file_whose_whole_sha256_is_wrong_is_not_kept(self):
        line = self.check_one_refused("end-sha", "the whole file's sha256 does not match the sender's")
        self.assertIn("nothing was kept", line)
        self.assertEqual(parts_in(self.local), [], "a file that does not verify leaves nothing")

    def test_a_listing_with_unsafe_names_fetches_only_the_safe_ones(self):
        """pull -r of a directory whose listing names paths no console may write: each is
        refused on its own line, with its bytes shown escaped; the safe ones arrive."""
        good, inner = os.urandom(3000), os.urandom(4000)
        self.files["/srv/tree/good.txt"] = (good, None)
        self.files["/srv/tree/sub/inner.txt"] = (inner, None)
        unsafe = [b"../escape.txt", b"/tmp/abs.txt", b"sub/../../up.txt", b"nul\x00.txt", b"esc\x1b]0;owned\x07.txt",
                  b"line\nbreak.txt", b"n" * (NAME_MAX + 1), b"/".join([b"d" * 200] * 21)]
        entries = [file_stat(len(good), MTIME_NS, 0o644, kind=1), file_stat(mode=0o755, kind=2),
                   file_stat(len(inner), MTIME_NS, 0o600, kind=1)]
        entries = [pb_bytes(1, n) + e for n, e in zip((b"good.txt", b"sub", b"sub/inner.txt"), entries)]
        entries += [pb_bytes(1, n) + file_stat(10, MTIME_NS, 0o644, kind=1) for n in unsafe]
        self.listings["/srv/tree"] = entries
        rc, out, err = self.pull(["-r", "/srv/tree"], self.local)
        self.assertEqual(rc, 1, err)
        lines = err.splitlines()
        self.assertEqual(len(lines), len(unsafe), err)
        for ln in lines:
            self.assertRegex(ln, r"^tether: /srv/tree: the device listed an unsafe name '.*': not fetched$")
            self.assertFalse(any(ord(ch) < 0x20 or ord(ch) == 0x7f for ch in ln), repr(ln))
        self.assertIn("'nul\\x00.txt'", err)
        self.assertIn("'esc\\x1b]0;owned\\x07.txt'", err)
        s = json.loads(out)
        self.assertEqual(s["files_ok"], 2, s)
        tree = os.path.join(self.local, "tree")
        self.assertEqual(sha256_file(os.path.join(tree, "good.txt")), sha(good).hex())
        self.assertEqual(sha256_file(os.path.join(tree, "sub", "inner.txt")), sha(inner).hex())
        got = sorted(os.path.relpath(os.path.join(d, n), self.h.dir) for d, ds, fs in os.walk(self.h.dir)
                     for n in fs if n.endswith(".txt"))
        self.assertEqual(got, ["local/tree/good.txt", "local/tree/sub/inner.txt"])
        self.assertEqual(len(self.served), 3, "only the listing and the two safe files were asked for")


# ---- a hostile console against the real agent -----------------------------------------------------

class HostileConsoleTest(HostileBase):
    """tether-agent behind the real broker; the technician's side of the channel by hand."""

    def setUp(self):
        super().setUp()
        self.root = os.path.join(self.h.dir, "root")
        os.makedirs(self.root)
        self.world(policy="unattended", agent_extra=["--files-roots", self.root])
        self.a.wait_for(r'msg="file access" ')
        tid = self.new_ticket()
        r = self.tech(["session", "open", "--device", "dev1", "--ticket", tid, "--want", "files"])
        self.assertEqual(r.rc, 0, r)
        sid = int(r.out.split()[0][2:])
        c = WireClient(self.b.port, self.pki.ca, self.pki.cert("tech"), self.pki.key("tech"))
        self.addCleanup(c.close)
        c.handshake_hello(role=ROLE_TECHNICIAN)
        self.con = Peer(c)
        self.peers = [self.con]
        self.ch = 1
        c.send_frame(K_CH_OPEN, pb_varint(1, CH_FILES) + pb_bytes(2, "dev1") + pb_varint(3, WINDOW)
                     + pb_varint(8, sid), channel=self.ch)
        self.until("the channel to open", lambda: self.ch in self.con.answers)
        kind, f = self.con.answers[self.ch]
        self.assertEqual(kind, K_CH_ACCEPT, f)
        self.outside_before = sorted(os.listdir(self.h.dir))

    def ctls(self, id_):
        return [m for m in self.con.ctls(self.ch) if m and m[2][0] == id_]

    def answer(self, id_, types=(READY, ERROR, DONE, OK)):
        """The agent's first answer of one of types to op id_."""
        def first():
            return next((m for m in self.ctls(id_) if m[1][0] in types), None)
        self.until("an answer to op %d" % id_, lambda: first() is not None)
        return first()

    def error(self, id_, says, code=None):
        m = self.answer(id_, (ERROR, DONE))
        self.assertEqual(m[1][0], ERROR, m)
        if code is not None:
            self.assertEqual(m[18][0], code, m)
        self.assertIn(says, m[19][0].decode("utf-8", "replace"))
        return m

    def put(self, id_, path, content, fault=None, from_chunk=0):
        self.con.ctl(self.ch, fctl(PUT, id_, path=path, stat=file_stat(len(content), MTIME_NS, 0o644, kind=1)))
        m = self.answer(id_)
        self.assertEqual(m[1][0], READY, m)
        send_file(self.con, self.ch, id_, path, content, fault, from_chunk)

    def nothing_left(self, name):
        self.assertNotIn(name, os.listdir(self.root))
        self.assertEqual(sorted(os.listdir(self.h.dir)), self.outside_before, "something landed outside the root")

    def test_hostile_pushes_and_paths_fail_alone(self):
        root = self.root
        # A wrong chunk hash, while another push waits its turn on the same channel.
        ok1 = os.urandom(70000)
        self.con.ctl(self.ch, fctl(PUT, 2, path=root + "/ok1.bin", stat=file_stat(len(ok1), MTIME_NS, 0o644, kind=1)))
        self.put(1, root + "/sha.bin", os.urandom(3000), "chunk-sha")
        self.assertEqual(self.answer(2)[1][0], READY)
        send_file(self.con, self.ch, 2, root + "/ok1.bin", ok1)
        self.error(1, "chunk 0 failed its sha256 check")
        done = self.answer(2, (DONE, ERROR))
        self.assertEqual((done[1][0], done.get(18, [0])[0], done[17][0]), (DONE, 0, sha(ok1)), done)
        with open(os.path.join(root, "ok1.bin"), "rb") as f:
            self.assertEqual(f.read(), ok1)
        self.nothing_left("sha.bin")
        self.assertEqual(parts_in(root), [])
        # A chunk past the declared size.
        self.put(3, root + "/past.bin", os.urandom(1000), "past-size")
        self.error(3, "a chunk past the file's declared size")
        self.nothing_left("past.bin")
        # An offset beyond the file: resuming from a chunk the agent never kept.
        self.put(4, root + "/offset.bin", os.urandom(1000), from_chunk=7)
        self.error(4, "the sender resumes from chunk 7, but 0 are kept here")
        self.nothing_left("offset.bin")
        # A whole-file hash that does not match what came.
        self.put(5, root + "/end.bin", os.urandom(5000), "end-sha")
        self.error(5, "the whole file's sha256 does not match the sender's: nothing was kept")
        self.nothing_left("end.bin")
        self.assertNotIn(".end.bin.tether-part", os.listdir(root))
        # Paths no device takes: refused before anything is opened, for PUT and GET alike.
        paths = [(root + "/nul\x00.bin", "a path with a NUL byte"),
                 (root + "/esc\x1b[31m.bin", "a path with control characters"),
                 (root + "/line\nbreak.bin", "a path with control characters"),
                 (root + "/" + "/".join(["d" * 200] * 21) + "/x.bin", "a path longer than %d bytes" % PATH_MAX),
                 (root + "/" + "n" * (NAME_MAX + 1), "a path component longer than %d bytes" % NAME_MAX)]
        for i, (path, says) in enumerate(paths):
            self.con.ctl(self.ch, fctl(PUT, 10 + i, path=path, stat=file_stat(10, MTIME_NS, 0o644, kind=1)))
            self.error(10 + i, "refused: " + says, ERR_INVALID)
            self.con.ctl(self.ch, fctl(GET, 20 + i, path=path))
            self.error(20 + i, "refused: " + says, ERR_INVALID)
        self.assertEqual(sorted(os.listdir(root)), sorted(["ok1.bin"] + parts_in(root)))
        self.nothing_left("x.bin")
        # No op ended the channel, and a well-formed push and pull on it still work.
        self.assertEqual(self.con.closes, {})
        ok2 = os.urandom(CHUNK_SIZE + 1234)
        self.put(30, root + "/ok2.bin", ok2)
        done = self.answer(30, (DONE, ERROR))
        self.assertEqual((done[1][0], done.get(18, [0])[0]), (DONE, 0), done)
        with open(os.path.join(root, "ok2.bin"), "rb") as f:
            self.assertEqual(f.read(), ok2)
        self.assertEqual(self.pull(31, root + "/ok2.bin"), ok2)
        self.assertEqual(self.con.closes, {})
        self.assertTrue(self.a.alive() and self.b.alive())

    def pull(self, id_, path, **have):
        """GET path by hand: the bytes, after checking each chunk and the END."""
        self.con.ctl(self.ch, fctl(GET, id_, path=path, **have))
        self.until("the END of op %d" % id_, lambda: any(m[1][0] in (END, ERROR) for m in self.ctls(id_)))
        msgs = self.ctls(id_)
        self.assertNotIn(ERROR, [m[1][0] for m in msgs], msgs)
        # Chunk bytes: the wire_len DATA bytes after each CHUNK (other controls may come between).
        data, chunks, need = b"", [], 0
        for ch, flags, body in self.con.data:
            if ch != self.ch:
                continue
            if flags & FF_CTRL:
                m = pb_parse(pb_parse(body)[5][0])
                if m[1][0] == CHUNK:
                    need = m[15][0]
                    chunks.append([m, b""] if m[2][0] == id_ else [None, b""])
            elif need:
                chunks[-1][1] += body
                need -= len(body)
        chunks = [c for c in chunks if c[0]]
        for m, b in chunks:
            self.assertEqual(m.get(16, [0])[0], 0, "a zstd chunk: pull random data")
            self.assertEqual(sha(b), m[17][0])
            data += b
        end = [m for m in msgs if m[1][0] == END][0]
        self.assertEqual(end[17][0], sha(data))
        self.con.ctl(self.ch, fctl(DONE, id_, path=path, stat=file_stat(len(data)), sha256=sha(data)))
        return data

    def test_a_get_resuming_past_the_end_starts_over(self):
        """A console that claims to keep more chunks than the file has gets all of it, from
        chunk 0, with a note: an offset beyond the file moves nothing it should not."""
        body = os.urandom(3000)
        with open(os.path.join(self.root, "small.bin"), "wb") as f:
            f.write(body)
        self.assertEqual(self.pull(1, self.root + "/small.bin", have_chunks=1000, have_digest=b"\x07" * 32), body)
        begin = [m for m in self.ctls(1) if m[1][0] == BEGIN][0]
        self.assertEqual(begin.get(10, [0])[0], 0, begin)
        self.assertIn(b"longer than the source: started over", begin[11][0])
        self.assertEqual(self.con.closes, {})


# ---- a file that grows, a disk that fills -------------------------------------------------------

def tmpfs_wrapper(size):
    """Runs a program with a tmpfs of `size` mounted over the directory named by the next
    argument, in a mount namespace of its own (nothing outside sees it)."""
    return ["unshare", "-m", "--propagation", "private", "--", "sh", "-c",
            'mount -t tmpfs -o size=%s,mode=0755 tether-it "$0" && exec "$@"' % size]


def can_mount_tmpfs():
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return "needs root and unshare(1), to mount a small tmpfs in a mount namespace of its own"
    probe = subprocess.run(["unshare", "-m", "--propagation", "private", "--", "sh", "-c",
                            'd=$(mktemp -d) && mount -t tmpfs -o size=1m tether-it "$d"; rc=$?; rmdir "$d"; exit $rc'],
                           capture_output=True, timeout=30)
    if probe.returncode != 0:
        return "cannot mount a tmpfs in a private mount namespace here: %s" % probe.stderr.decode().strip()
    return None


class FilesUnderStressTest(HostileBase):
    """The real console, broker and agent."""

    def files_world(self, agent_wrapper=()):
        self.root = os.path.join(self.h.dir, "root")
        self.local = os.path.join(self.h.dir, "local")
        for d in (self.root, self.local):
            os.makedirs(d, exist_ok=True)
        self.world(policy="unattended", agent_extra=["--files-roots", self.root], agent_wrapper=agent_wrapper)
        self.a.wait_for(r'msg="file access" ')
        self.tid = self.new_ticket()
        self.peers = []

    def test_a_file_that_grows_while_it_is_read(self):
        self.files_world()
        size = 48 * CHUNK_SIZE
        grow = os.path.join(self.root, "grow.bin")
        with open(grow, "wb") as f:
            for _ in range(size // CHUNK_SIZE):
                f.write(os.urandom(CHUNK_SIZE))
        small = os.urandom(4000)
        with open(os.path.join(self.root, "small.bin"), "wb") as f:
            f.write(small)
        p = self.spawn_bg(["pull", "dev1", "--ticket", self.tid, "--json", grow, self.root + "/small.bin",
                           self.local + "/"])
        part = os.path.join(self.local, ".grow.bin.tether-part")

        def some_arrived():
            try:
                return os.path.getsize(part) >= 4 * CHUNK_SIZE
            except FileNotFoundError:
                return p.poll() is not None
        deadline = time.monotonic() + 120
        while not some_arrived():
            self.assertLess(time.monotonic(), deadline, "a few chunks never arrived")
            time.sleep(0.005)
        self.assertIsNone(p.poll(), "the pull ended before the file grew")
        # Credit holds the agent a few chunks ahead of what the console wrote: it has not
        # reached the last chunk, where it checks the file once more.
        with open(grow, "ab") as f:
            f.write(b"more")
        out, err = p.communicate(timeout=120)
        err = err.decode()
        self.assertEqual(p.returncode, 1, err)
        line = self.one_line(err)
        self.assertEqual(line, "tether: %s changed while it was read (run the command again)" % grow)
        s = json.loads(out)
        self.assertEqual((s["files_ok"], s["files_failed"]), (1, 1), s)
        self.assertEqual(sha256_file(os.path.join(self.local, "small.bin")), sha(small).hex())
        self.assertFalse(os.path.exists(os.path.join(self.local, "grow.bin")))
        self.assertTrue(os.path.exists(part), "the verified part is kept")
        self.a.wait_for(r'grow.bin changed while it was read')
        # The same command again (the small file is there already: that one alone is refused):
        # the kept part is of the file before it grew, so it starts over, and lands whole.
        r = self.tech(["pull", "dev1", "--ticket", self.tid, "--json", grow, self.local + "/"], timeout=120)
        self.assertEqual(r.rc, 0, r)
        s = json.loads(r.out)
        self.assertEqual(s["resumed_bytes"], 0, s)
        self.assertEqual(sha256_file(os.path.join(self.local, "grow.bin")), sha256_file(grow))
        self.assertEqual(parts_in(self.local), [])

    def test_a_full_disk_on_the_device(self):
        why = can_mount_tmpfs()
        if why:
            self.skipTest(why)
        # The agent's shared directory is a 4 MiB tmpfs that only the agent sees; we look in
        # through /proc/PID/root. A 2 MiB filler leaves room for one chunk of a 3 MiB file.
        self.files_world(agent_wrapper=tmpfs_wrapper("4m") + [os.path.join(self.h.dir, "root")])
        there = "/proc/%d/root%s" % (self.a.pid, self.root)
        with open(os.path.join(there, "filler"), "wb") as f:
            f.write(b"\0" * (2 * CHUNK_SIZE))
        small, big = os.path.join(self.local, "small.bin"), os.path.join(self.local, "big.bin")
        with open(small, "wb") as f:
            f.write(os.urandom(1000))
        with open(big, "wb") as f:
            f.write(os.urandom(3 * CHUNK_SIZE))
        r = self.tech(["push", "dev1", "--ticket", self.tid, "--json", small, big, self.root + "/"], timeout=120)
        self.assertEqual(r.rc, 1, r)
        line = self.one_line(r.err)
        self.assertTrue(line.startswith("tether: %s: " % big), line)
        self.assertIn("no space left on device (the part written so far is kept: run the same command again to "
                      "resume)", line)
        s = json.loads(r.out)
        self.assertEqual((s["files_ok"], s["files_failed"]), (1, 1), s)
        self.assertEqual(sha256_file(os.path.join(there, "small.bin")), sha256_file(small))
        self.assertNotIn("big.bin", os.listdir(there))
        kept = os.path.getsize(os.path.join(there, ".big.bin.tether-part"))
        self.assertTrue(kept > 0 and kept % CHUNK_SIZE == 0 and kept < 3 * CHUNK_SIZE, kept)
        # Room again: the same push of the big file resumes from what was kept.
        os.unlink(os.path.join(there, "filler"))
        r = self.tech(["push", "dev1", "--ticket", self.tid, "--json", big, self.root + "/"], timeout=120)
        self.assertEqual(r.rc, 0, r)
        s = json.loads(r.out)
        self.assertEqual(s["resumed_bytes"], kept, s)
        self.assertEqual(sha256_file(os.path.join(there, "big.bin")), sha256_file(big))
        self.assertEqual(parts_in(there), [])

    def test_a_full_disk_on_the_console(self):
        why = can_mount_tmpfs()
        if why:
            self.skipTest(why)
        self.files_world()
        with open(os.path.join(self.root, "small.bin"), "wb") as f:
            f.write(os.urandom(1000))
        big = os.path.join(self.root, "big.bin")
        with open(big, "wb") as f:
            f.write(os.urandom(3 * CHUNK_SIZE))
        # The console pulls into a 4 MiB tmpfs of its own, seeded from `seed` and copied out
        # to `out` when it ends (its mount namespace goes with it).
        dest = os.path.join(self.h.dir, "dest")
        os.makedirs(dest)

        def pull(paths, seed, out):
            script = ('d=$0 seed=$1 out=$2; shift 2; mount -t tmpfs -o size=4m tether-it "$d" || exit 97; '
                      'cp -a "$seed/." "$d/" || exit 98; "$@"; rc=$?; cp -a "$d/." "$out/" || exit 99; exit $rc')
            argv = (["unshare", "-m", "--propagation", "private", "--", "sh", "-c", script, dest, seed, out]
                    + self.console_argv(["pull", "dev1", "--ticket", self.tid, "--json"] + paths + [dest + "/"]))
            os.makedirs(out)
            cp = subprocess.run(argv, env=self.h.env, cwd=self.h.dir, stdin=subprocess.DEVNULL, capture_output=True,
                                timeout=120)
            err = cp.stderr.decode("utf-8", "replace")
            self.assertNotIn("AddressSanitizer", err)
            self.assertNotIn("runtime error:", err)
            self.assertNotIn(cp.returncode, (97, 98, 99), err)
            return cp.returncode, cp.stdout.decode(), err

        seed = os.path.join(self.h.dir, "seed")
        os.makedirs(seed)
        with open(os.path.join(seed, "filler"), "wb") as f:
            f.write(b"\0" * (2 * CHUNK_SIZE))
        out1 = os.path.join(self.h.dir, "out1")
        rc, out, err = pull([self.root + "/small.bin", big], seed, out1)
        self.assertEqual(rc, 1, err)
        line = self.one_line(err)
        self.assertTrue(line.startswith("tether: %s: " % big), line)
        self.assertIn("no space left on device (the part written so far is kept: run the same command again to "
                      "resume)", line)
        s = json.loads(out)
        self.assertEqual((s["files_ok"], s["files_failed"]), (1, 1), s)
        self.assertEqual(sha256_file(os.path.join(out1, "small.bin")), sha256_file(os.path.join(self.root,
                                                                                                 "small.bin")))
        self.assertNotIn("big.bin", os.listdir(out1))
        kept = os.path.getsize(os.path.join(out1, ".big.bin.tether-part"))
        self.assertTrue(kept > 0 and kept % CHUNK_SIZE == 0 and kept < 3 * CHUNK_SIZE, kept)
        # Room again (the filler and the small file gone), the partial kept: it resumes.
        seed2 = os.path.join(self.h.dir, "seed2")
        os.makedirs(seed2)
        for n in parts_in(out1):
            shutil.copy2(os.path.join(out1, n), os.path.join(seed2, n))
        out2 = os.path.join(self.h.dir, "out2")
        rc, out, err = pull([big], seed2, out2)
        self.assertEqual(rc, 0, err)
        s = json.loads(out)
        self.assertEqual(s["resumed_bytes"], kept, s)
        self.assertEqual(sha256_file(os.path.join(out2, "big.bin")), sha256_file(big))
        self.assertEqual(parts_in(out2), [])


if __name__ == "__main__":
    unittest.main()
