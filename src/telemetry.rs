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
