//! `grant_type=authorization_code` (RFC 6749 §4.1.3, RFC 7636 §4.5): spend
//! the code, check it against the client, the redirect URI and the PKCE
//! verifier, and start a refresh family, all in one transaction. A replayed
//! code revokes what its first use issued (RFC 6749 §4.1.2); because the
//! first use holds the code's row lock until its family is committed, the
//! replay's revocation always sees that family.

use std::borrow::Cow;

use migrations::db::WriteTxn;
use oxide_auth::code_grant::extensions::Pkce;
use oxide_auth::primitives::grant::Value;
use shared::oauth_error::{OAuthError, OAuthErrorCode};

use super::params::Params;
use super::refresh;
use super::tokens::{self, TokenResponse};
use crate::audit;
use crate::domain::GrantType;
use crate::state::AppState;
use crate::store::clients::Client;
use crate::store::codes::{self, Redeemed};
use crate::store::{self, audit as kinds};

const UNKNOWN: &str = "authorization code is unknown or expired";
const REPLAYED: &str = "authorization code already used: tokens issued with it are revoked";
const MISMATCH: &str =
    "the code_verifier, client or redirect_uri does not match the authorization code";

fn invalid_grant(description: &str) -> OAuthError {
    OAuthError::new(OAuthErrorCode::InvalidGrant, description)
}

fn server_error(context: &str, e: impl crate::fault::Fault) -> OAuthError {
    crate::fault::oauth(context, e)
}

/// RFC 7636 §4.1: 43 to 128 characters of `[A-Za-z0-9-._~]` (the same
/// alphabet and length as a challenge, §4.2).
pub fn valid_pkce_string(value: &str) -> bool {
    (43..=128).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

pub async fn exchange(
    app: &AppState,
    client: &Client,
    params: &Params,
) -> Result<TokenResponse, OAuthError> {
    let code = params.require("code")?;
    let verifier = params.get("code_verifier");
    if verifier.is_some_and(|v| !valid_pkce_string(v)) {
        return Err(invalid_grant(
            "code_verifier must be 43 to 128 characters of [A-Za-z0-9-._~] (RFC 7636)",
        ));
    }
    let redirect_uri = params.get("redirect_uri");
    let now = app.now();
    // On the writer: queued in this process on SQLite.
    let txn = app
        .writer
        .begin()
        .await
        .map_err(|e| server_error("starting transaction", e))?;
    let redeemed = codes::redeem(&*txn, code, client.into(), now)
        .await
        .map_err(|e| server_error("redeeming authorization code", e))?;
    if !matches!(redeemed, Redeemed::Fresh(_)) {
        // Not spent: first, is the client still the one that was
        // authenticated (it may come from the cache, behind another
        // process)? If not, nothing changes and the token endpoint tries
        // again with the client's row.
        if let Err(e) = super::client::confirm(&*txn, client).await {
            rollback(txn).await;
            return Err(e);
        }
    }
    let row = match redeemed {
        Redeemed::Fresh(row) => row,
        Redeemed::Unknown | Redeemed::Expired => {
            rollback(txn).await;
            return Err(invalid_grant(UNKNOWN));
        }
        Redeemed::Replayed(row) => {
            let revoked = store::refresh::revoke_by_code(
                &*txn,
                &row.id,
                store::refresh::REASON_CODE_REPLAY,
                now,
            )
            .await
            .map_err(|e| server_error("revoking tokens of a replayed code", e))?;
            commit(txn).await?;
            audit::record(
                app,
                kinds::CODE_REPLAY,
                Some(&row.user_id),
                Some(&row.client_id),
                serde_json::json!({"code_id": row.id, "revoked": revoked}),
            )
            .await;
            return Err(invalid_grant(REPLAYED));
        }
    };
    // From here the code is spent, whatever the outcome.
    let redirect_ok = match redirect_uri {
        Some(given) => given == row.redirect_uri,
        None => !row.redirect_uri_given,
    };
    let pkce_ok = Pkce::required()
        .verify(
            row.pkce.clone().map(|p| Value::private(Some(p))),
            verifier.map(Cow::Borrowed),
        )
        .is_ok();
    if row.client_id != client.id || !redirect_ok || !pkce_ok {
        commit(txn).await?;
        return Err(invalid_grant(MISMATCH));
    }
    let grantee = match store::users::find(&*txn, &row.user_id).await {
        Ok(Some(user)) if !store::users::is_disabled(&user) => {
            tokens::Grantee::user(&user, client.tier)
        }
        // Unknown, or disabled since the code was issued.
        Ok(_) => {
            commit(txn).await?;
            return Err(invalid_grant(UNKNOWN));
        }
        Err(e) => return Err(server_error("loading user", e)),
    };
    let refresh_token = if client.allows(GrantType::RefreshToken) {
        let token = refresh::new_token()?;
        store::refresh::create_family(
            &*txn,
            store::refresh::NewFamily {
                token: &token,
                client_id: &row.client_id,
                user_id: &row.user_id,
                scope: &row.scope,
                code_id: Some(&row.id),
                expires_at: now + app.settings.auth_refresh_token_ttl_secs,
                now,
            },
        )
        .await
        .map_err(|e| server_error("storing refresh token", e))?;
        Some(token)
    } else {
        None
    };
    let response = tokens::respond(
        app,
        &row.user_id,
        &row.client_id,
        &row.scope,
        grantee,
        refresh_token,
    )
    .map_err(|e| server_error("signing access token", e))?;
    commit(txn).await?;
    Ok(response)
}

async fn commit(txn: WriteTxn) -> Result<(), OAuthError> {
    txn.commit()
        .await
        .map_err(|e| server_error("committing code exchange", e))
}

async fn rollback(txn: WriteTxn) {
    if let Err(e) = txn.rollback().await {
        tracing::warn!(error = %e, "rolling back code exchange");
    }
}

#[cfg(test)]
mod tests {
    use super::valid_pkce_string;

    #[test]
    fn valid_pkce_string_follows_rfc7636() {
        let ok = [
            "a".repeat(43),
            "a".repeat(128),
            format!("{}-._~", "A0".repeat(20)),
        ];
        for v in &ok {
            assert!(valid_pkce_string(v), "{v}");
        }
        let bad = [
            "a".to_owned(),
            " ".to_owned(),
            "a".repeat(42),
            "a".repeat(129),
            format!("{}+/=", "a".repeat(43)),
            format!("{}é", "a".repeat(43)),
            format!("{} ", "a".repeat(43)),
        ];
        for v in &bad {
            assert!(!valid_pkce_string(v), "{v:?}");
        }
    }
}
