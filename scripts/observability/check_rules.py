#!/usr/bin/env python3
"""Checks of the alerting rules that promtool does not make.

Usage: check_rules.py [--repo ROOT] [RULE_FILE ...]   (default: ROOT/observability/prometheus/rules/*.yml)

- every alert has a `for:` of more than zero: a condition must hold before it notifies;
- every alert has a `runbook_url` annotation naming a file of the repository (under RUNBOOK_BASE,
  the repository's address) with an anchor that is a heading of that file (GitLab's heading
  anchors: lower case, punctuation dropped, spaces as hyphens);
- every section (## heading) of a runbook the alerts use is an alert's, so none is left behind;
- there is an always-firing Watchdog alert, and an alert on the Pushgateway's push_time_seconds.
Exits 1 with one line per problem.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import yaml

RUNBOOK_BASE = "https://gitlab.com/tweetoscope/tweetoscope/-/blob/main/"
DURATION = re.compile(r"^((\d+)(ms|s|m|h|d|w|y))+$")


def anchor(heading: str) -> str:
    """GitLab's (and GitHub's) anchor of a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def headings(path: Path) -> dict[str, str]:
    """Anchor -> heading text of every ##-level heading of a Markdown file (code blocks skipped)."""
    out: dict[str, str] = {}
    fenced = False
    for line in path.read_text().splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and line.startswith("## "):
            out[anchor(line[3:])] = line[3:].strip()
    return out


def seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
    return sum(int(n) * units[u] for n, u in re.findall(r"(\d+)(ms|s|m|h|d|w|y)", duration))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=Path("."))
    parser.add_argument("rules", nargs="*", type=Path)
    args = parser.parse_args()
    repo = args.repo.resolve()
    files = args.rules or sorted((repo / "observability/prometheus/rules").glob("*.yml"))
    problems: list[str] = []
    alerts: list[tuple[str, dict]] = []
    for path in files:
        doc = yaml.safe_load(path.read_text()) or {}
        for group in doc.get("groups") or []:
            for rule in group.get("rules") or []:
                if "alert" in rule:
                    alerts.append((f"{path.name}: {rule['alert']}", rule))
    if not alerts:
        problems.append("no alerting rule found")
    used: dict[Path, set[str]] = {}
    for where, rule in alerts:
        duration = str(rule.get("for", ""))
        if not DURATION.match(duration) or seconds(duration) <= 0:
            problems.append(f"{where}: no `for:` (or a zero one): the alert would notify on one evaluation")
        url = (rule.get("annotations") or {}).get("runbook_url")
        if not url:
            problems.append(f"{where}: no runbook_url annotation")
            continue
        if not url.startswith(RUNBOOK_BASE) or "#" not in url:
            problems.append(f"{where}: runbook_url {url} is not {RUNBOOK_BASE}<file>#<section>")
            continue
        relative, _, section = url[len(RUNBOOK_BASE):].partition("#")
        runbook = repo / relative
        if not runbook.is_file():
            problems.append(f"{where}: runbook_url names {relative}, which is not a file of the repository")
            continue
        sections = headings(runbook)
        used.setdefault(runbook, set()).add(section)
        if section not in sections:
            problems.append(f"{where}: runbook_url anchor #{section} is no heading of {relative}")
    for runbook, anchors in used.items():
        for a, heading in headings(runbook).items():
            if a not in anchors:
                problems.append(
                    f"{runbook.relative_to(repo)}: section '{heading}' belongs to no alert (renamed or removed?)"
                )
    names = {rule["alert"]: rule for _, rule in alerts}
    watchdog = names.get("Watchdog")
    if watchdog is None or str(watchdog.get("expr", "")).strip() != "vector(1)":
        problems.append("no always-firing Watchdog alert (expr: vector(1))")
    if not any("push_time_seconds" in str(rule.get("expr", "")) for _, rule in alerts):
        problems.append("no alert on the Pushgateway's push_time_seconds (a monitor that stopped pushing)")
    for p in problems:
        print(f"FAIL {p}", file=sys.stderr)
    if problems:
        return 1
    print(f"{len(alerts)} alerts: each with for:, and a runbook section that exists")
    return 0


if __name__ == "__main__":
    sys.exit(main())
