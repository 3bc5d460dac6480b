-- Every statement of the PostgreSQL store. A statement about a check's data
-- names the check's shard, so that on Citus it goes to one node; the batched
-- ones take one array per column and read them with unnest.

-- name: create_migrations_table
CREATE TABLE IF NOT EXISTS schema_migrations (
    number integer PRIMARY KEY,
    name text NOT NULL,
    applied double precision NOT NULL
);

-- name: lock
SELECT pg_advisory_xact_lock($1::integer, $2::integer);

-- name: migrations_table_exists
SELECT to_regclass('schema_migrations') IS NOT NULL;

-- name: applied_migrations
SELECT number FROM schema_migrations ORDER BY number;

-- name: record_migration
INSERT INTO schema_migrations (number, name, applied)
VALUES ($1, $2, extract(epoch FROM clock_timestamp()));

-- name: get_check
SELECT * FROM checks WHERE shard = $1 AND id = $2;

-- name: lock_checks
SELECT checks.* FROM checks
JOIN unnest($1::integer[], $2::text[]) AS wanted (shard, id)
    ON checks.shard = wanted.shard AND checks.id = wanted.id
ORDER BY checks.shard, checks.id
FOR UPDATE OF checks;

-- name: list_checks
SELECT * FROM checks ORDER BY created, id;

-- name: insert_check
INSERT INTO checks (
    shard, id, name, slug, tags, "desc", kind, timeout, schedule, tz, grace,
    max_runtime, manual_resume, status, n_pings, last_ping, last_start,
    last_start_rid, last_duration, deadline, created, version,
    failure_threshold, recovery_threshold, reminder_every, fail_streak,
    ok_streak, missed, down_since, next_reminder, project
) VALUES (
    $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,
    $17, $18, $19, $20, $21, 0, $22, $23, $24, $25, $26, $27, $28, $29, $30
);

-- name: update_check_config
UPDATE checks SET
    name = $3, slug = $4, tags = $5, "desc" = $6, kind = $7, timeout = $8,
    schedule = $9, tz = $10, grace = $11, max_runtime = $12,
    manual_resume = $13, failure_threshold = $14, recovery_threshold = $15,
    reminder_every = $16, next_reminder = $17, deadline = $18,
    version = version + 1
WHERE shard = $1 AND id = $2 AND version = $19;

-- name: save_states
UPDATE checks SET
    status = s.status, n_pings = s.n_pings, last_ping = s.last_ping,
    last_start = s.last_start, last_start_rid = s.last_start_rid,
    last_duration = s.last_duration, deadline = s.deadline,
    fail_streak = s.fail_streak, ok_streak = s.ok_streak, missed = s.missed,
    down_since = s.down_since, next_reminder = s.next_reminder,
    version = checks.version + 1
FROM unnest(
    $1::integer[], $2::text[], $3::bigint[], $4::float8[], $5::float8[],
    $6::text[], $7::float8[], $8::float8[], $9::integer[], $10::integer[],
    $11::integer[], $12::float8[], $13::float8[], $14::text[], $15::bigint[]
) AS s (
    shard, status, n_pings, last_ping, last_start, last_start_rid,
    last_duration, deadline, fail_streak, ok_streak, missed, down_since,
    next_reminder, id, version
)
WHERE checks.shard = s.shard AND checks.id = s.id
    AND checks.version = s.version
RETURNING checks.id;

-- name: delete_check
DELETE FROM checks WHERE shard = $1 AND id = $2;

-- name: insert_pings
INSERT INTO pings (
    check_id, shard, n, received, kind, exit_status, method, remote_addr,
    user_agent, rid, duration, body
)
SELECT * FROM unnest(
    $1::text[], $2::integer[], $3::bigint[], $4::float8[], $5::text[],
    $6::integer[], $7::text[], $8::text[], $9::text[], $10::text[],
    $11::float8[], $12::bytea[]
);

-- name: recent_pings
SELECT * FROM pings
WHERE shard = $1 AND check_id = $2
ORDER BY n DESC LIMIT $3;

-- name: prune_pings
DELETE FROM pings
USING unnest($1::integer[], $2::text[], $3::bigint[]) AS p (shard, check_id, upto)
WHERE pings.shard = p.shard AND pings.check_id = p.check_id
    AND pings.n <= p.upto;

-- name: last_bodies
SELECT wanted.check_id, last.body
FROM unnest($1::integer[], $2::text[]) AS wanted (shard, check_id)
CROSS JOIN LATERAL (
    SELECT body FROM pings
    WHERE pings.shard = wanted.shard AND pings.check_id = wanted.check_id
    ORDER BY n DESC LIMIT 1
) AS last;

-- name: insert_flips
INSERT INTO flips (
    check_id, shard, at, detected, old_status, new_status, reason,
    exit_status, offline_from, offline_until
)
SELECT
    check_id, shard, at, detected, old_status, new_status, reason,
    exit_status, offline_from, offline_until
FROM unnest(
    $1::text[], $2::integer[], $3::float8[], $4::float8[], $5::text[],
    $6::text[], $7::text[], $8::integer[], $9::float8[], $10::float8[]
) WITH ORDINALITY AS f (
    check_id, shard, at, detected, old_status, new_status, reason,
    exit_status, offline_from, offline_until, position
)
ORDER BY position
RETURNING id;

-- name: recent_flips
SELECT * FROM flips
WHERE shard = $1 AND check_id = $2
ORDER BY id DESC LIMIT $3;

-- name: load_deadlines
SELECT id, shard, deadline, grace FROM checks WHERE deadline IS NOT NULL;

-- name: load_shard_deadlines
SELECT id, shard, deadline, grace FROM checks
WHERE shard = ANY($1::integer[]) AND deadline IS NOT NULL;

-- name: count_checks
SELECT count(*) FROM checks;

-- name: count_by_status
SELECT status, count(*) FROM checks GROUP BY status;

-- name: insert_change
INSERT INTO changes (shard, check_id) VALUES ($1, $2);

-- name: changes_since
SELECT id, check_id FROM changes WHERE id > $1 ORDER BY id LIMIT 10000;

-- name: last_change
SELECT coalesce(max(id), 0) FROM changes;

-- name: get_meta
SELECT value FROM meta WHERE key = $1;

-- name: set_meta
INSERT INTO meta (key, value) VALUES ($1, $2)
ON CONFLICT (key) DO UPDATE SET value = excluded.value;

-- name: insert_channel
INSERT INTO channels (id, name, url, kind, masked_url, created, project)
VALUES ($1, $2, $3, $4, $5, $6, $7);

-- name: get_channel
SELECT * FROM channels WHERE id = $1;

-- name: known_channels
SELECT id FROM channels WHERE id = ANY($1::text[]);

-- name: list_channels
SELECT * FROM channels ORDER BY created, id;

-- name: delete_channel
DELETE FROM channels WHERE id = $1;

-- name: link_channels
INSERT INTO check_channels (shard, check_id, channel_id)
SELECT $1, $2, channel_id FROM unnest($3::text[]) AS linked (channel_id);

-- name: unlink_channels
DELETE FROM check_channels WHERE shard = $1 AND check_id = $2;

-- name: check_channels
SELECT channel_id FROM check_channels
WHERE shard = $1 AND check_id = $2
ORDER BY channel_id;

-- name: channels_of_checks
SELECT check_channels.check_id, check_channels.channel_id
FROM check_channels
JOIN unnest($1::integer[], $2::text[]) AS wanted (shard, check_id)
    ON check_channels.shard = wanted.shard
    AND check_channels.check_id = wanted.check_id
ORDER BY check_channels.check_id, check_channels.channel_id;

-- name: insert_deliveries
INSERT INTO deliveries (
    flip_id, check_id, shard, channel_id, kind, title, body, next_attempt,
    created
)
SELECT
    flip_id, check_id, shard, channel_id, kind, title, body, created, created
FROM unnest(
    $1::bigint[], $2::text[], $3::integer[], $4::text[], $5::text[],
    $6::text[], $7::text[], $8::float8[]
) WITH ORDINALITY AS d (
    flip_id, check_id, shard, channel_id, kind, title, body, created,
    position
)
ORDER BY position
RETURNING id;

-- name: expired_claims
UPDATE deliveries SET state = 'pending', claimed_until = NULL
WHERE state = 'sending' AND claimed_until < $1;

-- name: claim_deliveries
-- Of the earliest due deliveries of channels not crowded that wait for no
-- earlier one of their check to the same channel (those that do must not fill
-- the window: a channel failing with a backlog would hold back every other
-- channel's alerts), alerts before reminders. The limits count messages: a
-- channel with at least $6 waiting is in a storm and its deliveries go out $7
-- to a message (a digest), else one each; a channel gets at most $5 messages
-- and the claim at most $3. SKIP LOCKED lets several notifiers claim at once.
WITH due AS (
    SELECT shard, id, check_id, channel_id, kind, next_attempt
    FROM deliveries AS head
    WHERE state = 'pending' AND next_attempt <= $2
        AND channel_id <> ALL($4::text[])
        AND NOT EXISTS (
            SELECT 1 FROM deliveries AS earlier
            WHERE earlier.shard = head.shard AND earlier.check_id = head.check_id
                AND earlier.channel_id = head.channel_id AND earlier.id < head.id
                AND earlier.state IN ('pending', 'sending')
        )
    ORDER BY next_attempt LIMIT $8
),
ready AS (
    SELECT due.*,
        row_number() OVER (
            PARTITION BY due.channel_id
            ORDER BY due.kind = 'reminder', due.next_attempt, due.id
        ) AS nth,
        count(*) OVER (PARTITION BY due.channel_id) AS waiting
    FROM due
),
messages AS (
    SELECT ready.*,
        CASE WHEN waiting >= $6 THEN (nth - 1) / $7 ELSE nth - 1 END AS message
    FROM ready
),
keyed AS (
    SELECT messages.*,
        bool_and(kind = 'reminder') OVER same_message AS reminders_only,
        min(next_attempt) OVER same_message AS first_due
    FROM messages
    WHERE message < $5
    WINDOW same_message AS (PARTITION BY channel_id, message)
),
ranked AS (
    SELECT keyed.*, dense_rank() OVER (
        ORDER BY reminders_only, first_due, channel_id, message
    ) AS nth_message
    FROM keyed
),
chosen AS (
    SELECT deliveries.shard, deliveries.id FROM deliveries
    JOIN ranked ON ranked.shard = deliveries.shard AND ranked.id = deliveries.id
    WHERE ranked.nth_message <= $3 AND deliveries.state = 'pending'
    FOR UPDATE OF deliveries SKIP LOCKED
)
UPDATE deliveries SET
    state = 'sending', claimed_until = $1, attempts = deliveries.attempts + 1
FROM chosen, channels
WHERE deliveries.shard = chosen.shard AND deliveries.id = chosen.id
    AND channels.id = deliveries.channel_id
RETURNING deliveries.*, channels.url;

-- name: finish_deliveries
-- Only those still claimed: a removed channel or check took its own away.
UPDATE deliveries SET
    state = $3, next_attempt = $4, claimed_until = NULL, finished = $5
FROM unnest($1::integer[], $2::bigint[]) AS done (shard, id)
WHERE deliveries.shard = done.shard AND deliveries.id = done.id
    AND deliveries.state = 'sending'
RETURNING deliveries.shard, deliveries.id, deliveries.channel_id;

-- name: insert_attempts
INSERT INTO attempts (shard, delivery_id, at, ok, error, latency)
SELECT shard, id, $3, $4, $5, $6
FROM unnest($1::integer[], $2::bigint[]) AS done (shard, id);

-- name: channel_result
UPDATE channels SET last_attempt = $2, last_ok = $3, last_error = $4
WHERE id = $1;

-- name: channel_results
UPDATE channels SET last_attempt = $2, last_ok = $3, last_error = $4
WHERE id = ANY($1::text[]);

-- name: next_delivery_at
-- The first due of the deliveries that wait for no earlier one.
SELECT next_attempt FROM deliveries AS head
WHERE state = 'pending' AND NOT EXISTS (
    SELECT 1 FROM deliveries AS earlier
    WHERE earlier.shard = head.shard AND earlier.check_id = head.check_id
        AND earlier.channel_id = head.channel_id AND earlier.id < head.id
        AND earlier.state IN ('pending', 'sending')
)
ORDER BY next_attempt LIMIT 1;

-- name: release_claims
UPDATE deliveries SET state = 'pending', claimed_until = NULL
WHERE state = 'sending';

-- name: drop_reminders
DELETE FROM deliveries
USING unnest($1::integer[], $2::text[]) AS dropped (shard, check_id)
WHERE deliveries.shard = dropped.shard
    AND deliveries.check_id = dropped.check_id
    AND deliveries.kind = 'reminder' AND deliveries.state = 'pending';

-- name: pending_reminders
SELECT deliveries.check_id, deliveries.channel_id FROM deliveries
JOIN unnest($1::integer[], $2::text[]) AS wanted (shard, check_id)
    ON deliveries.shard = wanted.shard
    AND deliveries.check_id = wanted.check_id
WHERE deliveries.kind = 'reminder' AND deliveries.state = 'pending';

-- name: recent_attempts
SELECT attempts.at, attempts.ok, attempts.error, attempts.latency,
    deliveries.kind, deliveries.flip_id, deliveries.channel_id,
    deliveries.state, channels.name AS channel_name
FROM attempts
JOIN deliveries
    ON deliveries.shard = attempts.shard AND deliveries.id = attempts.delivery_id
JOIN channels ON channels.id = deliveries.channel_id
WHERE deliveries.shard = $1 AND deliveries.check_id = $2
ORDER BY attempts.id DESC LIMIT $3;

-- Shard ownership: session advisory locks on the ownership connection.

-- name: session_lock
SELECT pg_advisory_lock($1::integer, $2::integer);

-- name: advisory_locks
-- The advisory locks granted in this database under the given key spaces,
-- whoever holds them: (space, key).
SELECT classid::bigint AS space, objid::bigint AS key FROM pg_locks
WHERE locktype = 'advisory' AND objsubid = 2 AND granted
    AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
    AND classid::bigint = ANY($1::bigint[]);

-- name: try_shards
SELECT key FROM unnest($2::integer[]) AS key
WHERE pg_try_advisory_lock($1::integer, key);

-- name: unlock_shards
SELECT pg_advisory_unlock($1::integer, key) FROM unnest($2::integer[]) AS key;

-- name: notify
SELECT pg_notify(channel, payload)
FROM unnest($1::text[], $2::text[]) AS sent (channel, payload);
