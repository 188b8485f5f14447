#!/usr/bin/env bash
# Creates every topic of the pipeline and its dead-letter topic (<topic>.dlq), with PARTITIONS
# partitions and REPLICATION_FACTOR replicas; the topics of COMPACTED_TOPICS get
# cleanup.policy=compact. Existing topics are left as they are, so running it again is harmless.
# Run by the kafka-topics Job with the Kafka image's tools (/opt/kafka/bin).
# A secured Kafka: COMMAND_CONFIG names a Java client properties file (security.protocol,
# sasl.mechanism, sasl.jaas.config, ssl.truststore.*), given to every kafka-topics.sh call as
# --command-config. WAIT_ATTEMPTS (default 60, 5 s apart) bounds the wait for Kafka to answer.
set -euo pipefail

: "${BOOTSTRAP:?BOOTSTRAP (host:port) is required}"
: "${TOPICS:?TOPICS (space-separated names) is required}"
PARTITIONS=${PARTITIONS:-4}
REPLICATION_FACTOR=${REPLICATION_FACTOR:-1}
COMPACTED_TOPICS=${COMPACTED_TOPICS:-}
MIN_INSYNC_REPLICAS=${MIN_INSYNC_REPLICAS:-1}
WAIT_ATTEMPTS=${WAIT_ATTEMPTS:-60}
bin=${KAFKA_BIN:-/opt/kafka/bin}
client=()
if [[ -n "${COMMAND_CONFIG:-}" ]]; then
  if [[ ! -r "$COMMAND_CONFIG" ]]; then
    echo "COMMAND_CONFIG=$COMMAND_CONFIG: no such readable file (the client properties of a secured Kafka)" >&2
    exit 2
  fi
  client=(--command-config "$COMMAND_CONFIG")
fi
topics() { "$bin/kafka-topics.sh" --bootstrap-server "$BOOTSTRAP" "${client[@]}" "$@"; }

echo "waiting for Kafka at $BOOTSTRAP${COMMAND_CONFIG:+ (client properties $COMMAND_CONFIG)}"
for attempt in $(seq 1 "$WAIT_ATTEMPTS"); do
  if error=$(topics --list 2>&1 >/dev/null); then
    break
  fi
  if ((attempt == WAIT_ATTEMPTS)); then
    echo "Kafka at $BOOTSTRAP did not answer after $WAIT_ATTEMPTS attempts; the last error:" >&2
    tail -n 5 <<<"$error" >&2
    exit 1
  fi
  sleep 5
done

for topic in $TOPICS; do
  for name in "$topic" "$topic.dlq"; do
    config=(--config "min.insync.replicas=$MIN_INSYNC_REPLICAS")
    for compacted in $COMPACTED_TOPICS; do
      if [[ "$name" == "$compacted" ]]; then
        config+=(--config cleanup.policy=compact)
      fi
    done
    topics --create --if-not-exists \
      --topic "$name" --partitions "$PARTITIONS" --replication-factor "$REPLICATION_FACTOR" \
      "${config[@]}"
  done
done
topics --describe --exclude-internal
