-- Channels, their links to checks, the outbox of deliveries and the record of
-- every delivery attempt. Checks gain what alert thresholds and reminders need.

CREATE TABLE channels (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    url TEXT NOT NULL,
    kind TEXT NOT NULL,
    masked_url TEXT NOT NULL,
    created REAL NOT NULL,
    last_attempt REAL,
    last_ok INTEGER,
    last_error TEXT
);

CREATE TABLE check_channels (
    check_id TEXT NOT NULL REFERENCES checks (id) ON DELETE CASCADE,
    shard INTEGER NOT NULL,
    channel_id TEXT NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    PRIMARY KEY (check_id, channel_id)
) WITHOUT ROWID;

CREATE INDEX check_channels_channel ON check_channels (channel_id);

CREATE TABLE deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    flip_id INTEGER,
    check_id TEXT,
    shard INTEGER,
    channel_id TEXT NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL NOT NULL,
    claimed_until REAL,
    created REAL NOT NULL,
    finished REAL
);

CREATE INDEX deliveries_due ON deliveries (next_attempt) WHERE state = 'pending';
CREATE INDEX deliveries_check ON deliveries (check_id, id);

CREATE TABLE attempts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id INTEGER NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    at REAL NOT NULL,
    ok INTEGER NOT NULL,
    error TEXT,
    latency REAL NOT NULL
);

CREATE INDEX attempts_delivery ON attempts (delivery_id);

ALTER TABLE checks ADD COLUMN failure_threshold INTEGER NOT NULL DEFAULT 1;
ALTER TABLE checks ADD COLUMN recovery_threshold INTEGER NOT NULL DEFAULT 1;
ALTER TABLE checks ADD COLUMN reminder_every REAL;
ALTER TABLE checks ADD COLUMN fail_streak INTEGER NOT NULL DEFAULT 0;
ALTER TABLE checks ADD COLUMN ok_streak INTEGER NOT NULL DEFAULT 0;
ALTER TABLE checks ADD COLUMN missed INTEGER NOT NULL DEFAULT 0;
ALTER TABLE checks ADD COLUMN down_since REAL;
ALTER TABLE checks ADD COLUMN next_reminder REAL;
