#!/usr/bin/env bash
# Fleet benchmark: N agents (tether-loadgen) on one tether-broker over 127.0.0.0/8, against
# the goal "100,000 connected agents on one broker (2 cores, 24 GiB) at no more than 25 KB
# of broker memory each, and a full reconnect of them in under 90 s". Prints figures beside
# the goals; asserts nothing. Stops by itself within 15 minutes and leaves nothing running.
#
# usage: scripts/bench_fleet.sh [N] [BUILD_DIR]
#   N          agents (default 100000)
#   BUILD_DIR  a build with tether-broker, tether-certs and tether-loadgen (default: builds the
#              release preset into build/release); tests/bench/bench_connect.sh runs this for
#              several builds side by side
# environment:
#   BENCH_FLEET_PKI=DIR     reuse this PKI (made with tether-certs if missing); its load/
#                           cache of agent certificates makes reruns start at once
#   BENCH_FLEET_SIGNAL=KILL how the broker is stopped for the reconnect: KILL (a crash, the
#                           default: the kernel closes every socket at once) or TERM (the
#                           broker closes each link itself first)
#   BENCH_FLEET_IDLE=30     seconds of idle CPU measurement (0 = skip it)
#   BENCH_FLEET_LOADGEN=    the tether-loadgen to use (default BUILD_DIR's), so that several
#                           brokers can be measured with one client
#   BENCH_FLEET_INFLIGHT=   loadgen handshakes in flight (default: the loadgen's, 2000)
#   BENCH_FLEET_RATE=0      loadgen connections per second (0 = unlimited)
#   BENCH_FLEET_KEEP=1      keep the temp dir (logs, the loadgen's status lines, the data dir)
set -euo pipefail
n=${1:-100000}
[[ $n =~ ^[0-9]+$ && $n -ge 1 && $n -le 999999 ]] || { echo "usage: bench_fleet.sh [N] [BUILD_DIR]  (N 1..999999)" >&2; exit 2; }
kill_sig=${BENCH_FLEET_SIGNAL:-KILL}
idle_s=${BENCH_FLEET_IDLE:-30}
[[ $idle_s =~ ^[0-9]+$ ]] || { echo "bench_fleet: BENCH_FLEET_IDLE must be whole seconds" >&2; exit 2; }
build_arg=${2:-}
[[ -z $build_arg ]] || build_arg=$(cd "$build_arg" && pwd)
budget=900 # seconds, everything included
t_begin=$(date +%s)
cd "$(dirname "$0")/.."
root=$(pwd)

tmp=$(mktemp -d /tmp/tether-fleet.XXXXXX)
broker_pid='' lg_pid='' dog_pid=''
declare -A sysctl_saved=()
cleanup() {
  set +e
  [[ -n $lg_pid ]] && kill -TERM "$lg_pid" 2>/dev/null
  [[ -n $broker_pid ]] && kill -TERM "$broker_pid" 2>/dev/null
  for _ in $(seq 100); do
    { [[ -z $lg_pid ]] || ! kill -0 "$lg_pid" 2>/dev/null; } &&
      { [[ -z $broker_pid ]] || ! kill -0 "$broker_pid" 2>/dev/null; } && break
    sleep 0.2
  done
  [[ -n $lg_pid ]] && kill -KILL "$lg_pid" 2>/dev/null
  [[ -n $broker_pid ]] && kill -KILL "$broker_pid" 2>/dev/null
  [[ -n $dog_pid ]] && kill "$dog_pid" 2>/dev/null
  wait 2>/dev/null
  for k in "${!sysctl_saved[@]}"; do sysctl -qw "$k=${sysctl_saved[$k]}" >/dev/null 2>&1; done
  if [[ -n ${BENCH_FLEET_KEEP:-} ]]; then echo "bench_fleet: logs kept in $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'echo "bench_fleet: interrupted" >&2; exit 124' INT TERM
# The watchdog: whatever happens, the run ends within $budget seconds. Its sleep is killed
# with it, so nothing outlives the script (not even a pipe held open).
(
  sleep "$budget" & s=$!
  trap 'kill $s 2>/dev/null; exit 0' TERM
  wait $s && { echo "bench_fleet: time limit of ${budget}s reached" >&2; kill -TERM $$; }
) &
dog_pid=$!

left() { echo $((budget - ($(date +%s) - t_begin) - 20)); } # seconds left, 20 s kept for cleanup
say() { printf '%s\n' "$*"; }

# ---- build ---------------------------------------------------------------------------
if [[ -n $build_arg ]]; then
  bin=$build_arg
elif ! { cmake --preset release && cmake --build build/release -j2 --target tether-loadgen tether-broker tether-certs; } >"$tmp/build.log" 2>&1; then
  tail -30 "$tmp/build.log"; say "bench_fleet: build failed"; exit 1
else
  bin=$root/build/release
fi
broker_bin=$bin/broker/tether-broker
certs_bin=$bin/certs/tether-certs
lg_bin=${BENCH_FLEET_LOADGEN:-$bin/tests/bench/tether-loadgen}
for p in "$broker_bin" "$certs_bin" "$lg_bin"; do
  [[ -x $p ]] || { say "bench_fleet: $p is not built"; exit 1; }
done

# ---- limits --------------------------------------------------------------------------
need_fd=$((n + 200))
nr_open=$(cat /proc/sys/fs/nr_open)
set_sysctl() { # name value: set it, remember the old value for cleanup (root only)
  local old
  old=$(sysctl -n "$1" 2>/dev/null) || return 0
  [[ -v sysctl_saved[$1] ]] || sysctl_saved[$1]=$old
  sysctl -qw "$1=$2" >/dev/null 2>&1 || say "note: could not set $1=$2 (kept '$old')"
}
if [[ $(id -u) -eq 0 ]]; then
  ((nr_open >= need_fd)) || { set_sysctl fs.nr_open $((need_fd + 1024)); nr_open=$(cat /proc/sys/fs/nr_open); }
  # Sources 127.0.0.1-8 with IP_BIND_ADDRESS_NO_PORT give 8 x (range) ports toward one broker port.
  set_sysctl net.ipv4.ip_local_port_range "1024 65535"
  # The broker listens with a backlog of 4096 (uv_listen in broker/main.c); the kernel caps it
  # at somaxconn, so this only keeps the kernel from being the lower cap.
  set_sysctl net.core.somaxconn 65535
  set_sysctl net.ipv4.tcp_max_syn_backlog 65535
  ulimit -Hn "$need_fd" 2>/dev/null || ulimit -Hn "$nr_open" 2>/dev/null || true
fi
ulimit -Sn "$(ulimit -Hn)"
if (( $(ulimit -Hn) < need_fd )); then
  why="hard RLIMIT_NOFILE is $(ulimit -Hn)"
  cap_eff=$((16#$(awk '/^CapEff/ {print $2}' /proc/self/status)))
  (( (cap_eff >> 24) & 1 )) || why+=" and this process lacks CAP_SYS_RESOURCE to raise it (a container?)"
  ((nr_open < need_fd)) && why+="; fs.nr_open is $nr_open"
  say "bench_fleet: cannot run N=$n: the broker and the loadgen each need ~$need_fd descriptors, but $why."
  say "bench_fleet: the largest N this host allows is about $(( $(ulimit -Hn) - 200 ))."
  exit 3
fi
mem_avail_kb=$(awk '/^MemAvailable/ {print $2}' /proc/meminfo)
# Broker and loadgen together have measured well under 100 KB per agent; refuse a run that
# would push the machine into the OOM killer.
if (( mem_avail_kb < n * 100 )); then
  say "bench_fleet: N=$n needs ~$((n * 100 / 1024 / 1024)) GiB free; $((mem_avail_kb / 1024 / 1024)) GiB available"
  exit 3
fi

# ---- PKI and broker ------------------------------------------------------------------
pki=${BENCH_FLEET_PKI:-$tmp/pki}
[[ -f $pki/ca.key ]] || "$certs_bin" init --dir "$pki" >/dev/null
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
broker_args=(--listen "127.0.0.1:$port" --ca "$pki/ca.pem" --cert "$pki/broker.pem" --key "$pki/broker.key"
             --max-connections $((n + 1000)) --heartbeat 30s --idle-timeout 95s --log-level warn)
notes=()
help=$("$broker_bin" --help 2>&1 || true)
if grep -q -- '--data-dir' <<<"$help"; then broker_args+=(--data-dir "$tmp/data"); else notes+=("broker has no --data-dir yet: nothing persisted across the restart"); fi
if grep -q -- '--ca-key' <<<"$help"; then broker_args+=(--ca-key "$pki/ca.key"); else notes+=("broker has no --ca-key yet"); fi
# The fleet comes from 8 loopback addresses, ~N/8 agents behind each: a real fleet is
# spread over far more. Let each address use every handshake slot, as before the per-address
# limit, so that the reconnect figure measures the broker and not this simulation's NAT.
if grep -q -- '--max-handshakes-per-address' <<<"$help"; then broker_args+=(--max-handshakes-per-address 2000); fi

start_broker() { # $1: log file
  "$broker_bin" "${broker_args[@]}" 2>>"$1" &
  broker_pid=$!
  for _ in $(seq 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
    kill -0 "$broker_pid" 2>/dev/null || { say "bench_fleet: broker exited:"; tail -5 "$1"; exit 1; }
    sleep 0.05
  done
  say "bench_fleet: broker did not listen within 10 s"; exit 1
}
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; } # utime + stime
loop_ticks() { sed 's/.*) //' "/proc/$1/task/$1/stat" | awk '{print $12 + $13}'; } # the main thread's: the event loop
sock_pages() { awk '/^TCP:/ {for (i = 1; i < NF; i++) if ($i == "mem") print $(i + 1)}' /proc/net/sockstat; }
slab_kb() { awk '/^Slab:/ {print $2}' /proc/meminfo; }
wait_event() { # $1: how many all-connected events, $2: timeout seconds; prints the event line
  local deadline=$(( $(date +%s) + $2 )) line
  while (( $(date +%s) < deadline )); do
    line=$(grep '^event=all-connected' "$tmp/lg.out" | sed -n "${1}p")
    [[ -n $line ]] && { echo "$line"; return 0; }
    kill -0 "$lg_pid" 2>/dev/null || return 1
    sleep 0.2
  done
  return 1
}
field() { sed -n "s/.*[[:space:]]$1=\([^[:space:]]*\).*/\1/p" <<<" $2"; }
# After a storm of handshakes, the broker's CPU once it has gone quiet: work the handshakes
# queued (a store thread committing their entries) still belongs to them. Quiet: at most one
# tick (2% of a core at 100 Hz) in half a second, or 30 s gone. Prints the ticks of the whole
# process and of its event loop thread, and how long it took.
cpu_when_quiet() { # pid
  local t0 prev c=0
  t0=$(date +%s.%N)
  prev=$(cpu_ticks "$1")
  for _ in $(seq 60); do
    sleep 0.5
    c=$(cpu_ticks "$1")
    (( c - prev <= 1 )) && break
    prev=$c
  done
  echo "$c $(loop_ticks "$1") $(awk -v a="$(date +%s.%N)" -v b="$t0" 'BEGIN {printf "%.1f", a - b}')"
}
per_hs_ms() { # ticks handshakes
  awk -v d="$1" -v hz="$(getconf CLK_TCK)" -v n="$2" 'BEGIN {printf "%.2f", (n > 0) ? 1000 * d / hz / n : 0}'
}

start_broker "$tmp/broker.log"
sleep 0.5
rss0=$(rss_kb "$broker_pid")
page=$(getconf PAGESIZE)

say "== fleet: N=$n agents -> tether-broker on 127.0.0.1:$port ($(nproc) cores, $(awk '/MemTotal/ {printf "%.0f", $2/1048576}' /proc/meminfo) GiB, $(openssl version | cut -d' ' -f1-2))"
say "broker: ${broker_args[*]}"

# ---- first full connect ---------------------------------------------------------------
lg_args=(--broker "127.0.0.1:$port" --ca-dir "$pki" --count "$n" --stats-interval 5
         --duration "$(left)" --sources 127.0.0.1-127.0.0.8 --rate "${BENCH_FLEET_RATE:-0}")
[[ -n ${BENCH_FLEET_INFLIGHT:-} ]] && lg_args+=(--inflight "$BENCH_FLEET_INFLIGHT")
: >"$tmp/lg.out"
"$lg_bin" "${lg_args[@]}" >"$tmp/lg.out" 2>"$tmp/lg.err" &
lg_pid=$!
cpu_c0=$(cpu_ticks "$broker_pid") loop_c0=$(loop_ticks "$broker_pid") # idle until the loadgen has its certificates
say "loadgen: ${lg_args[*]}"
# Certificates are issued (or read from the cache) before the clock starts.
while ! grep -q '^loadgen:' "$tmp/lg.out"; do
  kill -0 "$lg_pid" 2>/dev/null || { say "bench_fleet: loadgen exited:"; cat "$tmp/lg.err"; exit 1; }
  (( $(left) > 0 )) || exit 124
  sleep 0.2
done
grep '^identities: issued' "$tmp/lg.out" || true
sock0=$(sock_pages) slab0=$(slab_kb)
if ! ev1=$(wait_event 1 "$(left)"); then
  say "bench_fleet: not all $n agents connected in time; last status:"
  grep '^t=' "$tmp/lg.out" | tail -3
  exit 1
fi
say "first connect: $ev1"
hs_rate=$(field hs_per_s "$ev1")
took1=$(field took "$ev1")
hz=$(getconf CLK_TCK)
# Broker CPU per handshake (per Welcome; all the broker's threads, from /proc/PID/stat):
# what one broker core can take, whatever the loadgen manages.
read -r cpu_c1 loop_c1 tail1 < <(cpu_when_quiet "$broker_pid")
cpu_hs_ms=$(per_hs_ms $((cpu_c1 - cpu_c0)) "$(field handshakes "$ev1")")
loop_hs_ms=$(per_hs_ms $((loop_c1 - loop_c0)) "$(field handshakes "$ev1")")

# Memory once the handshake storm has settled (heartbeats keep running).
sleep 5
rss1=$(rss_kb "$broker_pid")
sock1=$(sock_pages) slab1=$(slab_kb)
lg_rss=$(rss_kb "$lg_pid")
cp "/proc/$broker_pid/smaps_rollup" "$tmp/smaps1" 2>/dev/null || true
per_agent_b=$(( (rss1 - rss0) * 1024 / n ))
# sockstat and Slab count both ends of every connection (the loadgen's sockets live in the
# same kernel); half of each delta is the broker's end.
kern_sock_b=$(( (sock1 - sock0) * page / (2 * n) ))
kern_slab_b=$(( (slab1 - slab0) * 1024 / (2 * n) ))
with_kernel_b=$(( per_agent_b + kern_sock_b + kern_slab_b ))

# ---- idle CPU -------------------------------------------------------------------------
idle_pct='-'
if ((idle_s > 0)); then
  c0=$(cpu_ticks "$broker_pid")
  sleep "$idle_s"
  c1=$(cpu_ticks "$broker_pid")
  idle_pct=$(awk -v d=$((c1 - c0)) -v hz="$hz" -v s="$idle_s" 'BEGIN {printf "%.2f", 100 * d / hz / s}')
fi
connected_now=$(grep '^t=' "$tmp/lg.out" | tail -1 | sed -n 's/.*connected=\([0-9]*\).*/\1/p')

# ---- full reconnect -------------------------------------------------------------------
say "reconnect: SIG$kill_sig to the broker, restart on the same port$( [[ " ${broker_args[*]} " == *" --data-dir "* ]] && echo " and data dir")"
t_kill=$(date +%s.%N)
{ # (stderr off: bash would announce the killed job)
  kill -"$kill_sig" "$broker_pid"
  for _ in $(seq 600); do kill -0 "$broker_pid" || break; sleep 0.1; done
  kill -0 "$broker_pid" && { say "bench_fleet: broker still up 60 s after SIG$kill_sig"; exit 1; }
  wait "$broker_pid" || true
} 2>/dev/null
t_dead=$(date +%s.%N)
broker_pid=
start_broker "$tmp/broker2.log"
t_up=$(date +%s.%N)
cpu_r0=$(cpu_ticks "$broker_pid") loop_r0=$(loop_ticks "$broker_pid")
if ! ev2=$(wait_event 2 "$(left)"); then
  say "bench_fleet: not all $n agents reconnected in time; last status:"
  grep '^t=' "$tmp/lg.out" | tail -3
  reconnect_s=">$(awk -v a="$(date +%s.%N)" -v b="$t_kill" 'BEGIN {printf "%.0f", a - b}')"
  rss2=$(rss_kb "$broker_pid")
else
  say "reconnect:     $ev2"
  reconnect_s=$(awk -v a="$(field wall "$ev2")" -v b="$t_kill" 'BEGIN {printf "%.1f", a - b}')
  read -r cpu_r1 loop_r1 tail2 < <(cpu_when_quiet "$broker_pid")
  cpu_rhs_ms=$(per_hs_ms $((cpu_r1 - cpu_r0)) "$(field handshakes "$ev2")")
  loop_rhs_ms=$(per_hs_ms $((loop_r1 - loop_r0)) "$(field handshakes "$ev2")")
  sleep 3
  rss2=$(rss_kb "$broker_pid")
fi
down_s=$(awk -v a="$t_dead" -v b="$t_kill" 'BEGIN {printf "%.2f", a - b}')
restart_s=$(awk -v a="$t_up" -v b="$t_dead" 'BEGIN {printf "%.2f", a - b}')
rehs=$(field hs_per_s "$ev2")
resumed=$(field resumed "$ev2")

kill -TERM "$lg_pid" 2>/dev/null || true
for _ in $(seq 150); do kill -0 "$lg_pid" 2>/dev/null || break; sleep 0.2; done
lg_done=$(grep '^loadgen: done' "$tmp/lg.out" || true)

# ---- report ---------------------------------------------------------------------------
kb() { awk -v b="$1" 'BEGIN {printf "%.1f KB", (b < 0 ? 0 : b) / 1000}'; }
verdict() { awk -v v="$1" -v g="$2" 'BEGIN {print (v ~ /^[0-9.]+$/ && v + 0 <= g + 0) ? "meets" : "MISSES"}'; }
say ""
say "== results, N=$n (KB = 1000 bytes)"
printf '%-44s %-18s %-12s %s\n' "figure" "measured" "goal" ""
printf '%-44s %-18s %-12s %s\n' "first connect of N, handshakes/s" "$hs_rate/s" "-" "(${took1} s)"
printf '%-44s %-18s %-12s %s\n' "  broker CPU per handshake (1 core: max/s)" "${cpu_hs_ms} ms" "" "($(awk -v m="$cpu_hs_ms" 'BEGIN {printf "%.0f", (m > 0) ? 1000 / m : 0}')/s)"
printf '%-44s %-18s %-12s %s\n' "    of which its event loop thread" "${loop_hs_ms} ms" "" ""
printf '%-44s %-18s %-12s %s\n' "  broker busy after the last Welcome" "${tail1} s" "" "(until quiet; counted above)"
printf '%-44s %-18s %-12s %s\n' "broker memory per agent, without kernel" "$(kb $per_agent_b)" "25 KB" "$(verdict $per_agent_b 25000)"
printf '%-44s %-18s %-12s %s\n' "broker memory per agent, with kernel" "$(kb $with_kernel_b)" "25 KB" "$(verdict $with_kernel_b 25000)"
printf '%-44s %-18s %-12s %s\n' "  kernel: socket buffers (sockstat) per end" "$(kb $kern_sock_b)" "" ""
printf '%-44s %-18s %-12s %s\n' "  kernel: slab (sock, file, epoll) per end" "$(kb $kern_slab_b)" "" ""
printf '%-44s %-18s %-12s %s\n' "broker memory per agent after the reconnect" "$(kb $(( (rss2 - rss0) * 1024 / n )))" "25 KB" ""
printf '%-44s %-18s %-12s %s\n' "broker CPU idle, N connected (${idle_s} s)" "${idle_pct}% of a core" "-" "(connected=$connected_now)"
printf '%-44s %-18s %-12s %s\n' "full reconnect (SIG$kill_sig -> all N welcomed)" "${reconnect_s} s" "90 s" "$(verdict "$reconnect_s" 90)"
printf '%-44s %-18s %-12s %s\n' "  broker exit / restart to listening" "${down_s} s / ${restart_s} s" "" ""
printf '%-44s %-18s %-12s %s\n' "  reconnect handshakes/s, resumed" "${rehs:-?}/s, ${resumed:-?}" "" ""
printf '%-44s %-18s %-12s %s\n' "  broker CPU per reconnect handshake" "${cpu_rhs_ms:-?} ms" "" ""
printf '%-44s %-18s %-12s %s\n' "    of which its event loop thread" "${loop_rhs_ms:-?} ms" "" ""
printf '%-44s %-18s %-12s %s\n' "  broker busy after the last Welcome" "${tail2:-?} s" "" ""
printf '%-44s %-18s %-12s %s\n' "  100k at that CPU cost, one core" "$(awk -v m="${cpu_rhs_ms:-0}" 'BEGIN {printf "%.0f s", m * 100}')" "90 s" ""
say ""
say "broker VmRSS: ${rss0} kB idle, ${rss1} kB with N, ${rss2} kB after the reconnect; loadgen VmRSS ${lg_rss} kB ($((lg_rss * 1024 / n)) B/agent)"
if [[ -s $tmp/smaps1 ]]; then
  say "broker smaps_rollup with N connected: $(awk '/^(Rss|Anonymous|Private_Dirty):/ {printf "%s %s kB  ", $1, $2}' "$tmp/smaps1")"
fi
say "loadgen: ${lg_done:-did not report}"
warns=$(cat "$tmp/broker.log" "$tmp/broker2.log" 2>/dev/null | grep -c 'level=warn\|level=error' || true)
say "broker warnings/errors logged: $warns$( ((warns > 0)) && echo "; first: $(grep -h 'level=warn\|level=error' "$tmp/broker.log" "$tmp/broker2.log" | head -1)")"
for m in "${notes[@]}"; do say "note: $m"; done
say "elapsed: $(( $(date +%s) - t_begin )) s"
# One line for scripts (tests/bench/bench_connect.sh). The loadgen's failed count is cumulative.
refailed=''
[[ -n ${ev2:-} ]] && refailed=$(( $(field failed "$ev2") - $(field failed "$ev1") ))
say "fleet-figures n=$n hs_per_s=$hs_rate took_s=$took1 failed=$(field failed "$ev1") cpu_hs_ms=$cpu_hs_ms loop_hs_ms=$loop_hs_ms tail_s=$tail1" \
    "rehs_per_s=${rehs:-} cpu_rhs_ms=${cpu_rhs_ms:-} reloop_hs_ms=${loop_rhs_ms:-} retail_s=${tail2:-} reconnect_s=$reconnect_s" \
    "refailed=$refailed resumed=${resumed:-} idle_pct=$idle_pct"
