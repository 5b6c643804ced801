//! `POST /revoke` (RFC 7009).

use axum::Json;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use shared::oauth_error::OAuthError;

use crate::http::client_auth;
use crate::http::form;
use crate::state::AppState;
use crate::store::{audit, refresh};

pub async fn revoke_post(State(app): State<AppState>, request: Request) -> Response {
    match revoke(&app, request).await {
        Ok(()) => Json(serde_json::json!({})).into_response(),
        Err(error) => error.into_response(),
    }
}

/// Revoking a refresh token revokes its whole family. Unknown tokens, tokens of
/// other clients and access tokens (self-contained JWTs that expire within
/// minutes) get 200 and change nothing, so the endpoint reveals nothing.
async fn revoke(app: &AppState, request: Request) -> Result<(), OAuthError> {
    let (headers, mut form) = form::read(request).await?;
    let (client, _) = client_auth::authenticate(app, &headers, &mut form).await?;
    let token = form
        .get("token")
        .ok_or_else(|| OAuthError::invalid_request("token is required"))?;
    let server_error = |e: sea_orm::DbErr| {
        tracing::error!(error = %e, "revoking token");
        OAuthError::server_error()
    };
    let row = refresh::find(&app.db, token).await.map_err(server_error)?;
    if let Some(row) = row.filter(|r| r.client_id == client.id) {
        let revoked =
            refresh::revoke_family(&app.db, &row.family_id, refresh::REASON_CLIENT_REVOKED)
                .await
                .map_err(server_error)?;
        audit::record(
            &app.db,
            audit::TOKEN_REVOKED,
            Some(&row.user_id),
            Some(&client.id),
            serde_json::json!({"family_id": row.family_id, "revoked": revoked}),
        )
        .await
        .map_err(server_error)?;
    }
    Ok(())
}
