#!/usr/bin/env bash
# Keystroke echo round trip through a remote shell: tether (console -> broker -> agent ->
# pty -> back, TLS both hops) beside ssh to a local OpenSSH server (one hop), each idle and
# while a bulk transfer runs on the same connection (tether: a CHANNEL_THROUGHPUT on the
# same link; ssh: a second session over the same ControlMaster connection). Loopback only.
# Prints figures beside the goals (p50 <= 120 us and p99 <= 300 us idle, p99 <= 5 ms during
# the bulk transfer, better than ssh); asserts nothing. Everything it starts is stopped at
# the end, and the whole run is bounded (10 minutes).
#
# usage: tests/bench/bench_shell.sh [BUILD_DIR] [COUNT]
#   BUILD_DIR  a build with tether-broker, tether-agent, tether-certs and tether-keyrtt
#              (default: builds the release preset into build/release)
#   COUNT      keystrokes per measurement (default 10000)
# environment:
#   BENCH_SHELL_BULK=1073741824   bytes of each bulk transfer (transfers run back to back
#                                 until the keystrokes are done)
#   BENCH_SHELL_GAP_US=0          pause between an echo and the next keystroke
#   BENCH_SHELL_ONLY=tether|ssh   run one side only
#   BENCH_SHELL_BULK_WINDOW=      tether: the bulk channel's receive window (default the
#                                 console's, TT_WINDOW_BULK)
#   BENCH_SHELL_ECHO=1            tether: also the same over a CHANNEL_ECHO (a diag session, no
#                                 pty), the link's share of the round trip; 0 = skip
#   BENCH_SHELL_KEEP=1            keep the temp dir with every log
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
count=${2:-10000}
bulk=${BENCH_SHELL_BULK:-1073741824}
gap=${BENCH_SHELL_GAP_US:-0}
only=${BENCH_SHELL_ONLY:-}
echo_too=${BENCH_SHELL_ECHO:-1}
budget=600
[[ $count =~ ^[0-9]+$ && $count -ge 1 ]] || { echo "usage: bench_shell.sh [BUILD_DIR] [COUNT]" >&2; exit 2; }

if [[ -n ${1:-} ]]; then
  bin=$(cd "$1" && pwd)
else
  cmake --preset release >/dev/null
  cmake --build build/release -j2 --target tether-broker tether-agent tether-certs tether-keyrtt >/dev/null
  bin=$root/build/release
fi
need=(tests/bench/tether-keyrtt)
[[ $only == ssh ]] || need+=(broker/tether-broker agent/tether-agent certs/tether-certs)
for p in "${need[@]}"; do
  [[ -x $bin/$p ]] || { echo "bench_shell: $bin/$p is not built" >&2; exit 1; }
done

tmp=$(mktemp -d /tmp/tether-keyrtt.XXXXXX)
pids=()
dog_pid=''
cleanup() {
  set +e
  local p
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for _ in $(seq 50); do
    local alive=0
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    ((alive)) || break
    sleep 0.1
  done
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do # a daemon that did not take SIGTERM cleanly is worth a line
    wait "$p" 2>/dev/null
    local rc=$?
    ((rc == 0 || rc == 143 || rc == 127)) || echo "bench_shell: note: $(cat "$tmp/name.$p" 2>/dev/null || echo "pid $p") exited with status $rc when stopped"
  done
  [[ -n $dog_pid ]] && kill "$dog_pid" 2>/dev/null
  wait 2>/dev/null
  if [[ -n ${BENCH_SHELL_KEEP:-} ]]; then echo "bench_shell: logs kept in $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'echo "bench_shell: interrupted" >&2; exit 124' INT TERM
(
  sleep "$budget" & s=$!
  trap 'kill $s 2>/dev/null; exit 0' TERM
  wait $s && { echo "bench_shell: time limit of ${budget}s reached" >&2; kill -TERM $$; }
) &
dog_pid=$!

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { # port pid log
  for _ in $(seq 150); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    kill -0 "$2" 2>/dev/null || { echo "bench_shell: $3 exited:"; tail -5 "$3"; return 1; }
    sleep 0.1
  done
  echo "bench_shell: nothing listens on $1 after 15 s"; return 1
}
me=$(id -un)
keyrtt=$bin/tests/bench/tether-keyrtt
common=(--count "$count" --bulk "$bulk" --gap-us "$gap" --timeout $((budget - 60)))
tether_args=()
[[ -n ${BENCH_SHELL_BULK_WINDOW:-} ]] && tether_args+=(--bulk-window "$BENCH_SHELL_BULK_WINDOW")
tether_out='' echo_out='' ssh_out='' tether_err='' echo_err='' ssh_err=''

# ---- tether: PKI, broker, agent (unattended consent, shells as this user) --------------
run_tether() {
  local p=$tmp/pki port
  "$bin/certs/tether-certs" init --dir "$p" >/dev/null
  "$bin/certs/tether-certs" issue agent bench-dev --dir "$p" >/dev/null
  "$bin/certs/tether-certs" issue technician bench-tech --dir "$p" >/dev/null
  port=$(free_port)
  "$bin/broker/tether-broker" --listen "127.0.0.1:$port" --ca "$p/ca.pem" --ca-key "$p/ca.key" \
    --cert "$p/broker.pem" --key "$p/broker.key" --data-dir "$tmp/data" --log-level warn \
    2>"$tmp/broker.log" &
  pids+=($!)
  echo tether-broker >"$tmp/name.$!"
  wait_port "$port" $! "$tmp/broker.log" || return 1
  cat >"$tmp/agent.conf" <<EOF
# the bench's device: nobody to ask, so the policy grants; shells run as $me
[consent]
policy = unattended
socket = $tmp/consent.sock
[shell]
user = $me
EOF
  "$bin/agent/tether-agent" run --config "$tmp/agent.conf" --broker "127.0.0.1:$port" --ca "$p/ca.pem" \
    --cert "$p/bench-dev.pem" --key "$p/bench-dev.key" --state-dir "$tmp/agent-state" \
    --log-level info 2>"$tmp/agent.log" &
  local apid=$!
  pids+=($apid)
  echo tether-agent >"$tmp/name.$apid"
  for _ in $(seq 150); do
    grep -q 'msg="connected"' "$tmp/agent.log" && break
    kill -0 "$apid" 2>/dev/null || { tether_err="agent exited: $(tail -3 "$tmp/agent.log" | tr '\n' ' ')"; return 1; }
    sleep 0.1
  done
  grep -q 'msg="connected"' "$tmp/agent.log" || { tether_err="agent did not connect in 15 s"; return 1; }
  local tech=(--broker "127.0.0.1:$port" --ca "$p/ca.pem" --cert "$p/bench-tech.pem" --key "$p/bench-tech.key"
              --device bench-dev "${common[@]}" "${tether_args[@]}")
  tether_out=$("$keyrtt" tether "${tech[@]}" 2>"$tmp/keyrtt-tether.err") ||
    tether_err=$(tail -3 "$tmp/keyrtt-tether.err" | tr '\n' ' ')
  if [[ $echo_too == 1 ]]; then
    sleep 2 # the shell's end (recording closed, process reaped) is not part of this figure
    echo_out=$("$keyrtt" tether --echo-channel "${tech[@]}" 2>"$tmp/keyrtt-echo.err") ||
      echo_err=$(tail -3 "$tmp/keyrtt-echo.err" | tr '\n' ' ')
  fi
}

# ---- ssh: sshd on a high loopback port, its own host key, config and authorized key -----
run_ssh() {
  local d=$tmp/ssh port
  mkdir -p "$d"
  chmod 700 "$d"
  [[ $(id -u) -eq 0 ]] && mkdir -p /run/sshd # privilege separation directory
  ssh-keygen -q -t ed25519 -N '' -f "$d/host_key"
  ssh-keygen -q -t ed25519 -N '' -f "$d/client_key"
  cp "$d/client_key.pub" "$d/authorized_keys"
  port=$(free_port)
  cat >"$d/sshd_config" <<EOF
Port $port
ListenAddress 127.0.0.1
HostKey $d/host_key
PidFile $d/sshd.pid
AuthorizedKeysFile $d/authorized_keys
UsePAM no
StrictModes no
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PrintMotd no
PrintLastLog no
UseDNS no
X11Forwarding no
AllowTcpForwarding no
MaxSessions 10
LogLevel ERROR
EOF
  echo "[127.0.0.1]:$port $(cut -d' ' -f1,2 "$d/host_key.pub")" >"$d/known_hosts"
  cat >"$d/ssh_config" <<EOF
Host keyrtt
  HostName 127.0.0.1
  Port $port
  User $me
  IdentityFile $d/client_key
  IdentitiesOnly yes
  UserKnownHostsFile $d/known_hosts
  GlobalKnownHostsFile /dev/null
  StrictHostKeyChecking yes
  BatchMode yes
  ControlPath $d/cm
  EscapeChar none
  Compression no
  ForwardAgent no
  ForwardX11 no
  LogLevel ERROR
EOF
  /usr/sbin/sshd -t -f "$d/sshd_config" 2>"$tmp/sshd.log" || { ssh_err="sshd config refused: $(cat "$tmp/sshd.log")"; return 1; }
  /usr/sbin/sshd -D -e -f "$d/sshd_config" 2>"$tmp/sshd.log" &
  local spid=$!
  pids+=($spid)
  echo sshd >"$tmp/name.$spid"
  # The pid file is written once sshd listens (a probe connection would make it log noise).
  for _ in $(seq 150); do [[ -s $d/sshd.pid ]] && break; kill -0 $spid 2>/dev/null || break; sleep 0.1; done
  [[ -s $d/sshd.pid ]] || { ssh_err="sshd did not start: $(tail -3 "$tmp/sshd.log" | tr '\n' ' ')"; return 1; }
  ssh_out=$("$keyrtt" ssh --ssh-config "$d/ssh_config" --ssh-host keyrtt "${common[@]}" 2>"$tmp/keyrtt-ssh.err") ||
    { ssh_err=$(tail -3 "$tmp/keyrtt-ssh.err" | tr '\n' ' '); return 1; }
  ssh_cipher=$(ssh -F "$d/ssh_config" -G keyrtt 2>/dev/null | awk '/^ciphers / {split($2, c, ","); print c[1]}')
}

echo "== keystroke echo round trip: $count keystrokes per figure, bulk $((bulk / 1048576)) MiB transfers on the same connection, gap ${gap} us"
echo "   $(nproc) cores, $(uname -r), $(ssh -V 2>&1 | cut -d, -f1), $(openssl version | cut -d' ' -f1-2)"
load0=$(cut -d' ' -f1 /proc/loadavg)
[[ $only == ssh ]] || run_tether || true
[[ $only == tether ]] || run_ssh || true

field() { sed -n "s/.*[[:space:]]$1=\([^[:space:]]*\).*/\1/p" <<<" $2"; }
line_of() { grep "phase=$2" <<<"$1" || true; }
verdict() { # value goal
  awk -v v="$1" -v g="$2" 'BEGIN {if (v == "" || g == "") print ""; else print (v + 0 <= g + 0) ? "meets" : "MISSES"}'
}
printf '\n%-34s %10s %10s %10s %10s   %s\n' "path" "p50 us" "p99 us" "p99.9 us" "max us" "goal"
row() { # label output phase goal_p50 goal_p99
  local l m
  l=$(line_of "$2" "$3")
  if [[ -z $l ]]; then printf '%-34s %10s\n' "$1" "not run"; return; fi
  local p50 p99
  p50=$(field p50_us "$l") p99=$(field p99_us "$l")
  m=""
  [[ -n $4 ]] && m+="p50<=$4 $(verdict "$p50" "$4") "
  [[ -n $5 ]] && m+="p99<=$5 $(verdict "$p99" "$5")"
  printf '%-34s %10s %10s %10s %10s   %s\n' "$1" "$p50" "$p99" "$(field p999_us "$l")" "$(field max_us "$l")" "$m"
}
row "tether idle (2 hops)" "$tether_out" idle 120 300
row "tether during bulk" "$tether_out" bulk "" 5000
if [[ $echo_too == 1 && $only != ssh ]]; then
  row "  tether echo channel, no pty" "$echo_out" idle "" ""
  row "  tether echo channel during bulk" "$echo_out" bulk "" ""
fi
row "ssh idle (1 hop)" "$ssh_out" idle "" ""
row "ssh during bulk" "$ssh_out" bulk "" ""
echo
tb=$(line_of "$tether_out" bulk) sb=$(line_of "$ssh_out" bulk)
[[ -n $tb ]] && echo "tether bulk: $(field bulk_mb_s "$tb") MB/s over $(field bulk_transfers "$tb") transfers (CHANNEL_THROUGHPUT, same link, window ${BENCH_SHELL_BULK_WINDOW:-4194304})"
[[ -n $sb ]] && echo "ssh bulk:    $(field bulk_mb_s "$sb") MB/s over $(field bulk_transfers "$sb") transfers (head -c over the ControlMaster, cipher ${ssh_cipher:-default})"
cmp_row() { # phase what
  local a b
  a=$(field "$2" "$(line_of "$tether_out" "$1")") b=$(field "$2" "$(line_of "$ssh_out" "$1")")
  [[ -n $a && -n $b ]] || return 0
  echo "tether vs ssh, $1 $2: $a vs $b -> $(awk -v a="$a" -v b="$b" 'BEGIN {print (a + 0 < b + 0) ? "tether better" : "ssh better"}')"
}
load1=$(cut -d' ' -f1 /proc/loadavg)
echo "load average (1 min) before/after: $load0 / $load1$(awk -v a="$load0" -v b="$load1" 'BEGIN {if (a > 1.0) print "  -- the machine was busy: figures are noisy"}')"
cmp_row idle p50_us
cmp_row idle p99_us
cmp_row bulk p99_us
[[ -n $tether_err ]] && echo "tether: NOT MEASURED: $tether_err"
[[ -n $echo_err ]] && echo "tether echo channel: NOT MEASURED: $echo_err"
[[ -n $ssh_err ]] && echo "ssh: NOT MEASURED: $ssh_err"
[[ -z $tether_err && -z $echo_err && -z $ssh_err ]]
