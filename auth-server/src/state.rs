//! Shared application state.

use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sea_orm::DatabaseConnection;
use shared::serve::Draining;

use crate::clock::Clock;
use crate::config::{LimitSettings, Settings};
use crate::keys::RefreshSecret;
use crate::password::PasswordGate;
use crate::signing_keys::KeyRing;
use shared::limit::Limiter;

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub db: DatabaseConnection,
    /// The audit writer's own small pool.
    pub audit_db: DatabaseConnection,
    pub settings: Settings,
    /// The `iss` of tokens and metadata, without a trailing slash.
    pub issuer: String,
    /// The signing key and the published keys, as the database records
    /// them (`signing_keys`).
    pub keys: Arc<KeyRing>,
    /// Verifies our own access tokens (introspection) against the
    /// published keys: the same [`KeyRing`].
    pub verifier: Arc<KeyRing>,
    /// Whether cookies get `Secure`: the issuer is https, or the server
    /// serves TLS itself.
    pub secure_cookies: bool,
    pub refresh_secret: RefreshSecret,
    pub clock: Arc<dyn Clock>,
    /// Audit events that could not be written (logged each time); shared
    /// with the audit writer.
    pub audit_failures: Arc<AtomicU64>,
    /// Writes audit events in batches (`crate::audit::writer`).
    pub audit_writer: crate::audit::writer::AuditWriter,
    /// Set once a shutdown has begun (`shared::serve`): readiness is to
    /// answer 503 from then on.
    pub draining: Draining,
    /// Rate limits, lockout and proxy settings, parsed.
    pub limits: LimitSettings,
    /// Where buckets and failure counters live: Redis when configured (shared
    /// by every instance), else this process.
    pub limiter: Limiter,
    /// Bounds argon2id work (login, password changes).
    pub password_gate: PasswordGate,
    /// Signs the pre-login CSRF cookie (`http::login_csrf`).
    pub login_csrf_key: aws_lc_rs::hmac::Key,
    /// Sends mail: SMTP (`SMTP_URL`) or the dev outbox.
    pub mailer: crate::mail::Mailer,
    /// Password-reset requests for the background worker (`crate::reset`).
    pub reset_queue: crate::reset::Queue,
    /// The hot paths' write transactions (refresh rotation, code exchange),
    /// queued in this process on SQLite (`migrations::db::Writer`).
    pub writer: migrations::db::Writer,
    /// Clients, cached for a few seconds (`crate::cache`).
    pub clients: crate::cache::ClientCache,
}

/// What `AppState::new` needs besides the settings.
pub struct Parts {
    pub db: DatabaseConnection,
    /// The audit writer's own small pool (`audit::POOL_SIZE`).
    pub audit_db: DatabaseConnection,
    pub issuer: String,
    pub keys: Arc<KeyRing>,
    pub refresh_secret: RefreshSecret,
    pub clock: Arc<dyn Clock>,
    pub limiter: Limiter,
    pub reset_queue: crate::reset::Queue,
}

impl AppState {
    pub fn new(settings: Settings, parts: Parts) -> anyhow::Result<Self> {
        let Parts {
            db,
            audit_db,
            issuer,
            keys,
            refresh_secret,
            clock,
            limiter,
            reset_queue,
        } = parts;
        let mailer = crate::mail::Mailer::new(&settings, db.clone())?;
        let limits = settings.limits()?;
        let password_gate = PasswordGate::new(
            limits.hash_concurrency,
            limits.hash_queue,
            limits.hash_queue_timeout,
        )?;
        let login_csrf_key = refresh_secret.derive("login-csrf");
        let audit_failures = Arc::new(AtomicU64::new(0));
        let audit_writer = crate::audit::writer::AuditWriter::spawn(
            audit_db.clone(),
            audit_failures.clone(),
            settings.db_deadlines()?.acquire,
        );
        let issuer = issuer.trim_end_matches('/').to_owned();
        let secure_cookies = issuer.starts_with("https://") || settings.tls_files()?.is_some();
        let verifier = keys.clone();
        let writer = migrations::db::Writer::new(db.clone(), settings.db_deadlines()?.acquire);
        // Audit batches queue behind the hot writers on SQLite.
        audit_writer.queue_behind(&writer);
        Ok(Self(Arc::new(Inner {
            writer,
            clients: crate::cache::ClientCache::new(),
            db,
            audit_db,
            settings,
            issuer,
            keys,
            verifier,
            secure_cookies,
            refresh_secret,
            clock,
            audit_failures,
            audit_writer,
            draining: Draining::new(),
            limits,
            limiter,
            password_gate,
            login_csrf_key,
            mailer,
            reset_queue,
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
