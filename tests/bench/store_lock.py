#!/usr/bin/env python3
"""Holds the write lock of the broker's database the way another process would (a backup,
an admin's sqlite3 shell): BEGIN IMMEDIATE, hold, COMMIT, a few times. A benchmark helper
for tests/bench/bench_store_lock.sh.

usage: store_lock.py DB [--hold S] [--gap S] [--times N] [--during CMD] [--during-timeout S]
                        [--no-lock]

Prints one line per hold, `lock n=1 wait_ms=.. held_ms=..` (wait: until the lock was ours,
the broker may be writing). With --during, CMD (a shell command line) starts right after
each lock is taken; its output is printed, each line prefixed `during n=1 `, once it has
ended (it is killed past --during-timeout), before the next lock. --no-lock: the same
schedule and commands without taking the lock (the baseline). Only SQLite opens DB.
"""
import argparse
import os
import signal
import sqlite3
import subprocess
import sys
import time


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("db")
    ap.add_argument("--hold", type=float, default=2.0, help="seconds each lock is held (2)")
    ap.add_argument("--gap", type=float, default=1.0, help="seconds between locks (1)")
    ap.add_argument("--times", type=int, default=3, help="how many locks (3)")
    ap.add_argument("--during", help="shell command started once each lock is held")
    ap.add_argument("--during-timeout", type=float, default=60.0, help="seconds (60)")
    ap.add_argument("--no-lock", action="store_true", help="the same schedule, no lock taken")
    a = ap.parse_args()
    if not (0 < a.hold <= 60 and 0 <= a.gap <= 60 and 1 <= a.times <= 100):
        ap.error("--hold 0..60, --gap 0..60, --times 1..100")
    # isolation_level=None: no implicit transactions, BEGIN and COMMIT are ours. The timeout
    # only matters when the broker is in the middle of a write when we ask.
    con = sqlite3.connect(a.db, timeout=30.0, isolation_level=None)
    try:
        for n in range(1, a.times + 1):
            if n > 1:
                time.sleep(a.gap)
            t0 = time.monotonic()
            if not a.no_lock:
                con.execute("BEGIN IMMEDIATE")
            t1 = time.monotonic()
            child = None
            if a.during:
                child = subprocess.Popen(a.during, shell=True, stdout=subprocess.PIPE,
                                         stderr=None, text=True, start_new_session=True)
            time.sleep(max(0.0, a.hold - (time.monotonic() - t1)))
            if not a.no_lock:
                con.execute("COMMIT")
            t2 = time.monotonic()
            print(f"{'nolock' if a.no_lock else 'lock'} n={n} wait_ms={(t1 - t0) * 1e3:.1f} held_ms={(t2 - t1) * 1e3:.1f}", flush=True)
            if child:
                try:
                    out, _ = child.communicate(timeout=a.during_timeout)
                except subprocess.TimeoutExpired:
                    os.killpg(child.pid, signal.SIGKILL)  # its own session: the shell and what it ran
                    out, _ = child.communicate()
                    print(f"during n={n} killed after {a.during_timeout:g} s", flush=True)
                for line in out.splitlines():
                    print(f"during n={n} {line}", flush=True)
                if child.returncode:
                    print(f"during n={n} exit={child.returncode}", flush=True)
    finally:
        if con.in_transaction:
            con.execute("ROLLBACK")
        con.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
