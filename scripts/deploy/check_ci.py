#!/usr/bin/env python3
"""Checks of .gitlab-ci.yml that GitLab's schema cannot make: the API documentation job.

Usage: check_ci.py .gitlab-ci.yml

  * a job named `pages` (GitLab Pages publishes the artifact `public` of that job) that runs on
    the default branch only;
  * it builds `cargo doc --no-deps --workspace --locked` with RUSTDOCFLAGS="-D warnings" (a broken
    intra-doc link fails it), copies target/doc to public/ and writes public/index.html;
  * its artifacts hold `public`.
Exits 1 with one line per problem.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml


def main() -> int:
    ci = yaml.safe_load(Path(sys.argv[1]).read_text()) or {}
    job = ci.get("pages")
    if not isinstance(job, dict):
        print("FAIL no `pages` job (GitLab Pages publishes the job of that name)")
        return 1
    problems = []
    rules = job.get("rules") or []
    only_default = (
        len(rules) == 1
        and rules[0].get("if", "").replace(" ", "") == "$CI_COMMIT_BRANCH==$CI_DEFAULT_BRANCH"
        and rules[0].get("when", "on_success") != "never"
    )
    if not only_default:
        problems.append("pages: must run on the default branch only (rules: if $CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH)")
    flags = str((job.get("variables") or {}).get("RUSTDOCFLAGS", ""))
    script = "\n".join(job.get("script") or [])
    if "-D warnings" not in flags and 'RUSTDOCFLAGS="-D warnings"' not in script:
        problems.append('pages: RUSTDOCFLAGS="-D warnings" is not set (broken intra-doc links would pass)')
    for needed in ("cargo doc", "--no-deps", "--workspace", "--locked"):
        if needed not in script:
            problems.append(f"pages: the script does not run `{needed}`")
    if "target/doc" not in script or "public" not in script:
        problems.append("pages: target/doc is not copied to public/")
    if "public/index.html" not in script:
        problems.append("pages: no public/index.html (the site's root would be empty)")
    if "public" not in ((job.get("artifacts") or {}).get("paths") or []):
        problems.append("pages: artifacts.paths must hold public")
    for p in problems:
        print(f"FAIL {p}")
    if problems:
        return 1
    print("pages: cargo doc -D warnings on the default branch, published from public/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
