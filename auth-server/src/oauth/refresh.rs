//! The refresh-token lifecycle, every rule in one place: a token belongs to
//! the client it was issued to; using it rotates it; using a rotated one
//! again is reuse and revokes the whole family (RFC 9700 §4.14), except for
//! a bounded retry inside the client's grace window; revocation (RFC 7009)
//! and introspection (RFC 7662) see the same rows.
//!
//! Graceful rotation: the successor of token `t` is `HMAC(secret, t)`
//! (`keys::RefreshSecret`). A client that lost the response to a rotation,
//! or refreshed twice in parallel, presents `t` again; inside the window and
//! below the replay count it gets the *same* successor back (with a fresh
//! access token), so every retry ends with one valid token. Once the
//! successor has been used, `t` is dead even inside the window.

use shared::oauth_error::{OAuthError, OAuthErrorCode};

use super::tokens::{self, TokenResponse};
use crate::audit;
use crate::domain::ScopeSet;
use crate::state::AppState;
use crate::store::clients::Client;
use crate::store::refresh::{self, RefreshToken, Replay, Rotation};
use crate::store::{self, audit as kinds};

/// The one answer for a token that is unknown, expired, revoked or another
/// client's: the caller learns nothing about which.
const INVALID: &str = "the refresh token is invalid, expired or revoked";
const REUSED: &str = "refresh token reuse detected: the token family is revoked";

fn invalid_grant(description: &str) -> OAuthError {
    OAuthError::new(OAuthErrorCode::InvalidGrant, description)
}

fn server_error(context: &str, e: impl crate::fault::Fault) -> OAuthError {
    crate::fault::oauth(context, e)
}

/// The client's grace window in seconds (0 = off).
pub fn grace_secs(app: &AppState, client: &Client) -> i64 {
    client
        .refresh_grace_secs
        .unwrap_or(app.settings.refresh_grace_secs)
}

/// A new family's first token, for a code exchange.
pub fn new_token() -> Result<String, OAuthError> {
    shared::secret::generate().map_err(|e| server_error("generating refresh token", e))
}

/// `grant_type=refresh_token` for an authenticated `client`: rotates the
/// presented token and answers with a new access token (scope narrowed to
/// `requested` if given) and the successor refresh token.
/// `received_at`: when the request arrived (before any wait for the
/// database), to tell a duplicate that was already on its way when the token
/// rotated from a replay that came after.
pub async fn exchange(
    app: &AppState,
    client: &Client,
    presented: &str,
    requested: Option<ScopeSet>,
    received_at: i64,
) -> Result<TokenResponse, OAuthError> {
    let (row, successor, grantee) =
        rotate(app, client, presented, requested.as_ref(), received_at).await?;
    // The access token gets the (possibly narrowed) scope; the refresh token
    // keeps the scope originally granted (RFC 6749 §6).
    let scope = match requested {
        Some(s) => s.to_string(),
        None => row.scope.clone(),
    };
    tokens::respond(
        app,
        &row.user_id,
        &row.client_id,
        &scope,
        grantee,
        Some(successor),
    )
    .map_err(|e| server_error("signing access token", e))
}

/// Finds the token for `client` and moves it on: the rotated token's row,
/// the successor to hand out, and who the token speaks for (roles, tier). Everything that reads
/// the database happens before the rotation commits, so that a database
/// failing mid-request cannot rotate a token and then fail the answer (the
/// client would retry with a spent token); after the commit only signing
/// is left.
///
/// The common case (a live token of this client, its user enabled) is one
/// transaction of two statements ([`claim`]); anything else takes the slow
/// path, which reads the row to tell the cases apart.
async fn rotate(
    app: &AppState,
    client: &Client,
    presented: &str,
    requested: Option<&ScopeSet>,
    received_at: i64,
) -> Result<(RefreshToken, String, tokens::Grantee), OAuthError> {
    let now = app.now();
    let successor = app.refresh_secret.successor(presented);
    if let Some((row, grantee)) = claim(app, client, presented, &successor, requested, now).await? {
        return Ok((row, successor, grantee));
    }
    // Not claimed: first, is the client still the one that was
    // authenticated (it may come from the cache, behind another process)?
    super::client::confirm(&app.db, client).await?;
    let row = find(app, presented)
        .await?
        .ok_or_else(|| invalid_grant(INVALID))?;
    if row.client_id != client.id {
        // Another client holds this family's token: a rotated one is reuse
        // (the token leaked); a live one is simply not theirs.
        if row.used_at.is_some() && row.revoked_at.is_none() {
            reuse_detected(app, &row, "other_client").await?;
        }
        return Err(invalid_grant(INVALID));
    }
    if row.revoked_at.is_some() || row.expires_at <= now {
        return Err(invalid_grant(INVALID));
    }
    if let Some(requested) = requested {
        let granted = ScopeSet::parse(&row.scope).map_err(|e| server_error("stored scope", e))?;
        if !requested.is_subset(&granted) {
            return Err(scope_exceeds_grant());
        }
    }
    let grantee = match store::users::find(&app.db, &row.user_id).await {
        // Disabling revokes the user's tokens; this also covers a token
        // issued while the account was being disabled.
        Ok(Some(user)) if store::users::is_disabled(&user) => {
            return Err(invalid_grant(INVALID));
        }
        Ok(Some(user)) => tokens::Grantee::user(&user, client.tier),
        Ok(None) => return Err(invalid_grant(INVALID)),
        Err(e) => return Err(server_error("loading user", e)),
    };
    let row = if row.used_at.is_none() {
        let _turn = write_turn(app).await?;
        match refresh::rotate(&app.db, &row, &successor, now)
            .await
            .map_err(|e| server_error("rotating refresh token", e))?
        {
            Rotation::Rotated => return Ok((row, successor, grantee)),
            // A concurrent request rotated or revoked it first: look again.
            Rotation::Lost => find(app, presented)
                .await?
                .ok_or_else(|| invalid_grant(INVALID))?,
        }
    } else {
        row
    };
    if row.used_at.is_none() || row.revoked_at.is_some() || row.expires_at <= now {
        return Err(invalid_grant(INVALID));
    }
    let grace = grace_secs(app, client);
    if grace > 0 {
        let turn = write_turn(app).await?;
        let replay = refresh::count_grace_replay(
            &app.db,
            &row,
            &shared::secret::hash(&successor),
            // The window is judged when the request arrived, not after
            // whatever it waited for.
            received_at - grace,
            app.settings.refresh_grace_max_replays,
            now,
        )
        .await
        .map_err(|e| server_error("counting a grace replay", e))?;
        drop(turn);
        if let Replay::Granted = replay {
            audit::record(
                app,
                kinds::REFRESH_TOKEN_GRACE_REPLAY,
                Some(&row.user_id),
                Some(&row.client_id),
                serde_json::json!({"family_id": row.family_id, "token_id": row.id}),
            )
            .await;
            return Ok((row, successor, grantee));
        }
    }
    // With a grace window, a request that was valid when it arrived and
    // became stale while it waited (the twin of a retry, stalled behind a
    // lock while the client moved on) is refused, and the family left alone:
    // it arrived before the token rotated, or before its successor was used.
    // Times are whole seconds, so "the same second" counts as before.
    // Without a window every replay is reuse.
    if grace > 0 && stale(app, &row, &successor, received_at).await? {
        return Err(invalid_grant(INVALID));
    }
    reuse_detected(app, &row, "rotated_token_used_again").await?;
    Err(invalid_grant(REUSED))
}

/// The common path of [`rotate`], in one transaction on the writer
/// (`migrations::db::Writer`): claims the token (one `UPDATE … RETURNING`
/// that checks it is this client's, unused, unrevoked and unexpired, and
/// that its user is enabled, and reads the user's roles and tier), checks a
/// narrowed scope against the grant, and inserts the successor. A refused
/// scope rolls back: the token stays unrotated. None: the token cannot be
/// claimed (unknown, another client's, rotated, revoked, expired, user
/// disabled or gone, or a concurrent rotation won): the slow path says why.
///
/// Dropped at any await (a client that went away), the transaction rolls
/// back and the token stays usable; once the commit returned, the rotation
/// is complete and the grace window covers a lost answer. On SQLite without
/// a narrowed scope the transaction is one command run by a task of its own
/// (`store::refresh::claim_and_insert_sqlite`): once its turn came, it
/// commits whether or not the request is still there.
async fn claim(
    app: &AppState,
    client: &Client,
    presented: &str,
    successor: &str,
    requested: Option<&ScopeSet>,
    now: i64,
) -> Result<Option<(RefreshToken, tokens::Grantee)>, OAuthError> {
    // SQLite without a narrowed scope (the usual refresh): the whole
    // transaction as one command to the connection's thread.
    if let (None, sea_orm::DatabaseConnection::SqlxSqlitePoolConnection(_)) =
        (requested, app.writer.db())
    {
        let permit = app
            .writer
            .permit()
            .await
            .map_err(|e| server_error("starting rotation", e))?;
        let claimed = refresh::claim_and_insert_sqlite(
            app.writer.db().get_sqlite_connection_pool(),
            permit,
            presented,
            client.into(),
            successor,
            now,
        )
        .await
        .map_err(|e| server_error("rotating refresh token", e))?;
        return Ok(claimed.map(|claimed| {
            let grantee =
                tokens::Grantee::from_parts(&claimed.user_roles, &claimed.user_tier, client.tier);
            (claimed.row, grantee)
        }));
    }
    let txn = app
        .writer
        .begin()
        .await
        .map_err(|e| server_error("starting rotation", e))?;
    let claimed = refresh::claim(&*txn, presented, client.into(), now)
        .await
        .map_err(|e| server_error("claiming refresh token", e))?;
    let Some(claimed) = claimed else {
        rollback(txn).await;
        return Ok(None);
    };
    if let Some(requested) = requested {
        let granted =
            ScopeSet::parse(&claimed.row.scope).map_err(|e| server_error("stored scope", e))?;
        if !requested.is_subset(&granted) {
            rollback(txn).await;
            return Err(scope_exceeds_grant());
        }
    }
    refresh::insert_successor(&*txn, &claimed.row, successor, now)
        .await
        .map_err(|e| server_error("rotating refresh token", e))?;
    txn.commit()
        .await
        .map_err(|e| server_error("committing rotation", e))?;
    let grantee = tokens::Grantee::from_parts(&claimed.user_roles, &claimed.user_tier, client.tier);
    Ok(Some((claimed.row, grantee)))
}

async fn rollback(txn: migrations::db::WriteTxn) {
    if let Err(e) = txn.rollback().await {
        tracing::warn!(error = %e, "rolling back rotation");
    }
}

fn scope_exceeds_grant() -> OAuthError {
    OAuthError::new(
        OAuthErrorCode::InvalidScope,
        "the requested scope exceeds the scope originally granted",
    )
}

/// The writer's turn for a slow-path write (queued on SQLite).
async fn write_turn(app: &AppState) -> Result<migrations::db::WritePermit, OAuthError> {
    app.writer
        .permit()
        .await
        .map_err(|e| server_error("waiting to write", e))
}

/// Whether a refused replay of `row` arrived (`received_at`) before what made
/// it invalid: the rotation of `row`, or the first use of its successor.
async fn stale(
    app: &AppState,
    row: &RefreshToken,
    successor: &str,
    received_at: i64,
) -> Result<bool, OAuthError> {
    if row.used_at.is_some_and(|used| used >= received_at) {
        return Ok(true);
    }
    let successor_used = find(app, successor).await?.and_then(|s| s.used_at);
    Ok(successor_used.is_some_and(|used| used >= received_at))
}

async fn find(app: &AppState, token: &str) -> Result<Option<RefreshToken>, OAuthError> {
    refresh::find(&app.db, token)
        .await
        .map_err(|e| server_error("loading refresh token", e))
}

/// Reuse: revoke the whole family, then audit it. A failed revocation is a
/// server error (nothing was protected); a failed audit is logged and
/// counted, and the revocation stands.
async fn reuse_detected(app: &AppState, token: &RefreshToken, why: &str) -> Result<(), OAuthError> {
    let turn = write_turn(app).await?;
    let revoked =
        refresh::revoke_family(&app.db, &token.family_id, refresh::REASON_REUSE, app.now())
            .await
            .map_err(|e| server_error("revoking refresh family", e))?;
    drop(turn);
    audit::record(
        app,
        kinds::REFRESH_TOKEN_REUSE,
        Some(&token.user_id),
        Some(&token.client_id),
        serde_json::json!({
            "family_id": token.family_id,
            "token_id": token.id,
            "revoked": revoked,
            "why": why,
        }),
    )
    .await;
    Ok(())
}

/// RFC 7009: revoking one of the client's refresh tokens revokes its family.
/// Unknown tokens, other clients' tokens and access tokens change nothing
/// and get the same answer.
pub async fn revoke(app: &AppState, client: &Client, token: &str) -> Result<(), OAuthError> {
    let Some(row) = find(app, token).await? else {
        return Ok(());
    };
    if row.client_id != client.id {
        return Ok(());
    }
    let revoked = refresh::revoke_family(
        &app.db,
        &row.family_id,
        refresh::REASON_CLIENT_REVOKED,
        app.now(),
    )
    .await
    .map_err(|e| server_error("revoking refresh family", e))?;
    audit::record(
        app,
        kinds::TOKEN_REVOKED,
        Some(&row.user_id),
        Some(&client.id),
        serde_json::json!({"family_id": row.family_id, "revoked": revoked}),
    )
    .await;
    Ok(())
}

/// RFC 7662 for refresh tokens: a client sees only its own live tokens;
/// anything else is `None` (inactive).
pub async fn introspect(
    app: &AppState,
    client: &Client,
    token: &str,
) -> Result<Option<RefreshToken>, OAuthError> {
    let row = find(app, token).await?;
    Ok(row.filter(|r| r.client_id == client.id && r.is_active(app.now())))
}
