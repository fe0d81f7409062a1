(SELECT jsonb_agg(jsonb_build_object(
  'dedup_key', md5(random()::text),
  'message_sid', {message_sid},
  'status', s.status, 'status_rank', s.rank, 'status_precedence', s.prec, 'outcome_bit', s.bit,
  'error_code', NULL,
  'raw_payload', jsonb_build_object('MessageStatus', s.status, 'SmsStatus', s.status, 'To', '+15558675310', 'From', '+15017122661', 'AccountSid', 'AC8f4b1e2c3d4a5b6c7d8e9f0a1b2c3d4e', 'ApiVersion', '2010-04-01', 'MessageSid', 'SMxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx', 'SmsSid', 'SMxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx', 'MessagingServiceSid', 'MG2172dd2db502e20dd981ef0d67850e1a'),
  'json_body', false, 'idempotency_token', gen_random_uuid()::text,
  'request_id', gen_random_uuid(), 'received_at', now(), 'near_midnight', false,
  'account_sid', 'AC8f4b1e2c3d4a5b6c7d8e9f0a1b2c3d4e', 'from_address', '+15017122661',
  'to_address', '+15558675310', 'source', 'callback'))::text
 FROM generate_series(1, 256) g
 CROSS JOIN LATERAL (SELECT * FROM (VALUES ('queued', 1, 10, 0), ('sent', 3, 30, 0), ('delivered', 4, 45, 1)) v(status, rank, prec, bit)
                     WHERE g > 0 ORDER BY random() LIMIT 1) s)
