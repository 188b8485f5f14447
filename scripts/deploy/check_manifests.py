#!/usr/bin/env python3
"""Checks of the rendered Kubernetes manifests that a schema cannot make.

Usage: check_manifests.py --repo ROOT RENDERED.yaml [RENDERED.yaml ...]

Each file is the `kustomize build` of one overlay. The checks:
  * every stage runs as a workload of the tweetoscope image with the hardened security context,
    the /readyz and /healthz probes on port 9100, resources, and a Service tweetoscope-<stage>:9100
    that selects its pods;
  * every container of every pod: no privilege escalation, all capabilities dropped, non-root;
  * every TWEETOSCOPE_* variable given to the binary is one it reads (crates/tweetoscope/src);
  * $(VAR) references in env values name a variable defined earlier in the same container;
  * ConfigMaps, Secrets and PVCs referenced by pods exist (unless optional);
  * every Service selects some pod, and every scrape target, Alertmanager, Grafana data source
    and stage URL that names a Service names one that exists with that port;
  * Prometheus finds the stage pods: its `tweetoscope` job discovers pods (kubernetes_sd_configs,
    role pod), and its relabelling, applied to every pod of the rendered workloads, keeps exactly
    one target per stage pod, on port 9100, labelled stage=<app.kubernetes.io/component>, pod and
    instance, and no pod of anything else;
  * the Prometheus Deployment runs as a ServiceAccount that exists, mounts its token, and is bound
    (RoleBinding or ClusterRoleBinding) to a role granting get, list and watch on pods;
  * every long-running stage (Deployment) has a PodDisruptionBudget selecting its pods, and no
    budget can block a node drain (minAvailable at or above the replicas, maxUnavailable 0);
  * no object of an operator's custom resource (the PodMonitor is an optional component);
  * the ConfigMaps generated from observability/ and grafana/ hold exactly the files on disk;
  * the topic Job creates every topic the binary uses by default, with at least as many
    partitions as estimator replicas, and a replication factor the Kafka nodes can hold;
  * images are pinned (a tag that is not `latest`); the project's own image carries the crate
    version of the workspace Cargo.toml as its tag (set by kustomize `images:`);
  * k8s/secrets.example.yaml holds every secret file that alertmanager.yml reads.
Exits 1 with one line per problem.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from urllib.parse import urlparse

import yaml

STAGES = [
    "generator",
    "collector",
    "estimator",
    "predictor",
    "learner",
    "monitor",
    "dashboard",
    "logger",
]
STAGE_UID = 10001
METRICS_PORT = 9100
OWN_IMAGE = "registry.gitlab.com/tweetoscope/tweetoscope"
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "Job", "DaemonSet", "ReplicaSet", "CronJob"}

# ConfigMap name -> (directory, glob) of the files it must hold, relative to the repository.
GENERATED_CONFIGMAPS = {
    "prometheus-config": [("observability/prometheus", "prometheus.yml")],
    "prometheus-rules": [("observability/prometheus/rules", "*.yml")],
    "alertmanager-config": [("observability/alertmanager", "alertmanager.yml")],
    "loki-config": [("observability/loki", "loki.yml")],
    "grafana-datasources": [("grafana/provisioning/datasources", "*.y*ml")],
    "grafana-dashboard-providers": [("grafana/provisioning/dashboards", "*.y*ml")],
    "grafana-dashboards": [("grafana/dashboards", "*.json")],
}


class Checker:
    def __init__(self, repo: Path, label: str, docs: list[dict], version: str | None = None):
        self.repo = repo
        self.version = version
        self.label = label
        self.docs = docs
        self.problems: list[str] = []

    def fail(self, what: str) -> None:
        self.problems.append(f"{self.label}: {what}")

    # ---- lookups -----------------------------------------------------------------------------

    def of_kind(self, kind: str) -> list[dict]:
        return [d for d in self.docs if d.get("kind") == kind]

    def named(self, kind: str, name: str) -> dict | None:
        for d in self.of_kind(kind):
            if d["metadata"]["name"] == name:
                return d
        return None

    def configmap(self, base: str) -> dict | None:
        """The generated ConfigMap whose name is `base` plus kustomize's hash suffix."""
        pattern = re.compile(re.escape(base) + r"(-[a-z0-9]{10})?$")
        found = [d for d in self.of_kind("ConfigMap") if pattern.match(d["metadata"]["name"])]
        return found[0] if len(found) == 1 else None

    def workloads(self) -> list[dict]:
        return [d for d in self.docs if d.get("kind") in WORKLOAD_KINDS]

    @staticmethod
    def pod_spec(workload: dict) -> dict:
        spec = workload["spec"]
        if workload["kind"] == "CronJob":
            spec = spec["jobTemplate"]["spec"]
        return spec["template"]["spec"]

    @staticmethod
    def pod_labels(workload: dict) -> dict:
        spec = workload["spec"]
        if workload["kind"] == "CronJob":
            spec = spec["jobTemplate"]["spec"]
        return spec["template"].get("metadata", {}).get("labels", {}) or {}

    def service_ports(self) -> dict[str, set[int]]:
        return {
            s["metadata"]["name"]: {p["port"] for p in s["spec"].get("ports", [])}
            for s in self.of_kind("Service")
        }

    # ---- checks ------------------------------------------------------------------------------

    def run(self, binary_env: set[str], default_topics: list[str], compacted: list[str]) -> None:
        self.check_all_containers()
        self.check_stages(binary_env)
        self.check_references()
        self.check_services_select_pods()
        self.check_urls()
        self.check_generated_configmaps()
        self.check_topics(default_topics, compacted)
        self.check_images()
        self.check_pod_discovery()
        self.check_prometheus_rbac()
        self.check_disruption_budgets()
        self.check_no_custom_resources()

    def check_all_containers(self) -> None:
        for w in self.workloads():
            name = f"{w['kind']}/{w['metadata']['name']}"
            spec = self.pod_spec(w)
            pod_sc = spec.get("securityContext", {}) or {}
            for c in spec.get("initContainers", []) + spec.get("containers", []):
                sc = c.get("securityContext", {}) or {}
                where = f"{name} container {c['name']}"
                if sc.get("allowPrivilegeEscalation") is not False:
                    self.fail(f"{where}: allowPrivilegeEscalation must be false")
                if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
                    self.fail(f"{where}: must drop ALL capabilities")
                if not (sc.get("runAsNonRoot") or pod_sc.get("runAsNonRoot")):
                    self.fail(f"{where}: must run as non-root (runAsNonRoot)")
                uid = sc.get("runAsUser", pod_sc.get("runAsUser"))
                if uid is None or uid == 0:
                    self.fail(f"{where}: needs a numeric non-zero runAsUser")
                if not c.get("resources", {}).get("limits") or not c.get("resources", {}).get(
                    "requests"
                ):
                    self.fail(f"{where}: needs resource requests and limits")
                self.check_env_order(where, c)

    def check_env_order(self, where: str, container: dict) -> None:
        defined: set[str] = set()
        for e in container.get("env", []) or []:
            for ref in re.findall(r"(?<!\$)\$\(([A-Za-z_][A-Za-z0-9_]*)\)", str(e.get("value", ""))):
                if ref not in defined:
                    self.fail(
                        f"{where}: env {e['name']} uses $({ref}), which is not defined before it "
                        "(Kubernetes would leave it unexpanded)"
                    )
            defined.add(e["name"])

    def check_stages(self, binary_env: set[str]) -> None:
        services = {s["metadata"]["name"]: s for s in self.of_kind("Service")}
        for stage in STAGES:
            workload = None
            for w in self.workloads():
                for c in self.pod_spec(w).get("containers", []):
                    if c.get("image", "").startswith(OWN_IMAGE) and (c.get("args") or [None])[0] == stage:
                        workload = (w, c)
            if workload is None:
                self.fail(f"no workload runs the {stage} stage")
                continue
            w, c = workload
            where = f"{w['kind']}/{w['metadata']['name']}"
            spec = self.pod_spec(w)
            pod_sc = spec.get("securityContext", {}) or {}
            sc = c.get("securityContext", {}) or {}
            if sc.get("runAsUser", pod_sc.get("runAsUser")) != STAGE_UID:
                self.fail(f"{where}: the stage must run as uid {STAGE_UID}")
            if sc.get("readOnlyRootFilesystem") is not True:
                self.fail(f"{where}: readOnlyRootFilesystem must be true")
            for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
                get = (c.get(probe) or {}).get("httpGet") or {}
                port = get.get("port")
                if isinstance(port, str):
                    port = next(
                        (p["containerPort"] for p in c.get("ports", []) if p.get("name") == port),
                        None,
                    )
                if get.get("path") != path or port != METRICS_PORT:
                    self.fail(f"{where}: {probe} must GET {path} on port {METRICS_PORT}")
            env = self.container_env(c)
            for name in env:
                if name.startswith("TWEETOSCOPE_") and name not in binary_env:
                    self.fail(f"{where}: {name} is not a variable the binary reads")
            expected = {
                "TWEETOSCOPE_BROKERS": None,
                "TWEETOSCOPE_METRICS_ADDR": f"0.0.0.0:{METRICS_PORT}",
                "TWEETOSCOPE_LOG_FORMAT": "json",
                "TWEETOSCOPE_LOKI_URL": None,
                "TWEETOSCOPE_NO_CREATE_TOPICS": "true",
            }
            if stage == "monitor":
                expected["TWEETOSCOPE_PUSHGATEWAY_URL"] = None
            if stage == "dashboard":
                expected["TWEETOSCOPE_ALERTMANAGER_URL"] = None
            for name, value in expected.items():
                if name not in env:
                    self.fail(f"{where}: {name} is not set")
                elif value is not None and env[name] != value:
                    self.fail(f"{where}: {name} is {env[name]!r}, expected {value!r}")
            service = services.get(f"tweetoscope-{stage}")
            if service is None:
                self.fail(f"no Service tweetoscope-{stage} for the {stage} stage")
            else:
                ports = service["spec"].get("ports", [])
                if not any(p["port"] == METRICS_PORT for p in ports):
                    self.fail(f"Service tweetoscope-{stage} must expose port {METRICS_PORT}")
                selector = service["spec"].get("selector") or {}
                labels = self.pod_labels(w)
                if not selector or any(labels.get(k) != v for k, v in selector.items()):
                    self.fail(f"Service tweetoscope-{stage} does not select the pods of {where}")
        estimator = self.named("Deployment", "tweetoscope-estimator")
        if estimator is not None and estimator["spec"].get("replicas", 1) < 2:
            self.fail("the estimator should run several replicas")

    def container_env(self, c: dict) -> dict[str, str | None]:
        """Names and literal values of a container's variables (envFrom ConfigMaps included)."""
        env: dict[str, str | None] = {}
        for ref in c.get("envFrom", []) or []:
            cm = ref.get("configMapRef")
            if cm:
                doc = self.named("ConfigMap", cm["name"])
                if doc:
                    env.update(doc.get("data", {}) or {})
        for e in c.get("env", []) or []:
            env[e["name"]] = e.get("value")
        return env

    def check_references(self) -> None:
        for w in self.workloads():
            name = f"{w['kind']}/{w['metadata']['name']}"
            spec = self.pod_spec(w)
            claim_templates = {
                t["metadata"]["name"] for t in w["spec"].get("volumeClaimTemplates", []) or []
            }
            volumes = {v["name"]: v for v in spec.get("volumes", []) or []}
            for v in volumes.values():
                if "configMap" in v and not v["configMap"].get("optional"):
                    if not self.named("ConfigMap", v["configMap"]["name"]):
                        self.fail(f"{name}: volume {v['name']} names a missing ConfigMap")
                if "secret" in v and not v["secret"].get("optional"):
                    if not self.named("Secret", v["secret"]["secretName"]):
                        self.fail(f"{name}: volume {v['name']} names a missing Secret")
            for c in spec.get("initContainers", []) + spec.get("containers", []):
                for m in c.get("volumeMounts", []) or []:
                    if m["name"] not in volumes and m["name"] not in claim_templates:
                        self.fail(f"{name} container {c['name']}: mounts unknown volume {m['name']}")
                for ref in c.get("envFrom", []) or []:
                    cm = ref.get("configMapRef")
                    if cm and not cm.get("optional") and not self.named("ConfigMap", cm["name"]):
                        self.fail(f"{name} container {c['name']}: envFrom names a missing ConfigMap")
                for e in c.get("env", []) or []:
                    cm = (e.get("valueFrom") or {}).get("configMapKeyRef")
                    if cm and not cm.get("optional"):
                        doc = self.named("ConfigMap", cm["name"])
                        if not doc or cm["key"] not in (doc.get("data") or {}):
                            self.fail(f"{name}: env {e['name']} names a missing ConfigMap key")

    def check_services_select_pods(self) -> None:
        for s in self.of_kind("Service"):
            selector = s["spec"].get("selector") or {}
            if not selector:
                continue
            if not any(
                all(self.pod_labels(w).get(k) == v for k, v in selector.items())
                for w in self.workloads()
            ):
                self.fail(f"Service {s['metadata']['name']} selects no pod")
            for p in s["spec"].get("ports", []):
                target = p.get("targetPort", p["port"])
                if isinstance(target, str) and not any(
                    any(
                        cp.get("name") == target
                        for c in self.pod_spec(w).get("containers", [])
                        for cp in c.get("ports", []) or []
                    )
                    for w in self.workloads()
                    if all(self.pod_labels(w).get(k) == v for k, v in selector.items())
                ):
                    self.fail(
                        f"Service {s['metadata']['name']}: targetPort {target!r} is no port of its pods"
                    )

    def check_urls(self) -> None:
        """Addresses written as service:port in configs and env must name a Service and port."""
        ports = self.service_ports()
        endpoints: list[tuple[str, str]] = []
        prometheus = self.configmap("prometheus-config")
        if prometheus:
            config = yaml.safe_load(prometheus["data"]["prometheus.yml"])
            for job in config.get("scrape_configs", []):
                for sc in job.get("static_configs", []):
                    for t in sc.get("targets", []):
                        endpoints.append((f"prometheus scrape target {t}", t))
            for am in (config.get("alerting") or {}).get("alertmanagers", []):
                for sc in am.get("static_configs", []):
                    for t in sc.get("targets", []):
                        endpoints.append((f"prometheus alertmanager {t}", t))
        datasources = self.configmap("grafana-datasources")
        if datasources:
            for key, text in (datasources.get("data") or {}).items():
                for ds in (yaml.safe_load(text) or {}).get("datasources", []):
                    if ds.get("url"):
                        endpoints.append((f"Grafana data source {ds['name']}", ds["url"]))
        for w in self.workloads():
            for c in self.pod_spec(w).get("containers", []):
                for name, value in self.container_env(c).items():
                    if name.endswith(("_URL", "BROKERS", "BOOTSTRAP")) and value:
                        for v in value.split(","):
                            endpoints.append((f"{w['metadata']['name']} {name}", v))
        for what, address in endpoints:
            if "://" in address:
                parsed = urlparse(address)
                host, port = parsed.hostname, parsed.port or (443 if parsed.scheme == "https" else 80)
            else:
                host, _, port_text = address.partition(":")
                port = int(port_text) if port_text.isdigit() else None
            if host in ("localhost", "127.0.0.1"):
                continue
            if host not in ports:
                self.fail(f"{what}: no Service named {host}")
            elif port not in ports[host]:
                self.fail(f"{what}: Service {host} has no port {port}")

    def check_generated_configmaps(self) -> None:
        for name, sources in GENERATED_CONFIGMAPS.items():
            cm = self.configmap(name)
            if cm is None:
                self.fail(f"no ConfigMap {name} (generated from the repository's files)")
                continue
            data = cm.get("data", {}) or {}
            expected: dict[str, str] = {}
            for directory, pattern in sources:
                for path in sorted((self.repo / directory).glob(pattern)):
                    expected[path.name] = path.read_text()
            for key in sorted(set(expected) - set(data)):
                self.fail(f"ConfigMap {name} lacks {key}: list it in the configMapGenerator")
            for key in sorted(set(data) - set(expected)):
                self.fail(f"ConfigMap {name} holds {key}, which is not a file of the repository")
            for key in sorted(set(data) & set(expected)):
                if data[key] != expected[key]:
                    self.fail(f"ConfigMap {name}: {key} differs from the repository's file")

    def check_topics(self, default_topics: list[str], compacted: list[str]) -> None:
        cm = self.configmap("kafka-topics")
        if cm is None:
            self.fail("no ConfigMap kafka-topics")
            return
        data = cm["data"]
        topics = data.get("TOPICS", "").split()
        missing = [t for t in default_topics if t not in topics]
        if missing:
            self.fail(f"the topic Job does not create {missing}")
        for topic in compacted:
            if topic not in data.get("COMPACTED_TOPICS", "").split():
                self.fail(f"the topic Job must create {topic} compacted (cleanup.policy=compact)")
        for topic in data.get("COMPACTED_TOPICS", "").split():
            if topic not in compacted:
                self.fail(f"the topic Job compacts {topic}, which the binary does not compact")
        partitions = int(data.get("PARTITIONS", "0"))
        estimator = self.named("Deployment", "tweetoscope-estimator")
        if estimator and estimator["spec"].get("replicas", 1) > partitions:
            self.fail(
                f"{estimator['spec']['replicas']} estimator replicas but only {partitions} "
                "partitions: some replicas would idle"
            )
        kafka = self.named("StatefulSet", "kafka")
        if kafka is None:
            self.fail("no Kafka StatefulSet")
            return
        nodes = kafka["spec"].get("replicas", 1)
        if int(data.get("REPLICATION_FACTOR", "1")) > nodes:
            self.fail(f"replication factor {data['REPLICATION_FACTOR']} > {nodes} Kafka nodes")
        if int(data.get("MIN_INSYNC_REPLICAS", "1")) > int(data.get("REPLICATION_FACTOR", "1")):
            self.fail("min.insync.replicas above the replication factor")
        env = self.container_env(self.pod_spec(kafka)["containers"][0])
        voters = env.get("KAFKA_CONTROLLER_QUORUM_VOTERS") or ""
        ids = sorted(int(v.split("@")[0]) for v in voters.split(",") if "@" in v)
        if ids != list(range(nodes)):
            self.fail(f"controller quorum voters {ids} do not match the {nodes} Kafka pods")
        for key in (
            "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
            "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
            "KAFKA_DEFAULT_REPLICATION_FACTOR",
        ):
            if int(env.get(key) or "1") > nodes:
                self.fail(f"Kafka {key}={env.get(key)} > {nodes} nodes")

    def check_images(self) -> None:
        for w in self.workloads():
            spec = self.pod_spec(w)
            for c in spec.get("initContainers", []) + spec.get("containers", []):
                image = c.get("image", "")
                tag = image.rsplit(":", 1)[1] if ":" in image.rsplit("/", 1)[-1] else ""
                if not tag or tag == "latest":
                    self.fail(f"{w['metadata']['name']}: image {image} is not pinned to a version")
                elif image.startswith(OWN_IMAGE + ":") and self.version and tag != self.version:
                    self.fail(
                        f"{w['metadata']['name']}: image {image}: the tag should be the crate "
                        f"version {self.version} (kustomize images: in k8s/base/kustomization.yaml)"
                    )

    # ---- Prometheus pod discovery ------------------------------------------------------------

    def prometheus_config(self) -> dict | None:
        cm = self.configmap("prometheus-config")
        if cm is None or "prometheus.yml" not in (cm.get("data") or {}):
            return None
        return yaml.safe_load(cm["data"]["prometheus.yml"])

    def pod_targets(self, w: dict) -> list[dict[str, str]]:
        """The discovered labels of one pod of workload `w`, as Prometheus's pod role makes them:
        one target per container port, and one for each container without a port."""
        namespace = w["metadata"].get("namespace", "default")
        name = f"{w['metadata']['name']}-7d9f8b6c5d-x2x4z"
        base = {
            "__meta_kubernetes_namespace": namespace,
            "__meta_kubernetes_pod_name": name,
            "__meta_kubernetes_pod_phase": "Running",
            "__meta_kubernetes_pod_ip": "10.1.2.3",
        }
        for key, value in self.pod_labels(w).items():
            base["__meta_kubernetes_pod_label_" + re.sub(r"[^a-zA-Z0-9_]", "_", key)] = value
        spec = self.pod_spec(w)
        targets = []
        for init, containers in ((True, spec.get("initContainers", [])), (False, spec.get("containers", []))):
            for c in containers or []:
                common = dict(base, __meta_kubernetes_pod_container_name=c["name"],
                              __meta_kubernetes_pod_container_init=str(init).lower())
                ports = c.get("ports") or []
                if not ports:
                    targets.append(dict(common, __address__="10.1.2.3"))
                for p in ports:
                    targets.append(dict(
                        common,
                        __address__=f"10.1.2.3:{p['containerPort']}",
                        __meta_kubernetes_pod_container_port_name=p.get("name", ""),
                        __meta_kubernetes_pod_container_port_number=str(p["containerPort"]),
                    ))
        return targets

    def check_pod_discovery(self) -> None:
        config = self.prometheus_config()
        if config is None:
            self.fail("no prometheus.yml in the ConfigMap prometheus-config")
            return
        job = next((j for j in config.get("scrape_configs", []) if j.get("job_name") == "tweetoscope"), None)
        if job is None:
            self.fail("Prometheus has no scrape job `tweetoscope` for the stages")
            return
        sd = job.get("kubernetes_sd_configs") or []
        if job.get("static_configs") or not any(c.get("role") == "pod" for c in sd):
            self.fail(
                "Prometheus job tweetoscope must discover the stage pods (kubernetes_sd_configs, role "
                "pod), not scrape Services: replicas behind a Service interleave their counters"
            )
            return
        if job.get("honor_labels") is not True:
            self.fail("Prometheus job tweetoscope must keep the stages' own stage labels (honor_labels: true)")
        rules = job.get("relabel_configs") or []
        for w in self.workloads():
            kept = []
            for target in self.pod_targets(w):
                try:
                    labels = relabel(target, rules)
                except ValueError as e:
                    self.fail(f"Prometheus job tweetoscope: {e}")
                    return
                if labels is not None:
                    kept.append(labels)
            stage = self.pod_labels(w).get("app.kubernetes.io/component")
            is_stage = self.pod_labels(w).get("app.kubernetes.io/name") == "tweetoscope" and stage in STAGES
            where = f"{w['kind']}/{w['metadata']['name']}"
            if not is_stage:
                if kept:
                    self.fail(f"Prometheus job tweetoscope scrapes {where}, which is no stage")
                continue
            if len(kept) != 1:
                self.fail(f"Prometheus job tweetoscope keeps {len(kept)} targets per pod of {where}, expected 1 (its metrics port)")
                continue
            labels = kept[0]
            if not labels.get("__address__", "").endswith(f":{METRICS_PORT}"):
                self.fail(f"Prometheus job tweetoscope scrapes {where} at {labels.get('__address__')}, not port {METRICS_PORT}")
            if labels.get("stage") != stage:
                self.fail(f"Prometheus job tweetoscope labels {where} stage={labels.get('stage')!r}, expected {stage!r} (from app.kubernetes.io/component)")
            for label in ("pod", "instance"):
                if not labels.get(label):
                    self.fail(f"Prometheus job tweetoscope gives the targets of {where} no {label} label")

    def check_prometheus_rbac(self) -> None:
        prometheus = self.named("Deployment", "prometheus")
        if prometheus is None:
            self.fail("no Deployment prometheus")
            return
        spec = self.pod_spec(prometheus)
        account_name = spec.get("serviceAccountName")
        if not account_name:
            self.fail("Deployment/prometheus runs as the namespace's default ServiceAccount: set serviceAccountName")
            return
        account = self.named("ServiceAccount", account_name)
        if account is None:
            self.fail(f"Deployment/prometheus: no ServiceAccount {account_name}")
            return
        mounted = spec.get("automountServiceAccountToken", account.get("automountServiceAccountToken", True))
        if mounted is not True:
            self.fail("Deployment/prometheus does not mount its ServiceAccount token (automountServiceAccountToken): pod discovery needs it")
        namespace = prometheus["metadata"].get("namespace")
        granted: set[str] = set()
        for kind in ("RoleBinding", "ClusterRoleBinding"):
            for binding in self.of_kind(kind):
                if not any(
                    s.get("kind") == "ServiceAccount" and s.get("name") == account_name
                    and s.get("namespace", binding["metadata"].get("namespace")) == namespace
                    for s in binding.get("subjects") or []
                ):
                    continue
                ref = binding.get("roleRef") or {}
                role = self.named(ref.get("kind", ""), ref.get("name", ""))
                if role is None:
                    self.fail(f"{kind}/{binding['metadata']['name']} refers to a missing {ref.get('kind')} {ref.get('name')}")
                    continue
                for rule in role.get("rules") or []:
                    if "" in (rule.get("apiGroups") or []) and (
                        {"pods", "*"} & set(rule.get("resources") or [])
                    ):
                        granted |= set(rule.get("verbs") or [])
        missing = [v for v in ("get", "list", "watch") if v not in granted and "*" not in granted]
        if missing:
            self.fail(f"ServiceAccount {account_name} (Prometheus) may not {'/'.join(missing)} pods: no Role bound to it grants it")

    def check_no_custom_resources(self) -> None:
        """A default overlay applies on any cluster: no object of an operator's CRD (the optional
        PodMonitor lives in k8s/components/podmonitor)."""
        for d in self.docs:
            group = str(d.get("apiVersion", "")).rpartition("/")[0]
            if group.endswith("coreos.com"):
                self.fail(f"{d['kind']}/{d['metadata']['name']}: a custom resource ({group}) in a default overlay")

    def check_disruption_budgets(self) -> None:
        budgets = self.of_kind("PodDisruptionBudget")
        for w in self.of_kind("Deployment"):
            labels = self.pod_labels(w)
            if labels.get("app.kubernetes.io/name") != "tweetoscope":
                continue
            where = f"Deployment/{w['metadata']['name']}"
            replicas = w["spec"].get("replicas", 1)
            mine = [
                b for b in budgets
                if (b["spec"].get("selector") or {}).get("matchLabels")
                and all(labels.get(k) == v for k, v in b["spec"]["selector"]["matchLabels"].items())
            ]
            if not mine:
                self.fail(f"{where}: no PodDisruptionBudget selects its pods")
            for b in mine:
                spec = b["spec"]
                name = f"PodDisruptionBudget/{b['metadata']['name']}"
                if "minAvailable" in spec:
                    value = spec["minAvailable"]
                    need = -(-replicas * int(str(value).rstrip("%")) // 100) if str(value).endswith("%") else int(value)
                    if need >= replicas:
                        self.fail(f"{name}: minAvailable {value} with {replicas} replica(s) of {where} blocks every node drain")
                if "maxUnavailable" in spec and str(spec["maxUnavailable"]) in ("0", "0%"):
                    self.fail(f"{name}: maxUnavailable 0 blocks every node drain of {where}")


def relabel(labels: dict[str, str], rules: list[dict]) -> dict[str, str] | None:
    """Prometheus's relabelling (actions keep, drop, replace, labelmap, labeldrop, labelkeep) of
    one target; None when it is dropped. Afterwards, as Prometheus does, `instance` defaults to
    the address and the meta labels go."""
    labels = dict(labels)
    for rule in rules:
        action = rule.get("action", "replace").lower()
        regex = re.compile("^(?:" + str(rule.get("regex", "(.*)")) + ")$")
        value = rule.get("separator", ";").join(labels.get(n, "") for n in rule.get("source_labels") or [])
        if action == "keep":
            if not regex.match(value):
                return None
        elif action == "drop":
            if regex.match(value):
                return None
        elif action == "replace":
            m = regex.match(value)
            if m:
                replacement = re.sub(r"\$\{?(\w+)\}?", lambda g: (m.group(int(g.group(1))) if g.group(1).isdigit() else m.group(g.group(1))) or "", str(rule.get("replacement", "$1")))
                target = rule.get("target_label")
                if not target:
                    raise ValueError("a replace rule without target_label")
                if replacement:
                    labels[target] = replacement
                else:
                    labels.pop(target, None)
        elif action == "labelmap":
            for name in list(labels):
                m = regex.match(name)
                if m:
                    labels[m.expand(str(rule.get("replacement", "$1")).replace("$", "\\"))] = labels[name]
        elif action in ("labeldrop", "labelkeep"):
            for name in list(labels):
                if bool(regex.match(name)) == (action == "labeldrop"):
                    del labels[name]
        else:
            raise ValueError(f"relabel action {action!r} is not simulated by check_manifests.py")
    labels.setdefault("instance", labels.get("__address__", ""))
    return {k: v for k, v in labels.items() if not k.startswith("__meta_")}


def crate_version(repo: Path) -> str | None:
    """The version of the tweetoscope crate: its own, or the workspace's."""
    crate = (repo / "crates/tweetoscope/Cargo.toml").read_text()
    m = re.search(r'^version\s*=\s*"([^"]+)"', crate, re.M)
    if m:
        return m.group(1)
    workspace = (repo / "Cargo.toml").read_text()
    section = re.search(r"^\[workspace\.package\](.*?)(^\[|\Z)", workspace, re.M | re.S)
    m = section and re.search(r'^version\s*=\s*"([^"]+)"', section.group(1), re.M)
    return m.group(1) if m else None


def binary_env_vars(repo: Path) -> set[str]:
    source = "\n".join(
        p.read_text() for p in sorted((repo / "crates/tweetoscope/src").rglob("*.rs"))
    )
    return set(re.findall(r'env\s*=\s*"(TWEETOSCOPE_[A-Z0-9_]+)"', source))


def topic_defaults(repo: Path) -> dict[str, str]:
    """Field name of each topic option (e.g. models_topic) -> its default topic name."""
    source = (repo / "crates/tweetoscope/src/config.rs").read_text()
    return {
        field: default
        for default, field in re.findall(
            r'default_value\s*=\s*"([^"]+)"\s*\)\]\s*pub\s+(\w+_topic)\s*:', source
        )
    }


def compacted_topics(repo: Path) -> list[str]:
    """Default names of the topics that `TopicArgs::compacted` lists."""
    source = (repo / "crates/tweetoscope/src/config.rs").read_text()
    body = re.search(r"fn compacted\(&self\)[^{]*\{(.*?)\n    \}", source, re.S)
    defaults = topic_defaults(repo)
    if body is None:
        return ["models"]
    return [defaults[f] for f in re.findall(r"self\.(\w+_topic)", body.group(1)) if f in defaults]


def check_secrets_example(repo: Path) -> list[str]:
    problems = []
    docs = [d for d in yaml.safe_load_all((repo / "k8s/secrets.example.yaml").read_text()) if d]
    secret = next((d for d in docs if d["metadata"]["name"] == "alertmanager-secrets"), None)
    if secret is None:
        return ["k8s/secrets.example.yaml: no Secret alertmanager-secrets"]
    keys = set((secret.get("stringData") or {}) | (secret.get("data") or {}))
    config = (repo / "observability/alertmanager/alertmanager.yml").read_text()
    for path in re.findall(r"_file:\s*['\"]?(/etc/alertmanager/secrets/[^\s'\"]+)", config):
        key = path.rsplit("/", 1)[1]
        if key not in keys:
            problems.append(
                f"alertmanager.yml reads {path}, but k8s/secrets.example.yaml has no key {key}"
            )
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, required=True)
    parser.add_argument("rendered", nargs="+", type=Path)
    args = parser.parse_args()
    env = binary_env_vars(args.repo)
    topics = list(topic_defaults(args.repo).values())
    compacted = compacted_topics(args.repo)
    version = crate_version(args.repo)
    problems: list[str] = []
    if version is None:
        problems.append("cannot read the version of crates/tweetoscope from the Cargo manifests")
    if len(topics) < 8 or not env or "models" not in compacted:
        problems.append("cannot read the options of crates/tweetoscope/src/config.rs")
    for path in args.rendered:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
        checker = Checker(args.repo, path.stem, docs, version)
        checker.run(env, topics, compacted)
        problems += checker.problems
    problems += check_secrets_example(args.repo)
    for p in problems:
        print(f"FAIL {p}")
    if problems:
        return 1
    print(f"manifest checks passed: {', '.join(p.stem for p in args.rendered)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
