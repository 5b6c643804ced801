//! Readiness, in the shape of `shared::health` (liveness is
//! `shared::health::live`).

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use shared::health::Readiness;

use crate::state::SharedState;

/// Readiness: the database answers and takes a write (notes are written),
/// and the verifier has keys (a JWKS source is fetched now if it has none).
/// Where rate limits are kept is a note (`rate_limit_store`), never a failure.
pub async fn readyz_get(State(state): State<SharedState>) -> Response {
    let mut readiness = Readiness::new();
    // Shutting down: tell the load balancer to drain this instance first.
    readiness.assert("draining", !state.draining.is_draining(), "shutting down");
    readiness
        .check("database", migrations::db::probe(&state.db, "SELECT 1"))
        .await;
    // A write that reaches the disk (one row's counter): a statement that
    // changes nothing passes on a connection opened before the database
    // became read-only.
    readiness
        .check(
            "database_write",
            migrations::db::probe(&state.db, migrations::db::PROBE_WRITE),
        )
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
    readiness.rate_limits(&state.limiter);
    // Revocations (when `REVOCATIONS_TOKEN` is set; unset, a warning at
    // start says so): a stale set is reported, not a failure (see
    // `shared::revocation_feed`: a long outage does not fail closed).
    if let Some(feed) = &state.revocations {
        readiness.note(
            "revocations",
            format!("{} ({} records)", feed.status.describe(), feed.set.len()),
        );
    }
    // Not a check (the answers stood), but worth watching.
    readiness.note("audit_failures", crate::store::audit::failures());
    readiness.into_response()
}
