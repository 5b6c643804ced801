//! Faults, decided once: "a dependency is down or too slow" is a 503 with
//! `Retry-After` (RFC 6749 `temporarily_unavailable` on OAuth endpoints, a
//! 503 page on pages), anything else is a 500. Either way the error is
//! logged here, once, and the client gets no detail.

use shared::oauth_error::OAuthError;

/// An error a request can fail with.
pub trait Fault: std::fmt::Display {
    /// Whether it means a dependency is unavailable (not a bug).
    fn unavailable(&self) -> bool {
        false
    }
}

impl Fault for sea_orm::DbErr {
    fn unavailable(&self) -> bool {
        migrations::db::is_unavailable(self)
    }
}

impl Fault for anyhow::Error {
    fn unavailable(&self) -> bool {
        self.chain().any(|cause| {
            cause
                .downcast_ref::<sea_orm::DbErr>()
                .is_some_and(migrations::db::is_unavailable)
        })
    }
}

impl Fault for shared::jwt::SignError {
    fn unavailable(&self) -> bool {
        matches!(self, Self::Unavailable)
    }
}
impl Fault for crate::domain::DomainError {}
impl Fault for serde_json::Error {}
impl Fault for axum::Error {}
impl Fault for http::Error {}
impl Fault for &str {}
impl Fault for String {}

/// Logs the fault; true when it is a dependency being unavailable.
pub fn log(context: &str, error: &impl Fault) -> bool {
    let unavailable = error.unavailable();
    if unavailable {
        tracing::warn!(error = %error, "{context}: dependency unavailable");
    } else {
        tracing::error!(error = %error, "{context}");
    }
    unavailable
}

/// The RFC 6749 answer to a fault.
pub fn oauth(context: &str, error: impl Fault) -> OAuthError {
    if log(context, &error) {
        OAuthError::temporarily_unavailable()
    } else {
        OAuthError::server_error()
    }
}

/// The problem+json answer to a fault on an API endpoint: 503 with
/// `Retry-After` when a dependency is unavailable, else 500. Logs it (once).
pub fn problem(context: &str, error: impl Fault) -> axum::response::Response {
    use axum::response::IntoResponse;
    use shared::problem::Problem;
    if log(context, &error) {
        Problem::unavailable("the service is temporarily unavailable; try again shortly")
            .into_response()
    } else {
        Problem::internal().into_response()
    }
}
