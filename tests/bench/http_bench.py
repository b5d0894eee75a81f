#!/usr/bin/env python3
"""What watching vane costs: the simulator at full speed into the buffer and
a real Apache Kafka broker (vane-kafka-peer, one for the whole run, fresh
topics per round), with the HTTP endpoint idle, and with Prometheus scraping
/metrics every second while the status page is open (it polls /health and
/api/v1/latest every 2 s). Rounds alternate idle and watched; throughput
is committed readings per second (the buffer's next_seq over the window).

Prints Markdown: per round readings/s and CPU per million readings, and the
median ratio watched / idle.
"""
import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_util as bu  # noqa: E402

SOURCE_DIR = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


def config(tmp, bootstrap, topics, port):
    return {
        "gateway": {"id": "gw-bench"},
        "buffer": {"path": f"{tmp}/buffer.db", "max_bytes": "2GiB"},
        "kafka": {"brokers": bootstrap, **topics.kafka_cfg()},
        "schemas": {"turbine": f"{SOURCE_DIR}/examples/schemas/turbine.schema.json"},
        "sources": [{"name": "sim", "type": "simulator", "schema": "turbine", "devices": 50, "rate": "max"}],
        "http": {"listen": f"127.0.0.1:{port}"},
    }


class Watcher:
    """Prometheus every 1 s on /metrics; the status page every 2 s on
    /health and /api/v1/latest (what status.html fetches)."""

    def __init__(self, port):
        self.base = f"http://127.0.0.1:{port}"
        self.stop_evt = threading.Event()
        self.requests = 0
        self.bytes = 0
        self.errors = 0
        self.threads = [threading.Thread(target=self.loop, args=(["/metrics"], 1.0), daemon=True),
                        threading.Thread(target=self.loop, args=(["/health", "/api/v1/latest"], 2.0), daemon=True)]

    def get(self, path):
        try:
            with urllib.request.urlopen(self.base + path, timeout=5) as r:
                self.bytes += len(r.read())
            self.requests += 1
        except urllib.error.HTTPError as e:  # /health may answer 503; still an answer
            self.bytes += len(e.read())
            self.requests += 1
        except OSError:
            self.errors += 1

    def loop(self, paths, period):
        self.get("/")  # the page itself, once
        nxt = time.monotonic()
        while not self.stop_evt.is_set():
            for p in paths:
                self.get(p)
            nxt += period
            self.stop_evt.wait(max(0.0, nxt - time.monotonic()))

    def start(self):
        for t in self.threads:
            t.start()

    def stop(self):
        self.stop_evt.set()
        for t in self.threads:
            t.join(timeout=10)


def one_round(build, kafka, watched, seconds, warmup):
    with bu.Procs() as procs, tempfile.TemporaryDirectory(prefix="vane-http-bench-") as tmp, kafka.topics() as t:
        port = bu.free_port()
        vane = bu.Vane(procs, build, tmp, config(tmp, kafka.bootstrap, t, port))
        vane.wait_running()
        ok = bu.wait_until(lambda: bu.buffer_next_seq(vane.buffer) > 1, 30)
        if not ok:
            raise RuntimeError("vane committed nothing")
        watcher = Watcher(port) if watched else None
        if watcher:
            watcher.start()
        # Warm-up, then the measured window: fixed spans of wall time by
        # design (a throughput window), not waits for a condition.
        time.sleep(warmup)
        s0, c0, t0 = bu.buffer_next_seq(vane.buffer), vane.cpu_s(), time.monotonic()
        time.sleep(seconds)
        s1, c1, t1 = bu.buffer_next_seq(vane.buffer), vane.cpu_s(), time.monotonic()
        if watcher:
            watcher.stop()
        vane.stop()
        n = s1 - s0
        r = {"rate": n / (t1 - t0), "cpu_per_m": (c1 - c0) / n * 1e6 if n else float("nan")}
        if watcher:
            r["requests"] = watcher.requests
            r["errors"] = watcher.errors
            r["bytes"] = watcher.bytes
        return r


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--build", required=True)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--warmup", type=float, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    bu.install_signal_cleanup()
    idle, watched = [], []
    with bu.Procs() as base:
        kafka = bu.KafkaPeer(base, a.build)
        for i in range(a.rounds):
            # Alternate which goes first, so drift over the run hits both alike.
            order = (False, True) if i % 2 == 0 else (True, False)
            for w in order:
                r = one_round(a.build, kafka, w, a.seconds, a.warmup)
                bu.log(f"round {i + 1} {'watched' if w else 'idle'}: {r['rate']:.0f} readings/s")
                (watched if w else idle).append(r)
    errors = sum(r["errors"] for r in watched)
    ratios = [w["rate"] / i["rate"] for w, i in zip(watched, idle)]
    print(f"### What watching costs, {time.strftime('%Y-%m-%d')} ({bu.machine()})")
    print()
    print(f"Simulator at full speed (50 turbines) -> schema -> buffer (sync=normal) -> Apache Kafka "
          f"(one node, loopback, fresh topics per round), "
          f"{a.seconds:.0f} s per round after {a.warmup:.0f} s warm-up. Watched: /metrics every 1 s, "
          f"/health and /api/v1/latest every 2 s (the open status page).")
    print()
    print("| round | idle readings/s | watched readings/s | watched / idle | idle CPU s per 1M | watched CPU s per 1M | HTTP requests |")
    print("|---|---|---|---|---|---|---|")
    for k, (i, w) in enumerate(zip(idle, watched)):
        print(f"| {k + 1} | {i['rate']:.0f} | {w['rate']:.0f} | {w['rate'] / i['rate']:.3f} | "
              f"{i['cpu_per_m']:.2f} | {w['cpu_per_m']:.2f} | {w['requests']} |")
    print()
    print(f"Median watched / idle: **{statistics.median(ratios):.3f}** "
          f"(target: within 2%, i.e. >= 0.98); HTTP errors: {errors}.")
    return 0 if errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
