"""Shared by the benchmark scripts."""
import contextlib
import ctypes
import json
import os
import selectors
import signal
import socket
import sqlite3
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
from polling import wait_until  # noqa: E402,F401  (re-exported for the bench scripts)


def log(*args):
    print(time.strftime("%H:%M:%S"), *args, file=sys.stderr, flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


# --- /proc ------------------------------------------------------------------

TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid):
    """utime + stime of a process (all its threads), seconds."""
    with open(f"/proc/{pid}/stat") as f:
        st = f.read().rsplit(")", 1)[1].split()
    return (int(st[11]) + int(st[12])) / TICK


def cpu_ns(pid):
    """CPU time of a process's live threads, ns (sum of
    /proc/PID/task/*/schedstat): finer than the clock ticks of
    /proc/PID/stat, for light loads; threads that exited are not in it."""
    total = 0
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{t}/schedstat") as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return total


def status_kb(pid, field):
    """A kB field of /proc/PID/status (VmRSS, VmHWM, ...)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return None


def machine():
    model, mhz = "?", "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and model == "?":
                    model = line.split(":", 1)[1].strip()
                if line.startswith("cpu MHz") and mhz == "?":
                    mhz = line.split(":", 1)[1].strip().split(".")[0]
    except OSError:
        pass
    return f"{os.uname().machine}, {os.cpu_count()} cores, {model} @ {mhz} MHz"


# --- child processes ----------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)


def _die_with_parent():
    # PR_SET_PDEATHSIG: the child gets SIGKILL when this script goes away,
    # however it goes.
    _libc.prctl(1, signal.SIGKILL, 0, 0, 0)


class Procs:
    """Every child of a benchmark: started with a parent-death signal, and
    stopped (stdin closed, then after `grace` seconds SIGTERM, then SIGKILL,
    each with a deadline) on close(), in reverse order of start."""

    def __init__(self):
        self.procs = []
        self.grace = {}

    def start(self, argv, grace=0.5, **kw):
        kw.setdefault("stdin", subprocess.DEVNULL)
        p = subprocess.Popen(argv, preexec_fn=_die_with_parent, **kw)
        self.procs.append(p)
        self.grace[p.pid] = grace
        return p

    def stop(self, p, timeout=10):
        if p.poll() is None:
            if p.stdin:
                try:
                    p.stdin.close()
                except OSError:
                    pass
            try:
                p.wait(timeout=self.grace.get(p.pid, 0.5))
            except subprocess.TimeoutExpired:
                p.terminate()
                try:
                    p.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(timeout=10)
        if p in self.procs:
            self.procs.remove(p)
        self.grace.pop(p.pid, None)
        return p.returncode

    def close(self):
        for p in reversed(list(self.procs)):
            try:
                self.stop(p, timeout=5)
            except Exception as e:  # keep stopping the others
                log(f"stopping pid {p.pid}: {e}")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def install_signal_cleanup():
    """SIGTERM/SIGHUP end the script through the normal exit path (finally
    blocks and context managers stop the children)."""
    def handler(sig, _frame):
        raise SystemExit(128 + sig)
    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGHUP, handler)


class Lines:
    """Line reader on a child's stdout pipe with deadlines."""

    def __init__(self, proc):
        self.proc = proc
        self.fd = proc.stdout.fileno()
        os.set_blocking(self.fd, False)
        self.buf = b""
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.fd, selectors.EVENT_READ)

    def readline(self, timeout):
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"pid {self.proc.pid}: no line within {timeout} s")
            if not self.sel.select(left):
                continue
            chunk = os.read(self.fd, 65536)
            if not chunk:
                raise EOFError(f"pid {self.proc.pid} closed its stdout (exit {self.proc.poll()})")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode()


def children(pid):
    """Pids whose parent is `pid` (a scan of /proc)."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                st = f.read().rsplit(")", 1)[1].split()
            if int(st[1]) == pid:
                out.append(int(d))
        except (OSError, ValueError, IndexError):
            pass
    return out


# -Xmx of each broker JVM: a benchmark's broker takes hundreds of thousands
# of messages/s; VANE_BENCH_KAFKA_HEAP overrides.
KAFKA_HEAP = os.environ.get("VANE_BENCH_KAFKA_HEAP", "1g")


class Topics:
    """The topics of one measurement: `topic` (vane's kafka.topic), `dlq`
    (its dead_letter_topic) and any `extra` ones."""

    def __init__(self, topic, partitions=3, extra=()):
        self.topic, self.dlq, self.partitions = topic, topic + ".dlq", partitions
        self.extra = list(extra)

    @property
    def read(self):
        """What the consumer reads back: both."""
        return [self.topic, self.dlq]

    def kafka_cfg(self):
        return {"topic": self.topic, "dead_letter_topic": self.dlq}


class KafkaPeer:
    """A real Apache Kafka, `nodes` KRaft nodes on loopback (vane-kafka-peer,
    tests/support/kafka_peer_main.cpp), as a child. One serves a whole
    benchmark run; each measurement takes fresh topics (fresh()) and drops
    them afterwards (drop()), so its offsets and vane-seq counts start at
    zero and the broker does not carry the previous one's data.

    down()/up() SIGKILL and restart every node (up() returns once the
    cluster serves again: the JVM starting, log recovery, the node
    registering)."""

    def __init__(self, procs, build, nodes=1, heap=None, topics=None, start_timeout=300):
        self.build = build
        argv = [f"{build}/tests/support/vane-kafka-peer", "--nodes", str(nodes), "--heap", heap or KAFKA_HEAP]
        for t in topics or []:
            argv += ["--topic", t]
        self.procs = procs
        # Going away it SIGKILLs its JVMs and removes their data: give it time.
        t0 = time.monotonic()
        self.proc = procs.start(argv, grace=60, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.lines = Lines(self.proc)
        try:
            line = self.lines.readline(start_timeout)
        except EOFError:
            raise RuntimeError("vane-kafka-peer did not start (its reason is on stderr above)") from None
        if not line.startswith("BOOTSTRAP "):
            raise RuntimeError(f"vane-kafka-peer: {line!r}")
        self.bootstrap = line.split()[1]
        self.start_seconds = round(time.monotonic() - t0, 1)
        self.serial = 0
        log(f"kafka: Apache Kafka, {nodes} node(s), serving at {self.bootstrap} after {self.start_seconds} s")

    def command(self, cmd, timeout=240):
        """down/up/stop/cont; returns the seconds it took (up: until the
        cluster serves again)."""
        t0 = time.monotonic()
        self.proc.stdin.write((cmd + "\n").encode())
        self.proc.stdin.flush()
        reply = self.lines.readline(timeout)
        if not reply.startswith("OK"):
            raise RuntimeError(f"vane-kafka-peer {cmd}: {reply}")
        return time.monotonic() - t0

    def down(self):
        return self.command("down all")

    def up(self):
        return self.command("up all")

    def _topics(self, *args, timeout=120):
        r = subprocess.run([f"{self.build}/tests/bench/vane-bench-topics", "--bootstrap", self.bootstrap, *args],
                           capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError(f"vane-bench-topics {' '.join(args)}: {r.stderr.strip()}")

    def fresh(self, partitions=3, extra=()):
        """New topics for one measurement: NAME (`partitions`), NAME.dlq (1),
        and per `extra` item "SUFFIX:PARTS" one NAME+SUFFIX."""
        self.serial += 1
        name = f"bench{self.serial}"
        specs = [f"{name}{e}" for e in extra]
        t = Topics(name, partitions, [x.split(":")[0] for x in specs])
        self._topics("create", f"{t.topic}:{partitions}", f"{t.dlq}:1", *specs)
        return t

    def drop(self, t):
        self._topics("delete", t.topic, t.dlq, *t.extra)

    @contextlib.contextmanager
    def topics(self, partitions=3, extra=()):
        """fresh() for the with-block, drop() after it."""
        t = self.fresh(partitions, extra)
        try:
            yield t
        finally:
            try:
                self.drop(t)
            except Exception as e:  # a broker that is down keeps them: no matter
                log(f"kafka: could not delete topics of {t.topic}: {e}")

    def broker_pids(self):
        """The JVMs (the peer's children that exec'd java)."""
        return [c for c in children(self.proc.pid) if _comm(c) == "java"]

    def cpu_s(self):
        """CPU seconds of the running broker JVMs (a restarted node starts
        from 0: compare only within one broker life)."""
        total = 0.0
        for pid in self.broker_pids():
            try:
                total += cpu_s(pid)
            except OSError:
                pass
        return total

    def rss_kb(self):
        return sum(status_kb(p, "VmRSS") or 0 for p in self.broker_pids())

    def stop(self):
        self.procs.stop(self.proc)


def _comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


class Consumer:
    """vane-bench-consumer (tests/bench/bench_consumer.cpp) as a child.

    fetch_wait_ms: the broker holds a fetch at most this long when nothing
    is there; it answers as soon as a message lands (fetch.min.bytes=1), so
    a longer wait costs no latency, only fewer empty fetches."""

    def __init__(self, procs, build, bootstrap, topics, latency="none", dump=None, dump_count=0,
                 fetch_wait_ms=100):
        argv = [f"{build}/tests/bench/vane-bench-consumer", "--bootstrap", bootstrap, "--latency", latency,
                "--fetch-wait-ms", str(fetch_wait_ms)]
        for t in topics:
            argv += ["--topic", t]
        if dump:
            argv += ["--dump", dump, "--dump-count", str(dump_count)]
        self.procs = procs
        self.proc = procs.start(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.lines = Lines(self.proc)
        line = self.lines.readline(60)
        if line != "READY":
            raise RuntimeError(f"vane-bench-consumer: {line!r}")

    def ask(self, cmd, timeout=60):
        self.proc.stdin.write((cmd + "\n").encode())
        self.proc.stdin.flush()
        return json.loads(self.lines.readline(timeout))

    def stats(self):
        return self.ask("stats")

    def unique(self, source=None):
        s = self.stats()["sources"]
        if source is None:
            return sum(v["unique"] for v in s.values())
        return s.get(source, {}).get("unique", 0)

    def lat(self, source, from_us, to_us):
        return self.ask(f"lat {source} {int(from_us)} {int(to_us)}")

    def missing(self, upto):
        return self.ask(f"missing {int(upto)}", timeout=120)

    def cpu_s(self):
        return cpu_s(self.proc.pid)

    def stop(self):
        self.procs.stop(self.proc)

    def wait_quiet(self, want=None, quiet_s=2.0, timeout=60):
        """Until `want` unique vane-seqs were seen (if given), or nothing new
        arrived for quiet_s, or timeout; returns the last stats."""
        seen = {"st": None, "n": -1, "since": time.monotonic()}

        def settled():
            st = seen["st"] = self.stats()
            n = sum(v["unique"] for v in st["sources"].values())
            if want is not None and n >= want:
                return True
            if n != seen["n"]:
                seen["n"], seen["since"] = n, time.monotonic()
                return False
            return time.monotonic() - seen["since"] >= quiet_s

        wait_until(settled, timeout, interval_s=0.1)
        return seen["st"]


def now_us():
    return time.time_ns() // 1000


class Vane:
    """The real vane binary with a config written from a dict."""

    def __init__(self, procs, build, workdir, cfg, name="vane", vane_bin=None):
        self.procs = procs
        self.cfg_path = f"{workdir}/{name}.jsonc"
        self.err_path = f"{workdir}/{name}.stderr"
        self.buffer = cfg["buffer"]["path"]
        with open(self.cfg_path, "w") as f:
            json.dump(cfg, f, indent=1)
        self.err = open(self.err_path, "w+")
        self.proc = procs.start([vane_bin or f"{build}/agent/vane", "run", "-c", self.cfg_path], stderr=self.err)
        self.pid = self.proc.pid

    def log_text(self):
        with open(self.err_path) as f:
            return f.read()

    def wait_running(self, timeout=60):
        if not wait_until(lambda: " running: " in self.log_text() or self.proc.poll() is not None, timeout):
            raise RuntimeError(f"vane did not start within {timeout} s:\n{self.log_text()[-3000:]}")
        if self.proc.poll() is not None:
            raise RuntimeError(f"vane exited {self.proc.returncode}:\n{self.log_text()[-3000:]}")

    def cpu_s(self):
        return cpu_s(self.pid)

    def rss_kb(self):
        return status_kb(self.pid, "VmRSS")

    def hwm_kb(self):
        return status_kb(self.pid, "VmHWM")

    def stop(self, timeout=60):
        """SIGTERM, and wait (vane flushes what is in flight, bounded by
        kafka.shutdown_timeout_ms). Returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                log("vane did not stop in time: SIGKILL")
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self.proc in self.procs.procs:
            self.procs.procs.remove(self.proc)
        self.err.close()
        return self.proc.returncode


def buffer_next_seq(path):
    """next_seq from the buffer's meta table (read-only, while vane runs)."""
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        return con.execute("SELECT value FROM meta WHERE key = 'next_seq'").fetchone()[0]
    finally:
        con.close()


def buffer_rows(path, after=0, source=None):
    """Rows with seq > after (of one source): (count, max seq)."""
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        q = "SELECT count(*), coalesce(max(seq), 0) FROM rows WHERE seq > ?"
        args = [after]
        if source is not None:
            q += " AND source = ?"
            args.append(source)
        return con.execute(q, args).fetchone()
    finally:
        con.close()


def buffer_seqs(path):
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        return {r[0] for r in con.execute("SELECT seq FROM rows")}
    finally:
        con.close()


def buffer_totals(path):
    """(rows, accounted bytes) of a buffer file."""
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        return con.execute("SELECT count(*), coalesce(sum(size), 0) FROM rows").fetchone()
    finally:
        con.close()


def file_bytes(path):
    total = 0
    for suffix in ("", "-wal"):
        try:
            total += os.stat(path + suffix).st_size
        except OSError:
            pass
    return total
