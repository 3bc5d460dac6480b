-- Users, projects and API keys. Every check and channel belongs to a project.
-- Checks and channels made before projects existed go to the project named
-- "default" (id 00000000-0000-0000-0000-000000000000), which no user owns;
-- the CLI still acts on it when given no --project, so they keep working.

CREATE TABLE users (
    id TEXT PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    created REAL NOT NULL
);

CREATE TABLE projects (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    owner TEXT REFERENCES users (id),
    ping_key TEXT NOT NULL UNIQUE,
    badge_key TEXT NOT NULL,
    created REAL NOT NULL
);

CREATE INDEX projects_owner ON projects (owner);

-- A key is found by its first characters (id) and checked against the
-- SHA-256 digest of the whole key: the key itself is never stored.
CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    project TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    digest TEXT NOT NULL,
    read_only INTEGER NOT NULL,
    name TEXT NOT NULL DEFAULT '',
    created REAL NOT NULL,
    revoked REAL
);

CREATE INDEX api_keys_project ON api_keys (project);

-- randomblob() draws on SQLite's own CSPRNG, seeded from the system.
INSERT INTO projects (id, name, owner, ping_key, badge_key, created)
VALUES (
    '00000000-0000-0000-0000-000000000000', 'default', NULL,
    lower(hex(randomblob(16))), lower(hex(randomblob(16))),
    CAST(strftime('%s', 'now') AS REAL)
);

-- SQLite cannot add a column with a foreign key and a default: the
-- application keeps these pointing at existing projects.
ALTER TABLE checks ADD COLUMN project TEXT NOT NULL
    DEFAULT '00000000-0000-0000-0000-000000000000';
ALTER TABLE channels ADD COLUMN project TEXT NOT NULL
    DEFAULT '00000000-0000-0000-0000-000000000000';

CREATE INDEX checks_project ON checks (project, slug);
CREATE INDEX channels_project ON channels (project);
