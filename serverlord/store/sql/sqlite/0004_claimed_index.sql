-- The deliveries being sent, by the end of their claim: every claim first
-- returns the expired ones to the queue, and without this index that meant a
-- scan of the whole outbox, which made a wave of alerts slower the longer the
-- outbox grew. PostgreSQL had this index from its 0002.
CREATE INDEX deliveries_claimed ON deliveries (claimed_until)
WHERE state = 'sending';
