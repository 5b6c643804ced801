//! Readiness, in the shape of `shared::health` (liveness is
//! `shared::health::live`).

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use shared::health::Readiness;

use crate::state::AppState;

/// Readiness: the database answers and takes a write (the server writes on
/// every login and token), and a signing key is loaded.
pub async fn readyz_get(State(app): State<AppState>) -> Response {
    let mut readiness = Readiness::new();
    // Shutting down: tell the load balancer to drain this instance first.
    readiness.assert("draining", !app.draining.is_draining(), "shutting down");
    readiness
        .check("database", migrations::db::probe(&app.db, "SELECT 1"))
        .await;
    // A write that reaches the disk (one row's counter): a statement that
    // changes nothing passes on a connection opened before the database
    // became read-only.
    readiness
        .check(
            "database_write",
            migrations::db::probe(&app.db, migrations::db::PROBE_WRITE),
        )
        .await;
    readiness.assert(
        "signing_key",
        app.keys.signing_kid().is_some(),
        "no usable signing key (the one the database names is not loaded)",
    );
    readiness.rate_limits(&app.limiter);
    // Not a check (the actions stood), but worth watching.
    readiness.note(
        "audit_failures",
        app.audit_failures
            .load(std::sync::atomic::Ordering::Relaxed),
    );
    readiness.into_response()
}
