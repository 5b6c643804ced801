//! RFC 8414 metadata and the RFC 7517 JWKS.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, header};
use serde_json::json;
use shared::paths;

use crate::state::AppState;

pub async fn metadata_get(State(app): State<AppState>) -> Response {
    let body = json!({
        "issuer": app.issuer,
        "authorization_endpoint": app.url(paths::AUTHORIZE_PATH),
        "token_endpoint": app.url(paths::TOKEN_PATH),
        "revocation_endpoint": app.url(paths::REVOKE_PATH),
        "introspection_endpoint": app.url(paths::INTROSPECT_PATH),
        "jwks_uri": app.url(paths::JWKS_PATH),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "scopes_supported": shared::contract::SCOPES,
        "authorization_response_iss_parameter_supported": true,
    });
    let mut response = Json(body).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    response
}

pub async fn jwks_get(State(app): State<AppState>) -> Response {
    let mut response = Json(app.keys.jwks()).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    response
}
