-- Users, projects, API keys, and the reads of checks, channels and flips
-- scoped to a project.

-- name: insert_user
INSERT INTO users (id, email, created) VALUES (?, ?, ?);

-- name: get_user
SELECT * FROM users WHERE email = ?;

-- name: insert_project
INSERT INTO projects (id, name, owner, ping_key, badge_key, created)
VALUES (?, ?, ?, ?, ?, ?);

-- name: get_project
SELECT * FROM projects WHERE id = ?;

-- name: projects_named
SELECT * FROM projects WHERE name = ? ORDER BY created, id;

-- name: project_by_ping_key
SELECT * FROM projects WHERE ping_key = ?;

-- name: list_projects
SELECT projects.*, users.email AS owner_email FROM projects
LEFT JOIN users ON users.id = projects.owner
ORDER BY projects.created, projects.id;

-- name: insert_api_key
INSERT INTO api_keys (id, project, digest, read_only, name, created)
VALUES (?, ?, ?, ?, ?, ?);

-- name: get_api_key
SELECT * FROM api_keys WHERE id = ?;

-- name: revoke_api_key
UPDATE api_keys SET revoked = ? WHERE id = ? AND revoked IS NULL;

-- name: list_api_keys
SELECT * FROM api_keys WHERE project = ? ORDER BY created, id;

-- name: project_checks
SELECT * FROM checks WHERE project = ? ORDER BY created, id;

-- name: checks_by_slug
SELECT * FROM checks WHERE project = ? AND slug = ? ORDER BY created, id;

-- name: project_channels
SELECT * FROM channels WHERE project = ? ORDER BY created, id;

-- name: flips_between
SELECT * FROM flips WHERE check_id = ? AND at >= ? AND at < ?
ORDER BY id DESC LIMIT ?;

-- name: project_links
SELECT check_channels.check_id, check_channels.channel_id FROM check_channels
JOIN channels ON channels.id = check_channels.channel_id
WHERE channels.project = ?;

-- name: ping_log
SELECT check_id, n, received, kind, exit_status, method, remote_addr,
    user_agent, rid, duration, CAST('' AS BLOB) AS body, length(body) AS size
FROM pings WHERE check_id = ? ORDER BY n DESC LIMIT ?;

-- name: ping_body
SELECT body FROM pings WHERE check_id = ? AND n = ?;
