#!/usr/bin/env bash
# Heavy readers against the writers (issue 25): READERS clients loop on
# GET /stats over MESSAGES messages while callbacks stream through ingest
# into the worker at RATE a second for SECS seconds; the readers ask for the
# same window (`since=24h`, as dashboards poll) or each for its own (`until`
# = now, so no answer can be reused). Reports, for the current worker and
# for BASE_REV's in the same run on the same database:
# the share of /readyz samples (every 250 ms) that were 200, the reads
# answered and their statuses, the slowest read, and whether every callback
# was stored.
#
#   bench/readers.sh [BASE_REV]        (default d551932, before issue 25)
#
# Debug builds (the cost is Postgres's); needs psql, RabbitMQ and Postgres
# on 127.0.0.1. Not part of CI. Environment: MESSAGES (1500000), READERS
# (16), RATE (30), SECS (60).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BASE=${1:-d551932}
MESSAGES=${MESSAGES:-1500000}
READERS=${READERS:-16}
RATE=${RATE:-30}
SECS=${SECS:-60}
DB=twilio_status_readers_bench
URL="postgres://postgres@127.0.0.1:5432/$DB"
PG="-h 127.0.0.1 -U postgres"
TOKEN=readers-bench-token
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  git worktree remove --force "$WORK/base" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

git worktree add -q --detach "$WORK/base" "$BASE"
(cd "$WORK/base" && CARGO_TARGET_DIR="$ROOT/target/bench-base" cargo build -q -p worker)
cargo build -q -p worker -p ingest -p loadgen

psql $PG -q -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB"
DATABASE_URL=$URL target/debug/worker migrate 2>/dev/null
echo "prefilling $MESSAGES messages first seen in the last 24 h"
psql $PG -d "$DB" -q -c "
  INSERT INTO messages (message_sid, status, status_rank, status_precedence, error_code,
    account_sid, from_address, to_address, first_seen_at, last_seen_at, event_count, final_at)
  SELECT 'SM' || md5(n::text), (ARRAY['sent','delivered','undelivered'])[1 + n % 3],
    3 + sign(n % 3)::int, 30 + 10 * sign(n % 3)::int, CASE WHEN n % 3 = 2 THEN 30003 END,
    'AC00000000000000000000000000000000', '+15017122661', '+1555' || lpad((n % 10000000)::text, 7, '0'),
    now() - (n % 86000) * interval '1 second', now(), 3, CASE WHEN n % 3 > 0 THEN now() END
  FROM generate_series(1, $MESSAGES) AS n" -c "VACUUM ANALYZE messages"

measure() { # name worker-binary windows(same|distinct)
  local name=$1 worker=$2 windows=$3 prefix="bench.readers.$1.$3.$$"
  AMQP_TOPOLOGY_PREFIX=$prefix DATABASE_URL=$URL WORKER_ADDR=127.0.0.1:18081 \
    WORKER_AUTO_MIGRATE=false RUST_LOG=warn "$worker" 2>"$WORK/$name-worker.log" &
  PIDS+=($!)
  AMQP_TOPOLOGY_PREFIX=$prefix TWILIO_AUTH_TOKEN=$TOKEN INGEST_ADDR=127.0.0.1:18080 \
    INGEST_SPOOL_DIR="$WORK/$name-spool" RUST_LOG=warn target/debug/ingest 2>"$WORK/$name-ingest.log" &
  PIDS+=($!)
  for _ in $(seq 1 60); do
    curl -sf http://127.0.0.1:18081/readyz >/dev/null && curl -sf http://127.0.0.1:18080/readyz >/dev/null && break
    sleep 1
  done
  python3 - "$name" "$READERS" "$SECS" "$windows" <<'PY' &
import concurrent.futures, datetime, json, sys, time, urllib.parse, urllib.request, urllib.error
name, readers, secs, windows = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
deadline = time.time() + secs
def get(url, timeout=60):
    started = time.time()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            r.read(); status = r.status
    except urllib.error.HTTPError as e:
        status = e.code
    except Exception:
        status = 0
    return status, time.time() - started
def reader():
    out = []
    while time.time() < deadline:
        url = "http://127.0.0.1:18081/stats?since=24h"
        if windows == "distinct":
            now = datetime.datetime.now(datetime.timezone.utc).isoformat()
            url += "&until=" + urllib.parse.quote(now)
        out.append(get(url))
    return out
def sampler():
    out = []
    while time.time() < deadline:
        out.append(get("http://127.0.0.1:18081/readyz", timeout=5)[0]); time.sleep(0.25)
    return out
with concurrent.futures.ThreadPoolExecutor(readers + 1) as pool:
    ready = pool.submit(sampler)
    reads = [r for f in [pool.submit(reader) for _ in range(readers)] for r in f.result()]
    ready = ready.result()
statuses = {}
for status, _ in reads: statuses[status] = statuses.get(status, 0) + 1
print(json.dumps({"worker": name, "windows": windows, "ready_share": round(sum(s == 200 for s in ready) / len(ready), 3),
  "readyz_samples": len(ready), "reads": len(reads), "read_statuses": statuses,
  "slowest_read_s": round(max(t for _, t in reads), 2),
  "p50_read_s": round(sorted(t for _, t in reads)[len(reads) // 2], 3)}))
PY
  local readers_pid=$!
  target/debug/loadgen run --url http://127.0.0.1:18080/twilio/status --token "$TOKEN" \
    --rate "$RATE" --duration "$SECS" --duplicate-ratio 0 --bad-signature-ratio 0 \
    --database-url "$URL" --persist-timeout-secs 120 --json >"$WORK/$name-load.json" || true
  wait "$readers_pid"
  python3 -c "import json,sys; r=json.load(open(sys.argv[1])); p=r.get('persistence') or {}; print(json.dumps({'answers': r.get('status_counts'), 'rows': p.get('rows'), 'expected_rows': p.get('expected_rows'), 'rows_match': p.get('rows_match')}))" "$WORK/$name-load.json" 2>/dev/null \
    || tail -c 600 "$WORK/$name-load.json"
  kill "${PIDS[@]}" 2>/dev/null || true
  wait "${PIDS[@]}" 2>/dev/null || true
  PIDS=()
  target/debug/loadgen delete-topology --prefix "$prefix" >/dev/null 2>&1 || true
}

for windows in same distinct; do
  measure base "$ROOT/target/bench-base/debug/worker" "$windows"
  measure current target/debug/worker "$windows"
done
psql $PG -q -c "DROP DATABASE IF EXISTS $DB"
