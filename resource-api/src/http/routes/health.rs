//! Liveness and readiness, in the shape of `shared::health`.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use sea_orm::ConnectionTrait;
use shared::health::{self, Readiness};

use crate::state::AppState;

/// What a readiness body says of a database error: its class, never the
/// database's own message (that goes to the log).
fn db_failure(error: sea_orm::DbErr) -> String {
    tracing::warn!(error = %error, "readiness: database check");
    if migrations::db::is_unavailable(&error) {
        "unreachable, read-only or too slow".to_owned()
    } else {
        "error (see the log)".to_owned()
    }
}

/// Liveness: the process answers; no dependency is touched.
pub async fn healthz_get() -> Response {
    health::live()
}

/// Readiness: the database answers and takes a write (notes are written),
/// and the verifier has keys (a JWKS source is fetched now if it has none).
pub async fn readyz_get(State(state): State<AppState>) -> Response {
    let mut readiness = Readiness::new();
    // Shutting down: tell the load balancer to drain this instance first.
    readiness.assert("draining", !state.draining.is_draining(), "shutting down");
    readiness
        .check("database", async {
            state
                .db
                .execute_unprepared("SELECT 1")
                .await
                .map(|_| ())
                .map_err(db_failure)
        })
        .await;
    readiness
        .check("database_write", async {
            state
                .db
                .execute_unprepared("DELETE FROM notes WHERE id = ''")
                .await
                .map(|_| ())
                .map_err(db_failure)
        })
        .await;
    readiness
        .check("verification_keys", async {
            if state.verifier.has_keys().await {
                return Ok(());
            }
            state
                .verifier
                .refresh()
                .await
                .map_err(|e| format!("{e:#}"))?;
            if state.verifier.has_keys().await {
                Ok(())
            } else {
                Err("no token verification keys".to_owned())
            }
        })
        .await;
    readiness.into_response()
}
