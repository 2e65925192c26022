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
device=$(hostname | tr -c 'A-Za-z0-9._@\n-' '-' | cut -c1-40)
mkdir -p "$demo"
chmod 700 "$demo"
if [ ! -f "$demo/pki/ca.key" ]; then
  rm -rf "$demo/pki"
  "$bin/certs/tether-certs" init --dir "$demo/pki" >/dev/null
  "$bin/certs/tether-certs" issue agent "$device" --dir "$demo/pki" >/dev/null
  "$bin/certs/tether-certs" issue technician alice --dir "$demo/pki" >/dev/null
fi

cat > "$demo/broker.conf" <<CONF
# tether-broker configuration for the local demo
listen = 127.0.0.1:$port
heartbeat = 15s
idle_timeout = 45s
[tls]
ca = $demo/pki/ca.pem
cert = $demo/pki/broker.pem
key = $demo/pki/broker.key
CONF
cat > "$demo/agent.conf" <<CONF
# tether-agent configuration for this machine
broker = 127.0.0.1:$port
backoff.base = 500ms
backoff.max = 10s
[tls]
ca = $demo/pki/ca.pem
cert = $demo/pki/$device.pem
key = $demo/pki/$device.key
CONF
cat > "$demo/console.conf" <<CONF
# tether console configuration for technician alice
broker = 127.0.0.1:$port
[tls]
ca = $demo/pki/ca.pem
cert = $demo/pki/alice.pem
key = $demo/pki/alice.key
CONF

nohup "$bin/broker/tether-broker" --config "$demo/broker.conf" >"$demo/broker.log" 2>&1 &
echo $! >"$demo/broker.pid"
for _ in $(seq 100); do grep -q 'msg="listening"' "$demo/broker.log" && break; sleep 0.1; done
grep -q 'msg="listening"' "$demo/broker.log" || { echo "demo: broker did not start:"; cat "$demo/broker.log"; exit 1; }
nohup "$bin/agent/tether-agent" run --config "$demo/agent.conf" >"$demo/agent.log" 2>&1 &
echo $! >"$demo/agent.pid"
for _ in $(seq 100); do grep -q 'msg="connected"' "$demo/agent.log" && break; sleep 0.1; done
grep -q 'msg="connected"' "$demo/agent.log" || { echo "demo: agent did not connect:"; cat "$demo/agent.log"; exit 1; }

tether="$bin/console/tether --config $demo/console.conf"
echo "== broker on 127.0.0.1:$port, agent for device '$device' connected"
echo
echo "\$ tether devices"
$tether devices
echo
echo "\$ tether ping $device --count 200"
$tether ping "$device" --count 200
echo "\$ tether speedtest $device --bytes 256M"
$tether speedtest "$device" --bytes 256M
cat <<MSG

The console is ready for technician 'alice':
  export TETHER_CONFIG=$demo/console.conf
  $bin/console/tether devices
  $bin/console/tether speedtest $device --bytes 1G
Logs: $demo/broker.log, $demo/agent.log.  Stop with: scripts/demo.sh stop
MSG
