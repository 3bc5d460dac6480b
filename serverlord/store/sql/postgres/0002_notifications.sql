-- Channels, their links to checks, the outbox of deliveries and the record of
-- every delivery attempt. Checks gain what alert thresholds and reminders need.
--
-- ``channels`` belong to no check (a reference table on Citus); the others
-- carry the check's shard. A delivery of no check (a channel test) has shard 0.

CREATE TABLE channels (
    id text PRIMARY KEY,
    name text NOT NULL,
    url text NOT NULL,
    kind text NOT NULL,
    masked_url text NOT NULL,
    created double precision NOT NULL,
    last_attempt double precision,
    last_ok boolean,
    last_error text
);

CREATE TABLE check_channels (
    shard integer NOT NULL,
    check_id text NOT NULL,
    channel_id text NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    PRIMARY KEY (shard, check_id, channel_id),
    FOREIGN KEY (shard, check_id) REFERENCES checks (shard, id) ON DELETE CASCADE
);

CREATE INDEX check_channels_channel ON check_channels (channel_id);

-- Deliveries outlive their check, as the alert of its last flip may still be
-- on its way: no foreign key to checks or flips.
CREATE TABLE deliveries (
    shard integer NOT NULL,
    id bigserial NOT NULL,
    flip_id bigint,
    check_id text,
    channel_id text NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    kind text NOT NULL,
    title text NOT NULL,
    body text NOT NULL,
    state text NOT NULL DEFAULT 'pending',
    attempts integer NOT NULL DEFAULT 0,
    next_attempt double precision NOT NULL,
    claimed_until double precision,
    created double precision NOT NULL,
    finished double precision,
    PRIMARY KEY (shard, id)
);

CREATE INDEX deliveries_due ON deliveries (next_attempt) WHERE state = 'pending';
CREATE INDEX deliveries_claimed ON deliveries (claimed_until)
WHERE state = 'sending';
CREATE INDEX deliveries_check ON deliveries (shard, check_id, id);

CREATE TABLE attempts (
    shard integer NOT NULL,
    id bigserial NOT NULL,
    delivery_id bigint NOT NULL,
    at double precision NOT NULL,
    ok boolean NOT NULL,
    error text,
    latency double precision NOT NULL,
    PRIMARY KEY (shard, id),
    FOREIGN KEY (shard, delivery_id) REFERENCES deliveries (shard, id)
    ON DELETE CASCADE
);

CREATE INDEX attempts_delivery ON attempts (shard, delivery_id);

ALTER TABLE checks ADD COLUMN failure_threshold integer NOT NULL DEFAULT 1;
ALTER TABLE checks ADD COLUMN recovery_threshold integer NOT NULL DEFAULT 1;
ALTER TABLE checks ADD COLUMN reminder_every double precision;
ALTER TABLE checks ADD COLUMN fail_streak integer NOT NULL DEFAULT 0;
ALTER TABLE checks ADD COLUMN ok_streak integer NOT NULL DEFAULT 0;
ALTER TABLE checks ADD COLUMN missed integer NOT NULL DEFAULT 0;
ALTER TABLE checks ADD COLUMN down_since double precision;
ALTER TABLE checks ADD COLUMN next_reminder double precision;
