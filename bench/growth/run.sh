#!/usr/bin/env bash
# How the worker and the read API fare as the event history grows (issue 17).
#
# For each size (in messages, 3 events each on average; 0 is the empty
# baseline, measured in the same run), prefills a database of its own with
# realistic lifecycles in SQL (bench/growth/prefill.sql, 250,000 messages a
# transaction, each spanning the 3.5 hours back from now at 20 messages a
# second: the whole history lands in today's partition, the worst case, with
# every insert going into an index as large as the history),
# then, with ingest and the worker (release build) on it:
#   - drain: BACKLOG callbacks queued with the worker stopped, then the
#     worker's rate (rows / persisted_at span, as bench/run.sh measures it),
#     ROUNDS times (the mean is compared);
#   - read: GET /messages/{sid} for messages sampled from the history,
#     READS requests, READ_CONCURRENCY in flight (loadgen read);
#   - the worker's store statement alone (pgbench, 2 clients, 256-row
#     batches (bench/store-statement/batch.sql) with random message SIDs, as
#     Twilio's are; loadgen's SIDs share a prefix per run, which keeps its
#     inserts in one corner of the indexes), ROUNDS × STATEMENT_SECS;
#   - bytes per event (every partition: table + indexes + TOAST);
#   - EXPLAIN (ANALYZE) of the read and operations queries.
# Writes the "Growth" section of BENCHMARKS.md (bench/run.sh keeps it) and
# the raw files to target-bench/growth-<id>/.
#
#   bench/growth/run.sh 0 3333333 10000000     # 0, 10M and 30M events
#
# Disk: about 640 bytes an event (30M events ≈ 19 GB). Prefilling 10M
# messages takes about 15 minutes. GROWTH_KEEP=1 keeps the databases
# (twilio_status_growth_<size>) and reuses them on the next run. Not part
# of CI. Environment: BACKLOG (30000), ROUNDS (2), READS (10000),
# READ_CONCURRENCY (2, one per core here), STATEMENT_SECS (20), CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
[ $# -gt 0 ] || { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 2; }
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target-bench}
BIN=$CARGO_TARGET_DIR/release
PG_SERVER=postgres://postgres@127.0.0.1:5432
PG="-X -q -h 127.0.0.1 -U postgres"
export AMQP_URL=${AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}
BACKLOG=${BACKLOG:-30000}
ROUNDS=${ROUNDS:-2}
READS=${READS:-10000}
READ_CONCURRENCY=${READ_CONCURRENCY:-2}
STATEMENT_SECS=${STATEMENT_SECS:-20}
CHUNK=250000
INGEST_PORT=18090
WORKER_PORT=18091
ID=$(od -An -N4 -tx4 /dev/urandom | tr -d ' \n')
WORK=$CARGO_TARGET_DIR/growth-$ID
PREFIX=growth.$ID
TOKEN=growth-$ID
mkdir -p "$WORK"
say() { printf '[growth %4ds] %s\n' "$SECONDS" "$*" >&2; }
j() { jq -r "$2" "$WORK/$1.json"; }

INGEST_PID=""
WORKER_PID=""
stop() { # pid
  [ -n "$1" ] || return 0
  kill -TERM "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}
cleanup() {
  local rc=$?
  set +e
  stop "$WORKER_PID"
  stop "$INGEST_PID"
  "$BIN/loadgen" delete-topology --prefix "$PREFIX" >/dev/null 2>&1
  if [ "${GROWTH_KEEP:-0}" != 1 ]; then
    for size in "$@"; do
      psql $PG -d postgres -c "DROP DATABASE IF EXISTS twilio_status_growth_$size WITH (FORCE)" >/dev/null 2>&1
    done
  fi
  say "logs and JSON in $WORK"
  exit "$rc"
}
trap 'cleanup "$@"' EXIT
trap 'exit 130' INT TERM

# wait_ready, start_ingest, start_worker.
source "$ROOT/bench/services.sh"

say "building (release) into $CARGO_TARGET_DIR"
cargo build --quiet --release -p ingest -p worker -p loadgen --example store_statement
# Random SIDs, one of a million: Twilio's are random.
"$BIN/examples/store_statement" |
  python3 bench/store-statement/extract.py "'SM' || md5(floor(random() * 1000000)::text)" >"$WORK/statement.sql"
start_ingest

ROWS=()
EXPLAINS=()
BASE_DRAIN=""
BASE_STATEMENT=""
BASE_P99=""
for size in "$@"; do
  db=twilio_status_growth_$size
  url=$PG_SERVER/$db
  if [ "${GROWTH_KEEP:-0}" = 1 ] && psql $PG -d "$db" -c "SELECT 1" >/dev/null 2>&1; then
    say "$db: reusing it"
    prefill_s="(reused)"
  else
    say "$db: prefilling $size messages"
    psql $PG -d postgres -c "SET client_min_messages = warning" \
      -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
    DATABASE_URL=$url "$BIN/worker" migrate >>"$WORK/migrate.log" 2>&1
    started=$SECONDS
    for ((first = 1; first <= size; first += CHUNK)); do
      last=$((first + CHUNK - 1 < size ? first + CHUNK - 1 : size))
      psql $PG -d "$db" -v first="$first" -v last="$last" -v spread_s=0.05 \
        -f bench/growth/prefill.sql >/dev/null
    done
    psql $PG -d "$db" -c "VACUUM ANALYZE"
    prefill_s=$((SECONDS - started))
  fi
  read -r events bytes < <(psql $PG -d "$db" -At -F ' ' -c "
    SELECT (SELECT count(*) FROM message_status_events),
           (SELECT COALESCE(sum(pg_total_relation_size(inhrelid)), 0) FROM pg_inherits
            WHERE inhparent = 'message_status_events'::regclass)")
  per_event=$(awk -v b="$bytes" -v e="$events" 'BEGIN { if (e > 0) printf "%.0f", b / e; else printf "–" }')
  gb=$(awk -v b="$bytes" 'BEGIN { printf "%.1f", b / 1e9 }')

  rates=()
  matched=true
  for round in $(seq 1 "$ROUNDS"); do
    say "$db: $events events; backlog of $BACKLOG callbacks with the worker stopped (round $round)"
    "$BIN/loadgen" run --url "http://127.0.0.1:$INGEST_PORT/twilio/status" --token "$TOKEN" \
      --concurrency 32 --requests "$BACKLOG" --json >"$WORK/backlog-$size-$round.json"
    start_worker "$url"
    "$BIN/loadgen" check --database-url "$url" --run-id "$(j "backlog-$size-$round" .run_id)" \
      --expect-events "$(j "backlog-$size-$round" .unique_accepted_events)" \
      --expect-messages "$(j "backlog-$size-$round" .accepted_messages)" --json >"$WORK/drain-$size-$round.json" ||
      say "drain into $db: stored rows do not match the accepted callbacks"
    [ "$(j "drain-$size-$round" .rows_match)" = true ] || matched=false
    rates+=("$(j "drain-$size-$round" .persisted_per_s)")
    [ "$round" = "$ROUNDS" ] || { stop "$WORKER_PID"; WORKER_PID=""; }
  done
  drain=$(printf '%s\n' "${rates[@]}" | awk '{ s += $1 } END { printf "%.0f", s / NR }')
  each=$(printf '%s\n' "${rates[@]}" | awk '{ printf "%s%\047.0f", (NR > 1 ? " / " : ""), $1 }')
  say "$db: drained at $drain events/s; reading"
  "$BIN/loadgen" read --url "http://127.0.0.1:$WORKER_PORT" --database-url "$url" \
    --requests "$READS" --concurrency "$READ_CONCURRENCY" --json >"$WORK/read-$size.json"
  stop "$WORKER_PID"; WORKER_PID=""
  p50=$(j "read-$size" .latency_ms.p50); p99=$(j "read-$size" .latency_ms.p99)
  tps=()
  for round in $(seq 1 "$ROUNDS"); do
    tps+=("$(pgbench -h 127.0.0.1 -U postgres -n -c 2 -j 2 -T "$STATEMENT_SECS" -f "$WORK/statement.sql" "$db" 2>/dev/null |
      grep -oP 'tps = \K[0-9.]+' | head -1)")
  done
  statement=$(printf '%s\n' "${tps[@]}" | awk '{ s += $1 } END { printf "%.1f", s / NR }')
  statement_each=$(printf '%s\n' "${tps[@]}" | awk '{ printf "%s%.1f", (NR > 1 ? " / " : ""), $1 }')
  say "$db: store statement with random SIDs: $statement_each batches/s"
  [ -n "$BASE_DRAIN" ] || { BASE_DRAIN=$drain; BASE_P99=$p99; BASE_STATEMENT=$statement; }
  ROWS+=("$(awk -v m="$size" -v e="$events" -v gb="$gb" -v pe="$per_event" -v d="$drain" -v each="$each" -v bd="$BASE_DRAIN" \
    -v p50="$p50" -v p99="$p99" -v ok="$matched" -v bad="$(j "read-$size" .not_ok)" -v pf="$prefill_s" \
    -v st="$statement" -v ste="$statement_each" -v bst="$BASE_STATEMENT" \
    'BEGIN { printf "| %\047d | %\047d | %s GB | %s | %s (mean %\047.0f) | %.2f | %s (mean %.1f) | %.2f | %.2f / %.2f | %s, %s | %s |", m, e, gb, pe, each, d, d / bd, ste, st, st / bst, p50, p99, ok, bad, pf }')")

  if [ "$size" = "${*: -1}" ]; then
    sid=$(psql $PG -d "$db" -At -c "SELECT message_sid FROM messages ORDER BY random() LIMIT 1")
    explain() {
      EXPLAINS+=("" "$1 (at $(printf "%'d" "$events") events):" "" '```')
      while IFS= read -r line; do EXPLAINS+=("$line"); done < <(psql $PG -d "$db" -At -c "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, SUMMARY ON) $2")
      EXPLAINS+=('```')
    }
    bounds=$(psql $PG -d "$db" -At -F ' ' -c "SELECT first_seen_at, last_seen_at FROM messages WHERE message_sid = '$sid'" |
      awk '{ printf "%s %s|%s %s", $1, $2, $3, $4 }')
    explain "GET /messages/{sid}: the message" "SELECT * FROM messages WHERE message_sid = '$sid'"
    explain "GET /messages/{sid}: its history, within the message's first and last sighting" \
      "SELECT * FROM message_status_events WHERE message_sid = '$sid'
         AND received_at BETWEEN '${bounds%|*}' AND '${bounds#*|}' ORDER BY received_at, persisted_at, dedup_key"
    explain "stuck in sent for 12 hours" \
      "SELECT message_sid FROM messages WHERE status = 'sent' AND status_precedence >= 0
         AND last_seen_at < now() - interval '12 hours' ORDER BY last_seen_at LIMIT 100"
    explain "contradictions" "SELECT message_sid FROM messages WHERE conflicting_outcomes LIMIT 100"
  fi
done

SECTION=$WORK/growth.md
{
  echo "<!-- growth: written by bench/growth/run.sh, kept by bench/run.sh -->"
  echo "## Growth: the history at size"
  echo
  echo "$(date -u +%Y-%m-%d), $(nproc) cores, $(git rev-parse --short HEAD). Each size is a database of its own prefilled in SQL with realistic lifecycles (3 events a message, Twilio's parameters as the payload), 250,000 messages at a time each spanning the 3.5 hours back from now: the whole history sits in today's partition, the worst case for partitioning, so every write goes into an index as large as the history. Then, in the same run for every size: $ROUNDS times, $BACKLOG callbacks queued with the worker stopped and drained (rows / persisted_at span; the ratio is of the means), and $READS \`GET /messages/{sid}\` for 2,000 messages sampled at random from the whole history, $READ_CONCURRENCY in flight. The store statement is the worker's own (\`cargo run -p worker --example store_statement\`) run by pgbench, $ROUNDS × $STATEMENT_SECS s, 2 clients, 256-row batches over a million random message SIDs: loadgen's SIDs share a prefix per run, so its inserts stay in one corner of every index keyed by SID, while Twilio's are random. Ratios are to the empty database."
  echo
  echo "| messages | events | history on disk | bytes/event | drain events/s, each round | vs empty | store statement, random SIDs, batches/s | vs empty | read ms p50 / p99 | rows match, reads not 200 | prefill s |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|"
  for row in "${ROWS[@]}"; do echo "$row"; done
  for line in "${EXPLAINS[@]}"; do echo "$line"; done
  echo "<!-- /growth -->"
} >"$SECTION"

bench/replace-section.sh growth "$SECTION" "$ROOT/BENCHMARKS.md"
OUT=$ROOT/BENCHMARKS.md
say "wrote the growth section of $OUT"
