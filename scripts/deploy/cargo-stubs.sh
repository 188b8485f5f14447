#!/bin/sh
# Placeholder sources for every target of the workspace's crates, so that Cargo can resolve and
# build the dependencies from the manifests alone (the Dockerfile's cached dependency layer).
# Usage, at the workspace root where only Cargo.toml, Cargo.lock and crates/*/Cargo.toml exist:
#   sh scripts/deploy/cargo-stubs.sh
# Each crate gets src/lib.rs, and each [[bin]], [[bench]], [[test]] and [[example]] its file (at
# its `path`, or where Cargo looks by default). Existing files are left alone. POSIX sh: it runs
# in the build image.
set -eu

for manifest in crates/*/Cargo.toml; do
  dir=$(dirname "$manifest")
  mkdir -p "$dir/src"
  [ -e "$dir/src/lib.rs" ] || : >"$dir/src/lib.rs"
  # One line "KIND NAME PATH" per declared target (PATH "-" when the manifest gives none).
  awk '
    function flush() { if (kind != "") print kind, (name == "" ? "-" : name), (path == "" ? "-" : path) }
    /^\[\[(bin|bench|test|example)\]\]/ { flush(); kind = $0; gsub(/[][]/, "", kind); name = ""; path = ""; next }
    /^\[/ { flush(); kind = ""; next }
    kind != "" && /^[ \t]*name[ \t]*=/ { v = $0; sub(/^[^=]*=[ \t]*"/, "", v); sub(/".*/, "", v); name = v }
    kind != "" && /^[ \t]*path[ \t]*=/ { v = $0; sub(/^[^=]*=[ \t]*"/, "", v); sub(/".*/, "", v); path = v }
    END { flush() }
  ' "$manifest" | while read -r kind name path; do
    if [ "$path" = "-" ]; then
      case $kind in
        bin) path=src/bin/$name.rs ;;
        bench) path=benches/$name.rs ;;
        test) path=tests/$name.rs ;;
        example) path=examples/$name.rs ;;
      esac
    fi
    mkdir -p "$dir/$(dirname "$path")"
    [ -e "$dir/$path" ] || echo 'fn main() {}' >"$dir/$path"
  done
done
# The binary of the tweetoscope crate.
if [ -d crates/tweetoscope/src ] && [ ! -e crates/tweetoscope/src/main.rs ]; then
  echo 'fn main() {}' >crates/tweetoscope/src/main.rs
fi
