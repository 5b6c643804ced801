//! Shared application state.

use std::ops::Deref;
use std::sync::Arc;

use sea_orm::DatabaseConnection;
use shared::jwt::{KeySource, Verifier, VerifierSettings};

use crate::config::Settings;
use crate::keys::KeySet;

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
}

impl AppState {
    pub fn new(
        db: DatabaseConnection,
        settings: Settings,
        issuer: String,
        keys: KeySet,
    ) -> anyhow::Result<Self> {
        let issuer = issuer.trim_end_matches('/').to_owned();
        let secure_cookies = issuer.starts_with("https://");
        let verifier = Verifier::new(VerifierSettings {
            issuer: issuer.clone(),
            audience: settings.auth_audience.clone(),
            leeway: std::time::Duration::from_secs(60),
            source: KeySource::Static(keys.published.clone()),
        })?;
        Ok(Self(Arc::new(Inner {
            db,
            settings,
            issuer,
            keys,
            verifier,
            secure_cookies,
        })))
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
