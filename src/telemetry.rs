//! Metric names and the small functions that emit them, in one place.
//!
//! Emitted through the `metrics` facade: without an installed recorder they
//! cost nothing; the HTTP surface installs the Prometheus exporter. Names are
//! snake_case with `_total` for counters; labels are low-cardinality.

/// Blocks read and processed, per chain.
pub const BLOCKS_PROCESSED_TOTAL: &str = "haltwatch_blocks_processed_total";
/// Monitored logs decoded, per chain.
pub const LOGS_DECODED_TOTAL: &str = "haltwatch_logs_decoded_total";
/// Logs of a monitored topic that did not decode with their ABI, per chain.
pub const DECODE_FAILURES_TOTAL: &str = "haltwatch_decode_failures_total";
/// Incident transitions, per protocol and kind.
pub const TRANSITIONS_TOTAL: &str = "haltwatch_transitions_total";
/// Mails accepted by the SMTP server.
pub const EMAILS_SENT_TOTAL: &str = "haltwatch_emails_sent_total";
/// Temporary delivery failures that will be retried.
pub const EMAILS_RETRIED_TOTAL: &str = "haltwatch_emails_retried_total";
/// Permanent delivery failures (5xx): marked failed, never retried.
pub const EMAILS_FAILED_TOTAL: &str = "haltwatch_emails_failed_total";

/// Heartbeat pings, by outcome (`sent`, `failed`, `withheld`).
pub const HEARTBEATS_TOTAL: &str = "haltwatch_heartbeats_total";

pub fn heartbeat(outcome: &'static str) {
    metrics::counter!(HEARTBEATS_TOTAL, "outcome" => outcome).increment(1);
}

pub fn blocks_processed(chain: &str, blocks: u64) {
    metrics::counter!(BLOCKS_PROCESSED_TOTAL, "chain" => chain.to_string()).increment(blocks);
}

pub fn logs_decoded(chain: &str, logs: u64) {
    metrics::counter!(LOGS_DECODED_TOTAL, "chain" => chain.to_string()).increment(logs);
}

pub fn decode_failed(chain: &str) {
    metrics::counter!(DECODE_FAILURES_TOTAL, "chain" => chain.to_string()).increment(1);
}

pub fn transition(protocol: &str, kind: &'static str) {
    metrics::counter!(TRANSITIONS_TOTAL, "protocol" => protocol.to_string(), "kind" => kind)
        .increment(1);
}

pub fn email_sent(protocol: &str) {
    metrics::counter!(EMAILS_SENT_TOTAL, "protocol" => protocol.to_string()).increment(1);
}

pub fn email_retried(protocol: &str) {
    metrics::counter!(EMAILS_RETRIED_TOTAL, "protocol" => protocol.to_string()).increment(1);
}

pub fn email_failed(protocol: &str) {
    metrics::counter!(EMAILS_FAILED_TOTAL, "protocol" => protocol.to_string()).increment(1);
}

/// Signals from detectors, by kind (`halt`, `resume`).
pub const SIGNALS_TOTAL: &str = "haltwatch_signals_total";
/// 1 while a protocol has an open incident at that severity.
pub const INCIDENTS_OPEN: &str = "haltwatch_incidents_open";
/// Mails waiting in the outbox.
pub const OUTBOX_DEPTH: &str = "haltwatch_outbox_depth";
/// JSON-RPC requests and failures by endpoint (scheme + host) and method.
pub const RPC_REQUESTS_TOTAL: &str = "haltwatch_rpc_requests_total";
pub const RPC_ERRORS_TOTAL: &str = "haltwatch_rpc_errors_total";
/// The head as last read, and the last block processed.
pub const HEAD_BLOCK: &str = "haltwatch_head_block";
pub const PROCESSED_BLOCK: &str = "haltwatch_processed_block";
/// How far processing is behind the head, in blocks and in seconds of block time.
pub const HEAD_LAG_BLOCKS: &str = "haltwatch_head_lag_blocks";
pub const HEAD_LAG_SECONDS: &str = "haltwatch_head_lag_seconds";

pub fn signal(kind: &'static str) {
    metrics::counter!(SIGNALS_TOTAL, "kind" => kind).increment(1);
}

pub fn incidents_open(protocol: &str, state: crate::model::ProtocolState) {
    use crate::model::ProtocolState::{Degraded, Halted};
    for severity in [Degraded, Halted] {
        let value = if state == severity { 1.0 } else { 0.0 };
        metrics::gauge!(INCIDENTS_OPEN, "protocol" => protocol.to_string(), "severity" => severity.as_str())
            .set(value);
    }
}

pub fn outbox_depth(pending: usize) {
    metrics::gauge!(OUTBOX_DEPTH).set(pending as f64);
}

pub fn rpc_request(endpoint: &str, method: &'static str) {
    metrics::counter!(RPC_REQUESTS_TOTAL, "endpoint" => endpoint.to_string(), "method" => method)
        .increment(1);
}

pub fn rpc_error(endpoint: &str, method: &'static str) {
    metrics::counter!(RPC_ERRORS_TOTAL, "endpoint" => endpoint.to_string(), "method" => method)
        .increment(1);
}

/// Head and processing position of a chain; lag derived from both.
pub fn chain_position(chain: &str, head: Option<u64>, processed: Option<(u64, u64)>) {
    let label = chain.to_string();
    if let Some(h) = head {
        metrics::gauge!(HEAD_BLOCK, "chain" => label.clone()).set(h as f64);
    }
    if let Some((p, block_time)) = processed {
        metrics::gauge!(PROCESSED_BLOCK, "chain" => label.clone()).set(p as f64);
        let now = crate::store::now_ms() as f64 / 1000.0;
        metrics::gauge!(HEAD_LAG_SECONDS, "chain" => label.clone())
            .set((now - block_time as f64).max(0.0));
        if let Some(h) = head {
            metrics::gauge!(HEAD_LAG_BLOCKS, "chain" => label).set(h.saturating_sub(p) as f64);
        }
    }
}

/// Store operations that found the store unavailable, per operation: an
/// attempt that failed (busy, locked, disk full) and was retried, or one
/// still waiting for a lock after a while.
pub const STORE_UNAVAILABLE_TOTAL: &str = "haltwatch_store_unavailable_total";

pub fn store_unavailable(operation: &'static str) {
    metrics::counter!(STORE_UNAVAILABLE_TOTAL, "operation" => operation).increment(1);
}

/// Anchor transactions: `outcome` = `sent` or `failed` (retried next period).
pub const ANCHORS_TOTAL: &str = "haltwatch_anchors_total";

pub fn anchor(outcome: &'static str) {
    metrics::counter!(ANCHORS_TOTAL, "outcome" => outcome).increment(1);
}

/// Reorgs deeper than the reorg window, per chain.
pub const DEEP_REORGS_TOTAL: &str = "haltwatch_deep_reorgs_total";
/// Endpoints found serving another chain, per chain.
pub const ENDPOINTS_BROKEN_TOTAL: &str = "haltwatch_rpc_endpoints_broken_total";

pub fn deep_reorg(chain: &str) {
    metrics::counter!(DEEP_REORGS_TOTAL, "chain" => chain.to_string()).increment(1);
}

pub fn endpoint_broken(chain: &str) {
    metrics::counter!(ENDPOINTS_BROKEN_TOTAL, "chain" => chain.to_string()).increment(1);
}

/// Chain leases this replica holds now.
pub const LEASES_HELD: &str = "haltwatch_leases_held";
/// Leases this replica took from another (or from an expired lease).
pub const LEASE_TAKEOVERS_TOTAL: &str = "haltwatch_lease_takeovers_total";

pub fn leases_held(n: usize) {
    metrics::gauge!(LEASES_HELD).set(n as f64);
}

pub fn lease_takeover(chain: &str) {
    metrics::counter!(LEASE_TAKEOVERS_TOTAL, "chain" => chain.to_string()).increment(1);
}

/// Every metric with its `# HELP` text, given to the recorder once at
/// start-up so that `/metrics` describes each one (`promtool check metrics`
/// asks for it).
pub fn describe() {
    use metrics::{describe_counter, describe_gauge};
    for (name, help) in [
        (
            BLOCKS_PROCESSED_TOTAL,
            "Blocks read and processed, per chain.",
        ),
        (LOGS_DECODED_TOTAL, "Monitored logs decoded, per chain."),
        (
            HEARTBEATS_TOTAL,
            "Heartbeat pings, by outcome: sent, failed, or withheld while a chain or the store is unhealthy.",
        ),
        (
            DECODE_FAILURES_TOTAL,
            "Logs of a monitored topic that did not decode with their ABI, per chain.",
        ),
        (
            TRANSITIONS_TOTAL,
            "Incident transitions, per protocol and kind.",
        ),
        (
            EMAILS_SENT_TOTAL,
            "Mails accepted by the SMTP server, per protocol.",
        ),
        (
            EMAILS_RETRIED_TOTAL,
            "Temporary mail delivery failures that will be retried, per protocol.",
        ),
        (
            EMAILS_FAILED_TOTAL,
            "Permanent mail delivery failures (5xx), never retried, per protocol.",
        ),
        (
            SIGNALS_TOTAL,
            "Signals from detectors, by kind (halt, resume, ...).",
        ),
        (
            RPC_REQUESTS_TOTAL,
            "JSON-RPC requests, by endpoint (scheme and host) and method.",
        ),
        (
            RPC_ERRORS_TOTAL,
            "Failed JSON-RPC requests, by endpoint (scheme and host) and method.",
        ),
        (
            STORE_UNAVAILABLE_TOTAL,
            "Store operations that found the store unavailable (busy, locked, full) and retried or waited, per operation.",
        ),
        (
            ANCHORS_TOTAL,
            "Anchors of the history head sent to a chain, by outcome (sent, failed).",
        ),
        (
            DEEP_REORGS_TOTAL,
            "Reorgs deeper than the reorg window, per chain.",
        ),
        (
            ENDPOINTS_BROKEN_TOTAL,
            "Endpoints found serving another chain, per chain.",
        ),
        (
            LEASE_TAKEOVERS_TOTAL,
            "Chain leases this replica took over after another replica stopped renewing them, per chain.",
        ),
    ] {
        describe_counter!(name, help);
    }
    for (name, help) in [
        (
            INCIDENTS_OPEN,
            "1 while a protocol has an open incident at that severity, else 0.",
        ),
        (OUTBOX_DEPTH, "Mails waiting in the outbox."),
        (
            LEASES_HELD,
            "Chain leases this replica holds (the chains it follows), on a shared history.",
        ),
        (HEAD_BLOCK, "The chain head as last read, per chain."),
        (PROCESSED_BLOCK, "The last block processed, per chain."),
        (
            HEAD_LAG_BLOCKS,
            "Blocks between the head and the last block processed, per chain.",
        ),
        (
            HEAD_LAG_SECONDS,
            "Seconds between now and the block time of the last block processed, per chain.",
        ),
    ] {
        describe_gauge!(name, help);
    }
}
