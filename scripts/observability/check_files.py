#!/usr/bin/env python3
"""Syntax checks of the observability files that no other tool of the tier reads.

- every YAML file under observability/ and grafana/provisioning/ parses (PyYAML, Debian package
  python3-yaml) and has no duplicate mapping key;
- observability/loki/loki.yml has the sections a single-binary Loki 3.x with filesystem storage
  and retention needs (Loki itself is not installable here);
- every grafana/dashboards/*.json parses (standard library).

The dashboards' content (panel ids, data sources, metric names, queries) is checked by
crates/tweetoscope/tests/observability/main.rs. Usage: check_files.py [REPO_ROOT]
"""
import json
import pathlib
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
    dashboards = sorted((root / "grafana/dashboards").glob("*.json"))
    if not dashboards:
        errors.append("grafana/dashboards: no dashboard")
    for path in dashboards:
        try:
            json.loads(path.read_text())
        except json.JSONDecodeError as e:
            errors.append(f"{path.relative_to(root)}: {e}")
    for e in errors:
        print(f"error: {e}", file=sys.stderr)
    if errors:
        return 1
    print(f"{len(files)} YAML files and {len(dashboards)} dashboards parse; loki.yml has its sections")
    return 0


if __name__ == "__main__":
    sys.exit(main())
