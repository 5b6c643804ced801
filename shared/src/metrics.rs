//! `GET /metrics` of both services: Prometheus text rendered by the
//! `metrics-exporter-prometheus` recorder, installed once per process.
//!
//! Who may read it ([`Access`], from `METRICS_LISTEN` / `METRICS_TOKEN`):
//! - `METRICS_LISTEN` set: served only on that address, by a listener of its
//!   own ([`serve`]); the main port answers `404`. `METRICS_TOKEN`, when also
//!   set, is required there too.
//! - only `METRICS_TOKEN` set: served on the main port to callers sending
//!   `Authorization: Bearer <token>` (compared in constant time); others get
//!   `401`.
//! - neither: served on the main port to loopback callers only (the TCP peer
//!   is a loopback address and the request carries no `Forwarded` /
//!   `X-Forwarded-For`, so a local reverse proxy does not expose it); anyone
//!   else gets `404`.
//!
//! Label values are bounded: route templates (`/api/v2/notes/{id}`, `-` for
//! no route), methods, status codes and fixed kinds, never a raw path, an id
//! or an address.
//!
//! The metrics (all counters end in `_total`):
//! - `http_requests_total{route,method,status}`,
//!   `http_request_duration_seconds{route}` (histogram)
//! - `portcullis_logins_total{outcome}` (`succeeded`, `failed`, `locked`)
//! - `portcullis_tokens_issued_total{grant}`
//! - `portcullis_refresh_reuse_detected_total`,
//!   `portcullis_refresh_grace_replays_total`,
//!   `portcullis_authorization_code_replays_total`
//! - `portcullis_revocations_total{by}` (`client`, `admin`)
//! - `portcullis_rate_limited_total{route}`, `portcullis_lockouts_total`
//! - `portcullis_api_key_uses_total` ([`api_key_used`]);
//!   `portcullis_api_requests_total{version,client_id}` is counted by the
//!   resource API's version layer
//! - `portcullis_suspicious_inputs_total`
//! - `portcullis_security_events_total{kind}` (every audited security event)
//! - `portcullis_security_alerts_total{rule}` (`crate::alerts`)
//! - `portcullis_jwks_refreshes_total{outcome}` (`ok`, `error`)

use std::net::{IpAddr, SocketAddr};
use std::sync::OnceLock;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderValue, StatusCode, header};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// The path of the endpoint, on both services.
pub const METRICS_PATH: &str = "/metrics";

/// Buckets of `http_request_duration_seconds`.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Grants counted by name; anything else is `other` (bounded labels).
const GRANTS: &[&str] = &["authorization_code", "refresh_token", "client_credentials"];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide recorder (once; later calls return the same
/// handle). `None` when another recorder was installed first: metrics are
/// then not rendered here.
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("http_request_duration_seconds".to_owned()),
                    LATENCY_BUCKETS,
                )
                .ok()?;
            match builder.install_recorder() {
                Ok(handle) => Some(handle),
                Err(e) => {
                    tracing::warn!(error = %e, "metrics recorder not installed");
                    None
                }
            }
        })
        .as_ref()
}

/// The Prometheus text of every metric recorded so far.
pub fn render() -> String {
    match install() {
        Some(handle) => {
            handle.run_upkeep();
            handle.render()
        }
        None => String::new(),
    }
}

/// One answered request (the access line, `crate::access`): counted by
/// route template, method and status, timed, and shown to the alert rules
/// (`crate::alerts`: 401/403 spikes, rate-limit hits by address).
///
/// The handles of a route's metrics are resolved once per thread
/// ([`RequestHandles`]) and then updated without a registry lookup: the
/// same series, created at the same first use as the macros would.
pub fn http_request(
    route: &str,
    method: &http::Method,
    status: u16,
    latency: Duration,
    client_ip: Option<IpAddr>,
) {
    let method = bounded_method(method);
    let cached = is_installed()
        && REQUEST_HANDLES
            .try_with(|cache| {
                cache
                    .try_borrow_mut()
                    .is_ok_and(|mut cache| cache.record(route, method, status, latency))
            })
            .unwrap_or(false);
    if !cached {
        let route = route.to_owned();
        request_counter(&route, method, status).increment(1);
        duration_histogram(&route).record(latency.as_secs_f64());
        if status == 429 {
            rate_limited_counter(&route).increment(1);
        }
    }
    crate::alerts::observe_response(status, client_ip);
}

fn request_counter(route: &str, method: &'static str, status: u16) -> metrics::Counter {
    metrics::counter!(
        "http_requests_total",
        "route" => route.to_owned(),
        "method" => method,
        "status" => status_label(status)
    )
}

fn duration_histogram(route: &str) -> metrics::Histogram {
    metrics::histogram!("http_request_duration_seconds", "route" => route.to_owned())
}

fn rate_limited_counter(route: &str) -> metrics::Counter {
    metrics::counter!("portcullis_rate_limited_total", "route" => route.to_owned())
}

/// Whether a recorder is installed ([`install`] ran): only then may a
/// metric handle be kept (before, the macros hand out no-op handles, and
/// the global recorder, once set, never changes).
pub fn is_installed() -> bool {
    HANDLE.get().is_some()
}

/// Routes a thread keeps handles for; past it, the macros look them up.
const MAX_CACHED_ROUTES: usize = 256;
/// `(method, status)` pairs a route keeps counters for.
const MAX_CACHED_COUNTERS: usize = 64;

thread_local! {
    static REQUEST_HANDLES: std::cell::RefCell<RequestHandles> =
        std::cell::RefCell::new(RequestHandles::default());
}

/// One thread's handles of the metrics of [`http_request`], by route
/// template (label values are bounded, so is this).
#[derive(Default)]
struct RequestHandles {
    routes: std::collections::HashMap<Box<str>, RouteHandles>,
}

struct RouteHandles {
    duration: metrics::Histogram,
    /// `http_requests_total` by `(method, status)`.
    requests: Vec<(&'static str, u16, metrics::Counter)>,
    /// `portcullis_rate_limited_total`, once a 429 was counted.
    rate_limited: Option<metrics::Counter>,
}

impl RequestHandles {
    /// Records one request through the kept handles; `false` (nothing
    /// recorded) when the cache is full.
    fn record(
        &mut self,
        route: &str,
        method: &'static str,
        status: u16,
        latency: Duration,
    ) -> bool {
        if !self.routes.contains_key(route) {
            if self.routes.len() >= MAX_CACHED_ROUTES {
                return false;
            }
            // Created in the order the macros create them.
            let counter = request_counter(route, method, status);
            let duration = duration_histogram(route);
            self.routes.insert(
                route.into(),
                RouteHandles {
                    duration,
                    requests: vec![(method, status, counter)],
                    rate_limited: None,
                },
            );
        }
        let Some(handles) = self.routes.get_mut(route) else {
            return false;
        };
        let pair = |(m, s, _): &(&'static str, u16, metrics::Counter)| *s == status && *m == method;
        let index = match handles.requests.iter().position(pair) {
            Some(index) => Some(index),
            None if handles.requests.len() < MAX_CACHED_COUNTERS => {
                let counter = request_counter(route, method, status);
                handles.requests.push((method, status, counter));
                Some(handles.requests.len() - 1)
            }
            // Too many pairs on this route: this one is looked up.
            None => None,
        };
        match index.and_then(|index| handles.requests.get(index)) {
            Some((_, _, counter)) => counter.increment(1),
            None => request_counter(route, method, status).increment(1),
        }
        handles.duration.record(latency.as_secs_f64());
        if status == 429 {
            handles
                .rate_limited
                .get_or_insert_with(|| rate_limited_counter(route))
                .increment(1);
        }
        true
    }
}

/// A counter of fixed labels kept once resolved: for metrics updated on
/// every request (`static COUNTER: CachedCounter = CachedCounter::new(…)`).
pub struct CachedCounter {
    name: &'static str,
    labels: &'static [(&'static str, &'static str)],
    handle: OnceLock<metrics::Counter>,
}

impl CachedCounter {
    pub const fn new(name: &'static str, labels: &'static [(&'static str, &'static str)]) -> Self {
        Self {
            name,
            labels,
            handle: OnceLock::new(),
        }
    }

    pub fn increment(&self, value: u64) {
        if let Some(counter) = self.handle.get() {
            counter.increment(value);
            return;
        }
        let counter = metrics::counter!(self.name, self.labels);
        counter.increment(value);
        if is_installed() {
            let _ = self.handle.set(counter);
        }
    }
}

/// The `status` label: the common answers without an allocation.
fn status_label(status: u16) -> metrics::SharedString {
    let common = match status {
        200 => "200",
        201 => "201",
        204 => "204",
        301 => "301",
        302 => "302",
        303 => "303",
        304 => "304",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        409 => "409",
        410 => "410",
        413 => "413",
        415 => "415",
        422 => "422",
        429 => "429",
        500 => "500",
        502 => "502",
        503 => "503",
        504 => "504",
        _ => return metrics::SharedString::from(status.to_string()),
    };
    metrics::SharedString::from(common)
}

fn bounded_method(method: &http::Method) -> &'static str {
    match *method {
        http::Method::GET => "GET",
        http::Method::POST => "POST",
        http::Method::PUT => "PUT",
        http::Method::PATCH => "PATCH",
        http::Method::DELETE => "DELETE",
        http::Method::HEAD => "HEAD",
        http::Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// One audited security event of either service (its `audit::record`):
/// counted by kind, with the specific counters it stands for, and shown to
/// the alert rules. `detail` is the event's detail (`grant_type`,
/// `client_ip` are read from it).
pub fn security_event(kind: &str, client_id: Option<&str>, detail: &serde_json::Value) {
    let kind: &'static str = match known_kind(kind) {
        Some(kind) => kind,
        None => "other",
    };
    metrics::counter!("portcullis_security_events_total", "kind" => kind).increment(1);
    match kind {
        "login.succeeded" => login("succeeded"),
        "login.failed" => login("failed"),
        "login.locked" => {
            login("locked");
            metrics::counter!("portcullis_lockouts_total").increment(1);
        }
        "token.issued" => {
            let grant = detail
                .get("grant_type")
                .and_then(|g| g.as_str())
                .and_then(|g| GRANTS.iter().find(|known| **known == g).copied())
                .unwrap_or("other");
            metrics::counter!("portcullis_tokens_issued_total", "grant" => grant).increment(1);
        }
        "refresh_token.reuse_detected" => {
            metrics::counter!("portcullis_refresh_reuse_detected_total").increment(1);
        }
        "refresh_token.grace_replay" => {
            metrics::counter!("portcullis_refresh_grace_replays_total").increment(1);
        }
        "authorization_code.replay_detected" => {
            metrics::counter!("portcullis_authorization_code_replays_total").increment(1);
        }
        "token.revoked" => {
            metrics::counter!("portcullis_revocations_total", "by" => "client").increment(1);
        }
        "token.revoked_by_admin" => {
            metrics::counter!("portcullis_revocations_total", "by" => "admin").increment(1);
        }
        "suspicious_input" => {
            metrics::counter!("portcullis_suspicious_inputs_total").increment(1);
        }
        _ => {}
    }
    crate::alerts::observe_event(kind, client_id, detail);
}

fn login(outcome: &'static str) {
    metrics::counter!("portcullis_logins_total", "outcome" => outcome).increment(1);
}

/// The audit kinds counted by name (others are `other`).
const KINDS: &[&str] = &[
    "login.succeeded",
    "login.failed",
    "login.locked",
    "login.lock_cleared",
    "token.issued",
    "token.revoked",
    "token.revoked_by_admin",
    "refresh_token.reuse_detected",
    "refresh_token.grace_replay",
    "authorization_code.replay_detected",
    "consent.granted",
    "consent.denied",
    "password.reset",
    "password.reset_requested",
    "password.set_by_admin",
    "user.registered",
    "user.disabled",
    "user.enabled",
    "user.deleted",
    "client.deleted",
    "client.secret_rotated",
    "suspicious_input",
    crate::contract::AUDIT_PERMISSION_DENIED,
    "api_key.used",
    "api_key.created",
    "api_key.revoked",
    "api_key.revoked_use",
];

fn known_kind(kind: &str) -> Option<&'static str> {
    KINDS.iter().find(|known| **known == kind).copied()
}

/// An API key authenticated a request (for the API-key code of the
/// resource API).
pub fn api_key_used() {
    metrics::counter!("portcullis_api_key_uses_total").increment(1);
}

/// The verifier fetched the JWKS (`ok`) or failed to (`!ok`).
pub fn jwks_refreshed(ok: bool) {
    let outcome = if ok { "ok" } else { "error" };
    metrics::counter!("portcullis_jwks_refreshes_total", "outcome" => outcome).increment(1);
}

/// Who may read `/metrics` (see the module documentation).
#[derive(Clone, Default)]
pub struct Access {
    /// `METRICS_LISTEN`: served only there.
    pub listen: Option<SocketAddr>,
    /// `METRICS_TOKEN`, as its SHA-256 hash (`crate::secret::hash`): the
    /// bearer token required.
    pub token: Option<String>,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access")
            .field("listen", &self.listen)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Access {
    /// From the settings' `metrics_listen` and `metrics_token` (blank is
    /// unset); errors name the variable (`shared::startup` style).
    pub fn from_settings(listen: Option<&str>, token: Option<&str>) -> anyhow::Result<Self> {
        let listen = listen
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(|v| crate::startup::resolve_listen("METRICS_LISTEN", v))
            .transpose()?;
        let token = token.map(str::trim).filter(|v| !v.is_empty());
        if let Some(token) = token
            && token.len() < 16
        {
            return Err(crate::startup::fix(
                anyhow::anyhow!("METRICS_TOKEN is too short ({} characters)", token.len()),
                "Use at least 16 random characters, e.g. `openssl rand -hex 32`",
            ));
        }
        Ok(Self {
            listen,
            token: token.map(crate::secret::hash),
        })
    }
}

/// How one router serves `/metrics`.
#[derive(Clone)]
struct Gate {
    token: Option<String>,
    /// Loopback callers only (no token configured, main port).
    loopback_only: bool,
    /// Not served at all (the main port when `METRICS_LISTEN` is set).
    off: bool,
}

/// The `/metrics` route for the main router of a service (installs the
/// recorder). Merge it before the router's layers: merged after them, it
/// would replace their layered fallback with a bare one.
pub fn routes<S: Clone + Send + Sync + 'static>(access: &Access) -> Router<S> {
    install();
    let gate = Gate {
        token: access.token.clone(),
        loopback_only: access.token.is_none(),
        off: access.listen.is_some(),
    };
    Router::new()
        .route(METRICS_PATH, get(metrics_get))
        .with_state(gate)
}

/// The router of the `METRICS_LISTEN` listener: `/metrics` only.
pub fn listener_routes(access: &Access) -> Router {
    install();
    let gate = Gate {
        token: access.token.clone(),
        loopback_only: false,
        off: false,
    };
    Router::new()
        .route(METRICS_PATH, get(metrics_get))
        .with_state(gate)
}

/// Connections the `METRICS_LISTEN` listener serves at once (scrapers are
/// few; slow clients beyond this wait in the overflow or are cut).
pub const METRICS_MAX_CONNECTIONS: usize = 16;

/// Binds `METRICS_LISTEN` and serves [`listener_routes`] on it in a task
/// of its own, until the process ends; logs `metrics listening on …` and
/// returns the bound address (port 0 allowed).
pub async fn serve(access: &Access) -> anyhow::Result<Option<SocketAddr>> {
    let Some(addr) = access.listen else {
        return Ok(None);
    };
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        crate::startup::fix(
            anyhow::anyhow!("METRICS_LISTEN {addr}: cannot bind: {e}"),
            "Choose a free address for METRICS_LISTEN, or unset it",
        )
    })?;
    let bound = listener.local_addr()?;
    tracing::info!("metrics listening on http://{bound}");
    let router = crate::http::harden(listener_routes(access), Duration::from_secs(10));
    // Served like the services themselves (`crate::serve`): header and idle
    // deadlines, a small connection cap, bounded heads. It lives until the
    // process ends (a scrape in flight at shutdown is simply cut).
    let settings = crate::serve::HttpSettings {
        request_timeout: Duration::from_secs(10),
        max_connections: METRICS_MAX_CONNECTIONS,
        ..crate::serve::HttpSettings::default()
    };
    tokio::spawn(async move {
        crate::serve::serve(listener, router, &settings, std::future::pending(), || {}).await;
    });
    Ok(Some(bound))
}

async fn metrics_get(State(gate): State<Gate>, request: Request) -> Response {
    if gate.off {
        return StatusCode::NOT_FOUND.into_response();
    }
    if gate.loopback_only && !from_loopback(&request) {
        return StatusCode::NOT_FOUND.into_response();
    }
    if let Some(token) = &gate.token
        && !bearer_matches(&request, token)
    {
        let mut response = StatusCode::UNAUTHORIZED.into_response();
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"metrics\""),
        );
        return response;
    }
    let mut response = render().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The TCP peer is a loopback address and no proxy forwarded the request.
fn from_loopback(request: &Request) -> bool {
    let peer_is_loopback = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .is_some_and(|info| info.0.ip().is_loopback() || is_mapped_loopback(info.0.ip()));
    let forwarded = request.headers().contains_key("forwarded")
        || request.headers().contains_key("x-forwarded-for");
    peer_is_loopback && !forwarded
}

fn is_mapped_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
        IpAddr::V4(_) => false,
    }
}

fn bearer_matches(request: &Request, token_hash: &str) -> bool {
    let Some(sent) = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    crate::secret::verify(sent.trim(), token_hash)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn access_refuses_a_short_token_and_a_bad_address() {
        let line =
            crate::startup::one_line(&Access::from_settings(None, Some("short")).unwrap_err());
        assert!(line.starts_with("METRICS_TOKEN is too short"), "{line}");
        let line =
            crate::startup::one_line(&Access::from_settings(Some("nowhere"), None).unwrap_err());
        assert!(line.starts_with("METRICS_LISTEN \"nowhere\""), "{line}");
        let access = Access::from_settings(Some(" "), Some("")).unwrap();
        assert!(access.listen.is_none() && access.token.is_none());
    }

    #[test]
    fn labels_stay_bounded() {
        assert_eq!(known_kind("login.failed"), Some("login.failed"));
        assert_eq!(known_kind("drop table"), None);
        assert_eq!(
            bounded_method(&http::Method::from_bytes(b"BREW").unwrap()),
            "other"
        );
    }

    #[test]
    fn status_label_is_the_decimal_status() {
        for status in 100..1000u16 {
            assert_eq!(&*status_label(status), status.to_string());
        }
    }
}
