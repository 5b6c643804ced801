//! `POST /introspect` (RFC 7662), for authenticated confidential clients.

use axum::Json;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use shared::oauth_error::{OAuthError, OAuthErrorCode};

use crate::clock;
use crate::http::client_auth;
use crate::http::form;
use crate::state::AppState;
use crate::store::refresh;

pub async fn introspect_post(State(app): State<AppState>, request: Request) -> Response {
    match introspect(&app, request).await {
        Ok(body) => Json(body).into_response(),
        Err(error) => error.into_response(),
    }
}

async fn introspect(app: &AppState, request: Request) -> Result<Value, OAuthError> {
    let (headers, mut form) = form::read(request).await?;
    let (client, _) = client_auth::authenticate(app, &headers, &mut form).await?;
    if client.is_public() {
        return Err(OAuthError::new(
            OAuthErrorCode::InvalidClient,
            "introspection requires a confidential client",
        ));
    }
    let token = form
        .get("token")
        .ok_or_else(|| OAuthError::invalid_request("token is required"))?;
    let inactive = json!({"active": false});
    // A JWT has two dots; a refresh token is base64url without any.
    if token.matches('.').count() == 2 {
        return Ok(match app.verifier.verify(token).await {
            Ok(claims) => json!({
                "active": true,
                "token_type": "access_token",
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
            Err(_) => inactive,
        });
    }
    let row = refresh::find(&app.db, token).await.map_err(|e| {
        tracing::error!(error = %e, "loading refresh token");
        OAuthError::server_error()
    })?;
    Ok(match row {
        // A client learns only about its own refresh tokens.
        Some(row) if row.client_id == client.id && row.is_active(clock::now()) => json!({
            "active": true,
            "token_type": "refresh_token",
            "scope": row.scope,
            "client_id": row.client_id,
            "sub": row.user_id,
            "iss": app.issuer,
            "exp": row.expires_at,
            "iat": row.created_at,
        }),
        _ => inactive,
    })
}
