-- The SQLite schema gains the index of the deliveries being sent in its 0004;
-- PostgreSQL had it from 0002. Nothing changes here: the numbers stay in step.
CREATE INDEX IF NOT EXISTS deliveries_claimed ON deliveries (claimed_until)
WHERE state = 'sending';
