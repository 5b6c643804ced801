//! Liveness and readiness.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use sea_orm::ConnectionTrait;
use serde_json::json;
use shared::problem::Problem;

use crate::state::AppState;

pub async fn healthz_get() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

/// Ready when the database answers and a signing key is loaded.
pub async fn readyz_get(State(app): State<AppState>) -> Response {
    let db_ok = app
        .db
        .execute_unprepared("SELECT 1")
        .await
        .inspect_err(|e| tracing::warn!(error = %e, "readiness: database unreachable"))
        .is_ok();
    if !db_ok {
        return Problem::unavailable("database unreachable").into_response();
    }
    if app.keys.published.is_empty() {
        return Problem::unavailable("no signing key").into_response();
    }
    (
        StatusCode::OK,
        Json(json!({"status": "ready", "kid": app.keys.signer.kid()})),
    )
        .into_response()
}
