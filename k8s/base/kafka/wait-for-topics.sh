#!/usr/bin/env bash
# Init container of the stages: waits until every topic of TOPICS and its dead-letter topic exist,
# so that no stage starts (and, e.g., assigns itself the partitions of a topic that does not exist
# yet) before the kafka-topics Job is done. COMMAND_CONFIG: as in create-topics.sh.
set -euo pipefail

: "${BOOTSTRAP:?BOOTSTRAP (host:port) is required}"
: "${TOPICS:?TOPICS (space-separated names) is required}"
bin=${KAFKA_BIN:-/opt/kafka/bin}
client=()
if [[ -n "${COMMAND_CONFIG:-}" ]]; then
  if [[ ! -r "$COMMAND_CONFIG" ]]; then
    echo "COMMAND_CONFIG=$COMMAND_CONFIG: no such readable file (the client properties of a secured Kafka)" >&2
    exit 2
  fi
  client=(--command-config "$COMMAND_CONFIG")
fi

while true; do
  existing=$("$bin/kafka-topics.sh" --bootstrap-server "$BOOTSTRAP" "${client[@]}" --list 2>/dev/null || true)
  missing=()
  for topic in $TOPICS; do
    for name in "$topic" "$topic.dlq"; do
      grep -qxF "$name" <<<"$existing" || missing+=("$name")
    done
  done
  if ((${#missing[@]} == 0)); then
    echo "every topic exists"
    exit 0
  fi
  echo "waiting for topics: ${missing[*]}"
  sleep 5
done
