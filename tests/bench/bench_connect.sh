#!/usr/bin/env bash
# Connects per second and broker CPU per handshake, several builds side by side (e.g. before
# and after the store's group commit): scripts/bench_fleet.sh with N agents, once per build
# per round, builds interleaved within each round so that a busy moment of the machine does
# not fall on one build only. Prints the median of each figure over the rounds with its range.
# Asserts nothing; loopback only; every run is bounded by bench_fleet.sh's own time limit.
#
# usage: tests/bench/bench_connect.sh [-n N] [-r ROUNDS] [[LABEL=]BUILD_DIR...]
#   N          agents (default: the largest this host's RLIMIT_NOFILE allows, at most 50000;
#              bench_fleet.sh raises the limit where it can)
#   ROUNDS     runs per build (default 3)
#   BUILD_DIR  a build with tether-broker and tether-certs (default: build/release of this
#              tree), named LABEL in the table (default: the commit it was built from). The
#              loadgen always comes from this tree's build/release (built if needed), so every
#              broker meets the same client.
#   e.g.       tests/bench/bench_connect.sh -n 19800 old=/tmp/old/build/release new=build/release
# environment:
#   BENCH_CONNECT_INFLIGHT=200  loadgen handshakes in flight. On a small shared machine the
#                               loadgen's default (2000) makes handshakes outlive its 20 s
#                               deadline, and then its backoff, not the broker, sets the pace.
#   BENCH_CONNECT_KEEP=1        keep every run's full output
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
n='' rounds=3
while getopts 'n:r:' o; do
  case $o in
  n) n=$OPTARG ;;
  r) rounds=$OPTARG ;;
  *) echo "usage: bench_connect.sh [-n N] [-r ROUNDS] [[LABEL=]BUILD_DIR...]" >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
if [[ -z $n ]]; then
  hard=$(ulimit -Hn)
  [[ $hard == unlimited ]] && hard=1048576
  # Root can raise the hard limit to fs.nr_open (bench_fleet.sh does); elsewhere it is fixed.
  if [[ $(id -u) -eq 0 ]] && (ulimit -Hn "$(cat /proc/sys/fs/nr_open)") 2>/dev/null; then hard=$(cat /proc/sys/fs/nr_open); fi
  n=$((hard - 200))
  ((n > 50000)) && n=50000
fi
[[ $n =~ ^[0-9]+$ && $n -ge 1 && $rounds =~ ^[0-9]+$ && $rounds -ge 1 ]] ||
  { echo "bench_connect: N and ROUNDS must be positive numbers" >&2; exit 2; }

cmake --preset release >/dev/null
cmake --build build/release -j2 --target tether-loadgen tether-broker tether-certs >/dev/null
loadgen=$root/build/release/tests/bench/tether-loadgen
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
  builds+=("$d")
  labels+=("${l:-$(label_of "$d")}")
done

tmp=$(mktemp -d /tmp/tether-connect.XXXXXX)
child=''
cleanup() {
  set +e
  # bench_fleet.sh stops what it started when it is told to stop.
  [[ -n $child ]] && kill -TERM "$child" 2>/dev/null && wait "$child" 2>/dev/null
  if [[ -n ${BENCH_CONNECT_KEEP:-} ]]; then echo "bench_connect: output kept in $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'echo "bench_connect: interrupted" >&2; exit 124' INT TERM

field() { sed -n "s/.*[[:space:]]$1=\([^[:space:]]*\).*/\1/p" <<<" $2"; }
figures=(hs_per_s cpu_hs_ms loop_hs_ms tail_s failed rehs_per_s cpu_rhs_ms reloop_hs_ms retail_s reconnect_s refailed)
declare -A fig=() # [build index, figure] -> values, one per round

echo "== connects: N=$n agents, $rounds rounds, ${BENCH_CONNECT_INFLIGHT:-200} handshakes in flight, one loadgen ($loadgen)"
echo "   $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f", $2/1048576}' /proc/meminfo) GiB, RLIMIT_NOFILE $(ulimit -Hn), load average $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq "$rounds"); do
  for i in "${!builds[@]}"; do
    out=$tmp/r$r-$i.out
    BENCH_FLEET_PKI=$tmp/pki BENCH_FLEET_IDLE=0 BENCH_FLEET_LOADGEN=$loadgen \
      BENCH_FLEET_INFLIGHT=${BENCH_CONNECT_INFLIGHT:-200} \
      bash scripts/bench_fleet.sh "$n" "${builds[$i]}" >"$out" 2>&1 &
    child=$!
    wait "$child" || true
    child=''
    line=$(grep '^fleet-figures ' "$out" || true)
    if [[ -z $line ]]; then
      echo "round $r ${labels[$i]}: no figures; the end of its output:"
      tail -5 "$out" | sed 's/^/  /'
      continue
    fi
    echo "round $r ${labels[$i]}: ${line#fleet-figures } (load $(cut -d' ' -f1 /proc/loadavg))"
    for f in "${figures[@]}"; do
      v=$(field "$f" "$line")
      [[ $v =~ ^[0-9.]+$ ]] && fig[$i,$f]+="$v "
    done
  done
done

stat() { # values -> "median [min-max]" or "-"
  [[ -n ${1// /} ]] || { echo "-"; return; }
  tr ' ' '\n' <<<"$1" | grep . | sort -g | awk -v p="$2" '{v[NR] = $1} END {
    m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
    f = "%." p "f"
    if (NR == 1) printf f, m; else printf f " [" f "-" f "]", m, v[1], v[NR] }'
}
echo
echo "median over the rounds [min-max]"
printf '%-48s' "figure, N=$n"
for l in "${labels[@]}"; do printf ' %-24s' "$l"; done
echo
rowf() { # label figure decimals
  printf '%-48s' "$1"
  local i
  for i in "${!builds[@]}"; do printf ' %-24s' "$(stat "${fig[$i,$2]:-}" "$3")"; done
  echo
}
rowf "first connect of N: handshakes/s" hs_per_s 0
rowf "  broker CPU per handshake, ms" cpu_hs_ms 2
rowf "    of which its event loop thread, ms" loop_hs_ms 2
rowf "  broker busy after the last Welcome, s" tail_s 1
rowf "  handshakes failed (loadgen deadline)" failed 0
rowf "reconnect after SIGKILL (resumed): handshakes/s" rehs_per_s 0
rowf "  broker CPU per handshake, ms" cpu_rhs_ms 2
rowf "    of which its event loop thread, ms" reloop_hs_ms 2
rowf "  broker busy after the last Welcome, s" retail_s 1
rowf "  SIGKILL -> all N welcomed, s" reconnect_s 1
rowf "  handshakes failed (loadgen deadline)" refailed 0
echo
echo "Broker CPU: utime+stime of all its threads (/proc/PID/stat) from the loadgen's start until"
echo "the broker is quiet again after the last Welcome, divided by the Welcomes; the event loop"
echo "thread's share (/proc/PID/task/PID/stat) is what bounds the handshakes one core can take."
echo "Handshakes/s is the loadgen's, which shares the machine: on a small machine the CPU"
echo "figures are the steadier."
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
