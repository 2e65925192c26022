"""Store requests outlive what asked for them: a console, a device or the broker itself
going away while a request is still with the store thread must not touch freed memory.
The real programs on 127.0.0.1 under ASan; a sanitizer report fails the test.

Run by ctest as `integration.store_races` (TT_BIN_DIR names the build directory)."""

import os
import socket
import sqlite3
import struct
import unittest

from harness import (TetherTestCase, Pki, WireClient, K_REQUEST, K_RESPONSE, ROLE_AGENT, ROLE_TECHNICIAN,
                     frame, hello_body, pb_bytes, pb_parse, pb_varint)
from test_session import SessionWorld


def session_open(device, ticket, access=1):
    """Request{id=7, session_open{device, ticket, access}} as the wire carries it."""
    so = pb_bytes(1, device) + pb_varint(2, ticket) + pb_varint(3, access)
    return pb_varint(1, 7) + pb_bytes(14, so)


def reset_close(client):
    """Close with a reset: the broker sees the connection gone at once."""
    client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()


class StoreRacesTest(SessionWorld, TetherTestCase):
    @classmethod
    def setUpClass(cls):
        cls.pki = Pki()
        for role, name in (("technician", "tech"), ("admin", "boss"), ("agent", "dev1")):
            cls.pki.issue(role, name)

    def test_console_gone_while_its_session_request_is_written(self):
        """A technician's request and hang-up in one go: the session's row is still being
        written when the console's connection is freed; the request is withdrawn."""
        self.world()
        tid = int(self.new_ticket()[2:])
        for i in range(20):
            c = WireClient(self.b.port, self.pki.ca, self.pki.cert("tech"), self.pki.key("tech"))
            c.handshake_hello(ROLE_TECHNICIAN)
            c.send_frame(K_REQUEST, session_open("dev1", tid))
            reset_close(c)
            self.b.wait_for(r'msg="consent request withdrawn"', count=i + 1, timeout=15)
        self.assertTrue(self.b.alive())
        self.assertEqual(self.tech(["sessions"]).rc, 0)

    def test_device_gone_while_its_grant_is_written(self):
        """A device answers yes and hangs up at once: the grant is still being written when
        the device's connection is freed; the session ends without touching it."""
        b = self.h.start_broker()
        self.b = b
        tid = None
        for i in range(10):
            a = WireClient(b.port, self.pki.ca, self.pki.cert("dev1"), self.pki.key("dev1"))
            a.send_frame(1, hello_body(ROLE_AGENT) + pb_varint(4, 8))  # CAP_SHELL
            kind, _, _, _ = a.read_control()
            self.assertEqual(kind, 2)  # Welcome
            if tid is None:
                tid = int(self.new_ticket()[2:])
            c = WireClient(b.port, self.pki.ca, self.pki.cert("tech"), self.pki.key("tech"))
            c.handshake_hello(ROLE_TECHNICIAN)
            c.send_frame(K_REQUEST, session_open("dev1", tid))
            while True:  # the device is asked
                kind, _, _, body = a.read_control(answer_pings=True)
                f = pb_parse(body) if kind == K_REQUEST else {}
                if 17 in f:
                    rid = f[1][0]
                    break
            a.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            a.send_frame(K_RESPONSE, pb_varint(1, rid) + pb_bytes(17, pb_varint(1, 1) + pb_bytes(2, "erin")))
            a.close()
            b.wait_for(r'msg="session ended"', count=i + 1, timeout=15)
            c.close()
        self.assertTrue(b.alive())

    def test_a_ticket_change_finishing_during_stop(self):
        """A ticket is resolved while another process holds the store's lock, and the broker
        is told to stop before the lock goes: the change completes in the last drain, after
        the sessions are gone, and the broker exits cleanly."""
        self.world(broker_extra=["--log-level", "debug"])
        tid = self.new_ticket()
        db = sqlite3.connect(os.path.join(self.b.data_dir, "broker.db"), isolation_level=None, timeout=5)
        try:
            db.execute("BEGIN IMMEDIATE")
            mark = self.b.mark()
            p = self.spawn_bg(["ticket", "resolve", tid])
            self.b.wait_for(r'msg="store request queued" what=ticket_update', after=mark)
            self.a.stop()
            self.b.signal(__import__("signal").SIGTERM)
            self.b.wait_for(r'msg="stopping"', after=mark)
        finally:
            db.execute("ROLLBACK")
            db.close()
        self.assertEqual(self.b.p.wait(timeout=30), 0)
        p.wait(timeout=30)

    def test_one_connection_has_a_bounded_number_of_store_requests_waiting(self):
        """TT_CONN_STORE_REQS_MAX (16): a console that pipelines requests gets the rest
        answered busy, at once, instead of filling the store's queue."""
        b = self.h.start_broker()
        c = WireClient(b.port, self.pki.ca, self.pki.cert("tech"), self.pki.key("tech"))
        c.handshake_hello(ROLE_TECHNICIAN)
        n = 200
        burst = b"".join(bytes(frame(K_REQUEST, pb_varint(1, i + 1) + pb_bytes(2, pb_varint(2, 250))))
                         for i in range(n))
        c.send(burst)
        answered, busy = set(), 0
        while len(answered) < n:
            kind, _, _, body = c.read_control(timeout=20, answer_pings=True)
            if kind != K_RESPONSE:
                continue
            f = pb_parse(body)
            answered.add(f[1][0])
            if 2 in f and pb_parse(f[2][0]).get(1) == [8]:  # ERR_BUSY
                busy += 1
        c.close()
        print("\n    %d pipelined listings: %d answered, %d busy" % (n, n - busy, busy), flush=True)
        self.assertGreaterEqual(n - busy, 16)
        self.assertGreater(busy, 0)
        self.assertTrue(b.alive())


if __name__ == "__main__":
    unittest.main()
