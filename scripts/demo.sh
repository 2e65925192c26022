#!/usr/bin/env bash
# The README's first command: brings up a working Tether on this machine, on loopback:
# a broker, an agent enrolled for this machine, and a console configured for a technician,
# then shows the connected device and a support session: a ticket, the employee's consent,
# link tests (ping, speedtest) and a recorded shell under it, its replay and the audit trail.
#   scripts/demo.sh          build (release), start or restart everything, show it
#   scripts/demo.sh stop     stop the broker and agent
# State lives in .tether-demo/ (certificates, configs, logs); it is never committed.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD
demo=$top/.tether-demo
bin=$top/build/release

stop() {
  for p in mail prompt sshd agent broker; do
    if [ -f "$demo/$p.pid" ]; then
      kill "$(cat "$demo/$p.pid")" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$(cat "$demo/$p.pid")" 2>/dev/null || break; sleep 0.1; done
      rm -f "$demo/$p.pid"
    fi
  done
}

if [ "${1:-}" = "stop" ]; then
  stop
  echo "demo: stopped"
  exit 0
fi

bash scripts/deps.sh
cmake --preset release >/dev/null
cmake --build --preset release >/dev/null
stop

port=${TETHER_DEMO_PORT:-7443}
mkdir -p "$demo"
chmod 700 "$demo"
certs=$bin/certs/tether-certs
if [ ! -f "$demo/pki/ca.key" ]; then
  rm -rf "$demo/pki" "$demo/data" "$demo/agent"
  "$certs" init --dir "$demo/pki" >/dev/null
  "$certs" issue admin admin --dir "$demo/pki" >/dev/null
  "$certs" issue technician alice --dir "$demo/pki" >/dev/null
fi
# The SSH gateway's certificate (older demo directories lack it).
[ -f "$demo/pki/gw1.pem" ] || "$certs" issue gateway gw1 --dir "$demo/pki" >/dev/null
sshport=${TETHER_DEMO_SSH_PORT:-2222}

cat > "$demo/broker.conf" <<CONF
# tether-broker configuration for the local demo
listen = 127.0.0.1:$port
data_dir = $demo/data
heartbeat = 15s
idle_timeout = 45s
[tls]
ca = $demo/pki/ca.pem
ca_key = $demo/pki/ca.key
cert = $demo/pki/broker.pem
key = $demo/pki/broker.key
CONF
cat > "$demo/agent.conf" <<CONF
# tether-agent configuration for this machine (identity in state_dir after enrollment)
broker = 127.0.0.1:$port
state_dir = $demo/agent
backoff.base = 500ms
backoff.max = 10s
[consent]
# the employee answers with: tether-agent prompt --config $demo/agent.conf
socket = $demo/consent.sock
policy = ask
timeout = 60s
[shell]
# technicians' shells run as this user
user = $(id -un)
[checks]
# the demo looks at the disk every 2 s so that an alert shows in seconds (default: every
# 5 min, raised after 3 failing runs and cleared after 2 passing ones)
disk_used.period = 2s
disk_used.raise_after = 2
disk_used.clear_after = 2
CONF
for who in alice admin; do
  cat > "$demo/$who.conf" <<CONF
# tether console configuration for $who
broker = 127.0.0.1:$port
[tls]
ca = $demo/pki/ca.pem
cert = $demo/pki/$who.pem
key = $demo/pki/$who.key
CONF
done
cp "$demo/alice.conf" "$demo/console.conf"
mkdir -p "$demo/sshd" "$demo/ssh"
chmod 700 "$demo/sshd" "$demo/ssh"
sshspool=${TMPDIR:-/tmp}/tether-demo-sshd-$(id -u)
mkdir -p "$sshspool"
chmod 755 "$sshspool"
cat > "$demo/sshd.conf" <<CONF
# tether-sshd configuration for the local demo (started as root it runs as 'nobody')
listen = 127.0.0.1:$sshport
broker = 127.0.0.1:$port
host_key = $demo/sshd/ssh_host_ed25519_key
# scp and sftp: files wait here on their way; started as root the gateway runs as 'nobody',
# so this is outside the private demo directory
spool_dir = $sshspool/spool
[tls]
ca = $demo/pki/ca.pem
cert = $demo/pki/gw1.pem
key = $demo/pki/gw1.key
CONF

nohup "$bin/broker/tether-broker" --config "$demo/broker.conf" >"$demo/broker.log" 2>&1 &
echo $! >"$demo/broker.pid"
for _ in $(seq 100); do grep -q 'msg="listening"' "$demo/broker.log" && break; sleep 0.1; done
grep -q 'msg="listening"' "$demo/broker.log" || { echo "demo: broker did not start:"; cat "$demo/broker.log"; exit 1; }

admin="$bin/console/tether --config $demo/admin.conf"
tether="$bin/console/tether --config $demo/alice.conf"
if [ ! -f "$demo/agent/device.pem" ]; then
  pin=$("$certs" fingerprint --dir "$demo/pki")
  echo "== admin issues a one-time enrollment token; this machine enrolls with it"
  echo "\$ tether token new --note demo"
  token=$($admin token new --note "demo enrollment" 2>/dev/null)
  echo "tt1_…(hidden)"
  echo "\$ tether-agent enroll --broker 127.0.0.1:$port --token … --ca-pin $pin"
  "$bin/agent/tether-agent" enroll --config "$demo/agent.conf" --broker 127.0.0.1:$port \
    --token "$token" --ca-pin "$pin"
  echo
fi
nohup "$bin/agent/tether-agent" run --config "$demo/agent.conf" >"$demo/agent.log" 2>&1 &
echo $! >"$demo/agent.pid"
for _ in $(seq 100); do grep -q 'msg="connected"' "$demo/agent.log" && break; sleep 0.1; done
grep -q 'msg="connected"' "$demo/agent.log" || { echo "demo: agent did not connect:"; cat "$demo/agent.log"; exit 1; }
device=$(openssl x509 -in "$demo/agent/device.pem" -noout -subject -nameopt multiline | awk -F' = ' '/commonName/ {print $2}')

echo "== broker on 127.0.0.1:$port, agent for this machine connected as '$device'"
echo
echo "\$ tether devices"
$tether devices
echo
echo "== a support session: ticket, the employee's consent, link tests and a recorded shell"
echo "\$ tether ticket new --device $device --summary 'Mail client crashes at start' --requester erin --priority high"
tid=$($tether ticket new --device "$device" --summary "Mail client crashes at start" --requester erin --priority high)
echo "$tid"
# The employee's side: tether-agent prompt shows the request on this machine. Here the demo
# types "y" for them; interactively it asks "Allow? [y/N]" and waits up to the timeout.
# It stays up (as it would in the employee's session) to show what the technician does.
rm -f "$demo/prompt.done"
{ echo y; for _ in $(seq 300); do [ -f "$demo/prompt.done" ] && break; sleep 0.1; done; } |
  "$bin/agent/tether-agent" prompt --config "$demo/agent.conf" >"$demo/prompt.out" 2>&1 &
echo $! >"$demo/prompt.pid"
sleep 0.3
echo "\$ tether session open --device $device --ticket $tid --want shell,diag,files      (asks the employee once)"
$tether session open --device "$device" --ticket "$tid" --want shell,diag,files
echo "\$ tether ping $device --ticket $tid --count 200"
$tether ping "$device" --ticket "$tid" --count 200
echo "\$ tether speedtest $device --ticket $tid --bytes 256M"
$tether speedtest "$device" --ticket "$tid" --bytes 256M
echo "\$ tether diag $device --ticket $tid      (the machine now, collected by the agent)"
$tether diag "$device" --ticket "$tid"
# The agent pushed its inventory when it connected; wait (bounded) for the broker to have it.
for _ in $(seq 100); do grep -q 'msg="sent"\|msg="unchanged"' "$demo/agent.log" && break; sleep 0.1; done
echo "\$ tether inventory $device      (what the agent pushed: only changed tables, every hour)"
$tether inventory "$device"
sent=$(grep -c 'msg="sent"' "$demo/agent.log" || true)
echo "\$ tether shell $device --ticket $tid      (typed: hostname; id -un; df -h / | tail -1; exit 3)"
set +e
printf 'hostname\nid -un\ndf -h / | tail -1\nexit 3\n' | $tether shell "$device" --ticket "$tid"
status=$?
set -e
echo "[tether shell exited with the remote status: $status]"
echo
echo "== the same through plain ssh: tether-sshd in front of the broker, alice's key registered once"
nohup "$bin/console/sshd/tether-sshd" --config "$demo/sshd.conf" >"$demo/sshd.log" 2>&1 &
echo $! >"$demo/sshd.pid"
[ -f "$demo/ssh/alice" ] || ssh-keygen -q -t ed25519 -N "" -C alice@demo -f "$demo/ssh/alice"
echo "\$ tether ssh-key add ~/.ssh/id_ed25519.pub"
$tether ssh-key add "$demo/ssh/alice.pub" 2>/dev/null || $tether ssh-key list
for _ in $(seq 100); do grep -q 'msg="ready"' "$demo/sshd.log" && break; sleep 0.1; done
grep -q 'msg="ready"' "$demo/sshd.log" || { echo "demo: tether-sshd did not start:"; cat "$demo/sshd.log"; exit 1; }
# ssh-config prints a Host block and known_hosts lines: keep them for this demo's ssh.
$tether ssh-config > "$demo/ssh/ssh-config.txt"
{ awk '/^Host /,/^$/' "$demo/ssh/ssh-config.txt"; printf '  IdentityFile %s\n  IdentitiesOnly yes\n  UserKnownHostsFile %s\n' \
  "$demo/ssh/alice" "$demo/ssh/known_hosts"; } > "$demo/ssh/config"
awk 'f && /^[^#]/; /^# .*known_hosts/ {f=1}' "$demo/ssh/ssh-config.txt" > "$demo/ssh/known_hosts"
for _ in $(seq 100); do grep -q 'msg="keys changed"' "$demo/sshd.log" && break; sleep 0.1; done
echo "\$ ssh -p $sshport $device+$tid@127.0.0.1 'uname -sr; id -un; exit 5'      (the grant is reused)"
set +e
ssh -F "$demo/ssh/config" -o BatchMode=yes "$device+$tid@tether-gw1" 'uname -sr; id -un; exit 5'
status=$?
set -e
echo "[ssh exited with the remote status: $status]"
# Meanwhile the employee starts the mail client again; here a stand-in that listens on
# loopback, as a mail client's local service would. After a shell ends the agent collects
# again, and the new listening port is in the inventory's diff.
mailport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
nohup python3 -c 'import socket,sys,time
s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(); time.sleep(600)' "$mailport" >/dev/null 2>&1 &
echo $! >"$demo/mail.pid"
for _ in $(seq 300); do
  [ "$(grep -c 'msg="sent"' "$demo/agent.log" || true)" -gt "$sent" ] && break
  sleep 0.1
done
echo "\$ tether inventory diff $device      (what changed on the machine since the last version)"
$tether inventory diff "$device"
kill "$(cat "$demo/mail.pid")" 2>/dev/null || true
rm -f "$demo/mail.pid"
sleep 0.5
touch "$demo/prompt.done" # the prompt's input ends; with nothing left to answer it exits
wait "$(cat "$demo/prompt.pid")" 2>/dev/null || true
rm -f "$demo/prompt.pid" "$demo/prompt.done"
echo "-- what the employee saw (tether-agent prompt):"
sed 's/^/   /' "$demo/prompt.out"
echo
echo "\$ tether sessions"
$tether sessions
sid=$($tether sessions --json | grep -o '"S-[0-9]*"' | head -1 | tr -d '"')
echo
echo "\$ tether replay $sid --speed 0      (the broker's recording of that shell)"
for _ in $(seq 50); do $tether replay "$sid" --speed 0 >/dev/null 2>&1 && break; sleep 0.1; done
$tether replay "$sid" --speed 0
echo
echo "\$ tether ticket show $tid"
$tether ticket show "$tid"
echo
echo
echo "== the employee asks for help from their own machine (a diagnostics snapshot goes with it)"
echo "\$ tether-agent ask 'Printer on floor 2 jams since Monday'"
"$bin/agent/tether-agent" ask --config "$demo/agent.conf" "Printer on floor 2 jams since Monday" | tail -1
hid=$($tether tickets --json | grep -o '"T-[0-9]*"' | tail -1 | tr -d '"')
echo "\$ tether ticket comment $hid --public 'Power-cycle it once; I am looking at the queue'"
$tether ticket comment "$hid" --public "Power-cycle it once; I am looking at the queue"
echo "\$ tether-agent tickets      (the employee's view)"
"$bin/agent/tether-agent" tickets --config "$demo/agent.conf"
echo
echo "== a health check raises an alert, the alert a ticket; the fix is in the knowledge base"
printf '# Disk full\n\nFind the biggest directories with `du -xh / | sort -h | tail`, clear\n`journalctl --vacuum-size=200M`, then empty the trash of the user.\n' >"$demo/kb-disk-full.md"
echo "\$ tether kb add --title 'Disk full' --check disk_used kb-disk-full.md      (admin; once)"
if $tether kb search disk full --json | grep -q '"title":"Disk full"'; then
  $tether kb search disk full
else
  $admin kb add --title "Disk full" --check disk_used "$demo/kb-disk-full.md"
fi
echo "\$ tether policy set --group '*' checks.disk_used.threshold=1%      (admin: a line any disk crosses)"
$admin policy set --group '*' checks.disk_used.threshold=1%
for _ in $(seq 300); do grep -q 'msg="alert" what=\(opened\|reopened\)' "$demo/broker.log" && break; sleep 0.1; done
echo "\$ tether alerts --open"
$tether alerts --open
aid=$($tether alerts --open --json | grep -o '"T-[0-9]*"' | head -1 | tr -d '"')
if [ -n "$aid" ]; then
  echo "\$ tether ticket show $aid"
  $tether ticket show "$aid"
fi
echo "\$ tether policy set --group '*' checks.disk_used.threshold=90%      (back to the default: it recovers)"
$admin policy set --group '*' checks.disk_used.threshold=90%
for _ in $(seq 300); do grep -q 'msg="alert" what=resolved' "$demo/broker.log" && break; sleep 0.1; done
echo "\$ tether alerts"
$tether alerts
echo
echo "\$ tether audit --since 10m | grep -v connect      (as admin; connects and disconnects left out)"
$admin audit --since 10m | grep -v -E ' (connect|disconnect) ' | tail -14
echo "\$ tether audit verify"
$admin audit verify
echo "\$ tether report sla --since 1d --by technician      (as admin: from the tickets' timelines)"
$admin report sla --since 1d --by technician
echo "\$ tether status"
$admin status
cat <<MSG

The console is ready for technician 'alice' (and admin 'admin': $demo/admin.conf):
  export TETHER_CONFIG=$demo/alice.conf
  $bin/console/tether tickets
  $bin/console/tether shell $device --ticket $tid      # reuses $sid: no second prompt
  $bin/console/tether ping $device --ticket $tid       # diagnostics need a ticket too
  $bin/console/tether exec $device --ticket $tid -- uname -a
  ssh -F $demo/ssh/config $device+$tid@tether-gw1        # plain ssh through tether-sshd
  scp -F $demo/ssh/config README.md $device+$tid@tether-gw1:/tmp/   # scp and sftp too
  $bin/console/tether inventory $device --table deb_packages   # no ticket: the machine's facts
  $bin/console/tether recording export $sid > $sid.cast   # asciinema play $sid.cast
As admin (TETHER_CONFIG=$demo/admin.conf):
  $bin/console/tether report sla --since 30d --format html > sla.html   # charts for managers
  $bin/console/tether report activity --since 7d
  $bin/console/tether audit follow --format cef        # the audit log as a live stream (^C to stop)
  $bin/console/tether retention show                   # how long each class of record is kept, and why
  $bin/console/tether person export \$(id -un) --dir me   # everything held about you, recordings beside it
  $bin/console/tether person erase \$(id -un) --reason "request #1" --dry-run   # what erasing you would take
The employee's side, on this machine:
  $bin/agent/tether-agent prompt --config $demo/agent.conf     # answer access requests
  $bin/agent/tether-agent sessions --config $demo/agent.conf   # live sessions
  $bin/agent/tether-agent end $sid --config $demo/agent.conf   # end one at once
  $bin/agent/tether-agent ask --config $demo/agent.conf "what is wrong"   # ask for help
  $bin/agent/tether-agent checks --config $demo/agent.conf     # the health checks here
Logs: $demo/broker.log, $demo/agent.log, $demo/sshd.log.  Stop with: scripts/demo.sh stop
MSG
