//! The HTTP surface of `haltwatch run` (axum): health and readiness for
//! orchestrators, Prometheus metrics, a JSON API over the history, and a
//! status page for people.
//!
//! With `[api] token_env` set, `/api/*` needs `Authorization: Bearer <token>`
//! (compared in constant time); the status pages too unless
//! `public_status_page`, and `/metrics` when `metrics_token`. The server
//! under it ([`serve`]) bounds header reads, requests, connections and bodies.

mod page;
pub mod serve;

use std::sync::{Arc, OnceLock};

use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde::Deserialize;

use crate::config::Config;
use crate::report::{ProtocolInfo, parse_time};
use crate::status::Status;
use crate::store::{IncidentFilter, IncidentState, Store, now_ms};

/// Incidents per page unless `limit` says otherwise, and the most a page may hold.
const DEFAULT_PAGE: usize = 50;
const MAX_PAGE: usize = 500;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    config: Arc<Config>,
    store: Store,
    status: Status,
    token: Option<Arc<str>>,
}

impl AppState {
    /// The token is read from the environment here (validated at config load).
    pub fn new(config: Arc<Config>, store: Store, status: Status) -> Self {
        let token = config
            .api
            .token_env
            .as_ref()
            .and_then(|var| std::env::var(var).ok())
            .filter(|t| !t.is_empty())
            .map(Arc::from);
        AppState {
            config,
            store,
            status,
            token,
        }
    }

    fn now(&self) -> u64 {
        (now_ms() / 1000) as u64
    }

    fn protocols(&self) -> Vec<ProtocolInfo> {
        self.config
            .protocols
            .iter()
            .map(|p| ProtocolInfo {
                name: p.name.clone(),
                chain: self.config.chains[p.chain].name.clone(),
                revenue_per_hour_usd: p.revenue_per_hour_usd,
            })
            .collect()
    }
}

/// The global Prometheus recorder, installed once per process. `None` when
/// another recorder was installed first (as in some tests).
fn prometheus() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| match PrometheusBuilder::new().install_recorder() {
            Ok(h) => {
                crate::telemetry::describe();
                Some(h)
            }
            Err(e) => {
                tracing::warn!(error = %e, "Prometheus recorder not installed; /metrics will be empty");
                None
            }
        })
        .as_ref()
}

pub fn router(state: AppState) -> Router {
    // Install the recorder before the first metric is emitted.
    let _ = prometheus();
    let api = Router::new()
        .route("/api/v1/protocols", get(protocols))
        .route("/api/v1/incidents", get(incidents))
        .route("/api/v1/incidents/{id}", get(incident))
        .route("/api/v1/uptime", get(uptime))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_token,
        ));
    let mut pages = Router::new()
        .route("/", get(page::status_page))
        .route("/incidents/{id}", get(page::incident_page));
    if !state.config.api.public_status_page {
        pages = pages.route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_token,
        ));
    }
    let mut metrics = Router::new().route("/metrics", get(metrics));
    if state.config.api.metrics_token {
        metrics = metrics.route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_token,
        ));
    }
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .merge(api)
        .merge(pages)
        .merge(metrics)
        .with_state(state)
}

/// Compares in time that depends only on the lengths, not on where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn require_token(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(token) = &state.token else {
        return next.run(request).await;
    };
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match presented {
        Some(p) if constant_time_eq(p.as_bytes(), token.as_bytes()) => next.run(request).await,
        _ => (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            Json(serde_json::json!({"error": "missing or wrong bearer token"})),
        )
            .into_response(),
    }
}

async fn readyz(State(state): State<AppState>) -> Response {
    let mut problems: Vec<serde_json::Value> = state
        .status
        .unready_chains()
        .into_iter()
        .map(|(chain, reason)| serde_json::json!({"part": format!("chain:{chain}"), "reason": reason}))
        .collect();
    if state.status.replica().is_some_and(|r| r.starting) {
        problems.push(
            serde_json::json!({"part": "replica", "reason": "taking its share of the chains"}),
        );
    }
    if let Err(e) = state.store.ping().await {
        problems.push(serde_json::json!({"part": "store", "reason": e.to_string()}));
    }
    for reason in state.status.store_problems() {
        problems.push(serde_json::json!({"part": "store", "reason": reason}));
    }
    let mut body = serde_json::json!({"ready": problems.is_empty()});
    if !problems.is_empty() {
        body["problems"] = serde_json::json!(problems);
    }
    // A replica says which chains it follows and which it stands by for.
    if let Some(replica) = state.status.replica() {
        body["replica"] = serde_json::json!(replica);
    }
    let code = if problems.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

async fn metrics() -> Response {
    let body = prometheus().map_or_else(String::new, |h| h.render());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

async fn protocols(State(state): State<AppState>) -> Json<Vec<crate::status::ProtocolStatus>> {
    Json(state.status.protocols())
}

#[derive(Debug, Deserialize)]
struct IncidentQuery {
    protocol: Option<String>,
    chain: Option<String>,
    state: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<usize>,
    offset: Option<usize>,
}

fn bad_request(message: String) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(serde_json::json!({"error": message})),
    )
        .into_response()
}

fn internal(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "API request failed");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        Json(serde_json::json!({"error": "internal error; see the monitor's log"})),
    )
        .into_response()
}

/// A `since`/`until` parameter; the error is the message for a 400.
fn time_param(name: &str, value: Option<&str>, now: u64) -> Result<Option<u64>, String> {
    value
        .map(|v| {
            parse_time(v, now)
                .ok_or_else(|| format!("`{name}` must be RFC 3339 or a span like 30d, got `{v}`"))
        })
        .transpose()
}

async fn incidents(State(state): State<AppState>, Query(q): Query<IncidentQuery>) -> Response {
    let now = state.now();
    let (since, until) = match (
        time_param("since", q.since.as_deref(), now),
        time_param("until", q.until.as_deref(), now),
    ) {
        (Ok(s), Ok(u)) => (s, u),
        (Err(m), _) | (_, Err(m)) => return bad_request(m),
    };
    let wanted = match q.state.as_deref().map(|s| (s, IncidentState::parse(s))) {
        None => None,
        Some((_, Some(s))) => Some(s),
        Some((s, None)) => {
            return bad_request(format!(
                "`state` must be open, resolved or withdrawn, got `{s}`"
            ));
        }
    };
    let filter = IncidentFilter {
        protocol: q.protocol,
        chain: q.chain,
        state: wanted,
        since,
        until,
        ..Default::default()
    };
    let limit = q.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
    let offset = q.offset.unwrap_or(0);
    match state.store.page(&filter, offset, limit).await {
        Ok((list, total)) => {
            let next = (offset + list.len() < total).then_some(offset + list.len());
            Json(serde_json::json!({
                "incidents": list,
                "total": total,
                "offset": offset,
                "limit": limit,
                "next_offset": next,
            }))
            .into_response()
        }
        Err(e) => internal(e),
    }
}

async fn incident(State(state): State<AppState>, Path(id): Path<i64>) -> Response {
    match state.store.incident(id).await {
        Ok(Some(i)) => Json(i).into_response(),
        Ok(None) => (
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({"error": format!("no incident {id}")})),
        )
            .into_response(),
        Err(e) => internal(e),
    }
}

#[derive(Debug, Deserialize)]
struct UptimeQuery {
    since: Option<String>,
    until: Option<String>,
}

async fn uptime(State(state): State<AppState>, Query(q): Query<UptimeQuery>) -> Response {
    let now = state.now();
    let (since, until) = match (
        time_param("since", Some(q.since.as_deref().unwrap_or("30d")), now),
        time_param("until", Some(q.until.as_deref().unwrap_or("now")), now),
    ) {
        (Ok(s), Ok(u)) => (s.unwrap_or(now), u.unwrap_or(now)),
        (Err(m), _) | (_, Err(m)) => return bad_request(m),
    };
    if since >= until {
        return bad_request("`since` must be before `until`".into());
    }
    let filter = IncidentFilter {
        since: Some(since),
        until: Some(until),
        ..Default::default()
    };
    let incidents = match state.store.list(&filter).await {
        Ok(l) => l,
        Err(e) => return internal(e),
    };
    let head = match state.store.ledger_head().await {
        Ok(h) => h,
        Err(e) => return internal(e),
    };
    let gaps = match state.store.gaps(since, until).await {
        Ok(g) => g,
        Err(e) => return internal(e),
    };
    let observed = match state.store.observed(since, until).await {
        Ok(o) => o,
        Err(e) => return internal(e),
    };
    Json(serde_json::json!({
        "protocols": crate::report::report(&state.protocols(), &incidents, &gaps, &observed, since, until),
        "observed": observed,
        "monitoring_gaps": gaps,
        "history_head": {"records": head.0, "hash": head.1},
    }))
    .into_response()
}

/// Serves HTML with a strict policy: no script runs, nothing loads from elsewhere.
fn html(body: String) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    (headers, Html(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
    }
}
