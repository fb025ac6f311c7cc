//! The endpoints of one chain: how each is connected, how healthy it is,
//! and which one to ask next.
//!
//! Endpoints are ranked in config order among the healthy ones: an endpoint
//! is skipped while it backs off after errors (exponentially, with jitter,
//! or as long as its `Retry-After` said), while its head is behind another
//! endpoint's, and for good when it serves another chain. The preferred
//! endpoint is used again as soon as it is healthy.

use std::time::{Duration, Instant};

use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::client::ClientBuilder;
use alloy::transports::TransportError;
use alloy::transports::layers::RetryBackoffLayer;

use super::errors::{ErrorClass, ShortRateLimits, classify};

use super::{MAX_RANGE_BLOCKS, SourceError};
use crate::config::RpcEndpoint;
use crate::{redact_url, telemetry};

/// Longest wait before an endpoint that failed is tried again.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Shortest wait before an endpoint that failed is tried again.
const MIN_BACKOFF: Duration = Duration::from_millis(200);
/// Retries in place of a rate-limited request.
const RATE_LIMIT_RETRIES: u32 = 3;
/// An endpoint whose head is this many blocks behind another's is demoted.
pub(super) const LAG_BLOCKS: u64 = 2;
/// An endpoint whose head reads take this many times the fastest's is slow...
const SLOW_FACTOR: u32 = 4;
/// ...once they also take longer than this.
const SLOW_FLOOR: Duration = Duration::from_millis(500);

/// One endpoint: its connection, what it serves, and its health.
pub(super) struct Endpoint {
    pub url: String,
    pub redacted: String,
    pub ws: bool,
    provider: Option<DynProvider>,
    /// Answers `trace_filter` (until it says it does not): calls of a whole
    /// range in a few requests instead of every block's body and receipts.
    pub trace_filter: std::sync::atomic::AtomicBool,
    /// Blocks per `trace_filter` request; halved when the node refuses a range.
    pub trace_span: std::sync::atomic::AtomicU64,
    /// Answers `eth_getBlockReceipts` (until it says it does not): a block's
    /// receipts in one request instead of one per failed-call candidate.
    pub block_receipts: std::sync::atomic::AtomicBool,
    /// Answers `debug_traceTransaction` (until it says it does not): who
    /// raised a pause revert, read from the call tree.
    pub debug_trace: std::sync::atomic::AtomicBool,
    /// Blocks per `eth_getLogs` range; shrinks to what the node accepts.
    pub log_span: std::sync::atomic::AtomicU64,
    /// `max_requests_per_second`, enforced below every request.
    throttle: super::throttle::ThrottleLayer,
    health: Health,
}

/// How an endpoint has been doing.
#[derive(Debug, Default)]
struct Health {
    /// Failures in a row.
    failures: u32,
    /// Not to be asked before this.
    retry_at: Option<Instant>,
    /// The newest head it reported, and when.
    head: Option<(u64, Instant)>,
    /// Why it is never to be used again (another chain).
    broken: Option<String>,
    /// How long its head reads take (`eth_blockNumber`), smoothed.
    latency: Option<Duration>,
}

impl Endpoint {
    pub fn new(rpc: &RpcEndpoint) -> Self {
        let url = &rpc.url;
        Endpoint {
            redacted: redact_url(url),
            ws: url.starts_with("ws"),
            url: url.to_string(),
            throttle: super::throttle::ThrottleLayer::new(rpc.max_requests_per_second),
            provider: None,
            trace_filter: true.into(),
            trace_span: MAX_RANGE_BLOCKS.into(),
            block_receipts: true.into(),
            debug_trace: true.into(),
            log_span: MAX_RANGE_BLOCKS.into(),
            health: Health::default(),
        }
    }

    /// The connected provider, connecting (and checking the chain id) first.
    pub async fn provider(
        &mut self,
        chain: &str,
        chain_id: u64,
    ) -> Result<DynProvider, SourceError> {
        if let Some(p) = &self.provider {
            return Ok(p.clone());
        }
        let provider = self.connect().await?;
        telemetry::rpc_request(&self.redacted, "eth_chainId");
        let actual = provider
            .get_chain_id()
            .await
            .map_err(|e| rpc_error(self, "eth_chainId", &e))?;
        if actual != chain_id {
            let e = SourceError::WrongChain {
                chain: chain.to_string(),
                endpoint: self.redacted.clone(),
                expected: chain_id,
                actual,
            };
            self.health.broken = Some(e.to_string());
            return Err(e);
        }
        self.provider = Some(provider.clone());
        Ok(provider)
    }

    async fn connect(&self) -> Result<DynProvider, SourceError> {
        let builder = ProviderBuilder::new().disable_recommended_fillers();
        if self.ws {
            // Subscriptions need the bare pubsub transport: no layers over ws.
            return Ok(builder
                .connect(&self.url)
                .await
                .map_err(|e| rpc_error(self, "connect", &e))?
                .erased());
        }
        let retry = RetryBackoffLayer::new_with_policy(
            RATE_LIMIT_RETRIES,
            MIN_BACKOFF.as_millis() as u64,
            u64::MAX,
            ShortRateLimits,
        );
        // Retries pass the throttle too: it is the innermost layer.
        let client = ClientBuilder::default()
            .layer(retry)
            .layer(self.throttle.clone())
            .connect(&self.url)
            .await
            .map_err(|e| rpc_error(self, "connect", &e))?;
        Ok(builder.connect_client(client).erased())
    }

    /// Why this endpoint is never used again, if it is not.
    pub fn broken(&self) -> Option<&str> {
        self.health.broken.as_deref()
    }
}

/// The endpoints of one chain, ranked by health.
pub(super) struct Endpoints {
    list: Vec<Endpoint>,
}

impl Endpoints {
    pub fn new(rpc: &[RpcEndpoint]) -> Self {
        Endpoints {
            list: rpc.iter().map(Endpoint::new).collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn get(&self, i: usize) -> &Endpoint {
        &self.list[i]
    }

    pub fn get_mut(&mut self, i: usize) -> &mut Endpoint {
        &mut self.list[i]
    }

    /// The newest head any endpoint reported.
    pub fn best_head(&self) -> Option<u64> {
        self.list
            .iter()
            .filter_map(|e| e.health.head)
            .map(|(n, _)| n)
            .max()
    }

    /// True while another endpoint's head is more than [`LAG_BLOCKS`] ahead of `i`'s.
    pub fn lagging(&self, i: usize) -> bool {
        let best = self.best_head().unwrap_or(0);
        self.list[i]
            .health
            .head
            .is_some_and(|(n, _)| n + LAG_BLOCKS < best)
    }

    /// True while `i`'s head reads take over [`SLOW_FACTOR`] times (and over
    /// [`SLOW_FLOOR`] more than) those of the fastest endpoint.
    pub fn slow(&self, i: usize) -> bool {
        let fastest = self.list.iter().filter_map(|e| e.health.latency).min();
        match (self.list[i].health.latency, fastest) {
            (Some(mine), Some(best)) => mine > best * SLOW_FACTOR && mine > best + SLOW_FLOOR,
            _ => false,
        }
    }

    /// How long a head read of `i` took.
    pub fn latency_seen(&mut self, i: usize, took: Duration) {
        let h = &mut self.list[i].health;
        // An exponential average weighing the newest read a quarter.
        h.latency = Some(match h.latency {
            None => took,
            Some(avg) => (avg * 3 + took) / 4,
        });
    }

    /// The endpoint to ask now: the first in config order that is neither
    /// broken, backing off, lagging nor slow; else the first ready one;
    /// else the one that is free soonest (`Err(wait)` says how long until
    /// then). `None` when every one is broken.
    pub fn pick(&self, now: Instant) -> Option<Result<usize, Duration>> {
        let usable = || (0..self.list.len()).filter(|&i| self.list[i].health.broken.is_none());
        let ready = |i: &usize| self.ready(*i, now);
        let healthy = |i: &usize| ready(i) && !self.lagging(*i) && !self.slow(*i);
        if let Some(i) = usable().find(healthy) {
            return Some(Ok(i));
        }
        if let Some(i) = usable().find(ready) {
            return Some(Ok(i)); // every ready one lags: the least bad is still news
        }
        usable()
            .filter_map(|i| self.list[i].health.retry_at.map(|t| (t, i)))
            .min()
            .map(|(t, _)| Err(t.saturating_duration_since(now)))
    }

    /// True when `i` is not backing off at `now`.
    pub fn ready(&self, i: usize, now: Instant) -> bool {
        self.list[i].health.retry_at.is_none_or(|t| t <= now)
    }

    /// A head reported by endpoint `i`.
    pub fn head_seen(&mut self, i: usize, head: u64, now: Instant) {
        let h = &mut self.list[i].health;
        if h.head.is_none_or(|(n, _)| n != head) {
            h.head = Some((head, now));
        }
    }

    /// Endpoint `i` answered a whole round.
    pub fn succeeded(&mut self, i: usize) {
        let h = &mut self.list[i].health;
        h.failures = 0;
        h.retry_at = None;
    }

    /// Endpoint `i` failed: it backs off (as long as the server asked, or
    /// exponentially with jitter), and with `reconnect` its connection is
    /// dropped (a transport failure; not for an answer that was merely
    /// behind, or throttled). Returns how long it backs off.
    pub fn failed(
        &mut self,
        i: usize,
        class: ErrorClass,
        reconnect: bool,
        now: Instant,
    ) -> Duration {
        let ep = &mut self.list[i];
        ep.health.failures += 1;
        let wait = match class {
            ErrorClass::RateLimited {
                retry_after: Some(d),
            } => d.min(MAX_BACKOFF),
            _ => jittered(backoff(ep.health.failures), rand::random()),
        };
        if reconnect && !matches!(class, ErrorClass::RateLimited { .. }) {
            ep.provider = None;
        }
        ep.health.retry_at = Some(now + wait);
        wait
    }
}

/// Exponential backoff after `failures` failures in a row, capped.
pub fn backoff(failures: u32) -> Duration {
    let factor = 1u32 << failures.saturating_sub(1).min(8);
    (MIN_BACKOFF * factor).min(MAX_BACKOFF)
}

/// `d` spread over its upper half (`unit` in `[0, 1)`), so replicas and
/// chains that failed together do not retry together.
fn jittered(d: Duration, unit: f64) -> Duration {
    d.mul_f64(0.5 + unit.clamp(0.0, 1.0) / 2.0)
}

/// Counts the error and wraps it with its endpoint and class; the text has
/// every URL in it redacted.
pub(super) fn rpc_error(ep: &Endpoint, method: &'static str, e: &TransportError) -> SourceError {
    telemetry::rpc_error(&ep.redacted, method);
    SourceError::Rpc {
        endpoint: ep.redacted.clone(),
        method,
        class: classify(e),
        detail: crate::redact_urls_in(&e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_jittered_within_its_upper_half() {
        assert_eq!(backoff(1), MIN_BACKOFF);
        assert_eq!(backoff(2), MIN_BACKOFF * 2);
        assert_eq!(backoff(40), MAX_BACKOFF);
        let d = Duration::from_secs(2);
        assert_eq!(jittered(d, 0.0), Duration::from_secs(1));
        assert!(jittered(d, 0.999) < d);
    }

    fn urls(n: usize) -> Vec<RpcEndpoint> {
        (0..n)
            .map(|i| RpcEndpoint {
                url: format!("http://127.0.0.1:{}", 9000 + i),
                max_requests_per_second: None,
            })
            .collect()
    }

    #[test]
    fn the_preferred_endpoint_is_used_again_once_it_is_healthy() {
        let mut eps = Endpoints::new(&urls(2));
        let t0 = Instant::now();
        assert_eq!(eps.pick(t0), Some(Ok(0)));
        let wait = eps.failed(0, ErrorClass::Transient, true, t0);
        assert_eq!(eps.pick(t0), Some(Ok(1)), "fails over while 0 backs off");
        assert_eq!(eps.pick(t0 + wait), Some(Ok(0)), "and comes back after");
        for _ in 0..5 {
            eps.failed(0, ErrorClass::Transient, true, t0);
        }
        eps.succeeded(0);
        let wait = eps.failed(0, ErrorClass::Transient, true, t0);
        assert!(
            wait <= MIN_BACKOFF,
            "a success resets the backoff: {wait:?}"
        );
    }

    #[test]
    fn retry_after_is_honoured() {
        let mut eps = Endpoints::new(&urls(1));
        let t0 = Instant::now();
        let class = ErrorClass::RateLimited {
            retry_after: Some(Duration::from_secs(7)),
        };
        assert_eq!(eps.failed(0, class, true, t0), Duration::from_secs(7));
        assert_eq!(
            eps.pick(t0 + Duration::from_secs(6)),
            Some(Err(Duration::from_secs(1)))
        );
        assert_eq!(eps.pick(t0 + Duration::from_secs(7)), Some(Ok(0)));
    }

    #[test]
    fn an_endpoint_whose_head_is_behind_is_demoted_until_it_catches_up() {
        let mut eps = Endpoints::new(&urls(2));
        let t0 = Instant::now();
        eps.head_seen(0, 100, t0);
        eps.head_seen(1, 101, t0);
        assert_eq!(eps.pick(t0), Some(Ok(0)), "one block is no lag");
        eps.head_seen(1, 103, t0);
        assert!(eps.lagging(0));
        assert_eq!(eps.pick(t0), Some(Ok(1)), "a frozen head is left");
        eps.head_seen(0, 103, t0);
        assert_eq!(eps.pick(t0), Some(Ok(0)));
    }

    #[test]
    fn an_endpoint_whose_head_reads_crawl_is_demoted_while_another_answers_fast() {
        let mut eps = Endpoints::new(&urls(2));
        let t0 = Instant::now();
        eps.latency_seen(0, Duration::from_millis(40));
        eps.latency_seen(1, Duration::from_millis(10));
        assert_eq!(eps.pick(t0), Some(Ok(0)), "fast enough: config order");
        for _ in 0..8 {
            eps.latency_seen(0, Duration::from_secs(3));
        }
        assert!(eps.slow(0));
        assert_eq!(eps.pick(t0), Some(Ok(1)));
        for _ in 0..16 {
            eps.latency_seen(0, Duration::from_millis(20));
        }
        assert_eq!(eps.pick(t0), Some(Ok(0)), "back once it is fast again");
    }

    #[test]
    fn a_broken_endpoint_is_never_picked() {
        let mut eps = Endpoints::new(&urls(2));
        eps.list[0].health.broken = Some("serves chain 5".into());
        assert_eq!(eps.pick(Instant::now()), Some(Ok(1)));
        eps.list[1].health.broken = Some("serves chain 5".into());
        assert_eq!(eps.pick(Instant::now()), None);
    }
}
