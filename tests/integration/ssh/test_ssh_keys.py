"""People's ssh keys and the gateway's side of the broker, on the wire: `tether ssh-key add |
list | remove` (yours; admins for anyone), with every refusal a person would meet (a weak or
foreign key type, a private key file, the same key twice, someone else's key, a person the
broker does not know, the per-person limit); `tether ssh-config`; a gateway link (role
gateway) is given the keys of people not revoked, versioned, and may do nothing else; act_as
makes a link the person's (their role, audited "via ssh"), a key that is not theirs is
refused and closes it, and removing the key or revoking the person ends the acting link. The
real broker and console on 127.0.0.1; the gateway is spoken by hand.

Run by ctest as `integration.ssh_keys` (TT_BIN_DIR names the build directory)."""

import json
import os
import subprocess
import time
import unittest

from harness import (K_ERROR, K_REQUEST, K_RESPONSE, Pki, TetherTestCase, WireClient, pb_bytes, pb_parse,
                     pb_varint)
from test_session import SessionWorld

ROLE_GATEWAY, ROLE_TECHNICIAN = 5, 2
KEYS_PER_PERSON = 16  # TT_SSH_KEYS_PER_PERSON
REQ_SSH_KEY, REQ_GATEWAY_HELLO, REQ_ACT_AS, REQ_DEVICES, REQ_DEVICE_SHOW, REQ_PEOPLE_LIST = 45, 46, 47, 2, 5, 20
RESP_SSH_KEYS, RESP_ACTING, RESP_DEVICES, RESP_DEVICE = 44, 45, 3, 6


class SshKeysTest(SessionWorld, TetherTestCase):
    maxDiff = None

    @classmethod
    def setUpClass(cls):
        cls.pki = Pki()
        for role, name in (("technician", "tech"), ("technician", "tech2"), ("admin", "boss"), ("agent", "dev1"),
                           ("gateway", "gw1")):
            cls.pki.issue(role, name)

    def setUp(self):
        super().setUp()
        self.world(policy="unattended")
        self.keys = os.path.join(self.h.dir, "keys")
        os.makedirs(self.keys)

    def keygen(self, name, kind="ed25519", bits=None):
        path = os.path.join(self.keys, name)
        argv = ["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", name + "@laptop", "-f", path]
        if bits:
            argv[4:4] = ["-b", str(bits)]
        subprocess.run(argv, check=True, timeout=60)
        fp = subprocess.run(["ssh-keygen", "-lf", path + ".pub"], capture_output=True, text=True,
                            check=True).stdout.split()[1]
        return path, fp

    def add(self, path, who="tech", extra=()):
        return self.tech(["ssh-key", "add", path + ".pub"] + list(extra), who=who)

    def listed(self, who="tech", extra=()):
        r = self.tech(["ssh-key", "list", "--json"] + list(extra), who=who)
        self.assertEqual(r.rc, 0, r)
        return [json.loads(ln) for ln in r.out.splitlines()]

    def gateway(self, who="gw1"):
        c = WireClient(self.b.port, self.pki.ca, self.pki.cert(who), self.pki.key(who))
        self.addCleanup(c.close)
        c.handshake_hello(role=ROLE_GATEWAY)
        c.next_id = 0
        return c

    def ask(self, c, field, body):
        c.next_id += 1
        c.send_frame(K_REQUEST, pb_varint(1, c.next_id) + pb_bytes(field, body))
        while True:
            kind, _, _, rb = c.read_control(answer_pings=True)
            if kind == K_RESPONSE:
                f = pb_parse(rb)
                self.assertEqual(f[1][0], c.next_id)
                return f
            self.assertNotEqual(kind, K_ERROR, pb_parse(rb))

    def hello(self, c, version=0):
        host_key = open(self.keygen("host%d" % time.monotonic_ns())[0] + ".pub").read().split()
        f = self.ask(c, REQ_GATEWAY_HELLO, pb_bytes(1, " ".join(host_key[:2])) + pb_bytes(2, "127.0.0.1:2222")
                     + pb_varint(3, version))
        self.assertNotIn(2, f, pb_parse(f[2][0]) if 2 in f else None)
        l = pb_parse(f[RESP_SSH_KEYS][0]) if RESP_SSH_KEYS in f else {}
        keys = [(pb_parse(k)[1][0].decode(), pb_parse(k)[2][0].decode()) for k in l.get(1, [])]
        return keys, l.get(2, [0])[0]

    def act_as(self, c, person, fp):
        return self.ask(c, REQ_ACT_AS, pb_bytes(1, person) + pb_bytes(2, fp) + pb_bytes(3, "127.0.0.9:50000"))

    # -- people's keys ---------------------------------------------------------------------

    def test_add_list_remove(self):
        path, fp = self.keygen("alice")
        r = self.add(path)
        self.assertEqual((r.rc, r.out), (0, "added tech's key %s\n" % fp), r)
        keys = self.listed()
        self.assertEqual([(k["fingerprint"], k["person"], k["type"], k["bits"], k["comment"]) for k in keys],
                         [(fp, "tech", "ssh-ed25519", 256, "alice@laptop")])
        # ECDSA and RSA >= 3072 are taken too.
        for kind, bits, want in (("ecdsa", 384, 384), ("rsa", 3072, 3072)):
            p, f = self.keygen("k-%s" % kind, kind, bits)
            self.assertEqual(self.add(p).rc, 0)
            self.assertIn((f, want), [(k["fingerprint"], k["bits"]) for k in self.listed()])
        # The same key again, by anyone, is refused.
        r = self.add(path)
        self.assertEqual(r.rc, 1, r)
        self.assertIn("registered already", r.err)
        r = self.add(path, who="tech2")
        self.assertEqual(r.rc, 1, r)
        # Someone else cannot remove it; its owner can.
        r = self.tech(["ssh-key", "remove", fp], who="tech2")
        self.assertEqual(r.rc, 1, r)
        self.assertIn("no ssh key %s of yours" % fp, r.err)
        r = self.tech(["ssh-key", "remove", fp])
        self.assertEqual((r.rc, r.out), (0, "removed tech's key %s\n" % fp), r)
        self.assertNotIn(fp, [k["fingerprint"] for k in self.listed()])
        acts = [(e["action"], e["target"], e["detail"].get("fingerprint")) for e in self.audit()]
        self.assertIn(("ssh-key-add", "tech", fp), acts)
        self.assertIn(("ssh-key-remove", "tech", fp), acts)

    def test_refusals(self):
        p, _ = self.keygen("weak", "rsa", 2048)
        r = self.add(p)
        self.assertEqual(r.rc, 2, r)  # the console says it before anything travels
        self.assertIn("at least 3072 bits; this one has 2048", r.err)
        r = self.tech(["ssh-key", "add", p])  # the private key
        self.assertEqual(r.rc, 2, r)
        self.assertIn("private key", r.err)
        # Admins add for someone else; technicians may not.
        p, fp = self.keygen("for-tech2")
        r = self.add(p, extra=["--person", "tech2"])
        self.assertEqual(r.rc, 1, r)
        self.assertIn("only admins", r.err)
        self.assertEqual(self.tech(["devices"], who="tech2").rc, 0)  # tech2 is known once seen
        r = self.add(p, who="boss", extra=["--person", "tech2"])
        self.assertEqual((r.rc, r.out), (0, "added tech2's key %s\n" % fp), r)
        r = self.add(self.keygen("nobody")[0], who="boss", extra=["--person", "nobody-here"])
        self.assertEqual(r.rc, 1, r)
        self.assertIn("nobody-here is not a person this broker knows", r.err)
        self.assertEqual(self.tech(["ssh-key", "list", "--all"]).rc, 1)
        self.assertIn(fp, [k["fingerprint"] for k in self.listed(who="boss", extra=["--all"])])
        # At most KEYS_PER_PERSON keys each.
        for i in range(KEYS_PER_PERSON):
            self.assertEqual(self.add(self.keygen("many%d" % i)[0]).rc, 0)
        r = self.add(self.keygen("one-too-many")[0])
        self.assertEqual(r.rc, 1, r)
        self.assertIn("holds %d ssh keys already" % KEYS_PER_PERSON, r.err)
        # A hostile line on the wire is refused by the broker itself.
        c = WireClient(self.b.port, self.pki.ca, self.pki.cert("tech"), self.pki.key("tech"))
        self.addCleanup(c.close)
        c.handshake_hello(role=ROLE_TECHNICIAN)
        c.next_id = 0
        for line, says in ((b"ssh-ed25519 AAAA\x00AAA", b"base64"), (b"ssh-rsa " + b"A" * 5000, b"at most"),
                           (b"ssh-dss AAAAB3NzaC1kc3MAAACBAP", b"DSA")):
            f = self.ask(c, REQ_SSH_KEY, pb_varint(1, 1) + pb_bytes(3, line))
            self.assertIn(says, pb_parse(f[2][0])[2][0])

    # -- the gateway -----------------------------------------------------------------------

    def test_gateway_keys_and_acting(self):
        path, fp = self.keygen("alice")
        self.assertEqual(self.add(path).rc, 0)
        gw = self.gateway()
        keys, version = self.hello(gw)
        self.assertEqual(keys, [(fp, "tech")])
        self.assertEqual(self.hello(gw, version), ([], version))  # unchanged: no keys
        r = self.tech(["ssh-config"])
        self.assertEqual(r.rc, 0, r)
        self.assertIn("Host tether-gw1\n  HostName 127.0.0.1\n  Port 2222\n", r.out)
        self.assertIn("[127.0.0.1]:2222 ssh-ed25519 ", r.out)
        # Nothing else on the gateway's own link.
        f = self.ask(gw, REQ_DEVICES, b"")
        self.assertIn(b"gateway's own link", pb_parse(f[2][0])[2][0])
        # Acting for tech: the link is tech's.
        a = self.gateway()
        f = self.act_as(a, "tech", fp)
        self.assertEqual(pb_parse(f[RESP_ACTING][0])[1][0], b"tech")
        self.assertEqual(pb_parse(f[RESP_ACTING][0]).get(2, [0])[0], ROLE_TECHNICIAN)
        # It asks only what an ssh login needs (a device, a session): not a listing, not an
        # admin's requests, whoever it acts for.
        f = self.ask(a, REQ_DEVICES, b"")
        self.assertIn(b"through the ssh gateway", pb_parse(f[2][0])[2][0])
        f = self.ask(a, REQ_DEVICE_SHOW, pb_bytes(1, "dev1"))
        self.assertIn(RESP_DEVICE, f)
        entry = [e for e in self.audit() if e["action"] == "act-as"][0]
        self.assertEqual((entry["actor"], entry["target"], entry["detail"]["via"], entry["detail"]["key"]),
                         ("tech", "gw1", "ssh", fp))
        # Once per link.
        f = self.act_as(a, "tech", fp)
        self.assertIn(2, f)
        # A key that is not the person's: refused, and the link closed.
        b = self.gateway()
        f = self.act_as(b, "tech2", fp)
        self.assertIn(b"not tech2's", pb_parse(f[2][0])[2][0])
        frames, how, secs = b.read_until_closed(timeout=5)
        # A new key shows in the next hello.
        p2, fp2 = self.keygen("second")
        self.assertEqual(self.add(p2).rc, 0)
        keys, v2 = self.hello(gw, version)
        self.assertNotEqual(v2, version)
        self.assertEqual(sorted(keys), sorted([(fp, "tech"), (fp2, "tech")]))
        # Removing the key ends the link that logged in with it.
        self.assertEqual(self.tech(["ssh-key", "remove", fp]).rc, 0)
        frames, how, secs = a.read_until_closed(timeout=5)
        self.assertLess(secs, 1.0)
        # Revoking the person ends theirs, and the gateway is given no keys of theirs.
        c = self.gateway()
        self.act_as(c, "tech", fp2)
        self.assertEqual(self.admin(["revoke", "person", "tech"]).rc, 0)
        frames, how, secs = c.read_until_closed(timeout=5)
        self.assertLess(secs, 1.0)
        self.assertEqual(self.hello(gw, v2)[0], [])
        d = self.gateway()
        f = self.act_as(d, "tech", fp2)
        self.assertIn(b"revoked", pb_parse(f[2][0])[2][0])

    def test_a_revoked_gateway_loses_every_link(self):
        """Revoking the gateway's certificate closes its own links and the links people act
        through it on; an admin acting through it could never do an admin's work anyway."""
        path, fp = self.keygen("bosskey")
        self.assertEqual(self.add(path, who="boss").rc, 0)
        gw = self.gateway()
        self.hello(gw)
        a = self.gateway()
        f = self.act_as(a, "boss", fp)
        self.assertIn(RESP_ACTING, f)
        f = self.ask(a, REQ_PEOPLE_LIST, b"")
        self.assertIn(b"through the ssh gateway", pb_parse(f[2][0])[2][0])
        r = self.admin(["revoke", "person", "gw1", "--reason", "stolen laptop"])
        self.assertEqual(r.rc, 0, r)
        for link in (gw, a):
            frames, how, secs = link.read_until_closed(timeout=5)
            self.assertLess(secs, 1.0)


if __name__ == "__main__":
    unittest.main()
