#!/usr/bin/env bash
# Asset records at fleet size: a store with BENCH_ASSETS_ROWS devices whose inventory facts are
# known (written straight into a stopped broker's store with sqlite3, as if each had pushed),
# then a generated CSV of as many rows (nine in ten match a device by serial, one in ten has
# no device yet) imported with --dry-run, for real, and again (nothing changes); then the
# export as CSV and JSON, and `devices --where` over the fleet. Prints wall time of each, the
# broker's peak memory and the store's size. Loopback only; asserts nothing; stops by itself.
#
# usage: tests/bench/bench_assets.sh [BUILD_DIR]   (default: build/release of this tree, built)
# environment:
#   BENCH_ASSETS_ROWS=100000   devices, and rows in the file
#   BENCH_ASSETS_KEEP=1        keep the temp dir with the logs and files
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
rows=${BENCH_ASSETS_ROWS:-100000}
[[ $rows =~ ^[0-9]+$ ]] && ((rows >= 10)) || { echo "bench_assets: BENCH_ASSETS_ROWS must be a number >= 10" >&2; exit 2; }
bin=${1:-}
if [[ -z $bin ]]; then
  cmake --preset release >/dev/null
  cmake --build build/release -j2 --target tether tether-broker tether-certs >/dev/null
  bin=$root/build/release
fi
bin=$(cd "$bin" && pwd)
command -v sqlite3 >/dev/null || { echo "bench_assets: needs sqlite3 (scripts/deps.sh installs it)" >&2; exit 2; }

d=$(mktemp -d /tmp/tt-bench-assets.XXXXXX)
pid=
cleanup() {
  [[ -n $pid ]] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  if [[ -n ${BENCH_ASSETS_KEEP:-} ]]; then echo "kept: $d"; else rm -rf "$d"; fi
}
trap cleanup EXIT

p=$d/pki
"$bin/certs/tether-certs" init --dir "$p" >/dev/null
"$bin/certs/tether-certs" issue admin bench-admin --dir "$p" >/dev/null
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

start_broker() {
  "$bin/broker/tether-broker" --listen "127.0.0.1:$port" --ca "$p/ca.pem" --ca-key "$p/ca.key" \
    --cert "$p/broker.pem" --key "$p/broker.key" --data-dir "$d/data" --log-level warn 2>>"$d/broker.log" &
  pid=$!
  for _ in $(seq 300); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return; sleep 0.1; done
  echo "bench_assets: the broker did not start (see $d/broker.log)" >&2
  exit 1
}
stop_broker() { kill "$pid"; wait "$pid" 2>/dev/null || true; pid=; }

# The store, made by the broker, then a fleet written into it while the broker is stopped.
start_broker
stop_broker
t0=$(date +%s.%N)
sqlite3 "$d/data/broker.db" >/dev/null <<SQL
PRAGMA journal_mode = WAL;
BEGIN;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $rows)
INSERT INTO devices(id, hostname, version, enrolled_ms, last_seen_ms)
  SELECT printf('dev-%06d', i), printf('ws-%06d.corp', i), '0.1.0', 1700000000000, 1760000000000 FROM n;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $rows)
INSERT INTO inv_facts(device, version, serial, serial_key, os, cpu, memory, disk)
  SELECT printf('dev-%06d', i), 1, printf('SN%06d', i), printf('sn%06d', i), 'Debian GNU/Linux 12 (bookworm)',
         'Intel(R) Core(TM) i5-1145G7', 17179869184, 512110190592 FROM n;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $rows)
INSERT INTO inv_macs(device, mac)
  SELECT printf('dev-%06d', i), printf('52:54:00:%02x:%02x:%02x', (i >> 16) & 255, (i >> 8) & 255, i & 255) FROM n;
COMMIT;
SQL
t1=$(date +%s.%N)
start_broker

python3 - "$rows" "$d/assets.csv" <<'PY'
import csv, sys
n, path = int(sys.argv[1]), sys.argv[2]
depts = ["Finance", "Sales", "Engineering", "Support", "Legal", "HR", "Ops", "Marketing"]
with open(path, "w", newline="") as f:
    w = csv.writer(f, lineterminator="\r\n")
    w.writerow(["Asset Tag", "Name", "Serial", "Model", "Manufacturer", "Category", "Location", "Department",
                "Checked Out To", "Purchase Date", "Warranty Months", "Notes", "Cost Center"])
    for i in range(1, n + 1):
        serial = "SN%06d" % i if i % 10 else "NEW%06d" % i  # one in ten: no device yet
        w.writerow(["LT-%06d" % i, "ws-%06d.corp" % i, serial, "ThinkPad T14 Gen %d" % (i % 5), "Lenovo", "Laptop",
                    "Site %d" % (i % 40), depts[i % len(depts)], "user%06d@example.com" % i,
                    "2024-%02d-15" % (i % 12 + 1), "36", "bought in batch %d" % (i // 1000), str(4000 + i % 300)])
PY

tether=("$bin/console/tether" --broker "127.0.0.1:$port" --ca "$p/ca.pem" --cert "$p/bench-admin.pem"
        --key "$p/bench-admin.key" --timeout 600s)
timed() { # label, then the command; prints seconds and keeps stdout in $d/out
  local s e
  s=$(date +%s.%N)
  "$@" >"$d/out" 2>"$d/err" || { echo "bench_assets: $1 failed: $(cat "$d/err")" >&2; exit 1; }
  e=$(date +%s.%N)
  python3 -c "print('%.2f' % ($e - $s))"
}
count() { python3 -c "import json,sys; r=json.load(open('$d/out')); print(' '.join('%s=%s' % (k, r[k]) for k in sys.argv[1:]))" "$@"; }

echo "asset records: $rows devices in the store, a CSV of $rows rows ($(du -h "$d/assets.csv" | cut -f1)), build $bin"
printf '  %-44s %s s\n' "fleet written into the store (sqlite3)" "$(python3 -c "print('%.2f' % ($t1 - $t0))")"
s=$(timed "${tether[@]}" inventory import "$d/assets.csv" --dry-run --json)
printf '  %-44s %s s   %s\n' "import --dry-run" "$s" "$(count new matched no_device)"
s=$(timed "${tether[@]}" inventory import "$d/assets.csv" --json)
printf '  %-44s %s s   %s\n' "import" "$s" "$(count new matched no_device devices_without_record)"
s=$(timed "${tether[@]}" inventory import "$d/assets.csv" --json)
printf '  %-44s %s s   %s\n' "import again (the same file)" "$s" "$(count new changed unchanged)"
s=$(timed "${tether[@]}" inventory export)
cp "$d/out" "$d/export.csv"
printf '  %-44s %s s   %s lines, %s\n' "export --format csv" "$s" "$(($(wc -l <"$d/export.csv") - 1))" "$(du -h "$d/export.csv" | cut -f1)"
s=$(timed "${tether[@]}" inventory export --format json)
printf '  %-44s %s s   %s\n' "export --format json" "$s" "$(du -h "$d/out" | cut -f1)"
s=$(timed "${tether[@]}" inventory import "$d/export.csv" --json)
printf '  %-44s %s s   %s\n' "import of the export (round trip)" "$s" "$(count new changed unchanged skipped)"
s=$(timed "${tether[@]}" devices --json --where department=finance)
printf '  %-44s %s s   %s devices\n' "devices --where department=finance" "$s" "$(python3 -c "import json; print(len(json.load(open('$d/out'))))")"
s=$(timed "${tether[@]}" devices --json --where owner=user000042@example.com)
printf '  %-44s %s s   %s devices\n' "devices --where owner=ONE" "$s" "$(python3 -c "import json; print(len(json.load(open('$d/out'))))")"
printf '  %-44s %s\n' "broker peak memory (VmHWM)" "$(grep VmHWM /proc/$pid/status | awk '{print $2, $3}')"
stop_broker
printf '  %-44s %s\n' "store size (broker.db + wal)" "$(du -ch "$d/data"/broker.db* | tail -1 | cut -f1)"
