#!/usr/bin/env bash
# File transfer beside OpenSSH on this machine, loopback only: 1 GiB of random data and up to
# 1 GiB of a tar of /usr/share, pushed (console -> broker -> agent) and pulled with tether,
# and the same with `scp -c aes128-gcm@openssh.com`, the default `scp`, and `scp -C` for the
# compressible one, to a local sshd this script starts on a free port. Then keystroke echo
# through a remote shell while transfers run back to back: tether (a pull loop through the
# same agent link) beside ssh (an scp loop to the same sshd). Prints MB/s, the ratios and the
# goals of issue 9; asserts nothing. Bounded: the whole run stops itself after 15 minutes.
#
# usage: tests/bench/bench_files.sh [BUILD_DIR]     (default: builds the release preset)
# environment: BENCH_FILES_BYTES=1073741824 (size of each data set), BENCH_FILES_KEYS=600
#              (keystrokes per echo figure, typed 5 ms apart), BENCH_FILES_KEEP=1 (keep logs)
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
bytes=${BENCH_FILES_BYTES:-1073741824}
keys=${BENCH_FILES_KEYS:-600}
budget=900
if [[ -n ${1:-} ]]; then
  bin=$(cd "$1" && pwd)
else
  cmake --preset release >/dev/null
  cmake --build build/release -j2 --target tether-broker tether-agent tether tether-certs tether-keyrtt >/dev/null
  bin=$root/build/release
fi
for p in broker/tether-broker agent/tether-agent console/tether certs/tether-certs tests/bench/tether-keyrtt; do
  [[ -x $bin/$p ]] || { echo "bench_files: $bin/$p is not built" >&2; exit 1; }
done
# shellcheck source=tests/bench/sshd.sh
source "$root/tests/bench/sshd.sh"
# shellcheck source=tests/bench/tether.sh
source "$root/tests/bench/tether.sh"

tmp=$(mktemp -d /tmp/tether-bench-files.XXXXXX)
pids=()
dog_pid=''
cleanup() {
  set +e
  [[ -n ${SSHD_PID:-} ]] && pids+=("$SSHD_PID")
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
  [[ -n $dog_pid ]] && kill "$dog_pid" 2>/dev/null
  wait 2>/dev/null
  if [[ -n ${BENCH_FILES_KEEP:-} ]]; then echo "bench_files: logs kept in $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'echo "bench_files: interrupted" >&2; exit 124' INT TERM
(
  sleep "$budget" & s=$!
  trap 'kill $s 2>/dev/null; exit 0' TERM
  wait $s && { echo "bench_files: time limit of ${budget}s reached" >&2; kill -TERM $$; }
) &
dog_pid=$!

now() { date +%s.%N; }
mbs() { awk -v b="$1" -v a="$2" -v z="$3" 'BEGIN {printf "%.1f", b / 1e6 / (z - a)}'; }

# ---- data --------------------------------------------------------------------------------
mkdir -p "$tmp/local"
head -c "$bytes" /dev/urandom >"$tmp/local/random.bin"
tar -C / -cf - usr/share 2>/dev/null | head -c "$bytes" >"$tmp/local/share.tar" || true
share_bytes=$(stat -c %s "$tmp/local/share.tar")

# ---- tether: broker, agent (unattended, files under $tmp/dev), a technician and a ticket --
tether_start "$bin" "$tmp"
pids+=("${TT_PIDS[@]}")
tether=("${TT_TETHER[@]}")
ticket=$TT_TICKET

# ---- sshd -------------------------------------------------------------------------------
ssh_ok=1
sshd_start "$tmp/ssh" "$tmp/sshd.log" || { ssh_ok=0; echo "bench_files: ssh side not measured: $SSHD_ERR"; }

# One transfer, timed; prints MB/s or "failed".
declare -A R
run() { # key bytes cmd...
  local key=$1 n=$2 t0 t1
  shift 2
  t0=$(now)
  if "$@" >"$tmp/out.$key" 2>"$tmp/err.$key"; then
    t1=$(now)
    R[$key]=$(mbs "$n" "$t0" "$t1")
  else
    R[$key]=failed
    echo "bench_files: $key failed: $(tail -2 "$tmp/err.$key" | tr '\n' ' ')"
  fi
}

for set in random share; do
  f=$set.bin
  [[ $set == share ]] && f=share.tar
  n=$(stat -c %s "$tmp/local/$f")
  rm -f "$tmp/dev/$f" "$tmp/back/$f"
  run "$set.tether.push" "$n" "${tether[@]}" push bench-dev --ticket "$ticket" --force "$tmp/local/$f" "$tmp/dev/$f"
  run "$set.tether.pull" "$n" "${tether[@]}" pull bench-dev --ticket "$ticket" --force "$tmp/dev/$f" "$tmp/back/$f"
  if [[ -f $tmp/back/$f ]] && ! cmp -s "$tmp/local/$f" "$tmp/back/$f"; then
    echo "bench_files: $f came back different!"
  fi
  if ((ssh_ok)); then
    scp_base=(scp -q -F "$SSH_CONFIG")
    run "$set.gcm.push" "$n" "${scp_base[@]}" -c aes128-gcm@openssh.com "$tmp/local/$f" "bench:$tmp/dev/$f.scp"
    run "$set.gcm.pull" "$n" "${scp_base[@]}" -c aes128-gcm@openssh.com "bench:$tmp/dev/$f.scp" "$tmp/back/$f.scp"
    run "$set.scp.push" "$n" "${scp_base[@]}" "$tmp/local/$f" "bench:$tmp/dev/$f.scp"
    run "$set.scp.pull" "$n" "${scp_base[@]}" "bench:$tmp/dev/$f.scp" "$tmp/back/$f.scp"
    if [[ $set == share ]]; then
      run "$set.scpC.push" "$n" "${scp_base[@]}" -C "$tmp/local/$f" "bench:$tmp/dev/$f.scp"
      run "$set.scpC.pull" "$n" "${scp_base[@]}" -C "bench:$tmp/dev/$f.scp" "$tmp/back/$f.scp"
    fi
    rm -f "$tmp/dev/$f.scp" "$tmp/back/$f.scp"
  fi
done

# ---- keystrokes while transfers run ------------------------------------------------------
loop_until() { # stopfile cmd...: run cmd back to back until stopfile exists
  local stop=$1
  shift
  while [[ ! -e $stop ]]; do "$@" >/dev/null 2>&1 || sleep 0.1; done
}
keyrtt=$bin/tests/bench/tether-keyrtt
rm -f "$tmp/stop"
loop_until "$tmp/stop" "${tether[@]}" pull bench-dev --ticket "$ticket" --force "$tmp/dev/random.bin" "$tmp/back/loop.bin" &
lp=$!
pids+=($lp)
sleep 1 # the first pull is under way (its session granted, bytes flowing)
tk=$("$keyrtt" tether "${TT_KEYRTT[@]}" --count "$keys" --gap-us 5000 --timeout 300 2>"$tmp/keyrtt-tether.err" |
     grep phase=idle || true)
touch "$tmp/stop"
wait "$lp" 2>/dev/null || true
sk=''
if ((ssh_ok)); then
  rm -f "$tmp/stop"
  loop_until "$tmp/stop" scp -q -F "$SSH_CONFIG" "bench:$tmp/dev/random.bin" "$tmp/back/loop.scp" &
  lp=$!
  pids+=($lp)
  sleep 1
  sk=$("$keyrtt" ssh --ssh-config "$SSH_CONFIG" --ssh-host bench --count "$keys" --gap-us 5000 --timeout 300 \
       2>"$tmp/keyrtt-ssh.err" | grep phase=idle || true)
  touch "$tmp/stop"
  wait "$lp" 2>/dev/null || true
fi

# ---- figures ------------------------------------------------------------------------------
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (a + 0 > 0 && b + 0 > 0) printf "%.2f", a / b; else print "-"}'; }
echo
echo "== file transfer, $(nproc) cores, $(uname -r), $(ssh -V 2>&1 | cut -d, -f1), $(openssl version | cut -d' ' -f1-2)"
echo "   random: $((bytes / 1048576)) MiB of /dev/urandom; share: $((share_bytes / 1048576)) MiB of a tar of /usr/share"
printf '%-8s %-5s %12s %12s %12s %12s\n' "data" "way" "tether MB/s" "scp gcm" "scp" "scp -C"
for set in random share; do
  for way in push pull; do
    printf '%-8s %-5s %12s %12s %12s %12s\n' "$set" "$way" "${R[$set.tether.$way]:--}" "${R[$set.gcm.$way]:--}" \
      "${R[$set.scp.$way]:--}" "${R[$set.scpC.$way]:--}"
  done
done
echo
for way in push pull; do
  echo "random $way: tether / scp aes128-gcm = $(ratio "${R[random.tether.$way]:-}" "${R[random.gcm.$way]:-}")  (goal >= 1)"
  echo "share  $way: tether / scp -C = $(ratio "${R[share.tether.$way]:-}" "${R[share.scpC.$way]:-}")  (goal >= 8);" \
       "tether / scp = $(ratio "${R[share.tether.$way]:-}" "${R[share.scp.$way]:-}")  (goal >= 1.5)"
done
field() { sed -n "s/.*[[:space:]]$1=\([^[:space:]]*\).*/\1/p" <<<" $2"; }
echo
echo "keystroke echo p50 / p99 while transfers run ($keys keystrokes, 5 ms apart):"
echo "  tether shell during tether pulls: $(field p50_us "$tk") / $(field p99_us "$tk") us"
echo "  ssh during scp:                   $(field p50_us "$sk") / $(field p99_us "$sk") us"
echo "  tether p99 / ssh p99 = $(ratio "$(field p99_us "$tk")" "$(field p99_us "$sk")")  (goal <= 1)"
