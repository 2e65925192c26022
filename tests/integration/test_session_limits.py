"""Support sessions at their limits and under bad input: recordings that cannot be written,
the agent's local consent socket spoken to by the wrong user or too much, the broker's
bounds on sessions and commands, and a console using a session that is not its own. The
real programs on 127.0.0.1, as in test_session.

Run by ctest as `integration.session_limits` (TT_BIN_DIR names the build directory)."""

import json
import os
import pwd
import re
import select
import shutil
import socket
import subprocess
import time
import unittest

from harness import (K_CH_OPEN, K_CH_REJECT, K_REQUEST, K_RESPONSE, ROLE_TECHNICIAN, Pki, TetherTestCase,
                     WireClient, binary, pb_bytes, pb_parse, pb_varint)
from test_session import ME, PtyConsole, SessionWorld, Watcher

CH_SHELL, CH_EXEC = 3, 4
COMMAND_MAX = 32 * 1024  # TT_EXEC_COMMAND_MAX
ROLE_ADMIN = 3

# The broker's file-size limit in the disk-full test: far more than its store needs (a few
# hundred KiB here), far less than the shell prints.
FSIZE = 4 * 1024 * 1024


def local_connect(path, timeout=5.0):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(path)
    return s


_pending = {}  # id(socket) -> bytes read past the last line returned


def read_line(s, timeout=5.0):
    """One line from a local socket; None at EOF before a whole line. Bytes after the line
    (two lines may arrive in one read) wait for the next call."""
    s.settimeout(timeout)
    buf = _pending.pop(id(s), b"")
    while b"\n" not in buf:
        d = s.recv(4096)
        if not d:
            return None
        buf += d
    line, rest = buf.split(b"\n", 1)
    if rest:
        _pending[id(s)] = rest
    return line.decode("utf-8", "replace")


def closed_by_peer(s, timeout=5.0):
    """True if the agent closes s (EOF or reset) within timeout, whatever it sent first."""
    s.settimeout(timeout)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if not s.recv(4096):
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False
    return False


def wait_text(con, pattern, timeout):
    """Like PtyConsole.wait_output, but also after the console exited: the terminal may
    still hold its last lines (megabytes of output were just drained)."""
    rx = re.compile(pattern)
    deadline = time.monotonic() + timeout
    exited_at = None
    while True:
        out = con.output()
        m = rx.search(out)
        if m:
            return m
        now = time.monotonic()
        if exited_at is None and con.p.poll() is not None:
            exited_at = now
        if now > deadline or (exited_at is not None and now - exited_at > 3.0):
            raise AssertionError("console (rc=%s, drain alive %s) did not print %r; output ends:\n%r"
                                 % (con.p.poll(), con.t.is_alive(), pattern, out[-300:]))
        time.sleep(0.05)


class SessionLimitsTest(SessionWorld, TetherTestCase):
    maxDiff = None

    @classmethod
    def setUpClass(cls):
        cls.pki = Pki()
        for role, name in (("technician", "tech"), ("technician", "tech2"), ("admin", "boss"),
                           ("agent", "dev1"), ("agent", "dev2"), ("agent", "dev3")):
            cls.pki.issue(role, name)

    # -- helpers (the shared ones come from test_session.SessionWorld) ------------------------

    def watcher(self):
        w = Watcher(self.sock)
        self.addCleanup(w.close)
        self.assertEqual(w.expect("OK"), "OK")
        return w

    def assert_serving(self):
        """The broker still answers, and the device is still connected to it."""
        self.assertTrue(self.b.alive(), "the broker died:\n" + self.b.log()[-3000:])
        self.assertTrue(self.a.alive(), "the agent died:\n" + self.a.log()[-3000:])
        names = [d.get("device") for d in self.h.devices(self.b.addr) if d.get("online")]
        self.assertIn("dev1", names)

    def assert_agent_serving(self):
        """The agent still answers on its consent socket."""
        self.assertTrue(self.a.alive(), "the agent died:\n" + self.a.log()[-3000:])
        s = local_connect(self.sock)
        try:
            s.sendall(b"SESSIONS\n")
            ln = read_line(s)
            while ln is not None and ln.startswith("SESSION "):
                ln = read_line(s)
            self.assertEqual(ln, "OK")
        finally:
            s.close()

    def session_open(self, tid, extra=()):
        """A granted session (policy unattended); its id."""
        r = self.tech(["session", "open", "--device", "dev1", "--ticket", tid, "--want", "shell"]
                      + list(extra))
        self.assertEqual(r.rc, 0, r)
        sid = r.out.split()[0]
        self.assertRegex(sid, r"^S-\d+$")
        return sid

    # -- 1. recordings that cannot be written ------------------------------------------------

    def test_recording_not_creatable_refuses_shell(self):
        """No recording file, no shell: refused with the reason, quickly; commands (which are
        not recorded) still run."""
        self.world(policy="unattended")
        tid = self.new_ticket()
        rec_dir = os.path.join(self.b.data_dir, "recordings")
        shutil.rmtree(rec_dir)
        with open(rec_dir, "w") as f:
            f.write("not a directory\n")
        t0 = time.monotonic()
        con = self.pty_console(["shell", "dev1", "--ticket", tid])
        wait_text(con, rb"recording.*\n", timeout=15)
        rc = con.wait_exit(timeout=5)
        took = time.monotonic() - t0
        out = con.output()
        self.assertNotEqual(rc, 0, out)
        self.assertIn(b"recording", out)
        self.assertIn(b"unrecorded", out)
        self.assertLess(took, 10, "the refusal took %.1fs" % took)
        self.assertNotRegex(out, rb"[#$] $")  # no shell prompt ever showed
        r = self.tech(["replay", "S-1", "--speed", "0"])  # nothing was recorded: says so
        self.assertEqual(r.rc, 1, r)
        self.assertIn("R-1 is incomplete", r.err)
        r = self.tech(["exec", "dev1", "--ticket", tid, "--", "echo", "exec-ok"])
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(r.out, "exec-ok\n")
        acts = self.actions()
        self.assertIn("recording-failed", acts)
        fail = [e for e in self.audit() if e["action"] == "recording-failed"][0]
        self.assertIn("session", json.dumps(fail))
        self.assert_serving()

    def test_recording_disk_full_ends_shell(self):
        """The recording's file stops growing mid-session (EFBIG here, as ENOSPC would): the
        shell ends with the reason, the broker lives on and keeps its store."""
        if not shutil.which("prlimit"):
            self.skipTest("needs prlimit")
        self.world(policy="unattended", wrapper=["prlimit", "--fsize=%d" % FSIZE, "--"])
        tid = self.new_ticket()
        # Pipes, not a terminal: megabytes through a test's pseudo-terminal sometimes lose
        # their last lines, and the last line is what this test is about.
        con = subprocess.Popen(self.console_argv(["shell", "dev1", "--ticket", tid]), env=self.h.env,
                               cwd=self.h.dir, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
        self.addCleanup(lambda: con.poll() is None and (con.kill(), con.wait()))
        out, err = con.communicate(b"head -c 30000000 /dev/urandom | base64\n", timeout=25)
        self.assertEqual(con.returncode, 255, err)
        self.assertGreater(len(out), 1000000)  # the shell ran, and ran a while
        self.assertLess(len(out), 30000000)    # and was stopped
        self.assertRegex(err, rb"^tether: recording failed \(.*\): the session cannot continue unrecorded\n$")
        self.assert_serving()
        entries = self.audit()
        acts = [e["action"] for e in entries]
        self.assertIn("recording-failed", acts)
        self.assertIn("channel-close", acts)
        # The store was written after the failure (audit entries): it fits in the limit.
        data = self.b.data_dir
        for name in os.listdir(data):
            p = os.path.join(data, name)
            if os.path.isfile(p):
                self.assertLess(os.path.getsize(p), FSIZE, name)
        rec = os.path.join(data, "recordings", "R-1.cast.zst")
        self.assertLessEqual(os.path.getsize(rec), FSIZE)
        # What was written before the failure is kept, marked failed; replaying it says so.
        # (The audit's size is what the partial file holds, not what was produced.)
        fail = [e for e in entries if e["action"] == "recording-failed"][0]
        self.assertEqual(fail["target"], "R-1")
        self.assertEqual(int(fail["detail"]["size"]), os.path.getsize(rec), fail)
        r = self.tech(["replay", "S-1", "--speed", "0"])
        self.assertEqual(r.rc, 1, r)
        self.assertIn("R-1 is incomplete", r.err)
        self.assertEqual(len(r.err.strip().splitlines()), 1, r)
        # The session itself lives on, and commands still run under it.
        r = self.tech(["exec", "dev1", "--ticket", tid, "--", "echo", "still-here"])
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(r.out, "still-here\n")

    # -- 2. the agent's local consent socket -------------------------------------------------

    def test_local_socket_other_user_not_allowed(self):
        if os.geteuid() != 0:
            self.skipTest("needs root to become another user")
        self.world()
        os.chmod(self.h.dir, 0o711)  # nobody may reach the socket; the agent decides
        how, said = as_user("nobody", self.sock)
        self.assertIn(how, ("EOF", "RESET"), "the agent did not close a stranger: %s %r" % (how, said))
        self.assertEqual(said.splitlines()[:1], ["ERR not allowed"], said)
        self.a.wait_for(r"local client refused.*uid=65534")
        self.assert_agent_serving()

    def test_local_socket_long_line_closed(self):
        self.world()
        # A line that never ends: an error at TT_LOCAL_LINE_MAX, then the door.
        s = local_connect(self.sock)
        s.sendall(b"A" * 3000)
        self.assertIn("too long", read_line(s) or "")
        self.assertTrue(closed_by_peer(s), "the agent kept a client sending an endless line")
        s.close()
        # A long line that does end: the same.
        s = local_connect(self.sock)
        s.sendall(b"ANSWER " + b"9" * 1500 + b" yes\n")
        self.assertIn("too long", read_line(s) or "")
        self.assertTrue(closed_by_peer(s))
        s.close()
        # 1023 bytes and a LF: the longest line there is; an unknown command, not a close.
        s = local_connect(self.sock)
        s.sendall(b"X" * 1023 + b"\n")
        self.assertTrue((read_line(s) or "").startswith("ERR unknown command"))
        s.sendall(b"SESSIONS\n")
        self.assertEqual(read_line(s), "OK")
        s.close()
        # NUL inside a line: refused and closed.
        s = local_connect(self.sock)
        s.sendall(b"SESS\0IONS\n")
        self.assertIn("NUL", read_line(s) or "")
        self.assertTrue(closed_by_peer(s))
        s.close()
        self.assert_agent_serving()

    def test_local_socket_client_limit(self):
        self.world()
        clients = []
        self.addCleanup(lambda: [c.close() for c in clients])
        for i in range(16):  # TT_LOCAL_CLIENTS_MAX
            s = local_connect(self.sock)
            clients.append(s)
            s.sendall(b"SESSIONS\n")
            self.assertEqual(read_line(s), "OK", "client %d" % (i + 1))
        extra = local_connect(self.sock)
        self.assertEqual(read_line(extra), "ERR too many clients")
        self.assertTrue(closed_by_peer(extra))
        extra.close()
        self.a.wait_for(r"local client refused.*full=1")
        # Everyone already in is still served; one leaving makes room.
        clients[0].sendall(b"SESSIONS\n")
        self.assertEqual(read_line(clients[0]), "OK")
        clients.pop().close()
        deadline = time.monotonic() + 5
        while True:
            s = local_connect(self.sock)
            s.sendall(b"SESSIONS\n")
            ln = read_line(s)
            if ln == "OK" or time.monotonic() > deadline:
                break
            s.close()  # the agent may not have seen the close yet
            time.sleep(0.1)
        clients.append(s)
        self.assertEqual(ln, "OK")

    def test_local_socket_bad_answers(self):
        self.world()
        w = self.watcher()
        s = local_connect(self.sock)
        self.addCleanup(s.close)
        for line, want in ((b"ANSWER 77 yes", "ERR no such prompt"),
                           (b"ANSWER P-77 no", "ERR no such prompt"),
                           (b"ANSWER 0 yes", "ERR no such prompt"),
                           (b"ANSWER -1 yes", "ERR no such prompt"),
                           (b"ANSWER 99999999999999999999 yes", "ERR"),
                           (b"ANSWER 1 maybe", "ERR usage"),
                           (b"ANSWER", "ERR usage"),
                           (b"END S-99", "ERR no such session"),
                           (b"END", "ERR no such session"),
                           (b"WATCH extra", "ERR unknown command"),
                           (b"\xff\xfe", "ERR unknown command")):
            s.sendall(line + b"\n")
            got = read_line(s)
            self.assertIsNotNone(got, line)
            self.assertTrue(got.startswith(want), "%r -> %r" % (line, got))
        # A real prompt: an id that only matches it modulo 2^32 does not answer it.
        tid = self.new_ticket()
        ex = self.spawn_bg(["exec", "dev1", "--ticket", tid, "--", "echo", "answered"])
        p = w.prompt()
        pid = int(p["id"].split("-")[-1])
        s.sendall(b"ANSWER %d yes\n" % (pid + (1 << 32)))
        got = read_line(s)
        self.assertTrue(got.startswith("ERR no such prompt"), got)
        self.assertIsNone(ex.poll(), "a wrong prompt id answered the prompt")
        w.answer(p["id"], True)
        out, err = ex.communicate(timeout=20)
        self.assertEqual(ex.returncode, 0, err)
        self.assertEqual(out, b"answered\n")
        # Answering it again: it is gone.
        s.sendall(("ANSWER %s no\n" % p["id"]).encode())
        self.assertTrue(read_line(s).startswith("ERR no such prompt"))
        self.assert_agent_serving()
        self.assert_serving()

    # -- 3. the broker's bounds on sessions ---------------------------------------------------

    def test_consent_waiting_per_device_limit(self):
        self.world()
        w = self.watcher()
        tid = self.new_ticket()
        waiting = [self.spawn_bg(["session", "open", "--device", "dev1", "--ticket", tid, "--want", "shell"])
                   for _ in range(4)]  # TT_CONSENT_PENDING_PER_DEVICE_MAX
        prompts = [w.prompt() for _ in range(4)]
        t0 = time.monotonic()
        r = self.tech(["session", "open", "--device", "dev1", "--ticket", tid, "--want", "shell"])
        self.assertEqual(r.rc, 1, r)
        self.assertLess(time.monotonic() - t0, 10)
        self.assertIn("waiting for an answer", r.err)
        self.assertEqual(len(r.err.strip().splitlines()), 1, r)
        # Another technician is refused the same way: the bound is the device's.
        tid2 = self.new_ticket(who="tech2")
        r = self.tech(["exec", "dev1", "--ticket", tid2, "--", "true"], who="tech2")
        self.assertEqual(r.rc, 1, r)
        self.assertIn("waiting for an answer", r.err)
        self.assertTrue(w.quiet(0.5), "a fifth prompt reached the device")
        for p in prompts:
            w.answer(p["id"], False)
        for p in waiting:
            out, err = p.communicate(timeout=20)
            self.assertEqual(p.returncode, 1, err)
            self.assertIn(b"refused", err)
        # Room again.
        ex = self.spawn_bg(["exec", "dev1", "--ticket", tid, "--", "echo", "room"])
        w.answer(w.prompt()["id"], True)
        out, err = ex.communicate(timeout=20)
        self.assertEqual(ex.returncode, 0, err)
        self.assertEqual(out, b"room\n")

    def test_session_longer_than_max_refused(self):
        self.world(policy="unattended", broker_extra=["--session-max", "1h"])
        tid = self.new_ticket()
        for dur in ("2h", "61m", "30d"):
            r = self.tech(["session", "open", "--device", "dev1", "--ticket", tid, "--want", "shell",
                           "--for", dur])
            self.assertNotEqual(r.rc, 0, r)
            self.assertEqual(r.out, "", r)
            self.assertRegex(r.err, r"at most|too long|session\.max|out of range", r)
            r = self.tech(["exec", "dev1", "--ticket", tid, "--for", dur, "--", "true"])
            self.assertNotEqual(r.rc, 0, r)
            self.assertRegex(r.err, r"at most|too long|session\.max|out of range", r)
        self.assertNotIn("session-request", self.actions())
        # Exactly the maximum is fine.
        sid = self.session_open(tid, ["--for", "1h"])
        r = self.tech(["sessions", "--json"])
        s = [x for x in json.loads(r.out) if x["id"] == sid][0]
        self.assertAlmostEqual(s["expires_ms"] - s["started_ms"], 3600 * 1000, delta=5000)

    def test_live_sessions_per_device_limit(self):
        """TT_SESSIONS_PER_DEVICE_MAX (16) live grants on one device; the next is refused busy
        until one ends. Each needs its own ticket (a second open on a ticket reuses its grant)."""
        self.world(policy="unattended")
        sids = [self.session_open(self.new_ticket(summary="ticket %d" % i)) for i in range(16)]
        self.assertEqual(len(set(sids)), 16)
        tid = self.new_ticket(summary="one too many")
        r = self.tech(["session", "open", "--device", "dev1", "--ticket", tid, "--want", "shell"])
        self.assertEqual(r.rc, 1, r)
        self.assertIn("dev1 has 16 live sessions", r.err)
        self.assertEqual(self.tech(["session", "end", sids[0]]).rc, 0)
        self.session_open(tid)

    def test_ticket_listing_pages(self):
        """More tickets than one page (TT_TICKET_PAGE_MAX, 150): the console pages through
        them all, in order, and the broker never answers with more than a page."""
        self.world(policy="unattended")
        total = 160
        with WireClient(self.b.port, self.pki.ca, self.pki.cert("tech"), self.pki.key("tech")) as c:
            c.handshake_hello(role=ROLE_TECHNICIAN)
            for i in range(1, total + 1):
                new = pb_bytes(1, "dev1") + pb_bytes(2, "ticket number %d" % i)
                c.send_frame(K_REQUEST, pb_varint(1, i) + pb_bytes(10, new))
                kind, _, _, body = c.read_control(timeout=10, answer_pings=True)
                self.assertEqual(kind, K_RESPONSE)
                self.assertNotIn(2, pb_parse(body), "ticket_new %d refused" % i)
            # A page asked for directly holds at most 150 and says there is more.
            c.send_frame(K_REQUEST, pb_varint(1, 999) + pb_bytes(11, pb_varint(5, 1000)))
            kind, _, _, body = c.read_control(timeout=10, answer_pings=True)
            page = pb_parse(pb_parse(body)[12][0])
            self.assertEqual(len(page.get(1, [])), 150)
            self.assertEqual(page.get(2, [0])[0], 1)
        r = self.tech(["tickets", "--json"])
        self.assertEqual(r.rc, 0, r)
        ids = [t["id"] for t in json.loads(r.out)]
        self.assertEqual(ids, ["T-%d" % i for i in range(1, total + 1)])

    def test_ticket_timeline_page(self):
        """A timeline longer than TT_TICKET_EVENTS_PAGE_MAX (200): show gives the newest 200,
        oldest first, and the total."""
        self.world(policy="unattended")
        tid = self.new_ticket()
        n = int(tid.split("-")[1])
        with WireClient(self.b.port, self.pki.ca, self.pki.cert("tech"), self.pki.key("tech")) as c:
            c.handshake_hello(role=ROLE_TECHNICIAN)
            for i in range(1, 211):
                upd = pb_varint(1, n) + pb_varint(2, 3) + pb_bytes(3, "note %d" % i)  # TICKET_COMMENT
                c.send_frame(K_REQUEST, pb_varint(1, i) + pb_bytes(13, upd))
                kind, _, _, body = c.read_control(timeout=10, answer_pings=True)
                self.assertEqual(kind, K_RESPONSE)
                self.assertNotIn(2, pb_parse(body), "comment %d refused" % i)
        r = self.tech(["ticket", "show", tid, "--json"])
        self.assertEqual(r.rc, 0, r)
        t = json.loads(r.out)
        self.assertEqual(t["events_total"], 211)  # created + 210 comments
        self.assertEqual(len(t["events"]), 200)
        self.assertEqual(t["events"][0]["text"], "note 11")
        self.assertEqual(t["events"][-1]["text"], "note 210")

    def test_live_sessions_per_person_limit(self):
        """TT_SESSIONS_PER_PERSON_MAX (32) live grants for one person, over several devices (a
        device holds 16): the next is refused busy, another technician is not affected."""
        self.world(policy="unattended")
        for dev in ("dev2", "dev3"):
            self.h.start_agent(self.b.addr, dev, dev + ".example",
                               extra=["--consent-policy", "unattended", "--shell-user", ME])
        with WireClient(self.b.port, self.pki.ca, self.pki.cert("tech"), self.pki.key("tech")) as c:
            c.handshake_hello(role=ROLE_TECHNICIAN)
            rid = [0]

            def ask(field, body):
                rid[0] += 1
                c.send_frame(K_REQUEST, pb_varint(1, rid[0]) + pb_bytes(field, body))
                kind, _, _, rb = c.read_control(timeout=20, answer_pings=True)
                self.assertEqual(kind, K_RESPONSE)
                return pb_parse(rb)

            def open_on(dev, n):
                r = ask(10, pb_bytes(1, dev) + pb_bytes(2, "ticket %d" % n))  # ticket_new
                self.assertNotIn(2, r, r)
                tid = pb_parse(r[11][0])[1][0]
                return ask(14, pb_bytes(1, dev) + pb_varint(2, tid) + pb_varint(3, 1))  # session_open

            for i in range(32):
                r = open_on("dev1" if i < 16 else "dev2", i)
                self.assertNotIn(2, r, "session %d refused: %r" % (i, r))
            r = open_on("dev3", 32)
            err = pb_parse(r[2][0])
            self.assertIn(b"you have 32 live sessions", err[2][0])
        # Someone else may still open one on dev3.
        r = self.tech(["ticket", "new", "--device", "dev3", "--summary", "theirs"], who="tech2")
        self.assertEqual(r.rc, 0, r)
        tid = r.out.split()[0]
        r = self.tech(["session", "open", "--device", "dev3", "--ticket", tid, "--want", "shell"], who="tech2")
        self.assertEqual(r.rc, 0, r)

    def test_exec_argument_limits(self):
        self.world(policy="unattended")
        tid = self.new_ticket()
        # 256 arguments in all: runs.
        argv = ["sh", "-c", 'echo "$#"', "sh"] + ["a%d" % i for i in range(252)]
        r = self.tech(["exec", "dev1", "--ticket", tid, "--"] + argv)
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(r.out, "252\n")
        # 257: refused with the limit named, nothing run.
        r = self.tech(["exec", "dev1", "--ticket", tid, "--"] + argv + ["one-too-many"])
        self.assertNotEqual(r.rc, 0, r)
        self.assertEqual(r.out, "", r)
        self.assertIn("256", r.err)
        self.assertEqual(len(r.err.strip().splitlines()), 1, r)
        # One argument longer than TT_EXEC_ARG_MAX (4096): refused the same way.
        r = self.tech(["exec", "dev1", "--ticket", tid, "--", "echo", "x" * 5000])
        self.assertNotEqual(r.rc, 0, r)
        self.assertEqual(r.out, "", r)
        self.assertIn("4096", r.err)
        self.assert_serving()

    def test_exec_argument_limits_on_the_wire(self):
        """The broker checks the command itself: a console that does not is refused too."""
        self.world(policy="unattended")
        tid = self.new_ticket()
        sid = int(self.session_open(tid).split("-")[1])
        with WireClient(self.b.port, self.pki.ca, self.pki.cert("tech"), self.pki.key("tech")) as c:
            c.handshake_hello(role=ROLE_TECHNICIAN)
            def argv(*words):
                return b"".join(pb_bytes(12, a) for a in words)
            line = b"x" * COMMAND_MAX
            cases = (  # (kind, fields, what the refusal says)
                (CH_EXEC, argv(*[b"a"] * 257), b"arguments"),
                (CH_EXEC, argv(b"echo", b"x" * 5000), b"arguments"),
                (CH_EXEC, argv(b"echo", b"nul\0inside"), b"arguments"),
                (CH_EXEC, b"", b"arguments"),
                # A command line for the shell (ssh's exec, exec -t): bounded, no NUL, not
                # with argv, and a shell takes no argv.
                (CH_EXEC, pb_bytes(15, line + b"x"), b"at most %d bytes" % COMMAND_MAX),
                (CH_EXEC, pb_bytes(15, b"echo a\0b"), b"without NUL"),
                (CH_EXEC, pb_bytes(15, b"true") + argv(b"true"), b"not both"),
                (CH_SHELL, pb_bytes(15, line + b"x"), b"at most %d bytes" % COMMAND_MAX),
                (CH_SHELL, argv(b"sh"), b"one line for the shell"),
            )
            for i, (kind_, fields, why) in enumerate(cases):
                body = (pb_varint(1, kind_) + pb_bytes(2, "dev1") + pb_varint(3, 65536)
                        + pb_varint(8, sid) + fields)
                ch = 2 * i + 1
                c.send_frame(K_CH_OPEN, body, channel=ch)
                kind, _, got_ch, rb = c.read_control(timeout=10, answer_pings=True)
                self.assertEqual((kind, got_ch), (K_CH_REJECT, ch), pb_parse(rb))
                self.assertIn(why, pb_parse(rb).get(2, [b""])[0])
        self.assertIn("channel-refused", self.actions())
        self.assert_serving()

    # -- 4. someone else's session -------------------------------------------------------------

    def test_other_technicians_session_refused(self):
        self.world(policy="unattended")
        tid = self.new_ticket()
        sid = int(self.session_open(tid).split("-")[1])
        for who in ("tech2", "boss"):  # not even an admin borrows a technician's grant
            with WireClient(self.b.port, self.pki.ca, self.pki.cert(who), self.pki.key(who)) as c:
                c.handshake_hello(role=ROLE_ADMIN if who == "boss" else ROLE_TECHNICIAN)
                for i, (kind, extra) in enumerate(((CH_SHELL, pb_varint(9, 80) + pb_varint(10, 24)),
                                                   (CH_EXEC, pb_bytes(12, "id")))):
                    body = (pb_varint(1, kind) + pb_bytes(2, "dev1") + pb_varint(3, 65536)
                            + pb_varint(8, sid) + extra)
                    c.send_frame(K_CH_OPEN, body, channel=2 * i + 1)
                    k, _, ch, rb = c.read_control(timeout=10, answer_pings=True)
                    self.assertEqual((k, ch), (K_CH_REJECT, 2 * i + 1), pb_parse(rb))
                    msg = pb_parse(rb).get(2, [b""])[0].decode()
                    self.assertIn("S-%d is not a live session of yours on dev1" % sid, msg)
                # A session id that does not exist, and none at all.
                for j, s in enumerate((sid + 1000, 0)):
                    body = (pb_varint(1, CH_EXEC) + pb_bytes(2, "dev1") + pb_varint(3, 65536)
                            + (pb_varint(8, s) if s else b"") + pb_bytes(12, "id"))
                    c.send_frame(K_CH_OPEN, body, channel=11 + 2 * j)
                    k, _, ch, rb = c.read_control(timeout=10, answer_pings=True)
                    self.assertEqual((k, ch), (K_CH_REJECT, 11 + 2 * j), pb_parse(rb))
        refused = [e for e in self.audit() if e["action"] == "channel-refused"]
        actors = {e.get("actor") for e in refused}
        self.assertTrue({"tech2", "boss"} <= actors, refused)
        self.assertIn("not a live session of yours", json.dumps(refused))
        # tech's own session is untouched and still works.
        r = self.tech(["exec", "dev1", "--ticket", tid, "--", "echo", "mine"])
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(r.out, "mine\n")


def as_user(user, path):
    """Connect to the consent socket at path as user (a forked child that drops root), say
    SESSIONS, and read until the agent closes: (how it ended, what the agent said)."""
    pw = pwd.getpwnam(user)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no exceptions out of here, only an exit status
        code = 1
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(pw.pw_gid)
            os.setuid(pw.pw_uid)
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(5)
            s.connect(path)
            try:
                s.sendall(b"SESSIONS\n")
            except OSError:
                pass
            buf, how = b"", "OPEN"
            try:
                while True:
                    d = s.recv(4096)
                    if not d:
                        how = "EOF"
                        break
                    buf += d
            except socket.timeout:
                how = "OPEN"
            except ConnectionResetError:
                how = "RESET"
            os.write(w, how.encode() + b" " + buf)
            code = 0
        except BaseException as e:
            os.write(w, b"FAIL " + repr(e).encode())
        finally:
            os._exit(code)
    os.close(w)
    out = b""
    while True:
        d = os.read(r, 65536)
        if not d:
            break
        out += d
    os.close(r)
    os.waitpid(pid, 0)
    how, _, said = out.decode("utf-8", "replace").partition(" ")
    return how, said


if __name__ == "__main__":
    unittest.main()
