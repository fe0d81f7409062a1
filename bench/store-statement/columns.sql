(SELECT array_agg(decode(md5(random()::text), 'hex'))::text AS c1,
        array_agg(m.sid)::text AS c2,
        array_agg(s.status)::text AS c3, array_agg(s.rank)::text AS c4,
        array_agg(s.prec)::text AS c5, array_agg(s.bit)::text AS c6,
        array_agg(NULL::integer)::text AS c7,
        array_agg(jsonb_build_object('MessageStatus', s.status, 'SmsStatus', s.status, 'To', '+15558675310', 'From', '+15017122661', 'AccountSid', 'AC8f4b1e2c3d4a5b6c7d8e9f0a1b2c3d4e', 'ApiVersion', '2010-04-01', 'MessageSid', 'SMxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx', 'SmsSid', 'SMxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx', 'MessagingServiceSid', 'MG2172dd2db502e20dd981ef0d67850e1a'))::text AS c8,
        array_agg(false)::text AS c9, array_agg(gen_random_uuid()::text)::text AS c10,
        array_agg(gen_random_uuid())::text AS c11, array_agg(now())::text AS c12,
        array_agg(false)::text AS c13,
        array_agg('AC8f4b1e2c3d4a5b6c7d8e9f0a1b2c3d4e'::text)::text AS c14,
        array_agg('+15017122661'::text)::text AS c15, array_agg('+1555' || lpad((hashtext(m.sid) & 8388607)::text, 7, '0'))::text AS c16,
        array_agg('callback'::text)::text AS c17,
        array_agg('00-' || md5(random()::text) || '-' || substr(md5(random()::text), 1, 16) || '-01')::text AS c18
 FROM generate_series(1, 256) g
 CROSS JOIN LATERAL (SELECT {message_sid} AS sid WHERE g > 0) m
 CROSS JOIN LATERAL (SELECT * FROM (VALUES ('queued', 1, 10, 0), ('sent', 3, 30, 0), ('delivered', 4, 45, 1)) v(status, rank, prec, bit)
                     WHERE g > 0 ORDER BY random() LIMIT 1) s)
