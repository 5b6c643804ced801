//! Liveness and readiness, in the shape of `shared::health`.

use axum::extract::State;
use axum::response::Response;
use sea_orm::ConnectionTrait;
use serde_json::{Map, Value};
use shared::health;

use crate::state::AppState;

pub async fn healthz_get() -> Response {
    health::live()
}

/// Ready when the database answers and a signing key is loaded.
pub async fn readyz_get(State(app): State<AppState>) -> Response {
    if let Err(e) = app.db.execute_unprepared("SELECT 1").await {
        tracing::warn!(error = %e, "readiness: database unreachable");
        return health::unavailable("database unreachable");
    }
    if app.keys.published.is_empty() {
        return health::unavailable("no signing key");
    }
    let mut details = Map::new();
    details.insert("kid".into(), Value::from(app.keys.signer.kid()));
    health::ready(details)
}
