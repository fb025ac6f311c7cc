-- The history head written to a chain: `record` and `head` as the ledger
-- had them, in transaction `tx_hash` (block NULL until its receipt is seen).
CREATE TABLE anchors (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    record       INTEGER NOT NULL,
    head         TEXT    NOT NULL,
    chain        TEXT    NOT NULL,
    chain_id     INTEGER NOT NULL,
    tx_hash      TEXT    NOT NULL UNIQUE,
    block_number INTEGER,
    anchored_ms  INTEGER NOT NULL
);
