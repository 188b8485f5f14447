#!/usr/bin/env python3
"""Policy checks of the Dockerfile that a linter does not make.

Usage: check_dockerfile.py Dockerfile [REPO]

  * at least two stages (a builder and a runtime);
  * the runtime (last) stage does not start from a Rust or other build image;
  * the runtime stage installs no compiler, build tool or -dev package;
  * the runtime stage copies from the build context nothing at all, and from other stages only
    the `tweetoscope` binary;
  * it runs as a numeric non-root USER, with ENTRYPOINT ["tweetoscope"] and EXPOSE 9100;
  * the builder builds with `cargo build --release --locked`;
  * with REPO: the dependency layer copies the manifest of every crate of REPO/crates (a crate
    missing there breaks the placeholder build).
Exits 1 with one line per problem.
"""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

BUILD_IMAGES = re.compile(r"(^|/)(rust|golang|gcc|buildpack-deps|maven|node|clux/muslrust)(:|$)")
BUILD_PACKAGES = re.compile(
    r"^(gcc|g\+\+|clang|make|cmake|build-essential|pkg-config|cargo|rustc|autoconf|automake|"
    r"libtool|perl|python3|git|curl|wget|.*-dev)$"
)


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    current = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if current and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        word, _, rest = current.partition(" ")
        out.append((word.upper(), rest.strip()))
        current = ""
    if current:
        word, _, rest = current.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def check(text: str, repo: Path | None = None) -> list[str]:
    problems: list[str] = []
    args: dict[str, str] = {}
    stages: list[dict] = []
    for word, rest in instructions(text):
        if word == "ARG" and not stages:
            name, _, default = rest.partition("=")
            args[name.strip()] = default.strip().strip('"')
            continue
        if word == "FROM":
            parts = [p for p in rest.split() if not p.startswith("--")]
            image = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), parts[0])
            name = parts[2] if len(parts) >= 3 and parts[1].lower() == "as" else None
            stages.append({"image": image, "name": name, "body": []})
            continue
        if not stages:
            problems.append(f"{word} before the first FROM")
            continue
        stages[-1]["body"].append((word, rest))

    if len(stages) < 2:
        return problems + [f"{len(stages)} stage(s): build in one stage and run in another"]
    builder_names = {s["name"] for s in stages[:-1] if s["name"]} | {
        str(i) for i in range(len(stages) - 1)
    }
    final = stages[-1]
    if BUILD_IMAGES.search(final["image"]):
        problems.append(f"the runtime stage starts from the build image {final['image']}")
    if final["image"] in builder_names:
        problems.append("the runtime stage starts from a builder stage")

    if not any(
        word == "RUN" and re.search(r"cargo build\b.*--release", rest) and "--locked" in rest
        for s in stages[:-1]
        for word, rest in s["body"]
    ):
        problems.append("no builder stage runs `cargo build --release --locked`")

    user = None
    entrypoint = None
    exposed: set[str] = set()
    for word, rest in final["body"]:
        if word == "RUN":
            for command in re.split(r"&&|;|\|\|", rest):
                tokens = shlex.split(command) if command.strip() else []
                if len(tokens) >= 2 and tokens[0] in ("apt-get", "apt", "apk", "yum", "dnf"):
                    if "install" in tokens or "add" in tokens:
                        for t in tokens[1:]:
                            if not t.startswith("-") and t not in ("install", "add") and BUILD_PACKAGES.match(t):
                                problems.append(f"the runtime stage installs the build package {t}")
        elif word in ("COPY", "ADD"):
            flags = [p for p in rest.split() if p.startswith("--")]
            paths = [p for p in rest.split() if not p.startswith("--")]
            source_stage = next((f.split("=", 1)[1] for f in flags if f.startswith("--from=")), None)
            if word == "ADD" or source_stage is None:
                problems.append(f"the runtime stage copies from the build context: {word} {rest}")
            elif len(paths) != 2 or not paths[0].endswith("/tweetoscope"):
                problems.append(f"the runtime stage copies more than the binary: {word} {rest}")
        elif word == "USER":
            user = rest.split(":")[0]
        elif word == "ENTRYPOINT":
            entrypoint = rest
        elif word == "EXPOSE":
            exposed.update(p.split("/")[0] for p in rest.split())
    if user is None:
        problems.append("the runtime stage has no USER: it would run as root")
    elif not user.isdigit() or int(user) == 0:
        problems.append(f"USER {user}: use a numeric non-root uid (Kubernetes runAsNonRoot checks it)")
    if entrypoint is None or not re.fullmatch(r'\[\s*"(/usr/local/bin/)?tweetoscope"\s*\]', entrypoint):
        problems.append(f'ENTRYPOINT should be ["tweetoscope"], found {entrypoint}')
    if "9100" not in exposed:
        problems.append("the runtime stage does not EXPOSE 9100")
    if repo is not None:
        copied = {
            p
            for s in stages[:-1]
            for word, rest in s["body"]
            if word == "COPY"
            for p in rest.split()
        }
        for manifest in sorted(repo.glob("crates/*/Cargo.toml")):
            relative = manifest.relative_to(repo).as_posix()
            if relative not in copied:
                problems.append(f"the builder does not copy {relative} before the dependency build")
    return problems


def main() -> int:
    if len(sys.argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 2
    path = Path(sys.argv[1])
    repo = Path(sys.argv[2]) if len(sys.argv) == 3 else None
    problems = check(path.read_text(), repo)
    for p in problems:
        print(f"FAIL {path}: {p}")
    if problems:
        return 1
    print(f"{path}: policy checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
