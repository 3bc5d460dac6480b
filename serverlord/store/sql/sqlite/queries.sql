-- name: get_check
SELECT * FROM checks WHERE id = ?;

-- name: list_checks
SELECT * FROM checks ORDER BY created, id;

-- name: insert_check
INSERT INTO checks (
    id, shard, name, slug, tags, "desc", kind, timeout, schedule, tz, grace,
    max_runtime, manual_resume, status, n_pings, last_ping, last_start,
    last_start_rid, last_duration, deadline, created, version
) VALUES (
    :id, :shard, :name, :slug, :tags, :desc, :kind, :timeout, :schedule, :tz,
    :grace, :max_runtime, :manual_resume, :status, :n_pings, :last_ping,
    :last_start, :last_start_rid, :last_duration, :deadline, :created, 0
);

-- name: update_check_config
UPDATE checks SET
    name = :name, slug = :slug, tags = :tags, "desc" = :desc, kind = :kind,
    timeout = :timeout, schedule = :schedule, tz = :tz, grace = :grace,
    max_runtime = :max_runtime, manual_resume = :manual_resume,
    deadline = :deadline, version = version + 1
WHERE id = :id AND version = :version;

-- name: update_check_state
UPDATE checks SET
    status = ?1, n_pings = ?2, last_ping = ?3, last_start = ?4,
    last_start_rid = ?5, last_duration = ?6, deadline = ?7,
    version = version + 1
WHERE id = ?8 AND version = ?9;

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
SELECT id, deadline, grace FROM checks WHERE deadline IS NOT NULL;

-- name: count_checks
SELECT count(*) FROM checks;

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
