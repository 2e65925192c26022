#!/usr/bin/env bash
# Builds the release preset and runs every benchmark in tests/bench/. Prints figures only.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cmake --preset release >/dev/null
cmake --build --preset release >/dev/null
echo "== codec + mux, in process"
build/release/tests/bench/bench_codec 4096
echo
bash tests/bench/bench_link.sh build/release "${1:-1G}"
echo
bash tests/bench/bench_shell.sh build/release
echo
bash tests/bench/bench_gateway.sh build/release
echo
BENCH_LOCK_ROUNDS=${BENCH_LOCK_ROUNDS:-1} bash tests/bench/bench_store_lock.sh build/release
echo
bash tests/bench/bench_files.sh build/release
echo
bash tests/bench/bench_netem.sh build/release
echo
bash tests/bench/bench_collect.sh build/release
