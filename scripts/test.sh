#!/bin/sh
# Installs, builds and runs every test (unit, integration, fault) with ctest.
set -eu
cd "$(dirname "$0")/.."
scripts/install-deps.sh
BUILD_DIR=${BUILD_DIR:-build} scripts/build.sh -DVANE_BUILD_TESTS=ON
cd "${BUILD_DIR:-build}"
ctest --output-on-failure --timeout 600 -j2
