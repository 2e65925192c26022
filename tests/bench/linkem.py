#!/usr/bin/env python3
"""A long fat link between two loopback ports, for benchmarks on a kernel without tc netem.

linkem.py LISTEN_PORT TARGET_PORT RTT_MS MBIT [QUEUE_KB]

Every connection to 127.0.0.1:LISTEN_PORT is relayed to 127.0.0.1:TARGET_PORT through a
model of a link: each direction has a propagation delay of RTT_MS/2; the direction from the
listening side (the uplink, what an agent sends) is also serialized at MBIT Mbit/s behind a
queue of QUEUE_KB (default: the bandwidth-delay product). When the queue is full the relay
stops reading, so TCP's flow control pushes back on the sender the way a full router
buffer's losses would. Runs until killed; loopback only.
"""
import collections
import socket
import sys
import threading
import time


class Direction:
    def __init__(self, src, dst, delay_s, rate_bps, queue_bytes):
        self.src, self.dst = src, dst
        self.delay, self.rate, self.queue = delay_s, rate_bps, queue_bytes
        self.pieces = collections.deque()  # (deliver_at, bytes)
        self.cv = threading.Condition()
        self.ser_end = 0.0  # when the link finishes serializing what it has taken
        self.eof = False

    def backlog(self, now):
        """Bytes waiting to be serialized."""
        if not self.rate:
            return 0
        return max(0.0, self.ser_end - now) * self.rate

    def reader(self):
        try:
            while True:
                data = self.src.recv(65536)
                if not data:
                    break
                while True:
                    now = time.monotonic()
                    wait = (self.backlog(now) - self.queue) / self.rate if self.rate else 0
                    if wait <= 0:
                        break
                    time.sleep(wait)
                now = time.monotonic()
                start = max(now, self.ser_end)
                self.ser_end = start + (len(data) / self.rate if self.rate else 0)
                with self.cv:
                    self.pieces.append((self.ser_end + self.delay, data))
                    self.cv.notify()
        except OSError:
            pass
        with self.cv:
            self.eof = True
            self.cv.notify()

    def writer(self):
        try:
            while True:
                with self.cv:
                    while not self.pieces and not self.eof:
                        self.cv.wait()
                    if not self.pieces:
                        break
                    at, data = self.pieces.popleft()
                pause = at - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                self.dst.sendall(data)
        except OSError:
            pass
        for s in (self.dst, self.src):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def serve(listen_port, target_port, rtt_ms, mbit, queue_kb):
    rate = mbit * 1e6 / 8
    one_way = rtt_ms / 2000.0
    queue = queue_kb * 1024 if queue_kb else rate * rtt_ms / 1000.0
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", listen_port))
    ls.listen(16)
    while True:
        a, _ = ls.accept()
        try:
            b = socket.create_connection(("127.0.0.1", target_port))
        except OSError:
            a.close()
            continue
        for s in (a, b):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for d in (Direction(a, b, one_way, rate, queue), Direction(b, a, one_way, 0, 0)):
            threading.Thread(target=d.reader, daemon=True).start()
            threading.Thread(target=d.writer, daemon=True).start()


if __name__ == "__main__":
    args = sys.argv[1:]
    if len(args) not in (4, 5):
        sys.exit(__doc__)
    serve(int(args[0]), int(args[1]), float(args[2]), float(args[3]), int(args[4]) if len(args) == 5 else 0)
