#!/usr/bin/env bash
# Keystroke echo through a remote shell while another process holds the write lock of the
# broker's database (as a backup or an admin's sqlite3 would): several builds side by side,
# e.g. before and after the store left the event loop. Loopback only; asserts nothing.
#
# For each build and round: a broker and an agent (unattended consent, shells as this user);
# tether-keyrtt opens a ticket, a session and a shell, then types on a clock (a keystroke
# every BENCH_LOCK_INTERVAL_US, whether or not the echoes are back, so that a stall delays
# every keystroke typed during it) for long enough to cover the locks, in four settings:
#   no lock       nothing else happens
#   lock          tests/bench/store_lock.py holds broker.db's write lock (BEGIN IMMEDIATE)
#                 BENCH_LOCK_TIMES times for BENCH_LOCK_HOLD s, BENCH_LOCK_GAP s apart
#   open          no lock, but at those same moments a second technician opens a ticket, a
#                 session and a shell (every step of it writes to the store): what other
#                 peers do on a busy broker; the baseline of the next
#   lock + open   both
# and the time to open a shell (TCP connect -> shell accepted) with no lock, and when started
# just after a lock was taken. Prints the median over the rounds of each figure, with its
# range, builds side by side. Stops by itself; everything it starts is stopped at the end.
#
# usage: tests/bench/bench_store_lock.sh [[LABEL=]BUILD_DIR...]
#   BUILD_DIR  a build with tether-broker and tether-agent (default: build/release of this
#              tree), named LABEL in the table (default: the commit it was built from).
#              tether-keyrtt and tether-certs always come from this tree's build/release
#              (built if needed), so every broker meets the same client.
#   e.g.       tests/bench/bench_store_lock.sh old=/tmp/old/build/release new=build/release
# environment:
#   BENCH_LOCK_ROUNDS=3            rounds (builds interleaved within each)
#   BENCH_LOCK_HOLD=2              seconds each lock is held
#   BENCH_LOCK_GAP=1               seconds between locks
#   BENCH_LOCK_TIMES=3             locks per measurement
#   BENCH_LOCK_INTERVAL_US=5000    a keystroke every this many microseconds
#   BENCH_LOCK_KEEP=1              keep the temp dir with every log
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
rounds=${BENCH_LOCK_ROUNDS:-3}
hold=${BENCH_LOCK_HOLD:-2}
gap=${BENCH_LOCK_GAP:-1}
times=${BENCH_LOCK_TIMES:-3}
interval=${BENCH_LOCK_INTERVAL_US:-5000}
for v in rounds hold gap times interval; do
  [[ ${!v} =~ ^[0-9]+$ ]] || { echo "bench_store_lock: ${v} must be a whole number" >&2; exit 2; }
done
((rounds >= 1 && hold >= 1 && times >= 1 && interval >= 100)) ||
  { echo "bench_store_lock: want rounds >= 1, hold >= 1 s, times >= 1, interval >= 100 us" >&2; exit 2; }
# Typing covers every lock, plus the opening that waits for the last one, plus a margin.
type_s=$((times * (hold + gap) + 3))
count=$((type_s * 1000000 / interval))

# ---- builds ----------------------------------------------------------------------------
cmake --preset release >/dev/null
cmake --build build/release -j2 --target tether-keyrtt tether-certs tether-broker tether-agent >/dev/null
tools=$root/build/release
keyrtt=$tools/tests/bench/tether-keyrtt
certs=$tools/certs/tether-certs
label_of() { # build dir -> the commit it was built from (+ "-dirty" with local changes)
  local src
  src=$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$1/CMakeCache.txt" 2>/dev/null)
  if [[ -n $src ]] && git -C "$src" rev-parse --short HEAD >/dev/null 2>&1; then
    echo "$(git -C "$src" rev-parse --short HEAD)$(git -C "$src" diff --quiet HEAD -- 2>/dev/null || echo -dirty)"
  else
    basename "$1"
  fi
}
builds=() labels=()
for a in "${@:-build/release}"; do
  l='' d=$a
  [[ $a == *=* ]] && l=${a%%=*} d=${a#*=}
  d=$(cd "$d" && pwd) || exit 2
  for p in broker/tether-broker agent/tether-agent; do
    [[ -x $d/$p ]] || { echo "bench_store_lock: $d/$p is not built" >&2; exit 1; }
  done
  builds+=("$d")
  labels+=("${l:-$(label_of "$d")}")
done

# ---- cleanup and the time limit ----------------------------------------------------------
tmp=$(mktemp -d /tmp/tether-storelock.XXXXXX)
pids=()
dog_pid=''
forget() { # pid: it has ended and was waited for
  local p keep=()
  for p in "${pids[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
  pids=("${keep[@]}")
}
stop_pids() {
  local p alive
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for _ in $(seq 50); do
    alive=0
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    ((alive)) || break
    sleep 0.1
  done
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
}
cleanup() {
  set +e
  stop_pids
  [[ -n $dog_pid ]] && kill "$dog_pid" 2>/dev/null
  wait 2>/dev/null
  if [[ -n ${BENCH_LOCK_KEEP:-} ]]; then echo "bench_store_lock: logs kept in $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'echo "bench_store_lock: interrupted" >&2; exit 124' INT TERM
# One measurement is bounded by keyrtt's --timeout (type_s + 60 s), the setup by its own
# waits; the whole run by their sum.
per_run=$((3 * (type_s + 60) + 120))
budget=$((rounds * ${#builds[@]} * per_run))
(
  sleep "$budget" & s=$!
  trap 'kill $s 2>/dev/null; exit 0' TERM
  wait $s && { echo "bench_store_lock: time limit of ${budget}s reached" >&2; kill -TERM $$; }
) &
dog_pid=$!

# ---- one broker and agent ------------------------------------------------------------------
pki=$tmp/pki
"$certs" init --dir "$pki" >/dev/null
"$certs" issue agent bench-dev --dir "$pki" >/dev/null
"$certs" issue technician bench-tech --dir "$pki" >/dev/null
me=$(id -un)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port='' run=''
start_tether() { # build dir, run dir
  local bin=$1 apid bpid
  run=$2
  mkdir -p "$run"
  port=$(free_port)
  "$bin/broker/tether-broker" --listen "127.0.0.1:$port" --ca "$pki/ca.pem" --ca-key "$pki/ca.key" \
    --cert "$pki/broker.pem" --key "$pki/broker.key" --data-dir "$run/data" --log-level warn \
    2>"$run/broker.log" &
  bpid=$!
  pids+=($bpid)
  for _ in $(seq 150); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    kill -0 "$bpid" 2>/dev/null || { echo "bench_store_lock: broker exited: $(tail -3 "$run/broker.log")"; return 1; }
    sleep 0.1
  done
  cat >"$run/agent.conf" <<EOF
# the bench's device: nobody to ask, so the policy grants; shells run as $me
[consent]
policy = unattended
socket = $run/consent.sock
[shell]
user = $me
EOF
  "$bin/agent/tether-agent" run --config "$run/agent.conf" --broker "127.0.0.1:$port" --ca "$pki/ca.pem" \
    --cert "$pki/bench-dev.pem" --key "$pki/bench-dev.key" --state-dir "$run/agent-state" \
    --log-level info 2>"$run/agent.log" &
  apid=$!
  pids+=($apid)
  for _ in $(seq 150); do
    grep -q 'msg="connected"' "$run/agent.log" && return 0
    kill -0 "$apid" 2>/dev/null || break
    sleep 0.1
  done
  echo "bench_store_lock: the agent did not connect: $(tail -3 "$run/agent.log" | tr '\n' ' ')"
  return 1
}
tech_args() {
  echo --broker "127.0.0.1:$port" --ca "$pki/ca.pem" --cert "$pki/bench-tech.pem" --key "$pki/bench-tech.key" --device bench-dev
}

# One measurement: type for type_s seconds; once the typing has started, the disturbance
# (none | lock | open | lock+open). Writes `p50 p99 max` in ms, or "- - -", to $run/NAME.res;
# the locker's output (with the openings' figures) goes to $run/NAME.lock.
measure() { # setting name
  local setting=$1 name=$2 kpid lpid='' line args
  read -ra args <<<"$(tech_args)"
  rm -f "$run/$name.ready"
  "$keyrtt" tether "${args[@]}" --interval-us "$interval" --count "$count" --ready-file "$run/$name.ready" \
    --timeout $((type_s + 60)) >"$run/$name.out" 2>"$run/$name.err" &
  kpid=$!
  pids+=($kpid)
  for _ in $(seq 600); do
    [[ -e $run/$name.ready ]] && break
    kill -0 "$kpid" 2>/dev/null || break
    sleep 0.05
  done
  if [[ -e $run/$name.ready && $setting != none ]]; then
    local during=()
    [[ $setting == open ]] && during=(--no-lock)
    [[ $setting == *open ]] &&
      during+=(--during "$(printf '%q ' "$keyrtt" tether "${args[@]}" --open-only --timeout 60) 2>>$(printf '%q' "$run/$name.opener.err")")
    python3 "$root/tests/bench/store_lock.py" "$run/data/broker.db" --hold "$hold" --gap "$gap" --times "$times" \
      "${during[@]}" >"$run/$name.lock" 2>&1 &
    lpid=$!
    pids+=($lpid)
  fi
  wait "$kpid" || true
  forget "$kpid"
  if [[ -n $lpid ]]; then
    wait "$lpid" || echo "bench_store_lock: the lock helper failed: $(tail -2 "$run/$name.lock")" >&2
    forget "$lpid"
  fi
  line=$(grep 'phase=idle' "$run/$name.out" || true)
  if [[ -z $line || $(field count "$line") != "$count" ]]; then
    echo "bench_store_lock: $name: $(tail -2 "$run/$name.err" | tr '\n' ' ')" >&2
    echo "- - -" >"$run/$name.res"
    return
  fi
  echo "$(ms "$(field p50_us "$line")") $(ms "$(field p99_us "$line")") $(ms "$(field max_us "$line")")" >"$run/$name.res"
}
field() { sed -n "s/.*[[:space:]]$1=\([^[:space:]]*\).*/\1/p" <<<" $2"; }
opens_of() { # lock file, field: that field of each shell opened meanwhile
  sed -n "s/^during n=[0-9]* keyrtt .*[[:space:]]$2=\([0-9.]*\).*/\1/p" "$1" 2>/dev/null | tr '\n' ' '
}
ms() { awk -v u="$1" 'BEGIN {printf "%.2f", u / 1000}'; }

# ---- the rounds ----------------------------------------------------------------------------
echo "== keystroke echo through a shell while another process holds broker.db's write lock"
echo "   ${hold} s, ${times} times, ${gap} s apart; a keystroke every ${interval} us for ${type_s} s ($count per figure); $rounds rounds"
echo "   $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
declare -A fig=() # [build index, figure] -> values, one per round
add() { fig[$1,$2]+="$3 "; }
for r in $(seq "$rounds"); do
  for i in "${!builds[@]}"; do
    b=${builds[$i]} l=${labels[$i]}
    if ! start_tether "$b" "$tmp/r$r-$i"; then stop_pids; continue; fi
    measure none nolock
    sleep 1 # the shell's end (recording closed, process reaped) is not part of the next figure
    measure lock lock
    sleep 1
    measure open open
    sleep 1
    measure lock+open lockopen
    sleep 1
    read -r a50 a99 amax <"$run/nolock.res"
    read -r b50 b99 bmax <"$run/lock.res"
    read -r d50 d99 dmax <"$run/open.res"
    read -r c50 c99 cmax <"$run/lockopen.res"
    o0=$(opens_of "$run/open.lock" total_ms)
    opens=$(opens_of "$run/lockopen.lock" total_ms)
    waits=$(sed -n 's/^lock n=[0-9]* wait_ms=\([0-9.]*\).*/\1/p' "$run/lock.lock" "$run/lockopen.lock" 2>/dev/null | sort -n | tail -1)
    stop_pids
    printf 'round %s %-8s p50/p99/max ms: no lock %s/%s/%s  lock %s/%s/%s  open %s/%s/%s  lock+open %s/%s/%s; open ms: %s, in a lock: %s; lock taken after <= %s ms\n' \
      "$r" "$l" "$a50" "$a99" "$amax" "$b50" "$b99" "$bmax" "$d50" "$d99" "$dmax" "$c50" "$c99" "$cmax" "${o0:--}" "${opens:--}" "${waits:--}"
    for f in a50 a99 amax b50 b99 bmax d50 d99 dmax c50 c99 cmax; do [[ ${!f:--} != - ]] && add "$i" "$f" "${!f}"; done
    for o in $o0; do add "$i" o0 "$o"; done
    for o in $opens; do add "$i" olock "$o"; done
    for o in $(opens_of "$run/lockopen.lock" connect_ms); do add "$i" olock_c "$o"; done
    for o in $(opens_of "$run/lockopen.lock" ticket_ms); do add "$i" olock_t "$o"; done
  done
done

# ---- the table -------------------------------------------------------------------------------
stat() { # values -> "median [min-max]" (all values) or "-"
  [[ -n ${1// /} ]] || { echo "-"; return; }
  tr ' ' '\n' <<<"$1" | grep . | sort -g | awk '{v[NR] = $1} END {
    m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
    if (NR == 1) printf "%.2f", m; else printf "%.2f [%.2f-%.2f]", m, v[1], v[NR] }'
}
echo
echo "median over the rounds [min-max], ms"
printf '%-50s' "figure"
for l in "${labels[@]}"; do printf ' %-28s' "$l"; done
echo
rowf() { # label figure
  printf '%-50s' "$1"
  local i
  for i in "${!builds[@]}"; do printf ' %-28s' "$(stat "${fig[$i,$2]:-}")"; done
  echo
}
rowf "no lock: keystroke echo p50" a50
rowf "         p99" a99
rowf "         max" amax
rowf "lock held: keystroke echo p50" b50
rowf "         p99" b99
rowf "         max" bmax
rowf "shells opened meanwhile, no lock: p50" d50
rowf "         p99" d99
rowf "         max" dmax
rowf "lock held, a shell opened in each: p50" c50
rowf "         p99" c99
rowf "         max" cmax
rowf "open a shell (connect..shell accepted), no lock" o0
rowf "open a shell, started as a lock is taken" olock
rowf "  of which connect..Welcome" olock_c
rowf "  of which Welcome..ticket created" olock_t
echo
echo "The lock: BEGIN IMMEDIATE on broker.db for ${hold} s (store_lock.py). Opening a shell writes"
echo "the ticket, the session and the channel's audit entry, so it waits for the lock either way."
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
