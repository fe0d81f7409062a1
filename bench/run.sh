#!/usr/bin/env bash
# Benchmarks the pipeline on this machine and writes BENCHMARKS.md.
#
# Builds ingest, worker and loadgen; measures the ceilings (a bare HTTP
# server, RabbitMQ publishes with confirms, Postgres multi-row inserts);
# starts ingest and worker on a scratch database and a topology of their own;
# then drives them: a backlog with the worker stopped (ingest alone, then the
# worker's drain rate), 64 connections closed loop for the peak, open loop at
# half the peak for the end-to-end lag, a diagnostic rerun of the worker
# phases over Postgres's Unix socket, and backlogs drained with the change
# feed off, on, and on with a consumer of every change, alternately, for its
# cost. The change feed is on throughout (as by default); a consumer of every
# change (`loadgen watch-changes`, its own CPU not counted) is bound during
# the open loop, so the feed's lag is measured with a queue behind it.
# Then the CPU per callback of every process, this checkout against a
# baseline revision (BENCH_BASELINE) under the same load (bench/cpu.sh), and
# instructions per callback (bench/instructions.sh).
# Samples each process's CPU time and the
# services' peak RSS, stops everything with SIGTERM, removes the database and
# the queues, and writes the report.
#
# Usage: bench/run.sh [--smoke] [--out FILE]
#   --smoke     a few hundred callbacks and short ceilings (bench/smoke.sh); fails on any
#               wrong answer, row-count mismatch, error log line or unclean stop
#   --out FILE  where to write the report (default BENCHMARKS.md; with --smoke
#               $CARGO_TARGET_DIR/bench-<id>/smoke.md)
# Environment: CARGO_TARGET_DIR (default ./target-bench), BENCH_PROFILE (release),
#   BENCH_POSTGRES_URL (postgres://postgres@127.0.0.1:5432), BENCH_PG_SOCKET_DIR
#   (/var/run/postgresql; the diagnostic phase is skipped without a socket there),
#   AMQP_URL, BENCH_INGEST_PORT (18080), BENCH_WORKER_PORT (18081),
#   BENCH_WAIT_IDLE_SECS (300; 0 with --smoke): how long to wait for the machine to be quiet;
#   WORKER_CONCURRENCY reaches the worker and sizes the DB ceiling alike;
#   BENCH_BASELINE: a git revision whose ingest and worker run beside this checkout's
#   in *CPU per callback* (built once into $CARGO_TARGET_DIR/baseline-<rev>/);
#   BENCH_RUST_LOG: the services' log level (default: info, as they ship).
# Everything runs on this machine; every phase is bounded in requests and time.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
SMOKE=0
OUT=""
while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) SMOKE=1 ;;
    --out) OUT=${2:?--out needs a file}; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench/run.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
  esac
  shift
done
for tool in cargo psql jq curl awk getconf; do
  command -v "$tool" >/dev/null || { echo "bench/run.sh: $tool is required" >&2; exit 2; }
done

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target-bench}
PROFILE=${BENCH_PROFILE:-release}
case "$PROFILE" in release) PROFILE_DIR=release ;; dev) PROFILE_DIR=debug ;; *) PROFILE_DIR=$PROFILE ;; esac
BIN=$CARGO_TARGET_DIR/$PROFILE_DIR
PG_SERVER=${BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432}
PG_SOCKET_DIR=${BENCH_PG_SOCKET_DIR:-/var/run/postgresql}
export AMQP_URL=${AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}
INGEST_PORT=${BENCH_INGEST_PORT:-18080}
WORKER_PORT=${BENCH_WORKER_PORT:-18081}
INGEST_URL=http://127.0.0.1:$INGEST_PORT
WORKER_URL=http://127.0.0.1:$WORKER_PORT
MIX=(--duplicate-ratio 0.02 --bad-signature-ratio 0.01 --out-of-order-ratio 0.10)
DB_BATCH=256 # rows per transaction, as the worker's (its MAX_BATCH constant)
DB_CONCURRENCY=${WORKER_CONCURRENCY:-2} # the worker's transactions in flight (WORKER_CONCURRENCY, default 2)

if [ "$SMOKE" = 1 ]; then
  CONCURRENCY=8; HTTP_SECS=2; BROKER_MESSAGES=500; DB_ROWS=2000; BACKLOG=200
  PEAK=(--requests 300); OPEN_SECS=4; OPEN_RATE_CAP=50; DIAGNOSE=0; CPU_REQUESTS=300
else
  CONCURRENCY=64; HTTP_SECS=10; BROKER_MESSAGES=30000; DB_ROWS=100000; BACKLOG=60000
  PEAK=(--duration 15); OPEN_SECS=20; OPEN_RATE_CAP=1000000; DIAGNOSE=1; CPU_REQUESTS=40000
fi

ID=$(od -An -N4 -tx4 /dev/urandom | tr -d ' \n')
DB_NAME=bench_$ID
DATABASE_URL=$PG_SERVER/$DB_NAME
SOCKET_DATABASE_URL="postgres://postgres@localhost/$DB_NAME?host=$PG_SOCKET_DIR"
PREFIX=bench.$ID
TOKEN=bench-$ID
WORK=$CARGO_TARGET_DIR/bench-$ID
mkdir -p "$WORK"
if [ -z "$OUT" ]; then
  if [ "$SMOKE" = 1 ]; then OUT=$WORK/smoke.md; else OUT=$ROOT/BENCHMARKS.md; fi
fi
START_SECONDS=$SECONDS
CLK_TCK=$(getconf CLK_TCK)
NPROC=$(nproc)
FAILURES=()
NOTES=()

say() { printf '[bench %3ds] %s\n' $((SECONDS - START_SECONDS)) "$*" >&2; }
fail() { FAILURES+=("$*"); say "FAILED: $*"; }
j() { jq -r "$2" "$WORK/$1.json"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a != "null" && a != "" && b > 0) printf "%.2f", a / b; else printf "n/a" }'; }
num() { awk -v a="$1" -v d="${2:-0}" 'BEGIN { if (a == "null" || a == "") printf "n/a"; else printf "%.*f", d, a }'; }
psql_admin() { psql "$PG_SERVER/postgres" -X -q -v ON_ERROR_STOP=1 "$@"; }

# --- CPU accounting (/proc) ---------------------------------------------------
cpu_ticks() { # pid → utime + stime, 0 when there is no such process
  if [ -n "${1:-}" ] && [ -r "/proc/$1/stat" ]; then awk '{ print $14 + $15 }' "/proc/$1/stat"; else echo 0; fi
}
pg_ticks() { # every Postgres process, plus what the postmaster's exited children used
  local total=0 pid master
  for pid in $(pgrep -x postgres || true); do total=$((total + $(cpu_ticks "$pid"))); done
  master=$(pgrep -x -o postgres || true)
  [ -n "$master" ] && total=$((total + $(awk '{ print $16 + $17 }' "/proc/$master/stat" 2>/dev/null || echo 0)))
  echo "$total"
}
rabbit_ticks() { cpu_ticks "$(pgrep -x beam.smp | head -1 || true)"; }
peak_rss_mb() { awk '/^VmHWM/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status" 2>/dev/null || echo 0; }

# snap NAME: CPU ticks of each part and of the whole machine, and the time.
snap() {
  local busy all
  read -r busy all < <(awk '/^cpu / { b = $2 + $3 + $4 + $7 + $8 + $9; print b, b + $5 + $6 }' /proc/stat)
  printf -v "S_$1" '%s' "$(date +%s.%N) $busy $all $(cpu_ticks "$INGEST_PID") $(cpu_ticks "$WORKER_PID") $(rabbit_ticks) $(pg_ticks)"
}
# delta A B FIELD: ticks (or seconds, field 1) between two snaps; FIELD 2 machine busy,
# 3 machine all, 4 ingest, 5 worker, 6 RabbitMQ, 7 Postgres.
delta() {
  local a b
  a="S_$1"; b="S_$2"
  awk -v a="${!a}" -v b="${!b}" -v f="$3" 'BEGIN { split(a, x, " "); split(b, y, " "); printf "%s", y[f] - x[f] }'
}
CORE_ROWS=()
# cores_row LABEL A B LOADGEN_CPU_S: one row of "where the cores went".
cores_row() {
  local wall
  wall=$(delta "$2" "$3" 1)
  CORE_ROWS+=("$(awk -v label="$1" -v wall="$wall" -v hz="$CLK_TCK" -v n="$NPROC" -v lg="${4:-0}" \
    -v mb="$(delta "$2" "$3" 2)" -v ma="$(delta "$2" "$3" 3)" -v i="$(delta "$2" "$3" 4)" \
    -v w="$(delta "$2" "$3" 5)" -v r="$(delta "$2" "$3" 6)" -v p="$(delta "$2" "$3" 7)" 'BEGIN {
      if (lg == "null") lg = 0
      c = wall * hz; busy = (ma > 0) ? mb / ma * n : 0
      other = busy - lg / wall - (i + w + r + p) / c; if (other < 0) other = 0
      printf "| %s | %.1f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f of %d |", label, wall, lg / wall, i / c, r / c, w / c, p / c, other, busy, n
    }')")
}
per_1k() { awk -v t="$1" -v hz="$CLK_TCK" -v n="$2" 'BEGIN { if (n > 0) printf "%.3f", t / hz / n * 1000; else printf "n/a" }'; }

# --- the services ---------------------------------------------------------------
INGEST_PID=""
WORKER_PID=""
WATCH_PID=""
CHANGES_QUEUE=$PREFIX.changes.bench
WORKER_RSS=0
STOPPED_CLEANLY=yes

stop_service() { # name pid → its exit code (124 when it had to be killed)
  local name=$1 pid=$2 i rc=0
  [ -n "$pid" ] || return 0
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 150); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null; then
      say "$name did not stop within 30 s of SIGTERM; killing it"
      kill -KILL "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
      return 124
    fi
  fi
  wait "$pid" 2>/dev/null || rc=$?
  return "$rc"
}
# ERROR lines logged while a service stops are reported apart from those logged while it works.
STOP_ERRORS=0
stop_worker() {
  local rc=0 before
  before=$(error_lines)
  WORKER_RSS=$(( $(peak_rss_mb "$WORKER_PID") > WORKER_RSS ? $(peak_rss_mb "$WORKER_PID") : WORKER_RSS ))
  stop_service worker "$WORKER_PID" || rc=$?
  WORKER_PID=""
  STOP_ERRORS=$((STOP_ERRORS + $(error_lines) - before))
  [ "$rc" = 0 ] || { STOPPED_CLEANLY="**no**"; fail "worker exited with $rc on SIGTERM"; }
}
stop_ingest() {
  local rc=0 before
  before=$(error_lines)
  stop_service ingest "$INGEST_PID" || rc=$?
  INGEST_PID=""
  STOP_ERRORS=$((STOP_ERRORS + $(error_lines) - before))
  [ "$rc" = 0 ] || { STOPPED_CLEANLY="**no**"; fail "ingest exited with $rc on SIGTERM"; }
}

cleanup() {
  local rc=$?
  set +e
  [ -n "$WORKER_PID" ] && stop_service worker "$WORKER_PID"
  [ -n "$INGEST_PID" ] && stop_service ingest "$INGEST_PID"
  [ -n "$WATCH_PID" ] && kill "$WATCH_PID" 2>/dev/null
  declare -F cpu_cleanup >/dev/null && cpu_cleanup
  rabbitmqctl -q delete_queue "$CHANGES_QUEUE" >/dev/null 2>&1 || true
  if [ -x "$BIN/loadgen" ]; then
    "$BIN/loadgen" delete-topology --prefix "$PREFIX" >/dev/null 2>&1 ||
      say "could not delete the queues of $PREFIX"
  fi
  psql_admin -c "DROP DATABASE IF EXISTS $DB_NAME WITH (FORCE)" >/dev/null 2>&1 ||
    say "could not drop database $DB_NAME"
  say "cleaned up (database $DB_NAME, topology $PREFIX); logs and JSON in $WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# wait_ready, start_ingest, start_worker.
source "$ROOT/bench/services.sh"
error_lines() { cat "$WORK/ingest.log" "$WORK/worker.log" 2>/dev/null | grep -c '"level":"ERROR"' || true; }

# metric_mean FILE_BEFORE FILE_AFTER NAME [LABEL_FILTER]: (Δsum, Δcount) of a histogram.
metric_delta() {
  awk -v name="$3" -v filter="${4:-}" '
    FNR == 1 { file++ }
    index($1, name "_sum") == 1 && index($1, filter) { s[file] += $NF }
    index($1, name "_count") == 1 && index($1, filter) { c[file] += $NF }
    END { printf "%s %s", s[2] - s[1], c[2] - c[1] }' "$1" "$2"
}

# hist_dist FILE_BEFORE FILE_AFTER NAME: mean of a count histogram, and the share of
# observations of 1, 2-4, 5-16, 17-64 and more.
hist_dist() {
  awk -v name="$3" '
    { file = (FILENAME == ARGV[1]) ? 1 : 2 }
    index($1, name "_bucket{") == 1 { match($1, /le="[^"]+"/); b[file, substr($1, RSTART + 4, RLENGTH - 5)] = $NF }
    index($1, name "_sum") == 1 { s[file] = $NF }
    index($1, name "_count") == 1 { c[file] = $NF }
    END {
      n = c[2] - c[1]; if (n <= 0) { printf "n/a"; exit }
      d1 = b[2, "1"] - b[1, "1"]; d4 = b[2, "4"] - b[1, "4"]; d16 = b[2, "16"] - b[1, "16"]; d64 = b[2, "64"] - b[1, "64"]
      printf "%.1f (1: %.0f%%, 2-4: %.0f%%, 5-16: %.0f%%, 17-64: %.0f%%, more: %.0f%%)", (s[2] - s[1]) / n,
        d1 / n * 100, (d4 - d1) / n * 100, (d16 - d4) / n * 100, (d64 - d16) / n * 100, (n - d64) / n * 100
    }' "$1" "$2" 2>/dev/null || printf "n/a"
}
# hist_quantile FILE_BEFORE FILE_AFTER NAME Q: the Q quantile (ms) of a seconds histogram's
# observations between the two files, interpolated linearly within its bucket.
hist_quantile() {
  awk -v name="$3" -v q="$4" '
    { file = (FILENAME == ARGV[1]) ? 1 : 2 }
    index($1, name "_bucket{") == 1 { match($1, /le="[^"]+"/); le = substr($1, RSTART + 4, RLENGTH - 5); b[file, le] = $NF; if (file == 2) les[le] = 1 }
    END {
      n = 0; for (le in les) { bound[++n] = (le == "+Inf") ? 1e99 : le + 0; key[n] = le }
      for (i = 1; i <= n; i++) for (k = i + 1; k <= n; k++) if (bound[k] < bound[i]) { t = bound[i]; bound[i] = bound[k]; bound[k] = t; t = key[i]; key[i] = key[k]; key[k] = t }
      total = b[2, "+Inf"] - b[1, "+Inf"]; if (total <= 0) { printf "n/a"; exit }
      want = q * total; below = 0; lower = 0
      for (i = 1; i <= n; i++) {
        c = b[2, key[i]] - b[1, key[i]]
        if (c >= want) {
          if (bound[i] >= 1e99) { printf "> %.0f", lower * 1000; exit }
          printf "%.1f", (lower + (bound[i] - lower) * (c > below ? (want - below) / (c - below) : 1)) * 1000; exit
        }
        below = c; lower = bound[i]
      }
      printf "n/a"
    }' "$1" "$2" 2>/dev/null || printf "n/a"
}
# counter_delta FILE_BEFORE FILE_AFTER NAME: how much a counter grew.
counter_delta() {
  awk -v name="$3" '{ file = (FILENAME == ARGV[1]) ? 1 : 2 } $1 == name { v[file] = $NF } END { printf "%s", v[2] - v[1] }' "$1" "$2" 2>/dev/null || printf 0
}
metrics_snap() { # SERVICE_URL FILE
  curl -fsS "$1/metrics" >"$2" 2>/dev/null || : >"$2"
}

for port in "$INGEST_PORT" "$WORKER_PORT"; do
  if curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$port/"; then
    echo "bench/run.sh: something already listens on 127.0.0.1:$port (set BENCH_INGEST_PORT/BENCH_WORKER_PORT)" >&2
    exit 2
  fi
done

say "building ($PROFILE) into $CARGO_TARGET_DIR"
cargo build --quiet --profile "$PROFILE" -p ingest -p worker -p loadgen
LOADGEN=$BIN/loadgen
COMMIT_SHORT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
# CPU per callback, this checkout against BENCH_BASELINE (cpu_phase, cpu_report).
source "$ROOT/bench/cpu.sh"
[ -n "${BENCH_BASELINE:-}" ] && cpu_baseline_build

# Other work on the machine skews every figure: wait (bounded) for a quiet moment.
machine_busy_cores() { # over one second
  local b0 a0 b1 a1
  read -r b0 a0 < <(awk '/^cpu / { b = $2 + $3 + $4 + $7 + $8 + $9; print b, b + $5 + $6 }' /proc/stat)
  sleep 1
  read -r b1 a1 < <(awk '/^cpu / { b = $2 + $3 + $4 + $7 + $8 + $9; print b, b + $5 + $6 }' /proc/stat)
  awk -v b=$((b1 - b0)) -v a=$((a1 - a0)) -v n="$NPROC" 'BEGIN { printf "%.2f", (a > 0) ? b / a * n : 0 }'
}
IDLE_WAIT=${BENCH_WAIT_IDLE_SECS:-$([ "$SMOKE" = 1 ] && echo 0 || echo 300)}
IDLE_DEADLINE=$((SECONDS + IDLE_WAIT))
while :; do
  BUSY_AT_START=$(machine_busy_cores)
  awk -v b="$BUSY_AT_START" 'BEGIN { exit !(b < 0.3) }' && break
  [ "$SECONDS" -lt "$IDLE_DEADLINE" ] || break
  say "machine busy with other work ($BUSY_AT_START cores); waiting for a quiet moment"
  sleep 4
done
LOADAVG_START=$(cut -d' ' -f1-3 /proc/loadavg)

# Other sessions' fault tests restart the services now and then: wait (bounded) for both.
for i in $(seq 1 60); do
  psql_admin -tAc 'SELECT 1' >/dev/null 2>&1 && (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null && break
  [ "$i" = 60 ] && { echo "bench/run.sh: Postgres or RabbitMQ is not answering on 127.0.0.1" >&2; exit 2; }
  sleep 1
done
[ -S "$PG_SOCKET_DIR/.s.PGSQL.5432" ] || DIAGNOSE=0

# --- ceilings -------------------------------------------------------------------
say "ceiling: bare actix-web, $CONCURRENCY connections, ${HTTP_SECS}s"
snap c0
"$LOADGEN" ceiling-http --concurrency "$CONCURRENCY" --duration "$HTTP_SECS" --json >"$WORK/ceiling-http.json" ||
  fail "ceiling-http: some requests got no answer"
snap c1
cores_row "HTTP ceiling (loadgen = client + bare server)" c0 c1 "$(j ceiling-http .client_cpu_s)"

say "ceiling: RabbitMQ, $BROKER_MESSAGES confirmed publishes, $CONCURRENCY in flight"
"$LOADGEN" ceiling-broker --amqp-url "$AMQP_URL" --concurrency "$CONCURRENCY" \
  --messages "$BROKER_MESSAGES" --time-limit-secs 60 --json >"$WORK/ceiling-broker.json" ||
  fail "ceiling-broker"
snap c2
cores_row "broker ceiling" c1 c2 "$(j ceiling-broker .client_cpu_s)"

say "ceiling: Postgres over TCP, $DB_ROWS rows in $DB_BATCH-row inserts"
"$LOADGEN" ceiling-db --database-url "$PG_SERVER/postgres" --rows "$DB_ROWS" --batch "$DB_BATCH" \
  --concurrency "$DB_CONCURRENCY" --time-limit-secs 90 --json >"$WORK/ceiling-db.json" || fail "ceiling-db"
snap c3
cores_row "DB ceiling, TCP (loadgen includes building the rows)" c2 c3 "$(j ceiling-db .client_cpu_s)"
say "ceiling: Postgres over TCP, the worker's own statement (insert, fold, upsert), $DB_ROWS rows"
"$LOADGEN" ceiling-db --database-url "$PG_SERVER/postgres" --rows "$DB_ROWS" --batch "$DB_BATCH" \
  --concurrency "$DB_CONCURRENCY" --statement worker --time-limit-secs 90 --json >"$WORK/ceiling-db-worker.json" ||
  fail "ceiling-db --statement worker"
snap c3
if [ "$DIAGNOSE" = 1 ]; then
  say "ceiling: Postgres over the Unix socket, $DB_ROWS rows"
  "$LOADGEN" ceiling-db --database-url "postgres://postgres@localhost/postgres?host=$PG_SOCKET_DIR" \
    --rows "$DB_ROWS" --batch "$DB_BATCH" --concurrency "$DB_CONCURRENCY" --time-limit-secs 90 --json >"$WORK/ceiling-db-socket.json" ||
    fail "ceiling-db over the Unix socket"
  snap c4
  cores_row "DB ceiling, Unix socket" c3 c4 "$(j ceiling-db-socket .client_cpu_s)"
fi

# --- the pipeline -----------------------------------------------------------------
say "scratch database $DB_NAME, topology $PREFIX"
psql_admin -c "CREATE DATABASE $DB_NAME" >/dev/null
DATABASE_URL=$DATABASE_URL AMQP_TOPOLOGY_PREFIX=$PREFIX LOG_FORMAT=json RUST_LOG=warn \
  "$BIN/worker" migrate >"$WORK/migrate.log" 2>&1
start_ingest
# outbox_drained: waits (up to 10 s) until the relay published every change committed.
outbox_drained() {
  local i
  for i in $(seq 1 100); do
    OUTBOX_LEFT=$(psql "$DATABASE_URL" -X -tAc 'SELECT count(*) FROM message_changes' 2>/dev/null || echo "?")
    [ "$OUTBOX_LEFT" = 0 ] && return 0
    sleep 0.1
  done
}
# watch_start / watch_stop: a consumer of every change of the feed, as an application
# would run one (a durable queue of its own), counting what it receives.
CHANGES_RECEIVED=0
watch_start() {
  "$LOADGEN" watch-changes --amqp-url "$AMQP_URL" --topology-prefix "$PREFIX" --queue "$CHANGES_QUEUE" \
    --binding '#' 2>>"$WORK/watch-changes.log" > >(wc -l >"$WORK/changes-received.count") &
  WATCH_PID=$!
  sleep 0.5
}
watch_stop() {
  sleep 0.5
  kill "$WATCH_PID" 2>/dev/null || true
  wait "$WATCH_PID" 2>/dev/null || true
  WATCH_PID=""
  sleep 0.2
  CHANGES_RECEIVED=$((CHANGES_RECEIVED + $(cat "$WORK/changes-received.count" 2>/dev/null || echo 0)))
  rabbitmqctl -q delete_queue "$CHANGES_QUEUE" >/dev/null 2>&1 || true
}
RUN=("$LOADGEN" run --url "$INGEST_URL/twilio/status" --token "$TOKEN" "${MIX[@]}" --json)
check_run() { # RUN_JSON OUT_NAME DATABASE_URL: wait for a run's rows and check them
  "$LOADGEN" check --database-url "$3" --run-id "$(j "$1" .run_id)" \
    --expect-events "$(j "$1" .unique_accepted_events)" --expect-messages "$(j "$1" .accepted_messages)" \
    --unknown "$(j "$1" .unknown_outcome_events)" --json >"$WORK/$2.json"
}

say "backlog: $BACKLOG callbacks, $CONCURRENCY connections, worker stopped"
metrics_snap "$INGEST_URL" "$WORK/ingest-metrics-b0.txt"
snap b0
"${RUN[@]}" --concurrency "$CONCURRENCY" --requests "$BACKLOG" >"$WORK/backlog.json" ||
  fail "backlog: unexpected answers"
snap b1
metrics_snap "$INGEST_URL" "$WORK/ingest-metrics-b1.txt"
cores_row "ingest alone (backlog, worker stopped)" b0 b1 "$(j backlog .client_cpu_s)"

say "worker: start, drain the backlog"
start_worker "$DATABASE_URL"
check_run backlog drain "$DATABASE_URL" || fail "drain: stored rows do not match the accepted callbacks"
snap b2
cores_row "worker draining the backlog" b1 b2 0

say "peak: closed loop, $CONCURRENCY connections, ${PEAK[*]}"
curl -fsS "$INGEST_URL/metrics" >"$WORK/ingest-metrics-0.txt" || true
curl -fsS "$WORKER_URL/metrics" >"$WORK/worker-metrics-0.txt" || true
snap p0
"${RUN[@]}" --concurrency "$CONCURRENCY" "${PEAK[@]}" >"$WORK/peak.json" || fail "peak: unexpected answers"
snap p1
curl -fsS "$INGEST_URL/metrics" >"$WORK/ingest-metrics-1.txt" || true
metrics_snap "$WORKER_URL" "$WORK/worker-metrics-sent.txt"
check_run peak peak-stored "$DATABASE_URL" || fail "peak: stored rows do not match the accepted callbacks"
snap p2
curl -fsS "$WORKER_URL/metrics" >"$WORK/worker-metrics-1.txt" || true
cores_row "peak, sending" p0 p1 "$(j peak .client_cpu_s)"
cores_row "peak, worker catching up" p1 p2 0

OPEN_RATE=$(awk -v p="$(j peak .accepted_per_s)" -v cap="$OPEN_RATE_CAP" \
  'BEGIN { r = int(p / 2); if (r > cap) r = cap; if (r < 1) r = 1; print r }')
say "open loop: $OPEN_RATE/s for ${OPEN_SECS}s, a consumer of every change bound"
watch_start
metrics_snap "$INGEST_URL" "$WORK/ingest-metrics-o0.txt"
metrics_snap "$WORKER_URL" "$WORK/worker-metrics-o0.txt"
snap o0
"${RUN[@]}" --rate "$OPEN_RATE" --duration "$OPEN_SECS" --database-url "$DATABASE_URL" \
  >"$WORK/open.json" || fail "open loop: unexpected answers or stored rows mismatch"
snap o1
metrics_snap "$INGEST_URL" "$WORK/ingest-metrics-o1.txt"
metrics_snap "$WORKER_URL" "$WORK/worker-metrics-o1.txt"
cores_row "open loop at half the peak (incl. the wait for the rows)" o0 o1 "$(j open .client_cpu_s)"
outbox_drained
watch_stop

# Half the peak can be more than the worker keeps up with; then its lag is queueing.
# The lag at a rate the worker sustains: 70% of its drain rate.
STEADY_RATE=$(awk -v d="$(j drain .persisted_per_s)" -v o="$OPEN_RATE" \
  'BEGIN { if (d == "null" || o <= 0.9 * d) print 0; else print int(0.7 * d) }')
LAG_RATE=$OPEN_RATE
LAG_RUN=open
if [ "$STEADY_RATE" -gt 0 ]; then
  say "open loop at a sustainable rate: $STEADY_RATE/s for ${OPEN_SECS}s"
  "${RUN[@]}" --rate "$STEADY_RATE" --duration "$OPEN_SECS" --database-url "$DATABASE_URL" \
    >"$WORK/open-steady.json" || fail "steady open loop: unexpected answers or stored rows mismatch"
  LAG_RATE=$STEADY_RATE
  LAG_RUN=open-steady
fi

if [ "$DIAGNOSE" = 1 ]; then
  say "diagnostic: the worker over Postgres's Unix socket"
  stop_worker
  "${RUN[@]}" --concurrency "$CONCURRENCY" --requests "$BACKLOG" >"$WORK/backlog-socket.json" ||
    fail "backlog (socket): unexpected answers"
  snap d0
  start_worker "$SOCKET_DATABASE_URL"
  check_run backlog-socket drain-socket "$DATABASE_URL" ||
    fail "drain (socket): stored rows do not match the accepted callbacks"
  snap d1
  cores_row "worker draining over the Unix socket" d0 d1 0
  "${RUN[@]}" --rate "$LAG_RATE" --duration "$OPEN_SECS" --database-url "$DATABASE_URL" \
    >"$WORK/open-socket.json" || fail "open loop (socket): unexpected answers or stored rows mismatch"
fi

# The change feed's cost: equal backlogs sent and drained with the feed off, on, and on with
# a consumer of every change bound, twice each, alternately; CPU of every pipeline process
# per stored callback.
FEED_BACKLOG=$((BACKLOG / 2))
for round in 1 2; do
  for feed in false true consumed; do
    say "change feed cost: $feed, $FEED_BACKLOG callbacks sent and drained (round $round)"
    stop_worker
    [ "$feed" = consumed ] && watch_start
    snap "feed_${feed}_${round}_0"
    "${RUN[@]}" --concurrency "$CONCURRENCY" --requests "$FEED_BACKLOG" >"$WORK/feed-$feed-$round.json" ||
      fail "feed cost backlog: unexpected answers"
    start_worker "$DATABASE_URL" WORKER_CHANGE_FEED="$([ "$feed" = false ] && echo false || echo true)"
    check_run "feed-$feed-$round" "feed-$feed-$round-stored" "$DATABASE_URL" ||
      fail "feed cost drain: stored rows do not match the accepted callbacks"
    outbox_drained
    snap "feed_${feed}_${round}_1"
    [ "$feed" = consumed ] && watch_stop
  done
done
# feed_cpu FEED: total pipeline CPU ms per 1,000 stored callbacks over both rounds.
feed_cpu() {
  local ticks=0 rows=0 round f
  for round in 1 2; do
    for f in 4 5 6 7; do ticks=$(awk -v t="$ticks" -v d="$(delta "feed_$1_${round}_0" "feed_$1_${round}_1" "$f")" 'BEGIN { print t + d }'); done
    rows=$((rows + $(j "feed-$1-$round-stored" .rows)))
  done
  per_1k "$ticks" "$rows" | awk '{ printf "%.0f", $1 * 1000 }'
}
# feed_part FEED FIELD: one process's CPU ms per 1,000 stored over both rounds.
feed_part() {
  local ticks=0 rows=0 round
  for round in 1 2; do
    ticks=$(awk -v t="$ticks" -v d="$(delta "feed_$1_${round}_0" "feed_$1_${round}_1" "$2")" 'BEGIN { print t + d }')
    rows=$((rows + $(j "feed-$1-$round-stored" .rows)))
  done
  per_1k "$ticks" "$rows" | awk '{ printf "%.0f", $1 * 1000 }'
}

say "stopping (SIGTERM)"
INGEST_RSS=$(peak_rss_mb "$INGEST_PID")
stop_ingest
# Every change committed is published before the worker stops: the outbox drains.
outbox_drained
[ "$OUTBOX_LEFT" = 0 ] || fail "the change outbox still holds $OUTBOX_LEFT changes after the runs"
stop_worker
# The outbox at size: what 100,000 waiting changes (RabbitMQ away) take, per million (on a
# table emptied first: the run's churn leaves dead space behind until vacuum reuses it).
psql "$DATABASE_URL" -X -q -v ON_ERROR_STOP=1 -c "TRUNCATE message_changes" -c "INSERT INTO message_changes
  (message_sid, sequence, status, previous_status, error_code, final, account_sid, from_address,
   to_address, occurred_at, recorded_at, traceparent)
  SELECT 'SM' || md5(i::text), 2, 'undelivered', 'sent', 30003, true, 'AC' || md5('account'),
    '+15017122661', '+15558675310', now(), now(),
    '00-' || md5(i::text) || '-' || substr(md5(i::text || 's'), 1, 16) || '-01'
  FROM generate_series(1, 100000) i" >/dev/null
OUTBOX_MB_PER_MILLION=$(psql "$DATABASE_URL" -X -tAc "SELECT round(pg_total_relation_size('message_changes') * 10 / 1048576.0)")
cpu_phase
RUN_ERRORS=$(($(error_lines) - STOP_ERRORS))
[ "$RUN_ERRORS" = 0 ] || fail "$RUN_ERRORS ERROR lines in the service logs while they worked (see $WORK/*.log)"
if [ "$STOP_ERRORS" -gt 0 ]; then
  NOTES+=("While stopping on SIGTERM the services logged $STOP_ERRORS ERROR line(s), e.g. \`$(grep -h '"level":"ERROR"' "$WORK/ingest.log" "$WORK/worker.log" | tail -1 | jq -r '"\(.target): \(.message): \(.error // "")"' 2>/dev/null)\` (their exit codes: $([ "$STOPPED_CLEANLY" = yes ] && echo 0 || echo 'not all 0')).")
fi

# --- report ---------------------------------------------------------------------
HTTP_CEILING=$(j ceiling-http .requests_per_s)
BROKER_CEILING=$(j ceiling-broker .confirmed_per_s)
DB_CEILING=$(j ceiling-db .rows_per_s)
DB_WORKER_CEILING=$(j ceiling-db-worker .rows_per_s)
STORED_WHILE_SENDING=$(awk -v n="$(counter_delta "$WORK/worker-metrics-0.txt" "$WORK/worker-metrics-sent.txt" worker_events_persisted_total)" \
  -v w="$(delta p0 p1 1)" 'BEGIN { if (w > 0) printf "%.0f", n / w; else printf "n/a" }')
PEAK_RATE=$(j peak .accepted_per_s)
ALONE_RATE=$(j backlog .accepted_per_s)
DRAIN_RATE=$(j drain .persisted_per_s)
PEAK_ROWS=$(j peak-stored .rows)
lat() { printf '%s / %s / %s / %s / %s' "$(num "$(j "$1" "$2.p50")" 2)" "$(num "$(j "$1" "$2.p90")" 2)" \
  "$(num "$(j "$1" "$2.p99")" 2)" "$(num "$(j "$1" "$2.p99_9")" 2)" "$(num "$(j "$1" "$2.max")" 2)"; }
yes_no() { if [ "$1" = true ]; then echo yes; else echo "**no**"; fi; }
mean_ms() { awk -v d="$1" 'BEGIN { split(d, x, " "); if (x[2] > 0) printf "%.2f", x[1] / x[2] * 1000; else printf "n/a" }'; }
REQ_DELTA=$(metric_delta "$WORK/ingest-metrics-0.txt" "$WORK/ingest-metrics-1.txt" ingest_request_duration_seconds 'outcome="accepted"' 2>/dev/null || echo "0 0")
CONFIRM_DELTA=$(metric_delta "$WORK/ingest-metrics-0.txt" "$WORK/ingest-metrics-1.txt" ingest_publish_confirm_duration_seconds 2>/dev/null || echo "0 0")
BATCH_DELTA=$(metric_delta "$WORK/worker-metrics-0.txt" "$WORK/worker-metrics-1.txt" worker_batch_size 2>/dev/null || echo "0 0")
DBTIME_DELTA=$(metric_delta "$WORK/worker-metrics-0.txt" "$WORK/worker-metrics-1.txt" worker_db_batch_duration_seconds 'outcome="committed"' 2>/dev/null || echo "0 0")
PEAK_WORKER_WALL=$(awk -v a="$(delta p0 p2 1)" 'BEGIN { printf "%.1f", a }')
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
[ -n "$(git status --porcelain 2>/dev/null)" ] && COMMIT="$COMMIT + uncommitted changes"
CPU_MODEL=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
PG_VERSION=$(psql "$PG_SERVER/postgres" -X -tAc 'SHOW server_version' 2>/dev/null | cut -d' ' -f1 || echo "?")
TITLE="Benchmarks"
[ "$SMOKE" = 1 ] && TITLE="Benchmark smoke run (a few hundred callbacks: a check, not a measurement)"

# The sections bench/growth/run.sh, bench/growth/retention.sh and bench/readers.sh write (the
# history at size, retention under load, heavy readers) are kept as they are.
GROWTH_SECTION=$(awk '/^<!-- (growth|search|retention|readers|structure):/,/^<!-- \/(growth|search|retention|readers|structure) -->/' "$OUT" 2>/dev/null || true)
{
  echo "# $TITLE"
  echo
  echo "Measured $(date -u '+%Y-%m-%d %H:%M UTC') on $NPROC cores ($CPU_MODEL), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), Linux $(uname -r), Postgres $PG_VERSION, RabbitMQ on the same machine; $BUSY_AT_START cores busy with other work just before the start (load average $LOADAVG_START); commit $COMMIT, \`$PROFILE\` build."
  echo "The load generator, ingest, worker, RabbitMQ and Postgres all share these $NPROC cores (with whatever else runs on the machine: see *Where the cores went*)."
  echo
  echo "| figure | measured | ceiling on this machine | ratio |"
  echo "|---|---|---|---|"
  echo "| ingest accepted callbacks/s, $CONCURRENCY connections closed loop, worker running | $(num "$PEAK_RATE") | bare actix-web answering 200: $(num "$HTTP_CEILING") req/s | $(ratio "$PEAK_RATE" "$HTTP_CEILING") |"
  echo "| | | RabbitMQ confirmed persistent publishes, $CONCURRENCY in flight, quorum queue: $(num "$BROKER_CEILING")/s | $(ratio "$PEAK_RATE" "$BROKER_CEILING") |"
  echo "| ingest accepted callbacks/s, same, worker stopped | $(num "$ALONE_RATE") | HTTP / broker as above | $(ratio "$ALONE_RATE" "$HTTP_CEILING") / $(ratio "$ALONE_RATE" "$BROKER_CEILING") |"
  echo "| ingest latency ms, worker stopped, p50 / p90 / p99 / p99.9 / max | $(lat backlog .latency_ms) | as below | |"
  echo "| ingest latency ms at peak, p50 / p90 / p99 / p99.9 / max | $(lat peak .latency_ms) | bare actix-web: $(lat ceiling-http .latency_ms); broker confirm: $(lat ceiling-broker .confirm_latency_ms) | |"
  echo "| worker persisted events/s (draining a backlog of $BACKLOG) | $(num "$DRAIN_RATE") | Postgres, the worker's own $DB_BATCH-row statement (insert, fold, upsert), $DB_CONCURRENCY in flight, over TCP: $(num "$DB_WORKER_CEILING") rows/s | $(ratio "$DRAIN_RATE" "$DB_WORKER_CEILING") |"
  echo "| | | the same statement's event insert alone (no projection): $(num "$DB_CEILING") rows/s | $(ratio "$DRAIN_RATE" "$DB_CEILING") |"
  echo "| stored callbacks/s while sending at peak (worker running, 64 connections; Δ worker_events_persisted_total over the sending window) | $STORED_WHILE_SENDING | | |"
  echo "| callbacks per broker message (ingest's group commit), mean (distribution of messages): ingest alone / at peak / open loop at half the peak | $(hist_dist "$WORK/ingest-metrics-b0.txt" "$WORK/ingest-metrics-b1.txt" ingest_batch_size) / $(hist_dist "$WORK/ingest-metrics-0.txt" "$WORK/ingest-metrics-1.txt" ingest_batch_size) / $(hist_dist "$WORK/ingest-metrics-o0.txt" "$WORK/ingest-metrics-o1.txt" ingest_batch_size) | | |"
  if [ "$DIAGNOSE" = 1 ]; then
    echo "| | | same over the Unix socket: $(num "$(j ceiling-db-socket .rows_per_s)") rows/s | $(ratio "$DRAIN_RATE" "$(j ceiling-db-socket .rows_per_s)") |"
  fi
  echo "| end-to-end stored callbacks/s at peak (first received → last persisted) | $(num "$(j peak-stored .end_to_end_per_s)") | | |"
  if [ "$STEADY_RATE" -gt 0 ]; then
    echo "| end-to-end lag ms p50 / p99 (persisted_at − received_at), open loop at $OPEN_RATE/s = half the peak: above the worker's drain rate, so the queue grows and this is queueing lag | $(num "$(j open .persistence.lag_ms.p50)" 1) / $(num "$(j open .persistence.lag_ms.p99)" 1) | | |"
    echo "| end-to-end lag ms p50 / p99, open loop at $STEADY_RATE/s = 70% of the worker's drain rate | $(num "$(j open-steady .persistence.lag_ms.p50)" 1) / $(num "$(j open-steady .persistence.lag_ms.p99)" 1) | | |"
  else
    echo "| end-to-end lag ms p50 / p99 (persisted_at − received_at), open loop at $OPEN_RATE/s = half the peak | $(num "$(j open .persistence.lag_ms.p50)" 1) / $(num "$(j open .persistence.lag_ms.p99)" 1) | | |"
  fi
  echo "| ingest latency ms p50 / p99 at $OPEN_RATE/s, from the scheduled send | $(num "$(j open .latency_ms.p50)" 2) / $(num "$(j open .latency_ms.p99)" 2) | | |"
  echo "| peak RSS MB (VmHWM), ingest / worker | $INGEST_RSS / $WORKER_RSS | | |"
  echo "| CPU s per 1,000 callbacks at peak: ingest / RabbitMQ / worker / Postgres | $(per_1k "$(delta p0 p1 4)" "$(j peak .requests)") / $(per_1k "$(delta p0 p2 6)" "$(j peak .requests)") / $(per_1k "$(delta p0 p2 5)" "$PEAK_ROWS") / $(per_1k "$(delta p0 p2 7)" "$PEAK_ROWS") | | |"
  echo "| CPU s per 1,000 callbacks: ingest alone / worker draining | $(per_1k "$(delta b0 b1 4)" "$(j backlog .requests)") / $(per_1k "$(delta b1 b2 5)" "$(j drain .rows)") | | |"
  if [ "$DIAGNOSE" = 1 ]; then
    echo "| *diagnostic*: the same worker over Postgres's Unix socket instead of TCP: persisted events/s draining; lag ms p50 / p99 at $LAG_RATE/s (over TCP: $(num "$(j "$LAG_RUN" .persistence.lag_ms.p50)" 1) / $(num "$(j "$LAG_RUN" .persistence.lag_ms.p99)" 1)) | $(num "$(j drain-socket .persisted_per_s)"); $(num "$(j open-socket .persistence.lag_ms.p50)" 1) / $(num "$(j open-socket .persistence.lag_ms.p99)" 1) | | |"
  fi
  echo
  echo "Checks: answers as expected (200 for valid callbacks and their duplicates, 403 for bad signatures) in every run: $(yes_no "$(jq -s 'all(.[]; .unexpected_answers == 0)' "$WORK"/backlog*.json "$WORK/peak.json" "$WORK"/open*.json)"). Stored rows equal exactly the unique accepted callbacks (duplicates and bad signatures excluded): backlog $(j drain .rows)/$(j drain .expected_rows), peak $PEAK_ROWS/$(j peak-stored .expected_rows), open loop $(j open .persistence.rows)/$(j open .persistence.expected_rows): $(yes_no "$(jq -s 'all(.[]; (.persistence // .).rows_match)' "$WORK"/drain*.json "$WORK/peak-stored.json" "$WORK"/open*.json)"); one \`messages\` row per message: $(yes_no "$(jq -s 'all(.[]; (.persistence // .).messages_match)' "$WORK"/drain*.json "$WORK/peak-stored.json" "$WORK"/open*.json)"). Both services exited 0 on SIGTERM: $STOPPED_CLEANLY."
  echo
  echo "## Inside the services at peak"
  echo
  echo "From their /metrics over the peak run: ingest answered an accepted callback in $(mean_ms "$REQ_DELTA") ms on average, $(mean_ms "$CONFIRM_DELTA") ms of it waiting for RabbitMQ's confirm. The worker stored $(awk -v d="$BATCH_DELTA" 'BEGIN { split(d, x, " "); if (x[2] > 0) printf "%.0f", x[1] / x[2]; else printf "n/a" }') callbacks per batch on average, each batch's transaction taking $(mean_ms "$DBTIME_DELTA") ms; it spent $(awk -v d="$DBTIME_DELTA" -v w="$PEAK_WORKER_WALL" 'BEGIN { split(d, x, " "); if (w > 0) printf "%.0f%%", x[1] / w * 100; else printf "n/a" }') of the ${PEAK_WORKER_WALL} s (sending and catching up) inside a transaction."
  echo
  echo "## Change feed"
  echo
  echo "On throughout, as by default. A consumer of every change (\`loadgen watch-changes --binding '#'\`, a durable queue of its own) was bound during the open loop and the *consumed* rounds below, and received $CHANGES_RECEIVED changes; left in the outbox at the end: $OUTBOX_LEFT."
  echo
  echo "| figure | measured |"
  echo "|---|---|"
  echo "| commit-to-publish lag ms p50 / p99 (\`worker_change_publish_lag_seconds\`: persist time to RabbitMQ's confirm, interpolated within its buckets), open loop at $OPEN_RATE/s = half the peak, a consumer's durable queue bound to every change | $(hist_quantile "$WORK/worker-metrics-o0.txt" "$WORK/worker-metrics-o1.txt" worker_change_publish_lag_seconds 0.5) / $(hist_quantile "$WORK/worker-metrics-o0.txt" "$WORK/worker-metrics-o1.txt" worker_change_publish_lag_seconds 0.99) |"
  echo "| pipeline CPU ms per 1,000 stored callbacks (ingest + worker + RabbitMQ + Postgres; $FEED_BACKLOG-callback backlogs sent and drained, twice each, alternately), feed off / on / on and every change consumed | $(feed_cpu false) / $(feed_cpu true) / $(feed_cpu consumed) |"
  echo "| feed on ÷ feed off (target: at most 1.15); with every change consumed ÷ off | $(ratio "$(feed_cpu true)" "$(feed_cpu false)"); $(ratio "$(feed_cpu consumed)" "$(feed_cpu false)") |"
  echo "| of which, off / on / consumed: ingest | $(feed_part false 4) / $(feed_part true 4) / $(feed_part consumed 4) |"
  echo "| worker | $(feed_part false 5) / $(feed_part true 5) / $(feed_part consumed 5) |"
  echo "| RabbitMQ | $(feed_part false 6) / $(feed_part true 6) / $(feed_part consumed 6) |"
  echo "| Postgres | $(feed_part false 7) / $(feed_part true 7) / $(feed_part consumed 7) |"
  echo "| outbox size while changes wait (RabbitMQ away): MB per million changes (100,000 realistic rows, table and index) | $OUTBOX_MB_PER_MILLION |"
  echo
  echo "The outbox holds only changes not yet confirmed: in steady state it is empty, so its size is a function of how long RabbitMQ is away, not of the message count."
  echo
  cpu_report
  echo
  echo "## Where the cores went"
  echo
  echo "Cores used on average in each phase, from /proc/PID/stat (utime + stime; Postgres: all its processes plus exited backends) and /proc/stat:"
  echo
  echo "| phase | seconds | loadgen | ingest | RabbitMQ | worker | Postgres | everything else | machine busy |"
  echo "|---|---|---|---|---|---|---|---|---|"
  for row in "${CORE_ROWS[@]}"; do echo "$row"; done
  echo
  echo "## How it was measured"
  echo
  echo "- Traffic (\`loadgen run\`): realistic lifecycles (queued → sent → delivered 68%, → undelivered 30003/30005/30006 12%, queued → failed 30007 5%, WhatsApp … → read 15%) with Twilio's parameter sets, signed as Twilio signs; 2% exact duplicates, 1% bad signatures, 10% of messages out of order; each run its own SID prefix."
  echo "- One HTTP client for the pipeline and the HTTP ceiling: a kept-alive HTTP/1.1 connection per request in flight (hyper). Closed loop: $CONCURRENCY connections back to back. Open loop: requests on a fixed schedule, latency counted from the scheduled time (no coordinated omission)."
  echo "- HTTP ceiling: a bare actix-web server in the load generator's process, as many workers as ingest, reading the body and answering 200. Broker ceiling: persistent mandatory publishes with confirms into a fresh copy of the pipeline's own topology (its exchange and quorum queue with the same arguments), $CONCURRENCY in flight on one channel, $(j ceiling-broker .body_bytes)-byte bodies with ingest's headers. DB ceilings: the worker's own batch statement, and the same statement's event insert alone ($DB_BATCH rows of realistic lifecycles as typed array parameters, one statement per batch, $DB_CONCURRENCY in flight as the worker's \`WORKER_CONCURRENCY\`, into a freshly migrated scratch database, over a pool with the worker's settings, TCP_NODELAY included)."
  echo "- Worker rate: callbacks queued with the worker stopped, then rows / (last persisted_at − first persisted_at) once it runs. Lag: persisted_at − received_at of every stored row (persisted_at is taken when the worker builds the insert; the commit follows)."
  echo "- CPU per 1,000: requests for ingest and RabbitMQ, stored rows for worker and Postgres. Peak RSS: VmHWM."
  echo
  echo "Reproduce: \`bench/run.sh\` (release build into \`target-bench/\`; about 4 minutes plus the build, more if it has to wait for a quiet machine; needs RabbitMQ and Postgres on 127.0.0.1, psql, jq, curl). Raw JSON of every phase and the services' logs: \`target-bench/bench-<id>/\`. CI-sized check: \`bench/smoke.sh\`. Micro-benchmarks: \`cargo bench -p twilio-protocol --bench signature\`."
  if [ ${#NOTES[@]} -gt 0 ]; then
    echo
    echo "## Notes"
    echo
    for note in "${NOTES[@]}"; do echo "- $note"; done
  fi
  if [ ${#FAILURES[@]} -gt 0 ]; then
    echo
    echo "## Failures"
    echo
    for f in "${FAILURES[@]}"; do echo "- $f"; done
  fi
  if [ -n "$GROWTH_SECTION" ]; then
    echo
    echo "$GROWTH_SECTION"
  fi
} >"$OUT.new"
mv "$OUT.new" "$OUT"

say "wrote $OUT"
if [ ${#FAILURES[@]} -gt 0 ]; then
  say "${#FAILURES[@]} failure(s): ${FAILURES[*]}"
  exit 1
fi
