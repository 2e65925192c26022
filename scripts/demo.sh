#!/usr/bin/env bash
# The README's first command: brings up a working Tether on this machine, on loopback:
# a broker, an agent enrolled for this machine, and a console configured for a technician,
# then shows the connected device and runs a link test through the broker.
#   scripts/demo.sh          build (release), start or restart everything, show it
#   scripts/demo.sh stop     stop the broker and agent
# State lives in .tether-demo/ (certificates, configs, logs); it is never committed.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD
demo=$top/.tether-demo
bin=$top/build/release

stop() {
  for p in agent broker; do
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
echo "\$ tether ping $device --count 200"
$tether ping "$device" --count 200
echo "\$ tether speedtest $device --bytes 256M"
$tether speedtest "$device" --bytes 256M
echo
echo "\$ tether audit --since 10m      (as admin)"
$admin audit --since 10m | tail -8
echo "\$ tether audit verify"
$admin audit verify
cat <<MSG

The console is ready for technician 'alice' (and admin 'admin': $demo/admin.conf):
  export TETHER_CONFIG=$demo/alice.conf
  $bin/console/tether devices
  $bin/console/tether device show $device
  $bin/console/tether speedtest $device --bytes 1G
Logs: $demo/broker.log, $demo/agent.log.  Stop with: scripts/demo.sh stop
MSG
