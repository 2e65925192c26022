#!/usr/bin/env bash
# Builds Tether's Debian packages and checks them with lintian:
#   scripts/package.sh   -> dist/tether-broker_V_ARCH.deb, tether-agent_V_ARCH.deb, tether-console_V_ARCH.deb
# A Release tree in build/pkg (gcc, Debian's hardening flags from dpkg-buildflags, prefix
# /usr), only the five programs and their man pages (help2man) built, then CPack's DEB
# generator over the install rules (packaging/CMakeLists.txt). lintian's report is printed;
# an error (E:) fails the script.
# TT_PKG_BUILD and TT_PKG_DIST move the build tree and the output (the ctest suite uses its
# own); TT_PKG_NO_DEPS=1 skips scripts/deps.sh.
# TT_PKG_VERSION=V builds version V instead of the project's (CMake's TT_VERSION_OVERRIDE:
# the packages' Version and what the programs report), in a tree of its own (build/pkg-V),
# so that the package test can upgrade from one version to another; the changelog stays
# the tree's. TT_PKG_ONLY="tether-broker ..." builds only those packages and their programs.
# TT_PKG_NO_LINTIAN=1 skips lintian (the package test runs it itself).
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD
version=${TT_PKG_VERSION:-}
build=${TT_PKG_BUILD:-$top/build/pkg${version:+-$version}}
dist=${TT_PKG_DIST:-$top/dist}
[ "${TT_PKG_NO_DEPS:-0}" = 1 ] || bash scripts/deps.sh

# package -> its CPack component and its programs (packaging/CMakeLists.txt)
declare -A component=([tether-broker]=broker [tether-agent]=agent [tether-console]=console)
declare -A programs=([tether-broker]="tether-broker tether-certs tether-sshd" [tether-agent]=tether-agent
                     [tether-console]=tether)
only=${TT_PKG_ONLY:-tether-broker tether-agent tether-console}
targets=(tt_pkg_changelog)
components=()
for pkg in $only; do
  [ -n "${component[$pkg]:-}" ] || { echo "package: TT_PKG_ONLY: no package $pkg" >&2; exit 2; }
  read -ra progs <<<"${programs[$pkg]}"
  targets+=("${progs[@]}")
  for prog in "${progs[@]}"; do targets+=("tt_pkg_man_$prog"); done   # help2man, from the program
  components+=("${component[$pkg]}")
done

# What a Debian package build gets (debhelper's defaults), every hardening feature on:
# -fstack-protector-strong, _FORTIFY_SOURCE, RELRO and BIND_NOW, PIE. -O2 comes from here,
# so the Release type only adds NDEBUG.
export DEB_BUILD_MAINT_OPTIONS=hardening=+all
# The man pages' date is the changelog's, as dpkg-buildpackage would have it: the same tree
# makes the same pages.
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(dpkg-parsechangelog -l packaging/deb/changelog -STimestamp)}
export SOURCE_DATE_EPOCH
cflags="$(dpkg-buildflags --get CPPFLAGS) $(dpkg-buildflags --get CFLAGS)"
ldflags=$(dpkg-buildflags --get LDFLAGS)

# CMAKE_SKIP_INSTALL_ALL_DEPENDENCY: cpack installs what the build below made, without
# building every test and benchmark first. TT_VERSION_OVERRIDE is always given, empty by
# default, so a tree once configured with another version does not keep it.
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_C_FLAGS_RELEASE=-DNDEBUG \
  -DCMAKE_INSTALL_PREFIX=/usr -DCMAKE_C_COMPILER=gcc -DTT_FUZZ=OFF -DTT_SANITIZE=OFF \
  -DCMAKE_SKIP_INSTALL_ALL_DEPENDENCY=ON "-DTT_VERSION_OVERRIDE=$version" \
  "-DCMAKE_C_FLAGS=$cflags" "-DCMAKE_EXE_LINKER_FLAGS=$ldflags" >/dev/null
cmake --build "$build" -j2 --target "${targets[@]}" \
  >"$build/build.log" 2>&1 || { tail -n 60 "$build/build.log"; exit 1; }

rm -f "$build"/tether-*.deb
cpack_args=(-G DEB)
[ -z "${TT_PKG_ONLY:-}" ] || cpack_args+=(-D "CPACK_COMPONENTS_ALL=$(IFS=';'; echo "${components[*]}")")
(cd "$build" && cpack "${cpack_args[@]}") >"$build/cpack.log" 2>&1 || { cat "$build/cpack.log"; exit 1; }
mkdir -p "$dist"
rm -f "$dist"/tether-*.deb
cp "$build"/tether-*.deb "$dist"/
echo "package: built"
for deb in "$dist"/tether-*.deb; do
  printf '  %s  (%s)\n' "${deb#"$top"/}" "$(dpkg-deb -f "$deb" Depends)"
done

if [ "${TT_PKG_NO_LINTIAN:-0}" = 1 ]; then
  exit 0
fi
if ! command -v lintian >/dev/null; then
  echo "package: lintian is not installed (scripts/deps.sh installs it): packages not checked"
  exit 0
fi
# --fail-on error: warnings are printed, not fatal; each tag that stays is explained in the
# package's lintian overrides (packaging/deb/PKG/lintian-overrides).
echo "package: lintian"
if lintian --fail-on error --tag-display-limit 0 --display-info "$dist"/tether-*.deb; then
  echo "package: lintian: no errors"
else
  echo "package: lintian found errors" >&2
  exit 1
fi
