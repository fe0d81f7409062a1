#!/usr/bin/env bash
# Issue 17's first step: how the history grows. For each size (messages;
# 3 events each on average), prefills a database of its own with realistic
# lifecycles in SQL (bench/growth/prefill.sql, 250,000 messages a
# transaction), then reports rows, bytes per event (table + indexes +
# TOAST) and the plans of the queries that must not scan the history.
#   bench/growth/run.sh 300000 3000000        # sizes in messages
# Disk: about 800 bytes per event today (3M events ≈ 2.4 GB). Not part of CI.
# Still to add: the worker's drain rate and the read API's p99 at each size
# (bench/run.sh measures both against an empty database).
set -euo pipefail
cd "$(dirname "$0")/../.."
PG="-h 127.0.0.1 -U postgres"
CHUNK=250000
SPREAD_S=${SPREAD_S:-0.05}   # seconds between messages: 20 messages/s
cargo build -q -p worker

for size in "$@"; do
  db="twilio_status_growth_$size"
  psql $PG -q -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
  DATABASE_URL="postgres://postgres@127.0.0.1:5432/$db" target/debug/worker migrate 2>/dev/null
  started=$(date +%s)
  for ((first = 1; first <= size; first += CHUNK)); do
    last=$((first + CHUNK - 1 < size ? first + CHUNK - 1 : size))
    psql $PG -d "$db" -q -v first="$first" -v last="$last" -v spread_s="$SPREAD_S" \
      -f bench/growth/prefill.sql
  done
  psql $PG -d "$db" -q -c "VACUUM ANALYZE"
  echo "## $size messages (prefilled in $(($(date +%s) - started)) s)"
  psql $PG -d "$db" -At -F ' | ' -c "
    SELECT 'events', count(*),
      pg_size_pretty(pg_total_relation_size('message_status_events')),
      round(pg_total_relation_size('message_status_events')::numeric / count(*)) || ' bytes/event',
      'table ' || pg_size_pretty(pg_relation_size('message_status_events'))
        || ', indexes ' || pg_size_pretty(pg_indexes_size('message_status_events'))
        || ', TOAST ' || pg_size_pretty(pg_total_relation_size('message_status_events')
             - pg_relation_size('message_status_events') - pg_indexes_size('message_status_events'))
    FROM message_status_events
    UNION ALL
    SELECT 'messages', count(*), pg_size_pretty(pg_total_relation_size('messages')),
      round(pg_total_relation_size('messages')::numeric / count(*)) || ' bytes/message', ''
    FROM messages"
  sid=$(psql $PG -d "$db" -At -c "SELECT message_sid FROM messages ORDER BY random() LIMIT 1")
  explain() {
    echo; echo "$1:"; echo '```'
    psql $PG -d "$db" -At -c "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, SUMMARY ON) $2"
    echo '```'
  }
  explain "GET /messages/{sid}: the message" "SELECT * FROM messages WHERE message_sid = '$sid'"
  explain "GET /messages/{sid}: its history" \
    "SELECT * FROM message_status_events WHERE message_sid = '$sid' ORDER BY received_at, id"
  explain "stuck in sent for 12 hours" \
    "SELECT message_sid FROM messages WHERE status = 'sent' AND status_precedence >= 0
       AND last_seen_at < now() - interval '12 hours' ORDER BY last_seen_at LIMIT 100"
  explain "contradictions" "SELECT message_sid FROM messages WHERE conflicting_outcomes LIMIT 100"
done
