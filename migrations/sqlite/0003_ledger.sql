-- Re-runs (restart, backfill) must not duplicate a transition: with the
-- block hash and the log index of its first evidence, a transition is unique.
ALTER TABLE transitions ADD COLUMN log_index INTEGER NOT NULL DEFAULT 0;
CREATE UNIQUE INDEX transitions_unique ON transitions (incident_id, block_hash, log_index);

-- keccak256(address ‖ topics ‖ data) of the log behind a piece of evidence,
-- so `verify` can compare it with what the chain returns for that block.
ALTER TABLE evidence ADD COLUMN log_hash TEXT NOT NULL DEFAULT '';

-- The tamper-evident ledger: one record per history record in the order
-- written. hash = keccak256(prev_hash ‖ canonical encoding of the record);
-- `verify --history` recomputes the chain from the rows as they are now.
CREATE TABLE ledger (
    seq       INTEGER PRIMARY KEY,   -- 1, 2, 3, … without gaps
    kind      TEXT    NOT NULL,      -- transition | evidence | retraction
    ref_id    INTEGER,               -- the row in transitions / evidence
    payload   TEXT,                  -- self-contained records (retraction): their canonical text
    prev_hash TEXT    NOT NULL,
    hash      TEXT    NOT NULL
);
