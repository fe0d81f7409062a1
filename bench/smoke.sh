#!/usr/bin/env bash
# The benchmark run at CI size: a few hundred callbacks through ingest,
# RabbitMQ, worker and Postgres, short ceilings, the same checks as
# bench/run.sh (every answer as expected, stored rows equal exactly the unique
# accepted callbacks, clean SIGTERM stops, no error lines in the logs), and a
# non-zero exit if any fails. Its report goes to target*/bench-<id>/smoke.md,
# never to BENCHMARKS.md. About a minute once built.
#
# Defaults to a debug build in ./target (what `cargo test` already built in CI);
# set BENCH_PROFILE=release and/or CARGO_TARGET_DIR to change that.
# Needs RabbitMQ and Postgres on 127.0.0.1, psql, jq and curl.
set -euo pipefail
cd "$(dirname "$0")/.."
export BENCH_PROFILE=${BENCH_PROFILE:-dev}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
exec bench/run.sh --smoke "$@"
