#!/usr/bin/env bash
# Instructions per callback in ingest and in the worker, counted by
# valgrind's callgrind: a count, not a time, so it is the same run after run
# whatever else the machine is doing (times on a shared 2-core box are not).
#
# For each service in turn, the service runs under callgrind and the other
# natively, with the change feed on and the log level as shipped (info).
# WARMUP callbacks go through first (connections, pools and prepared
# statements settle), the counters are zeroed, COUNT more go through and are
# stored, and the counters are dumped: their total over COUNT is the figure.
# Everything the process does counts: HTTP, signature, parse, tracing,
# metrics, batching, AMQP, the statement's parameters, allocations.
#
# Usage: bench/instructions.sh [--bin DIR] [--label NAME] [--json FILE]
#   --bin DIR    the ingest and worker binaries to measure (default: a release
#                build of this checkout in $CARGO_TARGET_DIR, ./target-bench)
#   --label      a name for this build in the output (default: the commit)
#   --json FILE  also write {"label", "ingest", "worker"} (instructions per callback)
# Environment: COUNT (2000), WARMUP (500), BENCH_POSTGRES_URL, AMQP_URL,
#   BENCH_INGEST_PORT (18280), BENCH_WORKER_PORT (18281).
# Needs valgrind (callgrind_control), RabbitMQ and Postgres on 127.0.0.1, psql, jq, curl.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BIN_DIR=""
LABEL=""
JSON_OUT=""
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) BIN_DIR=${2:?--bin needs a directory}; shift ;;
    --label) LABEL=${2:?--label needs a name}; shift ;;
    --json) JSON_OUT=${2:?--json needs a file}; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench/instructions.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
  esac
  shift
done
for tool in valgrind callgrind_control psql jq curl; do
  command -v "$tool" >/dev/null || { echo "bench/instructions.sh: $tool is required" >&2; exit 2; }
done

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target-bench}
if [ -z "$BIN_DIR" ]; then
  cargo build --quiet --release -p ingest -p worker -p loadgen
  BIN_DIR=$CARGO_TARGET_DIR/release
fi
LOADGEN=$CARGO_TARGET_DIR/release/loadgen
[ -x "$LOADGEN" ] || cargo build --quiet --release -p loadgen
LABEL=${LABEL:-$(git rev-parse --short HEAD 2>/dev/null || echo this build)}
COUNT=${COUNT:-2000}
WARMUP=${WARMUP:-500}
PG_SERVER=${BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432}
export AMQP_URL=${AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}
INGEST_PORT=${BENCH_INGEST_PORT:-18280}
WORKER_PORT=${BENCH_WORKER_PORT:-18281}
ID=$(od -An -N4 -tx4 /dev/urandom | tr -d ' \n')
WORK=$CARGO_TARGET_DIR/instructions-$ID
mkdir -p "$WORK"
DB_NAME=instr_$ID
DATABASE_URL=$PG_SERVER/$DB_NAME
PREFIX=instr.$ID
TOKEN=instr-$ID
BIN=$BIN_DIR
INGEST_PID=""
WORKER_PID=""
START_SECONDS=$SECONDS
say() { printf '[instructions %3ds] %s\n' $((SECONDS - START_SECONDS)) "$*" >&2; }
# wait_ready, start_ingest, start_worker (RUNNER, when set, wraps the binary).
source "$ROOT/bench/services.sh"

stop_services() {
  local pid
  for pid in $WORKER_PID $INGEST_PID; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in $WORKER_PID $INGEST_PID; do wait "$pid" 2>/dev/null || true; done
  WORKER_PID=""
  INGEST_PID=""
}
cleanup() {
  local rc=$?
  set +e
  stop_services
  "$LOADGEN" delete-topology --prefix "$PREFIX" >/dev/null 2>&1
  psql "$PG_SERVER/postgres" -X -q -c "DROP DATABASE IF EXISTS $DB_NAME WITH (FORCE)" >/dev/null 2>&1
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# send N: N callbacks (no duplicates or bad signatures: every one is stored), waits until stored.
send() {
  "$LOADGEN" run --url "http://127.0.0.1:$INGEST_PORT/twilio/status" --token "$TOKEN" \
    --concurrency 16 --requests "$1" --database-url "$DATABASE_URL" --json >"$WORK/send.json"
  jq -e '.unexpected_answers == 0 and .persistence.rows_match' "$WORK/send.json" >/dev/null ||
    { say "callbacks were not all answered and stored: $(cat "$WORK/send.json")"; return 1; }
  jq -r .persistence.rows "$WORK/send.json"
}

# measure NAME PID: instructions per stored callback of the process PID (under callgrind).
measure() {
  local name=$1 pid=$2 stored total
  send "$WARMUP" >/dev/null
  callgrind_control --zero "$pid" >/dev/null
  stored=$(send "$COUNT")
  callgrind_control --dump="$name" "$pid" >/dev/null
  sleep 1
  total=$(grep -h '^summary:' "$WORK/$name.callgrind".* 2>/dev/null | tail -1 | awk '{ print $2 }')
  [ -n "$total" ] || { say "no callgrind dump for $name"; return 1; }
  awk -v t="$total" -v n="$stored" 'BEGIN { printf "%.0f", t / n }'
}

psql "$PG_SERVER/postgres" -X -q -c "CREATE DATABASE $DB_NAME" >/dev/null
DATABASE_URL=$DATABASE_URL AMQP_TOPOLOGY_PREFIX=$PREFIX RUST_LOG=warn "$BIN/worker" migrate >"$WORK/migrate.log" 2>&1
CALLGRIND=(valgrind --tool=callgrind --dump-instr=no --collect-atstart=yes)

say "$LABEL: ingest under callgrind, $WARMUP then $COUNT callbacks"
RUNNER="${CALLGRIND[*]} --callgrind-out-file=$WORK/ingest.callgrind.%p" start_ingest
start_worker "$DATABASE_URL"
INGEST_INSTRUCTIONS=$(measure ingest "$INGEST_PID")
stop_services

say "$LABEL: worker under callgrind, $WARMUP then $COUNT callbacks"
start_ingest
RUNNER="${CALLGRIND[*]} --callgrind-out-file=$WORK/worker.callgrind.%p" start_worker "$DATABASE_URL"
WORKER_INSTRUCTIONS=$(measure worker "$WORKER_PID")
stop_services

echo "$LABEL: instructions per callback: ingest $INGEST_INSTRUCTIONS, worker $WORKER_INSTRUCTIONS"
if [ -n "$JSON_OUT" ]; then
  jq -n --arg build "$LABEL" --argjson ingest "$INGEST_INSTRUCTIONS" --argjson worker "$WORKER_INSTRUCTIONS" \
    '{label: $build, ingest: $ingest, worker: $worker}' >"$JSON_OUT"
fi
