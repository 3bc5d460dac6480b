-- Users, projects and API keys. Every check and channel belongs to a project.
-- Checks and channels made before projects existed go to the project named
-- "default" (id 00000000-0000-0000-0000-000000000000), which no user owns;
-- the CLI still acts on it when given no --project, so they keep working.
--
-- Users, projects and keys belong to no check: on Citus they are reference
-- tables. ``checks.project`` points at a reference table, which Citus allows.

CREATE TABLE users (
    id text PRIMARY KEY,
    email text NOT NULL UNIQUE,
    created double precision NOT NULL
);

CREATE TABLE projects (
    id text PRIMARY KEY,
    name text NOT NULL,
    owner text REFERENCES users (id),
    ping_key text NOT NULL UNIQUE,
    badge_key text NOT NULL,
    created double precision NOT NULL
);

CREATE INDEX projects_owner ON projects (owner);

-- A key is found by its first characters (id) and checked against the
-- SHA-256 digest of the whole key: the key itself is never stored.
CREATE TABLE api_keys (
    id text PRIMARY KEY,
    project text NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    digest text NOT NULL,
    read_only boolean NOT NULL,
    name text NOT NULL DEFAULT '',
    created double precision NOT NULL,
    revoked double precision
);

CREATE INDEX api_keys_project ON api_keys (project);

-- gen_random_uuid() draws on the server's strong random source.
INSERT INTO projects (id, name, owner, ping_key, badge_key, created)
VALUES (
    '00000000-0000-0000-0000-000000000000', 'default', NULL,
    replace(gen_random_uuid()::text, '-', ''),
    replace(gen_random_uuid()::text, '-', ''),
    extract(epoch FROM now())
);

ALTER TABLE checks ADD COLUMN project text NOT NULL
    DEFAULT '00000000-0000-0000-0000-000000000000' REFERENCES projects (id);
ALTER TABLE channels ADD COLUMN project text NOT NULL
    DEFAULT '00000000-0000-0000-0000-000000000000' REFERENCES projects (id);

CREATE INDEX checks_project ON checks (project, slug);
CREATE INDEX channels_project ON channels (project);
