//! HTTP layers both services share: request timeout, security headers,
//! request ids, access log, CORS.

use std::time::Duration;

use axum::Router;
use axum::extract::MatchedPath;
use http::{HeaderName, HeaderValue, Method, Request, StatusCode, header};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Default CSP: pages load only their own resources and cannot be framed.
pub const CSP: &str = "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'";

/// The security headers of every response (DESIGN.md), set when a handler
/// did not set its own; also on the 503 that `serve` answers past the
/// connection cap without running the router.
pub const SECURITY_HEADERS: [(HeaderName, &str); 5] = [
    (
        header::STRICT_TRANSPORT_SECURITY,
        "max-age=63072000; includeSubDomains",
    ),
    (header::CONTENT_SECURITY_POLICY, CSP),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::X_FRAME_OPTIONS, "DENY"),
    (header::REFERRER_POLICY, "strict-origin-when-cross-origin"),
];

/// Adds the request timeout, security headers, request ids, the access log
/// (path only, never the query string) and, when origins are given, CORS by
/// exact whitelist.
///
/// A request that takes longer than `request_timeout`
/// (`HTTP_REQUEST_TIMEOUT_SECS`) is answered `503 Service Unavailable`: the
/// server was too slow, so it stays a 5xx that monitoring sees (408 would
/// blame the client; a client too slow to send its head is cut off by the
/// header timeout of `crate::serve`). The layer sits inside the others, so
/// that answer still carries the security headers and the request id and is
/// in the access log.
pub fn harden<S>(
    router: Router<S>,
    cors_origins: &[String],
    request_timeout: Duration,
) -> anyhow::Result<Router<S>>
where
    S: Clone + Send + Sync + 'static,
{
    let mut router = router.layer(TimeoutLayer::with_status_code(
        StatusCode::SERVICE_UNAVAILABLE,
        request_timeout,
    ));
    if !cors_origins.is_empty() {
        let origins = cors_origins
            .iter()
            .map(|o| {
                HeaderValue::from_str(o).map_err(|_| anyhow::anyhow!("invalid CORS origin {o:?}"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        router = router.layer(
            CorsLayer::new()
                .allow_origin(AllowOrigin::list(origins))
                .allow_methods([Method::GET, Method::POST, Method::PATCH, Method::DELETE])
                .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
                .max_age(Duration::from_secs(600)),
        );
    }
    let trace = TraceLayer::new_for_http()
        .make_span_with(|request: &Request<_>| {
            let path = request
                .extensions()
                .get::<MatchedPath>()
                .map(|p| p.as_str().to_owned())
                .unwrap_or_else(|| request.uri().path().to_owned());
            let request_id = request
                .headers()
                .get(REQUEST_ID)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .to_owned();
            tracing::info_span!("request", method = %request.method(), path = %path, request_id = %request_id)
        })
        .on_request(())
        .on_response(DefaultOnResponse::new().level(Level::INFO))
        // No second, ERROR line per 5xx: the access line above has the
        // status, and faults are logged once where they happen. Otherwise
        // each 503 of an overload (hashing queue full, database down) would
        // add an ERROR line: a login flood measured 186,864 in 20 s.
        .on_failure(());
    for (name, value) in SECURITY_HEADERS {
        router = router.layer(SetResponseHeaderLayer::if_not_present(
            name,
            HeaderValue::from_static(value),
        ));
    }
    Ok(router
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(trace)
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid)))
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}
