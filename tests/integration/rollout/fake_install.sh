#!/bin/sh
# What `dpkg -i tether-agent_*.deb` does to a running agent, for the integration harness
# (the agent's upgrade.install in tests/integration/rollout): the package is the agent's
# program itself; it replaces the device's copy, the running agent is stopped (SIGTERM, as
# systemd's restart does) and the new one started with the same arguments.
#   fake_install.sh DEVICE_DIR PACKAGE
# DEVICE_DIR holds bin/tether-agent, args (one argument per line), agent.pid and agent.log.
set -eu
dir=$1
pkg=$2
cp "$pkg" "$dir/bin/tether-agent.new"
chmod 755 "$dir/bin/tether-agent.new"
mv "$dir/bin/tether-agent.new" "$dir/bin/tether-agent"
old=$(cat "$dir/agent.pid" 2>/dev/null || echo 0)
# Running: there, and not a zombie its parent has yet to reap (the test's first agent).
running() {
  st=$(sed -n 's/^[0-9]* (.*) \([A-Z]\).*/\1/p' "/proc/$1/stat" 2>/dev/null || true)
  [ -n "$st" ] && [ "$st" != Z ]
}
if [ "$old" -gt 0 ] && kill -TERM "$old" 2>/dev/null; then
  # Until it has gone (bounded: 20 s), as systemctl restart waits.
  i=0
  while running "$old" && [ "$i" -lt 400 ]; do
    sleep 0.05
    i=$((i + 1))
  done
fi
set --
while IFS= read -r a; do set -- "$@" "$a"; done < "$dir/args"
setsid "$dir/bin/tether-agent" "$@" >> "$dir/agent.log" 2>&1 < /dev/null &
echo $! > "$dir/agent.pid"
