# Sourced by the file benchmarks: a broker, an unattended agent whose files are under two
# directories, a technician and a ticket, from one build, on 127.0.0.1. Loopback only.
#
#   tether_start BIN DIR     -> starts them under DIR; sets TT_PIDS (to stop), TT_PORT (the
#                               broker's; taken as given if set), TT_AGENT_PORT (the port the
#                               agent dials, default TT_PORT: a link emulator may sit there),
#                               TT_TETHER (the console command as an array, --timeout 120s),
#                               TT_TICKET, TT_KEYRTT (tether-keyrtt's common arguments), and
#                               TT_DEV / TT_BACK (the directories the device shares).
# The caller stops TT_PIDS (its cleanup trap).

tether_free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

tether_start() {
  local bin=$1 d=$2 p=$2/pki
  TT_PIDS=()
  TT_DEV=$d/dev
  TT_BACK=$d/back
  mkdir -p "$TT_DEV" "$TT_BACK"
  "$bin/certs/tether-certs" init --dir "$p" >/dev/null
  "$bin/certs/tether-certs" issue agent bench-dev --dir "$p" >/dev/null
  "$bin/certs/tether-certs" issue technician bench-tech --dir "$p" >/dev/null
  TT_PORT=${TT_PORT:-$(tether_free_port)}
  TT_AGENT_PORT=${TT_AGENT_PORT:-$TT_PORT}
  "$bin/broker/tether-broker" --listen "127.0.0.1:$TT_PORT" --ca "$p/ca.pem" --ca-key "$p/ca.key" \
    --cert "$p/broker.pem" --key "$p/broker.key" --data-dir "$d/data" --log-level warn 2>"$d/broker.log" &
  TT_PIDS+=($!)
  for _ in $(seq 150); do (exec 3<>"/dev/tcp/127.0.0.1/$TT_PORT") 2>/dev/null && break; sleep 0.1; done
  cat >"$d/agent.conf" <<EOF
[consent]
policy = unattended
socket = $d/consent.sock
[shell]
user = $(id -un)
[files]
roots = $TT_DEV, $TT_BACK
EOF
  "$bin/agent/tether-agent" run --config "$d/agent.conf" --broker "127.0.0.1:$TT_AGENT_PORT" --ca "$p/ca.pem" \
    --cert "$p/bench-dev.pem" --key "$p/bench-dev.key" --state-dir "$d/agent-state" 2>"$d/agent.log" &
  TT_PIDS+=($!)
  for _ in $(seq 150); do grep -q 'msg="connected"' "$d/agent.log" && break; sleep 0.1; done
  TT_TETHER=("$bin/console/tether" --broker "127.0.0.1:$TT_PORT" --ca "$p/ca.pem" --cert "$p/bench-tech.pem"
             --key "$p/bench-tech.key" --timeout 120s)
  TT_TICKET=$("${TT_TETHER[@]}" ticket new --device bench-dev --summary "file transfer benchmark" | head -1)
  TT_KEYRTT=(--broker "127.0.0.1:$TT_PORT" --ca "$p/ca.pem" --cert "$p/bench-tech.pem" --key "$p/bench-tech.key"
             --device bench-dev --ticket "${TT_TICKET#T-}")
}
