//! `max_requests_per_second` of an endpoint: a token bucket in front of its
//! transport. The bucket holds one second's worth of requests, so a round's
//! few requests go out together and a catch-up settles at the rate.

use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use alloy::rpc::json_rpc::{RequestPacket, ResponsePacket};
use alloy::transports::{TransportError, TransportFut};
use tokio::time::Instant;

/// Tokens and when they were last counted.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

#[derive(Debug)]
struct Throttle {
    per_second: f64,
    bucket: Mutex<Bucket>,
}

impl Throttle {
    /// Waits until a request may go out, and takes its token.
    async fn acquire(&self) {
        loop {
            let wait = {
                let mut b = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
                let now = Instant::now();
                let earned = now.duration_since(b.at).as_secs_f64() * self.per_second;
                b.tokens = (b.tokens + earned).min(self.per_second.max(1.0));
                b.at = now;
                if b.tokens >= 1.0 {
                    b.tokens -= 1.0;
                    return;
                }
                Duration::from_secs_f64((1.0 - b.tokens) / self.per_second)
            };
            tokio::time::sleep(wait).await;
        }
    }
}

/// The tower layer that puts an endpoint's bucket, if it has one, in front
/// of its transport.
#[derive(Debug, Clone)]
pub(super) struct ThrottleLayer(Option<Arc<Throttle>>);

impl ThrottleLayer {
    /// At most `max` requests a second; `None`: no limit.
    pub fn new(max: Option<u32>) -> Self {
        ThrottleLayer(max.map(|n| {
            let per_second = f64::from(n.max(1));
            Arc::new(Throttle {
                per_second,
                bucket: Mutex::new(Bucket {
                    tokens: per_second,
                    at: Instant::now(),
                }),
            })
        }))
    }
}

impl<S> tower::Layer<S> for ThrottleLayer {
    type Service = ThrottleService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ThrottleService {
            inner,
            throttle: self.0.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub(super) struct ThrottleService<S> {
    inner: S,
    throttle: Option<Arc<Throttle>>,
}

impl<S> tower::Service<RequestPacket> for ThrottleService<S>
where
    S: tower::Service<
            RequestPacket,
            Response = ResponsePacket,
            Error = TransportError,
            Future = TransportFut<'static>,
        > + Clone
        + Send
        + 'static,
{
    type Response = ResponsePacket;
    type Error = TransportError;
    type Future = TransportFut<'static>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: RequestPacket) -> Self::Future {
        let mut inner = self.inner.clone();
        let throttle = self.throttle.clone();
        Box::pin(async move {
            if let Some(t) = throttle {
                t.acquire().await;
            }
            inner.call(request).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn requests_beyond_the_burst_go_out_at_the_rate() {
        let layer = ThrottleLayer::new(Some(10));
        let throttle = layer.0.expect("a bucket");
        let start = Instant::now();
        for _ in 0..10 {
            throttle.acquire().await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO, "a second's worth at once");
        for _ in 0..20 {
            throttle.acquire().await;
        }
        let waited = start.elapsed();
        assert!(
            waited >= Duration::from_millis(1990) && waited <= Duration::from_millis(2010),
            "20 more at 10/s take 2 s: {waited:?}"
        );
    }
}
