//! What an error from an endpoint means: rate limit, range too large,
//! transient, unsupported method or wrong chain, from the transport's
//! status and `Retry-After` and from real providers' words.

use std::time::Duration;

use alloy::transports::layers::RetryPolicy;
use alloy::transports::{RpcError, TransportError};

/// A rate-limited request is retried in place when the server asks for at
/// most this long; a longer `Retry-After` fails over instead.
const RETRY_IN_PLACE: Duration = Duration::from_secs(2);

/// What an error says about the endpoint and the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Too many requests: back off (as long as `Retry-After` says, if it said).
    RateLimited { retry_after: Option<Duration> },
    /// The request asked for too much at once (a log range): split it.
    RangeTooLarge,
    /// Worth retrying as it is: 5xx, time-outs, resets, garbage, a block the
    /// node does not have yet.
    Transient,
    /// The node does not serve the method: the only class that turns a capability off.
    Unsupported,
    /// The endpoint serves another chain: never used again.
    WrongChain,
}

/// Texts real providers send when one `eth_getLogs` asks for too much.
const RANGE_TEXTS: &[&str] = &[
    "query returned more than",
    "block range is too large",
    "block range too large",
    "range is too large",
    "exceeds max results",
    "exceed maximum block range",
    "max block range",
    "is limited to a",
    "block range limit",
    "too many results",
    "response size exceeded",
    "response is too big",
    "log response size exceeded",
    "range too wide",
];

/// Texts real providers send when they throttle.
const RATE_LIMIT_TEXTS: &[&str] = &[
    "rate limit",
    "rate-limit",
    "ratelimit",
    "too many requests",
    "limit exceeded",
    "exceeded the allowed",
    "request count exceeded",
    "capacity exceeded",
    "throughput exceeded",
    "compute units",
    "over rate",
];

/// Texts of a node that does not serve a method at all.
const UNSUPPORTED_TEXTS: &[&str] = &[
    "method not found",
    "not supported",
    "unsupported",
    "does not exist",
    "is not available",
    "method not available",
    "not whitelisted",
];

/// Classifies an error text and, where the transport knows them, its HTTP
/// status and `Retry-After`. Range texts win over rate-limit texts (`-32005`
/// is both, depending on the provider: the words decide).
pub fn classify_text(
    text: &str,
    http_status: Option<u16>,
    retry_after: Option<Duration>,
) -> ErrorClass {
    let t = text.to_ascii_lowercase();
    if http_status == Some(429) || retry_after.is_some() {
        return ErrorClass::RateLimited { retry_after };
    }
    if RANGE_TEXTS.iter().any(|e| t.contains(e)) {
        return ErrorClass::RangeTooLarge;
    }
    if RATE_LIMIT_TEXTS.iter().any(|e| t.contains(e)) {
        return ErrorClass::RateLimited { retry_after };
    }
    if UNSUPPORTED_TEXTS.iter().any(|e| t.contains(e)) || t.contains("-32601") {
        return ErrorClass::Unsupported;
    }
    ErrorClass::Transient
}

/// Classifies an error of alloy's transport.
pub fn classify(e: &TransportError) -> ErrorClass {
    let text = e.to_string();
    match e {
        RpcError::Transport(kind) => {
            let status = kind.as_http_error().map(|h| h.status);
            match classify_text(&text, status, kind.retry_after()) {
                // Only a node's own answer says a method is missing; a proxy's
                // HTML error page saying "not available" does not.
                ErrorClass::Unsupported => ErrorClass::Transient,
                class => class,
            }
        }
        RpcError::ErrorResp(payload) if payload.code == -32601 => ErrorClass::Unsupported,
        _ => classify_text(&text, None, None),
    }
}

/// Retries in place what is rate limited for a short while only: a longer
/// `Retry-After` is better spent on another endpoint.
#[derive(Debug, Clone, Copy)]
pub(super) struct ShortRateLimits;

impl RetryPolicy for ShortRateLimits {
    fn should_retry(&self, e: &TransportError) -> bool {
        matches!(classify(e), ErrorClass::RateLimited { retry_after }
            if retry_after.is_none_or(|d| d <= RETRY_IN_PLACE))
    }

    fn backoff_hint(&self, e: &TransportError) -> Option<Duration> {
        match classify(e) {
            ErrorClass::RateLimited { retry_after } => retry_after,
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::transports::TransportErrorKind;

    #[test]
    fn errors_are_classified_by_what_real_providers_say() {
        use ErrorClass::*;
        let cases = [
            (
                "error code -32005: query returned more than 10000 results",
                RangeTooLarge,
            ),
            ("block range is too large", RangeTooLarge),
            (
                "error code -32614: eth_getLogs is limited to a 100 range",
                RangeTooLarge,
            ),
            (
                "Log response size exceeded. You can make eth_getLogs requests with up to a 2K block range",
                RangeTooLarge,
            ),
            (
                "query exceeds max results 20000, retry with the range 1-500",
                RangeTooLarge,
            ),
            (
                "error code -32005: limit exceeded",
                RateLimited { retry_after: None },
            ),
            (
                "daily request count exceeded, request rate limited",
                RateLimited { retry_after: None },
            ),
            (
                "Your app has exceeded its compute units per second capacity",
                RateLimited { retry_after: None },
            ),
            (
                "error code -32601: the method trace_filter does not exist/is not available",
                Unsupported,
            ),
            ("connection refused", Transient),
            ("header not found", Transient),
        ];
        for (text, want) in cases {
            assert_eq!(classify_text(text, None, None), want, "{text}");
        }
        assert_eq!(
            classify_text(
                "HTTP error 429 with empty body",
                Some(429),
                Some(Duration::from_secs(1))
            ),
            RateLimited {
                retry_after: Some(Duration::from_secs(1))
            }
        );
        assert_eq!(classify_text("HTTP error 503", Some(503), None), Transient);
    }

    #[test]
    fn transport_errors_keep_their_retry_after() {
        let e = TransportErrorKind::http_error_with_retry_after(
            429,
            String::new(),
            Some(Duration::from_secs(3)),
        );
        assert_eq!(
            classify(&e),
            ErrorClass::RateLimited {
                retry_after: Some(Duration::from_secs(3))
            }
        );
        assert!(
            !ShortRateLimits.should_retry(&e),
            "3 s is better spent elsewhere"
        );
        let short = TransportErrorKind::http_error_with_retry_after(
            429,
            String::new(),
            Some(Duration::from_secs(1)),
        );
        assert!(ShortRateLimits.should_retry(&short));
        assert_eq!(
            classify(&TransportErrorKind::http_error(502, "bad gateway".into())),
            ErrorClass::Transient
        );
    }
}
