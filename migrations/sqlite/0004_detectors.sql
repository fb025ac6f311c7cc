-- Evidence of other kinds than logs: failed calls, probes, stalls, spikes.
-- A piece of evidence is unique by kind and position in its block.
CREATE TABLE evidence_v2 (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    incident_id     INTEGER NOT NULL REFERENCES incidents (id),
    kind            TEXT    NOT NULL DEFAULT 'log', -- log | failed_call | probe | stall | spike
    chain_id        INTEGER NOT NULL,
    contract        TEXT    NOT NULL,
    contract_name   TEXT    NOT NULL,
    tx_hash         TEXT    NOT NULL,
    block_number    INTEGER NOT NULL,
    block_hash      TEXT    NOT NULL,
    block_timestamp INTEGER NOT NULL,
    log_index       INTEGER NOT NULL,            -- log index; tx index (failed_call); probe index (probe)
    event           TEXT    NOT NULL,
    args            TEXT    NOT NULL,
    changes         TEXT    NOT NULL,
    retracted       INTEGER NOT NULL DEFAULT 0,
    log_hash        TEXT    NOT NULL DEFAULT '', -- content hash: log, revert data, or probe answer
    UNIQUE (incident_id, kind, block_hash, log_index)
);
INSERT INTO evidence_v2 (id, incident_id, kind, chain_id, contract, contract_name, tx_hash,
    block_number, block_hash, block_timestamp, log_index, event, args, changes, retracted, log_hash)
SELECT id, incident_id, 'log', chain_id, contract, contract_name, tx_hash,
    block_number, block_hash, block_timestamp, log_index, event, args, changes, retracted, log_hash
FROM evidence;
DROP TABLE evidence;
ALTER TABLE evidence_v2 RENAME TO evidence;
CREATE INDEX evidence_by_incident ON evidence (incident_id, id);
CREATE INDEX evidence_by_block ON evidence (chain_id, block_number);

-- The monitor's own blind spots: every endpoint of a chain failing. Shown in
-- the history and the report, never counted as protocol downtime.
CREATE TABLE monitoring_gaps (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    chain      TEXT    NOT NULL,
    chain_id   INTEGER NOT NULL,
    started_at INTEGER NOT NULL,   -- wall clock, unix seconds
    ended_at   INTEGER,
    reason     TEXT    NOT NULL
);
CREATE INDEX gaps_by_chain ON monitoring_gaps (chain_id, started_at);
