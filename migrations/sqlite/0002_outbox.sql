-- Mail to responders: one row per incident transition that must be mailed,
-- written in the same transaction as the transition. A sender drains it.
CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    incident_id     INTEGER NOT NULL REFERENCES incidents (id),
    kind            TEXT    NOT NULL,            -- opened | escalated | deescalated | resolved | withdrawn
    message_id      TEXT    NOT NULL UNIQUE,     -- stable: <key>.<n>; a resend reuses it
    created_ms      INTEGER NOT NULL,            -- wall clock, unix milliseconds
    status          TEXT    NOT NULL DEFAULT 'pending', -- pending | sent | failed | cancelled
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL,
    last_error      TEXT,                        -- the server's reply, for failed and retried rows
    sent_ms         INTEGER,
    sent_as         TEXT                         -- the Message-ID of the mail that carried it (coalesced, digest)
);
CREATE INDEX outbox_due ON outbox (status, next_attempt_ms);
CREATE INDEX outbox_by_incident ON outbox (incident_id, id);

-- Incidents that opened inside a maintenance window: recorded, not paged.
ALTER TABLE incidents ADD COLUMN planned INTEGER NOT NULL DEFAULT 0;
