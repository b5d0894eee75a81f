#!/bin/sh
# Installs Apache Kafka (tests/kafka/pom.xml: kafka_2.13 and its runtime
# dependencies, from Maven Central) into a cache folder that survives between
# runs on one machine, for the tests and benchmarks that run a real broker.
#
#   scripts/install-kafka.sh        prints the folders on success
#
# Two versions: the pom's kafka.version (the current 4.x line, the peer of
# every test), and the last 3.x line, for the one thing a 4.x broker refuses
# Debian 12's librdkafka 2.0.2: SCRAM (its client-final nonce is rejected by
# 4.x brokers; fixed in librdkafka 2.6.1). See docs/RELIABILITY.md.
#
# Each version's folder: $VANE_KAFKA_CACHE/kafka-<version>, default
# ~/.cache/vane/kafka-<version>. It holds libs/*.jar and `classpath`, written
# last, so a folder with a classpath file is complete. Needs java (17+) and
# mvn (scripts/install-deps.sh installs both). On failure it says why in one
# line and exits 1; the tests that need Kafka then fail with that reason
# (they never fall back to the mock).
set -eu
cd "$(dirname "$0")/.."
POM=tests/kafka/pom.xml
PRIMARY=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$POM")
VERSIONS="$PRIMARY 3.9.1"
CACHE=${VANE_KAFKA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vane}

for tool in java mvn; do
  command -v "$tool" >/dev/null 2>&1 || {
    echo "install-kafka: FAILED: $tool not found (scripts/install-deps.sh installs it)" >&2; exit 1; }
done

install_version() {
VERSION=$1
HOME_DIR=$CACHE/kafka-$VERSION
if [ -s "$HOME_DIR/classpath" ] && [ "$HOME_DIR/classpath" -nt "$POM" ]; then
  echo "$HOME_DIR"
  return 0
fi

mkdir -p "$HOME_DIR"
rm -rf "$HOME_DIR/libs" "$HOME_DIR/classpath"
log="$HOME_DIR/maven.log"
if ! mvn -B -q -f "$POM" dependency:copy-dependencies -DincludeScope=runtime -Dkafka.version="$VERSION" \
       -DoutputDirectory="$HOME_DIR/libs" >"$log" 2>&1; then
  why=$(grep -m1 -E '\[ERROR\]' "$log" | cut -c1-300)
  echo "install-kafka: FAILED: cannot resolve org.apache.kafka:kafka_2.13:$VERSION with Maven: ${why:-see $log}" >&2
  exit 1
fi
ls "$HOME_DIR"/libs/kafka_2.13-"$VERSION".jar >/dev/null 2>&1 || {
  echo "install-kafka: FAILED: Maven finished but kafka_2.13-$VERSION.jar is not in $HOME_DIR/libs" >&2; exit 1; }
# The classpath, written last and renamed into place: its presence means done.
ls "$HOME_DIR"/libs/*.jar | tr '\n' ':' | sed 's/:$//' >"$HOME_DIR/classpath.tmp"
mv "$HOME_DIR/classpath.tmp" "$HOME_DIR/classpath"
echo "$HOME_DIR"
}

for v in $VERSIONS; do install_version "$v"; done
