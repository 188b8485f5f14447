#!/usr/bin/env bash
# Tier "observability": the Prometheus, Alertmanager, Loki and Grafana files, checked with the real
# tools, and crates/tweetoscope/tests/observability/main.rs run against real Prometheus, Pushgateway,
# Alertmanager and VictoriaLogs processes (each test starts its own on free loopback ports and
# stops them).
# Installs what it needs from Debian when missing: prometheus (with promtool),
# prometheus-pushgateway, prometheus-alertmanager (with amtool), python3-yaml; and builds
# victoria-logs (pinned, `go install`) into .cache/bin once.
# Run by scripts/test.sh after the fast tier; alone: bash scripts/tiers/observability.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
started=$SECONDS
step() { printf '\n--> observability: %s\n' "$*"; }

# VictoriaLogs (Apache-2.0), a real server of Loki's push API (/insert/loki/api/v1/push), queried
# with LogsQL: the test a_run_ships_its_logs_to_victoria_logs_through_the_loki_push_api.
VICTORIA_LOGS_VERSION=v1.52.2

step "Debian packages"
missing=()
command -v promtool >/dev/null || missing+=(prometheus)
command -v prometheus-pushgateway >/dev/null || missing+=(prometheus-pushgateway)
command -v amtool >/dev/null && command -v prometheus-alertmanager >/dev/null || missing+=(prometheus-alertmanager)
/usr/bin/python3 -c 'import yaml' 2>/dev/null || missing+=(python3-yaml)
if ((${#missing[@]})); then
  sudo=""
  [[ $(id -u) -eq 0 ]] || sudo="sudo"
  $sudo apt-get update -qq
  # The packages' post-install scripts try to start their services; in a container without an
  # init system that fails or is refused (policy-rc.d), which is fine: the tests start their own
  # instances on other ports. Only a missing binary afterwards is an error.
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" \
    || echo "apt-get reported an error (often a service that cannot start here); checking the binaries"
fi
for tool in promtool prometheus prometheus-pushgateway amtool prometheus-alertmanager; do
  command -v "$tool" >/dev/null || { echo "observability tier: $tool is missing after the install" >&2; exit 1; }
done
# Packaged services that did start (on a machine with systemd) would hold the default ports; the
# tests use free ports anyway, so they are left alone.
promtool --version 2>&1 | head -1
prometheus-alertmanager --version 2>&1 | head -1

step "victoria-logs $VICTORIA_LOGS_VERSION"
# Built once from its Go module (needs Go >= 1.26.5 and a C compiler: gozstd uses cgo). The first
# build took 65 s on 2 shared cores (modules downloaded, Go's build cache warm), 93 s with an empty
# Go build cache; later runs skip it.
victoria_logs="$root/.cache/bin/victoria-logs"
if ! go version -m "$victoria_logs" 2>/dev/null \
  | grep -Eq "^[[:space:]]+mod[[:space:]]+github.com/VictoriaMetrics/VictoriaLogs[[:space:]]+${VICTORIA_LOGS_VERSION}[[:space:]]"; then
  command -v go >/dev/null || { echo "Go is needed to build victoria-logs $VICTORIA_LOGS_VERSION" >&2; exit 1; }
  echo "building victoria-logs $VICTORIA_LOGS_VERSION into .cache/bin (once)"
  mkdir -p "$root/.cache/bin"
  GOBIN="$root/.cache/bin" GOFLAGS=-mod=mod \
    go install "github.com/VictoriaMetrics/VictoriaLogs/app/victoria-logs@$VICTORIA_LOGS_VERSION"
fi
go version -m "$victoria_logs" | sed -n 's/^[[:space:]]*mod[[:space:]]*\(github.com[^[:space:]]*[[:space:]]*v[^[:space:]]*\).*/\1/p'
export TWEETOSCOPE_VICTORIA_LOGS="$victoria_logs"

step "promtool check config / check rules / test rules"
# Every Prometheus configuration of the repository. Relative paths (rules/*.yml, the file_sd
# target lists of local.yml) resolve against the configuration's directory, so each checks as it
# is, rule files and target lists included. Debian's promtool (2.42) is built without the
# Kubernetes service discovery: a configuration that uses it (prometheus.yml, and the ConfigMap
# rendered from it) is checked by scripts/tiers/deploy.sh with the promtool of the deployed
# Prometheus version; here it is checked only where this promtool can read it.
prometheus_configs=(observability/prometheus/*.yml)
for config in "${prometheus_configs[@]}"; do
  if grep -q 'kubernetes_sd_configs' "$config"; then
    if output=$(promtool check config "$config" 2>&1); then
      echo "$output"
    elif grep -q 'field kubernetes_sd_configs not found' <<<"$output"; then
      echo "$config: Kubernetes discovery, which this promtool lacks: checked by scripts/tiers/deploy.sh"
    else
      echo "$output" >&2
      exit 1
    fi
    continue
  fi
  promtool check config "$config"
done
# local.yml as docker compose mounts it: compose-targets/ in place of targets/ (compose.yaml).
compose_prom=$(mktemp -d)
trap 'rm -rf "$compose_prom"' EXIT
cp observability/prometheus/local.yml "$compose_prom/prometheus.yml"
cp -r observability/prometheus/rules "$compose_prom/rules"
cp -r observability/prometheus/compose-targets "$compose_prom/targets"
promtool check config "$compose_prom/prometheus.yml"
promtool check rules observability/prometheus/rules/*.yml
promtool test rules observability/prometheus/tests/*.yml

step "amtool check-config and routing"
# amtool does not read the secret files (auth_password_file, api_url_file): no dummy secret needed.
amtool check-config observability/alertmanager/alertmanager.yml
route() {
  local expected=$1
  shift
  amtool config routes test --config.file=observability/alertmanager/alertmanager.yml \
    --verify.receivers="$expected" "$@" 2>/dev/null >/dev/null \
    || { echo "routing of {$*} is not $expected:" >&2
         amtool config routes test --config.file=observability/alertmanager/alertmanager.yml "$@" >&2 || true
         exit 1; }
  echo "  {$*} -> $expected"
}
route email,chat alertname=PopularTweet service=tweetoscope severity=critical cid=1 window=600
route chat alertname=PopularTweet service=tweetoscope severity=warning cid=1 window=600
route email,chat alertname=TweetoscopeStageDown service=tweetoscope severity=critical stage=collector
route chat alertname=TweetoscopeDeadLetters service=tweetoscope severity=warning stage=collector topic=tweets
route chat alertname=TweetoscopePopularTweets service=tweetoscope severity=info
route chat alertname=TweetoscopePushgatewayStale service=tweetoscope severity=warning job=tweetoscope
# The always-firing Watchdog goes to the dead man's switch only, never to people.
route watchdog alertname=Watchdog service=tweetoscope severity=none

step "YAML and JSON files, dashboards that travel"
/usr/bin/python3 scripts/observability/check_files.py .

step "alerts: for:, runbook sections, Watchdog, Pushgateway staleness"
/usr/bin/python3 scripts/observability/check_rules.py --repo .

step "self-test: every check rejects a broken copy"
broken=$(mktemp -d)
trap 'rm -rf "$compose_prom" "$broken"' EXIT
# must_fail WHAT PATTERN COMMAND...: COMMAND must fail, saying something that matches PATTERN.
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
# Dashboards: a hard-coded data source uid, a raw counter, a request-rate unit, a query without
# the job and instance variables.
/usr/bin/python3 - grafana/dashboards/tweetoscope-overview.json "$broken" <<'PY'
import copy, json, sys
dashboard = json.load(open(sys.argv[1]))
def panel(d, pid):
    def walk(ps):
        for p in ps:
            yield p
            yield from walk(p.get("panels", []))
    return next(p for p in walk(d["panels"]) if p["id"] == pid)
def broken(name, change):
    d = copy.deepcopy(dashboard)
    change(d)
    json.dump(d, open(f"{sys.argv[2]}/{name}.json", "w"))
broken("uid", lambda d: panel(d, 8)["targets"][0].update(datasource={"type": "prometheus", "uid": "prometheus"}))
broken("raw-counter", lambda d: panel(d, 5)["targets"][0].update(
    expr='sum(tweetoscope_malformed_messages_total{job=~"$job", instance=~"$instance"})'))
broken("reqps", lambda d: panel(d, 8)["fieldConfig"]["defaults"].update(unit="reqps"))
broken("no-job", lambda d: panel(d, 9)["targets"][0].update(
    expr='sum by (stage, topic) (rate(tweetoscope_messages_produced_total{stage=~"$stage"}[$__rate_interval]))'))
PY
must_fail "a panel with a hard-coded data source uid" "hard-coded data source uid 'prometheus'" \
  /usr/bin/python3 scripts/observability/check_files.py . "$broken/uid.json"
must_fail "a raw sum of a counter" "raw counter tweetoscope_malformed_messages_total" \
  /usr/bin/python3 scripts/observability/check_files.py . "$broken/raw-counter.json"
must_fail "messages per second in reqps" "unit 'reqps'" \
  /usr/bin/python3 scripts/observability/check_files.py . "$broken/reqps.json"
# shellcheck disable=SC2016 # the pattern holds a literal $job
must_fail "a query without job and instance" 'messages_produced_total does not select job=~"\$job"' \
  /usr/bin/python3 scripts/observability/check_files.py . "$broken/no-job.json"
# Rules: an alert without for:, a runbook anchor that is no heading, no Watchdog.
sed '/alert: TweetoscopeStageDown/,/for:/{/for:/d}' observability/prometheus/rules/alerts.yml >"$broken/no-for.yml"
must_fail "an alert without for:" "TweetoscopeStageDown: no .for:" \
  /usr/bin/python3 scripts/observability/check_rules.py --repo . "$broken/no-for.yml"
sed 's|runbook.md#tweetoscopedeadletters|runbook.md#dead-letters|' observability/prometheus/rules/alerts.yml >"$broken/anchor.yml"
must_fail "a runbook_url whose anchor is no heading" "anchor #dead-letters is no heading of docs/runbook.md" \
  /usr/bin/python3 scripts/observability/check_rules.py --repo . "$broken/anchor.yml"
sed 's|alert: Watchdog|alert: Watchdog2|' observability/prometheus/rules/alerts.yml >"$broken/no-watchdog.yml"
must_fail "rules without the Watchdog" "no always-firing Watchdog" \
  /usr/bin/python3 scripts/observability/check_rules.py --repo . "$broken/no-watchdog.yml"
# promtool: the static configuration naming a target list that is no list of targets.
mkdir -p "$broken/prom/targets"
cp observability/prometheus/local.yml "$broken/prom/prometheus.yml"
cp -r observability/prometheus/targets/. "$broken/prom/targets/"
printf 'targets: localhost:9100\n' >"$broken/prom/targets/stages.yml"
must_fail "a static configuration with a malformed target list" "stages.yml" \
  promtool check config "$broken/prom/prometheus.yml"
# amtool: the Watchdog routed to people.
sed "s/receiver: watchdog$/receiver: chat/" observability/alertmanager/alertmanager.yml >"$broken/alertmanager.yml"
must_fail "a Watchdog routed to the chat" "did not match resolved receivers" \
  amtool config routes test --config.file="$broken/alertmanager.yml" --verify.receivers=watchdog \
  alertname=Watchdog service=tweetoscope severity=none

step "cargo test --test observability (real Prometheus, Pushgateway, Alertmanager, VictoriaLogs)"
cargo test --locked -p tweetoscope --test observability -- --include-ignored --test-threads=1

echo "observability tier: passed in $((SECONDS - started)) s"
