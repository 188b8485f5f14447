#!/usr/bin/env bash
# Resident memory and CPU time of each stage, each its own process, over a long replay through a
# real Kafka.
#
# Usage: scripts/bench/stage-memory.sh [CASCADES] [BINARY]
#   CASCADES  synthetic cascades to replay (default 40000: about 5 M tweets)
#   BINARY    the tweetoscope binary (default target/release/tweetoscope; build it with
#             `cargo build --release`)
# Environment:
#   BROKERS   bootstrap address (default: the broker of scripts/kafka.sh, from
#             $KAFKA_STATE_DIR/bootstrap; start one with `scripts/kafka.sh start`)
#   OUT       output directory (default: a new directory under /tmp)
#
# Starts the collector, the estimator, the predictor, the learner, the monitor, the dashboard
# (no Alertmanager: it logs its alerts) and the logger (reading every stage's log records from the
# logs topic, which the stages write to) as separate processes on topics and groups of their own
# (a fresh suffix per run, so nothing of an earlier run is read), then the generator at full
# speed. Samples every process's VmRSS every 2 s into
# $OUT/rss.tsv (seconds, stage, MiB) until the generator has finished and no stage has lag left
# (the sum of tweetoscope_consumer_lag_messages on each stage's metrics endpoint is 0 twice in a
# row), then prints each stage's RSS at 20, 40, 60, 80 and 100 % of the run and its peak, its CPU
# time (user + system, from /proc) and the messages it read (tweetoscope_messages_consumed_total)
# into $OUT/cpu.tsv and as CPU seconds per million messages, and stops the stages.
set -euo pipefail
cd "$(dirname "$0")/../.."
cascades=${1:-40000}
binary=${2:-target/release/tweetoscope}
[[ -x "$binary" ]] || {
  echo "stage-memory: $binary not found: run cargo build --release first" >&2
  exit 1
}
state=${KAFKA_STATE_DIR:-$PWD/.cache/kafka/state}
brokers=${BROKERS:-$(cat "$state/bootstrap" 2>/dev/null || true)}
[[ -n "$brokers" ]] || {
  echo "stage-memory: no broker: set BROKERS or start one with scripts/kafka.sh start" >&2
  exit 1
}
suffix="mem-$$-$(date +%s)"
out=${OUT:-$(mktemp -d "/tmp/tweetoscope-stage-memory.XXXXXX")}
mkdir -p "$out"

common=(--brokers "$brokers" --partitions 4 --group-prefix "tweetoscope-$suffix" --log info
  --log-format text)
for flag in tweets series properties samples models alerts stats logs predictor-state \
  generator-progress; do
  common+=("--$flag-topic" "$flag-$suffix")
done

declare -A pids ports
port=19300
stages=(collector estimator predictor learner monitor dashboard logger)
cleanup() {
  for stage in "${!pids[@]}"; do
    kill -TERM "${pids[$stage]}" 2>/dev/null || true
  done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

for stage in "${stages[@]}"; do
  port=$((port + 1))
  ports[$stage]=$port
  "$binary" "$stage" "${common[@]}" --metrics-addr "127.0.0.1:$port" \
    >"$out/$stage.log" 2>&1 &
  pids[$stage]=$!
done
# Every consumer group has joined before the first tweet: otherwise the first stage to join takes
# every partition and the others wait for a rebalance.
sleep 15
"$binary" generator "${common[@]}" --cascades "$cascades" --speed-up 0 --metrics-addr off \
  >"$out/generator.log" 2>&1 &
generator=$!
echo "stage-memory: $cascades cascades through $brokers; logs and samples in $out" >&2

lag() {
  local total=0 value
  for stage in "${stages[@]}"; do
    value=$(curl -sf "http://127.0.0.1:${ports[$stage]}/metrics" |
      awk '/^tweetoscope_consumer_lag_messages/ {s += $2} END {print s + 0}') || return 1
    total=$((total + ${value%.*}))
  done
  echo "$total"
}

printf 'seconds\tstage\trss_mib\n' >"$out/rss.tsv"
started=$SECONDS
idle=0
while true; do
  for stage in "${stages[@]}"; do
    kill -0 "${pids[$stage]}" 2>/dev/null || {
      echo "stage-memory: the $stage stopped; see $out/$stage.log" >&2
      exit 1
    }
    mib=$(awk '/^VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/${pids[$stage]}/status")
    printf '%d\t%s\t%s\n' $((SECONDS - started)) "$stage" "$mib" >>"$out/rss.tsv"
  done
  if ! kill -0 "$generator" 2>/dev/null; then
    if [[ "$(lag || echo 1)" == 0 ]]; then
      idle=$((idle + 1))
      ((idle < 2)) || break
    else
      idle=0
    fi
  fi
  sleep 2
done
wait "$generator" || {
  echo "stage-memory: the generator failed; see $out/generator.log" >&2
  exit 1
}
tail -n 3 "$out/generator.log" >&2
echo "stage-memory: done after $((SECONDS - started)) s" >&2
ticks=$(getconf CLK_TCK)
printf 'stage\tcpu_seconds\tmessages\n' >"$out/cpu.tsv"
for stage in "${stages[@]}"; do
  cpu=$(awk -v hz="$ticks" '{printf "%.2f", ($14 + $15) / hz}' "/proc/${pids[$stage]}/stat")
  messages=$(curl -sf "http://127.0.0.1:${ports[$stage]}/metrics" |
    awk '/^tweetoscope_messages_consumed_total/ {s += $2} END {printf "%d", s}')
  printf '%s\t%s\t%s\n' "$stage" "$cpu" "$messages" >>"$out/cpu.tsv"
done
python3 - "$out/rss.tsv" <<'EOF'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
end = max(int(r["seconds"]) for r in rows)
print(f"{'stage':<10} " + " ".join(f"{p:>7}%" for p in (20, 40, 60, 80, 100)) + "    peak  (MiB)")
for stage in dict.fromkeys(r["stage"] for r in rows):
    series = [(int(r["seconds"]), float(r["rss_mib"])) for r in rows if r["stage"] == stage]
    at = [next(v for s, v in series if s >= share * end) for share in (0.2, 0.4, 0.6, 0.8, 1.0)]
    peak = max(v for _, v in series)
    print(f"{stage:<10} " + " ".join(f"{v:>8.1f}" for v in at) + f" {peak:>7.1f}")
EOF
python3 - "$out/cpu.tsv" <<'EOF'
import csv, sys
print(f"{'stage':<10} {'messages':>10} {'CPU s':>8} {'CPU s per 1M messages':>22}")
for r in csv.DictReader(open(sys.argv[1]), delimiter="\t"):
    n, cpu = int(r["messages"]), float(r["cpu_seconds"])
    per = f"{cpu * 1e6 / n:.1f}" if n else "-"
    print(f"{r['stage']:<10} {n:>10} {cpu:>8.2f} {per:>22}")
EOF
