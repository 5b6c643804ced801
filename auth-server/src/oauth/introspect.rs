//! Introspection (RFC 7662) and revocation (RFC 7009) requests.
//!
//! Who sees what: only confidential clients may introspect. A client sees
//! its own refresh tokens, and access tokens issued to it (`client_id`
//! claim), as active; everything else, including tokens of other clients,
//! is `{"active": false}`, so the endpoint is no oracle for tokens a caller
//! does not already own. Resource servers verify access tokens offline from
//! the JWKS and need no introspection.

use serde::Serialize;
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

/// An RFC 7662 §2.2 answer: `{"active": false}` alone, or the token's
/// fields. Its own type, so that nothing else can slip into it.
#[derive(Debug, Default, Serialize)]
pub struct Introspection {
    active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    token_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sub: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exp: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    iat: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    nbf: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    jti: Option<String>,
}

impl Introspection {
    /// The answer for any token the caller may not see, or that is dead.
    pub fn inactive() -> Self {
        Self::default()
    }
}

pub async fn introspect(
    app: &AppState,
    request: TokenOwnerRequest,
) -> Result<Introspection, OAuthError> {
    let client =
        client::authenticate(app, request.credentials.as_ref(), client::Source::Database).await?;
    if client.is_public() {
        return Err(OAuthError::new(
            OAuthErrorCode::InvalidClient,
            "introspection requires a confidential client",
        ));
    }
    let inactive = Introspection::inactive();
    let token = request.token;
    // A JWT has two dots; a refresh token is base64url without any.
    if token.matches('.').count() == 2 {
        return Ok(match app.verifier.verify(&token).await {
            Ok(claims)
                if claims.client_id == client.id
                    && !crate::revocations::voided(app, &claims).await =>
            {
                Introspection {
                    active: true,
                    token_type: Some("Bearer"),
                    scope: Some(claims.scope),
                    client_id: Some(claims.client_id),
                    sub: Some(claims.sub),
                    iss: Some(claims.iss),
                    aud: Some(claims.aud),
                    exp: Some(claims.exp),
                    iat: Some(claims.iat),
                    nbf: Some(claims.nbf),
                    jti: Some(claims.jti),
                }
            }
            _ => inactive,
        });
    }
    Ok(match refresh::introspect(app, &client, &token).await? {
        // A refresh token has no RFC 6749 token type: none is given.
        Some(row) => Introspection {
            active: true,
            scope: Some(row.scope),
            client_id: Some(row.client_id),
            sub: Some(row.user_id),
            iss: Some(app.issuer.clone()),
            exp: Some(row.expires_at),
            iat: Some(row.created_at),
            ..Introspection::inactive()
        },
        None => inactive,
    })
}

pub async fn revoke(app: &AppState, request: TokenOwnerRequest) -> Result<(), OAuthError> {
    let client =
        client::authenticate(app, request.credentials.as_ref(), client::Source::Database).await?;
    refresh::revoke(app, &client, &request.token).await
}
