-- Users, projects, API keys, and the reads of checks, channels and flips
-- scoped to a project. Reads by project go to every shard on Citus, as a
-- project's checks are spread over them.

-- name: insert_user
INSERT INTO users (id, email, created) VALUES ($1, $2, $3);

-- name: get_user
SELECT * FROM users WHERE email = $1;

-- name: insert_project
INSERT INTO projects (id, name, owner, ping_key, badge_key, created)
VALUES ($1, $2, $3, $4, $5, $6);

-- name: get_project
SELECT * FROM projects WHERE id = $1;

-- name: projects_named
SELECT * FROM projects WHERE name = $1 ORDER BY created, id;

-- name: project_by_ping_key
SELECT * FROM projects WHERE ping_key = $1;

-- name: list_projects
SELECT projects.*, users.email AS owner_email FROM projects
LEFT JOIN users ON users.id = projects.owner
ORDER BY projects.created, projects.id;

-- name: insert_api_key
INSERT INTO api_keys (id, project, digest, read_only, name, created)
VALUES ($1, $2, $3, $4, $5, $6);

-- name: get_api_key
SELECT * FROM api_keys WHERE id = $1;

-- name: revoke_api_key
UPDATE api_keys SET revoked = $1 WHERE id = $2 AND revoked IS NULL;

-- name: list_api_keys
SELECT * FROM api_keys WHERE project = $1 ORDER BY created, id;

-- name: project_checks
SELECT * FROM checks WHERE project = $1 ORDER BY created, id;

-- name: checks_by_slug
SELECT * FROM checks WHERE project = $1 AND slug = $2 ORDER BY created, id;

-- name: project_channels
SELECT * FROM channels WHERE project = $1 ORDER BY created, id;

-- name: flips_between
SELECT * FROM flips
WHERE shard = $1 AND check_id = $2 AND at >= $3 AND at < $4
ORDER BY id DESC LIMIT $5;

-- name: project_links
SELECT check_channels.check_id, check_channels.channel_id FROM check_channels
JOIN channels ON channels.id = check_channels.channel_id
WHERE channels.project = $1;

-- name: ping_log
SELECT check_id, n, received, kind, exit_status, method, remote_addr,
    user_agent, rid, duration, ''::bytea AS body, octet_length(body) AS size
FROM pings WHERE shard = $1 AND check_id = $2 ORDER BY n DESC LIMIT $3;

-- name: ping_body
SELECT body FROM pings WHERE shard = $1 AND check_id = $2 AND n = $3;
