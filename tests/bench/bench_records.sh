#!/usr/bin/env bash
# What the records cost to turn outward, on this machine, loopback only:
#  1. `tether report sla` over a generated help desk of N tickets (six events each, spread
#     over 90 days, 40 technicians, four priorities): wall time of the report as a table by
#     technician, as JSON and as the HTML page, and the page's size. The tickets go straight
#     into the store (the broker stopped), then the real broker reads them.
#  2. `tether person erase` of one requester on that store: a dry run (every table searched for
#     the name), then the erasure with the VACUUM that leaves no copy (writes wait for it), and
#     the store's size;
#  3. the SIEM feed's catch-up: a fleet of A agents (the fleet tool) connects while the
#     collector is down, which writes the audit entries; then a TLS collector
#     (tests/integration/records/collector.py) comes up and the broker sends the backlog: the
#     time from the broker's connect to the last entry, in entries per second.
# Prints figures; asserts nothing on time. Everything it starts is stopped at the end (trap),
# readiness is awaited on log lines, every wait is bounded.
#
# usage: tests/bench/bench_records.sh [N] [A]     (default N=100000 tickets, A=1000 agents)
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
n=${1:-100000}
agents=${2:-1000}
[[ $n =~ ^[0-9]+$ && $n -ge 100 && $agents =~ ^[0-9]+$ && $agents -ge 1 ]] ||
  { echo "bench_records: N >= 100 tickets and A >= 1 agents" >&2; exit 2; }
ulimit -n "$(ulimit -Hn)"

cmake --preset release >/dev/null
cmake --build build/release -j2 --target tether-loadgen tether-broker tether-certs tether >/dev/null
bin=$root/build/release
tmp=$(mktemp -d /tmp/tether-records.XXXXXX)
pids=()
cleanup() {
  set +e
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
  rm -rf "$tmp"
}
trap cleanup EXIT

"$bin/certs/tether-certs" init --dir "$tmp/pki" >/dev/null
"$bin/certs/tether-certs" issue admin boss --dir "$tmp/pki" >/dev/null
col_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
python3 - "$tmp/col" <<'PY'
import sys; sys.path.insert(0, "tests/integration")
from records.collector import make_server_cert
make_server_cert(sys.argv[1])
PY
start_broker() {
  "$bin/broker/tether-broker" --listen 127.0.0.1:0 --data-dir "$tmp/data" --ca "$tmp/pki/ca.pem" \
    --ca-key "$tmp/pki/ca.key" --cert "$tmp/pki/broker.pem" --key "$tmp/pki/broker.key" \
    --max-connections $((agents + 100)) --siem-target "tls://127.0.0.1:$col_port" \
    --siem-ca "$tmp/col/syslog-ca.pem" >"$tmp/broker.log" 2>&1 &
  bpid=$!
  pids+=($bpid)
  for _ in $(seq 400); do grep -q 'msg="listening"' "$tmp/broker.log" && break; sleep 0.05; done
  addr=$(sed -n 's/.*msg="listening" addr=\([^ ]*\).*/\1/p' "$tmp/broker.log" | head -1)
  [[ -n $addr ]] || { echo "bench_records: the broker did not start"; cat "$tmp/broker.log"; exit 1; }
}
boss() { "$bin/console/tether" --broker "$addr" --ca "$tmp/pki/ca.pem" --cert "$tmp/pki/boss.pem" \
  --key "$tmp/pki/boss.key" --timeout 300s "$@"; }

# 1. Reports.
start_broker
kill -TERM "$bpid"; wait "$bpid" || true
python3 - "$tmp/data/broker.db" "$n" <<'PY'
import random, sqlite3, sys, time
db, n = sqlite3.connect(sys.argv[1]), int(sys.argv[2])
now = int(time.time() * 1000); D = 86400000; H = 3600000; M = 60000
targets = {0: (D, 7 * D), 1: (4 * H, 3 * D), 2: (H, D), 3: (15 * M, 4 * H)}
rnd = random.Random(7)
with db:
    for i in range(n):
        created = now - rnd.randrange(90 * D)
        prio = rnd.randrange(4)
        first, fix = targets[prio]
        resp = rnd.randrange(1, 2 * first)
        res = resp + rnd.randrange(1, 2 * fix)
        state = 1 if created + res > now else 2
        t = db.execute("INSERT INTO tickets(device, requester, assignee, summary, priority, level, state, created_ms,"
                       " updated_ms, first_response_due_ms, resolution_due_ms) VALUES(?,?,?,?,?,?,?,?,?,?,?)",
                       ("dev%d" % (i % 5000), "emp%d" % i, "tech%d" % (i % 40), "generated", prio, 1 + i % 3, state,
                        created, created, created + first, created + fix)).lastrowid
        ev = [(created, "created"), (created + resp // 2, "comment"), (created + resp, "public-comment"),
              (created + resp + M, "session-requested"), (created + resp + 3 * M, "consent-given")]
        if state == 2:
            ev.append((created + res, "resolved"))
        db.executemany("INSERT INTO ticket_events(ticket, ts_ms, actor, kind, text) VALUES(?,?,?,?,?)",
                       [(t, ts, "tech%d" % (i % 40), k, "") for ts, k in ev])
PY
start_broker
timed() { local t0=$EPOCHREALTIME; "$@" >"$tmp/out"; awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { print b - a }'; }
t_table=$(timed boss report sla --since 90d --by technician)
t_json=$(timed boss report sla --since 90d --by technician --format json)
t_html=$(timed boss report sla --since 90d --by priority --format html)
html_bytes=$(wc -c <"$tmp/out")
t_act=$(timed boss report activity --since 7d)
printf 'report tickets=%d table_by_technician_s=%.2f json_s=%.2f html_by_priority_s=%.2f html_bytes=%d activity_s=%.2f\n' \
  "$n" "$t_table" "$t_json" "$t_html" "$html_bytes" "$t_act"

# 2. A person's erasure on that store: the search, and the rewrite with its VACUUM.
db_mb=$(du -m "$tmp/data/broker.db" | cut -f1)
t_dry=$(timed boss person erase "emp$((n / 2))" --reason "bench" --dry-run)
t_erase=$(timed boss person erase "emp$((n / 2))" --reason "bench" --json)
erased=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["counts"]["tickets"]["erased"], d["scrubbed"])' "$tmp/out")
printf 'erase store_mb=%d dry_run_s=%.2f erase_with_vacuum_s=%.2f tickets_and_scrubbed=%s\n' \
  "$db_mb" "$t_dry" "$t_erase" "${erased// /,}"

# 3. The SIEM feed's catch-up after an outage.
"$bin/tests/bench/tether-loadgen" --broker "$addr" --ca-dir "$tmp/pki" --count "$agents" --duration 0 \
  --stats-interval 60 >"$tmp/loadgen.log" 2>&1 &
lpid=$!
pids+=($lpid)
deadline=$((SECONDS + 300))
while (($(grep -c 'msg="peer connected"' "$tmp/broker.log" || true) < agents)); do
  ((SECONDS < deadline)) || break
  sleep 0.2
done
kill -TERM "$lpid"; wait "$lpid" 2>/dev/null || true
head=$(boss audit --json --since 1h | tail -1 | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
python3 - "$tmp/col" "$col_port" "$head" <<'PY'
import sys, time; sys.path.insert(0, "tests/integration")
from records.collector import Collector
d, port, head = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
c = Collector(d + "/syslog-server.pem", d + "/syslog-server.key", port=port)
c.start()
try:
    # The broker's next retry comes within its backoff (up to 30 s): timed from its connect.
    c.wait_connections(1, timeout=60)
    t0 = time.monotonic()
    c.wait_for_seq(head, timeout=300)
    dt = time.monotonic() - t0
    s = c.seqs()
    print("siem backlog_entries=%d caught_up_s=%.2f entries_per_s=%.0f duplicates=%d gaps=%d" % (
        head, dt, head / dt, len(s) - len(set(s)), len(set(range(1, head + 1)) - set(s))))
finally:
    c.stop()
PY
