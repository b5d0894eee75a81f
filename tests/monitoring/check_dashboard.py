#!/usr/bin/env python3
"""Checks the monitoring assets against the metrics contract.

docs/OBSERVABILITY.md's metrics table is the contract. This checks that

- monitoring/grafana/vane-dashboard.json is valid JSON, a tidy dashboard
  (unique panel ids, no overlapping panels, the templated datasource
  DS_PROMETHEUS and the variables instance and source) whose every query uses
  only metric names, labels and label values from the table, and filters by
  $instance (and by $source where the metric has a source label);
- every alert in monitoring/prometheus/vane-alerts.yml uses only names and
  labels from the table, has a severity and a summary and description, and
  is described in monitoring/README.md;
- with --promtool, every dashboard query parses (as a recording rule, with
  Grafana's variables filled in).

Exits 1 listing every problem found.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


def show(path):
    """path relative to the repository when it is in it."""
    rel = os.path.relpath(os.path.abspath(path), ROOT)
    return path if rel.startswith("..") else rel

# Labels every scraped series has (target labels) besides the documented ones.
TARGET_LABELS = {"instance", "job"}
# Series Prometheus makes itself that the rules may use.
PROMETHEUS_SERIES = {"up": {}}
KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan", "atan2"}
LABEL_LIST_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
# Aggregations may be followed by `by (...)` rather than by their argument.
AGGREGATIONS = {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
                "bottomk", "topk", "quantile"}
SEVERITIES = {"critical", "warning", "info"}


# --------------------------------------------------------------------------
# The contract


def load_contract(doc_path):
    """{series name: {label: set of values (empty: any)}} from the metrics table."""
    series = {}
    with open(doc_path, encoding="utf-8") as f:
        for line in f:
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) != 4 or not re.fullmatch(r"`vane_\w+`", cells[0]):
                continue
            name = cells[0].strip("`")
            kind = cells[1]
            labels = {}
            for part in filter(None, (p.strip() for p in cells[2].split(","))):
                m = re.match(r"`(\w+)`\s*(?:=\s*(.*))?$", part)
                if not m:
                    raise SystemExit(f"{doc_path}: cannot read the labels of {name}: {cells[2]!r}")
                labels[m.group(1)] = set(re.findall(r"`([^`]+)`", m.group(2) or ""))
            suffixes = re.findall(r"`(_\w+)`", kind)
            if suffixes:  # e.g. summary (`_sum`, `_count`): only those
                names = [name + s for s in suffixes]
            elif kind.startswith("histogram"):
                names = [name + s for s in ("_bucket", "_sum", "_count")]
            elif kind.startswith("summary"):
                names = [name, name + "_sum", name + "_count"]
            else:
                names = [name]
            for n in names:
                series[n] = dict(labels)
                if n.endswith("_bucket"):
                    series[n]["le"] = set()
    if len(series) < 10:
        raise SystemExit(f"{doc_path}: found only {len(series)} metrics in the table; has its format changed?")
    return series


# --------------------------------------------------------------------------
# A small PromQL scanner: enough to find selectors and label lists.

TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<range>\[[^\]]*\])
  | (?P<num>0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?(?:ms|[smhdwy])*)
  | (?P<var>\$\{[^}]*\}|\$\w+)
  | (?P<ident>[a-zA-Z_:][\w:]*)
  | (?P<op>.)
""", re.X | re.S)

MATCHER = re.compile(r"""\s*(\w+)\s*(=~|!~|!=|=)\s*("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)\s*,?""")


def tokens(expr):
    out = []
    for m in TOKEN.finditer(expr):
        kind = m.lastgroup
        if kind != "ws":
            out.append((kind, m.group()))
    return out


def parse_matchers(toks, i):
    """toks[i] is '{'; returns ([(label, op, value)], index after '}')."""
    depth, j = 0, i
    text = ""
    while j < len(toks):
        kind, val = toks[j]
        if val == "{" and kind == "op":
            depth += 1
            if depth == 1:
                j += 1
                continue
        elif val == "}" and kind == "op":
            depth -= 1
            if depth == 0:
                break
        text += val if kind != "str" else " " + val + " "
        j += 1
    matchers = []
    pos = 0
    while pos < len(text.strip()):
        m = MATCHER.match(text, pos)
        if not m:
            raise ValueError(f"cannot read label matchers {{{text}}}")
        value = m.group(3)[1:-1]
        matchers.append((m.group(1), m.group(2), value))
        pos = m.end()
        if not text[pos:].strip():
            break
    return matchers, j + 1


def parse_label_list(toks, i):
    """toks[i] is '('; returns ([labels], index after ')')."""
    labels, j = [], i + 1
    while j < len(toks) and toks[j][1] != ")":
        if toks[j][0] == "ident":
            labels.append(toks[j][1])
        j += 1
    return labels, j + 1


def analyse(expr):
    """Returns (selectors, label_lists): selectors as (name or None, matchers)."""
    toks = tokens(expr)
    selectors, label_lists = [], []
    i = 0
    while i < len(toks):
        kind, val = toks[i]
        nxt = toks[i + 1][1] if i + 1 < len(toks) else ""
        if kind == "ident":
            if val in LABEL_LIST_KEYWORDS:
                if nxt == "(":
                    labels, i = parse_label_list(toks, i + 1)
                    label_lists.append(labels)
                else:  # group_left without a list
                    i += 1
                continue
            if val in KEYWORDS or val in AGGREGATIONS:
                i += 1
                continue
            if nxt == "(":  # a function or aggregation
                i += 1
                continue
            if nxt == "{":
                matchers, i = parse_matchers(toks, i + 1)
            else:
                matchers, i = [], i + 1
            selectors.append((val, matchers))
            continue
        if kind == "op" and val == "{":  # {__name__=...}
            matchers, i = parse_matchers(toks, i)
            name = next((v for l, o, v in matchers if l == "__name__" and o == "="), None)
            selectors.append((name, [m for m in matchers if m[0] != "__name__"]))
            continue
        i += 1
    return selectors, label_lists


def check_expr(where, expr, contract, problems, needs_filters=False):
    try:
        selectors, label_lists = analyse(expr)
    except ValueError as e:
        problems.append(f"{where}: {e}")
        return
    known = dict(PROMETHEUS_SERIES)
    known.update(contract)
    all_labels = TARGET_LABELS | {"le"} | {l for labels in contract.values() for l in labels}
    if not selectors:
        problems.append(f"{where}: no metric in {expr!r}")
    for name, matchers in selectors:
        if name is None:
            problems.append(f"{where}: a selector without a metric name in {expr!r}")
            continue
        if name not in known:
            problems.append(f"{where}: {name} is not in docs/OBSERVABILITY.md")
            continue
        labels = known[name]
        for label, op, value in matchers:
            if label not in labels and label not in TARGET_LABELS:
                problems.append(f"{where}: {name} has no label {label!r}")
            elif op == "=" and labels.get(label) and "$" not in value and value not in labels[label]:
                problems.append(f"{where}: {name}{{{label}}} takes {sorted(labels[label])}, not {value!r}")
        if needs_filters:
            filters = {(l, o, v) for l, o, v in matchers}
            if ("instance", "=~", "$instance") not in filters:
                problems.append(f"{where}: {name} is not filtered by instance=~\"$instance\"")
            if "source" in labels and ("source", "=~", "$source") not in filters:
                problems.append(f"{where}: {name} is not filtered by source=~\"$source\"")
    for labels in label_lists:
        for label in labels:
            if label not in all_labels:
                problems.append(f"{where}: label {label!r} (in by/on/group) is not in docs/OBSERVABILITY.md")


# --------------------------------------------------------------------------
# The dashboard


def walk_panels(panels):
    for p in panels:
        yield p
        yield from walk_panels(p.get("panels", []))


def grafana_to_promql(expr):
    """Fills in Grafana's variables so that promtool can parse the query."""
    expr = re.sub(r"\$\{?__(rate_)?interval\}?", "5m", expr)
    expr = re.sub(r"\$\{?__range\}?", "1h", expr)
    return re.sub(r"\$\{?\w+\}?", ".*", expr)


def check_dashboard(path, contract, problems):
    try:
        with open(path, encoding="utf-8") as f:
            dash = json.load(f)
    except (OSError, ValueError) as e:
        problems.append(f"{path}: {e}")
        return []
    where = show(path)
    if not isinstance(dash.get("schemaVersion"), int) or dash["schemaVersion"] < 36:
        problems.append(f"{where}: schemaVersion {dash.get('schemaVersion')!r}, want >= 36")
    if not dash.get("uid") or not dash.get("title"):
        problems.append(f"{where}: no uid or title")

    variables = {v.get("name"): v for v in dash.get("templating", {}).get("list", [])}
    ds = variables.get("DS_PROMETHEUS")
    if not ds or ds.get("type") != "datasource" or ds.get("query") != "prometheus":
        problems.append(f"{where}: no datasource variable DS_PROMETHEUS for prometheus")
    for name in ("instance", "source"):
        v = variables.get(name)
        if not v or v.get("type") != "query":
            problems.append(f"{where}: no query variable {name}")
            continue
        q = v.get("query")
        q = q.get("query") if isinstance(q, dict) else q
        m = re.fullmatch(r"\s*label_values\((.*),\s*(\w+)\s*\)\s*", q or "")
        if not m or m.group(2) != name:
            problems.append(f"{where}: variable {name}: want label_values(..., {name}), got {q!r}")
            continue
        check_expr(f"{where}: variable {name}", m.group(1), contract, problems)
        for sel_name, _ in analyse(m.group(1))[0]:
            if sel_name in contract and name not in contract[sel_name] and name not in TARGET_LABELS:
                problems.append(f"{where}: variable {name}: {sel_name} has no label {name}")

    exprs = []
    ids = set()
    boxes = []
    for p in walk_panels(dash.get("panels", [])):
        title = p.get("title", "?")
        pw = f"{where}: panel {title!r}"
        if p.get("id") in ids:
            problems.append(f"{pw}: duplicate id {p.get('id')}")
        ids.add(p.get("id"))
        g = p.get("gridPos", {})
        if not all(isinstance(g.get(k), int) for k in "xywh") or g["x"] + g["w"] > 24:
            problems.append(f"{pw}: bad gridPos {g}")
        else:
            for other, og in boxes:
                if (g["x"] < og["x"] + og["w"] and og["x"] < g["x"] + g["w"]
                        and g["y"] < og["y"] + og["h"] and og["y"] < g["y"] + g["h"]):
                    problems.append(f"{pw}: overlaps panel {other!r}")
            boxes.append((title, g))
        if p.get("type") == "row":
            continue
        if (p.get("datasource") or {}).get("uid") != "${DS_PROMETHEUS}":
            problems.append(f"{pw}: datasource is not ${{DS_PROMETHEUS}}")
        targets = p.get("targets") or []
        if not targets:
            problems.append(f"{pw}: no queries")
        for t in targets:
            expr = (t.get("expr") or "").strip()
            if not expr:
                problems.append(f"{pw}: query {t.get('refId')} is empty")
                continue
            if (t.get("datasource") or {}).get("uid") not in (None, "${DS_PROMETHEUS}"):
                problems.append(f"{pw}: query {t.get('refId')} has another datasource")
            check_expr(f"{pw} {t.get('refId')}", expr, contract, problems, needs_filters=True)
            exprs.append((f"{title} {t.get('refId')}", expr))
    if not exprs:
        problems.append(f"{where}: no queries at all")
    return exprs


def promtool_parse(promtool, exprs, problems):
    """Has promtool parse the dashboard's queries, as recording rules."""
    groups = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query_{n}", "expr": grafana_to_promql(e)} for n, (_, e) in enumerate(exprs)]}]}
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
        json.dump(groups, f)  # JSON is YAML
        name = f.name
    try:
        r = subprocess.run([promtool, "check", "rules", name], capture_output=True, text=True)
        if r.returncode != 0:
            problems.append("dashboard queries do not parse:\n" + r.stdout + r.stderr)
            for n, (where, e) in enumerate(exprs):
                if f'"dashboard:query_{n}"' in r.stdout + r.stderr:
                    problems.append(f"  dashboard:query_{n} is {where}: {e}")
    finally:
        os.unlink(name)


# --------------------------------------------------------------------------
# The alert rules


def load_alerts(path):
    """[(group, alert, expr, labels, annotations)]; PyYAML when there is one."""
    try:
        import yaml
    except ImportError:
        return load_alerts_plain(path)
    with open(path, encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    out = []
    for g in doc.get("groups", []):
        for r in g.get("rules", []):
            if "alert" in r:
                out.append((g.get("name"), r["alert"], r.get("expr", ""), r.get("labels") or {},
                            r.get("annotations") or {}))
    return out


def load_alerts_plain(path):
    """Without PyYAML: reads the layout vane-alerts.yml uses (promtool checks
    the YAML itself)."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    out, group = [], None
    starts = []
    for n, line in enumerate(lines):
        m = re.match(r"\s*- name:\s*(\S+)", line)
        if m:
            group = m.group(1)
        m = re.match(r"(\s*)- alert:\s*(\S+)", line)
        if m:
            starts.append((n, group, m.group(2)))
    for k, (n, group, alert) in enumerate(starts):
        block = lines[n + 1:starts[k + 1][0] if k + 1 < len(starts) else len(lines)]
        expr, labels, annotations, section = "", {}, {}, None
        b = 0
        while b < len(block):
            line = block[b]
            b += 1
            m = re.match(r"(\s*)(\w+):\s*(.*)$", line)
            if not m or line.strip().startswith("#"):
                continue
            indent, key, value = len(m.group(1)), m.group(2), m.group(3).strip()
            if value in ("|", ">", "|-", ">-"):  # a block scalar: the lines indented deeper
                body = []
                while b < len(block) and (not block[b].strip()
                                          or len(block[b]) - len(block[b].lstrip()) > indent):
                    body.append(block[b].strip())
                    b += 1
                value = ("\n" if value.startswith("|") else " ").join(body).strip()
            else:
                value = value.strip("'\"")
            if key == "expr":
                expr = value
            elif key in ("labels", "annotations") and not value:
                section = (key, indent)
            elif section and indent > section[1]:
                (labels if section[0] == "labels" else annotations)[key] = value
            else:
                section = None
        out.append((group, alert, expr, labels, annotations))
    return out


def check_alerts(path, readme, contract, problems):
    where = show(path)
    try:
        alerts = load_alerts(path)
    except Exception as e:  # noqa: BLE001 - any parse failure is a finding
        problems.append(f"{where}: {e}")
        return
    if not alerts:
        problems.append(f"{where}: no alerts")
    try:
        with open(readme, encoding="utf-8") as f:
            readme_text = f.read()
    except OSError as e:
        problems.append(str(e))
        readme_text = ""
    for group, alert, expr, labels, annotations in alerts:
        aw = f"{where}: {alert}"
        if group != "vane":
            problems.append(f"{aw}: in group {group!r}, not 'vane'")
        if labels.get("severity") not in SEVERITIES:
            problems.append(f"{aw}: severity {labels.get('severity')!r}, want one of {sorted(SEVERITIES)}")
        for a in ("summary", "description"):
            if not annotations.get(a):
                problems.append(f"{aw}: no {a} annotation")
        check_expr(aw, expr, contract, problems)
        if readme_text and alert not in readme_text:
            problems.append(f"{aw}: not described in {show(readme)}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--doc", default=os.path.join(ROOT, "docs", "OBSERVABILITY.md"))
    ap.add_argument("--dashboard", default=os.path.join(ROOT, "monitoring", "grafana", "vane-dashboard.json"))
    ap.add_argument("--rules", default=os.path.join(ROOT, "monitoring", "prometheus", "vane-alerts.yml"))
    ap.add_argument("--readme", default=os.path.join(ROOT, "monitoring", "README.md"))
    ap.add_argument("--promtool", help="also have promtool parse every dashboard query")
    args = ap.parse_args()

    contract = load_contract(args.doc)
    problems = []
    exprs = check_dashboard(args.dashboard, contract, problems)
    check_alerts(args.rules, args.readme, contract, problems)
    if args.promtool and exprs:
        promtool_parse(args.promtool, exprs, problems)
    for p in problems:
        print(p)
    if problems:
        print(f"FAILED: {len(problems)} problem(s)")
        return 1
    print(f"OK: {len(exprs)} dashboard queries and the alerts use only metrics of "
          f"{show(args.doc)} ({len(contract)} series names)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
