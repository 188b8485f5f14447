#!/usr/bin/env python3
"""Checks of compose.yaml that the compose specification's schema cannot make.

Usage: check_compose.py --repo ROOT [COMPOSE_FILE]   (default ROOT/compose.yaml; relative paths
of the file resolve against ROOT, so a broken copy may live elsewhere)

  * every bind-mounted file or directory and every env_file exists;
  * every stage of the pipeline runs, from the project's image tagged with the crate version,
    with the shared environment of k8s/base/stages/tweetoscope.env and the stage's own settings
    of k8s/base/stages/<stage>.yaml;
  * Prometheus mounts a static configuration (the local one: no Kubernetes discovery), and the
    targets it reads through the mounts (file_sd lists included) scrape every stage service on
    its metrics port (from TWEETOSCOPE_METRICS_ADDR) with its stage label, and name only
    services that exist, the Pushgateway's and Alertmanager's included;
  * the observability services mount the very files the Kubernetes ConfigMaps are generated from
    (observability/, grafana/) and run the images of k8s/base;
  * the published ports are the NodePorts of k8s/base (same addresses on a laptop as on
    minikube), and nothing else is published.
Exits 1 with one line per problem.
"""

from __future__ import annotations

import argparse
import posixpath
import re
import sys
from pathlib import Path

import yaml

STAGES = ["generator", "collector", "estimator", "predictor", "learner", "monitor", "dashboard", "logger"]
OWN_IMAGE = "registry.gitlab.com/tweetoscope/tweetoscope"
# Container path -> repository path that the service must mount there (the ConfigMaps' sources).
REQUIRED_MOUNTS = {
    "prometheus": {
        "/etc/prometheus/prometheus.yml": "observability/prometheus/local.yml",
        "/etc/prometheus/rules": "observability/prometheus/rules",
    },
    "alertmanager": {"/etc/alertmanager/alertmanager.yml": "observability/alertmanager/alertmanager.yml"},
    "loki": {"/etc/loki/loki.yml": "observability/loki/loki.yml"},
    "grafana": {
        "/etc/grafana/provisioning/datasources": "grafana/provisioning/datasources",
        "/etc/grafana/provisioning/dashboards": "grafana/provisioning/dashboards",
        "/var/lib/grafana/dashboards": "grafana/dashboards",
    },
}


def read_env_file(path: Path) -> dict[str, str]:
    env = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            env[key.strip()] = value.strip()
    return env


def k8s_docs(repo: Path) -> list[dict]:
    docs = []
    for path in sorted((repo / "k8s/base").rglob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        docs += [d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict) and "kind" in d]
    return docs


def crate_version(repo: Path) -> str | None:
    section = re.search(r"^\[workspace\.package\](.*?)(^\[|\Z)", (repo / "Cargo.toml").read_text(), re.M | re.S)
    m = section and re.search(r'^version\s*=\s*"([^"]+)"', section.group(1), re.M)
    return m.group(1) if m else None


class Compose:
    def __init__(self, repo: Path, doc: dict):
        self.repo = repo
        self.services: dict[str, dict] = doc.get("services") or {}
        self.problems: list[str] = []

    def fail(self, what: str) -> None:
        self.problems.append(what)

    def binds(self, name: str) -> dict[str, Path]:
        """Container path -> host path of a service's bind mounts."""
        out = {}
        for v in self.services[name].get("volumes") or []:
            if isinstance(v, str):
                parts = v.split(":")
                if len(parts) >= 2 and parts[0].startswith((".", "/")):
                    out[parts[1]] = (self.repo / parts[0]).resolve()
            elif isinstance(v, dict) and v.get("type") == "bind":
                out[v["target"]] = (self.repo / v["source"]).resolve()
        return out

    def host_path(self, name: str, container_path: str) -> Path | None:
        """Where a file the container reads comes from, through the service's bind mounts."""
        best = None
        for target, source in self.binds(name).items():
            if container_path == target or container_path.startswith(target.rstrip("/") + "/"):
                if best is None or len(target) > len(best[0]):
                    best = (target, source)
        if best is None:
            return None
        rest = container_path[len(best[0]):].lstrip("/")
        return best[1] / rest if rest else best[1]

    def environment(self, name: str) -> dict[str, str]:
        service = self.services[name]
        env: dict[str, str] = {}
        files = service.get("env_file") or []
        for f in [files] if isinstance(files, str) else files:
            path = self.repo / (f if isinstance(f, str) else f["path"])
            if path.is_file():
                env.update(read_env_file(path))
        given = service.get("environment") or {}
        if isinstance(given, list):
            given = dict(item.split("=", 1) for item in given)
        env.update({k: str(v) for k, v in given.items()})
        return env

    def stage_of(self, name: str) -> str | None:
        command = self.services[name].get("command")
        first = command[0] if isinstance(command, list) and command else str(command or "").split(" ")[0]
        image = str(self.services[name].get("image", ""))
        return first if first in STAGES and (image.startswith(OWN_IMAGE) or "build" in self.services[name]) else None

    # ---- checks ----------------------------------------------------------------------------

    def check_files(self) -> None:
        for name, service in self.services.items():
            for target, source in self.binds(name).items():
                if not source.exists():
                    self.fail(f"service {name} mounts {source.relative_to(self.repo) if source.is_relative_to(self.repo) else source} at {target}: no such file")
            files = service.get("env_file") or []
            for f in [files] if isinstance(files, str) else files:
                path = f if isinstance(f, str) else f["path"]
                if not (self.repo / path).is_file():
                    self.fail(f"service {name}: env_file {path} does not exist")

    def check_stages(self, version: str | None, docs: list[dict]) -> dict[str, tuple[str, int]]:
        """Checks the stage services; returns service name -> (stage, metrics port)."""
        shared = read_env_file(self.repo / "k8s/base/stages/tweetoscope.env")
        own_env: dict[str, dict[str, str]] = {}
        for d in docs:
            labels = d.get("metadata", {}).get("labels") or {}
            if d["kind"] in ("Deployment", "Job") and labels.get("app.kubernetes.io/name") == "tweetoscope":
                container = d["spec"]["template"]["spec"]["containers"][0]
                own_env[labels.get("app.kubernetes.io/component")] = {
                    e["name"]: str(e.get("value")) for e in container.get("env") or []
                }
        stages: dict[str, tuple[str, int]] = {}
        for name in self.services:
            stage = self.stage_of(name)
            if stage is None:
                continue
            image = str(self.services[name].get("image", ""))
            if version and image != f"{OWN_IMAGE}:{version}":
                self.fail(f"service {name}: image {image!r}, expected {OWN_IMAGE}:{version} (the crate version)")
            if self.services[name].get("build") is None:
                self.fail(f"service {name}: no `build: .` (the stages run the image of this tree's Dockerfile)")
            env = self.environment(name)
            for key, value in shared.items():
                if env.get(key) != value:
                    self.fail(f"service {name}: {key}={env.get(key)!r}, expected {value!r} (k8s/base/stages/tweetoscope.env)")
            for key, value in own_env.get(stage, {}).items():
                if env.get(key) != value:
                    self.fail(f"service {name}: {key}={env.get(key)!r}, expected {value!r} as in k8s/base/stages/{stage}.yaml")
            m = re.search(r":(\d+)$", env.get("TWEETOSCOPE_METRICS_ADDR", ""))
            if not m:
                self.fail(f"service {name}: no TWEETOSCOPE_METRICS_ADDR host:port (its metrics would stay on 127.0.0.1)")
                continue
            stages[name] = (stage, int(m.group(1)))
        for stage in STAGES:
            if stage not in {s for s, _ in stages.values()}:
                self.fail(f"no service runs the {stage} stage")
        return stages

    def scrape_targets(self) -> dict[str, list[tuple[str, dict]]]:
        """Job name -> [(target, labels)] of the configuration Prometheus mounts."""
        if "prometheus" not in self.services:
            self.fail("no prometheus service")
            return {}
        config_path = self.host_path("prometheus", "/etc/prometheus/prometheus.yml")
        if config_path is None or not config_path.is_file():
            self.fail("the prometheus service mounts no /etc/prometheus/prometheus.yml")
            return {}
        config = yaml.safe_load(config_path.read_text()) or {}
        jobs: dict[str, list[tuple[str, dict]]] = {}

        def groups(sd_holder: dict, where: str) -> list[dict]:
            if sd_holder.get("kubernetes_sd_configs"):
                self.fail(f"{where}: Kubernetes discovery in a configuration for compose (use the static local.yml)")
            out = list(sd_holder.get("static_configs") or [])
            for sd in sd_holder.get("file_sd_configs") or []:
                for pattern in sd.get("files") or []:
                    container = posixpath.normpath(posixpath.join("/etc/prometheus", pattern))
                    path = self.host_path("prometheus", container)
                    if path is None or not path.is_file():
                        self.fail(f"{where}: target list {container} is not mounted from an existing file")
                        continue
                    out += yaml.safe_load(path.read_text()) or []
            return out

        for job in config.get("scrape_configs") or []:
            name = job.get("job_name")
            jobs[name] = [
                (t, g.get("labels") or {}) for g in groups(job, f"job {name}") for t in g.get("targets") or []
            ]
        alerting = []
        for am in (config.get("alerting") or {}).get("alertmanagers") or []:
            alerting += [(t, {}) for g in groups(am, "alerting") for t in g.get("targets") or []]
        jobs["<alerting>"] = alerting
        return jobs

    def check_scraping(self, stages: dict[str, tuple[str, int]]) -> None:
        jobs = self.scrape_targets()
        if not jobs:
            return
        stage_targets = {t: labels for t, labels in jobs.get("tweetoscope", [])}
        for service, (stage, port) in sorted(stages.items()):
            target = f"{service}:{port}"
            if target not in stage_targets:
                self.fail(f"service {service} ({stage}) serves /metrics on {port}, but Prometheus does not scrape {target}")
            elif stage_targets[target].get("stage") != stage:
                self.fail(f"Prometheus labels {target} stage={stage_targets[target].get('stage')!r}, expected {stage!r}")
        for job, targets in jobs.items():
            for target, _ in targets:
                host = target.rsplit(":", 1)[0]
                if host in ("localhost", "127.0.0.1") and job != "prometheus":
                    self.fail(f"Prometheus job {job}: target {target} is the Prometheus container itself")
                elif host not in self.services and host not in ("localhost", "127.0.0.1"):
                    self.fail(f"Prometheus job {job}: target {target} names no service of compose.yaml")
        for job, service in (("pushgateway", "pushgateway"), ("<alerting>", "alertmanager")):
            if not any(t.rsplit(":", 1)[0] == service for t, _ in jobs.get(job, [])):
                self.fail(f"Prometheus does not reach the {service} service ({job})")

    def check_observability(self, docs: list[dict]) -> None:
        for service, mounts in REQUIRED_MOUNTS.items():
            if service not in self.services:
                self.fail(f"no {service} service")
                continue
            for container, wanted in mounts.items():
                got = self.host_path(service, container)
                if got != (self.repo / wanted).resolve():
                    self.fail(f"service {service} must mount {wanted} at {container} (the file k8s/ uses)")
        images = {}
        for d in docs:
            if d["kind"] in ("Deployment", "StatefulSet", "Job"):
                for c in d["spec"]["template"]["spec"]["containers"]:
                    if not c["image"].startswith(("tweetoscope", OWN_IMAGE)):
                        images[d["metadata"]["name"]] = c["image"]
        for name, image in images.items():
            if name in self.services and self.services[name].get("image") != image:
                self.fail(f"service {name}: image {self.services[name].get('image')!r}, but k8s/base runs {image}")
        for name in ("kafka", "kafka-topics", "pushgateway"):
            if name not in self.services:
                self.fail(f"no {name} service")

    def check_ports(self, docs: list[dict]) -> None:
        node_ports: dict[str, set[str]] = {}
        for d in docs:
            if d["kind"] == "Service" and d["spec"].get("type") == "NodePort":
                for p in d["spec"]["ports"]:
                    node_ports.setdefault(d["metadata"]["name"], set()).add(f"{p['nodePort']}:{p['port']}")
        for name, service in self.services.items():
            published = set()
            for p in service.get("ports") or []:
                if isinstance(p, dict):
                    published.add(f"{p.get('published')}:{p.get('target')}")
                else:
                    published.add(str(p).split("/")[0].split(":", 1)[-1] if str(p).count(":") > 1 else str(p).split("/")[0])
            wanted = node_ports.get(name, set())
            if published != wanted:
                self.fail(
                    f"service {name} publishes {sorted(published) or 'nothing'}, but k8s/base exposes "
                    f"{sorted(wanted) or 'no NodePort'}: the same ports on a laptop as on minikube"
                )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, required=True)
    parser.add_argument("compose", nargs="?", type=Path)
    args = parser.parse_args()
    repo = args.repo.resolve()
    path = args.compose or repo / "compose.yaml"
    compose = Compose(repo, yaml.safe_load(path.read_text()) or {})
    docs = k8s_docs(repo)
    compose.check_files()
    stages = compose.check_stages(crate_version(repo), docs)
    compose.check_scraping(stages)
    compose.check_observability(docs)
    compose.check_ports(docs)
    for p in compose.problems:
        print(f"FAIL {path.name}: {p}")
    if compose.problems:
        return 1
    print(f"{path.name}: {len(compose.services)} services; every stage scraped, mounts exist, NodePorts kept")
    return 0


if __name__ == "__main__":
    sys.exit(main())
