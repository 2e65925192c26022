"""A minimal SSH-2 client for tests that need to misbehave where OpenSSH's client will not:
curve25519-sha256, ssh-ed25519 and aes128-gcm@openssh.com only, and it lets a test send
channel data past the window the server granted or pipeline bad signatures. Never a client
for real use: it does not check the server's host key signature."""
import hashlib, os, socket, struct
from cryptography.hazmat.primitives.asymmetric import x25519, ed25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives import serialization

def s(b):
    if isinstance(b, str): b = b.encode()
    return struct.pack(">I", len(b)) + b
def u32(n): return struct.pack(">I", n)
def mpint(b):
    b = b.lstrip(b"\x00")
    if b and b[0] & 0x80: b = b"\x00" + b
    return s(b)

class R:
    def __init__(self, b): self.b, self.i = b, 0
    def byte(self): v = self.b[self.i]; self.i += 1; return v
    def u32(self): v = struct.unpack(">I", self.b[self.i:self.i+4])[0]; self.i += 4; return v
    def str(self): n = self.u32(); v = self.b[self.i:self.i+n]; self.i += n; return v

class Client:
    def __init__(self, host, port, timeout=30):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""
        self.seq_s = self.seq_r = 0
        self.enc = self.dec = None
    def _recv(self, n):
        while len(self.buf) < n:
            d = self.sock.recv(65536)
            if not d: raise EOFError("closed")
            self.buf += d
        v, self.buf = self.buf[:n], self.buf[n:]
        return v
    def send_pkt(self, payload):
        bs = 16 if self.enc else 8
        hdr = 4 if self.enc else 0  # gcm: length not counted
        pad = bs - ((1 + len(payload) + (0 if self.enc else 4)) % bs)
        if pad < 4: pad += bs
        body = bytes([pad]) + payload + os.urandom(pad)
        if self.enc:
            key, iv = self.enc
            nonce = iv[:4] + struct.pack(">Q", (int.from_bytes(iv[4:], "big") + self.ctr_s) % (1 << 64))
            L = u32(len(body))
            ct = AESGCM(key).encrypt(nonce, body, L)
            self.sock.sendall(L + ct)
            self.ctr_s += 1
        else:
            self.sock.sendall(u32(len(body)) + body)
        self.seq_s = (self.seq_s + 1) & 0xffffffff
    def recv_pkt(self):
        L = self._recv(4); n = struct.unpack(">I", L)[0]
        if self.dec:
            key, iv = self.dec
            ct = self._recv(n + 16)
            nonce = iv[:4] + struct.pack(">Q", (int.from_bytes(iv[4:], "big") + self.ctr_r) % (1 << 64))
            body = AESGCM(key).decrypt(nonce, ct, L)
            self.ctr_r += 1
        else:
            body = self._recv(n)
        self.seq_r = (self.seq_r + 1) & 0xffffffff
        pad = body[0]
        return body[1:len(body) - pad]
    def recv_skip(self):
        while True:
            p = self.recv_pkt()
            if p[0] in (2, 4, 53):  # ignore, debug, userauth banner
                continue
            return p
    def connect(self):
        vc = b"SSH-2.0-review_0.1"
        self.sock.sendall(vc + b"\r\n")
        line = b""
        while True:
            line = b""
            while not line.endswith(b"\n"): line += self._recv(1)
            if line.startswith(b"SSH-"): break
        vs = line.rstrip(b"\r\n")
        ic = bytes([20]) + os.urandom(16) + s("curve25519-sha256") + s("ssh-ed25519") + s("aes128-gcm@openssh.com") * 2 \
            + s("hmac-sha2-256-etm@openssh.com") * 2 + s("none") * 2 + s("") * 2 + b"\x00" + u32(0)
        self.send_pkt(ic)
        is_ = self.recv_skip()
        assert is_[0] == 20, is_[0]
        priv = x25519.X25519PrivateKey.generate()
        qc = priv.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.send_pkt(bytes([30]) + s(qc))
        r = self.recv_skip(); assert r[0] == 31, r[0]
        rr = R(r[1:]); ks = rr.str(); qs = rr.str(); sig = rr.str()
        K = priv.exchange(x25519.X25519PublicKey.from_public_bytes(qs))
        Km = mpint(K)
        H = hashlib.sha256(s(vc) + s(vs) + s(ic) + s(is_) + s(ks) + s(qc) + s(qs) + Km).digest()
        self.session_id = H
        r = self.recv_skip(); assert r[0] == 21, r[0]
        self.send_pkt(bytes([21]))
        def kd(c, n):
            k = hashlib.sha256(Km + H + c + H).digest()
            while len(k) < n: k += hashlib.sha256(Km + H + k).digest()
            return k[:n]
        self.ctr_s = self.ctr_r = 0
        self.enc = (kd(b"C", 16), kd(b"A", 12))
        self.dec = (kd(b"D", 16), kd(b"B", 12))
    def auth(self, user, sk):
        self.send_pkt(bytes([5]) + s("ssh-userauth"))
        r = self.recv_skip(); assert r[0] == 6, r[0]
        pub = sk.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        blob = s("ssh-ed25519") + s(pub)
        body = s(user) + s("ssh-connection") + s("publickey") + b"\x01" + s("ssh-ed25519") + s(blob)
        sig = sk.sign(s(self.session_id) + bytes([50]) + body)
        self.send_pkt(bytes([50]) + body + s(s("ssh-ed25519") + s(sig)))
        r = self.recv_skip()
        return r[0] == 52
    def open_session(self, window=2 * 1024 * 1024):
        self.send_pkt(bytes([90]) + s("session") + u32(0) + u32(window) + u32(32768))
        while True:
            r = self.recv_skip()
            if r[0] == 91:
                rr = R(r[1:]); rr.u32(); self.rchan = rr.u32(); self.rwin = rr.u32(); self.rmax = rr.u32()
                return True
            if r[0] == 92: return False
    def data(self, b):
        self.send_pkt(bytes([94]) + u32(self.rchan) + s(b))
