#!/usr/bin/env bash
# Retention under load (issue 17): drops a month of history while callbacks
# stream in, and compares the stream with a stream of the same rate without
# retention, in the same run.
#
# Prefills a database of its own with DAYS days of history (MESSAGES
# messages, 3 events each, spread evenly; prefill.sql), starts ingest and
# the worker (release build) on it, then twice sends an open-loop stream of
# RATE callbacks/s for SECS seconds through ingest and checks every one is
# stored: the first stream alone (the baseline), the second with
# `worker retention` (WORKER_RETENTION_DAYS=2) run 5 s into it. Reports the
# retention run's wall time and days dropped, and for both streams the
# answer latency and the callback-to-row lag (p99 and max): a write blocked
# by the drop would show as lag. Writes the "Retention under load" section
# of BENCHMARKS.md (bench/run.sh keeps it) and prints it.
#
#   bench/growth/retention.sh            # DAYS=33 MESSAGES=500000 RATE=500 SECS=20
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target-bench}
BIN=$CARGO_TARGET_DIR/release
DAYS=${DAYS:-33}
MESSAGES=${MESSAGES:-500000}
RATE=${RATE:-500}
SECS=${SECS:-20}
PG="-X -q -h 127.0.0.1 -U postgres"
ID=$(od -An -N4 -tx4 /dev/urandom | tr -d ' \n')
DB=twilio_status_retention_$ID
URL=postgres://postgres@127.0.0.1:5432/$DB
WORK=$CARGO_TARGET_DIR/retention-$ID
PREFIX=retention.$ID
TOKEN=retention-$ID
INGEST_PORT=18092
WORKER_PORT=18093
mkdir -p "$WORK"
say() { printf '[retention %4ds] %s\n' "$SECONDS" "$*" >&2; }
INGEST_PID=""
WORKER_PID=""
cleanup() {
  local rc=$?
  set +e
  for pid in "$WORKER_PID" "$INGEST_PID"; do [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null && wait "$pid"; done
  "$BIN/loadgen" delete-topology --prefix "$PREFIX" >/dev/null 2>&1
  psql $PG -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1
  say "logs and JSON in $WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
wait_ready() {
  for _ in $(seq 1 300); do curl -fsS -o /dev/null --max-time 1 "$1/readyz" 2>/dev/null && return 0; sleep 0.2; done
  return 1
}

cargo build --quiet --release -p ingest -p worker -p loadgen
psql $PG -d postgres -c "CREATE DATABASE $DB"
DATABASE_URL=$URL "$BIN/worker" migrate >"$WORK/migrate.log" 2>&1
spread=$(awk -v d="$DAYS" -v m="$MESSAGES" 'BEGIN { printf "%.4f", d * 86400 / m }')
say "prefilling $MESSAGES messages over $DAYS days"
for ((first = 1; first <= MESSAGES; first += 250000)); do
  last=$((first + 249999 < MESSAGES ? first + 249999 : MESSAGES))
  psql $PG -d "$DB" -v first="$first" -v last="$last" -v newest="$MESSAGES" -v spread_s="$spread" \
    -f bench/growth/prefill.sql >/dev/null
done
psql $PG -d "$DB" -c "VACUUM ANALYZE"
before=$(psql $PG -d "$DB" -At -c "SELECT count(*) FROM message_status_events")

env -u OTEL_EXPORTER_OTLP_ENDPOINT -u PUBLIC_BASE_URL TWILIO_AUTH_TOKEN="$TOKEN" \
  INGEST_ADDR="127.0.0.1:$INGEST_PORT" AMQP_TOPOLOGY_PREFIX="$PREFIX" INGEST_SPOOL_DIR="$WORK/spool" \
  LOG_FORMAT=json RUST_LOG=warn "$BIN/ingest" >>"$WORK/ingest.log" 2>&1 &
INGEST_PID=$!
env -u OTEL_EXPORTER_OTLP_ENDPOINT DATABASE_URL="$URL" AMQP_TOPOLOGY_PREFIX="$PREFIX" \
  WORKER_ADDR="127.0.0.1:$WORKER_PORT" WORKER_AUTO_MIGRATE=false WORKER_RETENTION_DAYS=0 \
  LOG_FORMAT=json RUST_LOG=warn "$BIN/worker" >>"$WORK/worker.log" 2>&1 &
WORKER_PID=$!
wait_ready "http://127.0.0.1:$INGEST_PORT" && wait_ready "http://127.0.0.1:$WORKER_PORT"

stream() { # name
  "$BIN/loadgen" run --url "http://127.0.0.1:$INGEST_PORT/twilio/status" --token "$TOKEN" \
    --rate "$RATE" --duration "$SECS" --database-url "$URL" --json >"$WORK/$1.json"
}
say "stream without retention (baseline)"
stream baseline
say "stream with a retention run 5 s in"
stream during &
STREAM=$!
sleep 5
started=$(date +%s.%N)
DATABASE_URL=$URL WORKER_RETENTION_DAYS=2 LOG_FORMAT=json RUST_LOG=warn \
  "$BIN/worker" retention >"$WORK/dropped.jsonl" 2>"$WORK/retention.log"
took=$(awk -v s="$started" -v e="$(date +%s.%N)" 'BEGIN { printf "%.2f", e - s }')
wait "$STREAM"
after=$(psql $PG -d "$DB" -At -c "SELECT count(*) FROM message_status_events")
kept_ok=$(psql $PG -d "$DB" -At -c "SELECT CASE WHEN count(*) = 0 THEN 'yes' ELSE 'no' END FROM messages m
  WHERE m.first_seen_at >= now() - interval '2 days' AND NOT EXISTS (
    SELECT 1 FROM message_status_events e WHERE e.message_sid = m.message_sid
      AND e.received_at BETWEEN m.first_seen_at AND m.last_seen_at)")

j() { jq -r "$2" "$WORK/$1.json"; }
{
echo "<!-- retention: written by bench/growth/retention.sh, kept by bench/run.sh -->"
echo "## Retention under load"
echo
echo "$(date -u +%Y-%m-%d), $(git rev-parse --short HEAD): $before events over $DAYS days; \`worker retention\` with 2 days kept dropped $(wc -l <"$WORK/dropped.jsonl") days in $(grep -oP 'in \K[0-9]+(?= ms)' "$WORK/retention.log") ms ($took s for the whole process, starting and connecting included) while $RATE callbacks/s streamed in; $after events left; every message first seen in the last 2 days still has its history: $kept_ok."
echo
echo "| open loop, $RATE/s for $SECS s | accepted / sent, unexpected answers | stored as expected | answer ms p99 / max | callback-to-row lag ms p99 / max |"
echo "|---|---|---|---|---|"
for run in baseline during; do
  echo "| $([ $run = baseline ] && echo "alone (baseline)" || echo "with the retention run") | $(j $run .accepted) / $(j $run .requests), $(j $run .unexpected_answers) | $(j $run .persistence.rows_match) | $(j $run .latency_ms.p99) / $(j $run .latency_ms.max) | $(j $run .persistence.lag_ms.p99) / $(j $run .persistence.lag_ms.max) |"
done
echo "<!-- /retention -->"
} >"$WORK/retention.md"
bench/replace-section.sh retention "$WORK/retention.md" "$PWD/BENCHMARKS.md"
cat "$WORK/retention.md"
