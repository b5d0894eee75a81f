#!/usr/bin/python3
"""The status page (agent/web/status.html) rendered in headless Chromium.

    status_page_test.py --url URL --expect-source NAME --expect-device ID [--screenshot PNG]
    status_page_test.py --build BUILD_DIR [--screenshot PNG]

URL mode renders the page at URL (its JavaScript runs against the server's
/health and /api/v1/latest for a few seconds of virtual time), dumps the DOM
and checks: no "connection lost" banner, an overall status, the source NAME
listed with its state, and the device ID in the latest-readings table with
at least one numeric field value. --screenshot saves a 1280x900 PNG.

Build mode starts vane-kafka-mock and vane itself (a simulator source with
devices T-001..., an HTTP endpoint on a free loopback port), waits for
/health to answer 200 and T-001 to appear in /api/v1/latest, runs URL mode
against it, and stops vane with SIGTERM.

Exits 0 when every check holds, 1 otherwise (with the reasons on stderr).
"""
import argparse
import html.parser
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
from polling import wait_until  # noqa: E402

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-default-apps", "--no-first-run",
    "--mute-audio", "--disable-extensions", "--metrics-recording-only",
]
SOURCE_STATES = {"up", "no_data", "stalled", "finished"}
CHROMIUM_TIMEOUT_S = 60
SOURCE_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Failed(Exception):
    pass


# --- a minimal DOM from Chromium's --dump-dom output ------------------------

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class Node:
    def __init__(self, tag, attrs, parent):
        self.tag, self.attrs, self.parent, self.children = tag, dict(attrs), parent, []

    def classes(self):
        return (self.attrs.get("class") or "").split()

    def text(self):
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def iter(self):
        for c in self.children:
            if isinstance(c, Node):
                yield c
                yield from c.iter()

    def find_all(self, tag=None, cls=None, **attrs):
        return [n for n in self.iter() if (tag is None or n.tag == tag) and (cls is None or cls in n.classes())
                and all(n.attrs.get(k.replace("_", "-")) == v for k, v in attrs.items())]

    def find(self, tag=None, cls=None, **attrs):
        found = self.find_all(tag, cls, **attrs)
        return found[0] if found else None


class DomBuilder(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", [], None)
        self.cur = self.root

    def handle_starttag(self, tag, attrs):
        n = Node(tag, attrs, self.cur)
        self.cur.children.append(n)
        if tag not in VOID:
            self.cur = n

    def handle_startendtag(self, tag, attrs):
        self.cur.children.append(Node(tag, attrs, self.cur))

    def handle_endtag(self, tag):
        n = self.cur
        while n is not None and n.tag != tag:
            n = n.parent
        if n is not None and n.parent is not None:
            self.cur = n.parent

    def handle_data(self, data):
        self.cur.children.append(data)


def parse_dom(text):
    b = DomBuilder()
    b.feed(text)
    b.close()
    return b.root


# --- Chromium -----------------------------------------------------------------

def chromium(args, timeout_s=CHROMIUM_TIMEOUT_S):
    """Runs headless Chromium with a throwaway profile; returns its stdout."""
    exe = shutil.which("chromium") or "/usr/bin/chromium"
    profile = tempfile.mkdtemp(prefix="vane-chromium-")
    try:
        r = subprocess.run([exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise Failed(f"chromium did not finish within {timeout_s} s: {' '.join(args)}")
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    if r.returncode != 0:
        raise Failed(f"chromium exited {r.returncode}: {r.stderr[-2000:]}")
    return r.stdout


def is_number(s):
    try:
        float(s)
        return True
    except ValueError:
        return False


def check_dom(dom, source, device):
    """Returns a list of what is wrong with the rendered page."""
    problems = []
    conn = dom.find(id="conn")
    if conn is None:
        problems.append("no #conn banner element in the page")
    elif "hidden" not in conn.attrs:
        problems.append(f"'connection lost' banner shown: {conn.text().strip()!r}")
    st = dom.find(id="st")
    status = st.text().strip() if st else ""
    if status not in ("ok", "stalled"):
        problems.append(f"overall status is {status!r}, want ok or stalled")
    why = dom.find(id="why")
    if status == "stalled" and (why is None or "hidden" in why.attrs or not why.text().strip()):
        problems.append("status stalled but no 'why' shown")
    gw = dom.find(id="gw")
    if gw is None or gw.text().strip() in ("", "…"):
        problems.append("gateway id not shown")

    table = dom.find("table", id="sources")
    rows = table.find_all("tr", data_source=source) if table else []
    if not rows:
        names = [r.attrs.get("data-source") for r in table.find_all("tr")] if table else []
        problems.append(f"source {source!r} not in the sources table (have {names})")
    else:
        name = rows[0].find("td", cls="name")
        state = rows[0].find("td", cls="state")
        if name is None or name.text().strip() != source:
            problems.append(f"source row does not show the name {source!r}")
        if state is None or state.text().strip() not in SOURCE_STATES:
            problems.append(f"source {source!r} state is {state.text().strip() if state else None!r}")

    table = dom.find("table", id="latest")
    rows = table.find_all("tr", data_device=device) if table else []
    if not rows:
        devs = [r.attrs.get("data-device") for r in table.find_all("tr")] if table else []
        problems.append(f"device {device!r} not in the latest-readings table (have {devs})")
    else:
        dev = rows[0].find("td", cls="dev")
        if dev is None or dev.text().strip() != device:
            problems.append(f"latest row does not show the device id {device!r}")
        check = rows[0].find("td", cls="check")
        if check is None or not check.text().strip().startswith(("valid", "invalid")):
            problems.append(f"device {device!r} shows no valid/invalid check")
        values = [v.text().strip() for v in rows[0].find_all("span", cls="v")]
        if not any(is_number(v) for v in values):
            problems.append(f"device {device!r} shows no numeric field value (values {values})")
    return problems


def run_url(url, source, device, screenshot):
    out = chromium(["--virtual-time-budget=8000", "--dump-dom", url])
    problems = check_dom(parse_dom(out), source, device)
    if problems:
        raise Failed("the rendered page:\n  " + "\n  ".join(problems))
    print(f"ok: {url} shows source {source!r} and device {device!r}")
    if screenshot:
        path = os.path.abspath(screenshot)
        chromium(["--virtual-time-budget=8000", f"--screenshot={path}", "--window-size=1280,900", url])
        if not os.path.isfile(path) or os.path.getsize(path) == 0:
            raise Failed(f"no screenshot written to {path}")
        print(f"screenshot: {path}")


# --- build mode: the real vane ------------------------------------------------

def line_from(proc, prefix, timeout_s):
    """The rest of the first stdout line of proc starting with prefix, within timeout_s."""
    found = []

    def reader():
        for line in proc.stdout:
            if line.startswith(prefix):
                found.append(line[len(prefix):].strip())
                return

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    t.join(timeout_s)
    if not found:
        raise Failed(f"no {prefix!r} line from {proc.args[0]} within {timeout_s} s")
    return found[0]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url):
    """(status, body) or (None, reason)."""
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (OSError, urllib.error.URLError) as e:
        return None, str(e)


def find_binary(build, *candidates):
    for c in candidates:
        p = os.path.join(build, c)
        if os.access(p, os.X_OK):
            return p
    raise Failed(f"none of {candidates} in {build}")


def run_build(build, screenshot):
    vane_bin = find_binary(build, "agent/vane", "vane")
    mock_bin = find_binary(build, "tests/support/vane-kafka-mock")
    source, device = "sim", "T-001"
    with tempfile.TemporaryDirectory(prefix="vane-web-test-") as d:
        kafka = subprocess.Popen([mock_bin], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        vane = None
        log_path = f"{d}/vane.stderr"
        try:
            bootstrap = line_from(kafka, "BOOTSTRAP ", 20)
            port = free_port()
            cfg = {
                "gateway": {"id": "gw-web-test"},
                "buffer": {"path": f"{d}/buffer.db"},
                "kafka": {"brokers": bootstrap},
                "schemas": {"turbine": f"{SOURCE_DIR}/examples/schemas/turbine.schema.json"},
                "sources": [{"name": source, "type": "simulator", "model": "turbine", "devices": 4,
                             "interval_ms": 500, "schema": "turbine", "faults": 0.05, "seed": 7}],
                "http": {"listen": f"127.0.0.1:{port}"},
            }
            with open(f"{d}/vane.jsonc", "w") as f:
                json.dump(cfg, f)
            with open(log_path, "w") as err:
                vane = subprocess.Popen([vane_bin, "run", "--config", f"{d}/vane.jsonc"], stderr=err,
                                        stdout=subprocess.DEVNULL)
            base = f"http://127.0.0.1:{port}"

            def ready():
                if vane.poll() is not None:
                    raise Failed(f"vane exited {vane.returncode} before its HTTP endpoint answered")
                code, body = http_get(f"{base}/health")
                if code != 200:
                    return False
                code, body = http_get(f"{base}/api/v1/latest")
                try:
                    return code == 200 and any(x.get("device") == device for x in json.loads(body)["devices"])
                except (ValueError, KeyError, TypeError, AttributeError):
                    return False

            if not wait_until(ready, 30):
                hc, hb = http_get(f"{base}/health")
                lc, lb = http_get(f"{base}/api/v1/latest")
                raise Failed(f"{base}: no /health 200 with {device} in /api/v1/latest within 30 s "
                             f"(last /health: {hc} {hb[:200]!r}; /api/v1/latest: {lc} {lb[:200]!r})")
            run_url(f"{base}/", source, device, screenshot)
        except Failed:
            if os.path.exists(log_path):
                with open(log_path) as f:
                    print("--- vane stderr (tail) ---\n" + f.read()[-4000:], file=sys.stderr)
            raise
        finally:
            if vane is not None and vane.poll() is None:
                vane.send_signal(signal.SIGTERM)
                try:
                    vane.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    vane.kill()
                    vane.wait()
                    print("vane did not stop within 30 s of SIGTERM; killed", file=sys.stderr)
            kafka.stdin.close()
            try:
                kafka.wait(timeout=10)
            except subprocess.TimeoutExpired:
                kafka.kill()
                kafka.wait()
        if vane is not None and vane.returncode not in (0, -signal.SIGTERM):
            raise Failed(f"vane exited {vane.returncode} after SIGTERM")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--url", help="render this page (vane's GET /)")
    mode.add_argument("--build", help="build dir: start vane from it and render its page")
    ap.add_argument("--expect-source", help="URL mode: source name the page must list")
    ap.add_argument("--expect-device", help="URL mode: device id the latest-readings table must list")
    ap.add_argument("--screenshot", help="save a 1280x900 PNG of the page here")
    a = ap.parse_args()
    if a.url and not (a.expect_source and a.expect_device):
        ap.error("--url needs --expect-source and --expect-device")
    try:
        if a.url:
            run_url(a.url, a.expect_source, a.expect_device, a.screenshot)
        else:
            run_build(a.build, a.screenshot)
    except Failed as e:
        print(f"FAIL: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
