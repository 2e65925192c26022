#!/usr/bin/env bash
# Inventory cost on this machine, with the real broker and agent on 127.0.0.1: one full
# collection (wall time and the agent's CPU for it), the bytes of a first inventory and of an
# unchanged one (the offer alone), the broker's store bytes for the device after its first
# version, and a diag report's size and time. Prints figures, asserts nothing.
# usage: bench_collect.sh BUILD_DIR [INTERVALS]   (INTERVALS: unchanged collections, default 5)
set -euo pipefail
bin=${1:?usage: bench_collect.sh BUILD_DIR [INTERVALS]}
rounds=${2:-5}
bin=$(cd "$bin" && pwd)
tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
( sleep 300; echo "bench_collect: time limit reached" >&2; kill -TERM $$ ) & pids+=($!)

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$bin/certs/tether-certs" init --dir "$tmp/pki" >/dev/null
"$bin/certs/tether-certs" issue agent bench-dev --dir "$tmp/pki" >/dev/null
"$bin/certs/tether-certs" issue admin bench-admin --dir "$tmp/pki" >/dev/null
p=$tmp/pki
"$bin/broker/tether-broker" --listen 127.0.0.1:$port --ca $p/ca.pem --ca-key $p/ca.key --cert $p/broker.pem \
  --key $p/broker.key --data-dir "$tmp/data" 2>"$tmp/broker.log" & pids+=($!)
for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
"$bin/agent/tether-agent" run --broker 127.0.0.1:$port --ca $p/ca.pem --cert $p/bench-dev.pem \
  --key $p/bench-dev.key --inventory-interval 2s --consent-socket "$tmp/c.sock" 2>"$tmp/agent.log" & pids+=($!)
want=$((rounds + 1))
for _ in $(seq 600); do
  n=$(grep -c 'msg="unchanged"\|msg="sent"' "$tmp/agent.log" || true)
  [ "$n" -ge "$want" ] && break
  sleep 0.1
done
tether="$bin/console/tether --broker 127.0.0.1:$port --ca $p/ca.pem --cert $p/bench-admin.pem --key $p/bench-admin.key --timeout 60s"
python3 - "$tmp/agent.log" "$tmp/broker.log" "$(nproc)" <<'PY'
import re, sys, statistics
agent, broker = open(sys.argv[1]).read(), open(sys.argv[2]).read()
def kv(line):
    return dict(re.findall(r'(\w+)=("[^"]*"|\S+)', line))
coll = [kv(l) for l in agent.splitlines() if 'msg="collected"' in l]
sent = [kv(l) for l in agent.splitlines() if 'msg="sent"' in l]
same = [kv(l) for l in agent.splitlines() if 'msg="unchanged"' in l]
stored = [kv(l) for l in broker.splitlines() if 'msg="inventory stored"' in l]
print("== inventory, one device (this machine, %s cores)" % sys.argv[3])
if coll:
    ms = [float(c["ms"]) for c in coll]; cpu = [float(c["cpu_ms"]) for c in coll]
    print("collection: %d tables, wall %.1f ms median (%.1f-%.1f), agent CPU %.1f ms median over %d runs"
          % (int(coll[0]["tables"]), statistics.median(ms), min(ms), max(ms), statistics.median(cpu), len(coll)))
    print("tables as JSON: %s bytes, zstd: %s bytes" % (coll[0]["json_bytes"], coll[0]["zstd_bytes"]))
if sent:
    s = sent[0]
    print("first inventory: %s tables, %d bytes of table parts + %s bytes of offer (before TLS)"
          % (s["tables"], int(s["bytes"]), s["offer_bytes"]))
if same:
    print("unchanged interval: %d of %d later collections sent the offer alone: %s bytes (before TLS)"
          % (len(same), len(coll) - 1, same[0]["offer_bytes"]))
    per_day = int(same[0]["offer_bytes"]) * 24
    print("  at the default 1h interval: %d bytes per device per day unchanged, %.1f MB/day for 100k devices"
          % (per_day, per_day * 100000 / 1e6))
if stored:
    print("broker store after the first version: %s bytes for the device (%s tables)"
          % (stored[0]["store_bytes"], stored[0]["tables"]))
    if len(stored) > 1:
        print("later versions (something changed): " + ", ".join("%s tables" % x["tables"] for x in stored[1:]))
PY
t0=$(date +%s%N)
size=$($tether diag bench-dev --json | wc -c)
t1=$(date +%s%N)
echo "diag report (admin, no ticket): $size bytes of JSON in $(( (t1 - t0) / 1000000 )) ms, console to device and back"
