# Starting the pipeline's two services for a benchmark, sourced by
# bench/run.sh and bench/growth/run.sh. The caller sets BIN (the release
# binaries), WORK (logs and the spool), TOKEN, PREFIX, INGEST_PORT,
# WORKER_PORT and AMQP_URL, and defines `say`; RUNNER, when set, wraps the
# binary (bench/instructions.sh runs one under valgrind). Each service logs to
# $WORK/<name>.log at the level they ship with (info), or BENCH_RUST_LOG: the
# benchmark measures what runs in production.

# wait_ready NAME URL: until URL/readyz answers 200 (60 s), else show the log.
wait_ready() {
  local i
  for i in $(seq 1 300); do
    curl -fsS -o /dev/null --max-time 1 "$2/readyz" 2>/dev/null && return 0
    sleep 0.2
  done
  say "$1 not ready after 60 s; its log:"
  tail -20 "$WORK/$1.log" >&2
  return 1
}

start_ingest() {
  env -u OTEL_EXPORTER_OTLP_ENDPOINT -u PUBLIC_BASE_URL \
    TWILIO_AUTH_TOKEN="$TOKEN" INGEST_ADDR="127.0.0.1:$INGEST_PORT" AMQP_URL="$AMQP_URL" \
    AMQP_TOPOLOGY_PREFIX="$PREFIX" INGEST_SPOOL_DIR="$WORK/spool" LOG_FORMAT=json RUST_LOG="${BENCH_RUST_LOG:-info}" \
    ${RUNNER:-} "$BIN/ingest" >>"$WORK/ingest.log" 2>&1 &
  INGEST_PID=$!
  wait_ready ingest "http://127.0.0.1:$INGEST_PORT"
}

# start_worker DATABASE_URL [NAME=VALUE...]: further settings after the URL.
start_worker() {
  env -u OTEL_EXPORTER_OTLP_ENDPOINT \
    DATABASE_URL="$1" AMQP_URL="$AMQP_URL" AMQP_TOPOLOGY_PREFIX="$PREFIX" \
    WORKER_ADDR="127.0.0.1:$WORKER_PORT" WORKER_AUTO_MIGRATE=false LOG_FORMAT=json RUST_LOG="${BENCH_RUST_LOG:-info}" \
    "${@:2}" ${RUNNER:-} "$BIN/worker" >>"$WORK/worker.log" 2>&1 &
  WORKER_PID=$!
  wait_ready worker "http://127.0.0.1:$WORKER_PORT"
}
