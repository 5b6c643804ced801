//! Minting access tokens and the token response (RFC 6749 §5.1).

use serde::Serialize;
use shared::jwt::{AccessTokenClaims, SignError};

use crate::state::AppState;

/// The body of a successful token response.
#[derive(Debug, Clone, Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    /// RFC 6750: `Bearer`.
    pub token_type: &'static str,
    pub expires_in: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    pub scope: String,
}

/// Signs an RFC 9068 access token for `sub` and wraps it in a response.
pub fn respond(
    app: &AppState,
    sub: &str,
    client_id: &str,
    scope: &str,
    roles: Vec<String>,
    refresh_token: Option<String>,
) -> Result<TokenResponse, SignError> {
    let now = app.now();
    let ttl = app.settings.auth_access_token_ttl_secs;
    let claims = AccessTokenClaims {
        iss: app.issuer.clone(),
        sub: sub.to_owned(),
        aud: app.settings.auth_audience.clone(),
        client_id: client_id.to_owned(),
        scope: scope.to_owned(),
        exp: now + ttl,
        iat: now,
        nbf: now,
        jti: uuid::Uuid::new_v4().to_string(),
        roles,
    };
    Ok(TokenResponse {
        access_token: app.keys.signer.sign(&claims)?,
        token_type: "Bearer",
        expires_in: ttl,
        refresh_token,
        scope: scope.to_owned(),
    })
}
