#!/usr/bin/env bash
# bench/growth/console-pages.sh [DATABASE]: the server time of each console
# page at the size of a database bench/growth/run.sh prefilled (kept with
# GROWTH_KEEP=1; default the 30M-event one): curl's time to first byte on
# loopback, 20 requests a page after one untimed, the worker's release build
# (target-bench). Prints a Markdown table.
set -euo pipefail
db=${1:-twilio_status_growth_10000000}
cd "$(dirname "$0")/../.."
PG="-X -q -h 127.0.0.1 -U postgres"
DATABASE_URL=postgres://postgres@127.0.0.1:5432/$db AMQP_TOPOLOGY_PREFIX=console.timing WORKER_ADDR=127.0.0.1:18591 \
  WORKER_AUTO_MIGRATE=false RUST_LOG=warn target-bench/release/worker > "${TMPDIR:-/tmp}/console-pages-worker.log" 2>&1 &
pid=$!
trap 'kill $pid; wait $pid 2>/dev/null; target-bench/release/loadgen delete-topology --prefix console.timing >/dev/null 2>&1 || true' EXIT
for _ in $(seq 60); do curl -sf localhost:18591/healthz >/dev/null && break; sleep 1; done
mapfile -t tos < <(psql $PG -d "$db" -At -c "SELECT to_address FROM messages TABLESAMPLE SYSTEM (0.01) LIMIT 20")
mapfile -t sids < <(psql $PG -d "$db" -At -c "SELECT message_sid FROM messages TABLESAMPLE SYSTEM (0.01) LIMIT 20")
time_page() { # label, then one URL per request
  local label=$1; shift
  curl -s -o /dev/null "$1"
  for url in "$@"; do curl -s -o /dev/null -w '%{time_starttransfer}\n' "$url"; done |
    sort -n | awk -v l="$label" '{ t[NR] = $1 * 1000 } END { printf "| %s | %.1f | %.1f |\n", l, t[int((NR + 1) / 2)], t[NR] }'
}
enc() { python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$1"; }
B=http://127.0.0.1:18591/console
echo "| console page | median ms | max ms |"
echo "|---|---|---|"
time_page "search an address (\`/console/?q=<recipient>\`)" $(for t in "${tos[@]}"; do echo "$B/?q=$(enc "$t")"; done)
time_page "search the sender, failed, last 24 h" $(for _ in $(seq 20); do echo "$B/?q=%2B15017122661&by=from&status=failed&since=24h"; done)
time_page "search error 30007, any time" $(for _ in $(seq 20); do echo "$B/?error_code=30007"; done)
time_page "a message (\`/console/messages/<sid>\`)" $(for s in "${sids[@]}"; do echo "$B/messages/$s"; done)
time_page "dead letters (empty queue)" $(for _ in $(seq 20); do echo "$B/dead-letters"; done)
# /stats answers are reused for 10 s: each of these is 11 s after the last, so computed.
for since in 1h 24h; do
  for i in 1 2 3; do sleep 11; curl -s -o /dev/null -w '%{time_starttransfer}\n' "$B/outcomes?since=$since"; done |
    sort -n | awk -v l="outcomes, since=$since, computed (a cached answer is reused for 10 s)" '{ t[NR] = $1 * 1000 } END { printf "| %s | %.1f | %.1f |\n", l, t[2], t[3] }'
done
time_page "outcomes, since=1h, cached" $(for _ in $(seq 20); do echo "$B/outcomes?since=1h"; done)
