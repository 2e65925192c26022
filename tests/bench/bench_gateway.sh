#!/usr/bin/env bash
# The SSH gateway beside OpenSSH on this machine, loopback only. Three figures, side by side:
#  1. keystroke echo round trip p50/p99: `ssh -tt` through tether-sshd to the device's shell
#     (ssh -> tether-sshd -> broker -> agent -> pty -> back: one SSH hop and two TLS hops)
#     beside `ssh -tt` straight to a local OpenSSH server (one SSH hop), with `tether shell`
#     (console -> broker -> agent, tether-keyrtt's tether mode) as a third row for what the
#     gateway adds. The driver is tether-keyrtt in both ssh rows (tests/bench/tools/keyrtt.c:
#     one byte typed, the time until the pty's echo of it is back, one at a time).
#  2. connections per second: N back-to-back `ssh HOST true` through the gateway beside N to
#     the local OpenSSH server, each a new TCP connection, key exchange, ed25519 public key
#     login and exec (ControlMaster off, ed25519 client and host keys on both sides), after
#     one warm-up connection each that is not counted (through the gateway it also takes the
#     device's consent: unattended here, then the live grant is reused). OpenSSH is measured
#     with the key exchange the gateway negotiates (curve25519-sha256) and with its default
#     (sntrup761x25519-sha512, which libssh does not offer).
#  3. sftp throughput: `sftp -b` get, then put, of one file of random data (BENCH_GW_SFTP_BYTES,
#     made once) through the gateway to the device's files beside the same to the local OpenSSH
#     server, in MB/s (10^6 bytes) over the wall time of the whole `sftp -b` run as the user
#     sees it: connection, login and, through the gateway, the file pulled whole from the
#     device into the gateway's spool before its first byte is served (get) and pushed whole
#     to the device on close (put). One warm-up `sftp -b` (ls) per side first, not counted
#     (through the gateway it also takes the device's consent to files). OpenSSH is measured
#     with the cipher the gateway negotiates, and with its default too when that differs.
#     The sha256 of every file that arrived is checked against the source's.
# Prints figures; asserts only that what sftp moved arrived intact (a sha256 that differs
# from the source's fails the run, exit 1; a transfer that fails is reported as not
# measured). Everything it starts is stopped at the end (trap), readiness is awaited on log
# lines, every wait is bounded, and the whole run stops itself after 10 minutes, more for
# more than 1 GiB of sftp data (plus at most the step under way: 150 s, or for one sftp
# transfer 120 s plus 1 s per 10 MB).
#
# usage: tests/bench/bench_gateway.sh [BUILD_DIR] [N]
#   BUILD_DIR  a build with tether-broker, tether-agent, tether, tether-certs, tether-sshd and
#              tether-keyrtt (default: builds the release preset into build/release)
#   N          connections per side for the connection rate (default 50)
# environment:
#   BENCH_GW_KEYS=5000     keystrokes per echo figure
#   BENCH_GW_SHELL=1       also the `tether shell` row (0 = skip)
#   BENCH_GW_SFTP_BYTES=1G size of the sftp file: bytes, or with K/M/G/T (powers of 1024);
#                          0 = skip the sftp figures
#   BENCH_GW_SSH_RC=1      leave the OpenSSH sessions as sshd makes them: bash reads ~/.bashrc
#                          for `ssh HOST true` there (not through the gateway); by default
#                          they get SHLVL=1 so that neither side runs the user's rc files
#   BENCH_GW_KEEP=1        keep the temp dir with every log
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
conns=${2:-50}
keys=${BENCH_GW_KEYS:-5000}
shell_row=${BENCH_GW_SHELL:-1}
sftp_bytes=$(numfmt --from=iec -- "${BENCH_GW_SFTP_BYTES:-1G}" 2>/dev/null || true)
budget=600 # plus, beyond 1 GiB of sftp data, 1 s per 2.5 MB (four transfers at 10 MB/s)
[[ $conns =~ ^[0-9]+$ && $conns -ge 1 && $keys =~ ^[0-9]+$ && $keys -ge 1 && $sftp_bytes =~ ^[0-9]+$ ]] ||
  { echo "usage: bench_gateway.sh [BUILD_DIR] [N]   (BENCH_GW_KEYS >= 1, BENCH_GW_SFTP_BYTES like 1G or 0)" >&2; exit 2; }
((sftp_bytes <= 1073741824)) || budget=$((budget + (sftp_bytes - 1073741824) / 2500000))

if [[ -n ${1:-} ]]; then
  bin=$(cd "$1" && pwd)
else
  cmake --preset release >/dev/null
  cmake --build build/release -j2 --target tether-broker tether-agent tether tether-certs tether-sshd \
    tether-keyrtt >/dev/null
  bin=$root/build/release
fi
for p in broker/tether-broker agent/tether-agent console/tether certs/tether-certs console/sshd/tether-sshd \
         tests/bench/tether-keyrtt; do
  [[ -x $bin/$p ]] || { echo "bench_gateway: $bin/$p is not built" >&2; exit 1; }
done
[[ -x /usr/sbin/sshd ]] || { echo "bench_gateway: /usr/sbin/sshd (OpenSSH server) is not installed" >&2; exit 1; }
((sftp_bytes == 0)) || command -v sftp >/dev/null || { echo "bench_gateway: sftp (OpenSSH client) is not installed" >&2; exit 1; }
# shellcheck source=tests/bench/sshd.sh
source "$root/tests/bench/sshd.sh"
# shellcheck source=tests/bench/tether.sh
source "$root/tests/bench/tether.sh"

# Short paths: ssh's ControlPath is a unix socket (108 bytes at most).
tmp=$(mktemp -d "${TMPDIR:-/tmp}/tether-bgw.XXXXXX")
# The gateway's sftp spool, apart: started as root it becomes nobody, who must reach it (the
# temp dir is 0700), so its parent is a 0755 directory in /tmp.
spool_top=$(mktemp -d /tmp/tether-bgw-spool.XXXXXX)
chmod 755 "$spool_top"
pids=()
gw_pid=''
dog_pid=''
cleanup() {
  set +e
  [[ -n ${SSHD_PID:-} ]] && pids+=("$SSHD_PID")
  [[ -n $gw_pid ]] && pids=("$gw_pid" "${pids[@]}") # the gateway before the broker it talks to
  local p
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for _ in $(seq 50); do
    local alive=0
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    ((alive)) || break
    sleep 0.1
  done
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
  [[ -n $dog_pid ]] && kill "$dog_pid" 2>/dev/null
  wait 2>/dev/null
  rm -rf "$spool_top"
  if [[ -n ${BENCH_GW_KEEP:-} ]]; then
    rm -f "$tmp"/sftp/* "${TT_DEV:-$tmp/dev}"/sftp-* # the data, not the logs
    echo "bench_gateway: logs kept in $tmp"
  else rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'echo "bench_gateway: interrupted" >&2; exit 124' INT TERM
(
  sleep "$budget" & s=$!
  trap 'kill $s 2>/dev/null; exit 0' TERM
  wait $s && { echo "bench_gateway: time limit of ${budget}s reached" >&2; kill -TERM $$; }
) &
dog_pid=$!

# wait_log FILE REGEX PID WHAT [AFTER_LINES]: until a line matching REGEX appears in FILE after
# its first AFTER_LINES lines (20 s at most, and not once PID has exited).
wait_log() {
  local f=$1 re=$2 pid=$3 what=$4 after=${5:-0}
  for _ in $(seq 200); do
    tail -n +$((after + 1)) "$f" 2>/dev/null | grep -E "$re" >/dev/null && return 0 # (no -q: pipefail, SIGPIPE)
    kill -0 "$pid" 2>/dev/null || { echo "bench_gateway: $what exited: $(tail -3 "$f" | tr '\n' ' ')" >&2; return 1; }
    sleep 0.1
  done
  echo "bench_gateway: no '$re' in $what's log after 20 s: $(tail -3 "$f" | tr '\n' ' ')" >&2
  return 1
}
lines_of() { wc -l <"$1" 2>/dev/null || echo 0; }
keyrtt=$bin/tests/bench/tether-keyrtt

# ---- tether: broker, unattended agent (shells as this user), a technician and a ticket -------
tether_start "$bin" "$tmp"
pids+=("${TT_PIDS[@]}")
grep -q 'msg="connected"' "$tmp/agent.log" || { echo "bench_gateway: the agent did not connect: $(tail -3 "$tmp/agent.log")" >&2; exit 1; }
tether=("${TT_TETHER[@]}")
[[ $TT_TICKET =~ ^T-[0-9]+$ ]] || { echo "bench_gateway: no ticket: '$TT_TICKET'" >&2; exit 1; }
gw_user="bench-dev+$TT_TICKET"

# ---- the gateway: its certificate, host key, the technician's ed25519 key registered --------
"$bin/certs/tether-certs" issue gateway gw1 --dir "$tmp/pki" >/dev/null
mkdir -p "$tmp/gw"
chmod 700 "$tmp/gw"
"$bin/console/sshd/tether-sshd" --listen 127.0.0.1:0 --broker "127.0.0.1:$TT_PORT" --ca "$tmp/pki/ca.pem" \
  --cert "$tmp/pki/gw1.pem" --key "$tmp/pki/gw1.key" --host-key "$tmp/gw/host_key" \
  --spool-dir "$spool_top/spool" --spool-max "$((sftp_bytes > 4294967296 ? sftp_bytes : 4294967296))" 2>"$tmp/gw.log" &
gw_pid=$!
wait_log "$tmp/gw.log" 'msg="listening" listen=127\.0\.0\.1:[0-9]+' "$gw_pid" tether-sshd
gw_port=$(sed -n 's/.*msg="listening" listen=127\.0\.0\.1:\([0-9]*\).*/\1/p' "$tmp/gw.log" | head -1)
wait_log "$tmp/gw.log" 'msg="ready"' "$gw_pid" tether-sshd
ssh-keygen -q -t ed25519 -N '' -C bench-tech@bench -f "$tmp/gw/client_key"
mark=$(lines_of "$tmp/gw.log")
"${tether[@]}" ssh-key add "$tmp/gw/client_key.pub" >"$tmp/ssh-key-add.out" 2>&1 ||
  { echo "bench_gateway: tether ssh-key add failed: $(cat "$tmp/ssh-key-add.out")" >&2; exit 1; }
wait_log "$tmp/gw.log" 'msg="keys changed"' "$gw_pid" tether-sshd "$mark"
# The host key the broker hands out (tether ssh-config), as a technician's known_hosts has it.
"${tether[@]}" ssh-config --json >"$tmp/ssh-config.json"
gw_host_key=$(python3 -c '
import json, sys
for ln in open(sys.argv[1]):
    g = json.loads(ln)
    if g["gateway"] == "gw1" and int(g["port"]) == int(sys.argv[2]):
        print(g["host_key"])
        break' "$tmp/ssh-config.json" "$gw_port")
[[ -n $gw_host_key ]] || { echo "bench_gateway: gw1 is not in tether ssh-config: $(cat "$tmp/ssh-config.json")" >&2; exit 1; }
echo "[127.0.0.1]:$gw_port $gw_host_key" >"$tmp/gw/known_hosts"
# The same client settings as tests/bench/sshd.sh writes for the OpenSSH side.
cat >"$tmp/gw/ssh_config" <<EOF
Host gw
  HostName 127.0.0.1
  Port $gw_port
  User $gw_user
  IdentityFile $tmp/gw/client_key
  IdentitiesOnly yes
  UserKnownHostsFile $tmp/gw/known_hosts
  GlobalKnownHostsFile /dev/null
  StrictHostKeyChecking yes
  BatchMode yes
  ControlPath $tmp/gw/cm
  EscapeChar none
  Compression no
  ForwardAgent no
  ForwardX11 no
  ConnectTimeout 20
  LogLevel ERROR
EOF

# ---- OpenSSH: a local sshd on a free loopback port (tests/bench/sshd.sh) ----------------------
# sshd sets SSH_CLIENT, and bash then reads ~/.bashrc even for `ssh HOST true` (Debian builds
# it with SSH_SOURCE_BASHRC) unless it is a nested shell; the agent gives its shells no
# SSH_CLIENT, so through the gateway it does not. That is the user's rc files, not SSH (a
# .bashrc that runs `pyenv init` costs a second a connection), so sessions of this sshd get
# SHLVL=1: bash is then a nested shell and skips it too. Set in sshd.sh's config and picked up
# on SIGHUP (sshd re-executes itself, and writes its pid file once it listens again).
ssh_ok=1
ssh_rc=${BENCH_GW_SSH_RC:-0}
sshd_same_rc() {
  local d=$tmp/ssh
  echo "SetEnv SHLVL=1" >>"$d/sshd_config"
  /usr/sbin/sshd -t -f "$d/sshd_config" 2>>"$tmp/sshd.log" || { SSHD_ERR="SetEnv refused: $(tail -2 "$tmp/sshd.log")"; return 1; }
  rm -f "$d/sshd.pid"
  kill -HUP "$SSHD_PID"
  for _ in $(seq 150); do
    [[ -s $d/sshd.pid ]] && return 0
    kill -0 "$SSHD_PID" 2>/dev/null || break
    sleep 0.1
  done
  SSHD_ERR="sshd did not come back after SIGHUP: $(tail -3 "$tmp/sshd.log" | tr '\n' ' ')"
  return 1
}
if ! sshd_start "$tmp/ssh" "$tmp/sshd.log" || { [[ $ssh_rc != 1 ]] && ! sshd_same_rc; }; then
  ssh_ok=0
  echo "bench_gateway: OpenSSH side not measured: $SSHD_ERR"
fi

echo "== the SSH gateway beside OpenSSH: $keys keystrokes per echo figure, $conns connections per side"
echo "   $(nproc) cores, $(uname -r), $(ssh -V 2>&1 | cut -d, -f1), $("$bin/console/sshd/tether-sshd" --version 2>/dev/null | head -1)"
load0=$(cut -d' ' -f1 /proc/loadavg)

# One warm-up `ssh -v HOST true` per side (not counted): its exit status and what was negotiated.
declare -A NEG WARM KEX CIPHER
warm() { # label config host
  local out rc=0
  out=$(timeout 60 ssh -v -F "$2" -o ControlMaster=no -o ControlPath=none "$3" true 2>&1) || rc=$?
  WARM[$1]=$rc
  KEX[$1]=$(awk '/kex: algorithm:/ {print $NF; exit}' <<<"$out")
  CIPHER[$1]=$(awk '/kex: server->client cipher:/ {print $5; exit}' <<<"$out")
  NEG[$1]=$(awk '/kex: algorithm:/ {k=$NF} /kex: server->client cipher:/ {c=$5} /Server host key:/ {h=$(NF-1)}
                 END {printf "kex %s, cipher %s, host key %s", k, c, h}' <<<"$out")
  ((rc == 0)) || echo "bench_gateway: warm-up ssh to $1 failed ($rc): $(grep -v '^debug' <<<"$out" | tail -3 | tr '\n' ' ')"
}
warm gateway "$tmp/gw/ssh_config" gw
((ssh_ok)) && warm openssh "$SSH_CONFIG" bench

# ---- 1. keystroke echo ---------------------------------------------------------------------
declare -A RTT ERR
echo_run() { # label keyrtt-args...
  local label=$1 out
  shift
  if out=$(timeout 150 "$keyrtt" "$@" --count "$keys" --timeout 120 2>"$tmp/keyrtt-$label.err"); then
    RTT[$label]=$(grep 'phase=idle' <<<"$out" || true)
  else
    ERR[$label]="keyrtt failed: $(tail -3 "$tmp/keyrtt-$label.err" | tr '\n' ' ')"
  fi
}
[[ ${WARM[gateway]} == 0 ]] && echo_run gateway ssh --ssh-config "$tmp/gw/ssh_config" --ssh-host gw
((ssh_ok)) && [[ ${WARM[openssh]} == 0 ]] && echo_run openssh ssh --ssh-config "$SSH_CONFIG" --ssh-host bench
[[ $shell_row == 1 ]] && echo_run shell tether "${TT_KEYRTT[@]}"

# ---- 2. connections per second ----------------------------------------------------------------
declare -A CPS
conn_run() { # label config host [ssh options]: N back-to-back `ssh HOST true`, each timed
  local label=$1 cfg=$2 host=$3 i t0 t1 t_all fail=0 rc
  shift 3
  : >"$tmp/conn-$label.us"
  t_all=$EPOCHREALTIME
  for ((i = 0; i < conns; i++)); do
    t0=$EPOCHREALTIME
    rc=0
    timeout 30 ssh -F "$cfg" -o ControlMaster=no -o ControlPath=none "$@" "$host" true </dev/null >/dev/null \
      2>>"$tmp/conn-$label.err" || rc=$?
    t1=$EPOCHREALTIME
    if ((rc == 0)); then
      echo "$((${t1/./} - ${t0/./}))" >>"$tmp/conn-$label.us"
    else
      fail=$((fail + 1))
    fi
  done
  t1=$EPOCHREALTIME
  CPS[$label]=$(sort -n "$tmp/conn-$label.us" | awk -v n="$conns" -v f="$fail" -v us=$((${t1/./} - ${t_all/./})) '
    {v[NR] = $1}
    END {
      if (NR == 0) {printf "failed=%d", f; exit}
      p50 = v[int((NR - 1) * 0.50) + 1]; p99 = v[int((NR - 1) * 0.99) + 1]
      printf "rate=%.1f p50_ms=%.1f p99_ms=%.1f max_ms=%.1f ok=%d failed=%d", n / (us / 1e6), p50 / 1e3, p99 / 1e3, v[NR] / 1e3, NR, f
    }')
  ((fail == 0)) || ERR[conn-$label]="$fail of $conns failed: $(tail -2 "$tmp/conn-$label.err" | tr '\n' ' ')"
}
[[ ${WARM[gateway]} == 0 ]] && conn_run gateway "$tmp/gw/ssh_config" gw
# OpenSSH twice: with the key exchange the gateway negotiated (libssh offers no sntrup761),
# then with its own default.
gw_kex=${KEX[gateway]:-curve25519-sha256}
if ((ssh_ok)) && [[ ${WARM[openssh]} == 0 ]]; then
  conn_run openssh-kex "$SSH_CONFIG" bench -o "KexAlgorithms=$gw_kex"
  conn_run openssh "$SSH_CONFIG" bench
fi

# ---- 3. sftp get and put of one file -------------------------------------------------------------
# The source is in the device's files (the agent's file root TT_DEV): what a get fetches, and
# the local file a put sends, on both sides. What arrives: gets in $tmp/sftp, puts in TT_DEV.
declare -A SFTP SUMOK LEG
sum_of() { timeout 120 sha256sum "$1" | cut -d' ' -f1; }
sftp_warm() { # label config host [ssh options]: one `sftp -b` that lists the device's files
  local label=$1 cfg=$2 host=$3 rc=0
  shift 3
  printf 'ls "%s"\n' "$TT_DEV" >"$tmp/sftp/warm.batch"
  timeout 60 sftp -F "$cfg" -o ControlMaster=no -o ControlPath=none "$@" -b "$tmp/sftp/warm.batch" "$host" \
    </dev/null >/dev/null 2>"$tmp/sftp-$label-warm.err" || rc=$?
  ((rc == 0)) || ERR[sftp-$label]="warm-up sftp failed ($rc): $(tail -2 "$tmp/sftp-$label-warm.err" | tr '\n' ' ')"
  return "$rc"
}
sftp_run() { # label way(get|put) config host [ssh options]: one timed `sftp -b`, then its sha256
  local label=$1 way=$2 cfg=$3 host=$4 dst t0 t1 rc=0 sum mark
  shift 4
  if [[ $way == get ]]; then dst=$tmp/sftp/got-$label.bin; else dst=$TT_DEV/sftp-put-$label.bin; fi
  rm -f "$dst"
  printf '%s "%s" "%s"\n' "$way" "$sftp_src" "$dst" >"$tmp/sftp/$label-$way.batch" # get REMOTE LOCAL, put LOCAL REMOTE
  timeout 60 sync || true # the last file's writeback is not the next one's cost
  mark=$(lines_of "$tmp/agent.log")
  t0=$EPOCHREALTIME
  timeout "$sftp_to" sftp -F "$cfg" -o ControlMaster=no -o ControlPath=none "$@" -b "$tmp/sftp/$label-$way.batch" \
    "$host" </dev/null >/dev/null 2>"$tmp/sftp-$label-$way.err" || rc=$?
  t1=$EPOCHREALTIME
  if ((rc != 0)); then
    SFTP[$label-$way]=failed
    ERR[sftp-$label-$way]="sftp $way failed ($rc$( ((rc == 124)) && echo ", after ${sftp_to}s")): $(tail -2 "$tmp/sftp-$label-$way.err" | tr '\n' ' ')"
  else
    SFTP[$label-$way]=$(awk -v b="$sftp_bytes" -v us=$((${t1/./} - ${t0/./})) 'BEGIN {printf "%.1f %.1f", b / us, us / 1e6}')
    # Through the gateway, the device's leg (broker <-> agent) as the agent logs it.
    [[ $label == gateway ]] && LEG[$way]=$(tail -n +$((mark + 1)) "$tmp/agent.log" |
      awk '/msg="file moved"/ && / dir=(pull|push) / {for (i = 1; i <= NF; i++) if ($i ~ /^seconds=/) s = substr($i, 9)}
           END {print s}')
    sum=$(sum_of "$dst" || true)
    if [[ $sum == "$sftp_sum" ]]; then SUMOK[$label]=${SUMOK[$label]:-sha256 ok}
    else
      SUMOK[$label]="sha256 MISMATCH"
      sum_bad+=("sftp $way, $label: what arrived ($dst) has sha256 ${sum:-?}, the source $sftp_sum")
    fi
  fi
  [[ -n ${BENCH_GW_KEEP:-} && ${SUMOK[$label]:-} == *MISMATCH ]] || rm -f "$dst"
}
sum_bad=()
if ((sftp_bytes > 0)); then
  mkdir -p "$tmp/sftp"
  sftp_src=$TT_DEV/sftp-src.bin
  sftp_to=$((120 + sftp_bytes / 10000000)) # seconds for one transfer: 120 plus 1 per 10 MB
  timeout 300 head -c "$sftp_bytes" /dev/urandom >"$sftp_src" ||
    { echo "bench_gateway: cannot make $sftp_bytes bytes of random data in $sftp_src" >&2; exit 1; }
  sftp_sum=$(sum_of "$sftp_src")
  [[ $sftp_sum =~ ^[0-9a-f]{64}$ ]] || { echo "bench_gateway: no sha256 of $sftp_src" >&2; exit 1; }
  # OpenSSH with the gateway's cipher, and with its own default if that differs.
  gw_cipher=${CIPHER[gateway]:-}
  ossh_rows=()
  if ((ssh_ok)) && [[ ${WARM[openssh]} == 0 ]]; then
    if [[ -n $gw_cipher ]]; then ossh_rows+=(openssh-cipher); fi
    [[ -n $gw_cipher && ${CIPHER[openssh]:-} == "$gw_cipher" ]] || ossh_rows+=(openssh)
  fi
  sftp_side() { # label way
    case $1 in
      gateway) sftp_run gateway "$2" "$tmp/gw/ssh_config" gw ;;
      openssh-cipher) sftp_run openssh-cipher "$2" "$SSH_CONFIG" bench -o "Ciphers=$gw_cipher" ;;
      openssh) sftp_run openssh "$2" "$SSH_CONFIG" bench ;;
    esac
  }
  sides=()
  [[ ${WARM[gateway]} == 0 ]] && sftp_warm gateway "$tmp/gw/ssh_config" gw && sides+=(gateway)
  ((${#ossh_rows[@]})) && sftp_warm openssh "$SSH_CONFIG" bench && sides+=("${ossh_rows[@]}")
  # Each way in turn on every side, so that a busy spell falls on all of them alike.
  for way in get put; do
    for side in "${sides[@]}"; do sftp_side "$side" "$way"; done
  done
fi
load1=$(cut -d' ' -f1 /proc/loadavg)

# ---- the figures ------------------------------------------------------------------------------
field() { sed -n "s/.*[[:space:]]$1=\([^[:space:]]*\).*/\1/p" <<<" $2"; }
printf '\nkeystroke echo round trip, idle (%s keystrokes, each typed when the last echo is back)\n' "$keys"
printf '%-52s %9s %9s %9s %9s\n' "path" "p50 us" "p99 us" "p99.9 us" "max us"
erow() { # label key
  local l=${RTT[$2]:-}
  if [[ -z $l ]]; then printf '%-52s %9s\n' "$1" "not run"; return; fi
  printf '%-52s %9s %9s %9s %9s\n' "$1" "$(field p50_us "$l")" "$(field p99_us "$l")" "$(field p999_us "$l")" \
    "$(field max_us "$l")"
}
erow "ssh -tt via tether-sshd (ssh + 2 TLS hops)" gateway
erow "ssh -tt to OpenSSH sshd (1 hop)" openssh
[[ $shell_row == 1 ]] && erow "tether shell, for reference (2 TLS hops)" shell
# shellcheck disable=SC2016 # backquotes printed as they are
printf '\nconnections: %s back-to-back `ssh HOST true` per side (ed25519 keys, ControlMaster off)\n' "$conns"
printf '%-52s %9s %9s %9s %9s\n' "path" "conn/s" "p50 ms" "p99 ms" "max ms"
crow() { # label key
  local l=${CPS[$2]:-}
  if [[ -z $l || -z $(field rate "$l") ]]; then printf '%-52s %9s\n' "$1" "not run"; return; fi
  printf '%-52s %9s %9s %9s %9s\n' "$1" "$(field rate "$l")" "$(field p50_ms "$l")" "$(field p99_ms "$l")" \
    "$(field max_ms "$l")"
}
crow "ssh via tether-sshd" gateway
crow "ssh to OpenSSH sshd, kex ${gw_kex}" openssh-kex
crow "ssh to OpenSSH sshd, kex ${KEX[openssh]:-default}" openssh
if ((sftp_bytes > 0)); then
  # shellcheck disable=SC2016 # backquotes printed as they are
  printf '\nsftp: one file of %s bytes (%s MiB) of random data, `sftp -b` get then put; MB/s = 10^6 bytes/s\n' \
    "$sftp_bytes" "$((sftp_bytes / 1048576))"
  # shellcheck disable=SC2016
  printf '   over the wall time of the whole `sftp -b`: connection, login, and through the gateway the\n%s\n' \
    '   whole file into its spool before the first byte (get) and out of it after the last (put)'
  printf '%-52s %9s %9s %9s %9s  %s\n' "path" "get MB/s" "get s" "put MB/s" "put s" "check"
  srow() { # label key
    local g=${SFTP[$2-get]:-} p=${SFTP[$2-put]:-} c=${SUMOK[$2]:-}
    [[ -z $g && -z $p ]] && { printf '%-52s %9s\n' "$1" "not run"; return; }
    [[ $g == failed || $p == failed ]] && c="${c:+$c, }not all transferred"
    printf '%-52s %9s %9s %9s %9s  %s\n' "$1" "${g%% *}" "$([[ $g == *' '* ]] && echo "${g#* }")" "${p%% *}" \
      "$([[ $p == *' '* ]] && echo "${p#* }")" "${c:--}"
  }
  srow "sftp via tether-sshd (whole file via its spool)" gateway
  ((${#ossh_rows[@]})) || srow "sftp to OpenSSH sshd" openssh
  for r in "${ossh_rows[@]}"; do
    if [[ $r == openssh-cipher ]]; then srow "sftp to OpenSSH sshd, ${gw_cipher%%@*}" "$r"
    else c=${CIPHER[openssh]:-its default cipher}; srow "sftp to OpenSSH sshd, ${c%%@*}" "$r"; fi
  done
  [[ -n ${LEG[get]:-}${LEG[put]:-} ]] &&
    echo "   through the gateway, of which the device's leg (broker <-> agent, the agent's log): get ${LEG[get]:-?} s, put ${LEG[put]:-?} s"
fi
echo
echo "negotiated: tether-sshd: ${NEG[gateway]:-?}"
echo "            OpenSSH:     ${NEG[openssh]:-?}"
if ((ssh_ok)); then
  if [[ $ssh_rc == 1 ]]; then echo "OpenSSH sessions as sshd makes them: bash reads ~/.bashrc for \`ssh HOST true\` (not through the gateway)"
  else echo "OpenSSH sessions get SHLVL=1, so bash skips ~/.bashrc for \`ssh HOST true\` as it does through the gateway"; fi
fi
echo "load average (1 min) before/after: $load0 / $load1$(awk -v a="$load0" -v b="$load1" \
  'BEGIN {if (a > 1.0 || b > 1.0) print "  -- the machine was busy: figures are noisy"}')"
for k in "${!ERR[@]}"; do echo "$k: NOT (fully) MEASURED: ${ERR[$k]}"; done
if ((${#sum_bad[@]})); then
  for m in "${sum_bad[@]}"; do echo "bench_gateway: FAILED: $m" >&2; done
  exit 1
fi
exit 0
