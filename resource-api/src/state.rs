//! Shared application state and the sub-states extractors pull out of it.

use std::sync::Arc;

use axum::extract::FromRef;
use sea_orm::DatabaseConnection;
use shared::jwt::Verifier;
use shared::serve::Draining;

use crate::clock::Clock;

#[derive(Debug, Clone)]
pub struct AppState {
    pub db: DatabaseConnection,
    pub verifier: Arc<Verifier>,
    pub clock: Clock,
    /// Set once a shutdown has begun (`shared::serve`): readiness is to
    /// answer 503 from then on.
    pub draining: Draining,
}

impl FromRef<AppState> for DatabaseConnection {
    fn from_ref(state: &AppState) -> Self {
        state.db.clone()
    }
}

impl FromRef<AppState> for Arc<Verifier> {
    fn from_ref(state: &AppState) -> Self {
        state.verifier.clone()
    }
}

impl FromRef<AppState> for Draining {
    fn from_ref(state: &AppState) -> Self {
        state.draining.clone()
    }
}

impl FromRef<AppState> for Clock {
    fn from_ref(state: &AppState) -> Self {
        state.clock.clone()
    }
}
