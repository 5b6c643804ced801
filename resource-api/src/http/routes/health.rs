//! Liveness and readiness, in the shape of `shared::health`.

use axum::extract::State;
use axum::response::Response;
use sea_orm::{ConnectionTrait, Statement};
use shared::health;

use crate::state::AppState;

/// Liveness: the process answers.
pub async fn healthz_get() -> Response {
    health::live()
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
        return health::unavailable("database unreachable");
    }
    if !state.verifier.has_keys().await {
        if let Err(error) = state.verifier.refresh().await {
            tracing::warn!(error = %format!("{error:#}"), "readiness: JWKS unavailable");
        }
        if !state.verifier.has_keys().await {
            return health::unavailable("no token verification keys");
        }
    }
    health::ready(serde_json::Map::new())
}
