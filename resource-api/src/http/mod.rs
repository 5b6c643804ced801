//! The router: routes (the API ones behind the rate limits of `limits`),
//! the client address, body limit, then the shared hardening layers (with
//! the request timeout).

pub mod error;
pub mod extract;
pub mod limits;
pub mod routes;

use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::get;
use http::{HeaderValue, header};
use shared::paths::{HEALTHZ_PATH, READYZ_PATH};
use tower_http::set_header::SetResponseHeaderLayer;

use crate::state::AppState;
use error::ApiError;
use routes::{health, me, notes};

/// Largest accepted request body.
pub const BODY_LIMIT: usize = 64 * 1024;

pub const ME_PATH: &str = "/api/v2/me";

/// The whole application router, hardened (a request that takes longer than
/// `request_timeout` is answered 503; security headers, request id, access
/// log, CORS for `cors_origins`).
pub fn router(
    state: AppState,
    cors_origins: &[String],
    request_timeout: Duration,
) -> anyhow::Result<Router> {
    let api = Router::new()
        .route(ME_PATH, get(me::me_get))
        .route(
            notes::NOTES_PATH,
            get(notes::notes_list_get).post(notes::notes_post),
        )
        .route(
            notes::NOTE_PATH,
            get(notes::note_get)
                .patch(notes::note_patch)
                .delete(notes::note_delete),
        )
        // Rate limits by tier (`limits`), before any handler runs.
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            limits::api_limits,
        ))
        // Users' data must not be cached by intermediaries.
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ));
    let router = Router::new()
        .route(HEALTHZ_PATH, get(shared::health::live))
        .route(READYZ_PATH, get(health::readyz_get))
        .merge(api)
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        // The client address (`TRUSTED_PROXIES`), for every request.
        .layer(middleware::from_fn_with_state(
            state.limits.trusted_proxies.clone(),
            shared::client_ip::layer,
        ))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state);
    shared::http::harden(router, cors_origins, request_timeout)
}
