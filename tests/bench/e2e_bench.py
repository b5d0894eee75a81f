#!/usr/bin/python3
"""End to end: the real vane binary, simulator -> schema -> buffer -> a real
Apache Kafka (vane-kafka-peer: KRaft nodes in their own JVMs on loopback) ->
delete-on-ack, against a plain librdkafka producer and a raw SQLite ceiling
measured in the same run on the same broker, and collectd as the Modbus peer.

    e2e_bench.py --build BUILD_DIR [--seconds 30] [--quick | --smoke]
                 [--phases capture,ceilings,max,sustain,rates,drain,footprint,peer]
                 [--sync off,normal,full] [--rates 1000,10000,100000]
                 [--backlog-rows 1000000] [--footprint-backlog-mb 1024]
                 [--kafka-nodes 1] [--kafka-heap 1g] [--json FILE]

Prints a Markdown report (absolute figures, ratios vane / plain producer and
vane / SQLite ceiling and vane / peer, targets met or missed) on stdout;
progress on stderr; with --json also every figure as JSON.

One broker serves the whole run (started once; the drain and footprint
phases SIGKILL and restart it). Every measurement gets fresh topics
(3 partitions and a 1-partition dead-letter topic, replication factor 1 on
one node) that are deleted afterwards, and a vane-bench-consumer reading
them from the beginning while the measurement runs, vane or plain producer
alike. The plain producer is kafka_bench: vane's payloads (captured from
vane), vane's producer settings (idempotent, acks=all, linger.ms=5, ...),
vane's bound on messages in flight, no vane code. Phases:

  capture    vane at full speed until 2000 readings are in Kafka; the first
             1000 messages it produced become the payloads of the ceilings
  ceilings   raw SQLite insert+delete (sqlite_ceiling: vane's table, pragmas,
             insert and delete batch sizes; no vane code) per buffer.sync
             level, and the plain producer (kafka_bench) at full speed,
             counted by its delivery reports and read back by the consumer
  max        per buffer.sync level: the simulator at full speed (rate "max",
             15 turbines, the turbine schema) for --seconds after a warm-up:
             readings/s delivered (unique vane-seq read back from Kafka),
             readings/s taken in, CPU seconds per million delivered readings
             (utime+stime of vane from /proc), peak RSS (VmHWM); then the
             plain producer for as long (the paired run its ratio is to); at
             the end vane stops and every seq is accounted for: in Kafka or
             still in the buffer (lost), or in Kafka twice (dup)
  rates      per fixed rate: the plain producer at that rate (kafka_bench
             --rate: its latency floor, CPU, RSS), then vane per buffer.sync
             level: reading -> Kafka latency p50/p99/p999 (see LATENCY),
             CPU, RSS, each as a ratio to the plain producer's
  drain      broker down (every node SIGKILLed); --backlog-rows readings
             buffered (source "backlog", full speed) while a live source
             ("live", --drain-live-rate/s) runs; broker restarted: how long
             until it served, until vane delivered again, and the drain rate
             (readings buffered at restart / time from vane's first delivery
             until all of them were read back), as a ratio to the plain
             producer at full speed; the latency of the live readings taken
             during the drain; for replay fifo and live_first
  footprint  stripped binary size (strip of a copy); RSS idle (15 turbines,
             1 reading/s each); RSS at 10k readings/s with a
             --footprint-backlog-mb backlog, broker down and then draining
  sustain    the highest fixed rate (--sustain-rates, ascending, until one
             fails) that vane keeps up with end to end at sync=normal, as a
             ratio to the plain producer at full speed
  peer       collectd_peer.py: vane's modbus_tcp source vs collectd 5.12
             (modbus -> write_kafka) on the same vane-sim slaves, same broker

LATENCY: measured on the consumer side as (the time vane-bench-consumer got
the message - the reading's timestamp in the payload). It covers everything
up to the message being readable in the broker plus the consumer's fetch
(the broker answers a waiting fetch as soon as a message lands); vane learns
of the ack from the produce response at about the same moment, but deleting
the row (its ack transaction) comes after, and is not in this figure. The
plain producer's own ack latency (produce -> delivery report) is printed
beside its consumer-side figure as a check of the method.
"""
import argparse
import datetime
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_util import (KAFKA_HEAP, Consumer, KafkaPeer, Procs, Vane, buffer_next_seq, buffer_rows,  # noqa: E402
                        buffer_seqs, buffer_totals, file_bytes, install_signal_cleanup, log, machine, now_us,
                        status_kb, wait_until)

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.path.dirname(os.path.dirname(HERE))


def kafka_version():
    """The Apache Kafka version the harness runs (tests/kafka/pom.xml)."""
    try:
        with open(f"{SOURCE_DIR}/tests/kafka/pom.xml") as f:
            m = re.search(r"<kafka.version>([^<]+)</kafka.version>", f.read())
        return m.group(1) if m else "?"
    except OSError:
        return "?"


def sim(name, rate="max", devices=15, limit=0, seed=1):
    s = {"name": name, "type": "simulator", "model": "turbine", "devices": devices, "rate": rate,
         "schema": "turbine", "seed": seed}
    if limit:
        s["limit"] = int(limit)
    return s


def vane_cfg(workdir, bootstrap, sources, sync="normal", replay="fifo", max_bytes="1GiB", props=None, topics=None):
    cfg = {
        "gateway": {"id": "gw-bench"},
        "buffer": {"path": f"{workdir}/buffer.db", "sync": sync, "replay": replay, "max_bytes": max_bytes},
        "kafka": {"brokers": bootstrap, **(topics.kafka_cfg() if topics else {})},
        "schemas": {"turbine": f"{SOURCE_DIR}/examples/schemas/turbine.schema.json"},
        "sources": sources,
        # Several vanes may run on this machine (tests, other benchmarks):
        # no fixed port.
        "http": {"listen": ""},
    }
    if props:
        cfg["kafka"]["properties"] = props
    return cfg


def reset_hwm(pid):
    """Resets VmHWM to the current RSS (Linux: clear_refs 5)."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class RssSampler:
    """Max VmRSS over a window, sampled every interval_s."""

    def __init__(self, pid):
        self.pid, self.max_kb, self.samples = pid, 0, 0

    def sample(self):
        kb = status_kb(self.pid, "VmRSS") or 0
        self.max_kb = max(self.max_kb, kb)
        self.samples += 1
        return kb

    def sleep(self, seconds, interval_s=0.25):
        end = time.monotonic() + seconds
        while True:
            self.sample()
            left = end - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(interval_s, left))


def dropped(vane):
    """Readings vane dropped (its "stopped: ..." line): over the cap, or
    not taken in time."""
    m = re.search(r"stopped: \d+ readings in, \d+ delivered, \d+ rejected, (\d+) dropped", vane.log_text())
    return int(m.group(1)) if m else None


def account(vane, cons):
    """After vane stopped: every seq 1..next_seq-1 in Kafka or in the buffer?"""
    path = vane.buffer
    next_seq = buffer_next_seq(path)
    left = buffer_seqs(path)
    st = cons.wait_quiet(want=next_seq - 1 - len(left), quiet_s=3, timeout=60)
    exclude = f"{os.path.dirname(path)}/left.txt"
    with open(exclude, "w") as f:
        f.write("\n".join(str(s) for s in sorted(left)))
    miss = cons.ask(f"missing {next_seq - 1} {exclude}", timeout=120)
    dup = sum(v["dup"] for v in st["sources"].values())
    if st["skipped_offsets"]:
        log(f"the consumer found {st['skipped_offsets']} offsets gone before it read them; lost cannot be told")
    return {"appended": next_seq - 1, "left_in_buffer": len(left), "dropped": dropped(vane),
            "lost": miss["missing"] if not st["skipped_offsets"] else None,
            "lost_sample": miss["sample"], "dup": dup, "skipped_offsets": st["skipped_offsets"]}


def kafka_argv(a, t, payloads, seconds, rate=None):
    argv = [f"{a.build}/tests/bench/kafka_bench", "--bootstrap", a.kafka.bootstrap, "--topic", t.topic,
            "--seconds", str(seconds)]
    if payloads:
        argv += ["--payloads", payloads]
    if rate:
        argv += ["--rate", str(rate)]
    for k, v in (a.props or {}).items():
        argv += ["--property", f"{k}={v}"]
    return argv


def run_plain(a, payloads, seconds, rate=None):
    """The plain librdkafka producer (kafka_bench) on fresh topics of the
    same broker, read back by the same consumer as vane's runs: at full speed
    (rate None) or at `rate` messages/s with the consumer-side latency."""
    with Procs() as procs, a.kafka.topics() as t:
        cons = Consumer(procs, a.build, a.kafka.bootstrap, t.read, latency="sim" if rate else "none")
        b0, k0, t0 = a.kafka.cpu_s(), cons.cpu_s(), now_us()
        r = subprocess.run(kafka_argv(a, t, payloads, seconds, rate), capture_output=True, text=True,
                           timeout=seconds + 180)
        if r.returncode != 0:
            raise RuntimeError(f"kafka_bench: {r.stderr}{r.stdout}")
        k = json.loads(r.stdout.strip().splitlines()[-1])
        wall = (now_us() - t0) / 1e6
        k["broker_cpu_share"] = round((a.kafka.cpu_s() - b0) / wall, 3)
        k["consumer_cpu_share"] = round((cons.cpu_s() - k0) / wall, 3)
        # Its warm-up message (no vane-seq) and every delivered one read back?
        cons.wait_quiet(want=k["delivered"] + 1, quiet_s=3, timeout=60)
        miss = cons.missing(k["produced"])
        k["lost"], k["lost_sample"] = miss["missing"], miss["sample"]
        if rate:
            k["latency"] = cons.lat("sim", t0, now_us())
        cons.stop()
    if k["lost"]:
        log(f"plain producer: {k['lost']} of {k['produced']} acknowledged messages not read back, e.g. "
            f"{k['lost_sample']}")
    return k


# --- phases ---------------------------------------------------------------------

def phase_capture(a, workdir):
    """A sample of what vane produces: payloads for the ceilings."""
    dump = f"{workdir}/payloads.tsv"
    d = tempfile.mkdtemp(dir=workdir)
    with Procs() as procs, a.kafka.topics() as t:
        cons = Consumer(procs, a.build, a.kafka.bootstrap, t.read, dump=dump, dump_count=1000)
        v = Vane(procs, a.build, d, vane_cfg(d, a.kafka.bootstrap, [sim("sim")], props=a.props, topics=t))
        v.wait_running()
        if not wait_until(lambda: cons.unique() >= 2000, 60):
            raise RuntimeError(f"capture: fewer than 2000 readings in Kafka after 60 s:\n{v.log_text()[-3000:]}")
        v.stop()
        cons.stop()
    shutil.rmtree(d, ignore_errors=True)
    with open(dump) as f:
        lines = [l.rstrip("\n").split("\t") for l in f if l.count("\t") >= 3]
    if not lines:
        raise RuntimeError("capture: no messages read back from vane")
    avg_value = sum(len(l[3]) for l in lines) / len(lines)
    log(f"capture: {len(lines)} payloads, average value {avg_value:.0f} bytes, e.g. {lines[0][3]}")
    return {"file": dump, "count": len(lines), "avg_value_bytes": avg_value, "example": lines[0][3]}


def median_run(runs, key="readings_per_s"):
    """The run with the median `key`, with the spread of all runs."""
    runs = sorted(runs, key=lambda x: x[key])
    m = dict(runs[len(runs) // 2])
    m["runs"] = [x[key] for x in runs]
    return m


def phase_ceilings(a, workdir, payloads):
    out = {"sqlite": {}, "kafka": None}
    for sync in a.sync:
        runs = []
        for _ in range(a.ceiling_reps):
            r = subprocess.run([f"{a.build}/tests/bench/sqlite_ceiling", "--sync", sync, "--seconds",
                                str(a.ceiling_seconds), "--payloads", payloads, "--dir", workdir],
                               capture_output=True, text=True, timeout=a.ceiling_seconds + 120)
            if r.returncode != 0:
                raise RuntimeError(f"sqlite_ceiling: {r.stderr}")
            runs.append(json.loads(r.stdout.strip().splitlines()[-1]))
        out["sqlite"][sync] = median_run(runs)
        log(f"ceiling sqlite {sync}: {out['sqlite'][sync]['readings_per_s']:,.0f} readings/s "
            f"(runs {out['sqlite'][sync]['runs']})")
    runs = [run_plain(a, payloads, a.ceiling_seconds) for _ in range(a.ceiling_reps)]
    out["kafka"] = k = median_run(runs)
    log(f"plain producer: {k['readings_per_s']:,.0f} readings/s (runs {k['runs']}), delivered {k['delivered']} of "
        f"{k['produced']}, read back all but {k['lost']}")
    return out


def run_steady(a, workdir, sync, rate, seconds, warmup, latency):
    """One vane with one simulator source at `rate` ("max" or readings/s)."""
    d = tempfile.mkdtemp(dir=workdir)
    res = {"sync": sync, "rate": rate}
    with Procs() as procs, a.kafka.topics() as t:
        cons = Consumer(procs, a.build, a.kafka.bootstrap, t.read, latency="sim" if latency else "none")
        # At full speed the simulator outruns the uplink and the buffer grows:
        # a cap that no run reaches, so nothing is dropped.
        v = Vane(procs, a.build, d, vane_cfg(d, a.kafka.bootstrap, [sim("sim", rate=rate)], sync=sync,
                                             max_bytes="32GiB", props=a.props, topics=t))
        v.wait_running()
        # Start-up is not what is measured: the window opens once readings
        # reach Kafka, and after the warm-up.
        if not wait_until(lambda: cons.unique() > 0, 60):
            raise RuntimeError(f"vane: nothing in Kafka after 60 s:\n{v.log_text()[-3000:]}")
        time.sleep(warmup)  # a fixed span by design: the pipeline settles (queues, page cache, batches)
        s0, c0, n0, m0, k0 = cons.stats(), v.cpu_s(), buffer_next_seq(v.buffer), a.kafka.cpu_s(), cons.cpu_s()
        t0 = now_us()
        r0 = buffer_rows(v.buffer)[0]
        rss = RssSampler(v.pid)
        rss.sleep(seconds)
        t1 = now_us()
        s1, c1, n1, m1, k1 = cons.stats(), v.cpu_s(), buffer_next_seq(v.buffer), a.kafka.cpu_s(), cons.cpu_s()
        rows_end = buffer_rows(v.buffer)[0]
        hwm = v.hwm_kb()
        rss_split = {f: status_kb(v.pid, f) for f in ("VmRSS", "RssAnon", "RssFile")}
        rc = v.stop()
        acc = account(v, cons)
        wall = (s1["t_us"] - s0["t_us"]) / 1e6
        delivered = sum(x["unique"] for x in s1["sources"].values()) - sum(x["unique"] for x in s0["sources"].values())
        res.update({
            "seconds": round(wall, 2),
            "delivered_per_s": round(delivered / wall),
            "ingested_per_s": round((n1 - n0) / ((t1 - t0) / 1e6)),
            # Cross-check from the buffer alone: appended - growth of the rows left.
            "acked_per_s_by_buffer": round(((n1 - n0) - (rows_end - r0)) / ((t1 - t0) / 1e6)),
            "cpu_s": round(c1 - c0, 3),
            "cpu_share": round((c1 - c0) / wall, 3),
            "cpu_s_per_million": round((c1 - c0) / delivered * 1e6, 3) if delivered else None,
            "peak_rss_kb": hwm,
            "max_rss_kb_window": rss.max_kb,
            "rss_end_kb": rss_split,
            "buffered_rows_at_start": r0,
            "buffered_rows_at_end": rows_end,
            "skipped_offsets_window": s1["skipped_offsets"] - s0["skipped_offsets"],
            "broker_cpu_share": round((m1 - m0) / wall, 3),
            "consumer_cpu_share": round((k1 - k0) / wall, 3),
            "exit_code": rc,
            **acc,
        })
        if latency:
            res["latency"] = cons.lat("sim", t0, t1)
            res["latency"]["expected"] = round(rate * (t1 - t0) / 1e6) if rate != "max" else None
        cons.stop()
    shutil.rmtree(d, ignore_errors=True)
    return res


def phase_max(a, workdir, payloads):
    """vane at full speed, then the plain producer for as long on the same
    broker (the paired run the ratio is to), per buffer.sync level."""
    out = {}
    for sync in a.sync:
        r = run_steady(a, workdir, sync, "max", a.seconds, a.warmup, latency=False)
        r["plain"] = k = run_plain(a, payloads, a.seconds)
        out[sync] = r
        log(f"max {sync}: delivered {r['delivered_per_s']:,}/s, ingested {r['ingested_per_s']:,}/s, "
            f"{r['cpu_s_per_million']} CPU s/M, peak RSS {r['peak_rss_kb']} kB, lost {r['lost']}, dup {r['dup']}; "
            f"plain producer {k['readings_per_s']:,.0f}/s: vane / plain {r['delivered_per_s'] / k['readings_per_s']:.2f}")
    return out


def phase_sustain(a, workdir):
    """The highest fixed rate vane keeps up with end to end (sync=normal):
    delivered and taken in within 2 % of the rate and the buffer not
    growing by more than a second's worth over the window."""
    out = {"steps": []}
    best = None
    for rate in a.sustain_rates:
        r = run_steady(a, workdir, "normal", rate, a.sustain_seconds, a.warmup, latency=True)
        growth = r["buffered_rows_at_end"] - r["buffered_rows_at_start"]
        ok = (r["delivered_per_s"] >= 0.98 * rate and r["ingested_per_s"] >= 0.98 * rate and growth <= rate)
        step = {"rate": rate, "ok": ok, "delivered_per_s": r["delivered_per_s"], "ingested_per_s": r["ingested_per_s"],
                "backlog_growth_rows": growth, "p99_ms": r["latency"]["p99_ms"],
                "cpu_share": r["cpu_share"], "cpu_s_per_million": r["cpu_s_per_million"], "lost": r["lost"]}
        out["steps"].append(step)
        log(f"sustain {rate}/s: {'ok' if ok else 'falls behind'}: delivered {r['delivered_per_s']:,}/s, taken in "
            f"{r['ingested_per_s']:,}/s, backlog +{growth:,} rows, p99 {r['latency']['p99_ms']} ms")
        if not ok:
            break
        best = rate
    out["sustained_per_s"] = best
    return out


def phase_rates(a, workdir, payloads):
    """Per fixed rate: the plain producer's latency floor first, then vane at
    each buffer.sync level right after it."""
    out, floors = {}, {}
    for rate in a.rates:
        k = floors[rate] = run_plain(a, payloads, a.seconds, rate=rate)
        log(f"plain producer at {rate}/s: consumer-side p50 {k['latency']['p50_ms']} p99 {k['latency']['p99_ms']} "
            f"p999 {k['latency']['p999_ms']} ms; producer ack p50 {k['ack_p50_ms']} p99 {k['ack_p99_ms']} ms; "
            f"{k['cpu_s_per_million']} CPU s/M, peak RSS {k['peak_rss_kb']} kB")
        for sync in a.sync:
            r = run_steady(a, workdir, sync, rate, a.seconds, a.warmup, latency=True)
            out[f"{sync}/{rate}"] = r
            lat = r["latency"]
            log(f"rate {sync}/{rate}: delivered {r['delivered_per_s']:,}/s, p50 {lat['p50_ms']} p99 {lat['p99_ms']} "
                f"p999 {lat['p999_ms']} ms (n={lat['n']}), {r['cpu_s_per_million']} CPU s/M, "
                f"RSS {r['peak_rss_kb']} kB, lost {r['lost']}")
    return out, floors


def fill_backlog(v, source, rows, timeout):
    """Waits until `rows` readings of `source` are in the buffer (counted
    incrementally by seq, so each poll reads only the new rows)."""
    seen, after = 0, 0
    deadline = time.monotonic() + timeout
    while seen < rows:
        if time.monotonic() >= deadline:
            raise RuntimeError(f"backlog: {seen} of {rows} rows after {timeout} s")
        if v.proc.poll() is not None:
            raise RuntimeError(f"vane exited {v.proc.returncode}:\n{v.log_text()[-3000:]}")
        n, top = buffer_rows(v.buffer, after=after, source=source)
        seen += n
        after = max(after, top) if n else after
        # rows of other sources in between do not matter: next poll starts at the newest seen
        time.sleep(0.25)  # poll interval of the deadline loop
    return seen


def first_arrival_us(cons):
    """When the consumer got its first message of any source (0: none yet)."""
    firsts = [x["first_us"] for x in cons.stats()["sources"].values() if x["messages"]]
    return min(firsts) if firsts else 0


def broker_up(a, cons, n_up, deadline_s, rss=None, interval_s=0.05):
    """Restarts the broker (every node) and waits until the consumer has
    seqs 1..n_up. Returns the times (µs): up sent, serving (the harness saw
    every node registered), vane's first message read back, all read back
    (None if not within deadline_s of serving)."""
    t_sent = now_us()
    a.kafka.up()
    t_serving = now_us()
    deadline = time.monotonic() + deadline_s
    t_done = None
    while time.monotonic() < deadline:
        if cons.missing(n_up)["missing"] == 0:
            t_done = now_us()
            break
        if rss:
            rss.sample()
        time.sleep(interval_s)  # poll interval of the deadline loop
    return {"sent": t_sent, "serving": t_serving, "first": first_arrival_us(cons), "done": t_done}


def run_drain(a, workdir, replay):
    d = tempfile.mkdtemp(dir=workdir)
    res = {"replay": replay, "backlog_rows": a.backlog_rows, "live_rate": a.drain_live_rate}
    with Procs() as procs, a.kafka.topics() as t:
        cons = Consumer(procs, a.build, a.kafka.bootstrap, t.read, latency="live")
        a.kafka.down()
        sources = [sim("backlog", rate="max", limit=a.backlog_rows), sim("live", rate=a.drain_live_rate, devices=5, seed=2)]
        v = Vane(procs, a.build, d, vane_cfg(d, a.kafka.bootstrap, sources, sync="normal", replay=replay,
                                             max_bytes="4GiB", props=a.props, topics=t))
        v.wait_running()
        t_fill = time.monotonic()
        fill_backlog(v, "backlog", a.backlog_rows, timeout=max(300, a.backlog_rows / 2000))
        res["fill_seconds"] = round(time.monotonic() - t_fill, 1)
        # Live readings keep coming while the broker is down: a second's worth
        # of them in the backlog too.
        live0 = buffer_rows(v.buffer, source="live")[0]
        if not wait_until(lambda: buffer_rows(v.buffer, source="live")[0] >= live0 + a.drain_live_rate, 30, 0.1):
            raise RuntimeError("drain: the live source stopped while the broker was down")
        reset_hwm(v.pid)
        n_up = buffer_next_seq(v.buffer) - 1
        c0 = v.cpu_s()
        rss = RssSampler(v.pid)
        tm = broker_up(a, cons, n_up, max(120, a.backlog_rows / 5000), rss)
        c1 = v.cpu_s()
        if tm["done"] is None:
            raise RuntimeError(f"drain ({replay}): not drained within the deadline")
        # Live readings from the end of the drain reach the consumer.
        end_live = buffer_next_seq(v.buffer) - 1
        if not wait_until(lambda: cons.missing(end_live)["missing"] == 0, 30, 0.1):
            log(f"drain ({replay}): readings taken at the end of the drain not all read back within 30 s")
        hwm = v.hwm_kb()
        drain_s = (tm["done"] - tm["first"]) / 1e6
        rc = v.stop()
        acc = account(v, cons)
        res.update({
            "buffered_at_up": n_up,
            "restart_seconds": round((tm["serving"] - tm["sent"]) / 1e6, 2),
            "first_delivery_after_serving_s": round((tm["first"] - tm["serving"]) / 1e6, 2),
            "drain_seconds": round(drain_s, 2),
            "drain_per_s": round(n_up / drain_s),
            "cpu_s_per_million": round((c1 - c0) / n_up * 1e6, 3),
            "live_latency": cons.lat("live", tm["first"], tm["done"]),
            "peak_rss_kb_during_drain": hwm,
            "exit_code": rc,
            **acc,
        })
        cons.stop()
    shutil.rmtree(d, ignore_errors=True)
    return res


def phase_drain(a, workdir):
    out = {}
    for replay in a.replays:
        r = run_drain(a, workdir, replay)
        out[replay] = r
        lat = r["live_latency"]
        log(f"drain {replay}: broker serving {r['restart_seconds']} s after restart, vane delivering "
            f"{r['first_delivery_after_serving_s']} s later; {r['buffered_at_up']:,} rows in {r['drain_seconds']} s = "
            f"{r['drain_per_s']:,}/s, live p50 {lat['p50_ms']} p99 {lat['p99_ms']} ms (n={lat['n']}), "
            f"lost {r['lost']}, dup {r['dup']}")
    return out


def phase_footprint(a, workdir, payload_info):
    out = {}
    exe = f"{a.build}/agent/vane"
    stripped = f"{workdir}/vane.stripped"
    shutil.copyfile(exe, stripped)
    subprocess.run(["strip", stripped], check=True)
    out["binary_bytes"] = os.path.getsize(exe)
    out["stripped_bytes"] = os.path.getsize(stripped)
    os.unlink(stripped)

    # Idle: the laptop example's load, 15 turbines at 1 reading/s each.
    d = tempfile.mkdtemp(dir=workdir)
    with Procs() as procs, a.kafka.topics() as t:
        cons = Consumer(procs, a.build, a.kafka.bootstrap, t.read)
        v = Vane(procs, a.build, d, vane_cfg(d, a.kafka.bootstrap, [sim("sim", rate=15)], topics=t))
        v.wait_running()
        if not wait_until(lambda: cons.unique() > 0, 60):
            raise RuntimeError(f"footprint: nothing in Kafka after 60 s:\n{v.log_text()[-3000:]}")
        rss = RssSampler(v.pid)
        rss.sleep(a.idle_seconds)
        out["idle"] = {"rss_kb": v.rss_kb(), "max_rss_kb": rss.max_kb, "peak_rss_kb": v.hwm_kb(),
                       "rss_anon_kb": status_kb(v.pid, "RssAnon"), "rss_file_kb": status_kb(v.pid, "RssFile"),
                       "seconds": a.idle_seconds}
        v.stop()
        cons.stop()
    shutil.rmtree(d, ignore_errors=True)
    log(f"footprint: stripped {out['stripped_bytes']:,} bytes, idle RSS {out['idle']['rss_kb']} kB")

    # 10k readings/s with a large backlog. The backlog is built by one vane
    # at full speed with the broker down; a second vane (what a gateway is
    # after a restart during an outage) opens it and takes 10k readings/s,
    # first with the broker still down, then while it drains: so the heap
    # the full-speed fill grew is not in the figure.
    row_bytes = payload_info["avg_value_bytes"] + len("T-001") + len("fill") + len("turbine") + 32
    target = a.footprint_backlog_mb * 1024 * 1024
    rows = int(math.ceil(target / row_bytes))
    d = tempfile.mkdtemp(dir=workdir)
    big = {"target_bytes": target, "fill_rows": rows, "live_rate": 10000}
    max_bytes = f"{2 * a.footprint_backlog_mb + 64}MiB"
    with Procs() as procs, a.kafka.topics() as t:
        cons = Consumer(procs, a.build, a.kafka.bootstrap, t.read, latency="live")
        a.kafka.down()
        v = Vane(procs, a.build, d, vane_cfg(d, a.kafka.bootstrap, [sim("fill", rate="max", limit=rows)],
                                             sync="normal", max_bytes=max_bytes, props=a.props, topics=t), name="fill")
        v.wait_running()
        tf = time.monotonic()
        fill_backlog(v, "fill", rows, timeout=max(600, rows / 2000))
        big["fill_seconds"] = round(time.monotonic() - tf, 1)
        v.stop()
        rows_buffered, bytes_buffered = buffer_totals(v.buffer)
        big["backlog_rows"], big["backlog_bytes"] = rows_buffered, bytes_buffered
        big["file_bytes"] = file_bytes(v.buffer)
        tf = time.monotonic()
        v = Vane(procs, a.build, d, vane_cfg(d, a.kafka.bootstrap, [sim("live", rate=10000, devices=5, seed=2)],
                                             sync="normal", replay=a.footprint_replay, max_bytes=max_bytes,
                                             props=a.props, topics=t), name="live")
        v.wait_running(timeout=600)
        big["restart_seconds"] = round(time.monotonic() - tf, 1)
        # Broker down, 10k/s coming in, the backlog on disk. Start-up
        # (quick_check of the file) is not what is measured: the window
        # opens once the new vane has taken in a second's worth.
        n0 = buffer_next_seq(v.buffer)
        if not wait_until(lambda: buffer_next_seq(v.buffer) >= n0 + 10000, 30, 0.1):
            raise RuntimeError("footprint: the live source does not take readings in")
        reset_hwm(v.pid)
        rss = RssSampler(v.pid)
        rss.sleep(a.footprint_seconds)
        big["down"] = {"rss_kb": v.rss_kb(), "max_rss_kb": rss.max_kb, "peak_rss_kb": v.hwm_kb(),
                       "seconds": a.footprint_seconds}
        # Broker up: draining the backlog while 10k/s keep coming.
        n_up = buffer_next_seq(v.buffer) - 1
        rss = RssSampler(v.pid)
        tm = broker_up(a, cons, n_up, a.footprint_drain_seconds, rss, interval_s=0.25)
        t_end = tm["done"] or now_us()
        st = cons.stats()
        got = sum(x["unique"] for x in st["sources"].values())
        start = tm["first"] or tm["serving"]
        big["broker_restart_seconds"] = round((tm["serving"] - tm["sent"]) / 1e6, 2)
        big["draining"] = {"rss_kb": v.rss_kb(), "max_rss_kb": rss.max_kb, "peak_rss_kb": v.hwm_kb(),
                           "seconds": round((t_end - start) / 1e6, 1), "drained": tm["done"] is not None,
                           "delivered": got, "delivered_per_s": round(got / max(1e-3, (t_end - start) / 1e6)),
                           "live_latency": cons.lat("live", start, t_end - 1_000_000)}
        v.stop()
        cons.stop()
    shutil.rmtree(d, ignore_errors=True)
    out["backlog"] = big
    log(f"footprint: backlog {big['backlog_rows']:,} rows ({big['backlog_bytes'] / 2**20:.0f} MiB accounted, file "
        f"{big['file_bytes'] / 2**20:.0f} MiB); RSS at 10k/s broker down {big['down']['max_rss_kb']} kB, "
        f"draining {big['draining']['max_rss_kb']} kB")
    return out


def phase_peer(a, workdir):
    import collectd_peer
    if not os.access(collectd_peer.COLLECTD, os.X_OK):
        log(f"peer: {collectd_peer.COLLECTD} not installed (Debian package collectd-core): skipped")
        return None
    out = []
    for sc in a.peer_scenarios:
        map_name, devices = sc.split(":")
        r = collectd_peer.run(a.build, seconds=a.peer_seconds, warmup=a.warmup, devices=int(devices), hz=a.peer_hz,
                              workdir=workdir, map_name=map_name, kafka=a.kafka)
        out.append(r)
        log(f"peer {map_name}/{devices}: vane {r['vane']['cpu_us_per_register_read']} µs vs collectd "
            f"{r['collectd']['cpu_us_per_register_read']} µs per register read")
    return out


# --- report -----------------------------------------------------------------------

def fmt(x, nd=0):
    if x is None:
        return "—"
    if isinstance(x, float) and nd:
        return f"{x:,.{nd}f}"
    return f"{x:,.0f}" if isinstance(x, (int, float)) else str(x)


def ratio(a, b, nd=2):
    if a is None or b in (None, 0):
        return "—"
    return f"{a / b:.{nd}f}"


def mb(kb):
    return None if kb is None else kb / 1024


def report(a, r):
    L = []
    p = L.append
    k = r.get("kafka") or {}
    p(f"### End to end, {datetime.date.today()} ({r['machine']})")
    p("")
    p(f"vane {r['version']} ({r['commit']}), build `{a.build}` ({r['build_type']}); {r['kernel']}. "
      f"Simulator source, 15 turbines, turbine schema, into Apache Kafka {k.get('version', '?')} "
      f"({k.get('nodes', 1)} KRaft node(s), broker and controller in one JVM, -Xmx{k.get('heap', '?')}, on loopback; "
      f"started once for the run, serving after {k.get('start_seconds', '?')} s, then warmed up by "
      f"{k.get('warmup_seconds', 0):g} s of the plain producer at full speed, not measured), every measurement on fresh "
      "topics (3 partitions, dead-letter topic 1, replication factor 1) read back continuously by "
      f"vane-bench-consumer. Window {a.seconds:g} s after {a.warmup:g} s of warm-up. Kafka properties: "
      f"{a.props or 'vane defaults'}. Load average (1/5/15 min) at the start "
      f"{r.get('load_start', '?')}, at the end {r.get('load_end', '?')}.")
    p("")
    p("**plain producer** = kafka_bench, a plain librdkafka producer with vane's producer settings "
      "(idempotent, acks=all, linger.ms=5, batch.num.messages=10000, at most kafka.max_in_flight = 10000 "
      "unacknowledged), vane's payloads and headers, to the same broker, read back by the same consumer, in "
      "the same run. Every vane / plain ratio below is of figures measured minutes apart at most.")
    p("")
    cap = r.get("capture")
    if cap:
        p(f"Payload: a real reading vane produced, {cap['avg_value_bytes']:.0f} bytes on average, e.g. `{cap['example']}`.")
        p("")
    ceil = r.get("ceilings") or {}
    sq = ceil.get("sqlite", {})
    kb = ceil.get("kafka")
    kc = kb["readings_per_s"] if kb else None
    mx = r.get("max") or {}
    if sq or kb:
        p("#### Ceilings (same run)")
        p("")
        p("| ceiling | readings/s | CPU s per million | notes |")
        p("|---|---|---|---|")
        for sync, c in sq.items():
            p(f"| raw SQLite insert+delete, sync={sync} | {fmt(c['readings_per_s'])} | {c['cpu_s_per_million']:.2f} | "
              f"insert batch {c['insert_batch']}, delete batch {c['delete_batch']}, {c['keep']} rows kept; "
              f"runs {', '.join(fmt(x) for x in c['runs'])} |")
        if kb:
            p(f"| plain producer at full speed | {fmt(kb['readings_per_s'])} | {kb['cpu_s_per_million']:.2f} | "
              f"counted by delivery report; read back: all but {fmt(kb['lost'])}; broker "
              f"{kb['broker_cpu_share']:.2f} cores, consumer {kb['consumer_cpu_share']:.2f} cores; peak RSS "
              f"{mb(kb['peak_rss_kb']):.1f} MiB; runs {', '.join(fmt(x) for x in kb['runs'])} |")
        p("")
        p(f"Median of {a.ceiling_reps} runs of {a.ceiling_seconds:g} s each.")
        p("")
    if mx:
        p("#### Full speed (rate \"max\")")
        p("")
        p("| buffer.sync | delivered readings/s | taken in readings/s | acked (buffer) readings/s | CPU s per million | "
          "CPU (cores) | peak RSS | plain producer readings/s (paired run) | **vane / plain** | "
          "vane / SQLite ceiling | lost | dup | dropped |")
        p("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for sync, m in mx.items():
            sc = sq.get(sync, {}).get("readings_per_s")
            pl = m["plain"]["readings_per_s"]
            p(f"| {sync} | {fmt(m['delivered_per_s'])} | {fmt(m['ingested_per_s'])} | {fmt(m['acked_per_s_by_buffer'])} | "
              f"{fmt(m['cpu_s_per_million'], 2)} | "
              f"{m['cpu_share']:.2f} | {mb(m['peak_rss_kb']):.1f} MiB | {fmt(pl)} | "
              f"**{ratio(m['delivered_per_s'], pl)}** | {ratio(m['delivered_per_s'], sc)} | {fmt(m['lost'])} | "
              f"{m['dup']} | {fmt(m.get('dropped'))} |")
        p("")
        any_sync, any_m = next(iter(mx.items()))
        p(f"CPU of the harness (sync={any_sync}): broker {any_m['broker_cpu_share']:.2f} cores and consumer "
          f"{any_m['consumer_cpu_share']:.2f} cores while vane ran; broker {any_m['plain']['broker_cpu_share']:.2f} "
          f"and consumer {any_m['plain']['consumer_cpu_share']:.2f} cores while the plain producer ran; the machine "
          f"has {os.cpu_count()} cores. Paired run: the plain producer for the same {a.seconds:g} s on fresh "
          "topics of the same broker right after each vane run. "
          "delivered: unique vane-seqs read back per second; taken in: the buffer's next_seq per second; acked "
          "(buffer): taken in minus the growth of the rows left in the buffer. When taken in exceeds delivered, "
          "the buffer grows (the simulator is faster than the uplink side). CPU s per million: vane's utime+stime "
          "per million delivered readings, the simulator source included (it runs inside vane). "
          "lost: seqs neither read back from Kafka nor left in the buffer after vane stopped; dup: "
          "read back twice; dropped: vane's own count (buffer.max_bytes is 32GiB here, out of reach).")
        p("")
    su = r.get("sustain")
    if su:
        p("#### Highest rate sustained end to end (sync=normal)")
        p("")
        p("| rate/s | keeps up | delivered/s | taken in/s | backlog growth (rows) | p99 ms | CPU (cores) | "
          "CPU s per million | lost |")
        p("|---|---|---|---|---|---|---|---|---|")
        for st in su["steps"]:
            p(f"| {fmt(st['rate'])} | {'yes' if st['ok'] else 'no'} | {fmt(st['delivered_per_s'])} | "
              f"{fmt(st['ingested_per_s'])} | {fmt(st['backlog_growth_rows'])} | {st['p99_ms']:.1f} | "
              f"{st['cpu_share']:.2f} | {fmt(st['cpu_s_per_million'], 2)} | {fmt(st['lost'])} |")
        p("")
        best = su["sustained_per_s"]
        p(f"Each step {a.sustain_seconds:g} s at a fixed simulator rate; it keeps up when delivered and taken in are "
          "within 2 % of the rate and the buffer grew by less than a second's worth. Highest rate kept up: "
          f"**{fmt(best)}/s**" + (f", **{ratio(best, kc)}** of the plain producer at full speed ({fmt(kc)}/s)."
                                  if best and kc else "."))
        p("")
    rt = r.get("rates") or {}
    floors = r.get("plain_rates") or {}
    if rt:
        p("#### Fixed rates: reading -> Kafka latency")
        p("")
        p("| buffer.sync | rate/s | delivered/s | p50 ms | p99 ms | p99.9 ms | max ms | n | plain producer "
          "p50 / p99 / p99.9 ms | **vane / plain p50** | **vane / plain p99** | CPU s per million | "
          "**vane / plain CPU** | peak RSS | **vane / plain RSS** | lost |")
        p("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        order = {s: i for i, s in enumerate(a.sync)}
        for key, m in sorted(rt.items(), key=lambda kv: (order.get(kv[1]["sync"], 9), kv[1]["rate"])):
            lat = m["latency"]
            f = floors.get(m["rate"]) or {}
            fl = f.get("latency")
            fls = f"{fl['p50_ms']:.1f} / {fl['p99_ms']:.1f} / {fl['p999_ms']:.1f}" if fl else "—"
            p(f"| {m['sync']} | {fmt(m['rate'])} | {fmt(m['delivered_per_s'])} | {lat['p50_ms']:.1f} | {lat['p99_ms']:.1f} | "
              f"{lat['p999_ms']:.1f} | {lat['max_ms']:.1f} | {fmt(lat['n'])} | {fls} | "
              f"{ratio(lat['p50_ms'], fl['p50_ms'] if fl else None, 1)} | "
              f"{ratio(lat['p99_ms'], fl['p99_ms'] if fl else None, 1)} | {fmt(m['cpu_s_per_million'], 2)} | "
              f"{ratio(m['cpu_s_per_million'], f.get('cpu_s_per_million'), 1)} | {mb(m['peak_rss_kb']):.1f} MiB | "
              f"{ratio(m['peak_rss_kb'], f.get('peak_rss_kb'), 1)} | {fmt(m['lost'])} |")
        p("")
        p("Latency = the time vane-bench-consumer got the message - the reading's timestamp in the payload "
          "(simulator clock, same machine). It covers the pipeline, the buffer commit, the forwarder, the producer "
          "(linger.ms=5), the broker (acks=all: appended and, with one node, committed) and the consumer's fetch "
          "(the broker answers a waiting fetch as soon as a message lands); it does not include vane deleting the "
          "row after the ack. Plain producer: kafka_bench --rate, the same payloads stamped at production, run "
          "right before vane's runs at that rate; its CPU and RSS are a process doing nothing but produce, "
          "vane's include the simulator, the schema check and the SQLite buffer.")
        split = [f"{m['sync']}/{fmt(m['rate'])}: {mb(m['rss_end_kb']['RssFile']):.1f} MiB file-backed + "
                 f"{mb(m['rss_end_kb']['RssAnon']):.1f} MiB anonymous" for m in rt.values() if m.get("rss_end_kb")
                 and m["rss_end_kb"].get("RssFile") is not None]
        if split:
            p("RSS at the end of each window, file-backed (mostly shared libraries' pages) and anonymous: "
              + "; ".join(split) + ".")
        if floors:
            p("Check of the method on the plain producer, its own ack latency (produce -> delivery report) vs "
              "consumer-side: " + "; ".join(
                  f"{rate}/s: ack p50 {f['ack_p50_ms']:.1f} / p99 {f['ack_p99_ms']:.1f} ms, consumer-side "
                  f"{f['latency']['p50_ms']:.1f} / {f['latency']['p99_ms']:.1f} ms" for rate, f in floors.items()) + ".")
        p("")
    dr = r.get("drain") or {}
    if dr:
        live_floor = (floors.get(int(a.drain_live_rate)) or {}).get("latency")
        p("#### Backlog drain")
        p("")
        p("| replay | buffered at restart | fill s | broker restart s | vane delivering after s | drain s | "
          "drain readings/s | **vane drain / plain producer** | live p50 ms | live p99 ms | live p99.9 ms | "
          "live n | **live p99 / plain p99** | CPU s per million | peak RSS | lost | dup |")
        p("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for replay, m in dr.items():
            lat = m["live_latency"]
            p(f"| {replay} | {fmt(m['buffered_at_up'])} | {m['fill_seconds']} | {m['restart_seconds']} | "
              f"{m['first_delivery_after_serving_s']} | {m['drain_seconds']} | {fmt(m['drain_per_s'])} | "
              f"**{ratio(m['drain_per_s'], kc)}** | {lat['p50_ms']:.1f} | {lat['p99_ms']:.1f} | "
              f"{lat['p999_ms']:.1f} | {fmt(lat['n'])} | "
              f"{ratio(lat['p99_ms'], live_floor['p99_ms'] if live_floor else None, 1)} | "
              f"{m['cpu_s_per_million']:.2f} | {mb(m['peak_rss_kb_during_drain']):.1f} MiB | "
              f"{fmt(m['lost'])} | {m['dup']} |")
        p("")
        p(f"Broker down (vane-kafka-peer `down all`: every node SIGKILLed), {fmt(a.backlog_rows)} readings of source "
          f"\"backlog\" at full speed plus source \"live\" at {fmt(a.drain_live_rate)}/s, sync=normal; then `up all` "
          "(the JVM restarted on the same data). broker restart s: from `up all` until the harness saw the node "
          "registered; vane delivering after s: from then until the consumer got vane's first message (vane's "
          "producer reconnecting, librdkafka's reconnect backoff; negative: before the harness noticed). Drain: "
          "from that first message until every row buffered at the restart was read back; vane drain / plain "
          f"producer: that rate over the plain producer's at full speed ({fmt(kc)}/s). Live latency: readings of "
          "\"live\" taken during the drain; live p99 / plain p99: over the plain producer's p99 at "
          f"{fmt(a.drain_live_rate)}/s. dup: read back twice (the broker drops an idempotent producer's retried "
          "batches, so this is 0 unless vane itself sent a row twice).")
        p("")
    fp = r.get("footprint")
    if fp:
        p("#### Footprint")
        p("")
        bg = fp["backlog"]
        f10 = floors.get(10000) or {}
        pl = f" (plain producer at 10k/s: {mb(f10['peak_rss_kb']):.1f} MiB)" if f10.get("peak_rss_kb") else ""
        p("| what | figure |")
        p("|---|---|")
        p(f"| `vane` binary, stripped (strip of a copy) | {fmt(fp['stripped_bytes'])} bytes (unstripped {fmt(fp['binary_bytes'])}) |")
        p(f"| RSS idle (15 turbines x 1 reading/s, {fp['idle']['seconds']:g} s) | {mb(fp['idle']['rss_kb']):.1f} MiB "
          f"(peak {mb(fp['idle']['peak_rss_kb']):.1f} MiB; of it file-backed, mostly shared libraries: "
          f"{mb(fp['idle']['rss_file_kb']):.1f} MiB, anonymous: {mb(fp['idle']['rss_anon_kb']):.1f} MiB) |")
        p(f"| RSS at 10k readings/s, {bg['backlog_rows']:,} rows ({bg['backlog_bytes'] / 2**20:,.0f} MiB accounted, "
          f"file {bg['file_bytes'] / 2**20:,.0f} MiB) buffered, broker down, {bg['down']['seconds']:g} s | "
          f"{mb(bg['down']['max_rss_kb']):.1f} MiB max (VmHWM {mb(bg['down']['peak_rss_kb']):.1f} MiB){pl} |")
        dn = bg["draining"]
        p(f"| RSS at 10k readings/s while draining that backlog (replay {a.footprint_replay}, {dn['seconds']:g} s, "
          f"{'drained' if dn['drained'] else 'not drained yet'}, {fmt(dn['delivered_per_s'])} readings/s delivered, "
          f"live p99 {dn['live_latency']['p99_ms']:.0f} ms) | {mb(dn['max_rss_kb']):.1f} MiB max (VmHWM "
          f"{mb(dn['peak_rss_kb']):.1f} MiB){pl} |")
        p("")
        p(f"The backlog was written by a vane at full speed with the broker down ({bg['fill_seconds']} s); a second "
          f"vane opened it ({bg['restart_seconds']} s to \"running\", quick_check included) and took 10k readings/s "
          "(source \"live\", 5 turbines). RSS: VmRSS sampled every 0.25 s; VmHWM reset (clear_refs 5) at the start "
          f"of the window. Draining: from vane's first message after the broker restart "
          f"({bg['broker_restart_seconds']} s until it served) for at most {a.footprint_drain_seconds:g} s.")
        p("")
    pe = r.get("peer")
    if pe:
        import collectd_peer
        p("#### Modbus polling: vane vs collectd")
        p("")
        for x in pe:
            L.extend(collectd_peer.markdown(x, heading=False))
            p("")
    # Targets.
    p("#### Targets")
    p("")
    p("| target | measured | met |")
    p("|---|---|---|")
    for name, measured, ok in targets(r):
        met = ok if isinstance(ok, str) else ("yes" if ok else "**no**")
        p(f"| {name} | {measured} | {met} |")
    p("")
    p("The targets are absolute figures from the project's goals; on a loaded machine and against a JVM broker "
      "sharing its 2 cores they say less than the ratios above.")
    p("")
    return "\n".join(L)


def targets(r):
    out = []
    mx, sq = r.get("max") or {}, (r.get("ceilings") or {}).get("sqlite", {})
    m = mx.get("normal")
    if m:
        out.append(("e2e >= 250k readings/s at sync=normal", f"{m['delivered_per_s']:,}/s", m["delivered_per_s"] >= 250000))
        c = sq.get("normal", {}).get("readings_per_s")
        if c:
            out.append(("e2e >= 60 % of the raw SQLite ceiling (sync=normal)", f"{m['delivered_per_s'] / c:.0%} of {c:,.0f}/s",
                        m["delivered_per_s"] >= 0.6 * c))
    su = r.get("sustain")
    if su:
        best = su["sustained_per_s"] or 0
        out.append(("e2e >= 250k readings/s at sync=normal, as the highest fixed rate kept up with",
                    f"{best:,}/s" if best else f"below {su['steps'][0]['rate']:,}/s", best >= 250000))

    def rss(kb):
        """12 MB read as 12 MiB; the figure in both units, and whether it is
        under 12 MiB and under 12 * 10^6 bytes."""
        b = kb * 1024
        both = "yes" if b <= 12e6 else ("only as MiB (not under 12 * 10^6 bytes)" if b <= 12 * 2**20 else None)
        return f"{b / 2**20:.2f} MiB = {b / 1e6:.2f} MB", both
    for key, x in (r.get("rates") or {}).items():
        if x["rate"] == 10000:
            out.append((f"p99 reading->ack <= 20 ms at 10k/s (sync={x['sync']})", f"{x['latency']['p99_ms']:.1f} ms",
                        x["latency"]["p99_ms"] <= 20))
            out.append((f"RSS <= 12 MB at 10k/s (sync={x['sync']}, VmHWM over the run)", *rss(x["peak_rss_kb"])))
    fp = r.get("footprint")
    if fp:
        bg = fp["backlog"]
        out.append(("RSS <= 12 MB at 10k/s with the ~1 GB backlog, broker down (max VmRSS)",
                    *rss(bg["down"]["max_rss_kb"])))
        out.append(("RSS <= 12 MB at 10k/s with the ~1 GB backlog, draining (max VmRSS)",
                    *rss(bg["draining"]["max_rss_kb"])))
    for replay, d in (r.get("drain") or {}).items():
        out.append((f"drain >= 200k/s (replay={replay})", f"{d['drain_per_s']:,}/s", d["drain_per_s"] >= 200000))
        out.append((f"live p99 <= 50 ms during the drain (replay={replay})", f"{d['live_latency']['p99_ms']:.1f} ms",
                    d["live_latency"]["p99_ms"] <= 50))
    for x in r.get("peer") or []:
        v, c = x["vane"]["cpu_us_per_register_read"], x["collectd"]["cpu_us_per_register_read"]
        if v and c:
            out.append((f"Modbus CPU per register read <= 0.5x collectd ({x['map']} map, {x['devices']} devices, "
                        f"{x['expected_register_reads_per_s']:,} reads/s)",
                        f"{v / c:.2f}x ({v:.2f} vs {c:.2f} µs)", v <= 0.5 * c))
    return out


def build_info(build):
    info = {"build_type": "?", "commit": "?", "version": "?"}
    try:
        with open(f"{build}/CMakeCache.txt") as f:
            for line in f:
                if line.startswith("CMAKE_BUILD_TYPE:"):
                    info["build_type"] = line.split("=", 1)[1].strip()
                if line.startswith("CMAKE_HOME_DIRECTORY:"):
                    src = line.split("=", 1)[1].strip()
                    c = subprocess.run(["git", "-C", src, "describe", "--always", "--dirty"], capture_output=True,
                                       text=True)
                    info["commit"] = c.stdout.strip() or "?"
        v = subprocess.run([f"{build}/agent/vane", "--version"], capture_output=True, text=True)
        info["version"] = v.stdout.strip().replace("vane ", "")
    except OSError:
        pass
    return info


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", required=True)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--warmup", type=float, default=3)
    ap.add_argument("--ceiling-seconds", type=float, default=10)
    ap.add_argument("--ceiling-reps", type=int, default=3, help="runs per ceiling; the median counts")
    ap.add_argument("--phases", default="capture,ceilings,max,sustain,rates,drain,footprint,peer")
    ap.add_argument("--sustain-rates", default="100000,150000,200000,250000,300000,400000")
    ap.add_argument("--sustain-seconds", type=float, default=10)
    ap.add_argument("--sync", default="off,normal,full")
    ap.add_argument("--rates", default="1000,10000,100000")
    ap.add_argument("--replays", default="fifo,live_first")
    ap.add_argument("--backlog-rows", type=int, default=1000000)
    ap.add_argument("--drain-live-rate", type=float, default=1000)
    ap.add_argument("--footprint-backlog-mb", type=int, default=1024)
    ap.add_argument("--footprint-seconds", type=float, default=10)
    ap.add_argument("--footprint-replay", default="live_first")
    ap.add_argument("--footprint-drain-seconds", type=float, default=30)
    ap.add_argument("--idle-seconds", type=float, default=10)
    ap.add_argument("--peer-seconds", type=float, default=20)
    ap.add_argument("--peer-scenarios", default="turbine:10,turbine:50,bench:10",
                    help="MAP:DEVICES,... for collectd_peer.py (maps: turbine, bench)")
    ap.add_argument("--peer-hz", type=float, default=10)
    ap.add_argument("--property", action="append", default=[],
                    help="kafka property K=V for vane and the plain producer")
    ap.add_argument("--kafka-nodes", type=int, default=1, help="KRaft nodes of the broker (replication follows)")
    ap.add_argument("--kafka-heap", default=KAFKA_HEAP, help="-Xmx of each broker JVM")
    ap.add_argument("--kafka-warmup", type=float, default=15,
                    help="seconds of the plain producer at full speed before the first measurement, not measured: "
                         "a fresh JVM runs slower until its hot paths are compiled")
    ap.add_argument("--quick", action="store_true", help="short windows, small backlogs")
    ap.add_argument("--smoke", action="store_true", help="about a second per phase: does the harness work")
    ap.add_argument("--json")
    ap.add_argument("--workdir", default=None, help="parent of the temp dir (default /tmp)")
    a = ap.parse_args()
    if a.quick:
        a.seconds, a.ceiling_seconds, a.backlog_rows, a.ceiling_reps = 8, 4, 300000, 1
        a.footprint_backlog_mb, a.footprint_seconds, a.footprint_drain_seconds = 128, 5, 10
        a.idle_seconds, a.peer_seconds, a.sustain_seconds, a.kafka_warmup = 5, 8, 5, 8
    if a.smoke:
        a.seconds, a.warmup, a.ceiling_seconds, a.backlog_rows, a.ceiling_reps = 1, 0.5, 1, 5000, 1
        a.sync, a.rates, a.replays = "normal", "1000", "live_first"
        a.footprint_backlog_mb, a.footprint_seconds, a.footprint_drain_seconds = 2, 1, 5
        a.idle_seconds, a.peer_seconds, a.peer_scenarios = 1, 1, "turbine:2"
        a.sustain_rates, a.sustain_seconds, a.kafka_warmup = "20000", 1, 0
    a.build = os.path.abspath(a.build)
    a.sync = [s for s in a.sync.split(",") if s]
    a.rates = [int(float(x)) for x in a.rates.split(",") if x]
    a.sustain_rates = [int(float(x)) for x in a.sustain_rates.split(",") if x]
    a.peer_scenarios = [x for x in a.peer_scenarios.split(",") if x]
    a.replays = [s for s in a.replays.split(",") if s]
    a.props = dict(kv.split("=", 1) for kv in a.property) or None
    phases = set(a.phases.split(","))
    a.phase_set = phases
    install_signal_cleanup()

    info = build_info(a.build)
    r = {"date": str(datetime.date.today()), "machine": machine(), "kernel": f"Linux {platform.release()}", **info,
         "args": {k: v for k, v in vars(a).items()}, "load_start": "%.2f / %.2f / %.2f" % os.getloadavg()}
    workdir = tempfile.mkdtemp(prefix="vane-e2e-bench-", dir=a.workdir)
    try:
        with Procs() as base:
            a.kafka = KafkaPeer(base, a.build, nodes=a.kafka_nodes, heap=a.kafka_heap)
            r["kafka"] = {"version": kafka_version(), "nodes": a.kafka_nodes, "heap": a.kafka_heap,
                          "start_seconds": a.kafka.start_seconds, "bootstrap": a.kafka.bootstrap,
                          "warmup_seconds": a.kafka_warmup}
            if a.kafka_warmup > 0:
                w = run_plain(a, None, a.kafka_warmup)
                r["kafka"]["warmup_per_s"] = w["readings_per_s"]
                log(f"kafka: warmed up, {a.kafka_warmup:g} s of the plain producer at {w['readings_per_s']:,.0f}/s")
            cap = None
            if phases & {"capture", "ceilings", "max", "rates", "footprint"}:
                cap = phase_capture(a, workdir)
                r["capture"] = {k: v for k, v in cap.items() if k != "file"}
            payloads = cap["file"] if cap else None
            if "ceilings" in phases:
                r["ceilings"] = phase_ceilings(a, workdir, payloads)
            if "max" in phases:
                r["max"] = phase_max(a, workdir, payloads)
            if "sustain" in phases:
                r["sustain"] = phase_sustain(a, workdir)
            if "rates" in phases:
                r["rates"], r["plain_rates"] = phase_rates(a, workdir, payloads)
            if "drain" in phases:
                r["drain"] = phase_drain(a, workdir)
            if "footprint" in phases:
                r["footprint"] = phase_footprint(a, workdir, cap)
            if "peer" in phases:
                r["peer"] = phase_peer(a, workdir)
            a.kafka.stop()
    finally:
        r["load_end"] = "%.2f / %.2f / %.2f" % os.getloadavg()
        shutil.rmtree(workdir, ignore_errors=True)
        if a.json:
            with open(a.json, "w") as f:
                json.dump(r, f, indent=1, default=str)
    a.kafka = None
    print(report(a, r))
    bad = [m for m in (r.get("max") or {}).values() if m["lost"] or m["plain"]["lost"]] + \
          [m for m in (r.get("drain") or {}).values() if m["lost"]]
    if r.get("ceilings") and r["ceilings"]["kafka"]["lost"]:
        bad.append(r["ceilings"]["kafka"])
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
