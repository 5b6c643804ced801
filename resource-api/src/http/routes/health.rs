//! Liveness and readiness.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use sea_orm::{ConnectionTrait, Statement};
use shared::problem::Problem;

use crate::state::AppState;

/// Liveness: the process answers.
pub async fn healthz_get() -> StatusCode {
    StatusCode::OK
}

/// Readiness: the database answers `SELECT 1` and the verifier has keys
/// (a JWKS source is fetched now if it has none yet).
pub async fn readyz_get(State(state): State<AppState>) -> Response {
    let backend = state.db.get_database_backend();
    if let Err(error) = state
        .db
        .query_one(Statement::from_string(backend, "SELECT 1"))
        .await
    {
        tracing::warn!(error = %error, "readiness: database unreachable");
        return Problem::unavailable("database unreachable").into_response();
    }
    if !state.verifier.has_keys().await {
        if let Err(error) = state.verifier.refresh().await {
            tracing::warn!(error = %format!("{error:#}"), "readiness: JWKS unavailable");
        }
        if !state.verifier.has_keys().await {
            return Problem::unavailable("no token verification keys").into_response();
        }
    }
    StatusCode::OK.into_response()
}
