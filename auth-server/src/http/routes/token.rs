//! `POST /token`: parse, call the façade, render.

use axum::Json;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use shared::oauth_error::OAuthError;

use crate::http::form;
use crate::oauth::{self, TokenRequest};
use crate::state::AppState;

pub async fn token_post(State(app): State<AppState>, request: Request) -> Response {
    match token(&app, request).await {
        Ok(body) => Json(body).into_response(),
        Err(error) => error.into_response(),
    }
}

async fn token(app: &AppState, request: Request) -> Result<oauth::TokenResponse, OAuthError> {
    let received_at = app.now();
    let (headers, params) = form::read(request).await?;
    let request = TokenRequest::new(params, &form::authorization(&headers)?, received_at)?;
    oauth::token(app, request).await
}
