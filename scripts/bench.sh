#!/bin/sh
# Runs the benchmarks (tests/bench/) on a release-like build and prints the
# figures and ratios as Markdown for docs/BENCHMARKS.md.
set -eu
cd "$(dirname "$0")/.."
scripts/install-deps.sh
BUILD_DIR=${BUILD_DIR:-build} scripts/build.sh -DVANE_BUILD_TESTS=ON
B=${BUILD_DIR:-build}
out=$(mktemp)
"$B/tests/bench/schema_bench" --benchmark_min_time=2 --benchmark_repetitions=3 \
  --benchmark_report_aggregates_only=true --benchmark_format=json > "$out"
python3 - "$out" <<'PY'
import json, sys, platform, datetime, os
r = json.load(open(sys.argv[1]))
med = {b["run_name"]: b["cpu_time"] for b in r["benchmarks"] if b.get("aggregate_name") == "median"}
vane, base = med["BM_VaneCompiledSchema"], med["BM_TreeWalkingBaseline"]
cpu = r["context"].get("host_name", "?"), r["context"]["num_cpus"], r["context"]["mhz_per_cpu"]
print(f"### Schema check, {datetime.date.today()} ({platform.machine()}, {cpu[1]} cores @ {cpu[2]} MHz)")
print()
print("| benchmark | ns per reading (median of 3) |")
print("|---|---|")
print(f"| vane compiled schema on the Reading | {vane:.0f} |")
print(f"| baseline: reading -> nlohmann::json, tree-walking validator | {base:.0f} |")
print()
print(f"Ratio baseline / vane: **{base / vane:.1f}x** (same run).")
PY
rm -f "$out"
echo
out=$(mktemp)
"$B/tests/bench/buffer_bench" --benchmark_min_time=1 --benchmark_repetitions=5 \
  --benchmark_enable_random_interleaving=true \
  --benchmark_report_aggregates_only=true --benchmark_format=json > "$out"
python3 - "$out" <<'PY'
import json, sys, platform, datetime
r = json.load(open(sys.argv[1]))
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
print("Median of 5 repetitions (interleaved), wall-clock time, same run.")
noisy = [f"{k[0][3:].lower()} {k[1]}/{k[2]} ({v:.0%})" for k, v in sorted(cv.items()) if v > 0.2]
if noisy:
    print("Spread over 20 % (coefficient of variation): " + ", ".join(noisy) + ".")
PY
rm -f "$out"
echo
python3 - "$B" <<'PY'
import json, subprocess, sys, datetime, platform
out = subprocess.run(["/usr/bin/python3", "tests/bench/modbus_bench.py", "--build", sys.argv[1], "--seconds", "20"],
                     capture_output=True, text=True, check=True).stdout
r = json.loads(out.strip().splitlines()[-1])
print(f"### Modbus polling, {datetime.date.today()} ({platform.machine()})")
print()
print(f"vane polling vane-sim over loopback: {r['devices']} devices x {r['registers']} holding registers x {r['hz']:g} Hz "
      f"= {r['register_reads_per_s']} register reads/s, into the Kafka mock helper, for {r['seconds']} s.")
print()
print("| CPU per register read | CPU share of one core | readings |")
print("|---|---|---|")
print(f"| {r['cpu_us_per_register_read']} µs | {r['cpu_percent']} % | {r['readings']} |")
PY
echo
python3 - "$B" <<'PY'
import json, subprocess, sys, datetime, platform
out = subprocess.run(["/usr/bin/python3", "tests/bench/mqtt_bench.py", "--build", sys.argv[1], "--messages", "100000"],
                     capture_output=True, text=True, check=True).stdout
r = json.loads(out.strip().splitlines()[-1])
print(f"### MQTT ingest, {datetime.date.today()} ({platform.machine()})")
print()
print("| published (QoS 1) | committed | lost | end to end | vane CPU per message |")
print("|---|---|---|---|---|")
print(f"| {r['published']} | {r['committed']} | {r['lost']} | {r['messages_per_s']} msg/s | {r['cpu_us_per_message']} µs |")
PY
