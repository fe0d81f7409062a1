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
#   - search: the console's ten searches (GET /messages?..., issue 28),
#     SEARCHES requests each, SEARCH_CONCURRENCY in flight (loadgen search,
#     recipients, sender and account sampled from the history), then, with
#     the worker stopped and after the statement, the search migration's six
#     indexes dropped and built again on the prefilled table, each timed;
#   - bytes per event (every partition: table + indexes + TOAST);
#   - EXPLAIN (ANALYZE) of the read and operations queries, and of each
#     search (the SQL the worker runs, written out) at the last size.
# Writes the "Growth" section of GROWTH_REPORT (BENCHMARKS.md; bench/run.sh
# keeps it) and the raw files to target-bench/growth-<id>/.
#
#   bench/growth/run.sh 0 3333333 10000000     # 0, 10M and 30M events
#   GROWTH_PHASES=search bench/growth/run.sh 10000000   # the searches only
#
# GROWTH_PHASES (drain,read,statement,search) chooses the phases; a skipped
# one shows "–" in the tables.
# Disk: about 640 bytes an event (30M events ≈ 19 GB). Prefilling 10M
# messages takes about 15 minutes. GROWTH_KEEP=1 keeps the databases
# (twilio_status_growth_<size>) and reuses them on the next run. Not part
# of CI. Environment: BACKLOG (30000), ROUNDS (2), READS (10000),
# READ_CONCURRENCY (2, one per core here), STATEMENT_SECS (20), SEARCHES
# (500), SEARCH_CONCURRENCY (2), GROWTH_REPORT, CARGO_TARGET_DIR.
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
SEARCHES=${SEARCHES:-500}
SEARCH_CONCURRENCY=${SEARCH_CONCURRENCY:-2}
GROWTH_PHASES=${GROWTH_PHASES:-drain,read,statement,search}
REPORT=${GROWTH_REPORT:-$ROOT/BENCHMARKS.md}
for p in ${GROWTH_PHASES//,/ }; do
  case $p in drain | read | statement | search) ;;
    *) echo "GROWTH_PHASES: unknown phase $p (drain, read, statement, search)" >&2; exit 2 ;;
  esac
done
phase() { [[ ",$GROWTH_PHASES," == *",$1,"* ]]; }
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
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b == 0) printf "–"; else printf "%.2f", a / b }'; }

# The console's searches (issue 28), as `loadgen search` queries, and what
# each is. Bench recipients have about one message each (8M addresses), so
# a recipient's page two exists only with pages of one.
SEARCH_QUERIES=(
  "to={to}"
  "to={to}&limit=1&cursor={cursor}"
  "to={to}&status=delivered"
  "from={from}"
  "status=failed&since=24h"
  "status=undelivered&error_code=30003&since=24h"
  "error_code=30007"
  "account_sid={account}&status=failed"
  "since=1h"
  "from={from}&status=undelivered&since=7d"
)
SEARCH_LABELS=(
  "1. a recipient (the address box), page one"
  "2. the same, page two (pages of one)"
  "3. a recipient, delivered"
  "4. the sender (every message)"
  "5. failed, last 24 h"
  "6. undelivered 30003, last 24 h"
  "7. error 30007, any time"
  "8. the account, failed"
  "9. last hour, no filter"
  "10. the sender, undelivered, last 7 days"
)
# The search migration's CREATE INDEX statements (its UP), one a line.
SEARCH_INDEXES=$(awk '/^const UP/ { up = 1 } /^const DOWN/ { up = 0 }
  up && /^CREATE INDEX/ { s = $0; while (s !~ /;$/ && (getline line) > 0) s = s " " line; print s }' \
  migrations/src/m20261208_000001_message_search.rs)
declare -A SEARCH_CELL
SEARCH_SIZES=()
SEARCH_ROWS_AT_LAST=()

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
cargo build --quiet --release -p ingest -p worker -p loadgen --bins --example store_statement
# Random SIDs, one of a million: Twilio's are random.
"$BIN/examples/store_statement" |
  python3 bench/store-statement/extract.py "'SM' || md5(floor(random() * 1000000)::text)" >"$WORK/statement.sql"
if phase drain; then start_ingest; fi

ROWS=()
EXPLAINS=()
BASE_DRAIN=""
BASE_STATEMENT=""
for size in "$@"; do
  db=twilio_status_growth_$size
  url=$PG_SERVER/$db
  if [ "${GROWTH_KEEP:-0}" = 1 ] && psql $PG -d "$db" -c "SELECT 1" >/dev/null 2>&1; then
    say "$db: reusing it (migrating it first)"
    DATABASE_URL=$url "$BIN/worker" migrate >>"$WORK/migrate.log" 2>&1
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

  drain_col="–" vs_drain="–" matched="–"
  if phase drain; then
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
    say "$db: drained at $drain events/s"
    [ -n "$BASE_DRAIN" ] || BASE_DRAIN=$drain
    drain_col=$(awk -v each="$each" -v d="$drain" 'BEGIN { printf "%s (mean %\047.0f)", each, d }')
    vs_drain=$(ratio "$drain" "$BASE_DRAIN")
  fi
  if { phase read || phase search; } && [ -z "$WORKER_PID" ]; then
    start_worker "$url"
  fi

  read_col="–" not_ok="–"
  if phase read; then
    say "$db: reading"
    "$BIN/loadgen" read --url "http://127.0.0.1:$WORKER_PORT" --database-url "$url" \
      --requests "$READS" --concurrency "$READ_CONCURRENCY" --json >"$WORK/read-$size.json"
    p50=$(j "read-$size" .latency_ms.p50); p99=$(j "read-$size" .latency_ms.p99)
    read_col=$(awk -v a="$p50" -v b="$p99" 'BEGIN { printf "%.2f / %.2f", a, b }')
    not_ok=$(j "read-$size" .not_ok)
  fi

  searched=false
  if phase search && [ "$size" -gt 0 ]; then
    say "$db: searching (${#SEARCH_QUERIES[@]} queries × $SEARCHES)"
    args=()
    for query in "${SEARCH_QUERIES[@]}"; do args+=(--query "$query"); done
    "$BIN/loadgen" search --url "http://127.0.0.1:$WORKER_PORT" --database-url "$url" \
      --requests "$SEARCHES" --concurrency "$SEARCH_CONCURRENCY" --json "${args[@]}" >"$WORK/search-$size.json" ||
      say "search in $db: a query was not answered 200 every time, or had nothing to ask"
    if jq -e .queries "$WORK/search-$size.json" >/dev/null 2>&1; then
      searched=true
      SEARCH_SIZES+=("$size")
      SEARCH_ROWS_AT_LAST=()
      i=0
      while IFS=$'\t' read -r requests p50 p99 bad rows values without; do
        SEARCH_CELL[$i,$size]=$(awk -v n="$requests" -v a="$p50" -v b="$p99" -v bad="$bad" 'BEGIN {
          if (n == 0) printf "–"; else printf "%.2f / %.2f%s", a, b, (bad > 0 ? " (" bad " not 200)" : "") }')
        rows=$(awk -v r="$rows" 'BEGIN { printf "%.1f", r }')
        [ "$without" = none ] || rows+=" (page two for $values of $((values + without)) sampled)"
        SEARCH_ROWS_AT_LAST+=("$rows")
        i=$((i + 1))
      done < <(jq -r '.queries[] | [.requests, .latency_ms.p50, .latency_ms.p99, .not_ok, .mean_rows,
        .values, (.without_second_page // "none")] | @tsv' "$WORK/search-$size.json")
    fi
  fi
  stop "$WORKER_PID"; WORKER_PID=""

  statement_col="–" vs_statement="–"
  if phase statement; then
    tps=()
    for round in $(seq 1 "$ROUNDS"); do
      tps+=("$(pgbench -h 127.0.0.1 -U postgres -n -c 2 -j 2 -T "$STATEMENT_SECS" -f "$WORK/statement.sql" "$db" 2>/dev/null |
        grep -oP 'tps = \K[0-9.]+' | head -1)")
    done
    statement=$(printf '%s\n' "${tps[@]}" | awk '{ s += $1 } END { printf "%.1f", s / NR }')
    statement_each=$(printf '%s\n' "${tps[@]}" | awk '{ printf "%s%.1f", (NR > 1 ? " / " : ""), $1 }')
    say "$db: store statement with random SIDs: $statement_each batches/s"
    [ -n "$BASE_STATEMENT" ] || BASE_STATEMENT=$statement
    statement_col="$statement_each (mean $statement)"
    vs_statement=$(ratio "$statement" "$BASE_STATEMENT")
  fi

  ROWS+=("$(awk -v m="$size" -v e="$events" -v gb="$gb" -v pe="$per_event" -v dc="$drain_col" -v vd="$vs_drain" \
    -v rc="$read_col" -v ok="$matched" -v bad="$not_ok" -v pf="$prefill_s" -v sc="$statement_col" -v vs="$vs_statement" \
    'BEGIN { printf "| %\047d | %\047d | %s GB | %s | %s | %s | %s | %s | %s | %s, %s | %s |", m, e, gb, pe, dc, vd, sc, vs, rc, ok, bad, pf }')")

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
    if [ "$searched" = true ]; then
      # The SQL the worker runs for each search (worker/src/search/query.rs),
      # for the sampled message's recipient, sender and account; page two
      # starts after the recipient's newest message (page one of one).
      IFS='|' read -r to from account < <(psql $PG -d "$db" -At -F '|' -c "
        SELECT to_address, from_address, account_sid FROM messages WHERE message_sid = '$sid'")
      IFS='|' read -r cursor_at cursor_sid < <(psql $PG -d "$db" -At -F '|' -c "
        SELECT first_seen_at, message_sid FROM messages WHERE to_address = '$to'
        ORDER BY first_seen_at DESC, message_sid DESC LIMIT 1")
      ago() { date -u -d "$1 ago" '+%Y-%m-%d %H:%M:%S.%6N+00'; }
      SEARCH_WHERE=(
        "to_address = '$to'"
        "to_address = '$to' AND (first_seen_at, message_sid) < ('$cursor_at'::timestamptz, '$cursor_sid')"
        "to_address = '$to' AND status = 'delivered'"
        "from_address = '$from'"
        "status = 'failed' AND first_seen_at >= '$(ago "24 hours")'"
        "status = 'undelivered' AND error_code = 30003 AND first_seen_at >= '$(ago "24 hours")'"
        "error_code = 30007"
        "status = 'failed' AND account_sid = '$account'"
        "first_seen_at >= '$(ago "1 hour")'"
        "from_address = '$from' AND status = 'undelivered' AND first_seen_at >= '$(ago "7 days")'"
      )
      for i in "${!SEARCH_QUERIES[@]}"; do
        # A page of 50 reads 51 rows; query 2's pages are of one.
        limit=51; [ "$i" != 1 ] || limit=2
        explain "search ${SEARCH_LABELS[$i]}, \`GET /messages?${SEARCH_QUERIES[$i]}\`" \
          "SELECT * FROM messages WHERE ${SEARCH_WHERE[$i]} ORDER BY first_seen_at DESC, message_sid DESC LIMIT $limit"
      done
    fi
  fi
  if [ "$searched" = true ]; then
    # Last: a rebuilt index is compact, which would flatter what ran before.
    say "$db: building the search indexes again, each timed"
    built=() total=0
    while IFS= read -r create; do
      name=$(awk '{ print $3 }' <<<"$create")
      # One transaction: an interrupted run leaves the index as it was.
      started=$(date +%s.%N)
      psql $PG -d "$db" -1 -c "DROP INDEX IF EXISTS $name" -c "$create" >/dev/null
      took=$(awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
      total=$(awk -v a="$total" -v b="$took" 'BEGIN { printf "%.1f", a + b }')
      short=${name#messages_}; short=${short%_idx}; built+=("${short%_search} $took")
    done <<<"$SEARCH_INDEXES"
    on_disk=$(psql $PG -d "$db" -At -c "SELECT pg_size_pretty(sum(pg_relation_size(indexrelid))) FROM pg_index
      JOIN pg_class ON pg_class.oid = indexrelid WHERE indrelid = 'messages'::regclass
      AND relname IN ($(awk '{ printf "%s\047%s\047", (NR > 1 ? ", " : ""), $3 }' <<<"$SEARCH_INDEXES"))")
    SEARCH_CELL[build,$size]="$total s ($(IFS=,; sed 's/,/, /g' <<<"${built[*]}")); $on_disk"
  fi

done

SECTION=$WORK/growth.md
{
  echo "<!-- growth: written by bench/growth/run.sh, kept by bench/run.sh -->"
  echo "## Growth: the history at size"
  echo
  echo "$(date -u +%Y-%m-%d), $(nproc) cores, $(git rev-parse --short HEAD). Each size is a database of its own prefilled in SQL with realistic lifecycles (3 events a message, Twilio's parameters as the payload), 250,000 messages at a time each spanning the 3.5 hours back from now: the whole history sits in today's partition, the worst case for partitioning, so every write goes into an index as large as the history. Then, in the same run for every size: $ROUNDS times, $BACKLOG callbacks queued with the worker stopped and drained (rows / persisted_at span; the ratio is of the means), and $READS \`GET /messages/{sid}\` for 2,000 messages sampled at random from the whole history, $READ_CONCURRENCY in flight. The store statement is the worker's own (\`cargo run -p worker --example store_statement\`) run by pgbench, $ROUNDS × $STATEMENT_SECS s, 2 clients, 256-row batches over a million random message SIDs: loadgen's SIDs share a prefix per run, so its inserts stay in one corner of every index keyed by SID, while Twilio's are random. Ratios are to the empty database.$([ "$GROWTH_PHASES" = drain,read,statement,search ] || echo " This run's phases: $GROWTH_PHASES; the others show –.")"
  echo
  echo "| messages | events | history on disk | bytes/event | drain events/s, each round | vs empty | store statement, random SIDs, batches/s | vs empty | read ms p50 / p99 | rows match, reads not 200 | prefill s |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|"
  for row in "${ROWS[@]}"; do echo "$row"; done
  if [ ${#SEARCH_SIZES[@]} -gt 0 ]; then
    echo
    echo "### Search at size"
    echo
    echo "The console's searches (issue 28: each p99 under 50 ms at 30M events), \`GET /messages?...\` with the worker on the same database, $SEARCHES requests each, $SEARCH_CONCURRENCY in flight (\`loadgen search\`): {to} is the recipient of a message sampled at random (1,000 of them, asked in turn after one untimed request on each connection), {from} and {account} the sender and the account of one (one each in the prefilled data: every message, the worst case); a page is 50 messages, and page two is asked with page one's \`next_cursor\`. Recipients here have about one message each (8 million addresses), so page two exists only with pages of one (the values that have one are asked). Then, with the worker stopped, the search migration's six indexes are dropped and built again on the prefilled table, each timed (what \`worker migrate\` adds to a deploy at that size; writes to \`messages\` wait meanwhile)."
    echo
    header="| search | " rule="|---|"
    for size in "${SEARCH_SIZES[@]}"; do
      header+=$(printf "ms p50 / p99, %'d messages | " "$size"); rule+="---|"
    done
    echo "${header}rows an answer, $(printf "%'d" "${SEARCH_SIZES[-1]}") messages |"
    echo "${rule}---|"
    for i in "${!SEARCH_QUERIES[@]}"; do
      row="| ${SEARCH_LABELS[$i]}: \`${SEARCH_QUERIES[$i]}\` | "
      for size in "${SEARCH_SIZES[@]}"; do row+="${SEARCH_CELL[$i,$size]:-–} | "; done
      echo "$row${SEARCH_ROWS_AT_LAST[$i]:-–} |"
    done
    row="| the six indexes built again: s (each); on disk | "
    for size in "${SEARCH_SIZES[@]}"; do row+="${SEARCH_CELL[build,$size]:-–} | "; done
    echo "$row |"
  fi
  for line in "${EXPLAINS[@]}"; do echo "$line"; done
  echo "<!-- /growth -->"
} >"$SECTION"

bench/replace-section.sh growth "$SECTION" "$REPORT"
say "wrote the growth section of $REPORT"
