//! The one failure policy for audit events written after the fact: what they
//! record has already happened (a revocation committed, a code issued), so a
//! failed audit write never undoes it or fails the request.
//!
//! Writes go through a pool of their own ([`POOL_SIZE`] connections), so
//! that under load they neither wait behind requests for the last
//! connections nor take them (a flood once dropped about one audit write in
//! ten that way), and through one writer task ([`writer`]) that writes the
//! events waiting at once in one statement (group commit). A write that
//! fails for want of the database is tried again ([`RETRIES`] times, after
//! a short pause); one that still fails is logged and counted
//! (`AppState::audit_failures`, reported by `/readyz`), never silently
//! lost. The request waits for its event, so a crash loses nothing that was
//! answered; an event handed over is written even if the request is then
//! dropped.

pub mod writer;

use crate::state::AppState;
use crate::store::audit;

pub use crate::store::audit::{
    CODE_REPLAY, CONSENT_DENIED, CONSENT_GRANTED, LOCKOUT, LOCKOUT_CLEARED, LOGIN_FAILED,
    LOGIN_SUCCEEDED, REFRESH_TOKEN_GRACE_REPLAY, REFRESH_TOKEN_REUSE, TOKEN_ISSUED, TOKEN_REVOKED,
};
pub use crate::store::audit::{PASSWORD_RESET, PASSWORD_RESET_REQUESTED, USER_REGISTERED};

/// Connections of the audit writer's pool: its one task writes one batch
/// at a time.
pub const POOL_SIZE: u32 = 1;

/// Further attempts after a write fails because the database is unavailable.
pub const RETRIES: u32 = 2;

pub async fn record(
    app: &AppState,
    kind: &str,
    user_id: Option<&str>,
    client_id: Option<&str>,
    detail: serde_json::Value,
) {
    shared::metrics::security_event(kind, client_id, &detail);
    audit::log_event(kind, user_id, client_id);
    let event = audit::NewEvent {
        kind: kind.to_owned(),
        user_id: user_id.map(str::to_owned),
        client_id: client_id.map(str::to_owned),
        detail: detail.to_string(),
        at: app.now(),
    };
    app.audit_writer.record(event).await;
}
