#!/usr/bin/env bash
# `inventory find` over a fleet: BENCH_INV_DEVICES devices' deb_packages (2,000 packages each,
# 5% of them at one of 24 versions of their own: ~50k distinct rows, as a fleet of one image
# patched unevenly; tests/bench/tools/invtable.c). The fleet arrives one of two ways:
#   BENCH_INV_LOAD=fleet (default): tether-loadgen connects every device to the real broker
#     over mTLS and each pushes its first inventory as tether-agent does (offer, want, parts);
#     the broker checks, stores and indexes them; the fleet stays connected for the finds.
#   BENCH_INV_LOAD=store: tether-invbench puts the same tables straight into a store through
#     the store's writer (store_inv_put, group-committed as the broker does): the store's
#     cost alone, without TLS, the protocol and the broker's checks.
# Then the store's bytes by table, finds through the store's reader (every page), what the
# same find would cost without the index (tables decompressed and parsed), and finds through
# the real broker and console. Prints figures, asserts nothing. Loopback only; stops itself
# after BENCH_INV_BUDGET seconds.
#
# usage: tests/bench/bench_inventory.sh [BUILD_DIR]   (default: build/release of this tree,
#        configured and built if needed)
# environment:
#   BENCH_INV_DEVICES=30000   devices (100000 for the issue's fleet: ~30 minutes on 2 cores;
#                             more devices than the open-file limit connect, push and leave)
#   BENCH_INV_PACKAGES=2000   packages a device
#   BENCH_INV_LOAD=fleet      or store (see above)
#   BENCH_INV_BUDGET=7200     seconds before the benchmark gives up
#   BENCH_INV_KEEP=1          keep the temp dir (store, logs)
set -euo pipefail
cd "$(dirname "$0")/../.."
devices=${BENCH_INV_DEVICES:-30000}
packages=${BENCH_INV_PACKAGES:-2000}
load=${BENCH_INV_LOAD:-fleet}
budget=${BENCH_INV_BUDGET:-7200}
[[ $load == fleet || $load == store ]] || { echo "bench_inventory: BENCH_INV_LOAD is fleet or store" >&2; exit 2; }
bin=${1:-build/release}
if [ "$bin" = build/release ]; then
  cmake --preset release >/dev/null
  cmake --build build/release -j2 --target tether-invbench tether-loadgen tether-broker tether tether-certs >/dev/null
fi
bin=$(cd "$bin" && pwd)
d=$(mktemp -d /tmp/bench_inventory.XXXXXX)
pids=()
declare -A sysctl_saved=()
cleanup() {
  set +e
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  wait 2>/dev/null
  for k in "${!sysctl_saved[@]}"; do sysctl -qw "$k=${sysctl_saved[$k]}" >/dev/null 2>&1; done
  if [ -n "${BENCH_INV_KEEP:-}" ]; then echo "kept: $d"; else rm -rf "$d"; fi
}
trap cleanup EXIT
t_begin=$(date +%s)
left() { echo $((budget - ($(date +%s) - t_begin))); }
inv=$bin/tests/bench/tether-invbench
p=$d/pki
mkdir -m 700 "$d/data"
"$bin/certs/tether-certs" init --dir "$p" >/dev/null
"$bin/certs/tether-certs" issue technician bench-tech --dir "$p" >/dev/null
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
broker_args=(--listen "127.0.0.1:$port" --ca "$p/ca.pem" --ca-key "$p/ca.key" --cert "$p/broker.pem"
             --key "$p/broker.key" --data-dir "$d/data" --log-level warn)
broker_pid=''
start_broker() {
  "$bin/broker/tether-broker" "${broker_args[@]}" "$@" 2>>"$d/broker.log" &
  broker_pid=$!
  pids+=("$broker_pid")
  for _ in $(seq 600); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0; sleep 0.1; done
  echo "bench_inventory: the broker did not listen; its log:" >&2; tail -20 "$d/broker.log" >&2; exit 1
}
stop() { # pid: SIGTERM and wait for it, bounded
  kill -TERM "$1" 2>/dev/null || return 0
  for _ in $(seq 600); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$1" 2>/dev/null || true
}
tether=("$bin/console/tether" --broker "127.0.0.1:$port" --ca "$p/ca.pem" --cert "$p/bench-tech.pem"
        --key "$p/bench-tech.key" --timeout 120s)
run() {
  local t0 t1 n
  t0=$(date +%s.%N)
  n=$("${tether[@]}" inventory find "$@" | wc -l)
  t1=$(date +%s.%N)
  printf '%-58s %8d lines  %7.2f s\n' "tether inventory find ${*}" "$n" "$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b-a}')"
}
console_finds() {
  echo
  echo "-- through the broker and the console (tether inventory find, all pages)$1"
  run deb_packages name=openssl --json
  run deb_packages name=openssl
  run deb_packages name~ssl --json
  run deb_packages name=openssl version=1.0.0-1+deb12u7 --json
}

echo "== inventory find: $devices devices x $packages packages, loaded through the $load"
if [ "$load" = fleet ]; then
  need_fd=$((devices + 300))
  set_sysctl() { # name value, restored at exit (root only)
    local old
    old=$(sysctl -n "$1" 2>/dev/null) || return 0
    [[ -v sysctl_saved[$1] ]] || sysctl_saved[$1]=$old
    sysctl -qw "$1=$2" >/dev/null 2>&1 || true
  }
  if [[ $(id -u) -eq 0 ]]; then
    (($(cat /proc/sys/fs/nr_open) >= need_fd)) || set_sysctl fs.nr_open $((need_fd + 1024))
    set_sysctl net.ipv4.ip_local_port_range "1024 65535"
    set_sysctl net.core.somaxconn 65535
    ulimit -Hn "$need_fd" 2>/dev/null || true
  fi
  ulimit -Sn "$(ulimit -Hn)"
  lg_args=()
  if (($(ulimit -Hn) < need_fd)); then
    # More devices than this host lets one process hold: each pushes, then leaves for good.
    lg_args+=(--inventory-leave)
    echo "fleet: the open-file limit is $(ulimit -Hn), under the ~$need_fd that $devices connected devices" \
         "need: each device connects, pushes its inventory and leaves (tether-loadgen --inventory-leave)"
  fi
  start_broker --max-connections $((devices + 1000)) --heartbeat 30s --idle-timeout 95s \
    --max-handshakes-per-address 2000
  "$bin/tests/bench/tether-loadgen" --broker "127.0.0.1:$port" --ca-dir "$p" --count "$devices" \
    --inventory "$packages" --duration 0 --stats-interval 60 "${lg_args[@]}" >"$d/loadgen.log" 2>&1 &
  lg_pid=$!
  pids+=("$lg_pid")
  until grep -q '^event=inventory-all' "$d/loadgen.log"; do
    kill -0 "$lg_pid" 2>/dev/null || grep -q '^event=inventory-all' "$d/loadgen.log" || { echo "bench_inventory: tether-loadgen ended; its log:" >&2; tail -20 "$d/loadgen.log" >&2; exit 1; }
    kill -0 "$broker_pid" 2>/dev/null || { echo "bench_inventory: the broker ended; its log:" >&2; tail -20 "$d/broker.log" >&2; exit 1; }
    (($(left) > 0)) || { echo "bench_inventory: no complete load within ${budget}s; last:" >&2; tail -3 "$d/loadgen.log" >&2; exit 124; }
    sleep 5
  done
  line=$(grep -m1 '^event=inventory-all' "$d/loadgen.log")
  grep -m1 '^event=all-connected' "$d/loadgen.log" | sed 's/^/fleet: /' || true
  echo "fleet: $line"
  kv() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$line"; }
  printf 'load: %s devices pushed a first inventory of %s packages through the broker in %s s (%s ms a device: TLS, offer, parts, the broker'"'"'s checks, store and index); %s KiB of JSON, %s KiB zstd a device; %s refused; %s busy answers retried\n' \
    "$(kv stored)" "$packages" "$(kv took)" "$(kv ms_per_device)" "$(kv json_kib_per_device)" \
    "$(kv zstd_kib_per_device)" "$(kv failed)" "$(kv busy_retries)"
  rss=$(awk '/^VmRSS/ {print $2}' "/proc/$broker_pid/status")
  echo "broker: ${rss} KiB resident after the load"
  if [ ${#lg_args[@]} -eq 0 ]; then console_finds " (the fleet connected)"; else console_finds ""; fi
  stop "$lg_pid"
  stop "$broker_pid"
  "$inv" bytes "$d/data"
else
  "$inv" load "$d/data" "$devices" "$packages" 5 2>"$d/load.log"
fi
echo
echo "-- through the store (the broker's reader connection, every page)"
"$inv" find "$d/data" deb_packages name=openssl
"$inv" find "$d/data" deb_packages name~ssl
"$inv" find "$d/data" deb_packages name=openssl version=1.0.0-1+deb12u7
"$inv" find "$d/data" deb_packages version~+deb12u7
"$inv" scan "$d/data" deb_packages name openssl 300
if [ "$load" = store ]; then
  start_broker
  console_finds ""
fi
