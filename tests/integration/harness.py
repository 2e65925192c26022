"""Integration harness: runs the real Tether programs on 127.0.0.1.

Finds the binaries under $TT_BIN_DIR (the CMake build directory), makes a PKI at test time
with tether-certs, captures every child's stderr to a file in a temporary directory, waits
for log lines with a deadline, and always stops every child: SIGTERM, then SIGKILL after a
bound. A child that leaves a sanitizer report, or does not exit 0 on SIGTERM, fails the test.
Also a tiny client for the wire protocol (frame header + hand-encoded protobuf) for hostile
peers. Standard library only.
"""

import atexit
import calendar
import json
import os
import re
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import tempfile
import time
import unittest

BIN_DIR = os.environ.get("TT_BIN_DIR", "")
KEEP_TMP = os.environ.get("TT_KEEP_TMP") == "1"

# Markers of a sanitizer report in a child's stderr.
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")

# Bounds for waits that are not the subject of a test.
START_TIMEOUT = 15.0   # a program under ASan reaches "listening"/"connected"
STOP_TIMEOUT = 10.0    # graceful exit after SIGTERM
CMD_TIMEOUT = 30.0     # one console or tether-certs run

PROGRAMS = {
    "tether-broker": "broker/tether-broker",
    "tether-agent": "agent/tether-agent",
    "tether": "console/tether",
    "tether-certs": "certs/tether-certs",
    "tether-sshd": "console/sshd/tether-sshd",
    "tether-loadgen": "tests/bench/tether-loadgen",  # the fleet tool: many agents in one process
}

_live = []  # every Proc not yet reaped, for the atexit safety net


def binary(prog):
    if not BIN_DIR:
        raise RuntimeError("TT_BIN_DIR is not set (run through ctest, or export it)")
    path = os.path.join(BIN_DIR, PROGRAMS[prog])
    if not os.access(path, os.X_OK):
        raise RuntimeError("%s not built: %s" % (prog, path))
    return path


def child_env(home):
    env = dict(os.environ)
    env["ASAN_OPTIONS"] = "detect_leaks=1:abort_on_error=0"
    env["UBSAN_OPTIONS"] = "print_stacktrace=1"
    env["HOME"] = home  # so the console never reads the developer's ~/.config/tether
    env.pop("TETHER_CONFIG", None)
    env.pop("TETHER_TICKET", None)  # the file commands' ticket: a test names its own
    return env


def sanitizer_report(text):
    """The first sanitizer marker in text with some context, or None."""
    for m in SANITIZER_MARKERS:
        i = text.find(m)
        if i >= 0:
            return text[max(0, i - 200):i + 1500]
    return None


def tail(text, n=25):
    return "\n".join(text.splitlines()[-n:])


def free_port():
    """A port nothing listens on right now (bound and released)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


class Proc:
    """A long-running child whose stderr goes to a file we can search."""

    def __init__(self, name, argv, workdir, env):
        self.name = name
        self.argv = argv
        self.log_path = os.path.join(workdir, "%s.stderr" % name)
        self.out_path = os.path.join(workdir, "%s.stdout" % name)
        self._err = open(self.log_path, "wb")
        self._out = open(self.out_path, "wb")
        self.p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._out,
                                  stderr=self._err, env=env, cwd=workdir)
        self.started = time.monotonic()
        self.expect_clean_exit = True
        self.stop_note = None
        _live.append(self)

    @property
    def pid(self):
        return self.p.pid

    def alive(self):
        return self.p.poll() is None

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def mark(self):
        """Position in the log; wait_for(..., after=mark) only sees later lines."""
        return len(self.log())

    def count(self, pattern, after=0):
        return len(re.findall(pattern, self.log()[after:]))

    def wait_for(self, pattern, timeout=START_TIMEOUT, after=0, count=1):
        """Wait until the log (from `after`) matches `pattern` `count` times; the last match."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            text = self.log()[after:]
            found = list(rx.finditer(text))
            if len(found) >= count:
                return found[count - 1]
            if not self.alive():
                # One more read: the line may have landed just before the exit.
                text = self.log()[after:]
                found = list(rx.finditer(text))
                if len(found) >= count:
                    return found[count - 1]
                raise AssertionError("%s exited (rc=%s) before logging /%s/; log:\n%s"
                                     % (self.name, self.p.returncode, pattern, tail(self.log())))
            if time.monotonic() > deadline:
                raise AssertionError("%s did not log /%s/ x%d within %.1fs; log:\n%s"
                                     % (self.name, pattern, count, timeout, tail(self.log())))
            time.sleep(0.02)

    def signal(self, sig):
        if self.alive():
            self.p.send_signal(sig)

    def stop(self, timeout=STOP_TIMEOUT):
        """SIGTERM, wait, SIGKILL if it will not go. Returns the exit code."""
        if self.alive():
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.stop_note = "did not exit within %.0fs of SIGTERM; killed" % timeout
                self.p.kill()
                self.p.wait(timeout=5)
        else:
            self.p.wait(timeout=5)
        self._close_files()
        return self.p.returncode

    def kill(self):
        if self.alive():
            self.p.kill()
        try:
            self.p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        self._close_files()

    def _close_files(self):
        for f in (self._err, self._out):
            if not f.closed:
                f.close()
        if self in _live:
            _live.remove(self)

    def problems(self):
        """After stop(): what is wrong with how this child ended, as text lines."""
        out = []
        rep = sanitizer_report(self.log())
        if rep:
            out.append("%s: sanitizer report in stderr:\n%s" % (self.name, rep))
        if self.stop_note:
            out.append("%s: %s" % (self.name, self.stop_note))
        elif self.expect_clean_exit and self.p.returncode != 0:
            out.append("%s: exit code %s after SIGTERM, expected 0; log:\n%s"
                       % (self.name, self.p.returncode, tail(self.log())))
        return out


def _kill_all_live():
    for p in list(_live):
        p.kill()


atexit.register(_kill_all_live)


class Result:
    def __init__(self, argv, rc, out, err, elapsed):
        self.argv, self.rc, self.out, self.err, self.elapsed = argv, rc, out, err, elapsed

    def __repr__(self):
        return "rc=%s in %.2fs\n$ %s\nstdout:\n%s\nstderr:\n%s" % (
            self.rc, self.elapsed, " ".join(self.argv), tail(self.out), tail(self.err))


class Harness:
    """One test's world: a temp dir, the children it started, and the PKI it may share."""

    def __init__(self, pki=None, prefix="tt-it-"):
        self.dir = tempfile.mkdtemp(prefix=prefix)
        self.env = child_env(self.dir)
        self.procs = []
        self.pki = pki
        self._runs = 0
        self._problems = []

    # -- one-shot commands -------------------------------------------------------------

    def run(self, prog, args, timeout=CMD_TIMEOUT, check_sanitizers=True, input=None):
        """input: bytes for its standard input (a pipe); /dev/null without."""
        argv = [binary(prog)] + list(args)
        t0 = time.monotonic()
        io = {"input": input} if input is not None else {"stdin": subprocess.DEVNULL}
        try:
            cp = subprocess.run(argv, capture_output=True, env=self.env, cwd=self.dir, timeout=timeout, **io)
        except subprocess.TimeoutExpired as e:
            raise AssertionError("%s did not finish within %.0fs: %s\nstderr:\n%s" % (
                prog, timeout, " ".join(argv),
                (e.stderr or b"").decode("utf-8", "replace")))
        r = Result(argv, cp.returncode, cp.stdout.decode("utf-8", "replace"),
                   cp.stderr.decode("utf-8", "replace"), time.monotonic() - t0)
        self._runs += 1
        with open(os.path.join(self.dir, "run%03d-%s.stderr" % (self._runs, prog)), "w") as f:
            f.write(" ".join(argv) + "\n" + r.err)
        rep = sanitizer_report(r.err) if check_sanitizers else None
        if rep:
            self._problems.append("%s: sanitizer report:\n%s" % (" ".join(argv), rep))
            raise AssertionError("%s: sanitizer report:\n%s" % (prog, rep))
        return r

    def console(self, addr, args, cert=None, key=None, ca=None, timeout=CMD_TIMEOUT, extra=(), input=None):
        pki = self.pki
        base = ["--broker", addr,
                "--ca", ca or pki.ca,
                "--cert", cert or pki.cert("tech"),
                "--key", key or pki.key("tech")] + list(extra)
        return self.run("tether", base + list(args), timeout=timeout, input=input)

    def devices(self, addr, **kw):
        """`tether devices --json` parsed; fails the test on a non-zero exit."""
        r = self.console(addr, ["devices", "--json"], **kw)
        if r.rc != 0:
            raise AssertionError("tether devices --json failed: %r" % r)
        try:
            return json.loads(r.out)
        except ValueError as e:
            raise AssertionError("tether devices --json printed invalid JSON (%s): %r" % (e, r))

    def wait_device(self, addr, device, present=True, timeout=START_TIMEOUT, interval=0.05):
        """Poll `tether devices` until device is listed (or gone). Returns the seconds taken."""
        t0 = time.monotonic()
        while True:
            # Enrolled devices stay listed while offline: "present" means connected now.
            names = [d.get("device") for d in self.devices(addr) if d.get("online")]
            if (device in names) == present:
                return time.monotonic() - t0
            if time.monotonic() - t0 > timeout:
                raise AssertionError("device %s %s after %.1fs; listed: %s" % (
                    device, "never appeared" if present else "still listed", timeout, names))
            time.sleep(interval)

    # -- long-running children ---------------------------------------------------------

    def spawn(self, name, prog, args, wrapper=()):
        """wrapper: a command that execs the program in its own process (e.g. ["prlimit",
        "--fsize=N", "--"]), so the pid and signals are still the program's."""
        p = Proc(name, list(wrapper) + [binary(prog)] + list(args), self.dir, self.env)
        self.procs.append(p)
        return p

    def start_broker(self, port=0, name="broker", extra=(), data_dir=None, wrapper=()):
        """The broker's store lives in this harness's temp dir unless told otherwise, so a
        restarted broker finds what the first one recorded."""
        pki = self.pki
        b = self.spawn(name, "tether-broker",
                       ["--listen", "127.0.0.1:%d" % port, "--ca", pki.ca, "--ca-key", pki.ca_key,
                        "--cert", pki.broker_cert, "--key", pki.broker_key,
                        "--data-dir", data_dir or os.path.join(self.dir, "data")] + list(extra),
                       wrapper=wrapper)
        b.data_dir = data_dir or os.path.join(self.dir, "data")
        m = b.wait_for(r'msg="listening" addr=(\S+)')
        b.addr = m.group(1)
        b.port = int(b.addr.rsplit(":", 1)[1])
        if port:
            assert b.port == port, "broker listens on %s, asked for %d" % (b.addr, port)
        return b

    def start_agent(self, broker_addr, device, hostname, name=None, cert=None, key=None,
                    ca=None, extra=(), wait=True, wrapper=()):
        pki = self.pki
        a = self.spawn(name or "agent-" + device, "tether-agent",
                       ["run", "--broker", broker_addr,
                        "--ca", ca or pki.ca,
                        "--cert", cert or pki.cert(device),
                        "--key", key or pki.key(device),
                        "--hostname", hostname] + list(extra)
                       + ([] if "--consent-socket" in extra else
                          ["--consent-socket", os.path.join(self.dir, (name or device) + ".sock")]),
                       wrapper=wrapper)
        if wait:
            a.wait_for(r'msg="connected"')
        return a

    # -- the end -----------------------------------------------------------------------

    def close(self):
        """Stop every child (SIGTERM first) and return the problems found, as text."""
        problems = list(self._problems)
        for p in reversed(self.procs):  # agents before the broker they talk to
            try:
                p.stop()
            except Exception as e:  # never leave a child behind because of one error
                p.kill()
                problems.append("%s: stop failed: %r" % (p.name, e))
            problems.extend(p.problems())
        if problems:
            problems.append("(logs kept in %s)" % self.dir)
        elif not KEEP_TMP:
            shutil.rmtree(self.dir, ignore_errors=True)
        return problems


class Pki:
    """Certificates made with tether-certs: the broker's CA and a foreign one."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="tt-it-pki-")
        self.env = child_env(self.dir)
        self.main = os.path.join(self.dir, "main")
        self.foreign = os.path.join(self.dir, "foreign")
        self._certs(["init", "--dir", self.main])
        self._certs(["init", "--dir", self.foreign])
        self.ca = os.path.join(self.main, "ca.pem")
        self.broker_cert = os.path.join(self.main, "broker.pem")
        self.broker_key = os.path.join(self.main, "broker.key")
        self.ca_key = os.path.join(self.main, "ca.key")
        self.foreign_ca = os.path.join(self.foreign, "ca.pem")

    def _certs(self, args):
        argv = [binary("tether-certs")] + args
        cp = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, env=self.env,
                            timeout=CMD_TIMEOUT)
        err = cp.stderr.decode("utf-8", "replace")
        rep = sanitizer_report(err)
        if cp.returncode != 0 or rep:
            raise RuntimeError("%s failed (rc=%d):\n%s" % (" ".join(argv), cp.returncode, err))

    def issue(self, role, name, foreign=False):
        d = self.foreign if foreign else self.main
        self._certs(["issue", role, name, "--dir", d])
        return os.path.join(d, name + ".pem"), os.path.join(d, name + ".key")

    def cert(self, name, foreign=False):
        return os.path.join(self.foreign if foreign else self.main, name + ".pem")

    def key(self, name, foreign=False):
        return os.path.join(self.foreign if foreign else self.main, name + ".key")

    def remove(self):
        if not KEEP_TMP:
            shutil.rmtree(self.dir, ignore_errors=True)


def iso_utc_to_unix(s):
    """'2026-01-02T03:04:05Z' -> unix seconds."""
    return calendar.timegm(time.strptime(s, "%Y-%m-%dT%H:%M:%SZ"))


# -- the wire, by hand ----------------------------------------------------------------------

HDR = struct.Struct(">IBBI")  # body length, kind, flags, channel

K_HELLO, K_WELCOME, K_ERROR, K_PING, K_PONG = 1, 2, 3, 4, 5
K_CH_OPEN, K_CH_ACCEPT, K_CH_REJECT, K_CH_CLOSE = 6, 7, 8, 9
K_REQUEST, K_RESPONSE = 11, 12
ROLE_AGENT, ROLE_TECHNICIAN = 1, 2
ERR_VERSION, ERR_ROLE, ERR_TOO_BIG = 2, 3, 4


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def pb_varint(field, v):
    return varint(field << 3 | 0) + varint(v)


def pb_bytes(field, b):
    if isinstance(b, str):
        b = b.encode()
    return varint(field << 3 | 2) + varint(len(b)) + b


def pb_parse(body):
    """Protobuf fields as {number: [values]}: ints for varints, bytes for length-delimited."""
    out, i = {}, 0

    def rd_varint():
        nonlocal i
        shift = v = 0
        while True:
            if i >= len(body):
                raise ValueError("truncated varint")
            b = body[i]
            i += 1
            v |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return v

    while i < len(body):
        key = rd_varint()
        num, wt = key >> 3, key & 7
        if wt == 0:
            val = rd_varint()
        elif wt == 2:
            n = rd_varint()
            val = bytes(body[i:i + n])
            if len(val) != n:
                raise ValueError("truncated bytes field")
            i += n
        elif wt == 1:
            val, i = bytes(body[i:i + 8]), i + 8
        elif wt == 5:
            val, i = bytes(body[i:i + 4]), i + 4
        else:
            raise ValueError("wire type %d" % wt)
        out.setdefault(num, []).append(val)
    return out


def frame(kind, body=b"", channel=0, flags=0, length=None):
    return HDR.pack(len(body) if length is None else length, kind, flags, channel) + body


def hello_body(role, proto_version=1, software_version="it/0.1", hostname="it-client"):
    return (pb_varint(1, proto_version) + pb_varint(2, role) +
            pb_bytes(3, software_version) + pb_bytes(5, hostname))


class Closed(Exception):
    """The peer ended the connection: how (EOF, reset, TLS alert) is in args[0]."""


class WireClient:
    """A TLS 1.3 client speaking frames by hand: the hostile or lazy peer of a test."""

    def __init__(self, port, ca, cert=None, key=None, alpn=("tether/1",), timeout=10.0, source=None):
        """source: the local address to connect from (another 127.0.0.0/8 address)."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        ctx.maximum_version = ssl.TLSVersion.TLSv1_3
        ctx.load_verify_locations(ca)
        if cert:
            ctx.load_cert_chain(cert, key)
        if alpn:
            ctx.set_alpn_protocols(list(alpn))
        raw = socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                       source_address=(source, 0) if source else None)
        try:
            self.sock = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
        except Exception:
            raw.close()
            raise
        self.sock.settimeout(timeout)
        self.timeout = timeout
        self.buf = b""
        self.pings = 0

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data):
        self.sock.sendall(data)

    def send_frame(self, kind, body=b"", channel=0, flags=0, length=None):
        self.send(frame(kind, body, channel, flags, length))

    def _fill(self, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no frame before the deadline")
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            raise TimeoutError("no frame before the deadline")
        except ssl.SSLError as e:
            raise Closed("TLS error: %s" % e)
        except (ConnectionResetError, BrokenPipeError) as e:
            raise Closed("reset: %s" % e)
        if not data:
            raise Closed("EOF")
        self.buf += data

    def read_frame(self, timeout=None):
        """(kind, flags, channel, body). Closed at EOF, TimeoutError at the deadline."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        while len(self.buf) < HDR.size:
            self._fill(deadline)
        n, kind, flags, ch = HDR.unpack(self.buf[:HDR.size])
        while len(self.buf) < HDR.size + n:
            self._fill(deadline)
        body = self.buf[HDR.size:HDR.size + n]
        self.buf = self.buf[HDR.size + n:]
        return kind, flags, ch, body

    def read_control(self, timeout=None, answer_pings=False):
        """Next frame that is not a Ping (pings are counted, and answered if asked)."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        while True:
            kind, flags, ch, body = self.read_frame(max(0.0, deadline - time.monotonic()))
            if kind == K_PING:
                self.pings += 1
                if answer_pings:
                    nonce = pb_parse(body).get(1, [0])[0]
                    self.send_frame(K_PONG, pb_varint(1, nonce))
                continue
            return kind, flags, ch, body

    def handshake_hello(self, role=ROLE_TECHNICIAN, **kw):
        """Send Hello, return the Welcome's fields; fail if anything else comes back."""
        self.send_frame(K_HELLO, hello_body(role, **kw))
        kind, _, ch, body = self.read_control()
        if kind != K_WELCOME or ch != 0:
            raise AssertionError("expected a Welcome (kind 2), got kind %d on channel %d: %r"
                                 % (kind, ch, pb_parse(body) if kind == K_ERROR else body[:64]))
        return pb_parse(body)

    def read_until_closed(self, timeout=None):
        """Every non-ping frame until the broker closes; (frames, how, seconds).
        TimeoutError if the connection is still open at the deadline."""
        t0 = time.monotonic()
        deadline = t0 + (timeout if timeout is not None else self.timeout)
        frames = []
        while True:
            try:
                frames.append(self.read_control(max(0.0, deadline - time.monotonic())))
            except Closed as e:
                return frames, str(e), time.monotonic() - t0


def error_of(frames):
    """(code, message) of the first Error frame among frames, or None."""
    for kind, _, ch, body in frames:
        if kind == K_ERROR:
            f = pb_parse(body)
            return f.get(1, [0])[0], f.get(2, [b""])[0].decode("utf-8", "replace")
    return None


class TetherTestCase(unittest.TestCase):
    """A test class with its own PKI (made in setUpClass by the subclass as cls.pki) and a
    fresh Harness per test, whose children are stopped, and checked for sanitizer reports
    and unclean exits, after every test."""

    @classmethod
    def tearDownClass(cls):
        cls.pki.remove()

    def setUp(self):
        self.h = Harness(self.pki)
        self.addCleanup(self._stop_children)

    def wait_until(self, check, what, timeout=START_TIMEOUT):
        """Wait for check() to hold (an audit entry written, a row stored), asking again
        every 50 ms until the timeout: for state read through a command, not a log line."""
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                self.fail("%s: not within %.1fs" % (what, timeout))
            time.sleep(0.05)

    def _stop_children(self):
        problems = self.h.close()
        if problems:
            self.fail("\n".join(problems))
