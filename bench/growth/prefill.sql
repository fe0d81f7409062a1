-- Prefills the history and the projection with realistic message lifecycles,
-- in SQL, for messages :first .. :last (run in chunks, one transaction each).
-- A message is sent :spread_s seconds after the one before; message :newest
-- (default :last, so each chunk ends now and chunks overlap in time) is sent
-- now. Lifecycles: queued → sent → delivered (80%), delivered then read (5%),
-- undelivered 30003 (10%) or failed 30007 after queued (5%). Raw payloads
-- carry the parameters Twilio sends, at their real size.
\set ON_ERROR_STOP on
\if :{?newest}
\else
\set newest :last
\endif
BEGIN;
CREATE TEMP TABLE lifecycle ON COMMIT DROP AS
SELECT i,
       'SM' || lpad(to_hex(i), 32, '0') AS sid,
       now() - ((:newest - i) * :spread_s) * interval '1 second' AS sent_at,
       CASE WHEN i % 20 = 0 THEN 'failed'
            WHEN i % 10 = 1 THEN 'undelivered'
            WHEN i % 20 = 3 THEN 'read'
            ELSE 'delivered' END AS outcome
FROM generate_series(:first, :last) AS i;

CREATE TEMP TABLE events ON COMMIT DROP AS
SELECT l.sid, e.status, e.rank, e.error_code, l.sent_at + e.after AS received_at
FROM lifecycle l
CROSS JOIN LATERAL (VALUES
    ('queued', 1::smallint, NULL::int, interval '0'),
    ('sent', 3::smallint, NULL::int, interval '1 second')
  ) AS e(status, rank, error_code, after)
WHERE e.status = 'queued' OR l.outcome <> 'failed'
UNION ALL
SELECT l.sid, o.status, o.rank, o.error_code, l.sent_at + o.after
FROM lifecycle l
CROSS JOIN LATERAL (VALUES
    ('delivered', 4::smallint, NULL::int, interval '6 seconds', l.outcome IN ('delivered', 'read')),
    ('read', 5::smallint, NULL::int, interval '95 seconds', l.outcome = 'read'),
    ('undelivered', 4::smallint, 30003, interval '25 seconds', l.outcome = 'undelivered'),
    ('failed', 4::smallint, 30007, interval '2 seconds', l.outcome = 'failed')
  ) AS o(status, rank, error_code, after, applies)
WHERE o.applies;

-- The days' partitions first, as the worker makes them.
SELECT message_status_events_partition(day)
FROM (SELECT DISTINCT (received_at AT TIME ZONE 'UTC')::date AS day FROM events) AS days;

INSERT INTO message_status_events
  (received_at, persisted_at, request_id, error_code, status_rank, json_body, dedup_key,
   message_sid, status, source, idempotency_token, raw_payload)
SELECT e.received_at,
       e.received_at + interval '20 milliseconds',
       gen_random_uuid(),
       e.error_code, e.rank, false,
       substr(sha256(convert_to(e.sid || e.status, 'UTF8')), 1, 16),
       e.sid, e.status, 'callback',
       gen_random_uuid()::text,
       jsonb_strip_nulls(jsonb_build_object(
         'AccountSid', 'AC8f4b1e2c3d4a5b6c7d8e9f0a1b2c3d4e',
         'ApiVersion', '2010-04-01',
         'ErrorCode', e.error_code::text,
         'From', '+15017122661',
         'MessageSid', e.sid,
         'MessageStatus', e.status,
         'MessagingServiceSid', 'MG2172dd2db502e20dd981ef0d67850e1a',
         'RawDlrDoneDate', CASE WHEN e.status = 'delivered' THEN to_char(e.received_at, 'YYMMDDHH24MI') END,
         'SmsSid', e.sid,
         'SmsStatus', e.status,
         'To', '+1555' || lpad((hashtext(e.sid) & 8388607)::text, 7, '0')))
FROM events e
ORDER BY e.received_at;

INSERT INTO messages
  (message_sid, status, status_rank, status_precedence, error_code, account_sid, from_address,
   to_address, first_seen_at, last_seen_at, event_count, terminal_outcomes, conflicting_outcomes,
   updated_at, final_at)
SELECT l.sid, l.outcome,
       CASE l.outcome WHEN 'read' THEN 5 ELSE 4 END,
       CASE l.outcome WHEN 'read' THEN 50 WHEN 'delivered' THEN 45 WHEN 'undelivered' THEN 43
                      ELSE 42 END,
       CASE l.outcome WHEN 'undelivered' THEN 30003 WHEN 'failed' THEN 30007 END,
       'AC8f4b1e2c3d4a5b6c7d8e9f0a1b2c3d4e', '+15017122661',
       '+1555' || lpad((hashtext(l.sid) & 8388607)::text, 7, '0'),
       l.sent_at, max(e.received_at), count(*)::int,
       CASE l.outcome WHEN 'undelivered' THEN 2 WHEN 'failed' THEN 4 ELSE 1 END,
       false, now(), min(e.received_at) FILTER (WHERE e.rank >= 4)
FROM lifecycle l JOIN events e ON e.sid = l.sid
GROUP BY l.sid, l.outcome, l.sent_at;
COMMIT;
