#!/usr/bin/env bash
# A fleet-wide failure at the broker: N agents (the fleet tool, one process) connect and each
# reports the same check failing once, as a bad update or a dead DNS server would make a
# whole fleet do at once. Prints how long the broker took from the first alert to the last,
# per report, its CPU, and what the queue got: tickets of their own (storm_devices - 1) and
# one storm ticket. Asserts nothing; loopback only; bounded by a deadline.
#
# usage: tests/bench/bench_alerts.sh [N]     (default 2000; at most the open-file limit)
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
n=${1:-2000}
[[ $n =~ ^[0-9]+$ && $n -ge 5 ]] || { echo "bench_alerts: N must be a number >= 5" >&2; exit 2; }
hard=$(ulimit -Hn)
[[ $hard != unlimited && $n -gt $((hard - 200)) ]] && { echo "bench_alerts: N over the open-file limit ($hard)" >&2; exit 2; }
ulimit -n "$hard"

cmake --preset release >/dev/null
cmake --build build/release -j2 --target tether-loadgen tether-broker tether-certs tether >/dev/null
bin=$root/build/release
tmp=$(mktemp -d /tmp/tether-alerts.XXXXXX)
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
"$bin/broker/tether-broker" --listen 127.0.0.1:0 --data-dir "$tmp/data" --ca "$tmp/pki/ca.pem" \
  --ca-key "$tmp/pki/ca.key" --cert "$tmp/pki/broker.pem" --key "$tmp/pki/broker.key" \
  --max-connections $((n + 100)) >"$tmp/broker.log" 2>&1 &
pids+=($!)
bpid=$!
for _ in $(seq 200); do grep -q 'msg="listening"' "$tmp/broker.log" && break; sleep 0.05; done
addr=$(sed -n 's/.*msg="listening" addr=\([^ ]*\).*/\1/p' "$tmp/broker.log" | head -1)
[[ -n $addr ]] || { echo "bench_alerts: the broker did not start"; cat "$tmp/broker.log"; exit 1; }
cpu0=$(awk '{print $14 + $15}' "/proc/$bpid/stat")
"$bin/tests/bench/tether-loadgen" --broker "$addr" --ca-dir "$tmp/pki" --count "$n" --duration 0 \
  --check-fail disk_used:/var --stats-interval 60 >"$tmp/loadgen.log" 2>&1 &
pids+=($!)
deadline=$((SECONDS + 300))
while (($(grep -c 'msg="alert" what=\(opened\|storm\)' "$tmp/broker.log" || true) < n)); do
  ((SECONDS < deadline)) || { echo "bench_alerts: not all $n alerts within 300 s"; tail -5 "$tmp/broker.log"; exit 1; }
  sleep 0.2
done
cpu1=$(awk '{print $14 + $15}' "/proc/$bpid/stat")
tick=$(getconf CLK_TCK)
first=$(grep -m1 'msg="alert" what=' "$tmp/broker.log" | sed 's/^ts=\([^ ]*\).*/\1/')
last=$(grep 'msg="alert" what=' "$tmp/broker.log" | tail -1 | sed 's/^ts=\([^ ]*\).*/\1/')
opened=$(grep -c 'msg="alert" what=opened' "$tmp/broker.log" || true)
storm=$(grep -c 'msg="alert" what=storm' "$tmp/broker.log" || true)
tickets=$("$bin/console/tether" --broker "$addr" --ca "$tmp/pki/ca.pem" --cert "$tmp/pki/boss.pem" \
  --key "$tmp/pki/boss.key" tickets --state all --json | grep -o '"id":"T-' | wc -l)
python3 - "$first" "$last" "$n" "$opened" "$storm" "$tickets" "$(((cpu1 - cpu0) * 1000 / tick))" <<'PY'
import sys, datetime
f, l = (datetime.datetime.strptime(x, "%Y-%m-%dT%H:%M:%S.%fZ") for x in sys.argv[1:3])
n, opened, storm, tickets, cpu = map(int, sys.argv[3:])
span = (l - f).total_seconds()
print("devices=%d alerts=%d own_tickets=%d joined_storm=%d tickets=%d first_to_last_s=%.2f "
      "ms_per_report=%.2f broker_cpu_s_with_handshakes=%.2f" % (n, opened + storm, opened, storm, tickets, span,
                                                  span * 1000 / n, cpu / 1000))
PY
