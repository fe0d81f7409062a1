# CPU per callback, before and after: sourced by bench/run.sh.
#
# The pipeline of this checkout and, with BENCH_BASELINE=<git revision>,
# the same pipeline built from that revision, each on a database and a
# topology of its own, take the same closed-loop load (CONCURRENCY
# connections, CPU_REQUESTS callbacks with the usual mix) with the worker
# running, twice each, alternately. Each round counts the CPU (utime +
# stime) of ingest, the worker, RabbitMQ and every Postgres process from the
# first request until the last callback is stored, per 1,000 callbacks
# stored. bench/instructions.sh then counts instructions per callback in
# each build's ingest and worker (skipped with --smoke, or without valgrind).
#
# Uses run.sh's snap, delta, per_1k, check_run, start_*/stop_*, psql_admin.

CPU_BUILDS=(current)
declare -A CPU_BIN=([current]=$BIN)
declare -A CPU_LABEL=([current]="this commit ($COMMIT_SHORT)")

# cpu_baseline_build: the baseline's ingest and worker, built once per revision
# into $CARGO_TARGET_DIR/baseline-<rev>/ (a target directory of its own, so the
# checkout's build is left alone).
cpu_baseline_build() {
  local rev dir src
  rev=$(git -C "$ROOT" rev-parse --short "$BENCH_BASELINE^{commit}") ||
    { echo "bench/run.sh: BENCH_BASELINE=$BENCH_BASELINE is not a revision" >&2; exit 2; }
  dir=$CARGO_TARGET_DIR/baseline-$rev
  if [ ! -x "$dir/ingest" ] || [ ! -x "$dir/worker" ]; then
    say "building the baseline $rev ($PROFILE) into $dir"
    src=$WORK/baseline-src
    git -C "$ROOT" worktree add --detach --force "$src" "$rev" >/dev/null 2>&1
    (cd "$src" && CARGO_TARGET_DIR=$CARGO_TARGET_DIR/baseline-target \
      cargo build --quiet --profile "$PROFILE" -p ingest -p worker)
    mkdir -p "$dir"
    cp "$CARGO_TARGET_DIR/baseline-target/$PROFILE_DIR/ingest" "$CARGO_TARGET_DIR/baseline-target/$PROFILE_DIR/worker" "$dir/"
    git -C "$ROOT" worktree remove --force "$src"
  fi
  CPU_BUILDS=(baseline current)
  CPU_BIN[baseline]=$dir
  CPU_LABEL[baseline]="baseline ($rev)"
}

# cpu_round NAME ROUND: one round of the load on build NAME's own pipeline.
cpu_round() {
  local name=$1 round=$2 db url saved_bin=$BIN saved_prefix=$PREFIX
  db=${DB_NAME}_cpu_$name
  url=$PG_SERVER/$db
  BIN=${CPU_BIN[$name]}
  PREFIX=$saved_prefix.cpu-$name
  if [ "$round" = 1 ]; then
    psql_admin -c "CREATE DATABASE $db" >/dev/null
    DATABASE_URL=$url AMQP_TOPOLOGY_PREFIX=$PREFIX LOG_FORMAT=json RUST_LOG=warn \
      "$BIN/worker" migrate >>"$WORK/migrate.log" 2>&1
  fi
  start_ingest
  start_worker "$url"
  sleep 1
  snap "cpu_${name}_${round}_0"
  "$LOADGEN" run --url "$INGEST_URL/twilio/status" --token "$TOKEN" "${MIX[@]}" --json \
    --concurrency "$CONCURRENCY" --requests "$CPU_REQUESTS" >"$WORK/cpu-$name-$round.json" ||
    fail "cpu $name round $round: unexpected answers"
  check_run "cpu-$name-$round" "cpu-$name-$round-stored" "$url" ||
    fail "cpu $name round $round: stored rows do not match the accepted callbacks"
  snap "cpu_${name}_${round}_1"
  stop_ingest
  stop_worker
  BIN=$saved_bin
  PREFIX=$saved_prefix
}

cpu_cleanup() {
  local name
  for name in "${CPU_BUILDS[@]}"; do
    "$LOADGEN" delete-topology --prefix "$PREFIX.cpu-$name" >/dev/null 2>&1 || true
    psql_admin -c "DROP DATABASE IF EXISTS ${DB_NAME}_cpu_$name WITH (FORCE)" >/dev/null 2>&1 || true
  done
}

cpu_phase() {
  local round name
  for round in 1 2; do
    for name in "${CPU_BUILDS[@]}"; do
      say "CPU per callback: ${CPU_LABEL[$name]}, $CPU_REQUESTS callbacks, worker running (round $round)"
      cpu_round "$name" "$round"
    done
  done
  CPU_INSTRUCTIONS=0
  if [ "$SMOKE" = 0 ] && command -v valgrind >/dev/null && command -v callgrind_control >/dev/null; then
    CPU_INSTRUCTIONS=1
    for name in "${CPU_BUILDS[@]}"; do
      say "instructions per callback: ${CPU_LABEL[$name]} (callgrind)"
      "$ROOT/bench/instructions.sh" --bin "${CPU_BIN[$name]}" --label "$name" --json "$WORK/instructions-$name.json" \
        >/dev/null 2>>"$WORK/instructions.log" || { fail "bench/instructions.sh for $name"; CPU_INSTRUCTIONS=0; }
    done
  fi
}

# cpu_part NAME FIELD: CPU ms per 1,000 stored over both rounds; FIELD 4 ingest,
# 5 worker, 6 RabbitMQ, 7 Postgres, "all" the four.
cpu_part() {
  local ticks=0 rows=0 round f fields=$2
  [ "$2" = all ] && fields="4 5 6 7"
  for round in 1 2; do
    for f in $fields; do
      ticks=$(awk -v t="$ticks" -v d="$(delta "cpu_$1_${round}_0" "cpu_$1_${round}_1" "$f")" 'BEGIN { print t + d }')
    done
    rows=$((rows + $(j "cpu-$1-$round-stored" .rows)))
  done
  per_1k "$ticks" "$rows" | awk '{ printf "%.0f", $1 * 1000 }'
}
# cpu_mean NAME JQ: the mean of a figure of both rounds' load reports.
cpu_mean() {
  jq -s "map($2) | add / length" "$WORK/cpu-$1-1.json" "$WORK/cpu-$1-2.json"
}

# cpu_row LABEL FIELD: one part's row, with the ratio when there is a baseline.
cpu_row() {
  if [ "${#CPU_BUILDS[@]}" = 2 ]; then
    echo "| $1 | $(cpu_part baseline "$2") | $(cpu_part current "$2") | $(ratio "$(cpu_part current "$2")" "$(cpu_part baseline "$2")") |"
  else
    echo "| $1 | $(cpu_part current "$2") |"
  fi
}

# cpu_report: the section of BENCHMARKS.md.
cpu_report() {
  echo "## CPU per callback"
  echo
  echo "Closed loop, $CONCURRENCY connections, $CPU_REQUESTS callbacks a round (the usual mix), worker running and the change feed on, at the services' shipped log level (info); twice per build, alternately, each build on a database and topology of its own. CPU (utime + stime from /proc) of every process of the pipeline from the first request until the last callback is stored, in ms per 1,000 callbacks stored."
  echo
  if [ "${#CPU_BUILDS[@]}" = 2 ]; then
    echo "| part | ${CPU_LABEL[baseline]} | ${CPU_LABEL[current]} | after ÷ before |"
    echo "|---|---|---|---|"
    cpu_row ingest 4
    cpu_row worker 5
    cpu_row RabbitMQ 6
    cpu_row Postgres 7
    cpu_row "**whole pipeline**" all
    echo "| accepted callbacks/s (mean of the rounds) | $(num "$(cpu_mean baseline .accepted_per_s)") | $(num "$(cpu_mean current .accepted_per_s)") | $(ratio "$(cpu_mean current .accepted_per_s)" "$(cpu_mean baseline .accepted_per_s)") |"
    echo "| ingest latency p99 ms (mean of the rounds) | $(num "$(cpu_mean baseline .latency_ms.p99)" 1) | $(num "$(cpu_mean current .latency_ms.p99)" 1) | |"
    if [ "$CPU_INSTRUCTIONS" = 1 ]; then
      echo "| instructions per callback, ingest (callgrind) | $(jq .ingest "$WORK/instructions-baseline.json") | $(jq .ingest "$WORK/instructions-current.json") | $(ratio "$(jq .ingest "$WORK/instructions-current.json")" "$(jq .ingest "$WORK/instructions-baseline.json")") |"
      echo "| instructions per callback, worker (callgrind) | $(jq .worker "$WORK/instructions-baseline.json") | $(jq .worker "$WORK/instructions-current.json") | $(ratio "$(jq .worker "$WORK/instructions-current.json")" "$(jq .worker "$WORK/instructions-baseline.json")") |"
    fi
  else
    echo "| part | ${CPU_LABEL[current]} |"
    echo "|---|---|"
    cpu_row ingest 4
    cpu_row worker 5
    cpu_row RabbitMQ 6
    cpu_row Postgres 7
    cpu_row "**whole pipeline**" all
    echo "| accepted callbacks/s (mean of the rounds) | $(num "$(cpu_mean current .accepted_per_s)") |"
    if [ "$CPU_INSTRUCTIONS" = 1 ]; then
      echo "| instructions per callback, ingest / worker (callgrind) | $(jq .ingest "$WORK/instructions-current.json") / $(jq .worker "$WORK/instructions-current.json") |"
    fi
  fi
  echo
  echo "- Against a bare actix-web handler in this run ($(num "$HTTP_CEILING") req/s, *HTTP ceiling* above): this commit's pipeline, worker running, answers $(ratio "$(cpu_mean current .accepted_per_s)" "$HTTP_CEILING") of its rate."
  echo "- The seed's design (Next.js + Prisma + Postgres) cannot run here: Prisma fetches its query engine from binaries.prisma.sh, which this machine cannot reach. Issue 29 measured it at 1,785 CPU-ms per 1,000 stored callbacks and 711 callbacks/s on this kind of machine; against those figures this commit's pipeline uses $(awk -v s=1785 -v c="$(cpu_part current all)" 'BEGIN { if (c > 0) printf "%.1fx", s / c; else printf "n/a" }') less CPU per callback and answers $(awk -v s=711 -v c="$(cpu_mean current .accepted_per_s)" 'BEGIN { if (c > 0) printf "%.1fx", c / s; else printf "n/a" }') its rate (not the same run: this machine's speed varies by 2x from day to day, so these two ratios are indicative only)."
  echo "- Instructions are counted under valgrind, which hides the CPU's SHA extensions: the signature's SHA-1 runs in software there, in hardware in production."
}
