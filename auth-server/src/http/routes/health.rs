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

/// Readiness: the database answers and takes a write (the server writes on
/// every login and token), and a signing key is loaded.
pub async fn readyz_get(State(app): State<AppState>) -> Response {
    let mut readiness = Readiness::new();
    // Shutting down: tell the load balancer to drain this instance first.
    readiness.assert("draining", !app.draining.is_draining(), "shutting down");
    readiness
        .check("database", async {
            app.db
                .execute_unprepared("SELECT 1")
                .await
                .map(|_| ())
                .map_err(db_failure)
        })
        .await;
    readiness
        .check("database_write", async {
            // A write that changes nothing but needs a writable database.
            app.db
                .execute_unprepared("DELETE FROM login_sessions WHERE id = ''")
                .await
                .map(|_| ())
                .map_err(db_failure)
        })
        .await;
    readiness.assert(
        "signing_key",
        !app.keys.published.is_empty(),
        "no signing key loaded",
    );
    readiness.into_response()
}
