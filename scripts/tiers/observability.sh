#!/usr/bin/env bash
# Tier "observability": the Prometheus, Alertmanager, Loki and Grafana files, checked with the real
# tools, and crates/tweetoscope/tests/observability/main.rs run against real Prometheus, Pushgateway and
# Alertmanager processes (each test starts its own on free loopback ports and stops them).
# Installs what it needs from Debian when missing: prometheus (with promtool),
# prometheus-pushgateway, prometheus-alertmanager (with amtool), python3-yaml.
# Run by scripts/test.sh after the fast tier; alone: bash scripts/tiers/observability.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
started=$SECONDS
step() { printf '\n--> observability: %s\n' "$*"; }

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

step "promtool check config / check rules / test rules"
# Relative rule_files paths (rules/*.yml) resolve against the configuration's directory, so the
# Kubernetes configuration checks as it is, rule files included.
promtool check config observability/prometheus/prometheus.yml
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

step "YAML and JSON files"
/usr/bin/python3 scripts/observability/check_files.py .

step "cargo test --test observability (real Prometheus, Pushgateway, Alertmanager)"
cargo test --locked -p tweetoscope --test observability -- --include-ignored --test-threads=1

echo "observability tier: passed in $((SECONDS - started)) s"
