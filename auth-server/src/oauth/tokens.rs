//! Minting access tokens and the token response (RFC 6749 §5.1).

use serde::Serialize;
use shared::contract::Tier;
use shared::jwt::{AccessTokenClaims, SignError};

use crate::state::AppState;
use crate::store::clients::Client;
use crate::store::users::{self, User};

/// Who a token speaks for, as its claims say: roles and rate-limit tier.
#[derive(Debug, Clone, Default)]
pub struct Grantee {
    pub roles: Vec<String>,
    pub tier: Tier,
}

impl Grantee {
    /// A user acting through `client`: the user's roles; premium when the
    /// user or the client is.
    pub fn user(user: &User, client_tier: Tier) -> Self {
        Self::from_parts(&user.roles, &user.tier, client_tier)
    }

    /// [`Grantee::user`] from the user's stored `roles` and `tier` columns
    /// as read (a refresh rotation reads them in its claiming statement):
    /// the one place the rule lives.
    pub fn from_parts(user_roles: &str, user_tier: &str, client_tier: Tier) -> Self {
        Self {
            roles: users::parse_roles(user_roles),
            tier: users::parse_tier(user_tier).max(client_tier),
        }
    }

    /// A client acting for itself (client credentials).
    pub fn client(client: &Client) -> Self {
        Self {
            roles: Vec::new(),
            tier: client.tier,
        }
    }
}

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
    /// The access token's `sub` (a user id, or the client's own id under
    /// client credentials), for the audit trail; not part of the body.
    #[serde(skip)]
    pub sub: String,
    /// The access token's `jti`, for the audit trail; not part of the body.
    #[serde(skip)]
    pub jti: String,
}

/// Signs an RFC 9068 access token for `sub` and wraps it in a response.
pub fn respond(
    app: &AppState,
    sub: &str,
    client_id: &str,
    scope: &str,
    grantee: Grantee,
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
        roles: grantee.roles,
        tier: grantee.tier,
    };
    Ok(TokenResponse {
        access_token: app.keys.sign(&claims)?,
        token_type: "Bearer",
        expires_in: ttl,
        refresh_token,
        scope: scope.to_owned(),
        sub: claims.sub,
        jti: claims.jti,
    })
}
