#!/usr/bin/python3
"""End to end: the real vane binary, simulator -> schema -> buffer -> Kafka
helper (vane-kafka-mock, its own process) -> delete-on-ack, against ceilings
measured in the same run, and collectd as the Modbus peer.

    e2e_bench.py --build BUILD_DIR [--seconds 30] [--quick | --smoke]
                 [--phases capture,ceilings,max,sustain,rates,drain,footprint,peer]
                 [--sync off,normal,full] [--rates 1000,10000,100000]
                 [--backlog-rows 1000000] [--footprint-backlog-mb 1024]
                 [--json FILE]

Prints a Markdown report (absolute figures, ratios vane / ceiling and
vane / peer, targets met or missed) on stdout; progress on stderr; with
--json also every figure as JSON. Phases:

  capture    2 s of vane at full speed; the first 1000 messages it produced
             become the payloads of the ceilings
  ceilings   raw SQLite insert+delete (sqlite_ceiling: vane's table, pragmas,
             insert and delete batch sizes; no vane code) per buffer.sync
             level, and raw librdkafka produce (kafka_bench: vane's producer
             settings and payloads) to the same Kafka helper, read back by the
             same consumer as vane's output
  max        per buffer.sync level: the simulator at full speed (rate "max",
             15 turbines, the turbine schema) for --seconds after a warm-up:
             readings/s delivered (unique vane-seq read back from Kafka),
             readings/s taken in, CPU seconds per million delivered readings
             (utime+stime of vane from /proc), peak RSS (VmHWM); at the end
             vane stops and every seq is accounted for: in Kafka or still in
             the buffer (lost), or in Kafka twice (dup)
  rates      per buffer.sync level and fixed rate: reading -> Kafka latency
             p50/p99/p999 (see LATENCY below), CPU, RSS
  drain      broker down; --backlog-rows readings buffered (source "backlog",
             full speed) while a live source ("live", --drain-live-rate/s)
             runs; broker up: drain rate (readings buffered at "up" / time
             until all of them were read back) and the latency of the live
             readings taken during the drain; for replay fifo and live_first
  footprint  stripped binary size (strip of a copy); RSS idle (15 turbines,
             1 reading/s each); RSS at 10k readings/s with a
             --footprint-backlog-mb backlog, broker down and then draining
  sustain    the highest fixed rate (--sustain-rates, ascending, until one
             fails) that vane keeps up with end to end at sync=normal
  peer       collectd_peer.py: vane's modbus_tcp source vs collectd 5.12
             (modbus -> write_kafka) on the same vane-sim slaves

LATENCY: measured on the consumer side as (the time vane-bench-consumer got
the message - the reading's timestamp in the payload). It covers everything
up to the message being readable in the broker plus the consumer's fetch
(fetch.wait.max.ms=1); vane learns of the ack from the produce response at
about the same moment, but deleting the row (its ack transaction) comes
after, and is not in this figure.
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
from bench_util import (Consumer, KafkaMock, Procs, Vane, buffer_next_seq, buffer_rows, buffer_seqs,  # noqa: E402
                        buffer_totals, cpu_s, file_bytes, install_signal_cleanup, log, machine, now_us, status_kb,
                        wait_until)

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.path.dirname(os.path.dirname(HERE))
TOPICS = ["telemetry:3", "telemetry.dlq:1"]
READ_TOPICS = ["telemetry", "telemetry.dlq"]


def sim(name, rate="max", devices=15, limit=0, seed=1):
    s = {"name": name, "type": "simulator", "model": "turbine", "devices": devices, "rate": rate,
         "schema": "turbine", "seed": seed}
    if limit:
        s["limit"] = int(limit)
    return s


def vane_cfg(workdir, bootstrap, sources, sync="normal", replay="fifo", max_bytes="1GiB", props=None):
    cfg = {
        "gateway": {"id": "gw-bench"},
        "buffer": {"path": f"{workdir}/buffer.db", "sync": sync, "replay": replay, "max_bytes": max_bytes},
        "kafka": {"brokers": bootstrap},
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
        log(f"the consumer fell behind the helper's retention: {st['skipped_offsets']} offsets skipped; "
            "lost cannot be told")
    return {"appended": next_seq - 1, "left_in_buffer": len(left), "dropped": dropped(vane),
            "lost": miss["missing"] if not st["skipped_offsets"] else None,
            "lost_sample": miss["sample"], "dup": dup, "skipped_offsets": st["skipped_offsets"]}


# --- phases ---------------------------------------------------------------------

def phase_capture(a, workdir):
    """A sample of what vane produces: payloads for the ceilings."""
    dump = f"{workdir}/payloads.tsv"
    d = tempfile.mkdtemp(dir=workdir)
    with Procs() as procs:
        mock = KafkaMock(procs, a.build, TOPICS)
        cons = Consumer(procs, a.build, mock.bootstrap, READ_TOPICS, dump=dump, dump_count=1000)
        v = Vane(procs, a.build, d, vane_cfg(d, mock.bootstrap, [sim("sim")], props=a.props))
        v.wait_running()
        wait_until(lambda: cons.unique() >= 2000, 20)
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
    # The produce ceiling has no consumer reading along: at its rates no
    # consumer keeps up with what the helper retains (~5 MB per partition),
    # and one that falls behind loads the machine differently from run to
    # run. Delivery reports (acks=all) are its count.
    runs = []
    for _ in range(a.ceiling_reps):
        with Procs() as procs:
            mock = KafkaMock(procs, a.build, TOPICS)
            argv = [f"{a.build}/tests/bench/kafka_bench", "--bootstrap", mock.bootstrap, "--seconds",
                    str(a.ceiling_seconds), "--payloads", payloads]
            for k, v in (a.props or {}).items():
                argv += ["--property", f"{k}={v}"]
            m0 = cpu_s(mock.proc.pid)
            r = subprocess.run(argv, capture_output=True, text=True, timeout=a.ceiling_seconds + 180)
            if r.returncode != 0:
                raise RuntimeError(f"kafka_bench: {r.stderr}{r.stdout}")
            k = json.loads(r.stdout.strip().splitlines()[-1])
            k["mock_cpu_s"] = round(cpu_s(mock.proc.pid) - m0, 3)
            runs.append(k)
    out["kafka"] = k = median_run(runs)
    log(f"ceiling kafka: {k['readings_per_s']:,.0f} readings/s (runs {k['runs']}), delivered {k['delivered']} of "
        f"{k['produced']}")
    # The latency floor of the Kafka path alone at each fixed rate: the same
    # producer settings, helper and consumer, no vane.
    out["kafka_rates"] = {}
    for rate in a.rates if "rates" in a.phase_set else []:
        with Procs() as procs:
            mock = KafkaMock(procs, a.build, TOPICS)
            cons = Consumer(procs, a.build, mock.bootstrap, READ_TOPICS, latency="sim")
            argv = [f"{a.build}/tests/bench/kafka_bench", "--bootstrap", mock.bootstrap, "--seconds",
                    str(a.ceiling_seconds), "--rate", str(rate), "--payloads", payloads]
            for k_, v_ in (a.props or {}).items():
                argv += ["--property", f"{k_}={v_}"]
            t0 = now_us()
            r = subprocess.run(argv, capture_output=True, text=True, timeout=a.ceiling_seconds + 180)
            if r.returncode != 0:
                raise RuntimeError(f"kafka_bench --rate: {r.stderr}{r.stdout}")
            k = json.loads(r.stdout.strip().splitlines()[-1])
            cons.wait_quiet(want=k["delivered"] + 1, quiet_s=3, timeout=60)
            k["latency"] = cons.lat("sim", t0, now_us())
            out["kafka_rates"][rate] = k
            log(f"ceiling kafka at {rate}/s: consumer-side p50 {k['latency']['p50_ms']} p99 {k['latency']['p99_ms']} "
                f"p999 {k['latency']['p999_ms']} ms; producer ack p50 {k['ack_p50_ms']} p99 {k['ack_p99_ms']} ms")
    return out


def run_steady(a, workdir, sync, rate, seconds, warmup, latency):
    """One vane with one simulator source at `rate` ("max" or readings/s)."""
    d = tempfile.mkdtemp(dir=workdir)
    res = {"sync": sync, "rate": rate}
    with Procs() as procs:
        mock = KafkaMock(procs, a.build, TOPICS)
        cons = Consumer(procs, a.build, mock.bootstrap, READ_TOPICS, latency="sim" if latency else "none")
        # At full speed the simulator outruns the uplink and the buffer grows:
        # a cap that no run reaches, so nothing is dropped.
        v = Vane(procs, a.build, d, vane_cfg(d, mock.bootstrap, [sim("sim", rate=rate)], sync=sync,
                                             max_bytes="32GiB", props=a.props))
        v.wait_running()
        time.sleep(warmup)  # start-up is not what is measured
        s0, c0, n0, m0, k0 = cons.stats(), v.cpu_s(), buffer_next_seq(v.buffer), cpu_s(mock.proc.pid), cons.cpu_s()
        t0 = now_us()
        r0 = buffer_rows(v.buffer)[0]
        rss = RssSampler(v.pid)
        rss.sleep(seconds)
        t1 = now_us()
        s1, c1, n1, m1, k1 = cons.stats(), v.cpu_s(), buffer_next_seq(v.buffer), cpu_s(mock.proc.pid), cons.cpu_s()
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
            "mock_cpu_share": round((m1 - m0) / wall, 3),
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


def phase_max(a, workdir):
    out = {}
    for sync in a.sync:
        r = run_steady(a, workdir, sync, "max", a.seconds, a.warmup, latency=False)
        out[sync] = r
        log(f"max {sync}: delivered {r['delivered_per_s']:,}/s, ingested {r['ingested_per_s']:,}/s, "
            f"{r['cpu_s_per_million']} CPU s/M, peak RSS {r['peak_rss_kb']} kB, lost {r['lost']}, dup {r['dup']}")
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


def phase_rates(a, workdir):
    out = {}
    for sync in a.sync:
        for rate in a.rates:
            r = run_steady(a, workdir, sync, rate, a.seconds, a.warmup, latency=True)
            out[f"{sync}/{rate}"] = r
            lat = r["latency"]
            log(f"rate {sync}/{rate}: delivered {r['delivered_per_s']:,}/s, p50 {lat['p50_ms']} p99 {lat['p99_ms']} "
                f"p999 {lat['p999_ms']} ms (n={lat['n']}), {r['cpu_s_per_million']} CPU s/M, "
                f"RSS {r['peak_rss_kb']} kB, lost {r['lost']}")
    return out


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
        time.sleep(0.25)
    return seen


def run_drain(a, workdir, replay):
    d = tempfile.mkdtemp(dir=workdir)
    res = {"replay": replay, "backlog_rows": a.backlog_rows, "live_rate": a.drain_live_rate}
    with Procs() as procs:
        mock = KafkaMock(procs, a.build, TOPICS)
        cons = Consumer(procs, a.build, mock.bootstrap, READ_TOPICS, latency="live")
        mock.command("down all")
        sources = [sim("backlog", rate="max", limit=a.backlog_rows), sim("live", rate=a.drain_live_rate, devices=5, seed=2)]
        v = Vane(procs, a.build, d, vane_cfg(d, mock.bootstrap, sources, sync="normal", replay=replay,
                                             max_bytes="4GiB", props=a.props))
        v.wait_running()
        t_fill = time.monotonic()
        fill_backlog(v, "backlog", a.backlog_rows, timeout=max(300, a.backlog_rows / 2000))
        res["fill_seconds"] = round(time.monotonic() - t_fill, 1)
        time.sleep(1)  # live readings keep coming while the broker is down
        reset_hwm(v.pid)
        n_up = buffer_next_seq(v.buffer) - 1
        c0 = v.cpu_s()
        t_up = now_us()
        mock.command("up all")
        rss = RssSampler(v.pid)
        deadline = time.monotonic() + max(120, a.backlog_rows / 5000)
        t_done = None
        while time.monotonic() < deadline:
            if cons.ask(f"missing {n_up}", timeout=60)["missing"] == 0:
                t_done = now_us()
                break
            rss.sample()
            time.sleep(0.05)
        c1 = v.cpu_s()
        if t_done is None:
            raise RuntimeError(f"drain ({replay}): not drained within the deadline")
        rss.sleep(1)  # live readings from the end of the drain reach the consumer
        hwm = v.hwm_kb()
        drain_s = (t_done - t_up) / 1e6
        rc = v.stop()
        acc = account(v, cons)
        res.update({
            "buffered_at_up": n_up,
            "drain_seconds": round(drain_s, 2),
            "drain_per_s": round(n_up / drain_s),
            "cpu_s_per_million": round((c1 - c0) / n_up * 1e6, 3),
            "live_latency": cons.lat("live", t_up, t_done),
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
        log(f"drain {replay}: {r['buffered_at_up']:,} rows in {r['drain_seconds']} s = {r['drain_per_s']:,}/s, "
            f"live p50 {lat['p50_ms']} p99 {lat['p99_ms']} ms (n={lat['n']}), lost {r['lost']}, dup {r['dup']}")
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
    with Procs() as procs:
        mock = KafkaMock(procs, a.build, TOPICS)
        v = Vane(procs, a.build, d, vane_cfg(d, mock.bootstrap, [sim("sim", rate=15)]))
        v.wait_running()
        rss = RssSampler(v.pid)
        rss.sleep(a.idle_seconds)
        out["idle"] = {"rss_kb": v.rss_kb(), "max_rss_kb": rss.max_kb, "peak_rss_kb": v.hwm_kb(),
                       "rss_anon_kb": status_kb(v.pid, "RssAnon"), "rss_file_kb": status_kb(v.pid, "RssFile"),
                       "seconds": a.idle_seconds}
        v.stop()
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
    with Procs() as procs:
        mock = KafkaMock(procs, a.build, TOPICS)
        cons = Consumer(procs, a.build, mock.bootstrap, READ_TOPICS, latency="live")
        mock.command("down all")
        v = Vane(procs, a.build, d, vane_cfg(d, mock.bootstrap, [sim("fill", rate="max", limit=rows)],
                                             sync="normal", max_bytes=max_bytes, props=a.props), name="fill")
        v.wait_running()
        t = time.monotonic()
        fill_backlog(v, "fill", rows, timeout=max(600, rows / 2000))
        big["fill_seconds"] = round(time.monotonic() - t, 1)
        v.stop()
        rows_buffered, bytes_buffered = buffer_totals(v.buffer)
        big["backlog_rows"], big["backlog_bytes"] = rows_buffered, bytes_buffered
        big["file_bytes"] = file_bytes(v.buffer)
        t = time.monotonic()
        v = Vane(procs, a.build, d, vane_cfg(d, mock.bootstrap, [sim("live", rate=10000, devices=5, seed=2)],
                                             sync="normal", replay=a.footprint_replay, max_bytes=max_bytes,
                                             props=a.props), name="live")
        v.wait_running(timeout=600)
        big["restart_seconds"] = round(time.monotonic() - t, 1)
        # Broker down, 10k/s coming in, the backlog on disk.
        time.sleep(1)  # start-up (quick_check of the file) is not what is measured
        reset_hwm(v.pid)
        rss = RssSampler(v.pid)
        rss.sleep(a.footprint_seconds)
        big["down"] = {"rss_kb": v.rss_kb(), "max_rss_kb": rss.max_kb, "peak_rss_kb": v.hwm_kb(),
                       "seconds": a.footprint_seconds}
        # Broker up: draining the backlog while 10k/s keep coming.
        n_up = buffer_next_seq(v.buffer) - 1
        t_up = now_us()
        mock.command("up all")
        rss = RssSampler(v.pid)
        end = time.monotonic() + a.footprint_drain_seconds
        drained = None
        while time.monotonic() < end:
            rss.sleep(1)
            if cons.ask(f"missing {n_up}", timeout=120)["missing"] == 0:
                drained = now_us()
                break
        t_end = now_us()
        st = cons.stats()
        got = sum(x["unique"] for x in st["sources"].values())
        big["draining"] = {"rss_kb": v.rss_kb(), "max_rss_kb": rss.max_kb, "peak_rss_kb": v.hwm_kb(),
                           "seconds": round((t_end - t_up) / 1e6, 1), "drained": drained is not None,
                           "delivered": got, "delivered_per_s": round(got / ((t_end - t_up) / 1e6)),
                           "live_latency": cons.lat("live", t_up, t_end - 1_000_000)}
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
                              workdir=workdir, map_name=map_name)
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
    p(f"### End to end, {datetime.date.today()} ({r['machine']})")
    p("")
    p(f"vane {r['version']} ({r['commit']}), build `{a.build}` ({r['build_type']}); {r['kernel']}. "
      f"Simulator source, 15 turbines, turbine schema, Kafka helper (librdkafka mock, own process, "
      f"topics telemetry:3 and telemetry.dlq:1), read back continuously by vane-bench-consumer. "
      f"Window {a.seconds:g} s after {a.warmup:g} s of warm-up. Kafka properties: {a.props or 'vane defaults'}.")
    p("")
    cap = r.get("capture")
    if cap:
        p(f"Payload: a real reading vane produced, {cap['avg_value_bytes']:.0f} bytes on average, e.g. `{cap['example']}`.")
        p("")
    ceil = r.get("ceilings") or {}
    sq = ceil.get("sqlite", {})
    kb = ceil.get("kafka")
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
            p(f"| raw librdkafka produce to the helper | {fmt(kb['readings_per_s'])} | {kb['cpu_s_per_million']:.2f} | "
              f"vane's producer settings and payloads, max {kb['max_in_flight']} in flight, counted by delivery "
              f"report, no consumer; helper {kb['mock_cpu_s'] / kb['seconds']:.2f} cores; runs "
              f"{', '.join(fmt(x) for x in kb['runs'])} |")
        p("")
        p(f"Median of {a.ceiling_reps} runs of {a.ceiling_seconds:g} s each.")
        p("")
    if mx:
        p("#### Full speed (rate \"max\")")
        p("")
        p("| buffer.sync | delivered readings/s | taken in readings/s | acked (buffer) readings/s | CPU s per million | "
          "CPU (cores) | peak RSS | vane / SQLite ceiling | vane / Kafka ceiling | lost | dup | dropped |")
        p("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for sync, m in mx.items():
            sc = sq.get(sync, {}).get("readings_per_s")
            kc = kb["readings_per_s"] if kb else None
            p(f"| {sync} | {fmt(m['delivered_per_s'])} | {fmt(m['ingested_per_s'])} | {fmt(m['acked_per_s_by_buffer'])} | "
              f"{fmt(m['cpu_s_per_million'], 2)} | "
              f"{m['cpu_share']:.2f} | {mb(m['peak_rss_kb']):.1f} MiB | {ratio(m['delivered_per_s'], sc)} | "
              f"{ratio(m['delivered_per_s'], kc)} | {fmt(m['lost'])} | {m['dup']} | {fmt(m.get('dropped'))} |")
        p("")
        any_m = next(iter(mx.values()))
        p(f"CPU of the harness during these runs: Kafka helper {any_m['mock_cpu_share']:.2f} cores, consumer "
          f"{any_m['consumer_cpu_share']:.2f} cores (sync={next(iter(mx))}); the machine has {os.cpu_count()} cores. "
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
        p(f"Each step {a.sustain_seconds:g} s at a fixed simulator rate; it keeps up when delivered and taken in are "
          "within 2 % of the rate and the buffer grew by less than a second's worth. Highest rate kept up: "
          f"**{fmt(su['sustained_per_s'])}/s**.")
        p("")
    rt = r.get("rates") or {}
    floors = (r.get("ceilings") or {}).get("kafka_rates") or {}
    if rt:
        p("#### Fixed rates: reading -> Kafka latency")
        p("")
        p("| buffer.sync | rate/s | delivered/s | p50 ms | p99 ms | p99.9 ms | max ms | n | Kafka path alone "
          "p50 / p99 / p99.9 ms | vane / Kafka p99 | CPU s per million | CPU (cores) | peak RSS | lost |")
        p("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for key, m in rt.items():
            lat = m["latency"]
            fl = floors.get(m["rate"], {}).get("latency")
            fls = f"{fl['p50_ms']:.1f} / {fl['p99_ms']:.1f} / {fl['p999_ms']:.1f}" if fl else "—"
            p(f"| {m['sync']} | {fmt(m['rate'])} | {fmt(m['delivered_per_s'])} | {lat['p50_ms']:.1f} | {lat['p99_ms']:.1f} | "
              f"{lat['p999_ms']:.1f} | {lat['max_ms']:.1f} | {fmt(lat['n'])} | {fls} | "
              f"{ratio(lat['p99_ms'], fl['p99_ms'] if fl else None, 1)} | {fmt(m['cpu_s_per_million'], 2)} | "
              f"{m['cpu_share']:.3f} | {mb(m['peak_rss_kb']):.1f} MiB | {fmt(m['lost'])} |")
        p("")
        p("Latency = the time vane-bench-consumer got the message - the reading's timestamp in the payload "
          "(simulator clock, same machine). It covers the pipeline, the buffer commit, the forwarder, the producer "
          "(linger.ms=5), the helper and the consumer's fetch (fetch.wait.max.ms=1); it does not include vane "
          "deleting the row after the ack. \"Kafka path alone\": kafka_bench --rate, the same payloads stamped at "
          "production, same producer settings, helper and consumer, no vane.")
        split = [f"{m['sync']}/{fmt(m['rate'])}: {mb(m['rss_end_kb']['RssFile']):.1f} MiB file-backed + "
                 f"{mb(m['rss_end_kb']['RssAnon']):.1f} MiB anonymous" for m in rt.values() if m.get("rss_end_kb")
                 and m["rss_end_kb"].get("RssFile") is not None]
        if split:
            p("RSS at the end of each window, file-backed (mostly shared libraries' pages) and anonymous: "
              + "; ".join(split) + ".")
        if floors:
            p("Check of the method on that raw path, producer's own ack latency (produce -> delivery report) vs "
              "consumer-side: " + "; ".join(
                  f"{rate}/s: ack p50 {f['ack_p50_ms']:.1f} / p99 {f['ack_p99_ms']:.1f} ms, consumer-side "
                  f"{f['latency']['p50_ms']:.1f} / {f['latency']['p99_ms']:.1f} ms" for rate, f in floors.items()) + ".")
        p("")
    dr = r.get("drain") or {}
    if dr:
        p("#### Backlog drain")
        p("")
        p("| replay | buffered at broker up | fill s | drain s | drain readings/s | live p50 ms | live p99 ms | "
          "live p99.9 ms | live n | CPU s per million | peak RSS | lost | dup |")
        p("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for replay, m in dr.items():
            lat = m["live_latency"]
            p(f"| {replay} | {fmt(m['buffered_at_up'])} | {m['fill_seconds']} | {m['drain_seconds']} | "
              f"{fmt(m['drain_per_s'])} | {lat['p50_ms']:.1f} | {lat['p99_ms']:.1f} | {lat['p999_ms']:.1f} | "
              f"{fmt(lat['n'])} | {m['cpu_s_per_million']:.2f} | {mb(m['peak_rss_kb_during_drain']):.1f} MiB | "
              f"{fmt(m['lost'])} | {m['dup']} |")
        p("")
        p(f"Broker down (vane-kafka-mock `down all`), {fmt(a.backlog_rows)} readings of source \"backlog\" at full "
          f"speed plus source \"live\" at {fmt(a.drain_live_rate)}/s, sync=normal; then `up all`. Drain: every row "
          "buffered at \"up\" read back. Live latency: readings of \"live\" taken during the drain. dup: the mock "
          "lets an idempotent producer's retries after a broker outage land twice (see kafka_mock_helper.cpp).")
        p("")
    fp = r.get("footprint")
    if fp:
        p("#### Footprint")
        p("")
        bg = fp["backlog"]
        p("| what | figure |")
        p("|---|---|")
        p(f"| `vane` binary, stripped (strip of a copy) | {fmt(fp['stripped_bytes'])} bytes (unstripped {fmt(fp['binary_bytes'])}) |")
        p(f"| RSS idle (15 turbines x 1 reading/s, {fp['idle']['seconds']:g} s) | {mb(fp['idle']['rss_kb']):.1f} MiB "
          f"(peak {mb(fp['idle']['peak_rss_kb']):.1f} MiB; of it file-backed, mostly shared libraries: "
          f"{mb(fp['idle']['rss_file_kb']):.1f} MiB, anonymous: {mb(fp['idle']['rss_anon_kb']):.1f} MiB) |")
        p(f"| RSS at 10k readings/s, {bg['backlog_rows']:,} rows ({bg['backlog_bytes'] / 2**20:,.0f} MiB accounted, "
          f"file {bg['file_bytes'] / 2**20:,.0f} MiB) buffered, broker down, {bg['down']['seconds']:g} s | "
          f"{mb(bg['down']['max_rss_kb']):.1f} MiB max (VmHWM {mb(bg['down']['peak_rss_kb']):.1f} MiB) |")
        dn = bg["draining"]
        p(f"| RSS at 10k readings/s while draining that backlog (replay {a.footprint_replay}, {dn['seconds']:g} s, "
          f"{'drained' if dn['drained'] else 'not drained yet'}, {fmt(dn['delivered_per_s'])} readings/s delivered, "
          f"live p99 {dn['live_latency']['p99_ms']:.0f} ms) | {mb(dn['max_rss_kb']):.1f} MiB max (VmHWM "
          f"{mb(dn['peak_rss_kb']):.1f} MiB) |")
        p("")
        p(f"The backlog was written by a vane at full speed with the broker down ({bg['fill_seconds']} s); a second "
          f"vane opened it ({bg['restart_seconds']} s to \"running\", quick_check included) and took 10k readings/s "
          "(source \"live\", 5 turbines). RSS: VmRSS sampled every 0.25 s; VmHWM reset (clear_refs 5) at the start "
          "of the window.")
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
    ap.add_argument("--property", action="append", default=[], help="kafka property K=V for vane and the ceiling")
    ap.add_argument("--quick", action="store_true", help="short windows, small backlogs")
    ap.add_argument("--smoke", action="store_true", help="about a second per phase: does the harness work")
    ap.add_argument("--json")
    ap.add_argument("--workdir", default=None, help="parent of the temp dir (default /tmp)")
    a = ap.parse_args()
    if a.quick:
        a.seconds, a.ceiling_seconds, a.backlog_rows, a.ceiling_reps = 8, 4, 300000, 1
        a.footprint_backlog_mb, a.footprint_seconds, a.footprint_drain_seconds = 128, 5, 10
        a.idle_seconds, a.peer_seconds, a.sustain_seconds = 5, 8, 5
    if a.smoke:
        a.seconds, a.warmup, a.ceiling_seconds, a.backlog_rows, a.ceiling_reps = 1, 0.5, 1, 5000, 1
        a.sync, a.rates, a.replays = "normal", "1000", "live_first"
        a.footprint_backlog_mb, a.footprint_seconds, a.footprint_drain_seconds = 2, 1, 5
        a.idle_seconds, a.peer_seconds, a.peer_scenarios = 1, 1, "turbine:2"
        a.sustain_rates, a.sustain_seconds = "20000", 1
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
         "args": {k: v for k, v in vars(a).items()}}
    workdir = tempfile.mkdtemp(prefix="vane-e2e-bench-", dir=a.workdir)
    try:
        cap = None
        if phases & {"capture", "ceilings", "footprint"}:
            cap = phase_capture(a, workdir)
            r["capture"] = {k: v for k, v in cap.items() if k != "file"}
        if "ceilings" in phases:
            r["ceilings"] = phase_ceilings(a, workdir, cap["file"])
        if "max" in phases:
            r["max"] = phase_max(a, workdir)
        if "sustain" in phases:
            r["sustain"] = phase_sustain(a, workdir)
        if "rates" in phases:
            r["rates"] = phase_rates(a, workdir)
        if "drain" in phases:
            r["drain"] = phase_drain(a, workdir)
        if "footprint" in phases:
            r["footprint"] = phase_footprint(a, workdir, cap)
        if "peer" in phases:
            r["peer"] = phase_peer(a, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if a.json:
            with open(a.json, "w") as f:
                json.dump(r, f, indent=1, default=str)
    print(report(a, r))
    bad = [m for m in (r.get("max") or {}).values() if m["lost"]] + \
          [m for m in (r.get("drain") or {}).values() if m["lost"]]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
