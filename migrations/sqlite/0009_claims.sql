-- A sender's claim on a queued mail or notice: until claimed_until_ms (wall
-- clock, unix milliseconds) no other sender takes it. One process sends
-- from a SQLite history; the columns are the same as PostgreSQL's, where
-- replicas share the outbox.
ALTER TABLE outbox ADD COLUMN claimed_by TEXT;
ALTER TABLE outbox ADD COLUMN claimed_until_ms INTEGER;
ALTER TABLE notices ADD COLUMN claimed_by TEXT;
ALTER TABLE notices ADD COLUMN claimed_until_ms INTEGER;
