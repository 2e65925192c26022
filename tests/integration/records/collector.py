"""A syslog collector for the broker's SIEM feed that tests can make misbehave.

Listens on 127.0.0.1 for RFC 5425 syslog over TLS (or the same framing over plain TCP, for
tcp:// targets): octet-counting frames "MSGLEN SP SYSLOG-MSG", repeated, with no delimiter
(RFC 6587 3.4.1 / RFC 5425 4.3). MSGLEN is ASCII decimal, no leading zero, at most 6 digits;
anything else is a bad frame, counted in bad_frames, and the receiver closes that connection.

One thread accepts, one thread per connection reads. Every blocking call has a short timeout
and every loop looks at the collector's flags, so stop() never hangs and the misbehaviours
(pause_reading, reset_all, close_all) act within a poll interval. A connection's socket is only
ever closed by its own thread (no close racing a read on another thread).

Each message's sequence number is parsed on arrival from any of the three formats the broker
writes (certs/auditfmt.c): rfc5424 (seq="N" in the [tether@32473 ...] structured data), jsonl
({"seq":N,...}) and cef (cn1=N, else externalId=N, in the extension).

make_server_cert() makes a CA and a server certificate for 127.0.0.1 with the `cryptography`
package, for the broker to verify the collector with. Standard library otherwise.
Run this file to self-test it.
"""

import datetime
import ipaddress
import json
import os
import re
import socket
import ssl
import struct
import threading
import time

POLL = 0.05              # how often a blocked reader or the acceptor looks at the flags
HANDSHAKE_TIMEOUT = 10.0  # a TLS handshake that takes longer is a failed one
JOIN_TIMEOUT = 5.0        # bound on joining one thread in stop()
MAX_LEN_DIGITS = 6


# -- parsing -------------------------------------------------------------------------------

def _sd_seq(msg):
    """seq from the [tether@... seq="N" ...] element of an RFC 5424 message, or None."""
    # HEADER: <PRI>VERSION SP TIMESTAMP SP HOSTNAME SP APP-NAME SP PROCID SP MSGID SP SD
    m = re.match(r"<\d{1,3}>\d{1,2} (?:\S+ ){5}", msg)
    if not m:
        return None
    i, n = m.end(), len(msg)
    while i < n and msg[i] == "[":
        i += 1
        j = i
        while j < n and msg[j] not in " ]":
            j += 1
        sd_id = msg[i:j]
        i = j
        while i < n and msg[i] == " ":              # SD-PARAMs: SP name="value"
            i += 1
            eq = msg.find("=", i)
            if eq < 0 or eq + 1 >= n or msg[eq + 1] != '"':
                return None
            name = msg[i:eq]
            i, val = eq + 2, []
            while i < n and msg[i] != '"':
                if msg[i] == "\\" and i + 1 < n and msg[i + 1] in '"\\]':
                    i += 1
                val.append(msg[i])
                i += 1
            if i >= n:
                return None
            i += 1
            if name == "seq" and sd_id.startswith("tether@") and "".join(val).isdigit():
                return int("".join(val))
        if i >= n or msg[i] != "]":
            return None
        i += 1
    return None


def _json_seq(msg):
    start = msg.find("{")
    if start < 0:
        return None
    try:
        obj, _ = json.JSONDecoder().raw_decode(msg, start)
    except ValueError:
        return None
    seq = obj.get("seq") if isinstance(obj, dict) else None
    return seq if isinstance(seq, int) and not isinstance(seq, bool) else None


def _cef_seq(msg):
    start = msg.find("CEF:")
    if start < 0:
        return None
    # the extension follows the 7th unescaped '|' (header fields escape | and \)
    i, pipes, n = start, 0, len(msg)
    while i < n and pipes < 7:
        if msg[i] == "\\":
            i += 2
            continue
        if msg[i] == "|":
            pipes += 1
        i += 1
    if pipes < 7:
        return None
    ext = " " + msg[i:]   # extension values escape '=' as '\=', so " key=" only starts a pair
    for key in ("cn1", "externalId"):
        m = re.search(r" %s=(\d+)(?= |$)" % key, ext)
        if m:
            return int(m.group(1))
    return None


def parse_seq(msg):
    """The audit sequence number in one syslog message (rfc5424, jsonl or cef), or None."""
    msg = msg.strip()
    if msg.startswith("<"):
        seq = _sd_seq(msg)
        if seq is not None:
            return seq
    if "CEF:" in msg:
        seq = _cef_seq(msg)
        if seq is not None:
            return seq
    return _json_seq(msg)


class BadFrame(Exception):
    pass


def split_frames(buf):
    """Parse octet-counted frames from the front of buf (bytes/bytearray): (frames, used).
    Raises BadFrame as soon as the prefix can no longer be a valid MSGLEN SP."""
    frames, pos, n = [], 0, len(buf)
    while pos < n:
        sp = buf.find(b" ", pos, min(n, pos + MAX_LEN_DIGITS + 1))
        digits = bytes(buf[pos:sp if sp >= 0 else min(n, pos + MAX_LEN_DIGITS + 1)])
        if sp < 0 and len(digits) > MAX_LEN_DIGITS:
            raise BadFrame("length prefix %r longer than %d digits" % (digits, MAX_LEN_DIGITS))
        if not digits or not digits.isdigit():
            raise BadFrame("length prefix %r is not a decimal number" % digits)
        if digits.startswith(b"0"):
            raise BadFrame("length prefix %r has a leading zero (or is 0)" % digits)
        if sp < 0:
            break                                   # prefix not complete yet
        length = int(digits)
        if sp + 1 + length > n:
            break                                   # body not complete yet
        frames.append(bytes(buf[sp + 1:sp + 1 + length]))
        pos = sp + 1 + length
    return frames, pos


def frame(msg):
    """One octet-counted frame of msg (str or bytes)."""
    if isinstance(msg, str):
        msg = msg.encode()
    return b"%d %s" % (len(msg), msg)


# -- certificates --------------------------------------------------------------------------

def make_server_cert(dir, cn="127.0.0.1"):
    """A self-signed CA (EC P-256) and a server certificate it signs, for IP 127.0.0.1 and DNS
    localhost (and cn, when it is another name or address), written as PEM into dir:
    (ca_pem_path, cert_path, key_path). The key is PKCS#8, unencrypted, mode 0600."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    before, after = now - datetime.timedelta(days=1), now + datetime.timedelta(days=30)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tether test syslog CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca = (x509.CertificateBuilder()
          .subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number())
          .not_valid_before(before).not_valid_after(after)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                       key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, key_cert_sign=True, crl_sign=True,
                                       encipher_only=False, decipher_only=False), critical=True)
          .add_extension(ca_ski, critical=False)
          .sign(ca_key, hashes.SHA256()))

    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
    try:
        extra = x509.IPAddress(ipaddress.ip_address(cn))
    except ValueError:
        extra = x509.DNSName(cn)
    if extra not in names:
        names.append(extra)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(before).not_valid_after(after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=False, crl_sign=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))

    os.makedirs(dir, exist_ok=True)
    ca_path = os.path.join(dir, "syslog-ca.pem")
    cert_path = os.path.join(dir, "syslog-server.pem")
    key_path = os.path.join(dir, "syslog-server.key")
    with open(ca_path, "wb") as f:
        f.write(ca.public_bytes(serialization.Encoding.PEM))
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    return ca_path, cert_path, key_path


# -- the collector -------------------------------------------------------------------------

class _Conn:
    def __init__(self, index, sock, peer):
        self.index = index          # 1-based, in accept order
        self.sock = sock            # raw socket; the TLS socket once wrapped
        self.peer = peer
        self.action = None          # None | "reset" | "close" | "stop", set by the collector
        self.done = threading.Event()
        self.thread = None


class Collector:
    """A TLS (or plain TCP) syslog receiver on 127.0.0.1:port (port 0 = pick one) in a
    background thread. The port is known after start(); start() after stop() listens again
    on the same port and keeps what was received (counters and messages)."""

    def __init__(self, certfile=None, keyfile=None, port=0, tls=True, context=None):
        self.port = port
        self.tls = tls
        self._ctx = None
        if tls:
            if context is None:
                if not certfile:
                    raise ValueError("a TLS collector needs certfile (and keyfile) or context")
                context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                context.minimum_version = ssl.TLSVersion.TLSv1_2
                context.load_cert_chain(certfile, keyfile)
            self._ctx = context
        self._cond = threading.Condition()
        self._reading = threading.Event()
        self._reading.set()
        self._stopping = threading.Event()
        self._listener = None
        self._acceptor = None
        self._conns = []            # open (or closing) connections
        self._records = []          # (conn index, text, seq or None)
        self._accepted = 0          # TCP accepts
        self._connections = 0       # accepts that completed the TLS handshake (all, for TCP)
        self._bad_frames = 0
        self._tls_failures = 0
        self._closed = 0            # connections ended, for any reason
        self._errors = []           # (conn index, reason) for every connection that ended

    # -- lifecycle --

    def start(self):
        with self._cond:
            if self._acceptor is not None:
                raise RuntimeError("collector already started")
        self._stopping.clear()
        ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            ls.bind(("127.0.0.1", self.port))
            ls.listen(64)
            ls.settimeout(POLL)
        except BaseException:
            ls.close()
            raise
        self._listener = ls
        self.port = ls.getsockname()[1]
        self._acceptor = threading.Thread(target=self._accept_loop, name="collector-accept:%d" % self.port,
                                          daemon=True)
        self._acceptor.start()
        return self

    def stop(self):
        """Close the listener and every connection (with RST), join all threads. Idempotent."""
        self._stopping.set()
        acceptor = self._acceptor
        if acceptor is not None:
            acceptor.join(JOIN_TIMEOUT)
        with self._cond:
            conns = list(self._conns)
            for c in conns:
                c.action = c.action or "stop"
        for c in conns:
            if c.thread is not None:
                c.thread.join(JOIN_TIMEOUT)
        stuck = [c for c in conns if c.thread is not None and c.thread.is_alive()]
        if acceptor is not None and acceptor.is_alive():
            stuck.append(acceptor)
        if self._listener is not None:   # the acceptor closes it; this is only the fallback
            try:
                self._listener.close()
            except OSError:
                pass
        self._listener = None
        self._acceptor = None
        if stuck:
            raise RuntimeError("collector: threads did not end: %r" % stuck)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- what was received --

    @property
    def connections(self):
        """Connections accepted so far (for TLS: that completed the handshake)."""
        with self._cond:
            return self._connections

    @property
    def accepted(self):
        """TCP connections accepted so far, handshake or not."""
        with self._cond:
            return self._accepted

    @property
    def bad_frames(self):
        with self._cond:
            return self._bad_frames

    @property
    def tls_failures(self):
        with self._cond:
            return self._tls_failures

    @property
    def open_connections(self):
        with self._cond:
            return sum(1 for c in self._conns if not c.done.is_set())

    def closed_reasons(self):
        """(connection index, why it ended) for every connection that ended, in order."""
        with self._cond:
            return list(self._errors)

    def messages(self):
        with self._cond:
            return [r[1] for r in self._records]

    def records(self):
        """(connection index, message, seq or None) of every message, in arrival order."""
        with self._cond:
            return list(self._records)

    def seqs(self):
        """The seq of each message in arrival order (messages without one are left out)."""
        with self._cond:
            return [r[2] for r in self._records if r[2] is not None]

    def clear(self):
        """Forget the messages received so far (counters stay)."""
        with self._cond:
            self._records.clear()

    def _summary(self):
        seqs = [r[2] for r in self._records if r[2] is not None]
        last = self._records[-1][1] if self._records else None
        return ("%d messages, seqs %s, %d connections (%d accepted, %d open), %d bad frames, "
                "%d TLS failures, ended: %s, last message: %r"
                % (len(self._records), _short(seqs), self._connections, self._accepted,
                   sum(1 for c in self._conns if not c.done.is_set()), self._bad_frames,
                   self._tls_failures, self._errors[-5:], last and last[:300]))

    def _wait(self, pred, timeout, what):
        deadline = time.monotonic() + timeout
        with self._cond:
            while not pred():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("collector on port %d: timed out after %.1fs waiting for %s; has %s"
                                         % (self.port, timeout, what, self._summary()))
                self._cond.wait(min(left, 0.5))

    def wait_for_seq(self, seq, timeout=30.0):
        """Until a message with seq >= the given one has arrived."""
        self._wait(lambda: any(r[2] is not None and r[2] >= seq for r in reversed(self._records)),
                   timeout, "seq >= %d" % seq)

    def wait_messages(self, n, timeout=30.0):
        self._wait(lambda: len(self._records) >= n, timeout, "%d messages" % n)

    def wait_connections(self, n, timeout=30.0):
        """Until n connections were accepted in total (for TLS: handshake completed)."""
        self._wait(lambda: self._connections >= n, timeout, "%d connections" % n)

    def wait_closed(self, n, timeout=30.0):
        """Until n connections have ended in total."""
        self._wait(lambda: self._closed >= n, timeout, "%d closed connections" % n)

    # -- misbehaviours --

    def pause_reading(self):
        """Stop reading from every socket (also new ones), so senders' TCP windows fill."""
        self._reading.clear()

    def resume_reading(self):
        self._reading.set()

    def reset_all(self, timeout=5.0):
        """Abort every open connection with RST (SO_LINGER 0); returns once they are closed."""
        self._end_all("reset", timeout)

    def close_all(self, timeout=5.0):
        """Close every open connection with a plain FIN (no TLS close_notify)."""
        self._end_all("close", timeout)

    def _end_all(self, action, timeout):
        with self._cond:
            conns = [c for c in self._conns if not c.done.is_set()]
            for c in conns:
                c.action = c.action or action
        deadline = time.monotonic() + timeout
        for c in conns:
            if not c.done.wait(max(0.0, deadline - time.monotonic())):
                raise AssertionError("collector: connection %d did not close within %.1fs" % (c.index, timeout))

    # -- threads --

    def _accept_loop(self):
        ls = self._listener
        try:
            while not self._stopping.is_set():
                try:
                    sock, peer = ls.accept()
                except (socket.timeout, BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    if self._stopping.wait(POLL):  # an accept that failed: try again, unless stopping
                        break
                    continue
                sock.settimeout(POLL)
                with self._cond:
                    self._accepted += 1
                    c = _Conn(self._accepted, sock, peer)
                    self._conns.append(c)
                    self._cond.notify_all()
                c.thread = threading.Thread(target=self._serve, args=(c,), daemon=True,
                                            name="collector-conn:%d#%d" % (self.port, c.index))
                c.thread.start()
        finally:
            try:
                ls.close()
            except OSError:
                pass

    def _check(self, c):
        """The action asked of connection c, or None to go on."""
        if self._stopping.is_set():
            return c.action or "stop"
        return c.action

    def _serve(self, c):
        how, why = "close", "eof"
        try:
            how, why = self._serve_inner(c)
        except Exception as e:  # keep the thread's end tidy whatever happened
            how, why = "close", "error: %r" % e
        finally:
            self._finish(c, how, why)

    def _serve_inner(self, c):
        if self.tls:
            try:
                c.sock = self._ctx.wrap_socket(c.sock, server_side=True, do_handshake_on_connect=False)
            except (OSError, ValueError) as e:
                with self._cond:
                    self._tls_failures += 1
                return "close", "TLS wrap failed: %r" % e
            deadline = time.monotonic() + HANDSHAKE_TIMEOUT
            while True:
                act = self._check(c)
                if act:
                    return act, act + " during handshake"
                if time.monotonic() > deadline:
                    with self._cond:
                        self._tls_failures += 1
                    return "close", "TLS handshake timed out"
                try:
                    c.sock.do_handshake()
                    break
                except (socket.timeout, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                    continue
                except (ssl.SSLError, OSError) as e:
                    with self._cond:
                        self._tls_failures += 1
                    return "close", "TLS handshake failed: %r" % e
        with self._cond:
            self._connections += 1
            self._cond.notify_all()

        buf = bytearray()
        while True:
            act = self._check(c)
            if act:
                return act, act
            if not self._reading.is_set():
                self._reading.wait(POLL)
                continue
            try:
                data = c.sock.recv(65536)
            except (socket.timeout, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                continue
            except (ssl.SSLError, OSError) as e:
                return "close", "read failed: %r" % e
            if not data:
                return "close", "eof" + (" with %d bytes of a partial frame" % len(buf) if buf else "")
            buf += data
            try:
                frames, used = split_frames(buf)
            except BadFrame as e:
                with self._cond:
                    self._bad_frames += 1
                    self._cond.notify_all()
                return "close", "bad frame: %s" % e
            if used:
                del buf[:used]
            if frames:
                recs = []
                for f in frames:
                    text = f.decode("utf-8", errors="replace")
                    recs.append((c.index, text, parse_seq(text)))
                with self._cond:
                    self._records.extend(recs)
                    self._cond.notify_all()

    def _finish(self, c, how, why):
        sock = c.sock
        try:
            if how in ("reset", "stop"):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        try:
            sock.close()
        except OSError:
            pass
        with self._cond:
            self._closed += 1
            self._errors.append((c.index, why))
            if c in self._conns:
                self._conns.remove(c)
            c.done.set()
            self._cond.notify_all()


def _short(seqs):
    if len(seqs) <= 20:
        return str(seqs)
    return "[%s, ... (%d more) ..., %s]" % (", ".join(map(str, seqs[:5])), len(seqs) - 10,
                                           ", ".join(map(str, seqs[-5:])))


# -- self-test -----------------------------------------------------------------------------

def _selftest():
    import errno
    TCP_CLOSE, TCP_CLOSE_WAIT = 7, 8   # linux/tcp_states.h
    import shutil
    import tempfile

    t0 = time.monotonic()
    fds0 = set(os.listdir("/proc/self/fd"))
    threads0 = set(threading.enumerate())
    tmp = tempfile.mkdtemp(prefix="tt-collector-")

    def rfc5424(seq):
        return ('<110>1 2026-12-04T00:00:00.123Z host tether-broker - connect [tether@32473 seq="%d" '
                'actor="a\\"] seq=\\"99\\"" target="b" hash="%s" prev="%s" ocsf_class="3002"] {"k":"v"}'
                % (seq, "ab" * 32, "cd" * 32))

    def jsonl(seq, pad=0):
        return json.dumps({"seq": seq, "time": "2026-12-04T00:00:00.123Z", "actor": "a", "action": "x",
                           "detail": {"seq": 7, "pad": "p" * pad}}, separators=(",", ":"))

    def cef(seq):
        return ("CEF:0|Tether|tether-broker|1.0|connect cn1\\|x|connect|3|rt=1 externalId=%d cn1Label=seq "
                "cn1=%d suser=a msg=cn1\\=5" % (seq, seq))

    assert parse_seq(rfc5424(42)) == 42, parse_seq(rfc5424(42))
    assert parse_seq(jsonl(43)) == 43
    assert parse_seq(cef(44)) == 44
    assert parse_seq("hello") is None
    assert split_frames(b"3 abc4 de") == ([b"abc"], 5)
    for bad in (b"0 ", b"01 a", b"1234567 ", b"1234567", b"12a", b"<110>1 ", b" 5"):
        try:
            split_frames(bad)
        except BadFrame:
            pass
        else:
            raise AssertionError("not a bad frame: %r" % bad)
    assert split_frames(b"123456") == ([], 0)

    ca, cert, key = make_server_cert(tmp)
    cctx = ssl.create_default_context(cafile=ca)
    cctx.minimum_version = ssl.TLSVersion.TLSv1_2

    def connect(col, name="127.0.0.1"):
        raw = socket.create_connection(("127.0.0.1", col.port), timeout=5)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if col.tls:
            return cctx.wrap_socket(raw, server_hostname=name)
        return raw

    def tcp_state(s):
        return s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]   # tcpi_state

    def closed_by_peer(s, timeout=5.0):
        """'eof' (FIN), 'reset' (RST) or None (still open after timeout). Python's TLS socket
        reports a peer's RST as EOF (SSLEOFError, or b'' with suppress_ragged_eofs), so the
        TCP state tells them apart: CLOSE after an RST, CLOSE_WAIT after a FIN."""
        s.settimeout(timeout)
        try:
            while True:
                d = s.recv(4096)
                if not d:
                    break
        except ConnectionResetError:
            return "reset"
        except ssl.SSLEOFError:
            pass
        except socket.timeout:
            return None
        except OSError as e:
            return "reset" if e.errno == errno.ECONNRESET else "error %r" % e
        state = tcp_state(s)
        return {TCP_CLOSE: "reset", TCP_CLOSE_WAIT: "eof"}.get(state, "eof in TCP state %d" % state)

    col = Collector(cert, key).start()
    try:
        # three formats, split at odd boundaries (inside the prefix, at the space, in the body)
        msgs = [rfc5424(1), jsonl(2), cef(3)]
        data = b"".join(frame(m) for m in msgs)
        cuts = [0, 1, 3, 4, 17, 150, len(frame(msgs[0])) + 1, len(frame(msgs[0])) + 2, 300, 301, len(data)]
        with connect(col) as s:
            for a, b in zip(cuts, cuts[1:]):
                s.sendall(data[a:b])  # each its own TLS record: the collector reads the pieces apart
            col.wait_for_seq(3, timeout=5)
            assert col.seqs() == [1, 2, 3], col.seqs()
            assert col.messages() == msgs, col.messages()
        col.wait_connections(1, timeout=5)
        col.wait_closed(1, timeout=5)
        assert col.bad_frames == 0

        # "localhost" verifies too (DNS SAN)
        with connect(col, "localhost") as s:
            s.sendall(frame(jsonl(4)))
            col.wait_for_seq(4, timeout=5)

        # a bad frame (non-transparent framing: no length prefix) is counted and closes that connection
        with connect(col) as s:
            s.sendall(rfc5424(5).encode() + b"\n")
            how = closed_by_peer(s)
            assert how in ("eof", "reset"), how
        assert col.bad_frames == 1, col.bad_frames
        with connect(col) as s:   # a 7-digit length
            s.sendall(b"1000000 " + b"x" * 100)
            assert closed_by_peer(s) in ("eof", "reset")
        assert col.bad_frames == 2, col.bad_frames
        assert col.seqs() == [1, 2, 3, 4], col.seqs()

        # pause_reading: a 20 MB sender blocks; after resume everything arrives in order
        col.pause_reading()
        body = [frame(jsonl(seq, pad=900)) for seq in range(100, 100 + 20 * 1024 * 1024 // 1000)]
        payload = b"".join(body)
        last = 100 + len(body) - 1
        sent = [0]
        failure = []
        s = connect(col)
        s.settimeout(30)

        def sender():
            try:
                view = memoryview(payload)
                for off in range(0, len(payload), 65536):
                    s.sendall(view[off:off + 65536])
                    sent[0] = min(len(payload), off + 65536)
            except Exception as e:
                failure.append(e)

        th = threading.Thread(target=sender, daemon=True)
        th.start()
        deadline, prev, still_since = time.monotonic() + 10, -1, time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.1)
            if sent[0] != prev:
                prev, still_since = sent[0], time.monotonic()
            elif time.monotonic() - still_since > 0.5:
                break
        blocked_at = sent[0]
        assert th.is_alive() and blocked_at < len(payload), \
            "sender not blocked: %d of %d bytes sent" % (blocked_at, len(payload))
        assert col.seqs() == [1, 2, 3, 4], "read while paused"
        print("pause: sender blocked after %.1f MB of %.1f MB" % (blocked_at / 1e6, len(payload) / 1e6))
        col.resume_reading()
        th.join(30)
        assert not th.is_alive() and not failure, (th.is_alive(), failure)
        col.wait_for_seq(last, timeout=20)
        assert col.seqs() == [1, 2, 3, 4] + list(range(100, last + 1)), "lost or reordered"

        # reset_all: the sender sees RST
        with connect(col) as s2:
            s2.sendall(frame(cef(last + 1)))
            col.wait_for_seq(last + 1, timeout=5)
            n = col.connections
            col.reset_all()
            how2 = closed_by_peer(s2)
        how1 = closed_by_peer(s)
        s.close()
        assert how1 == "reset" and how2 == "reset", (how1, how2)
        assert col.open_connections == 0
        with connect(col) as s3:      # and can reconnect
            s3.sendall(frame(rfc5424(last + 2)))
            col.wait_connections(n + 1, timeout=5)
            col.wait_for_seq(last + 2, timeout=5)

        # a client that does not trust the CA fails the handshake; counted, not a connection
        raw = socket.create_connection(("127.0.0.1", col.port), timeout=5)
        try:
            ssl.create_default_context().wrap_socket(raw, server_hostname="127.0.0.1")
            raise AssertionError("handshake with an untrusting client succeeded")
        except ssl.SSLCertVerificationError:
            pass
        finally:
            raw.close()
        col._wait(lambda: col._tls_failures >= 1, 5, "a TLS failure")

        # a partial frame left open when stop() comes: stop does not hang
        hang = connect(col)
        hang.sendall(b"100 abc")
        port = col.port
    finally:
        col.stop()
    col.stop()   # idempotent
    assert closed_by_peer(hang) in ("reset", "eof")
    hang.close()

    # restart on the same port keeps what it has
    col.start()
    try:
        assert col.port == port
        with connect(col) as s:
            s.sendall(frame(jsonl(last + 3)))
            col.wait_for_seq(last + 3, timeout=5)
    finally:
        col.stop()

    # plain TCP
    with Collector(tls=False) as tcp:
        with connect(tcp) as s:
            data = frame(cef(7)) + frame(rfc5424(8)) + frame(jsonl(9))
            for i in range(0, len(data), 13):
                s.sendall(data[i:i + 13])
            tcp.wait_for_seq(9, timeout=5)
            assert tcp.seqs() == [7, 8, 9], tcp.seqs()
            s.sendall(b"0 ")
            assert closed_by_peer(s) in ("eof", "reset")
        assert tcp.bad_frames == 1
        with connect(tcp) as s:      # close_all: a FIN, not an RST
            s.sendall(frame(jsonl(10)))
            tcp.wait_for_seq(10, timeout=5)
            tcp.close_all()
            assert closed_by_peer(s) == "eof"
        # wait_for_seq times out with a description
        try:
            tcp.wait_for_seq(11, timeout=0.2)
            raise AssertionError("no timeout")
        except AssertionError as e:
            assert "seqs [7, 8, 9, 10]" in str(e), e

    shutil.rmtree(tmp)
    del s, s2, s3, raw, hang, th
    left = [t for t in threading.enumerate() if t not in threads0]
    assert not left, left
    fds = set(os.listdir("/proc/self/fd")) - fds0
    assert not fds, {fd: os.readlink("/proc/self/fd/" + fd) for fd in fds if os.path.exists("/proc/self/fd/" + fd)}
    print("collector self-test passed in %.1fs" % (time.monotonic() - t0))


if __name__ == "__main__":
    _selftest()
