"""tether-sshd with the real OpenSSH client from Debian: a technician logs in with the key
they registered (`tether ssh-key add`) as DEVICE+T-n and gets a command or a shell on the
device under that ticket, with the same consent, recording and audit as `tether shell`.

Covered here: exec with exit status 0, 3 and a signal; stdin to `sh -s`; stdout and stderr
apart; an interactive shell on a pty with a resize; consent asked and refused; a key not
registered, a key offered without a valid signature; a ticket not assigned to the person;
a revoked person refused and their live session ended; forwarding refused; bad user names;
hostile input on the SSH port (a garbage banner, an oversized packet, many unauthenticated
connections from one address while another still logs in). The real broker, agent and
gateway on 127.0.0.1.

Run by ctest as `integration.sshd` (TT_BIN_DIR names the build directory)."""

import base64
import hashlib
import json
import shutil
import tempfile
import threading
import os
import pty
import re
import select
import socket
import struct
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # minissh
from harness import Pki, TetherTestCase, binary  # noqa: E402
from test_session import PtyConsole, SessionWorld, set_winsize  # noqa: E402

SSH_TIMEOUT = 60


class FakeAgent:
    """An ssh-agent (the protocol of draft-miller-ssh-agent) that holds one public key and
    answers every signing request with 64 random bytes: a signature that cannot verify."""

    def __init__(self, path, blob):
        self.blob, self.signed = blob, 0
        self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.srv.bind(path)
        self.srv.listen(4)
        self.stop = False
        self.t = threading.Thread(target=self._serve, daemon=True)
        self.t.start()

    @staticmethod
    def _s(b):
        return struct.pack(">I", len(b)) + b

    def _serve(self):
        self.srv.settimeout(0.2)
        while not self.stop:
            try:
                c, _ = self.srv.accept()
            except OSError:
                continue
            c.settimeout(30)
            with c:
                try:
                    while True:
                        head = c.recv(4, socket.MSG_WAITALL)
                        if len(head) < 4:
                            break
                        body = c.recv(struct.unpack(">I", head)[0], socket.MSG_WAITALL)
                        if body[:1] == b"\x0b":  # REQUEST_IDENTITIES
                            out = b"\x0c" + struct.pack(">I", 1) + self._s(self.blob) + self._s(b"fake")
                        elif body[:1] == b"\x0d":  # SIGN_REQUEST
                            self.signed += 1
                            out = b"\x0e" + self._s(self._s(b"ssh-ed25519") + self._s(os.urandom(64)))
                        else:
                            out = b"\x05"  # FAILURE
                        c.sendall(self._s(out))
                except OSError:
                    pass

    def close(self):
        self.stop = True
        self.t.join(timeout=2)
        self.srv.close()


class SshdWorld(SessionWorld):
    """A broker, device dev1, and tether-sshd on a free port; people tech, tech2 and boss with
    ssh keys registered."""

    @classmethod
    def make_pki(cls):
        cls.pki = Pki()
        for role, name in (("technician", "tech"), ("technician", "tech2"), ("admin", "boss"), ("agent", "dev1"),
                           ("gateway", "gw1")):
            cls.pki.issue(role, name)

    def start_sshd(self, extra=()):
        self.host_key = os.path.join(self.h.dir, "ssh_host_ed25519_key")
        g = self.h.spawn("sshd", "tether-sshd",
                         ["--listen", "127.0.0.1:0", "--broker", self.b.addr, "--ca", self.pki.ca,
                          "--cert", self.pki.cert("gw1"), "--key", self.pki.key("gw1"),
                          "--host-key", self.host_key, "--refresh", "200ms", "--login-grace", "3s",
                          "--spool-dir", self.spool_dir()] + list(extra))
        m = g.wait_for(r'msg="listening" listen=(\S+)')
        g.addr = m.group(1)
        g.port = int(g.addr.rsplit(":", 1)[1])
        g.wait_for(r'msg="ready"')
        self.g = g
        self.known_hosts = os.path.join(self.h.dir, "known_hosts")
        r = self.tech(["ssh-config", "--json"])
        self.assertEqual(r.rc, 0, r)
        gws = [json.loads(ln) for ln in r.out.splitlines()]
        self.assertEqual([(x["gateway"], x["port"]) for x in gws], [("gw1", g.port)], gws)
        with open(self.known_hosts, "w") as f:
            f.write("[127.0.0.1]:%d %s\n" % (g.port, gws[0]["host_key"]))
        return g

    def spool_dir(self):
        """Run as root, the gateway becomes nobody: its spool must be reachable by nobody (the
        harness's own directory is not)."""
        top = tempfile.mkdtemp(prefix="tt-spool-", dir="/tmp")
        os.chmod(top, 0o755)
        self.addCleanup(shutil.rmtree, top, True)
        return os.path.join(top, "spool")

    def keygen(self, name, kind="ed25519", bits=None):
        d = os.path.join(self.h.dir, "keys")
        os.makedirs(d, exist_ok=True)
        path = os.path.join(d, name)
        argv = ["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", name + "@laptop", "-f", path]
        if bits:
            argv[4:4] = ["-b", str(bits)]
        subprocess.run(argv, check=True, timeout=60)
        return path

    def register(self, who="tech", name=None):
        path = self.keygen(name or who + "-key")
        mark = self.g.mark()
        r = self.tech(["ssh-key", "add", path + ".pub"], who=who)
        self.assertEqual(r.rc, 0, r)
        fp = r.out.split()[-1]
        # The gateway lets the key in once it has fetched the list that holds it.
        self.g.wait_for(r'msg="keys changed"', after=mark)
        return path, fp

    def ssh_argv(self, key, user, command=(), opts=()):
        return (["ssh", "-F", "/dev/null", "-p", str(self.g.port), "-i", key, "-o", "IdentitiesOnly=yes",
                 "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-o",
                 "UserKnownHostsFile=" + self.known_hosts, "-o", "ConnectTimeout=20", "-o", "LogLevel=ERROR"]
                + list(opts) + ["%s@127.0.0.1" % user] + list(command))

    def ssh(self, key, user, command=(), opts=(), input=b"", timeout=SSH_TIMEOUT):
        p = subprocess.run(self.ssh_argv(key, user, command, opts), input=input, capture_output=True,
                           timeout=timeout, env=self.h.env)
        return p

    def setup_world(self, policy="unattended"):
        self.world(policy=policy)
        self.start_sshd()
        self.key, self.fp = self.register()
        self.tid = self.new_ticket()
        self.user = "dev1+" + self.tid


class SshdTest(SshdWorld, TetherTestCase):
    maxDiff = None

    @classmethod
    def setUpClass(cls):
        cls.make_pki()

    def setUp(self):
        super().setUp()
        self.setup_world()

    # -- exec ------------------------------------------------------------------------------

    def test_exec_status_streams_and_audit(self):
        p = self.ssh(self.key, self.user, ["echo out; echo err >&2; exit 3"])
        self.assertEqual((p.returncode, p.stdout, p.stderr), (3, b"out\n", b"err\n"), p)
        p = self.ssh(self.key, self.user, ["true"])
        self.assertEqual(p.returncode, 0, p)
        # A signal: ssh exits 255 and says which ("killed by signal" as OpenSSH prints it).
        p = self.ssh(self.key, self.user, ["kill -TERM $$"])
        self.assertEqual(p.returncode, 255, p)
        # The hostname names the device as well as its id.
        p = self.ssh(self.key, "dev1.example+" + self.tid, ["hostname >/dev/null; echo ok"])
        self.assertEqual((p.returncode, p.stdout), (0, b"ok\n"), p)
        acts = [(e["action"], e.get("actor"), e["detail"].get("via")) for e in self.audit()]
        self.assertIn(("act-as", "tech", "ssh"), acts)
        self.assertIn(("channel-open", "tech", "ssh"), acts)

    def test_host_key_and_algorithms(self):
        """The host key is ed25519, made at first start, 0600, and --fingerprint prints what
        ssh sees; only modern algorithms are offered; a host key others can read is refused."""
        self.assertEqual(os.stat(self.host_key).st_mode & 0o777, 0o600)
        r = subprocess.run([binary("tether-sshd"), "--fingerprint", "--host-key", self.host_key], capture_output=True,
                           text=True, timeout=30, env=self.h.env)
        self.assertEqual(r.returncode, 0, r)
        scan = subprocess.run(["ssh-keygen", "-lf", self.known_hosts], capture_output=True, text=True, timeout=30)
        self.assertEqual(r.stdout.split()[0], scan.stdout.split()[1], (r.stdout, scan.stdout))
        self.assertIn("fingerprint=" + r.stdout.strip(), self.g.log())
        for opt in ("KexAlgorithms=diffie-hellman-group14-sha256", "Ciphers=aes128-ctr",
                    "HostKeyAlgorithms=rsa-sha2-256,ecdsa-sha2-nistp256", "KexAlgorithms=diffie-hellman-group14-sha1"):
            mark = self.g.mark()
            p = self.ssh(self.key, self.user, ["true"], opts=["-o", opt])
            self.assertEqual(p.returncode, 255, (opt, p))
            self.g.wait_for(r'msg="key exchange failed"', after=mark)
        loose = os.path.join(self.h.dir, "loose_key")
        shutil.copy(self.host_key, loose)
        os.chmod(loose, 0o644)
        r = subprocess.run([binary("tether-sshd"), "--fingerprint", "--host-key", loose], capture_output=True,
                           text=True, timeout=30, env=self.h.env)
        self.assertEqual(r.returncode, 1, r)
        self.assertIn("only its owner can read", r.stderr)

    def test_stdin_reaches_the_command(self):
        script = b"a=$((6*7))\necho \"got $a\" \"$(uname -s)\"\nexit 7\n"
        p = self.ssh(self.key, self.user, ["sh -s"], input=script)
        self.assertEqual((p.returncode, p.stdout), (7, b"got 42 Linux\n"), p)
        data = os.urandom(3 * 1024 * 1024)
        p = self.ssh(self.key, self.user, ["sha256sum"], input=data)
        import hashlib
        self.assertEqual((p.returncode, p.stdout.split()[0].decode()), (0, hashlib.sha256(data).hexdigest()), p)

    # -- refusals ----------------------------------------------------------------------------

    def test_unknown_key_is_refused(self):
        other = self.keygen("stranger")
        p = self.ssh(other, self.user, ["true"])
        self.assertEqual(p.returncode, 255, p)
        self.assertIn(b"Permission denied (publickey)", p.stderr)
        self.g.wait_for(r'msg="key refused" .*why=not', after=0)

    def test_key_without_a_valid_signature_is_refused(self):
        """A client that offers a registered key but cannot sign with it (here an ssh-agent that
        answers with garbage) never logs in: the probe is answered, the bad signature is not."""
        with open(self.key + ".pub") as f:
            blob = base64.b64decode(f.read().split()[1])
        sock_path = os.path.join(self.h.dir, "agent.sock")
        agent = FakeAgent(sock_path, blob)
        self.addCleanup(agent.close)
        env = dict(self.h.env, SSH_AUTH_SOCK=sock_path)
        argv = self.ssh_argv(self.key + ".pub", self.user, ["echo", "in"])
        p = subprocess.run(argv, capture_output=True, timeout=SSH_TIMEOUT, env=env)
        self.assertEqual((p.returncode, p.stdout), (255, b""), p)
        self.assertGreaterEqual(agent.signed, 1, "the client never asked the agent to sign")
        self.g.wait_for(r'msg="connection ended" address=127\.0\.0\.1:\d+ person=- why="login grace time over"')
        self.assertNotIn("key verified", self.g.log().split('msg="keys changed"')[-1])

    def test_ticket_not_assigned_to_the_person(self):
        k2, _ = self.register("tech2", "t2")
        p = self.ssh(k2, self.user, ["true"])
        self.assertEqual(p.returncode, 255, p)
        self.assertIn(b"tether: ", p.stderr)
        self.assertIn(b"assigned", p.stderr)

    def test_bad_user_names(self):
        for user in ("dev1", "dev1+T-x", "nosuch+" + self.tid):
            p = self.ssh(self.key, user, ["true"])
            self.assertEqual(p.returncode, 255, (user, p))
            self.assertIn(b"tether: ", p.stderr, (user, self.g.log()))
        p = self.ssh(self.key, "nosuch+" + self.tid, ["true"])
        self.assertIn(b"no device has the id or hostname nosuch", p.stderr)

    def test_forwarding_is_refused(self):
        p = self.ssh(self.key, self.user, ["echo hi"], opts=["-o", "ExitOnForwardFailure=yes", "-L", "0:127.0.0.1:9"])
        # -L is asked for per connection through the channel; what counts is that nothing is
        # forwarded and the command still runs.
        self.assertIn(p.returncode, (0, 255), p)
        p = self.ssh(self.key, self.user, ["echo hi"], opts=["-o", "ExitOnForwardFailure=yes", "-R", "0:127.0.0.1:9"])
        self.assertEqual(p.returncode, 255, p)
        self.assertIn(b"forwarding failed", p.stderr)
        p = self.ssh(self.key, self.user, ["echo hi"], opts=["-R", "0:127.0.0.1:9"])
        self.assertEqual((p.returncode, p.stdout), (0, b"hi\n"), p)
        self.assertIn(b"tether: port forwarding is not allowed through Tether", p.stderr)
        p = self.ssh(self.key, self.user, ["echo hi"], opts=["-A"])
        self.assertEqual((p.returncode, p.stdout), (0, b"hi\n"), p)
        # X11: the client asks on the session channel (it needs a DISPLAY to ask at all).
        env = dict(self.h.env, DISPLAY="127.0.0.1:99")
        p = subprocess.run(self.ssh_argv(self.key, self.user, ["echo hi"], opts=["-X"]), capture_output=True,
                           timeout=SSH_TIMEOUT, env=env)
        self.assertEqual((p.returncode, p.stdout), (0, b"hi\n"), p)
        self.assertIn(b"tether: X11 forwarding is not allowed through Tether", p.stderr)

    def pty_ssh(self, key=None, user=None, command=(), rows=24, cols=80):
        c = PtyConsole(self.ssh_argv(key or self.key, user or self.user, command, opts=["-tt"]), self.h.env,
                       self.h.dir, rows, cols)
        self.addCleanup(c.close)
        return c

    def test_interactive_shell_on_a_pty_with_resize(self):
        con = self.pty_ssh(rows=24, cols=80)
        con.write(b"stty size; tty; echo $((6*7))\r")
        con.wait_output(rb"24 80\r\n/dev/pts/\d+\r\n42\r\n")
        mark = len(con.output())
        set_winsize(con.master, 40, 120)  # the kernel sends ssh SIGWINCH; ssh sends window-change
        deadline = time.monotonic() + 15
        while True:
            con.write(b"stty size\r")
            try:
                con.wait_output(rb"40 120", after=mark, timeout=1)
                break
            except AssertionError:
                if time.monotonic() > deadline:
                    raise
        # ^C reaches the remote foreground job, not the session.
        con.write(b"sleep 30; echo after-sleep\r")
        con.wait_output(rb"sleep 30; echo after-sleep", after=mark)
        con.write(b"\x03")
        con.write(b"echo alive-$((2+3))\r")
        con.wait_output(rb"alive-5", after=mark)
        con.write(b"echo rec-$((40+2))\r")
        con.wait_output(rb"rec-42", after=mark)
        con.write(b"exit 4\r")
        self.assertEqual(con.wait_exit(), 4)
        acts = [(e["action"], e["detail"].get("via")) for e in self.audit()]
        self.assertIn(("channel-open", "ssh"), acts)
        # Recorded as tether shell records: the replay shows it, its sha256 is in the audit.
        self.wait_until(lambda: "recording" in [e["action"] for e in self.audit()], "the recording's audit entry")
        r = self.tech(["replay", "S-1", "--speed", "0"])
        self.assertEqual(r.rc, 0, r)
        self.assertIn("rec-42", r.out)
        rec = [e for e in self.audit() if e["action"] == "recording"][0]
        with open(os.path.join(self.b.data_dir, "recordings", "R-1.cast.zst"), "rb") as f:
            self.assertEqual(rec["detail"]["sha256"], hashlib.sha256(f.read()).hexdigest())

    def test_revoked_person_is_ended(self):
        con = self.pty_ssh()
        con.write(b"echo READY-$((6*7))\r")
        con.wait_output(rb"READY-42")
        r = self.admin(["revoke", "person", "tech", "--reason", "left the company"])
        self.assertEqual(r.rc, 0, r)
        t0 = time.monotonic()
        rc = con.wait_exit(timeout=10)
        ended_in = time.monotonic() - t0
        self.assertEqual(rc, 255, con.output()[-500:])
        self.assertIn(b"tether: ", con.output())
        self.assertIn(b"revoked", con.output())
        sys.stderr.write("[revoked person's live ssh session ended %.0f ms after the revoke returned]\n" % (ended_in * 1000))
        self.assertLess(ended_in, 5.0)  # a generous bound: the figure is printed above
        # A new login is refused.
        p = self.ssh(self.key, self.user, ["true"])
        self.assertEqual(p.returncode, 255, p)


    # -- hostile input on the SSH port -------------------------------------------------------

    def test_garbage_and_floods_close_only_that_connection(self):
        s = socket.create_connection(("127.0.0.1", self.g.port), timeout=10)
        s.recv(256)  # our banner
        s.sendall(b"GET / HTTP/1.1\r\n\r\n" + os.urandom(4096))
        s.settimeout(10)
        try:
            while s.recv(4096):
                pass
        except OSError:
            pass
        s.close()
        # An oversized packet after a real banner.
        s = socket.create_connection(("127.0.0.1", self.g.port), timeout=10)
        s.recv(256)
        s.sendall(b"SSH-2.0-evil\r\n" + struct.pack(">I", 0x7fffffff) + b"\x05" + os.urandom(1024))
        try:
            while s.recv(4096):
                pass
        except OSError:
            pass
        s.close()
        # 1,000 unauthenticated connections from 127.0.0.1 (50 held open, the rest opened and
        # dropped), while another address (127.0.0.2) logs in and runs a command.
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        held, done = [], threading.Event()
        self.addCleanup(lambda: [c.close() for c in held])

        def flood():
            for i in range(1000):
                try:
                    c = socket.create_connection(("127.0.0.1", self.g.port), timeout=10)
                except OSError:
                    continue
                if len(held) < 50:
                    held.append(c)
                else:
                    c.close()
            done.set()
        t = threading.Thread(target=flood, daemon=True)
        t.start()
        self.g.wait_for(r'msg="connection refused" address=127\.0\.0\.1 why="max_startups"')
        p = subprocess.run(self.ssh_argv(self.key, self.user, ["echo", "still"], opts=["-b", "127.0.0.2"]),
                           capture_output=True, timeout=SSH_TIMEOUT, env=self.h.env)
        self.assertEqual((p.returncode, p.stdout), (0, b"still\n"), p)
        self.assertTrue(done.wait(SSH_TIMEOUT))
        self.assertLess(len(held), 1000, (soft, hard))
        self.assertTrue(self.g.alive())



class SshdConsentTest(SshdWorld, TetherTestCase):
    """Consent asked of the person at the device, as for tether shell."""

    @classmethod
    def setUpClass(cls):
        cls.make_pki()

    def setUp(self):
        super().setUp()
        self.setup_world(policy="ask")

    def test_waiting_then_granted_then_reused(self):
        w = self.watcher()
        p = subprocess.Popen(self.ssh_argv(self.key, self.user, ["echo granted"]), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=self.h.env)
        self.addCleanup(lambda: p.poll() is None and (p.kill(), p.wait()))
        pr = w.prompt()
        self.assertEqual((pr["technician"], pr["ticket"], pr["access"]), ("tech", self.tid, "shell"))
        # The technician is told who is being asked, on stderr, while it waits.
        self.g.wait_for(r'msg="logged in"')
        deadline = time.monotonic() + 10
        err = b""
        os.set_blocking(p.stderr.fileno(), False)
        while b" (60 s)...\n" not in err and time.monotonic() < deadline:
            select.select([p.stderr], [], [], 0.5)
            try:
                err += p.stderr.read() or b""
            except (BlockingIOError, TypeError):
                pass
        self.assertIn(b"tether: waiting for the person at dev1.example to allow shell access under %s (60 s)..."
                      % self.tid.encode(), err)
        w.answer(pr["id"], True)
        out, err2 = p.communicate(timeout=SSH_TIMEOUT)
        self.assertEqual((p.returncode, out), (0, b"granted\n"), err + err2)
        # The grant is reused: no second prompt.
        q = self.ssh(self.key, self.user, ["echo again"])
        self.assertEqual((q.returncode, q.stdout), (0, b"again\n"), q)
        self.assertTrue(w.quiet(0.5))

    def test_employee_refuses(self):
        w = self.watcher()
        p = subprocess.Popen(self.ssh_argv(self.key, self.user, ["echo no"]), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=self.h.env)
        self.addCleanup(lambda: p.poll() is None and (p.kill(), p.wait()))
        pr = w.prompt()
        w.answer(pr["id"], False)
        out, err = p.communicate(timeout=SSH_TIMEOUT)
        self.assertEqual((p.returncode, out), (255, b""), err)
        self.assertIn(b"tether: the employee refused access", err)


class SshdAbuseTest(SshdWorld, TetherTestCase):
    """What a hostile client can push on: the window, signature checks, the pre-login slots,
    and the gateway's own stop."""

    @classmethod
    def setUpClass(cls):
        cls.make_pki()

    def setUp(self):
        super().setUp()
        self.setup_world()

    def mini_key(self):
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
        sk = ed25519.Ed25519PrivateKey.generate()
        pub = sk.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        path = os.path.join(self.h.dir, "mini.pub")
        with open(path, "wb") as f:
            f.write(pub + b" mini@test\n")
        mark = self.g.mark()
        r = self.tech(["ssh-key", "add", path])
        self.assertEqual(r.rc, 0, r)
        self.g.wait_for(r'msg="keys changed"', after=mark)
        return sk

    def test_a_client_ignoring_its_window_is_ended(self):
        import minissh
        sk = self.mini_key()
        c = minissh.Client("127.0.0.1", self.g.port)
        self.addCleanup(c.sock.close)
        c.connect()
        self.assertTrue(c.auth(self.user, sk))
        self.assertTrue(c.open_session())
        chunk, sent, cut = os.urandom(32000), 0, False
        while sent < 64 * 1024 * 1024:  # far past any window; the gateway ends it long before
            try:
                c.data(chunk)
            except OSError:
                cut = True
                break
            sent += len(chunk)
        self.g.wait_for(r'msg="client ignored its window"')
        self.g.wait_for(r'msg="connection ended" .*why="the client sent past its window"')
        self.assertTrue(cut or sent <= 64 * 1024 * 1024)
        p = self.ssh(self.key, self.user, ["echo", "fine"])
        self.assertEqual((p.returncode, p.stdout), (0, b"fine\n"), p)

    def test_a_flood_of_bad_signatures_is_cut_off(self):
        """Each signed attempt costs a signature check before any callback sees it (and a bad
        one is dropped unanswered): the connection's pre-login work is bounded instead."""
        import minissh
        from minissh import mpint, s
        c = minissh.Client("127.0.0.1", self.g.port)
        self.addCleanup(c.sock.close)
        c.connect()
        c.send_pkt(bytes([5]) + s("ssh-userauth"))
        self.assertEqual(c.recv_skip()[0], 6)
        nbytes = 2048  # an RSA-16384 key with a huge public exponent: slow to check
        n = int.from_bytes(os.urandom(nbytes), "big") | (1 << (nbytes * 8 - 1)) | 1
        blob = s("ssh-rsa") + mpint(((1 << 64) - 1).to_bytes(8, "big")) + mpint(n.to_bytes(nbytes, "big"))
        try:
            for _ in range(2000):
                sig = (int.from_bytes(os.urandom(nbytes), "big") % n).to_bytes(nbytes, "big")
                body = s("x") + s("ssh-connection") + s("publickey") + b"\x01" + s("rsa-sha2-512") + s(blob)
                c.send_pkt(bytes([50]) + body + s(s("rsa-sha2-512") + s(sig)))
        except OSError:
            pass
        self.g.wait_for(r'msg="pre-login work over budget"')
        p = self.ssh(self.key, self.user, ["echo", "fine"])
        self.assertEqual((p.returncode, p.stdout), (0, b"fine\n"), p)

    def test_a_few_addresses_cannot_lock_everyone_out(self):
        """Ten addresses each holding their max_startups of silent connections fill max_unauth
        (100): a newcomer from elsewhere still logs in (the oldest of the busiest makes room)."""
        held = []
        self.addCleanup(lambda: [x.close() for x in held])
        for a in range(2, 12):
            for _ in range(10):
                x = socket.socket()
                x.bind(("127.0.0.%d" % a, 0))
                x.connect(("127.0.0.1", self.g.port))
                held.append(x)
        self.wait_until(lambda: self.g.log().count('msg="key exchange failed"') >= 0 and len(held) == 100, "held")
        p = subprocess.run(self.ssh_argv(self.key, self.user, ["echo", "in"], opts=["-b", "127.0.0.99"]),
                           capture_output=True, timeout=SSH_TIMEOUT, env=self.h.env)
        self.assertEqual((p.returncode, p.stdout), (0, b"in\n"), p)
        self.assertIn('msg="connection dropped for room"', self.g.log())

    def test_sigterm_ends_every_session(self):
        ps = []
        for i in range(3):
            p = subprocess.Popen(self.ssh_argv(self.key, self.user, ["echo up%d; sleep 60" % i]),
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=self.h.env)
            self.addCleanup(lambda p=p: (p.poll() is None and (p.kill(), p.wait()), p.stdout.close(), p.stderr.close()))
            ps.append(p)
        for i, p in enumerate(ps):
            self.assertEqual(p.stdout.readline(), b"up%d\n" % i)
        self.assertEqual(self.g.stop(), 0, self.g.log()[-2000:])
        for p in ps:
            p.wait(timeout=SSH_TIMEOUT)
            self.assertIn(b"the gateway is stopping", p.stderr.read())


class SshdFilesTest(SshdWorld, TetherTestCase):
    """scp and sftp through the gateway, on the device's file channel."""

    @classmethod
    def setUpClass(cls):
        cls.make_pki()

    def setUp(self):
        super().setUp()
        self.setup_world()
        self.remote = tempfile.mkdtemp(prefix="tt-sftp-", dir="/tmp")
        self.addCleanup(shutil.rmtree, self.remote, True)

    def ssh_opts(self):
        return ["-F", "/dev/null", "-i", self.key, "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
                "-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile=" + self.known_hosts,
                "-o", "LogLevel=ERROR"]

    def sftp(self, batch):
        path = os.path.join(self.h.dir, "batch-%d" % time.monotonic_ns())
        with open(path, "w") as f:
            f.write(batch)
        return subprocess.run(["sftp", "-P", str(self.g.port), "-b", path] + self.ssh_opts()
                              + ["%s@127.0.0.1" % self.user], capture_output=True, timeout=SSH_TIMEOUT, env=self.h.env)

    def scp(self, *args):
        return subprocess.run(["scp", "-P", str(self.g.port)] + self.ssh_opts() + list(args), capture_output=True,
                              timeout=SSH_TIMEOUT, env=self.h.env)

    def test_scp_up_and_down(self):
        import hashlib
        data = os.urandom(5 * 1024 * 1024 + 123)
        local = os.path.join(self.h.dir, "up.bin")
        with open(local, "wb") as f:
            f.write(data)
        r = self.scp(local, "%s@127.0.0.1:%s/up.bin" % (self.user, self.remote))
        self.assertEqual(r.returncode, 0, r)
        with open(os.path.join(self.remote, "up.bin"), "rb") as f:
            self.assertEqual(hashlib.sha256(f.read()).hexdigest(), hashlib.sha256(data).hexdigest())
        back = os.path.join(self.h.dir, "down.bin")
        r = self.scp("%s@127.0.0.1:%s/up.bin" % (self.user, self.remote), back)
        self.assertEqual(r.returncode, 0, r)
        with open(back, "rb") as f:
            self.assertEqual(hashlib.sha256(f.read()).hexdigest(), hashlib.sha256(data).hexdigest())
        # Each file is in the audit with its sha256, as for tether push and pull.
        sums = [(e["action"], e["detail"].get("sha256")) for e in self.audit() if e["action"].startswith("file-")]
        self.assertIn(("file-push", hashlib.sha256(data).hexdigest()), sums)
        self.assertIn(("file-pull", hashlib.sha256(data).hexdigest()), sums)

    def test_sftp_ls_get_put_mkdir(self):
        with open(os.path.join(self.remote, "hello.txt"), "w") as f:
            f.write("hello from the device\n")
        local = os.path.join(self.h.dir, "note.txt")
        with open(local, "w") as f:
            f.write("a note\n")
        got = os.path.join(self.h.dir, "got.txt")
        r = self.sftp("cd %s\nls -l\nget hello.txt %s\nmkdir sub\nput %s sub/note.txt\nls sub\n"
                      % (self.remote, got, local))
        self.assertEqual(r.returncode, 0, r)
        self.assertIn(b"hello.txt", r.stdout)
        with open(got) as f:
            self.assertEqual(f.read(), "hello from the device\n")
        with open(os.path.join(self.remote, "sub", "note.txt")) as f:
            self.assertEqual(f.read(), "a note\n")
        self.assertIn(b"note.txt", r.stdout.split(b"ls sub")[-1])

    def test_sftp_rm_rename_rmdir(self):
        for name in ("a.txt", "b.txt"):
            with open(os.path.join(self.remote, name), "w") as f:
                f.write(name)
        os.mkdir(os.path.join(self.remote, "empty"))
        r = self.sftp("cd %s\nrename a.txt renamed.txt\nrm b.txt\nrmdir empty\nls\n" % self.remote)
        self.assertEqual(r.returncode, 0, r)
        self.assertEqual(sorted(os.listdir(self.remote)), ["renamed.txt"])
        # Never over an existing name; a directory is not removed as a file.
        with open(os.path.join(self.remote, "c.txt"), "w") as f:
            f.write("c")
        r = self.sftp("rename %s/renamed.txt %s/c.txt\n" % (self.remote, self.remote))
        self.assertNotEqual(r.returncode, 0, r)
        with open(os.path.join(self.remote, "c.txt")) as f:
            self.assertEqual(f.read(), "c")
        os.mkdir(os.path.join(self.remote, "d"))
        r = self.sftp("rm %s/d\n" % self.remote)
        self.assertNotEqual(r.returncode, 0, r)
        self.assertTrue(os.path.isdir(os.path.join(self.remote, "d")))
        acts = [(e["action"], e["detail"].get("path"), e["detail"].get("to")) for e in self.audit()]
        self.assertIn(("file-rename", self.remote + "/a.txt", self.remote + "/renamed.txt"), acts)
        self.assertIn(("file-remove", self.remote + "/b.txt", None), acts)
        self.assertIn(("file-rmdir", self.remote + "/empty", None), acts)

    def test_sftp_outside_the_roots(self):
        """The device's roots hold for sftp as for tether pull and push: nothing outside them
        is read, removed or renamed into, through any path."""
        r = self.sftp("get /etc/shadow %s\n" % os.path.join(self.h.dir, "x"))
        self.assertNotEqual(r.returncode, 0, r)
        self.assertFalse(os.path.exists(os.path.join(self.h.dir, "x")))
        outside = tempfile.mkdtemp(prefix="tt-outside-", dir="/var/tmp")  # not under a root (home, /tmp)
        self.addCleanup(shutil.rmtree, outside, True)
        victim = os.path.join(outside, "keep.txt")
        with open(victim, "w") as f:
            f.write("x")
        with open(os.path.join(self.remote, "mine.txt"), "w") as f:
            f.write("m")
        os.symlink(outside, os.path.join(self.remote, "link"))
        for cmd in ("rm %s\n" % victim, "rm %s/link/keep.txt\n" % self.remote,
                    "rename %s/mine.txt %s/moved.txt\n" % (self.remote, outside),
                    "rename %s/mine.txt %s/link/moved.txt\n" % (self.remote, self.remote)):
            r = self.sftp(cmd)
            self.assertNotEqual(r.returncode, 0, (cmd, r))
        self.assertTrue(os.path.exists(victim))
        self.assertEqual(os.listdir(outside), ["keep.txt"])
        r = self.sftp("ln -s %s/mine.txt %s/l2\n" % (self.remote, self.remote))
        self.assertNotEqual(r.returncode, 0, r)
        self.assertIn(b"unsupported", r.stderr)  # OpenSSH prints its own words for the code


OPEN, CLOSE, READ, WRITE, OPENDIR = 3, 4, 5, 6, 11
STATUS, HANDLE, DATA = 101, 102, 103
PF_READ, PF_WRITE, PF_CREAT, PF_TRUNC = 1, 2, 8, 0x10


def sstr(b):
    if isinstance(b, str):
        b = b.encode()
    return struct.pack(">I", len(b)) + b


class RawSftp:
    """sftp spoken by hand over `ssh -s ... sftp`, for what OpenSSH's sftp will not do."""

    def __init__(self, world, key, user):
        self.p = subprocess.Popen(world.ssh_argv(key, user, ["sftp"], opts=["-s"]), stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=world.h.env)
        world.addCleanup(self.kill)
        self.id = 0
        self.send(1, struct.pack(">I", 3))  # INIT
        assert self.recv()[0] == 2  # VERSION

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait()
        for f in (self.p.stdin, self.p.stdout, self.p.stderr):
            try:
                f.close()
            except OSError:
                pass

    def send(self, t, body):
        pkt = bytes([t]) + body
        self.p.stdin.write(struct.pack(">I", len(pkt)) + pkt)
        self.p.stdin.flush()

    def _read(self, n):
        b = b""
        while len(b) < n:
            d = self.p.stdout.read(n - len(b))
            if not d:
                raise EOFError("sftp channel closed")
            b += d
        return b

    def recv(self):
        n = struct.unpack(">I", self._read(4))[0]
        body = self._read(n)
        return body[0], body[1:]

    def req(self, t, body):
        self.id += 1
        self.send(t, struct.pack(">I", self.id) + body)
        return self.id

    def call(self, t, body):
        i = self.req(t, body)
        rt, rb = self.recv()
        assert struct.unpack(">I", rb[:4])[0] == i
        return rt, rb[4:]

    @staticmethod
    def status(rt, rb):
        assert rt == STATUS, rt
        n = struct.unpack(">I", rb[4:8])[0]
        return struct.unpack(">I", rb[:4])[0], rb[8:8 + n].decode(errors="replace")

    def open(self, path, flags, attrs=b"\0\0\0\0"):
        rt, rb = self.call(OPEN, sstr(path) + struct.pack(">I", flags) + attrs)
        if rt != HANDLE:
            return None, self.status(rt, rb)
        return rb[4:4 + struct.unpack(">I", rb[:4])[0]], None

    def close(self, h):
        return self.status(*self.call(CLOSE, sstr(h)))

    def write(self, h, off, data):
        return self.status(*self.call(WRITE, sstr(h) + struct.pack(">Q", off) + sstr(data)))

    def read_all(self, h):
        out = b""
        while True:
            rt, rb = self.call(READ, sstr(h) + struct.pack(">QI", len(out), 32768))
            if rt == STATUS:
                return out
            out += rb[4:4 + struct.unpack(">I", rb[:4])[0]]

    def burn(self, count, path="/tmp/no-such-dir-tether-test"):
        """Use up count handles (OPENDIR of a missing directory), 16 in flight."""
        done = 0
        while done < count:
            k = min(16, count - done)
            for _ in [self.req(OPENDIR, sstr(path)) for _ in range(k)]:
                assert self.recv()[0] == STATUS
            done += k


class SshdSftpAbuseTest(SshdWorld, TetherTestCase):
    """A hostile sftp client (an adversarial review's findings, each a regression test)."""

    @classmethod
    def setUpClass(cls):
        cls.make_pki()

    def setUp(self):
        super().setUp()
        self.setup_world()
        self.remote = tempfile.mkdtemp(prefix="tt-sftp-", dir="/tmp")
        self.addCleanup(shutil.rmtree, self.remote, True)

    def start_sshd(self, extra=()):
        if self._testMethodName == "test_a_pull_counts_against_the_spool":
            extra = list(extra) + ["--spool-max", "1M"]
        return super().start_sshd(extra)

    def test_sessions_cannot_reach_each_others_spool(self):
        """Spool names came from a per-session counter of 1000 handles: a session that used up
        1000 took the next session's names, read its download and wrote into its upload."""
        secret = os.urandom(3000) + b"VICTIM-SECRET"
        with open(os.path.join(self.remote, "secret.bin"), "wb") as f:
            f.write(secret)
        key2, _ = self.register("tech2", "t2")
        user2 = "dev1+" + self.new_ticket(who="tech2")
        a = RawSftp(self, self.key, self.user)
        a.burn(1000)
        hx, err = a.open(self.remote + "/exfil.bin", PF_WRITE | PF_CREAT | PF_TRUNC)
        self.assertIsNone(err)
        b = RawSftp(self, key2, user2)
        hb, err = b.open(self.remote + "/secret.bin", PF_READ)
        self.assertIsNone(err, err)
        self.assertEqual(b.read_all(hb), secret)
        hw, err = b.open(self.remote + "/upload.txt", PF_WRITE | PF_CREAT | PF_TRUNC)
        self.assertEqual(b.write(hw, 0, b"victim's data\n")[0], 0)
        a.write(hx, 0, b"EVIL\n")
        self.assertEqual(a.close(hx)[0], 0)
        self.assertEqual(b.close(hw)[0], 0)
        with open(os.path.join(self.remote, "exfil.bin"), "rb") as f:
            self.assertEqual(f.read(), b"EVIL\n")
        with open(os.path.join(self.remote, "upload.txt"), "rb") as f:
            self.assertEqual(f.read(), b"victim's data\n")

    def test_writing_in_place_keeps_what_is_not_written(self):
        """An open to write without truncating (scp writes that way) starts from the device's
        file: writing "AB" at 5 changes those two bytes, not the file's start (it was zeros)."""
        p = os.path.join(self.remote, "keep.txt")
        with open(p, "wb") as f:
            f.write(b"0123456789")
        a = RawSftp(self, self.key, self.user)
        h, err = a.open(p, PF_WRITE | PF_CREAT)
        self.assertIsNone(err, err)
        self.assertEqual(a.write(h, 5, b"AB")[0], 0)
        self.assertEqual(a.close(h)[0], 0)
        with open(p, "rb") as f:
            self.assertEqual(f.read(), b"01234AB789")

    def test_eof_after_close_keeps_the_upload(self):
        a = RawSftp(self, self.key, self.user)
        h, err = a.open(self.remote + "/eof.txt", PF_WRITE | PF_CREAT | PF_TRUNC)
        self.assertIsNone(err)
        self.assertEqual(a.write(h, 0, b"x" * 100000)[0], 0)
        a.req(CLOSE, sstr(h))
        a.p.stdin.close()  # ssh sends EOF and still reads
        rt, rb = a.recv()
        self.assertEqual(RawSftp.status(rt, rb[4:]), (0, ""))
        with open(self.remote + "/eof.txt", "rb") as f:
            self.assertEqual(len(f.read()), 100000)

    def test_a_pull_counts_against_the_spool(self):
        big = os.path.join(self.remote, "big.sparse")
        with open(big, "wb") as f:
            f.truncate(48 * 1024 * 1024)  # sparse: nothing on the wire, 48 MiB in a spool
        a = RawSftp(self, self.key, self.user)
        h, err = a.open(big, PF_READ)
        self.assertIsNone(h)
        self.assertIn("spool is full", err[1])

    def test_files_the_gateway_could_not_read_as_placed(self):
        p = os.path.join(self.remote, "wo.txt")
        with open(p, "wb") as f:
            f.write(b"write-only on the device")
        os.chmod(p, 0o200)
        a = RawSftp(self, self.key, self.user)
        h, err = a.open(p, PF_READ)
        self.assertIsNone(err, err)
        self.assertEqual(a.read_all(h), b"write-only on the device")
        h, err = a.open(self.remote + "/z.txt", PF_WRITE | PF_CREAT | PF_TRUNC, struct.pack(">II", 4, 0))
        self.assertIsNone(err, err)
        self.assertEqual(a.write(h, 0, b"data")[0], 0)
        self.assertEqual(a.close(h)[0], 0)


if __name__ == "__main__":
    unittest.main()
