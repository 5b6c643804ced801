//! The router: routes (the API ones behind the rate limits of `limits`),
//! the client address, body limit, then the shared hardening layers (with
//! the request timeout).

pub mod api_key;
pub mod error;
pub mod extract;
pub mod limits;
pub mod routes;
pub mod versions;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::get;
use http::Method;
use shared::paths::{HEALTHZ_PATH, READYZ_PATH};

use crate::state::{AppState, SharedState};
use error::ApiError;
use routes::{health, me, notes};
use versions::ApiVersion;

/// Largest accepted request body.
pub const BODY_LIMIT: usize = 64 * 1024;

pub const ME_PATH: &str = "/api/v2/me";
/// `/me` under each version (`versions`).
pub const ME_ROUTE: &str = "/me";

/// The whole application router, hardened (a request that takes longer than
/// `request_timeout` is answered 503; security headers, request id, access
/// log), with CORS for exactly `cors_origins` on the API routes only (not on
/// `/healthz`, `/readyz` or anything else).
pub fn router(
    state: AppState,
    cors_origins: &[String],
    request_timeout: Duration,
    metrics: &shared::metrics::Access,
) -> anyhow::Result<Router> {
    let state = SharedState(Arc::new(state));
    // Every version from the one function below: v1 is v2 plus its
    // lifecycle layer (`versions`), so no layer can be forgotten on it.
    let mut api = Router::new();
    for version in ApiVersion::ALL {
        api = api.merge(versioned_api(&state, version)?);
    }
    // CORS outside the API routes' other layers: a preflight is answered
    // before the rate limits or a method router see it.
    let api = match shared::http::cors(
        cors_origins,
        &[Method::GET, Method::POST, Method::PATCH, Method::DELETE],
    )? {
        Some(cors) => api.layer(cors),
        None => api,
    };
    let router = Router::new()
        .route(HEALTHZ_PATH, get(shared::health::live))
        .route(READYZ_PATH, get(health::readyz_get))
        .merge(api)
        .merge(shared::metrics::routes(metrics))
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(BODY_LIMIT));
    let proxies = state.limits.trusted_proxies.clone();
    let router = router.with_state(state);
    // With the client address (`TRUSTED_PROXIES`), for every request.
    Ok(shared::http::harden_with_client_ip(
        router,
        request_timeout,
        proxies,
    ))
}

/// The API routes of `version` with every layer the versions share (the
/// body limit, client address, CORS and hardening come from `router`).
fn versioned_api(state: &SharedState, version: ApiVersion) -> anyhow::Result<Router<SharedState>> {
    let api = Router::new()
        .route(&version.path(ME_ROUTE), get(me::me_get))
        .route(
            &version.path(notes::NOTES_ROUTE),
            get(notes::notes_list_get).post(notes::notes_post),
        )
        .route(
            &version.path(notes::NOTE_ROUTE),
            get(notes::note_get)
                .patch(notes::note_patch)
                .delete(notes::note_delete),
        )
        // Rate limits by tier (`limits`), before any handler runs; then
        // the request is counted for its version (`versions`), and the
        // answer gets `Cache-Control: no-store` unless it has a
        // `Cache-Control` (users' data must not be cached by
        // intermediaries). One layer: axum clones a route's layers for
        // every request.
        .route_layer(middleware::from_fn_with_state(
            limits::ApiLimits {
                app: state.clone(),
                version,
            },
            limits::api_limits,
        ))
        // The 405 of these routes, set before CORS so that CORS wraps it.
        // Set only on the merged router below, it would replace the
        // CORS-wrapped fallback (axum's `default_fallback`), and a preflight
        // (`OPTIONS`, which no route has) would get 405 without CORS.
        // `api_limits` does not run for it: it says no-store itself.
        .method_not_allowed_fallback(|| async {
            (
                [(
                    http::header::CACHE_CONTROL,
                    http::HeaderValue::from_static("no-store"),
                )],
                ApiError::MethodNotAllowed,
            )
        });
    Ok(match version {
        ApiVersion::V2 => api,
        // Outside the version's other layers: headers on every answer
        // (401, 429 included), and after the sunset a 410 before anything.
        ApiVersion::V1 => api.route_layer(middleware::from_fn_with_state(
            Arc::new(versions::V1Lifecycle::new(
                &state.api_v1,
                state.clock.clone(),
            )?),
            versions::v1_lifecycle,
        )),
    })
}
