//! `POST /introspect` (RFC 7662): parse, call the façade, render.

use axum::Json;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use shared::oauth_error::OAuthError;

use crate::http::form;
use crate::limits;
use crate::oauth::{self, Introspection, TokenOwnerRequest};
use crate::state::AppState;

pub async fn introspect_post(State(app): State<AppState>, request: Request) -> Response {
    let ip = limits::client_ip(&request);
    match introspect(&app, request).await {
        Ok(body) => Json(body).into_response(),
        Err(error) => {
            limits::count_client_failure(&app, ip, &error).await;
            error.into_response()
        }
    }
}

async fn introspect(app: &AppState, request: Request) -> Result<Introspection, OAuthError> {
    let (headers, params) = form::read(request).await?;
    let request = TokenOwnerRequest::new(params, &form::authorization(&headers)?)?;
    oauth::introspect(app, request).await
}
