-- What the monitor observed of each chain: spans of consecutive blocks it
-- read and committed (followed or backfilled), with the chain times of
-- their ends. Reports count uptime over these spans only; the time between
-- them was not watched.
CREATE TABLE observed (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    chain       TEXT    NOT NULL,
    chain_id    INTEGER NOT NULL,
    first_block INTEGER NOT NULL,
    first_time  INTEGER NOT NULL,            -- unix seconds, chain time
    last_block  INTEGER NOT NULL,
    last_time   INTEGER NOT NULL
);
CREATE INDEX observed_by_chain ON observed (chain_id, last_block);
