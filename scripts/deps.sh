#!/usr/bin/env bash
# Installs every Debian package that Tether's build, tests and benchmarks need.
# Idempotent: packages already present are skipped, so a warm machine costs one dpkg query.
set -euo pipefail

pkgs=(
  build-essential cmake ninja-build pkg-config
  libssl-dev openssl libuv1-dev libprotobuf-c-dev protobuf-c-compiler
  libzstd-dev zstd libsqlite3-dev sqlite3 libssh-dev libcmocka-dev libjansson-dev
  clang libclang-rt-14-dev llvm   # llvm: llvm-symbolizer, so sanitizer reports name their lines
  python3 python3-cryptography procps iproute2
  openssh-server openssh-client asciinema
  chromium   # the HTML report is rendered headless in the tests
  dpkg-dev lintian   # scripts/package.sh: dpkg-shlibdeps and dpkg-buildflags; the packages' check
  mmdebstrap   # the packages installed, reinstalled and purged in a fresh Debian 12 root
  help2man   # scripts/package.sh: the man pages, made from each program's --help and --version
)

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
echo "deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
