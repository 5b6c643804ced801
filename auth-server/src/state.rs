//! Shared application state.

use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sea_orm::DatabaseConnection;
use shared::jwt::{KeySource, Verifier, VerifierSettings};
use shared::serve::Draining;

use crate::clock::Clock;
use crate::config::Settings;
use crate::keys::{KeySet, RefreshSecret};

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub db: DatabaseConnection,
    pub settings: Settings,
    /// The `iss` of tokens and metadata, without a trailing slash.
    pub issuer: String,
    pub keys: KeySet,
    /// Verifies our own access tokens (introspection).
    pub verifier: Verifier,
    /// Whether cookies get `Secure` (issuer is https).
    pub secure_cookies: bool,
    pub refresh_secret: RefreshSecret,
    pub clock: Arc<dyn Clock>,
    /// Audit events that could not be written (logged each time).
    pub audit_failures: AtomicU64,
    /// Set once a shutdown has begun (`shared::serve`): readiness is to
    /// answer 503 from then on.
    pub draining: Draining,
}

/// What `AppState::new` needs besides the settings.
pub struct Parts {
    pub db: DatabaseConnection,
    pub issuer: String,
    pub keys: KeySet,
    pub refresh_secret: RefreshSecret,
    pub clock: Arc<dyn Clock>,
}

impl AppState {
    pub fn new(settings: Settings, parts: Parts) -> anyhow::Result<Self> {
        let Parts {
            db,
            issuer,
            keys,
            refresh_secret,
            clock,
        } = parts;
        let issuer = issuer.trim_end_matches('/').to_owned();
        let secure_cookies = issuer.starts_with("https://");
        let verifier = Verifier::new(VerifierSettings {
            issuer: issuer.clone(),
            audience: settings.auth_audience.clone(),
            leeway: shared::contract::TOKEN_LEEWAY,
            // Our own tokens live exactly this long; a negative TTL gives 0,
            // which `Verifier::new` refuses.
            max_lifetime: std::time::Duration::from_secs(
                u64::try_from(settings.auth_access_token_ttl_secs).unwrap_or(0),
            ),
            source: KeySource::Static(keys.published.clone()),
        })?;
        Ok(Self(Arc::new(Inner {
            db,
            settings,
            issuer,
            keys,
            verifier,
            secure_cookies,
            refresh_secret,
            clock,
            audit_failures: AtomicU64::new(0),
            draining: Draining::new(),
        })))
    }

    /// Unix seconds, from the injected clock.
    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    pub fn count_audit_failure(&self) {
        self.audit_failures.fetch_add(1, Ordering::Relaxed);
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.issuer, path)
    }
}

impl Deref for AppState {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}
