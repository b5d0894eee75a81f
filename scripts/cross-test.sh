#!/bin/sh
# Cross-builds vane for ARM and runs the unit tests under qemu-user.
#   scripts/cross-test.sh arm64|armhf
# Installs (idempotently, like install-deps.sh) the cross compiler, qemu-user-static
# and the ARCH's -dev packages from the Debian multiarch archive, configures
# build-ARCH/ with toolchains/TRIPLET.cmake, builds vane and the unit tests
# only, and runs `ctest -L unit` through qemu.
# Integration and fault tests are skipped for ARM: they drive native helper
# processes (the Kafka mock, vane-sim, pymodbus, mosquitto) and real peers.
# Benchmarks are not built for ARM (tests/CMakeLists.txt).
#
# Exit codes: 0 all unit tests passed; 1 build or test failure (or, for
# arm64, any failure); 2 usage; 3 armhf only: the archive could not provide
# a consistent set of :armhf packages (nothing was built or tested).
set -eu
cd "$(dirname "$0")/.."

ARCH=${1:-}
case "$ARCH" in
  arm64) TRIPLET=aarch64-linux-gnu ;;
  armhf) TRIPLET=arm-linux-gnueabihf ;;
  *) echo "usage: $0 arm64|armhf" >&2; exit 2 ;;
esac
BUILD_DIR=${BUILD_DIR:-build-$ARCH}
say() { echo "cross-test $ARCH: $*"; }

# Host side: cmake, ninja, pkg-config and the arch-independent headers
# (nlohmann-json, CLI11) and test data (json-schema-test-suite).
scripts/install-deps.sh

# Target side, as :ARCH: libc6 (its loader is what qemu runs, see the
# toolchain) and the arch-specific -dev packages vane and the unit
# tests link. No libbenchmark-dev: benchmarks are not cross-built.
TARGET_PACKAGES="libc6 librdkafka-dev libpaho-mqttpp-dev libpaho-mqtt-dev libssl-dev
  libmodbus-dev libsqlite3-dev libpcre2-dev libgtest-dev libgmock-dev libcpp-httplib-dev"
HOST_PACKAGES="crossbuild-essential-$ARCH qemu-user-static"

missing=""
for p in $HOST_PACKAGES; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
for p in $TARGET_PACKAGES; do
  dpkg-query -W -f='${Status}' "$p:$ARCH" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p:$ARCH"
done

if [ -n "$missing" ]; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "cross-test: run as root or install sudo" >&2; exit 1; }
    SUDO=sudo
  fi
  # Packages that cannot be installed: fatal for arm64. For armhf a distinct
  # exit code: the archive's armhf indices and security updates sometimes lag
  # the native and arch-all ones, and Multi-Arch: same packages (libssl-dev,
  # libc6, ...) must have exactly the native version. An architecture this
  # run added is removed again, so that later apt-get updates (install-deps.sh,
  # arm64) do not trip over its broken index.
  added_arch=""
  install_failed() {
    if [ -n "$added_arch" ]; then
      $SUDO dpkg --remove-architecture "$ARCH" || true
    fi
    if [ "$ARCH" = armhf ]; then
      say "NOT TESTED: the Debian archive does not provide a consistent set of :armhf packages ($1); armhf was neither built nor tested" >&2
      exit 3
    fi
    say "FAILED: $1" >&2
    exit 1
  }
  if ! dpkg --print-foreign-architectures | grep -qx "$ARCH"; then
    say "adding dpkg architecture $ARCH"
    $SUDO dpkg --add-architecture "$ARCH"
    added_arch=yes
  fi
  say "installing:$missing"
  if ! $SUDO apt-get update -qq; then
    # armhf: a failed armhf index may still leave a resolvable set; let the
    # resolver decide.
    [ "$ARCH" = armhf ] || install_failed "apt-get update failed"
    say "apt-get update failed; trying the package lists apt has" >&2
  fi
  # Resolve first (no changes) so a dependency conflict is told apart from a
  # download or dpkg failure.
  # shellcheck disable=SC2086
  if ! resolve=$($SUDO apt-get install -s --no-install-recommends $missing 2>&1); then
    echo "$resolve" | sed -n '/unmet dependencies/,$p' >&2
    install_failed "apt cannot resolve them: version skew or missing packages, see above"
  fi
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing \
    || install_failed "apt-get install failed"
fi

# From here on every failure is a real build or test failure, for armhf too.
start=$(date +%s)
cmake -S . -B "$BUILD_DIR" -G Ninja \
  -DCMAKE_TOOLCHAIN_FILE="$PWD/toolchains/$TRIPLET.cmake" \
  -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-RelWithDebInfo}" -DVANE_BUILD_TESTS=ON
# Only what the unit tests need, and vane itself (built so that ARM-only
# compile errors in the daemon show up here).
cmake --build "$BUILD_DIR" --target vane vane_unit_tests
built=$(date +%s)

log="$BUILD_DIR/unit-tests.log"
set +e
ctest --test-dir "$BUILD_DIR" -L unit --no-tests=error --output-on-failure --timeout 600 -j2 >"$log" 2>&1
rc=$?
set -e
tested=$(date +%s)
cat "$log"
summary=$(grep -E "tests passed, [0-9]+ tests failed out of [0-9]+" "$log" || true)

size=$(mktemp)
"$TRIPLET-strip" -o "$size" "$BUILD_DIR/agent/vane"
stripped=$(stat -c %s "$size")
rm -f "$size"

say "build $((built - start)) s, unit tests under qemu $((tested - built)) s"
say "stripped vane: $stripped bytes"
if [ $rc -ne 0 ]; then
  say "FAILED: ${summary:-ctest exit $rc}" >&2
  exit 1
fi
passed=$(echo "$summary" | sed -E 's/.*out of ([0-9]+).*/\1/')
say "$passed unit tests passed under qemu"

# The .deb for this architecture, checked as the native one is (dpkg-deb -c
# and -I, conffiles, Depends from shlibdeps; the packaged binaries run under
# qemu).
cmake --build "$BUILD_DIR" --target vane-sim
if ! ctest --test-dir "$BUILD_DIR" -L package --no-tests=error --output-on-failure --timeout 600; then
  say "FAILED: the $ARCH package check" >&2
  exit 1
fi
say "package checked: $(cd "$BUILD_DIR" && ls tests/package/work/out/*.deb 2>/dev/null | tr '\n' ' ')"
