#!/usr/bin/env bash
# Creates every topic of the pipeline and its dead-letter topic (<topic>.dlq), with PARTITIONS
# partitions and REPLICATION_FACTOR replicas; the topics of COMPACTED_TOPICS get
# cleanup.policy=compact. Existing topics are left as they are, so running it again is harmless.
# Run by the kafka-topics Job with the Kafka image's tools (/opt/kafka/bin).
set -euo pipefail

: "${BOOTSTRAP:?BOOTSTRAP (host:port) is required}"
: "${TOPICS:?TOPICS (space-separated names) is required}"
PARTITIONS=${PARTITIONS:-4}
REPLICATION_FACTOR=${REPLICATION_FACTOR:-1}
COMPACTED_TOPICS=${COMPACTED_TOPICS:-}
MIN_INSYNC_REPLICAS=${MIN_INSYNC_REPLICAS:-1}
bin=${KAFKA_BIN:-/opt/kafka/bin}

echo "waiting for Kafka at $BOOTSTRAP"
for attempt in $(seq 1 60); do
  if "$bin/kafka-topics.sh" --bootstrap-server "$BOOTSTRAP" --list >/dev/null 2>&1; then
    break
  fi
  if ((attempt == 60)); then
    echo "Kafka at $BOOTSTRAP did not answer" >&2
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
    "$bin/kafka-topics.sh" --bootstrap-server "$BOOTSTRAP" --create --if-not-exists \
      --topic "$name" --partitions "$PARTITIONS" --replication-factor "$REPLICATION_FACTOR" \
      "${config[@]}"
  done
done
"$bin/kafka-topics.sh" --bootstrap-server "$BOOTSTRAP" --describe --exclude-internal
