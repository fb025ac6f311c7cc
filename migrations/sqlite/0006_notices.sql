-- Mails about a chain rather than an incident (a reorg deeper than the
-- window), to the responders of every protocol on it. Written in the same
-- transaction as the monitoring gap they announce; drained like the outbox.
CREATE TABLE notices (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    chain           TEXT    NOT NULL,
    chain_id        INTEGER NOT NULL,
    kind            TEXT    NOT NULL,            -- deep_reorg
    body            TEXT    NOT NULL,            -- what happened, in words
    message_id      TEXT    NOT NULL UNIQUE,
    created_ms      INTEGER NOT NULL,
    status          TEXT    NOT NULL DEFAULT 'pending', -- pending | sent | failed
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL,
    last_error      TEXT,
    sent_ms         INTEGER
);
CREATE INDEX notices_due ON notices (status, next_attempt_ms);
