#!/usr/bin/python3
"""Modbus polling, vane vs collectd: CPU per register read and RSS.

    collectd_peer.py --build BUILD_DIR [--seconds 20] [--warmup 3] [--devices 10] [--hz 10]
                     [--map turbine|bench] [--markdown]

One vane-sim serves `devices` turbines as Modbus TCP slaves (unit ids
1..N, simulator/modbus_map.h). Polled, one after the other, over the same
wall time and into the same broker (Apache Kafka, vane-kafka-peer: started
for the run, or the caller's), each on fresh topics:

  vane      one modbus_tcp source: every device, the map's registers, at
            `hz`; buffer.sync normal -> topic telemetry
  collectd  collectd 5.12 (Debian collectd-core, /usr/sbin/collectd -f):
            plugin modbus with the same registers of the same devices at the
            same interval -> plugin write_kafka, JSON, topic collectd,
            acks=all and idempotence as vane's producer

Maps: turbine, the five float32 input registers (addresses 0-9, ABCD) that
examples/modbus.jsonc reads, with the turbine schema on vane's side; bench,
the 100 uint16 holding registers from 16 that modbus_bench.py reads.

For each: CPU seconds (the sum of /proc/PID/task/*/schedstat, ns, every
thread of the process; /proc/PID/stat's utime+stime, in clock ticks, as a
check) over a window after a warm-up, divided by the register reads that
landed in Kafka in that window (read back by vane-bench-consumer: vane's
readings x registers per device; collectd's messages, one per value, x
registers per value); VmRSS at the end and VmHWM. Prints one JSON line
(--markdown: a Markdown table first). Exit 77 without collectd.

What each does per poll differs by design: vane reads a device's registers
in as few requests as the map allows (coalesced) and sends one message per
device; collectd's modbus plugin sends one request per Data block (value) and
write_kafka one message per value. The comparison is of the two tools doing
the same job (the same registers of the same slaves, into Kafka), not of
equal request counts; both counts are in the output.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_util import (Consumer, KafkaPeer, Lines, Procs, Vane, cpu_ns, cpu_s, install_signal_cleanup,  # noqa: E402
                        log, status_kb, wait_until)

COLLECTD = "/usr/sbin/collectd"
HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.path.dirname(os.path.dirname(HERE))
# Register maps (simulator/modbus_map.h). Each entry: field, address, and
# per map: vane table and type, collectd RegisterCmd and RegisterType,
# registers per value.
MAPS = {
    # The turbine map's input registers: five float32 ABCD (examples/modbus.jsonc).
    "turbine": {"regs": [("wind_speed", 0), ("pitch_angle", 2), ("power_output", 4), ("temperature", 6),
                         ("vibration", 8)],
                "table": "input", "type": "float32", "cmd": "ReadInput", "cd_type": "Float", "per_value": 2,
                "schema": "turbine"},
    # The benchmark block: 100 uint16 holding registers from 16 (tests/bench/modbus_bench.py).
    "bench": {"regs": [(f"r{k}", 16 + k) for k in range(100)],
              "table": "holding", "type": "uint16", "cmd": "ReadHolding", "cd_type": "Uint16", "per_value": 1,
              "schema": None},
}


def collectd_conf(d, port, bootstrap, topic, devices, interval_s, m):
    data = "\n".join(f"""  <Data "{name}">
    RegisterBase {addr}
    RegisterType {m['cd_type']}
    RegisterCmd {m['cmd']}
    Type gauge
    Instance "{name}"
  </Data>""" for name, addr in m["regs"])
    slaves = "\n".join(f"""    <Slave {u}>
      Instance "D-{u:03d}"
{chr(10).join(f'      Collect "{name}"' for name, _ in m["regs"])}
    </Slave>""" for u in range(1, devices + 1))
    return f"""# collectd_peer.py: collectd polling vane-sim, writing to Kafka.
Hostname "bench"
FQDNLookup false
BaseDir "{d}/collectd"
PIDFile "{d}/collectd.pid"
PluginDir "/usr/lib/collectd"
TypesDB "/usr/share/collectd/types.db"
Interval {interval_s}
LoadPlugin logfile
<Plugin logfile>
  LogLevel info
  File STDERR
  Timestamp true
</Plugin>
LoadPlugin modbus
LoadPlugin write_kafka
<Plugin modbus>
{data}
  <Host "vane-sim">
    Address "127.0.0.1"
    Port "{port}"
    Interval {interval_s}
{slaves}
  </Host>
</Plugin>
<Plugin write_kafka>
  Property "metadata.broker.list" "{bootstrap}"
  Property "enable.idempotence" "true"
  Property "linger.ms" "5"
  <Topic "{topic}">
    Format JSON
    Property "acks" "all"
  </Topic>
</Plugin>
"""


def vane_cfg(d, port, bootstrap, topics, devices, interval_ms, m=MAPS["turbine"]):
    src = {
        "name": "modbus", "type": "modbus_tcp", "host": "127.0.0.1", "port": port,
        "interval_ms": interval_ms, "timeout_ms": 500, "device_field": "turbine_id",
        "devices": [{"id": f"T-{u:03d}", "unit_id": u} for u in range(1, devices + 1)],
        "registers": [{"field": name, "table": m["table"], "address": addr, "type": m["type"]}
                      for name, addr in m["regs"]],
    }
    if m["schema"]:
        src["schema"] = m["schema"]
    return {
        "gateway": {"id": "gw-bench"},
        "buffer": {"path": f"{d}/buffer.db", "sync": "normal"},
        "kafka": {"brokers": bootstrap, **topics.kafka_cfg()},
        "schemas": {"turbine": f"{SOURCE_DIR}/examples/schemas/turbine.schema.json"},
        "http": {"listen": ""},
        "sources": [src],
    }


def measure(pid, cons, count, warmup, seconds):
    """CPU and what landed over a window after warmup. count(stats) -> messages."""
    time.sleep(warmup)  # start-up is not what is measured
    s0, c0, t0 = cons.stats(), cpu_ns(pid), cpu_s(pid)
    time.sleep(seconds)  # the measured window itself
    s1, c1, t1 = cons.stats(), cpu_ns(pid), cpu_s(pid)
    wall = (s1["t_us"] - s0["t_us"]) / 1e6
    return {"seconds": round(wall, 2), "cpu_s": round((c1 - c0) / 1e9, 4), "cpu_s_ticks": round(t1 - t0, 2),
            "messages": count(s1) - count(s0),
            "rss_kb": status_kb(pid, "VmRSS"), "peak_rss_kb": status_kb(pid, "VmHWM"),
            "skipped_offsets": s1["skipped_offsets"]}


def finish(m, register_reads, requests_per_s):
    m["register_reads"] = register_reads
    m["register_reads_per_s"] = round(register_reads / m["seconds"])
    m["modbus_requests_per_s"] = requests_per_s
    m["cpu_us_per_register_read"] = round(m["cpu_s"] * 1e6 / register_reads, 3) if register_reads else None
    m["cpu_share"] = round(m["cpu_s"] / m["seconds"], 4)
    return m


def run(build, seconds=20, warmup=3, devices=10, hz=10, workdir=None, map_name="turbine", kafka=None):
    """kafka: a running KafkaPeer to use; None: one started for this run."""
    m_ = MAPS[map_name]
    regs, per_value = m_["regs"], m_["per_value"]
    interval_ms = int(round(1000 / hz))
    d = tempfile.mkdtemp(prefix="vane-collectd-peer-", dir=workdir)
    out = {"map": map_name, "devices": devices, "hz": hz, "registers_per_device": len(regs) * per_value,
           "values_per_device": len(regs), "register_type": m_["type"], "table": m_["table"],
           "expected_register_reads_per_s": round(devices * hz * len(regs) * per_value)}
    try:
        with Procs() as procs:
            if kafka is None:
                kafka = KafkaPeer(procs, build)
            sim = procs.start([f"{build}/simulator/vane-sim", "modbus", "--listen", "127.0.0.1:0", "--turbines",
                               str(devices), "--interval-ms", str(interval_ms)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            line = Lines(sim).readline(20)
            port = int(line.rsplit(":", 1)[1])

            # vane
            with kafka.topics() as t:
                cons = Consumer(procs, build, kafka.bootstrap, t.read)
                v = Vane(procs, build, d, vane_cfg(d, port, kafka.bootstrap, t, devices, interval_ms, m_))
                v.wait_running()
                if not wait_until(lambda: cons.unique("modbus") > 0, 60):
                    raise RuntimeError(f"vane: nothing from the modbus source in Kafka:\n{v.log_text()[-3000:]}")
                m = measure(v.pid, cons, lambda s: s["sources"].get("modbus", {}).get("unique", 0), warmup, seconds)
                st = cons.stats()
                v.stop()
                cons.stop()
            dlq = st["topics"].get(t.dlq, 0)
            out["vane"] = finish(m, m["messages"] * len(regs) * per_value, round(devices * hz))
            out["vane"]["dead_letters"] = dlq
            log(f"peer: vane {out['vane']['cpu_us_per_register_read']} µs CPU per register read, "
                f"{out['vane']['register_reads_per_s']} reads/s, RSS {out['vane']['rss_kb']} kB")

            # collectd
            os.makedirs(f"{d}/collectd", exist_ok=True)
            with kafka.topics(partitions=3) as t:
                with open(f"{d}/collectd.conf", "w") as f:
                    f.write(collectd_conf(d, port, kafka.bootstrap, t.topic, devices, interval_ms / 1000, m_))
                dump = f"{d}/collectd-sample.tsv"
                cons = Consumer(procs, build, kafka.bootstrap, [t.topic], dump=dump, dump_count=3)
                err = open(f"{d}/collectd.stderr", "w+")
                cd = procs.start([COLLECTD, "-f", "-C", f"{d}/collectd.conf"], stderr=err, stdout=err)

                def collectd_log():
                    with open(f"{d}/collectd.stderr") as f:
                        return f.read()
                if not wait_until(lambda: cons.stats()["topics"].get(t.topic, 0) > 0 or cd.poll() is not None, 60):
                    raise RuntimeError(f"collectd: nothing in Kafka within 60 s:\n{collectd_log()[-3000:]}")
                if cd.poll() is not None:
                    raise RuntimeError(f"collectd exited {cd.returncode}:\n{collectd_log()[-3000:]}")
                m = measure(cd.pid, cons, lambda s: s["topics"].get(t.topic, 0), warmup, seconds)
                procs.stop(cd)
                err.close()
                cons.stop()
            out["collectd"] = finish(m, m["messages"] * per_value, round(devices * hz * len(regs)))
            with open(dump) as f:
                out["collectd"]["sample"] = f.readline().rstrip("\n").split("\t")[-1][:400]
            errors = [l for l in collectd_log().splitlines() if "error" in l.lower() or "failed" in l.lower()]
            out["collectd"]["log_errors"] = len(errors)
            out["collectd"]["log_error_sample"] = errors[:3]
            log(f"peer: collectd {out['collectd']['cpu_us_per_register_read']} µs CPU per register read, "
                f"{out['collectd']['register_reads_per_s']} reads/s, RSS {out['collectd']['rss_kb']} kB")
    finally:
        shutil.rmtree(d, ignore_errors=True)
    return out


def markdown(r, heading=True):
    v, c = r["vane"], r["collectd"]
    what = ("the turbine map's five float32 input registers" if r["map"] == "turbine"
            else f"{r['values_per_device']} {r['register_type']} {r['table']} registers")
    L = ["#### Modbus polling: vane vs collectd", ""] if heading else []
    L += [
        f"**{r['devices']} devices, {what} ({r['registers_per_device']} registers each), every "
        f"{1000 / r['hz']:.0f} ms**: {r['expected_register_reads_per_s']:,} register reads/s asked for; one vane-sim "
        f"(unit ids 1..{r['devices']}); one tool after the other, each into the same Kafka broker, "
        f"{v['seconds']:g} s windows. vane: modbus_tcp source, " + ("turbine schema, " if r["map"] == "turbine" else "") +
        "SQLite buffer (sync=normal), Kafka. collectd 5.12: modbus -> write_kafka (JSON, acks=all, idempotence).",
        "",
        "| | CPU per register read | register reads/s landed in Kafka | Modbus requests/s | Kafka messages | "
        "CPU (cores) | RSS | peak RSS |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, m in (("vane", v), ("collectd", c)):
        L.append(f"| {name} | {m['cpu_us_per_register_read']:.2f} µs | {m['register_reads_per_s']:,} | "
                 f"{m['modbus_requests_per_s']:,} | {m['messages']:,} | {m['cpu_share']:.4f} | "
                 f"{m['rss_kb'] / 1024:.1f} MiB | {m['peak_rss_kb'] / 1024:.1f} MiB |")
    if v["cpu_us_per_register_read"] and c["cpu_us_per_register_read"]:
        L.append(f"| vane / collectd | **{v['cpu_us_per_register_read'] / c['cpu_us_per_register_read']:.2f}** | | | | "
                 f"| **{v['rss_kb'] / c['rss_kb']:.2f}** | {v['peak_rss_kb'] / c['peak_rss_kb']:.2f} |")
    L.append("")
    L.append("Modbus requests/s as configured, not counted: vane reads each device's map in one request per poll "
             "(contiguous, at most 125 registers), collectd's modbus plugin sends one request per value. CPU: every "
             "thread of the process (schedstat). "
             f"collectd's data in Kafka, e.g.: `{c.get('sample', '')}`; errors in its log: {c['log_errors']}.")
    return L


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", required=True)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--warmup", type=float, default=3)
    ap.add_argument("--devices", type=int, default=10)
    ap.add_argument("--hz", type=float, default=10)
    ap.add_argument("--map", choices=sorted(MAPS), default="turbine")
    ap.add_argument("--markdown", action="store_true")
    a = ap.parse_args()
    install_signal_cleanup()
    if not os.access(COLLECTD, os.X_OK):
        print(f"collectd_peer: {COLLECTD} not installed (Debian package collectd-core)", file=sys.stderr)
        return 77
    r = run(os.path.abspath(a.build), a.seconds, a.warmup, a.devices, a.hz, map_name=a.map)
    if a.markdown:
        print("\n".join(markdown(r)))
    print(json.dumps(r))
    ok = r["vane"]["messages"] > 0 and r["collectd"]["messages"] > 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
