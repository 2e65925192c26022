#!/usr/bin/env bash
# A file pull over a long fat link. The agent reaches the broker through tests/bench/linkem.py,
# a model of a link with a 50 ms round trip whose uplink (what the device sends) carries
# 200 Mbit/s behind a queue of one bandwidth-delay product (this machine's kernel has no
# tc netem; the model does in user space what netem would on the wire). A 256 MiB pull of
# random data is timed; the figure is its share of the link rate (issue 9 asks >= 80%),
# beside plain TCP through the same model (what the model itself lets through). Loopback
# only; every transfer is stopped after 5 minutes.
#
# usage: tests/bench/bench_netem.sh [BUILD_DIR]   (default: builds the release preset)
# environment: BENCH_NETEM_BYTES=268435456, BENCH_NETEM_RTT_MS=50, BENCH_NETEM_MBIT=200
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
if [[ -n ${1:-} ]]; then
  bin=$(cd "$1" && pwd)
else
  cmake --preset release >/dev/null
  cmake --build build/release -j2 --target tether-broker tether-agent tether tether-certs >/dev/null
  bin=$root/build/release
fi
bytes=${BENCH_NETEM_BYTES:-268435456}
rtt=${BENCH_NETEM_RTT_MS:-50}
mbit=${BENCH_NETEM_MBIT:-200}
# shellcheck source=tests/bench/tether.sh
source "$root/tests/bench/tether.sh"

tmp=$(mktemp -d /tmp/tether-bench-netem.XXXXXX)
TT_PIDS=()
pids=()
cleanup() {
  set +e
  for p in "${TT_PIDS[@]}" "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
  wait 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
mbs() { awk -v b="$1" -v a="$2" -v z="$3" 'BEGIN {printf "%.1f", b / 1e6 / (z - a)}'; }
# Listening yet? (asked of the kernel: a test connection would be relayed like any other)
wait_port() { for _ in $(seq 100); do [[ -n $(ss -Hltn "sport = :$1") ]] && return; sleep 0.05; done; }

# ---- the model alone: plain TCP, the same bytes, through its own instance ---------------
sink=$(tether_free_port)
via=$(tether_free_port)
python3 -c '
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(1)
c, _ = s.accept()
while c.recv(1 << 20): pass' "$sink" &
pids+=($!)
python3 "$root/tests/bench/linkem.py" "$via" "$sink" "$rtt" "$mbit" &
pids+=($!)
wait_port "$via"
t0=$(date +%s.%N)
timeout 300 python3 -c '
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
left, block = int(sys.argv[2]), b"\0" * (1 << 20)
while left > 0:
    n = min(left, len(block)); s.sendall(block[:n]); left -= n
s.shutdown(socket.SHUT_WR)
while s.recv(65536): pass' "$via" "$bytes"
tcp=$(mbs "$bytes" "$t0" "$(date +%s.%N)")

# ---- tether: the agent dials the model, which relays to the broker ----------------------
TT_PORT=$(tether_free_port)
TT_AGENT_PORT=$(tether_free_port)
python3 "$root/tests/bench/linkem.py" "$TT_AGENT_PORT" "$TT_PORT" "$rtt" "$mbit" &
pids+=($!)
wait_port "$TT_AGENT_PORT"
tether_start "$bin" "$tmp"
head -c "$bytes" /dev/urandom >"$TT_DEV/random.bin"
t0=$(date +%s.%N)
if timeout 300 "${TT_TETHER[@]}" pull bench-dev --ticket "$TT_TICKET" "$TT_DEV/random.bin" "$TT_BACK/random.bin" \
  2>"$tmp/pull.err"; then
  pull=$(mbs "$bytes" "$t0" "$(date +%s.%N)")
  cmp -s "$TT_DEV/random.bin" "$TT_BACK/random.bin" || pull="came back different"
else
  pull="failed: $(tail -1 "$tmp/pull.err")"
fi

link=$(awk -v m="$mbit" 'BEGIN {printf "%.1f", m * 1e6 / 8 / 1e6}')
pct() { awk -v a="$1" -v b="$link" 'BEGIN {if (a + 0 > 0) printf "%.0f%%", 100 * a / b; else print "-"}'; }
echo "== a long fat link: ${rtt} ms round trip, ${mbit} Mbit/s uplink ($link MB/s), $((bytes / 1048576)) MiB of random data"
echo "   plain TCP through the link model: $tcp MB/s = $(pct "$tcp") of the link"
echo "   tether pull (device -> broker over the link -> console): $pull MB/s = $(pct "$pull") of the link  (goal >= 80%)"
