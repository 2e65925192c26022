#!/usr/bin/env bash
# `inventory find` over a fleet: BENCH_INV_DEVICES devices' deb_packages (2,000 packages each,
# 5% of them at one of 24 versions of their own: ~50k distinct rows, as a fleet of one image
# patched unevenly) put straight into a broker store through the store's writer
# (tether-invbench: store_inv_put, group-committed as the broker does, index included); then
# the store's bytes by table, finds through the store's reader (every page), what the same
# find would cost without the index (tables decompressed and parsed), and finds through the
# real broker and console on that store. Prints figures, asserts nothing. Loopback only.
#
# usage: tests/bench/bench_inventory.sh [BUILD_DIR]   (default: build/release of this tree,
#        configured and built if needed)
# environment:
#   BENCH_INV_DEVICES=30000   devices (100000 for the issue's fleet: ~17 minutes to load, ~30 in all, on 2 cores)
#   BENCH_INV_PACKAGES=2000   packages a device
#   BENCH_INV_KEEP=1          keep the temp dir (store, logs)
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
devices=${BENCH_INV_DEVICES:-30000}
packages=${BENCH_INV_PACKAGES:-2000}
bin=${1:-build/release}
if [ "$bin" = build/release ]; then
  cmake --preset release >/dev/null
  cmake --build build/release -j2 --target tether-invbench tether-broker tether tether-certs >/dev/null
fi
bin=$(cd "$bin" && pwd)
d=$(mktemp -d /tmp/bench_inventory.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "${BENCH_INV_KEEP:-}" ]; then echo "kept: $d"; else rm -rf "$d"; fi
}
trap cleanup EXIT
inv=$bin/tests/bench/tether-invbench
mkdir -m 700 "$d/data"

echo "== inventory find: $devices devices x $packages packages"
"$inv" load "$d/data" "$devices" "$packages" 5 2>"$d/load.log"
echo
echo "-- through the store (the broker's reader connection, every page)"
"$inv" find "$d/data" deb_packages name=openssl
"$inv" find "$d/data" deb_packages name~ssl
"$inv" find "$d/data" deb_packages name=openssl version=1.0.0-1+deb12u7
"$inv" find "$d/data" deb_packages version~+deb12u7
"$inv" scan "$d/data" deb_packages name openssl 300

echo
echo "-- through the broker and the console (tether inventory find, all pages)"
p=$d/pki
"$bin/certs/tether-certs" init --dir "$p" >/dev/null
"$bin/certs/tether-certs" issue technician bench-tech --dir "$p" >/dev/null
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$bin/broker/tether-broker" --listen "127.0.0.1:$port" --ca "$p/ca.pem" --ca-key "$p/ca.key" \
  --cert "$p/broker.pem" --key "$p/broker.key" --data-dir "$d/data" --log-level warn 2>"$d/broker.log" &
pids+=($!)
for _ in $(seq 600); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
tether=("$bin/console/tether" --broker "127.0.0.1:$port" --ca "$p/ca.pem" --cert "$p/bench-tech.pem"
        --key "$p/bench-tech.key" --timeout 120s)
run() {
  local t0 t1 n
  t0=$(date +%s.%N)
  n=$("${tether[@]}" inventory find "$@" | wc -l)
  t1=$(date +%s.%N)
  printf '%-58s %8d lines  %7.2f s\n' "tether inventory find ${*}" "$n" "$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b-a}')"
}
run deb_packages name=openssl --json
run deb_packages name=openssl
run deb_packages name~ssl --json
run deb_packages name=openssl version=1.0.0-1+deb12u7 --json
