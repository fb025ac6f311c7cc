-- The halt history and the pipeline's own state.
-- Chain values are stored as 0x-hex text so the file reads well in sqlite3.

CREATE TABLE incidents (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    key         TEXT    NOT NULL UNIQUE,     -- stable: derived from the opening evidence
    protocol    TEXT    NOT NULL,
    chain       TEXT    NOT NULL,
    chain_id    INTEGER NOT NULL,
    state       TEXT    NOT NULL,            -- open | resolved | withdrawn
    severity    TEXT    NOT NULL,            -- worst reached: degraded | halted
    started_at  INTEGER NOT NULL,            -- unix seconds, chain time
    ended_at    INTEGER,
    start_block INTEGER NOT NULL,
    end_block   INTEGER
);
CREATE INDEX incidents_by_protocol ON incidents (protocol, started_at);
CREATE INDEX incidents_by_chain ON incidents (chain_id, state);

CREATE TABLE transitions (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    incident_id  INTEGER NOT NULL REFERENCES incidents (id),
    kind         TEXT    NOT NULL,           -- opened | escalated | deescalated | resolved
    from_state   TEXT    NOT NULL,
    to_state     TEXT    NOT NULL,
    at           INTEGER NOT NULL,
    block_number INTEGER NOT NULL,
    block_hash   TEXT    NOT NULL,
    retracted    INTEGER NOT NULL DEFAULT 0  -- 1 when a reorg removed its block
);
CREATE INDEX transitions_by_incident ON transitions (incident_id, id);

CREATE TABLE evidence (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    incident_id     INTEGER NOT NULL REFERENCES incidents (id),
    chain_id        INTEGER NOT NULL,
    contract        TEXT    NOT NULL,
    contract_name   TEXT    NOT NULL,
    tx_hash         TEXT    NOT NULL,
    block_number    INTEGER NOT NULL,
    block_hash      TEXT    NOT NULL,
    block_timestamp INTEGER NOT NULL,
    log_index       INTEGER NOT NULL,
    event           TEXT    NOT NULL,
    args            TEXT    NOT NULL,        -- JSON [{name, type, value}]
    changes         TEXT    NOT NULL,        -- JSON [{scope, halted}]
    retracted       INTEGER NOT NULL DEFAULT 0,
    UNIQUE (incident_id, block_hash, log_index)
);
CREATE INDEX evidence_by_incident ON evidence (incident_id, id);
CREATE INDEX evidence_by_block ON evidence (chain_id, block_number);

-- Recent canonical blocks per chain: the newest is the checkpoint; the rest
-- is the window in which reorgs are detected.
CREATE TABLE chain_blocks (
    chain_id    INTEGER NOT NULL,
    number      INTEGER NOT NULL,
    hash        TEXT    NOT NULL,
    parent_hash TEXT    NOT NULL,
    timestamp   INTEGER NOT NULL,
    PRIMARY KEY (chain_id, number)
);

-- Classifier snapshots, written when a protocol's tracker changes: the
-- newest row is restored at start-up; a reorg restores the newest below it.
CREATE TABLE protocol_state (
    protocol     TEXT    NOT NULL,
    block_number INTEGER NOT NULL,
    tracker      TEXT    NOT NULL,           -- JSON
    PRIMARY KEY (protocol, block_number)
);
