//! Minting access tokens.

use shared::jwt::{AccessTokenClaims, SignError};

use crate::clock;
use crate::state::AppState;

pub struct Minted {
    pub token: String,
    pub expires_at: i64,
}

/// Signs an RFC 9068 access token for `sub`.
pub fn mint(
    app: &AppState,
    sub: &str,
    client_id: &str,
    scope: &str,
    roles: Vec<String>,
) -> Result<Minted, SignError> {
    let now = clock::now();
    let expires_at = now + app.settings.auth_access_token_ttl_secs;
    let claims = AccessTokenClaims {
        iss: app.issuer.clone(),
        sub: sub.to_owned(),
        aud: app.settings.auth_audience.clone(),
        client_id: client_id.to_owned(),
        scope: scope.to_owned(),
        exp: expires_at,
        iat: now,
        nbf: now,
        jti: uuid::Uuid::new_v4().to_string(),
        roles,
    };
    Ok(Minted {
        token: app.keys.signer.sign(&claims)?,
        expires_at,
    })
}
