#!/usr/bin/python3
"""CPU time per Modbus register read: vane polling vane-sim.

    modbus_bench.py --build BUILD_DIR [--seconds N] [--devices 10] [--registers 100] [--hz 10]

Starts vane-kafka-mock, vane-sim (one unit per device) and vane with one
modbus_tcp source reading `registers` holding registers of every device at
`hz`; after N seconds reads vane's CPU time from /proc, stops it, and prints
readings, register reads and CPU microseconds per register read.
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

from bench_util import wait_until


def line_from(proc, prefix, timeout=20):
    end = time.time() + timeout
    while time.time() < end:
        line = proc.stdout.readline()
        if line.startswith(prefix):
            return line[len(prefix):].strip()
    raise RuntimeError(f"no {prefix!r} line")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", required=True)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--devices", type=int, default=10)
    ap.add_argument("--registers", type=int, default=100)
    ap.add_argument("--hz", type=float, default=10)
    a = ap.parse_args()
    tick = os.sysconf("SC_CLK_TCK")
    with tempfile.TemporaryDirectory() as d:
        kafka = subprocess.Popen([f"{a.build}/tests/support/vane-kafka-mock"], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, text=True)
        sim = subprocess.Popen([f"{a.build}/simulator/vane-sim", "modbus", "--listen", "127.0.0.1:0", "--turbines",
                                str(a.devices), "--interval-ms", "100"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               text=True)
        try:
            bootstrap = line_from(kafka, "BOOTSTRAP ")
            port = line_from(sim, "LISTENING ").rsplit(":", 1)[1]
            cfg = {
                "gateway": {"id": "gw-bench"},
                "buffer": {"path": f"{d}/buffer.db"},
                "kafka": {"brokers": bootstrap},
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
            vane = subprocess.Popen([f"{a.build}/agent/vane", "run", "-c", f"{d}/vane.jsonc"], stderr=err)
            # Start-up is not what is measured: begin once vane polls.
            if not wait_until(lambda: " running: " in open(f"{d}/vane.stderr").read(), 20):
                raise RuntimeError("vane did not start")
            with open(f"/proc/{vane.pid}/stat") as f:
                st = f.read().rsplit(")", 1)[1].split()
            cpu0 = (int(st[11]) + int(st[12])) / tick
            t0 = time.time()
            time.sleep(a.seconds)  # the measured window itself, not a wait for something
            with open(f"/proc/{vane.pid}/stat") as f:
                st = f.read().rsplit(")", 1)[1].split()
            cpu1 = (int(st[11]) + int(st[12])) / tick
            wall = time.time() - t0
            vane.send_signal(signal.SIGTERM)
            vane.wait(timeout=30)
            err.seek(0)
            log = err.read()
            readings = sum(int(n) for n in re.findall(r"device D-\d+ \(unit \d+\): (\d+) readings", log))
            # Readings counted over the whole run; scale to the measured window.
            total_wall = wall + 1.0
            reads = readings * a.registers * (wall / total_wall)
            cpu_us = (cpu1 - cpu0) * 1e6
            print(json.dumps({
                "devices": a.devices, "registers": a.registers, "hz": a.hz, "seconds": round(wall, 1),
                "readings": readings, "register_reads_per_s": round(reads / wall),
                "cpu_s": round(cpu1 - cpu0, 3), "cpu_us_per_register_read": round(cpu_us / reads, 3) if reads else None,
                "cpu_percent": round(100 * (cpu1 - cpu0) / wall, 1),
            }))
            if readings == 0:
                print(log, file=sys.stderr)
                return 1
        finally:
            for p in (sim, kafka):
                p.stdin.close()
                p.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
