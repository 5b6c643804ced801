//! The HTTP surface: router, form parsing, client authentication, pages.

pub mod client_auth;
pub mod cookies;
pub mod form;
pub mod pages;
pub mod routes;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::{get, post};
use shared::paths;

use crate::state::AppState;

/// Largest request body any endpoint reads.
pub const BODY_LIMIT: usize = 64 * 1024;

pub fn router(app: AppState) -> anyhow::Result<Router> {
    let oauth = Router::new()
        .route(paths::TOKEN_PATH, post(routes::token::token_post))
        .route(paths::REVOKE_PATH, post(routes::revoke::revoke_post))
        .route(
            paths::INTROSPECT_PATH,
            post(routes::introspect::introspect_post),
        )
        .layer(middleware::from_fn(routes::no_store));
    let router = Router::new()
        .route(paths::AUTHORIZE_PATH, get(routes::authorize::authorize_get))
        .route(paths::CONSENT_PATH, post(routes::authorize::consent_post))
        .route(
            paths::LOGIN_PATH,
            get(routes::login::login_get).post(routes::login::login_post),
        )
        .route(paths::METADATA_PATH, get(routes::discovery::metadata_get))
        .route(
            paths::OPENID_CONFIGURATION_PATH,
            get(routes::discovery::metadata_get),
        )
        .route(paths::JWKS_PATH, get(routes::discovery::jwks_get))
        .route("/", get(routes::index_get))
        .route(pages::STYLESHEET_PATH, get(routes::stylesheet_get))
        .route(paths::HEALTHZ_PATH, get(routes::health::healthz_get))
        .route(paths::READYZ_PATH, get(routes::health::readyz_get))
        .merge(oauth)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(app.clone());
    shared::http::harden(router, &app.settings.cors_origins())
}
