#!/bin/sh
# Installs everything vane needs to build, run and test, from the Debian 12
# archive. Used by both README commands and by CI. Idempotent: skips apt when
# every package is already installed. The JDK and Maven are for the tests'
# Apache Kafka peer (scripts/install-kafka.sh fetches Kafka itself).
set -eu

PACKAGES="build-essential cmake ninja-build pkg-config git
  librdkafka-dev libpaho-mqttpp-dev libpaho-mqtt-dev libssl-dev libmodbus-dev
  libsqlite3-dev sqlite3 nlohmann-json3-dev libcli11-dev libcpp-httplib-dev
  libpcre2-dev systemd libgtest-dev libgmock-dev libbenchmark-dev
  dpkg-dev file json-schema-test-suite kcat mosquitto mosquitto-clients openssl python3 python3-pymodbus python3-serial python3-serial-asyncio socat
  prometheus chromium collectd-core
  openjdk-17-jre-headless maven"

missing=""
for p in $PACKAGES; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -z "$missing" ]; then
  echo "install-deps: all packages present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "install-deps: run as root or install sudo" >&2; exit 1; }
  SUDO=sudo
fi
echo "install-deps: installing:$missing"
$SUDO apt-get update -qq
# shellcheck disable=SC2086
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
