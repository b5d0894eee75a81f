#!/usr/bin/python3
"""CPU time per Modbus register read: vane polling vane-sim.

    modbus_bench.py --build BUILD_DIR [--seconds N] [--devices 10] [--registers 100] [--hz 10]

Starts a real Apache Kafka (vane-kafka-peer, one node), vane-sim (one unit
per device) and vane with one modbus_tcp source reading `registers` holding
registers of every device at `hz`; once its readings reach Kafka, measures
vane's CPU time from /proc over N seconds, stops it, and prints readings,
register reads and CPU microseconds per register read. Not a ratio to a
plain producer: at 100 readings/s the Kafka side is a small part of what
this measures (collectd_peer.py compares the whole job with collectd's).
"""
import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

from bench_util import Consumer, KafkaPeer, Lines, Procs, install_signal_cleanup, wait_until


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", required=True)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--devices", type=int, default=10)
    ap.add_argument("--registers", type=int, default=100)
    ap.add_argument("--hz", type=float, default=10)
    a = ap.parse_args()
    install_signal_cleanup()
    tick = os.sysconf("SC_CLK_TCK")
    with tempfile.TemporaryDirectory() as d, Procs() as procs:
        kafka = KafkaPeer(procs, a.build)
        t = kafka.fresh()
        sim = procs.start([f"{a.build}/simulator/vane-sim", "modbus", "--listen", "127.0.0.1:0", "--turbines",
                           str(a.devices), "--interval-ms", "100"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        port = Lines(sim).readline(20).rsplit(":", 1)[1]
        cons = Consumer(procs, a.build, kafka.bootstrap, t.read)
        cfg = {
            "gateway": {"id": "gw-bench"},
            "buffer": {"path": f"{d}/buffer.db"},
            "kafka": {"brokers": kafka.bootstrap, **t.kafka_cfg()},
            "http": {"listen": ""},
            "sources": [{
                "name": "bench", "type": "modbus_tcp", "host": "127.0.0.1", "port": int(port),
                "interval_ms": int(1000 / a.hz), "timeout_ms": 500,
                "devices": [{"id": f"D-{i:03d}", "unit_id": i} for i in range(1, a.devices + 1)],
                "registers": [{"field": f"r{k}", "table": "holding", "address": 16 + k}
                              for k in range(a.registers)],
            }],
        }
        with open(f"{d}/vane.jsonc", "w") as f:
            json.dump(cfg, f)
        err = open(f"{d}/vane.stderr", "w+")
        vane = procs.start([f"{a.build}/agent/vane", "run", "-c", f"{d}/vane.jsonc"], stderr=err)
        # Start-up is not what is measured: begin once readings reach Kafka.
        if not wait_until(lambda: cons.unique("bench") > 0 or vane.poll() is not None, 60):
            err.seek(0)
            raise RuntimeError(f"no readings in Kafka within 60 s:\n{err.read()[-3000:]}")
        with open(f"/proc/{vane.pid}/stat") as f:
            st = f.read().rsplit(")", 1)[1].split()
        cpu0 = (int(st[11]) + int(st[12])) / tick
        u0, t0 = cons.unique("bench"), time.time()
        time.sleep(a.seconds)  # the measured window itself, not a wait for something
        with open(f"/proc/{vane.pid}/stat") as f:
            st = f.read().rsplit(")", 1)[1].split()
        cpu1 = (int(st[11]) + int(st[12])) / tick
        u1, wall = cons.unique("bench"), time.time() - t0
        vane.send_signal(signal.SIGTERM)
        vane.wait(timeout=30)
        err.seek(0)
        log = err.read()
        polled = sum(int(n) for n in re.findall(r"device D-\d+ \(unit \d+\): (\d+) readings", log))
        # Readings that reached Kafka within the window.
        readings = u1 - u0
        reads = readings * a.registers
        cpu_us = (cpu1 - cpu0) * 1e6
        print(json.dumps({
            "devices": a.devices, "registers": a.registers, "hz": a.hz, "seconds": round(wall, 1),
            "readings": readings, "readings_polled_whole_run": polled, "register_reads_per_s": round(reads / wall),
            "cpu_s": round(cpu1 - cpu0, 3), "cpu_us_per_register_read": round(cpu_us / reads, 3) if reads else None,
            "cpu_percent": round(100 * (cpu1 - cpu0) / wall, 1),
        }))
        if readings == 0:
            print(log, file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
