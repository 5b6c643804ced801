//! Introspection (RFC 7662) and revocation (RFC 7009) requests.
//!
//! Who sees what: only confidential clients may introspect. A client sees
//! its own refresh tokens, and access tokens issued to it (`client_id`
//! claim), as active; everything else, including tokens of other clients,
//! is `{"active": false}`, so the endpoint is no oracle for tokens a caller
//! does not already own. Resource servers verify access tokens offline from
//! the JWKS and need no introspection.

use serde_json::{Value, json};
use shared::oauth_error::{OAuthError, OAuthErrorCode};

use super::client::{self, Credentials};
use super::params::Params;
use super::refresh;
use crate::state::AppState;

/// An introspection or revocation request: the token and the credentials.
#[derive(Debug)]
pub struct TokenOwnerRequest {
    token: String,
    credentials: Option<Credentials>,
}

impl TokenOwnerRequest {
    pub fn new(mut params: Params, authorization: &[&str]) -> Result<Self, OAuthError> {
        let credentials = Credentials::take(authorization, &mut params)?;
        let token = params.require("token")?.to_owned();
        Ok(Self { token, credentials })
    }
}

pub async fn introspect(app: &AppState, request: TokenOwnerRequest) -> Result<Value, OAuthError> {
    let client = client::authenticate(app, request.credentials).await?;
    if client.is_public() {
        return Err(OAuthError::new(
            OAuthErrorCode::InvalidClient,
            "introspection requires a confidential client",
        ));
    }
    let inactive = json!({"active": false});
    let token = request.token;
    // A JWT has two dots; a refresh token is base64url without any.
    if token.matches('.').count() == 2 {
        return Ok(match app.verifier.verify(&token).await {
            Ok(claims) if claims.client_id == client.id => json!({
                "active": true,
                "token_type": "Bearer",
                "scope": claims.scope,
                "client_id": claims.client_id,
                "sub": claims.sub,
                "iss": claims.iss,
                "aud": claims.aud,
                "exp": claims.exp,
                "iat": claims.iat,
                "nbf": claims.nbf,
                "jti": claims.jti,
            }),
            _ => inactive,
        });
    }
    Ok(match refresh::introspect(app, &client, &token).await? {
        // A refresh token has no RFC 6749 token type: none is given.
        Some(row) => json!({
            "active": true,
            "scope": row.scope,
            "client_id": row.client_id,
            "sub": row.user_id,
            "iss": app.issuer,
            "exp": row.expires_at,
            "iat": row.created_at,
        }),
        None => inactive,
    })
}

pub async fn revoke(app: &AppState, request: TokenOwnerRequest) -> Result<(), OAuthError> {
    let client = client::authenticate(app, request.credentials).await?;
    refresh::revoke(app, &client, &request.token).await
}
