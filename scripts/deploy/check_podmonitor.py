#!/usr/bin/env python3
"""Checks of the optional PodMonitor (k8s/components/podmonitor), which kubernetes-validate cannot
validate: monitoring.coreos.com/v1 is a custom resource whose schema is not in its bundle.

Usage: check_podmonitor.py RENDERED.yaml   (an overlay built with the component)

  * exactly one PodMonitor, apiVersion monitoring.coreos.com/v1, only fields the CRD defines
    (among those this project uses: a misspelt key is refused here as the API server would);
  * its selector (matchLabels and matchExpressions) selects the pods of every stage workload of
    the rendered overlay, and no other pod;
  * its endpoint scrapes the container port named there, which is the stages' metrics port
    9100, on /metrics, with honorLabels (the stages' own stage labels), and relabels `stage` from
    app.kubernetes.io/component, plus `pod` and `instance`, like prometheus.yml;
  * the job label is the one the rules and dashboards expect (tweetoscope).
Exits 1 with one line per problem.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

STAGES = {"generator", "collector", "estimator", "predictor", "learner", "monitor", "dashboard", "logger"}
METRICS_PORT = 9100
WORKLOADS = {"Deployment", "StatefulSet", "Job", "DaemonSet"}
# The fields of monitoring.coreos.com/v1 PodMonitor that may appear (a subset of the CRD's).
SPEC_KEYS = {"jobLabel", "podTargetLabels", "podMetricsEndpoints", "selector", "namespaceSelector",
             "sampleLimit", "targetLimit", "labelLimit", "attachMetadata"}
ENDPOINT_KEYS = {"port", "portNumber", "targetPort", "path", "scheme", "params", "interval",
                 "scrapeTimeout", "honorLabels", "honorTimestamps", "relabelings",
                 "metricRelabelings", "enableHttp2", "filterRunning", "followRedirects"}
RELABEL_KEYS = {"sourceLabels", "separator", "targetLabel", "regex", "modulus", "replacement", "action"}


def selects(selector: dict, labels: dict) -> bool:
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return bool(selector)


def main() -> int:
    docs = [d for d in yaml.safe_load_all(Path(sys.argv[1]).read_text()) if d]
    problems: list[str] = []
    monitors = [d for d in docs if d.get("kind") == "PodMonitor"]
    if len(monitors) != 1:
        print(f"FAIL expected one PodMonitor, found {len(monitors)}")
        return 1
    pm = monitors[0]
    name = f"PodMonitor/{pm['metadata'].get('name')}"
    if pm.get("apiVersion") != "monitoring.coreos.com/v1":
        problems.append(f"{name}: apiVersion {pm.get('apiVersion')}, expected monitoring.coreos.com/v1")
    spec = pm.get("spec") or {}
    for key in sorted(set(spec) - SPEC_KEYS):
        problems.append(f"{name}: unknown field spec.{key}")
    endpoints = spec.get("podMetricsEndpoints") or []
    if len(endpoints) != 1:
        problems.append(f"{name}: expected one podMetricsEndpoints entry, found {len(endpoints)}")
    selector = spec.get("selector") or {}
    namespace = pm["metadata"].get("namespace")
    for w in docs:
        if w.get("kind") not in WORKLOADS:
            continue
        template = w["spec"]["template"]
        labels = (template.get("metadata") or {}).get("labels") or {}
        is_stage = labels.get("app.kubernetes.io/name") == "tweetoscope" and labels.get("app.kubernetes.io/component") in STAGES
        where = f"{w['kind']}/{w['metadata']['name']}"
        if selects(selector, labels) != is_stage:
            problems.append(f"{name}: {'does not select' if is_stage else 'selects'} the pods of {where}")
            continue
        if not is_stage:
            continue
        if w["metadata"].get("namespace") != namespace:
            problems.append(f"{name}: in namespace {namespace}, {where} in {w['metadata'].get('namespace')}: it would see no pod")
        ports = {p.get("name"): p["containerPort"] for c in template["spec"]["containers"] for p in c.get("ports") or []}
        for e in endpoints:
            if ports.get(e.get("port")) != METRICS_PORT:
                problems.append(f"{name}: endpoint port {e.get('port')!r} is not the metrics port {METRICS_PORT} of {where}")
    job_label = spec.get("jobLabel")
    job = next((
        ((w["spec"]["template"].get("metadata") or {}).get("labels") or {}).get(job_label)
        for w in docs if w.get("kind") in WORKLOADS and selects(selector, ((w["spec"]["template"].get("metadata") or {}).get("labels") or {}))
    ), None)
    if job != "tweetoscope":
        problems.append(f"{name}: jobLabel {job_label!r} gives job={job!r}; the rules and dashboards expect job=\"tweetoscope\"")
    for e in endpoints:
        for key in sorted(set(e) - ENDPOINT_KEYS):
            problems.append(f"{name}: unknown field podMetricsEndpoints.{key}")
        if e.get("path", "/metrics") != "/metrics":
            problems.append(f"{name}: path {e.get('path')}, the stages serve /metrics")
        if e.get("honorLabels") is not True:
            problems.append(f"{name}: honorLabels must be true (the stages label their series with stage)")
        targets = {}
        for r in e.get("relabelings") or []:
            for key in sorted(set(r) - RELABEL_KEYS):
                problems.append(f"{name}: unknown relabeling field {key} (the CRD spells them sourceLabels, targetLabel, ...)")
            if r.get("targetLabel"):
                targets[r["targetLabel"]] = r.get("sourceLabels") or []
        wanted = {
            "stage": ["__meta_kubernetes_pod_label_app_kubernetes_io_component"],
            "pod": ["__meta_kubernetes_pod_name"],
            "instance": ["__meta_kubernetes_pod_name"],
        }
        for label, sources in wanted.items():
            if targets.get(label) != sources:
                problems.append(f"{name}: no relabeling of {label} from {sources[0]}")
    for p in problems:
        print(f"FAIL {p}")
    if problems:
        return 1
    print(f"{name}: selects every stage pod and nothing else, on port {METRICS_PORT}, labelled like prometheus.yml")
    return 0


if __name__ == "__main__":
    sys.exit(main())
