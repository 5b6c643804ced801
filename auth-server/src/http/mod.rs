//! The HTTP surface: router, form parsing, pages.

pub mod admin;
pub mod admin_ops;
pub mod admin_search;
pub mod alerts;
pub mod api_keys;
pub mod cookies;
pub mod form;
pub mod login_csrf;
pub mod pages;
pub mod routes;
pub mod validation;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use http::Method;
use shared::paths;

use std::sync::Arc;

use axum::handler::Handler;

use crate::config::Registration;
use crate::limits;
use crate::state::AppState;

/// Largest request body any endpoint reads.
pub const BODY_LIMIT: usize = 64 * 1024;

/// Runs the request's handler in its own task, so that a client that goes
/// away cannot cancel it halfway: a transaction is committed or rolled back
/// by the handler, never abandoned on a dropped future (which would return a
/// PostgreSQL connection to the pool `idle in transaction`). Slow or stuck
/// handlers are bounded by the timeouts of the layers in front.
pub async fn run_to_completion(request: Request, next: Next) -> Response {
    // The task keeps the request's log span and its access-line slot
    // (`shared::access`), which a new task would not inherit.
    let access = shared::access::AccessIdentity::current();
    let handler = shared::access::AccessIdentity::scope(access, next.run(request));
    let handler = tracing::Instrument::in_current_span(handler);
    match tokio::spawn(handler).await {
        Ok(response) => response,
        Err(e) => {
            tracing::error!(error = %e, "request task failed");
            http::StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// The admin API (`/api/v2/admin/…`, role `admin`), under
/// `RATE_LIMIT_ADMIN` per address (a route layer: it runs on matched routes
/// only, before the token is verified).
fn admin_routes(app: &AppState) -> Router<AppState> {
    Router::new()
        .route(paths::ADMIN_LOCKOUTS_PATH, get(admin::lockouts_get))
        .route(
            &format!("{}/{{kind}}/{{subject}}", paths::ADMIN_LOCKOUTS_PATH),
            axum::routing::delete(admin::lockout_delete),
        )
        .merge(admin_ops::routes())
        .merge(admin_search::routes())
        .merge(alerts::routes())
        .merge(api_keys::routes())
        .route_layer(middleware::from_fn_with_state(app.clone(), limits::admin))
}

pub fn router(app: AppState) -> anyhow::Result<Router> {
    // OAuth endpoints and pages: never cached (RFC 6749 §5.1; pages carry
    // CSRF tokens, codes and state).
    // Rate limits (`crate::limits`), as middleware on the routes they
    // guard, so that a refused request never reaches its handler.
    let pages_limit = || middleware::from_fn_with_state(app.clone(), limits::pages);
    let failures_limit = || middleware::from_fn_with_state(app.clone(), limits::client_failures);
    // CORS (`CORS_ALLOWED_ORIGINS`, exact origins) only on what a browser
    // app on another origin calls: the token and revocation endpoints, the
    // metadata and the JWKS. Never on pages (`/authorize`, `/login`,
    // `/consent`, password reset, `/`), `/introspect` (server to server) or
    // the admin API. Each CORS layer sits outside its routes' own layers, so
    // that it answers a preflight before a method router would 405 it. (A
    // `method_not_allowed_fallback` on the merged router would replace the
    // CORS-wrapped fallback of these routes: see resource-api's router.)
    let origins = app.settings.cors_origins();
    let oauth = Router::new()
        .route(
            paths::TOKEN_PATH,
            post(routes::token::token_post.layer(failures_limit())),
        )
        .route(
            paths::REVOKE_PATH,
            post(routes::revoke::revoke_post.layer(failures_limit())),
        )
        .layer(middleware::from_fn(routes::no_store));
    let oauth = match shared::http::cors(&origins, &[Method::POST])? {
        Some(cors) => oauth.layer(cors),
        None => oauth,
    };
    let discovery = Router::new()
        .route(paths::METADATA_PATH, get(routes::discovery::metadata_get))
        .route(
            paths::OPENID_CONFIGURATION_PATH,
            get(routes::discovery::metadata_get),
        )
        .route(paths::JWKS_PATH, get(routes::discovery::jwks_get));
    let discovery = match shared::http::cors(&origins, &[Method::GET])? {
        Some(cors) => discovery.layer(cors),
        None => discovery,
    };
    let uncached = Router::new()
        .route(
            paths::INTROSPECT_PATH,
            post(routes::introspect::introspect_post.layer(failures_limit())),
        )
        .route(
            paths::AUTHORIZE_PATH,
            get(routes::authorize::authorize_get.layer(pages_limit())),
        )
        .route(paths::CONSENT_PATH, post(routes::authorize::consent_post))
        .route(
            paths::LOGIN_PATH,
            get(routes::login::login_get.layer(pages_limit())).post(
                routes::login::login_post
                    .layer(middleware::from_fn_with_state(app.clone(), limits::login)),
            ),
        )
        .route(
            paths::PASSWORD_RESET_PATH,
            get(routes::reset::request_get.layer(pages_limit())).post(
                routes::reset::request_post
                    .layer(middleware::from_fn_with_state(app.clone(), limits::reset)),
            ),
        )
        .route(
            paths::PASSWORD_RESET_CONFIRM_PATH,
            get(routes::reset::confirm_get.layer(pages_limit()))
                .post(routes::reset::confirm_post.layer(pages_limit())),
        )
        .route(
            paths::REGISTER_PATH,
            match app.settings.registration {
                Registration::Open => post(routes::register::register_post.layer(
                    middleware::from_fn_with_state(app.clone(), limits::registration),
                )),
                // No limit and no body read: as if the route did not exist.
                Registration::Closed => any(routes::register::closed),
            },
        )
        .merge(admin_routes(&app))
        .merge(crate::revocations::routes())
        .route("/", get(routes::index_get))
        .layer(middleware::from_fn(routes::no_store));
    let router = Router::new()
        .route(pages::STYLESHEET_PATH, get(routes::stylesheet_get))
        .route(paths::HEALTHZ_PATH, get(shared::health::live))
        .route(paths::READYZ_PATH, get(routes::health::readyz_get))
        .merge(oauth)
        .merge(discovery)
        .merge(uncached)
        .merge(shared::metrics::routes(&app.settings.metrics()?))
        .layer(middleware::from_fn(run_to_completion))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(app.clone());
    // With the client address (`TRUSTED_PROXIES`), for every request.
    Ok(shared::http::harden_with_client_ip(
        router,
        app.settings.http()?.request_timeout,
        Arc::new(app.limits.trusted_proxies.clone()),
    ))
}
