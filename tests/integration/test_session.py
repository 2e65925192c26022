"""Support sessions end to end: tickets, consent on the device, shells and commands under a
grant, recordings, and the audit of every step, with the real programs on 127.0.0.1.
Interactive parts run the console on a pseudo-terminal, as a technician would.

Run by ctest as `integration.session` (TT_BIN_DIR names the build directory)."""

import fcntl
import grp
import hashlib
import json
import os
import pty
import pwd
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import termios
import threading
import time
import unittest

from harness import Harness, TetherTestCase, Pki, binary, tail

ME = "root" if os.geteuid() == 0 else os.environ.get("USER") or subprocess.run(
    ["id", "-un"], capture_output=True, text=True).stdout.strip()


# Runs a program holding descriptors it did not ask for, as an agent started by a careless
# service manager does: /dev/null on 10 and a pipe on 250 and 251, none close-on-exec.
LEAK_FDS = [sys.executable, "-c",
            "import os, sys\n"
            "os.dup2(os.open('/dev/null', os.O_RDONLY), 10)\n"
            "r, w = os.pipe()\n"
            "os.dup2(r, 250)\n"
            "os.dup2(w, 251)\n"
            "os.execv(sys.argv[1], sys.argv[1:])\n"]


# A job-control shell in miniature, as the parent of a console on a terminal: it runs the
# console as the terminal's foreground job in a process group of its own (so that a stop
# signal really stops it), takes the terminal back when the job stops, and gives it back
# with SIGCONT on SIGUSR1 (fg). Lines in the status file: "pid N", then "stopped" per stop.
JOB_SHELL = r"""
import os, signal, sys
status, argv = sys.argv[1], sys.argv[2:]
def say(line):
    with open(status, "a") as f:
        f.write(line + "\n")
signal.signal(signal.SIGTTOU, signal.SIG_IGN)
pid = os.fork()
if pid == 0:
    os.setpgid(0, 0)
    os.tcsetpgrp(0, os.getpid())
    signal.signal(signal.SIGTTOU, signal.SIG_DFL)
    os.execv(argv[0], argv)
try:
    os.setpgid(pid, pid)
    os.tcsetpgrp(0, pid)
except OSError:
    pass
def fg(signum, frame):
    os.tcsetpgrp(0, pid)
    os.killpg(pid, signal.SIGCONT)
signal.signal(signal.SIGUSR1, fg)
say("pid %d" % pid)
while True:
    _, st = os.waitpid(pid, os.WUNTRACED)
    if os.WIFSTOPPED(st):
        os.tcsetpgrp(0, os.getpgrp())
        say("stopped")
    else:
        code = os.waitstatus_to_exitcode(st)
        sys.exit(code if code >= 0 else 128 - code)
"""


def proc_state(pid):
    """The one-letter state in /proc/PID/stat (R, S, T for stopped, ...)."""
    with open("/proc/%d/stat" % pid) as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def wait_until(what, pred, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("not within %.0fs: %s" % (timeout, what))
        time.sleep(0.02)


def running(argv):
    """True if a process runs with exactly this command line."""
    want = b"\0".join(a.encode() for a in argv) + b"\0"
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/cmdline" % d, "rb") as f:
                    if f.read() == want:
                        return True
            except OSError:
                pass
    return False


def set_winsize(fd, rows, cols):
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


class PtyConsole:
    """A console run on a pseudo-terminal that it controls, like a technician's terminal.
    A thread drains the terminal into a buffer unless told to stop reading."""

    def __init__(self, argv, env, cwd, rows=24, cols=80):
        self.master, self.slave = pty.openpty()
        set_winsize(self.slave, rows, cols)
        self.attrs_before = termios.tcgetattr(self.slave)
        self.p = subprocess.Popen(argv, stdin=self.slave, stdout=self.slave, stderr=self.slave,
                                  env=env, cwd=cwd, start_new_session=True,
                                  preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))
        self.buf = bytearray()
        self.lock = threading.Lock()
        self.reading = threading.Event()
        self.reading.set()
        self.keep_tail = 0  # > 0: keep only the last keep_tail bytes (bulk output)
        self.stop = False
        self.t = threading.Thread(target=self._drain, daemon=True)
        self.t.start()

    def _drain(self):
        while not self.stop:
            if not self.reading.wait(0.05):
                continue
            r, _, _ = select.select([self.master], [], [], 0.05)
            if not r:
                continue
            try:
                d = os.read(self.master, 65536)
            except OSError:
                return
            if not d:
                return
            with self.lock:
                self.buf += d
                if self.keep_tail and len(self.buf) > 2 * self.keep_tail:
                    del self.buf[:-self.keep_tail]

    def output(self):
        with self.lock:
            return bytes(self.buf)

    def write(self, data):
        os.write(self.master, data)

    def wait_output(self, pattern, timeout=15.0, after=0):
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = rx.search(self.output()[after:])
            if m:
                return m
            if self.p.poll() is not None:
                time.sleep(0.2)
                m = rx.search(self.output()[after:])
                if m:
                    return m
                raise AssertionError("console exited (%s) before printing %r; output:\n%r"
                                     % (self.p.returncode, pattern, self.output()[-2000:]))
            time.sleep(0.02)
        raise AssertionError("console did not print %r within %.0fs; output:\n%r"
                             % (pattern, timeout, self.output()[-2000:]))

    def wait_exit(self, timeout=15.0):
        try:
            return self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("console still running after %.0fs; output:\n%r"
                                 % (timeout, self.output()[-2000:]))

    def close(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait(timeout=5)
        time.sleep(0.1)
        self.stop = True
        self.t.join(timeout=2)
        for fd in (self.master, self.slave):
            try:
                os.close(fd)
            except OSError:
                pass


class Watcher:
    """The employee's side of consent, spoken on the agent's local socket."""

    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(10)
        self.s.connect(path)
        self.s.setblocking(False)
        self.buf = b""
        self.send("WATCH")

    def send(self, line):
        self.s.setblocking(True)
        self.s.sendall(line.encode() + b"\n")
        self.s.setblocking(False)

    def line(self, timeout=10.0):
        """The next line, or None if none arrives within timeout."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            r, _, _ = select.select([self.s], [], [], left)
            if not r:
                continue
            d = self.s.recv(4096)
            if not d:
                raise AssertionError("the agent closed the consent socket")
            self.buf += d
        ln, self.buf = self.buf.split(b"\n", 1)
        return ln.decode("utf-8")

    def expect(self, word, timeout=10.0):
        deadline = time.monotonic() + timeout
        while True:
            ln = self.line(max(0.0, deadline - time.monotonic()))
            if ln is None:
                raise AssertionError("no %s line from the agent within %.0fs" % (word, timeout))
            if ln.split(" ", 1)[0] == word:
                return ln

    def prompt(self, timeout=10.0):
        ln = self.expect("PROMPT", timeout)
        head, rest = ln.split(" ", 1)
        f = rest.split("\t")
        return {"id": f[0], "technician": f[1], "ticket": f[2], "access": f[3],
                "duration": f[4], "timeout": f[5], "summary": f[6]}

    def answer(self, pid, yes):
        self.send("ANSWER %s %s" % (pid, "yes" if yes else "no"))

    def quiet(self, seconds):
        """True if no PROMPT arrives within seconds."""
        deadline = time.monotonic() + seconds
        while True:
            ln = self.line(max(0.0, deadline - time.monotonic()))
            if ln is None:
                return True
            if ln.startswith("PROMPT"):
                return False

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass


class SessionWorld:
    """A broker and device dev1 with its consent socket, and the people who use them: the
    helpers every session suite shares (mixed into a TetherTestCase)."""


    def world(self, policy="ask", consent_timeout="60s", shell_user=ME, broker_extra=(), wrapper=(),
              agent_wrapper=(), agent_extra=()):
        b = self.h.start_broker(extra=list(broker_extra), wrapper=wrapper)
        self.sock = os.path.join(self.h.dir, "consent.sock")
        a = self.h.start_agent(b.addr, "dev1", "dev1.example",
                               extra=["--consent-socket", self.sock, "--consent-policy", policy,
                                      "--consent-timeout", consent_timeout, "--shell-user", shell_user]
                               + list(agent_extra),
                               wrapper=agent_wrapper)
        self.b, self.a = b, a
        return b, a

    def tech(self, args, who="tech", **kw):
        return self.h.console(self.b.addr, args, cert=self.pki.cert(who), key=self.pki.key(who), **kw)

    def admin(self, args, **kw):
        return self.tech(args, who="boss", **kw)

    def console_argv(self, args, who="tech"):
        return [binary("tether"), "--broker", self.b.addr, "--ca", self.pki.ca,
                "--cert", self.pki.cert(who), "--key", self.pki.key(who)] + list(args)

    def new_ticket(self, who="tech", summary="printer on floor 3 jams", extra=()):
        r = self.tech(["ticket", "new", "--device", "dev1", "--summary", summary] + list(extra), who=who)
        self.assertEqual(r.rc, 0, r)
        tid = r.out.strip().splitlines()[0]
        self.assertRegex(tid, r"^T-\d+$")
        return tid

    def watcher(self):
        w = Watcher(self.sock)
        self.addCleanup(w.close)
        return w

    def pty_console(self, args, rows=24, cols=80, who="tech", job_control=False):
        """job_control: the console runs under JOB_SHELL; c.job_status names its status file
        and c.console_pid() is the console's own pid (c.p is the job shell's)."""
        argv = self.console_argv(args, who)
        status = None
        if job_control:
            status = os.path.join(self.h.dir, "job-%d.status" % len(os.listdir(self.h.dir)))
            argv = [sys.executable, "-c", JOB_SHELL, status] + argv
        c = PtyConsole(argv, self.h.env, self.h.dir, rows, cols)
        self.addCleanup(c.close)
        if job_control:
            c.job_status = status

            def job_lines():
                try:
                    with open(status) as f:
                        return f.read().splitlines()
                except FileNotFoundError:
                    return []
            c.job_lines = job_lines
            wait_until("the job shell started the console", lambda: job_lines())
            pid = int(job_lines()[0].split()[1])
            c.console_pid = lambda: pid

            def kill_console():
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.addCleanup(kill_console)
        return c

    def spawn_bg(self, args, who="tech", **kw):
        p = subprocess.Popen(self.console_argv(args, who), env=self.h.env, cwd=self.h.dir,
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, **kw)
        self.addCleanup(lambda: p.poll() is None and (p.kill(), p.wait()))
        return p

    def audit(self):
        r = self.admin(["audit", "--json"])
        self.assertEqual(r.rc, 0, r)
        return [json.loads(ln) for ln in r.out.splitlines() if ln.strip()]

    def actions(self):
        return [e["action"] for e in self.audit()]

    def ticket(self, tid):
        r = self.tech(["ticket", "show", tid, "--json"])
        self.assertEqual(r.rc, 0, r)
        return json.loads(r.out)

    def timeline(self, tid):
        return [e["kind"] for e in self.ticket(tid)["events"]]

    def rss_kb(self, pid):
        with open("/proc/%d/status" % pid) as f:
            for ln in f:
                if ln.startswith("VmRSS:"):
                    return int(ln.split()[1])
        return 0

class SessionTest(SessionWorld, TetherTestCase):
    maxDiff = None

    @classmethod
    def setUpClass(cls):
        cls.pki = Pki()
        for role, name in (("technician", "tech"), ("technician", "tech2"), ("admin", "boss"),
                           ("agent", "dev1")):
            cls.pki.issue(role, name)

    # -- tickets ---------------------------------------------------------------------------

    def test_ticket_lifecycle(self):
        self.world(broker_extra=["--sla-first-response-high", "2h", "--sla-resolution-high", "1d"])
        tid = self.new_ticket(extra=["--priority", "high", "--requester", "erin", "--external-id", "SN-77"])
        t = self.ticket(tid)["ticket"]
        self.assertEqual(t["state"], "open")
        self.assertEqual(t["assignee"], "tech")
        self.assertEqual(t["requester"], "erin")
        self.assertEqual(t["external_id"], "SN-77")
        self.assertEqual(t["priority"], "high")
        self.assertEqual(t["level"], 1)
        created = t["created_ms"]
        self.assertEqual(t["first_response_due_ms"] - created, 2 * 3600 * 1000)
        self.assertEqual(t["resolution_due_ms"] - created, 24 * 3600 * 1000)
        # Unknown device: refused, nothing written.
        r = self.tech(["ticket", "new", "--device", "nope", "--summary", "x"])
        self.assertEqual(r.rc, 1, r)
        self.assertIn("no such device", r.err)
        for args in (["ticket", "comment", tid, "called the user, will connect"],
                     ["ticket", "escalate", tid, "--level", "2"]):
            r = self.tech(args)
            self.assertEqual(r.rc, 0, r)
        # Handing a ticket to a colleague is an admin's, and only to someone the broker knows
        # (test_people has the rest of that): tech2 connects once first.
        self.assertEqual(self.tech(["tickets"], who="tech2").rc, 0)
        r = self.admin(["ticket", "assign", tid, "tech2"])
        self.assertEqual(r.rc, 0, r)
        t = self.ticket(tid)["ticket"]
        self.assertEqual(t["assignee"], "tech2")
        self.assertEqual(t["level"], 2)
        self.assertGreater(t["first_response_ms"], 0)
        # tech no longer holds it: cannot resolve; tech2 can.
        r = self.tech(["ticket", "resolve", tid])
        self.assertEqual(r.rc, 1, r)
        r = self.tech(["ticket", "resolve", tid], who="tech2")
        self.assertEqual(r.rc, 0, r)
        r = self.tech(["tickets", "--json"])
        self.assertEqual(r.rc, 0, r)
        self.assertNotIn(tid, [x["id"] for x in json.loads(r.out)])  # default: open only
        r = self.tech(["tickets", "--state", "resolved", "--json"])
        self.assertIn(tid, [x["id"] for x in json.loads(r.out)])
        self.assertEqual(self.tech(["ticket", "close", tid], who="tech2").rc, 0)
        self.assertEqual(self.admin(["ticket", "reopen", tid]).rc, 0)
        kinds = self.timeline(tid)
        for k in ("created", "comment", "escalated", "assigned", "resolved", "closed", "reopened"):
            self.assertIn(k, kinds)
        acts = self.actions()
        for k in ("ticket-new", "ticket-comment", "ticket-escalate", "ticket-assign", "ticket-resolve",
                  "ticket-close", "ticket-reopen"):
            self.assertIn(k, acts)

    # -- consent ---------------------------------------------------------------------------

    def test_consent_yes_shell_recorded(self):
        self.world()
        tid = self.new_ticket()
        w = self.watcher()
        con = self.pty_console(["shell", "dev1", "--ticket", tid], rows=30, cols=100)
        p = w.prompt()
        self.assertEqual(p["technician"], "tech")
        self.assertEqual(p["ticket"], tid)
        self.assertEqual(p["summary"], "printer on floor 3 jams")
        self.assertIn("shell", p["access"])
        # While the employee decides, the technician's terminal says what it waits for, and
        # names the machine as its owner knows it (the hostname, not the device id), and how
        # long the person there has to answer (the agent's consent.timeout, 60s here).
        con.wait_output(rb"tether: waiting for the person at dev1\.example to allow shell access under " + tid.encode() +
                        rb" \(60 s\)\.\.\.\r\n$")
        w.answer(p["id"], True)
        # The employee's side is told who is connected now, and what they do.
        started = w.expect("STARTED").split(" ", 1)[1].split("\t")
        self.assertEqual(started[:4], ["S-1", "tech", tid, "shell"])
        self.assertEqual(started[5:], ["attended", "printer on floor 3 jams"])
        self.assertEqual(w.expect("ACTIVITY"), "ACTIVITY S-1\ttech\topened a shell")
        con.wait_output(rb"[#$] $")  # the remote shell's prompt: raw mode is on by now
        con.write(b"echo tt-$((6*7))-ok\r")
        con.wait_output(rb"tt-42-ok")
        con.write(b"stty size\r")
        con.wait_output(rb"30 100")
        mark = len(con.output())
        set_winsize(con.master, 40, 120)  # the kernel sends the console SIGWINCH
        time.sleep(0.3)
        con.write(b"stty size\r")
        con.wait_output(rb"40 120", after=mark)
        con.write(b"id -un; exit 7\r")
        self.assertEqual(con.wait_exit(), 7)
        # The terminal is as it was before the console made it raw.
        self.assertEqual(termios.tcgetattr(con.slave), con.attrs_before)
        seen = con.output()
        note, seen = seen.split(b"...\r\n", 1)  # the console's own line, before the shell's output
        self.assertTrue(note.startswith(b"tether: waiting"), note)
        # The recording replays the same bytes the technician saw.
        deadline = time.monotonic() + 10
        while True:
            r = self.tech(["replay", "S-1", "--speed", "0"])
            if r.rc == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.2)  # the recording is finished just after the channel closes
        self.assertEqual(r.rc, 0, r)
        rr = subprocess.run(self.console_argv(["replay", "S-1", "--speed", "0"]), env=self.h.env,
                            cwd=self.h.dir, capture_output=True, timeout=30)
        self.assertEqual(rr.returncode, 0, rr.stderr)
        self.assertEqual(rr.stdout, seen)
        # Recordings are the session owner's and the admins', nobody else's.
        r = self.tech(["replay", "S-1", "--speed", "0"], who="tech2")
        self.assertEqual(r.rc, 1, r)
        self.assertEqual(r.out, "")
        self.assertIn("permission denied", r.err)
        r = self.admin(["recording", "export", "S-1"])
        self.assertEqual(r.rc, 0, r)
        # The export is a file asciinema accepts, and its sha256 is in the audit.
        cast = os.path.join(self.h.dir, "s1.cast")
        with open(cast, "wb") as f:
            rx = subprocess.run(self.console_argv(["recording", "export", "S-1"]), env=self.h.env,
                                cwd=self.h.dir, stdout=f, stderr=subprocess.PIPE, timeout=30)
        self.assertEqual(rx.returncode, 0, rx.stderr)
        with open(cast, "rb") as f:
            head = json.loads(f.readline())
        self.assertEqual(head["version"], 2)
        self.assertEqual((head["width"], head["height"]), (100, 30))
        if shutil.which("asciinema"):  # it wants a terminal: give it one
            ac = PtyConsole(["asciinema", "cat", cast], self.h.env, self.h.dir)
            self.addCleanup(ac.close)
            self.assertEqual(ac.wait_exit(30), 0, ac.output())
            ac.wait_output(rb"tt-42-ok")
        entries = self.audit()
        acts = [e["action"] for e in entries]
        for k in ("session-request", "consent-given", "channel-open", "channel-close", "recording"):
            self.assertIn(k, acts)
        rec = [e for e in entries if e["action"] == "recording"][0]
        path = os.path.join(self.b.data_dir, "recordings", "R-1.cast.zst")
        with open(path, "rb") as f:
            self.assertEqual(rec["detail"]["sha256"], hashlib.sha256(f.read()).hexdigest())
        kinds = self.timeline(tid)
        for k in ("session-requested", "consent-given", "session-opened", "channel-opened", "recording"):
            self.assertIn(k, kinds)

    def test_session_processes_cannot_consent(self):
        """A command a technician runs is shell.user, possibly the employee's own account: it
        must not be able to answer (or even watch) the consent socket."""
        self.world(policy="unattended")
        tid = self.new_ticket()
        # The agent answers a refused client at once and closes: read, do not write first
        # (a write could meet the closed socket).
        probe = ("import socket; s = socket.socket(socket.AF_UNIX); s.connect(%r); "
                 "print(s.recv(200).decode().strip())" % self.sock)
        r = self.tech(["exec", "dev1", "--ticket", tid, "--", "python3", "-c", probe])
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(r.out.strip(), "ERR this process was started in a support session (S-1) and cannot answer "
                                        "for the employee")
        # The same user from outside the session is welcome.
        w = self.watcher()
        self.assertEqual(w.expect("OK"), "OK")

    def test_shell_from_a_pipe(self):
        """What the README's demo does: commands piped into tether shell (no terminal: no raw
        mode, no waiting note), the remote status as the exit status."""
        self.world(policy="unattended")
        tid = self.new_ticket()
        p = subprocess.run(self.console_argv(["shell", "dev1", "--ticket", tid]), env=self.h.env, cwd=self.h.dir,
                           input=b"echo piped-$((20+1))\nexit 3\n", capture_output=True, timeout=30)
        self.assertEqual(p.returncode, 3, p)
        self.assertIn(b"piped-21", p.stdout)
        self.assertEqual(p.stderr, b"")
        # Recorded like any shell (the entry follows once the file is complete on disk).
        deadline = time.monotonic() + 10
        while "recording" not in self.actions() and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertIn("recording", self.actions())

    def test_ctrl_c_reaches_the_remote_side(self):
        self.world(policy="unattended")
        tid = self.new_ticket()
        con = self.pty_console(["shell", "dev1", "--ticket", tid])
        con.wait_output(rb"[#$] $")
        con.write(b"sleep 30; echo not-interrupted\r")
        time.sleep(1.0)
        mark = len(con.output())
        con.write(b"\x03")  # raw mode: the byte goes to the remote pty, which signals sleep
        con.write(b"echo status-$?\r")
        con.wait_output(rb"status-130", after=mark, timeout=10)
        self.assertIsNone(con.p.poll(), "the console itself must not die of ^C")
        self.assertNotIn(b"\nnot-interrupted", con.output())  # typed, never printed
        con.write(b"exit\r")
        self.assertEqual(con.wait_exit(), 0)
        self.assertEqual(termios.tcgetattr(con.slave), con.attrs_before)

    def test_raw_mode_survives_stop_and_continue(self):
        """Stopped (SIGTSTP, or SIGSTOP, which cannot be caught) and continued, the console is
        in raw mode again: Ctrl-C reaches the remote shell and lines echo once."""
        self.world(policy="unattended")
        tid = self.new_ticket()
        con = self.pty_console(["shell", "dev1", "--ticket", tid], job_control=True)
        pid = con.console_pid()
        con.wait_output(rb"[#$] $")

        def raw():
            lflag = termios.tcgetattr(con.slave)[3]
            return not lflag & (termios.ICANON | termios.ECHO | termios.ISIG)

        def stopped(n):
            wait_until("the console stopped", lambda: con.job_lines().count("stopped") == n)
            self.assertEqual(proc_state(pid), "T")

        def fg():  # the job shell gives the terminal back and continues the console
            con.p.send_signal(signal.SIGUSR1)
            wait_until("the console is raw again", lambda: proc_state(pid) != "T" and raw())

        self.assertTrue(raw())
        # SIGTSTP: the console puts the terminal back before it stops...
        os.kill(pid, signal.SIGTSTP)
        stopped(1)
        self.assertEqual(termios.tcgetattr(con.slave), con.attrs_before)
        # ... the window changes while the job shell has the terminal ...
        set_winsize(con.master, 33, 111)
        # ... and once continued it is raw again, and the remote side has the new size.
        fg()
        mark = len(con.output())
        con.write(b"stty size\r")
        con.wait_output(rb"33 111", after=mark)
        # SIGSTOP cannot be caught: the job shell puts its own modes on the terminal meanwhile
        # (as bash does); the SIGCONT that continues the console makes it raw again.
        os.kill(pid, signal.SIGSTOP)
        stopped(2)
        termios.tcsetattr(con.slave, termios.TCSANOW, con.attrs_before)
        fg()
        # Ctrl-C goes to the remote shell, not to the console.
        con.write(b"sleep 4242; echo not-interrupted\r")
        wait_until("sleep runs on the device", lambda: running(["sleep", "4242"]))
        mark = len(con.output())
        con.write(b"\x03")
        con.write(b"echo status-$?\r")
        m = con.wait_output(rb"status-130\r\n", after=mark)
        self.assertIsNone(con.p.poll(), "the console must not die of ^C")
        self.assertIn(proc_state(pid), ("R", "S"))
        # Typed lines echo once (the remote pty's echo; the local terminal adds none). Typed at
        # the prompt: bash echoes what was typed ahead of it twice by itself.
        con.wait_output(rb"[#$] $", after=mark + m.end())
        mark = len(con.output())
        con.write(b"echo once-$((3+4))\r")
        con.wait_output(rb"once-7\r\n", after=mark)
        self.assertEqual(con.output()[mark:].count(b"echo once-$((3+4))"), 1, con.output()[mark:])
        con.write(b"exit\r")
        self.assertEqual(con.wait_exit(), 0)
        self.assertNotIn(b"\nnot-interrupted", con.output())
        self.assertEqual(termios.tcgetattr(con.slave), con.attrs_before)

    def test_dialog_command_consents(self):
        """On a desktop the agent runs a dialog command; exit 0 is yes."""
        b = self.h.start_broker()
        self.b = b
        seen = os.path.join(self.h.dir, "dialog.env")
        dialog = ('printf "%%s|%%s|%%s|%%s\\n" "$TETHER_TECHNICIAN" "$TETHER_TICKET" "$TETHER_ACCESS" '
                  '"$TETHER_SUMMARY" > %s; test "$TETHER_TICKET" = T-1' % seen)
        self.a = self.h.start_agent(b.addr, "dev1", "dev1.example",
                                    extra=["--consent-dialog", dialog, "--shell-user", ME])
        tid = self.new_ticket()
        self.assertEqual(tid, "T-1")
        r = self.tech(["exec", "dev1", "--ticket", tid, "--", "echo", "via-dialog"])
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(r.out, "via-dialog\n")
        with open(seen) as f:
            self.assertEqual(f.read(), "tech|T-1|shell|printer on floor 3 jams\n")
        # The record says the dialog command answered (as the agent's user), not the shell user.
        given = [e for e in self.audit() if e["action"] == "consent-given"]
        self.assertEqual(len(given), 1, given)
        self.assertEqual(given[0]["detail"]["by"], "consent.dialog:" + pwd.getpwuid(os.getuid()).pw_name)
        tid2 = self.new_ticket(summary="second")  # T-2: the dialog says no
        r = self.tech(["exec", "dev1", "--ticket", tid2, "--", "true"])
        self.assertEqual(r.rc, 1, r)
        self.assertIn("refused", r.err)

    def test_reassigning_the_ticket_ends_its_sessions(self):
        """A grant is for the ticket's assignee: handing the ticket on ends it, live shell and all."""
        self.world(policy="unattended")
        tid = self.new_ticket()
        con = self.pty_console(["shell", "dev1", "--ticket", tid])
        con.wait_output(rb"[#$] $")
        self.assertEqual(self.tech(["tickets"], who="tech2").rc, 0)  # known to the broker
        r = self.admin(["ticket", "assign", tid, "tech2"])
        self.assertEqual(r.rc, 0, r)
        self.assertNotEqual(con.wait_exit(timeout=5), 0)
        self.assertIn(b"tether: session S-1 ended: ticket reassigned", con.output())
        r = self.admin(["sessions", "--all", "--json"])
        self.assertEqual(json.loads(r.out), [])
        r = self.tech(["exec", "dev1", "--ticket", tid, "--", "true"])
        self.assertEqual(r.rc, 1, r)
        self.assertIn("assigned to tech2", r.err)

    def test_revoked_technician_loses_the_shell(self):
        self.world(policy="unattended")
        tid = self.new_ticket()
        con = self.pty_console(["shell", "dev1", "--ticket", tid])
        con.wait_output(rb"[#$] $")
        r = self.admin(["revoke", "person", "tech", "--reason", "left"])
        self.assertEqual(r.rc, 0, r)
        self.assertNotEqual(con.wait_exit(timeout=5), 0)
        self.assertEqual(termios.tcgetattr(con.slave), con.attrs_before)
        time.sleep(0.3)
        ends = [e for e in self.audit() if e["action"] == "session-end"]
        self.assertEqual(len(ends), 1, ends)
        r = self.admin(["sessions", "--all", "--json"])
        self.assertEqual(json.loads(r.out), [])

    def test_prompt_command_answers(self):
        """The employee's own command: tether-agent prompt, answering on its standard input."""
        self.world()
        tid = self.new_ticket()
        pr = subprocess.Popen([binary("tether-agent"), "prompt", "--consent-socket", self.sock],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              env=self.h.env, cwd=self.h.dir)
        self.addCleanup(lambda: (pr.poll() is None and (pr.kill(), pr.wait()), pr.stdin.close(),
                                 pr.stdout.close()))
        time.sleep(0.5)
        ex = self.spawn_bg(["exec", "dev1", "--ticket", tid, "--", "echo", "from-exec"])
        buf = b""
        deadline = time.monotonic() + 15
        while b"Allow" not in buf and time.monotonic() < deadline:
            r, _, _ = select.select([pr.stdout], [], [], 0.2)
            if r:
                buf += os.read(pr.stdout.fileno(), 4096)
        self.assertIn(b"tech", buf)
        self.assertIn(tid.encode(), buf)
        self.assertIn(b"printer on floor 3 jams", buf)
        pr.stdin.write(b"y\n")
        pr.stdin.flush()
        out, err = ex.communicate(timeout=30)
        self.assertEqual(ex.returncode, 0, err)
        self.assertEqual(out, b"from-exec\n")
        deadline = time.monotonic() + 10
        while b"ran: echo from-exec" not in buf and time.monotonic() < deadline:
            r, _, _ = select.select([pr.stdout], [], [], 0.2)
            if r:
                buf += os.read(pr.stdout.fileno(), 4096)
        self.assertIn(b"tech is connected to this computer under " + tid.encode(), buf)
        self.assertIn(b"tech ran: echo from-exec (S-1)", buf)

    def test_prompt_shows_one_request_at_a_time(self):
        """Two requests at once: the prompt shows the first (and that one more waits), the
        employee's answer goes to the one on screen, then the second is shown."""
        self.world()
        t1 = self.new_ticket()
        t2 = self.new_ticket(who="tech2", summary="second request")
        pr = subprocess.Popen([binary("tether-agent"), "prompt", "--consent-socket", self.sock],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              env=self.h.env, cwd=self.h.dir)
        self.addCleanup(lambda: (pr.poll() is None and (pr.kill(), pr.wait()), pr.stdin.close(),
                                 pr.stdout.close()))
        w = self.watcher()
        e1 = self.spawn_bg(["exec", "dev1", "--ticket", t1, "--", "echo", "first"])
        w.prompt()
        e2 = self.spawn_bg(["exec", "dev1", "--ticket", t2, "--", "echo", "second"], who="tech2")
        w.prompt()
        buf = b""
        deadline = time.monotonic() + 10
        while b"(1 more waiting)" not in buf and time.monotonic() < deadline:
            r, _, _ = select.select([pr.stdout], [], [], 0.2)
            if r:
                buf += os.read(pr.stdout.fileno(), 4096)
        self.assertIn(b"(1 more waiting)", buf)
        self.assertNotIn(b"second request", buf)  # not on screen yet
        pr.stdin.write(b"n\n")
        pr.stdin.flush()
        out, err = e1.communicate(timeout=30)
        self.assertEqual(e1.returncode, 1, err)  # the first, which was on screen, is refused
        while b"second request" not in buf and time.monotonic() < deadline + 10:
            r, _, _ = select.select([pr.stdout], [], [], 0.2)
            if r:
                buf += os.read(pr.stdout.fileno(), 4096)
        self.assertIn(b"second request", buf)
        pr.stdin.write(b"y\n")
        pr.stdin.flush()
        out, err = e2.communicate(timeout=30)
        self.assertEqual(e2.returncode, 0, err)
        self.assertEqual(out, b"second\n")

    def test_consent_refused(self):
        self.world()
        tid = self.new_ticket()
        w = self.watcher()
        ex = self.spawn_bg(["exec", "dev1", "--ticket", tid, "--", "true"])
        w.answer(w.prompt()["id"], False)
        out, err = ex.communicate(timeout=30)
        self.assertEqual(ex.returncode, 1)
        self.assertIn(b"refused", err)
        acts = self.actions()
        self.assertIn("consent-refused", acts)
        self.assertNotIn("channel-open", acts)
        self.assertIn("consent-refused", self.timeline(tid))

    def test_withdrawn_request_cannot_be_approved(self):
        """Ctrl-C on a `tether shell` (or a SIGINT to `tether session open`) that waits for
        the employee withdraws the question from every prompt; a yes typed after that grants
        nothing, and the records say withdrawn, never consent-given."""
        self.world()
        tid = self.new_ticket()
        pr = subprocess.Popen([binary("tether-agent"), "prompt", "--consent-socket", self.sock],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              env=self.h.env, cwd=self.h.dir)
        self.addCleanup(lambda: (pr.poll() is None and (pr.kill(), pr.wait()), pr.stdin.close(),
                                 pr.stdout.close()))
        w = self.watcher()
        self.assertEqual(w.expect("OK"), "OK")
        con = self.pty_console(["shell", "dev1", "--ticket", tid])
        p = w.prompt()
        con.wait_output(rb"waiting for the person at dev1")
        con.write(b"\x03")  # not raw yet: the terminal makes it SIGINT to the console
        self.assertNotEqual(con.wait_exit(), 0)
        self.assertEqual(w.expect("CANCEL"), "CANCEL %s\ttech withdrew the request" % p["id"])
        w.answer(p["id"], True)
        self.assertTrue(w.expect("ERR").startswith("ERR no such prompt"))
        buf = b""
        deadline = time.monotonic() + 10
        while b"tech withdrew the request" not in buf and time.monotonic() < deadline:
            r, _, _ = select.select([pr.stdout], [], [], 0.2)
            if r:
                buf += os.read(pr.stdout.fileno(), 4096)
        self.assertIn(b"(request %s: tech withdrew the request)" % p["id"].encode(), buf)
        # The same for a session asked for ahead of time.
        op = self.spawn_bg(["session", "open", "--device", "dev1", "--ticket", tid, "--want", "shell"])
        p2 = w.prompt()
        op.send_signal(signal.SIGINT)
        op.communicate(timeout=10)
        self.assertEqual(w.expect("CANCEL"), "CANCEL %s\ttech withdrew the request" % p2["id"])
        w.answer(p2["id"], True)
        self.assertTrue(w.expect("ERR").startswith("ERR no such prompt"))
        self.assertIn("request withdrawn", self.a.log())
        self.assertNotIn("decision=granted", self.a.log())
        deadline = time.monotonic() + 10
        while self.actions().count("consent-withdrawn") < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        acts = self.actions()
        self.assertEqual(acts.count("consent-withdrawn"), 2, acts)
        self.assertNotIn("consent-given", acts)
        kinds = self.timeline(tid)
        self.assertEqual(kinds.count("consent-withdrawn"), 2, kinds)
        self.assertNotIn("consent-given", kinds)
        self.assertNotIn("session-opened", kinds)
        r = self.admin(["sessions", "--all", "--json"])
        self.assertEqual(json.loads(r.out), [])

    def test_consent_timeout(self):
        self.world(consent_timeout="2s")
        tid = self.new_ticket()
        t0 = time.monotonic()
        r = self.tech(["exec", "dev1", "--ticket", tid, "--", "true"])
        self.assertEqual(r.rc, 1, r)
        self.assertIn("no answer", r.err)
        self.assertLess(time.monotonic() - t0, 15)
        acts = self.actions()
        self.assertIn("consent-timeout", acts)
        self.assertNotIn("channel-open", acts)

    def test_policy_unattended_and_deny(self):
        self.world(policy="unattended")
        tid = self.new_ticket()
        r = self.tech(["exec", "dev1", "--ticket", tid, "--", "sh", "-c", "echo out; echo err >&2; exit 3"])
        self.assertEqual(r.rc, 3, r)
        self.assertEqual(r.out, "out\n")
        self.assertIn("err", r.err)
        self.assertIn("consent-unattended", self.actions())
        # The records say what was run.
        opened = [e for e in self.audit() if e["action"] == "channel-open"][0]
        self.assertEqual(opened["detail"]["command"], "sh -c 'echo out; echo err >&2; exit 3'")
        self.assertIn("exec channel of S-1 opened: sh -c 'echo out; echo err >&2; exit 3'",
                      [e["text"] for e in self.ticket(tid)["events"]])
        self.assertIn("unattended", " ".join(e["kind"] + " " + e["text"] for e in self.ticket(tid)["events"]))
        self.h.close()
        # deny: no one to ask means no.
        from harness import Harness
        self.h = Harness(self.pki)
        self.world(policy="deny")
        tid = self.new_ticket()
        t0 = time.monotonic()
        r = self.tech(["exec", "dev1", "--ticket", tid, "--", "true"])
        self.assertEqual(r.rc, 1, r)
        self.assertIn("no one", r.err)
        self.assertLess(time.monotonic() - t0, 5)

    def test_unassigned_and_closed_refused(self):
        self.world(policy="unattended")
        tid = self.new_ticket()
        r = self.tech(["exec", "dev1", "--ticket", tid, "--", "true"], who="tech2")
        self.assertEqual(r.rc, 1, r)
        self.assertIn("assigned", r.err)
        self.assertEqual(self.tech(["ticket", "close", tid]).rc, 0)
        r = self.tech(["exec", "dev1", "--ticket", tid, "--", "true"])
        self.assertEqual(r.rc, 1, r)
        self.assertIn("closed", r.err)
        self.assertNotIn("channel-open", self.actions())

    def test_employee_ends_session(self):
        self.world()
        tid = self.new_ticket()
        w = self.watcher()
        con = self.pty_console(["shell", "dev1", "--ticket", tid])
        w.answer(w.prompt()["id"], True)
        con.wait_output(rb"[#$] $")
        con.write(b"echo ready-$((1+1))\r")
        con.wait_output(rb"ready-2")
        r = self.h.run("tether-agent", ["sessions", "--consent-socket", self.sock])
        self.assertEqual(r.rc, 0, r)
        self.assertIn("S-1", r.out)
        self.assertIn("tech", r.out)
        t0 = time.monotonic()
        r = self.h.run("tether-agent", ["end", "S-1", "--consent-socket", self.sock])
        self.assertEqual(r.rc, 0, r)
        rc = con.wait_exit(timeout=5)
        took = time.monotonic() - t0
        self.assertLess(took, 1.0, "console took %.2fs to end" % took)
        self.assertNotEqual(rc, 0)
        self.assertIn(b"tether: session S-1 was ended by the employee", con.output())
        self.assertEqual(termios.tcgetattr(con.slave), con.attrs_before)
        deadline = time.monotonic() + 10
        while "session-end" not in self.actions() and time.monotonic() < deadline:
            time.sleep(0.1)
        entries = self.audit()
        end = [e for e in entries if e["action"] == "session-end"][0]
        self.assertIn("employee", json.dumps(end))
        # The shell was still open: its entry waited for the recording and names its sha256.
        rec = [e for e in entries if e["action"] == "recording"][0]
        self.assertEqual(end["detail"]["R-1"], rec["detail"]["sha256"])
        self.assertLess(entries.index(rec), entries.index(end))
        r = self.tech(["sessions", "--json"])
        self.assertEqual(json.loads(r.out), [])

    def test_grant_reused_then_expires(self):
        self.world()
        tid = self.new_ticket()
        w = self.watcher()
        r = self.spawn_bg(["session", "open", "--device", "dev1", "--ticket", tid, "--want", "shell",
                           "--for", "4s"])
        w.answer(w.prompt()["id"], True)
        out, err = r.communicate(timeout=30)
        self.assertEqual(r.returncode, 0, err)
        self.assertIn(b"S-1", out)
        t_granted = time.monotonic()
        r = self.tech(["exec", "dev1", "--ticket", tid, "--", "echo", "again"])
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(r.out, "again\n")
        self.assertTrue(w.quiet(0.5), "a second prompt for a live grant")
        self.assertIn("session-reuse", self.actions())
        time.sleep(max(0, 4.5 - (time.monotonic() - t_granted)))
        r = self.tech(["sessions", "--json"])
        self.assertEqual(json.loads(r.out), [])
        ex = self.spawn_bg(["exec", "dev1", "--ticket", tid, "--", "true"])
        p = w.prompt()  # expired: asks again
        w.answer(p["id"], True)
        out, err = ex.communicate(timeout=30)
        self.assertEqual(ex.returncode, 0, err)

    def test_ticket_close_ends_live_shell(self):
        self.world(policy="unattended")
        tid = self.new_ticket()
        con = self.pty_console(["shell", "dev1", "--ticket", tid])
        con.wait_output(rb"[#$] $")
        con.write(b"echo up-$((2+2))\r")
        con.wait_output(rb"up-4")
        self.assertEqual(self.tech(["ticket", "close", tid]).rc, 0)
        self.assertNotEqual(con.wait_exit(timeout=5), 0)
        self.assertIn(b"tether: session S-1 ended: ticket closed", con.output())

    def test_shell_user_drops_root(self):
        if os.geteuid() != 0:
            self.skipTest("needs root to drop it")
        self.world(policy="unattended", shell_user="nobody")
        tid = self.new_ticket()
        r = self.tech(["exec", "dev1", "--ticket", tid, "--", "id", "-un"])
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(r.out, "nobody\n")

    def test_exec_child_inherits_nothing(self):
        """Exec and shell children hold their standard descriptors and nothing of the agent's,
        and as root exec takes shell.user's groups, as a login would."""
        self.world(policy="unattended", agent_wrapper=LEAK_FDS)
        tid = self.new_ticket()
        r = self.tech(["exec", "dev1", "--ticket", tid, "--", "ls", "/proc/self/fd"])
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(r.out.split(), ["0", "1", "2", "3"], r)  # 3: ls's own directory
        con = self.pty_console(["shell", "dev1", "--ticket", tid])
        con.wait_output(rb"[#$] $")
        mark = len(con.output())
        con.write(b"echo fd-$((1+1)); /bin/ls /proc/$$/fd; echo fd-$((2+2))\r")
        m = con.wait_output(rb"(?s)fd-2\r\n(.*?)fd-4\r\n", after=mark)
        fds = m.group(1).decode().split()
        if os.path.basename(pwd.getpwnam(ME).pw_shell) == "bash":
            self.assertEqual(fds, ["0", "1", "2", "255"])  # 255: bash's own copy of its terminal
        else:
            self.assertEqual(fds[:3], ["0", "1", "2"])
            self.assertLessEqual(len(fds), 4, fds)
        con.write(b"exit\r")
        self.assertEqual(con.wait_exit(), 0)
        if os.geteuid() != 0:
            return
        # nobody, as asked; and a user with supplementary groups where this host has one,
        # since nobody usually has none and dropping them would not show.
        users = ["nobody"]
        for g in grp.getgrall():
            extra = [u for u in g.gr_mem if u not in ("root", "nobody")]
            for u in extra:
                try:
                    pwd.getpwnam(u)
                except KeyError:
                    continue
                users.append(u)
                break
            if len(users) > 1:
                break
        for user in users:
            self.assertEqual(self.h.close(), [])
            self.h = Harness(self.pki)
            self.world(policy="unattended", shell_user=user)
            tid = self.new_ticket()
            r = self.tech(["exec", "dev1", "--ticket", tid, "--", "id", "-G"])
            self.assertEqual(r.rc, 0, r)
            want = subprocess.run(["id", "-G", user], capture_output=True, text=True, check=True).stdout
            self.assertEqual(sorted(map(int, r.out.split())), sorted(map(int, want.split())), user)

    def test_exec_cannot_run(self):
        """A command that cannot be run ends as a shell would end it (the reason on stderr,
        status 127 when not found, 126 when not runnable), and nothing is left behind."""
        self.world(policy="unattended")
        tid = self.new_ticket()
        r = self.tech(["exec", "dev1", "--ticket", tid, "--", "tt-no-such-command", "x"])
        self.assertEqual(r.rc, 127, r)
        self.assertEqual(r.out, "")
        self.assertIn("cannot run tt-no-such-command: no such file or directory", r.err)
        r = self.tech(["exec", "dev1", "--ticket", tid, "--", "/etc"])
        self.assertEqual(r.rc, 126, r)
        self.assertIn("cannot run /etc: permission denied", r.err)
        kids = []  # the children that failed to exec were reaped then and there
        for d in os.listdir("/proc"):
            try:
                with open("/proc/%s/stat" % d) as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == self.a.pid:
                        kids.append(d)
            except (OSError, ValueError, IndexError):
                pass
        self.assertEqual(kids, [])
        r = self.tech(["exec", "dev1", "--ticket", tid, "--", "echo", "still-fine"])
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(r.out, "still-fine\n")

    def test_stalled_shell_console_bounded_memory(self):
        """The technician's terminal stops reading while the remote shell prints 100 MB."""
        self.world(policy="unattended")
        tid = self.new_ticket()
        con = self.pty_console(["shell", "dev1", "--ticket", tid])
        con.wait_output(rb"[#$] $")
        con.write(b"head -c 100000000 /dev/zero | tr '\\0' x; echo; echo done-$((40+2))\r")
        con.wait_output(rb"xxxx")
        con.reading.clear()  # stop reading: the pty fills, then the console, then everything waits
        time.sleep(3)
        base_b, base_a = self.rss_kb(self.b.pid), self.rss_kb(self.a.pid)
        time.sleep(2)
        grow_b = self.rss_kb(self.b.pid) - base_b
        grow_a = self.rss_kb(self.a.pid) - base_a
        self.assertLess(grow_b, 16 * 1024, "broker grew %d KiB while the console stalled" % grow_b)
        self.assertLess(grow_a, 16 * 1024, "agent grew %d KiB while the console stalled" % grow_a)
        self.assertLess(self.rss_kb(self.b.pid), 200 * 1024)
        self.assertLess(self.rss_kb(self.a.pid), 200 * 1024)
        con.keep_tail = 4096  # 100 MB need not stay in the test's memory
        con.reading.set()
        con.wait_output(rb"done-42", timeout=120)
        con.write(b"exit\r")
        self.assertEqual(con.wait_exit(), 0)

    def test_stalled_console_bounded_memory(self):
        self.world(policy="unattended")
        tid = self.new_ticket()
        total = 100 * 1000 * 1000
        p = self.spawn_bg(["exec", "dev1", "--ticket", tid, "--", "head", "-c", str(total), "/dev/zero"])
        # Nobody reads the console's stdout: the pipe fills, and then everything waits.
        time.sleep(3)
        self.assertIsNone(p.poll())
        base_b, base_a = self.rss_kb(self.b.pid), self.rss_kb(self.a.pid)
        time.sleep(2)
        grow_b = self.rss_kb(self.b.pid) - base_b
        grow_a = self.rss_kb(self.a.pid) - base_a
        self.assertLess(grow_b, 16 * 1024, "broker grew %d KiB while the console stalled" % grow_b)
        self.assertLess(grow_a, 16 * 1024, "agent grew %d KiB while the console stalled" % grow_a)
        self.assertLess(self.rss_kb(self.b.pid), 200 * 1024)
        self.assertLess(self.rss_kb(self.a.pid), 200 * 1024)
        got = 0
        while True:
            d = p.stdout.read(1 << 20)
            if not d:
                break
            got += len(d)
        p.wait(timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr.read())
        self.assertEqual(got, total)


if __name__ == "__main__":
    unittest.main()
