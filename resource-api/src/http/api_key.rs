//! `X-API-Key` authentication, the alternative to a bearer token for
//! service-to-service calls (`shared::api_key`).
//!
//! A valid key gives the handlers the same identity as a `client_credentials`
//! token of its client: `sub` = `client_id` = the client id, `scope` = the
//! client's scopes, `tier` = the client's tier. A request that carries both
//! a key and an `Authorization` header is refused with 400; a wrong,
//! revoked or expired key with 401 and `WWW-Authenticate: ApiKey`. The key
//! itself is never logged; the access line gets the `client_id`.

use http::{HeaderMap, header};
use shared::api_key;
use shared::client_ip::ClientIp;
use shared::jwt::AccessTokenClaims;

use super::error::ApiError;
use crate::state::AppState;
use crate::store::api_keys::{self, KeyCheck, KeyIdentity};

/// Whether the request carries an `X-API-Key` header.
pub fn has_api_key(headers: &HeaderMap) -> bool {
    headers.contains_key(api_key::HEADER)
}

/// Both a key and an `Authorization` header: 400.
pub fn conflicting(headers: &HeaderMap) -> bool {
    has_api_key(headers) && headers.contains_key(header::AUTHORIZATION)
}

/// Verifies the request's `X-API-Key` and records its use (coalesced).
pub async fn authenticate(
    app: &AppState,
    ip: &ClientIp,
    headers: &HeaderMap,
) -> Result<AccessTokenClaims, ApiError> {
    if conflicting(headers) {
        return Err(ApiError::ConflictingCredentials);
    }
    let mut values = headers.get_all(api_key::HEADER).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return Err(ApiError::InvalidApiKey("exactly one X-API-Key header"));
    };
    let Ok(presented) = value.to_str() else {
        return Err(ApiError::InvalidApiKey("malformed API key"));
    };
    let now = app.clock.unix_seconds();
    match api_keys::check(&app.db, presented.trim(), now).await? {
        KeyCheck::Valid(key) => {
            shared::access::record_sub(&key.client_id);
            shared::access::record_client_id(&key.client_id);
            shared::metrics::api_key_used();
            // The use is recorded whatever the route answers; a failed
            // write never changes the answer.
            if let Err(e) =
                api_keys::record_use(&app.db, &app.clock, &key, Some(ip.0.to_string())).await
            {
                tracing::warn!(error = %e, key_id = %key.key_id, "recording an API key use failed");
            }
            Ok(claims(&key, now))
        }
        KeyCheck::Refused(reason) => {
            tracing::info!(reason, "API key rejected");
            Err(ApiError::InvalidApiKey(reason))
        }
        KeyCheck::Revoked { key_id, client_id } => {
            shared::access::record_client_id(&client_id);
            tracing::warn!(%key_id, %client_id, "revoked API key used");
            shared::alerts::revoked_api_key_used(Some(&client_id), Some(ip.0));
            api_keys::record_revoked_use(
                &app.db,
                &app.clock,
                &key_id,
                &client_id,
                Some(ip.0.to_string()),
            )
            .await;
            Err(ApiError::InvalidApiKey("API key revoked"))
        }
    }
}

/// The claims-like identity of a valid key.
fn claims(key: &KeyIdentity, now: i64) -> AccessTokenClaims {
    AccessTokenClaims {
        iss: String::new(),
        sub: key.client_id.clone(),
        aud: String::new(),
        client_id: key.client_id.clone(),
        scope: key.scope.clone(),
        exp: now.saturating_add(60),
        iat: now,
        nbf: now,
        jti: format!("api_key:{}", key.key_id),
        roles: Vec::new(),
        tier: key.tier,
    }
}
