#!/usr/bin/python3
"""Sustained MQTT ingest: vane-sim mqtt -> mosquitto -> vane -> Apache Kafka
(vane-kafka-peer, one node).

    mqtt_bench.py --build BUILD_DIR [--messages N] [--sensors S] [--rate HZ_PER_SENSOR]

Publishes N QoS 1 messages, waits until vane committed all of them and the
buffer drained to Kafka, reads them back, and prints messages/s end to end,
whether any was lost, and vane's CPU time per message. Not a ratio to a
plain producer: the single publisher sets the pace (a few thousand
messages/s), far below what the Kafka side takes.
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

from bench_util import Consumer, KafkaPeer, Procs, cpu_s, free_port, install_signal_cleanup, wait_until


def stats(build, path):
    out = subprocess.run([f"{build}/agent/vane", "buffer", "stats", path], capture_output=True, text=True).stdout
    rows = int(re.search(r"rows:\s+(\d+)", out).group(1))
    nxt = int(re.search(r"next seq:\s+(\d+)", out).group(1))
    return rows, nxt - 1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", required=True)
    ap.add_argument("--messages", type=int, default=100000)
    ap.add_argument("--sensors", type=int, default=20)
    ap.add_argument("--rate", type=float, default=1000)
    a = ap.parse_args()
    install_signal_cleanup()
    with tempfile.TemporaryDirectory() as d, Procs() as procs:
        os.chmod(d, 0o777)
        kafka = KafkaPeer(procs, a.build)
        t = kafka.fresh()
        cons = Consumer(procs, a.build, kafka.bootstrap, t.read)
        port = free_port()
        with open(f"{d}/m.conf", "w") as f:
            f.write(f"listener {port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\n")
        procs.start(["mosquitto", "-c", f"{d}/m.conf"], stderr=subprocess.DEVNULL)
        cfg = {"gateway": {"id": "gw-bench"}, "buffer": {"path": f"{d}/buffer.db"},
               "kafka": {"brokers": kafka.bootstrap, **t.kafka_cfg()}, "http": {"listen": ""},
               "sources": [{"name": "env", "type": "mqtt", "url": f"tcp://127.0.0.1:{port}",
                            "topics": ["sensors/+/telemetry"], "qos": 1, "device_id": "{topic[1]}"}]}
        with open(f"{d}/vane.jsonc", "w") as f:
            json.dump(cfg, f)
        err = open(f"{d}/vane.stderr", "w+")
        vane = procs.start([f"{a.build}/agent/vane", "run", "-c", f"{d}/vane.jsonc"], stderr=err)
        if not wait_until(lambda: "connected to" in open(f"{d}/vane.stderr").read(), 20):
            raise RuntimeError("vane did not connect")
        c0, t0 = cpu_s(vane.pid), time.time()
        pub = subprocess.run([f"{a.build}/simulator/vane-sim", "mqtt", "--broker", f"tcp://127.0.0.1:{port}",
                              "--sensors", str(a.sensors), "--rate", str(a.rate), "--count", str(a.messages)],
                             capture_output=True, text=True, timeout=600)
        published = int(pub.stdout.split()[-1])
        t_pub = time.time() - t0

        def drained():
            nonlocal rows, committed
            rows, committed = stats(a.build, f"{d}/buffer.db")
            return committed >= published and rows == 0
        rows = committed = 0
        wait_until(drained, 120)
        wall, cpu = time.time() - t0, cpu_s(vane.pid) - c0
        # In Kafka too (the buffer deletes a row once Kafka acknowledged it).
        wait_until(lambda: cons.unique("env") >= committed, 60)
        in_kafka = cons.unique("env")
        vane.send_signal(signal.SIGTERM)
        vane.wait(timeout=30)
        print(json.dumps({"published": published, "committed": committed, "lost": published - committed,
                          "in_kafka": in_kafka, "left_in_buffer": rows, "publish_s": round(t_pub, 2),
                          "end_to_end_s": round(wall, 2), "messages_per_s": round(committed / wall),
                          "cpu_us_per_message": round(cpu * 1e6 / max(1, committed), 2)}))
        return 0 if committed == published and rows == 0 and in_kafka == committed else 1


if __name__ == "__main__":
    sys.exit(main())
