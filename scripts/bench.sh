#!/bin/sh
# Runs the benchmarks (tests/bench/) on a release-like build and prints the
# figures and ratios as Markdown for docs/BENCHMARKS.md. Everything that
# forwards to Kafka runs against a real Apache Kafka (one KRaft node on
# loopback, tests/support/kafka_peer_main.cpp), and every Kafka-facing figure
# of vane comes with its ratio to a plain librdkafka producer
# (tests/bench/kafka_bench.cpp) sending the same payloads to the same broker
# in the same run.
#
#   scripts/bench.sh [--quick]
#
# --quick: shorter runs everywhere (tens of minutes instead of about an
# hour); the figures are rougher. E2E_ARGS adds arguments to
# tests/bench/e2e_bench.py (e.g. E2E_ARGS="--json /tmp/e2e.json");
# VANE_BENCH_KAFKA_HEAP sets the broker's -Xmx (default 1g).
set -eu
cd "$(dirname "$0")/.."
QUICK=
case "${1:-}" in
  --quick) QUICK=1 ;;
  "") ;;
  *) echo "usage: scripts/bench.sh [--quick]" >&2; exit 2 ;;
esac
# Installing and building report on stderr: stdout is the Markdown.
scripts/install-deps.sh >&2
scripts/install-kafka.sh >&2
BUILD_DIR=${BUILD_DIR:-build} scripts/build.sh -DVANE_BUILD_TESTS=ON >&2
B=${BUILD_DIR:-build}
if [ -n "$QUICK" ]; then
  SCHEMA_TIME=0.5 REPS=2 BUFFER_TIME=0.2 MODBUS_S=5 MQTT_N=20000 E2E_MODE=--quick HTTP_S=8
else
  SCHEMA_TIME=2 REPS=3 BUFFER_TIME=1 MODBUS_S=20 MQTT_N=100000 E2E_MODE= HTTP_S=20
fi
out=$(mktemp)
"$B/tests/bench/schema_bench" --benchmark_min_time=$SCHEMA_TIME --benchmark_repetitions=$REPS \
  --benchmark_report_aggregates_only=true --benchmark_format=json > "$out"
python3 - "$out" "$REPS" <<'PY'
import json, sys, platform, datetime, os
r = json.load(open(sys.argv[1]))
reps = int(sys.argv[2])
med = {b["run_name"]: b["cpu_time"] for b in r["benchmarks"] if b.get("aggregate_name") == "median"}
vane, base = med["BM_VaneCompiledSchema"], med["BM_TreeWalkingBaseline"]
cpu = r["context"].get("host_name", "?"), r["context"]["num_cpus"], r["context"]["mhz_per_cpu"]
print(f"### Schema check, {datetime.date.today()} ({platform.machine()}, {cpu[1]} cores @ {cpu[2]} MHz)")
print()
print(f"| benchmark | ns per reading (median of {reps}) |")
print("|---|---|")
print(f"| vane compiled schema on the Reading | {vane:.0f} |")
print(f"| baseline: reading -> nlohmann::json, tree-walking validator | {base:.0f} |")
print()
print(f"Ratio baseline / vane: **{base / vane:.1f}x** (same run).")
PY
rm -f "$out"
echo
out=$(mktemp)
"$B/tests/bench/buffer_bench" --benchmark_min_time=$BUFFER_TIME --benchmark_repetitions=$((REPS + 2)) \
  --benchmark_enable_random_interleaving=true \
  --benchmark_report_aggregates_only=true --benchmark_format=json > "$out"
python3 - "$out" "$((REPS + 2))" <<'PY'
import json, sys, platform, datetime
r = json.load(open(sys.argv[1]))
reps = int(sys.argv[2])
# run_name: BM_Vane/<level>/<batch>/real_time or BM_Ceiling/...
med, cv = {}, {}
for b in r["benchmarks"]:
    kind, level, batch = b["run_name"].split("/")[:3]
    if b.get("aggregate_name") == "median":
        med[(kind, level, int(batch))] = b["items_per_second"]
    if b.get("aggregate_name") == "cv":
        cv[(kind, level, int(batch))] = b["real_time"]
cpu = r["context"]["num_cpus"], r["context"]["mhz_per_cpu"]
print(f"### Buffer durability levels (buffer.sync), {datetime.date.today()} "
      f"({platform.machine()}, {cpu[0]} cores @ {cpu[1]} MHz)")
print()
print("| batch | buffer.sync | vane readings/s | raw SQLite ceiling readings/s | vane / ceiling |")
print("|---|---|---|---|---|")
for batch in sorted({k[2] for k in med}):
    for level in ("off", "normal", "full"):
        v, c = med[("BM_Vane", level, batch)], med[("BM_Ceiling", level, batch)]
        print(f"| {batch} | {level} | {v:,.0f} | {c:,.0f} | {v / c:.2f} |")
print()
print(f"Median of {reps} repetitions (interleaved), wall-clock time, same run.")
noisy = [f"{k[0][3:].lower()} {k[1]}/{k[2]} ({v:.0%})" for k, v in sorted(cv.items()) if v > 0.2]
if noisy:
    print("Spread over 20 % (coefficient of variation): " + ", ".join(noisy) + ".")
PY
rm -f "$out"
echo
python3 - "$B" "$MODBUS_S" <<'PY'
import json, subprocess, sys, datetime, platform
out = subprocess.run(["/usr/bin/python3", "tests/bench/modbus_bench.py", "--build", sys.argv[1], "--seconds", sys.argv[2]],
                     capture_output=True, text=True, check=True).stdout
r = json.loads(out.strip().splitlines()[-1])
print(f"### Modbus polling, {datetime.date.today()} ({platform.machine()})")
print()
print(f"vane polling vane-sim over loopback: {r['devices']} devices x {r['registers']} holding registers x {r['hz']:g} Hz "
      f"= {r['register_reads_per_s']} register reads/s landed in Kafka (Apache Kafka, one node, loopback), "
      f"for {r['seconds']} s.")
print()
print("| CPU per register read | CPU share of one core | readings |")
print("|---|---|---|")
print(f"| {r['cpu_us_per_register_read']} µs | {r['cpu_percent']} % | {r['readings']} |")
PY
echo
python3 - "$B" "$MQTT_N" <<'PY'
import json, subprocess, sys, datetime, platform
out = subprocess.run(["/usr/bin/python3", "tests/bench/mqtt_bench.py", "--build", sys.argv[1], "--messages", sys.argv[2]],
                     capture_output=True, text=True, check=True).stdout
r = json.loads(out.strip().splitlines()[-1])
print(f"### MQTT ingest, {datetime.date.today()} ({platform.machine()})")
print()
print("vane-sim mqtt -> mosquitto -> vane -> Apache Kafka (one node, loopback).")
print()
print("| published (QoS 1) | committed | read back from Kafka | lost | end to end | vane CPU per message |")
print("|---|---|---|---|---|---|")
print(f"| {r['published']} | {r['committed']} | {r['in_kafka']} | {r['lost']} | {r['messages_per_s']} msg/s | "
      f"{r['cpu_us_per_message']} µs |")
PY
echo
# End to end, with the plain producer, the SQLite ceiling and collectd as the
# Modbus peer: absolute figures, ratios (vane / plain producer, vane /
# ceiling, vane / peer) and the targets, as Markdown.
# shellcheck disable=SC2086 # E2E_MODE and E2E_ARGS are word lists
/usr/bin/python3 tests/bench/e2e_bench.py --build "$B" $E2E_MODE ${E2E_ARGS:-}
echo
# What watching costs: /metrics scraped every second and the status page
# open, against idle, rounds alternating.
/usr/bin/python3 tests/bench/http_bench.py --build "$B" --seconds "$HTTP_S"
