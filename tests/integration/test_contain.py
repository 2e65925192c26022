"""Containment: nothing a support session starts outlives it, however it detaches (a
background job, nohup, setsid -f, a double fork), and none of it can answer consent for the
employee. Every test runs twice: with the agent's cgroup v2 containment (where this machine
lets a process make a cgroup beside its own) and with its subreaper fallback
(shell.containment = subreaper).

Run by ctest as `integration.contain` (TT_BIN_DIR names the build directory)."""

import json
import os
import random
import signal
import sys
import time
import unittest

from harness import Pki, TetherTestCase
from test_session import SessionWorld

# The probe a detached session process runs: wait until setsid's parent has gone (the probe
# is an orphan then, as a detached process is), try to answer the waiting request on the
# consent socket, and write what the agent said to a file (renamed into place when whole).
PROBE = r"""
import os, socket, sys, time
def parent_comm():
    try:
        with open("/proc/%d/comm" % os.getppid()) as f:
            return f.read().strip()
    except OSError:
        return ""
deadline = time.monotonic() + 10
while parent_comm() == "setsid" and time.monotonic() < deadline:
    time.sleep(0.01)
s = socket.socket(socket.AF_UNIX)
s.settimeout(5)
got = b""
try:
    s.connect(sys.argv[1])
    try:
        s.sendall(("ANSWER %s yes\n" % sys.argv[2]).encode())
    except OSError:
        pass  # refused and closed before the line went out
    while True:
        d = s.recv(4096)
        if not d:
            break
        got += d
except OSError as e:
    if not got:  # after the agent's line, a reset only says it did not read ours
        got = ("probe: %s\n" % e).encode()
with open(sys.argv[3] + ".tmp", "wb") as f:
    f.write(got)
os.rename(sys.argv[3] + ".tmp", sys.argv[3])
"""


def cgroup2_writable():
    """Can this process make a cgroup v2 group (with cgroup.kill) inside its own, as the
    agent will? Found as the agent finds it: the mount in mountinfo, our group in
    /proc/self/cgroup."""
    mnt = root = path = None
    with open("/proc/self/mountinfo") as f:
        for ln in f:
            left, _, right = ln.partition(" - ")
            if right.split()[:1] == ["cgroup2"]:
                fields = left.split()
                root, mnt = fields[3], fields[4].replace("\\040", " ")
                break
    with open("/proc/self/cgroup") as f:
        for ln in f:
            if ln.startswith("0::"):
                path = ln[3:].strip()
    if not mnt or path is None:
        return False
    if root != "/":
        if not (path == root or path.startswith(root + "/")):
            return False
        path = path[len(root):]
    probe = os.path.join(mnt + path.rstrip("/"), "tt-it-probe.%d" % os.getpid())
    try:
        os.mkdir(probe)
    except OSError:
        return False
    try:
        return os.access(os.path.join(probe, "cgroup.kill"), os.W_OK)
    finally:
        os.rmdir(probe)


def live_processes(argvs):
    """{argv: [pids]} of the processes running now (zombies do not count) whose command line
    is one of argvs."""
    found = {tuple(a): [] for a in argvs}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % d, "rb") as f:
                argv = tuple(x.decode() for x in f.read().split(b"\0")[:-1])
            if argv not in found:
                continue
            with open("/proc/%s/stat" % d) as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except (OSError, ValueError, IndexError, UnicodeDecodeError):
            continue
        if state != "Z":
            found[argv].append(int(d))
    return found


class Strays:
    """Four processes that try to outlive a session, each its own way; their `sleep` times
    are unique to one test so that nothing else on the machine is mistaken for them."""

    def __init__(self, test):
        n = random.randrange(10000, 100000)
        self.how = {"background job": "1001.%d" % n, "nohup": "1002.%d" % n, "setsid -f": "1003.%d" % n,
                    "double fork": "1004.%d" % n}
        self.argvs = [("sleep", t) for t in self.how.values()]
        test.addCleanup(self.kill)  # never leave them behind, even when the test fails

    def commands(self):
        h = self.how
        return ("sleep %s >/dev/null 2>&1 & nohup sleep %s >/dev/null 2>&1 & "
                "setsid -f sleep %s >/dev/null 2>&1 </dev/null; (sleep %s >/dev/null 2>&1 &)"
                % (h["background job"], h["nohup"], h["setsid -f"], h["double fork"]))

    def _named(self):
        procs = live_processes(self.argvs)
        return {how: procs[("sleep", t)] for how, t in self.how.items()}

    def wait_running(self, timeout=15.0):
        deadline = time.monotonic() + timeout
        while True:
            named = self._named()
            if all(named.values()):
                return
            if time.monotonic() > deadline:
                raise AssertionError("not all started: %r" % named)
            time.sleep(0.05)

    def wait_gone(self, timeout=15.0):
        deadline = time.monotonic() + timeout
        while True:
            left = {how: pids for how, pids in self._named().items() if pids}
            if not left:
                return
            if time.monotonic() > deadline:
                raise AssertionError("outlived the session: %s" % ", ".join(
                    "%s (pid %s)" % (how, ",".join(map(str, pids))) for how, pids in sorted(left.items())))
            time.sleep(0.05)

    def kill(self):
        for pids in self._named().values():
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass


class Contained(SessionWorld):
    """The tests, run by a subclass per containment mode."""
    MODE = None

    @classmethod
    def setUpClass(cls):
        cls.pki = Pki()
        for role, name in (("technician", "tech"), ("technician", "tech2"), ("admin", "boss"),
                           ("agent", "dev1")):
            cls.pki.issue(role, name)

    def contained_world(self, **kw):
        self.world(agent_extra=["--shell-containment", self.MODE], **kw)
        self.a.wait_for(r'msg="containment" mode=%s' % self.MODE)

    def shell_with_strays(self, tid, **kw):
        con = self.pty_console(["shell", "dev1", "--ticket", tid], **kw)
        con.wait_output(rb"[#$] $")
        s = Strays(self)
        con.write(s.commands().encode() + b"; echo spawned-$((40+2))\r")
        con.wait_output(rb"spawned-42")
        s.wait_running()
        return con, s

    # -- defect: processes outlive the session ------------------------------------------

    def test_console_killed(self):
        self.contained_world(policy="unattended")
        con, s = self.shell_with_strays(self.new_ticket())
        con.p.kill()  # the technician's terminal is gone, not politely
        s.wait_gone()

    def test_session_end(self):
        self.contained_world(policy="unattended")
        con, s = self.shell_with_strays(self.new_ticket())
        r = self.tech(["session", "end", "S-1"])
        self.assertEqual(r.rc, 0, r)
        self.assertNotEqual(con.wait_exit(), 0)
        s.wait_gone()

    def test_grant_expires(self):
        self.contained_world(policy="unattended")
        tid = self.new_ticket()
        r = self.tech(["session", "open", "--device", "dev1", "--ticket", tid, "--want", "shell", "--for", "12s"])
        self.assertEqual(r.rc, 0, r)
        con, s = self.shell_with_strays(tid)  # reuses the grant
        self.assertNotEqual(con.wait_exit(timeout=20), 0)
        self.assertIn(b"the session's time ran out", con.output())
        s.wait_gone()

    def test_shell_exits(self):
        self.contained_world(policy="unattended")
        con, s = self.shell_with_strays(self.new_ticket())
        con.write(b"exit 3\r")
        self.assertEqual(con.wait_exit(), 3)
        s.wait_gone()

    def test_exec_ends(self):
        """A command's box goes when the command exits (it waits on a FIFO until the test has
        seen everything it started running)."""
        self.contained_world(policy="unattended")
        tid = self.new_ticket()
        fifo = os.path.join(self.h.dir, "go")
        os.mkfifo(fifo)
        s = Strays(self)
        ex = self.spawn_bg(["exec", "dev1", "--ticket", tid, "--", "sh", "-c",
                            s.commands() + "; echo spawned; cat %s" % fifo])
        s.wait_running()
        with open(fifo, "w"):
            pass  # EOF for cat: the command exits
        out, err = ex.communicate(timeout=30)
        self.assertEqual(ex.returncode, 0, err)
        self.assertEqual(out, b"spawned\n")
        s.wait_gone()

    # -- defect: a technician's own process can give consent -------------------------------

    def test_detached_process_cannot_consent(self):
        """A process a session started that detached to init (setsid -f) tries to answer the
        next request on the consent socket: it is refused and told why, and the request
        stays the employee's to answer."""
        self.contained_world()
        w = self.watcher()
        con = self.pty_console(["shell", "dev1", "--ticket", self.new_ticket()])
        w.answer(w.prompt()["id"], True)
        con.wait_output(rb"[#$] $")
        t2 = self.new_ticket(who="tech2", summary="second request")
        ex = self.spawn_bg(["exec", "dev1", "--ticket", t2, "--", "echo", "granted"], who="tech2")
        p2 = w.prompt()
        probe, said = os.path.join(self.h.dir, "probe.py"), os.path.join(self.h.dir, "probe.out")
        with open(probe, "w") as f:
            f.write(PROBE)
        con.write(("setsid -f %s %s %s %s %s\r" % (sys.executable, probe, self.sock, p2["id"], said)).encode())
        deadline = time.monotonic() + 20
        while not os.path.exists(said) and time.monotonic() < deadline:
            time.sleep(0.05)
        with open(said) as f:
            lines = f.read().splitlines()
        self.assertEqual(lines, ["ERR this process was started in a support session (S-1) and cannot answer "
                                 "for the employee"])
        self.assertRegex(self.a.log(), r'msg="local client refused" .*session_process=1 session=S-1')
        # Nothing answered the request: it still waits, and the employee's no is what counts.
        self.assertIsNone(ex.poll())
        w.answer(p2["id"], False)
        out, err = ex.communicate(timeout=30)
        self.assertEqual(ex.returncode, 1, err)
        self.assertIn(b"refused", err)
        given = [e["target"] for e in self.audit() if e["action"] == "consent-given"]
        self.assertEqual(given, ["S-1"])


@unittest.skipUnless(cgroup2_writable(), "no writable cgroup v2 here (the agent falls back to subreaper)")
class CgroupContainTest(Contained, TetherTestCase):
    MODE = "cgroup"

    def test_groups_removed(self):
        """Each shell's group goes when it is empty, and the agent's tree goes with the agent."""
        self.contained_world(policy="unattended")
        root = self.a.wait_for(r'msg="containment" mode=cgroup group=(\S+)').group(1)
        self.assertTrue(os.path.isdir(root))
        con, s = self.shell_with_strays(self.new_ticket())
        groups = [d for d, _, _ in os.walk(root) if os.path.basename(d).startswith("p")]
        self.assertEqual(len(groups), 1, groups)
        with open(os.path.join(groups[0], "cgroup.procs")) as f:
            self.assertGreaterEqual(len(f.read().split()), 5)  # the shell and its four strays
        con.write(b"exit\r")
        self.assertEqual(con.wait_exit(), 0)
        s.wait_gone()
        deadline = time.monotonic() + 10
        while os.path.exists(groups[0]) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertFalse(os.path.exists(groups[0]))
        self.a.stop()
        self.assertFalse(os.path.exists(root))


class SubreaperContainTest(Contained, TetherTestCase):
    MODE = "subreaper"

    def test_keeper_killed_strays_still_die(self):
        """Should a keeper itself be killed (root can), what it held comes up to the agent,
        a subreaper too, which kills it."""
        if os.geteuid() != 0:
            self.skipTest("the keeper runs as root only when the agent does")
        self.contained_world(policy="unattended")
        con, s = self.shell_with_strays(self.new_ticket())
        keepers = [int(p) for p in os.listdir("/proc") if p.isdigit() and self._ppid(int(p)) == self.a.pid]
        self.assertEqual(len(keepers), 1, keepers)
        os.kill(keepers[0], signal.SIGKILL)
        s.wait_gone()
        self.assertIn("lost its keeper", self.a.log())

    @staticmethod
    def _ppid(pid):
        try:
            with open("/proc/%d/stat" % pid) as f:
                return int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            return 0


if __name__ == "__main__":
    unittest.main()
