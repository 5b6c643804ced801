//! RFC 8414 metadata and the RFC 7517 JWKS.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, header};
use serde::Serialize;
use shared::paths;

use crate::state::AppState;

/// RFC 8414 §2 authorization server metadata: what this server offers.
#[derive(Serialize)]
struct Metadata {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    revocation_endpoint: String,
    introspection_endpoint: String,
    jwks_uri: String,
    response_types_supported: &'static [&'static str],
    response_modes_supported: &'static [&'static str],
    grant_types_supported: &'static [&'static str],
    code_challenge_methods_supported: &'static [&'static str],
    token_endpoint_auth_methods_supported: &'static [&'static str],
    revocation_endpoint_auth_methods_supported: &'static [&'static str],
    introspection_endpoint_auth_methods_supported: &'static [&'static str],
    scopes_supported: &'static [&'static str],
    authorization_response_iss_parameter_supported: bool,
}

/// How a client may authenticate at the token and revocation endpoints.
const CLIENT_AUTH_METHODS: &[&str] = &["client_secret_basic", "client_secret_post", "none"];

pub async fn metadata_get(State(app): State<AppState>) -> Response {
    let body = Metadata {
        issuer: app.issuer.clone(),
        authorization_endpoint: app.url(paths::AUTHORIZE_PATH),
        token_endpoint: app.url(paths::TOKEN_PATH),
        revocation_endpoint: app.url(paths::REVOKE_PATH),
        introspection_endpoint: app.url(paths::INTROSPECT_PATH),
        jwks_uri: app.url(paths::JWKS_PATH),
        response_types_supported: &["code"],
        response_modes_supported: &["query"],
        grant_types_supported: &["authorization_code", "refresh_token", "client_credentials"],
        code_challenge_methods_supported: &["S256"],
        token_endpoint_auth_methods_supported: CLIENT_AUTH_METHODS,
        revocation_endpoint_auth_methods_supported: CLIENT_AUTH_METHODS,
        // Public clients cannot introspect.
        introspection_endpoint_auth_methods_supported: &[
            "client_secret_basic",
            "client_secret_post",
        ],
        scopes_supported: shared::contract::SCOPES,
        authorization_response_iss_parameter_supported: true,
    };
    let mut response = Json(body).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    response
}

pub async fn jwks_get(State(app): State<AppState>) -> Response {
    let max_age = crate::signing_keys::jwks_max_age_secs(app.settings.key_rotation_delay_secs);
    let mut response = Json(app.keys.jwks()).into_response();
    if let Ok(value) = HeaderValue::from_str(&format!("public, max-age={max_age}")) {
        response.headers_mut().insert(header::CACHE_CONTROL, value);
    }
    response
}
