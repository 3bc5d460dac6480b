-- The first schema: checks, their pings and flips, the change feed that tells
-- a running server about edits made by other processes, and metadata.
--
-- Every table of a check's data leads with the check's shard, which is in its
-- primary key and in every foreign key between such tables: Citus can then
-- distribute them all by shard and keep a check's rows on one node. ``meta``
-- holds no check's data; on Citus it is a reference table.

CREATE TABLE checks (
    shard integer NOT NULL,
    id text NOT NULL,
    name text NOT NULL,
    slug text NOT NULL DEFAULT '',
    tags text NOT NULL DEFAULT '',
    "desc" text NOT NULL DEFAULT '',
    kind text NOT NULL,
    timeout double precision,
    schedule text,
    tz text NOT NULL DEFAULT 'UTC',
    grace double precision NOT NULL,
    max_runtime double precision,
    manual_resume boolean NOT NULL DEFAULT false,
    status text NOT NULL DEFAULT 'new',
    n_pings bigint NOT NULL DEFAULT 0,
    last_ping double precision,
    last_start double precision,
    last_start_rid text,
    last_duration double precision,
    deadline double precision,
    created double precision NOT NULL,
    version bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (shard, id)
);

CREATE INDEX checks_deadline ON checks (shard, deadline)
WHERE deadline IS NOT NULL;

CREATE TABLE pings (
    shard integer NOT NULL,
    check_id text NOT NULL,
    n bigint NOT NULL,
    received double precision NOT NULL,
    kind text NOT NULL,
    exit_status integer,
    method text NOT NULL,
    remote_addr text NOT NULL,
    user_agent text NOT NULL,
    rid text,
    duration double precision,
    body bytea NOT NULL,
    PRIMARY KEY (shard, check_id, n),
    FOREIGN KEY (shard, check_id) REFERENCES checks (shard, id) ON DELETE CASCADE
);

CREATE TABLE flips (
    shard integer NOT NULL,
    id bigserial NOT NULL,
    check_id text NOT NULL,
    at double precision NOT NULL,
    detected double precision NOT NULL,
    old_status text NOT NULL,
    new_status text NOT NULL,
    reason text NOT NULL,
    exit_status integer,
    offline_from double precision,
    offline_until double precision,
    PRIMARY KEY (shard, id),
    FOREIGN KEY (shard, check_id) REFERENCES checks (shard, id) ON DELETE CASCADE
);

CREATE INDEX flips_check ON flips (shard, check_id, id);

-- Rows stay after their check is removed: a removal is a change too.
CREATE TABLE changes (
    shard integer NOT NULL,
    id bigserial NOT NULL,
    check_id text NOT NULL,
    PRIMARY KEY (shard, id)
);

CREATE INDEX changes_id ON changes (id);

CREATE TABLE meta (
    key text PRIMARY KEY,
    value double precision NOT NULL
);
