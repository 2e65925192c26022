#!/usr/bin/env bash
# End-to-end link benchmark: a stream agent -> broker -> console over the real TLS links on
# 127.0.0.1, in MB/s, beside `openssl speed -evp aes-256-gcm` (one core) on this machine in
# the same run; plus echo round trips through the broker. Prints figures, asserts nothing.
# The console runs as an admin: ping and speedtest need no ticket (and no one to consent) then.
# usage: bench_link.sh BUILD_DIR [BYTES]      (BYTES default 1G, the most one speedtest may ask)
set -euo pipefail
bin=${1:?usage: bench_link.sh BUILD_DIR [BYTES]}
bytes=${2:-1G}
bin=$(cd "$bin" && pwd)
tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
# Everything this script starts is bounded: the whole run may take at most 10 minutes.
( sleep 600; echo "bench_link: time limit reached" >&2; kill -TERM $$ ) & pids+=($!)

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$bin/certs/tether-certs" init --dir "$tmp/pki" >/dev/null
"$bin/certs/tether-certs" issue agent bench-dev --dir "$tmp/pki" >/dev/null
"$bin/certs/tether-certs" issue admin bench-admin --dir "$tmp/pki" >/dev/null
p=$tmp/pki
"$bin/broker/tether-broker" --listen 127.0.0.1:$port --ca $p/ca.pem --ca-key $p/ca.key --cert $p/broker.pem \
  --key $p/broker.key --data-dir "$tmp/data" --log-level warn 2>"$tmp/broker.log" & pids+=($!)
for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
"$bin/agent/tether-agent" run --broker 127.0.0.1:$port --ca $p/ca.pem --cert $p/bench-dev.pem \
  --key $p/bench-dev.key 2>"$tmp/agent.log" & pids+=($!)
for _ in $(seq 100); do grep -q 'msg="connected"' "$tmp/agent.log" && break; sleep 0.1; done
tether="$bin/console/tether --broker 127.0.0.1:$port --ca $p/ca.pem --cert $p/bench-admin.pem --key $p/bench-admin.key --timeout 60s"

echo "== link: $bytes agent -> broker -> console, TLS 1.3 both hops, 127.0.0.1 ($(nproc) cores)"
best=0
for run in 1 2 3; do
  out=$($tether speedtest bench-dev --bytes "$bytes" --json)
  mbps=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["mb_per_s"])' "$out")
  echo "run $run: $mbps MB/s"
  best=$(python3 -c "print(max($best, $mbps))")
done
aes=$(openssl speed -seconds 3 -evp aes-256-gcm 2>/dev/null | awk '/^AES-256-GCM/ {print $NF}')
aes_mbs=$(python3 -c "print(round(float('${aes%k}')/1000, 1))")
echo "tether link (best of 3):            $best MB/s"
echo "openssl speed aes-256-gcm 16 KiB:   $aes_mbs MB/s (one core, no I/O)"
echo
echo "== echo round trips console -> broker -> agent -> back, 64-byte payload"
$tether ping bench-dev --count 10000
