#!/usr/bin/env bash
# Runs k8s/base/kafka/create-topics.sh and wait-for-topics.sh as the kafka-topics Job and the
# stages' init container run them, against the SASL_SSL listener of the broker that
# `KAFKA_SASL_SSL=1 scripts/kafka.sh start` runs (same KAFKA_STATE_DIR), with its client
# properties as COMMAND_CONFIG and Kafka's own kafka-topics tool (`scripts/kafka.sh topics`).
# Fails unless: the topics and their dead-letter topics are made as asked (partitions, compaction),
# a second run changes nothing and succeeds, the init container's wait ends, a wrong password fails
# with the authentication error, and a missing properties file fails at once naming it.
# Run by scripts/tiers/kafka.sh; alone, with such a broker running: bash scripts/kafka/check-topic-scripts.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

fail() {
  echo "check-topic-scripts: $*" >&2
  exit 1
}

: "${KAFKA_STATE_DIR:?KAFKA_STATE_DIR: the state directory of the running broker}"
secured=$(scripts/kafka.sh bootstrap-sasl-ssl)
plain=$(scripts/kafka.sh bootstrap)
properties=$KAFKA_STATE_DIR/tls/client.properties
[[ -r "$properties" ]] || fail "no $properties: start the broker with KAFKA_SASL_SSL=1"

work=$(mktemp -d)
suffix="$$-$RANDOM"
series="topic-check-series-$suffix"
models="topic-check-models-$suffix"
cleanup() {
  for name in "$series" "$series.dlq" "$models" "$models.dlq"; do
    scripts/kafka.sh topics --bootstrap-server "$plain" --delete --if-exists --topic "$name" \
      >/dev/null 2>&1 || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

# What the Kafka image has in /opt/kafka/bin, for the scripts' KAFKA_BIN.
mkdir "$work/bin"
cat >"$work/bin/kafka-topics.sh" <<EOF
#!/usr/bin/env bash
exec "$PWD/scripts/kafka.sh" topics "\$@"
EOF
chmod +x "$work/bin/kafka-topics.sh"

export KAFKA_BIN=$work/bin BOOTSTRAP=$secured TOPICS="$series $models" COMPACTED_TOPICS=$models \
  PARTITIONS=2 COMMAND_CONFIG=$properties

bash k8s/base/kafka/create-topics.sh >"$work/create.log" 2>&1 ||
  fail "create-topics.sh failed on the SASL_SSL listener: $(tail -n 20 "$work/create.log")"
existing=$(scripts/kafka.sh topics --bootstrap-server "$plain" --list)
for name in "$series" "$series.dlq" "$models" "$models.dlq"; do
  grep -qxF "$name" <<<"$existing" || fail "create-topics.sh did not make $name"
done
described=$(scripts/kafka.sh topics --bootstrap-server "$plain" --describe --topic "$models")
grep -q "PartitionCount: 2" <<<"$described" || fail "$models has not 2 partitions: $described"
grep -q "cleanup.policy=compact" <<<"$described" || fail "$models is not compacted: $described"
grep -q "cleanup.policy=compact" <<<"$(scripts/kafka.sh topics --bootstrap-server "$plain" \
  --describe --topic "$series")" && fail "$series is compacted but not in COMPACTED_TOPICS"

bash k8s/base/kafka/create-topics.sh >"$work/again.log" 2>&1 ||
  fail "a second run of create-topics.sh failed: $(tail -n 20 "$work/again.log")"
timeout 120 bash k8s/base/kafka/wait-for-topics.sh >"$work/wait.log" 2>&1 ||
  fail "wait-for-topics.sh did not see the topics: $(tail -n 20 "$work/wait.log")"
grep -q "every topic exists" "$work/wait.log" || fail "wait-for-topics.sh: $(cat "$work/wait.log")"

sed 's/password="[^"]*"/password="not-the-password"/' "$properties" >"$work/wrong.properties"
if COMMAND_CONFIG=$work/wrong.properties WAIT_ATTEMPTS=1 bash k8s/base/kafka/create-topics.sh \
  >"$work/wrong.log" 2>&1; then
  fail "create-topics.sh succeeded with a wrong password"
fi
grep -qi "authentication" "$work/wrong.log" ||
  fail "a wrong password did not report the authentication failure: $(tail -n 20 "$work/wrong.log")"

rc=0
COMMAND_CONFIG=$work/missing.properties bash k8s/base/kafka/create-topics.sh \
  >"$work/missing.log" 2>&1 || rc=$?
if [[ $rc -ne 2 ]] || ! grep -q "missing.properties: no such readable file" "$work/missing.log"; then
  fail "a missing COMMAND_CONFIG did not fail at once (exit $rc): $(cat "$work/missing.log")"
fi

echo "check-topic-scripts: create-topics.sh and wait-for-topics.sh work over SASL_SSL with --command-config"
