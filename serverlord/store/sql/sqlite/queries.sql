-- name: get_check
SELECT * FROM checks WHERE id = ?;

-- name: get_checks
SELECT * FROM checks WHERE id IN (SELECT value FROM json_each(?));

-- name: check_versions
SELECT id, version, created FROM checks
WHERE id IN (SELECT value FROM json_each(?));

-- name: list_checks
SELECT * FROM checks ORDER BY created, id;

-- name: insert_check
INSERT INTO checks (
    id, shard, name, slug, tags, "desc", kind, timeout, schedule, tz, grace,
    max_runtime, manual_resume, status, n_pings, last_ping, last_start,
    last_start_rid, last_duration, deadline, created, version,
    failure_threshold, recovery_threshold, reminder_every, fail_streak,
    ok_streak, missed, down_since, next_reminder, project
) VALUES (
    :id, :shard, :name, :slug, :tags, :desc, :kind, :timeout, :schedule, :tz,
    :grace, :max_runtime, :manual_resume, :status, :n_pings, :last_ping,
    :last_start, :last_start_rid, :last_duration, :deadline, :created, 0,
    :failure_threshold, :recovery_threshold, :reminder_every, :fail_streak,
    :ok_streak, :missed, :down_since, :next_reminder, :project
);

-- name: update_check_config
UPDATE checks SET
    name = :name, slug = :slug, tags = :tags, "desc" = :desc, kind = :kind,
    timeout = :timeout, schedule = :schedule, tz = :tz, grace = :grace,
    max_runtime = :max_runtime, manual_resume = :manual_resume,
    failure_threshold = :failure_threshold,
    recovery_threshold = :recovery_threshold, reminder_every = :reminder_every,
    next_reminder = :next_reminder, deadline = :deadline, version = version + 1
WHERE id = :id AND version = :version;

-- name: update_check_state
UPDATE checks SET
    status = ?1, n_pings = ?2, last_ping = ?3, last_start = ?4,
    last_start_rid = ?5, last_duration = ?6, deadline = ?7, fail_streak = ?8,
    ok_streak = ?9, missed = ?10, down_since = ?11, next_reminder = ?12,
    version = version + 1
WHERE id = ?13 AND version = ?14;

-- name: delete_check
DELETE FROM checks WHERE id = ?;

-- name: insert_ping
INSERT INTO pings (
    check_id, shard, n, received, kind, exit_status, method, remote_addr,
    user_agent, rid, duration, body
) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?);

-- name: recent_pings
SELECT * FROM pings WHERE check_id = ? ORDER BY n DESC LIMIT ?;

-- name: prune_pings
DELETE FROM pings WHERE check_id = ? AND n <= ?;

-- name: insert_flip
INSERT INTO flips (
    check_id, shard, at, detected, old_status, new_status, reason,
    exit_status, offline_from, offline_until
) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
RETURNING id;

-- name: recent_flips
SELECT * FROM flips WHERE check_id = ? ORDER BY id DESC LIMIT ?;

-- name: flips_since
SELECT * FROM flips WHERE id > ? ORDER BY id LIMIT ?;

-- name: load_deadlines
SELECT id, shard, deadline, grace FROM checks WHERE deadline IS NOT NULL;

-- name: count_checks
SELECT count(*) FROM checks;

-- name: count_by_status
SELECT status, count(*) FROM checks GROUP BY status;

-- name: insert_change
INSERT INTO changes (check_id) VALUES (?);

-- name: changes_since
SELECT id, check_id FROM changes WHERE id > ? ORDER BY id LIMIT 10000;

-- name: last_change
SELECT coalesce(max(id), 0) FROM changes;

-- name: prune_changes
DELETE FROM changes WHERE id <= ?;

-- name: get_meta
SELECT value FROM meta WHERE key = ?;

-- name: set_meta
INSERT INTO meta (key, value) VALUES (?, ?)
ON CONFLICT (key) DO UPDATE SET value = excluded.value;

-- name: last_body
SELECT body FROM pings WHERE check_id = ? ORDER BY n DESC LIMIT 1;

-- name: insert_channel
INSERT INTO channels (id, name, url, kind, masked_url, created, project)
VALUES (?, ?, ?, ?, ?, ?, ?);

-- name: get_channel
SELECT * FROM channels WHERE id = ?;

-- name: list_channels
SELECT * FROM channels ORDER BY created, id;

-- name: delete_channel
DELETE FROM channels WHERE id = ?;

-- name: link_channel
INSERT INTO check_channels (check_id, shard, channel_id) VALUES (?, ?, ?);

-- name: unlink_channels
DELETE FROM check_channels WHERE check_id = ?;

-- name: check_channels
SELECT channel_id FROM check_channels WHERE check_id = ? ORDER BY channel_id;

-- name: insert_delivery
INSERT INTO deliveries (
    flip_id, check_id, shard, channel_id, kind, title, body, next_attempt,
    created
) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
RETURNING id;

-- name: claim_deliveries
-- Of the earliest due deliveries of channels not crowded that wait for no
-- earlier one of their check to the same channel (those that do must not fill
-- the window: a channel failing with a backlog would hold back every other
-- channel's alerts), alerts before reminders. The limits count messages: a
-- channel with at least ?6 waiting is in a storm and its deliveries go out ?7
-- to a message (a digest), else one each; a channel gets at most ?5 messages
-- and the claim at most ?3.
UPDATE deliveries SET state = 'sending', claimed_until = ?1,
    attempts = attempts + 1
WHERE id IN (
    SELECT id FROM (
        SELECT id, dense_rank() OVER (
            ORDER BY reminders_only, first_due, channel_id, message
        ) AS nth_message
        FROM (
            SELECT id, channel_id, message,
                min(kind = 'reminder') OVER same_message AS reminders_only,
                min(next_attempt) OVER same_message AS first_due
            FROM (
                SELECT id, channel_id, kind, next_attempt,
                    CASE WHEN waiting >= ?6 THEN (nth - 1) / ?7 ELSE nth - 1 END
                        AS message
                FROM (
                    SELECT due.id, due.channel_id, due.kind, due.next_attempt,
                        row_number() OVER (
                            PARTITION BY due.channel_id
                            ORDER BY due.kind = 'reminder', due.next_attempt, due.id
                        ) AS nth,
                        count(*) OVER (PARTITION BY due.channel_id) AS waiting
                    FROM (
                        SELECT * FROM deliveries AS head
                        WHERE state = 'pending' AND next_attempt <= ?2
                        AND channel_id NOT IN (SELECT value FROM json_each(?4))
                        AND NOT EXISTS (
                            SELECT 1 FROM deliveries AS earlier
                            WHERE earlier.check_id = head.check_id
                            AND earlier.channel_id = head.channel_id
                            AND earlier.id < head.id
                            AND earlier.state IN ('pending', 'sending')
                        )
                        ORDER BY next_attempt LIMIT ?8
                    ) AS due
                )
            )
            WHERE message < ?5
            WINDOW same_message AS (PARTITION BY channel_id, message)
        )
    )
    WHERE nth_message <= ?3
) AND state = 'pending'
RETURNING id;

-- name: deliveries_by_id
SELECT deliveries.*, channels.url FROM deliveries
JOIN channels ON channels.id = deliveries.channel_id
WHERE deliveries.id IN (SELECT value FROM json_each(?))
ORDER BY deliveries.next_attempt;

-- name: finish_deliveries
-- Only those still claimed: a removed channel or check took its own away.
UPDATE deliveries SET state = ?1, next_attempt = ?2, claimed_until = NULL,
    finished = ?3
WHERE id IN (SELECT value FROM json_each(?4)) AND state = 'sending'
RETURNING id;

-- name: insert_attempt
INSERT INTO attempts (delivery_id, at, ok, error, latency) VALUES (?, ?, ?, ?, ?);

-- name: channel_result
UPDATE channels SET last_attempt = ?, last_ok = ?, last_error = ? WHERE id = ?;

-- name: next_delivery_at
-- The first due of the deliveries that wait for no earlier one.
SELECT next_attempt FROM deliveries AS head
WHERE state = 'pending' AND NOT EXISTS (
    SELECT 1 FROM deliveries AS earlier
    WHERE earlier.check_id = head.check_id
    AND earlier.channel_id = head.channel_id
    AND earlier.id < head.id
    AND earlier.state IN ('pending', 'sending')
)
ORDER BY next_attempt LIMIT 1;

-- name: expired_claims
UPDATE deliveries SET state = 'pending', claimed_until = NULL
WHERE state = 'sending' AND claimed_until < ?;

-- name: release_claims
UPDATE deliveries SET state = 'pending', claimed_until = NULL
WHERE state = 'sending';

-- name: recent_attempts
SELECT attempts.at, attempts.ok, attempts.error, attempts.latency,
    deliveries.kind, deliveries.flip_id, deliveries.channel_id, deliveries.state,
    channels.name AS channel_name
FROM attempts
JOIN deliveries ON deliveries.id = attempts.delivery_id
JOIN channels ON channels.id = deliveries.channel_id
WHERE deliveries.check_id = ?
ORDER BY attempts.id DESC LIMIT ?;

-- name: drop_reminders
DELETE FROM deliveries
WHERE check_id = ? AND kind = 'reminder' AND state = 'pending';

-- name: last_flip_id
SELECT coalesce(max(id), 0) FROM flips;

-- name: flip_ids_after
SELECT id FROM flips WHERE id > ? ORDER BY id;

-- name: add_flip
INSERT INTO flips (
    check_id, shard, at, detected, old_status, new_status, reason,
    exit_status, offline_from, offline_until
) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?);

-- name: channels_of_checks
SELECT check_id, channel_id FROM check_channels
WHERE check_id IN (SELECT value FROM json_each(?))
ORDER BY check_id, channel_id;

-- name: pending_reminders
SELECT check_id, channel_id FROM deliveries
WHERE check_id IN (SELECT value FROM json_each(?))
AND kind = 'reminder' AND state = 'pending';

-- name: last_bodies
SELECT wanted.value, (
    SELECT body FROM pings WHERE check_id = wanted.value ORDER BY n DESC LIMIT 1
) FROM json_each(?) AS wanted;

-- name: add_delivery
INSERT INTO deliveries (
    flip_id, check_id, shard, channel_id, kind, title, body, next_attempt,
    created
) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?);
