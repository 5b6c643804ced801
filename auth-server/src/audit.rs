//! The one failure policy for audit events written after the fact: what they
//! record has already happened (a revocation committed, a code issued), so a
//! failed audit write never undoes it or fails the request; it is logged and
//! counted (`AppState::audit_failures`).

use crate::state::AppState;
use crate::store::audit;

pub use crate::store::audit::{
    CODE_REPLAY, CONSENT_DENIED, CONSENT_GRANTED, LOCKOUT, LOCKOUT_CLEARED, LOGIN_FAILED,
    LOGIN_SUCCEEDED, REFRESH_TOKEN_GRACE_REPLAY, REFRESH_TOKEN_REUSE, TOKEN_REVOKED,
};
pub use crate::store::audit::{PASSWORD_RESET, PASSWORD_RESET_REQUESTED, USER_REGISTERED};

pub async fn record(
    app: &AppState,
    kind: &str,
    user_id: Option<&str>,
    client_id: Option<&str>,
    detail: serde_json::Value,
) {
    if let Err(e) = audit::record(&app.db, kind, user_id, client_id, detail, app.now()).await {
        app.count_audit_failure();
        tracing::error!(audit = kind, error = %e, "writing audit event failed; the action stands");
    }
}
