//! `POST /revoke` (RFC 7009): parse, call the façade, render.

use axum::Json;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use shared::oauth_error::OAuthError;

use crate::http::form;
use crate::limits;
use crate::oauth::{self, TokenOwnerRequest};
use crate::state::AppState;

/// RFC 7009 §2.2: 200 whether or not the token was valid; an empty object.
#[derive(serde::Serialize)]
struct Revoked {}

pub async fn revoke_post(State(app): State<AppState>, request: Request) -> Response {
    let ip = limits::client_ip(&request);
    match revoke(&app, request).await {
        Ok(()) => Json(Revoked {}).into_response(),
        Err(error) => {
            limits::count_client_failure(&app, ip, &error).await;
            error.into_response()
        }
    }
}

async fn revoke(app: &AppState, request: Request) -> Result<(), OAuthError> {
    let (headers, params) = form::read(request).await?;
    let request = TokenOwnerRequest::new(params, &form::authorization(&headers)?)?;
    oauth::revoke(app, request).await
}
