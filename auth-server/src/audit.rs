//! The one failure policy for audit events written after the fact: what they
//! record has already happened (a revocation committed, a code issued), so a
//! failed audit write never undoes it or fails the request.
//!
//! Writes go through a pool of their own ([`POOL_SIZE`] connections), so
//! that under load they neither wait behind requests for the last
//! connections nor take them (a flood once dropped about one audit write in
//! ten that way). A write that fails for want of the database is tried
//! again ([`RETRIES`] times, after a short pause); one that still fails is
//! logged and counted (`AppState::audit_failures`, reported by `/readyz`),
//! never silently lost. The request waits for its event, so a crash loses
//! nothing that was answered.

use crate::state::AppState;
use crate::store::audit;

pub use crate::store::audit::{
    CODE_REPLAY, CONSENT_DENIED, CONSENT_GRANTED, LOCKOUT, LOCKOUT_CLEARED, LOGIN_FAILED,
    LOGIN_SUCCEEDED, REFRESH_TOKEN_GRACE_REPLAY, REFRESH_TOKEN_REUSE, TOKEN_ISSUED, TOKEN_REVOKED,
};
pub use crate::store::audit::{PASSWORD_RESET, PASSWORD_RESET_REQUESTED, USER_REGISTERED};

/// Connections of the audit writer's pool.
pub const POOL_SIZE: u32 = 2;

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
    let now = app.now();
    let mut attempt = 0;
    loop {
        let written =
            audit::record(&app.audit_db, kind, user_id, client_id, detail.clone(), now).await;
        match written {
            Ok(()) => return,
            Err(e) if attempt < RETRIES && migrations::db::is_unavailable(&e) => {
                attempt += 1;
                tokio::time::sleep(std::time::Duration::from_millis(100 * u64::from(attempt)))
                    .await;
            }
            Err(e) => {
                app.count_audit_failure();
                tracing::error!(
                    audit = kind,
                    attempts = attempt + 1,
                    error = %e,
                    "writing audit event failed; the action stands"
                );
                return;
            }
        }
    }
}
