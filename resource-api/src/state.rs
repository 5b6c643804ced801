//! Shared application state and the sub-states extractors pull out of it.

use std::sync::Arc;

use axum::extract::FromRef;
use sea_orm::DatabaseConnection;
use shared::jwt::Verifier;
use shared::limit::Limiter;
use shared::serve::Draining;

use crate::clock::Clock;
use crate::config::{ApiV1Settings, LimitSettings};

#[derive(Debug, Clone)]
pub struct AppState {
    pub db: DatabaseConnection,
    pub verifier: Arc<Verifier>,
    pub clock: Clock,
    /// Set once a shutdown has begun (`shared::serve`): readiness is to
    /// answer 503 from then on.
    pub draining: Draining,
    /// Rate-limit buckets and failure counters (Redis when `REDIS_URL` is
    /// set, this process otherwise and as the fallback).
    pub limiter: Limiter,
    /// The rate limits and trusted proxies, parsed.
    pub limits: Arc<LimitSettings>,
    /// The deprecated `/api/v1`: its dates and migration guide.
    pub api_v1: Arc<ApiV1Settings>,
    /// The revocations feed (`crate::revocations`), when
    /// `REVOCATIONS_TOKEN` is set; its tasks stop with the last clone.
    pub revocations: Option<Arc<shared::revocation_feed::Feed>>,
}

/// The router's state: one [`AppState`] behind an `Arc`. axum clones the
/// state of a handler for every request; an `AppState` is a dozen
/// reference counts, this one is one.
#[derive(Debug, Clone)]
pub struct SharedState(pub Arc<AppState>);

impl std::ops::Deref for SharedState {
    type Target = AppState;

    fn deref(&self) -> &AppState {
        &self.0
    }
}

impl FromRef<SharedState> for DatabaseConnection {
    fn from_ref(state: &SharedState) -> Self {
        state.db.clone()
    }
}

impl FromRef<SharedState> for Arc<Verifier> {
    fn from_ref(state: &SharedState) -> Self {
        state.verifier.clone()
    }
}

impl FromRef<SharedState> for Draining {
    fn from_ref(state: &SharedState) -> Self {
        state.draining.clone()
    }
}

impl FromRef<SharedState> for Clock {
    fn from_ref(state: &SharedState) -> Self {
        state.clock.clone()
    }
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
