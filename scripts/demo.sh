#!/bin/sh
# The laptop demo: installs, builds, and runs vane with 15 simulated turbines
# into an in-process Kafka cluster. Ctrl-C stops it cleanly.
set -eu
cd "$(dirname "$0")/.."
scripts/install-deps.sh
BUILD_DIR=${BUILD_DIR:-build} scripts/build.sh -DVANE_BUILD_TESTS=OFF
exec "${BUILD_DIR:-build}/agent/vane" run -c examples/laptop.jsonc
