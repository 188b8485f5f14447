#!/usr/bin/env python3
"""Syntax checks of the observability files that no other tool of the tier reads.

- every YAML file under observability/ and grafana/provisioning/ parses (PyYAML, Debian package
  python3-yaml) and has no duplicate mapping key;
- observability/loki/loki.yml has the sections a single-binary Loki 3.x with filesystem storage
  and retention needs (Loki itself is not installable here);
- every grafana/dashboards/*.json parses (standard library), and travels to another Grafana:
  * no hard-coded data source: every panel, target and query variable names its data source
    through a data source variable of the dashboard (`"uid": "${datasource}"`, the variable of
    type `datasource` whose query is the plugin type);
  * the Prometheus queries select on the dashboard's `job` and `instance` variables (every metric
    selector has `job=~"$job"`, and `instance=~"$instance"` unless the series is pushed through
    the Pushgateway, whose instance is the Pushgateway's), and both variables exist;
  * counters (`*_total`, and the `_bucket`/`_count`/`_sum` of a histogram) are shown through
    rate(), irate() or increase(), never as raw values that fall to zero when a process restarts;
  * units: no request/read/write rate unit (`reqps`, `rps`, `wps`, ...) for what are messages,
    tweets or fits; quantiles of a `*_seconds` histogram are in seconds (`s`).

The dashboards' content (panel ids, data sources, metric names, queries) is also checked by
crates/tweetoscope/tests/observability/main.rs, which runs every query against a real Prometheus.
Usage: check_files.py [REPO_ROOT] [DASHBOARD.json ...] (default: REPO_ROOT/grafana/dashboards/*.json)
"""
import json
import pathlib
import re
import sys

import yaml


class UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that rejects a mapping with the same key twice."""


def _construct_mapping(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep)


UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


COUNTER_FUNCTIONS = {"rate", "irate", "increase", "resets"}
KEYWORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
    "offset", "bool", "inf", "nan", "atan2", "sum", "min", "max", "avg", "group", "stddev",
    "stdvar", "count", "count_values", "bottomk", "topk", "quantile", "limitk", "limit_ratio",
}
LABEL_LISTS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
WRONG_UNITS = {"reqps", "rps", "wps", "reqpm", "rpm", "wpm"}
# Series the monitor pushes to the Pushgateway: their instance label is the Pushgateway's.
PUSHED = re.compile(r"^(tweetoscope_are_\w+|tweetoscope_interval_coverage|push_time_seconds)$")


def selectors(expr: str):
    """Yields (metric name, label matchers text, enclosing function names) for every metric
    selector of a PromQL expression (strings, ranges and label lists skipped)."""
    stack: list[str] = []
    i, n = 0, len(expr)
    last_word = ""
    while i < n:
        c = expr[i]
        if c in "\"'`":
            j = i + 1
            while j < n and expr[j] != c:
                j += 2 if expr[j] == "\\" and c != "`" else 1
            i = j + 1
        elif c == "[":
            i = expr.find("]", i) + 1 or n
        elif c == "{":
            i = expr.find("}", i) + 1 or n
        elif c == "(":
            stack.append(last_word)
            last_word = ""
            i += 1
        elif c == ")":
            if stack:
                stack.pop()
            i += 1
        elif c.isdigit() or (c == "." and i + 1 < n and expr[i + 1].isdigit()):
            while i < n and (expr[i].isalnum() or expr[i] in "._" or (expr[i] in "+-" and expr[i - 1] in "eE")):
                i += 1
        elif c.isalpha() or c in "_:":
            j = i
            while j < n and (expr[j].isalnum() or expr[j] in "_:"):
                j += 1
            word = expr[i:j]
            k = j
            while k < n and expr[k].isspace():
                k += 1
            lower = word.lower()
            if i > 0 and expr[i - 1] == "$":
                pass  # a Grafana variable ($__rate_interval, ...)
            elif lower in LABEL_LISTS and k < n and expr[k] == "(":
                depth = 0
                while k < n:
                    depth += expr[k] == "("
                    depth -= expr[k] == ")"
                    k += 1
                    if depth == 0:
                        break
                j = k
            elif k < n and expr[k] == "(":
                last_word = lower
            elif lower not in KEYWORDS:
                matchers = ""
                if j < n and expr[j] == "{":
                    end = expr.find("}", j)
                    matchers = expr[j + 1:end]
                yield word, matchers, list(stack)
            i = j
        else:
            i += 1


def is_counter(name: str, histograms: set[str]) -> bool:
    if name.endswith("_total") or name.endswith("_bucket"):
        return True
    base = re.sub(r"_(count|sum)$", "", name)
    return base != name and base in histograms


def walk_panels(panels):
    for p in panels or []:
        yield p
        yield from walk_panels(p.get("panels"))


def check_dashboard(name: str, dashboard: dict) -> list[str]:
    errors = []
    variables = {v.get("name"): v for v in (dashboard.get("templating") or {}).get("list") or []}
    ds_variables = {n: v.get("query") for n, v in variables.items() if v.get("type") == "datasource"}

    def datasource(where: str, ref) -> str | None:
        """The plugin type of a reference; an error unless it names a data source variable."""
        if ref is None:
            return None
        if not isinstance(ref, dict):
            errors.append(f"{name}: {where}: data source {ref!r} is not a {{type, uid}} reference to a variable")
            return None
        uid = str(ref.get("uid", ""))
        m = re.fullmatch(r"\$\{?(\w+)\}?", uid)
        if not m:
            errors.append(
                f"{name}: {where}: hard-coded data source uid {uid!r}: use a data source variable "
                "(\"uid\": \"${datasource}\") so that the dashboard works in any Grafana"
            )
        elif ds_variables.get(m.group(1)) != ref.get("type"):
            errors.append(f"{name}: {where}: {uid} is no data source variable of type {ref.get('type')}")
        return ref.get("type")

    prometheus_queries = []
    for v in variables.values():
        if v.get("type") == "query":
            kind = datasource(f"variable ${v.get('name')}", v.get("datasource"))
            if kind == "prometheus":
                query = v.get("query")
                text = query.get("query", "") if isinstance(query, dict) else str(query or "")
                m = re.fullmatch(r"\s*label_values\((.*),\s*\w+\)\s*", text)
                if m and "{" in m.group(1) and v.get("name") not in ("job", "instance"):
                    prometheus_queries.append((f"variable ${v.get('name')}", m.group(1), False))
    panels = list(walk_panels(dashboard.get("panels")))
    for p in panels:
        if p.get("type") == "row":
            continue
        where = f"panel {p.get('id')} {p.get('title')!r}"
        panel_kind = datasource(where, p.get("datasource"))
        exprs = []
        for t in p.get("targets") or []:
            kind = datasource(f"{where} [{t.get('refId')}]", t.get("datasource")) or panel_kind
            if kind == "prometheus" and t.get("expr"):
                exprs.append(t["expr"])
                prometheus_queries.append((f"{where} [{t.get('refId')}]", t["expr"], True))
        unit = ((p.get("fieldConfig") or {}).get("defaults") or {}).get("unit")
        units = [unit] + [
            prop.get("value")
            for o in (p.get("fieldConfig") or {}).get("overrides") or []
            for prop in o.get("properties") or []
            if prop.get("id") == "unit"
        ]
        for u in units:
            if u in WRONG_UNITS:
                errors.append(f"{name}: {where}: unit {u!r} is a request/read/write rate: these are messages (use cps, ops or short)")
        if any(re.search(r"histogram_quantile\([^,]+,.*_seconds_bucket", e, re.S) for e in exprs) and unit != "s":
            errors.append(f"{name}: {where}: quantiles of a *_seconds histogram need the unit 's', not {unit!r}")
    histograms = {
        metric[: -len("_bucket")]
        for _, e, _ in prometheus_queries
        for metric, _, _ in selectors(e)
        if metric.endswith("_bucket")
    }
    if prometheus_queries:
        for needed in ("job", "instance"):
            if variables.get(needed, {}).get("type") != "query":
                errors.append(f"{name}: no `{needed}` query variable (the Prometheus queries select on it)")
    for where, e, shown in prometheus_queries:
        for metric, matchers, functions in selectors(e):
            # A variable's label_values() only lists label values: its counters are not shown.
            if shown and is_counter(metric, histograms) and not COUNTER_FUNCTIONS & set(functions):
                errors.append(
                    f"{name}: {where}: raw counter {metric} (a restart resets it): show it with rate() or increase()"
                )
            if not re.search(r'\bjob\s*=~?\s*"\$\{?job\}?"', matchers):
                errors.append(f"{name}: {where}: {metric} does not select job=~\"$job\"")
            if not PUSHED.match(metric) and not re.search(r'\binstance\s*=~?\s*"\$\{?instance\}?"', matchers):
                errors.append(f"{name}: {where}: {metric} does not select instance=~\"$instance\"")
    return errors


def main() -> int:
    root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ".").resolve()
    errors = []
    files = sorted(
        p for d in ("observability", "grafana/provisioning")
        for p in (root / d).rglob("*") if p.suffix in (".yml", ".yaml"))
    docs = {}
    for path in files:
        try:
            docs[path] = yaml.load(path.read_text(), Loader=UniqueKeyLoader)
        except yaml.YAMLError as e:
            errors.append(f"{path.relative_to(root)}: {e}")
    loki = docs.get(root / "observability/loki/loki.yml")
    if not isinstance(loki, dict):
        errors.append("observability/loki/loki.yml: missing or not a mapping")
    else:
        def get(*keys):
            node = loki
            for k in keys:
                if not isinstance(node, dict) or k not in node:
                    return None
                node = node[k]
            return node
        checks = {
            "auth_enabled is false (single tenant)": get("auth_enabled") is False,
            "server.http_listen_port is 3100": get("server", "http_listen_port") == 3100,
            "filesystem chunk storage": get("common", "storage", "filesystem", "chunks_directory"),
            "a tsdb v13 schema on the filesystem": any(
                c.get("store") == "tsdb" and c.get("schema") == "v13"
                and c.get("object_store") == "filesystem"
                for c in get("schema_config", "configs") or []),
            "limits_config.retention_period": get("limits_config", "retention_period"),
            "compactor.retention_enabled": get("compactor", "retention_enabled") is True,
            "compactor.delete_request_store (required with retention)":
                get("compactor", "delete_request_store"),
        }
        errors += [f"observability/loki/loki.yml: {name}" for name, ok in checks.items() if not ok]
    dashboards = [pathlib.Path(a).resolve() for a in sys.argv[2:]] or sorted(
        (root / "grafana/dashboards").glob("*.json"))
    if not dashboards:
        errors.append("grafana/dashboards: no dashboard")
    for path in dashboards:
        try:
            dashboard = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            errors.append(f"{path.name}: {e}")
            continue
        errors += check_dashboard(path.name, dashboard)
    for e in errors:
        print(f"error: {e}", file=sys.stderr)
    if errors:
        return 1
    print(f"{len(files)} YAML files and {len(dashboards)} dashboards parse; loki.yml has its sections;"
          " the dashboards use data source, job and instance variables, rates of counters, and fit units")
    return 0


if __name__ == "__main__":
    sys.exit(main())
