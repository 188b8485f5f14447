#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what it needs, then runs formatting and lint
# checks, the unit and integration tests (embedded broker), and the tiers that need real servers.
# Usage: scripts/test.sh            (everything)
#        scripts/test.sh --fast     (skip the real-server tiers)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
fast=false
[[ "${1:-}" == "--fast" ]] && fast=true

step() { printf '\n==> %s\n' "$*"; }

step "toolchain"
if ! command -v cargo >/dev/null; then
  echo "cargo not found: install Rust (https://rustup.rs) and run again" >&2
  exit 1
fi
rustup component add rustfmt clippy >/dev/null 2>&1 || true
cargo --version

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo doc (broken links are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked

step "unit and integration tests (embedded broker)"
cargo test --workspace --locked

if $fast; then
  echo "fast tier only: skipping the real-server tiers"
  exit 0
fi

for tier in scripts/tiers/*.sh; do
  [[ -e "$tier" ]] || continue
  step "tier $(basename "$tier" .sh)"
  bash "$tier"
done
echo
echo "all tests passed"
