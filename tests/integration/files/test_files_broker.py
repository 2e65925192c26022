"""The broker's side of file transfer: a CHANNEL_FILES channel is relayed only under a
session with files access on a device that serves files, and the broker writes one audit
entry and one ticket event per file on the device's word, never the console's. The real
broker and console on 127.0.0.1; the device is spoken by hand (a fake agent that announces
CAP_FILES, says yes to consent, and sends what an honest or a hostile agent would), and so
is the technician's side of the channel.

Run by ctest as `integration.files_broker` (TT_BIN_DIR names the build directory)."""

import hashlib
import json
import os
import select
import socket
import sqlite3
import subprocess
import time
import unittest

from harness import (K_CH_ACCEPT, K_CH_CLOSE, K_CH_OPEN, K_CH_REJECT, K_HELLO, K_PING, K_PONG, K_REQUEST,
                     K_RESPONSE, K_WELCOME, ROLE_AGENT, ROLE_TECHNICIAN, Pki, TetherTestCase, WireClient, binary,
                     hello_body, pb_bytes, pb_parse, pb_varint)
from test_session import SessionWorld

K_WINDOW, K_DATA = 10, 32
FF_ZSTD, FF_CTRL = 0x01, 0x04
CH_FILES = 5
CAP_ECHO, CAP_SHELL, CAP_FILES = 4, 8, 16
ROLE_ADMIN = 3
ERR_VERSION, ERR_NOT_FOUND, ERR_DENIED = 2, 7, 11
CONSENT_GRANTED = 1
(FILE_GET, FILE_PUT, FILE_LIST, FILE_MKDIR, FILE_READY, FILE_BEGIN, FILE_CHUNK, FILE_END, FILE_DONE,
 FILE_ENTRIES, FILE_ERROR, FILE_OK) = range(1, 13)
HELD_MAX, INFLIGHT_MAX = 128, 256  # TT_FILE_RECORDS_HELD_MAX, TT_FILE_RECORDS_INFLIGHT_MAX
WINDOW = 1 << 20


def filectl(type_, id_, path=None, size=None, sha=None, code=None, message=None, entries=(), last=False,
            recursive=False):
    """A ChannelControl{file: FileCtl}, encoded by hand."""
    b = pb_varint(1, type_) + pb_varint(2, id_)
    if path is not None:
        b += pb_bytes(3, path)
    if size is not None:
        b += pb_bytes(4, pb_varint(3, size))
    if recursive:
        b += pb_varint(6, 1)
    if sha is not None:
        b += pb_bytes(17, sha)
    if code is not None:
        b += pb_varint(18, code)
    if message is not None:
        b += pb_bytes(19, message)
    for e in entries:
        b += pb_bytes(20, pb_bytes(1, e) + pb_varint(2, 1) + pb_varint(3, 10))
    if last:
        b += pb_varint(21, 1)
    return pb_bytes(5, b)


class Peer:
    """One side spoken by hand: answers pings, keeps what came per channel."""

    def __init__(self, c):
        self.c = c
        self.answers = {}   # channel -> (kind, fields) of CH_ACCEPT / CH_REJECT
        self.opens = {}     # channel -> fields of a CH_OPEN
        self.data = []      # (channel, flags, body)
        self.windows = []   # (channel, bytes)
        self.closes = {}    # channel -> fields of a CH_CLOSE
        self.consents = []  # fields of ConsentRequests

    def poll(self, timeout=0.02):
        try:
            kind, flags, ch, body = self.c.read_frame(timeout)
        except TimeoutError:
            return False
        if kind == K_PING:
            self.c.send_frame(K_PONG, pb_varint(1, pb_parse(body).get(1, [0])[0]))
        elif kind == K_DATA:
            self.data.append((ch, flags, body))
        elif kind == K_WINDOW:
            self.windows.append((ch, pb_parse(body).get(1, [0])[0]))
        elif kind in (K_CH_ACCEPT, K_CH_REJECT):
            self.answers[ch] = (kind, pb_parse(body))
        elif kind == K_CH_CLOSE:
            self.closes[ch] = pb_parse(body)
            self.c.send_frame(K_CH_CLOSE, b"", channel=ch)  # the crossing close
        else:
            self.other(kind, ch, body)
        return True

    def other(self, kind, ch, body):
        pass

    def ctl(self, ch, body, flags=FF_CTRL):
        self.c.send_frame(K_DATA, body, channel=ch, flags=flags)

    def ctls(self, ch):
        """The FileCtl fields of each in-band control that came on ch."""
        out = []
        for got, flags, body in self.data:
            if got == ch and flags & FF_CTRL:
                try:
                    out.append(pb_parse(pb_parse(body)[5][0]))
                except (ValueError, KeyError):
                    out.append(None)
        return out


class FakeAgent(Peer):
    """dev1 by hand: says yes to every consent request and accepts every open."""

    def other(self, kind, ch, body):
        if kind == K_REQUEST:
            f = pb_parse(body)
            if 17 in f:
                self.consents.append(pb_parse(f[17][0]))
                answer = pb_varint(1, CONSENT_GRANTED) + pb_bytes(2, "sam")
                self.c.send_frame(K_RESPONSE, pb_varint(1, f[1][0]) + pb_bytes(17, answer))
        elif kind == K_CH_OPEN:
            self.opens[ch] = pb_parse(body)
            self.c.send_frame(K_CH_ACCEPT, pb_varint(1, WINDOW), channel=ch)


class FilesBrokerTest(SessionWorld, TetherTestCase):
    maxDiff = None

    @classmethod
    def setUpClass(cls):
        cls.pki = Pki()
        for role, name in (("technician", "tech"), ("admin", "boss"), ("agent", "dev1")):
            cls.pki.issue(role, name)

    # -- the world ---------------------------------------------------------------------------

    def fake_world(self, caps=CAP_ECHO | CAP_SHELL | CAP_FILES, version="it-agent/2.0", broker_extra=()):
        self.b = self.h.start_broker(extra=list(broker_extra))
        c = WireClient(self.b.port, self.pki.ca, self.pki.cert("dev1"), self.pki.key("dev1"))
        self.addCleanup(c.close)
        c.send_frame(K_HELLO, hello_body(ROLE_AGENT, software_version=version, hostname="dev1.example")
                     + pb_varint(4, caps))
        kind, _, _, body = c.read_control(answer_pings=True)
        self.assertEqual(kind, K_WELCOME, pb_parse(body))
        self.agent = FakeAgent(c)
        self.peers = [self.agent]
        self.h.wait_device(self.b.addr, "dev1")
        return self.agent

    def wire(self, who="tech"):
        c = WireClient(self.b.port, self.pki.ca, self.pki.cert(who), self.pki.key(who))
        self.addCleanup(c.close)
        c.handshake_hello(role=ROLE_ADMIN if who == "boss" else ROLE_TECHNICIAN)
        p = Peer(c)
        self.peers.append(p)
        return p

    def until(self, what, pred, timeout=15.0):
        """Serve every peer until pred() holds."""
        deadline = time.monotonic() + timeout
        while not pred():
            if time.monotonic() > deadline:
                raise AssertionError("not within %.0fs: %s" % (timeout, what))
            for p in self.peers:
                while p.poll(0.01):
                    pass

    def run_serving(self, args, who="tech", timeout=30.0):
        """A console command, the fake agent served while it runs."""
        p = subprocess.Popen(self.console_argv(args, who), env=self.h.env, cwd=self.h.dir, stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.addCleanup(lambda: p.poll() is None and (p.kill(), p.wait()))
        self.until("%s to finish" % " ".join(args), lambda: p.poll() is not None, timeout)
        out, err = p.communicate(timeout=5)
        return p.returncode, out.decode(), err.decode()

    def session(self, tid, want):
        rc, out, err = self.run_serving(["session", "open", "--device", "dev1", "--ticket", tid, "--want", want])
        self.assertEqual(rc, 0, err)
        sid = out.split()[0]
        self.assertRegex(sid, r"^S-\d+$")
        return int(sid[2:])

    def open_files(self, con, ch, session):
        body = pb_varint(1, CH_FILES) + pb_bytes(2, "dev1") + pb_varint(3, WINDOW)
        if session:
            body += pb_varint(8, session)
        con.c.send_frame(K_CH_OPEN, body, channel=ch)
        self.until("an answer to the open", lambda: ch in con.answers)
        return con.answers[ch]

    def files_channel(self, want="files"):
        """A ticket, a session with `want`, and an open files channel: (tid, sid, console,
        console's channel, agent's channel)."""
        tid = self.new_ticket()
        sid = self.session(tid, want)
        con = self.wire()
        kind, f = self.open_files(con, 1, sid)
        self.assertEqual(kind, K_CH_ACCEPT, f)
        self.assertEqual(len(self.agent.opens), 1)
        ach = list(self.agent.opens)[0]
        return tid, sid, con, 1, ach

    def audit_of(self, action):
        return [e for e in self.audit() if e["action"] == action]

    def wait_audit(self, action, n, timeout=15.0):
        deadline = time.monotonic() + timeout
        while True:
            got = self.audit_of(action)
            if len(got) >= n:
                return got
            if time.monotonic() > deadline:
                raise AssertionError("%d %s entries, want %d: %s" % (len(got), action, n, self.actions()))
            time.sleep(0.05)

    def events_of(self, tid, kind):
        return [e for e in self.ticket(tid)["events"] if e["kind"] == kind]

    @staticmethod
    def has(ctls, type_, id_):
        return any(m and m.get(1) == [type_] and m.get(2) == [id_] for m in ctls)

    def pull(self, con, ch, ach, fid, path, content):
        """An honest pull of one file: GET from the console, BEGIN CHUNK data END from the
        device, DONE from the console once all of it arrived there."""
        sha = hashlib.sha256(content).digest()
        con.ctl(ch, filectl(FILE_GET, fid, path=path))
        self.until("the GET at the device", lambda: self.has(self.agent.ctls(ach), FILE_GET, fid))
        self.agent.ctl(ach, filectl(FILE_BEGIN, fid, size=len(content)))
        self.agent.ctl(ach, filectl(FILE_CHUNK, fid, sha=hashlib.sha256(content).digest()))
        if content:
            self.agent.c.send_frame(K_DATA, content, channel=ach)
        self.agent.ctl(ach, filectl(FILE_END, fid, path=path, size=len(content), sha=sha))
        self.until("the END at the console", lambda: self.has(con.ctls(ch), FILE_END, fid))
        con.ctl(ch, filectl(FILE_DONE, fid, path=path, size=len(content), sha=sha, code=0))
        return sha.hex()

    # -- who may open one ------------------------------------------------------------------

    def test_a_files_channel_needs_a_session_with_files_access(self):
        self.fake_world()
        tid = self.new_ticket()
        shell_sid = self.session(tid, "shell")
        con = self.wire()
        for ch, sid, needle in ((1, 0, "--ticket"), (3, shell_sid, "S-%d does not include files access" % shell_sid),
                                (5, shell_sid + 100, "not a live session of yours")):
            kind, f = self.open_files(con, ch, sid)
            self.assertEqual((kind, f.get(1)), (K_CH_REJECT, [ERR_DENIED]), f)
            self.assertIn(needle, f[2][0].decode())
        # An admin without a ticket gets no file channel either: files are personal data.
        boss = self.wire("boss")
        kind, f = self.open_files(boss, 1, 0)
        self.assertEqual((kind, f.get(1)), (K_CH_REJECT, [ERR_DENIED]), f)
        self.assertIn("--ticket", f[2][0].decode())
        self.assertEqual(self.agent.opens, {}, "a refused open reached the device")
        refused = [e for e in self.wait_audit("channel-refused", 4) if e["detail"]["kind"] == "files"]
        self.assertEqual([e["actor"] for e in refused], ["tech", "tech", "tech", "boss"], refused)
        self.assertTrue(all(e["target"] == "dev1" for e in refused), refused)
        # With files access the employee is asked for it, and the channel opens, as bulk.
        sid = self.session(tid, "files")
        self.assertEqual(self.agent.consents[-1].get(5), [2], self.agent.consents)  # ACCESS_FILES
        kind, f = self.open_files(con, 7, sid)
        self.assertEqual(kind, K_CH_ACCEPT, f)
        (ach, o), = self.agent.opens.items()
        self.assertEqual((o[1], o[4], o[8], o[7]), ([CH_FILES], [1], [sid], [b"tech"]), o)
        opens = [e for e in self.wait_audit("channel-open", 1) if e["detail"]["kind"] == "files"]
        self.assertEqual([(e["actor"], e["detail"]["session"]) for e in opens], [("tech", "S-%d" % sid)])
        self.assertIn("files channel of S-%d opened" % sid, json.dumps(self.ticket(tid)["events"]))

    def test_an_agent_that_does_not_serve_files_is_not_asked(self):
        self.fake_world(caps=CAP_ECHO | CAP_SHELL, version="it-agent/0.9")
        tid = self.new_ticket()
        rc, out, err = self.run_serving(["session", "open", "--device", "dev1", "--ticket", tid, "--want", "files"])
        self.assertEqual(rc, 1, err)
        self.assertIn("this agent does not serve files (version it-agent/0.9)", err)
        self.assertEqual(self.agent.consents, [], "the employee was asked for what the device cannot give")
        con = self.wire()
        kind, f = self.open_files(con, 1, 0)
        self.assertEqual((kind, f.get(1)), (K_CH_REJECT, [ERR_VERSION]), f)
        self.assertEqual(f[2][0].decode(), "this agent does not serve files (version it-agent/0.9)")
        self.assertEqual(self.agent.opens, {})

    # -- records, on the device's word ------------------------------------------------------

    def test_a_pull_is_recorded_with_its_sha256_and_the_console_word_is_not(self):
        self.fake_world()
        tid, sid, con, ch, ach = self.files_channel()
        content = os.urandom(3000)
        sha = self.pull(con, ch, ach, 1, "/var/log/syslog", content)
        # What the console says is relayed, never recorded: a DONE as if a push had landed,
        # an END as if it had sent a file.
        con.ctl(ch, filectl(FILE_DONE, 9, path="/tmp/not-pushed", size=5, sha=b"\x11" * 32, code=0))
        con.ctl(ch, filectl(FILE_END, 10, path="/tmp/not-sent", size=5, sha=b"\x22" * 32))
        self.until("the console's words at the device", lambda: len(self.agent.ctls(ach)) >= 4)
        # A second pull: once its entry is there, anything recorded before it is too.
        sha2 = self.pull(con, ch, ach, 2, "/home/sam/crash.dmp", b"")
        pulls = self.wait_audit("file-pull", 2)
        self.assertEqual([(e["actor"], e["target"]) for e in pulls], [("tech", "dev1")] * 2)
        d = pulls[0]["detail"]
        self.assertEqual((d["session"], d["ticket"], d["direction"], d["path"], d["size"], d["sha256"]),
                         ("S-%d" % sid, tid, "pull", "/var/log/syslog", "3000", sha))
        self.assertEqual((pulls[1]["detail"]["size"], pulls[1]["detail"]["sha256"]), ("0", sha2))
        self.assertEqual(self.audit_of("file-push"), [])
        self.assertNotIn("/tmp/not-", json.dumps(self.audit()))
        ev = self.events_of(tid, "file-pulled")
        self.assertEqual([e["text"] for e in ev],
                         ["/var/log/syslog (3000 bytes, sha256 %s)" % sha,
                          "/home/sam/crash.dmp (0 bytes, sha256 %s)" % sha2])
        self.assertEqual([e["actor"] for e in ev], ["tech", "tech"])
        self.assertEqual(self.events_of(tid, "file-pushed"), [])
        # The chunk bytes went through untouched.
        self.assertIn((ch, 0, content), con.data)

    def test_pushes_refusals_and_listings_are_recorded(self):
        self.fake_world()
        tid, sid, con, ch, ach = self.files_channel()
        a = self.agent
        body = b"[printer]\nqueue=3\n"
        sha = hashlib.sha256(body).digest()
        # A push that lands: the device's DONE is the record.
        con.ctl(ch, filectl(FILE_PUT, 3, path="/home/sam/.config/app/settings.ini", size=len(body)))
        a.ctl(ach, filectl(FILE_READY, 3))
        con.ctl(ch, filectl(FILE_BEGIN, 3, size=len(body)))
        con.c.send_frame(K_DATA, body, channel=ch)
        con.ctl(ch, filectl(FILE_END, 3, path="/home/sam/.config/app/settings.ini", size=len(body), sha=sha))
        self.until("the pushed file at the device", lambda: (ach, 0, body) in a.data)
        a.ctl(ach, filectl(FILE_DONE, 3, path="/home/sam/.config/app/settings.ini", size=len(body), sha=sha, code=0))
        # One that fails on the device (a full disk), one refused (a path out of the roots),
        # an error for a request the broker never saw, a listing in two batches, a directory.
        con.ctl(ch, filectl(FILE_PUT, 4, path="/tmp/big.iso", size=1 << 30))
        a.ctl(ach, filectl(FILE_DONE, 4, path="/tmp/big.iso", code=10, message="no space left on device"))
        con.ctl(ch, filectl(FILE_GET, 5, path="/home/sam/../../etc/shadow"))
        self.until("the GET at the device", lambda: self.has(a.ctls(ach), FILE_GET, 5))
        a.ctl(ach, filectl(FILE_ERROR, 5, code=ERR_DENIED, message="outside the allowed roots"))
        a.ctl(ach, filectl(FILE_ERROR, 77, code=ERR_NOT_FOUND, message="no such op"))
        con.ctl(ch, filectl(FILE_LIST, 6, path="/var/log", recursive=True))
        con.ctl(ch, filectl(FILE_MKDIR, 7, path="/tmp/installer"))
        self.until("the LIST and MKDIR at the device", lambda: self.has(a.ctls(ach), FILE_MKDIR, 7))
        a.ctl(ach, filectl(FILE_ENTRIES, 6, entries=["syslog", "auth.log"]))
        a.ctl(ach, filectl(FILE_ENTRIES, 6, entries=["kern.log"], last=True))
        a.ctl(ach, filectl(FILE_OK, 7))
        a.ctl(ach, filectl(FILE_END, 8, path="/etc/hostname", size=4, sha=b"\x33" * 32))  # the last one
        self.wait_audit("file-pull", 1)
        s, t = "S-%d" % sid, tid
        push, = self.audit_of("file-push")
        self.assertEqual(push["detail"], {"session": s, "ticket": t, "direction": "push",
                                          "path": "/home/sam/.config/app/settings.ini", "size": str(len(body)),
                                          "sha256": sha.hex()})
        failed, = self.audit_of("file-push-failed")
        self.assertEqual((failed["detail"]["path"], failed["detail"]["message"]), ("/tmp/big.iso",
                                                                                  "no space left on device"))
        refused = self.audit_of("file-refused")
        self.assertEqual([(e["detail"]["op"], e["detail"]["path"], e["detail"]["message"]) for e in refused],
                         [("get", "/home/sam/../../etc/shadow", "outside the allowed roots"),
                          ("unknown", "", "no such op")])
        self.assertEqual(refused[0]["detail"]["code"], "access denied")
        listed, = self.audit_of("file-list")  # one entry for one LIST, however many batches
        self.assertEqual(listed["detail"], {"session": s, "ticket": t, "path": "/var/log", "recursive": "yes"})
        made, = self.audit_of("file-mkdir")
        self.assertEqual(made["detail"]["path"], "/tmp/installer")
        self.assertTrue(all(e["actor"] == "tech" and e["target"] == "dev1"
                            for e in [push, failed, listed, made] + refused))
        ev = self.ticket(tid)["events"]
        kinds = [e["kind"] for e in ev if e["kind"].startswith("file-")]
        self.assertEqual(kinds, ["file-pushed", "file-push-failed", "file-refused", "file-refused", "file-pulled"])
        texts = [e["text"] for e in ev if e["kind"].startswith("file-")]
        self.assertEqual(texts[0], "/home/sam/.config/app/settings.ini (%d bytes, sha256 %s)" % (len(body), sha.hex()))
        self.assertEqual(texts[2], "get /home/sam/../../etc/shadow: outside the allowed roots")

    # -- hostile bytes ------------------------------------------------------------------------

    def test_malformed_controls_are_relayed_without_a_record(self):
        self.fake_world()
        tid, sid, con, ch, ach = self.files_channel()
        a = self.agent
        garbage = [b"\xff\xff\xff\xff", b"\x2a\x05\x08\x08\x10", b"\x0a" * 200,
                   pb_bytes(5, b"\x08\x08\x10\x01\x1a\xff\xff\xff\xff\x0f")]  # a length past the end
        for g in garbage:
            a.ctl(ach, g)
            con.ctl(ch, g)
        self.until("the garbage relayed both ways",
                   lambda: [b for c, f, b in con.data if f & FF_CTRL] == garbage
                   and [b for c, f, b in a.data if f & FF_CTRL] == garbage)
        # Hostile path and message bytes: control characters, an escape sequence, bytes that
        # are not UTF-8, a backslash, a path longer than any record holds.
        hostile = b"/tmp/\x1b[31mred\x07\n\xff\xfe\\x41\xc3\xa9"
        a.ctl(ach, filectl(FILE_END, 1, path=hostile, size=1, sha=b"\x44" * 32))
        a.ctl(ach, filectl(FILE_ERROR, 2, code=ERR_DENIED, message=b"no\x00pe\x1b]0;owned\x07"))
        a.ctl(ach, filectl(FILE_END, 3, path=b"/" + b"d" * 5000, size=1, sha=b"\x55"))
        pulls = self.wait_audit("file-pull", 2)
        self.assertTrue(self.b.alive())
        refused, = self.audit_of("file-refused")
        for e in pulls + [refused]:
            self.assertIsInstance(e["detail"], dict, e)  # still one JSON object
            for v in e["detail"].values():
                self.assertFalse(any(ord(c) < 0x20 or 0x7f <= ord(c) < 0xa0 for c in v), e)
        self.assertEqual(pulls[0]["detail"]["path"], "/tmp/\\x1b[31mred\\x07\\x0a\\xff\\xfe\\x5cx41\u00e9")
        self.assertEqual(pulls[1]["detail"]["sha256"], "invalid (1 bytes)")
        self.assertTrue(pulls[1]["detail"]["path"].startswith("/ddd") and pulls[1]["detail"]["path"].endswith("..."))
        self.assertEqual(pulls[1]["detail"].get("truncated"), "yes")
        self.assertEqual(refused["detail"]["message"], "no\\x00pe\\x1b]0;owned\\x07")
        ev = self.events_of(tid, "file-pulled") + self.events_of(tid, "file-refused")
        self.assertEqual(len(ev), 3)
        for e in ev:
            self.assertFalse(any(ord(c) < 0x20 for c in e["text"]), e)
        self.assertLessEqual(max(len(e["text"].encode()) for e in ev), 256)
        # Nothing else was recorded: the garbage made no entry.
        self.assertEqual(len([x for x in self.actions() if x.startswith("file-")]), 3)
        # The channel still works.
        sha = self.pull(con, ch, ach, 4, "/etc/motd", b"hello")
        self.assertEqual(self.wait_audit("file-pull", 3)[2]["detail"]["sha256"], sha)

    def test_a_compressed_control_from_the_device_ends_the_channel(self):
        self.fake_world()
        tid, sid, con, ch, ach = self.files_channel()
        # A FileCtl the broker cannot read without inflating could hide a file from the
        # records: the channel ends, saying why, and the broker lives on.
        self.agent.ctl(ach, b"\x28\xb5\x2f\xfd" + b"\x00" * 8, flags=FF_CTRL | FF_ZSTD)
        self.until("the channel closed on both sides", lambda: ch in con.closes and ach in self.agent.closes)
        self.assertIn("compressed file control message from the device", con.closes[ch][2][0].decode())
        close, = [e for e in self.wait_audit("channel-close", 1) if e["detail"]["kind"] == "files"]
        self.assertIn("compressed", close["detail"]["reason"])
        # The session goes on: another channel opens under it.
        kind, f = self.open_files(con, 3, sid)
        self.assertEqual(kind, K_CH_ACCEPT, f)

    # -- a store that cannot keep up ----------------------------------------------------------

    def test_records_wait_for_a_stuck_store_and_none_is_lost(self):
        self.fake_world(broker_extra=["--store-busy-timeout", "120s"])
        tid, sid, con, ch, ach = self.files_channel()
        a = self.agent
        db = sqlite3.connect(os.path.join(self.b.data_dir, "broker.db"), isolation_level=None, timeout=5)
        self.addCleanup(db.close)
        # The store is held (a backup, an admin's sqlite3 shell): the relay's records queue
        # up to its share, then wait in the relay, which stops passing credit on.
        db.execute("BEGIN IMMEDIATE")
        first = INFLIGHT_MAX + 44
        for i in range(first):
            a.ctl(ach, filectl(FILE_ERROR, 1000 + i, code=ERR_NOT_FOUND, message="gone"))
        self.until("the errors at the console", lambda: len(con.ctls(ch)) == first)
        before = len(a.windows)
        con.c.send_frame(K_WINDOW, pb_varint(1, 4096), channel=ch)
        con.c.send_frame(K_DATA, b"after the credit", channel=ch)
        # Control frames go out first: had the credit been passed on, it would be here now.
        self.until("the data after the credit", lambda: (ach, 0, b"after the credit") in a.data)
        self.assertEqual(a.windows[before:], [], "credit passed on while records wait")
        db.execute("COMMIT")
        self.until("the held credit passed on", lambda: (ach, 4096) in a.windows, timeout=30)
        self.assertEqual(len(self.wait_audit("file-refused", first, timeout=30)), first)
        # Held again, and the device keeps going: at the relay's bound the channel ends,
        # saying why, and every record made up to then is still written.
        db.execute("BEGIN IMMEDIATE")
        second = INFLIGHT_MAX + HELD_MAX
        for i in range(second):
            a.ctl(ach, filectl(FILE_ERROR, 5000 + i, code=ERR_NOT_FOUND, message="gone again"))
        self.until("the channel closed", lambda: ch in con.closes and ach in a.closes, timeout=30)
        self.assertIn("cannot record files as fast as they arrive", con.closes[ch][2][0].decode())
        self.assertIn("run it again to resume", a.closes[ach][2][0].decode())
        db.execute("COMMIT")
        self.assertEqual(len(self.wait_audit("file-refused", first + second, timeout=60)), first + second)
        events = db.execute("SELECT count(*) FROM ticket_events WHERE kind = 'file-refused'").fetchone()[0]
        self.assertEqual(events, first + second)
        self.assertNotIn("file record not written", self.b.log())
        self.assertTrue(self.b.alive())

    # -- the employee's question ------------------------------------------------------------

    def test_the_employee_is_asked_for_file_access(self):
        """tether-agent prompt, fed by a stand-in for the agent's consent socket: the question
        names file access in words (the wire says "files")."""
        path = os.path.join(self.h.dir, "consent.sock")
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(srv.close)
        srv.bind(path)
        srv.listen(1)
        srv.settimeout(15)
        pr = subprocess.Popen([binary("tether-agent"), "prompt", "--consent-socket", path], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=self.h.env, cwd=self.h.dir)
        self.addCleanup(lambda: (pr.poll() is None and (pr.kill(), pr.wait()), pr.stdin.close(), pr.stdout.close()))
        s, _ = srv.accept()
        self.addCleanup(s.close)
        s.settimeout(15)
        self.assertEqual(s.recv(64), b"WATCH\n")
        s.sendall(b"PROMPT 7\ttech\tT-3\tfiles\t1800\t60\tcrash dumps\n"
                  b"PROMPT 8\ttech\tT-3\tshell,files,diag\t1800\t60\tcrash dumps\n")
        pr.stdin.write(b"y\n")
        pr.stdin.flush()
        buf = b""
        deadline = time.monotonic() + 15
        while b"ANSWER 7 yes" not in buf:
            self.assertLess(time.monotonic(), deadline, "no answer from the prompt")
            buf += s.recv(4096)
        s.sendall(b"STARTED S-4\ttech\tT-3\tfiles\t4102444800\tgranted\tcrash dumps\n")
        out = b""
        while b"connected to this computer" not in out or b"diag access" not in out:
            self.assertLess(time.monotonic(), deadline, "the prompt printed %r" % out)
            r, _, _ = select.select([pr.stdout], [], [], 0.2)
            if r:
                out += os.read(pr.stdout.fileno(), 4096)
        self.assertIn(b"tech asks for file access for 30 min under T-3: \"crash dumps\"", out)
        self.assertIn(b"tech asks for shell, file and diag access for 30 min under T-3", out)
        self.assertIn(b"tech is connected to this computer under T-3 (file access until", out)


if __name__ == "__main__":
    unittest.main()
