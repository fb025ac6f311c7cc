//! haltwatch: a circuit-breaker monitor for DeFi protocols.
//!
//! It follows EVM chains over JSON-RPC, decodes the logs of a protocol's
//! contracts with their JSON ABIs, and turns pause events into downtime
//! incidents (start, end, duration, cause, evidence) in a halt history.
//!
//! # Layout
//!
//! Data flows one way: source → decode → detect → classify → store → notify. Stages
//! know the shared model, not each other; only [`pipeline`] wires them.
//!
//! - [`anchor`]: the history head written to a chain now and then, and read back.
//! - [`api`]: the HTTP surface: health, readiness, metrics, JSON API, status page.
//! - [`config`]: the TOML contract; load, validate (every problem at once), resolve rules against ABIs.
//! - [`presets`]: halt/resume rules of known contract families (OpenZeppelin, USDC, Aave, …).
//! - [`init`]: a config snippet for a contract, written from its ABI.
//! - [`model`]: the shared vocabulary: blocks, chain updates, evidence, signals, transitions.
//! - [`source`]: follows a chain (ws heads or polling), checkpoints, reorgs, catch-up.
//! - [`decode`]: the ABI registry, `(address, topic0)` → resolved decoder.
//! - [`detect`]: detectors that turn decoded logs into signals.
//! - [`heartbeat`]: the dead man's switch: a URL pinged while every chain is followed and fresh.
//! - [`lease`]: chain leases on PostgreSQL (holder, epoch, expiry by the database clock) and the fencing check, for replicas sharing a history; not used by `run` yet.
//! - [`classify`]: the pure per-protocol state machine: signals → incident updates.
//! - [`store`]: the SQLite halt history, checkpoints and classifier snapshots.
//! - [`notify`]: the outbox sender: email rendering, threading, retries, SMTP (lettre).
//! - [`status`]: what the running pipeline knows now (heads, protocol states), for the API.
//! - [`pipeline`]: tasks and channels; shutdown and draining.
//! - [`telemetry`]: metric names and the functions that emit them.
//! - [`redact`]: endpoint URLs reduced to scheme, host and port, in texts and log lines.
//! - [`render`]: incidents as tables and JSON for the CLI.
//! - [`report`]: uptime figures per period, and the incident export formats.
//! - [`verify`]: re-reads recorded evidence from the chain.
//! - [`demo`]: the self-contained demo on a local anvil chain.

pub mod anchor;
pub mod api;
pub mod classify;
pub mod config;
pub mod decode;
pub mod demo;
pub mod detect;
pub mod error_text;
pub mod heartbeat;
pub mod init;
pub mod lease;
pub mod model;
pub mod notify;
pub mod pipeline;
pub mod presets;
pub mod redact;
pub mod render;
pub mod report;
pub mod source;
pub mod status;
pub mod store;
pub mod telemetry;
pub mod verify;

pub use config::{Config, ConfigError};
pub use store::Store;

pub use redact::{redact_url, redact_urls_in};
