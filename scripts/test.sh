#!/bin/sh
# Installs, builds and runs every test (unit, integration, fault) with ctest.
set -eu
cd "$(dirname "$0")/.."
scripts/install-deps.sh
# Apache Kafka for the delivery tests. If it cannot be had, say so and go on:
# the unit tests still run, and every test that needs Kafka fails naming why.
scripts/install-kafka.sh || echo "test.sh: Apache Kafka could not be installed; the tests that need it will fail" >&2
BUILD_DIR=${BUILD_DIR:-build} scripts/build.sh -DVANE_BUILD_TESTS=ON
cd "${BUILD_DIR:-build}"
ctest --output-on-failure --timeout 600 -j2
