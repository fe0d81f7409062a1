#!/usr/bin/env bash
# The cost of a change to the worker's store statement (STORE_BATCH), against
# the statement of another revision, in the same run on the same database:
#   bench/store-statement/run.sh [BASE_REV]   (default: the previous commit)
# Each round runs the base and the current statement for 30 s (pgbench, two
# clients, 256-row batches of random lifecycles over 200,000 messages, each
# to a recipient of its own), each
# on emptied tables; prints batches/s and the ratio. Needs psql and pgbench;
# the schema is the current one (migrated by `worker migrate`), so BASE_REV
# must share it and have the example (from the commit after f46a0f3 on). Each revision's
# statement is printed by its `store_statement` example (the base's built in
# a temporary worktree; BASE_STATEMENT=FILE reads it from a file that example
# printed instead). Both input forms are understood (extract.py): one JSON
# document, or one typed array per column.
# What a schema change (an index) costs the statement: BASE_SQL and
# CURRENT_SQL are run on the emptied tables before each base and current
# round, e.g. BASE_SQL='DROP INDEX IF EXISTS new_idx' CURRENT_SQL='CREATE
# INDEX IF NOT EXISTS new_idx ON ...' with BASE_STATEMENT the current one.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
BASE=${1:-HEAD~1}
ROUNDS=${ROUNDS:-4}
DB=${DB:-twilio_status_statement_bench}
PG="-h 127.0.0.1 -U postgres"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

if [ -n "${BASE_STATEMENT:-}" ]; then
  python3 bench/store-statement/extract.py <"$BASE_STATEMENT" >"$WORK/base.sql"
else
  git worktree add -q --detach "$WORK/base" "$BASE"
  trap 'git worktree remove --force "$WORK/base"; rm -rf "$WORK"' EXIT
  # A target dir of its own: cargo names workspace crates' artifacts without
  # their path, so the base's would pass for the current ones in a shared one.
  (cd "$WORK/base" && CARGO_TARGET_DIR="$ROOT/target/bench-base" cargo run -q -p worker --example store_statement) |
    python3 bench/store-statement/extract.py >"$WORK/base.sql"
fi
cargo run -q -p worker --example store_statement | python3 bench/store-statement/extract.py >"$WORK/current.sql"
psql $PG -q -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB"
cargo build -q -p worker
DATABASE_URL="postgres://postgres@127.0.0.1:5432/$DB" target/debug/worker migrate 2>/dev/null

declare -A total=([base]=0 [current]=0)
for round in $(seq 1 "$ROUNDS"); do
  for which in base current; do
    psql $PG -d "$DB" -qc "TRUNCATE message_status_events, messages, message_changes"
    schema_sql=BASE_SQL; [ "$which" = current ] && schema_sql=CURRENT_SQL
    [ -z "${!schema_sql:-}" ] || psql $PG -d "$DB" -q -c "SET client_min_messages = warning" -c "${!schema_sql}"
    tps=$(pgbench $PG -n -c 2 -j 2 -T 30 -f "$WORK/$which.sql" "$DB" 2>/dev/null | grep -oP 'tps = \K[0-9.]+' | head -1)
    echo "round $round $which: $tps batches/s"
    total[$which]=$(awk -v a="${total[$which]}" -v b="$tps" 'BEGIN { print a + b }')
  done
done
awk -v b="${total[base]}" -v c="${total[current]}" -v n="$ROUNDS" \
  'BEGIN { printf "mean: base %.1f, current %.1f batches/s; current / base = %.2f\n", b / n, c / n, c / b }'
psql $PG -qc "DROP DATABASE $DB"
