#!/usr/bin/env bash
# The README's test command: installs what is missing, builds with AddressSanitizer +
# UndefinedBehaviorSanitizer (warnings are errors) and runs every test: unit, integration,
# fuzz (bounded corpus runs). Extra arguments go to ctest (e.g. -R integration).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cmake --preset debug >/dev/null
cmake --build --preset debug
ctest --preset debug "$@"
