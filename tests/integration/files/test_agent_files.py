"""The agent's side of file access as a running tether-agent shows it: the shared
directories (files.roots, files.read_only) resolved once at start and logged, a missing one
left out, a relative one refused at start, and file access run as shell.user (the pool's
threads switched to it) or off, with the reason, when the agent is root with no shell.user.
Then the CHANNEL_FILES channel itself, driven by a stand-in broker written here (the real
broker and console are tested with them): refused outside a session with file access,
LIST and MKDIR answered, GET and PUT through the shared directories as shell.user, every
confinement escape refused, and the channel closed when its session ends.

Run by ctest as `integration.agent_files` (TT_BIN_DIR names the build directory)."""

import hashlib
import os
import pwd
import re
import socket
import ssl
import stat
import time
import unittest

from test_session import Watcher
from harness import (K_CH_ACCEPT, K_CH_CLOSE, K_CH_OPEN, K_CH_REJECT, K_HELLO, K_REQUEST, K_RESPONSE,
                     K_WELCOME, Pki, TetherTestCase, WireClient, frame, pb_bytes, pb_parse, pb_varint)

K_WINDOW, K_DATA, FF_CTRL = 10, 32, 0x04
CH_FILES, PRIO_BULK = 5, 1
ACCESS_FILES, ACCESS_DIAG = 2, 4
ERR_NOT_FOUND, ERR_DENIED, ERR_INVALID = 7, 11, 14
GET, PUT, LIST, MKDIR, READY, BEGIN, CHUNK, END, DONE, ENTRIES, ERROR, OK = range(1, 13)
KIND_REGULAR, KIND_DIR, KIND_SYMLINK, KIND_OTHER = 1, 2, 3, 4
CHUNK_SIZE = 1 << 20
STUB = "operation not valid in this state"  # tests/stubs: the engine is not built in


def file_stat(size=0, mtime_ns=0, mode=0):
    return ((pb_varint(3, size) if size else b"") + (pb_varint(4, mtime_ns) if mtime_ns else b"")
            + (pb_varint(5, mode) if mode else b""))


def file_ctl(type_, id_, path=None, **f):
    body = pb_varint(1, type_) + pb_varint(2, id_)
    if path is not None:
        body += pb_bytes(3, path)
    if "stat" in f:
        body += pb_bytes(4, f["stat"])
    for name, num in (("recursive", 6), ("from_chunk", 10), ("chunk_size", 12), ("index", 13), ("raw_len", 14),
                      ("wire_len", 15), ("codec", 16), ("code", 18)):
        if f.get(name):
            body += pb_varint(num, int(f[name]))
    if "sha256" in f:
        body += pb_bytes(17, f["sha256"])
    return pb_bytes(5, body)  # ChannelControl.file


class FakeBroker:
    """Just enough of a broker for one agent: TLS with the broker's certificate, Welcome,
    consent requests, channels opened from our side (even ids), frames by hand."""

    def __init__(self, pki):
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(1)
        self.addr = "127.0.0.1:%d" % self.lsock.getsockname()[1]
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        self.ctx.load_cert_chain(pki.broker_cert, pki.broker_key)
        self.ctx.load_verify_locations(pki.ca)
        self.ctx.verify_mode = ssl.CERT_REQUIRED
        self.ctx.set_alpn_protocols(["tether/1"])
        self.c = None
        self.next_ch = 2
        self.next_req = 1
        self.held = []  # frames read while waiting for another, in order
        self.unacked = {}  # channel -> DATA bytes read and not yet given back as credit

    def frame_where(self, want, timeout=15.0):
        """The first frame (kind, flags, channel, body) for which want(...) holds; others
        read meanwhile are kept for later calls."""
        for i, f in enumerate(self.held):
            if want(*f):
                return self.held.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            f = self.c.read_control(timeout=max(0.0, deadline - time.monotonic()))
            if want(*f):
                return f
            self.held.append(f)

    def accept(self, timeout=15.0):
        self.lsock.settimeout(timeout)
        raw, _ = self.lsock.accept()
        raw.settimeout(timeout)
        c = WireClient.__new__(WireClient)  # its frame reader, on our side of the socket
        c.sock = self.ctx.wrap_socket(raw, server_side=True)
        c.timeout, c.buf, c.pings = timeout, b"", 0
        self.c = c
        kind, _, _, _ = c.read_frame()
        assert kind == K_HELLO, kind
        c.send_frame(K_WELCOME, pb_varint(1, 1) + pb_bytes(2, "fake") + pb_varint(5, 120000)
                     + pb_bytes(6, "fake-broker"))

    def close(self):
        if self.c:
            self.c.close()
        self.lsock.close()

    def request(self, field, body):
        rid = self.next_req
        self.next_req += 1
        self.c.send_frame(K_REQUEST, pb_varint(1, rid) + pb_bytes(field, body))
        _, _, _, b = self.frame_where(lambda k, fl, c, b: k == K_RESPONSE and pb_parse(b)[1][0] == rid)
        return pb_parse(b)

    def grant(self, session, access, technician="alice"):
        r = self.request(17, pb_varint(1, session) + pb_bytes(2, technician) + pb_varint(3, 3)
                         + pb_bytes(4, "printer") + pb_varint(5, access) + pb_varint(6, 600000))
        assert 17 in r, r  # a ConsentResponse, not an error
        return pb_parse(r[17][0])[1][0]  # the decision

    def open_files(self, session, window=4 << 20):
        """(channel, accepted?, fields of the answer)."""
        ch = self.next_ch
        self.next_ch += 2
        self.c.send_frame(K_CH_OPEN, pb_varint(1, CH_FILES) + pb_varint(3, window) + pb_varint(4, PRIO_BULK)
                          + pb_bytes(7, "alice") + pb_varint(8, session) + pb_varint(13, 3), channel=ch)
        kind, _, _, body = self.frame_where(lambda k, fl, c, b: c == ch and k in (K_CH_ACCEPT, K_CH_REJECT))
        return ch, kind == K_CH_ACCEPT, pb_parse(body)

    def ctl(self, ch, body):
        self.c.send_frame(K_DATA, body, channel=ch, flags=FF_CTRL)

    def next_on(self, ch, timeout=15.0):
        """The next FileCtl (fields) or raw DATA (bytes) or CH_CLOSE ('close', fields) on ch."""
        kind, flags, _, body = self.frame_where(lambda k, fl, c, b: c == ch and k in (K_CH_CLOSE, K_DATA), timeout)
        if kind == K_DATA:  # consumed: credit back in 4 KiB steps (a console: at half its window)
            n = self.unacked.get(ch, 0) + len(body)
            if n >= 4096:
                self.c.send_frame(K_WINDOW, pb_varint(1, n), channel=ch)
                n = 0
            self.unacked[ch] = n
        if kind == K_CH_CLOSE:
            return "close", pb_parse(body)
        if flags & FF_CTRL:
            return "ctl", pb_parse(pb_parse(body)[5][0])
        return "data", body

    def answer(self, ch, id_):
        """Every FileCtl on ch for op id_ until its final one (ENTRIES last, OK, ERROR)."""
        got = []
        while True:
            what, m = self.next_on(ch)
            assert what == "ctl", (what, m)
            if m[2][0] != id_:
                continue
            got.append(m)
            if m[1][0] != ENTRIES or m.get(21, [0])[0]:
                return got



class AgentFilesTest(TetherTestCase):
    @classmethod
    def setUpClass(cls):
        cls.pki = Pki()
        cls.pki.issue("agent", "dev1")

    def agent_args(self, broker, *extra):
        pki = self.pki
        return ["run", "--broker", broker.addr, "--ca", pki.ca, "--cert", pki.cert("dev1"), "--key",
                pki.key("dev1"), "--hostname", "host1",
                "--consent-socket", os.path.join(self.h.dir, "c.sock")] + list(extra)

    def test_roots_are_resolved_once_and_logged(self):
        if os.geteuid() != 0:
            self.skipTest("needs root, to switch the file threads to another user")
        b = self.h.start_broker()
        share, ro = os.path.join(self.h.dir, "share"), os.path.join(self.h.dir, "logs")
        os.mkdir(share)
        os.mkdir(ro)
        alias = os.path.join(self.h.dir, "alias")
        os.symlink(share, alias)
        missing = os.path.join(self.h.dir, "missing")
        a = self.h.start_agent(b.addr, "dev1", "host1", extra=[
            "--shell-user", "nobody", "--files-roots", "%s/ , %s" % (alias, missing), "--files-read-only", ro])
        real = os.path.realpath(share)
        a.wait_for(r'msg="shared directory" root="%s" as="%s" access=read-write' % (re.escape(real), re.escape(alias)))
        a.wait_for(r'msg="shared directory" root="%s" as="%s" access=read-only'
                   % (re.escape(os.path.realpath(ro)), re.escape(ro)))
        a.wait_for(r'msg="a shared directory does not exist: left out" key=files.roots root="%s"' % re.escape(missing))
        m = a.wait_for(r'msg="file access( is off)?" (.*)')
        if m.group(1) and "operation not valid in this state" in m.group(2):
            self.skipTest("the transfer engine is not built into this agent yet (tests/stubs)")
        self.assertIsNone(m.group(1), m.group(0))
        self.assertIn("user=nobody switched=yes", m.group(0))
        self.assertIn('roots="%s; read-only: %s"' % (alias, ro), m.group(0))

    def test_a_relative_root_stops_the_agent(self):
        b = self.h.start_broker()
        for key, flag in (("files.roots", "--files-roots"), ("files.read_only", "--files-read-only")):
            r = self.h.run("tether-agent", self.agent_args(b, "--shell-user", "root", flag, "/tmp, tmp"))
            self.assertEqual(r.rc, 2, r)
            self.assertIn("%s: tmp is not an absolute path" % key, r.err, r)

    def test_root_without_shell_user_serves_no_files(self):
        if os.geteuid() != 0:
            self.skipTest("needs root: as another user, files are that user's")
        b = self.h.start_broker()
        a = self.h.start_agent(b.addr, "dev1", "host1")
        a.wait_for(r'msg="file access is off" why="shell.user is not configured on this device \(file access runs '
                   r'as that user\)"')


class AgentFileChannelTest(TetherTestCase):
    """tether-agent on a stand-in broker: shell.user nobody, a read-write and a read-only
    directory, unattended consent."""

    @classmethod
    def setUpClass(cls):
        cls.pki = Pki()
        cls.pki.issue("agent", "dev1")

    def setUp(self):
        super().setUp()
        if os.geteuid() != 0:
            self.skipTest("needs root, to serve files as another user")
        self.nobody = pwd.getpwnam("nobody")
        self.fb = FakeBroker(self.pki)
        self.addCleanup(self.fb.close)
        d = self.h.dir
        os.chmod(d, 0o755)  # nobody walks through to the shared directories
        self.share, self.ro, self.out = (os.path.join(d, n) for n in ("share", "ro", "outside"))
        for p in (self.share, self.ro, self.out):
            os.mkdir(p)
        os.chmod(self.share, 0o777)
        with open(os.path.join(self.share, "hello.txt"), "w") as f:
            f.write("hello")
        with open(os.path.join(self.ro, "log.txt"), "w") as f:
            f.write("log")
        with open(os.path.join(self.out, "secret"), "w") as f:
            f.write("secret")
        with open(os.path.join(self.share, "roots-only"), "w") as f:
            f.write("root's")
        os.chmod(os.path.join(self.share, "roots-only"), 0o600)
        os.mkfifo(os.path.join(self.share, "fifo"))
        os.symlink("/etc/passwd", os.path.join(self.share, "abs"))
        os.symlink("../outside", os.path.join(self.share, "out"))
        self.a = self.h.spawn("agent", "tether-agent", [
            "run", "--broker", self.fb.addr, "--ca", self.pki.ca, "--cert", self.pki.cert("dev1"),
            "--key", self.pki.key("dev1"), "--hostname", "host1",
            "--consent-socket", os.path.join(d, "c.sock"), "--consent-policy", "unattended",
            "--shell-user", "nobody", "--files-roots", self.share, "--files-read-only", self.ro])
        self.fb.accept()
        self.a.wait_for(r'msg="connected"')
        m = self.a.wait_for(r'msg="file access( is off)?" (.*)')
        self.engine = not (m.group(1) and STUB in m.group(2))

    def watcher(self):
        """The employee's prompt (after the grant: with one watching, consent would ask)."""
        w = Watcher(os.path.join(self.h.dir, "c.sock"))
        self.addCleanup(w.close)
        w.expect("OK")  # watching from here on: an ACTIVITY line sent before would not come
        return w

    def need_engine(self):
        if not self.engine:
            self.skipTest("the transfer engine is not built into this agent yet (tests/stubs)")

    def test_refused_outside_a_session_with_file_access(self):
        ch, ok, f = self.fb.open_files(99)  # no such session
        self.assertFalse(ok)
        self.assertEqual(f[1][0], ERR_DENIED)
        self.assertIn(b"S-99 is not a live session with file access", f[2][0])
        self.assertEqual(self.fb.grant(5, ACCESS_DIAG), 4)  # CONSENT_UNATTENDED
        ch, ok, f = self.fb.open_files(5)
        self.assertFalse(ok)
        self.assertIn(b"S-5 is not a live session with file access on this device", f[2][0])
        self.assertEqual(self.fb.grant(6, ACCESS_FILES), 4)
        ch, ok, f = self.fb.open_files(6)
        if not self.engine:
            self.assertFalse(ok)
            self.assertIn(b"file access is off on this device", f[2][0])
            return
        self.assertTrue(ok, f)

    def test_list_and_mkdir(self):
        self.need_engine()
        self.fb.grant(7, ACCESS_FILES)
        ch, ok, _ = self.fb.open_files(7)
        self.assertTrue(ok)
        w = self.watcher()
        self.fb.ctl(ch, file_ctl(LIST, 1, self.share))
        (m,) = self.fb.answer(ch, 1)
        self.assertEqual(m[1][0], ENTRIES)
        entries = [pb_parse(e) for e in m.get(20, [])]
        self.assertEqual([e[1][0] for e in entries], [b"abs", b"fifo", b"hello.txt", b"out", b"roots-only"])
        hello = entries[2]
        self.assertEqual((hello[2][0], hello[3][0], hello[7][0]), (KIND_REGULAR, 5, b"root"))
        self.assertEqual((entries[0][2][0], entries[0][6][0]), (KIND_SYMLINK, b"/etc/passwd"))
        self.assertEqual(entries[1][2][0], KIND_OTHER)
        self.assertEqual(w.expect("ACTIVITY"), "ACTIVITY S-7\talice\tlisted %s" % self.share)
        # A new directory, as nobody; one in the read-only directory is refused.
        self.fb.ctl(ch, file_ctl(MKDIR, 2, "%s/new" % self.share, stat=file_stat(mode=0o750)))
        (m,) = self.fb.answer(ch, 2)
        self.assertEqual(m[1][0], OK, m)
        st = os.stat(os.path.join(self.share, "new"))
        self.assertEqual((st.st_uid, stat.S_IMODE(st.st_mode)), (self.nobody.pw_uid, 0o750))
        self.assertEqual(w.expect("ACTIVITY"), "ACTIVITY S-7\talice\tmade the directory %s/new" % self.share)
        self.fb.ctl(ch, file_ctl(MKDIR, 3, "%s/new" % self.ro))
        (m,) = self.fb.answer(ch, 3)
        self.assertEqual((m[1][0], m[18][0]), (ERROR, ERR_DENIED))
        self.assertIn(b"shares read-only", m[19][0])
        self.assertFalse(os.path.exists(os.path.join(self.ro, "new")))
        # Outside, through a link out, and a path with a control character.
        for i, (path, code, says) in enumerate(((self.out, ERR_DENIED, b"is outside the directories"),
                                                ("%s/out" % self.share, ERR_DENIED, b"leads outside"),
                                                ("%s/a\tb" % self.share, ERR_INVALID, b"control characters"))):
            self.fb.ctl(ch, file_ctl(LIST, 10 + i, path))
            (m,) = self.fb.answer(ch, 10 + i)
            self.assertEqual((m[1][0], m[18][0]), (ERROR, code), m)
            self.assertIn(says, m[19][0])
        self.a.wait_for(r'msg="list refused"', count=3)

    def test_a_big_listing_comes_whole_across_credit(self):
        """More entries than one window holds: the batches wait for credit (TT_EFULL) and
        all arrive, in order, the last one marked."""
        self.need_engine()
        big = os.path.join(self.share, "big")
        os.mkdir(big)
        names = ["%05d-%s" % (i, "x" * 200) for i in range(6000)]  # ~1.4 MB of entries
        for n in names:
            open(os.path.join(big, n), "w").close()
        self.fb.grant(10, ACCESS_FILES)
        ch, ok, _ = self.fb.open_files(10, window=64 * 1024)
        self.assertTrue(ok)
        self.fb.ctl(ch, file_ctl(LIST, 1, big))
        self.fb.ctl(ch, file_ctl(MKDIR, 2, "%s/after" % self.share))  # answered after the listing
        got = self.fb.answer(ch, 1)
        self.assertGreater(len(got), 40)
        self.assertTrue(all(m[1][0] == ENTRIES for m in got))
        self.assertEqual([m.get(21, [0])[0] for m in got], [0] * (len(got) - 1) + [1])
        paths = [pb_parse(e)[1][0].decode() for m in got for e in m.get(20, [])]
        self.assertEqual(paths, names)
        (m,) = self.fb.answer(ch, 2)
        self.assertEqual(m[1][0], OK)

    def test_listings_held_at_once_are_bounded(self):
        """Two listings that a console does not read hold the agent's two slots
        (TT_FILE_LISTINGS_MAX); a third waits, and goes once one of them is read."""
        self.need_engine()
        big = os.path.join(self.share, "big")
        os.mkdir(big)
        names = ["%05d-%s" % (i, "x" * 200) for i in range(6000)]  # more than the engine queues
        for n in names:
            open(os.path.join(big, n), "w").close()
        self.fb.grant(11, ACCESS_FILES)
        chans = [self.fb.open_files(11, window=16 * 1024)[0] for _ in range(3)]
        self.fb.ctl(chans[0], file_ctl(LIST, 1, big))
        self.fb.ctl(chans[1], file_ctl(LIST, 1, big))
        self.fb.ctl(chans[2], file_ctl(LIST, 1, self.share))
        self.a.wait_for(r'msg="a listing waits for others to be sent" session=S-11 id=1 held=2')
        for ch in (chans[0], chans[2], chans[1]):  # the first read frees a slot for the third
            got = self.fb.answer(ch, 1)
            self.assertEqual(got[-1].get(21, [0])[0], 1)
        self.assertEqual(sum(len(m.get(20, [])) for m in got), len(names))

    def get(self, ch, id_, path):
        """Pull path: (the file's bytes, its sha256 per END), or the ERROR's fields."""
        self.fb.ctl(ch, file_ctl(GET, id_, path))
        data, sha = b"", None
        while True:
            what, m = self.fb.next_on(ch)
            if what == "data":
                data += m
                continue
            self.assertEqual(what, "ctl", m)
            if m[2][0] != id_:
                continue
            t = m[1][0]
            if t == ERROR:
                return m
            if t == CHUNK:
                self.assertEqual(m.get(16, [0])[0], 0, "a zstd chunk: send random data")
            if t == END:
                sha = m[17][0]
                self.fb.ctl(ch, file_ctl(DONE, id_, path, sha256=sha, stat=file_stat(size=len(data))))
                return data, sha

    def test_get_and_put_confined_as_shell_user(self):
        self.need_engine()
        self.fb.grant(8, ACCESS_FILES)
        ch, ok, _ = self.fb.open_files(8)
        self.assertTrue(ok)
        w = self.watcher()
        body = os.urandom(100000)
        with open(os.path.join(self.share, "random.bin"), "wb") as f:
            f.write(body)
        data, sha = self.get(ch, 1, "%s/random.bin" % self.share)
        self.assertEqual((data, sha), (body, hashlib.sha256(body).digest()))
        self.a.wait_for(r'msg="file moved" session=S-8 ticket=T-3 technician=alice dir=pull path="[^"]*random.bin" '
                        r'size=100000 sha256=%s' % hashlib.sha256(body).hexdigest())
        self.assertEqual(w.expect("ACTIVITY"), "ACTIVITY S-8\talice\tis pulling %s/random.bin (100.0 kB)" % self.share)
        # Each escape, and what shell.user may not read, refused with why.
        cases = (("%s/abs" % self.share, ERR_DENIED, b"leads outside"),
                 ("%s/out/secret" % self.share, ERR_DENIED, b"leads outside"),
                 ("%s/secret" % self.out, ERR_DENIED, b"is outside the directories"),
                 ("%s/../outside/secret" % self.share, ERR_INVALID, b"'..' is not allowed"),
                 ("%s/fifo" % self.share, ERR_INVALID, b"is a FIFO: only regular files can be pulled"),
                 ("%s/roots-only" % self.share, ERR_DENIED, b"permission denied"),
                 ("%s/nothing" % self.share, ERR_NOT_FOUND, b"does not exist"))
        for i, (path, code, says) in enumerate(cases):
            m = self.get(ch, 10 + i, path)
            self.assertIsInstance(m, dict, path)
            self.assertEqual((m[1][0], m[18][0]), (ERROR, code), (path, m))
            self.assertIn(says, m[19][0], path)
            self.assertRegex(w.expect("ACTIVITY"), r"^ACTIVITY S-8\talice\tcould not pull .*: .*%s"
                             % re.escape(says.decode()))
        # A push lands as nobody's file; one outside, or in the read-only directory, does not.
        body = os.urandom(3000)
        sha = hashlib.sha256(body).digest()
        target = "%s/pushed.bin" % self.share
        st = file_stat(size=len(body), mtime_ns=1700000000 * 10**9, mode=0o640)
        self.fb.ctl(ch, file_ctl(PUT, 30, target, stat=st))
        what, m = self.fb.next_on(ch)
        self.assertEqual((what, m[1][0]), ("ctl", READY), m)
        self.fb.ctl(ch, file_ctl(BEGIN, 30, target, stat=st, chunk_size=CHUNK_SIZE))
        self.fb.ctl(ch, file_ctl(CHUNK, 30, index=0, raw_len=len(body), wire_len=len(body), sha256=sha))
        self.fb.c.send_frame(K_DATA, body, channel=ch)
        self.fb.ctl(ch, file_ctl(END, 30, target, sha256=sha, stat=file_stat(size=len(body))))
        what, m = self.fb.next_on(ch)
        self.assertEqual((what, m[1][0], m.get(18, [0])[0]), ("ctl", DONE, 0), m)
        st = os.stat(target)
        self.assertEqual((st.st_uid, stat.S_IMODE(st.st_mode)), (self.nobody.pw_uid, 0o640))
        with open(target, "rb") as f:
            self.assertEqual(f.read(), body)
        self.assertEqual(w.expect("ACTIVITY"), "ACTIVITY S-8\talice\tis pushing %s (3.0 kB)" % target)
        for i, (path, says) in enumerate((("%s/x" % self.out, b"is outside"), ("%s/x" % self.ro, b"read-only"),
                                          ("%s/out/x" % self.share, b"leads outside"), (self.share, b"itself"))):
            self.fb.ctl(ch, file_ctl(PUT, 40 + i, path, stat=file_stat(size=1)))
            what, m = self.fb.next_on(ch)
            self.assertEqual((what, m[1][0]), ("ctl", ERROR), (path, m))
            self.assertIn(says, m[19][0], path)
        self.assertEqual(sorted(os.listdir(self.out)), ["secret"])
        self.assertEqual(os.listdir(self.ro), ["log.txt"])

    def test_session_end_closes_its_file_channels(self):
        self.need_engine()
        self.fb.grant(9, ACCESS_FILES)
        ch, ok, _ = self.fb.open_files(9)
        self.assertTrue(ok)
        r = self.fb.request(16, pb_varint(1, 9) + pb_bytes(2, "the ticket was closed"))
        self.assertIn(16, r)
        what, m = self.fb.next_on(ch)
        self.assertEqual(what, "close", m)
        self.assertEqual(m[1][0], ERR_DENIED)
        self.assertIn(b"the ticket was closed", m[2][0])
        self.a.wait_for(r'msg="channel closed" session=S-9')


if __name__ == "__main__":
    unittest.main()
