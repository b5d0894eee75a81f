#!/usr/bin/python3
"""Where vane's time goes in the end-to-end run: vane as e2e_bench.py runs it
(simulator -> schema -> buffer -> a real Apache Kafka broker, vane-kafka-peer,
consumer reading along), sampled with perf.

    e2e_profile.py --build BUILD_DIR [--rate max|N] [--sync normal] [--seconds 15]
                   [--out DIR] [--freq 499]

Records `perf record --call-graph dwarf` of the vane process for --seconds
after a warm-up, then prints: CPU per thread (from /proc, with each
thread's name), the hottest symbols by inclusive cost (perf report
--children), and per thread the top self-cost symbols. perf.data stays in
--out (default: a temp dir that is removed) for further digging:
    perf report -i OUT/perf.data --children
Needs perf (Debian linux-perf) and permission to trace the process
(root, or kernel.perf_event_paranoid <= 1).
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_util import Consumer, KafkaPeer, Procs, Vane, install_signal_cleanup, log, wait_until  # noqa: E402
from e2e_bench import sim, vane_cfg  # noqa: E402


def thread_cpu(pid):
    """{tid: (name, cpu ticks)} of a process's threads."""
    out = {}
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{t}/stat") as f:
                s = f.read()
            name = s[s.index("(") + 1:s.rindex(")")]
            st = s.rsplit(")", 1)[1].split()
            out[int(t)] = (name, int(st[11]) + int(st[12]))
        except (OSError, ValueError):
            pass
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", required=True)
    ap.add_argument("--rate", default="max")
    ap.add_argument("--sync", default="normal")
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--warmup-readings", type=int, default=20000,
                    help="profile once the consumer has read this many (start-up is not what is profiled)")
    ap.add_argument("--freq", type=int, default=499)
    ap.add_argument("--out")
    ap.add_argument("--limit", type=float, default=1.5, help="percent below which symbols are not printed")
    a = ap.parse_args()
    install_signal_cleanup()
    if not shutil.which("perf"):
        print("e2e_profile: perf is not installed (Debian package linux-perf)", file=sys.stderr)
        return 77
    build = os.path.abspath(a.build)
    rate = a.rate if a.rate == "max" else float(a.rate)
    work = tempfile.mkdtemp(prefix="vane-e2e-profile-")
    out = a.out or work
    os.makedirs(out, exist_ok=True)
    data = f"{out}/perf.data"
    tick = os.sysconf("SC_CLK_TCK")
    try:
        with Procs() as procs:
            kafka = KafkaPeer(procs, build)
            t = kafka.fresh()
            cons = Consumer(procs, build, kafka.bootstrap, t.read)
            v = Vane(procs, build, work, vane_cfg(work, kafka.bootstrap, [sim("sim", rate=rate)], sync=a.sync,
                                                 max_bytes="32GiB", topics=t))
            v.wait_running()
            if not wait_until(lambda: cons.unique() >= a.warmup_readings, 60, interval_s=0.1):
                raise RuntimeError(f"fewer than {a.warmup_readings} readings reached Kafka within 60 s")
            t0, u0 = thread_cpu(v.pid), cons.unique()
            w0 = time.monotonic()
            r = subprocess.run(["perf", "record", "-q", "-F", str(a.freq), "--call-graph", "dwarf,16384", "-p",
                                str(v.pid), "-o", data, "--", "sleep", str(a.seconds)],
                               capture_output=True, text=True, timeout=a.seconds + 120)
            wall = time.monotonic() - w0
            t1, u1 = thread_cpu(v.pid), cons.unique()
            if r.returncode != 0:
                print(f"perf record failed: {r.stderr}", file=sys.stderr)
                return 1
            v.stop()
            cons.stop()
        print(f"## vane at rate {a.rate}, sync={a.sync}: {(u1 - u0) / wall:,.0f} readings/s delivered while "
              f"profiled ({a.seconds:g} s, perf at {a.freq} Hz, dwarf call graphs)")
        print()
        print("CPU per thread over the window (from /proc; perf's own overhead included):")
        print()
        rows = []
        for tid, (name, ticks) in t1.items():
            d = (ticks - t0.get(tid, (name, 0))[1]) / tick
            rows.append((d, tid, name))
        for d, tid, name in sorted(rows, reverse=True):
            if d > 0:
                print(f"  tid {tid:>7} {name:<16} {d / wall:5.2f} cores")
        print()
        report = ["perf", "report", "-i", data, "--stdio", "--no-header", "--percent-limit", str(a.limit)]
        print("Inclusive cost (children), whole process:")
        print()
        r = subprocess.run(report + ["--children", "-g", "none", "--sort", "sym"], capture_output=True, text=True)
        print("\n".join(l for l in r.stdout.splitlines() if l.strip() and not l.startswith("#"))[:20000])
        print()
        print("Self cost by thread (pid column: thread id) and symbol:")
        print()
        r = subprocess.run(report + ["--no-children", "-g", "none", "--sort", "pid,sym"], capture_output=True,
                           text=True)
        print("\n".join(l for l in r.stdout.splitlines() if l.strip() and not l.startswith("#"))[:20000])
        if a.out:
            log(f"perf data: {data}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
