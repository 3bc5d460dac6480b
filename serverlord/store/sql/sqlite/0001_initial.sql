-- The first schema: checks, their pings and flips, the change feed that
-- tells a running server about edits made by other processes, and metadata.

CREATE TABLE checks (
    id TEXT PRIMARY KEY,
    shard INTEGER NOT NULL,
    name TEXT NOT NULL,
    slug TEXT NOT NULL DEFAULT '',
    tags TEXT NOT NULL DEFAULT '',
    "desc" TEXT NOT NULL DEFAULT '',
    kind TEXT NOT NULL,
    timeout REAL,
    schedule TEXT,
    tz TEXT NOT NULL DEFAULT 'UTC',
    grace REAL NOT NULL,
    max_runtime REAL,
    manual_resume INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL DEFAULT 'new',
    n_pings INTEGER NOT NULL DEFAULT 0,
    last_ping REAL,
    last_start REAL,
    last_start_rid TEXT,
    last_duration REAL,
    deadline REAL,
    created REAL NOT NULL,
    version INTEGER NOT NULL DEFAULT 0
);

CREATE INDEX checks_deadline ON checks (deadline) WHERE deadline IS NOT NULL;

CREATE TABLE pings (
    check_id TEXT NOT NULL REFERENCES checks (id) ON DELETE CASCADE,
    shard INTEGER NOT NULL,
    n INTEGER NOT NULL,
    received REAL NOT NULL,
    kind TEXT NOT NULL,
    exit_status INTEGER,
    method TEXT NOT NULL,
    remote_addr TEXT NOT NULL,
    user_agent TEXT NOT NULL,
    rid TEXT,
    duration REAL,
    body BLOB NOT NULL,
    PRIMARY KEY (check_id, n)
) WITHOUT ROWID;

CREATE TABLE flips (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    check_id TEXT NOT NULL REFERENCES checks (id) ON DELETE CASCADE,
    shard INTEGER NOT NULL,
    at REAL NOT NULL,
    detected REAL NOT NULL,
    old_status TEXT NOT NULL,
    new_status TEXT NOT NULL,
    reason TEXT NOT NULL,
    exit_status INTEGER,
    offline_from REAL,
    offline_until REAL
);

CREATE INDEX flips_check ON flips (check_id, id);

CREATE TABLE changes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    check_id TEXT NOT NULL
);

CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value REAL NOT NULL
);
